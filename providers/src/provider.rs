//! What every backend implements: [`Provider`] (one configured store that fetches documents)
//! and [`Backend`] (how a kind of store is configured), and [`fetch_concurrently`], the one
//! bounded concurrent loop that the default [`Provider::fetch_many`] and overriding backends
//! share. Backends import this module; it imports no backend.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;

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

    /// Called once when the run ends, whatever the exit path: revoke what the provider
    /// obtained (a Vault login token, for instance).
    async fn finish(&self) {}
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
