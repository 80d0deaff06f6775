//! Firewall verdicts (issues 6, 13) against real firewalld daemons in a lab namespace, every
//! version of `reach_tests::firewalld_versions` (1.x and 2.x generate different chains): for
//! every case the traced packet is attributed to the zone, target, rich rule or policy that
//! decided it, in firewalld's terms, with the fix — across a reload that renumbers every rule
//! handle — and `reach why`'s printed fix, applied, lets the next attempt in. The root
//! namespace's ruleset is unchanged by the whole suite (compared by hash).
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use reach_agent::{
    firewall::nftables,
    lab::{Firewalld, FirewalldBuild, TwoHosts},
};
use reach_tests::{WatchRun, firewalld_versions, require_root, ruleset::RulesetSnapshot};
use serde_json::Value;

fn connect(hosts: &TwoHosts, addr: SocketAddr) -> std::io::Result<()> {
    hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_millis(900)).map(drop))
        .unwrap()
}

/// The verdict line of the SYN from `client_port`'s connection to `port` (the latest one).
fn verdict(lines: &[Value], port: u16, nth: usize) -> &Value {
    lines
        .iter()
        .filter(|l| l["type"] == "nft_verdict" && l["tuple"]["dport"] == port)
        .nth(nth)
        .unwrap_or_else(|| panic!("no verdict #{nth} for port {port}: {lines:#?}"))
}

#[test]
fn each_firewalld_decision_is_named_with_its_fix() {
    require_root();
    // The root namespace is only read; nft's exit status is checked on every read.
    let root = RulesetSnapshot::take(None);
    for build in firewalld_versions::all() {
        decisions_named_on(&build);
    }
    root.assert_unchanged("the firewalld verdict cases");
}

