//! `reach why`'s sink: keeps, out of everything the session observes, what bears on the one
//! TARGET — the client's attempt (the first settled flow to it in the target namespace), the
//! nftables walk of its SYN, failed binds on the port, listen-queue overflows — and says when
//! the attempt is settled enough to diagnose. Where destination NAT can send the attempt, an
//! inner collector per translated destination keeps the same in the namespace owning it.
use std::{collections::HashMap, net::IpAddr};

use super::target::Target;
use crate::{
    diagnose::{FailedBind, OverflowEvidence},
    model::flows::{FlowRecord, Outcome},
    netns::names::Names,
    observe::{
        changes::{self, Change},
        session::{Event, Sink, TapChange, VerdictRecord},
    },
};

type Tuple = (IpAddr, u16, IpAddr, u16);

pub struct Collector {
    /// The target namespace went away while waiting.
    pub netns_gone: bool,
    /// What changed under the session while waiting (said on stderr, kept in the report).
    pub changes: Vec<Change>,
    /// SYN events lost or suppressed while waiting: a SYN may have come unseen.
    pub unseen_syns: u64,
    /// Interfaces of the target namespace tapped after the start (they appeared).
    pub tapped_later: Vec<String>,
    target: Target,
    /// Every address a TARGET name resolved to (None: the target's own address, if any).
    addrs: Option<Vec<IpAddr>>,
    netns: u64,
    /// SYNs to the target seen at ingress (any client).
    pub syns: u64,
    /// The attempt being diagnosed, with the interface its SYN came in on.
    pub flow: Option<(FlowRecord, Option<String>)>,
    /// nftables walks of SYNs to the target, per tuple (a trace can arrive after its flow
    /// settled: the trace socket and the ring buffers are read independently).
    verdicts: HashMap<Tuple, VerdictRecord>,
    /// nftables walks of the server's replies (SYN-ACK/RST) from the target, keyed like the
    /// attempt they answer (client → server, the reply's tuple reversed). A drop is kept over a
    /// later accepted walk: the first dead reply is the evidence.
    reply_verdicts: HashMap<Tuple, VerdictRecord>,
    pub failed_binds: Vec<FailedBind>,
    pub overflow: Option<OverflowEvidence>,
    /// The interface of the first SYN seen, when its flow has not settled yet.
    pub first_syn_iface: Option<String>,
    /// The same, for each destination NAT can send the attempt to, in the namespace owning it.
    pub inner: Vec<Collector>,
    /// This (inner) collector's attempt is a relay's own connection, made after the relay
    /// accepted the client's.
    relayed: bool,
}

/// Same address, with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) taken as IPv4.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

impl Collector {
    pub fn new(target: Target, netns: u64) -> Self {
        Self {
            netns_gone: false,
            changes: Vec::new(),
            unseen_syns: 0,
            tapped_later: Vec::new(),
            target,
            addrs: None,
            netns,
            syns: 0,
            flow: None,
            verdicts: HashMap::new(),
            reply_verdicts: HashMap::new(),
            failed_binds: Vec::new(),
            overflow: None,
            first_syn_iface: None,
            inner: Vec::new(),
            relayed: false,
        }
    }

    /// Also collects, in netns `netns`, the attempt as NAT sends it on there, or as a relay
    /// (`relayed`) connects there: to `to`.
    pub fn follow(&mut self, netns: u64, to: std::net::SocketAddr, relayed: bool) {
        let mut c = Collector::new(Target { addr: Some(to.ip()), port: to.port() }, netns);
        c.relayed = relayed;
        self.inner.push(c);
    }

    /// True while an attempt a relay may have taken was accepted and the relay's own
    /// connection has not been seen yet: it comes right after the accept.
    pub fn awaiting_relay(&self) -> bool {
        let accepted = self.flow.as_ref().is_some_and(|(f, _)| f.outcome == Outcome::Accepted);
        accepted && self.inner.iter().any(|c| c.relayed && c.syns == 0 && c.flow.is_none())
    }

    /// The inner collector of the attempt sent on to `to` in `netns`.
    pub fn inner_of(&self, netns: u64, to: std::net::SocketAddr) -> Option<&Collector> {
        self.inner.iter().find(|c| {
            c.netns == netns
                && c.target.port == to.port()
                && c.target.addr.is_some_and(|a| same_ip(a, to.ip()))
        })
    }

    /// Counts attempts to any of `addrs` (a name's addresses), not just the target's.
    pub fn watch_addrs(&mut self, addrs: &[IpAddr]) {
        self.addrs = Some(addrs.to_vec());
    }

