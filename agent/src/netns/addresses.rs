//! The interfaces and addresses of the calling thread's network namespace (getifaddrs), for the
//! default set of watched interfaces and for naming the address a client should use.
use std::{
    ffi::CStr,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Every (interface, IPv4/IPv6 address) pair, in the kernel's order.
pub fn iface_addrs() -> std::io::Result<Vec<(String, IpAddr)>> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names;
            // ifa_name is a valid C string.
            let (family, name) = unsafe {
                ((*ifa.ifa_addr).sa_family as i32, CStr::from_ptr(ifa.ifa_name).to_string_lossy())
            };
            let ip = match family {
                // SAFETY: the family says which sockaddr this is.
                libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(unsafe {
                    (*(ifa.ifa_addr as *const libc::sockaddr_in)).sin_addr.s_addr
                })))),
                libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(unsafe {
                    (*(ifa.ifa_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr
                }))),
                _ => None,
            };
            if let Some(ip) = ip {
                out.push((name.into_owned(), ip));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list once.
    unsafe { libc::freeifaddrs(addrs) };
    Ok(out)
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
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut cur = list;
        while (*cur).if_index != 0 && !(*cur).if_name.is_null() {
            let name = CStr::from_ptr((*cur).if_name).to_string_lossy().into_owned();
            out.push(((*cur).if_index, name));
            cur = cur.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// Whether `iface` exists in the calling thread's namespace.
pub fn iface_exists(iface: &str) -> bool {
    std::ffi::CString::new(iface)
        // SAFETY: if_nametoindex reads a valid C string.
        .is_ok_and(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
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
    }
}
