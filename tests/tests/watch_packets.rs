//! `reach watch` on the packet path (issue 5), between two lab namespaces: client SYNs seen on
//! the server's interface, the server's replies, kernel drops with their reasons, silent
//! listen-queue overflows; and nothing left attached afterwards.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::TwoHosts;
use reach_tests::{
    WatchRun,
    leftovers::{Leftover, Leftovers, Scope},
    require_root,
};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn connect(hosts: &TwoHosts, addr: SocketAddr) -> std::io::Result<TcpStream> {
    hosts.client.run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2))).unwrap()
}

fn watch(hosts: &TwoHosts, port: u16) -> WatchRun {
    watch_with(hosts, port, &[])
}

fn watch_with(hosts: &TwoHosts, port: u16, extra: &[&str]) -> WatchRun {
    let port = port.to_string();
    let mut args = vec!["--json", "--netns", hosts.server.name(), "--port", &port];
    args.extend_from_slice(extra);
    WatchRun::start(&args, "watching drops")
}

fn flows(lines: &[Value], port: u16) -> Vec<&Value> {
    let suffix = format!(":{port}");
    lines
        .iter()
        .filter(|l| {
            l["type"] == "flow" && l["server"].as_str().is_some_and(|s| s.ends_with(&suffix))
        })
        .collect()
}

fn of_type<'a>(lines: &'a [Value], ty: &str, dport: u64) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["type"] == ty && (l["dport"] == dport || l["sport"] == dport))
        .collect()
}

/// Everything reach could leave in the server namespace and on its interface, and BPF
/// programs/links anywhere: taken before the run, compared after it with `assert_nothing_new`.
fn leftovers(hosts: &TwoHosts) -> Leftovers<'_> {
    Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &[TwoHosts::SERVER_IF] })
}

#[test]
fn syn_to_a_closed_port_is_seen_answered_with_rst_and_dropped_no_socket() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-closed").unwrap();
    let check = leftovers(&hosts);
    let run = watch(&hosts, 7101);
    for addr in [
        SocketAddr::from((TwoHosts::SERVER_V4, 7101)),
        SocketAddr::from((TwoHosts::SERVER_V6, 7101)),
    ] {
        let e = connect(&hosts, addr).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}: {e}");
    }
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let server_inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(hosts.server.path()).unwrap());
    for (family, saddr, daddr) in [
        ("ipv4", TwoHosts::CLIENT_V4.to_string(), TwoHosts::SERVER_V4.to_string()),
        ("ipv6", TwoHosts::CLIENT_V6.to_string(), TwoHosts::SERVER_V6.to_string()),
    ] {
        let syn = of_type(&lines, "syn", 7101)
            .into_iter()
            .find(|l| l["family"] == family)
            .unwrap_or_else(|| panic!("no {family} syn in {lines:#?}"));
        assert_eq!(
            (syn["saddr"].as_str(), syn["daddr"].as_str()),
            (Some(saddr.as_str()), Some(daddr.as_str()))
        );
        assert_eq!(syn["iface"], TwoHosts::SERVER_IF);
        assert_eq!(syn["netns"]["inode"].as_u64(), Some(server_inode));
        assert_eq!(syn["flags"], "S");
        let sport = syn["sport"].clone();
        let drop = of_type(&lines, "drop", 7101)
            .into_iter()
            .find(|l| l["family"] == family && l["sport"] == sport)
            .unwrap_or_else(|| panic!("no {family} drop in {lines:#?}"));
        assert_eq!(drop["reason"], "NO_SOCKET", "{drop}");
        assert_eq!(drop["netns"]["inode"].as_u64(), Some(server_inode));
        // The kernel drops a segment for which no socket exists in its TCP receive function
        // (`goto no_tcp_socket` → discard in tcp_v4_rcv / tcp_v6_rcv): the location must name
        // it, at an offset inside it.
        let expected = if family == "ipv4" { "tcp_v4_rcv" } else { "tcp_v6_rcv" };
        assert_location_in(drop["location"].as_str().unwrap(), expected);
        let rst = of_type(&lines, "rst", 7101)
            .into_iter()
            .find(|l| l["family"] == family && l["dport"] == sport)
            .unwrap_or_else(|| panic!("no {family} rst in {lines:#?}"));
        assert!(rst["flags"].as_str().unwrap().contains('R'));
    }
    let fl = flows(&lines, 7101);
    assert_eq!(fl.len(), 2, "one flow per family: {lines:#?}");
    for f in fl {
        assert_eq!(f["outcome"], "reset", "{f}");
        assert_eq!(f["drop"]["reason"], "NO_SOCKET", "{f}");
        assert_eq!(f["netns"]["name"], hosts.server.name());
    }
    check.assert_nothing_new("reach watch");
}

