//! Attaching reach's kernel probes: which mechanism to use for what.
pub mod bind_listen;
pub mod offsets;
pub mod plan;
pub mod sock_event;
