//! What a containerd run can leave on the host outside its own directory, recorded before it
//! starts, and the check that nothing is left after it stops.
//!
//! containerd 1.6 still uses global paths: shim sockets in /run/containerd/s/, the CNI result
//! cache in /var/lib/cni/results/, pod network namespaces bind-mounted at
//! /var/run/netns/cni-<uuid>; runc makes the pods' cgroups (kubelet would remove the pod's own
//! cgroup, so nobody else does). Processes: containerd, its shims and the containers' processes.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use super::config::{BRIDGE, NETWORK};

/// Directories whose new entries are the run's, and the names of those that can be: other
/// tests make namespaces in /run/netns at the same time (`reach-lab-…`), which are theirs.
/// Only containerd names pod namespaces `cni-<uuid>`; CNI results are `<network>-<id>-<if>`,
/// for our network and the loopback one containerd's go-cni adds (`cni-loopback`).
pub const WATCHED_DIRS: &[(&str, &[&str])] = &[
    ("/run/netns", &["cni-"]),
    ("/run/containerd/s", &[""]),
    ("/var/lib/cni/results", &[NETWORK, "cni-loopback-"]),
    ("/var/lib/cni/networks", &[NETWORK]),
];
/// Directories a run may create (when absent before, they must be gone after).
pub const CREATED_DIRS: &[&str] = &[
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni/networks",
    "/var/lib/cni",
];

/// Where one harness could leave things.
#[derive(Clone, Debug)]
pub struct Footprint {
    /// The harness's private directory (containerd root/state, sockets).
    pub dir: PathBuf,
    /// The top of the pods' cgroups in every hierarchy (`/reach-cri-…`).
    pub cgroup_prefix: String,
    /// containerd's pid (the shims carry its socket address on their command line).
    pub containerd_pid: Option<i32>,
    pub address: PathBuf,
    /// Entries of [`WATCHED_DIRS`] before the run.
    pub before: BTreeSet<PathBuf>,
    /// [`CREATED_DIRS`] that existed before the run.
    pub dirs_before: BTreeSet<PathBuf>,
}

impl Footprint {
    pub fn record(dir: &Path, cgroup_prefix: &str) -> Footprint {
        Footprint {
            dir: dir.to_path_buf(),
            cgroup_prefix: cgroup_prefix.to_string(),
            containerd_pid: None,
            address: dir.join("containerd.sock"),
            before: watched_entries(),
            dirs_before: CREATED_DIRS.iter().map(PathBuf::from).filter(|d| d.exists()).collect(),
        }
    }

    /// Entries of the watched directories that were not there before.
    pub fn new_entries(&self) -> Vec<PathBuf> {
        watched_entries().into_iter().filter(|p| !self.before.contains(p)).collect()
    }

    /// Directories the run created that still exist.
    pub fn new_dirs(&self) -> Vec<PathBuf> {
        CREATED_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| d.exists() && !self.dirs_before.contains(d))
            .collect()
    }

    /// Our pods' cgroup trees, one per hierarchy, that exist.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(self.cgroup_prefix.trim_start_matches('/')))
            .filter(|d| d.exists())
            .collect()
    }

    /// Live processes of the run: containerd, shims naming our socket, anything in our cgroups.
    pub fn processes(&self) -> Vec<(i32, String)> {
        let address = self.address.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for pid in all_pids() {
            if !crate::process_alive(pid) {
                continue;
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let ours = Some(pid) == self.containerd_pid
                || (cmdline.contains("containerd-shim") && cmdline.contains(&address))
                || cgroup.lines().any(|l| l.contains(&format!(":{}/", self.cgroup_prefix)));
            if ours {
                found.push((pid, cmdline.trim().to_string()));
            }
        }
        found
    }

    /// Mounts under our directory (snapshots, sandbox /dev/shm), deepest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let mut mounts: Vec<PathBuf> =
            mount_points().into_iter().filter(|m| m.starts_with(&self.dir)).collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        mounts
    }

    /// Everything left behind, described; empty when the run cleaned up.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (pid, cmdline) in self.processes() {
            left.push(format!("process {pid}: {cmdline}"));
        }
        left.extend(self.new_entries().iter().map(|p| format!("new entry {}", p.display())));
        left.extend(self.new_dirs().iter().map(|p| format!("new directory {}", p.display())));
        left.extend(self.cgroup_dirs().iter().map(|p| format!("cgroup {}", p.display())));
        left.extend(self.mounts().iter().map(|p| format!("mount {}", p.display())));
        if root_has_link(BRIDGE) {
            left.push(format!("interface {BRIDGE} in the root network namespace"));
        }
        left
    }
}

fn watched_entries() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for (dir, prefixes) in WATCHED_DIRS {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if prefixes.iter().any(|p| name.to_string_lossy().starts_with(p)) {
                found.insert(entry.path());
            }
        }
    }
    found
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// /proc/self/mountinfo's mount points (field 5), octal escapes undone for spaces.
fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .collect()
}

/// Mount points of cgroup (v1) and cgroup2 hierarchies.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// `ip link show NAME` in the caller's (root) namespace, read-only; its exit status is checked
/// against its message so that a failing `ip` is not taken for an absent link.
pub fn root_has_link(name: &str) -> bool {
    let ip = reach_agent::lab::IP.path().expect("ip (iproute2): run `cargo xtask setup`");
    let out = Command::new(ip).args(["link", "show", name]).output().expect("running ip link show");
    if out.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "ip link show {name} failed oddly: {stderr}");
    false
}
