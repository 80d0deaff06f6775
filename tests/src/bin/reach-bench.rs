//! reach's hot-path benchmark (issue 5): what the TC classifier costs per packet, next to an
//! empty classifier measured in the same run, and what the kfree_skb drop handler costs per call.
//!
//! 1. `reach_ingress` vs `reach_floor` under BPF_PROG_TEST_RUN on hand-built frames (SYN v4/v6
//!    to a watched port = the event path, the same SYNs to an unwatched port = filtered, an ACK,
//!    a UDP datagram). Each measurement is one test run of `--repeat` packets timed by the kernel
//!    (mean ns per packet); `--rounds` rounds interleave floor and classifier (alternating which
//!    goes first) and the median of the rounds is reported. The event path has no rate limit:
//!    every SYN reserves ring-buffer space while a thread drains the ring, and what did not fit
//!    is counted as lost (both reported).
//! 2. `reach_kfree_skb` with BPF run-time statistics on: attached as reach attaches it (tp_btf,
//!    and the classic tracepoint fallback), with a bounded loopback load of SYNs to a closed
//!    port inside a lab namespace (each SYN is dropped, NO_SOCKET). Once with every SYN of
//!    interest (event path), once with a port filter that excludes them (early exit).
//!
//! 3. End to end (`reach_tests::bench_e2e`): iperf3 throughput under `reach watch`, tcpdump
//!    and bpftrace; a SYN flood accounted for SYN by SYN; `reach watch`'s start-up and RSS.
//!
//! Progress goes to stderr; the results, as one JSON document, to stdout (`cargo xtask bench`
//! renders them and writes BENCHMARKS.md). Needs root.
use std::{
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::maps::{MapData, RingBuf};
use reach_agent::{
    lab::NetNs,
    probes::net::{DropTap, NetOptions},
};
use reach_common::net::{NetConfig, counter};
use reach_tests::frames::{Classifiers, ack_v4, syn_v4, syn_v6, udp_v4};
use serde_json::{Value, json};

const WATCHED: u16 = 443;
const UNWATCHED: u16 = 8080;
const CLIENT_PORT: u16 = 40000;
/// The closed port of the kfree_skb load, and the port the early-exit run watches instead.
const CLOSED_PORT: u16 = 7;
const OTHER_PORT: u16 = 9;
/// TC_ACT_UNSPEC.
const PASS: u32 = -1i32 as u32;

struct Args {
    repeat: u32,
    rounds: usize,
    syns: u32,
    e2e: reach_tests::bench_e2e::Args,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args { repeat: 1_000_000, rounds: 9, syns: 20_000, e2e: Default::default() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .context(name.to_string())
        };
        match arg.as_str() {
            "--repeat" => a.repeat = u32::try_from(value("--repeat")?)?,
            "--rounds" => a.rounds = value("--rounds")? as usize,
            "--syns" => a.syns = u32::try_from(value("--syns")?)?,
            "-h" | "--help" => {
                eprintln!("reach-bench [--repeat N (1000000)] [--rounds N (9)] [--syns N (20000)]");
                eprintln!("{}", reach_tests::bench_e2e::HELP);
                std::process::exit(0);
            }
            other => {
                if !a.e2e.parse_arg(other, || it.next())? {
                    bail!("unknown argument {other:?} (see --help)")
                }
            }
        }
    }
    ensure!(a.repeat >= 1000 && a.rounds >= 1 && a.syns >= 100, "arguments too small");
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reach-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "reach-bench needs root (BPF, network namespaces)");
    let mut doc = if args.e2e.only {
        json!({})
    } else {
        let classifier = classifier_bench(&args)?;
        let blocks = blocks_bench(&args)?;
        let drops = kfree_skb_bench(&args)?;
        json!({
            "repeat": args.repeat,
            "rounds": args.rounds,
            "syns": args.syns,
            "classifier": classifier,
            "blocks": blocks,
            "kfree_skb": drops,
        })
    };
    doc["e2e"] = reach_tests::bench_e2e::run(&args.e2e)?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

// ---------------------------------------------------------------- ring drain

