//! Malformed and unusual packets (issue 5) through `reach_ingress` and `reach_egress` with
//! BPF_PROG_TEST_RUN: every input passes through (TC_ACT_UNSPEC), the programs never fault, and
//! the counters and events are exactly those of an independent user-space model of the parse
//! (`expect`), with the exact tuple for every event.
//!
//! The kernel refuses some inputs before any program runs (EINVAL): frames shorter than an
//! Ethernet header, and frames whose EtherType is IPv4 (IPv6) with less than 20 (40) bytes
//! after it (`bpf_prog_test_run_skb` checks `skb_headlen` for the protocol it derived). On an
//! Ethernet device a classifier never sees the former; the latter do reach a classifier, so the
//! truncated-IP cases run twice: untagged (asserting the kernel's refusal) and behind an
//! 802.1Q tag, where the kernel's check does not apply and the classifier must count them as
//! malformed.
use aya::maps::{MapData, RingBuf};
use reach_common::net::{NetConfig, PacketEvent, counter, header_path, packet_kind};
use reach_tests::{
    Rng,
    frames::{self, *},
    require_root,
};

const WATCHED: u16 = 443;
const UNWATCHED: u16 = 8080;
const CLIENT_PORT: u16 = 40000;
const NETNS: u32 = 4026530001;
/// TC_ACT_UNSPEC as the u32 the kernel returns.
const PASS: u32 = -1i32 as u32;
/// Extension headers the classifier walks (headers.rs MAX_IPV6_EXT).
const MAX_IPV6_EXT: usize = 6;
/// `__sk_buff.ifindex` of a test run: the loopback device.
const TEST_IFINDEX: u32 = 1;

// ------------------------------------------------------------------ the model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    v: u8,
    flags: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    Tcp(Seg),
    NotTcp,
    NotIp,
    Malformed,
}

fn get<const N: usize>(p: &[u8], off: usize) -> Option<[u8; N]> {
    p.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// What the classifiers should make of `p` (an Ethernet frame), written from the protocol
/// definitions: Ethernet with at most two VLAN tags; IPv4 (IHL ≥ 5, first fragment only); IPv6
/// with at most MAX_IPV6_EXT extension headers (non-first fragments are not TCP); a TCP header
/// that is complete, including the options its data offset claims.
fn model(p: &[u8]) -> Parse {
    let Some(et) = get::<2>(p, 12) else { return Parse::Malformed };
    let mut et = u16::from_be_bytes(et);
    let mut off = 14;
    for _ in 0..2 {
        if et != ETH_P_8021Q && et != ETH_P_8021AD {
            break;
        }
        let Some(tag) = get::<4>(p, off) else { return Parse::Malformed };
        et = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
    }
    match et {
        ETH_P_IP => model_v4(p, off),
        ETH_P_IPV6 => model_v6(p, off),
        _ => Parse::NotIp,
    }
}

fn model_v4(p: &[u8], off: usize) -> Parse {
    let Some(h) = get::<20>(p, off) else { return Parse::Malformed };
    let ihl = (h[0] & 0x0f) as usize * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return Parse::Malformed;
    }
    if h[9] != IPPROTO_TCP || u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Parse::NotTcp;
    }
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s[..4].copy_from_slice(&h[12..16]);
    d[..4].copy_from_slice(&h[16..20]);
    model_tcp(p, off + ihl, 4, s, d)
}

fn model_v6(p: &[u8], off: usize) -> Parse {
    let Some(h) = get::<40>(p, off) else { return Parse::Malformed };
    if h[0] >> 4 != 6 {
        return Parse::Malformed;
    }
    let s: [u8; 16] = h[8..24].try_into().unwrap();
    let d: [u8; 16] = h[24..40].try_into().unwrap();
    let mut next = h[6];
    let mut at = off + 40;
    for walked in 0..=MAX_IPV6_EXT {
        if next == IPPROTO_TCP {
            return model_tcp(p, at, 6, s, d);
        }
        if walked == MAX_IPV6_EXT {
            break;
        }
        match next {
            0 | 43 | 60 => {
                let Some(e) = get::<2>(p, at) else { return Parse::Malformed };
                next = e[0];
                at += (e[1] as usize + 1) * 8;
            }
            44 => {
                let Some(e) = get::<4>(p, at) else { return Parse::Malformed };
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    return Parse::NotTcp;
                }
                next = e[0];
                at += 8;
            }
            51 => {
                let Some(e) = get::<2>(p, at) else { return Parse::Malformed };
                next = e[0];
                at += (e[1] as usize + 2) * 4;
            }
            _ => return Parse::NotTcp,
        }
    }
    Parse::NotTcp
}

fn model_tcp(p: &[u8], off: usize, v: u8, saddr: [u8; 16], daddr: [u8; 16]) -> Parse {
    let Some(t) = get::<20>(p, off) else { return Parse::Malformed };
    let doff = (t[12] >> 4) as usize * 4;
    if doff < 20 || off + doff > p.len() {
        return Parse::Malformed;
    }
    Parse::Tcp(Seg {
        v,
        flags: t[13],
        saddr,
        daddr,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(t[8..12].try_into().unwrap()),
    })
}

/// How the classifier reads `p`'s headers (test runs hand it linear skbs, so never PULLED):
/// directly, unless a VLAN tag is in the frame or IPv6 extension headers come before TCP,
/// which the `bpf_skb_load_bytes` parser walks.
fn header_path_of(p: &[u8]) -> u8 {
    match get::<2>(p, 12).map(u16::from_be_bytes) {
        Some(ETH_P_8021Q | ETH_P_8021AD) => header_path::LOADED,
        Some(ETH_P_IPV6) if p.get(14 + 6) != Some(&IPPROTO_TCP) => header_path::LOADED,
        _ => header_path::DIRECT,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    fn prog(self) -> &'static str {
        match self {
            Dir::Ingress => "reach_ingress",
            Dir::Egress => "reach_egress",
        }
    }
}

