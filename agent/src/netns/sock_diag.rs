//! Lists the listening TCP and bound UDP sockets of the calling thread's network namespace over
//! NETLINK_SOCK_DIAG (what `ss -ltun` shows), read-only; [`dump_tcp`] serves other state sets
//! (the port holders of `port_holders`).
//!
//! /proc/net/{tcp,udp}6 would also list them, but they lack the socket cookie and the v6-only
//! flag: a `[::]:P` listener with IPV6_V6ONLY set never accepts an IPv4 client, which is exactly
//! the kind of answer reach has to give. The netlink socket is bound to the namespace of the
//! thread that creates it, so callers pick the namespace with `netns::enter::in_netns`.
//!
//! Requests are built and replies parsed by netlink-packet-sock-diag (inet_diag_req_v2 /
//! inet_diag_msg and their attributes) on netlink-packet-core framing; only the socket is ours.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla},
};
use serde::{Serialize, Serializer};

const NETLINK_SOCK_DIAG: i32 = 4;
/// `struct nlmsghdr`; a datagram tail shorter than that is padding, not a message.
const NLMSG_HDRLEN: usize = 16;
pub(super) const TCP_LISTEN: u8 = 10;
/// Unconnected UDP sockets sit in TCP_CLOSE; connect()ed ones move to TCP_ESTABLISHED.
pub(super) const TCP_CLOSE: u8 = 7;
/// A dump reply never takes long; this only guarantees `recv` cannot block forever.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// netlink caps a dump skb at 32 KiB; 64 KiB can never be truncated (checked with MSG_TRUNC).
const RECV_BUF: usize = 64 * 1024;
/// Signals are rare; more than this many EINTR in a row means something is badly wrong.
const MAX_EINTR: usize = 64;

/// Serialised as `ipv4` / `ipv6`, like the `family` of bind/listen events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Tcp,
    Udp,
}

/// One listening TCP socket or bound, unconnected UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SockEntry {
    pub family: Family,
    pub proto: Proto,
    /// Local address; unspecified (`0.0.0.0` / `::`) means every address of the namespace.
    #[serde(serialize_with = "as_display")]
    pub addr: IpAddr,
    pub port: u16,
    /// SO_BINDTODEVICE ifindex; 0 when not bound to a device.
    pub bound_dev_if: u32,
    pub uid: u32,
    /// Socket inode, the `N` of the `socket:[N]` fd links in /proc/PID/fd.
    pub inode: u64,
    /// Kernel socket cookie (stable for the socket's lifetime, also visible to eBPF).
    pub cookie: u64,
    /// IPv6 sockets only: true when IPV6_V6ONLY is set (no IPv4 client can reach it).
    pub v6only: Option<bool>,
    /// TCP only: the effective listen() backlog (sk_max_ack_backlog, already capped by somaxconn).
    pub backlog: Option<u32>,
    /// TCP only: connections waiting in the accept queue right now (sk_ack_backlog).
    pub accept_queue: Option<u32>,
}

fn as_display<S: Serializer>(addr: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(addr)
}

/// Dumps the TCP listeners and bound UDP sockets of the calling thread's network namespace,
/// sorted by (proto, port, family, addr, inode) so that output is stable.
pub fn dump_listeners() -> io::Result<Vec<SockEntry>> {
    let fd = open_diag_socket()?;
    let mut out = Vec::new();
    let dumps = [
        (Family::V4, Proto::Tcp),
        (Family::V6, Proto::Tcp),
        (Family::V4, Proto::Udp),
        (Family::V6, Proto::Udp),
    ];
    for (seq, (family, proto)) in (1u32..).zip(dumps) {
        let req = build_request(family, proto, seq);
        dump_one(&fd, &req, seq, &mut out, |r| parse_diag_msg(r, proto)).map_err(|e| {
            io::Error::new(e.kind(), format!("sock_diag dump of {proto:?}/{family:?}: {e}"))
        })?;
    }
    out.sort_by_key(|e| (e.proto, e.port, e.family, e.addr, e.inode));
    Ok(out)
}

