//! issue 14 with a real Docker daemon: Debian's dockerd started in a lab namespace (see
//! `reach_tests::docker`), `docker run -p 8080:80` of an app that binds 127.0.0.1:80 inside
//! the container, and one that binds every address (`-p 8081:80`). Real clients: a remote one
//! over IPv4 (dockerd's DNAT in its `DOCKER` chain) and over IPv6 (no ip6tables rules: its
//! docker-proxy takes the connection), and local ones in the daemon's namespace (the output
//! chain's DNAT for the host's address; docker-proxy for 127.0.0.1). Each is diagnosed in the
//! container, named as Docker names it, from `reach why --json`; nothing left attached in
//! either namespace, and the root namespace's ruleset untouched by any of it.
use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use reach_agent::lab::{
    NetNs, NetNsFd, TwoHosts,
    docker::{Dockerd, IMAGE},
};
use reach_tests::{
    leftovers::{Leftovers, Scope},
    require_root,
    ruleset::RulesetSnapshot,
    why_run,
};
use serde_json::Value;

/// One container: its name, id, address and namespace.
struct Container {
    name: &'static str,
    id: String,
    ip: String,
    netns: NetNsFd,
}

fn container(d: &Dockerd, name: &'static str, publish: &str, bind: &str) -> Container {
    let pid = d
        .run(name, publish, &["/bin/busybox", "httpd", "-f", "-p", bind])
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let id = d.cli(&["inspect", "-f", "{{.Id}}", name]).unwrap();
    let ip = d.cli(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]).unwrap();
    let netns = NetNsFd::of_pid(pid as i32).unwrap();
    netns.wait_tcp_listener(80, Duration::from_secs(10)).unwrap();
    Container { name, id, ip, netns }
}

/// `reach why PORT` on the daemon's namespace while a client in `from` dials `to` once.
fn why(hosts: &TwoHosts, port: u16, from: &NetNs, to: SocketAddr) -> (i32, Value, bool) {
    let run = why_run::start(hosts, &port.to_string());
    let connected = from
        .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).is_ok())
        .unwrap();
    let (code, mut v, stderr) = why_run::finish(run);
    v["test_stderr"] = stderr.into();
    (code, v, connected)
}

