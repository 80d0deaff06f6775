//! The soak (issue 18, item 5): `reach agent` for `--minutes` (30) under mixed load, in lab
//! namespaces only, its memory and open files sampled all along.
//!
//! The run is cut into cycles (60 s; shorter for short runs, see [`Plan`]). Every cycle:
//!
//! - an iperf3 stream between the two namespaces of one lab pair (`soak-ip`) runs for all but
//!   the last 6 s of the cycle (so its connection's SYNs come 2 s before the flood, not during);
//! - 2 s in, a SYN flood burst (`hping3 -S --flood --rand-source` to a closed port of the other
//!   pair's server, `soak-fl`) of `--flood-seconds`, accounted for as `reach-bench` accounts for
//!   the agent's floods: the SYNs the server's veth received against the changes of the agent's
//!   `reach_syn_total` of that namespace, `reach_events_suppressed_total{kind="syn"}` and
//!   `reach_events_lost_total{kind="syn"}` once they stop moving.
//!
//! Meanwhile, on their own threads until the end: a bind/listen churn in a kept lab namespace
//! (the churn anchor: a TCP listener and a UDP socket on random ports, bound and closed every
//! few milliseconds), and a namespace churn into it (one lab namespace at a time with a veth
//! into the anchor: created, seen by the agent, deleted, seen gone, its veth peer gone from the
//! anchor; then a veth pair added to the anchor itself, seen, deleted, seen gone). A third
//! thread samples the agent's VmRSS and its /proc/PID/fd entries every `--sample-seconds`.
//!
//! Verdicts ([`checks`]): the median VmRSS of the last cycle is at most 5 % above that of the
//! last cycle of the warm-up, and so is the median fd count at the churn's settled points (no
//! churned namespace or veth alive, the agent having seen them go): a namespace the agent
//! watches holds its own descriptors (its ring, its link monitor, its classifiers), so the count
//! of any one moment swings with the churn's phase by a dozen, while a leak raises the settled
//! count — the all-samples medians are printed beside it; no burst has a SYN received that the agent did not
//! count; no churned namespace leaked or went unseen; no iperf3 period failed; the agent exits
//! 0 on SIGTERM. `cargo xtask soak` renders the document and writes BENCHMARKS.md.
//!
//! The agent runs as a node runs it: the default `--syn-rate` (so the floods are mostly
//! suppressed) and `--rescan`, `--no-trace-netns host`, and `--series-grace` half the warm-up
//! (the series of gone namespaces are kept that long by design: with the default 300 s they
//! would still be piling up after a short run's warm-up and read as growth).
//!
//! Clean-up: every process is a [`Proc`] (killed with its group on drop), every namespace a
//! guard, the threads stop on a flag set on drop; SIGINT and SIGTERM set the same flag, so an
//! interrupted soak unwinds through the guards too.
use std::{
    net::{TcpListener, UdpSocket},
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use reach_agent::lab::NetNs;
use serde_json::{Value, json};

use super::{
    Pair, Proc,
    agent::{self, Agent, SynCount},
    flood::{CLOSED_PORT, hping_sent},
    median,
};
use crate::prometheus::Scrape;

/// Final ≤ warm-up × this, for VmRSS and the fd count.
pub const FLAT: f64 = 1.05;
const IPERF_PORT: u16 = 5201;
/// How long the agent may take to see a namespace or an interface come or go.
const SEE_WITHIN: Duration = Duration::from_secs(10);

/// reach-soak's arguments.
#[derive(Debug, Clone)]
pub struct Args {
    pub reach: Option<PathBuf>,
    pub minutes: f64,
    pub flood_seconds: f64,
    pub sample_seconds: f64,
}

impl Default for Args {
    fn default() -> Self {
        Args { reach: None, minutes: 30.0, flood_seconds: 3.0, sample_seconds: 2.0 }
    }
}

pub const USAGE: &str = "usage: reach-soak [--reach PATH ($REACH_BIN)] [--minutes M (30)] \
     [--flood-seconds S (3)] [--sample-seconds S (2)]";

impl Args {
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
        let mut a = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--reach" => a.reach = Some(PathBuf::from(value()?)),
                "--minutes" => a.minutes = value()?.parse().context("--minutes")?,
                "--flood-seconds" => {
                    a.flood_seconds = value()?.parse().context("--flood-seconds")?
                }
                "--sample-seconds" => {
                    a.sample_seconds = value()?.parse().context("--sample-seconds")?
                }
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        Ok(a)
    }
}

