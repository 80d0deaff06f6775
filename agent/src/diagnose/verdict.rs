//! The decision: which single verdict explains the client's failure, checked in the order the
//! SYN travels, so the first broken hop wins:
//!
//! 1. **No SYN seen** (traffic was watched, nothing came): everything on this host is moot; the
//!    problem is before it (route, NAT, the client's or Windows' firewall, a WSL2 portproxy).
//! 2. **Netfilter dropped/rejected the SYN**: the firewall runs before socket lookup, so a
//!    firewall drop hides whatever the socket layer would have said (a loopback-only bind
//!    included). firewalld's rule → `firewall_reject`/`firewall_drop` by its action; any other
//!    rule → `other_netfilter_drop`.
//! 3. **Listen overflow** on that port: the listener exists but its queue is full; the SYN is
//!    consumed silently, so nothing later in this list could explain it. A flow proven
//!    `accepted` overrides this (that attempt got in; the overflow hit others).
//! 4. **No socket** (drop `NO_SOCKET`, or a RST without drop evidence): loopback-only bind in the
//!    SYN's namespace → `loopback_only_bind`; a listener in another namespace →
//!    `listener_in_other_netns`; else `no_listener` (with any failed bind on the port).
//! 5. **Other drop reasons** → `kernel_drop`, named. An unanswered attempt with no drop recorded
//!    is a silent drop and is reported as `kernel_drop` too, after checking the socket side.
//! 6. **Accepted** → `reachable`.
//!
//! Without traffic (or with an attempt still pending) the same classes are predicted from the
//! firewalld prediction and the listeners.
//!
//! The path lists the hops up to and including the failing one: hops after it were never
//! reached, so they carry no information.
use std::net::IpAddr;

use serde::Serialize;

use super::{Evidence, fix, wsl};
use crate::{
    firewall::predict::Decision,
    model::{flows::Outcome, listener_view::ListenerView},
    netns::port_holders::PortHolder,
    probes::sock_event::NetnsRef,
};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Reachable,
    LoopbackOnlyBind,
    ListenerInOtherNetns,
    NoListener,
    FirewallDrop,
    FirewallReject,
    OtherNetfilterDrop,
    ListenOverflow,
    NoSynSeen,
    KernelDrop,
}

impl Verdict {
    pub const ALL: [Verdict; 10] = [
        Verdict::Reachable,
        Verdict::LoopbackOnlyBind,
        Verdict::ListenerInOtherNetns,
        Verdict::NoListener,
        Verdict::FirewallDrop,
        Verdict::FirewallReject,
        Verdict::OtherNetfilterDrop,
        Verdict::ListenOverflow,
        Verdict::NoSynSeen,
        Verdict::KernelDrop,
    ];

    /// `reach why`'s exit code: 0 reachable, one code per failure class (10-18), so scripts
    /// can branch on the class without parsing output. 1-3 stay the usual error codes.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Reachable => 0,
            Verdict::LoopbackOnlyBind => 10,
            Verdict::ListenerInOtherNetns => 11,
            Verdict::NoListener => 12,
            Verdict::FirewallDrop => 13,
            Verdict::FirewallReject => 14,
            Verdict::OtherNetfilterDrop => 15,
            Verdict::ListenOverflow => 16,
            Verdict::NoSynSeen => 17,
            Verdict::KernelDrop => 18,
        }
    }

    /// The snake_case name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Reachable => "reachable",
            Verdict::LoopbackOnlyBind => "loopback_only_bind",
            Verdict::ListenerInOtherNetns => "listener_in_other_netns",
            Verdict::NoListener => "no_listener",
            Verdict::FirewallDrop => "firewall_drop",
            Verdict::FirewallReject => "firewall_reject",
            Verdict::OtherNetfilterDrop => "other_netfilter_drop",
            Verdict::ListenOverflow => "listen_overflow",
            Verdict::NoSynSeen => "no_syn_seen",
            Verdict::KernelDrop => "kernel_drop",
        }
    }

    /// One sentence a user reads first.
    pub fn headline(self) -> &'static str {
        match self {
            Verdict::Reachable => "a listener takes the connection",
            Verdict::LoopbackOnlyBind => {
                "the server listens on loopback only, and the client is not on loopback"
            }
            Verdict::ListenerInOtherNetns => {
                "the server listens in another network namespace than the one the SYN arrives in"
            }
            Verdict::NoListener => "nothing listens on that port",
            Verdict::FirewallDrop => "the firewall (firewalld) silently drops the SYN",
            Verdict::FirewallReject => "the firewall (firewalld) rejects the SYN",
            Verdict::OtherNetfilterDrop => {
                "a netfilter rule outside firewalld drops or rejects the SYN"
            }
            Verdict::ListenOverflow => {
                "the listener's accept queue is full: the kernel drops new SYNs silently"
            }
            Verdict::NoSynSeen => {
                "no SYN arrived on the watched interfaces: the problem is before this host"
            }
            Verdict::KernelDrop => "the kernel dropped the SYN",
        }
    }
}

