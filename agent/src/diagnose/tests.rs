//! One test per verdict from hand-built evidence, the ordering rules, WSL2 text, serde shape.
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::{
    diagnose::lookup::SkLookupState,
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
        reply_drop: None,
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

/// issue 13 item 3: a firewalld rule reach cannot map takes the prediction's fix when the
/// prediction reaches the same verdict, and the generic one only otherwise.
#[test]
fn unmapped_firewalld_rule_uses_an_agreeing_prediction() {
    let mut e = seen(Outcome::Dropped, Some("NETFILTER_DROP"));
    let mut a = attribution("reject icmpx admin-prohibited");
    a.concept = Concept::Other;
    a.zone = None;
    a.fix.clear();
    a.summary = "rule `iifname \"x\" reject with icmpx admin-prohibited` … cannot map it".into();
    e.attribution = Some(a);
    let predicted = |decision| Prediction {
        zone: "public".into(),
        zone_by: ZoneBy::Interface,
        decision,
        reason: "zone public via eth0, target default → reject".into(),
        fix: vec!["firewall-cmd --zone=public --add-port=8080/tcp".into()],
    };
    e.prediction = Some(predicted(Decision::Reject {
        by: "target default".into(),
        with: "icmpx admin-prohibited".into(),
    }));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallReject);
    assert!(has(&d.evidence, "cannot map"), "{:?}", d.evidence);
    assert!(has(&d.evidence, "predicts the same: zone public via eth0"), "{:?}", d.evidence);
    assert_eq!(d.fix, vec!["firewall-cmd --zone=public --add-port=8080/tcp".to_string()]);

    // A prediction of another verdict is not evidence for this rule: the generic fix.
    e.prediction = Some(predicted(Decision::Drop { by: "target DROP".into() }));
    let d = diagnose(&e);
    assert!(!has(&d.evidence, "predicts the same"), "{:?}", d.evidence);
    assert!(has(&d.fix, "nft -a list ruleset"), "{:?}", d.fix);

    // A named rule whose fix the prediction starts with: the prediction's whole fix (what
    // else blocks once the rule is gone); a prediction with another first step changes nothing.
    let mut a = attribution("reject icmpx admin-prohibited");
    a.fix = vec!["remove the rule".into()];
    e.attribution = Some(a);
    let mut p = predicted(Decision::Reject {
        by: "rich rule".into(),
        with: "icmpx-admin-prohibited".into(),
    });
    p.fix = vec!["remove the rule".into(), "then add the port".into()];
    e.prediction = Some(p.clone());
    assert_eq!(diagnose(&e).fix, ["remove the rule", "then add the port"]);
    p.fix = vec!["something else".into()];
    e.prediction = Some(p);
    assert_eq!(diagnose(&e).fix, ["remove the rule"]);
}

