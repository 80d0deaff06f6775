//! The BPF objects built by build.rs, embedded in the binary so `reach` is a single file, and
//! typed access to their programs.
use anyhow::{Context as _, anyhow};

/// Capability probe programs used by `reach doctor`.
pub fn doctor() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reach-doctor"))
}

/// The bind/listen probes (all three attach modes; user space loads the ones it uses).
pub fn probes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reach-probes"))
}

/// Program `name` of a loaded object as its concrete type (`KProbe`, `TracePoint`, …). Either
/// failure is a build bug: the object lacks the program, or it has another type.
pub fn program_mut<'a, T>(ebpf: &'a mut aya::Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the probe object (build bug)"))?
        .try_into()
        .map_err(|_| anyhow!("program {name} has an unexpected type (build bug)"))
}

/// The packet path: TC classifiers (ingress SYNs, egress replies) and the kfree_skb drop tracer.
pub fn net() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reach-net"))
}
