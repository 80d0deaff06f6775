//! What reach knows right now: listeners per namespace (later: flows).
pub mod flows;
pub mod listener_view;
pub mod listeners;
