//! One TCP connection's conntrack entry, asked of the kernel by its original tuple (ctnetlink
//! IPCTNL_MSG_CT_GET, what `conntrack -G` sends), in the calling thread's network namespace.
//!
//! The entry's reply tuple says where the connection really went: a SYN the client sent to
//! 10.0.0.1:8080 that a DNAT rule (Docker's `-p 8080:80`, a Kubernetes Service, a firewalld
//! forward-port) sent on to 172.17.0.2:80 has the reply tuple 172.17.0.2:80 → client. Messages
//! are built and parsed by netlink-packet-netfilter; only the socket is ours. [`Events`] keeps
//! the new-connection events of a namespace while an attempt is watched (a refused attempt's
//! entry is gone by the time one could ask); [`tcp`] asks for an entry afterwards.
use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    conntrack::{
        ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple,
        Protocol, Tuple,
    },
};
use serde::Serialize;

use crate::kernel::nfnetlink;

/// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET: what the request's payload makes its type.
#[cfg(test)]
const CT_GET: u16 = (1 << 8) | 1;

/// Both directions of a tracked TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The client's view: client → the address it dialed.
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    /// The answering side's view: who answers → where the answers go.
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
    /// conntrack's TCP state (`TCP_CONNTRACK_*`: 1 SYN_SENT, 3 ESTABLISHED, …), when given.
    pub tcp_state: Option<u8>,
}

impl Entry {
    /// Where the connection was sent, when a destination NAT changed it (address or port).
    pub fn dnat(&self) -> Option<SocketAddr> {
        (self.reply_src != self.orig_dst).then_some(self.reply_src)
    }

    /// Whether the three-way handshake completed: ESTABLISHED or one of the closing states
    /// after it (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT).
    pub fn handshake_done(&self) -> bool {
        matches!(self.tcp_state, Some(3..=7))
    }

    /// The source the answering side sees, when a source NAT (masquerade) changed it.
    pub fn snat(&self) -> Option<SocketAddr> {
        (self.reply_dst != self.orig_src).then_some(self.reply_dst)
    }
}

/// The entry of the TCP connection `client` → `server` (the original tuple), or None when the
/// kernel tracks no such connection (conntrack not loaded in this namespace, or expired).
pub fn tcp(client: SocketAddr, server: SocketAddr) -> io::Result<Option<Entry>> {
    let request = get_request(client, server, 1);
    let fd = socket()?;
    nfnetlink::send(&fd, &request)?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&buf[..n as usize])
}

/// Whether the kernel has connection tracking at all (the module loaded, or built in: its
/// parameters appear under /sys/module either way). Without it no NAT can have happened, and
/// asking would only make the kernel load ctnetlink's modules on reach's behalf.
pub fn available() -> bool {
    std::path::Path::new("/sys/module/nf_conntrack").exists()
}

/// NF_NETLINK_CONNTRACK_NEW: an event per connection conntrack confirms, both tuples set.
const GROUP_NEW: u32 = 1;

