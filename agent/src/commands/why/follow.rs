//! Following the client's attempt through destination NAT (see `diagnose::nat`): conntrack
//! says where the connection went, the SYN's traced walk which rule sent it there, the
//! interfaces of every namespace whose address that is; then the evidence for diagnosing the
//! attempt in that namespace, with the translated destination: what was watched there when
//! the ruleset said beforehand that NAT can send the attempt there ([`plan`]), else what its
//! listeners and the attempt's outcome say.
use std::net::{IpAddr, SocketAddr};

use super::{Watched, collect::Collector, holders_on, listeners_on, observed};
use crate::{
    diagnose::{
        Evidence,
        nat::{NatHop, NatOwner, NatRule},
        return_route::{Leaves, ReturnRoute},
    },
    firewall::nftables,
    lab::NetNsFd,
    model::{
        flows::{FlowRecord, Outcome},
        listener_view::ListenerView,
    },
    netns::{addresses, conntrack, enter, interfaces, inventory, relays::Relay, route, sk_lookup},
    observe::session::VerdictRecord,
};

/// A destination NAT can send the attempt to, in another namespace of this host: watched
/// there from the start.
#[derive(Debug, Clone)]
pub struct Followed {
    pub to: SocketAddr,
    pub owner: Watched,
    /// The owner's interface holding `to`'s address.
    pub iface: String,
    /// The relay listening on the port that connects there, when it is one (not a NAT).
    pub relay: Option<Relay>,
}

/// At most this many namespaces are watched besides the arrival one (a node's Service can have
/// hundreds of endpoints); the others are followed after the attempt, from conntrack.
const FOLLOWED_NAMESPACES: usize = 8;

/// Where the ruleset of `ns` can send a SYN to `port` by destination NAT, and where a relay
/// listening on the port there connects to, in other namespaces of this host (an address of
/// `ns` itself or off the host is followed after the attempt).
pub async fn plan(ns: &Watched, port: u16) -> Vec<Followed> {
    let nat = NetNsFd::open(&ns.path)
        .ok()
        .and_then(|fd| {
            let rs = nftables::read_in(&fd).ok()?;
            let xt = |r: &nftables::Rule| {
                crate::firewall::iptables_nft::dnat_destination(&rs, r, port, &fd)
            };
            Some(crate::firewall::nat_destinations::destinations_with(&rs, port, xt))
        })
        .unwrap_or_default();
    let relays = relays_among(&listeners_on(port).await.unwrap_or_default(), ns);
    let mut followed: Vec<Followed> = Vec::new();
    let candidates =
        nat.into_iter().map(|to| (to, None)).chain(relays.into_iter().map(|r| (r.to, Some(r))));
    for (to, relay) in candidates {
        // Every namespace with the address is watched: the one the SYN arrives in is the owner.
        for (owner, iface) in owners_of(to.ip(), ns).await {
            if owner.inode == ns.inode {
                break; // its own address: delivered here, never sent on
            }
            let namespaces: std::collections::BTreeSet<u64> =
                followed.iter().map(|f| f.owner.inode).collect();
            if !namespaces.contains(&owner.inode) && namespaces.len() >= FOLLOWED_NAMESPACES {
                tracing::info!(
                    "not watching {to} in {} beforehand: {FOLLOWED_NAMESPACES} namespaces already are",
                    owner.name
                );
                continue;
            }
            followed.push(Followed { to, owner, iface, relay: relay.clone() });
        }
    }
    followed
}

/// The relays among `listeners` (of one port) in `ns`.
fn relays_among(listeners: &[ListenerView], ns: &Watched) -> Vec<Relay> {
    let mut relays: Vec<Relay> = Vec::new();
    for l in listeners.iter().filter(|l| l.netns.inode == ns.inode) {
        for pid in l.pids.iter().copied().chain(l.pid) {
            if let Some(r) = Relay::of_pid(pid)
                && !relays.iter().any(|k| k.pid == r.pid)
            {
                relays.push(r);
            }
        }
    }
    relays
}

/// An attempt a relay listening on its port accepted: the relay's own connection, as the
/// namespace it went to saw it, is the one that decides. None: no relay took it.
/// `listeners`: those on the attempt's port, as the diagnosis already read them.
pub async fn relayed(
    ns: &Watched,
    flow: &FlowRecord,
    listeners: &[ListenerView],
    seen: Option<&Collector>,
) -> Option<(NatHop, Option<Evidence>)> {
    if flow.outcome != Outcome::Accepted {
        return None;
    }
    let relay = relays_among(listeners, ns).into_iter().next()?;
    let to = relay.to;
    let owner = owner_of(to, ns, seen).await;
    let mut hop = NatHop {
        from: flow.server,
        to,
        local: false,
        relay: Some(relay),
        rule: None,
        service: None,
        writer: None,
        forwarding_off: None,
        return_route: None,
        owner: owner.as_ref().map(|(w, iface)| nat_owner(w, iface)),
    };
    let inner = match owner {
        Some((w, iface)) => {
            let watched = seen.and_then(|c| c.inner_of(w.inode, to));
            let e = relay_evidence(&w, iface, to, watched).await;
            Some(with_return_route(e, ns, &w, to).await)
        }
        None => None,
    };
    hop.return_route = inner.as_ref().and_then(|e| e.return_route.clone());
    Some((hop, inner))
}

