//! Running programs with bounded waits, and guards for long-running ones.
//!
//! Every command the lab runs has a deadline: a wedged `firewall-cmd` (D-Bus waits up to 25 s per
//! call, forever if a daemon is stopped) must fail a test, not hang CI. Children are made process
//! group leaders so a timeout or a guard can kill whatever they forked as well.
use std::{
    ffi::OsStr,
    io,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::{
        signal::{Signal, killpg},
        wait::{Id, WaitPidFlag, WaitStatus, waitid},
    },
    unistd::Pid,
};

use super::error::{LabError, Result};

/// Deadline of a lab command unless the caller picks one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a guard waits for a SIGKILLed child to be reaped before giving up on it.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// `program arg arg…` for messages.
pub fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion within `timeout`, capturing stdout and stderr (stdin is /dev/null).
/// A non-zero exit is not an error here; see [`checked`].
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = describe(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let child = cmd.spawn().map_err(|e| spawn_error(cmd, &desc, e))?;
    let pgid = Pid::from_raw(child.id() as i32);

    // wait_with_output drains both pipes (no pipe-full deadlock); a helper thread lets us bound it.
    let (tx, rx) = mpsc::channel();
    let waiter = thread::Builder::new().name("lab-cmd-wait".into()).spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Err(e) = waiter {
        // The closure (and the Child in it) is gone; kill the process so nothing runs on unseen.
        let _ = killpg(pgid, Signal::SIGKILL);
        return Err(LabError::io(format!("starting a waiter thread for `{desc}`"), e));
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| LabError::io(format!("waiting for `{desc}`"), e)),
        Err(_) => {
            // Still unreaped, so the group id cannot have been reused yet.
            let _ = killpg(pgid, Signal::SIGKILL);
            // Let the waiter reap it; a grandchild holding the pipes open could delay that, and
            // then the thread finishes on its own later.
            let _ = rx.recv_timeout(REAP_TIMEOUT);
            Err(LabError::Timeout { what: format!("`{desc}`"), after: timeout })
        }
    }
}

/// `Ok(stdout)` if the command succeeded, otherwise [`LabError::CommandFailed`] with its output.
pub fn checked(cmd_desc: impl Into<String>, output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(LabError::CommandFailed {
            command: cmd_desc.into(),
            status: output.status,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Runs `cmd` within `timeout` and returns its stdout, or an error carrying its stderr.
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let desc = describe(cmd);
    checked(desc, output_within(cmd, timeout)?)
}

/// Maps a spawn failure to the most useful error: a missing program names its package, and the
/// marker errno of a namespace that vanished (see `handle.rs`) says so.
pub(crate) fn spawn_error(cmd: &Command, desc: &str, e: io::Error) -> LabError {
    if e.raw_os_error() == Some(super::handle::NS_GONE_ERRNO) {
        return LabError::NamespaceGone(format!("(needed by `{desc}`)"));
    }
    if e.kind() == io::ErrorKind::NotFound {
        let program = Path::new(cmd.get_program());
        let name = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy();
        if let Err(missing @ LabError::ToolMissing { .. }) = super::tools::resolve(&name) {
            return missing;
        }
    }
    LabError::io(format!("starting `{desc}`"), e)
}

/// A running child process that is killed (with its process group) and reaped when dropped:
/// servers and daemons started for a test cannot outlive it, even when the test panics.
#[derive(Debug)]
pub struct LabChild {
    child: Child,
    desc: String,
    status: Option<ExitStatus>,
}

impl LabChild {
    /// Spawns `cmd` as the leader of a new process group, stdin from /dev/null. Stdout and
    /// stderr are whatever `cmd` says (inherited by default).
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        cmd.stdin(Stdio::null());
        Self::spawn_leader(cmd)
    }

    /// Like [`LabChild::spawn`], but stdin is a pipe whose write end the guard holds: a child
    /// that exits at EOF on stdin (`reach lab-server`) then dies with us even when we are
    /// SIGKILLed and no guard runs.
    pub fn spawn_tethered(cmd: &mut Command) -> Result<Self> {
        cmd.stdin(Stdio::piped());
        Self::spawn_leader(cmd)
    }

    fn spawn_leader(cmd: &mut Command) -> Result<Self> {
        let desc = describe(cmd);
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| spawn_error(cmd, &desc, e))?;
        Ok(Self { child, desc, status: None })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `program args…` as spawned.
    pub fn description(&self) -> &str {
        &self.desc
    }

    /// The underlying child, e.g. to take its piped stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| LabError::io(format!("checking on `{}`", self.desc), e))?;
        }
        Ok(self.status)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// SIGKILLs the process group and reaps the child.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // The leader is unreaped, so its pid is still its group's id: no chance of hitting a
        // recycled pid.
        let _ = killpg(self.gid(), Signal::SIGKILL);
        self.reap_within(REAP_TIMEOUT)
    }

    /// SIGTERM to the process group; after `grace`, SIGKILL. Reaps the child.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let _ = killpg(self.gid(), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        // WNOWAIT: see that the leader exited without reaping it, so the group id stays ours
        // for the final SIGKILL of anything it left behind.
        while Instant::now() < deadline {
            match waitid(
                Id::Pid(self.gid()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        let _ = killpg(self.gid(), Signal::SIGKILL);
        self.reap_within(REAP_TIMEOUT)
    }

    fn gid(&self) -> Pid {
        Pid::from_raw(self.pid())
    }

    fn reap_within(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("reaping `{}` (pid {})", self.desc, self.pid()),
                    after: timeout,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!("lab: could not stop `{}` (pid {}): {e}", self.desc, self.pid());
        }
    }
}
