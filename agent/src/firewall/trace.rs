//! nftables traces: the netlink messages (NFNLGRP_NFTRACE) the kernel sends for every chain and
//! rule a packet with `meta nftrace set 1` walks, assembled per packet (trace id) into the path
//! it took and the verdict that ended it, with the deciding rule's handle.
//!
//! Two kinds of packet are traced (see `trace_table.rs`): client SYNs arriving (prerouting) and
//! the server's replies leaving (output, then postrouting). The kernel's messages name no hook
//! (there is no NFTA_TRACE_HOOK; `nft monitor trace` takes it from the ruleset), so a walk is
//! told apart by what it carries: the TCP flags of its transport header (a SYN-ACK or RST is a
//! reply) and its devices (a locally generated packet has an output device and no input one).
//!
//! A reject is reported as verdict "drop" by the trace (the REJECT statement drops the packet
//! after sending its reply), so classification into drop vs reject is left to the rule's own
//! statement in the ruleset model.
use std::{collections::HashMap, net::IpAddr};

use netlink_packet_core::{
    NLA_TYPE_MASK, NetlinkBuffer, NetlinkMessage, NetlinkPayload, Nla, NlasIterator,
};
use netlink_packet_netfilter::{
    NetfilterMessage, NetfilterMessageInner, nftables::NfTablesMessage,
};
use serde::Serialize;

/// `NFT_MSG_TRACE` within the nftables netlink subsystem (enum nf_tables_msg_types: after
/// NEWGEN = 15, GETGEN = 16).
pub const NFT_MSG_TRACE: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Multicast group of trace messages.
pub const NFNLGRP_NFTRACE: u32 = 9;

const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// What a trace message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceType {
    /// The chain's policy decided (no rule did).
    Policy,
    /// A `return` (explicit or end of a non-base chain).
    Return,
    /// A rule matched.
    Rule,
    Unknown,
}

/// A netfilter verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "chain")]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    Other(i32),
}

impl Verdict {
    fn from_code(code: i32, chain: Option<String>) -> Verdict {
        match code {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            -1 => Verdict::Continue,
            -3 => Verdict::Jump(chain.unwrap_or_default()),
            -4 => Verdict::Goto(chain.unwrap_or_default()),
            -5 => Verdict::Return,
            c => Verdict::Other(c),
        }
    }

    /// Accept or drop: the packet's fate in this hook is decided.
    pub fn is_final(&self) -> bool {
        matches!(self, Verdict::Accept | Verdict::Drop)
    }
}

/// One trace message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    pub id: u32,
    /// Table family (`inet`, `ip`, `ip6`, ...).
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    pub rule_handle: Option<u64>,
    pub kind: TraceType,
    pub verdict: Option<Verdict>,
    /// For policy messages: the policy's verdict code.
    pub policy: Option<Verdict>,
    pub iif: Option<u32>,
    /// Output device (set at output/postrouting, and at forward).
    pub oif: Option<u32>,
    /// The packet's layer-3 protocol (NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10).
    pub nfproto: Option<u32>,
    pub network_header: Vec<u8>,
    pub transport_header: Vec<u8>,
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(b)).into_owned()
}

/// The nested NFTA_TRACE_VERDICT: its code and, for jump/goto, the chain.
fn verdict(nested: &[u8]) -> Option<Verdict> {
    let (mut code, mut chain) = (None, None);
    // A malformed attribute ends the list (netlink-packet-core's iterator stops there).
    for nla in NlasIterator::new(nested).map_while(Result::ok) {
        match nla.kind() {
            NFTA_VERDICT_CODE => code = be32(nla.value()).map(|c| c as i32),
            NFTA_VERDICT_CHAIN => chain = Some(cstr(nla.value())),
            _ => {}
        }
    }
    code.map(|c| Verdict::from_code(c, chain))
}