/// Counter deltas and events one run of `dir` on `p` must produce (port filter on, WATCHED
/// watched, no rate limit).
fn expect(dir: Dir, p: &[u8]) -> ([u64; counter::SLOTS as usize], Option<(u8, Seg)>) {
    // One counter per packet at most: the one naming its fate (none for plain traffic).
    let mut c = [0u64; counter::SLOTS as usize];
    let seg = match model(p) {
        Parse::Tcp(seg) => seg,
        Parse::Malformed => {
            c[counter::MALFORMED as usize] = 1;
            return (c, None);
        }
        Parse::NotTcp | Parse::NotIp => return (c, None),
    };
    let syn = seg.flags & SYN != 0 && seg.flags & ACK == 0;
    match dir {
        Dir::Ingress if syn => {
            if seg.dport == WATCHED {
                c[counter::SYN_EVENTS as usize] = 1;
                return (c, Some((packet_kind::SYN, seg)));
            }
            c[counter::SYN_PORT_FILTERED as usize] = 1;
        }
        Dir::Egress if seg.sport == WATCHED => {
            let kind = if seg.flags & RST != 0 {
                packet_kind::RST
            } else if seg.flags & (SYN | ACK) == SYN | ACK {
                packet_kind::SYNACK
            } else {
                return (c, None);
            };
            c[counter::REPLY_EVENTS as usize] = 1;
            return (c, Some((kind, seg)));
        }
        _ => {}
    }
    (c, None)
}

// ------------------------------------------------------------------ the harness

struct Bed {
    cls: Classifiers,
    ring: RingBuf<MapData>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// One test at a time: the drop tracers' tests see every skb the kernel frees, those of the
/// classifiers' test runs (BPF_PROG_TEST_RUN frees its skb) included.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bed {
    fn new() -> Bed {
        require_root();
        let serial = serial();
        let config =
            NetConfig { netns: NETNS, filter_ports: 1, rate_per_sec: 0, burst: 0, filter_netns: 0 };
        let mut cls = Classifiers::load(config, &[WATCHED]).expect("load reach-net");
        let ring = cls.take_events().unwrap();
        Bed { cls, ring, _serial: serial }
    }

    /// Runs `dir` once on `p`; returns the counter deltas and the events.
    fn run(&mut self, dir: Dir, p: &[u8]) -> ([u64; counter::SLOTS as usize], Vec<PacketEvent>) {
        let before = self.cls.counters().unwrap();
        let r = self.cls.run(dir.prog(), p, 1);
        if kernel_refuses(p) {
            let err = r.expect_err("the kernel refuses this input");
            assert!(is_einval(&err), "{}: {err:?}", hex(p));
            assert_eq!(self.cls.counters().unwrap(), before, "nothing ran on {}", hex(p));
            return ([0; counter::SLOTS as usize], drain(&mut self.ring));
        }
        let r = r.unwrap_or_else(|e| panic!("{} faulted on {}: {e:?}", dir.prog(), hex(p)));
        assert_eq!(r.return_value, PASS, "{} must pass {} through", dir.prog(), hex(p));
        let after = self.cls.counters().unwrap();
        let mut delta = [0u64; counter::SLOTS as usize];
        for i in 0..delta.len() {
            delta[i] = after[i] - before[i];
        }
        (delta, drain(&mut self.ring))
    }

    /// Runs `dir` on `p` and asserts the model's counters and event; returns the event.
    fn check(&mut self, what: &str, dir: Dir, p: &[u8]) -> Option<PacketEvent> {
        let (want_c, want_ev) =
            if kernel_refuses(p) { ([0; counter::SLOTS as usize], None) } else { expect(dir, p) };
        let (got_c, events) = self.run(dir, p);
        assert_eq!(
            named(&got_c),
            named(&want_c),
            "{what} via {}: counters (frame {})",
            dir.prog(),
            hex(p)
        );
        match want_ev {
            None => {
                assert!(
                    events.is_empty(),
                    "{what} via {}: unexpected events {events:?}",
                    dir.prog()
                );
                None
            }
            Some((kind, s)) => {
                assert_eq!(events.len(), 1, "{what} via {}: events {events:?}", dir.prog());
                let e = events[0];
                let mut want = PacketEvent::zeroed();
                want.kind = kind;
                want.ip_version = s.v;
                want.tcp_flags = s.flags;
                want.ifindex = TEST_IFINDEX;
                want.netns = NETNS;
                want.ts_ns = e.ts_ns;
                want.saddr = s.saddr;
                want.daddr = s.daddr;
                want.sport = s.sport;
                want.dport = s.dport;
                want.seq = s.seq;
                want.ack_seq = s.ack;
                want.header_path = header_path_of(p);
                assert_eq!(e, want, "{what} via {}: event", dir.prog());
                assert_ne!(e.ts_ns, 0, "{what}: timestamp");
                Some(e)
            }
        }
    }

