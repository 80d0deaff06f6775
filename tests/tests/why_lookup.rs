//! `reach why --json` for every way a listener that exists can miss the client's SYN, each
//! against a real listener and a real client in lab namespaces: the verdict class the kernel's
//! lookup implies (`family_mismatch`, `address_mismatch`, `interface_mismatch`), its exit code,
//! the evidence sentence, the fix — and never "start the server" while a socket listens on the
//! port. The client's own experience (refused) is asserted first, so a row cannot pass on a
//! setup that in fact connects. Each test checks that nothing stays attached.
use std::{
    io,
    net::{SocketAddr, TcpStream},
    os::fd::OwnedFd,
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::{
    NetNs, TwoHosts,
    sockets::{self, ListenSpec},
};
use reach_tests::why_run::{finish, leftovers, lines, start};
use reach_tests::{reach, require_root, show};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous for a loaded 2-core machine; a refusal comes back at once. The first IPv6 packet
/// waits for neighbour discovery.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The verdict, exit code, key evidence sentence and fix lines a diagnosis must have, and what
/// it must never say while a socket listens on the port.
fn assert_diagnosis(v: &Value, code: i32, verdict: &str, sentence: &str, fixes: &[&str]) {
    assert_eq!(
        (code, v["verdict"].as_str()),
        (v["exit_code"].as_i64().unwrap() as i32, Some(verdict)),
        "{v:#}"
    );
    let evidence = lines(v, "evidence");
    assert!(evidence.iter().any(|l| l == sentence), "evidence lacks {sentence:?}: {evidence:#?}");
    let fix = lines(v, "fix");
    for f in fixes {
        assert!(fix.iter().any(|l| l.contains(f)), "fix lacks {f:?}: {fix:#?}");
    }
    for l in evidence.iter().chain(&fix) {
        assert!(
            !l.contains("start the server") && !l.contains("nothing listens"),
            "a socket listens on the port, yet: {l}"
        );
    }
    // The socket hop failed, and says the key sentence.
    let last = v["path"].as_array().unwrap().last().cloned().unwrap_or_default();
    assert_eq!(
        (last["name"].as_str(), last["ok"].as_bool()),
        (Some("socket"), Some(false)),
        "{v:#}"
    );
    assert_eq!(v["lookup"]["winner"]["kind"], "nobody", "{v:#}");
}

/// Which device a listener is bound to (SO_BINDTODEVICE), if any.
#[derive(Clone, Copy)]
struct Listen {
    addr: &'static str,
    v6only: Option<bool>,
    device: Option<&'static str>,
}

/// A listening socket in `ns`; the caller keeps it (the test process is the server).
fn listen_in(ns: &NetNs, spec: Listen, port: u16) -> OwnedFd {
    ns.run_in(move || listen(spec, port))
        .unwrap()
        .unwrap_or_else(|e| panic!("listening on {}:{port}: {e}", spec.addr))
}

fn listen(spec: Listen, port: u16) -> io::Result<OwnedFd> {
    sockets::tcp_listen(&ListenSpec {
        v6only: spec.v6only,
        device: spec.device,
        ..ListenSpec::on(SocketAddr::new(spec.addr.parse().unwrap(), port))
    })
}

/// Connects from `ns` to `to` and asserts the kernel refused it (what the user saw).
fn assert_refused(ns: &NetNs, to: SocketAddr) {
    let r = ns.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap();
    match r {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("connecting to {to} must be refused, got {other:?}"),
    }
}

#[test]
fn ipv4_loopback_server_and_a_client_dialing_ipv6_loopback_is_family_mismatch() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyl-fam6").unwrap();
    let check = leftovers(&hosts);
    let port = 7311;
    let _server =
        listen_in(&hosts.server, Listen { addr: "127.0.0.1", v6only: None, device: None }, port);
    let run = start(&hosts, &format!("[::1]:{port}"));
    // The client runs on the server's host and dials ::1 (what `localhost` resolves to first).
    assert_refused(&hosts.server, SocketAddr::new("::1".parse().unwrap(), port));
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 19, "{v:#}\n{stderr}");
    assert_diagnosis(
        &v,
        code,
        "family_mismatch",
        &format!(
            "the server listens on 127.0.0.1:{port} (IPv4 only, loopback only); the client \
             dialed ::1 (port {port}, IPv6)"
        ),
        &[
            &format!("also listen on [::1]:{port} (a second listener"),
            &format!("or have the client dial 127.0.0.1:{port} instead of [::1]:{port}"),
        ],
    );
    assert_eq!(v["attempt"]["family"], "ipv6", "{v:#}");
    assert_eq!(v["attempt"]["drop"]["reason"], "NO_SOCKET", "{v:#}");
    assert_eq!(v["path"][1]["name"], "interface lo", "{v:#}");
    assert_eq!(v["lookup"]["judged"][0]["reason"], "family", "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn v6only_wildcard_listener_and_an_ipv4_client_from_outside_is_family_mismatch() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyl-v6only").unwrap();
    let check = leftovers(&hosts);
    let port = 7312;
    let _server =
        listen_in(&hosts.server, Listen { addr: "::", v6only: Some(true), device: None }, port);
    let run = start(&hosts, &format!("{}:{port}", TwoHosts::SERVER_V4));
    assert_refused(&hosts.client, SocketAddr::from((TwoHosts::SERVER_V4, port)));
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 19, "{v:#}\n{stderr}");
    assert_diagnosis(
        &v,
        code,
        "family_mismatch",
        &format!(
            "the server listens on [::]:{port} (IPv6 only: IPV6_V6ONLY); the client dialed \
             10.77.0.1 (port {port}, IPv4)"
        ),
        &[
            &format!("turn IPV6_V6ONLY off on [::]:{port}"),
            &format!("or add a listener on 0.0.0.0:{port}"),
            &format!("or have the client dial [fd00:77::1]:{port}"),
        ],
    );
    assert_eq!(v["attempt"]["family"], "ipv4", "{v:#}");
    assert_eq!(v["path"][1]["name"], "interface srv0", "{v:#}");
    assert_eq!(v["lookup"]["judged"][0]["reason"], "v6_only", "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn server_on_another_address_of_the_host_is_address_mismatch_over_ipv4_and_ipv6() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyl-addr").unwrap();
    // A second address on the server's veth: the server binds it, the client dials the first.
    hosts.server.ip(&["addr", "add", "10.77.0.11/24", "dev", TwoHosts::SERVER_IF]).unwrap();
    let check = leftovers(&hosts);
    let port = 7313;
    let _server =
        listen_in(&hosts.server, Listen { addr: "10.77.0.11", v6only: None, device: None }, port);
    let run = start(&hosts, &format!("{}:{port}", TwoHosts::SERVER_V4));
    assert_refused(&hosts.client, SocketAddr::from((TwoHosts::SERVER_V4, port)));
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 20, "{v:#}\n{stderr}");
    assert_diagnosis(
        &v,
        code,
        "address_mismatch",
        &format!(
            "the server listens on 10.77.0.11:{port} (IPv4 only), only on 10.77.0.11; the client \
             dialed 10.77.0.1 (port {port}, IPv4), another address"
        ),
        &[
            &format!("bind the server to 0.0.0.0:{port} (every address) or to 10.77.0.1:{port}"),
            &format!("or have the client dial 10.77.0.11:{port}"),
        ],
    );
    assert_eq!(v["lookup"]["judged"][0]["reason"], "address", "{v:#}");

    // The same over IPv6: bound to a second IPv6 address, the client dials the first.
    hosts
        .server
        .ip(&["addr", "add", "fd00:77::11/64", "dev", TwoHosts::SERVER_IF, "nodad"])
        .unwrap();
    let port = 7316;
    let spec = Listen { addr: "fd00:77::11", v6only: None, device: None };
    let _server6 = listen_in(&hosts.server, spec, port);
    let run = start(&hosts, &format!("[{}]:{port}", TwoHosts::SERVER_V6));
    assert_refused(&hosts.client, SocketAddr::from((TwoHosts::SERVER_V6, port)));
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 20, "{v:#}\n{stderr}");
    assert_diagnosis(
        &v,
        code,
        "address_mismatch",
        &format!(
            "the server listens on [fd00:77::11]:{port} (IPv6 only: bound to one IPv6 address), \
             only on fd00:77::11; the client dialed fd00:77::1 (port {port}, IPv6), another address"
        ),
        &[
            &format!("bind the server to [::]:{port} (every address) or to [fd00:77::1]:{port}"),
            &format!("or have the client dial [fd00:77::11]:{port}"),
        ],
    );
    assert_eq!(v["attempt"]["family"], "ipv6", "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn listener_bound_to_lo_and_an_ipv6_client_on_the_veth_is_interface_mismatch() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyl-dev").unwrap();
    let check = leftovers(&hosts);
    let port = 7314;
    let spec = Listen { addr: "::", v6only: Some(false), device: Some("lo") };
    let _server = listen_in(&hosts.server, spec, port);
    let run = start(&hosts, &format!("[{}]:{port}", TwoHosts::SERVER_V6));
    assert_refused(&hosts.client, SocketAddr::from((TwoHosts::SERVER_V6, port)));
    let (code, v, stderr) = finish(run);
    assert_eq!(code, 21, "{v:#}\n{stderr}");
    assert_diagnosis(
        &v,
        code,
        "interface_mismatch",
        &format!(
            "the server listens on [::]:{port} (IPv4 and IPv6, bound to interface lo); the \
             client's SYN to fd00:77::1 (port {port}, IPv6) arrived on srv0"
        ),
        &[
            &format!("stop binding [::]:{port} to interface lo (SO_BINDTODEVICE"),
            "or bind it to srv0 (SO_BINDTODEVICE \"srv0\")",
        ],
    );
    assert_eq!(v["attempt"]["family"], "ipv6", "{v:#}");
    assert_eq!(v["lookup"]["judged"][0]["reason"], "device", "{v:#}");
    check.assert_nothing_new("reach why");
}

