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
        netfilter: cx.walk.and_then(|w| w.netfilter.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::flows::{DropEvidence, Family},
        probes::sock_event::NetnsRef,
    };

    fn refused() -> FlowRecord {
        FlowRecord {
            kind: "flow",
            netns: 9,
            family: Family::V4,
            client: "10.88.0.5:40000".parse().unwrap(),
            server: "10.88.0.7:8080".parse().unwrap(),
            outcome: Outcome::Reset,
            syn_count: 1,
            first_syn_ns: Some(1),
            last_syn_ns: Some(1),
            first_event_ns: 1,
            last_event_ns: 2,
            synack_sent: false,
            rst_sent: true,
            ifindex: Some(2),
            drop: Some(DropEvidence {
                reason: "NO_SOCKET".into(),
                location: None,
                count: 1,
                syn: true,
            }),
            reply_drop: None,
            duration_ms: 0.0,
        }
    }

    fn listener(addr: &str) -> ListenerView {
        ListenerView {
            kind: "listener",
            netns: NetnsRef { inode: 9, name: "cni-a".into() },
            pid: Some(7),
            pids: vec![7],
            comm: Some("httpd".into()),
            family: "ipv4",
            proto: "tcp",
            addr: addr.into(),
            port: 8080,
            backlog: Some(128),
            accept_queue: Some(0),
            v6only: None,
            loopback_only: addr.starts_with("127."),
            bound_dev_if: None,
            cookie: 1,
        }
    }

    /// The agent's line says what `reach why` would: nothing listening, or the seed's loopback
    /// bind, from the listeners the kernel lists, with a fix and the question to ask next.
    #[test]
    fn a_refused_attempt_is_judged_from_the_listeners_on_its_port() {
        let owner = Owner { netns: NetnsRef { inode: 9, name: "cni-a".into() }, pod: None };
        let iface = Interface {
            ifindex: 2,
            name: "eth0".into(),
            addrs: vec!["10.88.0.7".parse().unwrap()],
        };
        let lo =
            Interface { ifindex: 1, name: "lo".into(), addrs: vec!["127.0.0.1".parse().unwrap()] };
        let judge_with = |listeners: Vec<ListenerView>| {
            judge(
                &refused(),
                Context {
                    owner: &owner,
                    time: "t".into(),
                    iface: Some("eth0".into()),
                    listeners,
                    interfaces: vec![lo.clone(), iface.clone()],
                    walk: None,
                },
            )
        };
        let none = judge_with(Vec::new());
        assert_eq!(none.verdict, Verdict::NoListener);
        assert_eq!(none.line["verdict"], "no_listener");
        assert_eq!(none.line["outcome"], "reset");
        assert_eq!(none.line["ask"], "reach why 10.88.0.7:8080 --netns cni-a");
        let lo_only = judge_with(vec![listener("127.0.0.1")]);
        assert_eq!(lo_only.verdict, Verdict::LoopbackOnlyBind, "{:#}", lo_only.line);
        assert!(!lo_only.line["fix"].as_array().unwrap().is_empty(), "{:#}", lo_only.line);
        assert!(failed(&refused()));
        assert!(!failed(&FlowRecord { outcome: Outcome::Accepted, ..refused() }));
    }
}
