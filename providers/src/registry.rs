//! Every backend, listed once ([`BACKENDS`]), and what is done through the list: finding a
//! backend by its kind, parsing `[providers.NAME]`, the settings of a built-in scheme, checking
//! a reference, the destinations `import` can write to, building a provider, and the backends
//! of this build (`--version`).
//!
//! Adding a backend: a module (file or folder) under `providers/src/` with its [`Backend`],
//! settings and left-out stub, one line in [`BACKENDS`] (and `pub mod` in `lib.rs`), one line in
//! the conformance suite, and its page in `docs/providers/`. This module is the top floor: it
//! imports the backends; no backend imports it or another backend.

use std::fmt;
use std::sync::Arc;

use crate::provider::{Backend, BackendSettings, Destination, Provider};
use crate::table::TableReader;
use crate::{aws_sm, aws_ssm, command, env, file, keyring, vault};
use crate::{Context, Document, FetchError, Kind};

/// Every backend cme-exec knows, whether or not this build includes its client.
pub static BACKENDS: &[&dyn Backend] = &[
    &env::EnvBackend,
    &file::FileBackend,
    &command::CommandBackend,
    &vault::VaultBackend,
    &aws_sm::AwsSmBackend,
    &aws_ssm::AwsSsmBackend,
    &keyring::KeyringBackend,
];

/// The backend of a kind name.
pub fn backend(name: &str) -> Option<&'static dyn Backend> {
    BACKENDS.iter().copied().find(|b| b.kind().name() == name)
}

/// The kind names, for messages (`"file", "env", ...`).
pub fn kind_list() -> String {
    let names: Vec<String> = BACKENDS
        .iter()
        .map(|b| format!("\"{}\"", b.kind()))
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The built-in schemes (backends usable without a table), for messages.
pub fn builtin_schemes() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .filter(|b| b.builtin().is_some())
        .map(|b| b.kind().name())
        .collect()
}

/// The kinds `import` can store documents in, for messages (`file, vault, aws-sm`).
pub fn writable_kinds() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .filter(|b| b.destination("x", "/x").is_some())
        .map(|b| b.kind().name())
        .collect()
}

/// The `CME_EXEC_*` variables the backends read themselves, in every build.
pub fn env_names() -> Vec<String> {
    BACKENDS.iter().flat_map(|b| b.env_names()).collect()
}

/// `+vault -aws-sm ...`: the backends with a feature and whether this build has them.
pub fn features_line() -> String {
    let parts: Vec<String> = BACKENDS
        .iter()
        .filter_map(|b| {
            let f = b.feature()?;
            Some(format!("{}{f}", if b.available() { '+' } else { '-' }))
        })
        .collect();
    parts.join(" ")
}

impl Kind {
    /// The kind a `kind = "..."` names, if cme-exec knows it (in every build).
    pub fn from_name(name: &str) -> Option<Kind> {
        backend(name).map(|b| b.kind())
    }

    fn backend(self) -> &'static dyn Backend {
        backend(self.name()).expect("a Kind is made only from a registered backend's name")
    }

    /// The cargo feature that brings this backend in, if it has one.
    pub fn feature(self) -> Option<&'static str> {
        self.backend().feature()
    }

    /// Whether this build includes the backend.
    pub fn available(self) -> bool {
        self.backend().available()
    }

    /// Checks the shape of a document's location and parameters for this kind, so that a bad
    /// reference is a configuration error before anything is fetched (and in every build).
    pub fn check_document(self, doc: &Document) -> Result<(), String> {
        self.backend().check_document(doc)
    }

    /// Where `import --to SCHEME://LOCATION` puts documents in a store of this kind, or why
    /// not; `None` when this kind cannot store documents ([`Backend::destination`]).
    pub fn destination(
        self,
        scheme: &str,
        location: &str,
    ) -> Option<Result<Destination, FetchError>> {
        self.backend().destination(scheme, location)
    }

    /// Where this kind of store keeps a document's expiry, for messages.
    pub fn expiry_source(self) -> &'static str {
        self.backend().expiry_source()
    }
}