/// The evidence in `owner` for a relay's connection to `to`: what was watched there, or — its
/// connection not seen — what its listeners predict.
async fn relay_evidence(
    owner: &Watched,
    iface: String,
    to: SocketAddr,
    watched: Option<&Collector>,
) -> Evidence {
    match watched.filter(|c| c.flow.is_some()) {
        Some(c) => seen_in(owner, iface, to, c).await,
        None => Evidence { iface: Some(iface.clone()), ..owner_evidence(owner, &iface, to).await },
    }
}

/// The evidence in `owner` as watched there (`c`): the attempt arriving on `iface` to `to`.
async fn seen_in(owner: &Watched, iface: String, to: SocketAddr, c: &Collector) -> Evidence {
    let mut e = owner_evidence(owner, &iface, to).await;
    observed(&mut e, owner, c);
    e.iface = e.iface.or(Some(iface));
    e
}

/// The NAT the attempt `flow` went through in `ns`, and the evidence in the namespace it
/// leads to (None when it leaves the host). None: conntrack has no translation for it.
/// `seen`: what the session collected (the owner's side when it was watched); `local`: the
/// client is a process of `ns` (its SYN was sent on from the output hook).
pub async fn follow(
    ns: &Watched,
    flow: &FlowRecord,
    walk: Option<&VerdictRecord>,
    events: Option<&conntrack::Events>,
    seen: Option<&Collector>,
    local: bool,
) -> Option<(NatHop, Option<Evidence>)> {
    let (client, server) = (flow.client, flow.server);
    // An entry asked for now also says how far the handshake got (below); an event's is the
    // entry as conntrack confirmed the SYN.
    let (entry, asked) = match events.and_then(|e| e.find(client, server)) {
        Some(e) => (Some(e), false),
        None if conntrack::available() => (ask(ns, client, server).await, true),
        None => (None, false),
    };
    tracing::debug!("conntrack: {entry:?}; the SYN's walk: {:?}", walk.map(|w| &w.steps));
    let ruleset = NetNsFd::open(&ns.path).ok().and_then(|fd| {
        nftables::read_in(&fd)
            .inspect_err(|e| tracing::info!("reading the ruleset of {}: {e}", ns.name))
            .ok()
    });
    let found = walk.zip(ruleset.as_ref()).and_then(|(w, rs)| nat_rule(rs, w, server.port()));
    // conntrack knows where the connection went; a SYN dropped before conntrack confirmed it
    // (in the forward path) left no entry, and then a plain `dnat to` rule on its walk says.
    let (to, answered_by) = match (entry, &found) {
        (Some(e), _) => (e.dnat()?, e.reply_dst),
        (None, Some((_, Some(to)))) => (*to, client),
        (None, _) => return None,
    };
    let hook = if local { "output" } else { "prerouting" };
    let rule = found
        .map(|(r, _)| r)
        .or_else(|| ruleset.as_ref().and_then(|rs| rule_by_target(rs, server.port(), to, hook)));
    let owner = owner_of(to, ns, seen).await;
    let service =
        rule.as_ref().and_then(|r| crate::firewall::kube_proxy::endpoint_chain(&r.table, &r.chain));
    let writer = rule
        .as_ref()
        .and_then(|r| crate::firewall::nat_writer::describe(&r.table, &r.chain, server.port()));
    let forwarding_off = match &owner {
        Some((w, _)) if w.inode != ns.inode => forwarding_off(ns, to.ip()).await,
        _ => None,
    };
    let mut hop = NatHop {
        from: server,
        to,
        local,
        relay: None,
        service,
        writer,
        forwarding_off,
        return_route: None,
        rule,
        owner: owner.as_ref().map(|(w, iface)| nat_owner(w, iface)),
    };
    // The answering socket is in the owner's namespace, so the arrival namespace never sees
    // the connection established: a SYN-ACK that went out and a handshake conntrack saw
    // complete is an accepted attempt.
    let mut outcome = flow.outcome;
    if outcome == Outcome::Unanswered && flow.synack_sent {
        let now = match asked {
            true => entry,
            false if conntrack::available() => ask(ns, client, server).await,
            false => None,
        };
        if now.is_some_and(|e| e.handshake_done()) {
            outcome = Outcome::Accepted;
        }
    }
    let inner = match owner {
        Some((w, iface)) => {
            let watched = seen.and_then(|c| c.inner_of(w.inode, to)).filter(|c| c.flow.is_some());
            let flow = FlowRecord { outcome, ..flow.clone() };
            let e = evidence_in(&w, iface, &flow, answered_by, to, watched).await;
            Some(with_return_route(e, ns, &w, to).await)
        }
        None => None,
    };
    hop.return_route = inner.as_ref().and_then(|e| e.return_route.clone());
    Some((hop, inner))
}

