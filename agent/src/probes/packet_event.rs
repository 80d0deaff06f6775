//! Decodes `PacketEvent` records (SYNs, replies, drops) into the observations `reach watch`
//! prints and the flow table consumes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reach_common::net::{PacketEvent, packet_kind};
use serde::Serialize;

use crate::{
    kernel::{drop_reasons::DropReasons, kallsyms::Kallsyms},
    netns::names::Names,
    output::time::Clock,
    probes::sock_event::NetnsRef,
};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PacketObservation {
    /// `syn`, `synack`, `rst` or `drop`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    /// Boot-clock nanoseconds (orders events across ring buffers).
    #[serde(skip)]
    pub ts_ns: u64,
    pub netns: NetnsRef,
    pub ifindex: u32,
    pub iface: Option<String>,
    /// `ipv4` / `ipv6`.
    pub family: &'static str,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub seq: u32,
    /// TCP flags, e.g. `S`, `SA`, `RA`.
    pub flags: String,
    /// Drops: the kernel's drop reason (`NO_SOCKET`, `NETFILTER_DROP`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Drops: where the kernel freed the packet, e.g. `tcp_v4_rcv+0x2a3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Option<PacketEvent> {
    if bytes.len() < size_of::<PacketEvent>() {
        return None;
    }
    // SAFETY: length checked; PacketEvent is plain data valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<PacketEvent>()) })
}

fn addr(version: u8, raw: &[u8; 16]) -> IpAddr {
    if version == 6 {
        IpAddr::V6(Ipv6Addr::from(*raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

pub fn flags(f: u8) -> String {
    [(0x02, 'S'), (0x10, 'A'), (0x04, 'R'), (0x01, 'F'), (0x08, 'P'), (0x20, 'U')]
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// Context the decoder needs: names and symbol tables, loaded once.
pub struct Decoder {
    pub clock: Clock,
    pub reasons: DropReasons,
    pub kallsyms: Option<Kallsyms>,
}

impl Decoder {
    pub fn decode(&self, ev: &PacketEvent, names: &mut Names) -> PacketObservation {
        let netns = ev.netns as u64;
        let is_drop = ev.kind == packet_kind::DROP;
        PacketObservation {
            kind: match ev.kind {
                packet_kind::SYN => "syn",
                packet_kind::SYNACK => "synack",
                packet_kind::RST => "rst",
                packet_kind::DROP => "drop",
                _ => "unknown",
            },
            time: self.clock.rfc3339(ev.ts_ns),
            ts_ns: ev.ts_ns,
            netns: NetnsRef { inode: netns, name: names.name(netns) },
            ifindex: ev.ifindex,
            iface: (ev.ifindex != 0).then(|| names.device(netns, ev.ifindex)).flatten(),
            family: if ev.ip_version == 6 { "ipv6" } else { "ipv4" },
            saddr: addr(ev.ip_version, &ev.saddr),
            sport: ev.sport,
            daddr: addr(ev.ip_version, &ev.daddr),
            dport: ev.dport,
            seq: ev.seq,
            flags: flags(ev.tcp_flags),
            reason: is_drop.then(|| {
                if self.reasons.available() {
                    self.reasons.name(ev.reason)
                } else {
                    "UNKNOWN (kernel < 5.17 reports no drop reasons)".into()
                }
            }),
            location: is_drop.then(|| {
                self.kallsyms
                    .as_ref()
                    .and_then(|k| k.symbolize(ev.location))
                    .unwrap_or_else(|| format!("{:#x}", ev.location))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_letters() {
        assert_eq!(flags(0x02), "S");
        assert_eq!(flags(0x12), "SA");
        assert_eq!(flags(0x14), "AR");
    }

    #[test]
    fn decodes_a_v6_drop() {
        let mut ev = PacketEvent::zeroed();
        ev.kind = packet_kind::DROP;
        ev.ip_version = 6;
        ev.tcp_flags = 0x02;
        ev.saddr = "fd00:77::2".parse::<Ipv6Addr>().unwrap().octets();
        ev.daddr = "fd00:77::1".parse::<Ipv6Addr>().unwrap().octets();
        ev.sport = 40000;
        ev.dport = 8080;
        ev.reason = 7;
        ev.location = 0x1234;
        let reasons =
            DropReasons::from_tables(&[("SKB_DROP_REASON_NO_SOCKET".into(), 7)], &[], &[]);
        let d = Decoder { clock: Clock::new(), reasons, kallsyms: None };
        let o = d.decode(&ev, &mut Names::default());
        assert_eq!((o.kind, o.family, o.dport), ("drop", "ipv6", 8080));
        assert_eq!(o.saddr.to_string(), "fd00:77::2");
        assert_eq!(o.reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!(o.location.as_deref(), Some("0x1234"));
    }
}
