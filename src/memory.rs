//! The process's allocator settings: the daemon must fit a small VM, and glibc's defaults are
//! tuned for throughput on many cores, not for a bounded footprint.
//!
//! Memory is bounded by constants, not by the data: one page in flight per stream
//! (`pipeline::PAGE_BUFFER`), `[store] batch_size` records per write, `reconcile::CHUNK`
//! records per reconcile transaction (two in the activity phase), SQLite's 16 MiB page
//! cache. Rust allocations go to mimalloc (`#[global_allocator]` in `main.rs`; malloc/free
//! were ~13 % of a sync's CPU under glibc), told here to hand freed memory back at once and
//! commit arenas as used. SQLite's heap stays on glibc: two arenas and a `malloc_trim` after
//! each written batch, reconcile chunk and deferred index build. The library's tests run on
//! the system allocator.

/// glibc gives every thread that allocates its own arena (up to 8 per core), each keeping
/// what it freed: with the tokio workers, the blocking pool and the rayon pool, that was a
/// third of the daemon's resident memory. Two arenas cost no measurable speed here; one was
/// ~10 % slower (malloc lock contention between the writers and the fetchers, BENCHMARKS.md).
/// `MALLOC_ARENA_MAX` in the environment still wins.
///
/// # Safety
///
/// Call before any other thread exists (first thing in `main`): `mallopt` is not safe to run
/// beside other threads' allocations, and reading the environment is not safe beside a
/// thread that sets it.
pub unsafe fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; the caller runs it before any
        // other thread exists (this function's contract).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// mimalloc's options, before anything else allocates much: freed memory is returned to the
/// system at once (its default keeps it 10 ms, and under steady allocation that is forever)
/// and its arenas are committed as they are used, not up front. With mimalloc's defaults a
/// 1M-record sync peaked at 124 MiB against 55 with glibc; with these at 57 (BENCHMARKS.md).
/// `MIMALLOC_*` in the environment still win: an option read from there is not overwritten.
///
/// # Safety
///
/// Call before any other thread exists (first thing in `main`): mimalloc's option setters
/// are not thread-safe, and an option must be set before mimalloc first reads it.
pub unsafe fn configure_allocator() {
    use libmimalloc_sys as mi;
    // Option ids of mimalloc 3's `mi_option_e` (libmimalloc-sys names only some of them).
    const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;
    const PURGE_DELAY: mi::mi_option_t = 15;
    for (option, env, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: sets an allocator parameter; the caller runs this before any other
            // thread exists (this function's contract).
            unsafe { mi::mi_option_set(option, value) };
        }
    }
}

/// Hands memory freed by a finished batch back to the system. glibc returns a freed block to
/// the kernel only when it sits at the top of its arena; the rest stays resident until reused,
/// so a peak of in-flight batches would otherwise stay the process's size for good.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SQLite's own heap (page caches, sorters, statements) now and at its high-water mark, shown
/// as "16.3 MiB (peak 16.9)": logged at the reconcile steps so a memory peak can be told apart
/// from the Rust side's.
pub struct SqliteHeap {
    used: i64,
    peak: i64,
}

pub fn sqlite_heap() -> SqliteHeap {
    // SAFETY: both read SQLite's global memory counters; they take no pointers.
    unsafe {
        SqliteHeap {
            used: rusqlite::ffi::sqlite3_memory_used(),
            peak: rusqlite::ffi::sqlite3_memory_highwater(0),
        }
    }
}

impl std::fmt::Display for SqliteHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        write!(f, "{:.1} MiB (peak {:.1})", mib(self.used), mib(self.peak))
    }
}
