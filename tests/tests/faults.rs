//! Faults while watching (issue 18, item 2) and start-up refusals: the world changes under a
//! running reach — a watched namespace deleted, an interface removed and another added,
//! `nft flush ruleset` by someone else, a full ring buffer, tracefs unmounted — and `watch`,
//! `why` and `agent` keep going where that makes sense, say what changed in one line (a JSON
//! event with `--json`, `changes` in why's report), and stop cleanly on the next signal with
//! nothing left; what reach cannot run without (kernel BTF, a mechanism the kernel refuses) is
//! refused at start with the fix, a non-zero exit and nothing attached. firewalld stopping,
//! restarting and reloading is in firewalld_changes.rs (a real firewalld per version); `tap`
//! lines under watch in watch_packets.rs, `lost` under watch in bind_listen.rs.
use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::{NetNs, TwoHosts, Veth, VethEnd};
use reach_tests::{
    KillOnDrop, WatchRun,
    agent_run::AgentRun,
    leftovers::{Leftovers, Scope},
    nft_drop_rule, reach_bin, require_root,
};
use serde_json::Value;

/// The tests attach programs the others would count: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A namespace with one end of a veth whose peer (`peer`, 10.78.0.1/24) is in `other`: when
/// the kernel really frees the namespace, the peer goes too.
fn with_peer_in(other: &NetNs, label: &str, peer: &str) -> NetNs {
    let ns = NetNs::new(label).unwrap();
    ns.run(
        "ip",
        &["link", "add", "fx0", "type", "veth", "peer", "name", peer, "netns", other.name()],
    )
    .unwrap();
    ns.run("ip", &["addr", "add", "10.78.0.2/24", "dev", "fx0"]).unwrap();
    ns.run("ip", &["link", "set", "fx0", "up"]).unwrap();
    other.run("ip", &["addr", "add", "10.78.0.1/24", "dev", peer]).unwrap();
    other.run("ip", &["link", "set", peer, "up"]).unwrap();
    ns
}

fn is_gone_line(l: &Value, name: &str) -> bool {
    l["type"] == "netns" && l["change"] == "gone" && l["netns"]["name"] == name
}

#[test]
fn a_watched_namespace_deleted_under_watch_is_let_go_said_once_and_watching_goes_on() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-gone").unwrap();
    let extra = with_peer_in(&hosts.server, "flt-x", "fxp");
    let extra_name = extra.name().to_string();
    let check = Leftovers::snapshot(&Scope {
        netns: Some(&hosts.server),
        ifaces: &[TwoHosts::SERVER_IF, "lo"],
    });
    let run = WatchRun::start(
        &["--json", "--netns", hosts.server.name(), "--netns", &extra_name, "--port", "7941"],
        "watching drops",
    );
    assert!(run.stderr().contains("fxp"), "the peer is tapped: {}", run.stderr());
    extra.remove().unwrap();
    run.wait_for_json("the namespace's gone line", |l| is_gone_line(l, &extra_name));
    // reach let go of it, so the kernel freed it: its veth's peer in the server went too.
    run.wait_for_json("the peer's tap detached", |l| {
        l["type"] == "tap" && l["change"] == "detached" && l["iface"] == "fxp"
    });
    // Still watching the server: a SYN to its closed port is a reset flow.
    let to = SocketAddr::from((TwoHosts::SERVER_V4, 7941));
    let _ = hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    run.wait_for_json("a flow in the namespace still watched", |l| {
        l["type"] == "flow" && l["outcome"] == "reset"
    });
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let gone = lines.iter().filter(|l| is_gone_line(l, &extra_name)).count();
    assert_eq!(gone, 1, "said once");
    check.assert_nothing_new("reach watch after a namespace was deleted under it");
}

#[test]
fn watch_stops_by_itself_when_every_watched_namespace_is_gone() {
    require_root();
    let _s = serial();
    let ns = NetNs::new("flt-only").unwrap();
    ns.run("ip", &["addr", "add", "10.79.0.1/8", "dev", "lo"]).unwrap();
    let name = ns.name().to_string();
    let run = WatchRun::start(&["--json", "--netns", &name, "--port", "7942"], "watching drops");
    ns.remove().unwrap();
    let (code, out, err) = run.finish_raw();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("every watched namespace is gone; stopping"), "{err}");
    let lines = reach_tests::json_lines(&out);
    assert!(lines.iter().any(|l| is_gone_line(l, &name)), "{out}");
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach watch");
}

