//! The shape of both AWS backends' `fetch_many`: documents read as targets, equal targets
//! fetched once, and one answer per document, in the documents' order.

use std::collections::BTreeMap;
use std::future::Future;

use crate::payload::Payload;
use crate::{Document, FetchError};

/// Reads each document as a target with `parse` (two references to one secret are one
/// request), fetches the distinct targets with `fetch` (its `Err`, a client that could not be
/// set up, is every target's answer), and maps the answers back to the documents with
/// `payload`. A target `fetch` did not answer fails with `missing`'s words.
pub async fn fetch_deduplicated<T, V, Fut>(
    docs: &[Document],
    parse: impl Fn(&Document) -> Result<T, String>,
    fetch: impl FnOnce(Vec<T>) -> Fut,
    payload: impl Fn(&V) -> Payload,
    missing: impl Fn(&T) -> String,
) -> Vec<Result<Payload, FetchError>>
where
    T: Ord + Clone,
    Fut: Future<Output = Result<Vec<(T, Result<V, FetchError>)>, FetchError>>,
{
    // 1. References to targets; equal targets are one request.
    let targets: Vec<Result<T, FetchError>> = docs
        .iter()
        .map(|d| parse(d).map_err(FetchError::invalid))
        .collect();
    let mut distinct: BTreeMap<T, Option<Result<V, FetchError>>> = BTreeMap::new();
    for t in targets.iter().flatten() {
        distinct.insert(t.clone(), None);
    }

    // 2. Fetch them.
    if !distinct.is_empty() {
        match fetch(distinct.keys().cloned().collect()).await {
            Err(e) => {
                for slot in distinct.values_mut() {
                    *slot = Some(Err(e.clone()));
                }
            }
            Ok(results) => {
                for (t, r) in results {
                    distinct.insert(t, Some(r));
                }
            }
        }
    }

    // 3. One payload per document.
    targets
        .into_iter()
        .map(|t| {
            let t = t?;
            match distinct.get(&t) {
                Some(Some(Ok(v))) => Ok(payload(v)),
                Some(Some(Err(e))) => Err(e.clone()),
                _ => Err(FetchError::invalid(missing(&t))),
            }
        })
        .collect()
}
