//! Run code inside another network namespace without moving the whole agent there.
//!
//! `setns(CLONE_NEWNET)` / `unshare(CLONE_NEWNET)` change only the calling thread, so each call
//! here runs the closure on a dedicated, short-lived thread: the caller's namespace can never be
//! left switched by an early return or a panic, and sockets/netlink handles created inside the
//! closure belong to the target namespace.
use std::{
    fs::File,
    io,
    os::fd::{AsFd, BorrowedFd},
    path::Path,
    thread,
};

use nix::{
    errno::Errno,
    sched::{CloneFlags, setns, unshare},
};

/// `setns` into a network namespace failed. Carried inside the `io::Error` of
/// [`in_netns_fd`] (reach it with `get_ref()` and `downcast_ref`) so a caller can tell EPERM
/// from the rest.
#[derive(Debug, thiserror::Error)]
#[error("setns into {what}: {errno}")]
pub struct SetnsError {
    /// The namespace, as the caller named it (usually its path).
    pub what: String,
    pub errno: Errno,
}

/// Runs `f` in the network namespace at `ns_path` (e.g. `/run/netns/NAME`, `/proc/PID/ns/net`).
pub fn in_netns<T: Send>(ns_path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(ns_path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", ns_path.display())))?;
    in_netns_fd(ns.as_fd(), &ns_path.display().to_string(), f)
}

/// Runs `f` on a dedicated thread that has entered the network namespace `fd` refers to; `what`
/// names the namespace in errors. A panic in `f` is resumed in the caller. A failed `setns` is
/// an error of the errno's kind carrying a [`SetnsError`].
pub fn in_netns_fd<T: Send>(
    fd: BorrowedFd<'_>,
    what: &str,
    f: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    run_on_thread(move || {
        setns(fd, CloneFlags::CLONE_NEWNET).map_err(|errno| {
            io::Error::new(
                io::Error::from(errno).kind(),
                SetnsError { what: what.to_string(), errno },
            )
        })?;
        Ok(f())
    })
}

/// Runs `f` in a brand-new, empty network namespace that disappears when `f` returns (only `lo`,
/// down). Used to probe TC attachment without touching any real interface.
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> io::Result<T> {
    run_on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
        Ok(f())
    })
}

/// Runs `f` on a fresh scoped thread (the only one whose namespace `f` may change) and returns
/// its result; a panic in `f` is resumed in the caller, a failure to start the thread is the
/// error of `Builder::spawn`.
fn run_on_thread<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    thread::scope(|s| {
        thread::Builder::new()
            .name("reach-netns".into())
            .spawn_scoped(s, f)?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets `lo` up in the current thread's namespace (a fresh namespace starts with it down).
pub fn loopback_up() -> io::Result<()> {
    // SIOCGIFFLAGS/SIOCSIFFLAGS on any socket of this namespace; no netlink needed.
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"));
    let fd = match sock {
        Ok(ref s) => std::os::fd::AsRawFd::as_raw_fd(s),
        // Binding fails while lo is down and no address exists; a raw socket() still works.
        Err(_) => return loopback_up_raw(),
    };
    set_lo_up(fd)
}

fn loopback_up_raw() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = set_lo_up(fd);
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    r
}

fn set_lo_up(fd: i32) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; zeroed is a valid initial state.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid fd and ifreq pointer for the duration of the calls.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS as libc::Ioctl, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_netns_inode() -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn new_netns_is_different_and_caller_is_untouched() {
        let before = current_netns_inode();
        let inside = in_new_netns(current_netns_inode).unwrap();
        assert_ne!(before, inside);
        assert_eq!(before, current_netns_inode());
    }

    #[test]
    fn entering_own_netns_by_path_sees_same_inode() {
        let me = current_netns_inode();
        let seen = in_netns(Path::new("/proc/self/ns/net"), current_netns_inode).unwrap();
        assert_eq!(me, seen);
    }

    #[test]
    fn entering_by_fd_sees_that_namespace_and_a_panic_comes_back_out() {
        let me = current_netns_inode();
        let own = File::open("/proc/self/ns/net").unwrap();
        assert_eq!(in_netns_fd(own.as_fd(), "own", current_netns_inode).unwrap(), me);
        let caught = std::panic::catch_unwind(|| in_netns_fd(own.as_fd(), "own", || panic!("x")));
        assert!(caught.is_err());
        assert_eq!(current_netns_inode(), me);
    }

    #[test]
    fn setns_failure_keeps_the_errno() {
        // Not a namespace file: setns(2) says EINVAL.
        let not_ns = File::open("/proc/self/stat").unwrap();
        let err = in_netns_fd(not_ns.as_fd(), "/proc/self/stat", || ()).unwrap_err();
        let setns = err.get_ref().and_then(|e| e.downcast_ref::<SetnsError>()).expect("SetnsError");
        assert_eq!(setns.errno, Errno::EINVAL);
        assert!(err.to_string().starts_with("setns into /proc/self/stat: "), "{err}");
    }

    #[test]
    fn missing_namespace_path_is_a_clear_error() {
        let err = in_netns(Path::new("/run/netns/reach-does-not-exist"), || ()).unwrap_err();
        assert!(err.to_string().contains("/run/netns/reach-does-not-exist"), "{err}");
    }
}
