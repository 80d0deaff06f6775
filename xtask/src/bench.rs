//! `cargo xtask bench`: builds and runs `reach-bench` (crate reach-tests) in release, prints its
//! results as tables and rewrites BENCHMARKS.md at the workspace root.
//!
//! reach-bench does the measuring (BPF_PROG_TEST_RUN of the classifier next to the empty floor,
//! BPF run-time statistics of the kfree_skb handler under a loopback SYN load in a lab
//! namespace) and prints one JSON document; this module only renders it, so xtask keeps no
//! dependency on the agent.
use std::{
    fmt::Write as _,
    fs,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{run, setup, workspace};

/// Sets up, builds and runs the benchmark (`args` go to reach-bench), prints the tables and
/// writes BENCHMARKS.md.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    setup::all()?;
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build.current_dir(workspace::root()).args([
        "build",
        "--release",
        "-p",
        "reach-tests",
        "--bin",
        "reach-bench",
    ]);
    run::run(&mut build).context("building reach-bench failed")?;
    let bin = workspace::target_dir().join("release").join("reach-bench");
    let mut cmd = Command::new(&bin);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ {}", run::show(&cmd));
    let out = cmd.output().with_context(|| format!("cannot start {}", bin.display()))?;
    if !out.status.success() {
        bail!("reach-bench failed: {}", out.status);
    }
    let doc: Value = serde_json::from_slice(&out.stdout).context("reach-bench printed no JSON")?;
    let command = std::iter::once("cargo xtask bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let meta = Meta { command, date: date(), kernel: kernel(), cpu: cpu() };
    let report = render(&doc, &meta)?;
    println!("{report}");
    let path = workspace::root().join("BENCHMARKS.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
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
}
