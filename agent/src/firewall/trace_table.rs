//! reach's own nftables table, `inet reach_trace`: a prerouting chain at priority -350 (before
//! conntrack, raw and every firewalld chain) that sets `meta nftrace set 1` on TCP SYNs to the
//! ports being diagnosed, and an output chain at the same priority that sets it on a local
//! client's SYNs to those ports (a NAT in output can send them on) and on the server's
//! replies from those ports (SYN-ACK and RST only: what a handshake's answer is, never the
//! connection's data), so the kernel reports their walks through every other table — a reply
//! on through output and postrouting, where a rule can kill the answer. It never
//! touches another table (firewalld's included) and never changes a verdict.
//!
//! The table is created over reach's own netlink socket, which the [`TraceTable`] keeps open,
//! with the owner flag (NFT_TABLE_F_OWNER, Linux ≥ 5.12): the kernel removes an owned table
//! when its socket closes, so it goes with reach however reach ends (SIGKILL included), and
//! nobody else's `nft flush ruleset` removes it while reach traces. A kernel without the flag
//! refuses it; there the table is created unowned, removed on drop, and a stale one a killed
//! run left is replaced when installing (both kinds of kernel: in one transaction).
use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::{
    NetfilterProtoFamily,
    nftables::{
        Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute,
        Expressions, Hook, Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey,
        NfTablesMessage, Operator, Payload, Register, RuleAttribute, RuleMessage, SetAttribute,
        SetElementAttribute, SetElementList, SetElementMessage, SetMessage, TableAttribute,
        TableFlags, TableMessage,
    },
};

use super::nft_batch::{self, BatchError, Op};
use crate::{kernel::nfnetlink, netns::enter};

/// The table's name; reach never creates or deletes any other.
pub const TABLE: &str = "reach_trace";
/// The set of traced ports inside it.
const PORTS: &str = "ports";
/// nftables' datatype id of `inet_service` (a port), the set's key type.
const TYPE_INET_SERVICE: u32 = 13;
/// NFT_PAYLOAD_TRANSPORT_HEADER.
const TRANSPORT: u32 = 2;
const SET_ID: u32 = 1;

/// How the table goes when reach does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Owned by reach's socket: the kernel removes it when reach ends, however it ends.
    Owned,
    /// Removed on drop; after a SIGKILL it stays until the next install replaces it.
    UntilDrop,
}

/// The installed table, in one namespace, with the socket that created (and owns) it. Drop
/// removes it.
pub struct TraceTable {
    ns_path: PathBuf,
    socket: OwnedFd,
    lifetime: Lifetime,
    ports: Vec<u16>,
}

/// `REACH_NFT_NO_OWNER` set: the table is made as on a kernel before 5.12 (no owner flag), so
/// that path — replaced when stale, re-added after someone's `nft flush ruleset` — runs and is
/// tested on any kernel.
fn owner_refused_by_env() -> bool {
    std::env::var_os("REACH_NFT_NO_OWNER").is_some()
}

impl TraceTable {
    /// Installs (or replaces) the table in the namespace at `ns_path`, tracing SYNs to `ports`.
    pub fn install(ns_path: &Path, ports: &[u16]) -> anyhow::Result<Self> {
        if ports.is_empty() {
            bail!("tracing needs at least one port");
        }
        let socket = enter::in_netns(ns_path, || nfnetlink::open(0))?
            .context("opening a NETLINK_NETFILTER socket")?;
        let first = if owner_refused_by_env() {
            Err(BatchError::Refused(nft_batch::Refused {
                index: OWNED_TABLE,
                errno: libc::EOPNOTSUPP,
            }))
        } else {
            nft_batch::send(&socket, NetfilterProtoFamily::Inet, &ops(ports, true))
        };
        let lifetime = match first {
            Ok(()) => Lifetime::Owned,
            // Before 5.12 the kernel knows no owner flag (EINVAL, later EOPNOTSUPP for unknown
            // flags) and refuses the owned table's creation, the third message.
            Err(BatchError::Refused(r))
                if r.index == OWNED_TABLE
                    && [libc::EINVAL, libc::EOPNOTSUPP].contains(&r.errno) =>
            {
                nft_batch::send(&socket, NetfilterProtoFamily::Inet, &ops(ports, false))
                    .map_err(|e| refusal(e, ns_path))?;
                Lifetime::UntilDrop
            }
            Err(e) => return Err(refusal(e, ns_path)),
        };
        Ok(Self { ns_path: ns_path.to_path_buf(), socket, lifetime, ports: ports.to_vec() })
    }

    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// Whether the table is still in its namespace (someone's `nft flush ruleset` removes an
    /// unowned one; an owned one only goes with reach).
    pub fn exists(&self) -> anyhow::Result<bool> {
        let get = Op { message: NfTablesMessage::GetTable(table(false)), flags: 0 };
        match nft_batch::request(&self.socket, NetfilterProtoFamily::Inet, &get) {
            Ok(()) => Ok(true),
            Err(BatchError::Refused(r)) if r.errno == libc::ENOENT => Ok(false),
            Err(e) => Err(anyhow::anyhow!("looking for table inet {TABLE}: {e}")),
        }
    }

