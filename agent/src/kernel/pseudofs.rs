//! Pseudo filesystems reach needs (tracefs, securityfs): find them, mount them if absent, and
//! unmount only what reach mounted, once no reach process needs it any more, so the machine is
//! left as it was found.
//!
//! Several reach processes run at once (`reach lab` runs its `reach why`s side by side; an
//! operator runs `reach why` beside `reach agent`), and a mount is shared by all of them: the
//! process that mounted tracefs must not pull it from under another one still attaching (seen:
//! "sys_enter_bind/id: No such file or directory"). So the owners are counted across processes
//! with two flock(2) files per mount point and mount namespace in /run/lock/reach:
//! `<name>.users`, held shared by
//! every reach process using a mount reach made, and `<name>.guard`, held exclusively around
//! each mount or unmount decision. The last user out (its exclusive try on `.users` succeeds)
//! unmounts. `<name>.ours` exists while the mount is reach's, so a process that finds tracefs
//! mounted knows whether to share ownership or leave it alone. A killed process's locks go
//! with it; its mount stays reach's, and the next reach to use it unmounts it at its end.
//! Without /run/lock (read-only, absent) the count is per process, as the only safe fallback.
//! A reach command that attaches programs mounts in a mount namespace of its own instead
//! (kernel/private_mounts.rs), where none of this is needed and a killed run leaves nothing;
//! the counting serves the library used in-process (tests, `reach lab`).
use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    mount::{MntFlags, MsFlags, mount, umount2},
};

/// Where the cross-process lock files live (a tmpfs: gone at reboot, with the mounts).
const LOCK_DIR: &str = "/run/lock/reach";

/// A pseudo filesystem made available at `path`; unmounted when the last guard of the last
/// reach process that needed reach's own mount drops.
#[derive(Debug)]
pub struct PseudoFs {
    pub path: PathBuf,
    /// True when the mount is reach's (this process or another reach process made it).
    pub mounted_by_us: bool,
}

/// One mount point reach owns a share of in this process.
struct Share {
    /// Guards alive in this process.
    guards: usize,
    /// The shared lock on `<name>.users` (None without /run/lock).
    users: Option<Flock<File>>,
}

/// Mount points whose reach mount this process shares, with their guard counts: two users in
/// one process (parallel tests, doctor beside the probes) share one cross-process share.
static OUR_MOUNTS: Mutex<Option<HashMap<PathBuf, Share>>> = Mutex::new(None);

/// The lock files of `path` in this mount namespace (mounts are per mount namespace, /run is
/// usually shared by all): `/sys/kernel/tracing` →
/// `/run/lock/reach/mnt-<namespace inode>-sys-kernel-tracing.*`.
fn lock_file(path: &Path, suffix: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let mnt_ns = fs::metadata("/proc/self/ns/mnt").map(|m| m.ino()).unwrap_or_default();
    Path::new(LOCK_DIR).join(lock_name(mnt_ns, path, suffix))
}

fn lock_name(mnt_ns: u64, path: &Path, suffix: &str) -> String {
    let name = path.to_string_lossy().trim_matches('/').replace('/', "-");
    format!("mnt-{mnt_ns}-{name}.{suffix}")
}

fn open_lock(path: &Path, suffix: &str) -> Option<File> {
    // In a mount namespace of its own (kernel/private_mounts.rs) nobody else sees reach's
    // mounts: nothing to count across processes, and no lock file named for a namespace that
    // dies with the process.
    if super::private_mounts::entered() {
        return None;
    }
    fs::create_dir_all(LOCK_DIR).ok()?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_file(path, suffix))
        .ok()
}

/// `<name>.guard` held exclusively: one mount or unmount decision at a time, machine-wide.
fn decision(path: &Path) -> Option<Flock<File>> {
    loop {
        match Flock::lock(open_lock(path, "guard")?, FlockArg::LockExclusive) {
            Ok(l) => return Some(l),
            Err((_, Errno::EINTR)) => continue,
            Err(_) => return None,
        }
    }
}

fn shared_users(path: &Path) -> Option<Flock<File>> {
    Flock::lock(open_lock(path, "users")?, FlockArg::LockShared).ok()
}

impl Drop for PseudoFs {
    fn drop(&mut self) {
        if !self.mounted_by_us {
            return;
        }
        let mut guard = OUR_MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let shares = guard.get_or_insert_with(HashMap::new);
        let Some(share) = shares.get_mut(&self.path) else { return };
        share.guards = share.guards.saturating_sub(1);
        if share.guards > 0 {
            return;
        }
        let Some(share) = shares.remove(&self.path) else { return };
        let _decision = decision(&self.path);
        let last = match share.users {
            // Without the lock files this process is the only owner it can know of.
            None => true,
            Some(users) => {
                drop(users);
                open_lock(&self.path, "users")
                    .is_some_and(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok())
            }
        };
        if last {
            // Lazy detach: programs attached through it keep working.
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(lock_file(&self.path, "ours"));
        }
    }
}

/// Makes `fstype` available at `path`: already mounted there → reuse (sharing ownership when
/// reach mounted it); else mount it. `marker` is a file that exists only when the filesystem
/// is mounted.
pub fn ensure(fstype: &str, path: &Path, marker: &str) -> io::Result<PseudoFs> {
    let mut guard = OUR_MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let shares = guard.get_or_insert_with(HashMap::new);
    if let Some(share) = shares.get_mut(path) {
        share.guards += 1;
        return Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: true });
    }
    let _decision = decision(path);
    let ours = lock_file(path, "ours");
    if path.join(marker).exists() {
        if !ours.exists() {
            return Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: false });
        }
        shares.insert(path.to_path_buf(), Share { guards: 1, users: shared_users(path) });
        return Ok(PseudoFs { path: path.to_path_buf(), mounted_by_us: true });
    }
    // Not mounted: a `.ours` left from a mount somebody removed since says nothing now.
    let _ = fs::remove_file(&ours);
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
    let users = shared_users(path);
    if users.is_some() {
        let _ = File::create(&ours);
    }
    shares.insert(path.to_path_buf(), Share { guards: 1, users });
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

    #[test]
    fn lock_files_are_named_for_the_mount_point() {
        assert_eq!(
            lock_name(4026531841, Path::new("/sys/kernel/tracing"), "users"),
            "mnt-4026531841-sys-kernel-tracing.users"
        );
        assert!(lock_file(Path::new("/sys/kernel/tracing"), "ours").starts_with(LOCK_DIR));
    }
}
