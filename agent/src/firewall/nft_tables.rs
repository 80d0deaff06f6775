//! Lists nftables tables of the current network namespace over nfnetlink (read-only).
//!
//! A dump of NFT_MSG_GETTABLE is all `reach doctor` needs to tell whether firewalld (table
//! `inet firewalld`) or iptables-nft (`ip filter`, ...) is active in a namespace. Talking netlink
//! directly means no dependency on the `nft` binary and no chance of changing anything. The
//! request is built and the NEWTABLE replies parsed by netlink-packet-netfilter; the socket is
//! `kernel::nfnetlink`'s.
use std::{io, os::fd::AsRawFd};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    nftables::{NfTablesMessage, TableAttribute, TableFlags, TableMessage},
};
use serde::Serialize;

use crate::kernel::nfnetlink;

/// NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE (the request's type comes from its payload).
const NEWTABLE: u16 = 10 << 8;
/// `struct nlmsghdr`; a datagram tail shorter than that is padding, not a message.
const NLMSG_HDRLEN: usize = 16;

/// One nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: &'static str,
    pub name: String,
    /// Netlink port id of the socket owning the table (NFT_TABLE_F_OWNER, Linux ≥ 5.12): the
    /// kernel removes the table when that socket closes, and only it may change the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// Dumps the tables of the calling thread's network namespace.
pub fn list() -> io::Result<Vec<Table>> {
    let fd = nfnetlink::open(0)?;
    let seq: u32 = 1;
    nfnetlink::send(&fd, &request(seq))?;
    let mut tables = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink closed"));
        }
        if parse_replies(&buf[..n as usize], seq, &mut tables)? {
            return Ok(tables);
        }
    }
}

/// The NFT_MSG_GETTABLE dump request, every family (NFPROTO_UNSPEC).
fn request(seq: u32) -> Vec<u8> {
    let inner = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        NfTablesMessage::GetTable(TableMessage { attributes: Vec::new() }),
    );
    nfnetlink::encode(inner, NLM_F_REQUEST | NLM_F_DUMP, seq)
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("nftables table dump: {what}"))
}

/// The parser of the kernel's replies to the table dump: one received datagram of the dump
/// with sequence number `seq`, its tables appended to `out`. Returns true at the dump's end
/// (NLMSG_DONE), an error for a kernel error or a malformed message.
pub fn parse_replies(mut data: &[u8], seq: u32, out: &mut Vec<Table>) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        let frame = NetlinkBuffer::new_checked(data).map_err(invalid)?;
        let len = frame.length() as usize;
        // Replies to an earlier request are not ours. Nor is any other message type: only
        // these reach the crate (its parser of other nftables messages can panic on malformed
        // attributes, e.g. a NEWSET's expressions, as fuzzing found).
        let ty = frame.message_type();
        if frame.sequence_number() == seq && matches!(ty, NLMSG_DONE | NLMSG_ERROR | NEWTABLE) {
            let payload = match NetlinkMessage::<NetfilterMessage>::deserialize(&data[..len]) {
                Ok(msg) => msg.payload,
                // A table the crate cannot read (say, a name that is not UTF-8) is left out;
                // the others are still worth listing.
                Err(_) if ty == NEWTABLE => NetlinkPayload::Noop,
                Err(e) => return Err(invalid(e)),
            };
            match payload {
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(io::Error::from_raw_os_error(-code.get()));
                    }
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    header,
                    inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)),
                    ..
                }) => out.extend(table(header.family.into(), t)),
                _ => {}
            }
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Ok(false)
}

/// A NEWTABLE message as a [`Table`]; `None` without a name.
fn table(family: u8, t: TableMessage) -> Option<Table> {
    let (mut name, mut flags, mut owner) = (None, TableFlags::empty(), None);
    for a in t.attributes {
        match a {
            TableAttribute::Name(n) => name = Some(n),
            TableAttribute::Flags(f) => flags = f,
            TableAttribute::Owner(o) => owner = Some(o),
            _ => {}
        }
    }
    Some(Table {
        family: family_name(family),
        name: name?,
        owner: owner.filter(|_| flags.contains(TableFlags::Owner)),
    })
}

