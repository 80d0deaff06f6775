//! Bounded header parsing for the TC classifiers: Ethernet (+ up to two 802.1Q/802.1ad tags),
//! IPv4 with options, IPv6 with up to `MAX_IPV6_EXT` extension headers, then TCP.
//!
//! This is the classifiers' complete parser, behind the fast path of direct.rs: every read goes
//! through `bpf_skb_load_bytes` (TcContext::load), which works on non-linear skbs, and the
//! verifier needs no packet-pointer range proofs for the variable offsets that stacked VLAN
//! tags and IPv6 extension headers produce.
//!
//! The IP and TCP parsers are generic over where the bytes come from (`Source`), so the drop
//! tracer decodes a freed skb's headers (read from kernel memory) with the same rules.
use core::mem::MaybeUninit;

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TcContext};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, ip::Ipv6Hdr, tcp::TcpHdr, vlan::VlanHdr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_TCP: u8 = 6;
/// Extension headers walked before giving up (hop-by-hop, routing, fragment, dest opts, AH…).
pub const MAX_IPV6_EXT: usize = 6;

/// IPv6 extension headers [`ipv6`] walks: hop-by-hop, routing, fragment, AH, destination options.
#[inline(always)]
pub fn is_ipv6_ext(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 51 | 60)
}

/// A parsed TCP segment.
#[derive(Clone, Copy)]
pub struct Segment {
    pub ip_version: u8,
    pub flags: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack_seq: u32,
}

impl Segment {
    /// The segment whose fixed TCP header is `th` (raw bytes: 12 holds the data offset, 13 the
    /// flags), carried by an IP packet of `ip_version` between `saddr` and `daddr`.
    #[inline(always)]
    pub fn of(th: &[u8], ip_version: u8, saddr: [u8; 16], daddr: [u8; 16]) -> Segment {
        Segment {
            ip_version,
            flags: th[13],
            saddr,
            daddr,
            sport: u16::from_be_bytes([th[0], th[1]]),
            dport: u16::from_be_bytes([th[2], th[3]]),
            seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
            ack_seq: u32::from_be_bytes([th[8], th[9], th[10], th[11]]),
        }
    }
}

pub enum Parsed {
    Tcp(Segment),
    /// IP but not (the first fragment of) TCP, or an extension chain longer than we walk.
    NotTcp,
    NotIp,
    /// A header shorter than its fields claim.
    Malformed,
}

/// Where the parsers read a packet's bytes.
pub trait Source {
    /// The `T` at byte `off`, None when it cannot be read.
    fn read<T>(&self, off: usize) -> Option<T>;
    /// Whether the packet has at least `end` bytes (true when its end is unknown).
    fn has(&self, end: usize) -> bool;
}

impl Source for TcContext {
    #[inline(always)]
    fn read<T>(&self, off: usize) -> Option<T> {
        self.load(off).ok()
    }

    #[inline(always)]
    fn has(&self, end: usize) -> bool {
        end <= self.len() as usize
    }
}

/// Packet bytes in kernel memory from a base address (a freed skb's network header), read
/// with `bpf_probe_read_kernel`, up to `len` bytes: the skb's linear data after that header.
/// The stack drops packets *because* their headers are short or lie (PKT_TOO_SMALL), and the
/// head buffer goes on past the data, so nothing past `len` may be taken for the packet.
pub struct KernelBytes {
    pub base: u64,
    pub len: usize,
}

impl Source for KernelBytes {
    #[inline(always)]
    fn read<T>(&self, off: usize) -> Option<T> {
        if off + core::mem::size_of::<T>() > self.len {
            return None;
        }
        // SAFETY: bpf_probe_read_kernel validates the address and fails on a fault.
        unsafe { bpf_probe_read_kernel((self.base + off as u64) as *const T) }.ok()
    }

    #[inline(always)]
    fn has(&self, end: usize) -> bool {
        end <= self.len
    }
}

/// Bytes the drop tracer copies from a freed skb's network header in one read: an IPv4
/// header without options and a TCP header (40), or IPv6 and TCP (60). The copy cannot fault
/// where the packet is shorter: the head buffer goes on past its data with tailroom and the
/// skb's `skb_shared_info` — which is why [`copied`] takes only what `avail` covers.
pub const DROP_HEADER_BYTES: usize = 60;

/// What [`copied`] made of the drop tracer's copy.
pub enum Copied {
    /// A TCP segment, written to the caller's `out`.
    Tcp,
    NotTcp,
    Malformed,
    /// Neither shape [`copied`] decodes: read it field by field.
    Other,
}

/// The two shapes nearly every TCP segment has, IPv4 without options and IPv6 without
/// extension headers, decoded from the drop tracer's copy at constant offsets (a variable
/// offset into the copy is more than 6.1's verifier follows). The segment goes to `out`, not
/// into the result: LLVM may copy an enum payload on paths that never set it, which the
/// verifier rejects.
#[inline(always)]
pub fn copied(b: &[u8; DROP_HEADER_BYTES], avail: usize, out: &mut MaybeUninit<Segment>) -> Copied {
    // The IP header itself must be there before any of its fields is believed.
    if avail < 20 {
        return Copied::Malformed;
    }
    match b[0] {
        0x45 => {
            if b[9] != IPPROTO_TCP || u16::from_be_bytes([b[6], b[7]]) & 0x1fff != 0 {
                return Copied::NotTcp;
            }
            let mut saddr = [0u8; 16];
            let mut daddr = [0u8; 16];
            saddr[..4].copy_from_slice(&b[12..16]);
            daddr[..4].copy_from_slice(&b[16..20]);
            tcp_at::<20>(b, avail, 4, saddr, daddr, out)
        }
        v if v >> 4 == 6 && b[6] == IPPROTO_TCP => {
            let mut saddr = [0u8; 16];
            let mut daddr = [0u8; 16];
            saddr.copy_from_slice(&b[8..24]);
            daddr.copy_from_slice(&b[24..40]);
            tcp_at::<40>(b, avail, 6, saddr, daddr, out)
        }
        _ => Copied::Other,
    }
}

