//! `reach watch`: stream bind/listen events (and the listeners that existed before) until
//! Ctrl-C, SIGTERM or `--duration`; everything attached is detached on every exit path.
use std::{collections::BTreeSet, io::Write as _, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    kernel::{capabilities, privileges},
    model::{
        listener_view::ListenerView,
        listeners::{Change, Listener, Listeners},
    },
    netns::{names::Names, select, snapshot},
    output::time::Clock,
    probes::{
        bind_listen::{AttachMode, BindListen, DEFAULT_RING_KIB, validate_ring_kib},
        plan,
        sock_event::{self, NetnsRef, SockObservation},
    },
};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Print one JSON object per line (contract in the README) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this network namespace: an `ip netns` name, `host`, a PID or a path
    /// (/proc/PID/ns/net, /run/netns/NAME). Repeat for several.
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub netns: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Force an attach mode instead of the one `reach doctor` would choose.
    #[arg(long, value_enum, value_name = "MODE")]
    pub attach: Option<AttachMode>,
    /// Size of the kernel→user ring buffer in KiB (power of two). Larger absorbs bigger bind
    /// bursts; events that do not fit are counted and reported as `lost`.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_KIB)]
    pub ring_buffer_kib: u32,
}

/// Exit codes of watch (README): 0 stopped normally; 1 attach/runtime error; 2 bad usage;
/// 3 missing privileges.
pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let privs = privileges::current();
    if !privs.missing.is_empty() {
        eprintln!("reach watch: missing {}: {}", privs.missing.join(", "), privs.how_to_fix());
        return Ok(ExitCode::from(3));
    }
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        eprintln!("reach watch: --duration must be a positive number of seconds, got {d}");
        return Ok(ExitCode::from(2));
    }
    if let Err(e) = validate_ring_kib(args.ring_buffer_kib) {
        eprintln!("reach watch: {e}");
        return Ok(ExitCode::from(2));
    }
    let mut filter = BTreeSet::new();
    for spec in &args.netns {
        match select::resolve(spec) {
            Ok(inode) => {
                filter.insert(inode);
            }
            Err(e) => {
                eprintln!("reach watch: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }

    let mode = match args.attach {
        Some(m) => m,
        None => choose_mode().await?,
    };
    let ring_kib = args.ring_buffer_kib;
    let mut probes = tokio::task::spawn_blocking(move || BindListen::attach(mode, ring_kib))
        .await?
        .with_context(|| {
            format!("attaching the bind/listen probes in {mode} mode failed (see `reach doctor`)")
        })?;
    eprintln!("reach: watching binds and listens ({mode} mode: {})", probes.attachments.join(", "));

    // The snapshot is taken after attaching, so no listener can fall between the two.
    let snap = tokio::task::spawn_blocking(snapshot::listeners_snapshot).await?;
    let mut model = Listeners::new();
    {
        let mut out = std::io::stdout().lock();
        for ns in snap.iter().filter(|ns| filter.is_empty() || filter.contains(&ns.inode)) {
            let netns = NetnsRef { inode: ns.inode, name: ns.name.clone() };
            for l in &ns.listeners {
                let view = ListenerView::new(netns.clone(), l);
                if args.json {
                    writeln!(out, "{}", serde_json::to_string(&view)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<12} {:<12} {:<20}{}",
                        "(before)",
                        "listener",
                        ns.name,
                        view.human()
                    )?;
                }
                model.insert_snapshot(l.socket.cookie, Listener::from_view(&view));
            }
        }
        out.flush()?;
    }
    let ring = probes.take_events()?;
    // SAFETY: the RingBuf owns its map fd for its whole life inside the AsyncFd and always
    // reports that same fd.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let clock = Clock::new();
    let mut names = Names::new();
    let mut out = std::io::stdout().lock();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut lost_seen = 0u64;
    let mut lost_tick = tokio::time::interval(Duration::from_millis(500));

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                while let Some(item) = guard.get_inner_mut().next() {
                    let Some(ev) = sock_event::parse(&item) else { continue };
                    drop(item);
                    if !filter.is_empty() && !filter.contains(&(ev.netns as u64)) {
                        continue;
                    }
                    let mut obs = sock_event::decode(&ev, &clock, &mut names);
                    name_closed_listener(&mut model, &mut obs);
                    print_observation(&mut out, &obs, args.json)?;
                }
                guard.clear_ready();
            }
            _ = lost_tick.tick() => {
                report_lost(&probes, &mut lost_seen, &mut out, args.json)?;
            }
            _ = sleep_until(deadline) => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Events already in the ring buffer when the stop came are still reported.
    let mut pending = Vec::new();
    while let Some(item) = ring.get_mut().next() {
        if let Some(ev) = sock_event::parse(&item) {
            pending.push(ev);
        }
    }
    for ev in pending {
        if filter.is_empty() || filter.contains(&(ev.netns as u64)) {
            let mut obs = sock_event::decode(&ev, &clock, &mut names);
            name_closed_listener(&mut model, &mut obs);
            print_observation(&mut out, &obs, args.json)?;
        }
    }
    report_lost(&probes, &mut lost_seen, &mut out, args.json)?;
    drop(ring);
    drop(probes); // detaches every probe
    Ok(ExitCode::SUCCESS)
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

/// The bind-plan mode of `reach doctor`'s probing.
async fn choose_mode() -> anyhow::Result<AttachMode> {
    let (caps, facts) = tokio::task::spawn_blocking(capabilities::probe).await?;
    let chosen = plan::choose(&caps, &facts);
    match AttachMode::from_plan(&chosen.bind) {
        Some(m) => Ok(m),
        None => bail!(
            "no mechanism can observe binds on this kernel; run `reach doctor` for the reasons"
        ),
    }
}

fn report_lost(
    probes: &BindListen,
    seen: &mut u64,
    out: &mut impl std::io::Write,
    json: bool,
) -> anyhow::Result<()> {
    let lost = probes.lost().unwrap_or(0);
    if lost > *seen {
        let count = lost - *seen;
        *seen = lost;
        if json {
            writeln!(out, "{}", serde_json::json!({"type": "lost", "count": count}))?;
        } else {
            writeln!(
                out,
                "!! {count} events lost: the ring buffer was full (the kernel kept running)"
            )?;
        }
        out.flush()?;
    }
    Ok(())
}

pub fn print_observation(
    out: &mut impl std::io::Write,
    o: &SockObservation,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(o)?)?;
    } else {
        writeln!(out, "{}", human_line(o))?;
    }
    out.flush()?;
    Ok(())
}

