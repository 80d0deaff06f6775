//! issue 14: a published port (a DNAT rule in the namespace the client reaches, sending the
//! SYN to an app in a second namespace, as Docker's `-p 8080:80` and Kubernetes Services do)
//! is diagnosed in the namespace that answers. A real client, real nft rules in lab
//! namespaces, conntrack's record of each attempt; the verdict, the NAT hop with its rule and
//! the second namespace's evidence asserted from `reach why --json`; nothing left attached.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::{NetNs, TwoHosts, Veth, VethEnd};
use reach_tests::{WatchRun, firewalld_versions, require_root, ruleset::RulesetSnapshot, why_run};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PUBLISHED: u16 = 8080;
const APP_PORT: u16 = 80;
const APP_V4: &str = "172.30.0.2";
const APP_V6: &str = "fd30::2";

/// The server namespace publishes port 8080 of an app namespace's port 80 (172.30.0.2 and
/// fd30::2), one DNAT rule per family in prerouting, as iptables-nft and Docker write them.
struct Published {
    hosts: TwoHosts,
    app: NetNs,
    _link: Veth,
}

impl Published {
    /// The namespaces, the link, routes and forwarding, and the DNAT rules.
    fn new(label: &str) -> Published {
        let p = Published::linked(label);
        p.publish_with_nft();
        p
    }

    /// The namespaces, the link, routes and forwarding, nothing published yet.
    fn linked(label: &str) -> Published {
        let hosts = TwoHosts::new(label).unwrap();
        let app = NetNs::new(&format!("{label}-app")).unwrap();
        let link = Veth::create(
            VethEnd::new(&hosts.server, "app0").addrs(&["172.30.0.1/24", "fd30::1/64"]),
            VethEnd::new(&app, "eth0").addrs(&[&format!("{APP_V4}/24"), &format!("{APP_V6}/64")]),
        )
        .unwrap();
        app.run("ip", &["route", "add", "default", "via", "172.30.0.1"]).unwrap();
        app.run("ip", &["-6", "route", "add", "default", "via", "fd30::1"]).unwrap();
        hosts.server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).unwrap();
        hosts.server.run("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]).unwrap();
        Published { hosts, app, _link: link }
    }

    /// One DNAT rule per family in prerouting, as iptables-nft and Docker write them.
    fn publish_with_nft(&self) {
        self.publish_at("prerouting", "{ type nat hook prerouting priority dstnat; }");
    }

    /// The same DNAT rules in a nat output chain of each table: local clients' SYNs too, as
    /// Docker writes them without its userland proxy.
    fn publish_output_with_nft(&self) {
        self.publish_at("output", "{ type nat hook output priority -100; }");
    }

    /// In each family's table `reach_t_publish`, chain `name` (`hook`): the DNAT rule.
    fn publish_at(&self, name: &str, hook: &str) {
        let nft = |args: &[&str]| self.hosts.server.run("nft", args).unwrap();
        let published = PUBLISHED.to_string();
        for (family, to) in
            [("ip", format!("{APP_V4}:{APP_PORT}")), ("ip6", format!("[{APP_V6}]:{APP_PORT}"))]
        {
            nft(&["add", "table", family, "reach_t_publish"]);
            nft(&["add", "chain", family, "reach_t_publish", name, hook]);
            let rule = ["tcp", "dport", &published, "dnat", "to", &to];
            nft(&[&["add", "rule", family, "reach_t_publish", name][..], &rule].concat());
        }
    }

    /// `reach why 8080` on the server namespace while a process of that namespace dials `to`.
    fn why_locally(&self, to: SocketAddr) -> (i32, Value, std::io::Result<()>) {
        self.why_from(&self.hosts.server, to)
    }

    fn listen(&self, addr: &str) -> TcpListener {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        let addr = SocketAddr::new(ip, APP_PORT);
        self.app.run_in(move || TcpListener::bind(addr)).unwrap().unwrap()
    }

    /// `reach why 8080` on the server namespace while the client connects once over IPv4.
    fn why(&self) -> (i32, Value, std::io::Result<()>) {
        self.why_to(SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED)))
    }

    /// The same, the client dialing `to`.
    fn why_to(&self, to: SocketAddr) -> (i32, Value, std::io::Result<()>) {
        self.why_from(&self.hosts.client, to)
    }

    /// `reach why 8080` on the server namespace while a client in `from` dials `to` once.
    fn why_from(&self, from: &NetNs, to: SocketAddr) -> (i32, Value, std::io::Result<()>) {
        let run = why_run::start(&self.hosts, &PUBLISHED.to_string());
        let outcome = from
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
            .unwrap();
        let (code, mut v, stderr) = why_run::finish(run);
        // Shown with the JSON when an assertion fails.
        v["test_stderr"] = stderr.into();
        (code, v, outcome)
    }
}

