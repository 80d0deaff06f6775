//! Offsets of the kernel fields the bind/listen probes read, resolved from the running kernel's
//! BTF by user space and written into the programs' `SOCK_OFFSETS` global before loading.
use crate::field::Field;

/// Name of the global in the probes object.
pub const SOCK_OFFSETS_GLOBAL: &str = "SOCK_OFFSETS";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    /// `struct socket.sk`
    pub socket_sk: Field,
    /// `struct sock_common.skc_family` (through `sock.__sk_common`)
    pub sk_family: Field,
    /// `skc_num`: bound local port, host byte order.
    pub sk_num: Field,
    /// `skc_rcv_saddr`: bound IPv4 address.
    pub sk_rcv_saddr: Field,
    /// `skc_v6_rcv_saddr`: bound IPv6 address (16 bytes).
    pub sk_v6_rcv_saddr: Field,
    /// `skc_bound_dev_if`: SO_BINDTODEVICE ifindex.
    pub sk_bound_dev_if: Field,
    /// `skc_reuse` (SO_REUSEADDR) bitfield.
    pub sk_reuse: Field,
    /// `skc_reuseport` (SO_REUSEPORT) bitfield.
    pub sk_reuseport: Field,
    /// `skc_daddr`, `skc_v6_daddr`, `skc_dport` (network order): the peer of a connection.
    pub sk_daddr: Field,
    pub sk_v6_daddr: Field,
    pub sk_dport: Field,
    /// `skc_cookie`: the socket cookie (0 until someone asks for it; sock_diag does).
    pub sk_cookie: Field,
    /// `skc_net` → `struct net *`.
    pub sk_net: Field,
    /// `struct net.ns.inum`.
    pub net_inum: Field,
    /// `sock.sk_protocol` (u16 since 5.6, a bitfield before).
    pub sk_protocol: Field,
    /// `sock.sk_type`.
    pub sk_type: Field,
    /// `sock.sk_max_ack_backlog`: the effective listen backlog.
    pub sk_max_ack_backlog: Field,
    /// IP_FREEBIND: `inet_sock.freebind` bitfield (< 6.6) or a bit of `inet_sock.inet_flags`.
    pub inet_freebind: Field,
    /// `task_struct.nsproxy`, `nsproxy.net_ns`: the caller's netns when no socket is at hand.
    pub task_nsproxy: Field,
    pub nsproxy_net_ns: Field,
    /// fd → socket, for the syscall-tracepoint mode: task->files->fdt->fd[fd]->private_data.
    pub task_files: Field,
    pub files_fdt: Field,
    pub fdtable_max_fds: Field,
    pub fdtable_fd: Field,
    pub file_private_data: Field,
    /// Syscall tracepoint record layout (`syscalls:sys_enter_bind` / `sys_exit_bind` format).
    pub tp_bind_fd: Field,
    pub tp_bind_umyaddr: Field,
    pub tp_bind_addrlen: Field,
    pub tp_exit_ret: Field,
    /// `sock:inet_sock_set_state` record: `skaddr`, `oldstate`, `newstate`, `protocol`.
    pub tp_state_skaddr: Field,
    pub tp_state_oldstate: Field,
    pub tp_state_newstate: Field,
    pub tp_state_protocol: Field,
}

impl SockOffsets {
    /// All fields absent: the compile-time value of the global, replaced before loading.
    pub const ABSENT: SockOffsets = SockOffsets {
        socket_sk: Field::ABSENT,
        sk_family: Field::ABSENT,
        sk_num: Field::ABSENT,
        sk_rcv_saddr: Field::ABSENT,
        sk_v6_rcv_saddr: Field::ABSENT,
        sk_bound_dev_if: Field::ABSENT,
        sk_reuse: Field::ABSENT,
        sk_reuseport: Field::ABSENT,
        sk_daddr: Field::ABSENT,
        sk_v6_daddr: Field::ABSENT,
        sk_dport: Field::ABSENT,
        sk_cookie: Field::ABSENT,
        sk_net: Field::ABSENT,
        net_inum: Field::ABSENT,
        sk_protocol: Field::ABSENT,
        sk_type: Field::ABSENT,
        sk_max_ack_backlog: Field::ABSENT,
        inet_freebind: Field::ABSENT,
        task_nsproxy: Field::ABSENT,
        nsproxy_net_ns: Field::ABSENT,
        task_files: Field::ABSENT,
        files_fdt: Field::ABSENT,
        fdtable_max_fds: Field::ABSENT,
        fdtable_fd: Field::ABSENT,
        file_private_data: Field::ABSENT,
        tp_bind_fd: Field::ABSENT,
        tp_bind_umyaddr: Field::ABSENT,
        tp_bind_addrlen: Field::ABSENT,
        tp_exit_ret: Field::ABSENT,
        tp_state_skaddr: Field::ABSENT,
        tp_state_oldstate: Field::ABSENT,
        tp_state_newstate: Field::ABSENT,
        tp_state_protocol: Field::ABSENT,
    };
}

#[cfg(feature = "user")]
// SAFETY: plain old data of Fields (u32 + u8s), no padding holes with undefined content that
// the kernel could misread (repr(C), every byte written by user space).
unsafe impl aya::Pod for SockOffsets {}