/// Dumps the TCP sockets (IPv4, then IPv6) of the calling thread's namespace whose state is in
/// the `states` bit mask (`1 << TCP_*`), each through `parse`. A non-zero `sport` asks the
/// kernel to filter by local port; `parse` still checks the port, so correctness never rests on
/// every kernel applying that filter to every socket table.
pub(super) fn dump_tcp<T>(
    states: u32,
    sport: u16,
    mut parse: impl FnMut(DiagMsg<'_>) -> Option<T>,
) -> io::Result<Vec<T>> {
    let fd = open_diag_socket()?;
    let mut out = Vec::new();
    for (seq, family) in (1u32..).zip([Family::V4, Family::V6]) {
        let req = build_request_for(family, Proto::Tcp, states, sport, seq);
        dump_one(&fd, &req, seq, &mut out, |r| Ok(DiagMsg::new(r).and_then(&mut parse))).map_err(
            |e| io::Error::new(e.kind(), format!("sock_diag dump of Tcp/{family:?}: {e}")),
        )?;
    }
    Ok(out)
}

fn open_diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; ownership moves into OwnedFd right away.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval { tv_sec: RECV_TIMEOUT.as_secs() as _, tv_usec: 0 };
    // SAFETY: valid fd; tv outlives the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn dump_one<T>(
    fd: &OwnedFd,
    req: &[u8],
    seq: u32,
    out: &mut Vec<T>,
    mut parse: impl FnMut(&InetResponse) -> io::Result<Option<T>>,
) -> io::Result<()> {
    let sent = retry_eintr(|| {
        // SAFETY: req is a valid buffer of the given length; a zeroed sockaddr_nl is the kernel.
        unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        }
    })?;
    if sent != req.len() {
        return Err(io::Error::other("short sendto on netlink socket"));
    }

    let mut buf = vec![0u8; RECV_BUF];
    // Not a counted loop: a namespace can hold any number of sockets. The kernel always ends a
    // dump with NLMSG_DONE or an error, and SO_RCVTIMEO bounds every wait.
    loop {
        // MSG_TRUNC makes netlink return the real datagram length, so truncation is detectable.
        let n = retry_eintr(|| {
            // SAFETY: buf is valid for writes of its length.
            unsafe {
                libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC)
            }
        })
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => {
                io::Error::new(io::ErrorKind::TimedOut, "no reply from sock_diag")
            }
            _ => e,
        })?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink closed"));
        }
        if n > buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink reply truncated"));
        }
        if parse_batch_with(&buf[..n], seq, out, &mut parse)? {
            return Ok(());
        }
    }
}

