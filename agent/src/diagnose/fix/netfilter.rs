//! Fixes for `other_netfilter_drop`: the exact command that deletes the deciding rule and the
//! one that accepts just this traffic before it, in the tool that owns the table — `nft` for
//! a plain nftables table, `iptables`/`ip6tables` for a table iptables-nft wrote (an `nft`
//! edit there works until the iptables rules are restored), and Docker's own chains explained
//! in Docker's terms (publish the port, networks) rather than "delete Docker's rule".
//!
//! Each command comes first on its line and any comment after `   # `, so the line can be
//! pasted into a shell as is.
use std::net::IpAddr;

use super::super::NetfilterRule;
use crate::firewall::{docker_chains::DockerChain, iptables_nft::IptablesRule};

pub(super) fn fix(r: &NetfilterRule, port: u16) -> Vec<String> {
    match &r.iptables {
        _ if r.owned => owned(r),
        Some(ipt) => iptables(r, ipt, port),
        None => nft(r, port),
    }
}

/// A table with nft's owner flag refuses every edit but its creator's (EPERM): the change
/// belongs in the program that owns it.
fn owned(r: &NetfilterRule) -> Vec<String> {
    let (f, t, c) = (&r.family, &r.table, &r.chain);
    let at = r.handle.map(|h| format!(" (handle {h})")).unwrap_or_default();
    let mut fix = vec![format!(
        "nft -a list table {f} {t}   # `# progname …` on its first line names the program that \
         owns the table; change the rule in chain {c}{at} through that program (nft's owner \
         flag makes an nft edit fail with EPERM)"
    )];
    if t == "firewalld" {
        fix.push(
            "firewall-cmd --list-all-zones; firewall-cmd --list-all-policies   # the settings \
             firewalld writes its rules from"
                .into(),
        );
    }
    fix
}

/// Words for what the accept admits: "10.0.0.2 to port 80", "replies from port 80".
fn who(r: &NetfilterRule, port: u16) -> String {
    match (r.client, r.reply) {
        (Some(c), false) => format!("this client ({c}) on port {port}"),
        (None, false) => format!("port {port}"),
        (Some(c), true) => format!("the server's replies from port {port} to {c}"),
        (None, true) => format!("the server's replies from port {port}"),
    }
}

/// The client's address, when the table's family can match it (an `ip` table never sees an
/// IPv6 client and the reverse).
fn client_in(r: &NetfilterRule) -> Option<IpAddr> {
    r.client.filter(|c| match r.family.as_str() {
        "ip" => c.is_ipv4(),
        "ip6" => c.is_ipv6(),
        "arp" => false,
        _ => true,
    })
}

/// The nft match for just this traffic, ending in `accept`.
fn nft_accept(r: &NetfilterRule, port: u16) -> String {
    let mut m = Vec::new();
    if let Some(i) = &r.iface {
        m.push(format!("{} \"{i}\"", if r.reply { "oifname" } else { "iifname" }));
    }
    if let Some(c) = client_in(r) {
        let proto = if c.is_ipv4() { "ip" } else { "ip6" };
        m.push(format!("{proto} {} {c}", if r.reply { "daddr" } else { "saddr" }));
    }
    m.push(format!("tcp {} {port}", if r.reply { "sport" } else { "dport" }));
    m.push("accept".into());
    m.join(" ")
}

fn nft(r: &NetfilterRule, port: u16) -> Vec<String> {
    let (f, t, c) = (&r.family, &r.table, &r.chain);
    let who = who(r, port);
    let accept = nft_accept(r, port);
    let mut fix = match r.handle.filter(|_| !r.action.starts_with("policy")) {
        Some(h) => {
            let what = r.rule.as_deref().map(|t| format!(": `{t}`")).unwrap_or_default();
            vec![
                format!("nft delete rule {f} {t} {c} handle {h}   # deletes the rule{what}"),
                format!(
                    "nft insert rule {f} {t} {c} position {h} {accept}   # or keep that rule and \
                     accept {who} before it"
                ),
            ]
        }
        None if r.action.starts_with("policy") => vec![
            format!(
                "nft add rule {f} {t} {c} {accept}   # the chain's policy drops what no rule \
                 accepts: accept {who} at its end"
            ),
            format!(
                "nft chain {f} {t} {c} '{{ policy accept; }}'   # or accept everything no rule \
                 drops (opens the whole chain)"
            ),
        ],
        None => vec![format!("nft insert rule {f} {t} {c} {accept}   # accepts {who} first")],
    };
    fix.push(format!("nft -a list chain {f} {t} {c}   # the chain, with each rule's handle"));
    fix.push(format!(
        "make the change permanent where table {f} {t} comes from (/etc/nftables.conf, or the \
         tool that generates it): reloading that ruleset brings the rule back"
    ));
    fix
}

