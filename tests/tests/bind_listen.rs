//! Bind and listen events per network namespace (issue 4), on this machine's kernel: the
//! scenario of `reach-scenario` run inside a lab namespace while `reach watch` runs, plus a
//! listener that existed before reach started. Every event must carry the right namespace
//! inode (that of /proc/PID/ns/net), pid, address, port and result; nothing stays attached.
use std::{os::unix::fs::MetadataExt, process::Command, sync::Mutex, thread, time::Duration};

use reach_agent::lab::NetNs;
use reach_tests::{WatchRun, bpf_programs_left, json_lines, reach_bin, require_root};
use serde_json::Value;

/// reach attaches global probes; keep watch runs of this file from overlapping.
static SERIAL: Mutex<()> = Mutex::new(());

const SCENARIO: &str = env!("CARGO_BIN_EXE_reach-scenario");

struct Run {
    lines: Vec<Value>,
    scenario: Value,
    before_pid: u32,
    ns_inode: u64,
}

/// Starts a pre-existing listener set (base `pre`) in a lab namespace, then `reach watch --json`
/// limited to it, then the scenario (base `base`); returns everything watch printed.
fn watch_scenario(attach: Option<&str>, pre: u16, base: u16) -> Run {
    require_root();
    let ns = NetNs::new("bindlisten").expect("lab namespace");
    let ns_inode = std::fs::metadata(ns.path()).unwrap().ino();

    // The listener that existed before reach: the scenario held for 20 s.
    let mut before =
        ns.spawn(SCENARIO, &[&pre.to_string(), "20000"]).expect("start the pre-existing listeners");
    wait_until_bound(&ns, "udp", pre + 4);

    let mut args = vec!["--json", "--duration", "4", "--netns", ns.name()];
    if let Some(mode) = attach {
        args.extend(["--attach", mode]);
    }
    let watch = WatchRun::start(&args, "watching binds");
    let scenario = ns.run(SCENARIO, &[&base.to_string(), "300"]).expect("scenario");
    let scenario: Value = serde_json::from_str(scenario.trim()).expect("scenario JSON");
    // A bind in the host namespace must be filtered out.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    drop(host);

    let (code, stdout, stderr) = watch.finish_raw();
    assert_eq!(code, Some(0), "watch failed: {stderr}");
    let before_pid = before.pid() as u32;
    before.kill().ok();
    Run { lines: json_lines(&stdout), scenario, before_pid, ns_inode }
}

/// Waits (at most 10 s) until a `proto` socket is bound to `port` in `ns`: the scenario binds
/// in order, so its later sockets exist once this one does.
fn wait_until_bound(ns: &NetNs, proto: &str, port: u16) {
    let flag = if proto == "udp" { "-Hua" } else { "-Hta" };
    let filter = format!("sport = :{port}");
    for _ in 0..500 {
        let out = ns.run("ss", &[flag, &filter]).expect("ss (iproute2) in the lab namespace");
        if !out.trim().is_empty() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("no {proto} socket bound to port {port} in {} after 10 s", ns.name());
}

fn find<'a>(
    lines: &'a [Value],
    ty: &str,
    proto: &str,
    addr: &str,
    port: u64,
    result: &str,
) -> &'a Value {
    lines
        .iter()
        .find(|l| {
            l["type"] == ty
                && l["proto"] == proto
                && l["addr"] == addr
                && l["port"] == port
                && (ty == "listener" || l["result"] == result)
        })
        .unwrap_or_else(|| panic!("no {ty} {proto} {addr}:{port} {result} in:\n{lines:#?}"))
}

