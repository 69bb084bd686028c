//! The `vault` provider against a real OpenBao dev server (one per test, see
//! `support/openbao.rs`): KV v1 and v2, versions, mounts, every auth method, login tokens revoked
//! after the run, request counts from the audit log, concurrency, TLS, the real cme as the child,
//! and faults (server down, hanging, 503s, redirects) through stand-ins.
//!
//! Every token, secret id, password and secret value is a sentinel, so the harness's leak checks
//! on stdout and stderr cover them; login tokens (made by OpenBao) are checked by their absence
//! from OpenBao after the run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::openbao::{Action, Audited, OpenBao, StandIn, TcpCounter};
use crate::support::scripts;
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A policy that reads every KV path these tests use, except `secret/private`.
const READER: &str = r#"
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/private" { capabilities = ["deny"] }
path "legacy/*" { capabilities = ["read"] }
path "team-kv/data/*" { capabilities = ["read"] }
path "apps/kv/data/*" { capabilities = ["read"] }
"#;

/// A server with the `reader` policy and a user token (a sentinel of `t`) holding it.
fn server_with_token(t: &mut Test) -> (OpenBao, String) {
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let token = t.sentinel("vault-token");
    bao.token_with_id(&token, &["reader"]);
    (bao, token)
}

/// How many audited requests had this operation and path.
fn count(requests: &[Audited], operation: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.operation == operation && r.path == path)
        .count()
}

/// Asserts that the child never ran (the marker script would have created `marker`).
#[track_caller]
fn assert_not_started(marker: &Path, out: &Output) {
    assert!(
        !marker.exists(),
        "the child ran although resolution failed\n{}",
        out.describe()
    );
}

/// Seconds since the epoch, for JWT claims.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs()
}

/// Enables AppRole with role `cme` (reader policy), sets its role id and a custom secret id;
/// returns (role_id, secret_id); the secret id is a sentinel of `t`.
pub(crate) fn approle(bao: &OpenBao, t: &mut Test) -> (String, String) {
    bao.enable_auth("approle", "approle");
    bao.ok(
        "POST",
        "auth/approle/role/cme",
        json!({ "token_policies": ["reader"], "token_ttl": "5m" }),
    );
    // A role id is not a secret (the config may hold it literally): unique, not a sentinel.
    let role_id = format!("role-{}", crate::support::secrets::random_hex());
    let secret_id = t.sentinel("secret-id");
    bao.ok(
        "POST",
        "auth/approle/role/cme/role-id",
        json!({ "role_id": role_id }),
    );
    bao.ok(
        "POST",
        "auth/approle/role/cme/custom-secret-id",
        json!({ "secret_id": secret_id }),
    );
    (role_id, secret_id)
}

/// One Confluence instance whose username and API token come from `secret/cme`.
fn cme_instance(url: &str, scheme: &str) -> String {
    format!(
        "[confluence.{url}]\nusername = {user}\napi_token = {token}\n",
        url = q(url),
        user = q(format!("{scheme}://secret/cme#username")),
        token = q(format!("{scheme}://secret/cme#api_token")),
    )
}

/// Puts `{username, api_token}` (new sentinels of `t`) at `secret/cme`.
fn put_cme_secret(bao: &OpenBao, t: &mut Test) -> (String, String) {
    let user = t.sentinel("user");
    let token = t.sentinel("api-token");
    bao.kv2_put(
        "secret",
        "cme",
        json!({ "username": user, "api_token": token }),
    );
    (user, token)
}

/// Runs a login test: the config's provider logs in with `auth_toml`, reads `secret/cme`, hands
/// it to a child; afterwards the login token no longer exists and the audit log shows one
/// login, one read and one revocation. Returns the test (for more checks) and the child's env.
fn login_run(bao: &OpenBao, mut t: Test, auth_toml: &str, login_path: &str) -> Test {
    let (user, token) = put_cme_secret(bao, &mut t);
    let url = "https://company.atlassian.net";
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {addr}\nkv_version = 2\nauth = {auth_toml}\n\n{instance}",
        addr = q(bao.address()),
        instance = cme_instance(url, "vault"),
    );
    let t = t.config_toml(&config);
    let child = dump_env_child(&t);
    let before = bao.accessors();
    let mark = bao.audit_mark();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_success();
    let config = t.child_env().config_json();
    assert_config_field(&config, "confluence", url, "username", &user);
    assert_config_field(&config, "confluence", url, "api_token", &token);
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", login_path),
            count(&requests, "read", "secret/data/cme"),
            count(&requests, "update", "auth/token/revoke-self"),
            requests.len()
        ),
        (1, 1, 1, 3),
        "expected one login, one read (two fields of one document) and one revocation:\n{}",
        audit_listing(&requests)
    );
    assert_eq!(
        bao.accessors(),
        before,
        "the login token still exists after the run (it must be revoked)"
    );
    t
}

// ---------------------------------------------------------------------------------------------
// KV v2, v1, versions, mounts, documents
// ---------------------------------------------------------------------------------------------

/// KV v2 latest and pinned versions, `from` with a whole document, the built-in `vault` scheme
/// configured from VAULT_ADDR and VAULT_TOKEN (which the child does not get), and each distinct
/// document read once, the mount's KV version detected once.
#[test]
fn vault_kv2_latest_pinned_version_and_whole_document() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let user = t.sentinel("user");
    let old = t.sentinel("token-v1");
    let new = t.sentinel("token-v2");
    let wiki_user = t.sentinel("wiki-user");
    let wiki_pat = t.sentinel("wiki-pat");
    assert_eq!(
        bao.kv2_put(
            "secret",
            "atlassian",
            json!({ "username": user, "api_token": old })
        ),
        1
    );
    assert_eq!(
        bao.kv2_put(
            "secret",
            "atlassian",
            json!({ "username": user, "api_token": new })
        ),
        2
    );
    bao.kv2_put(
        "secret",
        "wiki",
        json!({ "username": wiki_user, "pat": wiki_pat }),
    );
    let config = r#"
[confluence."https://latest.example.com"]
username = "vault://secret/atlassian#username"
api_token = "vault://secret/atlassian#api_token"

[confluence."https://pinned.example.com"]
username = "vault://secret/atlassian?version=1#username"
api_token = "vault://secret/atlassian?version=1#api_token"