    /// Both classifiers; asserts what the model says and what the case says it should be.
    fn case(&mut self, what: &str, p: &[u8], want: Want) {
        let got = model(p);
        match want {
            Want::Syn => assert!(
                matches!(got, Parse::Tcp(s) if s.flags & (SYN | ACK) == SYN && s.dport == WATCHED),
                "{what}: {got:?}"
            ),
            Want::Malformed => assert_eq!(got, Parse::Malformed, "{what}"),
            Want::NotTcp => assert_eq!(got, Parse::NotTcp, "{what}"),
            Want::NotIp => assert_eq!(got, Parse::NotIp, "{what}"),
            Want::Tcp => assert!(matches!(got, Parse::Tcp(_)), "{what}: {got:?}"),
        }
        let ev = self.check(what, Dir::Ingress, p);
        assert_eq!(ev.is_some(), want == Want::Syn, "{what}: ingress event");
        self.check(what, Dir::Egress, p);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    /// A SYN to the watched port: one ingress SYN event.
    Syn,
    Tcp,
    Malformed,
    NotTcp,
    NotIp,
}

/// Inputs `bpf_prog_test_run_skb` rejects with EINVAL before running anything (see the top).
fn kernel_refuses(p: &[u8]) -> bool {
    match get::<2>(p, 12).map(u16::from_be_bytes) {
        None => true,
        Some(ETH_P_IP) => p.len() < ETH_HLEN + 20,
        Some(ETH_P_IPV6) => p.len() < ETH_HLEN + 40,
        Some(_) => false,
    }
}

fn is_einval(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EINVAL))
}

fn named(c: &[u64; counter::SLOTS as usize]) -> Vec<(&'static str, u64)> {
    frames::COUNTER_NAMES.iter().copied().zip(c.iter().copied()).filter(|(_, v)| *v != 0).collect()
}

fn hex(p: &[u8]) -> String {
    p.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------ frames

fn v4_frame(tags: &[u16], ip: Vec<u8>) -> Vec<u8> {
    ethernet(tags, ETH_P_IP, &ip)
}

fn syn_tcp(dport: u16) -> Vec<u8> {
    tcp(CLIENT_PORT, dport, 0x0102_0304, 0, SYN, &SYN_OPTIONS)
}

fn v4_syn_ip(dport: u16) -> Vec<u8> {
    ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x4000, &[], &syn_tcp(dport))
}

fn v6_frame(next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(&[], ETH_P_IPV6, &ipv6(CLIENT_V6, SERVER_V6, next, payload))
}

/// IPv6 SYN to `dport` behind `n` extension headers (cycling through the kinds walked).
fn v6_syn_behind(n: usize, dport: u16) -> Vec<u8> {
    const KINDS: [u8; 5] =
        [ext::HOP_BY_HOP, ext::DEST_OPTS, ext::ROUTING, ext::AUTH, ext::DEST_OPTS];
    let kinds: Vec<u8> = (0..n).map(|i| KINDS[i % KINDS.len()]).collect();
    let (first, chain) = ext_chain(&kinds, IPPROTO_TCP, &syn_tcp(dport));
    v6_frame(first, &chain)
}

// ------------------------------------------------------------------ cases

#[test]
fn inputs_shorter_than_ethernet_are_refused_by_the_kernel() {
    let mut bed = Bed::new();
    for len in [0usize, 10, 13] {
        let frame = &syn_v4(CLIENT_PORT, WATCHED)[..len];
        let before = bed.cls.counters().unwrap();
        for dir in [Dir::Ingress, Dir::Egress] {
            let err = bed.cls.run(dir.prog(), frame, 1).expect_err("a frame shorter than 14 bytes");
            assert!(is_einval(&err), "{len} bytes: {err:?}");
        }
        assert_eq!(bed.cls.counters().unwrap(), before, "{len} bytes: nothing ran");
    }
    assert!(drain(&mut bed.ring).is_empty());
}

#[test]
fn valid_syns_are_events_with_their_exact_tuple() {
    let mut bed = Bed::new();
    bed.case("SYN v4", &syn_v4(CLIENT_PORT, WATCHED), Want::Syn);
    bed.case("SYN v4, unwatched port", &syn_v4(CLIENT_PORT, UNWATCHED), Want::Tcp);
    bed.case("SYN v6", &syn_v6(CLIENT_PORT, WATCHED), Want::Syn);
    let opts = [0x94, 4, 0, 0]; // router alert
    let ip = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0, &opts, &syn_tcp(WATCHED));
    bed.case("SYN v4 with IP options (IHL 6)", &v4_frame(&[], ip), Want::Syn);
    let ip = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x2000, &[], &syn_tcp(WATCHED));
    bed.case("SYN v4, first fragment (MF, offset 0)", &v4_frame(&[], ip), Want::Syn);
    let t = tcp(CLIENT_PORT, WATCHED, 7, 0, SYN | 0x40 | 0x80, &SYN_OPTIONS);
    let ip = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0, &[], &t);
    bed.case("ECN-setup SYN (SYN|ECE|CWR)", &v4_frame(&[], ip), Want::Syn);
    // Ethernet padding after a minimal SYN does not matter.
    let mut f = v4_frame(
        &[],
        ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0, &[], &{
            tcp(CLIENT_PORT, WATCHED, 9, 0, SYN, &[])
        }),
    );
    f.resize(60, 0);
    bed.case("minimal SYN padded to 60 bytes", &f, Want::Syn);
}

#[test]
fn replies_are_egress_events() {
    let mut bed = Bed::new();
    let t = tcp(WATCHED, CLIENT_PORT, 0x0a0b_0c0d, 0x0102_0305, SYN | ACK, &SYN_OPTIONS);
    let f = v4_frame(&[], ipv4(SERVER_V4, CLIENT_V4, IPPROTO_TCP, 0, &[], &t));
    bed.case("SYN-ACK v4", &f, Want::Tcp);
    assert!(bed.check("SYN-ACK v4", Dir::Egress, &f).is_some());
    let t = tcp(WATCHED, CLIENT_PORT, 0, 0x0102_0305, RST | ACK, &[]);
    let f = ethernet(&[], ETH_P_IPV6, &ipv6(SERVER_V6, CLIENT_V6, IPPROTO_TCP, &t));
    bed.case("RST v6", &f, Want::Tcp);
    assert!(bed.check("RST v6", Dir::Egress, &f).is_some());
    bed.case("ACK v4", &ack_v4(CLIENT_PORT, WATCHED), Want::Tcp);
    bed.case("UDP v4", &udp_v4(CLIENT_PORT, WATCHED), Want::NotTcp);
}

