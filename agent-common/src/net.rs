//! Records of the packet path: ingress SYNs and egress replies seen by the TC classifiers, and
//! kernel drops seen by the `kfree_skb` tracepoint.
use crate::field::Field;

/// What a `PacketEvent` reports.
pub mod packet_kind {
    /// A TCP SYN (no ACK) arriving on a watched interface.
    pub const SYN: u8 = 1;
    /// A SYN-ACK leaving a watched interface (the server answered).
    pub const SYNACK: u8 = 2;
    /// A RST leaving a watched interface (closed port, or a firewall's tcp-reset).
    pub const RST: u8 = 3;
    /// The kernel freed (dropped) a TCP segment of interest, with a reason.
    pub const DROP: u8 = 4;
}

/// TCP flag bits as they appear in the header's flags byte.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One packet-path observation. Addresses in network byte order (IPv4 in the first 4 bytes),
/// ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketEvent {
    pub kind: u8,
    /// 4 or 6.
    pub ip_version: u8,
    pub tcp_flags: u8,
    /// How the classifier read the headers (`header_path::*`; 0 for drops).
    pub header_path: u8,
    pub ifindex: u32,
    /// Network namespace inode.
    pub netns: u32,
    /// Drop reason (raw `enum skb_drop_reason` value; 0 for non-drops).
    pub reason: u32,
    /// bpf_ktime_get_boot_ns().
    pub ts_ns: u64,
    /// Kernel text address that freed the packet (drops only).
    pub location: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack_seq: u32,
    pub _pad2: u32,
}