[jira."https://jira.example.com"]
from = "vault://secret/wiki"
"#;
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", &token)
        .env("BAO_TOKEN", &token)
        .config_toml(config);
    let child = dump_env_child(&t);
    let mark = bao.audit_mark();
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();

    let env = t.child_env();
    let config = env.config_json();
    assert_config_field(
        &config,
        "confluence",
        "https://latest.example.com",
        "api_token",
        &new,
    );
    assert_config_field(
        &config,
        "confluence",
        "https://pinned.example.com",
        "api_token",
        &old,
    );
    assert_config_field(
        &config,
        "confluence",
        "https://pinned.example.com",
        "username",
        &user,
    );
    assert_config_field(
        &config,
        "jira",
        "https://jira.example.com",
        "username",
        &wiki_user,
    );
    assert_config_field(
        &config,
        "jira",
        "https://jira.example.com",
        "pat",
        &wiki_pat,
    );
    for name in ["VAULT_TOKEN", "BAO_TOKEN"] {
        assert!(env.var(name).is_none(), "the child received {name}");
    }
    assert_no_leak_in("the child's environment", &env.raw_env, &token);
    assert_eq!(env.var("VAULT_ADDR"), Some(bao.address().as_str()));

    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "read", "sys/internal/ui/mounts/secret"),
            count(&requests, "read", "secret/data/atlassian"),
            count(&requests, "read", "secret/data/wiki"),
            requests.len(),
        ),
        (1, 2, 1, 4),
        "expected one KV version detection for `secret`, the two versions of atlassian and wiki:\n{}",
        audit_listing(&requests)
    );
    assert!(
        bao.token_valid(&token),
        "a token the user supplied must never be revoked"
    );
    t.assert_clean();
}

/// Two fields of one document cost one read, and with `kv_version = 2` nothing else.
#[test]
fn vault_two_fields_of_one_document_cost_one_read() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let (user, api_token) = put_cme_secret(&bao, &mut t);
    let url = "https://company.atlassian.net";
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"token\" }}\n\n{}",
        q(bao.address()),
        cme_instance(url, "vault")
    );
    let t = t.env("VAULT_TOKEN", &token).config_toml(&config);
    let child = dump_env_child(&t);
    let mark = bao.audit_mark();
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    let config = t.child_env().config_json();
    assert_config_field(&config, "confluence", url, "username", &user);
    assert_config_field(&config, "confluence", url, "api_token", &api_token);
    let requests = bao.requests_since(mark);
    assert_eq!(
        (count(&requests, "read", "secret/data/cme"), requests.len()),
        (1, 1),
        "two fields of one document must cost exactly one request:\n{}",
        audit_listing(&requests)
    );
    t.assert_clean();
}

/// A KV v1 mount: detected (one preflight), or declared in `kv_mounts` (none); a custom KV v2
/// mount and a nested mount through a named provider whose token comes from `token_file`.
#[test]
fn vault_kv1_custom_and_nested_mounts() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    bao.mount("legacy", "kv", json!({ "version": "1" }));
    bao.mount("team-kv", "kv", json!({ "version": "2" }));
    bao.mount("apps/kv", "kv", json!({ "version": "2" }));
    let v1_pat = t.sentinel("v1-pat");
    let team_pat = t.sentinel("team-pat");
    let nested_pat = t.sentinel("nested-pat");
    bao.kv1_put("legacy", "jira", json!({ "pat": v1_pat }));
    bao.kv2_put("team-kv", "jira/prod", json!({ "pat": team_pat }));
    bao.kv2_put("apps/kv", "jira", json!({ "pat": nested_pat }));
    let token_file = t.secret_file("vault-token", format!("{token}\n"));
    let config = format!(
        r#"
[providers.corp]
kind = "vault"
address = {addr}
kv_mounts = {{ "apps/kv" = 2 }}
auth = {{ method = "token", token_file = {token_file} }}

[jira."https://detected.example.com"]
pat = "corp://legacy/jira#pat"

[jira."https://team.example.com"]
pat = "corp://team-kv/jira/prod#pat"

[jira."https://nested.example.com"]
pat = "corp://apps/kv/jira#pat"
"#,
        addr = q(bao.address()),
        token_file = q(token_file.display().to_string()),
    );
    let t = t.config_toml(&config);
    let child = dump_env_child(&t);
    let mark = bao.audit_mark();
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    let config = t.child_env().config_json();
    assert_config_field(
        &config,
        "jira",
        "https://detected.example.com",
        "pat",
        &v1_pat,
    );
    assert_config_field(
        &config,
        "jira",
        "https://team.example.com",
        "pat",
        &team_pat,
    );
    assert_config_field(
        &config,
        "jira",
        "https://nested.example.com",
        "pat",
        &nested_pat,
    );
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "read", "sys/internal/ui/mounts/legacy"),
            count(&requests, "read", "legacy/jira"),
            count(&requests, "read", "sys/internal/ui/mounts/team-kv"),
            count(&requests, "read", "team-kv/data/jira/prod"),
            count(&requests, "read", "apps/kv/data/jira"),
            requests.len(),
        ),
        (1, 1, 1, 1, 1, 5),
        "the nested mount is declared (no detection); the others are detected once each:\n{}",
        audit_listing(&requests)
    );

    // Declared as KV v1: no detection at all.
    let t2 = Test::new();
    let config = format!(
        "[providers.old]\nkind = \"vault\"\naddress = {}\nkv_mounts = {{ legacy = 1 }}\nauth = {{ method = \"token\" }}\n\n[jira.\"https://jira.example.com\"]\npat = \"old://legacy/jira#pat\"\n",
        q(bao.address())
    );
    let t2 = t2.env("VAULT_TOKEN", &token).config_toml(&config);
    let mark = bao.audit_mark();
    t2.run_args(["check"]).assert_success();
    let requests = bao.requests_since(mark);
    assert_eq!(
        (count(&requests, "read", "legacy/jira"), requests.len()),
        (1, 2),
        "a declared KV v1 mount needs no detection (the other request is check's lookup-self):\n{}",
        audit_listing(&requests)
    );
    t.assert_clean();
    t2.assert_clean();
}

/// A missing path, a missing key, a denied path, a deleted version, a version on KV v1 and a
/// missing mount: every failure is listed with its reference and Vault's status and `errors`,
/// nothing starts, exit 125; `check` says the same and exits 1.
#[test]
fn vault_failures_are_all_listed_and_nothing_starts() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    bao.mount("legacy", "kv", json!({ "version": "1" }));
    let present = t.sentinel("present");
    let private = t.sentinel("private");
    bao.kv2_put("secret", "app", json!({ "token": present }));
    bao.kv2_put("secret", "private", json!({ "token": private }));
    bao.kv2_put("secret", "gone", json!({ "token": present }));
    bao.ok("DELETE", "secret/data/gone", Value::Null);
    bao.kv1_put("legacy", "app", json!({ "token": present }));
    let config = r#"
