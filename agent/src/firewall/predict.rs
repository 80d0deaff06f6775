//! Prediction without traffic: what firewalld does with a TCP SYN, from its configuration
//! alone.
//!
//! Given a [`FirewalldConfig`] (as [`super::firewalld::read`] returns it), [`predict`] walks
//! what firewalld generates for the packet's zone, in order:
//!
//! 1. the active policies with egress zone HOST and ingress zone the packet's zone or ANY, of
//!    negative priority, lowest first (firewalld's `_policy_dispatch_sort_key`; the zone itself
//!    is a policy of priority 0). Each policy's own chains are walked like a zone's (steps
//!    2–6, its ports and services in `_allow`), then its target: ACCEPT/DROP/REJECT decide,
//!    CONTINUE goes on;
//! 2. `filter_IN_<zone>_pre`: rich rules with a negative priority, lowest priority first;
//! 3. `filter_IN_<zone>_log`: log/audit parts of priority-0 rich rules (never decide);
//! 4. `filter_IN_<zone>_deny`: priority-0 rich rules that reject or drop;
//! 5. `filter_IN_<zone>_allow`: ports, protocols, services and priority-0 accepting rich rules;
//! 6. `filter_IN_<zone>_post`: rich rules with a positive priority, lowest first;
//! 7. the policies of positive priority, lowest first, as in step 1 (2.x: the zone's target is
//!    the rule after them in `filter_INPUT_POLICIES`; 1.x: the zone's chain jumps to
//!    `filter_INPUT_POLICIES_post` before its target — both seen on the real daemons, test
//!    `why_names_zones_and_policies_and_its_fix_works`);
//! 8. the zone's target: `default` and `REJECT` → `reject with icmpx admin-prohibited` (default
//!    after accepting ICMP), `DROP` → `drop`, `ACCEPT` → `accept`.
//!
//! The chain placement follows firewalld's `_rich_rule_chain_suffix` (nftables backend) and was
//! checked against the rulesets recorded from firewalld 1.3.3
//! (`tests/fixtures/firewalld-1.3.3/rulesets/03-add-rich-rules.nft`: the tcp-reset and drop
//! rules sit in `_deny`, the accept rule in `_allow` after `tcp dport 8080 accept`, the log part
//! in `_log`).
//!
//! Assumptions and limits (a prediction is only as good as these):
//! - The packet is a new TCP connection (SYN) to a local port; conntrack's
//!   established/related accept and the loopback accept of `filter_INPUT` do not apply.
//! - Policies are matched by ingress/egress zone only (a policy bound to a source or an
//!   interface of another zone does not exist in firewalld); the stock allow-host-ipv6 policy
//!   matches ICMPv6 only and never decides a TCP SYN.
//! - The packet's destination address is unknown, so rich rules with a `destination` and
//!   services restricted to a destination (dhcpv6-client's fe80::/64) are taken not to match.
//!   Likewise rich rules on a MAC or ipset source, or on a source port, are taken not to match.
//! - A rich rule's action `limit` is ignored: the first SYN is within any rate.
//! - `mark` actions, forward-port, masquerade and ICMP elements never decide a SYN's fate here.
//! - A rich rule that does not parse is skipped.
//! - Within `_allow` every entry accepts, so naming the first match (port, then protocol, then
//!   service, then rich rule) does not change the decision, only its explanation.
use std::net::IpAddr;

use serde::Serialize;

use super::firewalld::{
    Action, AddrKind, Element, Family, FirewalldConfig, Policy, RichRule, Target, Zone,
    source_matches,
};

/// The protocol predicted for; the fix commands and port matching use it.
const PROTO: &str = "tcp";

/// How the packet's zone was chosen.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ZoneBy {
    /// A source address/network bound to the zone matched.
    Source,
    /// The arrival interface is bound to the zone.
    Interface,
    /// Neither: the default zone.
    Default,
}

/// What firewalld does with the SYN, and which setting decides.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// `by`: "port 8080/tcp", "protocol tcp", "service <name>", "rich rule <text>" or
    /// "target ACCEPT".
    Accept { by: String },
    /// `by`: "target default", "target REJECT" or "rich rule <text>"; `with`: the reject type
    /// as nft writes it ("icmpx admin-prohibited", "tcp-reset", "icmpx port-unreachable", or a
    /// rich rule's icmp type such as "icmp-host-prohibited").
    Reject { by: String, with: String },
    /// `by`: "target DROP" or "rich rule <text>".
    Drop { by: String },
}

