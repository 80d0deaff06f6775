//! A SYN flood (`hping3 -S --flood` to a closed port, from the client namespace) under
//! `reach watch --json` on the server namespace with the default rate limit: every SYN the
//! server's veth received must be accounted for by reach, as a SYN event, in its rate-limit
//! counter (`suppressed.syn`) or in its lost counter (`lost.syn`; a `lost` line without the
//! split counts as a whole). The difference is reported as `unaccounted` (the goal is 0), with
//! the SYN rate the flood achieved and reach's CPU time and peak RSS under it.
use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::ensure;
use serde_json::{Value, json};

use super::{Args, Pair, Proc, procs::Line};

/// Nothing listens there: each SYN is answered with a RST and freed (NO_SOCKET).
pub const CLOSED_PORT: u16 = 7;

/// reach's account of the SYNs, from its JSON lines.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Account {
    pub syn_events: u64,
    pub suppressed_syn: u64,
    pub suppressed_other: u64,
    /// `lost.syn` summed, or `lost.count` for lines without the split.
    pub lost_syn: u64,
    pub lost_count: u64,
    /// Whether some `lost` line had no `syn` field (its whole count was taken as SYNs).
    pub lost_unsplit: bool,
    /// Counter lines (`suppressed`, `lost`) printed after the stop signal: reach's final read.
    pub counter_lines_after_stop: u64,
    pub lines: u64,
    pub bad_lines: u64,
}

/// Adds up reach's SYN events and counters from its `--json` lines (`stop`: when it was told to
/// stop).
pub fn account(lines: &[Line], stop: Option<Instant>) -> Account {
    let mut a = Account::default();
    for l in lines.iter().filter(|l| l.stream == super::procs::Stream::Stdout) {
        a.lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(&l.text) else {
            a.bad_lines += 1;
            continue;
        };
        let n = |key: &str| v[key].as_u64().unwrap_or(0);
        let after_stop = stop.is_some_and(|s| l.at >= s);
        match v["type"].as_str() {
            // Every SYN the server namespace received counts, whatever its port.
            Some("syn") => a.syn_events += 1,
            Some("suppressed") => {
                a.suppressed_syn += n("syn");
                a.suppressed_other += n("other");
                a.counter_lines_after_stop += u64::from(after_stop);
            }
            Some("lost") => {
                a.lost_count += n("count");
                match v["syn"].as_u64() {
                    Some(syn) => a.lost_syn += syn,
                    None => {
                        a.lost_syn += n("count");
                        a.lost_unsplit = true;
                    }
                }
                a.counter_lines_after_stop += u64::from(after_stop);
            }
            _ => {}
        }
    }
    a
}

/// `N packets transmitted` of hping3's statistics.
pub(super) fn hping_sent(lines: &[Line]) -> Option<u64> {
    lines.iter().find_map(|l| {
        l.text.split_once(" packets transmitted").and_then(|(n, _)| n.trim().parse().ok())
    })
}

