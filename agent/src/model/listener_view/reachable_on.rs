//! The families and addresses a listener can be reached on, in words and as data: "IPv4
//! loopback only: not ::1, not from other hosts", "IPv4 + IPv6, every address", "only via eth0".
//!
//! Derived from the socket-lookup model (`diagnose::lookup`): which families a socket takes is
//! [`Socket::reach`], the very rule the diagnosis judges SYNs with, so `reach listeners` and
//! `reach why` can never disagree about a listener. The address part is the bound address with
//! the v4-mapped form unmapped (what SYNs must be sent to), as the lookup compares it.
use std::net::IpAddr;

use serde::Serialize;

use crate::{
    diagnose::lookup::{self, Reach, Socket},
    netns::sock_diag::Family,
};

/// Which destination addresses a listener takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Addresses {
    /// The wildcard (0.0.0.0, `[::]`): every address of its namespace.
    Every,
    /// A loopback address: only clients in its own namespace can send SYNs to it.
    Loopback,
    /// One other address of the namespace.
    One,
}

/// How a listener can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReachableOn {
    /// `ipv4`, `ipv6`: the families of SYN it takes.
    pub families: Vec<&'static str>,
    pub addresses: Addresses,
    /// The one address SYNs must be sent to (`Loopback`, `One`); an IPv4 address for a socket
    /// bound to `::ffff:a.b.c.d`.
    pub address: Option<IpAddr>,
    /// SO_BINDTODEVICE: the only interface SYNs may arrive on (its name, or `ifindex N`).
    pub device: Option<String>,
    /// All of it in one line, as `reach listeners` prints it.
    pub summary: String,
}

/// `s` (TCP or UDP: both lookups judge family, address and device the same way) with its
/// device's name when known.
pub fn reachable_on(s: &Socket, device_name: Option<String>) -> ReachableOn {
    let reach = s.reach();
    let families: Vec<&'static str> = [(Family::V4, "ipv4"), (Family::V6, "ipv6")]
        .into_iter()
        .filter(|(f, _)| reach.takes(*f))
        .map(|(_, name)| name)
        .collect();
    let dialed = lookup::unmap(s.addr);
    let (addresses, address) = if dialed.is_unspecified() {
        (Addresses::Every, None)
    } else if dialed.is_loopback() {
        (Addresses::Loopback, Some(dialed))
    } else {
        (Addresses::One, Some(dialed))
    };
    let device = (s.bound_dev_if != 0)
        .then(|| device_name.unwrap_or_else(|| format!("ifindex {}", s.bound_dev_if)));
    let summary = summary(reach, addresses, address, device.as_deref());
    ReachableOn { families, addresses, address, device, summary }
}

