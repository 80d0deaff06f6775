//! The lookup's judgements in words, for a verdict's evidence: "the server listens on
//! 127.0.0.1:8080 (IPv4 only); the client dialed ::1".
use super::{Ingress, Judged, Judgement, Lookup, Miss, Reach, Socket, Steering, Syn, Winner};
use crate::{netns::sock_diag::Family, output::endpoint::endpoint};

/// Whether the SYN described was seen (told in the past: "the client dialed …") or is predicted
/// (told in the conditional: "a client dialing … would …"): a prediction that speaks of an
/// attempt as if it happened sends a user looking for a client that never connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tense {
    Observed,
    Predicted,
}

/// The whole lookup in words: one sentence per listener on the port (in the order judged),
/// then who gets the SYN when that is not one listener, then what else can steer it.
pub fn explain(l: &Lookup, ifname: &dyn Fn(u32) -> Option<String>) -> Vec<String> {
    explain_as(l, ifname, Tense::Observed)
}

/// [`explain`] for a SYN seen or predicted.
pub fn explain_as(l: &Lookup, ifname: &dyn Fn(u32) -> Option<String>, t: Tense) -> Vec<String> {
    let mut out: Vec<String> = l.judged.iter().map(|j| describe_as(j, &l.syn, ifname, t)).collect();
    let endpoints = |ix: &[usize]| {
        let v: Vec<String> =
            ix.iter().map(|&i| describe_listener(&l.judged[i].socket, ifname)).collect();
        v.join("; ")
    };
    match &l.winner {
        Winner::Nobody if l.judged.is_empty() => {
            out.push(format!("nothing listens on TCP port {}", l.syn.dport));
        }
        Winner::Nobody if t == Tense::Predicted => {
            out.push("no listener would take the SYN: the kernel would answer with a RST".into())
        }
        Winner::Nobody => {
            out.push("no listener takes the SYN: the kernel answers with a RST".into())
        }
        Winner::One { .. } | Winner::ReuseportGroup { .. } => {}
        Winner::Tied { candidates } => out.push(format!(
            "these score the same, and the kernel takes the first in its hash chain, an order \
             sock_diag does not show: {}",
            endpoints(candidates)
        )),
    }
    for s in &l.steering {
        out.push(match s {
            Steering::SkLookup { program_ids } => format!(
                "sk_lookup BPF program(s) {program_ids:?} are attached to this namespace: they \
                 run before the listener lookup and may hand the SYN to another socket or drop it"
            ),
            Steering::SkLookupUnknown { error } => {
                format!(
                    "whether an sk_lookup BPF program steers this namespace is unknown: {error}"
                )
            }
            Steering::ReuseportSelector { members } => format!(
                "{members} listeners share this binding through SO_REUSEPORT: each connection \
                 goes to one of them, by a hash of addresses and ports or by a BPF program \
                 attached with SO_ATTACH_REUSEPORT_CBPF/EBPF (sock_diag cannot show one)"
            ),
        });
    }
    out
}

/// The listener and the families and addresses it can be reached on, e.g.
/// `127.0.0.1:8080 (IPv4 only, loopback only)`, `[::]:8080 (IPv6 only: IPV6_V6ONLY)`.
pub fn describe_listener(s: &Socket, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    let mut notes: Vec<String> = vec![
        match s.reach() {
            Reach::V4 => "IPv4 only",
            Reach::V4Mapped => "IPv4 only: a v4-mapped address",
            Reach::V6Address => "IPv6 only: bound to one IPv6 address",
            Reach::V6Only => "IPv6 only: IPV6_V6ONLY",
            Reach::Dual => "IPv4 and IPv6",
        }
        .into(),
    ];
    if super::unmap(s.addr).is_loopback() {
        notes.push("loopback only".into());
    }
    if s.bound_dev_if != 0 {
        notes.push(format!("bound to interface {}", iface(s.bound_dev_if, ifname)));
    }
    format!("{} ({})", endpoint(Some(&s.addr.to_string()), s.port), notes.join(", "))
}

/// One judgement as a sentence: what the server listens on against what the client did.
pub fn describe(j: &Judged, syn: &Syn, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    describe_as(j, syn, ifname, Tense::Observed)
}

