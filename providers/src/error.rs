//! The one error type providers return. Its text is shown to users, so it is built from
//! facts that are never secret: the reference, an HTTP status, a store's error code or its
//! `errors` list, an I/O error kind. Never a value, a token or a response body.

use std::fmt;

/// The address of a page of the user documentation (`page` is relative to `docs/`, with an
/// optional `#anchor`), at this version's tag: an installed binary has no `docs/` beside it.
pub fn docs_url(page: &str) -> String {
    format!(
        "{}/blob/v{}/docs/{page}",
        env!("CARGO_PKG_REPOSITORY"),
        env!("CARGO_PKG_VERSION")
    )
}

/// Why a fetch failed, in the terms the resolver and `check` need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The document, version or key does not exist.
    NotFound,
    /// The store refused: bad credentials, or a policy that does not allow the read.
    Denied,
    /// The reference or a setting is wrong, or the payload is not what the field needs.
    Invalid,
    /// A network error or a 5xx/429 that outlasted the retries.
    Unavailable,
    /// The overall deadline passed.
    Timeout,
}

#[derive(Clone, Debug)]
pub struct FetchError {
    pub kind: ErrorKind,
    message: String,
    hint: Option<String>,
}

impl FetchError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The answer of a backend this build leaves out: each backend's module gives it from its
    /// own `#[cfg(not(feature = ...))]` build (ripgrep's PCRE2 stub), with the same words.
    pub fn left_out(kind: &str, name: &str, feature: &str) -> Self {
        FetchError::new(
            ErrorKind::Unavailable,
            format!("the {kind} provider `{name}` is not available in this build of cme-exec"),
        )
        .with_hint(format!(
            "rebuild with `cargo install cme-exec --features {feature}` (or keep the default \
             features); `cme-exec --version` lists the backends of this build"
        ))
    }

    /// An I/O error on a local path, described by its kind (the OS text never holds file contents).
    pub fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Denied,
            _ => ErrorKind::Unavailable,
        };
        FetchError::new(kind, format!("cannot read {}: {err}", path.display()))
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}
