//! Records the firewalld fixtures the unit tests parse (`tests/fixtures/firewalld-<version>/`)
//! from each real firewalld: the installed one, and the one of every `--root DIR` (a Debian root
//! such as the trixie root `cargo xtask setup` caches, run chrooted by the lab), each in a lab
//! namespace of its own (the root namespace is never touched). The same steps for every
//! version; rulesets are listed, and traces captured, by that version's own nft.
//! `cargo xtask record-fixtures` builds and runs it; needs root.
//!
//! The server namespace of a [`TwoHosts`] pair runs firewalld; after each step below,
//! `nft -j list ruleset` and `nft -a list ruleset` (handles) are written to
//! `rulesets/NN-step.{json,nft}`:
//! - 00 baseline (fresh start), then a table `inet lab_trace` marks TCP on `srv0` for tracing
//!   (prerouting and output, priority -350);
//! - 01 `--zone=public --add-interface=srv0`; 02 `--zone=public --add-port=8080/tcp`;
//! - 03 the rich rules of [`RICH_RULES`];
//! - 04 `--runtime-to-permanent`, `--permanent --zone=public --set-target=DROP`, `--reload`
//!   (every handle changes);
//! - 05 `--set-log-denied=all`;
//! - 06 back to `--set-log-denied=off` and target default, then two policies ([`POLICIES`]):
//!   `pubhost` (public → HOST, priority -10: port 7070/tcp and a rich reject of 7171) and
//!   `anyhost` (ANY → HOST, priority 10, target REJECT: a rich accept of 7272);
//! - 07 `--policy=pubhost --set-target=DROP`; 08 both policies back to target CONTINUE, zone
//!   public target ACCEPT; 09 zone public target REJECT (each permanent, then `--reload`).
//!
//! Between 03 and 04 (`B-default-*`, target default), between 04 and 05 (`C-DROP-*`), after 06
//! (`D-policies-*`) and after 07 (`E-policy-DROP-*`), one client SYN per port is traced with `nft -a monitor trace` into `nft-traces/<case>.trace.txt`,
//! so every handle a trace names is a handle of the ruleset recorded just before it. Each
//! capture ends where a marker SYN to port [`MARKER_PORT`] begins: netlink delivers the trace
//! messages in order, so once the marker shows up everything of the case before it has too.
//! Every case's client outcome is checked against what firewalld is expected to do, so a
//! recording of something else fails instead of being written.
use std::{
    collections::HashSet,
    fs,
    io::{self, BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use reach_agent::{
    firewall::trace::NFNLGRP_NFTRACE,
    lab::{Firewalld, FirewalldBuild, FirewalldOptions, LabChild, TwoHosts},
};

/// Step 03's rich rules.
use reach_tests::RICH_RULES;

/// Step 06's policies: name, ingress zone, egress zone, priority, what it allows or denies.
const POLICIES: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "pubhost",
        "public",
        "HOST",
        "-10",
        &[
            "--add-port=7070/tcp",
            "--add-rich-rule=rule family=ipv4 source address=10.77.0.2 port port=7171 protocol=tcp reject",
        ],
    ),
    (
        "anyhost",
        "ANY",
        "HOST",
        "10",
        &[
            "--add-rich-rule=rule family=ipv4 port port=7272 protocol=tcp accept",
            "--set-target=REJECT",
        ],
    ),
];

/// The port of the end-of-capture marker SYN (no rule allows it in any step).
const MARKER_PORT: u16 = 9;

/// Shorter than the first SYN retransmission (1 s): a dropped SYN is sent exactly once.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Generous on a loaded 2-core machine; the error names what was waited for.
const WAIT: Duration = Duration::from_secs(30);

/// What the client sees for one traced SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Connected,
    /// An RST: a tcp-reset reject, or no socket behind an accepted port.
    Refused,
    /// ICMP admin-prohibited (target default).
    Unreachable,
    /// Dropped: no answer.
    TimedOut,
}

