//! Where destination NAT can send a SYN to a port, read off a ruleset before any SYN comes:
//! every plain `dnat to` reachable from the nat chains a SYN passes (prerouting for a remote
//! client, output for a local one) through rules that can match the port — jumps, gotos and
//! verdict maps (anonymous, or named like kube-proxy's `service-ips`) followed. `reach why`
//! watches the namespaces owning those addresses from the start, so that the first SYN's fate
//! there is seen, not only its retransmissions. Which of them a connection really takes is
//! conntrack's to say afterwards; this is the set it can take.
use std::{collections::HashSet, net::SocketAddr};

use serde_json::Value;

use super::nftables::{Rule, Ruleset, Verdict};

/// The hooks a SYN's destination NAT is decided at.
const DNAT_HOOKS: [&str; 2] = ["prerouting", "output"];

/// Every address a SYN to `dport` can be sent to by a `dnat to` of `rs`, in ruleset order,
/// each once.
pub fn destinations(rs: &Ruleset, dport: u16) -> Vec<SocketAddr> {
    destinations_with(rs, dport, |_| None)
}

/// The same, `xt` telling where an iptables-nft `-j DNAT` rule sends a SYN to `dport` (its
/// `--to-destination`, which only iptables itself lists).
pub fn destinations_with(
    rs: &Ruleset,
    dport: u16,
    xt: impl Fn(&Rule) -> Option<SocketAddr>,
) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for r in dnat_rules(rs, dport, &DNAT_HOOKS) {
        if let Some(to) = r.dnat_target(dport).or_else(|| xt(r))
            && !found.contains(&to)
        {
            found.push(to);
        }
    }
    found
}

/// The `dnat to` rules reached from the nat chains of `hook` that send a SYN to `dport` on to
/// `to`: the rules that can have rewritten a connection conntrack says went there.
pub fn rules_sending<'a>(rs: &'a Ruleset, dport: u16, to: SocketAddr, hook: &str) -> Vec<&'a Rule> {
    dnat_rules(rs, dport, &[hook])
        .into_iter()
        .filter(|r| r.dnat_target(dport) == Some(to))
        .collect()
}

/// The destination-rewriting rules a SYN to `dport` can reach from the nat base chains of
/// `hooks`, following jumps, gotos and verdict maps.
fn dnat_rules<'a>(rs: &'a Ruleset, dport: u16, hooks: &[&str]) -> Vec<&'a Rule> {
    let mut todo: Vec<(&str, &str, &str)> = rs
        .chains
        .iter()
        .filter(|c| {
            c.base.as_ref().is_some_and(|b| b.kind == "nat" && hooks.contains(&b.hook.as_str()))
        })
        .map(|c| (c.family.as_str(), c.table.as_str(), c.name.as_str()))
        .collect();
    let mut seen: HashSet<(&str, &str, &str)> = todo.iter().copied().collect();
    let mut found: Vec<&Rule> = Vec::new();
    // Depth-first from each hook chain in ruleset order (the stack is reversed once).
    todo.reverse();
    while let Some((family, table, chain)) = todo.pop() {
        let mut next_chains = Vec::new();
        for r in rs.rules_of(family, table, chain).filter(|r| may_match_port(r, dport)) {
            if r.is_dnat() && !found.iter().any(|f| std::ptr::eq(*f, r)) {
                found.push(r);
            }
            for next in successors(rs, r, dport) {
                if let Some(c) = rs.chain(family, table, next) {
                    let key = (c.family.as_str(), c.table.as_str(), c.name.as_str());
                    if seen.insert(key) {
                        next_chains.push(key);
                    }
                }
            }
        }
        todo.extend(next_chains.into_iter().rev());
    }
    found
}

/// The chains rule `r` can send a SYN to `dport` on to.
fn successors<'a>(rs: &'a Ruleset, r: &'a Rule, dport: u16) -> Vec<&'a str> {
    let mut next = Vec::new();
    if let Verdict::Jump(c) | Verdict::Goto(c) = &r.verdict {
        next.push(c.as_str());
    }
    for v in r.statements().iter().filter_map(|s| s.get("vmap")) {
        let by_port = mentions_dport(&v["key"]);
        let elements: Vec<(&Value, &Value)> = match &v["data"] {
            Value::String(named) => named
                .strip_prefix('@')
                .and_then(|n| rs.verdict_map(&r.family, &r.table, n))
                .map(|m| m.elements.iter().map(|(k, v)| (k, v)).collect())
                .unwrap_or_default(),
            data => data["set"]
                .as_array()
                .map(|s| s.iter().filter_map(|kv| Some((kv.get(0)?, kv.get(1)?))).collect())
                .unwrap_or_default(),
        };
        for (key, verdict) in elements {
            // A map keyed by the port (alone or in a concatenation) leads on only where the
            // element's key holds this port; one keyed otherwise (numgen, an address) anywhere.
            if by_port && !key_holds(key, dport) {
                continue;
            }
            if let Some(t) = ["jump", "goto"].iter().find_map(|k| verdict[k]["target"].as_str()) {
                next.push(t);
            }
        }
    }
    next
}

