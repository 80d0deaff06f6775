//! Records shared by reach's kernel programs (`reach-ebpf`) and user space (`reach-agent`).
//!
//! Everything here is `#[repr(C)]` and `Copy` so both sides agree on the layout byte for byte;
//! with the `user` feature the types also implement `aya::Pod` for map and global access.
#![no_std]

pub mod doctor;
