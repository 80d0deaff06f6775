//! Firewalls that can decide a SYN's fate: nftables (what the kernel runs) and firewalld
//! (the configuration users think in).
pub mod firewalld_presence;
pub mod nft_tables;
