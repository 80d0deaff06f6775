//! Step 4 of the decision through the kernel's own listener lookup ([`super::lookup`]): which
//! listener of the SYN's namespace takes the client's SYN and, when none does, which verdict
//! the closest miss is — `interface_mismatch`, `family_mismatch`, `address_mismatch`, or
//! `loopback_only_bind` — with the evidence and the fix that follow from that one listener.
//!
//! The SYN is the client's real one when an attempt was seen (its destination, the interface it
//! came in on), or the predicted one. A prediction for a bare port has no destination: then every
//! address a client can dial on the interface it comes in on is judged (127.0.0.1 and ::1 on
//! lo), and one taken is enough to call it reachable (the others are named).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    Evidence, fix,
    lookup::{
        self, Ingress, Judged, Judgement, Lookup, Miss, SkLookupState, Socket, Syn, Tense, Winner,
    },
    verdict::{Facts, Verdict, ns_name, who},
};
use crate::{model::listener_view::ListenerView, netns::sock_diag::Family};

/// The kernel gives the loopback device ifindex 1 in every namespace (`LOOPBACK_IFINDEX`,
/// net/core/dev.c): what `lo` is when the interfaces could not be listed.
const LOOPBACK_IFINDEX: u32 = 1;

/// The lookup's answer for the client's SYN (or each predicted one).
pub(super) enum Answer<'a> {
    /// A listener takes the SYN. `refused`: predicted destinations no listener takes.
    Taken { lookup: Lookup, views: Vec<&'a ListenerView>, refused: Vec<IpAddr> },
    /// No listener takes any of them: the closest miss.
    Missed(Missed<'a>),
}

impl Answer<'_> {
    pub fn lookup(&self) -> &Lookup {
        match self {
            Answer::Taken { lookup, .. } | Answer::Missed(Missed { lookup, .. }) => lookup,
        }
    }
}

pub(super) struct Missed<'a> {
    pub class: Verdict,
    pub lookup: Lookup,
    /// The listener that came closest: an index into `lookup.judged` and `views`.
    pub index: usize,
    pub views: Vec<&'a ListenerView>,
}

/// Judges the TCP listeners `same` (the SYN's namespace, the port) against the client's SYN.
/// None when no destination is known and nothing tells which addresses a client can dial (no
/// interface was listed), or no listener could be read as a socket.
pub(super) fn answer<'a>(e: &Evidence, f: &Facts, same: &[&'a ListenerView]) -> Option<Answer<'a>> {
    let (views, sockets): (Vec<&ListenerView>, Vec<Socket>) =
        same.iter().filter_map(|l| Socket::from_view(l).map(|s| (*l, s))).unzip();
    let dests = destinations(e, f);
    if sockets.is_empty() || dests.is_empty() {
        return None;
    }
    let sk = e.sk_lookup.clone().unwrap_or(SkLookupState::Attached(Vec::new()));
    let mut lookups: Vec<Lookup> = dests
        .iter()
        .map(|&d| lookup::lookup(&Syn::new(d, e.port, ingress(e, f, d)), &sockets, &sk))
        .collect();
    if let Some(i) = lookups.iter().position(Lookup::accepted) {
        let refused = lookups.iter().filter(|l| !l.accepted()).map(|l| l.syn.daddr).collect();
        return Some(Answer::Taken { lookup: lookups.swap_remove(i), views, refused });
    }
    // The closest miss over every destination and listener (the first on a tie).
    let (_, class, li, index) = lookups
        .iter()
        .enumerate()
        .flat_map(|(li, l)| {
            l.judged.iter().enumerate().filter_map(move |(ji, j)| {
                class(j, &l.syn).map(|(rank, class)| (rank, class, li, ji))
            })
        })
        .min_by_key(|(rank, ..)| *rank)?;
    Some(Answer::Missed(Missed { class, lookup: lookups.swap_remove(li), index, views }))
}

/// The class of one listener's miss and how close it came (lower: closer). Only the device
/// wrong is closest; then only the family; then the address; a loopback listener and a client
/// from another host or namespace is the story's own case and the farthest.
fn class(j: &Judged, syn: &Syn) -> Option<(u8, Verdict)> {
    let Judgement::Misses(m) = &j.judgement else { return None };
    if lookup::unmap(j.socket.addr).is_loopback() && !syn.ingress.loopback {
        return Some((3, Verdict::LoopbackOnlyBind));
    }
    Some(match m {
        Miss::Device { .. } | Miss::OutsideVrf { .. } => (0, Verdict::InterfaceMismatch),
        Miss::Family { .. } | Miss::V6Only { .. } => (1, Verdict::FamilyMismatch),
        Miss::Address { .. } => (2, Verdict::AddressMismatch),
    })
}

