//! `reach why TARGET`: one answer for one port. Gathers the evidence — listeners in every
//! namespace, firewalld's configuration, and (unless `--timeout 0`) the client's real attempt
//! watched end to end: its SYN at the interface, the nftables rule that decided it, the kernel's
//! drop reason, the server's answer, listen-queue overflows and failed binds on the port — then
//! hands it to the pure decision engine ([`crate::diagnose`]) and prints the verdict, the SYN's
//! path with the failing hop, and the fix.
mod collect;
mod follow;
mod report;
mod target;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::Duration,
};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    diagnose::{self, Evidence, NetfilterRule, OverflowEvidence, WslInfo},
    firewall::{
        firewalld::{self, FirewalldConfig},
        firewalld_presence, nftables, predict,
    },
    kernel::{privileges, release, wsl},
    lab::NetNsFd,
    model::listener_view::ListenerView,
    netns::{
        addresses, enter, interfaces,
        port_holders::{self, PortHolder},
        sk_lookup, snapshot,
    },
    observe::{NoSuchInterface, Session, SessionOptions, Watched, sleep_until},
    probes::{bind_listen::DEFAULT_RING_KIB, sock_event::NetnsRef},
    resolve,
};
use collect::Collector;
pub use target::Target;

#[derive(Debug, clap::Args)]
pub struct WhyArgs {
    /// What the client connects to: `PORT`, `ADDR:PORT`, `[IPV6]:PORT` or `NAME:PORT` (e.g.
    /// 8080, 172.20.1.5:8080, [::1]:8080, localhost:8080). With an address, only attempts to
    /// that address count; a NAME is resolved as the client's libc does (getaddrinfo with
    /// AI_ADDRCONFIG, inside --netns) and attempts to every address it resolves to count.
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Resolve NAME to IPv4 addresses only (like curl -4).
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Resolve NAME to IPv6 addresses only (like curl -6).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// The network namespace the client's SYN arrives in: `host` (default), an `ip netns` name,
    /// a PID or a path (/proc/PID/ns/net, /run/netns/NAME).
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub netns: Option<String>,
    /// Interfaces (in that namespace) the client's SYN can arrive on. Repeatable. Default: every
    /// interface with an address, plus lo (WSL2 NAT relays Windows' localhost to lo).
    #[arg(long, value_name = "IFACE")]
    pub iface: Vec<String>,
    /// How long to wait for the client's connection attempt, in seconds. 0: do not watch;
    /// predict from the listeners and firewalld's configuration alone.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Print one JSON object (contract in the README) instead of the path picture.
    #[arg(long)]
    pub json: bool,
    /// D-Bus address of the bus where the namespace's firewalld is (default: the system bus).
    #[arg(long, value_name = "ADDRESS")]
    pub firewalld_bus: Option<String>,
}

/// An attempt that gets no answer for this long is `unanswered` (a silent drop): Linux
/// retransmits a SYN after 1 s, so 2 s covers the first retransmission too.
const UNANSWERED_AFTER: Duration = Duration::from_secs(2);
/// How long a netfilter-dropped attempt waits for the nftables trace naming the rule.
const TRACE_GRACE: Duration = Duration::from_millis(1500);

fn usage(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("reach why: {msg}");
    Ok(ExitCode::from(2))
}

