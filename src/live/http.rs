//! The HTTP client of the live check: reqwest with rustls, no redirects followed, proxies from
//! the environment (as Python's requests reads them), cme's CA settings.

use std::time::Duration;

use cme_exec_providers::secure_io::{deepest_cause, into_wiped_bytes};
use reqwest::header::{HeaderName, HeaderValue};

use super::{Answer, Credential, Problem, Settings, Tls, MAX_BODY_BYTES};
use crate::error::Error;

pub struct Client {
    inner: reqwest::Client,
    timeout: Duration,
    tls: Tls,
}

/// The roots a verifying client trusts when cme's settings name no bundle: the providers' shared
/// trust store (SSL_CERT_FILE/SSL_CERT_DIR, else the system's, else the compiled-in Mozilla
/// roots), so that a static binary in a scratch image can check live too.
fn default_roots(builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, Error> {
    let roots = cme_exec_providers::tls::roots()
        .map_err(|e| Error::new(format!("no CA certificates for the live check: {e}")))?;
    Ok(builder.tls_certs_only(
        roots
            .certs
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok()),
    ))
}

impl Client {
    /// `needs_tls`: whether any call can be made over TLS; without, no root is loaded.
    pub fn new(settings: &Settings, needs_tls: bool) -> Result<Client, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "cme-exec/",
                env!("CARGO_PKG_VERSION"),
                " (check --live)"
            ))
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .timeout(settings.timeout)
            // A redirect is the answer (a login page, another site): a credential is never
            // sent anywhere but the instance itself.
            .redirect(reqwest::redirect::Policy::none());
        builder = match &settings.tls {
            Tls::Default if !needs_tls => builder.tls_certs_only(Vec::new()),
            Tls::Default => default_roots(builder)?,
            Tls::Bundle { path, from } => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::new(format!(
                        "cannot read the CA bundle {} ({from})",
                        path.display()
                    ))
                    .cause(e.to_string())
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                    Error::new(format!(
                        "the CA bundle {} ({from}) holds no PEM certificate",
                        path.display()
                    ))
                })?;
                builder.tls_certs_only(certs)
            }
            Tls::Off { from } => {
                crate::error::warn(format_args!(
                    "{from} is false: the live check does not verify certificates, as cme would not"
                ));
                builder.tls_danger_accept_invalid_certs(true)
            }
        };
        let inner = builder.build().map_err(|e| {
            Error::new("cannot set up the HTTP client for the live check").cause(deepest_cause(&e))
        })?;
        Ok(Client {
            inner,
            timeout: settings.timeout,
            tls: settings.tls.clone(),
        })
    }

    /// `GET {url}/_edge/tenant_info` without credentials: the site's `cloudId`.
    pub async fn tenant_info(&self, url: &str) -> Result<String, String> {
        let call = format!("{}/_edge/tenant_info", url.trim_end_matches('/'));
        let answer = self
            .get(
                &call,
                Credential {
                    kind: super::AuthKind::None,
                    header: None,
                },
            )
            .await
            .map_err(|p| p.message)?;
        if !(200..300).contains(&answer.status) {
            return Err(format!("/_edge/tenant_info answered {}", answer.status));
        }
        let id = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("cloudId")?.as_str().map(crate::error::strip_controls))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "/_edge/tenant_info holds no cloudId".to_owned())?;
        super::accept_cloud_id(&call, id)
    }

    /// One GET with the credential (marked sensitive, in a wiped buffer). A transport failure
    /// is described in words; the body is read up to [`MAX_BODY_BYTES`].
    pub async fn get(&self, url: &str, credential: Credential) -> Result<Answer, Problem> {
        let mut request = self
            .inner
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some((name, value)) = credential.header {
            let mut value =
                HeaderValue::from_maybe_shared(into_wiped_bytes(value)).map_err(|_| {
                    Problem::new(
                        None,
                        "a credential holds characters that cannot be sent in an HTTP header",
                        None,
                    )
                })?;
            value.set_sensitive(true);
            request = request.header(HeaderName::from_static(name), value);
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "location"
                        | "content-type"
                        | "x-seraph-loginreason"
                        | "x-authentication-denied-reason"
                )
            })
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        break; // what was read is enough to classify; the rest is not needed
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport(&e)),
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn transport(&self, e: &reqwest::Error) -> Problem {
        let host = e
            .url()
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let cause = deepest_cause(e);
        let lower = cause.to_ascii_lowercase();
        if e.is_timeout() {
            return Problem::new(
                None,
                format!(
                    "{host}: no answer within {} s (see --timeout)",
                    self.timeout.as_secs_f32()
                ),
                None,
            );
        }
        let tls = lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("unknownissuer");
        if tls {
            let hint = match &self.tls {
                Tls::Bundle { path, from } => format!(
                    "the certificate is checked against {} ({from}) only: does it hold the site's CA?",
                    path.display()
                ),
                _ => "for an internal CA, set connection_config.ca_bundle in the base config (cme uses it too), or REQUESTS_CA_BUNDLE".to_owned(),
            };
            return Problem {
                status: None,
                message: format!("{host}: TLS failed: {cause}"),
                hint: Some(hint),
            };
        }
        if lower.contains("proxy") || lower.contains("tunnel") {
            return Problem::new(
                None,
                format!("{host}: through the proxy: {cause}"),
                Some("check HTTPS_PROXY / HTTP_PROXY / NO_PROXY"),
            );
        }
        if e.is_connect() {
            return Problem::new(
                None,
                format!("{host}: cannot connect: {cause}"),
                Some("check the instance URL, the network and the proxy settings (HTTPS_PROXY, NO_PROXY)"),
            );
        }
        Problem::new(None, format!("{host}: {cause}"), None)
    }
}