/// Where the client's SYN goes: its real destination, else (a bare-port prediction) every
/// address a client can dial on the interface it comes in on.
fn destinations(e: &Evidence, f: &Facts) -> Vec<IpAddr> {
    if let Some(d) = f.dest {
        return vec![lookup::unmap(d)];
    }
    if f.via_lo {
        return vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    }
    let dialable = |i: &super::Interface| {
        i.addrs.iter().copied().filter(|a| !a.is_loopback() && !link_local(a)).collect::<Vec<_>>()
    };
    let here: Vec<IpAddr> = e
        .interfaces
        .iter()
        .filter(|i| e.iface.as_deref() == Some(i.name.as_str()))
        .flat_map(dialable)
        .collect();
    if !here.is_empty() {
        return here;
    }
    e.interfaces.iter().filter(|i| i.name != "lo").flat_map(dialable).collect()
}

/// fe80::/10: dialed only with a scope (`%if`), never what a client means by the server.
fn link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

fn ifindex_of(e: &Evidence, name: &str) -> Option<u32> {
    e.interfaces.iter().find(|i| i.name == name).map(|i| i.ifindex)
}

/// The interface the lookup sees the SYN on: for a client on this host (the SYN came over lo)
/// the interface owning the destination address, as the kernel does; else the ingress device.
fn ingress(e: &Evidence, f: &Facts, daddr: IpAddr) -> Ingress {
    let lo = ifindex_of(e, "lo").unwrap_or(LOOPBACK_IFINDEX);
    let arrived = e
        .flow
        .as_ref()
        .and_then(|fl| fl.ifindex)
        .or_else(|| e.iface.as_deref().and_then(|n| ifindex_of(e, n)));
    let owner = e.interfaces.iter().find(|i| i.addrs.contains(&daddr)).map(|i| i.ifindex);
    if f.via_lo || arrived == Some(lo) {
        let owner = if daddr.is_loopback() { Some(lo) } else { owner };
        return Ingress::from_inside(owner.unwrap_or(lo));
    }
    // Arrival unknown (no SYN seen at ingress, or a prediction "from outside"): a client from
    // outside most likely comes in where the address it dials lives. 0 (no interface) only
    // when nothing tells: a device-bound listener is then judged against no device at all.
    Ingress::from_outside(arrived.or(owner).unwrap_or(0))
}

/// ifindex → name in the target namespace (the attempt's own interface is known by name even
/// when the interfaces could not be listed).
pub(super) fn ifname(e: &Evidence) -> impl Fn(u32) -> Option<String> + '_ {
    move |i| {
        e.interfaces.iter().find(|x| x.ifindex == i).map(|x| x.name.clone()).or_else(|| {
            let flow_if = e.flow.as_ref().and_then(|fl| fl.ifindex);
            match i {
                _ if flow_if == Some(i) => e.iface.clone(),
                // Every namespace's lo, listed or not.
                LOOPBACK_IFINDEX => Some("lo".into()),
                _ => None,
            }
        })
    }
}

/// A predicted destination that is no address of the namespace: said, since only a DNAT rule
/// rewriting it would bring such a SYN to these sockets.
fn not_here(e: &Evidence, f: &Facts, d: IpAddr) -> Option<String> {
    (f.predicting && !is_local(e, d)).then(|| {
        let ns = e.netns.as_ref().map(ns_name).unwrap_or_else(|| "host".into());
        format!(
            "{d} is not an address of netns {ns}: unless a DNAT rule rewrites it, a SYN to it is \
             not delivered to this namespace's sockets"
        )
    })
}

/// Whether `d` is an address of the target namespace (unknown: taken as yes).
fn is_local(e: &Evidence, d: IpAddr) -> bool {
    d.is_loopback() || e.interfaces.is_empty() || e.interfaces.iter().any(|i| i.addrs.contains(&d))
}

/// An address of `family` on interface `ifindex` a client could dial instead (for a fix).
fn address_on(e: &Evidence, ifindex: u32, family: Family) -> Option<IpAddr> {
    let fam = |a: &IpAddr| a.is_ipv4() == (family == Family::V4);
    e.interfaces
        .iter()
        .find(|i| i.ifindex == ifindex)
        .and_then(|i| i.addrs.iter().copied().find(|a| fam(a) && !link_local(a)))
}

