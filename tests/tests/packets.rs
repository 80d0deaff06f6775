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
use reach_tests::require_root;

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

fn closed_port_is_syn_rst_and_no_socket_drop(how: TcHow) -> TwoHosts {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("pkt").unwrap();
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
    thread::sleep(Duration::from_millis(100));

    let events = drain(&mut ring);
    let syn = events.iter().find(|e| e.kind == packet_kind::SYN).expect("SYN seen on ingress");
    assert_eq!((syn.dport, syn.ip_version), (7000, 4));
    assert_eq!(&syn.saddr[..4], &TwoHosts::CLIENT_V4.octets());
    assert_eq!(&syn.daddr[..4], &TwoHosts::SERVER_V4.octets());
    let rst = events.iter().find(|e| e.kind == packet_kind::RST).expect("RST seen on egress");
    assert_eq!((rst.sport, rst.dport), (7000, syn.sport));

    let reasons = DropReasons::load(&KernelBtf::load().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let dropped = loop {
        let d = drain(&mut drop_ring);
        if let Some(d) = d.into_iter().find(|d| d.dport == 7000 && d.sport == syn.sport) {
            break d;
        }
        assert!(Instant::now() < deadline, "no drop event for the SYN to the closed port");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reasons.name(dropped.reason), "NO_SOCKET");
    assert_eq!(dropped.netns as u64, tap.netns, "drop attributed to the server namespace");
    assert_ne!(dropped.location, 0);
    let c = tap.counters().unwrap();
    assert!(c[counter::SYN as usize] >= 1 && c[counter::SYN_EVENTS as usize] >= 1, "{c:?}");
    drop(ring);
    drop(tap);
    hosts
}

/// Nothing reach attached or created remains on the server interface.
fn assert_interface_clean(hosts: &TwoHosts) {
    let qdisc = hosts.server.run("tc", &["qdisc", "show", "dev", TwoHosts::SERVER_IF]).unwrap();
    assert!(!qdisc.contains("clsact"), "clsact qdisc left behind: {qdisc}");
    for dir in ["ingress", "egress"] {
        let f =
            hosts.server.run("tc", &["filter", "show", "dev", TwoHosts::SERVER_IF, dir]).unwrap();
        assert!(f.trim().is_empty(), "{dir} filter left behind: {f}");
    }
}

#[test]
fn closed_port_via_tcx() {
    let hosts = closed_port_is_syn_rst_and_no_socket_drop(TcHow::Tcx);
    assert_interface_clean(&hosts);
}

#[test]
fn closed_port_via_netlink_clsact_and_cleanup() {
    let hosts = closed_port_is_syn_rst_and_no_socket_drop(TcHow::Netlink);
    assert_interface_clean(&hosts);
}
