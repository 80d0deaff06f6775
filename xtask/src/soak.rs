//! `cargo xtask soak [--minutes N]`: builds and runs `reach-soak` (crate reach-tests) in
//! release: `reach agent` for N minutes (30) under mixed load in lab namespaces (SYN flood
//! bursts, an iperf3 stream, bind/listen churn, namespace and interface churn), its VmRSS and
//! open fds sampled throughout. Prints the figures as tables, replaces the soak section of
//! BENCHMARKS.md (between [`BEGIN`] and [`END`]; `cargo xtask bench` keeps it when it rewrites
//! the rest) and fails if a verdict did: memory or fds grown more than 5 % past the warm-up, a
//! SYN received that the agent did not count, a churned namespace leaked or unseen, an iperf3
//! period failed, an unclean agent exit. Not part of `cargo xtask test`: it takes the minutes
//! it is given. Needs root.
use std::{
    fmt::Write as _,
    fs,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::{bench, run, setup, workspace};

pub const BEGIN: &str = "<!-- soak: written by `cargo xtask soak` -->";
pub const END: &str = "<!-- /soak -->";

pub fn soak(minutes: f64) -> anyhow::Result<()> {
    ensure!(minutes.is_finite() && minutes >= 2.0, "--minutes must be at least 2");
    setup::all()?;
    let mut build = workspace::cargo();
    build.args(["build", "--release", "-p", "reach-tests", "--bin", "reach-soak"]);
    build.args(["-p", "reach-agent", "--bin", "reach"]);
    run::run(&mut build).context("building reach-soak and reach failed")?;
    let bin = workspace::target_dir().join("release").join("reach-soak");
    let reach = workspace::reach_bin(true);
    let mut cmd = Command::new(&bin);
    cmd.args(["--reach", &reach.display().to_string(), "--minutes", &minutes.to_string()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ {}", run::show(&cmd));
    let out = cmd.output().with_context(|| format!("cannot start {}", bin.display()))?;
    if !out.status.success() {
        bail!("reach-soak failed: {}", out.status);
    }
    let doc: Value = serde_json::from_slice(&out.stdout).context("reach-soak printed no JSON")?;
    let meta = bench::meta(format!("cargo xtask soak --minutes {minutes}"));
    let section = render(&doc, &meta)?;
    println!("{section}");
    let dir = workspace::target_dir().join("soak");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join("results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("xtask: wrote {}", json_path.display());
    let path = workspace::root().join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    fs::write(&path, splice(&old, &section))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote the soak section of {}", path.display());
    let failed: Vec<String> = checks(&doc)?
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| format!("{} = {} (limit {})", s(c, "figure"), s(c, "value"), s(c, "limit")))
        .collect();
    ensure!(failed.is_empty(), "the soak failed: {}", failed.join("; "));
    eprintln!("xtask: the soak passed");
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}

fn num(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.get(key).and_then(Value::as_f64).with_context(|| format!("reach-soak output lacks {key}"))
}

fn checks(doc: &Value) -> anyhow::Result<&Vec<Value>> {
    doc["checks"].as_array().context("reach-soak output lacks checks")
}

/// `doc` with its soak section (from [`BEGIN`] to [`END`]) replaced by `section`, or `section`
/// appended when it has none.
pub fn splice(doc: &str, section: &str) -> String {
    let section = section.trim_end();
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &doc[..b], &doc[e + END.len()..])
        }
        _ => {
            let body = doc.trim_end();
            if body.is_empty() { format!("{section}\n") } else { format!("{body}\n\n{section}\n") }
        }
    }
}

/// The soak section of `doc` (markers included), for `cargo xtask bench` to keep.
pub fn section_of(doc: &str) -> Option<&str> {
    let b = doc.find(BEGIN)?;
    let e = doc[b..].find(END)? + b;
    Some(&doc[b..e + END.len()])
}

