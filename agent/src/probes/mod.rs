//! Attaching reach's kernel probes: which mechanism to use for what.
pub mod bind_listen;
pub mod clsact;
pub mod clsact_record;
pub mod net;
pub mod offsets;
pub mod packet_event;
pub mod plan;
pub mod sock_event;
