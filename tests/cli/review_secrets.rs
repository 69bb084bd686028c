//! Issue 9, items 2-8, 14 and 22: what an outside review found about secrets reaching the
//! wrong place (explain's fingerprints and failures, masking per stream, session cookies,
//! unknown CME_EXEC_ variables).

use serde_json::Value;
use sha2::Digest as _;

use crate::support::scripts;
use crate::support::*;

const URL: &str = "https://x.atlassian.net";

/// A config of env:// references (and a literal user name) with sentinel values.
fn env_config(t: &mut Test) -> (Test, String, String) {
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

/// Item 3: fingerprints are HMAC-SHA-256 under a per-user 0600 key, not a plain SHA-256 (an
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

/// Item 3: two first runs at once agree on one key (created atomically, never half-written).
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

/// Item 14: `explain --format json` is data: fingerprint, source and origin in their own fields,
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

/// Item 14: when a reference fails, explain prints nothing on stdout (no partial config), names
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

/// Item 22: a misspelt `CME_EXEC_*` variable is an error (exit 125) naming the closest known
/// name, for every command that reads the config; nothing runs.
#[test]
fn unknown_cme_exec_variables_are_refused_with_a_suggestion() {
    let mut t = Test::new();
    let (t, _, _) = env_config(&mut t);
    let marker = t.out_dir().join("ran");
    let child = t.script("mark", &scripts::touch(&marker));
    for (typo, meant) in [
        ("CME_EXEC_TIMOUT", "CME_EXEC_TIMEOUT"),
        ("CME_EXEC_VAULT_KV_VERSON", "CME_EXEC_VAULT_KV_VERSION"),
    ] {
        let t = Test::new().env(typo, "3");
        let t = t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://P\"\n");
        for args in [
            vec!["check".to_owned()],
            vec!["explain".to_owned()],
            vec!["--".to_owned(), child.display().to_string()],
        ] {
            let out = t.run_args(&args);
            out.assert_code(125)
                .assert_stderr_contains(&format!("{typo}: did you mean {meant}?"));
        }
        t.assert_clean();
    }
    assert!(!marker.exists(), "the child ran");
    // The test harness's own variables are not cme-exec's.
    let t = t.env("CME_EXEC_TEST_ANYTHING", "1");
    t.run_args(["check"]).assert_success();
    t.assert_clean();
}

/// Item 22: environment-only settings next to a config file are ignored, and cme-exec says so,
/// naming the file.
#[test]
fn env_only_settings_ignored_for_a_config_file_are_named() {
    let mut t = Test::new();
    let (t, _, _) = env_config(&mut t);
    let t = t
        .env("CME_EXEC_JIRA_URL", "https://other.example.com")
        .env("CME_EXEC_JIRA_PAT", "env://CME_TEST_PAT");
    let out = t.run_args(["check"]);
    out.assert_success()
        .assert_stderr_contains("CME_EXEC_JIRA_URL, CME_EXEC_JIRA_PAT are ignored")
        .assert_stderr_contains(&t.config_path().display().to_string());
    t.assert_clean();
}

/// Item 2: masking is decided per stream. On a terminal with `2>file`, stderr (cme's log) is
/// masked while stdout stays the child's terminal, untouched; `--no-mask` turns both off.
#[test]
fn masking_is_decided_per_stream() {
    use crate::support::launch::{from_terminal, pty_runner};
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = t
        .env("CME_TEST_PAT", &pat)
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_PAT\"\n");
    let payload = t.secret_file("payload", format!("secret={pat}\n"));
    let child = t.script(
        "print-both",
        &format!(
            "#!/usr/bin/env bash\ncat '{p}'\ncat '{p}' >&2\nif [ -t 1 ]; then echo stdout=terminal; else echo stdout=not-terminal; fi\nif [ -t 2 ]; then echo stderr=terminal >&2; else echo stderr=not-terminal >&2; fi\n",
            p = payload.display()
        ),
    );
    let pty = pty_runner(&t);
    let err_file = t.out_dir().join("export.log");
    let redirect = format!("exec \"$@\" 2>'{}'", err_file.display());
    for (flag, stderr_masked) in [(None, true), (Some("--no-mask"), false)] {
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
        if let Some(f) = flag {
            args.push(f.as_ref());
        }
        args.extend(["--".as_ref(), child.as_os_str()]);
        let out = t
            .launch(args)
            .env_remove("CI")
            .wrapper([
                pty.as_os_str(),
                "/bin/sh".as_ref(),
                "-c".as_ref(),
                redirect.as_ref(),
                "sh".as_ref(),
            ])
            .allow_secrets_in_stdout()
            .run();
        assert_eq!(out.code(), Some(0), "{flag:?}: {}", out.describe());
        assert_eq!(
            redact(&from_terminal(&out.stdout)),
            redact(&format!("secret={pat}\nstdout=terminal\n")),
            "{flag:?}: the terminal on stdout stays the child's, untouched"
        );
        let log = std::fs::read_to_string(&err_file).unwrap();
        if stderr_masked {
            assert_eq!(
                redact(&log),
                "secret=***\nstderr=not-terminal\n",
                "stderr redirected to a file is masked"
            );
        } else {
            assert_eq!(
                redact(&log),
                redact(&format!("secret={pat}\nstderr=not-terminal\n"))
            );
        }
        std::fs::remove_file(&err_file).unwrap();
    }
    t.assert_clean();
}
