//! `cargo xtask bench`: builds and runs `reach-bench` (crate reach-tests) in release, prints its
//! results as tables and rewrites BENCHMARKS.md at the workspace root. `--quick` is the short
//! form CI runs (through `tests/tests/bench_quick.rs`): a few rounds on the debug build, every
//! figure checked to be produced and plausible, nothing written.
//!
//! reach-bench does the measuring (BPF_PROG_TEST_RUN of the classifier next to the empty floor,
//! BPF run-time statistics of the kfree_skb handler under a loopback SYN load in a lab
//! namespace) and prints one JSON document; this module only checks and renders it, so xtask
//! keeps no dependency on the agent.
use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::{run, setup, workspace};

/// reach-bench's arguments for `--quick`: enough packets and SYNs that every figure is a real
/// measurement (the kernel times whole test runs), few enough to take seconds. Three rounds so
/// the median survives one disturbed round.
pub const QUICK_ARGS: &[&str] = &["--repeat", "20000", "--rounds", "3", "--syns", "300"];

/// The cases reach-bench measures (its `classifier_bench` and `kfree_skb_bench` lists): a
/// benchmark that silently stops producing one of them must fail the check.
pub const CLASSIFIER_CASES: usize = 7;
pub const KFREE_SKB_ROWS: usize = 5;

