//! Every rule of the lookup model from hand-built sockets; the real kernel checks the same
//! model in tests/tests/socket_lookup.rs.
use std::net::IpAddr;

use super::*;

const LO: u32 = 1;
const ETH: u32 = 2;
const ETH2: u32 = 3;
const VRF: u32 = 10;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(addr: &str, v6only: Option<bool>, dev: u32) -> Socket {
    let addr = ip(addr);
    Socket {
        family: if addr.is_ipv4() { Family::V4 } else { Family::V6 },
        addr,
        port: 80,
        v6only,
        bound_dev_if: dev,
        cookie: 7,
    }
}

fn v4(addr: &str) -> Socket {
    sock(addr, None, 0)
}

fn v6(addr: &str, v6only: bool) -> Socket {
    sock(addr, Some(v6only), 0)
}

fn syn_on(daddr: &str, ifindex: u32) -> Syn {
    Syn::new(ip(daddr), 80, Ingress::from_outside(ifindex))
}

fn syn(daddr: &str) -> Syn {
    syn_on(daddr, ETH)
}

fn miss(m: Miss) -> Judgement {
    Judgement::Misses(m)
}

const NONE: SkLookupState = SkLookupState::Attached(Vec::new());

#[test]
fn family_and_address_rules_table() {
    use Judgement::Takes;
    let fam = || miss(Miss::Family { takes: Family::V4, syn: Family::V6 });
    let v6only = |by_address| miss(Miss::V6Only { by_address });
    let addr = |b: &str, d: &str| miss(Miss::Address { bound: ip(b), dialed: ip(d) });
    // (listener, SYN destination, judgement)
    let rows: Vec<(Socket, &str, Judgement)> = vec![
        // AF_INET wildcard: every IPv4 destination, never IPv6.
        (v4("0.0.0.0"), "10.0.0.1", Takes { exact: false, score: 2 }),
        (v4("0.0.0.0"), "127.0.0.1", Takes { exact: false, score: 2 }),
        (v4("0.0.0.0"), "::1", fam()),
        (v4("0.0.0.0"), "fd00::1", fam()),
        // AF_INET exact: only that address.
        (v4("127.0.0.1"), "127.0.0.1", Takes { exact: true, score: 2 }),
        (v4("127.0.0.1"), "127.0.0.2", addr("127.0.0.1", "127.0.0.2")),
        (v4("127.0.0.1"), "10.0.0.1", addr("127.0.0.1", "10.0.0.1")),
        (v4("127.0.0.1"), "::1", fam()),
        (v4("10.0.0.1"), "10.0.0.2", addr("10.0.0.1", "10.0.0.2")),
        // Dual-stack [::]: both families, IPv4 one point below AF_INET.
        (v6("::", false), "10.0.0.1", Takes { exact: false, score: 1 }),
        (v6("::", false), "fd00::1", Takes { exact: false, score: 1 }),
        (v6("::", false), "::1", Takes { exact: false, score: 1 }),
        // [::] with IPV6_V6ONLY: no IPv4.
        (v6("::", true), "10.0.0.1", v6only(false)),
        (v6("::", true), "127.0.0.1", v6only(false)),
        (v6("::", true), "fd00::1", Takes { exact: false, score: 1 }),
        // A specific IPv6 address implies v6only.
        (v6("::1", true), "127.0.0.1", v6only(true)),
        (v6("::1", true), "::1", Takes { exact: true, score: 1 }),
        (v6("::1", true), "fd00::1", addr("::1", "fd00::1")),
        (v6("fd00::1", true), "fd00::2", addr("fd00::1", "fd00::2")),
        // v4-mapped: IPv4 to the mapped address only, no IPv6.
        (v6("::ffff:127.0.0.1", false), "127.0.0.1", Takes { exact: true, score: 1 }),
        (v6("::ffff:127.0.0.1", false), "127.0.0.2", addr("127.0.0.1", "127.0.0.2")),
        (v6("::ffff:127.0.0.1", false), "::1", fam()),
        (v6("::ffff:0.0.0.0", false), "10.0.0.1", Takes { exact: false, score: 1 }),
        // A v4-mapped destination is an IPv4 SYN on the wire.
        (v4("127.0.0.1"), "::ffff:127.0.0.1", Takes { exact: true, score: 2 }),
        (v6("::", true), "::ffff:127.0.0.1", v6only(false)),
    ];
    let mut bad = Vec::new();
    for (s, d, want) in &rows {
        let got = judge(&syn(d), s);
        if &got != want {
            bad.push(format!("{} ← {d}: got {got:?}, want {want:?}", s.addr));
        }
    }
    assert!(bad.is_empty(), "{} of {} rows wrong:\n{}", bad.len(), rows.len(), bad.join("\n"));
}

