//! `reach agent`'s footprint in one run: idle, under a SYN flood and under namespace churn.
//!
//! 1. **Steady**: the agent watching every namespace of the machine (the bench pair's among
//!    them), idle for `--steady-seconds`: VmRSS, VmHWM, CPU time.
//! 2. **SYN flood**, twice: `hping3 -S --flood --rand-source` to a closed port of the server
//!    namespace for `--flood-seconds` each. Random source addresses (and hping3's incrementing
//!    source port) make every SYN a new connection attempt, and the agent runs with a
//!    `--syn-rate` no flood reaches, so every SYN is an event: its flow table fills to its bound
//!    (65,536 flows) and has to evict. Each SYN the server's veth received is accounted for by
//!    a scrape of /metrics: the changes across the flood of `reach_syn_total` of the server
//!    namespace, `reach_events_suppressed_total` and `reach_events_lost_total` (kind `syn`),
//!    added up. Bounded memory: the RSS after the second flood is not above the RSS after the
//!    first (plus a margin).
//! 3. **Namespace churn**: `--churn-namespaces` lab namespaces, one at a time, each with a veth
//!    (addressed) into one anchor namespace: created, seen by the agent (its
//!    `reach_namespace_interfaces` series for it), deleted, seen gone. Afterwards the agent's
//!    `reach_watched_namespaces` is back where it was, and no deleted namespace is held alive:
//!    a namespace the agent still held would keep its veth, so every peer in the anchor must
//!    be gone (`leaked_namespaces`). RSS before and after.
use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use reach_agent::lab::{NetNs, Veth, VethEnd};
use serde_json::{Value, json};

use super::{Args, Pair, Proc, ProcStats, flood::CLOSED_PORT};
use crate::prometheus::{self, Scrape};

/// Above any rate hping3 reaches here: every SYN becomes an event, none is rate-limited, so the
/// flows reach the agent's table.
pub const SYN_RATE: u32 = 10_000_000;
/// Namespace listings every 200 ms, so churn goes fast; CPU at idle is measured with it.
pub const RESCAN_S: f64 = 0.2;
/// How long the agent may take to see a namespace come or go.
const SEE_WITHIN: Duration = Duration::from_secs(10);
/// The agent's `--flow-timeout` (its default): a flood's flows are reported unanswered that
/// long after their SYN, so its memory after a flood is read once they all were.
const FLOW_TIMEOUT: Duration = Duration::from_secs(3);
/// The agent is done with a flood when it uses less CPU than this over [`QUIET_OVER`].
const QUIET_CPU_S: f64 = 0.03;
const QUIET_OVER: Duration = Duration::from_millis(500);

/// A running `reach agent` and its metrics address.
pub(crate) struct Agent {
    pub(crate) proc: Proc,
    pub(crate) addr: SocketAddr,
}

impl Agent {
    fn start(reach: &Path) -> anyhow::Result<(Agent, Value)> {
        let (rescan, rate) = (RESCAN_S.to_string(), SYN_RATE.to_string());
        Agent::start_with(reach, &["--rescan", &rescan, "--syn-rate", &rate])
    }

    /// `reach agent --metrics <a free port> <args>`, once it said it is ready; with the
    /// namespaces and interfaces its ready line counted.
    pub(crate) fn start_with(reach: &Path, args: &[&str]) -> anyhow::Result<(Agent, Value)> {
        // reach refuses port 0 (Prometheus could not find it): a port free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(reach);
        cmd.args(["agent", "--metrics", &addr.to_string()]).args(args);
        let mut proc = Proc::spawn("reach agent", cmd)?;
        proc.wait_for("agent ready", Duration::from_secs(60))?;
        let ready = proc
            .lines()
            .into_iter()
            .find_map(|l| ready_counts(&l.text))
            .context("no \"agent ready: N namespaces, M interfaces\" line")?;
        let agent = Agent { proc, addr };
        Ok((agent, json!({"namespaces": ready.0, "interfaces": ready.1})))
    }