fn assert_nat_hop(v: &Value, app: &NetNs) {
    let from = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
    let to: SocketAddr = format!("{APP_V4}:{APP_PORT}").parse().unwrap();
    assert_nat_hop_of(v, app, ("ip", from, to));
}

/// The NAT hop of `v`: the rule of table `family reach_t_publish` sent `from` on to `to`,
/// an address of `app`'s eth0; the path and the first evidence line say so.
fn assert_nat_hop_of(v: &Value, app: &NetNs, (family, from, to): (&str, SocketAddr, SocketAddr)) {
    let nat = &v["nat"];
    assert_eq!(nat["from"], from.to_string(), "{v:#}");
    assert_eq!(nat["to"], to.to_string(), "{v:#}");
    let rule = &nat["rule"];
    assert_eq!(
        (rule["family"].as_str(), rule["table"].as_str()),
        (Some(family), Some("reach_t_publish")),
        "{v:#}"
    );
    assert_eq!(rule["chain"], "prerouting", "{v:#}");
    let dnat = if to.is_ipv4() { to.to_string() } else { format!("[{}]:{}", to.ip(), to.port()) };
    assert_eq!(rule["text"], format!("tcp dport {PUBLISHED} dnat to {dnat}"), "{v:#}");
    assert_eq!(nat["owner"]["netns"]["name"], app.name(), "{v:#}");
    assert_eq!(nat["owner"]["iface"], "eth0", "{v:#}");
    assert_path(v, app, &["client", "interface srv0", "firewall", "nat"]);
    let evidence = why_run::lines(v, "evidence");
    let first = format!("nat: the SYN to {from} was sent on to {to} by rule");
    assert!(evidence[0].starts_with(&first), "{evidence:#?}");
}

#[test]
fn an_app_behind_a_published_port_that_binds_loopback_is_diagnosed_in_its_namespace() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pub");
    let leftovers = why_run::leftovers(&p.hosts);
    let app_leftovers = why_run::leftovers_in(&p.app, &["lo", "eth0"]);
    let _app = p.listen("127.0.0.1");
    let (code, v, outcome) = p.why();
    let refused = outcome.expect_err("the app listens on loopback only: the attempt must fail");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{v:#}");
    assert_eq!(v["verdict"], "loopback_only_bind", "{v:#}");
    assert_eq!(code, 10, "{v:#}");
    assert_nat_hop(&v, &p.app);
    let evidence = why_run::lines(&v, "evidence").join("\n");
    assert!(
        evidence.contains(&format!("127.0.0.1:{APP_PORT} in netns {}", p.app.name())),
        "{evidence}"
    );
    assert!(!evidence.contains("nothing listens"), "{evidence}");
    let fix = why_run::lines(&v, "fix").join("\n");
    assert!(fix.contains(&format!("0.0.0.0:{APP_PORT}")), "{fix}");
    assert!(!fix.contains(&PUBLISHED.to_string()), "no fix for the published port: {fix}");
    assert_watched_in_app(&v, &p.app, &format!("{APP_V4}:{APP_PORT}"));
    leftovers.assert_nothing_new("reach why through a published port");
    app_leftovers.assert_nothing_new("reach why, in the namespace the published port leads to");
}

