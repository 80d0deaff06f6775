//! Network namespaces: entering them safely and knowing which exist.
pub mod enter;
pub mod inventory;