/// A prediction for one SYN.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Prediction {
    pub zone: String,
    pub zone_by: ZoneBy,
    pub decision: Decision,
    /// One human sentence, e.g. "zone public via srv0, target default → reject with icmpx
    /// admin-prohibited; port 8080/tcp not allowed".
    pub reason: String,
    /// Exact shell commands that would let the SYN in (runtime, then permanent); empty when it
    /// is accepted.
    pub fix: Vec<String>,
}

/// What firewalld would do with a TCP SYN from `source` arriving on `iface` to `port`.
pub fn predict(cfg: &FirewalldConfig, iface: &str, source: IpAddr, port: u16) -> Prediction {
    let zone = cfg.zone_for(iface, source);
    let (zone_by, via) = match zone.sources.iter().find(|s| source_matches(s, source) == Some(true))
    {
        Some(spec) => (ZoneBy::Source, format!("via source {spec}")),
        None if zone.interfaces.iter().any(|i| i == iface) => {
            (ZoneBy::Interface, format!("via {iface}"))
        }
        None => (ZoneBy::Default, format!("as the default zone for {iface}")),
    };
    let (decision, why, removed) = decide(cfg, zone, source, port);
    let head = format!("zone {} {via}", zone.name);
    let verdict = verdict_words(&decision);
    let reason = match &why {
        Why::Allowed(what) => format!("{head}, {what} → {verdict}"),
        Why::Target => {
            format!(
                "{head}, target {} → {verdict}; port {port}/{PROTO} not allowed",
                target_name(zone)
            )
        }
        Why::PolicyTarget(p) => format!(
            "{head}, policy {} ({}), target {} → {verdict}; port {port}/{PROTO} not allowed in policy {}",
            p.name,
            policy_words(p),
            p.target,
            p.name
        ),
        Why::Rule { owner, text, chain, allowed } => {
            let mut s = format!(
                "{head}, {}rich rule `{text}` ({chain}) matches {source} → {verdict}",
                owner.words()
            );
            if let Some(a) = allowed {
                s.push_str(&format!(
                    "; it comes before the allow rules, so {a} allowing {port}/{PROTO} does not help"
                ));
            }
            s
        }
    };
    let fix = match (&decision, removed) {
        (Decision::Accept { .. }, _) => vec![],
        (_, Some((owner, rule_text))) => {
            let quoted = shell_quote(&rule_text);
            let flag = owner.flag(&zone.name);
            let mut fix = vec![
                format!("firewall-cmd {flag} --remove-rich-rule={quoted}"),
                format!("firewall-cmd --permanent {flag} --remove-rich-rule={quoted}"),
            ];
            // Without the rule, does something else still stop it? Then fix that too.
            let mut without = cfg.clone();
            match &owner {
                Owner::Zone => {
                    if let Some(z) = without.zones.iter_mut().find(|z| z.name == zone.name) {
                        z.rich_rules.retain(|r| *r != rule_text);
                    }
                }
                Owner::Policy(name) => {
                    if let Some(p) = without.policies.iter_mut().find(|p| p.name == *name) {
                        p.rich_rules.retain(|r| *r != rule_text);
                    }
                }
            }
            fix.extend(predict(&without, iface, source, port).fix);
            fix
        }
        (_, None) => match &why {
            Why::PolicyTarget(p) => vec![
                format!("firewall-cmd --policy={} --add-port={port}/{PROTO}", p.name),
                format!("firewall-cmd --permanent --policy={} --add-port={port}/{PROTO}", p.name),
            ],
            _ => add_port(&zone.name, port),
        },
    };
    Prediction { zone: zone.name.clone(), zone_by, decision, reason, fix }
}

/// Whose rule decided: the zone's own, or a policy's.
#[derive(Clone)]
enum Owner {
    Zone,
    Policy(String),
}

impl Owner {
    fn flag(&self, zone: &str) -> String {
        match self {
            Owner::Zone => format!("--zone={zone}"),
            Owner::Policy(p) => format!("--policy={p}"),
        }
    }

    fn words(&self) -> String {
        match self {
            Owner::Zone => String::new(),
            Owner::Policy(p) => format!("policy {p}, "),
        }
    }
}

