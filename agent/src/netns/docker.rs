//! Docker's own record of a container, read from its data root: the name and image the user
//! gave `docker run`, for a namespace the inventory knows only by the container id in its
//! cgroup path. Every running `dockerd` is asked (a host can run several, each with its own
//! `--data-root`), through its own root (`/proc/PID/root`: it may sit in another mount
//! namespace); no Docker API call, so a daemon that hangs cannot stall a diagnosis.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A container as Docker names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The full 64-hex-digit id.
    pub id: String,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// The image it was created from, as given to `docker run`.
    pub image: String,
}

/// The part of `containers/<id>/config.v2.json` read here.
#[derive(Deserialize)]
struct ConfigV2 {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: Option<ContainerConfig>,
}

#[derive(Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Image")]
    image: Option<String>,
}

/// The container whose id starts with `id` (at least 12 hex digits), in the data root of any
/// running dockerd. None: no dockerd runs, or none of them has it.
pub fn container(id: &str) -> Option<Container> {
    if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    daemons(Path::new("/proc")).into_iter().find_map(|root| container_in(&root, id))
}

/// The container with an id starting with `id` under `data_root/containers`.
pub fn container_in(data_root: &Path, id: &str) -> Option<Container> {
    let dir = std::fs::read_dir(data_root.join("containers")).ok()?;
    dir.flatten().find_map(|entry| {
        let name = entry.file_name();
        let full = name.to_str()?;
        if !full.starts_with(id) {
            return None;
        }
        let text = std::fs::read_to_string(entry.path().join("config.v2.json")).ok()?;
        let c: ConfigV2 = serde_json::from_str(&text)
            .inspect_err(|e| tracing::info!("{}: {e}", entry.path().display()))
            .ok()?;
        Some(Container {
            id: c.id,
            name: c.name.trim_start_matches('/').to_string(),
            image: c.config.and_then(|c| c.image).unwrap_or_default(),
        })
    })
}

/// The data roots of the dockerd processes under `proc`, each as seen from outside its mount
/// namespace.
fn daemons(proc: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(proc) else { return Vec::new() };
    let mut roots = Vec::new();
    for entry in dir.flatten() {
        let pid = entry.path();
        if !std::fs::read_to_string(pid.join("comm")).is_ok_and(|c| c.trim() == "dockerd") {
            continue;
        }
        let Some(argv) = super::owners::read_argv(&pid) else { continue };
        let root = pid.join("root");
        let config = |file: &str| std::fs::read_to_string(under(&root, file)).ok();
        let data = data_root(&argv, config);
        let path = under(&root, &data);
        if !roots.contains(&path) {
            roots.push(path);
        }
    }
    roots
}

/// `path` (absolute, in a process's mount namespace) below that process's `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// dockerd's data root: `--data-root` (or the older `-g`/`--graph`) on its command line, else
/// `data-root` (or `graph`) in its configuration file (`--config-file`, by default
/// /etc/docker/daemon.json, read through `config`), else /var/lib/docker.
pub fn data_root(argv: &[String], config: impl Fn(&str) -> Option<String>) -> String {
    let flag = |names: &[&str]| {
        argv.iter().enumerate().skip(1).find_map(|(i, a)| {
            names.iter().find_map(|n| match a.strip_prefix(n)? {
                "" => argv.get(i + 1).cloned(),
                v => v.strip_prefix('=').map(str::to_string),
            })
        })
    };
    if let Some(d) = flag(&["--data-root", "--graph", "-g"]) {
        return d;
    }
    let file = flag(&["--config-file"]).unwrap_or_else(|| "/etc/docker/daemon.json".into());
    let configured = config(&file)
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| {
            ["data-root", "graph"].iter().find_map(|k| v.get(*k)?.as_str().map(str::to_string))
        });
    configured.unwrap_or_else(|| "/var/lib/docker".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_data_root_comes_from_the_flag_the_config_file_or_the_default() {
        let none = |_: &str| None;
        assert_eq!(data_root(&argv("dockerd --data-root /srv/d -H fd://"), none), "/srv/d");
        assert_eq!(data_root(&argv("dockerd --data-root=/srv/e"), none), "/srv/e");
        assert_eq!(data_root(&argv("dockerd -g /old"), none), "/old");
        assert_eq!(data_root(&argv("dockerd -H fd://"), none), "/var/lib/docker");
        let daemon_json = |f: &str| {
            (f == "/etc/docker/daemon.json").then(|| r#"{"data-root": "/mnt/docker"}"#.into())
        };
        assert_eq!(data_root(&argv("dockerd"), daemon_json), "/mnt/docker");
        let other = |f: &str| (f == "/cfg.json").then(|| r#"{"graph": "/g"}"#.into());
        assert_eq!(data_root(&argv("dockerd --config-file /cfg.json"), other), "/g");
        // A flag's value is not mistaken for another flag.
        assert_eq!(data_root(&argv("dockerd --exec-root /run/x"), none), "/var/lib/docker");
    }

    #[test]
    fn a_container_is_found_by_its_id_prefix_in_a_data_root() {
        let dir = tempfile::tempdir().unwrap();
        let id = "4e6b0dbdbd4706f120702f996650250adad5d7ec6e8c98a94aad7017841e72a4";
        let c = dir.path().join("containers").join(id);
        std::fs::create_dir_all(&c).unwrap();
        // The fields as dockerd 20.10 writes them (others left out).
        std::fs::write(
            c.join("config.v2.json"),
            format!(
                r#"{{"ID":"{id}","Name":"/web","Config":{{"Image":"reach-lab/busybox:1"}},"State":{{"Pid":12070}}}}"#
            ),
        )
        .unwrap();
        let found = container_in(dir.path(), &id[..12]).unwrap();
        assert_eq!(
            found,
            Container { id: id.into(), name: "web".into(), image: "reach-lab/busybox:1".into() }
        );
        assert_eq!(container_in(dir.path(), "0123456789ab"), None);
    }
}
