//! `reach why --json` when the server answers and its answer dies on the way out, against a
//! real listener and a real client in lab namespaces (server and client over a veth pair):
//! - an nftables output rule in the SERVER namespace dropping the SYN-ACK → `reply_dropped`
//!   naming the rule (table, chain, handle, text) with the `tcp sport` fix, IPv4 and IPv6;
//! - a TC egress filter on the server's veth dropping the SYN-ACK → `reply_dropped` naming the
//!   kernel's drop reason, the one the running kernel's own enum has for it;
//! - a closed port whose RST an output rule drops → still `no_listener`, with the evidence that
//!   the RST died (the client saw a timeout, not "connection refused").
//!
//! The client's own experience (a timeout) is asserted first, so a case cannot pass on a setup
//! that in fact connects or is refused. Each test checks that nothing stays attached.
use std::{
    io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    time::Duration,
};

use reach_agent::{
    kernel::{btf::KernelBtf, drop_reasons::DropReasons},
    lab::{NetNs, TwoHosts},
};
use reach_tests::require_root;
use reach_tests::why_run::{finish, leftovers, lines, start};

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the client waits for the handshake. Its SYN retransmits after 1 s and 3 s; reach
/// calls an attempt unanswered after 2 s, so it has decided well within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(6);

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// A listener in the server namespace, kept by the caller (the test process is the server).
fn listen_in(ns: &NetNs, addr: IpAddr, port: u16) -> TcpListener {
    ns.run_in(move || TcpListener::bind(SocketAddr::new(addr, port)))
        .unwrap()
        .unwrap_or_else(|e| panic!("listening on {addr}:{port}: {e}"))
}

/// Connects from `ns` to `to` and asserts it timed out: no answer reached the client.
fn assert_times_out(ns: &NetNs, to: SocketAddr) {
    let r = ns.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap();
    match r {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("connecting to {to} must time out (its answer is dropped), got {other:?}"),
    }
}

/// Adds table `inet reply_test` in `ns` with an output chain holding `rule`; returns the rule's
/// handle and its text, from nft's own listing.
fn output_rule(ns: &NetNs, rule: &str) -> (u64, String) {
    ns.run("nft", &["add", "table", "inet", "reply_test"]).expect("nft add table");
    ns.run(
        "nft",
        &["add chain inet reply_test output { type filter hook output priority 0; policy accept; }"],
    )
    .expect("nft add chain");
    ns.run("nft", &[&format!("add rule inet reply_test output {rule}")]).expect("nft add rule");
    let listing =
        ns.run("nft", &["-a", "list", "chain", "inet", "reply_test", "output"]).expect("nft list");
    listing
        .lines()
        .find(|l| l.contains(" drop"))
        .and_then(|l| l.trim().rsplit_once(" # handle "))
        .and_then(|(text, h)| Some((h.trim().parse().ok()?, text.to_string())))
        .unwrap_or_else(|| panic!("no handle for `{rule}` in:\n{listing}"))
}

