//! A reach process that has to mount tracefs or securityfs mounts them in a mount namespace of
//! its own, entered at start-up: the mounts are then reach's alone and go with the process when
//! it ends, however it ends (a SIGKILLed run used to leave tracefs mounted for good, since no
//! later run could know nobody else needed it), and nobody can unmount them under it.
//!
//! unshare(CLONE_NEWNS) must run while the process has one thread (before the async runtime):
//! a mount namespace is per process here. The new namespace is made a slave of the one reach
//! started in, so what is mounted there later still reaches reach (a namespace `ip netns add`
//! pins under /run/netns, a container's), and nothing reach mounts goes the other way.
//! Commands whose mounts others must see (`reach lab` pins its namespaces) never enter one.
use std::{
    io,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use nix::{
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
};

static ENTERED: AtomicBool = AtomicBool::new(false);

/// Whether this process runs in a private mount namespace of its own ([`enter_if_needed`]).
pub fn entered() -> bool {
    ENTERED.load(Ordering::Relaxed)
}

/// What reach would have to mount: tracefs (formats, tracepoint ids) unless mounted at either
/// of its places, securityfs (the lockdown mode) unless mounted.
pub fn mounts_needed() -> Vec<&'static str> {
    let mut needed = Vec::new();
    if !Path::new("/sys/kernel/tracing/events").is_dir()
        && !Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        needed.push("tracefs");
    }
    if !Path::new("/sys/kernel/security/lsm").exists() {
        needed.push("securityfs");
    }
    needed
}

/// Enters a private mount namespace if reach will have to mount something; call before any
/// thread starts. Ok(false): nothing to mount, nothing done. An unshare the kernel refuses
/// (no CAP_SYS_ADMIN: the mount would fail too, with its own message) is returned, not fatal.
pub fn enter_if_needed() -> io::Result<bool> {
    if mounts_needed().is_empty() {
        return Ok(false);
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
    // Receive the parent's mount events, send none back.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(io::Error::from)?;
    ENTERED.store(true, Ordering::Relaxed);
    Ok(true)
}
