//! `reach lab`: the built-in demo in throwaway network namespaces.
//!
//! Today it builds the two-host lab (a server and a client namespace over a veth pair, with a
//! real firewalld in the server namespace when firewalld is installed) and runs `reach doctor`
//! inside the server namespace, where it must find that firewalld; the failure scenarios of the
//! seed join as the diagnosis engine lands. Everything is torn down before exit, also on Ctrl-C,
//! and leftovers of a killed earlier run are removed first.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    kernel::privileges,
    lab::{self, Firewalld, TwoHosts},
};

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Print the doctor report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not start firewalld in the server namespace, even when it is installed.
    #[arg(long)]
    pub no_firewalld: bool,
}

pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("lab") {
        return Ok(code);
    }
    // The lab runs to completion in about a second; Ctrl-C/SIGTERM meanwhile are noted (so the
    // default action cannot kill us with namespaces and daemons still up) and honoured after
    // teardown.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut work = tokio::task::spawn_blocking(move || run_blocking(&args));
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = sigint.recv() => { interrupted = true; eprintln!("reach lab: interrupted, tearing the lab down"); }
            _ = sigterm.recv() => { interrupted = true; eprintln!("reach lab: terminated, tearing the lab down"); }
        }
    };
    if interrupted {
        return Ok(ExitCode::from(130));
    }
    result
}

fn run_blocking(args: &LabArgs) -> anyhow::Result<ExitCode> {
    let stale = lab::clean_stale().context("cleaning leftovers of an earlier lab run")?;
    for ns in &stale.namespaces {
        eprintln!("lab: removed stale namespace {} of dead pid {}", ns.name, ns.owner_pid);
    }
    let hosts = TwoHosts::new("lab").context("creating the lab namespaces")?;
    eprintln!(
        "lab: server namespace {} ({} {}/{}), client namespace {} ({} {}/{})",
        hosts.server.name(),
        TwoHosts::SERVER_IF,
        TwoHosts::SERVER_V4,
        TwoHosts::SERVER_V6,
        hosts.client.name(),
        TwoHosts::CLIENT_IF,
        TwoHosts::CLIENT_V4,
        TwoHosts::CLIENT_V6,
    );
    let firewalld = if args.no_firewalld || lab::FIREWALLD.path().is_err() {
        eprintln!(
            "lab: no firewalld in the server namespace ({})",
            if args.no_firewalld { "--no-firewalld" } else { "firewalld is not installed" }
        );
        None
    } else {
        let fw = Firewalld::start(&hosts.server)
            .context("starting firewalld in the server namespace")?;
        eprintln!(
            "lab: firewalld running in {} (ready in {:.2} s)",
            hosts.server.name(),
            fw.ready_in().as_secs_f64()
        );
        Some(fw)
    };

    let exe = std::env::current_exe().context("locating the reach binary")?;
    let mut doctor = hosts.server.command(&exe);
    doctor.arg("doctor");
    if args.json {
        doctor.arg("--json");
    }
    if let Some(fw) = &firewalld {
        doctor.args(["--firewalld-bus", &fw.bus_address()]);
    }
    eprintln!("lab: running `reach doctor` inside {}\n", hosts.server.name());
    let out = lab::output_within(&mut doctor, Duration::from_secs(60))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    drop(firewalld);
    drop(hosts);
    eprintln!("lab: torn down");
    Ok(ExitCode::from(out.status.code().unwrap_or(1).clamp(0, 255) as u8))
}
