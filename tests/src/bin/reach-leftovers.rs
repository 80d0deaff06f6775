//! `reach-leftovers [--netns NAME] [--iface IF]... -- COMMAND ARGS...`: runs COMMAND and reports
//! what it left behind (BPF programs and links, qdiscs, filters, TCX, nft tables, mounts, pins,
//! /run/reach: `reach_tests::leftovers`). For the QEMU guests, which run host binaries but have
//! no test harness: prints `=== leftovers`, then one line per leftover or `none`; exits with
//! COMMAND's status if it failed, 3 if something was left, else 0.
use std::process::{Command, exit};

use reach_agent::lab::NetNsFd;
use reach_tests::leftovers::{Leftovers, Scope};

const USAGE: &str = "usage: reach-leftovers [--netns NAME] [--iface IF]... -- COMMAND ARGS...";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else { usage() };
    let (options, command) = (&args[..split], &args[split + 1..]);
    if command.is_empty() {
        usage();
    }
    let (mut netns, mut ifaces) = (None, Vec::new());
    let mut it = options.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--netns" => netns = Some(value.clone()),
            "--iface" => ifaces.push(value.as_str()),
            _ => usage(),
        }
    }
    let ns = netns.map(|name| {
        NetNsFd::open(format!("/run/netns/{name}")).unwrap_or_else(|e| {
            eprintln!("reach-leftovers: {e}");
            exit(2)
        })
    });
    let check = Leftovers::snapshot(&Scope { netns: ns.as_ref(), ifaces: &ifaces });
    let status = Command::new(&command[0]).args(&command[1..]).status().unwrap_or_else(|e| {
        eprintln!("reach-leftovers: cannot run {command:?}: {e}");
        exit(2)
    });
    let left = check.left_after(std::time::Duration::from_secs(30));
    println!("=== leftovers");
    if left.is_empty() {
        println!("none");
    }
    for l in &left {
        println!("{l}");
    }
    if !status.success() {
        exit(status.code().unwrap_or(1));
    }
    exit(if left.is_empty() { 0 } else { 3 });
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    exit(2)
}