/// The run's timing, from `--minutes`: a warm-up of a sixth of the run (at most 5 minutes),
/// cycles of 60 s or the warm-up if shorter, as many cycles as fit the run (rounded up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub cycle_s: f64,
    pub cycles: u32,
    pub warmup_s: f64,
}

impl Plan {
    pub fn of(minutes: f64, flood_seconds: f64) -> anyhow::Result<Plan> {
        ensure!(minutes.is_finite() && minutes >= 2.0, "--minutes must be at least 2");
        let total = minutes * 60.0;
        let warmup_s = (total / 6.0).min(300.0);
        let cycle_s = warmup_s.min(60.0);
        ensure!(
            flood_seconds.is_finite() && flood_seconds >= 0.5 && flood_seconds <= cycle_s / 4.0,
            "--flood-seconds must be between 0.5 and a quarter of a cycle ({cycle_s} s)"
        );
        Ok(Plan { cycle_s, cycles: (total / cycle_s).round().max(2.0) as u32, warmup_s })
    }

    pub fn total_s(&self) -> f64 {
        self.cycle_s * f64::from(self.cycles)
    }
}

/// One reading of the agent: seconds since the load started, VmRSS, open fds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub rss_kib: f64,
    pub fds: f64,
}

/// A figure at the end of the warm-up and at the end of the run: the medians of its samples over
/// one cycle each (so each window has one flood burst and the same share of the churn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flat {
    pub warmup: f64,
    pub last: f64,
    pub warmup_max: f64,
    pub last_max: f64,
    pub first: f64,
    pub samples_warmup: usize,
    pub samples_last: usize,
}

impl Flat {
    pub fn ok(&self) -> bool {
        self.last <= self.warmup * FLAT
    }

    fn json(&self) -> Value {
        json!({"first": self.first, "warmup": self.warmup, "warmup_max": self.warmup_max,
            "last": self.last, "last_max": self.last_max, "ratio": self.last / self.warmup,
            "samples_warmup": self.samples_warmup, "samples_last": self.samples_last,
            "ok": self.ok()})
    }
}

/// [`Flat`] of `value` over `samples`: the warm-up window is the cycle before `warmup_s`, the
/// last one the cycle before `end_s`. `None` when a window has no sample.
pub fn flatness(
    samples: &[Sample],
    value: impl Fn(&Sample) -> f64,
    warmup_s: f64,
    end_s: f64,
    window_s: f64,
) -> Option<Flat> {
    let within = |lo: f64, hi: f64| -> Vec<f64> {
        samples.iter().filter(|s| s.t > lo && s.t <= hi).map(&value).collect()
    };
    let (w, l) = (within(warmup_s - window_s, warmup_s), within(end_s - window_s, end_s));
    if w.is_empty() || l.is_empty() {
        return None;
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    Some(Flat {
        warmup: median(&w),
        last: median(&l),
        warmup_max: max(&w),
        last_max: max(&l),
        first: value(samples.first()?),
        samples_warmup: w.len(),
        samples_last: l.len(),
    })
}

/// One flood burst's account.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Burst {
    pub rx: u64,
    pub in_segs: u64,
    pub counted: SynCount,
    /// SYN events of every other namespace meanwhile (others' load, not part of the account).
    pub syn_elsewhere: f64,
}

