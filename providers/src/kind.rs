//! A backend's name, as a value (a leaf: it imports nothing of the crate).
//!
//! The list of kinds is `registry::BACKENDS`; a `Kind` is only the name a backend
//! answers to in `kind = "..."` and as its built-in scheme, so adding a backend adds no variant
//! anywhere. [`Kind::from_name`], [`Kind::feature`], [`Kind::available`] and
//! [`Kind::check_document`] look the backend up in the registry.

use std::fmt;

/// The kind of a provider: `"file"`, `"vault"`, ... whether or not this build includes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

impl Kind {
    /// A kind by its name; each backend defines its own `KIND` with it.
    pub const fn new(name: &'static str) -> Kind {
        Kind(name)
    }

    /// The name used in `kind = "..."` and as the built-in scheme.
    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
