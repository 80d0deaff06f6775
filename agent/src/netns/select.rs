//! Resolving what a user typed after `--netns` to a namespace inode.
use std::os::unix::fs::MetadataExt;

use anyhow::bail;

use super::inventory;

/// `NAME` (`ip netns` name or `host`), an absolute `PATH` to an nsfs file, or a `PID`.
pub fn resolve(spec: &str) -> anyhow::Result<u64> {
    if spec == "host" {
        if let Some(host) = inventory::list().into_iter().find(|n| n.name == "host") {
            return Ok(host.inode);
        }
        bail!("cannot find the host network namespace (is /proc mounted?)");
    }
    let candidate = if spec.starts_with('/') {
        spec.to_string()
    } else if spec.chars().all(|c| c.is_ascii_digit()) {
        format!("/proc/{spec}/ns/net")
    } else {
        format!("/run/netns/{spec}")
    };
    match std::fs::metadata(&candidate) {
        Ok(m) => Ok(m.ino()),
        Err(e) => {
            let names: Vec<String> = inventory::list().into_iter().map(|n| n.name).collect();
            bail!(
                "no network namespace {spec:?} ({candidate}: {e}); give an `ip netns` name, `host`, \
                 a PID or a path like /proc/PID/ns/net. Known: {}",
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_pid_and_path_agree() {
        let me = inventory::current_inode().unwrap();
        assert_eq!(resolve(&std::process::id().to_string()).unwrap(), me);
        assert_eq!(resolve("/proc/self/ns/net").unwrap(), me);
    }

    #[test]
    fn unknown_names_are_explained() {
        let e = resolve("reach-no-such-ns").unwrap_err().to_string();
        assert!(e.contains("reach-no-such-ns") && e.contains("ip netns"), "{e}");
    }
}
