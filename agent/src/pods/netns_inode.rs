//! A network namespace's identity: the inode of its nsfs file, the same number whether reached
//! through a bind mount (`/var/run/netns/cni-…`) or a process (`/proc/PID/ns/net`), and the
//! number BPF programs read from `net->ns.inum`.
use std::{os::unix::fs::MetadataExt, path::Path};

pub(crate) fn of_path(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

pub(crate) fn of_pid(pid: u32) -> Option<u64> {
    of_path(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// The host's network namespace: PID 1's (the agent runs with hostPID, as a DaemonSet must to
/// see the node's processes). Pods sharing it are host-network pods and own no namespace.
pub(crate) fn host() -> Option<u64> {
    of_pid(1)
}
