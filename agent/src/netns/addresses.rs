//! The interfaces and addresses of the calling thread's network namespace (getifaddrs), for the
//! default set of watched interfaces and for naming the address a client should use.
use std::net::IpAddr;

use nix::{ifaddrs::getifaddrs, net::if_};

/// Every (interface, IPv4/IPv6 address) pair, in the kernel's order.
pub fn iface_addrs() -> std::io::Result<Vec<(String, IpAddr)>> {
    Ok(getifaddrs()?
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some((ifa.interface_name, ip))
        })
        .collect())
}

/// Names of every interface of the calling thread's namespace (if_nameindex asks the kernel;
/// /sys/class/net would show the namespace sysfs was mounted in, not this one).
pub fn iface_names() -> Vec<String> {
    interfaces().into_iter().map(|(_, name)| name).collect()
}

/// Indexes of every interface of the calling thread's namespace.
pub fn if_indexes() -> std::io::Result<Vec<u32>> {
    Ok(interfaces().into_iter().map(|(index, _)| index).collect())
}

/// (ifindex, name) of every interface of the calling thread's namespace.
fn interfaces() -> Vec<(u32, String)> {
    let Ok(list) = if_::if_nameindex() else { return Vec::new() };
    list.iter().map(|i| (i.index(), i.name().to_string_lossy().into_owned())).collect()
}

/// The index of interface `name` in the calling thread's namespace; None if it has none.
pub fn ifindex(name: &str) -> Option<u32> {
    if_::if_nametoindex(name).ok()
}

/// The name of interface `index` in the calling thread's namespace.
pub fn iface_name(index: u32) -> Option<String> {
    if_::if_indextoname(index).ok().map(|c| c.to_string_lossy().into_owned())
}

/// Whether `iface` exists in the calling thread's namespace.
pub fn iface_exists(iface: &str) -> bool {
    ifindex(iface).is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_its_address() {
        let all = super::iface_addrs().unwrap();
        assert!(all.iter().any(|(n, a)| n == "lo" && a.is_loopback()), "{all:?}");
        assert!(super::iface_exists("lo"));
        assert!(super::iface_names().contains(&"lo".to_string()));
        assert!(!super::iface_exists("no-such-if0"));
        assert_eq!(super::ifindex("lo"), Some(1));
        assert_eq!(super::iface_name(1).as_deref(), Some("lo"));
        assert_eq!(super::ifindex("no-such-if0"), None);
        assert_eq!(super::ifindex("bad\0name"), None);
    }
}
