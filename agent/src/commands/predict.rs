//! `reach predict`: what firewalld would do with a client's SYN, before any client tries —
//! from firewalld's live configuration (D-Bus): the zone that takes it (by source, interface or
//! default), the deciding rule (port, service, rich rule or target) and the fix.
use std::{net::IpAddr, process::ExitCode};

use crate::firewall::{firewalld, predict};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The TCP port the client connects to.
    pub port: u16,
    /// The client's address (IPv4 or IPv6).
    #[arg(long, value_name = "ADDR")]
    pub from: IpAddr,
    /// The interface the SYN arrives on (e.g. eth0; on WSL2 NAT, Windows' localhost is `lo`).
    #[arg(long, value_name = "IFACE")]
    pub iface: String,
    /// D-Bus address of firewalld's bus (default: the system bus).
    #[arg(long, value_name = "ADDRESS")]
    pub firewalld_bus: Option<String>,
    /// Print the prediction as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes (README): 0 firewalld would accept; 4 it would reject or drop; 1 firewalld's
/// configuration could not be read; 2 bad usage.
pub async fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    if args.port == 0 {
        eprintln!("reach predict: port 0 is not a port a client can connect to");
        return Ok(ExitCode::from(2));
    }
    let cfg = match firewalld::read(args.firewalld_bus.as_deref()).await {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!(
                "reach predict: cannot read firewalld's configuration: {e:#}\n\
                 (no firewalld: nothing in firewalld decides; `reach watch --port {}` shows what nftables does)",
                args.port
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let p = predict::predict(&cfg, &args.iface, args.from, args.port);
    let blocked = !matches!(p.decision, predict::Decision::Accept { .. });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        let verb = if blocked { "block" } else { "accept" };
        println!(
            "firewalld {} would {verb} a SYN from {} on {} to port {}/tcp",
            cfg.version, args.from, args.iface, args.port
        );
        println!("  {}", p.reason);
        for cmd in &p.fix {
            println!("  fix: {cmd}");
        }
    }
    Ok(ExitCode::from(if blocked { 4 } else { 0 }))
}
