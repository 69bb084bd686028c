//! `check --live` and `run --check-live`: one small read-only call per instance to Confluence
//! or Jira, with the resolved credentials and exactly the authentication cme would use, to tell
//! before an hour-long export whether each instance will accept them.
//!
//! What cme does (confluence-markdown-exporter 5.5.0, `api_clients.py`, and
//! atlassian-python-api's `rest_client.py`), and so what this module does:
//! - **Authentication.** `session_cookies` (Confluence only: cme's Jira client never sends them)
//!   as a `Cookie:` header of the `name=value` pairs, winning over everything; else `username`
//!   and `api_token` both set: `Authorization: Basic`; else `pat`: `Authorization: Bearer`; else
//!   nothing (anonymous). cme strips CR and LF from every credential.
//! - **Where.** A host ending in `.atlassian.net` without a `cloud_id` gets one from the
//!   unauthenticated `GET {url}/_edge/tenant_info` (cme stores it and uses it from then on);
//!   with a `cloud_id` every call goes through `https://api.atlassian.com/ex/{product}/{cloud_id}`.
//!   The Confluence SDK appends `/wiki` to a URL that holds `atlassian.net` or `jira.com` and no
//!   `/wiki` yet.
//! - **Which call.** Confluence: `GET .../rest/api/user/current`, which tells a known user from
//!   an anonymous one (Confluence Cloud answers many calls, `rest/api/space` among them, for
//!   anonymous users with 200). Jira: `GET .../rest/api/2/myself`.
//! - **Transport.** `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as Python's requests reads them; the CA
//!   bundle cme would verify with: `connection_config.ca_bundle` (when `verify_ssl` is on), else
//!   `REQUESTS_CA_BUNDLE`, else `CURL_CA_BUNDLE`, else the default roots; `verify_ssl: false`
//!   turns verification off (with a warning). `CME_CONNECTION_CONFIG__VERIFY_SSL` and
//!   `CME_CONNECTION_CONFIG__CA_BUNDLE` win over the base config, as in cme. Redirects are
//!   never followed (a token is never sent anywhere else): a redirect is the answer.
//!
//! Where cme-exec is stricter than cme (the same rule as the stores' `allow_http`):
//! - **Plain http.** Credentials go over plain `http://` only to a loopback address, or to an
//!   instance named in `CME_EXEC_LIVE_ALLOW_HTTP` (with a warning at each call); otherwise the
//!   instance is not called and the report says why.
//! - **cloud_id.** `/_edge/tenant_info` carries no credentials, but its answer decides where
//!   they go (the gateway under that id): an answer over plain http, which anyone on the path
//!   can forge, is shown and never used. Only a configured `cloud_id` or an https answer is.
//!
//! What is reported: authenticated as whom (account id and display name; never a secret, and a
//! name that equals one of the instance's secret values is shown as `***`), or the cause.

#[cfg(feature = "live")]
mod http;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::Value;
use zeroize::Zeroizing;

use cme_exec_providers::EnvReader;

use crate::cme_config::BaseConfig;
use crate::config::{Field, Product};
use crate::envnames as names;
use crate::error::Error;
use crate::resolve::{Auth, InstanceAuth};

/// Atlassian's API gateway, as cme writes it (`_GATEWAY_PREFIX`).
pub const GATEWAY_PREFIX: &str = "https://api.atlassian.com/ex";
/// The host suffix of Atlassian Cloud sites, for which cme fetches a `cloud_id`.
pub const CLOUD_DOMAIN: &str = ".atlassian.net";
/// The largest answer read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How the calls are verified and bounded.
pub struct Settings {
    pub tls: Tls,
    /// One deadline for all the calls together, and each call's own limit (`--timeout`).
    pub timeout: Duration,
    /// The instance URLs of `CME_EXEC_LIVE_ALLOW_HTTP`: credentials may go to them over plain
    /// http although they are not loopback.
    pub allow_http: Vec<String>,
}