/// Why the decision was made, for the reason sentence.
enum Why {
    /// An allow entry (or target ACCEPT), described.
    Allowed(String),
    /// A rich rule decided; `allowed` names an allow entry it overrode.
    Rule { owner: Owner, text: String, chain: &'static str, allowed: Option<String> },
    /// Nothing decided before the zone's (non-accepting) target.
    Target,
    /// A policy's DROP/REJECT target decided.
    PolicyTarget(Policy),
}

type Decided = (Decision, Why, Option<(Owner, String)>);

/// `ingress public → HOST, priority -10`.
fn policy_words(p: &Policy) -> String {
    format!("{} → {}, priority {}", p.ingress_zones.join(","), p.egress_zones.join(","), p.priority)
}

/// The active policies that see a SYN from `zone` to this host, in firewalld's order: policy
/// priority, lowest first (`_policy_dispatch_sort_key` sorts a binding's jumps by it).
fn policies_for<'a>(cfg: &'a FirewalldConfig, zone: &Zone) -> Vec<&'a Policy> {
    let mut out: Vec<&Policy> = cfg
        .policies
        .iter()
        .filter(|p| p.active)
        .filter(|p| p.egress_zones.iter().any(|z| z == "HOST"))
        .filter(|p| p.ingress_zones.iter().any(|z| *z == zone.name || z == "ANY"))
        .collect();
    out.sort_by_key(|p| p.priority);
    out
}

/// The decision, why, and the deciding rich rule (whose, text) when it rejects or drops.
fn decide(cfg: &FirewalldConfig, zone: &Zone, source: IpAddr, port: u16) -> Decided {
    let policies = policies_for(cfg, zone);
    for p in policies.iter().filter(|p| p.priority < 0) {
        if let Some(d) = decide_policy(cfg, p, source, port) {
            return d;
        }
    }
    let allowed = allow_entry(&zone.ports, &zone.protocols, &zone.services, port);
    if let Some(d) = decide_rules(cfg, &Owner::Zone, &zone.rich_rules, allowed, source, port) {
        return d;
    }
    for p in policies.iter().filter(|p| p.priority > 0) {
        if let Some(d) = decide_policy(cfg, p, source, port) {
            return d;
        }
    }
    let decision = match zone.target {
        Target::Accept => Decision::Accept { by: "target ACCEPT".into() },
        Target::Drop => Decision::Drop { by: "target DROP".into() },
        Target::Reject => {
            Decision::Reject { by: "target REJECT".into(), with: "icmpx admin-prohibited".into() }
        }
        Target::Default => {
            Decision::Reject { by: "target default".into(), with: "icmpx admin-prohibited".into() }
        }
    };
    let why = match zone.target {
        Target::Accept => Why::Allowed("target ACCEPT".into()),
        _ => Why::Target,
    };
    (decision, why, None)
}

/// A policy's rules, then its target (CONTINUE: none, the next policy or the zone goes on).
fn decide_policy(cfg: &FirewalldConfig, p: &Policy, source: IpAddr, port: u16) -> Option<Decided> {
    let owner = Owner::Policy(p.name.clone());
    let allowed = allow_entry(&p.ports, &[], &p.services, port).map(|(by, what)| {
        (format!("policy {} {by}", p.name), format!("policy {}: {what}", p.name))
    });
    if let Some(d) = decide_rules(cfg, &owner, &p.rich_rules, allowed, source, port) {
        return Some(d);
    }
    let by = format!("policy {} target {}", p.name, p.target);
    let decision = match p.target.as_str() {
        "ACCEPT" => {
            let why =
                Why::Allowed(format!("policy {} ({}), target ACCEPT", p.name, policy_words(p)));
            return Some((Decision::Accept { by }, why, None));
        }
        "DROP" => Decision::Drop { by },
        "REJECT" | "%%REJECT%%" => Decision::Reject { by, with: "icmpx admin-prohibited".into() },
        _ => return None,
    };
    Some((decision, Why::PolicyTarget(p.clone()), None))
}

