//! Each checker catches what it is for: a diagnosis of a plain case passes, the same diagnosis
//! broken the way the property forbids fails, naming the violation; and the generator reaches
//! every verdict.
use proptest::prelude::*;

use crate::{
    diagnose::{
        Evidence, diagnose,
        verdict::{Diagnosis, Verdict},
    },
    model::{flows::Outcome, listener_view::ListenerView},
};

use super::{CASES, checks::*, generate::*};

/// A client from eth0 to 10.0.0.5:8080 in netns host, with `outcome`.
fn attempt(outcome: Outcome, drop: Option<usize>) -> Evidence {
    let f = FlowSpec {
        outcome: [
            Outcome::Accepted,
            Outcome::Reset,
            Outcome::Dropped,
            Outcome::Unanswered,
            Outcome::Pending,
        ]
        .iter()
        .position(|o| *o == outcome)
        .expect("an outcome") as u8,
        dest: 3,
        local: false,
        arrival: 0,
        ifindex_known: true,
        drop,
        synack: false,
        reply_drop: None,
        named: 0,
    };
    let (flow, iface) = flow_record(&f, HOST);
    Evidence {
        port: PORT,
        netns: Some(ns(HOST)),
        watched: true,
        watched_ifaces: vec!["eth0".into()],
        syn_seen: true,
        iface,
        flow: Some(flow),
        interfaces: interfaces(false),
        ..Evidence::default()
    }
}

fn tcp(netns: u64, addr: usize) -> ListenerView {
    view(
        &ListenerSpec {
            ns: if netns == HOST { 0 } else { 2 },
            udp: false,
            other_port: false,
            v6: false,
            addr,
            v6only: false,
            dev: 0,
            owner: Some(100),
            twin: false,
        },
        HOST,
        1,
    )
}

/// `check` passes on `d` and fails once `broken` is applied, with `says` in the message.
fn catches(check: Check, e: &Evidence, broken: impl FnOnce(&mut Diagnosis), says: &str) {
    let mut d = diagnose(e);
    check(e, &d).unwrap_or_else(|why| panic!("the plain case must pass: {why}\n{e:#?}\n{d:#?}"));
    broken(&mut d);
    match check(e, &d) {
        Ok(()) => panic!("the broken diagnosis passed: {d:#?}"),
        Err(why) => assert!(why.contains(says), "{why:?} does not say {says:?}"),
    }
}

#[test]
fn each_property_catches_a_denied_listener() {
    // A wildcard listener refused a client (it came up since): kernel_drop, never no_listener.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 0)];
    let no_listener = |d: &mut Diagnosis| d.verdict = Verdict::NoListener;
    catches(listeners_are_never_denied, &e, no_listener, "verdict no_listener although pid 100");
    let other = |d: &mut Diagnosis| d.verdict = Verdict::ListenerInOtherNetns;
    catches(listeners_are_never_denied, &e, other, "listener_in_other_netns although");
    let line = |d: &mut Diagnosis| d.evidence.push("nothing listens on port 8080".into());
    catches(listeners_are_never_denied, &e, line, "\"nothing listens on port 8080\" although");
    let fix = |d: &mut Diagnosis| d.fix.push("start the server listening on port 8080".into());
    catches(listeners_are_never_denied, &e, fix, "start the server");
    // Listening in the other namespace only: no_listener's words are no violation of this one.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(LAB, 0)];
    let d = diagnose(&e);
    assert_eq!(d.verdict, Verdict::ListenerInOtherNetns);
    assert_eq!(listeners_are_never_denied(&e, &d), Ok(()));
}

