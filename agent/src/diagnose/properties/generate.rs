//! Generated [`Evidence`]: what the kernel, sock_diag, the flow table and the firewall could
//! report together, awkward corners included (see the module above).
use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use crate::{
    diagnose::{
        Evidence, FailedBind, Interface, NetfilterRule, OverflowEvidence, WslInfo,
        lookup::SkLookupState,
    },
    firewall::{
        attribute::Attribution,
        firewalld_chains::{Concept, Target},
        predict::{Decision, Prediction, ZoneBy},
    },
    kernel::wsl::{Networking, Wsl2},
    model::{
        flows::{DropEvidence, Family, FlowRecord, Outcome, Reply, ReplyDropEvidence},
        listener_view::ListenerView,
    },
    netns::{
        owners::Owner,
        port_holders::PortHolder,
        snapshot::Listener,
        sock_diag::{Family as SockFamily, Proto, SockEntry},
    },
    probes::sock_event::NetnsRef,
};

pub(super) const PORT: u16 = 8080;
pub(super) const OTHER_PORT: u16 = 8081;

/// The namespaces: the SYN's is `host` or `lab`; `netns:[3]` has no name.
pub(super) const HOST: u64 = 1;
pub(super) const LAB: u64 = 2;
pub(super) const UNNAMED: u64 = 3;

pub(super) fn ns(inode: u64) -> NetnsRef {
    let name = match inode {
        HOST => "host",
        LAB => "lab",
        _ => "",
    };
    NetnsRef { inode, name: name.into() }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address in the generator's tables")
}

/// Interfaces of the SYN's namespace: lo, eth0 (two IPv4, a ULA and a link-local IPv6), eth1.
pub(super) fn interfaces(eth1: bool) -> Vec<Interface> {
    let ips = |a: &[&str]| a.iter().map(|s| ip(s)).collect();
    let mut v = vec![
        Interface { ifindex: 1, name: "lo".into(), addrs: ips(&["127.0.0.1", "::1"]) },
        Interface {
            ifindex: 2,
            name: "eth0".into(),
            addrs: ips(&["10.0.0.5", "10.0.0.6", "fd00::5", "fe80::5"]),
        },
    ];
    if eth1 {
        v.push(Interface {
            ifindex: 3,
            name: "eth1".into(),
            addrs: ips(&["192.168.1.5", "fd01::5"]),
        });
    }
    v
}

/// What a listener binds: wildcards, loopback (two IPv4 ones), the namespace's addresses, one
/// no interface has (another namespace's, or a freebind), v4-mapped ones, the link-local.
pub(super) const BIND_V4: &[&str] =
    &["0.0.0.0", "127.0.0.1", "127.0.0.2", "10.0.0.5", "10.0.0.6", "192.168.1.5", "10.9.9.9"];
pub(super) const BIND_V6: &[&str] = &[
    "::",
    "::1",
    "fd00::5",
    "fd01::5",
    "fe80::5",
    "fd09::9",
    "::ffff:10.0.0.5",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.0",
];

/// Where a client's SYN goes: loopback, the namespace's addresses, and one it does not have
/// (what a DNAT rule would rewrite).
pub(super) const DEST: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "10.0.0.5",
    "10.0.0.6",
    "192.168.1.5",
    "fd00::5",
    "fd01::5",
    "10.9.9.9",
    "fd09::9",
];

/// Interfaces a SYN from outside arrives on (eth1 may not exist: a name the list lacks).
pub(super) const ARRIVAL: &[(&str, u32)] = &[("eth0", 2), ("eth1", 3)];

/// SO_BINDTODEVICE choices: none, lo, eth0, eth1, a device the list does not show.
pub(super) const DEVICES: &[Option<u32>] = &[None, Some(1), Some(2), Some(3), Some(9)];

pub(super) const REASONS: &[&str] = &[
    "NO_SOCKET",
    "SKB_DROP_REASON_NO_SOCKET",
    "NETFILTER_DROP",
    "TCP_CSUM",
    "TCP_INVALID_SEQUENCE",
    "SOCKET_FILTER",
    "IP_RPFILTER",
    "OTHERHOST",
    "NOT_SPECIFIED",
];

/// Why a server's SYN-ACK or RST dies on its way out: an output rule, a TC egress filter or
/// qdisc, or a reason the kernel does not name.
pub(super) const REPLY_REASONS: &[&str] =
    &["NETFILTER_DROP", "TC_EGRESS", "QDISC_DROP", "NOT_SPECIFIED"];

