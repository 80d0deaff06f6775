//! `reach lab`: every failure class of the story, reproduced for real and diagnosed by the real
//! `reach why`, in throwaway network namespaces.
//!
//! It builds a server and a client namespace over a veth pair, with a real firewalld in the
//! server namespace when firewalld is installed. Then for each scenario (`scenario.rs`): set it
//! up (`stage.rs`: the demo server `reach lab-server`, firewalld runtime changes, a second
//! address, an nftables rule, a third namespace, a full accept queue), start `reach why
//! ADDR:PORT --netns … --json` and wait until it is attached (`diagnosis.rs`), connect from the
//! client namespace or the server's own (`client.rs`), collect the verdict, tear the scenario
//! down. Last, a table scenario → what the client saw → verdict → fix (`report.rs`), or one
//! JSON object.
//!
//! The scenarios that change firewalld run one after another in the main pair (firewalld's
//! configuration is one per namespace). Every other scenario runs in a server and client pair
//! of its own, [`CONCURRENT`] at a time beside them: much of a scenario is waiting (firewalld
//! reloading, a client timing out, `reach why` settling), and `reach why` installs its nftables
//! trace table per namespace, so two of them must never share a server namespace.
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
    path::Path,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Instant,
};

use anyhow::Context as _;

use crate::{
    kernel::privileges,
    lab::{self, Firewalld, FirewalldBuild, FirewalldOptions, TwoHosts},
};
use diagnosis::WhyRun;
use report::Outcome;
use scenario::Scenario;
use stage::{Lab, Stage};

/// Scenarios running at once in namespaces of their own, beside the firewalld ones. Attaching
/// is CPU-bound (BTF and ELF parsing: ~2.5 s of CPU per `reach why` of a debug build), so on a
/// 2-core machine more than three `reach why` at once only make each attach more slowly.
const CONCURRENT: usize = 2;

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
    /// Run the server namespace's firewalld from DIR, a Debian root with firewalld, nftables
    /// and D-Bus installed (its daemons and firewall-cmd run chrooted there), instead of the
    /// installed firewalld: to see the lab on another firewalld version. `cargo xtask setup`
    /// builds one with firewalld 2.x at ~/.cache/reach/firewalld/trixie.
    #[arg(long, value_name = "DIR", conflicts_with = "no_firewalld")]
    pub firewalld_root: Option<std::path::PathBuf>,
    /// Publish the "published port" scenario's app with a real Docker: dockerd from DIR, a
    /// root holding Debian's docker.io, containerd and runc (`cargo xtask setup` unpacks one at
    /// ~/.cache/reach/docker/root; `cargo xtask lab` passes it), started in the server
    /// namespace with private data and exec roots, and `docker run -p 8094:80` of a busybox
    /// image built locally. Without it, Docker's DNAT is recreated with nft.
    #[arg(long, value_name = "DIR")]
    pub docker_root: Option<std::path::PathBuf>,
}

pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("lab") {
        return Ok(code);
    }
    // Bad input is told before anything is created.
    let build = match &args.firewalld_root {
        None => FirewalldBuild::host(),
        Some(dir) => {
            let build = FirewalldBuild::root(dir);
            if let Err(e) = build.version() {
                eprintln!(
                    "reach lab: --firewalld-root {}: not a root with a working firewalld ({e}); \
                     give a Debian root with firewalld, nftables and dbus installed (`cargo \
                     xtask setup` builds one at ~/.cache/reach/firewalld/trixie)",
                    dir.display()
                );
                return Ok(ExitCode::from(2));
            }
            build
        }
    };
    if let Some(dir) = &args.docker_root
        && let Err(e) = lab::docker::root_version(dir)
    {
        eprintln!(
            "reach lab: --docker-root {}: no dockerd that starts there ({e}); give a root with \
             Debian's docker.io, containerd and runc unpacked (`cargo xtask setup` unpacks one at \
             ~/.cache/reach/docker/root)",
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    // Ctrl-C/SIGTERM are caught (the default action would kill us with namespaces, daemons and
    // attached probes still up) and turned into a request to stop at the next step; teardown
    // runs, then we exit with 130.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut work = tokio::task::spawn_blocking(move || run_blocking(&args, build, &flag));
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

fn run_blocking(
    args: &LabArgs,
    build: FirewalldBuild,
    cancel: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let stale = lab::clean_stale().context("cleaning leftovers of an earlier lab run")?;
    for ns in &stale.namespaces {
        eprintln!("lab: removed stale namespace {} of dead pid {}", ns.name, ns.owner_pid);
    }
    for dir in &stale.temp_dirs {
        eprintln!("lab: removed stale lab directory {}", dir.display());
    }
    for dir in &stale.cgroups {
        eprintln!("lab: removed stale cgroup {} (a killed lab's containers)", dir.display());
    }
    // tracefs and securityfs: each `reach why` the lab runs mounts what it needs in a mount
    // namespace of its own (kernel/private_mounts.rs); the lab mounts nothing a killed lab
    // could leave behind.
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
    } else if build == FirewalldBuild::Host && lab::FIREWALLD.path().is_err() {
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
            let fw = Firewalld::start_with(
                &hosts.server,
                FirewalldOptions { build, ..Default::default() },
            )
            .context("starting firewalld in the server namespace")?;
            eprintln!(
                "lab: firewalld {} running ({}, ready in {:.1} s)",
                fw.version(),
                fw.build(),
                fw.ready_in().as_secs_f64()
            );
            Some(fw)
        }
    };
    let exe = std::env::current_exe().context("locating the reach binary")?;
    let docker_root = args.docker_root.clone();
    let lab = Lab { fw, hosts, exe: exe.clone(), docker_root: docker_root.clone() };

    let all = scenario::all();
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(all.iter().map(|_| None).collect());
    let record = |i: usize, o: Outcome| {
        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(o);
    };
    let step = |i: usize| format!("[{}/{}] {}", i + 1, all.len(), all[i].name);
    let not_run = |s: &Scenario| {
        if cancel.load(Ordering::Relaxed) {
            Some("interrupted")
        } else {
            no_fw_reason.filter(|_| s.needs_firewalld())
        }
    };
    let own: Vec<usize> = (0..all.len()).filter(|&i| !all[i].in_main_lab()).collect();
    let next_own = AtomicUsize::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            for i in (0..all.len()).filter(|&i| all[i].in_main_lab()) {
                let o = match not_run(&all[i]) {
                    Some(why) => not_run_outcome(&all[i], &step(i), why),
                    None => run_scenario(&lab, &all[i], &step(i), cancel),
                };
                record(i, o);
            }
        });
        for _ in 0..CONCURRENT {
            scope.spawn(|| {
                while let Some(&i) = own.get(next_own.fetch_add(1, Ordering::Relaxed)) {
                    let o = match not_run(&all[i]) {
                        Some(why) => not_run_outcome(&all[i], &step(i), why),
                        None => run_in_own_namespaces(
                            &exe,
                            docker_root.as_deref(),
                            &all[i],
                            &step(i),
                            cancel,
                        ),
                    };
                    record(i, o);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(&all)
        .map(|(o, s)| o.unwrap_or_else(|| skipped(s, "not reached")))
        .collect();
    let firewalld = lab.fw.as_ref().map(|f| f.version().to_string());
    drop(lab);
    eprintln!("lab: torn down");

    let elapsed_s = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(
                &outcomes,
                firewalld.as_deref(),
                elapsed_s
            ))?
        );
    } else {
        print!("{}", report::human(&outcomes, elapsed_s));
    }
    let all_ok = outcomes.iter().all(|o| o.ok() != Some(false));
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn not_run_outcome(s: &Scenario, step: &str, why: &str) -> Outcome {
    eprintln!("lab: {step}: not run ({why})");
    skipped(s, why)
}

/// A scenario in a server and client pair of its own (no firewalld), removed right after.
fn run_in_own_namespaces(
    exe: &Path,
    docker_root: Option<&Path>,
    s: &Scenario,
    step: &str,
    cancel: &AtomicBool,
) -> Outcome {
    let hosts = match TwoHosts::new(&format!("lab{}", s.port)) {
        Ok(h) => h,
        Err(e) => {
            let mut o = Outcome { skipped: None, ..skipped(s, "") };
            o.error = Some(format!("creating the scenario's namespaces: {e:#}"));
            eprintln!("lab: {step}: failed: creating its namespaces: {e}");
            return o;
        }
    };
    eprintln!(
        "lab: {step}: server namespace {}, client namespace {}",
        hosts.server.name(),
        hosts.client.name()
    );
    let lab = Lab {
        fw: None,
        hosts,
        exe: exe.to_path_buf(),
        docker_root: docker_root.map(Path::to_path_buf),
    };
    run_scenario(&lab, s, step, cancel)
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
        phases: Vec::new(),
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
    let phases: Vec<String> = o.phases.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    eprintln!(
        "lab: {step}: client saw {saw} → {result} ({:.1} s: {})",
        o.seconds,
        phases.join(", ")
    );
    o
}

fn diagnose(
    lab: &Lab,
    s: &Scenario,
    step: &str,
    cancel: &AtomicBool,
    o: &mut Outcome,
) -> anyhow::Result<()> {
    let mut clock = Instant::now();
    let mut lap = |o: &mut Outcome, phase: &'static str| {
        o.phases.push((phase, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    let stage = Stage::build(lab, s)?;
    lap(o, "set-up");
    if let Some(server) = &stage.server {
        let netns = stage.app_ns.as_ref().map_or(lab.hosts.server.name(), |n| n.name());
        eprintln!(
            "lab: {step}: demo-server pid {} on {} in {netns}{}",
            server.pid(),
            server.listen,
            match s.server {
                scenario::Server::OtherNetns => " (a third namespace, linked to nothing)",
                scenario::Server::Published { .. } => " (an app namespace behind a published port)",
                scenario::Server::Service => " (the serving endpoint of a Service)",
                _ => "",
            }
        );
        o.server = Some((server.pid(), netns.to_string()));
    }
    if let Some((pid, netns)) = &stage.container {
        eprintln!(
            "lab: {step}: busybox httpd pid {pid} in Docker container {} ({netns}), published \
             by `docker run -p {}:{}`",
            stage::CONTAINER,
            s.port,
            scenario::APP_PORT
        );
        o.server = Some((*pid, netns.clone()));
    }
    let target = s.target();
    let bus = lab.fw.as_ref().map(Firewalld::bus_address);
    let why = WhyRun::start(
        &lab.exe,
        &target.to_string(),
        lab.hosts.server.name(),
        s.ingress(),
        bus.as_deref(),
        cancel,
    )?;
    lap(o, "attach");
    let (saw, conn) = client::connect(lab.client_ns(s), target, client::CONNECT_TIMEOUT)?;
    // A connected client hangs up at once; the demo server has already closed its side.
    drop(conn);
    o.client = Some(saw);
    lap(o, "client");
    o.answer = Some(why.finish(cancel)?);
    lap(o, "answer");
    // The scenario is undone before the next one starts.
    drop(stage);
    lap(o, "teardown");
    Ok(())
}