#[test]
fn truncated_and_bogus_ipv4() {
    let mut bed = Bed::new();
    let full = syn_v4(CLIENT_PORT, WATCHED);
    let tagged = v4_frame(&[ETH_P_8021Q], v4_syn_ip(WATCHED));
    for cut in [0, 1, 10, 19] {
        let untagged = &full[..14 + cut];
        assert!(kernel_refuses(untagged));
        bed.case(&format!("IPv4 header cut at {cut} bytes (refused)"), untagged, Want::Malformed);
        bed.case(
            &format!("802.1Q, IPv4 header cut at {cut} bytes"),
            &tagged[..18 + cut],
            Want::Malformed,
        );
    }
    let mut f = full.clone();
    f[14] = 0x44; // IHL 4 words = 16 bytes
    bed.case("IPv4 IHL 4 (< 5)", &f, Want::Malformed);
    f[14] = 0x40;
    bed.case("IPv4 IHL 0", &f, Want::Malformed);
    let mut f = full.clone();
    f[14] = 0x4f; // 60 bytes of header claimed, 20 + 40 present: TCP would start past the end
    bed.case("IPv4 IHL 15 pointing past the end", &f, Want::Malformed);
    let mut f = full.clone();
    f[14] = 0x65; // version 6 in an IPv4 EtherType
    bed.case("IPv4 EtherType, version 6", &f, Want::Malformed);
    let ip = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x0001, &[], &syn_tcp(WATCHED));
    bed.case("IPv4 non-first fragment (offset 8), proto TCP", &v4_frame(&[], ip), Want::NotTcp);
    let ip = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x2000 | 0x1fff, &[], &syn_tcp(WATCHED));
    bed.case("IPv4 last-offset fragment with MF", &v4_frame(&[], ip), Want::NotTcp);
}

#[test]
fn truncated_and_bogus_tcp() {
    let mut bed = Bed::new();
    let full = syn_v4(CLIENT_PORT, WATCHED);
    let tcp_at = 14 + 20;
    for cut in [0, 1, 12, 13, 19] {
        bed.case(&format!("TCP header cut at {cut} bytes"), &full[..tcp_at + cut], Want::Malformed);
    }
    for doff in [0u8, 1, 4] {
        let mut f = full.clone();
        f[tcp_at + 12] = doff << 4;
        bed.case(&format!("TCP doff {doff} (< 5)"), &f, Want::Malformed);
    }
    // The header is complete but its data offset claims options that are not there.
    let mut f = full.clone();
    f[tcp_at + 12] = 15 << 4;
    bed.case("TCP doff 15 past the end (40 of 60 header bytes)", &f, Want::Malformed);
    bed.case("SYN with its options cut", &full[..tcp_at + 24], Want::Malformed);
    let v6 = syn_v6(CLIENT_PORT, WATCHED);
    bed.case("IPv6 SYN cut in the TCP header", &v6[..14 + 40 + 10], Want::Malformed);
    assert!(kernel_refuses(&v6[..14 + 39]));
    bed.case("IPv6 header cut (refused)", &v6[..14 + 39], Want::Malformed);
    let v6_tagged = ethernet(&[ETH_P_8021Q], ETH_P_IPV6, &v6[14..]);
    for cut in [0, 8, 39] {
        bed.case(
            &format!("802.1Q, IPv6 header cut at {cut}"),
            &v6_tagged[..18 + cut],
            Want::Malformed,
        );
    }
    let mut f = v6.clone();
    f[14] = 0x45;
    bed.case("IPv6 EtherType, version 4", &f, Want::Malformed);
}

#[test]
fn ipv6_extension_chains() {
    let mut bed = Bed::new();
    for n in 1..=MAX_IPV6_EXT {
        bed.case(
            &format!("SYN v6 behind {n} extension headers"),
            &v6_syn_behind(n, WATCHED),
            Want::Syn,
        );
    }
    for n in [MAX_IPV6_EXT + 1, MAX_IPV6_EXT + 2, 12] {
        bed.case(
            &format!("SYN v6 behind {n} extension headers (beyond the bound)"),
            &v6_syn_behind(n, WATCHED),
            Want::NotTcp,
        );
    }
    // Fragments: the first carries TCP, the others do not.
    let mut chain = ext_header(ext::FRAGMENT, IPPROTO_TCP, 0, 0, true);
    chain.extend(syn_tcp(WATCHED));
    bed.case("IPv6 first fragment (offset 0, M)", &v6_frame(ext::FRAGMENT, &chain), Want::Syn);
    for offset in [1u16, 185, 0x1fff] {
        let mut chain = ext_header(ext::FRAGMENT, IPPROTO_TCP, 0, offset, offset != 0x1fff);
        chain.extend(syn_tcp(WATCHED));
        bed.case(
            &format!("IPv6 fragment at offset {offset}"),
            &v6_frame(ext::FRAGMENT, &chain),
            Want::NotTcp,
        );
    }
    let mut chain = ext_header(ext::HOP_BY_HOP, ext::FRAGMENT, 0, 0, false);
    chain.extend(ext_header(ext::FRAGMENT, IPPROTO_TCP, 0, 3, false));
    chain.extend(syn_tcp(WATCHED));
    bed.case(
        "hop-by-hop then non-first fragment",
        &v6_frame(ext::HOP_BY_HOP, &chain),
        Want::NotTcp,
    );
    // Long options header (2 KiB claimed) pointing past the end.
    let mut chain = ext_header(ext::DEST_OPTS, IPPROTO_TCP, 0, 0, false);
    chain[1] = 255;
    chain.extend(syn_tcp(WATCHED));
    bed.case(
        "destination options longer than the packet",
        &v6_frame(ext::DEST_OPTS, &chain),
        Want::Malformed,
    );
    let f = v6_frame(ext::HOP_BY_HOP, &[]);
    bed.case("hop-by-hop announced, nothing after the IPv6 header", &f, Want::Malformed);
    let f = v6_frame(59, &syn_tcp(WATCHED));
    bed.case("IPv6 no-next-header", &f, Want::NotTcp);
    let f = v6_frame(IPPROTO_UDP, &udp(CLIENT_PORT, WATCHED, &[0; 16]));
    bed.case("UDP v6", &f, Want::NotTcp);
}

