//! Names of lab objects: `reach-lab-<pid>-<start>-<seq>-<label>`.
//!
//! The creator's pid and start time are in the name so that a later run can tell the leftovers
//! of a killed run (creator gone) from the objects of a run still in progress, without any state
//! file: the name is the state. The start time guards against pid reuse; the sequence number
//! keeps names unique between threads of one run.
use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use super::procs;

/// Prefix of every network namespace and temporary directory the lab creates.
pub const PREFIX: &str = "reach-lab-";

/// Longest label kept in a name; longer ones are cut (names are for humans to recognise).
const MAX_LABEL: usize = 40;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A parsed lab name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabName {
    /// Pid of the process that created the object.
    pub pid: u32,
    /// Its start time (clock ticks since boot), to survive pid reuse.
    pub started: u64,
    /// Per-process sequence number.
    pub seq: u64,
    /// What the object is for (`[A-Za-z0-9_.-]`).
    pub label: String,
}

impl LabName {
    /// A fresh name owned by this process.
    pub fn next(label: &str) -> Self {
        let (pid, started) = procs::me();
        Self { pid, started, seq: SEQ.fetch_add(1, Ordering::Relaxed), label: sanitize(label) }
    }

    /// Parses `reach-lab-<pid>-<start>-<seq>-<label>`; `None` for anything else (not ours).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(4, '-');
        let pid = parts.next()?.parse().ok()?;
        let started = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let label = parts.next()?.to_string();
        Some(Self { pid, started, seq, label })
    }

    /// Whether the creating process is still running.
    pub fn owner_alive(&self) -> bool {
        procs::is_alive(self.pid, self.started)
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}-{}-{}-{}", self.pid, self.started, self.seq, self.label)
    }
}

fn sanitize(label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' })
        .take(MAX_LABEL)
        .collect();
    if clean.is_empty() { "ns".to_string() } else { clean }
}
