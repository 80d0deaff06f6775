//! One listener as printed by `reach listeners` and as `{"type":"listener"}` lines of
//! `reach watch`: a sock_diag entry with its namespace, owners and reachability flags.
use serde::Serialize;

use crate::{netns::snapshot, probes::sock_event::NetnsRef};

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
            loopback_only: s.addr.is_loopback(),
            bound_dev_if: (s.bound_dev_if != 0).then_some(s.bound_dev_if),
            cookie: s.cookie,
        }
    }

    /// A short warning about reachability, if any.
    pub fn caveat(&self) -> Option<&'static str> {
        if self.loopback_only {
            Some("loopback only: reachable only from inside this namespace")
        } else if self.v6only == Some(true) && self.addr == "::" {
            Some("IPv6 only (IPV6_V6ONLY): IPv4 clients cannot connect")
        } else if self.bound_dev_if.is_some() {
            Some("bound to one interface (SO_BINDTODEVICE)")
        } else {
            None
        }
    }

    pub fn endpoint(&self) -> String {
        crate::output::endpoint::endpoint(Some(&self.addr), self.port)
    }

    pub fn human(&self) -> String {
        let owner = match (&self.pid, &self.comm) {
            (Some(p), Some(c)) => format!("pid {p} {c}"),
            _ => "owner not visible".into(),
        };
        let mut line = format!("  {:<4} {:<24} {:<24}", self.proto, self.endpoint(), owner);
        if let Some(b) = self.backlog {
            line.push_str(&format!(" backlog {b}"));
        }
        if let Some(c) = self.caveat() {
            line.push_str(&format!("  ← {c}"));
        }
        line
    }
}
