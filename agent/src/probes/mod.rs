//! Attaching reach's kernel probes: which mechanism to use for what.
pub mod offsets;
pub mod plan;
