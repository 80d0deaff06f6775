//! An open handle on a network namespace, and doing things inside it.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so:
//! - closures run on a dedicated short-lived thread ([`NetNsFd::run_in`], through
//!   [`crate::netns::enter::in_netns_fd`]): the caller's thread never changes namespace, even if
//!   the closure panics;
//! - commands `setns` in the forked child before exec ([`NetNsFd::command`]), so nothing of
//!   ours (and no `ip netns exec` mount-namespace juggling) is involved.
//!
//! Commands hold only a weak reference to the handle's fd: a command spawned after its lab
//! namespace was torn down fails instead of silently resurrecting an unnamed namespace nobody
//! would ever clean up.
use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Weak},
};

use super::{
    error::{LabError, Result},
    exec::{self, LabChild},
    nsid::NsId,
    procs, tools,
};
use crate::netns::enter;

/// errno a child reports when its namespace handle is gone; mapped to
/// [`LabError::NamespaceGone`]. ESTALE cannot come out of setns or exec otherwise.
pub(crate) const NS_GONE_ERRNO: i32 = libc::ESTALE;

/// `_IO(0xb7, 0x3)`: which kind of namespace an nsfs fd is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open fd on a network namespace (any: a lab's, `/proc/PID/ns/net`, an `ip netns` name).
/// Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct NetNsFd {
    fd: Arc<OwnedFd>,
    id: NsId,
    path: PathBuf,
}

/// A handle that does not keep the namespace alive (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct WeakNetNs {
    fd: Weak<OwnedFd>,
    pub(crate) id: NsId,
    pub(crate) path: PathBuf,
}

