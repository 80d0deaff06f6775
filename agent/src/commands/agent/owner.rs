//! Who an observation belongs to: the network namespace (reach's name for it) and, on a
//! Kubernetes node, the pod whose sandbox owns that namespace (from the container runtime). The
//! same owner labels every JSON line and every metric series of that namespace.
use std::collections::HashMap;

use serde::Serialize;

use crate::probes::sock_event::NetnsRef;

/// A pod, as its labels name it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodLabel {
    /// Kubernetes namespace.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The container, when the observation names a process of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Owner {
    pub netns: NetnsRef,
    pub pod: Option<PodLabel>,
}

/// Namespace inode → its owner, kept by the agent as namespaces and pods come and go.
#[derive(Default)]
pub struct Owners {
    by_netns: HashMap<u64, Owner>,
}

impl Owners {
    pub fn set(&mut self, netns: NetnsRef, pod: Option<PodLabel>) {
        self.by_netns.insert(netns.inode, Owner { netns, pod });
    }

    /// Names the pod of namespace `inode` (the runtime listed it after the namespace appeared).
    pub fn set_pod(&mut self, inode: u64, pod: Option<PodLabel>) -> bool {
        match self.by_netns.get_mut(&inode) {
            Some(o) if o.pod != pod => {
                o.pod = pod;
                true
            }
            _ => false,
        }
    }

    pub fn forget(&mut self, inode: u64) -> Option<Owner> {
        self.by_netns.remove(&inode)
    }

    /// The owner of `netns`; one without a pod when the namespace is not followed (yet).
    pub fn of(&self, netns: &NetnsRef) -> Owner {
        self.by_netns
            .get(&netns.inode)
            .cloned()
            .unwrap_or_else(|| Owner { netns: netns.clone(), pod: None })
    }

    pub fn get(&self, inode: u64) -> Option<&Owner> {
        self.by_netns.get(&inode)
    }

    pub fn all(&self) -> impl Iterator<Item = &Owner> {
        self.by_netns.values()
    }
}