[confluence."https://a.example.com"]
pat = "vault://secret/missing#token"
[confluence."https://b.example.com"]
pat = "vault://secret/app#nope"
[confluence."https://c.example.com"]
pat = "vault://secret/private#token"
[confluence."https://d.example.com"]
pat = "vault://secret/gone?version=1#token"
[confluence."https://e.example.com"]
pat = "vault://legacy/app?version=2#token"
[confluence."https://f.example.com"]
pat = "vault://nomount/app#token"
"#;
    let marker = t.out_dir().join("child-ran");
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", &token)
        .config_toml(config);
    let child = t.script("touch", &scripts::touch(&marker));
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    for (reference, reason) in [
        (
            "vault://secret/missing#token",
            "no secret at secret/missing (KV v2): Vault at",
        ),
        ("vault://secret/app#nope", "no key `nope`"),
        ("vault://secret/private#token", "403 (permission denied)"),
        (
            "vault://secret/gone?version=1#token",
            "this version was deleted",
        ),
        ("vault://legacy/app?version=2#token", "keeps no versions"),
        (
            "vault://nomount/app#token",
            "reading nomount/app: the KV version lookup of mount `nomount`",
        ),
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(reference) && l.contains(reason)),
            "expected a line with {reference} and {reason:?}\n{}",
            out.describe()
        );
    }
    let check = t.run_args(["check"]);
    check.assert_code(1);
    assert!(
        check
            .stdout
            .lines()
            .any(|l| l.contains("vault://secret/private#token") && l.contains("permission denied")),
        "check names the denied reference\n{}",
        check.describe()
    );
    t.assert_no_leaks_in("check's stdout", &check.stdout);
    t.assert_clean();
}

/// `check` shows who the provider was: address, auth method, the token's accessor, policies,
/// display name and TTL left (from auth/token/lookup-self). Never the token.
#[test]
fn vault_check_shows_the_identity_used() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    put_cme_secret(&bao, &mut t);
    let accessor = bao
        .ok("POST", "auth/token/lookup", json!({ "token": token }))
        .pointer("/data/accessor")
        .and_then(Value::as_str)
        .expect("the token's accessor")
        .to_owned();
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", &token)
        .config_toml(&cme_instance("https://company.atlassian.net", "vault"));
    let out = t.run_args(["check"]);
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("provider vault"))
        .unwrap_or_else(|| panic!("no provider line\n{}", out.describe()));
    for fact in [
        format!("accessor={accessor}"),
        "policies=default,reader".to_owned(),
        "display_name=token".to_owned(),
        "auth=token".to_owned(),
        format!("address={}", bao.address()),
        "ttl=".to_owned(),
    ] {
        assert!(line.contains(&fact), "expected {fact:?} in {line:?}");
    }
    let json_out = t.run_args(["check", "--format", "json"]);
    json_out.assert_success();
    let parsed: Value = serde_json::from_str(&json_out.stdout).expect("check --format json");
    assert!(
        parsed.to_string().contains(&accessor),
        "the JSON report names the accessor\n{}",
        json_out.describe()
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Auth methods
// ---------------------------------------------------------------------------------------------

/// The user's token from VAULT_TOKEN, BAO_TOKEN, `~/.vault-token`, `token_env`; never revoked.
#[test]
fn vault_token_from_each_source_is_used_and_never_revoked() {
    let mut setup = Test::new();
    let (bao, token) = server_with_token(&mut setup);
    let url = "https://company.atlassian.net";
    for source in [
        "VAULT_TOKEN",
        "BAO_TOKEN",
        "~/.vault-token",
        "token_env",
        "token_file",
    ] {
        let mut t = Test::new();
        let (user, _) = put_cme_secret(&bao, &mut t);
        let token_file = t.secret_file("token", format!("{token}\n"));
        let provider = match source {
            "token_env" => format!(
                "[providers.vault]\nkind = \"vault\"\naddress = {}\nauth = {{ method = \"token\", token_env = \"MY_VAULT_TOKEN\" }}\n\n",
                q(bao.address())
            ),
            "token_file" => format!(
                "[providers.vault]\nkind = \"vault\"\naddress = {}\nauth = {{ method = \"token\", token_file = {} }}\n\n",
                q(bao.address()),
                q(token_file.display().to_string())
            ),
            _ => String::new(),
        };
        let mut t = t
            .env("VAULT_ADDR", bao.address())
            .config_toml(&format!("{provider}{}", cme_instance(url, "vault")));
        t = match source {
            "VAULT_TOKEN" => t.env("VAULT_TOKEN", &token),
            "BAO_TOKEN" => t.env("BAO_TOKEN", &token),
            "token_env" => t.env("MY_VAULT_TOKEN", &token),
            "token_file" => t,
            _ => t.file(".vault-token", format!("{token}\n")),
        };
        let child = dump_env_child(&t);
        let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
        out.assert_success();
        let env = t.child_env();
        assert_config_field(&env.config_json(), "confluence", url, "username", &user);
        assert_no_leak_in(
            &format!("the child's environment ({source})"),
            &env.raw_env,
            &token,
        );
        assert!(
            bao.token_valid(&token),
            "{source}: the user's token was revoked"
        );
        // `~/.vault-token` is the user's own file: it stays.
        if source == "~/.vault-token" {
            assert!(t.path().join(".vault-token").exists());
        }
    }
    // No token anywhere: a clear error, no fallback.
    let t = Test::new()
        .env("VAULT_ADDR", bao.address())
        .config_toml(&cme_instance(url, "vault"));
    let out = t.run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("no Vault token");
}

/// AppRole: role_id from a file, secret_id from a variable (which the child does not get); one
/// login for three documents; the login token is revoked; `-vvv` and `RUST_LOG=trace` show no
/// credential.
#[test]
fn vault_approle_logs_in_once_and_revokes_its_token() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = approle(&bao, &mut t);
    let pats: Vec<String> = (0..3).map(|i| t.sentinel(&format!("pat-{i}"))).collect();
    for (i, pat) in pats.iter().enumerate() {
        bao.kv2_put("secret", &format!("jira-{i}"), json!({ "pat": pat }));
    }
    let role_file = t.secret_file("role-id", format!("{role_id}\n"));
    let mut config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nauth = {{ method = \"approle\", role_id_file = {}, secret_id_env = \"CME_TEST_SECRET_ID\" }}\n",
        q(bao.address()),
        q(role_file.display().to_string())
    );
    for i in 0..3 {
        config.push_str(&format!(
            "\n[jira.\"https://jira{i}.example.com\"]\npat = \"vault://secret/jira-{i}#pat\"\n"
        ));
    }
    let t = t
        .env("CME_TEST_SECRET_ID", &secret_id)
        .env("RUST_LOG", "trace")
        .global_arg("-vvv")
        .config_toml(&config);
    let child = dump_env_child(&t);
    let before = bao.accessors();
    let mark = bao.audit_mark();
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    let env = t.child_env();
    let config = env.config_json();
    for (i, pat) in pats.iter().enumerate() {
        assert_config_field(
            &config,
            "jira",
            &format!("https://jira{i}.example.com"),
            "pat",
            pat,
        );
    }
    assert!(
        env.var("CME_TEST_SECRET_ID").is_none(),
        "the child received the secret_id variable"
    );
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "read", "sys/internal/ui/mounts/secret"),
            (0..3)
                .map(|i| count(&requests, "read", &format!("secret/data/jira-{i}")))
                .sum::<usize>(),
            count(&requests, "update", "auth/token/revoke-self"),
            requests.len(),
        ),
        (1, 1, 3, 1, 6),
        "one login, one detection, three reads, one revocation:\n{}",
        audit_listing(&requests)
    );
    assert_eq!(
        bao.accessors(),
        before,
        "the AppRole login token still exists"
    );
    t.assert_clean();
}