#[test]
fn each_property_catches_a_reachable_that_is_not() {
    let reachable = |d: &mut Diagnosis| d.verdict = Verdict::Reachable;
    // Observed and refused.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 1)];
    catches(reachable_only_when_served, &e, reachable, "the attempt ended Some(Reset)");
    // Predicted, the firewall refuses.
    let mut e = attempt(Outcome::Pending, None);
    e.listeners = vec![tcp(HOST, 0)];
    e.prediction = build(&Spec { prediction: Some((1, true)), ..plain_spec() }).prediction;
    catches(reachable_only_when_served, &e, reachable, "a firewall decision");
    // Predicted, a loopback listener and a client from eth0: the lookup misses.
    let mut e = attempt(Outcome::Pending, None);
    e.listeners = vec![tcp(HOST, 1)];
    catches(reachable_only_when_served, &e, reachable, "no listener of the SYN's namespace takes");
    // Predicted for another destination than the client's.
    let mut e = attempt(Outcome::Pending, None);
    e.listeners = vec![tcp(HOST, 0)];
    let d = diagnose(&e);
    assert_eq!((d.verdict, reachable_only_when_served(&e, &d)), (Verdict::Reachable, Ok(())));
    let elsewhere = |d: &mut Diagnosis| {
        if let Some(l) = d.lookup.as_mut() {
            l.syn.daddr = ip("10.0.0.6");
        }
    };
    catches(reachable_only_when_served, &e, elsewhere, "the client dials 10.0.0.5");
}

/// A spec generating nothing but the port.
fn plain_spec() -> Spec {
    Spec {
        syn_ns: HOST,
        netns_known: true,
        listeners: Vec::new(),
        watched: false,
        syn_seen: false,
        flow: None,
        addr: None,
        iface: None,
        interfaces: None,
        attribution: None,
        netfilter: None,
        prediction: None,
        overflow: None,
        failed_binds: Vec::new(),
        holders: Vec::new(),
        wsl: None,
        sk_lookup: 0,
        reply_rule: None,
        netns_gone: false,
        unseen_syns: 0,
    }
}

#[test]
fn each_property_catches_a_fix_naming_what_is_not_there() {
    // A loopback listener and a client from eth0: loopback_only_bind, with a fix.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 1)];
    let f = fixes_name_what_exists;
    catches(f, &e, |d| d.fix.clear(), "loopback_only_bind without a fix");
    catches(f, &e, |d| d.fix.push(" ".into()), "an empty fix line");
    catches(f, &e, |d| d.fix.push("dial 10.1.2.3:8080".into()), "names 10.1.2.3");
    catches(f, &e, |d| d.fix.push("listen on [::]:9090".into()), "names port 9090");
    catches(f, &e, |d| d.fix.push("net.Listen(\"tcp\", \":9090\")".into()), "port 9090");
    catches(f, &e, |d| d.fix.push("stop pid 999 (x)".into()), "names pid 999");
    catches(f, &e, |d| d.fix.push("run it in netns elsewhere".into()), "netns elsewhere");
    catches(f, &e, |d| d.fix.push("bind it to interface eth7".into()), "interface eth7");
    catches(f, &e, |d| d.fix.push("nft delete rule inet filter input handle 7".into()), "handle 7");
    let nft = |d: &mut Diagnosis| d.fix.push("nft list chain inet filter input".into());
    catches(f, &e, nft, "names a netfilter rule, the evidence has none");
    catches(f, &e, |d| d.verdict = Verdict::Reachable, "reachable, yet a fix is given");
    // A rule in the evidence: its handle and chain, no other.
    let mut e = attempt(Outcome::Dropped, Some(2));
    e.netfilter = build(&Spec {
        watched: true,
        netfilter: Some((1, Some(12), false, false)),
        ..plain_spec()
    })
    .netfilter;
    let d = diagnose(&e);
    assert_eq!((d.verdict, f(&e, &d)), (Verdict::OtherNetfilterDrop, Ok(())), "{d:#?}");
    catches(
        f,
        &e,
        |d| d.fix.push("nft delete rule inet filter input handle 13".into()),
        "handle 13",
    );
    catches(
        f,
        &e,
        |d| d.fix.push("nft list chain inet filter forward".into()),
        "names chain inet filter forward, no rule",
    );
    catches(
        f,
        &e,
        |d| d.fix.push("iptables -I FORWARD 1 -j ACCEPT".into()),
        "names chain FORWARD, no rule",
    );
}