/// The rules of one zone's or policy's chains, in firewalld's order (module docs): None when
/// none of them decides.
fn decide_rules(
    cfg: &FirewalldConfig,
    owner: &Owner,
    rich_rules: &[String],
    allowed: Option<(String, String)>,
    source: IpAddr,
    port: u16,
) -> Option<Decided> {
    let rules: Vec<(&String, RichRule)> = rich_rules
        .iter()
        .filter_map(|t| RichRule::parse(t).ok().map(|r| (t, r)))
        .filter(|(_, r)| {
            matches!(r.action, Some(Action::Accept | Action::Drop | Action::Reject(_)))
        })
        .collect();
    let mut pre: Vec<&(&String, RichRule)> = rules.iter().filter(|(_, r)| r.priority < 0).collect();
    pre.sort_by_key(|(_, r)| r.priority);
    let mut post: Vec<&(&String, RichRule)> =
        rules.iter().filter(|(_, r)| r.priority > 0).collect();
    post.sort_by_key(|(_, r)| r.priority);
    let deny = rules.iter().filter(|(_, r)| {
        r.priority == 0 && matches!(r.action, Some(Action::Drop | Action::Reject(_)))
    });
    let allow_rules =
        rules.iter().filter(|(_, r)| r.priority == 0 && matches!(r.action, Some(Action::Accept)));

    let by_rule = |chain: &'static str, text: &String, r: &RichRule| {
        let by = format!("{}rich rule {text}", owner.words());
        let decision = match &r.action {
            Some(Action::Accept) => Decision::Accept { by },
            Some(Action::Drop) => Decision::Drop { by },
            Some(Action::Reject(t)) => {
                Decision::Reject { by, with: reject_with(t.as_deref(), r.family) }
            }
            _ => unreachable!("filtered to accept/drop/reject"),
        };
        let removed =
            (!matches!(decision, Decision::Accept { .. })).then(|| (owner.clone(), text.clone()));
        let overridden = match decision {
            Decision::Accept { .. } => None,
            _ => allowed.as_ref().map(|(_, what)| what.clone()),
        };
        let why = match &decision {
            Decision::Accept { .. } => {
                Why::Allowed(format!("{}rich rule `{text}` matches {source}", owner.words()))
            }
            _ => Why::Rule { owner: owner.clone(), text: text.clone(), chain, allowed: overridden },
        };
        (decision, why, removed)
    };

    for (text, r) in pre {
        if rule_matches(cfg, r, source, port) {
            return Some(by_rule("priority < 0, before everything", text, r));
        }
    }
    for (text, r) in deny {
        if rule_matches(cfg, r, source, port) {
            return Some(by_rule("deny", text, r));
        }
    }
    if let Some((by, what)) = &allowed {
        return Some((
            Decision::Accept { by: by.clone() },
            Why::Allowed(format!("{what} allowed")),
            None,
        ));
    }
    for (text, r) in allow_rules {
        if rule_matches(cfg, r, source, port) {
            return Some(by_rule("allow", text, r));
        }
    }
    for (text, r) in post {
        if rule_matches(cfg, r, source, port) {
            return Some(by_rule("priority > 0, after the allow rules", text, r));
        }
    }
    None
}

/// The allow entry for `port`/tcp among ports, protocols and services: (`by` of the decision,
/// description).
fn allow_entry(
    ports: &[super::firewalld::PortRange],
    protocols: &[String],
    services: &[super::firewalld::Service],
    port: u16,
) -> Option<(String, String)> {
    if let Some(p) = ports.iter().find(|p| p.contains(port, PROTO)) {
        return Some(("port".into(), format!("port {p}")));
    }
    if let Some(p) = protocols.iter().find(|p| p.eq_ignore_ascii_case(PROTO)) {
        return Some((format!("protocol {p}"), format!("protocol {p}")));
    }
    services.iter().filter(|s| s.destination.is_empty()).find_map(|s| {
        s.ports
            .iter()
            .find(|p| p.contains(port, PROTO))
            .map(|p| (format!("service {}", s.name), format!("service {} ({p})", s.name)))
    })
}