/// A wrong secret id: Vault's reason and status, a hint, exit 125, nothing started.
#[test]
fn vault_approle_with_a_wrong_secret_id_is_denied() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, _) = approle(&bao, &mut t);
    let wrong = t.sentinel("wrong-secret-id");
    put_cme_secret(&bao, &mut t);
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"SID\" }}\n\n{}",
        q(bao.address()),
        q(&role_id),
        cme_instance("https://company.atlassian.net", "vault")
    );
    let marker = t.out_dir().join("child-ran");
    let t = t.env("SID", &wrong).config_toml(&config);
    let child = t.script("touch", &scripts::touch(&marker));
    let mark = bao.audit_mark();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains("logging in to");
    out.assert_stderr_contains("with approle at auth/approle");
    out.assert_stderr_contains("answered 400 (invalid role or secret ID)");
    let requests = bao.requests_since(mark);
    assert_eq!(
        count(&requests, "update", "auth/approle/login"),
        1,
        "a refused login is not retried, and not repeated per field:\n{}",
        audit_listing(&requests)
    );
}

/// userpass: the password from a file; the login token is revoked.
#[test]
fn vault_userpass_login_is_revoked() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    bao.enable_auth("userpass", "userpass");
    let password = t.sentinel("password");
    bao.ok(
        "POST",
        "auth/userpass/users/cme",
        json!({ "password": password, "token_policies": ["reader"], "token_ttl": "5m" }),
    );
    let file = t.secret_file("password", format!("{password}\n"));
    let auth = format!(
        "{{ method = \"userpass\", username = \"cme\", password_file = {} }}",
        q(file.display().to_string())
    );
    let t = login_run(&bao, t, &auth, "auth/userpass/login/cme");
    t.assert_clean();
}

/// JWT auth with a key pair made in the test (an OpenBao transit key signs, its public key is the
/// auth method's `jwt_validation_pubkeys`): the JWT from a file, from a variable (GitLab's
/// `id_tokens`), and from a stand-in for the GitHub Actions OIDC endpoint.
#[test]
fn vault_jwt_login_from_file_variable_and_github_actions() {
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let public_key = bao.signing_key("ci");
    bao.enable_auth("jwt", "jwt");
    bao.ok(
        "POST",
        "auth/jwt/config",
        json!({ "jwt_validation_pubkeys": [public_key], "bound_issuer": "https://ci.example.test" }),
    );
    bao.ok(
        "POST",
        "auth/jwt/role/cme",
        json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": ["cme-exec-test"],
            "token_policies": ["reader"],
            "token_ttl": "5m",
        }),
    );
    let jwt = bao.sign_jwt(
        "ci",
        &json!({
            "iss": "https://ci.example.test",
            "sub": "repo:example/docs:ref:refs/heads/main",
            "aud": "cme-exec-test",
            "iat": now() - 10,
            "nbf": now() - 10,
            "exp": now() + 600,
        }),
    );

    // From a file.
    let t = Test::new();
    let file = t.secret_file("jwt", format!("{jwt}\n"));
    let auth = format!(
        "{{ method = \"jwt\", role = \"cme\", jwt_file = {} }}",
        q(file.display().to_string())
    );
    let t = login_run(&bao, t, &auth, "auth/jwt/login");
    assert_no_leak_in("the child's environment", &t.child_env().raw_env, &jwt);
    t.assert_clean();

    // From a variable (GitLab CI: `id_tokens: VAULT_ID_TOKEN: aud: ...`).
    let t = Test::new().env("VAULT_ID_TOKEN", &jwt);
    let t = login_run(
        &bao,
        t,
        "{ method = \"jwt\", role = \"cme\", jwt_env = \"VAULT_ID_TOKEN\" }",
        "auth/jwt/login",
    );
    let env = t.child_env();
    assert!(
        env.var("VAULT_ID_TOKEN").is_none(),
        "the child got the JWT variable"
    );
    assert_no_leak_in("the child's environment", &env.raw_env, &jwt);
    t.assert_clean();

    // From the GitHub Actions OIDC endpoint (a stand-in that checks the bearer and audience).
    let mut t = Test::new();
    let request_token = t.sentinel("gh-request-token");
    let (expected_bearer, minted) = (format!("Bearer {request_token}"), jwt.clone());
    let github = StandIn::start(move |req, _| {
        let authorised = req.header("authorization") == Some(expected_bearer.as_str());
        let audience = req.query_param("audience");
        if req.method == "GET" && authorised && audience.as_deref() == Some("cme-exec-test") {
            Action::json(200, json!({ "count": 1, "value": minted }))
        } else {
            Action::json(
                401,
                json!({ "message": "stand-in: bad bearer or audience" }),
            )
        }
    });
    let t = t
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/_apis/token?api-version=2.0", github.url()),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &request_token);
    let t = login_run(
        &bao,
        t,
        "{ method = \"jwt\", role = \"cme\", github_actions = true, audience = \"cme-exec-test\" }",
        "auth/jwt/login",
    );
    let asked = github.requests();
    assert_eq!(
        asked.len(),
        1,
        "one ID token request expected:\n{}",
        github.summary()
    );
    assert_eq!(asked[0].query_param("api-version").as_deref(), Some("2.0"));
    let env = t.child_env();
    assert!(
        env.var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").is_none(),
        "the child got ACTIONS_ID_TOKEN_REQUEST_TOKEN"
    );
    t.assert_clean();
}

