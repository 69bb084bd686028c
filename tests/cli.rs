//! Integration tests: the real `cme-exec` binary, run with a cleared environment in a private
//! temporary directory (see `tests/support`), against the real cme from `.venv`, a Confluence
//! stand-in and small child scripts.
//!
//! Every secret is a sentinel; every run's stdout and stderr are checked for the test's sentinels
//! (raw, base64, URL-encoded, JSON-escaped) by the harness, and every [`support::Test`] ends with
//! its `assert_clean` check, run when it is dropped: nothing left in XDG_RUNTIME_DIR, TMPDIR or
//! /dev/shm, and no sentinel in any file outside the test's own `secrets/` and `out/` directories.
//!
//! This file holds only the list of modules (one file per topic under `tests/cli/`, kept in
//! alphabetical order, as casey/just's `tests/` does) and the helpers several of them share. A new
//! topic is a new file and one `mod` line here.

// Before the modules: a `macro_rules!` macro is visible only after its definition.
/// Arguments of mixed types (`&str`, `String`, `PathBuf`, `&Path`) as one `[OsString; N]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        [$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$arg))),*]
    };
}

#[path = "cli/aws_credentials.rs"]
mod aws_credentials;
#[path = "cli/aws_sm.rs"]
mod aws_sm;
#[path = "cli/aws_ssm.rs"]
mod aws_ssm;
#[path = "cli/aws_transport.rs"]
mod aws_transport;
#[path = "cli/base_config.rs"]
mod base_config;
#[path = "cli/child_env.rs"]
mod child_env;
#[path = "cli/ci_templates.rs"]
mod ci_templates;
#[path = "cli/cme_releases.rs"]
mod cme_releases;
#[path = "cli/command_provider.rs"]
mod command_provider;
#[path = "cli/config_errors.rs"]
mod config_errors;
#[path = "cli/conformance.rs"]
mod conformance;
#[path = "cli/deploy.rs"]
mod deploy;
#[path = "cli/dist.rs"]
mod dist;
#[path = "cli/exit_codes.rs"]
mod exit_codes;
#[path = "cli/expiry.rs"]
mod expiry;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/first_contact.rs"]
mod first_contact;
#[path = "cli/handover.rs"]
mod handover;
#[path = "cli/harness.rs"]
mod harness;
#[path = "cli/import.rs"]
mod import;
#[path = "cli/init.rs"]
mod init;
#[path = "cli/job_control.rs"]
mod job_control;
#[path = "cli/live.rs"]
mod live;
#[path = "cli/load.rs"]
mod load;
#[path = "cli/masking.rs"]
mod masking;
#[path = "cli/processes.rs"]
mod processes;
#[path = "cli/properties.rs"]
mod properties;
#[path = "cli/real_cme.rs"]
mod real_cme;
#[path = "cli/references.rs"]
mod references;
#[path = "cli/review_fixes.rs"]
mod review_fixes;
#[path = "cli/review_secrets.rs"]
mod review_secrets;
#[path = "cli/safety.rs"]
mod safety;
#[path = "cli/signals.rs"]
mod signals;
#[path = "cli/subcommands.rs"]
mod subcommands;
mod support;
#[path = "cli/trust.rs"]
mod trust;
#[path = "cli/vault.rs"]
mod vault;
#[path = "cli/vault_proxy.rs"]
mod vault_proxy;
#[path = "cli/writeback.rs"]
mod writeback;

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the modules
// ---------------------------------------------------------------------------------------------

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn q(value: &str) -> String {
    serde_json::to_string(value).expect("a string serialises")
}

/// `file://` + absolute path.
fn file_ref(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn basic_header(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

/// A unique environment variable name, so that no test depends on another's variables.
fn var_name(label: &str) -> String {
    format!("CME_TEST_{label}_{}", secrets::random_hex().to_uppercase())
}

/// A test with one Confluence instance at `url` whose username comes from an environment variable
/// and whose API token comes from a file (with a trailing newline, which is not part of it).
struct Basic {
    t: Test,
    user: String,
    token: String,
    user_var: String,
    token_file: std::path::PathBuf,
}

fn basic(url: &str) -> Basic {
    basic_with_extra(url, "")
}

fn basic_with_extra(url: &str, extra_toml: &str) -> Basic {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let user_var = var_name("USER");
    let token_file = t.secret_file("token", format!("{token}\n"));
    let config = format!(
        "[confluence.{url}]\nusername = {user_ref}\napi_token = {token_ref}\n{extra_toml}",
        url = q(url),
        user_ref = q(&format!("env://{user_var}")),
        token_ref = q(&file_ref(&token_file)),
    );
    let t = t.env(&user_var, &user).config_toml(&config);
    Basic {
        t,
        user,
        token,
        user_var,
        token_file,
    }
}

/// The `auth.confluence[url]` entry of a cme config.
#[track_caller]
fn confluence_entry<'a>(config: &'a Value, url: &str) -> &'a Value {
    let instances = config
        .pointer("/auth/confluence")
        .and_then(Value::as_object)
        .expect("the config has auth.confluence");
    instances
        .iter()
        .find(|(key, _)| key.trim_end_matches('/') == url.trim_end_matches('/'))
        .map(|(_, entry)| entry)
        .unwrap_or_else(|| {
            panic!(
                "auth.confluence has no entry for {url}; keys: {:?}",
                instances.keys().collect::<Vec<_>>()
            )
        })
}

/// Asserts that `entry[name]` is the secret `expected`, printing only redacted values.
#[track_caller]
fn assert_field(entry: &Value, name: &str, expected: &str, what: &str) {
    let actual = entry.get(name).and_then(Value::as_str);
    assert!(
        actual == Some(expected),
        "{what}: {name} should be {}, found {}",
        secrets::label_of(expected),
        actual.map_or_else(|| "nothing".to_owned(), |v| format!("{:?}", redact(v)))
    );
}

/// Asserts that `actual` is the secret `expected`, printing only redacted values.
#[track_caller]
fn assert_secret(actual: Option<&str>, expected: &str, what: &str) {
    assert!(
        actual == Some(expected),
        "{what}: expected {}, found {}",
        secrets::label_of(expected),
        actual.map_or_else(|| "nothing".to_owned(), |v| format!("{:?}", redact(v)))
    );
}

/// Lines of `text` containing every one of `needles`.
fn lines_with<'a>(text: &'a str, needles: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .collect()
}

/// Whether `line` has `word` as a whole word (so `ok` is not found in `api_token`).
fn has_word(line: &str, word: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Lines of `text` that contain `needle` and the word `ok`.
fn ok_lines<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    lines_with(text, &[needle])
        .into_iter()
        .filter(|line| has_word(line, "ok"))
        .collect()
}

/// A config written back to disk holds no secret field: every `auth.*[URL]` entry has empty or
/// no `username`, `api_token`, `pat` and `session_cookies`.
#[track_caller]
fn assert_no_secret_fields(config: &Value) {
    for service in ["confluence", "jira"] {
        let Some(instances) = config
            .pointer(&format!("/auth/{service}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (url, entry) in instances {
            for name in ["username", "api_token", "pat", "session_cookies"] {
                let value = entry.get(name).and_then(Value::as_str).unwrap_or("");
                assert!(
                    value.is_empty(),
                    "the written-back config holds auth.{service}[{url}].{name} ({} bytes)",
                    value.len()
                );
            }
        }
    }
}
