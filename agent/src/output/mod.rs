//! Rendering for people and for programs.
pub mod time;
