//! The `aws-sm` provider: AWS Secrets Manager.
//!
//! ```toml
//! pat       = "aws-sm://prod/jira#pat"                          # a name; #KEY reads JSON
//! api_token = "aws-sm://prod/wiki?version_stage=AWSPREVIOUS#api_token"
//! api_token = "aws-sm://prod/wiki?version_id=4f1c...#api_token"  # 32-64 characters
//! from      = "aws-sm:///arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/wiki-AbCdEf"
//! from      = "aws-sm:arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/wiki"
//!
//! [providers.aws]                 # optional: the built-in `aws-sm` scheme needs no table
//! kind = "aws-sm"
//! region = "eu-central-1"         # default: the SDK's chain (AWS_REGION, the profile, IMDS)
//! profile = "atlassian"           # default: AWS_PROFILE, else "default"
//! endpoint_url = "https://vpce-0123.secretsmanager.eu-central-1.vpce.amazonaws.com"
//! allow_http = false              # plain http:// only to loopback unless true
//! role_arn = "arn:aws:iam::123456789012:role/cme-exec"   # assumed with the chain's credentials
//! external_id = "..."             # with role_arn
//! session_name = "cme-exec"       # with role_arn (default "cme-exec")
//! ```
//!
//! # References
//!
//! `SCHEME://NAME` (or `SCHEME:NAME`) names a secret; `SCHEME:///ARN` (three slashes) or
//! `SCHEME:ARN` gives a full or partial ARN. `aws-sm://arn:...` is refused: a URL parser
//! reads `arn` as a host and `aws:secretsmanager:...` as its port, so the two forms above are
//! the ones every URL parser agrees on. A name is 1-512 ASCII letters, digits and `/_+=.@-`
//! (Secrets Manager's own rule); `@`, `+` and `=` are written as they are. An ARN's region
//! wins over the provider's, so a secret in another region (or account) is read by its ARN.
//!
//! `?version_stage=S` or `?version_id=V` (not both) select a version; without them, and with
//! `version_stage=AWSCURRENT`, the current one. `SecretString` is used as text (JSON is read
//! for `#KEY` and for `from`); `SecretBinary` must be UTF-8 text.
//!
//! # Credentials
//!
//! The AWS SDK's default chain: environment keys, the shared config and credentials files and
//! their profiles (`role_arn`/`source_profile`, `web_identity_token_file`), web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: EKS IRSA, GitHub Actions and other CI
//! OIDC), container credentials (ECS, EKS Pod Identity), and EC2 instance metadata, and the
//! SDK's `sso` (IAM Identity Center profiles, from the AWS CLI's token cache) and
//! `credentials-process` (a profile's helper, whose output is never shown) features. The
//! credential variables the chain reads ([`CREDENTIAL_VARS`]) never reach the child. The SDK's
//! `LOG_SENSITIVE_BODIES=true`, which would log secret values, is refused.
//!
//! The client itself exists only with the `aws-sm` cargo feature; settings and references are
//! parsed and checked in every build.

#[cfg(feature = "aws-sm")]
mod client;
#[cfg(feature = "aws-sm")]
mod write;

use std::sync::Arc;

use crate::provider::Destination;
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

pub use crate::aws_shared::{
    check_endpoint, AwsSettings as Settings, CREDENTIAL_VARS, DEFAULT_SESSION_NAME,
    LOG_SENSITIVE_BODIES,
};
use crate::aws_shared::{check_region, is_account, is_partition};

/// The endpoint variables the SDK reads, checked like `endpoint_url` (https, or http to loopback).
pub const ENDPOINT_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
];

/// Which version of a secret a reference asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// No parameter, or `version_stage=AWSCURRENT`: the same request.
    Current,
    Stage(String),
    Id(String),
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Current => f.write_str("AWSCURRENT"),
            Version::Stage(s) => write!(f, "version stage {s}"),
            Version::Id(v) => write!(f, "version id {v}"),
        }
    }
}

/// What a reference names, in Secrets Manager's terms. Two references with equal targets are
/// one request, even when written differently (`aws-sm://x` and `aws-sm:x?version_stage=AWSCURRENT`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// A name, or a full or partial ARN, as Secrets Manager's `SecretId`.
    pub secret_id: String,
    /// The region of an ARN, which wins over the provider's.
    pub arn_region: Option<String>,
    pub version: Version,
}

impl Target {
    pub fn is_arn(&self) -> bool {
        self.arn_region.is_some()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.secret_id)?;
        if self.version != Version::Current {
            write!(f, " ({})", self.version)?;
        }
        Ok(())
    }
}

/// Checks a reference's location and parameters (in every build, before anything is fetched).
pub fn check_document(doc: &Document) -> Result<(), String> {
    parse_target(doc).map(|_| ())
}