#[test]
fn nft_drop_rule_is_netfilter_drop() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-nft").unwrap();
    // In the lab server namespace only: a plain nftables drop rule on the port.
    hosts.server.run("nft", &["add", "table", "inet", "labfw"]).unwrap();
    hosts
        .server
        .run(
            "nft",
            &["add chain inet labfw input { type filter hook input priority 0; policy accept; }"],
        )
        .unwrap();
    hosts.server.run("nft", &["add rule inet labfw input tcp dport 7102 drop"]).unwrap();
    let _listener =
        hosts.server.run_in(|| TcpListener::bind((TwoHosts::SERVER_V4, 7102))).unwrap().unwrap();
    // After the test's own nft table: only what reach adds counts.
    let check = leftovers(&hosts);
    let run = watch(&hosts, 7102);
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, 7102));
    let e = hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_millis(1200)))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "a dropped SYN times out: {e}");
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let drops = of_type(&lines, "drop", 7102);
    assert!(!drops.is_empty(), "no drop in {lines:#?}");
    assert!(drops.iter().all(|d| d["reason"] == "NETFILTER_DROP"), "{drops:#?}");
    let loc = drops[0]["location"].as_str().unwrap();
    assert!(loc.starts_with("nft_do_chain+") || loc.starts_with("nf_hook_slow+"), "{}", drops[0]);
    assert!(of_type(&lines, "synack", 7102).is_empty() && of_type(&lines, "rst", 7102).is_empty());
    let fl = flows(&lines, 7102);
    assert_eq!(fl.len(), 1, "{lines:#?}");
    assert_eq!(
        (fl[0]["outcome"].as_str(), fl[0]["drop"]["reason"].as_str()),
        (Some("dropped"), Some("NETFILTER_DROP"))
    );
    assert_eq!(fl[0]["client"].as_str().unwrap().split(':').next(), Some("10.77.0.2"));
    check.assert_nothing_new("reach watch");
}

#[test]
fn accepted_connection_has_a_synack_and_no_drop() {
    accepted_flow("wp-ok", 7103, None);
}

#[test]
fn a_handshake_during_a_slow_start_keeps_its_syn_and_synack() {
    // Regression: while the listener snapshot ran (~1 s with these hogs), the socket ring's
    // ESTABLISHED was read ahead of the packet ring's SYN and SYN-ACK and judged alone once a
    // fixed reorder delay had passed: `accepted` with no SYN-ACK and syn_count 0. The pause
    // lets the session finish starting and settle the flow on its own before the stop.
    accepted_flow("wp-slow", 7109, Some(FdHogs::start(8)));
}

