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
//!   Policies (1.3.3 with policies, recording 06): `filter_INPUT_POLICIES_pre` (negative
//!   priority) and `_post` (positive) hold `[iifname "X"] jump filter_IN_policy_<name>`, and the
//!   zone's chain jumps to `_pre` first and to `_post` after its stages, before its target — so
//!   policies are met in the same order as in 2.x. A policy's chain is built as in 2.x (below).
//! - 2.0 – 2.4 (verified against firewalld 2.3.1, tests/fixtures/firewalld-2.3.1/, and its
//!   src/firewall/core/nftables.py `build_policy_ingress_egress_pair_rules`,
//!   `build_policy_chain_rules`, `_policy_dispatch_sort_key`; fw_policy.py
//!   `policy_base_chain_name`): every zone is also a policy ("derived from the zone", priority 0)
//!   whose chain keeps the zone's name, `filter_IN_<zone>` with its five stages. `filter_INPUT`
//!   jumps to `filter_INPUT_POLICIES`, which holds, per binding of an ingress zone (`iifname
//!   "X"`, `ip saddr S`, or no match for the default zone's catch-all, last), one `jump` per
//!   policy that applies — real policies `filter_IN_policy_<name>` with ingress zone this zone
//!   or ANY and egress HOST, and the zone's own chain — sorted by policy priority (the zone at
//!   0, so negative-priority policies come before the zone's rules, positive ones after), then
//!   `<binding> <zone target>`: `accept`, `drop` or `reject with icmpx admin-prohibited`
//!   (`default` and `REJECT` alike; `default` alone ends `filter_IN_<zone>` with the ICMP accept
//!   `meta l4proto { icmp, ipv6-icmp } accept`). With `--set-log-denied` a `log prefix
//!   "filter_IN_<zone>_<DROP|REJECT>: "` precedes it. A real policy's target is the last rule
//!   of its own chain (`accept`/`drop`/`reject with icmpx admin-prohibited`; CONTINUE writes
//!   none); its ports and rich rules sit in its `_pre/_log/_deny/_allow/_post` chains as a
//!   zone's do. A rich rule's `family=ipv4` without an address is `meta nfproto ipv4`.
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
    // zone's jump (and the jumps of the policies sorted after it), with the same binding match.
    let rules: Vec<&Rule> = fw_rules(ruleset, POLICIES_IN).collect();
    let main = format!("filter_IN_{zone}");
    let Some(jump) = rules.iter().position(|r| r.verdict == Verdict::Jump(main.clone())) else {
        // The 0.9 shape of `default`: a zone chain without a target rule.
        return chain.map(|_| Target::Default);
    };
    let binding = bound_by(rules[jump]);
    let verdict = rules[jump + 1..]
        .iter()
        .take_while(|r| bound_by(r) == binding)
        .find(|r| r.verdict.is_final());
    Some(binding_target(ruleset, zone, verdict.map(|r| &r.verdict)))
}

/// 2.0–2.4's dispatch chain for packets to this host; also the zones' targets.
const POLICIES_IN: &str = "filter_INPUT_POLICIES";

/// A 2.0–2.4 zone target from the verdict its binding ends with in filter_INPUT_POLICIES.
/// `default` and `REJECT` write the same reject there; `default` alone ends the zone's own
/// chain with the ICMP accept (verified on firewalld 2.3.1, recordings 03 and 09).
fn binding_target(ruleset: &Ruleset, zone: &str, verdict: Option<&Verdict>) -> Target {
    match verdict {
        Some(Verdict::Accept) => Target::Accept,
        Some(Verdict::Drop) => Target::Drop,
        Some(Verdict::Reject { .. }) => {
            if fw_rules(ruleset, &format!("filter_IN_{zone}")).any(is_icmp_accept) {
                Target::Default
            } else {
                Target::Reject
            }
        }
        _ => Target::Default,
    }
}

