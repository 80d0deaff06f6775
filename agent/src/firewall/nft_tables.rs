//! Lists nftables tables of the current network namespace over nfnetlink (read-only).
//!
//! A dump of NFT_MSG_GETTABLE is all `reach doctor` needs to tell whether firewalld (table
//! `inet firewalld`) or iptables-nft (`ip filter`, ...) is active in a namespace. Talking netlink
//! directly means no dependency on the `nft` binary and no chance of changing anything.
use std::io;

use serde::Serialize;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// One nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: &'static str,
    pub name: String,
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// Dumps the tables of the calling thread's network namespace.
pub fn list() -> io::Result<Vec<Table>> {
    // SAFETY: socket(2) with constant arguments; ownership moves into OwnedFd right away.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, owned fd.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);

    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // nfgenmsg: family, version, res_id
    // SAFETY: req is a valid buffer of the given length; a zeroed sockaddr_nl addresses the kernel.
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut tables = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink closed"));
        }
        if parse_batch(&buf[..n as usize], seq, &mut tables)? {
            return Ok(tables);
        }
    }
}

/// Parses one recv() worth of netlink messages; returns true at NLMSG_DONE.
fn parse_batch(mut data: &[u8], seq: u32, out: &mut Vec<Table>) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        let msg_seq = u32::from_ne_bytes(data[8..12].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
        }
        let body = &data[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match ty {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = body
                        .get(0..4)
                        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                        .unwrap_or(-libc::EIO);
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE => {
                    if let Some(table) = parse_table(body) {
                        out.push(table);
                    }
                }
                _ => {}
            }
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(false)
}

fn parse_table(body: &[u8]) -> Option<Table> {
    let family = family_name(*body.first()?);
    let mut attrs = body.get(NFGENMSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == NFTA_TABLE_NAME {
            let raw = &attrs[4..len];
            let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
            return Some(Table { family, name: String::from_utf8_lossy(raw).into_owned() });
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
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
        assert!(!parse_batch(&batch, 7, &mut out).unwrap());
        assert!(parse_batch(&nlmsg(NLMSG_DONE, 7, &[0; 4]), 7, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                Table { family: "inet", name: "firewalld".into() },
                Table { family: "ip", name: "filter".into() },
            ]
        );
    }

    #[test]
    fn netlink_error_is_reported() {
        let err =
            parse_batch(&nlmsg(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes()), 1, &mut vec![])
                .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn truncated_message_is_rejected() {
        let mut m = nlmsg(NLMSG_DONE, 1, &[0; 4]);
        m[0] = 200;
        assert!(parse_batch(&m, 1, &mut vec![]).is_err());
    }

    #[test]
    fn empty_namespace_has_no_tables() {
        let tables = crate::netns::enter::in_new_netns(list).unwrap().unwrap();
        assert!(tables.is_empty(), "{tables:?}");
    }
}