/// Parses one NFT_MSG_TRACE netlink message (header included, as [`trace_messages`] returns
/// it): netlink-packet-netfilter frames it and hands over its attributes untyped; reading them
/// into a [`TraceEvent`] is ours. `None` for another message, a malformed one, or one without
/// a trace id.
pub fn parse_trace(message: &[u8]) -> Option<TraceEvent> {
    // Only trace messages reach the crate: its parsers of other nftables messages can panic on
    // malformed attributes (a NEWSET's expressions, found by fuzzing nft_tables).
    let frame = NetlinkBuffer::new_checked(message).ok()?;
    if frame.message_type() != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE {
        return None;
    }
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(message).ok()?;
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        header,
        inner: NetfilterMessageInner::NfTables(NfTablesMessage::Trace(attributes)),
        ..
    }) = msg.payload
    else {
        return None;
    };
    let mut ev = TraceEvent {
        id: 0,
        family: super::nft_tables::family_name(header.family.into()),
        table: String::new(),
        chain: String::new(),
        rule_handle: None,
        kind: TraceType::Unknown,
        verdict: None,
        policy: None,
        iif: None,
        oif: None,
        nfproto: None,
        network_header: Vec::new(),
        transport_header: Vec::new(),
    };
    let mut have_id = false;
    for nla in &attributes {
        // DefaultNla keeps its value to itself but emits it.
        let mut p = vec![0u8; nla.value_len()];
        nla.emit_value(&mut p);
        let p = p.as_slice();
        match nla.kind() & NLA_TYPE_MASK {
            NFTA_TRACE_TABLE => ev.table = cstr(p),
            NFTA_TRACE_CHAIN => ev.chain = cstr(p),
            NFTA_TRACE_RULE_HANDLE => {
                ev.rule_handle =
                    p.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
            }
            NFTA_TRACE_TYPE => {
                ev.kind = match be32(p) {
                    Some(1) => TraceType::Policy,
                    Some(2) => TraceType::Return,
                    Some(3) => TraceType::Rule,
                    _ => TraceType::Unknown,
                }
            }
            NFTA_TRACE_VERDICT => ev.verdict = verdict(p),
            NFTA_TRACE_ID => {
                ev.id = be32(p)?;
                have_id = true;
            }
            NFTA_TRACE_NETWORK_HEADER => ev.network_header = p.to_vec(),
            NFTA_TRACE_TRANSPORT_HEADER => ev.transport_header = p.to_vec(),
            NFTA_TRACE_IIF => ev.iif = be32(p),
            NFTA_TRACE_OIF => ev.oif = be32(p),
            NFTA_TRACE_NFPROTO => ev.nfproto = be32(p),
            NFTA_TRACE_POLICY => ev.policy = be32(p).map(|c| Verdict::from_code(c as i32, None)),
            _ => {}
        }
    }
    have_id.then_some(ev)
}

/// The NFT_MSG_TRACE messages of a netlink datagram, each whole, for [`parse_trace`].
pub fn trace_messages(data: &[u8]) -> Vec<&[u8]> {
    crate::kernel::nfnetlink::messages(data)
        .filter(|(ty, _)| *ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE)
        .map(|(_, m)| m)
        .collect()
}

/// A TCP/UDP 5-tuple read from a trace's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tuple {
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Reads the tuple from the network and transport header bytes a trace carries.
pub fn tuple(network: &[u8], transport: &[u8]) -> Option<Tuple> {
    let version = network.first()? >> 4;
    let (saddr, daddr, proto): (IpAddr, IpAddr, u8) = match version {
        4 if network.len() >= 20 => (
            <[u8; 4]>::try_from(&network[12..16]).ok()?.into(),
            <[u8; 4]>::try_from(&network[16..20]).ok()?.into(),
            network[9],
        ),
        6 if network.len() >= 40 => (
            <[u8; 16]>::try_from(&network[8..24]).ok()?.into(),
            <[u8; 16]>::try_from(&network[24..40]).ok()?.into(),
            network[6],
        ),
        _ => return None,
    };
    let sport = u16::from_be_bytes(transport.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(transport.get(2..4)?.try_into().ok()?);
    Some(Tuple { saddr, daddr, proto, sport, dport })
}

/// One step of a packet's walk through the ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    pub rule_handle: Option<u64>,
    pub kind: TraceType,
    pub verdict: Option<Verdict>,
}

