//! The interface a rule is specific to: an accept rule meant to let one client through must
//! match the same interface, or it would open the port on every other interface too.
use serde_json::Value;

use super::nftables::Rule;

/// The interface `rule` requires, from its `iifname`/`iif` match (`oifname`/`oif` when
/// `outgoing`, for a rule on the reply's path); None when it matches any interface or only a
/// negation or set of them.
pub fn matched_iface(rule: &Rule, outgoing: bool) -> Option<String> {
    let keys: &[&str] = if outgoing { &["oifname", "oif"] } else { &["iifname", "iif"] };
    rule.matches().find_map(|m| {
        let key = m.get("left")?.get("meta")?.get("key")?.as_str()?;
        let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
        let name = m.get("right")?.as_str()?;
        (keys.contains(&key) && op == "==").then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nftables::Ruleset;

    fn rule(expr: Value) -> Rule {
        let doc = serde_json::json!({"nftables": [{"rule": {"family": "inet", "table": "t",
            "chain": "c", "handle": 2, "expr": expr}}]});
        Ruleset::from_value(&doc).unwrap().rules.remove(0)
    }

    fn meta(key: &str, op: &str, right: Value) -> Value {
        serde_json::json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}})
    }

    #[test]
    fn only_a_positive_match_on_one_interface_counts() {
        let r = rule(serde_json::json!([meta("iifname", "==", "srv0".into()), {"drop": null}]));
        assert_eq!(matched_iface(&r, false).as_deref(), Some("srv0"));
        assert_eq!(matched_iface(&r, true), None, "an input interface is not an output one");
        let out = rule(serde_json::json!([meta("oifname", "==", "eth1".into()), {"drop": null}]));
        assert_eq!(matched_iface(&out, true).as_deref(), Some("eth1"));
        let neg = rule(serde_json::json!([meta("iifname", "!=", "lo".into()), {"drop": null}]));
        assert_eq!(matched_iface(&neg, false), None);
        let set = rule(
            serde_json::json!([meta("iifname", "==", serde_json::json!({"set": ["a", "b"]})), {"drop": null}]),
        );
        assert_eq!(matched_iface(&set, false), None);
        assert_eq!(matched_iface(&rule(serde_json::json!([{"drop": null}])), false), None);
    }
}
