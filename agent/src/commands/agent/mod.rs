//! `reach agent`: the always-on fleet mode, one per node (a Kubernetes DaemonSet). It watches
//! the host and every network namespace as they appear and disappear (the inventory rescanned
//! every `--rescan`, and at once when a bind comes from a namespace it does not know), every
//! interface as it appears (rtnetlink, through the shared observe engine), names pods from the
//! node's container runtime, and exports what it sees as Prometheus metrics on `--metrics`
//! (with `/healthz` and `/readyz`) and, with `--json`, one line per failed connection attempt
//! with the verdict `reach why` would give. It never changes a packet's fate. SIGTERM or
//! Ctrl-C: everything is detached and it exits 0.
mod attempts;
mod listeners;
mod owner;
mod pods;
mod sink;

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    kernel::privileges,
    metrics::{self, Health, Metrics, MetricsConfig, Server},
    netns::discover::{Changes, Discovery},
    observe::{Session, SessionOptions, Watched},
    pods::{PodIndex, PodSource},
    probes::{
        bind_listen::{DEFAULT_RING_KIB, validate_ring_kib},
        sock_event::NetnsRef,
    },
};
use pods::{Pods, name_pods, pod_label};
use sink::{AgentSink, labels};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Serve Prometheus metrics (and /healthz, /readyz) on this address. `0.0.0.0:9464` lets a
    /// cluster's Prometheus scrape every node; the default keeps them on the node.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = metrics::parse_addr)]
    pub metrics: SocketAddr,
    /// Also print one JSON object per line on stdout for every connection attempt that failed
    /// (refused, dropped or unanswered), with its verdict class, evidence and fix — for log
    /// shippers.
    #[arg(long)]
    pub json: bool,
    /// The container runtime's CRI socket, for pod names (as kubelet talks to it). Default: the
    /// first of containerd's, CRI-O's and cri-dockerd's sockets that answers; with none, pod
    /// UIDs from cgroup paths (no names).
    #[arg(long, value_name = "PATH")]
    pub cri_socket: Option<std::path::PathBuf>,
    /// Trace SYNs to this TCP port through nftables in every watched namespace (reach adds
    /// its own table `inet reach_trace` there, removed on exit): failed attempts then name the
    /// table, chain and rule — in firewalld's terms where firewalld decided — and
    /// reach_firewall_verdicts_total counts the decisions. Repeatable. Default: no tracing.
    #[arg(long, value_name = "PORT")]
    pub trace_port: Vec<u16>,
    /// Never add reach's trace table to this namespace (`host` for the node's own ruleset, an
    /// `ip netns` name, a PID or a path). Repeatable.
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub no_trace_netns: Vec<String>,
    /// D-Bus address of firewalld's bus (default: the system bus, where a node's firewalld is).
    /// Its view names a traced decision by firewalld's zone, policy or exact rich rule; it is
    /// read again whenever firewalld reloads, changes or restarts.
    #[arg(long, value_name = "ADDRESS")]
    pub firewalld_bus: Option<String>,
    /// How often the machine's network namespaces are listed again (seconds). A bind from an
    /// unknown namespace triggers a listing at once.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub rescan: f64,
    /// Per namespace-and-pod series kept per metric; beyond, observations are counted under
    /// netns/namespace/pod "other" (and in reach_label_sets_folded_total).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub max_label_sets: usize,
    /// How long the series of a namespace (a pod) that is gone stay exported (seconds), so a
    /// scrape after a pod's deletion still sees its last counts.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub series_grace: f64,
    /// Per-CPU bound on packet events per second (a SYN flood is counted, not streamed).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub syn_rate: u32,
    /// A connection attempt with no answer for this long counts as `unanswered`.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub flow_timeout: f64,
    /// How to attach the TC classifiers (`tcx` or `netlink`); default: what `reach doctor`
    /// plans.
    #[arg(long, value_name = "HOW", value_parser = ["tcx", "netlink"])]
    pub tc_attach: Option<String>,
    /// Size of the bind/listen ring buffer in KiB (power of two).
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_KIB)]
    pub ring_buffer_kib: u32,
    /// Stop after this many seconds (default: until SIGTERM or Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// How often the agent hands freed heap back to the kernel (`malloc_trim`, ~1 ms).
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Bad input: exit code 2 with a message naming the problem.
struct Usage(String);

