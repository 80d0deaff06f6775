//! reach's bind/listen probes: the same `SockEvent` from three interchangeable attach modes.
//!
//! - kprobe mode: kprobe + kretprobe on inet_bind/inet6_bind and inet_listen;
//! - fentry mode: fexit on the same functions (arguments and return value in one program);
//! - tracepoint mode (no kprobes, no trampolines): syscalls:sys_enter/exit_bind with the fd
//!   resolved to its socket, and inet_sock_set_state (→ TCP_LISTEN) for listens.
//! In every mode inet_sock_set_state (LISTEN → CLOSE) reports listeners going away.
//!
//! Entry points are thin; each delegates to a `try_*` function. No program changes a bind's or
//! listen's outcome: they only read.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_get_current_task},
    macros::{btf_tracepoint, fexit, kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext,
    },
};
use reach_common::event::{IPPROTO_TCP, SockEvent, kind, source};
use reach_ebpf::{
    emit::{SOCK_EVENTS, send},
    kread::{deref, read},
    off,
    sock::{
        Requested, apply_requested, current_netns, fill_backlog, fill_from_sock, fill_peer,
        new_event, read_requested,
    },
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const TCP_LISTEN: i32 = 10;
const TCP_CLOSE: i32 = 7;
const EBADF: i64 = 9;
const ENOTSOCK: i64 = 88;

/// Bit 0: the state tracepoint reports LISTEN (tracepoint mode); otherwise listens come from
/// inet_listen probes and the state tracepoint only reports LISTEN → CLOSE. Set by user space.
#[unsafe(no_mangle)]
static STATE_REPORTS_LISTEN: u8 = 0;

/// What a bind entry probe saw, waiting for the return probe of the same thread.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingBind {
    /// `struct socket *` (0 if unknown).
    sock: u64,
    request: Requested,
    _pad: u32,
}

/// Keyed by pid_tgid: a thread is inside at most one bind() at a time.
#[map]
static PENDING_BIND: HashMap<u64, PendingBind> = HashMap::with_max_entries(8192, 0);
/// `struct socket *` of a thread inside inet_listen.
#[map]
static PENDING_LISTEN: HashMap<u64, u64> = HashMap::with_max_entries(8192, 0);

// ---------------------------------------------------------------- kprobe mode

#[kprobe]
pub fn reach_kp_bind(ctx: ProbeContext) -> u32 {
    let _ = try_kp_bind(&ctx);
    0
}

fn try_kp_bind(ctx: &ProbeContext) -> Result<(), i64> {
    let sock: u64 = ctx.arg(0).ok_or(1)?;
    let uaddr: u64 = ctx.arg(1).ok_or(1)?;
    // inet_bind runs after move_addr_to_kernel: the sockaddr is a kernel copy.
    remember_bind(sock, read_requested(uaddr, false))
}

#[kretprobe]
pub fn reach_krp_bind(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret();
    let _ = try_bind_return(ret as i64, source::KPROBE);
    0
}

#[kprobe]
pub fn reach_kp_listen(ctx: ProbeContext) -> u32 {
    let _ = try_kp_listen(&ctx);
    0
}

fn try_kp_listen(ctx: &ProbeContext) -> Result<(), i64> {
    let sock: u64 = ctx.arg(0).ok_or(1)?;
    PENDING_LISTEN.insert(&bpf_get_current_pid_tgid(), &sock, 0).map_err(i64::from)
}

#[kretprobe]
pub fn reach_krp_listen(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret();
    let _ = try_kp_listen_return(ret);
    0
}

fn try_kp_listen_return(ret: i32) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let sock = unsafe { PENDING_LISTEN.get(&key) }.copied().ok_or(1)?;
    let _ = PENDING_LISTEN.remove(&key);
    emit_listen(sock, ret, source::KPROBE);
    Ok(())
}

// ---------------------------------------------------------------- fentry mode (fexit)

#[fexit(function = "inet_bind")]
pub fn reach_fx_bind(ctx: FExitContext) -> u32 {
    try_fx_bind(&ctx);
    0
}

#[fexit(function = "inet6_bind")]
pub fn reach_fx_bind6(ctx: FExitContext) -> u32 {
    try_fx_bind(&ctx);
    0
}

fn try_fx_bind(ctx: &FExitContext) {
    // (struct socket *sock, struct sockaddr *uaddr, int addr_len) → int
    let sock: u64 = ctx.arg(0);
    let uaddr: u64 = ctx.arg(1);
    let ret: i32 = ctx.arg(3);
    let request = read_requested(uaddr, false);
    emit_bind(sock, &request, ret as i64, source::FENTRY);
}

#[fexit(function = "inet_listen")]
pub fn reach_fx_listen(ctx: FExitContext) -> u32 {
    // (struct socket *sock, int backlog) → int
    let sock: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(2);
    emit_listen(sock, ret, source::FENTRY);
    0
}

// ---------------------------------------------------------------- tracepoint mode

#[tracepoint]
pub fn reach_sys_bind(ctx: TracePointContext) -> u32 {
    let _ = try_sys_bind(&ctx);
    0
}

fn try_sys_bind(ctx: &TracePointContext) -> Result<(), i64> {
    let fd = reach_ebpf::tp::read(ctx, &off!(tp_bind_fd)).ok_or(1)?;
    let uaddr = reach_ebpf::tp::read(ctx, &off!(tp_bind_umyaddr)).ok_or(1)?;
    // Only inet binds matter; AF_UNIX/netlink binds go through here too.
    let request = read_requested(uaddr, true);
    if !request.is_inet() {
        return Ok(());
    }
    remember_bind(fd_to_socket(fd as u32).unwrap_or(0), request)
}

