//! The transport under the Vault provider: vaultrs describes each API call (path, method, query,
//! body), and this module sends it, because the network rules of cme-exec are stricter than
//! what vaultrs' own client does ([security](../../../docs/security.md#fail-closed)):
//!
//! - **Redirects** are followed only to the same origin (scheme, host and port), so the
//!   `X-Vault-Token` header can never reach another server; reqwest only strips its own list of
//!   sensitive headers, which does not include Vault's.
//! - **Retries** with exponential backoff and jitter on connection errors, timeouts, 412, 429
//!   (honouring `Retry-After`) and 5xx other than 501, like the vault CLI; never on 400, 401,
//!   403, 404 or a TLS failure.
//! - **Bounded bodies**: a response larger than [`MAX_RESPONSE_BYTES`] is refused while it is
//!   read, into a buffer that is wiped when dropped (hyper's own read buffers are not ours to
//!   wipe).
//! - **No logging of bodies or tokens**, and error messages built from statuses, Vault's
//!   `errors` list and I/O error kinds only. vaultrs logs through `tracing` (rustify logs each
//!   request); none of its execution code runs here.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use rustify::endpoint::Endpoint;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use crate::payload::MAX_DOCUMENT_BYTES;
use crate::secure_io::{deepest_cause, wiped_bytes, SecretBuf};
use crate::{ErrorKind, FetchError};

/// The largest response body read from Vault: a document of [`MAX_DOCUMENT_BYTES`] plus the
/// JSON around it.
pub const MAX_RESPONSE_BYTES: usize = 2 * MAX_DOCUMENT_BYTES;

/// At most this many of Vault's `errors` are shown, each cut to [`MAX_ERROR_CHARS`].
const MAX_ERRORS: usize = 5;
const MAX_ERROR_CHARS: usize = 300;

/// How many redirects to the same origin are followed.
const MAX_REDIRECTS: usize = 3;

/// No attempt is started with less time than this left before the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Idle connections kept per server: the resolver reads at most 16 documents of a provider at
/// a time (`CONCURRENCY` in the binary's `resolve.rs`), so this many cover a whole round of
/// reads over HTTP/1.1, where each request in flight needs its own connection. Over HTTP/2 one
/// connection carries them all.
const MAX_IDLE_PER_HOST: usize = 16;

/// The base URL of requests sent through a unix socket: only its path matters (the socket is
/// the only way out, and `Host: localhost` is what the vault CLI sends there too).
const SOCKET_BASE: &str = "http://localhost/";

/// One API call, ready to send (and to send again on a retry).
pub struct Call {
    pub method: reqwest::Method,
    /// Relative to `/v1/`, `/`-separated, not yet percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub body: Option<Zeroizing<Vec<u8>>>,
}

impl Call {
    /// The call a vaultrs endpoint describes. The endpoint's fields may hold a credential (a
    /// secret id, a password, a JWT): the body is taken into a wiped buffer, and the caller
    /// wipes the endpoint's own strings.
    pub fn from_endpoint<E: Endpoint>(endpoint: &E) -> Result<Call, FetchError> {
        let build_error =
            || FetchError::invalid("cannot build the Vault request (this is a bug in cme-exec)");
        Ok(Call {
            method: endpoint.method().into(),
            // vaultrs 0.8 writes some paths with a leading tab ("\t/auth/token/revoke-self"),
            // which rustify would send as `%09`: trim every segment's surroundings.
            path: endpoint.path().trim().trim_matches('/').to_owned(),
            query: endpoint
                .query()
                .map_err(|_| build_error())?
                .filter(|q| !q.is_empty()),
            body: endpoint
                .body()
                .map_err(|_| build_error())?
                .map(Zeroizing::new),
        })
    }

    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: reqwest::Method::GET,
            path: path.into(),
            query: None,
            body: None,
        }
    }
}

/// Whether a call revokes a token (`auth/token/revoke`, `revoke-self`, `revoke-accessor`, ...).
fn is_revocation(path: &str) -> bool {
    path.trim_start_matches('/')
        .to_ascii_lowercase()
        .starts_with("auth/token/revoke")
}

