//! Which clsact qdiscs reach created, kept on disk (/run/reach/clsact/<netns>-<ifindex>, holding
//! the creator's pid and start time) so that a run after a SIGKILLed one can tell its own stale
//! qdisc from another tool's and clean it up. tmpfs /run: records do not survive a reboot, and
//! neither do the qdiscs.
use std::{fs, path::PathBuf};

const DIR: &str = "/run/reach/clsact";

fn path(netns: u64, ifindex: u32) -> PathBuf {
    PathBuf::from(DIR).join(format!("{netns}-{ifindex}"))
}

/// This process's identity: pid plus start time, so a reused pid does not look alive.
fn me() -> String {
    let pid = std::process::id();
    format!("{pid} {}", start_time(pid).unwrap_or(0))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime); the comm in parentheses may contain spaces, so split after ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Records that this process created the clsact qdisc of (netns, ifindex).
pub fn remember(netns: u64, ifindex: u32) {
    if fs::create_dir_all(DIR).is_ok() {
        let _ = fs::write(path(netns, ifindex), me());
    }
}

/// Drops the record (the qdisc was removed).
pub fn forget(netns: u64, ifindex: u32) {
    let _ = fs::remove_file(path(netns, ifindex));
}

/// True when reach created that qdisc in a process that no longer exists.
pub fn stale(netns: u64, ifindex: u32) -> bool {
    let Ok(text) = fs::read_to_string(path(netns, ifindex)) else { return false };
    let mut parts = text.split_whitespace();
    let (Some(pid), Some(started)) = (
        parts.next().and_then(|p| p.parse::<u32>().ok()),
        parts.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return true;
    };
    start_time(pid) != Some(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_record_is_live_and_dead_pid_is_stale() {
        // Fake namespace inode: no real namespace has inode 1.
        remember(1, 4242);
        let record = fs::read_to_string(path(1, 4242)).expect("remember wrote the record");
        let pid = std::process::id();
        let started = start_time(pid).expect("our own start time");
        assert_eq!(record, format!("{pid} {started}"), "the record names this process");
        assert!(!stale(1, 4242), "our own record is not stale");
        fs::write(path(1, 4243), "999999999 1").unwrap();
        assert!(stale(1, 4243));
        forget(1, 4242);
        forget(1, 4243);
        // forget removes the file itself; `!stale` would also hold with no record at all.
        assert!(!path(1, 4242).exists(), "forget left {}", path(1, 4242).display());
        assert!(!path(1, 4243).exists(), "forget left {}", path(1, 4243).display());
    }
}