#[test]
fn why_stops_waiting_when_its_namespace_is_deleted() {
    require_root();
    let _s = serial();
    let ns = NetNs::new("flt-why").unwrap();
    let name = ns.name().to_string();
    let run = WatchRun::start_command(
        "why",
        &["7943", "--netns", &name, "--timeout", "60", "--json"],
        "waiting for a SYN",
    );
    let started = std::time::Instant::now();
    ns.remove().unwrap();
    let (code, out, err) = run.finish_raw();
    assert!(started.elapsed() < Duration::from_secs(30), "why went on waiting: {err}");
    assert!(err.contains(&format!("netns {name} is gone")), "{err}");
    // No SYN came before it went: the verdict says so, and nothing it says blames the path.
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["verdict"], "netns_gone", "{report:#}");
    assert_eq!(code, Some(23), "{err}");
    let text = report.to_string();
    assert!(text.contains(&format!("netns {name} went away while reach waited")), "{report:#}");
    assert!(!text.contains("before this host") && !text.contains("route"), "{report:#}");
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach why");
}

#[test]
fn the_agent_reports_a_namespace_that_goes_in_json() {
    require_root();
    let _s = serial();
    let ns = NetNs::new("flt-agent").unwrap();
    let name = ns.name().to_string();
    let agent = AgentRun::start(&["--json", "--rescan", "1", "--no-trace-netns", "host"]);
    agent.scrape_until("the namespace watched", Duration::from_secs(30), |s| {
        s.text.contains(&format!("netns=\"{name}\""))
    });
    ns.remove().unwrap();
    agent.run.wait_for_json("the namespace's gone line", |l| is_gone_line(l, &name));
    let (code, _) = agent.run.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn nft_flush_ruleset_by_someone_else_leaves_tracing_working() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-flush").unwrap();
    let run = WatchRun::start(
        &["--json", "--netns", hosts.server.name(), "--port", "7944"],
        "watching drops",
    );
    // Someone else's table, flushed away with everything else by someone else.
    hosts.server.run("nft", &["add", "table", "inet", "theirs"]).unwrap();
    hosts.server.run("nft", &["flush", "ruleset"]).unwrap();
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("theirs"), "the flush ran: {tables}");
    // A drop rule added afterwards is still traced to its handle: reach's table survived.
    let handle = nft_drop_rule(&hosts.server, "labfw", 7944);
    let to = SocketAddr::from((TwoHosts::SERVER_V4, 7944));
    let _ = hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)));
    let v = run.wait_for_json("the drop's nft_verdict", |l| {
        l["type"] == "nft_verdict" && l["verdict"] == "drop"
    });
    assert_eq!(
        (v["table"].as_str(), v["rule_handle"].as_u64()),
        (Some("inet labfw"), Some(handle))
    );
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "{tables}");
}

#[test]
fn an_unowned_trace_table_flushed_by_someone_else_is_added_again_and_said() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-unowned").unwrap();
    // The table as a kernel before 5.12 makes it: no owner, so a flush removes it.
    let mut cmd = Command::new(reach_bin());
    cmd.args(["watch", "--json", "--netns", hosts.server.name(), "--port", "7946"])
        .env("REACH_NFT_NO_OWNER", "1");
    let run = WatchRun::start_with(cmd, "watching drops");
    assert!(run.stderr().contains("this kernel has no table owners"), "{}", run.stderr());
    hosts.server.run("nft", &["flush", "ruleset"]).unwrap();
    run.wait_for_json("the table's re-added line", |l| {
        l["type"] == "trace_table" && l["change"] == "re-added"
    });
    // Tracing works again: a drop rule added afterwards is traced to its handle.
    let handle = nft_drop_rule(&hosts.server, "labfw", 7946);
    let to = SocketAddr::from((TwoHosts::SERVER_V4, 7946));
    let _ = hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)));
    let v = run.wait_for_json("the drop's nft_verdict", |l| {
        l["type"] == "nft_verdict" && l["verdict"] == "drop"
    });
    assert_eq!(v["rule_handle"].as_u64(), Some(handle));
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "removed on exit: {tables}");
}

