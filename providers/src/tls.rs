//! The certificate authorities both HTTPS backends (Vault, AWS Secrets Manager, AWS SSM) and
//! `check --live` trust, loaded once per process, and only when a connection needs them:
//! a run whose endpoints are all plain `http://` (a Vault or OpenBao Proxy on
//! loopback, moto, LocalStack) reads no certificate at all.
//!
//! The released binaries are static and must work in a `FROM scratch` image or on a system with
//! no CA bundle at all, so the roots are looked for in this order:
//!
//! 1. `SSL_CERT_FILE` and/or `SSL_CERT_DIR`, when either is set: only what they name (both, when
//!    both are set; a certificate found in both counts once; only the file when it lies in the
//!    directory and holds certificates, as a distribution's bundle does: it holds the
//!    directory's roots). If they yield no certificate, that is an error naming the variable,
//!    never a silent widening to other roots.
//! 2. The system's store: on Linux (and the other Unix systems but macOS) the distribution's
//!    bundle, the first of the files OpenSSL would use that exists (`openssl_probe`'s list:
//!    `/etc/ssl/certs/ca-certificates.crt`, `/etc/pki/tls/certs/ca-bundle.crt`,
//!    `/etc/ssl/cert.pem`, ...); the certificate directories (`/etc/ssl/certs`, ...) only when
//!    no bundle exists or it holds no certificate. The directory holds the bundle's roots again,
//!    one file each (about 146 files on Debian, read one by one), so reading both only costs
//!    time. On macOS the keychain.
//! 3. When the system has none: the Mozilla roots compiled into the binary (`webpki-root-certs`).
//!
//! A provider's own `ca_cert` (Vault's `VAULT_CACERT`) is not a root source here: the Vault
//! transport uses it *instead of* these roots.
//!
//! Who loads them when: the Vault transport only for an `https://` address; the AWS SDK's HTTP
//! client ([`aws_http_client`]) at its first `https://` request (plain `http://` requests,
//! such as to moto, IMDS or the ECS credentials endpoint, go through a client without TLS);
//! `check --live` when it builds its client.

use std::sync::OnceLock;

use rustls_pki_types::CertificateDer;

/// Where the roots came from, for the debug log and `--version`-style diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    Environment,
    /// The operating system's store.
    System,
    /// The Mozilla roots compiled into this binary.
    BuiltIn,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Environment => "SSL_CERT_FILE/SSL_CERT_DIR",
            Source::System => "the system's CA store",
            Source::BuiltIn => "the compiled-in Mozilla roots",
        }
    }
}

/// The trusted roots (public certificates, nothing secret).
pub struct Roots {
    pub source: Source,
    pub certs: Vec<CertificateDer<'static>>,
}

/// The environment variables that replace the system's store (read by the loader directly).
const ENV_VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The roots for this process: loaded on first use, then shared. An error names the variable
/// whose file or directory held no usable certificate.
pub fn roots() -> Result<&'static Roots, String> {
    static ROOTS: OnceLock<Result<Roots, String>> = OnceLock::new();
    ROOTS.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Roots, String> {
    let from_env: Vec<&str> = ENV_VARS
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
        .collect();
    if !from_env.is_empty() {
        // rustls-native-certs reads SSL_CERT_FILE/SSL_CERT_DIR itself (and then not the system);
        // a file read through both counts once (it skips a file already read, and duplicates).
        let found = match bundle_in_its_directory() {
            Some(found) => found,
            None => rustls_native_certs::load_native_certs(),
        };
        if found.certs.is_empty() {
            return Err(format!(
                "{} names no readable PEM certificate",
                from_env.join(" / ")
            ));
        }
        return Ok(Roots {
            source: Source::Environment,
            certs: found.certs,
        });
    }
    let found = system();
    if !found.certs.is_empty() {
        return Ok(Roots {
            source: Source::System,
            certs: found.certs,
        });
    }
    tracing::debug!(
        "tls: no system CA store found ({} errors); using the compiled-in Mozilla roots",
        found.errors.len()
    );
    Ok(Roots {
        source: Source::BuiltIn,
        certs: builtin(),
    })
}