#[test]
fn vlan_tags() {
    let mut bed = Bed::new();
    let ip = v4_syn_ip(WATCHED);
    bed.case("802.1Q SYN", &v4_frame(&[ETH_P_8021Q], ip.clone()), Want::Syn);
    bed.case("802.1ad SYN", &v4_frame(&[ETH_P_8021AD], ip.clone()), Want::Syn);
    bed.case(
        "QinQ SYN (88a8, 8100)",
        &v4_frame(&[ETH_P_8021AD, ETH_P_8021Q], ip.clone()),
        Want::Syn,
    );
    bed.case("double 8100 SYN", &v4_frame(&[ETH_P_8021Q, ETH_P_8021Q], ip.clone()), Want::Syn);
    let v6 = ipv6(CLIENT_V6, SERVER_V6, IPPROTO_TCP, &syn_tcp(WATCHED));
    bed.case("QinQ SYN v6", &ethernet(&[ETH_P_8021AD, ETH_P_8021Q], ETH_P_IPV6, &v6), Want::Syn);
    let three = [ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q];
    bed.case("three tags", &v4_frame(&three, ip.clone()), Want::NotIp);
    let tagged = v4_frame(&[ETH_P_8021Q], ip.clone());
    bed.case("802.1Q tag cut", &tagged[..16], Want::Malformed);
    bed.case("802.1Q tag, nothing after", &tagged[..18], Want::Malformed);
    bed.case("ARP", &ethernet(&[], ETH_P_ARP, &[0, 1, 8, 0, 6, 4, 0, 1]), Want::NotIp);
    bed.case("ARP inside 802.1Q", &ethernet(&[ETH_P_8021Q], ETH_P_ARP, &[0; 28]), Want::NotIp);
    bed.case("LLDP", &ethernet(&[], 0x88cc, &[0; 46]), Want::NotIp);
    bed.case("802.3 length field", &ethernet(&[], 46, &[0; 46]), Want::NotIp);
}

/// xorshift64*: deterministic, no dependency.
/// What the model (or the kernel's refusal) makes of a frame, for counting what inputs reach.
fn outcome(frame: &[u8]) -> &'static str {
    match model(frame) {
        _ if kernel_refuses(frame) => "refused by the kernel",
        Parse::Tcp(_) => "tcp",
        Parse::NotTcp => "not tcp",
        Parse::NotIp => "not ip",
        Parse::Malformed => "malformed",
    }
}

#[test]
fn random_garbage_matches_the_model() {
    let mut bed = Bed::new();
    let mut rng = Rng(0x5eed_0005_1234_5678);
    let seeds: Vec<Vec<u8>> = vec![
        syn_v4(CLIENT_PORT, WATCHED),
        syn_v6(CLIENT_PORT, WATCHED),
        v6_syn_behind(3, WATCHED),
        v6_syn_behind(MAX_IPV6_EXT, WATCHED),
        v4_frame(&[ETH_P_8021AD, ETH_P_8021Q], v4_syn_ip(WATCHED)),
        {
            let t = tcp(WATCHED, CLIENT_PORT, 1, 2, SYN | ACK, &SYN_OPTIONS);
            v4_frame(&[], ipv4(SERVER_V4, CLIENT_V4, IPPROTO_TCP, 0, &[], &t))
        },
        udp_v4(CLIENT_PORT, WATCHED),
    ];
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    const N: usize = 3000;
    for i in 0..N {
        let frame = match i % 4 {
            // Pure noise.
            0 => {
                let len = ETH_HLEN + rng.below(200);
                rng.bytes(len)
            }
            // Noise behind a plausible EtherType (and version nibble).
            1 => {
                let len = ETH_HLEN + rng.below(140);
                let mut f = rng.bytes(len);
                let (et, v) =
                    [(ETH_P_IP, 0x40), (ETH_P_IPV6, 0x60), (ETH_P_8021Q, 0), (ETH_P_8021AD, 0)]
                        [rng.below(4)];
                f[12..14].copy_from_slice(&et.to_be_bytes());
                if f.len() > 14 && v != 0 {
                    f[14] = v | (f[14] & 0x0f);
                }
                f
            }
            // A valid frame with a few bytes changed and maybe cut.
            _ => {
                let mut f = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(f.len());
                    f[at] = rng.next_u64() as u8;
                }
                if rng.below(3) == 0 {
                    let len = ETH_HLEN + rng.below(f.len() - ETH_HLEN + 1);
                    f.truncate(len);
                }
                f
            }
        };
        let what = format!("random input #{i}");
        let label = outcome(&frame);
        *seen.entry(label).or_default() += 1;
        bed.check(&what, Dir::Ingress, &frame);
        bed.check(&what, Dir::Egress, &frame);
    }
    // The inputs reach every outcome, not only "not IP".
    for label in ["tcp", "not tcp", "not ip", "malformed"] {
        assert!(seen.get(label).copied().unwrap_or(0) >= 50, "too few {label} inputs: {seen:?}");
    }
}

