//! One listener as printed by `reach listeners` and as `{"type":"listener"}` lines of
//! `reach watch`: a sock_diag entry with its namespace, owners and reachability flags.
use serde::Serialize;

use crate::{diagnose::lookup::Socket, netns::snapshot, probes::sock_event::NetnsRef};

mod reachable_on;
pub use reachable_on::{Addresses, ReachableOn};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenerView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub netns: NetnsRef,
    /// First owning process (None when no readable process holds it).
    pub pid: Option<u32>,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    pub family: &'static str,
    pub proto: &'static str,
    pub addr: String,
    pub port: u16,
    pub backlog: Option<u32>,
    pub accept_queue: Option<u32>,
    pub v6only: Option<bool>,
    /// Bound to 127.0.0.0/8 or ::1: reachable only from inside its own namespace.
    pub loopback_only: bool,
    /// SO_BINDTODEVICE ifindex.
    pub bound_dev_if: Option<u32>,
    pub cookie: u64,
}

impl ListenerView {
    pub fn new(netns: NetnsRef, l: &snapshot::Listener) -> Self {
        let s = &l.socket;
        Self {
            kind: "listener",
            netns,
            pid: l.owners.first().map(|o| o.pid),
            pids: l.owners.iter().map(|o| o.pid).collect(),
            comm: l.owners.first().map(|o| o.comm.clone()),
            family: match s.family {
                crate::netns::sock_diag::Family::V4 => "ipv4",
                crate::netns::sock_diag::Family::V6 => "ipv6",
            },
            proto: match s.proto {
                crate::netns::sock_diag::Proto::Tcp => "tcp",
                crate::netns::sock_diag::Proto::Udp => "udp",
            },
            addr: s.addr.to_string(),
            port: s.port,
            backlog: s.backlog,
            accept_queue: s.accept_queue,
            v6only: s.v6only,
            // `::ffff:127.0.0.1` is loopback too (an AF_INET6 socket bound to it takes IPv4
            // SYNs to 127.0.0.1 only), which `Ipv6Addr::is_loopback` does not count.
            loopback_only: s.addr.to_canonical().is_loopback(),
            bound_dev_if: (s.bound_dev_if != 0).then_some(s.bound_dev_if),
            cookie: s.cookie,
        }
    }

    /// The families and addresses it can be reached on, by the socket-lookup model's rules;
    /// `device_name`: the name of its SO_BINDTODEVICE interface, when known. `None` for a
    /// view whose family and address contradict each other (no socket the kernel could have).
    pub fn reachable_on(&self, device_name: Option<String>) -> Option<ReachableOn> {
        // Socket::from_view takes TCP only (the diagnosis judges TCP SYNs); UDP's lookup
        // (compute_score in udp.c / udp_ipv6.c) applies the same family, address and device
        // rules, so the view's proto is set aside here.
        let s = Socket::from_view(&ListenerView { proto: "tcp", ..self.clone() })?;
        Some(reachable_on::reachable_on(&s, device_name))
    }

    pub fn endpoint(&self) -> String {
        crate::output::endpoint::endpoint(Some(&self.addr), self.port)
    }

    /// One line: proto, endpoint, owner, backlog, and how it can be reached (a device shown
    /// by ifindex; see [`ListenerView::human_with`]).
    pub fn human(&self) -> String {
        self.human_with(self.reachable_on(None).as_ref())
    }

    /// [`ListenerView::human`] with its reachability worked out by the caller (who may know
    /// the device's name).
    pub fn human_with(&self, reach: Option<&ReachableOn>) -> String {
        let owner = match (&self.pid, &self.comm) {
            (Some(p), Some(c)) => format!("pid {p} {c}"),
            _ => "owner not visible".into(),
        };
        let mut line = format!("  {:<4} {:<24} {:<24}", self.proto, self.endpoint(), owner);
        if let Some(b) = self.backlog {
            line.push_str(&format!(" backlog {b}"));
        }
        if let Some(r) = reach {
            line.push_str(&format!("  ← {}", r.summary));
        }
        line
    }
}
