fn main() -> std::process::ExitCode {
    tbd::cli::main()
}