fn check_run(run: &Run, base: u16, pre: u16, expect_source: &[&str]) {
    let pid = run.scenario["pid"].as_u64().unwrap();
    assert_eq!(
        run.scenario["netns"].as_u64().unwrap(),
        run.ns_inode,
        "scenario ran in the lab namespace"
    );
    let b = base as u64;

    // Every event is from the lab namespace: the host bind was filtered out.
    for l in &run.lines {
        assert_eq!(l["netns"]["inode"].as_u64(), Some(run.ns_inode), "foreign event: {l}");
    }

    // The listeners that existed before reach, from the snapshot.
    let p = pre as u64;
    for (proto, addr, port) in [
        ("tcp", "127.0.0.1", p),
        ("tcp", "0.0.0.0", p + 1),
        ("tcp", "::", p + 2),
        ("udp", "0.0.0.0", p + 3),
    ] {
        let l = find(&run.lines, "listener", proto, addr, port, "");
        assert_eq!(l["pid"].as_u64(), Some(run.before_pid as u64), "{l}");
        assert_eq!(l["comm"], "reach-scenario");
    }
    assert_eq!(find(&run.lines, "listener", "tcp", "127.0.0.1", p, "")["loopback_only"], true);
    assert_eq!(find(&run.lines, "listener", "tcp", "::", p + 2, "")["v6only"], false);

    let bind_lo = find(&run.lines, "bind", "tcp", "127.0.0.1", b, "ok");
    assert_eq!(bind_lo["pid"].as_u64(), Some(pid));
    assert_eq!(bind_lo["comm"], "reach-scenario");
    assert_eq!(bind_lo["family"], "ipv4");
    assert_eq!(bind_lo["bound_port"].as_u64(), Some(b));
    assert!(expect_source.contains(&bind_lo["source"].as_str().unwrap()), "{bind_lo}");
    assert_eq!(find(&run.lines, "listen", "tcp", "127.0.0.1", b, "ok")["backlog"], 5);

    let any = find(&run.lines, "bind", "tcp", "0.0.0.0", b + 1, "ok");
    assert_eq!(any["options"]["reuseaddr"], true);
    assert_eq!(bind_lo["options"]["reuseaddr"], false);
    assert_eq!(find(&run.lines, "listen", "tcp", "0.0.0.0", b + 1, "ok")["backlog"], 6);

    let v6 = find(&run.lines, "bind", "tcp", "::", b + 2, "ok");
    assert_eq!(v6["family"], "ipv6");
    assert_eq!(find(&run.lines, "listen", "tcp", "::", b + 2, "ok")["backlog"], 7);

    let failed = find(&run.lines, "bind", "tcp", "127.0.0.1", b, "EADDRINUSE");
    assert_eq!(failed["bound_port"], Value::Null, "a failed bind is bound to nothing: {failed}");

    let udp = find(&run.lines, "bind", "udp", "0.0.0.0", b + 3, "ok");
    assert_eq!(udp["pid"].as_u64(), Some(pid));

    let eph = run.scenario["ephemeral_port"].as_u64().unwrap();
    let bind0 = find(&run.lines, "bind", "tcp", "127.0.0.1", 0, "ok");
    assert_eq!(bind0["bound_port"].as_u64(), Some(eph), "port 0 → the ephemeral port chosen");
    assert_eq!(find(&run.lines, "listen", "tcp", "127.0.0.1", eph, "ok")["backlog"], 8);

    let dev = find(&run.lines, "bind", "udp", "0.0.0.0", b + 4, "ok");
    assert_eq!(dev["options"]["reuseport"], true, "{dev}");
    assert_eq!(dev["options"]["bound_dev"], "lo", "{dev}");
    let free = find(&run.lines, "bind", "tcp", "192.0.2.1", b + 5, "ok");
    assert_eq!(free["options"]["freebind"], true, "{free}");
    assert_eq!(bind_lo["options"]["freebind"], false);

    // Every listener of the scenario is reported closed, with its address.
    for (addr, port) in [("127.0.0.1", b), ("0.0.0.0", b + 1), ("::", b + 2), ("127.0.0.1", eph)] {
        find(&run.lines, "listen_close", "tcp", addr, port, "ok");
    }
}

fn assert_nothing_attached() {
    let left = bpf_programs_left("reach_");
    assert!(left.is_empty(), "programs left loaded after reach exited: {left:?}");
}

#[test]
fn tracepoint_mode_sees_every_bind_and_listen_in_the_lab() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let run = watch_scenario(Some("tracepoint"), 47200, 47300);
    check_run(&run, 47300, 47200, &["tracepoint"]);
    assert_nothing_attached();
}

