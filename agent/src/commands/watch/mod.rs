//! `reach watch`: stream what happens to sockets and to connection attempts, per network
//! namespace — binds, listens and listener closes; client SYNs arriving on the watched
//! interfaces, the server's SYN-ACKs and RSTs, kernel drops with their reasons, full listen
//! queues — until Ctrl-C, SIGTERM or `--duration`. Everything attached is detached on every exit
//! path (TC attachments inside their own namespace).
mod overflow;
mod readers;
pub mod render;
mod reorder;

use std::{
    collections::BTreeSet, io::Write as _, path::PathBuf, process::ExitCode, time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    firewall::{
        trace::PacketTrace,
        trace_listener::TraceListener,
        trace_table::{self, TraceTable},
    },
    kernel::{
        btf::KernelBtf, capabilities, drop_reasons::DropReasons, kallsyms::Kallsyms, privileges,
    },
    model::{
        flows::{
            Dropped, Established, Family, FlowRecord, FlowTable, Observation, SynAckSeen, SynSeen,
        },
        listener_view::ListenerView,
        listeners::{Change, Listener, Listeners},
    },
    netns::{inventory, names::Names, select, snapshot},
    output::time::{Clock, boot_ns},
    probes::{
        bind_listen::{AttachMode, BindListen, DEFAULT_RING_KIB, validate_ring_kib},
        net::{DropTap, NetOptions, NetnsTap, TcHow, remove_stale_filters},
        packet_event::{Decoder, PacketObservation},
        plan::{self, Plan},
        sock_event::{self, NetnsRef, SockObservation},
    },
};
use readers::Msg;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Print one JSON object per line (contract in the README) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Watch this network namespace: an `ip netns` name, `host`, a PID or a path
    /// (/proc/PID/ns/net, /run/netns/NAME). Repeat for several. Default: the host.
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub netns: Vec<String>,
    /// Interfaces (inside each watched namespace) whose ingress SYNs are watched. Default:
    /// every interface that has an address, plus lo (WSL2 NAT delivers Windows' localhost there).
    #[arg(long, value_name = "IFACE")]
    pub iface: Vec<String>,
    /// Only these TCP ports produce SYN, reply and drop events (default: all ports; drops are
    /// then limited to SYNs). Repeatable.
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Per-CPU bound on packet events per second (SYN floods are counted, not streamed).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub syn_rate: u32,
    /// How to attach the TC classifiers: `tcx` links (≥ 6.6, vanish with the process) or a
    /// `netlink` clsact qdisc + filter (any kernel; coexists with tools that expect clsact).
    /// Default: what `reach doctor` plans.
    #[arg(long, value_name = "HOW", value_parser = ["tcx", "netlink"])]
    pub tc_attach: Option<String>,
    /// A connection attempt with no answer (no SYN-ACK, RST or drop) for this long is
    /// reported as `unanswered` (a silent drop, or a problem before this host).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub flow_timeout: f64,
    /// Force how drops are traced: `tp_btf` (typed kfree_skb) or `tracepoint` (skb:kfree_skb,
    /// whose record layout is read from tracefs). Default: tp_btf when the kernel allows it.
    #[arg(long, value_name = "HOW", value_parser = ["tp_btf", "tracepoint"])]
    pub drop_attach: Option<String>,
    /// Do not trace SYNs through nftables. By default, with `--port`, reach adds its own table
    /// `inet reach_trace` in each watched namespace (announced; removed on exit) and reports,
    /// per packet, the table, chain and rule that accepted or dropped it (`nft_verdict` lines,
    /// and `firewall` in flows), named in firewalld's terms when firewalld decided.
    #[arg(long)]
    pub no_trace: bool,
    /// D-Bus address of firewalld's bus (default: the system bus). With it, a rich rule that
    /// decided is named by its exact text in the fix (`--remove-rich-rule='…'`).
    #[arg(long, value_name = "ADDRESS")]
    pub firewalld_bus: Option<String>,
    /// Only binds and listens: attach nothing to interfaces and no drop tracer.
    #[arg(long)]
    pub no_packets: bool,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Force a bind/listen attach mode instead of the one `reach doctor` would choose.
    #[arg(long, value_enum, value_name = "MODE")]
    pub attach: Option<AttachMode>,
    /// Size of the bind/listen ring buffer in KiB (power of two). Events that do not fit are
    /// counted and reported as `lost`.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_KIB)]
    pub ring_buffer_kib: u32,
}

