//! `reach agent` (issue 16): the fleet mode, scraped as Prometheus scrapes it. Real traffic
//! between lab namespaces, real listeners; every expected number comes from what the test sent.
//! Runs one agent at a time: each agent taps every namespace of the machine, so two would see
//! each other's attachments as leftovers.
use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{FromRawFd as _, OwnedFd},
    sync::Mutex,
    time::{Duration, Instant},
};

use reach_agent::lab::{NetNs, TwoHosts, Veth, VethEnd};
use reach_tests::{
    agent_run::AgentRun,
    leftovers::{Leftovers, Scope},
    nft_drop_rule, prometheus, require_root,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn connect(hosts: &TwoHosts, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, port));
    hosts.client.run_in(move || TcpStream::connect_timeout(&addr, timeout)).unwrap()
}

/// The traffic of one namespace pair, scraped: accepted, refused (closed port) and dropped (an
/// nft rule) attempts, each counted by outcome and by verdict class, the drops by reason, and
/// one JSON line per failed attempt whose verdict agrees with the metric.
#[test]
fn a_scrape_counts_each_attempt_by_outcome_and_verdict_and_each_drop_by_reason() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("ag-traffic").unwrap();
    let srv = hosts.server.name().to_string();
    let listener =
        hosts.server.run_in(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 7301))).unwrap().unwrap();
    nft_drop_rule(&hosts.server, "agtest", 7303);
    let agent = AgentRun::start(&["--json", "--flow-timeout", "1"]);
    // Watched once discovery has tapped the namespace.
    agent.scrape_until("the server namespace to be watched", Duration::from_secs(10), |s| {
        s.sum("reach_namespace_interfaces", &[("netns", &srv)]) >= 2.0
    });
    for _ in 0..3 {
        let c = connect(&hosts, 7301, Duration::from_secs(2)).expect("port 7301 listens");
        drop(c);
    }
    for _ in 0..2 {
        let e = connect(&hosts, 7302, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }
    let e = connect(&hosts, 7303, Duration::from_millis(1500)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "the nft rule drops port 7303: {e}");
    let ns = [("netns", srv.as_str())];
    let s = agent.scrape_until("every attempt settled", Duration::from_secs(15), |s| {
        s.sum("reach_connection_attempts_total", &ns) >= 6.0
    });
    let outcome =
        |o: &str| s.sum("reach_connection_attempts_total", &[("netns", &srv), ("outcome", o)]);
    assert_eq!(outcome("accepted"), 3.0, "{}", s.text);
    assert_eq!(outcome("reset"), 2.0, "{}", s.text);
    assert_eq!(outcome("dropped"), 1.0, "{}", s.text);
    assert_eq!(s.type_of("reach_connection_attempts_total"), Some("counter"));
    // Every SYN: 3 + 2, and the dropped one with its retransmissions (≥ 1).
    assert!(s.sum("reach_syn_total", &ns) >= 6.0, "{}", s.text);
    let reason = |r: &str| s.sum("reach_drops_total", &[("netns", &srv), ("reason", r)]);
    assert!(reason("NETFILTER_DROP") >= 1.0, "{}", s.text);
    assert!(reason("NO_SOCKET") >= 2.0, "{}", s.text);
    // The verdict classes, as `reach why` names them.
    let class =
        |c: &str| s.sum("reach_failed_connection_attempts_total", &[("netns", &srv), ("class", c)]);
    assert_eq!(class("no_listener"), 2.0, "{}", s.text);
    assert_eq!(s.sum("reach_failed_connection_attempts_total", &ns), 3.0, "{}", s.text);
    let dropped_class = s
        .matching("reach_failed_connection_attempts_total", &ns)
        .find(|x| x.labels["class"] != "no_listener")
        .map(|x| x.labels["class"].clone())
        .expect("the dropped attempt's class");
    assert!(
        dropped_class.contains("netfilter") || dropped_class.contains("firewall"),
        "{dropped_class}"
    );

    let lines = agent.run.wait_for_lines("3 failed attempts", |l| {
        l.iter().filter(|v| v["type"] == "failed_attempt").count() >= 3
    });
    let failed: Vec<_> = lines.iter().filter(|v| v["type"] == "failed_attempt").collect();
    assert_eq!(failed.len(), 3, "{failed:#?}");
    for f in &failed {
        assert_eq!(f["netns"]["name"], srv.as_str(), "{f}");
        assert!(f["client"].as_str().unwrap().starts_with(&TwoHosts::CLIENT_V4.to_string()), "{f}");
        let port = f["server"].as_str().unwrap().rsplit(':').next().unwrap().to_string();
        let want = if port == "7302" { "no_listener" } else { dropped_class.as_str() };
        assert_eq!(f["verdict"], want, "{f}");
        assert!(
            !f["fix"].as_array().unwrap().is_empty(),
            "a failed attempt comes with its fix: {f}"
        );
        assert!(f["ask"].as_str().unwrap().contains(&format!("--netns {srv}")), "{f}");
    }
    let (code, took, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(2), "SIGTERM to exit took {took:?}");
    drop(listener);
}

