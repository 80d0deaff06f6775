//! Recognising the tables iptables-nft and ip6tables-nft write, so a fix names the iptables
//! command instead of an `nft` edit the owning tool would undo.
//!
//! nftables itself has no owner mark for them. `nft list ruleset` prints "# Warning: table ip
//! filter is managed by iptables-nft, do not touch!" (nftables src/rule.c `table_print`), but
//! only when a rule of the table holds an xtables compat expression (`table->has_xt_stmts`, set
//! in src/xt.c `netlink_parse_match`/`netlink_parse_target`): a table whose rules iptables-nft
//! translated to native expressions (`-p tcp --dport 8080 -j DROP`) gets no warning at all.
//! What iptables-nft does rely on is the table's shape: it manages only its built-in tables
//! (iptables/nft.c `xtables_ipv4`: filter, nat, mangle, raw, security, the same for ip6), whose
//! base chains carry the upper-case built-in names at the iptables hook priorities, and it
//! refuses anything else ("table `…' is incompatible, use 'nft' tool", `nft_is_table_compatible`).
//! It also puts a counter in every rule it writes. So a table is taken as iptables-nft's when
//! its shape is that of a built-in table and its rules carry iptables-nft's marks (an xt
//! expression, which is nft's own test, or a counter in every rule).
use serde::Serialize;

use super::nftables::{Rule, Ruleset};
use crate::lab::NetNsFd;

/// iptables' built-in tables: base chains as (name, hook, priority), iptables/nft.c
/// `xtables_ipv4` (NF_IP_PRI_* from linux/netfilter_ipv4.h; ip6 uses the same values).
/// A built-in base chain: (name, hook, priority).
type BuiltinChain = (&'static str, &'static str, i64);

const BUILTIN: &[(&str, &[BuiltinChain])] = &[
    ("filter", &[("INPUT", "input", 0), ("FORWARD", "forward", 0), ("OUTPUT", "output", 0)]),
    (
        "nat",
        &[
            ("PREROUTING", "prerouting", -100),
            ("INPUT", "input", 100),
            ("OUTPUT", "output", -100),
            ("POSTROUTING", "postrouting", 100),
        ],
    ),
    (
        "mangle",
        &[
            ("PREROUTING", "prerouting", -150),
            ("INPUT", "input", -150),
            ("FORWARD", "forward", -150),
            ("OUTPUT", "output", -150),
            ("POSTROUTING", "postrouting", -150),
        ],
    ),
    ("raw", &[("PREROUTING", "prerouting", -300), ("OUTPUT", "output", -300)]),
    ("security", &[("INPUT", "input", 50), ("FORWARD", "forward", 50), ("OUTPUT", "output", 50)]),
];

/// The deciding rule seen as iptables sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IptablesRule {
    /// `iptables` or `ip6tables` (`iptables-nft`/`ip6tables-nft` where the plain name is the
    /// legacy variant or absent), the command that owns the table.
    pub command: String,
    /// `filter`, `nat`, …
    pub table: String,
    pub chain: String,
    /// The rule's number in its chain, as `iptables -D CHAIN N` and `-I CHAIN N` count (1-based):
    /// iptables numbers a chain's rules in the order nft lists them. None: the chain's policy.
    pub number: Option<usize>,
    /// The rule as `iptables -S CHAIN` prints it (`-A INPUT -p tcp -m tcp --dport 80 -j DROP`),
    /// when iptables-nft could be asked.
    pub spec: Option<String>,
    /// True when nft itself flags the table ("managed by iptables-nft": an xt expression).
    pub nft_warns: bool,
    /// True when the table holds Docker's chains (DOCKER-USER or DOCKER).
    pub docker: bool,
}

/// True when table `family name` of `rs` is one iptables-nft/ip6tables-nft wrote.
pub fn is_iptables_table(rs: &Ruleset, family: &str, name: &str) -> bool {
    if !matches!(family, "ip" | "ip6") || !rs.has_table(family, name) {
        return false;
    }
    let Some((_, builtin)) = BUILTIN.iter().find(|(t, _)| *t == name) else {
        return false;
    };
    let chains: Vec<_> =
        rs.chains.iter().filter(|c| c.family == family && c.table == name).collect();
    let mut bases = chains.iter().filter_map(|c| c.base.as_ref().map(|b| (c, b))).peekable();
    if bases.peek().is_none() {
        return false;
    }
    let shaped = bases.all(|(c, b)| {
        builtin.iter().any(|(n, hook, prio)| c.name == *n && b.hook == *hook && b.priority == *prio)
    });
    let rules: Vec<&Rule> =
        rs.rules.iter().filter(|r| r.family == family && r.table == name).collect();
    let xt = rules.iter().any(|r| has_xt(r));
    let counted = !rules.is_empty() && rules.iter().all(|r| has(r, "counter"));
    shaped && (xt || counted)
}

