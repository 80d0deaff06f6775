//! `cargo xtask bench --quick` in CI: every benchmark runs briefly (the same reach-bench, the
//! same check and rendering as the full run) so that a broken benchmark is found by the suite,
//! not by the next person who measures. Only plausibility is checked here: the numbers
//! themselves belong to BENCHMARKS.md, measured side by side in one full run.
use std::path::Path;

use reach_tests::{reach_bin, require_root};

#[test]
fn every_benchmark_figure_is_produced_and_plausible() {
    require_root();
    // The end-to-end part measures the reach under test (REACH_BIN, set by cargo xtask test).
    let report = xtask::bench::quick(Path::new(env!("CARGO_BIN_EXE_reach-bench")), &reach_bin())
        .unwrap_or_else(|e| panic!("cargo xtask bench --quick failed: {e:#}"));
    for table in [
        "## TC classifier `reach_ingress` next to the empty classifier `reach_floor`",
        "## kfree_skb drop handler next to an empty tp_btf handler (BPF run-time statistics)",
        "| SYN v4, watched port, rate-limited | 74 |",
        "## What an event costs at the least",
        "| one bpf_ktime_get_boot_ns |",
        "| SYN v4, watched port, ring read | 74 |",
        "| UDP v4 | 74 |",
        ", early exit (port not watched) | 300 |",
        ", early exit (namespace not watched) | 300 |",
        "## End to end: iperf3 TCP throughput over a veth pair",
        "| `nothing attached` |",
        "| `reach watch --json --netns <server>` |",
        "| `bpftrace -e 'tracepoint:skb:kfree_skb { @[args->reason] = count(); }'` |",
        "## End to end: SYN flood under `reach watch --json`",
        "| SYNs the server veth received (rx_packets) |",
        "| **unaccounted** (received − events − suppressed − lost) |",
        "| reach peak RSS (VmHWM) |",
        "## End to end: `reach watch` start-up and memory",
        "| `reach watch` | \"watching drops\" |",
        "| `reach watch --no-packets` | \"watching binds and listens\" |",
        "## End to end: `reach agent` idle, under a SYN flood and namespace churn",
        "| VmRSS after 1 s ready and idle |",
        "| SYNs the server veth received (rx_packets) |",
        "| **VmRSS growth, flood 1 → flood 2** |",
        "| namespaces created and deleted | 10 in ",
        "| **leaked namespaces** (veth peers left in the anchor) |",
        "| **VmRSS growth over the churn** |",
    ] {
        assert!(report.contains(table), "the quick report lacks {table:?}:\n{report}");
    }
}