/// [`describe`] for a SYN seen or predicted.
pub fn describe_as(
    j: &Judged,
    syn: &Syn,
    ifname: &dyn Fn(u32) -> Option<String>,
    t: Tense,
) -> String {
    if t == Tense::Predicted {
        return predicted(j, syn, ifname);
    }
    let listener = describe_listener(&j.socket, ifname);
    let dialed = dialed(syn);
    match &j.judgement {
        Judgement::Takes { .. } => {
            format!("the server listens on {listener}; it takes the client's SYN to {dialed}")
        }
        Judgement::Misses(Miss::Family { .. } | Miss::V6Only { .. }) => {
            format!("the server listens on {listener}; the client dialed {dialed}")
        }
        Judgement::Misses(Miss::Address { bound, dialed: to }) => {
            let other = if to.is_loopback() && bound.is_loopback() {
                "another loopback address"
            } else {
                "another address"
            };
            format!(
                "the server listens on {listener}, only on {bound}; the client dialed {dialed}, \
                 {other}"
            )
        }
        Judgement::Misses(Miss::Device { ingress, l3_master, .. }) => {
            let via = match l3_master {
                Some(m) => format!(" (enslaved to VRF {})", iface(*m, ifname)),
                None => String::new(),
            };
            format!(
                "the server listens on {listener}; the client's SYN to {dialed} arrived on {}{via}",
                arrival(&syn.ingress, *ingress, ifname),
            )
        }
        Judgement::Misses(Miss::OutsideVrf { master, ingress }) => format!(
            "the server listens on {listener}, outside VRF {}; the client's SYN to {dialed} \
             arrived on {}, enslaved to it, and net.ipv4.tcp_l3mdev_accept is 0",
            iface(*master, ifname),
            iface(*ingress, ifname),
        ),
    }
}

/// [`describe`] of a predicted SYN: what a client dialing would meet.
fn predicted(j: &Judged, syn: &Syn, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    let listener = describe_listener(&j.socket, ifname);
    let dialed = dialed(syn);
    match &j.judgement {
        Judgement::Takes { .. } => {
            format!("the server listens on {listener}; it would take a client's SYN to {dialed}")
        }
        Judgement::Misses(Miss::Family { .. } | Miss::V6Only { .. }) => {
            format!(
                "the server listens on {listener}; a client dialing {dialed} would not reach it"
            )
        }
        Judgement::Misses(Miss::Address { bound, dialed: to }) => {
            let other = if to.is_loopback() && bound.is_loopback() {
                "another loopback address"
            } else {
                "another address"
            };
            format!(
                "the server listens on {listener}, only on {bound}; a client dialing {dialed}, \
                 {other}, would not reach it"
            )
        }
        Judgement::Misses(Miss::Device { ingress, l3_master, .. }) => {
            let via = match l3_master {
                Some(m) => format!(" (enslaved to VRF {})", iface(*m, ifname)),
                None => String::new(),
            };
            format!(
                "the server listens on {listener}; a client's SYN to {dialed} would arrive on \
                 {}{via}",
                arrival(&syn.ingress, *ingress, ifname),
            )
        }
        Judgement::Misses(Miss::OutsideVrf { master, ingress }) => format!(
            "the server listens on {listener}, outside VRF {}; a client's SYN to {dialed} would \
             arrive on {}, enslaved to it, and net.ipv4.tcp_l3mdev_accept is 0",
            iface(*master, ifname),
            iface(*ingress, ifname),
        ),
    }
}

/// `::1 (IPv6)`, `10.77.0.1 (IPv4)`.
fn dialed(syn: &Syn) -> String {
    let fam = match syn.family() {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    };
    format!("{} (port {}, {fam})", syn.daddr, syn.dport)
}

fn arrival(ingress: &Ingress, ifindex: u32, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    let dev = iface(ifindex, ifname);
    if ingress.loopback { format!("{dev} from a client on this host") } else { dev }
}

fn iface(ifindex: u32, ifname: &dyn Fn(u32) -> Option<String>) -> String {
    // No device: where the SYN arrives is not known (never "ifindex 0", which no device has).
    if ifindex == 0 {
        return "an interface reach does not know".into();
    }
    ifname(ifindex).unwrap_or_else(|| format!("ifindex {ifindex}"))
}