/// The path's hop names: `before` in the first namespace, then the app's interface, firewall
/// and socket.
fn assert_path(v: &Value, app: &NetNs, before: &[&str]) {
    let names: Vec<&str> =
        v["path"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    let app_hop = |h: &str| format!("{h} (netns {})", app.name());
    let mut expected: Vec<String> = before.iter().map(|h| h.to_string()).collect();
    expected.extend(["interface eth0", "firewall", "socket"].map(app_hop));
    assert_eq!(names, expected, "{v:#}");
}

/// The app namespace was watched from the start (announced), and its evidence is what was
/// seen there: the attempt as it arrived, to `to`.
fn assert_watched_in_app(v: &Value, app: &NetNs, to: &str) {
    let stderr = v["test_stderr"].as_str().unwrap_or_default();
    let announced = format!("(netns {}, interface eth0): watching there too", app.name());
    assert!(stderr.contains(&announced), "{stderr}");
    assert!(stderr.contains(&format!("in {}", app.name())), "taps announced in the app: {stderr}");
    let evidence = why_run::lines(v, "evidence");
    let seen = format!(" → {to} in netns {}: ", app.name());
    assert!(
        evidence.iter().any(|l| l.starts_with("attempt ") && l.contains(&seen)),
        "the attempt seen in the app namespace ({seen}): {evidence:#?}"
    );
}

/// A local client — a process of the namespace with the published port — dials the port;
/// the nat output chain sends its SYN on, which no interface of that namespace sees arrive.
/// It is seen where it was sent (watched from the start), conntrack says what the client
/// dialed, and the output rule is named from the SYN's traced walk: IPv4 and IPv6, the app
/// on loopback (refused), then on every address (reachable); nothing left in either namespace.
#[test]
fn a_local_client_through_the_output_chain_is_followed_into_the_app_namespace() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("publ");
    p.publish_output_with_nft();
    let leftovers = why_run::leftovers(&p.hosts);
    let app_leftovers = why_run::leftovers_in(&p.app, &["lo", "eth0"]);
    let cases = [
        (
            "ip",
            SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED)),
            format!("{APP_V4}:{APP_PORT}"),
            "127.0.0.1",
        ),
        (
            "ip6",
            SocketAddr::from((TwoHosts::SERVER_V6, PUBLISHED)),
            format!("[{APP_V6}]:{APP_PORT}"),
            "::1",
        ),
    ];
    for (family, from, to, loopback) in cases {
        let app = p.listen(loopback);
        let (code, v, outcome) = p.why_locally(from);
        assert!(outcome.is_err(), "the app listens on {loopback} only: {v:#}");
        assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
        let nat = &v["nat"];
        assert_eq!(
            (nat["from"].as_str(), nat["to"].as_str()),
            (Some(&*from.to_string()), Some(&*to)),
            "{v:#}"
        );
        assert_eq!(nat["local"], true, "{v:#}");
        let rule = &nat["rule"];
        assert_eq!(
            (rule["family"].as_str(), rule["table"].as_str(), rule["chain"].as_str()),
            (Some(family), Some("reach_t_publish"), Some("output")),
            "{v:#}"
        );
        assert_eq!(rule["traced"], true, "the output walk of the SYN names the rule: {v:#}");
        assert_eq!(nat["owner"]["netns"]["name"], p.app.name(), "{v:#}");
        assert_path(&v, &p.app, &["client", "nat"]);
        assert_eq!(
            v["attempt"]["client"].as_str().map(|c| c.parse::<SocketAddr>().unwrap().ip()),
            Some(from.ip()),
            "{v:#}"
        );
        assert_watched_in_app(&v, &p.app, &to);
        let fix = why_run::lines(&v, "fix").join("\n");
        assert!(
            fix.contains(&format!(":{APP_PORT}")) && !fix.contains(&PUBLISHED.to_string()),
            "{fix}"
        );
        drop(app);
        let _app = p.listen(if family == "ip" { "0.0.0.0" } else { "::" });
        let (code, v, outcome) = p.why_locally(from);
        outcome.unwrap_or_else(|e| {
            panic!("{family}: the app on every address must answer: {e}\n{v:#}")
        });
        assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{v:#}");
        assert_eq!(v["nat"]["to"], to, "{v:#}");
        assert_watched_in_app(&v, &p.app, &to);
    }
    leftovers.assert_nothing_new("reach why with a local client");
    app_leftovers.assert_nothing_new("reach why with a local client, in the app namespace");
}

#[test]
fn published_port_reachable_and_closed_in_the_app_namespace() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pub2");
    // Nothing listens on the app's port: no listener there, named with the translated port.
    let (code, v, outcome) = p.why();
    assert!(outcome.is_err(), "{v:#}");
    assert_eq!(v["verdict"], "no_listener", "{v:#}");
    assert_eq!(code, 12, "{v:#}");
    assert_nat_hop(&v, &p.app);
    let evidence = why_run::lines(&v, "evidence").join("\n");
    assert!(evidence.contains(&format!("port {APP_PORT}")), "{evidence}");
    // The app on every address: reachable through the NAT.
    let _app = p.listen("0.0.0.0");
    let (code, v, outcome) = p.why();
    outcome.unwrap_or_else(|e| panic!("the published port must connect: {e}\n{v:#}"));
    assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{v:#}");
    assert_nat_hop(&v, &p.app);
    assert!(v["path"].as_array().unwrap().iter().all(|h| h["ok"] == true), "{v:#}");
}

/// IPv6: the ip6 table's DNAT to the app's IPv6 address, followed the same way.
#[test]
fn an_ipv6_published_port_is_followed_too() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pub6");
    let _app = p.listen("::1");
    let from = SocketAddr::from((TwoHosts::SERVER_V6, PUBLISHED));
    let to: SocketAddr = format!("[{APP_V6}]:{APP_PORT}").parse().unwrap();
    let (code, v, outcome) = p.why_to(from);
    assert!(outcome.is_err(), "the app listens on ::1 only: {v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    assert_nat_hop_of(&v, &p.app, ("ip6", from, to));
    let evidence = why_run::lines(&v, "evidence").join("\n");
    let listener = format!("[::1]:{APP_PORT} in netns {}", p.app.name());
    assert!(evidence.contains(&listener), "{evidence}");
}

