//! Which firewalld the fixture runs: the host's package, or the one installed in a Debian root
//! directory (e.g. firewalld 2.3.1 from trixie, built and cached by `cargo xtask setup`).
//!
//! Different firewalld versions generate different nft chains (1.x: `filter_IN_<zone>` reached
//! from `filter_INPUT_ZONES`; 2.x: the zone target decided in `filter_INPUT_POLICIES`, policies
//! in `filter_IN_policy_<name>…`), and one machine ships only one of them. A root directory
//! holding a whole other Debian release lets the fixture run its daemons chrooted there (see
//! `chroot.rs`) beside the host's.
use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::{
    chroot::Chroot,
    error::{LabError, Result},
    exec, tools,
};

/// Where a firewalld package keeps its shipped zones, relative to the filesystem root it is
/// installed in (its `USR_LIB_FIREWALLD/zones`).
const SHIPPED_ZONES: &str = "usr/lib/firewalld/zones";

/// Program paths inside a root directory (Debian's merged /usr layout).
const ROOT_FIREWALLD: &str = "/usr/sbin/firewalld";
const ROOT_FIREWALL_CMD: &str = "/usr/bin/firewall-cmd";
const ROOT_DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";
const ROOT_NFT: &str = "/usr/sbin/nft";
const ROOT_PYTHON: &str = "/usr/bin/python3";

/// The question every firewalld answers the same way (`firewalld --version` does not exist in
/// 2.x): its Python package's own version constant.
const VERSION_SCRIPT: &str = "import firewall.config as c; print(c.VERSION)";

/// Which firewalld a fixture runs. `FirewalldBuild::host()` (the default) is the installed
/// package; `FirewalldBuild::root(dir)` is the firewalld installed inside the Debian root `dir`
/// (debootstrapped with firewalld, nftables, dbus, python3-nftables), whose daemons and
/// `firewall-cmd` then run chrooted there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FirewalldBuild {
    /// The host's firewalld package (found on $PATH and the sbin directories).
    #[default]
    Host,
    /// The firewalld installed in this root directory.
    Root(PathBuf),
}

/// Absolute program paths of one build, as its processes see them (inside the root for
/// [`FirewalldBuild::Root`]).
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub(crate) firewalld: PathBuf,
    pub(crate) firewall_cmd: PathBuf,
    pub(crate) dbus_daemon: PathBuf,
    pub(crate) nft: PathBuf,
}

impl FirewalldBuild {
    /// The host's firewalld package.
    pub fn host() -> Self {
        Self::Host
    }

    /// The firewalld installed in the Debian root `dir`.
    pub fn root(dir: impl Into<PathBuf>) -> Self {
        Self::Root(dir.into())
    }

    /// The root directory, None for the host's package.
    pub fn root_dir(&self) -> Option<&Path> {
        match self {
            Self::Host => None,
            Self::Root(dir) => Some(dir),
        }
    }

    /// Host path of the zones this firewalld ships (`/usr/lib/firewalld/zones`, inside the
    /// root for a root build): with firewalld.conf, all the configuration a fixture gets.
    pub fn shipped_zones(&self) -> PathBuf {
        match self {
            Self::Host => Path::new("/").join(SHIPPED_ZONES),
            Self::Root(dir) => dir.join(SHIPPED_ZONES),
        }
    }

    /// This firewalld's version as its own Python package states it (`firewall.config.VERSION`),
    /// asked of its own interpreter (chrooted for a root build): independent of the D-Bus API
    /// whose answers tests compare with it.
    pub fn version(&self) -> Result<String> {
        let (interpreter, mut cmd) = match self {
            Self::Host => {
                let interpreter = host_interpreter()?;
                (interpreter.clone(), Command::new(interpreter))
            }
            Self::Root(dir) => {
                self.programs()?;
                let mut cmd = Command::new(ROOT_PYTHON);
                Chroot::new(dir, None)?.apply(&mut cmd);
                (format!("{ROOT_PYTHON} in {}", dir.display()), cmd)
            }
        };
        cmd.args(["-c", VERSION_SCRIPT])
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

    /// The programs the fixture runs, checked to exist (with the shipped zones).
    pub(crate) fn programs(&self) -> Result<Programs> {
        let programs = match self {
            Self::Host => Programs {
                firewalld: tools::FIREWALLD.path()?,
                firewall_cmd: tools::FIREWALL_CMD.path()?,
                dbus_daemon: tools::DBUS_DAEMON.path()?,
                nft: tools::NFT.path()?,
            },
            Self::Root(dir) => {
                for program in
                    [ROOT_FIREWALLD, ROOT_FIREWALL_CMD, ROOT_DBUS_DAEMON, ROOT_NFT, ROOT_PYTHON]
                {
                    let inside = dir.join(program.trim_start_matches('/'));
                    if fs::symlink_metadata(&inside).is_err() {
                        return Err(LabError::ToolMissing {
                            tool: format!("{program} in the firewalld root {}", dir.display()),
                            package: None,
                        });
                    }
                }
                Programs {
                    firewalld: ROOT_FIREWALLD.into(),
                    firewall_cmd: ROOT_FIREWALL_CMD.into(),
                    dbus_daemon: ROOT_DBUS_DAEMON.into(),
                    nft: ROOT_NFT.into(),
                }
            }
        };
        let zones = self.shipped_zones();
        if !zones.is_dir() {
            return Err(LabError::ToolMissing {
                tool: format!("firewalld's shipped zones ({})", zones.display()),
                package: Some("firewalld"),
            });
        }
        Ok(programs)
    }
}

impl fmt::Display for FirewalldBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("the host's firewalld"),
            Self::Root(dir) => write!(f, "the firewalld in {}", dir.display()),
        }
    }
}

/// The interpreter the host firewalld's `#!` line names (the daemon's own Python).
fn host_interpreter() -> Result<String> {
    let firewalld = tools::FIREWALLD.path()?;
    let script = fs::read_to_string(&firewalld)
        .map_err(|e| LabError::io(format!("reading {}", firewalld.display()), e))?;
    script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| LabError::Invalid {
            what: "firewalld script",
            detail: format!("{} has no #! line naming its interpreter", firewalld.display()),
        })
}