/// The settings of one provider: its kind and what its backend parsed. Parsed in every build,
/// whatever its features.
#[derive(Clone)]
pub struct ProviderSettings {
    kind: Kind,
    settings: Arc<dyn BackendSettings>,
}

impl ProviderSettings {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The settings a built-in scheme uses when no table declares it.
    pub fn builtin(scheme: &str) -> Option<ProviderSettings> {
        let b = backend(scheme)?;
        Some(ProviderSettings {
            kind: b.kind(),
            settings: b.builtin()?,
        })
    }

    /// Parses a `[providers.NAME]` table; `kind` has already been read from it.
    pub fn parse(kind: Kind, r: &mut TableReader<'_, '_>) -> ProviderSettings {
        ProviderSettings {
            kind,
            settings: kind.backend().parse(r),
        }
    }

    /// One line: what the provider reaches and how (for `trust`).
    pub fn describe(&self) -> String {
        self.settings.describe()
    }

    /// The rest of what `trust` shows: programs and arguments, certificate files, where each
    /// credential is read from.
    pub fn details(&self) -> Vec<String> {
        self.settings.details()
    }

    /// Programs named by a path relative to the config file's directory.
    pub fn local_programs(&self) -> Vec<&std::path::Path> {
        self.settings.local_programs()
    }

    /// `check --offline`: what can be said of a reference without the store, if anything.
    pub fn check_offline(
        &self,
        ctx: &Arc<Context>,
        doc: &Document,
    ) -> Option<Result<String, FetchError>> {
        self.settings.check_offline(ctx, doc)
    }
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderSettings({})", self.settings.describe())
    }
}

/// Builds a provider from its settings; a backend left out of this build answers for itself.
pub fn build(
    name: &str,
    settings: &ProviderSettings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    settings.settings.build(name, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_a_distinct_valid_name() {
        let mut seen = std::collections::BTreeSet::new();
        for b in BACKENDS {
            let name = b.kind().name();
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(
                name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name} is not a valid scheme"
            );
            assert_eq!(Kind::from_name(name), Some(b.kind()));
        }
        assert_eq!(Kind::from_name("nope"), None);
    }

    #[test]
    fn an_empty_table_parses_and_names_no_secret() {
        for b in BACKENDS {
            let table = toml::Table::new();
            let mut problems = Vec::new();
            let mut r = TableReader::new(&table, "providers.x", &mut problems);
            let s = ProviderSettings::parse(b.kind(), &mut r);
            r.finish();
            // A backend may require keys (the command provider needs its command): then the
            // problems name them, and only them.
            for p in &problems {
                assert_eq!(p.table, "providers.x", "{}: {p:?}", b.kind());
                assert!(p.key.is_some(), "{}: {p:?}", b.kind());
            }
            assert!(s.describe().starts_with(&format!("kind {}", b.kind())));
        }
    }

    #[test]
    fn a_left_out_backend_names_its_feature() {
        let ctx = Arc::new(Context::new(".".into(), crate::EnvReader::from_vars([])));
        for b in BACKENDS {
            let Some(feature) = b.feature() else {
                assert!(
                    b.available(),
                    "{} has no feature, so it is always built",
                    b.kind()
                );
                continue;
            };
            if b.available() {
                continue;
            }
            let s = b
                .builtin()
                .expect("a backend with a feature has a built-in scheme here");
            let e = s
                .build("p", &ctx)
                .err()
                .expect("a left-out backend builds nothing");
            assert!(e.message().contains("not available in this build"), "{e}");
            assert!(
                e.hint().unwrap().contains(&format!("--features {feature}")),
                "{e}"
            );
        }
        assert!(features_line().contains("vault") && features_line().contains("aws-sm"));
    }
}
