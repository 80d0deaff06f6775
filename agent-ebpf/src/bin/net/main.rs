//! reach's packet path: ingress SYNs and egress replies (TC classifiers) and kernel drops
//! (`kfree_skb`), as `PacketEvent`s.
//!
//! The classifiers never change a packet's fate: they return TC_ACT_UNSPEC, which for a
//! direct-action clsact filter means "continue as if this filter did not exist" and for TCX is
//! TCX_NEXT (run the next program), so other tools' programs on the same hook still run. A
//! packet updates at most one per-CPU counter; SYNs of watched ports become events, bounded by
//! a per-CPU token bucket so a SYN flood cannot flood user space (what it suppresses is
//! counted). Each classifier comes in two variants, for interfaces with an Ethernet header and
//! without one (`_l3`): the link-layer length is a constant of the program, not a lookup.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;

mod direct;
mod headers;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_probe_read_kernel_buf, generated::bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, classifier, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use direct::{Fast, Interest};
use headers::{
    Copied, DROP_HEADER_BYTES, ETH_P_IP, ETH_P_IPV6, KernelBytes, Parsed, Segment, Source as _,
    copied, ipv4, ipv6,
};
use reach_common::net::{
    Bucket, IGNORED_REASON_LIMIT, IGNORED_REASON_WORDS, NetConfig, PORT_WORDS, PacketEvent,
    SkbOffsets, counter, header_path, packet_kind, tcp_flag,
};
use reach_ebpf::kread::{deref, read};

/// Patched by user space before loading (one instance per watched namespace).
#[unsafe(no_mangle)]
static NET_CONFIG: NetConfig = NetConfig::DEFAULT;
#[unsafe(no_mangle)]
static SKB_OFFSETS: SkbOffsets = SkbOffsets::ABSENT;

/// Packet events. 256 KiB ≈ 3000 events between two user-space reads.
#[map]
static NET_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);
/// Every this many events of one kind on one CPU (≈ 11 KiB of records) wake the reader.
const WAKEUP_EVERY: u64 = 128;

#[map]
static NET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);
/// Ports whose SYNs (and drops and replies) are reported when `filter_ports` is set, as a
/// bitmap: an array lookup is inlined by the verifier, a hash lookup is a helper call and a
/// hash (20–30 ns) on every SYN.
#[map]
static WATCHED_PORTS: Array<u64> = Array::with_max_entries(PORT_WORDS, 0);
/// Network namespaces (inodes) whose drops are reported; empty = every namespace. The drop
/// tracer sees the whole machine, so without this a busy host namespace would spend the token
/// budget (and the ring) on traffic nobody asked about.
#[map]
static WATCHED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
/// Core drop reasons that never concern a TCP segment (`IGNORED_REASON_LIMIT` bits), filled
/// from the kernel's BTF enum by user space: the drop tracer returns on them at once.
#[map]
static IGNORED_REASONS: Array<u64> = Array::with_max_entries(IGNORED_REASON_WORDS, 0);
/// Token buckets per CPU: slot 0 for SYNs, slot 1 for replies and drops.
#[map]
static BUCKETS: PerCpuArray<Bucket> = PerCpuArray::with_max_entries(2, 0);
macro_rules! cfg {
    ($f:ident) => {
        // SAFETY: volatile read of a loader-patched global (no constant folding of the zeros).
        unsafe { core::ptr::read_volatile(&NET_CONFIG.$f) }
    };
}

macro_rules! skb_off {
    ($f:ident) => {
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile(&SKB_OFFSETS.$f) }
    };
}

/// The one counter update a packet may make; returns the new count (0 if the slot is
/// missing, which cannot happen for the `counter::*` slots).
#[inline(always)]
fn count(slot: u32) -> u64 {
    match NET_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; BPF programs are not preempted on their CPU.
        Some(c) => unsafe {
            *c += 1;
            *c
        },
        None => 0,
    }
}