    /// Builds the table again (after someone removed it), as it was.
    pub fn restore(&mut self) -> anyhow::Result<()> {
        nft_batch::send(&self.socket, NetfilterProtoFamily::Inet, &ops(&self.ports, false))
            .map_err(|e| refusal(e, &self.ns_path))
    }
}

/// Index of the owned table's creation in [`ops`].
const OWNED_TABLE: usize = 2;

fn refusal(e: BatchError, ns_path: &Path) -> anyhow::Error {
    match e {
        // Only the owner may touch an owned table: another live process holds it.
        BatchError::Refused(r) if r.errno == libc::EPERM && r.index < OWNED_TABLE => {
            anyhow::anyhow!(
                "table inet {TABLE} in {} belongs to another running process (a reach tracing that \
             namespace now); wait for it to finish or stop it, then run again",
                ns_path.display()
            )
        }
        e => anyhow::anyhow!("installing table inet {TABLE} in {}: {e}", ns_path.display()),
    }
}

impl Drop for TraceTable {
    fn drop(&mut self) {
        // Explicit even when owned: the table is gone before drop returns, not only when the
        // socket's last reference closes.
        let delete = Op { message: NfTablesMessage::DeleteTable(table(false)), flags: 0 };
        if let Err(e) = nft_batch::send(&self.socket, NetfilterProtoFamily::Inet, &[delete]) {
            tracing::warn!("removing table inet {TABLE} in {}: {e}", self.ns_path.display());
        }
    }
}

fn table(owned: bool) -> TableMessage {
    let mut attributes = vec![TableAttribute::Name(TABLE.into())];
    if owned {
        attributes.push(TableAttribute::Flags(TableFlags::Owner));
    }
    TableMessage { attributes }
}

/// The transaction: create-then-delete (so the delete succeeds whether or not a stale table
/// exists), the table, its port set, two base chains and four marking rules.
pub fn ops(ports: &[u16], owned: bool) -> Vec<Op> {
    let create = |message| Op { message, flags: NLM_F_CREATE };
    let mut ops = vec![
        create(NfTablesMessage::NewTable(table(false))),
        Op { message: NfTablesMessage::DeleteTable(table(false)), flags: 0 },
        create(NfTablesMessage::NewTable(table(owned))),
        create(NfTablesMessage::NewSet(SetMessage {
            attributes: vec![
                SetAttribute::Table(TABLE.into()),
                SetAttribute::Name(PORTS.into()),
                SetAttribute::KeyType(TYPE_INET_SERVICE),
                SetAttribute::KeyLen(2),
                SetAttribute::Id(SET_ID),
            ],
        })),
        create(NfTablesMessage::NewSetElement(SetElementMessage {
            attributes: vec![
                SetElementList::Table(TABLE.into()),
                SetElementList::Set(PORTS.into()),
                SetElementList::SetId(SET_ID),
                SetElementList::Elements(
                    ports
                        .iter()
                        .map(|p| {
                            ListAttribute::Element(vec![SetElementAttribute::Key(
                                DataAttribute::Value(p.to_be_bytes().to_vec()),
                            )])
                        })
                        .collect(),
                ),
            ],
        })),
        create(chain("prerouting", InetHookNumber::PreRouting)),
        create(chain("output", InetHookNumber::LocalOut)),
    ];
    // tcp flags & (syn | ack) == syn tcp dport @ports meta nftrace set 1 (both chains);
    // tcp flags & (syn | ack) == syn | ack tcp sport @ports …; tcp flags & rst == rst tcp sport @ports ….
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    let rules = [
        ("prerouting", SYN | ACK, SYN, DPORT),
        ("output", SYN | ACK, SYN, DPORT),
        ("output", SYN | ACK, SYN | ACK, SPORT),
        ("output", RST, RST, SPORT),
    ];
    for (chain, mask, flags, port) in rules {
        ops.push(Op { message: mark(chain, mask, flags, port), flags: NLM_F_CREATE | APPEND });
    }
    ops
}