#[tracepoint]
pub fn reach_sys_bindx(ctx: TracePointContext) -> u32 {
    if let Some(ret) = reach_ebpf::tp::read(&ctx, &off!(tp_exit_ret)) {
        let _ = try_bind_return(ret as i64, source::SYSCALL_TRACEPOINT);
    }
    0
}

/// task->files->fdt->fd[fd]->private_data: the `struct socket *` behind a socket fd.
#[inline(always)]
fn fd_to_socket(fd: u32) -> Option<u64> {
    // SAFETY: the current task's address; all reads go through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let files = deref(task, &off!(task_files))?;
    let fdt = deref(files, &off!(files_fdt))?;
    if fd as u64 >= read(fdt, &off!(fdtable_max_fds))? {
        return None;
    }
    let fds = deref(fdt, &off!(fdtable_fd))?;
    // SAFETY: bounds-checked against max_fds above; the helper validates the address anyway.
    let file = unsafe { bpf_probe_read_kernel((fds + fd as u64 * 8) as *const u64) }.ok()?;
    deref(file, &off!(file_private_data))
}

// ---------------------------------------------------------------- state changes (all modes)

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn reach_btf_state(ctx: BtfTracePointContext) -> i32 {
    // (const struct sock *sk, const int oldstate, const int newstate)
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    on_state_change(sk, old, new, IPPROTO_TCP, source::STATE_TP_BTF);
    0
}

#[tracepoint]
pub fn reach_tp_state(ctx: TracePointContext) -> u32 {
    let _ = try_tp_state(&ctx);
    0
}

fn try_tp_state(ctx: &TracePointContext) -> Result<(), i64> {
    let sk = reach_ebpf::tp::read(ctx, &off!(tp_state_skaddr)).ok_or(1)?;
    let old = reach_ebpf::tp::read(ctx, &off!(tp_state_oldstate)).ok_or(1)? as i32;
    let new = reach_ebpf::tp::read(ctx, &off!(tp_state_newstate)).ok_or(1)? as i32;
    let proto =
        reach_ebpf::tp::read(ctx, &off!(tp_state_protocol)).unwrap_or(IPPROTO_TCP as u64) as u16;
    on_state_change(sk, old, new, proto, source::STATE_TRACEPOINT);
    Ok(())
}

#[inline(always)]
fn on_state_change(sk: u64, old: i32, new: i32, proto: u16, src: u8) {
    // The tracepoint also fires for MPTCP/SCTP subflows; reach models TCP listeners.
    if proto != IPPROTO_TCP {
        return;
    }
    // SAFETY: volatile read of a loader-patched global.
    let report_listen = unsafe { core::ptr::read_volatile(&STATE_REPORTS_LISTEN) } != 0;
    if new == TCP_LISTEN && report_listen {
        let mut ev = new_event(kind::LISTEN, src);
        fill_from_sock(&mut ev, sk);
        fill_backlog(&mut ev, sk);
        send(&SOCK_EVENTS, &ev);
    } else if old == TCP_LISTEN && new == TCP_CLOSE {
        let mut ev = new_event(kind::LISTEN_CLOSE, src);
        fill_from_sock(&mut ev, sk);
        send(&SOCK_EVENTS, &ev);
    } else if old == TCP_SYN_RECV && new == TCP_ESTABLISHED {
        // A passive open finished its handshake: the flow table calls that SYN "accepted".
        // Runs in softirq context: the task fields describe whoever was interrupted, not the
        // server, so user space uses only the socket's addresses.
        let mut ev = new_event(kind::ESTABLISHED, src);
        fill_from_sock(&mut ev, sk);
        fill_peer(&mut ev, sk);
        send(&SOCK_EVENTS, &ev);
    }
}

// ---------------------------------------------------------------- shared

#[inline(always)]
fn remember_bind(sock: u64, request: Requested) -> Result<(), i64> {
    let pending = PendingBind { sock, request, _pad: 0 };
    PENDING_BIND.insert(&bpf_get_current_pid_tgid(), &pending, 0).map_err(i64::from)
}

#[inline(always)]
fn try_bind_return(ret: i64, src: u8) -> Result<(), i64> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let pending = unsafe { PENDING_BIND.get(&key) }.copied().ok_or(1)?;
    let _ = PENDING_BIND.remove(&key);
    // An fd that is not a socket has no struct socket behind private_data: never read it.
    let sock = if ret == -EBADF || ret == -ENOTSOCK { 0 } else { pending.sock };
    emit_bind(sock, &pending.request, ret, src);
    Ok(())
}

#[inline(always)]
fn emit_bind(sock: u64, request: &Requested, ret: i64, src: u8) {
    let mut ev = new_event(kind::BIND, src);
    ev.result = ret as i32;
    let sk = if sock != 0 { deref(sock, &off!(socket_sk)).unwrap_or(0) } else { 0 };
    fill_from_sock(&mut ev, sk);
    apply_requested(&mut ev, request);
    if ev.netns == 0 {
        ev.netns = current_netns();
    }
    send(&SOCK_EVENTS, &ev);
}

#[inline(always)]
fn emit_listen(sock: u64, ret: i32, src: u8) {
    let mut ev: SockEvent = new_event(kind::LISTEN, src);
    ev.result = ret;
    let sk = deref(sock, &off!(socket_sk)).unwrap_or(0);
    fill_from_sock(&mut ev, sk);
    if ret == 0 {
        fill_backlog(&mut ev, sk);
    }
    if ev.netns == 0 {
        ev.netns = current_netns();
    }
    send(&SOCK_EVENTS, &ev);
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