impl Burst {
    /// Received minus counted: above 0, SYNs the agent neither delivered nor counted; below 0,
    /// more counted than received (the suppressed and lost counters are machine-wide: SYNs of
    /// other namespaces rate-limited or lost meanwhile).
    pub fn unaccounted(&self) -> f64 {
        self.rx as f64 - self.counted.total()
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`]: the soak then winds down through its guards.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Sleeps until `until` in small steps; fails when the soak was interrupted.
fn sleep_until(until: Instant) -> anyhow::Result<()> {
    loop {
        ensure!(!STOP.load(Ordering::SeqCst), "interrupted (SIGINT or SIGTERM)");
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Sets the workers' stop flag when dropped (the run ended, failed or panicked).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn open_fds(pid: i32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?.count() as u64)
}

fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    super::status_kib(&status, "VmRSS").context("no VmRSS")
}

/// Samples the agent until `stop`; ends early (with what it has) if the agent is gone.
fn sampler(pid: i32, start: Instant, every: Duration, stop: &AtomicBool) -> Vec<Sample> {
    let mut v = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let (Ok(rss), Ok(fds)) = (rss_kib(pid), open_fds(pid)) else { break };
            let t = start.elapsed().as_secs_f64();
            v.push(Sample { t, rss_kib: rss as f64, fds: fds as f64 });
            next += every;
        }
        thread::sleep(Duration::from_millis(50));
    }
    v
}

#[derive(Debug, Default)]
struct BindChurn {
    listens: AtomicU64,
    udp_binds: AtomicU64,
    refused: AtomicU64,
}

/// In the anchor until `stop`: a TCP listener and a UDP socket on pseudo-random ports, bound
/// (and listening) and closed, every 5 ms.
fn bind_churn(anchor: &NetNs, stop: &AtomicBool, c: &BindChurn) -> anyhow::Result<()> {
    anchor.run_in(|| {
        let mut x: u32 = std::process::id() | 1;
        let mut port = || {
            // xorshift32: ports spread over 20000..60000.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            20_000 + (x % 40_000) as u16
        };
        while !stop.load(Ordering::SeqCst) {
            match TcpListener::bind(("0.0.0.0", port())) {
                Ok(l) => {
                    c.listens.fetch_add(1, Ordering::Relaxed);
                    drop(l);
                }
                Err(_) => _ = c.refused.fetch_add(1, Ordering::Relaxed),
            }
            match UdpSocket::bind(("0.0.0.0", port())) {
                Ok(s) => {
                    c.udp_binds.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                }
                Err(_) => _ = c.refused.fetch_add(1, Ordering::Relaxed),
            }
            thread::sleep(Duration::from_millis(5));
        }
    })?;
    Ok(())
}

/// The namespace and interface churn's figures.
#[derive(Debug, Clone, Default)]
struct NsChurn {
    /// The agent read at each settled point: the churned namespace and veth gone and seen gone.
    settled: Vec<Sample>,
    namespaces: u64,
    ns: agent::Churn,
    ifaces_added: u64,
    ifaces_seen: u64,
    ifaces_seen_gone: u64,
}

/// Until `stop`: one namespace through [`agent::churn`] (created, seen, deleted, seen gone,
/// its veth peer gone from the anchor), then a veth pair added to the anchor, seen by the
/// agent (its interface count of the anchor up by the pair), deleted, seen gone.
fn ns_churn(
    agent: &Agent,
    anchor: &NetNs,
    stop: &AtomicBool,
    start: Instant,
) -> anyhow::Result<NsChurn> {
    let mut c = NsChurn::default();
    let name = anchor.name().to_string();
    let interfaces = |s: &Scrape| s.sum("reach_namespace_interfaces", &[("netns", &name)]);
    while !stop.load(Ordering::SeqCst) {
        let one = agent::churn(agent, anchor, c.namespaces as usize, 1)?;
        c.namespaces += 1;
        c.ns.seen += one.seen;
        c.ns.seen_gone += one.seen_gone;
        c.ns.leaked += one.leaked;

        let before = interfaces(&agent.scrape()?);
        anchor.ip(&["link", "add", "soakA", "type", "veth", "peer", "name", "soakB"])?;
        c.ifaces_added += 1;
        anchor.ip(&["link", "set", "soakA", "up"])?;
        anchor.ip(&["link", "set", "soakB", "up"])?;
        let up = agent.scrape_until(SEE_WITHIN, |s| interfaces(s) > before)?;
        c.ifaces_seen += u64::from(up.is_some());
        anchor.ip(&["link", "del", "soakA"])?;
        let gone = agent.scrape_until(SEE_WITHIN, |s| interfaces(s) <= before)?;
        c.ifaces_seen_gone += u64::from(gone.is_some());
        thread::sleep(Duration::from_millis(200));
        let pid = agent.proc.pid();
        if let (Ok(rss), Ok(fds)) = (rss_kib(pid), open_fds(pid)) {
            let t = start.elapsed().as_secs_f64();
            c.settled.push(Sample { t, rss_kib: rss as f64, fds: fds as f64 });
        }
    }
    Ok(c)
}

/// One flood burst from the flood pair's client, accounted for.
fn burst(pair: &Pair, agent: &Agent, seconds: f64) -> anyhow::Result<(Burst, Value)> {
    let server = pair.server.name();
    let everywhere = |s: &Scrape| s.sum("reach_syn_total", &[]);
    let (c0, settled0) = agent.settled_syns(server)?;
    let all0 = everywhere(&agent.scrape()?);
    let (rx0, segs0) = (pair.server_rx_packets()?, pair.server_tcp_in_segs()?);
    let mut cmd = Pair::command_in(&pair.client, "hping3")?;
    cmd.args(["-S", "--flood", "--rand-source", "-p", &CLOSED_PORT.to_string()])
        .arg(Pair::SERVER_V4.to_string());
    let start = Instant::now();
    let hping = Proc::spawn("hping3 --flood --rand-source", cmd)?;
    sleep_until(start + Duration::from_secs_f64(seconds))?;
    let hping = hping.stop(libc::SIGINT, Duration::from_secs(5))?;
    let elapsed = start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(100));
    let (rx1, segs1) = (pair.server_rx_packets()?, pair.server_tcp_in_segs()?);
    let (c1, settled1) = agent.settled_syns(server)?;
    let all1 = everywhere(&agent.scrape()?);
    let counted = SynCount {
        syn: c1.syn - c0.syn,
        suppressed: c1.suppressed - c0.suppressed,
        lost: c1.lost - c0.lost,
    };
    let b = Burst {
        rx: rx1 - rx0,
        in_segs: segs1 - segs0,
        counted,
        syn_elsewhere: (all1 - all0) - counted.syn,
    };
    let v = json!({
        "seconds": elapsed,
        "hping3_sent": hping_sent(&hping.lines),
        "rx_packets": b.rx,
        "tcp_in_segs": b.in_segs,
        "reach_syn": counted.syn,
        "suppressed_syn": counted.suppressed,
        "lost_syn": counted.lost,
        "counted": counted.total(),
        "unaccounted": b.unaccounted(),
        "syn_elsewhere": b.syn_elsewhere,
        "counters_settled": settled0 && settled1,
    });
    Ok((b, v))
}

/// One iperf3 period's receiver Gbit/s from its `-J` output, or its error.
fn iperf_gbps(stdout: &str) -> Result<f64, String> {
    let v: Value = serde_json::from_str(stdout).map_err(|e| format!("no JSON ({e})"))?;
    if let Some(err) = v["error"].as_str() {
        return Err(err.to_string());
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| "no end.sum_received.bits_per_second".into())
}

fn reach_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let reach = match (&args.reach, std::env::var_os("REACH_BIN")) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => bail!("pass --reach PATH or set REACH_BIN (cargo xtask soak does)"),
    };
    ensure!(reach.is_file(), "reach binary {} does not exist", reach.display());
    Ok(reach.canonicalize().unwrap_or(reach))
}

/// A verdict of the soak.
fn check(figure: &str, value: impl std::fmt::Display, limit: &str, ok: bool) -> Value {
    json!({"figure": figure, "value": value.to_string(), "limit": limit, "ok": ok})
}

/// Runs the soak and returns its document (`checks` says whether it passed).
pub fn run(args: &Args) -> anyhow::Result<Value> {
    let plan = Plan::of(args.minutes, args.flood_seconds)?;
    ensure!(
        args.sample_seconds.is_finite() && args.sample_seconds >= 0.2,
        "--sample-seconds must be at least 0.2"
    );
    let reach = reach_bin(args)?;
    for tool in ["hping3", "iperf3"] {
        reach_agent::lab::Tool { name: tool, package: tool }
            .path()
            .with_context(|| format!("{tool} is needed (cargo xtask setup installs it)"))?;
    }
    catch_signals();
    let flood_pair = Pair::new("soak-fl").context("creating the flood pair")?;
    let iperf_pair = Pair::new("soak-ip").context("creating the iperf3 pair")?;
    let anchor = NetNs::new("soak-anchor")?;
    let grace = (plan.warmup_s / 2.0).to_string();
    let agent_args = ["--no-trace-netns", "host", "--series-grace", &grace];
    let (agent, ready) = Agent::start_with(&reach, &agent_args)?;
    let pid = agent.proc.pid();
    for ns in [flood_pair.server.name(), iperf_pair.server.name(), anchor.name()] {
        agent
            .scrape_until(SEE_WITHIN, |s| {
                s.sum("reach_namespace_interfaces", &[("netns", ns)]) >= 1.0
            })?
            .with_context(|| format!("reach agent does not watch {ns}"))?;
    }

    let mut cmd = Pair::command_in(&iperf_pair.server, "iperf3")?;
    cmd.args(["-s", "-B", &Pair::SERVER_V4.to_string(), "-p", &IPERF_PORT.to_string()]);
    let iperf_server = Proc::spawn("iperf3 -s", cmd)?;
    iperf_pair
        .server
        .wait_tcp_listener(IPERF_PORT, Duration::from_secs(10))
        .with_context(|| format!("iperf3 -s never listened:\n{}", iperf_server.output()))?;

    eprintln!(
        "reach-soak: {} cycles of {} s ({} s), warm-up {} s; agent {}",
        plan.cycles,
        plan.cycle_s,
        plan.total_s(),
        plan.warmup_s,
        agent_args.join(" ")
    );
    let stop = AtomicBool::new(false);
    let binds = BindChurn::default();
    let start = Instant::now();
    let mut bursts = Vec::new();
    let mut periods: Vec<Result<f64, String>> = Vec::new();
    let (stop, binds_ref, anchor_ref, agent_ref) = (&stop, &binds, &anchor, &agent);
    let (samples, churned) = thread::scope(|scope| -> anyhow::Result<_> {
        let _stop = StopOnDrop(stop);
        let every = Duration::from_secs_f64(args.sample_seconds);
        let sampling = scope.spawn(move || sampler(pid, start, every, stop));
        let binding = scope.spawn(move || bind_churn(anchor_ref, stop, binds_ref));
        let churning = scope.spawn(move || ns_churn(agent_ref, anchor_ref, stop, start));
        for cycle in 0..plan.cycles {
            let t0 = start + Duration::from_secs_f64(plan.cycle_s * f64::from(cycle));
            sleep_until(t0)?;
            let mut cmd = Pair::command_in(&iperf_pair.client, "iperf3")?;
            let secs = (plan.cycle_s - 6.0).round().max(1.0).to_string();
            cmd.args(["-c", &Pair::SERVER_V4.to_string(), "-p", &IPERF_PORT.to_string()])
                .args(["-t", &secs, "-J"]);
            let client = Proc::spawn("iperf3 -c", cmd)?;
            sleep_until(t0 + Duration::from_secs(2))?;
            // A worker that ended early failed: stop and report its error.
            if churning.is_finished() || binding.is_finished() {
                break;
            }
            let (b, v) = burst(&flood_pair, &agent, args.flood_seconds)
                .with_context(|| format!("flood burst {}", cycle + 1))?;
            eprintln!(
                "reach-soak: burst {}: {} SYNs received, {} events + {} suppressed + {} lost, \
                 unaccounted {}",
                cycle + 1,
                b.rx,
                b.counted.syn,
                b.counted.suppressed,
                b.counted.lost,
                b.unaccounted()
            );
            bursts.push((b, v));
            let end = t0 + Duration::from_secs_f64(plan.cycle_s);
            sleep_until(end - Duration::from_millis(500))?;
            // It ran for all but 6 s of the cycle: it has exited (a SIGTERM now would be a
            // failed period).
            let done = client.stop(libc::SIGTERM, Duration::from_secs(5))?;
            let out: String = done
                .lines
                .iter()
                .filter(|l| l.stream == super::procs::Stream::Stdout)
                .map(|l| format!("{}\n", l.text))
                .collect();
            let gbps = iperf_gbps(&out);
            eprintln!("reach-soak: cycle {} iperf3: {gbps:?} Gbit/s", cycle + 1);
            periods.push(gbps);
            let s = rss_kib(pid)
                .with_context(|| format!("reach agent is gone:\n{}", agent.proc.output()))?;
            // Which memory: a step in VmRSS reads differently as heap (RssAnon) or as mapped
            // files and rings (RssFile, RssShmem).
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let part = |k: &str| super::status_kib(&status, k).unwrap_or(0);
            eprintln!(
                "reach-soak: {:.0} s: VmRSS {s} KiB (anon {}, file {}, shmem {}), {} fds",
                start.elapsed().as_secs_f64(),
                part("RssAnon"),
                part("RssFile"),
                part("RssShmem"),
                open_fds(pid)?
            );
        }
        stop.store(true, Ordering::SeqCst);
        let samples = sampling.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        binding.join().map_err(|_| anyhow::anyhow!("the bind churn panicked"))??;
        let churned =
            churning.join().map_err(|_| anyhow::anyhow!("the namespace churn panicked"))??;
        Ok((samples, churned))
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(iperf_server);

    let end_scrape = agent.scrape()?;
    let (watched_end, machine_end) = (agent::watched(&end_scrape), agent::machine_namespaces()?);
    let agent_cpu_s = agent.proc.stats()?.cpu_s;
    let stopped = agent.proc.stop(libc::SIGTERM, Duration::from_secs(30))?;
    let agent_clean = !stopped.killed && stopped.status.is_some_and(|s| s.success());
    anchor.remove().context("removing the churn anchor")?;
    flood_pair.remove().context("removing the flood pair")?;
    iperf_pair.remove().context("removing the iperf3 pair")?;

    let total = plan.total_s();
    let rss = flatness(&samples, |s| s.rss_kib, plan.warmup_s, total, plan.cycle_s)
        .context("too few samples of VmRSS for a verdict")?;
    let fds = flatness(&samples, |s| s.fds, plan.warmup_s, total, plan.cycle_s)
        .context("too few samples of the fd count")?;
    let fds_settled = flatness(&churned.settled, |s| s.fds, plan.warmup_s, total, plan.cycle_s)
        .context("no settled point of the churn in the warm-up's last or the last cycle")?;
    let gbps: Vec<f64> = periods.iter().filter_map(|p| p.as_ref().ok().copied()).collect();
    let failed: Vec<&String> = periods.iter().filter_map(|p| p.as_ref().err()).collect();
    let n = churned.namespaces;

    let mut checks = vec![
        check(
            "VmRSS (KiB, median of the last cycle vs. of the warm-up's last)",
            format!("{:.0} vs. {:.0}", rss.last, rss.warmup),
            &format!("≤ {:.0} (× {FLAT})", rss.warmup * FLAT),
            rss.ok(),
        ),
        check(
            "open fds at the churn's settled points (median of the last cycle vs. of the \
             warm-up's last)",
            format!("{:.0} vs. {:.0}", fds_settled.last, fds_settled.warmup),
            &format!("≤ {:.1} (× {FLAT})", fds_settled.warmup * FLAT),
            fds_settled.ok(),
        ),
    ];
    for (i, (b, _)) in bursts.iter().enumerate() {
        checks.push(check(
            &format!("burst {}: SYNs received and not counted", i + 1),
            b.unaccounted(),
            "≤ 0",
            b.unaccounted() <= 0.0 && b.rx > 0,
        ));
    }
    checks.extend([
        check("namespaces leaked (veth peers left in the anchor)", churned.ns.leaked, "0", {
            churned.ns.leaked == 0
        }),
        check(
            "churned namespaces seen / seen gone",
            format!("{} / {} of {n}", churned.ns.seen, churned.ns.seen_gone),
            "all",
            n > 0 && churned.ns.seen == n && churned.ns.seen_gone == n,
        ),
        check(
            "anchor interfaces seen / seen gone",
            format!(
                "{} / {} of {}",
                churned.ifaces_seen, churned.ifaces_seen_gone, churned.ifaces_added
            ),
            "all",
            churned.ifaces_seen == churned.ifaces_added
                && churned.ifaces_seen_gone == churned.ifaces_added,
        ),
        check(
            "iperf3 periods failed",
            format!("{} of {}", failed.len(), periods.len()),
            "0",
            failed.is_empty() && !gbps.is_empty(),
        ),
        check("agent exit on SIGTERM", format!("{:?}", stopped.status), "0", agent_clean),
    ]);
    let minmax = |v: &[f64]| {
        (v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(f64::MIN, f64::max))
    };
    let (gmin, gmax) = minmax(&gbps);
    Ok(json!({
        "reach_bin": reach.display().to_string(),
        "minutes": args.minutes,
        "seconds": elapsed,
        "cycle_s": plan.cycle_s,
        "cycles": plan.cycles,
        "warmup_s": plan.warmup_s,
        "flood_s": args.flood_seconds,
        "sample_s": args.sample_seconds,
        "agent_args": agent_args,
        "ready": ready,
        "samples": samples.len(),
        "rss_kib": rss.json(),
        "fds": fds.json(),
        "fds_settled": fds_settled.json(),
        "bursts": bursts.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        "churn": {
            "namespaces": n,
            "seen": churned.ns.seen,
            "seen_gone": churned.ns.seen_gone,
            "leaked": churned.ns.leaked,
            "ifaces_added": churned.ifaces_added,
            "ifaces_seen": churned.ifaces_seen,
            "ifaces_seen_gone": churned.ifaces_seen_gone,
        },
        "binds": {
            "listens": binds.listens.load(Ordering::Relaxed),
            "udp_binds": binds.udp_binds.load(Ordering::Relaxed),
            "refused": binds.refused.load(Ordering::Relaxed),
        },
        "iperf3": {
            "periods": periods.len(),
            "failed": failed,
            "gbps": gbps,
            "gbps_median": median(&gbps),
            "gbps_min": gmin,
            "gbps_max": gmax,
        },
        "watched_end": watched_end,
        "machine_namespaces_end": machine_end,
        "agent_cpu_s": agent_cpu_s,
        "agent_exit_clean": agent_clean,
        "checks": checks,
    }))
}

/// Whether every check of a soak document passed.
pub fn passed(doc: &Value) -> bool {
    doc["checks"].as_array().is_some_and(|c| c.iter().all(|c| c["ok"] == true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_scales_with_the_run() {
        let p = Plan::of(30.0, 3.0).unwrap();
        assert_eq!((p.cycle_s, p.cycles, p.warmup_s), (60.0, 30, 300.0));
        let p = Plan::of(3.0, 3.0).unwrap();
        assert_eq!((p.cycle_s, p.cycles, p.warmup_s), (30.0, 6, 30.0));
        let p = Plan::of(120.0, 3.0).unwrap();
        assert_eq!((p.cycle_s, p.cycles, p.warmup_s), (60.0, 120, 300.0));
        assert!(Plan::of(1.0, 3.0).is_err());
        assert!(Plan::of(3.0, 20.0).is_err());
    }

    fn samples(values: &[(f64, f64)]) -> Vec<Sample> {
        values.iter().map(|&(t, v)| Sample { t, rss_kib: v, fds: v }).collect()
    }

    #[test]
    fn flat_compares_the_medians_of_the_two_windows() {
        // Warm-up ends at 30 s, run at 90 s, windows of 30 s.
        let s = samples(&[
            (2.0, 10.0),
            (10.0, 100.0),
            (20.0, 100.0),
            (30.0, 101.0),
            (50.0, 300.0),
            (70.0, 104.0),
            (80.0, 200.0),
            (90.0, 104.0),
        ]);
        let f = flatness(&s, |s| s.rss_kib, 30.0, 90.0, 30.0).unwrap();
        assert_eq!((f.warmup, f.last, f.first), (100.0, 104.0, 10.0));
        assert_eq!((f.warmup_max, f.last_max), (101.0, 200.0));
        assert!(f.ok());
        let s = samples(&[(10.0, 100.0), (70.0, 106.0), (90.0, 106.0)]);
        assert!(!flatness(&s, |s| s.fds, 30.0, 90.0, 30.0).unwrap().ok());
        assert!(flatness(&samples(&[(10.0, 1.0)]), |s| s.fds, 30.0, 90.0, 30.0).is_none());
    }

    #[test]
    fn a_burst_is_accounted_by_events_suppressed_and_lost() {
        let counted = SynCount { syn: 2000.0, suppressed: 97_000.0, lost: 10.0 };
        let b = Burst { rx: 99_010, in_segs: 99_010, counted, syn_elsewhere: 0.0 };
        assert_eq!(b.unaccounted(), 0.0);
        assert_eq!(Burst { rx: 99_015, ..b }.unaccounted(), 5.0);
    }

    #[test]
    fn iperf3_periods_are_read() {
        let ok = r#"{"end":{"sum_received":{"bits_per_second":2.5e10}}}"#;
        assert_eq!(iperf_gbps(ok), Ok(25.0));
        assert_eq!(
            iperf_gbps(r#"{"error":"the server is busy"}"#).unwrap_err(),
            "the server is busy"
        );
        assert!(iperf_gbps("").is_err());
    }

    #[test]
    fn arguments_are_parsed() {
        let a = Args::parse(["--minutes", "3", "--reach", "/bin/true"].map(String::from)).unwrap();
        assert_eq!((a.minutes, a.reach.unwrap()), (3.0, PathBuf::from("/bin/true")));
        assert!(Args::parse(["--hours".to_string()]).is_err());
        let doc = json!({"checks": [{"ok": true}, {"ok": false}]});
        assert!(!passed(&doc));
        assert!(passed(&json!({"checks": [{"ok": true}]})));
    }
}
