//! reach's packet path: ingress SYNs and egress replies (TC classifiers) and kernel drops
//! (`kfree_skb`), as `PacketEvent`s.
//!
//! The classifiers never change a packet's fate: they return TC_ACT_UNSPEC, which for a
//! direct-action clsact filter means "continue as if this filter did not exist" and for TCX is
//! TCX_NEXT (run the next program), so other tools' programs on the same hook still run. Every
//! packet only updates per-CPU counters; SYNs of watched ports become events, bounded by a
//! per-CPU token bucket so a SYN flood cannot flood user space (what it suppresses is counted).
#![no_std]
#![no_main]

mod headers;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_probe_read_kernel, generated::bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, classifier, map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TcContext, TracePointContext},
};
use headers::{KernelBytes, Parsed, Segment, ipv4, ipv6, parse};
use reach_common::net::{
    Bucket, NetConfig, PacketEvent, SkbOffsets, counter, l2, packet_kind, tcp_flag,
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
/// Queued bytes (≈ 200 events) at which a submit wakes the reader at once.
const WAKEUP_BACKLOG: u64 = 16 * 1024;
/// One record in the ring: the event plus the ring's 8-byte header.
const RECORD_BYTES: u64 = core::mem::size_of::<PacketEvent>() as u64 + 8;

#[map]
static NET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::SLOTS, 0);
/// Ports whose SYNs (and drops and replies) are reported when `filter_ports` is set.
#[map]
static WATCHED_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);
/// Network namespaces (inodes) whose drops are reported; empty = every namespace. The drop
/// tracer sees the whole machine, so without this a busy host namespace would spend the token
/// budget (and the ring) on traffic nobody asked about.
#[map]
static WATCHED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
/// ifindex → `l2::*` for interfaces without an Ethernet header (absent = Ethernet).
#[map]
static IFACE_L2: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);
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

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = NET_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; BPF programs are not preempted on their CPU.
        unsafe { *c += 1 };
    }
}