/// For a final verdict of filter_INPUT_POLICIES (2.0–2.4): the zone whose binding it closes.
/// firewalld sorts that chain by binding (`_policy_dispatch_sort_key`), so a binding's rules —
/// the policies' and the zone's jumps, then the target — are contiguous and share one match.
fn policies_binding_zone(ruleset: &Ruleset, rule: &Rule) -> Option<String> {
    let rules: Vec<&Rule> = fw_rules(ruleset, POLICIES_IN).collect();
    let at = rules.iter().position(|r| r.handle == rule.handle)?;
    let binding = bound_by(rule);
    rules[..at].iter().rev().take_while(|r| bound_by(r) == binding).find_map(|r| {
        let Verdict::Jump(target) = &r.verdict else { return None };
        let fc = classify(target)?;
        (fc.kind == ChainKind::Zone && fc.stage == Stage::Main && fc.hook == "IN")
            .then_some(fc.zone_or_policy)
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
    /// The target of a policy (2.x), the last rule of its `filter_IN_policy_<name>` chain.
    /// `CONTINUE`, the default, writes no rule.
    PolicyTarget {
        policy: String,
        target: Target,
    },
    /// `--policy=P --add-port=PORT/PROTO` (or a service's port) in a policy's _allow chain.
    PolicyPortAllowed {
        policy: String,
        port: String,
        proto: String,
    },
    /// A rich rule in a policy's pre/log/deny/allow/post chain.
    PolicyRichRule {
        policy: String,
        stage: Stage,
        source: Option<String>,
        port: Option<String>,
        proto: Option<String>,
        action: String,
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
    /// `meta nfproto ipv4`: a rich rule's `family=` when it names no address (2.x).
    family: Option<String>,
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
                // A rich rule's `family=ipv4` without an address (2.x writes it so).
                _ if left["meta"]["key"] == "nfproto" => p.family = Some(value),
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
    if let Some(f) = &p.family {
        words.push(format!("family {f}"));
    }
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
    if rule.chain == POLICIES_IN && rule.verdict.is_final() {
        return match policies_binding_zone(ruleset, rule) {
            Some(zone) => Concept::ZoneTarget {
                target: binding_target(ruleset, &zone, Some(&rule.verdict)),
                zone,
            },
            None => Concept::Other,
        };
    }
    let Some(fc) = classify(&rule.chain) else { return Concept::Other };
    if fc.table != "filter" || fc.hook != "IN" {
        return Concept::Other;
    }
    let name = fc.zone_or_policy;
    match (fc.kind, fc.stage) {
        (_, Stage::Dispatch) => Concept::Other,
        (ChainKind::Zone, Stage::Main) => {
            let Some(chain) = target_chain(ruleset, &name) else { return Concept::Other };
            if chain != rule.chain {
                return Concept::Other;
            }
            let final_rule = target_rule(ruleset, &chain);
            if final_rule.is_some_and(|f| f.handle == rule.handle) {
                Concept::ZoneTarget { target: target_of(ruleset, &chain, final_rule), zone: name }
            } else if is_icmp_accept(rule) {
                // Target `default`'s ICMP accept: before the reject (1.x) or instead of it, the
                // reject being in filter_INPUT_POLICIES (2.0–2.4).
                let target = zone_target(ruleset, &name).unwrap_or(Target::Default);
                Concept::ZoneTarget { target, zone: name }
            } else {
                Concept::Other
            }
        }
        (ChainKind::Policy, Stage::Main) => {
            // firewalld's build_policy_chain_rules: a real policy's target is the last rule of
            // its chain, unconditional, after the jumps to its stages.
            let is_target =
                target_rule(ruleset, &rule.chain).is_some_and(|f| f.handle == rule.handle);
            let target = match rule.verdict {
                Verdict::Accept => Target::Accept,
                Verdict::Drop => Target::Drop,
                Verdict::Reject { .. } => Target::Reject,
                _ => return Concept::Other,
            };
            if is_target { Concept::PolicyTarget { policy: name, target } } else { Concept::Other }
        }
        (kind, stage) => stage_rule(kind, name, stage, rule),
    }
}

/// A rule of a zone's or policy's pre/log/deny/allow/post chain.
fn stage_rule(kind: ChainKind, name: String, stage: Stage, rule: &Rule) -> Concept {
    let p = parts(rule);
    let plain = p.source.is_none()
        && p.family.is_none()
        && p.icmp.is_none()
        && p.other.is_empty()
        && p.log.is_none()
        && rule.verdict == Verdict::Accept;
    // A port/service rule is nothing but `[daddr] PROTO dport PORT accept` in _allow;
    // anything more (a source, a log, a limit, a family…) can only come from a rich rule.
    if stage == Stage::Allow
        && plain
        && let (Some(port), Some(proto)) = (&p.port, &p.proto)
    {
        let (port, proto) = (port.clone(), proto.clone());
        return match (kind, &p.destination) {
            (ChainKind::Zone, None) => Concept::PortAllowed { zone: name, port, proto },
            (ChainKind::Zone, Some(d)) => {
                Concept::ServiceRule { zone: name, port, proto, destination: d.clone() }
            }
            (ChainKind::Policy, _) => Concept::PolicyPortAllowed { policy: name, port, proto },
        };
    }
    let action = action(rule, &p);
    let summary = summary(&p, &action);
    match kind {
        ChainKind::Zone => Concept::RichRule {
            zone: name,
            stage,
            summary,
            source: p.source,
            port: p.port,
            proto: p.proto,
            action,
        },
        ChainKind::Policy => Concept::PolicyRichRule {
            policy: name,
            stage,
            summary,
            source: p.source,
            port: p.port,
            proto: p.proto,
            action,
        },
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
    use crate::firewall::fixtures::{CLIENT, CLIENT_NET, SERVER_IF, STEPS, recorded, recorded_in};

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

    /// The ≥ 2.5 shape, built by hand from firewalld's source (no real ≥ 2.5 daemon here).
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
    }

    /// firewalld 2.3.1, recorded from a real daemon (tests/fixtures/firewalld-2.3.1): the steps
    /// of 1.3.3, then policies (06: `pubhost` public → HOST, priority -10, port 7070/tcp and a
    /// rich reject of 7171; `anyhost` ANY → HOST, priority 10, target REJECT, a rich accept of
    /// 7272), 07 pubhost target DROP, 08 zone target ACCEPT (policies CONTINUE), 09 REJECT.
    const V2: &str = "2.3.1";
    const V2_STEPS: &[&str] = &[
        "00-baseline",
        "01-add-interface",
        "02-add-port",
        "03-add-rich-rules",
        "04-target-DROP-after-reload",
        "05-log-denied-all",
        "06-policies",
        "07-policy-target-DROP",
        "08-target-ACCEPT",
        "09-target-REJECT",
    ];

    fn concepts_v2(step: &str) -> Vec<Concept> {
        let rs = recorded_in(V2, step);
        describe_all(&rs).into_iter().map(|(_, c)| c).filter(|c| *c != Concept::Other).collect()
    }

    #[test]
    fn v2_every_recorded_chain_is_classified() {
        for step in V2_STEPS {
            let rs = recorded_in(V2, step);
            for chain in rs.chains.iter().filter(|c| c.table == TABLE) {
                let is_base = chain.base.is_some();
                assert_eq!(classify(&chain.name).is_none(), is_base, "{step}: {}", chain.name);
            }
        }
    }

    #[test]
    fn v2_dispatch_skips_policy_jumps_and_targets_come_from_filter_input_policies() {
        let bound = [
            Dispatch {
                zone: "public".into(),
                by: BoundBy::Interface(SERVER_IF.into()),
                chain: "filter_IN_public".into(),
            },
            Dispatch {
                zone: "public".into(),
                by: BoundBy::Default,
                chain: "filter_IN_public".into(),
            },
        ];
        for step in &V2_STEPS[1..] {
            assert_eq!(zone_dispatch(&recorded_in(V2, step)), bound, "{step}");
        }
        for (step, target) in [
            ("00-baseline", Target::Default),
            ("02-add-port", Target::Default),
            ("03-add-rich-rules", Target::Default),
            ("04-target-DROP-after-reload", Target::Drop),
            ("05-log-denied-all", Target::Drop),
            ("06-policies", Target::Default),
            ("07-policy-target-DROP", Target::Default),
            ("08-target-ACCEPT", Target::Accept),
            ("09-target-REJECT", Target::Reject),
        ] {
            assert_eq!(zone_target(&recorded_in(V2, step), "public"), Some(target), "{step}");
        }
    }

    #[test]
    fn v2_zone_targets_ports_and_rich_rules_are_described() {
        let c = concepts_v2("02-add-port");
        let target = |t| Concept::ZoneTarget { zone: "public".into(), target: t };
        assert!(c.contains(&Concept::PortAllowed {
            zone: "public".into(),
            port: "8080".into(),
            proto: "tcp".into()
        }));
        assert!(c.contains(&Concept::DefaultReject));
        // The zone chain's ICMP accept and the rejects closing both bindings (srv0, catch-all).
        assert_eq!(c.iter().filter(|x| **x == target(Target::Default)).count(), 3, "{c:#?}");
        let expected = [
            format!("source {CLIENT_NET} port 9191/tcp log \"reach-9191 \""),
            format!("source {CLIENT} port 9090/tcp reject tcp-reset"),
            format!("source {CLIENT_NET} port 9191/tcp drop"),
            format!("source {CLIENT_NET} port 9292/tcp accept"),
        ];
        assert_eq!(rich(&concepts_v2("03-add-rich-rules")), expected);
        for (step, t, n) in [
            ("04-target-DROP-after-reload", Target::Drop, 2),
            ("08-target-ACCEPT", Target::Accept, 2),
            ("09-target-REJECT", Target::Reject, 2),
        ] {
            let c = concepts_v2(step);
            assert_eq!(c.iter().filter(|x| **x == target(t)).count(), n, "{step}: {c:#?}");
        }
    }

    #[test]
    fn v2_policies_are_named_with_their_targets_ports_and_rich_rules() {
        let c = concepts_v2("06-policies");
        assert!(
            c.contains(&Concept::PolicyPortAllowed {
                policy: "pubhost".into(),
                port: "7070".into(),
                proto: "tcp".into()
            }),
            "{c:#?}"
        );
        let policy_rich = |policy: &str| -> Vec<String> {
            c.iter()
                .filter_map(|x| match x {
                    Concept::PolicyRichRule { policy: p, summary, .. } if p == policy => {
                        Some(summary.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            policy_rich("pubhost"),
            [format!("source {CLIENT} port 7171/tcp reject icmp-port-unreachable")]
        );
        assert_eq!(policy_rich("anyhost"), ["family ipv4 port 7272/tcp accept"]);
        let target = |p: &str, t| Concept::PolicyTarget { policy: p.into(), target: t };
        assert!(c.contains(&target("anyhost", Target::Reject)), "{c:#?}");
        // CONTINUE writes no rule.
        assert!(
            !c.iter()
                .any(|x| matches!(x, Concept::PolicyTarget { policy, .. } if policy == "pubhost"))
        );
        let dropped = concepts_v2("07-policy-target-DROP");
        assert!(dropped.contains(&target("pubhost", Target::Drop)), "{dropped:#?}");
        // A policy's jump in filter_INPUT_POLICIES is no zone's target.
        assert!(
            !c.iter().any(|x| matches!(x, Concept::ZoneTarget { zone, .. } if zone != "public"))
        );
    }
}
