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
        trace_table::{Lifetime, TraceTable},
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

/// What `nft` (the tool that reads it back from the kernel) says reach's table holds.
fn listed(hosts: &TwoHosts) -> String {
    hosts.server.run("nft", &["list", "table", "inet", "reach_trace"]).unwrap()
}

#[test]
fn the_table_nft_reads_back_marks_only_syns_to_the_ports_and_their_replies() {
    require_root();
    let hosts = TwoHosts::new("trace-rules").unwrap();
    let table = TraceTable::install(hosts.server.path(), &[8080, 9090]).unwrap();
    let rules = listed(&hosts);
    eprintln!("{rules}");
    // The set holds both ports; each chain hooks at -350, before conntrack and raw.
    assert!(
        rules.contains("type inet_service") && rules.contains("elements = { 8080, 9090 }"),
        "{rules}"
    );
    assert!(rules.contains("type filter hook prerouting priority -350; policy accept;"), "{rules}");
    assert!(rules.contains("type filter hook output priority -350; policy accept;"), "{rules}");
    // nft prints a flags match as `syn / syn,ack` (1.0 on) or `& (syn | ack) == syn` (before).
    let count = |forms: [&str; 2], port: &str| {
        forms
            .iter()
            .map(|f| {
                rules
                    .matches(&format!("tcp flags {f} tcp {port} @ports meta nftrace set 1"))
                    .count()
            })
            .sum::<usize>()
    };
    assert_eq!(
        count(["syn / syn,ack", "& (syn | ack) == syn"], "dport"),
        2,
        "a remote and a local client's SYN: {rules}"
    );
    assert_eq!(
        count(["syn,ack / syn,ack", "& (syn | ack) == syn | ack"], "sport"),
        1,
        "the SYN-ACK: {rules}"
    );
    assert_eq!(count(["rst / rst", "& rst == rst"], "sport"), 1, "the RST: {rules}");
    assert_eq!(rules.matches("meta nftrace set 1").count(), 4, "nothing else is marked: {rules}");
    // Owned exactly when the kernel says the table has an owner.
    let owner_flag = rules.contains("flags owner");
    assert_eq!(table.lifetime() == Lifetime::Owned, owner_flag, "{rules}");
    drop(table);
    let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
    assert!(!tables.contains("reach_trace"), "dropped, the table is gone: {tables}");
}

#[test]
fn installing_replaces_a_stale_unowned_table() {
    require_root();
    let hosts = TwoHosts::new("trace-stale").unwrap();
    // What a SIGKILLed run leaves on a kernel without table owners (and what reach before
    // owned tables left on every kernel): an unowned table marking another port.
    hosts
        .server
        .run("nft", &["add table inet reach_trace; add chain inet reach_trace prerouting { type filter hook prerouting priority -350; }; add rule inet reach_trace prerouting tcp dport 1 meta nftrace set 1"])
        .unwrap();
    assert!(listed(&hosts).contains("dport 1 "), "the stale table is in place");
    let table = TraceTable::install(hosts.server.path(), &[7201]).unwrap();
    let rules = listed(&hosts);
    assert!(rules.contains("elements = { 7201 }") && !rules.contains("dport 1 "), "{rules}");
    drop(table);
}

#[test]
fn a_second_tracer_cannot_take_a_table_another_live_process_owns() {
    require_root();
    let hosts = TwoHosts::new("trace-two").unwrap();
    let first = TraceTable::install(hosts.server.path(), &[7202]).unwrap();
    let second = TraceTable::install(hosts.server.path(), &[7203]);
    match first.lifetime() {
        Lifetime::Owned => {
            let e = format!("{:#}", second.err().expect("the owner's table is not handed over"));
            assert!(e.contains("belongs to another running process"), "{e}");
            assert!(
                listed(&hosts).contains("elements = { 7202 }"),
                "the first tracer's table is intact"
            );
            // `nft flush ruleset` by someone else skips an owned table (and takes the rest).
            hosts.server.run("nft", &["add", "table", "inet", "someone_elses"]).unwrap();
            hosts.server.run("nft", &["flush", "ruleset"]).unwrap();
            let tables = hosts.server.run("nft", &["list", "tables"]).unwrap();
            assert!(!tables.contains("someone_elses"), "the flush ran: {tables}");
            assert!(listed(&hosts).contains("elements = { 7202 }"), "flush ruleset left it");
        }
        // Without owners the newer install replaces the table, as it replaces a stale one.
        Lifetime::UntilDrop => {
            second.unwrap();
            assert!(listed(&hosts).contains("elements = { 7203 }"));
        }
    }
    drop(first);
}