/// The certificate check cme would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// The default roots.
    Default,
    /// Only the certificates of this PEM file; `from` names the setting it came from.
    Bundle { path: PathBuf, from: &'static str },
    /// `verify_ssl: false`: no verification at all.
    Off { from: &'static str },
}

impl Settings {
    /// Reads cme's own TLS settings: its environment overrides, then the base config's
    /// `connection_config`, then requests' variables.
    pub fn from_cme(base: &BaseConfig, env: &EnvReader, timeout: Duration) -> Settings {
        let cme_env = |name: &str| -> Option<String> {
            env.all()
                .iter()
                .find(|(k, _)| k.to_string_lossy().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        let connection = base.doc.get("connection_config").and_then(Value::as_object);
        let (verify, verify_from) = match cme_env("CME_CONNECTION_CONFIG__VERIFY_SSL") {
            Some(v) => (
                !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "false" | "0" | "no" | "off" | "f" | "n"
                ),
                "CME_CONNECTION_CONFIG__VERIFY_SSL",
            ),
            None => (
                connection
                    .and_then(|c| c.get("verify_ssl"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                "connection_config.verify_ssl",
            ),
        };
        let tls = if !verify {
            Tls::Off { from: verify_from }
        } else if let Some(path) = cme_env("CME_CONNECTION_CONFIG__CA_BUNDLE")
            .filter(|p| !p.trim().is_empty())
            .map(|p| (p, "CME_CONNECTION_CONFIG__CA_BUNDLE"))
            .or_else(|| {
                connection
                    .and_then(|c| c.get("ca_bundle"))
                    .and_then(Value::as_str)
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| (p.to_owned(), "connection_config.ca_bundle"))
            })
            .or_else(|| {
                env.var(names::REQUESTS_CA_BUNDLE)
                    .filter(|p| !p.is_empty())
                    .map(|p| (p, names::REQUESTS_CA_BUNDLE))
            })
            .or_else(|| {
                env.var(names::CURL_CA_BUNDLE)
                    .filter(|p| !p.is_empty())
                    .map(|p| (p, names::CURL_CA_BUNDLE))
            })
        {
            Tls::Bundle {
                path: PathBuf::from(path.0),
                from: path.1,
            }
        } else {
            Tls::Default
        };
        let allow_http = env
            .var(names::CME_EXEC_LIVE_ALLOW_HTTP)
            .map(|v| {
                v.split([',', ' ', '\t', '\n'])
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Settings {
            tls,
            timeout,
            allow_http,
        }
    }

    /// Whether credentials may be sent to `call` (a URL of this instance): https, loopback, or
    /// an instance the user named in `CME_EXEC_LIVE_ALLOW_HTTP`.
    pub fn cleartext(&self, instance: &str, call: &str) -> Cleartext {
        let Ok(u) = url::Url::parse(call) else {
            return Cleartext::Refused;
        };
        if u.scheme() != "http" || cme_exec_providers::net::is_loopback_url(&u) {
            return Cleartext::No;
        }
        if self
            .allow_http
            .iter()
            .any(|a| cme_exec_providers::net::same_endpoint(a, instance))
        {
            Cleartext::Allowed
        } else {
            Cleartext::Refused
        }
    }
}

/// Whether a call with credentials would cross the network in clear text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleartext {
    /// https, or plain http to this machine.
    No,
    /// Plain http to another host, allowed for this instance by `CME_EXEC_LIVE_ALLOW_HTTP`.
    Allowed,
    /// Plain http to another host: not called.
    Refused,
}

/// A `cloud_id` read from `/_edge/tenant_info` at `call`, if it may be used: only from an
/// https answer. Over plain http anyone on the path can answer, and the id decides where the
/// credentials go (the gateway, under that id).
pub fn accept_cloud_id(call: &str, id: String) -> Result<String, String> {
    if call
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        Ok(id)
    } else {
        Err(format!(
            "/_edge/tenant_info answered {id} over plain http, which anyone on the network path \
             can forge: not used; cme would use it and send every call through the gateway \
             under it: set cloud_id in the config"
        ))
    }
}

/// The authentication cme would send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Basic,
    Bearer,
    Cookie,
    None,
}

impl AuthKind {
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Basic => "Basic",
            AuthKind::Bearer => "Bearer",
            AuthKind::Cookie => "Cookie",
            AuthKind::None => "no credentials",
        }
    }
}

