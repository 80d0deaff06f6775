//! The properties' checkers: each reads the evidence itself (not through the engine) and
//! returns what the diagnosis got wrong.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::{
    diagnose::{
        Evidence, NetfilterRule,
        lookup::{self, Judgement, Miss, SkLookupState, Socket},
        verdict::{Diagnosis, Verdict, who},
    },
    firewall::predict::Decision,
    model::{flows::Outcome, listener_view::ListenerView},
    probes::sock_event::NetnsRef,
};

// What the evidence says, computed here from the evidence alone (not through the engine).

/// The namespace of the SYN, as the engine is told it: the named one, else the flow's.
pub(super) fn target_ns(e: &Evidence) -> Option<u64> {
    e.netns.as_ref().map(|n| n.inode).or(e.flow.as_ref().map(|f| f.netns))
}

/// TCP listeners on the port in the SYN's namespace (every namespace when it is unknown).
pub(super) fn listening_here(e: &Evidence) -> Vec<&ListenerView> {
    let ns = target_ns(e);
    e.listeners
        .iter()
        .filter(|l| l.proto == "tcp" && l.port == e.port && ns.is_none_or(|n| l.netns.inode == n))
        .collect()
}

pub(super) fn listening_anywhere(e: &Evidence) -> bool {
    e.listeners.iter().any(|l| l.proto == "tcp" && l.port == e.port)
}

/// No attempt settled and nothing of one seen dropped: the diagnosis predicts.
pub(super) fn predicting(e: &Evidence) -> bool {
    e.flow.as_ref().is_none_or(|f| f.outcome == Outcome::Pending && f.drop.is_none())
}

pub(super) fn accepted(e: &Evidence) -> bool {
    e.flow.as_ref().is_some_and(|f| f.outcome == Outcome::Accepted)
}

/// Whether some firewall decision in the evidence refuses the SYN.
pub(super) fn firewall_refuses(e: &Evidence) -> bool {
    e.attribution.as_ref().is_some_and(|a| a.action != "accept")
        || e.netfilter.as_ref().is_some_and(|r| r.action != "accept")
        || e.prediction.as_ref().is_some_and(|p| !matches!(p.decision, Decision::Accept { .. }))
}

pub(super) fn lines(d: &Diagnosis) -> impl Iterator<Item = &String> {
    d.evidence.iter().chain(&d.fix).chain(d.path.iter().map(|h| &h.note))
}

/// The failing hop each class dies at: 0 client, 1 interface, 2 firewall, 3 socket.
pub(super) fn failing_hop(e: &Evidence, v: Verdict) -> Option<usize> {
    let reason = e
        .flow
        .as_ref()
        .and_then(|f| f.drop.as_ref())
        .map(|d| d.reason.trim_start_matches("SKB_DROP_REASON_").to_string());
    let reset = e.flow.as_ref().is_some_and(|f| f.outcome == Outcome::Reset);
    let at_socket = |r: &str| r.starts_with("TCP_") || r.starts_with("SOCKET_") || r == "NO_SOCKET";
    Some(match v {
        Verdict::Reachable => return None,
        Verdict::NoSynSeen | Verdict::EventsLost => 0,
        Verdict::FirewallDrop | Verdict::FirewallReject | Verdict::OtherNetfilterDrop => 2,
        // The server's answer, after the socket hop.
        Verdict::ReplyDropped => 4,
        Verdict::KernelDrop if !reset && reason.as_deref().is_none_or(|r| !at_socket(r)) => 1,
        Verdict::KernelDrop
        | Verdict::LoopbackOnlyBind
        | Verdict::ListenerInOtherNetns
        | Verdict::NoListener
        | Verdict::ListenOverflow
        | Verdict::FamilyMismatch
        | Verdict::AddressMismatch
        | Verdict::InterfaceMismatch
        | Verdict::NetnsGone => 3,
    })
}

// ---------------------------------------------------------------------------------------------
// The properties' checkers: Err names the violation.

pub(super) type Check = fn(&Evidence, &Diagnosis) -> Result<(), String>;