/// New-connection events of one namespace's conntrack, gathered by a thread of their own from
/// the subscription on: conntrack deletes a connection answered only by a RST at once (the
/// kernel's "only reply is a RST" rule), so asking for a refused attempt afterwards finds
/// nothing. Only connections to `port` are kept; the thread ends when this is dropped.
pub struct Events {
    seen: std::sync::Arc<std::sync::Mutex<VecDeque<Entry>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Events {
    /// Subscribes in the calling thread's network namespace (the socket stays bound to it).
    pub fn subscribe(port: u16) -> io::Result<Events> {
        let fd = nfnetlink::open(GROUP_NEW)?;
        // Room for bursts of other connections between two reads.
        nfnetlink::set_recv_buffer(&fd, 1 << 20);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("conntrack-events".into())
            .spawn(move || read_events(&fd, port, &s, &st))?;
        Ok(Events { seen, stop, thread: Some(thread) })
    }

    /// The connection `client` → `server`, if its event has arrived.
    pub fn find(&self, client: SocketAddr, server: SocketAddr) -> Option<Entry> {
        let (client, server) = (canonical(client), canonical(server));
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().rev().find(|e| e.orig_src == client && e.orig_dst == server).copied()
    }

    /// The connection that NAT sent on as `from` → `to` (its reply tuple reversed): how a
    /// connection seen only after the NAT is told what its client dialed.
    pub fn sent_to(&self, from: SocketAddr, to: SocketAddr) -> Option<Entry> {
        let (from, to) = (canonical(from), canonical(to));
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .rev()
            .find(|e| e.reply_src == to && e.reply_dst == from && e.dnat().is_some())
            .copied()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads events until `stop` (checked at least every receive timeout), keeping those to `port`.
fn read_events(
    fd: &OwnedFd,
    port: u16,
    seen: &std::sync::Mutex<VecDeque<Entry>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    // A short timeout so dropping the subscription does not wait long for the thread.
    nfnetlink::set_recv_timeout(fd, std::time::Duration::from_millis(200));
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            // Timeout, interruption, or ENOBUFS after a burst: the subscription goes on.
            continue;
        }
        for (_, msg) in nfnetlink::messages(&buf[..n as usize]) {
            if let Ok(Some(e)) = parse_reply(msg)
                && e.orig_dst.port() == port
            {
                let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                // Bounded: the newest matter.
                if s.len() >= 1024 {
                    s.pop_front();
                }
                s.push_back(e);
            }
        }
    }
}

/// An IPv4-mapped address stands for the IPv4 connection conntrack tracks.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn family(a: &SocketAddr) -> NetfilterProtoFamily {
    if a.is_ipv4() { NetfilterProtoFamily::IPv4 } else { NetfilterProtoFamily::IPv6 }
}

/// A TCP tuple `src` → `dst` as ctnetlink nests it.
fn tcp_tuple(src: SocketAddr, dst: SocketAddr) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![IPTuple::SourceAddress(src.ip()), IPTuple::DestinationAddress(dst.ip())]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(src.port()),
            ProtoTuple::DestinationPort(dst.port()),
        ]),
    ]
}

/// The IPCTNL_MSG_CT_GET request for the original tuple `client` → `server`.
fn get_request(client: SocketAddr, server: SocketAddr, seq: u32) -> Vec<u8> {
    let (client, server) = (canonical(client), canonical(server));
    let inner = NetfilterMessage::new(
        NetfilterHeader::new(family(&client), 0, 0),
        ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleOrig(tcp_tuple(client, server))]),
    );
    nfnetlink::encode(inner, NLM_F_REQUEST, seq)
}

/// The kernel's answer: the entry (an IPCTNL_MSG_CT_NEW message), or ENOENT as None.
fn parse_reply(buf: &[u8]) -> io::Result<Option<Entry>> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("ctnetlink: {e}")))?;
    match msg.payload {
        NetlinkPayload::Error(e) => match e.code {
            Some(code) if -code.get() == libc::ENOENT => Ok(None),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            None => Ok(None),
        },
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
            ..
        }) => Ok(entry(&attrs)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ctnetlink answered with an unexpected message: {other:?}"),
        )),
    }
}

