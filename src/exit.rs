//! Exit codes. `main` returns one of these; nothing calls `process::exit` (clippy denies it),
//! so cleanup always runs first.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success,
    /// 1: `check` or `explain` found a problem.
    CheckFailed,
    /// The child's own exit code.
    Child(u8),
    /// 128+N: the child died from signal N (also used when cme-exec itself is interrupted by
    /// signal N before the child started).
    Signal(i32),
    /// 126: the command exists but cannot be executed.
    CannotExecute,
    /// 127: the command was not found.
    NotFound,
    /// 125: cme-exec failed before the child ran (configuration, a reference, the store).
    Failed,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::CheckFailed => 1,
            Exit::Child(c) => c,
            // Never 0 and never wrapped: signal numbers are 1..=64 on Linux.
            Exit::Signal(n) => u8::try_from(128 + n.clamp(1, 127)).unwrap_or(255),
            Exit::CannotExecute => 126,
            Exit::NotFound => 127,
            Exit::Failed => 125,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::Signal(15).code(), 143);
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(Exit::Failed.code(), 125);
        assert_eq!(Exit::Child(42).code(), 42);
    }
}
