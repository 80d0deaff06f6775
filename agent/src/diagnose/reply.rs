//! `reply_dropped`: the server answered the SYN, and its answer (SYN-ACK or RST) died on its way
//! out — an nftables output/postrouting rule (named from the reply's own nft trace) or a kernel
//! drop reason (kfree_skb of a segment whose *source* port is the target port, kept on the flow
//! as `reply_drop`).
//!
//! It comes after the SYN's own hops in the decision order: the SYN got through the firewall
//! and was not dropped, and the kernel's listener lookup hands it to a listener (who answered).
//! When the lookup finds no listener, the lookup classes stand (the first broken hop wins: a
//! closed port's RST dying on the way out does not make a listener appear); the dead RST is then
//! one evidence line, because it changes what the client saw — a timeout, not "connection
//! refused".
use super::{
    Evidence, NetfilterRule, fix,
    verdict::{Decided, Verdict},
};
use crate::model::flows::{Outcome, Reply};

/// What died on the way out, from either source (both when both saw it).
pub(super) struct Death<'a> {
    /// The segment, when the kfree_skb evidence named it.
    segment: Option<Reply>,
    /// The rule that dropped it, from the reply's trace.
    rule: Option<&'a NetfilterRule>,
    /// The kernel's drop reason and location.
    reason: Option<(&'a str, Option<&'a str>)>,
    count: u32,
}

impl Death<'_> {
    /// "SYN-ACK" / "RST"; without kfree_skb evidence, what the server's answer must have been.
    fn segment(&self, listener_took_it: bool) -> &'static str {
        match self.segment {
            Some(s) => s.name(),
            None if listener_took_it => Reply::SynAck.name(),
            None => Reply::Rst.name(),
        }
    }

    /// Where it died, one sentence.
    fn place(&self) -> String {
        match (self.rule, self.reason) {
            (Some(r), _) => {
                let rule = r.rule.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default();
                let handle = r.handle.map(|h| format!(" (handle {h})")).unwrap_or_default();
                let owner = if r.table == "firewalld" { " (firewalld's own table)" } else { "" };
                format!(
                    "netfilter: table {} {}{owner}, chain {}{handle}{rule} → {}",
                    r.family, r.table, r.chain, r.action
                )
            }
            (None, Some((reason, at))) => {
                let at = at.map(|l| format!(" at {l}")).unwrap_or_default();
                format!("the kernel dropped it: drop reason {reason}{at}")
            }
            (None, None) => "dropped on its way out".into(),
        }
    }
}

/// The reply's death, when the evidence shows one for an attempt that did not get through.
pub(super) fn death(e: &Evidence) -> Option<Death<'_>> {
    let flow = e.flow.as_ref()?;
    // An accepted attempt got an answer through; a pending one is still being predicted (the
    // engine's rule: no settled attempt, no past tense).
    if matches!(flow.outcome, Outcome::Accepted | Outcome::Pending) {
        return None;
    }
    let rule = e.reply_netfilter.as_ref().filter(|r| r.action != "accept");
    let drop = flow.reply_drop.as_ref();
    if rule.is_none() && drop.is_none() {
        return None;
    }
    Some(Death {
        segment: drop.map(|d| d.segment),
        rule,
        reason: drop.map(|d| (d.reason.as_str(), d.location.as_deref())),
        count: drop.map_or(1, |d| d.count),
    })
}

/// Whether the SYN itself got through (no drop of the SYN recorded): only then can a dropped
/// reply be what failed.
pub(super) fn syn_got_through(e: &Evidence) -> bool {
    e.flow.as_ref().is_some_and(|f| f.drop.as_ref().is_none_or(|d| !d.syn))
}

/// `reply_dropped`, with `served` (the lookup's evidence of the listener that took the SYN).
/// The last evidence line is where the reply died (the path's failing hop quotes it).
pub(super) fn decided(e: &Evidence, d: &Death, served: Vec<String>) -> Decided {
    let seg = d.segment(true);
    let client =
        e.flow.as_ref().map(|f| f.client.to_string()).unwrap_or_else(|| "the client".into());
    let mut ev = served;
    let times = if d.count > 1 {
        format!(" ({} times: the server retransmits it)", d.count)
    } else {
        String::new()
    };
    ev.push(format!(
        "the server answered with a {seg} to {client}, which never left this host{times}"
    ));
    if e.flow.as_ref().is_some_and(|f| f.synack_sent) && d.rule.is_none() {
        ev.push(format!(
            "the {seg} passed reach's TC egress probe on {}: it died after it (a TC egress filter \
             or qdisc, the device)",
            e.iface.as_deref().unwrap_or("the interface")
        ));
    }
    ev.push(format!("the {seg} died on its way out: {}", d.place()));
    // What the rule does to every client is evidence, not a fix: the fix list holds commands,
    // so its first line (the one `reach lab` shows) is one to run. It goes before the line
    // naming the place, which the path's failing hop shows (the last evidence line).
    if d.rule.is_some() {
        let at = ev.len().saturating_sub(1);
        ev.insert(at, format!(
            "a netfilter rule drops the server's replies (tcp sport {}): with it every client of port {} \
             times out",
            e.port, e.port
        ));
    }
    let fix = match (d.rule, d.reason) {
        (Some(r), _) => fix::netfilter(r, e.port),
        (None, Some((reason, _))) => egress(reason, e.iface.as_deref(), e.port),
        (None, None) => egress("NETFILTER_DROP", None, e.port),
    };
    (Verdict::ReplyDropped, ev, fix)
}

/// The fix for a reply the kernel dropped outside netfilter.
fn egress(reason: &str, iface: Option<&str>, port: u16) -> Vec<String> {
    let ifc = iface.unwrap_or("<if>");
    match reason {
        "TC_EGRESS" | "QDISC_DROP" | "TC_DROP" => vec![format!(
            "a TC egress filter or qdisc on {ifc} drops the server's replies: `tc filter show \
                 dev {ifc} egress`, `tc qdisc show dev {ifc}`, `bpftool net show dev {ifc}`; \
                 remove the filter that matches them"
        )],
        "NETFILTER_DROP" => vec![format!(
            "nft -a list ruleset   # find the output/postrouting rule dropping the server's \
             replies (tcp sport {port}); `reach watch --port {port}` traces it"
        )],
        other => fix::kernel(other, iface),
    }
}

/// For a lookup class (no listener took the SYN): the closed port's answer died too.
pub(super) fn note(d: &Death) -> String {
    format!(
        "the {} answering the SYN was dropped on its way out ({}): the client saw a timeout, not \
         \"connection refused\"",
        d.segment(false),
        d.place()
    )
}

#[cfg(test)]
mod tests;