/// Bad input: exit code 2 with a message naming the problem.
struct Usage(String);

/// Exit codes (README): 0 stopped normally; 1 attach or runtime error; 2 bad usage; 3 missing
/// privileges.
pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("watch") {
        return Ok(code);
    }
    match validate(&args) {
        Ok(namespaces) => watch(args, namespaces).await,
        Err(Usage(msg)) => {
            eprintln!("reach watch: {msg}");
            Ok(ExitCode::from(2))
        }
    }
}

/// A watched namespace: identity and a path to enter it.
#[derive(Clone)]
struct Watched {
    inode: u64,
    name: String,
    path: PathBuf,
}

fn validate(args: &WatchArgs) -> Result<Vec<Watched>, Usage> {
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        return Err(Usage(format!("--duration must be a positive number of seconds, got {d}")));
    }
    validate_ring_kib(args.ring_buffer_kib).map_err(Usage)?;
    if !(args.flow_timeout.is_finite() && args.flow_timeout > 0.0) {
        return Err(Usage(format!(
            "--flow-timeout must be a positive number of seconds, got {}",
            args.flow_timeout
        )));
    }
    if args.port.contains(&0) {
        return Err(Usage("--port 0 is not a port a client can connect to".into()));
    }
    let all = inventory::list();
    let mut out = Vec::new();
    let specs = if args.netns.is_empty() { vec!["host".to_string()] } else { args.netns.clone() };
    for spec in &specs {
        let inode = select::resolve(spec).map_err(|e| Usage(e.to_string()))?;
        let ns = all.iter().find(|n| n.inode == inode);
        out.push(Watched {
            inode,
            name: ns.map_or_else(|| spec.clone(), |n| n.name.clone()),
            path: ns.map_or_else(|| PathBuf::from(spec), |n| n.path.clone()),
        });
    }
    Ok(out)
}

async fn probe_plan() -> anyhow::Result<Plan> {
    let (caps, facts) = tokio::task::spawn_blocking(capabilities::probe).await?;
    Ok(plan::choose(&caps, &facts))
}