/// The header to send: its name and its value in a buffer wiped on drop. No `Debug`.
pub struct Credential {
    pub kind: AuthKind,
    pub header: Option<(&'static str, Zeroizing<Vec<u8>>)>,
}

/// A field's value as cme would use it: CR and LF removed; empty counts as unset.
fn field(instance: &InstanceAuth, f: Field) -> Option<Zeroizing<String>> {
    let v = instance.fields.get(&f)?;
    let cleaned = crate::child::mask::as_cme_sends(v.secret.expose_secret());
    (!cleaned.is_empty()).then_some(cleaned)
}

/// What cme would send for this instance.
pub fn credential(product: Product, instance: &InstanceAuth) -> Credential {
    use base64::Engine as _;
    if product == Product::Confluence {
        if let Some(cookies) = field(instance, Field::SessionCookies) {
            // cme: split on `;`, keep `name=value` pairs (trimmed), into the session's jar;
            // requests then sends them as one `Cookie: a=1; b=2` header.
            // Sized once, never grown (a reallocation would leave a copy unwiped): each `;`
            // becomes at most `; `, so the header is never longer than twice the cookies.
            let mut header = Zeroizing::new(Vec::with_capacity(cookies.len() * 2));
            for pair in cookies.split(';') {
                let pair = pair.trim();
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                if !header.is_empty() {
                    header.extend_from_slice(b"; ");
                }
                header.extend_from_slice(name.trim().as_bytes());
                header.push(b'=');
                header.extend_from_slice(value.trim().as_bytes());
            }
            return Credential {
                kind: AuthKind::Cookie,
                header: Some(("cookie", header)),
            };
        }
    }
    let username = field(instance, Field::Username);
    let token = field(instance, Field::ApiToken);
    if let (Some(u), Some(t)) = (&username, &token) {
        let mut plain = Zeroizing::new(Vec::with_capacity(u.len() + t.len() + 1));
        plain.extend_from_slice(u.as_bytes());
        plain.push(b':');
        plain.extend_from_slice(t.as_bytes());
        let mut header = Zeroizing::new(b"Basic ".to_vec());
        let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*plain));
        header.extend_from_slice(encoded.as_bytes());
        return Credential {
            kind: AuthKind::Basic,
            header: Some(("authorization", header)),
        };
    }
    if let Some(pat) = field(instance, Field::Pat) {
        let mut header = Zeroizing::new(b"Bearer ".to_vec());
        header.extend_from_slice(pat.as_bytes());
        return Credential {
            kind: AuthKind::Bearer,
            header: Some(("authorization", header)),
        };
    }
    Credential {
        kind: AuthKind::None,
        header: None,
    }
}

/// Whether cme fetches a `cloud_id` for this instance URL (`_is_standard_atlassian_cloud_url`).
pub fn is_cloud_site(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()))
        .is_some_and(|h| h.ends_with(CLOUD_DOMAIN))
}

/// What is escaped in a `cloud_id` put into a path (a UUID passes unchanged).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL of the call that needs a valid login, as cme's SDK would build it.
pub fn probe_url(product: Product, url: &str, cloud_id: Option<&str>) -> String {
    let base = match cloud_id {
        Some(id) => format!(
            "{GATEWAY_PREFIX}/{}/{}",
            product.name(),
            percent_encoding::utf8_percent_encode(id, SEGMENT)
        ),
        None => url.trim_end_matches('/').to_owned(),
    };
    match product {
        Product::Confluence => {
            let base = if (base.contains("atlassian.net") || base.contains("jira.com"))
                && !base.contains("/wiki")
            {
                format!("{base}/wiki")
            } else {
                base
            };
            format!("{base}/rest/api/user/current")
        }
        Product::Jira => format!("{base}/rest/api/2/myself"),
    }
}

