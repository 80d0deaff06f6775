//! firewalld's configuration changing while `reach watch` runs (issue 13 item 4), against a real
//! firewalld in a lab namespace: a SYN attributed to a rich rule by its exact text (which only
//! firewalld's D-Bus view has), then `firewall-cmd --reload` (every nft handle renumbered), then
//! a firewalld restart (killed, started again on the same private bus), each between two SYNs.
//! Each change is reported as a `firewalld` event and watching goes on; the attribution after
//! each names the same rule by its new handle. The `reads` count of those events shows that
//! firewalld's view is read once per change, never per traced packet; the `ruleset_reads` of
//! the verdict lines, that the namespace's nftables ruleset is read once after each change
//! (NFT_MSG_NEWGEN), never per traced packet. The root namespace's ruleset is unchanged.
//!
//! The same changes while `reach why` waits and under `reach agent --json` follow.
//!
//! Written per firewalld build so the version matrix (`reach_tests::firewalld_versions`) can
//! run it on every version; it runs on the host's package here.
use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use reach_agent::lab::{Firewalld, FirewalldBuild, TwoHosts};
use reach_tests::{WatchRun, firewalld_versions, require_root, ruleset::RulesetSnapshot};
use serde_json::Value;

const PORT: u16 = 9090;

/// The agent watches and traces every namespace, the others' too: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
/// A rich rule that refuses the client's SYNs to PORT, its source spelled `source`.
fn rich(source: &str) -> String {
    format!(
        "rule family=ipv4 source address={source} port port={PORT} protocol=tcp reject type=tcp-reset"
    )
}

/// The fix naming that rule as firewalld's D-Bus view spells it (values quoted): only that
/// view has it, so a fix naming the right one shows the view is current.
fn fix(source: &str) -> String {
    format!(
        r#"firewall-cmd --zone=public --remove-rich-rule='rule family="ipv4" source address="{source}" port port="{PORT}" protocol="tcp" reject type="tcp-reset"'"#
    )
}

/// Three spellings of a source covering the client: one per configuration the test moves
/// through, so a stale view would name the previous one.
const RUNTIME: &str = "10.77.0.2";
const RELOADED: &str = "10.77.0.0/24";
const RESTARTED: &str = "10.77.0.0/16";

/// One refused connection attempt to PORT (the rich rule's tcp-reset).
fn refused(hosts: &TwoHosts) {
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, PORT));
    let r = hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(drop))
        .unwrap();
    assert_eq!(
        r.as_ref().err().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the rich rule's tcp-reset: {r:?}"
    );
}

fn syn_verdicts(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| {
            v["type"] == "nft_verdict" && v["tuple"]["dport"] == PORT && v["reply"] == false
        })
        .cloned()
        .collect()
}

/// The verdicts of SYNs to PORT, once at least `n` were printed.
fn wait_verdicts(run: &WatchRun, n: usize) -> Vec<Value> {
    let what = format!("{n} nft_verdict lines of SYNs to port {PORT}");
    syn_verdicts(&run.wait_for_lines(&what, |l| syn_verdicts(l).len() >= n))
}

/// The first `firewalld` event with this `change`.
fn firewalld_event(run: &WatchRun, change: &str) -> Value {
    let is = |v: &Value| v["type"] == "firewalld" && v["change"] == change;
    let lines = run
        .wait_for_lines(&format!("a firewalld event with change {change:?}"), |l| l.iter().any(is));
    lines.into_iter().find(is).unwrap()
}

/// `firewall-cmd --zone=public ARGS` (`--permanent` too when `permanent`).
fn add(fw: &Firewalld, permanent: bool, args: &[&str]) {
    let p: &[&str] = if permanent { &["--permanent", "--zone=public"] } else { &["--zone=public"] };
    fw.cmd(&[p, args].concat()).unwrap_or_else(|e| panic!("firewall-cmd {p:?} {args:?}: {e}"));
}

