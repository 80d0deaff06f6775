//! NETLINK_NETFILTER sockets: one opened in the calling thread's network namespace (it stays
//! bound to that namespace from any thread afterwards), subscribed to multicast groups, with a
//! receive timeout and buffer. Shared by the nftables trace listener and conntrack.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use netlink_packet_core::{NLMSG_ALIGNTO, NetlinkBuffer};

/// A NETLINK_NETFILTER socket in the calling thread's namespace, bound to the multicast
/// `groups` bit mask (0: none, for requests to the kernel).
pub fn open(groups: u32) -> io::Result<OwnedFd> {
    open_protocol(libc::NETLINK_NETFILTER, groups)
}

/// A netlink socket of `protocol` (NETLINK_ROUTE for route lookups) in the calling thread's
/// namespace, bound to `groups` as [`open`] does; [`send`], [`messages`] and the timeouts work
/// on any of them.
pub fn open_protocol(protocol: libc::c_int, groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; ownership moves into OwnedFd right away.
    let raw =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if groups != 0 {
        // SAFETY: a zeroed sockaddr_nl with the group mask; the kernel picks the port id.
        let r = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = groups;
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// Bounds each `recv` on `fd` to `timeout` (then it fails with EAGAIN).
pub fn set_recv_timeout(fd: &OwnedFd, timeout: Duration) {
    let tv =
        libc::timeval { tv_sec: timeout.as_secs() as _, tv_usec: timeout.subsec_micros() as _ };
    // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
}

/// Asks for a receive buffer of `bytes` (bursts between two reads: ENOBUFS rarer).
pub fn set_recv_buffer(fd: &OwnedFd, bytes: usize) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: size is a valid c_int for SO_RCVBUF.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// One netfilter message framed for the kernel (netlink-packet-core sets its length and type
/// from the payload): what conntrack, the table dump and nftables batches send.
pub fn encode(inner: netlink_packet_netfilter::NetfilterMessage, flags: u16, seq: u32) -> Vec<u8> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Sends one request to the kernel.
pub fn send(fd: &OwnedFd, request: &[u8]) -> io::Result<()> {
    // SAFETY: request is a valid buffer; a zeroed sockaddr_nl addresses the kernel.
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The netlink messages of one received datagram, each whole (header included) with its
/// type; a truncated or malformed one ends the walk. The framing is netlink-packet-core's
/// (`NetlinkBuffer::new_checked` checks each length against the header and the datagram).
pub fn messages(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let frame = NetlinkBuffer::new_checked(data).ok()?;
        let (ty, len) = (frame.message_type(), frame.length() as usize);
        let msg = &data[..len];
        // Messages are 4-byte aligned; the last one's padding may be cut off.
        data = &data[len.next_multiple_of(usize::from(NLMSG_ALIGNTO)).min(data.len())..];
        Some((ty, msg))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    #[test]
    fn splits_a_datagram_into_its_messages_and_stops_at_a_bad_one() {
        let mut data = msg(7, b"abc");
        data.extend(msg(9, b""));
        let got: Vec<(u16, usize)> = messages(&data).map(|(t, m)| (t, m.len())).collect();
        assert_eq!(got, [(7, 19), (9, 16)]);
        // A length past the end: nothing more.
        let mut bad = msg(7, b"x");
        bad[0] = 200;
        assert_eq!(messages(&bad).count(), 0);
        assert_eq!(messages(&data[..10]).count(), 0);
    }
}