/// One hop of the SYN's path: `client`, `interface <if>`, `firewall`, `socket`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hop {
    pub name: String,
    pub ok: bool,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Diagnosis {
    pub verdict: Verdict,
    /// Facts proving the verdict, one sentence each.
    pub evidence: Vec<String>,
    /// Commands or changes that would make the client's connection work.
    pub fix: Vec<String>,
    pub path: Vec<Hop>,
}

/// What the evidence implies, computed once.
pub(super) struct Facts {
    /// Namespace the SYN arrived in (or will).
    pub target_ns: Option<u64>,
    /// Destination address of the SYN.
    pub dest: Option<IpAddr>,
    pub via_lo: bool,
    /// The flow's drop reason, short form (`NO_SOCKET`).
    pub drop_reason: Option<String>,
    /// True when no attempt settled yet: predict instead of explain.
    pub predicting: bool,
}

impl Facts {
    fn new(e: &Evidence) -> Self {
        let flow = e.flow.as_ref();
        Self {
            target_ns: e.netns.as_ref().map(|n| n.inode).or(flow.map(|f| f.netns)),
            dest: flow.map(|f| f.server.ip()).or(e.addr).map(|a| a.to_canonical()),
            via_lo: e.iface.as_deref() == Some("lo"),
            drop_reason: flow.and_then(|f| f.drop.as_ref()).map(|d| short_reason(&d.reason)),
            predicting: flow.is_none_or(|f| f.outcome == Outcome::Pending),
        }
    }

    fn in_target_ns(&self, l: &ListenerView) -> bool {
        self.target_ns.is_none_or(|n| l.netns.inode == n)
    }
}

