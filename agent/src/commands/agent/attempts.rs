//! A connection attempt that failed, judged by the same decision engine `reach why` uses
//! (`diagnose::diagnose` over the same kind of evidence: the attempt, its drop, the nftables
//! walk of its SYN when traced, the listeners on its port in every namespace as the kernel
//! lists them, the namespace's interfaces), into one JSON line for log shippers and one verdict
//! class for the metrics. What `why` adds on top — following a NAT into the namespace it sent
//! the SYN to, firewalld's prediction — needs a question about one port; the agent answers
//! for every port at once and leaves those to `reach why`, which the line's `ask` names.
use serde_json::{Value, json};

use super::owner::Owner;
use crate::{
    diagnose::{self, Evidence, Interface, Verdict},
    model::{
        flows::{FlowRecord, Outcome},
        listener_view::ListenerView,
    },
    observe::session::VerdictRecord,
};

/// Whether an attempt failed (what the agent reports): it settled without a handshake.
pub fn failed(rec: &FlowRecord) -> bool {
    matches!(rec.outcome, Outcome::Reset | Outcome::Dropped | Outcome::Unanswered)
}

/// The outcome label of `reach_connection_attempts_total`.
pub fn outcome_name(rec: &FlowRecord) -> &'static str {
    match rec.outcome {
        Outcome::Accepted => "accepted",
        Outcome::Reset => "reset",
        Outcome::Dropped => "dropped",
        Outcome::Unanswered => "unanswered",
        Outcome::Pending => "pending",
    }
}

/// What the agent knows around one attempt.
pub struct Context<'a> {
    pub owner: &'a Owner,
    /// When the attempt's last event happened (RFC 3339).
    pub time: String,
    /// The name of the interface the SYN arrived on, when seen at ingress.
    pub iface: Option<String>,
    pub listeners: Vec<ListenerView>,
    pub interfaces: Vec<Interface>,
    pub walk: Option<&'a VerdictRecord>,
}

/// The diagnosis of a failed attempt, and its JSON line.
pub struct Judged {
    pub verdict: Verdict,
    pub line: Value,
}

pub fn judge(rec: &FlowRecord, cx: Context<'_>) -> Judged {
    let evidence = Evidence {
        port: rec.server.port(),
        addr: Some(rec.server.ip()),
        netns: Some(cx.owner.netns.clone()),
        listeners: cx.listeners,
        watched: true,
        watched_ifaces: cx.iface.iter().cloned().collect(),
        syn_seen: rec.syn_count > 0,
        iface: cx.iface.clone(),
        flow: Some(rec.clone()),
        attribution: cx.walk.and_then(|w| w.attribution.clone()),
        interfaces: cx.interfaces,
        ..Default::default()
    };
    let d = diagnose::diagnose(&evidence);
    let target = match rec.server {
        std::net::SocketAddr::V6(s) => format!("[{}]:{}", s.ip(), s.port()),
        s => s.to_string(),
    };
    let line = json!({
        "type": "failed_attempt",
        "time": cx.time,
        "netns": cx.owner.netns,
        "pod": cx.owner.pod,
        "client": rec.client.to_string(),
        "server": rec.server.to_string(),
        "iface": cx.iface,
        "outcome": outcome_name(rec),
        "syn_count": rec.syn_count,
        "drop": rec.drop,
        "reply_drop": rec.reply_drop,
        "firewall": cx.walk.map(|w| &w.json),
        "verdict": d.verdict.name(),
        "headline": d.verdict.headline(),
        "evidence": d.evidence,
        "fix": d.fix,
        "ask": format!("reach why {target} --netns {}", cx.owner.netns.name),
    });
    Judged { verdict: d.verdict, line }
}