fn decisions_named_on(build: &FirewalldBuild) {
    eprintln!("--- firewalld {build}");
    let hosts = TwoHosts::new("fwv").unwrap();
    let fw = firewalld_versions::start(&hosts.server, build);
    fw.cmd(&["--zone=public", "--add-interface=srv0"]).unwrap();
    fw.cmd(&["--zone=public", "--add-port=8080/tcp"]).unwrap();
    fw.cmd(&["--zone=public", "--add-rich-rule=rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset"]).unwrap();
    fw.cmd(&["--zone=public", "--add-rich-rule=rule family=ipv4 source address=10.77.0.2 port port=9191 protocol=tcp log prefix=\"reach-test \" drop"]).unwrap();
    // 8080 is allowed, but the server listens on loopback only: the classic seed mistake.
    let _lo = hosts.server.run_in(|| TcpListener::bind(("127.0.0.1", 8080))).unwrap().unwrap();

    let bus = fw.bus_address();
    let run = WatchRun::start(
        &[
            "--json",
            "--netns",
            hosts.server.name(),
            "--firewalld-bus",
            &bus,
            "--port",
            "7777",
            "--port",
            "9090",
            "--port",
            "9191",
            "--port",
            "8080",
        ],
        "added table inet reach_trace",
    );
    let v4 = |p: u16| SocketAddr::from((TwoHosts::SERVER_V4, p));

    // 1. Port not allowed, target default: ICMP admin-prohibited ("no route to host").
    let e = connect(&hosts, v4(7777)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "admin-prohibited: {e}");
    // 2. Rich rule reject type=tcp-reset: connection refused.
    assert_eq!(
        connect(&hosts, v4(9090)).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    // 3. Rich rule log + drop: the client times out.
    assert_eq!(connect(&hosts, v4(9191)).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    // 4. Allowed port, loopback-only server: refused by the stack, not the firewall.
    assert_eq!(
        connect(&hosts, v4(8080)).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    // 5. IPv6 source, same zone, port not allowed.
    // ICMPv6 admin-prohibited: the client gets EACCES. The first IPv6 packet of the lab also
    // resolves neighbours, so this connect gets a longer timeout than the IPv4 ones.
    let v6 = SocketAddr::from((TwoHosts::SERVER_V6, 7777));
    let e6 = hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&v6, Duration::from_secs(3)).map(drop))
        .unwrap()
        .unwrap_err();
    assert_eq!(e6.raw_os_error(), Some(libc::EACCES), "{e6}");
    // 6. Reload with target DROP: every handle changes between two SYNs to the same port.
    fw.cmd(&["--runtime-to-permanent"]).unwrap();
    fw.cmd(&["--permanent", "--zone=public", "--set-target=DROP"]).unwrap();
    fw.cmd(&["--reload"]).unwrap();
    assert_eq!(connect(&hosts, v4(7777)).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    // 7. The interface moves to another zone.
    fw.cmd(&["--zone=internal", "--change-interface=srv0"]).unwrap();
    // Zone internal, port not allowed there either: admin-prohibited again.
    let e = connect(&hosts, v4(7777)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "internal zone rejects: {e}");

    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    drop(fw);

    let fwd = |v: &Value| v["firewalld"].clone();
    let c1 = fwd(verdict(&lines, 7777, 0));
    assert_eq!(
        (c1["zone"].as_str(), c1["action"].as_str()),
        (Some("public"), Some("reject icmpx admin-prohibited")),
        "{c1:#}"
    );
    assert_eq!(
        (c1["concept"]["concept"].as_str(), c1["concept"]["target"].as_str()),
        (Some("zone_target"), Some("default"))
    );
    assert_eq!(c1["fix"][0], "firewall-cmd --zone=public --add-port=7777/tcp");

    let c2 = fwd(verdict(&lines, 9090, 0));
    assert_eq!(
        (c2["concept"]["concept"].as_str(), c2["action"].as_str()),
        (Some("rich_rule"), Some("reject tcp reset")),
        "{c2:#}"
    );
    assert!(c2["summary"].as_str().unwrap().contains("10.77.0.2"), "{c2:#}");
    assert_eq!(
        c2["fix"][0],
        r#"firewall-cmd --zone=public --remove-rich-rule='rule family="ipv4" source address="10.77.0.2" port port="9090" protocol="tcp" reject type="tcp-reset"'"#,
        "the exact rule text from firewalld's D-Bus view: {c2:#}"
    );

    let c3 = fwd(verdict(&lines, 9191, 0));
    assert_eq!(
        (c3["concept"]["concept"].as_str(), c3["action"].as_str()),
        (Some("rich_rule"), Some("drop")),
        "{c3:#}"
    );

    let v8080 = verdict(&lines, 8080, 0);
    assert_eq!(v8080["verdict"], "accept", "the firewall let it in: {v8080:#}");
    let flow = lines
        .iter()
        .find(|l| l["type"] == "flow" && l["server"] == "10.77.0.1:8080")
        .expect("8080 flow");
    assert_eq!(
        (flow["outcome"].as_str(), flow["drop"]["reason"].as_str()),
        (Some("reset"), Some("NO_SOCKET")),
        "{flow:#}"
    );

    let c5 = fwd(lines
        .iter()
        .find(|l| {
            l["type"] == "nft_verdict"
                && l["tuple"]["dport"] == 7777
                && l["tuple"]["saddr"] == TwoHosts::CLIENT_V6.to_string()
        })
        .expect("v6 verdict"));
    assert_eq!(
        (c5["zone"].as_str(), c5["concept"]["target"].as_str()),
        (Some("public"), Some("default")),
        "{c5:#}"
    );

    // The IPv4 SYNs to 7777 in order: reject by target default, then (after the reload that
    // renumbered every handle) drop by target DROP, then (interface moved) zone internal.
    let v4_7777: Vec<Value> = lines
        .iter()
        .filter(|l| {
            l["type"] == "nft_verdict"
                && l["tuple"]["dport"] == 7777
                && l["tuple"]["saddr"] == TwoHosts::CLIENT_V4.to_string()
        })
        .map(fwd)
        .collect();
    let mut phases: Vec<(String, String)> = v4_7777
        .iter()
        .map(|c| {
            (
                c["zone"].as_str().unwrap_or("?").to_string(),
                c["action"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    phases.dedup();
    assert_eq!(
        phases,
        vec![
            ("public".to_string(), "reject icmpx admin-prohibited".to_string()),
            ("public".to_string(), "drop".to_string()),
            ("internal".to_string(), "reject icmpx admin-prohibited".to_string()),
        ],
        "{v4_7777:#?}"
    );
    let after_reload = v4_7777.iter().find(|c| c["action"] == "drop").unwrap();
    assert_eq!(after_reload["concept"]["target"], "drop", "{after_reload:#}");

    // Dropped/rejected flows carry the firewall's verdict.
    let f1 = lines
        .iter()
        .find(|l| l["type"] == "flow" && l["server"] == "10.77.0.1:9191")
        .expect("9191 flow");
    assert_eq!(f1["firewall"]["firewalld"]["concept"]["concept"], "rich_rule", "{f1:#}");
}

/// A fix line as firewall-cmd's arguments. reach's firewalld fixes are `firewall-cmd ARGS…`
/// where at most one argument, a rich rule, is single-quoted (`--remove-rich-rule='…'`).
fn firewall_cmd_args(fix: &str) -> Vec<String> {
    let rest = fix
        .strip_prefix("firewall-cmd ")
        .unwrap_or_else(|| panic!("not a firewall-cmd fix: {fix}"));
    assert!(!rest.contains('#'), "not a precise fix (a comment): {fix}");
    let (plain, quoted) = match rest.split_once("='") {
        Some((head, tail)) => {
            let (words, key) = head.rsplit_once(' ').map_or(("", head), |(w, k)| (w, k));
            let value =
                tail.strip_suffix('\'').unwrap_or_else(|| panic!("unbalanced quote: {fix}"));
            (words.to_string(), Some(format!("{key}={value}")))
        }
        None => (rest.to_string(), None),
    };
    plain.split_whitespace().map(str::to_string).chain(quoted).collect()
}

/// One `reach why` case: a port, what the JSON must name, and whether applying the fix lets
/// the next attempt in.
struct WhyCase {
    port: u16,
    /// `firewall_reject` or `firewall_drop`.
    verdict: &'static str,
    /// `nft.firewalld.concept.concept`, and its zone or policy.
    concept: &'static str,
    owner: (&'static str, &'static str),
    /// The concept's `target`, for zone/policy targets.
    target: Option<&'static str>,
    /// The traced rule's text (`nft.firewalld.rule`).
    rule: String,
    /// The fix's first line.
    fix: String,
}

/// `reach why PORT` while the client dials it once: the JSON diagnosis, and the human one.
fn why_once(hosts: &TwoHosts, fw: &Firewalld, port: u16, json: bool) -> (Value, String) {
    why_attempt(hosts, fw, port, json, false)
}

/// `reach why PORT` while the client dials it once, which must fail (`connects`: succeed):
/// the JSON diagnosis (Null for the human one) and stdout.
fn why_attempt(
    hosts: &TwoHosts,
    fw: &Firewalld,
    port: u16,
    json: bool,
    connects: bool,
) -> (Value, String) {
    let port_s = port.to_string();
    let bus = fw.bus_address();
    let mut args = vec![
        port_s.as_str(),
        "--netns",
        hosts.server.name(),
        "--firewalld-bus",
        &bus,
        "--timeout",
        "20",
    ];
    if json {
        args.push("--json");
    }
    let run = WatchRun::start_command("why", &args, "waiting for a SYN");
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    match connect(hosts, to) {
        Ok(()) => assert!(connects, "port {port} should be blocked before the fix"),
        Err(e) => assert!(!connects, "port {port} should be open: {e}"),
    }
    let (_code, out, stderr) = run.finish_raw();
    if json {
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}\nstderr:\n{stderr}"));
        (v, out)
    } else {
        (Value::Null, out)
    }
}

/// issue 13: zones and policies (ingress public / ANY, egress HOST, targets, rich rules inside
/// a policy, priorities) are named by `reach why` with a fix that, applied to the daemon, lets
/// the next attempt in — on every firewalld version. Where 1.x and 2.x differ, the daemon's own
/// version says which applies.
#[test]
fn why_names_zones_and_policies_and_its_fix_works() {
    require_root();
    let root = RulesetSnapshot::take(None);
    for build in firewalld_versions::all() {
        why_cases_on(&build);
    }
    root.assert_unchanged("the firewalld zone and policy cases");
}

fn why_cases_on(build: &FirewalldBuild) {
    let hosts = TwoHosts::new("fwp").unwrap();
    let fw = firewalld_versions::start(&hosts.server, build);
    // 2.x decides a zone's target in filter_INPUT_POLICIES, matching the binding; 1.x ends the
    // zone's own chain with it (tests/fixtures/firewalld-<version>/rulesets).
    let v2 = !fw.version().starts_with("0.") && !fw.version().starts_with("1.");
    let binding = if v2 { "iifname \"srv0\" " } else { "" };
    let ok = |args: &[&str]| {
        let out = fw.cmd(args).unwrap_or_else(|e| panic!("firewall-cmd {args:?}: {e}"));
        assert_eq!(out.trim(), "success", "firewall-cmd {args:?}");
    };
    let pubhost_reject = "rule family=\"ipv4\" source address=\"10.77.0.2\" port port=\"7171\" protocol=\"tcp\" reject";
    // Policies exist only in the permanent configuration until a reload.
    for args in [
        &["--permanent", "--zone=public", "--add-interface=srv0"][..],
        &["--permanent", "--zone=public", "--add-port=7171/tcp"],
        &[
            "--permanent",
            "--zone=public",
            "--add-rich-rule=rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset",
        ],
        &["--permanent", "--new-policy=pubhost"],
        &["--permanent", "--policy=pubhost", "--add-ingress-zone=public"],
        &["--permanent", "--policy=pubhost", "--add-egress-zone=HOST"],
        &["--permanent", "--policy=pubhost", "--set-priority=-10"],
        &["--permanent", "--policy=pubhost", &format!("--add-rich-rule={pubhost_reject}")],
        &["--permanent", "--new-policy=anyhost"],
        &["--permanent", "--policy=anyhost", "--add-ingress-zone=ANY"],
        &["--permanent", "--policy=anyhost", "--add-egress-zone=HOST"],
        &["--permanent", "--policy=anyhost", "--set-priority=10"],
        &["--permanent", "--policy=anyhost", "--set-target=REJECT"],
        &["--reload"],
    ] {
        ok(args);
    }
    let ports = [7171, 7777, 9090];
    let _listeners: Vec<TcpListener> = hosts
        .server
        .run_in(move || ports.map(|p| TcpListener::bind(("0.0.0.0", p)).unwrap()).into())
        .unwrap();
    let cases = [
        // A rich rule of a policy of priority -10 rejects before the zone's own allowed port.
        WhyCase {
            port: 7171,
            verdict: "firewall_reject",
            concept: "policy_rich_rule",
            owner: ("policy", "pubhost"),
            target: None,
            rule: "ip saddr 10.77.0.2 tcp dport 7171 reject with icmp port-unreachable".into(),
            fix: format!("firewall-cmd --policy=pubhost --remove-rich-rule='{pubhost_reject}'"),
        },
        // A rich rule of the zone.
        WhyCase {
            port: 9090,
            verdict: "firewall_reject",
            concept: "rich_rule",
            owner: ("zone", "public"),
            target: None,
            rule: "ip saddr 10.77.0.2 tcp dport 9090 reject with tcp reset".into(),
            fix: r#"firewall-cmd --zone=public --remove-rich-rule='rule family="ipv4" source address="10.77.0.2" port port="9090" protocol="tcp" reject type="tcp-reset"'"#.into(),
        },
        // Not allowed by the zone: anyhost (ANY → HOST, priority 10) comes after the zone's
        // rules and before its target (2.x: in filter_INPUT_POLICIES; 1.x: the zone's chain
        // jumps to filter_INPUT_POLICIES_post before its target), and its target REJECT decides.
        WhyCase {
            port: 7777,
            verdict: "firewall_reject",
            concept: "policy_target",
            owner: ("policy", "anyhost"),
            target: Some("reject"),
            rule: "reject with icmpx admin-prohibited".into(),
            fix: "firewall-cmd --policy=anyhost --add-port=7777/tcp".into(),
        },
    ];
    let mut human = String::new();
    for c in &cases {
        check_why_case(&hosts, &fw, c, &mut human);
    }
    let listen = |port: u16| {
        hosts.server.run_in(move || TcpListener::bind(("0.0.0.0", port)).unwrap()).unwrap()
    };
    // A rule added to firewalld's table by hand is none of firewalld's concepts, and the
    // configuration accepts the port: the diagnosis says so and gives the exact nft edit.
    // firewalld ≥ 2.0 creates its table with nft's owner flag, and then the kernel refuses
    // the rule: asserted, as what makes the case impossible there.
    ok(&["--zone=public", "--add-port=7783/tcp"]);
    let insert =
        ["insert", "rule", "inet", "firewalld", "filter_INPUT", "tcp", "dport", "7783", "drop"];
    let owned = nftables::read_in(&hosts.server).unwrap().table_owned("inet", "firewalld");
    let _l0 = listen(7783);
    if owned {
        let out = hosts.server.output("nft", &insert).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Operation not permitted"),
            "firewalld {}'s table is owner-flagged, yet `nft {}` gave {}: {stderr}",
            fw.version(),
            insert.join(" "),
            out.status
        );
        eprintln!(
            "firewalld {}: its table is owned, no rule can be added to it by hand",
            fw.version()
        );
    } else {
        hosts.server.run("nft", &insert).unwrap();
        check_unmapped_rule(&hosts, &fw, 7783, &mut human);
    }
    // The zone's own target decides once no policy is in the way: default, then DROP; then a
    // policy of priority -10 with target DROP decides before the zone.
    ok(&["--permanent", "--delete-policy=anyhost"]);
    ok(&["--reload"]);
    let target_case = |port, verdict, owner, concept, target, rule: &str, fix: String| WhyCase {
        port,
        verdict,
        concept,
        owner,
        target: Some(target),
        rule: rule.into(),
        fix,
    };
    let _l1 = listen(7778);
    check_why_case(
        &hosts,
        &fw,
        &target_case(
            7778,
            "firewall_reject",
            ("zone", "public"),
            "zone_target",
            "default",
            &format!("{binding}reject with icmpx admin-prohibited"),
            "firewall-cmd --zone=public --add-port=7778/tcp".into(),
        ),
        &mut human,
    );
    ok(&["--permanent", "--zone=public", "--set-target=DROP"]);
    ok(&["--reload"]);
    let _l2 = listen(7779);
    check_why_case(
        &hosts,
        &fw,
        &target_case(
            7779,
            "firewall_drop",
            ("zone", "public"),
            "zone_target",
            "drop",
            &format!("{binding}drop"),
            "firewall-cmd --zone=public --add-port=7779/tcp".into(),
        ),
        &mut human,
    );
    ok(&["--permanent", "--zone=public", "--set-target=REJECT"]);
    ok(&["--reload"]);
    let _l4 = listen(7781);
    check_why_case(
        &hosts,
        &fw,
        &target_case(
            7781,
            "firewall_reject",
            ("zone", "public"),
            "zone_target",
            "reject",
            &format!("{binding}reject with icmpx admin-prohibited"),
            "firewall-cmd --zone=public --add-port=7781/tcp".into(),
        ),
        &mut human,
    );
    // Target ACCEPT lets everything in: reachable, and both the traced rule and the
    // prediction say the zone's target is why.
    ok(&["--permanent", "--zone=public", "--set-target=ACCEPT"]);
    ok(&["--reload"]);
    let _l5 = listen(7782);
    check_accepted_by_zone_target(&hosts, &fw, 7782, &mut human);
    // A policy of priority -10 decides before the zone, even one that accepts everything.
    ok(&["--permanent", "--policy=pubhost", "--set-target=DROP"]);
    ok(&["--reload"]);
    let _l3 = listen(7780);
    check_why_case(
        &hosts,
        &fw,
        &target_case(
            7780,
            "firewall_drop",
            ("policy", "pubhost"),
            "policy_target",
            "drop",
            "drop",
            "firewall-cmd --policy=pubhost --add-port=7780/tcp".into(),
        ),
        &mut human,
    );
    eprintln!("=== human diagnoses (firewalld {})\n{human}=== end", fw.version());
}

/// A drop by a rule firewalld did not write: named as such with its text, the configuration's
/// accept as evidence, `nft delete rule … handle N` first in the fix; run, the next attempt
/// connects.
fn check_unmapped_rule(hosts: &TwoHosts, fw: &Firewalld, port: u16, human: &mut String) {
    let (v, _) = why_once(hosts, fw, port, true);
    assert_eq!(v["verdict"], "firewall_drop", "{port}: {v:#}");
    let a = &v["nft"]["firewalld"];
    assert_eq!(a["concept"]["concept"], "other", "{port}: {a:#}");
    assert_eq!(a["rule"], format!("tcp dport {port} drop"), "{port}: {a:#}");
    assert_eq!(v["firewalld"]["decision"]["decision"], "accept", "{port}: {v:#}");
    let evidence = v["evidence"].to_string();
    assert!(evidence.contains("cannot map it"), "{port}: {evidence}");
    assert!(evidence.contains("firewalld did not write this rule"), "{port}: {evidence}");
    let fix: Vec<&str> = v["fix"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let delete = fix[0].split("   #").next().unwrap().trim();
    assert!(
        delete.starts_with("nft delete rule inet firewalld filter_INPUT handle "),
        "{port}: {fix:?}"
    );
    let (_, text) = why_once(hosts, fw, port, false);
    human.push_str(&format!("$ reach why {port}   # firewalld {}\n{text}\n", fw.version()));
    // The JSON run's handle: the rule was not touched in between.
    hosts.server.run("sh", &["-c", delete]).unwrap_or_else(|e| panic!("{delete}: {e}"));
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    connect(hosts, to).unwrap_or_else(|e| panic!("{port}: after `{delete}`: {e}"));
}

/// `reach why PORT` while the client connects: reachable, through zone public's target ACCEPT
/// (the traced rule and the prediction agree), with nothing to fix.
fn check_accepted_by_zone_target(hosts: &TwoHosts, fw: &Firewalld, port: u16, human: &mut String) {
    let (v, _) = why_attempt(hosts, fw, port, true, true);
    assert_eq!(v["verdict"], "reachable", "{port}: {v:#}");
    let a = &v["nft"]["firewalld"];
    assert_eq!(
        (&a["concept"]["concept"], &a["concept"]["zone"], &a["concept"]["target"], &a["action"]),
        (
            &Value::from("zone_target"),
            &Value::from("public"),
            &Value::from("accept"),
            &Value::from("accept")
        ),
        "{port}: {a:#}"
    );
    assert_eq!(v["firewalld"]["zone"], "public", "{port}: {v:#}");
    assert_eq!(v["firewalld"]["decision"]["decision"], "accept", "{port}: {v:#}");
    assert_eq!(v["firewalld"]["decision"]["by"], "target ACCEPT", "{port}: {v:#}");
    let (_, text) = why_attempt(hosts, fw, port, false, true);
    human.push_str(&format!("$ reach why {port}   # firewalld {}\n{text}\n", fw.version()));
}

/// Asserts `reach why`'s JSON for `c`, appends its human diagnosis to `human`, applies every
/// line of the printed fix and checks that the next attempt connects.
fn check_why_case(hosts: &TwoHosts, fw: &Firewalld, c: &WhyCase, human: &mut String) {
    let (v, _) = why_once(hosts, fw, c.port, true);
    let port = c.port;
    assert_eq!(v["verdict"], c.verdict, "{port}: {v:#}");
    let a = &v["nft"]["firewalld"];
    assert_eq!(a["concept"]["concept"], c.concept, "{port}: {a:#}");
    assert_eq!(a["concept"][c.owner.0], c.owner.1, "{port}: {a:#}");
    // Zone or policy, the SYN came in through zone public (srv0's binding).
    assert_eq!(a["zone"], "public", "{port}: {a:#}");
    if let Some(t) = c.target {
        assert_eq!(a["concept"]["target"], t, "{port}: {a:#}");
    }
    assert_eq!(a["rule"], c.rule.as_str(), "{port}: {a:#}");
    let fix: Vec<&str> = v["fix"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(fix.first().copied(), Some(c.fix.as_str()), "{port}: {v:#}");
    assert!(
        fix.iter().any(|f| f.starts_with("firewall-cmd --permanent ")),
        "{port}: the --permanent twin: {fix:?}"
    );
    // The prediction from firewalld's D-Bus view agrees on what decides.
    let predicted = v["firewalld"]["fix"][0].as_str();
    assert_eq!(predicted, Some(c.fix.as_str()), "{port}: the prediction: {v:#}");

    let (_, text) = why_once(hosts, fw, c.port, false);
    human.push_str(&format!("$ reach why {port}   # firewalld {}\n{text}\n", fw.version()));

    for f in &fix {
        let args = firewall_cmd_args(f);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = fw.cmd(&args).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(out.trim(), "success", "{f}");
    }
    let to = SocketAddr::from((TwoHosts::SERVER_V4, c.port));
    connect(hosts, to).unwrap_or_else(|e| panic!("{port}: after applying {fix:?}: {e}"));
}
