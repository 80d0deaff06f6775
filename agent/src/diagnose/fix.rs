//! The fix lines for each verdict: exact commands where reach knows them, otherwise the one
//! change to make, phrased so a user can act on it without reading kernel sources.
use super::{
    Evidence, NetfilterRule,
    verdict::{ns_name, who},
};
use std::net::IpAddr;

mod netfilter;

use super::lookup::{self, Judged, Judgement, Miss, Reach, Socket, Syn};
use crate::{
    model::listener_view::ListenerView,
    netns::{port_holders::PortHolder, sock_diag::Family},
    output::endpoint::endpoint,
};

pub(super) fn no_syn(port: u16) -> Vec<String> {
    vec![
        format!(
            "the SYN never reached this host: check the client's route and DNS, NAT/port \
             forwarding to port {port}, and firewalls before this host (the client's own, a cloud \
             security group, Windows Defender Firewall)"
        ),
        "watch the right interface: `reach watch` on every interface the client can come in on"
            .into(),
    ]
}

pub(super) fn events_lost(port: u16) -> Vec<String> {
    vec![format!(
        "run `reach why {port}` again and connect while it waits, when the host is less busy (the \
         ring buffer fills under a flood of other events; SYNs above the rate bound are counted, \
         not reported)"
    )]
}

pub(super) fn netns_gone(name: &str, port: u16) -> Vec<String> {
    vec![format!(
        "nothing can listen in {name} any more: start the server again (its container or pod), \
         then run `reach why {port}` where it runs now"
    )]
}

pub(super) fn nft_list() -> Vec<String> {
    vec!["nft -a list ruleset   # find the rule dropping the SYN; `reach watch` traces it".into()]
}

/// `other_netfilter_drop`: the commands that delete the deciding rule or accept the client
/// before it (nft, or iptables for iptables-nft's tables, Docker's chains in Docker's terms).
pub(super) fn netfilter(r: &NetfilterRule, port: u16) -> Vec<String> {
    netfilter::fix(r, port)
}

pub(super) fn overflow(full: Option<&ListenerView>) -> Vec<String> {
    let who = full.map(who).unwrap_or_else(|| "the server".into());
    vec![
        format!(
            "{who} does not accept() connections fast enough: find what blocks its accept loop"
        ),
        "raise the backlog: listen(fd, N) in the server and `sysctl -w net.core.somaxconn=N` \
         (the kernel caps the backlog at somaxconn)"
            .into(),
    ]
}

/// `family`: the family of the client's SYN when known. A listener of the other family needs
/// the dual-stack wildcard, not its own family's.
pub(super) fn loopback(l: &ListenerView, family: Option<Family>) -> Vec<String> {
    let own = if l.family == "ipv6" { Family::V6 } else { Family::V4 };
    let p = l.port;
    let any = match family.unwrap_or(own) {
        f if f != own => format!("[::]:{p} without IPV6_V6ONLY (all addresses of both families)"),
        Family::V6 => format!("[::]:{p} (all addresses)"),
        Family::V4 => format!("0.0.0.0:{p} (all addresses)"),
    };
    vec![
        format!(
            "bind the server to {any} or to the specific address clients use, not {}",
            l.endpoint()
        ),
        format!(
            "e.g. in Go: net.Listen(\"tcp\", \":{p}\") instead of net.Listen(\"tcp\", \"{}\")",
            l.endpoint()
        ),
    ]
}

fn ep(addr: IpAddr, port: u16) -> String {
    endpoint(Some(&addr.to_string()), port)
}

