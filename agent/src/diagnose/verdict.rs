//! The decision: which single verdict explains the client's failure, checked in the order the
//! SYN travels, so the first broken hop wins:
//!
//! 1. **No SYN seen** (traffic was watched, nothing came): everything on this host is moot; the
//!    problem is before it (route, NAT, the client's or Windows' firewall, a WSL2 portproxy).
//! 2. **Netfilter dropped/rejected the SYN**: the firewall runs before socket lookup, so a
//!    firewall drop hides whatever the socket layer would have said (a loopback-only bind
//!    included). firewalld's rule → `firewall_reject`/`firewall_drop` by its action; any other
//!    rule → `other_netfilter_drop`.
//! 3. **Reply dropped**: the SYN got in, the lookup gives it to a listener, the server answered
//!    and its SYN-ACK or RST died on its way out (`reply.rs`) → `reply_dropped`. A reply dropped
//!    for a SYN no listener takes leaves the classes below deciding, with a line saying so.
//! 4. **Listen overflow** on that port: the listener exists but its queue is full; the SYN is
//!    consumed silently, so nothing later in this list could explain it. A flow proven
//!    `accepted` overrides this (that attempt got in; the overflow hit others).
//! 5. **No socket** (drop `NO_SOCKET`, or a RST without drop evidence): the TCP listeners on the
//!    port in the SYN's namespace are judged as the kernel's lookup does (`miss.rs`); the
//!    closest miss names the class — `interface_mismatch` (SO_BINDTODEVICE), `family_mismatch`,
//!    `address_mismatch`, or `loopback_only_bind` for a loopback listener and a client from
//!    another host or namespace. Only when no TCP socket listens there: a listener in another
//!    namespace → `listener_in_other_netns`, else `no_listener` (with any failed bind on the
//!    port). A refused attempt whose SYN a listener takes now is `kernel_drop` (the listener
//!    came up since), never `reachable`.
//! 6. **Other drop reasons** → `kernel_drop`, named. An unanswered attempt with no drop recorded
//!    is a silent drop and is reported as `kernel_drop` too, after checking the socket side.
//! 7. **Accepted** → `reachable`; predicted only when the lookup gives the SYN to a listener.
//!
//! Without traffic (or with an attempt still pending) the same classes are predicted from the
//! firewalld prediction and the listeners.
//!
//! The path lists the hops up to and including the failing one: hops after it were never
//! reached, so they carry no information.
use std::net::IpAddr;

use serde::Serialize;

use super::{
    Evidence, fix,
    lookup::Lookup,
    miss::{self, Answer},
    reply, wsl,
};
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
    FamilyMismatch,
    AddressMismatch,
    InterfaceMismatch,
    ReplyDropped,
    NetnsGone,
    EventsLost,
}

impl Verdict {
    pub const ALL: [Verdict; 16] = [
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
        Verdict::FamilyMismatch,
        Verdict::AddressMismatch,
        Verdict::InterfaceMismatch,
        Verdict::ReplyDropped,
        Verdict::NetnsGone,
        Verdict::EventsLost,
    ];