    pub(crate) fn scrape(&self) -> anyhow::Result<Scrape> {
        let (status, _, body) = prometheus::get(self.addr, "/metrics")
            .with_context(|| format!("GET http://{}/metrics", self.addr))?;
        ensure!(status == 200, "GET /metrics: {status}: {body}");
        prometheus::parse(&body).map_err(anyhow::Error::msg)
    }

    /// Scrapes until `done` holds, at most `within`; `None` when it never did.
    pub(crate) fn scrape_until(
        &self,
        within: Duration,
        done: impl Fn(&Scrape) -> bool,
    ) -> anyhow::Result<Option<Scrape>> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.scrape()?;
            if done(&s) {
                return Ok(Some(s));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Agent {
    /// The agent's account of the SYNs arriving at `server` once its counters stop moving (it
    /// reads the kernel's counters periodically): two scrapes 300 ms apart agree, at most 10 s
    /// (SYNs elsewhere on the machine may keep the machine-wide ones moving; then the last
    /// scrape is taken, and `false` says so).
    pub(crate) fn settled_syns(&self, server: &str) -> anyhow::Result<(SynCount, bool)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = SynCount::of(&self.scrape()?, server);
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = SynCount::of(&self.scrape()?, server);
            if now == last || Instant::now() > deadline {
                return Ok((now, now == last));
            }
            last = now;
        }
    }

    /// Waits until the agent uses less than [`QUIET_CPU_S`] over [`QUIET_OVER`]; false when it
    /// did not within `within`.
    fn quiet_within(&self, within: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        let mut last = self.proc.stats()?.cpu_s;
        loop {
            thread::sleep(QUIET_OVER);
            let now = self.proc.stats()?.cpu_s;
            if now - last < QUIET_CPU_S {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            last = now;
        }
    }
}

/// `reach: agent ready: 12 namespaces, 30 interfaces watched` → (12, 30).
pub fn ready_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("agent ready: ").nth(1)?;
    let (ns, rest) = rest.split_once(" namespaces, ")?;
    let (ifs, _) = rest.split_once(" interfaces")?;
    Some((ns.trim().parse().ok()?, ifs.trim().parse().ok()?))
}

/// The agent's account of the SYNs arriving at `netns`: its SYN events there, and the
/// machine-wide SYN events rate-limited and lost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SynCount {
    pub syn: f64,
    pub suppressed: f64,
    pub lost: f64,
}

impl SynCount {
    pub fn of(s: &Scrape, netns: &str) -> SynCount {
        SynCount {
            syn: s.sum("reach_syn_total", &[("netns", netns)]),
            suppressed: s.sum("reach_events_suppressed_total", &[("kind", "syn")]),
            lost: s.sum("reach_events_lost_total", &[("kind", "syn")]),
        }
    }

    pub fn total(&self) -> f64 {
        self.syn + self.suppressed + self.lost
    }
}

/// How many of the agent's open files are network namespaces (`net:[inode]`).
pub(crate) fn netns_fds(pid: i32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(target) = std::fs::read_link(e?.path()) else { continue };
        n += u64::from(target.to_string_lossy().starts_with("net:["));
    }
    Ok(n)
}

