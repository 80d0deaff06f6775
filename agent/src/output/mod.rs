//! Rendering for people and for programs.
pub mod endpoint;
pub mod phases;
pub mod time;
