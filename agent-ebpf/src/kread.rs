//! Reading kernel memory at offsets found in BTF at run time (Rust BPF has no CO-RE).
use aya_ebpf::helpers::bpf_probe_read_kernel;
use reach_common::field::Field;

/// Reads `field` of the struct at `base`; None when the field is absent on this kernel, `base`
/// is NULL or the read faults. Reads exactly the field's size so a field at the very end of an
/// object never reads past it; bitfields read their 8-byte window.
#[inline(always)]
pub fn read(base: u64, field: &Field) -> Option<u64> {
    if !field.is_present() || base == 0 {
        return None;
    }
    let at = base + field.offset as u64;
    // SAFETY: bpf_probe_read_kernel validates the address and returns an error on fault.
    let raw = unsafe {
        match field.size {
            1 => bpf_probe_read_kernel(at as *const u8).ok()? as u64,
            2 => bpf_probe_read_kernel(at as *const u16).ok()? as u64,
            4 => bpf_probe_read_kernel(at as *const u32).ok()? as u64,
            _ => bpf_probe_read_kernel(at as *const u64).ok()?,
        }
    };
    Some(field.extract(raw))
}

/// Reads 16 bytes (an IPv6 address) at `field`.
#[inline(always)]
pub fn read16(base: u64, field: &Field) -> Option<[u8; 16]> {
    if !field.is_present() || base == 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel((base + field.offset as u64) as *const [u8; 16]).ok() }
}

/// Follows a pointer field.
#[inline(always)]
pub fn deref(base: u64, field: &Field) -> Option<u64> {
    read(base, field).filter(|&p| p != 0)
}

/// Reads `field` of the struct at `base` with a plain load, for pointers the verifier knows
/// the BTF type of (a tp_btf program's arguments and what is loaded through them): it turns
/// such loads into fault-safe ones itself, which costs a load where `bpf_probe_read_kernel`
/// costs a helper call (several times as much). The verifier must know the offset: it does,
/// because the offsets are in frozen `.rodata` patched before load. None when the field is
/// absent or `base` is NULL; a faulting load reads as 0.
#[inline(always)]
pub fn read_typed(base: u64, field: &Field) -> Option<u64> {
    if !field.is_present() || base == 0 {
        return None;
    }
    let at = base + field.offset as u64;
    // SAFETY: a BTF-typed kernel pointer plus a member offset from BTF; the verifier checks
    // the access against the type and makes the load fault-safe.
    let raw = unsafe {
        match field.size {
            1 => core::ptr::read_volatile(at as *const u8) as u64,
            2 => core::ptr::read_volatile(at as *const u16) as u64,
            4 => core::ptr::read_volatile(at as *const u32) as u64,
            _ => core::ptr::read_volatile(at as *const u64),
        }
    };
    Some(field.extract(raw))
}

/// Follows a pointer field with [`read_typed`].
#[inline(always)]
pub fn deref_typed(base: u64, field: &Field) -> Option<u64> {
    read_typed(base, field).filter(|&p| p != 0)
}
