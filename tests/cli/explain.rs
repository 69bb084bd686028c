//! `explain`: fingerprints keyed per user (never a plain hash of the value), one key shared by
//! concurrent first runs, `--format json` as data, and nothing printed when a reference fails.

use serde_json::Value;
use sha2::Digest as _;

use crate::support::*;

/// A config of env:// references (and a literal user name) with sentinel values.
pub(crate) fn env_config(t: &mut Test) -> (Test, String, String) {
    let token = t.sentinel("api-token");
    let pat = t.sentinel("pat");
    let config = format!(
        "[confluence.\"{URL}\"]\nusername = \"me@example.com\"\napi_token = \"env://CME_TEST_TOKEN\"\n\n[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_PAT\"\n"
    );
    let t = std::mem::take(t)
        .env("CME_TEST_TOKEN", &token)
        .env("CME_TEST_PAT", &pat)
        .config_toml(&config);
    (t, token, pat)
}

fn explain_json(t: &Test) -> Value {
    let out = t.run_args(["explain", "--format", "json"]);
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain --format json is not JSON ({e})\n{}",
            out.describe()
        )
    })
}

fn field<'a>(doc: &'a Value, product: &str, url: &str, field: &str) -> &'a Value {
    doc.pointer("/config/auth")
        .and_then(|a| a.get(product))
        .and_then(|p| p.get(url))
        .and_then(|i| i.get(field))
        .unwrap_or_else(|| panic!("no config.auth.{product}[{url}].{field} in {doc}"))
}

fn fingerprint_of(doc: &Value, product: &str, url: &str, name: &str) -> String {
    let f = field(doc, product, url, name);
    let fp = f["fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no fingerprint in {f}"));
    fp.strip_prefix("hmac-sha256:")
        .unwrap_or_else(|| panic!("not an HMAC fingerprint: {fp}"))
        .to_owned()
}

fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fingerprints are HMAC-SHA-256 under a per-user 0600 key, not a plain SHA-256 (an
/// offline oracle for a guessed user name); the same key gives the same fingerprint, also on
/// another machine with a shared key file.
#[test]
fn explain_fingerprints_are_keyed() {
    let mut t = Test::new();
    let (t, token, _) = env_config(&mut t);
    let doc = explain_json(&t);
    let fp = fingerprint_of(&doc, "confluence", URL, "api_token");
    let user_fp = fingerprint_of(&doc, "confluence", URL, "username");
    for (fp, value) in [(&fp, token.as_str()), (&user_fp, "me@example.com")] {
        let plain = sha256_hex(value);
        assert!(
            !plain.starts_with(&fp[..8]),
            "the fingerprint is a prefix of the plain SHA-256 of the value"
        );
    }
    let key = t.path().join(".local/state/cme-exec/fingerprint.key");
    assert_eq!(mode_of(&key) & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
    assert_eq!(
        fingerprint_of(&explain_json(&t), "confluence", URL, "api_token"),
        fp,
        "the same key gives the same fingerprint"
    );

    // Another user (another HOME) gets another fingerprint; a shared key file gives the same.
    let mut other = Test::new();
    let other_token_holder = other.sentinel("unused");
    let _ = other_token_holder;
    let config = std::fs::read_to_string(t.config_path()).unwrap();
    let other = other
        .env("CME_TEST_TOKEN", &token)
        .env("CME_TEST_PAT", "x-pat-value")
        .config_toml(&config);
    assert_ne!(
        fingerprint_of(&explain_json(&other), "confluence", URL, "api_token"),
        fp
    );
    let shared = t.secret_file("shared.key", [7u8; 32]);
    let t = t.env("CME_EXEC_FINGERPRINT_KEY_FILE", &shared);
    let other = other.env("CME_EXEC_FINGERPRINT_KEY_FILE", &shared);
    let a = fingerprint_of(&explain_json(&t), "confluence", URL, "api_token");
    let b = fingerprint_of(&explain_json(&other), "confluence", URL, "api_token");
    assert_eq!(a, b, "a shared key file gives the same fingerprint");
    assert_ne!(a, fp);
    t.assert_clean();
}

/// Two first runs at once agree on one key (created atomically, never half-written).
#[test]
fn explain_concurrent_first_runs_share_one_key() {
    let mut t = Test::new();
    let (t, _, _) = env_config(&mut t);
    let runs: Vec<_> = (0..4)
        .map(|_| t.spawn_args(["explain", "--format", "json"]))
        .collect();
    let fps: Vec<String> = runs
        .into_iter()
        .map(|r| {
            let out = r.wait();
            out.assert_success();
            let doc: Value = serde_json::from_str(&out.stdout).unwrap();
            fingerprint_of(&doc, "confluence", URL, "api_token")
        })
        .collect();
    assert!(fps.windows(2).all(|w| w[0] == w[1]), "{fps:?}");
    let dir = t.path().join(".local/state/cme-exec");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["fingerprint.key"], "left over: {names:?}");
    t.assert_clean();
}

/// `explain --format json` is data: fingerprint, source and origin in their own fields,
/// valid JSON that reads back; a literal has no source.
#[test]
fn explain_json_is_data() {
    let mut t = Test::new();
    let (t, _, _) = env_config(&mut t);
    let doc = explain_json(&t);
    let token = field(&doc, "confluence", URL, "api_token");
    assert_eq!(token["source"], "env://CME_TEST_TOKEN");
    assert_eq!(token["origin"], "reference");
    let user = field(&doc, "confluence", URL, "username");
    assert_eq!(user["origin"], "literal");
    assert!(user["source"].is_null());
    assert!(doc["base_config"]["path"].is_string());
    t.assert_clean();
}

/// When a reference fails, explain prints nothing on stdout (no partial config), names
/// the failure on stderr and exits 1, like check.
#[test]
fn explain_prints_nothing_when_resolution_fails() {
    let mut t = Test::new();
    let (t, _, _) = env_config(&mut t);
    let t = t.env_remove("CME_TEST_PAT");
    for format in ["text", "json"] {
        let out = t.run_args(["explain", "--format", format]);
        out.assert_code(1).assert_stderr_contains("CME_TEST_PAT");
        assert!(
            out.stdout.is_empty(),
            "explain printed a partial config\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}

const URL: &str = "https://x.atlassian.net";
