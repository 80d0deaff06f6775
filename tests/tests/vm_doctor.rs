//! `reach doctor` inside real Debian kernels booted under QEMU: where kprobes and BPF
//! trampolines exist (they do not on this project's own machines), doctor must find them
//! working — loaded, attached and fired — and plan to use them.
use anyhow::{Context as _, Result, ensure};
use reach_tests::reach_bin;
use serde_json::Value;
use xtask::vm::{GuestOptions, run_in_guest};

fn doctor_in_guest(kernel: &str) -> Result<(Value, i32)> {
    let bin = reach_bin();
    let opts = GuestOptions::new(
        kernel,
        &[bin.to_str().context("REACH_BIN is not UTF-8")?, "doctor", "--json"],
    );
    let outcome = run_in_guest(&opts)?;
    // stdout and stderr are merged: the JSON object is from the first '{' line to the last '}'.
    let out = &outcome.output;
    let start = out.find("\n{").map(|i| i + 1).or_else(|| out.starts_with('{').then_some(0));
    let end = out.rfind('}').map(|i| i + 1);
    let (Some(start), Some(end)) = (start, end) else {
        anyhow::bail!(
            "no JSON from doctor in the {kernel} guest (exit {}):\n{out}",
            outcome.exit_code
        )
    };
    let report: Value =
        serde_json::from_str(&out[start..end]).with_context(|| format!("doctor output:\n{out}"))?;
    ensure!(
        report["kernel"]["release"] == outcome.kernel_release.as_str(),
        "release mismatch: {report:#}"
    );
    Ok((report, outcome.exit_code))
}

/// Boots `kernel` once and checks kprobe/fentry/tp_btf/... all work; returns the report.
fn assert_full_kernel(kernel: &str) -> Result<Value> {
    let (report, code) = doctor_in_guest(kernel)?;
    for name in ["kprobe", "fentry", "tp_btf", "tracepoint", "tc_netlink", "ring_buffer"] {
        let c = &report["capabilities"][name];
        ensure!(c["available"] == true, "{kernel}: {name} unavailable: {c}");
        if c.get("fired").is_some() {
            ensure!(c["fired"] == true, "{kernel}: {name} attached but did not fire: {c}");
        }
    }
    ensure!(
        report["plan"]["bind"] == "kprobe" && report["plan"]["listen"] == "kprobe",
        "{kernel}: plan {}",
        report["plan"]
    );
    ensure!(code == 0, "{kernel}: doctor exit {code} with a complete plan");
    Ok(report)
}

#[test]
fn debian_6_1_has_working_kprobes_and_fentry() -> Result<()> {
    let report = assert_full_kernel("6.1")?;
    // 6.1 predates TCX (6.6): doctor must say so and fall back to clsact.
    ensure!(
        report["capabilities"]["tcx"]["available"] == false,
        "{}",
        report["capabilities"]["tcx"]
    );
    ensure!(report["plan"]["ingress"] == "tc_netlink", "{}", report["plan"]);
    Ok(())
}

#[test]
fn debian_6_18_has_working_kprobes_fentry_and_tcx() -> Result<()> {
    let report = assert_full_kernel("6.18")?;
    ensure!(
        report["capabilities"]["tcx"]["available"] == true,
        "{}",
        report["capabilities"]["tcx"]
    );
    ensure!(report["plan"]["ingress"] == "tcx", "{}", report["plan"]);
    Ok(())
}
