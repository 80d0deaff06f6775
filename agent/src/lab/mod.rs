//! The network-namespace lab: disposable network namespaces, veth links, processes and a real
//! firewalld inside them, for the integration tests, `reach lab` / `cargo xtask lab` and the
//! benchmarks.
//!
//! Safety model: the caller's (root) network namespace carries this machine's own traffic,
//! including its control connection, and is never modified. Lab namespaces are created, wired
//! and firewalled only among themselves; the firewalld fixture refuses to start anywhere but in a
//! lab namespace.
//!
//! Cleanup model: every object is a guard removed on Drop (which also runs while a test panics);
//! what a killed run leaves behind carries its dead creator's pid in its name and is removed by
//! [`clean_stale`].
//!
//! ```no_run
//! use reach_agent::lab::{Firewalld, TwoHosts};
//! # fn main() -> reach_agent::lab::Result<()> {
//! let hosts = TwoHosts::new("demo")?;
//! let fw = Firewalld::start(&hosts.server)?;
//! fw.cmd(&["--zone=public", "--add-port=8080/tcp"])?;
//! let listener = hosts.server.run_in(|| std::net::TcpListener::bind((TwoHosts::SERVER_V4, 8080)))?;
//! # Ok(()) }
//! ```
//!
//! Everything needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2; the firewalld fixture
//! also needs firewalld, dbus-daemon and nftables (`cargo xtask setup` installs them), or a
//! Debian root holding them ([`FirewalldBuild::root`], e.g. the trixie root with firewalld 2.x
//! that `cargo xtask setup` caches).
mod chroot;
mod dbus;
pub mod docker;
mod error;
mod exec;
mod firewalld;
mod firewalld_build;
mod fixture_dir;
mod handle;
mod mountns;
mod name;
mod netns;
mod nsid;
mod procs;
pub mod sockets;
mod stale;
mod tools;
mod topology;
mod veth;

pub use error::{LabError, Result};
pub use exec::{DEFAULT_TIMEOUT, LabChild, checked, describe, output_within, run_within};
pub use firewalld::{Firewalld, FirewalldOptions, FixtureMemory};
pub use firewalld_build::FirewalldBuild;
pub use handle::NetNsFd;
pub use name::{LabName, PREFIX};
pub use netns::{NetNs, RUN_NETNS};
pub use nsid::NsId;
pub use stale::{LabNamespace, RemovedNamespace, StaleReport, clean_stale, list_namespaces};
pub use tools::{DBUS_DAEMON, FIREWALL_CMD, FIREWALLD, IP, NFT, Tool};
pub use topology::TwoHosts;
pub use veth::{IfAddr, Veth, VethEnd};
