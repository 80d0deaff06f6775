//! Bind and listen events per network namespace (issue 4), on this machine's kernel: the
//! scenario of `reach-scenario` run inside a lab namespace while `reach watch` runs, plus a
//! listener that existed before reach started. Every event must carry the right namespace
//! inode (that of /proc/PID/ns/net), pid, address, port and result; nothing stays attached.
use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::fs::MetadataExt,
    process::Command,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use reach_agent::lab::{
    NetNs,
    sockets::{self, ListenSpec},
};
use reach_tests::{
    WatchRun, json_lines, kernel_facts, reach, reach_bin, require_root, show, wait_until,
};
use serde_json::Value;

/// reach attaches global probes; keep watch runs of this file from overlapping.
static SERIAL: Mutex<()> = Mutex::new(());

/// The deterministic workload: cargo's build of it, or the copy REACH_SCENARIO_BIN names (the
/// QEMU guest runs of vm_portable.rs use private copies that no concurrent build can rewrite).
static SCENARIO: LazyLock<String> = LazyLock::new(|| {
    std::env::var("REACH_SCENARIO_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_reach-scenario").to_string())
});

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

    // The listener that existed before reach: the scenario held (until killed below) for far
    // longer than watch can take to start, even in a QEMU guest.
    let mut before = ns
        .spawn(&SCENARIO, &[&pre.to_string(), "600000"])
        .expect("start the pre-existing listeners");
    wait_until_bound(&ns, "udp", pre + 4);

    let mut args = vec!["--json", "--netns", ns.name()];
    if let Some(mode) = attach {
        args.extend(["--attach", mode]);
    }
    let watch = WatchRun::start(&args, "watching binds");
    let scenario = ns.run(&SCENARIO, &[&base.to_string(), "300"]).expect("scenario");
    let scenario: Value = serde_json::from_str(scenario.trim()).expect("scenario JSON");
    // A bind in the host namespace must be filtered out.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    drop(host);

    // Stopped once the scenario is over, not after a fixed duration (which a slow machine can
    // outrun); SIGINT makes watch drain its ring buffers before it exits.
    let (code, stdout, stderr) = stop(watch);
    assert_eq!(code, Some(0), "watch failed: {stderr}");
    let before_pid = before.pid() as u32;
    before.kill().ok();
    Run { lines: json_lines(&stdout), scenario, before_pid, ns_inode }
}

/// SIGINT to a watch run, then its exit code, stdout and stderr.
fn stop(watch: WatchRun) -> (Option<i32>, String, String) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(watch.pid() as i32, libc::SIGINT) };
    watch.finish_raw()
}

/// Waits (at most 60 s: a QEMU guest is slow) until a `proto` socket is bound to `port` in
/// `ns`: the scenario binds in order, so its later sockets exist once this one does.
fn wait_until_bound(ns: &NetNs, proto: &str, port: u16) {
    let flag = if proto == "udp" { "-Hua" } else { "-Hta" };
    let filter = format!("sport = :{port}");
    wait_until(
        &format!("a {proto} socket bound to port {port} in {}", ns.name()),
        Duration::from_secs(60),
        || {
            !ns.run("ss", &[flag, &filter])
                .expect("ss (iproute2) in the lab namespace")
                .trim()
                .is_empty()
        },
    );
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

/// No reach program outlives the run: one that no process holds is kept by an attachment.
fn assert_nothing_attached() {
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach watch (bind/listen)");
}

#[test]
fn tracepoint_mode_sees_every_bind_and_listen_in_the_lab() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let run = watch_scenario(Some("tracepoint"), 47200, 47300);
    check_run(&run, 47300, 47200, &["tracepoint"]);
    assert_nothing_attached();
}

