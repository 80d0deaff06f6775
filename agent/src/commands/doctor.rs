//! `reach doctor`: what this kernel lets reach do, and the attach plan it would use.
use std::{fmt::Write as _, path::Path, process::ExitCode};

use serde::Serialize;

use crate::{
    firewall::{firewalld_presence, nft_tables},
    kernel::{
        capabilities::{self, Capabilities, ProbeFacts},
        lockdown,
        privileges::{self, Privileges},
        release::{self, Release},
        wsl::{self, Wsl2},
    },
    netns::{enter, inventory},
    probes::plan::{self, Plan},
};

/// Exit codes of `reach doctor` (documented in the README and `--help`).
pub mod exit {
    /// Privileged, and every part of the attach plan has a working mechanism.
    pub const OK: u8 = 0;
    /// Unexpected internal error.
    pub const ERROR: u8 = 1;
    /// Bad command line (clap's code).
    pub const USAGE: u8 = 2;
    /// Missing privileges: probes could not run.
    pub const NO_PRIVILEGES: u8 = 3;
    /// Some part of the plan (bind, listen, ingress, drop) has no usable mechanism.
    pub const PLAN_INCOMPLETE: u8 = 4;
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print one JSON object (the stable contract documented in the README) instead of text.
    #[arg(long)]
    pub json: bool,
    /// D-Bus address of a firewalld bus to check in addition to the system bus
    /// (e.g. a test fixture's private bus: `unix:path=/tmp/.../bus`).
    #[arg(long, value_name = "ADDRESS")]
    pub firewalld_bus: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: KernelFacts,
    pub privileges: Privileges,
    pub capabilities: Capabilities,
    pub details: ProbeFacts,
    pub firewalld: Vec<FirewalldInNetns>,
    pub plan: Plan,
}

#[derive(Debug, Serialize)]
pub struct KernelFacts {
    #[serde(flatten)]
    pub release: Release,
    pub btf: Presence,
    pub lockdown: Presence,
    /// Present only on WSL2.
    pub wsl2: Option<Wsl2>,
}

/// A fact that is either known (value) or unknown/absent (reason).
#[derive(Debug, Serialize)]
pub struct Presence {
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct FirewalldInNetns {
    pub netns: NetnsRef,
    pub present: bool,
    /// How firewalld was recognised (`table inet firewalld`, `D-Bus name owned by pid N`).
    pub evidence: Vec<String>,
    /// All nftables tables of the namespace (`family name`).
    pub nft_tables: Vec<String>,
    /// Why the tables could not be read, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NetnsRef {
    pub inode: u64,
    pub name: String,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = gather(args.firewalld_bus.as_deref()).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::from(exit_code(&report)))
}

pub fn exit_code(report: &Report) -> u8 {
    if !report.privileges.can_load_bpf() || !report.privileges.missing.is_empty() {
        exit::NO_PRIVILEGES
    } else if !report.plan.gaps().is_empty() {
        exit::PLAN_INCOMPLETE
    } else {
        exit::OK
    }
}

pub async fn gather(extra_bus: Option<&str>) -> Report {
    let release = release::current();
    let privileges = privileges::current();
    let (capabilities, details) = if privileges.can_load_bpf() {
        // Probing blocks (BPF syscalls, netns threads); keep it off the async workers.
        tokio::task::spawn_blocking(capabilities::probe).await.unwrap_or_else(|e| {
            (
                capabilities::all_unavailable(&format!("probe task failed: {e}")),
                ProbeFacts::default(),
            )
        })
    } else {
        // The fix is printed once, under the privileges line; repeating it per row hides it.
        let reason = format!("not probed: reach lacks {}", privileges.missing.join(", "));
        (capabilities::all_unavailable(&reason), ProbeFacts::default())
    };
    let plan = plan::choose(&capabilities, &details);
    let kernel = KernelFacts {
        btf: btf_presence(),
        lockdown: match lockdown::mode() {
            Ok(mode) => Presence {
                available: true,
                value: Some(mode.clone()),
                reason: format!("lockdown={mode}"),
            },
            Err(why) => Presence { available: false, value: None, reason: why },
        },
        wsl2: wsl::detect(&wsl::Inputs::gather(&release.release)),
        release,
    };
    let firewalld = firewalld_by_netns(&privileges, extra_bus).await;
    Report { kernel, privileges, capabilities, details, firewalld, plan }
}

fn btf_presence() -> Presence {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    match std::fs::metadata(path) {
        Ok(m) => Presence {
            available: true,
            value: Some(path.display().to_string()),
            reason: format!("{} ({:.1} MiB)", path.display(), m.len() as f64 / 1048576.0),
        },
        Err(e) => Presence {
            available: false,
            value: None,
            reason: format!(
                "{}: {e} — kernel built without CONFIG_DEBUG_INFO_BTF; reach needs BTF for struct offsets",
                path.display()
            ),
        },
    }
}