/// No "nothing listens" / "start the server" / `no_listener` while a TCP socket of the SYN's
/// namespace listens on the port; no `listener_in_other_netns` then either.
pub(super) fn listeners_are_never_denied(e: &Evidence, d: &Diagnosis) -> Result<(), String> {
    let here = listening_here(e);
    let Some(l) = here.first() else { return Ok(()) };
    if matches!(d.verdict, Verdict::NoListener | Verdict::ListenerInOtherNetns) {
        return Err(format!("verdict {} although {} listens", d.verdict.name(), who(l)));
    }
    match lines(d)
        .find(|s| s.contains("nothing listens") || s.contains("start the server listening"))
    {
        Some(s) => Err(format!("{s:?} although {} listens", who(l))),
        None => Ok(()),
    }
}

/// `reachable` only for an accepted attempt, or a prediction whose SYN the lookup model gives
/// to a listener of the SYN's namespace with no firewall decision refusing it.
pub(super) fn reachable_only_when_served(e: &Evidence, d: &Diagnosis) -> Result<(), String> {
    if d.verdict != Verdict::Reachable || accepted(e) {
        return Ok(());
    }
    if !predicting(e) {
        return Err(format!(
            "reachable although the attempt ended {:?}",
            e.flow.as_ref().map(|f| f.outcome)
        ));
    }
    if firewall_refuses(e) {
        return Err("reachable although a firewall decision in the evidence refuses the SYN".into());
    }
    let here = listening_here(e);
    let sockets: Vec<Socket> = here.iter().filter_map(|l| Socket::from_view(l)).collect();
    let Some(l) = &d.lookup else {
        // No destination known and no interface listed: the model has nothing to judge, and
        // only a listener bound beyond loopback may be called reachable then.
        let unjudgeable = e.flow.is_none() && e.addr.is_none() && e.interfaces.is_empty();
        // Judged by the address itself: `::ffff:127.0.0.1` is loopback too.
        let beyond_lo =
            here.iter().any(|l| l.addr.parse().is_ok_and(|a| !lookup::unmap(a).is_loopback()));
        return if unjudgeable && beyond_lo && e.iface.as_deref() != Some("lo") {
            Ok(())
        } else {
            Err("reachable without a lookup that gives the SYN to a listener".into())
        };
    };
    // The model, asked again here, with the SYN the diagnosis judged.
    let again = lookup::lookup(&l.syn, &sockets, &SkLookupState::Attached(Vec::new()));
    if !again.accepted() {
        return Err(format!("reachable, yet no listener of the SYN's namespace takes {:?}", l.syn));
    }
    let dest = e.flow.as_ref().map(|f| f.server.ip()).or(e.addr).map(lookup::unmap);
    let dialable = |a: IpAddr| {
        e.interfaces.iter().any(|i| i.addrs.contains(&a))
            || (e.iface.as_deref() == Some("lo") && a.is_loopback())
    };
    match dest {
        Some(dest) if dest != l.syn.daddr => {
            Err(format!("reachable for a SYN to {}, the client dials {dest}", l.syn.daddr))
        }
        None if !dialable(l.syn.daddr) => {
            Err(format!("reachable for a SYN to {}, no address a client can dial", l.syn.daddr))
        }
        _ => Ok(()),
    }
}

/// Everything of one kind the evidence holds, for a fix to name.
#[derive(Default)]
pub(super) struct Known {
    pub(super) addrs: BTreeSet<IpAddr>,
    pub(super) pids: BTreeSet<u32>,
    pub(super) netns: BTreeSet<String>,
    pub(super) ifaces: BTreeSet<String>,
    pub(super) ifindexes: BTreeSet<u32>,
    /// Connections' ends (a port holder's peer, the client): their ports are not the target's.
    pub(super) endpoints: BTreeSet<SocketAddr>,
}

