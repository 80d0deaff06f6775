//! Cleaning what a containerd run left (see [`super::footprint`]): run after containerd is
//! stopped, whether or not the pods were removed through the CRI first.
use std::{fs, io, path::Path, thread, time::Duration};

use nix::{
    mount::{MntFlags, umount2},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::footprint::Footprint;

/// Kills the run's processes, unmounts and removes what it left. Errors are collected, not
/// fatal: every step is tried. Returns what could not be cleaned.
pub fn sweep(fp: &Footprint) -> Vec<String> {
    let mut errors = Vec::new();
    // Containers first (a shim would restart nothing, but its children are reparented to init).
    for _ in 0..50 {
        let procs = fp.processes();
        if procs.is_empty() {
            break;
        }
        for (pid, _) in procs {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(100));
    }
    for mount in fp.mounts() {
        if let Err(e) = umount2(&mount, MntFlags::MNT_DETACH) {
            errors.push(format!("umount {}: {e}", mount.display()));
        }
    }
    for entry in fp.new_entries() {
        // A pod netns left by a sandbox that was not removed is a bind mount: unmount first.
        if entry.starts_with("/run/netns") {
            let _ = umount2(&entry, MntFlags::MNT_DETACH);
        }
        if let Err(e) = remove_any(&entry) {
            errors.push(format!("removing {}: {e}", entry.display()));
        }
    }
    for dir in fp.new_dirs() {
        // Only if empty: someone else's may have appeared meanwhile.
        if let Err(e) = fs::remove_dir(&dir) {
            errors.push(format!("rmdir {}: {e}", dir.display()));
        }
    }
    for tree in fp.cgroup_dirs() {
        if let Err(e) = rmdir_tree(&tree) {
            errors.push(format!("removing cgroup {}: {e}", tree.display()));
        }
    }
    errors
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a cgroup and its descendants, children first (a cgroup directory is removed with
/// rmdir, never by deleting its files).
pub fn rmdir_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            rmdir_tree(&entry.path())?;
        }
    }
    // A cgroup whose last process just died can be busy for a moment.
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
