//! The packet path (issue 5) through the library: TC classifiers in a lab namespace and the
//! kfree_skb drop tracer, with real SYNs across a veth pair between two lab namespaces.
use std::{
    net::{SocketAddr, TcpStream},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use reach_agent::{
    kernel::{btf::KernelBtf, drop_reasons::DropReasons},
    lab::TwoHosts,
    probes::net::{DropTap, NetOptions, NetnsTap, TcHow},
};
use reach_common::net::{PacketEvent, counter, packet_kind};
use reach_tests::{
    leftovers::{Leftovers, Scope},
    require_root,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn drain(ring: &mut RingBuf<MapData>) -> Vec<PacketEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<PacketEvent>() {
            // SAFETY: length checked; PacketEvent is plain data.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PacketEvent>()) });
        }
    }
    out
}

/// Connects from the client namespace to `port` on the server, bounded.
fn connect_from_client(hosts: &TwoHosts, port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, port));
    hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(drop))
        .unwrap()
}

fn tap(hosts: &TwoHosts, how: TcHow, ports: Vec<u16>) -> NetnsTap {
    let ns = std::fs::metadata(hosts.server.path())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    NetnsTap::attach(
        ns,
        hosts.server.path().to_path_buf(),
        &[TwoHosts::SERVER_IF.to_string()],
        &NetOptions { ports, ..NetOptions::default() },
        how,
    )
    .expect("attach classifiers")
}

/// Drains `ring` into `seen` until `found` holds for what was seen; fails naming `what` after
/// a generous deadline (events reach the ring buffer asynchronously).
fn wait_for_events(
    ring: &mut RingBuf<MapData>,
    seen: &mut Vec<PacketEvent>,
    what: &str,
    found: impl Fn(&[PacketEvent]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        seen.extend(drain(ring));
        if found(seen) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after 20 s waiting for {what}: {seen:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A SYN to a closed port: seen on ingress, answered with RST on egress, dropped NO_SOCKET; and
/// afterwards nothing of the taps is left (programs, links, TCX, qdisc, filters, records).
fn closed_port_is_syn_rst_and_no_socket_drop(how: TcHow) {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("pkt").unwrap();
    let check =
        Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &[TwoHosts::SERVER_IF] });
    let mut tap = tap(&hosts, how, vec![7000]);
    let mut drops =
        DropTap::attach(&NetOptions { ports: vec![7000], ..NetOptions::default() }, false).unwrap();
    let mut ring = tap.take_events().unwrap();
    let mut drop_ring = drops.take_events().unwrap();

    let err = connect_from_client(&hosts, 7000).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "closed port must be refused: {err}"
    );
    let mut events = Vec::new();
    wait_for_events(&mut ring, &mut events, "the SYN on ingress and the RST on egress", |e| {
        [packet_kind::SYN, packet_kind::RST].iter().all(|k| e.iter().any(|e| e.kind == *k))
    });
    let syn = events.iter().find(|e| e.kind == packet_kind::SYN).expect("SYN seen on ingress");
    assert_eq!((syn.dport, syn.ip_version), (7000, 4));
    assert_eq!(&syn.saddr[..4], &TwoHosts::CLIENT_V4.octets());
    assert_eq!(&syn.daddr[..4], &TwoHosts::SERVER_V4.octets());
    let rst = events.iter().find(|e| e.kind == packet_kind::RST).expect("RST seen on egress");
    assert_eq!((rst.sport, rst.dport), (7000, syn.sport));

    let reasons = DropReasons::load(&KernelBtf::load().unwrap()).unwrap();
    let sport = syn.sport;
    let mut dropped = Vec::new();
    wait_for_events(
        &mut drop_ring,
        &mut dropped,
        "the drop event of the SYN to the closed port",
        |d| d.iter().any(|d| d.dport == 7000 && d.sport == sport),
    );
    let dropped = dropped.into_iter().find(|d| d.dport == 7000 && d.sport == sport).unwrap();
    assert_eq!(reasons.name(dropped.reason), "NO_SOCKET");
    assert_eq!(dropped.netns as u64, tap.netns, "drop attributed to the server namespace");
    assert_ne!(dropped.location, 0);
    let c = tap.counters().unwrap();
    assert!(c[counter::SYN as usize] >= 1 && c[counter::SYN_EVENTS as usize] >= 1, "{c:?}");
    drop((ring, drop_ring, tap, drops));
    // Still under SERIAL: no other test of this binary has taps of its own in this process.
    check.assert_nothing_new(&format!("the {how:?} taps"));
}

/// TCX where the kernel has it (the test's own TCX probe decides, not a version string);
/// where it has not (before 6.6), forcing TCX must fail and leave nothing behind.
#[test]
fn closed_port_via_tcx() {
    match reach_tests::kernel_facts::tcx() {
        Ok(()) => closed_port_is_syn_rst_and_no_socket_drop(TcHow::Tcx),
        Err(refusal) => {
            require_root();
            let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            let hosts = TwoHosts::new("pkt-notcx").unwrap();
            let check = Leftovers::snapshot(&Scope {
                netns: Some(&hosts.server),
                ifaces: &[TwoHosts::SERVER_IF],
            });
            let ns = std::fs::metadata(hosts.server.path())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap();
            let err = NetnsTap::attach(
                ns,
                hosts.server.path().to_path_buf(),
                &[TwoHosts::SERVER_IF.to_string()],
                &NetOptions { ports: vec![7000], ..NetOptions::default() },
                TcHow::Tcx,
            )
            .err()
            .unwrap_or_else(|| {
                panic!("a TCX attach succeeded although the kernel refused TCX ({refusal})")
            });
            let text = format!("{err:#}");
            assert!(
                text.contains("reach_ingress") && text.contains(TwoHosts::SERVER_IF),
                "the error must name the program and the interface: {text}"
            );
            check.assert_nothing_new("a refused TCX attach");
        }
    }
}

#[test]
fn closed_port_via_netlink_clsact_and_cleanup() {
    closed_port_is_syn_rst_and_no_socket_drop(TcHow::Netlink);
}
