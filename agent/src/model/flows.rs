//! The flow table: joins per-packet observations (a client's SYN at TC ingress, the SYN-ACK or
//! RST leaving at TC egress, kfree_skb drops, the server socket reaching ESTABLISHED) into one
//! record per connection attempt, so reach can say what became of each client's connect().
//!
//! Pure logic, no I/O: the decoders build the observation types below, the caller prints the
//! records it gets back, and every attempt is returned exactly once.
//!
//! # Rules
//! - **Key**: (netns, client addr:port, server addr:port). IPv4-mapped IPv6 addresses
//!   (`::ffff:a.b.c.d`, how a dual-stack `[::]` socket sees an IPv4 client) are keyed as IPv4, so
//!   socket-level and wire-level observations of one attempt join. The same tuple in two
//!   namespaces is two flows: each namespace on the path has its own story (a drop by the
//!   client's own OUTPUT firewall is a flow in the client's namespace). A namespace that only
//!   forwards the flow never sees ESTABLISHED, so its records end `unanswered`.
//! - **Attempts**: SYNs repeating the attempt's initial sequence number (ISN) are retransmissions,
//!   counted in `syn_count`. A SYN with another ISN is a new connect() from the same port: the
//!   attempt it supersedes is reported as it stands if it was still pending, or replaced if it was
//!   already reported. When the ISN is unknown (the attempt was created from other evidence), a
//!   SYN after `accepted`/`reset` starts a new attempt (the handshake is over, the client cannot
//!   be retransmitting) and otherwise joins the attempt.
//! - **Outcomes** are reported as soon as the evidence proves them (the `observe_*` call returns
//!   the record):
//!   - `accepted`: the server socket reached ESTABLISHED.
//!   - `reset`: a RST went to the client. The kernel sends it *before* it frees the SYN (closed
//!     port: `NO_SOCKET`; nft `reject with tcp reset`: `NETFILTER_DROP`), so a RST waits up to
//!     `reset_grace` for that drop, whose reason and location tell the two apart. Without one,
//!     [`FlowTable::expire`] reports the reset with no drop evidence.
//!   - `dropped`: a SYN of the attempt was freed with a drop reason and no SYN-ACK or RST went
//!     out. Reported at the first such drop: the drops reach explains (firewall, routing,
//!     rp_filter) repeat for every retransmission and the user wants the answer now. A transient
//!     drop whose retransmission then succeeds therefore stays reported `dropped`; the later
//!     success is counted in [`FlowStats::late`].
//!   - `unanswered`: nothing settled it within `unanswered_after` of its first observation: a
//!     silent drop (full accept queue, a drop before the stack, a packet lost on the way).
//!     `synack_sent: true` means the server did answer but the handshake never completed: the
//!     client's ACK was lost or dropped (such a drop is kept as evidence) or the client gave up.
//!   - `pending`: only from [`FlowTable::drain`], for attempts still within the window.
//! - **Unknown flows**: only evidence that implies a connection attempt creates one: an ingress
//!   SYN, a dropped SYN (reach missed the SYN: no TC program on that interface, or the drop was in
//!   another namespace such as the client's), a SYN-ACK (asymmetric route, or reach started
//!   mid-handshake), ESTABLISHED (such attempts have `syn_count` 0 and no `first_syn_ns`). A RST
//!   or a non-SYN drop of an unknown flow belongs to a connection reach did not see start (an
//!   abort, `TCP_OLD_DATA` on a long-lived connection): reporting those would flood the output
//!   with non-attempts, so they are only counted in [`FlowStats::unmatched`].
//! - **Replies dropped**: a dropped SYN-ACK or RST whose reversed tuple is a known attempt is the
//!   server's answer to it, freed on its way out (an nftables output rule, a TC egress filter):
//!   kept as `reply_drop`, the first one with its reason and a count. It never settles the
//!   attempt itself: a SYN-ACK dropped at LOCAL_OUT never reached TC egress, so the attempt stays
//!   `unanswered` with `synack_sent: false` (a TC egress drop may leave `synack_sent: true`); a
//!   closed port's RST dropped on its way out leaves the SYN's `NO_SOCKET` drop deciding
//!   `dropped` (the client saw a timeout, not a refusal). A reply drop of an unknown attempt is
//!   only counted in [`FlowStats::unmatched`].
//! - **Order**: observations of one attempt must arrive in kernel order (`reach watch` sorts
//!   what its ring buffers deliver in `commands/watch/reorder.rs`). Evidence arriving after its attempt was reported never produces a
//!   second record; when it contradicts the report it is counted in [`FlowStats::late`].
//! - **Memory**: at most `capacity` flows. A reported flow lingers for `linger` after its last
//!   observation, so its retransmissions and late evidence are absorbed instead of starting new
//!   attempts. When full, the least recently touched reported flow goes first (forgetting it only
//!   risks a duplicate report), then the least recently touched pending one (an attempt lost
//!   unreported: [`FlowStats::evicted_pending`]). Per observation: one HashMap lookup and
//!   O(log n) updates of a deadline index and an LRU index, never a scan. The HashMap keeps std's
//!   randomly keyed SipHash because remote clients choose the tuples (SYN floods).
//! - **Time**: every `*_ns` is CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns). Call
//!   [`FlowTable::expire`] after draining the ring buffers, so an answer still queued is not
//!   mistaken for silence.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde::Serialize;

/// Address family of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

// The observations. `family` is what the probe reported; the key derives the family from the
// addresses (after unmapping `::ffff:a.b.c.d`), so a socket-level and a wire-level view agree.

/// A client SYN seen on ingress (TC): `saddr` is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynSeen {
    pub netns: u64,
    pub ifindex: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// The SYN's sequence number (the client's ISN): retransmissions repeat it.
    pub seq: u32,
    pub at_ns: u64,
}

/// A SYN-ACK leaving (TC egress), from the server's view: `saddr` is the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynAckSeen {
    pub netns: u64,
    pub ifindex: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub at_ns: u64,
}

/// A RST sent to the client (closed port, or a firewall's tcp-reset): `saddr` is the server.
/// Same shape as a SYN-ACK: both are server → client replies.
pub type RstSeen = SynAckSeen;

/// A server → client reply segment: what a drop of one is kept as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    SynAck,
    Rst,
}

impl Reply {
    /// The segment a drop freed, from its TCP flags (`SA`, `AR`, ... as the decoder prints
    /// them): a SYN-ACK or a RST may be a server's reply, anything else is not.
    pub fn from_flags(flags: &str) -> Option<Reply> {
        if flags.contains('R') {
            Some(Reply::Rst)
        } else if flags.contains('S') && flags.contains('A') {
            Some(Reply::SynAck)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reply::SynAck => "SYN-ACK",
            Reply::Rst => "RST",
        }
    }
}

/// A kfree_skb drop of a TCP segment of a watched port, with the tuple as in the packet: a
/// client→server segment, or (`reply`) possibly the server's SYN-ACK or RST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub netns: u64,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Kernel drop reason name without the prefix: `NO_SOCKET`, `NETFILTER_DROP`, ...
    pub reason: String,
    /// Where it was freed, e.g. `tcp_v4_rcv+0x2a3`, when the probe could symbolise it.
    pub location: Option<String>,
    pub is_syn: bool,
    /// Set for a SYN-ACK or RST: matched first to the attempt it would answer (the reversed
    /// tuple); when no such attempt is known it is taken as a client→server segment.
    pub reply: Option<Reply>,
    pub at_ns: u64,
}