/// A rule in firewalld's table that is none of its concepts, while firewalld's configuration
/// accepts the SYN: the exact nft edit of that rule, and the accept as evidence that firewalld
/// did not write it. Without the rule's location, the generic listing.
#[test]
fn unmapped_firewalld_rule_with_an_accepting_configuration_gets_the_nft_edit() {
    let mut e = seen(Outcome::Dropped, Some("NETFILTER_DROP"));
    let mut a = attribution("drop");
    a.concept = Concept::Other;
    a.zone = None;
    a.fix.clear();
    a.rule = "tcp dport 8080 drop".into();
    a.summary =
        "rule `tcp dport 8080 drop` in chain filter_INPUT → drop: reach cannot map it".into();
    e.attribution = Some(a);
    e.prediction = Some(Prediction {
        zone: "public".into(),
        zone_by: ZoneBy::Interface,
        decision: Decision::Accept { by: "port 8080/tcp".into() },
        reason: "zone public via eth0, port 8080/tcp allowed → accept".into(),
        fix: Vec::new(),
    });
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallDrop);
    assert!(has(&d.fix, "nft -a list ruleset"), "no rule location: the listing: {:?}", d.fix);
    assert!(!has(&d.evidence, "did not write"), "{:?}", d.evidence);

    e.netfilter = Some(NetfilterRule {
        family: "inet".into(),
        table: "firewalld".into(),
        chain: "filter_INPUT".into(),
        handle: Some(57),
        rule: Some("tcp dport 8080 drop".into()),
        action: "drop".into(),
        ..Default::default()
    });
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallDrop);
    assert!(
        d.fix[0].starts_with("nft delete rule inet firewalld filter_INPUT handle 57"),
        "{:?}",
        d.fix
    );
    assert!(has(&d.evidence, "accepts this SYN (zone public via eth0"), "{:?}", d.evidence);
    assert!(has(&d.evidence, "firewalld did not write this rule"), "{:?}", d.evidence);

    // firewalld ≥ 2.0 owns its table: nobody else wrote the rule, and no nft edit works.
    e.netfilter.as_mut().unwrap().owned = true;
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FirewallDrop);
    assert!(!has(&d.evidence, "did not write"), "{:?}", d.evidence);
    assert!(has(&d.evidence, "yet firewalld wrote this rule"), "{:?}", d.evidence);
    assert!(d.fix[0].starts_with("nft -a list table inet firewalld"), "{:?}", d.fix);
    assert!(!has(&d.fix, "nft delete") && !has(&d.fix, "nft insert"), "{:?}", d.fix);
    assert!(has(&d.fix, "firewall-cmd --list-all-policies"), "{:?}", d.fix);
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
        ..Default::default()
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
fn no_syn_seen_with_syn_events_lost_claims_nothing_before_this_host() {
    let mut e = Evidence {
        port: 8080,
        watched: true,
        unseen_syns: 3,
        listeners: vec![listener(HOST, "0.0.0.0", 8080)],
        ..Evidence::default()
    };
    for gone in [false, true] {
        e.netns_gone = gone;
        let d = diagnose(&e);
        assert_eq!(d.verdict, Verdict::EventsLost, "gone: {gone}");
        assert!(has(&d.evidence, "3 SYN event(s) were lost"), "{:?}", d.evidence);
        let all = format!("{:?} {:?} {:?}", d.evidence, d.fix, d.path);
        assert!(!all.contains("before this host") && !all.contains("before any SYN"), "{all}");
        assert_eq!(gone, has(&d.evidence, "went away while reach waited"));
    }
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

fn return_route(leaves: super::return_route::Leaves) -> super::return_route::ReturnRoute {
    super::return_route::ReturnRoute {
        client: "10.77.0.2".parse().unwrap(),
        from: "172.30.0.2".parse().unwrap(),
        arrived: "eth0".into(),
        leaves,
        nat_side: Some("172.30.0.1".parse().unwrap()),
    }
}

/// Behind a NAT, the answer must go back by the interface the SYN came in on: no route back
/// drops the SYN (kernel_drop), a route out elsewhere loses the SYN-ACK (reply_dropped), a
/// route back the same way says nothing; each fix routes the client back through the NAT.
#[test]
fn the_way_back_through_the_nat_decides_an_unanswered_attempt() {
    use super::return_route::Leaves;
    let fix = "ip route add 10.77.0.2 via 172.30.0.1 dev eth0";
    let mut e = seen(Outcome::Unanswered, None);
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    e.return_route = Some(return_route(Leaves::Nowhere { why: "Network is unreachable".into() }));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::KernelDrop);
    assert!(has(&d.evidence, "has no route back to the client 10.77.0.2 from 172.30.0.2"), "{d:?}");
    assert!(d.fix[0].starts_with(fix), "{:?}", d.fix);
    // Answered, out by another interface.
    e.flow.as_mut().unwrap().synack_sent = true;
    let other = Leaves::Via { iface: "eth1".into(), gateway: Some("192.168.9.1".parse().unwrap()) };
    e.return_route = Some(return_route(other.clone()));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::ReplyDropped);
    assert!(has(&d.evidence, "leaves netns host by eth1 via 192.168.9.1, not by eth0"), "{d:?}");
    assert!(d.fix[0].starts_with(fix), "{:?}", d.fix);
    assert_eq!(failing_hop(&d), Some("reply"));
    // Back the way it came: the silent-drop wording, no route fix.
    e.return_route = Some(return_route(Leaves::Via { iface: "eth0".into(), gateway: None }));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::KernelDrop);
    assert!(has(&d.evidence, "the handshake never completed"), "{d:?}");
    assert!(!has(&d.fix, "ip route add"), "{:?}", d.fix);
    // A reverse-path drop says where the route back leads, and the route that passes it.
    let mut e = seen(Outcome::Dropped, Some("IP_RPFILTER"));
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    e.return_route = Some(return_route(other));
    let d = diagnose(&e);
    assert!(has(
        &d.evidence,
        "the route back to 10.77.0.2 from 172.30.0.2 leaves netns host by eth1"
    ));
    assert!(d.fix[0].starts_with(fix), "{:?}", d.fix);
    assert!(has(&d.fix, "net.ipv4.conf.eth0.rp_filter"));
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
fn v6only_listener_and_an_ipv4_client_is_family_mismatch() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    let mut l = listener(HOST, "::", 8080);
    l.v6only = Some(true);
    e.listeners = vec![l];
    e.interfaces = interfaces();
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FamilyMismatch, "{d:#?}");
    assert_eq!(d.verdict.exit_code(), 19);
    assert!(has(&d.evidence, "does not take this SYN: pid 42 (server) on [::]:8080"));
    assert!(has(
        &d.evidence,
        "the server listens on [::]:8080 (IPv6 only: IPV6_V6ONLY); the client dialed 10.0.0.5 \
         (port 8080, IPv4)"
    ));
    assert!(has(&d.fix, "turn IPV6_V6ONLY off on [::]:8080"), "{:#?}", d.fix);
    assert!(has(&d.fix, "or add a listener on 0.0.0.0:8080"));
    // The IPv6 address of the interface the SYN came in on.
    assert!(has(&d.fix, "or have the client dial [fd00::5]:8080"), "{:#?}", d.fix);
    assert_consistent(&d);
    assert_eq!(failing_hop(&d), Some("socket"));
}