/// The clock, read once per reported packet (token bucket and event share it).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Token bucket: `rate_per_sec` tokens per second per CPU, up to `burst`. Rate 0 = no bound.
#[inline(always)]
fn take_token(slot: u32, now: u64) -> bool {
    let rate = cfg!(rate_per_sec) as u64;
    if rate == 0 {
        return true;
    }
    let Some(b) = BUCKETS.get_ptr_mut(slot) else { return false };
    // SAFETY: per-CPU bucket.
    let b = unsafe { &mut *b };
    let burst = cfg!(burst).max(1) as u64;
    // Capping the elapsed time at 1 s keeps elapsed × rate (rate < 2^32) inside 64 bits: BPF has
    // no 128-bit multiply, and a second refills any bucket whose burst ≤ rate anyway.
    let elapsed = now.saturating_sub(b.last_ns).min(1_000_000_000);
    let refill = elapsed * rate / 1_000_000_000;
    if refill > 0 {
        b.tokens = (b.tokens + refill).min(burst);
        b.last_ns = now;
    } else if b.last_ns == 0 {
        b.tokens = burst;
        b.last_ns = now;
    }
    if b.tokens == 0 {
        return false;
    }
    b.tokens -= 1;
    true
}

#[inline(always)]
fn port_watched(port: u16) -> bool {
    WATCHED_PORTS.get((port >> 6) as u32).is_some_and(|w| *w & (1u64 << (port & 63)) != 0)
}

#[inline(always)]
fn watched(port: u16) -> bool {
    cfg!(filter_ports) == 0 || port_watched(port)
}

