//! nftables tracing (issue 6, item 3) in a lab namespace: reach's `inet reach_trace` table marks
//! SYNs to the watched port, the NFNLGRP_NFTRACE listener assembles each packet's walk, and the
//! deciding rule is identified by table, chain and handle. The table is gone afterwards and the
//! root namespace's ruleset is unchanged.
use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use reach_agent::{
    firewall::{
        trace::{Assembler, PacketTrace, Verdict},
        trace_listener::TraceListener,
        trace_table::TraceTable,
    },
    lab::TwoHosts,
};
use reach_tests::require_root;

#[test]
fn a_dropped_syn_is_traced_to_the_rule_that_dropped_it() {
    require_root();
    let root = reach_tests::ruleset::RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("trace").unwrap();
    let handle = reach_tests::nft_drop_rule(&hosts.server, "labfw", 7200);

    let table = TraceTable::install(hosts.server.path(), &[7200]).unwrap();
    let listener = TraceListener::open(hosts.server.path(), Duration::from_millis(200)).unwrap();
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, 7200));
    let client = std::thread::spawn({
        let client_ns = hosts.client.path().to_path_buf();
        move || {
            reach_agent::netns::enter::in_netns(&client_ns, || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(800)).map(drop)
            })
        }
    });
    let mut asm = Assembler::new(64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let trace: PacketTrace = loop {
        let mut done = None;
        for ev in listener.recv().unwrap().traces {
            if let Some(t) = asm.push(ev) {
                done = Some(t);
            }
        }
        if let Some(t) = done {
            break t;
        }
        assert!(Instant::now() < deadline, "no complete trace; open: {:#?}", asm.drain());
    };
    // The rule drops the SYN: the client gets no answer at all.
    let outcome = client.join().expect("client thread").expect("entering the client namespace");
    let err = outcome.expect_err("connected through a drop rule");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    let tuple = trace.tuple.expect("tuple from the trace headers");
    assert_eq!((tuple.dport, tuple.saddr.to_string()), (7200, TwoHosts::CLIENT_V4.to_string()));
    assert_eq!(trace.verdict(), Some(&Verdict::Drop));
    let d = trace.decision().unwrap();
    assert_eq!(
        (d.family, d.table.as_str(), d.chain.as_str(), d.rule_handle),
        ("inet", "labfw", "input", Some(handle))
    );
    assert!(
        trace.steps.iter().any(|s| s.table == "reach_trace"),
        "the walk starts at our marking rule: {trace:#?}"
    );

    drop(table);
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "{tables}");
    assert!(tables.contains("labfw"), "other tables untouched: {tables}");
    root.assert_unchanged("tracing a dropped SYN in lab namespaces");
}

#[test]
fn installing_replaces_a_stale_table() {
    require_root();
    let hosts = TwoHosts::new("trace-stale").unwrap();
    let first = TraceTable::install(hosts.server.path(), &[1]).unwrap();
    std::mem::forget(first); // a killed run leaves its table behind
    let second = TraceTable::install(hosts.server.path(), &[7201]).unwrap();
    let rules = hosts.server.run("nft", &["list", "table", "inet", "reach_trace"]).unwrap();
    assert!(rules.contains("7201") && !rules.contains("dport 1 "), "{rules}");
    drop(second);
}