/// lo (ifindex 1) and eth0 (2) with two IPv4 addresses, an IPv6 and a link-local one.
fn interfaces() -> Vec<Interface> {
    let ips = |a: &[&str]| a.iter().map(|s| s.parse().expect("addr")).collect();
    vec![
        Interface { ifindex: 1, name: "lo".into(), addrs: ips(&["127.0.0.1", "::1"]) },
        Interface {
            ifindex: 2,
            name: "eth0".into(),
            addrs: ips(&["10.0.0.5", "10.0.0.6", "fd00::5", "fe80::5"]),
        },
    ]
}

/// A client in the host namespace itself: its SYN to `server` travels over lo.
fn local(outcome: Outcome, drop: Option<&str>, client: &str, server: &str) -> Evidence {
    let mut f = flow(outcome, drop);
    f.client = client.parse().expect("addr");
    f.server = server.parse().expect("addr");
    f.family = if f.server.is_ipv6() { Family::V6 } else { Family::V4 };
    f.ifindex = Some(1);
    Evidence {
        flow: Some(f),
        iface: Some("lo".into()),
        interfaces: interfaces(),
        ..seen(outcome, drop)
    }
}

/// Every address a fix names (but the wildcards) is in the evidence.
fn addresses_in(lines: &[String]) -> Vec<IpAddr> {
    lines
        .iter()
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || "\"(),;`".contains(c)))
        .filter_map(|w| {
            let w = w.trim_end_matches(['.', ':']);
            w.parse::<SocketAddr>().map(|s| s.ip()).ok().or_else(|| w.parse::<IpAddr>().ok())
        })
        .collect()
}

/// One verdict, told consistently: no "start the server" while a socket listens, and every
/// address a fix names (the wildcards aside) shown in the evidence.
fn assert_consistent(d: &Diagnosis) {
    let shown = addresses_in(&d.evidence);
    for a in addresses_in(&d.fix).into_iter().filter(|a| !a.is_unspecified()) {
        assert!(shown.contains(&a), "the fix names {a}, the evidence does not: {d:#?}");
    }
    let all: Vec<&String> = d.evidence.iter().chain(&d.fix).collect();
    assert!(
        !all.iter().any(|l| l.contains("start the server") || l.contains("nothing listens")),
        "a socket listens, yet: {all:#?}"
    );
    assert_ne!(d.verdict, Verdict::NoListener);
}

