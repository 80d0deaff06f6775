//! Facts about the running kernel that decide how reach can attach.
pub mod btf;
pub mod capabilities;
pub mod cgroup;
pub mod drop_reasons;
pub mod kallsyms;
pub mod lockdown;
pub mod memory;
pub mod nfnetlink;
pub mod private_mounts;
pub mod privileges;
pub mod pseudofs;
pub mod release;
pub mod tracefs_format;
pub mod wsl;
