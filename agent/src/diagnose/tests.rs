//! One test per verdict from hand-built evidence, the ordering rules, WSL2 text, serde shape.
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::{
    firewall::{
        firewalld_chains::{Concept, Target},
        predict::{Decision, ZoneBy},
    },
    kernel::wsl::Networking,
    model::flows::{DropEvidence, Family, Outcome},
    netns::port_holders::PortHolder,
};

const HOST: u64 = 1;
const LAB: u64 = 2;

fn ns(inode: u64) -> NetnsRef {
    NetnsRef { inode, name: if inode == HOST { "host".into() } else { "lab".into() } }
}

fn listener(netns: u64, addr: &str, port: u16) -> ListenerView {
    ListenerView {
        kind: "listener",
        netns: ns(netns),
        pid: Some(42),
        pids: vec![42],
        comm: Some("server".into()),
        family: if addr.contains(':') { "ipv6" } else { "ipv4" },
        proto: "tcp",
        addr: addr.into(),
        port,
        backlog: Some(4),
        accept_queue: Some(0),
        v6only: None,
        loopback_only: addr.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()),
        bound_dev_if: None,
        cookie: 7,
    }
}

fn flow(outcome: Outcome, drop: Option<&str>) -> FlowRecord {
    FlowRecord {
        kind: "flow",
        netns: HOST,
        family: Family::V4,
        client: "10.0.0.9:40000".parse::<SocketAddr>().expect("addr"),
        server: "10.0.0.5:8080".parse::<SocketAddr>().expect("addr"),
        outcome,
        syn_count: 1,
        first_syn_ns: Some(1),
        last_syn_ns: Some(1),
        first_event_ns: 1,
        last_event_ns: 2,
        synack_sent: outcome == Outcome::Accepted,
        rst_sent: outcome == Outcome::Reset,
        ifindex: Some(2),
        drop: drop.map(|r| DropEvidence { reason: r.into(), location: None, count: 1, syn: true }),
        duration_ms: 0.0,
    }
}

/// Traffic watched, the client's SYN arrived on eth0 in the host namespace.
fn seen(outcome: Outcome, drop: Option<&str>) -> Evidence {
    Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        watched: true,
        syn_seen: true,
        iface: Some("eth0".into()),
        flow: Some(flow(outcome, drop)),
        ..Evidence::default()
    }
}

fn attribution(action: &str) -> Attribution {
    Attribution {
        zone: Some("public".into()),
        action: action.into(),
        concept: Concept::ZoneTarget { zone: "public".into(), target: Target::Default },
        rule: format!("{action} with icmpx admin-prohibited"),
        summary: format!(
            "zone public, target default → {action}; port 8080/tcp is not allowed in zone public"
        ),
        fix: vec!["firewall-cmd --zone=public --add-port=8080/tcp".into()],
    }
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

fn failing_hop(d: &Diagnosis) -> Option<&str> {
    d.path.iter().find(|h| !h.ok).map(|h| h.name.as_str())
}

#[test]
fn accepted_is_reachable_with_every_hop_ok() {
    let mut e = seen(Outcome::Accepted, None);
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::Reachable);
    assert!(d.fix.is_empty());
    assert_eq!(d.path.len(), 4);
    assert!(d.path.iter().all(|h| h.ok));
    assert_eq!(d.path[1].name, "interface eth0");
}

#[test]
fn loopback_bind_from_outside() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind);
    assert!(has(&d.evidence, "listening on loopback only: pid 42 (server) on 127.0.0.1:8080"));
    assert!(has(&d.evidence, "came in on eth0"));
    assert!(has(&d.fix, "0.0.0.0:8080"));
    assert!(has(
        &d.fix,
        "net.Listen(\"tcp\", \":8080\") instead of net.Listen(\"tcp\", \"127.0.0.1:8080\")"
    ));
    assert_eq!(failing_hop(&d), Some("socket"));
}