/// A SYN sent on by the NAT and then dropped in the forward path keeps the verdict of the
/// namespace it died in, the NAT first in its evidence; the printed delete lets the next
/// attempt through.
#[test]
fn a_forward_drop_after_the_nat_is_the_first_namespaces_verdict() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pubf");
    let _app = p.listen("0.0.0.0");
    let nft = |args: &[&str]| p.hosts.server.run("nft", args).unwrap();
    let chain = "{ type filter hook forward priority 0; policy accept; }";
    nft(&["add", "table", "inet", "reach_t_fwd"]);
    nft(&["add", "chain", "inet", "reach_t_fwd", "forward", chain]);
    let port = APP_PORT.to_string();
    nft(&["add", "rule", "inet", "reach_t_fwd", "forward", "tcp", "dport", &port, "drop"]);
    let (code, v, outcome) = p.why();
    assert!(outcome.is_err(), "the forward rule drops it: {v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("other_netfilter_drop"), 15), "{v:#}");
    assert_eq!(v["nft"]["rule"]["chain"], "forward", "{v:#}");
    let evidence = why_run::lines(&v, "evidence");
    let first = "nat: the SYN to 10.77.0.1:8080 was sent on to 172.30.0.2:80";
    assert!(evidence[0].starts_with(first), "{evidence:#?}");
    let delete = why_run::lines(&v, "fix")
        .into_iter()
        .find(|f| f.starts_with("nft delete rule"))
        .unwrap_or_else(|| panic!("no delete in the fix: {v:#}"));
    let delete = delete.split("   #").next().unwrap().trim().to_string();
    p.hosts.server.run("sh", &["-c", &delete]).unwrap();
    let to = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
    p.hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
        .unwrap()
        .unwrap_or_else(|e| panic!("after `{delete}`: {e}"));
}

/// kube-proxy's nftables layout (as its own proxier tests spell it) for Service default/web,
/// node port 30080, two endpoints in namespaces of their own chosen by `numgen random`: one
/// serves, one is dead. Each attempt is diagnosed in the endpoint conntrack says was chosen,
/// with the Service and endpoint named; attempts go on until both endpoints were chosen.
#[test]
fn a_service_endpoint_chosen_at_random_is_diagnosed_where_it_runs() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("svc").unwrap();
    hosts.server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).unwrap();
    let endpoints: Vec<(NetNs, Veth, String)> = (0..2)
        .map(|i| {
            let ns = NetNs::new(&format!("svc-ep{i}")).unwrap();
            let link = Veth::create(
                VethEnd::new(&hosts.server, &format!("ep{i}")).addr(&format!("172.30.{i}.1/24")),
                VethEnd::new(&ns, "eth0").addr(&format!("172.30.{i}.2/24")),
            )
            .unwrap();
            ns.run("ip", &["route", "add", "default", "via", &format!("172.30.{i}.1")]).unwrap();
            (ns, link, format!("172.30.{i}.2:80"))
        })
        .collect();
    let nft = |args: &[&str]| hosts.server.run("nft", args).unwrap();
    let service = "service-ULMVA6XW-default/web/tcp/http";
    let chains: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (_, _, ep))| {
            let ip = ep.trim_end_matches(":80");
            format!("endpoint-{}-default/web/tcp/http__{ip}/80", ["5OJB2KTY", "VJ7VIZ4D"][i])
        })
        .collect();
    nft(&["add", "table", "ip", "kube-proxy"]);
    nft(&[
        "add",
        "chain",
        "ip",
        "kube-proxy",
        "nat-prerouting",
        "{ type nat hook prerouting priority -100; }",
    ]);
    nft(&["add", "chain", "ip", "kube-proxy", "services"]);
    nft(&["add", "rule", "ip", "kube-proxy", "nat-prerouting", "jump", "services"]);
    nft(&["add", "chain", "ip", "kube-proxy", service]);
    for (chain, (_, _, ep)) in chains.iter().zip(&endpoints) {
        nft(&["add", "chain", "ip", "kube-proxy", chain]);
        nft(&[
            "add",
            "rule",
            "ip",
            "kube-proxy",
            chain,
            "meta",
            "l4proto",
            "tcp",
            "dnat",
            "to",
            ep,
        ]);
    }
    let vmap = format!("{{ 0 : goto {}, 1 : goto {} }}", chains[0], chains[1]);
    nft(&[
        "add",
        "rule",
        "ip",
        "kube-proxy",
        service,
        "numgen",
        "random",
        "mod",
        "2",
        "vmap",
        &vmap,
    ]);
    nft(&["add", "rule", "ip", "kube-proxy", "services", "tcp", "dport", "30080", "goto", service]);
    // Endpoint 0 serves; endpoint 1's pod does not listen.
    let serving = endpoints[0].0.run_in(|| TcpListener::bind("0.0.0.0:80")).unwrap().unwrap();

    let mut seen = [false, false];
    for attempt in 0..20 {
        if seen == [true, true] {
            break;
        }
        let run = why_run::start(&hosts, "30080");
        let to = SocketAddr::from((TwoHosts::SERVER_V4, 30080));
        let outcome = hosts
            .client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
            .unwrap();
        let (code, v, _) = why_run::finish(run);
        let chosen =
            v["nat"]["to"].as_str().unwrap_or_else(|| panic!("attempt {attempt}: no nat: {v:#}"));
        let i = endpoints
            .iter()
            .position(|(_, _, ep)| ep == chosen)
            .unwrap_or_else(|| panic!("{chosen}: {v:#}"));
        seen[i] = true;
        assert_eq!(v["nat"]["rule"]["chain"], chains[i].as_str(), "{v:#}");
        assert_eq!(v["nat"]["rule"]["text"], format!("meta l4proto tcp dnat to {chosen}"), "{v:#}");
        let svc = &v["nat"]["service"];
        assert_eq!(
            (svc["namespace"].as_str(), svc["name"].as_str(), svc["endpoint"].as_str()),
            (Some("default"), Some("web"), Some(chosen)),
            "{v:#}"
        );
        assert_eq!(v["nat"]["owner"]["netns"]["name"], endpoints[i].0.name(), "{v:#}");
        let evidence = why_run::lines(&v, "evidence");
        assert!(
            evidence[0].contains(&format!(
                "kube-proxy's endpoint {chosen} of Service default/web (port http/tcp)"
            )),
            "{evidence:#?}"
        );
        if i == 0 {
            outcome.unwrap_or_else(|e| panic!("endpoint 0 serves: {e}\n{v:#}"));
            assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{v:#}");
        } else {
            assert!(outcome.is_err(), "endpoint 1 is dead: {v:#}");
            assert_eq!((v["verdict"].as_str(), code), (Some("no_listener"), 12), "{v:#}");
            let fix = why_run::lines(&v, "fix").join("\n");
            assert!(
                fix.contains(
                    "kubectl -n default get endpointslices -l kubernetes.io/service-name=web"
                ),
                "{fix}"
            );
        }
    }
    assert_eq!(seen, [true, true], "20 attempts did not choose both endpoints");
    drop(serving);
}

