//! A SYN that destination NAT sent on (Docker's `-p 8080:80`, a Kubernetes Service, a
//! firewalld forward-port, any `dnat`/`redirect` rule): the diagnosis belongs to the namespace
//! that owns the translated address, not to the port the client dialed, where nothing needs
//! to listen. The caller diagnoses both — the namespace the SYN arrived in and, with the
//! translated destination, the namespace it was sent to — and [`follow`] joins them: the
//! first one's verdict stands when the SYN died there (its firewall, a kernel drop), else the
//! second one's, with the NAT as a hop of the path and the first line of the evidence.
use std::net::SocketAddr;

use serde::Serialize;

use super::{Diagnosis, Hop, Verdict};
use crate::{firewall::kube_proxy::ServiceEndpoint, probes::sock_event::NetnsRef};

/// What rewrote the SYN's destination, and where that leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatHop {
    /// The address the client dialed.
    pub from: SocketAddr,
    /// Where conntrack says the connection went (its reply tuple's source).
    pub to: SocketAddr,
    /// The client is a process of the namespace: its SYN was rewritten at the output hook (no
    /// interface of the namespace saw it arrive).
    pub local: bool,
    /// Not a NAT: a userland relay (docker-proxy, socat) took the connection and opened its own
    /// to `to`.
    pub relay: Option<crate::netns::relays::Relay>,
    /// The rule that rewrote it, when the SYN's nftables walk was traced through it.
    pub rule: Option<NatRule>,
    /// The namespace owning `to`, with the interface holding the address; None when no
    /// namespace of this host has it (the connection leaves the host).
    pub owner: Option<NatOwner>,
    /// The Kubernetes Service and endpoint, when the rule is in one of kube-proxy's endpoint
    /// chains.
    pub service: Option<ServiceEndpoint>,
    /// What the rule is in the terms of the tool that wrote it (firewalld, Docker), when known.
    pub writer: Option<String>,
    /// The arrival namespace's forwarding switch for the SYN's family
    /// (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`) when it is off and the
    /// translated address is another namespace's: the kernel drops the SYN instead of sending
    /// it on. None: on, not needed, or unknown.
    pub forwarding_off: Option<String>,
    /// How the owner's answer to the client leaves it (None: not looked up — the attempt left
    /// the host, or the owner is the arrival namespace).
    pub return_route: Option<super::return_route::ReturnRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatRule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// The rule as `nft list ruleset` prints it.
    pub text: String,
    /// True when the SYN's traced walk went through this rule; false when the walk did not
    /// show it and it is the one plain `dnat to` rule of the ruleset with this target.
    pub traced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatOwner {
    pub netns: NetnsRef,
    pub iface: String,
    /// The Docker container the namespace is, as Docker names it, when its data is readable.
    pub container: Option<crate::netns::docker::Container>,
}

impl NatHop {
    /// The evidence line: what rewrote the destination and whose address it is now.
    pub fn line(&self) -> String {
        let by = match &self.rule {
            Some(r) => format!(
                " by rule `{}` (table {} {}, chain {}, handle {}{})",
                r.text,
                r.family,
                r.table,
                r.chain,
                r.handle,
                if r.traced { "" } else { "; the ruleset's one rule sending it there" }
            ),
            None => " (conntrack's record of the connection)".into(),
        };
        let owner = match &self.owner {
            Some(o) => format!(
                "; {} is an address of netns {} (interface {}){}: the answer comes from there",
                self.to.ip(),
                o.netns.name,
                o.iface,
                o.container.as_ref().map_or(String::new(), |c| format!(
                    ", Docker container `{}` (image {})",
                    c.name, c.image
                ))
            ),
            None => format!(
                "; {} is no address of any namespace of this host: the SYN leaves the host",
                self.to.ip()
            ),
        };
        let service = match &self.service {
            Some(k) => format!(
                " — kube-proxy's endpoint {} of Service {}/{} (port {}/{}), chosen for this \
                 connection —",
                k.endpoint,
                k.namespace,
                k.name,
                if k.port_name.is_empty() { "unnamed" } else { &k.port_name },
                k.protocol
            ),
            None => String::new(),
        };
        let writer = self.writer.as_ref().map(|w| format!(" — {w} —")).unwrap_or_default();
        if let Some(r) = &self.relay {
            return format!(
                "relay: {} listens on port {} and took the connection to {}: the client's \
                 handshake always succeeds, and it opens its own connection to {}{owner}",
                r.describe(),
                self.from.port(),
                self.from,
                self.to
            );
        }
        format!(
            "nat: the SYN to {} was sent on to {}{service}{writer}{by}{owner}",
            self.from, self.to
        )
    }
}