#[test]
fn v6only_unknown_is_read_as_the_default_dual_stack() {
    let s = sock("::", None, 0);
    assert_eq!(s.reach(), Reach::Dual);
    assert!(judge(&syn("10.0.0.1"), &s).takes());
}

#[test]
fn device_binding_rules() {
    let bound_eth = sock("0.0.0.0", None, ETH);
    assert_eq!(
        judge(&syn_on("10.0.0.1", ETH), &bound_eth),
        Judgement::Takes { exact: false, score: 3 }
    );
    assert_eq!(
        judge(&syn_on("10.0.0.1", ETH2), &bound_eth),
        miss(Miss::Device { bound: ETH, ingress: ETH2, l3_master: None })
    );
    // IPv6 the same, without the AF_INET point.
    let bound6 = sock("::", Some(true), ETH);
    assert_eq!(
        judge(&syn_on("fd00::1", ETH), &bound6),
        Judgement::Takes { exact: false, score: 2 }
    );
    assert!(!judge(&syn_on("fd00::1", LO), &bound6).takes());
    // The address is checked before the device: an address miss is reported as such.
    assert_eq!(
        judge(&syn_on("10.0.0.2", ETH2), &sock("10.0.0.1", None, ETH)),
        miss(Miss::Address { bound: ip("10.0.0.1"), dialed: ip("10.0.0.2") })
    );
    // The family is checked before anything else.
    assert_eq!(
        judge(&syn_on("::1", ETH2), &sock("127.0.0.1", None, ETH)),
        miss(Miss::Family { takes: Family::V4, syn: Family::V6 })
    );
}

#[test]
fn local_clients_arrive_on_the_interface_that_holds_the_address() {
    let local = |daddr: &str, owner| Syn::new(ip(daddr), 80, Ingress::from_inside(owner));
    assert_eq!(
        Ingress::from_inside(ETH),
        Ingress { ifindex: ETH, loopback: true, l3_master: None }
    );
    // A listener bound to the veth takes a local client dialing the veth's address, in both
    // families; one bound to lo does not, though the packet went over lo.
    for (daddr, wild) in [("10.0.0.1", "0.0.0.0"), ("fd00::1", "::")] {
        let v6only = daddr.contains(':').then_some(false);
        assert!(judge(&local(daddr, ETH), &sock(wild, v6only, ETH)).takes(), "{daddr}");
        assert_eq!(
            judge(&local(daddr, ETH), &sock(wild, v6only, LO)),
            miss(Miss::Device { bound: LO, ingress: ETH, l3_master: None }),
            "{daddr}"
        );
    }
    assert!(judge(&local("127.0.0.1", LO), &sock("0.0.0.0", None, LO)).takes());
}

#[test]
fn vrf_rules_follow_inet_bound_dev_eq() {
    let via_vrf = || Ingress { ifindex: ETH, loopback: false, l3_master: Some(VRF) };
    let s = |dev| sock("0.0.0.0", None, dev);
    let syn = |accept| Syn { l3mdev_accept: accept, ..Syn::new(ip("10.0.0.1"), 80, via_vrf()) };
    // Bound to the VRF master: takes SYNs on its enslaved devices.
    assert!(judge(&syn(false), &s(VRF)).takes());
    // Bound to the enslaved device itself (the kernel's sdif): takes it too.
    assert!(judge(&syn(false), &s(ETH)).takes());
    // Bound to another device: misses, naming the master.
    assert_eq!(
        judge(&syn(false), &s(ETH2)),
        miss(Miss::Device { bound: ETH2, ingress: ETH, l3_master: Some(VRF) })
    );
    // Unbound: only with tcp_l3mdev_accept=1.
    assert_eq!(judge(&syn(false), &s(0)), miss(Miss::OutsideVrf { master: VRF, ingress: ETH }));
    assert!(judge(&syn(true), &s(0)).takes());
    // Without a VRF the sysctl changes nothing for an unbound socket.
    let plain = Syn { l3mdev_accept: false, ..syn_on("10.0.0.1", ETH) };
    assert!(judge(&plain, &s(0)).takes());
}

