//! Sending events: ring-buffer reservation with loss accounting.
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use reach_common::LOST_SLOT;

/// Bind/listen events. 256 KiB holds ~2000 events: a burst of binds between two user-space
/// polls fits; beyond it events are counted in LOST, never silently dropped.
#[map]
pub static SOCK_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Events that could not be reserved in a ring buffer, per CPU.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Writes `event` to `ring`, counting a failed reservation in LOST.
#[inline(always)]
pub fn send<T: 'static>(ring: &RingBuf, event: &T) {
    match ring.reserve::<T>(0) {
        Some(mut entry) => {
            // SAFETY: T is Copy plain data; the reservation is exactly size_of::<T>().
            unsafe { entry.as_mut_ptr().write(core::ptr::read(event)) };
            entry.submit(0);
        }
        None => {
            if let Some(counter) = LOST.get_ptr_mut(LOST_SLOT) {
                // SAFETY: per-CPU slot, no concurrent writer on this CPU.
                unsafe { *counter += 1 };
            }
        }
    }
}