/// The rule with `handle` (None: the chain's policy) of an iptables-nft table as iptables
/// sees it; `ns`: the namespace to ask `iptables-nft -S` in for the rule's iptables text.
pub fn describe(
    rs: &Ruleset,
    family: &str,
    table: &str,
    chain: &str,
    handle: Option<u64>,
    ns: Option<&NetNsFd>,
) -> Option<IptablesRule> {
    if !is_iptables_table(rs, family, table) {
        return None;
    }
    let in_chain: Vec<&Rule> = rs.rules_of(family, table, chain).collect();
    let number = match handle {
        Some(h) => Some(in_chain.iter().position(|r| r.handle == h)? + 1),
        None => None,
    };
    let v6 = family == "ip6";
    let spec = match (number, ns) {
        (Some(n), Some(ns)) => spec_of(ns, v6, table, chain, n, in_chain.len()),
        _ => None,
    };
    let docker = ["DOCKER-USER", "DOCKER"].iter().any(|c| rs.chain(family, table, c).is_some());
    Some(IptablesRule {
        command: command_name(v6),
        table: table.into(),
        chain: chain.into(),
        number,
        spec,
        nft_warns: rs.rules.iter().any(|r| r.family == family && r.table == table && has_xt(r)),
        docker,
    })
}

/// Where an iptables-nft `-j DNAT --to-destination ADDR[:PORT]` rule sends a SYN to `dport`,
/// from its iptables text (`iptables-nft -S`, asked in `ns`).
pub fn dnat_destination(
    rs: &Ruleset,
    r: &Rule,
    dport: u16,
    ns: &NetNsFd,
) -> Option<std::net::SocketAddr> {
    if xt_target(r) != Some("DNAT") {
        return None;
    }
    let spec = describe(rs, &r.family, &r.table, &r.chain, Some(r.handle), Some(ns))?.spec?;
    let mut words = spec.split_whitespace();
    words.find(|w| *w == "--to-destination")?;
    let to = words.next()?;
    // ADDR, ADDR:PORT, [V6]:PORT or V6 alone; a range (ADDR-ADDR, PORT-PORT) is not one place.
    if let Ok(a) = to.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    let ip = to.trim_start_matches('[').trim_end_matches(']');
    Some(std::net::SocketAddr::new(ip.parse().ok()?, dport))
}

/// The xtables target a rule ends in (`REJECT`, `MASQUERADE`…), if it is one.
pub fn xt_target(r: &Rule) -> Option<&str> {
    let xt = r.statements().iter().rev().find_map(|s| s.get("xt"))?;
    (xt.get("type")?.as_str()? == "target").then(|| xt.get("name")?.as_str()).flatten()
}

fn has(r: &Rule, key: &str) -> bool {
    r.statements().iter().any(|s| s.get(key).is_some())
}

fn has_xt(r: &Rule) -> bool {
    has(r, "xt")
}

/// Rule `n` of `chain` as `iptables-nft -t TABLE -S CHAIN` prints it (read-only: listing
/// creates no table or chain), checked against the number of rules nft listed so a ruleset
/// changed in between never names the wrong rule.
fn spec_of(
    ns: &NetNsFd,
    v6: bool,
    table: &str,
    chain: &str,
    n: usize,
    count: usize,
) -> Option<String> {
    let tool = if v6 { "ip6tables-nft" } else { "iptables-nft" };
    let out = ns.output(tool, &["-t", table, "-S", chain]).ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("-A {chain} ");
    let rules: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    (rules.len() == count).then(|| rules.get(n - 1).map(|s| s.to_string())).flatten()
}