#[test]
fn each_property_catches_a_story_told_twice() {
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 1)];
    let s = one_story;
    catches(s, &e, |d| d.path[3].ok = true, "should fail at the socket hop");
    catches(s, &e, |d| d.path[2].ok = false, "should fail at the socket hop");
    catches(s, &e, |d| d.verdict = Verdict::FirewallDrop, "should fail at the firewall hop");
    catches(s, &e, |d| d.path[3].note = "gone".into(), "no evidence line");
    catches(s, &e, |d| d.path[1].name = "firewall".into(), "hop 1 is \"firewall\"");
    let said = |d: &mut Diagnosis| d.evidence.push("nothing listens on port 8080".into());
    catches(s, &e, said, "told with no_listener's words");
    let relabel = |v: Verdict| {
        move |d: &mut Diagnosis| {
            d.verdict = v;
        }
    };
    catches(s, &e, relabel(Verdict::FamilyMismatch), "no listener misses for that reason");
    catches(s, &e, relabel(Verdict::NoListener), "no_listener although a TCP socket listens");
    catches(s, &e, relabel(Verdict::ListenOverflow), "listen_overflow without an overflow");
    let reachable = |d: &mut Diagnosis| d.verdict = Verdict::Reachable;
    catches(s, &e, reachable, "reachable, yet the path does not pass every hop");
    // A family mismatch must name every listener of the namespace.
    let mut e = attempt(Outcome::Reset, Some(0));
    let v6only = ListenerSpec { v6: true, addr: 0, v6only: true, ..match_spec() };
    e.listeners = vec![view(&v6only, HOST, 1)];
    assert_eq!(diagnose(&e).verdict, Verdict::FamilyMismatch);
    let drop_listener = |d: &mut Diagnosis| d.evidence.retain(|l| !l.contains("pid 100"));
    catches(s, &e, drop_listener, "is not in the evidence");
    // So must a loopback-only bind.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 1)];
    catches(s, &e, drop_listener, "is not in the evidence");
}

fn match_spec() -> ListenerSpec {
    ListenerSpec {
        ns: 0,
        udp: false,
        other_port: false,
        v6: false,
        addr: 0,
        v6only: false,
        dev: 0,
        owner: Some(100),
        twin: false,
    }
}

#[test]
fn each_property_catches_the_wrong_tense() {
    let t = tense_matches_the_attempt;
    // Predicted: a loopback listener, the client will come from eth0.
    let mut e = attempt(Outcome::Pending, None);
    e.listeners = vec![tcp(HOST, 1)];
    let past = |d: &mut Diagnosis| d.evidence.push("the client dialed 10.0.0.5".into());
    catches(t, &e, past, "a prediction told in the past (\"the client dialed\")");
    catches(t, &e, |d| d.path[2].note = "let the SYN through".into(), "in the past");
    // Observed: the same refused.
    let mut e = attempt(Outcome::Reset, Some(0));
    e.listeners = vec![tcp(HOST, 1)];
    let cond = |d: &mut Diagnosis| d.evidence.push("a client dialing 10.0.0.5 would".into());
    catches(t, &e, cond, "an observed attempt told in the conditional");
}

/// The generator reaches every verdict (a property never shown a class says nothing about
/// it), each often enough to matter within [`CASES`].
#[test]
fn the_generator_reaches_every_verdict() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = evidence();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..CASES {
        let e = strategy.new_tree(&mut runner).expect("a generated case").current();
        *seen.entry(diagnose(&e).verdict.name()).or_insert(0u32) += 1;
    }
    let rare: Vec<&str> = Verdict::ALL
        .iter()
        .map(|v| v.name())
        .filter(|v| seen.get(v).is_none_or(|&n| n < CASES / 200))
        .collect();
    assert!(rare.is_empty(), "rarely or never generated: {rare:?}; generated: {seen:?}");
}