pub(super) fn known(e: &Evidence) -> Known {
    let mut k = Known::default();
    // Every namespace has lo with these (the kernel creates it with the namespace).
    k.addrs.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    // … and that lo is ifindex 1 in every namespace (`LOOPBACK_IFINDEX`).
    k.ifaces.insert("lo".into());
    k.ifindexes.insert(1);
    let mut ns = |n: &NetnsRef| {
        k.netns.insert(format!("netns:[{}]", n.inode));
        if !n.name.is_empty() {
            k.netns.insert(n.name.clone());
        }
    };
    let overflow_ls = e.overflow.iter().flat_map(|o| &o.full_listeners);
    for l in e.listeners.iter().chain(overflow_ls) {
        ns(&l.netns);
        k.pids.extend(l.pid.iter().chain(&l.pids));
        if let Ok(a) = l.addr.parse::<IpAddr>() {
            k.addrs.extend([a, lookup::unmap(a)]);
        }
        k.ifindexes.extend(l.bound_dev_if);
    }
    e.netns.iter().for_each(&mut ns);
    e.overflow.iter().for_each(|o| ns(&o.netns));
    for b in &e.failed_binds {
        ns(&b.netns);
        k.pids.insert(b.pid);
        k.addrs.extend(b.addr.as_deref().and_then(|a| a.parse::<IpAddr>().ok()));
    }
    if let Some(f) = &e.flow {
        k.netns.insert(format!("netns:[{}]", f.netns));
        k.addrs.extend([f.client.ip(), f.server.ip(), lookup::unmap(f.server.ip())]);
        k.endpoints.insert(f.client);
        k.ifindexes.extend(f.ifindex);
    }
    for h in &e.port_holders {
        k.pids.extend(h.owners.iter().map(|o| o.pid));
        for ep in std::iter::once(&h.local).chain(&h.peer) {
            k.addrs.extend(ep.parse::<SocketAddr>().ok().map(|s| s.ip()));
            k.endpoints.extend(ep.parse::<SocketAddr>().ok());
        }
    }
    k.addrs.extend(e.addr);
    k.addrs.extend(e.wsl.iter().flat_map(|w| w.eth0_addr));
    for i in &e.interfaces {
        k.addrs.extend(&i.addrs);
        k.ifaces.insert(i.name.clone());
        k.ifindexes.insert(i.ifindex);
    }
    k.ifaces.extend(e.iface.iter().chain(&e.watched_ifaces).cloned());
    k
}

