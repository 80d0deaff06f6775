//! Host-side face of the eBPF crate. The kernel programs live in `src/bin/*.rs` and are compiled
//! only for `bpfel-unknown-none` by `agent/build.rs`; the host sees this empty library so that the
//! agent can declare a build-dependency on us (cargo then rebuilds the agent when we change).
#![no_std]