/// How the drain thread consumes the ring.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Drain {
    /// Does not read: the ring fills and further reservations fail (counted as LOST).
    Paused = 0,
    /// Reads as fast as it can: the ring is usually empty, so nearly every submit wakes the
    /// reader (the cost of sparse events with a reader waiting in epoll).
    Spin = 1,
    /// Reads every 10 ms: the reader is behind, the kernel skips most wakeups.
    Poll = 2,
}

/// Drains a ring buffer from its own thread, counting records.
struct Drainer {
    delivered: Arc<AtomicU64>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drainer {
    fn start(mut ring: RingBuf<MapData>) -> Drainer {
        let delivered = Arc::new(AtomicU64::new(0));
        let mode = Arc::new(AtomicU8::new(Drain::Paused as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, m, s) = (delivered.clone(), mode.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mode = m.load(Ordering::Relaxed);
                if mode == Drain::Paused as u8 {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let mut n = 0;
                while ring.next().is_some() {
                    n += 1;
                }
                d.fetch_add(n, Ordering::Relaxed);
                if mode == Drain::Poll as u8 {
                    thread::sleep(Duration::from_millis(10));
                } else if n == 0 {
                    std::hint::spin_loop();
                }
            }
        });
        Drainer { delivered, mode, stop, thread: Some(thread) }
    }

    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn set(&self, mode: Drain) {
        self.mode.store(mode as u8, Ordering::Relaxed);
        if mode == Drain::Paused {
            // Let a drain in progress finish before the caller relies on the ring filling up.
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Drains until `expected` records have been read in all (at most 2 s), then pauses.
    fn settle(&self, expected: u64) -> u64 {
        self.set(Drain::Spin);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.delivered() < expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        self.set(Drain::Paused);
        self.delivered()
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- classifier

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    /// How the ring is read while the classifier runs (matters for SYNs to the watched port).
    drain: Drain,
    /// Run on the instance whose token bucket is always empty (the SYN flood path).
    limited: bool,
    /// Issue 15's goal for the ratio to the floor, when it sets one.
    goal: Option<f64>,
}

/// Goals of issue 15 (ratio to the empty classifier).
const GOAL_EVENT: f64 = 3.0;
const GOAL_UNWATCHED_SYN: f64 = 1.5;
const GOAL_PLAIN: f64 = 1.25;
/// The drop handler's early exits next to the empty handler on the same hook.
const GOAL_DROP_EARLY_EXIT: f64 = 2.0;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

fn classifier_bench(args: &Args) -> anyhow::Result<Value> {
    let config =
        NetConfig { netns: 0, filter_ports: 1, rate_per_sec: 0, burst: 0, ..NetConfig::DEFAULT };
    let mut cls = Classifiers::load(config, &[WATCHED])?;
    // One token per second, burst 1: after the first SYN every SYN is suppressed.
    let limited_config = NetConfig { rate_per_sec: 1, burst: 1, ..config };
    let limited_cls = Classifiers::load(limited_config, &[WATCHED])?;
    let drainer = Drainer::start(cls.take_events()?);
    let (p, s) = (Drain::Paused, Drain::Spin);
    let case = |name, frame, drain, goal| Case { name, frame, drain, limited: false, goal };
    let cases = [
        case("SYN v4, watched port, ring read", syn_v4(CLIENT_PORT, WATCHED), s, Some(GOAL_EVENT)),
        case("SYN v4, watched port, ring full", syn_v4(CLIENT_PORT, WATCHED), p, Some(GOAL_EVENT)),
        Case {
            name: "SYN v4, watched port, rate-limited",
            frame: syn_v4(CLIENT_PORT, WATCHED),
            drain: p,
            limited: true,
            goal: None,
        },
        case(
            "SYN v4, port not watched",
            syn_v4(CLIENT_PORT, UNWATCHED),
            p,
            Some(GOAL_UNWATCHED_SYN),
        ),
        case("SYN v6, watched port, ring read", syn_v6(CLIENT_PORT, WATCHED), s, Some(GOAL_EVENT)),
        case(
            "SYN v6, port not watched",
            syn_v6(CLIENT_PORT, UNWATCHED),
            p,
            Some(GOAL_UNWATCHED_SYN),
        ),
        case("ACK v4", ack_v4(CLIENT_PORT, WATCHED), p, Some(GOAL_PLAIN)),
        case("UDP v4", udp_v4(CLIENT_PORT, WATCHED), p, Some(GOAL_PLAIN)),
    ];
    // Sanity and warm-up: every case passes through.
    for c in &cases {
        let cls = if c.limited { &limited_cls } else { &cls };
        for prog in ["reach_floor", "reach_ingress"] {
            let r = cls
                .run(prog, &c.frame, args.repeat / 10)
                .with_context(|| format!("{prog}: {}", c.name))?;
            ensure!(
                r.return_value == PASS,
                "{prog} returned {} on {}",
                r.return_value as i32,
                c.name
            );
        }
    }
    let mut submitted_total = cls.counters()?[counter::SYN_EVENTS as usize];
    drainer.settle(submitted_total);
    let n = cases.len();
    let (mut floor, mut ingress) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let (mut submitted, mut lost, mut packets) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    let mut suppressed = vec![0u64; n];
    for round in 0..args.rounds {
        eprintln!("reach-bench: classifier round {}/{}", round + 1, args.rounds);
        for (i, c) in cases.iter().enumerate() {
            let inst = if c.limited { &limited_cls } else { &cls };
            let is_event = c.name.contains("watched port") && !c.limited;
            if is_event && c.drain == Drain::Paused {
                // Fill the ring first: every reservation of the measured run fails.
                inst.run("reach_ingress", &c.frame, 10_000)?;
            }
            let order = if round % 2 == 0 {
                ["reach_floor", "reach_ingress"]
            } else {
                ["reach_ingress", "reach_floor"]
            };
            for prog in order {
                if prog == "reach_floor" {
                    floor[i]
                        .push(inst.run(prog, &c.frame, args.repeat)?.duration.as_nanos() as f64);
                    continue;
                }
                let c0 = inst.counters()?;
                drainer.set(c.drain);
                let r = inst.run(prog, &c.frame, args.repeat)?;
                drainer.set(Drain::Paused);
                let c1 = inst.counters()?;
                ingress[i].push(r.duration.as_nanos() as f64);
                let d = |slot: u32| c1[slot as usize] - c0[slot as usize];
                let delta: [u64; counter::SLOTS as usize] = std::array::from_fn(|s| d(s as u32));
                // A SYN lands in exactly one SYN slot; other traffic updates no counter.
                let (counted, want) = if c.name.starts_with("SYN") {
                    (counter::syns(&delta), u64::from(args.repeat))
                } else {
                    (delta.iter().sum(), 0)
                };
                ensure!(counted == want, "{}: {counted} packets counted, not {want}", c.name);
                submitted[i] += d(counter::SYN_EVENTS);
                lost[i] += d(counter::SYN_LOST);
                suppressed[i] += d(counter::SYN_RATE_LIMITED);
                packets[i] += u64::from(args.repeat);
            }
            // Empty the ring before the next case (outside any measurement).
            submitted_total = cls.counters()?[counter::SYN_EVENTS as usize];
            drainer.settle(submitted_total);
        }
    }
    let drained = drainer.settle(submitted_total);
    ensure!(drained == submitted_total, "{drained} events read of {submitted_total} submitted");
    drop(drainer);
    let mut rows = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (ns, fl) = (median(&ingress[i]), median(&floor[i]));
        eprintln!(
            "reach-bench: {:34} {:6.1} ns  floor {:5.1} ns  x{:.1}  events {} delivered / {} lost",
            c.name,
            ns,
            fl,
            ns / fl.max(f64::MIN_POSITIVE),
            submitted[i],
            lost[i]
        );
        rows.push(json!({
            "case": c.name,
            "bytes": c.frame.len(),
            "ns": ns,
            "floor_ns": fl,
            "ratio": if fl > 0.0 { ns / fl } else { f64::NAN },
            "ns_rounds": ingress[i],
            "floor_ns_rounds": floor[i],
            "packets": packets[i],
            "events_delivered": submitted[i],
            "events_lost": lost[i],
            "events_suppressed": suppressed[i],
            "goal_ratio": c.goal,
        }));
    }
    Ok(Value::Array(rows))
}

/// What an event costs at the least: one clock read and one ring-buffer event (drained by a
/// reader on the other CPU, as reach reads it), each in a program of its own next to the
/// floor, interleaved round by round like the classifier cases.
fn blocks_bench(args: &Args) -> anyhow::Result<Value> {
    let mut cls = Classifiers::load(NetConfig::DEFAULT, &[])?;
    let drainer = Drainer::start(cls.take_events()?);
    let frame = udp_v4(CLIENT_PORT, WATCHED);
    let blocks = [
        ("one bpf_ktime_get_boot_ns", "reach_cost_clock"),
        ("one ring-buffer event (reserve, write 80 bytes, submit), ring read", "reach_cost_ring"),
    ];
    let mut floor = vec![Vec::new(); blocks.len()];
    let mut cost = vec![Vec::new(); blocks.len()];
    for round in 0..args.rounds {
        for (i, (_, prog)) in blocks.iter().enumerate() {
            let mut order = ["reach_floor", prog];
            if round % 2 == 1 {
                order.reverse();
            }
            for p in order {
                drainer.set(if p == "reach_cost_ring" { Drain::Spin } else { Drain::Paused });
                let r = cls.run(p, &frame, args.repeat)?;
                ensure!(r.return_value == PASS, "{p} returned {}", r.return_value as i32);
                let ns = r.duration.as_nanos() as f64;
                if p == "reach_floor" { floor[i].push(ns) } else { cost[i].push(ns) }
            }
            drainer.set(Drain::Paused);
        }
    }
    drop(drainer);
    let rows = blocks
        .iter()
        .enumerate()
        .map(|(i, (name, prog))| {
            let (ns, fl) = (median(&cost[i]), median(&floor[i]));
            eprintln!("reach-bench: {name:60} {ns:6.1} ns  floor {fl:5.1} ns");
            json!({"block": name, "program": prog, "ns": ns, "floor_ns": fl,
                "ratio": if fl > 0.0 { ns / fl } else { f64::NAN },
                "ns_rounds": cost[i], "floor_ns_rounds": floor[i]})
        })
        .collect();
    Ok(Value::Array(rows))
}

// ---------------------------------------------------------------- kfree_skb

/// The kfree_skb program a DropTap just loaded: the one of that name that was not there before.
fn new_program(names: &[&str], before: &[u32]) -> anyhow::Result<aya::programs::ProgramInfo> {
    let mut found: Vec<_> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str().is_some_and(|n| names.contains(&n)) && !before.contains(&p.id())
        })
        .collect();
    ensure!(found.len() == 1, "expected one new {names:?} program, found {}", found.len());
    Ok(found.remove(0))
}

fn program_ids(names: &[&str]) -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| names.contains(&n)))
        .map(|p| p.id())
        .collect()
}

