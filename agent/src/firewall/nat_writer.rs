//! Who wrote a DNAT rule, in that tool's terms: firewalld (a zone's or a policy's
//! forward-port, or a rich rule's), Docker (a published port in its `DOCKER` chain). kube-proxy's
//! endpoint chains are `kube_proxy.rs`'s. The chain names are the tools' own: firewalld's
//! `nat_PRE_<zone>_<stage>` and `nat_PRE_policy_<policy>_<stage>` (1.x and 2.x alike, as the
//! recordings in tests/fixtures show), Docker's `DOCKER` in the `nat` table iptables-nft writes.

/// One sentence naming what the rule is and how to list it there; None for a rule of no
/// known tool.
pub fn describe(table: &str, chain: &str, published: u16) -> Option<String> {
    match table {
        "firewalld" => firewalld(chain),
        "nat" if chain == "DOCKER" => Some(format!(
            "Docker's published port (`docker ps --filter publish={published}` names the container)"
        )),
        _ => None,
    }
}

fn firewalld(chain: &str) -> Option<String> {
    let rest = chain.strip_prefix("nat_PRE_")?;
    let (owner, stage) = rest.rsplit_once('_')?;
    let (kind, name) = match owner.strip_prefix("policy_") {
        Some(p) => ("policy", p),
        None => ("zone", owner),
    };
    Some(match stage {
        "allow" => format!(
            "firewalld's forward-port of {kind} {name} (`firewall-cmd --{kind}={name} --list-forward-ports`)"
        ),
        "pre" | "log" | "deny" | "post" => format!(
            "a firewalld rich rule's forward-port in {kind} {name} (`firewall-cmd --{kind}={name} --list-rich-rules`)"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tool_that_wrote_the_rule() {
        assert_eq!(
            describe("firewalld", "nat_PRE_public_allow", 8080).as_deref(),
            Some(
                "firewalld's forward-port of zone public (`firewall-cmd --zone=public --list-forward-ports`)"
            )
        );
        assert!(
            describe("firewalld", "nat_PRE_policy_anyhost_allow", 8080)
                .unwrap()
                .contains("policy anyhost")
        );
        assert!(
            describe("firewalld", "nat_PRE_policy_allow-host-ipv6_deny", 1)
                .unwrap()
                .contains("rich rule's forward-port in policy allow-host-ipv6")
        );
        assert!(
            describe("nat", "DOCKER", 8080).unwrap().contains("docker ps --filter publish=8080")
        );
        for (t, c) in [
            ("firewalld", "nat_PREROUTING_ZONES"),
            ("firewalld", "filter_IN_public_allow"),
            ("nat", "PREROUTING"),
            ("t", "DOCKER"),
        ] {
            assert!(describe(t, c, 1).is_none(), "{t} {c}");
        }
    }
}