/// A client connects to a listener while reach watches: one SYN, one SYN-ACK, no drop, and one
/// `accepted` flow that joins them. With `hogs` the session starts slowly and is given 2 s to
/// settle the flow itself.
fn accepted_flow(name: &str, port: u16, hogs: Option<FdHogs>) {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new(name).unwrap();
    let check = leftovers(&hosts);
    let listener = hosts
        .server
        .run_in(move || TcpListener::bind((TwoHosts::SERVER_V4, port)))
        .unwrap()
        .unwrap();
    let run = watch(&hosts, port);
    let stream = connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V4, port))).expect("connect");
    let (_accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.port(), stream.local_addr().unwrap().port());
    if hogs.is_some() {
        // The regression: the session must settle the flow by itself, before any stop.
        run.wait_for_json(&format!("the flow of port {port} settled before the stop"), |l| {
            l["type"] == "flow"
                && l["server"].as_str().is_some_and(|s| s.ends_with(&format!(":{port}")))
        });
    }
    let (code, lines) = run.stop();
    drop(hogs);
    assert_eq!(code, Some(0));
    let dport = u64::from(port);
    let syn = of_type(&lines, "syn", dport);
    assert_eq!(syn.len(), 1, "{lines:#?}");
    let synack = of_type(&lines, "synack", dport);
    assert_eq!(synack.len(), 1, "{lines:#?}");
    assert_eq!(synack[0]["dport"], syn[0]["sport"]);
    assert!(of_type(&lines, "drop", dport).is_empty(), "{lines:#?}");
    let fl = flows(&lines, port);
    assert_eq!(fl.len(), 1, "{lines:#?}");
    assert_eq!(
        (fl[0]["outcome"].as_str(), fl[0]["synack_sent"].as_bool(), fl[0]["syn_count"].as_u64()),
        (Some("accepted"), Some(true), Some(1)),
        "the SYN and the SYN-ACK joined the accepted flow: {lines:#?}"
    );
    assert_eq!(
        fl[0]["client"],
        format!("{}:{}", TwoHosts::CLIENT_V4, stream.local_addr().unwrap().port())
    );
    check.assert_nothing_new("reach watch");
}

/// Processes holding many descriptors: reach's listener snapshot reads them all, so the session
/// starts slowly, as on a busy host. Killed on drop.
struct FdHogs(Vec<std::process::Child>);

impl FdHogs {
    fn start(n: usize) -> Self {
        use std::io::BufRead;
        let mut hogs = FdHogs(Vec::new());
        for _ in 0..n {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_reach-scenario"))
                .args(["hold-fds", "120"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start reach-scenario hold-fds");
            let mut line = String::new();
            std::io::BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
            hogs.0.push(c);
            let held: usize =
                line.trim().strip_prefix("ready ").and_then(|n| n.parse().ok()).unwrap_or(0);
            assert!(held >= 1000, "hold-fds could only open {held:?} descriptors: {line}");
        }
        hogs
    }
}

impl Drop for FdHogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn full_accept_queue_is_reported_as_overflow_of_that_listener() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-ovf").unwrap();
    let check = leftovers(&hosts);
    // SYN cookies would hide the overflow; this is the lab namespace's own sysctl.
    hosts.server.run("sysctl", &["-q", "-w", "net.ipv4.tcp_syncookies=0"]).unwrap();
    let fd = hosts
        .server
        .run_in(|| {
            let l = TcpListener::bind((TwoHosts::SERVER_V4, 7104)).unwrap();
            // SAFETY: re-listen with a backlog of 0 on our own socket.
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 0) };
            l
        })
        .unwrap();
    let run = watch_with(&hosts, 7104, &["--flow-timeout", "1"]);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V4, 7104))));
    }
    run.wait_for_json("an overflow line naming the full listener on 7104", |l| {
        l["type"] == "overflow"
            && l["full_listeners"].as_array().is_some_and(|f| f.iter().any(|l| l["port"] == 7104))
    });
    let (code, lines) = run.stop();
    drop(fd);
    assert_eq!(code, Some(0));
    let ovf = lines
        .iter()
        .find(|l| l["type"] == "overflow")
        .unwrap_or_else(|| panic!("no overflow in {lines:#?}"));
    assert!(
        ovf["listen_overflows"].as_u64().unwrap() >= 1
            || ovf["listen_drops"].as_u64().unwrap() >= 1,
        "{ovf}"
    );
    let full = ovf["full_listeners"].as_array().unwrap();
    assert!(full.iter().any(|l| l["port"] == 7104 && l["backlog"] == 0), "{ovf}");
    assert!(
        full.iter().any(|l| l["pid"].as_u64() == Some(std::process::id() as u64)),
        "owner named: {ovf}"
    );
    check.assert_nothing_new("reach watch");
}

