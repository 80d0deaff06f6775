//! glibc's own `getaddrinfo(3)`, called with the hints a typical TCP client passes
//! (`SOCK_STREAM`, `AI_ADDRCONFIG`, `AF_UNSPEC` unless a family was asked for), so that
//! /etc/hosts, the nsswitch `hosts:` order, DNS and /etc/gai.conf's RFC 6724 sorting are
//! applied by the C library itself, not by a re-implementation.
//!
//! `AI_ADDRCONFIG` depends on the calling thread's network namespace: glibc's `__check_pf`
//! (sysdeps/unix/sysv/linux/check_pf.c, `make_request`) dumps the addresses over a fresh
//! NETLINK_ROUTE socket, which belongs to the thread's namespace, and counts a family as
//! configured only for an address other than exactly 127.0.0.1 / ::1. `getaddrinfo`
//! (sysdeps/posix/getaddrinfo.c) then narrows AF_UNSPEC to the one family seen when only one
//! is, and fails with EAI_NONAME for an asked family that is not seen. Without nscd the result
//! is not cached (`cache_valid_p` needs an nscd timestamp), so each call sees the namespace now.
use std::{
    ffi::{CStr, CString},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Which family to ask for (curl's `-4`/`-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AskFamily {
    Any,
    Ipv4,
    Ipv6,
}

impl AskFamily {
    fn af(self) -> libc::c_int {
        match self {
            AskFamily::Any => libc::AF_UNSPEC,
            AskFamily::Ipv4 => libc::AF_INET,
            AskFamily::Ipv6 => libc::AF_INET6,
        }
    }

    pub fn admits(self, a: IpAddr) -> bool {
        match self {
            AskFamily::Any => true,
            AskFamily::Ipv4 => a.is_ipv4(),
            AskFamily::Ipv6 => a.is_ipv6(),
        }
    }
}

/// A failed `getaddrinfo`: its EAI code and `gai_strerror` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaiError {
    pub code: i32,
    pub message: String,
}

impl GaiError {
    /// EAI_NONAME / EAI_NODATA / EAI_ADDRFAMILY: the name has no (such) address, as opposed
    /// to a resolver that could not be asked (EAI_AGAIN, EAI_FAIL, EAI_SYSTEM).
    pub fn no_such_name(&self) -> bool {
        // EAI_NODATA and EAI_ADDRFAMILY are glibc extensions (-5, -9) not in the libc crate
        // for every target; their values are fixed in glibc's netdb.h.
        matches!(self.code, libc::EAI_NONAME | -5 | -9)
    }
}

/// The addresses glibc returns for `name`, in its order, duplicates removed (one per address:
/// SOCK_STREAM already gives one entry per address and protocol).
pub fn getaddrinfo(
    name: &str,
    family: AskFamily,
    addrconfig: bool,
) -> Result<Vec<IpAddr>, GaiError> {
    let c_name = CString::new(name)
        .map_err(|_| GaiError { code: libc::EAI_NONAME, message: "name contains NUL".into() })?;
    // SAFETY: addrinfo is plain old data; zeroed is the documented way to start hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family.af();
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_flags = if addrconfig { libc::AI_ADDRCONFIG } else { 0 };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, hints and out-pointer; the list is freed below.
    let rc = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string for any code.
        let message =
            unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy().into_owned();
        let message = if rc == libc::EAI_SYSTEM {
            format!("{message}: {}", std::io::Error::last_os_error())
        } else {
            message
        };
        return Err(GaiError { code: rc, message });
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned; each ai_addr is valid for its family.
        let ai = unsafe { &*p };
        let addr = match ai.ai_family {
            libc::AF_INET => {
                let sin = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        };
        if let Some(a) = addr.filter(|a| !out.contains(a)) {
            out.push(a);
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from a successful getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numeric names never touch a configuration file: a check of the FFI and the order-keeping
    /// de-duplication that holds on any host.
    #[test]
    fn numeric_names_come_back_as_themselves() {
        assert_eq!(
            getaddrinfo("127.0.0.1", AskFamily::Any, false).unwrap(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        assert_eq!(
            getaddrinfo("::1", AskFamily::Ipv6, false).unwrap(),
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        let e = getaddrinfo("::1", AskFamily::Ipv4, false).unwrap_err();
        assert!(e.no_such_name(), "{e:?}");
        assert!(!e.message.is_empty());
    }
}
