//! The token a run uses: one the user supplies (never revoked), or one obtained by logging in
//! with AppRole, Kubernetes, JWT or userpass (revoked when the run ends, by the provider's
//! `finish`).
//!
//! Credentials are read from files (trimmed, refused when other users can write them) or from
//! variables through [`crate::EnvReader::secret`], which removes them from the child's
//! environment. They live in [`SecretString`]s; the request bodies that carry them are wiped
//! buffers, and the vaultrs request structs that serialise them are wiped after use.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use url::Url;
use zeroize::{Zeroize as _, Zeroizing};

use super::http::{Budget, Call, Options, Transport};
use super::names;
use super::{Auth, JwtSource, RoleId, Source};
use crate::payload::zeroize_value;
use crate::{Context, ErrorKind, FetchError};

/// The largest credential file read (a JWT is a few KiB).
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// The token of one run.
pub enum Session {
    /// The `agent` method: no token is sent; the Vault Agent or OpenBao Proxy adds its own
    /// auto-auth token. Nothing here can be revoked: [`revoke`] takes a [`LoginToken`].
    Injected,
    /// A token the user supplied: sent, never revoked.
    Supplied(SecretString),
    /// A token this run obtained by logging in: the only kind that is revoked.
    Login(LoginToken),
}

/// A token obtained by logging in.
pub struct LoginToken {
    pub token: SecretString,
    /// A batch token (a role with `token_type = "batch"`): it cannot be revoked, only expire.
    pub batch: bool,
    /// Set once a revocation was attempted, so that it happens once.
    pub revoked: AtomicBool,
}

impl Session {
    /// The token to send, if any.
    pub fn token(&self) -> Option<&SecretString> {
        match self {
            Session::Injected => None,
            Session::Supplied(t) => Some(t),
            Session::Login(l) => Some(&l.token),
        }
    }

    pub fn login(&self) -> Option<&LoginToken> {
        match self {
            Session::Login(l) => Some(l),
            _ => None,
        }
    }
}

/// Where the token came from, for messages.
fn login_what(auth: &Auth, origin: &str) -> String {
    format!("logging in to {origin} with {}", auth.describe())
}

/// Gets the run's token: reads the user's, or logs in.
pub async fn obtain(
    transport: &Transport,
    auth: &Auth,
    ctx: &Context,
) -> Result<Session, FetchError> {
    let what = login_what(auth, transport.origin());
    let call = match auth {
        Auth::Agent => return Ok(Session::Injected),
        Auth::Token { source } => {
            let token = user_token(source.as_ref(), ctx)?;
            return Ok(Session::Supplied(token));
        }
        Auth::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            let role_id = match role_id {
                RoleId::Literal(l) => SecretString::from(l.clone()),
                RoleId::From(s) => read_source(s, ctx, "the AppRole role_id")?,
            };
            let secret_id = match secret_id {
                Some(s) => Some(read_source(s, ctx, "the AppRole secret_id")?),
                None => None,
            };
            // vaultrs' request always sends `secret_id`; a role without one
            // (`bind_secret_id = false`) is sent an empty string, which Vault ignores.
            let mut request = vaultrs::api::auth::approle::requests::LoginWithApproleRequest {
                mount: mount.clone(),
                role_id: role_id.expose_secret().to_owned(),
                secret_id: secret_id
                    .as_ref()
                    .map(|s| s.expose_secret().to_owned())
                    .unwrap_or_default(),
            };
            let call = Call::from_endpoint(&request);
            request.role_id.zeroize();
            request.secret_id.zeroize();
            call?
        }
        Auth::Kubernetes {
            mount,
            role,
            token_file,
        } => {
            let jwt = read_file(token_file, "the Kubernetes service-account token")?;
            let mut request =
                vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest {
                    mount: mount.clone(),
                    role: role.clone(),
                    jwt: jwt.expose_secret().to_owned(),
                };
            let call = Call::from_endpoint(&request);
            request.jwt.zeroize();
            call?
        }
        Auth::Jwt { mount, role, jwt } => {
            let jwt = match jwt {
                JwtSource::From(s) => read_source(s, ctx, "the JWT")?,
                JwtSource::GithubActions { audience } => {
                    github_actions_token(ctx, audience.as_deref()).await?
                }
            };
            let mut request = vaultrs::api::auth::oidc::requests::JWTLoginRequest {
                mount: mount.clone(),
                jwt: jwt.expose_secret().to_owned(),
                role: role.clone(),
            };
            let call = Call::from_endpoint(&request);
            request.jwt.zeroize();
            call?
        }
        Auth::Userpass {
            mount,
            username,
            password,
        } => {
            let password = read_source(password, ctx, "the userpass password")?;
            let mut request = vaultrs::api::auth::userpass::requests::LoginRequest {
                mount: mount.clone(),
                username: username.clone(),
                password: password.expose_secret().to_owned(),
            };
            let call = Call::from_endpoint(&request);
            request.password.zeroize();
            call?
        }
    };
    // The full timeout, not the deadline: a login answer that arrives after the reads were
    // given up must still be received, so that its token is revoked.
    let answer = transport
        .send_within(&call, None, Budget::Full)
        .await
        .map_err(|e| {
            let status = e.status();
            let err = e.into_fetch_error(&what, transport.origin());
            match status {
                // A login against a missing auth mount is a 403, like a refused one.
                Some(400 | 401 | 403) => {
                    FetchError::new(ErrorKind::Denied, err.message().to_owned()).with_hint(format!(
                    "check the credentials, the role and that the {} auth method is enabled at \
                     auth/{} (the `mount` setting)",
                    auth.method(),
                    auth.mount().unwrap_or_default()
                ))
                }
                _ => err,
            }
        })?;
    let (token, batch) = take_client_token(&answer.body).ok_or_else(|| {
        FetchError::unavailable(format!(
            "{what}: the answer holds no auth.client_token (is this a Vault or OpenBao server?)"
        ))
    })?;
    Ok(Session::Login(LoginToken {
        token,
        batch,
        revoked: AtomicBool::new(false),
    }))
}