#[test]
fn sigterm_during_setup_still_detaches_everything() {
    use std::os::unix::process::ExitStatusExt as _;
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-term").unwrap();
    let check = leftovers(&hosts);
    for delay_ms in [50, 250, 600] {
        let child = std::process::Command::new(reach_tests::reach_bin())
            .args(["watch", "--json", "--tc-attach", "netlink", "--netns", hosts.server.name()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A signal that lands before reach has installed its handlers (a slow machine, a QEMU
        // guest loading the binary over 9p) kills it by default: legitimate only while it has
        // said nothing, i.e. attached nothing yet. Once it has started, it must exit 0.
        if out.status.signal() == Some(libc::SIGTERM) {
            assert!(
                stderr.trim().is_empty(),
                "killed by SIGTERM at {delay_ms} ms after it had started setting up:\n{stderr}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "after {delay_ms} ms: {stderr}");
        }
        check.assert_nothing_new("reach watch");
        let q = hosts.server.run("tc", &["qdisc", "show", "dev", TwoHosts::SERVER_IF]).unwrap();
        assert!(!q.contains("clsact"), "clsact left after SIGTERM at {delay_ms} ms: {q}");
    }
}

#[test]
fn filters_of_a_sigkilled_run_are_removed_by_the_next_run() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-kill").unwrap();
    let check = leftovers(&hosts);
    let run = WatchRun::start(
        &["--json", "--tc-attach", "netlink", "--netns", hosts.server.name()],
        "watching drops",
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    let (code, _, _) = run.finish_raw();
    assert_eq!(code, None, "killed by SIGKILL, no exit code");
    // What a SIGKILLed netlink run leaves (that is the point), as the leftover check sees it:
    // its classifiers, held by no process, on the clsact it created, and the clsact's record.
    let killed = check.left_after(Duration::from_secs(2));
    let has = |p: &dyn Fn(&Leftover) -> bool| killed.iter().any(p);
    assert!(
        has(
            &|l| matches!(l, Leftover::Program { name, holders, .. } if name == "reach_ingress" && holders.is_empty())
        ) && has(
            &|l| matches!(l, Leftover::TcFilter { dir: "ingress", line, .. } if line.contains("reach_ingress"))
        ) && has(
            &|l| matches!(l, Leftover::Qdisc { line, .. } if line.starts_with("qdisc clsact"))
        ) && has(&|l| matches!(l, Leftover::RunReach(p) if p.starts_with("/run/reach/clsact"))),
        "the killed run's filters, clsact and record: {killed:#?}"
    );

    let next = WatchRun::start(
        &["--json", "--tc-attach", "netlink", "--netns", hosts.server.name()],
        "watching drops",
    );
    assert!(next.stderr().contains("removed a stale reach_ingress on srv0"), "{}", next.stderr());
    let (code, _) = next.stop();
    assert_eq!(code, Some(0));
    // Nothing else stays: reach mounts tracefs, when it must, in a mount namespace of its own.
    let left = check.left_after(Duration::from_secs(15));
    assert!(left.is_empty(), "the next run cleaned up everything of the killed run: {left:#?}");
    let q = hosts.server.run("tc", &["qdisc", "show", "dev", TwoHosts::SERVER_IF]).unwrap();
    assert!(!q.contains("clsact"), "the killed run's clsact was adopted and removed: {q}");
}

#[test]
fn syn_rate_bound_counts_every_suppressed_syn() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-rate").unwrap();
    let check = leftovers(&hosts);
    let run = watch_with(&hosts, 7105, &["--syn-rate", "5"]);
    const N: u64 = 60;
    for _ in 0..N {
        // Nothing listens: every SYN is answered with RST, reported or not.
        let e = connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V4, 7105))).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "closed port 7105: {e}");
    }
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let syns = of_type(&lines, "syn", 7105).len() as u64;
    let suppressed: u64 = lines
        .iter()
        .filter(|l| l["type"] == "suppressed")
        .map(|l| l["syn"].as_u64().unwrap())
        .sum();
    assert!(suppressed > 0, "{N} SYNs at --syn-rate 5 must be bounded: {syns} reported");
    assert_eq!(syns + suppressed, N, "every SYN is reported or counted ({syns} + {suppressed})");
    check.assert_nothing_new("reach watch");
}

