//! cme-exec: run confluence-markdown-exporter (cme) with credentials resolved from secret
//! stores, handed over for one run and never left on disk.
//!
//! Layout: [`cli`] parses arguments; [`config`] reads `cme-exec.toml`; [`resolve`] fetches
//! every reference through the providers crate; [`cme_config`] builds cme's config and writes
//! back what cme changed; [`handover`] puts the config where cme finds it; [`child`] runs the
//! command; [`session`] loads and resolves for the commands; [`commands`] ties them together;
//! [`exit`] is the exit code.

pub mod atomic;
pub mod child;
pub mod cli;
pub mod cme_config;
pub mod commands;
pub mod config;
pub mod envnames;
pub mod error;
pub mod exit;
pub mod expiry;
pub mod handover;
pub mod live;
mod platform;
pub mod resolve;
pub mod session;
pub mod state;
pub mod stdout;

use std::process::ExitCode;

use tracing_subscriber::filter::LevelFilter;

use crate::exit::Exit;

/// The whole program; `main.rs` only calls this.
pub fn main() -> ExitCode {
    // The signal state the child gets back (captured before Rust's runtime if main.rs's
    // `.init_array` hook ran); then cme-exec itself runs with nothing blocked.
    let _ = child::startup::at_start();
    child::startup::unblock_all();
    harden();
    let cli = match cli::Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Failed.into()
            } else {
                Exit::Success.into()
            };
        }
    };
    init_logging(cli.verbose);
    stdout::finish(commands::dispatch(cli)).into()
}

/// cme-exec holds secrets in memory: no core file, no ptrace by other processes of the same
/// user. `PR_SET_DUMPABLE` is reset by `execve`, so the child is not affected.
fn harden() {
    platform::harden();
    std::panic::set_hook(Box::new(|info| {
        // The payload is not printed: a panic message could have been built from a value.
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        error::print(
            &error::Error::new(format!(
                "internal error{place}; the message is not shown because it could hold a secret"
            ))
            .hint("please report this bug"),
        );
    }));
}

/// Log targets capped whatever `RUST_LOG` asks for, as prefixes: these crates can log request or
/// response details (headers with tokens, bodies with secrets) at debug or trace level.
/// cme-exec's own logs never hold values.
const SECRET_BEARING_LOG_TARGETS: [(&str, LevelFilter); 8] = [
    ("vaultrs", LevelFilter::OFF),
    ("rustify", LevelFilter::OFF),
    ("hyper", LevelFilter::INFO), // also hyper_util
    ("reqwest", LevelFilter::INFO),
    ("h2", LevelFilter::INFO),
    ("rustls", LevelFilter::INFO),
    ("aws", LevelFilter::INFO), // aws_config, aws_sigv4, aws_smithy_*, aws_sdk_*
    ("tower", LevelFilter::INFO),
];

fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{FilterExt as _, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let from_env = std::env::var_os(envnames::RUST_LOG).is_some();
    if verbose == 0 && !from_env {
        return;
    }
    let level = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = if from_env {
        tracing_subscriber::EnvFilter::from_default_env()
    } else {
        tracing_subscriber::EnvFilter::new(level)
    };
    // A second filter that must also agree: a more specific RUST_LOG directive
    // (`hyper_util::client=trace`) cannot lift these caps.
    let caps = SECRET_BEARING_LOG_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    );
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Plain text, on a terminal too (so NO_COLOR holds trivially): asking for colour would
        // need tracing-subscriber's `ansi` feature, and without it `with_ansi(true)` panics.
        // A few log lines do not need colour or another dependency.
        .with_ansi(false)
        .with_filter(filter.and(caps));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