fn stats_of(id: u32) -> anyhow::Result<(u64, u64)> {
    let p = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .context("the drop program disappeared")?;
    Ok((p.run_time().as_nanos() as u64, p.run_count()))
}

/// `n` connects to a closed loopback port from inside `ns`, bounded by 20 s.
fn syn_load(ns: &NetNs, n: u32) -> anyhow::Result<u32> {
    let done = ns.run_in(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], CLOSED_PORT));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0;
        while sent < n && Instant::now() < deadline {
            // Refused at once: the SYN is dropped (NO_SOCKET) and answered with a RST.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
            sent += 1;
        }
        sent
    })?;
    Ok(done)
}

/// The empty tp_btf kfree_skb handler (`reach_kfree_skb_floor`), attached for the whole
/// benchmark so that it runs on exactly the drops each row's handler runs on.
struct DropFloor {
    _ebpf: aya::Ebpf,
    id: u32,
}

impl DropFloor {
    fn attach() -> anyhow::Result<DropFloor> {
        let mut ebpf = aya::EbpfLoader::new()
            .load(reach_agent::ebpf_objects::net())
            .context("loading reach-net for the empty handler")?;
        let btf = aya::Btf::from_sys_fs().context("reading kernel BTF")?;
        let p: &mut aya::programs::BtfTracePoint =
            reach_agent::ebpf_objects::program_mut(&mut ebpf, "reach_kfree_skb_floor")?;
        p.load("kfree_skb", &btf).context("loading the empty kfree_skb handler")?;
        p.attach().context("attaching the empty kfree_skb handler")?;
        let id = p.info().context("the empty handler's id")?.id();
        Ok(DropFloor { _ebpf: ebpf, id })
    }
}