fn main() -> ExitCode {
    match run() {
        Ok(dirs) => {
            for dir in dirs {
                eprintln!("reach-record-fixtures: recorded {}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reach-record-fixtures: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: reach-record-fixtures FIXTURES_DIR [--root DIR]…";

fn run() -> anyhow::Result<Vec<PathBuf>> {
    let mut args = std::env::args_os().skip(1);
    let out = args.next().map(PathBuf::from).context(USAGE)?;
    let mut builds = vec![FirewalldBuild::host()];
    while let Some(arg) = args.next() {
        ensure!(arg == "--root", "unexpected argument {arg:?}; {USAGE}");
        builds.push(FirewalldBuild::root(args.next().context(USAGE)?));
    }
    // SAFETY: geteuid has no preconditions.
    ensure!(unsafe { libc::geteuid() } == 0, "needs root (network namespaces, firewalld)");
    let mut done = Vec::new();
    for build in builds {
        done.push(record_version(&out, &build).with_context(|| format!("recording {build}"))?);
    }
    done.push(record_nat(&out).context("recording the NAT ruleset")?);
    Ok(done)
}

/// `out/nat/ruleset.nft` loaded into a lab namespace of its own, listed back by nft as
/// `out/nat/ruleset.json` (what `firewall::nat_destinations` is tested on).
fn record_nat(out: &Path) -> anyhow::Result<PathBuf> {
    let dir = out.join("nat");
    let ns = reach_agent::lab::NetNs::new("record-nat")?;
    let script = dir.join("ruleset.nft");
    ns.run("nft", &["-f", &script.to_string_lossy()])?;
    let listed = ns.run("nft", &["-j", "list", "ruleset"])?;
    let json = dir.join("ruleset.json");
    fs::write(&json, listed).with_context(|| format!("writing {}", json.display()))?;
    Ok(json)
}

/// Records `build` into `out/firewalld-<its version>/`.
fn record_version(out: &Path, build: &FirewalldBuild) -> anyhow::Result<PathBuf> {
    let version = build.version()?;
    let done = out.join(format!("firewalld-{version}"));
    // Recorded beside the old recording and swapped in only when complete.
    let staging = out.join(format!(".firewalld-{version}.recording"));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    for sub in ["rulesets", "nft-traces"] {
        fs::create_dir_all(staging.join(sub))
            .with_context(|| format!("creating {}", staging.join(sub).display()))?;
    }
    record(&staging, &version, build)?;
    if done.exists() {
        fs::remove_dir_all(&done).with_context(|| format!("removing {}", done.display()))?;
    }
    fs::rename(&staging, &done).with_context(|| format!("renaming {}", staging.display()))?;
    Ok(done)
}

fn record(dir: &Path, version: &str, build: &FirewalldBuild) -> anyhow::Result<()> {
    let hosts = TwoHosts::new("record")?;
    let opts = FirewalldOptions { build: build.clone(), ..FirewalldOptions::default() };
    let fw = Firewalld::start_with(&hosts.server, opts)?;
    let rec = Recorder { hosts: &hosts, fw: &fw, dir };
    let srv = TwoHosts::SERVER_IF;

    rec.ruleset("00-baseline")?;
    rec.install_trace_table()?;
    rec.firewall_cmd(&["--zone=public", &format!("--add-interface={srv}")])?;
    rec.ruleset("01-add-interface")?;
    rec.firewall_cmd(&["--zone=public", "--add-port=8080/tcp"])?;
    rec.ruleset("02-add-port")?;
    for rule in RICH_RULES {
        rec.firewall_cmd(&["--zone=public", &format!("--add-rich-rule={rule}")])?;
    }
    rec.ruleset("03-add-rich-rules")?;

    // 8080 listens on loopback only: the firewall accepts the SYN, the kernel finds no socket.
    let _listeners: Vec<TcpListener> = hosts.server.run_in(|| {
        [("127.0.0.1", 8080), ("0.0.0.0", 9292)]
            .into_iter()
            .map(|a| TcpListener::bind(a).with_context(|| format!("listening on {a:?}")))
            .collect::<anyhow::Result<Vec<_>>>()
    })??;
    rec.trace("B-default-7777-notallowed", 7777, Outcome::Unreachable)?;
    rec.trace("B-default-8080-allowed-listener-on-127", 8080, Outcome::Refused)?;
    rec.trace("B-default-9090-rich-reject-tcp-reset", 9090, Outcome::Refused)?;
    rec.trace("B-default-9191-rich-log-drop", 9191, Outcome::TimedOut)?;
    rec.trace("B-default-9292-rich-accept-listener", 9292, Outcome::Connected)?;

    rec.firewall_cmd(&["--runtime-to-permanent"])?;
    rec.firewall_cmd(&["--permanent", "--zone=public", "--set-target=DROP"])?;
    rec.firewall_cmd(&["--reload"])?;
    rec.ruleset("04-target-DROP-after-reload")?;
    rec.trace("C-DROP-7777-notallowed", 7777, Outcome::TimedOut)?;
    rec.trace("C-DROP-8080-allowed-listener-on-127", 8080, Outcome::Refused)?;

    rec.firewall_cmd(&["--set-log-denied=all"])?;
    rec.ruleset("05-log-denied-all")?;

    rec.firewall_cmd(&["--set-log-denied=off"])?;
    rec.firewall_cmd(&["--permanent", "--zone=public", "--set-target=default"])?;
    for (name, ingress, egress, priority, rules) in POLICIES {
        let policy = format!("--policy={name}");
        rec.firewall_cmd(&["--permanent", &format!("--new-policy={name}")])?;
        for setting in [
            format!("--add-ingress-zone={ingress}"),
            format!("--add-egress-zone={egress}"),
            format!("--set-priority={priority}"),
        ]
        .iter()
        .map(String::as_str)
        .chain(rules.iter().copied())
        {
            rec.firewall_cmd(&["--permanent", &policy, setting])?;
        }
    }
    rec.firewall_cmd(&["--reload"])?;
    rec.ruleset("06-policies")?;
    // Listening on every address: a connection proves the policy accepted the SYN (a
    // reject would be refused as well as an accept with no listener).
    let _more: Vec<TcpListener> = hosts.server.run_in(|| {
        [("0.0.0.0", 7070), ("0.0.0.0", 7272)]
            .into_iter()
            .map(|a| TcpListener::bind(a).with_context(|| format!("listening on {a:?}")))
            .collect::<anyhow::Result<Vec<_>>>()
    })??;
    rec.trace("D-policies-7070-policy-port", 7070, Outcome::Connected)?;
    rec.trace("D-policies-7171-policy-rich-reject", 7171, Outcome::Refused)?;
    rec.trace("D-policies-7272-anyhost-rich-accept", 7272, Outcome::Connected)?;
    rec.trace("D-policies-7777-notallowed", 7777, Outcome::Unreachable)?;

    rec.reload_after(&["--permanent", "--policy=pubhost", "--set-target=DROP"])?;
    rec.ruleset("07-policy-target-DROP")?;
    rec.trace("E-policy-DROP-7070-policy-port", 7070, Outcome::Connected)?;
    rec.trace("E-policy-DROP-7777-notallowed", 7777, Outcome::TimedOut)?;

    rec.firewall_cmd(&["--permanent", "--policy=pubhost", "--set-target=CONTINUE"])?;
    rec.firewall_cmd(&["--permanent", "--policy=anyhost", "--set-target=CONTINUE"])?;
    rec.reload_after(&["--permanent", "--zone=public", "--set-target=ACCEPT"])?;
    rec.ruleset("08-target-ACCEPT")?;
    rec.reload_after(&["--permanent", "--zone=public", "--set-target=REJECT"])?;
    rec.ruleset("09-target-REJECT")?;

    let nft_version = rec.nft(&["--version"])?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    write(
        &dir.join("recorded-with.txt"),
        &format!("firewalld {version}\n{}\nkernel {}\n", nft_version.trim(), kernel.trim()),
    )?;
    fw.stop()?;
    Ok(())
}

struct Recorder<'a> {
    hosts: &'a TwoHosts,
    fw: &'a Firewalld,
    dir: &'a Path,
}

impl Recorder<'_> {
    fn firewall_cmd(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self.fw.cmd(args)?;
        ensure!(out.trim() == "success", "firewall-cmd {args:?} printed {out:?}");
        Ok(())
    }

    /// A permanent change, then `--reload` to apply it.
    fn reload_after(&self, args: &[&str]) -> anyhow::Result<()> {
        self.firewall_cmd(args)?;
        self.firewall_cmd(&["--reload"])
    }

    /// This firewalld's own nft (the root's for a root build) in the server namespace.
    fn nft(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(self.fw.nft(args)?)
    }

    fn ruleset(&self, step: &str) -> anyhow::Result<()> {
        let rulesets = self.dir.join("rulesets");
        let json = self.nft(&["-j", "list", "ruleset"])?;
        serde_json::from_str::<serde_json::Value>(&json)
            .with_context(|| format!("{step}: `nft -j list ruleset` is not JSON"))?;
        write(&rulesets.join(format!("{step}.json")), &json)?;
        write(&rulesets.join(format!("{step}.nft")), &self.nft(&["-a", "list", "ruleset"])?)?;
        eprintln!("recorded ruleset {step}");
        Ok(())
    }

    /// reach's own trace table is `inet reach_trace`; this one has another name so a recording
    /// never looks like reach's.
    fn install_trace_table(&self) -> anyhow::Result<()> {
        let srv = TwoHosts::SERVER_IF;
        for command in [
            "add table inet lab_trace".to_string(),
            "add chain inet lab_trace pre { type filter hook prerouting priority -350; policy accept; }".into(),
            format!("add rule inet lab_trace pre iifname \"{srv}\" meta l4proto tcp meta nftrace set 1"),
            "add chain inet lab_trace out { type filter hook output priority -350; policy accept; }".into(),
            format!("add rule inet lab_trace out oifname \"{srv}\" meta l4proto {{ icmp, tcp }} meta nftrace set 1"),
        ] {
            self.nft(&[&command])?;
        }
        Ok(())
    }

    /// Traces one SYN from the client to `port` and writes the capture as `<case>.trace.txt`.
    fn trace(&self, case: &str, port: u16, expected: Outcome) -> anyhow::Result<()> {
        let monitor = Monitor::start(self.fw)?;
        let (outcome, stream) = connect(self.hosts, port)?;
        ensure!(outcome == expected, "{case}: the client saw {outcome:?}, expected {expected:?}");
        let (_, marker) = connect(self.hosts, MARKER_PORT)?;
        ensure!(marker.is_none(), "{case}: the marker SYN to port {MARKER_PORT} connected");
        let lines = monitor.until_marker()?;
        drop(stream);
        check_capture(case, &lines, port)?;
        let mut text = lines.join("\n");
        text.push('\n');
        write(&self.dir.join("nft-traces").join(format!("{case}.trace.txt")), &text)?;
        eprintln!("recorded trace {case} ({} lines, client: {outcome:?})", lines.len());
        Ok(())
    }
}

/// `nft -a monitor trace` in the server namespace, its lines read by a thread.
struct Monitor {
    child: LabChild,
    lines: mpsc::Receiver<String>,
}

impl Monitor {
    /// Starts the monitor and waits until it has subscribed to the trace group (before that, a
    /// packet's trace would be lost).
    fn start(fw: &Firewalld) -> anyhow::Result<Self> {
        let mut cmd = fw.nft_command();
        cmd.args(["-a", "monitor", "trace"]).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = LabChild::spawn(&mut cmd)?;
        let stdout = child.child_mut().stdout.take().context("nft monitor's stdout")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.pid();
        let deadline = Instant::now() + WAIT;
        while !subscribed_to_traces(pid)? {
            if let Some(status) = child.try_wait()? {
                bail!("`nft -a monitor trace` exited before subscribing ({status})");
            }
            ensure!(
                Instant::now() < deadline,
                "`nft -a monitor trace` (pid {pid}) did not join netlink group NFNLGRP_NFTRACE within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        Ok(Self { child, lines })
    }

    /// The lines printed before the marker SYN's trace began; stops the monitor.
    fn until_marker(mut self) -> anyhow::Result<Vec<String>> {
        let marker = format!("tcp dport {MARKER_PORT} ");
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "no trace of the marker SYN to port {MARKER_PORT} within {WAIT:?} (nft printed {} lines)",
                    lines.len()
                )
            })?;
            if line.contains(" packet: ") && line.contains(&marker) {
                break;
            }
            lines.push(line);
        }
        self.child.kill()?;
        Ok(lines)
    }
}

/// Whether process `pid` holds a NETLINK_NETFILTER socket subscribed to NFNLGRP_NFTRACE
/// (`/proc/PID/net/netlink`: sk, Eth = protocol, Pid, Groups = the first 32 groups as a
/// bitmask, …, Inode).
fn subscribed_to_traces(pid: i32) -> anyhow::Result<bool> {
    const NETLINK_NETFILTER: &str = "12";
    let mut inodes = HashSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = fs::read_link(entry?.path()).unwrap_or_default();
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let table = fs::read_to_string(format!("/proc/{pid}/net/netlink"))?;
    let group_bit = 1u32 << (NFNLGRP_NFTRACE - 1);
    Ok(table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 10
            && f[1] == NETLINK_NETFILTER
            && u32::from_str_radix(f[3], 16).is_ok_and(|groups| groups & group_bit != 0)
            && inodes.contains(f[9])
    }))
}

