//! The certificate authorities both HTTPS backends (Vault, AWS Secrets Manager) trust, loaded once
//! per process.
//!
//! The released binaries are static and must work in a `FROM scratch` image or on a system with
//! no CA bundle at all (issue 8), so the roots are looked for in this order:
//!
//! 1. `SSL_CERT_FILE` and/or `SSL_CERT_DIR`, when either is set: only what they name. If they
//!    yield no certificate, that is an error naming the variable, never a silent widening to
//!    other roots.
//! 2. The system's store: on Linux the distribution's bundle (`/etc/ssl/certs/ca-certificates.crt`
//!    and its siblings, found as OpenSSL would), on macOS the keychain.
//! 3. When the system has none: the Mozilla roots compiled into the binary (`webpki-root-certs`).
//!
//! A provider's own `ca_cert` (Vault's `VAULT_CACERT`) is not a root source here: the Vault
//! transport uses it *instead of* these roots.

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
    // rustls-native-certs reads SSL_CERT_FILE/SSL_CERT_DIR itself and then skips the system.
    let found = rustls_native_certs::load_native_certs();
    let started_empty = found.certs.is_empty();
    if !from_env.is_empty() {
        if started_empty {
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
    if !started_empty {
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

/// The AWS SDK loader with an HTTPS client that trusts [`roots`] (the SDK's default client
/// knows only the system's store, and fails everywhere when there is none).
#[cfg(feature = "aws")]
pub fn aws_loader_with_roots(
    loader: aws_config::ConfigLoader,
) -> Result<aws_config::ConfigLoader, crate::FetchError> {
    use aws_smithy_http_client::tls;
    let roots = roots().map_err(|e| {
        crate::FetchError::invalid(format!(
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
        store.add_pem_certificate(to_pem(cert));
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(store)
        .build()
        .map_err(|e| {
            crate::FetchError::invalid(format!("cannot set up TLS for the AWS endpoints: {e}"))
        })?;
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https();
    Ok(loader.http_client(client))
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