/// A TCP listener socket made by hand in the calling thread's namespace: family, address,
/// IPV6_V6ONLY, SO_BINDTODEVICE — the three ways to shut clients out.
fn listen_raw(v6: bool, addr: &str, port: u16, v6only: bool, device: Option<&str>) -> OwnedFd {
    // SAFETY: plain socket calls on a fresh fd, owned by the OwnedFd at once.
    unsafe {
        let fd =
            libc::socket(if v6 { libc::AF_INET6 } else { libc::AF_INET }, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let owned = OwnedFd::from_raw_fd(fd);
        if v6 {
            let one: libc::c_int = v6only.into();
            libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&raw const one).cast(), 4);
        }
        if let Some(dev) = device {
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as u32,
            );
            assert_eq!(r, 0, "SO_BINDTODEVICE {dev}");
        }
        let r = if v6 {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = port.to_be();
            sa.sin6_addr.s6_addr = addr.parse::<std::net::Ipv6Addr>().unwrap().octets();
            libc::bind(fd, (&raw const sa).cast(), size_of::<libc::sockaddr_in6>() as u32)
        } else {
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = port.to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(addr.parse::<Ipv4Addr>().unwrap().octets());
            libc::bind(fd, (&raw const sa).cast(), size_of::<libc::sockaddr_in>() as u32)
        };
        assert_eq!(r, 0, "bind {addr}:{port}: {}", std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd, 16), 0);
        owned
    }
}

/// The seed's bug inside a pod: a server on 127.0.0.1 is something no Service reaches. The
/// gauge counts such listeners per namespace, by reason, and follows them as they close.
#[test]
fn unreachable_listeners_are_counted_by_reason_and_uncounted_when_they_close() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("ag-unreach").unwrap();
    let srv = hosts.server.name().to_string();
    let agent = AgentRun::start(&[]);
    let gauge = |s: &prometheus::Scrape, r: &str| {
        s.sum("reach_unreachable_listeners", &[("netns", &srv), ("reason", r)])
    };
    agent.scrape_until("the namespace watched", Duration::from_secs(10), |s| {
        s.has("reach_namespace_interfaces", &[("netns", &srv)])
    });
    let s = agent.scrape();
    for r in ["loopback_only", "v6only", "device_bound"] {
        assert_eq!(gauge(&s, r), 0.0, "nothing listens in {srv} yet ({r}):\n{}", s.text);
    }
    let socks = hosts
        .server
        .run_in(|| {
            vec![
                listen_raw(false, "127.0.0.1", 7311, false, None),
                listen_raw(true, "::", 7312, true, None),
                listen_raw(false, "0.0.0.0", 7313, false, Some(TwoHosts::SERVER_IF)),
                // Reachable by everyone: not counted.
                listen_raw(true, "::", 7314, false, None),
            ]
        })
        .unwrap();
    let s = agent.scrape_until("3 unreachable listeners", Duration::from_secs(5), |s| {
        ["loopback_only", "v6only", "device_bound"].iter().all(|r| gauge(s, r) == 1.0)
    });
    assert_eq!(s.sum("reach_unreachable_listeners", &[("netns", &srv)]), 3.0, "{}", s.text);
    assert_eq!(s.type_of("reach_unreachable_listeners"), Some("gauge"));
    drop(socks);
    agent.scrape_until("the closed listeners uncounted", Duration::from_secs(5), |s| {
        s.sum("reach_unreachable_listeners", &[("netns", &srv)]) == 0.0
    });
    let (code, _, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
}

/// Whether interface `name` exists in `ns`.
fn has_link(ns: &NetNs, name: &str) -> bool {
    ns.ip(&["-o", "link", "show"])
        .unwrap()
        .lines()
        .any(|l| l.contains(&format!(": {name}@")) || l.contains(&format!(": {name}:")))
}

