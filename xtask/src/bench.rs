//! `cargo xtask bench`: builds and runs `reach-bench` (crate reach-tests) in release, prints its
//! results as tables and rewrites BENCHMARKS.md at the workspace root. `--quick` is the short
//! form CI runs (through `tests/tests/bench_quick.rs`): a few rounds on the debug build, every
//! figure checked to be produced and plausible, nothing written.
//!
//! reach-bench does the measuring (BPF_PROG_TEST_RUN of the classifier next to the empty floor,
//! BPF run-time statistics of the kfree_skb handler under a loopback SYN load in a lab
//! namespace; end to end, `reach watch` itself: iperf3 throughput next to tcpdump and bpftrace,
//! a SYN flood accounted SYN by SYN, start-up time and RSS; `reach agent` idle, under two SYN
//! floods and a namespace churn) and prints one JSON document; this
//! module only checks and renders it (with the goals of issue 15 next to each figure), so xtask
//! keeps no dependency on the agent. The full run also writes the document with the goal
//! verdicts to `target/bench/results.json`.
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
/// The end-to-end part runs once, briefly: every figure produced, none meaningful.
pub const QUICK_ARGS: &[&str] = &[
    "--repeat",
    "20000",
    "--rounds",
    "3",
    "--syns",
    "300",
    "--e2e-rounds",
    "1",
    "--iperf-seconds",
    "1",
    "--flood-seconds",
    "1",
    "--startup-runs",
    "3",
    "--steady-seconds",
    "1",
    "--churn-namespaces",
    "10",
];

/// The cases reach-bench measures (its `classifier_bench` and `kfree_skb_bench` lists): a
/// benchmark that silently stops producing one of them must fail the check.
pub const CLASSIFIER_CASES: usize = 8;
pub const KFREE_SKB_ROWS: usize = 6;
/// The building blocks of an event reach-bench measures (`blocks`).
pub const BLOCKS: usize = 2;
/// The iperf3 configurations (keys of reach-bench's `e2e.iperf3.configs`, in order): the first
/// is the baseline of the ratios.
pub const IPERF_CONFIGS: &[&str] = &["none", "reach", "tcpdump", "bpftrace"];
/// The `reach watch` modes of `e2e.startup.modes`, in order.
pub const STARTUP_MODES: &[&str] = &["reach watch", "reach watch --no-packets"];

/// The goals of issue 15, shown next to each figure.
pub const GOAL_IPERF_RATIO: f64 = 0.97;
pub const GOAL_RSS_KIB: f64 = 30.0 * 1024.0;
pub const GOAL_STARTUP_S: f64 = 0.3;
/// `reach agent` idle, watching every namespace of the node: a DaemonSet's memory request.
pub const GOAL_AGENT_RSS_KIB: f64 = 50.0 * 1024.0;
/// What `reach agent` may grow by once its tables are full (a second flood after the first)
/// and over a churn of namespaces: allocator noise, not a growing structure.
pub const GOAL_AGENT_GROWTH_KIB: f64 = 4.0 * 1024.0;
/// `reach agent` with its flow table full (after the second flood): a DaemonSet's memory limit,
/// about twice the idle goal's worth of headroom over idle.
pub const GOAL_AGENT_FULL_RSS_KIB: f64 = 64.0 * 1024.0;
/// The floods of `e2e.agent.floods`.
pub const AGENT_FLOODS: usize = 2;

/// Sets up, builds and runs the benchmark (`args` go to reach-bench), prints the tables and
/// writes BENCHMARKS.md; with `--quick` among `args`, runs [`quick`] on the debug build instead.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    setup::all()?;
    let quick_run = args.iter().any(|a| a == "--quick");
    if quick_run && args.len() > 1 {
        bail!("--quick takes no other arguments (it runs reach-bench {})", QUICK_ARGS.join(" "));
    }
    // reach-bench and the reach it measures end to end, of the same profile.
    let mut build = workspace::cargo();
    build.args(["build", "-p", "reach-tests", "--bin", "reach-bench", "-p", "reach-agent"]);
    build.args(["--bin", "reach"]);
    if !quick_run {
        build.arg("--release");
    }
    run::run(&mut build).context("building reach-bench and reach failed")?;
    let profile = if quick_run { "debug" } else { "release" };
    let bin = workspace::target_dir().join(profile).join("reach-bench");
    let reach = workspace::reach_bin(!quick_run);
    if quick_run {
        println!("{}", quick(&bin, &reach)?);
        eprintln!(
            "xtask: every benchmark figure was produced and is plausible (BENCHMARKS.md untouched)"
        );
        return Ok(());
    }
    let mut bench_args = vec!["--reach".to_string(), reach.display().to_string()];
    bench_args.extend(args.iter().cloned());
    let doc = measure(&bin, &bench_args)?;
    check(&doc)?;
    let command = std::iter::once("cargo xtask bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let meta = meta(command);
    let report = render(&doc, &meta)?;
    println!("{report}");
    let dir = workspace::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join("results.json");
    let results = serde_json::to_string_pretty(&results(&doc, &meta)?)?;
    fs::write(&json_path, results).with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("xtask: wrote {}", json_path.display());
    let path = workspace::root().join("BENCHMARKS.md");
    // The soak's section is `cargo xtask soak`'s: kept as it is.
    let old = fs::read_to_string(&path).unwrap_or_default();
    let report = match crate::soak::section_of(&old) {
        Some(soak) => crate::soak::splice(&report, soak),
        None => report,
    };
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    let missed: Vec<String> =
        goals(&doc)?.into_iter().filter(|g| !g.met).map(|g| g.figure).collect();
    if !missed.is_empty() {
        eprintln!("xtask: goals missed: {}", missed.join("; "));
    }
    Ok(())
}

/// The reach-bench document with where and when it was measured and the goal verdicts
/// (`target/bench/results.json`).
pub fn results(doc: &Value, meta: &Meta) -> anyhow::Result<Value> {
    let mut out = doc.clone();
    out["meta"] = serde_json::json!({
        "command": meta.command, "date": meta.date, "kernel": meta.kernel, "cpu": meta.cpu,
    });
    out["goals"] = goals(doc)?
        .iter()
        .map(|g| {
            serde_json::json!({"figure": g.figure, "value": g.value, "goal": g.goal, "met": g.met})
        })
        .collect();
    Ok(out)
}

/// The short run: reach-bench at `bin` with [`QUICK_ARGS`] measuring the reach binary `reach`,
/// checked by [`check`] and rendered (the tables are returned, not written: quick numbers are
/// not benchmark results).
pub fn quick(bin: &Path, reach: &Path) -> anyhow::Result<String> {
    let mut args = vec!["--reach".to_string(), reach.display().to_string()];
    args.extend(QUICK_ARGS.iter().map(|a| a.to_string()));
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

pub fn meta(command: String) -> Meta {
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
        // The floor is an empty program run the same way. Plain traffic costs the classifier
        // about nothing on top, so noise may put it a little under the floor; half the floor
        // would be a broken measurement, not a fast program.
        ensure!(ratio > 0.5, "classifier case {case:?}: ratio {ratio} (ns {ns}, floor {floor})");
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
        let suppressed = figure("events_suppressed")?;
        if case.contains("rate-limited") {
            // One token a second: nearly every SYN is suppressed (a slow run earns a token per
            // second it takes), and none goes uncounted.
            ensure!(
                events + suppressed == packets && suppressed >= 0.99 * packets,
                "classifier case {case:?}: {events} events + {suppressed} suppressed of {packets}"
            );
        } else if case.contains("watched port") && !case.contains("not watched") {
            ensure!(
                events == packets && suppressed == 0.0,
                "classifier case {case:?}: {events} SYNs delivered or lost of {packets} sent"
            );
        } else {
            ensure!(
                events == 0.0 && suppressed == 0.0,
                "classifier case {case:?}: {events} events, {suppressed} suppressed from filtered packets"
            );
        }
        if let Some(goal) = r.get("goal_ratio").filter(|g| !g.is_null()) {
            ensure!(
                goal.as_f64().is_some_and(|g| g > 1.0),
                "classifier case {case:?}: goal {goal}"
            );
        }
    }
    let blocks = rows(doc, "blocks")?;
    ensure!(
        blocks.len() == BLOCKS,
        "{} building blocks measured, reach-bench has {BLOCKS}",
        blocks.len()
    );
    for b in blocks {
        let what = text(b, "block")?;
        let (ns, floor) = (num(b, "ns")?, num(b, "floor_ns")?);
        ensure!(
            ns.is_finite() && floor.is_finite() && ns > 0.0 && floor > 0.0,
            "building block {what:?}: ns {ns}, floor_ns {floor}"
        );
        let n = b.get("ns_rounds").and_then(Value::as_array).map_or(0, Vec::len);
        ensure!(n as f64 == rounds, "building block {what:?}: {n} ns_rounds of {rounds} rounds");
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
        // Both handlers run on every drop of the machine; the empty one was attached first.
        let (runs, floor_runs) = (figure("run_cnt")?, figure("floor_run_cnt")?);
        ensure!(
            runs >= sent && floor_runs >= sent,
            "kfree_skb row {case:?}: {runs} handler runs, {floor_runs} empty-handler runs for {sent} dropped SYNs"
        );
        let (per, floor, ratio) =
            (figure("ns_per_run")?, figure("floor_ns_per_run")?, figure("ratio")?);
        ensure!(
            per > 0.0 && floor > 0.0,
            "kfree_skb row {case:?}: {per} ns per run, floor {floor}"
        );
        ensure!(
            (ratio - per / floor).abs() < 1e-6 * ratio,
            "kfree_skb row {case:?}: ratio {ratio} is not ns_per_run/floor_ns_per_run"
        );
        let events = figure("events_delivered")? + figure("events_lost")?;
        if text(r, "path")?.starts_with("event path") {
            ensure!(
                events >= sent,
                "kfree_skb row {case:?}: {events} events for {sent} dropped SYNs"
            );
        } else {
            // The namespace or port filter excludes every drop of the load, and the namespace
            // filter every other drop of the machine.
            ensure!(events == 0.0, "kfree_skb row {case:?}: {events} events despite the filter");
        }
    }
    check_e2e(doc).context("end-to-end benchmarks (e2e)")
}

