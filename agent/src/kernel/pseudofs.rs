//! Pseudo filesystems reach needs (tracefs, securityfs): find them, mount them if absent, and
//! unmount on drop only what we mounted ourselves, so the machine is left as it was found.
use std::{fs, io, path::{Path, PathBuf}};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A pseudo filesystem made available at `path`; unmounted on drop if this guard mounted it.
#[derive(Debug)]
pub struct PseudoFs {
    pub path: PathBuf,
    /// True when reach mounted it (and will unmount it).
    pub mounted_by_us: bool,
}

impl Drop for PseudoFs {
    fn drop(&mut self) {
        if self.mounted_by_us {
            // Lazy detach: a tracepoint attached meanwhile keeps working; nothing to report.
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
    }
}

/// Makes `fstype` available at `path`: already mounted there → reuse; else mount it.
/// `marker` is a file that exists only when the filesystem is mounted.
pub fn ensure(fstype: &str, path: &Path, marker: &str) -> io::Result<PseudoFs> {
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
            io::Error::new(e.kind(), format!("{} missing and cannot be created: {e}", path.display()))
        })?;
    }
    mount(Some(fstype), path, Some(fstype), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
        .map_err(|e| io::Error::other(format!("mount -t {fstype} {}: {e}", path.display())))?;
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
