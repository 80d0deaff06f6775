//! `reach why` against real attempts in lab namespaces: each class it can only prove with a
//! real packet (a foreign nftables rule, rp_filter, silence, IPv6), prediction without watching,
//! Ctrl-C while waiting, and every kind of bad input. The firewalld, loopback, other-netns,
//! overflow and reachable classes are asserted through `reach lab` (lab_demo.rs), which drives
//! exactly those scenarios. Each test checks that nothing stays attached.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::TwoHosts;
use reach_tests::why_run::{finish, leftovers};
use reach_tests::{
    WatchRun, nft_drop_rule, reach, reach_bin, reach_unprivileged, require_root, show,
};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const READY: &str = "waiting for a SYN";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `reach why ARGS --json` started and ready; the caller then drives the client.
fn start(args: &[&str]) -> WatchRun {
    let mut all = args.to_vec();
    all.push("--json");
    WatchRun::start_command("why", &all, READY)
}

/// Connects from the client namespace; returns what the client saw.
fn connect(hosts: &TwoHosts, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    hosts.client.run_in(move || TcpStream::connect_timeout(&to, timeout)).expect("enter client ns")
}

/// `reach why PORT --netns <server> --timeout 0 --json`: the prediction, parsed.
fn predict(hosts: &TwoHosts, port: u16) -> (std::process::Output, Value) {
    let port = port.to_string();
    let out = reach(&["why", &port, "--netns", hosts.server.name(), "--timeout", "0", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, v)
}

fn evidence(v: &Value) -> String {
    v["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn foreign_nft_rule_is_other_netfilter_drop_named_by_table_chain_and_handle() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-nft").unwrap();
    let port = 7301;
    let handle = nft_drop_rule(&hosts.server, "custom_fw", port);
    // After the test\'s own table: only what reach adds counts.
    let check = leftovers(&hosts);
    let _server =
        hosts.server.run_in(move || TcpListener::bind(("0.0.0.0", port))).unwrap().unwrap();
    let target = format!("{}:{port}", TwoHosts::SERVER_V4);
    let run =
        start(&[&target, "--netns", hosts.server.name(), "--iface", "srv0", "--timeout", "20"]);
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    assert!(connect(&hosts, to, Duration::from_millis(1500)).is_err(), "the rule must drop");
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 15, "{v:#}\n{stderr}");
    assert_eq!(v["verdict"], "other_netfilter_drop");
    assert_eq!(v["nft"]["rule"]["table"], "custom_fw", "{v:#}");
    assert_eq!(v["nft"]["rule"]["chain"], "input");
    assert_eq!(v["nft"]["rule"]["handle"], handle);
    assert_eq!(v["nft"]["rule"]["action"], "drop");
    assert_eq!(v["attempt"]["drop"]["reason"], "NETFILTER_DROP", "{v:#}");
    let path = v["path"].as_array().unwrap();
    assert_eq!(path.last().unwrap()["name"], "firewall", "{v:#}");
    assert_eq!(path.last().unwrap()["ok"], false);
    assert!(v["fix"].to_string().contains(&format!("handle {handle}")), "{v:#}");
    // Announced what it attached, and the netns by name.
    assert!(
        stderr.contains("added table inet reach_trace") && stderr.contains("watching SYNs on srv0"),
        "{stderr}"
    );
    assert_eq!(v["netns"]["name"], hosts.server.name());
    check.assert_nothing_new("reach why");
}