#[inline(always)]
fn tcp_at<const OFF: usize>(
    b: &[u8; DROP_HEADER_BYTES],
    avail: usize,
    ip_version: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    out: &mut MaybeUninit<Segment>,
) -> Copied {
    let th = &b[OFF..OFF + TcpHdr::LEN];
    // The whole header its data offset claims, options included, within the packet (as the
    // general parser's `has` asks): a cut-off header is malformed, not a segment.
    let doff = (th[12] >> 4) as usize * 4;
    if doff < TcpHdr::LEN || OFF + doff > avail {
        return Copied::Malformed;
    }
    out.write(Segment::of(th, ip_version, saddr, daddr));
    Copied::Tcp
}

/// Parses the packet; `no_l2` when the interface has no link-layer header.
#[inline(always)]
pub fn parse(ctx: &TcContext, no_l2: bool) -> Parsed {
    let (ether_type, l3) = if no_l2 {
        (u16::from_be(ctx.skb.protocol() as u16), 0)
    } else {
        match link_layer(ctx) {
            Some(v) => v,
            None => return Parsed::Malformed,
        }
    };
    match ether_type {
        ETH_P_IP => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn link_layer(ctx: &TcContext) -> Option<(u16, usize)> {
    let eth: EthHdr = ctx.load(0).ok()?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut off = EthHdr::LEN;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = ctx.load(off).ok()?;
        ether_type = u16::from_be(vlan.ether_type);
        off += VlanHdr::LEN;
    }
    Some((ether_type, off))
}

/// IPv4 at `off` (then TCP).
#[inline(always)]
pub fn ipv4<S: Source>(ctx: &S, off: usize) -> Parsed {
    let Some(ip) = ctx.read::<Ipv4Hdr>(off) else { return Parsed::Malformed };
    let ihl = (ip.vihl & 0x0f) as usize * 4;
    if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Parsed::Malformed;
    }
    // Only the first fragment carries the TCP header.
    let frag_offset = u16::from_be_bytes(ip.frags) & 0x1fff;
    if ip.proto != IPPROTO_TCP || frag_offset != 0 {
        return Parsed::NotTcp;
    }
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    saddr[..4].copy_from_slice(&ip.src_addr);
    daddr[..4].copy_from_slice(&ip.dst_addr);
    tcp(ctx, off + ihl, 4, saddr, daddr)
}

/// IPv6 at `off`, its extension headers, then TCP.
#[inline(always)]
pub fn ipv6<S: Source>(ctx: &S, off: usize) -> Parsed {
    let Some(ip) = ctx.read::<Ipv6Hdr>(off) else { return Parsed::Malformed };
    if ip.vcf[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let mut next = ip.next_hdr;
    let mut l4 = off + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            IPPROTO_TCP => return tcp(ctx, l4, 6, ip.src_addr, ip.dst_addr),
            // hop-by-hop, routing, destination options: length in 8-octet units after the first 8.
            0 | 43 | 60 => {
                let Some(h) = ctx.read::<[u8; 2]>(l4) else { return Parsed::Malformed };
                next = h[0];
                l4 += (h[1] as usize + 1) * 8;
            }
            // fragment: fixed 8 bytes; a non-first fragment has no TCP header.
            44 => {
                let Some(h) = ctx.read::<[u8; 4]>(l4) else { return Parsed::Malformed };
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Parsed::NotTcp;
                }
                next = h[0];
                l4 += 8;
            }
            // authentication header: length in 4-octet units minus 2.
            51 => {
                let Some(h) = ctx.read::<[u8; 2]>(l4) else { return Parsed::Malformed };
                next = h[0];
                l4 += (h[1] as usize + 2) * 4;
            }
            _ => return Parsed::NotTcp,
        }
    }
    if next == IPPROTO_TCP { tcp(ctx, l4, 6, ip.src_addr, ip.dst_addr) } else { Parsed::NotTcp }
}

#[inline(always)]
fn tcp<S: Source>(ctx: &S, off: usize, ip_version: u8, saddr: [u8; 16], daddr: [u8; 16]) -> Parsed {
    // The fixed header as raw bytes, in one read (TcpHdr's data offset and flags are bitfields):
    // 12 = data offset (high nibble), 13 = flags.
    let Some(th) = ctx.read::<[u8; TcpHdr::LEN]>(off) else { return Parsed::Malformed };
    // The data offset covers the options: a header whose options are cut off is as truncated as
    // one cut inside its first 20 bytes (the stack drops both as too small).
    let doff = (th[12] >> 4) as usize * 4;
    if doff < TcpHdr::LEN || !ctx.has(off + doff) {
        return Parsed::Malformed;
    }
    Parsed::Tcp(Segment::of(&th, ip_version, saddr, daddr))
}