#[test]
fn ipv4_loopback_server_and_a_client_dialing_ipv6_loopback_is_family_mismatch() {
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "[::1]:40000", "[::1]:8080");
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FamilyMismatch, "{d:#?}");
    assert_eq!(
        d.evidence.last().map(String::as_str),
        Some(
            "the server listens on 127.0.0.1:8080 (IPv4 only, loopback only); the client dialed \
             ::1 (port 8080, IPv6)"
        ),
        "the key sentence is the failing hop's note"
    );
    assert_eq!(d.path.last().map(|h| h.note.as_str()), d.evidence.last().map(String::as_str));
    // Loopback stays loopback: a second listener on ::1, or dial 127.0.0.1; never [::] here.
    assert!(has(&d.fix, "also listen on [::1]:8080 (a second listener"), "{:#?}", d.fix);
    assert!(has(&d.fix, "or have the client dial 127.0.0.1:8080 instead of [::1]:8080"));
    assert!(!has(&d.fix, "[::]:8080"), "{:#?}", d.fix);
    assert_consistent(&d);
    let lookup = d.lookup.expect("the lookup is in the diagnosis");
    assert_eq!(lookup.syn.daddr, "::1".parse::<IpAddr>().unwrap());
    assert!(lookup.syn.ingress.loopback);
}

#[test]
fn ipv6_loopback_server_and_a_client_dialing_127_0_0_1_is_family_mismatch() {
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "127.0.0.1:40000", "127.0.0.1:8080");
    let mut l = listener(HOST, "::1", 8080);
    l.v6only = Some(true);
    e.listeners = vec![l];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FamilyMismatch, "{d:#?}");
    assert!(has(&d.evidence, "the server listens on [::1]:8080 (IPv6 only: bound to one IPv6"));
    assert!(has(&d.fix, "also listen on 127.0.0.1:8080 (a second listener"), "{:#?}", d.fix);
    assert!(has(&d.fix, "or have the client dial [::1]:8080 instead of 127.0.0.1:8080"));
    assert_consistent(&d);
}

#[test]
fn ipv4_wildcard_and_an_ipv6_client_from_outside_is_family_mismatch_with_dual_stack_fix() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    let mut f = flow(Outcome::Reset, Some("NO_SOCKET"));
    f.client = "[fd00::9]:40000".parse().unwrap();
    f.server = "[fd00::5]:8080".parse().unwrap();
    e.flow = Some(f);
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FamilyMismatch, "{d:#?}");
    assert!(has(&d.fix, "listen on [::]:8080 without IPV6_V6ONLY (dual-stack"), "{:#?}", d.fix);
    assert!(has(&d.fix, "net.Listen(\"tcp\", \":8080\") is dual-stack"));
    assert!(has(&d.fix, "net.Listen(\"tcp4\", …)"));
    assert!(has(&d.fix, "or have the client dial 10.0.0.5:8080"), "{:#?}", d.fix);
}

#[test]
fn server_on_one_address_and_a_syn_to_another_is_address_mismatch() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "10.0.0.6", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::AddressMismatch, "{d:#?}");
    assert_eq!(d.verdict.exit_code(), 20);
    assert!(has(
        &d.evidence,
        "the server listens on 10.0.0.6:8080 (IPv4 only), only on 10.0.0.6; the client dialed \
         10.0.0.5 (port 8080, IPv4), another address"
    ));
    assert!(
        has(&d.fix, "bind the server to 0.0.0.0:8080 (every address) or to 10.0.0.5:8080"),
        "{:#?}",
        d.fix
    );
    assert!(has(&d.fix, "or have the client dial 10.0.0.6:8080"));
    assert_consistent(&d);
    // From this host to another loopback address: still an address, not loopback-only.
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "127.0.0.1:40000", "127.0.0.2:8080");
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::AddressMismatch, "{d:#?}");
    assert!(has(&d.evidence, "another loopback address"));
    // A client on this host dialing eth0's address, the server on 127.0.0.1 only: an address
    // mismatch (the client could dial 127.0.0.1), not a client from outside.
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "10.0.0.5:40000", "10.0.0.5:8080");
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::AddressMismatch, "{d:#?}");
    assert!(has(&d.fix, "or have the client dial 127.0.0.1:8080"));
}

fn bound_to(mut l: ListenerView, ifindex: u32) -> ListenerView {
    l.bound_dev_if = Some(ifindex);
    l
}

