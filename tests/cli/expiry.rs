//! Token expiry warnings: `expires_at` as a sibling key in a file document,
//! Vault KV v2 `custom_metadata` (no extra request: it comes with the value) and an AWS Secrets
//! Manager tag (a request of its own, made by `check` only); `check` shows the days left and
//! warns inside the window, `check --fail-within DAYS` fails, `run` warns and still runs.

use std::ffi::OsStr;

use serde_json::{json, Value};

use crate::support::moto::Moto;
use crate::support::openbao::OpenBao;
use crate::support::*;
use crate::{file_ref, q};

/// An RFC 3339 UTC time `days` days (plus an hour, so the day count is exact) from now.
fn in_days(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = now + days * 86_400 + 3600;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn line<'a>(out: &'a Output, needle: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}: {}", out.describe()))
}

/// A sibling `expires_at` key in a file document (for `#api_token`, and inside a `from`
/// object): days left, a warning inside 14 days, `--fail-within`, and `run`'s warning.
#[test]
fn a_sibling_expires_at_key_is_shown_warned_and_fails_on_request() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let soon = in_days(5);
    let later = in_days(40);
    let doc = t.secret_file(
        "wiki.json",
        json!({ "username": "me@example.org", "api_token": token, "expires_at": soon }).to_string(),
    );
    let jira = t.secret_file(
        "jira.json",
        json!({ "pat": pat, "expires_at": later }).to_string(),
    );
    let marker = t.out_dir().join("ran");
    let child = t.script("mark", &scripts::touch(&marker));
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = {}\napi_token = {}\n\n[jira.\"https://jira.example.org\"]\nfrom = {}\n",
        q(format!("{}#username", file_ref(&doc))),
        q(format!("{}#api_token", file_ref(&doc))),
        q(file_ref(&jira)),
    ));

    let out = t.run_args(["check"]);
    out.assert_success();
    let l = line(&out, "api_token");
    assert!(
        l.contains(&format!(
            "ok; WARNING: expires {soon} (expires_at key; in 5 days)"
        )),
        "{l}"
    );
    let l = line(&out, "[jira.");
    assert!(
        l.contains(&format!("ok; expires {later} (expires_at key; in 40 days)")),
        "{l}"
    );
    assert!(!l.contains("WARNING"), "{l}");

    let out = t.run_args(["check", "--warn-within", "3"]);
    assert!(!line(&out, "api_token").contains("WARNING"));

    let out = t.run_args(["check", "--fail-within", "7"]);
    out.assert_code(1);
    assert!(line(&out, "api_token").contains("FAILED: expires"));
    out.assert_stdout_contains("2 credentials expire within 7 days (--fail-within)");
    let out = t.run_args(["check", "--format", "json", "--fail-within", "60"]);
    out.assert_code(1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let fields = v["fields"].as_array().unwrap();
    let token_field = fields.iter().find(|f| f["field"] == "api_token").unwrap();
    assert_eq!(token_field["expires"]["days_left"], 5);
    assert_eq!(token_field["expires"]["source"], "expires_at key");

    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "warning: [confluence.\"https://company.atlassian.net\"] api_token ({}#api_token): expires {soon}",
        file_ref(&doc)
    ));
    assert!(
        !out.stderr.contains("[jira."),
        "40 days is outside the window"
    );
    assert!(marker.exists(), "run still runs");
    t.assert_clean();
}

/// Vault KV v2 `custom_metadata.expires_at`: read with the value (no request to the metadata
/// endpoint), so `run` warns too.
#[test]
fn vault_custom_metadata_expiry_costs_no_request() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let token = t.sentinel("vault-token");
    let bao = OpenBao::start();
    bao.policy(
        "reader",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    );
    bao.token_with_id(&token, &["reader"]);
    bao.kv2_put("secret", "jira", json!({ "pat": pat }));
    let soon = in_days(2);
    bao.ok(
        "POST",
        "secret/metadata/jira",
        json!({ "custom_metadata": { "expires_at": soon, "owner": "team-docs" } }),
    );
    let child = t.script("ok", "#!/bin/sh\nexit 0\n");
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", &token)
        .config_toml("[jira.\"https://jira.example.org\"]\npat = \"vault://secret/jira#pat\"\n");
    let mark = bao.audit_mark();
    let out = t.run_args(["check"]);
    out.assert_success();
    assert!(
        line(&out, "pat").contains(&format!(
            "WARNING: expires {soon} (Vault custom_metadata; in 2 days)"
        )),
        "{}",
        out.stdout
    );
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "expires {soon} (Vault custom_metadata; in 2 days)"
    ));
    let paths: Vec<String> = bao
        .requests_since(mark)
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !paths.iter().any(|p| p.contains("/metadata/")),
        "the metadata endpoint was called: {paths:?}"
    );
    t.assert_clean();
}

/// An AWS Secrets Manager tag `expires_at`: `check` asks for it (DescribeSecret); `run` does
/// not (it would cost a request per secret), so it has no warning to give.
#[test]
fn an_aws_tag_expiry_is_read_by_check_only() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let secret_key = t.sentinel("aws-secret-key");
    let moto = Moto::start();
    for (k, v) in Moto::aws_env(&moto.endpoint(), &secret_key) {
        t = t.env(k, v);
    }
    let soon = in_days(1);
    moto.secretsmanager(
        "CreateSecret",
        json!({
            "Name": "prod/jira",
            "SecretString": json!({ "pat": pat }).to_string(),
            "Tags": [{ "Key": "expires_at", "Value": soon }],
        }),
    );
    let child = t.script("ok", "#!/bin/sh\nexit 0\n");
    let t =
        t.config_toml("[jira.\"https://jira.example.org\"]\npat = \"aws-sm://prod/jira#pat\"\n");
    let out = t.run_args(["check"]);
    out.assert_success();
    assert!(
        line(&out, "pat").contains(&format!("WARNING: expires {soon} (AWS tag; in 1 day)")),
        "{}",
        out.stdout
    );
    let out = t.run_args(["check", "--fail-within", "2"]);
    out.assert_code(1);
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_success();
    assert!(
        !out.stderr.contains("expires"),
        "run made a DescribeSecret: {}",
        out.stderr
    );
    t.assert_clean();
}
