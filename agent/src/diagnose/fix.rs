//! The fix lines for each verdict: exact commands where reach knows them, otherwise the one
//! change to make, phrased so a user can act on it without reading kernel sources.
use super::{
    Evidence, NetfilterRule,
    verdict::{ns_name, who},
};
use crate::{model::listener_view::ListenerView, netns::port_holders::PortHolder};

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

pub(super) fn nft_list() -> Vec<String> {
    vec!["nft -a list ruleset   # find the rule dropping the SYN; `reach watch` traces it".into()]
}

pub(super) fn netfilter(r: &NetfilterRule, port: u16) -> Vec<String> {
    let (f, t, c) = (&r.family, &r.table, &r.chain);
    let mut fix = vec![format!("nft -a list chain {f} {t} {c}")];
    match r.handle {
        Some(h) => fix.push(format!(
            "nft insert rule {f} {t} {c} position {h} tcp dport {port} accept   # or `nft delete rule {f} {t} {c} handle {h}`"
        )),
        None => fix.push(format!("nft insert rule {f} {t} {c} tcp dport {port} accept")),
    }
    fix.push(
        "make it permanent where this ruleset is generated (nftables.conf, docker, k8s…)".into(),
    );
    fix
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

pub(super) fn loopback(l: &ListenerView) -> Vec<String> {
    let any = if l.family == "ipv6" { "[::]" } else { "0.0.0.0" };
    vec![
        format!(
            "bind the server to {any}:{p} (all addresses) or to the specific address clients use, \
             not {}",
            l.endpoint(),
            p = l.port
        ),
        format!(
            "e.g. in Go: net.Listen(\"tcp\", \":{p}\") instead of net.Listen(\"tcp\", \"127.0.0.1:{p}\")",
            p = l.port
        ),
    ]
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
