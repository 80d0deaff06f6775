//! `reach watch`: stream what happens to sockets and to connection attempts, per network
//! namespace — binds, listens and listener closes; client SYNs arriving on the watched
//! interfaces, the server's SYN-ACKs and RSTs, kernel drops with their reasons, full listen
//! queues — until Ctrl-C, SIGTERM or `--duration`. Everything attached is detached on every exit
//! path (TC attachments inside their own namespace).
mod print;
pub mod render;

use std::{io::Write as _, process::ExitCode, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::observe::sleep_until;
pub use crate::observe::{NoSuchInterface, Session, SessionOptions, Watched};
use crate::{
    kernel::privileges,
    probes::bind_listen::{AttachMode, DEFAULT_RING_KIB, validate_ring_kib},
};
use print::Printer;

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
    /// every interface that has an address, plus lo (WSL2 NAT delivers Windows' localhost
    /// there), followed while running: an interface that appears or gets an address is watched
    /// from then on (a `tap` line), a deleted one let go.
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
    /// `inet reach_trace` in each watched namespace (announced; owned by reach, so the kernel removes it however reach ends) and reports,
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
    let specs = if args.netns.is_empty() { vec!["host".to_string()] } else { args.netns.clone() };
    Watched::resolve_all(&specs).map_err(Usage)
}

async fn watch(args: WatchArgs, namespaces: Vec<Watched>) -> anyhow::Result<ExitCode> {
    // Before anything is attached: a Ctrl-C during set-up must end in the orderly teardown
    // below, never in the default action that would leave filters and qdiscs behind.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    if !args.no_trace && !args.no_packets && args.port.is_empty() {
        eprintln!("reach: nftables tracing needs --port (the ports to trace); tracing is off");
    }
    let opts = SessionOptions {
        ifaces_of: Vec::new(),
        // Binds/listens: every namespace unless --netns narrows it; packets: the tapped
        // namespaces (the drop tracer sees the whole machine).
        bind_filter: (!args.netns.is_empty()).then(|| namespaces.iter().map(|n| n.inode).collect()),
        namespaces,
        ifaces: args.iface.clone(),
        ports: args.port.clone(),
        syn_rate: args.syn_rate,
        tc_attach: args.tc_attach.clone(),
        flow_timeout: Duration::from_secs_f64(args.flow_timeout),
        force_classic_drops: args.drop_attach.as_deref() == Some("tracepoint"),
        trace: !args.no_trace,
        firewalld_bus: args.firewalld_bus.clone(),
        packets: !args.no_packets,
        attach: args.attach,
        ring_kib: args.ring_buffer_kib,
        // The default interface set follows the namespace (a veth moved in, an address
        // added); interfaces the user named are exactly those.
        follow_links: args.iface.is_empty(),
        trace_ports: Vec::new(),
        no_trace: Default::default(),
        rule_evidence: false,
    };
    let mut session = match Session::attach(&opts, |m| eprintln!("reach: {m}")).await {
        Ok(s) => s,
        Err(e) if e.is::<NoSuchInterface>() => {
            eprintln!("reach watch: {e:#}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e),
    };
    let mut sink = Printer { out: std::io::stdout().lock(), json: args.json };
    session.snapshot(&mut sink).await?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    // Watched namespaces are looked for once a second: one deleted under reach is let go of
    // (reach's own classifiers would otherwise keep it alive) and said so.
    let mut follow = tokio::time::interval(Duration::from_secs(1));
    let packets = session.watches_packets();
    loop {
        tokio::select! {
            more = session.step(&mut sink) => if !more? { break },
            _ = follow.tick(), if packets => {
                if session.follow_namespaces(&mut sink)? == 0 {
                    eprintln!("reach: every watched namespace is gone; stopping");
                    break;
                }
            }
            _ = sleep_until(deadline) => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    session.finish(&mut sink).await?;
    sink.out.flush()?;
    Ok(ExitCode::SUCCESS)
}
