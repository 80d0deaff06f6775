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
    assert!(c[counter::SYN_EVENTS as usize] >= 1, "{c:?}");
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

/// A SYN whose IP and TCP headers are not in the skb's linear part, as drivers that receive
/// into pages hand them up. AF_PACKET with a virtio-net header builds exactly that: for a frame
/// of a page or more it puts only the link-layer header (`hard_header_len`, 14) in the linear
/// part and the rest in page fragments (packet_snd → packet_alloc_skb), and the veth carries
/// the skb to its peer's ingress as it is. The classifier must pull the headers in and report
/// the SYN with its exact tuple; the event says the headers were pulled, which is what shows
/// the skb really was non-linear.
#[test]
fn a_syn_whose_headers_are_in_page_fragments_is_pulled_and_reported() {
    use reach_common::net::header_path;
    use reach_tests::frames;
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("pkt-frag").unwrap();
    for (ns, iface) in [(&hosts.server, TwoHosts::SERVER_IF), (&hosts.client, TwoHosts::CLIENT_IF)]
    {
        let st = std::process::Command::new("ip")
            .args(["-n", ns.name(), "link", "set", iface, "mtu", "9000"])
            .status()
            .unwrap();
        assert!(st.success(), "ip link set {iface} mtu 9000 in {}", ns.name());
    }
    let how = if reach_tests::kernel_facts::tcx().is_ok() { TcHow::Tcx } else { TcHow::Netlink };
    let mut tap = tap(&hosts, how, vec![7100]);
    let mut ring = tap.take_events().unwrap();

    // A SYN carrying 6000 bytes of data (as TCP Fast Open may): over a page, so paged.
    let mut segment = frames::tcp(40100, 7100, 0x0a0b_0c0d, 0, frames::SYN, &frames::SYN_OPTIONS);
    segment.extend(std::iter::repeat_n(0x5a, 6000));
    let ip = frames::ipv4(
        frames::CLIENT_V4,
        frames::SERVER_V4,
        frames::IPPROTO_TCP,
        0x4000,
        &[],
        &segment,
    );
    let ip_len = ip.len();
    let frame = frames::ethernet(&[], frames::ETH_P_IP, &ip);
    let sent = hosts
        .client
        .run_in(move || send_with_vnet_header(TwoHosts::CLIENT_IF, &frame))
        .unwrap()
        .expect("sending the frame through AF_PACKET with PACKET_VNET_HDR");
    assert_eq!(sent, 10 + 14 + ip_len, "bytes sent (virtio-net header + frame)");

    let mut events = Vec::new();
    wait_for_events(&mut ring, &mut events, "the paged SYN on ingress", |e| {
        e.iter().any(|e| e.kind == packet_kind::SYN && e.dport == 7100)
    });
    let syn = events.iter().find(|e| e.kind == packet_kind::SYN && e.dport == 7100).unwrap();
    assert_eq!(syn.header_path, header_path::PULLED, "headers pulled from fragments: {syn:?}");
    assert_eq!((syn.sport, syn.seq, syn.ip_version), (40100, 0x0a0b_0c0d, 4), "{syn:?}");
    assert_eq!(&syn.saddr[..4], &frames::CLIENT_V4);
    assert_eq!(&syn.daddr[..4], &frames::SERVER_V4);
    // A linear SYN through the same tap is read directly: the fragments made the difference.
    let err = connect_from_client(&hosts, 7100).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    wait_for_events(&mut ring, &mut events, "the kernel's own SYN", |e| {
        e.iter().any(|e| e.kind == packet_kind::SYN && e.dport == 7100 && e.sport != 40100)
    });
    let own = events.iter().find(|e| e.kind == packet_kind::SYN && e.sport != 40100).unwrap();
    assert_eq!(own.header_path, header_path::DIRECT, "{own:?}");
}

/// Sends `frame` on `iface` (calling thread's namespace) through an AF_PACKET socket with
/// PACKET_VNET_HDR, behind an all-zero virtio-net header (no offloads): returns bytes sent.
fn send_with_vnet_header(iface: &str, frame: &[u8]) -> std::io::Result<usize> {
    const PACKET_VNET_HDR: libc::c_int = 15;
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: plain socket calls on a fd closed below; buffers outlive the calls.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let on: libc::c_int = 1;
        let r = libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_VNET_HDR,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        let mut buf = vec![0u8; 10];
        buf.extend_from_slice(frame);
        let n = if r == 0 {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        } else {
            -1
        };
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n < 0 { Err(err) } else { Ok(n as usize) }
    }
}