#[test]
fn classic_kfree_skb_tracepoint_reports_the_same_drops() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-classic").unwrap();
    let check = leftovers(&hosts);
    let run = watch_with(&hosts, 7106, &["--drop-attach", "tracepoint"]);
    assert!(run.stderr().contains("tracepoint skb:kfree_skb"), "{}", run.stderr());
    let e = connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V6, 7106))).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "closed port 7106: {e}");
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let d = of_type(&lines, "drop", 7106);
    assert_eq!(d.len(), 1, "{lines:#?}");
    assert_eq!(
        (d[0]["reason"].as_str(), d[0]["family"].as_str()),
        (Some("NO_SOCKET"), Some("ipv6"))
    );
    assert_eq!(d[0]["saddr"], TwoHosts::CLIENT_V6.to_string());
    check.assert_nothing_new("reach watch");
}

#[test]
fn ipv6_accepted_and_ipv6_nft_drop() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-v6").unwrap();
    hosts.server.run("nft", &["add", "table", "ip6", "labfw6"]).unwrap();
    hosts
        .server
        .run(
            "nft",
            &["add chain ip6 labfw6 input { type filter hook input priority 0; policy accept; }"],
        )
        .unwrap();
    hosts.server.run("nft", &["add rule ip6 labfw6 input tcp dport 7108 drop"]).unwrap();
    let ok =
        hosts.server.run_in(|| TcpListener::bind((TwoHosts::SERVER_V6, 7107))).unwrap().unwrap();
    // After the test's own nft table: only what reach adds counts.
    let check = leftovers(&hosts);
    let run = watch_with(&hosts, 7107, &["--port", "7108"]);
    let stream =
        connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V6, 7107))).expect("v6 connect");
    let _ = ok.accept().unwrap();
    let addr = SocketAddr::from((TwoHosts::SERVER_V6, 7108));
    let e = hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_millis(700)))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let acc = flows(&lines, 7107);
    assert_eq!(acc.len(), 1, "{lines:#?}");
    assert_eq!(
        (acc[0]["outcome"].as_str(), acc[0]["family"].as_str()),
        (Some("accepted"), Some("ipv6"))
    );
    assert_eq!(
        acc[0]["client"],
        format!("[{}]:{}", TwoHosts::CLIENT_V6, stream.local_addr().unwrap().port())
    );
    let dropped = flows(&lines, 7108);
    assert_eq!(dropped.len(), 1, "{lines:#?}");
    assert_eq!(
        (dropped[0]["outcome"].as_str(), dropped[0]["drop"]["reason"].as_str()),
        (Some("dropped"), Some("NETFILTER_DROP"))
    );
    check.assert_nothing_new("reach watch");
}

#[test]
fn trace_names_the_nft_rule_that_dropped_the_flow() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-trace").unwrap();
    let handle = reach_tests::nft_drop_rule(&hosts.server, "labfw", 7109);
    let _ok =
        hosts.server.run_in(|| TcpListener::bind((TwoHosts::SERVER_V4, 7110))).unwrap().unwrap();
    // After the test's own nft table: only what reach adds counts.
    let check = leftovers(&hosts);
    let run = WatchRun::start(
        &["--json", "--netns", hosts.server.name(), "--port", "7109", "--port", "7110"],
        "added table inet reach_trace",
    );
    assert!(
        run.stderr().contains("added table inet reach_trace"),
        "tracing is announced: {}",
        run.stderr()
    );
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, 7109));
    let e = hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_millis(600)))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "the nft rule drops 7109's SYN: {e}");
    let _ok_conn =
        connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V4, 7110))).expect("allowed port");
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    let v = lines
        .iter()
        .find(|l| l["type"] == "nft_verdict" && l["tuple"]["dport"] == 7109)
        .unwrap_or_else(|| panic!("no nft_verdict for 7109: {lines:#?}"));
    assert_eq!(
        (v["verdict"].as_str(), v["table"].as_str(), v["chain"].as_str()),
        (Some("drop"), Some("inet labfw"), Some("input"))
    );
    assert_eq!(v["rule_handle"].as_u64(), Some(handle));
    let f = flows(&lines, 7109);
    assert_eq!(f[0]["outcome"], "dropped");
    assert_eq!(f[0]["firewall"]["rule_handle"].as_u64(), Some(handle), "{}", f[0]);
    let ok = lines
        .iter()
        .find(|l| l["type"] == "nft_verdict" && l["tuple"]["dport"] == 7110)
        .expect("allowed port traced");
    assert_eq!(ok["verdict"], "accept");
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "trace table removed on exit: {tables}");
    check.assert_nothing_new("reach watch");
}