/// A 2xx answer.
pub struct Answer {
    pub body: Zeroizing<Vec<u8>>,
}

/// Why a call failed. Never holds a token or a secret; `body` (of a non-2xx answer) is kept
/// only for callers that look for Vault's own fields in it, and is never shown.
pub enum HttpError {
    /// A non-2xx answer (after retries, for the retryable ones).
    Status {
        status: u16,
        errors: Vec<String>,
        body: Zeroizing<Vec<u8>>,
        attempts: u32,
    },
    /// A redirect that was not followed: to another origin, from https to http, or too many.
    Redirect { status: u16, to: Option<String> },
    /// The TLS handshake failed (never retried).
    Tls(String),
    /// No answer: connection refused or reset, DNS, timeout (after retries).
    Transport {
        message: String,
        timeout: bool,
        attempts: u32,
    },
    /// The body was larger than [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The request could not be built.
    Build(String),
}

impl std::fmt::Debug for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Status {
                status, attempts, ..
            } => write!(f, "HttpError::Status({status}, {attempts} attempts)"),
            HttpError::Redirect { status, .. } => write!(f, "HttpError::Redirect({status})"),
            HttpError::Tls(m) => write!(f, "HttpError::Tls({m})"),
            HttpError::Transport { message, .. } => write!(f, "HttpError::Transport({message})"),
            HttpError::TooLarge => f.write_str("HttpError::TooLarge"),
            HttpError::Build(m) => write!(f, "HttpError::Build({m})"),
        }
    }
}

