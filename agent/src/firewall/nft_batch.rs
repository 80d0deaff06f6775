//! One nftables transaction on a NETLINK_NETFILTER socket the caller keeps: the messages,
//! framed by netlink-packet-netfilter, between BATCH_BEGIN and BATCH_END, each asking for an
//! acknowledgement so the kernel's answer names the message it refused. The socket matters:
//! a table created with the owner flag (NFT_TABLE_F_OWNER) belongs to it, and the kernel
//! removes that table when the socket closes, however its process ends.
use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily, nftables::NfTablesMessage,
    none::ControlMessage,
};

use crate::kernel::nfnetlink;

/// NFNL_SUBSYS_NFTABLES: the batch's subsystem, in BATCH_BEGIN's resource id.
const SUBSYS_NFTABLES: u16 = 10;

/// One message of a batch with its netlink flags beyond REQUEST and ACK (NLM_F_CREATE…).
pub struct Op {
    pub message: NfTablesMessage,
    pub flags: u16,
}

/// The kernel refused the batch (it applied none of it): the first refused message's index
/// and errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub index: usize,
    pub errno: i32,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message {} refused: {}", self.index, io::Error::from_raw_os_error(self.errno))
    }
}

#[derive(Debug)]
pub enum BatchError {
    Refused(Refused),
    Io(io::Error),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => r.fmt(f),
            Self::Io(e) => write!(f, "nfnetlink: {e}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Sequence numbers unique in this process, so a late answer to an earlier batch on the same
/// socket is never taken for this one's.
static SEQ: AtomicU32 = AtomicU32::new(1);

/// The datagram of one transaction of `ops` in `family`; returns it with the sequence number
/// of `ops[0]` (the others follow it).
pub fn encode(family: NetfilterProtoFamily, ops: &[Op]) -> (Vec<u8>, u32) {
    let first = SEQ.fetch_add(ops.len() as u32 + 2, Ordering::Relaxed);
    let mut out = Vec::new();
    let control = |m: ControlMessage| {
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
            m,
        )
    };
    out.extend(nfnetlink::encode(control(ControlMessage::BatchBegin), NLM_F_REQUEST, first));
    for (i, op) in ops.iter().enumerate() {
        let msg = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), op.message.clone());
        let flags = NLM_F_REQUEST | NLM_F_ACK | op.flags;
        out.extend(nfnetlink::encode(msg, flags, first + 1 + i as u32));
    }
    let end = first + 1 + ops.len() as u32;
    out.extend(nfnetlink::encode(control(ControlMessage::BatchEnd), NLM_F_REQUEST, end));
    (out, first + 1)
}

/// Sends one request outside a transaction (a GET), acknowledged: Ok when the kernel answers
/// it (its reply messages are read and dropped), Refused with the errno otherwise.
pub fn request(fd: &OwnedFd, family: NetfilterProtoFamily, op: &Op) -> Result<(), BatchError> {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let msg = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), op.message.clone());
    let datagram = nfnetlink::encode(msg, NLM_F_REQUEST | NLM_F_ACK | op.flags, seq);
    nfnetlink::send(fd, &datagram).map_err(BatchError::Io)?;
    nfnetlink::set_recv_timeout(fd, std::time::Duration::from_secs(2));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is a valid, writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(BatchError::Io(io::Error::last_os_error()));
        }
        if let Some((_, code)) = acks(&buf[..n as usize]).into_iter().find(|(s, _)| *s == seq) {
            return match code {
                0 => Ok(()),
                c => Err(BatchError::Refused(Refused { index: 0, errno: -c })),
            };
        }
    }
}

