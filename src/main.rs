fn main() -> std::process::ExitCode {
    community_sync::cli::main()
}
