//! containerd's private configuration: everything it would put in /var/lib/containerd,
//! /run/containerd, /etc/cni/net.d or /var/lib/cni/networks goes under the test's directory
//! instead. What containerd 1.6 cannot be told to move (shim sockets, the CNI result cache, pod
//! network namespaces) is [`super::footprint`]'s business.
use std::path::Path;

use super::image::IMAGE;

/// The CNI network's name (its host-local IPs are kept under our directory by `dataDir`).
pub const NETWORK: &str = "reach-cri";
/// The bridge the CNI bridge plugin makes, in containerd's own network namespace (the plugin
/// runs there); the root namespace must never get one.
pub const BRIDGE: &str = "cni0";

/// `config.toml` (version 2) for a containerd rooted at `dir`, with or without its CRI plugin.
pub fn containerd_toml(dir: &Path, cri: bool) -> String {
    let d = dir.display();
    let no_cri = if cri { "" } else { r#", "io.containerd.grpc.v1.cri""# };
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Snapshotters and tracing the tests never use: fewer plugins probing the host.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"{no_cri}]

[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # Without CAP_SYS_RESOURCE (this machine's root lacks it), lowering a child's oom_score_adj
  # below ours fails and RunPodSandbox dies with "can't get final child's PID".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # kubelet's cgroupfs driver: the pod's cgroup_parent is a path, not a systemd slice.
        SystemdCgroup = false
        Root = "{d}/runc"
"#
    )
}

/// The CNI network: a bridge with host-local addresses, no masquerade (no iptables rules).
pub fn cni_conflist(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": "10.88.0.0/16" }]],
                "dataDir": dir.join("ipam"),
            },
        }],
    })
    .to_string()
}