/// Sends `ops` as one transaction on `fd` and waits for the kernel's verdict on each.
pub fn send(fd: &OwnedFd, family: NetfilterProtoFamily, ops: &[Op]) -> Result<(), BatchError> {
    let (datagram, first) = encode(family, ops);
    nfnetlink::send(fd, &datagram).map_err(BatchError::Io)?;
    // nfnetlink runs the batch inside sendmsg, so the answers are queued by now; the receive
    // timeout only bounds a kernel that never answers.
    nfnetlink::set_recv_timeout(fd, std::time::Duration::from_secs(2));
    let mut answered = vec![false; ops.len()];
    let mut refused: Option<Refused> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while answered.iter().any(|a| !a) {
        // SAFETY: buf is a valid, writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A refused batch may leave the other messages unanswered.
            return match refused {
                Some(r) => Err(BatchError::Refused(r)),
                None => Err(BatchError::Io(e)),
            };
        }
        for (seq, code) in acks(&buf[..n as usize]) {
            let Some(index) = seq.checked_sub(first).map(|i| i as usize) else { continue };
            let Some(slot) = answered.get_mut(index) else { continue };
            *slot = true;
            if code != 0 && refused.is_none_or(|r| index < r.index) {
                refused = Some(Refused { index, errno: -code });
            }
        }
    }
    match refused {
        Some(r) => Err(BatchError::Refused(r)),
        None => Ok(()),
    }
}

/// The (sequence number, error code) of each acknowledgement in a datagram; 0 is success.
pub fn acks(datagram: &[u8]) -> Vec<(u32, i32)> {
    nfnetlink::messages(datagram)
        // Only acknowledgements reach the crate: its parsers of some nftables messages can
        // panic on malformed attributes (a NEWSET's expressions, found by fuzzing).
        .filter(|(ty, _)| *ty == NLMSG_ERROR)
        .filter_map(|(_, raw)| {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(raw).ok()?;
            match msg.payload {
                NetlinkPayload::Error(e) => {
                    Some((msg.header.sequence_number, e.code.map_or(0, |c| c.get())))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use netlink_packet_netfilter::{
        NetfilterMessageInner,
        nftables::{TableAttribute, TableMessage},
    };

    use super::*;

    fn table(name: &str) -> Op {
        Op {
            message: NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(name.into())],
            }),
            flags: 0,
        }
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_and_every_message_asks_for_an_ack() {
        let (datagram, first) = encode(NetfilterProtoFamily::Inet, &[table("a"), table("b")]);
        let msgs: Vec<(u16, &[u8])> = nfnetlink::messages(&datagram).collect();
        assert_eq!(msgs.len(), 4);
        // BATCH_BEGIN / END (0x10 / 0x11) carry the nftables subsystem in their resource id.
        assert_eq!((msgs[0].0, msgs[3].0), (0x10, 0x11));
        assert_eq!(u16::from_be_bytes([msgs[0].1[18], msgs[0].1[19]]), SUBSYS_NFTABLES);
        for (i, (ty, raw)) in msgs[1..3].iter().enumerate() {
            assert_eq!(*ty, (SUBSYS_NFTABLES << 8) /* NFT_MSG_NEWTABLE */);
            let flags = u16::from_ne_bytes([raw[6], raw[7]]);
            assert_eq!(flags & (NLM_F_REQUEST | NLM_F_ACK), NLM_F_REQUEST | NLM_F_ACK);
            assert_eq!(u32::from_ne_bytes(raw[8..12].try_into().unwrap()), first + i as u32);
            let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(raw).unwrap();
            let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)),
                ..
            }) = parsed.payload
            else {
                panic!("not a table message: {parsed:?}")
            };
            assert_eq!(t.attributes, [TableAttribute::Name(["a", "b"][i].into())]);
        }
    }

    #[test]
    fn acks_are_read_with_their_sequence_and_code() {
        let ack = |seq: u32, code: i32| {
            let mut m = 36u32.to_ne_bytes().to_vec();
            m.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
            m.extend([0u8; 2]);
            m.extend(seq.to_ne_bytes());
            m.extend([0u8; 4]);
            m.extend(code.to_ne_bytes());
            m.extend([0u8; 16]);
            m
        };
        let mut d = ack(7, 0);
        d.extend(ack(8, -libc::EPERM));
        assert_eq!(acks(&d), [(7, 0), (8, -libc::EPERM)]);
        assert_eq!(acks(&d[..20]), []);
    }
}
