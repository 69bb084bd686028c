//! Agent mode: cme-exec behind a real OpenBao Proxy (`bao proxy`, see
//! `support/bao_proxy.rs`) with AppRole auto-auth and `use_auto_auth_token`, in front of a real
//! OpenBao dev server with a file audit device. `VAULT_AGENT_ADDR` names the proxy's unix socket
//! or its TCP listener; cme-exec then sends no token, never logs in and never revokes, and the
//! audit log shows the proxy's single login for any number of runs.
//!
//! Every secret and the user's own token are sentinels of the test, so the harness's leak checks
//! cover them; the proxy's token (made by OpenBao) is read from its file sink and looked for in
//! the output by hand.

use std::ffi::OsString;

use serde_json::{json, Value};

use crate::support::bao_proxy::BaoProxy;
use crate::support::openbao::{Audited, OpenBao};
use crate::support::*;
use crate::*;

const READER: &str = r#"path "secret/data/*" { capabilities = ["read"] }"#;

/// What the runs should find: two documents, three fields.
struct Secrets {
    user: String,
    api_token: String,
    pat: String,
}

const CONFLUENCE: &str = "https://company.atlassian.net";
const JIRA: &str = "https://jira.example.com";

/// The config every run uses: the built-in `vault` scheme, so the address and auth come from
/// the environment (`VAULT_AGENT_ADDR`).
fn config() -> String {
    format!(
        "[confluence.{c}]\nusername = \"vault://secret/cme#username\"\napi_token = \"vault://secret/cme#api_token\"\n\n\
         [jira.{j}]\npat = \"vault://secret/jira#pat\"\n",
        c = q(CONFLUENCE),
        j = q(JIRA),
    )
}

/// An OpenBao server with the `reader` policy, AppRole role `cme` and the two documents, and a
/// proxy logged in with that role. The mark is taken before the proxy starts, so the proxy's
/// own login is counted.
struct Setup {
    bao: OpenBao,
    proxy: BaoProxy,
    mark: usize,
    secrets: Secrets,
    /// A valid token of the user's (a sentinel) for the server itself, put in VAULT_TOKEN: it
    /// must never reach the proxy.
    user_token: String,
}

fn setup(t: &mut Test) -> Setup {
    let bao = OpenBao::start();
    bao.policy("reader", READER);
    let (role_id, secret_id) = crate::vault::approle(&bao, t);
    let secrets = Secrets {
        user: t.sentinel("user"),
        api_token: t.sentinel("api-token"),
        pat: t.sentinel("pat"),
    };
    bao.kv2_put(
        "secret",
        "cme",
        json!({ "username": secrets.user, "api_token": secrets.api_token }),
    );
    bao.kv2_put("secret", "jira", json!({ "pat": secrets.pat }));
    let user_token = t.sentinel("user-vault-token");
    bao.token_with_id(&user_token, &["reader"]);
    let mark = bao.audit_mark();
    let proxy = BaoProxy::start(&bao, &role_id, &secret_id);
    Setup {
        bao,
        proxy,
        mark,
        secrets,
        user_token,
    }
}

/// The test's environment: the proxy's address in VAULT_AGENT_ADDR, and the user's own token and
/// server address in VAULT_TOKEN/VAULT_ADDR (which agent mode must leave alone).
fn agent_test(t: Test, s: &Setup, agent_addr: &str) -> Test {
    t.env("VAULT_AGENT_ADDR", agent_addr)
        .env("VAULT_ADDR", s.bao.address())
        .env("VAULT_TOKEN", &s.user_token)
        .env("CME_EXEC_VAULT_KV_VERSION", "2")
        .config_toml(&config())
}

