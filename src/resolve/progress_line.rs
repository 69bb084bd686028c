//! While references are resolved: what is being waited for, shown on a terminal as one line.
//!
//! The providers' `progress` module is the registry of requests in flight; this module is the
//! line that shows it.
//!
//! After about a second of waiting, and then at most every [`REPEAT`], one line on cme-exec's
//! stderr names each store being waited for (its address, how long, which attempt), from
//! [`cme_exec_providers::progress`]. Only when stderr is a terminal: in a CI log the deadline's
//! error says the same at the end. Resolution always ends before the child starts, so these
//! lines are cme-exec's own output, never the child's. Full lines rather than a redrawn status
//! line, so that `-v` log lines written in between are never garbled.

use std::time::Duration;

use cme_exec_providers::progress::{self, Waiting};

/// How long a wait lasts before it is shown.
pub const FIRST: Duration = Duration::from_secs(1);
/// How often it is shown again while it lasts.
pub const REPEAT: Duration = Duration::from_secs(5);
/// How often the registry is looked at.
const TICK: Duration = Duration::from_millis(200);

/// Shows waits on stderr for as long as it is polled (never returns); does nothing unless
/// stderr is a terminal.
pub async fn show_waits() -> std::convert::Infallible {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return std::future::pending().await;
    }
    let mut last_shown: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(TICK).await;
        let slow: Vec<Waiting> = progress::waiting()
            .into_iter()
            .filter(|w| w.elapsed >= FIRST)
            .collect();
        if slow.is_empty() {
            continue;
        }
        let due = last_shown.is_none_or(|t| t.elapsed() >= REPEAT);
        if due {
            crate::error::note(describe(&slow));
            last_shown = Some(tokio::time::Instant::now());
        }
    }
}

/// `waiting for Vault at http://127.0.0.1:8200 (3 s, attempt 2 of 3)`.
pub fn describe(waits: &[Waiting]) -> String {
    let parts: Vec<String> = waits
        .iter()
        .map(|w| {
            let place = if w.address.is_empty() {
                w.store.clone()
            } else {
                format!("{} at {}", w.store, w.address)
            };
            let attempt = match (w.attempt, w.max_attempts) {
                (a, 0) if a > 1 => format!(", attempt {a}"),
                (a, m) if m > 1 => format!(", attempt {a} of {m}"),
                _ => String::new(),
            };
            let requests = if w.requests > 1 {
                format!(", {} requests", w.requests)
            } else {
                String::new()
            };
            format!("{place} ({} s{attempt}{requests})", w.elapsed.as_secs())
        })
        .collect();
    format!("waiting for {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_store_once() {
        let w = |store: &str, address: &str, secs, attempt, max, requests| Waiting {
            store: store.into(),
            address: address.into(),
            elapsed: Duration::from_secs(secs),
            attempt,
            max_attempts: max,
            requests,
        };
        assert_eq!(
            describe(&[
                w("Vault", "http://127.0.0.1:8200", 3, 2, 3, 1),
                w("the AWS credential chain", "", 1, 1, 0, 1),
                w("AWS Secrets Manager", "https://x", 2, 1, 3, 4),
            ]),
            "waiting for Vault at http://127.0.0.1:8200 (3 s, attempt 2 of 3); \
             the AWS credential chain (1 s); AWS Secrets Manager at https://x (2 s, attempt 1 \
             of 3, 4 requests)"
        );
    }
}
