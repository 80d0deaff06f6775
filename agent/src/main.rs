use std::process::ExitCode;

use clap::Parser as _;
use reach_agent::cli::{Cli, Command};

fn main() -> ExitCode {
    reach_agent::kernel::memory::single_arena();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // Before the runtime's threads: what reach must mount is then its own and goes with it.
    if matches!(
        cli.command,
        Command::Agent(_) | Command::Doctor(_) | Command::Watch(_) | Command::Why(_)
    ) {
        match reach_agent::kernel::private_mounts::enter_if_needed() {
            Ok(true) => tracing::info!(
                "mounting {} in a mount namespace of reach's own",
                reach_agent::kernel::private_mounts::mounts_needed().join(" and ")
            ),
            Ok(false) => {}
            Err(e) => tracing::debug!("no private mount namespace ({e}): mounts are shared"),
        }
    }

    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("reach: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(args) => reach_agent::commands::agent::run(args).await,
            Command::Doctor(args) => reach_agent::commands::doctor::run(args).await,
            Command::Predict(args) => reach_agent::commands::predict::run(args).await,
            Command::Listeners(args) => reach_agent::commands::listeners::run(args).await,
            Command::Lab(args) => reach_agent::commands::lab::run(args).await,
            Command::LabServer(args) => reach_agent::commands::lab_server::run(args).await,
            Command::Watch(args) => reach_agent::commands::watch::run(args).await,
            Command::Why(args) => reach_agent::commands::why::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reach: {e:#}");
            ExitCode::FAILURE
        }
    }
}
