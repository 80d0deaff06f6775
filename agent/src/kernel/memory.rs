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

/// Makes every thread allocate from one malloc arena (glibc `M_ARENA_MAX`). glibc gives each
/// new thread its own arena: memory freed in one (start-up's BTF parses run on blocking
/// threads) cannot serve another and partly used arenas cannot be trimmed, which cost reach
/// about 9 MB of resident memory for good. reach allocates little once running, so sharing
/// one arena costs nothing measurable. Call before any thread starts.
pub fn single_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt has no preconditions; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
