//! Sentinel secrets and leak checks.
//!
//! Every secret a test hands to cme-exec is a [`sentinel`]: a unique string that cannot occur by
//! chance. [`assert_no_leak`] looks for it raw and in the encodings a leak would take (base64 at
//! any alignment, as in a `Basic` header; URL-encoded; JSON-escaped). Assertion messages name a
//! sentinel by its label only, and [`redact`] replaces every sentinel made in this process, so
//! that printing captured output in a failure message never prints a secret.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;

/// Every sentinel made by this test process, with its label, for [`redact`].
static REGISTRY: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 64 random bits as 16 hex digits, from std's randomly keyed hasher (no `rand` dependency).
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// A unique secret value, `S3NT1NEL-<label>-<random hex>`. `label` should be short and made of
/// letters, digits and `-`, so that the value needs no quoting anywhere.
pub fn sentinel(label: &str) -> String {
    assert!(
        label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "sentinel label {label:?} must be made of ASCII letters, digits, '-' and '_'"
    );
    let value = format!("S3NT1NEL-{label}-{}", random_hex());
    registry().push((value.clone(), label.to_owned()));
    value
}

/// The label a sentinel was made with, for messages that must not print the value.
pub fn label_of(secret: &str) -> String {
    registry()
        .iter()
        .find(|(value, _)| value == secret)
        .map(|(_, label)| format!("sentinel '{label}'"))
        .unwrap_or_else(|| format!("a secret of {} bytes", secret.len()))
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
pub fn url_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The forms under which `secret` may appear in a leak, each with a name for messages. Base64 is
/// checked at all three alignments (a secret in the middle of `user:token` is not encoded at a
/// 3-byte boundary): for each, the part of the encoding made only of the secret's own bytes.
pub fn leak_forms(secret: &str) -> Vec<(&'static str, String)> {
    let mut forms = vec![("raw", secret.to_owned())];
    let url = url_encode(secret);
    if url != secret {
        forms.push(("URL-encoded", url));
    }
    let form = url_encode(secret).replace("%20", "+");
    if form != secret {
        forms.push(("form-encoded", form));
    }
    let json = serde_json::to_string(secret).expect("a string serialises");
    let json = json[1..json.len() - 1].to_owned();
    if json != secret {
        forms.push(("JSON-escaped", json));
    }
    let engines: [(&'static str, base64::engine::GeneralPurpose); 2] = [
        ("base64", base64::engine::general_purpose::STANDARD),
        ("base64url", base64::engine::general_purpose::URL_SAFE),
    ];
    for (name, engine) in engines {
        for offset in 0..3usize {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            let start = if offset == 0 { 0 } else { 4 };
            let end = 4 * (bytes.len() / 3);
            if end > start && end - start >= 8 {
                let inner = encoded[start..end].to_owned();
                if !forms.iter().any(|(_, f)| *f == inner) {
                    forms.push((name, inner));
                }
            }
        }
    }
    forms
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which encoded form of `secret` occurs in `haystack`, if any.
pub fn leaked_form(haystack: impl AsRef<[u8]>, secret: &str) -> Option<&'static str> {
    let haystack = haystack.as_ref();
    leak_forms(secret)
        .into_iter()
        .find(|(_, form)| find(haystack, form.as_bytes()))
        .map(|(name, _)| name)
}

/// Panics when `secret` occurs in `haystack` raw, base64-encoded (standard or URL-safe, any
/// alignment), URL-encoded or JSON-escaped. The message names the sentinel's label, not its value.
#[track_caller]
pub fn assert_no_leak(haystack: impl AsRef<[u8]>, secret: &str) {
    assert_no_leak_in("output", haystack, secret);
}

/// [`assert_no_leak`] with a description of where the haystack came from.
#[track_caller]
pub fn assert_no_leak_in(what: &str, haystack: impl AsRef<[u8]>, secret: &str) {
    if let Some(form) = leaked_form(haystack, secret) {
        panic!("{} leaked ({form}) in {what}", label_of(secret));
    }
}

/// Panics when `secret` does NOT occur raw in `haystack` (for places a secret must reach, like the
/// config the child reads), without printing either.
#[track_caller]
pub fn assert_contains_secret(what: &str, haystack: impl AsRef<[u8]>, secret: &str) {
    assert!(
        find(haystack.as_ref(), secret.as_bytes()),
        "{} is missing from {what}",
        label_of(secret)
    );
}

/// `text` with every sentinel made in this process (and each of its encoded forms) replaced by
/// `<sentinel LABEL>`: safe to print in an assertion message.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    let sentinels = registry().clone();
    for (value, label) in sentinels {
        for (_, form) in leak_forms(&value) {
            if out.contains(&form) {
                out = out.replace(&form, &format!("<sentinel {label}>"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_at_every_alignment_is_found() {
        let user = sentinel("user");
        let token = sentinel("token");
        for prefix in ["", "a", "ab", "abc"] {
            let header =
                base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{user}:{token}"));
            assert_eq!(leaked_form(&header, &user), Some("base64"));
            assert_eq!(leaked_form(&header, &token), Some("base64"));
        }
        assert_eq!(leaked_form("nothing here", &user), None);
        assert!(!redact(&format!("x{user}y")).contains(&user));
    }
}