/// Exit codes (README): 0 reachable; 10-22 one per failure class (see `reach why --help`);
/// 1 runtime error; 2 bad usage; 3 missing privileges.
pub async fn run(args: WhyArgs) -> anyhow::Result<ExitCode> {
    let parsed: target::Parsed = match args.target.parse() {
        Ok(t) => t,
        Err(msg) => return usage(format!("bad TARGET {msg}")),
    };
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => resolve::AskFamily::Ipv4,
        (_, true) => resolve::AskFamily::Ipv6,
        _ => resolve::AskFamily::Any,
    };
    if let target::Parsed::Addr(t) = &parsed
        && let Some(a) = t.addr
        && !family.admits(a)
    {
        return usage(format!("TARGET {t} is not an address of the family -4/-6 asks for"));
    }
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        return usage(format!(
            "--timeout must be a number of seconds ≥ 0 (0: predict without watching), got {}",
            args.timeout
        ));
    }
    if let Some(code) = privileges::refuse_unless_privileged("why") {
        return Ok(code);
    }
    let spec = args.netns.clone().unwrap_or_else(|| "host".into());
    let ns = match Watched::resolve_all(&[spec]) {
        Ok(mut v) => v.remove(0),
        Err(msg) => return usage(msg),
    };
    // A name is resolved before anything is attached: an unresolvable one ends here.
    let mut resolution = None;
    let target = match parsed {
        target::Parsed::Addr(t) => t,
        target::Parsed::Name { name, port } => {
            let files = resolve::Files::read();
            match resolve::resolve_in(&ns.path, &ns.name, &name, family, &files) {
                Ok(r) => {
                    let t = Target { addr: Some(r.first()), port };
                    resolution = Some(r);
                    t
                }
                Err(msg) => return usage(msg),
            }
        }
    };
    let watch_addrs = resolution.as_ref().map(resolve::Resolution::addrs);
    let ifaces = match interfaces(&ns, &args.iface) {
        Ok(i) => i,
        Err(msg) => return usage(msg),
    };
    let ns_addrs = enter::in_netns(&ns.path, addresses::iface_addrs)
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut config = firewalld_config(&ns, args.firewalld_bus.as_deref()).await;

    let mut evidence = Evidence {
        port: target.port,
        addr: target.addr,
        netns: Some(ns.netns_ref()),
        watched_ifaces: ifaces.clone(),
        wsl: wsl_info(&wsl::Inputs::gather(&release::current().release), &ns_addrs),
        ..Default::default()
    };
    let mut attempt = None;
    // The SYN's traced walk (a NAT rule on it names where the attempt was sent).
    let mut syn_walk = None;
    let mut conntrack_events = None;
    // What the session collected, the attempt where NAT sent it included.
    let mut collected = None;
    let mut local_client = false;
    if args.timeout > 0.0 {
        // Where NAT can send the attempt: watched from the start, beside the arrival namespace.
        let followed = follow::plan(&ns, target.port).await;
        let mut namespaces = vec![ns.clone()];
        let mut ports = vec![target.port];
        let mut ifaces_of: Vec<(u64, Vec<String>)> = Vec::new();
        for f in &followed {
            let how = match &f.relay {
                Some(r) => format!(
                    "{} (pid {}) on port {} in {} relays to",
                    r.comm, r.pid, target.port, ns.name
                ),
                None => format!("NAT in {} can send port {} to", ns.name, target.port),
            };
            eprintln!(
                "reach: {how} {} (netns {}, interface {}): watching there too",
                f.to, f.owner.name, f.iface
            );
            match ifaces_of.iter_mut().find(|(inode, _)| *inode == f.owner.inode) {
                Some((_, list)) if !list.contains(&f.iface) => list.push(f.iface.clone()),
                Some(_) => {}
                None => {
                    namespaces.push(f.owner.clone());
                    ifaces_of.push((f.owner.inode, vec![f.iface.clone()]));
                }
            }
            if !ports.contains(&f.to.port()) {
                ports.push(f.to.port());
            }
        }
        let opts = SessionOptions {
            namespaces,
            ifaces_of,
            bind_filter: None,
            ifaces: ifaces.clone(),
            ports,
            syn_rate: 1000,
            tc_attach: None,
            flow_timeout: UNANSWERED_AFTER,
            force_classic_drops: false,
            trace: true,
            firewalld_bus: args.firewalld_bus.clone(),
            packets: true,
            attach: None,
            ring_kib: DEFAULT_RING_KIB,
            // Interfaces that come while waiting are watched too, unless the user named them.
            follow_links: args.iface.is_empty(),
            trace_ports: Vec::new(),
            no_trace: Default::default(),
            rule_evidence: false,
        };
        let addrs = watch_addrs.as_deref();
        // conntrack's new connections while watching: where a NAT sends the attempt (a
        // refused one's entry is deleted at once, so it cannot be asked for afterwards).
        let port = target.port;
        // Without conntrack in the kernel there is no NAT to follow (and nothing to load).
        if crate::netns::conntrack::available() {
            conntrack_events =
                enter::in_netns(&ns.path, move || crate::netns::conntrack::Events::subscribe(port))
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .inspect_err(|e| tracing::info!("conntrack events in {}: {e}", ns.name))
                    .ok();
        }
        let watch = watch_attempt(&opts, target, addrs, &ns, &ifaces, &followed, args.timeout);
        let c = match watch.await {
            Ok(c) => c,
            Err(e) if e.is::<NoSuchInterface>() => return usage(format!("{e:#}")),
            Err(e) => return Err(e),
        };
        observed(&mut evidence, &ns, &c);
        syn_walk = c.verdict().cloned();
        attempt = evidence.flow.clone();
        // A local client's SYN leaves through the output hook, where NAT sends it on: no
        // interface of this namespace sees it come in, the namespace it was sent to does, and
        // conntrack's entry says what the client dialed.
        if evidence.flow.is_none()
            && let Some(flow) =
                conntrack_events.as_ref().and_then(|e| local_attempt(&c, e, ns.inode))
        {
            evidence.syn_seen = true;
            evidence.iface = None;
            syn_walk = c.walk_of(flow.client, flow.server).cloned();
            attempt = Some(flow.clone());
            evidence.flow = Some(flow);
            local_client = true;
        }
        collected = Some(c);
    } else {
        eprintln!("reach: --timeout 0: predicting from listeners and firewalld, nothing attached");
    }
    if evidence.iface.is_none() && evidence.flow.is_none() {
        // Predicting: the client comes in where its address leads.
        evidence.iface = Some(arrival_iface(&ifaces, target));
    }
    evidence.listeners = listeners_on(target.port).await?;
    evidence.interfaces = interfaces::of_netns(&ns.path, &ns.name);
    evidence.sk_lookup = Some(sk_lookup::sk_lookup_programs_at(&ns.path).into());
    evidence.port_holders = holders_on(&ns, target.port).await;
    if !evidence.watched {
        evidence.overflow = full_queue_now(&evidence.listeners, &ns);
    }
    // firewalld changed while reach waited (reloaded, restarted, stopped): the prediction is
    // made from its configuration now, as the traced walk was, never from the one before.
    if collected.as_ref().is_some_and(|c| c.changes.iter().any(|ch| ch.json["type"] == "firewalld"))
    {
        config = firewalld_config(&ns, args.firewalld_bus.as_deref()).await;
    }
    if let Some(cfg) = &config {
        evidence.prediction = Some(prediction(cfg, &evidence, &ifaces, target));
    }

    let mut d = diagnose::diagnose(&evidence);
    // A destination NAT on the way: the namespace the attempt was sent to answers it.
    let mut nat = None;
    let dropped_here = evidence.flow.as_ref().is_some_and(|f| f.drop.is_some());
    if let Some(flow) = &evidence.flow
        && let Some((hop, inner)) = follow::follow(
            &ns,
            flow,
            syn_walk.as_ref(),
            conntrack_events.as_ref(),
            collected.as_ref(),
            local_client,
        )
        .await
    {
        d = diagnose::nat::follow(d, &hop, inner.as_ref().map(diagnose::diagnose), dropped_here);
        nat = Some(hop);
    } else if let Some(flow) = &evidence.flow
        && let Some((hop, inner)) =
            follow::relayed(&ns, flow, &evidence.listeners, collected.as_ref()).await
    {
        // A relay took it: its own connection decides.
        d = diagnose::nat::follow(d, &hop, inner.as_ref().map(diagnose::diagnose), dropped_here);
        nat = Some(hop);
    }
    if let Some(r) = resolution.as_mut() {
        explain_resolution(r, &mut d, &evidence, ns.inode);
    }
    let code = d.verdict.exit_code();
    let r = report::Report {
        target,
        resolved: resolution.as_ref(),
        netns: ns.netns_ref(),
        diagnosis: &d,
        attempt: attempt.as_ref(),
        evidence: &evidence,
        nat: nat.as_ref(),
        watched_seconds: (args.timeout > 0.0).then_some(args.timeout),
        changes: collected.as_ref().map_or(&[], |c| &c.changes[..]),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r.json())?);
    } else {
        print!("{}", r.human(report::colour_stdout()));
    }
    Ok(ExitCode::from(code))
}

