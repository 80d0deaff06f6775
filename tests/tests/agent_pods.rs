//! `reach agent` on a node with a REAL containerd (1.6, CRI built in) driven through the CRI as
//! kubelet drives it (see reach_tests::containerd): pods are named on metrics and failed
//! attempts; a pod whose server binds 127.0.0.1 shows in `reach_unreachable_listeners` with its
//! name; attempts from one pod to another's closed port, to the loopback-only pod, and through an
//! nft drop rule in a pod fail with pod names and verdicts; a deleted pod's series go away.
use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use reach_agent::lab::NetNsFd;
use reach_tests::{
    agent_run::AgentRun,
    bench_e2e::{cpu_seconds, status_kib},
    containerd::{Containerd, Network, connect_from, pod_net, sandbox::CONTAINER},
    require_root,
};

/// The agent's resident memory (kB) and CPU time (s) so far, from /proc.
fn footprint(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status_kib(&status, "VmRSS").expect("VmRSS in /proc/PID/status");
    (rss, cpu_seconds(pid as i32).unwrap())
}

#[test]
fn pods_are_named_on_metrics_and_failed_attempts_and_a_deleted_pods_series_go() {
    require_root();
    let cd = Containerd::start();
    let web = cd.run_pod("shop", "web"); // httpd on 0.0.0.0:8080
    let cache = cd.run_pod_with(
        "shop",
        "cache",
        Network::Pod,
        Some(&["/bin/httpd", "-f", "-p", "127.0.0.1:8080"]),
    );
    let client = cd.run_pod_with("tools", "client", Network::Pod, Some(&["/bin/sleep", "1000000"]));
    let (web_net, cache_net, client_net) =
        (pod_net(&cd, &web.uid), pod_net(&cd, &cache.uid), pod_net(&cd, &client.uid));
    let sock = cd.socket().display().to_string();
    let agent = AgentRun::start(&[
        "--cri-socket",
        &sock,
        "--json",
        "--flow-timeout",
        "1",
        "--series-grace",
        "2",
    ]);
    assert!(
        agent.run.stderr().contains("naming pods from CRI containerd"),
        "{}",
        agent.run.stderr()
    );

    let of = |pod: &'static str| {
        [("namespace", if pod == "client" { "tools" } else { "shop" }), ("pod", pod)]
    };
    let s = agent.scrape_until("the three pods watched, by name", Duration::from_secs(15), |s| {
        ["web", "cache", "client"]
            .iter()
            .all(|p| s.sum("reach_namespace_interfaces", &of(p)) >= 1.0)
    });
    // The pod's series carry its netns too: the join from a pod to `reach why --netns`.
    assert!(
        s.has("reach_namespace_interfaces", &[("netns", &web_net.name), ("pod", "web")]),
        "{}",
        s.text
    );
    // The seed's bug in a pod: its server is on loopback; no Service would ever reach it.
    let s = agent.scrape_until("cache's loopback-only listener", Duration::from_secs(10), |s| {
        s.sum("reach_unreachable_listeners", &[("pod", "cache"), ("reason", "loopback_only")])
            == 1.0
    });
    assert_eq!(s.sum("reach_unreachable_listeners", &[("pod", "web")]), 0.0, "{}", s.text);
    // And one line naming it, with its process, pod and container.
    let line = agent.run.wait_for_json("cache's unreachable_listener line", |v| {
        v["type"] == "unreachable_listener" && v["pod"]["name"] == "cache"
    });
    assert_eq!(
        (
            line["addr"].as_str(),
            line["port"].as_u64(),
            line["reason"].as_str(),
            line["comm"].as_str()
        ),
        (Some("127.0.0.1"), Some(8080), Some("loopback_only"), Some("httpd")),
        "{line}"
    );
    assert_eq!(
        (line["pod"]["namespace"].as_str(), line["pod"]["container"].as_str()),
        (Some("shop"), Some(CONTAINER)),
        "{line}"
    );
    assert_eq!(line["pod"]["uid"], cache.uid.as_str());

    // A pod started now whose second server finds the port taken: a failed bind, named.
    let clash = cd.run_pod_with(
        "shop",
        "clash",
        Network::Pod,
        Some(&[
            "/bin/sh",
            "-c",
            "/bin/httpd -p 8080; /bin/httpd -f -p 8080; exec /bin/sleep 1000000",
        ]),
    );
    let bind = agent.run.wait_for_json("clash's failed bind", |v| {
        v["type"] == "failed_bind" && v["pod"]["name"] == "clash"
    });
    assert_eq!(
        (bind["result"].as_str(), bind["port"].as_u64()),
        (Some("EADDRINUSE"), Some(8080)),
        "{bind}"
    );
    assert_eq!(
        (bind["pod"]["container"].as_str(), bind["comm"].as_str()),
        (Some(CONTAINER), Some("httpd")),
        "{bind}\n{}",
        agent.run.stderr()
    );
    drop(clash);

    // Pod to pod: accepted, a closed port, the loopback-only server, an nft drop in the pod.
    let web_ns = NetNsFd::open(&web_net.path).unwrap();
    web_ns.run("nft", &["add", "table", "inet", "podfilter"]).unwrap();
    web_ns
        .run("nft", &["add chain inet podfilter input { type filter hook input priority 0; policy accept; }"])
        .unwrap();
    web_ns.run("nft", &["add rule inet podfilter input tcp dport 8082 drop"]).unwrap();
    drop(
        connect_from(&client_net, SocketAddr::new(web_net.ip, 8080), Duration::from_secs(2))
            .expect("web serves 8080"),
    );
    let refused = |r: std::io::Result<TcpStream>| r.expect_err("must fail").kind();
    assert_eq!(
        refused(connect_from(
            &client_net,
            SocketAddr::new(web_net.ip, 8081),
            Duration::from_secs(2)
        )),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(
        refused(connect_from(
            &client_net,
            SocketAddr::new(cache_net.ip, 8080),
            Duration::from_secs(2)
        )),
        std::io::ErrorKind::ConnectionRefused,
        "cache listens on 127.0.0.1 only"
    );
    assert_eq!(
        refused(connect_from(
            &client_net,
            SocketAddr::new(web_net.ip, 8082),
            Duration::from_millis(1500)
        )),
        std::io::ErrorKind::TimedOut
    );
    let s = agent.scrape_until("every attempt settled", Duration::from_secs(15), |s| {
        s.sum("reach_connection_attempts_total", &of("web")) >= 3.0
            && s.sum("reach_connection_attempts_total", &of("cache")) >= 1.0
    });
    let attempts = |pod: &'static str, o: &str| {
        let [a, b] = of(pod);
        s.sum("reach_connection_attempts_total", &[a, b, ("outcome", o)])
    };
    assert_eq!(attempts("web", "accepted"), 1.0, "{}", s.text);
    assert_eq!(attempts("web", "reset"), 1.0, "{}", s.text);
    assert_eq!(attempts("web", "dropped"), 1.0, "{}", s.text);
    assert_eq!(attempts("cache", "reset"), 1.0, "{}", s.text);
    let class = |pod: &'static str, c: &str| {
        let [a, b] = of(pod);
        s.sum("reach_failed_connection_attempts_total", &[a, b, ("class", c)])
    };
    assert_eq!(class("web", "no_listener"), 1.0, "{}", s.text);
    assert_eq!(class("cache", "loopback_only_bind"), 1.0, "{}", s.text);
    assert_eq!(class("web", "other_netfilter_drop"), 1.0, "{}", s.text);
    assert!(
        s.sum("reach_drops_total", &[("pod", "web"), ("reason", "NETFILTER_DROP")]) >= 1.0,
        "{}",
        s.text
    );
    // The node's namespace forwarded those SYNs over its bridge (its veths carry link-local
    // addresses, so they are tapped): they are the pods' attempts, never the node's.
    let node = [("netns", cd.netns().name())];
    assert_eq!(s.sum("reach_connection_attempts_total", &node), 0.0, "{}", s.text);
    assert_eq!(s.sum("reach_syn_total", &node), 0.0, "{}", s.text);
    let lines = agent.run.wait_for_lines("3 failed attempts with pods", |l| {
        l.iter().filter(|v| v["type"] == "failed_attempt").count() >= 3
    });
    let failed: Vec<_> = lines.iter().filter(|v| v["type"] == "failed_attempt").collect();
    let verdict_of = |pod: &str, port: u16| {
        failed
            .iter()
            .find(|f| {
                f["pod"]["name"] == pod
                    && f["server"].as_str().unwrap().ends_with(&format!(":{port}"))
            })
            .unwrap_or_else(|| panic!("no failed attempt to {pod}:{port}: {failed:#?}"))
    };
    let f = verdict_of("web", 8081);
    assert_eq!(
        (f["verdict"].as_str(), f["pod"]["namespace"].as_str()),
        (Some("no_listener"), Some("shop")),
        "{f}"
    );
    assert_eq!(f["pod"]["uid"], web.uid.as_str());
    assert_eq!(verdict_of("cache", 8080)["verdict"], "loopback_only_bind");
    assert_eq!(verdict_of("web", 8082)["verdict"], "other_netfilter_drop");
    assert!(verdict_of("cache", 8080)["ask"].as_str().unwrap().contains(&cache_net.name));

    // What the closing note pastes: a real scrape, and what the agent cost meanwhile.
    let (rss_kb, cpu_s) = footprint(agent.run.pid());
    eprintln!(
        "--- scrape during the pod test ---\n{}\n--- agent: RSS {rss_kb} kB, CPU {cpu_s:.2} s ---",
        agent.scrape().text
    );

    // A deleted pod's series go once the grace period is over.
    web.remove().unwrap();
    agent.scrape_until("the deleted pod's series gone", Duration::from_secs(15), |s| {
        !s.text.contains("pod=\"web\"")
    });
    let s = agent.scrape();
    assert!(
        s.has("reach_namespace_interfaces", &[("pod", "cache")]),
        "other pods stay:\n{}",
        s.text
    );
    let (code, took, _, err) = agent.terminate();
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop((cache, client));
    let left = cd.stop();
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A --cri-socket that does not exist or never answers is bad input: exit 2 naming the path,
/// before anything is attached; without the flag, no runtime is a logged degradation.
#[test]
fn a_cri_socket_that_is_missing_or_silent_is_refused_and_none_at_all_degrades() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    let out = reach_tests::reach(&[
        "agent",
        "--metrics",
        "127.0.0.1:1",
        "--cri-socket",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", reach_tests::show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(!err.contains("watching"), "nothing attached: {err}");
    let silent = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let started = std::time::Instant::now();
    let out = reach_tests::reach(&[
        "agent",
        "--metrics",
        "127.0.0.1:1",
        "--cri-socket",
        silent.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", reach_tests::show(&out));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(silent.to_str().unwrap()),
        "{}",
        reach_tests::show(&out)
    );
    drop(listener);
}