#[test]
fn listener_bound_to_another_interface_is_interface_mismatch_never_reachable() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    e.listeners = vec![bound_to(listener(HOST, "0.0.0.0", 8080), 1)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert_eq!(d.verdict.exit_code(), 21);
    assert!(has(
        &d.evidence,
        "the server listens on 0.0.0.0:8080 (IPv4 only, bound to interface lo); the client's SYN \
         to 10.0.0.5 (port 8080, IPv4) arrived on eth0"
    ));
    assert!(has(&d.fix, "stop binding 0.0.0.0:8080 to interface lo (SO_BINDTODEVICE"));
    assert!(has(&d.fix, "or bind it to eth0 (SO_BINDTODEVICE \"eth0\")"), "{:#?}", d.fix);
    assert_consistent(&d);

    // Predicted (no traffic): the client comes in on eth0; never "reachable".
    let p = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        iface: Some("eth0".into()),
        interfaces: interfaces(),
        listeners: e.listeners.clone(),
        ..Evidence::default()
    };
    let d = diagnose(&p);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(has(&d.evidence, "predicting"));

    // A client on this host dialing eth0's address arrives, for the lookup, on eth0: a socket
    // bound to lo misses it, and dialing 127.0.0.1 is one of the fixes.
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "10.0.0.5:40000", "10.0.0.5:8080");
    e.listeners = vec![bound_to(listener(HOST, "0.0.0.0", 8080), 1)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(has(&d.evidence, "arrived on eth0 from a client on this host"), "{:#?}", d.evidence);
    assert!(has(&d.fix, "or, from this host, dial 127.0.0.1:8080 (an address on lo)"));
}

#[test]
fn never_reachable_when_the_lookup_misses_nor_when_the_attempt_was_refused() {
    let listeners = [
        bound_to(listener(HOST, "0.0.0.0", 8080), 1),
        listener(HOST, "10.0.0.6", 8080),
        listener(HOST, "127.0.0.1", 8080),
        {
            let mut l = listener(HOST, "::", 8080);
            l.v6only = Some(true);
            l
        },
    ];
    for l in &listeners {
        for (outcome, drop) in
            [(Outcome::Reset, Some("NO_SOCKET")), (Outcome::Reset, None), (Outcome::Pending, None)]
        {
            let mut e = seen(outcome, drop);
            e.interfaces = interfaces();
            e.listeners = vec![l.clone()];
            let d = diagnose(&e);
            assert_ne!(d.verdict, Verdict::Reachable, "{l:?} {outcome:?}: {d:#?}");
            assert_consistent(&d);
        }
    }
    // Refused although a listener takes the SYN now (it started after the attempt): the
    // kernel's answer is named, never "reachable".
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::KernelDrop, "{d:#?}");
    assert!(has(&d.evidence, "the listener started after the attempt"));
    assert!(has(&d.evidence, "listening: pid 42 (server) on 0.0.0.0:8080"));
    assert!(has(&d.fix, "connect again"));
    assert_eq!(failing_hop(&d), Some("socket"));
}

#[test]
fn no_listener_only_when_no_socket_listens_in_the_syns_namespace() {
    // A listener elsewhere, and one here that misses: the one here decides.
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    e.listeners = vec![listener(LAB, "0.0.0.0", 8080), listener(HOST, "10.0.0.6", 8080)];
    assert_eq!(diagnose(&e).verdict, Verdict::AddressMismatch);
    // A UDP socket on the port is no TCP listener.
    let mut udp = listener(HOST, "0.0.0.0", 8080);
    udp.proto = "udp";
    e.listeners = vec![udp];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(has(&d.fix, "start the server listening on port 8080"));
}

#[test]
fn the_closest_miss_decides_and_every_listener_is_in_the_evidence() {
    // lo-bound wildcard (only the device is wrong) beats a v6-only one (the family).
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    let mut v6 = listener(HOST, "::", 8080);
    v6.v6only = Some(true);
    v6.cookie = 8;
    e.listeners = vec![v6, bound_to(listener(HOST, "0.0.0.0", 8080), 1)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(has(&d.evidence, "on [::]:8080 in netns host"));
    assert!(has(&d.evidence, "the server listens on [::]:8080 (IPv6 only: IPV6_V6ONLY)"));
    assert!(d.evidence.last().is_some_and(|l| l.contains("bound to interface lo")), "{d:#?}");
}

#[test]
fn sk_lookup_and_reuseport_steering_are_in_the_evidence() {
    let mut e = seen(Outcome::Accepted, None);
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    e.sk_lookup = Some(SkLookupState::Attached(vec![31]));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::Reachable);
    assert!(has(&d.evidence, "sk_lookup BPF program(s) [31] are attached"), "{d:#?}");

    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "10.0.0.6", 8080)];
    e.sk_lookup = Some(SkLookupState::Attached(vec![31]));
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::AddressMismatch);
    assert!(has(&d.evidence, "sk_lookup BPF program(s) [31]"));

    // Predicted: two SO_REUSEPORT listeners on one binding share the SYNs.
    let mut a = listener(HOST, "0.0.0.0", 8080);
    let mut b = a.clone();
    (a.cookie, b.cookie, b.pid) = (1, 2, Some(43));
    let p = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        iface: Some("eth0".into()),
        interfaces: interfaces(),
        listeners: vec![a, b],
        ..Evidence::default()
    };
    let d = diagnose(&p);
    assert_eq!(d.verdict, Verdict::Reachable);
    assert!(has(&d.evidence, "2 listeners share this binding through SO_REUSEPORT"), "{d:#?}");
    assert!(has(&d.evidence, "listening: pid 43 (server)"));
}