/// Verdict, evidence and fix of a miss. The closest listener's sentence comes last (the path's
/// failing hop shows it), after the other listeners and what steers the lookup.
pub(super) fn decided(e: &Evidence, f: &Facts, m: &Missed) -> (Verdict, Vec<String>, Vec<String>) {
    let name = ifname(e);
    let l = &m.lookup;
    let syn = &l.syn;
    let key = &l.judged[m.index];
    let view = m.views[m.index];
    let sentences = lookup::explain_as(l, &name, tense(f));
    let n = l.judged.len();
    let mut ev = Vec::new();
    for (i, v) in m.views.iter().enumerate() {
        ev.push(if i == m.index && m.class == Verdict::LoopbackOnlyBind {
            format!("listening on loopback only: {}", who(v))
        } else {
            format!("a listener on the port does not take this SYN: {}", who(v))
        });
    }
    ev.extend(
        sentences.iter().take(n).enumerate().filter(|(i, _)| *i != m.index).map(|(_, s)| s.clone()),
    );
    ev.extend(sentences.iter().skip(n).cloned());
    let elsewhere = f.predicting && !is_local(e, syn.daddr);
    ev.extend(not_here(e, f, syn.daddr));
    // An address the fix tells the client to dial instead is named here first.
    let alt = match (&m.class, &key.judgement) {
        (Verdict::FamilyMismatch, _) => address_on(e, syn.ingress.ifindex, other(syn.family()))
            .map(|a| (syn.ingress.ifindex, a)),
        (Verdict::InterfaceMismatch, Judgement::Misses(Miss::Device { bound, .. }))
            if syn.ingress.loopback =>
        {
            address_on(e, *bound, syn.family()).map(|a| (*bound, a))
        }
        _ => None,
    };
    if let Some((i, a)) = alt {
        let fam = if a.is_ipv4() { "IPv4" } else { "IPv6" };
        let dev = name(i).unwrap_or_else(|| format!("ifindex {i}"));
        ev.push(format!("{dev} has the {fam} address {a}"));
    }
    ev.push(sentences[m.index].clone());
    let alt = alt.map(|(_, a)| a);
    let fix = match m.class {
        Verdict::LoopbackOnlyBind => {
            let d = syn.daddr;
            ev.push(match (&e.iface, f.predicting) {
                (Some(i), false) => format!("the SYN came in on {i} to {d}, not via lo"),
                (None, false) => format!("the SYN went to {d}, not via lo"),
                (Some(i), true) => format!("a SYN to {d} would come in on {i}, not via lo"),
                (None, true) => format!("a SYN to {d} would come from outside, not via lo"),
            });
            fix::loopback(view, Some(syn.family()))
        }
        Verdict::FamilyMismatch => fix::family(view, &key.socket, syn, alt),
        Verdict::AddressMismatch => fix::address(view, &key.socket, syn, !elsewhere),
        _ => fix::interface(view, key, syn, alt, &name),
    };
    (m.class, ev, fix)
}

/// How the lookup's sentences speak of the SYN: seen, or predicted.
fn tense(f: &Facts) -> Tense {
    if f.predicting { Tense::Predicted } else { Tense::Observed }
}

fn other(f: Family) -> Family {
    match f {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    }
}

/// What a served SYN adds to the evidence: the listener(s) the lookup gives it to, ties and
/// steering, and the predicted destinations nobody takes.
pub(super) fn served(e: &Evidence, f: &Facts, a: &Answer) -> Vec<String> {
    let Answer::Taken { lookup: l, views, refused } = a else { return Vec::new() };
    let name = ifname(e);
    let winners: Vec<usize> = match &l.winner {
        Winner::One { index } => vec![*index],
        Winner::ReuseportGroup { members } => members.clone(),
        Winner::Tied { candidates } => candidates.clone(),
        Winner::Nobody => Vec::new(),
    };
    let mut ev: Vec<String> = winners
        .iter()
        .map(|&i| {
            format!(
                "listening: {} — {}",
                who(views[i]),
                lookup::describe_listener(&l.judged[i].socket, &name)
            )
        })
        .collect();
    ev.extend(lookup::explain_as(l, &name, tense(f)).into_iter().skip(l.judged.len()));
    ev.extend(not_here(e, f, l.syn.daddr));
    if !refused.is_empty() {
        let to: Vec<String> = refused.iter().map(IpAddr::to_string).collect();
        ev.push(format!(
            "it takes SYNs to {}; SYNs to {} would be refused (`reach why ADDR:{} --timeout 0` \
             says why)",
            l.syn.daddr,
            to.join(", "),
            e.port
        ));
    }
    ev
}

/// What steers the lookup, for an attempt that was accepted (sk_lookup, a reuseport group).
pub(super) fn steering(e: &Evidence, a: &Answer) -> Vec<String> {
    let l = a.lookup();
    // explain(): one sentence per listener, one about a miss or a tie, then the steering.
    let skip =
        l.judged.len() + usize::from(matches!(l.winner, Winner::Nobody | Winner::Tied { .. }));
    lookup::explain(l, &ifname(e)).into_iter().skip(skip).collect()
}