/// What the session collected in namespace `ns`, as evidence: the attempt and its interface,
/// the nftables walks of its SYN and of a dropped reply (with the rule looked up when it is no
/// firewalld concept), failed binds, listen-queue overflows.
fn observed(evidence: &mut Evidence, ns: &Watched, c: &Collector) {
    evidence.watched = true;
    evidence.syn_seen = c.syns > 0 || c.flow.is_some();
    evidence.netns_gone = c.netns_gone;
    evidence.unseen_syns = c.unseen_syns;
    for iface in &c.tapped_later {
        if !evidence.watched_ifaces.contains(iface) {
            evidence.watched_ifaces.push(iface.clone());
        }
    }
    evidence.failed_binds = c.failed_binds.clone();
    evidence.overflow = c.overflow.clone();
    if let Some(v) = c.verdict() {
        // An accept is kept too: what let the SYN through is evidence of a reachable path.
        evidence.attribution = v.attribution.clone();
        // A rule in firewalld's table that is none of its concepts is still a rule with a
        // table, chain and handle: looked up as any other table's, for the exact fix.
        let decided = evidence.attribution.as_ref().filter(|a| a.action != "accept");
        let unmapped =
            decided.is_some_and(|a| a.concept == crate::firewall::firewalld_chains::Concept::Other);
        if (decided.is_none() || unmapped) && v.verdict.as_deref() != Some("accept") {
            let client = c.flow.as_ref().map(|(f, _)| f.client.ip());
            evidence.netfilter = netfilter_rule(ns, v, client);
        }
    }
    // The walk of the server's reply to the attempt, when a rule dropped it on its way out.
    if let Some(v) = c.reply_verdict().filter(|v| v.verdict.as_deref() == Some("drop")) {
        let client = c.flow.as_ref().map(|(f, _)| f.client.ip());
        evidence.reply_netfilter = netfilter_rule(ns, v, client);
    }
    if let Some((flow, iface)) = &c.flow {
        evidence.iface = iface.clone();
        evidence.flow = Some(flow.clone());
    } else {
        evidence.iface = c.first_syn_iface.clone();
    }
}

