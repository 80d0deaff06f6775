//! What the agent makes of each observation: metric series labelled with the owner (namespace
//! and pod), and, with `--json`, one line per failed connection attempt with its verdict.
use std::{
    collections::{BTreeSet, HashMap},
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    attempts::{self, Context},
    listeners::ListenerCache,
    owner::{Owner, Owners},
};
use crate::{
    diagnose::Interface,
    metrics::{FirewallScope, Metrics, Where},
    netns::{interfaces, names::Names},
    observe::session::{Event, Sink},
    output::time::Clock,
};

/// How long the interfaces of a namespace (for the lookup model) are reused; a tapped or
/// released interface invalidates them at once.
const INTERFACES_TTL: Duration = Duration::from_secs(30);

pub struct AgentSink {
    pub metrics: Arc<Metrics>,
    pub json: bool,
    pub owners: Owners,
    pub listeners: ListenerCache,
    /// Namespaces binds were seen in that the agent does not follow yet: discovery looks again.
    pub unknown_netns: BTreeSet<u64>,
    /// Failed attempts judged so far (for the exit summary).
    pub failed: u64,
    /// An interface was tapped or let go since the agent last published its gauges.
    pub taps_changed: bool,
    interfaces: HashMap<u64, (Instant, Vec<Interface>)>,
    clock: Clock,
}

impl AgentSink {
    pub fn new(metrics: Arc<Metrics>, json: bool) -> Self {
        Self {
            metrics,
            json,
            owners: Owners::default(),
            listeners: ListenerCache::default(),
            unknown_netns: BTreeSet::new(),
            failed: 0,
            taps_changed: false,
            interfaces: HashMap::new(),
            clock: Clock::new(),
        }
    }

    /// Forgets namespace `inode` (gone) in every cache of the sink.
    pub fn forget(&mut self, inode: u64) -> Option<Owner> {
        self.listeners.forget(inode);
        self.interfaces.remove(&inode);
        self.owners.forget(inode)
    }

    fn interfaces_of(&mut self, inode: u64, names: &mut Names) -> Vec<Interface> {
        if let Some((at, v)) = self.interfaces.get(&inode)
            && at.elapsed() < INTERFACES_TTL
        {
            return v.clone();
        }
        let Some(path) = names.path(inode) else { return Vec::new() };
        let name = names.name(inode);
        let v = interfaces::of_netns(&path, &name);
        self.interfaces.insert(inode, (Instant::now(), v.clone()));
        v
    }

    /// Whether `addr` is an address of namespace `inode` — a SYN to it is for this namespace;
    /// any other was forwarded through it (a node's bridge or veth to a pod), and is the
    /// destination namespace's attempt, not this one's. As the kernel decides local delivery:
    /// loopback, or an address of one of its interfaces. An address not in the cached list
    /// re-reads the interfaces once (it may be new), at most once a second per namespace.
    fn is_local(&mut self, inode: u64, addr: std::net::IpAddr, names: &mut Names) -> bool {
        let addr = addr.to_canonical();
        if addr.is_loopback() {
            return true;
        }
        let has = |v: &[Interface]| v.iter().any(|i| i.addrs.iter().any(|a| a.to_canonical() == addr));
        if has(&self.interfaces_of(inode, names)) {
            return true;
        }
        let fresh = self.interfaces.get(&inode).is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if fresh {
            return false;
        }
        self.interfaces.remove(&inode);
        has(&self.interfaces_of(inode, names))
    }