#[test]
fn exact_address_beats_wildcard_whatever_the_scores() {
    // The wildcard one is device-bound (score 3) and still loses to the exact one (score 2).
    let holders = [sock("0.0.0.0", None, ETH), v4("10.0.0.1")];
    let l = lookup(&syn("10.0.0.1"), &holders, &NONE);
    assert_eq!(l.winner, Winner::One { index: 1 });
    // Dialing another address of the host: only the wildcard one takes it.
    let l = lookup(&syn("10.0.0.9"), &holders, &NONE);
    assert_eq!(l.winner, Winner::One { index: 0 });
}

#[test]
fn device_bound_beats_unbound_and_af_inet_beats_dual_stack() {
    let holders = [v4("0.0.0.0"), sock("0.0.0.0", None, ETH)];
    assert_eq!(lookup(&syn("10.0.0.1"), &holders, &NONE).winner, Winner::One { index: 1 });
    let holders = [v6("::", false), v4("0.0.0.0")];
    assert_eq!(lookup(&syn("10.0.0.1"), &holders, &NONE).winner, Winner::One { index: 1 });
    // For IPv6 the AF_INET one does not compete.
    assert_eq!(lookup(&syn("fd00::1"), &holders, &NONE).winner, Winner::One { index: 0 });
    // A dual-stack one bound to the device ties an unbound AF_INET one: AF_INET is met first.
    let holders = [sock("::", Some(false), ETH), v4("0.0.0.0")];
    assert_eq!(lookup(&syn("10.0.0.1"), &holders, &NONE).winner, Winner::One { index: 1 });
}

#[test]
fn identical_bindings_are_one_reuseport_group() {
    let holders = [v4("0.0.0.0"), v4("0.0.0.0"), v4("0.0.0.0"), v6("::", true)];
    let l = lookup(&syn("10.0.0.1"), &holders, &NONE);
    assert_eq!(l.winner, Winner::ReuseportGroup { members: vec![0, 1, 2] });
    assert_eq!(l.steering, vec![Steering::ReuseportSelector { members: 3 }]);
    assert!(l.accepted());
}

#[test]
fn same_score_different_bindings_of_one_family_is_a_tie() {
    // [::] with and without IPV6_V6ONLY can listen side by side only through SO_REUSEPORT, as
    // two groups (a group shares v6only); for an IPv6 SYN both score 1.
    let holders = [v6("::", false), v6("::", true)];
    let l = lookup(&syn("fd00::1"), &holders, &NONE);
    assert_eq!(l.winner, Winner::Tied { candidates: vec![0, 1] });
    // For IPv4 only the dual-stack one competes.
    assert_eq!(lookup(&syn("10.0.0.1"), &holders, &NONE).winner, Winner::One { index: 0 });
}

#[test]
fn nobody_when_every_listener_misses() {
    let holders = [v4("127.0.0.1"), v6("::", true)];
    let l = lookup(&syn("10.0.0.1"), &holders, &NONE);
    assert_eq!(l.winner, Winner::Nobody);
    assert!(!l.accepted());
    assert!(l.judged.iter().all(|j| !j.judgement.takes()));
    assert!(lookup(&syn("10.0.0.1"), &[], &NONE).winner == Winner::Nobody);
}