/// `auth.client_token` of a login answer, and whether it is a batch token; everything else in
/// the answer is wiped.
fn take_client_token(body: &[u8]) -> Option<(SecretString, bool)> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let batch = value.pointer("/auth/token_type").and_then(Value::as_str) == Some("batch");
    let token = match value.pointer_mut("/auth/client_token") {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(std::mem::take(s))),
        _ => None,
    };
    zeroize_value(&mut value);
    token.map(|t| (t, batch))
}

/// The user's own token: `token_file`/`token_env`, else `$VAULT_TOKEN`, `$BAO_TOKEN`,
/// `~/.vault-token`.
fn user_token(source: Option<&Source>, ctx: &Context) -> Result<SecretString, FetchError> {
    if let Some(s) = source {
        return read_source(s, ctx, "the Vault token").and_then(check_token);
    }
    for name in [names::VAULT_TOKEN, names::BAO_TOKEN] {
        if let Some(t) = read_env(ctx, name, "the Vault token")? {
            return check_token(t);
        }
    }
    if let Some(home) = ctx.env.var(names::HOME) {
        let path = Path::new(&home).join(".vault-token");
        if path.exists() {
            return read_file(&path, "the Vault token").and_then(check_token);
        }
    }
    Err(FetchError::denied(
        "no Vault token: VAULT_TOKEN and BAO_TOKEN are not set and there is no ~/.vault-token",
    )
    .with_hint(format!(
        "run `vault login` (or `bao login`), set VAULT_TOKEN, or configure another auth method \
         in [providers.NAME] auth ({})",
        crate::docs_url("providers/vault.md#auth-methods")
    )))
}

/// A token must fit in an HTTP header.
fn check_token(token: SecretString) -> Result<SecretString, FetchError> {
    let t = token.expose_secret();
    if t.is_empty() || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(FetchError::invalid(
            "the Vault token is empty or holds spaces or control characters",
        ));
    }
    Ok(token)
}

/// A credential from a file or a variable.
pub fn read_source(source: &Source, ctx: &Context, what: &str) -> Result<SecretString, FetchError> {
    match source {
        Source::File(path) => read_file(path, what),
        Source::Env(name) => read_env(ctx, name, what)?.ok_or_else(|| {
            FetchError::invalid(format!("{what}: variable {name} is not set or empty"))
        }),
    }
}

