//! The kernel's own route lookup (RTM_GETROUTE, what `ip route get DST from SRC` asks) in the
//! calling thread's network namespace: which interface and gateway a packet from SRC to DST
//! leaves by, policy rules included, or that none does. Used for the answer of a server behind
//! a NAT: its SYN-ACK must go back the way the SYN came, through the NAT, to be un-translated.
use std::{io, net::IpAddr, os::fd::AsRawFd as _};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};

use crate::kernel::nfnetlink;

/// Where the kernel sends a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Out of interface `oif` (its index in the namespace), to `gateway` or on-link, from
    /// `prefsrc` (the source address the kernel picks).
    Via { oif: u32, gateway: Option<IpAddr>, prefsrc: Option<IpAddr> },
    /// Delivered locally (the destination is an address of the namespace).
    Local,
    /// No route: the lookup fails (ENETUNREACH), or it hits an unreachable, blackhole or
    /// prohibit route — the kernel cannot send it.
    None { why: String },
}

/// The route from `src` to `dst` in the calling thread's namespace.
pub fn get(dst: IpAddr, src: Option<IpAddr>) -> io::Result<Route> {
    let fd = nfnetlink::open_protocol(libc::NETLINK_ROUTE, 0)?;
    nfnetlink::set_recv_timeout(&fd, std::time::Duration::from_secs(2));
    let mut msg = RouteMessage::default();
    msg.header.address_family =
        if dst.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
    if let Some(src) = src {
        msg.header.source_prefix_length = if src.is_ipv4() { 32 } else { 128 };
        msg.attributes.push(RouteAttribute::Source(RouteAddress::from(src)));
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut req =
        NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::GetRoute(msg)));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    nfnetlink::send(&fd, &buf)?;
    let mut answer = vec![0u8; 8192];
    // SAFETY: answer is a valid, writable buffer of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer[..n as usize])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => Ok(of_message(&r)),
        NetlinkPayload::Error(e) if e.code.is_some() => {
            let err = e.to_io();
            match err.raw_os_error() {
                Some(code)
                    if [libc::ENETUNREACH, libc::EHOSTUNREACH, libc::EACCES, libc::EINVAL]
                        .contains(&code) =>
                {
                    Ok(Route::None { why: err.to_string() })
                }
                _ => Err(err),
            }
        }
        other => Err(io::Error::other(format!("unexpected route answer {other:?}"))),
    }
}

fn of_message(r: &RouteMessage) -> Route {
    match r.header.kind {
        RouteType::Local => return Route::Local,
        RouteType::Unreachable | RouteType::BlackHole | RouteType::Prohibit => {
            return Route::None { why: format!("{:?} route", r.header.kind).to_lowercase() };
        }
        _ => {}
    }
    let mut oif = None;
    let mut gateway = None;
    let mut prefsrc = None;
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateway = ip(g),
            RouteAttribute::PrefSource(p) => prefsrc = ip(p),
            _ => {}
        }
    }
    match oif {
        Some(oif) => Route::Via { oif, gateway, prefsrc },
        None => Route::None { why: "a route without an interface".into() },
    }
}

/// The name of interface `index` in the calling thread's namespace.
pub fn iface_name(index: u32) -> Option<String> {
    super::addresses::iface_name(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback exists in every namespace: its route is local, one off-link address is not.
    #[test]
    fn the_kernel_answers_for_loopback() {
        assert_eq!(get("127.0.0.1".parse().unwrap(), None).unwrap(), Route::Local);
        assert_eq!(iface_name(1).as_deref(), Some("lo"));
    }
}
