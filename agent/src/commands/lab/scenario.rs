//! The scenarios of the story, as data: where and how the demo server listens, what firewalld
//! is told, what else is changed in the server's namespace, where the client connects from and
//! to, and the verdict `reach why` must reach.
//!
//! Each scenario has its own port, so a connection of one (in TIME_WAIT, or still queued) can
//! never be mistaken for the next one's attempt.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lab::TwoHosts;

/// How the demo server binds its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    pub addr: IpAddr,
    /// IPV6_V6ONLY, set explicitly on an IPv6 listener; `None` keeps the namespace's default.
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE, an interface of the server's namespace.
    pub device: Option<&'static str>,
}

impl Bind {
    pub const fn on(addr: IpAddr) -> Self {
        Self { addr, v6only: None, device: None }
    }
}

/// Where the demo server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Nothing listens anywhere.
    None,
    /// In the server namespace, bound as `bind` says, with this listen backlog; `accept: false`
    /// leaves connections in the accept queue.
    Here { bind: Bind, backlog: i32, accept: bool },
    /// In a third namespace with no link to anything: listening on 0.0.0.0, in the wrong place.
    OtherNetns,
    /// In an app namespace behind the server namespace, bound as `bind` says on [`APP_PORT`];
    /// the server namespace publishes the scenario's port to it with a DNAT rule, as `docker
    /// run -p PORT:80` does for a container (a veth, a route, IP forwarding, nft's dnat).
    Published { bind: Bind },
    /// A Kubernetes Service as kube-proxy's nftables mode writes it: the scenario's port is
    /// the node port of Service default/web, whose two endpoints run in namespaces of their
    /// own behind the server namespace. The endpoint connections are sent to in turn is dead
    /// (its pod does not listen); the demo server on the other one serves on [`APP_PORT`].
    /// kube-proxy chooses at random (`numgen random`); the lab takes turns (`numgen inc`), so
    /// its first connection always goes to the dead one and the demo is reproducible.
    Service,
}

/// The Service scenario's endpoint addresses (172.30.10.2 dead, 172.30.11.2 serving) and
/// their gateways in the server namespace.
pub const fn service_endpoint(i: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(172, 30, 10 + i, 2), Ipv4Addr::new(172, 30, 10 + i, 1))
}

/// The app's port behind a published one, and its address on its side of the link.
pub const APP_PORT: u16 = 80;
pub const APP_V4: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
/// The server namespace's end of the link to the app namespace.
pub const APP_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);

/// What firewalld in the server namespace is told for the scenario (runtime or undone after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// Nothing: the scenario runs in namespaces of its own, without firewalld.
    None,
    /// The port is opened in zone public (without firewalld there is nothing to open).
    PortOpen,
    /// The port is not opened: zone public's default target rejects the SYN.
    PortClosed,
    /// Zone public's target is DROP, as in the story (`--get-target` → DROP).
    TargetDrop,
    /// The port is open, and a rich rule rejects this client on it.
    RichReject,
}

/// What else the scenario changes in the server namespace, undone after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// [`SECOND_V4`] added to the server's veth: the server binds it, the client dials the
    /// first address.
    SecondAddress,
    /// An nftables output rule (in a table of the lab's own) dropping every SYN-ACK the server
    /// sends from the port: the SYN arrives, the listener answers, the answer dies on the way
    /// out.
    DropSynAck,
}

/// Where the client connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// From the client namespace, over the veth, to this address of the server.
    Outside(IpAddr),
    /// On the server's own host (its namespace), to this address: over loopback.
    OnServerHost(IpAddr),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// The verdict class `reach why` must name.
    pub expected: &'static str,
    pub port: u16,
    pub server: Server,
    pub firewall: Firewall,
    pub fault: Fault,
    pub client: Client,
    /// Established connections made before the diagnosed attempt, held until teardown: with a
    /// non-accepting server and backlog 1 two of them fill the accept queue (it holds
    /// backlog + 1), so the kernel drops the next SYN.
    pub prefill: usize,
}

/// `firewall-cmd` argument lists: the change, and how to undo it.
pub struct FirewallChange {
    pub apply: Vec<Vec<String>>,
    pub undo: Vec<Vec<String>>,
}

/// The second IPv4 address of the server's veth in the address-mismatch scenario.
pub const SECOND_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);

