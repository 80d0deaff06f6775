//! `reach listeners`: every TCP listener and bound UDP socket of the machine, grouped by
//! network namespace, with the ones that cannot be reached from outside flagged.
use std::process::ExitCode;

use serde::Serialize;

use crate::{
    kernel::privileges,
    model::listener_view::ListenerView,
    netns::{select, snapshot},
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
    listeners: Vec<ListenerView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
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
    let snap = tokio::task::spawn_blocking(snapshot::listeners_snapshot).await?;
    let views: Vec<NsView> = snap
        .into_iter()
        .filter(|ns| wanted.is_empty() || wanted.contains(&ns.inode))
        .map(|ns| {
            let netns = NetnsRef { inode: ns.inode, name: ns.name.clone() };
            NsView {
                listeners: ns
                    .listeners
                    .iter()
                    .map(|l| ListenerView::new(netns.clone(), l))
                    .collect(),
                netns,
                error: ns.error,
            }
        })
        .collect();
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
                println!("{}", l.human());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
