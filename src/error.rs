//! cme-exec's own errors, and the one place that prints them.
//!
//! An error is a message, optional detail lines (every failed reference, every config
//! problem), causes and a hint. None of them ever holds a secret: they are built from
//! references, paths, keys, statuses and error codes only.

use std::fmt;
use std::io::Write as _;

/// The address of a page of the user documentation (`page` is relative to `docs/`, with an
/// optional `#anchor`), at this version's tag: an installed binary has no `docs/` beside it.
pub fn docs_url(page: &str) -> String {
    format!(
        "{}/blob/v{}/docs/{page}",
        env!("CARGO_PKG_REPOSITORY"),
        env!("CARGO_PKG_VERSION")
    )
}

#[derive(Debug, Clone)]
pub struct Error {
    message: String,
    details: Vec<String>,
    causes: Vec<String>,
    hint: Option<String>,
    /// Exit 125 even from `check` and `explain`, whose other errors exit 1: the run was refused
    /// before anything was checked (an untrusted config file, an unknown CME_EXEC_ variable).
    fatal: bool,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            details: Vec::new(),
            causes: Vec::new(),
            hint: None,
            fatal: false,
        }
    }

    /// Marks the error as a refusal to run at all (exit 125 from every command).
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }

    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// One more line under the message (a failed reference, a config problem).
    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> &[String] {
        &self.details
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        for c in &self.causes {
            write!(f, "\ncaused by: {c}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Prints an error to stderr as `cme-exec: error: ...`, with control characters removed so
/// that nothing in a path or a server's message can drive the terminal.
pub fn print(err: &Error) {
    let text = format!("cme-exec: error: {err}\n");
    let _ = std::io::stderr().write_all(strip_controls(&text).as_bytes());
}

/// Prints a warning to stderr.
pub fn warn(message: impl fmt::Display) {
    let text = format!("cme-exec: warning: {message}\n");
    let _ = std::io::stderr().write_all(strip_controls(&text).as_bytes());
}

/// Prints a note (progress, not a problem) to stderr.
pub fn note(message: impl fmt::Display) {
    let text = format!("cme-exec: {message}\n");
    let _ = std::io::stderr().write_all(strip_controls(&text).as_bytes());
}

/// Removes control characters except newlines and tabs.
pub fn strip_controls(s: &str) -> String {
    s.chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_details_causes_and_hint() {
        let e = Error::new("m").detail("d1").cause("c").hint("h");
        assert_eq!(e.to_string(), "m\n  d1\ncaused by: c\nhint: h");
    }

    #[test]
    fn strips_escape_sequences() {
        assert_eq!(strip_controls("a\x1b[31mb\n"), "a[31mb\n");
    }
}
