//! Secret providers for cme-exec.
//!
//! A reference such as `vault://secret/atlassian#api_token` names a provider by its scheme, a
//! *document* by its location and parameters (`secret/atlassian`), and optionally a key inside
//! that document (`#api_token`). Providers only fetch documents; the resolver in the binary
//! removes duplicates, runs fetches concurrently and picks keys with [`payload::select_string`]
//! and [`payload::select_object`], so every backend behaves the same way.
//!
//! The list of provider kinds ([`Kind`]) is never behind `#[cfg]`: a build without the `vault`
//! or `aws-sm` feature still parses their settings and answers that the backend was left out.

pub mod aws_sm;
pub mod context;
pub mod env;
pub mod error;
pub mod file;
pub mod net;
pub mod payload;
pub mod progress;
pub mod reference;
pub mod settings;
#[cfg(feature = "tls")]
pub mod tls;
pub mod vault;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;

pub use context::{Context, EnvReader};
pub use error::{docs_url, ErrorKind, FetchError};
pub use payload::{Format, Payload, SecretMap};
pub use reference::{Document, Key, Reference};
pub use settings::{ProviderSettings, TableReader};

/// The kinds of provider cme-exec knows, whether or not this build includes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    File,
    Env,
    Vault,
    AwsSm,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::File, Kind::Env, Kind::Vault, Kind::AwsSm];

    /// The name used in `kind = "..."` and as the built-in scheme.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Env => "env",
            Kind::Vault => "vault",
            Kind::AwsSm => "aws-sm",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The cargo feature that brings this backend in, if it has one.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Kind::File | Kind::Env => None,
            Kind::Vault => Some("vault"),
            Kind::AwsSm => Some("aws-sm"),
        }
    }

    /// Whether this build includes the backend.
    pub fn available(self) -> bool {
        match self {
            Kind::File | Kind::Env => true,
            Kind::Vault => cfg!(feature = "vault"),
            Kind::AwsSm => cfg!(feature = "aws-sm"),
        }
    }

    /// Checks the shape of a document's location and parameters for this kind, so that a bad
    /// reference is a configuration error before anything is fetched (and in every build).
    pub fn check_document(self, doc: &Document) -> Result<(), String> {
        match self {
            Kind::File => file::check_document(doc),
            Kind::Env => env::check_document(doc),
            Kind::Vault => vault::check_document(doc),
            Kind::AwsSm => aws_sm::check_document(doc),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `check` shows about the identity a provider used (never a secret).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Identity {
    /// `(label, value)` pairs such as `("accessor", "hmac-...")` or `("arn", "arn:aws:...")`.
    pub facts: Vec<(String, String)>,
}

/// One secret store, configured and ready to fetch documents.
///
/// The resolver calls [`Provider::fetch_many`] once per provider with the distinct documents
/// that provider must serve. Backends that can answer several documents with one request
/// override it; the default fetches them concurrently, at most `concurrency` at a time.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> Kind;

    /// Fetches one document.
    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError>;

    /// Fetches several distinct documents; the answer has one entry per document, in order.
    async fn fetch_many(
        &self,
        docs: &[Document],
        concurrency: usize,
    ) -> Vec<Result<Payload, FetchError>> {
        let mut results: Vec<Option<Result<Payload, FetchError>>> =
            std::iter::repeat_with(|| None).take(docs.len()).collect();
        let futures: Vec<_> = docs
            .iter()
            .enumerate()
            .map(|(i, doc)| Box::pin(async move { (i, self.fetch(doc).await) }))
            .collect();
        let mut stream = futures::stream::iter(futures).buffer_unordered(concurrency.max(1));
        while let Some((i, result)) = stream.next().await {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every document was fetched"))
            .collect()
    }

    /// The identity this provider authenticated as, for `check`.
    async fn identity(&self) -> Result<Option<Identity>, FetchError> {
        Ok(None)
    }

    /// When a fetched document expires, from the store's own metadata (`expires_at`, RFC 3339,
    /// as written there): Vault KV v2 `custom_metadata`, an AWS Secrets Manager tag. Called
    /// after [`Provider::fetch_many`]. Metadata that came with the value costs nothing; a
    /// store that needs a request of its own for it makes one only when `extra_requests`
    /// (`check`, never `run`).
    async fn expiry(
        &self,
        doc: &Document,
        extra_requests: bool,
    ) -> Result<Option<String>, FetchError> {
        let _ = (doc, extra_requests);
        Ok(None)
    }

    /// Called once when the run ends, whatever the exit path: revoke what the provider
    /// obtained (a Vault login token, for instance).
    async fn finish(&self) {}
}

/// Builds a provider from its settings, or explains why this build cannot.
pub fn build(
    name: &str,
    settings: &ProviderSettings,
    ctx: &Arc<Context>,
) -> Result<Arc<dyn Provider>, FetchError> {
    let kind = settings.kind();
    if !kind.available() {
        let feature = kind.feature().unwrap_or_default();
        return Err(FetchError::new(
            ErrorKind::Unavailable,
            format!("the {kind} provider `{name}` is not available in this build of cme-exec"),
        )
        .with_hint(format!(
            "rebuild with `cargo install cme-exec --features {feature}` (or keep the default features)"
        )));
    }
    match settings {
        ProviderSettings::File(s) => Ok(Arc::new(file::FileProvider::new(s, ctx))),
        ProviderSettings::Env => Ok(Arc::new(env::EnvProvider::new(ctx))),
        ProviderSettings::Vault(s) => vault::build(name, s, ctx),
        ProviderSettings::AwsSm(s) => aws_sm::build(name, s, ctx),
    }
}