/// Which drops a kfree_skb row's handler reports.
enum DropFilter {
    /// Every SYN of the load's namespace: each one becomes an event.
    Events,
    /// Another namespace only: the handler returns after reading the namespace.
    OtherNamespace,
    /// The load's namespace, another port: the handler reads the headers, then returns.
    OtherPort,
}

fn kfree_skb_bench(args: &Args) -> anyhow::Result<Value> {
    let _stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time stats")?;
    let ns = NetNs::new("bench").context("creating the lab namespace")?;
    let inode = std::fs::metadata(ns.path())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .context("the lab namespace's inode")?;
    let floor = DropFloor::attach()?;
    let mut rows = Vec::new();
    use DropFilter::*;
    let runs = [
        (false, "event path, reader waiting", Events, Drain::Spin),
        (false, "event path, reader behind", Events, Drain::Poll),
        (false, "early exit (namespace not watched)", OtherNamespace, Drain::Paused),
        (false, "early exit (port not watched)", OtherPort, Drain::Paused),
        (true, "event path, reader waiting", Events, Drain::Spin),
        (true, "early exit (namespace not watched)", OtherNamespace, Drain::Paused),
    ];
    for (classic, path, filter, drain) in runs {
        // Inode 1 is no namespace's: nothing matches.
        let (netns, ports) = match filter {
            Events => (vec![inode], vec![]),
            OtherNamespace => (vec![1], vec![]),
            OtherPort => (vec![inode], vec![OTHER_PORT]),
        };
        let names: &[&str] =
            if classic { &["reach_tp_kfree_", "reach_tp_kfree_skb"] } else { &["reach_kfree_skb"] };
        let before = program_ids(names);
        let opts = NetOptions { netns, ports, rate_per_sec: 0, burst: 0 };
        let mut tap = DropTap::attach(&opts, classic).context("attaching the drop tracer")?;
        let how = tap.how;
        let prog = new_program(names, &before)?;
        let drainer = Drainer::start(tap.take_events()?);
        drainer.set(drain);
        let c0 = tap.counters()?;
        let ((t0, n0), (f0, m0)) = (stats_of(prog.id())?, stats_of(floor.id)?);
        let start = Instant::now();
        let sent = syn_load(&ns, args.syns)?;
        let elapsed = start.elapsed();
        let ((t1, n1), (f1, m1)) = (stats_of(prog.id())?, stats_of(floor.id)?);
        let c1 = tap.counters()?;
        let submitted = c1[counter::DROP_EVENTS as usize] - c0[counter::DROP_EVENTS as usize];
        let lost = c1[counter::OTHER_LOST as usize] - c0[counter::OTHER_LOST as usize];
        let delivered = drainer.settle(submitted);
        ensure!(delivered == submitted, "{how}: {delivered} of {submitted} drop events read");
        drop(drainer);
        drop(tap);
        let per_run = |ns: u64, n: u64| if n > 0 { ns as f64 / n as f64 } else { f64::NAN };
        let (per, floor_per) = (per_run(t1 - t0, n1 - n0), per_run(f1 - f0, m1 - m0));
        let case = format!("{how}, {path}");
        eprintln!(
            "reach-bench: {case}: {} runs, {per:.0} ns/run (empty handler {floor_per:.0}), {sent} SYNs in {:.1} s, events {delivered}/{lost} lost",
            n1 - n0,
            elapsed.as_secs_f64()
        );
        rows.push(json!({
            "case": case,
            "attach": how,
            "path": path,
            "syns": sent,
            "seconds": elapsed.as_secs_f64(),
            "run_cnt": n1 - n0,
            "run_time_ns": t1 - t0,
            "ns_per_run": per,
            "floor_run_cnt": m1 - m0,
            "floor_ns_per_run": floor_per,
            "ratio": per / floor_per,
            "goal_ratio": if path.starts_with("early exit") { Some(GOAL_DROP_EARLY_EXIT) } else { None },
            "events_submitted": submitted,
            "events_delivered": delivered,
            "events_lost": lost,
        }));
    }
    drop(floor);
    ns.remove().context("removing the lab namespace")?;
    Ok(Value::Array(rows))
}
