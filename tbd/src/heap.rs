//! glibc heap settings that keep a long-running daemon's resident memory near its idle size.

/// Makes every thread allocate from one heap. glibc gives threads their own arenas, and each
/// keeps the high-water mark of what its thread once held, fragmented: after three saturated
/// captures an idle tbd held 49 MiB with the default arenas, 33 MiB with one, at the same CPU.
/// Call before any thread starts.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns freed heap pages to the kernel: glibc keeps them otherwise (measured after closing
/// sled: 95 MiB still resident before the trim, 20 MiB after).
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