/// One flood: hping3 from the client namespace, then the agent's counters once they stop
/// moving (it reads the kernel's counters periodically).
fn flood(pair: &Pair, agent: &Agent, server: &str, args: &Args) -> anyhow::Result<Value> {
    let settle = || agent.settled_syns(server);
    let (c0, settled0) = settle()?;
    let rx0 = pair.server_rx_packets()?;
    let before = agent.proc.stats()?;
    let mut cmd = Pair::command_in(&pair.client, "hping3")?;
    cmd.args(["-S", "--flood", "--rand-source", "-p", &CLOSED_PORT.to_string()])
        .arg(Pair::SERVER_V4.to_string());
    let start = Instant::now();
    let hping = Proc::spawn("hping3 --flood --rand-source", cmd)?;
    thread::sleep(Duration::from_secs_f64(args.flood_seconds));
    let hping = hping.stop(libc::SIGINT, Duration::from_secs(5))?;
    let elapsed = start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(100));
    let rx = pair.server_rx_packets()? - rx0;
    let (c1, settled1) = settle()?;
    let under_load = agent.proc.stats()?;
    // Then the flood's flows time out and are reported; the agent is done with them when it
    // goes quiet (at most 20 s more).
    let digest = Instant::now();
    thread::sleep(FLOW_TIMEOUT + Duration::from_millis(500));
    let quiet = agent.quiet_within(Duration::from_secs(20))?;
    let digest_s = digest.elapsed().as_secs_f64();
    let after = agent.proc.stats()?;
    let attempts = agent.scrape()?.sum("reach_connection_attempts_total", &[("netns", server)]);
    let d = SynCount {
        syn: c1.syn - c0.syn,
        suppressed: c1.suppressed - c0.suppressed,
        lost: c1.lost - c0.lost,
    };
    let counted = d.total();
    let unaccounted = rx as f64 - counted;
    let cpu = after.cpu_s - before.cpu_s;
    eprintln!(
        "reach-bench: agent flood {rx} SYNs in {elapsed:.1} s: {} events + {} suppressed + {} \
         lost = {counted}, unaccounted {unaccounted}; agent {cpu:.2} CPU s (quiet after \
         {digest_s:.1} s: {quiet}), VmRSS {} KiB, VmHWM {} KiB",
        d.syn, d.suppressed, d.lost, after.rss_kib, after.hwm_kib
    );
    Ok(json!({
        "seconds": elapsed,
        "hping3_sent": super::flood::hping_sent(&hping.lines),
        "rx_packets": rx,
        "syn_rate": rx as f64 / elapsed,
        "reach_syn": d.syn,
        "suppressed_syn": d.suppressed,
        "lost_syn": d.lost,
        "counted": counted,
        "unaccounted": unaccounted,
        "counters_settled": settled0 && settled1,
        "cpu_s": cpu,
        "cpu_s_to_counted": under_load.cpu_s - before.cpu_s,
        "rss_kib_counted": under_load.rss_kib,
        "digest_s": digest_s,
        "quiet": quiet,
        "attempts_total": attempts,
        "rss_kib": after.rss_kib,
        "hwm_kib": after.hwm_kib,
        // The agent taps every namespace: others appearing meanwhile grow it too.
        "machine_namespaces": machine_namespaces()?,
    }))
}

/// The figures of one churn run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Churn {
    pub(crate) seen: u64,
    pub(crate) seen_gone: u64,
    pub(crate) leaked: u64,
}

/// Creates, waits for, deletes and waits for the disappearance of `n` namespaces, one at a
/// time, each with a veth `chI` into `anchor` (I from `first` on, modulo the 16,384 /30s of
/// the address block).
pub(crate) fn churn(
    agent: &Agent,
    anchor: &NetNs,
    first: usize,
    n: usize,
) -> anyhow::Result<Churn> {
    let mut c = Churn { seen: 0, seen_gone: 0, leaked: 0 };
    let mut peers = Vec::new();
    for i in (first..first + n).map(|i| i % 16_384) {
        let ns = NetNs::new(&format!("churn{i}"))?;
        let name = ns.name().to_string();
        let peer = format!("ch{i}");
        // 10.81.0.0/16 in /30s: the namespace .1, the anchor .2.
        let base = 4 * i as u32;
        let addr = |host: u32| {
            let a = 0x0a51_0000 + base + host;
            format!("{}/30", std::net::Ipv4Addr::from(a))
        };
        // The churned namespace's end first: its guard then finds the namespace gone after it
        // is removed, and leaves the anchor's end alone (it must die with the namespace).
        let link = Veth::create(
            VethEnd::new(&ns, "eth0").addr(&addr(1)),
            VethEnd::new(anchor, &peer).addr(&addr(2)),
        )?;
        let tapped = |s: &Scrape| s.sum("reach_namespace_interfaces", &[("netns", &name)]) >= 1.0;
        c.seen += u64::from(agent.scrape_until(SEE_WITHIN, tapped)?.is_some());
        ns.remove().with_context(|| format!("removing {name}"))?;
        drop(link);
        let gone = |s: &Scrape| s.sum("reach_namespace_interfaces", &[("netns", &name)]) == 0.0;
        c.seen_gone += u64::from(agent.scrape_until(SEE_WITHIN, gone)?.is_some());
        peers.push(peer);
    }
    // The kernel frees a namespace (and its veth pairs) asynchronously once nothing holds it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = anchor.ip(&["-j", "link", "show"])?;
        let links: Value = serde_json::from_str(&out).context("ip -j link printed no JSON")?;
        let left = links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|name| peers.iter().any(|p| p == name))
            .count() as u64;
        c.leaked = left;
        if left == 0 || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(c)
}

