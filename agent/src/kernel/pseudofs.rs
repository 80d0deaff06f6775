//! Pseudo filesystems reach needs (tracefs, securityfs): find them, mount them if absent, and
//! unmount on drop only what we mounted ourselves, so the machine is left as it was found.
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A pseudo filesystem made available at `path`; unmounted when the last guard of this
/// process that needed our own mount drops.
#[derive(Debug)]
pub struct PseudoFs {
    pub path: PathBuf,
    /// True when reach mounted it (and will unmount it).
    pub mounted_by_us: bool,
}

/// Guards alive per mount point that reach mounted itself. Without this, two users in one
/// process (parallel tests, doctor beside the probes) would unmount under each other.
static OUR_MOUNTS: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

impl Drop for PseudoFs {
    fn drop(&mut self) {
        if !self.mounted_by_us {
            return;
        }
        let mut guard = OUR_MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let counts = guard.get_or_insert_with(HashMap::new);
        let count = counts.entry(self.path.clone()).or_insert(1);
        *count -= 1;
        if *count == 0 {
            counts.remove(&self.path);
            // Lazy detach: programs attached through it keep working.
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
    }
}

/// Makes `fstype` available at `path`: already mounted there → reuse; else mount it.
/// `marker` is a file that exists only when the filesystem is mounted.
pub fn ensure(fstype: &str, path: &Path, marker: &str) -> io::Result<PseudoFs> {
    let mut guard = OUR_MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let counts = guard.get_or_insert_with(HashMap::new);
    if let Some(count) = counts.get_mut(path) {
        *count += 1;
        return Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: true });
    }
    if path.join(marker).exists() {
        return Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: false });
    }
    if !supported(fstype) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the kernel has no {fstype} (not in /proc/filesystems)"),
        ));
    }
    if !path.is_dir() {
        // /sys is not writable for mkdir; a missing mount point means the kernel lacks it.
        fs::create_dir_all(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} missing and cannot be created: {e}", path.display()),
            )
        })?;
    }
    mount(
        Some(fstype),
        path,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("mount -t {fstype} {}: {e}", path.display())))?;
    counts.insert(path.to_path_buf(), 1);
    Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: true })
}

/// Whether /proc/filesystems lists `fstype`.
pub fn supported(fstype: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fstype)))
        .unwrap_or(false)
}

/// tracefs at /sys/kernel/tracing (or the legacy /sys/kernel/debug/tracing if that is mounted).
pub fn tracefs() -> io::Result<PseudoFs> {
    let legacy = Path::new("/sys/kernel/debug/tracing");
    if legacy.join("events").is_dir() && !Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(PseudoFs { path: legacy.to_path_buf(), mounted_by_us: false });
    }
    ensure("tracefs", Path::new("/sys/kernel/tracing"), "events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_guards_keep_the_mount_until_the_last_drops() {
        // Restoring the original state is asserted by the doctor integration test (one process);
        // here other unit tests may hold guards concurrently.
        let a = tracefs().unwrap();
        let b = tracefs().unwrap();
        drop(a);
        assert!(b.path.join("events").is_dir(), "first drop must not unmount under the second");
        drop(b);
    }
}