/// Kubernetes auth: OpenBao's `kubernetes_host` is a TokenReview stand-in on loopback that
/// accepts exactly the service-account token cme-exec sends (read from `token_file`).
#[test]
fn vault_kubernetes_login_through_a_tokenreview_stand_in() {
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    bao.signing_key("k8s");
    let uid = "4c4bde0c-8f6a-4d3b-9a0e-3f0c5b7e2a11";
    let sa_token = bao.sign_jwt(
        "k8s",
        &json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": "system:serviceaccount:docs:cme",
            "aud": ["https://kubernetes.default.svc.cluster.local"],
            "iat": now() - 10,
            "nbf": now() - 10,
            "exp": now() + 600,
            "kubernetes.io": {
                "namespace": "docs",
                "serviceaccount": { "name": "cme", "uid": uid },
            },
        }),
    );
    let reviewed = Arc::new(Mutex::new(Vec::<bool>::new()));
    let (expected, seen) = (sa_token.clone(), Arc::clone(&reviewed));
    let k8s = StandIn::start(move |req, _| {
        if req.method != "POST" || req.path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
            return Action::json(404, json!({ "kind": "Status", "code": 404 }));
        }
        let review = req.json();
        let ok = review.pointer("/spec/token").and_then(Value::as_str) == Some(expected.as_str());
        // Like the API server: the token is valid for the audiences asked about.
        let audiences = review
            .pointer("/spec/audiences")
            .cloned()
            .unwrap_or_else(|| json!([]));
        seen.lock().unwrap().push(ok);
        let status = if ok {
            json!({
                "authenticated": true,
                "user": {
                    "username": "system:serviceaccount:docs:cme",
                    "uid": uid,
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:docs"],
                },
                "audiences": audiences,
            })
        } else {
            json!({ "authenticated": false, "error": "stand-in: unknown token" })
        };
        Action::json(
            201,
            json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status }),
        )
    });
    bao.enable_auth("kubernetes", "kubernetes");
    bao.ok(
        "POST",
        "auth/kubernetes/config",
        json!({
            "kubernetes_host": k8s.url(),
            "kubernetes_ca_cert": bao.ca_certificate(),
            "disable_local_ca_jwt": true,
        }),
    );
    bao.ok(
        "POST",
        "auth/kubernetes/role/cme",
        json!({
            "bound_service_account_names": ["cme"],
            "bound_service_account_namespaces": ["docs"],
            "token_policies": ["reader"],
            "token_ttl": "5m",
        }),
    );
    let t = Test::new();
    let file = t.secret_file("sa-token", &sa_token);
    let auth = format!(
        "{{ method = \"kubernetes\", role = \"cme\", token_file = {} }}",
        q(file.display().to_string())
    );
    let t = login_run(&bao, t, &auth, "auth/kubernetes/login");
    assert_eq!(
        *reviewed.lock().unwrap(),
        [true],
        "OpenBao should have asked the TokenReview stand-in once, with our token:\n{}",
        k8s.summary()
    );
    assert_no_leak_in("the child's environment", &t.child_env().raw_env, &sa_token);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Ten documents are read concurrently: through a proxy that holds each read for 400 ms, ten
/// reads are in flight at once and the run takes about one read's time, not ten.
#[test]
fn vault_ten_documents_are_read_concurrently() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let upstream = bao.socket_addr();
    let delay = Duration::from_millis(400);
    let proxy = StandIn::start(move |req, _| {
        let slow = req.path().starts_with("/v1/secret/data/");
        Action::Forward {
            to: upstream,
            delay: if slow { delay } else { Duration::ZERO },
        }
    });
    let mut config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"token\" }}\n",
        q(proxy.url())
    );
    let mut pats = Vec::new();
    for i in 0..10 {
        let pat = t.sentinel(&format!("pat-{i}"));
        bao.kv2_put("secret", &format!("doc-{i}"), json!({ "pat": pat }));
        config.push_str(&format!(
            "\n[jira.\"https://jira{i}.example.com\"]\npat = \"vault://secret/doc-{i}#pat\"\n"
        ));
        pats.push(pat);
    }
    let t = t.env("VAULT_TOKEN", &token).config_toml(&config);
    let child = dump_env_child(&t);
    let start = Instant::now();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    let elapsed = start.elapsed();
    out.assert_success();
    let config = t.child_env().config_json();
    for (i, pat) in pats.iter().enumerate() {
        assert_config_field(
            &config,
            "jira",
            &format!("https://jira{i}.example.com"),
            "pat",
            pat,
        );
    }
    assert_eq!(
        proxy.max_in_flight(),
        10,
        "all ten reads should be in flight at once:\n{}",
        proxy.summary()
    );
    assert!(
        elapsed < delay * 10 / 2,
        "the run took {elapsed:?}; ten reads one after another take at least {:?}",
        delay * 10
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// `-dev-tls`: the CA through VAULT_CACERT works; without it the run fails with a TLS reason and
/// Over https the reads of a run share one connection (HTTP/2, negotiated by
/// ALPN; the first read goes alone so that the others find it), with the token method and a
/// configured KV version, where no login or detection opens the connection first.
#[test]
fn vault_https_reads_share_one_http2_connection() {
    let bao = OpenBao::start_tls();
    let mut t = Test::new();
    let mut config = String::new();
    let mut values = Vec::new();
    for i in 0..10 {
        let value = t.sentinel(&format!("h2-pat{i}"));
        bao.cli_ok(
            &["kv", "put", "-mount=secret", &format!("h2/doc{i}"), "pat=-"],
            Some(&value),
        );
        config.push_str(&format!(
            "[jira.\"https://jira{i}.example.com\"]\npat = \"vault://secret/h2/doc{i}#pat\"\n"
        ));
        values.push(value);
    }
    let counter = TcpCounter::start(bao.socket_addr());
    let address = format!("https://{}", counter.addr());
    let t = t
        .env("VAULT_ADDR", &address)
        .env("VAULT_TOKEN", bao.root_token())
        .env("VAULT_CACERT", bao.ca_cert())
        .env("CME_EXEC_VAULT_KV_VERSION", "2")
        .config_toml(&config);
    let child = dump_env_child(&t);
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    let config = t.child_env().config_json();
    for (i, value) in values.iter().enumerate() {
        assert_config_field(
            &config,
            "jira",
            &format!("https://jira{i}.example.com"),
            "pat",
            value,
        );
    }
    assert_eq!(
        counter.connections(),
        1,
        "the 10 reads should share one HTTP/2 connection"
    );
    t.assert_clean();
}

/// never retries (one connection); `VAULT_SKIP_VERIFY` works with a warning.
#[test]
fn vault_tls_ca_cert_and_failures() {
    let bao = OpenBao::start_tls();
    let mut t = Test::new();
    let value = t.sentinel("tls-pat");
    bao.cli_ok(
        &["kv", "put", "-mount=secret", "tls", "pat=-"],
        Some(&value),
    );
    let config = "[jira.\"https://jira.example.com\"]\npat = \"vault://secret/tls#pat\"\n";
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", bao.root_token())
        .env("VAULT_CACERT", bao.ca_cert())
        .config_toml(config);
    let child = dump_env_child(&t);
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    assert_config_field(
        &t.child_env().config_json(),
        "jira",
        "https://jira.example.com",
        "pat",
        &value,
    );
    t.assert_clean();

    // Without the CA: a TLS failure, one connection only (no retry), nothing started.
    let counter = TcpCounter::start(bao.socket_addr());
    let t = Test::new();
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let t = t
        .env("VAULT_ADDR", format!("https://{}", counter.addr()))
        .env("VAULT_TOKEN", bao.root_token())
        .config_toml(config);
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains("TLS handshake with");
    out.assert_stderr_contains("certificate");
    out.assert_stderr_contains("VAULT_CACERT");
    assert_eq!(
        counter.connections(),
        1,
        "a TLS failure must not be retried"
    );

    // VAULT_SKIP_VERIFY: works, and says loudly that it is unsafe.
    let t = Test::new()
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", bao.root_token())
        .env("VAULT_SKIP_VERIFY", "true")
        .config_toml(config);
    let out = t.run_args(["--", "true"]);
    out.assert_success();
    out.assert_stderr_contains("warning: TLS certificate verification is off");
    out.assert_stderr_contains("VAULT_SKIP_VERIFY");
}

/// Plain http:// is refused for a non-loopback address (no connection is attempted), and there
/// is no silent default address.
#[test]
fn vault_plain_http_only_to_loopback_and_no_default_address() {
    let config = "[providers.vault]\nkind = \"vault\"\naddress = \"http://192.0.2.10:8200\"\n\n[jira.\"https://jira.example.com\"]\npat = \"vault://secret/x#pat\"\n";
    let out = Test::new().config_toml(config).run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("plain http:// is only allowed to a loopback address");

    let config = "[jira.\"https://jira.example.com\"]\npat = \"vault://secret/x#pat\"\n";
    let out = Test::new()
        .env("VAULT_ADDR", "http://192.0.2.10:8200")
        .env("VAULT_TOKEN", "x")
        .config_toml(config)
        .run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("VAULT_ADDR: plain http://");

    let out = Test::new()
        .env("VAULT_TOKEN", "x")
        .config_toml(config)
        .run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("no Vault address");
}

// ---------------------------------------------------------------------------------------------
// The real cme
// ---------------------------------------------------------------------------------------------

/// End to end: AppRole login, the credentials read from OpenBao reach the real cme, which sends
/// them to the Confluence stand-in; the login token is revoked.
#[test]
fn vault_cme_sends_the_credentials_read_from_openbao() {
    let venv = Venv::get();
    let site = ConfluenceStandIn::start();
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = approle(&bao, &mut t);
    let (user, token) = put_cme_secret(&bao, &mut t);
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"VAULT_SECRET_ID\" }}\n\n{}",
        q(bao.address()),
        q(&role_id),
        cme_instance(&site.base_url(), "vault")
    );
    let t = t
        .env("VAULT_SECRET_ID", &secret_id)
        .config_toml(&config)
        .arg("--")
        .arg(venv.cme())
        .args(["pages".to_owned(), site.page_url(123)]);
    let before = bao.accessors();
    let out = t.run();
    out.assert_success();
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{token}")
        )
    );
    let headers = site.authorization_headers();
    assert!(
        !headers.is_empty() && headers.iter().all(|h| *h == expected),
        "cme should send the Basic credentials read from OpenBao\n{}\n{}",
        redact(&site.summary()),
        out.describe()
    );
    assert_eq!(bao.accessors(), before, "the login token still exists");
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// A config with one Vault field at `address` (token auth, KV v2 declared), and a marker child.
fn fault_test(address: &str, token: &str) -> (Test, std::path::PathBuf, std::path::PathBuf) {
    let t = Test::new();
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"token\" }}\n\n[jira.\"https://jira.example.com\"]\npat = \"vault://secret/app#pat\"\n",
        q(address)
    );
    let t = t.env("VAULT_TOKEN", token).config_toml(&config);
    (t, marker, child)
}

