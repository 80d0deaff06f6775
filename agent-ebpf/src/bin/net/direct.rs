//! The classifiers' fast path: headers read straight from the skb's linear data
//! (`data`..`data_end`), one bounds check per header, after branching on `skb->protocol`, so a
//! packet that is not IP is never touched and a UDP datagram costs one IP header read.
//!
//! What the fast path does not cover it hands back: headers beyond the linear part
//! (`Fast::Pull`: the caller pulls them in with `bpf_skb_pull_data` and comes back), and VLAN
//! tags inside the packet or IPv6 extension headers (`Fast::Slow`: the `bpf_skb_load_bytes`
//! parser of headers.rs, which handles every case). At TC ingress the outer VLAN tag is never
//! in the packet (the stack moved it to `vlan_tci` before TC runs), so `Slow` is for stacked
//! tags, frames injected at egress and test runs.
use core::mem::MaybeUninit;

use aya_ebpf::programs::TcContext;
use network_types::{ip::Ipv4Hdr, ip::Ipv6Hdr, tcp::TcpHdr};

use crate::headers::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, Parsed, Segment, is_ipv6_ext,
};

/// What a classifier wants of a TCP segment, decided on its flags and ports alone so that
/// the addresses are copied only for segments that become events.
pub enum Interest {
    /// Nothing: no counter, no event.
    None,
    /// Only this counter slot.
    Count(u32),
    /// The whole segment.
    Report,
}

/// The fast path's answer. It carries no segment: a wanted segment is written whole to the
/// caller's `out`, because LLVM may copy an enum's payload on paths where it was never set,
/// and the verifier rejects reads of uninitialised stack. Only `Tcp` initialises `out`.
pub enum Fast {
    /// A wanted TCP segment, written to `out`.
    Tcp,
    /// Not IP, not TCP, or malformed (never `Parsed::Tcp`).
    Done(Parsed),
    /// A TCP segment the classifier has no use for beyond this counter (if any).
    Skip(Option<u32>),
    /// A header lies beyond the linear part, inside the packet.
    Pull,
    Slow,
}

/// Parses the packet whose IP header starts `L2` bytes in (14: Ethernet, 0: none); of a TCP
/// segment, `interest(flags, sport, dport)` decides how much is read.
#[inline(always)]
pub fn parse<const L2: usize, F: Fn(u8, u16, u16) -> Interest>(
    ctx: &TcContext,
    interest: &F,
    out: &mut MaybeUninit<Segment>,
) -> Fast {
    match u16::from_be(ctx.skb.protocol() as u16) {
        ETH_P_IP => ipv4::<L2, F>(ctx, interest, out),
        ETH_P_IPV6 => ipv6::<L2, F>(ctx, interest, out),
        ETH_P_8021Q | ETH_P_8021AD => Fast::Slow,
        _ => Fast::Done(Parsed::NotIp),
    }
}

/// Bytes after the link-layer header that hold any IPv4 header and TCP header (60 + 60), or
/// IPv6 and a TCP header with options: what one `bpf_skb_pull_data` brings in.
pub const PULL_BYTES: usize = 120;

/// `end` bytes of packet are needed but `data_end` comes first: truncated if the packet is
/// that short, otherwise the rest is in fragments.
#[inline(always)]
fn short(ctx: &TcContext, end: usize) -> Fast {
    if end > ctx.len() as usize { Fast::Done(Parsed::Malformed) } else { Fast::Pull }
}

#[inline(always)]
fn ipv4<const L2: usize, F: Fn(u8, u16, u16) -> Interest>(
    ctx: &TcContext,
    interest: &F,
    out: &mut MaybeUninit<Segment>,
) -> Fast {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + L2 + Ipv4Hdr::LEN > data_end {
        return short(ctx, L2 + Ipv4Hdr::LEN);
    }
    // SAFETY: the 20 bytes were bounds-checked against data_end just above.
    let ip = unsafe { &*((data + L2) as *const Ipv4Hdr) };
    let ihl = (ip.vihl & 0x0f) as usize * 4;
    if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Fast::Done(Parsed::Malformed);
    }
    // Only the first fragment carries the TCP header.
    if ip.proto != IPPROTO_TCP || u16::from_be_bytes(ip.frags) & 0x1fff != 0 {
        return Fast::Done(Parsed::NotTcp);
    }
    tcp(ctx, L2 + ihl, 4, interest, out, || {
        let mut saddr = [0u8; 16];
        let mut daddr = [0u8; 16];
        saddr[..4].copy_from_slice(&ip.src_addr);
        daddr[..4].copy_from_slice(&ip.dst_addr);
        (saddr, daddr)
    })
}

#[inline(always)]
fn ipv6<const L2: usize, F: Fn(u8, u16, u16) -> Interest>(
    ctx: &TcContext,
    interest: &F,
    out: &mut MaybeUninit<Segment>,
) -> Fast {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + L2 + Ipv6Hdr::LEN > data_end {
        return short(ctx, L2 + Ipv6Hdr::LEN);
    }
    // SAFETY: bounds-checked just above.
    let ip = unsafe { &*((data + L2) as *const Ipv6Hdr) };
    if ip.vcf[0] >> 4 != 6 {
        return Fast::Done(Parsed::Malformed);
    }
    match ip.next_hdr {
        IPPROTO_TCP => tcp(ctx, L2 + Ipv6Hdr::LEN, 6, interest, out, || (ip.src_addr, ip.dst_addr)),
        n if is_ipv6_ext(n) => Fast::Slow,
        _ => Fast::Done(Parsed::NotTcp),
    }
}

#[inline(always)]
fn tcp<F: Fn(u8, u16, u16) -> Interest>(
    ctx: &TcContext,
    off: usize,
    ip_version: u8,
    interest: &F,
    out: &mut MaybeUninit<Segment>,
    addrs: impl FnOnce() -> ([u8; 16], [u8; 16]),
) -> Fast {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + off + TcpHdr::LEN > data_end {
        return short(ctx, off + TcpHdr::LEN);
    }
    // SAFETY: bounds-checked just above; raw bytes (TcpHdr's offset and flags are bitfields).
    let th = unsafe { &*((data + off) as *const [u8; TcpHdr::LEN]) };
    // The options the data offset claims must be in the packet (not necessarily linear: they
    // are not read), as in the load_bytes parser.
    let doff = (th[12] >> 4) as usize * 4;
    if doff < TcpHdr::LEN || off + doff > ctx.len() as usize {
        return Fast::Done(Parsed::Malformed);
    }
    let (flags, sport, dport) =
        (th[13], u16::from_be_bytes([th[0], th[1]]), u16::from_be_bytes([th[2], th[3]]));
    match interest(flags, sport, dport) {
        Interest::None => return Fast::Skip(None),
        Interest::Count(slot) => return Fast::Skip(Some(slot)),
        Interest::Report => {}
    }
    let (saddr, daddr) = addrs();
    out.write(Segment::of(th, ip_version, saddr, daddr));
    Fast::Tcp
}
