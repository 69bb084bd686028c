//! Integration tests: the real `cme-exec` binary, run with a cleared environment in a private
//! temporary directory (see `tests/support`), against the real cme from `.venv`, a Confluence
//! stand-in and small child scripts.
//!
//! Every secret is a sentinel; every run's stdout and stderr are checked for the test's sentinels
//! (raw, base64, URL-encoded, JSON-escaped) by the harness, and every test ends with
//! `assert_clean`: nothing left in XDG_RUNTIME_DIR, TMPDIR or /dev/shm, and no sentinel in any file
//! outside the test's own `secrets/` and `out/` directories.

#[path = "cli/aws_sm.rs"]
mod aws_sm;
#[path = "cli/dist.rs"]
mod dist;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/first_contact.rs"]
mod first_contact;
#[path = "cli/load.rs"]
mod load;
#[path = "cli/masking.rs"]
mod masking;
#[path = "cli/processes.rs"]
mod processes;
#[path = "cli/properties.rs"]
mod properties;
#[path = "cli/review_fixes.rs"]
mod review_fixes;
#[path = "cli/review_secrets.rs"]
mod review_secrets;
#[path = "cli/safety.rs"]
mod safety;
mod support;
#[path = "cli/trust.rs"]
mod trust;
#[path = "cli/vault.rs"]
mod vault;
#[path = "cli/writeback.rs"]
mod writeback;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::Value;

