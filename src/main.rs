#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe {
        community_sync::memory::configure_allocator();
        community_sync::memory::limit_arenas();
    }
    community_sync::cli::main()
}