/// Hot-plug: a namespace created after the agent started is watched; a veth moved into it
/// with an address is tapped within a second (its SYNs are counted); when the namespace is
/// deleted the agent lets go of it — nothing of reach keeps it alive (its veth's peer in a
/// third namespace disappears with it, as it does when nobody holds it) — and its series expire
/// after the grace period. The leak check is shown to fail while something holds the namespace.
#[test]
fn namespaces_and_interfaces_that_come_and_go_are_followed_and_released() {
    require_root();
    let _s = serial();
    let agent = AgentRun::start(&["--series-grace", "2", "--flow-timeout", "1"]);
    let before = agent.scrape().sum("reach_watched_namespaces", &[]);
    let anchor = NetNs::new("ag-anchor").unwrap();
    let hp = NetNs::new("ag-hotplug").unwrap();
    let hp_name = hp.name().to_string();
    agent.scrape_until("the new namespace watched", Duration::from_secs(5), |s| {
        s.sum("reach_watched_namespaces", &[]) >= before + 2.0
    });
    let ifaces_before = agent.scrape().sum("reach_watched_interfaces", &[]);
    let added = Instant::now();
    let link = Veth::create(
        VethEnd::new(&hp, "hp0").addrs(&["10.78.0.1/24"]),
        VethEnd::new(&anchor, "anc0").addrs(&["10.78.0.2/24"]),
    )
    .unwrap();
    agent.scrape_until("the new veth tapped", Duration::from_secs(1), |s| {
        s.sum("reach_watched_interfaces", &[]) >= ifaces_before + 2.0
    });
    eprintln!("veth tapped {:?} after it was added", added.elapsed());
    // Its SYNs are seen (a closed port: refused at once).
    let addr = SocketAddr::from(([10, 78, 0, 1], 7321));
    let e = anchor
        .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    agent.scrape_until("the SYN over the hot-plugged veth", Duration::from_secs(5), |s| {
        s.sum("reach_syn_total", &[("netns", &hp_name)]) >= 1.0
    });

    // The leak check itself: while a handle on the namespace is held, it outlives its name and
    // its veth stays; the check must see that.
    let held = std::fs::File::open(hp.path()).unwrap();
    let hp_path = hp.path().to_path_buf();
    hp.remove().unwrap();
    assert!(!hp_path.exists());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        has_link(&anchor, "anc0"),
        "a held namespace keeps its veth: the check below means something"
    );
    drop(held);
    let gone_at = Instant::now();
    reach_tests::wait_until(
        "the deleted namespace to be freed (its veth peer gone) while the agent runs",
        Duration::from_secs(15),
        || !has_link(&anchor, "anc0"),
    );
    eprintln!("namespace freed {:?} after its last handle closed", gone_at.elapsed());
    drop(link); // both ends went with the namespace
    let s = agent.scrape_until("the deleted namespace forgotten", Duration::from_secs(5), |s| {
        s.sum("reach_watched_namespaces", &[]) <= before + 1.0
    });
    assert!(
        s.has("reach_syn_total", &[("netns", &hp_name)]),
        "series stay for the grace period:\n{}",
        s.text
    );
    agent.scrape_until("the deleted namespace's series expired", Duration::from_secs(8), |s| {
        !s.text.contains(&format!("netns=\"{hp_name}\""))
    });
    let (code, _, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
}

/// SIGTERM: the agent detaches everything and exits 0 within 2 s; nothing of it stays on the
/// interfaces of a namespace it watched (TCX links, qdiscs, filters, programs, records).
#[test]
fn sigterm_detaches_everything_and_exits_zero_within_two_seconds() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("ag-term").unwrap();
    let check =
        Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &[TwoHosts::SERVER_IF] });
    let agent = AgentRun::start(&[]);
    let srv = hosts.server.name().to_string();
    agent.scrape_until("the server namespace watched", Duration::from_secs(10), |s| {
        s.sum("reach_namespace_interfaces", &[("netns", &srv)]) >= 2.0
    });
    assert!(
        !check.new_since().is_empty(),
        "the agent attached in {srv}: the leftover check has something to find"
    );
    let (code, took, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(2), "SIGTERM to exit took {took:?}:\n{err}");
    check.assert_nothing_new("after reach agent's SIGTERM");
}

