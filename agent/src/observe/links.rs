//! Interfaces that come and go inside a watched namespace: an rtnetlink socket opened in the
//! namespace, subscribed to link and address notifications, read on a blocking task. A pod's
//! veth moved in by its CNI plugin, a tunnel created later, an interface that gets its first
//! address: each is reported so the session attaches its classifiers within one notification;
//! a deleted or moved-away interface is reported so the session lets go of it.
//!
//! The socket holds a reference on its namespace (every socket does): a namespace whose last
//! process exited and whose mount was removed lives on until this socket closes. The session
//! therefore closes it (stops the monitor) as soon as the inventory no longer lists the
//! namespace, and a monitor never outlives the tap it serves.
use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    time::Duration,
};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use super::readers::Msg;
use crate::{kernel::nfnetlink, netns::enter};

/// What changed about a namespace's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// An interface appeared, changed, or gained an address: the set of interfaces to tap may
    /// have grown.
    Changed,
    /// Interface `ifindex` was deleted or moved to another namespace.
    Gone(u32),
    /// Notifications were lost (the socket's buffer overflowed): rescan everything.
    Overrun,
}

/// RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR (linux/rtnetlink.h).
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// Opens the notification socket inside the namespace at `path`.
pub fn open(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = enter::in_netns(path, || nfnetlink::open_protocol(libc::NETLINK_ROUTE, GROUPS))??;
    // Bounded reads, so the reader notices a stop within one timeout.
    nfnetlink::set_recv_timeout(&fd, Duration::from_millis(200));
    nfnetlink::set_recv_buffer(&fd, 1 << 20);
    Ok(fd)
}

/// Spawns the reader of `fd` for namespace `netns` (inode); it ends when `stop` is set or the
/// session stops listening.
pub fn spawn(
    set: &mut JoinSet<anyhow::Result<()>>,
    fd: OwnedFd,
    netns: u64,
    tx: mpsc::Sender<Msg>,
    stop: watch::Receiver<bool>,
) {
    set.spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            // SAFETY: buf is a valid, writable buffer of its length; fd is open.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let changes = if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => vec![LinkChange::Overrun],
                    _ => return Err(std::io::Error::last_os_error().into()),
                }
            } else {
                parse(&buf[..n as usize])
            };
            for change in changes {
                if tx.blocking_send(Msg::Link(netns, change)).is_err() {
                    return Ok(());
                }
            }
        }
    });
}

/// The changes one datagram of notifications carries (several per datagram are common).
pub fn parse(datagram: &[u8]) -> Vec<LinkChange> {
    let mut out = Vec::new();
    for (_, raw) in nfnetlink::messages(datagram) {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) else { continue };
        let change = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                LinkChange::Gone(l.header.index)
            }
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::NewAddress(_),
            ) => LinkChange::Changed,
            _ => continue,
        };
        if !out.contains(&change) {
            out.push(change);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::{address::AddressMessage, link::LinkMessage};

    use super::*;

    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
            msg.finalize();
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.serialize(&mut buf);
            out.extend(buf);
        }
        out
    }

    #[test]
    fn new_links_and_addresses_ask_for_a_rescan_and_deleted_links_name_their_index() {
        let mut gone = LinkMessage::default();
        gone.header.index = 7;
        let got = parse(&datagram(vec![
            RouteNetlinkMessage::NewLink(LinkMessage::default()),
            RouteNetlinkMessage::NewAddress(AddressMessage::default()),
            RouteNetlinkMessage::DelLink(gone),
            RouteNetlinkMessage::DelAddress(AddressMessage::default()),
        ]));
        assert_eq!(got, [LinkChange::Changed, LinkChange::Gone(7)]);
        assert!(parse(&[1, 2, 3]).is_empty());
    }
}
