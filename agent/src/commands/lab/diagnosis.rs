//! Running the real `reach why … --json` for a scenario: start it, wait until it says it is
//! attached ("waiting for a SYN"), let the client try, and collect its one JSON object.
//!
//! It is the same binary a user runs, started from this (the root) namespace with `--netns`, so
//! the lab proves the command itself, not a library shortcut around it.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use crate::lab::LabChild;

/// The line `reach why` prints on stderr once everything is attached.
const READY: &str = "waiting for a SYN";
/// How long attaching may take (loading the BPF objects, tracing set-up): 1–4 s alone, but
/// 10–20 s were seen with three attaching at once on a 2-core machine busy with builds.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// `reach why --timeout`: the attempt comes right after READY, so this is only a bound.
const WHY_TIMEOUT_S: &str = "10";
/// How long it may take to end after the attempt (it settles within ~3.5 s, then detaches).
const FINISH_TIMEOUT: Duration = Duration::from_secs(20);
/// SIGTERM before SIGKILL when it has to be stopped: reach detaches on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `reach why` answered.
#[derive(Debug)]
pub struct Answer {
    pub exit_code: i32,
    pub json: serde_json::Value,
}

/// A running `reach why`, stopped (SIGTERM, so it detaches) if dropped before it ended.
pub struct WhyRun {
    child: LabChild,
    stdout: Option<JoinHandle<String>>,
    stderr: Arc<Mutex<String>>,
}

impl WhyRun {
    /// `exe why ADDR:PORT --netns NETNS --iface IFACE --timeout 10 --json [--firewalld-bus B]`,
    /// returned once attached. `cancel` ends the wait early (Ctrl-C on the lab).
    pub fn start(
        exe: &Path,
        target: &str,
        netns: &str,
        iface: &str,
        firewalld_bus: Option<&str>,
        cancel: &AtomicBool,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.args(["why", target, "--netns", netns, "--iface", iface]);
        cmd.args(["--timeout", WHY_TIMEOUT_S, "--json"]);
        if let Some(bus) = firewalld_bus {
            cmd.args(["--firewalld-bus", bus]);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = LabChild::spawn(&mut cmd)?;
        let mut out = child.child_mut().stdout.take().context("reach why stdout")?;
        let err = child.child_mut().stderr.take().context("reach why stderr")?;

        // Both pipes are drained on their own threads, so neither can fill up and block it.
        let stdout = thread::Builder::new().name("why-stdout".into()).spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = stderr.clone();
        thread::Builder::new().name("why-stderr".into()).spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let ready = line.contains(READY);
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
                drop(s);
                if ready {
                    let _ = ready_tx.send(true);
                }
            }
            // EOF before the marker: it ended without attaching.
            let _ = ready_tx.send(false);
        })?;

        let mut run = Self { child, stdout: Some(stdout), stderr };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if cancel.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(true) => return Ok(run),
                Ok(false) => {
                    let status = run.child.kill().map(|s| s.to_string()).unwrap_or_default();
                    bail!("`reach why` ended before attaching ({status}):\n{}", run.stderr())
                }
                Err(_) if Instant::now() >= deadline => {
                    run.stop();
                    bail!(
                        "`reach why` did not say {READY:?} within {READY_TIMEOUT:?}:\n{}",
                        run.stderr()
                    )
                }
                Err(_) => {}
            }
        }
    }

    /// Waits for it to end by itself and returns its answer.
    pub fn finish(mut self, cancel: &AtomicBool) -> anyhow::Result<Answer> {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if cancel.load(Ordering::Relaxed) {
                self.stop();
                bail!("interrupted");
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!("`reach why` did not end within {FINISH_TIMEOUT:?}:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        };
        let out = self.stdout.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let exit_code = status.code().unwrap_or(-1);
        let json = serde_json::from_str(&out).map_err(|e| {
            anyhow!(
                "`reach why` exited with {status} without one JSON object ({e}):\n{out}\n{}",
                self.stderr()
            )
        })?;
        Ok(Answer { exit_code, json })
    }

    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop(&mut self) {
        if let Err(e) = self.child.terminate(STOP_GRACE) {
            eprintln!("lab: stopping `reach why`: {e}");
        }
    }
}

impl Drop for WhyRun {
    fn drop(&mut self) {
        if self.child.is_running() {
            self.stop();
        }
    }
}