#[test]
fn bare_port_prediction_judges_every_address_of_the_interface() {
    let base = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        iface: Some("eth0".into()),
        interfaces: interfaces(),
        ..Evidence::default()
    };
    // An IPv4-only wildcard: reachable over IPv4; the IPv6 address is named as refused (the
    // link-local one is no address a client means).
    let mut e = base.clone();
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::Reachable, "{d:#?}");
    assert!(has(&d.evidence, "SYNs to fd00::5 would be refused"), "{d:#?}");
    assert!(!has(&d.evidence, "fe80"), "{d:#?}");
    // Only on loopback: loopback_only_bind, with the fix for the listener's family.
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
    assert!(has(&d.fix, "bind the server to 0.0.0.0:8080"));
    // From lo, 127.0.0.1 and ::1 are what a client dials.
    e.iface = Some("lo".into());
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::Reachable, "{d:#?}");
    assert!(has(&d.evidence, "SYNs to ::1 would be refused"), "{d:#?}");
    // A target address this namespace does not have: said, and no bind to it suggested.
    let mut e = base.clone();
    e.addr = Some("10.9.9.9".parse().unwrap());
    e.listeners = vec![listener(HOST, "10.0.0.6", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::AddressMismatch, "{d:#?}");
    assert!(has(&d.evidence, "10.9.9.9 is not an address of netns host"));
    assert!(!has(&d.fix, "10.9.9.9"), "{:#?}", d.fix);
    assert!(has(&d.fix, "have the client dial 10.0.0.6:8080"));
    // Served by a wildcard, still named: only a DNAT rule brings such a SYN here.
    e.listeners = vec![listener(HOST, "0.0.0.0", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::Reachable, "{d:#?}");
    assert!(has(&d.evidence, "10.9.9.9 is not an address of netns host: unless a DNAT rule"));
}

#[test]
fn loopback_listener_and_an_ipv6_client_from_outside_gets_the_dual_stack_wildcard() {
    let mut e = seen(Outcome::Reset, Some("NO_SOCKET"));
    let mut f = flow(Outcome::Reset, Some("NO_SOCKET"));
    f.client = "[fd00::9]:40000".parse().unwrap();
    f.server = "[fd00::5]:8080".parse().unwrap();
    e.flow = Some(f);
    e.interfaces = interfaces();
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
    assert!(has(
        &d.fix,
        "bind the server to [::]:8080 without IPV6_V6ONLY (all addresses of both families)"
    ));
    assert_eq!(
        d.evidence.last().map(String::as_str),
        Some("the SYN came in on eth0 to fd00::5, not via lo")
    );
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
        Verdict::FamilyMismatch,
        Verdict::AddressMismatch,
        Verdict::InterfaceMismatch,
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
            "kernel_drop",
            "family_mismatch",
            "address_mismatch",
            "interface_mismatch"
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

#[test]
fn exit_codes_of_the_first_classes_stay_and_new_ones_are_appended() {
    let codes: Vec<(&str, u8)> = Verdict::ALL.iter().map(|v| (v.name(), v.exit_code())).collect();
    assert_eq!(
        codes,
        [
            ("reachable", 0),
            ("loopback_only_bind", 10),
            ("listener_in_other_netns", 11),
            ("no_listener", 12),
            ("firewall_drop", 13),
            ("firewall_reject", 14),
            ("other_netfilter_drop", 15),
            ("listen_overflow", 16),
            ("no_syn_seen", 17),
            ("kernel_drop", 18),
            ("family_mismatch", 19),
            ("address_mismatch", 20),
            ("interface_mismatch", 21),
            ("reply_dropped", 22),
            ("netns_gone", 23),
            ("events_lost", 24),
        ]
    );
}

#[test]
fn the_consistency_check_sees_the_addresses_a_fix_names() {
    let fix = vec!["dial [::1]:80 (or 10.0.0.6:80), not \"0.0.0.0:80\"; fd00::5.".to_string()];
    let want: Vec<IpAddr> =
        ["::1", "10.0.0.6", "0.0.0.0", "fd00::5"].iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(addresses_in(&fix), want);
}

// Regressions found by the properties (properties.rs), each the shrunk case.

/// A listener as `reach why` builds it from sock_diag (not the hand-made `listener`).
fn dumped(addr: &str, port: u16, bound_dev_if: u32) -> ListenerView {
    let a: IpAddr = addr.parse().expect("addr");
    let socket = crate::netns::sock_diag::SockEntry {
        family: if a.is_ipv6() {
            crate::netns::sock_diag::Family::V6
        } else {
            crate::netns::sock_diag::Family::V4
        },
        proto: crate::netns::sock_diag::Proto::Tcp,
        addr: a,
        port,
        bound_dev_if,
        uid: 0,
        inode: 1,
        cookie: 1,
        v6only: a.is_ipv6().then_some(false),
        backlog: Some(4),
        accept_queue: Some(0),
    };
    let owners = vec![crate::netns::owners::Owner { pid: 42, comm: "server".into() }];
    ListenerView::new(ns(HOST), &crate::netns::snapshot::Listener { socket, owners })
}

/// `reachable_only_when_served`: an AF_INET6 listener on `::ffff:127.0.0.1` takes only IPv4
/// SYNs to 127.0.0.1, yet `Ipv6Addr::is_loopback` said no, so a bare-port prediction from
/// outside (no interface listed) called it reachable.
#[test]
fn a_v4_mapped_loopback_listener_is_loopback_only() {
    let l = dumped("::ffff:127.0.0.1", 8080, 0);
    assert!(l.loopback_only, "{l:?}");
    let e =
        Evidence { port: 8080, netns: Some(ns(HOST)), listeners: vec![l], ..Evidence::default() };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
    assert!(has(
        &d.evidence,
        "listening on loopback only: pid 42 (server) on [::ffff:127.0.0.1]:8080"
    ));
}

/// `tense_matches_the_attempt`: a pending attempt whose SYN the server answered and whose
/// next segment (the client's ACK) netfilter dropped was handled as a prediction, and said
/// "netfilter dropped the SYN" — in the past, and of the wrong segment.
#[test]
fn a_pending_attempt_with_a_drop_is_told_as_seen_and_names_the_dropped_segment() {
    let mut f = flow(Outcome::Pending, Some("NETFILTER_DROP"));
    f.synack_sent = true;
    f.drop.as_mut().expect("a drop").syn = false;
    let e = Evidence { flow: Some(f), ..seen(Outcome::Pending, None) };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::OtherNetfilterDrop, "{d:#?}");
    assert!(
        has(
            &d.evidence,
            "netfilter dropped the client's segment after its SYN (the handshake ACK)"
        ),
        "{d:#?}"
    );
    assert!(!has(&d.evidence, "dropped the SYN"), "{d:#?}");
    assert!(!d.path.iter().any(|h| h.note.contains("would")), "told as a prediction: {d:#?}");
    // A SYN's own drop still says so.
    let d = diagnose(&seen(Outcome::Dropped, Some("NETFILTER_DROP")));
    assert!(has(&d.evidence, "netfilter dropped the SYN (NETFILTER_DROP)"), "{d:#?}");
}

/// `fixes_name_what_exists`: with the arrival interface unknown (a prediction "from outside"),
/// a device-bound listener was judged against ifindex 0 and the fix said "bind it to ifindex 0
/// (SO_BINDTODEVICE \"ifindex 0\")". The SYN is now taken to arrive where its address lives;
/// with nothing to tell, no interface is named.
#[test]
fn an_unknown_arrival_interface_is_never_named_ifindex_0() {
    let mut e = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        listeners: vec![dumped("::ffff:10.0.0.5", 8080, 1)],
        interfaces: interfaces(),
        ..Evidence::default()
    };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(has(&d.fix, "or bind it to eth0 (SO_BINDTODEVICE \"eth0\")"), "{:#?}", d.fix);
    let all: Vec<&String> = d.evidence.iter().chain(&d.fix).collect();
    assert!(!all.iter().any(|l| l.contains("ifindex 0")), "{all:#?}");
    // Nothing tells where it arrives: the fix names no interface to bind to.
    e.interfaces.clear();
    e.addr = Some("10.0.0.5".parse().unwrap());
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(!has(&d.fix, "or bind it to"), "{:#?}", d.fix);
    assert!(has(&d.evidence, "would arrive on an interface reach does not know"), "{d:#?}");
}