fn changes_on(build: FirewalldBuild) {
    require_root();
    let _s = serial();
    let root = RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("fwc").unwrap();
    let mut fw = firewalld_versions::start(&hosts.server, &build);
    // The runtime has one rule, the permanent configuration (what a reload loads) another.
    for permanent in [false, true] {
        add(&fw, permanent, &["--add-interface=srv0"]);
    }
    add(&fw, false, &[&format!("--add-rich-rule={}", rich(RUNTIME))]);
    add(&fw, true, &[&format!("--add-rich-rule={}", rich(RELOADED))]);

    let bus = fw.bus_address();
    let port = PORT.to_string();
    let run = WatchRun::start(
        &["--json", "--netns", hosts.server.name(), "--firewalld-bus", &bus, "--port", &port],
        "read firewalld ",
    );
    assert!(
        run.stderr().contains(&format!("read firewalld {}'s configuration", fw.version())),
        "the announcement names the daemon's version:\n{}",
        run.stderr()
    );

    // Three SYNs, each attributed to the runtime rule by its exact text.
    for _ in 0..3 {
        refused(&hosts);
    }
    let before = wait_verdicts(&run, 3);
    for v in &before {
        assert_eq!(v["firewalld"]["fix"][0], fix(RUNTIME), "named from firewalld's view: {v:#}");
        // The ruleset was read for the first of them and kept: no change came in between.
        assert_eq!(v["ruleset_reads"], 1, "one nftables read for three SYNs: {v:#}");
    }

    // Reload: reported once its view is read again. That is the run's second read: the three
    // SYNs before it read nothing.
    fw.cmd(&["--reload"]).unwrap();
    let reloaded = firewalld_event(&run, "reloaded");
    assert_eq!(
        (reloaded["view"].as_bool(), reloaded["version"].as_str(), reloaded["reads"].as_u64()),
        (Some(true), Some(fw.version()), Some(2)),
        "{reloaded:#}"
    );
    assert_eq!(reloaded["signal"], "Reloaded");
    refused(&hosts);
    let after_reload = wait_verdicts(&run, 4)[3].clone();
    assert_eq!(after_reload["firewalld"]["fix"][0], fix(RELOADED), "{after_reload:#}");
    assert_ne!(
        after_reload["rule_handle"], before[0]["rule_handle"],
        "the reload renumbers firewalld's rules, and the attribution follows: {after_reload:#}"
    );
    assert_eq!(after_reload["firewalld"]["zone"], "public", "{after_reload:#}");
    assert_eq!(
        after_reload["ruleset_reads"], 2,
        "the reload's new generation is read once: {after_reload:#}"
    );

    // Restart on another permanent configuration: the name loses its owner, then a new
    // daemon takes it and loads that configuration. (Permanent changes are no runtime change:
    // they cause no read.)
    add(&fw, true, &[&format!("--remove-rich-rule={}", rich(RELOADED))]);
    add(&fw, true, &[&format!("--add-rich-rule={}", rich(RESTARTED))]);
    fw.restart().unwrap();
    let stopped = firewalld_event(&run, "stopped");
    assert_eq!(
        (stopped["view"].as_bool(), stopped["signal"].as_str()),
        (Some(false), Some("NameOwnerChanged")),
        "{stopped:#}"
    );
    let started = firewalld_event(&run, "started");
    assert_eq!(
        (started["view"].as_bool(), started["version"].as_str(), started["reads"].as_u64()),
        (Some(true), Some(fw.version()), Some(3)),
        "{started:#}"
    );
    refused(&hosts);
    refused(&hosts);
    for v in &wait_verdicts(&run, 6)[4..] {
        assert_eq!(v["firewalld"]["fix"][0], fix(RESTARTED), "the new daemon's view: {v:#}");
        assert_eq!(v["firewalld"]["zone"], "public", "{v:#}");
        // The restarted daemon wrote its ruleset anew: read once, for both SYNs after it.
        assert_eq!(v["ruleset_reads"], 3, "{v:#}");
    }

    // A runtime change without a reload (firewall-cmd signals it) is read too.
    add(&fw, false, &[&format!("--remove-rich-rule={}", rich(RESTARTED))]);
    add(&fw, false, &[&format!("--add-rich-rule={}", rich(RUNTIME))]);
    let what = "a firewalld `changed` event after the rich rule was added";
    run.wait_for_lines(what, |l| {
        l.iter().any(|v| {
            v["type"] == "firewalld" && v["signal"] == "RichRuleAdded" && v["view"] == true
        })
    });
    refused(&hosts);
    let last = wait_verdicts(&run, 7)[6].clone();
    assert_eq!(last["firewalld"]["fix"][0], fix(RUNTIME), "{last:#}");
    assert_eq!(last["ruleset_reads"], 4, "{last:#}");

    let (code, lines) = run.stop();
    assert_eq!(code, Some(0), "watching survived the reload, the restart and the change");
    let events: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "firewalld")
        .map(|l| (l["change"].as_str().unwrap(), l["signal"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &events[..3],
        [
            ("reloaded", "Reloaded"),
            ("stopped", "NameOwnerChanged"),
            ("started", "NameOwnerChanged")
        ],
        "{lines:#?}"
    );
    // The two rich-rule signals: one or two reads, depending on whether the second came
    // before the first's read ended.
    assert!(
        events[3..].iter().all(|(c, _)| *c == "changed") && (1..=2).contains(&events[3..].len()),
        "{events:?}"
    );
    drop(fw);
    root.assert_unchanged("firewalld reloads and restarts under reach watch");
}

#[test]
fn reload_and_restart_while_watching_are_reported_and_survived() {
    changes_on(FirewalldBuild::host());
}

#[test]
fn reload_and_restart_while_watching_are_reported_and_survived_on_2x() {
    changes_on(firewalld_versions::trixie());
}

/// The same reload and restart while `reach why` waits for the client: each said on stderr
/// and kept in the report's `changes`; the attempt after them is judged by the restarted
/// daemon's rule — the traced walk and the prediction alike, so no line of the report names a
/// rule of a configuration that is gone.
fn why_on(build: FirewalldBuild) {
    require_root();
    let _s = serial();
    let root = RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("fwy").unwrap();
    let mut fw = firewalld_versions::start(&hosts.server, &build);
    for permanent in [false, true] {
        add(&fw, permanent, &["--add-interface=srv0"]);
    }
    add(&fw, false, &[&format!("--add-rich-rule={}", rich(RUNTIME))]);
    add(&fw, true, &[&format!("--add-rich-rule={}", rich(RESTARTED))]);
    let (bus, port) = (fw.bus_address(), PORT.to_string());
    let run = WatchRun::start_command(
        "why",
        &[
            &port,
            "--netns",
            hosts.server.name(),
            "--firewalld-bus",
            &bus,
            "--timeout",
            "90",
            "--json",
        ],
        "waiting for a SYN",
    );
    fw.cmd(&["--reload"]).unwrap();
    run.wait_for_stderr("the reload said", "firewalld reloaded its configuration");
    fw.restart().unwrap();
    run.wait_for_stderr("the restart said", "firewalld started");
    refused(&hosts);
    let (code, out, err) = run.finish_raw();
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(report["verdict"], "firewall_reject", "{report:#}\n{err}");
    assert_eq!(code, Some(14), "{err}");
    assert_eq!(report["fix"][0], fix(RESTARTED), "the restarted daemon's rule: {report:#}");
    let text = report.to_string();
    assert!(
        !text.contains(&format!("address={RUNTIME} "))
            && !text.contains(&format!("\\\"{RUNTIME}\\\"")),
        "nothing names the runtime rule the reload removed: {report:#}"
    );
    let changes: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "firewalld")
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["reloaded", "stopped", "started"], "{report:#}");
    drop(fw);
    root.assert_unchanged("firewalld reloads and restarts under reach why");
}

