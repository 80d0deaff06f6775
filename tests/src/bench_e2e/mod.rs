//! reach-bench's end-to-end part (issue 15): what `reach watch` costs a real workload, measured
//! side by side with other observers in one run (ratios, never timed tests).
//!
//! 1. [`iperf`]: iperf3 TCP throughput over a veth pair between two lab namespaces with nothing
//!    attached, `reach watch` on the server namespace, tcpdump capturing SYNs there, and a
//!    bpftrace kfree_skb one-liner; rounds interleaved, the order rotating every round.
//! 2. [`flood`]: hping3 `--flood` SYNs to a closed port under `reach watch --json`: every SYN
//!    the server's veth received is accounted for by reach's SYN events, its rate-limit counter
//!    and its lost counter; reach's CPU time and peak RSS under the load.
//! 3. [`startup`]: time from spawning `reach watch` to its "attached" line, and its steady RSS.
//! 4. [`agent`]: `reach agent` watching every namespace: its memory and CPU idle, after two
//!    SYN floods that fill its flow table (bounded: no growth from the first to the second),
//!    and around a churn of namespaces (none held alive, none left watched).
//!
//! Everything runs in lab namespaces of its own ([`Pair`]: IPv4 only, static neighbours, so
//! the server's veth receives nothing but the load); every process started is a guard killed
//! (with its process group) on drop, and the namespaces go with the [`Pair`].
mod agent;
mod flood;
mod iperf;
mod pair;
mod procs;
pub mod soak;
mod startup;

use std::path::PathBuf;

use anyhow::{Context as _, bail, ensure};
pub use pair::Pair;
pub use procs::{Proc, ProcStats, cpu_seconds, median, status_kib};
use serde_json::{Value, json};

/// The end-to-end arguments of reach-bench (`--e2e-*` and `--reach`).
#[derive(Debug, Clone)]
pub struct Args {
    /// The `reach` binary measured (`--reach`, else $REACH_BIN).
    pub reach: Option<PathBuf>,
    /// iperf3 rounds (each runs every configuration once).
    pub rounds: usize,
    /// Seconds of each iperf3 run.
    pub iperf_seconds: u32,
    /// Seconds of the SYN flood.
    pub flood_seconds: f64,
    /// Measured start-ups per mode of `reach watch`.
    pub startup_runs: usize,
    /// Seconds `reach watch` runs attached before its steady RSS is read.
    pub steady_seconds: f64,
    /// Lab namespaces created and deleted one by one under `reach agent`.
    pub churn_namespaces: usize,
    /// Only the end-to-end benchmarks (for trying them alone; `cargo xtask bench` needs all).
    pub only: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            reach: None,
            rounds: 7,
            iperf_seconds: 3,
            flood_seconds: 5.0,
            startup_runs: 7,
            steady_seconds: 2.0,
            churn_namespaces: 100,
            only: false,
        }
    }
}

pub const HELP: &str = "  [--reach PATH ($REACH_BIN)] [--e2e-rounds N (7)] [--iperf-seconds N (3)] \
     [--flood-seconds S (5)] [--startup-runs N (7)] [--steady-seconds S (2)] [--churn-namespaces N (100)] [--e2e-only]";

impl Args {
    /// Takes `arg` (and its value from `next`) if it is one of ours; false if it is not.
    pub fn parse_arg(
        &mut self,
        arg: &str,
        mut next: impl FnMut() -> Option<String>,
    ) -> anyhow::Result<bool> {
        let mut value = |name: &str| -> anyhow::Result<String> {
            next().with_context(|| format!("{name} needs a value"))
        };
        match arg {
            "--reach" => self.reach = Some(PathBuf::from(value(arg)?)),
            "--e2e-rounds" => self.rounds = value(arg)?.parse().context("--e2e-rounds")?,
            "--iperf-seconds" => {
                self.iperf_seconds = value(arg)?.parse().context("--iperf-seconds")?
            }
            "--flood-seconds" => {
                self.flood_seconds = value(arg)?.parse().context("--flood-seconds")?
            }
            "--startup-runs" => {
                self.startup_runs = value(arg)?.parse().context("--startup-runs")?
            }
            "--steady-seconds" => {
                self.steady_seconds = value(arg)?.parse().context("--steady-seconds")?
            }
            "--churn-namespaces" => {
                self.churn_namespaces = value(arg)?.parse().context("--churn-namespaces")?
            }
            "--e2e-only" => self.only = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn validate(&self) -> anyhow::Result<PathBuf> {
        ensure!(self.rounds >= 1, "--e2e-rounds must be at least 1");
        ensure!(self.iperf_seconds >= 1, "--iperf-seconds must be at least 1");
        ensure!(
            self.flood_seconds.is_finite() && self.flood_seconds >= 0.2,
            "--flood-seconds must be at least 0.2"
        );
        ensure!(self.churn_namespaces >= 1, "--churn-namespaces must be at least 1");
        ensure!(self.startup_runs >= 1, "--startup-runs must be at least 1");
        ensure!(
            self.steady_seconds.is_finite() && self.steady_seconds > 0.0,
            "--steady-seconds must be positive"
        );
        let reach = match (&self.reach, std::env::var_os("REACH_BIN")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => bail!(
                "the end-to-end benchmarks need the reach binary: pass --reach PATH or set \
                 REACH_BIN (cargo xtask bench does)"
            ),
        };
        ensure!(reach.is_file(), "reach binary {} does not exist", reach.display());
        Ok(reach)
    }
}

/// The tools the benchmarks drive, each with the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("iperf3", "iperf3"),
    ("hping3", "hping3"),
    ("tcpdump", "tcpdump"),
    ("bpftrace", "bpftrace"),
    ("unshare", "util-linux"),
];

/// Runs the four end-to-end benchmarks and returns their JSON section (`e2e` of the
/// reach-bench document).
pub fn run(args: &Args) -> anyhow::Result<Value> {
    let reach = args.validate()?;
    let reach = reach.canonicalize().unwrap_or(reach);
    for (tool, package) in TOOLS {
        reach_agent::lab::Tool { name: tool, package }
            .path()
            .with_context(|| format!("{tool} is needed (cargo xtask setup installs {package})"))?;
    }
    let pair = Pair::new("bench-e2e").context("creating the lab namespaces")?;
    let iperf = iperf::bench(&pair, &reach, args).context("the iperf3 benchmark")?;
    let flood = flood::bench(&pair, &reach, args).context("the SYN flood benchmark")?;
    let startup = startup::bench(&pair, &reach, args).context("the start-up benchmark")?;
    let agent = agent::bench(&pair, &reach, args).context("the reach agent benchmark")?;
    pair.remove().context("removing the lab namespaces")?;
    Ok(json!({
        "reach_bin": reach.display().to_string(),
        "iperf3": iperf,
        "syn_flood": flood,
        "startup": startup,
        "agent": agent,
    }))
}
