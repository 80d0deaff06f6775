//! Maps the chains firewalld generates in `table inet firewalld` back to the concepts users
//! configure: zones, their targets, ports, rich rules, policies.
//!
//! Handles change on every `--reload` (firewalld flushes and rebuilds its table), so everything
//! here works from chain names and rule expressions, never from handles.
//!
//! Dispatch schemes (how a packet for this host reaches a zone's rules):
//! - 0.9 – 1.3 (verified against the firewalld 1.3.3 rulesets in tests/fixtures/, recorded by
//!   `cargo xtask record-fixtures`): `filter_INPUT` jumps to `filter_INPUT_ZONES`, which has
//!   `iifname "X" goto filter_IN_<zone>` / `ip saddr S goto …` rules and a final catch-all
//!   `goto filter_IN_<default zone>`. The zone chain jumps to
//!   `filter_IN_<zone>_{pre,log,deny,allow,post}` (bracketed by `filter_INPUT_POLICIES_pre/_post`)
//!   and ends with the zone's target. In 1.x, target `default` is written as
//!   `meta l4proto { icmp, ipv6-icmp } accept` followed by `reject with icmpx admin-prohibited`
//!   (so `default` differs from `REJECT` only by letting ICMP in); `DROP`/`ACCEPT` are a plain
//!   `drop`/`accept`. In 0.9 target `default` wrote no rule at all: the zone chain returned and
//!   the final reject of `filter_INPUT` applied — both shapes classify as [`Target::Default`].
//! - 2.0 – 2.4 (ASSUMPTION, from memory of firewalld's nftables backend, not verified against a
//!   live 2.x): `filter_INPUT` jumps to `filter_INPUT_POLICIES`, where each binding has
//!   `iifname "X" jump filter_IN_policy_<p>` / `iifname "X" jump filter_IN_<zone>` rules followed by
//!   `iifname "X" <target verdict>`; the catch-all binding of the default zone comes last.
//! - ≥ 2.5 (from firewalld's src/firewall/core/nftables.py, `build_dispatch_stage1_rules` and
//!   `build_zone_target_rules`): `filter_INPUT` jumps to `filter_INPUT_dispatch`, whose rules
//!   `iifname "X" jump filter_IN_<zone>_to_HOST` pick the zone; that chain jumps to policy chains
//!   (including the zone's own `filter_IN_<zone>` with its sub-chains) and ends with the target.
//!
//! Zone names may contain `_`; a zone whose name itself ends in `_allow`, `_pre`, … is
//! indistinguishable from that zone's sub-chain by name alone and is classified as the latter.
use serde::Serialize;
use serde_json::Value;

use super::nftables::{Rule, Ruleset, Verdict, render_statements};

/// firewalld's own table.
pub const FAMILY: &str = "inet";
pub const TABLE: &str = "firewalld";

/// Whether a chain belongs to a zone or a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainKind {
    Zone,
    Policy,
}

/// The role of a chain inside a zone or policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Rich rules with a negative priority.
    Pre,
    /// Rich rules' `log`/`audit` parts.
    Log,
    /// Rich rules that drop/reject, icmp-blocks.
    Deny,
    /// Services, ports, protocols, accepting rich rules.
    Allow,
    /// Rich rules with a positive priority.
    Post,
    /// The zone/policy chain itself (jumps to the stages, then the target).
    Main,
    /// A chain that picks the zone/policy for a packet (`filter_INPUT_ZONES`, …).
    Dispatch,
}

/// What a firewalld chain name means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FirewalldChain {
    /// Zone or policy name; empty for the global dispatch chains.
    pub zone_or_policy: String,
    pub kind: ChainKind,
    pub stage: Stage,
    /// `filter`, `nat` or `mangle`.
    pub table: String,
    /// The hook: `IN`, `FWD`, `OUT`, `PRE`, `POST` for zone/policy chains, the full name
    /// (`INPUT`, …) for global dispatch chains.
    pub hook: String,
    /// ≥ 2.5 only: the egress zone of a `<table>_<HOOK>_<zone>_to_<egress>` chain (`HOST` for
    /// traffic to this machine).
    pub egress: Option<String>,
}

