//! Naming the rule that decided a traced packet in firewalld's own terms, with the command that
//! changes the outcome. The trace gives table, chain and handle; handles change on every
//! firewalld reload, so the caller passes a ruleset read after the packet, never a cached one.
use std::net::IpAddr;

use serde::Serialize;

use super::{
    firewalld::FirewalldConfig,
    firewalld_chains::{Concept, Target, describe_rule},
    nftables::{Ruleset, Verdict},
};

/// A decision attributed to firewalld configuration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attribution {
    /// The zone whose chain decided; for a policy's decision, the zone the packet came in
    /// through ([`Attribution::with_arrival_zone`]); None for the catch-all reject.
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

impl Attribution {
    /// A policy decided: its chain says nothing of the zone the packet came in through, so
    /// name it as firewalld binds one (source, then interface, then the default zone) from its
    /// D-Bus view. Decisions of a zone chain already carry theirs; the catch-all has none.
    pub fn with_arrival_zone(mut self, cfg: &FirewalldConfig, iface: &str, source: IpAddr) -> Self {
        let policy = match &self.concept {
            Concept::PolicyTarget { policy, .. }
            | Concept::PolicyPortAllowed { policy, .. }
            | Concept::PolicyRichRule { policy, .. } => policy.clone(),
            _ => return self,
        };
        if self.zone.is_none() {
            let zone = cfg.zone_for(iface, source).name.clone();
            if !zone.is_empty() {
                self.summary = self.summary.replacen(
                    &format!("policy {policy}"),
                    &format!("policy {policy} (the SYN came in through zone {zone})"),
                    1,
                );
                self.zone = Some(zone);
            }
        }
        self
    }
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
    twin(&format!("--zone={zone} --add-port={port}/tcp"))
}

/// The runtime command and its `--permanent` twin.
fn twin(args: &str) -> Vec<String> {
    vec![format!("firewall-cmd {args}"), format!("firewall-cmd --permanent {args}")]
}

fn target_name(t: &Target) -> &'static str {
    match t {
        Target::Default => "default",
        Target::Accept => "ACCEPT",
        Target::Drop => "DROP",
        Target::Reject => "REJECT",
    }
}

/// Removing the rich rule `text` of zone or policy `owner` (`--zone=Z` / `--policy=P`), or,
/// without firewalld's text, how to find it.
fn remove_rich(owner: &str, text: Option<&str>, summary: &str) -> Vec<String> {
    match text {
        Some(t) => twin(&format!("{owner} --remove-rich-rule='{t}'")),
        None => vec![format!(
            "firewall-cmd {owner} --list-rich-rules   # then --remove-rich-rule='…' for the rule matching: {summary}"
        )],
    }
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
            let t = target_name(target);
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
                remove_rich(&format!("--zone={zone}"), text.as_deref(), s)
            };
            let named = text.map(|t| format!(" ({t})")).unwrap_or_default();
            (Some(zone.clone()), format!("zone {zone}, rich rule {s}{named} → {act}"), fix)
        }
        Concept::PolicyTarget { policy, target } => {
            let t = target_name(target);
            let summary = if accepted {
                format!("policy {policy}, target {t} → {act}")
            } else {
                format!(
                    "policy {policy}, target {t} → {act}; port {port}/tcp is not allowed in policy {policy}"
                )
            };
            // A port of the policy is accepted in its _allow chain, before its target.
            let fix = if accepted {
                Vec::new()
            } else {
                twin(&format!("--policy={policy} --add-port={port}/tcp"))
            };
            (None, summary, fix)
        }
        Concept::PolicyPortAllowed { policy, port: p, proto } => {
            (None, format!("policy {policy} allows port {p}/{proto} → {act}"), Vec::new())
        }
        Concept::PolicyRichRule { policy, summary: s, .. } => {
            let text = config.and_then(|c| policy_rich_rule_text(c, policy, &concept));
            let fix = if accepted {
                Vec::new()
            } else {
                remove_rich(&format!("--policy={policy}"), text.as_deref(), s)
            };
            let named = text.map(|t| format!(" ({t})")).unwrap_or_default();
            (None, format!("policy {policy}, rich rule {s}{named} → {act}"), fix)
        }
        Concept::DefaultReject => (
            None,
            format!("no zone handled the packet: firewalld's final {act}"),
            vec![
                "firewall-cmd --get-active-zones   # bind the interface or source to a zone".into(),
            ],
        ),
        // Said plainly, so the diagnosis can fall back on the prediction (diagnose/verdict.rs).
        Concept::Other => (
            None,
            format!(
                "rule `{}` in chain {} → {act}: reach cannot map it to a firewalld zone, target, port, rich rule or policy",
                rule.text, rule.chain
            ),
            Vec::new(),
        ),
    };
    Some(Attribution { zone, action: act, concept, rule: rule.text.clone(), summary, fix })
}