/// An answer as this module needs it: status, headers (names lower-case), body (bounded).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Who the instance says the credentials belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub account_id: Option<String>,
    pub display_name: Option<String>,
}

/// Why an instance did not authenticate; never holds a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    fn new(status: Option<u16>, message: impl Into<String>, hint: Option<&str>) -> Self {
        Problem {
            status,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// The site's own `cloud_id` against the configured one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudIdCheck {
    pub configured: Option<String>,
    /// What `/_edge/tenant_info` answered, or why it could not be read.
    pub site: Result<String, String>,
}

impl CloudIdCheck {
    /// `Some(false)` when both are known and differ.
    pub fn matches(&self) -> Option<bool> {
        match (&self.configured, &self.site) {
            (Some(c), Ok(s)) => Some(c == s),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match (&self.configured, &self.site) {
            (Some(c), Ok(s)) if c == s => format!("cloud_id {c} matches the site's"),
            (Some(c), Ok(s)) => format!(
                "the configured cloud_id {c} is not this site's ({s}): cme would send every call \
                 to another site through the gateway"
            ),
            (None, Ok(s)) => format!(
                "the site's cloud_id is {s}; none is configured, so cme fetches it, stores it and \
                 calls through the gateway"
            ),
            (Some(c), Err(e)) => format!("configured cloud_id {c}; the site's is unknown ({e})"),
            (None, Err(e)) => format!("the site's cloud_id is unknown ({e})"),
        }
    }
}

/// The live check of one instance.
pub struct Report {
    pub product: Product,
    pub url: String,
    /// The URL called (never holds a secret: no user info, no query).
    pub call: String,
    pub auth: AuthKind,
    pub outcome: Result<Account, Problem>,
    /// For `*.atlassian.net` sites.
    pub cloud_id: Option<CloudIdCheck>,
}

impl Report {
    pub fn place(&self) -> String {
        format!("[{}.\"{}\"]", self.product, self.url)
    }

    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
            && self.cloud_id.as_ref().and_then(CloudIdCheck::matches) != Some(false)
    }

    /// One line: who, or why not.
    pub fn verdict(&self) -> String {
        let mut s = match &self.outcome {
            Ok(a) => format!("authenticated as {}", a.describe()),
            Err(p) => match &p.hint {
                Some(h) => format!("FAILED: {} (hint: {h})", p.message),
                None => format!("FAILED: {}", p.message),
            },
        };
        if let Some(c) = &self.cloud_id {
            if c.matches() == Some(false) {
                s = format!("FAILED: {}; {s}", c.describe());
            }
        }
        s
    }
}

impl Account {
    pub fn describe(&self) -> String {
        match (&self.display_name, &self.account_id) {
            (Some(n), Some(id)) => format!("{n} (account {id})"),
            (Some(n), None) => n.clone(),
            (None, Some(id)) => format!("account {id}"),
            (None, None) => "a known user (no name given)".to_owned(),
        }
    }
}

