//! Hand-built frames and a BPF_PROG_TEST_RUN harness for reach's TC classifiers, shared by the
//! classifier input tests and `reach-bench`.
//!
//! The harness loads the `reach-net` object the way `probes::net` does (NET_CONFIG patched
//! before load, WATCHED_PORTS filled) but attaches nothing: programs only run on the frames
//! handed to `BPF_PROG_TEST_RUN`, on the calling namespace's loopback device (ifindex 1).
use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, TestRunResult},
};
use reach_agent::ebpf_objects::{self, program_mut};
use reach_common::net::{NetConfig, PacketEvent, SkbOffsets, counter};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const ETH_HLEN: usize = 14;

/// TCP flag bytes.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;

pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Ethernet header with `tags` (each a TPID: 0x8100 or 0x88a8, VLAN id 100 + index) before
/// `ether_type`, then `payload`.
pub fn ethernet(tags: &[u16], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + 4 * tags.len() + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header: `options` (padded with NOPs to 4 bytes) make IHL > 5; `frag` is the raw
/// flags + fragment-offset field (0x2000 = more fragments, low 13 bits = offset in 8 bytes).
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(1);
    }
    let hlen = 20 + opts.len();
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0x40 | (hlen / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&opts);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 header with `next` as its next header, then `payload`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// IPv6 extension header kinds the classifier walks.
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
}

/// One extension header of kind `kind` whose next header is `next`. Options headers carry
/// `extra8` more 8-byte units of padding; a fragment header carries `frag_offset` (8-byte
/// units) and the M flag; AH carries a 12-byte ICV (24 bytes in all).
pub fn ext_header(kind: u8, next: u8, extra8: u8, frag_offset: u16, more: bool) -> Vec<u8> {
    match kind {
        ext::FRAGMENT => {
            let field = (frag_offset << 3) | u16::from(more);
            let mut h = vec![next, 0];
            h.extend_from_slice(&field.to_be_bytes());
            h.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
            h
        }
        ext::AUTH => {
            let mut h = vec![next, 4, 0, 0];
            h.extend_from_slice(&[0, 0, 0x10, 0x01]); // SPI
            h.extend_from_slice(&[0, 0, 0, 1]); // sequence
            h.extend_from_slice(&[0xaa; 12]); // ICV
            h
        }
        ext::ROUTING => {
            // Type 4 (segment routing) header with segments left 0: skipped like any other.
            let mut h = vec![next, extra8, 4, 0];
            h.resize(8 + 8 * extra8 as usize, 0);
            h
        }
        _ => {
            // Hop-by-hop / destination options: one PadN option filling the header.
            let len = 8 + 8 * extra8 as usize;
            let mut h = vec![next, extra8, 1, (len - 4) as u8];
            h.resize(len, 0);
            h
        }
    }
}

/// A chain of extension headers of `kinds`, in order, ending in `last` (the upper layer).
pub fn ext_chain(kinds: &[u8], last: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, &k) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(last);
        out.extend(ext_header(k, next, 0, 0, false));
    }
    out.extend_from_slice(payload);
    (kinds.first().copied().unwrap_or(last), out)
}

/// A TCP header (doff from the options, padded with NOPs), no payload.
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, options: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(1);
    }
    let doff = (20 + opts.len()) / 4;
    let mut h = Vec::with_capacity(20 + opts.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.extend_from_slice(&[(doff as u8) << 4, flags]);
    h.extend_from_slice(&64240u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h.extend_from_slice(&opts);
    h
}

/// The options of a Linux SYN: MSS 1460, SACK permitted, timestamps, window scale 7.
pub const SYN_OPTIONS: [u8; 20] =
    [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

pub const CLIENT_V4: [u8; 4] = [192, 0, 2, 10];
pub const SERVER_V4: [u8; 4] = [192, 0, 2, 20];
pub const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const SERVER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];

/// A Linux-like SYN over IPv4 (74 bytes) from CLIENT_V4:`sport` to SERVER_V4:`dport`.
pub fn syn_v4(sport: u16, dport: u16) -> Vec<u8> {
    let t = tcp(sport, dport, 0x1000_0001, 0, SYN, &SYN_OPTIONS);
    ethernet(&[], ETH_P_IP, &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x4000, &[], &t))
}

