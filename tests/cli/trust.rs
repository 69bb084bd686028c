//! Issue 9, item 1: a `./cme-exec.toml` found in the working directory is used only once
//! trusted (`cme-exec trust`), and ambient credentials (the Vault token of VAULT_TOKEN,
//! BAO_TOKEN, ~/.vault-token; the AWS default chain) go only to the address the environment
//! names, unless the config ties them explicitly. The attack is a listener on a loopback port
//! that must receive nothing; the legitimate uses run against a real OpenBao and moto.

use serde_json::json;

use crate::support::moto::Moto;
use crate::support::openbao::{Action, OpenBao, StandIn};
use crate::support::*;

fn q(value: impl AsRef<str>) -> String {
    serde_json::to_string(value.as_ref()).expect("a string serialises")
}

/// A listener that answers like a Vault KV v2 read and records every request.
fn listener() -> StandIn {
    StandIn::start(|_, _| Action::json(200, json!({ "data": { "data": { "pat": "x" } } })))
}

fn vault_config(address: &str, extra: &str) -> String {
    format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\n{extra}\n\n[jira.\"https://jira.example.com\"]\npat = \"vault://secret/app#pat\"\n",
        q(address)
    )
}

fn aws_config(endpoint: &str, extra: &str) -> String {
    format!(
        "[providers.aws]\nkind = \"aws-sm\"\nregion = \"us-east-1\"\nendpoint_url = {}\n{extra}\n\n[jira.\"https://jira.example.com\"]\npat = \"aws://app#pat\"\n",
        q(endpoint)
    )
}

/// Every command that reads the config, with a child that would only prove it ran.
fn every_command(t: &Test) -> Vec<Vec<std::ffi::OsString>> {
    let out = t.out_dir().join("rendered.json");
    vec![
        vec!["check".into()],
        vec!["explain".into()],
        vec!["render".into(), "--output".into(), out.into()],
        vec!["--".into(), "/bin/true".into()],
    ]
}

/// `check` reports on stdout, the other commands on stderr.
#[track_caller]
fn assert_says(out: &Output, needle: &str) {
    assert!(
        out.stdout.contains(needle) || out.stderr.contains(needle),
        "expected the output to contain {needle:?}\n{}",
        out.describe()
    );
}

#[track_caller]
fn assert_no_request(l: &StandIn, what: &str) {
    let seen = l.requests();
    let tokens = seen
        .iter()
        .filter(|r| r.header("x-vault-token").is_some() || r.header("authorization").is_some())
        .count();
    assert!(
        seen.is_empty(),
        "{what}: the listener received {} request(s), {tokens} with a credential header:\n{}",
        seen.len(),
        l.summary()
    );
}

/// The attack: a repository's cme-exec.toml points the vault provider (and an aws-sm provider)
/// at a listener. Without a trust record no command uses it: exit 125, the path and the way to
/// trust it in the message, and the listener receives nothing.
#[test]
fn an_untrusted_working_directory_config_is_refused_before_any_request() {
    for aws in [false, true] {
        let mut t = Test::new();
        let token = t.sentinel("vault-token");
        let key = t.sentinel("aws-secret-key");
        let l = listener();
        let config = if aws {
            aws_config(&l.url(), "")
        } else {
            vault_config(&l.url(), "")
        };
        t.write_file("work/cme-exec.toml", &config);
        let t = t
            .env("VAULT_TOKEN", &token)
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", &key)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for args in every_command(&t) {
            let out = t.run_args(&args);
            out.assert_code(125);
            out.assert_stderr_contains("cme-exec.toml")
                .assert_stderr_contains("not trusted")
                .assert_stderr_contains("cme-exec trust")
                .assert_stderr_contains("--config");
            assert_no_request(&l, &format!("{args:?} (aws: {aws})"));
        }
        assert!(!t.out_dir().join("rendered.json").exists());
        t.assert_clean();
    }
}

/// Even a trusted config does not get the ambient token (or AWS keys) for an address that is
/// not the environment's, unless it ties them explicitly; the refusal names both addresses and
/// the setting.
#[test]
fn a_trusted_config_with_another_address_gets_no_ambient_credentials() {
    for (aws, env_addr) in [
        (false, None),
        (false, Some("http://127.0.0.1:9")),
        (true, None),
        (true, Some("http://127.0.0.1:9")),
    ] {
        let mut t = Test::new();
        let token = t.sentinel("vault-token");
        let key = t.sentinel("aws-secret-key");
        let l = listener();
        let config = if aws {
            aws_config(&l.url(), "")
        } else {
            vault_config(&l.url(), "")
        };
        t.write_file("work/cme-exec.toml", &config);
        let mut t = t
            .env("VAULT_TOKEN", &token)
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", &key)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(a) = env_addr {
            t = t.env(
                if aws {
                    "AWS_ENDPOINT_URL"
                } else {
                    "VAULT_ADDR"
                },
                a,
            );
        }
        t.run_args(["trust"]).assert_success();
        for args in every_command(&t) {
            let out = t.run_args(&args);
            let expected = if args[0] == "check" || args[0] == "explain" {
                1
            } else {
                125
            };
            out.assert_code(expected);
            assert_says(&out, &l.url());
            if aws {
                assert_says(&out, "use_ambient_credentials = true");
            } else {
                assert_says(&out, "method = \"token\"");
            }
            if let Some(a) = env_addr {
                assert_says(&out, a);
            }
            assert_no_request(&l, &format!("{args:?} (aws: {aws}, env: {env_addr:?})"));
        }
        t.assert_clean();
    }
}