/// The server socket went SYN_RECV → ESTABLISHED, with the tuple oriented client→server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    pub netns: u64,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub at_ns: u64,
}

/// Any observation, for a decoder that reads them all from one ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Syn(SynSeen),
    SynAck(SynAckSeen),
    Rst(RstSeen),
    Drop(Dropped),
    Established(Established),
}

/// What became of a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Reset,
    Dropped,
    Unanswered,
    Pending,
}

/// Identity of a flow: one client port talking to one server port in one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub netns: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl FlowKey {
    /// Builds a key, keying IPv4-mapped IPv6 pairs as IPv4 (see the module docs).
    pub fn new(netns: u64, client: (IpAddr, u16), server: (IpAddr, u16)) -> Self {
        // Unmap only when both ends are IPv4 underneath: a mixed pair cannot be on the wire, and
        // keeping it as given at least never merges it with a real IPv4 flow.
        let (c, s) = match (client.0.to_canonical(), server.0.to_canonical()) {
            (c @ IpAddr::V4(_), s @ IpAddr::V4(_)) => (c, s),
            _ => (client.0, server.0),
        };
        Self { netns, client: SocketAddr::new(c, client.1), server: SocketAddr::new(s, server.1) }
    }

    pub fn family(&self) -> Family {
        if self.client.is_ipv4() && self.server.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// The drop kept as evidence for an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropEvidence {
    pub reason: String,
    pub location: Option<String>,
    /// Drops of this attempt's client→server segments seen until it was reported.
    pub count: u32,
    /// Whether the kept drop was of a SYN (else e.g. the client's handshake ACK). The first SYN
    /// drop is kept; a non-SYN drop only until a SYN drop shows up.
    pub syn: bool,
}

/// The server's reply (SYN-ACK or RST) to an attempt, freed by the kernel on its way out (an
/// output/postrouting rule, a TC egress filter, ...): the server answered, the client never
/// got the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyDropEvidence {
    /// The first reply seen dropped.
    pub segment: Reply,
    /// Kernel drop reason name without the prefix: `NETFILTER_DROP`, `TC_EGRESS`, ...
    pub reason: String,
    pub location: Option<String>,
    /// Reply drops of this attempt seen until it was reported (the server retransmits its
    /// SYN-ACK, and answers each retransmitted SYN).
    pub count: u32,
}

/// One connection attempt, as the `{"type":"flow", ...}` JSON line prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub netns: u64,
    pub family: Family,
    /// `addr:port`, IPv6 as `[addr]:port`.
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub outcome: Outcome,
    /// SYNs of this attempt: seen at ingress, or, where ingress was not watched, seen dropped.
    pub syn_count: u32,
    /// First and last SYN (ingress or dropped); null when the attempt was built from later
    /// evidence only (e.g. ESTABLISHED of a connection whose SYN reach did not see).
    pub first_syn_ns: Option<u64>,
    pub last_syn_ns: Option<u64>,
    /// First and last observation of any kind included in this record.
    pub first_event_ns: u64,
    pub last_event_ns: u64,
    pub synack_sent: bool,
    pub rst_sent: bool,
    /// Interface the first SYN came in on, when a SYN was seen at ingress.
    pub ifindex: Option<u32>,
    pub drop: Option<DropEvidence>,
    /// The server's SYN-ACK or RST to this attempt, dropped on its way out. Does not decide the
    /// outcome on its own: a SYN-ACK dropped by netfilter at LOCAL_OUT never reaches TC egress
    /// (`synack_sent` stays false) and the attempt ends `unanswered`; a closed port's dropped
    /// RST leaves the SYN's own `NO_SOCKET` drop deciding `dropped`.
    pub reply_drop: Option<ReplyDropEvidence>,
    /// `last_event_ns - first_event_ns`, in milliseconds with microsecond precision.
    pub duration_ms: f64,
}

/// Counters for what the table could not report normally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    /// Attempts started (each is reported once, evicted unreported, or still in the table).
    pub attempts: u64,
    /// Attempts evicted before being reported (table full): lost from the output.
    pub evicted_pending: u64,
    /// Reported attempts evicted before their linger ended: a late retransmission may be
    /// reported again as a new attempt.
    pub evicted_settled: u64,
    /// RSTs and non-SYN drops (replies included) of flows the table does not know.
    pub unmatched: u64,
    /// Reported attempts contradicted by evidence arriving later (counted once per attempt).
    pub late: u64,
}

/// Sizes and windows of a [`FlowTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// Most flows kept at once (at least 1).
    pub capacity: usize,
    /// An attempt not settled this long after its first observation is `unanswered`.
    pub unanswered_after: Duration,
    /// How long a RST waits for the drop that explains it; zero reports a RST at once.
    pub reset_grace: Duration,
    /// How long a reported flow stays to absorb retransmissions and late evidence.
    pub linger: Duration,
}

impl FlowConfig {
    /// The RST and its drop come from the same softirq; this only covers the reader seeing one
    /// and not yet the other.
    pub const DEFAULT_RESET_GRACE: Duration = Duration::from_millis(250);
    /// Linux retransmits a SYN after 1, 2, 4, ... 32 s (tcp_syn_retries=6): a linger above the
    /// longest gap absorbs them all.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(40);

    pub fn new(capacity: usize, unanswered_after: Duration) -> Self {
        Self {
            capacity,
            unanswered_after,
            reset_grace: Self::DEFAULT_RESET_GRACE,
            linger: Self::DEFAULT_LINGER,
        }
    }
}

/// Eviction order: reported flows before pending ones (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Reported,
    Pending,
}

/// One attempt's evidence.
#[derive(Debug, Clone)]
struct Flow {
    /// Unique per attempt: the tie-break of the deadline index.
    id: u64,
    isn: Option<u32>,
    ifindex: Option<u32>,
    first_ns: u64,
    last_ns: u64,
    first_syn_ns: Option<u64>,
    last_syn_ns: Option<u64>,
    ingress_syns: u32,
    dropped_syns: u32,
    synack_sent: bool,
    rst_ns: Option<u64>,
    established: bool,
    drop: Option<DropEvidence>,
    reply_drop: Option<ReplyDropEvidence>,
    reported: Option<Outcome>,
    late_counted: bool,
    /// This flow's current entries in the two indexes.
    deadline_at: (u64, u64),
    lru_at: (Class, u64),
}

impl Flow {
    fn new(id: u64, at_ns: u64, tick: u64) -> Self {
        Self {
            id,
            isn: None,
            ifindex: None,
            first_ns: at_ns,
            last_ns: at_ns,
            first_syn_ns: None,
            last_syn_ns: None,
            ingress_syns: 0,
            dropped_syns: 0,
            synack_sent: false,
            rst_ns: None,
            established: false,
            drop: None,
            reply_drop: None,
            reported: None,
            late_counted: false,
            deadline_at: (0, id),
            lru_at: (Class::Pending, tick),
        }
    }

    /// Observation times can arrive slightly out of order across CPUs: keep the extremes.
    fn saw(&mut self, at_ns: u64) {
        self.first_ns = self.first_ns.min(at_ns);
        self.last_ns = self.last_ns.max(at_ns);
    }

    fn saw_syn(&mut self, at_ns: u64) {
        self.first_syn_ns = Some(self.first_syn_ns.map_or(at_ns, |t| t.min(at_ns)));
        self.last_syn_ns = Some(self.last_syn_ns.map_or(at_ns, |t| t.max(at_ns)));
    }