use support::scripts;
use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Arguments of mixed types (`&str`, `String`, `PathBuf`, `&Path`) as one `[OsString; N]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        [$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$arg))),*]
    };
}

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

// ---------------------------------------------------------------------------------------------
// The real cme as the child, against the Confluence stand-in
// ---------------------------------------------------------------------------------------------

/// One cme run (`cme pages` with four page URLs) covers every kind of credential through the
/// default hand-over (memfd): username + API token (Basic), PAT (Bearer), session cookies
/// (Cookie, no Authorization), and an `https://x.atlassian.net` instance reached as
/// `http://x.atlassian.net` through the stand-in acting as an HTTP proxy (cme matches the key by
/// host; its unauthenticated Cloud ID probe gets a 404).
#[test]
fn cme_sends_every_kind_of_credential_via_memfd() {
    let venv = Venv::get();
    let basic_site = ConfluenceStandIn::start();
    let pat_site = ConfluenceStandIn::start();
    let cookie_site = ConfluenceStandIn::start();
    let proxy = ConfluenceStandIn::start();

    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let cloud_pat = t.sentinel("cloud-pat");
    let cookie_a = t.sentinel("cookie-a");
    let cookie_b = t.sentinel("cookie-b");
    let user_var = var_name("USER");
    let cookie_var = var_name("COOKIES");
    let token_file = t.secret_file("token", format!("{token}\n"));
    let pats = t.secret_file(
        "pats.json",
        serde_json::json!({ "pat": pat, "nested": { "pat": cloud_pat } }).to_string(),
    );
    let config = format!(
        r#"
[confluence.{basic}]
username = {user_ref}
api_token = {token_ref}

[confluence.{pat_url}]
pat = {pat_ref}

[confluence.{cookie}]
session_cookies = {cookie_ref}

[confluence."https://x.atlassian.net"]
pat = {cloud_pat_ref}
"#,
        basic = q(&basic_site.base_url()),
        pat_url = q(&pat_site.base_url()),
        cookie = q(&cookie_site.base_url()),
        user_ref = q(&format!("env://{user_var}")),
        token_ref = q(&file_ref(&token_file)),
        pat_ref = q(&format!("{}#pat", file_ref(&pats))),
        cookie_ref = q(&format!("env://{cookie_var}")),
        cloud_pat_ref = q(&format!("{}#/nested/pat", file_ref(&pats))),
    );
    let t = t
        .env(&user_var, &user)
        .env(&cookie_var, format!("a={cookie_a}; b={cookie_b}"))
        .env("HTTP_PROXY", proxy.proxy_url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .config_toml(&config)
        .arg("--")
        .arg(venv.cme())
        .args([
            "pages".to_owned(),
            basic_site.page_url(123),
            pat_site.page_url(124),
            cookie_site.page_url(125),
            "http://x.atlassian.net/wiki/spaces/ENG/pages/126".to_owned(),
        ]);
    let out = t.run();
    out.assert_success();

    let check_auth = |site: &ConfluenceStandIn, expected: &str, what: &str| {
        let headers = site.authorization_headers();
        assert!(
            !headers.is_empty() && headers.iter().all(|h| h == expected),
            "{what}: expected every request to carry the right Authorization header; requests:\n{}\n{}",
            redact(&site.summary()),
            out.describe()
        );
        assert!(
            site.requests()
                .iter()
                .any(|r| r.path.starts_with("/rest/api/space")
                    || r.path.contains("/rest/api/space?")),
            "{what}: cme never made its first request (rest/api/space)\n{}",
            redact(&site.summary())
        );
    };
    check_auth(
        &basic_site,
        &basic_header(&user, &token),
        "username + api_token",
    );
    check_auth(&pat_site, &format!("Bearer {pat}"), "pat");

    let cookies = cookie_site.cookie_headers();
    assert!(
        !cookies.is_empty()
            && cookies
                .iter()
                .all(|c| c.contains(&format!("a={cookie_a}"))
                    && c.contains(&format!("b={cookie_b}"))),
        "session_cookies: expected a Cookie header with both cookies on every request\n{}\n{}",
        redact(&cookie_site.summary()),
        out.describe()
    );
    assert!(
        cookie_site.authorization_headers().is_empty(),
        "session_cookies: no Authorization header expected\n{}",
        redact(&cookie_site.summary())
    );

    let proxied = proxy.requests();
    assert!(
        proxied
            .iter()
            .any(|r| r.host == "x.atlassian.net" && r.path_only().ends_with("/rest/api/space")),
        "cme did not reach http://x.atlassian.net through the proxy\n{}",
        redact(&proxy.summary())
    );
    for request in proxied
        .iter()
        .filter(|r| r.path_only().ends_with("/rest/api/space"))
    {
        assert_eq!(
            request.header("authorization").map(redact),
            Some(redact(&format!("Bearer {cloud_pat}"))),
            "the https://x.atlassian.net key (matched by host) gives the Bearer token"
        );
    }
    t.assert_clean();
}

/// `--via file` and `--via env` hand over username + API token to the real cme too.
fn cme_sends_basic_auth_via(via: &str) {
    let venv = Venv::get();
    let site = ConfluenceStandIn::start();
    let b = basic(&site.base_url());
    let t =
        b.t.args(["run", "--via", via, "--"])
            .arg(venv.cme())
            .args(["pages".to_owned(), site.page_url(123)]);
    let out = t.run();
    out.assert_success();
    let headers = site.authorization_headers();
    let expected = basic_header(&b.user, &b.token);
    assert!(
        !headers.is_empty() && headers.iter().all(|h| *h == expected),
        "--via {via}: expected Basic auth on every request\n{}\n{}",
        redact(&site.summary()),
        out.describe()
    );
    t.assert_clean();
}

#[test]
fn cme_sends_basic_auth_via_file() {
    cme_sends_basic_auth_via("file");
}

#[test]
fn cme_sends_basic_auth_via_env() {
    cme_sends_basic_auth_via("env");
}

// ---------------------------------------------------------------------------------------------
// The base config and write-back
// ---------------------------------------------------------------------------------------------

/// Settings from the base config (`[cme] base_config`, a file cme itself would not read) reach
/// cme, merged with the credentials.
#[test]
fn base_config_settings_reach_cme() {
    let venv = Venv::get();
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_var = var_name("TOKEN");
    let base = t.write_file("base/app_data.json", r#"{"export":{"log_level":"DEBUG"}}"#);
    let config = format!(
        "[confluence.\"https://company.atlassian.net\"]\npat = {pat}\n\n[cme]\nbase_config = {base}\n",
        pat = q(&format!("env://{token_var}")),
        base = q(&base.display().to_string()),
    );
    let t = t.env(&token_var, &token).config_toml(&config);
    let out = t.run_args(args!["--", venv.cme(), "config", "get", "export.log_level"]);
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "DEBUG",
        "cme should see the base config's log level\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// Without `[cme] base_config`, the base config is the file cme itself would use (under
/// XDG_CONFIG_HOME); its settings and the credentials both reach the child, and a run that
/// changes nothing leaves it as it was.
#[test]
fn base_config_defaults_to_cmes_own_file() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let base = b.t.cme_default_config();
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    let original = r#"{"export":{"log_level":"DEBUG","page_breadcrumbs":false}}"#;
    fs::write(&base, original).unwrap();
    let child = b.t.script("dump-env", &scripts::dump_env(&b.t.out_dir()));
    b.t.run_args(args!["--", child]).assert_success();
    let config = b.t.child_env().config_json();
    assert_eq!(
        config.pointer("/export/log_level").and_then(Value::as_str),
        Some("DEBUG")
    );
    assert_eq!(
        config
            .pointer("/export/page_breadcrumbs")
            .and_then(Value::as_bool),
        Some(false)
    );
    assert_field(
        confluence_entry(&config, url),
        "api_token",
        &b.token,
        "the base config merged with the credentials",
    );
    assert_eq!(
        fs::read_to_string(&base).unwrap(),
        original,
        "a run that changes nothing leaves the base config alone"
    );
    b.t.assert_clean();
}

/// `cme config set` through cme-exec changes the base config (`[cme] base_config`), which keeps its
/// mode and gets no secret.
#[test]
fn write_back_of_cme_config_set() {
    let venv = Venv::get();
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_var = var_name("TOKEN");
    let base = t.write_file("base/app_data.json", r#"{"export":{"log_level":"INFO"}}"#);
    fs::set_permissions(&base, fs::Permissions::from_mode(0o640)).unwrap();
    let config = format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_PLAIN_USER\"\napi_token = {token_ref}\n\n[cme]\nbase_config = {base}\nwrite_back = true\n",
        token_ref = q(&format!("env://{token_var}")),
        base = q(&base.display().to_string()),
    );
    let t = t
        .env(&token_var, &token)
        .env("CME_TEST_PLAIN_USER", "someone@example.com")
        .config_toml(&config);
    let out = t.run_args(args![
        "--",
        venv.cme(),
        "config",
        "set",
        "export.log_level=WARNING",
    ]);
    out.assert_success();

    let bytes = fs::read(&base).unwrap();
    assert_no_leak_in("the base config after write-back", &bytes, &token);
    let written: Value = serde_json::from_slice(&bytes).expect("the base config stays JSON");
    assert_no_secret_fields(&written);
    assert_eq!(
        written.pointer("/export/log_level").and_then(Value::as_str),
        Some("WARNING"),
        "cme's change should be written back\n{}",
        out.describe()
    );
    assert_eq!(
        mode_of(&base),
        0o640,
        "write-back keeps the base config's mode"
    );
    t.assert_clean();
}

/// A child that does what cme does after its Cloud ID probe (sets `cloud_id` in the config it was
/// given): the cloud_id lands in the base config, the secrets do not.
#[test]
fn write_back_keeps_cloud_id_and_drops_secrets() {
    let python = Venv::get().python();
    let url = "https://company.atlassian.net";
    let cloud_id = format!("cloud-{}", secrets::random_hex());
    let b = basic_with_extra(url, "");
    let base = b.t.cme_default_config();
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    fs::write(&base, r#"{"export":{"log_level":"INFO"}}"#).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o600)).unwrap();
    let child = b.t.script(
        "set-cloud-id",
        &scripts::set_cloud_id(&python, url, &cloud_id),
    );
    let out = b.t.run_args(args!["--", child]);
    out.assert_success();

    let bytes = fs::read(&base).unwrap();
    assert_no_leak_in("the base config after write-back", &bytes, &b.user);
    assert_no_leak_in("the base config after write-back", &bytes, &b.token);
    let written: Value = serde_json::from_slice(&bytes).expect("the base config stays JSON");
    assert_no_secret_fields(&written);
    assert_eq!(
        confluence_entry(&written, url)
            .get("cloud_id")
            .and_then(Value::as_str),
        Some(cloud_id.as_str()),
        "cloud_id should be written back\n{}",
        out.describe()
    );
    assert_eq!(
        written.pointer("/export/log_level").and_then(Value::as_str),
        Some("INFO"),
        "the rest of the base config is kept"
    );
    assert_eq!(
        mode_of(&base),
        0o600,
        "write-back keeps the base config's mode"
    );
    b.t.assert_clean();
}

/// `--no-write-back`, and `[cme] write_back = false`, leave the base config byte for byte.
#[test]
fn no_write_back_leaves_the_base_config_untouched() {
    let python = Venv::get().python();
    let url = "https://company.atlassian.net";
    let original = r#"{"export":{"log_level":"INFO"}}"#;

    // --no-write-back
    let b = basic(url);
    let base = b.t.cme_default_config();
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    fs::write(&base, original).unwrap();
    let child = b.t.script(
        "set-cloud-id",
        &scripts::set_cloud_id(&python, url, "cloud-x"),
    );
    let out = b.t.run_args(args!["run", "--no-write-back", "--", child]);
    out.assert_success();
    assert_eq!(
        fs::read_to_string(&base).unwrap(),
        original,
        "--no-write-back must leave the base config alone\n{}",
        out.describe()
    );
    b.t.assert_clean();

    // [cme] write_back = false
    let b = basic_with_extra(url, "\n[cme]\nwrite_back = false\n");
    let base = b.t.cme_default_config();
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    fs::write(&base, original).unwrap();
    let child = b.t.script(
        "set-cloud-id",
        &scripts::set_cloud_id(&python, url, "cloud-x"),
    );
    let out = b.t.run_args(args!["--", child]);
    out.assert_success();
    assert_eq!(
        fs::read_to_string(&base).unwrap(),
        original,
        "[cme] write_back = false must leave the base config alone\n{}",
        out.describe()
    );
    b.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------------------------

#[test]
fn exit_codes_follow_the_child() {
    let b = basic("https://company.atlassian.net");
    let t = &b.t;
    let exit42 = t.script("exit42", &scripts::exit_with(42));
    let term_self = t.script("term-self", &scripts::kill_self("TERM"));
    let kill_self = t.script("kill-self", &scripts::kill_self("KILL"));
    let not_executable = t.write_file("bin/not-executable", "#!/bin/sh\nexit 0\n");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();
    let directory = t.path().join("bin");
    let missing = t.path().join("bin/no-such-program");

    let cases: [(&str, &std::ffi::OsStr, i32); 9] = [
        ("true", "true".as_ref(), 0),
        ("false", "false".as_ref(), 1),
        ("exit 42", exit42.as_os_str(), 42),
        ("kill -TERM $$", term_self.as_os_str(), 128 + 15),
        ("kill -KILL $$", kill_self.as_os_str(), 128 + 9),
        ("a file without x bit", not_executable.as_os_str(), 126),
        ("a directory", directory.as_os_str(), 126),
        ("a missing path", missing.as_os_str(), 127),
        (
            "a command not on PATH",
            "cme-exec-test-no-such-command".as_ref(),
            127,
        ),
    ];
    for (what, program, expected) in cases {
        let out = t.run_args(args!["--", program]);
        assert_eq!(
            out.code(),
            Some(expected),
            "child {what}: expected exit code {expected}\n{}",
            out.describe()
        );
        t.assert_clean();
    }
}

/// The child gets cme-exec's stdin, and its stdout and stderr come out as they were.
#[test]
fn stdio_passes_through() {
    let b = basic("https://company.atlassian.net");
    let child = b.t.script(
        "echo",
        "#!/usr/bin/env bash\nread -r line\necho \"out:$line\"\necho \"err:$line\" >&2\n",
    );
    let t = b.t.stdin("hello from stdin\n");
    let out = t.run_args(args!["--", child]);
    out.assert_success()
        .assert_stdout_contains("out:hello from stdin")
        .assert_stderr_contains("err:hello from stdin");
    t.assert_clean();
}

/// A reference that cannot be resolved: exit 125, the child never starts, and the message names
/// every failed reference (not only the first).
#[test]
fn exit_125_when_references_fail_and_the_child_never_starts() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_var = var_name("TOKEN");
    let missing_user = var_name("MISSING_USER");
    let missing_file = t.path().join("secrets/no-such-file");
    let config = format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = {u}\napi_token = {tk}\n\n[jira.\"https://jira.example.com\"]\npat = {p}\n",
        u = q(&format!("env://{missing_user}")),
        tk = q(&format!("env://{token_var}")),
        p = q(&file_ref(&missing_file)),
    );
    let t = t.env(&token_var, &token).config_toml(&config);
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let out = t.run_args(args!["--", child]);
    out.assert_code(125);
    assert!(
        !marker.exists(),
        "the child must not start when a reference fails"
    );
    out.assert_stderr_contains(&missing_user)
        .assert_stderr_contains(&missing_file.display().to_string());
    t.assert_clean();
}

/// `run` is the default command: run options work without it.
#[test]
fn run_is_the_default_command() {
    let b = basic("https://company.atlassian.net");
    let child = b.t.script("dump-env", &scripts::dump_env(&b.t.out_dir()));
    let out = b.t.run_args(args!["--via", "file", "--", child]);
    out.assert_success();
    let env = b.t.child_env();
    assert!(
        env.config_file().is_some(),
        "`--via file` without `run` should hand over a file, got CME_CONFIG_PATH={:?}",
        env.config_path
    );
    b.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

/// SIGTERM to cme-exec reaches the child exactly once; cme-exec exits with the child's status.
/// While it runs, cme-exec's argv holds no secret (its environment does, by the test's choice:
/// the env:// variable was given to it).
#[test]
fn sigterm_is_forwarded_once() {
    let b = basic("https://company.atlassian.net");
    let record = b.t.out_dir().join("terms");
    let child = b.t.script("term-once", &scripts::term_once(&record));
    let t = b.t.args(args!["--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));

    let pid = running.pid();
    // Unreadable (a non-dumpable process, for a non-root user) counts as no leak.
    if let Ok(bytes) = fs::read(format!("/proc/{pid}/cmdline")) {
        t.assert_no_leaks_in("cme-exec's /proc/PID/cmdline", &bytes);
    }

    running.signal(Signal::SIGTERM);
    let out = running.wait();
    out.assert_success();
    let terms = fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(
        terms.lines().filter(|l| *l == "got TERM").count(),
        1,
        "the child should get SIGTERM exactly once\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// A child that ignores SIGTERM, with a grandchild: after `--grace 1` cme-exec SIGKILLs the
/// child's whole process group and exits 128+9.
#[test]
fn child_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    let b = basic("https://company.atlassian.net");
    let child_pid_file = b.t.out_dir().join("child.pid");
    let grandchild_pid_file = b.t.out_dir().join("grandchild.pid");
    let child = b.t.script(
        "stubborn",
        &scripts::ignore_term_with_grandchild(&child_pid_file, &grandchild_pid_file),
    );
    let t = b.t.args(args!["run", "--grace", "1", "--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));
    let read_pid = |path: &Path| -> i32 {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .parse()
            .expect("a pid")
    };
    let child_pid = read_pid(&child_pid_file);
    let grandchild_pid = read_pid(&grandchild_pid_file);
    let _reaper = KillOnDrop(vec![child_pid, grandchild_pid]);

    // The child's environment holds no secret either (the env:// variable was removed).
    if let Ok(bytes) = fs::read(format!("/proc/{child_pid}/environ")) {
        t.assert_no_leaks_in("the child's /proc/PID/environ", &bytes);
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&format!("{}=", b.user_var)),
            "the variable read by env:// should not reach the child"
        );
    }

    running.signal(Signal::SIGTERM);
    let out = running.wait_timeout(Duration::from_secs(30));
    out.assert_code(128 + 9);
    for (what, pid) in [("child", child_pid), ("grandchild", grandchild_pid)] {
        wait_until(
            &format!("the {what} (pid {pid}) is gone"),
            Duration::from_secs(10),
            || process_gone(pid),
        );
    }
    t.assert_clean();
}

/// SIGHUP, SIGUSR1 and SIGUSR2 are forwarded too, each once and in order.
#[test]
fn other_signals_are_forwarded_once_each() {
    let b = basic("https://company.atlassian.net");
    let record = b.t.out_dir().join("signals");
    let child = b.t.script("record", &scripts::record_signals(&record));
    let t = b.t.args(args!["--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));
    let lines = || -> Vec<String> {
        fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut expected: Vec<String> = Vec::new();
    for (signal, name) in [
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        running.signal(signal);
        expected.push(name.to_owned());
        let n = expected.len();
        wait_until(
            &format!("the child recorded {name}"),
            Duration::from_secs(10),
            || lines().len() >= n,
        );
    }
    running.signal(Signal::SIGTERM);
    expected.push("TERM".to_owned());
    let out = running.wait();
    out.assert_success();
    assert_eq!(
        lines(),
        expected,
        "each signal once, in order\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// A cme-exec killed with SIGKILL cannot remove its `--via file` directory; the next cme-exec
/// that starts sweeps it once its owner is gone.
#[test]
fn directories_left_by_a_killed_cme_exec_are_swept_later() {
    let b = basic("https://company.atlassian.net");
    let t = &b.t;
    let pid_file = t.out_dir().join("child.pid");
    let release = t.out_dir().join("release");
    let child = t.script("wait", &scripts::wait_for_release(&pid_file, &release));
    let mut running = t.spawn_args(args!["run", "--via", "file", "--", child]);
    running.wait_for_line("ready", Duration::from_secs(30));
    let child_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _reaper = KillOnDrop(vec![child_pid]);
    running.signal(Signal::SIGKILL);
    // Let the orphaned child go now, so that the pipes it shares close.
    fs::write(&release, "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), None, "cme-exec was killed\n{}", out.describe());
    wait_until("the orphaned child exits", Duration::from_secs(10), || {
        process_gone(child_pid)
    });
    assert!(
        fs::read_dir(t.runtime_dir()).unwrap().next().is_some(),
        "a SIGKILLed cme-exec leaves its private directory (if this fails, the test needs updating)"
    );

    // A directory is swept only when unlocked and old enough that its owner cannot be between
    // making and locking it (10 s in src/handover/private_dir.rs): start runs until one has.
    let exit0 = t.script("exit0", &scripts::exit_with(0));
    wait_until(
        "a later cme-exec --via file sweeps the directory",
        Duration::from_secs(40),
        || {
            t.run_args(args!["run", "--via", "file", "--", exit0])
                .assert_success();
            let empty = fs::read_dir(t.runtime_dir()).unwrap().next().is_none();
            if !empty {
                std::thread::sleep(Duration::from_millis(250));
            }
            empty
        },
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Hand-over and clean-up
// ---------------------------------------------------------------------------------------------

/// The default hand-over is a memfd: `CME_CONFIG_PATH=/proc/self/fd/N`, nothing on any
/// filesystem, and the child inherits no other descriptor beyond stdio.
/// The descriptors of this test process that a child would inherit (not close-on-exec): what
/// cme-exec inherits from the harness beyond stdio, and so what its child would have without it.
fn inheritable_fds() -> Vec<u32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&fd| {
            let flags = unsafe { nix::libc::fcntl(fd as i32, nix::libc::F_GETFD) };
            flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0
        })
        .collect()
}

#[test]
fn memfd_hand_over() {
    let url = "https://company.atlassian.net";
    let Basic { t, user, token, .. } = basic(url);
    let t = t.inherit_extra_fd(9);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let out = t.run_args(args!["--", child]);
    out.assert_success();
    let env = t.child_env();
    let fd = env.config_fd().unwrap_or_else(|| {
        panic!(
            "CME_CONFIG_PATH should be /proc/self/fd/N, got {:?}",
            env.config_path
        )
    });
    let config = env.config_json();
    let entry = confluence_entry(&config, url);
    assert_field(entry, "username", &user, "username reaches the child");
    assert_field(
        entry,
        "api_token",
        &token,
        "api_token reaches the child, without the file's trailing newline",
    );
    // The child's descriptors are what they would be without cme-exec (whatever cme-exec itself
    // inherited, such as the extra fd 9, passes through), plus the config's. The bash script's
    // own descriptor for its source is 255.
    let mut expected = inheritable_fds();
    expected.extend([0, 1, 2, 9, 255, fd]);
    let extra: Vec<_> = env
        .fds
        .iter()
        .filter(|(n, _)| !expected.contains(n))
        .collect();
    assert!(
        extra.is_empty(),
        "the child got descriptors that neither cme-exec's parent passed nor the config is: {extra:?}"
    );
    assert!(
        env.fds.iter().any(|(n, _)| *n == 9),
        "a descriptor cme-exec inherited (9) must pass through to the child: {:?}",
        env.fds
    );
    t.assert_clean();
}

/// `--via file`: a 0600 file in a fresh 0700 directory under XDG_RUNTIME_DIR, removed after a
/// normal exit, a child failure, the child's death by a signal and a SIGTERM to cme-exec, and
/// never made when resolution fails.
#[test]
fn via_file_is_private_and_removed_on_every_exit_path() {
    let url = "https://company.atlassian.net";
    let Basic {
        t, token, user_var, ..
    } = basic(url);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));

    // Normal exit.
    let out = t.run_args(args!["run", "--via", "file", "--", child]);
    out.assert_success();
    let env = t.child_env();
    let file = env
        .config_file()
        .unwrap_or_else(|| panic!("expected a file path, got {:?}", env.config_path));
    assert!(
        file.starts_with(t.runtime_dir()),
        "the config file should be under XDG_RUNTIME_DIR, got {}",
        file.display()
    );
    assert_ne!(
        file.parent(),
        Some(t.runtime_dir().as_path()),
        "the config file should be in a fresh directory of its own"
    );
    assert_eq!(env.config_mode.as_deref(), Some("600"), "config file mode");
    assert_eq!(
        env.config_dir_mode.as_deref(),
        Some("700"),
        "config directory mode"
    );
    let config = env.config_json();
    assert_field(
        confluence_entry(&config, url),
        "api_token",
        &token,
        "the --via file config",
    );
    assert!(
        !file.exists(),
        "the config file must be removed after the run"
    );
    t.assert_clean();

    // The child fails.
    let exit42 = t.script("exit42", &scripts::exit_with(42));
    t.run_args(args!["run", "--via", "file", "--", exit42])
        .assert_code(42);
    t.assert_clean();

    // The child dies by a signal.
    let kill_self = t.script("kill-self", &scripts::kill_self("KILL"));
    t.run_args(args!["run", "--via", "file", "--", kill_self])
        .assert_code(128 + 9);
    t.assert_clean();

    // cme-exec gets SIGTERM while the child runs.
    let record = t.out_dir().join("terms");
    let term_once = t.script("term-once", &scripts::term_once(&record));
    let mut running = t.spawn_args(args!["run", "--via", "file", "--", term_once]);
    running.wait_for_line("ready", Duration::from_secs(30));
    assert!(
        fs::read_dir(t.runtime_dir()).unwrap().next().is_some(),
        "the private directory should exist while the child runs"
    );
    running.signal(Signal::SIGTERM);
    running.wait().assert_success();
    t.assert_clean();

    // Resolution fails: nothing is made, the child never runs.
    let t = t.env_remove(&user_var);
    let out = t.run_args(args!["run", "--via", "file", "--", child]);
    out.assert_code(125);
    t.assert_clean();
}

/// `--dir DIR` puts the private directory under DIR; without XDG_RUNTIME_DIR the file goes to
/// /dev/shm; both are removed afterwards.
#[test]
fn via_file_honours_dir_and_falls_back_to_dev_shm() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let custom = b.t.path().join("custom");
    fs::create_dir(&custom).unwrap();
    fs::set_permissions(&custom, fs::Permissions::from_mode(0o700)).unwrap();
    let child = b.t.script("dump-env", &scripts::dump_env(&b.t.out_dir()));
    b.t.run_args(args!["run", "--via", "file", "--dir", custom, "--", child,])
        .assert_success();
    let file = b.t.child_env().config_file().expect("a config file path");
    assert!(
        file.starts_with(&custom),
        "--dir should be used, got {}",
        file.display()
    );
    assert_dir_empty(&custom);
    b.t.assert_clean();

    // Fails, never skips, without /dev/shm (issue 9, item 25).
    assert!(
        Path::new("/dev/shm").is_dir(),
        "the /dev/shm part cannot run: this system has no /dev/shm.\nTo fix: mount a tmpfs there \
         (`mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm`), or run the tests \
         where /dev/shm exists (every Linux distribution and CI image has it)"
    );
    let b = basic(url);
    let t = b.t.env_remove("XDG_RUNTIME_DIR").uses_dev_shm();
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args!["run", "--via", "file", "--", child])
        .assert_success();
    let file = t.child_env().config_file().expect("a config file path");
    assert!(
        file.starts_with("/dev/shm/"),
        "without XDG_RUNTIME_DIR the file should be under /dev/shm, got {}",
        file.display()
    );
    assert!(
        !file.parent().unwrap().exists(),
        "the private directory {} must be removed",
        file.parent().unwrap().display()
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// The child's environment
// ---------------------------------------------------------------------------------------------

#[test]
fn child_environment_drops_credentials_and_sets_non_interactive() {
    let b = basic("https://company.atlassian.net");
    let t =
        b.t.env("CME_TEST_UNRELATED", "kept")
            .env("CME_AUTH", r#"{"confluence":{}}"#);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args!["--", child]).assert_success();
    let env = t.child_env();
    t.assert_no_leaks_in("the child's environment", &env.raw_env);
    assert_eq!(
        env.var(&b.user_var),
        None,
        "a variable read by env:// is removed"
    );
    assert_eq!(env.var("CME_NON_INTERACTIVE"), Some("1"));
    assert_eq!(
        env.var("CME_TEST_UNRELATED"),
        Some("kept"),
        "the rest of the environment is kept"
    );
    assert_eq!(
        env.var("CME_AUTH"),
        None,
        "an inherited CME_AUTH would override the hand-over"
    );
    assert!(env.var("CME_CONFIG_PATH").is_some());
    t.assert_clean();

    // --keep-env keeps a variable that an env:// reference read.
    let out = t.run_args(args!["run", "--keep-env", b.user_var, "--", child,]);
    out.assert_success();
    assert_secret(
        t.child_env().var(&b.user_var),
        &b.user,
        &format!("--keep-env {} should keep it", b.user_var),
    );
    t.assert_clean();
}

/// `--empty-env` starts the child from an empty environment (plus the hand-over and the kept
/// variables).
#[test]
fn empty_env_starts_from_nothing() {
    let b = basic("https://company.atlassian.net");
    let t = b.t.env("CME_TEST_UNRELATED", "x").env("CME_TEST_KEPT", "y");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args![
        "run",
        "--empty-env",
        "--keep-env",
        "CME_TEST_KEPT",
        "--",
        child,
    ])
    .assert_success();
    let env = t.child_env();
    assert_eq!(env.var("CME_TEST_KEPT"), Some("y"));
    assert_eq!(env.var("CME_NON_INTERACTIVE"), Some("1"));
    // bash itself exports PWD, SHLVL and _; PATH may be kept so that the command can be found.
    let unexpected: Vec<&str> = env
        .names()
        .into_iter()
        .filter(|n| {
            ![
                "CME_CONFIG_PATH",
                "CME_NON_INTERACTIVE",
                "CME_TEST_KEPT",
                "PATH",
                "PWD",
                "OLDPWD",
                "SHLVL",
                "_",
            ]
            .contains(n)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "--empty-env leaked variables: {unexpected:?}"
    );
    t.assert_clean();
}

/// `-vvv` and `RUST_LOG=trace` print no secret (the harness checks stderr).
#[test]
fn verbose_logging_shows_no_values() {
    let b = basic("https://company.atlassian.net");
    let t = b.t.global_arg("-vvv").env("RUST_LOG", "trace");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    for via in ["memfd", "file", "env"] {
        t.run_args(args!["run", "--via", via, "--", child])
            .assert_success();
    }
    t.run_args(["check"]).assert_success();
    t.run_args(["explain"]).assert_success();
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// References and configuration sources
// ---------------------------------------------------------------------------------------------

/// Local reference forms: `file:rel/path` (relative to the config file), `#key` in JSON, TOML and
/// dotenv files, `#/json/pointer`, `from = REF` with explicit fields winning, `[auth] from`, and
/// Jira tables.
#[test]
fn local_reference_forms_resolve() {
    let mut t = Test::new();
    let s: Vec<String> = (0..8).map(|i| t.sentinel(&format!("s{i}"))).collect();
    t.secret_file("plain", format!("{}\n", s[0]));
    t.secret_file(
        "creds.json",
        serde_json::json!({ "a.b/c": s[1], "deep": { "x": s[2] } }).to_string(),
    );
    t.secret_file("creds.toml", format!("token = {}\n", q(&s[3])));
    t.secret_file("creds.env", format!("# comment\nPAT={}\n", s[4]));
    let from = t.secret_file(
        "from.json",
        serde_json::json!({ "username": s[5], "api_token": "overridden" }).to_string(),
    );
    let bulk = t.secret_file(
        "bulk.json",
        serde_json::json!({ "jira": { "https://jira.example.com": { "pat": s[6] } } }).to_string(),
    );
    let config = format!(
        r#"
[auth]
from = {bulk}

[confluence."https://one.example.com"]
username = "file:secrets/plain"
api_token = "file:secrets/creds.json#a.b/c"

[confluence."https://two.example.com"]
pat = "file:secrets/creds.json#/deep/x"

[confluence."https://three.example.com"]
pat = "file:secrets/creds.toml#token"
session_cookies = "file:secrets/creds.env#PAT"

[confluence."https://four.example.com/wiki-root"]
from = {from}
api_token = {override_ref}

[jira."https://jira2.example.com"]
pat = "file:secrets/creds.env#PAT"
"#,
        bulk = q(&file_ref(&bulk)),
        from = q(&file_ref(&from)),
        override_ref = q(&format!("env://{}", "CME_TEST_OVERRIDE")),
    );
    let t = t.env("CME_TEST_OVERRIDE", &s[7]).config_toml(&config);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let out = t.run_args(args!["--", child]);
    out.assert_success();
    let config = t.child_env().config_json();
    let one = confluence_entry(&config, "https://one.example.com");
    assert_field(
        one,
        "username",
        &s[0],
        "file:rel/path, trailing newline dropped",
    );
    assert_field(one, "api_token", &s[1], "#key with . and / in it");
    let two = confluence_entry(&config, "https://two.example.com");
    assert_field(two, "pat", &s[2], "#/json/pointer");
    let three = confluence_entry(&config, "https://three.example.com");
    assert_field(three, "pat", &s[3], "#key in a TOML file");
    assert_field(three, "session_cookies", &s[4], "#KEY in a dotenv file");
    let four = confluence_entry(&config, "https://four.example.com/wiki-root");
    assert_field(four, "username", &s[5], "from = REF");
    assert_field(four, "api_token", &s[7], "explicit fields win over from");
    let jira = config
        .pointer("/auth/jira")
        .and_then(Value::as_object)
        .expect("auth.jira");
    let pat_of = |url: &str| {
        jira.iter()
            .find(|(k, _)| k.trim_end_matches('/') == url)
            .and_then(|(_, v)| v.get("pat"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_secret(
        pat_of("https://jira.example.com").as_deref(),
        &s[6],
        "[auth] from",
    );
    assert_secret(
        pat_of("https://jira2.example.com").as_deref(),
        &s[4],
        "[jira.URL]",
    );
    t.assert_clean();
}

/// With no config file anywhere, the environment alone configures an instance.
#[test]
fn environment_only_configuration() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let token_file = t.secret_file("token", &token);
    let t = t
        .env("CME_TEST_USER", &user)
        .env("CME_EXEC_CONFLUENCE_URL", "https://company.atlassian.net")
        .env("CME_EXEC_CONFLUENCE_USERNAME", "env://CME_TEST_USER")
        .env("CME_EXEC_CONFLUENCE_API_TOKEN", file_ref(&token_file));
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args!["--", child]).assert_success();
    let env = t.child_env();
    let config = env.config_json();
    let entry = confluence_entry(&config, "https://company.atlassian.net");
    assert_field(entry, "username", &user, "the environment-only config");
    assert_field(entry, "api_token", &token, "the environment-only config");
    t.assert_no_leaks_in("the child's environment", &env.raw_env);
    t.assert_clean();
}

/// Discovery order: `$CME_EXEC_CONFIG`, then `./cme-exec.toml`, then
/// `$XDG_CONFIG_HOME/cme-exec/config.toml` (each names a different instance).
#[test]
fn config_discovery_order() {
    let t = Test::new().env("CME_TEST_PAT", "not-a-sentinel-pat");
    let write = |path: &Path, host: &str| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            path,
            format!("[confluence.\"https://{host}\"]\npat = \"env://CME_TEST_PAT\"\n"),
        )
        .unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    let from_env = t.path().join("elsewhere/named.toml");
    write(&from_env, "from-env.example.com");
    write(&t.work_dir().join("cme-exec.toml"), "from-cwd.example.com");
    write(
        &t.config_home().join("cme-exec/config.toml"),
        "from-xdg.example.com",
    );
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let hosts = |t: &Test| -> Vec<String> {
        let config = t.child_env().config_json();
        config
            .pointer("/auth/confluence")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };

    let t = t.env("CME_EXEC_CONFIG", &from_env);
    t.run_args(args!["--", child]).assert_success();
    assert_eq!(
        hosts(&t),
        ["https://from-env.example.com"],
        "$CME_EXEC_CONFIG first"
    );

    let t = t.env_remove("CME_EXEC_CONFIG");
    // The working directory's file only once trusted (issue 9, item 1).
    t.run_args(args!["--", child]).assert_code(125);
    t.run_args(["trust"]).assert_success();
    t.run_args(args!["--", child]).assert_success();
    assert_eq!(
        hosts(&t),
        ["https://from-cwd.example.com"],
        "then ./cme-exec.toml"
    );

    fs::remove_file(t.work_dir().join("cme-exec.toml")).unwrap();
    t.run_args(args!["--", child]).assert_success();
    assert_eq!(
        hosts(&t),
        ["https://from-xdg.example.com"],
        "then $XDG_CONFIG_HOME/cme-exec/config.toml"
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 125, a message that names the place, never the secret
// ---------------------------------------------------------------------------------------------

/// Runs `-- <touch marker>` with `config` and expects exit 125, no child, every `needle` in
/// stderr (case-insensitive), and (by the harness) no sentinel in the output.
#[track_caller]
fn assert_config_error(t: Test, needles: &[&str]) {
    // Some of these configs hold a pasted secret on purpose.
    let config = t.config_path();
    let t = t.allow_secret_in(config);
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let out = t.run_args(args!["--", child]);
    out.assert_code(125);
    assert!(
        !marker.exists(),
        "the child must not start on a configuration error\n{}",
        out.describe()
    );
    let stderr = out.stderr.to_lowercase();
    for needle in needles {
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "the error should name {needle:?}\n{}",
            out.describe()
        );
    }
    assert!(
        out.stderr.contains("error"),
        "errors are printed as `error: ...`\n{}",
        out.describe()
    );
    t.assert_clean();
}

#[test]
fn malformed_toml_with_a_pasted_secret_is_not_echoed() {
    let mut t = Test::new();
    let secret = t.sentinel("pasted");
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\napi_token = {secret}\n"
    ));
    assert_config_error(t, &["cme-exec.toml"]);
}

#[test]
fn a_literal_secret_is_refused_as_not_a_reference() {
    let mut t = Test::new();
    let secret = t.sentinel("literal");
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_X\"\napi_token = {}\n",
        q(&secret)
    ));
    let t = t.env("CME_TEST_X", "x");
    assert_config_error(t, &["cme-exec.toml", "api_token", "company.atlassian.net"]);
}

#[test]
fn unknown_top_level_key() {
    let t = Test::new().config_toml("colour = \"blue\"\n");
    assert_config_error(t, &["cme-exec.toml", "colour"]);
}

#[test]
fn unknown_key_in_an_instance_table() {
    let t = Test::new().config_toml(
        "[confluence.\"https://company.atlassian.net\"]\npasswd = \"env://CME_TEST_X\"\n",
    );
    assert_config_error(t, &["cme-exec.toml", "passwd", "company.atlassian.net"]);
}

#[test]
fn unknown_key_in_the_cme_table() {
    let t = Test::new().config_toml(
        "[confluence.\"https://company.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n\n[cme]\nbase_cfg = \"/x.json\"\n",
    );
    assert_config_error(t, &["cme-exec.toml", "base_cfg"]);
}

#[test]
fn unknown_scheme() {
    let t = Test::new().config_toml(
        "[confluence.\"https://company.atlassian.net\"]\npat = \"nosuchstore://a/b#c\"\n",
    );
    assert_config_error(t, &["cme-exec.toml", "nosuchstore", "pat"]);
}

#[test]
fn malformed_reference() {
    let t = Test::new().config_toml(
        "[confluence.\"https://company.atlassian.net\"]\napi_token = \"env://\"\nusername = \"env://CME_TEST_X\"\n",
    );
    assert_config_error(t, &["cme-exec.toml", "company.atlassian.net", "api_token"]);
}

#[test]
fn duplicate_instances_after_normalisation() {
    let t = Test::new().env("CME_TEST_X", "x").config_toml(
        "[confluence.\"https://X.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n\n[confluence.\"https://x.atlassian.net/\"]\npat = \"env://CME_TEST_X\"\n",
    );
    assert_config_error(t, &["cme-exec.toml", "x.atlassian.net"]);
}

#[test]
fn an_instance_key_with_user_info() {
    let mut t = Test::new();
    let password = t.sentinel("url-password");
    let t = t.env("CME_TEST_X", "x").config_toml(&format!(
        "[confluence.\"https://bob:{password}@x.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n"
    ));
    assert_config_error(t, &["cme-exec.toml", "x.atlassian.net"]);
}

#[test]
fn a_missing_environment_variable() {
    let missing = var_name("MISSING");
    let t = Test::new().config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\npat = \"env://{missing}\"\n"
    ));
    assert_config_error(t, &[&missing, "pat", "company.atlassian.net"]);
}

#[test]
fn a_missing_file() {
    let t = Test::new();
    let missing = t.path().join("secrets/nope.json");
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\npat = {}\n",
        q(&format!("{}#pat", file_ref(&missing)))
    ));
    assert_config_error(t, &[&missing.display().to_string(), "pat"]);
}

#[test]
fn a_missing_json_key() {
    let mut t = Test::new();
    let other = t.sentinel("other-field");
    let file = t.secret_file(
        "creds.json",
        serde_json::json!({ "pat": other }).to_string(),
    );
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\napi_token = {}\nusername = \"env://CME_TEST_X\"\n",
        q(&format!("{}#no_such_key", file_ref(&file)))
    ));
    let t = t.env("CME_TEST_X", "x");
    assert_config_error(t, &["no_such_key", "api_token"]);
}

#[test]
fn an_empty_value() {
    let empty = var_name("EMPTY");
    let t = Test::new().env(&empty, "").config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\npat = \"env://{empty}\"\n"
    ));
    assert_config_error(t, &[&empty, "empty"]);
}

#[test]
fn a_config_file_others_can_write_is_refused() {
    let t = Test::new().env("CME_TEST_X", "x").config_toml(
        "[confluence.\"https://company.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n",
    );
    fs::set_permissions(t.config_path(), fs::Permissions::from_mode(0o666)).unwrap();
    assert_config_error(t, &["cme-exec.toml"]);
}

// ---------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_reports_ok_for_every_field() {
    let b = basic("https://company.atlassian.net");
    let out = b.t.run_args(["check"]);
    out.assert_success();
    let text = format!("{}\n{}", out.stdout, out.stderr);
    for (field, reference) in [
        ("username", format!("env://{}", b.user_var)),
        ("api_token", file_ref(&b.token_file)),
    ] {
        assert!(
            !ok_lines(&text, &reference).is_empty(),
            "check should print a line for {field} with its reference and `ok`\n{}",
            out.describe()
        );
    }
    b.t.assert_clean();
}

#[test]
fn check_reports_a_failure_and_exits_1() {
    let missing = var_name("MISSING");
    let b = basic_with_extra(
        "https://company.atlassian.net",
        &format!("\n[jira.\"https://jira.example.com\"]\npat = \"env://{missing}\"\n"),
    );
    let out = b.t.run_args(["check"]);
    out.assert_code(1);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let failed = lines_with(&text, &[&missing]);
    assert!(
        !failed.is_empty() && failed.iter().all(|line| !has_word(line, "ok")),
        "check should name the failed reference with its reason, not `ok`\n{}",
        out.describe()
    );
    assert!(
        !ok_lines(&text, &format!("env://{}", b.user_var)).is_empty(),
        "the fields that resolve are still reported ok\n{}",
        out.describe()
    );

    let out = b.t.run_args(["check", "--format", "json"]);
    out.assert_code(1);
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --format json should print JSON: {e}\n{}",
            out.describe()
        )
    });
    let flat = json.to_string();
    assert!(
        flat.contains(&missing) && flat.contains(&b.user_var),
        "the JSON names the references\n{}",
        out.describe()
    );
    b.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// render