/// The attempt of a local client of namespace `netns` as the namespace NAT sent it to saw it:
/// the first flow there that conntrack's events name a translated connection for, with what
/// the client dialed as its server (and no interface: it left through the output hook).
fn local_attempt(
    c: &Collector,
    events: &crate::netns::conntrack::Events,
    netns: u64,
) -> Option<crate::model::flows::FlowRecord> {
    c.inner.iter().find_map(|inner| {
        let (f, _) = inner.flow.as_ref()?;
        let entry = events.sent_to(f.client, f.server)?;
        let flow = crate::model::flows::FlowRecord {
            netns,
            client: entry.orig_src,
            server: entry.orig_dst,
            ifindex: None,
            drop: None,
            reply_drop: None,
            ..f.clone()
        };
        Some(flow)
    })
}

/// Judges each resolved address against the target namespace's listeners and adds the answer,
/// in order with its judgements, to the diagnosis's evidence (and a fix naming the address a
/// listener takes when the attempt went to one none does).
fn explain_resolution(
    r: &mut resolve::Resolution,
    d: &mut diagnose::Diagnosis,
    e: &Evidence,
    netns: u64,
) {
    let sockets: Vec<diagnose::lookup::Socket> = e
        .listeners
        .iter()
        .filter(|l| l.netns.inode == netns)
        .filter_map(diagnose::lookup::Socket::from_view)
        .collect();
    let sk = e.sk_lookup.clone().unwrap_or(diagnose::SkLookupState::Attached(Vec::new()));
    r.judge(e.port, &sockets, &e.interfaces, &sk);
    d.evidence.extend(r.evidence(e.port));
    let attempted = e.flow.as_ref().map(|f| f.server.ip()).or(e.addr);
    if d.verdict != diagnose::Verdict::Reachable
        && let Some(f) = r.fix(attempted, e.port)
    {
        d.fix.push(f);
    }
}

/// The interfaces to watch: the user's (each must exist in the namespace) or the defaults.
fn interfaces(ns: &Watched, asked: &[String]) -> Result<Vec<String>, String> {
    let names = asked.to_vec();
    let (missing, defaults) = enter::in_netns(&ns.path, move || {
        let missing: Vec<String> =
            names.iter().filter(|i| !addresses::iface_exists(i)).cloned().collect();
        (missing, crate::probes::net::default_ifaces())
    })
    .map_err(|e| format!("cannot enter netns {}: {e}", ns.name))?;
    if let Some(m) = missing.first() {
        let known = enter::in_netns(&ns.path, addresses::iface_names).unwrap_or_default();
        return Err(format!(
            "interface {m} does not exist in netns {} (it has: {}); pick one with --iface",
            ns.name,
            known.join(", ")
        ));
    }
    if !asked.is_empty() {
        return Ok(asked.to_vec());
    }
    defaults.map_err(|e| format!("listing the interfaces of netns {}: {e}", ns.name))
}