fn entry(attrs: &[ConntrackAttribute]) -> Option<Entry> {
    let mut orig = None;
    let mut reply = None;
    let mut tcp_state = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = endpoints(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = endpoints(t),
            ConntrackAttribute::CtaProtoInfo(infos) => {
                for info in infos {
                    if let ProtoInfo::TCP(tcp) = info {
                        for t in tcp {
                            if let ProtoInfoTCP::State(s) = t {
                                tcp_state = Some(*s);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let ((orig_src, orig_dst), (reply_src, reply_dst)) = (orig?, reply?);
    Some(Entry { orig_src, orig_dst, reply_src, reply_dst, tcp_state })
}

/// (source, destination) of one tuple.
fn endpoints(tuple: &[Tuple]) -> Option<(SocketAddr, SocketAddr)> {
    let (mut src, mut dst): (Option<IpAddr>, Option<IpAddr>) = (None, None);
    let (mut sport, mut dport) = (None, None);
    for t in tuple {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::SourcePort(v) => sport = Some(*v),
                        ProtoTuple::DestinationPort(v) => dport = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((SocketAddr::new(src?, sport?), SocketAddr::new(dst?, dport?)))
}

fn socket() -> io::Result<OwnedFd> {
    let fd = nfnetlink::open(0)?;
    // A kernel that never answers must not hang a diagnosis.
    nfnetlink::set_recv_timeout(&fd, std::time::Duration::from_secs(2));
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The answer the kernel gives for a DNATed connection, built as the kernel builds it.
    fn answer(orig: (SocketAddr, SocketAddr), reply: (SocketAddr, SocketAddr)) -> Vec<u8> {
        let tuple = |(s, d): (SocketAddr, SocketAddr)| tcp_tuple(s, d);
        let inner = NetfilterMessage::new(
            NetfilterHeader::new(family(&orig.0), 0, 0),
            ConntrackMessage::New(vec![
                ConntrackAttribute::CtaTupleOrig(tuple(orig)),
                ConntrackAttribute::CtaTupleReply(tuple(reply)),
                ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(
                    3,
                )])]),
            ]),
        );
        let mut header = netlink_packet_core::NetlinkHeader::default();
        header.message_type = 1 << 8; // IPCTNL_MSG_CT_NEW
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    #[test]
    fn a_dnat_shows_in_the_reply_tuple() {
        let (client, dialed, backend) =
            (sa("10.77.0.2:40000"), sa("10.77.0.1:8080"), sa("172.30.0.2:80"));
        let e = parse_reply(&answer((client, dialed), (backend, client))).unwrap().unwrap();
        assert_eq!((e.orig_src, e.orig_dst), (client, dialed));
        assert_eq!(e.dnat(), Some(backend));
        assert_eq!(e.snat(), None);
        assert!(e.handshake_done(), "state 3 is ESTABLISHED");
        // Untranslated: the reply comes from the address dialed.
        let e = parse_reply(&answer((client, dialed), (dialed, client))).unwrap().unwrap();
        assert_eq!((e.dnat(), e.snat()), (None, None));
        // IPv6, with a masquerade on the way.
        let (c6, d6, b6, m6) = (
            sa("[fd00::2]:40000"),
            sa("[fd00::1]:8080"),
            sa("[fd01::2]:80"),
            sa("[fd01::1]:40000"),
        );
        let e = parse_reply(&answer((c6, d6), (b6, m6))).unwrap().unwrap();
        assert_eq!((e.dnat(), e.snat()), (Some(b6), Some(m6)));
    }

    #[test]
    fn the_request_is_a_ct_get_for_the_original_tuple() {
        let req = get_request(sa("10.77.0.2:40000"), sa("10.77.0.1:8080"), 7);
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&req).unwrap();
        assert_eq!(msg.header.message_type, CT_GET);
        assert_eq!(msg.header.sequence_number, 7);
        let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::Get(attrs)),
            ..
        }) = msg.payload
        else {
            panic!("not a conntrack GET: {msg:?}")
        };
        let ConntrackAttribute::CtaTupleOrig(t) = &attrs[0] else { panic!("{attrs:?}") };
        assert_eq!(endpoints(t), Some((sa("10.77.0.2:40000"), sa("10.77.0.1:8080"))));
        // A v4-mapped client is asked as the IPv4 connection it is.
        let req = get_request(sa("[::ffff:10.77.0.2]:1"), sa("[::ffff:10.77.0.1]:2"), 1);
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&req).unwrap();
        let NetlinkPayload::InnerMessage(m) = msg.payload else { panic!("{msg:?}") };
        assert_eq!(m.header.family, NetfilterProtoFamily::IPv4);
    }
}