/// The soak section of BENCHMARKS.md from reach-soak's document (markers included).
pub fn render(doc: &Value, meta: &bench::Meta) -> anyhow::Result<String> {
    let mut o = String::new();
    writeln!(o, "{BEGIN}")?;
    writeln!(o, "## Soak: `reach agent` under mixed load for {} minutes\n", num(doc, "minutes")?)?;
    writeln!(
        o,
        "Written by `{}` (replaced on each run; `cargo xtask bench` leaves it). {}, kernel {}, \
         {}.\n",
        meta.command, meta.date, meta.kernel, meta.cpu
    )?;
    let args: Vec<&str> =
        doc["agent_args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    writeln!(
        o,
        "`reach agent {}` (default `--syn-rate` and `--rescan`), {:.0} s in {} cycles of {:.0} s, \
         warm-up {:.0} s, VmRSS and /proc/PID/fd sampled every {} s ({} samples). Every cycle: \
         an iperf3 stream between two lab namespaces for all but 6 s of it, and 2 s in, a \
         `hping3 -S --flood --rand-source` burst of {} s to a closed port of another lab pair's \
         server. All along: bind/listen churn (TCP listeners and UDP sockets on random ports) \
         in a kept lab namespace, and namespace churn into it (a namespace with a veth: created, \
         seen, deleted, seen gone; then a veth pair added to the kept namespace and deleted).\n",
        args.join(" "),
        num(doc, "seconds")?,
        num(doc, "cycles")?,
        num(doc, "cycle_s")?,
        num(doc, "warmup_s")?,
        num(doc, "sample_s")?,
        num(doc, "samples")?,
        num(doc, "flood_s")?,
    )?;
    writeln!(o, "| verdict | value | limit | |\n|---|---|---|---|")?;
    for c in checks(doc)? {
        let mark = if c["ok"] == true { "✓" } else { "✗" };
        writeln!(o, "| {} | {} | {} | {mark} |", s(c, "figure"), s(c, "value"), s(c, "limit"))?;
    }
    let (rss, fds, settled) = (&doc["rss_kib"], &doc["fds"], &doc["fds_settled"]);
    writeln!(
        o,
        "\n| figure | first sample | warm-up (median / max) | last cycle (median / max) | ratio |"
    )?;
    writeln!(o, "|---|---:|---:|---:|---:|")?;
    let rows = [
        ("VmRSS", rss, 1024.0, " MiB"),
        ("open fds, every sample", fds, 1.0, ""),
        ("open fds, settled points", settled, 1.0, ""),
    ];
    for (what, v, scale, unit) in rows {
        let f = |k: &str| num(v, k).map(|x| x / scale);
        let p = if scale > 1.0 { 1 } else { 0 };
        writeln!(
            o,
            "| {what} | {:.p$}{unit} | {:.p$} / {:.p$}{unit} | {:.p$} / {:.p$}{unit} | {:.3} |",
            f("first")?,
            f("warmup")?,
            f("warmup_max")?,
            f("last")?,
            f("last_max")?,
            num(v, "ratio")?,
        )?;
    }
    let churn = &doc["churn"];
    let binds = &doc["binds"];
    let iperf = &doc["iperf3"];
    writeln!(o, "\n| load | figure |\n|---|---|")?;
    writeln!(
        o,
        "| namespaces churned (seen / seen gone / leaked) | {:.0} ({:.0} / {:.0} / {:.0}) |",
        num(churn, "namespaces")?,
        num(churn, "seen")?,
        num(churn, "seen_gone")?,
        num(churn, "leaked")?
    )?;
    writeln!(
        o,
        "| interfaces added to the kept namespace (seen / seen gone) | {:.0} ({:.0} / {:.0}) |",
        num(churn, "ifaces_added")?,
        num(churn, "ifaces_seen")?,
        num(churn, "ifaces_seen_gone")?
    )?;
    writeln!(
        o,
        "| bind/listen churn: TCP listens, UDP binds (port taken) | {:.0}, {:.0} ({:.0}) |",
        num(binds, "listens")?,
        num(binds, "udp_binds")?,
        num(binds, "refused")?
    )?;
    writeln!(
        o,
        "| iperf3 periods: Gbit/s median (min–max) | {:.0}: {:.2} ({:.2}–{:.2}) |",
        num(iperf, "periods")?,
        num(iperf, "gbps_median").unwrap_or(f64::NAN),
        num(iperf, "gbps_min").unwrap_or(f64::NAN),
        num(iperf, "gbps_max").unwrap_or(f64::NAN)
    )?;
    writeln!(o, "| agent CPU time in all | {:.1} s |", num(doc, "agent_cpu_s")?)?;
    writeln!(
        o,
        "| namespaces watched at the end / the machine's | {:.0} / {:.0} |",
        num(doc, "watched_end")?,
        num(doc, "machine_namespaces_end")?
    )?;
    writeln!(
        o,
        "\n| burst | s | SYNs received (veth rx) | TCP InSegs | events | suppressed | lost | unaccounted | SYN events elsewhere |"
    )?;
    writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (i, b) in
        doc["bursts"].as_array().context("reach-soak output lacks bursts")?.iter().enumerate()
    {
        writeln!(
            o,
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            i + 1,
            num(b, "seconds")?,
            num(b, "rx_packets")?,
            num(b, "tcp_in_segs")?,
            num(b, "reach_syn")?,
            num(b, "suppressed_syn")?,
            num(b, "lost_syn")?,
            num(b, "unaccounted")?,
            num(b, "syn_elsewhere")?,
        )?;
    }
    writeln!(
        o,
        "\n*Unaccounted* is received − (events + suppressed + lost): above 0, SYNs the agent \
         missed (a failed verdict). The suppressed and lost counters are the machine's, so SYNs \
         of other namespaces rate-limited or lost during a burst make it negative (the soak's own \
         load sends no other SYN then: iperf3 connects 2 s before each burst). The warm-up and \
         last-cycle figures are medians over one cycle each (one burst and the same share of the \
         churn in each); VmRSS does not shrink once the allocator has the memory, so growth is \
         what a leak would show. Every namespace the agent watches holds descriptors of its own \
         (its ring, link monitor, classifiers), so the count of any one sample swings by a \
         dozen with the churn's phase; the fd verdict reads the count at the churn's settled \
         points (the churned namespace and veth gone and seen gone), where a leak is all that \
         can raise it."
    )?;
    writeln!(o, "{END}")?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_section_is_replaced_or_appended() {
        let section = format!("{BEGIN}\n## Soak\nnew\n{END}\n");
        let fresh = splice("# reach benchmarks\n\n## A\n", &section);
        assert_eq!(fresh, format!("# reach benchmarks\n\n## A\n\n{}", section));
        let old = format!("# b\n\n{BEGIN}\nold\n{END}\n\n## after\n");
        let replaced = splice(&old, &section);
        assert_eq!(replaced, format!("# b\n\n{BEGIN}\n## Soak\nnew\n{END}\n\n## after\n"));
        assert_eq!(section_of(&replaced), Some(section.trim_end()));
        assert_eq!(section_of("# b\n"), None);
        // What bench writes, with the soak section carried over.
        assert_eq!(splice("# b2\n", section_of(&replaced).unwrap()), format!("# b2\n\n{section}"));
    }

    #[test]
    fn a_soak_document_renders() {
        let flat = |a: f64, b: f64| {
            json!({"first": a, "warmup": a, "warmup_max": a, "last": b, "last_max": b,
                "ratio": b / a})
        };
        let doc = json!({
            "minutes": 3.0, "seconds": 180.2, "cycles": 6, "cycle_s": 30.0, "warmup_s": 30.0,
            "flood_s": 3.0, "sample_s": 2.0, "samples": 90,
            "agent_args": ["--no-trace-netns", "host"],
            "rss_kib": flat(40960.0, 41000.0), "fds": flat(40.0, 40.0), "fds_settled": flat(40.0, 40.0),
            "churn": {"namespaces": 50, "seen": 50, "seen_gone": 50, "leaked": 0,
                "ifaces_added": 50, "ifaces_seen": 50, "ifaces_seen_gone": 50},
            "binds": {"listens": 1000, "udp_binds": 1000, "refused": 2},
            "iperf3": {"periods": 6, "gbps_median": 20.0, "gbps_min": 19.0, "gbps_max": 21.0},
            "agent_cpu_s": 12.0, "watched_end": 5, "machine_namespaces_end": 5,
            "bursts": [{"seconds": 3.0, "rx_packets": 100, "tcp_in_segs": 100, "reach_syn": 20,
                "suppressed_syn": 80, "lost_syn": 0, "unaccounted": 0, "syn_elsewhere": 0}],
            "checks": [{"figure": "VmRSS", "value": "1", "limit": "2", "ok": true},
                {"figure": "burst 1", "value": "3", "limit": "≤ 0", "ok": false}],
        });
        let meta = bench::Meta {
            command: "cargo xtask soak --minutes 3".into(),
            date: "today".into(),
            kernel: "6.18".into(),
            cpu: "x (2 CPUs)".into(),
        };
        let out = render(&doc, &meta).unwrap();
        assert!(out.starts_with(BEGIN) && out.trim_end().ends_with(END), "{out}");
        assert!(out.contains("| burst 1 | 3 | ≤ 0 | ✗ |"), "{out}");
        assert!(
            out.contains("| VmRSS | 40.0 MiB | 40.0 / 40.0 MiB | 40.0 / 40.0 MiB | 1.001 |"),
            "{out}"
        );
        assert!(out.contains("| 1 | 3.0 | 100 | 100 | 20 | 80 | 0 | 0 | 0 |"), "{out}");
        let mut bad = doc.clone();
        bad.as_object_mut().unwrap().remove("bursts");
        assert!(render(&bad, &meta).is_err());
    }
}