/// Verdicts decided before the SYN could be sent on: they stand, with the NAT as evidence.
/// A kernel drop does only when the arrival namespace recorded one (`dropped_here`: on its
/// way in or forwarded out); one inferred from that namespace's socket lookup — a RST or
/// silence with a listener there, say docker-proxy's on the published port — is not: the SYN
/// sent on never reached that lookup, the owner's answer is what the client got.
fn decided_before_nat(v: Verdict, dropped_here: bool) -> bool {
    match v {
        Verdict::FirewallDrop
        | Verdict::FirewallReject
        | Verdict::OtherNetfilterDrop
        | Verdict::NoSynSeen => true,
        Verdict::KernelDrop => dropped_here,
        _ => false,
    }
}

/// Joins the diagnosis of the namespace the SYN arrived in (`outer`) with the one of the
/// namespace NAT sent it to (`inner`, None when it leaves the host or could not be made).
/// `dropped_here`: the arrival namespace recorded a drop of the attempt.
pub fn follow(
    outer: Diagnosis,
    hop: &NatHop,
    inner: Option<Diagnosis>,
    dropped_here: bool,
) -> Diagnosis {
    let line = hop.line();
    let before = decided_before_nat(outer.verdict, dropped_here);
    // A rule's verdict came before the NAT; any drop after it is the forwarding's (the route
    // lookup of a forwarded packet fails first), whatever reason the arrival side recorded.
    let ruled = decided_before_nat(outer.verdict, false);
    if let Some(sysctl) = &hop.forwarding_off
        && !ruled
    {
        return forwarding_off(outer, hop, line, sysctl);
    }
    let mut inner = match inner {
        Some(i) if !before => i,
        _ => {
            let mut d = outer;
            d.evidence.insert(0, line);
            // Sent off the host: what this host's listeners lack is not the cause.
            if hop.owner.is_none() && !before {
                d.fix = vec![format!(
                    "reach why {} on the host that has {}: this host sends the SYN there",
                    hop.to,
                    hop.to.ip()
                )];
            }
            return d;
        }
    };
    // Another pod of the Service listening is not "the server in the wrong namespace": the
    // endpoint kube-proxy chose has no listener, and that is what its fix is about.
    if hop.service.is_some() && inner.verdict == Verdict::ListenerInOtherNetns {
        let other = |l: String| {
            l.replace(
                "the server listens in another namespace: ",
                "nothing listens there; another endpoint of the Service does: ",
            )
        };
        inner.verdict = Verdict::NoListener;
        inner.evidence = inner.evidence.into_iter().map(other).collect();
        inner.path = inner.path.into_iter().map(|h| Hop { note: other(h.note), ..h }).collect();
        inner.fix.clear();
    }
    let owner = hop.owner.as_ref().map(|o| o.netns.name.as_str()).unwrap_or("?");
    // Then the owner's hops after its client.
    let mut path = up_to_nat(outer.path, hop);
    path.extend(
        inner
            .path
            .into_iter()
            .skip(1)
            .map(|h| Hop { name: format!("{} (netns {owner})", h.name), ..h }),
    );
    let mut evidence = vec![line];
    let by_whom = match hop.relay {
        Some(_) => "the relay's connection was for ",
        None => "the SYN, sent on by the NAT, was for ",
    };
    // The owner's lookup speaks of the SYN as it arrived there: its destination is the NAT's,
    // not what the client dialed.
    evidence.extend(inner.evidence.into_iter().map(|l| l.replace("the client dialed ", by_whom)));
    let mut fix = inner.fix;
    if let Some(id) = owner.strip_prefix("container:") {
        // By the name the user gave it, when Docker's data says.
        let who = match hop.owner.as_ref().and_then(|o| o.container.as_ref()) {
            Some(c) => format!("`{}` ({id})", c.name),
            None => id.to_string(),
        };
        fix.extend(container_fix(inner.verdict, &who, hop));
    }
    if let Some(k) = &hop.service
        && matches!(
            inner.verdict,
            Verdict::LoopbackOnlyBind | Verdict::AddressMismatch | Verdict::FamilyMismatch
        )
    {
        fix.push(format!(
            "the app runs in the pod behind endpoint {} of Service {}/{}: make its container \
             listen on 0.0.0.0:{} (its args or configuration, then roll the Deployment); a \
             Service reaches the pod's own address {}, never its loopback",
            k.endpoint,
            k.namespace,
            k.name,
            hop.to.port(),
            hop.to.ip()
        ));
    }
    if let Some(k) = &hop.service
        && inner.verdict != Verdict::Reachable
    {
        fix.push(format!(
            "kubectl -n {} get endpointslices -l kubernetes.io/service-name={} -o wide   # the \
             pod behind endpoint {}: it is in the Service's endpoints but does not take \
             connections on {} (a readinessProbe on that port keeps such a pod out of them)",
            k.namespace,
            k.name,
            k.endpoint,
            hop.to.port()
        ));
    }
    Diagnosis { path, evidence, fix, ..inner }
}

