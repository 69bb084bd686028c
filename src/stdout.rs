//! cme-exec's own stdout (`check`, `explain`, `completions`, `man`): every write goes through
//! here, so that a reader that goes away (`cme-exec completions fish | head -1`) ends the output
//! quietly instead of panicking in `println!`.
//!
//! The rule, as ripgrep's: a closed pipe (EPIPE; Rust ignores SIGPIPE, so it arrives as an
//! error) is not a failure. Nothing more is written, nothing is printed about it, and the exit
//! code is the one the command would have had anyway. Any other write error (a full disk behind
//! `> file`) is reported once and makes the exit code 125. `render --output -` does not use
//! this: a config cut short is an error there.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{self, Error};
use crate::exit::Exit;

/// The reader went away: write nothing more.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Another write error, reported at the end by [`finish`].
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes all of `bytes` to stdout, unless an earlier write found the reader gone.
pub fn write(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// `print!` through [`write`].
pub fn write_fmt(args: fmt::Arguments<'_>) {
    write(args.to_string().as_bytes());
}

/// `println!` through [`write`].
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut s = args.to_string();
    s.push('\n');
    write(s.as_bytes());
}

/// The exit code after the command's output: a write error other than a closed pipe is
/// reported and makes it 125; a closed pipe changes nothing.
pub fn finish(exit: Exit) -> Exit {
    let failed = FAILED.lock().unwrap_or_else(|p| p.into_inner()).take();
    match failed {
        Some(cause) => {
            error::print(&Error::new("cannot write to stdout").cause(cause));
            Exit::Failed
        }
        None => exit,
    }
}

/// `print!` to cme-exec's stdout; a closed pipe is not an error (see [`crate::stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!($($arg)*))
    };
}

/// `println!` to cme-exec's stdout; a closed pipe is not an error (see [`crate::stdout`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_line(format_args!($($arg)*))
    };
}
