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
    /// The node's pods as last listed: a process's pod and container, by its cgroup.
    pub pods: crate::pods::PodIndex,
    /// Failed binds and listens waiting to be printed (`report_binds`).
    pub failed_binds: Vec<(
        crate::probes::sock_event::SockObservation,
        Option<crate::pods::cgroup_path::PodCgroup>,
    )>,
    interfaces: HashMap<u64, (Instant, Vec<Interface>)>,
    /// How each followed namespace is entered (inode → path), kept by the agent's loop.
    pub paths: HashMap<u64, std::path::PathBuf>,
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
            pods: Default::default(),
            failed_binds: Vec::new(),
            interfaces: HashMap::new(),
            paths: HashMap::new(),
            clock: Clock::new(),
        }
    }

    /// Forgets namespace `inode` (gone) in every cache of the sink.
    pub fn forget(&mut self, inode: u64) -> Option<Owner> {
        self.listeners.forget(inode);
        self.interfaces.remove(&inode);
        self.paths.remove(&inode);
        self.owners.forget(inode)
    }

    fn interfaces_of(&mut self, inode: u64, names: &mut Names) -> Vec<Interface> {
        if let Some((at, v)) = self.interfaces.get(&inode)
            && at.elapsed() < INTERFACES_TTL
        {
            return v.clone();
        }
        // The path the agent follows the namespace by (a namespace that just appeared may not
        // be in the name cache yet); nothing is cached when there is none.
        let Some(path) = self.paths.get(&inode).cloned().or_else(|| names.path(inode)) else {
            return Vec::new();
        };
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
        let has =
            |v: &[Interface]| v.iter().any(|i| i.addrs.iter().any(|a| a.to_canonical() == addr));
        let known = self.interfaces_of(inode, names);
        // Interfaces that cannot be read say nothing: the attempt is kept, never hidden.
        if known.is_empty() || has(&known) {
            return true;
        }
        let fresh = self
            .interfaces
            .get(&inode)
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if fresh {
            return false;
        }
        self.interfaces.remove(&inode);
        has(&self.interfaces_of(inode, names))
    }

    /// The pod labels of process `pid` (its cgroup names pod and container), or, without
    /// one, of the namespace's owner.
    pub fn pod_of_pid(
        &self,
        pid: u32,
        netns: &crate::probes::sock_event::NetnsRef,
    ) -> Option<super::owner::PodLabel> {
        self.pod_of(pid, None, netns)
    }

    /// [`Self::pod_of_pid`], falling back on the event's cgroup (read when the event came)
    /// when the process is gone.
    pub fn pod_of(
        &self,
        pid: u32,
        cgroup: Option<&crate::pods::cgroup_path::PodCgroup>,
        netns: &crate::probes::sock_event::NetnsRef,
    ) -> Option<super::owner::PodLabel> {
        let found = self.pods.by_pid(pid).or_else(|| self.pods.by_cgroup(cgroup?));
        match found {
            Some((p, c)) => Some(super::owner::PodLabel {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.uid.clone(),
                container: c.map(|c| if c.name.is_empty() { c.id.clone() } else { c.name.clone() }),
            }),
            None => self.owners.of(netns).pod,
        }
    }

    /// Whether some pending failed bind's process is in no pod of the latest listing (the
    /// caller lists the pods again first: the container may have just started).
    pub fn binds_need_pods(&self) -> bool {
        self.failed_binds.iter().any(|(o, cg)| {
            self.pod_of(o.pid, cg.as_ref(), &o.netns).and_then(|p| p.container).is_none()
        })
    }

    /// `{"type":"failed_bind"}` lines: the bind or listen observation, `call` (bind or
    /// listen), and the process's pod and container.
    pub fn report_binds(&mut self) -> anyhow::Result<()> {
        for (mut obs, cg) in std::mem::take(&mut self.failed_binds) {
            if let Some(o) = self.owners.get(obs.netns.inode) {
                obs.netns = o.netns.clone();
            }
            let mut line = serde_json::to_value(&obs)?;
            line["type"] = "failed_bind".into();
            line["call"] = obs.kind.into();
            line["pod"] = serde_json::to_value(self.pod_of(obs.pid, cg.as_ref(), &obs.netns))?;
            self.print(&line)?;
        }
        Ok(())
    }

    /// `{"type":"unreachable_listener"}`: a listener some clients can never reach, with who
    /// owns it (process, pod, container) — printed once per listener, with `--json`.
    pub fn report_unreachable(
        &self,
        l: &crate::model::listener_view::ListenerView,
        reason: crate::metrics::UnreachableReason,
        owners: &[crate::netns::owners::Owner],
    ) -> anyhow::Result<()> {
        if !self.json {
            return Ok(());
        }
        let pid = owners.first().map(|o| o.pid);
        let pod = match pid {
            Some(pid) => self.pod_of_pid(pid, &l.netns),
            None => self.owners.of(&l.netns).pod,
        };
        let line = serde_json::json!({
            "type": "unreachable_listener",
            "netns": l.netns,
            "pod": pod,
            "pid": pid,
            "comm": owners.first().map(|o| o.comm.clone()),
            "family": l.family,
            "addr": l.addr,
            "port": l.port,
            "reason": reason.as_str(),
            "ask": format!("reach why {} --netns {}", l.port, l.netns.name),
        });
        self.print(&line)
    }

    /// A namespace the agent watched is gone: with `--json`, a `{"type":"netns"}` line (as
    /// `reach watch` prints), so a log reader sees why its series stop.
    /// A namespace the agent's discovery found gone and let go of: said like every change (its
    /// series expire with it, see `metrics`).
    pub fn netns_gone(&mut self, ns: &crate::observe::Watched) -> anyhow::Result<()> {
        self.interfaces.remove(&ns.inode);
        self.say_change(&Event::NetnsGone(ns))
    }

    /// A change under the running agent (events lost, firewalld, an interface, the trace table,
    /// a namespace gone): one log line, and the JSON event on stdout with `--json`.
    fn say_change(&self, e: &Event<'_>) -> anyhow::Result<()> {
        let Some(c) = crate::observe::changes::of(e) else { return Ok(()) };
        if c.line.starts_with("!!") || c.json["type"] == "trace_table" {
            tracing::warn!("{}", c.line.trim_start_matches("!! "));
        } else {
            tracing::info!("{}", c.line);
        }
        if self.json { self.print(&c.json) } else { Ok(()) }
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
        pod: o
            .pod
            .as_ref()
            .map(|p| if p.name.is_empty() { format!("uid:{}", p.uid) } else { p.name.clone() }),
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
                // A server that could not bind or listen: reported once the agent has looked at
                // its namespace and pods (often new: a container starting), see `report_binds`.
                if self.json && matches!(obs.kind, "bind" | "listen") && obs.result != "ok" {
                    // The cgroup now, while it exists: a server that fails to bind often exits,
                    // and its container's cgroup goes with it.
                    let cg = crate::pods::cgroup_id::pod_cgroup(obs.cgroup_id);
                    self.failed_binds.push((obs.clone(), cg));
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
            }
            Event::NetnsGone(ns) => {
                self.interfaces.remove(&ns.inode);
            }
            Event::TraceRestored(_) | Event::Firewalld(_) | Event::Existing(_) => {}
        }
        self.say_change(&e)
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