const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOOPBACK6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const SERVER: IpAddr = IpAddr::V4(TwoHosts::SERVER_V4);
const SERVING: Server = Server::Here { bind: Bind::on(ANY), backlog: 128, accept: true };
const fn here(bind: Bind) -> Server {
    Server::Here { bind, backlog: 128, accept: true }
}

/// Every scenario, in the order the lab reports them.
pub fn all() -> Vec<Scenario> {
    let s = |name, expected, port, server, firewall| Scenario {
        name,
        expected,
        port,
        server,
        firewall,
        fault: Fault::None,
        client: Client::Outside(SERVER),
        prefill: 0,
    };
    vec![
        s(
            "loopback-only bind",
            "loopback_only_bind",
            8081,
            here(Bind::on(LOOPBACK)),
            Firewall::None,
        ),
        s(
            "server in another netns",
            "listener_in_other_netns",
            8082,
            Server::OtherNetns,
            Firewall::None,
        ),
        s("firewalld target DROP", "firewall_drop", 8083, SERVING, Firewall::TargetDrop),
        s("firewalld default reject", "firewall_reject", 8084, SERVING, Firewall::PortClosed),
        s("rich rule reject", "firewall_reject", 8085, SERVING, Firewall::RichReject),
        s("no listener", "no_listener", 8086, Server::None, Firewall::None),
        Scenario {
            prefill: 2,
            ..s(
                "listen overflow",
                "listen_overflow",
                8087,
                Server::Here { bind: Bind::on(ANY), backlog: 1, accept: false },
                Firewall::None,
            )
        },
        // Through firewalld, whose zone opens the port: the one success of the story.
        s("reachable", "reachable", 8088, SERVING, Firewall::PortOpen),
        // What `localhost` resolves to first on many hosts: ::1, to a server on 127.0.0.1.
        Scenario {
            client: Client::OnServerHost(LOOPBACK6),
            ..s(
                "client dials ::1",
                "family_mismatch",
                8089,
                here(Bind::on(LOOPBACK)),
                Firewall::None,
            )
        },
        s(
            "v6-only listener",
            "family_mismatch",
            8090,
            here(Bind { v6only: Some(true), ..Bind::on(ANY6) }),
            Firewall::None,
        ),
        Scenario {
            fault: Fault::SecondAddress,
            ..s(
                "address mismatch",
                "address_mismatch",
                8091,
                here(Bind::on(IpAddr::V4(SECOND_V4))),
                Firewall::None,
            )
        },
        s(
            "interface mismatch",
            "interface_mismatch",
            8092,
            here(Bind { device: Some("lo"), ..Bind::on(ANY) }),
            Firewall::None,
        ),
        Scenario {
            fault: Fault::DropSynAck,
            ..s("reply dropped", "reply_dropped", 8093, SERVING, Firewall::None)
        },
        // `docker run -p 8094:80` of an app that binds 127.0.0.1:80: it answers `curl` inside
        // its own namespace and nobody else.
        s(
            "published port, app on loopback",
            "loopback_only_bind",
            8094,
            Server::Published { bind: Bind::on(LOOPBACK) },
            Firewall::None,
        ),
        // A Service with a dead endpoint: diagnosed in the endpoint kube-proxy's rules chose.
        s("service, dead endpoint", "no_listener", 8095, Server::Service, Firewall::None),
    ]
}

impl Scenario {
    /// Whether it can only be shown with firewalld running.
    pub fn needs_firewalld(&self) -> bool {
        !matches!(self.firewall, Firewall::None | Firewall::PortOpen)
    }

    /// Whether it runs in the lab's main namespaces, where firewalld is, one after another
    /// (firewalld changes are global to its namespace); every other scenario runs in
    /// namespaces of its own, beside the others.
    pub fn in_main_lab(&self) -> bool {
        self.firewall != Firewall::None
    }

    /// Where the client connects.
    pub fn target(&self) -> SocketAddr {
        match self.client {
            Client::Outside(addr) | Client::OnServerHost(addr) => SocketAddr::new(addr, self.port),
        }
    }

