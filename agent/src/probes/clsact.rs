//! Removing a clsact qdisc reach added (aya can add one but not delete it): RTM_DELQDISC over
//! rtnetlink in the calling thread's namespace. Only qdiscs reach created are ever removed, so
//! another tool's clsact (and its filters) survive.
use std::io;

const RTM_DELQDISC: u16 = 37;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
/// TC_H_CLSACT (== TC_H_INGRESS): the parent of a clsact qdisc.
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// TC_H_MAKE(TC_H_CLSACT, 0): the handle clsact qdiscs get.
const CLSACT_HANDLE: u32 = 0xFFFF_0000;

/// Deletes the clsact qdisc of `ifindex` (with every filter still on it).
pub fn delete(ifindex: u32) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; wrapped in OwnedFd immediately.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let msg = request(ifindex);
    // SAFETY: msg is a valid buffer; the kernel is the default destination of a netlink socket.
    if unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    ack_status(&buf[..n as usize])
}

/// nlmsghdr + tcmsg for RTM_DELQDISC of the clsact qdisc on `ifindex`.
fn request(ifindex: u32) -> Vec<u8> {
    let len = 16 + 20;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_DELQDISC.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // tcm_family + padding
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    m.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // tcm_info
    m
}

fn ack_status(reply: &[u8]) -> io::Result<()> {
    if reply.len() < 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short rtnetlink reply"));
    }
    let ty = u16::from_ne_bytes([reply[4], reply[5]]);
    if ty != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected rtnetlink reply type {ty}"),
        ));
    }
    let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::enter;

    #[test]
    fn request_layout() {
        let m = request(7);
        assert_eq!(m.len(), 36);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_DELQDISC);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 7);
        assert_eq!(u32::from_ne_bytes([m[28], m[29], m[30], m[31]]), TC_H_CLSACT);
    }

    #[test]
    fn deletes_a_clsact_it_added_and_reports_a_missing_one() {
        enter::in_new_netns(|| {
            enter::loopback_up().unwrap();
            aya::programs::tc::qdisc_add_clsact("lo").unwrap();
            // A second add fails: the qdisc exists.
            assert!(aya::programs::tc::qdisc_add_clsact("lo").is_err());
            delete(1).unwrap();
            // Gone: adding works again, deleting twice reports the absence.
            aya::programs::tc::qdisc_add_clsact("lo").unwrap();
            delete(1).unwrap();
            let e = delete(1).unwrap_err();
            assert!(matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)), "{e}");
        })
        .unwrap();
    }
}