/// `SSL_CERT_FILE` when it lies directly in a directory `SSL_CERT_DIR` names, and holds
/// certificates: the bundle the distribution builds from that directory (Debian's
/// `/etc/ssl/certs/ca-certificates.crt` in `/etc/ssl/certs`, RHEL's `ca-bundle.crt` in
/// `/etc/pki/tls/certs`), so the directory's files (about 146 on Debian, one root each) would
/// add the same roots again. `None`: read both.
fn bundle_in_its_directory() -> Option<rustls_native_certs::CertificateResult> {
    let file = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty())?;
    let dirs = std::env::var_os("SSL_CERT_DIR").filter(|d| !d.is_empty())?;
    let parent = std::path::Path::new(&file).parent()?.canonicalize().ok()?;
    let inside = std::env::split_paths(&dirs)
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| d == parent);
    if !inside {
        return None;
    }
    let found = rustls_native_certs::load_certs_from_paths(Some(std::path::Path::new(&file)), None);
    tracing::debug!(
        count = found.certs.len(),
        "tls: SSL_CERT_FILE lies in SSL_CERT_DIR; the bundle alone"
    );
    (!found.certs.is_empty()).then_some(found)
}

/// The system's store on Linux and the other Unix systems but macOS: the first bundle file
/// OpenSSL would use, else (no bundle, or an empty one) the certificate directories.
/// `rustls_native_certs::load_native_certs` would read the bundle *and* every file of the
/// directory, which on the common distributions hold the same roots.
#[cfg(all(unix, not(target_os = "macos")))]
fn system() -> rustls_native_certs::CertificateResult {
    // `probe` also looks at SSL_CERT_FILE/SSL_CERT_DIR, which are unset (or empty) here.
    let probe = openssl_probe::probe();
    if let Some(file) = &probe.cert_file {
        let found = rustls_native_certs::load_certs_from_paths(Some(file), None);
        tracing::debug!(
            file = %file.display(),
            count = found.certs.len(),
            "tls: the system's CA bundle"
        );
        if !found.certs.is_empty() {
            return found;
        }
    }
    let mut all = rustls_native_certs::CertificateResult::default();
    for dir in &probe.cert_dir {
        let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        tracing::debug!(
            dir = %dir.display(),
            count = found.certs.len(),
            "tls: the system's CA directory"
        );
        all.certs.extend(found.certs);
        all.errors.extend(found.errors);
    }
    all.certs
        .sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    all.certs.dedup();
    all
}

/// The system's store elsewhere (the macOS keychain, Windows' store).
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn system() -> rustls_native_certs::CertificateResult {
    rustls_native_certs::load_native_certs()
}

/// The Mozilla roots compiled into the binary.
pub fn builtin() -> Vec<CertificateDer<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()
}

/// The roots as reqwest certificates, for the Vault transport (`origin` for the message).
#[cfg(feature = "vault")]
pub fn reqwest_roots(origin: &str) -> Result<Vec<reqwest::Certificate>, crate::FetchError> {
    let roots = roots().map_err(|e| {
        crate::FetchError::invalid(format!("no CA certificates to verify {origin}: {e}"))
    })?;
    tracing::debug!(
        source = roots.source.describe(),
        count = roots.certs.len(),
        "tls: roots"
    );
    Ok(roots
        .certs
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
        .collect())
}

/// Why the AWS SDK's client could not make an `https://` request: no trust roots. Carried in
/// the SDK's connector error, so that the AWS backends can tell it apart
/// (`aws_shared::diagnose`).
#[cfg(feature = "aws")]
#[derive(Clone, Debug)]
pub struct NoRoots(pub String);

#[cfg(feature = "aws")]
impl std::fmt::Display for NoRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(feature = "aws")]
impl std::error::Error for NoRoots {}