/// The bind mechanism doctor's plan must pick here, by the documented preference (kprobe →
/// fentry → tracepoints), from the test's own probes of the kernel.
fn expected_bind_mode() -> &'static str {
    if kernel_facts::kprobe().is_ok() {
        "kprobe"
    } else if kernel_facts::fentry().is_ok() {
        "fentry"
    } else {
        "tracepoint"
    }
}

#[test]
fn automatic_mode_is_the_doctor_plan_and_works() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mode = expected_bind_mode();
    let run = watch_scenario(None, 47400, 47500);
    check_run(&run, 47500, 47400, &[mode]);
    assert_nothing_attached();
}

/// `--attach MODE`: where the kernel lets the test itself load and attach that kind of program
/// (`probe`), watch must see the whole scenario through it; where it refuses, watch must fail
/// with exit 1, say which mode failed, point at `reach doctor` and leave nothing behind.
fn forced_mode(mode: &str, probe: Result<(), kernel_facts::Refusal>, pre: u16, base: u16) {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match probe {
        Ok(()) => {
            let run = watch_scenario(Some(mode), pre, base);
            check_run(&run, base, pre, &[mode]);
        }
        Err(refusal) => {
            let out = Command::new(reach_bin())
                .args(["watch", "--attach", mode, "--duration", "1"])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "the kernel refuses {mode} ({refusal}), so watch must fail: {err}"
            );
            assert!(
                err.contains(&format!("{mode} mode failed")) && err.contains("reach doctor"),
                "{err}"
            );
            if let Some(text) = refusal.errno_text() {
                assert!(err.contains(&text), "the kernel's reason ({text}) is not shown: {err}");
            }
        }
    }
    assert_nothing_attached();
}

#[test]
fn forced_kprobe_mode_works_or_fails_clearly_as_the_kernel_decides() {
    forced_mode("kprobe", kernel_facts::kprobe(), 48200, 48300);
}

#[test]
fn forced_fentry_mode_works_or_fails_clearly_as_the_kernel_decides() {
    forced_mode("fentry", kernel_facts::fentry(), 48400, 48500);
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
        &["--json", "--ring-buffer-kib", "4", "--netns", ns.name()],
        "watching binds",
    );
    const N: u64 = 20_000;
    let burst: Value =
        serde_json::from_str(ns.run(&SCENARIO, &["burst", &N.to_string()]).unwrap().trim())
            .unwrap();
    let (code, stdout, stderr) = stop(watch);
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
    let mut holder = ns.spawn(&SCENARIO, &["47800", "600000"]).unwrap();
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
    // SO_BINDTODEVICE lo: the value is lo's index in that namespace, as `ip` reports it.
    let link = ns.run("ip", &["-o", "link", "show", "lo"]).expect("ip link show lo");
    let lo_index: u64 = link
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {link:?}"));
    assert_eq!(get("udp", "0.0.0.0", 47804)["bound_dev_if"].as_u64(), Some(lo_index), "{v:#}");

    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("127.0.0.1:47800") && text.contains("loopback only"), "{text}");
}

/// One listener of the test below: (address, port, IPV6_V6ONLY, SO_BINDTODEVICE) and what
/// `reach listeners` must say of it: (summary, families, addresses).
type Kind = (
    &'static str,
    u16,
    Option<bool>,
    Option<&'static str>,
    &'static str,
    &'static [&'static str],
    &'static str,
);