#[test]
fn listener_in_other_netns() {
    let mut e = seen(Outcome::Reset, Some("SKB_DROP_REASON_NO_SOCKET"));
    e.listeners = vec![listener(LAB, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::ListenerInOtherNetns);
    assert!(has(&d.evidence, "another namespace: pid 42 (server) on 0.0.0.0:8080 in netns lab"));
    assert!(has(&d.fix, "ip netns exec lab"));
    assert!(has(&d.fix, "start the server in netns host"));
}

#[test]
fn no_listener_names_the_failed_bind() {
    let mut e = seen(Outcome::Reset, None);
    e.failed_binds = vec![FailedBind {
        netns: ns(HOST),
        pid: 77,
        comm: "api".into(),
        addr: Some("0.0.0.0".into()),
        errno: "EADDRINUSE".into(),
    }];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(has(&d.evidence, "nothing listens on port 8080"));
    assert!(has(&d.evidence, "pid 77 (api) failed to bind 0.0.0.0:8080 in netns host: EADDRINUSE"));
    assert!(has(&d.fix, "start the server listening on port 8080"));
    assert!(has(&d.fix, "another socket holds port 8080"));
}

fn holder(state: &'static str, peer: Option<&str>, owner: Option<(u32, &str)>) -> PortHolder {
    PortHolder {
        family: crate::netns::sock_diag::Family::V4,
        local: "0.0.0.0:8080".into(),
        state,
        peer: peer.map(str::to_string),
        owners: owner
            .map(|(pid, comm)| crate::netns::owners::Owner { pid, comm: comm.into() })
            .into_iter()
            .collect(),
        inode: 0,
    }
}

fn in_use_by(pid: u32) -> FailedBind {
    FailedBind {
        netns: ns(HOST),
        pid,
        comm: "api".into(),
        addr: Some("0.0.0.0".into()),
        errno: "EADDRINUSE".into(),
    }
}

#[test]
fn eaddrinuse_names_the_socket_holding_the_port() {
    let mut e = seen(Outcome::Reset, None);
    e.failed_binds = vec![in_use_by(77)];
    e.port_holders = vec![holder("bound", None, Some((55, "old-api")))];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(has(
        &d.evidence,
        "port 8080 in netns host is held without a listener: pid 55 (old-api) tcp 0.0.0.0:8080 bound, not listening"
    ));
    assert!(has(&d.fix, "pid 77 (api) failed with EADDRINUSE: pid 55 (old-api) holds port 8080"));
    assert!(!has(&d.fix, "ss -tanp"), "{:#?}", d.fix);
}

#[test]
fn eaddrinuse_from_time_wait_suggests_so_reuseaddr() {
    let mut e = seen(Outcome::Reset, None);
    e.failed_binds = vec![in_use_by(77)];
    e.port_holders = vec![
        holder("time_wait", Some("10.0.0.2:5000"), None),
        holder("time_wait", Some("10.0.0.2:5001"), None),
    ];
    let d = diagnose(&e);
    assert!(has(&d.evidence, "held by 2 connection(s) in TIME_WAIT"), "{:#?}", d.evidence);
    assert!(has(&d.fix, "set SO_REUSEADDR on the server's socket before bind()"));
}

#[test]
fn bound_socket_without_a_seen_failure_is_named_but_connections_are_not() {
    let mut e = seen(Outcome::Reset, None);
    e.port_holders = vec![
        holder("established", Some("10.0.0.9:443"), Some((9, "curl"))),
        holder("bound", None, Some((55, "old-api"))),
    ];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(has(&d.evidence, "pid 55 (old-api) tcp 0.0.0.0:8080 bound, not listening"));
    assert!(!has(&d.evidence, "curl"), "{:#?}", d.evidence);
    assert!(has(&d.fix, "pid 55 (old-api) holds port 8080 without listening"));
    // Only connections: nothing to say about them.
    e.port_holders.pop();
    let d = diagnose(&e);
    assert!(!has(&d.evidence, "held"), "{:#?}", d.evidence);
    assert_eq!(d.fix, vec!["start the server listening on port 8080".to_string()]);
}

#[test]
fn firewalld_drop_and_reject_by_action() {
    let mut e = seen(Outcome::Dropped, Some("NETFILTER_DROP"));
    e.attribution = Some(attribution("drop"));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallDrop);
    assert!(has(&d.evidence, "firewalld: zone public, target default"));
    assert_eq!(d.fix, vec!["firewall-cmd --zone=public --add-port=8080/tcp".to_string()]);
    assert_eq!(failing_hop(&d), Some("firewall"));
    assert_eq!(d.path.len(), 3, "hops after the failing one are not listed");

    e.attribution = Some(attribution("reject icmpx admin-prohibited"));
    assert_eq!(diagnose(&e).verdict, Verdict::FirewallReject);
}

#[test]
fn other_netfilter_rule_is_named() {
    let mut e = seen(Outcome::Dropped, Some("NETFILTER_DROP"));
    e.netfilter = Some(NetfilterRule {
        family: "ip".into(),
        table: "filter".into(),
        chain: "INPUT".into(),
        handle: Some(12),
        rule: Some("tcp dport 8080 drop".into()),
        action: "drop".into(),
    });
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::OtherNetfilterDrop);
    assert!(has(
        &d.evidence,
        "table ip filter, chain INPUT (handle 12) `tcp dport 8080 drop` → drop"
    ));
    assert!(has(&d.fix, "nft -a list chain ip filter INPUT"));
    assert!(has(&d.fix, "handle 12"));
}

