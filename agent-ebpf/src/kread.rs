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