// ---------------------------------------------------------------------------------------------

#[test]
fn render_writes_a_private_complete_file() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let output = b.t.out_dir().join("cme/app_data.json");
    fs::create_dir_all(output.parent().unwrap()).unwrap();
    b.t.run_args(args!["render", "--output", output])
        .assert_success();
    assert_eq!(mode_of(&output), 0o600, "render writes 0600 by default");
    let config: Value = serde_json::from_slice(&fs::read(&output).unwrap()).expect("valid JSON");
    let entry = confluence_entry(&config, url);
    assert_field(entry, "username", &b.user, "the rendered file");
    assert_field(entry, "api_token", &b.token, "the rendered file");

    // Again, with --mode: the file is replaced, and only it is in the directory.
    b.t.run_args(args!["render", "--output", output, "--mode", "0640"])
        .assert_success();
    assert_eq!(mode_of(&output), 0o640, "--mode 0640");
    let names: Vec<_> = fs::read_dir(output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["app_data.json"],
        "no temporary file is left next to the output"
    );
    b.t.assert_clean();
}

#[test]
fn render_refuses_a_symlink_at_the_output_path() {
    let b = basic("https://company.atlassian.net");
    let target = b.t.path().join("victim.txt");
    fs::write(&target, "original").unwrap();
    let link = b.t.out_dir().join("app_data.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = b.t.run_args(args!["render", "--output", link]);
    out.assert_code(125);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "original",
        "the link target is untouched"
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself is left as it was"
    );
    b.t.assert_clean();
}