// ------------------------------------------------------------------ the drop tracer

/// The kfree_skb tracer decodes a dropped packet's TCP header from the skb; a dropped IPv6
/// packet that is not TCP (here UDP to a closed port, NO_SOCKET) must not become a TCP drop,
/// even when its payload has the SYN bit where a TCP header's flags would be. Port filter off:
/// every "SYN" drop is reported, so a misread UDP datagram would show up as one.
#[test]
fn drop_tracer_ignores_dropped_udp() {
    require_root();
    let _s = serial();
    // Both attachments: tp_btf, then the classic tracepoint (the fallback for older kernels).
    for classic in [false, true] {
        udp_drops_are_not_tcp(classic);
    }
}

fn udp_drops_are_not_tcp(classic: bool) {
    use std::{net::UdpSocket, thread, time::Duration};

    use reach_agent::{
        lab::NetNs,
        probes::net::{DropTap, NetOptions},
    };
    let ns = NetNs::new("dropin").unwrap();
    let mut tap = DropTap::attach(
        &NetOptions { netns: vec![], ports: vec![], rate_per_sec: 0, burst: 0 },
        classic,
    )
    .unwrap();
    let mut ring = tap.take_events().unwrap();
    // UDP payload byte 5 is where a TCP header's flag byte (offset 13) would be: SYN.
    let payload = [0u8, 0, 0, 0, 0, SYN, 0, 0];
    const V4_PORT: u16 = 47_001;
    const V6_PORT: u16 = 47_002;
    const TCP_PORT: u16 = 47_003;
    ns.run_in(move || -> std::io::Result<()> {
        let s4 = UdpSocket::bind("127.0.0.1:0")?;
        let s6 = UdpSocket::bind("[::1]:0")?;
        for _ in 0..3 {
            s4.send_to(&payload, ("127.0.0.1", V4_PORT))?;
            s6.send_to(&payload, ("::1", V6_PORT))?;
            // A TCP SYN to a closed port: dropped too, and reported (the positive control).
            let refused = std::net::TcpStream::connect_timeout(
                &("::1".parse::<std::net::IpAddr>().unwrap(), TCP_PORT).into(),
                Duration::from_secs(1),
            )
            .expect_err("nothing listens on the control port");
            assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
        }
        Ok(())
    })
    .unwrap()
    .unwrap();
    // Each round's datagrams were dropped before its SYN: once the third SYN's drop is in the
    // ring, every datagram's drop (if the tracer wrongly reported it) is there too.
    let mut events = Vec::<reach_common::net::PacketEvent>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while events.iter().filter(|e| e.dport == TCP_PORT && e.ip_version == 6).count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 20 s waiting for the 3 control SYN drops to port {TCP_PORT}: \
             {events:?}"
        );
        thread::sleep(Duration::from_millis(20));
        events.extend(drain(&mut ring));
    }
    events.extend(drain(&mut ring));
    let ours: Vec<_> =
        events.iter().filter(|e| [V4_PORT, V6_PORT, TCP_PORT].contains(&e.dport)).collect();
    let how = tap.how;
    assert!(
        ours.iter().any(|e| e.dport == TCP_PORT && e.ip_version == 6),
        "{how}: control: {ours:?}"
    );
    let misread: Vec<_> = ours.iter().filter(|e| e.dport != TCP_PORT).collect();
    assert!(misread.is_empty(), "{how}: UDP drops reported as TCP: {misread:?}");
    drop(ring);
    drop(tap);
    ns.remove().unwrap();
}

// ------------------------------------------------------------------ structure-aware mutation

/// A frame built from parts, with where its headers start, so a mutation hits a field.
struct Built {
    frame: Vec<u8>,
    ip: usize,
    l4: usize,
    v6: bool,
}

/// A random well-formed frame: 0-2 VLAN tags, IPv4 (options, fragment fields) or IPv6 (an
/// extension chain up to past the walked depth, fragment headers included), TCP with or
/// without options to a watched or unwatched port, any flags — or UDP.
fn random_frame(rng: &mut Rng) -> Built {
    let tags: Vec<u16> =
        (0..rng.below(3)).map(|_| [ETH_P_8021Q, ETH_P_8021AD][rng.below(2)]).collect();
    let dport = [WATCHED, UNWATCHED, rng.next_u64() as u16][rng.below(3)];
    let flags = [SYN, SYN | ACK, RST, RST | ACK, ACK, rng.next_u64() as u8][rng.below(6)];
    let opts: &[u8] = if rng.below(2) == 0 { &SYN_OPTIONS } else { &[] };
    let l4 = if rng.below(8) == 0 {
        udp(CLIENT_PORT, dport, &[0, 0, 0, 0, 0, SYN, 0, 0])
    } else {
        tcp(CLIENT_PORT, dport, rng.next_u64() as u32, rng.next_u64() as u32, flags, opts)
    };
    let proto = if l4.len() == 16 { IPPROTO_UDP } else { IPPROTO_TCP };
    let eth = ETH_HLEN + 4 * tags.len();
    if rng.below(2) == 0 {
        let options: Vec<u8> = (0..4 * rng.below(4)).map(|_| 1).collect();
        let frag = [0x4000, 0, 0x2000, 0x0001, rng.next_u64() as u16][rng.below(5)];
        let ip = ipv4(CLIENT_V4, SERVER_V4, proto, frag, &options, &l4);
        let ihl = 20 + options.len();
        Built { frame: ethernet(&tags, ETH_P_IP, &ip), ip: eth, l4: eth + ihl, v6: false }
    } else {
        const KINDS: [u8; 5] =
            [ext::HOP_BY_HOP, ext::DEST_OPTS, ext::ROUTING, ext::AUTH, ext::FRAGMENT];
        let kinds: Vec<u8> =
            (0..rng.below(MAX_IPV6_EXT + 3)).map(|_| KINDS[rng.below(KINDS.len())]).collect();
        let (first, chain) = ext_chain(&kinds, proto, &l4);
        let ext_len = chain.len() - l4.len();
        let ip = ipv6(CLIENT_V6, SERVER_V6, first, &chain);
        Built { frame: ethernet(&tags, ETH_P_IPV6, &ip), ip: eth, l4: eth + 40 + ext_len, v6: true }
    }
}