/// A process holding a mount namespace (slave of this one) after running `setup` in it.
fn mount_namespace(setup: &str) -> KillOnDrop {
    use std::io::BufRead as _;
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
        .arg(format!("{setup} && echo ready && exec sleep 600"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare --mount");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "mount namespace set-up `{setup}` failed");
    KillOnDrop(child)
}

fn nsenter_reach(holder: &KillOnDrop, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--mount=/proc/{}/ns/mnt", holder.0.id()))
        .arg("--")
        .arg(reach_bin())
        .args(args);
    cmd
}

#[test]
fn tracefs_unmounted_under_watch_changes_nothing() {
    require_root();
    let _s = serial();
    let ns = NetNs::new("flt-tfs").unwrap();
    // tracefs mounted by someone else than reach (so reach uses it where it is).
    let holder = mount_namespace(
        "grep -q ' /sys/kernel/tracing ' /proc/self/mountinfo || mount -t tracefs tracefs /sys/kernel/tracing",
    );
    let run = WatchRun::start_with(
        nsenter_reach(&holder, &["watch", "--json", "--netns", ns.name()]),
        "watching drops",
    );
    let mnt = format!("/proc/{}/ns/mnt", holder.0.id());
    let st = Command::new("nsenter")
        .args([&format!("--mount={mnt}"), "--", "umount", "-l", "/sys/kernel/tracing"])
        .status()
        .unwrap();
    assert!(st.success(), "umount tracefs in the holder's namespace");
    // What is attached needs tracefs no more: binds still arrive.
    let port = ns
        .run_in(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .unwrap();
    run.wait_for_json("a bind after tracefs went", |l| {
        l["type"] == "bind" && l["bound_port"].as_u64() == Some(port as u64)
    });
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach watch");
}

#[test]
fn no_kernel_btf_is_refused_with_the_fix_and_nothing_attached() {
    require_root();
    let _s = serial();
    // /sys/kernel/btf hidden, as on a kernel built without CONFIG_DEBUG_INFO_BTF.
    let holder = mount_namespace("mount -t tmpfs none /sys/kernel/btf");
    for args in [&["watch", "--duration", "2"][..], &["why", "7945", "--timeout", "2"]] {
        let out = nsenter_reach(&holder, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF=y"), "{args:?} names the fix: {err}");
        reach_tests::leftovers::assert_no_orphaned_programs("reach_", "a refused start");
    }
}

/// The bind/listen modes `reach doctor` says this kernel refuses, and the one it plans.
fn doctor_modes() -> (Vec<String>, String) {
    let out = reach_tests::reach(&["doctor", "--json"]);
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused = ["kprobe", "fentry", "tracepoint"]
        .into_iter()
        .filter(|m| d["capabilities"][m]["available"] == false)
        .map(String::from)
        .collect();
    (refused, d["plan"]["bind"].as_str().unwrap().to_string())
}

#[test]
fn a_forced_mode_the_kernel_refuses_names_the_planned_one_and_attaches_nothing() {
    require_root();
    let _s = serial();
    let (refused, planned) = doctor_modes();
    eprintln!("doctor: refused {refused:?}, planned {planned}");
    for mode in ["kprobe", "fentry", "tracepoint"] {
        let out =
            reach_tests::reach(&["watch", "--no-packets", "--duration", "1", "--attach", mode]);
        let err = String::from_utf8_lossy(&out.stderr);
        if refused.iter().any(|r| r == mode) {
            assert_eq!(out.status.code(), Some(1), "--attach {mode}: {err}");
            assert!(
                err.contains(&format!("leave --attach out (reach then uses {planned} mode")),
                "--attach {mode} names the planned mode: {err}"
            );
        } else {
            // What doctor says works does work.
            assert_eq!(out.status.code(), Some(0), "--attach {mode}: {err}");
        }
        reach_tests::leftovers::assert_no_orphaned_programs("reach_", "--attach {mode}");
    }
}

fn tap_line(l: &Value, change: &str, iface: &str) -> bool {
    l["type"] == "tap" && l["change"] == change && l["iface"] == iface
}

/// The server's veth deleted and another one added while `reach why` waits: the new one is
/// watched (said on stderr, kept in the report's `changes`), and the client coming over it is
/// diagnosed — not taken for a SYN that never reached the host.
#[test]
fn why_follows_an_interface_removed_and_another_added_while_it_waits() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-whyif").unwrap();
    let check = Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &["lo"] });
    let run = WatchRun::start_command(
        "why",
        &["7950", "--netns", hosts.server.name(), "--timeout", "60", "--json"],
        "waiting for a SYN",
    );
    assert!(run.stderr().contains(TwoHosts::SERVER_IF), "{}", run.stderr());
    hosts.server.run("ip", &["link", "del", TwoHosts::SERVER_IF]).unwrap();
    let _new = Veth::create(
        VethEnd::new(&hosts.server, "fnew0").addrs(&["10.80.0.1/24"]),
        VethEnd::new(&hosts.client, "fnew1").addrs(&["10.80.0.2/24"]),
    )
    .unwrap();
    run.wait_for_stderr("the new interface watched", "watching SYNs on fnew0");
    let to = SocketAddr::from(([10, 80, 0, 1], 7950));
    let refused =
        hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    assert!(matches!(refused, Ok(Err(_))), "nothing listens: {refused:?}");
    let (code, out, err) = run.finish_raw();
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(report["verdict"], "no_listener", "{report:#}\n{err}");
    assert_eq!(code, Some(12), "{err}");
    assert_eq!(
        report["path"][1]["name"], "interface fnew0",
        "the SYN came over the new veth: {report:#}"
    );
    let changes = report["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| tap_line(c, "detached", TwoHosts::SERVER_IF)), "{report:#}");
    assert!(changes.iter().any(|c| tap_line(c, "attached", "fnew0")), "{report:#}");
    assert!(
        err.contains(&format!("{} in {} is gone", TwoHosts::SERVER_IF, hosts.server.name())),
        "{err}"
    );
    check.assert_nothing_new("reach why after its interfaces changed under it");
}

/// `nft flush ruleset` by someone else while `reach why` waits, on a kernel without table
/// owners (forced): reach's trace table is added again and said, and the client's SYN dropped
/// by a rule added after the flush is still pinned on that rule.
#[test]
fn why_re_adds_its_flushed_trace_table_and_still_names_the_dropping_rule() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-whyfl").unwrap();
    let mut cmd = Command::new(reach_bin());
    cmd.args(["why", "7952", "--netns", hosts.server.name(), "--timeout", "60", "--json"])
        .env("REACH_NFT_NO_OWNER", "1");
    let run = WatchRun::start_with(cmd, "waiting for a SYN");
    hosts.server.run("nft", &["flush", "ruleset"]).unwrap();
    run.wait_for_stderr("the table's re-added line", "was removed by someone else");
    let handle = nft_drop_rule(&hosts.server, "labfw", 7952);
    let to = SocketAddr::from((TwoHosts::SERVER_V4, 7952));
    let _ = hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)));
    let (code, out, err) = run.finish_raw();
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(report["verdict"], "other_netfilter_drop", "{report:#}\n{err}");
    assert_eq!(code, Some(15));
    assert_eq!(report["nft"]["rule"]["handle"].as_u64(), Some(handle), "{report:#}");
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["type"] == "trace_table" && c["change"] == "re-added"),
        "{report:#}"
    );
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "removed on exit: {tables}");
}