#[test]
fn render_to_stdout_needs_force_stdout() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let out = b.t.run_args(["render", "--output", "-"]);
    assert_ne!(
        out.code(),
        Some(0),
        "`--output -` without --force-stdout is refused\n{}",
        out.describe()
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is written to stdout when refused"
    );

    let t = b.t.allow_secrets_in_stdout();
    let out = t.run_args(["render", "--output", "-", "--force-stdout"]);
    assert_eq!(
        out.code(),
        Some(0),
        "render --force-stdout: {}",
        redact(&out.stderr)
    );
    let config: Value = serde_json::from_str(&out.stdout).expect("render prints JSON");
    assert_field(
        confluence_entry(&config, url),
        "api_token",
        &b.token,
        "render --force-stdout",
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// explain, completions, man
// ---------------------------------------------------------------------------------------------

#[test]
fn explain_shows_where_values_come_from() {
    let b = basic("https://company.atlassian.net");
    let out = b.t.run_args(["explain"]);
    out.assert_success();
    out.assert_stdout_contains(&format!("env://{}", b.user_var))
        .assert_stdout_contains(&file_ref(&b.token_file));
    let out = b.t.run_args(["explain", "--format", "json"]);
    out.assert_success();
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain --format json should print JSON: {e}\n{}",
            out.describe()
        )
    });
    assert!(json.to_string().contains(&b.user_var), "{}", out.describe());
    b.t.assert_clean();
}

