//! Shared helpers of reach's privileged integration tests.
//!
//! Tests run as root (CI does) through `cargo xtask test`, which builds the `reach` binary first
//! and exports its path as REACH_BIN. A test that needs something missing fails and says what.
use std::{
    path::PathBuf,
    process::{Child, Command, Output},
    thread,
    time::{Duration, Instant},
};

use reach_agent::lab;

pub mod agent_run;
pub mod bench_e2e;
pub mod containerd;
pub mod deploy;
pub mod docker;
pub mod firewalld_versions;
pub mod frames;
pub mod kernel_facts;
pub mod leftovers;
pub mod podman;
pub mod prometheus;
pub mod root_state;
pub mod ruleset;
pub mod why_run;

/// The `reach` binary under test.
pub fn reach_bin() -> PathBuf {
    let path = std::env::var_os("REACH_BIN").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "REACH_BIN is not set: run the tests through `cargo xtask test` (it builds reach and \
             sets REACH_BIN), or `cargo build --bins && REACH_BIN=$PWD/target/debug/reach cargo test`"
        )
    });
    assert!(
        path.is_file(),
        "REACH_BIN={} does not exist: build it with `cargo build --bins`",
        path.display()
    );
    path
}

/// `reach ARGS...`, captured.
pub fn reach(args: &[&str]) -> Output {
    Command::new(reach_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run reach {args:?}: {e}"))
}

/// `reach ARGS...` as nobody with no capabilities at all (setpriv, util-linux), captured.
pub fn reach_unprivileged(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(reach_bin())
        .args(args)
        .output()
        .expect("setpriv (util-linux) is needed; cargo xtask setup installs it")
}

/// Asserts the test runs as root (the privileged tests need it) with a clear message.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run `sudo cargo xtask test`"
    );
}

