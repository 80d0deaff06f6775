//! `cargo xtask`: reach's build, setup, test, VM, bench and lab orchestration.
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use xtask::{
    run::run,
    setup,
    workspace::{self, cargo},
};

mod record;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "reach's developer tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: nightly rust-src, bpf-linker (built against the nightly's LLVM),
    /// and the Debian packages the tests use. Fast and silent when nothing is missing.
    Setup,
    /// Set up, then build the agent (with its eBPF programs) and all workspace binaries.
    Build {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, then run every test: unit, privileged integration (network namespaces,
    /// a real firewalld) and QEMU-guest tests, then every fuzz target for 20 s. Extra
    /// arguments go to `cargo test` (and skip the fuzzers).
    Test {
        /// Arguments passed to `cargo test` (e.g. a test name filter after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// Boot a Debian kernel (6.1, 6.12, 6.18, ...) under QEMU and run a host command in it; the
    /// exit code is the command's.
    VmTest(xtask::vm::VmTestArgs),
    /// The hot-path benchmark: build `reach-bench` in release, run it (the TC classifier next to
    /// an empty one under BPF_PROG_TEST_RUN; the kfree_skb handler's run-time statistics under a
    /// loopback SYN load), print the tables and rewrite BENCHMARKS.md. Needs root.
    Bench {
        /// Arguments passed to `reach-bench` (`--repeat N`, `--rounds N`, `--syns N`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The soak (not part of `test`): build `reach-soak` in release and run `reach agent` for
    /// `--minutes` under mixed load in lab namespaces (SYN flood bursts, iperf3, bind/listen
    /// churn, namespace and interface churn); fail if its memory or open fds grew past the
    /// warm-up or a SYN went uncounted; print the figures and rewrite the soak section of
    /// BENCHMARKS.md. Needs root.
    Soak {
        /// How long the agent runs under load.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
    },
    /// Record the firewalld fixtures of the unit tests anew from the installed firewalld in lab
    /// namespaces (rulesets after each step, traces of single SYNs) into
    /// tests/fixtures/firewalld-<version>/. Needs root; commit what it writes.
    RecordFixtures,
    /// The agent's container image: reach built static (musl) alone in an image FROM scratch,
    /// by buildah without a daemon, exported as an OCI archive under target/image/.
    Image,
    /// Rewrite the plain manifests in deploy/manifests/ from the Helm chart (commit them).
    Manifests,
    /// Run every fuzz target of fuzz/ (the parsers of kernel and tool output) for a bounded
    /// time from its committed corpus; `--merge` adds what it found to the corpus,
    /// `--record-seeds` records the seeds afresh from this machine (root).
    Fuzz(xtask::fuzz::FuzzArgs),
    /// The built-in demo: build reach and run `reach lab` (lab namespaces, scenarios, teardown).
    Lab {
        /// Arguments passed to `reach lab`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().task {
        Task::Setup => setup::all().map(|()| ExitCode::SUCCESS),
        Task::Build { release } => {
            setup::all()?;
            build(release)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Test { cargo_test_args } => {
            setup::all()?;
            // The guest tests run the real test executables inside QEMU: build them first and
            // tell the run where they are. The same build makes `reach` (the agent package's
            // own integration test needs it) with the test build's features; a separate
            // `cargo build --bins` would build the agent a second time with other features
            // (dev-dependencies unify differently), a disk and time cost CI paid for nothing.
            let cargo_path = std::path::PathBuf::from(
                std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            );
            let bins = xtask::vm::test_bins::build(&cargo_path, &workspace::root())?;
            // The image tests run the image `cargo xtask image` makes: make it first.
            let image = xtask::image::build()?;
            let reach = workspace::reach_bin(false);
            anyhow::ensure!(
                reach.exists(),
                "cargo test --no-run did not build {} (it comes with agent/tests/; is that \
                 folder gone?)",
                reach.display()
            );
            // The root network namespace must come out of the suite as it went in (ruleset,
            // links, addresses, routes, qdiscs, filters, TCX, reach's programs, mounts, pins):
            // recorded now, compared after the last test.
            let root_state = reach.with_file_name("reach-root-state");
            anyhow::ensure!(
                root_state.exists(),
                "cargo test --no-run did not build {} (tests/src/bin/reach-root-state.rs)",
                root_state.display()
            );
            let saved = workspace::root().join("target/root-state-before.json");
            run(std::process::Command::new(&root_state).arg("save").arg(&saved))?;
            run(cargo()
                .args(["test", "--workspace"])
                .args(&cargo_test_args)
                .env("REACH_BIN", workspace::reach_bin(false))
                .env(xtask::image::ENV, &image.archive)
                .env(xtask::vm::test_bins::ENV, xtask::vm::test_bins::encode(&bins)?))?;
            run(std::process::Command::new(&root_state).arg("compare").arg(&saved))?;
            // The parsers' fuzzers, bounded, from their committed corpus; the whole suite
            // only when no filter narrowed the test run.
            if cargo_test_args.is_empty() {
                xtask::fuzz::fuzz(&xtask::fuzz::FuzzArgs {
                    seconds: 20,
                    targets: Vec::new(),
                    merge: false,
                    record_seeds: false,
                })?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Image => {
            setup::all()?;
            let built = xtask::image::build()?;
            println!("{}", built.archive.display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Manifests => xtask::deploy_tools::write_manifests().map(|()| ExitCode::SUCCESS),
        Task::Fuzz(args) => {
            setup::all()?;
            xtask::fuzz::fuzz(&args).map(|_| ExitCode::SUCCESS)
        }
        Task::VmTest(args) => xtask::vm::vm_test_command(args),
        Task::Bench { args } => xtask::bench::bench(&args).map(|()| ExitCode::SUCCESS),
        Task::Soak { minutes } => xtask::soak::soak(minutes).map(|()| ExitCode::SUCCESS),
        Task::RecordFixtures => record::record_fixtures().map(|()| ExitCode::SUCCESS),
        Task::Lab { args } => {
            setup::all()?;
            build(false)?;
            // The published port as a real `docker run -p`, with the Docker setup unpacked.
            let mut args = args;
            let docker = xtask::docker_root::dir();
            if !args.iter().any(|a| a.starts_with("--docker-root"))
                && docker.join(xtask::docker_root::STAMP).is_file()
            {
                args.extend(["--docker-root".to_string(), docker.display().to_string()]);
            }
            let status = xtask::run::status(
                Command::new(workspace::reach_bin(false)).arg("lab").args(&args),
            )?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
    }
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--workspace", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd).context("building reach failed")
}