/// The AWS SDK's HTTP client: plain `http://` requests go through a client without TLS, and
/// the HTTPS client that trusts [`roots`] is built at the first `https://` request (the SDK's
/// default client knows only the system's store, fails everywhere when there is none, and loads
/// it when the client is built, whatever the endpoints). Which endpoints a run contacts is
/// decided inside the SDK (the service endpoint, STS for `role_arn` and web identity, SSO, IMDS
/// and the ECS credentials endpoint over plain http), so the choice is made per request, by
/// its scheme. One client (one connection pool per scheme) serves every AWS client built from
/// the same SDK configuration.
#[cfg(feature = "aws")]
pub fn aws_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_runtime_api::client::http::SharedHttpClient;
    SharedHttpClient::new(aws::ByScheme {
        plain: aws_smithy_http_client::Builder::new().build_http(),
        https: std::sync::Arc::new(OnceLock::new()),
    })
}

#[cfg(feature = "aws")]
mod aws {
    use std::sync::{Arc, OnceLock};

    use aws_smithy_http_client::tls;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

    use super::NoRoots;

    type Https = Arc<OnceLock<Result<SharedHttpClient, NoRoots>>>;

    /// The client: plain, and HTTPS once needed.
    #[derive(Debug)]
    pub(super) struct ByScheme {
        pub(super) plain: SharedHttpClient,
        pub(super) https: Https,
    }

    impl HttpClient for ByScheme {
        fn http_connector(
            &self,
            settings: &HttpConnectorSettings,
            components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(Connector {
                plain: self.plain.http_connector(settings, components),
                https: Arc::clone(&self.https),
                settings: settings.clone(),
                components: components.clone(),
            })
        }

        fn connector_metadata(
            &self,
        ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
            self.plain.connector_metadata()
        }
    }

    /// One connector for one set of settings (timeouts): the plain one, or the HTTPS client's
    /// (which caches its connectors, and so its connection pool, per settings).
    #[derive(Debug)]
    struct Connector {
        plain: SharedHttpConnector,
        https: Https,
        settings: HttpConnectorSettings,
        components: RuntimeComponents,
    }

    impl HttpConnector for Connector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let uri = request.uri();
            if uri.len() >= 7 && uri[..7].eq_ignore_ascii_case("http://") {
                return self.plain.call(request);
            }
            match self.https.get_or_init(build_https) {
                Ok(client) => client
                    .http_connector(&self.settings, &self.components)
                    .call(request),
                Err(e) => {
                    HttpConnectorFuture::ready(Err(ConnectorError::user(Box::new(e.clone()))))
                }
            }
        }
    }

    /// The HTTPS client that trusts [`super::roots`].
    fn build_https() -> Result<SharedHttpClient, NoRoots> {
        let roots = super::roots().map_err(|e| {
            NoRoots(format!(
                "no CA certificates to verify the AWS endpoints: {e}"
            ))
        })?;
        tracing::debug!(
            source = roots.source.describe(),
            count = roots.certs.len(),
            "tls: roots"
        );
        let mut store = tls::TrustStore::empty().with_native_roots(false);
        for cert in &roots.certs {
            store.add_pem_certificate(super::to_pem(cert));
        }
        let context = tls::TlsContext::builder()
            .with_trust_store(store)
            .build()
            .map_err(|e| NoRoots(format!("cannot set up TLS for the AWS endpoints: {e}")))?;
        Ok(aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context)
            .build_https())
    }
}

/// One certificate as PEM (the AWS SDK's trust store takes PEM).
#[cfg(feature = "aws")]
pub fn to_pem(der: &CertificateDer<'_>) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = Vec::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_are_many_and_parse() {
        let roots = builtin();
        assert!(roots.len() > 100, "only {} compiled-in roots", roots.len());
        // DER certificates: a SEQUENCE each.
        assert!(roots.iter().all(|c| c.as_ref().first() == Some(&0x30)));
    }

    #[cfg(feature = "aws")]
    #[test]
    fn pem_round_trips() {
        use rustls_pki_types::pem::PemObject as _;
        let der = builtin().remove(0);
        let pem = to_pem(&der);
        let back = CertificateDer::from_pem_slice(&pem).expect("valid PEM");
        assert_eq!(back.as_ref(), der.as_ref());
    }
}
