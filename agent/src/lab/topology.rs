//! Ready-made topology: a server and a client namespace joined by one veth link.
//!
//! The shape behind "my server listens — why can't that client reach it?": tests, benchmarks and
//! `reach lab` scenarios start from it and add a firewall, a listener or a fault.
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    error::Result,
    netns::NetNs,
    veth::{Veth, VethEnd},
};

/// `server` ⟷ `client` over veth `srv0`/`cli0`, with IPv4 and IPv6 addresses.
///
/// Fields drop in declaration order: the link first, then the namespaces.
#[derive(Debug)]
pub struct TwoHosts {
    pub link: Veth,
    pub server: NetNs,
    pub client: NetNs,
}

impl TwoHosts {
    pub const SERVER_IF: &'static str = "srv0";
    pub const CLIENT_IF: &'static str = "cli0";
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);

    /// Creates namespaces `<label>-srv` and `<label>-cli` and the link between them.
    pub fn new(label: &str) -> Result<Self> {
        let server = NetNs::new(&format!("{label}-srv"))?;
        let client = NetNs::new(&format!("{label}-cli"))?;
        let link = Veth::create(
            VethEnd::new(&server, Self::SERVER_IF)
                .addrs(&[&format!("{}/24", Self::SERVER_V4), &format!("{}/64", Self::SERVER_V6)]),
            VethEnd::new(&client, Self::CLIENT_IF)
                .addrs(&[&format!("{}/24", Self::CLIENT_V4), &format!("{}/64", Self::CLIENT_V6)]),
        )?;
        Ok(Self { link, server, client })
    }
}