/// Runs `runs` times, `at_once` at a time; each run's child copies its config to
/// `out/run-N.json`; every run must succeed and find exactly the three secrets in their fields.
fn many_runs(t: &Test, s: &Setup, runs: usize, at_once: usize) {
    let out = t.out_dir();
    for batch in 0..runs.div_ceil(at_once) {
        let running: Vec<Running> = (batch * at_once..((batch + 1) * at_once).min(runs))
            .map(|i| {
                let target = out.join(format!("run-{i}.json"));
                t.spawn_args([
                    OsString::from("--no-mask"),
                    "--".into(),
                    "sh".into(),
                    "-c".into(),
                    r#"cp "$CME_CONFIG_PATH" "$1""#.into(),
                    "sh".into(),
                    target.into_os_string(),
                ])
            })
            .collect();
        for r in running {
            r.wait_timeout(std::time::Duration::from_secs(120))
                .assert_success();
        }
    }
    for i in 0..runs {
        let path = out.join(format!("run-{i}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("run {i} left no config copy at {}: {e}", path.display()));
        let config: Value = serde_json::from_str(&text).expect("the config is JSON");
        let field = |product: &str, url: &str, name: &str| -> Option<String> {
            config
                .pointer(&format!("/auth/{product}"))
                .and_then(Value::as_object)
                .and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.trim_end_matches('/') == url)
                        .map(|(_, v)| v)
                })
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        for (product, url, name, expected) in [
            ("confluence", CONFLUENCE, "username", &s.secrets.user),
            ("confluence", CONFLUENCE, "api_token", &s.secrets.api_token),
            ("jira", JIRA, "pat", &s.secrets.pat),
        ] {
            assert!(
                field(product, url, name).as_deref() == Some(expected.as_str()),
                "run {i}: auth.{product}[{url}].{name} is not the expected {}",
                crate::support::secrets::label_of(expected)
            );
        }
    }
}

fn count(requests: &[Audited], operation: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.operation == operation && r.path == path)
        .count()
}

fn listing(requests: &[Audited]) -> String {
    let mut lines: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.operation, r.path))
        .collect();
    lines.dedup();
    lines.join("\n")
}

/// The audit log since the proxy started: exactly one login (the proxy's), no revocation of any
/// kind, `reads` reads of each document, and every read carrying the proxy's token (never the
/// user's VAULT_TOKEN, never a token cme-exec obtained).
#[track_caller]
fn assert_one_login(s: &Setup, reads: usize) -> Vec<Audited> {
    let requests = s.bao.requests_since(s.mark);
    let logins = count(&requests, "update", "auth/approle/login");
    let revocations = requests
        .iter()
        .filter(|r| r.path.starts_with("auth/token/revoke"))
        .count();
    assert_eq!(
        (
            logins,
            revocations,
            count(&requests, "read", "secret/data/cme"),
            count(&requests, "read", "secret/data/jira"),
        ),
        (1, 0, reads, reads),
        "expected the proxy's one login, no revocation and {reads} reads of each document:\n{}",
        listing(&requests)
    );
    let proxy_token = s.bao.audit_hash(&s.proxy.token());
    let foreign: Vec<&Audited> = requests
        .iter()
        .filter(|r| r.path.starts_with("secret/") && r.client_token != proxy_token)
        .collect();
    assert!(
        foreign.is_empty(),
        "{} reads arrived with a token other than the proxy's (cme-exec sent one of its own)",
        foreign.len()
    );
    requests
}

/// 200 runs, 20 at a time, through the proxy's unix socket: every run gets the right values,
/// and OpenBao sees exactly one login (the proxy's), no revocation, 200 reads of each document,
/// each with the proxy's token. The user's own VAULT_TOKEN (valid on the server) is never sent;
/// the proxy's token is still valid afterwards.
#[test]
fn proxy_two_hundred_runs_through_the_socket_cost_one_login() {
    let mut t = Test::new();
    let s = setup(&mut t);
    let t = agent_test(t, &s, &s.proxy.unix_address());
    many_runs(&t, &s, 200, 20);
    assert_one_login(&s, 200);
    assert!(
        s.bao.token_valid(&s.proxy.token()),
        "the proxy's token was revoked"
    );
    t.assert_clean();
}

