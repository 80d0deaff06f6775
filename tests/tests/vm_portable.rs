//! The kernel-dependent tests are portable: the very test executables `cargo xtask test` built
//! — `doctor`, `bind_listen`, why's EADDRINUSE test and the agent's drop-reason and port-holder
//! unit tests — run inside stock Debian 6.1 and 6.12 kernels under QEMU, where kprobes and
//! fentry work (they do not on this project's own machines) and bound-only sockets are visible
//! (6.12) or not (6.1), and must all pass there too. Their expectations come from
//! the kernel under test (tests/src/kernel_facts.rs), so passing on both sides is the proof.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use reach_tests::reach_bin;
use xtask::vm::{GuestOptions, run_in_guest, test_bins};

const SCENARIO: &str = env!("CARGO_BIN_EXE_reach-scenario");

/// Each guest gets both host cores: two TCG guests at once would only slow both down.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// (section name, test executable's target name, libtest arguments).
const RUNS: [(&str, &str, &[&str]); 4] = [
    ("doctor", "doctor", &["--test-threads=1"]),
    ("bind_listen", "bind_listen", &["--test-threads=1"]),
    // The real EADDRINUSE diagnosis: below 6.8 (6.1) it must name its blind spot, from 6.8
    // (6.12) the bound-only culprit.
    (
        "why_eaddrinuse",
        "why",
        &[
            "--test-threads=1",
            "--exact",
            "failed_bind_while_watching_names_the_socket_that_holds_the_port",
        ],
    ),
    ("agent", "reach_agent", &["--test-threads=1", "kernel::drop_reasons", "netns::port_holders"]),
];

/// The guest script: each test executable in turn, its output between `=== NAME start` and
/// `=== NAME exit STATUS`.
fn script() -> String {
    let mut s = String::from("set -u\n");
    for (section, _, args) in RUNS {
        s.push_str(&format!(
            "echo '=== {section} start'\n\"$BIN_{section}\" {} 2>&1\necho \"=== {section} exit $?\"\n",
            args.join(" ")
        ));
    }
    s
}

/// `N` of libtest's `test result: ok. N passed; 0 failed; …` in `section`'s output, or why not.
fn passed(output: &str, section: &str) -> Result<u64> {
    let start_tag = format!("=== {section} start\n");
    let start = output.find(&start_tag).with_context(|| format!("no {start_tag:?}"))?;
    let body = &output[start + start_tag.len()..];
    let end_tag = format!("=== {section} exit ");
    let end = body.find(&end_tag).with_context(|| format!("{section} never finished"))?;
    let (text, status) = (&body[..end], body[end + end_tag.len()..].lines().next().unwrap_or(""));
    let summary = text
        .lines()
        .find(|l| l.starts_with("test result: "))
        .with_context(|| format!("{section}: no libtest summary (exit {status})"))?;
    let count = |word: &str| -> Result<u64> {
        summary
            .split(';')
            .find_map(|part| {
                part.trim().trim_start_matches("test result: ok.").trim().strip_suffix(word)
            })
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("{section}: no `{word}` count in {summary:?}"))
    };
    ensure!(
        summary.starts_with("test result: ok.") && status == "0",
        "{section} failed in the guest (exit {status}): {summary}"
    );
    let (ok, failed) = (count(" passed")?, count(" failed")?);
    ensure!(failed == 0, "{section}: {failed} failed: {summary}");
    ensure!(ok > 0, "{section}: no test ran (a filter matched nothing?): {summary}");
    Ok(ok)
}

/// A private copy of `path` in `dir`: builds sharing target/ (another `cargo build` during
/// the long guest run) rewrite those files in place, and a guest executing a binary through
/// 9p while it changes crashes in ways that look like bugs of reach.
fn snapshot(dir: &Path, name: &str, path: &Path) -> Result<String> {
    ensure!(path.is_file(), "{} does not exist: rebuild with cargo xtask test", path.display());
    let copy = dir.join(name);
    std::fs::copy(path, &copy)
        .with_context(|| format!("copying {} to {}", path.display(), copy.display()))?;
    copy.into_os_string().into_string().map_err(|p| anyhow::anyhow!("{p:?} is not UTF-8"))
}

fn portable_tests_pass_in(kernel: &str) -> Result<()> {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let bins = test_bins::from_env()?;
    let copies = tempfile::tempdir().context("a directory for the executables' copies")?;
    let mut env = vec![
        ("REACH_BIN".to_string(), snapshot(copies.path(), "reach", &reach_bin())?),
        (
            "REACH_SCENARIO_BIN".to_string(),
            snapshot(copies.path(), "reach-scenario", Path::new(SCENARIO))?,
        ),
    ];
    for (section, target, _) in RUNS {
        let path: &PathBuf = bins.get(target).with_context(|| {
            format!("{}: no test executable `{target}` in {bins:?}", test_bins::ENV)
        })?;
        env.push((format!("BIN_{section}"), snapshot(copies.path(), target, path)?));
    }
    let opts = GuestOptions {
        env,
        memory: "2G".into(),
        cpus: 2,
        // TCG runs these ~10× slower than the host; the whole run measured well below this.
        timeout: Duration::from_secs(1800),
        ..GuestOptions::new(kernel, &["/bin/sh", "-c", &script()])
    };
    let started = Instant::now();
    let outcome = run_in_guest(&opts)?;
    let elapsed = started.elapsed();
    if outcome.exit_code != 0 {
        bail!("{kernel} guest script failed ({}):\n{}", outcome.exit_code, outcome.output);
    }
    let mut counts = BTreeMap::new();
    for (section, _, _) in RUNS {
        let n = passed(&outcome.output, section).with_context(|| {
            format!("in the {} guest:\n{}", outcome.kernel_release, outcome.output)
        })?;
        counts.insert(section, n);
    }
    eprintln!(
        "{} guest: passed {counts:?} in {:.0} s",
        outcome.kernel_release,
        elapsed.as_secs_f64()
    );
    for line in outcome.output.lines().filter(|l| l.starts_with("test result:")) {
        eprintln!("  {line}");
    }
    Ok(())
}

#[test]
fn summaries_are_parsed_strictly() {
    let ok = "=== doctor start\nrunning 4 tests\ntest result: ok. 4 passed; 0 failed; 0 ignored\n=== doctor exit 0\n";
    assert_eq!(passed(ok, "doctor").unwrap(), 4);
    let failed = "=== doctor start\ntest result: FAILED. 3 passed; 1 failed; 0 ignored\n=== doctor exit 101\n";
    assert!(passed(failed, "doctor").is_err());
    let none =
        "=== agent start\ntest result: ok. 0 passed; 0 failed; 0 ignored\n=== agent exit 0\n";
    assert!(passed(none, "agent").unwrap_err().to_string().contains("no test ran"));
    let crashed = "=== agent start\nrunning 3 tests\n=== agent exit 139\n";
    assert!(passed(crashed, "agent").is_err());
    assert!(passed(ok, "agent").is_err(), "a missing section is an error");
}

#[test]
fn doctor_bind_listen_and_kernel_unit_tests_pass_on_debian_6_1() -> Result<()> {
    portable_tests_pass_in("6.1")
}

#[test]
fn doctor_bind_listen_and_kernel_unit_tests_pass_on_debian_6_12() -> Result<()> {
    portable_tests_pass_in("6.12")
}