/// The arrival namespace's hops up to its firewall, all passed (the SYN was sent on), then
/// the NAT.
fn up_to_nat(arrival: Vec<Hop>, hop: &NatHop) -> Vec<Hop> {
    let mut path: Vec<Hop> = arrival
        .into_iter()
        .take_while(|h| h.name != "socket")
        // A local client's SYN arrives on no interface and passes the output hook, not input.
        .take(if hop.local { 1 } else { usize::MAX })
        .map(|h| Hop { ok: true, ..h })
        .collect();
    if hop.local
        && let Some(client) = path.first_mut()
    {
        client.note.push_str(" (a process of this namespace: it left through the output hook)");
    }
    path.push(match &hop.relay {
        Some(r) => Hop {
            name: "relay".into(),
            ok: true,
            note: format!("{} (pid {}) took it and connects to {}", r.comm, r.pid, hop.to),
        },
        None => Hop {
            name: "nat".into(),
            ok: true,
            note: match &hop.rule {
                Some(r) => format!("`{}` → {}", r.text, hop.to),
                None => format!("→ {}", hop.to),
            },
        },
    });
    path
}

/// The SYN was sent on to another namespace's address by a namespace that does not forward:
/// the kernel drops it there (ip_forward off: the route lookup of a forwarded packet fails), so
/// the owner never sees it.
fn forwarding_off(outer: Diagnosis, hop: &NatHop, line: String, sysctl: &str) -> Diagnosis {
    let mut path = up_to_nat(outer.path, hop);
    let why = format!(
        "IP forwarding is off here ({sysctl} = 0): the kernel drops the SYN sent on to {} \
         instead of forwarding it, so it never leaves for {}",
        hop.to,
        hop.owner
            .as_ref()
            .map_or("its destination".to_string(), |o| format!("netns {}", o.netns.name))
    );
    path.push(Hop { name: "forward".into(), ok: false, note: why.clone() });
    Diagnosis {
        verdict: Verdict::KernelDrop,
        evidence: vec![line, why],
        fix: vec![
            format!(
                "sysctl -w {sysctl}=1   # in the namespace the SYN arrived in (ip netns exec NAME …, or nsenter --net=…)"
            ),
            format!(
                "echo '{sysctl} = 1' > /etc/sysctl.d/90-forwarding.conf   # and at boot (Docker and Kubernetes nodes need it on)"
            ),
        ],
        path,
        lookup: None,
    }
}