#[test]
fn automatic_mode_is_the_doctor_plan_and_works() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let run = watch_scenario(None, 47400, 47500);
    // On this machine doctor plans tracepoints for binds (no kprobes, no fentry).
    check_run(&run, 47500, 47400, &["tracepoint", "kprobe", "fentry"]);
    assert_nothing_attached();
}

#[test]
fn forced_unavailable_mode_fails_clearly_and_leaves_nothing() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        panic!(
            "this test expects a kernel without kprobes (this project's machines); here kprobes exist"
        );
    }
    let out = Command::new(reach_bin())
        .args(["watch", "--attach", "kprobe", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kprobe mode failed") && err.contains("reach doctor"), "{err}");
    assert_nothing_attached();
}

#[test]
fn bad_watch_arguments_are_usage_errors() {
    require_root();
    for args in
        [&["watch", "--netns", "reach-no-such-namespace"][..], &["watch", "--duration", "-3"]]
    {
        let out = Command::new(reach_bin()).args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    let out = Command::new(reach_bin()).args(["watch", "--attach", "bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kprobe, fentry, tracepoint"));
}

#[test]
fn ring_buffer_overflow_is_counted_never_silent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let ns = NetNs::new("lost").expect("lab namespace");
    let watch = WatchRun::start(
        &["--json", "--ring-buffer-kib", "4", "--duration", "4", "--netns", ns.name()],
        "watching binds",
    );
    const N: u64 = 20_000;
    let burst: Value =
        serde_json::from_str(ns.run(SCENARIO, &["burst", &N.to_string()]).unwrap().trim()).unwrap();
    let (code, stdout, stderr) = watch.finish_raw();
    assert_eq!(code, Some(0), "watch failed: {stderr}");
    let lines = json_lines(&stdout);
    let seen =
        lines.iter().filter(|l| l["type"] == "bind" && l["pid"] == burst["pid"]).count() as u64;
    let lost: u64 =
        lines.iter().filter(|l| l["type"] == "lost").map(|l| l["count"].as_u64().unwrap()).sum();
    assert!(
        lost > 0,
        "a 4 KiB ring buffer cannot hold {N} binds: nothing reported lost (seen {seen})"
    );
    // Every bind is either printed or counted (the counter also covers other processes' events).
    assert!(seen + lost >= N, "seen {seen} + lost {lost} < {N} binds: events vanished silently");
    assert!(seen + lost < N + 1000, "seen {seen} + lost {lost} far above {N}");
}

#[test]
fn listeners_lists_the_lab_namespace_and_flags_loopback_only() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let ns = NetNs::new("listeners").expect("lab namespace");
    let mut holder = ns.spawn(SCENARIO, &["47800", "20000"]).unwrap();
    wait_until_bound(&ns, "udp", 47804);
    let out = Command::new(reach_bin())
        .args(["listeners", "--json", "--netns", ns.name()])
        .output()
        .unwrap();
    let text =
        Command::new(reach_bin()).args(["listeners", "--netns", ns.name()]).output().unwrap();
    holder.kill().ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nss = v.as_array().unwrap();
    assert_eq!(nss.len(), 1, "--netns limits the output: {v:#}");
    assert_eq!(nss[0]["netns"]["name"], ns.name());
    let ls = nss[0]["listeners"].as_array().unwrap();
    let get = |proto: &str, addr: &str, port: u64| {
        ls.iter()
            .find(|l| l["proto"] == proto && l["addr"] == addr && l["port"] == port)
            .unwrap_or_else(|| panic!("no {proto} {addr}:{port} in {v:#}"))
    };
    let lo = get("tcp", "127.0.0.1", 47800);
    assert_eq!((lo["loopback_only"].as_bool(), lo["backlog"].as_u64()), (Some(true), Some(5)));
    assert_eq!(lo["pid"].as_u64(), Some(holder.pid() as u64));
    assert_eq!(get("tcp", "0.0.0.0", 47801)["loopback_only"], false);
    assert_eq!(get("tcp", "::", 47802)["v6only"], false);
    assert!(get("udp", "0.0.0.0", 47804)["bound_dev_if"].as_u64().is_some());

    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("127.0.0.1:47800") && text.contains("loopback only"), "{text}");
}
