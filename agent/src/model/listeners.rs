//! The live listener model: the sock_diag snapshot taken at start, then kept current by
//! bind/listen/close events. Keyed by the kernel socket identity, so SO_REUSEPORT groups (many
//! sockets on one address:port) and a close (which no longer carries the port) resolve exactly.
use std::{collections::HashMap, net::IpAddr};

use serde::Serialize;

use crate::probes::sock_event::SockObservation;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listener {
    pub netns: u64,
    pub proto: &'static str,
    pub addr: IpAddr,
    pub port: u16,
    pub pids: Vec<u32>,
    pub comm: String,
    pub backlog: Option<u32>,
    /// For `[::]` sockets: true when IPV6_V6ONLY (no IPv4 clients); None when unknown.
    pub v6only: Option<bool>,
    /// `snapshot` or the attach mode that saw it.
    pub seen_by: String,
}

impl Listener {
    /// Bound to 127.0.0.0/8 or ::1: only reachable from inside its own namespace.
    pub fn loopback_only(&self) -> bool {
        self.addr.is_loopback()
            || matches!(self.addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    }
}

impl Listener {
    /// A model entry for a snapshot listener.
    pub fn from_view(v: &crate::model::listener_view::ListenerView) -> Self {
        Self {
            netns: v.netns.inode,
            proto: v.proto,
            addr: v.addr.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            port: v.port,
            pids: v.pids.clone(),
            comm: v.comm.clone().unwrap_or_default(),
            backlog: v.backlog,
            v6only: v.v6only,
            seen_by: "snapshot".into(),
        }
    }
}

/// Identity of a socket: the kernel address from events, or the cookie from sock_diag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Id {
    Sock(u64),
    Cookie(u64),
}

#[derive(Debug, Default)]
pub struct Listeners {
    by_id: HashMap<Id, Listener>,
    /// cookie → sock address, once an event showed both (events then find snapshot entries).
    cookie_of_sock: HashMap<u64, u64>,
}

/// What an event did to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Listener),
    Removed(Listener),
}

impl Listeners {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a snapshot entry identified by its socket cookie.
    pub fn insert_snapshot(&mut self, cookie: u64, listener: Listener) {
        self.by_id.insert(Id::Cookie(cookie), listener);
    }

    /// Applies one observation; returns the change, if any.
    pub fn apply(&mut self, o: &SockObservation) -> Option<Change> {
        let sock =
            u64::from_str_radix(o.sock_id.trim_start_matches("0x"), 16).ok().filter(|&s| s != 0)?;
        if let Some(cookie) = o.cookie {
            self.cookie_of_sock.insert(sock, cookie);
        }
        match o.kind {
            "listen" if o.result == "ok" => {
                let listener = Listener {
                    netns: o.netns.inode,
                    proto: o.proto.unwrap_or("tcp"),
                    addr: o.bound_addr.as_deref().or(o.addr.as_deref())?.parse().ok()?,
                    port: o.bound_port.or(o.port)?,
                    pids: vec![o.pid],
                    comm: o.comm.clone(),
                    backlog: o.backlog,
                    v6only: None,
                    seen_by: o.source.to_string(),
                };
                // A snapshot entry of the same socket is superseded, not duplicated.
                if let Some(cookie) = self.cookie_of_sock.get(&sock) {
                    self.by_id.remove(&Id::Cookie(*cookie));
                }
                self.by_id.insert(Id::Sock(sock), listener.clone());
                Some(Change::Added(listener))
            }
            "listen_close" => {
                let removed = self.by_id.remove(&Id::Sock(sock)).or_else(|| {
                    let cookie = self.cookie_of_sock.get(&sock).copied().or(o.cookie)?;
                    self.by_id.remove(&Id::Cookie(cookie))
                });
                self.cookie_of_sock.remove(&sock);
                removed.map(Change::Removed)
            }
            _ => None,
        }
    }

    /// All listeners, sorted by namespace, port, address.
    pub fn all(&self) -> Vec<&Listener> {
        let mut v: Vec<&Listener> = self.by_id.values().collect();
        v.sort_by(|a, b| {
            (a.netns, a.port, a.proto, a.addr).cmp(&(b.netns, b.port, b.proto, b.addr))
        });
        v
    }

    /// Listeners on `port` (any namespace, any address).
    pub fn on_port(&self, port: u16) -> Vec<&Listener> {
        self.all().into_iter().filter(|l| l.port == port).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::sock_event::{NetnsRef, SockOptions};

    fn obs(
        kind: &'static str,
        sock: u64,
        port: Option<u16>,
        cookie: Option<u64>,
    ) -> SockObservation {
        SockObservation {
            kind,
            time: String::new(),
            netns: NetnsRef { inode: 42, name: "lab".into() },
            pid: 100,
            tid: 100,
            comm: "server".into(),
            uid: 0,
            cgroup_id: 0,
            family: Some("ipv4"),
            proto: Some("tcp"),
            addr: port.map(|_| "127.0.0.1".into()),
            port,
            bound_addr: port.map(|_| "127.0.0.1".into()),
            bound_port: port,
            result: "ok".into(),
            backlog: Some(7),
            options: SockOptions::default(),
            source: "tp_btf",
            sock_id: format!("{sock:#x}"),
            cookie,
        }
    }

    fn snap(port: u16) -> Listener {
        Listener {
            netns: 42,
            proto: "tcp",
            addr: "0.0.0.0".parse().unwrap(),
            port,
            pids: vec![7],
            comm: "old".into(),
            backlog: Some(128),
            v6only: None,
            seen_by: "snapshot".into(),
        }
    }

    #[test]
    fn listen_then_close_without_port_removes_it() {
        let mut m = Listeners::new();
        assert!(matches!(
            m.apply(&obs("listen", 0xffff1, Some(8080), None)),
            Some(Change::Added(_))
        ));
        assert!(m.all()[0].loopback_only());
        let removed = m.apply(&obs("listen_close", 0xffff1, None, None));
        assert!(matches!(removed, Some(Change::Removed(l)) if l.port == 8080));
        assert!(m.all().is_empty());
    }

    #[test]
    fn reuseport_group_members_are_distinct() {
        let mut m = Listeners::new();
        m.apply(&obs("listen", 1, Some(9000), None));
        m.apply(&obs("listen", 2, Some(9000), None));
        assert_eq!(m.on_port(9000).len(), 2);
        m.apply(&obs("listen_close", 1, None, None));
        assert_eq!(m.on_port(9000).len(), 1);
    }

    #[test]
    fn close_of_a_snapshot_listener_found_by_cookie() {
        let mut m = Listeners::new();
        m.insert_snapshot(555, snap(22));
        assert_eq!(m.on_port(22).len(), 1);
        m.apply(&obs("listen_close", 0xabc, None, Some(555)));
        assert!(m.on_port(22).is_empty());
    }

    #[test]
    fn failed_listen_and_binds_change_nothing() {
        let mut m = Listeners::new();
        let mut failed = obs("listen", 3, Some(80), None);
        failed.result = "EADDRINUSE".into();
        assert_eq!(m.apply(&failed), None);
        assert_eq!(m.apply(&obs("bind", 4, Some(81), None)), None);
        assert!(m.all().is_empty());
    }
}
