//! Firewalls that can decide a SYN's fate: nftables (what the kernel runs) and firewalld
//! (the configuration users think in).
pub mod attribute;
pub mod docker_chains;
pub mod firewalld;
pub mod firewalld_cache;
pub mod firewalld_chains;
pub mod firewalld_presence;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod iptables_nft;
pub mod kube_proxy;
pub mod nat_destinations;
pub mod nat_writer;
pub mod nft_batch;
pub mod nft_tables;
pub mod nftables;
pub mod predict;
pub mod rule_iface;
pub mod trace;
pub mod trace_listener;
pub mod trace_table;