/// nftables family name of an NFPROTO_* value (as carried in nfgenmsg).
pub fn family_name(nfproto: u8) -> &'static str {
    match nfproto {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kernel's layout, written out independently of the crate that builds and parses it.
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFTA_TABLE_NAME: u16 = 1;

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    fn nlmsg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    fn table_body(family: u8, name: &str) -> Vec<u8> {
        let mut b = vec![family, 0, 0, 0];
        // NFTA_TABLE_FLAGS first, to prove attributes are walked, then the name.
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        let name = format!("{name}\0");
        b.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
        b.extend_from_slice(name.as_bytes());
        b.resize(align4(b.len()), 0);
        b
    }

    #[test]
    fn parses_tables_until_done() {
        let newtable = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
        let mut batch = nlmsg(newtable, 7, &table_body(1, "firewalld"));
        batch.extend(nlmsg(newtable, 7, &table_body(2, "filter")));
        batch.extend(nlmsg(newtable, 99, &table_body(10, "stale-reply")));
        let mut out = Vec::new();
        assert!(!parse_replies(&batch, 7, &mut out).unwrap());
        assert!(parse_replies(&nlmsg(NLMSG_DONE, 7, &[0; 4]), 7, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                Table { family: "inet", name: "firewalld".into(), owner: None },
                Table { family: "ip", name: "filter".into(), owner: None },
            ]
        );
    }

    #[test]
    fn an_owned_table_names_its_owner() {
        let newtable = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
        let mut body = table_body(1, "reach_trace");
        // NFTA_TABLE_FLAGS (2) with NFT_TABLE_F_OWNER, NFTA_TABLE_OWNER (7), both big-endian.
        body[8..12].copy_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&7u16.to_ne_bytes());
        body.extend_from_slice(&4242u32.to_be_bytes());
        let mut out = Vec::new();
        parse_replies(&nlmsg(newtable, 1, &body), 1, &mut out).unwrap();
        assert_eq!(out, [Table { family: "inet", name: "reach_trace".into(), owner: Some(4242) }]);
    }

    #[test]
    fn a_table_without_a_readable_name_is_left_out() {
        let newtable = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;
        let mut bad = table_body(2, "filter");
        // The name's bytes are not UTF-8.
        bad[16] = 0xff;
        let mut batch = nlmsg(newtable, 1, &bad);
        batch.extend(nlmsg(newtable, 1, &table_body(10, "nat")));
        let mut out = Vec::new();
        assert!(!parse_replies(&batch, 1, &mut out).unwrap());
        assert_eq!(out, [Table { family: "ip6", name: "nat".into(), owner: None }]);
    }

    #[test]
    fn the_request_is_a_gettable_dump_of_every_family() {
        let r = request(5);
        assert_eq!(r.len(), 16 + 4);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize, r.len());
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), (NFNL_SUBSYS_NFTABLES << 8) | 1);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301); // NLM_F_REQUEST | NLM_F_DUMP
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 5);
        assert_eq!(&r[16..], &[libc::AF_UNSPEC as u8, 0, 0, 0]);
    }

    /// Found by fuzzing: a NEWSET whose expression attribute is too short made the crate's
    /// set parser slice out of bounds. Only NEWTABLE, DONE and ERROR reach the crate.
    #[test]
    fn other_nftables_messages_are_not_parsed() {
        let mut set = vec![2u8, 0, 0, 0];
        set.extend_from_slice(&[0x08, 0x00, 0x11, 0x00, 0, 0, 0, 0]); // NFTA_SET_EXPR, 4 bytes
        let newset = (NFNL_SUBSYS_NFTABLES << 8) | 9;
        let mut batch = nlmsg(newset, 1, &set);
        batch.extend(nlmsg(NLMSG_DONE, 1, &[0; 4]));
        let mut out = Vec::new();
        assert!(parse_replies(&batch, 1, &mut out).unwrap());
        assert!(out.is_empty());
    }

    #[test]
    fn netlink_error_is_reported() {
        let err =
            parse_replies(&nlmsg(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes()), 1, &mut vec![])
                .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn truncated_message_is_rejected() {
        let mut m = nlmsg(NLMSG_DONE, 1, &[0; 4]);
        m[0] = 200;
        assert!(parse_replies(&m, 1, &mut vec![]).is_err());
    }

    #[test]
    fn an_owned_table_in_a_scratch_namespace_goes_with_its_socket() {
        use netlink_packet_core::NLM_F_CREATE;

        use crate::firewall::nft_batch::{self, Op};
        let new_table = |name: &str, owned: bool| {
            let mut attributes = vec![TableAttribute::Name(name.into())];
            if owned {
                attributes.push(TableAttribute::Flags(TableFlags::Owner));
            }
            Op {
                message: NfTablesMessage::NewTable(TableMessage { attributes }),
                flags: NLM_F_CREATE,
            }
        };
        let (with_owner, after) = crate::netns::enter::in_new_netns(|| {
            let fd = nfnetlink::open(0).unwrap();
            let ops = [new_table("owned", true), new_table("plain", false)];
            nft_batch::send(&fd, NetfilterProtoFamily::Inet, &ops).unwrap();
            let with_owner = list().unwrap();
            drop(fd);
            (with_owner, list().unwrap())
        })
        .unwrap();
        let by_name = |ts: &[Table], n: &str| ts.iter().find(|t| t.name == n).cloned();
        let owned = by_name(&with_owner, "owned").expect("the owned table is listed");
        assert_eq!(owned.family, "inet");
        assert!(owned.owner.is_some_and(|p| p != 0), "{owned:?}");
        assert_eq!(by_name(&with_owner, "plain").map(|t| t.owner), Some(None));
        assert_eq!(after, [Table { family: "inet", name: "plain".into(), owner: None }]);
    }

    #[test]
    fn empty_namespace_has_no_tables() {
        let tables = crate::netns::enter::in_new_netns(list).unwrap().unwrap();
        assert!(tables.is_empty(), "{tables:?}");
    }
}