/// Runs a syscall wrapper returning -1/errno until it is not interrupted by a signal.
fn retry_eintr(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    for _ in 0..MAX_EINTR {
        let r = f();
        if r >= 0 {
            return Ok(r as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Err(io::Error::new(io::ErrorKind::Interrupted, "too many EINTR"))
}

fn build_request(family: Family, proto: Proto, seq: u32) -> Vec<u8> {
    let state = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => TCP_CLOSE,
    };
    build_request_for(family, proto, 1u32 << state, 0, seq)
}

/// A SOCK_DIAG_BY_FAMILY dump request (`inet_diag_req_v2`) for the sockets of `family` and
/// `proto` whose state is in the `states` mask, on local port `sport` when non-zero.
fn build_request_for(family: Family, proto: Proto, states: u32, sport: u16, seq: u32) -> Vec<u8> {
    let (af, mut socket_id) = match family {
        Family::V4 => (libc::AF_INET, SocketId::new_v4()),
        Family::V6 => (libc::AF_INET6, SocketId::new_v6()),
    };
    // The only filter of the sockid: no other address/port/interface, a zero cookie.
    socket_id.source_port = sport;
    let ipproto = match proto {
        Proto::Tcp => libc::IPPROTO_TCP,
        Proto::Udp => libc::IPPROTO_UDP,
    };
    let request = InetRequest {
        family: af as u8,
        protocol: ipproto as u8,
        // No extensions requested: backlog comes in the fixed message, SKV6ONLY is always sent.
        extensions: ExtensionFlags::empty(),
        // Not `StateFlags::all()` nor the named flags: they stop at TCP_CLOSING and would drop
        // TCP_BOUND_INACTIVE (13), the bound-only sockets Linux ≥ 6.8 lists.
        states: StateFlags::from_bits_retain(states),
        socket_id,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(SockDiagMessage::InetRequest(request)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The parser of the kernel's replies to a [`dump_listeners`] request: one received datagram
/// of the dump with sequence number `seq`, its listeners (TCP) or bound unconnected sockets
/// (UDP) of `proto` appended to `out`. Returns true at the dump's end (NLMSG_DONE), an error
/// for a kernel error or a malformed message.
pub fn parse_listener_replies(
    datagram: &[u8],
    seq: u32,
    proto: Proto,
    out: &mut Vec<SockEntry>,
) -> io::Result<bool> {
    parse_batch_with(datagram, seq, out, &mut |m| parse_diag_msg(m, proto))
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag reply: {what}"))
}

/// Parses one recv() worth of netlink messages, each diag message through `parse`, into `out`;
/// returns true at NLMSG_DONE.
fn parse_batch_with<T>(
    mut data: &[u8],
    seq: u32,
    out: &mut Vec<T>,
    parse: &mut impl FnMut(&InetResponse) -> io::Result<Option<T>>,
) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        let frame = NetlinkBuffer::new_checked(data).map_err(invalid)?;
        let len = frame.length() as usize;
        // Replies to an earlier, abandoned request can still be queued; they are not ours. Nor
        // is any type other than these (nor an address family other than AF_INET/AF_INET6).
        let family = frame.payload().first().map(|&f| i32::from(f));
        let ours = frame.sequence_number() == seq
            && match frame.message_type() {
                NLMSG_DONE | NLMSG_ERROR => true,
                SOCK_DIAG_BY_FAMILY => matches!(family, Some(libc::AF_INET | libc::AF_INET6)),
                _ => false,
            };
        if ours {
            let msg =
                NetlinkMessage::<SockDiagMessage>::deserialize(&data[..len]).map_err(invalid)?;
            match msg.payload {
                // A dump's DONE carries the dump's final status (0 or -errno).
                NetlinkPayload::Done(done) if done.code < 0 => {
                    return Err(io::Error::from_raw_os_error(-done.code));
                }
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code
                        && code.get() < 0
                    {
                        return Err(io::Error::from_raw_os_error(-code.get()));
                    }
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    if let Some(entry) = parse(&r)? {
                        out.push(entry);
                    }
                }
                _ => {}
            }
        }
        // Messages are 4-byte aligned; the last one's padding may be cut off.
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    Ok(false)
}

/// The fixed part of one `struct inet_diag_msg`, decoded, with its attributes.
#[derive(Debug, Clone, Copy)]
pub(super) struct DiagMsg<'a> {
    pub family: Family,
    /// `TCP_*` state (UDP reuses TCP_CLOSE / TCP_ESTABLISHED).
    pub state: u8,
    pub addr: IpAddr,
    pub port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
    pub bound_dev_if: u32,
    pub cookie: u64,
    pub rqueue: u32,
    pub wqueue: u32,
    pub uid: u32,
    /// 0 for sockets no file refers to (TIME_WAIT, request sockets).
    pub inode: u64,
    pub attrs: &'a [Nla],
}

impl<'a> DiagMsg<'a> {
    /// `None` for a family other than AF_INET/AF_INET6.
    fn new(r: &'a InetResponse) -> Option<Self> {
        let h = &r.header;
        let family = match i32::from(h.family) {
            libc::AF_INET => Family::V4,
            libc::AF_INET6 => Family::V6,
            _ => return None,
        };
        // The kernel's `__u32 idiag_cookie[2]`, low word first, each in host order.
        let c = h.socket_id.cookie;
        let word = |i: usize| u64::from(u32::from_ne_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]));
        Some(Self {
            family,
            state: h.state,
            addr: h.socket_id.source_address,
            port: h.socket_id.source_port,
            peer: h.socket_id.destination_address,
            peer_port: h.socket_id.destination_port,
            bound_dev_if: h.socket_id.interface_id,
            cookie: word(0) | (word(4) << 32),
            rqueue: h.recv_queue,
            wqueue: h.send_queue,
            uid: h.uid,
            inode: u64::from(h.inode),
            attrs: &r.nlas,
        })
    }
}

