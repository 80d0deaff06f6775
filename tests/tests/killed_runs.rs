//! Nothing outlives reach (issue 18, item 1): `reach watch`, `why` and `agent`, SIGKILLed at
//! random points of set-up, steady state (with traffic) and tear-down (SIGKILL while the
//! SIGINT'd run detaches), leave no nft table, qdisc, TC filter, TCX link, BPF program, link,
//! pin, mount or /run/reach file — checked right after each kill, without a rerun. What makes
//! that true: the trace table is owned by reach's netlink socket (the kernel removes it with
//! the socket), TCX links and programs live only through reach's fds, and tracefs/securityfs,
//! when reach must mount them, are mounted in a mount namespace of reach's own.
//!
//! On a kernel without TCX the classifiers are netlink clsact filters, which no kernel removes
//! with a process: there the only leftovers allowed are those (documented; the next start
//! removes them, asserted at the end).
//!
//! Half the runs start in a mount namespace without tracefs and securityfs (as on a machine
//! that mounts neither), held by a process of the test's, whose mounts are checked too.
//! REACH_KILL_ITERATIONS (default 30) and REACH_KILL_SEED (printed) replay a run.
use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reach_agent::lab::TwoHosts;
use reach_tests::{
    KillOnDrop, Rng,
    leftovers::{Leftover, Leftovers, Scope, pseudo_mounts_of, tcx_expected},
    reach_bin, require_root,
    ruleset::RulesetSnapshot,
};

const PORT: u16 = 7931;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Watch,
    Why,
    Agent,
}

impl Kind {
    fn args(self, hosts: &TwoHosts) -> Vec<String> {
        let srv = hosts.server.name().to_string();
        let port = PORT.to_string();
        let v: Vec<&str> = match self {
            Kind::Watch => vec!["watch", "--json", "--netns", &srv, "--port", &port],
            Kind::Why => vec!["why", "--json", "--netns", &srv, &port, "--timeout", "60"],
            // The node's own namespace is never traced (its ruleset is not the test's to touch).
            Kind::Agent => vec![
                "agent",
                "--metrics",
                "127.0.0.1:9931",
                "--trace-port",
                &port,
                "--no-trace-netns",
                "host",
            ],
        };
        v.into_iter().map(String::from).collect()
    }

    fn ready(self) -> &'static str {
        match self {
            Kind::Watch => "watching drops",
            Kind::Why => "waiting for a SYN",
            Kind::Agent => "agent ready",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    SetUp,
    Steady,
    TearDown,
}

/// A reach process with its stderr collected as it comes.
struct Run {
    child: Child,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl Run {
    fn spawn(kind: Kind, hosts: &TwoHosts, mount_ns_of: Option<u32>) -> Run {
        let mut cmd = match mount_ns_of {
            // nsenter execs reach: the child's pid is reach's.
            Some(pid) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--mount=/proc/{pid}/ns/mnt")).arg("--").arg(reach_bin());
                c
            }
            None => Command::new(reach_bin()),
        };
        cmd.args(kind.args(hosts)).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start reach");
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Run { child, stderr, started: Instant::now() }
    }

