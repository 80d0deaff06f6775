//! The BPF objects built by build.rs, embedded in the binary so `reach` is a single file.

/// Capability probe programs used by `reach doctor`.
pub fn doctor() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reach-doctor"))
}

/// The bind/listen probes (all three attach modes; user space loads the ones it uses).
pub fn probes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reach-probes"))
}