fn read_env(ctx: &Context, name: &str, what: &str) -> Result<Option<SecretString>, FetchError> {
    match ctx.env.secret(name) {
        Ok(Some(v)) => {
            let trimmed = v.expose_secret().trim();
            if trimmed.is_empty() {
                Ok(None)
            } else if trimmed.len() == v.expose_secret().len() {
                Ok(Some(v))
            } else {
                Ok(Some(SecretString::from(trimmed.to_owned())))
            }
        }
        Ok(None) => Ok(None),
        Err(_) => Err(FetchError::invalid(format!(
            "{what}: variable {name} is not valid UTF-8"
        ))),
    }
}

/// A credential file: a regular file, not writable by others, at most 64 KiB, UTF-8, trimmed.
pub fn read_file(path: &Path, what: &str) -> Result<SecretString, FetchError> {
    let bytes = read_small_file(path, MAX_CREDENTIAL_BYTES, what)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        FetchError::invalid(format!("{what}: {} is not UTF-8 text", path.display()))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(FetchError::invalid(format!(
            "{what}: {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// Reads a small local file (credential, certificate) into a wiped buffer.
pub fn read_small_file(
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let context = |e: FetchError| {
        let hint = e.hint().map(str::to_owned);
        let err = FetchError::new(e.kind, format!("{what}: {}", e.message()));
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    };
    use crate::secure_io::{read_private_file, world_writable, Checks, Refused};
    let read = read_private_file(path, limit, &Checks::NOT_WRITABLE_BY_OTHERS);
    read.map(|file| file.bytes).map_err(|refused| {
        context(match refused {
            Refused::Open(e) | Refused::Stat(e) | Refused::Read(e) => FetchError::io(path, &e),
            Refused::NotRegular => {
                FetchError::invalid(format!("{} is not a regular file", path.display()))
            }
            Refused::Writable(meta) => world_writable(path, &meta),
            // Not asked for: any owner is accepted.
            Refused::Owner(uid) => FetchError::denied(format!(
                "{} belongs to another user (uid {uid})",
                path.display()
            )),
            Refused::TooLarge => FetchError::invalid(format!(
                "{} is larger than {} KiB",
                path.display(),
                limit / 1024
            )),
        })
    })
}

/// Asks the GitHub Actions OIDC endpoint for an ID token: `GET $ACTIONS_ID_TOKEN_REQUEST_URL`
/// (plus `&audience=...`) with `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, which
/// answers `{"value": "<JWT>"}`. Both variables exist only in a job with
/// `permissions: id-token: write`.
async fn github_actions_token(
    ctx: &Context,
    audience: Option<&str>,
) -> Result<SecretString, FetchError> {
    let what = "requesting the GitHub Actions ID token";
    let hint = "GitHub sets ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN only \
                in a job with `permissions: id-token: write`";
    let url = ctx.env.var(names::ACTIONS_ID_TOKEN_REQUEST_URL);
    let bearer = read_env(ctx, names::ACTIONS_ID_TOKEN_REQUEST_TOKEN, what)?;
    let (Some(url), Some(bearer)) = (url, bearer) else {
        return Err(FetchError::invalid(format!(
            "{what}: ACTIONS_ID_TOKEN_REQUEST_URL or ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set"
        ))
        .with_hint(hint));
    };
    let mut url = Url::parse(&url).map_err(|_| {
        FetchError::invalid(format!("{what}: ACTIONS_ID_TOKEN_REQUEST_URL is not a URL"))
    })?;
    let local = url.host().is_some_and(|h| super::is_loopback(&h));
    if url.scheme() != "https" && !(url.scheme() == "http" && local) {
        return Err(FetchError::invalid(format!(
            "{what}: ACTIONS_ID_TOKEN_REQUEST_URL must be https:// (or http:// to loopback)"
        )));
    }
    if let Some(aud) = audience {
        url.query_pairs_mut().append_pair("audience", aud);
    }
    let transport = Transport::new(
        &super::Address::Url(url.clone()),
        None,
        None,
        Options {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_retries: 2,
            ca_certs: Vec::new(),
            identity: None,
            skip_verify: false,
            deadline: None,
        },
    )?;
    let mut headers = HeaderMap::new();
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", bearer.expose_secret())).map_err(|_| {
            FetchError::invalid(format!(
                "{what}: ACTIONS_ID_TOKEN_REQUEST_TOKEN cannot be sent in a header"
            ))
        })?;
    auth.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, auth);
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let origin = transport.origin().to_owned();
    let answer = transport
        .get_url(url, headers)
        .await
        .map_err(|e| e.into_fetch_error(what, &origin).with_hint(hint))?;
    let mut value: Value = serde_json::from_slice(&answer.body).map_err(|_| {
        FetchError::unavailable(format!("{what}: the answer from {origin} is not JSON"))
    })?;
    let token = match value.get_mut("value") {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(std::mem::take(s))),
        _ => None,
    };
    zeroize_value(&mut value);
    token.ok_or_else(|| {
        FetchError::unavailable(format!("{what}: the answer from {origin} has no `value`"))
    })
}