/// Reads a reference as a secret id and version.
pub fn parse_target(doc: &Document) -> Result<Target, String> {
    doc.only_params(&["version_stage", "version_id"])?;
    let version = match (doc.param("version_stage"), doc.param("version_id")) {
        (Some(_), Some(_)) => return Err("give `version_stage` or `version_id`, not both".into()),
        (Some(stage), None) => {
            if stage.len() > 256 || stage.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("`version_stage` must be 1-256 characters without spaces".into());
            }
            if stage == "AWSCURRENT" {
                Version::Current
            } else {
                Version::Stage(stage.to_owned())
            }
        }
        (None, Some(id)) => {
            let ok = (32..=64).contains(&id.len())
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(
                    "`version_id` must be 32-64 letters, digits and `-` (a version's UUID)".into(),
                );
            }
            Version::Id(id.to_owned())
        }
        (None, None) => Version::Current,
    };

    let loc = doc.location.as_str();
    let (secret_id, arn_region) = if doc.has_authority {
        if let Some(arn) = loc.strip_prefix('/') {
            if !arn.starts_with("arn:") {
                return Err(
                    "`aws-sm:///` must be followed by an ARN (arn:aws:secretsmanager:...); \
                     write a secret name as aws-sm://NAME"
                        .into(),
                );
            }
            let region = check_arn(arn)?;
            (arn.to_owned(), Some(region))
        } else if loc.starts_with("arn:") {
            return Err(
                "write an ARN after three slashes (aws-sm:///arn:aws:secretsmanager:...) or \
                 after the colon alone (aws-sm:arn:aws:secretsmanager:...): in aws-sm://arn:... \
                 a URL parser reads `arn` as a host name and the rest as a port"
                    .into(),
            );
        } else {
            check_name(loc)?;
            (loc.to_owned(), None)
        }
    } else if loc.starts_with("arn:") {
        let region = check_arn(loc)?;
        (loc.to_owned(), Some(region))
    } else {
        check_name(loc)?;
        (loc.to_owned(), None)
    };
    Ok(Target {
        secret_id,
        arn_region,
        version,
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err("a secret name is 1-512 characters long".into());
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        let shown = if c.is_ascii_graphic() {
            format!("`{c}`")
        } else {
            format!("U+{:04X}", c as u32)
        };
        return Err(format!(
            "a secret name may contain only ASCII letters, digits and /_+=.@- (found {shown})"
        ));
    }
    Ok(())
}

/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME[-SUFFIX]`; returns the region.
fn check_arn(arn: &str) -> Result<String, String> {
    const SHAPE: &str = "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME";
    if arn.len() > 2048 {
        return Err("an ARN is at most 2048 characters long".into());
    }
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    if parts.len() >= 3
        && parts[2] != "secretsmanager"
        && parts[2]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "an ARN of service `{}`, not a Secrets Manager secret ({SHAPE})",
            parts[2]
        ));
    }
    if parts.len() != 7 || !is_partition(parts[1]) || parts[2] != "secretsmanager" {
        return Err(format!("not a Secrets Manager ARN ({SHAPE})"));
    }
    if check_region(parts[3]).is_err() {
        return Err(format!("the ARN's region is not a region name ({SHAPE})"));
    }
    if !is_account(parts[4]) {
        return Err(format!(
            "the ARN's account is not a 12-digit account id ({SHAPE})"
        ));
    }
    if parts[5] != "secret" {
        return Err(format!("the ARN does not name a secret ({SHAPE})"));
    }
    check_name(parts[6])?;
    Ok(parts[3].to_owned())
}

/// `kind = "aws-sm"`, with the `aws-sm` cargo feature.
pub const KIND: Kind = Kind::new("aws-sm");

/// The `aws-sm` backend, listed in `registry::BACKENDS`.
pub struct AwsSmBackend;

impl Backend for AwsSmBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn feature(&self) -> Option<&'static str> {
        Some("aws-sm")
    }

    fn available(&self) -> bool {
        cfg!(feature = "aws-sm")
    }

    fn parse(&self, r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(Settings::parse(r))
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(Settings::default()))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        check_document(doc)
    }

    fn expiry_source(&self) -> &'static str {
        "AWS tag"
    }

    fn destination(&self, scheme: &str, location: &str) -> Option<Result<Destination, FetchError>> {
        Some(destination(scheme, location))
    }
}

/// `import --to SCHEME://PREFIX`: one secret per name, named `PREFIX` + name (`prod/cme/` +
/// `confluence-company.atlassian.net`). An empty prefix is allowed; the names then stand alone.
pub fn destination(scheme: &str, prefix: &str) -> Result<Destination, FetchError> {
    let bad = || {
        FetchError::invalid(format!(
            "expected {scheme}://PREFIX/ (a secret name prefix)"
        ))
    };
    if prefix.starts_with('/') || prefix.starts_with("arn:") || prefix.len() > 400 {
        return Err(bad());
    }
    if !prefix.is_empty() {
        // The prefix with a name after it must be a valid secret name.
        check_name(&format!("{prefix}x")).map_err(|why| bad().with_hint(why))?;
    }
    Ok(Destination::new("AWS Secrets Manager", prefix, ""))
}

impl BackendSettings for Settings {
    fn describe(&self) -> String {
        Settings::describe(self, KIND.name())
    }

    fn details(&self) -> Vec<String> {
        self.details()
    }

    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        build(name, self, ctx)
    }
}

/// Builds the provider.
#[cfg(feature = "aws-sm")]
pub fn build(
    name: &str,
    settings: &Settings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    client::build(name, settings, ctx)
}

/// This build has no AWS client: the one answer for an aws-sm provider, whatever its settings.
#[cfg(not(feature = "aws-sm"))]
pub fn build(
    name: &str,
    _settings: &Settings,
    _ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::left_out(KIND.name(), name, "aws-sm"))
}

#[cfg(test)]
mod tests;
