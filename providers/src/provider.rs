//! What every backend implements: [`Provider`] (one configured store that fetches documents,
//! and writes them when its backend can) and [`Backend`] (how a kind of store is configured),
//! [`fetch_concurrently`], the one bounded concurrent loop that the default
//! [`Provider::fetch_many`] and overriding backends share, and what writing takes:
//! [`Destination`] (where `import` puts documents) and [`Fields`] (one document to store).
//! Backends import this module; it imports no backend.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::kind::Kind;
use crate::payload::Payload;
use crate::reference::Document;
use crate::table::TableReader;
use crate::{Context, FetchError};

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
/// override it; the default fetches them with [`fetch_concurrently`].
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
        fetch_concurrently(docs, concurrency, |doc| self.fetch(doc)).await
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

    /// Stores `fields` as the document at `location` (a [`Destination::place`]), unless the
    /// store already holds exactly these fields: `Ok(true)` when it wrote, `Ok(false)` when it
    /// left the document alone (no new version). Implemented by the backends whose
    /// [`Backend::destination`] answers; the others keep this refusal.
    async fn write(&self, location: &str, fields: &Fields) -> Result<bool, FetchError> {
        let _ = (location, fields);
        Err(FetchError::invalid(format!(
            "a {} provider cannot store documents",
            self.kind()
        )))
    }

    /// Called once when the run ends, whatever the exit path: revoke what the provider
    /// obtained (a Vault login token, for instance).
    async fn finish(&self) {}
}

/// Where `import --to SCHEME://LOCATION` puts documents, as the backend checked LOCATION: one
/// document per name, at `BASE` + name + `SUFFIX` (`/run/s/` + name + `.json`, `secret/cme/` +
/// name, `prod/cme/` + name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// What the store is, for messages: `file`, `Vault KV v2`, `AWS Secrets Manager`.
    pub store: &'static str,
    base: String,
    suffix: &'static str,
}

impl Destination {
    pub fn new(store: &'static str, base: impl Into<String>, suffix: &'static str) -> Self {
        Destination {
            store,
            base: base.into(),
            suffix,
        }
    }

    /// The location of the document named `name` (what [`Provider::write`] and a reference
    /// `SCHEME://LOCATION` take).
    pub fn place(&self, name: &str) -> String {
        format!("{}{name}{}", self.base, self.suffix)
    }
}

/// One document to store: string fields in order (`{"username": ..., "api_token": ...}`).
/// No `Debug`: it holds secrets.
#[derive(Default)]
pub struct Fields(Vec<(String, SecretString)>);

impl Fields {
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    pub fn push(&mut self, name: impl Into<String>, value: SecretString) {
        self.0.push((name.into(), value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The document as one line of JSON in a wiped buffer, fields in order, with a trailing
    /// newline: the same bytes for the same fields, so that a second import finds them equal.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.push(b'{');
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let name = serde_json::to_string(name).expect("a string serialises");
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let quoted = Zeroizing::new(
                serde_json::to_string(value.expose_secret()).expect("a string serialises"),
            );
            out.extend_from_slice(quoted.as_bytes());
        }
        out.extend_from_slice(b"}\n");
        out
    }

    /// Whether a document read from the store holds exactly these fields: the same names, each
    /// with the same string, and nothing else.
    pub fn same_as(&self, held: &serde_json::Map<String, Value>) -> bool {
        held.len() == self.0.len()
            && self.0.iter().all(|(name, value)| {
                held.get(name)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v == value.expose_secret())
            })
    }
}

/// Runs `fetch` for every item, at most `concurrency` at a time, and returns the answers in the
/// items' order (fnox's `get_secrets_concurrent`, but ordered: the caller zips them back).
pub async fn fetch_concurrently<'a, T, R, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    fetch: F,
) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = R> + 'a,
{
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    // The futures are made first and then streamed (a closure inside the stream would not be
    // `Send` for every lifetime, which `#[async_trait]` needs).
    let futures: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let fut = fetch(item);
            Box::pin(async move { (i, fut.await) })
        })
        .collect();
    let mut stream = futures::stream::iter(futures).buffer_unordered(concurrency.max(1));
    while let Some((i, result)) = stream.next().await {
        results[i] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item was fetched"))
        .collect()
}

