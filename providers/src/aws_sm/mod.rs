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
//! OIDC), container credentials (ECS, EKS Pod Identity), and EC2 instance metadata. This build
//! leaves out the SDK's `sso` and `credentials-process` features: a profile using
//! `sso_session`/`sso_start_url` or `credential_process` is reported as unsupported. The
//! credential variables the chain reads ([`CREDENTIAL_VARS`]) never reach the child. The SDK's
//! `LOG_SENSITIVE_BODIES=true`, which would log secret values, is refused.
//!
//! The client itself exists only with the `aws-sm` cargo feature; settings and references are
//! parsed and checked in every build.

#[cfg(feature = "aws-sm")]
mod client;
#[cfg(feature = "aws-sm")]
mod diagnose;

use std::sync::Arc;

use crate::settings::TableReader;
use crate::{Context, Document, FetchError, Provider};

/// Environment variables that hold AWS credentials or point at them. Whenever an `aws-sm`
/// provider is used they are treated as consumed, so the child does not inherit them (the
/// user can keep one with `--keep-env NAME`). Region, profile and endpoint variables are not
/// credentials and stay.
pub const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    // The legacy name of AWS_SESSION_TOKEN, still read by boto and older CLIs.
    "AWS_SECURITY_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The endpoint variables the SDK reads, checked like `endpoint_url` (https, or http to loopback).
pub const ENDPOINT_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
];

/// The AWS SDK logs the bodies of responses it marks sensitive (secret values) at trace level
/// when this is `true`; the provider refuses to run then.
pub const LOG_SENSITIVE_BODIES: &str = "LOG_SENSITIVE_BODIES";

/// The default `session_name` for `role_arn`: it shows in CloudTrail as the assumed role's session.
pub const DEFAULT_SESSION_NAME: &str = "cme-exec";

/// `[providers.NAME]` with `kind = "aws-sm"`. Nothing here is secret (`external_id` is an
/// identifier that AWS does not treat as a secret either), so `Debug` is derived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// Sign requests to a configured `endpoint_url` that is not the environment's
    /// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`) with the environment's AWS
    /// credentials. Without it such an endpoint is refused: ambient credentials go only where
    /// the environment sends them.
    pub use_ambient_credentials: bool,
    pub allow_http: bool,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
}

impl Settings {
    /// Reads the table strictly: wrong types and malformed values are problems that name the
    /// key, never the value; unknown keys are reported by the caller's `finish`.
    pub fn parse(r: &mut TableReader<'_, '_>) -> Settings {
        let mut s = Settings {
            region: r.non_empty_string("region"),
            profile: r.non_empty_string("profile"),
            endpoint_url: r.non_empty_string("endpoint_url"),
            use_ambient_credentials: r.bool("use_ambient_credentials").unwrap_or(false),
            allow_http: r.bool("allow_http").unwrap_or(false),
            role_arn: r.non_empty_string("role_arn"),
            external_id: r.non_empty_string("external_id"),
            session_name: r.non_empty_string("session_name"),
        };
        let role_given = s.role_arn.is_some();
        if let Some(region) = &s.region {
            if let Err(e) = check_region(region) {
                r.problem(Some("region"), e);
                s.region = None;
            }
        }
        if let Some(url) = &s.endpoint_url {
            if let Err(e) = check_endpoint(url, s.allow_http) {
                r.problem(Some("endpoint_url"), e);
                s.endpoint_url = None;
            }
        }
        if let Some(arn) = &s.role_arn {
            if let Err(e) = check_role_arn(arn) {
                r.problem(Some("role_arn"), e);
                s.role_arn = None;
            }
        }
        if let Some(id) = &s.external_id {
            if !(2..=1224).contains(&id.len()) || !id.chars().all(is_sts_char_or_colon) {
                r.problem(
                    Some("external_id"),
                    "must be 2-1224 characters of letters, digits and _+=,.@:/-",
                );
            }
        }
        if let Some(name) = &s.session_name {
            if !(2..=64).contains(&name.len()) || !name.chars().all(is_sts_char) {
                r.problem(
                    Some("session_name"),
                    "must be 2-64 characters of letters, digits and _+=,.@-",
                );
            }
        }
        if !role_given {
            if s.external_id.is_some() {
                r.problem(Some("external_id"), "only applies with role_arn");
            }
            if s.session_name.is_some() {
                r.problem(Some("session_name"), "only applies with role_arn");
            }
        }
        s
    }
}

fn is_sts_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn is_sts_char_or_colon(c: char) -> bool {
    is_sts_char(c) || c == ':' || c == '/'
}

fn check_region(region: &str) -> Result<(), String> {
    let ok = region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && region.contains('-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("not an AWS region name (such as \"eu-central-1\")".into())
    }
}

/// An endpoint is an absolute `https://` URL without credentials, query or fragment; plain
/// `http://` only to a loopback address unless `allow_http` (SECURITY.md, Network).
pub fn check_endpoint(raw: &str, allow_http: bool) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|_| {
        "not an absolute URL (such as \"https://secretsmanager.eu-central-1.amazonaws.com\")"
            .to_owned()
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info (`user:password@`)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || crate::net::is_loopback_url(&url) => Ok(()),
        "http" => Err(
            "plain http:// is allowed only to a loopback address; use https://, or set \
             allow_http = true in the provider's table if the network is trusted"
                .into(),
        ),
        _ => Err("must start with https:// (or http:// to a loopback address)".into()),
    }
}

fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && is_partition(parts[1])
        && parts[2] == "iam"
        && parts[3].is_empty()
        && is_account(parts[4])
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if ok {
        Ok(())
    } else {
        Err("not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)".into())
    }
}

fn is_partition(p: &str) -> bool {
    p.starts_with("aws") && p.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

fn is_account(a: &str) -> bool {
    a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())
}

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

/// Builds the provider, or says that this build left it out.
pub fn build(
    name: &str,
    settings: &Settings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    #[cfg(feature = "aws-sm")]
    {
        client::build(name, settings, ctx)
    }
    #[cfg(not(feature = "aws-sm"))]
    {
        let _ = (settings, ctx);
        Err(FetchError::unavailable(format!(
            "the aws-sm provider `{name}` is not available in this build of cme-exec"
        ))
        .with_hint("rebuild with `--features aws-sm` (or keep the default features)"))
    }
}

#[cfg(test)]
mod tests;
