//! Network namespaces: entering them safely and knowing which exist.
pub mod addresses;
pub mod conntrack;
pub mod discover;
pub mod docker;
pub mod enter;
pub mod interfaces;
pub mod inventory;
pub mod names;
pub mod netstat;
pub mod owners;
pub mod port_holders;
pub mod relays;
pub mod route;
pub mod select;
pub mod sk_lookup;
pub mod snapshot;
pub mod sock_diag;