pub fn bench(pair: &Pair, reach: &Path, args: &Args) -> anyhow::Result<Value> {
    let mut cmd = Command::new(reach);
    cmd.args(["watch", "--json", "--netns", pair.server.name()]);
    let mut watch = Proc::spawn("reach watch --json", cmd)?;
    watch.wait_for("watching drops", Duration::from_secs(60))?;
    let (rx0, segs0) = (pair.server_rx_packets()?, pair.server_tcp_in_segs()?);

    let mut cmd = Pair::command_in(&pair.client, "hping3")?;
    cmd.args(["-S", "--flood", "-p", &CLOSED_PORT.to_string(), &Pair::SERVER_V4.to_string()]);
    let before = watch.stats()?;
    let start = Instant::now();
    let flood = Proc::spawn("hping3 --flood", cmd)?;
    thread::sleep(Duration::from_secs_f64(args.flood_seconds));
    // SIGINT: hping3 prints its statistics and exits.
    let hping = flood.stop(libc::SIGINT, Duration::from_secs(5))?;
    let elapsed = start.elapsed().as_secs_f64();
    // The last SYNs queued on the backlog reach TC ingress within microseconds; give the
    // server's softirq a moment before reading the counters.
    thread::sleep(Duration::from_millis(100));
    let (rx1, segs1) = (pair.server_rx_packets()?, pair.server_tcp_in_segs()?);
    let under_load = watch.stats()?;
    let stop = Instant::now();
    let stopped = watch.stop(libc::SIGINT, Duration::from_secs(60))?;
    ensure!(
        !stopped.killed && stopped.status.is_some_and(|s| s.success()),
        "reach watch did not stop cleanly on SIGINT ({:?})",
        stopped.status
    );
    let a = account(&stopped.lines, Some(stop));
    let received = rx1 - rx0;
    let counted = a.syn_events + a.suppressed_syn + a.lost_syn;
    let unaccounted = received as i64 - counted as i64;
    let rate = received as f64 / elapsed;
    // The whole run includes the start-up (BTF, loading and attaching): the flood's share is
    // what reach used from just before it started to its exit (its final drain included).
    let cpu_s = stopped.cpu_s.unwrap_or(under_load.cpu_s);
    let flood_cpu_s = cpu_s - before.cpu_s;
    eprintln!(
        "reach-bench: SYN flood {received} SYNs in {elapsed:.1} s ({rate:.0}/s): {} events + {} \
         suppressed + {} lost = {counted}, unaccounted {unaccounted}; reach {flood_cpu_s:.2} CPU \
         s for the flood ({cpu_s:.2} s in all), peak RSS {} KiB",
        a.syn_events, a.suppressed_syn, a.lost_syn, under_load.hwm_kib
    );
    Ok(json!({
        "seconds": elapsed,
        "closed_port": CLOSED_PORT,
        "hping3_sent": hping_sent(&hping.lines),
        "rx_packets": received,
        "tcp_in_segs": segs1 - segs0,
        "syn_rate": rate,
        "syn_events": a.syn_events,
        "suppressed_syn": a.suppressed_syn,
        "suppressed_other": a.suppressed_other,
        "lost_syn": a.lost_syn,
        "lost_count": a.lost_count,
        "lost_split": !a.lost_unsplit,
        "counted": counted,
        "unaccounted": unaccounted,
        "counter_lines_after_stop": a.counter_lines_after_stop,
        "reach_lines": a.lines,
        "reach_bad_lines": a.bad_lines,
        "reach_cpu_s": cpu_s,
        "reach_cpu_s_flood": flood_cpu_s,
        "reach_cpu_s_before_flood": before.cpu_s,
        "reach_cpu_s_under_load": under_load.cpu_s,
        "reach_peak_rss_kib": under_load.hwm_kib,
        "reach_rss_kib": under_load.rss_kib,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_e2e::procs::Stream;

    fn lines(texts: &[&str]) -> Vec<Line> {
        let at = Instant::now();
        texts.iter().map(|t| Line { at, stream: Stream::Stdout, text: t.to_string() }).collect()
    }

    #[test]
    fn every_kind_of_syn_record_is_added_up() {
        let l = lines(&[
            r#"{"type":"syn","dport":7,"sport":1}"#,
            r#"{"type":"syn","dport":7,"sport":2}"#,
            r#"{"type":"syn","dport":22,"sport":2}"#,
            r#"{"type":"rst","dport":7}"#,
            r#"{"type":"suppressed","syn":40,"other":3,"why":"rate_limit"}"#,
            r#"{"type":"suppressed","syn":2,"other":0,"why":"rate_limit"}"#,
            r#"{"type":"lost","count":5,"syn":4,"other":1}"#,
            "not json",
        ]);
        let a = account(&l, None);
        assert_eq!((a.syn_events, a.suppressed_syn, a.suppressed_other), (3, 42, 3));
        assert_eq!((a.lost_syn, a.lost_count, a.lost_unsplit), (4, 5, false));
        assert_eq!((a.lines, a.bad_lines), (8, 1));
        // The older form: the whole count may be SYNs.
        let a = account(&lines(&[r#"{"type":"lost","count":6}"#]), None);
        assert_eq!((a.lost_syn, a.lost_unsplit), (6, true));
    }

    #[test]
    fn hping3_statistics() {
        let l = lines(&[
            "--- 10.79.0.1 hping statistic ---",
            "77919 packets transmitted, 0 packets received",
        ]);
        assert_eq!(hping_sent(&l), Some(77919));
    }
}