/// Sets up, builds and runs the benchmark (`args` go to reach-bench), prints the tables and
/// writes BENCHMARKS.md; with `--quick` among `args`, runs [`quick`] on the debug build instead.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    setup::all()?;
    let quick_run = args.iter().any(|a| a == "--quick");
    if quick_run && args.len() > 1 {
        bail!("--quick takes no other arguments (it runs reach-bench {})", QUICK_ARGS.join(" "));
    }
    let mut build = workspace::cargo();
    build.args(["build", "-p", "reach-tests", "--bin", "reach-bench"]);
    if !quick_run {
        build.arg("--release");
    }
    run::run(&mut build).context("building reach-bench failed")?;
    let profile = if quick_run { "debug" } else { "release" };
    let bin = workspace::target_dir().join(profile).join("reach-bench");
    if quick_run {
        println!("{}", quick(&bin)?);
        eprintln!(
            "xtask: every benchmark figure was produced and is plausible (BENCHMARKS.md untouched)"
        );
        return Ok(());
    }
    let doc = measure(&bin, args)?;
    check(&doc)?;
    let command = std::iter::once("cargo xtask bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let report = render(&doc, &meta(command))?;
    println!("{report}");
    let path = workspace::root().join("BENCHMARKS.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// The short run: reach-bench at `bin` with [`QUICK_ARGS`], checked by [`check`] and rendered
/// (the tables are returned, not written: quick numbers are not benchmark results).
pub fn quick(bin: &Path) -> anyhow::Result<String> {
    let args: Vec<String> = QUICK_ARGS.iter().map(|a| a.to_string()).collect();
    let doc = measure(bin, &args)?;
    check(&doc).context("reach-bench --quick produced an implausible figure")?;
    render(&doc, &meta(format!("cargo xtask bench --quick ({})", QUICK_ARGS.join(" "))))
}

/// Runs reach-bench and parses its JSON document.
fn measure(bin: &Path, args: &[String]) -> anyhow::Result<Value> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ {}", run::show(&cmd));
    let out = cmd.output().with_context(|| format!("cannot start {}", bin.display()))?;
    if !out.status.success() {
        bail!("reach-bench failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reach-bench printed no JSON")
}

fn meta(command: String) -> Meta {
    Meta { command, date: date(), kernel: kernel(), cpu: cpu() }
}

/// Every figure of a reach-bench document is there and plausible: each case measured, every
/// time positive and finite, the classifier dearer than the empty floor, every SYN of an event
/// case either delivered or counted lost, none of a filtered case turned into an event, and
/// every SYN of the drop load seen by the drop handler. Errors name the case and the figure.
pub fn check(doc: &Value) -> anyhow::Result<()> {
    let (repeat, rounds, syns) = (num(doc, "repeat")?, num(doc, "rounds")?, num(doc, "syns")?);
    let classifier = rows(doc, "classifier")?;
    ensure!(
        classifier.len() == CLASSIFIER_CASES,
        "{} classifier cases measured, reach-bench has {CLASSIFIER_CASES}",
        classifier.len()
    );
    for r in classifier {
        let case = text(r, "case")?;
        let figure = |key: &str| -> anyhow::Result<f64> {
            let v = num(r, key).with_context(|| format!("classifier case {case:?}"))?;
            ensure!(v.is_finite(), "classifier case {case:?}: {key} is {v}");
            Ok(v)
        };
        let (ns, floor, ratio) = (figure("ns")?, figure("floor_ns")?, figure("ratio")?);
        ensure!(ns > 0.0 && floor > 0.0, "classifier case {case:?}: ns {ns}, floor_ns {floor}");
        // The floor is an empty program run the same way: the classifier parses headers on top.
        ensure!(ratio > 1.0, "classifier case {case:?}: ratio {ratio} (ns {ns}, floor {floor})");
        ensure!(
            (ratio - ns / floor).abs() < 1e-6 * ratio,
            "classifier case {case:?}: ratio {ratio} is not ns/floor_ns {}",
            ns / floor
        );
        let rounds_of = |key: &str| r.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        for key in ["ns_rounds", "floor_ns_rounds"] {
            ensure!(
                rounds_of(key) as f64 == rounds,
                "classifier case {case:?}: {} {key} of {rounds} rounds",
                rounds_of(key)
            );
        }
        let packets = figure("packets")?;
        ensure!(packets == repeat * rounds, "classifier case {case:?}: {packets} packets run");
        let events = figure("events_delivered")? + figure("events_lost")?;
        if case.contains("watched port") && !case.contains("not watched") {
            ensure!(
                events == packets,
                "classifier case {case:?}: {events} SYNs delivered or lost of {packets} sent"
            );
        } else {
            ensure!(
                events == 0.0,
                "classifier case {case:?}: {events} events from filtered packets"
            );
        }
    }
    let drops = rows(doc, "kfree_skb")?;
    ensure!(
        drops.len() == KFREE_SKB_ROWS,
        "{} kfree_skb rows measured, reach-bench has {KFREE_SKB_ROWS}",
        drops.len()
    );
    for r in drops {
        let case = text(r, "case")?;
        let figure = |key: &str| -> anyhow::Result<f64> {
            let v = num(r, key).with_context(|| format!("kfree_skb row {case:?}"))?;
            ensure!(v.is_finite(), "kfree_skb row {case:?}: {key} is {v}");
            Ok(v)
        };
        let sent = figure("syns")?;
        ensure!(sent == syns, "kfree_skb row {case:?}: {sent} of {syns} SYNs sent");
        let runs = figure("run_cnt")?;
        ensure!(
            runs >= sent,
            "kfree_skb row {case:?}: {runs} handler runs for {sent} dropped SYNs"
        );
        let per = figure("ns_per_run")?;
        ensure!(per > 0.0, "kfree_skb row {case:?}: {per} ns per run");
        let events = figure("events_delivered")? + figure("events_lost")?;
        if text(r, "path")?.starts_with("event path") {
            ensure!(
                events >= sent,
                "kfree_skb row {case:?}: {events} events for {sent} dropped SYNs"
            );
        } else {
            // The filter excludes the load's port; other drops on the machine may still match.
            ensure!(
                events < sent,
                "kfree_skb row {case:?}: {events} events despite the port filter"
            );
        }
    }
    Ok(())
}

/// Where and when the numbers were taken.
pub struct Meta {
    pub command: String,
    pub date: String,
    pub kernel: String,
    pub cpu: String,
}

fn date() -> String {
    run::output_ok(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `model name` of /proc/cpuinfo and the number of CPUs.
fn cpu() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_from(&info)
}

fn cpu_from(cpuinfo: &str) -> String {
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let n = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model} ({n} CPUs)")
}

fn num(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("reach-bench output lacks {key}"))
}

fn text<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key).and_then(Value::as_str).with_context(|| format!("reach-bench output lacks {key}"))
}

fn rows<'a>(doc: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    doc.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("reach-bench output lacks {key}"))
}

fn events(row: &Value) -> anyhow::Result<String> {
    let (d, l) = (num(row, "events_delivered")?, num(row, "events_lost")?);
    Ok(if d == 0.0 && l == 0.0 { "none".into() } else { format!("{d:.0} / {l:.0}") })
}

fn spread(row: &Value, key: &str) -> String {
    let v: Vec<f64> = row
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    match (v.iter().copied().reduce(f64::min), v.iter().copied().reduce(f64::max)) {
        (Some(lo), Some(hi)) => format!("{lo:.0}–{hi:.0}"),
        _ => "–".into(),
    }
}