pub(crate) fn watched(s: &Scrape) -> f64 {
    s.sum("reach_watched_namespaces", &[])
}

/// The namespaces the agent exports as tapped (`reach_namespace_interfaces` ≥ 1; a gone one
/// stays at 0 for the series grace).
fn tapped_names(s: &Scrape) -> Vec<String> {
    let mut v: Vec<String> = s
        .matching("reach_namespace_interfaces", &[])
        .filter(|x| x.value >= 1.0)
        .filter_map(|x| x.labels.get("netns").cloned())
        .collect();
    v.sort();
    v
}

/// The network namespaces of the machine as the agent's inventory finds them, counted
/// independently: the `/run/netns` names and every process's namespace, by inode.
pub fn machine_namespaces() -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut inodes = std::collections::BTreeSet::new();
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        if let Ok(m) = std::fs::metadata(e.path()) {
            // An entry whose mount is gone is a plain (empty) file, not a namespace.
            if m.dev() != std::fs::metadata("/run/netns")?.dev() {
                inodes.insert(m.ino());
            }
        }
    }
    for e in std::fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Processes exit meanwhile; kernel threads have no namespace link to read.
        if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
            inodes.insert(m.ino());
        }
    }
    Ok(inodes.len() as u64)
}

fn stats_json(s: &ProcStats) -> Value {
    json!({"rss_kib": s.rss_kib, "hwm_kib": s.hwm_kib, "cpu_s": s.cpu_s})
}

