//! Naming the rule that decided a traced packet in firewalld's own terms, with the command that
//! changes the outcome. The trace gives table, chain and handle; handles change on every
//! firewalld reload, so the caller passes a ruleset read after the packet, never a cached one.
use serde::Serialize;

use super::{
    firewalld::FirewalldConfig,
    firewalld_chains::{Concept, Target, describe_rule},
    nftables::{Ruleset, Verdict},
};

/// A decision attributed to firewalld configuration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attribution {
    /// The zone whose chain decided (None for the catch-all reject).
    pub zone: Option<String>,
    /// `accept`, `drop`, `reject icmpx admin-prohibited`, `reject tcp reset`, …
    pub action: String,
    pub concept: Concept,
    /// The nft rule as listed (`nft -a list ruleset` shows it with this handle).
    pub rule: String,
    /// One sentence, e.g. "zone public, target default → reject icmpx admin-prohibited; port
    /// 7777/tcp is not allowed in zone public".
    pub summary: String,
    /// Commands that would let the connection through (empty when it was accepted).
    pub fix: Vec<String>,
}

fn action(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject { kind } if kind.is_empty() => "reject".into(),
        Verdict::Reject { kind } => format!("reject {kind}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn add_port(zone: &str, port: u16) -> Vec<String> {
    vec![
        format!("firewall-cmd --zone={zone} --add-port={port}/tcp"),
        format!("firewall-cmd --permanent --zone={zone} --add-port={port}/tcp"),
    ]
}

/// Attributes the rule `handle` of `family table` (as a trace reported it) for a SYN to `port`.
/// `config` (firewalld's D-Bus view) lets a rich rule be named by its exact text.
pub fn attribute(
    ruleset: &Ruleset,
    family: &str,
    table: &str,
    handle: u64,
    port: u16,
    config: Option<&FirewalldConfig>,
) -> Option<Attribution> {
    let rule = ruleset.rule_by_handle(family, table, handle)?;
    let concept = describe_rule(ruleset, rule);
    let act = action(&rule.verdict);
    let accepted = matches!(rule.verdict, Verdict::Accept);
    let (zone, summary, fix) = match &concept {
        Concept::ZoneTarget { zone, target } => {
            let t = match target {
                Target::Default => "default",
                Target::Accept => "ACCEPT",
                Target::Drop => "DROP",
                Target::Reject => "REJECT",
            };
            let summary = if accepted {
                format!("zone {zone}, target {t} → {act}")
            } else {
                format!(
                    "zone {zone}, target {t} → {act}; port {port}/tcp is not allowed in zone {zone}"
                )
            };
            (Some(zone.clone()), summary, if accepted { Vec::new() } else { add_port(zone, port) })
        }
        Concept::PortAllowed { zone, port: p, proto } => {
            (Some(zone.clone()), format!("zone {zone} allows port {p}/{proto} → {act}"), Vec::new())
        }
        Concept::ServiceRule { zone, port: p, proto, destination } => (
            Some(zone.clone()),
            format!("zone {zone} allows {p}/{proto} to {destination} (a service) → {act}"),
            Vec::new(),
        ),
        Concept::RichRule { zone, summary: s, .. } => {
            let text = config.and_then(|c| rich_rule_text(c, zone, &concept));
            let fix = if accepted {
                Vec::new()
            } else {
                match &text {
                    Some(t) => vec![
                        format!("firewall-cmd --zone={zone} --remove-rich-rule='{t}'"),
                        format!("firewall-cmd --permanent --zone={zone} --remove-rich-rule='{t}'"),
                    ],
                    None => vec![format!(
                        "firewall-cmd --zone={zone} --list-rich-rules   # then --remove-rich-rule='…' for the rule matching: {s}"
                    )],
                }
            };
            let named = text.map(|t| format!(" ({t})")).unwrap_or_default();
            (Some(zone.clone()), format!("zone {zone}, rich rule {s}{named} → {act}"), fix)
        }
        Concept::DefaultReject => (
            None,
            format!("no zone handled the packet: firewalld's final {act}"),
            vec![
                "firewall-cmd --get-active-zones   # bind the interface or source to a zone".into(),
            ],
        ),
        Concept::Other => (None, format!("firewalld rule `{}` → {act}", rule.text), Vec::new()),
    };
    Some(Attribution { zone, action: act, concept, rule: rule.text.clone(), summary, fix })
}

/// The exact rich-rule text firewalld holds for `concept`, matched by port, source and action
/// (what the generated nft rule carries), so `--remove-rich-rule` can be given verbatim.
fn rich_rule_text(cfg: &FirewalldConfig, zone: &str, concept: &Concept) -> Option<String> {
    let Concept::RichRule { source, port, action, .. } = concept else { return None };
    let z = cfg.zone(zone)?;
    let verb = action.split_whitespace().next().unwrap_or("");
    z.rich_rules
        .iter()
        .find(|text| {
            let has = |needle: &str| text.contains(needle);
            port.as_deref()
                .is_none_or(|p| has(&format!("port=\"{p}\"")) || has(&format!("port={p}")))
                && source.as_deref().is_none_or(&has)
                && has(verb)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{recorded, traced_syn};

    fn handle_of(r: &Ruleset, chain: &str, pred: impl Fn(&str) -> bool) -> u64 {
        r.rules
            .iter()
            .find(|x| x.chain == chain && pred(&x.text))
            .map(|x| x.handle)
            .unwrap_or_else(|| panic!("no rule in {chain}"))
    }

    #[test]
    fn default_target_reject_names_zone_and_fix() {
        let r = recorded("02-add-port");
        let h =
            handle_of(&r, "filter_IN_public", |t| t.contains("reject with icmpx admin-prohibited"));
        let a = attribute(&r, "inet", "firewalld", h, 7777, None).unwrap();
        assert_eq!(a.zone.as_deref(), Some("public"));
        assert_eq!(a.action, "reject icmpx admin-prohibited");
        assert!(
            a.summary.contains("target default") && a.summary.contains("7777/tcp is not allowed"),
            "{}",
            a.summary
        );
        assert_eq!(
            a.fix,
            vec![
                "firewall-cmd --zone=public --add-port=7777/tcp".to_string(),
                "firewall-cmd --permanent --zone=public --add-port=7777/tcp".to_string(),
            ]
        );
    }

    #[test]
    fn drop_target_after_reload() {
        let r = recorded("04-target-DROP-after-reload");
        let h = handle_of(&r, "filter_IN_public", |t| t == "drop");
        let a = attribute(&r, "inet", "firewalld", h, 7777, None).unwrap();
        assert_eq!((a.action.as_str(), a.zone.as_deref()), ("drop", Some("public")));
        assert!(a.summary.contains("target DROP"), "{}", a.summary);
    }

    #[test]
    fn rich_rule_reject_is_named() {
        let r = recorded("03-add-rich-rules");
        let h =
            handle_of(&r, "filter_IN_public_deny", |t| t.contains("9090") && t.contains("reject"));
        let a = attribute(&r, "inet", "firewalld", h, 9090, None).unwrap();
        assert!(matches!(a.concept, Concept::RichRule { .. }), "{:?}", a.concept);
        assert_eq!(a.action, "reject tcp reset");
        assert!(a.fix[0].contains("--list-rich-rules"), "{:?}", a.fix);
    }

    #[test]
    fn allowed_port_needs_no_fix_and_unknown_handles_are_none() {
        let r = recorded("02-add-port");
        let h = handle_of(&r, "filter_IN_public_allow", |t| t.contains("8080"));
        let a = attribute(&r, "inet", "firewalld", h, 8080, None).unwrap();
        assert_eq!(a.action, "accept");
        assert!(a.fix.is_empty());
        assert!(attribute(&r, "inet", "firewalld", 999_999, 8080, None).is_none());
    }

    /// What the kernel did, checked against how reach explains it: for every recorded trace,
    /// the last firewalld rule the client's SYN matched exists under that handle, in that
    /// chain and with that text in the ruleset recorded just before the trace, its verdict
    /// decided, and it is attributed to the firewalld concept the step configured.
    #[test]
    fn recorded_traces_are_attributed_to_what_decided_them() {
        let cases: [(&str, u16, &str, &str, &str); 7] = [
            (
                "B-default-7777-notallowed",
                7777,
                "03-add-rich-rules",
                "drop",
                "reject icmpx admin-prohibited",
            ),
            (
                "B-default-8080-allowed-listener-on-127",
                8080,
                "03-add-rich-rules",
                "accept",
                "accept",
            ),
            (
                "B-default-9090-rich-reject-tcp-reset",
                9090,
                "03-add-rich-rules",
                "drop",
                "reject tcp reset",
            ),
            ("B-default-9191-rich-log-drop", 9191, "03-add-rich-rules", "drop", "drop"),
            ("B-default-9292-rich-accept-listener", 9292, "03-add-rich-rules", "accept", "accept"),
            ("C-DROP-7777-notallowed", 7777, "04-target-DROP-after-reload", "drop", "drop"),
            (
                "C-DROP-8080-allowed-listener-on-127",
                8080,
                "04-target-DROP-after-reload",
                "accept",
                "accept",
            ),
        ];
        for (case, port, step, verdict, action) in cases {
            let walk = traced_syn(case, port);
            let last = walk.last().unwrap_or_else(|| panic!("{case}: the SYN matched no rule"));
            assert_eq!(
                (last.family.as_str(), last.table.as_str()),
                ("inet", "firewalld"),
                "{case}"
            );
            // A reject shows as drop in a trace (module docs of trace.rs).
            assert_eq!(last.verdict, verdict, "{case}: {last:?}");
            let rs = recorded(step);
            let rule = rs
                .rule_by_handle("inet", "firewalld", last.handle)
                .unwrap_or_else(|| panic!("{case}: handle {} not in {step}", last.handle));
            assert_eq!(
                (rule.chain.as_str(), rule.text.as_str()),
                (last.chain.as_str(), last.text.as_str()),
                "{case}"
            );
            let a =
                attribute(&rs, "inet", "firewalld", last.handle, port, None).expect("attributed");
            assert_eq!(a.zone.as_deref(), Some("public"), "{case}");
            assert_eq!(a.action, action, "{case}");
            let expected_concept = match port {
                7777 => matches!(a.concept, Concept::ZoneTarget { .. }),
                8080 => matches!(a.concept, Concept::PortAllowed { .. }),
                _ => {
                    matches!(&a.concept, Concept::RichRule { port: Some(p), .. } if *p == port.to_string())
                }
            };
            assert!(expected_concept, "{case}: {:?}", a.concept);
            assert_eq!(a.fix.is_empty(), verdict == "accept", "{case}: {:?}", a.fix);
        }
        // The default target lets the walk reach the zone's final reject; DROP ends it with drop.
        assert!(
            traced_syn("C-DROP-7777-notallowed", 7777).last().is_some_and(|r| r.text == "drop")
        );
    }
}
