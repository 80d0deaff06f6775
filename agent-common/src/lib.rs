//! Records shared by reach's kernel programs (`reach-ebpf`) and user space (`reach-agent`).
//!
//! Everything here is `#[repr(C)]` and `Copy` so both sides agree on the layout byte for byte;
//! with the `user` feature the types also implement `aya::Pod` for map and global access.
#![cfg_attr(not(test), no_std)]

pub mod doctor;
pub mod event;
pub mod field;
pub mod net;
pub mod offsets;

/// Index of the lost-event counter in each object's per-CPU `LOST` array: ring-buffer reserve
/// failures are counted there and reported by user space, never dropped silently.
pub const LOST_SLOT: u32 = 0;
