//! The `vault` provider (HashiCorp Vault and OpenBao): `vault://MOUNT/PATH?version=N#KEY`.
//!
//! Settings are parsed in every build; the client exists only with the `vault` feature.

use std::sync::Arc;

use crate::settings::TableReader;
use crate::{Context, Document, FetchError, Provider};

/// `[providers.NAME]` with `kind = "vault"`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub address: Option<String>,
}

impl Settings {
    pub fn parse(r: &mut TableReader<'_, '_>) -> Settings {
        Settings {
            address: r.non_empty_string("address"),
        }
    }
}

pub fn check_document(doc: &Document) -> Result<(), String> {
    doc.only_params(&["version"])?;
    if !doc.location.contains('/') {
        return Err("a Vault reference is vault://MOUNT/PATH".into());
    }
    if let Some(v) = doc.param("version") {
        if v.parse::<u64>().map_or(true, |n| n == 0) {
            return Err("`version` must be a positive integer".into());
        }
    }
    Ok(())
}

pub fn build(
    name: &str,
    _settings: &Settings,
    _ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::unavailable(format!(
        "the vault provider `{name}` is not implemented yet"
    )))
}