/// Server down (connection refused): retried a few times with backoff, then exit 125 quickly.
#[test]
fn vault_server_down() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (t, marker, child) = fault_test(&format!("http://127.0.0.1:{port}"), "x");
    let start = Instant::now();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains(&format!(
        "no answer from Vault at http://127.0.0.1:{port} (3 attempts)"
    ));
    out.assert_stderr_contains("onnection refused");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

/// A server that accepts and never answers: the read gives up just before the overall
/// deadline (--timeout), with an error that names Vault, and the run ends within the deadline.
#[test]
fn vault_hanging_server_hits_the_deadline() {
    let hang = StandIn::start(|_, _| Action::Hang);
    let (t, marker, child) = fault_test(&hang.url(), "x");
    let t = t.global_arg("--timeout").global_arg("2");
    let start = Instant::now();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    let elapsed = start.elapsed();
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains(&format!(
        "reading secret/app (KV v2): no answer from Vault at {}: timed out",
        hang.url()
    ));
    assert_eq!(hang.requests().len(), 1, "no retry fits in the deadline");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
        "the run took {elapsed:?} with a 2 s deadline"
    );

    // Without a deadline that short, a hung request times out after `timeout` and is retried.
    let hang = StandIn::start(|_, _| Action::Hang);
    let (t, marker, child) = fault_test(&hang.url(), "x");
    let config = std::fs::read_to_string(t.config_path()).unwrap().replace(
        "kv_version = 2",
        "kv_version = 2\ntimeout = 1\nmax_retries = 1",
    );
    let t = t.config_toml(&config);
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains("(2 attempts): timed out");
    assert_eq!(hang.requests().len(), 2, "{}", hang.summary());
}

/// 503 twice, then the real answer: retried with backoff, success, one read reached OpenBao.
#[test]
fn vault_503_twice_then_success() {
    let mut t0 = Test::new();
    let (bao, token) = server_with_token(&mut t0);
    let upstream = bao.socket_addr();
    let proxy = StandIn::start(move |_, index| {
        if index < 2 {
            Action::json(503, json!({ "errors": ["stand-in: Vault is sealed"] }))
        } else {
            Action::forward(upstream)
        }
    });
    let (t, marker, child) = fault_test(&proxy.url(), &token);
    let mut t = t;
    let pat = t.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let mark = bao.audit_mark();
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_success();
    assert!(marker.exists(), "the child should have run");
    assert_eq!(proxy.requests().len(), 3, "{}", proxy.summary());
    let requests = bao.requests_since(mark);
    assert_eq!(
        count(&requests, "read", "secret/data/app"),
        1,
        "{}",
        audit_listing(&requests)
    );

    // Always 503: gives up after the retries with Vault's status and errors.
    let always = StandIn::start(|_, _| {
        Action::json(503, json!({ "errors": ["stand-in: Vault is sealed"] }))
    });
    let (t, marker, child) = fault_test(&always.url(), &token);
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains("answered 503 (stand-in: Vault is sealed) (3 attempts)");
    assert_eq!(always.requests().len(), 3, "{}", always.summary());

    // 403 is never retried.
    let denied =
        StandIn::start(|_, _| Action::json(403, json!({ "errors": ["permission denied"] })));
    let (t, _, child) = fault_test(&denied.url(), &token);
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_code(125);
    // Besides the read, one lookup-self tells a bad token from a policy (the hint).
    let reads = denied
        .requests()
        .iter()
        .filter(|r| r.path() != "/v1/auth/token/lookup-self")
        .count();
    assert_eq!(reads, 1, "{}", denied.summary());
}

