//! Identity of a network namespace.
//!
//! A namespace has no name, only an nsfs inode: two paths (`/run/netns/X`, `/proc/PID/ns/net`)
//! or fds refer to the same namespace exactly when device and inode agree. Comparing these is
//! how the lab knows which processes live in a lab namespace and how the firewalld fixture
//! proves it is not about to run in this machine's real namespace.
use std::{
    fmt, fs,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::Path,
};

use super::error::{LabError, Result};

/// (device, inode) of a network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// The namespace a path refers to (follows the `/proc/PID/ns/net` magic link).
    pub fn of_path(path: &Path) -> Result<Self> {
        let meta = fs::metadata(path).map_err(|e| LabError::io(format!("stat {}", path.display()), e))?;
        Ok(Self { dev: meta.dev(), ino: meta.ino() })
    }

    /// The namespace an open namespace fd refers to.
    pub fn of_fd(fd: impl AsFd) -> Result<Self> {
        let st = nix::sys::stat::fstat(fd).map_err(|e| LabError::sys("fstat of a namespace fd", e))?;
        Ok(Self { dev: st.st_dev, ino: st.st_ino })
    }

    /// The calling thread's namespace (threads can differ: `setns` is per thread).
    pub fn current_thread() -> Result<Self> {
        Self::of_path(Path::new("/proc/thread-self/ns/net"))
    }

    /// The namespace of this process's main thread.
    pub fn current_process() -> Result<Self> {
        Self::of_path(Path::new("/proc/self/ns/net"))
    }

    /// The namespace of process `pid` (`None` if it exited or is a zombie: zombies have no
    /// namespaces any more).
    pub fn of_pid(pid: i32) -> Option<Self> {
        Self::of_path(Path::new(&format!("/proc/{pid}/ns/net"))).ok()
    }

    /// The namespace of PID 1: this machine's (or container's) real network.
    pub fn init() -> Result<Self> {
        Self::of_path(Path::new("/proc/1/ns/net"))
    }
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}