/// firewalld's own forward-port (`--add-forward-port … toaddr=`) on every firewalld version:
/// the NAT is named as firewalld's, with its rule exactly as nft lists it, and the attempt is
/// diagnosed in the app namespace. The root namespace's ruleset is unchanged.
#[test]
fn a_firewalld_forward_port_is_named_as_firewalld_s_on_every_version() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = RulesetSnapshot::take(None);
    for build in firewalld_versions::all() {
        let p = Published::linked("pubfw");
        let fw = firewalld_versions::start(&p.hosts.server, &build);
        let forward = format!(
            "--add-forward-port=port={PUBLISHED}:proto=tcp:toport={APP_PORT}:toaddr={APP_V4}"
        );
        for args in [&["--zone=public", "--add-interface=srv0"][..], &["--zone=public", &forward]] {
            let out = fw.cmd(args).unwrap_or_else(|e| panic!("firewall-cmd {args:?}: {e}"));
            assert_eq!(out.trim(), "success", "firewall-cmd {args:?}");
        }
        let _app = p.listen("127.0.0.1");
        let bus = fw.bus_address();
        let port = PUBLISHED.to_string();
        let args = [
            port.as_str(),
            "--netns",
            p.hosts.server.name(),
            "--firewalld-bus",
            &bus,
            "--timeout",
            "30",
            "--json",
        ];
        let run = WatchRun::start_command("why", &args, "waiting for a SYN");
        let to = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
        let outcome = p
            .hosts
            .client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
            .unwrap();
        let (code, v, _) = why_run::finish(run);
        let version = fw.version();
        assert!(outcome.is_err(), "{version}: the app listens on loopback only: {v:#}");
        assert_eq!(
            (v["verdict"].as_str(), code),
            (Some("loopback_only_bind"), 10),
            "{version}: {v:#}"
        );
        let nat = &v["nat"];
        assert_eq!(nat["to"], format!("{APP_V4}:{APP_PORT}"), "{version}: {v:#}");
        assert_eq!(
            (nat["rule"]["table"].as_str(), nat["rule"]["chain"].as_str()),
            (Some("firewalld"), Some("nat_PRE_public_allow")),
            "{version}: {v:#}"
        );
        let writer = "firewalld's forward-port of zone public (`firewall-cmd --zone=public --list-forward-ports`)";
        assert_eq!(nat["writer"], writer, "{version}: {v:#}");
        assert!(why_run::lines(&v, "evidence")[0].contains(writer), "{version}: {v:#}");
        // The rule's text is nft's own listing of it.
        let listed = p
            .hosts
            .server
            .run("nft", &["-a", "list", "chain", "inet", "firewalld", "nat_PRE_public_allow"])
            .unwrap();
        let text = nat["rule"]["text"].as_str().unwrap();
        let handle = nat["rule"]["handle"].as_u64().unwrap();
        assert!(
            listed.lines().any(|l| l.trim() == format!("{text} # handle {handle}")),
            "{version}: `{text}` (handle {handle}) is not how nft lists the rule:\n{listed}"
        );
        assert_eq!(nat["owner"]["netns"]["name"], p.app.name(), "{version}: {v:#}");
    }
    root.assert_unchanged("the firewalld forward-port cases");
}