const TABLES: &[&str] = &["filter", "nat", "mangle"];
const FULL_HOOKS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
const SHORT_HOOKS: &[&str] = &["IN", "FWD", "OUT", "PRE", "POST"];
const STAGES: &[(&str, Stage)] = &[
    ("_pre", Stage::Pre),
    ("_log", Stage::Log),
    ("_deny", Stage::Deny),
    ("_allow", Stage::Allow),
    ("_post", Stage::Post),
];

/// Classifies a chain of `table inet firewalld` by name. `None` for base chains
/// (`filter_INPUT`, …) and anything not generated for a zone or policy.
pub fn classify(chain: &str) -> Option<FirewalldChain> {
    let (table, rest) = chain.split_once('_')?;
    if !TABLES.contains(&table) {
        return None;
    }
    let make = |name: &str, kind, stage, hook: &str, egress: Option<&str>| FirewalldChain {
        zone_or_policy: name.to_string(),
        kind,
        stage,
        table: table.to_string(),
        hook: hook.to_string(),
        egress: egress.map(str::to_string),
    };

    // Global dispatch chains, named after the full hook.
    for hook in FULL_HOOKS {
        if let Some(suffix) = rest.strip_prefix(hook).and_then(|s| s.strip_prefix('_')) {
            return match suffix {
                "ZONES" | "dispatch" => {
                    Some(make("", ChainKind::Zone, Stage::Dispatch, hook, None))
                }
                "POLICIES" | "POLICIES_pre" | "POLICIES_post" => {
                    Some(make("", ChainKind::Policy, Stage::Dispatch, hook, None))
                }
                _ => None,
            };
        }
    }

    let (hook, name) = rest.split_once('_')?;
    if !SHORT_HOOKS.contains(&hook) || name.is_empty() {
        return None;
    }
    if let Some(policy) = name.strip_prefix("policy_") {
        let (policy, stage) = split_stage(policy);
        return Some(make(policy, ChainKind::Policy, stage, hook, None));
    }
    if let Some(zone) = name.strip_suffix("_dispatch_stage2") {
        return Some(make(zone, ChainKind::Zone, Stage::Dispatch, hook, None));
    }
    let (zone, stage) = split_stage(name);
    if stage == Stage::Main
        && let Some((ingress, egress)) = zone.rsplit_once("_to_")
        && !ingress.is_empty()
        && !egress.is_empty()
    {
        return Some(make(ingress, ChainKind::Zone, Stage::Main, hook, Some(egress)));
    }
    Some(make(zone, ChainKind::Zone, stage, hook, None))
}

fn split_stage(name: &str) -> (&str, Stage) {
    for (suffix, stage) in STAGES {
        if let Some(base) = name.strip_suffix(suffix)
            && !base.is_empty()
        {
            return (base, *stage);
        }
    }
    (name, Stage::Main)
}

/// What binds traffic to a zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum BoundBy {
    /// `iifname "X"` (firewalld's `*` wildcard shows up as nft's `*`).
    Interface(String),
    /// `ip saddr S`, `ip6 saddr S`, `ether saddr M` or `ip saddr @ipset`.
    Source(String),
    /// The catch-all rule: the default zone.
    Default,
}

/// One zone binding, in dispatch order (the first matching binding wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    pub zone: String,
    pub by: BoundBy,
    /// The chain the dispatch rule jumps or goes to.
    pub chain: String,
}

/// A zone's target, as firewall-cmd's `--get-target` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `default`: reject, but ICMP is let in (1.x); in 0.9 the final reject of filter_INPUT.
    Default,
    Accept,
    Drop,
    /// `%%REJECT%%`/`REJECT`.
    Reject,
}

/// The dispatch chains of the supported schemes, for packets to this host.
const INPUT_DISPATCH: &[&str] =
    &["filter_INPUT_ZONES", "filter_INPUT_dispatch", "filter_INPUT_POLICIES"];

