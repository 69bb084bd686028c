fn main() -> std::process::ExitCode {
    cme_exec::main()
}
