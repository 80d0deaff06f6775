//! Reading a `struct sock` and the current task into a `SockEvent`, with offsets from the
//! `SOCK_OFFSETS` global that user space fills from BTF before loading.
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    bpf_probe_read_user,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns},
};
use reach_common::{
    event::{AF_INET, AF_INET6, SockEvent, flag},
    offsets::SockOffsets,
};

use crate::kread::{deref, read, read16};

/// Filled by user space (EbpfLoader::set_global) before loading.
#[unsafe(no_mangle)]
pub static SOCK_OFFSETS: SockOffsets = SockOffsets::ABSENT;

/// Reads one field of the offsets global. Volatile: the compiler must not fold the compile-time
/// zeros, the loader patches the real values into the object.
#[macro_export]
macro_rules! off {
    ($field:ident) => {
        // SAFETY: reading a field of a static; volatile only defeats constant folding.
        unsafe { core::ptr::read_volatile(&$crate::sock::SOCK_OFFSETS.$field) }
    };
}

/// A fresh event stamped with the current task's identity.
#[inline(always)]
pub fn new_event(kind: u8, source: u8) -> SockEvent {
    let mut ev = SockEvent::zeroed();
    ev.kind = kind;
    ev.source = source;
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.tgid = (pid_tgid >> 32) as u32;
    ev.tid = pid_tgid as u32;
    ev.uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: helpers without preconditions.
    unsafe {
        ev.ts_ns = bpf_ktime_get_boot_ns();
        ev.cgroup_id = bpf_get_current_cgroup_id();
    }
    if let Ok(comm) = bpf_get_current_comm() {
        ev.comm = comm;
    }
    ev
}

/// The current task's network namespace inode (used when no socket is at hand).
#[inline(always)]
pub fn current_netns() -> u32 {
    // SAFETY: bpf_get_current_task returns the running task's address.
    let task = unsafe { bpf_get_current_task() };
    deref(task, &off!(task_nsproxy))
        .and_then(|ns| deref(ns, &off!(nsproxy_net_ns)))
        .and_then(|net| read(net, &off!(net_inum)))
        .unwrap_or(0) as u32
}

/// Copies what the socket says about itself after bind/listen into `ev`.
#[inline(always)]
pub fn fill_from_sock(ev: &mut SockEvent, sk: u64) {
    if sk == 0 {
        return;
    }
    ev.sock_id = sk;
    ev.flags |= flag::HAS_SOCKET;
    ev.family = read(sk, &off!(sk_family)).unwrap_or(0) as u16;
    ev.protocol = read(sk, &off!(sk_protocol)).unwrap_or(0) as u16;
    ev.bound_port = read(sk, &off!(sk_num)).unwrap_or(0) as u16;
    ev.bound_dev_if = read(sk, &off!(sk_bound_dev_if)).unwrap_or(0) as u32;
    ev.cookie = read(sk, &off!(sk_cookie)).unwrap_or(0);
    if ev.family == AF_INET6 {
        if let Some(a) = read16(sk, &off!(sk_v6_rcv_saddr)) {
            ev.bound_addr = a;
        }
    } else if let Some(a) = read(sk, &off!(sk_rcv_saddr)) {
        ev.bound_addr[..4].copy_from_slice(&(a as u32).to_ne_bytes());
    }
    if read(sk, &off!(sk_reuse)).unwrap_or(0) != 0 {
        ev.flags |= flag::REUSEADDR;
    }
    if read(sk, &off!(sk_reuseport)).unwrap_or(0) != 0 {
        ev.flags |= flag::REUSEPORT;
    }
    if read(sk, &off!(inet_freebind)).unwrap_or(0) != 0 {
        ev.flags |= flag::FREEBIND;
    }
    ev.netns =
        deref(sk, &off!(sk_net)).and_then(|net| read(net, &off!(net_inum))).unwrap_or(0) as u32;
}

/// Puts the connection's remote peer into `req_addr`/`req_port` (flag HAS_PEER).
#[inline(always)]
pub fn fill_peer(ev: &mut SockEvent, sk: u64) {
    let Some(port_be) = read(sk, &off!(sk_dport)) else { return };
    ev.req_port = u16::from_be(port_be as u16);
    if ev.family == AF_INET6 {
        if let Some(a) = read16(sk, &off!(sk_v6_daddr)) {
            ev.req_addr = a;
        }
    } else if let Some(a) = read(sk, &off!(sk_daddr)) {
        ev.req_addr[..4].copy_from_slice(&(a as u32).to_ne_bytes());
    }
    ev.flags |= flag::HAS_PEER;
}

/// Reads the listen backlog the kernel kept for `sk`.
#[inline(always)]
pub fn fill_backlog(ev: &mut SockEvent, sk: u64) {
    if let Some(b) = read(sk, &off!(sk_max_ack_backlog)) {
        ev.backlog = b as u32;
        ev.flags |= flag::HAS_BACKLOG;
    }
}

/// The address a caller asked to bind, as read from its sockaddr; `family == 0`: unknown.
///
/// Deliberately not an `Option`: LLVM may copy an `Option`'s payload on the `None` path too,
/// and older verifiers (6.1) reject that read of an uninitialised register. This type is
/// always fully initialised.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Requested {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub addr: [u8; 16],
}

impl Requested {
    pub const UNKNOWN: Requested = Requested { family: 0, port: 0, addr: [0; 16] };

    pub fn is_inet(&self) -> bool {
        self.family == AF_INET || self.family == AF_INET6
    }
}

/// Leading bytes of sockaddr_in / sockaddr_in6 (enough for both).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawSockaddr {
    family: u16,
    port_be: u16,
    v4_or_flowinfo: [u8; 4],
    v6: [u8; 16],
}

/// Parses the caller's sockaddr from kernel (`user == false`) or user memory; UNKNOWN when it
/// cannot be read or is not an inet address.
#[inline(always)]
pub fn read_requested(uaddr: u64, user: bool) -> Requested {
    if uaddr == 0 {
        return Requested::UNKNOWN;
    }
    // SAFETY: the probe_read helpers validate the address.
    let raw = unsafe {
        if user {
            bpf_probe_read_user(uaddr as *const RawSockaddr)
        } else {
            bpf_probe_read_kernel(uaddr as *const RawSockaddr)
        }
    };
    let Ok(raw) = raw else { return Requested::UNKNOWN };
    let mut req = Requested { family: raw.family, port: u16::from_be(raw.port_be), addr: [0; 16] };
    if raw.family == AF_INET {
        req.addr[..4].copy_from_slice(&raw.v4_or_flowinfo);
    } else if raw.family == AF_INET6 {
        req.addr = raw.v6;
    } else {
        return Requested::UNKNOWN;
    }
    req
}

/// Copies a known request into `ev` (nothing for UNKNOWN).
#[inline(always)]
pub fn apply_requested(ev: &mut SockEvent, req: &Requested) {
    if !req.is_inet() {
        return;
    }
    ev.flags |= flag::HAS_REQUEST;
    ev.req_port = req.port;
    ev.req_addr = req.addr;
    if ev.family == 0 {
        ev.family = req.family;
    }
}