/// The forwarding sysctl of `to`'s family in `ns` when it is off (the kernel then drops a SYN
/// sent on to another namespace). Read from inside `ns`: /proc/sys/net is the reader's
/// network namespace's.
async fn forwarding_off(ns: &Watched, to: IpAddr) -> Option<String> {
    let (name, file) = if to.is_ipv4() {
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward")
    } else {
        ("net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding")
    };
    let path = ns.path.clone();
    let value = tokio::task::spawn_blocking(move || {
        enter::in_netns(&path, || std::fs::read_to_string(file))
    })
    .await
    .ok()?
    .ok()?
    .ok()?;
    (value.trim() == "0").then(|| name.to_string())
}

/// The rule of the SYN's walk that rewrote its destination, in the ruleset read now, and
/// where it sends a SYN to `dport` when the rule says so plainly.
fn nat_rule(
    rs: &nftables::Ruleset,
    walk: &VerdictRecord,
    dport: u16,
) -> Option<(NatRule, Option<SocketAddr>)> {
    walk.steps.iter().find_map(|s| {
        let r = rs.rule_by_handle(s.family, &s.table, s.rule_handle?)?;
        r.is_dnat().then(|| (nat_rule_of(r, true), r.dnat_target(dport)))
    })
}

fn nat_rule_of(r: &nftables::Rule, traced: bool) -> NatRule {
    NatRule {
        family: r.family.clone(),
        table: r.table.clone(),
        chain: r.chain.clone(),
        handle: r.handle,
        text: r.text.clone(),
        traced,
    }
}

/// When the walk did not show the NAT rule (its trace messages can come apart from the SYN's
/// first ones): the one `dnat to` rule that a SYN to `dport` reaches from the nat chains of
/// `hook` and that sends it to `to`, if exactly one does.
fn rule_by_target(
    rs: &nftables::Ruleset,
    dport: u16,
    to: SocketAddr,
    hook: &str,
) -> Option<NatRule> {
    match crate::firewall::nat_destinations::rules_sending(rs, dport, to, hook)[..] {
        [r] => Some(nat_rule_of(r, false)),
        _ => None,
    }
}

/// `e` (the attempt in `owner`, arriving from the NAT in `arrival`) with the way its answer
/// leaves `owner`: the kernel's route from `to` back to the client there, and the NAT side's
/// address on the link (the first namespace's source towards `to`).
async fn with_return_route(
    mut e: Evidence,
    arrival: &Watched,
    owner: &Watched,
    to: SocketAddr,
) -> Evidence {
    let (Some(flow), Some(arrived)) = (e.flow.as_ref(), e.iface.clone()) else { return e };
    if owner.inode == arrival.inode {
        return e;
    }
    let client = flow.client.ip();
    let (owner_path, arrival_path) = (owner.path.clone(), arrival.path.clone());
    let looked = tokio::task::spawn_blocking(move || {
        let back = enter::in_netns(&owner_path, || {
            route::get(client, Some(to.ip())).map(|r| match r {
                route::Route::Via { oif, gateway, .. } => Leaves::Via {
                    iface: route::iface_name(oif).unwrap_or_else(|| format!("ifindex {oif}")),
                    gateway,
                },
                route::Route::Local => Leaves::Via { iface: "lo".into(), gateway: None },
                route::Route::None { why } => Leaves::Nowhere { why },
            })
        });
        let nat_side = enter::in_netns(&arrival_path, || route::get(to.ip(), None));
        let nat_side = match nat_side {
            Ok(Ok(route::Route::Via { prefsrc, .. })) => prefsrc,
            _ => None,
        };
        (back, nat_side)
    })
    .await;
    match looked {
        Ok((Ok(Ok(leaves)), nat_side)) => {
            e.return_route = Some(ReturnRoute { client, from: to.ip(), arrived, leaves, nat_side });
        }
        Ok((Ok(Err(err)), _)) => tracing::info!("route back to {client} in {}: {err}", owner.name),
        Ok((Err(err), _)) => tracing::info!("entering {} for its route back: {err}", owner.name),
        Err(err) => tracing::info!("route lookup task: {err}"),
    }
    e
}