/// `family_mismatch`: the listener takes only the other family. Either the server listens on
/// both (a dual-stack `[::]`, or a second listener, loopback kept loopback), or the client dials
/// the family the server has; `alt`: an address of the server's family where the SYN arrives.
pub(super) fn family(l: &ListenerView, s: &Socket, syn: &Syn, alt: Option<IpAddr>) -> Vec<String> {
    let p = s.port;
    let bound = lookup::unmap(s.addr);
    let dual = format!(
        "[::]:{p} without IPV6_V6ONLY (dual-stack: it takes IPv4 too) — in Go net.Listen(\"tcp\", \
         \":{p}\") is dual-stack, net.Listen(\"tcp4\", …) and net.Listen(\"tcp6\", …) are not"
    );
    let dial_alt = |what: &str| match alt {
        Some(a) => format!("or have the client dial {} (this host over {what})", ep(a, p)),
        None => format!("or have the client dial an {what} address of this host"),
    };
    match (s.reach(), syn.family()) {
        // The server takes IPv4 only, the client sent IPv6.
        (Reach::V4 | Reach::V4Mapped, _) if bound.is_loopback() => vec![
            format!(
                "also listen on [::1]:{p} (a second listener; the server stays loopback-only) — in \
                 Go a second net.Listen(\"tcp\", \"[::1]:{p}\")"
            ),
            format!(
                "or have the client dial {} instead of {} (`localhost` resolves to ::1 first on \
                 many hosts: use 127.0.0.1)",
                ep(bound, p),
                ep(syn.daddr, p)
            ),
        ],
        (Reach::V4 | Reach::V4Mapped, _) if bound.is_unspecified() => {
            vec![format!("listen on {dual}, instead of {}", l.endpoint()), dial_alt("IPv4")]
        }
        (Reach::V4 | Reach::V4Mapped, _) => vec![
            format!("also listen on {} (a second listener), or on {dual}", ep(syn.daddr, p)),
            format!("or have the client dial {}", ep(bound, p)),
        ],
        // The server takes IPv6 only, the client sent IPv4.
        (Reach::V6Only, _) => vec![
            format!(
                "turn IPV6_V6ONLY off on {} (setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 0) before \
                 bind(); net.ipv6.bindv6only=1 makes it the default) or add a listener on \
                 0.0.0.0:{p}: {dual}",
                l.endpoint()
            ),
            dial_alt("IPv6"),
        ],
        (_, _) if bound.is_loopback() => vec![
            format!(
                "also listen on 127.0.0.1:{p} (a second listener; the server stays \
                 loopback-only) — in Go a second net.Listen(\"tcp\", \"127.0.0.1:{p}\")"
            ),
            format!("or have the client dial {} instead of {}", ep(bound, p), ep(syn.daddr, p)),
        ],
        (_, _) => vec![
            format!("also listen on {} (a second listener), or on {dual}", ep(syn.daddr, p)),
            format!("or have the client dial {}", ep(bound, p)),
        ],
    }
}

/// `address_mismatch`: bound to one address, the SYN to another. `dialed_local`: the dialed
/// address is one of this host's (a server can bind it).
pub(super) fn address(l: &ListenerView, s: &Socket, syn: &Syn, dialed_local: bool) -> Vec<String> {
    let p = s.port;
    let bound = lookup::unmap(s.addr);
    let any = if syn.family() == Family::V4 { "0.0.0.0" } else { "[::]" };
    let mut fix = Vec::new();
    if dialed_local {
        fix.push(format!(
            "bind the server to {any}:{p} (every address) or to {}, the address the client dials, \
             instead of {} — in Go net.Listen(\"tcp\", \":{p}\") instead of \
             net.Listen(\"tcp\", \"{}\")",
            ep(syn.daddr, p),
            l.endpoint(),
            l.endpoint()
        ));
    }
    fix.push(format!(
        "{}have the client dial {}, the address the server listens on",
        if dialed_local { "or " } else { "" },
        ep(bound, p)
    ));
    fix
}

/// `interface_mismatch`: SO_BINDTODEVICE to one interface, the SYN on another (or through a
/// VRF an unbound listener does not serve). `on_dev`: an address on the bound device a client
/// on this host could dial instead.
pub(super) fn interface(
    l: &ListenerView,
    j: &Judged,
    syn: &Syn,
    on_dev: Option<IpAddr>,
    ifname: &dyn Fn(u32) -> Option<String>,
) -> Vec<String> {
    let name = |i: u32| ifname(i).unwrap_or_else(|| format!("ifindex {i}"));
    match &j.judgement {
        Judgement::Misses(Miss::OutsideVrf { master, .. }) => vec![
            "`sysctl -w net.ipv4.tcp_l3mdev_accept=1` in this namespace, so listeners bound to no \
             device take SYNs that come through a VRF"
                .into(),
            format!(
                "or bind the listener to VRF {} (SO_BINDTODEVICE \"{}\")",
                name(*master),
                name(*master)
            ),
        ],
        Judgement::Misses(Miss::Device { bound, ingress, .. }) => {
            let mut fix = vec![format!(
                "stop binding {} to interface {} (SO_BINDTODEVICE: a server's \
                     interface/bind-to-device option, systemd's BindToDevice=), so it takes SYNs \
                     from every interface",
                l.endpoint(),
                name(*bound)
            )];
            // Ingress 0: the interface the SYN arrives on is unknown, so none can be named.
            if *ingress != 0 {
                fix.push(format!(
                    "or bind it to {} (SO_BINDTODEVICE \"{}\"), where the client's SYN arrives",
                    name(*ingress),
                    name(*ingress)
                ));
            }
            if let Some(a) = on_dev.filter(|_| syn.ingress.loopback) {
                fix.push(format!(
                    "or, from this host, dial {} (an address on {})",
                    ep(a, syn.dport),
                    name(*bound)
                ));
            }
            fix
        }
        _ => Vec::new(),
    }
}

