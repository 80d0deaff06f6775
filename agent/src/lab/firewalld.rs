//! A real firewalld (the installed one, nftables backend) running inside a lab network
//! namespace.
//!
//! firewalld manages the netfilter state of the namespace it runs in, so inside a lab namespace
//! its nft tables live and die with that namespace. It also reads /etc/firewalld, writes /run and
//! /var/log and owns a name on the D-Bus system bus; the fixture gives it private ones of all of
//! those (see `fixture_dir.rs`, `mountns.rs`, `dbus.rs`). Its /etc/firewalld holds only the
//! fixture's own firewalld.conf, so it runs on the shipped defaults of /usr/lib/firewalld
//! whatever the host configured. Clients (`firewall-cmd`) run in the lab namespace too and reach
//! the daemon through the private bus's socket.
//!
//! The fixture refuses to start in the caller's own network namespace, PID 1's or any ancestor
//! process's: there firewalld would replace this machine's real firewall (and could cut its
//! control connection).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use super::{
    dbus::{self, BusPaths},
    error::{LabError, Result},
    exec::{self, LabChild},
    fixture_dir::{self, ETC_FIREWALLD, Layout, PrivateDir},
    handle::{NetNsFd, WeakNetNs},
    mountns::{self, Bind},
    nsid::NsId,
    tools,
};

/// Options of [`Firewalld::start_with`].
#[derive(Debug, Clone)]
pub struct FirewalldOptions {
    /// Bound on waiting for `firewall-cmd --state` to say `running`.
    pub ready_timeout: Duration,
    /// Bound on each `firewall-cmd` run through [`Firewalld::cmd`].
    pub command_timeout: Duration,
    /// `KEY=VALUE` settings of the fixture's firewalld.conf, replacing the values the fixture
    /// writes by default (DefaultZone=public, FirewallBackend=nftables, LogDenied=off, …) or
    /// added to them. None by default.
    pub conf: Vec<(String, String)>,
}

impl Default for FirewalldOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(60),
            conf: Vec::new(),
        }
    }
}

/// Resident memory of the fixture's daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureMemory {
    pub firewalld_rss_kib: u64,
    pub dbus_rss_kib: u64,
}

/// A running firewalld with its private bus. Dropping it kills both daemons and deletes the
/// private directory; firewalld's nft tables stay in the lab namespace until that is removed.
#[derive(Debug)]
pub struct Firewalld {
    ns: WeakNetNs,
    firewall_cmd: PathBuf,
    bus: BusPaths,
    firewalld: LabChild,
    dbus: LabChild,
    dir: Option<PrivateDir>,
    firewalld_log: PathBuf,
    ready_in: Duration,
    opts: FirewalldOptions,
}

impl Firewalld {
    /// Where firewalld's package puts the zones it ships (its `USR_LIB_FIREWALLD/zones`).
    pub const SHIPPED_ZONES: &str = "/usr/lib/firewalld/zones";