/// Values at the edges of a field of `bytes` bytes.
fn edge(rng: &mut Rng, bytes: usize) -> u64 {
    let max = if bytes >= 8 { u64::MAX } else { (1u64 << (8 * bytes)) - 1 };
    [0, 1, max, max - 1, max / 2, max / 2 + 1, rng.next_u64() & max][rng.below(7)]
}

fn set(f: &mut [u8], at: usize, bytes: usize, v: u64) {
    if at + bytes <= f.len() {
        f[at..at + bytes].copy_from_slice(&v.to_be_bytes()[8 - bytes..]);
    }
}

/// One byte, if the frame still has it.
fn put(f: &mut [u8], at: usize, v: u8) {
    if let Some(b) = f.get_mut(at) {
        *b = v;
    }
}

/// One field of `b` set to an edge value, or the frame cut at a header boundary ± a byte.
fn mutate(rng: &mut Rng, b: &mut Built) {
    let (ip, l4) = (b.ip, b.l4);
    let f = &mut b.frame;
    let old = |f: &[u8], at: usize| f.get(at).copied().unwrap_or(0);
    match rng.below(12) {
        // The EtherType (inner, behind the tags) and the version nibble.
        0 => set(f, ip - 2, 2, [ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q][rng.below(4)] as u64),
        1 => {
            let v = (edge(rng, 1) as u8 & 0xf0) | (old(f, ip) & 0x0f);
            put(f, ip, v)
        }
        // IPv4: IHL, total length, flags/fragment offset, protocol.
        2 if !b.v6 => {
            let v = 0x40 | (edge(rng, 1) as u8 & 0x0f);
            put(f, ip, v)
        }
        3 if !b.v6 => set(f, ip + 2, 2, edge(rng, 2)),
        4 if !b.v6 => set(f, ip + 6, 2, edge(rng, 2)),
        5 if !b.v6 => {
            let v = [IPPROTO_TCP, IPPROTO_UDP, 1, edge(rng, 1) as u8][rng.below(4)];
            put(f, ip + 9, v)
        }
        // IPv6: payload length, next header; an extension header's length or next field.
        2..=3 => set(f, ip + 4, 2, edge(rng, 2)),
        4..=5 => {
            let v =
                [IPPROTO_TCP, ext::HOP_BY_HOP, ext::FRAGMENT, 59, edge(rng, 1) as u8][rng.below(5)];
            put(f, ip + 6, v)
        }
        6 if b.v6 && l4 > ip + 40 => {
            let at = ip + 40 + rng.below(l4 - ip - 40);
            let v = edge(rng, 1) as u8;
            put(f, at, v)
        }
        // TCP: data offset, flags, ports.
        6 | 7 => {
            let v = (edge(rng, 1) as u8) & 0xf0;
            put(f, l4 + 12, v)
        }
        8 => {
            let v = edge(rng, 1) as u8;
            put(f, l4 + 13, v)
        }
        9 => {
            let v = [WATCHED as u64, UNWATCHED as u64, edge(rng, 2)][rng.below(3)];
            set(f, l4 + 2 * rng.below(2), 2, v)
        }
        // Cut at a header boundary, a byte either side.
        _ => {
            let at = [ip, ip + 20, ip + 40, l4, l4 + 13, l4 + 20][rng.below(6)] + rng.below(3);
            let at = at.saturating_sub(1).max(ETH_HLEN).min(f.len());
            f.truncate(at);
        }
    }
}

