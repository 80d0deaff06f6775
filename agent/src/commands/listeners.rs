//! `reach listeners`: every TCP listener and bound UDP socket of the machine, grouped by
//! network namespace, each flagged with the families and addresses it can be reached on
//! (`reachable_on`, from the socket-lookup model: "IPv4 loopback only: not ::1, not from other
//! hosts", "IPv6 only (IPV6_V6ONLY)", "only via eth0").
use std::process::ExitCode;

use serde::Serialize;

use crate::{
    kernel::privileges,
    model::listener_view::{ListenerView, ReachableOn},
    netns::{names::Names, select, snapshot},
    probes::sock_event::NetnsRef,
};

#[derive(Debug, clap::Args)]
pub struct ListenersArgs {
    /// Print JSON (an array of namespaces with their listeners) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only this network namespace (`ip netns` name, `host`, PID or path). Repeatable.
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub netns: Vec<String>,
}

#[derive(Debug, Serialize)]
struct NsView {
    netns: NetnsRef,
    listeners: Vec<Listed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One listener with how it can be reached (a field `reach watch`'s listener lines lack: there
/// the device name would cost a namespace switch per event).
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    view: ListenerView,
    reachable_on: Option<ReachableOn>,
}

impl Listed {
    fn new(view: ListenerView, names: &mut Names) -> Self {
        let device = view.bound_dev_if.and_then(|i| names.device(view.netns.inode, i));
        Self { reachable_on: view.reachable_on(device), view }
    }
}

pub async fn run(args: ListenersArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = privileges::refuse_unless_privileged("listeners") {
        return Ok(code);
    }
    let mut wanted = Vec::new();
    for spec in &args.netns {
        match select::resolve(spec) {
            Ok(inode) => wanted.push(inode),
            Err(e) => {
                eprintln!("reach listeners: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let views = tokio::task::spawn_blocking(move || {
        let mut names = Names::new();
        snapshot::listeners_snapshot()
            .into_iter()
            .filter(|ns| wanted.is_empty() || wanted.contains(&ns.inode))
            .map(|ns| {
                let netns = NetnsRef { inode: ns.inode, name: ns.name.clone() };
                NsView {
                    listeners: ns
                        .listeners
                        .iter()
                        .map(|l| Listed::new(ListenerView::new(netns.clone(), l), &mut names))
                        .collect(),
                    netns,
                    error: ns.error,
                }
            })
            .collect::<Vec<NsView>>()
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        for ns in &views {
            println!("{} [{}]", ns.netns.name, ns.netns.inode);
            if let Some(e) = &ns.error {
                println!("  (could not be read: {e})");
            } else if ns.listeners.is_empty() {
                println!("  (nothing listens)");
            }
            for l in &ns.listeners {
                println!("{}", l.view.human_with(l.reachable_on.as_ref()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
