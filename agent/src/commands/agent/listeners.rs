//! Every watched namespace's TCP listeners, as the kernel lists them (sock_diag from inside the
//! namespace: address, IPV6_V6ONLY, SO_BINDTODEVICE — what the socket lookup decides with),
//! re-read when a bind/listen/close happened there (at most once a second) and every
//! [`FULL_REFRESH`] anyway. Two uses: the failed-attempt diagnosis needs the listeners on the
//! attempt's port in every namespace (as `reach why` does), and the
//! `reach_unreachable_listeners` gauge counts listeners that some clients can never reach.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    metrics::UnreachableReason as Unreachable,
    model::listener_view::ListenerView,
    netns::{enter, snapshot, sock_diag},
    probes::sock_event::NetnsRef,
};

/// Even without events (a listener reach did not see open: before start, or a missed event),
/// every namespace is re-read this often.
const FULL_REFRESH: Duration = Duration::from_secs(30);
/// A busy namespace (many binds) is re-read at most this often.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The reason a TCP listener is unreachable for some clients, the first that applies
/// (loopback beats the others: nothing outside the namespace reaches it at all):
/// bound to 127.0.0.0/8 or ::1 (a pod's Service, the node, other pods never reach it);
/// SO_BINDTODEVICE (only SYNs arriving on that one interface); `[::]` with IPV6_V6ONLY (IPv4
/// clients are refused).
pub fn unreachable_reason(l: &ListenerView) -> Option<Unreachable> {
    if l.proto != "tcp" {
        return None;
    }
    if l.loopback_only {
        Some(Unreachable::LoopbackOnly)
    } else if l.bound_dev_if.is_some_and(|i| i != 0) {
        Some(Unreachable::DeviceBound)
    } else if l.family == "ipv6" && l.v6only == Some(true) && is_unspecified(&l.addr) {
        Some(Unreachable::V6Only)
    } else {
        None
    }
}

const ALL: [Unreachable; 3] =
    [Unreachable::LoopbackOnly, Unreachable::V6Only, Unreachable::DeviceBound];

fn is_unspecified(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_unspecified())
}

struct Entry {
    netns: NetnsRef,
    path: PathBuf,
    views: Vec<ListenerView>,
    dirty: bool,
    read_at: Option<Instant>,
    /// Cookies of the unreachable listeners already reported (a listener closed and opened
    /// again is a new socket, with a new cookie, and is reported again).
    announced: std::collections::HashSet<u64>,
    /// cookie → socket inode (what /proc/PID/fd names: the owning process).
    inodes: HashMap<u64, u64>,
}

#[derive(Default)]
pub struct ListenerCache {
    by_netns: HashMap<u64, Entry>,
}

impl ListenerCache {
    /// Starts following namespace `netns` (read at the next refresh).
    pub fn track(&mut self, netns: NetnsRef, path: PathBuf) {
        self.by_netns.entry(netns.inode).or_insert(Entry {
            netns,
            path,
            views: Vec::new(),
            dirty: true,
            read_at: None,
            announced: Default::default(),
            inodes: HashMap::new(),
        });
    }

    pub fn set_path(&mut self, inode: u64, path: PathBuf) {
        if let Some(e) = self.by_netns.get_mut(&inode) {
            e.path = path;
        }
    }

    pub fn forget(&mut self, inode: u64) {
        self.by_netns.remove(&inode);
    }

    /// A listener opened or closed in `inode`: read it again soon.
    pub fn touched(&mut self, inode: u64) {
        if let Some(e) = self.by_netns.get_mut(&inode) {
            e.dirty = true;
        }
    }