#[test]
fn rp_filter_drop_is_a_named_kernel_drop() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-rpf").unwrap();
    let check = leftovers(&hosts);
    let port = 7302;
    // The client speaks from an address the server has no route back to; strict rp_filter
    // drops its SYN before any socket lookup.
    hosts.client.ip(&["addr", "add", "10.78.0.2/24", "dev", "cli0"]).unwrap();
    // The server would ignore the client's ARP request from that address too (rp_filter checks
    // ARP senders): a static neighbour entry lets the SYN leave, so the drop is the SYN's.
    let link = hosts.server.ip(&["-j", "link", "show", "srv0"]).unwrap();
    let link: Value = serde_json::from_str(&link).unwrap();
    let mac = link[0]["address"].as_str().expect("srv0 MAC").to_string();
    let srv = TwoHosts::SERVER_V4.to_string();
    hosts
        .client
        .ip(&["neigh", "replace", &srv, "lladdr", &mac, "dev", "cli0", "nud", "permanent"])
        .unwrap();
    hosts
        .server
        .run("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.srv0.rp_filter=1"])
        .unwrap();
    let target = format!("{}:{port}", TwoHosts::SERVER_V4);
    let run = start(&[&target, "--netns", hosts.server.name(), "--timeout", "20"]);
    let seen = hosts
        .client
        .run_in(move || {
            let s = connect_from("10.78.0.2", (TwoHosts::SERVER_V4, port));
            s.is_ok()
        })
        .unwrap();
    assert!(!seen, "the SYN must be dropped");
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (18, Some("kernel_drop")), "{v:#}\n{stderr}");
    assert!(evidence(&v).contains("IP_RPFILTER"), "{v:#}");
    assert!(v["fix"].to_string().contains("rp_filter"), "{v:#}");
    assert_eq!(v["path"].as_array().unwrap().last().unwrap()["name"], "interface srv0", "{v:#}");
    check.assert_nothing_new("reach why");
}

/// connect() from a chosen source address with a 1.5 s timeout (std cannot bind before
/// connecting, so this goes through libc).
fn connect_from(src: &str, to: (std::net::Ipv4Addr, u16)) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = bound_tcp_v4(src.parse().unwrap(), 0);
    let tv = libc::timeval { tv_sec: 1, tv_usec: 500_000 };
    let sa = sockaddr_v4(to.0, to.1);
    // SAFETY: plain socket calls on our own fd with valid option and address structs.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as u32,
        );
        if libc::connect(
            fd.as_raw_fd(),
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn sockaddr_v4(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all zeroes is its "unset" value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

/// A TCP socket bound to `ip:port` (no SO_REUSEADDR), neither listening nor connected.
fn bound_tcp_v4(ip: std::net::Ipv4Addr, port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let sa = sockaddr_v4(ip, port);
    // SAFETY: plain socket calls on a fresh fd, owned by the returned OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let r = libc::bind(fd, (&raw const sa).cast(), size_of::<libc::sockaddr_in>() as u32);
        assert_eq!(r, 0, "bind {ip}:{port}: {}", std::io::Error::last_os_error());
        owned
    }
}

#[test]
fn silence_until_the_timeout_is_no_syn_seen_naming_the_watched_interfaces() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-nosyn").unwrap();
    let check = leftovers(&hosts);
    let run = start(&["7303", "--netns", hosts.server.name(), "--timeout", "2"]);
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (17, Some("no_syn_seen")), "{v:#}\n{stderr}");
    assert!(evidence(&v).contains("lo, srv0"), "{v:#}");
    assert_eq!(v["path"][0]["ok"], false, "{v:#}");
    assert!(v["attempt"].is_null());
    check.assert_nothing_new("reach why");
}

