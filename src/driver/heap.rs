//! Giving freed heap memory back to the system after a burst: buffers shrunk or dropped
//! go back to the allocator, which keeps their pages resident until asked to let them go.

/// Returns the allocator's free pages to the system. Called when a burst's buffers have
/// been given back (by the connections, then by the output) or dropped (stdout failed),
/// never per event: it walks the heap.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Still `unsafe` and `libc`: malloc_trim is a glibc function, outside what rustix
    // (system calls) covers, and no safe crate wraps it.
    // SAFETY: malloc_trim only releases free memory at the top and in the middle of
    // glibc's heaps; it touches nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