    fn text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr says `marker`; the time it took.
    fn wait_ready(&mut self, marker: &str) -> Duration {
        let deadline = self.started + Duration::from_secs(120);
        loop {
            if self.text().contains(marker) {
                return self.started.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("reach exited ({status}) before saying {marker:?}:\n{}", self.text());
            }
            assert!(Instant::now() < deadline, "never said {marker:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

/// A process sitting in a mount namespace without tracefs and securityfs (slave of this one,
/// so the lab's /run/netns entries are there).
fn bare_mount_namespace() -> KillOnDrop {
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
        .arg(
            "for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/security; do \
             while grep -q \" $m \" /proc/self/mountinfo; do umount -l $m || exit 1; done; done; \
             echo ready; exec sleep 3600",
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare --mount");
    let mut holder = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the bare mount namespace could not be made");
    holder
}

/// What a netlink clsact run leaves by design (no kernel removes those with a process).
fn clsact_residue(l: &Leftover) -> bool {
    match l {
        Leftover::Program { name, holders, .. } => name.starts_with("reach_") && holders.is_empty(),
        Leftover::TcFilter { line, .. } => line.contains("reach_"),
        Leftover::Qdisc { line, .. } => line.starts_with("qdisc clsact"),
        Leftover::RunReach(p) => p.starts_with("/run/reach/clsact"),
        _ => false,
    }
}

/// reach processes still alive (a killed run's children included: none may outlive it).
fn reach_processes() -> Vec<i32> {
    let bin = std::fs::canonicalize(reach_bin()).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin))
        .collect()
}

#[test]
fn sigkill_at_random_points_leaves_nothing_behind() {
    require_root();
    let iterations: u32 =
        std::env::var("REACH_KILL_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 =
        std::env::var("REACH_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
                | 1
        });
    eprintln!("REACH_KILL_SEED={seed} REACH_KILL_ITERATIONS={iterations}");
    let mut rng = Rng(seed);
    let root = RulesetSnapshot::take(None);
    let hosts = TwoHosts::new("kill").unwrap();
    let _server = hosts
        .server
        .run_in(|| std::net::TcpListener::bind((TwoHosts::SERVER_V4, PORT)))
        .unwrap()
        .unwrap();
    let bare = bare_mount_namespace();
    let bare_pid = bare.0.id();
    let bare_before = pseudo_mounts_of(&bare_pid.to_string());
    assert!(bare_before.is_empty(), "the bare namespace has {bare_before:?}");
    let ifaces = [TwoHosts::SERVER_IF, "lo"];
    let check = Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &ifaces });
    let clsact = !tcx_expected();

    // How long each kind takes to attach and to detach, from one clean run each: the ranges
    // the kill points are drawn from.
    let kinds = [Kind::Watch, Kind::Why, Kind::Agent];
    let mut timing = Vec::new();
    for kind in kinds {
        let mut run = Run::spawn(kind, &hosts, None);
        let setup = run.wait_ready(kind.ready());
        run.signal(libc::SIGINT);
        let t = Instant::now();
        let status = run.wait();
        assert!(status.code().is_some(), "{kind:?} did not exit on SIGINT: {status}");
        timing.push((setup, t.elapsed()));
        let left = check.left_after(Duration::from_secs(15));
        assert!(left.is_empty(), "a clean {kind:?} run left {left:#?}");
    }
    eprintln!("set-up / tear-down: {timing:?}");

    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..iterations {
        let which = rng.below(3);
        let (kind, (setup, teardown)) = (kinds[which], timing[which]);
        let phase = [Phase::SetUp, Phase::Steady, Phase::TearDown][rng.below(3)];
        let bare_ns = rng.below(2) == 0;
        let mut run = Run::spawn(kind, &hosts, bare_ns.then_some(bare_pid));
        let at = match phase {
            Phase::SetUp => {
                let at = Duration::from_micros(rng.below(setup.as_micros() as usize + 1) as u64);
                std::thread::sleep(at);
                at
            }
            Phase::Steady => {
                run.wait_ready(kind.ready());
                let to = SocketAddr::from((TwoHosts::SERVER_V4, PORT));
                let _ = hosts
                    .client
                    .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)));
                let at = Duration::from_millis(rng.below(300) as u64);
                std::thread::sleep(at);
                at
            }
            Phase::TearDown => {
                run.wait_ready(kind.ready());
                run.signal(libc::SIGINT);
                let at = Duration::from_micros(rng.below(teardown.as_micros() as usize + 1) as u64);
                std::thread::sleep(at);
                at
            }
        };
        run.signal(libc::SIGKILL);
        let text = run.text();
        run.wait();
        let what = format!(
            "iteration {i}: {kind:?} killed in {phase:?} at {at:?}{} (seed {seed})",
            if bare_ns { " in a mount namespace without tracefs" } else { "" }
        );
        *tally.entry(format!("{kind:?} {phase:?}")).or_default() += 1;

        let left: Vec<Leftover> = check
            .left_after(Duration::from_secs(15))
            .into_iter()
            .filter(|l| !(clsact && clsact_residue(l)))
            .collect();
        assert!(left.is_empty(), "{what} left behind:\n{left:#?}\n--- its stderr ---\n{text}");
        let bare_now = pseudo_mounts_of(&bare_pid.to_string());
        assert!(bare_now.is_empty(), "{what} left mounts in its mount namespace: {bare_now:?}");
        let alive = reach_processes();
        assert!(alive.is_empty(), "{what}: reach processes still alive: {alive:?}");
    }
    eprintln!("{iterations} SIGKILLs, 0 leftovers: {tally:?}");

    if clsact {
        // The one documented exception goes at the next start (the agent's, on every
        // namespace it watched; watch's, on the lab's).
        for kind in [Kind::Agent, Kind::Watch] {
            let mut run = Run::spawn(kind, &hosts, None);
            run.wait_ready(kind.ready());
            run.signal(libc::SIGINT);
            run.wait();
        }
    }
    check.assert_nothing_new("the SIGKILLed runs");
    root.assert_unchanged("SIGKILLing reach in lab namespaces");
    drop(bare);
}