#[test]
fn other_ports_and_udp_are_not_judged() {
    let mut other = v4("0.0.0.0");
    other.port = 81;
    let l = lookup(&syn("10.0.0.1"), &[other, v4("127.0.0.1")], &NONE);
    assert_eq!(l.judged.len(), 1);
    assert_eq!(l.judged[0].socket.addr, ip("127.0.0.1"));
    assert_eq!(l.winner, Winner::Nobody);

    let entry = |proto| SockEntry {
        family: Family::V4,
        proto,
        addr: ip("0.0.0.0"),
        port: 80,
        bound_dev_if: 0,
        uid: 0,
        inode: 1,
        cookie: 5,
        v6only: None,
        backlog: None,
        accept_queue: None,
    };
    let l = lookup_in_dump(&syn("10.0.0.1"), &[entry(Proto::Udp), entry(Proto::Tcp)], &NONE);
    assert_eq!(l.judged.len(), 1);
    assert_eq!(l.judged[0].socket.cookie, 5);
    assert_eq!(l.winner, Winner::One { index: 0 });
}

#[test]
fn sk_lookup_programs_are_reported_as_steering() {
    let holders = [v4("0.0.0.0")];
    let l = lookup(&syn("10.0.0.1"), &holders, &SkLookupState::Attached(vec![42]));
    assert_eq!(l.steering, vec![Steering::SkLookup { program_ids: vec![42] }]);
    let l = lookup(&syn("10.0.0.1"), &holders, &SkLookupState::Unknown("EPERM".into()));
    assert_eq!(l.steering, vec![Steering::SkLookupUnknown { error: "EPERM".into() }]);
    assert!(lookup(&syn("10.0.0.1"), &holders, &NONE).steering.is_empty());
    let failed: SkLookupState = Err(std::io::Error::other("no BPF")).into();
    assert_eq!(failed, SkLookupState::Unknown("no BPF".into()));
    assert_eq!(SkLookupState::from(Ok(vec![3])), SkLookupState::Attached(vec![3]));
}

#[test]
fn socket_from_listener_view() {
    let view = ListenerView {
        kind: "listener",
        netns: crate::probes::sock_event::NetnsRef { inode: 1, name: "host".into() },
        pid: None,
        pids: vec![],
        comm: None,
        family: "ipv6",
        proto: "tcp",
        addr: "::".into(),
        port: 80,
        backlog: None,
        accept_queue: None,
        v6only: Some(true),
        loopback_only: false,
        bound_dev_if: Some(ETH),
        cookie: 9,
    };
    let s = Socket::from_view(&view).unwrap();
    assert_eq!(
        s,
        Socket {
            family: Family::V6,
            addr: ip("::"),
            port: 80,
            v6only: Some(true),
            bound_dev_if: ETH,
            cookie: 9
        }
    );
    assert_eq!(Socket::from_view(&ListenerView { proto: "udp", ..view.clone() }), None);
    assert_eq!(Socket::from_view(&ListenerView { addr: "x".into(), ..view.clone() }), None);
    assert_eq!(Socket::from_view(&ListenerView { addr: "10.0.0.1".into(), ..view.clone() }), None);
    assert_eq!(Socket::from_view(&ListenerView { family: "unix", ..view }), None);
}