/// The agent under the same faults says each in one JSON line and keeps working: an interface
/// removed and another added (tap lines), its unowned trace table flushed away (re-added line),
/// a full ring buffer (a lost line, and the counter) — then a refused client over the new veth is
/// still judged, and SIGTERM still ends it cleanly with nothing of it left.
#[test]
fn the_agent_says_each_change_in_one_json_line_and_keeps_working() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("flt-agch").unwrap();
    let srv = hosts.server.name().to_string();
    let check = Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &["lo"] });
    let agent = AgentRun::start_env(
        &[
            "--json",
            "--rescan",
            "1",
            "--no-trace-netns",
            "host",
            "--trace-port",
            "7953",
            "--ring-buffer-kib",
            "4",
        ],
        &[("REACH_NFT_NO_OWNER", "1")],
    );
    agent.scrape_until("the namespace watched", Duration::from_secs(30), |s| {
        s.text.contains(&format!("netns=\"{srv}\""))
    });
    reach_tests::wait_until("reach's trace table in the server", Duration::from_secs(10), || {
        hosts.server.run("nft", &["list", "tables"]).unwrap().contains("reach_trace")
    });

    hosts.server.run("ip", &["link", "del", TwoHosts::SERVER_IF]).unwrap();
    agent.run.wait_for_json("the deleted veth's tap line", |l| {
        tap_line(l, "detached", TwoHosts::SERVER_IF) && l["netns"] == srv.as_str()
    });
    let _new = Veth::create(
        VethEnd::new(&hosts.server, "fnew0").addrs(&["10.80.0.1/24"]),
        VethEnd::new(&hosts.client, "fnew1").addrs(&["10.80.0.2/24"]),
    )
    .unwrap();
    agent.run.wait_for_json("the new veth's tap line", |l| tap_line(l, "attached", "fnew0"));

    hosts.server.run("nft", &["flush", "ruleset"]).unwrap();
    agent.run.wait_for_json("the trace table's re-added line", |l| {
        l["type"] == "trace_table"
            && l["change"] == "re-added"
            && l["netns"]["name"] == srv.as_str()
    });

    const BINDS: &str = "20000";
    hosts.server.run(env!("CARGO_BIN_EXE_reach-scenario"), &["burst", BINDS]).unwrap();
    let lost = agent.run.wait_for_json("a lost line", |l| l["type"] == "lost");
    assert!(lost["count"].as_u64().unwrap() > 0, "{lost}");
    agent.scrape_until("the lost counter", Duration::from_secs(5), |s| {
        s.sum("reach_events_lost_total", &[]) > 0.0
    });

    let to = SocketAddr::from(([10, 80, 0, 1], 7953));
    let _ = hosts.client.run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)));
    let failed = agent.run.wait_for_json("the refused attempt over the new veth", |l| {
        l["type"] == "failed_attempt" && l["netns"]["name"] == srv.as_str()
    });
    assert_eq!(failed["iface"], "fnew0", "{failed:#}");
    let (code, _, out, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    let out_lines = reach_tests::json_lines(&out);
    // The changes that need a person's attention are warnings in the log, one line each: the
    // table's re-adding once, and one loss line per loss report, as on stdout.
    let readded = format!("in {srv} was removed by someone else");
    assert_eq!(err.matches(&readded).count(), 1, "{readded:?} once in:\n{err}");
    let lost_json = out_lines.iter().filter(|l| l["type"] == "lost").count();
    assert!(lost_json > 0);
    assert_eq!(err.matches("events lost (").count(), lost_json, "a log line per lost line:\n{err}");
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "removed on exit: {tables}");
    check.assert_nothing_new("reach agent after faults under it");
}