/// True unless one of the rule's matches on the destination port excludes `dport`.
fn may_match_port(r: &Rule, dport: u16) -> bool {
    r.matches().all(|m| {
        if !is_dport(&m["left"]) {
            return true;
        }
        let holds = value_holds(&m["right"], dport);
        match m["op"].as_str() {
            Some("!=") => holds == Some(false) || holds.is_none(),
            _ => holds != Some(false),
        }
    })
}

/// `tcp dport` / `th dport`.
fn is_dport(left: &Value) -> bool {
    let p = &left["payload"];
    p["field"] == "dport" && matches!(p["protocol"].as_str(), Some("tcp" | "th"))
}

fn mentions_dport(key: &Value) -> bool {
    is_dport(key) || key["concat"].as_array().is_some_and(|c| c.iter().any(is_dport))
}

/// Whether a match's right-hand side (a port, a set, a range) holds `port`; None when it is
/// something this model cannot judge (a named set).
fn value_holds(v: &Value, port: u16) -> Option<bool> {
    let p = u64::from(port);
    match v {
        Value::Number(n) => Some(n.as_u64() == Some(p)),
        Value::Object(o) if o.contains_key("set") => {
            let items = o["set"].as_array()?;
            Some(items.iter().any(|i| value_holds(i, port) == Some(true)))
        }
        Value::Object(o) if o.contains_key("range") => {
            let r = o["range"].as_array()?;
            Some((r.first()?.as_u64()?..=r.get(1)?.as_u64()?).contains(&p))
        }
        _ => None,
    }
}

/// Whether a verdict map element's key is, or concatenates, `port` (addresses and protocol
/// names are strings, so a number in the key is the port).
fn key_holds(key: &Value, port: u16) -> bool {
    match key["concat"].as_array() {
        Some(parts) => parts.iter().any(|k| value_holds(k, port) == Some(true)),
        None => value_holds(key, port) != Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ruleset as nft 1.0.6 lists it (`nft -j list ruleset`, recorded from
    /// tests/fixtures/nat/ruleset.nft by `cargo xtask record-fixtures`): kube-proxy's layout with its named `service-ips` map,
    /// a NodePort, a port set, numgen endpoint choice; Docker-style `dnat ip to` in an inet
    /// table, IPv6, a redirect and an unrelated port.
    fn recorded() -> Ruleset {
        Ruleset::from_json(include_str!("../../../tests/fixtures/nat/ruleset.json")).unwrap()
    }

    fn to(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn service_ports_lead_to_every_endpoint_of_their_service() {
        let rs = recorded();
        let both = vec![to("172.30.10.2:80"), to("172.30.10.3:80")];
        for port in [80, 30080, 8095] {
            let mut d = destinations(&rs, port);
            d.sort();
            assert_eq!(d, both, "port {port}");
        }
    }

    #[test]
    fn a_published_port_leads_to_its_one_target_and_others_to_nothing() {
        let rs = recorded();
        assert_eq!(destinations(&rs, 8094), vec![to("172.30.0.2:80")]);
        assert_eq!(destinations(&rs, 8096), vec![to("[fd00::2]:80")]);
        // A redirect stays in the namespace: no address to follow.
        assert_eq!(destinations(&rs, 8097), vec![]);
        assert_eq!(destinations(&rs, 9999), vec![], "a regular chain nothing jumps to");
        assert_eq!(destinations(&rs, 22), vec![]);
    }

    /// The rule that sent a connection on is looked for from the hook its SYN passed: both
    /// nat hooks reach kube-proxy's endpoint chains, only prerouting the published ports.
    #[test]
    fn rules_sending_a_port_somewhere_are_found_from_one_hook() {
        let rs = recorded();
        let text = |rules: Vec<&Rule>| rules.iter().map(|r| r.text.clone()).collect::<Vec<_>>();
        for hook in ["prerouting", "output"] {
            let r = rules_sending(&rs, 30080, to("172.30.10.3:80"), hook);
            assert_eq!(text(r), ["meta l4proto tcp dnat to 172.30.10.3:80"], "{hook}");
        }
        let published = rules_sending(&rs, 8094, to("172.30.0.2:80"), "prerouting");
        assert_eq!(text(published), ["tcp dport 8094 dnat ip to 172.30.0.2:80"]);
        assert!(rules_sending(&rs, 8094, to("172.30.0.2:80"), "output").is_empty());
        assert!(rules_sending(&rs, 8094, to("172.30.0.3:80"), "prerouting").is_empty());
    }
}