    fn add_ingress_syn(&mut self, o: &SynSeen) {
        self.ingress_syns = self.ingress_syns.saturating_add(1);
        self.isn.get_or_insert(o.seq);
        self.ifindex.get_or_insert(o.ifindex);
        self.saw_syn(o.at_ns);
    }

    fn add_drop(&mut self, d: Dropped) {
        if d.is_syn {
            self.dropped_syns = self.dropped_syns.saturating_add(1);
            self.saw_syn(d.at_ns);
        }
        let count = self.drop.as_ref().map_or(0, |e| e.count).saturating_add(1);
        match &mut self.drop {
            Some(e) if e.syn || !d.is_syn => e.count = count,
            slot => {
                *slot = Some(DropEvidence {
                    reason: d.reason,
                    location: d.location,
                    count,
                    syn: d.is_syn,
                })
            }
        }
    }

    fn add_reply_drop(&mut self, segment: Reply, d: Dropped) {
        match &mut self.reply_drop {
            Some(e) => e.count = e.count.saturating_add(1),
            slot => {
                *slot = Some(ReplyDropEvidence {
                    segment,
                    reason: d.reason,
                    location: d.location,
                    count: 1,
                })
            }
        }
    }

    /// Whether a SYN with this ISN is a new connect() rather than part of this attempt.
    fn starts_new_attempt(&self, seq: u32, at_ns: u64) -> bool {
        match self.isn {
            Some(isn) => isn != seq,
            // A SYN older than everything this flow has seen cannot be a later attempt: it is
            // this attempt's own SYN, read late from another ring buffer (e.g. after the
            // handshake completion that created the flow).
            None if at_ns < self.first_ns => false,
            None => matches!(self.reported, Some(Outcome::Accepted | Outcome::Reset)),
        }
    }

    /// The outcome the evidence proves on its own, if any.
    fn decided(&self, reset_grace_ns: u64) -> Option<Outcome> {
        if self.established {
            Some(Outcome::Accepted)
        } else if self.rst_ns.is_some() {
            (self.drop.is_some() || reset_grace_ns == 0).then_some(Outcome::Reset)
        } else if self.dropped_syns > 0 && !self.synack_sent {
            Some(Outcome::Dropped)
        } else {
            None
        }
    }

    /// The outcome when the attempt is reported without a deciding observation.
    fn outcome_now(&self, reset_grace_ns: u64, window_over: bool) -> Outcome {
        match self.decided(reset_grace_ns) {
            Some(o) => o,
            // The RST is sent; only its explanation is missing.
            None if self.rst_ns.is_some() => Outcome::Reset,
            None if window_over => Outcome::Unanswered,
            None => Outcome::Pending,
        }
    }

    fn deadline_ns(&self, c: &Limits) -> u64 {
        match self.reported {
            Some(_) => self.last_ns.saturating_add(c.linger_ns),
            None => {
                let window = self.first_ns.saturating_add(c.window_ns);
                self.rst_ns.map_or(window, |r| window.min(r.saturating_add(c.reset_grace_ns)))
            }
        }
    }

    fn class(&self) -> Class {
        if self.reported.is_some() { Class::Reported } else { Class::Pending }
    }

    fn record(&self, key: &FlowKey, outcome: Outcome) -> FlowRecord {
        let micros = self.last_ns.saturating_sub(self.first_ns) / 1_000;
        FlowRecord {
            kind: "flow",
            netns: key.netns,
            family: key.family(),
            client: key.client,
            server: key.server,
            outcome,
            syn_count: self.ingress_syns.max(self.dropped_syns),
            first_syn_ns: self.first_syn_ns,
            last_syn_ns: self.last_syn_ns,
            first_event_ns: self.first_ns,
            last_event_ns: self.last_ns,
            synack_sent: self.synack_sent,
            rst_sent: self.rst_ns.is_some(),
            ifindex: self.ifindex,
            drop: self.drop.clone(),
            reply_drop: self.reply_drop.clone(),
            duration_ms: micros as f64 / 1_000.0,
        }
    }

    /// Marks the attempt reported and returns its record.
    fn report(&mut self, key: &FlowKey, outcome: Outcome) -> FlowRecord {
        self.reported = Some(outcome);
        self.record(key, outcome)
    }
}

/// The configuration in nanoseconds, as the hot path uses it.
#[derive(Debug, Clone, Copy)]
struct Limits {
    capacity: usize,
    window_ns: u64,
    reset_grace_ns: u64,
    linger_ns: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a non-SYN observation does to the flow it names.
enum Evidence {
    SynAck,
    Rst(u64),
    Drop(Dropped),
    ReplyDrop(Reply, Dropped),
    Established,
}

/// The connection attempts in flight and recently reported. See the module docs for the rules.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    limits: Limits,
    flows: HashMap<FlowKey, Flow>,
    /// (deadline, flow id) → key: the next flow `expire` has to look at is always first.
    deadlines: BTreeMap<(u64, u64), FlowKey>,
    /// (class, last-touch tick) → key: the next flow to evict is always first.
    lru: BTreeMap<(Class, u64), FlowKey>,
    next_id: u64,
    /// Counts observations; orders the LRU by arrival, which clock skew between CPUs cannot
    /// reorder the way event timestamps can.
    tick: u64,
    stats: FlowStats,
}

impl FlowTable {
    /// A table of at most `capacity` flows reporting silence after `unanswered_after`, with the
    /// default reset grace and linger.
    pub fn new(capacity: usize, unanswered_after: Duration) -> Self {
        Self::with_config(FlowConfig::new(capacity, unanswered_after))
    }