/// A redirect to another port is not followed: the token never reaches it. A redirect within the
/// same origin is followed.
#[test]
fn vault_redirect_to_another_origin_is_not_followed() {
    let mut t0 = Test::new();
    let (bao, token) = server_with_token(&mut t0);
    let elsewhere = StandIn::start(|_, _| Action::json(200, json!({ "data": { "data": {} } })));
    let target = elsewhere.url();
    let redirector = StandIn::start(move |req, _| Action::Respond {
        status: 307,
        headers: vec![("Location".into(), format!("{target}{}", req.target))],
        body: Vec::new(),
    });
    let (t, marker, child) = fault_test(&redirector.url(), &token);
    let out = t.run_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains(&format!(
        "answered 307 with a redirect to {}; not followed",
        elsewhere.url()
    ));
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target got requests (with the token?):\n{}",
        elsewhere.summary()
    );
    assert!(redirector
        .requests()
        .iter()
        .all(|r| r.header("x-vault-token") == Some(token.as_str())));

    // Same origin: followed.
    let upstream = bao.socket_addr();
    let pat = t0.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let same = StandIn::start(move |req, index| {
        if index == 0 {
            Action::Respond {
                status: 307,
                headers: vec![("Location".into(), req.target.clone())],
                body: Vec::new(),
            }
        } else {
            Action::forward(upstream)
        }
    });
    let (t, marker, child) = fault_test(&same.url(), &token);
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    assert!(marker.exists());
    assert_eq!(same.requests().len(), 2, "{}", same.summary());
}

/// Many concurrent cme-exec runs against one server each get their own login token, and all of
/// them are revoked.
#[test]
fn vault_concurrent_runs_each_revoke_their_login() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = approle(&bao, &mut t);
    put_cme_secret(&bao, &mut t);
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"SID\" }}\n\n{}",
        q(bao.address()),
        q(&role_id),
        cme_instance("https://company.atlassian.net", "vault")
    );
    let t = t.env("SID", &secret_id).config_toml(&config);
    let before = bao.accessors();
    let mark = bao.audit_mark();
    let running: Vec<_> = (0..6).map(|_| t.spawn_args(["--", "true"])).collect();
    for r in running {
        r.wait().assert_success();
    }
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "update", "auth/token/revoke-self")
        ),
        (6, 6),
        "{}",
        audit_listing(&requests)
    );
    assert_eq!(bao.accessors(), before, "a login token outlived its run");
    let unique: BTreeSet<_> = requests.iter().map(|r| r.path.clone()).collect();
    assert!(unique.contains("secret/data/cme"));
    t.assert_clean();
}

/// Namespaces (`namespace`, or VAULT_NAMESPACE for the built-in provider): the KV version is
/// detected and the secret read inside the namespace; `check` names it.
#[test]
fn vault_namespace_from_config_and_environment() {
    let bao = OpenBao::start();
    bao.ok("POST", "sys/namespaces/team", Value::Null);
    bao.ok(
        "POST",
        "team/sys/mounts/kv",
        json!({ "type": "kv", "options": { "version": "2" } }),
    );
    let mut t = Test::new();
    let pat = t.sentinel("ns-pat");
    bao.ok(
        "POST",
        "team/kv/data/jira",
        json!({ "data": { "pat": pat } }),
    );
    let instance = "[jira.\"https://jira.example.com\"]\npat = \"vault://kv/jira#pat\"\n";
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nnamespace = \"team\"\nauth = {{ method = \"token\" }}\n\n{instance}",
        q(bao.address())
    );
    let t = t.env("VAULT_TOKEN", bao.root_token()).config_toml(&config);
    let child = dump_env_child(&t);
    let mark = bao.audit_mark();
    t.run_args([std::ffi::OsString::from("--"), child.into_os_string()])
        .assert_success();
    assert_config_field(
        &t.child_env().config_json(),
        "jira",
        "https://jira.example.com",
        "pat",
        &pat,
    );
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "read", "sys/internal/ui/mounts/kv"),
            count(&requests, "read", "kv/data/jira"),
        ),
        (1, 1),
        "the audit log shows paths relative to the namespace:\n{}",
        audit_listing(&requests)
    );
    t.assert_clean();

    // The built-in provider from VAULT_NAMESPACE; `check` shows the namespace.
    let t = Test::new()
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_NAMESPACE", "team")
        .env("VAULT_TOKEN", bao.root_token())
        .config_toml(instance);
    let out = t.run_args(["check"]);
    out.assert_success();
    out.assert_stdout_contains("namespace=team");
    // Without the namespace, the mount does not exist.
    let t = Test::new()
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", bao.root_token())
        .config_toml(instance);
    t.run_args(["--", "true"]).assert_code(125);
}

/// A login token is revoked even when the run is cut short: by the resolution deadline while a
/// read hangs, and by SIGTERM while a read hangs.
#[test]
fn vault_login_token_is_revoked_when_resolution_is_cut_short() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = approle(&bao, &mut t);
    put_cme_secret(&bao, &mut t);
    let upstream = bao.socket_addr();
    // Logins and revocations pass; reads of secrets hang.
    let proxy = StandIn::start(move |req, _| {
        if req.path().starts_with("/v1/secret/data/") {
            Action::Hang
        } else {
            Action::forward(upstream)
        }
    });
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"SID\" }}\n\n{}",
        q(proxy.url()),
        q(&role_id),
        cme_instance("https://company.atlassian.net", "vault")
    );
    let marker = t.out_dir().join("child-ran");
    let t = t.env("SID", &secret_id).config_toml(&config);
    let child = t.script("touch", &scripts::touch(&marker));
    let before = bao.accessors();

    // The deadline.
    let mark = bao.audit_mark();
    let out = t.run_args([
        std::ffi::OsString::from("--timeout"),
        "2".into(),
        "--".into(),
        child.clone().into_os_string(),
    ]);
    out.assert_code(125);
    assert_not_started(&marker, &out);
    out.assert_stderr_contains("no answer from Vault");
    out.assert_stderr_contains("timed out");
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "update", "auth/token/revoke-self")
        ),
        (1, 1),
        "{}",
        audit_listing(&requests)
    );
    assert_eq!(
        bao.accessors(),
        before,
        "the login token outlived a run cut short by the deadline"
    );

    // SIGTERM while the read hangs.
    let reads_before = proxy
        .requests()
        .iter()
        .filter(|r| r.path().starts_with("/v1/secret/data/"))
        .count();
    let running = t.spawn_args([std::ffi::OsString::from("--"), child.into_os_string()]);
    wait_until(
        "cme-exec is reading a secret",
        Duration::from_secs(30),
        || {
            proxy
                .requests()
                .iter()
                .filter(|r| r.path().starts_with("/v1/secret/data/"))
                .count()
                > reads_before
        },
    );
    running.signal(nix::sys::signal::Signal::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), Some(128 + 15), "{}", out.describe());
    assert!(
        !marker.exists(),
        "the child ran after SIGTERM during resolution"
    );
    assert_eq!(
        bao.accessors(),
        before,
        "the login token outlived a run stopped by SIGTERM"
    );

    // The deadline passes while the login itself is on its way: the token that arrives after
    // it is still revoked.
    let slow_login = StandIn::start(move |req, _| Action::Forward {
        to: upstream,
        delay: if req.path().ends_with("/login") {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        },
    });
    let config = config.replace(&q(proxy.url()), &q(slow_login.url()));
    let t2 = Test::new().env("SID", &secret_id).config_toml(&config);
    let mark = bao.audit_mark();
    let out = t2.run_args(["--timeout", "1", "--", "true"]);
    out.assert_code(125);
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "update", "auth/token/revoke-self")
        ),
        (1, 1),
        "{}",
        audit_listing(&requests)
    );
    assert_eq!(
        bao.accessors(),
        before,
        "a login token that arrived after the deadline was not revoked"
    );
    t.assert_clean();
    t2.assert_clean();
}