/// A namespace that publishes a port but does not forward: the kernel drops the SYN sent on,
/// the app never sees it. Named with the sysctl, whose printed fix, run, lets the next
/// attempt through.
#[test]
fn a_namespace_that_does_not_forward_is_named_and_its_fix_works() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pubnf");
    p.hosts.server.run("sysctl", &["-qw", "net.ipv4.ip_forward=0"]).unwrap();
    let _app = p.listen("0.0.0.0");
    let (code, v, outcome) = p.why();
    assert!(outcome.is_err(), "forwarding is off: {v:#}");
    assert_eq!((v["verdict"].as_str(), code), (Some("kernel_drop"), 18), "{v:#}");
    let evidence = why_run::lines(&v, "evidence");
    assert!(
        evidence[0].starts_with("nat: the SYN to 10.77.0.1:8080 was sent on to 172.30.0.2:80"),
        "{evidence:#?}"
    );
    assert!(
        evidence[1].starts_with("IP forwarding is off here (net.ipv4.ip_forward = 0)"),
        "{evidence:#?}"
    );
    let last = v["path"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["name"].as_str(), last["ok"].as_bool()),
        (Some("forward"), Some(false)),
        "{v:#}"
    );
    let fix = why_run::lines(&v, "fix");
    let sysctl = fix[0].split("   #").next().unwrap().trim().to_string();
    assert_eq!(sysctl, "sysctl -w net.ipv4.ip_forward=1", "{fix:#?}");
    p.hosts.server.run("sh", &["-c", &sysctl]).unwrap();
    let to = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
    p.hosts
        .client
        .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
        .unwrap()
        .unwrap_or_else(|e| panic!("after `{sysctl}`: {e}"));
}

/// A userland relay — socat, doing what docker-proxy does for a published port — listens on
/// the port itself: the client's handshake always succeeds, and the relay's own connection
/// decides. It is said so, the relay named with its pid, and its connection is followed into
/// the namespace it goes to (watched from the start): the app there on loopback, then on every
/// address; nothing left in either namespace.
#[test]
fn a_userland_relay_on_the_port_is_followed_to_its_own_connection() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::linked("pubr");
    let to = format!("{APP_V4}:{APP_PORT}");
    let listen = format!("TCP-LISTEN:{PUBLISHED},fork,reuseaddr");
    let relay = p.hosts.server.spawn("socat", &[&listen, &format!("TCP:{to}")]).unwrap();
    p.hosts.server.wait_tcp_listener(PUBLISHED, Duration::from_secs(10)).unwrap();
    let leftovers = why_run::leftovers(&p.hosts);
    let app_leftovers = why_run::leftovers_in(&p.app, &["lo", "eth0"]);
    let app = p.listen("127.0.0.1");
    let (code, v, outcome) = p.why();
    outcome.unwrap_or_else(|e| panic!("socat accepts every connection itself: {e}\n{v:#}"));
    assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
    let nat = &v["nat"];
    assert_eq!(nat["relay"]["tool"], "socat", "{v:#}");
    assert_eq!(nat["relay"]["pid"], relay.pid(), "{v:#}");
    assert_eq!(nat["to"], to, "{v:#}");
    assert_eq!(nat["owner"]["netns"]["name"], p.app.name(), "{v:#}");
    assert_path(&v, &p.app, &["client", "interface srv0", "firewall", "relay"]);
    let evidence = why_run::lines(&v, "evidence");
    let first = format!(
        "relay: socat (pid {}), a userland relay, listens on port {PUBLISHED}",
        relay.pid()
    );
    assert!(evidence[0].starts_with(&first), "{evidence:#?}");
    assert_watched_in_app(&v, &p.app, &to);
    let fix = why_run::lines(&v, "fix").join("\n");
    assert!(fix.contains(&format!("0.0.0.0:{APP_PORT}")), "{fix}");
    drop(app);
    let _app = p.listen("0.0.0.0");
    let (code, v, outcome) = p.why();
    outcome.unwrap_or_else(|e| panic!("{e}\n{v:#}"));
    assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{v:#}");
    assert_eq!(v["nat"]["relay"]["tool"], "socat", "{v:#}");
    assert_watched_in_app(&v, &p.app, &to);
    leftovers.assert_nothing_new("reach why with a relay on the port");
    app_leftovers.assert_nothing_new("reach why with a relay, in the namespace it connects to");
    drop(relay);
}

