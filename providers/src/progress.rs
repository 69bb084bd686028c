//! What the providers are waiting for right now, for the binary to show while a store is slow.
//!
//! A provider marks each request with [`begin`] (the store and its address; never a path, a
//! token or a value) and tells the attempt number on a retry; the guard removes the entry when
//! the request ends. The binary reads [`waiting`] from a timer and shows it on a terminal.
//!
//! It is a process-wide registry rather than a field of [`crate::Context`] because the transports
//! that know about attempts do not hold the context, and a cme-exec process resolves one
//! configuration once: there is never a second run to keep apart.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    id: u64,
    store: String,
    address: String,
    started: Instant,
    attempt: AtomicU32,
    max_attempts: u32,
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static WAITS: Mutex<Vec<Arc<Entry>>> = Mutex::new(Vec::new());

/// One request in flight; removed from [`waiting`] when dropped.
pub struct Wait {
    entry: Arc<Entry>,
}

/// Marks a request to `store` (`Vault`, `AWS Secrets Manager`) at `address` as started, at
/// attempt 1 of `max_attempts` (0 when unknown).
pub fn begin(store: &str, address: &str, max_attempts: u32) -> Wait {
    let entry = Arc::new(Entry {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        store: store.to_owned(),
        address: address.to_owned(),
        started: Instant::now(),
        attempt: AtomicU32::new(1),
        max_attempts,
    });
    WAITS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::clone(&entry));
    Wait { entry }
}

impl Wait {
    /// The request's attempt `n` (1 for the first) is starting.
    pub fn attempt(&self, n: u32) {
        self.entry.attempt.store(n, Ordering::Relaxed);
    }
}

/// Tells every request in flight to `address` that attempt `n` started (for a client that
/// retries on its own and reports attempts per endpoint, such as the AWS SDK's).
pub fn attempt_at(address: &str, n: u32) {
    for e in WAITS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if e.address == address {
            e.attempt.fetch_max(n, Ordering::Relaxed);
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut waits = WAITS.lock().unwrap_or_else(|p| p.into_inner());
        waits.retain(|e| e.id != self.entry.id);
    }
}

/// One store being waited for: the longest wait of its requests, and their highest attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub store: String,
    pub address: String,
    pub elapsed: Duration,
    pub attempt: u32,
    pub max_attempts: u32,
    /// How many requests to it are in flight.
    pub requests: usize,
}

/// What is being waited for now, one entry per store and address, oldest first.
pub fn waiting() -> Vec<Waiting> {
    let now = Instant::now();
    let waits = WAITS.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<Waiting> = Vec::new();
    for e in waits.iter() {
        let elapsed = now.saturating_duration_since(e.started);
        let attempt = e.attempt.load(Ordering::Relaxed);
        match out
            .iter_mut()
            .find(|w| w.store == e.store && w.address == e.address)
        {
            Some(w) => {
                w.elapsed = w.elapsed.max(elapsed);
                w.attempt = w.attempt.max(attempt);
                w.requests += 1;
            }
            None => out.push(Waiting {
                store: e.store.clone(),
                address: e.address.clone(),
                elapsed,
                attempt,
                max_attempts: e.max_attempts,
                requests: 1,
            }),
        }
    }
    out.sort_by_key(|w| std::cmp::Reverse(w.elapsed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_listed_per_store_until_dropped() {
        let a = begin("Store-A", "http://127.0.0.1:1", 3);
        let b = begin("Store-A", "http://127.0.0.1:1", 3);
        b.attempt(2);
        let mine = |w: &Waiting| w.store == "Store-A";
        let now: Vec<_> = waiting().into_iter().filter(mine).collect();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].attempt, now[0].requests), (2, 2));
        attempt_at("http://127.0.0.1:1", 3);
        assert_eq!(waiting().into_iter().find(mine).unwrap().attempt, 3);
        drop(a);
        drop(b);
        assert!(!waiting().iter().any(mine));
    }
}