    /// `reach why`'s exit code: 0 reachable, one code per failure class (10-23, new classes
    /// appended so existing codes never change), so scripts can branch on the class without
    /// parsing output. 1-3 stay the usual error codes.
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
            Verdict::FamilyMismatch => 19,
            Verdict::AddressMismatch => 20,
            Verdict::InterfaceMismatch => 21,
            Verdict::ReplyDropped => 22,
            Verdict::NetnsGone => 23,
            Verdict::EventsLost => 24,
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
            Verdict::FamilyMismatch => "family_mismatch",
            Verdict::AddressMismatch => "address_mismatch",
            Verdict::InterfaceMismatch => "interface_mismatch",
            Verdict::ReplyDropped => "reply_dropped",
            Verdict::NetnsGone => "netns_gone",
            Verdict::EventsLost => "events_lost",
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
            Verdict::FamilyMismatch => {
                "the server listens on the other address family (IPv4 vs IPv6) than the client's SYN"
            }
            Verdict::AddressMismatch => {
                "the server listens on another address of this host than the one the client dials"
            }
            Verdict::InterfaceMismatch => {
                "the server is bound to another interface (SO_BINDTODEVICE) than the one the SYN \
                 arrives on"
            }
            Verdict::ReplyDropped => {
                "the server answered, but its reply (SYN-ACK or RST) was dropped on its way out"
            }
            Verdict::NetnsGone => {
                "the server's network namespace went away before any SYN came (deleted, or its \
                 last process exited)"
            }
            Verdict::EventsLost => {
                "no SYN was seen, but SYN events were lost or suppressed while reach watched: \
                 whether the client's SYN arrived cannot be told"
            }
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
    /// The kernel's listener lookup for the client's SYN in its namespace (the closest miss,
    /// or the SYN a listener takes), when a TCP listener is there.
    pub lookup: Option<Lookup>,
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
            // A pending attempt with a drop recorded already happened in part: explained from
            // what was seen, never predicted as if nothing had.
            predicting: flow.is_none_or(|f| f.outcome == Outcome::Pending && f.drop.is_none()),
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

pub(super) type Decided = (Verdict, Vec<String>, Vec<String>);

pub fn diagnose(e: &Evidence) -> Diagnosis {
    let f = Facts::new(e);
    let (verdict, mut evidence, mut fix) = decide(e, &f);
    let path = path(e, &f, verdict, &evidence);
    wsl::explain(e, verdict, &mut evidence, &mut fix);
    let same = same_ns(e, &f);
    let lookup = miss::answer(e, &f, &same).map(|a| a.lookup().clone());
    Diagnosis { verdict, evidence, fix, path, lookup }
}

/// The TCP listeners on the port in the SYN's namespace.
fn same_ns<'a>(e: &'a Evidence, f: &Facts) -> Vec<&'a ListenerView> {
    e.listeners
        .iter()
        .filter(|l| l.port == e.port && l.proto == "tcp" && f.in_target_ns(l))
        .collect()
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
        if e.unseen_syns > 0 {
            // Not seen is not absent: the kernel had SYNs no sink got. Nothing before this host,
            // nor the namespace going first, can be claimed.
            ev.push(format!(
                "{} SYN event(s) were lost (a full ring buffer) or suppressed (the rate bound) \
                 while reach watched",
                e.unseen_syns
            ));
            if e.netns_gone {
                let name = e.netns.as_ref().map_or("the watched namespace", |n| n.name.as_str());
                ev.push(format!("netns {name} went away while reach waited"));
            }
            return (Verdict::EventsLost, ev, fix::events_lost(e.port));
        }
        if e.netns_gone {
            let name = e.netns.as_ref().map_or("the watched namespace", |n| n.name.as_str());
            ev.push(format!(
                "netns {name} went away while reach waited (deleted, or its last process exited)"
            ));
            return (Verdict::NetnsGone, ev, fix::netns_gone(name, e.port));
        }
        return (Verdict::NoSynSeen, ev, fix::no_syn(e.port));
    }
    if let Some((v, more, fix)) = firewall(e, f) {
        ev.extend(more);
        return (v, ev, fix);
    }
    // The server answered (a SYN-ACK or RST was dropped on its way out): when the SYN got in and
    // a listener took it, the dead reply is the failure. Else the SYN's own hops decide below,
    // and the dead reply is noted after the attempt line.
    let death = reply::death(e);
    if let Some(d) = &death
        && reply::syn_got_through(e)
        && let Ok(served) = socket(e, f)
    {
        let (v, more, fix) = reply::decided(e, d, served);
        ev.extend(more);
        return (v, ev, fix);
    }
    if let Some(d) = &death {
        ev.insert(ev.len().min(1), reply::note(d));
    }
    let accepted = e.flow.as_ref().is_some_and(|fl| fl.outcome == Outcome::Accepted);
    // Behind a NAT, no way back drops the SYN as a listen drop too (tcp_conn_request cannot
    // route its SYN-ACK): the route lookup names that cause, the counters cannot.
    let incomplete = e
        .flow
        .as_ref()
        .is_some_and(|fl| matches!(fl.outcome, Outcome::Unanswered | Outcome::Dropped));
    // No reason, or TCP's own once it took the SYN (a retransmission at the pending request).
    let after_tcp =
        f.drop_reason.as_deref().is_none_or(|r| r == "NOT_SPECIFIED" || r.starts_with("TCP_"));
    if incomplete
        && after_tcp
        && socket(e, f).is_ok()
        && let Some((v, more, fix)) = super::return_route::decided(e)
    {
        ev.extend(more);
        return (v, ev, fix);
    }
    if !accepted && let Some((more, fix)) = overflow(e, f) {
        ev.extend(more);
        return (Verdict::ListenOverflow, ev, fix);
    }
    let outcome = e.flow.as_ref().map(|fl| fl.outcome);
    let (v, more, fix) = match (outcome, f.drop_reason.as_deref()) {
        (Some(Outcome::Accepted), _) => {
            let same = same_ns(e, f);
            let steering = miss::answer(e, f, &same).map(|a| miss::steering(e, &a));
            (Verdict::Reachable, steering.unwrap_or_default(), Vec::new())
        }
        (_, Some("NO_SOCKET")) | (Some(Outcome::Reset), None) => match socket(e, f) {
            Err(d) => d,
            // The kernel found no socket although the lookup gives the SYN to a listener now:
            // never `reachable`, the attempt was refused.
            Ok(served) => came_up_since(f, served),
        },
        (_, Some(reason)) => kernel_drop(e, reason),
        (Some(Outcome::Unanswered), None) => socket(e, f)
            .err()
            .unwrap_or_else(|| super::return_route::decided(e).unwrap_or_else(|| silent(e))),
        // Pending or no attempt: predict from the listeners.
        _ => match socket(e, f) {
            Err(d) => d,
            Ok(served) => (Verdict::Reachable, served, Vec::new()),
        },
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
        let mut lines = vec![format!("firewalld: {}", a.summary), format!("rule: {}", a.rule)];
        // A rule reach cannot name (a.fix empty): the prediction's precise fix when it
        // reaches the same verdict; listing the ruleset only when nothing precise is known. A
        // prediction that starts with the same fix also knows what else stands in the way once
        // that rule is gone (a rich rule removed, the port still not allowed): its whole fix.
        let agreeing = e
            .prediction
            .as_ref()
            .filter(|p| predicted_action(&p.decision) == Some(norm(&a.action)));
        let fix = match agreeing {
            Some(p) if !a.fix.is_empty() && p.fix.first() == a.fix.first() => p.fix.clone(),
            _ if !a.fix.is_empty() => a.fix.clone(),
            Some(p) if !p.fix.is_empty() => {
                lines.push(format!("firewalld's configuration predicts the same: {}", p.reason));
                p.fix.clone()
            }
            // No firewalld concept and no prediction to lean on, but the rule itself is known
            // (table, chain, handle): the exact nft edit, as for any other table's rule.
            _ => match e.netfilter.as_ref().filter(|r| r.table == "firewalld") {
                Some(r) => {
                    let accepting = e
                        .prediction
                        .as_ref()
                        .filter(|p| matches!(p.decision, Decision::Accept { .. }));
                    match (accepting, r.owned) {
                        // firewalld ≥ 2.0 owns its table: nobody else can have added the rule.
                        (Some(p), true) => lines.push(format!(
                            "firewalld's configuration, as reach reads it, accepts this SYN \
                             ({}), yet firewalld wrote this rule (its table is owner-flagged: \
                             no other program can add to it): a setting reach does not model",
                            p.reason
                        )),
                        (None, true) => lines.push(
                            "firewalld wrote this rule (its table is owner-flagged: no other \
                             program can add to it)"
                                .into(),
                        ),
                        (Some(p), false) => lines.push(format!(
                            "firewalld's configuration accepts this SYN ({}): firewalld did not \
                             write this rule, something added it to firewalld's table (a \
                             `firewall-cmd --reload` removes it, and every runtime-only change)",
                            p.reason
                        )),
                        (None, false) => {}
                    }
                    fix::netfilter(r, e.port)
                }
                None => fix::nft_list(),
            },
        };
        return Some((v, lines, fix));
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
        let line = format!(
            "netfilter dropped {} (NETFILTER_DROP), no trace named the rule",
            dropped_segment(e)
        );
        (Verdict::OtherNetfilterDrop, vec![line], fix::nft_list())
    })
}