fn fw_rules<'a>(ruleset: &'a Ruleset, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
    ruleset.rules_of(FAMILY, TABLE, chain)
}

/// Which zone handles packets to this host, by interface/source, in evaluation order.
pub fn zone_dispatch(ruleset: &Ruleset) -> Vec<Dispatch> {
    let mut out = Vec::new();
    for chain in INPUT_DISPATCH {
        for rule in fw_rules(ruleset, chain) {
            let (Verdict::Jump(target) | Verdict::Goto(target)) = &rule.verdict else { continue };
            let Some(fc) = classify(target) else { continue };
            // Policy chains (2.0–2.4 dispatch through filter_INPUT_POLICIES too) are not zones.
            if fc.kind != ChainKind::Zone || fc.stage != Stage::Main || fc.hook != "IN" {
                continue;
            }
            out.push(Dispatch {
                zone: fc.zone_or_policy,
                by: bound_by(rule),
                chain: target.clone(),
            });
        }
    }
    out
}

fn bound_by(rule: &Rule) -> BoundBy {
    for m in rule.matches() {
        let left = &m["left"];
        let right = || render_operand_value(&m["right"]);
        if left["meta"]["key"] == "iifname" {
            return BoundBy::Interface(right());
        }
        if left["payload"]["field"] == "saddr" {
            return BoundBy::Source(right());
        }
    }
    BoundBy::Default
}

/// A match's right-hand side as nft prints it, without quotes.
fn render_operand_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                format!("{}/{}", p["addr"].as_str().unwrap_or("?"), p["len"])
            } else if let Some(r) = o.get("range") {
                format!("{}-{}", render_operand_value(&r[0]), render_operand_value(&r[1]))
            } else if let Some(set) = o.get("set") {
                let items = set.as_array().map(Vec::as_slice).unwrap_or_default();
                let items: Vec<String> = items.iter().map(render_operand_value).collect();
                format!("{{ {} }}", items.join(", "))
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// The chain holding `zone`'s target for traffic to this host, if the zone is active.
fn target_chain(ruleset: &Ruleset, zone: &str) -> Option<String> {
    let to_host = format!("filter_IN_{zone}_to_HOST");
    if ruleset.chain(FAMILY, TABLE, &to_host).is_some() {
        return Some(to_host);
    }
    let main = format!("filter_IN_{zone}");
    ruleset.chain(FAMILY, TABLE, &main).map(|_| main)
}

/// True for `meta l4proto { icmp, ipv6-icmp } accept`, the rule that makes target `default`
/// let ICMP in (firewalld 1.x).
fn is_icmp_accept(rule: &Rule) -> bool {
    if rule.verdict != Verdict::Accept {
        return false;
    }
    let mut matches = rule.matches().peekable();
    matches.peek().is_some()
        && matches.all(|m| {
            m["left"]["meta"]["key"] == "l4proto"
                && m["right"]["set"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|p| p == "icmp" || p == "ipv6-icmp"))
        })
}

fn unconditional(rule: &Rule) -> bool {
    rule.matches().next().is_none()
}

/// The rule that enforces the zone's target in its own chain (last unconditional
/// accept/drop/reject), if any.
fn target_rule<'a>(ruleset: &'a Ruleset, chain: &'a str) -> Option<&'a Rule> {
    fw_rules(ruleset, chain).filter(|r| unconditional(r) && r.verdict.is_final()).last()
}

fn target_of(ruleset: &Ruleset, chain: &str, final_rule: Option<&Rule>) -> Target {
    match final_rule.map(|r| &r.verdict) {
        Some(Verdict::Accept) => Target::Accept,
        Some(Verdict::Drop) => Target::Drop,
        Some(Verdict::Reject { .. }) => {
            if fw_rules(ruleset, chain).any(is_icmp_accept) {
                Target::Default
            } else {
                Target::Reject
            }
        }
        // No target rule: the 0.9 shape of `default` (fall back to filter_INPUT's reject).
        _ => Target::Default,
    }
}

