//! Slots of the doctor's per-CPU hit-counter array: each capability probe program bumps its own slot,
//! so `reach doctor` can tell "attached" apart from "attached and actually fired".

/// kprobe on `inet_bind`.
pub const HIT_KPROBE: u32 = 0;
/// fentry on `inet_bind`.
pub const HIT_FENTRY: u32 = 1;
/// tp_btf `inet_sock_set_state`.
pub const HIT_TP_BTF: u32 = 2;
/// classic tracepoint `sock:inet_sock_set_state`.
pub const HIT_TRACEPOINT: u32 = 3;
/// cgroup v2 `post_bind4`.
pub const HIT_CGROUP_SOCK: u32 = 4;
/// TC classifier (clsact/netlink or TCX).
pub const HIT_TC: u32 = 5;
/// Number of slots; the size of `DOCTOR_HITS`.
pub const HIT_SLOTS: u32 = 6;

/// Name of the hit-counter map in the doctor object.
pub const HITS_MAP: &str = "DOCTOR_HITS";