/// Reads the answer to the probe call.
pub fn classify(
    product: Product,
    auth: AuthKind,
    gateway: bool,
    answer: &Answer,
) -> Result<Account, Problem> {
    let status = answer.status;
    let reason = answer
        .header("x-seraph-loginreason")
        .unwrap_or("")
        .to_ascii_uppercase();
    let denied = answer
        .header("x-authentication-denied-reason")
        .unwrap_or("")
        .to_ascii_uppercase();
    let captcha = reason.contains("AUTHENTICATION_DENIED") || denied.contains("CAPTCHA");
    let what = match product {
        Product::Confluence => "Confluence",
        Product::Jira => "Jira",
    };
    if captcha && matches!(status, 401 | 403 | 200) {
        return Err(Problem::new(
            Some(status),
            format!(
                "{status}: {what} wants a CAPTCHA after failed logins (X-Seraph-LoginReason: \
                 AUTHENTICATION_DENIED); no API call will log in until it is solved"
            ),
            Some("log in once in a browser as this account and solve the CAPTCHA, then check the credentials"),
        ));
    }
    match status {
        200..=299 if reason.contains("AUTHENTICATED_FAILED") => {
            Err(unauthorized(what, auth, status))
        }
        200..=299 => account(what, auth, answer),
        300..=399 => Err(redirected(auth, answer)),
        401 => Err(unauthorized(what, auth, status)),
        _ => Err(refused(product, what, gateway, status)),
    }
}

/// A 2xx answer: the account it names, or why it names none (not JSON, an anonymous user).
fn account(what: &str, auth: AuthKind, answer: &Answer) -> Result<Account, Problem> {
    let status = answer.status;
    let Ok(body) = serde_json::from_slice::<Value>(&answer.body) else {
        let html = answer
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().contains("html"));
        return Err(Problem::new(
            Some(status),
            format!(
                "{status}, but the answer is not {what}'s JSON{}",
                if html { " (an HTML page: a login page or a proxy's)" } else { "" }
            ),
            Some("check the instance URL (its context path, e.g. /confluence) and, for session_cookies, that the session is still valid"),
        ));
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(crate::error::strip_controls)
    };
    let anonymous = body.get("type").and_then(Value::as_str) == Some("anonymous")
        || (text("accountId").is_none()
            && text("userKey").is_none()
            && text("key").is_none()
            && text("username").is_none()
            && text("name").is_none());
    if anonymous {
        return Err(if auth == AuthKind::None {
            Problem::new(
                Some(status),
                format!(
                    "{what} answered as it answers an anonymous user: cme would send no \
                     credentials (api_token without username, or no field set)"
                ),
                Some("set username and api_token (Cloud), pat (Data Center) or session_cookies"),
            )
        } else {
            Problem::new(
                Some(status),
                format!(
                    "{what} answered as it answers an anonymous user: the credentials \
                     ({}) were sent and not accepted",
                    auth.name()
                ),
                Some("the site ignored them: check that the instance URL is the site the credentials belong to (another site's token is ignored, not refused), and whether the site's single sign-on (SSO) keeps this account from logging in with them"),
            )
        });
    }
    Ok(Account {
        account_id: text("accountId")
            .or_else(|| text("userKey"))
            .or_else(|| text("key")),
        display_name: text("displayName"),
    })
}

/// A 3xx answer, never followed: to a login page, or elsewhere.
fn redirected(auth: AuthKind, answer: &Answer) -> Problem {
    let status = answer.status;
    let location = answer.header("location").map(shown_location);
    let to = location.clone().unwrap_or_else(|| "(no Location)".into());
    let login = location.as_deref().is_some_and(|l| {
        let l = l.to_ascii_lowercase();
        ["login", "sso", "saml", "signin", "auth"]
            .iter()
            .any(|w| l.contains(w))
    });
    if login {
        Problem::new(
            Some(status),
            format!("{status}: redirected to a login page ({to}); not followed"),
            Some(match auth {
                AuthKind::Cookie => "the session cookies have expired: copy fresh ones from a logged-in browser",
                _ => "the site sends API calls to its single sign-on login: use an API token or a personal access token",
            }),
        )
    } else {
        Problem::new(
            Some(status),
            format!(
                "{status}: redirected to {to}; not followed (credentials are never sent elsewhere)"
            ),
            Some("use the address the site redirects to as the instance URL"),
        )
    }
}

