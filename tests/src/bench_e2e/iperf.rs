//! iperf3 TCP throughput from the client namespace to the server namespace over the veth pair,
//! next to the same run with an observer attached on the server side: `reach watch`, tcpdump
//! capturing SYNs, a bpftrace kfree_skb one-liner. Every round runs each configuration once, the
//! order rotating from round to round, so slow drifts of a shared machine spread over all of
//! them. Each run is compared with the same round's "nothing attached" run; the median of
//! these ratios is the figure (the ratio of the medians is given too).
use std::{path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Args, Pair, Proc, median, pair::output};

const PORT: u16 = 5201;
/// How long an observer may take to say it is attached (a debug reach on a slow VM).
const READY: Duration = Duration::from_secs(60);
/// bpftrace says this in its BEGIN probe, which runs once every probe is attached.
const BPFTRACE_READY: &str = "reach-bench: bpftrace attached";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    Nothing,
    Reach,
    Tcpdump,
    Bpftrace,
}

pub const CONFIGS: [Config; 4] =
    [Config::Nothing, Config::Reach, Config::Tcpdump, Config::Bpftrace];

impl Config {
    pub fn key(self) -> &'static str {
        match self {
            Config::Nothing => "none",
            Config::Reach => "reach",
            Config::Tcpdump => "tcpdump",
            Config::Bpftrace => "bpftrace",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Config::Nothing => "nothing attached",
            Config::Reach => "reach watch --json --netns <server>",
            Config::Tcpdump => "tcpdump -i srv0 -w /dev/null 'tcp[tcpflags] & tcp-syn != 0'",
            Config::Bpftrace => {
                "bpftrace -e 'tracepoint:skb:kfree_skb { @[args->reason] = count(); }'"
            }
        }
    }

    /// Starts the observer and waits until it is attached.
    fn start(self, pair: &Pair, reach: &Path) -> anyhow::Result<Option<Proc>> {
        let (mut proc, marker) = match self {
            Config::Nothing => return Ok(None),
            Config::Reach => {
                let mut cmd = Command::new(reach);
                cmd.args(["watch", "--json", "--netns", pair.server.name()]);
                (Proc::spawn("reach watch", cmd)?, "watching drops")
            }
            Config::Tcpdump => {
                let mut cmd = Pair::command_in(&pair.server, "tcpdump")?;
                cmd.args([
                    "-i",
                    Pair::SERVER_IF,
                    "-w",
                    "/dev/null",
                    "tcp[tcpflags] & tcp-syn != 0",
                ]);
                (Proc::spawn("tcpdump", cmd)?, "listening on")
            }
            Config::Bpftrace => (Proc::spawn("bpftrace", bpftrace_command())?, BPFTRACE_READY),
        };
        proc.wait_for(marker, READY)?;
        Ok(Some(proc))
    }
}

/// The bpftrace one-liner, in a mount namespace of its own with tracefs mounted if the host
/// has it unmounted (bpftrace reads tracepoint formats there; nothing stays mounted). `-B line`:
/// its output is a pipe, and the ready line must not wait in a buffer.
fn bpftrace_command() -> Command {
    let program = format!(
        "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} \
         tracepoint:skb:kfree_skb {{ @[args->reason] = count(); }}"
    );
    let script = "grep -q ' /sys/kernel/tracing tracefs ' /proc/self/mounts \
                  || mount -t tracefs nodev /sys/kernel/tracing || exit 97; \
                  exec bpftrace -B line -e \"$0\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, &program]);
    cmd
}

/// One iperf3 client run of `seconds`: the receiver's Gbit/s.
fn client(pair: &Pair, seconds: u32) -> anyhow::Result<f64> {
    let (server, port, secs) = (Pair::SERVER_V4.to_string(), PORT.to_string(), seconds.to_string());
    let mut last = String::new();
    for _ in 0..20 {
        let mut cmd = Pair::command_in(&pair.client, "iperf3")?;
        cmd.args(["-c", &server, "-p", &port, "-t", &secs, "-J"]);
        let out = output(&mut cmd, Duration::from_secs(u64::from(seconds) + 30))?;
        let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("iperf3 -c printed no JSON: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        if let Some(err) = v["error"].as_str() {
            // The server still finishing the previous test.
            if err.contains("busy") {
                last = err.to_string();
                thread::sleep(Duration::from_millis(200));
                continue;
            }
            bail!("iperf3 -c: {err}");
        }
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("iperf3 -J has no end.sum_received.bits_per_second")?;
        return Ok(bps / 1e9);
    }
    bail!("iperf3 -c: {last}")
}

pub fn bench(pair: &Pair, reach: &Path, args: &Args) -> anyhow::Result<Value> {
    let mut cmd = Pair::command_in(&pair.server, "iperf3")?;
    cmd.args(["-s", "-B", &Pair::SERVER_V4.to_string(), "-p", &PORT.to_string()]);
    let server = Proc::spawn("iperf3 -s", cmd)?;
    pair.server
        .wait_tcp_listener(PORT, Duration::from_secs(10))
        .with_context(|| format!("iperf3 -s never listened:\n{}", server.output()))?;
    // Warm-up (not measured): first connection, caches, CPU frequency.
    client(pair, 1).context("the warm-up run")?;
    let n = CONFIGS.len();
    let mut gbps = vec![Vec::new(); n];
    let mut orders = Vec::new();
    let mut reach_lines = 0;
    for round in 0..args.rounds {
        let order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
        orders.push(order.iter().map(|&i| CONFIGS[i].key()).collect::<Vec<_>>());
        for &i in &order {
            let config = CONFIGS[i];
            let observer = config.start(pair, reach).with_context(|| config.label())?;
            let g = client(pair, args.iperf_seconds).with_context(|| config.label());
            if let Some(p) = observer {
                // SIGINT: reach and bpftrace detach and print what they have; tcpdump ends.
                let stopped = p.stop(libc::SIGINT, Duration::from_secs(30))?;
                if config == Config::Reach {
                    reach_lines += stopped.lines.len();
                    if stopped.killed || stopped.status.is_none_or(|s| !s.success()) {
                        bail!("reach watch did not stop cleanly: {:?}", stopped.status);
                    }
                }
            }
            let g = g?;
            eprintln!(
                "reach-bench: iperf3 round {}/{} {:10} {g:6.2} Gbit/s",
                round + 1,
                args.rounds,
                config.key()
            );
            gbps[i].push(g);
        }
    }
    server.stop(libc::SIGTERM, Duration::from_secs(5))?;
    let base = median(&gbps[0]);
    let configs: Vec<Value> = CONFIGS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let m = median(&gbps[i]);
            // Paired with the same round's "nothing attached": a machine whose speed drifts
            // over the run moves both.
            let ratios: Vec<f64> = gbps[i].iter().zip(&gbps[0]).map(|(g, b)| g / b).collect();
            let lo = gbps[i].iter().copied().fold(f64::INFINITY, f64::min);
            let hi = gbps[i].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            json!({
                "key": c.key(),
                "config": c.label(),
                "gbps": m,
                "gbps_min": lo,
                "gbps_max": hi,
                "gbps_rounds": gbps[i],
                "ratio": median(&ratios),
                "ratio_rounds": ratios,
                "ratio_of_medians": m / base,
            })
        })
        .collect();
    Ok(json!({
        "seconds": args.iperf_seconds,
        "rounds": args.rounds,
        "order": orders,
        "reach_lines": reach_lines,
        "configs": configs,
    }))
}