/// A finite number at `key` of `v`, the error naming `what` (the table and row).
fn figure(v: &Value, what: &str, key: &str) -> anyhow::Result<f64> {
    let x = num(v, key).with_context(|| what.to_string())?;
    ensure!(x.is_finite(), "{what}: {key} is {x}");
    Ok(x)
}

fn section<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a Value> {
    v.get(key).filter(|s| s.is_object()).with_context(|| format!("reach-bench output lacks {key}"))
}

/// The end-to-end figures: every iperf3 configuration measured every round with a positive
/// throughput and its ratio to the first; the flood's SYNs received, reach's account of them and
/// its CPU and memory; both start-up modes timed every run, with their RSS. Only plausibility:
/// the goals are verdicts in the report, not checks.
fn check_e2e(doc: &Value) -> anyhow::Result<()> {
    let e2e = section(doc, "e2e")?;
    let iperf = section(e2e, "iperf3")?;
    let rounds = figure(iperf, "iperf3", "rounds")?;
    ensure!(rounds >= 1.0, "iperf3: {rounds} rounds");
    let configs = rows(iperf, "configs")?;
    let keys: Vec<&str> = configs.iter().filter_map(|c| c["key"].as_str()).collect();
    ensure!(keys == IPERF_CONFIGS, "iperf3 configurations {keys:?}, expected {IPERF_CONFIGS:?}");
    let base = figure(&configs[0], "iperf3 none", "gbps")?;
    for c in configs {
        let what = format!("iperf3 {}", text(c, "key")?);
        let gbps = figure(c, &what, "gbps")?;
        ensure!(gbps > 0.0, "{what}: {gbps} Gbit/s");
        let per_round: Vec<f64> =
            c["gbps_rounds"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        ensure!(
            per_round.len() as f64 == rounds,
            "{what}: {} gbps_rounds of {rounds} rounds",
            per_round.len()
        );
        ensure!(
            per_round.iter().all(|g| g.is_finite() && *g > 0.0),
            "{what}: a round measured {per_round:?} Gbit/s"
        );
        let (lo, hi) = (figure(c, &what, "gbps_min")?, figure(c, &what, "gbps_max")?);
        ensure!(lo <= gbps && gbps <= hi, "{what}: median {gbps} outside {lo}–{hi}");
        let ratios: Vec<f64> =
            c["ratio_rounds"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        ensure!(
            ratios.len() as f64 == rounds,
            "{what}: {} ratio_rounds of {rounds} rounds",
            ratios.len()
        );
        let ratio = figure(c, &what, "ratio")?;
        ensure!(
            ratio > 0.0 && (ratio - median(&ratios)).abs() < 1e-6 * ratio,
            "{what}: ratio {ratio} is not the median of ratio_rounds {ratios:?}"
        );
        let of_medians = figure(c, &what, "ratio_of_medians")?;
        ensure!(
            (of_medians - gbps / base).abs() < 1e-6 * of_medians,
            "{what}: ratio_of_medians {of_medians} is not gbps / nothing attached's {}",
            gbps / base
        );
    }

    let flood = section(e2e, "syn_flood")?;
    let f = |key: &str| figure(flood, "syn_flood", key);
    let received = f("rx_packets")?;
    ensure!(received > 0.0, "syn_flood: {received} SYNs received by the server veth");
    ensure!(f("syn_rate")? > 0.0 && f("seconds")? > 0.0, "syn_flood: no SYN rate");
    let (events, suppressed, lost) = (f("syn_events")?, f("suppressed_syn")?, f("lost_syn")?);
    ensure!(events > 0.0, "syn_flood: reach reported no SYN event of {received} SYNs");
    let counted = f("counted")?;
    ensure!(
        counted == events + suppressed + lost,
        "syn_flood: counted {counted} is not events {events} + suppressed {suppressed} + lost {lost}"
    );
    ensure!(
        f("unaccounted")? == received - counted,
        "syn_flood: unaccounted is not rx_packets {received} − counted {counted}"
    );
    ensure!(flood["lost_split"].is_boolean(), "reach-bench output lacks lost_split (syn_flood)");
    let (cpu, flood_cpu) = (f("reach_cpu_s")?, f("reach_cpu_s_flood")?);
    ensure!(
        cpu > 0.0 && (0.0..=cpu).contains(&flood_cpu),
        "syn_flood: reach_cpu_s {cpu}, reach_cpu_s_flood {flood_cpu}"
    );
    let rss = f("reach_peak_rss_kib")?;
    ensure!(rss > 0.0, "syn_flood: reach_peak_rss_kib {rss}");

    let startup = section(e2e, "startup")?;
    let runs = figure(startup, "startup", "runs")?;
    let modes = rows(startup, "modes")?;
    let names: Vec<&str> = modes.iter().filter_map(|m| m["mode"].as_str()).collect();
    ensure!(names == STARTUP_MODES, "start-up modes {names:?}, expected {STARTUP_MODES:?}");
    for m in modes {
        let what = format!("startup {:?}", text(m, "mode")?);
        let t = figure(m, &what, "startup_s")?;
        ensure!(t > 0.0, "{what}: start-up {t} s");
        let n = m["startup_s_runs"].as_array().map_or(0, Vec::len);
        ensure!(n as f64 == runs, "{what}: {n} startup_s_runs of {runs} runs");
        let (rss, hwm) = (figure(m, &what, "rss_kib")?, figure(m, &what, "hwm_kib")?);
        ensure!(rss > 0.0 && hwm >= rss, "{what}: VmRSS {rss} KiB, VmHWM {hwm} KiB");
    }
    check_agent(section(e2e, "agent")?).context("agent")
}

/// `reach agent`'s figures: the namespaces it said it watched (the host and the bench pair at
/// least), its memory and CPU idle, both floods' SYNs received and its account of them, its
/// memory after each and the growth between them, and the churn's namespaces seen, leaked, the
/// watched gauge and the memory around it.
fn check_agent(agent: &Value) -> anyhow::Result<()> {
    let ready = section(agent, "ready")?;
    let ns = figure(ready, "agent ready", "namespaces")?;
    ensure!(ns >= 3.0, "agent ready: {ns} namespaces watched (the host and the pair at least)");
    ensure!(figure(ready, "agent ready", "interfaces")? >= 2.0, "agent ready: no interfaces");
    let steady = section(agent, "steady")?;
    let (rss, hwm) = (figure(steady, "steady", "rss_kib")?, figure(steady, "steady", "hwm_kib")?);
    ensure!(rss > 0.0 && hwm >= rss, "steady: VmRSS {rss} KiB, VmHWM {hwm} KiB");
    ensure!(figure(steady, "steady", "cpu_s")? > 0.0, "steady: no CPU time");
    ensure!(figure(steady, "steady", "machine_namespaces")? >= 3.0, "steady: machine_namespaces");
    let floods = rows(agent, "floods")?;
    ensure!(
        floods.len() == AGENT_FLOODS,
        "{} floods measured, expected {AGENT_FLOODS}",
        floods.len()
    );
    for (i, fl) in floods.iter().enumerate() {
        let what = format!("flood {}", i + 1);
        let f = |key: &str| figure(fl, &what, key);
        let received = f("rx_packets")?;
        ensure!(received > 0.0, "{what}: {received} SYNs received by the server veth");
        ensure!(f("seconds")? > 0.0 && f("syn_rate")? > 0.0, "{what}: no SYN rate");
        let (syn, suppressed, lost) = (f("reach_syn")?, f("suppressed_syn")?, f("lost_syn")?);
        ensure!(syn > 0.0, "{what}: the agent counted no SYN of {received}");
        let counted = f("counted")?;
        ensure!(
            counted == syn + suppressed + lost,
            "{what}: counted {counted} is not SYNs {syn} + suppressed {suppressed} + lost {lost}"
        );
        ensure!(
            f("unaccounted")? == received - counted,
            "{what}: unaccounted is not rx_packets {received} − counted {counted}"
        );
        ensure!(f("cpu_s")? > 0.0, "{what}: the agent used no CPU under the flood");
        ensure!(f("attempts_total")? > 0.0, "{what}: no connection attempt reported");
        ensure!(f("machine_namespaces")? >= 3.0, "{what}: machine_namespaces");
        let (rss, hwm) = (f("rss_kib")?, f("hwm_kib")?);
        ensure!(rss > 0.0 && hwm >= rss, "{what}: VmRSS {rss} KiB, VmHWM {hwm} KiB");
        for key in ["quiet", "counters_settled"] {
            ensure!(fl[key].is_boolean(), "reach-bench output lacks {key} ({what})");
        }
    }
    let growth = figure(agent, "agent", "flood_growth_kib")?;
    let (rss1, rss2) = (num(&floods[0], "rss_kib")?, num(&floods[1], "rss_kib")?);
    ensure!(
        growth == rss2 - rss1,
        "flood_growth_kib {growth} is not flood 2's VmRSS {rss2} − flood 1's {rss1}"
    );
    let churn = section(agent, "churn")?;
    let c = |key: &str| figure(churn, "churn", key);
    let n = c("namespaces")?;
    ensure!(n >= 1.0, "churn: {n} namespaces");
    for key in ["seen", "seen_gone", "leaked_namespaces"] {
        let v = c(key)?;
        ensure!((0.0..=n).contains(&v), "churn: {key} {v} of {n} namespaces");
    }
    ensure!(c("seconds")? > 0.0, "churn: took no time");
    ensure!(
        c("watched_before")? >= 3.0,
        "churn: reach_watched_namespaces {}",
        c("watched_before")?
    );
    ensure!(c("watched_after")? >= 0.0, "churn: watched_after {}", c("watched_after")?);
    for key in ["machine_namespaces_before", "machine_namespaces_after"] {
        ensure!(c(key)? >= 3.0, "churn: {key} {}", c(key)?);
    }
    c("netns_fds_before")?;
    c("netns_fds_after")?;
    let (before, after) = (section(churn, "before")?, section(churn, "after")?);
    let (b, a) =
        (figure(before, "churn before", "rss_kib")?, figure(after, "churn after", "rss_kib")?);
    ensure!(b > 0.0 && a > 0.0, "churn: VmRSS {b} → {a} KiB");
    ensure!(c("growth_kib")? == a - b, "churn: growth_kib is not VmRSS after {a} − before {b}");
    Ok(())
}

/// A goal of issue 15 and whether this run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub figure: String,
    pub value: f64,
    /// As shown: `≥ 0.97`, `0`, `≤ 30 MiB`, `≤ 0.3 s`, `≤ 1.25×`.
    pub goal: String,
    pub met: bool,
}

/// The goals, from a checked document: iperf3 with reach ≥ 0.97 of nothing attached, no SYN
/// unaccounted under the flood, RSS ≤ 30 MiB (steady in both modes, and the peak under the
/// flood), start-up ≤ 0.3 s (median, both modes).
pub fn goals(doc: &Value) -> anyhow::Result<Vec<Goal>> {
    let e2e = section(doc, "e2e")?;
    let mut g = Vec::new();
    // The hot path: each row that carries a goal, as a ratio to its floor.
    for (table, what) in [("classifier", "classifier"), ("kfree_skb", "kfree_skb")] {
        for r in rows(doc, table)? {
            let Some(goal) = r.get("goal_ratio").and_then(Value::as_f64) else { continue };
            let ratio = num(r, "ratio")?;
            g.push(Goal {
                figure: hot_path_figure(what, text(r, "case")?),
                value: ratio,
                goal: format!("≤ {goal}×"),
                met: ratio <= goal,
            });
        }
    }
    let reach = rows(section(e2e, "iperf3")?, "configs")?
        .iter()
        .find(|c| c["key"] == "reach")
        .context("no iperf3 reach configuration")?;
    let ratio = num(reach, "ratio")?;
    g.push(Goal {
        figure: "iperf3 with reach watch / nothing attached".into(),
        value: ratio,
        goal: "≥ 0.97".into(),
        met: ratio >= GOAL_IPERF_RATIO,
    });
    let flood = section(e2e, "syn_flood")?;
    let unaccounted = num(flood, "unaccounted")?;
    g.push(Goal {
        figure: "SYNs unaccounted under the flood".into(),
        value: unaccounted,
        goal: "0".into(),
        met: unaccounted == 0.0,
    });
    let peak = num(flood, "reach_peak_rss_kib")?;
    g.push(Goal {
        figure: "reach watch --json peak RSS under the flood (KiB)".into(),
        value: peak,
        goal: "≤ 30 MiB".into(),
        met: peak <= GOAL_RSS_KIB,
    });
    for m in rows(section(e2e, "startup")?, "modes")? {
        let mode = text(m, "mode")?;
        let t = num(m, "startup_s")?;
        g.push(Goal {
            figure: format!("{mode} start-up (s, median)"),
            value: t,
            goal: "≤ 0.3 s".into(),
            met: t <= GOAL_STARTUP_S,
        });
        let rss = num(m, "rss_kib")?;
        g.push(Goal {
            figure: format!("{mode} steady VmRSS (KiB)"),
            value: rss,
            goal: "≤ 30 MiB".into(),
            met: rss <= GOAL_RSS_KIB,
        });
    }
    agent_goals(section(e2e, "agent")?, &mut g)?;
    Ok(g)
}

/// The figure names of `reach agent`'s goals.
pub const AGENT_IDLE_RSS: &str = "reach agent idle VmRSS (KiB)";
pub const AGENT_FULL_RSS: &str = "reach agent VmRSS with its flow table full, after flood 2 (KiB)";
pub const AGENT_FLOOD_GROWTH: &str = "reach agent VmRSS growth from flood 1 to flood 2 (KiB)";
pub const AGENT_UNSEEN: &str = "churned namespaces reach agent did not see come or go";
pub const AGENT_WATCHED_LEFT: &str =
    "reach_watched_namespaces after the churn − the machine's namespaces then";
pub const AGENT_LEAKED: &str = "namespaces held alive by reach agent after the churn";
pub const AGENT_CHURN_GROWTH: &str = "reach agent VmRSS growth over the churn (KiB)";

fn agent_unaccounted(flood: usize) -> String {
    format!("SYNs unaccounted by reach agent, flood {flood}")
}

/// `reach agent`: idle RSS ≤ 50 MiB, every SYN of both floods accounted for, no growth beyond
/// 4 MiB once its tables are full nor over the churn, every churned namespace seen to come and
/// go, none held alive, the watched gauge back where it was.
fn agent_goals(agent: &Value, g: &mut Vec<Goal>) -> anyhow::Result<()> {
    let rss = num(section(agent, "steady")?, "rss_kib")?;
    g.push(Goal {
        figure: AGENT_IDLE_RSS.into(),
        value: rss,
        goal: "≤ 50 MiB".into(),
        met: rss <= GOAL_AGENT_RSS_KIB,
    });
    for (i, f) in rows(agent, "floods")?.iter().enumerate() {
        let u = num(f, "unaccounted")?;
        g.push(Goal {
            figure: agent_unaccounted(i + 1),
            value: u,
            goal: "0".into(),
            met: u == 0.0,
        });
    }
    let growth = |figure: &str, kib: f64| Goal {
        figure: figure.into(),
        value: kib,
        goal: "≤ 4 MiB".into(),
        met: kib <= GOAL_AGENT_GROWTH_KIB,
    };
    let full = num(rows(agent, "floods")?.last().context("no flood")?, "rss_kib")?;
    g.push(Goal {
        figure: AGENT_FULL_RSS.into(),
        value: full,
        goal: "≤ 64 MiB".into(),
        met: full <= GOAL_AGENT_FULL_RSS_KIB,
    });
    g.push(growth(AGENT_FLOOD_GROWTH, num(agent, "flood_growth_kib")?));
    let churn = section(agent, "churn")?;
    let n = num(churn, "namespaces")?;
    let unseen = (n - num(churn, "seen")?) + (n - num(churn, "seen_gone")?);
    g.push(Goal {
        figure: AGENT_UNSEEN.into(),
        value: unseen,
        goal: "0".into(),
        met: unseen == 0.0,
    });
    let left = num(churn, "watched_after")? - num(churn, "machine_namespaces_after")?;
    g.push(Goal {
        figure: AGENT_WATCHED_LEFT.into(),
        value: left,
        goal: "0".into(),
        met: left == 0.0,
    });
    let leaked = num(churn, "leaked_namespaces")?;
    g.push(Goal {
        figure: AGENT_LEAKED.into(),
        value: leaked,
        goal: "0".into(),
        met: leaked == 0.0,
    });
    g.push(growth(AGENT_CHURN_GROWTH, num(churn, "growth_kib")?));
    Ok(())
}

/// The figure name of a hot-path row's goal.
fn hot_path_figure(table: &str, case: &str) -> String {
    format!("{table} {case} / floor")
}

/// The goal cell of a figure: `≥ 0.97 ✓` or `≤ 0.3 s ✗ missed`.
fn verdict(goals: &[Goal], figure: &str) -> String {
    match goals.iter().find(|g| g.figure == figure) {
        Some(g) if g.met => format!("{} ✓", g.goal),
        Some(g) => format!("{} ✗ missed", g.goal),
        None => "–".into(),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// `1 round`, `7 rounds`.
fn plural(n: f64, what: &str) -> String {
    if n == 1.0 { format!("1 {what}") } else { format!("{n:.0} {what}s") }
}

/// `lo–hi` of the array `key`, with `digits` decimals.
fn spread_of(row: &Value, key: &str, digits: usize) -> String {
    let v: Vec<f64> = row[key].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
    match (v.iter().copied().reduce(f64::min), v.iter().copied().reduce(f64::max)) {
        (Some(lo), Some(hi)) => format!("{lo:.digits$}–{hi:.digits$}"),
        _ => "–".into(),
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// The end-to-end tables of BENCHMARKS.md.
fn render_e2e(s: &mut String, doc: &Value) -> anyhow::Result<()> {
    let e2e = section(doc, "e2e")?;
    let goals = goals(doc)?;
    let iperf = section(e2e, "iperf3")?;
    writeln!(s, "\n## End to end: iperf3 TCP throughput over a veth pair\n")?;
    writeln!(
        s,
        "iperf3 from the client namespace to the server namespace over one veth pair, {:.0} s per \
         run, {} of the four configurations (the order rotates every round); each observer is \
         started before its run, confirmed attached and stopped after it.\n",
        num(iperf, "seconds")?,
        plural(num(iperf, "rounds")?, "round")
    )?;
    writeln!(
        s,
        "| configuration | Gbit/s (median) | rounds min–max | ratio to nothing attached \
         (median of the rounds' ratios) | rounds min–max | ratio of the medians | goal |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---|")?;
    for c in rows(iperf, "configs")? {
        let goal = if c["key"] == "reach" {
            verdict(&goals, "iperf3 with reach watch / nothing attached")
        } else {
            "–".into()
        };
        writeln!(
            s,
            "| `{}` | {:.2} | {:.2}–{:.2} | {:.3} | {} | {:.3} | {goal} |",
            text(c, "config")?,
            num(c, "gbps")?,
            num(c, "gbps_min")?,
            num(c, "gbps_max")?,
            num(c, "ratio")?,
            spread_of(c, "ratio_rounds", 3),
            num(c, "ratio_of_medians")?,
        )?;
    }

    let f = section(e2e, "syn_flood")?;
    writeln!(s, "\n## End to end: SYN flood under `reach watch --json`\n")?;
    writeln!(
        s,
        "`hping3 -S --flood -p {:.0}` (a closed port) from the client namespace for {:.1} s, \
         `reach watch --json` on the server namespace with the default `--syn-rate`. The server \
         veth receives nothing but the flood (IPv4 only, static neighbours), so its rx_packets \
         counts the SYNs; reach accounts for each as an event, rate-limited (`suppressed.syn`) \
         or lost (`lost.syn`).\n",
        num(f, "closed_port")?,
        num(f, "seconds")?
    )?;
    writeln!(s, "| figure | value | goal |")?;
    writeln!(s, "|---|---:|---|")?;
    let hping = f["hping3_sent"].as_f64().map_or("–".into(), |n| format!("{n:.0}"));
    let lost_note = if f["lost_split"] == true { "" } else { " (lost of every kind: no split)" };
    let rows_: Vec<(String, String, String)> = vec![
        ("SYNs hping3 sent".into(), hping, "–".into()),
        (
            "SYNs the server veth received (rx_packets)".into(),
            format!("{:.0}", num(f, "rx_packets")?),
            "–".into(),
        ),
        (
            "TCP segments the server received (InSegs)".into(),
            format!("{:.0}", num(f, "tcp_in_segs")?),
            "–".into(),
        ),
        ("SYN rate".into(), format!("{:.0}/s", num(f, "syn_rate")?), "–".into()),
        ("reach SYN events".into(), format!("{:.0}", num(f, "syn_events")?), "–".into()),
        (
            "reach suppressed.syn (rate limit)".into(),
            format!("{:.0}", num(f, "suppressed_syn")?),
            "–".into(),
        ),
        (format!("reach lost.syn{lost_note}"), format!("{:.0}", num(f, "lost_syn")?), "–".into()),
        (
            "**unaccounted** (received − events − suppressed − lost)".into(),
            format!("{:.0}", num(f, "unaccounted")?),
            verdict(&goals, "SYNs unaccounted under the flood"),
        ),
        (
            "reach CPU time from the flood's start to reach's exit (utime + stime)".into(),
            format!("{:.2} s", num(f, "reach_cpu_s_flood")?),
            "–".into(),
        ),
        (
            "reach CPU time, whole run (start-up included)".into(),
            format!("{:.2} s", num(f, "reach_cpu_s")?),
            "–".into(),
        ),
        (
            "reach peak RSS (VmHWM)".into(),
            mib(num(f, "reach_peak_rss_kib")?),
            verdict(&goals, "reach watch --json peak RSS under the flood (KiB)"),
        ),
    ];
    for (what, value, goal) in rows_ {
        writeln!(s, "| {what} | {value} | {goal} |")?;
    }

    let st = section(e2e, "startup")?;
    writeln!(s, "\n## End to end: `reach watch` start-up and memory\n")?;
    writeln!(
        s,
        "From spawn to the line that says everything is attached, median of {} per mode \
         (alternating); VmRSS after {:.0} s attached and idle, VmHWM then. Both on the lab's server \
         namespace (`--netns`).\n",
        plural(num(st, "runs")?, "run"),
        num(st, "steady_seconds")?
    )?;
    writeln!(
        s,
        "| mode | attached line | start-up (median) | min–max | goal | VmRSS | VmHWM | goal |"
    )?;
    writeln!(s, "|---|---|---:|---:|---|---:|---:|---|")?;
    for m in rows(st, "modes")? {
        let mode = text(m, "mode")?;
        writeln!(
            s,
            "| `{mode}` | \"{}\" | {:.3} s | {:.3}–{:.3} s | {} | {} | {} | {} |",
            text(m, "ready_line")?,
            num(m, "startup_s")?,
            num(m, "startup_s_min")?,
            num(m, "startup_s_max")?,
            verdict(&goals, &format!("{mode} start-up (s, median)")),
            mib(num(m, "rss_kib")?),
            mib(num(m, "hwm_kib")?),
            verdict(&goals, &format!("{mode} steady VmRSS (KiB)")),
        )?;
    }
    render_agent(s, section(e2e, "agent")?, &goals)
}

/// `1.5 MiB` or `-0.3 MiB`: a growth, signed.
fn mib_signed(kib: f64) -> String {
    format!("{:+.1} MiB", kib / 1024.0)
}

/// The `reach agent` tables: idle, the two floods side by side, the churn.
fn render_agent(s: &mut String, a: &Value, goals: &[Goal]) -> anyhow::Result<()> {
    let ready = section(a, "ready")?;
    let steady = section(a, "steady")?;
    writeln!(s, "\n## End to end: `reach agent` idle, under a SYN flood and namespace churn\n")?;
    writeln!(
        s,
        "`reach agent --rescan {} --syn-rate {:.0}` watching every namespace of the machine \
         (ready with {:.0} namespaces, {:.0} interfaces: the host, the bench pair and whatever \
         else runs here). The `--syn-rate` is above any flood here, so every SYN is an event and \
         its flow table fills to its bound (65,536 flows) and evicts. Memory is VmRSS read from \
         /proc; a flood's is read once its flows have timed out (`--flow-timeout` 3 s) and the \
         agent went quiet.\n",
        num(a, "rescan_s")?,
        num(a, "syn_rate_limit")?,
        num(ready, "namespaces")?,
        num(ready, "interfaces")?,
    )?;
    writeln!(s, "| idle | value | goal |")?;
    writeln!(s, "|---|---:|---|")?;
    writeln!(
        s,
        "| VmRSS after {:.0} s ready and idle | {} | {} |",
        num(steady, "seconds")?,
        mib(num(steady, "rss_kib")?),
        verdict(goals, AGENT_IDLE_RSS)
    )?;
    writeln!(s, "| VmHWM then (start-up included) | {} | – |", mib(num(steady, "hwm_kib")?))?;
    writeln!(s, "| CPU time then (start-up included) | {:.2} s | – |", num(steady, "cpu_s")?)?;

    let floods = rows(a, "floods")?;
    writeln!(
        s,
        "\n`hping3 -S --flood --rand-source -p {:.0}` (a closed port of the server namespace; random \
         source addresses, so every SYN is a new connection attempt) from the client namespace, \
         twice, {:.1} s each. The agent's account is the change of `reach_syn_total` of the \
         server namespace + `reach_events_suppressed_total{{kind=\"syn\"}}` + \
         `reach_events_lost_total{{kind=\"syn\"}}` across the flood (suppressed and lost are \
         machine-wide: other SYNs on the machine meanwhile show as a negative unaccounted).\n",
        num(a, "closed_port")?,
        num(&floods[0], "seconds")?,
    )?;
    writeln!(s, "| figure | flood 1 | flood 2 | goal |")?;
    writeln!(s, "|---|---:|---:|---|")?;
    let row = |s: &mut String,
               what: &str,
               cell: &dyn Fn(&Value) -> anyhow::Result<String>,
               goal: String|
     -> anyhow::Result<()> {
        writeln!(s, "| {what} | {} | {} | {goal} |", cell(&floods[0])?, cell(&floods[1])?)?;
        Ok(())
    };
    let count = |key: &'static str| {
        move |f: &Value| -> anyhow::Result<String> { Ok(format!("{:.0}", num(f, key)?)) }
    };
    row(s, "SYNs the server veth received (rx_packets)", &count("rx_packets"), "–".into())?;
    row(s, "SYN rate", &|f| Ok(format!("{:.0}/s", num(f, "syn_rate")?)), "–".into())?;
    row(s, "agent SYN events (reach_syn_total)", &count("reach_syn"), "–".into())?;
    row(s, "agent suppressed SYN events", &count("suppressed_syn"), "–".into())?;
    row(s, "agent lost SYN events", &count("lost_syn"), "–".into())?;
    let unaccounted = format!(
        "{} / {}",
        verdict(goals, &agent_unaccounted(1)),
        verdict(goals, &agent_unaccounted(2))
    );
    row(
        s,
        "**unaccounted** (received − events − suppressed − lost)",
        &count("unaccounted"),
        unaccounted,
    )?;
    row(
        s,
        "connection attempts reported so far (reach_connection_attempts_total)",
        &count("attempts_total"),
        "–".into(),
    )?;
    row(
        s,
        "agent CPU time, flood and its digestion",
        &|f| Ok(format!("{:.2} s", num(f, "cpu_s")?)),
        "–".into(),
    )?;
    row(
        s,
        "digestion: flows timed out, agent quiet after",
        &|f| {
            Ok(format!(
                "{:.1} s{}",
                num(f, "digest_s")?,
                if f["quiet"] == true { "" } else { " (not quiet)" }
            ))
        },
        "–".into(),
    )?;
    let full = format!("flood 2: {}", verdict(goals, AGENT_FULL_RSS));
    row(s, "VmRSS after", &|f| Ok(mib(num(f, "rss_kib")?)), full)?;
    row(s, "VmHWM after", &|f| Ok(mib(num(f, "hwm_kib")?)), "–".into())?;
    row(
        s,
        "the machine's namespaces then (each one tapped by the agent)",
        &count("machine_namespaces"),
        format!("idle: {:.0}", num(steady, "machine_namespaces")?),
    )?;
    writeln!(
        s,
        "| **VmRSS growth, flood 1 → flood 2** | | {} | {} |",
        mib_signed(num(a, "flood_growth_kib")?),
        verdict(goals, AGENT_FLOOD_GROWTH)
    )?;

    let c = section(a, "churn")?;
    let n = num(c, "namespaces")?;
    writeln!(
        s,
        "\nNamespace churn: {n:.0} lab namespaces created and deleted one at a time, each with a \
         veth (addressed, up) into one anchor namespace; each is waited for until the agent \
         exports it (`reach_namespace_interfaces` ≥ 1) and, once deleted, until it does not \
         (at most 10 s each). A namespace still held by anyone keeps its veth: after the churn \
         (and up to 15 s), every peer in the anchor must be gone.\n"
    )?;
    writeln!(s, "| figure | value | goal |")?;
    writeln!(s, "|---|---:|---|")?;
    let before = section(c, "before")?;
    let after = section(c, "after")?;
    let lines: Vec<(String, String, String)> = vec![
        (
            "namespaces created and deleted".into(),
            format!("{n:.0} in {:.1} s", num(c, "seconds")?),
            "–".into(),
        ),
        (
            "seen tapped / seen gone".into(),
            format!("{:.0} / {:.0}", num(c, "seen")?, num(c, "seen_gone")?),
            "–".into(),
        ),
        (
            "**not seen** to come or go".into(),
            format!("{:.0}", 2.0 * n - num(c, "seen")? - num(c, "seen_gone")?),
            verdict(goals, AGENT_UNSEEN),
        ),
        (
            "reach_watched_namespaces before → after".into(),
            format!("{:.0} → {:.0}", num(c, "watched_before")?, num(c, "watched_after")?),
            "–".into(),
        ),
        (
            "the machine's namespaces (/run/netns and /proc/*/ns/net) before → after".into(),
            format!(
                "{:.0} → {:.0}",
                num(c, "machine_namespaces_before")?,
                num(c, "machine_namespaces_after")?
            ),
            "–".into(),
        ),
        (
            "**watched − the machine's** after the churn".into(),
            format!("{:+.0}", num(c, "watched_after")? - num(c, "machine_namespaces_after")?),
            verdict(goals, AGENT_WATCHED_LEFT),
        ),
        (
            "**leaked namespaces** (veth peers left in the anchor)".into(),
            format!("{:.0}", num(c, "leaked_namespaces")?),
            verdict(goals, AGENT_LEAKED),
        ),
        (
            "agent's open namespace files before → after".into(),
            format!("{:.0} → {:.0}", num(c, "netns_fds_before")?, num(c, "netns_fds_after")?),
            "–".into(),
        ),
        (
            "VmRSS before → after".into(),
            format!("{} → {}", mib(num(before, "rss_kib")?), mib(num(after, "rss_kib")?)),
            "–".into(),
        ),
        (
            "**VmRSS growth over the churn**".into(),
            mib_signed(num(c, "growth_kib")?),
            verdict(goals, AGENT_CHURN_GROWTH),
        ),
        (
            "agent CPU time over the churn".into(),
            format!("{:.2} s", num(after, "cpu_s")? - num(before, "cpu_s")?),
            "–".into(),
        ),
    ];
    for (what, value, goal) in lines {
        writeln!(s, "| {what} | {value} | {goal} |")?;
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
    let goals = goals(doc)?;
    writeln!(s, "## TC classifier `reach_ingress` next to the empty classifier `reach_floor`\n")?;
    writeln!(
        s,
        "| case | bytes | ns/packet (median) | floor ns/packet (median) | ratio | goal | classifier rounds min–max | events delivered / lost | suppressed |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---|---:|---|---:|")?;
    for r in rows(doc, "classifier")? {
        let case = text(r, "case")?;
        writeln!(
            s,
            "| {case} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {} | {:.0} |",
            num(r, "bytes")?,
            num(r, "ns")?,
            num(r, "floor_ns")?,
            num(r, "ratio")?,
            verdict(&goals, &hot_path_figure("classifier", case)),
            spread(r, "ns_rounds"),
            events(r)?,
            num(r, "events_suppressed")?,
        )?;
    }
    writeln!(s, "\n## What an event costs at the least\n")?;
    writeln!(
        s,
        "Each building block alone in a classifier, next to the empty one in the same rounds: \
         an event needs both, so the SYN-with-an-event cases cannot cost less than their sum.\n"
    )?;
    writeln!(
        s,
        "| building block | ns/packet (median) | floor ns/packet (median) | over the floor | ratio |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|")?;
    for b in rows(doc, "blocks")? {
        let (ns, fl) = (num(b, "ns")?, num(b, "floor_ns")?);
        writeln!(
            s,
            "| {} | {ns:.0} | {fl:.0} | {:.0} | {:.1} |",
            text(b, "block")?,
            ns - fl,
            num(b, "ratio")?
        )?;
    }
    writeln!(
        s,
        "\n## kfree_skb drop handler next to an empty tp_btf handler (BPF run-time statistics)\n"
    )?;
    writeln!(
        s,
        "Load: {:.0} connects to a closed port on 127.0.0.1 inside a lab namespace per row (each \
         SYN is dropped with NO_SOCKET). The empty handler `reach_kfree_skb_floor` is attached to \
         the same hook for the whole run, so both run on exactly the same drops; `run_cnt` also \
         counts other drops on the machine in the meantime.\n",
        num(doc, "syns")?
    )?;
    writeln!(
        s,
        "| attachment, path | SYNs | run_cnt | ns/run | empty handler ns/run | ratio | goal | events delivered / lost |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---|---|")?;
    for r in rows(doc, "kfree_skb")? {
        let case = text(r, "case")?;
        writeln!(
            s,
            "| {case} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} |",
            num(r, "syns")?,
            num(r, "run_cnt")?,
            num(r, "ns_per_run")?,
            num(r, "floor_ns_per_run")?,
            num(r, "ratio")?,
            verdict(&goals, &hot_path_figure("kfree_skb", case)),
            events(r)?,
        )?;
    }
    render_e2e(&mut s, doc)?;
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
  the ring as fast as it can, on the other CPU: the two share the ring's cache lines. The
  programs submit without waking the reader and wake it every 128th event of a CPU (a wake-up
  is an irq_work, which costs more than the event itself inside a VM; `reach watch` also
  drains every 50 ms). At this unbounded rate some events can be counted as lost; reach's
  token bucket (`--syn-rate`, default 1000/s per CPU) keeps real loads far below it. **Ring
  full**: nothing reads, every reservation fails and is counted as lost. **Rate-limited**: the
  token bucket is empty, as under a SYN flood: the clock read and the bucket, no event.
- **Port not watched**: the SYN is parsed and counted, then filtered out (`--port`). ACK and
  UDP update no counter at all: one bounds-checked read per header after `skb->protocol`.
- **kfree_skb** numbers come from the kernel's BPF run-time statistics (`run_time_ns /
  run_cnt`) over a real loopback load, so they include the kernel's own accounting around each
  run; the empty tp_btf handler on the same hook, attached all along, is their floor.
  *Namespace not watched*: the handler reads the namespace (typed loads through the tp_btf
  arguments; the classic tracepoint has only bpf_probe_read_kernel) and returns. *Port not
  watched*: it also copies the IP and TCP headers (one bpf_probe_read_kernel) and returns.
- **End to end**, the iperf3 ratios are the number to compare: the four configurations run in
  the same rounds, so a disturbance of the machine moves them all. On veth, TCP runs at memory
  speed on one CPU, so anything per-packet shows: `reach watch` runs its TC classifiers on
  every packet of the stream (ingress and egress) and its drop tracer on every freed skb.
- **The flood's accounting** must add up exactly: a SYN that is neither an event, nor counted
  as rate-limited, nor counted as lost was silently missed (or counted after reach exited).
  `lost.syn` is reach's lost counter for SYN events; without that split the whole lost count is
  taken (an upper bound).
- **`reach agent`** runs without a useful rate limit here on purpose: every SYN of the flood
  is an event, so its flow table is driven to its bound and evicts; the ring buffer then
  overflows too (the lost events), which is the agent's other bound. *Bounded* is read from the
  growth between two equal floods and over the churn, not from one reading: VmRSS does not
  shrink once the allocator has the memory, so growth is what a leak would show. The agent taps
  every namespace of the machine, so namespaces that others create meanwhile (counted beside
  each reading) grow it too. A namespace it held alive would keep its veth: `leaked
  namespaces` counts veth peers still in the anchor after the churn.
";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// reach-bench's `e2e` section as a quick run prints it (1 round, 3 start-ups).
    fn e2e() -> Value {
        let cfg = |key: &str, config: &str, gbps: f64| {
            json!({"key": key, "config": config, "gbps": gbps, "gbps_min": gbps,
                "gbps_max": gbps, "gbps_rounds": [gbps], "ratio": gbps / 20.0,
                "ratio_rounds": [gbps / 20.0], "ratio_of_medians": gbps / 20.0})
        };
        let mode = |mode: &str, ready: &str, t: f64, rss: u64| {
            json!({"mode": mode, "ready_line": ready, "startup_s": t, "startup_s_min": t - 0.01,
                "startup_s_max": t + 0.01, "startup_s_runs": [t - 0.01, t, t + 0.01],
                "rss_kib": rss, "hwm_kib": rss + 100, "cpu_s": 0.5})
        };
        json!({
            "reach_bin": "/x/target/release/reach",
            "iperf3": {"seconds": 1, "rounds": 1, "order": [["none", "reach", "tcpdump", "bpftrace"]],
                "reach_lines": 15, "configs": [
                    cfg("none", "nothing attached", 20.0),
                    cfg("reach", "reach watch --json --netns <server>", 19.8),
                    cfg("tcpdump", "tcpdump -i srv0", 17.0),
                    cfg("bpftrace", "bpftrace -e '…'", 19.0),
                ]},
            "syn_flood": {"seconds": 1.03, "closed_port": 7, "hping3_sent": 77909,
                "rx_packets": 77910, "tcp_in_segs": 77910, "syn_rate": 75786.0,
                "syn_events": 1968, "suppressed_syn": 75942, "suppressed_other": 151885,
                "lost_syn": 0, "lost_count": 0, "lost_split": true, "counted": 77910,
                "unaccounted": 0, "counter_lines_after_stop": 1, "reach_lines": 8458,
                "reach_bad_lines": 0, "reach_cpu_s": 0.72, "reach_cpu_s_flood": 0.2, "reach_cpu_s_under_load": 0.7,
                "reach_peak_rss_kib": 25000, "reach_rss_kib": 24000},
            "startup": {"runs": 3, "steady_seconds": 1.0, "modes": [
                mode("reach watch", "watching drops", 0.25, 20000),
                mode("reach watch --no-packets", "watching binds and listens", 0.4, 40000),
            ]},
            "agent": agent(),
        })
    }

    /// reach-bench's `e2e.agent` as a quick run prints it (1 s floods, 10 namespaces churned).
    fn agent() -> Value {
        let flood = |rx: u64, rss: u64| {
            json!({"seconds": 1.04, "hping3_sent": rx - 1, "rx_packets": rx, "syn_rate": 63000.0,
                "reach_syn": rx - 48000, "suppressed_syn": 0.0, "lost_syn": 48000, "counted": rx,
                "unaccounted": 0.0, "counters_settled": true, "cpu_s": 1.6, "cpu_s_to_counted": 1.2, "rss_kib_counted": rss,
                "digest_s": 4.1, "quiet": true, "attempts_total": 16000.0, "rss_kib": rss,
                "hwm_kib": rss + 2000, "machine_namespaces": 4})
        };
        json!({"rescan_s": 0.2, "syn_rate_limit": 10_000_000, "closed_port": 7,
            "ready": {"namespaces": 3, "interfaces": 6},
            "steady": {"seconds": 1.0, "rss_kib": 40960, "hwm_kib": 63000, "cpu_s": 0.7,
                "machine_namespaces": 4},
            "floods": [flood(65689, 66000), flood(58081, 67024)],
            "flood_growth_kib": 1024.0,
            "churn": {"namespaces": 10, "seconds": 5.2, "seen": 10, "seen_gone": 10,
                "leaked_namespaces": 0, "watched_before": 4.0, "watched_after": 4.0,
                "machine_namespaces_before": 4, "machine_namespaces_after": 4,
                "netns_fds_before": 0, "netns_fds_after": 0,
                "before": {"rss_kib": 67000, "hwm_kib": 69000, "cpu_s": 4.2},
                "after": {"rss_kib": 67512, "hwm_kib": 69000, "cpu_s": 4.5},
                "growth_kib": 512.0}})
    }

    fn meta() -> Meta {
        Meta {
            command: "cargo xtask bench".into(),
            date: "2026-01-01 00:00 UTC".into(),
            kernel: "6.18".into(),
            cpu: cpu_from("processor\t: 0\nmodel name\t: AMD EPYC\nprocessor\t: 1\n"),
        }
    }

    #[test]
    fn renders_every_table_from_reach_bench_output() {
        let mut doc = plausible();
        doc["classifier"][7] = json!({"case": "UDP v4", "bytes": 74, "ns": 91.0,
            "floor_ns": 33.0, "ratio": 2.757, "ns_rounds": [90.0, 95.0], "events_delivered": 0,
            "events_lost": 0, "events_suppressed": 0, "goal_ratio": 1.25});
        doc["kfree_skb"][2] = json!({"case": "tp_btf kfree_skb, early exit", "path": "early exit",
            "syns": 20000, "run_cnt": 20003, "ns_per_run": 361.4, "floor_run_cnt": 20003,
            "floor_ns_per_run": 90.0, "ratio": 361.4 / 90.0, "goal_ratio": 2.0,
            "events_delivered": 0, "events_lost": 0});
        let md = render(&doc, &meta()).unwrap();
        assert!(md.contains("- CPU: AMD EPYC (2 CPUs)"), "{md}");
        assert!(
            md.contains("| UDP v4 | 74 | 91 | 33 | 2.8 | ≤ 1.25× ✗ missed | 90–95 | none | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| SYN v4, watched port, rate-limited | 74 | 90 | 30 | 3.0 | – |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| tp_btf kfree_skb, early exit | 20000 | 20003 | 361 | 90 | 4.0 | ≤ 2× ✗ missed | none |"
            ),
            "{md}"
        );
        assert!(md.contains("| one bpf_ktime_get_boot_ns | 60 | 30 | 30 | 2.0 |"), "{md}");
        assert!(md.contains("## How to read it"));
        for line in [
            "| `nothing attached` | 20.00 | 20.00–20.00 | 1.000 | 1.000–1.000 | 1.000 | – |",
            "| `reach watch --json --netns <server>` | 19.80 | 19.80–19.80 | 0.990 | 0.990–0.990 | 0.990 | ≥ 0.97 ✓ |",
            "| `tcpdump -i srv0` | 17.00 | 17.00–17.00 | 0.850 | 0.850–0.850 | 0.850 | – |",
            "| SYNs the server veth received (rx_packets) | 77910 | – |",
            "| reach suppressed.syn (rate limit) | 75942 | – |",
            "| **unaccounted** (received − events − suppressed − lost) | 0 | 0 ✓ |",
            "| reach peak RSS (VmHWM) | 24.4 MiB | ≤ 30 MiB ✓ |",
            "| `reach watch` | \"watching drops\" | 0.250 s | 0.240–0.260 s | ≤ 0.3 s ✓ | 19.5 MiB | 19.6 MiB | ≤ 30 MiB ✓ |",
            "| `reach watch --no-packets` | \"watching binds and listens\" | 0.400 s | 0.390–0.410 s | ≤ 0.3 s ✗ missed | 39.1 MiB | 39.2 MiB | ≤ 30 MiB ✗ missed |",
            "| VmRSS after 1 s ready and idle | 40.0 MiB | ≤ 50 MiB ✓ |",
            "| SYNs the server veth received (rx_packets) | 65689 | 58081 | – |",
            "| **unaccounted** (received − events − suppressed − lost) | 0 | 0 | 0 ✓ / 0 ✓ |",
            "| **VmRSS growth, flood 1 → flood 2** | | +1.0 MiB | ≤ 4 MiB ✓ |",
            "| namespaces created and deleted | 10 in 5.2 s | – |",
            "| **not seen** to come or go | 0 | 0 ✓ |",
            "| reach_watched_namespaces before → after | 4 → 4 | – |",
            "| **watched − the machine's** after the churn | +0 | 0 ✓ |",
            "| VmRSS after | 64.5 MiB | 65.5 MiB | flood 2: ≤ 64 MiB ✗ missed |",
            "| **leaked namespaces** (veth peers left in the anchor) | 0 | 0 ✓ |",
            "| **VmRSS growth over the churn** | +0.5 MiB | ≤ 4 MiB ✓ |",
        ] {
            assert!(md.contains(line), "{line}\n{md}");
        }
    }

    #[test]
    fn goal_verdicts_go_into_results_json() {
        let mut doc = plausible();
        doc["e2e"]["syn_flood"]["unaccounted"] = json!(-3);
        let out = results(&doc, &meta()).unwrap();
        assert_eq!(out["meta"]["kernel"], "6.18");
        assert_eq!(out["e2e"]["syn_flood"]["rx_packets"], 77910, "the whole document is kept");
        let goals = out["goals"].as_array().unwrap();
        let met = |figure: &str| {
            goals.iter().find(|g| g["figure"] == figure).unwrap_or_else(|| panic!("{figure}"))
                ["met"]
                .as_bool()
                .unwrap()
        };
        assert!(met("iperf3 with reach watch / nothing attached"));
        assert!(!met("SYNs unaccounted under the flood"));
        assert!(met("reach watch start-up (s, median)"));
        assert!(!met("reach watch --no-packets steady VmRSS (KiB)"));
        assert!(met("classifier SYN v4, watched port, ring read / floor"));
        assert!(!met("classifier UDP v4 / floor"));
        assert!(!met("kfree_skb tp_btf kfree_skb, early exit (port not watched) / floor"));
        assert!(met(AGENT_IDLE_RSS) && met(AGENT_FLOOD_GROWTH) && met(AGENT_LEAKED));
        assert!(!met(AGENT_FULL_RSS));
        // 7 classifier rows and 3 early exits carry goals, 7 end-to-end figures of `reach
        // watch` and 9 of `reach agent`.
        assert_eq!(goals.len(), 7 + 3 + 7 + 9);
    }

    /// A document as reach-bench prints it with `--repeat 1000 --rounds 2 --syns 100`.
    fn plausible() -> Value {
        let cls = |case: &str, events: bool, goal: Option<f64>| {
            json!({"case": case, "bytes": 74, "ns": 90.0, "floor_ns": 30.0, "ratio": 3.0,
                "ns_rounds": [90.0, 91.0], "floor_ns_rounds": [30.0, 30.0], "packets": 2000,
                "events_delivered": if events { 1990 } else { 0 },
                "events_lost": if events { 10 } else { 0 }, "events_suppressed": 0,
                "goal_ratio": goal})
        };
        let mut limited = cls("SYN v4, watched port, rate-limited", false, None);
        limited["events_delivered"] = json!(2);
        limited["events_suppressed"] = json!(1998);
        let drop = |case: &str, path: &str, events: u64| {
            let early = path.starts_with("early exit");
            json!({"case": format!("{case}, {path}"), "path": path, "syns": 100, "run_cnt": 104,
                "ns_per_run": 400.0, "floor_run_cnt": 104, "floor_ns_per_run": 100.0,
                "ratio": 4.0, "goal_ratio": if early { Some(2.0) } else { None },
                "events_delivered": events, "events_lost": 0})
        };
        json!({
            "repeat": 1000, "rounds": 2, "syns": 100,
            "classifier": [
                cls("SYN v4, watched port, ring read", true, Some(3.0)),
                cls("SYN v4, watched port, ring full", true, Some(3.0)),
                limited,
                cls("SYN v4, port not watched", false, Some(1.5)),
                cls("SYN v6, watched port, ring read", true, Some(3.0)),
                cls("SYN v6, port not watched", false, Some(1.5)),
                cls("ACK v4", false, Some(1.25)),
                cls("UDP v4", false, Some(1.25)),
            ],
            "blocks": [
                {"block": "one bpf_ktime_get_boot_ns", "program": "reach_cost_clock", "ns": 60.0,
                    "floor_ns": 30.0, "ratio": 2.0, "ns_rounds": [60.0, 61.0], "floor_ns_rounds": [30.0, 30.0]},
                {"block": "one ring-buffer event", "program": "reach_cost_ring", "ns": 90.0,
                    "floor_ns": 30.0, "ratio": 3.0, "ns_rounds": [90.0, 91.0], "floor_ns_rounds": [30.0, 30.0]},
            ],
            "kfree_skb": [
                drop("tp_btf kfree_skb", "event path, reader waiting", 104),
                drop("tp_btf kfree_skb", "event path, reader behind", 100),
                drop("tp_btf kfree_skb", "early exit (namespace not watched)", 0),
                drop("tp_btf kfree_skb", "early exit (port not watched)", 0),
                drop("tracepoint skb:kfree_skb", "event path, reader waiting", 101),
                drop("tracepoint skb:kfree_skb", "early exit (namespace not watched)", 0),
            ],
            "e2e": e2e(),
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
    fn a_missing_building_block_fails_the_check() {
        let mut doc = plausible();
        doc["blocks"].as_array_mut().unwrap().pop();
        assert!(check_err(&doc).contains("1 building blocks measured"), "{}", check_err(&doc));
        let mut doc = plausible();
        doc["blocks"][0]["ns"] = json!(0.0);
        assert!(check_err(&doc).contains("ns 0, floor_ns 30"), "{}", check_err(&doc));
    }

    #[test]
    fn a_missing_case_or_figure_fails_the_check_naming_it() {
        let mut doc = plausible();
        doc["classifier"].as_array_mut().unwrap().pop();
        assert!(check_err(&doc).contains("7 classifier cases measured"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][5].as_object_mut().unwrap().remove("floor_ns_per_run");
        let err = check_err(&doc);
        assert!(err.contains("lacks floor_ns_per_run") && err.contains("early exit"), "{err}");

        let mut doc = plausible();
        doc["kfree_skb"][4].as_object_mut().unwrap().remove("ns_per_run");
        let err = check_err(&doc);
        assert!(err.contains("lacks ns_per_run") && err.contains("event path"), "{err}");

        let mut doc = plausible();
        doc["classifier"][7]["floor_ns_rounds"] = json!([30.0]);
        assert!(check_err(&doc).contains("1 floor_ns_rounds of 2 rounds"), "{}", check_err(&doc));
    }

    #[test]
    fn a_missing_end_to_end_figure_fails_the_check_naming_it() {
        let mut doc = plausible();
        doc.as_object_mut().unwrap().remove("e2e");
        assert!(check_err(&doc).contains("lacks e2e"), "{}", check_err(&doc));

        for (path, key) in [
            ("iperf3", "rounds"),
            ("syn_flood", "rx_packets"),
            ("syn_flood", "lost_syn"),
            ("syn_flood", "suppressed_syn"),
            ("syn_flood", "unaccounted"),
            ("syn_flood", "reach_cpu_s"),
            ("syn_flood", "reach_cpu_s_flood"),
            ("syn_flood", "reach_peak_rss_kib"),
            ("syn_flood", "lost_split"),
            ("startup", "runs"),
        ] {
            let mut doc = plausible();
            doc["e2e"][path].as_object_mut().unwrap().remove(key);
            let err = check_err(&doc);
            assert!(err.contains(&format!("lacks {key}")) && err.contains(path), "{key}: {err}");
        }

        let mut doc = plausible();
        doc["e2e"]["iperf3"]["configs"].as_array_mut().unwrap().remove(3);
        assert!(check_err(&doc).contains("iperf3 configurations"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["e2e"]["iperf3"]["configs"][2].as_object_mut().unwrap().remove("gbps");
        let err = check_err(&doc);
        assert!(err.contains("iperf3 tcpdump") && err.contains("lacks gbps"), "{err}");

        let mut doc = plausible();
        doc["e2e"]["startup"]["modes"][1].as_object_mut().unwrap().remove("hwm_kib");
        let err = check_err(&doc);
        assert!(err.contains("--no-packets") && err.contains("lacks hwm_kib"), "{err}");

        let mut doc = plausible();
        doc["e2e"]["startup"]["modes"].as_array_mut().unwrap().pop();
        assert!(check_err(&doc).contains("start-up modes"), "{}", check_err(&doc));
    }

    #[test]
    fn a_missing_agent_figure_fails_the_check_naming_it() {
        let mut doc = plausible();
        doc["e2e"].as_object_mut().unwrap().remove("agent");
        assert!(check_err(&doc).contains("lacks agent"), "{}", check_err(&doc));
        for (path, key) in [
            (&["ready"][..], "namespaces"),
            (&["steady"][..], "rss_kib"),
            (&["steady"][..], "cpu_s"),
            (&[][..], "flood_growth_kib"),
            (&["churn"][..], "leaked_namespaces"),
            (&["churn"][..], "seen_gone"),
            (&["churn"][..], "watched_after"),
            (&["churn"][..], "machine_namespaces_after"),
            (&["churn"][..], "netns_fds_after"),
            (&["churn", "after"][..], "rss_kib"),
        ] {
            let mut doc = plausible();
            let mut v = &mut doc["e2e"]["agent"];
            for p in path {
                v = &mut v[*p];
            }
            v.as_object_mut().unwrap().remove(key);
            let err = check_err(&doc);
            assert!(err.contains(&format!("lacks {key}")) && err.contains("agent"), "{key}: {err}");
        }
        for key in [
            "rx_packets",
            "lost_syn",
            "unaccounted",
            "attempts_total",
            "rss_kib",
            "quiet",
            "counters_settled",
        ] {
            let mut doc = plausible();
            doc["e2e"]["agent"]["floods"][1].as_object_mut().unwrap().remove(key);
            let err = check_err(&doc);
            assert!(
                err.contains(&format!("lacks {key}")) && err.contains("flood 2"),
                "{key}: {err}"
            );
        }
        let mut doc = plausible();
        doc["e2e"]["agent"]["floods"].as_array_mut().unwrap().pop();
        assert!(check_err(&doc).contains("1 floods measured"), "{}", check_err(&doc));
    }

    #[test]
    fn implausible_agent_figures_fail_the_check() {
        let bad = |edit: &dyn Fn(&mut Value), expect: &str| {
            let mut doc = plausible();
            edit(&mut doc["e2e"]["agent"]);
            let err = check_err(&doc);
            assert!(err.contains(expect), "expected {expect:?} in: {err}");
        };
        bad(&|a| a["ready"]["namespaces"] = json!(1), "1 namespaces watched");
        bad(&|a| a["steady"]["hwm_kib"] = json!(100), "VmHWM 100 KiB");
        bad(&|a| a["floods"][0]["rx_packets"] = json!(0), "flood 1: 0 SYNs received");
        bad(&|a| a["floods"][1]["reach_syn"] = json!(0), "flood 2: the agent counted no SYN");
        bad(&|a| a["floods"][0]["counted"] = json!(5), "flood 1: counted 5 is not");
        bad(&|a| a["floods"][1]["unaccounted"] = json!(3), "flood 2: unaccounted is not");
        bad(&|a| a["floods"][0]["cpu_s"] = json!(0.0), "flood 1: the agent used no CPU");
        bad(&|a| a["flood_growth_kib"] = json!(0.0), "flood_growth_kib 0 is not");
        bad(&|a| a["churn"]["seen"] = json!(11), "churn: seen 11 of 10 namespaces");
        bad(&|a| a["churn"]["leaked_namespaces"] = json!(-1), "leaked_namespaces -1 of 10");
        bad(&|a| a["churn"]["growth_kib"] = json!(7.0), "churn: growth_kib is not");
        // Goals are verdicts, not checks: a leak, growth and lost SYNs still pass, missed.
        let mut doc = plausible();
        let a = &mut doc["e2e"]["agent"];
        a["churn"]["leaked_namespaces"] = json!(3);
        a["churn"]["watched_after"] = json!(7.0);
        a["floods"][1]["rss_kib"] = json!(90000);
        a["floods"][1]["hwm_kib"] = json!(90000);
        a["flood_growth_kib"] = json!(90000.0 - 66000.0);
        a["floods"][0]["unaccounted"] = json!(-2);
        a["floods"][0]["counted"] = json!(65691);
        a["floods"][0]["reach_syn"] = json!(65691 - 48000);
        check(&doc).unwrap();
        let missed: Vec<String> =
            goals(&doc).unwrap().into_iter().filter(|g| !g.met).map(|g| g.figure).collect();
        for figure in [AGENT_LEAKED, AGENT_WATCHED_LEFT, AGENT_FLOOD_GROWTH] {
            assert!(missed.iter().any(|m| m == figure), "{figure} not missed: {missed:?}");
        }
        assert!(missed.contains(&agent_unaccounted(1)), "{missed:?}");
    }

    #[test]
    fn implausible_end_to_end_figures_fail_the_check() {
        let bad = |edit: &dyn Fn(&mut Value), expect: &str| {
            let mut doc = plausible();
            edit(&mut doc);
            let err = check_err(&doc);
            assert!(err.contains(expect), "expected {expect:?} in: {err}");
        };
        bad(&|d| d["e2e"]["iperf3"]["configs"][1]["gbps"] = json!(0.0), "iperf3 reach: 0 Gbit/s");
        bad(&|d| d["e2e"]["iperf3"]["configs"][1]["gbps_rounds"] = json!([]), "0 gbps_rounds of 1");
        bad(
            &|d| d["e2e"]["iperf3"]["configs"][3]["ratio"] = json!(2.0),
            "iperf3 bpftrace: ratio 2",
        );
        bad(
            &|d| d["e2e"]["iperf3"]["configs"][3]["ratio_of_medians"] = json!(2.0),
            "iperf3 bpftrace: ratio_of_medians 2",
        );
        bad(
            &|d| d["e2e"]["iperf3"]["configs"][2]["ratio_rounds"] = json!([]),
            "0 ratio_rounds of 1",
        );
        bad(&|d| d["e2e"]["syn_flood"]["rx_packets"] = json!(0), "0 SYNs received");
        bad(&|d| d["e2e"]["syn_flood"]["syn_events"] = json!(0), "reach reported no SYN event");
        bad(&|d| d["e2e"]["syn_flood"]["counted"] = json!(5), "counted 5 is not events");
        bad(&|d| d["e2e"]["syn_flood"]["unaccounted"] = json!(7), "unaccounted is not rx_packets");
        bad(&|d| d["e2e"]["syn_flood"]["reach_peak_rss_kib"] = json!(0), "reach_peak_rss_kib 0");
        bad(&|d| d["e2e"]["syn_flood"]["reach_cpu_s_flood"] = json!(0.9), "reach_cpu_s_flood 0.9");
        bad(&|d| d["e2e"]["startup"]["modes"][0]["startup_s"] = json!(0.0), "start-up 0 s");
        bad(&|d| d["e2e"]["startup"]["modes"][0]["rss_kib"] = json!(0), "VmRSS 0 KiB");
        bad(&|d| d["e2e"]["startup"]["runs"] = json!(5), "3 startup_s_runs of 5 runs");
        // Goals are verdicts, not checks: a missed one still passes.
        let mut doc = plausible();
        doc["e2e"]["syn_flood"]["unaccounted"] = json!(-2);
        doc["e2e"]["syn_flood"]["counted"] = json!(77912);
        doc["e2e"]["syn_flood"]["syn_events"] = json!(1970);
        check(&doc).unwrap();
    }

    #[test]
    fn implausible_figures_fail_the_check() {
        let mut doc = plausible();
        doc["classifier"][2]["ratio"] = json!(f64::NAN);
        // serde_json turns NaN into null: the figure is missing, not a number.
        assert!(check_err(&doc).contains("lacks ratio"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["classifier"][6]["ns"] = json!(12.0);
        doc["classifier"][6]["ratio"] = json!(12.0 / 30.0);
        assert!(check_err(&doc).contains("\"ACK v4\": ratio 0.4"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["classifier"][0]["events_lost"] = json!(0);
        let err = check_err(&doc);
        assert!(err.contains("1990 SYNs delivered or lost of 2000 sent"), "{err}");

        let mut doc = plausible();
        doc["classifier"][5]["events_delivered"] = json!(3);
        assert!(
            check_err(&doc).contains("3 events, 0 suppressed from filtered packets"),
            "{}",
            check_err(&doc)
        );

        let mut doc = plausible();
        doc["classifier"][2]["events_suppressed"] = json!(1000);
        let err = check_err(&doc);
        assert!(err.contains("2 events + 1000 suppressed of 2000"), "{err}");

        let mut doc = plausible();
        doc["kfree_skb"][1]["run_cnt"] = json!(99);
        assert!(
            check_err(&doc).contains("99 handler runs, 104 empty-handler runs for 100"),
            "{}",
            check_err(&doc)
        );

        let mut doc = plausible();
        doc["kfree_skb"][0]["ratio"] = json!(2.0);
        assert!(
            check_err(&doc).contains("ratio 2 is not ns_per_run/floor_ns_per_run"),
            "{}",
            check_err(&doc)
        );

        let mut doc = plausible();
        doc["kfree_skb"][2]["events_delivered"] = json!(1);
        assert!(check_err(&doc).contains("1 events despite the filter"), "{}", check_err(&doc));

        let mut doc = plausible();
        doc["kfree_skb"][3]["syns"] = json!(60);
        assert!(check_err(&doc).contains("60 of 100 SYNs sent"), "{}", check_err(&doc));
    }
}