impl PacketEvent {
    pub const fn zeroed() -> Self {
        Self {
            kind: 0,
            ip_version: 0,
            tcp_flags: 0,
            header_path: 0,
            ifindex: 0,
            netns: 0,
            reason: 0,
            ts_ns: 0,
            location: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            sport: 0,
            dport: 0,
            seq: 0,
            ack_seq: 0,
            _pad2: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) integers and byte arrays, explicit padding fields, no implicit holes.
unsafe impl aya::Pod for PacketEvent {}

/// How a classifier read a packet's headers (`PacketEvent::header_path`).
pub mod header_path {
    /// Directly from the skb's linear data (the fast path).
    pub const DIRECT: u8 = 0;
    /// Directly, after `bpf_skb_pull_data` moved the headers into the linear part.
    pub const PULLED: u8 = 1;
    /// With `bpf_skb_load_bytes` (VLAN tags in the packet, IPv6 extension headers, or a pull
    /// that failed).
    pub const LOADED: u8 = 2;
}

/// Slots of the per-CPU `NET_COUNTERS` array. A packet updates at most one slot: the one
/// naming what became of it. Packets that need nothing (not TCP, not a SYN on ingress, not a
/// reply of a watched port on egress) update none, which keeps the common case at its floor.
/// Every ingress SYN lands in exactly one of the first four slots ([`syns`]).
pub mod counter {
    /// Ingress SYNs sent to user space as events.
    pub const SYN_EVENTS: u32 = 0;
    /// Ingress SYNs not reported because the per-CPU token bucket was empty (SYN flood bound).
    pub const SYN_RATE_LIMITED: u32 = 1;
    /// Ingress SYNs not reported because their port is not watched (`--port`).
    pub const SYN_PORT_FILTERED: u32 = 2;
    /// Ingress SYN events that did not fit in the ring buffer.
    pub const SYN_LOST: u32 = 3;
    /// Truncated or malformed headers (passed through untouched).
    pub const MALFORMED: u32 = 4;
    /// SYN-ACK / RST reply events sent.
    pub const REPLY_EVENTS: u32 = 5;
    /// Drop events sent.
    pub const DROP_EVENTS: u32 = 6;
    /// Reply and drop events that did not fit in the ring buffer.
    pub const OTHER_LOST: u32 = 7;
    /// Drops and replies not reported because their token bucket was empty.
    pub const OTHER_RATE_LIMITED: u32 = 8;
    /// Number of slots.
    pub const SLOTS: u32 = 9;

    /// Ingress SYNs the classifier saw: each is in exactly one of these slots.
    pub fn syns(c: &[u64; SLOTS as usize]) -> u64 {
        c[SYN_EVENTS as usize]
            + c[SYN_RATE_LIMITED as usize]
            + c[SYN_PORT_FILTERED as usize]
            + c[SYN_LOST as usize]
    }

    /// Events lost (ring full), SYNs and others.
    pub fn lost(c: &[u64; SLOTS as usize]) -> u64 {
        c[SYN_LOST as usize] + c[OTHER_LOST as usize]
    }
}

/// `WATCHED_PORTS` is a bitmap: bit `port % 64` of word `port / 64`.
pub const PORT_WORDS: u32 = 65536 / 64;

/// `IGNORED_REASONS` is a bitmap of core drop reasons (`reason < IGNORED_REASON_LIMIT`) the
/// drop tracer skips before reading anything: reasons that never concern a TCP segment.
pub const IGNORED_REASON_WORDS: u32 = 16;
pub const IGNORED_REASON_LIMIT: u32 = IGNORED_REASON_WORDS * 64;

/// Classifier configuration, a global patched at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Network namespace inode of the interfaces this instance is attached to.
    pub netns: u32,
    /// 1: only ports set in the `WATCHED_PORTS` bitmap produce events; 0: every port.
    pub filter_ports: u32,
    /// Token bucket per CPU: events per second and burst size. 0 = unlimited.
    pub rate_per_sec: u32,
    pub burst: u32,
    /// 1: the drop tracer reports only namespaces in `WATCHED_NETNS`; 0: all.
    pub filter_netns: u32,
}

impl NetConfig {
    pub const DEFAULT: NetConfig =
        NetConfig { netns: 0, filter_ports: 0, rate_per_sec: 0, burst: 0, filter_netns: 0 };
}

#[cfg(feature = "user")]
// SAFETY: five u32s.
unsafe impl aya::Pod for NetConfig {}

/// Per-CPU token bucket state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket {
    pub tokens: u64,
    pub last_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: two u64s.
unsafe impl aya::Pod for Bucket {}

/// Offsets for reading a `struct sk_buff` in the drop tracepoint, from BTF / format files.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub skb_head: Field,
    pub skb_network_header: Field,
    pub skb_transport_header: Field,
    /// End of the linear data, as an offset from `head` (bounds what the drop parser reads).
    pub skb_tail: Field,
    /// The packet's EtherType as the stack saw it (big-endian; 0 where nobody set it).
    pub skb_protocol: Field,
    pub skb_dev: Field,
    pub skb_sk: Field,
    pub dev_ifindex: Field,
    pub dev_nd_net: Field,
    pub sk_net: Field,
    pub net_inum: Field,
    /// `skb:kfree_skb` record layout (classic tracepoint fallback).
    pub tp_skbaddr: Field,
    pub tp_location: Field,
    pub tp_reason: Field,
}

impl SkbOffsets {
    pub const ABSENT: SkbOffsets = SkbOffsets {
        skb_head: Field::ABSENT,
        skb_network_header: Field::ABSENT,
        skb_transport_header: Field::ABSENT,
        skb_tail: Field::ABSENT,
        skb_protocol: Field::ABSENT,
        skb_dev: Field::ABSENT,
        skb_sk: Field::ABSENT,
        dev_ifindex: Field::ABSENT,
        dev_nd_net: Field::ABSENT,
        sk_net: Field::ABSENT,
        net_inum: Field::ABSENT,
        tp_skbaddr: Field::ABSENT,
        tp_location: Field::ABSENT,
        tp_reason: Field::ABSENT,
    };
}

#[cfg(feature = "user")]
// SAFETY: Fields only.
unsafe impl aya::Pod for SkbOffsets {}

#[cfg(test)]
mod tests {
    #[test]
    fn packet_event_layout_has_no_implicit_padding() {
        // 4 + 4*3 + 8*2 + 16*2 + 2*2 + 4*3 = 80
        assert_eq!(core::mem::size_of::<super::PacketEvent>(), 80);
    }
}