/// NLM_F_APPEND: a rule goes after the chain's others.
const APPEND: u16 = 0x800;
/// Offsets of the ports in the TCP header.
const SPORT: u32 = 0;
const DPORT: u32 = 2;

fn chain(name: &str, hook: InetHookNumber) -> NfTablesMessage {
    NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(TABLE.into()),
            ChainAttribute::Name(name.into()),
            ChainAttribute::Hook(vec![Hook::Number(hook.into()), Hook::Priority(-350i32 as u32)]),
            ChainAttribute::Policy(1), // NF_ACCEPT
            ChainAttribute::Type("filter".into()),
        ],
    })
}

/// A rule in `chain` marking TCP segments whose flags under `mask` are `flags` and whose port
/// at `port_offset` is in the set.
fn mark(chain: &str, mask: u8, flags: u8, port_offset: u32) -> NfTablesMessage {
    let r = Register::Reg1;
    let value = |v: &[u8]| DataAttribute::Value(v.to_vec());
    let exprs: Vec<ListAttribute<ExpressionAttribute>> = vec![
        Expressions::Meta(vec![Meta::Key(MetaKey::L4Proto), Meta::DestinationRegister(r)]).into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(r),
            Cmp::Op(Operator::Equal),
            Cmp::Data(value(&[6])),
        ])
        .into(),
        Expressions::Payload(vec![
            Payload::DestinationRegister(r),
            Payload::Base(TRANSPORT),
            Payload::Offset(13),
            Payload::Len(1),
        ])
        .into(),
        Expressions::Bitwise(vec![
            Bitwise::SourceRegister(r),
            Bitwise::DestinationRegister(r),
            Bitwise::Length(1),
            Bitwise::Mask(value(&[mask])),
            Bitwise::Xor(value(&[0])),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(r),
            Cmp::Op(Operator::Equal),
            Cmp::Data(value(&[flags])),
        ])
        .into(),
        Expressions::Payload(vec![
            Payload::DestinationRegister(r),
            Payload::Base(TRANSPORT),
            Payload::Offset(port_offset),
            Payload::Len(2),
        ])
        .into(),
        Expressions::Lookup(vec![
            Lookup::SourceRegister(r),
            Lookup::Set(PORTS.into()),
            Lookup::SetId(SET_ID),
        ])
        .into(),
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(r),
            Immediate::Data(value(&[1])),
        ])
        .into(),
        Expressions::Meta(vec![Meta::Key(MetaKey::NftraceBit), Meta::SourceRegister(r)]).into(),
    ];
    NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(TABLE.into()),
            RuleAttribute::Chain(chain.into()),
            RuleAttribute::Expressions(exprs),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(ops: &[Op]) -> Vec<&'static str> {
        ops.iter()
            .map(|o| match &o.message {
                NfTablesMessage::NewTable(_) => "table",
                NfTablesMessage::DeleteTable(_) => "delete table",
                NfTablesMessage::NewSet(_) => "set",
                NfTablesMessage::NewSetElement(_) => "elements",
                NfTablesMessage::NewChain(_) => "chain",
                NfTablesMessage::NewRule(_) => "rule",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn the_transaction_replaces_any_stale_table_then_builds_an_owned_one() {
        let ops = ops(&[8080, 9090], true);
        assert_eq!(
            kinds(&ops),
            [
                "table",
                "delete table",
                "table",
                "set",
                "elements",
                "chain",
                "chain",
                "rule",
                "rule",
                "rule",
                "rule"
            ]
        );
        // Only the table built last carries the owner flag; the index the fallback keys on.
        let flags = |o: &Op| match &o.message {
            NfTablesMessage::NewTable(t) => {
                t.attributes.contains(&TableAttribute::Flags(TableFlags::Owner))
            }
            _ => false,
        };
        let owned: Vec<usize> =
            ops.iter().enumerate().filter(|(_, o)| flags(o)).map(|(i, _)| i).collect();
        assert_eq!(owned, [OWNED_TABLE]);
        assert!(!super::ops(&[1], false).iter().any(flags));
        // Both ports are elements of the set, in network order.
        let NfTablesMessage::NewSetElement(e) = &ops[4].message else { panic!() };
        let SetElementList::Elements(elems) = &e.attributes[3] else { panic!() };
        let keys: Vec<&ListAttribute<SetElementAttribute>> = elems.iter().collect();
        assert_eq!(
            keys,
            [8080u16, 9090]
                .map(|p| ListAttribute::Element(vec![SetElementAttribute::Key(
                    DataAttribute::Value(p.to_be_bytes().to_vec())
                )]))
                .iter()
                .collect::<Vec<_>>()
        );
    }
}
