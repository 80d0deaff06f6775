//! `reply_dropped` from hand-built evidence: the decision order around it, its evidence, its
//! fix, its path hop, and the closed port whose RST died (a lookup class stays).
use std::net::SocketAddr;

use crate::{
    diagnose::{Evidence, NetfilterRule, Verdict, diagnose},
    model::{
        flows::{DropEvidence, Family, FlowRecord, Outcome, Reply, ReplyDropEvidence},
        listener_view::ListenerView,
    },
    probes::sock_event::NetnsRef,
};

const NS: u64 = 7;

fn netns() -> NetnsRef {
    NetnsRef { inode: NS, name: "srv".into() }
}

fn listener(addr: &str) -> ListenerView {
    ListenerView {
        kind: "listener",
        netns: netns(),
        pid: Some(42),
        pids: vec![42],
        comm: Some("server".into()),
        family: if addr.contains(':') { "ipv6" } else { "ipv4" },
        proto: "tcp",
        addr: addr.into(),
        port: 8080,
        backlog: Some(128),
        accept_queue: Some(0),
        v6only: None,
        loopback_only: false,
        bound_dev_if: None,
        cookie: 9,
    }
}

fn flow(client: &str, server: &str, reply_drop: Option<(Reply, &str)>) -> FlowRecord {
    let (client, server): (SocketAddr, SocketAddr) =
        (client.parse().unwrap(), server.parse().unwrap());
    FlowRecord {
        kind: "flow",
        netns: NS,
        family: if client.is_ipv4() { Family::V4 } else { Family::V6 },
        client,
        server,
        outcome: Outcome::Unanswered,
        syn_count: 2,
        first_syn_ns: Some(1),
        last_syn_ns: Some(2),
        first_event_ns: 1,
        last_event_ns: 2,
        synack_sent: false,
        rst_sent: false,
        ifindex: Some(2),
        drop: None,
        reply_drop: reply_drop.map(|(segment, reason)| ReplyDropEvidence {
            segment,
            reason: reason.into(),
            location: Some("nf_hook_slow+0x9c".into()),
            count: 2,
        }),
        duration_ms: 1000.0,
    }
}

fn output_rule() -> NetfilterRule {
    NetfilterRule {
        family: "inet".into(),
        table: "filter".into(),
        chain: "output".into(),
        handle: Some(4),
        rule: Some("tcp sport 8080 tcp flags & (syn | ack) == syn | ack drop".into()),
        action: "drop".into(),
        reply: true,
        ..Default::default()
    }
}

/// The server's answer died at an output rule: traffic watched, the SYN arrived on eth0.
fn evidence(f: FlowRecord, listeners: Vec<ListenerView>) -> Evidence {
    Evidence {
        port: 8080,
        netns: Some(netns()),
        watched: true,
        syn_seen: true,
        iface: Some("eth0".into()),
        flow: Some(f),
        listeners,
        ..Evidence::default()
    }
}

fn text(lines: &[String]) -> String {
    lines.join("\n")
}

#[test]
fn synack_dropped_by_an_output_rule_is_reply_dropped_with_the_rule_and_its_fix() {
    for (c, s, l) in [
        ("10.0.0.9:40000", "10.0.0.5:8080", "0.0.0.0"),
        ("[fd00::9]:40000", "[fd00::5]:8080", "::"),
    ] {
        let mut e =
            evidence(flow(c, s, Some((Reply::SynAck, "NETFILTER_DROP"))), vec![listener(l)]);
        e.reply_netfilter = Some(output_rule());
        let d = diagnose(&e);
        assert_eq!(d.verdict, Verdict::ReplyDropped, "{d:#?}");
        assert_eq!(d.verdict.exit_code(), 22);
        let ev = text(&d.evidence);
        assert!(ev.contains("listening: pid 42 (server)"), "who answered: {ev}");
        assert!(ev.contains(&format!("the server answered with a SYN-ACK to {c}")), "{ev}");
        assert!(ev.contains("(2 times"), "{ev}");
        assert!(
            ev.contains(
                "the SYN-ACK died on its way out: netfilter: table inet filter, chain output \
                 (handle 4) `tcp sport 8080"
            ),
            "{ev}"
        );
        let fix = text(&d.fix);
        assert!(
            ev.contains("a netfilter rule drops the server's replies (tcp sport 8080)"),
            "{ev}"
        );
        assert!(fix.starts_with("nft "), "the first fix is a command to run: {fix}");
        assert!(fix.contains("inet filter output"), "the rule's own chain: {fix}");
        assert!(fix.contains("handle 4"), "{fix}");
        // The path: every hop of the SYN fine, the reply hop fails with where it died.
        let names: Vec<&str> = d.path.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["client", "interface eth0", "firewall", "socket", "reply"], "{d:#?}");
        assert!(d.path[..4].iter().all(|h| h.ok), "{d:#?}");
        assert!(!d.path[4].ok && d.path[4].note.contains("chain output"), "{d:#?}");
    }
}

