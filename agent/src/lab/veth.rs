//! Veth pairs between two lab namespaces, addressed and up.
//!
//! Namespace-to-namespace only: the caller's (root) namespace carries this machine's real
//! traffic and is never touched. `ip` runs inside the first namespace and creates the peer
//! directly in the second, so no interface ever appears in the caller's namespace, not even
//! for a moment.
use std::{fmt, net::IpAddr, str::FromStr};

use super::{
    error::{LabError, Result},
    handle::WeakNetNs,
    netns::NetNs,
    tools,
};

/// An interface address with its prefix length, e.g. `10.0.0.1/24` or `fd00::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for IfAddr {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |detail: &str| LabError::Invalid {
            what: "interface address",
            detail: format!("{s:?}: {detail}"),
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid("prefix length too long"));
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One end of a veth pair to create: its namespace, interface name and addresses.
#[derive(Debug)]
pub struct VethEnd<'a> {
    ns: &'a NetNs,
    name: String,
    addrs: Vec<String>,
}

impl<'a> VethEnd<'a> {
    /// Interface `name` (at most 15 bytes, the kernel's IFNAMSIZ) in `ns`. Names are per
    /// namespace, so every lab can use the same ones.
    pub fn new(ns: &'a NetNs, name: &str) -> Self {
        Self { ns, name: name.to_string(), addrs: Vec::new() }
    }

    /// Adds an address, `ADDR/PREFIX`; IPv6 ones skip duplicate address detection (`nodad`)
    /// so they are usable as soon as the link is up.
    pub fn addr(mut self, cidr: &str) -> Self {
        self.addrs.push(cidr.to_string());
        self
    }

    /// Adds several addresses.
    pub fn addrs(mut self, cidrs: &[&str]) -> Self {
        self.addrs.extend(cidrs.iter().map(|s| s.to_string()));
        self
    }
}

/// A veth pair; deleted on drop (if its namespaces still exist: if either is gone, so is the
/// pair).
#[derive(Debug)]
pub struct Veth {
    a_ns: WeakNetNs,
    a_name: String,
    b_name: String,
    a_addrs: Vec<IfAddr>,
    b_addrs: Vec<IfAddr>,
    removed: bool,
}

impl Veth {
    /// Creates the pair, assigns the addresses and sets both ends up.
    pub fn create(a: VethEnd<'_>, b: VethEnd<'_>) -> Result<Self> {
        validate_ifname(&a.name)?;
        validate_ifname(&b.name)?;
        let a_addrs = parse_all(&a.addrs)?;
        let b_addrs = parse_all(&b.addrs)?;
        tools::IP.path()?;

        a.ns.ip(&[
            "link",
            "add",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            &b.name,
            "netns",
            b.ns.name(),
        ])?;
        // From here on the guard deletes the pair if a later step fails.
        let veth = Self {
            a_ns: a.ns.weak(),
            a_name: a.name.clone(),
            b_name: b.name.clone(),
            a_addrs,
            b_addrs,
            removed: false,
        };
        for (ns, name, addrs) in [(a.ns, &a.name, &veth.a_addrs), (b.ns, &b.name, &veth.b_addrs)] {
            for addr in addrs {
                let cidr = addr.to_string();
                let mut args = vec!["addr", "add", cidr.as_str(), "dev", name.as_str()];
                if addr.addr.is_ipv6() {
                    args.push("nodad");
                }
                ns.ip(&args)?;
            }
            ns.ip(&["link", "set", name, "up"])?;
        }
        Ok(veth)
    }

    /// Interface name of the first end.
    pub fn a_name(&self) -> &str {
        &self.a_name
    }

    /// Interface name of the second end.
    pub fn b_name(&self) -> &str {
        &self.b_name
    }

    /// Addresses of the first end.
    pub fn a_addrs(&self) -> &[IfAddr] {
        &self.a_addrs
    }

    /// Addresses of the second end.
    pub fn b_addrs(&self) -> &[IfAddr] {
        &self.b_addrs
    }

    /// Deletes the pair now, reporting errors Drop can only ignore.
    pub fn remove(mut self) -> Result<()> {
        self.delete()
    }

    fn delete(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.removed, true) {
            return Ok(());
        }
        match self.a_ns.run(tools::IP.name, &["link", "del", &self.a_name]) {
            Ok(_) | Err(LabError::NamespaceGone(_)) => Ok(()),
            // The other namespace went first and took the pair with it.
            Err(LabError::CommandFailed { stderr, .. })
                if stderr.contains("Cannot find device") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            tracing::warn!("lab: deleting veth {}: {e}", self.a_name);
        }
    }
}

fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid {
            what: "interface name",
            detail: format!("{name:?} (1-15 bytes, no '/', ':' or spaces)"),
        })
    }
}

fn parse_all(cidrs: &[String]) -> Result<Vec<IfAddr>> {
    cidrs.iter().map(|s| s.parse()).collect()
}