#[test]
fn completions_and_man_page() {
    let t = Test::new();
    let out = t.run_args(["completions", "bash"]);
    out.assert_success();
    assert!(out.stdout.contains("cme-exec"), "{}", out.describe());
    let out = t.run_args(["man"]);
    out.assert_success();
    assert!(
        out.stdout.contains(".TH"),
        "man prints a roff page\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// The schema cme-exec validates against (`src/cme_config/cme-schema.json`) is the one the
/// installed cme produces: upgrading cme without regenerating it fails here, with the fix.
#[test]
fn embedded_cme_schema_matches_the_installed_cme() {
    let venv = Venv::get();
    let out = std::process::Command::new(repo_root().join("scripts/update-cme-schema"))
        .arg("--check")
        .env("CME_PYTHON", venv.python())
        .output()
        .expect("scripts/update-cme-schema runs");
    assert!(
        out.status.success(),
        "the embedded cme schema differs from the installed cme's; run scripts/update-cme-schema\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--via file` refuses a root others can write to without the sticky bit (another user could
/// swap the private directory for one of theirs), and accepts a sticky one like `/tmp`.
#[test]
fn via_file_refuses_a_root_others_can_write() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let marker = b.t.out_dir().join("child-ran");
    let child = b.t.script("touch", &scripts::touch(&marker));
    let open = b.t.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let out =
        b.t.run_args(args!["run", "--via", "file", "--dir", &open, "--", &child]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    out.assert_stderr_contains("no sticky bit");
    assert!(!marker.exists(), "the child must not start");
    assert_dir_empty(&open);

    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    b.t.run_args(args!["run", "--via", "file", "--dir", &open, "--", &child])
        .assert_success();
    assert!(marker.exists());
    assert_dir_empty(&open);
    b.t.assert_clean();
}
