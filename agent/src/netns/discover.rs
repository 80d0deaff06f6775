//! Namespaces as they appear and disappear, for a long-running agent: each scan of the
//! inventory (/run/netns mounts, every process's namespace) is compared with the previous one.
//! A namespace is gone once nothing lists it any more — no process in it, no mount of it —
//! even if a socket of reach's still holds it: that socket is what the caller then closes.
use std::{collections::BTreeMap, path::PathBuf};

use super::inventory::{self, NetNs};

/// What one scan found changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub appeared: Vec<NetNs>,
    pub gone: Vec<NetNs>,
    /// Namespaces still there whose path changed (the process it was entered through exited,
    /// another one in it lives on): (inode, new path).
    pub moved: Vec<(u64, PathBuf)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty() && self.gone.is_empty() && self.moved.is_empty()
    }
}

#[derive(Default)]
pub struct Discovery {
    known: BTreeMap<u64, NetNs>,
}

impl Discovery {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans the machine's namespaces now, plus `extra` ones known from elsewhere (the
    /// container runtime names each pod's namespace, even where /run/netns is not visible to
    /// reach) that the inventory did not list.
    pub fn scan(&mut self, extra: Vec<NetNs>) -> Changes {
        let mut all = inventory::list();
        for ns in extra {
            if !all.iter().any(|n| n.inode == ns.inode) && ns.path.exists() {
                all.push(ns);
            }
        }
        self.update(all)
    }

    /// Compares `now` (one inventory listing) with what was known.
    pub fn update(&mut self, now: Vec<NetNs>) -> Changes {
        let mut changes = Changes::default();
        let mut next = BTreeMap::new();
        for ns in now {
            match self.known.remove(&ns.inode) {
                None => changes.appeared.push(ns.clone()),
                Some(old) if old.path != ns.path && !old.path.exists() => {
                    changes.moved.push((ns.inode, ns.path.clone()))
                }
                // Same path, or the old one still works: keep entering it the same way.
                Some(old) => {
                    next.insert(ns.inode, NetNs { path: old.path.clone(), ..ns });
                    continue;
                }
            }
            next.insert(ns.inode, ns);
        }
        changes.gone = std::mem::take(&mut self.known).into_values().collect();
        self.known = next;
        changes
    }

    pub fn known(&self) -> impl Iterator<Item = &NetNs> {
        self.known.values()
    }

    pub fn contains(&self, inode: u64) -> bool {
        self.known.contains_key(&inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(inode: u64, path: &str) -> NetNs {
        NetNs { inode, name: format!("ns{inode}"), path: path.into(), processes: 1 }
    }

    #[test]
    fn reports_appeared_gone_and_moved_namespaces_once() {
        let mut d = Discovery::new();
        let first = d.update(vec![ns(1, "/proc/self/ns/net"), ns(2, "/run/netns/a")]);
        assert_eq!(first.appeared.len(), 2);
        assert!(d.update(vec![ns(1, "/proc/self/ns/net"), ns(2, "/run/netns/a")]).is_empty());
        // 2 is gone, 3 appeared, 1 is now reached through another (existing) path: kept as is
        // while the old path works.
        let c = d.update(vec![ns(1, "/proc/thread-self/ns/net"), ns(3, "/run/netns/b")]);
        assert_eq!(c.appeared.iter().map(|n| n.inode).collect::<Vec<_>>(), [3]);
        assert_eq!(c.gone.iter().map(|n| n.inode).collect::<Vec<_>>(), [2]);
        assert!(c.moved.is_empty());
        assert!(d.contains(1) && d.contains(3) && !d.contains(2));
        // A path that no longer exists is replaced.
        let mut d = Discovery::new();
        d.update(vec![ns(5, "/proc/999999999/ns/net")]);
        let c = d.update(vec![ns(5, "/proc/self/ns/net")]);
        assert_eq!(c.moved, [(5, PathBuf::from("/proc/self/ns/net"))]);
    }
}