/// A read-only /sys (as a container runtime gives one, without its submounts) stops nothing:
/// reach writes nothing there — it reads BTF and, in a mount namespace of its own, mounts the
/// tracefs it needs over the read-only directory — so `watch` sees binds, `doctor` plans, and
/// no mount or program of reach's stays.
#[test]
fn a_read_only_sys_stops_nothing_and_leaves_nothing() {
    require_root();
    let _s = serial();
    let ns = NetNs::new("flt-rosys").unwrap();
    let holder = mount_namespace("mount --bind /sys /sys && mount -o remount,bind,ro /sys");
    let mnt = format!("/proc/{}/ns/mnt", holder.0.id());
    let mounts = || std::fs::read_to_string(format!("/proc/{}/mountinfo", holder.0.id())).unwrap();
    let before = mounts();
    assert!(
        before.lines().any(|l| l.split(' ').nth(4) == Some("/sys")
            && l.split(' ').nth(5).is_some_and(|o| o.starts_with("ro"))),
        "/sys is read-only in the holder's namespace:\n{before}"
    );
    let run = WatchRun::start_with(
        nsenter_reach(&holder, &["watch", "--json", "--netns", ns.name()]),
        "watching drops",
    );
    let port = ns
        .run_in(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .unwrap();
    run.wait_for_json("a bind under a read-only /sys", |l| {
        l["type"] == "bind" && l["bound_port"].as_u64() == Some(port as u64)
    });
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    // doctor plans as it does with a writable /sys.
    let plan = |out: std::process::Output| -> Value {
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["plan"].clone()
    };
    let ro = plan(nsenter_reach(&holder, &["doctor", "--json"]).output().unwrap());
    let rw = plan(Command::new(reach_bin()).args(["doctor", "--json"]).output().unwrap());
    assert_eq!(ro, rw, "the attach plan under a read-only /sys");
    assert_eq!(mounts(), before, "reach's tracefs mount stayed in its own mount namespace ({mnt})");
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach under a read-only /sys");
}
