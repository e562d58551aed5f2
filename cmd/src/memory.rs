//! Hands the allocator's free memory back to the system now and then. glibc's malloc keeps what
//! is freed in its arenas, and a receiver frees a lot between the head's long-lived allocations
//! (request buffers, decoded batches, closed chunks once written to their files): without a
//! trim those free pages stay resident, about a third more than the head itself holds.
//! `malloc_trim` returns every whole free page of every arena.

/// Starts the thread that trims the heap every 30 seconds (a trim walks the arenas' free lists).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn spawn_trimmer() {
    const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
    let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| loop {
        std::thread::sleep(TRIM_EVERY);
        // SAFETY: malloc_trim takes an integer and touches only the allocator's own state.
        unsafe { libc::malloc_trim(0) };
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the malloc-trim thread; freed memory stays resident");
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn spawn_trimmer() {}