/// BENCHMARKS.md from reach-bench's JSON.
pub fn render(doc: &Value, meta: &Meta) -> anyhow::Result<String> {
    let mut s = String::new();
    let repeat = num(doc, "repeat")?;
    let rounds = num(doc, "rounds")?;
    writeln!(s, "# reach benchmarks\n")?;
    writeln!(
        s,
        "Written by `{}`; rerun it to update this file (do not edit by hand).\n",
        meta.command
    )?;
    writeln!(s, "- date: {}", meta.date)?;
    writeln!(s, "- kernel: {}", meta.kernel)?;
    writeln!(s, "- CPU: {}", meta.cpu)?;
    writeln!(
        s,
        "- classifier: BPF_PROG_TEST_RUN, {repeat:.0} packets per run, {rounds:.0} rounds of \
         floor and classifier interleaved (the order alternates every round)\n"
    )?;
    writeln!(s, "## TC classifier `reach_ingress` next to the empty classifier `reach_floor`\n")?;
    writeln!(
        s,
        "| case | bytes | ns/packet (median) | floor ns/packet (median) | ratio | classifier rounds min–max | events delivered / lost |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---|")?;
    for r in rows(doc, "classifier")? {
        writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} |",
            text(r, "case")?,
            num(r, "bytes")?,
            num(r, "ns")?,
            num(r, "floor_ns")?,
            num(r, "ratio")?,
            spread(r, "ns_rounds"),
            events(r)?,
        )?;
    }
    writeln!(s, "\n## kfree_skb drop handler (BPF run-time statistics)\n")?;
    writeln!(
        s,
        "Load: {:.0} connects to a closed port on 127.0.0.1 inside a lab namespace per row (each \
         SYN is dropped with NO_SOCKET); `run_cnt` also counts other drops on the machine in the \
         meantime.\n",
        num(doc, "syns")?
    )?;
    writeln!(
        s,
        "| attachment, path | SYNs | run_cnt | ns/run (run_time_ns / run_cnt) | events delivered / lost |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---|")?;
    for r in rows(doc, "kfree_skb")? {
        writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            text(r, "case")?,
            num(r, "syns")?,
            num(r, "run_cnt")?,
            num(r, "ns_per_run")?,
            events(r)?,
        )?;
    }
    s.push_str(HOW_TO_READ);
    Ok(s)
}

const HOW_TO_READ: &str = "
## How to read it

- **Ratios are the number to compare.** The classifier and the floor run side by side in one
  process, on the same frame, interleaved round by round, so what disturbs one disturbs the
  other. Absolute nanoseconds are noisy on a shared 2-CPU VM and move from run to run; the
  kernel reports each test run's mean time per packet in whole nanoseconds.
- **The floor** (`reach_floor`, an empty classifier loaded like `reach_ingress`) is what
  BPF_PROG_TEST_RUN costs per packet when the program does nothing: the classifier's own cost
  is roughly `ns/packet − floor`.
- **Watched port, ring read**: every SYN becomes an event (no rate limit) while a thread reads
  the ring as fast as it can. The programs submit without waking the reader and wake it only
  when the queued backlog crosses 16 KiB (a wake-up is an irq_work, which costs more than the
  event itself inside a VM; `reach watch` also drains every 50 ms). At this unbounded rate a
  few events can be counted as lost; reach's token bucket (`--syn-rate`, default 1000/s per
  CPU) keeps real loads far below it. **Ring full**: nothing reads, every reservation fails
  and is counted as lost; the cheapest event path.
