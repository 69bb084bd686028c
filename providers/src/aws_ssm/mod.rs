//! The `aws-ssm` provider: AWS Systems Manager Parameter Store.
//!
//! ```toml
//! pat       = "aws-ssm:///prod/jira/pat"             # a hierarchical name: /prod/jira/pat
//! pat       = "aws-ssm://jira-pat"                   # a name without a hierarchy
//! api_token = "aws-ssm:///prod/wiki/api_token:3"     # version 3
//! api_token = "aws-ssm:///prod/wiki/api_token:live"  # the version labelled `live`
//! from      = "aws-ssm:///prod/wiki/"                # a path: every parameter under it, one object
//! from      = "aws-ssm:///prod/?recursive=true#wiki" # the whole tree; keys are relative names
//!
//! [providers.ssm]                 # optional: the built-in `aws-ssm` scheme needs no table
//! kind = "aws-ssm"
//! region = "eu-central-1"         # every key of an aws-sm table works here, with the same rules
//! ```
//!
//! # References
//!
//! A name with a hierarchy starts with `/`, so it is written after three slashes
//! (`aws-ssm:///prod/jira/pat`) or after the colon (`aws-ssm:/prod/jira/pat`); a name without one
//! after two (`aws-ssm://jira-pat`). `aws-ssm://prod/jira` is refused (Parameter Store would read
//! `prod/jira` as a hierarchy without its leading `/`). `NAME:N` selects version N, `NAME:LABEL`
//! the version with that label. A reference ending in `/` is a *path*: one document whose keys are
//! the names of the parameters under it (relative to the path; `?recursive=true` includes deeper
//! levels, with their relative paths as keys).
//!
//! `String`, `StringList` (as its comma-separated text) and `SecureString` (decrypted) are read as
//! text; JSON in a parameter is read for `#KEY` and `from` like any provider's text.
//!
//! # Requests
//!
//! Names are read with `GetParameters`, 10 per call; a name with a version or label with
//! `GetParameter` (the batch answer tells those apart only by a field that not every
//! implementation fills in); a path with `GetParametersByPath`, page by page. Everything
//! concurrently within the resolver's bound.
//!
//! # Credentials, region, endpoint
//!
//! Exactly those of `aws-sm` (the settings are [`AwsSettings`]; see `docs/providers/aws-sm.md`),
//! with `AWS_ENDPOINT_URL_SSM` as the service's endpoint variable. An `aws-sm` and an `aws-ssm`
//! provider with the same settings share one AWS configuration in a run
//! ([`crate::aws_shared::sdk::load`]).

#[cfg(feature = "aws-ssm")]
mod client;

use std::sync::Arc;

use crate::aws_shared::AwsSettings;
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

/// `kind = "aws-ssm"`, with the `aws-ssm` cargo feature.
pub const KIND: Kind = Kind::new("aws-ssm");

/// The most names one `GetParameters` call takes.
pub const BATCH_MAX: usize = 10;

/// The `aws-ssm` backend, listed in `registry::BACKENDS`.
pub struct AwsSsmBackend;

impl Backend for AwsSsmBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn feature(&self) -> Option<&'static str> {
        Some("aws-ssm")
    }

    fn available(&self) -> bool {
        cfg!(feature = "aws-ssm")
    }

    fn parse(&self, r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(Settings(AwsSettings::parse(r)))
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(Settings::default()))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        parse_target(doc).map(|_| ())
    }
}

/// `[providers.NAME]` with `kind = "aws-ssm"`: the AWS settings every AWS backend reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings(pub AwsSettings);

impl BackendSettings for Settings {
    fn describe(&self) -> String {
        self.0.describe(KIND.name())
    }

    fn details(&self) -> Vec<String> {
        self.0.details()
    }

    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        build(name, &self.0, ctx)
    }
}

/// What a reference names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A parameter's name, with its `:VERSION` or `:LABEL` selector as Parameter Store takes it.
    Name(String),
    /// Every parameter under a path (ending in `/`).
    Path { path: String, recursive: bool },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Name(n) => write!(f, "parameter {n}"),
            Target::Path {
                path,
                recursive: false,
            } => write!(f, "path {path}"),
            Target::Path {
                path,
                recursive: true,
            } => write!(f, "path {path} (recursive)"),
        }
    }
}