#[test]
fn ipv6_attempt_to_a_closed_port_is_no_listener() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-v6").unwrap();
    let check = leftovers(&hosts);
    let port = 7304;
    let target = format!("[{}]:{port}", TwoHosts::SERVER_V6);
    let run = start(&[&target, "--netns", hosts.server.name(), "--timeout", "20"]);
    let to = SocketAddr::from((TwoHosts::SERVER_V6, port));
    // The first IPv6 packet waits for neighbour discovery: allow it.
    let e = connect(&hosts, to, Duration::from_secs(4)).expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (12, Some("no_listener")), "{v:#}\n{stderr}");
    assert_eq!(v["attempt"]["family"], "ipv6");
    assert_eq!(v["attempt"]["server"], target.as_str());
    assert_eq!(v["target"], target.as_str());
    assert_eq!(v["attempt"]["drop"]["reason"], "NO_SOCKET", "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn timeout_zero_predicts_from_the_listeners_and_attaches_nothing() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-pred").unwrap();
    let check = leftovers(&hosts);
    let port = 7305;
    let _l = hosts.server.run_in(move || TcpListener::bind(("127.0.0.1", port))).unwrap().unwrap();
    let (out, v) = predict(&hosts, port);
    assert_eq!(
        (out.status.code(), v["verdict"].as_str()),
        (Some(10), Some("loopback_only_bind")),
        "{}",
        show(&out)
    );
    assert_eq!(v["listeners"][0]["pid"], std::process::id(), "{v:#}");
    assert_eq!(v["listeners"][0]["netns"]["name"], hosts.server.name());
    assert!(evidence(&v).contains("predicting"), "{v:#}");
    assert!(v["watched"].is_null() && v["attempt"].is_null());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing attached") && !stderr.contains("watching"), "{stderr}");
    // Human form: the path picture, the failing hop marked, the fix; no colour off a TTY.
    let out = reach(&["why", &port.to_string(), "--netns", hosts.server.name(), "--timeout", "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("client ─▶ interface srv0 ─▶ firewall ─▶ socket ✗"), "{text}");
    assert!(
        text.contains("✗ socket") && text.contains("fix:") && text.contains("0.0.0.0:7305"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour codes off a terminal: {text:?}");
    check.assert_nothing_new("reach why --timeout 0");
}

#[test]
fn ctrl_c_while_waiting_detaches_everything_and_still_answers() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-int").unwrap();
    let check = leftovers(&hosts);
    let run = start(&["7306", "--netns", hosts.server.name(), "--timeout", "60"]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.pid() as i32, libc::SIGINT) };
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (17, Some("no_syn_seen")), "{v:#}\n{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("detached"), "{stderr}");
    check.assert_nothing_new("reach why");
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_nothing_attached() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-bad").unwrap();
    let check = leftovers(&hosts);
    let ns = hosts.server.name();
    let cases: &[(&[&str], &str)] = &[
        (&["http"], "is not a port number"),
        (&["70000"], "out of range (1-65535)"),
        (&["0"], "port 0"),
        (&["10.0.0.1:99999"], "out of range"),
        (&["::1:80"], "in brackets"),
        (&["bad_name!:80"], "not an IPv4 address or a host name"),
        (&["-4", "[::1]:80"], "not an address of the family -4/-6 asks for"),
        (&["8080", "--netns", "no-such-netns-77"], "no network namespace \"no-such-netns-77\""),
        (&["8080", "--netns", ns, "--iface", "eth9"], "interface eth9 does not exist in netns"),
        (&["8080", "--timeout=-1"], "--timeout must be"),
    ];
    for (args, message) in cases {
        let mut all = vec!["why"];
        all.extend_from_slice(args);
        let out = reach(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: expected {message:?} in {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", show(&out));
    }
    // The interface error names the ones that exist.
    let out = reach(&["why", "8080", "--netns", ns, "--iface", "eth9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lo, srv0"), "{}", show(&out));

    let out = reach_unprivileged(&["why", "8080"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reach why: missing CAP_BPF") && stderr.contains("sudo"), "{stderr}");
    check.assert_nothing_new("reach why");
}

/// A TCP socket on 0.0.0.0:`port` of the calling thread's namespace, without SO_REUSEADDR:
/// listening with `backlog` (never accepting), or with None only bound (libc: std's
/// TcpListener can neither choose the backlog nor stop before listen).
fn tcp_socket(port: u16, backlog: Option<i32>) -> std::os::fd::OwnedFd {
    use std::os::fd::AsRawFd;
    let fd = bound_tcp_v4(std::net::Ipv4Addr::UNSPECIFIED, port);
    if let Some(b) = backlog {
        // SAFETY: listen on our own bound socket.
        assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), b) }, 0);
    }
    fd
}

#[test]
fn failed_bind_while_watching_names_the_socket_that_holds_the_port() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-inuse").unwrap();
    let check = leftovers(&hosts);
    let port = 7308;
    // The culprit: this test process binds the port and never listens.
    let _holder = hosts.server.run_in(move || tcp_socket(port, None)).unwrap();
    let run = start(&[&port.to_string(), "--netns", hosts.server.name(), "--timeout", "20"]);
    // The real server starts now and fails to bind.
    let listen = format!("0.0.0.0:{port}");
    let server = hosts
        .server
        .command(reach_bin())
        .args(["lab-server", "--listen", &listen])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start reach lab-server");
    let server_pid = server.id();
    let out = server.wait_with_output().unwrap();
    assert!(!out.status.success(), "the server must fail to bind: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", show(&out));
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let e = connect(&hosts, to, Duration::from_secs(2)).expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (12, Some("no_listener")), "{v:#}\n{stderr}");
    let ns = hosts.server.name();
    let me = std::process::id();
    let ev = evidence(&v);
    assert!(
        ev.contains(&format!(
            "pid {server_pid} (demo-server) failed to bind 0.0.0.0:{port} in netns {ns}: EADDRINUSE"
        )),
        "{ev}"
    );
    assert_eq!(v["failed_binds"][0]["errno"], "EADDRINUSE", "{v:#}");
    let fix = v["fix"].to_string();
    let holders = v["port_holders"].as_array().expect("port_holders");
    // sock_diag lists bound-only sockets from Linux 6.8 (TCP_BOUND_INACTIVE); before, reach
    // cannot see the culprit and must say so instead of naming it.
    if reach_tests::kernel_facts::at_least(6, 8) {
        assert!(
            ev.contains(&format!(
                "port {port} in netns {ns} is held without a listener: pid {me} ("
            )) && ev.contains(&format!("tcp 0.0.0.0:{port} bound, not listening")),
            "{ev}"
        );
        assert!(
            fix.contains(&format!(
                "pid {server_pid} (demo-server) failed with EADDRINUSE: pid {me} ("
            )),
            "{fix}"
        );
        assert_eq!(holders.len(), 1, "{v:#}");
        assert_eq!(
            (holders[0]["state"].as_str(), holders[0]["owners"][0]["pid"].as_u64()),
            (Some("bound"), Some(u64::from(me))),
            "{v:#}"
        );
    } else {
        assert!(!ev.contains("held without a listener"), "invisible before 6.8: {ev}");
        assert!(
            fix.contains(&format!(
                "pid {server_pid} (demo-server) failed with EADDRINUSE: another socket holds port \
                 {port}, most likely one bound without listening"
            )) && fix.contains("visible only on Linux ≥ 6.8"),
            "{fix}"
        );
        assert_eq!(holders.len(), 0, "{v:#}");
    }
    check.assert_nothing_new("reach why");
}

#[test]
fn timeout_zero_with_a_full_accept_queue_predicts_listen_overflow() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("why-full").unwrap();
    let port = 7307;
    let _l = hosts.server.run_in(move || tcp_socket(port, Some(1))).unwrap();
    // Backlog 1 holds two established connections; they wait in the queue, never accepted.
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let _held: Vec<TcpStream> =
        (0..2).map(|_| connect(&hosts, to, Duration::from_secs(2)).expect("queue slot")).collect();
    let (out, v) = predict(&hosts, port);
    assert_eq!(
        (out.status.code(), v["verdict"].as_str()),
        (Some(16), Some("listen_overflow")),
        "{}",
        show(&out)
    );
    let full = &v["overflow"]["full_listeners"][0];
    assert_eq!(
        (full["pid"].as_u64(), full["backlog"].as_u64()),
        (Some(std::process::id() as u64), Some(1)),
        "{v:#}"
    );
    assert!(evidence(&v).contains("queue 2 of backlog 1"), "{v:#}");
}
