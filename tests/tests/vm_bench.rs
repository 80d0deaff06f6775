//! The QEMU kernel bench (`xtask::vm`): real Debian kernels boot, run a host command and report
//! its exit code and output. Each test boots one guest (~5–10 s under TCG; the first use of a
//! kernel also downloads it). Nothing is skipped: a missing tool or kernel is a failure that
//! says what is missing.
use std::time::Duration;

use anyhow::{Result, ensure};
use xtask::vm::{GuestOptions, GuestOutcome, run_in_guest};

fn sh(kernel: &str, script: &str) -> GuestOptions {
    GuestOptions::new(kernel, &["/bin/sh", "-c", script])
}

/// The checks the eBPF agent relies on, as a script that stops at the first failure.
const FEATURES: &str = "set -e
uname -r
modprobe veth
grep -q '^veth ' /proc/modules
echo 'veth: loaded'
test -e /sys/kernel/btf/vmlinux
echo 'btf: present'
test -e /sys/bus/event_source/devices/kprobe
echo 'kprobe: present'";

fn expect_features(outcome: &GuestOutcome, line: &str) -> Result<()> {
    let out = &outcome.output;
    ensure!(outcome.exit_code == 0, "feature script failed with {}:\n{out}", outcome.exit_code);
    let release = out.lines().next().unwrap_or_default();
    ensure!(
        release.starts_with(&format!("{line}.")) && release == outcome.kernel_release,
        "asked for {line}, the guest runs {release:?} (booted {})",
        outcome.kernel_release
    );
    for marker in ["veth: loaded", "btf: present", "kprobe: present"] {
        ensure!(out.lines().any(|l| l == marker), "missing {marker:?} in:\n{out}");
    }
    Ok(())
}

#[test]
fn successful_command_reports_exit_0_with_output_and_env() -> Result<()> {
    let opts = GuestOptions {
        env: vec![("REACH_VM_TEST".into(), "it's passed".into())],
        cwd: env!("CARGO_MANIFEST_DIR").into(),
        ..sh("6.1", "echo \"to stdout: $REACH_VM_TEST\"; echo 'to stderr' >&2; pwd; exit 0")
    };
    let outcome = run_in_guest(&opts)?;
    let out = &outcome.output;
    ensure!(outcome.exit_code == 0, "exit code {}, output:\n{out}", outcome.exit_code);
    for line in ["to stdout: it's passed", "to stderr", env!("CARGO_MANIFEST_DIR")] {
        ensure!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }
    ensure!(outcome.console.contains("Linux version"), "no kernel log in the console");
    Ok(())
}

#[test]
fn failing_command_reports_its_exit_code() -> Result<()> {
    let outcome = run_in_guest(&sh("6.1", "echo about to fail; exit 3"))?;
    ensure!(outcome.exit_code == 3, "expected exit code 3, got {}", outcome.exit_code);
    ensure!(outcome.output == "about to fail\n", "output: {:?}", outcome.output);
    Ok(())
}

#[test]
fn kernel_6_1_has_modules_btf_and_kprobes() -> Result<()> {
    expect_features(&run_in_guest(&sh("6.1", FEATURES))?, "6.1")
}

#[test]
fn kernel_6_18_has_modules_btf_and_kprobes() -> Result<()> {
    expect_features(&run_in_guest(&sh("6.18", FEATURES))?, "6.18")
}

#[test]
fn kernel_panic_is_an_error_with_the_console() -> Result<()> {
    let err = match run_in_guest(&sh("6.1", "echo c > /proc/sysrq-trigger")) {
        Ok(outcome) => anyhow::bail!("a panicking guest reported exit code {}", outcome.exit_code),
        Err(err) => format!("{err:#}"),
    };
    ensure!(err.contains("without reporting an exit status"), "unexpected error: {err}");
    ensure!(err.contains("Kernel panic"), "the console tail lacks the panic: {err}");
    Ok(())
}

#[test]
fn hung_guest_is_killed_at_the_timeout() -> Result<()> {
    // Whether the guest is still booting or already sleeping when the limit hits, the result
    // must be a timeout error carrying the console.
    let opts = GuestOptions { timeout: Duration::from_secs(30), ..sh("6.1", "sleep 3600") };
    let err = match run_in_guest(&opts) {
        Ok(outcome) => anyhow::bail!("a hung guest reported exit code {}", outcome.exit_code),
        Err(err) => format!("{err:#}"),
    };
    ensure!(err.contains("did not finish within 30 s"), "unexpected error: {err}");
    ensure!(err.contains("--- console"), "no console tail in: {err}");
    Ok(())
}