impl NetNsFd {
    /// Opens a network namespace file: `/run/netns/NAME`, `/proc/PID/ns/net`, …
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| {
            LabError::io(format!("opening network namespace {}", path.display()), e)
        })?;
        // SAFETY: ioctl on an fd we own, no argument.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWNET {
            return Err(LabError::Invalid {
                what: "network namespace",
                detail: format!("{} is not a network namespace file", path.display()),
            });
        }
        let fd = OwnedFd::from(file);
        let id = NsId::of_fd(&fd)?;
        Ok(Self { fd: Arc::new(fd), id, path: path.to_path_buf() })
    }

    /// The namespace process `pid` is in.
    pub fn of_pid(pid: i32) -> Result<Self> {
        Self::open(format!("/proc/{pid}/ns/net"))
    }

    /// The calling thread's own namespace.
    pub fn current() -> Result<Self> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn id(&self) -> NsId {
        self.id
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whose namespace this is if it is the caller's own: the calling thread's, this process's,
    /// PID 1's or an ancestor process's (the shell, cargo, … : where this machine's real
    /// traffic flows). `None` for a foreign namespace such as a lab's.
    pub fn owner_if_own(&self) -> Result<Option<String>> {
        if self.id == NsId::current_thread()? {
            return Ok(Some("the calling thread's".into()));
        }
        if self.id == NsId::current_process()? {
            return Ok(Some("this process's".into()));
        }
        if NsId::init()? == Some(self.id) {
            return Ok(Some("PID 1's (this machine's)".into()));
        }
        Ok(procs::ancestors()
            .into_iter()
            .find(|&pid| NsId::of_pid(pid) == Some(self.id))
            .map(|pid| format!("ancestor process {pid}'s")))
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result; a panic in `f`
    /// is resumed in the caller. Sockets created in `f` belong to this namespace (and keep it
    /// alive while open). Only the network namespace changes: the filesystem is the caller's,
    /// so read `/proc/thread-self/net/…` (not `/proc/net`, which is the main thread's) and not
    /// `/sys/class/net`.
    pub fn run_in<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let id = self.id;
        let entered = enter::in_netns_fd(self.fd.as_fd(), &self.path.display().to_string(), || {
            let now = NsId::current_thread()?;
            if now != id {
                return Err(LabError::Invalid {
                    what: "namespace switch",
                    detail: format!("setns landed in {now}, expected {id}"),
                });
            }
            Ok(f())
        });
        entered.map_err(|e| {
            match e.get_ref().and_then(|e| e.downcast_ref::<enter::SetnsError>()) {
                Some(setns) => LabError::privileged(
                    format!("entering network namespace {}", self.path.display()),
                    setns.errno,
                ),
                None => LabError::io("starting a thread to enter a network namespace", e),
            }
        })?
    }

    /// Waits until a TCP socket listens on `port` here (a server started as a separate
    /// process: socat, a container's app), at most `within`.
    pub fn wait_tcp_listener(&self, port: u16, within: std::time::Duration) -> Result<()> {
        use crate::netns::sock_diag;
        let deadline = std::time::Instant::now() + within;
        loop {
            let listening = self
                .run_in(sock_diag::dump_listeners)?
                .map_err(|e| LabError::io("listing the listeners (sock_diag)", e))?;
            if listening.iter().any(|l| l.proto == sock_diag::Proto::Tcp && l.port == port) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("a listener on TCP port {port} in {}", self.path.display()),
                    after: within,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A `Command` that runs `program` inside this namespace (only the network namespace
    /// changes). `program` is used as given; [`NetNsFd::run`] and friends resolve names.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.weak().command(program)
    }

    /// Runs `program args…` inside the namespace within [`exec::DEFAULT_TIMEOUT`]; its stdout,
    /// or an error naming the command and carrying its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        self.weak().run(program, args)
    }

    /// Like [`NetNsFd::run`], but returns the raw output whatever the exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command(tools::resolve(program)?);
        cmd.args(args);
        exec::output_within(&mut cmd, exec::DEFAULT_TIMEOUT)
    }

    /// Starts `program args…` inside the namespace, stdout and stderr discarded; it is killed
    /// when the returned guard drops. For other stdio, build with [`NetNsFd::command`] and use
    /// [`LabChild::spawn`].
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<LabChild> {
        let mut cmd = self.command(tools::resolve(program)?);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        LabChild::spawn(&mut cmd)
    }

    /// `ip ARGS…` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        self.run(tools::IP.name, args)
    }

    /// `nft list ruleset` inside the namespace (read-only).
    pub fn nft_ruleset(&self) -> Result<String> {
        self.weak().nft_ruleset()
    }

    /// `nft -j list ruleset` inside the namespace, parsed.
    pub fn nft_ruleset_json(&self) -> Result<serde_json::Value> {
        self.weak().nft_ruleset_json()
    }

    /// Pids of the processes whose main thread is in this namespace.
    pub fn pids(&self) -> Vec<i32> {
        procs::pids_in(self.id)
    }

    /// The ifindex of interface `name` in this namespace.
    pub fn ifindex(&self, name: &str) -> Result<u32> {
        let name_owned = name.to_string();
        self.run_in(move || nix::net::if_::if_nametoindex(name_owned.as_str()))?.map_err(|e| {
            LabError::sys(format!("no interface {name} in {}", self.path.display()), e)
        })
    }

    pub(crate) fn weak(&self) -> WeakNetNs {
        WeakNetNs { fd: Arc::downgrade(&self.fd), id: self.id, path: self.path.clone() }
    }
}

impl AsFd for NetNsFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl WeakNetNs {
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.fd.clone();
        let enter = move || -> io::Result<()> {
            // Runs in the forked child: only async-signal-safe work (an atomic upgrade, a syscall).
            let Some(fd) = fd.upgrade() else {
                return Err(io::Error::from_raw_os_error(NS_GONE_ERRNO));
            };
            // SAFETY: setns on an fd kept open by the Arc.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: `enter` neither allocates nor takes locks.
        unsafe { cmd.pre_exec(enter) };
        cmd
    }

    pub(crate) fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(tools::resolve(program)?);
        cmd.args(args);
        exec::run_within(&mut cmd, exec::DEFAULT_TIMEOUT).map_err(|e| self.gone_or(e))
    }

    pub(crate) fn nft_ruleset(&self) -> Result<String> {
        self.run(tools::NFT.name, &["list", "ruleset"])
    }

    pub(crate) fn nft_ruleset_json(&self) -> Result<serde_json::Value> {
        let text = self.run(tools::NFT.name, &["-j", "list", "ruleset"])?;
        serde_json::from_str(&text).map_err(|e| LabError::Invalid {
            what: "`nft -j list ruleset` output",
            detail: e.to_string(),
        })
    }

    fn gone_or(&self, e: LabError) -> LabError {
        match e {
            LabError::NamespaceGone(_) => LabError::NamespaceGone(self.path.display().to_string()),
            other => other,
        }
    }
}
