//! Finding the programs the lab drives, with an install hint when one is missing.
//!
//! Tests run as root from `cargo test`, where $PATH may lack the sbin directories (`ip`, `nft`
//! and `firewalld` live in /usr/sbin on Debian), so those are searched too.
use std::{
    env,
    ffi::OsStr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use super::error::{LabError, Result};

/// A program and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub const IP: Tool = Tool { name: "ip", package: "iproute2" };
pub const NFT: Tool = Tool { name: "nft", package: "nftables" };
pub const FIREWALLD: Tool = Tool { name: "firewalld", package: "firewalld" };
pub const FIREWALL_CMD: Tool = Tool { name: "firewall-cmd", package: "firewalld" };
pub const DBUS_DAEMON: Tool = Tool { name: "dbus-daemon", package: "dbus-daemon" };

const KNOWN: &[Tool] = &[IP, NFT, FIREWALLD, FIREWALL_CMD, DBUS_DAEMON];

/// Searched after $PATH.
const FALLBACK_DIRS: &[&str] =
    &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

impl Tool {
    /// Absolute path of the program, or [`LabError::ToolMissing`].
    pub fn path(&self) -> Result<PathBuf> {
        search(OsStr::new(self.name)).ok_or_else(|| LabError::ToolMissing {
            tool: self.name.to_string(),
            package: Some(self.package),
        })
    }
}

/// Resolves a program name the way [`Tool::path`] does; a name containing `/` is used as is.
/// The install hint comes from the table of known tools.
pub fn resolve(program: &str) -> Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let package = KNOWN.iter().find(|t| t.name == program).map(|t| t.package);
    search(OsStr::new(program))
        .ok_or_else(|| LabError::ToolMissing { tool: program.to_string(), package })
}

fn search(name: &OsStr) -> Option<PathBuf> {
    let path_dirs =
        env::var_os("PATH").map(|p| env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs
        .iter()
        .map(PathBuf::as_path)
        .chain(FALLBACK_DIRS.iter().map(Path::new))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A $PATH for the lab's daemons and commands: ours may lack the sbin directories.
pub(crate) fn daemon_path() -> &'static str {
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