/// `fixes_name_what_exists`: with the namespace's interfaces not listed, lo (ifindex 1 in
/// every namespace) was named "ifindex 1" in a fix.
#[test]
fn lo_is_named_lo_when_the_interfaces_were_not_listed() {
    let e = Evidence {
        port: 8080,
        addr: Some("127.0.0.1".parse().unwrap()),
        netns: Some(ns(HOST)),
        iface: Some("lo".into()),
        listeners: vec![dumped("0.0.0.0", 8080, 2)],
        ..Evidence::default()
    };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::InterfaceMismatch, "{d:#?}");
    assert!(has(&d.fix, "or bind it to lo (SO_BINDTODEVICE \"lo\")"), "{:#?}", d.fix);
    assert!(!has(&d.fix, "ifindex 1"), "{:#?}", d.fix);
}

/// `one_story`: a bare-port prediction from outside with no interface listed named only the
/// first of two loopback listeners (an SO_REUSEPORT pair).
#[test]
fn every_loopback_listener_is_named_when_addresses_are_unknown() {
    let mut second = listener(HOST, "127.0.0.1", 8080);
    second.pid = Some(43);
    let e = Evidence {
        port: 8080,
        netns: Some(ns(HOST)),
        listeners: vec![listener(HOST, "127.0.0.1", 8080), second],
        ..Evidence::default()
    };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
    assert!(has(&d.evidence, "loopback only: pid 42 (server) on 127.0.0.1:8080"), "{d:#?}");
    assert!(has(&d.evidence, "loopback only: pid 43 (server) on 127.0.0.1:8080"), "{d:#?}");
}

