//! Listening sockets with exactly the options the kernel's listener lookup depends on: family,
//! address, IPV6_V6ONLY, SO_BINDTODEVICE, SO_REUSEPORT and the backlog. std's `TcpListener`
//! can set none of them before bind(), so the lab's servers, the socket-lookup table and the
//! sock_diag tests build their listeners here, with plain libc calls.
use std::{
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// What one listening socket looks like.
#[derive(Debug, Clone, Copy)]
pub struct ListenSpec<'a> {
    /// Bound address; port 0 lets the kernel choose.
    pub addr: SocketAddr,
    /// IPV6_V6ONLY set explicitly (AF_INET6 only); `None` keeps the namespace's default
    /// (net.ipv6.bindv6only).
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE, by interface name in the socket's namespace.
    pub device: Option<&'a str>,
    pub reuseport: bool,
    pub backlog: i32,
}

impl ListenSpec<'_> {
    /// A plain listener on `addr`: no options, backlog 16.
    pub fn on(addr: SocketAddr) -> Self {
        ListenSpec { addr, v6only: None, device: None, reuseport: false, backlog: 16 }
    }
}

/// A TCP socket set up as `spec` says, bound and listening, in the calling thread's network
/// namespace (run it inside `NetNs::run_in` for a lab namespace).
pub fn tcp_listen(spec: &ListenSpec) -> io::Result<OwnedFd> {
    listen_with(spec, false)
}

/// [`tcp_listen`] with SO_REUSEADDR set first, as servers commonly do (Go's `net.Listen`,
/// nginx): what the lab's demo server runs, so it binds the way a real server would.
pub fn tcp_listen_reusing_addr(spec: &ListenSpec) -> io::Result<OwnedFd> {
    listen_with(spec, true)
}

fn listen_with(spec: &ListenSpec, reuseaddr: bool) -> io::Result<OwnedFd> {
    let domain = if spec.addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let int = |v: bool| libc::c_int::from(v).to_ne_bytes();
    if reuseaddr {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &int(true))?;
    }
    if spec.reuseport {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, &int(true))?;
    }
    if let Some(v) = spec.v6only {
        setsockopt(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &int(v))?;
    }
    if let Some(dev) = spec.device {
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())?;
    }
    let (storage, len) = sockaddr(spec.addr);
    // SAFETY: storage holds a valid sockaddr of length len.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen on our own bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), spec.backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// setsockopt(2) with the option's value as bytes.
pub fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: val is valid for reads of its length.
    let r = unsafe { libc::setsockopt(fd, level, name, val.as_ptr().cast(), val.len() as u32) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `addr` as the sockaddr_in / sockaddr_in6 the kernel takes, with its length.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data, large enough for both families.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut st).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: an all-zero sockaddr_in6 is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut st).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::netns::enter::{in_new_netns, loopback_up};

    #[test]
    fn listens_with_the_options_asked_for() {
        in_new_netns(|| {
            loopback_up().unwrap();
            let spec =
                ListenSpec { v6only: Some(true), ..ListenSpec::on("[::1]:0".parse().unwrap()) };
            let l = TcpListener::from(tcp_listen(&spec).unwrap());
            let port = l.local_addr().unwrap().port();
            assert!(port != 0 && l.local_addr().unwrap().is_ipv6());
            // v6only: the same port is still free for IPv4.
            TcpListener::bind(("127.0.0.1", port)).expect("IPv4 free beside a v6only listener");
            let mut v = 0 as libc::c_int;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reading one int option of our own socket.
            let r = unsafe {
                libc::getsockopt(
                    l.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                    (&raw mut v).cast(),
                    &mut len,
                )
            };
            assert_eq!((r, v), (0, 1));
            let taken = ListenSpec::on(l.local_addr().unwrap());
            assert_eq!(
                tcp_listen(&taken).unwrap_err().raw_os_error(),
                Some(libc::EADDRINUSE),
                "a second listener without SO_REUSEPORT"
            );
        })
        .unwrap();
    }
}