/// The iptables match for just this traffic, ending in `-j ACCEPT`. In DOCKER-USER the
/// packet was already DNATed to the container's port, so the published port is matched on
/// the connection's original destination (what Docker's documentation recommends).
fn ipt_accept(r: &NetfilterRule, chain: &str, port: u16) -> String {
    let mut m = Vec::new();
    if let Some(i) = &r.iface {
        m.push(format!("{} {i}", if r.reply { "-o" } else { "-i" }));
    }
    if let Some(c) = client_in(r) {
        m.push(format!("{} {c}", if r.reply { "-d" } else { "-s" }));
    }
    let docker_user = DockerChain::of(chain) == Some(DockerChain::User);
    m.push(match (r.reply, docker_user) {
        (false, true) => format!("-p tcp -m conntrack --ctorigdstport {port} --ctdir ORIGINAL"),
        (false, false) => format!("-p tcp --dport {port}"),
        (true, _) => format!("-p tcp --sport {port}"),
    });
    m.push("-j ACCEPT".into());
    m.join(" ")
}

fn iptables(r: &NetfilterRule, ipt: &IptablesRule, port: u16) -> Vec<String> {
    let cmd = match ipt.table.as_str() {
        "filter" => ipt.command.clone(),
        t => format!("{} -t {t}", ipt.command),
    };
    let chain = &ipt.chain;
    let role = DockerChain::of(chain);
    let list =
        format!("{cmd} -S {chain}   # the chain as iptables prints it, rules numbered from 1");
    if let Some(role) = role.filter(|r| *r != DockerChain::User) {
        let mut fix = role.explain(chain, port);
        fix.push(list);
        return fix;
    }
    let who = who(r, port);
    let accept = ipt_accept(r, chain, port);
    let mut fix = match ipt.number {
        Some(n) => {
            let what = ipt.spec.as_deref().map(|s| format!(": `{s}`")).unwrap_or_default();
            vec![
                format!("{cmd} -D {chain} {n}   # deletes rule {n} of chain {chain}{what}"),
                format!("{cmd} -I {chain} {n} {accept}   # or keep it and accept {who} before it"),
            ]
        }
        None if chain == "FORWARD" && ipt.docker => vec![
            format!(
                "{cmd} -I DOCKER-USER {}   # FORWARD's policy drops it (Docker sets the \
                 policy to DROP when it enabled IP forwarding itself): accept {who} in \
                 DOCKER-USER, the chain Docker keeps for your rules",
                ipt_accept(r, "DOCKER-USER", port)
            ),
            format!("or {cmd} -P {chain} ACCEPT   # accepts everything no rule drops"),
        ],
        None => vec![
            format!(
                "{cmd} -A {chain} {accept}   # the chain's policy drops what no rule accepts: \
                 accept {who} at its end"
            ),
            format!("or {cmd} -P {chain} ACCEPT   # accepts everything no rule drops"),
        ],
    };
    fix.push(list);
    let nft_edit = r
        .handle
        .map(|h| format!("`nft delete rule {} {} {chain} handle {h}`", r.family, r.table))
        .unwrap_or_else(|| "an nft edit".into());
    if role == Some(DockerChain::User) {
        fix.push(
            "DOCKER-USER is the chain Docker keeps for your own rules: FORWARD jumps to it before \
             any of Docker's, and Docker never adds to it nor resets it when it restarts — change \
             the rule where you add your DOCKER-USER rules (a script, a systemd unit)"
                .into(),
        );
    } else {
        fix.push(format!(
            "the rule lives in table {} {}, which iptables-nft manages: {nft_edit} works too, but \
             whatever owns these iptables rules (iptables-persistent's /etc/iptables/rules.v{}, \
             ufw, a firewall script) puts it back when it restores them — change it there",
            r.family,
            r.table,
            if r.family == "ip6" { 6 } else { 4 }
        ));
    }
    fix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        family: &str,
        table: &str,
        chain: &str,
        handle: Option<u64>,
        action: &str,
    ) -> NetfilterRule {
        NetfilterRule {
            family: family.into(),
            table: table.into(),
            chain: chain.into(),
            handle,
            rule: handle.map(|_| "tcp dport 8080 drop".into()),
            action: action.into(),
            ..Default::default()
        }
    }

    fn ipt(chain: &str, number: Option<usize>, docker: bool) -> IptablesRule {
        IptablesRule {
            command: "iptables".into(),
            table: "filter".into(),
            chain: chain.into(),
            number,
            spec: number.map(|_| format!("-A {chain} -p tcp -m tcp --dport 8080 -j DROP")),
            nft_warns: false,
            docker,
        }
    }

    #[test]
    fn nft_rule_gets_delete_by_handle_and_a_narrow_insert_before_it() {
        let mut r = rule("inet", "custom", "input", Some(7), "drop");
        r.client = Some("10.0.0.2".parse().unwrap());
        r.iface = Some("eth0".into());
        let fix = fix(&r, 8080);
        assert!(fix[0].starts_with("nft delete rule inet custom input handle 7   # "), "{fix:#?}");
        assert!(fix[0].contains("`tcp dport 8080 drop`"), "{fix:#?}");
        assert!(
            fix[1].starts_with(
                "nft insert rule inet custom input position 7 iifname \"eth0\" ip saddr 10.0.0.2 \
                 tcp dport 8080 accept   # "
            ),
            "{fix:#?}"
        );
        assert!(fix.iter().any(|l| l.starts_with("nft -a list chain inet custom input")));
    }

    #[test]
    fn an_ip6_client_is_matched_with_ip6_and_never_in_an_ip_table() {
        let mut r = rule("inet", "t", "input", Some(3), "drop");
        r.client = Some("fd00::2".parse().unwrap());
        assert!(
            fix(&r, 80)[1].contains(" ip6 saddr fd00::2 tcp dport 80 accept"),
            "{:#?}",
            fix(&r, 80)
        );
        // An ip table cannot match an IPv6 address: the accept stays on the port alone.
        let mut v4 = rule("ip", "t", "input", Some(3), "drop");
        v4.client = Some("fd00::2".parse().unwrap());
        assert!(fix(&v4, 80)[1].contains("position 3 tcp dport 80 accept"), "{:#?}", fix(&v4, 80));
    }

    #[test]
    fn a_reply_rule_matches_the_source_port_and_the_client_as_destination() {
        let mut r = rule("inet", "t", "output", Some(4), "drop");
        r.reply = true;
        r.client = Some("10.0.0.2".parse().unwrap());
        r.iface = Some("eth0".into());
        let f = fix(&r, 8080);
        assert!(
            f[1].contains("position 4 oifname \"eth0\" ip daddr 10.0.0.2 tcp sport 8080 accept"),
            "{f:#?}"
        );
        assert!(!f[1].contains("dport"), "{f:#?}");
        let mut i = r.clone();
        i.iptables = Some(ipt("OUTPUT", Some(1), false));
        let f = fix(&i, 8080);
        assert!(
            f[1].contains("-I OUTPUT 1 -o eth0 -d 10.0.0.2 -p tcp --sport 8080 -j ACCEPT"),
            "{f:#?}"
        );
    }

    #[test]
    fn a_chain_policy_drop_gets_an_appended_accept_or_the_policy_change() {
        let mut r = rule("inet", "t", "input", None, "policy drop");
        r.client = Some("10.0.0.2".parse().unwrap());
        let f = fix(&r, 22);
        assert!(
            f[0].starts_with("nft add rule inet t input ip saddr 10.0.0.2 tcp dport 22 accept"),
            "{f:#?}"
        );
        assert!(f[1].starts_with("nft chain inet t input '{ policy accept; }'"), "{f:#?}");
        assert!(!f[..2].join("\n").contains("handle"), "{f:#?}");
    }

    #[test]
    fn an_iptables_nft_rule_gets_iptables_commands_by_rule_number() {
        let mut r = rule("ip", "filter", "INPUT", Some(12), "drop");
        r.client = Some("10.0.0.2".parse().unwrap());
        r.iptables = Some(ipt("INPUT", Some(2), false));
        let f = fix(&r, 8080);
        assert!(
            f[0].starts_with("iptables -D INPUT 2   # deletes rule 2 of chain INPUT: `-A INPUT"),
            "{f:#?}"
        );
        assert!(
            f[1].starts_with("iptables -I INPUT 2 -s 10.0.0.2 -p tcp --dport 8080 -j ACCEPT   # "),
            "{f:#?}"
        );
        let all = f.join("\n");
        assert!(all.contains("iptables-nft manages") && all.contains("handle 12"), "{all}");
        assert!(!f.iter().any(|l| l.starts_with("nft ")), "{f:#?}");
        // ip6tables, a policy drop, another table.
        let mut p = rule("ip6", "filter", "INPUT", None, "policy drop");
        p.iptables =
            Some(IptablesRule { command: "ip6tables".into(), ..ipt("INPUT", None, false) });
        let f = fix(&p, 80);
        assert!(f[0].starts_with("ip6tables -A INPUT -p tcp --dport 80 -j ACCEPT"), "{f:#?}");
        assert!(f[1].starts_with("or ip6tables -P INPUT ACCEPT"), "{f:#?}");
        let mut raw = rule("ip", "raw", "PREROUTING", Some(2), "drop");
        raw.iptables =
            Some(IptablesRule { table: "raw".into(), ..ipt("PREROUTING", Some(1), false) });
        assert!(
            fix(&raw, 80)[0].starts_with("iptables -t raw -D PREROUTING 1"),
            "{:#?}",
            fix(&raw, 80)
        );
    }

    #[test]
    fn docker_user_rules_are_fixed_in_docker_user_matching_the_published_port() {
        let mut r = rule("ip", "filter", "DOCKER-USER", Some(9), "drop");
        r.iptables = Some(ipt("DOCKER-USER", Some(1), true));
        let f = fix(&r, 8080);
        assert!(f[0].starts_with("iptables -D DOCKER-USER 1"), "{f:#?}");
        assert!(
            f[1].starts_with(
                "iptables -I DOCKER-USER 1 -p tcp -m conntrack --ctorigdstport 8080 --ctdir \
                 ORIGINAL -j ACCEPT"
            ),
            "{f:#?}"
        );
        assert!(f.join("\n").contains("DOCKER-USER is the chain Docker keeps for your own rules"));
    }

    #[test]
    fn dockers_own_chains_are_explained_never_deleted() {
        for chain in ["DOCKER", "DOCKER-ISOLATION-STAGE-2", "DOCKER-INTERNAL", "DOCKER-FORWARD"] {
            let mut r = rule("ip", "filter", chain, Some(5), "drop");
            r.iptables = Some(ipt(chain, Some(1), true));
            let all = fix(&r, 8080).join("\n");
            assert!(all.contains("Docker's own rule") && all.contains("do not delete"), "{all}");
            assert!(!all.contains(" -D ") && !all.contains("nft delete"), "{all}");
        }
        let mut r = rule("ip", "filter", "DOCKER", Some(5), "drop");
        r.iptables = Some(ipt("DOCKER", Some(1), true));
        assert!(fix(&r, 8080).join("\n").contains("docker run -p 8080:8080"));
        // FORWARD's policy in a table with Docker's chains: accept in DOCKER-USER.
        let mut p = rule("ip", "filter", "FORWARD", None, "policy drop");
        p.iptables = Some(ipt("FORWARD", None, true));
        assert!(
            fix(&p, 80)[0].starts_with("iptables -I DOCKER-USER -p tcp -m conntrack"),
            "{:#?}",
            fix(&p, 80)
        );
    }
}