/// The traced action a prediction stands for (`drop`, `reject icmpx admin-prohibited`), spelt
/// as [`norm`] spells the attribution's; None for accept.
fn predicted_action(d: &Decision) -> Option<String> {
    match d {
        Decision::Accept { .. } => None,
        Decision::Drop { .. } => Some("drop".into()),
        Decision::Reject { with, .. } => Some(norm(&format!("reject {with}"))),
    }
}

/// nft writes `tcp reset`, firewalld `tcp-reset`.
fn norm(action: &str) -> String {
    action.replace('-', " ")
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

/// Step 4: which listener the SYN failed to find (Err: the verdict), or the evidence of the
/// listener that takes it (Ok). Judged as the kernel's lookup does, in the SYN's namespace
/// only: `no_listener` and `listener_in_other_netns` only when no TCP socket listens there.
fn socket(e: &Evidence, f: &Facts) -> Result<Vec<String>, Decided> {
    let same = same_ns(e, f);
    if !same.is_empty() {
        return match miss::answer(e, f, &same) {
            Some(a @ Answer::Taken { .. }) => Ok(miss::served(e, f, &a)),
            Some(Answer::Missed(m)) => Err(miss::decided(e, f, &m)),
            None => unknown_address(&same),
        };
    }
    let other: Vec<&ListenerView> = e
        .listeners
        .iter()
        .filter(|l| l.port == e.port && l.proto == "tcp" && !f.in_target_ns(l))
        .collect();
    let mut ev = Vec::new();
    if let Some(l) = other.first() {
        ev.push(format!("the server listens in another namespace: {}", who(l)));
        let target = e.netns.as_ref().map(ns_name).or(f.target_ns.map(|n| format!("netns:[{n}]")));
        return Err((Verdict::ListenerInOtherNetns, ev, fix::other_netns(l, target.as_deref())));
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
    Err((Verdict::NoListener, ev, fix::no_listener(e)))
}

/// A prediction for a bare port from outside when the namespace's addresses are unknown: which
/// address the client dials cannot be judged, only that a loopback listener serves no client
/// from outside (from lo, 127.0.0.1 and ::1 are judged instead).
fn unknown_address(same: &[&ListenerView]) -> Result<Vec<String>, Decided> {
    if same.iter().any(|l| !l.loopback_only) {
        return Ok(same.iter().map(|l| format!("listening: {}", who(l))).collect());
    }
    // Every one is named: a second loopback listener (SO_REUSEPORT) left out reads as unseen.
    let mut ev: Vec<String> =
        same.iter().map(|l| format!("listening on loopback only: {}", who(l))).collect();
    ev.push("the client is outside this host, not via lo".into());
    Err((Verdict::LoopbackOnlyBind, ev, fix::loopback(same[0], None)))
}

/// The attempt was refused (no socket) although the lookup gives its SYN to a listener now:
/// the listener came up after the attempt, or something steered the lookup then.
fn came_up_since(f: &Facts, served: Vec<String>) -> Decided {
    let reason = f.drop_reason.clone().unwrap_or_else(|| "a RST".into());
    let mut ev = vec![format!(
        "the kernel found no socket for the SYN ({reason}), yet the lookup gives it to a listener \
         now: the listener started after the attempt"
    )];
    ev.extend(served);
    (Verdict::KernelDrop, ev, vec!["connect again: the server listens now".into()])
}

/// What the flow's drop freed: its SYN, or (once the server answered) a later segment of the
/// client's, which the flow table keeps only until a SYN drop shows up.
fn dropped_segment(e: &Evidence) -> &'static str {
    match e.flow.as_ref().and_then(|f| f.drop.as_ref()) {
        Some(d) if !d.syn => "the client's segment after its SYN (the handshake ACK)",
        _ => "the SYN",
    }
}

fn kernel_drop(e: &Evidence, reason: &str) -> Decided {
    let mut ev = vec![format!("the kernel dropped {}: {reason}", dropped_segment(e))];
    let mut fixes = Vec::new();
    if reason == "IP_RPFILTER"
        && let Some((line, route)) = super::return_route::rp_filter(e)
    {
        ev.push(line);
        fixes.push(route);
    }
    fixes.extend(fix::kernel(reason, e.iface.as_deref()));
    (Verdict::KernelDrop, ev, fixes)
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

/// The hop where the SYN died. `socket_layer`: TCP itself answered or dropped it with no
/// reason (a RST; a SYN whose SYN-ACK has no route back).
fn failing(v: Verdict, reason: Option<&str>, socket_layer: bool) -> Option<usize> {
    let at_socket = |r: &str| r.starts_with("TCP_") || r.starts_with("SOCKET_") || r == "NO_SOCKET";
    Some(match v {
        Verdict::Reachable => return None,
        // Nothing was seen past the client (for `events_lost`: nothing that can be told).
        Verdict::NoSynSeen | Verdict::EventsLost => 0,
        Verdict::FirewallDrop | Verdict::FirewallReject | Verdict::OtherNetfilterDrop => 2,
        // A RST with no drop recorded was the socket layer's answer.
        Verdict::KernelDrop if !socket_layer && reason.is_none_or(|r| !at_socket(r)) => 1,
        // The hop after the socket: the server's answer on its way back.
        Verdict::ReplyDropped => 4,
        _ => 3,
    })
}

fn path(e: &Evidence, f: &Facts, v: Verdict, ev: &[String]) -> Vec<Hop> {
    let iface = e.iface.as_deref().unwrap_or("(unknown)");
    let client =
        e.flow.as_ref().map(|fl| fl.client.to_string()).unwrap_or_else(|| "the client".into());
    let reset = e.flow.as_ref().is_some_and(|fl| fl.outcome == Outcome::Reset);
    let no_way_back = e
        .return_route
        .as_ref()
        .is_some_and(|r| matches!(r.leaves, super::return_route::Leaves::Nowhere { .. }));
    let bad = failing(v, f.drop_reason.as_deref(), reset || no_way_back);
    // The line that says what failed: for the firewall, the decision in the firewall's own
    // terms ("firewalld: zone public, target DROP → drop…", "netfilter: table …"), not the
    // bare rule text that follows it.
    let decision_line =
        ev.iter().find(|l| l.starts_with("firewalld") || l.starts_with("netfilter:"));
    let note_of_failure = match bad {
        Some(2) => decision_line.or(ev.last()),
        _ => ev.last(),
    }
    .cloned()
    .unwrap_or_default();
    // What let the SYN through, when a trace named it (firewalld's accepting rule).
    let through = match e.attribution.as_ref().filter(|a| a.action == "accept") {
        Some(a) => format!("let the SYN through: firewalld {}", a.summary),
        None => "let the SYN through".into(),
    };
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
                if v == Verdict::EventsLost {
                    "no SYN seen, with SYN events lost: where it went is unknown".into()
                } else if bad == Some(0) {
                    "the SYN never reached this host".into()
                } else {
                    format!("{client} sent a SYN")
                },
            ),
            (format!("interface {iface}"), "SYN arrived".into()),
            ("firewall".into(), through),
            ("socket".into(), format!("a listener on port {} took it", e.port)),
        ]
    };
    let last = bad.unwrap_or(notes.len() - 1);
    let mut hops: Vec<Hop> = notes
        .into_iter()
        .take(last + 1)
        .enumerate()
        .map(|(i, (name, ok_note))| {
            let ok = Some(i) != bad;
            let note = if ok || i == 0 { ok_note } else { note_of_failure.clone() };
            Hop { name, ok, note }
        })
        .collect();
    // A reply hop only when it is the failing one: every other path ends at the socket.
    if v == Verdict::ReplyDropped {
        hops.push(Hop { name: "reply".into(), ok: false, note: note_of_failure });
    }
    hops
}