/// The same fix in a container's terms: what `-p HOST:CONTAINER` reaches, and where to change
/// the bind.
fn container_fix(v: Verdict, who: &str, hop: &NatHop) -> Option<String> {
    let (ip, port) = (hop.to.ip(), hop.to.port());
    match v {
        Verdict::LoopbackOnlyBind | Verdict::AddressMismatch | Verdict::FamilyMismatch => {
            Some(format!(
                "the app runs in container {who}: make it listen on 0.0.0.0:{port} inside the \
                 container (its configuration or command line, then recreate the container); a \
                 published port reaches the container's own address {ip}, never its loopback"
            ))
        }
        Verdict::NoListener => Some(format!(
            "nothing listens on port {port} in container {who}: check the app is running there \
             and that the container port of `-p {}:{port}` is the one it listens on",
            hop.from.port()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(ok: bool, name: &str) -> Hop {
        Hop { name: name.into(), ok, note: format!("{name} note") }
    }

    fn diagnosis(verdict: Verdict, failing: usize, fix: &str) -> Diagnosis {
        let names = ["client", "interface eth0", "firewall", "socket"];
        Diagnosis {
            verdict,
            evidence: vec![format!("{verdict:?} evidence")],
            fix: vec![fix.into()],
            path: names.iter().enumerate().map(|(i, n)| hop(i != failing, n)).collect(),
            lookup: None,
        }
    }

    fn nat(owner: bool) -> NatHop {
        NatHop {
            from: "10.77.0.1:8080".parse().unwrap(),
            to: "172.30.0.2:80".parse().unwrap(),
            local: false,
            relay: None,
            rule: Some(NatRule {
                family: "ip".into(),
                table: "nat".into(),
                chain: "prerouting".into(),
                handle: 4,
                text: "tcp dport 8080 dnat to 172.30.0.2:80".into(),
                traced: true,
            }),
            owner: owner.then(|| NatOwner {
                netns: NetnsRef { inode: 9, name: "app".into() },
                iface: "eth0".into(),
                container: None,
            }),
            service: None,
            writer: None,
            forwarding_off: None,
            return_route: None,
        }
    }

    #[test]
    fn the_namespace_nat_sent_the_syn_to_decides() {
        let outer = diagnosis(Verdict::NoListener, 3, "start the server on 8080");
        let mut inner = diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80 in netns app");
        inner
            .evidence
            .push("the server listens on 127.0.0.1:80; the client dialed 172.30.0.2".into());
        let d = follow(outer, &nat(true), Some(inner), false);
        assert_eq!(d.verdict, Verdict::LoopbackOnlyBind);
        assert_eq!(d.fix, ["bind 0.0.0.0:80 in netns app"], "no fix of the port nobody serves");
        assert!(d.evidence[0].starts_with("nat: the SYN to 10.77.0.1:8080 was sent on to 172.30.0.2:80 by rule `tcp dport 8080 dnat to 172.30.0.2:80`"), "{:?}", d.evidence);
        assert!(d.evidence[0].contains("netns app (interface eth0)"), "{:?}", d.evidence);
        assert!(!d.evidence.iter().any(|l| l.contains("NoListener")), "{:?}", d.evidence);
        assert!(!d.evidence.iter().any(|l| l.contains("the client dialed")), "{:?}", d.evidence);
        let names: Vec<&str> = d.path.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "client",
                "interface eth0",
                "firewall",
                "nat",
                "interface eth0 (netns app)",
                "firewall (netns app)",
                "socket (netns app)"
            ]
        );
        assert_eq!(d.path.iter().filter(|h| !h.ok).count(), 1, "one failing hop: {:?}", d.path);
        assert!(!d.path.last().unwrap().ok);
    }

    #[test]
    fn a_container_behind_the_nat_gets_the_fix_in_container_terms() {
        let mut hop = nat(true);
        hop.owner.as_mut().unwrap().netns.name = "container:4f1e3c5a9b7d".into();
        let outer = diagnosis(Verdict::NoListener, 3, "start the server on 8080");
        let inner = diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80");
        let d = follow(outer, &hop, Some(inner), false);
        assert_eq!(d.fix[0], "bind 0.0.0.0:80");
        assert!(d.fix[1].starts_with("the app runs in container 4f1e3c5a9b7d: make it listen on 0.0.0.0:80 inside the container"), "{:?}", d.fix);
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &hop,
            Some(diagnosis(Verdict::NoListener, 3, "start it on 80")),
            false,
        );
        assert!(d.fix[1].contains("`-p 8080:80`"), "{:?}", d.fix);
        // Docker's data names it: by its name, in the fix and in the NAT's line.
        hop.owner.as_mut().unwrap().container = Some(crate::netns::docker::Container {
            id: "4f1e3c5a9b7d".repeat(5) + "0123",
            name: "web".into(),
            image: "shop/web:2".into(),
        });
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &hop,
            Some(diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80")),
            false,
        );
        assert!(
            d.fix[1].starts_with("the app runs in container `web` (4f1e3c5a9b7d): make it listen"),
            "{:?}",
            d.fix
        );
        assert!(
            d.evidence[0].contains(
                "(interface eth0), Docker container `web` (image shop/web:2): the answer comes"
            ),
            "{:?}",
            d.evidence
        );
        // Not a container: the plain fix only.
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &nat(true),
            Some(diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80")),
            false,
        );
        assert_eq!(d.fix, ["bind 0.0.0.0:80"]);
    }

    #[test]
    fn a_kubernetes_service_endpoint_is_named_with_its_fix() {
        let mut hop = nat(true);
        hop.service = crate::firewall::kube_proxy::endpoint_chain(
            "kube-proxy",
            "endpoint-5OJB2KTY-default/web/tcp/http__172.30.0.2/80",
        );
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &hop,
            Some(diagnosis(Verdict::NoListener, 3, "start it on 80")),
            false,
        );
        assert!(
            d.evidence[0].contains(
                "kube-proxy's endpoint 172.30.0.2:80 of Service default/web (port http/tcp)"
            ),
            "{:?}",
            d.evidence
        );
        assert!(
            d.fix[1].starts_with(
                "kubectl -n default get endpointslices -l kubernetes.io/service-name=web"
            ),
            "{:?}",
            d.fix
        );
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &hop,
            Some(diagnosis(Verdict::Reachable, usize::MAX, "")),
            false,
        );
        assert!(!d.fix.iter().any(|f| f.contains("kubectl")), "{:?}", d.fix);
        // The pod's app on loopback: the fix in the pod's terms.
        let d = follow(
            diagnosis(Verdict::NoListener, 3, "x"),
            &hop,
            Some(diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80")),
            false,
        );
        assert!(
            d.fix[1].starts_with(
                "the app runs in the pod behind endpoint 172.30.0.2:80 of Service default/web: \
                 make its container listen on 0.0.0.0:80"
            ),
            "{:?}",
            d.fix
        );
        // Another endpoint's pod listening: the chosen endpoint has no listener.
        let mut elsewhere =
            diagnosis(Verdict::ListenerInOtherNetns, 3, "run the client inside netns ep0");
        elsewhere.evidence.push(
            "the server listens in another namespace: pid 7 on 0.0.0.0:80 in netns ep0".into(),
        );
        let d = follow(diagnosis(Verdict::NoListener, 3, "x"), &hop, Some(elsewhere), false);
        assert_eq!(d.verdict, Verdict::NoListener);
        assert!(
            d.evidence.iter().any(|l| l
                .contains("nothing listens there; another endpoint of the Service does: pid 7")),
            "{:?}",
            d.evidence
        );
        assert!(!d.fix.iter().any(|f| f.contains("run the client")), "{:?}", d.fix);
        assert!(d.fix[0].starts_with("kubectl"), "{:?}", d.fix);
    }

    #[test]
    fn a_namespace_that_does_not_forward_drops_the_syn_sent_on() {
        let mut hop = nat(true);
        hop.forwarding_off = Some("net.ipv4.ip_forward".into());
        let outer = diagnosis(Verdict::NoSynSeen, 3, "x");
        assert_eq!(
            follow(outer, &hop, None, false).verdict,
            Verdict::NoSynSeen,
            "decided before the NAT"
        );
        let outer = diagnosis(Verdict::KernelDrop, 3, "a silent drop");
        assert!(follow(outer, &hop, None, false).evidence[1].starts_with("IP forwarding is off"));
        let outer = diagnosis(Verdict::NoListener, 3, "start the server on 8080");
        let d = follow(outer, &hop, Some(diagnosis(Verdict::Reachable, usize::MAX, "")), false);
        assert_eq!(d.verdict, Verdict::KernelDrop);
        assert!(
            d.evidence[1].starts_with("IP forwarding is off here (net.ipv4.ip_forward = 0)"),
            "{:?}",
            d.evidence
        );
        assert!(d.evidence[1].contains("never leaves for netns app"), "{:?}", d.evidence);
        assert!(d.fix[0].starts_with("sysctl -w net.ipv4.ip_forward=1"), "{:?}", d.fix);
        let last = d.path.last().unwrap();
        assert_eq!((last.name.as_str(), last.ok), ("forward", false));
        assert_eq!(d.path.iter().filter(|h| !h.ok).count(), 1);
    }

    #[test]
    fn a_kernel_drop_stands_only_when_the_arrival_namespace_recorded_it() {
        // docker-proxy listens on the published port: the arrival side, seeing the owner's
        // RST come back, infers "no socket although one listens"; the owner's lookup decides.
        let outer = diagnosis(Verdict::KernelDrop, 3, "connect again: the server listens now");
        let inner = diagnosis(Verdict::LoopbackOnlyBind, 3, "bind 0.0.0.0:80");
        let d = follow(outer.clone(), &nat(true), Some(inner.clone()), false);
        assert_eq!(d.verdict, Verdict::LoopbackOnlyBind);
        assert_eq!(d.fix, ["bind 0.0.0.0:80"]);
        // A drop the arrival namespace recorded (its forward path) came first.
        let d = follow(outer, &nat(true), Some(inner), true);
        assert_eq!(d.verdict, Verdict::KernelDrop);
        assert_eq!(d.fix, ["connect again: the server listens now"]);
    }

    #[test]
    fn a_syn_that_died_before_the_nat_keeps_its_verdict() {
        let outer = diagnosis(Verdict::FirewallDrop, 2, "firewall-cmd --add-port");
        let inner = diagnosis(Verdict::Reachable, usize::MAX, "");
        let d = follow(outer, &nat(true), Some(inner), false);
        assert_eq!(d.verdict, Verdict::FirewallDrop);
        assert_eq!(d.fix, ["firewall-cmd --add-port"]);
        assert!(d.evidence[0].starts_with("nat: "), "{:?}", d.evidence);
        // No owner (the SYN leaves the host): the arrival namespace's diagnosis, said so.
        let outer = diagnosis(Verdict::NoListener, 3, "x");
        let d = follow(outer, &nat(false), None, false);
        assert!(
            d.evidence[0].contains("no address of any namespace of this host"),
            "{:?}",
            d.evidence
        );
        assert_eq!(
            d.fix,
            [
                "reach why 172.30.0.2:80 on the host that has 172.30.0.2: this host sends the SYN there"
            ]
        );
    }
}