/// ≥ 100,000 structure-aware inputs (well-formed frames with one to three fields at edge
/// values, or cut at a header boundary) through both classifiers: no run faults, every one
/// passes through unchanged (TC_ACT_UNSPEC), and counters and events match the model.
#[test]
fn structure_aware_mutations_never_fault_change_a_verdict_or_miss_the_model() {
    let mut bed = Bed::new();
    let seed = std::env::var("REACH_FRAMES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0018_0000_0001);
    let mut rng = Rng(seed);
    const N: usize = 100_000;
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for i in 0..N {
        let mut b = random_frame(&mut rng);
        for _ in 0..rng.below(4) {
            mutate(&mut rng, &mut b);
        }
        let frame = b.frame;
        let label = outcome(&frame);
        *seen.entry(label).or_default() += 1;
        let what = format!("structured input #{i} (REACH_FRAMES_SEED={seed})");
        let dir = if i % 2 == 0 { Dir::Ingress } else { Dir::Egress };
        bed.check(&what, dir, &frame);
    }
    eprintln!("{N} structure-aware inputs: {seen:?}");
    for label in ["tcp", "not tcp", "not ip", "malformed", "refused by the kernel"] {
        assert!(seen.get(label).copied().unwrap_or(0) >= 500, "too few {label} inputs: {seen:?}");
    }
}

/// The drop tracer's parser on the kernel's own drops: ≥ 100,000 structure-aware frames (the
/// generator above, each with a unique TCP sequence number) sent over AF_PACKET into a veth
/// whose far end is a lab namespace that owns their addresses; the kernel frees most of them
/// (no socket, bad headers, no VLAN device). Each attachment (tp_btf, the classic tracepoint)
/// must report exactly what the model says of the frame it freed — a TCP SYN's tuple — and
/// nothing for any other frame; no event may be lost. What the kernel drops is the kernel's
/// business (the tracer never changes a packet's fate); what is reported is the tracer's.
#[test]
fn drop_tracer_reports_the_models_segment_for_100k_structure_aware_frames() {
    require_root();
    let _s = serial();
    for classic in [false, true] {
        structured_drops(classic);
    }
}

fn structured_drops(classic: bool) {
    use std::{os::fd::AsRawFd as _, thread, time::Duration};

    use reach_agent::{
        lab::TwoHosts,
        probes::net::{DropTap, NetOptions},
    };
    let hosts = TwoHosts::new("dropfz").unwrap();
    let srv = &hosts.server;
    // The frames' own addresses, on the receiving end.
    let mac = DST_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    srv.run("ip", &["link", "set", TwoHosts::SERVER_IF, "address", &mac]).unwrap();
    srv.run("ip", &["addr", "add", "192.0.2.20/24", "dev", TwoHosts::SERVER_IF]).unwrap();
    srv.run("ip", &["addr", "add", "2001:db8::20/64", "dev", TwoHosts::SERVER_IF, "nodad"])
        .unwrap();
    let netns =
        std::fs::metadata(srv.path()).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    let mut tap = DropTap::attach(
        &NetOptions { netns: vec![netns], ports: vec![], rate_per_sec: 0, burst: 0 },
        classic,
    )
    .unwrap();
    let how = tap.how;
    let mut ring = tap.take_events().unwrap();
    let before = tap.counters().unwrap();

    let mut rng = Rng(0x5eed_0018_d809_0000 | classic as u64);
    const N: usize = 100_000;
    const BATCH: usize = 500;
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(N);
    for i in 0..N {
        let mut b = random_frame(&mut rng);
        // The sequence number names the frame (mutations never touch it).
        set(&mut b.frame, b.l4 + 4, 4, 0x8000_0000 | i as u64);
        for _ in 0..rng.below(4) {
            mutate(&mut rng, &mut b);
        }
        frames.push(b.frame);
    }
    let sock = hosts
        .client
        .run_in(|| {
            // SAFETY: socket(2) with constant arguments.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
            // SAFETY: fd is ours.
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
        })
        .unwrap();
    let ifindex = hosts
        .client
        .run_in(|| reach_agent::netns::addresses::ifindex(TwoHosts::CLIENT_IF))
        .unwrap()
        .expect("the client's veth");
    // SAFETY: a zeroed sockaddr_ll naming the client's veth.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    let mut events = Vec::new();
    for chunk in frames.chunks(BATCH) {
        for f in chunk {
            // SAFETY: f is a valid buffer; `to` a valid sockaddr_ll.
            let sent = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&raw const to).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            // The kernel refuses frames shorter than a link-layer header up front.
            assert!(
                sent == f.len() as isize || f.len() < ETH_HLEN,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
        // Receive is synchronous on a veth pair; the drops of a batch are in the ring now.
        thread::sleep(Duration::from_millis(2));
        events.extend(drain(&mut ring));
    }
    thread::sleep(Duration::from_millis(200));
    events.extend(drain(&mut ring));
    let after = tap.counters().unwrap();
    let lost = after[counter::OTHER_LOST as usize] - before[counter::OTHER_LOST as usize];
    assert_eq!(lost, 0, "{how}: drop events lost");

    // What the model says each frame is, where it says TCP: a reported drop must be one of
    // those segments (the sequence number makes them unique; a misread — a header taken from
    // the wrong place, bytes past the packet's end — is not among them).
    let segments: std::collections::HashMap<_, usize> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match model(f) {
            Parse::Tcp(s) => Some(((s.v, s.flags, s.saddr, s.daddr, s.sport, s.dport, s.seq), i)),
            _ => None,
        })
        .collect();
    let mut matched = 0usize;
    for e in events.iter().filter(|e| e.kind == packet_kind::DROP) {
        let got = (e.ip_version, e.tcp_flags, e.saddr, e.daddr, e.sport, e.dport, e.seq);
        let Some(&i) = segments.get(&got) else {
            // The frame it came from, if its sequence number is still where it was put.
            let near =
                frames.get((e.seq & 0x7fff_ffff) as usize).map(|f| hex(f)).unwrap_or_default();
            panic!("{how}: a drop no injected frame's segment explains (misread?): {e:?}\n{near}")
        };
        assert!(
            e.tcp_flags & SYN != 0 && e.tcp_flags & ACK == 0,
            "{how}: a non-SYN drop reported: {e:?}\n{}",
            hex(&frames[i])
        );
        matched += 1;
    }
    // Frames the model calls a SYN: each is dropped somewhere (no socket listens there, no
    // VLAN device for a tag, bad headers). Not all become events, and rightly: the stack
    // trims a packet to its IP total length before TCP sees it (a header cut off by a short
    // total length is malformed to the tracer, which reads only what the skb holds), and a
    // double tag leaves the stack holding 802.1Q, not IP. Most must be seen all the same, or
    // the tracer is blind to what it should report.
    let syns = frames
        .iter()
        .filter(|f| matches!(model(f), Parse::Tcp(s) if s.flags & SYN != 0 && s.flags & ACK == 0))
        .count();
    eprintln!(
        "{how}: {N} frames injected, {syns} SYNs among them; {matched} SYN drops reported, \
         each the model's segment"
    );
    assert!(matched * 2 >= syns, "{how}: only {matched} drops reported of {syns} SYNs");
    drop(ring);
    drop(tap);
}