async fn firewalld_by_netns(privs: &Privileges, extra_bus: Option<&str>) -> Vec<FirewalldInNetns> {
    let mut buses = vec![None];
    buses.extend(extra_bus.map(Some));
    let mut owners = Vec::new();
    for bus in buses {
        // No system bus (containers, minimal VMs) is normal: the nft table check still works.
        if let Ok(Some(owner)) = firewalld_presence::bus_owner(bus).await {
            owners.push((bus.unwrap_or("the system bus").to_string(), owner));
        }
    }
    // Entering other namespaces needs CAP_SYS_ADMIN; without it only our own is inspected,
    // under a neutral name (whether it is the host's cannot be told without privileges).
    let namespaces = if privs.capabilities["CAP_SYS_ADMIN"] {
        inventory::list()
    } else {
        vec![inventory::NetNs {
            inode: inventory::current_inode().unwrap_or(0),
            name: "current".to_string(),
            path: "/proc/thread-self/ns/net".into(),
            processes: 1,
        }]
    };
    let mut out = Vec::new();
    for ns in namespaces {
        let can_enter = privs.capabilities["CAP_SYS_ADMIN"];
        let tables = tokio::task::spawn_blocking({
            let path = ns.path.clone();
            move || {
                if can_enter {
                    enter::in_netns(&path, nft_tables::list)
                } else {
                    Ok(nft_tables::list())
                }
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .and_then(|r| r.map_err(|e| format!("nftables netlink: {e}")));
        let mut evidence = Vec::new();
        if let Ok(tables) = &tables
            && tables.iter().any(|t| t.family == "inet" && t.name == "firewalld")
        {
            evidence.push("table inet firewalld".to_string());
        }
        for (bus, owner) in &owners {
            if owner.netns_inode == Some(ns.inode) {
                evidence.push(format!(
                    "{} owned by pid {} on {bus}",
                    firewalld_presence::FIREWALLD_BUS_NAME,
                    owner.pid
                ));
            }
        }
        out.push(FirewalldInNetns {
            netns: NetnsRef { inode: ns.inode, name: ns.name },
            present: !evidence.is_empty(),
            evidence,
            nft_tables: tables
                .as_ref()
                .map(|ts| ts.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            nft_error: tables.err(),
        });
    }
    out
}

/// Human rendering. Plain text (no colour) so it reads the same in a pipe and a terminal.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let k = &r.kernel;
    let _ = writeln!(s, "reach doctor — what this kernel lets reach attach\n");
    let _ = writeln!(s, "kernel      {} ({})", k.release.release, k.release.machine);
    let _ = writeln!(s, "BTF         {}", yes_no_reason(k.btf.available, &k.btf.reason));
    let _ = writeln!(
        s,
        "lockdown    {}",
        k.lockdown.value.as_deref().unwrap_or(&format!("unknown: {}", k.lockdown.reason))
    );
    match &k.wsl2 {
        Some(w) => {
            let _ = writeln!(s, "WSL2        yes, {:?} networking ({})", w.networking, w.evidence);
        }
        None => {
            let _ = writeln!(s, "WSL2        no");
        }
    }
    let p = &r.privileges;
    if p.missing.is_empty() {
        let _ = writeln!(
            s,
            "privileges  euid {}; CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_ADMIN held",
            p.euid
        );
    } else {
        let _ = writeln!(
            s,
            "privileges  euid {}; MISSING {} — {}",
            p.euid,
            p.missing.join(" "),
            p.how_to_fix()
        );
    }

    for (cap, what) in &p.wanted_missing {
        let _ = writeln!(s, "            without {cap} reach cannot {what}");
    }

    let _ = writeln!(s, "\nattach mechanisms");
    for name in capabilities::NAMES {
        if let Some(c) = r.capabilities.get(name) {
            let mark = if c.available { "yes" } else { "no " };
            let _ = writeln!(s, "  {mark} {name:<12} {}", c.reason);
        }
    }

    let _ = writeln!(s, "\nfirewalld per network namespace");
    for f in &r.firewalld {
        let tables = match (&f.nft_error, f.nft_tables.is_empty()) {
            (Some(e), _) => format!("nft tables unreadable: {e}"),
            (None, true) => "no nft tables".to_string(),
            (None, false) => format!("nft tables: {}", f.nft_tables.join(", ")),
        };
        let state = if f.present {
            format!("firewalld RUNNING ({})", f.evidence.join("; "))
        } else {
            "no firewalld".into()
        };
        let _ = writeln!(s, "  {} [{}]: {state}; {tables}", f.netns.name, f.netns.inode);
    }

    let _ = writeln!(s, "\nattach plan");
    for (part, choice) in [
        ("bind", &r.plan.bind),
        ("listen", &r.plan.listen),
        ("ingress", &r.plan.ingress),
        ("drop", &r.plan.drop),
    ] {
        let _ = writeln!(s, "  {part:<8} {choice:<11} {}", plan::describe(choice, part));
    }
    let gaps = r.plan.gaps();
    if !p.missing.is_empty() {
        let _ = writeln!(
            s,
            "\nreach cannot attach anything without {}: {}",
            p.missing.join(", "),
            p.how_to_fix()
        );
    } else if !gaps.is_empty() {
        let _ = writeln!(
            s,
            "\nno mechanism for: {} — reach will run without those events",
            gaps.join(", ")
        );
    }
    s
}

fn yes_no_reason(ok: bool, reason: &str) -> String {
    format!("{} {reason}", if ok { "yes," } else { "no:" })
}