    fn to_target(&self, netns: u64, daddr: IpAddr, dport: u16) -> bool {
        let addr_ok = match &self.addrs {
            Some(set) => set.iter().any(|&a| same_ip(a, daddr)),
            None => self.target.addr.is_none_or(|a| same_ip(a, daddr)),
        };
        netns == self.netns && dport == self.target.port && addr_ok
    }

    /// The verdict of the diagnosed attempt's SYN, if one was traced.
    pub fn verdict(&self) -> Option<&VerdictRecord> {
        let (f, _) = self.flow.as_ref()?;
        self.walk_of(f.client, f.server)
    }

    /// The traced walk of the SYN `client` → `server` (as it was when the walk began).
    pub fn walk_of(
        &self,
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
    ) -> Option<&VerdictRecord> {
        let key =
            (client.ip().to_canonical(), client.port(), server.ip().to_canonical(), server.port());
        self.verdicts.get(&key)
    }

    /// Keeps `v` as the SYN's walk unless it is an output walk after an arriving one.
    fn keep_walk(&mut self, key: Tuple, v: &VerdictRecord) {
        if self.verdicts.get(&key).is_none_or(|old| v.replaces(old)) {
            self.verdicts.insert(key, v.clone());
        }
    }

    /// The walk of the server's reply to the diagnosed attempt, if one was traced.
    pub fn reply_verdict(&self) -> Option<&VerdictRecord> {
        let (f, _) = self.flow.as_ref()?;
        self.reply_verdicts.get(&(
            f.client.ip().to_canonical(),
            f.client.port(),
            f.server.ip().to_canonical(),
            f.server.port(),
        ))
    }

    /// True once an attempt settled (anything but `pending`) here or where NAT sent it (a
    /// local client's SYN leaves through the output hook: only the namespace it was sent to
    /// sees it), and every inner attempt seen has settled too.
    pub fn settled(&self) -> bool {
        let inner_open =
            self.inner.iter().any(|c| (c.syns > 0 || c.flow.is_some()) && !c.settled());
        (self.own_settled() || self.inner.iter().any(Collector::settled)) && !inner_open
    }

    fn own_settled(&self) -> bool {
        self.flow.as_ref().is_some_and(|(f, _)| f.outcome != Outcome::Pending)
    }

    /// True when the settled attempt was dropped by netfilter but its trace has not arrived:
    /// worth waiting a moment, the trace names the rule.
    pub fn awaiting_trace(&self) -> bool {
        let netfilter = |r: &str| r.contains("NETFILTER");
        self.inner.iter().any(Collector::awaiting_trace)
            || (self.own_settled()
                && self.flow.as_ref().is_some_and(|(f, _)| {
                    (self.verdict().is_none()
                        && f.drop.as_ref().is_some_and(|d| netfilter(&d.reason)))
                        || (self.reply_verdict().is_none()
                            && f.reply_drop.as_ref().is_some_and(|d| netfilter(&d.reason)))
                }))
    }
}