/// `accepted`, `reset`, … as in the JSON.
fn outcome_word(o: Outcome) -> String {
    serde_json::to_value(o).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `SKB_DROP_REASON_NO_SOCKET` and `no_socket` → `NO_SOCKET`.
fn short_reason(r: &str) -> String {
    r.trim_start_matches("SKB_DROP_REASON_").to_ascii_uppercase()
}

/// A namespace as people know it: its name, else its inode.
pub(super) fn ns_name(n: &NetnsRef) -> String {
    if n.name.is_empty() { format!("netns:[{}]", n.inode) } else { n.name.clone() }
}

/// At most this many port holders are listed one by one.
const HOLDERS_SHOWN: usize = 4;

/// The port holders worth naming: every one once a bind failed with EADDRINUSE (they are what
/// it collided with), else only bound-but-not-listening sockets (a server that bound and never
/// listened, or that blocks the real server's bind) — a connection that merely uses the port
/// as its source port is noise then.
pub(super) fn relevant_holders(e: &Evidence) -> Vec<&PortHolder> {
    let in_use = e.failed_binds.iter().any(|b| b.errno == "EADDRINUSE");
    e.port_holders.iter().filter(|h| in_use || h.state == "bound").collect()
}

/// "port 8080 in netns lab is held without a listener: pid 7 (api) tcp 0.0.0.0:8080 bound, not
/// listening", one line per holder (TIME_WAIT connections counted in one line).
fn holders(e: &Evidence) -> Vec<String> {
    let shown = relevant_holders(e);
    if shown.is_empty() {
        return Vec::new();
    }
    let ns = e.netns.as_ref().map(ns_name).unwrap_or_else(|| "host".into());
    let (time_wait, live): (Vec<&PortHolder>, Vec<&PortHolder>) =
        shown.into_iter().partition(|h| h.state == "time_wait");
    let mut ev: Vec<String> = live
        .iter()
        .take(HOLDERS_SHOWN)
        .map(|h| {
            format!(
                "port {} in netns {ns} is held without a listener: {} {}",
                e.port,
                h.owned_by(),
                h.describe()
            )
        })
        .collect();
    if live.len() > HOLDERS_SHOWN {
        ev.push(format!("… and {} more sockets on port {}", live.len() - HOLDERS_SHOWN, e.port));
    }
    if !time_wait.is_empty() {
        ev.push(format!(
            "port {} in netns {ns} is held by {} connection(s) in TIME_WAIT (no process; the kernel \
             frees them within 60 s)",
            e.port,
            time_wait.len()
        ));
    }
    ev
}

/// "pid 42 (server) on 127.0.0.1:8080 in netns lab".
pub(super) fn who(l: &ListenerView) -> String {
    let owner = match (l.pid, &l.comm) {
        (Some(p), Some(c)) => format!("pid {p} ({c})"),
        (Some(p), None) => format!("pid {p}"),
        _ => "a process reach cannot see".into(),
    };
    format!("{owner} on {} in netns {}", l.endpoint(), ns_name(&l.netns))
}

/// Whether `l` accepts a TCP SYN to `dest` (None: unknown address, judged by `via_lo`).
fn serves(l: &ListenerView, dest: Option<IpAddr>, via_lo: bool) -> bool {
    let Ok(a) = l.addr.parse::<IpAddr>() else { return false };
    if l.proto != "tcp" {
        return false;
    }
    match dest {
        Some(d) if a.is_unspecified() => match a {
            IpAddr::V4(_) => d.is_ipv4(),
            // A dual-stack `[::]` takes IPv4 too, unless IPV6_V6ONLY.
            IpAddr::V6(_) => d.is_ipv6() || l.v6only != Some(true),
        },
        Some(d) => a.to_canonical() == d,
        None => !l.loopback_only || via_lo,
    }
}

type Decided = (Verdict, Vec<String>, Vec<String>);

pub fn diagnose(e: &Evidence) -> Diagnosis {
    let f = Facts::new(e);
    let (verdict, mut evidence, mut fix) = decide(e, &f);
    let path = path(e, &f, verdict, &evidence);
    wsl::explain(e, verdict, &mut evidence, &mut fix);
    Diagnosis { verdict, evidence, fix, path }
}

fn decide(e: &Evidence, f: &Facts) -> Decided {
    let mut ev = Vec::new();
    match &e.flow {
        Some(fl) => ev.push(format!(
            "attempt {} → {} in netns {}: {}{}{}",
            fl.client,
            fl.server,
            e.netns
                .as_ref()
                .filter(|n| n.inode == fl.netns)
                .map(ns_name)
                .unwrap_or_else(|| format!("netns:[{}]", fl.netns)),
            outcome_word(fl.outcome),
            fl.drop
                .as_ref()
                .map(|d| format!(" (kernel drop reason {}", short_reason(&d.reason)))
                .unwrap_or_default(),
            fl.drop
                .as_ref()
                .map(|d| match &d.location {
                    Some(l) => format!(" at {l})"),
                    None => ")".into(),
                })
                .unwrap_or_default(),
        )),
        None if !e.watched => ev.push(
            "no traffic observed yet: predicting from the firewall configuration and the listeners"
                .into(),
        ),
        None => {}
    }
    if e.watched && !e.syn_seen && e.flow.is_none() {
        let on = if e.watched_ifaces.is_empty() {
            "the watched interfaces".to_string()
        } else {
            e.watched_ifaces.join(", ")
        };
        ev.push(format!("no SYN to port {} was seen on {on}", e.port));
        return (Verdict::NoSynSeen, ev, fix::no_syn(e.port));
    }
    if let Some((v, more, fix)) = firewall(e, f) {
        ev.extend(more);
        return (v, ev, fix);
    }
    let accepted = e.flow.as_ref().is_some_and(|fl| fl.outcome == Outcome::Accepted);
    if !accepted && let Some((more, fix)) = overflow(e, f) {
        ev.extend(more);
        return (Verdict::ListenOverflow, ev, fix);
    }
    let outcome = e.flow.as_ref().map(|fl| fl.outcome);
    let (v, more, fix) = match (outcome, f.drop_reason.as_deref()) {
        (Some(Outcome::Accepted), _) => (Verdict::Reachable, Vec::new(), Vec::new()),
        (_, Some("NO_SOCKET")) | (Some(Outcome::Reset), None) => {
            socket(e, f).unwrap_or_else(|| {
                // The socket lookup failed although a listener matches now: it came up since.
                (
                    Verdict::Reachable,
                    vec!["a listener serves it now (it started after the attempt)".into()],
                    Vec::new(),
                )
            })
        }
        (_, Some(reason)) => kernel_drop(e, reason),
        (Some(Outcome::Unanswered), None) => socket(e, f).unwrap_or_else(|| silent(e)),
        // Pending or no attempt: predict from the listeners.
        _ => socket(e, f).unwrap_or_else(|| reachable(e, f)),
    };
    ev.extend(more);
    (v, ev, fix)
}

/// Step 2: the firewall's verdict on the SYN (traced, or predicted when no attempt settled).
fn firewall(e: &Evidence, f: &Facts) -> Option<Decided> {
    if let Some(a) = e.attribution.as_ref().filter(|a| a.action != "accept") {
        let v = if a.action.starts_with("reject") {
            Verdict::FirewallReject
        } else {
            Verdict::FirewallDrop
        };
        let fix = if a.fix.is_empty() { fix::nft_list() } else { a.fix.clone() };
        return Some((
            v,
            vec![format!("firewalld: {}", a.summary), format!("rule: {}", a.rule)],
            fix,
        ));
    }
    if let Some(r) = e.netfilter.as_ref().filter(|r| r.action != "accept") {
        let rule = r.rule.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default();
        let handle = r.handle.map(|h| format!(" (handle {h})")).unwrap_or_default();
        let line = format!(
            "netfilter: table {} {}, chain {}{handle}{rule} → {}",
            r.family, r.table, r.chain, r.action
        );
        return Some((Verdict::OtherNetfilterDrop, vec![line], fix::netfilter(r, e.port)));
    }
    let nf_drop = f.drop_reason.as_deref() == Some("NETFILTER_DROP");
    if let Some(p) = e.prediction.as_ref().filter(|_| nf_drop || f.predicting) {
        let v = match &p.decision {
            Decision::Accept { .. } => None,
            Decision::Reject { .. } => Some(Verdict::FirewallReject),
            Decision::Drop { .. } => Some(Verdict::FirewallDrop),
        };
        if let Some(v) = v {
            let verb = if f.predicting { "will decide" } else { "decided" };
            return Some((v, vec![format!("firewalld {verb}: {}", p.reason)], p.fix.clone()));
        }
    }
    nf_drop.then(|| {
        let line = "netfilter dropped the SYN (NETFILTER_DROP), no trace named the rule".into();
        (Verdict::OtherNetfilterDrop, vec![line], fix::nft_list())
    })
}

/// Step 3: a full accept queue on the port (or a silent drop while the counters moved).
fn overflow(e: &Evidence, f: &Facts) -> Option<(Vec<String>, Vec<String>)> {
    let o = e.overflow.as_ref()?;
    let full = o.full_listeners.iter().find(|l| l.port == e.port && f.in_target_ns(l));
    let silent =
        e.flow.as_ref().is_some_and(|fl| fl.outcome == Outcome::Unanswered && fl.drop.is_none())
            && f.target_ns.is_some_and(|n| n == o.netns.inode);
    if full.is_none() && !silent {
        return None;
    }
    let mut ev = Vec::new();
    if let Some(l) = full {
        let backlog = l.backlog.map(|b| b.to_string()).unwrap_or_else(|| "?".into());
        let queue = l.accept_queue.map(|q| q.to_string()).unwrap_or_else(|| "?".into());
        ev.push(format!("accept queue full: {} (queue {queue} of backlog {backlog})", who(l)));
    }
    // All zero: a queue seen full without a watched window (a prediction); no counter moved.
    if o.listen_overflows + o.listen_drops + o.syn_queue_full_drops > 0 {
        ev.push(format!(
            "netns {}: ListenOverflows +{}, ListenDrops +{}, SYN queue full drops +{}",
            ns_name(&o.netns),
            o.listen_overflows,
            o.listen_drops,
            o.syn_queue_full_drops
        ));
    }
    Some((ev, fix::overflow(full)))
}

/// Step 4: which listener the SYN failed to find. None: a listener serves it.
fn socket(e: &Evidence, f: &Facts) -> Option<Decided> {
    let on_port = e.listeners.iter().filter(|l| l.port == e.port);
    let (same, other): (Vec<&ListenerView>, Vec<&ListenerView>) =
        on_port.partition(|l| f.in_target_ns(l));
    if same.iter().any(|l| serves(l, f.dest, f.via_lo)) {
        return None;
    }
    let dest_outside = f.dest.is_none_or(|d| !d.is_loopback());
    if let Some(l) = same.iter().find(|l| l.loopback_only).filter(|_| dest_outside) {
        let came = match (&e.iface, f.dest) {
            (Some(i), Some(d)) => format!("the SYN came in on {i} to {d}"),
            (Some(i), None) => format!("the SYN came in on {i}"),
            (None, Some(d)) => format!("the SYN goes to {d}"),
            (None, None) => "the client is outside this host".into(),
        };
        let ev =
            vec![format!("listening on loopback only: {}", who(l)), format!("{came}, not via lo")];
        return Some((Verdict::LoopbackOnlyBind, ev, fix::loopback(l)));
    }
    let mut ev: Vec<String> = same
        .iter()
        .map(|l| format!("a listener on the port does not take this SYN: {}", who(l)))
        .collect();
    if let Some(l) = other.first() {
        ev.push(format!("the server listens in another namespace: {}", who(l)));
        let target = e.netns.as_ref().map(ns_name).or(f.target_ns.map(|n| format!("netns:[{n}]")));
        return Some((Verdict::ListenerInOtherNetns, ev, fix::other_netns(l, target.as_deref())));
    }
    ev.push(format!("nothing listens on port {} in any namespace", e.port));
    for b in &e.failed_binds {
        ev.push(format!(
            "pid {} ({}) failed to bind {}:{} in netns {}: {}",
            b.pid,
            b.comm,
            b.addr.as_deref().unwrap_or("?"),
            e.port,
            ns_name(&b.netns),
            b.errno
        ));
    }
    ev.extend(holders(e));
    Some((Verdict::NoListener, ev, fix::no_listener(e)))
}

fn kernel_drop(e: &Evidence, reason: &str) -> Decided {
    let ev = vec![format!("the kernel dropped the SYN: {reason}")];
    (Verdict::KernelDrop, ev, fix::kernel(reason, e.iface.as_deref()))
}

/// An attempt nobody answered, with no drop recorded and a listener in place.
fn silent(e: &Evidence) -> Decided {
    let answered = e.flow.as_ref().is_some_and(|f| f.synack_sent);
    let ev = if answered {
        "the server sent a SYN-ACK but the handshake never completed: the SYN-ACK or the client's \
         ACK was lost on the way (return route, NAT, the client's firewall)"
    } else {
        "the SYN got no answer and no drop reason was recorded (a silent drop)"
    };
    (Verdict::KernelDrop, vec![ev.into()], fix::silent(answered))
}

fn reachable(e: &Evidence, f: &Facts) -> Decided {
    let ev = e
        .listeners
        .iter()
        .filter(|l| l.port == e.port && f.in_target_ns(l) && serves(l, f.dest, f.via_lo))
        .map(|l| format!("listening: {}", who(l)))
        .collect();
    (Verdict::Reachable, ev, Vec::new())
}

/// The hop where the SYN died.
fn failing(v: Verdict, reason: Option<&str>) -> Option<usize> {
    Some(match v {
        Verdict::Reachable => return None,
        Verdict::NoSynSeen => 0,
        Verdict::FirewallDrop | Verdict::FirewallReject | Verdict::OtherNetfilterDrop => 2,
        Verdict::KernelDrop
            if reason.is_none_or(|r| !(r.starts_with("TCP_") || r.starts_with("SOCKET_"))) =>
        {
            1
        }
        _ => 3,
    })
}

fn path(e: &Evidence, f: &Facts, v: Verdict, ev: &[String]) -> Vec<Hop> {
    let iface = e.iface.as_deref().unwrap_or("(unknown)");
    let client =
        e.flow.as_ref().map(|fl| fl.client.to_string()).unwrap_or_else(|| "the client".into());
    let bad = failing(v, f.drop_reason.as_deref());
    let note_of_failure = ev.last().cloned().unwrap_or_default();
    // A prediction says what would happen; an observed attempt what did.
    let notes = if f.predicting && bad != Some(0) {
        [
            (String::from("client"), format!("{client} connects")),
            (format!("interface {iface}"), "its SYN arrives here".into()),
            ("firewall".into(), "would let the SYN through".into()),
            ("socket".into(), format!("a listener on port {} would take it", e.port)),
        ]
    } else {
        [
            (
                String::from("client"),
                if bad == Some(0) {
                    "the SYN never reached this host".into()
                } else {
                    format!("{client} sent a SYN")
                },
            ),
            (format!("interface {iface}"), "SYN arrived".into()),
            ("firewall".into(), "let the SYN through".into()),
            ("socket".into(), format!("a listener on port {} took it", e.port)),
        ]
    };
    let last = bad.unwrap_or(notes.len() - 1);
    notes
        .into_iter()
        .take(last + 1)
        .enumerate()
        .map(|(i, (name, ok_note))| {
            let ok = Some(i) != bad;
            let note = if ok || i == 0 { ok_note } else { note_of_failure.clone() };
            Hop { name, ok, note }
        })
        .collect()
}