/// The app's answer must go back through the NAT. Without a route back to the client the
/// kernel drops the SYN (a listen drop: no drop reason, no answer); with its default route out
/// of another interface, the SYN-ACK leaves that way and never reaches the client. Each is
/// named from the kernel's route lookup in the app namespace, and the printed route, added
/// there, lets the next attempt through.
#[test]
fn an_answer_that_cannot_go_back_through_the_nat_is_named_with_its_route() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pubrt");
    // A third namespace the app can also route to (it does not forward: whatever goes there dies).
    let other = NetNs::new("pubrt-other").unwrap();
    let _other_link = Veth::create(
        VethEnd::new(&p.app, "eth1").addrs(&["192.168.9.2/24"]),
        VethEnd::new(&other, "up0").addrs(&["192.168.9.1/24"]),
    )
    .unwrap();
    // The reverse-path filter would drop the SYN first; it has its own reason (not this case).
    for conf in ["all", "default", "eth0", "eth1"] {
        p.app.run("sysctl", &["-qw", &format!("net.ipv4.conf.{conf}.rp_filter=0")]).unwrap();
    }
    let _app = p.listen("0.0.0.0");
    let dialed = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
    let cases = [
        ("kernel_drop", 18, "has no route back to the client 10.77.0.2 from 172.30.0.2", None),
        (
            "reply_dropped",
            22,
            "the SYN-ACK to 10.77.0.2 leaves netns APP by eth1 via 192.168.9.1, not by eth0",
            Some("192.168.9.1"),
        ),
    ];
    p.app.run("ip", &["route", "del", "default"]).unwrap();
    for (verdict, exit, says, default_via) in cases {
        if let Some(gw) = default_via {
            p.app.run("ip", &["route", "add", "default", "via", gw]).unwrap();
        }
        let (code, v, outcome) = p.why();
        assert!(outcome.is_err(), "{verdict}: {v:#}");
        assert_eq!((v["verdict"].as_str(), code), (Some(verdict), exit), "{v:#}");
        assert_eq!(v["nat"]["to"], format!("{APP_V4}:{APP_PORT}"), "{v:#}");
        assert_watched_in_app(&v, &p.app, &format!("{APP_V4}:{APP_PORT}"));
        // The one failing hop: the app's socket (its SYN dropped), or the answer on its way.
        let path = v["path"].as_array().unwrap();
        let failing: Vec<&str> =
            path.iter().filter(|h| h["ok"] == false).map(|h| h["name"].as_str().unwrap()).collect();
        let hop = if default_via.is_some() { "reply" } else { "socket" };
        assert_eq!(failing, [format!("{hop} (netns {})", p.app.name())], "{v:#}");
        assert_eq!(path.last().unwrap()["name"], failing[0], "{v:#}");
        let says = says.replace("APP", p.app.name());
        let evidence = why_run::lines(&v, "evidence");
        assert!(evidence.iter().any(|l| l.contains(&says)), "{says}: {evidence:#?}");
        let back = &v["nat"]["return_route"];
        assert_eq!(
            (back["client"].as_str(), back["arrived"].as_str()),
            (Some("10.77.0.2"), Some("eth0")),
            "{v:#}"
        );
        assert_eq!(back["nat_side"], "172.30.0.1", "{v:#}");
        let fix = why_run::lines(&v, "fix");
        let route = fix[0].split("   #").next().unwrap().trim().to_string();
        assert_eq!(route, "ip route add 10.77.0.2 via 172.30.0.1 dev eth0", "{fix:#?}");
        p.app.run("sh", &["-c", &route]).unwrap();
        p.hosts
            .client
            .run_in(move || TcpStream::connect_timeout(&dialed, Duration::from_secs(3)))
            .unwrap()
            .unwrap_or_else(|e| panic!("{verdict}: after `{route}`: {e}"));
        p.app.run("ip", &["route", "del", "10.77.0.2"]).unwrap();
    }
}

