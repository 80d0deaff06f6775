//! `reach lab`: every failure class of the story, reproduced for real and diagnosed by the real
//! `reach why`, in throwaway network namespaces.
//!
//! It builds a server and a client namespace over a veth pair, with a real firewalld in the
//! server namespace when firewalld is installed. Then, one scenario at a time (`scenario.rs`):
//! set it up (`stage.rs`: the demo server `reach lab-server`, firewalld runtime changes, a third
//! namespace, a full accept queue), start `reach why 10.77.0.1:PORT --netns … --json` and wait
//! until it is attached (`diagnosis.rs`), connect from the client namespace (`client.rs`),
//! collect the verdict, tear the scenario down. Last, a table scenario → what the client saw →
//! verdict → fix (`report.rs`), or one JSON object.
//!
//! Nothing outlives it: every object is a guard, removed on every path (also on Ctrl-C, which
//! stops at the next step and tears down before exiting with 130); leftovers of a killed earlier
//! run are removed first, and the demo servers exit by themselves when the lab's end of their
//! stdin closes.
mod client;
mod diagnosis;
mod report;
mod scenario;
mod server;
mod stage;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;

use crate::{
    kernel::privileges,
    lab::{self, Firewalld, TwoHosts},
};
use diagnosis::WhyRun;
use report::Outcome;
use scenario::Scenario;
use stage::{Lab, Stage};

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Print one JSON object: every scenario with its expected and actual verdict, what the
    /// client saw, the demo server's pid and namespace, and `reach why`'s whole answer.
    #[arg(long)]
    pub json: bool,
    /// Do not start firewalld in the server namespace, even when it is installed: the
    /// firewalld scenarios are then listed as not run.
    #[arg(long)]
    pub no_firewalld: bool,
}

pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("lab") {
        return Ok(code);
    }
    // Ctrl-C/SIGTERM are caught (the default action would kill us with namespaces, daemons and
    // attached probes still up) and turned into a request to stop at the next step; teardown
    // runs, then we exit with 130.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut work = tokio::task::spawn_blocking(move || run_blocking(&args, &flag));
    let result = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = sigint.recv() => { cancel.store(true, Ordering::Relaxed); eprintln!("reach lab: interrupted, tearing the lab down"); }
            _ = sigterm.recv() => { cancel.store(true, Ordering::Relaxed); eprintln!("reach lab: terminated, tearing the lab down"); }
        }
    };
    if cancel.load(Ordering::Relaxed) {
        return Ok(ExitCode::from(130));
    }
    result
}

fn run_blocking(args: &LabArgs, cancel: &AtomicBool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let stale = lab::clean_stale().context("cleaning leftovers of an earlier lab run")?;
    for ns in &stale.namespaces {
        eprintln!("lab: removed stale namespace {} of dead pid {}", ns.name, ns.owner_pid);
    }
    for dir in &stale.temp_dirs {
        eprintln!("lab: removed stale firewalld directory {}", dir.display());
    }
    let hosts = TwoHosts::new("lab").context("creating the lab namespaces")?;
    eprintln!(
        "lab: server namespace {} ({} {}), client namespace {} ({} {})",
        hosts.server.name(),
        TwoHosts::SERVER_IF,
        TwoHosts::SERVER_V4,
        hosts.client.name(),
        TwoHosts::CLIENT_IF,
        TwoHosts::CLIENT_V4,
    );
    let no_fw_reason = if args.no_firewalld {
        Some("--no-firewalld")
    } else if lab::FIREWALLD.path().is_err() {
        Some("firewalld not installed")
    } else {
        None
    };
    let fw = match no_fw_reason {
        Some(why) => {
            eprintln!("lab: no firewalld in the server namespace ({why})");
            None
        }
        None => {
            let fw = Firewalld::start(&hosts.server)
                .context("starting firewalld in the server namespace")?;
            eprintln!("lab: firewalld running (ready in {:.1} s)", fw.ready_in().as_secs_f64());
            Some(fw)
        }
    };
    let exe = std::env::current_exe().context("locating the reach binary")?;
    let lab = Lab { fw, hosts, exe };

    let all = scenario::all();
    let mut outcomes = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let step = format!("[{}/{}] {}", i + 1, all.len(), s.name);
        let not_run = if cancel.load(Ordering::Relaxed) {
            Some("interrupted")
        } else {
            no_fw_reason.filter(|_| s.needs_firewalld())
        };
        let outcome = match not_run {
            Some(why) => {
                eprintln!("lab: {step}: not run ({why})");
                skipped(s, why)
            }
            None => run_scenario(&lab, s, &step, cancel),
        };
        outcomes.push(outcome);
    }
    let firewalld = lab.fw.is_some();
    drop(lab);
    eprintln!("lab: torn down");

    let elapsed_s = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&outcomes, firewalld, elapsed_s))?
        );
    } else {
        print!("{}", report::human(&outcomes, elapsed_s));
    }
    let all_ok = outcomes.iter().all(|o| o.ok() != Some(false));
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn skipped(s: &Scenario, why: &str) -> Outcome {
    Outcome {
        name: s.name,
        port: s.port,
        expected: s.expected,
        skipped: Some(why.to_string()),
        client: None,
        server: None,
        answer: None,
        error: None,
        seconds: 0.0,
    }
}

/// Sets the scenario up, diagnoses the client's attempt, tears it down; failures are recorded
/// in the outcome (the other scenarios still run).
fn run_scenario(lab: &Lab, s: &Scenario, step: &str, cancel: &AtomicBool) -> Outcome {
    let started = Instant::now();
    let mut o = Outcome { skipped: None, ..skipped(s, "") };
    if let Err(e) = diagnose(lab, s, step, cancel, &mut o) {
        o.error = Some(format!("{e:#}"));
    }
    o.seconds = started.elapsed().as_secs_f64();
    let result = match (&o.error, o.verdict()) {
        (Some(e), _) => format!("failed: {}", e.lines().next().unwrap_or("")),
        (None, Some(v)) if v == s.expected => format!("{v} ✓"),
        (None, v) => format!("{} ✗ (expected {})", v.unwrap_or("?"), s.expected),
    };
    let saw = o.client.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into());
    eprintln!("lab: {step}: client saw {saw} → {result} ({:.1} s)", o.seconds);
    o
}

fn diagnose(
    lab: &Lab,
    s: &Scenario,
    step: &str,
    cancel: &AtomicBool,
    o: &mut Outcome,
) -> anyhow::Result<()> {
    let stage = Stage::build(lab, s)?;
    if let Some(server) = &stage.server {
        let netns = stage.app_ns.as_ref().map_or(lab.hosts.server.name(), |n| n.name());
        eprintln!(
            "lab: {step}: demo-server pid {} on {} in {netns}{}",
            server.pid(),
            server.listen,
            if stage.app_ns.is_some() { " (a third namespace, linked to nothing)" } else { "" }
        );
        o.server = Some((server.pid(), netns.to_string()));
    }
    let target = lab.target(s.port);
    let bus = lab.fw.as_ref().map(Firewalld::bus_address);
    let why = WhyRun::start(
        &lab.exe,
        &target.to_string(),
        lab.hosts.server.name(),
        TwoHosts::SERVER_IF,
        bus.as_deref(),
        cancel,
    )?;
    let (saw, conn) = client::connect(&lab.hosts.client, target, client::CONNECT_TIMEOUT)?;
    // A connected client hangs up at once; the demo server has already closed its side.
    drop(conn);
    o.client = Some(saw);
    o.answer = Some(why.finish(cancel)?);
    // `stage` drops here: the scenario is undone before the next one starts.
    Ok(())
}
