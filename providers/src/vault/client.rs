//! The Vault provider itself: settings resolved against the environment, one login per run,
//! one KV version detection per mount, concurrent reads, identity for `check`, and revocation
//! of a login token in `finish`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{watch, OnceCell};

use super::auth::{self, Session};
use super::http::{self, Call, HttpError, Transport};
use super::{names, Auth, JwtSource, KvVersion, RoleId, Settings, Source};
use crate::payload::{zeroize_value, Payload, SecretMap};
use crate::{Context, Document, ErrorKind, FetchError, Identity, Kind, Provider};

/// Defaults when neither the config nor the environment says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_RETRIES: u32 = 2;
/// The largest CA or client certificate file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// How long `finish` waits for a login that is still running when the run ends early (the
/// deadline or a signal dropped the reads), to revoke the token it may still return.
const LOGIN_GRACE: Duration = Duration::from_secs(1);

type Shared<T> = Arc<OnceCell<Result<T, FetchError>>>;
type LoginResult = Option<Result<Arc<Session>, FetchError>>;

pub struct VaultProvider {
    name: String,
    ctx: Arc<Context>,
    transport: Arc<Transport>,
    /// The address as configured, for `check`.
    address: String,
    namespace: Option<String>,
    auth: Arc<Auth>,
    kv_version: Option<KvVersion>,
    /// `kv_mounts`, longest mount first, so that a nested mount wins over its parent.
    kv_mounts: Vec<(String, KvVersion)>,
    /// The run's token: obtained once, by a task of its own, and shared by every read. The
    /// task outlives the reads when the resolver drops them (deadline, signal), so that a token
    /// whose login answer arrives late is still revoked by `finish`.
    login_started: std::sync::atomic::AtomicBool,
    login: Arc<watch::Sender<LoginResult>>,
    /// KV versions detected so far, by mount: once per mount per run.
    detected: Mutex<HashMap<String, Shared<KvVersion>>>,
    /// After a 403: whether the token itself is valid (asked once per run), to tell a bad
    /// token from a policy that does not allow the read.
    token_valid: OnceCell<bool>,
    /// `custom_metadata.expires_at` of each KV v2 document read (it comes with the value).
    expiries: Mutex<HashMap<Document, String>>,
}

/// Where a setting came from, for messages: `address` or `VAULT_ADDR`.
struct Setting<T> {
    value: T,
    from: &'static str,
}

