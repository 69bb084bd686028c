//! Integration tests: the real `cme-exec` binary, run with a cleared environment in a private
//! temporary directory (see `tests/cli/support`), against the real cme from `.venv`, a Confluence
//! stand-in and small child scripts.
//!
//! Every secret is a sentinel; every run's stdout and stderr are checked for the test's sentinels
//! (raw, base64, URL-encoded, JSON-escaped) by the harness, and every [`support::Test`] ends with
//! its `assert_clean` check, run when it is dropped: nothing left in XDG_RUNTIME_DIR, TMPDIR or
//! /dev/shm, and no sentinel in any file outside the test's own `secrets/` and `out/` directories.
//!
//! This file holds only the list of modules (one file per topic beside it, kept in alphabetical
//! order, as casey/just's `tests/` and uv's `tests/it/main.rs` do) and the helpers several of them
//! share. A new topic is a new file and one `mod` line here.

// Before the modules: a `macro_rules!` macro is visible only after its definition.
/// Arguments of mixed types (`&str`, `String`, `PathBuf`, `&Path`) as one `[OsString; N]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        [$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$arg))),*]
    };
}

mod aws_credentials;
mod aws_sm;
mod aws_ssm;
mod aws_transport;
mod base_config;
mod child_env;
mod ci_templates;
mod cme_releases;
mod command_provider;
mod config_errors;
mod conformance;
mod deploy;
mod dist;
mod documentation;
mod exit_codes;
mod expiry;
mod explain;
mod faults;
mod file_provider;
mod handover;
mod harness;
mod import;
mod init;
mod job_control;
mod keyring;
mod live;
mod load;
mod masking;
mod output;
mod processes;
mod properties;
mod real_cme;
mod references;
mod safety;
mod signals;
mod subcommands;
mod support;
mod trust;
mod vault;
mod vault_proxy;
mod writeback;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the modules
// ---------------------------------------------------------------------------------------------

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn q(value: impl AsRef<str>) -> String {
    serde_json::to_string(value.as_ref()).expect("a string serialises")
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
        user_ref = q(format!("env://{user_var}")),
        token_ref = q(file_ref(&token_file)),
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

/// A test with one Jira instance whose PAT (a sentinel, returned) comes from a variable.
fn pat_test() -> (Test, String) {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = t
        .env("CME_TEST_PAT", &pat)
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_PAT\"\n");
    (t, pat)
}

/// The child that records its environment and config into `out/`.
fn dump_env_child(t: &Test) -> PathBuf {
    t.script("dump-env", &scripts::dump_env(&t.out_dir()))
}

/// A child that only proves it ran, by creating `out/ran`: (the child, the marker).
fn marker_child(t: &Test) -> (PathBuf, PathBuf) {
    let marker = t.out_dir().join("ran");
    (t.script("mark", &scripts::touch(&marker)), marker)
}

/// The pid a child wrote into `path`.
fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

/// Operation and path of each audited Vault request, one a line (no values: safe to print).
fn audit_listing(requests: &[support::openbao::Audited]) -> String {
    requests
        .iter()
        .map(|r| format!("{} {}", r.operation, r.path))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `auth.PRODUCT[url]` entry of a cme config (a trailing `/` on either side ignored).
#[track_caller]
fn entry<'a>(config: &'a Value, product: &str, url: &str) -> &'a Value {
    let instances = config
        .pointer(&format!("/auth/{product}"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("the config has no auth.{product}"));
    instances
        .iter()
        .find(|(key, _)| key.trim_end_matches('/') == url.trim_end_matches('/'))
        .map(|(_, entry)| entry)
        .unwrap_or_else(|| {
            panic!(
                "auth.{product} has no entry for {url}; keys: {:?}",
                instances.keys().collect::<Vec<_>>()
            )
        })
}

/// The `auth.confluence[url]` entry of a cme config.
#[track_caller]
fn confluence_entry<'a>(config: &'a Value, url: &str) -> &'a Value {
    entry(config, "confluence", url)
}

/// Asserts `auth.PRODUCT[url].field == expected` without printing either value.
#[track_caller]
fn assert_config_field(config: &Value, product: &str, url: &str, field: &str, expected: &str) {
    assert_field(
        entry(config, product, url),
        field,
        expected,
        &format!("auth.{product}[{url}]"),
    );
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