#[derive(Debug, Clone)]
pub(super) struct ListenerSpec {
    /// 0, 1: the SYN's namespace; 2: the other named one; 3: the unnamed one.
    pub(super) ns: u8,
    pub(super) udp: bool,
    pub(super) other_port: bool,
    pub(super) v6: bool,
    pub(super) addr: usize,
    /// For `[::]`: IPV6_V6ONLY; ignored where the kernel decides it.
    pub(super) v6only: bool,
    pub(super) dev: usize,
    pub(super) owner: Option<u32>,
    /// Also listen with a second socket of the same binding (SO_REUSEPORT).
    pub(super) twin: bool,
}

pub(super) fn listener_spec() -> impl Strategy<Value = ListenerSpec> {
    (
        0..4u8,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        any::<bool>(),
        // The wildcard more often: a listener that takes the SYN is what lets the later hops
        // (overflow, a dropped reply, reachable) be reached at all.
        prop_oneof![1 => Just(0), 2 => 0..BIND_V6.len()],
        any::<bool>(),
        prop::sample::select(vec![0usize, 0, 0, 1, 2, 3, 4]),
        prop::option::weighted(0.85, 100..104u32),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ns, udp, other_port, v6, addr, v6only, dev, owner, twin)| ListenerSpec {
            ns,
            udp,
            other_port,
            v6,
            addr,
            v6only,
            dev,
            owner,
            twin,
        })
}

#[derive(Debug, Clone)]
pub(super) struct FlowSpec {
    /// 0 accepted, 1 reset, 2 dropped, 3 unanswered, 4 pending.
    pub(super) outcome: u8,
    pub(super) dest: usize,
    /// From this host (over lo) or from outside.
    pub(super) local: bool,
    pub(super) arrival: usize,
    /// The attempt's ingress interface known (else reach saw no SYN at ingress).
    pub(super) ifindex_known: bool,
    pub(super) drop: Option<usize>,
    pub(super) synack: bool,
    pub(super) reply_drop: Option<usize>,
    /// The user named the address too: none, the one the SYN went to, or another (a DNAT
    /// rule rewrote it, or the client resolved the name differently).
    pub(super) named: u8,
}

pub(super) fn flow_spec() -> impl Strategy<Value = FlowSpec> {
    (
        0..5u8,
        0..DEST.len(),
        any::<bool>(),
        0..ARRIVAL.len(),
        prop::bool::weighted(0.9),
        prop::option::weighted(0.35, 0..REASONS.len()),
        any::<bool>(),
        prop::option::weighted(0.4, 0..REPLY_REASONS.len()),
        0..3u8,
    )
        .prop_map(
            |(outcome, dest, local, arrival, ifindex_known, drop, synack, reply_drop, named)| {
                FlowSpec {
                    outcome,
                    dest,
                    local,
                    arrival,
                    ifindex_known,
                    drop,
                    synack,
                    reply_drop,
                    named,
                }
            },
        )
}

/// A firewall decision: 0 accept, 1 drop, 2 reject.
pub(super) fn action() -> impl Strategy<Value = u8> {
    0..3u8
}

#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) syn_ns: u64,
    /// The namespace named in the evidence (else only the flow's tells).
    pub(super) netns_known: bool,
    pub(super) listeners: Vec<ListenerSpec>,
    /// Watched (else a prediction, `--timeout 0`).
    pub(super) watched: bool,
    pub(super) syn_seen: bool,
    pub(super) flow: Option<FlowSpec>,
    /// Prediction mode: the address named (an index into DEST) and the interface.
    pub(super) addr: Option<usize>,
    pub(super) iface: Option<usize>,
    pub(super) interfaces: Option<bool>,
    pub(super) attribution: Option<(u8, bool)>,
    pub(super) netfilter: Option<(u8, Option<u64>, bool, bool)>,
    pub(super) prediction: Option<(u8, bool)>,
    pub(super) overflow: Option<(Option<usize>, bool, bool)>,
    pub(super) failed_binds: Vec<(u8, usize)>,
    pub(super) holders: Vec<(u8, bool)>,
    pub(super) wsl: Option<(bool, bool)>,
    pub(super) sk_lookup: u8,
    /// The rule that decided the server's reply: action, firewalld's own table or not.
    pub(super) reply_rule: Option<(u8, bool)>,
    /// The watched namespace went away while reach waited.
    pub(super) netns_gone: bool,
    /// SYN events the kernel had but reach did not get.
    pub(super) unseen_syns: u64,
}

