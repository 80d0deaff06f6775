//! The processes the end-to-end benchmarks start: guards that collect their output line by line
//! (with the time each line arrived), wait for the line that says they are ready, stop them with
//! a signal and read their CPU time and memory from /proc. A guard that drops kills the process
//! and its process group ([`LabChild`]).
use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use reach_agent::lab::LabChild;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A line of output and when it was read.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub stream: Stream,
    pub text: String,
}

/// A running benchmark process.
pub struct Proc {
    child: LabChild,
    pub name: String,
    pub spawned: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// How a [`Proc`] ended.
#[derive(Debug)]
pub struct Stopped {
    pub status: Option<ExitStatus>,
    /// It did not exit on the signal within the grace period and was killed.
    pub killed: bool,
    /// utime + stime of the whole process, read when it had exited but was not reaped yet.
    pub cpu_s: Option<f64>,
    pub lines: Vec<Line>,
}

/// CPU time and memory of a running process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Proc {
    /// Spawns `cmd` (stdin /dev/null, stdout and stderr read line by line) as the leader of its
    /// own process group.
    pub fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = LabChild::spawn(&mut cmd).with_context(|| format!("starting {name}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out = child.child_mut().stdout.take().context("piped stdout")?;
        readers.push(reader(out, Stream::Stdout, lines.clone()));
        let err = child.child_mut().stderr.take().context("piped stderr")?;
        readers.push(reader(err, Stream::Stderr, lines.clone()));
        Ok(Proc { child, name: name.to_string(), spawned, lines, readers })
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Waits (at most `timeout`) for a line containing `marker` and returns when it was read;
    /// fails with the output so far if the process exits first or the time runs out.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.text.contains(marker)) {
                return Ok(l.at);
            }
            if !self.child.is_running() {
                // Let the readers catch the last lines.
                thread::sleep(Duration::from_millis(50));
                if let Some(l) = self.lines().into_iter().find(|l| l.text.contains(marker)) {
                    return Ok(l.at);
                }
                bail!("{} exited before saying {marker:?}:\n{}", self.name, self.output());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not say {marker:?} within {timeout:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The lines read so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last 40 lines so far, for error messages.
    pub fn output(&self) -> String {
        let lines = self.lines();
        let skip = lines.len().saturating_sub(40);
        lines.iter().skip(skip).map(|l| format!("  {}\n", l.text)).collect()
    }

    /// CPU seconds, VmRSS and VmHWM now.
    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status of {}", self.name))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            status_kib(&status, key)
                .with_context(|| format!("no {key} in /proc/{pid}/status of {}", self.name))
        };
        Ok(ProcStats { cpu_s: cpu_seconds(pid)?, rss_kib: kib("VmRSS")?, hwm_kib: kib("VmHWM")? })
    }

    /// Sends `signal` to the process and waits (at most `grace`) until it has exited; then reads
    /// its CPU time (it is not reaped yet), reaps it and reads its output to the end. After
    /// `grace`, the whole process group is killed.
    pub fn stop(mut self, signal: i32, grace: Duration) -> anyhow::Result<Stopped> {
        let pid = self.pid();
        let mut cpu_s = None;
        let mut killed = false;
        if self.child.is_running() {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(pid, signal) };
            let deadline = Instant::now() + grace;
            loop {
                if exited_unreaped(pid) {
                    cpu_s = cpu_seconds(pid).ok();
                    break;
                }
                if Instant::now() > deadline {
                    killed = true;
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        // Exited: this reaps it; still running after the grace: SIGKILL to the group first.
        let status = self.child.kill().ok();
        // The pipes close when the process (and its group) is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
        Ok(Stopped { status, killed, cpu_s, lines: self.lines() })
    }
}

fn reader(
    stream: impl Read + Send + 'static,
    which: Stream,
    sink: Arc<Mutex<Vec<Line>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for text in BufReader::new(stream).lines().map_while(Result::ok) {
            let line = Line { at: Instant::now(), stream: which, text };
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    })
}

/// Whether our child `pid` has exited (a zombie), without reaping it.
fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our own child with WNOWAIT leaves it unreaped.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is set by waitid when a child changed state (0 otherwise, zeroed above).
    r == 0 && unsafe { info.si_pid() } == pid
}

/// utime + stime of process `pid` (all its threads, live or exited) from /proc/PID/stat.
pub fn cpu_seconds(pid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    stat_cpu_ticks(&stat).map(|t| t as f64 / hz).context("malformed /proc/PID/stat")
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name in parentheses
/// may contain spaces, so fields are counted after its closing parenthesis.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `VmRSS:   12345 kB` → 12345.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_figures_are_parsed() {
        let stat = "4242 (reach watch) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 12 0 0 20 0 9 0";
        assert_eq!(stat_cpu_ticks(stat), Some(49));
        let status = "Name:\treach\nVmHWM:\t   21504 kB\nVmRSS:\t   19876 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(19876));
        assert_eq!(status_kib(status, "VmHWM"), Some(21504));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