pub fn human_line(o: &SockObservation) -> String {
    let endpoint = |a: &Option<String>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        _ => "?".to_string(),
    };
    let mut line = format!(
        "{} {:<12} {:<20} pid {:<7} {:<15} {:<4} {}",
        &o.time[11..23],
        o.kind,
        o.netns.name,
        o.pid,
        o.comm,
        o.proto.unwrap_or("?"),
        endpoint(&o.addr, o.port),
    );
    if o.bound_port.is_some() && (o.bound_port != o.port || o.bound_addr != o.addr) {
        line.push_str(&format!(" → {}", endpoint(&o.bound_addr, o.bound_port)));
    }
    line.push_str(&format!(" {}", o.result));
    if let Some(b) = o.backlog {
        line.push_str(&format!(" backlog {b}"));
    }
    let opts: Vec<&str> = [
        (o.options.reuseaddr, "SO_REUSEADDR"),
        (o.options.reuseport, "SO_REUSEPORT"),
        (o.options.freebind, "IP_FREEBIND"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if !opts.is_empty() {
        line.push_str(&format!(" [{}]", opts.join(" ")));
    }
    match (&o.options.bound_dev, o.options.bound_dev_if) {
        (Some(name), _) => line.push_str(&format!(" [SO_BINDTODEVICE {name}]")),
        (None, Some(ifindex)) => line.push_str(&format!(" [SO_BINDTODEVICE ifindex {ifindex}]")),
        _ => {}
    }
    line
}
