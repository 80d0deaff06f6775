//! The pods of this node as cgroup paths alone show them (no runtime socket): every process's
//! /proc/PID/cgroup, grouped by pod uid. Names are unknown this way (see [`super::Pod`]).
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
};

use super::{Container, Pod, PodIndex, cgroup_path, netns_inode};

/// Scans /proc once.
pub(crate) fn snapshot() -> anyhow::Result<PodIndex> {
    let host_netns = netns_inode::host();
    let mut pods: BTreeMap<String, Found> = BTreeMap::new();
    let entries = fs::read_dir("/proc").map_err(|e| anyhow::anyhow!("cannot list /proc: {e}"))?;
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        // A process may exit between listing and reading: skip it.
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        let Some(cgroup) = cgroup_path::parse_proc_cgroup(&text) else { continue };
        let found = pods.entry(cgroup.pod_uid).or_default();
        found.containers.extend(cgroup.container_id);
        if found.netns.is_none() {
            found.netns = netns_inode::of_pid(pid).filter(|&ino| Some(ino) != host_netns);
        }
    }
    Ok(PodIndex::new(pods.into_iter().map(|(uid, found)| found.into_pod(uid)).collect()))
}

#[derive(Default)]
struct Found {
    containers: BTreeSet<String>,
    netns: Option<u64>,
}

impl Found {
    fn into_pod(self, uid: String) -> Pod {
        Pod {
            namespace: String::new(),
            name: String::new(),
            uid,
            sandbox_id: String::new(),
            netns_path: None,
            netns_inode: self.netns,
            containers: self
                .containers
                .into_iter()
                .map(|id| Container { id, name: String::new() })
                .collect(),
        }
    }
}
