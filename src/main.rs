/// Captures the signal state cme-exec was started with before Rust's runtime sets SIGPIPE to
/// ignored; the child gets that state back (`child::startup`).
#[used]
#[link_section = ".init_array"]
static CAPTURE_SIGNAL_STATE: extern "C" fn() = cme_exec::child::startup::capture;

fn main() -> std::process::ExitCode {
    cme_exec::main()
}
