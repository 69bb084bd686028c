//! Bad input: exit 125 and a message that names the file, table, key or reference, never the
//! secret.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::scripts;
use crate::support::*;
use crate::*;

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
        q(format!("{}#pat", file_ref(&missing)))
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
        q(format!("{}#no_such_key", file_ref(&file)))
    ));
    let t = t.env("CME_TEST_X", "x");
    assert_config_error(t, &["no_such_key", "api_token"]);
}

/// A missing `#KEY` lists the key names the document has (never a value) and the nearest one.
#[test]
fn a_missing_key_lists_the_document_s_key_names() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let user = t.sentinel("user");
    let file = t.secret_file(
        "creds.json",
        serde_json::json!({ "username": user, "api_token": token }).to_string(),
    );
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = {}\napi_token = {}\n",
        q(format!("{}#username", file_ref(&file))),
        q(format!("{}#api_tokn", file_ref(&file)))
    ));
    assert_config_error(
        t,
        &["no key `api_tokn` in the document (did you mean `api_token`? its keys: username, api_token)"],
    );
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

/// A misspelt key names the key it most likely meant, in an instance table and in a provider's
/// table; a misspelt scheme names the scheme.
#[test]
fn unknown_keys_and_schemes_say_did_you_mean() {
    let t = Test::new().env("CME_TEST_X", "x").config_toml(
        "[providers.vault]\nkind = \"vault\"\nadress = \"https://vault.example.com\"\n\n\
         [confluence.\"https://company.atlassian.net\"]\nusername = \"u@example.com\"\napi_tokn = \"env://CME_TEST_X\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"valt://secret/jira#pat\"\n",
    );
    assert_config_error(
        t,
        &[
            "[providers.vault] adress: unknown key (did you mean `address`?)",
            "[confluence.\"https://company.atlassian.net\"] api_tokn: unknown key (did you mean `api_token`?)",
            "[jira.\"https://jira.example.com\"] pat: unknown scheme `valt` (did you mean `vault://`?)",
        ],
    );
}

/// `[confluence."company.atlassian.net"]`: the instance key needs its scheme, and the message
/// says so in words a newcomer can act on, not the URL parser's.
#[test]
fn an_instance_key_without_a_scheme_must_start_with_https() {
    let t = Test::new()
        .env("CME_TEST_X", "x")
        .config_toml("[confluence.\"company.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n");
    assert_config_error(
        t,
        &["[confluence.\"company.atlassian.net\"]: an instance key must start with https:// (or http://): write \"https://company.atlassian.net\""],
    );
    let t = Test::new()
        .env("CME_TEST_X", "x")
        .config_toml("[confluence.\"company.atlassian.net\"]\npat = \"env://CME_TEST_X\"\n");
    let out = t.run_args(["check"]);
    assert!(
        !out.stderr.contains("relative URL without a base"),
        "{}",
        out.describe()
    );
}

/// The hint for a plain http:// store address names the table `allow_http` goes in: the
/// provider's own, or, for the built-in provider with VAULT_ADDR, the table to add. Refused
/// before any connection (the address is a documentation one, never contacted).
#[test]
fn the_allow_http_hint_names_its_table() {
    let t = Test::new().config_toml(
        "[providers.corp]\nkind = \"vault\"\naddress = \"http://192.0.2.10:8200\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"corp://secret/x#pat\"\n",
    );
    assert_config_error(
        t,
        &["[providers.corp] address: plain http:// is only allowed to a loopback address: use https://, or set allow_http = true in [providers.corp] if the network path is trusted"],
    );
    let t = Test::new()
        .env("VAULT_ADDR", "http://192.0.2.10:8200")
        .env("VAULT_TOKEN", "x")
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"vault://secret/x#pat\"\n");
    assert_config_error(
        t,
        &["VAULT_ADDR: plain http:// is only allowed to a loopback address: use https://, or set allow_http = true in a [providers.vault] table with kind = \"vault\" (add it if the config has none)"],
    );
}

/// `cme-exec cme pages URL`: the command without `--` is refused with what to write instead.
#[test]
fn a_command_without_double_dash_hints_at_it() {
    let t = Test::new();
    let out = t.run_args(["cme", "pages", "https://company.atlassian.net/wiki/x"]);
    out.assert_code(125);
    out.assert_stderr_contains(
        "`cme` is not a cme-exec command; the command to run goes after `--`",
    )
    .assert_stderr_contains("tip: cme-exec -- cme ...");
}

// ---------------------------------------------------------------------------------------------
// CME_EXEC_ variables
// ---------------------------------------------------------------------------------------------

/// A misspelt `CME_EXEC_*` variable is an error (exit 125) naming the closest known
/// name, for every command that reads the config; nothing runs.
#[test]
fn unknown_cme_exec_variables_are_refused_with_a_suggestion() {
    let mut t = Test::new();
    let (t, _, _) = crate::explain::env_config(&mut t);
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

/// Environment-only settings next to a config file are ignored, and cme-exec says so,
/// naming the file.
#[test]
fn env_only_settings_ignored_for_a_config_file_are_named() {
    let mut t = Test::new();
    let (t, _, _) = crate::explain::env_config(&mut t);
    let t = t
        .env("CME_EXEC_JIRA_URL", "https://other.example.com")
        .env("CME_EXEC_JIRA_PAT", "env://CME_TEST_PAT");
    let out = t.run_args(["check"]);
    out.assert_success()
        .assert_stderr_contains("CME_EXEC_JIRA_URL, CME_EXEC_JIRA_PAT are ignored")
        .assert_stderr_contains(&t.config_path().display().to_string());
    t.assert_clean();
}