impl HttpError {
    /// Describes the failure of `what` (e.g. "reading secret/app") against `origin`.
    pub fn into_fetch_error(self, what: &str, origin: &str) -> FetchError {
        match self {
            HttpError::Status {
                status,
                errors,
                attempts,
                ..
            } => {
                let kind = match status {
                    404 => ErrorKind::NotFound,
                    401 | 403 => ErrorKind::Denied,
                    400 | 405 | 409 | 422 => ErrorKind::Invalid,
                    _ => ErrorKind::Unavailable,
                };
                let tries = if attempts > 1 {
                    format!(" ({attempts} attempts)")
                } else {
                    String::new()
                };
                let e = FetchError::new(
                    kind,
                    format!(
                        "{what}: Vault at {origin} answered {}{tries}",
                        describe_status(status, &errors)
                    ),
                );
                // Whatever the call, a namespace the server does not have is the cause.
                if status == 404 && errors.iter().any(|e| e.contains("namespace not found")) {
                    e.with_hint(
                        "check the namespace's name (namespace in [providers.NAME], or \
                         VAULT_NAMESPACE): this server has no such namespace",
                    )
                } else {
                    e
                }
            }
            HttpError::Redirect { status, to } => FetchError::new(
                ErrorKind::Denied,
                format!(
                    "{what}: Vault at {origin} answered {status} with a redirect to {}; not followed, \
                     so the token never leaves {origin}",
                    to.as_deref().unwrap_or("an unusable location")
                ),
            )
            .with_hint(
                "point `address` (VAULT_ADDR) at the server that answers, such as the active node \
                 or the load balancer",
            ),
            HttpError::Tls(reason) => {
                let e = FetchError::new(
                    ErrorKind::Unavailable,
                    format!("{what}: TLS handshake with {origin} failed: {reason}"),
                );
                // Each TLS failure has its own fix; a CA bundle mends only an unknown issuer.
                if reason == NOT_TLS {
                    e.with_hint(
                        "the address says https:// but the server answers plain HTTP: use \
                         http:// if it has no TLS (allowed for loopback addresses, else with \
                         allow_http), or the port of its TLS listener",
                    )
                } else if reason == WRONG_NAME {
                    e.with_hint(
                        "use the host name the certificate was issued for in the address \
                         (address, or VAULT_ADDR)",
                    )
                } else {
                    e.with_hint(
                        "give the CA that signed Vault's certificate with ca_cert \
                         (VAULT_CACERT) or ca_path (VAULT_CAPATH)",
                    )
                }
            }
            HttpError::Transport {
                message,
                timeout,
                attempts,
            } => {
                let tries = if attempts > 1 {
                    format!(" ({attempts} attempts)")
                } else {
                    String::new()
                };
                let kind = if timeout {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unavailable
                };
                if origin.starts_with("unix://") {
                    FetchError::new(
                        kind,
                        format!(
                            "{what}: no Vault agent listening at {origin}{tries}: {message}"
                        ),
                    )
                    .with_hint(
                        "is the Vault Agent or OpenBao Proxy running, with a `listener \"unix\"` \
                         at this path, and is the socket mounted into this container (a \
                         hostPath or shared emptyDir volume)?",
                    )
                } else {
                    FetchError::new(
                        kind,
                        format!("{what}: no answer from Vault at {origin}{tries}: {message}"),
                    )
                }
            }
            HttpError::TooLarge => FetchError::invalid(format!(
                "{what}: Vault at {origin} answered with more than {} KiB",
                MAX_RESPONSE_BYTES / 1024
            )),
            HttpError::Build(message) => FetchError::invalid(format!("{what}: {message}")),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The TLS failure of a server that answered in plain HTTP.
const NOT_TLS: &str = "the server does not speak TLS (its answer was not a TLS record)";
/// The TLS failure of a certificate issued for another name.
const WRONG_NAME: &str = "the server's certificate is not valid for this host name";

/// `403 (permission denied)`, `404`, `400 (invalid role or secret ID; ...)`.
pub fn describe_status(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        status.to_string()
    } else {
        format!("{status} ({})", errors.join("; "))
    }
}

/// Vault's error shape: `{"errors": ["permission denied"]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// Vault's `errors`, cleaned for a terminal and bounded. Vault wraps some in go-multierror's
/// "1 error occurred:\n\t* permission denied\n\n": those are unwrapped to their items.
fn errors_of(body: &[u8]) -> Vec<String> {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return Vec::new();
    };
    parsed
        .errors
        .iter()
        .flat_map(|e| unwrap_multierror(e))
        .filter(|e| !e.is_empty())
        .take(MAX_ERRORS)
        .map(|e| {
            let mut clean: String = e.chars().take(MAX_ERROR_CHARS).collect();
            if e.chars().count() > MAX_ERROR_CHARS {
                clean.push('…');
            }
            clean
        })
        .collect()
}

fn unwrap_multierror(e: &str) -> Vec<String> {
    let squash = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c.is_control())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut lines = e.lines();
    let first = lines.next().unwrap_or("").trim();
    let is_header = first.ends_with("occurred:")
        && first
            .split_whitespace()
            .next()
            .is_some_and(|n| n.parse::<u32>().is_ok());
    if is_header {
        let items: Vec<String> = lines
            .filter_map(|l| l.trim().strip_prefix("* ").map(squash))
            .collect();
        if !items.is_empty() {
            return items;
        }
    }
    vec![squash(e)]
}

/// Network settings of one transport.
pub struct Options {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_retries: u32,
    /// PEM CA certificates; when non-empty, the only roots trusted.
    pub ca_certs: Vec<reqwest::Certificate>,
    /// PEM client certificate followed by its key.
    pub identity: Option<Zeroizing<Vec<u8>>>,
    pub skip_verify: bool,
    /// When calls made with [`Budget::Deadline`] must have given up, leaving the resolver's
    /// own deadline for last, so that the error users see names the cause.
    pub deadline: Option<tokio::time::Instant>,
}

/// How long a call may take.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Per attempt the configured timeout, but no attempt (and no retry) past the transport's
    /// deadline: KV reads and KV version detection.
    Deadline,
    /// The configured timeout per attempt only: a login, whose late answer must still be
    /// received (and its token revoked) after the reads were given up; revocation and lookups
    /// that run after resolution.
    Full,
}