/// `reach listeners` flags each listener with the families and addresses it can be reached on
/// (`reachable_on`, issue 12). Each flag is held against the kernel: from inside the namespace
/// the test dials every address of it, and a connect succeeds exactly where the flag says.
#[test]
fn listeners_say_which_families_addresses_and_device_each_listener_takes() {
    require_root();
    let ns = NetNs::new("reachable-on").expect("lab namespace");
    // Two more addresses of the namespace (on lo: it has no other interface).
    ns.ip(&["addr", "add", "10.78.0.5/32", "dev", "lo"]).unwrap();
    ns.ip(&["addr", "add", "fd00:78::5/128", "dev", "lo", "nodad"]).unwrap();
    // (addr, port, v6only, device, summary, families, addresses)
    let kinds: [Kind; 7] = [
        (
            "127.0.0.1",
            47900,
            None,
            None,
            "IPv4 loopback only: not ::1, not from other hosts",
            &["ipv4"],
            "loopback",
        ),
        ("::", 47901, Some(false), None, "IPv4 + IPv6, every address", &["ipv4", "ipv6"], "every"),
        (
            "::",
            47902,
            Some(true),
            None,
            "IPv6 only (IPV6_V6ONLY), every address: not IPv4",
            &["ipv6"],
            "every",
        ),
        (
            "::1",
            47903,
            None,
            None,
            "IPv6 loopback only: not 127.0.0.1, not from other hosts",
            &["ipv6"],
            "loopback",
        ),
        (
            "10.78.0.5",
            47904,
            None,
            None,
            "IPv4, only 10.78.0.5: not the host's other addresses, not IPv6",
            &["ipv4"],
            "one",
        ),
        (
            "fd00:78::5",
            47905,
            None,
            None,
            "IPv6, only fd00:78::5: not the host's other addresses, not IPv4",
            &["ipv6"],
            "one",
        ),
        (
            "0.0.0.0",
            47906,
            None,
            Some("lo"),
            "IPv4 only, every address: not IPv6 (not ::1); only via lo",
            &["ipv4"],
            "every",
        ),
    ];
    let _fds: Vec<_> = kinds
        .iter()
        .map(|&(addr, port, v6only, device, ..)| {
            let spec = ListenSpec {
                v6only,
                device,
                ..ListenSpec::on(SocketAddr::new(addr.parse().unwrap(), port))
            };
            ns.run_in(move || sockets::tcp_listen(&spec)).unwrap().unwrap_or_else(|e| {
                panic!("listening on {addr}:{port} (v6only {v6only:?}, device {device:?}): {e}")
            })
        })
        .collect();
    let out = reach(&["listeners", "--json", "--netns", ns.name()]);
    assert!(out.status.success(), "{}", show(&out));
    let text = reach(&["listeners", "--netns", ns.name()]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ls = v[0]["listeners"].as_array().unwrap_or_else(|| panic!("no listeners: {v:#}"));
    let dests: [IpAddr; 4] =
        ["127.0.0.1", "::1", "10.78.0.5", "fd00:78::5"].map(|a| a.parse().unwrap());
    for (addr, port, _, device, summary, families, addresses) in kinds {
        let l = ls
            .iter()
            .find(|l| l["proto"] == "tcp" && l["addr"] == addr && l["port"] == port)
            .unwrap_or_else(|| panic!("no tcp {addr}:{port} in {v:#}"));
        let r = &l["reachable_on"];
        assert_eq!(r["summary"], summary, "{addr}:{port}: {l:#}");
        assert_eq!(r["families"], serde_json::json!(families), "{addr}:{port}: {l:#}");
        assert_eq!(r["addresses"], addresses, "{addr}:{port}: {l:#}");
        assert_eq!(r["device"].as_str(), device, "{addr}:{port}: {l:#}");
        let line = text
            .lines()
            .find(|t| t.contains(&format!(":{port} ")))
            .unwrap_or_else(|| panic!("no line for port {port}:\n{text}"));
        assert!(line.ends_with(&format!("← {summary}")), "{line}");
        // The kernel's word: every address of the namespace dialed from inside it.
        for dest in dests {
            let family = if dest.is_ipv4() { "ipv4" } else { "ipv6" };
            let flagged = families.contains(&family)
                && (addresses == "every" || r["address"] == dest.to_string());
            let to = SocketAddr::new(dest, port);
            let connected = ns
                .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(10)))
                .unwrap()
                .is_ok();
            assert_eq!(connected, flagged, "{addr}:{port} flagged {summary:?}, dialed {to}");
        }
    }
}