#[test]
fn netfilter_drop_without_trace_is_other_netfilter() {
    let d = diagnose(&seen(Outcome::Dropped, Some("NETFILTER_DROP")));
    assert_eq!(d.verdict, Verdict::OtherNetfilterDrop);
    assert!(has(&d.fix, "nft -a list ruleset"));
}

#[test]
fn listen_overflow_names_the_listener_and_counters() {
    let mut e = seen(Outcome::Unanswered, None);
    let mut full = listener(HOST, "0.0.0.0", 8080);
    full.accept_queue = Some(5);
    e.listeners = vec![full.clone()];
    e.overflow = Some(OverflowEvidence {
        netns: ns(HOST),
        listen_overflows: 3,
        listen_drops: 3,
        syn_queue_full_drops: 0,
        full_listeners: vec![full],
    });
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::ListenOverflow);
    assert!(has(&d.evidence, "accept queue full: pid 42 (server) on 0.0.0.0:8080"));
    assert!(has(&d.evidence, "queue 5 of backlog 4"));
    assert!(has(&d.evidence, "ListenOverflows +3, ListenDrops +3"));
    assert!(has(&d.fix, "somaxconn"));
    assert_eq!(failing_hop(&d), Some("socket"));
}

#[test]
fn no_syn_seen_points_before_this_host() {
    let e = Evidence {
        port: 8080,
        watched: true,
        listeners: vec![listener(HOST, "127.0.0.1", 8080)],
        ..Evidence::default()
    };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoSynSeen);
    assert!(has(&d.evidence, "no SYN to port 8080 was seen"));
    assert!(has(&d.fix, "never reached this host"));
    assert_eq!(failing_hop(&d), Some("client"));
    assert_eq!(d.path.len(), 1);
}

#[test]
fn kernel_drop_is_named() {
    let mut e = seen(Outcome::Dropped, Some("IP_RPFILTER"));
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::KernelDrop);
    assert!(has(&d.evidence, "the kernel dropped the SYN: IP_RPFILTER"));
    assert!(has(&d.fix, "net.ipv4.conf.eth0.rp_filter"));
    assert_eq!(failing_hop(&d), Some("interface eth0"));
}

#[test]
fn firewall_drop_wins_over_a_loopback_bind() {
    let mut e = seen(Outcome::Dropped, Some("NETFILTER_DROP"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    e.attribution = Some(attribution("drop"));
    assert_eq!(diagnose(&e).verdict, Verdict::FirewallDrop);
}

#[test]
fn loopback_bind_via_lo_is_reachable() {
    let mut e = seen(Outcome::Accepted, None);
    let mut f = flow(Outcome::Accepted, None);
    f.client = "127.0.0.1:40000".parse().expect("addr");
    f.server = "127.0.0.1:8080".parse().expect("addr");
    e.flow = Some(f);
    e.iface = Some("lo".into());
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    assert_eq!(diagnose(&e).verdict, Verdict::Reachable);

    // Predicted the same way without traffic.
    let p = Evidence {
        port: 8080,
        iface: Some("lo".into()),
        netns: Some(ns(HOST)),
        listeners: vec![listener(HOST, "127.0.0.1", 8080)],
        ..Evidence::default()
    };
    let d = diagnose(&p);
    assert_eq!(d.verdict, Verdict::Reachable);
    assert!(has(&d.evidence, "predicting"));
}

#[test]
fn accepted_wins_over_an_overflow_of_other_attempts() {
    let mut e = seen(Outcome::Accepted, None);
    let l = listener(HOST, "0.0.0.0", 8080);
    e.listeners = vec![l.clone()];
    e.overflow = Some(OverflowEvidence {
        netns: ns(HOST),
        listen_overflows: 1,
        listen_drops: 1,
        syn_queue_full_drops: 0,
        full_listeners: vec![l],
    });
    assert_eq!(diagnose(&e).verdict, Verdict::Reachable);
}

#[test]
fn v6only_listener_does_not_take_ipv4() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    let mut l = listener(HOST, "::", 8080);
    l.v6only = Some(true);
    e.listeners = vec![l];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(has(&d.evidence, "does not take this SYN: pid 42 (server) on [::]:8080"));
}

#[test]
fn prediction_only_uses_the_same_classes() {
    let base = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        listeners: vec![listener(HOST, "127.0.0.1", 8080)],
        ..Evidence::default()
    };
    assert_eq!(diagnose(&base).verdict, Verdict::LoopbackOnlyBind);

    let mut e = base.clone();
    e.prediction = Some(Prediction {
        zone: "public".into(),
        zone_by: ZoneBy::Interface,
        decision: Decision::Reject {
            by: "target default".into(),
            with: "icmpx admin-prohibited".into(),
        },
        reason: "zone public via eth0, target default → reject".into(),
        fix: vec!["firewall-cmd --zone=public --add-port=8080/tcp".into()],
    });
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallReject);
    assert!(has(&d.evidence, "firewalld will decide: zone public via eth0"));

    let mut e = base.clone();
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    assert_eq!(diagnose(&e).verdict, Verdict::Reachable);
    e.listeners.clear();
    assert_eq!(diagnose(&e).verdict, Verdict::NoListener);
}