/// `zone`'s target for traffic to this host, or `None` if the ruleset has no chain for the zone
/// (firewalld only creates chains for active zones: with a binding, or the default zone).
pub fn zone_target(ruleset: &Ruleset, zone: &str) -> Option<Target> {
    let chain = target_chain(ruleset, zone);
    if let Some(chain) = &chain
        && let Some(rule) = target_rule(ruleset, chain)
    {
        return Some(target_of(ruleset, chain, Some(rule)));
    }
    // 2.0–2.4: the zone chain has no target; it is a verdict in filter_INPUT_POLICIES after the
    // zone's jump, carrying the same binding match.
    let rules: Vec<&Rule> = fw_rules(ruleset, "filter_INPUT_POLICIES").collect();
    let main = format!("filter_IN_{zone}");
    let Some(jump) = rules.iter().position(|r| r.verdict == Verdict::Jump(main.clone())) else {
        // The 0.9 shape of `default`: a zone chain without a target rule.
        return chain.map(|_| Target::Default);
    };
    let binding = bound_by(rules[jump]);
    let verdict = rules[jump + 1..].iter().find(|r| r.verdict.is_final() && bound_by(r) == binding);
    Some(match verdict.map(|r| &r.verdict) {
        Some(Verdict::Accept) => Target::Accept,
        Some(Verdict::Drop) => Target::Drop,
        Some(Verdict::Reject { .. }) => {
            let icmp =
                rules[jump + 1..].iter().any(|r| bound_by(r) == binding && is_icmp_accept(r));
            if icmp { Target::Default } else { Target::Reject }
        }
        _ => Target::Default,
    })
}

/// What a firewalld rule means in firewalld's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "concept", rename_all = "snake_case")]
pub enum Concept {
    /// The rule enforcing a zone's target (including the ICMP accept of target `default`).
    ZoneTarget {
        zone: String,
        target: Target,
    },
    /// `--add-port=PORT/PROTO` (or a service's port: a plain `PROTO dport PORT accept` looks the
    /// same; naming services needs firewalld's D-Bus view).
    PortAllowed {
        zone: String,
        port: String,
        proto: String,
    },
    /// A service port restricted to a destination (e.g. dhcpv6-client: `ip6 daddr fe80::/64
    /// udp dport 546 accept`). One rule per port: a service spans several rules.
    ServiceRule {
        zone: String,
        port: String,
        proto: String,
        destination: String,
    },
    /// A rich rule (or icmp-block) in a zone's pre/log/deny/allow/post chain.
    RichRule {
        zone: String,
        stage: Stage,
        source: Option<String>,
        port: Option<String>,
        proto: Option<String>,
        /// `accept`, `drop`, `reject <type>`, `log "<prefix>"`, …
        action: String,
        /// Rich-rule-like summary, e.g. `source 10.77.0.2 port 9090/tcp reject tcp-reset`.
        summary: String,
    },
    /// The final `reject` of filter_INPUT: what a packet no zone took care of meets.
    DefaultReject,
    Other,
}

/// The parts of a rule that firewalld's generated rules are made of.
#[derive(Debug, Default)]
struct Parts {
    source: Option<String>,
    destination: Option<String>,
    proto: Option<String>,
    port: Option<String>,
    icmp: Option<String>,
    /// Matches this model does not know; their presence makes a rule "rich".
    other: Vec<String>,
    log: Option<String>,
}

