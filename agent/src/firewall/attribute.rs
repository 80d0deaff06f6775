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

    fn reference(name: &str) -> Ruleset {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/firewalld-1.3.3-rulesets/"
        );
        let text = std::fs::read_to_string(format!("{path}{name}"))
            .unwrap_or_else(|e| panic!("reference ruleset {path}{name} is needed: {e}"));
        Ruleset::from_json(&text).unwrap()
    }

    fn handle_of(r: &Ruleset, chain: &str, pred: impl Fn(&str) -> bool) -> u64 {
        r.rules
            .iter()
            .find(|x| x.chain == chain && pred(&x.text))
            .map(|x| x.handle)
            .unwrap_or_else(|| panic!("no rule in {chain}"))
    }

    #[test]
    fn default_target_reject_names_zone_and_fix() {
        let r = reference("02-add-port.json");
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
        let r = reference("04-target-DROP-after-reload.json");
        let h = handle_of(&r, "filter_IN_public", |t| t == "drop");
        let a = attribute(&r, "inet", "firewalld", h, 7777, None).unwrap();
        assert_eq!((a.action.as_str(), a.zone.as_deref()), ("drop", Some("public")));
        assert!(a.summary.contains("target DROP"), "{}", a.summary);
    }

    #[test]
    fn rich_rule_reject_is_named() {
        let r = reference("03-add-rich-rules.json");
        let h =
            handle_of(&r, "filter_IN_public_deny", |t| t.contains("9090") && t.contains("reject"));
        let a = attribute(&r, "inet", "firewalld", h, 9090, None).unwrap();
        assert!(matches!(a.concept, Concept::RichRule { .. }), "{:?}", a.concept);
        assert_eq!(a.action, "reject tcp reset");
        assert!(a.fix[0].contains("--list-rich-rules"), "{:?}", a.fix);
    }

    #[test]
    fn allowed_port_needs_no_fix_and_unknown_handles_are_none() {
        let r = reference("02-add-port.json");
        let h = handle_of(&r, "filter_IN_public_allow", |t| t.contains("8080"));
        let a = attribute(&r, "inet", "firewalld", h, 8080, None).unwrap();
        assert_eq!(a.action, "accept");
        assert!(a.fix.is_empty());
        assert!(attribute(&r, "inet", "firewalld", 999_999, 8080, None).is_none());
    }
}
