//! reach's user-space agent as a library: the binary `reach` is a thin CLI over these modules,
//! and the integration tests and xtask drive the same code.
pub mod ebpf_objects;