    /// The installed firewalld's version as its own Python package states it
    /// (`firewall.config.VERSION`), asked of the interpreter firewalld's `#!` line names, with the
    /// environment the fixture gives the daemon: independent of the D-Bus API whose answers tests
    /// compare with it.
    pub fn installed_version() -> Result<String> {
        let firewalld = tools::FIREWALLD.path()?;
        let script = fs::read_to_string(&firewalld)
            .map_err(|e| LabError::io(format!("reading {}", firewalld.display()), e))?;
        let interpreter = script
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| LabError::Invalid {
                what: "firewalld script",
                detail: format!("{} has no #! line naming its interpreter", firewalld.display()),
            })?
            .to_string();
        let mut cmd = Command::new(&interpreter);
        cmd.args(["-c", "import firewall.config as c; print(c.VERSION)"])
            .env_clear()
            .env("PATH", tools::daemon_path())
            .env("LC_ALL", "C.UTF-8");
        let version = exec::run_within(&mut cmd, Duration::from_secs(30))?.trim().to_string();
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(LabError::Invalid {
                what: "firewalld version",
                detail: format!("{interpreter} printed {version:?} for firewall.config.VERSION"),
            });
        }
        Ok(version)
    }

    /// Starts firewalld in `ns` with default options and waits until it is running.
    pub fn start(ns: &NetNsFd) -> Result<Self> {
        Self::start_with(ns, FirewalldOptions::default())
    }

    /// Starts firewalld in `ns` and waits (bounded) until `firewall-cmd --state` says running.
    pub fn start_with(ns: &NetNsFd, opts: FirewalldOptions) -> Result<Self> {
        if let Some(whose) = ns.owner_if_own()? {
            return Err(LabError::OwnNamespace {
                target: format!("{} ({})", ns.path().display(), ns.id()),
                whose,
            });
        }
        let firewalld = tools::FIREWALLD.path()?;
        let firewall_cmd = tools::FIREWALL_CMD.path()?;
        let dbus_daemon = tools::DBUS_DAEMON.path()?;
        tools::NFT.path()?;
        // The shipped zones are all the configuration the daemon gets besides firewalld.conf.
        if !Path::new(Self::SHIPPED_ZONES).is_dir() {
            return Err(LabError::ToolMissing {
                tool: format!("firewalld's shipped zones ({})", Self::SHIPPED_ZONES),
                package: Some("firewalld"),
            });
        }

        let dir = fixture_dir::private_dir()?;
        let layout = fixture_dir::prepare(dir.path(), &opts.conf)?;
        let started = Instant::now();
        let (dbus, firewalld) = spawn_daemons(ns, &layout, &dbus_daemon, &firewalld)?;
        let mut fixture = Self {
            ns: ns.weak(),
            firewall_cmd,
            bus: layout.bus,
            firewalld,
            dbus,
            dir: Some(dir),
            firewalld_log: layout.firewalld_log,
            ready_in: Duration::ZERO,
            opts,
        };
        // On failure, dropping `fixture` kills both daemons and deletes the directory.
        fixture.wait_running()?;
        fixture.ready_in = started.elapsed();
        tracing::debug!(
            "lab: firewalld running in {} after {:?}",
            ns.path().display(),
            fixture.ready_in
        );
        Ok(fixture)
    }

    /// `firewall-cmd ARGS…` against this firewalld: its stdout, or an error with its stderr.
    /// E.g. `fw.cmd(&["--zone=public", "--add-port=8080/tcp"])`.
    pub fn cmd(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(args);
        exec::run_within(&mut cmd, self.opts.command_timeout)
    }

    /// Like [`Firewalld::cmd`], but the raw output whatever the exit status (firewall-cmd
    /// reports e.g. `--query-*` answers through it).
    pub fn cmd_output(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command();
        cmd.args(args);
        exec::output_within(&mut cmd, self.opts.command_timeout)
    }

    /// A `firewall-cmd` command set up for this firewalld (lab namespace, private bus, C locale).
    pub fn command(&self) -> Command {
        let mut cmd = self.ns.command(&self.firewall_cmd);
        cmd.env_clear()
            .env("PATH", tools::daemon_path())
            .env("LC_ALL", "C.UTF-8")
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus.address());
        cmd
    }

    /// What `firewall-cmd --state` prints (`running`, `not running`, …).
    pub fn state(&self) -> Result<String> {
        let out = self.cmd_output(&["--state"])?;
        let text = if out.stdout.is_empty() { &out.stderr } else { &out.stdout };
        Ok(String::from_utf8_lossy(text).trim().to_string())
    }

    /// `nft list ruleset` of the lab namespace.
    pub fn nft_ruleset(&self) -> Result<String> {
        self.ns.nft_ruleset()
    }

    /// `nft -j list ruleset` of the lab namespace, parsed.
    pub fn nft_ruleset_json(&self) -> Result<serde_json::Value> {
        self.ns.nft_ruleset_json()
    }

    /// The value for DBUS_SYSTEM_BUS_ADDRESS that reaches this firewalld.
    pub fn bus_address(&self) -> String {
        self.bus.address()
    }

    /// The fixture's private /etc/firewalld (a host path: permanent configuration lands here).
    /// It starts with only the fixture's firewalld.conf.
    pub fn config_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("etc"))
    }

    /// Time from spawning the daemons to `firewall-cmd --state` saying running.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// Pids of (firewalld, dbus-daemon).
    pub fn pids(&self) -> (i32, i32) {
        (self.firewalld.pid(), self.dbus.pid())
    }

    /// Resident memory of both daemons.
    pub fn memory(&self) -> Result<FixtureMemory> {
        Ok(FixtureMemory {
            firewalld_rss_kib: rss_kib(self.firewalld.pid())?,
            dbus_rss_kib: rss_kib(self.dbus.pid())?,
        })
    }

    /// firewalld's own output so far (its last few KiB).
    pub fn log(&self) -> String {
        dbus::read_log(&self.firewalld_log)
    }

    /// The namespace it runs in.
    pub fn netns_id(&self) -> NsId {
        self.ns.id
    }

    /// Stops gracefully: SIGTERM (firewalld then removes its rules, CleanupOnExit), SIGKILL
    /// after a grace period; then deletes the private directory, reporting what Drop would
    /// only log.
    pub fn stop(mut self) -> Result<()> {
        self.firewalld.terminate(Duration::from_secs(10))?;
        self.dbus.terminate(Duration::from_secs(2))?;
        match self.dir.take() {
            Some(dir) => {
                let path = dir.path().display().to_string();
                dir.close().map_err(|e| LabError::io(format!("deleting {path}"), e))
            }
            None => Ok(()),
        }
    }

    fn wait_running(&mut self) -> Result<()> {
        let timeout = self.opts.ready_timeout;
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.firewalld.try_wait()? {
                return Err(LabError::Daemon {
                    daemon: "firewalld",
                    problem: format!("exited during startup ({status})"),
                    log: self.log(),
                });
            }
            if let Some(status) = self.dbus.try_wait()? {
                return Err(LabError::Daemon {
                    daemon: "dbus-daemon",
                    problem: format!("exited during firewalld's startup ({status})"),
                    log: dbus::read_log(&self.bus.log),
                });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut probe = self.command();
            probe.arg("--state");
            match exec::output_within(
                &mut probe,
                remaining.clamp(Duration::from_secs(1), Duration::from_secs(10)),
            ) {
                Ok(out)
                    if out.status.success()
                        && String::from_utf8_lossy(&out.stdout).trim() == "running" =>
                {
                    return Ok(());
                }
                Ok(out) => {
                    last = format!(
                        "{} {}",
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                }
                Err(LabError::Timeout { .. }) => last = "firewall-cmd --state timed out".into(),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(LabError::Daemon {
                    daemon: "firewalld",
                    problem: format!(
                        "not running after {timeout:?} (last `firewall-cmd --state`: {})",
                        last.trim()
                    ),
                    log: self.log(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        // SIGKILL: the rules firewalld would remove on SIGTERM die with the lab namespace.
        for daemon in [&mut self.firewalld, &mut self.dbus] {
            if let Err(e) = daemon.kill() {
                tracing::warn!("lab: stopping {}: {e}", daemon.description());
            }
        }
        // Dropping the directory guard deletes it.
        self.dir = None;
    }
}

/// Spawns dbus-daemon, then firewalld, from a `run_in` thread that has entered the lab network
/// namespace and then a private mount namespace: the daemons inherit both, and the thread exits
/// afterwards, so the caller's thread changes nothing.
fn spawn_daemons(
    ns: &NetNsFd,
    layout: &Layout,
    dbus_daemon: &Path,
    firewalld: &Path,
) -> Result<(LabChild, LabChild)> {
    let target = ns.id();
    ns.run_in(|| -> Result<(LabChild, LabChild)> {
        // Defence in depth: prove where this thread is before starting a firewall.
        let here = NsId::current_thread()?;
        if here != target || here == NsId::current_process()? || NsId::init()? == Some(here) {
            return Err(LabError::OwnNamespace {
                target: format!("{here} (expected {target})"),
                whose: "not the lab's".into(),
            });
        }
        mountns::enter_private(&[
            Bind { source: layout.etc.clone(), target: ETC_FIREWALLD },
            Bind { source: layout.run.clone(), target: "/run" },
            Bind { source: layout.log.clone(), target: "/var/log" },
        ])?;
        let bus = dbus::start(dbus_daemon, &layout.bus)?;
        let log = fs::File::create(&layout.firewalld_log)
            .map_err(|e| LabError::io(format!("creating {}", layout.firewalld_log.display()), e))?;
        let log2 =
            log.try_clone().map_err(|e| LabError::io("duplicating the firewalld log fd", e))?;
        let mut cmd = Command::new(firewalld);
        cmd.args(["--nofork", "--nopid", "--log-target", "console"])
            .env_clear()
            .env("PATH", tools::daemon_path())
            .env("LC_ALL", "C.UTF-8")
            .env("DBUS_SYSTEM_BUS_ADDRESS", layout.bus.address())
            .stdout(log)
            .stderr(log2);
        let daemon = LabChild::spawn(&mut cmd)?;
        Ok((bus, daemon))
    })?
}

fn rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&path).map_err(|e| LabError::io(format!("reading {path}"), e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| LabError::Invalid {
            what: "process status",
            detail: format!("no VmRSS in {path}"),
        })
}
