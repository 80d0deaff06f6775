//! Running the fixture's programs chrooted in a firewalld root directory (see
//! `firewalld_build.rs`), inside the fixture's private mount namespace.
//!
//! The root is a plain directory shared by every fixture and never written: what the daemons
//! write (/etc/firewalld, /run, /var/log) and what they need from the running system (/proc,
//! /sys of the lab network namespace, /dev) is mounted over the root's own directories only in
//! the private mount namespace, so it disappears with the daemons. The host's temporary
//! directory is bind-mounted at the same path inside the root: the fixture's private directory
//! (bus socket, bus configuration, logs) then has one path for the host's tests and the
//! chrooted daemons alike, so `Firewalld::bus_address` works from both sides.
use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use nix::mount::{MsFlags, mount};

use super::{
    error::{LabError, Result},
    fixture_dir::{ETC_FIREWALLD, Layout},
};

/// How a command enters the root: optionally the fixture's mount namespace first (for commands
/// spawned from the host's), then `chroot` and `chdir("/")`.
#[derive(Debug, Clone)]
pub(crate) struct Chroot {
    root: Arc<CString>,
    mnt_ns: Option<Arc<OwnedFd>>,
}

impl Chroot {
    /// `mnt_ns`: an fd on the mount namespace to enter before the chroot (None: the one the
    /// spawning thread is in).
    pub(crate) fn new(root: &Path, mnt_ns: Option<Arc<OwnedFd>>) -> Result<Self> {
        let root = CString::new(root.as_os_str().as_bytes()).map_err(|_| LabError::Invalid {
            what: "firewalld root",
            detail: format!("{} contains a NUL byte", root.display()),
        })?;
        Ok(Self { root: Arc::new(root), mnt_ns })
    }

    /// An fd on process `pid`'s mount namespace (a fixture daemon's).
    pub(crate) fn mount_ns_of(pid: i32) -> Result<Arc<OwnedFd>> {
        let path = format!("/proc/{pid}/ns/mnt");
        let file =
            std::fs::File::open(&path).map_err(|e| LabError::io(format!("opening {path}"), e))?;
        Ok(Arc::new(OwnedFd::from(file)))
    }

    /// Makes `cmd` run chrooted (after any pre-exec step already registered, such as entering
    /// the lab network namespace). The program path of `cmd` is then resolved inside the root.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        let root = self.root.clone();
        let mnt_ns = self.mnt_ns.clone();
        let enter = move || -> io::Result<()> {
            // Runs in the forked child: only syscalls on data prepared before the fork.
            if let Some(fd) = &mnt_ns {
                // SAFETY: setns on an fd kept open by the Arc.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // SAFETY: NUL-terminated strings that outlive the calls.
            if unsafe { libc::chroot(root.as_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: `enter` neither allocates nor takes locks.
        unsafe { cmd.pre_exec(enter) };
    }
}

/// Mounts, in the calling thread's private mount namespace (see `mountns::enter_private`), what
/// the daemons need inside `root`. Every mount point must already exist in the root: the root
/// is never written.
pub(crate) fn mount_in_root(root: &Path, layout: &Layout) -> Result<()> {
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    let temp = std::env::temp_dir();
    let binds: [(PathBuf, PathBuf, MsFlags); 5] = [
        (layout.etc.clone(), inside(ETC_FIREWALLD), MsFlags::MS_BIND),
        (layout.run.clone(), inside("/run"), MsFlags::MS_BIND),
        (layout.log.clone(), inside("/var/log"), MsFlags::MS_BIND),
        ("/dev".into(), inside("/dev"), MsFlags::MS_BIND | MsFlags::MS_REC),
        (temp.clone(), inside(&temp.to_string_lossy()), MsFlags::MS_BIND),
    ];
    for (source, target, flags) in &binds {
        if !target.is_dir() {
            return Err(LabError::Invalid {
                what: "firewalld root",
                detail: format!(
                    "{} has no directory {} to mount {} on",
                    root.display(),
                    target.display(),
                    source.display()
                ),
            });
        }
        mount(Some(source.as_path()), target.as_path(), None::<&str>, *flags, None::<&str>)
            .map_err(|e| {
                LabError::sys(
                    format!("bind-mounting {} on {}", source.display(), target.display()),
                    e,
                )
            })?;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &inside("/proc"), Some("proc"), flags, None::<&str>)
        .map_err(|e| LabError::sys(format!("mounting proc in {}", root.display()), e))?;
    // Mounted from inside the lab network namespace: it shows the lab's interfaces.
    mount(Some("sysfs"), &inside("/sys"), Some("sysfs"), flags, None::<&str>)
        .map_err(|e| LabError::sys(format!("mounting sysfs in {}", root.display()), e))?;
    Ok(())
}