fn wsl(networking: Networking, eth0: Option<&str>) -> Option<WslInfo> {
    Some(WslInfo {
        wsl2: Wsl2 { networking, evidence: "faked".into() },
        eth0_addr: eth0.map(|a| a.parse().expect("addr")),
    })
}

#[test]
fn wsl2_nat_explains_localhost_relay_and_portproxy() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    e.wsl = wsl(Networking::Nat, Some("172.20.1.2"));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind);
    assert!(has(&d.evidence, "Windows localhost:8080 is relayed into the VM and arrives on lo"));
    assert!(has(&d.evidence, "eth0 address (172.20.1.2)"));
    assert!(has(
        &d.fix,
        "netsh interface portproxy add v4tov4 listenport=8080 listenaddress=0.0.0.0 connectport=8080 connectaddress=172.20.1.2"
    ));
    assert!(!has(&d.fix, "hostAddressLoopback"));
}

#[test]
fn wsl2_mirrored_explains_host_address_loopback() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    e.wsl = wsl(Networking::Mirrored, None);
    let d = diagnose(&e);
    assert!(has(&d.fix, "hostAddressLoopback=true"));
    assert!(!has(&d.fix, "netsh"));
}

#[test]
fn no_wsl2_text_off_wsl2() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    let all: Vec<String> = d.evidence.iter().chain(&d.fix).cloned().collect();
    for word in ["WSL", "netsh", "hostAddressLoopback", "portproxy"] {
        assert!(!has(&all, word), "{word} in {all:?}");
    }
}

#[test]
fn diagnosis_serializes_in_snake_case() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let v = serde_json::to_value(diagnose(&e)).expect("json");
    assert_eq!(v["verdict"], "loopback_only_bind");
    assert!(v["evidence"].is_array() && v["fix"].is_array());
    assert_eq!(v["path"][0]["name"], "client");
    assert_eq!(v["path"][3]["name"], "socket");
    assert_eq!(v["path"][3]["ok"], false);
    assert!(v["path"][3]["note"].is_string());
    let names: Vec<String> = [
        Verdict::Reachable,
        Verdict::ListenerInOtherNetns,
        Verdict::NoListener,
        Verdict::FirewallDrop,
        Verdict::FirewallReject,
        Verdict::OtherNetfilterDrop,
        Verdict::ListenOverflow,
        Verdict::NoSynSeen,
        Verdict::KernelDrop,
    ]
    .iter()
    .map(|v| serde_json::to_value(v).expect("json").as_str().unwrap_or_default().to_string())
    .collect();
    assert_eq!(
        names,
        [
            "reachable",
            "listener_in_other_netns",
            "no_listener",
            "firewall_drop",
            "firewall_reject",
            "other_netfilter_drop",
            "listen_overflow",
            "no_syn_seen",
            "kernel_drop"
        ]
    );
}

#[test]
fn failed_bind_from_observation_keeps_only_failures_on_the_port() {
    let mut o = SockObservation {
        kind: "bind",
        time: String::new(),
        netns: ns(HOST),
        pid: 77,
        tid: 77,
        comm: "api".into(),
        uid: 0,
        cgroup_id: 0,
        family: Some("ipv4"),
        proto: Some("tcp"),
        addr: Some("0.0.0.0".into()),
        port: Some(8080),
        bound_addr: None,
        bound_port: None,
        result: "EADDRINUSE".into(),
        backlog: None,
        options: Default::default(),
        source: "tp_btf",
        sock_id: "0x1".into(),
        cookie: None,
    };
    let b = FailedBind::from_observation(&o, 8080).expect("a failed bind");
    assert_eq!((b.pid, b.errno.as_str()), (77, "EADDRINUSE"));
    assert_eq!(FailedBind::from_observation(&o, 9090), None);
    o.result = "ok".into();
    assert_eq!(FailedBind::from_observation(&o, 8080), None);
}