    /// The interface of the server namespace the client's SYN arrives on.
    pub fn ingress(&self) -> &'static str {
        match self.client {
            Client::Outside(_) => TwoHosts::SERVER_IF,
            Client::OnServerHost(_) => "lo",
        }
    }

    /// The firewalld configuration of this scenario, against firewalld's defaults (zone public
    /// for the lab's interface, target default: reject).
    pub fn firewall_change(&self, client: IpAddr) -> FirewallChange {
        let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let port = format!("{}/tcp", self.port);
        let add_port = v(&["--zone=public", &format!("--add-port={port}")]);
        let remove_port = v(&["--zone=public", &format!("--remove-port={port}")]);
        match self.firewall {
            Firewall::PortOpen => FirewallChange { apply: vec![add_port], undo: vec![remove_port] },
            Firewall::None | Firewall::PortClosed => FirewallChange { apply: vec![], undo: vec![] },
            // A zone's target is permanent-only configuration in firewalld; it lands in the
            // fixture's private /etc/firewalld (deleted with it) and is reverted right after.
            Firewall::TargetDrop => FirewallChange {
                apply: vec![
                    v(&["--permanent", "--zone=public", "--set-target=DROP"]),
                    v(&["--reload"]),
                ],
                undo: vec![
                    v(&["--permanent", "--zone=public", "--set-target=default"]),
                    v(&["--reload"]),
                ],
            },
            Firewall::RichReject => {
                let family = if client.is_ipv4() { "ipv4" } else { "ipv6" };
                let rule = format!(
                    "rule family=\"{family}\" source address=\"{client}\" port port=\"{}\" \
                     protocol=\"tcp\" reject",
                    self.port
                );
                FirewallChange {
                    apply: vec![
                        add_port,
                        v(&["--zone=public", &format!("--add-rich-rule={rule}")]),
                    ],
                    undo: vec![
                        v(&["--zone=public", &format!("--remove-rich-rule={rule}")]),
                        remove_port,
                    ],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_every_class_of_the_story_is_there() {
        let all = all();
        let mut ports: Vec<u16> = all.iter().map(|s| s.port).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), all.len());
        let expected: Vec<&str> = all.iter().map(|s| s.expected).collect();
        for class in [
            "loopback_only_bind",
            "listener_in_other_netns",
            "firewall_drop",
            "firewall_reject",
            "no_listener",
            "listen_overflow",
            "reachable",
            "family_mismatch",
            "address_mismatch",
            "interface_mismatch",
            "reply_dropped",
        ] {
            assert!(expected.contains(&class), "{class} missing");
        }
    }

    #[test]
    fn where_each_scenario_runs_and_what_the_client_dials() {
        for s in all() {
            // Only firewalld scenarios share the main namespaces (and firewalld); a scenario of
            // its own namespaces has no firewalld to change.
            assert_eq!(s.in_main_lab(), s.firewall != Firewall::None, "{}", s.name);
            assert!(!s.needs_firewalld() || s.in_main_lab(), "{}", s.name);
            match s.client {
                Client::Outside(_) => assert_eq!(s.ingress(), TwoHosts::SERVER_IF, "{}", s.name),
                Client::OnServerHost(_) => assert_eq!(s.ingress(), "lo", "{}", s.name),
            }
        }
        let by_name = |n: &str| all().into_iter().find(|s| s.name == n).unwrap();
        let v6 = by_name("client dials ::1");
        assert_eq!(v6.target().to_string(), "[::1]:8089");
        assert_eq!(v6.ingress(), "lo");
        let mismatch = by_name("address mismatch");
        assert_eq!(mismatch.target().ip(), IpAddr::V4(TwoHosts::SERVER_V4));
        assert!(matches!(
            mismatch.server,
            Server::Here { bind: Bind { addr, .. }, .. } if addr == IpAddr::V4(SECOND_V4)
        ));
        assert_eq!(by_name("reply dropped").fault, Fault::DropSynAck);
    }

    #[test]
    fn every_change_is_undone_and_the_rich_rule_names_the_client() {
        for s in all() {
            let c = s.firewall_change(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)));
            assert_eq!(c.apply.is_empty(), c.undo.is_empty(), "{}", s.name);
            if s.firewall == Firewall::RichReject {
                let text = c.apply.concat().join(" ");
                assert!(text.contains("source address=\"10.77.0.2\" port port=\"8085\""), "{text}");
                assert!(c.undo.concat().join(" ").contains("--remove-rich-rule="));
            }
        }
    }
}
