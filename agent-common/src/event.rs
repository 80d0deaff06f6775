//! Events the kernel programs send to user space through ring buffers.

/// What happened to a socket.
pub mod kind {
    /// bind(2) returned (successfully or not).
    pub const BIND: u8 = 1;
    /// listen(2) returned, or a socket entered TCP_LISTEN.
    pub const LISTEN: u8 = 2;
    /// A listening socket left TCP_LISTEN (closed or shut down).
    pub const LISTEN_CLOSE: u8 = 3;
    /// A passive open completed its handshake (SYN_RECV → ESTABLISHED); `req_*` hold the peer.
    pub const ESTABLISHED: u8 = 4;
}

/// Which attach mechanism produced an event (it decides which fields are known).
pub mod source {
    pub const KPROBE: u8 = 1;
    pub const FENTRY: u8 = 2;
    pub const SYSCALL_TRACEPOINT: u8 = 3;
    pub const STATE_TP_BTF: u8 = 4;
    pub const STATE_TRACEPOINT: u8 = 5;
}

/// Bits of `SockEvent::flags`.
pub mod flag {
    pub const REUSEADDR: u16 = 1 << 0;
    pub const REUSEPORT: u16 = 1 << 1;
    pub const FREEBIND: u16 = 1 << 2;
    /// `req_addr`/`req_port` hold what the caller asked for.
    pub const HAS_REQUEST: u16 = 1 << 3;
    /// `bound_addr`/`bound_port`/options were read from the socket after the call.
    pub const HAS_SOCKET: u16 = 1 << 4;
    /// `backlog` is known.
    pub const HAS_BACKLOG: u16 = 1 << 5;
    /// `req_addr`/`req_port` hold the remote peer (ESTABLISHED events).
    pub const HAS_PEER: u16 = 1 << 6;
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// One bind / listen / listener-close observation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockEvent {
    /// `kind::*`
    pub kind: u8,
    /// `source::*`
    pub source: u8,
    /// `flag::*`
    pub flags: u16,
    /// 0 or a negative errno.
    pub result: i32,
    /// bpf_ktime_get_boot_ns().
    pub ts_ns: u64,
    /// Thread group id (the "pid" users know) and thread id.
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    /// Network namespace inode.
    pub netns: u32,
    pub cgroup_id: u64,
    /// AF_INET / AF_INET6 (0 if unknown).
    pub family: u16,
    /// IPPROTO_TCP / IPPROTO_UDP (0 if unknown).
    pub protocol: u16,
    /// Requested port and bound port, host byte order.
    pub req_port: u16,
    pub bound_port: u16,
    /// listen() backlog as the kernel keeps it (sk_max_ack_backlog).
    pub backlog: u32,
    /// SO_BINDTODEVICE ifindex, 0 if none.
    pub bound_dev_if: u32,
    /// Addresses in network byte order; IPv4 in the first 4 bytes.
    pub req_addr: [u8; 16],
    pub bound_addr: [u8; 16],
    /// Thread name (task comm), NUL-padded.
    pub comm: [u8; 16],
    /// Kernel address of the `struct sock`: identifies the socket across its events.
    pub sock_id: u64,
    /// Socket cookie when already assigned (0 otherwise): joins events with sock_diag entries.
    pub cookie: u64,
}

impl SockEvent {
    pub const fn zeroed() -> Self {
        Self {
            kind: 0,
            source: 0,
            flags: 0,
            result: 0,
            ts_ns: 0,
            tgid: 0,
            tid: 0,
            uid: 0,
            netns: 0,
            cgroup_id: 0,
            family: 0,
            protocol: 0,
            req_port: 0,
            bound_port: 0,
            backlog: 0,
            bound_dev_if: 0,
            req_addr: [0; 16],
            bound_addr: [0; 16],
            comm: [0; 16],
            sock_id: 0,
            cookie: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integers and byte arrays; the layout has no implicit padding
// (checked by `layout_has_no_padding`).
unsafe impl aya::Pod for SockEvent {}

#[cfg(test)]
mod tests {
    #[test]
    fn layout_has_no_padding() {
        // 4 + 4 + 8 + 4*4 + 8 + 2*4 + 4*2 + 16*3 + 8*2 = 120
        assert_eq!(core::mem::size_of::<super::SockEvent>(), 120);
    }
}