/// One Vault server (or the GitHub OIDC endpoint) and how to reach it: one HTTP client, so
/// one connection pool, for every call of a provider's run (login, KV version detection, the
/// concurrent reads, the identity lookup and the revocation).
pub struct Transport {
    client: reqwest::Client,
    /// Over TLS (`https://`): HTTP/2 may be negotiated.
    tls: bool,
    /// Whether the server has answered (anything) in this run: a connection exists.
    answered: std::sync::atomic::AtomicBool,
    /// The address, with `v1` appended to its path for Vault calls.
    base: Url,
    /// `scheme://host:port`, for messages.
    origin: String,
    namespace: Option<String>,
    max_retries: u32,
    timeout: Duration,
    deadline: Option<tokio::time::Instant>,
    /// What the server is, for progress and retry messages.
    store: &'static str,
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Transport {
    /// A transport for `address` (a URL's path is kept: Vault behind a path prefix works).
    pub fn new(
        address: &super::Address,
        api_prefix: Option<&str>,
        namespace: Option<String>,
        options: Options,
    ) -> Result<Transport, FetchError> {
        let socket_base;
        let (base, origin) = match address {
            super::Address::Url(u) => (u, origin_of(u)),
            super::Address::Unix(_) => {
                socket_base = Url::parse(SOCKET_BASE).expect("a valid URL");
                (&socket_base, address.show())
            }
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("cme-exec/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(same_origin_redirects())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .tcp_nodelay(true);
        if base.host().is_some_and(|h| super::is_loopback(&h)) {
            // Like Go's http.ProxyFromEnvironment (and so the vault CLI): never proxy loopback.
            builder = builder.no_proxy();
        } else if base.domain().is_some() {
            // One name lookup per run, not one per connection (see `resolver`).
            builder = builder.dns_resolver(std::sync::Arc::new(resolver::Once::default()));
        }
        if let super::Address::Unix(path) = address {
            // Every connection goes to the socket; no proxy, no name lookup, no TLS (a local
            // socket; the settings refuse TLS keys with a unix:// address).
            builder = builder
                .unix_socket(path.as_path())
                .no_proxy()
                .tls_certs_only(Vec::new());
        } else if base.scheme() == "http" {
            // No TLS on this connection: loading the system's roots would only cost time.
            builder = builder.tls_certs_only(Vec::new());
        } else {
            if !options.ca_certs.is_empty() {
                builder = builder.tls_certs_only(options.ca_certs);
            } else {
                builder = builder.tls_certs_only(crate::tls::reqwest_roots(&origin)?);
            }
            if let Some(pem) = &options.identity {
                let identity = reqwest::Identity::from_pem(pem).map_err(|_| {
                    FetchError::invalid(
                        "client_cert/client_key (VAULT_CLIENT_CERT/VAULT_CLIENT_KEY): not a PEM \
                         certificate and private key",
                    )
                })?;
                builder = builder.identity(identity);
            }
            if options.skip_verify {
                builder = builder.tls_danger_accept_invalid_certs(true);
            }
        }
        let client = builder.build().map_err(|e| {
            FetchError::invalid(format!(
                "cannot set up the HTTP client for {origin}: {}",
                deepest_cause(&e)
            ))
        })?;
        let mut base = base.clone();
        if let Some(prefix) = api_prefix {
            base.path_segments_mut()
                .map_err(|_| FetchError::invalid(format!("{origin} cannot be a base URL")))?
                .pop_if_empty()
                .push(prefix);
        }
        Ok(Transport {
            client,
            tls: matches!(address, super::Address::Url(u) if u.scheme() == "https"),
            answered: std::sync::atomic::AtomicBool::new(false),
            base,
            origin,
            namespace,
            max_retries: options.max_retries,
            timeout: options.timeout,
            deadline: options.deadline,
            // Vault calls go under /v1; the only other server is the CI's OIDC token endpoint.
            store: if api_prefix.is_some() {
                "Vault"
            } else {
                "the ID token endpoint"
            },
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Whether any call of this run got an answer (a 2xx or not) from the server.
    pub fn answered(&self) -> bool {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn url_of(&self, call: &Call) -> Result<Url, HttpError> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| HttpError::Build("the address cannot be a base URL".into()))?;
            segments.pop_if_empty();
            // Each segment is percent-encoded, so `?`, `#` or `%` in a secret's name stay in
            // the path.
            for s in call.path.split('/').filter(|s| !s.is_empty()) {
                segments.push(s);
            }
        }
        url.set_query(call.query.as_deref());
        Ok(url)
    }

    /// Sends a Vault API call with `token` (if any), retrying transient failures, within the
    /// deadline.
    pub async fn send(
        &self,
        call: &Call,
        token: Option<&SecretString>,
    ) -> Result<Answer, HttpError> {
        self.send_within(call, token, Budget::Deadline).await
    }

    /// [`Transport::send`] with an explicit [`Budget`].
    pub async fn send_within(
        &self,
        call: &Call,
        token: Option<&SecretString>,
        budget: Budget,
    ) -> Result<Answer, HttpError> {
        if token.is_none() && is_revocation(&call.path) {
            // Through a Vault Agent or OpenBao Proxy with `use_auto_auth_token`, a request
            // without a token is sent with the proxy's own: a token-less revoke-self would
            // revoke the token every other run on this machine shares.
            return Err(HttpError::Build(
                "refusing to send a token revocation without a token (through a Vault Agent \
                 or OpenBao Proxy it would revoke the proxy's own token)"
                    .into(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(token) = token {
            headers.insert("X-Vault-Token", token_header(token)?);
        }
        if let Some(ns) = &self.namespace {
            let value = HeaderValue::from_str(ns)
                .map_err(|_| HttpError::Build("the namespace cannot be sent in a header".into()))?;
            headers.insert("X-Vault-Namespace", value);
        }
        if call.body.is_some() {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let url = self.url_of(call)?;
        self.send_with_retries(
            call.method.clone(),
            url,
            headers,
            call.body.as_ref().map(|b| b.as_slice()),
            budget,
        )
        .await
    }

    /// A plain GET of an absolute URL with these headers (the GitHub OIDC endpoint).
    pub async fn get_url(&self, url: Url, headers: HeaderMap) -> Result<Answer, HttpError> {
        self.send_with_retries(reqwest::Method::GET, url, headers, None, Budget::Full)
            .await
    }

    async fn send_with_retries(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: HeaderMap,
        body: Option<&[u8]>,
        budget: Budget,
    ) -> Result<Answer, HttpError> {
        let deadline = match budget {
            Budget::Deadline => self.deadline,
            Budget::Full => None,
        };
        let left = || deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        // Shown on a terminal while it lasts (see crate::progress); never the path or a token.
        let waiting = crate::progress::begin(self.store, &self.origin, self.max_retries + 1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            waiting.attempt(attempt);
            let timeout = match left() {
                Some(left) if left < MIN_ATTEMPT => {
                    return Err(HttpError::Transport {
                        message: "timed out (the --timeout deadline left no time for a request)"
                            .into(),
                        timeout: true,
                        attempts: attempt - 1,
                    })
                }
                Some(left) => self.timeout.min(left),
                None => self.timeout,
            };
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .headers(headers.clone());
            if let Some(b) = body {
                // Each attempt needs its own body (reqwest consumes it); the copy wipes itself
                // when hyper drops it.
                request = request.body(wiped_bytes(b));
            }
            let failure = match self.attempt(request).await {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            // A GET is retried on any transient failure. Anything else (a login) only when it
            // cannot have been processed: a login answer lost on the way back would leave an
            // orphaned token (never revoked) or use up a single-use secret id.
            let idempotent = method == reqwest::Method::GET;
            let retry_after = match &failure {
                Failure::Status {
                    status,
                    retry_after,
                    ..
                } if retryable_status(*status) && (idempotent || matches!(status, 429 | 503)) => {
                    Some(*retry_after)
                }
                Failure::Transport { connect, .. } if idempotent || *connect => Some(None),
                _ => None,
            };
            let wait = retry_after.map(|after| {
                after
                    .map(|a| a.min(Duration::from_secs(10)))
                    .unwrap_or_else(|| backoff(attempt))
            });
            match wait {
                // Another attempt only when it could still finish before the deadline.
                Some(wait)
                    if attempt <= self.max_retries
                        && left().is_none_or(|left| left > wait + MIN_ATTEMPT) =>
                {
                    tracing::info!(
                        "{} at {}: {method} {}: attempt {attempt} of {} failed ({}); retrying in {} ms",
                        self.store,
                        self.origin,
                        url.path(),
                        self.max_retries + 1,
                        failure.reason(),
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(failure.finish(attempt)),
            }
        }
    }

    async fn attempt(&self, request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
        let mut response = request.send().await.map_err(Failure::from_reqwest)?;
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| response.url().join(l).ok())
                .map(|u| origin_of(&u));
            return Err(Failure::Redirect { status, to });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_body(&mut response).await?;
        if (200..300).contains(&status) {
            Ok(Answer { body })
        } else {
            Err(Failure::Status {
                status,
                errors: errors_of(&body),
                body,
                retry_after,
            })
        }
    }
}

/// The `X-Vault-Token` header: one copy of the token, in a buffer wiped when the header map's
/// last clone is dropped, marked sensitive (never shown by `Debug` or logged by hyper/h2).
/// What hyper writes into its own head buffer and what rustls encrypts are not under
/// cme-exec's control (docs/security.md).
fn token_header(token: &SecretString) -> Result<HeaderValue, HttpError> {
    let mut value = HeaderValue::from_maybe_shared(wiped_bytes(token.expose_secret().as_bytes()))
        .map_err(|_| {
        HttpError::Build("the Vault token holds characters that cannot be sent in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a body into a wiped buffer, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_body(response: &mut reqwest::Response) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(Failure::TooLarge);
    }
    let expected = response.content_length().unwrap_or(4096) as usize;
    let mut body = SecretBuf::bounded(expected, MAX_RESPONSE_BYTES);
    while let Some(chunk) = response.chunk().await.map_err(Failure::from_reqwest)? {
        body.extend(&chunk).map_err(|_| Failure::TooLarge)?;
    }
    Ok(body.into_inner())
}

/// One attempt's failure, before retries are decided.
enum Failure {
    Status {
        status: u16,
        errors: Vec<String>,
        body: Zeroizing<Vec<u8>>,
        retry_after: Option<Duration>,
    },
    Redirect {
        status: u16,
        to: Option<String>,
    },
    Tls(String),
    Transport {
        message: String,
        timeout: bool,
        /// The connection was never made: the request cannot have been delivered.
        connect: bool,
    },
    TooLarge,
}

impl Failure {
    /// A few words for a retry's log line (no body, no token).
    fn reason(&self) -> String {
        match self {
            Failure::Status { status, .. } => format!("answered {status}"),
            Failure::Redirect { status, .. } => format!("answered {status} with a redirect"),
            Failure::Tls(m) => format!("TLS: {m}"),
            Failure::Transport { message, .. } => message.clone(),
            Failure::TooLarge => "the answer was too large".to_owned(),
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Failure {
        if let Some(tls) = tls_cause(&e) {
            return Failure::Tls(tls);
        }
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let message = if timeout {
            "timed out".to_owned()
        } else {
            deepest_cause(&e)
        };
        Failure::Transport {
            message,
            timeout,
            connect,
        }
    }

    fn finish(self, attempts: u32) -> HttpError {
        match self {
            Failure::Status {
                status,
                errors,
                body,
                ..
            } => HttpError::Status {
                status,
                errors,
                body,
                attempts,
            },
            Failure::Redirect { status, to } => HttpError::Redirect { status, to },
            Failure::Tls(m) => HttpError::Tls(m),
            Failure::Transport {
                message, timeout, ..
            } => HttpError::Transport {
                message,
                timeout,
                attempts,
            },
            Failure::TooLarge => HttpError::TooLarge,
        }
    }
}

/// 412 (a performance standby not yet consistent), 429, and 5xx but 501 (not implemented).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 412 | 429) || (500..600).contains(&status) && status != 501
}

/// Exponential backoff (100 ms, 200 ms, 400 ms, ... at most 2 s) with full jitter in its upper
/// half, so that many cme-exec runs retrying together spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base_ms: u64 = (100u64 << attempt.saturating_sub(1).min(5)).min(2000);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % (base_ms / 2 + 1);
    Duration::from_millis(base_ms / 2 + jitter)
}

/// The TLS error in a reqwest error's chain, if the failure was the handshake. tokio-rustls
/// reports it as an `io::Error` wrapping a `rustls::Error`, and `io::Error::source` skips the
/// wrapped error, so look inside each `io::Error` too.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(t));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                    return Some(describe_tls(t));
                }
                if let Some(found) = tls_cause(inner) {
                    return Some(found);
                }
            }
        }
        next = err.source();
    }
    None
}

/// A rustls error in words, with the causes that have their own hint told apart.
fn describe_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            NOT_TLS.to_owned()
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            ..
        }) => WRONG_NAME.to_owned(),
        other => other.to_string(),
    }
}

/// Follows a redirect only within the same origin, never from https to http, at most
/// [`MAX_REDIRECTS`] times. Anything else is handed back as the 3xx answer, which
/// [`Transport::attempt`] turns into [`HttpError::Redirect`].
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        let same = first.origin() == attempt.url().origin();
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// A name lookup once per name and run. reqwest's default resolver asks `getaddrinfo` (on a
/// blocking thread) for every new connection, and over HTTP/1.1 a round of 10 concurrent reads
/// opens 10 connections: 10 lookups of the same name within milliseconds. Here the first
/// lookup's answer serves every later connection of the run; a failed lookup is not kept, so a
/// retry asks again.
mod resolver {
    use std::collections::HashMap;
    use std::net::{SocketAddr, ToSocketAddrs as _};
    use std::sync::{Arc, Mutex};

    use reqwest::dns::{Addrs, Name, Resolve, Resolving};
    use tokio::sync::OnceCell;

    type Cell = Arc<OnceCell<Arc<[SocketAddr]>>>;

    #[derive(Default)]
    pub struct Once {
        names: Mutex<HashMap<String, Cell>>,
    }

    impl Once {
        fn cell(&self, name: &str) -> Cell {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(names.entry(name.to_owned()).or_default())
        }
    }

    impl Resolve for Once {
        fn resolve(&self, name: Name) -> Resolving {
            let host = name.as_str().to_owned();
            let cell = self.cell(&host);
            Box::pin(async move {
                let addrs = cell
                    .get_or_try_init(|| async {
                        let host = host.clone();
                        // The port is the connector's to set; 0 here, as hyper's resolver does.
                        tokio::task::spawn_blocking(move || {
                            (host.as_str(), 0).to_socket_addrs().map(Iterator::collect)
                        })
                        .await
                        .map_err(std::io::Error::other)?
                        .map(|v: Vec<SocketAddr>| Arc::<[SocketAddr]>::from(v))
                    })
                    .await
                    .map_err(|e: std::io::Error| Box::new(e) as Box<_>)?;
                let addrs = Arc::clone(addrs);
                let all: Addrs = Box::new((0..addrs.len()).map(move |i| addrs[i]));
                Ok(all)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-second timeouts, no retry, no TLS settings.
    fn quick_options() -> Options {
        Options {
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_retries: 0,
            ca_certs: Vec::new(),
            identity: None,
            skip_verify: false,
            deadline: None,
        }
    }

    #[test]
    fn retry_policy() {
        for s in [412, 429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 301, 307, 400, 401, 403, 404, 405, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            let base = (100u64 << (attempt - 1).min(5)).min(2000);
            assert!(d >= Duration::from_millis(base / 2), "{attempt}: {d:?}");
            assert!(d <= Duration::from_millis(base), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn vault_errors_are_cleaned_and_bounded() {
        let body = serde_json::json!({
            "errors": ["permission denied", "", "a\nb", "x".repeat(1000), "5", "6", "7"]
        })
        .to_string();
        let errors = errors_of(body.as_bytes());
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(errors[0], "permission denied");
        assert_eq!(errors[1], "a b");
        assert!(errors[2].chars().count() <= MAX_ERROR_CHARS + 1);
        assert!(errors_of(b"not json").is_empty());
        let multi =
            serde_json::json!({ "errors": ["1 error occurred:\n\t* permission denied\n\n"] });
        assert_eq!(
            errors_of(multi.to_string().as_bytes()),
            ["permission denied"]
        );
        let multi = serde_json::json!({ "errors": ["2 errors occurred:\n\t* a\n\t* b\n\n"] });
        assert_eq!(errors_of(multi.to_string().as_bytes()), ["a", "b"]);
        assert_eq!(
            describe_status(403, &errors[..1]),
            "403 (permission denied)"
        );
        assert_eq!(describe_status(404, &[]), "404");
    }

    #[test]
    fn calls_from_vaultrs_endpoints() {
        let read = vaultrs::api::kv2::requests::ReadSecretRequest {
            mount: "secret".into(),
            path: "a b/c?d".into(),
            version: Some(3),
        };
        let call = Call::from_endpoint(&read).unwrap();
        assert_eq!(call.method, reqwest::Method::GET);
        assert_eq!(call.path, "secret/data/a b/c?d");
        assert_eq!(call.query.as_deref(), Some("version=3"));
        assert!(call.body.is_none());

        let revoke = vaultrs::api::token::requests::RevokeTokenSelfRequest {};
        let call = Call::from_endpoint(&revoke).unwrap();
        assert_eq!(call.path, "auth/token/revoke-self");
        assert_eq!(call.method, reqwest::Method::POST);

        let base = Url::parse("https://vault.example.com:8200/prefix/").unwrap();
        let t = Transport::new(
            &crate::vault::Address::Url(base),
            Some("v1"),
            None,
            quick_options(),
        )
        .unwrap();
        let read = Call::from_endpoint(&vaultrs::api::kv2::requests::ReadSecretRequest {
            mount: "secret".into(),
            path: "a b/c?d#e%f".into(),
            version: None,
        })
        .unwrap();
        assert_eq!(
            t.url_of(&read).unwrap().as_str(),
            "https://vault.example.com:8200/prefix/v1/secret/data/a%20b/c%3Fd%23e%25f"
        );
        assert_eq!(t.origin(), "https://vault.example.com:8200");
    }

    /// A revocation is never sent without a token (through a proxy with
    /// `use_auto_auth_token` it would revoke the proxy's own token); nothing reaches the network.
    #[tokio::test]
    async fn a_revocation_without_a_token_is_never_sent() {
        let address = crate::vault::Address::Unix("/nonexistent/cme-exec-test.sock".into());
        let t = Transport::new(&address, Some("v1"), None, quick_options()).unwrap();
        for path in [
            "auth/token/revoke-self",
            "/auth/token/revoke",
            "auth/token/revoke-accessor",
        ] {
            let call = Call {
                method: reqwest::Method::POST,
                path: path.into(),
                query: None,
                body: None,
            };
            match t.send_within(&call, None, Budget::Full).await {
                Err(HttpError::Build(m)) => assert!(m.contains("proxy's own token"), "{m}"),
                other => panic!("{path}: {:?}", other.err()),
            }
        }
        // With a token it is attempted (and fails here only because nothing listens).
        let call =
            Call::from_endpoint(&vaultrs::api::token::requests::RevokeTokenSelfRequest {}).unwrap();
        let token = SecretString::from("t");
        match t.send_within(&call, Some(&token), Budget::Full).await {
            Err(HttpError::Transport { message, .. }) => {
                assert!(message.contains("No such file"), "{message}")
            }
            other => panic!("{:?}", other.err()),
        }
    }

    /// The token header holds the one wiped copy (no second copy made by
    /// `HeaderValue`), and is marked sensitive.
    #[test]
    fn the_token_header_is_one_wiped_sensitive_copy() {
        let b = wiped_bytes(b"tok-S3NT1NEL");
        let at = b.as_ptr();
        let h = HeaderValue::from_maybe_shared(b).unwrap();
        assert_eq!(h.as_bytes().as_ptr(), at, "HeaderValue copied the token");
        let h = token_header(&SecretString::from("tok-S3NT1NEL")).unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("S3NT1NEL"));
    }
}
