//! Decodes `SockEvent` records into observations for output and for the listener model.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reach_common::event::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SockEvent, flag, kind, source,
};
use serde::Serialize;

use crate::{netns::names::Names, output::time::Clock};

/// One bind, listen or listener-close, as `reach watch --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SockObservation {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub netns: NetnsRef,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// `ipv4` / `ipv6`.
    pub family: Option<&'static str>,
    /// `tcp` / `udp`.
    pub proto: Option<&'static str>,
    /// The address and port the program asked for (bind), or the socket's (listen).
    pub addr: Option<String>,
    pub port: Option<u16>,
    /// What the socket ended up bound to (port 0 → the ephemeral port chosen).
    pub bound_addr: Option<String>,
    pub bound_port: Option<u16>,
    /// `ok` or the errno name (`EADDRINUSE`, `EACCES`, ...).
    pub result: String,
    pub backlog: Option<u32>,
    pub options: SockOptions,
    /// Which attach mechanism saw it.
    pub source: &'static str,
    /// Kernel socket identity (joins a listen with its later close).
    pub sock_id: String,
    pub cookie: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NetnsRef {
    pub inode: u64,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SockOptions {
    pub reuseaddr: bool,
    pub reuseport: bool,
    pub freebind: bool,
    /// SO_BINDTODEVICE: the interface index the socket is bound to.
    pub bound_dev_if: Option<u32>,
    /// SO_BINDTODEVICE: that interface's name in the socket's namespace.
    pub bound_dev: Option<String>,
}

pub fn kind_name(k: u8) -> &'static str {
    match k {
        kind::BIND => "bind",
        kind::LISTEN => "listen",
        kind::LISTEN_CLOSE => "listen_close",
        kind::ESTABLISHED => "established",
        _ => "unknown",
    }
}

pub fn source_name(s: u8) -> &'static str {
    match s {
        source::KPROBE => "kprobe",
        source::FENTRY => "fentry",
        source::SYSCALL_TRACEPOINT => "tracepoint",
        source::STATE_TP_BTF => "tp_btf",
        source::STATE_TRACEPOINT => "tracepoint",
        _ => "unknown",
    }
}

/// `EADDRINUSE` for -98; `ok` for 0.
pub fn result_name(result: i32) -> String {
    if result == 0 {
        "ok".into()
    } else {
        let errno = nix::errno::Errno::from_raw(-result);
        if errno == nix::errno::Errno::UnknownErrno {
            format!("errno {}", -result)
        } else {
            format!("{errno:?}")
        }
    }
}

fn addr(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

/// Parses a raw ring-buffer record (None when it is not a whole `SockEvent`).
pub fn parse(bytes: &[u8]) -> Option<SockEvent> {
    if bytes.len() < size_of::<SockEvent>() {
        return None;
    }
    // SAFETY: length checked; SockEvent is plain old data valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<SockEvent>()) })
}

pub fn decode(ev: &SockEvent, clock: &Clock, names: &mut Names) -> SockObservation {
    let has_req = ev.flags & flag::HAS_REQUEST != 0;
    let has_sock = ev.flags & flag::HAS_SOCKET != 0;
    let bound = if has_sock && ev.result == 0 { addr(ev.family, &ev.bound_addr) } else { None };
    let (addr_s, port) = if has_req {
        (addr(ev.family, &ev.req_addr).map(|a| a.to_string()), Some(ev.req_port))
    } else {
        (bound.map(|a| a.to_string()), bound.map(|_| ev.bound_port))
    };
    let comm_len = ev.comm.iter().position(|&b| b == 0).unwrap_or(ev.comm.len());
    SockObservation {
        kind: kind_name(ev.kind),
        time: clock.rfc3339(ev.ts_ns),
        netns: NetnsRef { inode: ev.netns as u64, name: names.name(ev.netns as u64) },
        pid: ev.tgid,
        tid: ev.tid,
        comm: String::from_utf8_lossy(&ev.comm[..comm_len]).into_owned(),
        uid: ev.uid,
        cgroup_id: ev.cgroup_id,
        family: match ev.family {
            AF_INET => Some("ipv4"),
            AF_INET6 => Some("ipv6"),
            _ => None,
        },
        proto: match ev.protocol {
            IPPROTO_TCP => Some("tcp"),
            IPPROTO_UDP => Some("udp"),
            _ => None,
        },
        addr: addr_s,
        port,
        bound_addr: bound.map(|a| a.to_string()),
        bound_port: bound.map(|_| ev.bound_port),
        result: result_name(ev.result),
        backlog: (ev.flags & flag::HAS_BACKLOG != 0).then_some(ev.backlog),
        options: SockOptions {
            reuseaddr: ev.flags & flag::REUSEADDR != 0,
            reuseport: ev.flags & flag::REUSEPORT != 0,
            freebind: ev.flags & flag::FREEBIND != 0,
            bound_dev_if: (ev.bound_dev_if != 0).then_some(ev.bound_dev_if),
            bound_dev: (ev.bound_dev_if != 0)
                .then(|| names.device(ev.netns as u64, ev.bound_dev_if))
                .flatten(),
        },
        source: source_name(ev.source),
        sock_id: format!("{:#x}", ev.sock_id),
        cookie: (ev.cookie != 0).then_some(ev.cookie),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(result_name(0), "ok");
        assert_eq!(result_name(-98), "EADDRINUSE");
        assert_eq!(result_name(-13), "EACCES");
    }

    #[test]
    fn failed_bind_keeps_the_request_and_has_no_bound_address() {
        let mut ev = SockEvent::zeroed();
        ev.kind = kind::BIND;
        ev.source = source::SYSCALL_TRACEPOINT;
        ev.result = -98;
        ev.family = AF_INET;
        ev.protocol = IPPROTO_TCP;
        ev.flags = flag::HAS_REQUEST | flag::HAS_SOCKET;
        ev.req_port = 8080;
        ev.req_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.comm[..6].copy_from_slice(b"server");
        let o = decode(&ev, &Clock::new(), &mut Names::default());
        assert_eq!((o.kind, o.addr.as_deref(), o.port), ("bind", Some("127.0.0.1"), Some(8080)));
        assert_eq!((o.bound_addr, o.bound_port), (None, None));
        assert_eq!(
            (o.result.as_str(), o.comm.as_str(), o.proto),
            ("EADDRINUSE", "server", Some("tcp"))
        );
    }

    #[test]
    fn ephemeral_port_is_reported_as_bound() {
        let mut ev = SockEvent::zeroed();
        ev.kind = kind::BIND;
        ev.family = AF_INET6;
        ev.protocol = IPPROTO_UDP;
        ev.flags = flag::HAS_REQUEST | flag::HAS_SOCKET | flag::REUSEPORT;
        ev.req_port = 0;
        ev.bound_port = 40001;
        let o = decode(&ev, &Clock::new(), &mut Names::default());
        assert_eq!((o.addr.as_deref(), o.port), (Some("::"), Some(0)));
        assert_eq!((o.bound_addr.as_deref(), o.bound_port), (Some("::"), Some(40001)));
        assert!(o.options.reuseport && !o.options.reuseaddr);
    }

    #[test]
    fn short_records_are_rejected() {
        assert!(parse(&[0u8; 10]).is_none());
    }
}