/// The diagnosis was made in `c`: the container named as Docker names it, the attempt seen
/// there, its hops after the first namespace's, and a fix in its terms when one is needed.
fn assert_in_container(v: &Value, c: &Container, through: &str) {
    let nat = &v["nat"];
    let netns = format!("container:{}", &c.id[..12]);
    assert_eq!(nat["to"], format!("{}:80", c.ip), "{v:#}");
    assert_eq!(nat["owner"]["netns"]["name"], netns, "{v:#}");
    assert_eq!(nat["owner"]["netns"]["inode"], c.netns.id().ino, "{v:#}");
    assert_eq!(nat["owner"]["iface"], "eth0", "{v:#}");
    let named = &nat["owner"]["container"];
    assert_eq!(
        (named["name"].as_str(), named["id"].as_str(), named["image"].as_str()),
        (Some(c.name), Some(&*c.id), Some(IMAGE)),
        "{v:#}"
    );
    let names: Vec<&str> =
        v["path"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    let inside = ["interface eth0", "firewall", "socket"].map(|h| format!("{h} (netns {netns})"));
    assert_eq!(names[names.len() - 4], through, "{v:#}");
    assert_eq!(names[names.len() - 3..], inside, "{v:#}");
    let evidence = why_run::lines(v, "evidence");
    let seen = format!(" → {}:80 in netns {netns}: ", c.ip);
    assert!(
        evidence.iter().any(|l| l.starts_with("attempt ") && l.contains(&seen)),
        "the attempt seen in the container ({seen}): {evidence:#?}"
    );
    assert!(
        evidence[0].contains(&format!("Docker container `{}` (image {IMAGE})", c.name)),
        "{evidence:#?}"
    );
    if v["verdict"] != "reachable" {
        let fix = why_run::lines(v, "fix").join("\n");
        assert!(
            fix.contains(&format!("the app runs in container `{}` ({})", c.name, &c.id[..12])),
            "{fix}"
        );
    }
}

/// The NAT hop is dockerd's rule in its `DOCKER` chain of table ip nat.
fn assert_docker_rule(v: &Value, published: u16, local: bool) {
    let nat = &v["nat"];
    assert_eq!(nat["local"], local, "{v:#}");
    assert!(nat["relay"].is_null(), "{v:#}");
    let rule = &nat["rule"];
    assert_eq!(
        (rule["family"].as_str(), rule["table"].as_str(), rule["chain"].as_str()),
        (Some("ip"), Some("nat"), Some("DOCKER")),
        "{v:#}"
    );
    let text = rule["text"].as_str().unwrap_or_default();
    assert!(text.contains(&format!("tcp dport {published}")), "{v:#}");
    let writer = nat["writer"].as_str().unwrap_or_default();
    assert!(writer.starts_with("Docker's published port"), "{v:#}");
}

/// docker-proxy took the connection itself.
fn assert_docker_proxy(v: &Value) {
    let relay = &v["nat"]["relay"];
    assert_eq!(relay["tool"], "docker-proxy", "{v:#}");
    let evidence = why_run::lines(v, "evidence");
    assert!(
        evidence[0].contains("Docker's userland proxy for the published port"),
        "{evidence:#?}"
    );
}

#[test]
fn docker_published_ports_are_diagnosed_in_the_container_for_every_client() {
    require_root();
    let root_ruleset = RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("dock").unwrap();
    let daemon = reach_tests::docker::start(&hosts.server);
    let lo = container(&daemon, "web-lo", "8080:80", "127.0.0.1:80");
    let ok = container(&daemon, "web-ok", "8081:80", "80");
    // What reach can leave: in the daemon's namespace on every interface (docker0, the
    // containers' veths too), in each container on its own.
    let server_ifaces = interfaces(&hosts.server);
    let server_ifaces: Vec<&str> = server_ifaces.iter().map(String::as_str).collect();
    let server_left =
        Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &server_ifaces });
    let lo_left = Leftovers::snapshot(&Scope { netns: Some(&lo.netns), ifaces: &["lo", "eth0"] });
    let ok_left = Leftovers::snapshot(&Scope { netns: Some(&ok.netns), ifaces: &["lo", "eth0"] });

    let v4 = |port| SocketAddr::from((TwoHosts::SERVER_V4, port));
    let v6 = |port| SocketAddr::from((TwoHosts::SERVER_V6, port));
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));

    // A remote client over IPv4: dockerd's DNAT sends it to the container, which refuses it.
    let (code, v, connected) = why(&hosts, 8080, &hosts.client, v4(8080));
    assert!(!connected, "the app listens on 127.0.0.1 in the container: {v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    assert_docker_rule(&v, 8080, false);
    assert_in_container(&v, &lo, "nat");
    let fix = why_run::lines(&v, "fix").join("\n");
    assert!(fix.contains("0.0.0.0:80 inside the container"), "{fix}");
    assert!(!fix.contains("8080 ") && !fix.contains(":8080"), "no fix for the host port: {fix}");

    // Over IPv6 dockerd writes no rule: its docker-proxy on [::]:8080 accepts and connects on.
    let (code, v, connected) = why(&hosts, 8080, &hosts.client, v6(8080));
    assert!(connected, "docker-proxy accepts every connection itself: {v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    assert_docker_proxy(&v);
    assert_in_container(&v, &lo, "relay");

    // A local client dialing the host's address: the output chain's DNAT.
    let (code, v, connected) = why(&hosts, 8080, &hosts.server, v4(8080));
    assert!(!connected, "{v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    assert_docker_rule(&v, 8080, true);
    assert_in_container(&v, &lo, "nat");

    // A local client dialing localhost: dockerd's rules skip 127.0.0.0/8, docker-proxy takes it.
    let (code, v, connected) = why(&hosts, 8080, &hosts.server, localhost(8080));
    assert!(connected, "{v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    assert_docker_proxy(&v);
    assert_in_container(&v, &lo, "relay");

    // The app that listens on every address of its container: reachable, by each way in.
    for (from, to, proxied) in [
        (&hosts.client, v4(8081), false),
        (&hosts.client, v6(8081), true),
        (&hosts.server, localhost(8081), true),
    ] {
        let (code, v, connected) = why(&hosts, 8081, from, to);
        assert!(connected, "{to}: {v:#}");
        assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{to}: {v:#}");
        match proxied {
            true => assert_docker_proxy(&v),
            false => assert_docker_rule(&v, 8081, false),
        }
        assert_in_container(&v, &ok, if proxied { "relay" } else { "nat" });
    }

    server_left.assert_nothing_new("reach why through a real dockerd's published ports");
    lo_left.assert_nothing_new("reach why, in container web-lo");
    ok_left.assert_nothing_new("reach why, in container web-ok");
    drop((lo, ok));
    drop(daemon);
    root_ruleset.assert_unchanged("dockerd and reach in lab namespaces");
}

/// The interface names of `ns`.
fn interfaces(ns: &NetNs) -> Vec<String> {
    let out = ns.run("ip", &["-o", "link", "show"]).unwrap();
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The tests look for Debian's Docker where `cargo xtask setup` unpacks it, by the same stamp.
#[test]
fn docker_root_path_matches_xtask() {
    assert_eq!(reach_tests::docker::root(), xtask::docker_root::dir());
    assert_eq!(reach_tests::docker::STAMP, xtask::docker_root::STAMP);
}