pub(super) fn other_netns(l: &ListenerView, target: Option<&str>) -> Vec<String> {
    let ns = ns_name(&l.netns);
    let mut fix = vec![
        format!(
            "run the client inside netns {ns}: `ip netns exec {ns} <client>` (named netns) or `nsenter --net=/proc/<pid>/ns/net <client>`"
        ),
        format!(
            "or expose port {p} from netns {ns}: publish it (`docker run -p {p}:{p}`), or DNAT/forward to that namespace's address",
            p = l.port
        ),
    ];
    if let Some(t) = target {
        fix.push(format!("or start the server in netns {t}, where the SYN arrives"));
    }
    fix
}

pub(super) fn no_listener(e: &Evidence) -> Vec<String> {
    let mut fix = vec![format!("start the server listening on port {}", e.port)];
    let holders = super::verdict::relevant_holders(e);
    let owned: Vec<&PortHolder> =
        holders.iter().copied().filter(|h| !h.owners.is_empty()).collect();
    let time_wait = holders.iter().any(|h| h.state == "time_wait");
    for b in &e.failed_binds {
        let hint = match b.errno.as_str() {
            "EADDRINUSE" => in_use_hint(e.port, &owned, time_wait),
            "EACCES" => format!(
                "port {} < 1024 needs CAP_NET_BIND_SERVICE (or lower net.ipv4.ip_unprivileged_port_start)",
                e.port
            ),
            "EADDRNOTAVAIL" => {
                "the address it binds is not on any interface of its namespace (or set IP_FREEBIND)"
                    .into()
            }
            other => format!("fix the bind error {other}"),
        };
        fix.push(format!("pid {} ({}) failed with {}: {hint}", b.pid, b.comm, b.errno));
    }
    // Not seen failing (it may have failed before reach started), but the port is taken.
    if let Some(h) = owned.first().filter(|_| e.failed_binds.is_empty()) {
        fix.push(format!(
            "{} holds port {} without listening ({}): a server binding the port gets \
             EADDRINUSE; stop it, or make it listen() if it is the server",
            h.owned_by(),
            e.port,
            h.describe()
        ));
    }
    fix
}

/// What an EADDRINUSE collided with, and what to do about it.
fn in_use_hint(port: u16, owned: &[&PortHolder], time_wait: bool) -> String {
    if let Some(h) = owned.first() {
        return format!(
            "{} holds port {port} ({}): stop it or move one of the two to another port",
            h.owned_by(),
            h.describe()
        );
    }
    if time_wait {
        return format!(
            "connections in TIME_WAIT block port {port}: set SO_REUSEADDR on the server's socket \
             before bind() (Go, Node.js and nginx do), or wait until they expire"
        );
    }
    // Below 6.8 a socket bound without listening is invisible to sock_diag (reach and `ss`):
    // pointing at `ss` there would send the user looking for something it cannot show.
    if !crate::netns::port_holders::bound_only_visible() {
        return format!(
            "another socket holds port {port}, most likely one bound without listening: stop the \
             other program that binds it, or use SO_REUSEADDR / another port ({})",
            crate::netns::port_holders::BOUND_ONLY_HIDDEN
        );
    }
    format!(
        "another socket holds port {port} (`ss -tanp 'sport = :{port}'` names it): stop it, or use \
         SO_REUSEADDR / another port"
    )
}

pub(super) fn kernel(reason: &str, iface: Option<&str>) -> Vec<String> {
    let ifc = iface.unwrap_or("<if>");
    vec![match reason {
        "IP_RPFILTER" => format!(
            "reverse-path filter: the route back to the client is not via {ifc}; fix the route or `sysctl -w net.ipv4.conf.{ifc}.rp_filter=2`"
        ),
        "IP_NOPROTO" | "OTHERHOST" => {
            "the SYN was not for this host: check the destination address and MAC".into()
        }
        "IP_INADDRERRORS" | "IP_INNOROUTES" | "IP_OUTNOROUTES" => {
            "no route: check `ip route get` for the client's address".into()
        }
        "XFRM_POLICY" => "an IPsec (xfrm) policy rejects it: `ip xfrm policy`".into(),
        "TCP_CSUM" | "IP_CSUM" => "bad checksum: check offloads on the path (`ethtool -k`)".into(),
        "SOCKET_FILTER" => "a socket filter (BPF) on the listener dropped it".into(),
        other => {
            format!("look up drop reason {other} in the kernel's include/net/dropreason-core.h")
        }
    }]
}

pub(super) fn silent(answered: bool) -> Vec<String> {
    if answered {
        vec![
            "check the return path: the client's route back, NAT state, the client's firewall"
                .into(),
        ]
    } else {
        vec!["run `reach watch` with drop tracing on every interface to catch where it dies".into()]
    }
}