/// Revokes a login token (`auth/token/revoke-self`): only a token this run logged in for, and
/// always sent with it (a token-less revoke-self through a proxy would revoke the proxy's).
pub async fn revoke(transport: &Transport, login: &LoginToken) -> Result<(), FetchError> {
    let call = Call::from_endpoint(&vaultrs::api::token::requests::RevokeTokenSelfRequest {})?;
    transport
        .send_within(&call, Some(&login.token), Budget::Full)
        .await
        .map(|_| ())
        .map_err(|e| e.into_fetch_error("revoking the login token", transport.origin()))
}

/// Resolves a path from the config file against the file's directory.
pub fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnvReader;
    use std::os::unix::fs::PermissionsExt as _;

    fn ctx(vars: &[(&str, &str)]) -> Context {
        Context::new(
            ".".into(),
            EnvReader::from_vars(vars.iter().map(|(k, v)| ((*k).into(), (*v).into()))),
        )
    }

    #[test]
    fn user_token_order_and_consumption() {
        let c = ctx(&[("VAULT_TOKEN", " a "), ("BAO_TOKEN", "b")]);
        assert_eq!(user_token(None, &c).unwrap().expose_secret(), "a");
        let c = ctx(&[("BAO_TOKEN", "b")]);
        assert_eq!(user_token(None, &c).unwrap().expose_secret(), "b");
        assert!(c.env.consumed().contains("VAULT_TOKEN"));
        assert!(c.env.consumed().contains("BAO_TOKEN"));

        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".vault-token"), "c\n").unwrap();
        let c = ctx(&[("HOME", home.path().to_str().unwrap())]);
        assert_eq!(user_token(None, &c).unwrap().expose_secret(), "c");

        let c = ctx(&[]);
        let e = user_token(None, &c).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied);
        assert!(e.message().contains("no Vault token"), "{e}");

        let c = ctx(&[("VAULT_TOKEN", "a b")]);
        assert!(user_token(None, &c).is_err());
    }

    #[test]
    fn credential_files_are_checked_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret-id");
        std::fs::write(&f, "S3CRET-VALUE\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&f, "x").unwrap().expose_secret(), "S3CRET-VALUE");

        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_file(&f, "the AppRole secret_id").unwrap_err();
        assert!(e.message().starts_with("the AppRole secret_id: "), "{e}");
        assert!(!e.message().contains("S3CRET"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_file(&empty, "x")
            .unwrap_err()
            .message()
            .contains("empty"));
        let e = read_file(&dir.path().join("missing"), "x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(read_file(dir.path(), "x").is_err());
    }

    #[test]
    fn login_answers() {
        let body = br#"{"auth":{"client_token":"s.abc","accessor":"x"},"data":null}"#;
        let (token, batch) = take_client_token(body).unwrap();
        assert_eq!((token.expose_secret(), batch), ("s.abc", false));
        let body = br#"{"auth":{"client_token":"b.x","token_type":"batch"}}"#;
        assert!(take_client_token(body).unwrap().1);
        assert!(take_client_token(br#"{"auth":null}"#).is_none());
        assert!(take_client_token(b"<html>").is_none());
    }
}