pub(super) fn spec() -> impl Strategy<Value = Spec> {
    let world = (
        prop::sample::select(vec![HOST, LAB]),
        prop::bool::weighted(0.85),
        prop::collection::vec(listener_spec(), 0..5),
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.7, flow_spec()),
        prop::option::of(0..DEST.len()),
        prop::option::weighted(0.75, 0..3usize),
        prop::option::weighted(0.75, any::<bool>()),
    );
    let rest = (
        prop::option::weighted(0.3, (action(), any::<bool>())),
        prop::option::weighted(
            0.2,
            (action(), prop::option::of(1..200u64), any::<bool>(), any::<bool>()),
        ),
        prop::option::weighted(0.4, (action(), any::<bool>())),
        prop::option::weighted(0.2, (prop::option::of(0..5usize), any::<bool>(), any::<bool>())),
        prop::collection::vec((0..4u8, 0..4usize), 0..3),
        prop::collection::vec((0..3u8, any::<bool>()), 0..3),
        prop::option::weighted(0.1, (any::<bool>(), any::<bool>())),
        0..4u8,
        prop::option::weighted(0.25, (action(), any::<bool>())),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.25, 1..50u64),
    );
    (world, rest).prop_map(
        |(
            (syn_ns, netns_known, listeners, watched, syn_seen, flow, addr, iface, interfaces),
            (
                attribution,
                netfilter,
                prediction,
                overflow,
                failed_binds,
                holders,
                wsl,
                sk_lookup,
                reply_rule,
                netns_gone,
                unseen_syns,
            ),
        )| Spec {
            syn_ns,
            netns_known,
            listeners,
            watched,
            syn_seen,
            flow,
            addr,
            iface,
            interfaces,
            attribution,
            netfilter,
            prediction,
            overflow,
            failed_binds,
            holders,
            wsl,
            sk_lookup,
            reply_rule,
            netns_gone,
            unseen_syns: unseen_syns.unwrap_or(0),
        },
    )
}

pub(super) fn evidence() -> impl Strategy<Value = Evidence> {
    spec().prop_map(|s| build(&s))
}

pub(super) fn view(s: &ListenerSpec, syn_ns: u64, cookie: u64) -> ListenerView {
    let netns = match s.ns {
        0 | 1 => syn_ns,
        2 => HOST + LAB - syn_ns,
        _ => UNNAMED,
    };
    let addr = if s.v6 {
        ip(BIND_V6[s.addr % BIND_V6.len()])
    } else {
        ip(BIND_V4[s.addr % BIND_V4.len()])
    };
    // The kernel reports v6only for every AF_INET6 socket; binding one IPv6 address sets it,
    // a v4-mapped one requires it off (EINVAL otherwise).
    let v6only = match addr {
        IpAddr::V4(_) => None,
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Some(false),
        IpAddr::V6(a) if !a.is_unspecified() => Some(true),
        IpAddr::V6(_) => Some(s.v6only),
    };
    // Built as `reach why` builds it, from a sock_diag entry and its owners.
    let socket = SockEntry {
        family: if s.v6 { SockFamily::V6 } else { SockFamily::V4 },
        proto: if s.udp { Proto::Udp } else { Proto::Tcp },
        addr,
        port: if s.other_port { OTHER_PORT } else { PORT },
        bound_dev_if: DEVICES[s.dev % DEVICES.len()].unwrap_or(0),
        uid: 0,
        inode: cookie,
        cookie,
        v6only,
        backlog: (!s.udp).then_some(4),
        accept_queue: (!s.udp).then_some(u32::from(s.twin)),
    };
    let owners = s.owner.map(|pid| Owner { pid, comm: format!("srv{pid}") }).into_iter().collect();
    ListenerView::new(ns(netns), &Listener { socket, owners })
}

/// An address of `family` of the client: on this host (over lo) or outside.
pub(super) fn client_addr(dest: IpAddr, local: bool) -> IpAddr {
    match (dest, local) {
        (_, true) => dest,
        (IpAddr::V4(_), false) => ip("10.0.0.9"),
        (IpAddr::V6(_), false) => ip("fd00::9"),
    }
}