/// Two namespaces hold the app's address — a second bridge, a stale lab — and the one the
/// inventory lists first is not where the route leads: both are watched, and the one the SYN
/// arrives in answers (its evidence, its name), never the first with the address.
#[test]
fn of_two_namespaces_with_the_address_the_one_the_syn_reaches_answers() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Listed first: the same name as any lab namespace of this process but sequence 0.
    let name = reach_agent::lab::LabName::next("decoy").to_string();
    let mut parts: Vec<&str> = name.splitn(6, '-').collect();
    parts[4] = "0";
    let decoy = NetNs::with_name(&parts.join("-")).unwrap();
    // A link to nowhere (a veth pair inside it): the address is there, no route leads to it.
    decoy.run("ip", &["link", "add", "decoy0", "type", "veth", "peer", "name", "decoy1"]).unwrap();
    decoy.run("ip", &["addr", "add", &format!("{APP_V4}/24"), "dev", "decoy0"]).unwrap();
    for dev in ["decoy0", "decoy1"] {
        decoy.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    let p = Published::new("pubdup");
    let order: Vec<String> = reach_agent::netns::inventory::list()
        .into_iter()
        .map(|n| n.name)
        .filter(|n| n == decoy.name() || n == p.app.name())
        .collect();
    assert_eq!(order, [decoy.name(), p.app.name()], "the decoy must be listed first");
    let _decoy_app = decoy.run_in(|| TcpListener::bind("127.0.0.1:80")).unwrap().unwrap();
    let _app = p.listen("0.0.0.0");
    let (code, v, outcome) = p.why();
    outcome.unwrap_or_else(|e| panic!("the app listens on every address: {e}\n{v:#}"));
    assert_eq!((v["verdict"].as_str(), code), (Some("reachable"), 0), "{v:#}");
    assert_nat_hop(&v, &p.app);
    assert_watched_in_app(&v, &p.app, &format!("{APP_V4}:{APP_PORT}"));
    let stderr = v["test_stderr"].as_str().unwrap_or_default();
    let both = format!("(netns {}, interface decoy0): watching there too", decoy.name());
    assert!(stderr.contains(&both), "every namespace with the address is watched: {stderr}");
}

/// Docker's nat layout as dockerd writes it with iptables-nft (its `DOCKER` chain, jumped to
/// from PREROUTING and OUTPUT for local destinations, `-j DNAT` per published port), without
/// its userland proxy (`--userland-proxy=false`; a real dockerd with it is why_docker.rs): a
/// remote and a local client to the published port, the app on loopback; the rule named as
/// Docker's.
#[test]
fn docker_s_iptables_nat_layout_is_followed_for_remote_and_local_clients() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::linked("pubd");
    let ipt = |args: &[&str]| p.hosts.server.run("iptables-nft", args).unwrap();
    let port = PUBLISHED.to_string();
    let to = format!("{APP_V4}:{APP_PORT}");
    ipt(&["-t", "nat", "-N", "DOCKER"]);
    ipt(&[
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "DOCKER",
    ]);
    let local_only = ["-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype"];
    ipt(&[&local_only[..], &["--dst-type", "LOCAL", "-j", "DOCKER"]].concat());
    ipt(&["-t", "nat", "-A", "DOCKER", "-i", "app0", "-j", "RETURN"]);
    let dnat = ["!", "-i", "app0", "-p", "tcp", "-m", "tcp", "--dport", &port];
    let dnat =
        [&["-t", "nat", "-A", "DOCKER"][..], &dnat, &["-j", "DNAT", "--to-destination", &to]];
    ipt(&dnat.concat());
    let leftovers = why_run::leftovers(&p.hosts);
    let app_leftovers = why_run::leftovers_in(&p.app, &["lo", "eth0"]);
    let _app = p.listen("127.0.0.1");
    let dialed = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
    for local in [false, true] {
        let (code, v, outcome) = if local { p.why_locally(dialed) } else { p.why_to(dialed) };
        assert!(outcome.is_err(), "the app listens on loopback only: {v:#}");
        assert_eq!((v["verdict"].as_str(), code), (Some("loopback_only_bind"), 10), "{v:#}");
        let nat = &v["nat"];
        assert_eq!(
            (nat["to"].as_str(), nat["local"].as_bool()),
            (Some(&*to), Some(local)),
            "{v:#}"
        );
        let rule = &nat["rule"];
        assert_eq!(
            (rule["family"].as_str(), rule["table"].as_str(), rule["chain"].as_str()),
            (Some("ip"), Some("nat"), Some("DOCKER")),
            "{v:#}"
        );
        let writer = nat["writer"].as_str().unwrap_or_default();
        assert!(writer.contains(&format!("docker ps --filter publish={PUBLISHED}")), "{v:#}");
        assert_watched_in_app(&v, &p.app, &to);
    }
    leftovers.assert_nothing_new("reach why through Docker's nat chains");
    app_leftovers.assert_nothing_new("reach why through Docker's nat chains, in the app");
}
