//! The node's pods for the agent: the runtime's latest listing (listed again when namespaces
//! come and go, and at least every few seconds), and the pod labels of each followed namespace.
use std::time::Duration;

use super::{owner::PodLabel, sink::AgentSink};
use crate::pods::{PodIndex, PodSource};

/// The node's pods, as the runtime listed them last.
pub struct Pods {
    pub source: PodSource,
    pub index: PodIndex,
    pub read_at: Option<std::time::Instant>,
}

/// Pods are listed again at least this often, even when no namespace came or went (a pod's
/// sandbox can turn READY after its namespace appeared).
const PODS_EVERY: Duration = Duration::from_secs(5);

impl Pods {
    /// Lists the pods again when `now` or when the last listing is old; true when it did.
    pub async fn refresh(&mut self, now: bool) -> bool {
        if !now && self.read_at.is_some_and(|t| t.elapsed() < PODS_EVERY) {
            return false;
        }
        self.read_at = Some(std::time::Instant::now());
        match self.source.snapshot().await {
            Ok(index) => {
                self.index = index;
                true
            }
            // The runtime restarting is normal on a node: keep the last listing.
            Err(e) => {
                tracing::warn!("listing pods from {}: {e:#}", self.source.describe());
                false
            }
        }
    }
}

/// The labels of the pod whose sandbox owns namespace `inode`.
pub fn pod_label(pods: &PodIndex, inode: u64) -> Option<PodLabel> {
    pods.by_netns(inode).map(|p| PodLabel {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
        container: None,
    })
}

/// Names the pods of the followed namespaces from the latest listing; true when one changed.
pub fn name_pods(sink: &mut AgentSink, pods: &PodIndex) -> bool {
    let inodes: Vec<u64> = sink.owners.all().map(|o| o.netns.inode).collect();
    let mut changed = false;
    for inode in inodes {
        changed |= sink.owners.set_pod(inode, pod_label(pods, inode));
    }
    changed
}