/// A SYN-ACK dropped by an output rule in the server's namespace, over `server_addr`.
fn synack_dropped_by_output_rule(label: &str, server_addr: IpAddr, port: u16) {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new(label).unwrap();
    let (handle, text) = output_rule(
        &hosts.server,
        &format!("tcp sport {port} tcp flags & (syn | ack) == syn | ack drop"),
    );
    let check = leftovers(&hosts);
    let _server = listen_in(&hosts.server, IpAddr::from([0u8; 16]), port);
    let target = SocketAddr::new(server_addr, port);
    let run = start(&hosts, &target.to_string());
    assert_times_out(&hosts.client, target);
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (22, Some("reply_dropped")), "{v:#}\n{stderr}");
    assert_eq!(v["exit_code"], 22, "{v:#}");

    // The rule named, from the reply's own trace.
    let rule = &v["nft_reply"]["rule"];
    assert_eq!(
        (rule["family"].as_str(), rule["table"].as_str(), rule["chain"].as_str()),
        (Some("inet"), Some("reply_test"), Some("output")),
        "{v:#}"
    );
    assert_eq!(
        (rule["handle"].as_u64(), rule["reply"].as_bool()),
        (Some(handle), Some(true)),
        "{v:#}"
    );
    // The rule's text as nft itself prints it.
    assert_eq!(rule["rule"].as_str(), Some(text.as_str()), "{v:#}");
    assert!(
        rule["rule"].as_str().is_some_and(|t| t.contains(&format!("tcp sport {port}"))),
        "{v:#}"
    );
    // The SYN itself got through: no rule decided it against.
    assert!(v["nft"].is_null(), "the SYN's walk was an accept: {v:#}");

    let evidence = lines(&v, "evidence");
    assert!(has(&evidence, "listening: pid "), "who answered: {evidence:#?}");
    assert!(has(&evidence, "the server answered with a SYN-ACK to "), "{evidence:#?}");
    let place = format!(
        "the SYN-ACK died on its way out: netfilter: table inet reply_test, chain output (handle \
         {handle}) `{text}` → drop"
    );
    assert!(has(&evidence, &place), "evidence lacks {place:?}: {evidence:#?}");
    // The kfree_skb side saw it too, on the flow record.
    let attempt = &v["attempt"];
    assert_eq!(attempt["outcome"], "unanswered", "{v:#}");
    assert_eq!(attempt["reply_drop"]["segment"], "syn_ack", "{v:#}");
    assert_eq!(attempt["reply_drop"]["reason"], "NETFILTER_DROP", "{v:#}");
    // Dropped at LOCAL_OUT: it never reached TC egress.
    assert_eq!(attempt["synack_sent"], false, "{v:#}");

    let fix = lines(&v, "fix");
    assert!(has(&fix, &format!("tcp sport {port}")), "the fix matches the replies: {fix:#?}");
    assert!(has(&fix, "inet reply_test output"), "the fix acts on the rule's chain: {fix:#?}");
    assert!(has(&fix, &format!("handle {handle}")), "{fix:#?}");
    for l in evidence.iter().chain(&fix) {
        assert!(!l.contains("start the server") && !l.contains("silent drop"), "{l}");
    }
    // Every hop of the SYN fine; the reply hop failed.
    let path = v["path"].as_array().unwrap();
    let names: Vec<&str> = path.iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(names.last(), Some(&"reply"), "{v:#}");
    assert!(path[..path.len() - 1].iter().all(|h| h["ok"] == true), "{v:#}");
    assert_eq!(path.last().unwrap()["ok"], false, "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn synack_dropped_by_an_output_rule_is_reply_dropped_naming_the_rule_ipv4() {
    synack_dropped_by_output_rule("whyr-nft4", TwoHosts::SERVER_V4.into(), 7411);
}

#[test]
fn synack_dropped_by_an_output_rule_is_reply_dropped_naming_the_rule_ipv6() {
    synack_dropped_by_output_rule("whyr-nft6", TwoHosts::SERVER_V6.into(), 7412);
}

/// The drop reason this kernel gives a packet its TC egress hook drops (TC_ACT_SHOT), from its
/// own BTF enum: `TC_EGRESS` where the enum has it (added with its use in sch_handle_egress,
/// 5.19), `NOT_SPECIFIED` for the plain kfree_skb of kernels with drop reasons but without that
/// one; below 5.17 the kernel reports no reason at all.
fn expected_tc_egress_reason() -> Option<&'static str> {
    let reasons = KernelBtf::load().and_then(|b| DropReasons::load(&b)).ok()?;
    if !reasons.available() {
        return None;
    }
    Some(if reasons.value("TC_EGRESS").is_some() { "TC_EGRESS" } else { "NOT_SPECIFIED" })
}

