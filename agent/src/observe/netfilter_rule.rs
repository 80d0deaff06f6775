//! A traced walk's deciding rule, outside firewalld's concepts, as diagnosis evidence: the table,
//! chain, handle and statement of the rule (from the namespace's ruleset), what it did, the
//! interface it is specific to, and its iptables form when iptables-nft wrote it. `reach why`
//! reads the ruleset for its one attempt; the session looks it up in the ruleset it keeps per
//! nftables generation, so the agent names the rule of every traced failed attempt without a
//! read per packet.
use std::net::IpAddr;

use super::session::VerdictRecord;
use crate::{
    diagnose::NetfilterRule,
    firewall::{iptables_nft, nftables, rule_iface},
    lab::NetNsFd,
};

/// `client`: the attempt's client address, when one was seen (the fix admits just it);
/// `ruleset`: the namespace's, when it could be read (else the rule's text is unknown);
/// `fd`: the namespace, for iptables-nft's own view of its rule.
pub fn of_walk(
    v: &VerdictRecord,
    client: Option<IpAddr>,
    rs: Option<&nftables::Ruleset>,
    fd: Option<&NetNsFd>,
) -> Option<NetfilterRule> {
    let (family, table, chain) = (v.family.clone()?, v.table.clone()?, v.chain.clone()?);
    let rule = v.rule_handle.and_then(|h| rs?.rule_by_handle(&family, &table, h).cloned());
    let action = match (&rule, v.by_policy) {
        (_, true) => format!("policy {}", v.verdict.as_deref().unwrap_or("drop")),
        (Some(r), _) => match &r.verdict {
            nftables::Verdict::Reject { kind } if kind.is_empty() => "reject".into(),
            nftables::Verdict::Reject { kind } => format!("reject {kind}"),
            nftables::Verdict::Drop => "drop".into(),
            nftables::Verdict::Accept => "accept".into(),
            // iptables-nft's `-j REJECT` is an xtables target the kernel reports as a drop.
            _ if iptables_nft::xt_target(r) == Some("REJECT") => "reject".into(),
            _ => v.verdict.clone().unwrap_or_else(|| "drop".into()),
        },
        (None, _) => v.verdict.clone().unwrap_or_else(|| "drop".into()),
    };
    // A reply's walk (SYN-ACK/RST from the output hook): the fix matches `tcp sport`.
    let reply = v.reply;
    let handle = if v.by_policy { None } else { v.rule_handle };
    let iptables =
        rs.and_then(|rs| iptables_nft::describe(rs, &family, &table, &chain, handle, fd));
    Some(NetfilterRule {
        iface: rule.as_ref().and_then(|r| rule_iface::matched_iface(r, reply)),
        owned: rs.is_some_and(|rs| rs.table_owned(&family, &table)),
        family,
        table,
        chain,
        handle: v.rule_handle,
        rule: rule.map(|r| r.text),
        action,
        reply,
        client: client.map(|a| a.to_canonical()),
        iptables,
    })
}