/// `reach why ADDR:PORT --netns <server> --timeout 0 --json`, parsed.
fn predict(hosts: &TwoHosts, target: &str) -> (std::process::Output, Value) {
    let out = reach(&["why", target, "--netns", hosts.server.name(), "--timeout", "0", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, v)
}

#[test]
fn timeout_zero_predicts_interface_mismatch_and_reachable_only_when_the_device_matches() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyl-pred").unwrap();
    let check = leftovers(&hosts);
    let port = 7315;
    let target = format!("{}:{port}", TwoHosts::SERVER_V4);
    // Bound to lo: a client on the veth is refused, and the prediction says so (it used to
    // say "reachable").
    let lo = listen_in(
        &hosts.server,
        Listen { addr: "0.0.0.0", v6only: None, device: Some("lo") },
        port,
    );
    assert_refused(&hosts.client, SocketAddr::from((TwoHosts::SERVER_V4, port)));
    let (out, v) = predict(&hosts, &target);
    let code = out.status.code().unwrap_or(-1);
    assert_eq!(code, 21, "{}", show(&out));
    assert_diagnosis(
        &v,
        code,
        "interface_mismatch",
        &format!(
            "the server listens on 0.0.0.0:{port} (IPv4 only, bound to interface lo); a \
             client's SYN to 10.77.0.1 (port {port}, IPv4) would arrive on srv0"
        ),
        &["or bind it to srv0"],
    );
    assert!(lines(&v, "evidence").iter().any(|l| l.contains("predicting")), "{v:#}");
    assert!(v["watched"].is_null() && v["attempt"].is_null(), "{v:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing attached") && !stderr.contains("watching"), "{stderr}");
    drop(lo);

    // Bound to the veth instead: the same client connects, and the prediction is reachable.
    let _srv = listen_in(
        &hosts.server,
        Listen { addr: "0.0.0.0", v6only: None, device: Some("srv0") },
        port,
    );
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let c = hosts.client.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap();
    c.unwrap_or_else(|e| panic!("a listener bound to srv0 must take the client's SYN: {e}"));
    let (out, v) = predict(&hosts, &target);
    assert_eq!(
        (out.status.code(), v["verdict"].as_str()),
        (Some(0), Some("reachable")),
        "{}",
        show(&out)
    );
    assert_eq!(v["lookup"]["winner"]["kind"], "one", "{v:#}");
    check.assert_nothing_new("reach why --timeout 0");
}