/// The owner's side of a hop: its namespace and interface, and the Docker container it is
/// when the inventory named it by a container id and a dockerd has that container.
fn nat_owner(w: &Watched, iface: &str) -> NatOwner {
    let container = w.name.strip_prefix("container:").and_then(crate::netns::docker::container);
    NatOwner { netns: w.netns_ref(), iface: iface.to_string(), container }
}

/// The namespace that answers for `to`: the arrival namespace when the address is its own
/// (delivered there), else the one of those holding it where the attempt was `seen` arriving
/// (two namespaces can hold one address — two bridges, a stale lab — and only the one the
/// route leads to sees the SYN), else the first of them.
async fn owner_of(
    to: SocketAddr,
    arrival: &Watched,
    seen: Option<&Collector>,
) -> Option<(Watched, String)> {
    let mut all = owners_of(to.ip(), arrival).await;
    let arrived =
        |w: &Watched| seen.and_then(|c| c.inner_of(w.inode, to)).is_some_and(|c| c.flow.is_some());
    match all.iter().position(|(w, _)| w.inode == arrival.inode || arrived(w)) {
        Some(i) => Some(all.swap_remove(i)),
        None => all.into_iter().next(),
    }
}

/// Every namespace with `ip` on one of its interfaces, and that interface: the arrival
/// namespace first (a redirect or a DNAT to one of its own addresses), loopback only there.
async fn owners_of(ip: IpAddr, arrival: &Watched) -> Vec<(Watched, String)> {
    let arrival = arrival.clone();
    tokio::task::spawn_blocking(move || {
        let mut all = inventory::list();
        all.sort_by_key(|n| n.inode != arrival.inode);
        all.into_iter()
            .filter_map(|n| {
                let addrs = enter::in_netns(&n.path, addresses::iface_addrs).ok()?.ok()?;
                let iface = addrs
                    .into_iter()
                    .find(|(name, a)| *a == ip && (name != "lo" || n.inode == arrival.inode))?
                    .0;
                Some((Watched { inode: n.inode, name: n.name, path: n.path }, iface))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The evidence for the attempt in `owner`, where it arrives on `iface` from `client` (the
/// source conntrack's reply tuple names: the client, or a masquerade's address) to `to`:
/// what was `watched` there (its SYN, drop, nftables walk, answer), or else — only the arrival
/// namespace was watched — judged from its listeners and the attempt's outcome.
async fn evidence_in(
    owner: &Watched,
    iface: String,
    flow: &FlowRecord,
    client: SocketAddr,
    to: SocketAddr,
    watched: Option<&Collector>,
) -> Evidence {
    if let Some(c) = watched {
        return seen_in(owner, iface, to, c).await;
    }
    let e = owner_evidence(owner, &iface, to).await;
    let flow = FlowRecord {
        netns: owner.inode,
        client,
        server: to,
        drop: None,
        reply_drop: None,
        ..flow.clone()
    };
    Evidence { watched: true, syn_seen: true, iface: Some(iface), flow: Some(flow), ..e }
}

/// What `owner` has for an attempt to `to` arriving on `iface`, before anything was seen of it:
/// its listeners, the sockets on the port, its interfaces and sk_lookup programs.
async fn owner_evidence(owner: &Watched, iface: &str, to: SocketAddr) -> Evidence {
    Evidence {
        port: to.port(),
        addr: Some(to.ip()),
        netns: Some(owner.netns_ref()),
        listeners: listeners_on(to.port()).await.unwrap_or_default(),
        port_holders: holders_on(owner, to.port()).await,
        watched_ifaces: vec![iface.to_string()],
        interfaces: interfaces::of_netns(&owner.path, &owner.name),
        sk_lookup: Some(sk_lookup::sk_lookup_programs_at(&owner.path).into()),
        ..Evidence::default()
    }
}

/// conntrack's entry for `client` → `server` in `ns`, asked now (an attempt still tracked:
/// unanswered, or connected).
async fn ask(ns: &Watched, client: SocketAddr, server: SocketAddr) -> Option<conntrack::Entry> {
    let path = ns.path.clone();
    let looked_up = tokio::task::spawn_blocking(move || {
        enter::in_netns(&path, || conntrack::tcp(client, server))
    })
    .await;
    match looked_up {
        Ok(Ok(Ok(entry))) => {
            if entry.is_none() {
                tracing::info!("conntrack tracks no connection {client} → {server} in {}", ns.name);
            }
            entry
        }
        Ok(Ok(Err(e))) => {
            tracing::info!("conntrack lookup of {client} → {server} in {}: {e}", ns.name);
            None
        }
        Ok(Err(e)) => {
            tracing::info!("entering {} for conntrack: {e}", ns.name);
            None
        }
        Err(e) => {
            tracing::info!("conntrack lookup task: {e}");
            None
        }
    }
}
