//! inode → namespace name, cached; refreshed from the inventory when an unknown inode shows up
//! (a namespace created after start), at most once per second so a burst of events from a
//! short-lived namespace cannot turn into a /proc scan storm.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::inventory;

#[derive(Default)]
pub struct Names {
    by_inode: HashMap<u64, (String, PathBuf)>,
    last_refresh: Option<Instant>,
    /// (namespace inode, ifindex) → interface name; interface indexes are per namespace.
    devices: HashMap<(u64, u32), Option<String>>,
}

impl Names {
    pub fn new() -> Self {
        let mut n = Self::default();
        n.refresh();
        n
    }

    fn refresh(&mut self) {
        for ns in inventory::list() {
            self.by_inode.insert(ns.inode, (ns.name, ns.path));
        }
        self.last_refresh = Some(Instant::now());
    }

    fn lookup(&mut self, inode: u64) -> Option<&(String, PathBuf)> {
        if !self.by_inode.contains_key(&inode)
            && self.last_refresh.is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.refresh();
        }
        self.by_inode.get(&inode)
    }

    /// The best name for `inode`; `netns:[inode]` when the namespace is gone or unknown.
    pub fn name(&mut self, inode: u64) -> String {
        self.lookup(inode).map(|(n, _)| n.clone()).unwrap_or_else(|| format!("netns:[{inode}]"))
    }

    /// The name of interface `ifindex` inside namespace `inode` (looked up once, from inside).
    pub fn device(&mut self, inode: u64, ifindex: u32) -> Option<String> {
        if let Some(cached) = self.devices.get(&(inode, ifindex)) {
            return cached.clone();
        }
        let name = self.path(inode).and_then(|path| {
            super::enter::in_netns(&path, || super::addresses::iface_name(ifindex)).ok().flatten()
        });
        self.devices.insert((inode, ifindex), name.clone());
        name
    }

    /// Forgets namespace `inode` (it is gone) and its interfaces, so a long-running agent's
    /// cache does not grow with namespace churn.
    pub fn forget(&mut self, inode: u64) {
        self.by_inode.remove(&inode);
        self.devices.retain(|(ns, _), _| *ns != inode);
    }

    /// Forgets interface `ifindex` of namespace `inode` (deleted: its index may name another).
    pub fn forget_device(&mut self, inode: u64, ifindex: u32) {
        self.devices.remove(&(inode, ifindex));
    }

    /// A path through which `inode` can be entered, while it exists.
    pub fn path(&mut self, inode: u64) -> Option<PathBuf> {
        self.lookup(inode).map(|(_, p)| p.clone())
    }
}
