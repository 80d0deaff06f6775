//! What changed under a running session, said once: events lost or suppressed, firewalld
//! reloaded/stopped/started/changed, an interface tapped or let go, reach's trace table added
//! again after someone removed it, a watched namespace gone. Each is one human line and one JSON
//! event; `watch` prints them as they come, `agent` logs them (JSON on stdout with `--json`) and
//! `why` says them on stderr and keeps them as evidence, so all three word a change alike.
use serde_json::{Value, json};

use super::session::{Event, TapChange};
use crate::firewall::firewalld_cache::{Change as FwChange, ChangeReport};

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `{"type": "lost" | "suppressed" | "firewalld" | "tap" | "trace_table" | "netns", ...}`.
    pub json: Value,
    /// The same, for a person.
    pub line: String,
    /// SYN events the kernel saw but no sink got (a full ring, the rate bound): a diagnosis that
    /// saw no SYN cannot say none came.
    pub unseen_syns: u64,
}

/// The change an event reports, if it reports one (observations of traffic do not).
pub fn of(e: &Event<'_>) -> Option<Change> {
    let plain = |json: Value, line: String| Some(Change { json, line, unseen_syns: 0 });
    match *e {
        Event::Lost { count, syn } => Some(Change {
            json: json!({"type": "lost", "count": count, "syn": syn}),
            line: format!(
                "!! {count} events lost ({syn} of them SYNs): a ring buffer was full (the kernel \
                 kept running)"
            ),
            unseen_syns: syn,
        }),
        Event::Suppressed(syn, other) => Some(Change {
            json: json!({"type": "suppressed", "syn": syn, "other": other, "why": "rate_limit"}),
            line: format!(
                "!! {syn} SYN and {other} reply/drop events not reported: more than --syn-rate \
                 per second per CPU (a SYN flood?)"
            ),
            unseen_syns: syn,
        }),
        Event::Firewalld(c) => {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["type"] = "firewalld".into();
            plain(v, firewalld_line(c))
        }
        Event::Tap(change) => {
            let (what, netns, iface) = match change {
                TapChange::Attached { netns, iface, .. } => ("attached", netns, iface),
                TapChange::Detached { netns, iface, .. } => ("detached", netns, iface),
            };
            let line = match change {
                TapChange::Attached { .. } => {
                    format!(
                        "watching SYNs on {iface} in {netns} too (it appeared or got an address)"
                    )
                }
                TapChange::Detached { .. } => {
                    format!("{iface} in {netns} is gone: no longer watched")
                }
            };
            plain(json!({"type": "tap", "change": what, "netns": netns, "iface": iface}), line)
        }
        Event::TraceRestored(ns) => plain(
            json!({"type": "trace_table", "change": "re-added",
                "netns": {"inode": ns.inode, "name": ns.name}}),
            format!(
                "table inet reach_trace in {} was removed by someone else (nft flush ruleset?): \
                 added again; SYNs in between were not traced",
                ns.name
            ),
        ),
        Event::NetnsGone(ns) => plain(
            json!({"type": "netns", "change": "gone",
                "netns": {"inode": ns.inode, "name": ns.name}}),
            format!(
                "namespace {} is gone (deleted, or its last process exited): its taps and trace \
                 table let go",
                ns.name
            ),
        ),
        Event::Existing(_)
        | Event::Sock(_)
        | Event::Packet(_)
        | Event::Verdict(_)
        | Event::Flow(..)
        | Event::Overflow(_) => None,
    }
}

fn firewalld_line(c: &ChangeReport) -> String {
    let what = match c.change {
        FwChange::Reloaded => "firewalld reloaded its configuration".to_string(),
        FwChange::Changed => format!("firewalld changed its runtime configuration ({})", c.signal),
        FwChange::Stopped => "firewalld stopped".to_string(),
        FwChange::Started => "firewalld started".to_string(),
    };
    let then = match (&c.version, &c.error) {
        (Some(v), _) => format!("attribution uses firewalld {v}'s new configuration"),
        (None, _) if c.change == FwChange::Stopped => {
            "naming rules from nftables only until it starts again".to_string()
        }
        (None, Some(e)) => {
            format!("its configuration could not be read ({e}); naming rules from nftables only")
        }
        (None, None) => "naming rules from nftables only".to_string(),
    };
    format!("!! {what}: {then}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::sock_event::NetnsRef;

    #[test]
    fn every_change_is_one_line_and_a_typed_event() {
        let ns = NetnsRef { inode: 7, name: "srv".into() };
        let tap = TapChange::Attached { inode: 7, netns: "srv".into(), iface: "v1".into() };
        let cases = [
            (Event::Lost { count: 5, syn: 2 }, "lost", 2),
            (Event::Suppressed(3, 1), "suppressed", 3),
            (Event::Tap(&tap), "tap", 0),
            (Event::TraceRestored(&ns), "trace_table", 0),
        ];
        for (e, ty, unseen) in cases {
            let c = of(&e).unwrap();
            assert_eq!(c.json["type"], ty);
            assert_eq!(c.unseen_syns, unseen, "{ty}");
            assert!(!c.line.contains('\n') && !c.line.is_empty(), "{ty}: {}", c.line);
        }
    }

    #[test]
    fn a_stopped_firewalld_says_attribution_falls_back_to_nftables() {
        let c = ChangeReport {
            change: FwChange::Stopped,
            signal: "NameOwnerChanged".into(),
            version: None,
            view: false,
            error: None,
            reads: 1,
        };
        let ch = of(&Event::Firewalld(&c)).unwrap();
        assert_eq!(ch.json["type"], "firewalld");
        assert_eq!(ch.json["change"], "stopped");
        assert!(ch.line.contains("nftables only until it starts again"), "{}", ch.line);
    }
}