/// Token bucket: `rate_per_sec` tokens per second per CPU, up to `burst`. Rate 0 = no bound.
#[inline(always)]
fn take_token(slot: u32) -> bool {
    let rate = cfg!(rate_per_sec) as u64;
    if rate == 0 {
        return true;
    }
    let Some(b) = BUCKETS.get_ptr_mut(slot) else { return false };
    // SAFETY: helper without preconditions; per-CPU bucket.
    let now = unsafe { bpf_ktime_get_boot_ns() };
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
fn watched(port: u16) -> bool {
    // SAFETY: lookup of a plain u8 value.
    cfg!(filter_ports) == 0 || unsafe { WATCHED_PORTS.get(&port) }.is_some()
}

#[inline(always)]
fn send(ev: &PacketEvent) -> bool {
    match NET_EVENTS.reserve::<PacketEvent>(0) {
        Some(mut entry) => {
            // SAFETY: the reservation is exactly one PacketEvent.
            unsafe { entry.as_mut_ptr().write(*ev) };
            // Waking the reader costs microseconds (an irq_work per record when the ring was
            // empty), far more than the event itself. Readers also drain on a short timer, so
            // wake them only once a backlog has built up.
            // Only the record that crosses the threshold wakes the reader (the backlog includes
            // this reservation): beyond it the reader is already awake, or the 50 ms timer is.
            let backlog = NET_EVENTS.query(BPF_RB_AVAIL_DATA as u64);
            let crossing = backlog >= WAKEUP_BACKLOG && backlog < WAKEUP_BACKLOG + RECORD_BYTES;
            let flags = if crossing { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
            entry.submit(flags as u64);
            true
        }
        None => {
            count(counter::LOST);
            false
        }
    }
}

fn event(kind: u8, seg: &Segment, ifindex: u32, netns: u32) -> PacketEvent {
    let mut ev = PacketEvent::zeroed();
    ev.kind = kind;
    ev.ip_version = seg.ip_version;
    ev.tcp_flags = seg.flags;
    ev.ifindex = ifindex;
    ev.netns = netns;
    // SAFETY: helper without preconditions.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.saddr = seg.saddr;
    ev.daddr = seg.daddr;
    ev.sport = seg.sport;
    ev.dport = seg.dport;
    ev.seq = seg.seq;
    ev.ack_seq = seg.ack_seq;
    ev
}

/// The interface the packet is on (`__sk_buff.ifindex`, direct context access).
#[inline(always)]
fn ifindex_of(ctx: &TcContext) -> u32 {
    // SAFETY: the context pointer is the program's __sk_buff for its whole run.
    unsafe { (*ctx.skb.skb).ifindex }
}

#[inline(always)]
fn segment(ctx: &TcContext) -> Option<Segment> {
    count(counter::PACKETS);
    let ifindex = ifindex_of(ctx);
    // SAFETY: lookup of a plain u8 value.
    let no_l2 = unsafe { IFACE_L2.get(&ifindex) }.is_some_and(|k| *k == l2::NONE);
    match parse(ctx, no_l2) {
        Parsed::Tcp(seg) => {
            count(counter::TCP);
            Some(seg)
        }
        Parsed::Malformed => {
            count(counter::MALFORMED);
            None
        }
        Parsed::NotTcp | Parsed::NotIp => None,
    }
}

// ---------------------------------------------------------------- TC ingress: SYNs

#[classifier]
pub fn reach_ingress(ctx: TcContext) -> i32 {
    try_ingress(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_ingress(ctx: &TcContext) {
    let Some(seg) = segment(ctx) else { return };
    if seg.flags & tcp_flag::SYN == 0 || seg.flags & tcp_flag::ACK != 0 {
        return;
    }
    count(counter::SYN);
    if !watched(seg.dport) {
        count(counter::SYN_PORT_FILTERED);
        return;
    }
    if !take_token(0) {
        count(counter::SYN_RATE_LIMITED);
        return;
    }
    if send(&event(packet_kind::SYN, &seg, ifindex_of(ctx), cfg!(netns))) {
        count(counter::SYN_EVENTS);
    }
}

/// The benchmark floor: an empty classifier loaded exactly like `reach_ingress`, so
/// `cargo xtask bench` can report the classifier's cost as a ratio to "doing nothing".
#[classifier]
pub fn reach_floor(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

// ---------------------------------------------------------------- TC egress: replies

#[classifier]
pub fn reach_egress(ctx: TcContext) -> i32 {
    try_egress(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn try_egress(ctx: &TcContext) {
    let Some(seg) = segment(ctx) else { return };
    let kind = if seg.flags & tcp_flag::RST != 0 {
        packet_kind::RST
    } else if seg.flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN | tcp_flag::ACK {
        packet_kind::SYNACK
    } else {
        return;
    };
    // The server's port is the source of its replies.
    if !watched(seg.sport) {
        return;
    }
    if !take_token(1) {
        count(counter::OTHER_RATE_LIMITED);
        return;
    }
    if send(&event(kind, &seg, ifindex_of(ctx), cfg!(netns))) {
        count(counter::REPLY_EVENTS);
    }
}

// ---------------------------------------------------------------- drops

#[btf_tracepoint(function = "kfree_skb")]
pub fn reach_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    // (struct sk_buff *skb, void *location, enum skb_drop_reason reason[, struct sock *rx_sk])
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let _ = on_drop(skb, location, reason);
    0
}

#[tracepoint]
pub fn reach_tp_kfree_skb(ctx: TracePointContext) -> u32 {
    let skb = reach_ebpf::tp::read(&ctx, &skb_off!(tp_skbaddr)).unwrap_or(0);
    let location = reach_ebpf::tp::read(&ctx, &skb_off!(tp_location)).unwrap_or(0);
    // Kernels before 5.17 have no reason field: 0 (user space says "no reason on this kernel").
    let reason = reach_ebpf::tp::read(&ctx, &skb_off!(tp_reason)).unwrap_or(0) as u32;
    let _ = on_drop(skb, location, reason);
    0
}

/// Reads the IP/TCP headers of a freed skb; reports TCP SYNs and segments of watched ports.
#[inline(always)]
fn on_drop(skb: u64, location: u64, reason: u32) -> Option<()> {
    let head = deref(skb, &skb_off!(skb_head))?;
    let nh = read(skb, &skb_off!(skb_network_header))? as u16;
    // ~0: never set (the packet never reached IP, e.g. dropped in the driver).
    if nh == u16::MAX {
        return None;
    }
    let ip_at = head + nh as u64;
    // SAFETY: bpf_probe_read_kernel validates addresses.
    let version = unsafe { bpf_probe_read_kernel(ip_at as *const u8) }.ok()? >> 4;
    // The classifiers' parser on the packet in kernel memory: only TCP (first fragments, after
    // at most MAX_IPV6_EXT extension headers) is decoded. The skb's transport header is not
    // enough to go by: an IPv6 UDP or ICMPv6 packet has one too.
    let bytes = KernelBytes(ip_at);
    let parsed = match version {
        4 => ipv4(&bytes, 0),
        6 => ipv6(&bytes, 0),
        _ => return None,
    };
    let Parsed::Tcp(seg) = parsed else { return None };
    let is_syn = seg.flags & tcp_flag::SYN != 0 && seg.flags & tcp_flag::ACK == 0;
    let of_interest = if cfg!(filter_ports) == 0 {
        is_syn
    } else {
        // SAFETY: plain map lookups.
        unsafe {
            WATCHED_PORTS.get(&seg.dport).is_some() || WATCHED_PORTS.get(&seg.sport).is_some()
        }
    };
    if !of_interest {
        return None;
    }
    // The namespace costs three pointer reads: only for segments that passed the cheap
    // header/port test above.
    let dev = deref(skb, &skb_off!(skb_dev));
    let net = match dev {
        Some(d) => deref(d, &skb_off!(dev_nd_net)),
        None => deref(skb, &skb_off!(skb_sk)).and_then(|sk| deref(sk, &skb_off!(sk_net))),
    };
    let netns = net.and_then(|n| read(n, &skb_off!(net_inum))).unwrap_or(0) as u32;
    // SAFETY: plain map lookup.
    if cfg!(filter_netns) != 0 && unsafe { WATCHED_NETNS.get(&netns) }.is_none() {
        return None;
    }
    if !take_token(1) {
        count(counter::OTHER_RATE_LIMITED);
        return None;
    }
    let ifindex = dev.and_then(|d| read(d, &skb_off!(dev_ifindex))).unwrap_or(0) as u32;
    let mut ev = event(packet_kind::DROP, &seg, ifindex, netns);
    ev.reason = reason;
    ev.location = location;
    if send(&ev) {
        count(counter::DROP_EVENTS);
    }
    Some(())
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
