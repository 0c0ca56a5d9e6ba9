fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    community_sync::cli::main()
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), each keeping
/// what it freed: with the tokio workers, the blocking pool and the rayon pool, that was a
/// third of the daemon's resident memory. Two arenas cost no measurable speed here
/// (BENCHMARKS.md). `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other
        // thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