/// The same through the proxy's TCP listener (`VAULT_AGENT_ADDR=http://127.0.0.1:PORT`), and
/// `check` through it: one line naming the proxy's identity (the AppRole token's display name,
/// entity, policies, TTL, "never" revoked) and nothing secret: no accessor, no proxy token.
#[test]
fn proxy_tcp_listener_and_check_shows_the_proxys_identity() {
    let mut t = Test::new();
    let s = setup(&mut t);
    let t = agent_test(t, &s, &s.proxy.tcp_address());
    many_runs(&t, &s, 20, 10);
    assert_one_login(&s, 20);

    let proxy_token = s.proxy.token();
    for args in [&["check"][..], &["check", "--format", "json"][..]] {
        let out = t.run_args(args);
        out.assert_success();
        assert_no_leak_in("check's stdout", &out.stdout, &proxy_token);
        assert_no_leak_in("check's stderr", &out.stderr, &proxy_token);
        assert!(
            !out.stdout.contains("accessor"),
            "check shows an accessor in agent mode\n{}",
            out.describe()
        );
        let text = if args.len() == 1 {
            out.stdout
                .lines()
                .find(|l| l.contains("provider vault"))
                .unwrap_or_else(|| panic!("no provider line\n{}", out.describe()))
                .to_owned()
        } else {
            let report: Value = serde_json::from_str(&out.stdout).expect("check --format json");
            report.to_string()
        };
        for fact in [
            "auth=agent",
            "display_name=approle",
            "policies=default,reader",
            "entity_id=",
            "ttl=",
            "revoked_at_exit=never",
        ] {
            let fact = if args.len() == 1 {
                fact.to_owned()
            } else {
                // In JSON: "display_name":"approle".
                let (k, v) = fact.split_once('=').expect("key=value");
                format!("\"{k}\":\"{v}")
            };
            assert!(text.contains(&fact), "expected {fact:?} in {text:?}");
        }
        assert!(
            text.contains(&s.proxy.tcp_address()),
            "the check output names the proxy's address: {text}"
        );
    }
    // Each `check` read each document once more.
    let requests = assert_one_login(&s, 22);
    assert!(
        count(&requests, "read", "auth/token/lookup-self") >= 2,
        "check looked the proxy's token up through the proxy:\n{}",
        listing(&requests)
    );
    assert!(s.bao.token_valid(&proxy_token));
    t.assert_clean();
}

