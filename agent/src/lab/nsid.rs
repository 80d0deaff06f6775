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
        let meta =
            fs::metadata(path).map_err(|e| LabError::io(format!("stat {}", path.display()), e))?;
        Ok(Self { dev: meta.dev(), ino: meta.ino() })
    }

    /// The namespace an open namespace fd refers to.
    pub fn of_fd(fd: impl AsFd) -> Result<Self> {
        let st =
            nix::sys::stat::fstat(fd).map_err(|e| LabError::sys("fstat of a namespace fd", e))?;
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
        let path = format!("/proc/{pid}/ns/net");
        Self::of_path_or_link(Path::new(&path)).ok()
    }

    /// The namespace of PID 1: this machine's (or container's) real network. Some inits (e.g.
    /// a VM's custom PID 1) deny even root access to their namespace links: then `Ok(None)`.
    pub fn init() -> Result<Option<Self>> {
        match Self::of_path_or_link(Path::new("/proc/1/ns/net")) {
            Ok(id) => Ok(Some(id)),
            Err(LabError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// [`NsId::of_path`] for a `/proc/PID/ns/*` link, falling back to reading the link.
    pub(crate) fn of_path_or_link(path: &Path) -> Result<Self> {
        Self::of_path(path).or_else(|_| Self::of_link(path))
    }

    /// From the link text `KIND:[INODE]`, for when stat() through the link is refused but
    /// readlink() is not; every namespace lives on the one nsfs device, so ours supplies `dev`.
    fn of_link(path: &Path) -> Result<Self> {
        let text = fs::read_link(path)
            .map_err(|e| LabError::io(format!("readlink {}", path.display()), e))?;
        let ino = text
            .to_str()
            .and_then(|t| t.split_once(":[")?.1.strip_suffix(']')?.parse().ok())
            .ok_or_else(|| LabError::Invalid {
                what: "namespace link",
                detail: format!("{} -> {}", path.display(), text.display()),
            })?;
        Ok(Self { dev: Self::current_thread()?.dev, ino })
    }
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}