impl Sink for Collector {
    fn event(&mut self, names: &mut Names, e: Event<'_>) -> anyhow::Result<()> {
        for c in self.inner.iter_mut() {
            c.event(names, e)?;
        }
        if let Some(ch) = changes::of(&e) {
            self.unseen_syns += ch.unseen_syns;
            self.changes.push(ch);
        }
        match e {
            Event::Tap(TapChange::Attached { inode, iface, .. })
                if *inode == self.netns && !self.tapped_later.contains(iface) =>
            {
                self.tapped_later.push(iface.clone());
            }
            Event::Packet(p)
                if p.kind == "syn" && self.to_target(p.netns.inode, p.daddr, p.dport) =>
            {
                self.syns += 1;
                if self.first_syn_iface.is_none() {
                    self.first_syn_iface = p.iface.clone();
                }
            }
            Event::Verdict(v) => {
                let t = &v.json["tuple"];
                let parse = |k: &str| t[k].as_str().and_then(|s| s.parse::<IpAddr>().ok());
                let port = |k: &str| t[k].as_u64().map(|p| p as u16);
                if let (Some(sa), Some(sp), Some(da), Some(dp)) =
                    (parse("saddr"), port("sport"), parse("daddr"), port("dport"))
                {
                    let netns = v.json["netns"]["inode"].as_u64().unwrap_or(0);
                    if v.reply {
                        // Server → client: the target is the source.
                        if self.to_target(netns, sa, sp) {
                            let key = (da.to_canonical(), dp, sa.to_canonical(), sp);
                            let kept_drop = self
                                .reply_verdicts
                                .get(&key)
                                .is_some_and(|old| old.verdict.as_deref() == Some("drop"));
                            if !kept_drop {
                                self.reply_verdicts.insert(key, v.clone());
                            }
                        }
                    } else if self.to_target(netns, da, dp) {
                        self.keep_walk((sa.to_canonical(), sp, da.to_canonical(), dp), v);
                    }
                }
            }
            Event::Flow(rec, fw) => {
                let first = self.flow.as_ref().is_none_or(|(f, _)| f.outcome == Outcome::Pending);
                if first && self.to_target(rec.netns, rec.server.ip(), rec.server.port()) {
                    let iface = rec.ifindex.and_then(|i| names.device(rec.netns, i));
                    if let Some(fw) = fw {
                        let (c, s) = (rec.client, rec.server);
                        let key =
                            (c.ip().to_canonical(), c.port(), s.ip().to_canonical(), s.port());
                        self.keep_walk(key, fw);
                    }
                    self.flow = Some((rec.clone(), iface));
                }
            }
            Event::Sock(o) => {
                if let Some(b) = FailedBind::from_observation(o, self.target.port) {
                    self.failed_binds.push(b);
                }
            }
            Event::Overflow(o) if o.netns.inode == self.netns => {
                // Counters add up over the window; the latest full listeners stand.
                let prev = self.overflow.take();
                let sum = |f: fn(&OverflowEvidence) -> u64| prev.as_ref().map_or(0, f);
                let full = if o.full_listeners.is_empty() {
                    prev.as_ref().map(|p| p.full_listeners.clone()).unwrap_or_default()
                } else {
                    o.full_listeners.clone()
                };
                self.overflow = Some(OverflowEvidence {
                    netns: o.netns.clone(),
                    listen_overflows: o.listen_overflows + sum(|p| p.listen_overflows),
                    listen_drops: o.listen_drops + sum(|p| p.listen_drops),
                    syn_queue_full_drops: o.syn_queue_full_drops + sum(|p| p.syn_queue_full_drops),
                    full_listeners: full,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::flows::Family;

    fn verdict(
        reply: bool,
        word: &str,
        (sa, sp): (&str, u16),
        (da, dp): (&str, u16),
    ) -> VerdictRecord {
        VerdictRecord {
            json: serde_json::json!({
                "netns": {"inode": 9},
                "tuple": {"saddr": sa, "sport": sp, "daddr": da, "dport": dp, "proto": 6},
            }),
            attribution: None,
            family: Some("inet".into()),
            table: Some("t".into()),
            chain: Some("output".into()),
            rule_handle: Some(4),
            verdict: Some(word.into()),
            by_policy: false,
            steps: Vec::new(),
            reply,
            sent_locally: false,
            netfilter: None,
        }
    }

    fn flow() -> FlowRecord {
        FlowRecord {
            kind: "flow",
            netns: 9,
            family: Family::V4,
            client: "10.0.0.2:40000".parse().unwrap(),
            server: "10.0.0.1:8080".parse().unwrap(),
            outcome: Outcome::Unanswered,
            syn_count: 1,
            first_syn_ns: Some(1),
            last_syn_ns: Some(1),
            first_event_ns: 1,
            last_event_ns: 2,
            synack_sent: false,
            rst_sent: false,
            ifindex: None,
            drop: None,
            reply_drop: None,
            duration_ms: 0.0,
        }
    }

    /// A reply's walk (server → client) is found by the attempt it answers; the SYN's own walk
    /// is not taken for it, a drop is kept over a later accepted retransmission, and a reply
    /// from another port is not the target's.
    #[test]
    fn reply_walks_are_keyed_by_the_attempt_they_answer() {
        let mut names = Names::new();
        let mut c = Collector::new(Target { addr: None, port: 8080 }, 9);
        let server = ("10.0.0.1", 8080);
        let client = ("10.0.0.2", 40000);
        c.event(&mut names, Event::Verdict(&verdict(false, "accept", client, server))).unwrap();
        c.event(&mut names, Event::Flow(&flow(), None)).unwrap();
        assert!(c.verdict().is_some() && c.reply_verdict().is_none());
        let other = verdict(true, "drop", ("10.0.0.1", 9090), client);
        c.event(&mut names, Event::Verdict(&other)).unwrap();
        assert!(c.reply_verdict().is_none(), "a reply from port 9090 is not the target's");
        c.event(&mut names, Event::Verdict(&verdict(true, "drop", server, client))).unwrap();
        c.event(&mut names, Event::Verdict(&verdict(true, "accept", server, client))).unwrap();
        let r = c.reply_verdict().expect("the reply's walk");
        assert_eq!((r.reply, r.verdict.as_deref()), (true, Some("drop")));
        assert_eq!(c.verdict().and_then(|v| v.verdict.as_deref()), Some("accept"));
    }
}
