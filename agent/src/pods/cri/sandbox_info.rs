//! What a runtime's verbose PodSandboxStatus says about the sandbox's network namespace.
//!
//! The CRI has no field for it; containerd and CRI-O both put a JSON document under the `info`
//! key "info", with the sandbox (pause) process's `pid` and the OCI `runtimeSpec` it was started
//! with, whose `linux.namespaces` entry of type "network" has the namespace's bind-mount path
//! (`/var/run/netns/cni-<uuid>`):
//! - containerd 1.6: `SandboxInfo` in pkg/cri/server/sandbox_status.go (`Pid` as "pid",
//!   `RuntimeSpec` as "runtimeSpec"); the path is set by `oci.WithLinuxNamespace` in
//!   sandbox_run_linux.go (and `updateNetNamespacePath` in sandbox_run.go). containerd 2.x:
//!   the same struct in internal/cri/server/podsandbox/types/sandbox_info.go.
//! - CRI-O: `createSandboxInfo` in server/sandbox_status.go ("pid", "runtimeSpec").
//!
//! A host-network sandbox has no "network" entry (the runtime removes it: `WithoutNamespace`), and
//! other runtimes may give no info: then the pid's /proc/PID/ns/net, or (no pid either) that of a
//! process in the pod's cgroup (cri_snapshot).
use std::path::PathBuf;

use serde::Deserialize;

/// The parts of the "info" document reach uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The sandbox's (pause) process, as the host's PID namespace numbers it.
    pub pid: Option<u32>,
    /// The network namespace the runtime made for the pod.
    pub netns_path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Info {
    pid: Option<u32>,
    #[serde(rename = "runtimeSpec")]
    runtime_spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    linux: Option<Linux>,
}

#[derive(Deserialize)]
struct Linux {
    #[serde(default)]
    namespaces: Vec<SpecNamespace>,
}

#[derive(Deserialize)]
struct SpecNamespace {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
}

impl SandboxInfo {
    /// Reads the "info" entry of a verbose status's `info` map. Absent or unparsable info is no
    /// info (a runtime owes us none), not an error.
    pub fn from_info_map(info: &std::collections::HashMap<String, String>) -> SandboxInfo {
        info.get("info").map(|json| Self::parse(json)).unwrap_or_default()
    }

    /// Parses the "info" JSON document.
    pub fn parse(json: &str) -> SandboxInfo {
        let Ok(info) = serde_json::from_str::<Info>(json) else {
            return SandboxInfo::default();
        };
        let netns_path = info
            .runtime_spec
            .and_then(|s| s.linux)
            .and_then(|l| l.namespaces.into_iter().find(|n| n.kind == "network"))
            .and_then(|n| n.path)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        // pid 0 is what containerd reports for a sandbox whose process is gone.
        SandboxInfo { pid: info.pid.filter(|&p| p != 0), netns_path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like containerd 1.6.20's answer (abridged: config, cniResult and most of the
    /// spec left out).
    const CONTAINERD: &str = r#"{"pid":4242,"processStatus":"running","netNamespaceClosed":false,
        "image":"reach.test/busybox:1","snapshotKey":"abc","snapshotter":"overlayfs",
        "runtimeHandler":"","runtimeType":"io.containerd.runc.v2",
        "runtimeSpec":{"ociVersion":"1.0.2-dev","linux":{"cgroupsPath":"/kubepods/besteffort/podx/abc",
        "namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},
        {"type":"network","path":"/var/run/netns/cni-1c7b3f9e-0d43-2f6a-8f5e-3b1f0c2d9a11"}]}}}"#;

    /// CRI-O's shape: image, pid, runtimeSpec only.
    const CRIO: &str = r#"{"image":"registry.k8s.io/pause:3.9","pid":77,
        "runtimeSpec":{"linux":{"namespaces":[{"type":"ipc","path":"/var/run/ipcns/x"},
        {"type":"network","path":"/var/run/netns/6f1c"}]}}}"#;

    /// A host-network sandbox: no network namespace entry.
    const HOST_NETWORK: &str =
        r#"{"pid":91,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}}"#;

    #[test]
    fn reads_pid_and_netns_path() {
        let cases = [
            (
                CONTAINERD,
                Some(4242),
                Some("/var/run/netns/cni-1c7b3f9e-0d43-2f6a-8f5e-3b1f0c2d9a11"),
            ),
            (CRIO, Some(77), Some("/var/run/netns/6f1c")),
            (HOST_NETWORK, Some(91), None),
            (r#"{"pid":0}"#, None, None),
            ("not json", None, None),
        ];
        for (json, pid, path) in cases {
            let info = SandboxInfo::parse(json);
            assert_eq!(info.pid, pid, "{json}");
            assert_eq!(info.netns_path.as_deref(), path.map(std::path::Path::new), "{json}");
        }
    }

    #[test]
    fn no_info_key_is_no_info() {
        let mut map = std::collections::HashMap::new();
        assert_eq!(SandboxInfo::from_info_map(&map), SandboxInfo::default());
        map.insert("info".to_string(), CRIO.to_string());
        assert_eq!(SandboxInfo::from_info_map(&map).pid, Some(77));
    }
}