- **Port not watched**: the SYN is parsed and counted, then filtered out (`--port`).
- **kfree_skb** numbers come from the kernel's BPF run-time statistics (`run_time_ns /
  run_cnt`) over a real loopback load, so they include the kernel's own accounting around each
  run. *Reader waiting* and *reader behind* differ only in how often user space reads the
  ring (continuously, or every 10 ms); with wake-ups only at the backlog threshold they cost
  the same. *Early exit*:
  the port filter excludes the SYNs, so the handler parses the headers and returns.
";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_both_tables_from_reach_bench_output() {
        let doc = json!({
            "repeat": 1000000, "rounds": 9, "syns": 20000,
            "classifier": [{"case": "UDP v4", "bytes": 74, "ns": 91.0, "floor_ns": 33.0,
                "ratio": 2.757, "ns_rounds": [90.0, 95.0], "events_delivered": 0, "events_lost": 0}],
            "kfree_skb": [{"case": "tp_btf kfree_skb, early exit", "syns": 20000, "run_cnt": 20003,
                "ns_per_run": 361.4, "events_delivered": 0, "events_lost": 0}],
        });
        let meta = Meta {
            command: "cargo xtask bench".into(),
            date: "2026-01-01 00:00 UTC".into(),
            kernel: "6.18".into(),
            cpu: cpu_from("processor\t: 0\nmodel name\t: AMD EPYC\nprocessor\t: 1\n"),
        };
        let md = render(&doc, &meta).unwrap();
        assert!(md.contains("- CPU: AMD EPYC (2 CPUs)"), "{md}");
        assert!(md.contains("| UDP v4 | 74 | 91 | 33 | 2.8 | 90–95 | none |"), "{md}");
        assert!(
            md.contains("| tp_btf kfree_skb, early exit | 20000 | 20003 | 361 | none |"),
            "{md}"
        );
        assert!(md.contains("## How to read it"));
    }

    /// A document as reach-bench prints it with `--repeat 1000 --rounds 2 --syns 100`.
    fn plausible() -> Value {
        let cls = |case: &str, events: bool| {
            json!({"case": case, "bytes": 74, "ns": 90.0, "floor_ns": 30.0, "ratio": 3.0,
                "ns_rounds": [90.0, 91.0], "floor_ns_rounds": [30.0, 30.0], "packets": 2000,
                "events_delivered": if events { 1990 } else { 0 },
                "events_lost": if events { 10 } else { 0 }})
        };
        let drop = |case: &str, path: &str, events: u64| {
            json!({"case": format!("{case}, {path}"), "path": path, "syns": 100, "run_cnt": 104,
                "ns_per_run": 400.0, "events_delivered": events, "events_lost": 0})
        };
        json!({
            "repeat": 1000, "rounds": 2, "syns": 100,
            "classifier": [
                cls("SYN v4, watched port, ring read", true),
                cls("SYN v4, watched port, ring full", true),
                cls("SYN v4, port not watched", false),
                cls("SYN v6, watched port, ring read", true),
                cls("SYN v6, port not watched", false),
                cls("ACK v4", false),
                cls("UDP v4", false),
            ],
            "kfree_skb": [
                drop("tp_btf kfree_skb", "event path, reader waiting", 104),
                drop("tp_btf kfree_skb", "event path, reader behind", 100),
                drop("tp_btf kfree_skb", "early exit (port filter)", 0),
                drop("tracepoint skb:kfree_skb", "event path, reader waiting", 101),
                drop("tracepoint skb:kfree_skb", "early exit (port filter)", 2),
            ],
        })
    }

    fn check_err(doc: &Value) -> String {
        format!("{:#}", check(doc).expect_err("the check must refuse this document"))
    }

    #[test]
    fn a_complete_plausible_run_passes_the_check() {
        check(&plausible()).unwrap();
    }

    #[test]
    fn a_missing_case_or_figure_fails_the_check_naming_it() {
        let mut doc = plausible();
        doc["classifier"].as_array_mut().unwrap().pop();
        assert!(check_err(&doc).contains("6 classifier cases measured"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][4].as_object_mut().unwrap().remove("ns_per_run");
        let err = check_err(&doc);
        assert!(err.contains("lacks ns_per_run") && err.contains("early exit"), "{err}");

        let mut doc = plausible();
        doc["classifier"][6]["floor_ns_rounds"] = json!([30.0]);
        assert!(check_err(&doc).contains("1 floor_ns_rounds of 2 rounds"), "{}", check_err(&doc));
    }

    #[test]
    fn implausible_figures_fail_the_check() {
        let mut doc = plausible();
        doc["classifier"][2]["ratio"] = json!(f64::NAN);
        // serde_json turns NaN into null: the figure is missing, not a number.
        assert!(check_err(&doc).contains("lacks ratio"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["classifier"][5]["ns"] = json!(25.0);
        doc["classifier"][5]["ratio"] = json!(25.0 / 30.0);
        assert!(check_err(&doc).contains("\"ACK v4\": ratio 0.83"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["classifier"][0]["events_lost"] = json!(0);
        let err = check_err(&doc);
        assert!(err.contains("1990 SYNs delivered or lost of 2000 sent"), "{err}");

        let mut doc = plausible();
        doc["classifier"][4]["events_delivered"] = json!(3);
        assert!(check_err(&doc).contains("3 events from filtered packets"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][1]["run_cnt"] = json!(99);
        assert!(check_err(&doc).contains("99 handler runs for 100"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][2]["events_delivered"] = json!(100);
        assert!(check_err(&doc).contains("despite the port filter"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][3]["syns"] = json!(60);
        assert!(check_err(&doc).contains("60 of 100 SYNs sent"), "{}", check_err(&doc));
    }
}