/// Bad --metrics: malformed, or taken by another process: a message naming the address and the
/// fix, exit 2, and nothing attached.
#[test]
fn a_bad_or_busy_metrics_address_is_refused_before_anything_is_attached() {
    require_root();
    let _s = serial();
    for bad in ["nonsense", "127.0.0.1:99999", "localhost"] {
        let out = reach_tests::reach(&["agent", "--metrics", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", reach_tests::show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad) || err.contains("--metrics"), "{bad}: {err}");
    }
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let before = reach_tests::leftovers::orphaned_programs("reach_");
    let out = reach_tests::reach(&["agent", "--metrics", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", reach_tests::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "the message names the address: {err}");
    assert!(
        !err.contains("watching"),
        "nothing may be attached before the address is taken: {err}"
    );
    assert_eq!(reach_tests::leftovers::orphaned_programs("reach_"), before);
}

/// The label bound: with room for one namespace per metric, SYNs of further namespaces are
/// counted under "other" (none lost), and the fold itself is counted.
#[test]
fn label_sets_beyond_the_bound_fold_into_other_without_losing_counts() {
    require_root();
    let _s = serial();
    let a = TwoHosts::new("ag-card1").unwrap();
    let b = TwoHosts::new("ag-card2").unwrap();
    let agent = AgentRun::start(&["--max-label-sets", "1", "--flow-timeout", "1"]);
    for hosts in [&a, &b] {
        for _ in 0..2 {
            let _ = connect(hosts, 7331, Duration::from_secs(2)).unwrap_err();
        }
    }
    let names = [a.server.name().to_string(), b.server.name().to_string()];
    let s = agent.scrape_until("4 SYNs counted", Duration::from_secs(10), |s| {
        let ours: f64 = names.iter().map(|n| s.sum("reach_syn_total", &[("netns", n)])).sum();
        ours + s.sum("reach_syn_total", &[("netns", "other")]) >= 4.0
    });
    let distinct: std::collections::BTreeSet<&str> = s
        .matching("reach_syn_total", &[])
        .map(|x| x.labels["netns"].as_str())
        .filter(|n| *n != "other")
        .collect();
    assert!(distinct.len() <= 1, "one label set allowed, got {distinct:?}:\n{}", s.text);
    assert!(s.sum("reach_syn_total", &[("netns", "other")]) >= 2.0, "{}", s.text);
    assert!(s.sum("reach_label_sets_folded_total", &[]) >= 1.0, "{}", s.text);
    let (code, _, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
}

/// `--trace-port`: SYNs to the port are traced through nftables in every watched namespace,
/// those that appear later included (but not in the ones `--no-trace-netns` names: here the
/// host, whose ruleset stays byte for byte the same): a failed attempt names the table, chain
/// and rule that dropped it, the verdict is counted, and reach's table is gone afterwards.
#[test]
fn traced_ports_name_the_rule_that_dropped_an_attempt_in_namespaces_old_and_new() {
    require_root();
    let _s = serial();
    let root = reach_tests::ruleset::RulesetSnapshot::take(None);
    let early = TwoHosts::new("ag-trace1").unwrap();
    let early_handle = nft_drop_rule(&early.server, "agtrace", 7343);
    let check =
        Leftovers::snapshot(&Scope { netns: Some(&early.server), ifaces: &[TwoHosts::SERVER_IF] });
    let agent = AgentRun::start(&[
        "--json",
        "--flow-timeout",
        "1",
        "--trace-port",
        "7343",
        "--no-trace-netns",
        "host",
    ]);
    let traced = |hosts: &TwoHosts| {
        hosts.server.run("nft", &["list", "tables"]).unwrap().contains("reach_trace")
    };
    reach_tests::wait_until(
        "reach's trace table in the early namespace",
        Duration::from_secs(5),
        || traced(&early),
    );
    // A namespace that appears while the agent runs is traced too.
    let late = TwoHosts::new("ag-trace2").unwrap();
    let late_handle = nft_drop_rule(&late.server, "agtrace", 7343);
    let late_srv = late.server.name().to_string();
    agent.scrape_until("the late namespace watched", Duration::from_secs(10), |s| {
        s.sum("reach_namespace_interfaces", &[("netns", &late_srv)]) >= 2.0
    });
    reach_tests::wait_until(
        "reach's trace table in the late namespace",
        Duration::from_secs(5),
        || late.server.run("nft", &["list", "tables"]).unwrap().contains("reach_trace"),
    );
    for (hosts, handle) in [(&early, early_handle), (&late, late_handle)] {
        let e = connect(hosts, 7343, Duration::from_millis(1500)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        let srv = hosts.server.name().to_string();
        let line = agent.run.wait_for_json("the traced failed attempt", |v| {
            v["type"] == "failed_attempt" && v["netns"]["name"] == srv.as_str()
        });
        assert_eq!(line["firewall"]["table"], "inet agtrace", "{line:#}");
        assert_eq!(line["firewall"]["rule_handle"], handle, "{line:#}");
        assert_eq!(line["firewall"]["verdict"], "drop", "{line:#}");
        assert_eq!(line["outcome"], "dropped", "{line:#}");
        // The verdict names that rule, and the fix removes or overrides exactly it.
        assert_eq!(line["verdict"], "other_netfilter_drop", "{line:#}");
        let fix = line["fix"].to_string();
        assert!(fix.contains("agtrace") && fix.contains(&format!("handle {handle}")), "{line:#}");
        let s = agent.scrape_until("the verdict counted", Duration::from_secs(5), |s| {
            s.sum(
                "reach_firewall_verdicts_total",
                &[
                    ("netns", &srv),
                    ("scope_kind", "table"),
                    ("scope", "inet agtrace"),
                    ("verdict", "drop"),
                ],
            ) >= 1.0
        });
        assert_eq!(s.type_of("reach_firewall_verdicts_total"), Some("counter"));
    }
    let (code, _, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    assert!(!traced(&late), "reach's table is removed on exit");
    check.assert_nothing_new("after reach agent traced port 7343");
    root.assert_unchanged("reach agent --no-trace-netns host");
}
