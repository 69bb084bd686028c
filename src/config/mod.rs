//! `cme-exec.toml`: what a configuration holds ([`Config`]), where it is found
//! ([`discovery`]), how a file is parsed ([`parsing`]), and the form without a file, from
//! `CME_EXEC_*` variables ([`environment`]).
//!
//! Parsing walks the TOML tree by hand instead of deriving `Deserialize`: serde stops at the
//! first error and its messages quote the offending value, while here every problem is
//! collected (file, table, key) and no value is ever repeated, because a user may have pasted a
//! secret where a reference belongs.

pub mod discovery;
pub mod environment;
pub mod instance;
pub mod parsing;
pub mod trust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cme_exec_providers::reference::Reference;
use cme_exec_providers::ProviderSettings;

pub use discovery::{from_env_var, load, load_file, read_config_bytes};
pub use environment::from_environment;
pub use instance::{normalise_url, redact_user_info, slug, Field, Product};
pub use parsing::{parse_bytes, parse_table};

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// No file: `CME_EXEC_*` variables.
    Environment,
}

impl Source {
    /// Relative paths in the configuration resolve against this directory.
    pub fn base_dir(&self, cwd: &Path) -> PathBuf {
        match self {
            Source::File(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => cwd.join(d),
                _ => cwd.to_owned(),
            },
            Source::Environment => cwd.to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Environment => "environment".into(),
        }
    }
}

/// A field's configured value. `Debug` is written by hand: a literal user name is treated as
/// a secret (it is masked, and `explain` fingerprints it), so it is never printed.
#[derive(Clone)]
pub enum FieldSpec {
    Reference(Reference),
    /// Only for fields that allow it (`username`, `cloud_id`): not a secret.
    Literal(String),
}

impl std::fmt::Debug for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldSpec::Reference(r) => f.debug_tuple("Reference").field(r).finish(),
            FieldSpec::Literal(_) => f.write_str("Literal([REDACTED])"),
        }
    }
}

/// `[confluence."URL"]` or `[jira."URL"]`. No derived `Debug`: it holds literal field values.
#[derive(Clone)]
pub struct Instance {
    pub product: Product,
    /// Normalised as cme matches it.
    pub url: String,
    /// How the table was written, for messages: `confluence."https://x"`.
    pub table: String,
    pub fields: BTreeMap<Field, FieldSpec>,
    pub from: Option<Reference>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("product", &self.product)
            .field("url", &self.url)
            .field("table", &self.table)
            .field("fields", &self.fields)
            .field("from", &self.from)
            .finish()
    }
}

/// `[cme]`.
#[derive(Clone, Debug)]
pub struct CmeSettings {
    /// The secret-free base config; `None` means the file cme itself would use.
    pub base_config: Option<PathBuf>,
    /// Write cme's non-secret changes back into the base config after the run.
    pub write_back: bool,
}

impl Default for CmeSettings {
    fn default() -> Self {
        CmeSettings {
            base_config: None,
            write_back: true,
        }
    }
}

/// The whole configuration, checked. No derived `Debug`: its instances hold literal values.
#[derive(Clone)]
pub struct Config {
    pub source: Source,
    /// Declared providers by name (the name is their scheme).
    pub providers: BTreeMap<String, ProviderSettings>,
    pub instances: Vec<Instance>,
    /// `[auth] from`: one document holding `{"confluence": {...}, "jira": {...}}`.
    pub auth_from: Option<Reference>,
    pub cme: CmeSettings,
    /// A `./cme-exec.toml` used because its trust record matched: cme-exec's own write-back
    /// into a pinned base config updates that record.
    pub trusted_in_cwd: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("providers", &self.providers)
            .field("instances", &self.instances)
            .field("auth_from", &self.auth_from)
            .field("cme", &self.cme)
            .finish()
    }
}

impl Config {
    /// The directory a file config's relative paths resolve against (the canonical directory
    /// of the file); `None` for the environment-only configuration.
    pub fn file_dir(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => p.parent(),
            Source::Environment => None,
        }
    }

    /// The files this config makes cme-exec run or read as configuration, hashed now: helper
    /// programs named by a relative path and the `[cme] base_config`. A trust record covers
    /// them (trust.rs).
    pub fn pinned_files(&self) -> Vec<trust::Pinned> {
        let Some(dir) = self.file_dir() else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = self
            .providers
            .values()
            .flat_map(|p| p.local_programs().into_iter().map(|p| dir.join(p)))
            .collect();
        if let Some(b) = &self.cme.base_config {
            paths.push(dir.join(b));
        }
        paths.sort();
        paths.dedup();
        paths.into_iter().map(trust::Pinned::now).collect()
    }

    /// The provider a scheme names: a declared one, else a built-in default.
    pub fn provider_for(&self, scheme: &str) -> Option<ProviderSettings> {
        if let Some(p) = self.providers.get(scheme) {
            return Some(p.clone());
        }
        ProviderSettings::builtin(scheme)
    }

    /// Every reference with the place it was written, in config order.
    pub fn references(&self) -> Vec<(&Reference, String)> {
        let mut out = Vec::new();
        if let Some(r) = &self.auth_from {
            out.push((r, "[auth] from".to_owned()));
        }
        for i in &self.instances {
            if let Some(r) = &i.from {
                out.push((r, format!("[{}] from", i.table)));
            }
            for (f, spec) in &i.fields {
                if let FieldSpec::Reference(r) = spec {
                    out.push((r, format!("[{}] {f}", i.table)));
                }
            }
        }
        out
    }
}

// What the tests reach through `super::*`.
#[cfg(test)]
use {crate::error::Error, cme_exec_providers::Kind, parsing::sanitise_toml_message};

#[cfg(test)]
mod tests;