    fn print(&self, line: &serde_json::Value) -> anyhow::Result<()> {
        // One write per line, flushed: a log shipper tailing stdout sees whole lines at once.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    }
}

/// The metric labels of an owner.
/// Without a runtime (cgroup paths only) a pod's name and namespace are unknown: the pod is
/// then labelled by its UID, the one thing its cgroup says.
pub fn labels(o: &Owner) -> Where {
    Where {
        netns: o.netns.name.clone(),
        namespace: o.pod.as_ref().map(|p| p.namespace.clone()).filter(|n| !n.is_empty()),
        pod: o.pod.as_ref().map(|p| {
            if p.name.is_empty() { format!("uid:{}", p.uid) } else { p.name.clone() }
        }),
    }
}

impl Sink for AgentSink {
    fn event(&mut self, names: &mut Names, e: Event<'_>) -> anyhow::Result<()> {
        match e {
            Event::Sock(obs) => {
                let inode = obs.netns.inode;
                if self.owners.get(inode).is_none() {
                    self.unknown_netns.insert(inode);
                }
                if matches!(obs.kind, "listen" | "listen_close") {
                    self.listeners.touched(inode);
                }
            }
            Event::Packet(p) => {
                let w = labels(&self.owners.of(&p.netns));
                match p.kind {
                    "syn" if self.is_local(p.netns.inode, p.daddr, names) => self.metrics.syn(&w),
                    "drop" => {
                        if let Some(r) = &p.reason {
                            self.metrics.drop_reason(&w, r);
                        }
                    }
                    _ => {}
                }
            }
            Event::Flow(rec, walk) => {
                let netns = crate::probes::sock_event::NetnsRef {
                    inode: rec.netns,
                    name: names.name(rec.netns),
                };
                // Forwarded through this namespace: the destination's attempt (counted there).
                if !self.is_local(rec.netns, rec.server.ip(), names) {
                    return Ok(());
                }
                let owner = self.owners.of(&netns);
                let w = labels(&owner);
                self.metrics.attempt(&w, attempts::outcome_name(rec));
                if attempts::failed(rec) {
                    self.failed += 1;
                    let iface = rec.ifindex.and_then(|i| names.device(rec.netns, i));
                    let cx = Context {
                        owner: &owner,
                        time: self.clock.rfc3339(rec.last_event_ns),
                        iface,
                        listeners: self.listeners.on_port(rec.server.port()),
                        interfaces: self.interfaces_of(rec.netns, names),
                        walk,
                    };
                    let judged = attempts::judge(rec, cx);
                    self.metrics.failed_attempt_class(&w, judged.verdict.name());
                    if self.json {
                        self.print(&judged.line)?;
                    }
                }
            }
            Event::Verdict(v) => {
                // The walk that decided a SYN (a reply's walk is the server's answer).
                if let Some(a) = v.attribution.as_ref().filter(|_| !v.reply) {
                    let concept = serde_json::to_value(&a.concept)
                        .ok()
                        .and_then(|c| c["concept"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "other".into());
                    let scope = match (&a.zone, policy_of(&a.concept)) {
                        (_, Some(p)) => FirewallScope::Policy(p),
                        (Some(z), None) => FirewallScope::Zone(z.clone()),
                        (None, None) => FirewallScope::Table("firewalld".into()),
                    };
                    let netns = crate::probes::sock_event::NetnsRef {
                        inode: v.json["netns"]["inode"].as_u64().unwrap_or(0),
                        name: v.json["netns"]["name"].as_str().unwrap_or("").to_string(),
                    };
                    let w = labels(&self.owners.of(&netns));
                    self.metrics.firewall_verdict(&w, scope, &concept, &a.action);
                } else if let (Some(table), Some(verdict), false) =
                    (v.table.as_ref(), v.verdict.as_ref(), v.reply)
                {
                    let netns = crate::probes::sock_event::NetnsRef {
                        inode: v.json["netns"]["inode"].as_u64().unwrap_or(0),
                        name: v.json["netns"]["name"].as_str().unwrap_or("").to_string(),
                    };
                    let w = labels(&self.owners.of(&netns));
                    let concept = if v.by_policy { "chain_policy" } else { "rule" };
                    let scope = FirewallScope::Table(format!(
                        "{} {}",
                        v.family.as_deref().unwrap_or(""),
                        table
                    ));
                    self.metrics.firewall_verdict(&w, scope, concept, verdict);
                }
            }
            Event::Overflow(o) => {
                let w = labels(&self.owners.of(&o.netns));
                self.metrics.listen_overflows(&w, o.listen_overflows);
            }
            Event::Lost { count, syn } => self.metrics.events_lost(count, syn),
            Event::Suppressed(syn, other) => self.metrics.events_suppressed(syn, other),
            Event::Tap(change) => {
                let (crate::observe::TapChange::Attached { inode, .. }
                | crate::observe::TapChange::Detached { inode, .. }) = change;
                // The namespace's interfaces changed: re-read them for the next diagnosis.
                self.interfaces.remove(inode);
                self.taps_changed = true;
                tracing::info!("{change:?}");
            }
            Event::Existing(_) | Event::Firewalld(_) => {}
        }
        Ok(())
    }
}

fn policy_of(c: &crate::firewall::firewalld_chains::Concept) -> Option<String> {
    use crate::firewall::firewalld_chains::Concept;
    match c {
        Concept::PolicyTarget { policy, .. }
        | Concept::PolicyPortAllowed { policy, .. }
        | Concept::PolicyRichRule { policy, .. } => Some(policy.clone()),
        _ => None,
    }
}