pub fn bench(pair: &Pair, reach: &Path, args: &Args) -> anyhow::Result<Value> {
    let (agent, ready) = Agent::start(reach)?;
    let server = pair.server.name().to_string();
    // The pair's server namespace is followed (its series exist once it is tapped).
    agent
        .scrape_until(SEE_WITHIN, |s| {
            s.sum("reach_namespace_interfaces", &[("netns", &server)]) >= 1.0
        })?
        .with_context(|| format!("reach agent does not watch the server namespace {server}"))?;

    thread::sleep(Duration::from_secs_f64(args.steady_seconds));
    let (steady, machine0_steady) = (agent.proc.stats()?, machine_namespaces()?);
    eprintln!(
        "reach-bench: reach agent idle {} s: VmRSS {} KiB, VmHWM {} KiB, {:.2} CPU s",
        args.steady_seconds, steady.rss_kib, steady.hwm_kib, steady.cpu_s
    );

    let first = flood(pair, &agent, &server, args).context("the first flood")?;
    let second = flood(pair, &agent, &server, args).context("the second flood")?;
    let kib = |v: &Value| v["rss_kib"].as_f64().unwrap_or(f64::NAN);
    let flood_growth = kib(&second) - kib(&first);

    let anchor = NetNs::new("churn-anchor")?;
    // The anchor itself is a namespace the agent follows: wait for it before the baseline.
    let anchor_name = anchor.name().to_string();
    agent.scrape_until(SEE_WITHIN, |s| {
        s.has("reach_namespace_interfaces", &[("netns", &anchor_name)])
    })?;
    let s0 = agent.scrape()?;
    let (watched0, names0, machine0) = (watched(&s0), tapped_names(&s0), machine_namespaces()?);
    let (fds0, before) = (netns_fds(agent.proc.pid())?, agent.proc.stats()?);
    let start = Instant::now();
    let c = churn(&agent, &anchor, 0, args.churn_namespaces).context("the namespace churn")?;
    let churn_s = start.elapsed().as_secs_f64();
    // The last deletion is seen at the next listing: the gauge then matches the machine's
    // namespaces (counted independently; other namespaces may come and go meanwhile).
    let matches = |s: &Scrape| machine_namespaces().is_ok_and(|m| watched(s) == m as f64);
    let s1 =
        agent.scrape_until(Duration::from_secs(5), matches)?.map_or_else(|| agent.scrape(), Ok)?;
    let (back, names1, machine1) = (watched(&s1), tapped_names(&s1), machine_namespaces()?);
    let (fds1, after) = (netns_fds(agent.proc.pid())?, agent.proc.stats()?);
    let churn_growth = after.rss_kib as f64 - before.rss_kib as f64;
    eprintln!(
        "reach-bench: agent churn of {} namespaces in {churn_s:.1} s: {} seen, {} seen gone, {} \
         leaked; watched {watched0} → {back} (the machine's {machine0} → {machine1}); VmRSS {} → {} KiB; namespace fds {fds0} → {fds1}",
        args.churn_namespaces, c.seen, c.seen_gone, c.leaked, before.rss_kib, after.rss_kib
    );
    anchor.remove().context("removing the churn anchor")?;

    let stopped = agent.proc.stop(libc::SIGTERM, Duration::from_secs(30))?;
    if stopped.killed || !stopped.status.is_some_and(|s| s.success()) {
        bail!(
            "reach agent did not stop cleanly on SIGTERM ({:?}):\n{}",
            stopped.status,
            stopped
                .lines
                .iter()
                .rev()
                .take(20)
                .map(|l| format!("  {}\n", l.text))
                .collect::<String>()
        );
    }
    Ok(json!({
        "rescan_s": RESCAN_S,
        "syn_rate_limit": SYN_RATE,
        "closed_port": CLOSED_PORT,
        "ready": ready,
        "steady": {
            "seconds": args.steady_seconds,
            "rss_kib": steady.rss_kib,
            "hwm_kib": steady.hwm_kib,
            "cpu_s": steady.cpu_s,
            "machine_namespaces": machine0_steady,
        },
        "floods": [first, second],
        "flood_growth_kib": flood_growth,
        "churn": {
            "namespaces": args.churn_namespaces,
            "seconds": churn_s,
            "seen": c.seen,
            "seen_gone": c.seen_gone,
            "leaked_namespaces": c.leaked,
            "watched_before": watched0,
            "watched_after": back,
            "machine_namespaces_before": machine0,
            "machine_namespaces_after": machine1,
            "tapped_before": names0,
            "tapped_after": names1,
            "netns_fds_before": fds0,
            "netns_fds_after": fds1,
            "before": stats_json(&before),
            "after": stats_json(&after),
            "growth_kib": churn_growth,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_is_read() {
        assert_eq!(
            ready_counts("reach: agent ready: 12 namespaces, 30 interfaces watched"),
            Some((12, 30))
        );
        assert_eq!(ready_counts("reach: serving metrics on http://127.0.0.1:1/metrics"), None);
    }

    #[test]
    fn syns_are_counted_in_the_server_namespace_only() {
        let s = prometheus::parse(
            "reach_syn_total{netns=\"srv\"} 5\nreach_syn_total{netns=\"cli\"} 7\n\
             reach_events_suppressed_total{kind=\"syn\"} 3\n\
             reach_events_suppressed_total{kind=\"other\"} 9\n\
             reach_events_lost_total{kind=\"syn\"} 2\nreach_events_lost_total{kind=\"other\"} 4\n",
        )
        .unwrap();
        let c = SynCount::of(&s, "srv");
        assert_eq!((c.syn, c.suppressed, c.lost, c.total()), (5.0, 3.0, 2.0, 10.0));
    }
}