/// The exact rich-rule text firewalld holds for `concept`, matched by port, source and action
/// (what the generated nft rule carries), so `--remove-rich-rule` can be given verbatim.
fn rich_rule_text(cfg: &FirewalldConfig, zone: &str, concept: &Concept) -> Option<String> {
    let Concept::RichRule { source, port, action, .. } = concept else { return None };
    matching_rich_rule(&cfg.zone(zone)?.rich_rules, source, port, action)
}

/// [`rich_rule_text`] for a rich rule of a policy.
fn policy_rich_rule_text(cfg: &FirewalldConfig, policy: &str, concept: &Concept) -> Option<String> {
    let Concept::PolicyRichRule { source, port, action, .. } = concept else { return None };
    let p = cfg.policies.iter().find(|p| p.name == policy)?;
    matching_rich_rule(&p.rich_rules, source, port, action)
}

fn matching_rich_rule(
    rules: &[String],
    source: &Option<String>,
    port: &Option<String>,
    action: &str,
) -> Option<String> {
    let verb = action.split_whitespace().next().unwrap_or("");
    rules
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
    use crate::firewall::fixtures::{
        SERVER_IF, TRACES, VERSIONS, recorded, recorded_in, traced_syn, traced_syn_in,
    };

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

    /// firewalld 2.3.1 (tests/fixtures/firewalld-2.3.1): the zone's target is the verdict that
    /// closes the interface's binding in filter_INPUT_POLICIES; policies decide in their own
    /// chains.
    const V2: &str = "2.3.1";

    fn attr_v2(step: &str, chain: &str, pred: impl Fn(&str) -> bool, port: u16) -> Attribution {
        let r = recorded_in(V2, step);
        let h = handle_of(&r, chain, pred);
        attribute(&r, "inet", "firewalld", h, port, None).unwrap()
    }

    #[test]
    fn v2_zone_targets_are_named_from_filter_input_policies() {
        for (step, verdict, target) in [
            ("03-add-rich-rules", "reject with icmpx admin-prohibited", "target default"),
            ("04-target-DROP-after-reload", "drop", "target DROP"),
            ("09-target-REJECT", "reject with icmpx admin-prohibited", "target REJECT"),
        ] {
            let srv0 = format!("iifname \"{SERVER_IF}\" {verdict}");
            let a = attr_v2(step, "filter_INPUT_POLICIES", |t| t == srv0, 7777);
            assert_eq!(a.zone.as_deref(), Some("public"), "{step}");
            assert!(a.summary.contains(&format!("zone public, {target}")), "{step}: {}", a.summary);
            assert_eq!(
                a.fix,
                [
                    "firewall-cmd --zone=public --add-port=7777/tcp",
                    "firewall-cmd --permanent --zone=public --add-port=7777/tcp"
                ],
                "{step}"
            );
        }
        let a = attr_v2("08-target-ACCEPT", "filter_INPUT_POLICIES", |t| t == "accept", 7777);
        assert!(a.summary.contains("target ACCEPT") && a.fix.is_empty(), "{a:?}");
    }

    #[test]
    fn v2_policy_target_and_policy_rich_rule_name_the_policy_and_its_fix() {
        let a = attr_v2(
            "06-policies",
            "filter_IN_policy_anyhost",
            |t| t == "reject with icmpx admin-prohibited",
            7777,
        );
        assert!(
            matches!(&a.concept, Concept::PolicyTarget { policy, target: Target::Reject } if policy == "anyhost"),
            "{a:?}"
        );
        assert!(a.summary.starts_with("policy anyhost, target REJECT"), "{}", a.summary);
        assert_eq!(
            a.fix,
            [
                "firewall-cmd --policy=anyhost --add-port=7777/tcp",
                "firewall-cmd --permanent --policy=anyhost --add-port=7777/tcp"
            ]
        );
        let a = attr_v2("07-policy-target-DROP", "filter_IN_policy_pubhost", |t| t == "drop", 8080);
        assert!(a.summary.starts_with("policy pubhost, target DROP"), "{}", a.summary);

        // With firewalld's view, the policy's rich rule is removed by its exact text.
        let text = "rule family=\"ipv4\" source address=\"10.77.0.2\" port port=\"7171\" protocol=\"tcp\" reject";
        let cfg = FirewalldConfig {
            policies: vec![crate::firewall::firewalld::Policy {
                name: "pubhost".into(),
                rich_rules: vec![text.into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = recorded_in(V2, "06-policies");
        let h = handle_of(&r, "filter_IN_policy_pubhost_deny", |t| t.contains("7171"));
        let a = attribute(&r, "inet", "firewalld", h, 7171, Some(&cfg)).unwrap();
        assert_eq!(a.action, "reject icmp port-unreachable");
        assert_eq!(
            a.fix,
            [
                format!("firewall-cmd --policy=pubhost --remove-rich-rule='{text}'"),
                format!("firewall-cmd --permanent --policy=pubhost --remove-rich-rule='{text}'"),
            ]
        );
        assert!(a.summary.contains(text), "{}", a.summary);
        // Without it, how to find the rule.
        let a = attribute(&r, "inet", "firewalld", h, 7171, None).unwrap();
        assert!(
            a.fix[0].starts_with("firewall-cmd --policy=pubhost --list-rich-rules"),
            "{:?}",
            a.fix
        );
        let a =
            attr_v2("06-policies", "filter_IN_policy_pubhost_allow", |t| t.contains("7070"), 7070);
        assert!(
            a.summary.starts_with("policy pubhost allows port 7070/tcp") && a.fix.is_empty(),
            "{a:?}"
        );
    }

    #[test]
    fn an_unmapped_rule_says_so_with_its_text() {
        let r = recorded_in(V2, "03-add-rich-rules");
        let h = handle_of(&r, "filter_INPUT", |t| t == "ct state invalid drop");
        let a = attribute(&r, "inet", "firewalld", h, 7777, None).unwrap();
        assert_eq!(a.concept, Concept::Other);
        assert!(
            a.summary.contains("`ct state invalid drop`") && a.summary.contains("cannot map"),
            "{}",
            a.summary
        );
        assert!(a.fix.is_empty());
    }

    /// Every recorded trace of every version (tests/fixtures/firewalld-<version>/nft-traces):
    /// the last firewalld rule the client's SYN matched is the one under that handle in the
    /// ruleset recorded just before, and it is attributed to what the step configured — zones,
    /// targets, ports, rich rules, and policies (pubhost public → HOST at -10, anyhost ANY →
    /// HOST at 10 with target REJECT; pubhost's target DROP in E).
    #[test]
    fn recorded_traces_of_every_version_name_zone_policy_and_target() {
        let zone_target = |t: Target| move |c: &Concept| matches!(c, Concept::ZoneTarget { zone, target } if zone == "public" && *target == t);
        let policy_target = |p: &'static str, t: Target| move |c: &Concept| matches!(c, Concept::PolicyTarget { policy, target } if policy == p && *target == t);
        let zone_port = |c: &Concept| matches!(c, Concept::PortAllowed { zone, port, .. } if zone == "public" && port == "8080");
        let zone_rich = |p: &'static str| move |c: &Concept| matches!(c, Concept::RichRule { zone, port: Some(x), .. } if zone == "public" && x == p);
        let policy_port = |c: &Concept| matches!(c, Concept::PolicyPortAllowed { policy, port, .. } if policy == "pubhost" && port == "7070");
        let policy_rich = |p: &'static str, port: &'static str| move |c: &Concept| matches!(c, Concept::PolicyRichRule { policy, port: Some(x), .. } if policy == p && x == port);
        type Check = Box<dyn Fn(&Concept) -> bool>;
        let cases: Vec<(&str, &str, Check, &str)> = vec![
            (
                "B-default-7777-notallowed",
                "03-add-rich-rules",
                Box::new(zone_target(Target::Default)),
                "reject icmpx admin-prohibited",
            ),
            (
                "B-default-8080-allowed-listener-on-127",
                "03-add-rich-rules",
                Box::new(zone_port),
                "accept",
            ),
            (
                "B-default-9090-rich-reject-tcp-reset",
                "03-add-rich-rules",
                Box::new(zone_rich("9090")),
                "reject tcp reset",
            ),
            (
                "B-default-9191-rich-log-drop",
                "03-add-rich-rules",
                Box::new(zone_rich("9191")),
                "drop",
            ),
            (
                "B-default-9292-rich-accept-listener",
                "03-add-rich-rules",
                Box::new(zone_rich("9292")),
                "accept",
            ),
            (
                "C-DROP-7777-notallowed",
                "04-target-DROP-after-reload",
                Box::new(zone_target(Target::Drop)),
                "drop",
            ),
            (
                "C-DROP-8080-allowed-listener-on-127",
                "04-target-DROP-after-reload",
                Box::new(zone_port),
                "accept",
            ),
            ("D-policies-7070-policy-port", "06-policies", Box::new(policy_port), "accept"),
            (
                "D-policies-7171-policy-rich-reject",
                "06-policies",
                Box::new(policy_rich("pubhost", "7171")),
                "reject icmp port-unreachable",
            ),
            (
                "D-policies-7272-anyhost-rich-accept",
                "06-policies",
                Box::new(policy_rich("anyhost", "7272")),
                "accept",
            ),
            (
                "D-policies-7777-notallowed",
                "06-policies",
                Box::new(policy_target("anyhost", Target::Reject)),
                "reject icmpx admin-prohibited",
            ),
            (
                "E-policy-DROP-7070-policy-port",
                "07-policy-target-DROP",
                Box::new(policy_port),
                "accept",
            ),
            (
                "E-policy-DROP-7777-notallowed",
                "07-policy-target-DROP",
                Box::new(policy_target("pubhost", Target::Drop)),
                "drop",
            ),
        ];
        assert_eq!(cases.len(), TRACES.len(), "a case per recorded trace");
        for version in VERSIONS {
            for (case, step, expected, action) in &cases {
                let port = TRACES.iter().find(|(c, _)| c == case).expect("a recorded trace").1;
                let walk = traced_syn_in(version, case, port);
                let last = walk.last().unwrap_or_else(|| panic!("{version} {case}: no rule"));
                let rs = recorded_in(version, step);
                let rule =
                    rs.rule_by_handle("inet", "firewalld", last.handle).unwrap_or_else(|| {
                        panic!("{version} {case}: handle {} not in {step}", last.handle)
                    });
                assert_eq!(
                    (rule.chain.as_str(), rule.text.as_str()),
                    (last.chain.as_str(), last.text.as_str()),
                    "{version} {case}"
                );
                let a = attribute(&rs, "inet", "firewalld", last.handle, port, None)
                    .expect("attributed");
                assert!(expected(&a.concept), "{version} {case}: {:?}", a.concept);
                assert_eq!(a.action, *action, "{version} {case}");
                assert_eq!(a.fix.is_empty(), *action == "accept", "{version} {case}: {:?}", a.fix);
            }
        }
    }
}