/// firewalld's configuration, when the firewalld on that bus is the one of the target
/// namespace (the system bus is shared by every namespace; its firewalld guards only its own).
async fn firewalld_config(ns: &Watched, bus: Option<&str>) -> Option<FirewalldConfig> {
    let owner = firewalld_presence::bus_owner(bus).await.ok()??;
    if owner.netns_inode != Some(ns.inode) {
        tracing::info!("firewalld on the bus runs in another namespace than {}", ns.name);
        return None;
    }
    firewalld::read(bus)
        .await
        .map_err(|e| eprintln!("reach: firewalld runs but its configuration is unreadable: {e:#}"))
        .ok()
}

/// WSL2 mode and the VM's eth0 address (what a Windows portproxy must forward to), from the
/// detection inputs and the namespace's addresses: pure, so tests fake both.
fn wsl_info(inputs: &wsl::Inputs, addrs: &[(String, IpAddr)]) -> Option<WslInfo> {
    let w = wsl::detect(inputs)?;
    let eth0_addr = addrs.iter().find(|(n, a)| n == "eth0" && a.is_ipv4()).map(|(_, a)| *a);
    Some(WslInfo { wsl2: w, eth0_addr })
}

/// Watches for the client's attempt, announcing what is attached; returns what was seen.
async fn watch_attempt(
    opts: &SessionOptions,
    target: Target,
    addrs: Option<&[IpAddr]>,
    ns: &Watched,
    ifaces: &[String],
    followed: &[follow::Followed],
    timeout: f64,
) -> anyhow::Result<Collector> {
    // Before anything is attached: Ctrl-C must end in the orderly detach, never in the
    // default action that would leave TC filters behind.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut session = Session::attach(opts, |m| eprintln!("reach: {m}")).await?;
    let mut c = Collector::new(target, ns.inode);
    for f in followed {
        c.follow(f.owner.inode, f.to, f.relay.is_some());
    }
    if let Some(a) = addrs {
        c.watch_addrs(a);
    }
    session.snapshot(&mut c).await?;
    let to = match (target.addr, addrs) {
        (_, Some(a)) if a.len() > 1 => {
            let a: Vec<String> = a
                .iter()
                .map(|a| Target { addr: Some(*a), port: target.port }.to_string())
                .collect();
            a.join(" or ")
        }
        (Some(_), _) => target.to_string(),
        (None, _) => format!("port {}", target.port),
    };
    eprintln!(
        "reach: waiting for a SYN to {to} in netns {} on {} — try connecting now (up to {timeout} s)",
        ns.name,
        ifaces.join(", ")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
    let mut grace: Option<tokio::time::Instant> = None;
    // A namespace deleted while reach waits is let go of; once none is left, nothing more
    // can arrive.
    let mut follow = tokio::time::interval(Duration::from_secs(1));
    let mut said = 0;
    loop {
        tokio::select! {
            more = session.step(&mut c) => if !more? { break },
            _ = follow.tick() => {
                session.follow_namespaces(&mut c)?;
                if !session.namespaces().any(|n| n.inode == ns.inode) {
                    eprintln!("reach: netns {} is gone (deleted, or its last process exited); diagnosing what was seen", ns.name);
                    c.netns_gone = true;
                    break;
                }
            }
            _ = sleep_until(Some(deadline)) => {
                eprintln!("reach: {timeout} s passed");
                break;
            }
            _ = sleep_until(grace) => break,
            _ = sigint.recv() => { eprintln!("reach: interrupted; diagnosing what was seen"); break }
            _ = sigterm.recv() => break,
        }
        said = say_changes(&c, ns, said);
        if c.settled() {
            if !c.awaiting_trace() && !c.awaiting_relay() {
                break;
            }
            grace.get_or_insert_with(|| tokio::time::Instant::now() + TRACE_GRACE);
        }
    }
    // The counters of the last half second (a full accept queue moves them, nothing else).
    session.poll_counters(&mut c)?;
    session.finish(&mut c).await?;
    say_changes(&c, ns, said);
    eprintln!("reach: detached");
    Ok(c)
}

/// Says on stderr, once each, the changes collected since `said` (the target namespace going
/// is said by the wait itself); returns how many are said now.
fn say_changes(c: &Collector, ns: &Watched, said: usize) -> usize {
    for ch in &c.changes[said..] {
        let own_gone = ch.json["type"] == "netns" && ch.json["netns"]["inode"] == ns.inode;
        if !own_gone {
            eprintln!("reach: {}", ch.line.trim_start_matches("!! "));
        }
    }
    c.changes.len()
}

/// Every listener on `port`, in every namespace, as it stands now.
async fn listeners_on(port: u16) -> anyhow::Result<Vec<ListenerView>> {
    let snap = tokio::task::spawn_blocking(snapshot::listeners_snapshot).await?;
    Ok(snap
        .iter()
        .flat_map(|ns| {
            let r = NetnsRef { inode: ns.inode, name: ns.name.clone() };
            ns.listeners
                .iter()
                .filter(|l| l.socket.port == port)
                .map(move |l| ListenerView::new(r.clone(), l))
        })
        .collect())
}

/// The sockets holding `port` in the target namespace without listening: what a failed bind
/// collided with. Unreadable: no holders, said on stderr (the diagnosis stands without them).
async fn holders_on(ns: &Watched, port: u16) -> Vec<PortHolder> {
    let path = ns.path.clone();
    match tokio::task::spawn_blocking(move || port_holders::port_holders_in(&path, port)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            eprintln!("reach: cannot list the sockets on port {port} in netns {}: {e}", ns.name);
            Vec::new()
        }
        Err(e) => {
            eprintln!("reach: listing the sockets on port {port} failed: {e}");
            Vec::new()
        }
    }
}

