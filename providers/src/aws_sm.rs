//! The `aws-sm` provider (AWS Secrets Manager): `aws-sm://SECRET-ID?version_stage=S#KEY`.
//!
//! Settings are parsed in every build; the client exists only with the `aws-sm` feature.

use std::sync::Arc;

use crate::settings::TableReader;
use crate::{Context, Document, FetchError, Provider};

/// `[providers.NAME]` with `kind = "aws-sm"`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub region: Option<String>,
}

impl Settings {
    pub fn parse(r: &mut TableReader<'_, '_>) -> Settings {
        Settings {
            region: r.non_empty_string("region"),
        }
    }
}

pub fn check_document(doc: &Document) -> Result<(), String> {
    doc.only_params(&["version_stage", "version_id"])?;
    if doc.param("version_stage").is_some() && doc.param("version_id").is_some() {
        return Err("give `version_stage` or `version_id`, not both".into());
    }
    Ok(())
}

pub fn build(
    name: &str,
    _settings: &Settings,
    _ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::unavailable(format!(
        "the aws-sm provider `{name}` is not implemented yet"
    )))
}
