//! `NetNs`: a named network namespace (visible to `ip netns`) that is removed when dropped.
//!
//! Created natively rather than with `ip netns add` so that failures come back as errors with
//! context, and so that Drop (which also runs while a test panics) needs no subprocess. The
//! layout is iproute2's own: a bind mount of the namespace on `/run/netns/NAME`, so `ip netns`,
//! `ip -n NAME` and `ip link … netns NAME` all work on lab namespaces.
use std::{
    fs::{self, OpenOptions},
    io,
    ops::Deref,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
    thread,
    time::Duration,
};

use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
    sys::socket::{AddressFamily, SockFlag, SockType, socket},
};

use super::{
    error::{LabError, Result},
    handle::NetNsFd,
    name::LabName,
    procs,
};

/// Where `ip netns` keeps named namespaces.
pub const RUN_NETNS: &str = "/run/netns";

/// How long teardown waits for the processes in a namespace to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A lab network namespace: `lo` up, nothing else. Dropping it kills every process still in it,
/// unmounts and deletes the name; the kernel then frees the namespace with its interfaces
/// (veth peers in other namespaces included) once nothing else holds it (an open socket, a
/// [`NetNsFd`] opened separately).
///
/// Derefs to [`NetNsFd`] for running things inside it.
#[derive(Debug)]
pub struct NetNs {
    handle: Option<NetNsFd>,
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates `reach-lab-<pid>-<start>-<seq>-<label>`.
    pub fn new(label: &str) -> Result<Self> {
        Self::with_name(&LabName::next(label).to_string())
    }

    /// Creates a namespace with exactly this name (fails if it exists). Only names made by
    /// [`LabName`] are recognised by [`super::clean_stale`] after a crash.
    pub fn with_name(name: &str) -> Result<Self> {
        validate(name)?;
        let path = Path::new(RUN_NETNS).join(name);
        create(&path)?;
        match NetNsFd::open(&path) {
            Ok(handle) => Ok(Self { handle: Some(handle), name: name.to_string(), path }),
            Err(e) => {
                let _ = remove_mount(&path);
                Err(e)
            }
        }
    }

    /// The `ip netns` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open handle (also reachable through Deref).
    pub fn handle(&self) -> &NetNsFd {
        self.handle
            .as_ref()
            .expect("NetNs handle is only taken by teardown, which consumes or drops self")
    }

    /// Tears down now, reporting errors that Drop can only log. Returns the pids it killed.
    pub fn remove(mut self) -> Result<Vec<i32>> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<Vec<i32>> {
        let Some(handle) = self.handle.take() else { return Ok(Vec::new()) };
        let killed = procs::kill_all_in(handle.id(), KILL_TIMEOUT);
        drop(handle);
        // Remove the name even if some process refused to die: it would otherwise look like
        // a live lab to everyone until this process exits.
        let removed = remove_mount(&self.path);
        let killed = killed?;
        removed?;
        Ok(killed)
    }
}

impl Deref for NetNs {
    type Target = NetNsFd;
    fn deref(&self) -> &NetNsFd {
        self.handle()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!("lab: tearing down network namespace {}: {e}", self.name);
        }
    }
}

fn validate(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 200;
    if bad {
        return Err(LabError::Invalid { what: "namespace name", detail: format!("{name:?}") });
    }
    Ok(())
}

fn create(path: &Path) -> Result<()> {
    fs::create_dir_all(RUN_NETNS).map_err(|e| LabError::io(format!("creating {RUN_NETNS}"), e))?;
    make_run_netns_shared()?;
    OpenOptions::new().write(true).create_new(true).mode(0o000).open(path).map_err(|e| match e
        .kind()
    {
        io::ErrorKind::AlreadyExists => LabError::Invalid {
            what: "namespace name",
            detail: format!("{} already exists", path.display()),
        },
        _ => LabError::io(format!("creating {}", path.display()), e),
    })?;
    // unshare(CLONE_NEWNET) affects only this helper thread, which then pins the new namespace
    // on the file and exits; the caller's thread never leaves its namespace.
    let made = thread::scope(|scope| {
        thread::Builder::new()
            .name("lab-netns-new".into())
            .spawn_scoped(scope, || -> Result<()> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| LabError::privileged("creating a network namespace", e))?;
                loopback_up()?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    LabError::privileged(
                        format!("bind-mounting the new namespace on {}", path.display()),
                        e,
                    )
                })
            })
            .map_err(|e| LabError::io("starting a thread to create a network namespace", e))?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// As `ip netns add` does: /run/netns becomes a shared mount so that mounts and unmounts of
/// names propagate into mount namespaces created meanwhile (`ip netns exec`, the firewalld
/// fixture), instead of copies there keeping deleted namespaces alive.
fn make_run_netns_shared() -> Result<()> {
    // Two threads racing through the bind-to-itself step would stack two mounts.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let share = || {
        mount(
            None::<&str>,
            RUN_NETNS,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        // Not a mount point yet: make it one.
        Err(Errno::EINVAL) => {
            mount(
                Some(RUN_NETNS),
                RUN_NETNS,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| LabError::privileged(format!("bind-mounting {RUN_NETNS} on itself"), e))?;
            share()
                .map_err(|e| LabError::privileged(format!("making {RUN_NETNS} a shared mount"), e))
        }
        Err(e) => Err(LabError::privileged(format!("making {RUN_NETNS} a shared mount"), e)),
    }
}

/// Unmounts and deletes a `/run/netns` entry; both steps tolerate it being already gone.
pub(crate) fn remove_mount(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (creation died half-way); ENOENT: already gone.
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => return Err(LabError::privileged(format!("unmounting {}", path.display()), e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io(format!("deleting {}", path.display()), e)),
    }
}

/// Sets `lo` up in the calling thread's namespace (a new namespace starts with it down).
fn loopback_up() -> Result<()> {
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| LabError::sys("socket() for configuring lo", e))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a valid socket and a valid ifreq for the duration of each call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(LabError::io("reading lo's flags", io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(LabError::io("setting lo up", io::Error::last_os_error()));
        }
    }
    Ok(())
}
