//! One observation session: everything `reach watch` and `reach why` attach (bind/listen probes,
//! TC taps per namespace, the drop tracer, nftables tracing, listen-overflow counters), the loop
//! that turns their events into observations and settled connection attempts, and the orderly
//! detach. What to do with each observation is the caller's [`Sink`]: `watch` prints it, `why`
//! collects evidence from it. Keeping one session means both commands see the same truth.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use super::{
    links::{self, LinkChange},
    overflow, readers, reorder,
};
use crate::{
    firewall::{
        attribute::Attribution,
        firewalld_cache::{ChangeReport, FirewalldCache},
        trace::{PacketTrace, TraceType},
        trace_listener::TraceListener,
        trace_table::{self, TraceTable},
    },
    kernel::{btf::KernelBtf, capabilities, drop_reasons::DropReasons, kallsyms::Kallsyms},
    model::{
        flows::{
            Dropped, Established, Family, FlowRecord, FlowTable, Observation, Reply, SynAckSeen,
            SynSeen,
        },
        listener_view::ListenerView,
        listeners::{Change, Listener, Listeners},
    },
    netns::{names::Names, snapshot},
    output::{
        phases::Phases,
        time::{Clock, boot_ns},
    },
    probes::{
        bind_listen::{AttachMode, BindListen},
        net::{DropTap, NetOptions, NetnsTap, TcHow, remove_stale_filters},
        packet_event::{Decoder, PacketObservation},
        plan::{self, Plan},
        sock_event::{self, NetnsRef, SockObservation},
    },
};
use readers::Msg;

pub use overflow::Overflow;

/// A watched namespace: identity and a path to enter it.
#[derive(Debug, Clone)]
pub struct Watched {
    pub inode: u64,
    pub name: String,
    pub path: PathBuf,
}

impl Watched {
    /// Resolves namespace specs (`host`, an `ip netns` name, a PID, a path) to namespaces,
    /// with the name every output uses. Err: a message naming the spec that does not exist.
    pub fn resolve_all(specs: &[String]) -> Result<Vec<Self>, String> {
        let all = crate::netns::inventory::list();
        let mut out = Vec::new();
        for spec in specs {
            let inode = crate::netns::select::resolve(spec).map_err(|e| e.to_string())?;
            let ns = all.iter().find(|n| n.inode == inode);
            out.push(Self {
                inode,
                name: ns.map_or_else(|| spec.clone(), |n| n.name.clone()),
                path: ns.map_or_else(|| PathBuf::from(spec), |n| n.path.clone()),
            });
        }
        Ok(out)
    }

    pub fn netns_ref(&self) -> NetnsRef {
        NetnsRef { inode: self.inode, name: self.name.clone() }
    }
}

/// What to attach and how.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Namespaces whose interfaces are tapped (and whose nftables are traced).
    pub namespaces: Vec<Watched>,
    /// The interfaces tapped in one namespace instead of `ifaces` (by namespace inode).
    pub ifaces_of: Vec<(u64, Vec<String>)>,
    /// Binds/listens only from these namespaces (None: every namespace).
    pub bind_filter: Option<BTreeSet<u64>>,
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    pub syn_rate: u32,
    /// `tcx` / `netlink`; None: what the attach plan chose.
    pub tc_attach: Option<String>,
    pub flow_timeout: Duration,
    pub force_classic_drops: bool,
    pub trace: bool,
    pub firewalld_bus: Option<String>,
    pub packets: bool,
    pub attach: Option<AttachMode>,
    pub ring_kib: u32,
    /// Follow each tapped namespace's interfaces as they come and go (rtnetlink): tap a new
    /// one (with an address, or lo) and let go of a deleted one. Meaningful when `ifaces` is
    /// empty (the default set); named interfaces are tapped as named.
    pub follow_links: bool,
    /// Ports whose SYNs are traced through nftables, when they differ from `ports` (the agent
    /// reports every port and traces a few); empty: `ports`.
    pub trace_ports: Vec<u16>,
    /// Namespaces (inodes) never traced, whatever `trace` says: their rulesets stay untouched.
    pub no_trace: BTreeSet<u64>,
    /// Name the rule of every traced walk that did not accept (`VerdictRecord::netfilter`),
    /// from the ruleset kept per generation: for the agent, which judges every failed attempt.
    pub rule_evidence: bool,
}

impl SessionOptions {
    fn traced_ports(&self) -> &[u16] {
        if self.trace_ports.is_empty() { &self.ports } else { &self.trace_ports }
    }

    /// Whether namespace `inode` gets reach's trace table.
    fn traces(&self, inode: u64) -> bool {
        self.trace
            && self.packets
            && !self.traced_ports().is_empty()
            && !self.no_trace.contains(&inode)
    }
}

/// An interface that does not exist in a watched namespace: bad input, not a failure.
#[derive(Debug)]
pub struct NoSuchInterface(pub String);

impl std::fmt::Display for NoSuchInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSuchInterface {}

/// The nftables walk that decided a packet, typed, plus its JSON line.
#[derive(Debug, Clone)]
pub struct VerdictRecord {
    pub json: serde_json::Value,
    /// firewalld's rule, in firewalld's terms, when firewalld's table decided.
    pub attribution: Option<Attribution>,
    /// The deciding step: (family, table, chain, rule handle, verdict word, by chain policy).
    pub family: Option<String>,
    pub table: Option<String>,
    pub chain: Option<String>,
    pub rule_handle: Option<u64>,
    pub verdict: Option<String>,
    pub by_policy: bool,
    /// The walk was the server's reply (SYN-ACK or RST, from the output hook): its tuple is
    /// server → client.
    pub reply: bool,
    /// Every step of the walk but reach's own trace table (a NAT rule is one of them).
    pub steps: Vec<crate::firewall::trace::Step>,
    /// The walk began at the output hook: a local client's SYN (before it loops back in on lo
    /// and walks prerouting and input too, or is sent on by a NAT in output).
    pub sent_locally: bool,
    /// The deciding rule as evidence, for a walk that did not accept and that no firewalld
    /// concept names (None otherwise, or when the session does not look rules up): from the
    /// ruleset kept per nftables generation, never read per packet.
    pub netfilter: Option<crate::diagnose::NetfilterRule>,
}

impl VerdictRecord {
    /// Whether this walk of a SYN is the one to keep over `old`, an earlier walk of the same
    /// connection: a SYN sent locally walks output first and then, looped back, input —
    /// where its fate is decided — so an output walk never replaces an arriving one.
    pub fn replaces(&self, old: &VerdictRecord) -> bool {
        !self.sent_locally || old.sent_locally
    }
}

