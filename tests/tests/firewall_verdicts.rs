//! Firewall verdicts (issue 6) against the installed firewalld (1.x) in a lab namespace: for every
//! case the traced packet is attributed to the zone, target or rich rule that decided it, in
//! firewalld's terms, with the fix — across a reload that renumbers every rule handle. The root
//! namespace's ruleset is unchanged by the whole suite (compared by hash).
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use reach_agent::lab::{Firewalld, TwoHosts};
use reach_tests::{WatchRun, require_root, ruleset::RulesetSnapshot};
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
    let hosts = TwoHosts::new("fwv").unwrap();
    let fw = Firewalld::start(&hosts.server).unwrap();
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

    root.assert_unchanged("the firewalld verdict cases");
}
