//! What the AWS backends (`aws-sm`, `aws-ssm`) share, so that neither imports the other (fnox's
//! `aws_shared.rs`): their settings ([`AwsSettings`]) and checks, parsed in every build, and with
//! either feature the SDK's configuration ([`sdk`]), loaded once per run for every AWS provider
//! with the same settings (one credential chain, one AssumeRole, one answer to a failure),
//! the trust rule for ambient credentials, the identity for `check`, and the words for what the
//! SDK could not do ([`diagnose`]), and the dedupe, fetch and map-back of `fetch_many`
//! ([`fetch`]).

#[cfg(feature = "aws")]
pub mod diagnose;
#[cfg(feature = "aws")]
pub mod fetch;
#[cfg(feature = "aws")]
pub mod sdk;

use crate::table::TableReader;

/// Environment variables that hold AWS credentials or point at them. Whenever an AWS
/// provider (`aws-sm`, `aws-ssm`) is used they are treated as consumed, so the child does not inherit them (the
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

/// The AWS SDK logs the bodies of responses it marks sensitive (secret values) at trace level
/// when this is `true`; the provider refuses to run then.
pub const LOG_SENSITIVE_BODIES: &str = "LOG_SENSITIVE_BODIES";

/// The default `session_name` for `role_arn`: it shows in CloudTrail as the assumed role's session.
pub const DEFAULT_SESSION_NAME: &str = "cme-exec";

/// `[providers.NAME]` with `kind = "aws-sm"` or `kind = "aws-ssm"`: the AWS settings both share.
/// Nothing here is secret (`external_id` is an
/// identifier that AWS does not treat as a secret either), so `Debug` is derived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
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

impl AwsSettings {
    /// One line for `trust` and `Debug`, for a provider of `kind` (`aws-sm`, `aws-ssm`).
    pub fn describe(&self, kind: &str) -> String {
        let mut s = format!(
            "kind {kind}, endpoint {}",
            self.endpoint_url
                .as_deref()
                .unwrap_or("AWS's regional endpoint (or AWS_ENDPOINT_URL*)")
        );
        if let Some(r) = &self.region {
            s.push_str(&format!(", region {r}"));
        }
        if let Some(p) = &self.profile {
            s.push_str(&format!(", profile {p}"));
        }
        if let Some(r) = &self.role_arn {
            s.push_str(&format!(", assumes {r}"));
        }
        if self.use_ambient_credentials {
            s.push_str(", use_ambient_credentials");
        }
        if self.allow_http {
            s.push_str(", allow_http");
        }
        s
    }

    /// Where the credentials come from and where they go, for `trust`.
    pub fn details(&self) -> Vec<String> {
        let mut out = vec![match &self.profile {
            Some(p) => format!("credentials of the AWS profile {p}"),
            None => "credentials from the AWS default chain (AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, container or instance role)"
                .to_owned(),
        }];
        if let Some(r) = &self.role_arn {
            out.push(format!("then assumes the role {r}"));
        }
        if self.endpoint_url.is_some() {
            out.push(if self.use_ambient_credentials {
                "signs requests to this endpoint with those credentials (use_ambient_credentials)"
            } else {
                "sends those credentials to this endpoint only when the environment names it too"
            }
            .to_owned());
        }
        out
    }

    /// Reads the table strictly: wrong types and malformed values are problems that name the
    /// key, never the value; unknown keys are reported by the caller's `finish`.
    pub fn parse(r: &mut TableReader<'_, '_>) -> AwsSettings {
        let mut s = AwsSettings {
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
                let e = match r.path().strip_prefix("providers.") {
                    Some(name) => crate::net::place_allow_http(&e, name, "", true),
                    None => e,
                };
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

pub fn check_region(region: &str) -> Result<(), String> {
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
/// `http://` only to a loopback address unless `allow_http`: a token or key sent in clear
/// text could be read on the way.
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
        "http" => Err(crate::net::plain_http_refused()),
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

pub fn is_partition(p: &str) -> bool {
    p.starts_with("aws") && p.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

pub fn is_account(a: &str) -> bool {
    a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())
}

/// An AWS message fit for one line of cme-exec's output (aws-sm and aws-ssm): control characters and runs of spaces collapsed, cut at `max`.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > max {
            let mut cut = max;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out
}
