fn main() -> std::process::ExitCode {
    tbctl::cli::main()
}