/// Whether rich rule `r` matches a TCP SYN from `source` to `port`.
fn rule_matches(cfg: &FirewalldConfig, r: &RichRule, source: IpAddr, port: u16) -> bool {
    let family = if source.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 };
    if r.family.is_some_and(|f| f != family) {
        return false;
    }
    if r.destination.is_some() {
        return false;
    }
    if let Some(src) = &r.source {
        let AddrKind::Address(spec) = &src.kind else { return false };
        // `ip saddr != X` never matches an IPv6 packet: NOT does not cross families.
        let spec_is_v4 = spec.split('/').next().and_then(|a| a.parse::<IpAddr>().ok());
        if spec_is_v4.is_none_or(|a| a.is_ipv4() != source.is_ipv4()) {
            return false;
        }
        if src.matches(source) != Some(true) {
            return false;
        }
    }
    match &r.element {
        None => true,
        Some(Element::Port(p)) => p.contains(port, PROTO),
        Some(Element::Protocol(v)) => v.eq_ignore_ascii_case(PROTO),
        Some(Element::Service(name)) => service_ports(cfg, name)
            .is_some_and(|ports| ports.iter().any(|p| p.contains(port, PROTO))),
        Some(_) => false,
    }
}

/// The ports of service `name`, from any zone or policy that uses it (the config resolves only
/// services in use); None if unknown or restricted to a destination.
fn service_ports(cfg: &FirewalldConfig, name: &str) -> Option<Vec<super::firewalld::PortRange>> {
    cfg.zones
        .iter()
        .flat_map(|z| z.services.iter())
        .chain(cfg.policies.iter().flat_map(|p| p.services.iter()))
        .find(|s| s.name == name && s.unresolved.is_none() && s.destination.is_empty())
        .map(|s| s.ports.clone())
}

/// nft's spelling of a rich rule's reject. A plain `reject` is nft's bare `reject`, which nft
/// resolves by the rule's network layer: `icmp port-unreachable` for a `family=ipv4` rule
/// (`ip saddr …` or `meta nfproto ipv4`, seen on firewalld 2.3.1), `icmpv6` for ipv6,
/// `icmpx` for a rule of both families.
fn reject_with(kind: Option<&str>, family: Option<Family>) -> String {
    match (kind, family) {
        (None, Some(Family::Ipv4)) => "icmp port-unreachable".into(),
        (None, Some(Family::Ipv6)) => "icmpv6 port-unreachable".into(),
        (None, None) => "icmpx port-unreachable".into(),
        (Some("tcp-rst"), _) => "tcp-reset".into(),
        (Some(k), _) => k.into(),
    }
}

fn target_name(zone: &Zone) -> &'static str {
    match zone.target {
        Target::Default => "default",
        Target::Accept => "ACCEPT",
        Target::Drop => "DROP",
        Target::Reject => "REJECT",
    }
}

fn verdict_words(d: &Decision) -> String {
    match d {
        Decision::Accept { .. } => "accept".into(),
        Decision::Reject { with, .. } => format!("reject with {with}"),
        Decision::Drop { .. } => "drop".into(),
    }
}

