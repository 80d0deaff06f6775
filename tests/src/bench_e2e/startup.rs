//! How long `reach watch` takes from spawn to its "attached" line, and how much memory it holds
//! once attached: the default watch (packets: TC classifiers, the drop tracer) and
//! `--no-packets` (binds and listens only), both on the lab's server namespace. The runs
//! alternate between the two modes; an unmeasured run first warms the page cache.
use std::{path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use super::{Args, Pair, Proc, median};

/// A mode of `reach watch` and the line that says it is attached (its last announcement).
pub struct Mode {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub ready: &'static str,
}

pub const MODES: [Mode; 2] = [
    Mode { name: "reach watch", args: &[], ready: "watching drops" },
    Mode {
        name: "reach watch --no-packets",
        args: &["--no-packets"],
        ready: "watching binds and listens",
    },
];

fn start(pair: &Pair, reach: &Path, mode: &Mode) -> anyhow::Result<(Proc, f64)> {
    let mut cmd = Command::new(reach);
    cmd.args(["watch", "--netns", pair.server.name()]).args(mode.args);
    let mut p = Proc::spawn(mode.name, cmd)?;
    let at = p.wait_for(mode.ready, Duration::from_secs(60))?;
    let secs = at.duration_since(p.spawned).as_secs_f64();
    Ok((p, secs))
}

fn stop(p: Proc) -> anyhow::Result<()> {
    let name = p.name.clone();
    let s = p.stop(libc::SIGINT, Duration::from_secs(30))?;
    ensure!(
        !s.killed && s.status.is_some_and(|s| s.success()),
        "{name} did not stop cleanly on SIGINT ({:?})",
        s.status
    );
    Ok(())
}

pub fn bench(pair: &Pair, reach: &Path, args: &Args) -> anyhow::Result<Value> {
    let (warm, _) = start(pair, reach, &MODES[0]).context("the warm-up run")?;
    stop(warm)?;
    let mut times = vec![Vec::new(); MODES.len()];
    for run in 0..args.startup_runs {
        for (i, mode) in MODES.iter().enumerate() {
            let (p, secs) = start(pair, reach, mode)?;
            stop(p)?;
            eprintln!(
                "reach-bench: start-up {}/{} {:26} {:.3} s",
                run + 1,
                args.startup_runs,
                mode.name,
                secs
            );
            times[i].push(secs);
        }
    }
    let mut rows = Vec::new();
    for (i, mode) in MODES.iter().enumerate() {
        let (p, _) = start(pair, reach, mode)?;
        thread::sleep(Duration::from_secs_f64(args.steady_seconds));
        let stats = p.stats()?;
        stop(p)?;
        eprintln!(
            "reach-bench: {} after {} s: VmRSS {} KiB, VmHWM {} KiB",
            mode.name, args.steady_seconds, stats.rss_kib, stats.hwm_kib
        );
        let t = &times[i];
        rows.push(json!({
            "mode": mode.name,
            "ready_line": mode.ready,
            "startup_s": median(t),
            "startup_s_min": t.iter().copied().fold(f64::INFINITY, f64::min),
            "startup_s_max": t.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "startup_s_runs": t,
            "rss_kib": stats.rss_kib,
            "hwm_kib": stats.hwm_kib,
            "cpu_s": stats.cpu_s,
        }));
    }
    Ok(json!({
        "runs": args.startup_runs,
        "steady_seconds": args.steady_seconds,
        "modes": rows,
    }))
}