/// Parses one `struct inet_diag_msg` plus attributes; `None` for a socket that is not a
/// listener (defensive: the state filter already excludes most of them).
fn parse_diag_msg(r: &InetResponse, proto: Proto) -> io::Result<Option<SockEntry>> {
    let Some(m) = DiagMsg::new(r) else { return Ok(None) };
    let listening = match proto {
        Proto::Tcp => m.state == TCP_LISTEN,
        // What `ss -lun` shows: bound to a port, no peer.
        Proto::Udp => {
            m.state == TCP_CLOSE && m.port != 0 && m.peer_port == 0 && m.peer.is_unspecified()
        }
    };
    if !listening {
        return Ok(None);
    }
    let v6only = match m.family {
        Family::V4 => None,
        Family::V6 => m.attrs.iter().find_map(|a| match a {
            Nla::SkV6Only(v) => Some(*v),
            _ => None,
        }),
    };
    // For LISTEN sockets tcp_diag_get_info reports rqueue = sk_ack_backlog and
    // wqueue = sk_max_ack_backlog; for UDP they are byte counts, meaningless here.
    let (backlog, accept_queue) = match proto {
        Proto::Tcp => (Some(m.wqueue), Some(m.rqueue)),
        Proto::Udp => (None, None),
    };
    Ok(Some(SockEntry {
        family: m.family,
        proto,
        addr: m.addr,
        port: m.port,
        bound_dev_if: m.bound_dev_if,
        uid: m.uid,
        inode: m.inode,
        cookie: m.cookie,
        v6only,
        backlog,
        accept_queue,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kernel's layout, written out independently of the crate that now builds and parses
    // it, so that a disagreement fails here.
    const SOCK_DIAG_BY_FAMILY_UAPI: u16 = 20;
    /// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then a 48-byte sockid.
    const REQ_V2_LEN: usize = 56;
    /// `struct inet_diag_msg`: 4 bytes of family/state/timer/retrans, sockid, then 5 u32.
    const DIAG_MSG_LEN: usize = 72;

    fn ne_u32(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    fn parse_batch(
        data: &[u8],
        seq: u32,
        proto: Proto,
        out: &mut Vec<SockEntry>,
    ) -> io::Result<bool> {
        parse_listener_replies(data, seq, proto, out)
    }

    fn nlmsg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI, as in a real dump
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    /// A hand-built `struct inet_diag_msg` laid out as the kernel sends it.
    struct Msg {
        family: i32,
        state: u8,
        sport: u16,
        dport: u16,
        src: IpAddr,
        dst: IpAddr,
        ifindex: u32,
        cookie: u64,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
        attrs: Vec<u8>,
    }

    impl Msg {
        fn tcp4_listener() -> Self {
            Msg {
                family: libc::AF_INET,
                state: TCP_LISTEN,
                sport: 8080,
                dport: 0,
                src: "10.1.2.3".parse().unwrap(),
                dst: "0.0.0.0".parse().unwrap(),
                ifindex: 3,
                cookie: 0x1122_3344_5566_7788,
                rqueue: 2,
                wqueue: 511,
                uid: 1000,
                inode: 424242,
                attrs: Vec::new(),
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let ip16 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&v4.octets());
                    b
                }
                IpAddr::V6(v6) => v6.octets(),
            };
            let mut b = vec![self.family as u8, self.state, 0, 0];
            b.extend_from_slice(&self.sport.to_be_bytes());
            b.extend_from_slice(&self.dport.to_be_bytes());
            b.extend_from_slice(&ip16(self.src));
            b.extend_from_slice(&ip16(self.dst));
            b.extend_from_slice(&self.ifindex.to_ne_bytes());
            b.extend_from_slice(&(self.cookie as u32).to_ne_bytes());
            b.extend_from_slice(&((self.cookie >> 32) as u32).to_ne_bytes());
            for v in [0, self.rqueue, self.wqueue, self.uid, self.inode] {
                b.extend_from_slice(&v.to_ne_bytes());
            }
            assert_eq!(b.len(), DIAG_MSG_LEN);
            b.extend_from_slice(&self.attrs);
            b
        }
    }

    fn parse_one(m: &Msg, proto: Proto) -> Option<SockEntry> {
        let mut out = Vec::new();
        let reply = nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 1, &m.bytes());
        assert!(!parse_batch(&reply, 1, proto, &mut out).unwrap());
        assert!(out.len() <= 1);
        out.pop()
    }

    #[test]
    fn tcp_listener_fields_and_byte_order() {
        let e = parse_one(&Msg::tcp4_listener(), Proto::Tcp).unwrap();
        assert_eq!(
            e,
            SockEntry {
                family: Family::V4,
                proto: Proto::Tcp,
                addr: "10.1.2.3".parse().unwrap(),
                port: 8080,
                bound_dev_if: 3,
                uid: 1000,
                inode: 424242,
                cookie: 0x1122_3344_5566_7788,
                v6only: None,
                backlog: Some(511),
                accept_queue: Some(2),
            }
        );
    }

    /// Written out rather than reusing the constant, so a wrong constant fails this test.
    const SKV6ONLY_UAPI: u16 = 11;

    #[test]
    fn v6only_attribute_is_found_among_others() {
        let mut m = Msg::tcp4_listener();
        m.family = libc::AF_INET6;
        m.src = "::".parse().unwrap();
        m.dst = "::".parse().unwrap();
        // INET_DIAG_SHUTDOWN (8) comes first in real replies.
        m.attrs = [attr(8, &[0]), attr(SKV6ONLY_UAPI, &[1])].concat();
        let e = parse_one(&m, Proto::Tcp).unwrap();
        assert_eq!((e.family, e.addr, e.v6only), (Family::V6, "::".parse().unwrap(), Some(true)));

        m.attrs = [attr(8, &[0]), attr(SKV6ONLY_UAPI, &[0])].concat();
        assert_eq!(parse_one(&m, Proto::Tcp).unwrap().v6only, Some(false));

        // Unknown rather than guessed when the kernel does not say.
        m.attrs = attr(8, &[0]);
        assert_eq!(parse_one(&m, Proto::Tcp).unwrap().v6only, None);
    }

    #[test]
    fn udp_keeps_only_bound_unconnected_sockets() {
        let mut m = Msg::tcp4_listener();
        m.state = TCP_CLOSE;
        m.sport = 53;
        let e = parse_one(&m, Proto::Udp).unwrap();
        assert_eq!((e.proto, e.port, e.backlog, e.accept_queue), (Proto::Udp, 53, None, None));

        let mut connected = Msg::tcp4_listener();
        connected.state = TCP_CLOSE;
        connected.dport = 9999;
        connected.dst = "10.9.9.9".parse().unwrap();
        assert_eq!(parse_one(&connected, Proto::Udp), None);

        let mut established = Msg::tcp4_listener();
        established.state = 1;
        assert_eq!(parse_one(&established, Proto::Udp), None);

        let mut unbound = Msg::tcp4_listener();
        unbound.state = TCP_CLOSE;
        unbound.sport = 0;
        assert_eq!(parse_one(&unbound, Proto::Udp), None);
    }

    #[test]
    fn non_listening_tcp_is_dropped() {
        let mut m = Msg::tcp4_listener();
        m.state = 1; // ESTABLISHED
        assert_eq!(parse_one(&m, Proto::Tcp), None);
    }

    #[test]
    fn short_diag_message_is_rejected() {
        let bytes = Msg::tcp4_listener().bytes();
        let reply = nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 1, &bytes[..DIAG_MSG_LEN - 1]);
        assert!(parse_batch(&reply, 1, Proto::Tcp, &mut vec![]).is_err());
    }

    #[test]
    fn multipart_dump_until_done_ignoring_other_sequences() {
        let mut second = Msg::tcp4_listener();
        second.sport = 22;
        let mut batch = nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 5, &Msg::tcp4_listener().bytes());
        batch.extend(nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 4, &second.bytes())); // stale request
        let mut out = Vec::new();
        assert!(!parse_batch(&batch, 5, Proto::Tcp, &mut out).unwrap());
        let mut last = nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 5, &second.bytes());
        last.extend(nlmsg(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert!(parse_batch(&last, 5, Proto::Tcp, &mut out).unwrap());
        assert_eq!(out.iter().map(|e| e.port).collect::<Vec<_>>(), vec![8080, 22]);
    }

    #[test]
    fn netlink_errors_are_reported() {
        let err = parse_batch(
            &nlmsg(NLMSG_ERROR, 1, &(-libc::ENOENT).to_ne_bytes()),
            1,
            Proto::Udp,
            &mut vec![],
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        // A dump that failed part-way ends with DONE carrying -errno.
        let err = parse_batch(
            &nlmsg(NLMSG_DONE, 1, &(-libc::ENOBUFS).to_ne_bytes()),
            1,
            Proto::Tcp,
            &mut vec![],
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS));
    }

    #[test]
    fn truncated_netlink_message_is_rejected() {
        let mut m = nlmsg(SOCK_DIAG_BY_FAMILY_UAPI, 1, &Msg::tcp4_listener().bytes());
        m[0] = 200;
        assert!(parse_batch(&m, 1, Proto::Tcp, &mut vec![]).is_err());
    }

    #[test]
    fn request_layout() {
        let r = build_request(Family::V6, Proto::Udp, 9);
        assert_eq!(r.len(), NLMSG_HDRLEN + REQ_V2_LEN);
        assert_eq!(ne_u32(&r, 0) as usize, r.len());
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY_UAPI);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301); // NLM_F_REQUEST | NLM_F_DUMP
        assert_eq!(ne_u32(&r, 8), 9);
        assert_eq!(&r[16..20], &[libc::AF_INET6 as u8, libc::IPPROTO_UDP as u8, 0, 0]);
        assert_eq!(ne_u32(&r, 20), 1 << 7);
        assert!(r[24..].iter().all(|&b| b == 0));
        let r = build_request(Family::V4, Proto::Tcp, 1);
        assert_eq!(&r[16..20], &[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
        assert_eq!(ne_u32(&r, 20), 1 << 10);
        // Every state through TCP_BOUND_INACTIVE (13), which the crate's named flags lack, and
        // the local port in network order at the start of the sockid.
        let r = build_request_for(Family::V4, Proto::Tcp, (1 << 14) - 1, 8080, 2);
        assert_eq!(ne_u32(&r, 20), 0x3fff);
        assert_eq!(&r[24..26], &8080u16.to_be_bytes());
        assert!(r[26..].iter().all(|&b| b == 0));
    }

    #[test]
    fn serializes_addresses_as_strings() {
        let mut e = parse_one(&Msg::tcp4_listener(), Proto::Tcp).unwrap();
        e.addr = "::".parse().unwrap();
        e.family = Family::V6;
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["addr"], "::");
        assert_eq!(v["family"], "ipv6");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["bound_dev_if"], 3);
    }

    // --- Against the running kernel, inside scratch namespaces. ---

    use std::{
        net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
        os::fd::AsFd,
    };

    use crate::{
        lab::sockets::{ListenSpec, setsockopt, sockaddr, tcp_listen as tcp_listen_with},
        netns::enter::{in_new_netns, loopback_up},
    };

    fn check(r: libc::c_int, what: &str) {
        assert!(r >= 0, "{what}: {}", io::Error::last_os_error());
    }

    /// A socket set up with plain libc, since std cannot set IPV6_V6ONLY or SO_BINDTODEVICE
    /// before bind(), nor choose the listen() backlog.
    fn raw_socket(
        addr: SocketAddr,
        ty: libc::c_int,
        v6only: Option<bool>,
        dev: Option<&str>,
    ) -> OwnedFd {
        let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        // SAFETY: plain socket(2); owned right away.
        let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
        check(raw, "socket");
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if let Some(v) = v6only {
            let on: libc::c_int = v.into();
            setsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &on.to_ne_bytes())
                .unwrap();
        }
        if let Some(dev) = dev {
            setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())
                .unwrap();
        }
        let (storage, len) = sockaddr(addr);
        // SAFETY: storage holds a valid sockaddr of length len.
        check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) }, "bind");
        fd
    }

    fn tcp_listen(
        addr: &str,
        v6only: Option<bool>,
        device: Option<&str>,
        backlog: i32,
    ) -> TcpListener {
        let spec = ListenSpec { v6only, device, backlog, ..ListenSpec::on(addr.parse().unwrap()) };
        TcpListener::from(tcp_listen_with(&spec).unwrap())
    }

    fn inode_of(fd: impl AsFd) -> u64 {
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    /// Waits (bounded) until a listener has a connection in its accept queue.
    fn wait_readable(l: &TcpListener) {
        let mut p = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 5000) };
        assert_eq!(n, 1, "connection never reached the accept queue");
    }

    type Key = (Proto, Family, String, u16, Option<bool>, Option<u32>, Option<u32>, u32);

    fn key(e: &SockEntry) -> Key {
        (
            e.proto,
            e.family,
            e.addr.to_string(),
            e.port,
            e.v6only,
            e.backlog,
            e.accept_queue,
            e.bound_dev_if,
        )
    }

    #[test]
    fn fresh_namespace_has_no_listeners() {
        // lo is still down: the dump must work anyway and find nothing.
        let all = in_new_netns(dump_listeners).unwrap().unwrap();
        assert!(all.is_empty(), "{all:?}");
    }

    #[test]
    fn dump_spanning_many_recvs_is_complete() {
        // 700 UDP sockets make a ~75 KiB dump: more than one recv buffer (64 KiB) and many
        // 32 KiB kernel skbs, so the NLM_F_MULTI loop must run several times. Kept below 1024 so
        // a default fd limit still suffices.
        const N: usize = 700;
        in_new_netns(|| {
            loopback_up().unwrap();
            let socks: Vec<UdpSocket> =
                (0..N).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
            let all = dump_listeners().unwrap();
            let mut got: Vec<u16> = all.iter().map(|e| e.port).collect();
            let mut want: Vec<u16> = socks.iter().map(|s| s.local_addr().unwrap().port()).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want);
        })
        .unwrap();
    }

    #[test]
    fn dump_lists_exactly_the_listeners_of_a_scratch_namespace() {
        in_new_netns(|| {
            loopback_up().unwrap();
            let lo = nix::net::if_::if_nametoindex("lo").unwrap();
            let v4 = tcp_listen("127.0.0.1:0", None, None, 7);
            let v6only = tcp_listen("[::]:0", Some(true), None, 5);
            let dual = tcp_listen("[::]:0", Some(false), None, 3);
            let on_lo = tcp_listen("0.0.0.0:0", None, Some("lo"), 2);
            let udp4 = UdpSocket::bind("0.0.0.0:0").unwrap();
            // Binding a specific IPv6 address makes the kernel set v6only by itself.
            let udp6 = UdpSocket::from(raw_socket(
                "[::1]:0".parse().unwrap(),
                libc::SOCK_DGRAM,
                None,
                None,
            ));

            // None of these may appear: a client and its accepted peer (ESTABLISHED), a
            // connected UDP socket, a bound-but-not-listening TCP socket.
            let client = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
            wait_readable(&v4);
            let udp_conn = UdpSocket::bind("127.0.0.1:0").unwrap();
            let udp4_port = udp4.local_addr().unwrap().port();
            udp_conn.connect(SocketAddr::from(([127, 0, 0, 1], udp4_port))).unwrap();
            let bound_only = TcpListener::from(raw_socket(
                "127.0.0.1:0".parse().unwrap(),
                libc::SOCK_STREAM,
                None,
                None,
            ));

            let all = dump_listeners().unwrap();
            let port = |s: SocketAddr| s.port();
            let mut expected: Vec<Key> = vec![
                (
                    Proto::Tcp,
                    Family::V4,
                    "127.0.0.1".into(),
                    port(v4.local_addr().unwrap()),
                    None,
                    Some(7),
                    Some(1),
                    0,
                ),
                (
                    Proto::Tcp,
                    Family::V6,
                    "::".into(),
                    port(v6only.local_addr().unwrap()),
                    Some(true),
                    Some(5),
                    Some(0),
                    0,
                ),
                (
                    Proto::Tcp,
                    Family::V6,
                    "::".into(),
                    port(dual.local_addr().unwrap()),
                    Some(false),
                    Some(3),
                    Some(0),
                    0,
                ),
                (
                    Proto::Tcp,
                    Family::V4,
                    "0.0.0.0".into(),
                    port(on_lo.local_addr().unwrap()),
                    None,
                    Some(2),
                    Some(0),
                    lo,
                ),
                (
                    Proto::Udp,
                    Family::V4,
                    "0.0.0.0".into(),
                    port(udp4.local_addr().unwrap()),
                    None,
                    None,
                    None,
                    0,
                ),
                (
                    Proto::Udp,
                    Family::V6,
                    "::1".into(),
                    port(udp6.local_addr().unwrap()),
                    Some(true),
                    None,
                    None,
                    0,
                ),
            ];
            expected.sort();
            let mut got: Vec<Key> = all.iter().map(key).collect();
            got.sort();
            assert_eq!(got, expected, "{all:#?}");

            // Identity fields: inode matches the fd, uid is ours, cookies are real and distinct.
            let inodes = [
                inode_of(&v4),
                inode_of(&v6only),
                inode_of(&dual),
                inode_of(&on_lo),
                inode_of(&udp4),
                inode_of(&udp6),
            ];
            let mut seen: Vec<u64> = all.iter().map(|e| e.inode).collect();
            seen.sort();
            let mut want = inodes.to_vec();
            want.sort();
            assert_eq!(seen, want);
            let uid = nix::unistd::geteuid().as_raw();
            assert!(all.iter().all(|e| e.uid == uid), "{all:#?}");
            let mut cookies: Vec<u64> = all.iter().map(|e| e.cookie).collect();
            cookies.sort();
            cookies.dedup();
            assert_eq!(cookies.len(), all.len());
            assert!(!cookies.contains(&0));
            drop((client, udp_conn, bound_only));
        })
        .unwrap();
    }
}