fn add_port(zone: &str, port: u16) -> Vec<String> {
    vec![
        format!("firewall-cmd --zone={zone} --add-port={port}/{PROTO}"),
        format!("firewall-cmd --permanent --zone={zone} --add-port={port}/{PROTO}"),
    ]
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::firewalld::{Policy, PortRange, Service};

    fn tcp(p: u16) -> PortRange {
        PortRange { start: p, end: p, proto: "tcp".into() }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// public (default zone, srv0, ssh), with `f` applied to it.
    fn config(f: impl FnOnce(&mut Zone)) -> FirewalldConfig {
        let mut public = Zone::new("public");
        public.interfaces = vec!["srv0".into()];
        public.services =
            vec![Service { name: "ssh".into(), ports: vec![tcp(22)], ..Service::default() }];
        public.active = true;
        f(&mut public);
        FirewalldConfig {
            version: "1.3.3".into(),
            state: "RUNNING".into(),
            default_zone: "public".into(),
            zones: vec![public, Zone::new("work")],
            policies: vec![],
            netns_inode: None,
        }
    }

    const CLIENT: &str = "10.77.0.2";
    const RESET_RULE: &str = r#"rule family="ipv4" source address="10.77.0.2" port port="8080" protocol="tcp" reject type="tcp-reset""#;

    #[test]
    fn allowed_port_is_accepted_by_port() {
        let c = config(|z| z.ports = vec![tcp(8080)]);
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.zone, "public");
        assert_eq!(p.zone_by, ZoneBy::Interface);
        assert_eq!(p.decision, Decision::Accept { by: "port".into() });
        assert!(p.fix.is_empty());
        assert_eq!(p.reason, "zone public via srv0, port 8080/tcp allowed → accept");
    }

    #[test]
    fn service_http_covers_80() {
        let c = config(|z| {
            z.services.push(Service {
                name: "http".into(),
                ports: vec![tcp(80)],
                ..Service::default()
            })
        });
        let p = predict(&c, "srv0", ip(CLIENT), 80);
        assert_eq!(p.decision, Decision::Accept { by: "service http".into() });
        assert!(p.fix.is_empty());
    }

    #[test]
    fn default_target_rejects_with_add_port_fix() {
        let c = config(|_| {});
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(
            p.decision,
            Decision::Reject { by: "target default".into(), with: "icmpx admin-prohibited".into() }
        );
        assert_eq!(
            p.reason,
            "zone public via srv0, target default → reject with icmpx admin-prohibited; port 8080/tcp not allowed"
        );
        assert_eq!(
            p.fix,
            [
                "firewall-cmd --zone=public --add-port=8080/tcp",
                "firewall-cmd --permanent --zone=public --add-port=8080/tcp",
            ]
        );
        // Unbound interface: the default zone.
        let p = predict(&c, "eth7", ip(CLIENT), 8080);
        assert_eq!((p.zone.as_str(), p.zone_by), ("public", ZoneBy::Default));
    }

    #[test]
    fn reject_target_rejects() {
        let c = config(|z| z.target = Target::Reject);
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(
            p.decision,
            Decision::Reject { by: "target REJECT".into(), with: "icmpx admin-prohibited".into() }
        );
    }

    #[test]
    fn drop_target_drops_with_add_port_fix() {
        let c = config(|z| z.target = Target::Drop);
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.decision, Decision::Drop { by: "target DROP".into() });
        assert_eq!(p.fix, add_port("public", 8080));
        // The target does not override an allowed port.
        let p = predict(&c, "srv0", ip(CLIENT), 22);
        assert_eq!(p.decision, Decision::Accept { by: "service ssh".into() });
    }

    #[test]
    fn accept_target_accepts() {
        let c = config(|z| z.target = Target::Accept);
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.decision, Decision::Accept { by: "target ACCEPT".into() });
        assert!(p.fix.is_empty());
    }

    #[test]
    fn rich_reject_beats_allowed_port_deny_before_allow() {
        let c = config(|z| {
            z.ports = vec![tcp(8080)];
            z.rich_rules = vec![RESET_RULE.into()];
        });
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(
            p.decision,
            Decision::Reject { by: format!("rich rule {RESET_RULE}"), with: "tcp-reset".into() }
        );
        assert_eq!(
            p.fix,
            [
                format!("firewall-cmd --zone=public --remove-rich-rule='{RESET_RULE}'"),
                format!("firewall-cmd --permanent --zone=public --remove-rich-rule='{RESET_RULE}'"),
            ]
        );
        assert!(p.reason.contains("port 8080/tcp allowing 8080/tcp does not help"), "{}", p.reason);
        // Another source is not matched: the port lets it in.
        let p = predict(&c, "srv0", ip("10.77.0.9"), 8080);
        assert_eq!(p.decision, Decision::Accept { by: "port".into() });
    }

    #[test]
    fn removing_a_rule_that_is_not_the_only_obstacle_also_adds_the_port() {
        let c = config(|z| z.rich_rules = vec![RESET_RULE.into()]);
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.fix.len(), 4, "{:?}", p.fix);
        assert_eq!(p.fix[2..], add_port("public", 8080));
    }

    #[test]
    fn rich_accept_for_one_source_under_drop_target() {
        let rule = r#"rule family="ipv4" source address="10.77.0.2" port port="8080" protocol="tcp" accept"#;
        let c = config(|z| {
            z.target = Target::Drop;
            z.rich_rules = vec![rule.into()];
        });
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.decision, Decision::Accept { by: format!("rich rule {rule}") });
        assert!(p.fix.is_empty());
        let p = predict(&c, "srv0", ip("10.77.0.3"), 8080);
        assert_eq!(p.decision, Decision::Drop { by: "target DROP".into() });
    }

    #[test]
    fn not_source() {
        let rule = r#"rule family="ipv4" source NOT address="10.77.0.0/24" port port="8080" protocol="tcp" drop"#;
        let c = config(|z| {
            z.ports = vec![tcp(8080)];
            z.rich_rules = vec![rule.into()];
        });
        assert_eq!(
            predict(&c, "srv0", ip("192.0.2.7"), 8080).decision,
            Decision::Drop { by: format!("rich rule {rule}") }
        );
        assert_eq!(
            predict(&c, "srv0", ip(CLIENT), 8080).decision,
            Decision::Accept { by: "port".into() }
        );
        // NOT an IPv4 network does not match IPv6 packets (`ip saddr != …`).
        assert_eq!(
            predict(&c, "srv0", ip("fd00:77::2"), 8080).decision,
            Decision::Accept { by: "port".into() }
        );
    }

    #[test]
    fn ipv6_source_is_not_matched_by_ipv4_rule() {
        let rule = r#"rule family="ipv4" port port="8080" protocol="tcp" reject"#;
        let c = config(|z| {
            z.ports = vec![tcp(8080)];
            z.rich_rules = vec![rule.into()];
        });
        assert_eq!(
            predict(&c, "srv0", ip("fd00:77::2"), 8080).decision,
            Decision::Accept { by: "port".into() }
        );
        assert_eq!(
            predict(&c, "srv0", ip(CLIENT), 8080).decision,
            Decision::Reject {
                by: format!("rich rule {rule}"),
                // nft resolves the bare reject of a family=ipv4 rule to icmp.
                with: "icmp port-unreachable".into()
            }
        );
    }

    #[test]
    fn source_zone_wins_over_interface_zone() {
        let mut c = config(|_| {});
        let work = c.zones.iter_mut().find(|z| z.name == "work").expect("work");
        work.sources = vec!["10.77.0.0/24".into()];
        work.ports = vec![tcp(8080)];
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!((p.zone.as_str(), p.zone_by), ("work", ZoneBy::Source));
        assert_eq!(p.decision, Decision::Accept { by: "port".into() });
        assert!(p.reason.starts_with("zone work via source 10.77.0.0/24"), "{}", p.reason);
        let p = predict(&c, "srv0", ip("10.78.0.2"), 8080);
        assert_eq!((p.zone.as_str(), p.zone_by), ("public", ZoneBy::Interface));
    }

    #[test]
    fn priorities_pre_before_deny_and_post_after_allow() {
        let pre_accept = r#"rule priority="-1" family="ipv4" source address="10.77.0.2" accept"#;
        let post_drop = r#"rule priority="5" family="ipv4" port port="8080" protocol="tcp" drop"#;
        let c =
            config(|z| z.rich_rules = vec![RESET_RULE.into(), pre_accept.into(), post_drop.into()]);
        // The negative-priority accept comes before the deny chain's reset.
        assert_eq!(
            predict(&c, "srv0", ip(CLIENT), 8080).decision,
            Decision::Accept { by: format!("rich rule {pre_accept}") }
        );
        // Nothing else matches 10.77.0.9: the post rule drops before the target.
        assert_eq!(
            predict(&c, "srv0", ip("10.77.0.9"), 8080).decision,
            Decision::Drop { by: format!("rich rule {post_drop}") }
        );
    }

    #[test]
    fn rich_rule_by_service_and_log_only_and_destination() {
        let svc = r#"rule family="ipv4" source address="10.77.0.2" service name="ssh" reject type="icmp-host-prohibited""#;
        let dest = r#"rule family="ipv4" destination address="10.77.0.1" port port="22" protocol="tcp" drop"#;
        let c = config(|z| z.rich_rules = vec![dest.into(), svc.into()]);
        assert_eq!(
            predict(&c, "srv0", ip(CLIENT), 22).decision,
            Decision::Reject {
                by: format!("rich rule {svc}"),
                with: "icmp-host-prohibited".into()
            }
        );
        let p = predict(&c, "srv0", ip(CLIENT), 22);
        let json = serde_json::to_value(&p).expect("serializes");
        assert_eq!(json["decision"]["decision"], "reject");
        assert_eq!(json["zone_by"], "interface");
    }

    #[test]
    fn quotes_single_quotes_in_rules() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    /// The policies recorded from firewalld 2.3.1 (tests/fixtures/firewalld-2.3.1, step 06):
    /// pubhost public → HOST at -10 with port 7070 and a rich reject of 7171; anyhost ANY → HOST
    /// at 10, target REJECT, with a rich accept of 7272.
    fn with_policies(version: &str, f: impl FnOnce(&mut Vec<Policy>)) -> FirewalldConfig {
        let mut c = config(|z| z.ports = vec![tcp(8080)]);
        c.version = version.into();
        let policy = |name: &str, ingress: &str, priority, target: &str| Policy {
            name: name.into(),
            target: target.into(),
            priority,
            ingress_zones: vec![ingress.into()],
            egress_zones: vec!["HOST".into()],
            active: true,
            ..Policy::default()
        };
        let mut pubhost = policy("pubhost", "public", -10, "CONTINUE");
        pubhost.ports = vec![tcp(7070)];
        pubhost.rich_rules = vec![PUBHOST_REJECT.into()];
        let mut anyhost = policy("anyhost", "ANY", 10, "REJECT");
        anyhost.rich_rules =
            vec![r#"rule family="ipv4" port port="7272" protocol="tcp" accept"#.into()];
        c.policies = vec![anyhost, pubhost];
        f(&mut c.policies);
        c
    }

    const PUBHOST_REJECT: &str =
        r#"rule family="ipv4" source address="10.77.0.2" port port="7171" protocol="tcp" reject"#;

    #[test]
    fn policies_are_evaluated_by_priority_around_the_zone() {
        let c = with_policies("2.3.1", |_| {});
        let at = |port| predict(&c, "srv0", ip(CLIENT), port);
        assert_eq!(at(7070).decision, Decision::Accept { by: "policy pubhost port".into() });
        assert_eq!(
            at(7171).decision,
            Decision::Reject {
                by: format!("policy pubhost, rich rule {PUBHOST_REJECT}"),
                with: "icmp port-unreachable".into()
            }
        );
        assert_eq!(
            at(7171).fix[..2],
            [
                format!("firewall-cmd --policy=pubhost --remove-rich-rule='{PUBHOST_REJECT}'"),
                format!(
                    "firewall-cmd --permanent --policy=pubhost --remove-rich-rule='{PUBHOST_REJECT}'"
                ),
            ]
        );
        // The zone's own port, before anyhost (priority 10).
        assert_eq!(at(8080).decision, Decision::Accept { by: "port".into() });
        assert!(
            matches!(at(7272).decision, Decision::Accept { ref by } if by.starts_with("policy anyhost, rich rule"))
        );
        // Nothing of the zone matched: anyhost's target REJECT decides before the zone's.
        let p = at(7777);
        assert_eq!(
            p.decision,
            Decision::Reject {
                by: "policy anyhost target REJECT".into(),
                with: "icmpx admin-prohibited".into()
            }
        );
        assert!(
            p.reason.contains("policy anyhost (ANY → HOST, priority 10), target REJECT"),
            "{}",
            p.reason
        );
        assert_eq!(
            p.fix,
            [
                "firewall-cmd --policy=anyhost --add-port=7777/tcp",
                "firewall-cmd --permanent --policy=anyhost --add-port=7777/tcp"
            ]
        );
    }

    #[test]
    fn a_negative_priority_policy_target_comes_before_the_zone() {
        let c = with_policies("2.3.1", |ps| ps[1].target = "DROP".into());
        let p = predict(&c, "srv0", ip(CLIENT), 8080);
        assert_eq!(p.decision, Decision::Drop { by: "policy pubhost target DROP".into() });
        assert_eq!(p.fix[0], "firewall-cmd --policy=pubhost --add-port=8080/tcp");
        // Its own port is accepted before its target.
        let c = with_policies("2.3.1", |ps| ps[1].target = "DROP".into());
        assert_eq!(
            predict(&c, "srv0", ip(CLIENT), 7070).decision,
            Decision::Accept { by: "policy pubhost port".into() }
        );
    }

    #[test]
    fn policies_that_do_not_apply_are_skipped() {
        // Another ingress zone, another egress, or inactive: the zone's target decides.
        for f in [
            (|ps: &mut Vec<Policy>| ps[0].ingress_zones = vec!["work".into()])
                as fn(&mut Vec<Policy>),
            |ps| ps[0].egress_zones = vec!["ANY".into()],
            |ps| ps[0].active = false,
        ] {
            let c = with_policies("2.3.1", f);
            assert_eq!(
                predict(&c, "srv0", ip(CLIENT), 7777).decision,
                Decision::Reject {
                    by: "target default".into(),
                    with: "icmpx admin-prohibited".into()
                }
            );
        }
    }
}