fn from_settings_or_env<T>(
    configured: Option<T>,
    key: &'static str,
    env: &crate::EnvReader,
    vars: &[&'static str],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Setting<T>>, FetchError> {
    if let Some(value) = configured {
        return Ok(Some(Setting { value, from: key }));
    }
    for var in vars {
        if let Some(raw) = env.var(var) {
            let value = parse(&raw).map_err(|e| FetchError::invalid(format!("{var}: {e}")))?;
            return Ok(Some(Setting { value, from: var }));
        }
    }
    Ok(None)
}

/// When reads must have given up: a little before the resolver's deadline (`--timeout`), so
/// that the error users see is Vault's (or the network's), not the generic deadline's.
fn read_deadline(timeout: Duration) -> tokio::time::Instant {
    let margin = (timeout / 10).min(Duration::from_secs(1));
    tokio::time::Instant::now() + timeout.saturating_sub(margin)
}

/// Go's `strconv.ParseBool`, which the vault CLI uses for `VAULT_SKIP_VERIFY`.
fn parse_go_bool(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// `VAULT_CLIENT_TIMEOUT`: seconds, or a number with `ms`, `s`, `m` or `h`.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "expected seconds, or a number with ms, s, m or h".to_owned())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err("expected seconds, or a number with ms, s, m or h".into()),
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

fn parse_path(raw: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(raw))
}

/// The ambient token (`VAULT_TOKEN`, `BAO_TOKEN`, `~/.vault-token`) goes only to the address the
/// environment names (`VAULT_ADDR`, else `BAO_ADDR`). A config whose `address` is another
/// server must tie them explicitly with `auth = { method = "token" }` (or `token_env`,
/// `token_file`): otherwise a config file could send the user's token to any server.
fn check_ambient_token_address(
    name: &str,
    place: &str,
    url: &super::Address,
    env: &crate::EnvReader,
) -> Result<(), FetchError> {
    let (var, from_env) = match env.var(names::VAULT_ADDR) {
        Some(a) => (names::VAULT_ADDR, Some(a)),
        None => (names::BAO_ADDR, env.var(names::BAO_ADDR)),
    };
    if from_env.as_deref().is_some_and(|a| url.is(a)) {
        return Ok(());
    }
    let theirs = match &from_env {
        Some(a) => format!("{var} is {}", crate::net::show_origin(a)),
        None => "VAULT_ADDR and BAO_ADDR are not set".to_owned(),
    };
    Err(FetchError::invalid(format!(
        "the vault provider `{name}`: its address {} ({place} address) is not the address the \
         environment's Vault token is for ({theirs}), so VAULT_TOKEN, BAO_TOKEN and ~/.vault-token \
         are not sent to it",
        url.show(),
    ))
    .with_hint(format!(
        "if your token is meant for this server, write auth = {{ method = \"token\" }} in {place} \
         (or set VAULT_ADDR to this address); for a Vault Agent or OpenBao Proxy with auto-auth, \
         auth = {{ method = \"agent\" }} (or set VAULT_AGENT_ADDR to this address); or configure \
         another auth method"
    )))
}

/// Where the provider sends its requests, and where that was configured.
struct Endpoint {
    url: super::Address,
    /// Whether it is a Vault Agent's or OpenBao Proxy's (`VAULT_AGENT_ADDR`): without an `auth`
    /// of its own, the agent adds its token and cme-exec sends none.
    at_agent: bool,
}

/// The TLS material of an https:// address: trust roots, client identity, verification.
struct TlsSettings {
    ca_certs: Vec<reqwest::Certificate>,
    identity: Option<zeroize::Zeroizing<Vec<u8>>>,
    skip_verify: bool,
}

/// How long a request may take and how often it is retried.
struct Timing {
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
}

impl VaultProvider {
    pub fn build(
        name: &str,
        settings: &Settings,
        ctx: &Arc<Context>,
    ) -> Result<VaultProvider, FetchError> {
        let env = &ctx.env;
        // Whatever the auth method, the child never sees a Vault token of cme-exec's
        // environment: cme has no use for one.
        env.mark_consumed(names::VAULT_TOKEN);
        env.mark_consumed(names::BAO_TOKEN);

        let place = format!("[providers.{name}]");
        let settings = effective_settings(settings, env)?;
        let endpoint = endpoint(name, &place, &settings, env)?;
        let namespace = from_settings_or_env(
            settings.namespace.clone(),
            "namespace",
            env,
            &[names::VAULT_NAMESPACE, names::BAO_NAMESPACE],
            |s| Ok(s.trim_matches('/').to_owned()),
        )?
        .map(|s| s.value)
        .filter(|s| !s.is_empty());
        let tls = tls_settings(name, &settings, ctx, &endpoint.url)?;
        let timing = timing(&settings, env)?;
        let auth = choose_auth(name, &settings, ctx, endpoint.at_agent)?;

        let transport = Transport::new(
            &endpoint.url,
            Some("v1"),
            namespace.clone(),
            http::Options {
                connect_timeout: timing.connect_timeout,
                timeout: timing.timeout,
                max_retries: timing.max_retries,
                ca_certs: tls.ca_certs,
                identity: tls.identity,
                skip_verify: tls.skip_verify,
                deadline: Some(read_deadline(ctx.timeout)),
            },
        )?;
        let mut kv_mounts: Vec<(String, KvVersion)> = settings
            .kv_mounts
            .iter()
            .map(|(m, v)| (m.trim_matches('/').to_owned(), *v))
            .collect();
        kv_mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        Ok(VaultProvider {
            name: name.to_owned(),
            ctx: ctx.clone(),
            transport: Arc::new(transport),
            address: endpoint.url.show(),
            namespace,
            auth: Arc::new(auth),
            kv_version: settings.kv_version,
            kv_mounts,
            login_started: std::sync::atomic::AtomicBool::new(false),
            login: Arc::new(watch::Sender::new(None)),
            detected: Mutex::new(HashMap::new()),
            token_valid: OnceCell::new(),
            expiries: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's name (its scheme), for logs.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The run's token, obtained on first use (one login per provider per run, whatever the
    /// number of reads; a failed login is not retried by every read).
    pub(super) async fn session(&self) -> Result<Arc<Session>, FetchError> {
        if !self.login_started.swap(true, Ordering::SeqCst) {
            let (login, transport, auth, ctx, name) = (
                Arc::clone(&self.login),
                Arc::clone(&self.transport),
                Arc::clone(&self.auth),
                Arc::clone(&self.ctx),
                self.name.clone(),
            );
            tokio::spawn(async move {
                let session = auth::obtain(&transport, &auth, &ctx).await;
                match &session {
                    Ok(Session::Injected) => tracing::debug!(
                        provider = %name,
                        "sending no token to {}: the agent or proxy adds its own",
                        transport.origin()
                    ),
                    Ok(Session::Login(_)) => tracing::debug!(
                        provider = %name,
                        "logged in to {} with {}; the token is revoked when the run ends",
                        transport.origin(),
                        auth.describe()
                    ),
                    Ok(_) => tracing::debug!(provider = %name, "using the token the user supplied"),
                    Err(e) => tracing::debug!(provider = %name, "no token: {e}"),
                }
                login.send_replace(Some(session.map(Arc::new)));
            });
        }
        let mut rx = self.login.subscribe();
        let result = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(|| {
            Err(FetchError::unavailable(
                "the login task ended without an answer",
            ))
        })
    }

    /// Splits a location into (mount, path): the longest `kv_mounts` entry it starts with,
    /// else its first segment.
    pub(super) fn split<'d>(&self, location: &'d str) -> (&'d str, &'d str, Option<KvVersion>) {
        for (mount, version) in &self.kv_mounts {
            if let Some(rest) = location
                .strip_prefix(mount.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                if !rest.is_empty() {
                    return (&location[..mount.len()], rest, Some(*version));
                }
            }
        }
        let (mount, path) = location.split_once('/').unwrap_or((location, ""));
        (mount, path, None)
    }

    /// The KV version of `mount`: configured, or detected once per mount per run through
    /// `sys/internal/ui/mounts/MOUNT`, the preflight the vault CLI's `kv` commands use.
    pub(super) async fn kv_version_of(
        &self,
        mount: &str,
        configured: Option<KvVersion>,
        session: &Session,
    ) -> Result<(KvVersion, bool), FetchError> {
        if let Some(v) = configured.or(self.kv_version) {
            return Ok((v, false));
        }
        let cell = {
            let mut detected = self.detected.lock().unwrap_or_else(|e| e.into_inner());
            detected
                .entry(mount.to_owned())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        cell.get_or_init(|| self.detect(mount, session))
            .await
            .clone()
            .map(|v| (v, true))
    }

    /// Its errors are about the mount, and `read` puts them after what the user asked for
    /// ("reading MOUNT/PATH: ..."): the lookup is cme-exec's own step, not the user's.
    async fn detect(&self, mount: &str, session: &Session) -> Result<KvVersion, FetchError> {
        let what = format!("the KV version lookup of mount `{mount}`");
        let call = Call::get(format!("sys/internal/ui/mounts/{mount}"));
        let hint = format!(
            "check the mount's name; or skip detection with kv_version = 2 (or kv_mounts = {{ \"{mount}\" = 1 }}) in [providers.{}]; a nested mount such as `team/kv` must be named in kv_mounts",
            self.name
        );
        let answer = match self.transport.send(&call, session.token()).await {
            Ok(a) => a,
            Err(e) => {
                // Only a 404 without a cause of its own (such as a namespace that does not
                // exist) is about the mount's name; a 403 is about the token or its policies; a
                // network or TLS failure keeps its own hint.
                let status = e.status();
                // Vault answers a mount that does not exist with this 403 too, so that the
                // lookup cannot be used to list mounts.
                let preflight = matches!(&e, HttpError::Status { errors, .. }
                    if errors.iter().any(|x| x.contains("preflight capability check")));
                let err = e.into_fetch_error(&what, self.transport.origin());
                return Err(match status {
                    Some(403) => {
                        let h = self
                            .denied_hint(session, &format!("any path under the mount `{mount}`"))
                            .await;
                        if preflight {
                            err.with_hint(format!(
                                "Vault answers 403 both when there is no mount `{mount}` and when the token may not use it: check the mount's name (`bao secrets list` or `vault secrets list` shows the mounts); if it is right, {h}"
                            ))
                        } else {
                            err.with_hint(h)
                        }
                    }
                    Some(404) if err.hint().is_none() => err.with_hint(hint),
                    _ => err,
                });
            }
        };
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| FetchError::unavailable(format!("{what}: the answer is not JSON")))?;
        let data = body.get("data");
        let kind = data
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = data
            .and_then(|d| d.pointer("/options/version"))
            .and_then(Value::as_str)
            .unwrap_or("1");
        tracing::debug!(provider = %self.name, "mount `{mount}`: type {kind}, version {version}");
        match (kind, version) {
            ("kv", "2") => Ok(KvVersion::V2),
            ("kv" | "generic", _) => Ok(KvVersion::V1),
            (other, _) => {
                let other: String = other.chars().filter(|c| !c.is_control()).take(40).collect();
                Err(FetchError::invalid(format!(
                    "{what}: `{mount}` is a `{other}` secrets engine, not KV"
                ))
                .with_hint(hint))
            }
        }
    }

    pub(super) async fn read(&self, doc: &Document) -> Result<Payload, FetchError> {
        let (mount, path, configured) = self.split(&doc.location);
        let version = match doc.param("version") {
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| FetchError::invalid("`version` must be a positive integer"))?,
            ),
            None => None,
        };
        let session = self.session().await?;
        let shown = match version {
            Some(v) => format!("{mount}/{path} version {v}"),
            None => format!("{mount}/{path}"),
        };
        let (kv, detected) = self
            .kv_version_of(mount, configured, &session)
            .await
            .map_err(|e| {
                let lead = if e.kind == ErrorKind::NotFound {
                    "no secret at"
                } else {
                    "reading"
                };
                let mut out = FetchError::new(e.kind, format!("{lead} {shown}: {}", e.message()));
                if let Some(h) = e.hint() {
                    out = out.with_hint(h);
                }
                out
            })?;
        let what = format!("reading {shown} ({kv})");
        let call = match kv {
            KvVersion::V2 => {
                Call::from_endpoint(&vaultrs::api::kv2::requests::ReadSecretRequest {
                    mount: mount.to_owned(),
                    path: path.to_owned(),
                    version,
                })?
            }
            KvVersion::V1 => {
                if version.is_some() {
                    return Err(FetchError::invalid(format!(
                        "{what}: `{mount}` is a KV v1 mount, which keeps no versions: remove ?version="
                    )));
                }
                Call::from_endpoint(&vaultrs::api::kv1::requests::GetSecretRequest {
                    mount: mount.to_owned(),
                    path: path.to_owned(),
                })?
            }
        };
        tracing::debug!(provider = %self.name, "{what}");
        let answer = match self.transport.send(&call, session.token()).await {
            Ok(a) => a,
            Err(e) => {
                let denied = e.status() == Some(403);
                let err = self.read_error(e, &what, mount, path, kv, detected);
                if denied {
                    let policy_path = match kv {
                        KvVersion::V2 => format!("{mount}/data/{path}"),
                        KvVersion::V1 => format!("{mount}/{path}"),
                    };
                    let h = self.denied_hint(&session, &policy_path).await;
                    return Err(err.with_hint(h));
                }
                return Err(err);
            }
        };
        let mut body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            FetchError::unavailable(format!(
                "{what}: the answer is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let pointer = match kv {
            KvVersion::V2 => "/data/data",
            KvVersion::V1 => "/data",
        };
        if kv == KvVersion::V2 {
            // KV v2 answers with the version's metadata, custom_metadata included: an expiry
            // costs no request of its own.
            if let Some(at) = body
                .pointer("/data/metadata/custom_metadata/expires_at")
                .and_then(Value::as_str)
            {
                let at: String = at.chars().filter(|c| !c.is_control()).take(64).collect();
                self.expiries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(doc.clone(), at);
            }
        }
        let data = body.pointer_mut(pointer).map(Value::take);
        zeroize_value(&mut body);
        match data {
            // The same limit as every provider's document (the response's own bound is twice
            // that, for Vault's envelope): found by the conformance suite.
            Some(mut v @ Value::Object(_))
                if crate::payload::content_bytes(&v) > crate::payload::MAX_DOCUMENT_BYTES =>
            {
                zeroize_value(&mut v);
                Err(FetchError::invalid(format!(
                    "{what} is larger than {} KiB, the limit for one secret document",
                    crate::payload::MAX_DOCUMENT_BYTES / 1024
                )))
            }
            Some(Value::Object(map)) => Ok(Payload::Object(SecretMap::new(map))),
            Some(mut other) => {
                let what_kind = crate::payload::describe(&other);
                zeroize_value(&mut other);
                Err(FetchError::invalid(format!(
                    "{what}: the secret's data is {what_kind}, expected an object"
                )))
            }
            None => Err(FetchError::not_found(format!(
                "{what}: Vault answered without data"
            ))),
        }
    }

    fn read_error(
        &self,
        e: HttpError,
        what: &str,
        mount: &str,
        path: &str,
        kv: KvVersion,
        detected: bool,
    ) -> FetchError {
        // KV v2 answers 404 for a deleted or destroyed version, with its metadata.
        let deleted = match &e {
            HttpError::Status {
                status: 404, body, ..
            } if kv == KvVersion::V2 => deletion_of(body),
            _ => None,
        };
        let status = e.status();
        let err = e.into_fetch_error(what, self.transport.origin());
        if let Some(state) = deleted {
            return FetchError::not_found(format!("{what}: this version was {state}"))
                .with_hint("read another ?version=N, or undelete it");
        }
        if err.hint().is_some() {
            return err; // a cause of its own, such as a namespace that does not exist
        }
        // A 404 is the missing secret itself: say so first, Vault's answer after it.
        let err = if status == Some(404) {
            let lead = what.strip_prefix("reading ").unwrap_or(what);
            let rest = err.message().strip_prefix(what).unwrap_or(err.message());
            FetchError::not_found(format!("no secret at {lead}{rest}"))
        } else {
            err
        };
        match status {
            Some(404) if kv == KvVersion::V2 && path.starts_with("data/") => err.with_hint(
                "leave `data/` out of the reference: cme-exec adds it for KV v2 (vault://MOUNT/PATH)",
            ),
            Some(404) if kv == KvVersion::V2 && !detected => err.with_hint(format!(
                "if `{mount}` is a KV v1 mount, say so with kv_mounts = {{ \"{mount}\" = 1 }} in [providers.{}]",
                self.name
            )),
            _ => err,
        }
    }
}

impl VaultProvider {
    /// The hint for a 403: the token is not valid (asked once per run with
    /// `auth/token/lookup-self`, which every valid token may call), or its policies do not
    /// allow `read` on `path`.
    async fn denied_hint(&self, session: &Session, path: &str) -> String {
        let valid = *self
            .token_valid
            .get_or_init(|| async {
                let Ok(call) =
                    Call::from_endpoint(&vaultrs::api::token::requests::LookupTokenSelfRequest {})
                else {
                    return true;
                };
                !matches!(
                    self.transport.send(&call, session.token()).await,
                    Err(HttpError::Status { status: 403, .. })
                )
            })
            .await;
        if valid {
            format!(
                "the token is valid, but its policies do not allow `read` on {path} \
                 (`cme-exec check` shows its policies)"
            )
        } else if matches!(session, Session::Injected) {
            format!(
                "Vault does not accept the token the agent or proxy at {} sent (or it sent \
                 none): check its auto-auth (`bao proxy`/`vault agent` logs) and that its \
                 api_proxy has use_auto_auth_token = true",
                self.transport.origin()
            )
        } else if session.login().is_some() {
            format!(
                "Vault no longer accepts the token cme-exec got by logging in ({}): it may \
                 have expired (check the role's token_ttl)",
                self.auth.describe()
            )
        } else {
            "Vault does not accept the token: it is wrong, expired or revoked; get a new one \
             (`vault login`), or check where it comes from (VAULT_TOKEN, BAO_TOKEN, \
             ~/.vault-token, or token_file/token_env in [providers.NAME] auth)"
                .to_owned()
        }
    }
}

/// `deleted` or `destroyed` when a KV v2 404 answer's metadata says so.
fn deletion_of(body: &[u8]) -> Option<&'static str> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let meta = value.pointer("/data/metadata");
    let destroyed = meta
        .and_then(|m| m.get("destroyed"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let deleted = meta
        .and_then(|m| m.get("deletion_time"))
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    zeroize_value(&mut value);
    if destroyed {
        Some("destroyed")
    } else if deleted {
        Some("deleted")
    } else {
        None
    }
}
/// The provider's settings: its table's, or for the built-in provider (no table) the
/// environment's.
fn effective_settings(settings: &Settings, env: &crate::EnvReader) -> Result<Settings, FetchError> {
    if settings.declared {
        return Ok(settings.clone());
    }
    Settings::from_environment(env).map_err(|problems| {
        let list: Vec<String> = problems
            .iter()
            .map(|p| match &p.key {
                Some(k) => format!("{}: {}", k, p.message),
                None => p.message.clone(),
            })
            .collect();
        FetchError::invalid(format!(
            "the built-in vault provider's settings from the environment: {}",
            list.join("; ")
        ))
        .with_hint(format!(
            "see {}",
            crate::docs_url("providers/vault.md#without-a-config-file")
        ))
    })
}

/// The address, checked: allowed scheme, the ambient token only for the environment's own
/// address, no TLS settings for a socket.
fn endpoint(
    name: &str,
    place: &str,
    settings: &Settings,
    env: &crate::EnvReader,
) -> Result<Endpoint, FetchError> {
    // A Vault Agent or OpenBao Proxy comes first, as in the vault CLI.
    let address = from_settings_or_env(
        settings.address.clone(),
        "address",
        env,
        &[
            names::VAULT_AGENT_ADDR,
            names::BAO_AGENT_ADDR,
            names::VAULT_ADDR,
            names::BAO_ADDR,
        ],
        |s| Ok(s.to_owned()),
    )?
    .ok_or_else(|| {
        FetchError::invalid(format!(
            "no Vault address for the vault provider `{name}`: set `address` in {place}, or VAULT_ADDR (VAULT_AGENT_ADDR for a Vault Agent or OpenBao Proxy)"
        ))
        .with_hint("cme-exec never falls back to http://127.0.0.1:8200, which on a shared machine may be someone else's server")
    })?;
    let url = super::parse_address(&address.value, settings.allow_http).map_err(|e| {
        let e = crate::net::place_allow_http(&e, name, "vault", settings.declared);
        FetchError::invalid(format!("{}: {e}", address.from))
    })?;
    // The agent's address (from VAULT_AGENT_ADDR, or a table's address that it names):
    // without an `auth` of its own, the agent adds its token and cme-exec sends none.
    let at_agent = match address.from {
        names::VAULT_AGENT_ADDR | names::BAO_AGENT_ADDR => true,
        "address" => [names::VAULT_AGENT_ADDR, names::BAO_AGENT_ADDR]
            .iter()
            .find_map(|v| env.var(v))
            .is_some_and(|agent| url.is(&agent)),
        _ => false,
    };
    if settings.declared && settings.auth.is_none() && address.from == "address" && !at_agent {
        check_ambient_token_address(name, place, &url, env)?;
    }
    if matches!(url, super::Address::Unix(_)) {
        let tls_keys = [
            ("ca_cert", settings.ca_cert.is_some()),
            ("ca_path", settings.ca_path.is_some()),
            ("client_cert", settings.client_cert.is_some()),
            ("client_key", settings.client_key.is_some()),
            ("tls_skip_verify", settings.tls_skip_verify.is_some()),
        ];
        if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
            return Err(FetchError::invalid(format!(
                "{place} {key} with the address {} ({}): {}",
                url.show(),
                address.from,
                super::UNIX_NO_TLS
            )));
        }
    }
    Ok(Endpoint { url, at_agent })
}

/// CA certificates, the client certificate and key, and whether verification is off: read
/// and applied only for an https:// address (a socket has no TLS, and the environment's
/// VAULT_CACERT may well be for another server), but checked for every address.
fn tls_settings(
    name: &str,
    settings: &Settings,
    ctx: &Context,
    url: &super::Address,
) -> Result<TlsSettings, FetchError> {
    let env = &ctx.env;
    // Paths in the config file are relative to its directory; paths in variables to the
    // working directory, as the vault CLI reads them.
    let config_path = |p: &Path| auth::resolve_path(&ctx.base_dir, p);
    let https = matches!(url, super::Address::Url(u) if u.scheme() == "https");
    let mut ca_certs = Vec::new();
    let ca_cert = from_settings_or_env(
        settings.ca_cert.as_deref().map(config_path),
        "ca_cert",
        env,
        &[names::VAULT_CACERT, names::BAO_CACERT],
        parse_path,
    )?;
    let ca_path = from_settings_or_env(
        settings.ca_path.as_deref().map(config_path),
        "ca_path",
        env,
        &[names::VAULT_CAPATH, names::BAO_CAPATH],
        parse_path,
    )?;
    if https {
        if let Some(c) = &ca_cert {
            ca_certs.extend(read_pem_bundle(&c.value, c.from)?);
        }
        if let Some(dir) = &ca_path {
            ca_certs.extend(read_pem_dir(&dir.value, dir.from)?);
        }
    }
    let identity = client_identity(settings, env, &config_path, https)?;
    let skip_verify = from_settings_or_env(
        settings.tls_skip_verify,
        "tls_skip_verify",
        env,
        &[names::VAULT_SKIP_VERIFY, names::BAO_SKIP_VERIFY],
        parse_go_bool,
    )?;
    let skip_verify = match skip_verify {
        Some(s) if s.value && https => {
            warn(&format!(
                "TLS certificate verification is off for the vault provider `{name}` ({}): \
                 anyone on the network path can read the Vault token and every secret",
                s.from
            ));
            true
        }
        _ => false,
    };
    Ok(TlsSettings {
        ca_certs,
        identity,
        skip_verify,
    })
}

/// The client certificate followed by its key (PEM), read only for an https:// address; one
/// without the other is an error whatever the address.
fn client_identity(
    settings: &Settings,
    env: &crate::EnvReader,
    config_path: &dyn Fn(&Path) -> PathBuf,
    https: bool,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, FetchError> {
    let client_cert = from_settings_or_env(
        settings.client_cert.as_deref().map(config_path),
        "client_cert",
        env,
        &[names::VAULT_CLIENT_CERT, names::BAO_CLIENT_CERT],
        parse_path,
    )?;
    let client_key = from_settings_or_env(
        settings.client_key.as_deref().map(config_path),
        "client_key",
        env,
        &[names::VAULT_CLIENT_KEY, names::BAO_CLIENT_KEY],
        parse_path,
    )?;
    match (&client_cert, &client_key) {
        (Some(cert), Some(key)) if https => {
            let mut pem = auth::read_small_file(&cert.value, MAX_PEM_BYTES, cert.from)?;
            pem.push(b'\n');
            pem.extend_from_slice(&auth::read_small_file(&key.value, MAX_PEM_BYTES, key.from)?);
            Ok(Some(pem))
        }
        (Some(_), None) | (None, Some(_)) => Err(FetchError::invalid(
            "a client certificate needs both client_cert and client_key \
             (VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)",
        )),
        _ => Ok(None),
    }
}

/// The per-request timeout, the connect timeout (never longer) and the number of retries.
fn timing(settings: &Settings, env: &crate::EnvReader) -> Result<Timing, FetchError> {
    let timeout = from_settings_or_env(
        settings.timeout.map(Duration::from_secs),
        "timeout",
        env,
        &[names::VAULT_CLIENT_TIMEOUT, names::BAO_CLIENT_TIMEOUT],
        parse_duration,
    )?
    .map_or(DEFAULT_TIMEOUT, |s| s.value);
    let connect_timeout = settings
        .connect_timeout
        .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs)
        .min(timeout);
    let max_retries = from_settings_or_env(
        settings.max_retries,
        "max_retries",
        env,
        &[names::VAULT_MAX_RETRIES, names::BAO_MAX_RETRIES],
        |s| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or_else(|| "expected a number from 0 to 10".to_owned())
        },
    )?
    .map_or(DEFAULT_MAX_RETRIES, |s| s.value);
    Ok(Timing {
        timeout,
        connect_timeout,
        max_retries,
    })
}

/// The auth method (the agent's token at an agent's address when none is configured), its
/// paths made absolute, and the variables it reads marked as credentials.
fn choose_auth(
    name: &str,
    settings: &Settings,
    ctx: &Context,
    at_agent: bool,
) -> Result<Auth, FetchError> {
    let auth = match settings.auth.clone() {
        Some(auth) => auth,
        None if at_agent => Auth::Agent,
        None => Auth::default(),
    };
    // A login through the agent: the agent logs in itself, and one that forces its own
    // token (`use_auto_auth_token = "force"`) would turn this run's revoke-self at exit into
    // a revocation of the agent's token, which every other run shares.
    if at_agent && auth.mount().is_some() {
        return Err(FetchError::invalid(format!(
            "the vault provider `{name}`: its address is the Vault agent's \
             (VAULT_AGENT_ADDR or BAO_AGENT_ADDR), and auth method \"{}\" would log in \
             through the agent and revoke that token through it at exit",
            auth.method()
        ))
        .with_hint(
            "through an agent or proxy with auto-auth, use auth = { method = \"agent\" } (or \
             no auth); to log in yourself, give the Vault server's address instead",
        ));
    }
    let auth = resolve_auth_paths(auth, settings.declared.then_some(ctx.base_dir.as_path()));
    // Mark the variables the auth method reads as credentials now, so that the child
    // never gets them even if the run stops before logging in.
    for name in secret_variables(&auth) {
        ctx.env.mark_consumed(name);
    }
    Ok(auth)
}

/// Makes the config file's relative credential paths absolute (`base_dir` is `None` for the
/// built-in provider, whose paths come from variables).
fn resolve_auth_paths(auth: Auth, base_dir: Option<&Path>) -> Auth {
    let Some(base) = base_dir else {
        return auth;
    };
    let fix = |s: Source| match s {
        Source::File(p) => Source::File(auth::resolve_path(base, &p)),
        other => other,
    };
    match auth {
        Auth::Token { source } => Auth::Token {
            source: source.map(fix),
        },
        Auth::AppRole {
            mount,
            role_id,
            secret_id,
        } => Auth::AppRole {
            mount,
            role_id: match role_id {
                RoleId::From(s) => RoleId::From(fix(s)),
                other => other,
            },
            secret_id: secret_id.map(fix),
        },
        Auth::Kubernetes {
            mount,
            role,
            token_file,
        } => Auth::Kubernetes {
            mount,
            role,
            token_file: auth::resolve_path(base, &token_file),
        },
        Auth::Jwt { mount, role, jwt } => Auth::Jwt {
            mount,
            role,
            jwt: match jwt {
                JwtSource::From(s) => JwtSource::From(fix(s)),
                other => other,
            },
        },
        Auth::Userpass {
            mount,
            username,
            password,
        } => Auth::Userpass {
            mount,
            username,
            password: fix(password),
        },
        Auth::Agent => Auth::Agent,
    }
}

/// The variables an auth method reads credentials from.
fn secret_variables(auth: &Auth) -> Vec<&str> {
    fn env(s: &Source) -> Option<&str> {
        match s {
            Source::Env(n) => Some(n.as_str()),
            Source::File(_) => None,
        }
    }
    match auth {
        Auth::Token { source } => source.iter().filter_map(env).collect(),
        Auth::AppRole {
            role_id, secret_id, ..
        } => {
            let mut v: Vec<&str> = secret_id.iter().filter_map(env).collect();
            if let RoleId::From(s) = role_id {
                v.extend(env(s));
            }
            v
        }
        Auth::Kubernetes { .. } | Auth::Agent => Vec::new(),
        Auth::Jwt { jwt, .. } => match jwt {
            JwtSource::From(s) => env(s).into_iter().collect(),
            JwtSource::GithubActions { .. } => vec![names::ACTIONS_ID_TOKEN_REQUEST_TOKEN],
        },
        Auth::Userpass { password, .. } => env(password).into_iter().collect(),
    }
}

/// A PEM bundle file (`ca_cert`).
fn read_pem_bundle(path: &Path, from: &str) -> Result<Vec<reqwest::Certificate>, FetchError> {
    let pem = auth::read_small_file(path, MAX_PEM_BYTES, from)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
    if certs.is_empty() {
        return Err(FetchError::invalid(format!(
            "{from}: {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Every PEM certificate in a directory (`ca_path`), like the vault CLI's `VAULT_CAPATH`.
fn read_pem_dir(dir: &Path, from: &str) -> Result<Vec<reqwest::Certificate>, FetchError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let err = FetchError::io(dir, &e);
        FetchError::new(err.kind, format!("{from}: {}", err.message()))
    })?;
    let mut names: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    let mut certs = Vec::new();
    for path in names {
        if path.is_file() {
            if let Ok(pem) = auth::read_small_file(&path, MAX_PEM_BYTES, from) {
                certs.extend(reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default());
            }
        }
    }
    if certs.is_empty() {
        return Err(FetchError::invalid(format!(
            "{from}: no PEM certificate in {}",
            dir.display()
        )));
    }
    Ok(certs)
}

/// A warning on stderr, in the binary's format; printed whatever the verbosity.
fn warn(message: &str) {
    use std::io::Write as _;
    let text = format!("cme-exec: warning: {message}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `auth/token/lookup-self`'s answer: only what `check` shows (never `id`, the token).
#[derive(serde::Deserialize)]
struct Lookup {
    #[serde(default)]
    data: LookupData,
}

#[derive(serde::Deserialize, Default)]
struct LookupData {
    #[serde(default)]
    accessor: Option<String>,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    ttl: Option<u64>,
    /// Only whether it is set.
    #[serde(default)]
    expire_time: Option<serde::de::IgnoredAny>,
}

/// `1h2m3s`, for a token's TTL.
fn format_ttl(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[async_trait]
impl Provider for VaultProvider {
    fn kind(&self) -> Kind {
        super::KIND
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        self.read(doc).await
    }

    async fn write(
        &self,
        location: &str,
        fields: &crate::provider::Fields,
    ) -> Result<bool, FetchError> {
        super::write::write(self, location, fields).await
    }

    /// Over `https://`, before the server has answered anything in this run, the first
    /// document is read alone: its connection negotiates HTTP/2 (ALPN), and the other reads
    /// then share it instead of each opening (and handshaking) a connection of its own, which
    /// is what concurrent first requests do while no connection exists yet. One round trip for
    /// N-1 TLS handshakes. A login or a KV version detection, when there is one, already did
    /// this; plain `http://` and sockets (HTTP/1.1: a connection per request in flight) skip it.
    async fn fetch_many(
        &self,
        docs: &[Document],
        concurrency: usize,
    ) -> Vec<Result<Payload, FetchError>> {
        if docs.len() < 2 || !self.transport.tls() || self.transport.answered() {
            return crate::fetch_concurrently(docs, concurrency, |doc| self.read(doc)).await;
        }
        let mut out = vec![self.read(&docs[0]).await];
        out.extend(crate::fetch_concurrently(&docs[1..], concurrency, |doc| self.read(doc)).await);
        out
    }

    async fn expiry(&self, doc: &Document, _: bool) -> Result<Option<String>, FetchError> {
        Ok(self
            .expiries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(doc)
            .cloned())
    }

    /// From `auth/token/lookup-self`: accessor, policies, entity or display name, TTL left.
    async fn identity(&self) -> Result<Option<Identity>, FetchError> {
        let session = self.session().await?;
        let call = Call::from_endpoint(&vaultrs::api::token::requests::LookupTokenSelfRequest {})?;
        let what = "looking up the token (auth/token/lookup-self)";
        // Under the resolution deadline, like the reads (`check`: one deadline for everything).
        let answer = self
            .transport
            .send(&call, session.token())
            .await
            .map_err(|e| e.into_fetch_error(what, self.transport.origin()))?;
        // Only the fields shown are parsed, into plain strings: the answer's `id` is the token
        // itself (the agent's, through a proxy) and is skipped unread; the body is a buffer
        // wiped when `answer` is dropped.
        let lookup: Lookup = serde_json::from_slice(&answer.body)
            .map_err(|_| FetchError::unavailable(format!("{what}: the answer is not JSON")))?;
        drop(answer);
        let data = lookup.data;
        let clean = |s: Option<String>| {
            s.filter(|s| !s.is_empty())
                .map(|s| s.chars().filter(|c| !c.is_control()).collect::<String>())
        };
        let mut facts = vec![
            ("address".to_owned(), self.address.clone()),
            ("auth".to_owned(), self.auth.describe()),
        ];
        if let Some(ns) = &self.namespace {
            facts.push(("namespace".into(), ns.clone()));
        }
        // The accessor identifies the user's or the run's token in the audit log; the agent's
        // is not cme-exec's to show.
        if !matches!(*session, Session::Injected) {
            if let Some(a) = clean(data.accessor) {
                facts.push(("accessor".into(), a));
            }
        }
        facts.push((
            "policies".into(),
            clean(Some(data.policies.join(","))).unwrap_or_default(),
        ));
        if let Some(e) = clean(data.entity_id) {
            facts.push(("entity_id".into(), e));
        }
        if let Some(d) = clean(data.display_name) {
            facts.push(("display_name".into(), d));
        }
        let ttl = data.ttl.unwrap_or(0);
        let expires = data.expire_time.is_some();
        facts.push((
            "ttl".into(),
            if ttl == 0 && !expires {
                "never expires".into()
            } else {
                format_ttl(ttl)
            },
        ));
        match &*session {
            Session::Login(login) => {
                let revoked = if login.batch {
                    "no (batch token: expires with its TTL)"
                } else {
                    "yes"
                };
                facts.push(("revoked_at_exit".into(), revoked.into()));
            }
            Session::Injected => {
                facts.push(("revoked_at_exit".into(), "never (the agent's token)".into()));
            }
            Session::Supplied(_) => {}
        }
        Ok(Some(Identity { facts }))
    }

    /// Revokes the token this run obtained by logging in; a token the user supplied is left
    /// alone.
    async fn finish(&self) {
        if !self.login_started.load(Ordering::SeqCst) {
            return;
        }
        // A login still running (the reads were dropped by the deadline or a signal) gets a
        // short grace to land, so that its token can be revoked too.
        let mut rx = self.login.subscribe();
        let landed = match tokio::time::timeout(LOGIN_GRACE, rx.wait_for(Option::is_some)).await {
            Ok(Ok(value)) => value.clone(),
            _ => None,
        };
        let Some(Ok(session)) = landed else {
            return;
        };
        // Only a token this run logged in for; never the agent's (`Session::Injected` holds
        // none to revoke) nor the user's.
        let Some(login) = session.login() else {
            return;
        };
        if login.revoked.swap(true, Ordering::SeqCst) {
            return;
        }
        if login.batch {
            tracing::debug!(provider = %self.name, "a batch token cannot be revoked: it expires with its TTL");
            return;
        }
        match auth::revoke(&self.transport, login).await {
            Ok(()) => tracing::debug!(provider = %self.name, "revoked the login token"),
            Err(e) => warn(&format!(
                "the vault provider `{}` could not revoke its login token: {}; it stays valid until its TTL ends",
                self.name,
                e.message()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_booleans_like_the_vault_cli() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_go_bool("True").unwrap());
        assert!(!parse_go_bool("0").unwrap());
        assert!(parse_go_bool("yes").is_err());
        assert_eq!(format_ttl(3725), "1h2m5s");
        assert_eq!(format_ttl(59), "59s");
    }

    fn provider(vars: &[(&str, &str)], settings: Settings) -> Result<VaultProvider, FetchError> {
        let ctx = Arc::new(Context::new(
            "/etc/cme".into(),
            crate::EnvReader::from_vars(vars.iter().map(|(k, v)| ((*k).into(), (*v).into()))),
        ));
        VaultProvider::build("vault", &settings, &ctx)
    }

    #[test]
    fn address_is_required_and_checked() {
        let e = provider(&[], Settings::default()).err().unwrap();
        assert!(e.message().contains("no Vault address"), "{e}");
        let e = provider(
            &[("VAULT_ADDR", "http://vault.example.com")],
            Settings::default(),
        )
        .err()
        .unwrap();
        assert!(e.message().starts_with("VAULT_ADDR: plain http://"), "{e}");
        let p = provider(
            &[("BAO_ADDR", "http://127.0.0.1:8200")],
            Settings::default(),
        )
        .unwrap();
        assert_eq!(p.address, "http://127.0.0.1:8200");
        assert!(p.ctx.env.consumed().contains("VAULT_TOKEN"));
        assert!(p.ctx.env.consumed().contains("BAO_TOKEN"));
    }

    #[test]
    fn builtin_provider_auth_from_the_environment() {
        let p = provider(
            &[
                ("VAULT_ADDR", "http://127.0.0.1:8200"),
                ("CME_EXEC_VAULT_AUTH", "approle"),
                ("CME_EXEC_VAULT_AUTH_ROLE_ID", "r"),
                ("CME_EXEC_VAULT_AUTH_SECRET_ID_ENV", "MY_SECRET_ID"),
                ("CME_EXEC_VAULT_KV_VERSION", "2"),
            ],
            Settings::default(),
        )
        .unwrap();
        assert_eq!(p.auth.describe(), "approle at auth/approle");
        assert_eq!(p.kv_version, Some(KvVersion::V2));
        assert!(p.ctx.env.consumed().contains("MY_SECRET_ID"));

        let e = provider(
            &[
                ("VAULT_ADDR", "http://127.0.0.1:8200"),
                ("CME_EXEC_VAULT_AUTH", "jwt"),
                ("CME_EXEC_VAULT_AUTH_ROLEZ", "x"),
            ],
            Settings::default(),
        )
        .err()
        .unwrap();
        assert!(e.message().contains("rolez: unknown key"), "{e}");
        assert!(e.message().contains("jwt_file"), "{e}");
    }

    /// The ambient token goes only to the environment's address, unless the
    /// config ties them with an explicit token method.
    #[test]
    fn an_ambient_token_goes_only_to_the_environments_address() {
        let s = || Settings {
            declared: true,
            address: Some("http://127.0.0.1:8200".into()),
            ..Settings::default()
        };
        for env in [
            &[("VAULT_TOKEN", "t")][..],
            &[
                ("VAULT_TOKEN", "t"),
                ("VAULT_ADDR", "http://127.0.0.1:9999"),
            ],
            &[
                ("BAO_TOKEN", "t"),
                ("BAO_ADDR", "https://vault.example.com"),
            ],
        ] {
            let e = provider(env, s()).err().unwrap();
            assert!(e.message().contains("is not the address"), "{e}");
            assert!(e.hint().unwrap().contains("method = \"token\""), "{e:?}");
        }
        assert!(provider(&[("VAULT_ADDR", "http://127.0.0.1:8200")], s()).is_ok());
        let tied = Settings {
            auth: Some(Auth::Token { source: None }),
            ..s()
        };
        assert!(provider(&[("VAULT_ADDR", "http://127.0.0.1:9999")], tied).is_ok());
    }

    /// VAULT_AGENT_ADDR comes before VAULT_ADDR and brings the agent method (no token
    /// sent, whatever VAULT_TOKEN holds) unless the table names another; a table's address
    /// that VAULT_AGENT_ADDR names is the agent's too.
    #[test]
    fn the_agent_address_comes_first_and_sends_no_token() {
        let vars = [
            ("VAULT_AGENT_ADDR", "unix:///run/proxy.sock"),
            ("BAO_AGENT_ADDR", "unix:///run/other.sock"),
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "t"),
            // Ignored for a socket (no TLS there), not an error.
            ("VAULT_CACERT", "/nonexistent/ca.pem"),
        ];
        let p = provider(&vars, Settings::default()).unwrap();
        assert_eq!(p.address, "unix:///run/proxy.sock");
        assert_eq!(*p.auth, Auth::Agent);
        assert_eq!(p.transport.origin(), "unix:///run/proxy.sock");
        assert!(p.ctx.env.consumed().contains("VAULT_TOKEN"));

        let p = provider(&vars[1..], Settings::default()).unwrap();
        assert_eq!(
            (p.address.as_str(), &*p.auth),
            ("unix:///run/other.sock", &Auth::Agent)
        );

        // The built-in provider's auth from CME_EXEC_VAULT_AUTH, through the agent's address.
        let mut with_auth = vars.to_vec();
        with_auth.push(("CME_EXEC_VAULT_AUTH", "token"));
        let p = provider(&with_auth, Settings::default()).unwrap();
        assert_eq!(*p.auth, Auth::Token { source: None });

        let declared = |address: &str| Settings {
            declared: true,
            address: Some(address.into()),
            ..Settings::default()
        };
        // The table's address is the agent's: agent; another address: the ambient-token rule.
        let p = provider(&vars, declared("unix:///run/proxy.sock")).unwrap();
        assert_eq!(*p.auth, Auth::Agent);
        let e = provider(&vars, declared("unix:///run/elsewhere.sock"))
            .err()
            .unwrap();
        assert!(e.message().contains("is not the address"), "{e}");
        assert!(e.hint().unwrap().contains("method = \"agent\""), "{e:?}");

        // TLS keys in the table with an agent socket from the environment.
        let e = provider(
            &vars,
            Settings {
                declared: true,
                ca_cert: Some("/etc/ca.pem".into()),
                ..Settings::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            e.message()
                .contains("ca_cert with the address unix:///run/proxy.sock (VAULT_AGENT_ADDR)"),
            "{e}"
        );
        let e = provider(
            &[("VAULT_AGENT_ADDR", "unix://rel.sock")],
            Settings::default(),
        )
        .err()
        .unwrap();
        assert!(
            e.message().starts_with("VAULT_AGENT_ADDR: the socket path"),
            "{e}"
        );
    }

    #[test]
    fn mounts_split_by_the_longest_declared_mount() {
        let mut s = Settings {
            declared: true,
            address: Some("http://127.0.0.1:8200".into()),
            ..Settings::default()
        };
        s.kv_mounts.insert("team/kv".into(), KvVersion::V1);
        s.kv_mounts.insert("team".into(), KvVersion::V2);
        let p = provider(&[("VAULT_ADDR", "http://127.0.0.1:8200/")], s).unwrap();
        assert_eq!(
            p.split("team/kv/app/x"),
            ("team/kv", "app/x", Some(KvVersion::V1))
        );
        assert_eq!(p.split("team/app"), ("team", "app", Some(KvVersion::V2)));
        assert_eq!(p.split("secret/a/b"), ("secret", "a/b", None));
    }

    #[test]
    fn config_paths_are_relative_to_the_config_file() {
        let auth = Auth::AppRole {
            mount: "approle".into(),
            role_id: RoleId::From(Source::File("role".into())),
            secret_id: Some(Source::Env("S".into())),
        };
        let fixed = resolve_auth_paths(auth.clone(), Some(Path::new("/etc/cme")));
        assert_eq!(
            fixed,
            Auth::AppRole {
                mount: "approle".into(),
                role_id: RoleId::From(Source::File("/etc/cme/role".into())),
                secret_id: Some(Source::Env("S".into())),
            }
        );
        assert_eq!(resolve_auth_paths(auth.clone(), None), auth);
        assert_eq!(secret_variables(&fixed), ["S"]);
    }

    #[test]
    fn deleted_versions_are_recognised() {
        let body = br#"{"data":{"data":null,"metadata":{"deletion_time":"2024-01-01T00:00:00Z","destroyed":false,"version":2}}}"#;
        assert_eq!(deletion_of(body), Some("deleted"));
        let body = br#"{"data":{"data":null,"metadata":{"deletion_time":"","destroyed":true}}}"#;
        assert_eq!(deletion_of(body), Some("destroyed"));
        assert_eq!(deletion_of(br#"{"errors":[]}"#), None);
    }
}
