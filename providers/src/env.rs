//! The `env` provider: `env://NAME` reads the variable `NAME` of cme-exec's environment.
//!
//! The variable is removed from the child's environment (unless the user keeps it with
//! `--keep-env NAME`). `#KEY` reads the value as JSON (or TOML, or dotenv), which lets a CI
//! system hand over one JSON variable with several fields.

use std::sync::Arc;

use async_trait::async_trait;

use crate::payload::{Format, Payload};
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

/// `kind = "env"`: always built in.
pub const KIND: Kind = Kind::new("env");

/// The `env` backend, listed in `registry::BACKENDS`.
pub struct EnvBackend;

impl Backend for EnvBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn parse(&self, _r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(EnvSettings)
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(EnvSettings))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        check_document(doc)
    }
}

/// `kind = "env"` has no settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvSettings;

impl BackendSettings for EnvSettings {
    fn describe(&self) -> String {
        "kind env, environment variables".into()
    }

    fn build(&self, _name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        Ok(Arc::new(EnvProvider::new(ctx)))
    }
}

pub fn check_document(doc: &Document) -> Result<(), String> {
    doc.only_params(&[])?;
    let name = &doc.location;
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(
            "not a variable name (letters, digits and `_`, not starting with a digit)".into(),
        );
    }
    Ok(())
}

pub struct EnvProvider {
    ctx: Arc<Context>,
}

impl EnvProvider {
    pub fn new(ctx: &Arc<Context>) -> Self {
        EnvProvider { ctx: ctx.clone() }
    }
}

#[async_trait]
impl Provider for EnvProvider {
    fn kind(&self) -> Kind {
        KIND
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        let name = &doc.location;
        match self.ctx.env.secret(name) {
            Ok(Some(value)) => Ok(Payload::Text {
                value,
                format: Format::Unknown,
            }),
            Ok(None) => Err(FetchError::not_found(format!(
                "environment variable {name} is not set"
            ))),
            Err(_) => Err(FetchError::invalid(format!(
                "environment variable {name} is not valid UTF-8"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::select_string;
    use crate::{EnvReader, Reference};
    use secrecy::ExposeSecret as _;

    #[test]
    fn reads_and_records_variables() {
        let ctx = Arc::new(Context::new(
            ".".into(),
            EnvReader::from_vars([("TOKEN".into(), "t".into())]),
        ));
        let p = EnvProvider::new(&ctx);
        let doc = Reference::parse("env://TOKEN").unwrap().document;
        let v = futures::executor::block_on(p.fetch(&doc)).unwrap();
        assert_eq!(select_string(&v, None).unwrap().expose_secret(), "t");
        let missing = Reference::parse("env://NOPE").unwrap().document;
        let e = futures::executor::block_on(p.fetch(&missing)).unwrap_err();
        assert!(e.message().contains("NOPE is not set"));
        assert!(ctx.env.consumed().contains("TOKEN"));
    }

    #[test]
    fn names_are_checked() {
        for bad in ["env://1A", "env://A-B", "env://A?x=1"] {
            let doc = Reference::parse(bad).unwrap().document;
            assert!(check_document(&doc).is_err(), "{bad}");
        }
    }
}