#[test]
fn descriptions_name_both_sides() {
    let names = |i: u32| match i {
        LO => Some("lo".to_string()),
        ETH => Some("eth0".to_string()),
        _ => None,
    };
    let one = |s: Socket, syn: &Syn| {
        let l = lookup(syn, &[s], &NONE);
        describe(&l.judged[0], syn, &names)
    };
    assert_eq!(
        one(v4("127.0.0.1"), &syn("::1")),
        "the server listens on 127.0.0.1:80 (IPv4 only, loopback only); the client dialed ::1 \
         (port 80, IPv6)"
    );
    assert_eq!(
        one(v6("::", true), &syn("10.0.0.1")),
        "the server listens on [::]:80 (IPv6 only: IPV6_V6ONLY); the client dialed 10.0.0.1 \
         (port 80, IPv4)"
    );
    assert_eq!(
        one(v6("::1", true), &syn("127.0.0.1")),
        "the server listens on [::1]:80 (IPv6 only: bound to one IPv6 address, loopback only); \
         the client dialed 127.0.0.1 (port 80, IPv4)"
    );
    assert_eq!(
        one(v4("127.0.0.1"), &syn("127.0.0.2")),
        "the server listens on 127.0.0.1:80 (IPv4 only, loopback only), only on 127.0.0.1; the \
         client dialed 127.0.0.2 (port 80, IPv4), another loopback address"
    );
    assert_eq!(
        one(v4("10.0.0.1"), &syn("10.0.0.2")),
        "the server listens on 10.0.0.1:80 (IPv4 only), only on 10.0.0.1; the client dialed \
         10.0.0.2 (port 80, IPv4), another address"
    );
    let local = Syn::new(ip("127.0.0.1"), 80, Ingress::from_inside(LO));
    assert_eq!(
        one(sock("0.0.0.0", None, ETH), &local),
        "the server listens on 0.0.0.0:80 (IPv4 only, bound to interface eth0); the client's SYN to 127.0.0.1 (port 80, IPv4) arrived on lo from a client on \
         this host"
    );
    let vrf = Syn {
        l3mdev_accept: false,
        ..Syn::new(
            ip("10.0.0.1"),
            80,
            Ingress { ifindex: ETH, loopback: false, l3_master: Some(VRF) },
        )
    };
    assert_eq!(
        one(sock("0.0.0.0", None, ETH2), &vrf),
        "the server listens on 0.0.0.0:80 (IPv4 only, bound to interface ifindex 3); the \
         client's SYN to 10.0.0.1 (port 80, IPv4) arrived on \
         eth0 (enslaved to VRF ifindex 10)"
    );
    assert_eq!(
        one(v4("0.0.0.0"), &vrf),
        "the server listens on 0.0.0.0:80 (IPv4 only), outside VRF ifindex 10; the client's SYN \
         to 10.0.0.1 (port 80, IPv4) arrived on eth0, enslaved to it, and \
         net.ipv4.tcp_l3mdev_accept is 0"
    );
    assert_eq!(
        one(v6("::", false), &syn("10.0.0.1")),
        "the server listens on [::]:80 (IPv4 and IPv6); it takes the client's SYN to 10.0.0.1 \
         (port 80, IPv4)"
    );
    assert_eq!(
        describe_listener(&v6("::ffff:127.0.0.1", false), &names),
        "[::ffff:127.0.0.1]:80 (IPv4 only: a v4-mapped address, loopback only)"
    );
}

#[test]
fn lookup_serialises_for_json_evidence() {
    let l = lookup(&syn("::1"), &[v4("127.0.0.1")], &NONE);
    let j = serde_json::to_value(&l).unwrap();
    assert_eq!(j["winner"]["kind"], "nobody");
    assert_eq!(j["judged"][0]["judgement"], "misses");
    assert_eq!(j["judged"][0]["reason"], "family");
    assert_eq!(j["judged"][0]["socket"]["addr"], "127.0.0.1");
}

#[test]
fn explain_adds_the_winner_and_steering() {
    let names = |_: u32| None;
    let l = lookup(&syn("::1"), &[v4("127.0.0.1")], &NONE);
    assert_eq!(
        explain(&l, &names),
        vec![
            "the server listens on 127.0.0.1:80 (IPv4 only, loopback only); the client dialed ::1 \
         (port 80, IPv6)"
                .to_string(),
            "no listener takes the SYN: the kernel answers with a RST".into(),
        ]
    );
    let l = lookup(&syn("::1"), &[], &NONE);
    assert_eq!(explain(&l, &names), vec!["nothing listens on TCP port 80".to_string()]);
    let l = lookup(
        &syn("10.0.0.1"),
        &[v4("0.0.0.0"), v4("0.0.0.0")],
        &SkLookupState::Attached(vec![4]),
    );
    let text = explain(&l, &names);
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(text[2].starts_with("sk_lookup BPF program(s) [4] are attached"), "{}", text[2]);
    assert!(
        text[3].starts_with("2 listeners share this binding through SO_REUSEPORT"),
        "{}",
        text[3]
    );
    let l = lookup(
        &syn("fd00::1"),
        &[v6("::", false), v6("::", true)],
        &SkLookupState::Unknown("EPERM".into()),
    );
    let text = explain(&l, &names);
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(text[2].starts_with("these score the same"), "{}", text[2]);
    assert!(
        text[2].contains("[::]:80 (IPv4 and IPv6); [::]:80 (IPv6 only: IPV6_V6ONLY)"),
        "{}",
        text[2]
    );
    assert_eq!(text[3], "whether an sk_lookup BPF program steers this namespace is unknown: EPERM");
}
