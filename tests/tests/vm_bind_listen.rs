//! The bind/listen probes in kprobe and fentry mode, proven on real Debian kernels under QEMU
//! (this project's machines have neither kprobes nor usable trampolines). In each guest the
//! same scenario runs under `reach watch --attach MODE` for every mode; the events must be
//! identical across modes apart from the `source` field and the ephemeral port.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, bail, ensure};
use reach_tests::reach_bin;
use serde_json::Value;
use xtask::vm::{GuestOptions, run_in_guest};

const SCENARIO: &str = env!("CARGO_BIN_EXE_reach-scenario");
const MODES: [&str; 3] = ["kprobe", "fentry", "tracepoint"];

/// For each mode: start watch, wait until it says it is attached (bounded), run the scenario,
/// wait until watch printed the scenario's last events (its 4 listener closes), stop watch with
/// SIGINT and print both outputs.
fn script() -> String {
    let mut s = String::from("set -u\n");
    for mode in MODES {
        s.push_str(&format!(
            r#"$REACH watch --json --attach {mode} > /tmp/{mode}.jsonl 2> /tmp/{mode}.err &
W=$!
i=0; while ! grep -q 'watching binds' /tmp/{mode}.err; do i=$((i+1)); if [ $i -gt 600 ] || ! kill -0 $W 2>/dev/null; then echo "=== {mode} failed to attach"; cat /tmp/{mode}.err; exit 1; fi; sleep 0.1; done
$SCENARIO 47600 200 > /tmp/{mode}.scenario || exit 1
P=$(sed -n 's/^{{"pid":\([0-9]*\),.*/\1/p' /tmp/{mode}.scenario)
i=0; while [ "$(grep '"type":"listen_close"' /tmp/{mode}.jsonl | grep -c "\"pid\":$P,")" -lt 4 ]; do i=$((i+1)); if [ $i -gt 600 ]; then echo "=== {mode}: timed out after 60 s waiting for the 4 listen_close events of scenario pid $P"; cat /tmp/{mode}.err; exit 1; fi; sleep 0.1; done
kill -INT $W; wait $W; echo "=== {mode} exit $?"
echo "=== {mode} scenario"; cat /tmp/{mode}.scenario
echo "=== {mode} events"; cat /tmp/{mode}.jsonl
echo "=== {mode} end"
"#
        ));
    }
    s
}

/// Mode → (scenario JSON, event lines).
fn parse(output: &str) -> Result<BTreeMap<&'static str, (Value, Vec<Value>)>> {
    let mut out = BTreeMap::new();
    for mode in MODES {
        let section = |name: &str| -> Result<&str> {
            let start_tag = format!("=== {mode} {name}\n");
            let start = output
                .find(&start_tag)
                .with_context(|| format!("no {start_tag:?} in:\n{output}"))?
                + start_tag.len();
            let end = output[start..].find("=== ").map_or(output.len(), |e| start + e);
            Ok(&output[start..end])
        };
        ensure!(
            output.contains(&format!("=== {mode} exit 0")),
            "watch --attach {mode} did not exit 0:\n{output}"
        );
        let scenario: Value = serde_json::from_str(section("scenario")?.trim())?;
        let events = section("events")?
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        out.insert(mode, (scenario, events));
    }
    Ok(out)
}

/// The scenario's events, without what legitimately differs between modes and runs.
fn normalized(scenario: &Value, events: &[Value]) -> BTreeSet<String> {
    let pid = &scenario["pid"];
    let eph = scenario["ephemeral_port"].as_u64();
    let port = |v: &Value| {
        if v.as_u64().is_some() && v.as_u64() == eph { Value::from("EPHEMERAL") } else { v.clone() }
    };
    events
        .iter()
        .filter(|e| &e["pid"] == pid && e["type"] != "listener")
        .map(|e| {
            serde_json::json!([
                e["type"],
                e["family"],
                e["proto"],
                e["addr"],
                port(&e["port"]),
                e["bound_addr"],
                port(&e["bound_port"]),
                e["result"],
                e["backlog"],
                e["options"],
                e["netns"]["inode"] == scenario["netns"],
                e["comm"]
            ])
            .to_string()
        })
        .collect()
}

fn modes_agree(kernel: &str) -> Result<()> {
    let reach = reach_bin();
    let opts = GuestOptions {
        env: vec![
            ("REACH".into(), reach.to_str().context("REACH_BIN not UTF-8")?.into()),
            ("SCENARIO".into(), SCENARIO.into()),
        ],
        // Three watch runs under TCG take ~100 s alone; a busy host (another guest, a build)
        // has stretched that past the default 300 s.
        timeout: std::time::Duration::from_secs(900),
        ..GuestOptions::new(kernel, &["/bin/sh", "-c", &script()])
    };
    let outcome = run_in_guest(&opts)?;
    if outcome.exit_code != 0 {
        bail!("{kernel} guest script failed ({}):\n{}", outcome.exit_code, outcome.output);
    }
    let runs = parse(&outcome.output)?;
    let (s, ev) = &runs["kprobe"];
    let reference = normalized(s, ev);
    // 8 binds + 4 listens + 4 listener closes.
    ensure!(
        reference.len() == 16,
        "{kernel} kprobe mode saw {} distinct events:\n{reference:#?}",
        reference.len()
    );
    ensure!(
        reference.iter().all(|e| e.contains("true,\"reach-scenario\"")),
        "{kernel}: wrong netns or comm:\n{reference:#?}"
    );
    for (mode, binds_source) in
        [("kprobe", "kprobe"), ("fentry", "fentry"), ("tracepoint", "tracepoint")]
    {
        let (s, ev) = &runs[mode];
        let got = normalized(s, ev);
        ensure!(
            got == reference,
            "{kernel}: {mode} differs from kprobe:\n only {mode}: {:#?}\n only kprobe: {:#?}",
            got.difference(&reference).collect::<Vec<_>>(),
            reference.difference(&got).collect::<Vec<_>>()
        );
        let pid = &s["pid"];
        ensure!(
            ev.iter()
                .filter(|e| &e["pid"] == pid && e["type"] == "bind")
                .all(|e| e["source"] == binds_source),
            "{kernel}: binds in {mode} mode must come from {binds_source}"
        );
    }
    Ok(())
}

#[test]
fn kprobe_fentry_and_tracepoint_agree_on_debian_6_1() -> Result<()> {
    modes_agree("6.1")
}

#[test]
fn kprobe_fentry_and_tracepoint_agree_on_debian_6_18() -> Result<()> {
    modes_agree("6.18")
}
