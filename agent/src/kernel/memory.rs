//! The process's own memory: giving freed heap back to the kernel.

/// Returns the free pages of every malloc arena to the kernel (glibc `malloc_trim`). glibc
/// keeps freed memory for reuse, so a start-up that parses megabytes and frees them would
/// otherwise stay that large for the whole run. A no-op where the C library has no
/// `malloc_trim` (musl).
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