fn parts(rule: &Rule) -> Parts {
    let mut p = Parts::default();
    for s in rule.statements() {
        if let Some(m) = s.get("match") {
            let left = &m["left"];
            let negated = if m["op"] == "!=" { "not " } else { "" };
            let value = format!("{negated}{}", render_operand_value(&m["right"]));
            let proto = left["payload"]["protocol"].as_str().unwrap_or_default();
            match left["payload"]["field"].as_str() {
                Some("saddr") => p.source = Some(value),
                Some("daddr") => p.destination = Some(value),
                Some("dport") => {
                    p.proto = Some(proto.to_string());
                    p.port = Some(value);
                }
                Some("type") if proto.starts_with("icmp") => p.icmp = Some(value),
                _ if left["meta"]["key"] == "l4proto" => p.proto = Some(value),
                // Older firewalld (0.x) adds `ct state new,untracked` to port rules.
                _ if left["ct"]["key"] == "state" => {}
                _ => p.other.push(render_statements(std::slice::from_ref(s))),
            }
        } else if let Some(log) = s.get("log") {
            p.log = Some(log["prefix"].as_str().unwrap_or_default().to_string());
        }
    }
    p
}

fn action(rule: &Rule, p: &Parts) -> String {
    match &rule.verdict {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        // firewalld's rich-rule spelling of the reject types: `tcp reset` → `tcp-reset`.
        Verdict::Reject { kind } if kind.is_empty() => "reject".into(),
        Verdict::Reject { kind } => format!("reject {}", kind.replace(' ', "-")),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Return => "return".into(),
        Verdict::Continue => match &p.log {
            Some(prefix) => format!("log \"{prefix}\""),
            None => "continue".into(),
        },
    }
}

fn summary(p: &Parts, action: &str) -> String {
    let mut words = Vec::new();
    if let Some(s) = &p.source {
        words.push(format!("source {s}"));
    }
    if let Some(d) = &p.destination {
        words.push(format!("destination {d}"));
    }
    match (&p.port, &p.proto) {
        (Some(port), Some(proto)) => words.push(format!("port {port}/{proto}")),
        (None, Some(proto)) => words.push(format!("protocol {proto}")),
        _ => {}
    }
    if let Some(icmp) = &p.icmp {
        words.push(format!("icmp-type {icmp}"));
    }
    words.extend(p.other.iter().cloned());
    words.push(action.to_string());
    words.join(" ")
}

/// Explains one rule of `ruleset` in firewalld's terms.
pub fn describe_rule(ruleset: &Ruleset, rule: &Rule) -> Concept {
    if rule.family != FAMILY || rule.table != TABLE {
        return Concept::Other;
    }
    if rule.chain == "filter_INPUT" {
        return if unconditional(rule) && matches!(rule.verdict, Verdict::Reject { .. }) {
            Concept::DefaultReject
        } else {
            Concept::Other
        };
    }
    let Some(fc) = classify(&rule.chain) else { return Concept::Other };
    if fc.kind != ChainKind::Zone || fc.table != "filter" || fc.hook != "IN" {
        return Concept::Other;
    }
    let zone = fc.zone_or_policy;
    match fc.stage {
        Stage::Main => {
            let Some(chain) = target_chain(ruleset, &zone) else { return Concept::Other };
            if chain != rule.chain {
                return Concept::Other;
            }
            let final_rule = target_rule(ruleset, &chain);
            let is_target = final_rule.is_some_and(|f| f.handle == rule.handle);
            if is_target || (is_icmp_accept(rule) && final_rule.is_some()) {
                Concept::ZoneTarget { target: target_of(ruleset, &chain, final_rule), zone }
            } else {
                Concept::Other
            }
        }
        Stage::Dispatch => Concept::Other,
        stage => {
            let p = parts(rule);
            let plain = p.source.is_none()
                && p.icmp.is_none()
                && p.other.is_empty()
                && p.log.is_none()
                && rule.verdict == Verdict::Accept;
            // A port/service rule is nothing but `[daddr] PROTO dport PORT accept` in _allow;
            // anything more (a source, a log, a limit…) can only come from a rich rule.
            if stage == Stage::Allow
                && plain
                && let (Some(port), Some(proto)) = (&p.port, &p.proto)
            {
                return match &p.destination {
                    None => Concept::PortAllowed { zone, port: port.clone(), proto: proto.clone() },
                    Some(d) => Concept::ServiceRule {
                        zone,
                        port: port.clone(),
                        proto: proto.clone(),
                        destination: d.clone(),
                    },
                };
            }
            let action = action(rule, &p);
            Concept::RichRule {
                zone,
                stage,
                summary: summary(&p, &action),
                source: p.source,
                port: p.port,
                proto: p.proto,
                action,
            }
        }
    }
}