#[test]
fn reload_and_restart_while_why_waits_are_said_and_judged_by_the_new_configuration() {
    why_on(FirewalldBuild::host());
}

#[test]
fn reload_and_restart_while_why_waits_are_said_and_judged_by_the_new_configuration_on_2x() {
    why_on(firewalld_versions::trixie());
}

/// firewalld stopped, then started on another configuration, under `reach agent --json`: one
/// `firewalld` line each, and the failed attempt after it is judged by the new daemon's rule.
#[test]
fn firewalld_stopped_and_started_under_the_agent_is_said_and_followed() {
    require_root();
    let _s = serial();
    let root = RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("fwa").unwrap();
    let mut fw = firewalld_versions::start(&hosts.server, &FirewalldBuild::host());
    for permanent in [false, true] {
        add(&fw, permanent, &["--add-interface=srv0"]);
    }
    add(&fw, false, &[&format!("--add-rich-rule={}", rich(RUNTIME))]);
    add(&fw, true, &[&format!("--add-rich-rule={}", rich(RESTARTED))]);
    let (bus, port) = (fw.bus_address(), PORT.to_string());
    let agent = reach_tests::agent_run::AgentRun::start(&[
        "--json",
        "--rescan",
        "1",
        "--no-trace-netns",
        "host",
        "--trace-port",
        &port,
        "--firewalld-bus",
        &bus,
    ]);
    fw.restart().unwrap();
    let is =
        |change: &'static str| move |l: &Value| l["type"] == "firewalld" && l["change"] == change;
    agent.run.wait_for_json("the stop's line", is("stopped"));
    let started = agent.run.wait_for_json("the start's line", is("started"));
    assert_eq!(started["version"], fw.version(), "{started:#}");
    refused(&hosts);
    let failed = agent.run.wait_for_json("the refused attempt", |l| {
        l["type"] == "failed_attempt" && l["netns"]["name"] == hosts.server.name()
    });
    assert_eq!(failed["verdict"], "firewall_reject", "{failed:#}");
    assert!(failed.to_string().contains(RESTARTED), "the new daemon's rule: {failed:#}");
    let (code, _, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    drop(fw);
    root.assert_unchanged("firewalld restarted under reach agent");
}