fn positive(what: &str, v: f64) -> Result<Duration, Usage> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Usage(format!("{what} must be a positive number of seconds, got {v}")))
    }
}

/// Checks the arguments; Ok: the namespaces never to trace (inodes).
fn validate(args: &AgentArgs) -> Result<std::collections::BTreeSet<u64>, Usage> {
    positive("--rescan", args.rescan)?;
    positive("--series-grace", args.series_grace)?;
    positive("--flow-timeout", args.flow_timeout)?;
    if let Some(d) = args.duration {
        positive("--duration", d)?;
    }
    if args.trace_port.contains(&0) {
        return Err(Usage("--trace-port 0 is not a port a client can connect to".into()));
    }
    if args.max_label_sets == 0 {
        return Err(Usage("--max-label-sets must be at least 1".into()));
    }
    validate_ring_kib(args.ring_buffer_kib).map_err(Usage)?;
    let no_trace = Watched::resolve_all(&args.no_trace_netns)
        .map_err(|e| Usage(format!("--no-trace-netns: {e}")))?;
    Ok(no_trace.into_iter().map(|n| n.inode).collect())
}

/// Exit codes: 0 stopped by SIGTERM/Ctrl-C/--duration; 1 attach or runtime error; 2 bad usage
/// (a malformed or unusable --metrics address); 3 missing privileges.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("agent") {
        return Ok(code);
    }
    let no_trace = match validate(&args) {
        Ok(n) => n,
        Err(Usage(msg)) => {
            eprintln!("reach agent: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    // Before anything is attached: a signal during start-up ends in the orderly teardown.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // The address is taken first: a port in use is reported before anything is attached.
    let server = match Server::bind(args.metrics).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reach agent: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // Pods next, still before anything is attached: a --cri-socket that does not answer is
    // bad input; without the flag, no runtime is a degradation (cgroup paths), logged.
    let pods = match PodSource::detect(args.cri_socket.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reach agent: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    eprintln!("reach: naming pods from {}", pods.describe());
    eprintln!(
        "reach: serving metrics on http://{}/metrics (/healthz, /readyz)",
        server.local_addr()
    );
    let metrics = Arc::new(Metrics::new(MetricsConfig {
        max_label_sets: args.max_label_sets,
        grace: Duration::from_secs_f64(args.series_grace),
    }));
    let health = Health::default();
    health.set_live(true);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(server.run(metrics.clone(), health.clone(), async move {
        let _ = http_stopped.await;
    }));

    let result = observe(&args, no_trace, metrics, &health, pods, &mut sigint, &mut sigterm).await;
    health.set_live(false);
    let _ = stop_http.send(());
    match tokio::time::timeout(Duration::from_secs(1), http).await {
        Ok(Ok(Err(e))) => tracing::warn!("metrics server: {e:#}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("metrics server did not stop within 1 s"),
    }
    result
}

async fn observe(
    args: &AgentArgs,
    no_trace: std::collections::BTreeSet<u64>,
    metrics: Arc<Metrics>,
    health: &Health,
    pods: PodSource,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<ExitCode> {
    let host = Watched::resolve_all(&["host".to_string()]).map_err(anyhow::Error::msg)?;

    let opts = SessionOptions {
        namespaces: host,
        ifaces_of: Vec::new(),
        bind_filter: None,
        ifaces: Vec::new(),
        ports: Vec::new(),
        syn_rate: args.syn_rate,
        tc_attach: args.tc_attach.clone(),
        flow_timeout: Duration::from_secs_f64(args.flow_timeout),
        force_classic_drops: false,
        trace: !args.trace_port.is_empty(),
        firewalld_bus: args.firewalld_bus.clone(),
        packets: true,
        attach: None,
        ring_kib: args.ring_buffer_kib,
        follow_links: true,
        trace_ports: args.trace_port.clone(),
        no_trace,
        rule_evidence: true,
    };
    let mut session = Session::attach(&opts, |m| eprintln!("reach: {m}")).await?;
    let mut sink = AgentSink::new(metrics.clone(), args.json);
    let mut discovery = Discovery::new();
    let mut pods = Pods { source: pods, index: PodIndex::default(), read_at: None };
    for ns in session.namespaces() {
        sink.owners.set(ns.netns_ref(), None);
        sink.paths.insert(ns.inode, ns.path.clone());
        sink.listeners.track(ns.netns_ref(), ns.path.clone());
    }
    // The first listing: every namespace there now (the host's already tapped).
    pods.refresh(true).await;
    sink.pods = pods.index.clone();
    let first = scan(&mut discovery, &pods.index).await;
    apply(&mut session, &mut sink, &metrics, &pods.index, first).await;
    refresh_listeners(&mut sink, &metrics);
    publish_watched(&session, &sink, &metrics);
    health.set_ready(true);
    eprintln!(
        "reach: agent ready: {} namespaces, {} interfaces watched",
        session.namespaces().count(),
        session.interface_count()
    );

    let mut trimmed_at = std::time::Instant::now();
    let mut rescan = tokio::time::interval(Duration::from_secs_f64(args.rescan));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    loop {
        tokio::select! {
            more = session.step(&mut sink) => {
                if !more? { break }
                if std::mem::take(&mut sink.taps_changed) {
                    publish_watched(&session, &sink, &metrics);
                }
                // A bind from a namespace not followed yet: list them now, not at the tick.
                if !sink.unknown_netns.is_empty() {
                    let unknown = std::mem::take(&mut sink.unknown_netns);
                    if unknown.iter().any(|i| !discovery.contains(*i)) {
                        let c = scan(&mut discovery, &pods.index).await;
                        if pods.refresh(!c.appeared.is_empty()).await {
                            sink.pods = pods.index.clone();
                        }
                        apply(&mut session, &mut sink, &metrics, &pods.index, c).await;
                        name_pods(&mut sink, &pods.index);
                        publish_watched(&session, &sink, &metrics);
                    }
                }
                if !sink.failed_binds.is_empty() {
                    if sink.binds_need_pods() && pods.refresh(true).await {
                        sink.pods = pods.index.clone();
                        name_pods(&mut sink, &pods.index);
                    }
                    sink.report_binds()?;
                }
            }
            _ = rescan.tick() => {
                let c = scan(&mut discovery, &pods.index).await;
                // A new namespace is usually a new pod: ask the runtime now, not at the next
                // periodic listing, so its first series already carry the pod's name.
                let changed = pods.refresh(!c.is_empty()).await;
                if changed {
                    sink.pods = pods.index.clone();
                }
                apply(&mut session, &mut sink, &metrics, &pods.index, c).await;
                if changed && name_pods(&mut sink, &pods.index) {
                    publish_watched(&session, &sink, &metrics);
                }
                refresh_listeners(&mut sink, &metrics);
                publish_watched(&session, &sink, &metrics);
                metrics.expire(std::time::Instant::now());
                // A flood fills the flow table (bounded) and the table empties again once its
                // attempts settle; glibc keeps the freed heap unless asked to give it back.
                if trimmed_at.elapsed() >= TRIM_EVERY {
                    crate::kernel::memory::trim();
                    trimmed_at = std::time::Instant::now();
                }
            }
            _ = crate::observe::sleep_until(deadline) => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    health.set_ready(false);
    session.finish(&mut sink).await?;
    eprintln!("reach: agent stopped: {} failed connection attempts reported", sink.failed);
    Ok(ExitCode::SUCCESS)
}

async fn scan(discovery: &mut Discovery, pods: &PodIndex) -> Changes {
    let extra = pods
        .pods()
        .filter_map(|p| {
            let path = p.netns_path.clone()?;
            Some(crate::netns::inventory::NetNs {
                inode: p.netns_inode?,
                name: path.file_name()?.to_string_lossy().into_owned(),
                path,
                processes: 0,
            })
        })
        .collect();
    // The inventory walks /proc: off the runtime's worker threads.
    let mut d = std::mem::take(discovery);
    let (d, changes) = tokio::task::spawn_blocking(move || {
        let c = d.scan(extra);
        (d, c)
    })
    .await
    .unwrap_or_default();
    *discovery = d;
    changes
}

/// Follows what a scan found: taps the namespaces that appeared, lets go of the ones gone
/// (their series expire after the grace period), re-points the ones whose path moved.
async fn apply(
    session: &mut Session,
    sink: &mut AgentSink,
    metrics: &Metrics,
    pods: &PodIndex,
    c: Changes,
) {
    let now = std::time::Instant::now();
    for ns in c.gone {
        if let Some(w) = session.remove_namespace(ns.inode)
            && let Err(e) = sink.netns_gone(&w)
        {
            tracing::warn!("reporting netns {} gone: {e:#}", w.name);
        }
        if let Some(owner) = sink.forget(ns.inode) {
            let w = labels(&owner);
            metrics.set_namespace_interfaces(&w, 0);
            metrics.gone(&w.netns, now);
        }
    }
    for (inode, path) in c.moved {
        session.update_path(inode, path.clone());
        sink.paths.insert(inode, path.clone());
        sink.listeners.set_path(inode, path);
    }
    for ns in c.appeared {
        let w = Watched { inode: ns.inode, name: ns.name.clone(), path: ns.path.clone() };
        if session.namespaces().any(|n| n.inode == w.inode) {
            continue;
        }
        match session.add_namespace(w.clone()).await {
            Ok(ifaces) => {
                tracing::info!("watching netns {} ({})", w.name, ifaces.join(", "));
                metrics.back(&w.name);
                sink.owners.set(
                    NetnsRef { inode: w.inode, name: w.name.clone() },
                    pod_label(pods, w.inode),
                );
                sink.listeners.track(w.netns_ref(), w.path.clone());
                sink.paths.insert(w.inode, w.path.clone());
            }
            // A namespace that vanished between the listing and the attach is simply gone;
            // anything else is worth a warning but must not stop the agent.
            Err(e) if !w.path.exists() => tracing::info!("netns {} vanished: {e:#}", w.name),
            Err(e) => tracing::warn!("cannot watch netns {}: {e:#}", w.name),
        }
    }
}

fn refresh_listeners(sink: &mut AgentSink, metrics: &Metrics) {
    let mut fresh = Vec::new();
    for inode in sink.listeners.refresh(std::time::Instant::now()) {
        let Some(owner) = sink.owners.get(inode) else { continue };
        let w = labels(owner);
        for (reason, n) in sink.listeners.unreachable(inode) {
            metrics.set_unreachable_listeners(&w, reason, n);
        }
        fresh.extend(sink.listeners.take_new_unreachable(inode));
    }
    if fresh.is_empty() || !sink.json {
        return;
    }
    // Who holds them: one /proc scan for all, only when there is something new to name.
    let owners = crate::netns::owners::socket_owners();
    for (l, reason, inode) in fresh {
        let holders = owners.get(&inode).cloned().unwrap_or_default();
        if let Err(e) = sink.report_unreachable(&l, reason, &holders) {
            tracing::warn!("printing an unreachable listener: {e:#}");
        }
    }
}

fn publish_watched(session: &Session, sink: &AgentSink, metrics: &Metrics) {
    metrics.set_watched(session.namespaces().count() as i64, session.interface_count() as i64);
    for ns in session.namespaces() {
        let owner = sink.owners.of(&ns.netns_ref());
        metrics.set_namespace_interfaces(
            &labels(&owner),
            session.interfaces_of(ns.inode).len() as i64,
        );
    }
}