/// Every rule of firewalld's table with its concept, in ruleset order.
pub fn describe_all(ruleset: &Ruleset) -> Vec<(&Rule, Concept)> {
    ruleset
        .rules
        .iter()
        .filter(|r| r.family == FAMILY && r.table == TABLE)
        .map(|r| (r, describe_rule(ruleset, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{CLIENT, CLIENT_NET, SERVER_IF, STEPS, recorded};

    fn fc(name: &str, kind: ChainKind, stage: Stage, table: &str, hook: &str) -> FirewalldChain {
        FirewalldChain {
            zone_or_policy: name.into(),
            kind,
            stage,
            table: table.into(),
            hook: hook.into(),
            egress: None,
        }
    }

    #[test]
    fn classifies_chain_names_of_all_schemes() {
        use ChainKind::*;
        use Stage::*;
        assert_eq!(classify("filter_INPUT"), None);
        assert_eq!(classify("filter_INPUT_dnat"), None);
        assert_eq!(classify("raw_PREROUTING"), None);
        assert_eq!(classify("filter_INPUT_ZONES"), Some(fc("", Zone, Dispatch, "filter", "INPUT")));
        assert_eq!(
            classify("filter_INPUT_POLICIES_pre"),
            Some(fc("", Policy, Dispatch, "filter", "INPUT"))
        );
        assert_eq!(
            classify("filter_INPUT_POLICIES"),
            Some(fc("", Policy, Dispatch, "filter", "INPUT"))
        );
        assert_eq!(
            classify("filter_INPUT_dispatch"),
            Some(fc("", Zone, Dispatch, "filter", "INPUT"))
        );
        assert_eq!(classify("filter_IN_public"), Some(fc("public", Zone, Main, "filter", "IN")));
        assert_eq!(
            classify("filter_IN_public_allow"),
            Some(fc("public", Zone, Allow, "filter", "IN"))
        );
        assert_eq!(
            classify("filter_IN_my_zone_deny"),
            Some(fc("my_zone", Zone, Deny, "filter", "IN"))
        );
        assert_eq!(classify("nat_POST_work_pre"), Some(fc("work", Zone, Pre, "nat", "POST")));
        assert_eq!(
            classify("mangle_PRE_public_log"),
            Some(fc("public", Zone, Log, "mangle", "PRE"))
        );
        assert_eq!(
            classify("filter_IN_policy_allow-host-ipv6_allow"),
            Some(fc("allow-host-ipv6", Policy, Allow, "filter", "IN"))
        );
        assert_eq!(
            classify("filter_IN_policy_allow-host-ipv6"),
            Some(fc("allow-host-ipv6", Policy, Main, "filter", "IN"))
        );
        let mut to_host = fc("public", Zone, Main, "filter", "IN");
        to_host.egress = Some("HOST".into());
        assert_eq!(classify("filter_IN_public_to_HOST"), Some(to_host));
        assert_eq!(
            classify("filter_FWD_public_dispatch_stage2"),
            Some(fc("public", Zone, Dispatch, "filter", "FWD"))
        );
    }

    #[test]
    fn every_recorded_firewalld_chain_is_classified() {
        for step in STEPS {
            let rs = recorded(step);
            for chain in rs.chains.iter().filter(|c| c.table == TABLE) {
                let is_base = chain.base.is_some();
                assert_eq!(classify(&chain.name).is_none(), is_base, "{step}: {}", chain.name);
            }
        }
    }

    #[test]
    fn dispatch_follows_interface_bindings_and_the_default_zone() {
        let base = recorded("00-baseline");
        assert_eq!(
            zone_dispatch(&base),
            [Dispatch {
                zone: "public".into(),
                by: BoundBy::Default,
                chain: "filter_IN_public".into()
            }]
        );
        for step in &STEPS[1..] {
            assert_eq!(
                zone_dispatch(&recorded(step)),
                [
                    Dispatch {
                        zone: "public".into(),
                        by: BoundBy::Interface(SERVER_IF.into()),
                        chain: "filter_IN_public".into()
                    },
                    Dispatch {
                        zone: "public".into(),
                        by: BoundBy::Default,
                        chain: "filter_IN_public".into()
                    },
                ],
                "{step}"
            );
        }
    }

    #[test]
    fn zone_target_default_then_drop_after_reload() {
        for (step, target) in [
            ("00-baseline", Target::Default),
            ("01-add-interface", Target::Default),
            ("02-add-port", Target::Default),
            ("03-add-rich-rules", Target::Default),
            ("04-target-DROP-after-reload", Target::Drop),
            ("05-log-denied-all", Target::Drop),
        ] {
            assert_eq!(zone_target(&recorded(step), "public"), Some(target), "{step}");
        }
        assert_eq!(zone_target(&recorded("03-add-rich-rules"), "trusted"), None);
    }

    /// Concepts of the rules of zone public and filter_INPUT, without handles.
    fn concepts(step: &str) -> Vec<Concept> {
        let rs = recorded(step);
        describe_all(&rs).into_iter().map(|(_, c)| c).filter(|c| *c != Concept::Other).collect()
    }

    fn rich(concepts: &[Concept]) -> Vec<String> {
        concepts
            .iter()
            .filter_map(|c| match c {
                Concept::RichRule { summary, .. } => Some(summary.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn describes_ports_services_targets_and_the_final_reject() {
        let c = concepts("02-add-port");
        let port = |p: &str, proto: &str| Concept::PortAllowed {
            zone: "public".into(),
            port: p.into(),
            proto: proto.into(),
        };
        assert!(c.contains(&port("8080", "tcp")), "{c:#?}");
        assert!(c.contains(&port("22", "tcp")), "ssh's port: {c:#?}");
        assert!(c.contains(&Concept::ServiceRule {
            zone: "public".into(),
            port: "546".into(),
            proto: "udp".into(),
            destination: "fe80::/64".into()
        }));
        assert!(!concepts("01-add-interface").contains(&port("8080", "tcp")));
        assert!(c.contains(&Concept::DefaultReject));
        let target = |t| Concept::ZoneTarget { zone: "public".into(), target: t };
        // target default = the ICMP accept + the reject.
        assert_eq!(c.iter().filter(|x| **x == target(Target::Default)).count(), 2, "{c:#?}");
        assert!(rich(&c).is_empty());
        let dropped = concepts("05-log-denied-all");
        assert_eq!(
            dropped.iter().filter(|x| **x == target(Target::Drop)).count(),
            1,
            "{dropped:#?}"
        );
    }

    #[test]
    fn rich_rules_are_recognised_by_expression_across_a_reload() {
        let expected = [
            format!("source {CLIENT_NET} port 9191/tcp log \"reach-9191 \""),
            format!("source {CLIENT} port 9090/tcp reject tcp-reset"),
            format!("source {CLIENT_NET} port 9191/tcp drop"),
            format!("source {CLIENT_NET} port 9292/tcp accept"),
        ];
        let before = recorded("03-add-rich-rules");
        let after = recorded("04-target-DROP-after-reload");
        // Runtime additions keep their order (log, deny, allow chain, each in the order added).
        assert_eq!(rich(&concepts("03-add-rich-rules")), expected);
        // A reload rebuilds the rules from the permanent configuration, in an order of
        // firewalld's choosing within each chain: compare as sets.
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(rich(&concepts("04-target-DROP-after-reload"))),
            sorted(expected.to_vec())
        );
        // Same concept, different handle: proof that matching does not rely on handles.
        let handle_of = |rs: &Ruleset| {
            describe_all(rs)
                .into_iter()
                .find(|(_, c)| matches!(c, Concept::RichRule { action, .. } if action == "reject tcp-reset"))
                .map(|(r, c)| (r.handle, c))
                .expect("the tcp-reset rich rule")
        };
        let (h3, c3) = handle_of(&before);
        let (h4, c4) = handle_of(&after);
        assert_eq!(c3, c4);
        assert_ne!(h3, h4, "the recording should show a handle change");
        assert_eq!(
            c3,
            Concept::RichRule {
                zone: "public".into(),
                stage: Stage::Deny,
                source: Some(CLIENT.into()),
                port: Some("9090".into()),
                proto: Some("tcp".into()),
                action: "reject tcp-reset".into(),
                summary: expected[1].clone(),
            }
        );
        // 8080 survives the reload too (it was made permanent first).
        assert!(concepts("04-target-DROP-after-reload").contains(&Concept::PortAllowed {
            zone: "public".into(),
            port: "8080".into(),
            proto: "tcp".into()
        }));
    }

    /// The ≥ 2.5 and 2.0–2.4 shapes, built by hand from the assumptions in the module docs.
    #[test]
    fn newer_dispatch_schemes() {
        let rule = |chain: &str, expr: serde_json::Value| serde_json::json!({"rule": {"family": "inet", "table": "firewalld", "chain": chain, "handle": 1, "expr": expr}});
        let chain = |name: &str| serde_json::json!({"chain": {"family": "inet", "table": "firewalld", "name": name, "handle": 1}});
        let iif = |name: &str| serde_json::json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": name}});
        let doc = serde_json::json!({"nftables": [
            chain("filter_INPUT_dispatch"), chain("filter_IN_work_to_HOST"), chain("filter_IN_public_to_HOST"),
            rule("filter_INPUT_dispatch", serde_json::json!([iif("eth1"), {"jump": {"target": "filter_IN_work_to_HOST"}}])),
            rule("filter_INPUT_dispatch", serde_json::json!([{"jump": {"target": "filter_IN_public_to_HOST"}}])),
            rule("filter_IN_work_to_HOST", serde_json::json!([{"jump": {"target": "filter_IN_work"}}])),
            rule("filter_IN_work_to_HOST", serde_json::json!([{"accept": null}])),
            rule("filter_IN_public_to_HOST", serde_json::json!([{"jump": {"target": "filter_IN_public"}}])),
            rule("filter_IN_public_to_HOST", serde_json::json!([{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}])),
        ]});
        let rs = Ruleset::from_value(&doc).expect("ruleset");
        let d = zone_dispatch(&rs);
        assert_eq!(d[0].zone, "work");
        assert_eq!(d[0].by, BoundBy::Interface("eth1".into()));
        assert_eq!(d[1].zone, "public");
        assert_eq!(d[1].by, BoundBy::Default);
        assert_eq!(zone_target(&rs, "work"), Some(Target::Accept));
        assert_eq!(zone_target(&rs, "public"), Some(Target::Reject));

        let doc = serde_json::json!({"nftables": [
            chain("filter_INPUT_POLICIES"), chain("filter_IN_public"),
            rule("filter_INPUT_POLICIES", serde_json::json!([iif("eth0"), {"jump": {"target": "filter_IN_policy_allow-host-ipv6"}}])),
            rule("filter_INPUT_POLICIES", serde_json::json!([iif("eth0"), {"jump": {"target": "filter_IN_public"}}])),
            rule("filter_INPUT_POLICIES", serde_json::json!([iif("eth0"), {"drop": null}])),
        ]});
        let rs = Ruleset::from_value(&doc).expect("ruleset");
        assert_eq!(
            zone_dispatch(&rs),
            [Dispatch {
                zone: "public".into(),
                by: BoundBy::Interface("eth0".into()),
                chain: "filter_IN_public".into()
            }]
        );
        // filter_IN_public has no target rule: the 2.0–2.4 verdict sits in the dispatch chain.
        assert_eq!(zone_target(&rs, "public"), Some(Target::Drop));
    }
}