/// A packet's whole walk and where it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketTrace {
    pub id: u32,
    pub tuple: Option<Tuple>,
    /// Devices of the walk's first message: no input device there means the walk began at
    /// the output hook (a packet this namespace sent).
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    /// TCP flags of the traced segment (byte 13 of its header), when it carried one.
    pub tcp_flags: Option<u8>,
    pub steps: Vec<Step>,
}

/// TCP header flag bits.
const TCP_RST: u8 = 0x04;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

impl PacketTrace {
    /// A server's reply (SYN-ACK or RST), traced from the output hook: the walk's tuple is
    /// server → client.
    pub fn is_reply(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f & TCP_RST != 0 || f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK)
    }

    /// True when the walk began at the output hook (no input device).
    pub fn locally_sent(&self) -> bool {
        self.iif.is_none()
    }

    /// The step that decided the packet's fate (the last accept/drop), if any did.
    pub fn decision(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| {
            s.verdict.as_ref().is_some_and(Verdict::is_final)
                || (s.kind == TraceType::Policy
                    && s.verdict.as_ref().is_some_and(Verdict::is_final))
        })
    }

    /// The final verdict: drop wins (any hook can drop), else accept.
    pub fn verdict(&self) -> Option<&Verdict> {
        let finals = self.steps.iter().filter_map(|s| s.verdict.as_ref()).filter(|v| v.is_final());
        let mut last = None;
        for v in finals {
            if *v == Verdict::Drop {
                return Some(v);
            }
            last = Some(v);
        }
        last
    }
}

/// Assembles trace messages into per-packet traces (bounded: oldest dropped beyond `capacity`).
pub struct Assembler {
    traces: HashMap<u32, PacketTrace>,
    order: std::collections::VecDeque<u32>,
    capacity: usize,
}