/// The legitimate uses against a real OpenBao: trusting shows what the file contacts and makes
/// it work; a changed file is refused again; `--list`; `--revoke`; `--config` needs no trust;
/// the XDG config needs none; an explicit `auth = { method = "token" }` ties a config's address
/// to the ambient token.
#[test]
fn trust_lifecycle_against_openbao() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    let token = t.sentinel("vault-token");
    bao.policy(
        "reader",
        "path \"secret/data/*\" { capabilities = [\"read\"] }",
    );
    bao.token_with_id(&token, &["reader"]);
    let pat = t.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let config = vault_config(&bao.address(), "");
    let path = t.write_file("work/cme-exec.toml", &config);
    let t = t
        .env("VAULT_TOKEN", &token)
        .env("VAULT_ADDR", bao.address());

    t.run_args(["check"]).assert_code(125);
    let out = t.run_args(["trust"]);
    out.assert_success()
        .assert_stdout_contains("provider vault: kind vault")
        .assert_stdout_contains(&bao.address())
        .assert_stdout_contains("vault://secret/app#pat")
        .assert_stdout_contains("trusted");
    t.run_args(["check"]).assert_success();
    let records = t.path().join(".local/state/cme-exec/trust");
    assert_eq!(mode_of(&records) & 0o777, 0o700);
    for f in std::fs::read_dir(&records).unwrap() {
        assert_eq!(mode_of(&f.unwrap().path()) & 0o777, 0o600);
    }

    // A changed file is refused again, until trusted again.
    std::fs::write(&path, format!("{config}\n# changed\n")).unwrap();
    let out = t.run_args(["check"]);
    out.assert_code(125).assert_stderr_contains("changed");
    t.run_args(["trust", "cme-exec.toml"]).assert_success();
    t.run_args(["check"]).assert_success();
    t.run_args(["trust", "--list"])
        .assert_success()
        .assert_stdout_contains("work/cme-exec.toml");
    t.run_args(["trust", "--revoke"])
        .assert_success()
        .assert_stdout_contains("no longer trusted");
    t.run_args(["check"]).assert_code(125);

    // Chosen explicitly: no trust needed.
    t.run_args(["--config", "./cme-exec.toml", "check"])
        .assert_success();
    let t = t.env("CME_EXEC_CONFIG", &path);
    t.run_args(["check"]).assert_success();
    let t = t.env_remove("CME_EXEC_CONFIG");

    // The user's own XDG config: no trust needed.
    std::fs::remove_file(&path).unwrap();
    t.write_file("config/cme-exec/config.toml", &config);
    t.run_args(["check"]).assert_success();

    // An explicit tie: the config's address is not VAULT_ADDR, but `auth = { method = "token" }`
    // says the ambient token is meant for it.
    let tied = vault_config(&bao.address(), "auth = { method = \"token\" }");
    t.write_file("config/cme-exec/config.toml", &tied);
    let t = t.env("VAULT_ADDR", "http://127.0.0.1:9");
    t.run_args(["check"]).assert_success();
    // Without it, refused.
    t.write_file("config/cme-exec/config.toml", &config);
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_says(&out, "method = \"token\"");
    t.assert_clean();
}

/// AWS: a config's endpoint_url that is the environment's needs no tie; another one works with
/// `use_ambient_credentials = true` (against moto).
#[test]
fn aws_endpoint_tie_against_moto() {
    let moto = Moto::start();
    let mut t = Test::new();
    let key = t.sentinel("aws-secret-key");
    let pat = t.sentinel("pat");
    moto.create_secret("app", &json!({ "pat": pat }).to_string());
    for (k, v) in Moto::aws_env("http://127.0.0.1:9", &key) {
        t = t.env(k, v);
    }
    let t = t.config_toml(&aws_config(&moto.endpoint(), ""));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_says(&out, "use_ambient_credentials");
    let t = t.config_toml(&aws_config(
        &moto.endpoint(),
        "use_ambient_credentials = true",
    ));
    t.run_args(["check"]).assert_success();
    let t = t
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .config_toml(&aws_config(&moto.endpoint(), ""));
    t.run_args(["check"]).assert_success();
    t.assert_clean();
}