/// What the session observed; the sink decides what to make of it.
#[derive(Clone, Copy)]
pub enum Event<'a> {
    /// A listener that existed when the session started.
    Existing(&'a ListenerView),
    Sock(&'a SockObservation),
    Packet(&'a PacketObservation),
    Verdict(&'a VerdictRecord),
    /// A connection attempt settled, with the nftables walk of its SYN when one was traced.
    Flow(&'a FlowRecord, Option<&'a VerdictRecord>),
    Overflow(&'a Overflow),
    /// Events the kernel could not queue since the last report: all, and of them ingress SYNs.
    Lost {
        count: u64,
        syn: u64,
    },
    /// (SYN, reply/drop) events suppressed by the rate bound since the last report.
    Suppressed(u64, u64),
    /// firewalld reloaded, changed its runtime configuration, stopped or started, and whether
    /// its view was read again.
    Firewalld(&'a ChangeReport),
    /// An interface of a watched namespace was tapped or let go while running.
    Tap(&'a TapChange),
    /// A watched namespace is gone (deleted, its last process exited): let go of.
    NetnsGone(&'a Watched),
    /// reach's trace table in this namespace was removed by someone else (an unowned table:
    /// `nft flush ruleset` before Linux 5.12) and has been added again.
    TraceRestored(&'a NetnsRef),
}

pub trait Sink {
    fn event(&mut self, names: &mut Names, e: Event<'_>) -> anyhow::Result<()>;
}

pub struct Session {
    /// Namespaces deleted while the session attached, reported at the first look.
    gone_at_start: Vec<Watched>,
    binds: BindListen,
    drops: Option<DropTap>,
    taps: Vec<Tap>,
    /// reach's trace table per traced namespace (inode): removed on exit, or when it goes.
    trace_tables: Vec<(u64, TraceTable)>,
    overflows: Vec<overflow::Watcher>,
    readers: JoinSet<anyhow::Result<()>>,
    rx: mpsc::Receiver<Msg>,
    /// Kept for readers of namespaces added later; dropped by `finish`, so the channel closes
    /// once the last reader ends.
    tx: Option<mpsc::Sender<Msg>>,
    stop_tx: watch::Sender<bool>,
    decoder: Decoder,
    state: State,
    tick: tokio::time::Interval,
    ticks: u64,
    /// What taps added later are attached with.
    net: NetOptions,
    /// What namespaces added later are traced with (`SessionOptions::traces`).
    trace: SessionOptions,
    how: Option<TcHow>,
    follow_links: bool,
}

/// One tapped namespace: its classifiers, the id of its ring in the reorder buffer, and the
/// stop switch of its readers (ring and link monitor), flipped when the namespace goes.
struct Tap {
    ns: Watched,
    tap: NetnsTap,
    ring: usize,
    stop: watch::Sender<bool>,
}

/// A namespace tapped or let go while the session runs, and what changed in its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapChange {
    Attached { inode: u64, netns: String, iface: String },
    Detached { inode: u64, netns: String, iface: String },
}

/// What the packet path reports: every watched namespace, the ports asked for, the rate bound.
fn packet_options(opts: &SessionOptions) -> NetOptions {
    NetOptions {
        netns: opts.namespaces.iter().map(|n| n.inode).collect(),
        ports: opts.ports.clone(),
        rate_per_sec: opts.syn_rate,
        burst: opts.syn_rate.max(1),
    }
}

async fn probe_plan() -> anyhow::Result<Plan> {
    let (caps, facts) = tokio::task::spawn_blocking(capabilities::probe).await?;
    Ok(plan::choose(&caps, &facts))
}

impl Session {
    /// Attaches everything `opts` asks for, announcing each attachment through `announce`.
    /// Whatever was attached before an error is detached again (the guards drop).
    pub async fn attach(opts: &SessionOptions, announce: impl Fn(&str)) -> anyhow::Result<Self> {
        let mut phases = Phases::new();
        // One parse of the kernel's BTF for every typed program of this start-up (held until
        // the end of it, then freed).
        let btf = crate::kernel::btf::aya_btf().ok();
        phases.mark("btf");
        let plan = probe_plan().await?;
        phases.mark("probe");
        let mode = match opts.attach.or_else(|| AttachMode::from_plan(&plan.bind)) {
            Some(m) => m,
            None => bail!(
                "no mechanism can observe binds on this kernel; run `reach doctor` for the reasons"
            ),
        };
        let ring_kib = opts.ring_kib;
        // A forced mode the kernel refuses: the fix is the mode the plan would pick.
        let planned =
            AttachMode::from_plan(&plan.bind).filter(|p| opts.attach.is_some_and(|f| f != *p));
        let mut binds = tokio::task::spawn_blocking(move || BindListen::attach(mode, ring_kib))
            .await?
            .with_context(|| match planned {
                Some(p) => format!(
                    "attaching the bind/listen probes in {mode} mode failed: this kernel refuses \
                     it; leave --attach out (reach then uses {p} mode, as `reach doctor` plans) \
                     or pass --attach {p}"
                ),
                None => format!(
                    "attaching the bind/listen probes in {mode} mode failed (see `reach doctor`)"
                ),
            })?;
        phases.mark("binds");
        announce(&format!(
            "watching binds and listens ({mode} mode: {})",
            binds.attachments.join(", ")
        ));

        // Packet path: one TC tap per watched namespace, one global drop tracer.
        let net = packet_options(opts);
        // The overflow counters' baseline is read before anything announces "watching": a
        // queue that overflows right after that line (the start-up below can take seconds on a
        // slow machine) must be counted, not folded into the baseline.
        // A namespace deleted while reach attaches is gone like any other, not an error: let go
        // of and reported at the first look (`follow_namespaces`).
        let mut gone_at_start: Vec<Watched> = Vec::new();
        let vanished = |ns: &Watched, e: &anyhow::Error, gone: &mut Vec<Watched>| -> bool {
            if ns.path.exists() {
                return false;
            }
            tracing::info!("netns {} went away while reach attached: {e:#}", ns.name);
            announce(&format!("netns {} went away while reach attached: not watched", ns.name));
            gone.push(ns.clone());
            true
        };
        let mut taps: Vec<(Watched, NetnsTap)> = Vec::new();
        let mut drops: Option<DropTap> = None;
        let mut tc_how = None;
        if opts.packets {
            let how = match opts.tc_attach.as_deref().unwrap_or(plan.ingress.as_str()) {
                "tcx" => TcHow::Tcx,
                "tc_netlink" | "netlink" => TcHow::Netlink,
                _ => bail!(
                    "no way to attach a TC classifier on this kernel (see `reach doctor`); use --no-packets"
                ),
            };
            tc_how = Some(how);
            let (drop_opts, classic) = (net.clone(), opts.force_classic_drops);
            drops = Some(
                tokio::task::spawn_blocking(move || DropTap::attach(&drop_opts, classic))
                    .await?
                    .context("attaching the kfree_skb drop tracer failed (see `reach doctor`)")?,
            );
            phases.mark("drops");
            for ns in &opts.namespaces {
                let ifaces = opts
                    .ifaces_of
                    .iter()
                    .find(|(inode, _)| *inode == ns.inode)
                    .map_or(&opts.ifaces, |(_, i)| i);
                let tap = match attach_tap(ns, ifaces, &net, how, &announce).await {
                    Ok(t) => t,
                    Err(e) if vanished(ns, &e, &mut gone_at_start) => continue,
                    Err(e) => return Err(e),
                };
                phases.mark(format!("tc {}", ns.name));
                let ifs: Vec<&str> = tap.ifaces.iter().map(|(n, _)| n.as_str()).collect();
                announce(&format!(
                    "watching SYNs on {} in {} ({})",
                    ifs.join(", "),
                    ns.name,
                    if how == TcHow::Tcx { "TCX" } else { "clsact qdisc" }
                ));
                taps.push((ns.clone(), tap));
            }
            if let Some(d) = &drops {
                announce(&format!("watching drops via {}", d.how));
            }
        }
        let mut trace_tables = Vec::new();
        let mut trace_listeners = Vec::new();
        for (ns, _) in taps.iter().filter(|(ns, _)| opts.traces(ns.inode)) {
            match start_trace(ns, opts.traced_ports(), &announce) {
                Ok((table, listener)) => {
                    trace_tables.push((ns.inode, table));
                    trace_listeners.push((ns.inode, listener));
                }
                Err(e) if vanished(ns, &e, &mut gone_at_start) => {}
                Err(e) => return Err(e),
            }
        }
        // Where tracing may start later (namespaces that appear), firewalld's view is needed
        // from the start too.
        let may_trace = opts.trace && opts.packets && !opts.traced_ports().is_empty();
        let firewalld = if trace_tables.is_empty() && !(may_trace && opts.follow_links) {
            None
        } else {
            let f = start_firewalld_cache(opts.firewalld_bus.as_deref(), &announce).await;
            phases.mark("nftrace");
            f
        };

        let (tx, rx) = mpsc::channel::<Msg>(4096);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut readers = JoinSet::new();
        let mut rings = vec![(binds.take_events()?, readers::Kind::Sock)];
        if let Some(d) = drops.as_mut() {
            rings.push((d.take_events()?, readers::Kind::Packet));
        }
        // Ring ids are positions in `rings`, then one per tap: the reorder buffer waits for
        // each of them.
        let mut reorder = reorder::Reorder::new(rings.len());
        for (id, (ring, kind)) in rings.into_iter().enumerate() {
            readers::spawn(&mut readers, ring, id, kind, tx.clone(), stop_rx.clone())?;
        }
        let mut tapped = Vec::new();
        for (ns, tap) in taps {
            if gone_at_start.iter().any(|g| g.inode == ns.inode) {
                continue;
            }
            match start_tap(ns.clone(), tap, opts.follow_links, &mut reorder, &mut readers, &tx) {
                Ok(t) => tapped.push(t),
                Err(e) if vanished(&ns, &e, &mut gone_at_start) => {}
                Err(e) => return Err(e),
            }
        }
        let gone = |inode: &u64| gone_at_start.iter().any(|g| g.inode == *inode);
        trace_tables.retain(|(i, _)| !gone(i));
        trace_listeners.retain(|(i, _)| !gone(i));
        for (inode, listener) in trace_listeners {
            // Stopped with its namespace's tap when it goes, else with the session.
            let stop = tapped
                .iter()
                .find(|t: &&Tap| t.ns.inode == inode)
                .map_or_else(|| stop_rx.clone(), |t| t.stop.subscribe());
            readers::spawn_trace(&mut readers, listener, inode, tx.clone(), stop);
        }

        let decoder = Decoder {
            clock: Clock::new(),
            reasons: KernelBtf::load()
                .and_then(|b| DropReasons::load(&b))
                .unwrap_or_else(|e| DropReasons::unavailable(e.to_string())),
            kallsyms: Kallsyms::load().ok(),
        };
        phases.mark("names");
        drop(btf);
        // Start-up parsed the kernel's BTF several times (aya parses it for every object it
        // loads) and freed it: hand the freed heap back to the kernel, or it stays resident.
        crate::kernel::memory::trim();
        phases.mark("trim");
        tracing::info!("{}", phases.summary());
        let state = State {
            names: Names::new(),
            model: Listeners::new(),
            bind_filter: opts.bind_filter.clone(),
            packet_inodes: tapped.iter().map(|t: &Tap| t.ns.inode).collect(),
            flows: FlowTable::new(FLOW_CAPACITY, opts.flow_timeout),
            reorder,
            verdicts: Verdicts::default(),
            ns_paths: tapped.iter().map(|t: &Tap| (t.ns.inode, t.ns.path.clone())).collect(),
            firewalld,
            rulesets: Default::default(),
            ruleset_reads: 0,
            rule_evidence: opts.rule_evidence,
            lost_seen: (0, 0),
            suppressed_seen: (0, 0),
        };
        let overflows: Vec<overflow::Watcher> = tapped
            .iter()
            .map(|t| overflow::Watcher::new(t.ns.netns_ref(), t.ns.path.clone()))
            .collect();
        Ok(Self {
            gone_at_start,
            binds,
            drops,
            taps: tapped,
            trace_tables,
            overflows,
            readers,
            rx,
            tx: Some(tx),
            stop_tx,
            decoder,
            state,
            tick: tokio::time::interval(Duration::from_millis(100)),
            ticks: 0,
            net,
            how: tc_how,
            follow_links: opts.follow_links,
            trace: opts.clone(),
        })
    }

    /// Whether packets are watched at all (TC taps and the drop tracer attached).
    pub fn watches_packets(&self) -> bool {
        self.how.is_some()
    }

    /// The namespaces whose packets are watched now.
    pub fn namespaces(&self) -> impl Iterator<Item = &Watched> {
        self.taps.iter().map(|t| &t.ns)
    }

    /// How many interfaces are tapped now, over every namespace.
    pub fn interface_count(&self) -> usize {
        self.taps.iter().map(|t| t.tap.ifaces.len()).sum()
    }

    /// The interfaces tapped in namespace `inode`.
    pub fn interfaces_of(&self, inode: u64) -> Vec<(String, u32)> {
        self.taps
            .iter()
            .find(|t| t.ns.inode == inode)
            .map(|t| t.tap.ifaces.clone())
            .unwrap_or_default()
    }

    /// Starts watching the packets of one more namespace (it appeared after start-up): its
    /// classifiers, its ring, its interfaces' notifications, its overflow counters and the drop
    /// tracer's namespace filter. Returns the interfaces tapped.
    pub async fn add_namespace(&mut self, ns: Watched) -> anyhow::Result<Vec<String>> {
        if self.taps.iter().any(|t| t.ns.inode == ns.inode) {
            return Ok(Vec::new());
        }
        let (Some(how), Some(tx)) = (self.how, self.tx.clone()) else {
            bail!("this session watches no packets");
        };
        let tap = attach_tap(&ns, &[], &self.net, how, &|m: &str| tracing::info!("{m}")).await?;
        // aya 0.14's `EbpfLoader::new()` parses the kernel's whole BTF for every object it
        // loads (about 25 MB, freed right after) — once per namespace that appears. Hand it
        // back now, not at the next periodic trim: a pod's start must not look like growth.
        crate::kernel::memory::trim();
        if let Some(d) = self.drops.as_mut() {
            d.watch_netns(ns.inode).with_context(|| format!("watching drops in {}", ns.name))?;
        }
        let ifaces = tap.ifaces.iter().map(|(n, _)| n.clone()).collect();
        let t = start_tap(
            ns.clone(),
            tap,
            self.follow_links,
            &mut self.state.reorder,
            &mut self.readers,
            &tx,
        )?;
        if self.trace.traces(ns.inode) {
            let (table, listener) =
                start_trace(&ns, self.trace.traced_ports(), &|m: &str| tracing::info!("{m}"))?;
            self.trace_tables.push((ns.inode, table));
            readers::spawn_trace(
                &mut self.readers,
                listener,
                ns.inode,
                tx.clone(),
                t.stop.subscribe(),
            );
        }
        self.taps.push(t);
        self.overflows.push(overflow::Watcher::new(ns.netns_ref(), ns.path.clone()));
        self.state.packet_inodes.insert(ns.inode);
        self.state.ns_paths.insert(ns.inode, ns.path.clone());
        Ok(ifaces)
    }

    /// Namespace `inode` is entered through `path` from now on (the process whose
    /// /proc/PID/ns/net it was entered through exited; others in it live on).
    pub fn update_path(&mut self, inode: u64, path: PathBuf) {
        if let Some(t) = self.taps.iter_mut().find(|t| t.ns.inode == inode) {
            t.ns.path = path.clone();
            t.tap.ns_path = path.clone();
        }
        for w in self.overflows.iter_mut().filter(|w| w.netns.inode == inode) {
            w.set_path(path.clone());
        }
        if let Some(p) = self.state.ns_paths.get_mut(&inode) {
            *p = path;
        }
    }

    /// Lets go of namespace `inode` (it is gone): its readers stop (closing the link monitor,
    /// which otherwise keeps the namespace alive), its classifiers are released, and nothing
    /// of it stays in the session's tables. Attempts still pending there settle as usual.
    pub fn remove_namespace(&mut self, inode: u64) -> Option<Watched> {
        let at = self.taps.iter().position(|t| t.ns.inode == inode)?;
        let t = self.taps.remove(at);
        let _ = t.stop.send(true);
        self.state.reorder.remove_ring(t.ring);
        if let Some(d) = self.drops.as_mut() {
            d.unwatch_netns(inode);
        }
        self.overflows.retain(|w| w.netns.inode != inode);
        // Its table went with the namespace; dropping the handle only tries to remove it.
        self.trace_tables.retain(|(i, _)| *i != inode);
        self.state.packet_inodes.remove(&inode);
        self.state.ns_paths.remove(&inode);
        self.state.rulesets.remove(&inode);
        self.state.names.forget(inode);
        drop(t.tap);
        Some(t.ns)
    }

    /// Lets go of every watched namespace that is gone — nothing lists it any more (no
    /// process in it, no /run/netns mount of it: `ip netns del`, its last container exited)
    /// and its path no longer leads to it — reporting each as [`Event::NetnsGone`]; re-points
    /// one entered through a process that exited while others in it live on. Without this a
    /// deleted namespace would live on, kept alive by reach's own classifiers and sockets.
    /// Returns how many namespaces are still watched.
    pub fn follow_namespaces(&mut self, sink: &mut impl Sink) -> anyhow::Result<usize> {
        use std::os::unix::fs::MetadataExt as _;
        for g in std::mem::take(&mut self.gone_at_start) {
            sink.event(&mut self.state.names, Event::NetnsGone(&g))?;
        }
        let listed = crate::netns::inventory::list();
        let watched: Vec<Watched> = self.taps.iter().map(|t| t.ns.clone()).collect();
        for ns in watched {
            let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.ino() == ns.inode);
            if same(&ns.path) {
                continue;
            }
            match listed.iter().find(|n| n.inode == ns.inode) {
                Some(n) => self.update_path(ns.inode, n.path.clone()),
                None => {
                    if let Some(gone) = self.remove_namespace(ns.inode) {
                        sink.event(&mut self.state.names, Event::NetnsGone(&gone))?;
                    }
                }
            }
        }
        Ok(self.taps.len())
    }

    /// The listeners that exist now, fed to the model and the sink. Taken after attaching, so
    /// no listener can fall between the snapshot and the probes.
    pub async fn snapshot(&mut self, sink: &mut impl Sink) -> anyhow::Result<()> {
        let snap = tokio::task::spawn_blocking(snapshot::listeners_snapshot).await?;
        let filter = self.state.bind_filter.clone();
        for ns in snap.iter().filter(|ns| filter.as_ref().is_none_or(|f| f.contains(&ns.inode))) {
            let netns = NetnsRef { inode: ns.inode, name: ns.name.clone() };
            for l in &ns.listeners {
                let view = ListenerView::new(netns.clone(), l);
                sink.event(&mut self.state.names, Event::Existing(&view))?;
                self.state.model.insert_snapshot(l.socket.cookie, Listener::from_view(&view));
            }
        }
        Ok(())
    }

    /// Handles the next message or timer tick. Returns false once every reader has ended.
    /// Cancel-safe: it only awaits channels and the timer.
    pub async fn step(&mut self, sink: &mut impl Sink) -> anyhow::Result<bool> {
        let firewalld_change = async {
            match self.state.firewalld.as_mut() {
                Some(c) => c.changes.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = self.rx.recv() => match msg {
                Some(Msg::Link(netns, change)) => self.link_changed(netns, change, sink)?,
                Some(Msg::RulesetChanged(netns)) => {
                    self.state.handle(Msg::RulesetChanged(netns), &self.decoder, sink)?;
                    self.keep_trace_table(netns, sink)?;
                }
                Some(msg) => self.state.handle(msg, &self.decoder, sink)?,
                None => return Ok(false),
            },
            Some(change) = firewalld_change => {
                sink.event(&mut self.state.names, Event::Firewalld(&change))?;
            }
            _ = self.tick.tick() => {
                self.ticks += 1;
                self.state.settle_flows(false, sink)?;
                // Counters change slowly; reading them every 500 ms keeps the cost flat.
                if self.ticks.is_multiple_of(5) {
                    self.poll_counters(sink)?;
                }
            }
        }
        Ok(true)
    }

    /// The interfaces of namespace `netns` changed: tap the default interfaces not tapped yet
    /// (a new one, one that got its first address), let go of a deleted one.
    fn link_changed(
        &mut self,
        netns: u64,
        change: LinkChange,
        sink: &mut impl Sink,
    ) -> anyhow::Result<()> {
        let Some(t) = self.taps.iter_mut().find(|t| t.ns.inode == netns) else { return Ok(()) };
        let mut changes = Vec::new();
        if let LinkChange::Gone(ifindex) = change {
            if let Some(iface) = t.tap.forget_iface(ifindex) {
                changes.push(TapChange::Detached { inode: netns, netns: t.ns.name.clone(), iface });
            }
            self.state.names.forget_device(netns, ifindex);
        } else {
            let wanted =
                crate::netns::enter::in_netns(&t.ns.path, crate::probes::net::default_ifaces)
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            for iface in wanted {
                match t.tap.attach_iface(&iface) {
                    Ok(Some(_)) => changes.push(TapChange::Attached {
                        inode: netns,
                        netns: t.ns.name.clone(),
                        iface,
                    }),
                    Ok(None) => {}
                    // Gone again before the attach (a short-lived interface): the next
                    // notification says so; nothing was attached.
                    Err(e) => tracing::info!("tapping {iface} in {}: {e:#}", t.ns.name),
                }
            }
            if change == LinkChange::Overrun {
                // Lost notifications may have hidden a deletion: drop what no longer exists.
                let alive: Vec<u32> = crate::netns::enter::in_netns(&t.ns.path, || {
                    crate::netns::addresses::if_indexes().unwrap_or_default()
                })
                .unwrap_or_default();
                let dead: Vec<u32> =
                    t.tap.ifaces.iter().map(|(_, i)| *i).filter(|i| !alive.contains(i)).collect();
                for ifindex in dead {
                    if let Some(iface) = t.tap.forget_iface(ifindex) {
                        changes.push(TapChange::Detached {
                            inode: netns,
                            netns: t.ns.name.clone(),
                            iface,
                        });
                    }
                }
            }
        }
        for c in &changes {
            sink.event(&mut self.state.names, Event::Tap(c))?;
        }
        Ok(())
    }

    /// After a ruleset change in `netns`: an unowned trace table someone removed (their `nft
    /// flush ruleset`) is added again, and said; an owned one cannot be removed by others.
    fn keep_trace_table(&mut self, netns: u64, sink: &mut impl Sink) -> anyhow::Result<()> {
        let Some((_, table)) = self.trace_tables.iter_mut().find(|(i, _)| *i == netns) else {
            return Ok(());
        };
        if table.lifetime() == trace_table::Lifetime::Owned || table.exists()? {
            return Ok(());
        }
        table.restore()?;
        let name = self.taps.iter().find(|t| t.ns.inode == netns).map(|t| t.ns.name.clone());
        let ns = NetnsRef { inode: netns, name: name.unwrap_or_else(|| netns.to_string()) };
        sink.event(&mut self.state.names, Event::TraceRestored(&ns))
    }

    /// Reads the loss, rate-limit and listen-overflow counters now.
    pub fn poll_counters(&mut self, sink: &mut impl Sink) -> anyhow::Result<()> {
        let taps: Vec<&NetnsTap> = self.taps.iter().map(|t| &t.tap).collect();
        self.state.report_counters(&self.binds, self.drops.as_ref(), &taps, sink)?;
        for w in self.overflows.iter_mut() {
            if let Some(o) = w.poll() {
                sink.event(&mut self.state.names, Event::Overflow(&o))?;
            }
        }
        Ok(())
    }

    /// Stops: every reader drains its ring, every pending attempt is reported as it stands,
    /// then everything is detached (trace tables and taps inside their namespaces first).
    pub async fn finish(mut self, sink: &mut impl Sink) -> anyhow::Result<()> {
        let _ = self.stop_tx.send(true);
        for t in &self.taps {
            let _ = t.stop.send(true);
        }
        self.tx = None;
        while let Some(msg) = self.rx.recv().await {
            if !matches!(msg, Msg::Link(..)) {
                self.state.handle(msg, &self.decoder, sink)?;
            }
        }
        while let Some(r) = self.readers.join_next().await {
            r??;
        }
        self.state.settle_flows(true, sink)?;
        if let Some(c) = self.state.firewalld.as_mut() {
            while let Ok(change) = c.changes.try_recv() {
                sink.event(&mut self.state.names, Event::Firewalld(&change))?;
            }
        }
        let pending = self.state.flows.drain();
        for rec in &pending {
            let fw = self.state.verdict_of(rec).cloned();
            sink.event(&mut self.state.names, Event::Flow(rec, fw.as_ref()))?;
        }
        self.poll_counters(sink)?;
        drop(self.trace_tables);
        drop(self.taps);
        drop(self.drops);
        drop(self.binds);
        Ok(())
    }
}

/// Installs reach's trace table for `ports` in `ns` and opens the listener of its traces
/// (and of its ruleset's changes), announced.
fn start_trace(
    ns: &Watched,
    ports: &[u16],
    announce: &impl Fn(&str),
) -> anyhow::Result<(TraceTable, TraceListener)> {
    let listener = TraceListener::open(&ns.path, Duration::from_millis(200))?;
    let table = TraceTable::install(&ns.path, ports)?;
    announce(&format!(
        "added table inet {} in {} to trace SYNs to port(s) {} and the replies from them ({})",
        trace_table::TABLE,
        ns.name,
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
        match table.lifetime() {
            trace_table::Lifetime::Owned => "owned by reach: the kernel removes it when reach ends",
            trace_table::Lifetime::UntilDrop =>
                "removed on exit; this kernel has no table owners, so one a killed run leaves is replaced at the next start",
        }
    ));
    Ok((table, listener))
}

/// Hands a freshly attached tap its ring id and readers: the ring's, and with `follow_links`
/// the interface notifications' (opened now, inside the namespace).
fn start_tap(
    ns: Watched,
    mut tap: NetnsTap,
    follow_links: bool,
    reorder: &mut reorder::Reorder,
    readers: &mut JoinSet<anyhow::Result<()>>,
    tx: &mpsc::Sender<Msg>,
) -> anyhow::Result<Tap> {
    // The one step that can fail first: a failure then leaves no ring the reorder buffer waits for.
    let links = if follow_links {
        Some(
            links::open(&ns.path)
                .with_context(|| format!("watching the interfaces of {}", ns.name))?,
        )
    } else {
        None
    };
    let (stop, stop_rx) = watch::channel(false);
    let ring = reorder.add_ring();
    readers::spawn(
        readers,
        tap.take_events()?,
        ring,
        readers::Kind::Packet,
        tx.clone(),
        stop_rx.clone(),
    )?;
    if let Some(fd) = links {
        links::spawn(readers, fd, ns.inode, tx.clone(), stop_rx);
    }
    Ok(Tap { ns, tap, ring, stop })
}

/// Attaches the TC tap of one namespace, first removing netlink filters a killed earlier run
/// left there (they outlive their process, unlike TCX links).
async fn attach_tap(
    ns: &Watched,
    ifaces: &[String],
    net: &NetOptions,
    how: TcHow,
    announce: &impl Fn(&str),
) -> anyhow::Result<NetnsTap> {
    let (ns2, ifaces, o) = (ns.clone(), ifaces.to_vec(), net.clone());
    let (removed, tap) = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        if how == TcHow::Netlink {
            let names = ifaces.clone();
            if let Ok(r) = crate::netns::enter::in_netns(&ns2.path, move || {
                let list = if names.is_empty() {
                    crate::probes::net::default_ifaces().unwrap_or_default()
                } else {
                    names
                };
                remove_stale_filters(&list)
            }) {
                removed = r;
            }
        }
        (removed, NetnsTap::attach(ns2.inode, ns2.path.clone(), &ifaces, &o, how))
    })
    .await?;
    for r in removed {
        announce(&format!("removed a stale {r} in {} (left by a killed run)", ns.name));
    }
    match tap {
        Ok(tap) => Ok(tap),
        Err(e) if e.to_string().contains("does not exist") => {
            Err(NoSuchInterface(format!("{e:#}")).into())
        }
        Err(e) => Err(e.context(format!("attaching TC classifiers in {}", ns.name))),
    }
}

/// Subscribes to firewalld's changes on `bus` (None: the system bus) and reads its view once.
/// None without a bus to subscribe on. Announced when firewalld is there, or when the user named
/// its bus (then its absence is worth saying too).
async fn start_firewalld_cache(
    bus: Option<&str>,
    announce: &impl Fn(&str),
) -> Option<FirewalldCache> {
    let shown = bus.unwrap_or("the system bus");
    match FirewalldCache::start(bus.map(str::to_string)).await {
        Ok((cache, started)) => {
            match (started.version, started.error) {
                (Some(v), _) => announce(&format!(
                    "read firewalld {v}'s configuration from {shown} (read again when it reloads or restarts)"
                )),
                (None, Some(e)) if bus.is_some() => announce(&format!(
                    "firewalld's configuration not read from {shown} ({e}); naming rules from nftables until firewalld starts"
                )),
                (None, e) => tracing::info!("firewalld's view unavailable: {e:?}"),
            }
            Some(cache)
        }
        Err(e) => {
            if bus.is_some() {
                announce(&format!(
                    "cannot watch firewalld on {shown} ({e:#}); naming rules from nftables only"
                ));
            } else {
                tracing::info!("no system bus to watch firewalld on: {e:#}");
            }
            None
        }
    }
}

/// Connection attempts tracked at once; beyond, the least recently touched are evicted (and
/// counted by the table).
const FLOW_CAPACITY: usize = 65_536;

/// Bounded map of the latest nftables walk per connection tuple.
#[derive(Default)]
struct Verdicts {
    map: std::collections::HashMap<VerdictKey, VerdictRecord>,
    order: std::collections::VecDeque<VerdictKey>,
}

type VerdictKey = (u64, std::net::IpAddr, u16, std::net::IpAddr, u16);

impl Verdicts {
    const CAPACITY: usize = 16_384;

    fn insert(&mut self, k: VerdictKey, v: VerdictRecord) {
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, k: &VerdictKey) -> Option<&VerdictRecord> {
        self.map.get(k)
    }
}

/// `{"type":"nft_verdict", ...}` and its typed twin for one packet's walk.
fn verdict_record(
    netns: u64,
    t: &PacketTrace,
    names: &mut Names,
    attribution: Option<Attribution>,
) -> anyhow::Result<VerdictRecord> {
    let d = t.decision();
    let word = t.verdict().map(|v| {
        serde_json::to_value(v).unwrap_or_default()["verdict"].as_str().unwrap_or("").to_string()
    });
    let by_policy = d.is_some_and(|s| s.kind == TraceType::Policy);
    let mut json = serde_json::json!({
        "type": "nft_verdict",
        "netns": {"inode": netns, "name": names.name(netns)},
        "trace_id": t.id,
        "tuple": t.tuple,
        "verdict": word,
        "table": d.map(|s| format!("{} {}", s.family, s.table)),
        "chain": d.map(|s| s.chain.clone()),
        "rule_handle": d.and_then(|s| s.rule_handle),
        "by_policy": by_policy,
        "reply": t.is_reply(),
        "path": t.steps.iter().filter(|s| s.table != trace_table::TABLE).map(|s| format!("{} {} {}", s.family, s.table, s.chain)).collect::<Vec<_>>(),
    });
    if let Some(a) = &attribution {
        json["firewalld"] = serde_json::to_value(a)?;
    }
    Ok(VerdictRecord {
        json,
        attribution,
        family: d.map(|s| s.family.to_string()),
        table: d.map(|s| s.table.clone()),
        chain: d.map(|s| s.chain.clone()),
        rule_handle: d.and_then(|s| s.rule_handle),
        verdict: word,
        by_policy,
        reply: t.is_reply(),
        sent_locally: t.locally_sent(),
        steps: t.steps.iter().filter(|s| s.table != trace_table::TABLE).cloned().collect(),
        netfilter: None,
    })
}

struct State {
    names: Names,
    model: Listeners,
    bind_filter: Option<BTreeSet<u64>>,
    packet_inodes: BTreeSet<u64>,
    flows: FlowTable,
    reorder: reorder::Reorder,
    /// Last nftables walk per (netns, client, server): joined into flows that netfilter decided.
    verdicts: Verdicts,
    /// Watched namespace inode → a path to enter it (reading rulesets for attribution).
    ns_paths: std::collections::HashMap<u64, PathBuf>,
    /// firewalld's D-Bus view, re-read in its own task when firewalld changes (None: no bus).
    firewalld: Option<FirewalldCache>,
    /// Each traced namespace's nftables ruleset, read on first need after its latest change.
    rulesets: std::collections::HashMap<u64, std::sync::Arc<crate::firewall::nftables::Ruleset>>,
    /// How many times a ruleset was read (reported in `nft_verdict` lines as `ruleset_reads`).
    ruleset_reads: u64,
    /// Look up the deciding rule of every walk that did not accept (`VerdictRecord::netfilter`).
    rule_evidence: bool,
    /// (all, SYN) lost events reported so far.
    lost_seen: (u64, u64),
    /// (SYN, reply/drop) events suppressed by the rate bound, reported so far.
    suppressed_seen: (u64, u64),
}

impl State {
    fn handle(&mut self, msg: Msg, decoder: &Decoder, sink: &mut impl Sink) -> anyhow::Result<()> {
        match msg {
            Msg::Sock(ev) if ev.kind == reach_common::event::kind::ESTABLISHED => {
                if self.packet_inodes.contains(&(ev.netns as u64))
                    && let Some(est) = established(&ev)
                {
                    self.reorder.push(ev.ts_ns, Observation::Established(est));
                }
                Ok(())
            }
            Msg::Sock(ev) => {
                if self.bind_filter.as_ref().is_some_and(|f| !f.contains(&(ev.netns as u64))) {
                    return Ok(());
                }
                let mut obs = sock_event::decode(&ev, &decoder.clock, &mut self.names);
                if obs.kind == "established" {
                    // Feeds connection outcomes; not reported on its own.
                    return Ok(());
                }
                name_closed_listener(&mut self.model, &mut obs);
                sink.event(&mut self.names, Event::Sock(&obs))
            }
            Msg::Trace(netns, t) => {
                let attribution =
                    self.attribute(netns, &t).map(|a| self.arrival_zone(netns, &t, a));
                let mut v = verdict_record(netns, &t, &mut self.names, attribution)?;
                v.netfilter = self.netfilter_rule(netns, &v, &t);
                v.json["ruleset_reads"] = self.ruleset_reads.into();
                // A reply's walk is keyed by the sink that wants it (server → client as on the
                // wire); the flows join only the SYN's walk, keyed client → server.
                if let Some(tuple) = t.tuple.as_ref().filter(|_| !v.reply) {
                    let key = (netns, tuple.saddr, tuple.sport, tuple.daddr, tuple.dport);
                    if self.verdicts.get(&key).is_none_or(|old| v.replaces(old)) {
                        self.verdicts.insert(key, v.clone());
                    }
                }
                sink.event(&mut self.names, Event::Verdict(&v))
            }
            Msg::Drained(ring, at_ns) => {
                self.reorder.drained(ring, at_ns);
                Ok(())
            }
            // The session handles interface changes (it owns the taps).
            Msg::Link(..) => Ok(()),
            Msg::RulesetChanged(netns) => {
                self.rulesets.remove(&netns);
                Ok(())
            }
            Msg::Packet(ev) => {
                // The drop tracer sees every namespace; report only the watched ones.
                if !self.packet_inodes.contains(&(ev.netns as u64)) {
                    return Ok(());
                }
                let p = decoder.decode(&ev, &mut self.names);
                sink.event(&mut self.names, Event::Packet(&p))?;
                self.reorder.push(p.ts_ns, flow_observation(&p));
                Ok(())
            }
        }
    }

    /// Names the firewalld rule that decided `t`, reading the namespace's ruleset now: firewalld
    /// renumbers every handle on reload, so a cached ruleset could name the wrong rule.
    fn attribute(&mut self, netns: u64, t: &PacketTrace) -> Option<Attribution> {
        // Every accepted SYN-ACK walks firewalld's output chains too: only a reply that died
        // is worth reading the ruleset and D-Bus for.
        if t.is_reply() && t.verdict() != Some(&crate::firewall::trace::Verdict::Drop) {
            return None;
        }
        let d = t.decision()?;
        let handle = d.rule_handle?;
        if d.table != "firewalld" {
            return None;
        }
        let ruleset = self.ruleset(netns)?;
        // firewalld's own view names a rich rule by its exact text. The cached view is the one
        // read after firewalld's latest change (no D-Bus call here); while firewalld is down or
        // being re-read there is none, and the nftables attribution stands alone.
        // A firewalld of another namespace (the node's, seen from a pod's table) says nothing
        // of this one's.
        let config =
            self.firewalld.as_ref().and_then(FirewalldCache::view).filter(|c| c.guards(netns));
        // The port firewalld's rules name: the server's, the source port of a reply.
        let tuple = t.tuple?;
        let port = if t.is_reply() { tuple.sport } else { tuple.dport };
        crate::firewall::attribute::attribute(
            ruleset.as_ref(),
            d.family,
            &d.table,
            handle,
            port,
            config.as_deref(),
        )
    }

    /// The ruleset of namespace `netns` as it is now: the one read after its last change
    /// (NFT_MSG_NEWGEN), read again only after the next — whatever the rate of traced packets.
    fn ruleset(
        &mut self,
        netns: u64,
    ) -> Option<std::sync::Arc<crate::firewall::nftables::Ruleset>> {
        if let Some(r) = self.rulesets.get(&netns) {
            return Some(r.clone());
        }
        let path = self.ns_paths.get(&netns)?;
        let ns = crate::lab::NetNsFd::open(path).ok()?;
        // `nft -j list ruleset` runs a process: the runtime's other tasks (readers, the firewalld
        // cache's reads) move to another worker meanwhile.
        let ruleset =
            tokio::task::block_in_place(|| crate::firewall::nftables::read_in(&ns)).ok()?;
        self.ruleset_reads += 1;
        let r = std::sync::Arc::new(ruleset);
        self.rulesets.insert(netns, r.clone());
        Some(r)
    }

    /// The rule that did not accept `v`'s packet, when no firewalld concept names it (what
    /// `reach why` looks up for its one attempt), for the sinks that want it per walk.
    fn netfilter_rule(
        &mut self,
        netns: u64,
        v: &VerdictRecord,
        t: &PacketTrace,
    ) -> Option<crate::diagnose::NetfilterRule> {
        if !self.rule_evidence || v.verdict.as_deref() == Some("accept") {
            return None;
        }
        let named = v.attribution.as_ref().is_some_and(|a| {
            a.action != "accept" && a.concept != crate::firewall::firewalld_chains::Concept::Other
        });
        if named {
            return None;
        }
        let ruleset = self.ruleset(netns);
        // The client: the SYN's source, or a reply's destination.
        let client = t.tuple.map(|tu| if v.reply { tu.daddr } else { tu.saddr });
        super::netfilter_rule::of_walk(v, client, ruleset.as_deref(), None)
    }

    /// [`Attribution::with_arrival_zone`] for an arriving SYN, from the cached firewalld view
    /// and the name of the interface it came in on.
    fn arrival_zone(&mut self, netns: u64, t: &PacketTrace, a: Attribution) -> Attribution {
        if t.is_reply() {
            return a;
        }
        let (Some(iif), Some(tuple)) = (t.iif, t.tuple) else { return a };
        let view = self.firewalld.as_ref().and_then(FirewalldCache::view);
        let Some(config) = view.filter(|c| c.guards(netns)) else { return a };
        let Some(iface) = self.names.device(netns, iif) else { return a };
        a.with_arrival_zone(&config, &iface, tuple.saddr)
    }

    fn verdict_of(&self, rec: &FlowRecord) -> Option<&VerdictRecord> {
        self.verdicts.get(&(
            rec.netns,
            rec.client.ip(),
            rec.client.port(),
            rec.server.ip(),
            rec.server.port(),
        ))
    }

    /// Feeds the observations every ring was drained past to the flow table, then expires
    /// attempts unanswered by then; reports every flow that settled. `stopping`: everything
    /// was drained for the last time, so all of it goes, and silence counts up to now.
    fn settle_flows(&mut self, stopping: bool, sink: &mut impl Sink) -> anyhow::Result<()> {
        let (ready, expire_at) = if stopping {
            (self.reorder.flush(), boot_ns())
        } else {
            (self.reorder.ready(), self.reorder.horizon())
        };
        let mut settled: Vec<FlowRecord> = Vec::new();
        for obs in ready {
            settled.extend(self.flows.observe(obs));
        }
        settled.extend(self.flows.expire(expire_at));
        for rec in settled {
            let fw = self.verdict_of(&rec).cloned();
            sink.event(&mut self.names, Event::Flow(&rec, fw.as_ref()))?;
        }
        Ok(())
    }

    fn report_counters(
        &mut self,
        binds: &BindListen,
        drops: Option<&DropTap>,
        taps: &[&NetnsTap],
        sink: &mut impl Sink,
    ) -> anyhow::Result<()> {
        use reach_common::net::counter;
        let mut lost = binds.lost().unwrap_or(0);
        let (mut syn, mut other, mut syn_lost) = (0, 0, 0);
        for c in drops
            .and_then(|d| d.counters().ok())
            .into_iter()
            .chain(taps.iter().filter_map(|t| t.counters().ok()))
        {
            lost += counter::lost(&c);
            syn_lost += c[counter::SYN_LOST as usize];
            syn += c[counter::SYN_RATE_LIMITED as usize];
            other += c[counter::OTHER_RATE_LIMITED as usize];
        }
        if lost > self.lost_seen.0 {
            let (count, syn) = (lost - self.lost_seen.0, syn_lost - self.lost_seen.1);
            self.lost_seen = (lost, syn_lost);
            sink.event(&mut self.names, Event::Lost { count, syn })?;
        }
        if (syn, other) != self.suppressed_seen {
            let (ds, dother) = (syn - self.suppressed_seen.0, other - self.suppressed_seen.1);
            self.suppressed_seen = (syn, other);
            sink.event(&mut self.names, Event::Suppressed(ds, dother))?;
        }
        Ok(())
    }
}

/// The flow-table view of a packet observation (SYN and drops are client → server; replies
/// server → client, as on the wire).
fn flow_observation(p: &PacketObservation) -> Observation {
    let family = if p.family == "ipv6" { Family::V6 } else { Family::V4 };
    let (netns, at_ns) = (p.netns.inode, p.ts_ns);
    match p.kind {
        "synack" | "rst" => {
            let reply = SynAckSeen {
                netns,
                ifindex: p.ifindex,
                family,
                saddr: p.saddr,
                sport: p.sport,
                daddr: p.daddr,
                dport: p.dport,
                at_ns,
            };
            if p.kind == "rst" { Observation::Rst(reply) } else { Observation::SynAck(reply) }
        }
        "drop" => Observation::Drop(Dropped {
            netns,
            family,
            saddr: p.saddr,
            sport: p.sport,
            daddr: p.daddr,
            dport: p.dport,
            reason: p.reason.clone().unwrap_or_default(),
            location: p.location.clone(),
            is_syn: p.flags.contains('S') && !p.flags.contains('A'),
            // Which way a SYN-ACK or RST went is for the flow table (it knows the attempts).
            reply: Reply::from_flags(&p.flags),
            at_ns,
        }),
        _ => Observation::Syn(SynSeen {
            netns,
            ifindex: p.ifindex,
            family,
            saddr: p.saddr,
            sport: p.sport,
            daddr: p.daddr,
            dport: p.dport,
            seq: p.seq,
            at_ns,
        }),
    }
}

/// A completed passive open: the server socket's address is local, the client is its peer.
fn established(ev: &reach_common::event::SockEvent) -> Option<Established> {
    use reach_common::event::{AF_INET6, flag};
    if ev.flags & flag::HAS_PEER == 0 || ev.flags & flag::HAS_SOCKET == 0 {
        return None;
    }
    let ip = |raw: &[u8; 16]| -> std::net::IpAddr {
        if ev.family == AF_INET6 {
            std::net::Ipv6Addr::from(*raw).into()
        } else {
            std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()
        }
    };
    Some(Established {
        netns: ev.netns as u64,
        family: if ev.family == AF_INET6 { Family::V6 } else { Family::V4 },
        saddr: ip(&ev.req_addr),
        sport: ev.req_port,
        daddr: ip(&ev.bound_addr),
        dport: ev.bound_port,
        at_ns: ev.ts_ns,
    })
}

/// Applies `obs` to the model. A close no longer carries the port (the kernel released it
/// before the state change), so it is named after the listener it ended.
fn name_closed_listener(model: &mut Listeners, obs: &mut SockObservation) {
    if let Some(Change::Removed(l)) = model.apply(obs) {
        obs.addr = Some(l.addr.to_string());
        obs.port = Some(l.port);
        obs.bound_addr = obs.addr.clone();
        obs.bound_port = obs.port;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_of(flags: &str, saddr: &str, sport: u16, daddr: &str, dport: u16) -> PacketObservation {
        PacketObservation {
            kind: "drop",
            time: String::new(),
            ts_ns: 5,
            netns: NetnsRef { inode: 9, name: "srv".into() },
            ifindex: 0,
            iface: None,
            family: if saddr.contains(':') { "ipv6" } else { "ipv4" },
            saddr: saddr.parse().unwrap(),
            sport,
            daddr: daddr.parse().unwrap(),
            dport,
            seq: 0,
            flags: flags.into(),
            reason: Some("NETFILTER_DROP".into()),
            location: Some("nft_do_chain+0x46f".into()),
        }
    }

    /// A dropped SYN-ACK or RST goes to the flow table marked as a possible reply (it decides
    /// which attempt, if any, it answers); a SYN or an ACK is not one.
    #[test]
    fn drops_of_synacks_and_rsts_are_marked_as_replies() {
        let reply = |flags: &str| match flow_observation(&drop_of(
            flags, "10.0.0.1", 8080, "10.0.0.2", 40000,
        )) {
            Observation::Drop(d) => (d.reply, d.is_syn),
            other => panic!("{other:?}"),
        };
        assert_eq!(reply("SA"), (Some(Reply::SynAck), false));
        assert_eq!(reply("AR"), (Some(Reply::Rst), false));
        assert_eq!(reply("S"), (None, true));
        assert_eq!(reply("A"), (None, false));
        // End to end through the table: the SYN-ACK drop lands on the attempt it answers.
        let mut t = FlowTable::new(8, Duration::from_secs(2));
        let syn = PacketObservation {
            kind: "syn",
            flags: "S".into(),
            reason: None,
            location: None,
            ts_ns: 1,
            ..drop_of("S", "fd00::2", 40000, "fd00::1", 8080)
        };
        t.observe(flow_observation(&syn));
        t.observe(flow_observation(&drop_of("SA", "fd00::1", 8080, "fd00::2", 40000)));
        let r = &t.expire(10_000_000_000)[0];
        assert_eq!(r.reply_drop.as_ref().map(|d| d.reason.as_str()), Some("NETFILTER_DROP"));
    }
}