/// Any other status than 2xx, 3xx and 401: forbidden, not found, rate limited, a server error.
fn refused(product: Product, what: &str, gateway: bool, status: u16) -> Problem {
    match status {
        403 => Problem::new(
            Some(status),
            format!(
                "403 Forbidden: {what} knows the credentials but refuses this call"
            ),
            Some(match product {
                Product::Confluence => "a scoped API token needs the scope read:confluence-user (and the scopes of the export); or the account has no access to Confluence",
                Product::Jira => "a scoped API token needs the scope read:jira-user (and read:jira-work); or the account has no access to Jira",
            }),
        ),
        404 | 410 => Problem::new(
            Some(status),
            if gateway {
                format!("{status}: the gateway knows no {what} site under this cloud_id")
            } else {
                format!("{status}: no {what} API at this address")
            },
            Some(if gateway {
                "check cloud_id (the site's own is at https://SITE.atlassian.net/_edge/tenant_info)"
            } else {
                "check the instance URL (site name, context path such as /confluence or /jira); a scoped API token needs cloud_id set"
            }),
        ),
        429 => Problem::new(Some(status), "429: rate limited; try again later", None),
        _ => Problem::new(
            Some(status),
            format!("{status}: {what} did not answer the call"),
            (status >= 500).then_some("a server-side problem: try again later"),
        ),
    }
}

fn unauthorized(what: &str, auth: AuthKind, status: u16) -> Problem {
    let (message, hint) = match auth {
        AuthKind::Basic => (
            format!("{status} Unauthorized: {what} refused the API token: it is wrong, expired or revoked, or the username is not the token's account (Atlassian answers all of these alike)"),
            "create a new API token at id.atlassian.com (tokens expire after at most a year) and check that username is the account's e-mail address",
        ),
        AuthKind::Bearer => (
            format!("{status} Unauthorized: {what} refused the personal access token: it is wrong, expired or revoked"),
            "create a new personal access token in the user's profile",
        ),
        AuthKind::Cookie => (
            format!("{status} Unauthorized: {what} refused the session cookies (expired?)"),
            "copy fresh session cookies from a logged-in browser",
        ),
        AuthKind::None => (
            format!("{status} Unauthorized: cme would send no credentials (api_token without username, or no field set)"),
            "set username and api_token (Cloud), pat (Data Center) or session_cookies",
        ),
    };
    Problem::new(Some(status), message, Some(hint))
}

/// A Location header as it may be shown: scheme, host and path only (a query may carry a
/// token or a session reference).
fn shown_location(raw: &str) -> String {
    let cut = raw.find(['?', '#']).unwrap_or(raw.len());
    let shown = &raw[..cut];
    let shown = match url::Url::parse(shown) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            crate::config::redact_user_info(shown)
        }
        _ => shown.to_owned(),
    };
    crate::error::strip_controls(&shown)
}

/// Why an instance over plain http to another host is not called.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
fn cleartext_refused(url: &str) -> Problem {
    let shown = crate::config::redact_user_info(url);
    Problem::new(
        None,
        format!(
            "{shown}: plain http to a host that is not this machine: the credentials would cross \
             the network in clear text; not called"
        ),
        Some(&format!(
            "use https:// if the site serves it; on a network you trust, allow this instance \
             with {}={shown} (cme itself sends the credentials to it in clear text)",
            names::CME_EXEC_LIVE_ALLOW_HTTP
        )),
    )
}

/// Replaces any of the instance's secret values inside `text` with `***`.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
fn scrub(text: String, instance: &InstanceAuth) -> String {
    let mut text = text;
    for (f, v) in &instance.fields {
        let value = v.secret.expose_secret();
        if f.is_secret() && value.len() >= 4 && text.contains(value) {
            text = text.replace(value, "***");
        }
    }
    text
}

