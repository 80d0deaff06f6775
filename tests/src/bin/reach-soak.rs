//! reach's soak (issue 18, item 5): `reach agent` for `--minutes` (30) under mixed load in lab
//! namespaces (SYN flood bursts, an iperf3 stream, bind/listen churn, namespace and interface
//! churn), its VmRSS and open fds sampled throughout (`reach_tests::bench_e2e::soak`).
//!
//! Progress goes to stderr; the figures and verdicts, as one JSON document, to stdout (`cargo
//! xtask soak` renders them and writes the soak section of BENCHMARKS.md). Exits 0 when the
//! soak ran (even if a verdict failed: the document says which), 1 when it could not run.
//! Needs root. Not part of `cargo xtask test`.
use std::process::ExitCode;

use reach_tests::bench_e2e::soak;

fn main() -> ExitCode {
    let args = match soak::Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("reach-soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    match soak::run(&args) {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reach-soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}