impl Assembler {
    pub fn new(capacity: usize) -> Self {
        Self {
            traces: HashMap::new(),
            order: std::collections::VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds one message; returns the trace when a drop ended it (nothing can follow a drop).
    pub fn push(&mut self, ev: TraceEvent) -> Option<PacketTrace> {
        if !self.traces.contains_key(&ev.id) {
            if self.traces.len() >= self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.traces.remove(&old);
            }
            self.order.push_back(ev.id);
            self.traces.insert(
                ev.id,
                PacketTrace {
                    id: ev.id,
                    tuple: None,
                    iif: ev.iif,
                    oif: ev.oif,
                    tcp_flags: None,
                    steps: Vec::new(),
                },
            );
        }
        let t = self.traces.get_mut(&ev.id)?;
        // A walk that began at output and, looped back, goes on at prerouting under the same
        // id (kernels that keep it): the interface it arrived on is the one that counts.
        if t.iif.is_none() {
            t.iif = ev.iif;
        }
        if t.tuple.is_none() {
            t.tuple = tuple(&ev.network_header, &ev.transport_header);
            if t.tuple.is_some_and(|tu| tu.proto == 6) {
                t.tcp_flags = ev.transport_header.get(13).copied();
            }
        }
        let verdict =
            if ev.kind == TraceType::Policy { ev.policy.clone() } else { ev.verdict.clone() };
        let dropped = verdict == Some(Verdict::Drop);
        t.steps.push(Step {
            family: ev.family,
            table: ev.table,
            chain: ev.chain,
            rule_handle: ev.rule_handle,
            kind: ev.kind,
            verdict,
        });
        if dropped {
            self.order.retain(|i| *i != ev.id);
            return self.traces.remove(&ev.id);
        }
        None
    }

    /// Takes a finished (accepted or undecided) trace by id.
    pub fn take(&mut self, id: u32) -> Option<PacketTrace> {
        self.order.retain(|i| *i != id);
        self.traces.remove(&id)
    }

    /// All traces still open.
    pub fn drain(&mut self) -> Vec<PacketTrace> {
        self.order.clear();
        let mut v: Vec<PacketTrace> = self.traces.drain().map(|(_, t)| t).collect();
        v.sort_by_key(|t| t.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn msg(
        id: u32,
        chain: &str,
        ty: u32,
        verdict_code: Option<i32>,
        handle: Option<u64>,
        headers: bool,
    ) -> Vec<u8> {
        let mut body = vec![1u8, 0, 0, 0]; // inet
        body.extend(attr(NFTA_TRACE_TABLE, b"firewalld\0"));
        body.extend(attr(NFTA_TRACE_CHAIN, format!("{chain}\0").as_bytes()));
        body.extend(attr(NFTA_TRACE_ID, &id.to_be_bytes()));
        body.extend(attr(NFTA_TRACE_TYPE, &ty.to_be_bytes()));
        if let Some(h) = handle {
            body.extend(attr(NFTA_TRACE_RULE_HANDLE, &h.to_be_bytes()));
        }
        if let Some(code) = verdict_code {
            let nested = attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
            body.extend(attr(NFTA_TRACE_VERDICT | 0x8000, &nested));
        }
        if headers {
            let mut ip = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
            ip.extend_from_slice(&[10, 199, 0, 2, 10, 199, 0, 1]);
            body.extend(attr(NFTA_TRACE_NETWORK_HEADER, &ip));
            body.extend(attr(NFTA_TRACE_TRANSPORT_HEADER, &[0x9c, 0x40, 0x1e, 0x61, 0, 0, 0, 1]));
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend(body);
        m
    }

    #[test]
    fn parses_and_assembles_a_rejected_syn() {
        let mut dgram = msg(7, "filter_INPUT", 3, Some(-3), Some(58), true);
        dgram.extend(msg(7, "filter_IN_public", 3, Some(0), Some(77), false));
        let bodies = trace_messages(&dgram);
        assert_eq!(bodies.len(), 2);
        let mut a = Assembler::new(16);
        assert!(a.push(parse_trace(bodies[0]).unwrap()).is_none());
        let t = a.push(parse_trace(bodies[1]).unwrap()).expect("a drop ends the trace");
        assert_eq!(t.id, 7);
        let tu = t.tuple.unwrap();
        assert_eq!((tu.saddr.to_string().as_str(), tu.dport, tu.proto), ("10.199.0.2", 7777, 6));
        assert_eq!(t.verdict(), Some(&Verdict::Drop));
        let d = t.decision().unwrap();
        assert_eq!((d.chain.as_str(), d.rule_handle), ("filter_IN_public", Some(77)));
        assert_eq!(t.steps[0].verdict, Some(Verdict::Jump(String::new())));
    }

    #[test]
    fn policy_verdicts_and_capacity() {
        let mut a = Assembler::new(1);
        a.push(parse_trace(trace_messages(&msg(1, "c", 3, Some(-1), Some(1), false))[0]).unwrap());
        a.push(parse_trace(trace_messages(&msg(2, "c", 3, Some(-1), Some(1), false))[0]).unwrap());
        assert!(a.take(1).is_none(), "evicted beyond capacity");
        assert!(a.take(2).is_some());
        let mut m = trace_messages(&msg(3, "filter_INPUT", 1, None, None, false))[0].to_vec();
        m.extend(attr(NFTA_TRACE_POLICY, &1u32.to_be_bytes()));
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let ev = parse_trace(&m).unwrap();
        assert_eq!((ev.kind, ev.policy.clone()), (TraceType::Policy, Some(Verdict::Accept)));
    }

    /// A SYN-ACK leaving the server (10.199.0.1:7777 → 10.199.0.2:40000), traced from the
    /// output hook: output device only, walked through `ip filter output` where a rule drops it.
    fn reply_msg(
        id: u32,
        table: &str,
        chain: &str,
        verdict_code: i32,
        handle: u64,
        flags: u8,
    ) -> Vec<u8> {
        let mut body = vec![2u8, 0, 0, 0]; // ip
        body.extend(attr(NFTA_TRACE_TABLE, format!("{table}\0").as_bytes()));
        body.extend(attr(NFTA_TRACE_CHAIN, format!("{chain}\0").as_bytes()));
        body.extend(attr(NFTA_TRACE_ID, &id.to_be_bytes()));
        body.extend(attr(NFTA_TRACE_TYPE, &3u32.to_be_bytes()));
        body.extend(attr(NFTA_TRACE_RULE_HANDLE, &handle.to_be_bytes()));
        let nested = attr(NFTA_VERDICT_CODE, &verdict_code.to_be_bytes());
        body.extend(attr(NFTA_TRACE_VERDICT | 0x8000, &nested));
        let mut ip = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&[10, 199, 0, 1, 10, 199, 0, 2]);
        body.extend(attr(NFTA_TRACE_NETWORK_HEADER, &ip));
        let mut tcp = vec![0x1e, 0x61, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, flags];
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        body.extend(attr(NFTA_TRACE_TRANSPORT_HEADER, &tcp));
        body.extend(attr(NFTA_TRACE_OIF, &5u32.to_be_bytes()));
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend(body);
        m
    }

    #[test]
    fn assembles_a_reply_dropped_at_the_output_hook() {
        // reach's own output chain marks it (continue), then an output rule drops it.
        let mut dgram = reply_msg(9, "reach_trace", "output", -1, 3, 0x12);
        dgram.extend(reply_msg(9, "filter", "output", 0, 12, 0x12));
        let mut a = Assembler::new(16);
        let mut evs = trace_messages(&dgram).into_iter().map(|b| parse_trace(b).unwrap());
        let first = evs.next().unwrap();
        assert_eq!((first.iif, first.oif, first.family), (None, Some(5), "ip"));
        assert!(a.push(first).is_none());
        let t = a.push(evs.next().unwrap()).expect("the drop ends the walk");
        assert!(t.is_reply() && t.locally_sent(), "{t:?}");
        let tu = t.tuple.unwrap();
        assert_eq!(
            (tu.saddr.to_string().as_str(), tu.sport, tu.dport),
            ("10.199.0.1", 7777, 40000)
        );
        assert_eq!(t.verdict(), Some(&Verdict::Drop));
        let d = t.decision().unwrap();
        assert_eq!(
            (d.table.as_str(), d.chain.as_str(), d.rule_handle),
            ("filter", "output", Some(12))
        );
        // A RST (with ACK, as a closed port sends it) is a reply too.
        let rst = reply_msg(10, "filter", "output", 0, 12, 0x14);
        let t = a.push(parse_trace(trace_messages(&rst)[0]).unwrap()).unwrap();
        assert!(t.is_reply(), "{t:?}");
    }

    #[test]
    fn an_arriving_syn_is_not_a_reply() {
        let dgram = msg(7, "filter_INPUT", 3, Some(0), Some(58), true);
        let mut a = Assembler::new(16);
        let mut ev = parse_trace(trace_messages(&dgram)[0]).unwrap();
        ev.iif = Some(2);
        // The SYN's transport header as msg() builds it is only 8 bytes: give it the flags.
        ev.transport_header = vec![0x9c, 0x40, 0x1e, 0x61, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02];
        let t = a.push(ev).unwrap();
        assert_eq!(t.tcp_flags, Some(0x02));
        assert!(!t.is_reply() && !t.locally_sent(), "{t:?}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_trace(&[]).is_none());
        let mut no_id = msg(1, "c", 3, None, None, false);
        // Only the nfgenmsg and the table attribute: everything after it cut off.
        no_id.truncate(16 + 4 + 16);
        no_id[..4].copy_from_slice(&36u32.to_ne_bytes());
        assert!(parse_trace(&no_id).is_none(), "no id → no trace");
        let mut bad_attr = msg(1, "c", 3, None, None, false);
        bad_attr[20..22].copy_from_slice(&0xffffu16.to_ne_bytes());
        assert!(parse_trace(&bad_attr).is_none(), "a malformed attribute list is refused");
        // Another nftables message, one the crate's NEWSET parser would panic on, is not parsed.
        let mut newset = msg(1, "c", 3, None, None, false);
        newset.truncate(16 + 4 + 8);
        newset[..4].copy_from_slice(&28u32.to_ne_bytes());
        newset[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | 9).to_ne_bytes());
        newset[20..28].copy_from_slice(&[0x08, 0x00, 0x11, 0x00, 0, 0, 0, 0]);
        assert!(parse_trace(&newset).is_none());
        assert!(trace_messages(&[0u8; 8]).is_empty());
        assert!(tuple(&[0x45], &[]).is_none());
    }
}