/// Reads a reference as a parameter name or a path (in every build, before anything is fetched).
pub fn parse_target(doc: &Document) -> Result<Target, String> {
    doc.only_params(&["recursive"])?;
    let loc = doc.location.as_str();
    // `aws-ssm:///a/b` and `aws-ssm:/a/b` give `/a/b`; `aws-ssm://a` and `aws-ssm:a` give `a`.
    if doc.has_authority && !loc.starts_with('/') && loc.contains('/') {
        return Err(format!(
            "a hierarchical parameter name starts with `/`: write {}:///{loc}",
            doc.scheme
        ));
    }
    if loc.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a parameter name has no spaces or control characters".into());
    }
    let recursive = match doc.param("recursive") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err("`recursive` is true or false".into()),
    };
    if let Some(path) = loc.strip_suffix('/') {
        if !loc.starts_with('/') {
            return Err("a path starts with `/` (aws-ssm:///prod/wiki/)".into());
        }
        if path.contains(':') {
            return Err("a path has no version or label".into());
        }
        check_name(if path.is_empty() { "/x" } else { path })?;
        return Ok(Target::Path {
            path: loc.to_owned(),
            recursive,
        });
    }
    if recursive {
        return Err("`recursive` applies to a path, which ends in `/`".into());
    }
    let (name, selector) = match loc.rsplit_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (loc, None),
    };
    check_name(name)?;
    if let Some(s) = selector {
        let version = s.chars().all(|c| c.is_ascii_digit());
        let label = s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !s.starts_with(|c: char| c.is_ascii_digit());
        if s.is_empty() || !(version || label) {
            return Err(
                "after `:` comes a version number or a label (letters, digits, `.`, `-`, `_`, \
                 not starting with a digit)"
                    .into(),
            );
        }
    }
    Ok(Target::Name(loc.to_owned()))
}

/// Whether a name ends in a `:VERSION` or `:LABEL` selector (names themselves have no `:`).
pub fn has_selector(name: &str) -> bool {
    name.contains(':')
}

/// Parameter Store's rule for names: 1-2048 characters of letters, digits and `_.-/`, at most 15
/// levels, not starting with `aws` or `ssm` (any case).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 2048 {
        return Err("a parameter name is 1-2048 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        let shown = if c.is_ascii_graphic() {
            format!("`{c}`")
        } else {
            format!("U+{:04X}", c as u32)
        };
        return Err(format!(
            "a parameter name may contain only ASCII letters, digits and _.-/ (found {shown})"
        ));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err("a parameter name cannot start with `aws` or `ssm`".into());
    }
    if name.matches('/').count() > 15 {
        return Err("a parameter name has at most 15 levels".into());
    }
    if name.contains("//") {
        return Err("a parameter name has no empty level (`//`)".into());
    }
    Ok(())
}

/// Builds the provider.
#[cfg(feature = "aws-ssm")]
pub fn build(
    name: &str,
    settings: &AwsSettings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    client::build(name, settings, ctx)
}

/// This build has no SSM client: the one answer for an aws-ssm provider, whatever its settings.
#[cfg(not(feature = "aws-ssm"))]
pub fn build(
    name: &str,
    _settings: &AwsSettings,
    _ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::left_out(KIND.name(), name, "aws-ssm"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;

    fn target(raw: &str) -> Result<Target, String> {
        parse_target(&Reference::parse(raw).unwrap().document)
    }

    #[test]
    fn names_versions_labels_and_paths() {
        assert_eq!(
            target("aws-ssm:///prod/jira/pat#x").unwrap(),
            Target::Name("/prod/jira/pat".into())
        );
        assert_eq!(
            target("aws-ssm:/prod/jira/pat").unwrap(),
            Target::Name("/prod/jira/pat".into())
        );
        assert_eq!(
            target("aws-ssm://jira-pat").unwrap(),
            Target::Name("jira-pat".into())
        );
        assert_eq!(
            target("aws-ssm:///prod/x:3").unwrap(),
            Target::Name("/prod/x:3".into())
        );
        assert_eq!(
            target("aws-ssm:///prod/x:live").unwrap(),
            Target::Name("/prod/x:live".into())
        );
        assert_eq!(
            target("aws-ssm:///prod/wiki/").unwrap(),
            Target::Path {
                path: "/prod/wiki/".into(),
                recursive: false
            }
        );
        assert_eq!(
            target("aws-ssm:///prod/?recursive=true").unwrap(),
            Target::Path {
                path: "/prod/".into(),
                recursive: true
            }
        );
        for (bad, words) in [
            ("aws-ssm://prod/jira", "starts with `/`"),
            ("aws-ssm:///prod/x:", "version number or a label"),
            ("aws-ssm:///prod/x:1a", "version number or a label"),
            ("aws-ssm:///aws/x", "cannot start with `aws`"),
            ("aws-ssm:///prod/x?recursive=true", "applies to a path"),
            ("aws-ssm:///prod/x?version=1", "unknown parameter"),
            ("aws-ssm:///pr%24od/x", "found `$`"),
        ] {
            let e = target(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }
}