/// The same SYN over IPv6 (94 bytes).
pub fn syn_v6(sport: u16, dport: u16) -> Vec<u8> {
    let t = tcp(sport, dport, 0x1000_0001, 0, SYN, &SYN_OPTIONS);
    ethernet(&[], ETH_P_IPV6, &ipv6(CLIENT_V6, SERVER_V6, IPPROTO_TCP, &t))
}

/// A bare ACK over IPv4 (54 bytes, padded to the 60-byte Ethernet minimum).
pub fn ack_v4(sport: u16, dport: u16) -> Vec<u8> {
    let t = tcp(sport, dport, 0x1000_0002, 0x2000_0001, ACK, &[]);
    let mut f = ethernet(&[], ETH_P_IP, &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, 0x4000, &[], &t));
    f.resize(60, 0);
    f
}

/// A UDP datagram over IPv4 with 32 bytes of payload.
pub fn udp_v4(sport: u16, dport: u16) -> Vec<u8> {
    let u = udp(sport, dport, &[0x5a; 32]);
    ethernet(&[], ETH_P_IP, &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_UDP, 0x4000, &[], &u))
}

/// The classifier programs of one `reach-net` instance, loaded for BPF_PROG_TEST_RUN.
pub struct Classifiers {
    pub ebpf: Ebpf,
    pub config: NetConfig,
}

/// Programs `Classifiers` loads.
pub const PROGRAMS: [&str; 5] =
    ["reach_ingress", "reach_egress", "reach_floor", "reach_cost_clock", "reach_cost_ring"];

impl Classifiers {
    /// Loads the object with `config`, puts `ports` in WATCHED_PORTS and loads the classifiers.
    pub fn load(config: NetConfig, ports: &[u16]) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .override_global("NET_CONFIG", &config, true)
            .override_global("SKB_OFFSETS", &SkbOffsets::ABSENT, true)
            .load(ebpf_objects::net())
            .map_err(|e| anyhow!("loading reach-net: {e:?}"))?;
        reach_agent::probes::net::fill_ports(&mut ebpf, ports)?;
        for name in PROGRAMS {
            let p: &mut SchedClassifier = program_mut(&mut ebpf, name)?;
            p.load().map_err(|e| anyhow!("loading {name}: {e:?}"))?;
        }
        Ok(Self { ebpf, config })
    }

    /// The events ring (taken once).
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        Ok(RingBuf::try_from(self.ebpf.take_map("NET_EVENTS").context("NET_EVENTS taken")?)?)
    }

    /// Runs program `name` `repeat` times on `frame`.
    pub fn run(
        &self,
        name: &str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<TestRunResult, ProgramError> {
        let prog: &SchedClassifier = self
            .ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .unwrap_or_else(|| panic!("{name} missing from reach-net"));
        prog.test_run(TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::new() })
    }

    /// Summed per-CPU counters (`counter::*` slots).
    pub fn counters(&self) -> anyhow::Result<[u64; counter::SLOTS as usize]> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("NET_COUNTERS").context("NET_COUNTERS")?)?;
        let mut out = [0u64; counter::SLOTS as usize];
        for (slot, total) in out.iter_mut().enumerate() {
            *total = map.get(&(slot as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

/// Every event waiting in `ring`.
pub fn drain(ring: &mut RingBuf<MapData>) -> Vec<PacketEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<PacketEvent>() {
            // SAFETY: length checked; PacketEvent is plain data.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PacketEvent>()) });
        }
    }
    out
}

/// Counter slot names, for messages and tables.
pub const COUNTER_NAMES: [&str; counter::SLOTS as usize] = [
    "SYN_EVENTS",
    "SYN_RATE_LIMITED",
    "SYN_PORT_FILTERED",
    "SYN_LOST",
    "MALFORMED",
    "REPLY_EVENTS",
    "DROP_EVENTS",
    "OTHER_LOST",
    "OTHER_RATE_LIMITED",
];