#[test]
fn synack_dropped_by_a_tc_egress_filter_is_reply_dropped_naming_the_kernel_reason() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyr-tc").unwrap();
    let port = 7413;
    let dev = TwoHosts::SERVER_IF;
    // A u32 filter on the server's veth egress that redirects the server's replies to a device
    // that is down: mirred cannot deliver them and the filter's verdict is TC_ACT_SHOT, so the
    // kernel drops them in its TC egress hook. (u32 and mirred are built into kernels that
    // lack flower, matchall and gact.)
    let ns = &hosts.server;
    ns.ip(&["link", "add", "rdrop0", "type", "veth", "peer", "name", "rdrop1"]).expect("veth");
    ns.run("tc", &["qdisc", "add", "dev", dev, "clsact"]).expect("tc qdisc add clsact");
    let sport = port.to_string();
    #[rustfmt::skip]
    let filter = [
        "filter", "add", "dev", dev, "egress", "protocol", "ip", "prio", "1", "u32",
        "match", "ip", "protocol", "6", "0xff", "match", "ip", "sport", &sport, "0xffff",
        "action", "mirred", "egress", "redirect", "dev", "rdrop0",
    ];
    ns.run("tc", &filter).expect("tc filter add (u32 + mirred)");
    let check = leftovers(&hosts);
    let _server = listen_in(ns, TwoHosts::SERVER_V4.into(), port);
    let target = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let run = start(&hosts, &target.to_string());
    assert_times_out(&hosts.client, target);
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (22, Some("reply_dropped")), "{v:#}\n{stderr}");
    assert!(v["nft_reply"].is_null(), "no netfilter rule dropped it: {v:#}");
    let drop = &v["attempt"]["reply_drop"];
    assert_eq!(drop["segment"], "syn_ack", "{v:#}");
    let reason = drop["reason"].as_str().unwrap_or_default().to_string();
    match expected_tc_egress_reason() {
        Some(expected) => assert_eq!(reason, expected, "{v:#}"),
        // A kernel without drop reasons: reach says so instead of naming one.
        None => assert!(reason.starts_with("UNKNOWN"), "{v:#}"),
    }
    let evidence = lines(&v, "evidence");
    let place =
        format!("the SYN-ACK died on its way out: the kernel dropped it: drop reason {reason}");
    assert!(has(&evidence, &place), "evidence lacks {place:?}: {evidence:#?}");
    if reason == "TC_EGRESS" {
        let fix = lines(&v, "fix");
        assert!(has(&fix, &format!("tc filter show dev {dev} egress")), "{fix:#?}");
    }
    assert_eq!(v["path"].as_array().unwrap().last().unwrap()["name"], "reply", "{v:#}");
    check.assert_nothing_new("reach why");
}

#[test]
fn closed_port_whose_rst_is_dropped_stays_no_listener_and_says_the_rst_died() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyr-rst").unwrap();
    let port = 7414;
    let (handle, text) =
        output_rule(&hosts.server, &format!("tcp sport {port} tcp flags & rst == rst drop"));
    let check = leftovers(&hosts);
    let target = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let run = start(&hosts, &target.to_string());
    // Nothing listens: the kernel answers with a RST, which the rule kills.
    assert_times_out(&hosts.client, target);
    let (code, v, stderr) = finish(run);
    assert_eq!((code, v["verdict"].as_str()), (12, Some("no_listener")), "{v:#}\n{stderr}");
    let evidence = lines(&v, "evidence");
    assert!(
        has(
            &evidence,
            "the RST answering the SYN was dropped on its way out (netfilter: table inet reply_test, chain output"
        ) && has(&evidence, &format!("(handle {handle}) `{text}`")),
        "{evidence:#?}"
    );
    assert!(has(&evidence, "a timeout, not \"connection refused\""), "{evidence:#?}");
    assert_eq!(v["attempt"]["reply_drop"]["segment"], "rst", "{v:#}");
    assert_eq!(v["attempt"]["drop"]["reason"], "NO_SOCKET", "{v:#}");
    let path = v["path"].as_array().unwrap();
    assert!(path.iter().all(|h| h["name"] != "reply"), "the socket hop failed first: {v:#}");
    check.assert_nothing_new("reach why");
}
