//! Memory hygiene shared by the daemons.

/// Hands freed heap pages back to the system after a burst (glibc keeps
/// them otherwise, and a long-lived daemon would stay at its peak).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