/// A line cut into words, punctuation and quotes stripped (addresses and `addr:port` kept).
pub(super) fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || "\"(),;`=".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The addresses and ports a line names: `a.b.c.d`, `[v6]:p`, `a:p`, `:p` (Go's wildcard
/// form), `port p`, `dport p`, `sport p`, `-p p:p`, `--add-port=p/tcp`.
pub(super) fn addrs_and_ports(line: &str, known: &BTreeSet<SocketAddr>) -> (Vec<IpAddr>, Vec<u16>) {
    let (mut addrs, mut ports) = (Vec::new(), Vec::new());
    let ws = words(line);
    for (i, w) in ws.iter().enumerate() {
        if let Ok(s) = w.parse::<SocketAddr>() {
            addrs.push(s.ip());
            if !known.contains(&s) {
                ports.push(s.port());
            }
        } else if let Ok(a) = w.parse::<IpAddr>() {
            addrs.push(a);
        } else if let Some(p) = w.strip_prefix(':').and_then(|p| p.parse().ok()) {
            ports.push(p);
        } else if let Some((a, b)) = w.split_once(':')
            && let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
        {
            ports.extend([a, b]);
        } else if let Some(p) = w.strip_suffix("/tcp").and_then(|p| p.parse().ok()) {
            ports.push(p);
        }
        let after_port_word = i > 0
            && matches!(
                ws[i - 1],
                "port" | "dport" | "sport" | "ports" | "listenport" | "connectport"
            );
        if after_port_word && let Ok(p) = w.parse() {
            ports.push(p);
        }
    }
    (addrs, ports)
}

/// Every fix of a failure exists, and names only what the evidence holds.
pub(super) fn fixes_name_what_exists(e: &Evidence, d: &Diagnosis) -> Result<(), String> {
    match (d.verdict, d.fix.is_empty()) {
        (Verdict::Reachable, false) => return Err("reachable, yet a fix is given".into()),
        (v, true) if v != Verdict::Reachable => {
            return Err(format!("{} without a fix", v.name()));
        }
        _ => {}
    }
    if let Some(f) = d.fix.iter().find(|f| f.trim().is_empty()) {
        return Err(format!("an empty fix line {f:?}"));
    }
    let k = known(e);
    for f in &d.fix {
        let (addrs, ports) = addrs_and_ports(f, &k.endpoints);
        if let Some(a) = addrs.iter().find(|a| !a.is_unspecified() && !k.addrs.contains(a)) {
            return Err(format!("the fix {f:?} names {a}, no address in the evidence"));
        }
        if let Some(p) = ports.iter().find(|&&p| p != e.port) {
            return Err(format!("the fix {f:?} names port {p}, the target is port {}", e.port));
        }
        let ws = words(f);
        for (i, w) in ws.iter().enumerate().skip(1) {
            let prev = ws[i - 1];
            let bad = match prev {
                "pid" => w.parse::<u32>().is_ok_and(|p| !k.pids.contains(&p)),
                "netns" => !matches!(*w, "exec" | "or" | "and") && !k.netns.contains(*w),
                "exec" if i > 1 && ws[i - 2] == "netns" => !k.netns.contains(*w),
                "interface" | "VRF" | "SO_BINDTODEVICE" | "on" if is_ifname(w) => {
                    !k.ifaces.contains(*w)
                }
                "ifindex" => w.parse::<u32>().is_ok_and(|i| !k.ifindexes.contains(&i)),
                "handle" | "position" => {
                    w.parse::<u64>().is_ok_and(|h| !rules(e).any(|r| r.handle == Some(h)))
                }
                _ => false,
            };
            if bad {
                return Err(format!("the fix {f:?} names {prev} {w}, not in the evidence"));
            }
        }
        if let Some(err) = names_the_rule(e, f, &ws) {
            return Err(err);
        }
    }
    Ok(())
}

/// The netfilter rules of the evidence: the SYN's and the reply's.
pub(super) fn rules(e: &Evidence) -> impl Iterator<Item = &NetfilterRule> {
    e.netfilter.iter().chain(&e.reply_netfilter)
}

/// An interface name as a fix writes one (`eth0`, `lo`, `srv0`), not an ordinary word.
pub(super) fn is_ifname(w: &str) -> bool {
    w == "lo"
        || (w.chars().any(|c| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// An `nft … chain|rule FAMILY TABLE CHAIN` or `iptables -I|-A|-D CHAIN` in a fix names the
/// netfilter rule of the evidence.
pub(super) fn names_the_rule(e: &Evidence, f: &str, ws: &[&str]) -> Option<String> {
    for (i, w) in ws.iter().enumerate() {
        let triple = match (*w, ws.get(i + 1..i + 4)) {
            ("chain" | "rule", Some([fam, t, c])) if matches!(*fam, "inet" | "ip" | "ip6") => {
                Some((*fam, *t, *c))
            }
            _ => None,
        };
        let iptables_chain = match (*w, ws.get(i + 1)) {
            ("-I" | "-A" | "-D", Some(c)) => Some(*c),
            _ => None,
        };
        if triple.is_none() && iptables_chain.is_none() {
            continue;
        }
        if rules(e).next().is_none() {
            return Some(format!("the fix {f:?} names a netfilter rule, the evidence has none"));
        }
        let chain_of = |r: &NetfilterRule| (r.family.clone(), r.table.clone(), r.chain.clone());
        if let Some((fam, t, c)) = triple
            && !rules(e).any(|r| chain_of(r) == (fam.into(), t.into(), c.into()))
        {
            return Some(format!("the fix {f:?} names chain {fam} {t} {c}, no rule's chain"));
        }
        if let Some(c) = iptables_chain
            && !rules(e).any(|r| c == r.chain)
        {
            return Some(format!("the fix {f:?} names chain {c}, no rule's chain"));
        }
    }
    None
}

/// One story: the path fails at the class's hop (and only there), its note is evidence, and
/// the evidence holds what the class claims and nothing another class would say.
pub(super) fn one_story(e: &Evidence, d: &Diagnosis) -> Result<(), String> {
    let v = d.verdict;
    let bad: Vec<usize> =
        d.path.iter().enumerate().filter(|(_, h)| !h.ok).map(|(i, _)| i).collect();
    let names = ["client", "interface", "firewall", "socket", "reply"];
    for (i, h) in d.path.iter().enumerate() {
        if !h.name.starts_with(names.get(i).copied().unwrap_or("?")) {
            return Err(format!("hop {i} is {:?}", h.name));
        }
    }
    match failing_hop(e, v) {
        None if d.path.len() != 4 || !bad.is_empty() => {
            return Err("reachable, yet the path does not pass every hop".into());
        }
        Some(hop) if bad != [hop] || d.path.len() != hop + 1 => {
            return Err(format!(
                "{} should fail at the {} hop, the path fails at {bad:?} of {}",
                v.name(),
                names[hop],
                d.path.len()
            ));
        }
        Some(hop) if hop > 0 && !d.evidence.contains(&d.path[hop].note) => {
            return Err(format!(
                "the failing hop's note {:?} is no evidence line",
                d.path[hop].note
            ));
        }
        _ => {}
    }
    // The lookup judged the client's own SYN: its destination, over lo exactly when it came so.
    if let (Some(l), Some(f)) = (&d.lookup, &e.flow) {
        let over_lo = e.iface.as_deref() == Some("lo") || f.ifindex == Some(1);
        if l.syn.daddr != lookup::unmap(f.server.ip()) || l.syn.ingress.loopback != over_lo {
            return Err(format!("the lookup judged {:?}, the attempt went to {}", l.syn, f.server));
        }
    }
    let here = listening_here(e);
    let says = |needle: &str| d.evidence.iter().any(|l| l.contains(needle));
    if v != Verdict::NoListener
        && (says("nothing listens on port") || has_fix(d, "start the server listening"))
    {
        return Err(format!("{} told with no_listener's words", v.name()));
    }
    let firewall_words = says("firewalld") || says("netfilter");
    match v {
        Verdict::NoListener if listening_anywhere(e) => {
            Err("no_listener although a TCP socket listens on the port".into())
        }
        Verdict::ListenerInOtherNetns if !here.is_empty() || !listening_anywhere(e) => {
            Err("listener_in_other_netns, yet none listens elsewhere only".into())
        }
        Verdict::NoSynSeen if !(e.watched && !e.syn_seen && e.flow.is_none()) => {
            Err("no_syn_seen although a SYN was seen or nothing watched".into())
        }
        Verdict::NoSynSeen if e.netns_gone => {
            Err("no_syn_seen (\"the problem is before this host\") though the namespace went away"
                .into())
        }
        Verdict::NoSynSeen | Verdict::NetnsGone if e.unseen_syns > 0 => {
            Err(format!("{} though SYN events were lost unseen", v.name()))
        }
        Verdict::EventsLost
            if !(e.unseen_syns > 0 && e.watched && !e.syn_seen && e.flow.is_none()) =>
        {
            Err("events_lost although a SYN was seen or none was lost".into())
        }
        Verdict::NetnsGone if !(e.netns_gone && e.watched && !e.syn_seen && e.flow.is_none()) => {
            Err("netns_gone although a SYN was seen or the namespace did not go".into())
        }
        Verdict::FirewallDrop | Verdict::FirewallReject
            if !firewall_refuses(e) || !firewall_words =>
        {
            Err("a firewalld verdict without a firewalld decision refusing the SYN".into())
        }
        Verdict::OtherNetfilterDrop
            if !firewall_words
                || (e.netfilter.as_ref().is_none_or(|r| r.action == "accept")
                    && !d.evidence.iter().any(|l| l.contains("NETFILTER_DROP"))) =>
        {
            Err("other_netfilter_drop without a netfilter rule or drop".into())
        }
        Verdict::ReplyDropped
            if accepted(e)
                || (e.flow.as_ref().is_none_or(|f| f.reply_drop.is_none())
                    && e.reply_netfilter.as_ref().is_none_or(|r| r.action == "accept")) =>
        {
            Err("reply_dropped without a dropped reply of an attempt that failed".into())
        }
        Verdict::ListenOverflow if e.overflow.is_none() || accepted(e) => {
            Err("listen_overflow without an overflow, or for an accepted attempt".into())
        }
        Verdict::FamilyMismatch | Verdict::AddressMismatch | Verdict::InterfaceMismatch => {
            lookup_class(v, d, &here)
        }
        Verdict::LoopbackOnlyBind
            if !here
                .iter()
                .any(|l| l.addr.parse().is_ok_and(|a| lookup::unmap(a).is_loopback()))
                || d.lookup.as_ref().is_some_and(|l| l.syn.ingress.loopback) =>
        {
            Err("loopback_only_bind without a loopback listener and a SYN from outside".into())
        }
        Verdict::LoopbackOnlyBind => all_named(d, &here),
        Verdict::Reachable | Verdict::KernelDrop | Verdict::ListenOverflow
            if firewall_refuses(e)
                && (e.attribution.is_some() || e.netfilter.is_some())
                && (e.attribution.as_ref().is_some_and(|a| a.action != "accept")
                    || e.netfilter.as_ref().is_some_and(|r| r.action != "accept")) =>
        {
            Err(format!("{} although a traced firewall rule refused the SYN", v.name()))
        }
        _ => Ok(()),
    }
}

pub(super) fn has_fix(d: &Diagnosis, needle: &str) -> bool {
    d.fix.iter().any(|l| l.contains(needle))
}

/// A lookup class: the lookup misses, one listener misses for that class's reason, and every
/// listener of the SYN's namespace is in the evidence.
pub(super) fn lookup_class(
    v: Verdict,
    d: &Diagnosis,
    here: &[&ListenerView],
) -> Result<(), String> {
    let Some(l) = &d.lookup else { return Err(format!("{} without a lookup", v.name())) };
    if l.accepted() {
        return Err(format!("{}, yet the lookup gives the SYN to a listener", v.name()));
    }
    let fits = |m: &Miss| match v {
        Verdict::FamilyMismatch => matches!(m, Miss::Family { .. } | Miss::V6Only { .. }),
        Verdict::AddressMismatch => matches!(m, Miss::Address { .. }),
        _ => matches!(m, Miss::Device { .. } | Miss::OutsideVrf { .. }),
    };
    if !l.judged.iter().any(|j| matches!(&j.judgement, Judgement::Misses(m) if fits(m))) {
        return Err(format!("{}, yet no listener misses for that reason", v.name()));
    }
    all_named(d, here)
}

/// Every listener of the SYN's namespace is in the evidence: the user sees which socket the
/// verdict is about, and that reach saw the others.
pub(super) fn all_named(d: &Diagnosis, here: &[&ListenerView]) -> Result<(), String> {
    match here
        .iter()
        .find(|x| Socket::from_view(x).is_some() && !d.evidence.iter().any(|s| s.contains(&who(x))))
    {
        Some(x) => Err(format!("{} is not in the evidence", who(x))),
        None => Ok(()),
    }
}

/// Said of an attempt that happened.
pub(super) const PAST: &[&str] = &[
    "the client dialed",
    "arrived on",
    "came in on",
    "sent a SYN",
    "SYN arrived",
    "took it",
    "let the SYN through",
    "decided:",
    "dropped the SYN",
    "found no socket",
    "got no answer",
    "never completed",
    "the SYN went",
];

/// Said of an attempt that may happen.
pub(super) const CONDITIONAL: &[&str] = &["would ", "will ", "a client dialing", "predicting"];

/// A prediction speaks in the conditional, an observed attempt in the past. The fix is
/// advice either way, and `no_syn_seen` reports a watched window, not an attempt.
pub(super) fn tense_matches_the_attempt(e: &Evidence, d: &Diagnosis) -> Result<(), String> {
    if matches!(d.verdict, Verdict::NoSynSeen | Verdict::NetnsGone | Verdict::EventsLost) {
        return Ok(());
    }
    let (wrong, mood) = if predicting(e) { (PAST, "past") } else { (CONDITIONAL, "conditional") };
    let told = d.evidence.iter().chain(d.path.iter().map(|h| &h.note));
    // "would let the SYN through" is the conditional of "let the SYN through".
    let says = |line: &str, w: &str| {
        line.match_indices(w).any(|(i, _)| !line[..i].ends_with("would ") || !predicting(e))
    };
    for line in told {
        if let Some(w) = wrong.iter().find(|w| says(line, w)) {
            let what = if predicting(e) { "a prediction" } else { "an observed attempt" };
            return Err(format!("{what} told in the {mood} ({w:?}): {line:?}"));
        }
    }
    Ok(())
}
