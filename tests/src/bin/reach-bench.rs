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
        let drops = kfree_skb_bench(&args)?;
        json!({
            "repeat": args.repeat,
            "rounds": args.rounds,
            "syns": args.syns,
            "classifier": classifier,
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
}

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
    let drainer = Drainer::start(cls.take_events()?);
    let (p, s) = (Drain::Paused, Drain::Spin);
    let cases = [
        Case {
            name: "SYN v4, watched port, ring read",
            frame: syn_v4(CLIENT_PORT, WATCHED),
            drain: s,
        },
        Case {
            name: "SYN v4, watched port, ring full",
            frame: syn_v4(CLIENT_PORT, WATCHED),
            drain: p,
        },
        Case { name: "SYN v4, port not watched", frame: syn_v4(CLIENT_PORT, UNWATCHED), drain: p },
        Case {
            name: "SYN v6, watched port, ring read",
            frame: syn_v6(CLIENT_PORT, WATCHED),
            drain: s,
        },
        Case { name: "SYN v6, port not watched", frame: syn_v6(CLIENT_PORT, UNWATCHED), drain: p },
        Case { name: "ACK v4", frame: ack_v4(CLIENT_PORT, WATCHED), drain: p },
        Case { name: "UDP v4", frame: udp_v4(CLIENT_PORT, WATCHED), drain: p },
    ];
    // Sanity and warm-up: every case passes through.
    for c in &cases {
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
    for round in 0..args.rounds {
        eprintln!("reach-bench: classifier round {}/{}", round + 1, args.rounds);
        for (i, c) in cases.iter().enumerate() {
            let is_event = c.name.contains("watched port");
            if is_event && c.drain == Drain::Paused {
                // Fill the ring first: every reservation of the measured run fails.
                cls.run("reach_ingress", &c.frame, 10_000)?;
            }
            let order = if round % 2 == 0 {
                ["reach_floor", "reach_ingress"]
            } else {
                ["reach_ingress", "reach_floor"]
            };
            for prog in order {
                if prog == "reach_floor" {
                    floor[i].push(cls.run(prog, &c.frame, args.repeat)?.duration.as_nanos() as f64);
                    continue;
                }
                let c0 = cls.counters()?;
                drainer.set(c.drain);
                let r = cls.run(prog, &c.frame, args.repeat)?;
                drainer.set(Drain::Paused);
                let c1 = cls.counters()?;
                ingress[i].push(r.duration.as_nanos() as f64);
                let d = |slot: u32| c1[slot as usize] - c0[slot as usize];
                ensure!(
                    d(counter::PACKETS) == u64::from(args.repeat),
                    "{}: packets counted",
                    c.name
                );
                submitted[i] += d(counter::SYN_EVENTS);
                lost[i] += d(counter::LOST);
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
        }));
    }
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

fn kfree_skb_bench(args: &Args) -> anyhow::Result<Value> {
    let _stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time stats")?;
    let ns = NetNs::new("bench").context("creating the lab namespace")?;
    let mut rows = Vec::new();
    let runs = [
        (false, "event path, reader waiting", Drain::Spin),
        (false, "event path, reader behind", Drain::Poll),
        (false, "early exit (port filter)", Drain::Paused),
        (true, "event path, reader waiting", Drain::Spin),
        (true, "early exit (port filter)", Drain::Paused),
    ];
    for (classic, path, drain) in runs {
        let ports = if drain == Drain::Paused { vec![OTHER_PORT] } else { vec![] };
        {
            let names: &[&str] = if classic {
                &["reach_tp_kfree_", "reach_tp_kfree_skb"]
            } else {
                &["reach_kfree_skb"]
            };
            let before = program_ids(names);
            let opts = NetOptions { netns: vec![], ports, rate_per_sec: 0, burst: 0 };
            let mut tap = DropTap::attach(&opts, classic).context("attaching the drop tracer")?;
            let how = tap.how;
            let prog = new_program(names, &before)?;
            let drainer = Drainer::start(tap.take_events()?);
            drainer.set(drain);
            let c0 = tap.counters()?;
            let (t0, n0) = stats_of(prog.id())?;
            let start = Instant::now();
            let sent = syn_load(&ns, args.syns)?;
            let elapsed = start.elapsed();
            let (t1, n1) = stats_of(prog.id())?;
            let c1 = tap.counters()?;
            let submitted = c1[counter::DROP_EVENTS as usize] - c0[counter::DROP_EVENTS as usize];
            let lost = c1[counter::LOST as usize] - c0[counter::LOST as usize];
            let delivered = drainer.settle(submitted);
            ensure!(delivered == submitted, "{how}: {delivered} of {submitted} drop events read");
            drop(drainer);
            drop(tap);
            let (run_ns, runs) = (t1 - t0, n1 - n0);
            let per = if runs > 0 { run_ns as f64 / runs as f64 } else { f64::NAN };
            let case = format!("{how}, {path}");
            eprintln!(
                "reach-bench: {case}: {runs} runs, {per:.0} ns/run, {sent} SYNs in {:.1} s, events {delivered}/{lost} lost",
                elapsed.as_secs_f64()
            );
            rows.push(json!({
                "case": case,
                "attach": how,
                "path": path,
                "syns": sent,
                "seconds": elapsed.as_secs_f64(),
                "run_cnt": runs,
                "run_time_ns": run_ns,
                "ns_per_run": per,
                "events_submitted": submitted,
                "events_delivered": delivered,
                "events_lost": lost,
            }));
        }
    }
    ns.remove().context("removing the lab namespace")?;
    Ok(Value::Array(rows))
}