async fn watch(args: WatchArgs, namespaces: Vec<Watched>) -> anyhow::Result<ExitCode> {
    // Before anything is attached: a Ctrl-C during set-up must end in the orderly teardown
    // below, never in the default action that would leave filters and qdiscs behind.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let plan = probe_plan().await?;
    let mode = match args.attach.or_else(|| AttachMode::from_plan(&plan.bind)) {
        Some(m) => m,
        None => bail!(
            "no mechanism can observe binds on this kernel; run `reach doctor` for the reasons"
        ),
    };
    let ring_kib = args.ring_buffer_kib;
    let mut binds = tokio::task::spawn_blocking(move || BindListen::attach(mode, ring_kib))
        .await?
        .with_context(|| {
            format!("attaching the bind/listen probes in {mode} mode failed (see `reach doctor`)")
        })?;
    eprintln!("reach: watching binds and listens ({mode} mode: {})", binds.attachments.join(", "));

    // Packet path: one TC tap per watched namespace, one global drop tracer.
    let opts = NetOptions {
        netns: namespaces.iter().map(|n| n.inode).collect(),
        ports: args.port.clone(),
        rate_per_sec: args.syn_rate,
        burst: args.syn_rate.max(1),
    };
    let mut taps: Vec<NetnsTap> = Vec::new();
    let mut drops: Option<DropTap> = None;
    if !args.no_packets {
        let how = match args.tc_attach.as_deref().unwrap_or(plan.ingress.as_str()) {
            "tcx" => TcHow::Tcx,
            "tc_netlink" | "netlink" => TcHow::Netlink,
            _ => bail!(
                "no way to attach a TC classifier on this kernel (see `reach doctor`); use --no-packets"
            ),
        };
        let drop_opts = opts.clone();
        let force_classic = args.drop_attach.as_deref() == Some("tracepoint");
        drops = Some(
            tokio::task::spawn_blocking(move || DropTap::attach(&drop_opts, force_classic))
                .await?
                .context("attaching the kfree_skb drop tracer failed (see `reach doctor`)")?,
        );
        for ns in &namespaces {
            let (ns2, ifaces, o) = (ns.clone(), args.iface.clone(), opts.clone());
            let tap = tokio::task::spawn_blocking(move || {
                if how == TcHow::Netlink {
                    // Filters of a killed earlier run (netlink ones outlive their process).
                    let names = ifaces.clone();
                    if let Ok(removed) = crate::netns::enter::in_netns(&ns2.path, move || {
                        let list = if names.is_empty() {
                            crate::probes::net::default_ifaces().unwrap_or_default()
                        } else {
                            names
                        };
                        remove_stale_filters(&list)
                    }) {
                        for r in removed {
                            eprintln!(
                                "reach: removed a stale {r} in {} (left by a killed run)",
                                ns2.name
                            );
                        }
                    }
                }
                NetnsTap::attach(ns2.inode, ns2.path.clone(), &ifaces, &o, how)
            })
            .await?;
            match tap {
                Ok(tap) => {
                    let ifs: Vec<&str> = tap.ifaces.iter().map(|(n, _)| n.as_str()).collect();
                    eprintln!(
                        "reach: watching SYNs on {} in {} ({})",
                        ifs.join(", "),
                        ns.name,
                        if how == TcHow::Tcx { "TCX" } else { "clsact qdisc" }
                    );
                    taps.push(tap);
                }
                Err(e) if e.to_string().contains("does not exist") => {
                    eprintln!("reach watch: {e:#}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.context(format!("attaching TC classifiers in {}", ns.name))),
            }
        }
        if let Some(d) = &drops {
            eprintln!("reach: watching drops via {}", d.how);
        }
    }
    let mut trace_tables = Vec::new();
    let mut trace_listeners = Vec::new();
    if !args.no_trace && !args.no_packets && args.port.is_empty() {
        eprintln!("reach: nftables tracing needs --port (the ports to trace); tracing is off");
    }
    if !args.no_trace && !args.no_packets && !args.port.is_empty() {
        for ns in &namespaces {
            let listener = TraceListener::open(&ns.path, Duration::from_millis(200))?;
            trace_tables.push(TraceTable::install(&ns.path, &args.port)?);
            eprintln!(
                "reach: added table inet {} in {} to trace SYNs to port(s) {} (removed on exit)",
                trace_table::TABLE,
                ns.name,
                args.port.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            );
            trace_listeners.push((ns.inode, listener));
        }
    }

    // Binds/listens: every namespace unless --netns narrows it; packets: the tapped namespaces
    // (the drop tracer sees the whole machine).
    let bind_filter: Option<BTreeSet<u64>> =
        (!args.netns.is_empty()).then(|| namespaces.iter().map(|n| n.inode).collect());
    let packet_inodes: BTreeSet<u64> = namespaces.iter().map(|n| n.inode).collect();
    let mut out = std::io::stdout().lock();
    let mut model = Listeners::new();
    // The snapshot is taken after attaching, so no listener can fall between the two.
    let snap = tokio::task::spawn_blocking(snapshot::listeners_snapshot).await?;
    for ns in snap.iter().filter(|ns| bind_filter.as_ref().is_none_or(|f| f.contains(&ns.inode))) {
        let netns = NetnsRef { inode: ns.inode, name: ns.name.clone() };
        for l in &ns.listeners {
            let view = ListenerView::new(netns.clone(), l);
            render::line(&mut out, args.json, &view, || {
                format!("{:<12} {:<12} {:<20}{}", "(before)", "listener", ns.name, view.human())
            })?;
            model.insert_snapshot(l.socket.cookie, Listener::from_view(&view));
        }
    }

    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    readers::spawn(
        &mut readers,
        binds.take_events()?,
        readers::Kind::Sock,
        tx.clone(),
        stop_rx.clone(),
    )?;
    if let Some(d) = drops.as_mut() {
        readers::spawn(
            &mut readers,
            d.take_events()?,
            readers::Kind::Packet,
            tx.clone(),
            stop_rx.clone(),
        )?;
    }
    for t in taps.iter_mut() {
        readers::spawn(
            &mut readers,
            t.take_events()?,
            readers::Kind::Packet,
            tx.clone(),
            stop_rx.clone(),
        )?;
    }
    for (inode, listener) in trace_listeners {
        readers::spawn_trace(&mut readers, listener, inode, tx.clone(), stop_rx.clone());
    }
    drop(tx);

    let decoder = Decoder {
        clock: Clock::new(),
        reasons: KernelBtf::load()
            .and_then(|b| DropReasons::load(&b))
            .unwrap_or_else(|e| DropReasons::unavailable(e.to_string())),
        kallsyms: Kallsyms::load().ok(),
    };
    let flows = FlowTable::new(FLOW_CAPACITY, Duration::from_secs_f64(args.flow_timeout));
    let mut state = State {
        names: Names::new(),
        model,
        bind_filter,
        packet_inodes,
        flows,
        reorder: reorder::Reorder::default(),
        verdicts: Verdicts::default(),
        ns_paths: namespaces.iter().map(|n| (n.inode, n.path.clone())).collect(),
        firewalld_bus: args.firewalld_bus.clone(),
        lost_seen: 0,
        suppressed_seen: (0, 0),
    };
    let mut overflows: Vec<overflow::Watcher> = if args.no_packets {
        Vec::new()
    } else {
        namespaces
            .iter()
            .map(|n| {
                overflow::Watcher::new(
                    NetnsRef { inode: n.inode, name: n.name.clone() },
                    n.path.clone(),
                )
            })
            .collect()
    };

    let deadline = args.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => state.handle(msg, &decoder, &mut out, args.json)?,
                None => break,
            },
            _ = tick.tick() => {
                ticks += 1;
                state.settle_flows(boot_ns(), &mut out, args.json)?;
                // Counters change slowly; reading them every 500 ms keeps the cost flat.
                if ticks.is_multiple_of(5) {
                    state.report_counters(&binds, drops.as_ref(), &taps, &mut out, args.json)?;
                    for w in overflows.iter_mut() {
                        if let Some(o) = w.poll() {
                            render::line(&mut out, args.json, &o, || overflow_line(&o))?;
                        }
                    }
                }
            }
            _ = sleep_until(deadline) => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Stop: every reader drains its ring, then the channel closes.
    let _ = stop_tx.send(true);
    while let Some(msg) = rx.recv().await {
        state.handle(msg, &decoder, &mut out, args.json)?;
    }
    while let Some(r) = readers.join_next().await {
        r??;
    }
    state.report_counters(&binds, drops.as_ref(), &taps, &mut out, args.json)?;
    state.settle_flows(u64::MAX, &mut out, args.json)?;
    for rec in state.flows.drain() {
        print_flow(&mut out, &rec, &mut state.names, args.json)?;
    }
    for w in overflows.iter_mut() {
        if let Some(o) = w.poll() {
            render::line(&mut out, args.json, &o, || overflow_line(&o))?;
        }
    }
    // Detach: trace tables and taps inside their namespaces, then the global probes.
    drop(trace_tables);
    drop(taps);
    drop(drops);
    drop(binds);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn overflow_line(o: &overflow::Overflow) -> String {
    let who: Vec<String> = o
        .full_listeners
        .iter()
        .map(|l| format!("{} ({})", l.endpoint(), l.comm.as_deref().unwrap_or("?")))
        .collect();
    format!(
        "!! {}: listen queue overflow — {} SYNs refused silently (ListenOverflows +{}, ListenDrops +{}); full: {}",
        o.netns.name,
        o.listen_drops.max(o.listen_overflows),
        o.listen_overflows,
        o.listen_drops,
        if who.is_empty() { "no listener full right now".into() } else { who.join(", ") }
    )
}

/// Connection attempts tracked at once; beyond, the least recently touched are evicted (and
/// counted by the table).
const FLOW_CAPACITY: usize = 65_536;

fn print_flow(
    out: &mut impl std::io::Write,
    rec: &FlowRecord,
    names: &mut Names,
    json: bool,
) -> anyhow::Result<()> {
    print_flow_with(out, rec, names, json, None)
}

/// Bounded map of the latest nftables walk per connection tuple.
#[derive(Default)]
struct Verdicts {
    map: std::collections::HashMap<VerdictKey, serde_json::Value>,
    order: std::collections::VecDeque<VerdictKey>,
}

type VerdictKey = (u64, std::net::IpAddr, u16, std::net::IpAddr, u16);

impl Verdicts {
    const CAPACITY: usize = 16_384;

    fn insert(&mut self, k: VerdictKey, v: serde_json::Value) {
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, k: &VerdictKey) -> Option<&serde_json::Value> {
        self.map.get(k)
    }
}

/// `{"type":"nft_verdict", ...}` for one packet's walk.
fn verdict_json(netns: u64, t: &PacketTrace, names: &mut Names) -> serde_json::Value {
    let d = t.decision();
    serde_json::json!({
        "type": "nft_verdict",
        "netns": {"inode": netns, "name": names.name(netns)},
        "trace_id": t.id,
        "tuple": t.tuple,
        "verdict": t.verdict().map(|v| serde_json::to_value(v).unwrap_or_default()["verdict"].clone()),
        "table": d.map(|s| format!("{} {}", s.family, s.table)),
        "chain": d.map(|s| s.chain.clone()),
        "rule_handle": d.and_then(|s| s.rule_handle),
        "by_policy": d.is_some_and(|s| s.kind == crate::firewall::trace::TraceType::Policy),
        "path": t.steps.iter().filter(|s| s.table != trace_table::TABLE).map(|s| format!("{} {} {}", s.family, s.table, s.chain)).collect::<Vec<_>>(),
    })
}

fn verdict_line(v: &serde_json::Value) -> String {
    let tuple = &v["tuple"];
    let ep = |addr: &serde_json::Value, port: &serde_json::Value| {
        crate::output::endpoint::endpoint(addr.as_str(), port)
    };
    let mut line = format!(
        "{:<12} {:<12} {:<20} {} → {} {} in {} {}{}",
        "",
        "nft_verdict",
        v["netns"]["name"].as_str().unwrap_or("?"),
        ep(&tuple["saddr"], &tuple["sport"]),
        ep(&tuple["daddr"], &tuple["dport"]),
        v["verdict"].as_str().unwrap_or("undecided"),
        v["table"].as_str().unwrap_or("-"),
        v["chain"].as_str().unwrap_or("-"),
        v["rule_handle"].as_u64().map(|h| format!(" rule handle {h}")).unwrap_or_else(|| {
            if v["by_policy"] == true { " (chain policy)".into() } else { String::new() }
        }),
    );
    if let Some(summary) = v["firewalld"]["summary"].as_str() {
        line.push_str(&format!("\n{:<12} {:<12} firewalld: {summary}", "", ""));
        for cmd in v["firewalld"]["fix"].as_array().into_iter().flatten().filter_map(|c| c.as_str())
        {
            line.push_str(&format!("\n{:<12} {:<12} fix: {cmd}", "", ""));
        }
    }
    line
}

fn print_flow_with(
    out: &mut impl std::io::Write,
    rec: &FlowRecord,
    names: &mut Names,
    json: bool,
    firewall: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(rec)?;
    if let Some(fw) = &firewall {
        v["firewall"] = serde_json::json!({
            "verdict": fw["verdict"], "table": fw["table"], "chain": fw["chain"], "rule_handle": fw["rule_handle"],
            "firewalld": fw["firewalld"],
        });
    }
    // The table keys namespaces by inode; the output names them like every other line.
    v["netns"] = serde_json::json!({"inode": rec.netns, "name": names.name(rec.netns)});
    render::line(out, json, &v, || {
        let evidence = rec
            .drop
            .as_ref()
            .map(|d| {
                format!(
                    " reason {}{}",
                    d.reason,
                    d.location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        format!(
            "{:<12} {:<12} {:<20} {} → {} {} ({} SYN{}){}",
            "",
            "flow",
            names.name(rec.netns),
            rec.client,
            rec.server,
            serde_json::to_value(rec.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            rec.syn_count,
            if rec.syn_count == 1 { "" } else { "s" },
            evidence
        )
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
    firewalld_bus: Option<String>,
    lost_seen: u64,
    /// (SYN, reply/drop) events suppressed by the rate bound, reported so far.
    suppressed_seen: (u64, u64),
}

impl State {
    fn handle(
        &mut self,
        msg: Msg,
        decoder: &Decoder,
        out: &mut impl std::io::Write,
        json: bool,
    ) -> anyhow::Result<()> {
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
                    // Feeds connection outcomes; not printed on its own.
                    return Ok(());
                }
                name_closed_listener(&mut self.model, &mut obs);
                render::observation(out, &obs, json)
            }
            Msg::Trace(netns, t) => {
                let mut v = verdict_json(netns, &t, &mut self.names);
                if let Some(a) = self.attribute(netns, &t) {
                    v["firewalld"] = serde_json::to_value(&a)?;
                }
                if let Some(tuple) = &t.tuple {
                    self.verdicts.insert(
                        (netns, tuple.saddr, tuple.sport, tuple.daddr, tuple.dport),
                        v.clone(),
                    );
                }
                render::line(out, json, &v, || verdict_line(&v))
            }
            Msg::Packet(ev) => {
                // The drop tracer sees every namespace; report only the watched ones.
                if !self.packet_inodes.contains(&(ev.netns as u64)) {
                    return Ok(());
                }
                let p = decoder.decode(&ev, &mut self.names);
                render::line(out, json, &p, || render::packet_line(&p))?;
                self.reorder.push(p.ts_ns, flow_observation(&p));
                Ok(())
            }
        }
    }

    /// Names the firewalld rule that decided `t`, reading the namespace's ruleset now: firewalld
    /// renumbers every handle on reload, so a cached ruleset could name the wrong rule.
    fn attribute(
        &self,
        netns: u64,
        t: &PacketTrace,
    ) -> Option<crate::firewall::attribute::Attribution> {
        let d = t.decision()?;
        let handle = d.rule_handle?;
        if d.table != "firewalld" {
            return None;
        }
        let path = self.ns_paths.get(&netns)?;
        let ns = crate::lab::NetNsFd::open(path).ok()?;
        let ruleset = crate::firewall::nftables::read_in(&ns).ok()?;
        // firewalld's own view names a rich rule by its exact text. Blocking here is fine: only
        // traced SYNs to watched ports (rate-bounded) get here. Without firewalld on the bus the
        // nftables attribution stands alone.
        let bus = self.firewalld_bus.clone();
        let config = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(crate::firewall::firewalld::read(bus.as_deref()))
        })
        .map_err(|e| {
            tracing::info!(
                "firewalld's D-Bus view unavailable, naming rules from nftables only: {e:#}"
            )
        })
        .ok();
        crate::firewall::attribute::attribute(
            &ruleset,
            d.family,
            &d.table,
            handle,
            t.tuple?.dport,
            config.as_ref(),
        )
    }

    /// Feeds observations that left the reorder window to the flow table, then expires
    /// unanswered attempts; prints every flow that settled. `now == u64::MAX`: flush all.
    fn settle_flows(
        &mut self,
        now: u64,
        out: &mut impl std::io::Write,
        json: bool,
    ) -> anyhow::Result<()> {
        let mut settled: Vec<FlowRecord> = Vec::new();
        for obs in self.reorder.ready(now) {
            settled.extend(self.flows.observe(obs));
        }
        let expire_at =
            if now == u64::MAX { boot_ns() } else { now.saturating_sub(reorder::WINDOW_NS) };
        settled.extend(self.flows.expire(expire_at));
        for rec in settled {
            let fw = self
                .verdicts
                .get(&(
                    rec.netns,
                    rec.client.ip(),
                    rec.client.port(),
                    rec.server.ip(),
                    rec.server.port(),
                ))
                .cloned();
            print_flow_with(out, &rec, &mut self.names, json, fw)?;
        }
        Ok(())
    }

    fn report_counters(
        &mut self,
        binds: &BindListen,
        drops: Option<&DropTap>,
        taps: &[NetnsTap],
        out: &mut impl std::io::Write,
        json: bool,
    ) -> anyhow::Result<()> {
        use reach_common::net::counter;
        let mut lost = binds.lost().unwrap_or(0);
        let (mut syn, mut other) = (0, 0);
        for c in drops
            .and_then(|d| d.counters().ok())
            .into_iter()
            .chain(taps.iter().filter_map(|t| t.counters().ok()))
        {
            lost += c[counter::LOST as usize];
            syn += c[counter::SYN_RATE_LIMITED as usize];
            other += c[counter::OTHER_RATE_LIMITED as usize];
        }
        if lost > self.lost_seen {
            let count = lost - self.lost_seen;
            self.lost_seen = lost;
            render::line(out, json, &serde_json::json!({"type": "lost", "count": count}), || {
                format!("!! {count} events lost: a ring buffer was full (the kernel kept running)")
            })?;
        }
        if (syn, other) != self.suppressed_seen {
            let (ds, dother) = (syn - self.suppressed_seen.0, other - self.suppressed_seen.1);
            self.suppressed_seen = (syn, other);
            let v = serde_json::json!({"type": "suppressed", "syn": ds, "other": dother, "why": "rate_limit"});
            render::line(out, json, &v, || {
                format!(
                    "!! {ds} SYN and {dother} reply/drop events not reported: more than --syn-rate \
                     per second per CPU (a SYN flood?)"
                )
            })?;
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