fn summary(
    reach: Reach,
    addresses: Addresses,
    address: Option<IpAddr>,
    device: Option<&str>,
) -> String {
    let v6 = matches!(address, Some(IpAddr::V6(_)));
    let mut s = match (reach, addresses) {
        (Reach::Dual, _) => "IPv4 + IPv6, every address".to_string(),
        (Reach::V6Only, _) => "IPv6 only (IPV6_V6ONLY), every address: not IPv4".to_string(),
        (Reach::V4, Addresses::Every) => "IPv4 only, every address: not IPv6 (not ::1)".to_string(),
        (_, Addresses::Loopback) if v6 => {
            "IPv6 loopback only: not 127.0.0.1, not from other hosts".to_string()
        }
        (_, Addresses::Loopback) => "IPv4 loopback only: not ::1, not from other hosts".to_string(),
        (_, _) => {
            let (fam, other) = if v6 { ("IPv6", "IPv4") } else { ("IPv4", "IPv6") };
            let a = address.map(|a| a.to_string()).unwrap_or_default();
            format!("{fam}, only {a}: not the host's other addresses, not {other}")
        }
    };
    if reach == Reach::V4Mapped {
        s.push_str(" (bound v4-mapped)");
    }
    if let Some(dev) = device {
        s.push_str(&format!("; only via {dev}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(family: Family, addr: &str, v6only: Option<bool>, dev: u32) -> Socket {
        Socket {
            family,
            addr: addr.parse().unwrap(),
            port: 8080,
            v6only,
            bound_dev_if: dev,
            cookie: 1,
        }
    }

    fn on(family: Family, addr: &str, v6only: Option<bool>) -> ReachableOn {
        reachable_on(&socket(family, addr, v6only, 0), None)
    }

    #[test]
    fn each_kind_of_binding_in_words() {
        let cases = [
            (
                on(Family::V4, "127.0.0.1", None),
                "IPv4 loopback only: not ::1, not from other hosts",
            ),
            (on(Family::V6, "::", Some(false)), "IPv4 + IPv6, every address"),
            (on(Family::V6, "::", Some(true)), "IPv6 only (IPV6_V6ONLY), every address: not IPv4"),
            (
                on(Family::V6, "::1", Some(true)),
                "IPv6 loopback only: not 127.0.0.1, not from other hosts",
            ),
            (on(Family::V4, "0.0.0.0", None), "IPv4 only, every address: not IPv6 (not ::1)"),
            (
                on(Family::V4, "10.0.0.5", None),
                "IPv4, only 10.0.0.5: not the host's other addresses, not IPv6",
            ),
            (
                on(Family::V6, "fd00::5", Some(true)),
                "IPv6, only fd00::5: not the host's other addresses, not IPv4",
            ),
            (
                on(Family::V6, "::ffff:10.0.0.5", Some(false)),
                "IPv4, only 10.0.0.5: not the host's other addresses, not IPv6 (bound v4-mapped)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.summary, want, "{got:?}");
        }
    }

    #[test]
    fn families_and_addresses_follow_the_lookup_model() {
        let dual = on(Family::V6, "::", Some(false));
        assert_eq!(
            (dual.families, dual.addresses, dual.address),
            (vec!["ipv4", "ipv6"], Addresses::Every, None)
        );
        let v6only = on(Family::V6, "::", Some(true));
        assert_eq!(v6only.families, vec!["ipv6"]);
        // A missing IPV6_V6ONLY reads as the kernel default (bindv6only=0), as the model does.
        assert_eq!(on(Family::V6, "::", None).families, vec!["ipv4", "ipv6"]);
        let lo = on(Family::V4, "127.0.0.5", None);
        assert_eq!((lo.families, lo.addresses), (vec!["ipv4"], Addresses::Loopback));
        assert_eq!(lo.address, Some("127.0.0.5".parse().unwrap()));
        let mapped = on(Family::V6, "::ffff:10.0.0.5", Some(false));
        assert_eq!(mapped.families, vec!["ipv4"]);
        assert_eq!(mapped.address, Some("10.0.0.5".parse().unwrap()), "unmapped: what SYNs go to");
    }

    #[test]
    fn a_device_binding_names_the_interface() {
        let eth = reachable_on(&socket(Family::V6, "::", Some(false), 2), Some("eth0".into()));
        assert_eq!(eth.summary, "IPv4 + IPv6, every address; only via eth0");
        assert_eq!(eth.device.as_deref(), Some("eth0"));
        let unnamed = reachable_on(&socket(Family::V4, "0.0.0.0", None, 7), None);
        assert!(unnamed.summary.ends_with("; only via ifindex 7"), "{}", unnamed.summary);
        assert_eq!(reachable_on(&socket(Family::V4, "0.0.0.0", None, 0), None).device, None);
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(on(Family::V4, "10.0.0.5", None)).unwrap();
        assert_eq!(v["families"], serde_json::json!(["ipv4"]));
        assert_eq!(v["addresses"], "one");
        assert_eq!(v["address"], "10.0.0.5");
        assert_eq!(v["device"], serde_json::Value::Null);
    }
}
