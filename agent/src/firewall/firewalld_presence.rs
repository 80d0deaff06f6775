//! Is firewalld running, and in which network namespace?
//!
//! Two independent signs, because either can be missing: firewalld's D-Bus name on the system
//! bus (the bus is not per-namespace, so the owner's pid tells the namespace), and its nftables
//! table `inet firewalld`, looked up inside each namespace.
use std::{os::unix::fs::MetadataExt, time::Duration};

use serde::Serialize;

/// firewalld's well-known D-Bus name.
pub const FIREWALLD_BUS_NAME: &str = "org.fedoraproject.FirewallD1";

/// The firewalld process found on a D-Bus bus.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BusOwner {
    pub pid: u32,
    /// Network namespace inode of that pid (None if /proc did not tell).
    pub netns_inode: Option<u64>,
}

/// Asks the bus at `address` (None: the system bus, honouring DBUS_SYSTEM_BUS_ADDRESS) who owns
/// firewalld's name. `Ok(None)`: bus reachable, firewalld not on it. `Err`: no bus.
pub async fn bus_owner(address: Option<&str>) -> anyhow::Result<Option<BusOwner>> {
    let connect = async {
        match address {
            Some(addr) => zbus::connection::Builder::address(addr)?.build().await,
            None => zbus::Connection::system().await,
        }
    };
    // A wedged bus must not hang doctor or a diagnosis.
    let conn = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to D-Bus"))??;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let name = zbus::names::BusName::try_from(FIREWALLD_BUS_NAME)?;
    if !dbus.name_has_owner(name.clone()).await? {
        return Ok(None);
    }
    let pid = dbus.get_connection_unix_process_id(name).await?;
    let netns_inode = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| m.ino());
    Ok(Some(BusOwner { pid, netns_inode }))
}