    pub fn with_config(config: FlowConfig) -> Self {
        Self {
            config,
            limits: Limits {
                capacity: config.capacity.max(1),
                window_ns: nanos(config.unanswered_after),
                reset_grace_ns: nanos(config.reset_grace),
                linger_ns: nanos(config.linger),
            },
            flows: HashMap::new(),
            deadlines: BTreeMap::new(),
            lru: BTreeMap::new(),
            next_id: 0,
            tick: 0,
            stats: FlowStats::default(),
        }
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Flows held, pending and lingering.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Applies any observation; returns the record it settled, if any.
    pub fn observe(&mut self, o: Observation) -> Option<FlowRecord> {
        match o {
            Observation::Syn(o) => self.observe_syn(o),
            Observation::SynAck(o) => self.observe_synack(o),
            Observation::Rst(o) => self.observe_rst(o),
            Observation::Drop(o) => self.observe_drop(o),
            Observation::Established(o) => self.observe_established(o),
        }
    }

    /// A client SYN. Returns a record only when its new ISN supersedes a pending attempt.
    pub fn observe_syn(&mut self, o: SynSeen) -> Option<FlowRecord> {
        self.tick += 1;
        let key = FlowKey::new(o.netns, (o.saddr, o.sport), (o.daddr, o.dport));
        let mut superseded = None;
        if self.flows.get(&key).is_some_and(|f| f.starts_new_attempt(o.seq, o.at_ns))
            && let Some(old) = self.remove(&key)
            && old.reported.is_none()
        {
            let outcome = old.outcome_now(self.limits.reset_grace_ns, true);
            superseded = Some(old.record(&key, outcome));
        }
        if !self.flows.contains_key(&key) {
            self.create(key, o.at_ns);
        }
        let flow = self.flows.get_mut(&key)?;
        flow.add_ingress_syn(&o);
        flow.saw(o.at_ns);
        self.reindex(&key, true);
        superseded
    }

    /// A SYN-ACK leaving the server: the handshake's second step.
    pub fn observe_synack(&mut self, o: SynAckSeen) -> Option<FlowRecord> {
        let key = FlowKey::new(o.netns, (o.daddr, o.dport), (o.saddr, o.sport));
        self.apply(key, o.at_ns, true, Evidence::SynAck)
    }

    /// A RST leaving the server. Settles `reset` once its drop is seen (or at once with a zero
    /// grace); a RST of an unknown flow is only counted.
    pub fn observe_rst(&mut self, o: RstSeen) -> Option<FlowRecord> {
        let key = FlowKey::new(o.netns, (o.daddr, o.dport), (o.saddr, o.sport));
        self.apply(key, o.at_ns, false, Evidence::Rst(o.at_ns))
    }

    /// A dropped segment. A SYN-ACK or RST goes to the attempt it answers (reversed tuple) when
    /// that attempt is known; otherwise, like any client→server segment: a SYN drop of an
    /// unknown flow creates the attempt, a non-SYN drop of an unknown flow is only counted.
    pub fn observe_drop(&mut self, o: Dropped) -> Option<FlowRecord> {
        if let Some(reply) = o.reply {
            let answers = FlowKey::new(o.netns, (o.daddr, o.dport), (o.saddr, o.sport));
            if self.flows.contains_key(&answers) {
                return self.apply(answers, o.at_ns, false, Evidence::ReplyDrop(reply, o));
            }
        }
        let key = FlowKey::new(o.netns, (o.saddr, o.sport), (o.daddr, o.dport));
        let (at_ns, creates) = (o.at_ns, o.is_syn);
        self.apply(key, at_ns, creates, Evidence::Drop(o))
    }

    /// The server socket reached ESTABLISHED: settles `accepted`.
    pub fn observe_established(&mut self, o: Established) -> Option<FlowRecord> {
        let key = FlowKey::new(o.netns, (o.saddr, o.sport), (o.daddr, o.dport));
        self.apply(key, o.at_ns, true, Evidence::Established)
    }

    /// Reports every pending attempt whose window (or RST grace) ended by `now_ns`, and forgets
    /// reported flows whose linger ended. Each attempt is returned once, oldest deadline first.
    pub fn expire(&mut self, now_ns: u64) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        while let Some((&(deadline, _), &key)) = self.deadlines.first_key_value() {
            if deadline > now_ns {
                break;
            }
            let grace = self.limits.reset_grace_ns;
            match self.flows.get_mut(&key) {
                Some(flow) if flow.reported.is_none() => {
                    let outcome = flow.outcome_now(grace, true);
                    out.push(flow.report(&key, outcome));
                    // Its new deadline is the linger's end; if that has passed too, the loop
                    // comes back to it and forgets it.
                    self.reindex(&key, false);
                }
                Some(_) => {
                    self.remove(&key);
                }
                // Unreachable while the indexes are consistent; never loop on a stale entry.
                None => {
                    self.deadlines.pop_first();
                }
            }
        }
        out
    }

    /// Reports every attempt not reported yet with its outcome so far (`pending` when nothing
    /// decided it), in the order they started, and empties the table: for shutdown.
    pub fn drain(&mut self) -> Vec<FlowRecord> {
        let grace = self.limits.reset_grace_ns;
        let mut open: Vec<(u64, FlowRecord)> = self
            .flows
            .iter()
            .filter(|(_, f)| f.reported.is_none())
            .map(|(k, f)| (f.id, f.record(k, f.outcome_now(grace, false))))
            .collect();
        open.sort_by_key(|(id, _)| *id);
        self.flows.clear();
        self.deadlines.clear();
        self.lru.clear();
        open.into_iter().map(|(_, r)| r).collect()
    }

    /// Applies a non-SYN observation to the flow it names.
    fn apply(
        &mut self,
        key: FlowKey,
        at_ns: u64,
        creates: bool,
        evidence: Evidence,
    ) -> Option<FlowRecord> {
        self.tick += 1;
        if !self.flows.contains_key(&key) {
            if !creates {
                self.stats.unmatched += 1;
                return None;
            }
            self.create(key, at_ns);
        }
        let grace = self.limits.reset_grace_ns;
        let flow = self.flows.get_mut(&key)?;
        match evidence {
            Evidence::SynAck => flow.synack_sent = true,
            Evidence::Rst(at) => flow.rst_ns = Some(flow.rst_ns.map_or(at, |t| t.min(at))),
            Evidence::Drop(d) => flow.add_drop(d),
            Evidence::ReplyDrop(r, d) => flow.add_reply_drop(r, d),
            Evidence::Established => flow.established = true,
        }
        flow.saw(at_ns);
        let record = match flow.reported {
            None => flow.decided(grace).map(|outcome| flow.report(&key, outcome)),
            Some(reported) => {
                if !flow.late_counted && flow.outcome_now(grace, true) != reported {
                    flow.late_counted = true;
                    self.stats.late += 1;
                }
                None
            }
        };
        self.reindex(&key, true);
        record
    }

    /// Inserts a fresh attempt, evicting first if the table is full.
    fn create(&mut self, key: FlowKey, at_ns: u64) {
        while self.flows.len() >= self.limits.capacity && self.evict_one() {}
        let id = self.next_id;
        self.next_id += 1;
        let mut flow = Flow::new(id, at_ns, self.tick);
        flow.deadline_at = (flow.deadline_ns(&self.limits), id);
        self.deadlines.insert(flow.deadline_at, key);
        self.lru.insert(flow.lru_at, key);
        self.flows.insert(key, flow);
        self.stats.attempts += 1;
    }

    /// Evicts the first flow in LRU order; false when there is none.
    fn evict_one(&mut self) -> bool {
        let Some((_, key)) = self.lru.pop_first() else { return false };
        match self.remove(&key) {
            Some(f) if f.reported.is_some() => self.stats.evicted_settled += 1,
            Some(_) => self.stats.evicted_pending += 1,
            None => {}
        }
        true
    }

    fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let flow = self.flows.remove(key)?;
        self.deadlines.remove(&flow.deadline_at);
        self.lru.remove(&flow.lru_at);
        Some(flow)
    }

    /// Moves a flow's index entries after its evidence or state changed; `touch` makes it the
    /// most recently used.
    fn reindex(&mut self, key: &FlowKey, touch: bool) {
        let Some(flow) = self.flows.get_mut(key) else { return };
        let deadline_at = (flow.deadline_ns(&self.limits), flow.id);
        if deadline_at != flow.deadline_at {
            self.deadlines.remove(&flow.deadline_at);
            self.deadlines.insert(deadline_at, *key);
            flow.deadline_at = deadline_at;
        }
        let lru_at = (flow.class(), if touch { self.tick } else { flow.lru_at.1 });
        if lru_at != flow.lru_at {
            self.lru.remove(&flow.lru_at);
            self.lru.insert(lru_at, *key);
            flow.lru_at = lru_at;
        }
    }

    /// Panics when the map and its two indexes disagree.
    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.flows.len(), self.deadlines.len());
        assert_eq!(self.flows.len(), self.lru.len());
        assert!(self.flows.len() <= self.limits.capacity);
        for (key, flow) in &self.flows {
            assert_eq!(self.deadlines.get(&flow.deadline_at), Some(key));
            assert_eq!(self.lru.get(&flow.lru_at), Some(key));
            assert_eq!(flow.deadline_at.0, flow.deadline_ns(&self.limits));
            assert_eq!(flow.lru_at.0, flow.class());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const NS: u64 = 4026531840;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn fam(a: &SocketAddr) -> Family {
        if a.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn syn(netns: u64, client: &str, server: &str, seq: u32, at_ns: u64) -> SynSeen {
        let (c, s) = (sa(client), sa(server));
        SynSeen {
            netns,
            ifindex: 2,
            family: fam(&c),
            saddr: c.ip(),
            sport: c.port(),
            daddr: s.ip(),
            dport: s.port(),
            seq,
            at_ns,
        }
    }

    fn synack(netns: u64, client: &str, server: &str, at_ns: u64) -> SynAckSeen {
        let (c, s) = (sa(client), sa(server));
        SynAckSeen {
            netns,
            ifindex: 2,
            family: fam(&c),
            saddr: s.ip(),
            sport: s.port(),
            daddr: c.ip(),
            dport: c.port(),
            at_ns,
        }
    }

    fn rst(netns: u64, client: &str, server: &str, at_ns: u64) -> RstSeen {
        let a = synack(netns, client, server, at_ns);
        RstSeen {
            netns,
            ifindex: a.ifindex,
            family: a.family,
            saddr: a.saddr,
            sport: a.sport,
            daddr: a.daddr,
            dport: a.dport,
            at_ns,
        }
    }

    fn dropped(
        netns: u64,
        client: &str,
        server: &str,
        reason: &str,
        is_syn: bool,
        at_ns: u64,
    ) -> Dropped {
        let (c, s) = (sa(client), sa(server));
        Dropped {
            netns,
            family: fam(&c),
            saddr: c.ip(),
            sport: c.port(),
            daddr: s.ip(),
            dport: s.port(),
            reason: reason.into(),
            location: Some("tcp_v4_rcv+0x2a3".into()),
            is_syn,
            reply: None,
            at_ns,
        }
    }

    fn est(netns: u64, client: &str, server: &str, at_ns: u64) -> Established {
        let (c, s) = (sa(client), sa(server));
        Established {
            netns,
            family: fam(&c),
            saddr: c.ip(),
            sport: c.port(),
            daddr: s.ip(),
            dport: s.port(),
            at_ns,
        }
    }

    /// 3 s window, 100 ms reset grace, 10 s linger.
    fn table(capacity: usize) -> FlowTable {
        FlowTable::with_config(FlowConfig {
            capacity,
            unanswered_after: Duration::from_secs(3),
            reset_grace: Duration::from_millis(100),
            linger: Duration::from_secs(10),
        })
    }

    const C: &str = "10.0.0.2:40000";
    const SRV: &str = "10.0.0.1:8080";

    #[test]
    fn accepted_flow() {
        let mut t = table(16);
        assert_eq!(t.observe_syn(syn(NS, C, SRV, 7, S)), None);
        assert_eq!(t.observe_synack(synack(NS, C, SRV, S + 100_000)), None);
        let r = t.observe_established(est(NS, C, SRV, S + 250_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Accepted);
        assert_eq!((r.client, r.server, r.family), (sa(C), sa(SRV), Family::V4));
        assert_eq!((r.syn_count, r.synack_sent, r.rst_sent, r.drop), (1, true, false, None));
        assert_eq!((r.first_syn_ns, r.last_event_ns, r.ifindex), (Some(S), S + 250_000, Some(2)));
        assert_eq!(r.duration_ms, 0.25);
        // Reported once: neither expiry nor the end of the linger brings it back.
        assert!(t.expire(S + 5 * S).is_empty());
        assert!(t.expire(S + 60 * S).is_empty());
        assert!(t.is_empty());
        t.check_invariants();
    }

    #[test]
    fn syn_retransmissions_are_counted() {
        let mut t = table(16);
        for at in [0, S, 3 * S / 2] {
            assert_eq!(t.observe_syn(syn(NS, C, SRV, 99, at)), None);
        }
        assert_eq!(t.len(), 1);
        let r = t.observe_established(est(NS, C, SRV, 2 * S)).unwrap();
        assert_eq!(r.syn_count, 3);
        assert_eq!((r.first_syn_ns, r.last_syn_ns), (Some(0), Some(3 * S / 2)));
        assert_eq!(r.duration_ms, 2000.0);
        assert_eq!(t.stats().attempts, 1);
    }

    #[test]
    fn closed_port_is_reset_with_no_socket_evidence() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        // The kernel sends the RST before it frees the SYN: wait for the drop's reason.
        assert_eq!(t.observe_rst(rst(NS, C, SRV, S + 10_000)), None);
        let r = t.observe_drop(dropped(NS, C, SRV, "NO_SOCKET", true, S + 12_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Reset);
        assert!(r.rst_sent && !r.synack_sent);
        let d = r.drop.unwrap();
        assert_eq!(
            (d.reason.as_str(), d.location.as_deref()),
            ("NO_SOCKET", Some("tcp_v4_rcv+0x2a3"))
        );
        assert_eq!((d.count, d.syn), (1, true));
        assert_eq!(r.syn_count, 1, "the dropped SYN is the one seen at ingress");
        assert!(t.expire(100 * S).is_empty());
    }

    #[test]
    fn firewall_reject_with_reset_keeps_netfilter_evidence() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        t.observe_rst(rst(NS, C, SRV, S + 5_000));
        let r = t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, S + 6_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Reset);
        assert_eq!(r.drop.unwrap().reason, "NETFILTER_DROP");
    }

    #[test]
    fn rst_without_its_drop_is_reported_after_the_grace() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        t.observe_rst(rst(NS, C, SRV, S + MS));
        assert!(t.expire(S + 50 * MS).is_empty());
        let rs = t.expire(S + 101 * MS);
        assert_eq!(rs.len(), 1);
        assert_eq!((rs[0].outcome, rs[0].drop.as_ref()), (Outcome::Reset, None));
        assert!(t.expire(S + 4 * S).is_empty());
    }

    #[test]
    fn rst_with_zero_grace_settles_at_once() {
        let mut cfg = table(16).config;
        cfg.reset_grace = Duration::ZERO;
        let mut t = FlowTable::with_config(cfg);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        let r = t.observe_rst(rst(NS, C, SRV, S + MS)).unwrap();
        assert_eq!((r.outcome, r.drop), (Outcome::Reset, None));
        // The drop that follows is absorbed: same outcome, no second record.
        assert_eq!(t.observe_drop(dropped(NS, C, SRV, "NO_SOCKET", true, S + 2 * MS)), None);
        assert_eq!(t.stats().late, 0);
    }

    #[test]
    fn firewall_drop_is_dropped_and_retransmissions_are_absorbed() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 5, 0));
        let r = t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, 20_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Dropped);
        assert_eq!(r.drop.as_ref().map(|d| d.reason.as_str()), Some("NETFILTER_DROP"));
        assert!(!r.synack_sent && !r.rst_sent);
        // Linux retransmits at 1, 3, 7 s; each is dropped the same way, none is a new attempt.
        for at in [S, 3 * S, 7 * S] {
            assert_eq!(t.observe_syn(syn(NS, C, SRV, 5, at)), None);
            assert_eq!(t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, at + 1)), None);
            assert!(t.expire(at + 2 * S).is_empty());
        }
        assert_eq!(t.stats().attempts, 1);
        assert_eq!(t.stats().late, 0);
        assert!(t.expire(7 * S + 11 * S).is_empty());
        assert!(t.is_empty(), "forgotten after the linger");
    }

    #[test]
    fn unanswered_after_the_window() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        t.observe_syn(syn(NS, C, SRV, 1, 2 * S));
        assert!(t.expire(S + 3 * S - 1).is_empty());
        let rs = t.expire(S + 3 * S);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(
            (r.outcome, r.syn_count, r.synack_sent, r.drop.as_ref()),
            (Outcome::Unanswered, 2, false, None)
        );
        assert_eq!(r.duration_ms, 1000.0);
        // A later retransmission (same ISN) joins the reported attempt.
        assert_eq!(t.observe_syn(syn(NS, C, SRV, 1, 7 * S)), None);
        assert!(t.expire(9 * S).is_empty());
        assert_eq!(t.stats().attempts, 1);
    }

    #[test]
    fn synack_without_established_is_unanswered_with_synack_sent() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 0));
        t.observe_synack(synack(NS, C, SRV, 10));
        // The client's ACK dies: kept as evidence, but the SYN got through so not `dropped`.
        assert_eq!(t.observe_drop(dropped(NS, C, SRV, "TCP_INVALID_ACK", false, 20)), None);
        let rs = t.expire(3 * S);
        assert_eq!(rs.len(), 1);
        assert_eq!((rs[0].outcome, rs[0].synack_sent), (Outcome::Unanswered, true));
        let d = rs[0].drop.as_ref().unwrap();
        assert_eq!((d.reason.as_str(), d.syn, d.count), ("TCP_INVALID_ACK", false, 1));
    }

    #[test]
    fn syn_drop_after_synack_is_evidence_not_the_outcome() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 0));
        t.observe_synack(synack(NS, C, SRV, 10));
        assert_eq!(t.observe_drop(dropped(NS, C, SRV, "SOME_REASON", true, 1_000)), None);
        let r = t.observe_established(est(NS, C, SRV, 2_000)).unwrap();
        assert_eq!(r.outcome, Outcome::Accepted);
        assert!(r.drop.unwrap().syn);
    }

    #[test]
    fn a_syn_drop_replaces_non_syn_evidence() {
        let mut t = table(16);
        t.observe_synack(synack(NS, C, SRV, 0));
        t.observe_drop(dropped(NS, C, SRV, "FIRST", false, 1));
        t.observe_drop(dropped(NS, C, SRV, "SECOND", true, 2));
        t.observe_drop(dropped(NS, C, SRV, "THIRD", true, 3));
        let r = &t.expire(3 * S)[0];
        let d = r.drop.as_ref().unwrap();
        assert_eq!((d.reason.as_str(), d.syn, d.count), ("SECOND", true, 3));
    }

    #[test]
    fn same_tuple_in_two_namespaces_is_two_flows() {
        let mut t = table(16);
        t.observe_syn(syn(1, C, SRV, 1, 0));
        t.observe_syn(syn(2, C, SRV, 1, 0));
        assert_eq!(t.len(), 2);
        let r = t.observe_drop(dropped(2, C, SRV, "NETFILTER_DROP", true, 5)).unwrap();
        assert_eq!((r.netns, r.outcome), (2, Outcome::Dropped));
        let r = t.observe_established(est(1, C, SRV, 9)).unwrap();
        assert_eq!((r.netns, r.outcome), (1, Outcome::Accepted));
        assert_eq!(t.stats().attempts, 2);
    }

    #[test]
    fn ipv6_flow_and_its_json() {
        let (c, s) = ("[2001:db8::2]:51000", "[2001:db8::1]:443");
        let mut t = table(16);
        t.observe_syn(syn(NS, c, s, 3, 0));
        t.observe_synack(synack(NS, c, s, 1_000));
        let r = t.observe_established(est(NS, c, s, 2_000)).unwrap();
        assert_eq!(r.family, Family::V6);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["type"], "flow");
        assert_eq!(j["family"], "ipv6");
        assert_eq!(j["client"], "[2001:db8::2]:51000");
        assert_eq!(j["server"], "[2001:db8::1]:443");
        assert_eq!(j["outcome"], "accepted");
        assert_eq!(j["drop"], serde_json::Value::Null);
    }

    #[test]
    fn json_line_shape() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        let r = t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, S + 1_500_000)).unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["type"], "flow");
        assert_eq!(j["netns"], NS);
        assert_eq!(j["family"], "ipv4");
        assert_eq!(j["client"], C);
        assert_eq!(j["server"], SRV);
        assert_eq!(j["outcome"], "dropped");
        assert_eq!(j["syn_count"], 1);
        assert_eq!(j["first_syn_ns"], S);
        assert_eq!(j["synack_sent"], false);
        assert_eq!(j["drop"]["reason"], "NETFILTER_DROP");
        assert_eq!(j["drop"]["location"], "tcp_v4_rcv+0x2a3");
        assert_eq!(j["drop"]["count"], 1);
        assert_eq!(j["duration_ms"], 1.5);
        for outcome in [Outcome::Reset, Outcome::Unanswered, Outcome::Pending] {
            let s = serde_json::to_string(&outcome).unwrap();
            assert_eq!(s, format!("\"{}\"", format!("{outcome:?}").to_lowercase()));
        }
    }

    #[test]
    fn v4_mapped_established_joins_the_ipv4_syn() {
        // A dual-stack [::] listener's socket sees its IPv4 client as ::ffff:10.0.0.2.
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 0));
        let mapped = est(NS, "[::ffff:10.0.0.2]:40000", "[::ffff:10.0.0.1]:8080", 10);
        let r = t.observe_established(mapped).unwrap();
        assert_eq!((r.family, r.client, r.syn_count), (Family::V4, sa(C), 1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_evicts_the_least_recently_touched_and_counts_it() {
        let mut t = table(2);
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, 0));
        t.observe_syn(syn(NS, "10.0.0.2:2", SRV, 1, 1));
        // Touch flow 1: flow 2 becomes the oldest.
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, 2));
        t.observe_syn(syn(NS, "10.0.0.2:3", SRV, 1, 3));
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().evicted_pending, 1);
        t.check_invariants();
        let clients: Vec<u16> = t.expire(10 * S).iter().map(|r| r.client.port()).collect();
        assert_eq!(clients, [1, 3]);
        assert_eq!(t.stats().attempts, 3);
    }

    #[test]
    fn reported_flows_are_evicted_before_pending_ones() {
        let mut t = table(2);
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, 0));
        t.observe_syn(syn(NS, "10.0.0.2:2", SRV, 1, 1));
        // Flow 2 is settled (and most recently touched); flow 1 is pending and older.
        assert!(t.observe_established(est(NS, "10.0.0.2:2", SRV, 2)).is_some());
        t.observe_syn(syn(NS, "10.0.0.2:3", SRV, 1, 3));
        let s = t.stats();
        assert_eq!((s.evicted_settled, s.evicted_pending), (1, 0));
        let clients: Vec<u16> = t.expire(10 * S).iter().map(|r| r.client.port()).collect();
        assert_eq!(clients, [1, 3]);
    }

    #[test]
    fn expire_returns_each_flow_once() {
        let mut t = table(64);
        for p in 0..20u16 {
            t.observe_syn(syn(NS, &format!("10.0.0.2:{}", 1000 + p), SRV, 1, u64::from(p) * MS));
        }
        let mut seen = Vec::new();
        for step in 0..100 {
            for r in t.expire(step * 100 * MS) {
                assert_eq!(r.outcome, Outcome::Unanswered);
                seen.push(r.client.port());
            }
            t.check_invariants();
        }
        seen.sort_unstable();
        assert_eq!(seen, (1000..1020).collect::<Vec<u16>>());
        assert!(t.expire(u64::MAX).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn expire_reports_in_deadline_order() {
        let mut t = table(16);
        t.observe_syn(syn(NS, "10.0.0.2:2", SRV, 1, 2 * MS));
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, MS));
        let ports: Vec<u16> = t.expire(10 * S).iter().map(|r| r.client.port()).collect();
        assert_eq!(ports, [1, 2]);
    }

    #[test]
    fn port_reuse_after_a_settled_flow_is_a_new_attempt() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 100, 0));
        t.observe_rst(rst(NS, C, SRV, 10));
        assert!(t.observe_drop(dropped(NS, C, SRV, "NO_SOCKET", true, 11)).is_some());
        // The RST was lost: the client retransmits the same ISN. Same attempt, nothing new.
        assert_eq!(t.observe_syn(syn(NS, C, SRV, 100, S)), None);
        assert_eq!(t.stats().attempts, 1);
        // The server now listens and the client connects again from the same port.
        assert_eq!(t.observe_syn(syn(NS, C, SRV, 5_000, 2 * S)), None);
        assert_eq!(t.stats().attempts, 2);
        let r = t.observe_established(est(NS, C, SRV, 2 * S + 10)).unwrap();
        assert_eq!(
            (r.outcome, r.syn_count, r.rst_sent, r.drop),
            (Outcome::Accepted, 1, false, None)
        );
        assert_eq!(r.first_syn_ns, Some(2 * S));
    }

    #[test]
    fn syn_after_accepted_flow_of_unknown_isn_is_a_new_attempt() {
        let mut t = table(16);
        assert!(t.observe_established(est(NS, C, SRV, 0)).is_some());
        t.observe_syn(syn(NS, C, SRV, 1, S));
        assert_eq!(t.stats().attempts, 2);
        assert_eq!(t.expire(5 * S)[0].outcome, Outcome::Unanswered);
    }

    #[test]
    fn new_isn_while_pending_reports_the_superseded_attempt() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 0));
        t.observe_synack(synack(NS, C, SRV, 10));
        let old = t.observe_syn(syn(NS, C, SRV, 2, S)).unwrap();
        assert_eq!(
            (old.outcome, old.synack_sent, old.first_syn_ns),
            (Outcome::Unanswered, true, Some(0))
        );
        let new = t.observe_established(est(NS, C, SRV, S + 10)).unwrap();
        assert_eq!((new.outcome, new.synack_sent, new.syn_count), (Outcome::Accepted, false, 1));
        assert_eq!(t.stats().attempts, 2);
    }

    #[test]
    fn syn_drop_of_an_unknown_flow_creates_the_attempt() {
        // reach missed the SYN (no TC there, or the client's own namespace dropped it).
        let mut t = table(16);
        let r = t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, 5 * S)).unwrap();
        assert_eq!(
            (r.outcome, r.syn_count, r.first_syn_ns, r.ifindex),
            (Outcome::Dropped, 1, Some(5 * S), None)
        );
        // Its retransmission's drop is absorbed, not a second record.
        assert_eq!(t.observe_drop(dropped(NS, C, SRV, "NETFILTER_DROP", true, 6 * S)), None);
        assert_eq!(t.stats().attempts, 1);
    }

    #[test]
    fn established_of_an_unknown_flow_is_accepted_without_syn() {
        let mut t = table(16);
        let r = t.observe_established(est(NS, C, SRV, 7)).unwrap();
        assert_eq!(
            (r.outcome, r.syn_count, r.first_syn_ns, r.synack_sent),
            (Outcome::Accepted, 0, None, false)
        );
    }

    #[test]
    fn synack_of_an_unknown_flow_creates_a_pending_attempt() {
        let mut t = table(16);
        assert_eq!(t.observe_synack(synack(NS, C, SRV, 0)), None);
        // The SYN retransmission arrives: it joins and adopts the ISN.
        assert_eq!(t.observe_syn(syn(NS, C, SRV, 9, S)), None);
        let r = t.observe_established(est(NS, C, SRV, S + 1)).unwrap();
        assert_eq!((r.outcome, r.syn_count, r.synack_sent), (Outcome::Accepted, 1, true));
        assert_eq!(t.stats().attempts, 1);
    }

    #[test]
    fn rst_and_non_syn_drops_of_unknown_flows_are_only_counted() {
        let mut t = table(16);
        assert_eq!(t.observe_rst(rst(NS, C, SRV, 0)), None);
        assert_eq!(t.observe_drop(dropped(NS, C, SRV, "TCP_OLD_DATA", false, 1)), None);
        assert!(t.is_empty());
        assert!(t.expire(u64::MAX).is_empty());
        let s = t.stats();
        assert_eq!((s.unmatched, s.attempts), (2, 0));
    }

    #[test]
    fn late_contradicting_evidence_is_counted_once_not_reported() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 0));
        t.observe_synack(synack(NS, C, SRV, 10));
        assert_eq!(t.expire(3 * S)[0].outcome, Outcome::Unanswered);
        assert_eq!(t.observe_established(est(NS, C, SRV, 3 * S + 1)), None);
        assert_eq!(t.observe_established(est(NS, C, SRV, 3 * S + 2)), None);
        assert_eq!(t.stats().late, 1);
        assert!(t.expire(60 * S).is_empty());
    }

    #[test]
    fn drain_reports_open_attempts_in_start_order() {
        let mut t = table(16);
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, 0));
        t.observe_syn(syn(NS, "10.0.0.2:2", SRV, 1, 1));
        t.observe_rst(rst(NS, "10.0.0.2:2", SRV, 2));
        t.observe_syn(syn(NS, "10.0.0.2:3", SRV, 1, 3));
        t.observe_established(est(NS, "10.0.0.2:3", SRV, 4));
        let rs: Vec<(u16, Outcome)> =
            t.drain().iter().map(|r| (r.client.port(), r.outcome)).collect();
        assert_eq!(rs, [(1, Outcome::Pending), (2, Outcome::Reset)]);
        assert!(t.is_empty());
        t.check_invariants();
    }

    #[test]
    fn observe_dispatches_every_kind() {
        let mut t = table(16);
        assert_eq!(t.observe(Observation::Syn(syn(NS, C, SRV, 1, 0))), None);
        assert_eq!(t.observe(Observation::SynAck(synack(NS, C, SRV, 1))), None);
        let r = t.observe(Observation::Established(est(NS, C, SRV, 2))).unwrap();
        assert_eq!(r.outcome, Outcome::Accepted);
        assert_eq!(t.observe(Observation::Rst(rst(NS, C, SRV, 3))), None);
        assert_eq!(t.observe(Observation::Drop(dropped(NS, C, SRV, "X", false, 4))), None);
        assert_eq!(t.stats().late, 0, "an abort after the handshake does not contradict it");
    }

    #[test]
    fn zero_capacity_still_holds_one_flow() {
        let mut t = table(0);
        t.observe_syn(syn(NS, "10.0.0.2:1", SRV, 1, 0));
        t.observe_syn(syn(NS, "10.0.0.2:2", SRV, 1, 0));
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().evicted_pending, 1);
    }

    #[test]
    fn out_of_order_timestamps_keep_the_extremes() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, 5 * MS));
        t.observe_syn(syn(NS, C, SRV, 1, 4 * MS));
        let r = t.observe_established(est(NS, C, SRV, 6 * MS)).unwrap();
        assert_eq!(
            (r.first_syn_ns, r.last_syn_ns, r.first_event_ns),
            (Some(4 * MS), Some(5 * MS), 4 * MS)
        );
        assert_eq!(r.duration_ms, 2.0);
    }

    /// 100k observations over 8000 flow keys through a 1024-flow table: stays within
    /// capacity, the indexes stay consistent, and every attempt is accounted for exactly once.
    #[test]
    fn stress_stays_bounded_and_accounts_for_every_attempt() {
        const CAP: usize = 1024;
        let mut t = table(CAP);
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            // xorshift64: deterministic, no dependency.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut reported = 0u64;
        let mut now = 0u64;
        for i in 0..100_000u64 {
            now += 50_000; // 20k observations per second
            let r = next();
            // 8000 keys over 1024 slots: flows both complete and get evicted.
            let client = format!("10.0.0.{}:{}", 2 + (r >> 8) % 2, 1024 + (r >> 32) % 2000);
            let netns = 1 + (r >> 48) % 2;
            let out = match r % 10 {
                0..=3 => t.observe_syn(syn(netns, &client, SRV, (r >> 62) as u32, now)),
                4 => t.observe_synack(synack(netns, &client, SRV, now)),
                5 => t.observe_rst(rst(netns, &client, SRV, now)),
                6 | 7 => t.observe_drop(dropped(
                    netns,
                    &client,
                    SRV,
                    "NETFILTER_DROP",
                    r & 0x100 != 0,
                    now,
                )),
                _ => t.observe_established(est(netns, &client, SRV, now)),
            };
            reported += u64::from(out.is_some());
            assert!(t.len() <= CAP);
            if i % 1000 == 0 {
                reported += t.expire(now).len() as u64;
                t.check_invariants();
            }
        }
        let s = t.stats();
        let open = t.drain().len() as u64;
        assert_eq!(s.attempts, reported + open + s.evicted_pending);
        assert!(s.evicted_pending + s.evicted_settled > 0, "the workload must overflow the table");
        assert!(reported > 10_000);
        assert!(t.is_empty());
    }

    #[test]
    fn a_syn_read_after_its_own_handshake_joins_that_flow() {
        let mut t = FlowTable::new(16, Duration::from_secs(3));
        let key_est = Established {
            netns: 1,
            family: Family::V4,
            saddr: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            daddr: "10.0.0.1".parse().unwrap(),
            dport: 80,
            at_ns: 2_000,
        };
        let rec = t.observe_established(key_est).expect("established settles at once");
        assert_eq!(rec.outcome, Outcome::Accepted);
        let late_syn = SynSeen {
            netns: 1,
            ifindex: 2,
            family: Family::V4,
            saddr: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            daddr: "10.0.0.1".parse().unwrap(),
            dport: 80,
            seq: 77,
            at_ns: 1_000,
        };
        assert!(t.observe_syn(late_syn).is_none());
        assert!(t.drain().is_empty(), "no second attempt from the late SYN");
    }

    fn reply_dropped(
        netns: u64,
        client: &str,
        server: &str,
        reply: Reply,
        reason: &str,
        at_ns: u64,
    ) -> Dropped {
        let (c, s) = (sa(client), sa(server));
        Dropped {
            netns,
            family: fam(&c),
            saddr: s.ip(),
            sport: s.port(),
            daddr: c.ip(),
            dport: c.port(),
            reason: reason.into(),
            location: Some("nf_hook_slow+0x9c".into()),
            is_syn: false,
            reply: Some(reply),
            at_ns,
        }
    }

    #[test]
    fn reply_flags() {
        assert_eq!(Reply::from_flags("SA"), Some(Reply::SynAck));
        assert_eq!(Reply::from_flags("AR"), Some(Reply::Rst));
        assert_eq!(Reply::from_flags("R"), Some(Reply::Rst));
        assert_eq!(Reply::from_flags("S"), None);
        assert_eq!(Reply::from_flags("A"), None);
    }

    /// A SYN-ACK dropped by an output rule: never at TC egress, matched to the attempt it
    /// answers (reversed tuple), which ends `unanswered` with the drop as evidence.
    #[test]
    fn dropped_synack_is_kept_on_the_attempt_it_answers_both_families() {
        for (c, srv) in [(C, SRV), ("[fd00::2]:40000", "[fd00::1]:8080")] {
            let mut t = table(16);
            t.observe_syn(syn(NS, c, srv, 1, S));
            for at in [S + 10, 2 * S + 10] {
                let d = reply_dropped(NS, c, srv, Reply::SynAck, "NETFILTER_DROP", at);
                assert_eq!(t.observe_drop(d), None, "a reply drop does not settle the attempt");
            }
            let rs = t.expire(S + 3 * S);
            assert_eq!(rs.len(), 1, "{c}");
            let r = &rs[0];
            assert_eq!((r.client, r.server), (sa(c), sa(srv)));
            assert_eq!(
                (r.outcome, r.synack_sent, r.drop.as_ref()),
                (Outcome::Unanswered, false, None)
            );
            let rd = r.reply_drop.as_ref().expect("reply drop kept");
            assert_eq!(
                (rd.segment, rd.reason.as_str(), rd.location.as_deref(), rd.count),
                (Reply::SynAck, "NETFILTER_DROP", Some("nf_hook_slow+0x9c"), 2)
            );
            assert_eq!((t.stats().unmatched, t.stats().attempts), (0, 1));
            t.check_invariants();
        }
    }

    /// A closed port whose RST dies on the way out: the SYN's NO_SOCKET drop decides `dropped`
    /// and the RST's drop is evidence beside it.
    #[test]
    fn dropped_rst_of_a_closed_port_stays_dropped_with_the_reply_drop() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        let rst = reply_dropped(NS, C, SRV, Reply::Rst, "NETFILTER_DROP", S + 5);
        assert_eq!(t.observe_drop(rst), None);
        let r = t.observe_drop(dropped(NS, C, SRV, "NO_SOCKET", true, S + 6)).unwrap();
        assert_eq!((r.outcome, r.rst_sent), (Outcome::Dropped, false));
        assert_eq!(r.drop.as_ref().map(|d| d.reason.as_str()), Some("NO_SOCKET"));
        assert_eq!(r.reply_drop.as_ref().map(|d| d.segment), Some(Reply::Rst));
    }

    /// A reply drop whose attempt reach never saw creates nothing; without the `reply` marker
    /// the same drop would be a (counted) non-SYN drop too, never a flow of its own.
    #[test]
    fn reply_drop_of_an_unknown_flow_is_only_counted() {
        let mut t = table(16);
        let d = reply_dropped(NS, C, SRV, Reply::SynAck, "TC_EGRESS", S);
        assert_eq!(t.observe_drop(d), None);
        assert!(t.is_empty() && t.expire(100 * S).is_empty() && t.drain().is_empty());
        assert_eq!((t.stats().unmatched, t.stats().attempts), (1, 0));
        // Another namespace's attempt with the same tuple is not the one it answers.
        t.observe_syn(syn(NS + 1, C, SRV, 1, S));
        t.observe_drop(reply_dropped(NS, C, SRV, Reply::SynAck, "TC_EGRESS", S + 1));
        let r = &t.expire(5 * S)[0];
        assert_eq!(r.reply_drop, None);
        assert_eq!(t.stats().unmatched, 2);
    }

    /// A RST from the client (its side of a known attempt aborting) is a client→server segment:
    /// the reversed tuple is no attempt, so it is not taken as the server's reply.
    #[test]
    fn client_rst_drop_is_not_a_reply_drop() {
        let mut t = table(16);
        t.observe_syn(syn(NS, C, SRV, 1, S));
        let mut d = dropped(NS, C, SRV, "TCP_INVALID_SEQUENCE", false, S + 1);
        d.reply = Some(Reply::Rst);
        t.observe_drop(d);
        let r = &t.expire(5 * S)[0];
        assert_eq!(r.reply_drop, None);
        assert_eq!(r.drop.as_ref().map(|d| d.reason.as_str()), Some("TCP_INVALID_SEQUENCE"));
    }
}