/// Today's wrong answer, for contrast: without the reply evidence the same attempt is a silent
/// kernel drop. The reply evidence alone (trace or kfree_skb) is what turns it.
#[test]
fn either_source_of_reply_evidence_decides_and_neither_is_a_silent_drop() {
    let plain = evidence(flow("10.0.0.9:40000", "10.0.0.5:8080", None), vec![listener("0.0.0.0")]);
    assert_eq!(diagnose(&plain).verdict, Verdict::KernelDrop);
    let mut traced = plain.clone();
    traced.reply_netfilter = Some(output_rule());
    assert_eq!(diagnose(&traced).verdict, Verdict::ReplyDropped);
    // An accept walk of the reply is no evidence of a death.
    let mut accepted = plain.clone();
    accepted.reply_netfilter = Some(NetfilterRule { action: "accept".into(), ..output_rule() });
    assert_eq!(diagnose(&accepted).verdict, Verdict::KernelDrop);
}

/// A TC egress filter dropped the SYN-ACK after reach's egress probe saw it: the drop reason
/// and location are named, and the fix lists the interface's TC filters.
#[test]
fn synack_dropped_by_tc_egress_names_the_reason_and_the_interface() {
    let mut f = flow("10.0.0.9:40000", "10.0.0.5:8080", Some((Reply::SynAck, "TC_EGRESS")));
    f.synack_sent = true;
    f.reply_drop.as_mut().unwrap().location = Some("tcf_classify+0x51".into());
    let d = diagnose(&evidence(f, vec![listener("0.0.0.0")]));
    assert_eq!(d.verdict, Verdict::ReplyDropped, "{d:#?}");
    let ev = text(&d.evidence);
    assert!(ev.contains("drop reason TC_EGRESS at tcf_classify+0x51"), "{ev}");
    assert!(ev.contains("passed reach's TC egress probe on eth0"), "{ev}");
    assert!(text(&d.fix).contains("tc filter show dev eth0 egress"), "{:?}", d.fix);
}

/// A closed port: the SYN found no socket (NO_SOCKET) and its RST died on the way out. The
/// first broken hop wins (no_listener); the evidence says the client saw a timeout.
#[test]
fn closed_port_whose_rst_died_stays_no_listener_with_a_line_saying_so() {
    let mut f = flow("10.0.0.9:40000", "10.0.0.5:8080", Some((Reply::Rst, "NETFILTER_DROP")));
    f.outcome = Outcome::Dropped;
    f.drop = Some(DropEvidence { reason: "NO_SOCKET".into(), location: None, count: 1, syn: true });
    let mut e = evidence(f, Vec::new());
    e.reply_netfilter = Some(output_rule());
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::NoListener, "{d:#?}");
    let ev = text(&d.evidence);
    assert!(ev.contains("the RST answering the SYN was dropped on its way out"), "{ev}");
    assert!(ev.contains("a timeout, not \"connection refused\""), "{ev}");
    assert!(d.path.iter().all(|h| h.name != "reply"), "no reply hop: {d:#?}");
    // Without the reply evidence, no such line.
    let mut quiet = e.clone();
    quiet.reply_netfilter = None;
    quiet.flow.as_mut().unwrap().reply_drop = None;
    let d = diagnose(&quiet);
    assert_eq!(d.verdict, Verdict::NoListener);
    assert!(!text(&d.evidence).contains("on its way out"), "{d:#?}");
}

/// Earlier hops win: a SYN the firewall dropped, or an accepted attempt, never becomes
/// reply_dropped whatever happened to some reply.
#[test]
fn earlier_hops_and_accepted_attempts_win() {
    let mut e = evidence(
        flow("10.0.0.9:40000", "10.0.0.5:8080", Some((Reply::SynAck, "NETFILTER_DROP"))),
        vec![listener("0.0.0.0")],
    );
    e.netfilter = Some(NetfilterRule { chain: "input".into(), reply: false, ..output_rule() });
    assert_eq!(diagnose(&e).verdict, Verdict::OtherNetfilterDrop);
    let mut accepted = e.clone();
    accepted.netfilter = None;
    accepted.flow.as_mut().unwrap().outcome = Outcome::Accepted;
    assert_eq!(diagnose(&accepted).verdict, Verdict::Reachable);
    // A pending attempt is predicted from the listeners, like every other class.
    let mut pending = accepted.clone();
    pending.flow.as_mut().unwrap().outcome = Outcome::Pending;
    assert_eq!(diagnose(&pending).verdict, Verdict::Reachable);
    let mut unanswered = accepted;
    unanswered.flow.as_mut().unwrap().outcome = Outcome::Unanswered;
    assert_eq!(diagnose(&unanswered).verdict, Verdict::ReplyDropped, "the contrast");
}