/// `ip netns list` in the caller's namespace (read-only).
pub fn ip_netns_list() -> String {
    let ip = lab::IP.path().expect("ip");
    let out = Command::new(ip).args(["netns", "list"]).output().expect("running ip netns list");
    assert!(out.status.success(), "ip netns list: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `ip netns list` shows a namespace named `name`.
pub fn netns_listed(name: &str) -> bool {
    ip_netns_list().lines().any(|l| l.split_whitespace().next() == Some(name))
}

/// Whether process `pid` is running (not exited, not a zombie waiting for its parent).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// Polls `done` every 20 ms until it holds; fails the test, naming `what`, after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed and reaped when this drops, even if the test fails early
/// (e.g. the child run of a killed-run test).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Renders an Output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One JSON value per line of `text` (`--json` output); panics naming a line that is not JSON.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A running `reach watch --json ...` whose stdout is collected and whose stderr is watched
/// for the line that says everything is attached.
pub struct WatchRun {
    child: std::process::Child,
    /// stdout so far, appended line by line (so a test can wait for a line while reach runs).
    stdout_text: std::sync::Arc<std::sync::Mutex<String>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl WatchRun {
    /// Starts `reach watch ARGS` and waits (at most 120 s: QEMU guests under TCG attach ~20×
    /// slower than a host) until stderr contains `ready_marker`
    /// (e.g. "watching drops" or "watching binds"). Panics with the stderr seen on timeout.
    pub fn start(args: &[&str], ready_marker: &str) -> WatchRun {
        Self::start_command("watch", args, ready_marker)
    }

    /// Same for another long-running subcommand (`why`).
    pub fn start_command(subcommand: &str, args: &[&str], ready_marker: &str) -> WatchRun {
        let mut cmd = std::process::Command::new(reach_bin());
        cmd.arg(subcommand).args(args);
        Self::start_with(cmd, ready_marker)
    }

    /// Same for a command line of the caller's (e.g. reach run through `nsenter`), which must
    /// exec reach in the end: the child's pid is then reach's.
    pub fn start_with(mut cmd: std::process::Command, ready_marker: &str) -> WatchRun {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start reach");
        let out = child.stdout.take().unwrap();
        let stdout_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout_sink = stdout_text.clone();
        let stdout = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = stdout_sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let run = WatchRun {
            child,
            stdout_text,
            stdout: Some(stdout),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut run = run;
        loop {
            if run.stderr().contains(ready_marker) {
                return run;
            }
            // Exited before it was ready (bad usage, an attach error): say so now, not after
            // the whole wait.
            if let Ok(Some(status)) = run.child.try_wait() {
                if let Some(h) = run.stderr_reader.take() {
                    let _ = h.join();
                }
                panic!("reach exited ({status}) before saying {ready_marker:?}:\n{}", run.stderr());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reach watch never said {ready_marker:?}:\n{}",
                run.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until a JSON line printed so far satisfies `found` and returns it;
    /// the timeout names `what` and shows stdout and stderr.
    pub fn wait_for_json(
        &self,
        what: &str,
        found: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = self.stdout_text.lock().unwrap().clone();
            // The last line may be partial only if reach died mid-write; complete lines parse.
            if let Some(v) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| found(v))
            {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after 30 s waiting for {what} in reach's output:\n{text}\n--- stderr \
                 ---\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits (at most 30 s) until reach's stderr contains `needle`; the timeout names `what`.
    pub fn wait_for_stderr(&self, what: &str, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.stderr().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after 30 s waiting for {what} ({needle:?}) in reach's stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Every complete JSON line printed so far, in order.
    pub fn json_so_far(&self) -> Vec<serde_json::Value> {
        let text = self.stdout_text.lock().unwrap().clone();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits (at most 60 s) until `found` says the JSON lines printed so far are enough, and
    /// returns them; the timeout names `what` and shows stdout and stderr.
    pub fn wait_for_lines(
        &self,
        what: &str,
        found: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let lines = self.json_so_far();
            if found(&lines) {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after 60 s waiting for {what} in reach's output:\n{}\n--- stderr \
                 ---\n{}",
                self.stdout_text.lock().unwrap(),
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT, waits for exit (at most 120 s) and returns (exit code, JSON lines).
    pub fn stop(self) -> (Option<i32>, Vec<serde_json::Value>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.finish()
    }

    /// Waits for a `--duration` run to end and returns (exit code, JSON lines).
    pub fn finish(self) -> (Option<i32>, Vec<serde_json::Value>) {
        let (code, text, _) = self.finish_raw();
        (code, json_lines(&text))
    }

    /// Waits for the run to end by itself and returns (exit code, whole stdout, whole stderr).
    pub fn finish_raw(mut self) -> (Option<i32>, String, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("reach did not exit:\n{}", self.stderr());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if let Some(h) = self.stdout.take() {
            let _ = h.join();
        }
        let text = self.stdout_text.lock().unwrap().clone();
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        (status.code(), text, self.stderr())
    }
}

impl Drop for WatchRun {
    /// A test that panics before stopping its watch must not leave reach running (and
    /// attached) for the next test: SIGINT, so reach still detaches, then SIGKILL if it hangs.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a lab namespace: adds table `inet NAME` with an input chain (policy accept) holding
/// `tcp dport PORT drop`, and returns that rule's handle (what traces must point at).
pub fn nft_drop_rule(ns: &reach_agent::lab::NetNs, table: &str, port: u16) -> u64 {
    ns.run("nft", &["add", "table", "inet", table]).expect("nft add table");
    ns.run(
        "nft",
        &[&format!(
            "add chain inet {table} input {{ type filter hook input priority 0; policy accept; }}"
        )],
    )
    .expect("nft add chain");
    ns.run("nft", &[&format!("add rule inet {table} input tcp dport {port} drop")])
        .expect("nft add rule");
    let listing =
        ns.run("nft", &["-a", "list", "chain", "inet", table, "input"]).expect("nft list");
    listing
        .lines()
        .find(|l| l.contains(&format!("dport {port}")))
        .and_then(|l| l.rsplit("# handle ").next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("no handle for the port {port} rule in:\n{listing}"))
}

/// The "killed run" pattern of the stale-cleaner tests: re-runs test `name` of the current test
/// binary as a child with `env` set (its cue to build a lab, print one `REACH-LAB-REPORT ...`
/// line and wait to be killed) and returns the child with the words of that line.
pub fn spawn_killed_run_child(name: &str, env: &str) -> anyhow::Result<(KillOnDrop, Vec<String>)> {
    use std::io::{BufRead, BufReader};
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(env, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints `test NAME ... ` before the test's own output, on the same line.
        .find_map(|l| l.split_once("REACH-LAB-REPORT ").map(|(_, report)| report.to_string()))
        .ok_or_else(|| anyhow::anyhow!("the child run never reported its lab"))?;
    Ok((child, line.split_whitespace().map(str::to_string).collect()))
}

/// The rich rules the firewalld recordings add (step 03 of reach-record-fixtures) and the
/// rich-rule fuzzer starts from (the client is 10.77.0.2, its network 10.77.0.0/24).
pub const RICH_RULES: &[&str] = &[
    "rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset",
    "rule family=ipv4 source address=10.77.0.0/24 port port=9191 protocol=tcp log prefix=\"reach-9191 \" level=info drop",
    "rule family=ipv4 source address=10.77.0.0/24 port port=9292 protocol=tcp accept",
];

/// xorshift64*: a test's random inputs, reproducible from the seed it prints.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
