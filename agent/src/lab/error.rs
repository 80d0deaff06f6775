//! The lab's error type.
//!
//! Every failure names what was being done and, for missing programs, what to install: the lab
//! runs in CI where "No such file or directory (os error 2)" alone would cost someone an hour.
use std::{io, process::ExitStatus, time::Duration};

/// Everything that can go wrong while building or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A program the lab drives is not installed.
    #[error("{tool} not installed ({}looked in $PATH and the sbin directories): run `cargo xtask setup`", package_hint(.package))]
    ToolMissing { tool: String, package: Option<&'static str> },

    /// The kernel refused an operation that needs root.
    #[error("{what} needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): {source}")]
    NotPrivileged { what: String, source: io::Error },

    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },

    /// A command ran but reported failure.
    #[error("`{command}` failed ({status}): {}", stderr_or_stdout(.stderr, .stdout))]
    CommandFailed { command: String, status: ExitStatus, stdout: String, stderr: String },

    /// A bounded wait ran out.
    #[error("timed out after {after:?}: {what}")]
    Timeout { what: String, after: Duration },

    /// The firewalld fixture was asked to run in the caller's (or the machine's) own network
    /// namespace, where it would replace the real firewall of this machine.
    #[error(
        "refusing to start firewalld in {target}: it is {whose} network namespace, not a lab namespace"
    )]
    OwnNamespace { target: String, whose: String },

    /// A namespace name, interface name, address or option the caller passed is unusable.
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },

    /// A namespace guard is gone (dropped) while something still refers to it.
    #[error("network namespace {0} no longer exists")]
    NamespaceGone(String),

    /// A daemon the lab started failed to come up or died.
    #[error("{daemon} {problem}{}", log_suffix(.log))]
    Daemon { daemon: &'static str, problem: String, log: String },
}

/// The lab's Result.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub(crate) fn sys(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Self::Io { context: context.into(), source: io::Error::from(errno) }
    }

    /// Like [`LabError::sys`], but EPERM becomes [`LabError::NotPrivileged`].
    pub(crate) fn privileged(what: impl Into<String>, errno: nix::errno::Errno) -> Self {
        let what = what.into();
        match errno {
            nix::errno::Errno::EPERM => {
                Self::NotPrivileged { what, source: io::Error::from(errno) }
            }
            _ => Self::sys(what, errno),
        }
    }
}

fn stderr_or_stdout(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let text = text.trim();
    if text.is_empty() { "no output".to_string() } else { text.to_string() }
}

fn package_hint(package: &Option<&'static str>) -> String {
    package.map(|p| format!("Debian package `{p}`; ")).unwrap_or_default()
}

fn log_suffix(log: &str) -> String {
    if log.trim().is_empty() { String::new() } else { format!("; its output:\n{}", log.trim_end()) }
}
