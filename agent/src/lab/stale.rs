//! Removing what a killed run left behind.
//!
//! Guards clean up on drop and during panics, but not after SIGKILL, an abort or a power cut.
//! Every lab object is named `reach-lab-<pid>-<start>-…` (see `name.rs`), so leftovers are those
//! whose creator is no longer running; objects of runs still in progress are never touched.
use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    error::{LabError, Result},
    handle::NetNsFd,
    name::LabName,
    netns::{self, RUN_NETNS},
    procs,
};

/// How long to wait for a stale namespace's processes to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A lab namespace found in /run/netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNamespace {
    pub name: String,
    pub parsed: LabName,
    /// Whether its creator is still running (if not, it is stale).
    pub owner_alive: bool,
}

/// A stale namespace that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedNamespace {
    pub name: String,
    /// Pid of the run that created it.
    pub owner_pid: u32,
    /// Processes that were still running in it and were killed.
    pub killed: Vec<i32>,
}

/// What [`clean_stale`] did.
#[derive(Debug, Default)]
pub struct StaleReport {
    pub namespaces: Vec<RemovedNamespace>,
    /// Private directories of firewalld fixtures.
    pub temp_dirs: Vec<PathBuf>,
    /// Cgroups a lab's dockerd made (its cgroup parent), their processes killed.
    pub cgroups: Vec<PathBuf>,
    /// Objects that could not be removed, with why.
    pub failed: Vec<(String, LabError)>,
}

impl StaleReport {
    /// Nothing was left behind (or everything was removed).
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Every lab namespace currently in /run/netns.
pub fn list_namespaces() -> Result<Vec<LabNamespace>> {
    let entries = match fs::read_dir(RUN_NETNS) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("listing {RUN_NETNS}"), e)),
    };
    let mut found: Vec<LabNamespace> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let parsed = LabName::parse(&name)?;
            Some(LabNamespace { owner_alive: parsed.owner_alive(), name, parsed })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Removes the namespaces (killing their processes: servers, firewalld, dbus-daemon) and the
/// fixture directories of lab runs that are no longer running. Errors on individual objects are
/// collected in the report; only failing to look at all is an error.
pub fn clean_stale() -> Result<StaleReport> {
    let mut report = StaleReport::default();
    for ns in list_namespaces()?.into_iter().filter(|ns| !ns.owner_alive) {
        match remove_namespace(&ns.name) {
            Ok(killed) => report.namespaces.push(RemovedNamespace {
                name: ns.name,
                owner_pid: ns.parsed.pid,
                killed,
            }),
            Err(e) => report.failed.push((ns.name, e)),
        }
    }
    // After the namespaces: their daemons (which used these directories) are dead now.
    let tmp = std::env::temp_dir();
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            let stale = LabName::parse(&name).is_some_and(|n| !n.owner_alive());
            if !stale || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => report.temp_dirs.push(path),
                Err(e) => report.failed.push((
                    path.display().to_string(),
                    LabError::io(format!("deleting {}", path.display()), e),
                )),
            }
        }
    }
    // Cgroups a lab's dockerd made for its containers (its cgroup parent is a lab name): their
    // processes — the containers', in namespaces of their own — killed, then the cgroups.
    for dir in stale_cgroups(Path::new("/sys/fs/cgroup")) {
        match remove_cgroup(&dir) {
            Ok(()) => report.cgroups.push(dir),
            Err(e) => report.failed.push((
                dir.display().to_string(),
                LabError::io(format!("removing cgroup {}", dir.display()), e),
            )),
        }
    }
    Ok(report)
}

/// The cgroups named by a dead lab's name, at the top of the unified hierarchy or of each v1
/// controller's.
fn stale_cgroups(root: &Path) -> Vec<PathBuf> {
    let stale = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(LabName::parse)
            .is_some_and(|n| !n.owner_alive())
    };
    let Ok(top) = fs::read_dir(root) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in top.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let path = entry.path();
        if stale(&path) {
            found.push(path);
            continue;
        }
        // A v1 controller's hierarchy (cpu, memory, …; `unified` is v2 under hybrid).
        if let Ok(inner) = fs::read_dir(&path) {
            found.extend(inner.flatten().map(|e| e.path()).filter(|p| p.is_dir() && stale(p)));
        }
    }
    found
}

/// Kills every process in `dir` and its descendants, then removes them, deepest first.
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(children) = fs::read_dir(&dirs[i]) {
            dirs.extend(children.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        i += 1;
    }
    for d in &dirs {
        for pid in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    // A cgroup with processes cannot be removed: give the killed ones a moment to exit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for d in dirs.iter().rev() {
        loop {
            match fs::remove_dir(d) {
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                other => {
                    other?;
                    break;
                }
            }
        }
    }
    Ok(())
}

fn remove_namespace(name: &str) -> Result<Vec<i32>> {
    let path = Path::new(RUN_NETNS).join(name);
    // A creation that died half-way leaves a plain file that is not a namespace: just delete it.
    let killed = match NetNsFd::open(&path) {
        Ok(handle) => procs::kill_all_in(handle.id(), KILL_TIMEOUT),
        Err(_) => Ok(Vec::new()),
    };
    let removed = netns::remove_mount(&path);
    let killed = killed?;
    removed?;
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead run's cgroup is found at the top of the unified hierarchy and of a v1
    /// controller's, and removed with what it holds; a live run's and foreign ones are not.
    #[test]
    fn a_dead_runs_cgroups_are_found_and_removed_a_live_ones_not() {
        let root = tempfile::tempdir().unwrap();
        let dead = format!("{}{}-1-0-dockerd-abc", super::super::PREFIX, std::process::id());
        let live = format!("{}-abc", LabName::next("dockerd"));
        for dir in [
            dead.clone(),
            format!("cpu/{dead}/docker-id"),
            format!("cpu/{live}"),
            "system.slice".into(),
            "memory/docker".into(),
        ] {
            fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let mut found = stale_cgroups(root.path());
        found.sort();
        assert_eq!(found, [root.path().join("cpu").join(&dead), root.path().join(&dead)]);
        for d in &found {
            remove_cgroup(d).unwrap();
        }
        assert!(!root.path().join("cpu").join(&dead).exists());
        assert!(root.path().join("cpu").join(&live).exists());
        assert!(stale_cgroups(root.path()).is_empty());
    }
}
