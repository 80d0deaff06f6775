//! `cargo xtask fuzz`: every cargo-fuzz target of `fuzz/` (the parsers of bytes reach does not
//! control) run for a bounded time from its committed corpus (`fuzz/corpus/<target>/`), new
//! inputs going to a scratch directory so the checkout is never written; a crash or leak fails
//! the run naming the target and the artifact libFuzzer saved. `--merge` folds what the run found
//! into the committed corpus (minimised, for committing); `--record-seeds` records the seeds
//! afresh from this machine's kernel and tools (reach-record-seeds, root).
use std::{fs, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Args;

use crate::{
    run::{output_ok, run},
    workspace,
};

/// The cargo-fuzz release we install (its CLI and corpus layout are what this relies on).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Only these targets (default: every target `cargo fuzz list` names).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Merge the inputs that found new coverage into fuzz/corpus (minimised) afterwards.
    #[arg(long)]
    pub merge: bool,
    /// Record the seeds afresh (fuzz/corpus) from this machine before fuzzing. Needs root.
    #[arg(long)]
    pub record_seeds: bool,
}

fn fuzz_dir() -> PathBuf {
    workspace::root().join("fuzz")
}

fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"]).current_dir(fuzz_dir());
    cmd
}

/// cargo-fuzz, installed at [`CARGO_FUZZ_VERSION`] when missing.
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if output_ok(Command::new("cargo").args(["+nightly", "fuzz", "--version"]))
        .is_some_and(|v| v.contains(CARGO_FUZZ_VERSION))
    {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (the parsers' fuzzers)");
    run(Command::new("cargo").args([
        "install",
        "--locked",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
    ]))
}

/// One target's run: executions and the corpus it started from.
#[derive(Debug)]
pub struct Outcome {
    pub target: String,
    pub seconds: f64,
    pub executions: u64,
    pub seeds: usize,
}

pub fn fuzz(args: &FuzzArgs) -> anyhow::Result<Vec<Outcome>> {
    ensure_cargo_fuzz()?;
    if args.record_seeds {
        record_seeds()?;
    }
    run(cargo_fuzz().args(["build", "-O"])).context("building the fuzz targets failed")?;
    let listed = output_ok(cargo_fuzz().arg("list")).context("`cargo fuzz list` failed")?;
    let all: Vec<String> =
        listed.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let targets = if args.targets.is_empty() { all.clone() } else { args.targets.clone() };
    for t in &targets {
        ensure!(all.contains(t), "no fuzz target {t}; the targets are: {}", all.join(", "));
    }
    let scratch = workspace::target_dir().join("fuzz-scratch");
    let mut outcomes = Vec::new();
    for target in targets {
        let corpus = fuzz_dir().join("corpus").join(&target);
        let seeds = fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        ensure!(
            seeds > 0,
            "fuzz target {target} has no seeds in {}: run `cargo xtask fuzz --record-seeds` (root) and commit them",
            corpus.display()
        );
        let new = scratch.join(&target);
        let _ = fs::remove_dir_all(&new);
        fs::create_dir_all(&new)?;
        let started = Instant::now();
        let out = cargo_fuzz()
            .args(["run", "-O", &target])
            .arg(&new)
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={}", args.seconds),
                "-timeout=10",
                "-rss_limit_mb=4096",
            ])
            .output()
            .with_context(|| format!("running fuzz target {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({}); the input is under fuzz/artifacts/{target}/:\n{}",
                out.status,
                tail.join("\n")
            );
        }
        let executions = executions(&log).with_context(|| {
            format!("fuzz target {target}: no `#N DONE` line in libFuzzer's output:\n{log}")
        })?;
        let o = Outcome {
            target: target.clone(),
            seconds: started.elapsed().as_secs_f64(),
            executions,
            seeds,
        };
        eprintln!(
            "fuzz: {} ran {:.0} s: {} executions from {} seeds",
            o.target, o.seconds, o.executions, o.seeds
        );
        if args.merge {
            run(cargo_fuzz()
                .args(["run", "-O", &target])
                .arg(&corpus)
                .arg(&new)
                .args(["--", "-merge=1"]))?;
        }
        outcomes.push(o);
    }
    eprintln!("fuzz: every target ran clean:");
    for o in &outcomes {
        eprintln!(
            "  {:<16} {:>10} executions in {:>4.0} s ({} seeds)",
            o.target, o.executions, o.seconds, o.seeds
        );
    }
    Ok(outcomes)
}

/// The executions libFuzzer reports in its final `#N\tDONE …` line.
fn executions(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter(|l| l.contains("DONE"))
        .find_map(|l| l.trim_start_matches('#').split_whitespace().next()?.parse().ok())
}

fn record_seeds() -> anyhow::Result<()> {
    let mut build = workspace::cargo();
    build.args(["build", "-p", "reach-tests", "--bin", "reach-record-seeds"]);
    run(&mut build).context("building reach-record-seeds failed")?;
    let bin = workspace::target_dir().join("debug").join("reach-record-seeds");
    run(Command::new(bin).arg(corpus_dir())).context("recording the fuzz seeds failed")
}

fn corpus_dir() -> PathBuf {
    fuzz_dir().join("corpus")
}

#[cfg(test)]
mod tests {
    #[test]
    fn executions_come_from_libfuzzers_done_line() {
        let log = "#2\tINITED cov: 10 ft: 10 corp: 1/1b\n#81234\tDONE   cov: 412 ft: 990 corp: 80/3Kb lim: 4096 exec/s: 2707 rss: 60Mb\nDone 81234 runs in 31 second(s)\n";
        assert_eq!(super::executions(log), Some(81234));
        assert_eq!(super::executions("#2\tINITED cov: 10\n"), None);
    }
}