/// A role that issues batch tokens: they cannot be revoked (only expire), so no revocation is
/// attempted and no warning printed; `check` says so.
#[test]
fn vault_batch_token_login_is_left_to_expire() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = approle(&bao, &mut t);
    bao.ok(
        "POST",
        "auth/approle/role/cme",
        json!({ "token_policies": ["reader"], "token_ttl": "5m", "token_type": "batch" }),
    );
    put_cme_secret(&bao, &mut t);
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"SID\" }}\n\n{}",
        q(bao.address()),
        q(&role_id),
        cme_instance("https://company.atlassian.net", "vault")
    );
    let t = t.env("SID", &secret_id).config_toml(&config);
    let mark = bao.audit_mark();
    let out = t.run_args(["--", "true"]);
    out.assert_success();
    assert!(!out.stderr.contains("warning"), "{}", out.describe());
    let requests = bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "update", "auth/token/revoke-self"),
            requests.len()
        ),
        (1, 0, 2),
        "{}",
        audit_listing(&requests)
    );
    let check = t.run_args(["check"]);
    check.assert_success();
    check.assert_stdout_contains("revoked_at_exit=no (batch token: expires with its TTL)");
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Vault hints point at the cause
// ---------------------------------------------------------------------------------------------

/// A Vault test: two fields of one KV v2 document `secret/app`, the built-in provider from
/// `VAULT_ADDR`, nothing else.
fn vault_hint_test(t: Test, address: &str) -> Test {
    t.env("VAULT_ADDR", address).config_toml(
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
         api_token = \"vault://secret/app#token\"\n",
    )
}

/// The `hint:` line of a failed run.
#[track_caller]
fn hint_of(out: &Output) -> String {
    out.assert_code(125);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint\n{}", out.describe()))
        .to_owned()
}

/// A wrong token, a token whose policies do not allow the read, a misspelt namespace and
/// `https://` against a plain-HTTP server: each gets the hint for its own cause.
#[test]
fn vault_hints_name_the_cause() {
    let bao = OpenBao::start();
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let wrong = t.sentinel("wrong-token");
    let reader = t.sentinel("reader-token");
    bao.kv2_put("secret", "app", json!({ "user": user, "token": token }));
    bao.policy(
        "elsewhere",
        "path \"secret/data/other\" { capabilities = [\"read\"] }",
    );
    bao.token_with_id(&reader, &["elsewhere"]);
    let t = vault_hint_test(t, &bao.address());
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    let run = |token: &str, extra: &[(&str, &str)]| {
        let mut l = t
            .launch([std::ffi::OsString::from("--"), child.clone().into()])
            .env("VAULT_TOKEN", token);
        for (k, v) in extra {
            l = l.env(k, v);
        }
        l.run()
    };

    let hint = hint_of(&run(&wrong, &[]));
    assert!(
        hint.contains("does not accept the token") && !hint.contains("mount's name"),
        "a wrong token: {hint}"
    );

    let hint = hint_of(&run(&reader, &[]));
    assert!(
        hint.contains("token is valid") && hint.contains("policies"),
        "a token without read: {hint}"
    );

    let hint = hint_of(&run(bao.root_token(), &[("VAULT_NAMESPACE", "no-such-ns")]));
    assert!(
        hint.contains("namespace") && !hint.contains("mount's name"),
        "a misspelt namespace: {hint}"
    );

    let https = bao.address().replacen("http://", "https://", 1);
    let out = t
        .launch([std::ffi::OsString::from("--"), child.clone().into()])
        .env("VAULT_TOKEN", bao.root_token())
        .env("VAULT_ADDR", &https)
        .run();
    let hint = hint_of(&out);
    assert!(
        hint.contains("plain HTTP") && !hint.contains("VAULT_CACERT"),
        "https:// against plain HTTP: {hint}"
    );
    t.assert_clean();
}

/// A run whose AppRole login fails at a real OpenBao (an unknown role id), with three fields
/// (two instances) that all need the login; it must exit 125.
pub(crate) fn failed_approle_login(confluence_url: &str) -> (OpenBao, Test, Output) {
    let bao = OpenBao::start();
    bao.enable_auth("approle", "approle");
    bao.ok(
        "POST",
        "auth/approle/role/reader",
        json!({ "token_policies": ["default"] }),
    );
    let mut t = Test::new();
    let secret_id = t.sentinel("secret-id");
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\n\
         auth = {{ method = \"approle\", role_id = \"no-such-role-id\", secret_id_env = \"SECRET_ID\" }}\n\n\
         [confluence.{}]\nusername = \"vault://secret/app#user\"\n\
         api_token = \"vault://secret/app#token\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"vault://secret/jira#pat\"\n",
        serde_json::to_string(&bao.address()).expect("a string"),
        serde_json::to_string(confluence_url).expect("a string"),
    );
    let t = t.env("SECRET_ID", &secret_id).config_toml(&config);
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    let out = t.run_args([std::ffi::OsString::from("--"), child.into()]);
    out.assert_code(125);
    (bao, t, out)
}

/// A failed login is told once, with the fields it stopped under it, not once per field.
#[test]
fn vault_failed_login_is_told_once() {
    let (_bao, t, out) = failed_approle_login("https://x.atlassian.net");
    let logins = out.stderr.matches("logging in to").count();
    assert_eq!(logins, 1, "the login failure once\n{}", out.describe());
    for field in ["username", "api_token", "pat"] {
        out.assert_stderr_contains(field);
    }
    t.assert_clean();
}
