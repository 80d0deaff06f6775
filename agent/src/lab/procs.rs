//! Processes: which ones live in a namespace, killing them, and telling a live owner from a
//! dead one.
use std::{
    collections::BTreeSet,
    fs, thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{
    error::{LabError, Result},
    nsid::NsId,
};

/// Pids whose main thread is in namespace `id` (never our own pid: a `run_in` thread of ours
/// may be in there, but the process is not the lab's to kill).
pub(crate) fn pids_in(id: NsId) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && NsId::of_pid(pid) == Some(id))
        .collect()
}

/// SIGKILLs every process in namespace `id` until none is left (a process may fork while we
/// kill), bounded by `timeout`. Zombies count as gone: they have left their namespaces. Returns
/// the pids killed.
pub(crate) fn kill_all_in(id: NsId, timeout: Duration) -> Result<Vec<i32>> {
    let deadline = Instant::now() + timeout;
    let mut killed = BTreeSet::new();
    loop {
        let pids = pids_in(id);
        if pids.is_empty() {
            return Ok(killed.into_iter().collect());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!("killing processes {pids:?} in {id}"),
                after: timeout,
            });
        }
        for pid in pids {
            // ESRCH: it exited meanwhile, which is what we want.
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), `None` if it
/// does not exist or is a zombie. Pid + start time identifies a process across pid reuse.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses: split after its closing paren.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok() // field 22
}

/// Whether the process that created a lab object (pid + start time) is still running.
pub(crate) fn is_alive(pid: u32, started: u64) -> bool {
    start_time(pid) == Some(started)
}

/// Our parent, its parent, … up to (not including) PID 1; bounded against /proc oddities.
pub(crate) fn ancestors() -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = std::process::id() as i32;
    while chain.len() < 64 {
        let Some(parent) = parent_of(pid) else { break };
        if parent <= 1 {
            break;
        }
        chain.push(parent);
        pid = parent;
    }
    chain
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok() // field 4
}

/// This process's (pid, start time).
pub(crate) fn me() -> (u32, u64) {
    let pid = std::process::id();
    // /proc/self/stat is always readable for ourselves; 0 would only make our objects look
    // stale to a cleaner, never make a stale one look alive.
    (pid, start_time(pid).unwrap_or(0))
}