/// `tense_matches_the_attempt`: predictions said "the client dialed …", "the SYN came in on
/// …" of an attempt that never happened; they speak in the conditional now, and an observed
/// attempt keeps the past.
#[test]
fn a_prediction_speaks_in_the_conditional_an_observed_attempt_in_the_past() {
    let mut e = Evidence {
        port: 8080,
        addr: Some("10.0.0.5".parse().unwrap()),
        netns: Some(ns(HOST)),
        iface: Some("eth0".into()),
        interfaces: interfaces(),
        listeners: vec![listener(HOST, "127.0.0.1", 8080)],
        ..Evidence::default()
    };
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
    assert!(has(&d.evidence, "a SYN to 10.0.0.5 would come in on eth0, not via lo"), "{d:#?}");
    assert!(
        has(&d.evidence, "a client dialing 10.0.0.5 (port 8080, IPv4), another address, would not"),
        "{d:#?}"
    );
    assert!(has(&d.evidence, "no listener would take the SYN"), "{d:#?}");
    assert!(!has(&d.evidence, "dialed") && !has(&d.evidence, "came in on"), "{d:#?}");
    e.listeners = vec![listener(HOST, "[::]", 8080)];
    e.listeners[0].addr = "::".into();
    e.listeners[0].v6only = Some(true);
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::FamilyMismatch, "{d:#?}");
    assert!(
        has(
            &d.evidence,
            "the server listens on [::]:8080 (IPv6 only: IPV6_V6ONLY); a client dialing 10.0.0.5 \
             (port 8080, IPv4) would not reach it"
        ),
        "{d:#?}"
    );
    // Observed: the same listener, the client's real SYN.
    let mut e = local(Outcome::Reset, Some("NO_SOCKET"), "10.0.0.9:40000", "10.0.0.5:8080");
    e.iface = Some("eth0".into());
    e.flow.as_mut().unwrap().ifindex = Some(2);
    e.listeners = vec![listener(HOST, "127.0.0.1", 8080)];
    let d = diagnose(&e);
    assert!(has(&d.evidence, "the SYN came in on eth0 to 10.0.0.5, not via lo"), "{d:#?}");
    assert!(has(&d.evidence, "; the client dialed 10.0.0.5"), "{d:#?}");
    assert!(!has(&d.evidence, "would"), "{d:#?}");
}