#[test]
fn no_trace_adds_no_table_and_reports_no_verdicts() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-notrace").unwrap();
    let check = leftovers(&hosts);
    let run = watch_with(&hosts, 7111, &["--no-trace"]);
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "--no-trace must not add a table: {tables}");
    let e = connect(&hosts, SocketAddr::from((TwoHosts::SERVER_V4, 7111))).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "closed port 7111: {e}");
    let (code, lines) = run.stop();
    assert_eq!(code, Some(0));
    assert!(!run_has(&lines, "nft_verdict"), "{lines:#?}");
    assert!(run_has(&lines, "drop"), "drops are still reported: {lines:#?}");
    check.assert_nothing_new("reach watch");
}

fn run_has(lines: &[Value], ty: &str) -> bool {
    lines.iter().any(|l| l["type"] == ty)
}

/// Asserts that `loc` ("SYMBOL+0xOFFSET", as reach prints a drop location) names `function` and
/// that the offset lies inside it: below the distance to the next text symbol in /proc/kallsyms
/// (the kernel's own symbol table, not reach's resolution of it).
fn assert_location_in(loc: &str, function: &str) {
    let (symbol, offset) =
        loc.split_once("+0x").unwrap_or_else(|| panic!("location {loc:?} is not SYMBOL+0xOFF"));
    assert_eq!(symbol, function, "the drop location {loc} names another function");
    let offset = u64::from_str_radix(offset, 16).unwrap_or_else(|e| panic!("{loc}: {e}"));
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let mut text: Vec<(u64, &str)> = kallsyms
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            matches!(kind, "t" | "T").then_some((addr, f.next()?))
        })
        .collect();
    text.sort_unstable();
    let start = text
        .iter()
        .find(|(_, name)| *name == function)
        .map(|(a, _)| *a)
        .unwrap_or_else(|| panic!("{function} is not a text symbol in /proc/kallsyms"));
    assert_ne!(start, 0, "/proc/kallsyms hides addresses (kptr_restrict): cannot check {loc}");
    let next = text.iter().map(|(a, _)| *a).find(|&a| a > start).expect("a symbol after it");
    assert!(offset < next - start, "{loc}: offset beyond {function} ({} bytes)", next - start);
}

/// The default interface set follows the namespace: a veth added while watching is tapped
/// (a `tap` line, then its SYNs), and let go when it is deleted; nothing stays attached.
#[test]
fn an_interface_added_while_watching_is_tapped_and_released_when_deleted() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("wp-plug").unwrap();
    let extra = reach_agent::lab::NetNs::new("wp-plug-x").unwrap();
    let check = leftovers(&hosts);
    let run = watch(&hosts, 7401);
    let link = reach_agent::lab::Veth::create(
        reach_agent::lab::VethEnd::new(&hosts.server, "plug0").addrs(&["10.79.0.1/24"]),
        reach_agent::lab::VethEnd::new(&extra, "plug1").addrs(&["10.79.0.2/24"]),
    )
    .unwrap();
    let srv = hosts.server.name().to_string();
    run.wait_for_json("plug0 tapped", |v| {
        v["type"] == "tap"
            && v["change"] == "attached"
            && v["iface"] == "plug0"
            && v["netns"] == srv.as_str()
    });
    let to = SocketAddr::from(([10, 79, 0, 1], 7401));
    let e = extra
        .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    run.wait_for_json("the SYN on plug0", |v| {
        v["type"] == "syn" && v["iface"] == "plug0" && v["dport"] == 7401
    });
    drop(link);
    run.wait_for_json("plug0 released", |v| {
        v["type"] == "tap" && v["change"] == "detached" && v["iface"] == "plug0"
    });
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    check.assert_nothing_new("after watching an interface that came and went");
}