    /// Re-reads the namespaces due at `now`; returns their inodes (their gauges changed).
    pub fn refresh(&mut self, now: Instant) -> Vec<u64> {
        let mut read = Vec::new();
        for (inode, e) in self.by_netns.iter_mut() {
            let due = match e.read_at {
                None => true,
                Some(at) => {
                    let since = now.saturating_duration_since(at);
                    (e.dirty && since >= MIN_INTERVAL) || since >= FULL_REFRESH
                }
            };
            if !due {
                continue;
            }
            // A namespace that cannot be entered any more is about to be reported gone by
            // discovery; until then its last reading stands.
            if let Ok(Ok(sockets)) = enter::in_netns(&e.path, sock_diag::dump_listeners) {
                e.inodes = sockets.iter().map(|s| (s.cookie, s.inode)).collect();
                e.views = sockets
                    .into_iter()
                    .map(|socket| {
                        let l = snapshot::Listener { socket, owners: Vec::new() };
                        ListenerView::new(e.netns.clone(), &l)
                    })
                    .collect();
            }
            e.dirty = false;
            e.read_at = Some(now);
            read.push(*inode);
        }
        read
    }

    /// The unreachable listeners of `inode` not reported yet (each once, while it lives).
    /// With each, its socket inode.
    pub fn take_new_unreachable(&mut self, inode: u64) -> Vec<(ListenerView, Unreachable, u64)> {
        let Some(e) = self.by_netns.get_mut(&inode) else { return Vec::new() };
        let now: Vec<(ListenerView, Unreachable)> =
            e.views.iter().filter_map(|l| Some((l.clone(), unreachable_reason(l)?))).collect();
        let fresh = now
            .iter()
            .filter(|(l, _)| !e.announced.contains(&l.cookie))
            .map(|(l, r)| (l.clone(), *r, e.inodes.get(&l.cookie).copied().unwrap_or(0)))
            .collect();
        e.announced = now.iter().map(|(l, _)| l.cookie).collect();
        fresh
    }

    /// TCP listeners on `port` in every followed namespace.
    pub fn on_port(&self, port: u16) -> Vec<ListenerView> {
        self.by_netns
            .values()
            .flat_map(|e| e.views.iter())
            .filter(|l| l.port == port && l.proto == "tcp")
            .cloned()
            .collect()
    }

    /// How many listeners of `inode` each reason makes unreachable (every reason, zeros too).
    pub fn unreachable(&self, inode: u64) -> [(Unreachable, i64); 3] {
        let mut out = ALL.map(|r| (r, 0));
        if let Some(e) = self.by_netns.get(&inode) {
            for l in &e.views {
                if let Some(r) = unreachable_reason(l)
                    && let Some(slot) = out.iter_mut().find(|(k, _)| *k == r)
                {
                    slot.1 += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(addr: &str, v6only: Option<bool>, dev: Option<u32>) -> ListenerView {
        let family = if addr.contains(':') { "ipv6" } else { "ipv4" };
        let loopback = addr.parse::<std::net::IpAddr>().unwrap().is_loopback();
        ListenerView {
            kind: "listener",
            netns: NetnsRef { inode: 1, name: "pod".into() },
            pid: None,
            pids: Vec::new(),
            comm: None,
            family,
            proto: "tcp",
            addr: addr.into(),
            port: 8080,
            backlog: Some(128),
            accept_queue: Some(0),
            v6only,
            loopback_only: loopback,
            bound_dev_if: dev,
            cookie: 1,
        }
    }

    #[test]
    fn each_listener_gets_the_reason_that_shuts_clients_out() {
        assert_eq!(
            unreachable_reason(&view("127.0.0.1", None, None)),
            Some(Unreachable::LoopbackOnly)
        );
        assert_eq!(
            unreachable_reason(&view("::1", Some(true), None)),
            Some(Unreachable::LoopbackOnly)
        );
        assert_eq!(unreachable_reason(&view("::", Some(true), None)), Some(Unreachable::V6Only));
        assert_eq!(unreachable_reason(&view("::", Some(false), None)), None);
        // An IPv6 address listener is v6-only by nature; it is not the dual-stack trap.
        assert_eq!(unreachable_reason(&view("fd00::1", Some(true), None)), None);
        assert_eq!(
            unreachable_reason(&view("0.0.0.0", None, Some(3))),
            Some(Unreachable::DeviceBound)
        );
        assert_eq!(unreachable_reason(&view("0.0.0.0", None, None)), None);
        let udp = ListenerView { proto: "udp", ..view("127.0.0.1", None, None) };
        assert_eq!(unreachable_reason(&udp), None);
    }
}
