//! reach's user-space agent as a library: the binary `reach` is a thin CLI over these modules,
//! and the integration tests drive the same code.
pub mod cli;
pub mod commands;
pub mod diagnose;
pub mod ebpf_objects;
pub mod firewall;
pub mod kernel;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod netns;
pub mod observe;
pub mod output;
pub mod pods;
pub mod probes;
pub mod resolve;
