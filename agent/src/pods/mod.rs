//! Which Kubernetes pod a socket, a network namespace or a process belongs to, from the node's
//! container runtime (the CRI, as kubelet talks to it) or, without one, from cgroup paths.
//!
//! [`PodSource::detect`] picks the source once at start-up; each [`PodSource::snapshot`] is one
//! listing, indexed by [`PodIndex`] for the lookups an event needs (by netns inode, container id,
//! pod uid, pid).
//!
//! In a DaemonSet the agent needs `hostPID: true` (cgroups and /proc/PID/ns/net of the node's
//! processes), the runtime's socket mounted at its host path (or given with `--cri-socket`), and
//! for `netns_path` to be stat-able, /var/run/netns mounted with HostToContainer propagation;
//! without that mount the inode comes from the sandbox's pid instead.
use std::path::PathBuf;

pub mod cgroup_id;
pub mod cgroup_path;
mod cgroup_scan;
pub mod cri;
mod cri_snapshot;
mod index;
mod netns_inode;
mod source;

pub use cri::CriClient;
pub use index::PodIndex;
pub use source::PodSource;

/// A pod on this node.
///
/// From the CRI every field is what the runtime says. From cgroups (no runtime socket), only
/// what cgroup paths carry is known: `uid`, the container ids (the sandbox's pause container
/// among them, as cgroups cannot tell it apart) and the netns of a process found in the pod;
/// `namespace`, `name`, `sandbox_id` and container names are empty, meaning unknown — see
/// [`Pod::label`] for showing such a pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pod {
    /// The Kubernetes namespace.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    /// The pod's network namespace bind mount (`/var/run/netns/cni-…`), when the runtime says.
    pub netns_path: Option<PathBuf>,
    /// The pod's own network namespace; None for a host-network pod (it has none of its own) or
    /// when it could not be found.
    pub netns_inode: Option<u64>,
    pub containers: Vec<Container>,
}

/// A container of a pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    /// The full 64-hex id.
    pub id: String,
    /// The name in the pod spec; empty when unknown (cgroups only).
    pub name: String,
}

impl Pod {
    /// `namespace/name`, or `pod <uid>` when the name is unknown (cgroups only).
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("pod {}", self.uid)
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}