/// Checks every instance of `auth` concurrently, all under one deadline (`--timeout`).
/// `skip` holds the instances whose references did not resolve: they are not called.
#[cfg(feature = "live")]
pub async fn check_all(
    auth: &Auth,
    settings: &Settings,
    skip: &std::collections::BTreeSet<(Product, String)>,
) -> Result<Vec<Report>, Error> {
    // TLS (and so the trusted roots) only when a call can need it: an `https://`
    // instance, one with a cloud_id (called through the gateway, GATEWAY_PREFIX, over https),
    // or a proxy reached over TLS.
    let https = |u: &str| {
        u.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    let needs_tls = auth
        .instances
        .iter()
        .filter(|(key, _)| !skip.contains(*key))
        .any(|((_, url), instance)| https(url) || instance.fields.contains_key(&Field::CloudId))
        || [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .filter_map(std::env::var_os)
        .any(|v| https(&v.to_string_lossy()));
    let client = http::Client::new(settings, needs_tls)?;
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let checks = auth
        .instances
        .iter()
        .filter(|(key, _)| !skip.contains(*key))
        .map(|((product, url), instance)| {
            let client = &client;
            async move {
                let mut report = match tokio::time::timeout_at(
                    deadline,
                    check_one(client, settings, *product, url, instance),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        let origin = url::Url::parse(url)
                            .map(|u| u.origin().ascii_serialization())
                            .unwrap_or_default();
                        Report {
                            product: *product,
                            url: url.clone(),
                            call: probe_url(*product, url, None),
                            auth: credential(*product, instance).kind,
                            outcome: Err(Problem::new(
                                None,
                                format!(
                                    "{origin}: no answer within {} s (see --timeout)",
                                    settings.timeout.as_secs_f32()
                                ),
                                None,
                            )),
                            cloud_id: None,
                        }
                    }
                };
                if let Ok(a) = &mut report.outcome {
                    a.account_id = a.account_id.take().map(|s| scrub(s, instance));
                    a.display_name = a.display_name.take().map(|s| scrub(s, instance));
                }
                report
            }
        });
    Ok(futures::future::join_all(checks).await)
}

#[cfg(not(feature = "live"))]
pub async fn check_all(
    _auth: &Auth,
    _settings: &Settings,
    _skip: &std::collections::BTreeSet<(Product, String)>,
) -> Result<Vec<Report>, Error> {
    Err(
        Error::new("the live check is not available in this build of cme-exec")
            .hint("rebuild with `--features live` (on by default)"),
    )
}

#[cfg(feature = "live")]
async fn check_one(
    client: &http::Client,
    settings: &Settings,
    product: Product,
    url: &str,
    instance: &InstanceAuth,
) -> Report {
    let configured = instance
        .fields
        .get(&Field::CloudId)
        .map(|v| v.secret.expose_secret().trim().to_owned())
        .filter(|s| !s.is_empty());
    let cloud_id = if is_cloud_site(url) {
        let site = client.tenant_info(url).await;
        Some(CloudIdCheck {
            configured: configured.clone(),
            site,
        })
    } else {
        None
    };
    // cme uses the configured cloud_id, else the one it fetched.
    let effective = configured.or_else(|| cloud_id.as_ref().and_then(|c| c.site.clone().ok()));
    let call = probe_url(product, url, effective.as_deref());
    let credential = credential(product, instance);
    let kind = credential.kind;
    let cleartext = match credential.header {
        Some(_) => settings.cleartext(url, &call),
        None => Cleartext::No,
    };
    let outcome = match cleartext {
        Cleartext::Refused => Err(cleartext_refused(url)),
        Cleartext::Allowed | Cleartext::No => {
            if cleartext == Cleartext::Allowed {
                crate::error::warn(format_args!(
                    "[{product}.\"{url}\"]: the live check sends the credentials ({}) in clear \
                     text over plain http ({} allows it)",
                    kind.name(),
                    names::CME_EXEC_LIVE_ALLOW_HTTP
                ));
            }
            match client.get(&call, credential).await {
                Ok(answer) => classify(product, kind, effective.is_some(), &answer),
                Err(problem) => Err(problem),
            }
        }
    };
    Report {
        product,
        url: url.to_owned(),
        call,
        auth: kind,
        outcome,
        cloud_id,
    }
}

#[cfg(test)]
mod tests;
