//! The scenarios of the story, as data: where the demo server listens, what firewalld is told,
//! what the client does, and the verdict `reach why` must reach.
//!
//! Each scenario has its own port, so a connection of one (in TIME_WAIT, or still queued) can
//! never be mistaken for the next one's attempt.
use std::net::{IpAddr, Ipv4Addr};

/// Where the demo server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Nothing listens anywhere.
    None,
    /// In the server namespace, on `addr`, with this listen backlog; `accept: false` leaves
    /// connections in the accept queue.
    Here { addr: IpAddr, backlog: i32, accept: bool },
    /// In a third namespace with no link to anything: listening on 0.0.0.0, in the wrong place.
    OtherNetns,
}

/// What firewalld in the server namespace is told for the scenario (runtime or undone after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// The port is opened in zone public (without firewalld there is nothing to open).
    PortOpen,
    /// The port is not opened: zone public's default target rejects the SYN.
    PortClosed,
    /// Zone public's target is DROP, as in the story (`--get-target` → DROP).
    TargetDrop,
    /// The port is open, and a rich rule rejects this client on it.
    RichReject,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// The verdict class `reach why` must name.
    pub expected: &'static str,
    pub port: u16,
    pub server: Server,
    pub firewall: Firewall,
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

const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SERVING: Server = Server::Here { addr: ANY, backlog: 128, accept: true };

/// Every scenario, in the order the lab runs them.
pub fn all() -> Vec<Scenario> {
    let s = |name, expected, port, server, firewall| Scenario {
        name,
        expected,
        port,
        server,
        firewall,
        prefill: 0,
    };
    vec![
        s(
            "loopback-only bind",
            "loopback_only_bind",
            8081,
            Server::Here { addr: LOOPBACK, backlog: 128, accept: true },
            Firewall::PortOpen,
        ),
        s(
            "server in another netns",
            "listener_in_other_netns",
            8082,
            Server::OtherNetns,
            Firewall::PortOpen,
        ),
        s("firewalld target DROP", "firewall_drop", 8083, SERVING, Firewall::TargetDrop),
        s("firewalld default reject", "firewall_reject", 8084, SERVING, Firewall::PortClosed),
        s("rich rule reject", "firewall_reject", 8085, SERVING, Firewall::RichReject),
        s("no listener", "no_listener", 8086, Server::None, Firewall::PortOpen),
        Scenario {
            prefill: 2,
            ..s(
                "listen overflow",
                "listen_overflow",
                8087,
                Server::Here { addr: ANY, backlog: 1, accept: false },
                Firewall::PortOpen,
            )
        },
        s("reachable", "reachable", 8088, SERVING, Firewall::PortOpen),
    ]
}

impl Scenario {
    /// Whether it can only be shown with firewalld running.
    pub fn needs_firewalld(&self) -> bool {
        self.firewall != Firewall::PortOpen
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
            Firewall::PortClosed => FirewallChange { apply: vec![], undo: vec![] },
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
        ] {
            assert!(expected.contains(&class), "{class} missing");
        }
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