/// Without watching, a listener whose accept queue is full right now predicts an overflow (the
/// counters cannot be compared over a window that was not watched: reported as 0).
fn full_queue_now(listeners: &[ListenerView], ns: &Watched) -> Option<OverflowEvidence> {
    let full: Vec<ListenerView> = listeners
        .iter()
        .filter(|l| l.netns.inode == ns.inode)
        .filter(|l| matches!((l.accept_queue, l.backlog), (Some(q), Some(b)) if q >= b))
        .cloned()
        .collect();
    (!full.is_empty()).then(|| OverflowEvidence {
        netns: ns.netns_ref(),
        listen_overflows: 0,
        listen_drops: 0,
        syn_queue_full_drops: 0,
        full_listeners: full,
    })
}

/// What firewalld does (or would do) with the SYN: from the real attempt's interface and client
/// when there was one, else from the first non-loopback interface with an unknown client (a
/// source-bound zone cannot be chosen then).
fn prediction(
    cfg: &FirewalldConfig,
    e: &Evidence,
    ifaces: &[String],
    target: Target,
) -> predict::Prediction {
    let iface = e.iface.clone().unwrap_or_else(|| arrival_iface(ifaces, target));
    let source =
        e.flow.as_ref().map(|f| f.client.ip().to_canonical()).unwrap_or(match target.addr {
            Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
    predict::predict(cfg, &iface, source, target.port)
}

/// Where a client's SYN would arrive: lo for a loopback target, else the first other watched
/// interface (a question about reachability is usually about a client from outside).
fn arrival_iface(ifaces: &[String], target: Target) -> String {
    let outside = ifaces.iter().find(|i| *i != "lo");
    match outside {
        Some(i) if !target.addr.is_some_and(|a| a.is_loopback()) => i.clone(),
        _ => "lo".into(),
    }
}

/// The netfilter rule that decided the SYN (outside firewalld's table, or in it but none of
/// firewalld's concepts), looked up in the namespace's ruleset now;
/// `client`: the attempt's client address, when one was seen (the fix admits just it).
fn netfilter_rule(
    ns: &Watched,
    v: &crate::observe::session::VerdictRecord,
    client: Option<IpAddr>,
) -> Option<NetfilterRule> {
    let fd = NetNsFd::open(&ns.path).ok();
    let rs = fd.as_ref().and_then(|fd| nftables::read_in(fd).ok());
    crate::observe::netfilter_rule::of_walk(v, client, rs.as_ref(), fd.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{diagnose::Verdict, model::listener_view::ListenerView};

    fn inputs(release: &str, ifaces: &[&str]) -> wsl::Inputs {
        wsl::Inputs {
            release: release.into(),
            interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
            wslinfo_mode: None,
        }
    }

    fn loopback_listener() -> ListenerView {
        ListenerView {
            kind: "listener",
            netns: NetnsRef { inode: 1, name: "host".into() },
            pid: Some(42),
            pids: vec![42],
            comm: Some("server".into()),
            family: "ipv4",
            proto: "tcp",
            addr: "127.0.0.1".into(),
            port: 8080,
            backlog: Some(128),
            accept_queue: Some(0),
            v6only: None,
            loopback_only: true,
            bound_dev_if: None,
            cookie: 7,
        }
    }

    /// The WSL2 story end to end from faked detection inputs: a Go server on 127.0.0.1:8080 in
    /// a NAT-mode VM, a client from the LAN (nothing arrives on eth0 or lo).
    #[test]
    fn wsl2_nat_detected_from_faked_inputs_explains_relay_and_portproxy() {
        let addrs = vec![
            ("lo".to_string(), "127.0.0.1".parse().unwrap()),
            ("eth0".to_string(), "172.28.1.5".parse().unwrap()),
        ];
        let rel = "5.15.167.4-microsoft-standard-WSL2";
        let info = wsl_info(&inputs(rel, &["lo", "eth0"]), &addrs).expect("WSL2 detected");
        let e = Evidence {
            port: 8080,
            netns: Some(NetnsRef { inode: 1, name: "host".into() }),
            listeners: vec![loopback_listener()],
            wsl: Some(info),
            ..Default::default()
        };
        let d = diagnose::diagnose(&e);
        assert_eq!(d.verdict, Verdict::LoopbackOnlyBind, "{d:#?}");
        let text = [d.evidence.join("\n"), d.fix.join("\n")].join("\n");
        assert!(text.contains("WSL2 NAT mode"), "{text}");
        assert!(text.contains("arrives on lo"), "{text}");
        assert!(text.contains("(172.28.1.5)"), "{text}");
        assert!(text.contains("netsh interface portproxy add v4tov4 listenport=8080"), "{text}");
        assert!(text.contains("connectaddress=172.28.1.5"), "{text}");
        assert!(text.contains("net.Listen(\"tcp\", \":8080\")"), "{text}");
    }

    #[test]
    fn wsl2_mirrored_and_plain_linux_from_faked_inputs() {
        let rel = "6.6.36.3-microsoft-standard-WSL2";
        let info = wsl_info(&inputs(rel, &["lo", "eth0", "loopback0"]), &[]).expect("WSL2");
        let e = Evidence {
            port: 3000,
            watched: true,
            watched_ifaces: vec!["lo".into(), "eth0".into()],
            wsl: Some(info),
            ..Default::default()
        };
        let d = diagnose::diagnose(&e);
        assert_eq!(d.verdict, Verdict::NoSynSeen);
        let text = [d.evidence.join("\n"), d.fix.join("\n")].join("\n");
        assert!(text.contains("mirrored") && text.contains("hostAddressLoopback=true"), "{text}");
        assert!(wsl_info(&inputs("6.18.44-fc-v657", &["lo", "eth0"]), &[]).is_none());
    }

    #[test]
    fn verdict_names_match_the_json_and_exit_codes_are_distinct() {
        let mut codes = std::collections::BTreeSet::new();
        for v in Verdict::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name(), "{v:?}");
            assert!(codes.insert(v.exit_code()), "{v:?} shares its exit code");
            // 1-3 are the usual error codes (runtime, usage, privileges).
            assert!(v.exit_code() == 0 || v.exit_code() >= 10, "{v:?}");
        }
        assert_eq!(Verdict::Reachable.exit_code(), 0);
    }

    /// `reach why --help` lists every verdict with its exit code (scripts branch on them).
    #[test]
    fn help_lists_every_verdict_with_its_exit_code() {
        use clap::CommandFactory as _;
        let mut cli = crate::cli::Cli::command();
        let why = cli.find_subcommand_mut("why").expect("why subcommand");
        let help = why.render_long_help().to_string();
        for v in Verdict::ALL {
            let entry = format!("{} {}", v.exit_code(), v.name());
            assert!(help.contains(&entry), "--help lacks {entry:?}:\n{help}");
        }
    }

    #[test]
    fn predicted_arrival_interface() {
        let ifs = vec!["lo".to_string(), "eth0".to_string()];
        assert_eq!(arrival_iface(&ifs, "8080".parse().unwrap()), "eth0");
        assert_eq!(arrival_iface(&ifs, "127.0.0.1:8080".parse().unwrap()), "lo");
        assert_eq!(arrival_iface(&["lo".to_string()], "8080".parse().unwrap()), "lo");
    }
}