/// Writes an event straight into the ring (no copy on the stack) and counts it in `sent`, or
/// in `lost` when the ring is full.
///
/// Waking the reader costs microseconds (an irq_work per record when the ring was empty), far
/// more than the event itself, and asking the ring how full it is costs a read of the
/// reader's cache line. Readers also drain on a short timer, so only every `WAKEUP_EVERY`th
/// event of a CPU wakes them, going by the count this event bumps anyway.
#[inline(always)]
fn send(sent: u32, lost: u32, fill: impl FnOnce(&mut PacketEvent)) {
    let Some(mut entry) = NET_EVENTS.reserve::<PacketEvent>(0) else {
        count(lost);
        return;
    };
    // SAFETY: the reservation is exactly one PacketEvent; every byte is written below.
    let ev = unsafe {
        let p = entry.as_mut_ptr();
        p.write(PacketEvent::zeroed());
        &mut *p
    };
    fill(ev);
    let n = count(sent);
    let flags = if n % WAKEUP_EVERY == 0 { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    entry.submit(flags as u64);
}

#[inline(always)]
fn fill(ev: &mut PacketEvent, kind: u8, seg: &Segment, ifindex: u32, netns: u32, ts_ns: u64) {
    ev.kind = kind;
    ev.ip_version = seg.ip_version;
    ev.tcp_flags = seg.flags;
    ev.ifindex = ifindex;
    ev.netns = netns;
    ev.ts_ns = ts_ns;
    ev.saddr = seg.saddr;
    ev.daddr = seg.daddr;
    ev.sport = seg.sport;
    ev.dport = seg.dport;
    ev.seq = seg.seq;
    ev.ack_seq = seg.ack_seq;
}

/// The interface the packet is on (`__sk_buff.ifindex`, direct context access).
#[inline(always)]
fn ifindex_of(ctx: &TcContext) -> u32 {
    // SAFETY: the context pointer is the program's __sk_buff for its whole run.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Writes the TCP segment of the packet that `interest` asks for to `seg` (initialising it) and
/// says how its headers were read;
/// `L2` is the link-layer header's length, a constant of each program (Ethernet or none), so
/// no per-packet lookup. Counts what `interest` or a malformed header says to count.
#[inline(always)]
fn segment<const L2: usize, F: Fn(u8, u16, u16) -> Interest>(
    ctx: &TcContext,
    interest: F,
    seg: &mut MaybeUninit<Segment>,
) -> Option<u8> {
    let mut path = header_path::DIRECT;
    let mut parsed = direct::parse::<L2, F>(ctx, &interest, seg);
    if let Fast::Pull = parsed {
        // The headers are in the skb's fragments: pull all of them into the linear part at
        // once (the packet's bytes and fate stay as they are), then read them directly.
        let len = ctx.len().min((L2 + direct::PULL_BYTES) as u32);
        parsed = if ctx.pull_data(len).is_ok() {
            direct::parse::<L2, F>(ctx, &interest, seg)
        } else {
            Fast::Slow
        };
        path = header_path::PULLED;
    }
    let slot = match parsed {
        Fast::Tcp => return Some(path),
        Fast::Skip(slot) => slot,
        Fast::Done(Parsed::Malformed) => Some(counter::MALFORMED),
        Fast::Done(_) => None,
        // A pull that did not bring the headers in, stacked VLAN tags, IPv6 extension headers.
        Fast::Pull | Fast::Slow => match headers::parse(ctx, L2 == 0) {
            Parsed::Tcp(s) => match interest(s.flags, s.sport, s.dport) {
                Interest::Report => {
                    seg.write(s);
                    return Some(header_path::LOADED);
                }
                Interest::Count(slot) => Some(slot),
                Interest::None => None,
            },
            Parsed::Malformed => Some(counter::MALFORMED),
            Parsed::NotTcp | Parsed::NotIp => None,
        },
    };
    if let Some(slot) = slot {
        count(slot);
    }
    None
}

/// Ingress wants SYNs (no ACK) to watched ports; a SYN to another port is only counted.
#[inline(always)]
fn ingress_interest(flags: u8, _sport: u16, dport: u16) -> Interest {
    if flags & tcp_flag::SYN == 0 || flags & tcp_flag::ACK != 0 {
        Interest::None
    } else if !watched(dport) {
        Interest::Count(counter::SYN_PORT_FILTERED)
    } else {
        Interest::Report
    }
}

/// Egress wants the server's answers, SYN-ACK or RST, from a watched port (its source).
#[inline(always)]
fn egress_interest(flags: u8, sport: u16, _dport: u16) -> Interest {
    let reply = flags & tcp_flag::RST != 0
        || flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN | tcp_flag::ACK;
    if reply && watched(sport) { Interest::Report } else { Interest::None }
}

/// Link-layer header lengths of the two program variants.
const ETHERNET: usize = 14;
const NO_L2: usize = 0;

// ---------------------------------------------------------------- TC ingress: SYNs

/// Interfaces with an Ethernet header (Ethernet, veth, bridges, loopback).
#[classifier]
pub fn reach_ingress(ctx: TcContext) -> i32 {
    try_ingress::<ETHERNET>(&ctx);
    TC_ACT_UNSPEC
}

/// Interfaces whose packets start at the IP header (tun, WireGuard, ...).
#[classifier]
pub fn reach_ingress_l3(ctx: TcContext) -> i32 {
    try_ingress::<NO_L2>(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_ingress<const L2: usize>(ctx: &TcContext) {
    let mut seg = MaybeUninit::uninit();
    let Some(path) = segment::<L2, _>(ctx, ingress_interest, &mut seg) else { return };
    // SAFETY: `segment` wrote it whole when it returned Some.
    let seg = unsafe { seg.assume_init() };
    let now = now();
    if !take_token(0, now) {
        count(counter::SYN_RATE_LIMITED);
        return;
    }
    report(packet_kind::SYN, &seg, path, ctx, now, counter::SYN_EVENTS, counter::SYN_LOST);
}

/// The benchmark floor: an empty classifier loaded exactly like `reach_ingress`, so
/// `cargo xtask bench` can report the classifier's cost as a ratio to "doing nothing".
#[classifier]
pub fn reach_floor(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Benchmark building blocks, loaded like `reach_floor`: one clock read, and one ring-buffer
/// event (reserve, write, submit without wake-up). `cargo xtask bench` reports each next to
/// the floor, which shows what an event costs at the least, whatever the parsing around it.
#[classifier]
pub fn reach_cost_clock(_ctx: TcContext) -> i32 {
    let mut t = 0u64;
    // SAFETY: a volatile store to a local keeps the otherwise unused read.
    unsafe { core::ptr::write_volatile(&mut t, now()) };
    TC_ACT_UNSPEC
}

#[classifier]
pub fn reach_cost_ring(_ctx: TcContext) -> i32 {
    if let Some(mut entry) = NET_EVENTS.reserve::<PacketEvent>(0) {
        // SAFETY: the reservation is exactly one PacketEvent.
        unsafe { entry.as_mut_ptr().write(PacketEvent::zeroed()) };
        entry.submit(BPF_RB_NO_WAKEUP as u64);
    }
    TC_ACT_UNSPEC
}

// ---------------------------------------------------------------- TC egress: replies

#[classifier]
pub fn reach_egress(ctx: TcContext) -> i32 {
    try_egress::<ETHERNET>(&ctx);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn reach_egress_l3(ctx: TcContext) -> i32 {
    try_egress::<NO_L2>(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_egress<const L2: usize>(ctx: &TcContext) {
    let mut seg = MaybeUninit::uninit();
    let Some(path) = segment::<L2, _>(ctx, egress_interest, &mut seg) else { return };
    // SAFETY: as above.
    let seg = unsafe { seg.assume_init() };
    let kind = if seg.flags & tcp_flag::RST != 0 { packet_kind::RST } else { packet_kind::SYNACK };
    let now = now();
    if !take_token(1, now) {
        count(counter::OTHER_RATE_LIMITED);
        return;
    }
    report(kind, &seg, path, ctx, now, counter::REPLY_EVENTS, counter::OTHER_LOST);
}

/// A classifier's event, counted as `sent` or `lost`.
#[inline(always)]
fn report(kind: u8, seg: &Segment, path: u8, ctx: &TcContext, now: u64, sent: u32, lost: u32) {
    let (ifindex, netns) = (ifindex_of(ctx), cfg!(netns));
    send(sent, lost, |ev| {
        fill(ev, kind, seg, ifindex, netns, now);
        ev.header_path = path;
    });
}

// ---------------------------------------------------------------- drops

#[btf_tracepoint(function = "kfree_skb")]
pub fn reach_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    // (struct sk_buff *skb, void *location, enum skb_drop_reason reason[, struct sock *rx_sk])
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let _ = on_drop::<true>(skb, location, reason);
    0
}

#[tracepoint]
pub fn reach_tp_kfree_skb(ctx: TracePointContext) -> u32 {
    let skb = reach_ebpf::tp::read(&ctx, &skb_off!(tp_skbaddr)).unwrap_or(0);
    let location = reach_ebpf::tp::read(&ctx, &skb_off!(tp_location)).unwrap_or(0);
    // Kernels before 5.17 have no reason field: 0 (user space says "no reason on this kernel").
    let reason = reach_ebpf::tp::read(&ctx, &skb_off!(tp_reason)).unwrap_or(0) as u32;
    let _ = on_drop::<false>(skb, location, reason);
    0
}

/// The drop tracer's empty twin, for `cargo xtask bench`: the same hook, nothing done, so the
/// handler's cost is reported as a ratio to what the hook costs by itself.
#[btf_tracepoint(function = "kfree_skb")]
pub fn reach_kfree_skb_floor(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[inline(always)]
fn reason_ignored(reason: u32) -> bool {
    reason < IGNORED_REASON_LIMIT
        && IGNORED_REASONS.get(reason / 64).is_some_and(|w| *w & (1u64 << (reason % 64)) != 0)
}

/// A field of the skb or what it points to: with plain loads when `TYPED` (tp_btf: `skb` is
/// a BTF-typed pointer), else with `bpf_probe_read_kernel` (the classic tracepoint's `skb` is
/// a bare address).
#[inline(always)]
fn field<const TYPED: bool>(base: u64, f: &reach_common::field::Field) -> Option<u64> {
    if TYPED { reach_ebpf::kread::read_typed(base, f) } else { read(base, f) }
}

#[inline(always)]
fn pointer<const TYPED: bool>(base: u64, f: &reach_common::field::Field) -> Option<u64> {
    if TYPED { reach_ebpf::kread::deref_typed(base, f) } else { deref(base, f) }
}

/// Reports a freed skb that is a TCP SYN, or a segment of a watched port, of a watched
/// namespace. Cheapest test first: the reason (an argument), then the namespace (three pointer
/// loads), and only then the headers, copied in one read.
#[inline(always)]
fn on_drop<const TYPED: bool>(skb: u64, location: u64, reason: u32) -> Option<()> {
    if reason_ignored(reason) {
        return None;
    }
    let dev = pointer::<TYPED>(skb, &skb_off!(skb_dev));
    let net = match dev {
        Some(d) => pointer::<TYPED>(d, &skb_off!(dev_nd_net)),
        None => pointer::<TYPED>(skb, &skb_off!(skb_sk))
            .and_then(|sk| pointer::<TYPED>(sk, &skb_off!(sk_net))),
    };
    let netns = net.and_then(|n| field::<TYPED>(n, &skb_off!(net_inum))).unwrap_or(0) as u32;
    // SAFETY: plain map lookup.
    if cfg!(filter_netns) != 0 && unsafe { WATCHED_NETNS.get(&netns) }.is_none() {
        return None;
    }
    let head = pointer::<TYPED>(skb, &skb_off!(skb_head))?;
    let nh = field::<TYPED>(skb, &skb_off!(skb_network_header))? as u16;
    // ~0: never set (the packet never reached IP, e.g. dropped in the driver).
    if nh == u16::MAX {
        return None;
    }
    let ip_at = head + nh as u64;
    // Only what the stack took for IP is parsed as IP: the network header of a frame it
    // dropped as something else (an 802.1Q frame with no VLAN device) may point at bytes that
    // merely look like an IP header. 0: not set (some local paths), the version nibble decides.
    let protocol = field::<TYPED>(skb, &skb_off!(skb_protocol)).unwrap_or(0) as u16;
    let version = match u16::from_be(protocol) {
        0 => 0,
        ETH_P_IP => 4,
        ETH_P_IPV6 => 6,
        _ => return None,
    };
    // What the packet really has from its network header on (linear data; a header in the
    // fragments is not read at all).
    let tail = field::<TYPED>(skb, &skb_off!(skb_tail))? as u32;
    let avail = tail.saturating_sub(nh as u32) as usize;
    // The classifiers' parser on the packet in kernel memory: only TCP (first fragments, after
    // at most MAX_IPV6_EXT extension headers) is decoded. The skb's transport header is not
    // enough to go by: an IPv6 UDP or ICMPv6 packet has one too.
    let mut buf = [0u8; DROP_HEADER_BYTES];
    // SAFETY: the helper validates the source and fails on a fault.
    let copy = unsafe { bpf_probe_read_kernel_buf(ip_at as *const u8, &mut buf) };
    if copy.is_ok() && version != 0 && buf[0] >> 4 != version {
        return None;
    }
    let mut seg = MaybeUninit::uninit();
    let shape = if copy.is_ok() { copied(&buf, avail, &mut seg) } else { Copied::Other };
    let seg = match shape {
        // SAFETY: `copied` wrote it whole.
        Copied::Tcp => unsafe { seg.assume_init() },
        Copied::NotTcp | Copied::Malformed => return None,
        // IP options, extension headers, or a copy that ran into unreadable memory: field by
        // field, as far as it goes.
        Copied::Other => {
            let bytes = KernelBytes { base: ip_at, len: avail };
            let parsed = match bytes.read::<u8>(0)? >> 4 {
                v if version != 0 && v != version => return None,
                4 => ipv4(&bytes, 0),
                6 => ipv6(&bytes, 0),
                _ => return None,
            };
            let Parsed::Tcp(seg) = parsed else { return None };
            seg
        }
    };
    let is_syn = seg.flags & tcp_flag::SYN != 0 && seg.flags & tcp_flag::ACK == 0;
    let of_interest = if cfg!(filter_ports) == 0 {
        is_syn
    } else {
        port_watched(seg.dport) || port_watched(seg.sport)
    };
    if !of_interest {
        return None;
    }
    let now = now();
    if !take_token(1, now) {
        count(counter::OTHER_RATE_LIMITED);
        return None;
    }
    let ifindex = dev.and_then(|d| field::<TYPED>(d, &skb_off!(dev_ifindex))).unwrap_or(0) as u32;
    send(counter::DROP_EVENTS, counter::OTHER_LOST, |ev| {
        fill(ev, packet_kind::DROP, &seg, ifindex, netns, now);
        ev.reason = reason;
        ev.location = location;
    });
    Some(())
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
