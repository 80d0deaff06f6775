//! Reading classic tracepoint records at offsets parsed from their tracefs format files.
use aya_ebpf::programs::TracePointContext;
use reach_common::field::Field;

/// Reads `field` of the tracepoint record (None when absent on this kernel or unreadable).
#[inline(always)]
pub fn read(ctx: &TracePointContext, field: &Field) -> Option<u64> {
    if !field.is_present() {
        return None;
    }
    // SAFETY: read_at goes through bpf_probe_read on the record.
    unsafe {
        match field.size {
            2 => ctx.read_at::<u16>(field.offset as usize).ok().map(|v| v as u64),
            4 => ctx.read_at::<u32>(field.offset as usize).ok().map(|v| v as u64),
            _ => ctx.read_at::<u64>(field.offset as usize).ok(),
        }
    }
}
