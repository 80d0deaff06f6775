//! A private mount namespace for a lab daemon, entered by the calling (dedicated) thread.
//!
//! The firewalld fixture must not read or write the host's /etc/firewalld, /run or /var/log.
//! `unshare(CLONE_NEWNS)` on a thread of our own gives that thread a private copy of the mount
//! table; the daemons it spawns inherit it, and it disappears with them. Every step is checked
//! before the next: a bind mount done in the host's mount namespace by mistake would shadow the
//! real /etc/firewalld, so we verify the switch before mounting anything.
use std::path::{Path, PathBuf};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
};

use super::{
    error::{LabError, Result},
    netns::RUN_NETNS,
    nsid::NsId,
};

/// `source` (a host directory) bind-mounted over `target` in the private mount namespace.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub(crate) source: PathBuf,
    pub(crate) target: PathBuf,
}

/// Moves the calling thread into a new mount namespace and applies `binds`. Call only on a
/// thread that exits afterwards (it never returns to the host's mount namespace).
pub(crate) fn enter_private(binds: &[Bind]) -> Result<()> {
    let mnt_ns = |who: &str| NsId::of_path_or_link(Path::new(&format!("/proc/{who}/ns/mnt")));
    let before = mnt_ns("thread-self")?;
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| LabError::privileged("creating a mount namespace", e))?;
    let mine = mnt_ns("thread-self")?;
    // PID 1's may be unreadable (see NsId::init); ours suffice to prove the switch.
    if mine == before || mine == mnt_ns("self")? || mnt_ns("1").ok() == Some(mine) {
        return Err(LabError::Invalid {
            what: "mount namespace",
            detail: "unshare(CLONE_NEWNS) did not give this thread a private mount namespace; not mounting anything"
                .into(),
        });
    }

    // Slave, not private: unmounts on the host (a lab namespace being deleted from /run/netns)
    // still propagate in, while nothing mounted here propagates out.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|e| LabError::sys("making / a slave mount in the private mount namespace", e))?;
    // Our copy of /run/netns would pin every lab namespace that exists right now; drop it.
    let _ = umount2(RUN_NETNS, MntFlags::MNT_DETACH);

    for bind in binds {
        mount(
            Some(bind.source.as_path()),
            bind.target.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            LabError::sys(
                format!("bind-mounting {} on {}", bind.source.display(), bind.target.display()),
                e,
            )
        })?;
    }

    // A sysfs mounted from inside the lab network namespace shows its interfaces, as
    // `ip netns exec` arranges; the daemons work without it, so a failure is only logged.
    if let Err(e) = mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        tracing::debug!("lab: mounting a private /sys: {e}");
    }
    Ok(())
}