/// A kind of secret store: its name, its cargo feature, how its `[providers.NAME]` table is
/// read and how its references are checked. One value per backend, listed once in
/// `registry::BACKENDS`.
pub trait Backend: Sync {
    /// `kind = "..."`, and the built-in scheme when [`Backend::builtin`] gives settings.
    fn kind(&self) -> Kind;

    /// The cargo feature that brings the backend's client in, if it has one.
    fn feature(&self) -> Option<&'static str> {
        None
    }

    /// Whether this build includes the client (`cfg!(feature = ...)` in the backend's module).
    fn available(&self) -> bool {
        true
    }

    /// Reads a `[providers.NAME]` table (`kind` already read); problems go to the reader.
    fn parse(&self, table: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings>;

    /// The settings of the built-in scheme (no table), or `None` when the backend needs a table.
    fn builtin(&self) -> Option<Arc<dyn BackendSettings>>;

    /// Checks a reference's location and parameters, in every build, before anything is fetched.
    fn check_document(&self, doc: &Document) -> Result<(), String>;

    /// Whether `import` can store documents here: `None` when the backend cannot write (the
    /// default); else where `SCHEME://LOCATION` puts them, or why LOCATION is not a
    /// destination. Checked in every build, before anything is read or written; the writing
    /// itself is [`Provider::write`].
    fn destination(&self, scheme: &str, location: &str) -> Option<Result<Destination, FetchError>> {
        let _ = (scheme, location);
        None
    }

    /// Where [`Provider::expiry`] finds a document's expiry, for `check`'s expiry line
    /// (`Vault custom_metadata`, `AWS tag`).
    fn expiry_source(&self) -> &'static str {
        "store metadata"
    }

    /// The `CME_EXEC_*` variables the backend reads itself (its built-in provider's settings),
    /// in every build: the binary refuses other `CME_EXEC_*` names as typos.
    fn env_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One provider's parsed settings. Never holds a secret (settings name where secrets are).
pub trait BackendSettings: Send + Sync {
    /// One line for `trust` and `Debug`: what the provider reaches and how.
    fn describe(&self) -> String;

    /// For `trust`, beyond `describe`: every program with its whole argument list, every
    /// address, certificate file, and each variable or file a credential is read from. One item
    /// per line; nothing a reviewer needs to judge the config may be left out.
    fn details(&self) -> Vec<String> {
        Vec::new()
    }

    /// Programs named by a path relative to the config file's directory. They usually live in
    /// the same repository as the config, so a trust record covers their content too.
    fn local_programs(&self) -> Vec<&Path> {
        Vec::new()
    }

    /// Builds the provider, or says why not (a backend left out of this build says so here,
    /// in its own module).
    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError>;

    /// `check --offline`: what can be said of a reference without contacting the store and
    /// without reading a secret (a note, or an error); `None` when nothing can.
    fn check_offline(
        &self,
        ctx: &Arc<Context>,
        doc: &Document,
    ) -> Option<Result<String, FetchError>> {
        let _ = (ctx, doc);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending once (waking itself), so other futures of the stream run in between.
    async fn yield_once() {
        let mut done = false;
        std::future::poll_fn(|cx| {
            if done {
                std::task::Poll::Ready(())
            } else {
                done = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn answers_keep_the_order_and_the_bound() {
        let running = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        let out = futures::executor::block_on(fetch_concurrently(&items, 3, |i| {
            let running = &running;
            let most = &most;
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                // Give the others a chance to start.
                for _ in 0..(20 - i) {
                    yield_once().await;
                }
                running.fetch_sub(1, SeqCst);
                i * 2
            }
        }));
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    }
}