/// One connection attempt from the client; a connected stream is handed back so it stays
/// open (no FIN) until the capture is complete.
fn connect(hosts: &TwoHosts, port: u16) -> anyhow::Result<(Outcome, Option<TcpStream>)> {
    let addr = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let result = hosts.client.run_in(move || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT))?;
    Ok(match result {
        Ok(stream) => (Outcome::Connected, Some(stream)),
        Err(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => (Outcome::Refused, None),
            io::ErrorKind::HostUnreachable => (Outcome::Unreachable, None),
            io::ErrorKind::TimedOut => (Outcome::TimedOut, None),
            _ => bail!("connecting to {addr}: {e}"),
        },
    })
}

/// The capture holds the client's SYN to `port` entering firewalld's table, and its walk
/// there ends in a verdict that decides.
fn check_capture(case: &str, lines: &[String], port: u16) -> anyhow::Result<()> {
    let syn = format!("ip saddr {} ", TwoHosts::CLIENT_V4);
    let dport = format!("tcp dport {port} ");
    let id = lines
        .iter()
        .find(|l| {
            l.contains(" inet firewalld filter_INPUT packet: ")
                && l.contains(&syn)
                && l.contains(&dport)
                && l.contains("tcp flags == syn ")
        })
        .and_then(|l| l.split_whitespace().nth(2))
        .with_context(|| format!("{case}: no SYN to port {port} entered filter_INPUT"))?;
    let prefix = format!("trace id {id} inet firewalld ");
    let last = lines
        .iter()
        .rfind(|l| l.starts_with(&prefix) && l.contains(" rule "))
        .with_context(|| format!("{case}: the SYN matched no rule of inet firewalld"))?;
    ensure!(
        last.ends_with("(verdict accept)") || last.ends_with("(verdict drop)"),
        "{case}: the SYN's last firewalld rule did not decide: {last}"
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
