//! Silent drops: a full SYN or accept queue refuses a SYN without any kfree_skb event (the skb
//! is consumed, not dropped). The namespace's ListenOverflows/ListenDrops counters move instead;
//! when they do, the listener whose accept queue is full is the culprit.
use std::path::PathBuf;

use serde::Serialize;

use crate::{
    model::listener_view::ListenerView,
    netns::{enter, netstat::TcpCounters, sock_diag},
    probes::sock_event::NetnsRef,
};

/// One watched namespace's counters.
pub struct Watcher {
    pub netns: NetnsRef,
    path: PathBuf,
    last: Option<TcpCounters>,
}

#[derive(Debug, Serialize)]
pub struct Overflow {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub netns: NetnsRef,
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub syn_queue_full_drops: u64,
    /// Listeners whose accept queue is full right now (the ones refusing SYNs).
    pub full_listeners: Vec<ListenerView>,
}

impl Watcher {
    pub fn new(netns: NetnsRef, path: PathBuf) -> Self {
        let last = crate::netns::netstat::read_netns(&path).ok();
        Self { netns, path, last }
    }

    /// Enters the namespace through `path` from now on (the old one went away).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Reads the counters; returns an overflow report when they moved since the last call.
    pub fn poll(&mut self) -> Option<Overflow> {
        let now = crate::netns::netstat::read_netns(&self.path).ok()?;
        let prev = self.last.replace(now)?;
        let d = now.delta(&prev);
        if d.listen_overflows == 0 && d.listen_drops == 0 && d.tcp_req_q_full_drop == 0 {
            return None;
        }
        let owners = crate::netns::owners::socket_owners();
        let full = enter::in_netns(&self.path, sock_diag::dump_listeners)
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| matches!((s.accept_queue, s.backlog), (Some(q), Some(b)) if q >= b))
            .map(|s| {
                let owners = owners.get(&s.inode).cloned().unwrap_or_default();
                let l = crate::netns::snapshot::Listener { socket: s, owners };
                ListenerView::new(self.netns.clone(), &l)
            })
            .collect();
        Some(Overflow {
            kind: "overflow",
            netns: self.netns.clone(),
            listen_overflows: d.listen_overflows,
            listen_drops: d.listen_drops,
            syn_queue_full_drops: d.tcp_req_q_full_drop,
            full_listeners: full,
        })
    }
}