/// `iptables`/`ip6tables` when that is the nf_tables variant (`iptables -V` says
/// `(nf_tables)`), else the explicit `iptables-nft`/`ip6tables-nft`: a legacy `iptables` would
/// edit other tables than the one that dropped the SYN.
fn command_name(v6: bool) -> String {
    let plain = if v6 { "ip6tables" } else { "iptables" };
    let tool = crate::lab::Tool { name: plain, package: "iptables" };
    let nft_variant = tool.path().ok().and_then(|p| {
        let out = std::process::Command::new(p).arg("-V").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).contains("(nf_tables)"))
    });
    if nft_variant == Some(true) { plain.into() } else { format!("{plain}-nft") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// An xt (xtables compat) statement, as nft -j prints one.
    fn xt_statement(name: &str) -> Value {
        serde_json::json!({"xt": {"type": "target", "name": name}})
    }

    /// `nft -j list ruleset` of a namespace after `iptables-nft -A INPUT -p tcp --dport 8080 -j
    /// DROP` and `-A INPUT -p tcp --dport 8081 -m comment --comment hello -j REJECT`, plus a
    /// hand-written `inet custom` table (iptables-nft 1.8.9, nft 1.0.6).
    fn ruleset(extra_rule: Value) -> Ruleset {
        let mut doc = serde_json::json!({"nftables": [
            {"table": {"family": "ip", "name": "filter", "handle": 1}},
            {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 4}},
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
            {"table": {"family": "inet", "name": "custom", "handle": 3}},
            {"chain": {"family": "inet", "table": "custom", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "custom", "chain": "input", "handle": 2, "expr": [
                {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
        ]});
        doc["nftables"].as_array_mut().unwrap().push(extra_rule);
        Ruleset::from_value(&doc).unwrap()
    }

    fn reject_rule() -> Value {
        serde_json::json!({"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8081}},
            {"xt": {"type": "match", "name": "comment"}},
            {"counter": {"packets": 0, "bytes": 0}}, xt_statement("REJECT")]}})
    }

    #[test]
    fn builtin_table_with_iptables_marks_is_recognised_and_numbers_rules_in_chain_order() {
        let rs = ruleset(reject_rule());
        assert!(is_iptables_table(&rs, "ip", "filter"));
        let d = describe(&rs, "ip", "filter", "INPUT", Some(3), None).unwrap();
        assert_eq!((d.number, d.nft_warns, d.docker), (Some(2), true, true));
        assert_eq!(d.chain, "INPUT");
        let reject = rs.rule_by_handle("ip", "filter", 3).unwrap();
        assert_eq!(xt_target(reject), Some("REJECT"));
        assert_eq!(xt_target(rs.rule_by_handle("ip", "filter", 2).unwrap()), None);
        assert!(d.command.starts_with("iptables"), "{}", d.command);
        let policy = describe(&rs, "ip", "filter", "INPUT", None, None).unwrap();
        assert_eq!(policy.number, None);
    }

    #[test]
    fn native_only_rules_are_recognised_by_their_counters_without_nft_warning() {
        // What ip6tables-nft writes for `-p tcp --dport 8080 -j DROP`: no xt expression, so
        // nft prints no warning, but the table is still ip6tables-nft's.
        let rs =
            ruleset(serde_json::json!({"table": {"family": "ip6", "name": "filter", "handle": 5}}));
        assert!(is_iptables_table(&rs, "ip", "filter"));
        let d = describe(&rs, "ip", "filter", "INPUT", Some(2), None).unwrap();
        assert_eq!((d.number, d.nft_warns), (Some(1), false));
    }

    #[test]
    fn hand_written_tables_are_not_iptables_ones() {
        let rs = ruleset(reject_rule());
        // A non-iptables family and name.
        assert!(!is_iptables_table(&rs, "inet", "custom"));
        assert!(describe(&rs, "inet", "custom", "input", Some(2), None).is_none());
        // `table ip filter` written by hand in nft syntax: lower-case chain names, no counters.
        let hand = Ruleset::from_value(&serde_json::json!({"nftables": [
            {"table": {"family": "ip", "name": "filter", "handle": 1}},
            {"chain": {"family": "ip", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
        ]}))
        .unwrap();
        assert!(!is_iptables_table(&hand, "ip", "filter"));
        // The right chain names but nft-style rules (no counters, no xt): not iptables'.
        let mut nft_style = rs.clone();
        nft_style.rules.retain(|r| r.handle != 3);
        for r in &mut nft_style.rules {
            r.expr = serde_json::json!([{"drop": null}]);
        }
        assert!(!is_iptables_table(&nft_style, "ip", "filter"));
        // A base chain iptables never creates (wrong priority) makes it nft's.
        let mut odd = rs.clone();
        odd.chains[0].base.as_mut().unwrap().priority = 10;
        assert!(!is_iptables_table(&odd, "ip", "filter"));
    }
}
