//! A real firewalld (nftables backend) running inside a lab network namespace: the installed
//! one, or the one of a Debian root directory ([`FirewalldBuild`], e.g. firewalld 2.3.1 from
//! the root `cargo xtask setup` caches), whose programs then run chrooted there (`chroot.rs`).
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
    chroot::{self, Chroot},
    dbus::{self, BusPaths},
    error::{LabError, Result},
    exec::{self, LabChild},
    firewalld_build::{FirewalldBuild, Programs},
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
    /// Which firewalld to run: the host's package (the default) or the one in a Debian root,
    /// e.g. `FirewalldOptions { build: FirewalldBuild::root(dir), ..Default::default() }`.
    pub build: FirewalldBuild,
}

impl Default for FirewalldOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(60),
            conf: Vec::new(),
            build: FirewalldBuild::Host,
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
    programs: Programs,
    /// How commands enter the root (its mount namespace, then chroot); None for the host build.
    chroot: Option<Chroot>,
    version: String,
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
        FirewalldBuild::Host.version()
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
        // The shipped zones are all the configuration the daemon gets besides firewalld.conf.
        let programs = opts.build.programs()?;
        let version = opts.build.version()?;

        let dir = fixture_dir::private_dir()?;
        let layout = fixture_dir::prepare(dir.path(), &opts.conf)?;
        let started = Instant::now();
        let (dbus, firewalld) = spawn_daemons(ns, &layout, &programs, opts.build.root_dir())?;
        // Later commands join the daemons' mount namespace (where the root has its /proc, /run,
        // … mounted) before entering the root.
        let chroot = match opts.build.root_dir() {
            Some(root) => Some(Chroot::new(root, Some(Chroot::mount_ns_of(dbus.pid())?))?),
            None => None,
        };
        let mut fixture = Self {
            ns: ns.weak(),
            programs,
            chroot,
            version,
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
            "lab: firewalld {} ({}) running in {} after {:?}",
            fixture.version,
            fixture.opts.build,
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

    /// A `firewall-cmd` command set up for this firewalld (lab namespace, private bus, C locale;
    /// for a root build, the root's own firewall-cmd, chrooted in the daemons' mount namespace).
    pub fn command(&self) -> Command {
        self.program(&self.programs.firewall_cmd)
    }

    /// `program` (a path as this build's processes see it) run like `firewall-cmd`.
    fn program(&self, program: &Path) -> Command {
        let mut cmd = self.ns.command(program);
        if let Some(chroot) = &self.chroot {
            chroot.apply(&mut cmd);
        }
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

    /// `nft list ruleset` of the lab namespace, listed by this build's own nft (the root's for a
    /// root build): the text a machine running this firewalld shows, as the recorded fixtures
    /// keep it. (The ruleset in the kernel is the same whoever lists it; only the listing's
    /// spelling can differ between nft versions.)
    pub fn nft_ruleset(&self) -> Result<String> {
        self.nft(&["list", "ruleset"])
    }

    /// `nft -j list ruleset` of the lab namespace (this build's nft), parsed.
    pub fn nft_ruleset_json(&self) -> Result<serde_json::Value> {
        let text = self.nft(&["-j", "list", "ruleset"])?;
        serde_json::from_str(&text).map_err(|e| LabError::Invalid {
            what: "`nft -j list ruleset` output",
            detail: e.to_string(),
        })
    }

    /// `nft ARGS…` of this build (the root's nft for a root build) in the lab namespace.
    pub fn nft(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.nft_command();
        cmd.args(args);
        exec::run_within(&mut cmd, self.opts.command_timeout)
    }

    /// An `nft` command of this build set up like [`Firewalld::command`], for long-running
    /// uses such as `nft monitor trace`.
    pub fn nft_command(&self) -> Command {
        self.program(&self.programs.nft)
    }

    /// This firewalld's version (`firewall.config.VERSION`, e.g. `1.3.3`, `2.3.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Which firewalld this is.
    pub fn build(&self) -> &FirewalldBuild {
        &self.opts.build
    }

    /// Host path of the zones this firewalld ships.
    pub fn shipped_zones(&self) -> PathBuf {
        self.opts.build.shipped_zones()
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

    /// Restarts firewalld as `systemctl restart` does: SIGTERM (it removes its rules,
    /// CleanupOnExit; SIGKILL after a grace period), then a new daemon on the same private bus,
    /// in the daemons' private mount namespace, with the same configuration; waits until it is
    /// running. The bus stays up, so its clients see the name change owner twice (lost, then
    /// taken). Not SIGKILL: a killed 1.3.3's rules stay, and the new daemon adds its own beside
    /// them (seen here: a rich rule removed from the permanent configuration still matched).
    pub fn restart(&mut self) -> Result<()> {
        self.firewalld.terminate(Duration::from_secs(10))?;
        let mut cmd = self.ns.command(&self.programs.firewalld);
        // A root build's commands already enter the daemons' mount namespace; the host build's
        // daemon must too (its /etc/firewalld, /run and /var/log are the private ones).
        let enter = match &self.chroot {
            Some(chroot) => chroot.clone(),
            None => Chroot::new(Path::new("/"), Some(Chroot::mount_ns_of(self.dbus.pid())?))?,
        };
        enter.apply(&mut cmd);
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.firewalld_log)
            .map_err(|e| LabError::io(format!("opening {}", self.firewalld_log.display()), e))?;
        let log2 =
            log.try_clone().map_err(|e| LabError::io("duplicating the firewalld log fd", e))?;
        cmd.args(["--nofork", "--nopid", "--log-target", "console"])
            .env_clear()
            .env("PATH", tools::daemon_path())
            .env("LC_ALL", "C.UTF-8")
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus.address())
            .stdout(log)
            .stderr(log2);
        self.firewalld = LabChild::spawn(&mut cmd)?;
        self.wait_running()
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
    programs: &Programs,
    root: Option<&Path>,
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
        let chroot = match root {
            // The host's own directories stay as they are; the root's get the private ones.
            Some(root) => {
                mountns::enter_private(&[])?;
                chroot::mount_in_root(root, layout)?;
                Some(Chroot::new(root, None)?)
            }
            None => {
                mountns::enter_private(&[
                    Bind { source: layout.etc.clone(), target: ETC_FIREWALLD.into() },
                    Bind { source: layout.run.clone(), target: "/run".into() },
                    Bind { source: layout.log.clone(), target: "/var/log".into() },
                ])?;
                None
            }
        };
        let bus = dbus::start(&programs.dbus_daemon, &layout.bus, chroot.as_ref())?;
        let log = fs::File::create(&layout.firewalld_log)
            .map_err(|e| LabError::io(format!("creating {}", layout.firewalld_log.display()), e))?;
        let log2 =
            log.try_clone().map_err(|e| LabError::io("duplicating the firewalld log fd", e))?;
        let mut cmd = Command::new(&programs.firewalld);
        if let Some(chroot) = &chroot {
            chroot.apply(&mut cmd);
        }
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