/// Another auth method through the socket (a proxy used without its auto-auth token): AppRole
/// in the config, `address = "unix://..."`. cme-exec logs in through the proxy, reads with its
/// own token and revokes that one only: the proxy's token stays valid.
#[test]
fn proxy_socket_with_a_login_of_cme_execs_own_revokes_only_its_token() {
    let mut t = Test::new();
    let s = setup(&mut t);
    let role_id = s
        .bao
        .ok("GET", "auth/approle/role/cme/role-id", Value::Null)
        .pointer("/data/role_id")
        .and_then(Value::as_str)
        .expect("the role id")
        .to_owned();
    let secret_id = t.sentinel("own-secret-id");
    s.bao.ok(
        "POST",
        "auth/approle/role/cme/custom-secret-id",
        json!({ "secret_id": secret_id }),
    );
    let secret_file = t.secret_file("secret-id", &secret_id);
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {addr}\nkv_version = 2\n\
         auth = {{ method = \"approle\", role_id = {role}, secret_id_file = {file} }}\n\n{rest}",
        addr = q(s.proxy.unix_address()),
        role = q(&role_id),
        file = q(secret_file.display().to_string()),
        rest = config(),
    );
    let t = t.config_toml(&config);
    let before = s.bao.accessors();
    let mark = s.bao.audit_mark();
    let out = t.run_args(["--no-mask", "--", "true"]);
    out.assert_success();
    let requests = s.bao.requests_since(mark);
    assert_eq!(
        (
            count(&requests, "update", "auth/approle/login"),
            count(&requests, "update", "auth/token/revoke-self"),
        ),
        (1, 1),
        "cme-exec's own login and its revocation:\n{}",
        listing(&requests)
    );
    // The revocation carried the token the reads used, cme-exec's own, not the proxy's (which
    // the proxy adds to the token-less login request only).
    let proxy_token = s.bao.audit_hash(&s.proxy.token());
    let revoke = requests
        .iter()
        .find(|r| r.path == "auth/token/revoke-self")
        .expect("a revocation");
    let read = requests
        .iter()
        .find(|r| r.path == "secret/data/cme")
        .expect("a read");
    assert!(
        !revoke.client_token.is_empty()
            && revoke.client_token != proxy_token
            && revoke.client_token == read.client_token,
        "the revocation must carry cme-exec's own token (the reads'), never the proxy's"
    );
    assert_eq!(s.bao.accessors(), before, "cme-exec's token was revoked");
    assert!(
        s.bao.token_valid(&s.proxy.token()),
        "the proxy's token was revoked"
    );
    t.assert_clean();
}

/// Mistakes are reported with the key or variable and the socket's path, before anything
/// starts: no proxy at the socket's path (with the hint), a relative `unix://` path (in the
/// config and in VAULT_AGENT_ADDR), TLS settings with a `unix://` address, and a token key with
/// the agent method.
#[test]
fn proxy_address_and_setting_errors_name_the_key_and_the_socket() {
    let t = Test::new();
    let missing = t.path().join("no-proxy-here.sock");
    let t = t
        .env("VAULT_AGENT_ADDR", format!("unix://{}", missing.display()))
        .env("VAULT_MAX_RETRIES", "0")
        .config_toml(&config());
    let out = t.run_args(["--", "true"]);
    out.assert_code(125);
    for needle in [
        format!("no Vault agent listening at unix://{}", missing.display()),
        "No such file or directory".to_owned(),
        "OpenBao Proxy running".to_owned(),
        "mounted into this container".to_owned(),
    ] {
        out.assert_stderr_contains(&needle);
    }

    let t = Test::new()
        .env("VAULT_AGENT_ADDR", "unix://run/proxy.sock")
        .config_toml(&config());
    let out = t.run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("VAULT_AGENT_ADDR: the socket path `run/proxy.sock` is relative");

    for (table, key) in [
        ("address = \"unix://run/proxy.sock\"", "address"),
        ("address = \"unix://\"", "address"),
        (
            "address = \"unix:///run/proxy.sock\"\nca_cert = \"/etc/ca.pem\"",
            "ca_cert",
        ),
        (
            "address = \"unix:///run/proxy.sock\"\ntls_skip_verify = true",
            "tls_skip_verify",
        ),
        (
            "address = \"unix:///run/proxy.sock\"\nauth = { method = \"agent\", token_file = \"/t\" }",
            "token_file",
        ),
        (
            "address = \"unix:///run/proxy.sock\"\nauth = { method = \"agent\", token_env = \"T\" }",
            "token_env",
        ),
    ] {
        let t = Test::new().config_toml(&format!(
            "[providers.vault]\nkind = \"vault\"\n{table}\n\n{}",
            config()
        ));
        let out = t.run_args(["--", "true"]);
        out.assert_code(125);
        out.assert_stderr_contains(key);
        let expected = match key {
            "address" => "unix://",
            "token_file" | "token_env" => "the agent method sends no token",
            _ => "a unix:// address is a local socket",
        };
        out.assert_stderr_contains(expected);
    }

    // TLS keys in a table whose address comes from VAULT_AGENT_ADDR (a socket).
    let t = Test::new()
        .env("VAULT_AGENT_ADDR", "unix:///run/proxy.sock")
        .config_toml(&format!(
            "[providers.vault]\nkind = \"vault\"\nca_cert = \"/etc/ca.pem\"\n\n{}",
            config()
        ));
    let out = t.run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains(
        "ca_cert with the address unix:///run/proxy.sock (VAULT_AGENT_ADDR)",
    );

    // A login method at the agent's address: its revoke-self at exit would go through the agent,
    // which (with use_auto_auth_token = "force") swaps in its own token and would revoke the
    // agent's instead of the login's.
    let t = Test::new()
        .env("VAULT_AGENT_ADDR", "unix:///run/proxy.sock")
        .config_toml(&format!(
            "[providers.vault]\nkind = \"vault\"\n\
             auth = {{ method = \"approle\", role_id = \"r\", secret_id_env = \"S\" }}\n\n{}",
            config()
        ));
    let out = t.run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("its address is the Vault agent's");
    out.assert_stderr_contains("auth method \"approle\"");
    out.assert_stderr_contains("method = \"agent\"");
}

/// A `./cme-exec.toml` naming a proxy's socket still needs `cme-exec trust`, which shows the
/// socket it would contact and the agent method; once trusted it works through the proxy.
#[test]
fn proxy_socket_in_a_working_directory_config_needs_trust_and_shows_the_socket() {
    let mut t = Test::new();
    let s = setup(&mut t);
    let socket = s.proxy.unix_address();
    t.write_file(
        "work/cme-exec.toml",
        format!(
            "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"agent\" }}\n\n{}",
            q(&socket),
            config()
        ),
    );
    let t = t.env("VAULT_TOKEN", &s.user_token);
    t.run_args(["check"]).assert_code(125);
    let out = t.run_args(["trust", "--yes"]);
    out.assert_success()
        .assert_stdout_contains(&format!("address {socket}"))
        .assert_stdout_contains("auth agent (no token sent");
    t.run_args(["check"]).assert_success();
    assert_one_login(&s, 1);
}
