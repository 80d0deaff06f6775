//! Capability probes for `reach doctor`: one tiny program per attach mechanism.
//!
//! Each program only bumps its slot in `DOCTOR_HITS`; whether it loads and attaches is the
//! capability test, whether its slot moves proves it fires. They never change a packet's fate
//! (the classifier returns TC_ACT_OK) nor a bind's outcome (post_bind4 returns 1 = allow).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_OK,
    macros::{btf_tracepoint, cgroup_sock, classifier, fentry, kprobe, map, tracepoint},
    maps::PerCpuArray,
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, SockContext, TcContext,
        TracePointContext,
    },
};
use reach_common::doctor::{
    HIT_CGROUP_SOCK, HIT_FENTRY, HIT_KPROBE, HIT_SLOTS, HIT_TC, HIT_TP_BTF, HIT_TRACEPOINT,
};
// Nothing else of the library is used here: link it for its `#[panic_handler]`.
use reach_ebpf as _;

#[map]
static DOCTOR_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIT_SLOTS, 0);

#[inline(always)]
fn hit(slot: u32) {
    if let Some(counter) = DOCTOR_HITS.get_ptr_mut(slot) {
        // SAFETY: the per-CPU value is a live, aligned u64 owned by this CPU while the program
        // runs (no preemption inside a BPF program), so a plain increment cannot race.
        unsafe { *counter += 1 };
    }
}

#[kprobe]
pub fn reach_doctor_kprobe(_ctx: ProbeContext) -> u32 {
    hit(HIT_KPROBE);
    0
}

#[fentry(function = "inet_bind")]
pub fn reach_doctor_fentry(_ctx: FEntryContext) -> u32 {
    hit(HIT_FENTRY);
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn reach_doctor_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    hit(HIT_TP_BTF);
    0
}

#[tracepoint]
pub fn reach_doctor_tracepoint(_ctx: TracePointContext) -> u32 {
    hit(HIT_TRACEPOINT);
    0
}

#[cgroup_sock(post_bind4)]
pub fn reach_doctor_post_bind4(_ctx: SockContext) -> i32 {
    hit(HIT_CGROUP_SOCK);
    1
}

#[classifier]
pub fn reach_doctor_tc(_ctx: TcContext) -> i32 {
    hit(HIT_TC);
    TC_ACT_OK as i32
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