pub(super) fn flow_record(f: &FlowSpec, syn_ns: u64) -> (FlowRecord, Option<String>) {
    let dest = ip(DEST[f.dest]);
    // A loopback destination only ever comes over lo.
    let local = f.local || dest.is_loopback();
    let (iface, ifindex) = if local { ("lo", 1) } else { ARRIVAL[f.arrival] };
    let outcome = [
        Outcome::Accepted,
        Outcome::Reset,
        Outcome::Dropped,
        Outcome::Unanswered,
        Outcome::Pending,
    ][usize::from(f.outcome)];
    let drop_of = |i: usize, syn: bool| DropEvidence {
        reason: REASONS[i].into(),
        location: None,
        count: 1,
        syn,
    };
    // What the flow table can report for each outcome (model/flows.rs `decided`).
    let (synack, drop) = match outcome {
        Outcome::Accepted => (true, None),
        Outcome::Reset => (false, f.drop.map(|i| drop_of(i, true))),
        Outcome::Dropped => (false, Some(drop_of(f.drop.unwrap_or(0), true))),
        // A SYN dropped without a SYN-ACK would have settled it as dropped; with one sent, a
        // retransmitted SYN's drop (or the client's ACK's) leaves it open.
        Outcome::Unanswered | Outcome::Pending => {
            (f.synack || f.drop.is_some(), f.drop.filter(|_| f.synack).map(|i| drop_of(i, false)))
        }
    };
    let server = SocketAddr::new(dest, PORT);
    let record = FlowRecord {
        kind: "flow",
        netns: syn_ns,
        family: if dest.is_ipv6() { Family::V6 } else { Family::V4 },
        client: SocketAddr::new(client_addr(dest, local), 40000),
        server,
        outcome,
        syn_count: 1,
        first_syn_ns: Some(1),
        last_syn_ns: Some(1),
        first_event_ns: 1,
        last_event_ns: 2,
        synack_sent: synack,
        rst_sent: outcome == Outcome::Reset,
        ifindex: f.ifindex_known.then_some(ifindex),
        drop,
        reply_drop: f
            .reply_drop
            // Never for an accepted attempt: the client got the SYN-ACK.
            .filter(|_| outcome != Outcome::Accepted)
            .map(|i| ReplyDropEvidence {
                segment: if matches!(outcome, Outcome::Dropped | Outcome::Reset) {
                    Reply::Rst
                } else {
                    Reply::SynAck
                },
                reason: REPLY_REASONS[i].into(),
                location: None,
                count: 1,
            }),
        duration_ms: 1.0,
    };
    (record, f.ifindex_known.then(|| iface.to_string()))
}

pub(super) fn action_word(a: u8) -> &'static str {
    ["accept", "drop", "reject with icmpx admin-prohibited"][usize::from(a)]
}

