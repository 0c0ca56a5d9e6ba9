fn main() -> std::process::ExitCode {
    community_sync::memory::limit_arenas();
    community_sync::cli::main()
}
