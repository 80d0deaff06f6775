//! Which network namespaces exist on this machine, and what to call them.
//!
//! A namespace has no name of its own, only an inode. Users know them as `ip netns` names, as
//! "the host", or as "that container"/"that process", so the inventory maps each inode to the
//! best name available and to a path through which it can be entered.
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// One network namespace.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NetNs {
    /// The nsfs inode (`stat -L /proc/PID/ns/net`), the namespace's identity.
    pub inode: u64,
    /// Human name: `host`, an `ip netns` name, `container:<id12>` or `pid:<pid>(<comm>)`.
    pub name: String,
    /// A path that can be passed to `setns` to enter it.
    #[serde(skip)]
    pub path: PathBuf,
    /// Number of processes in it (0 for a namespace kept alive only by an `ip netns` mount).
    pub processes: usize,
}

/// Lists every network namespace reachable from /proc and /run/netns, host first.
pub fn list() -> Vec<NetNs> {
    list_from(Path::new("/proc"), Path::new("/run/netns"))
}

/// The inode of the namespace the calling thread is in.
pub fn current_inode() -> std::io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

fn list_from(proc_root: &Path, run_netns: &Path) -> Vec<NetNs> {
    let host = host_inode(proc_root);
    let mut by_inode: BTreeMap<u64, NetNs> = BTreeMap::new();

    // Named namespaces first: their name wins over any process-derived one.
    if let Ok(entries) = fs::read_dir(run_netns) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = fs::metadata(&path) {
                by_inode.entry(meta.ino()).or_insert(NetNs {
                    inode: meta.ino(),
                    name: entry.file_name().to_string_lossy().into_owned(),
                    path,
                    processes: 0,
                });
            }
        }
    }

    if let Ok(entries) = fs::read_dir(proc_root) {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let ns_path = entry.path().join("ns/net");
            // Processes can exit between readdir and stat; skipping them is the right answer.
            let Ok(meta) = fs::metadata(&ns_path) else { continue };
            let inode = meta.ino();
            let ns = by_inode.entry(inode).or_insert_with(|| NetNs {
                inode,
                name: if Some(inode) == host {
                    "host".to_string()
                } else {
                    process_name(&entry.path(), pid)
                },
                path: ns_path,
                processes: 0,
            });
            ns.processes += 1;
        }
    }

    let mut all: Vec<NetNs> = by_inode.into_values().collect();
    all.sort_by_key(|ns| (Some(ns.inode) != host, ns.name.clone()));
    all
}

/// The initial network namespace. Kernel threads never leave it, so kthreadd (pid 2) is the
/// most reliable witness; pid 1 may be unreadable (hardened init) or, in a container without
/// hostPID, not the host at all.
fn host_inode(proc_root: &Path) -> Option<u64> {
    let kthreadd =
        fs::read_to_string(proc_root.join("2/comm")).is_ok_and(|c| c.trim() == "kthreadd");
    let witness = if kthreadd { "2/ns/net" } else { "1/ns/net" };
    fs::metadata(proc_root.join(witness)).ok().map(|m| m.ino())
}

/// `container:<id>` when the process's cgroup path carries a container id, else `pid:N(comm)`.
fn process_name(proc_pid: &Path, pid: u32) -> String {
    if let Ok(cgroup) = fs::read_to_string(proc_pid.join("cgroup"))
        && let Some(id) = container_id(&cgroup)
    {
        return format!("container:{}", &id[..12]);
    }
    let comm = fs::read_to_string(proc_pid.join("comm")).unwrap_or_default();
    format!("pid:{pid}({})", comm.trim())
}

/// Finds a 64-hex-digit container id in a /proc/PID/cgroup text (docker, containerd, cri-o and
/// Kubernetes pods all embed one: `.../docker-<id>.scope`, `.../cri-containerd-<id>.scope`,
/// `/kubepods/.../<id>`).
pub fn container_id(cgroup: &str) -> Option<&str> {
    for line in cgroup.lines() {
        let path = line.rsplit(':').next().unwrap_or("");
        for part in path.rsplit('/') {
            let part = part.strip_suffix(".scope").unwrap_or(part);
            let candidate = part.rsplit(['-', ':']).next().unwrap_or(part);
            if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_common_runtimes() {
        let id = "4f1e3c5a9b7d2e6f8a0c1b3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f";
        assert_eq!(container_id(&format!("0::/system.slice/docker-{id}.scope\n")), Some(id));
        assert_eq!(
            container_id(&format!(
                "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"
            )),
            Some(id)
        );
        assert_eq!(container_id(&format!("12:pids:/kubepods/besteffort/pod-x/{id}")), Some(id));
        assert_eq!(container_id("0::/user.slice/user-1000.slice/session-2.scope"), None);
    }

    #[test]
    fn host_is_listed_first_and_contains_us() {
        let all = list();
        assert_eq!(all[0].name, "host");
        let me = current_inode().unwrap();
        assert!(all.iter().any(|ns| ns.inode == me && ns.processes > 0));
    }
}