// Evidence fields added later keep their defaults until the generator learns them.
#[allow(clippy::needless_update)]
pub(super) fn build(s: &Spec) -> Evidence {
    let mut cookie = 0;
    let mut listeners = Vec::new();
    for l in &s.listeners {
        for _ in 0..=usize::from(l.twin) {
            cookie += 1;
            let mut v = view(l, s.syn_ns, cookie);
            if cookie > 1 && l.twin {
                v.pid = v.pid.map(|p| p + 10);
                v.pids = v.pid.into_iter().collect();
            }
            listeners.push(v);
        }
    }
    let interfaces = s.interfaces.map(interfaces).unwrap_or_default();
    let watched = s.watched;
    let (flow, flow_iface) = match s.flow.as_ref().filter(|_| watched) {
        Some(f) => {
            let (r, i) = flow_record(f, s.syn_ns);
            (Some(r), i)
        }
        None => (None, None),
    };
    let addr = match &flow {
        Some(fl) => match s.flow.as_ref().map_or(0, |f| f.named) {
            0 => None,
            1 => Some(fl.server.ip()),
            _ => s.addr.map(|i| ip(DEST[i])).or(Some(fl.server.ip())),
        },
        None => s.addr.map(|i| ip(DEST[i])),
    };
    let iface = match (&flow, s.iface) {
        (Some(_), _) => flow_iface,
        // A prediction for a loopback address comes over lo (`arrival_iface`).
        (None, _) if addr.is_some_and(|a| a.is_loopback()) => Some("lo".into()),
        (None, Some(0)) => Some("lo".into()),
        (None, Some(i)) => Some(ARRIVAL[(i - 1) % ARRIVAL.len()].0.into()),
        (None, None) => None,
    };
    let attribution = s.attribution.filter(|_| watched).map(|(a, with_fix)| {
        let act = action_word(a);
        Attribution {
            zone: Some("public".into()),
            action: act.into(),
            concept: Concept::ZoneTarget { zone: "public".into(), target: Target::Default },
            rule: act.to_string(),
            summary: format!("zone public, target default → {act}"),
            fix: if a == 0 || !with_fix {
                Vec::new()
            } else {
                vec![format!("firewall-cmd --zone=public --add-port={PORT}/tcp")]
            },
        }
    });
    let e_client = flow.as_ref().map(|f| f.client.ip());
    let netfilter = s.netfilter.filter(|_| watched).map(|(a, handle, docker, reply)| {
        let (family, table, chain) =
            if docker { ("ip", "filter", "DOCKER-USER") } else { ("inet", "filter", "input") };
        let action = if a == 2 { "reject" } else { action_word(a) };
        NetfilterRule {
            family: family.into(),
            table: table.into(),
            chain: chain.into(),
            handle,
            rule: handle.map(|_| format!("tcp dport {PORT} {action}")),
            action: action.into(),
            reply,
            client: e_client,
            ..NetfilterRule::default()
        }
    });
    // A reply is traced only for an attempt that was seen.
    let reply_netfilter =
        s.reply_rule.filter(|_| flow.is_some()).map(|(a, firewalld)| NetfilterRule {
            family: "inet".into(),
            table: if firewalld { "firewalld" } else { "filter" }.into(),
            chain: "output".into(),
            handle: Some(40),
            rule: Some(format!("tcp sport {PORT} {}", action_word(a))),
            action: if a == 2 { "reject" } else { action_word(a) }.into(),
            reply: true,
            ..NetfilterRule::default()
        });
    let prediction = s.prediction.map(|(a, by_iface)| {
        let decision = match a {
            0 => Decision::Accept { by: format!("port {PORT}/tcp") },
            1 => Decision::Drop { by: "target DROP".into() },
            _ => Decision::Reject {
                by: "target default".into(),
                with: "icmpx admin-prohibited".into(),
            },
        };
        Prediction {
            zone: "public".into(),
            zone_by: if by_iface { ZoneBy::Interface } else { ZoneBy::Default },
            decision,
            reason: format!("zone public, {}", action_word(a)),
            fix: if a == 0 {
                Vec::new()
            } else {
                vec![format!("firewall-cmd --zone=public --add-port={PORT}/tcp")]
            },
        }
    });
    let overflow = s.overflow.map(|(full, counters, here)| OverflowEvidence {
        netns: ns(if here { s.syn_ns } else { UNNAMED }),
        listen_overflows: u64::from(counters) * 3,
        listen_drops: u64::from(counters) * 3,
        syn_queue_full_drops: 0,
        full_listeners: full
            .and_then(|i| listeners.get(i))
            .filter(|l| l.proto == "tcp")
            .map(|l| ListenerView { accept_queue: l.backlog.map(|b| b + 1), ..l.clone() })
            .into_iter()
            .collect(),
    });
    let failed_binds = s
        .failed_binds
        .iter()
        .map(|&(errno, a)| FailedBind {
            netns: ns(s.syn_ns),
            pid: 200 + u32::from(errno),
            comm: "api".into(),
            addr: Some(BIND_V4[a % BIND_V4.len()].into()),
            errno: ["EADDRINUSE", "EACCES", "EADDRNOTAVAIL", "EINVAL"][usize::from(errno)].into(),
        })
        .collect();
    let port_holders = s
        .holders
        .iter()
        .map(|&(state, owned)| PortHolder {
            family: crate::netns::sock_diag::Family::V4,
            local: format!("0.0.0.0:{PORT}"),
            state: ["bound", "time_wait", "established"][usize::from(state)],
            peer: (state != 0).then(|| "10.0.0.2:5000".into()),
            owners: (owned && state != 1)
                .then(|| Owner { pid: 300, comm: "old".into() })
                .into_iter()
                .collect(),
            inode: 0,
        })
        .collect();
    let wsl = s.wsl.map(|(mirrored, eth0)| WslInfo {
        wsl2: Wsl2 {
            networking: if mirrored { Networking::Mirrored } else { Networking::Nat },
            evidence: "kernel release".into(),
        },
        eth0_addr: eth0.then(|| ip("172.20.0.2")),
    });
    let sk_lookup = match s.sk_lookup {
        0 => None,
        1 => Some(SkLookupState::Attached(Vec::new())),
        2 => Some(SkLookupState::Attached(vec![7])),
        _ => Some(SkLookupState::Unknown("Operation not permitted".into())),
    };
    Evidence {
        port: PORT,
        addr,
        netns: (s.netns_known || flow.is_none()).then(|| ns(s.syn_ns)),
        listeners,
        failed_binds,
        port_holders,
        watched,
        watched_ifaces: if watched { vec!["lo".into(), "eth0".into()] } else { Vec::new() },
        syn_seen: watched && (flow.is_some() || s.syn_seen),
        iface,
        flow,
        attribution,
        netfilter,
        prediction,
        overflow,
        wsl,
        interfaces,
        sk_lookup,
        reply_netfilter,
        netns_gone: watched && s.netns_gone,
        unseen_syns: if watched { s.unseen_syns } else { 0 },
        ..Evidence::default()
    }
}
