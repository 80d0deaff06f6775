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
use reach_tests::{require_root, why_run};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PUBLISHED: u16 = 8080;
const APP_PORT: u16 = 80;
const APP_V4: &str = "172.30.0.2";

/// The server namespace publishes port 8080 of an app namespace's 172.30.0.2:80.
struct Published {
    hosts: TwoHosts,
    app: NetNs,
    _link: Veth,
}

impl Published {
    fn new(label: &str) -> Published {
        let hosts = TwoHosts::new(label).unwrap();
        let app = NetNs::new(&format!("{label}-app")).unwrap();
        let link = Veth::create(
            VethEnd::new(&hosts.server, "app0").addr("172.30.0.1/24"),
            VethEnd::new(&app, "eth0").addr(&format!("{APP_V4}/24")),
        )
        .unwrap();
        app.run("ip", &["route", "add", "default", "via", "172.30.0.1"]).unwrap();
        hosts.server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).unwrap();
        let nft = |args: &[&str]| hosts.server.run("nft", args).unwrap();
        nft(&["add", "table", "ip", "reach_t_publish"]);
        nft(&[
            "add",
            "chain",
            "ip",
            "reach_t_publish",
            "prerouting",
            "{ type nat hook prerouting priority dstnat; }",
        ]);
        let to = format!("{APP_V4}:{APP_PORT}");
        nft(&[
            "add",
            "rule",
            "ip",
            "reach_t_publish",
            "prerouting",
            "tcp",
            "dport",
            &PUBLISHED.to_string(),
            "dnat",
            "to",
            &to,
        ]);
        Published { hosts, app, _link: link }
    }

    fn listen(&self, addr: &str) -> TcpListener {
        let addr: SocketAddr = format!("{addr}:{APP_PORT}").parse().unwrap();
        self.app.run_in(move || TcpListener::bind(addr)).unwrap().unwrap()
    }

    /// `reach why 8080` on the server namespace while the client connects once.
    fn why(&self) -> (i32, Value, std::io::Result<()>) {
        let run = why_run::start(&self.hosts, &PUBLISHED.to_string());
        let to = SocketAddr::from((TwoHosts::SERVER_V4, PUBLISHED));
        let outcome = self
            .hosts
            .client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
            .unwrap();
        let (code, v, _) = why_run::finish(run);
        (code, v, outcome)
    }
}

fn assert_nat_hop(v: &Value, app: &NetNs) {
    let nat = &v["nat"];
    assert_eq!(nat["from"], format!("{}:{PUBLISHED}", TwoHosts::SERVER_V4), "{v:#}");
    assert_eq!(nat["to"], format!("{APP_V4}:{APP_PORT}"), "{v:#}");
    assert_eq!(nat["rule"]["table"], "reach_t_publish", "{v:#}");
    assert_eq!(nat["rule"]["chain"], "prerouting", "{v:#}");
    assert_eq!(
        nat["rule"]["text"],
        format!("tcp dport {PUBLISHED} dnat to {APP_V4}:{APP_PORT}"),
        "{v:#}"
    );
    assert_eq!(nat["owner"]["netns"]["name"], app.name(), "{v:#}");
    assert_eq!(nat["owner"]["iface"], "eth0", "{v:#}");
    let names: Vec<&str> =
        v["path"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    let app_hop = |h: &str| format!("{h} (netns {})", app.name());
    assert_eq!(
        names,
        [
            "client",
            "interface srv0",
            "firewall",
            "nat",
            &app_hop("interface eth0"),
            &app_hop("firewall"),
            &app_hop("socket")
        ],
        "{v:#}"
    );
    let evidence = why_run::lines(v, "evidence");
    assert!(
        evidence[0]
            .starts_with("nat: the SYN to 10.77.0.1:8080 was sent on to 172.30.0.2:80 by rule"),
        "{evidence:#?}"
    );
}

#[test]
fn an_app_behind_a_published_port_that_binds_loopback_is_diagnosed_in_its_namespace() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = Published::new("pub");
    let leftovers = why_run::leftovers(&p.hosts);
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
    leftovers.assert_nothing_new("reach why through a published port");
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
