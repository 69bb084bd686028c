//! References and configuration sources: the local reference forms, the environment alone,
//! and the order in which config files are discovered.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::scripts;
use crate::support::*;
use crate::*;

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
        bulk = q(file_ref(&bulk)),
        from = q(file_ref(&from)),
        override_ref = q(format!("env://{}", "CME_TEST_OVERRIDE")),
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

/// An api_token without a username is one problem of the instance, not a second verdict for the
/// api_token field (which resolved): `check` lists the field once as ok and the instance's
/// problem once; a run says the instance would send no credentials.
#[test]
fn an_api_token_without_username_is_one_instance_level_problem() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_file = t.secret_file("token", &token);
    let t = t
        .env("CME_EXEC_CONFLUENCE_URL", "https://company.atlassian.net")
        .env("CME_EXEC_CONFLUENCE_API_TOKEN", file_ref(&token_file));
    let out = t.run_args(["check"]);
    out.assert_code(1)
        .assert_stdout_contains("all 1 resolved; 1 instance would send no credentials")
        .assert_stdout_contains("[confluence.\"https://company.atlassian.net\"] instance");
    assert_eq!(
        out.stdout
            .matches("api_token is set but username is not")
            .count(),
        1,
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.matches("] api_token").count(),
        1,
        "the api_token field is listed once: {}",
        out.describe()
    );
    t.run_args(["--", "/bin/true"])
        .assert_code(125)
        .assert_stderr_contains("1 instance would send no credentials; nothing was started")
        .assert_stderr_contains("add username");
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
    // The working directory's file only once trusted (a checkout must not choose the stores).
    t.run_args(args!["--", child]).assert_code(125);
    t.run_args(["trust", "--yes"]).assert_success();
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

/// A secret file every user can read (`o+r`, in directories every user can enter) is read, with
/// a warning that says how to close it, as `render --mode 0644` does; a group-readable file or
/// one in a private directory is not warned about. A directory of keys gets one warning.
#[test]
fn a_secret_file_everyone_can_read_is_a_warning() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let file = t.secret_file("token", &token);
    let keys = t.path().join("secrets/keys");
    fs::create_dir(&keys).unwrap();
    fs::write(keys.join("pat"), &token).unwrap();
    let set =
        |p: &Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    // The test's directory is private (0700) as made; opened for this test.
    set(t.path(), 0o755);
    set(&t.path().join("secrets"), 0o755);
    set(&file, 0o644);
    set(&keys, 0o755);
    set(&keys.join("pat"), 0o644);
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"u@example.com\"\napi_token = {}\n\n\
         [jira.\"https://jira.example.com\"]\nfrom = {}\n",
        q(file_ref(&file)),
        q(file_ref(&keys)),
    ));
    let out = t.run_args(["check"]);
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "cme-exec: warning: {}: readable by every user on this system (mode 0644); a secret should not be: chmod o-r {}",
        file.display(),
        file.display()
    ))
    .assert_stderr_contains(&format!(
        "cme-exec: warning: the file pat in {}: readable by every user on this system (mode 0644); a secret should not be: chmod o-rx {}",
        keys.display(),
        keys.display()
    ));

    for (file_mode, dir_mode) in [(0o640, 0o755), (0o644, 0o700)] {
        set(&file, file_mode);
        set(&keys.join("pat"), file_mode);
        set(&t.path().join("secrets"), dir_mode);
        let out = t.run_args(["check"]);
        out.assert_success();
        assert!(
            !out.stderr.contains("readable by every user"),
            "file {file_mode:o} in a {dir_mode:o} directory\n{}",
            out.describe()
        );
    }
    set(t.path(), 0o700);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Unusable values
// ---------------------------------------------------------------------------------------------

/// A field whose reference resolves to an unusable value (empty, or holding a control
/// character) is reported once, as FAILED: never first as `ok` and then again as failed.
#[test]
fn check_reports_an_unusable_value_once() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_file = t.secret_file("token", format!("{token}\x07bell"));
    let t = t.env("CME_TEST_USER", "").config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_USER\"\n\
         api_token = \"file://{}\"\n",
        token_file.display()
    ));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    for field in ["username", "api_token"] {
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("] {field} ")))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{field} is reported once\n{}",
            out.describe()
        );
        assert!(lines[0].contains("FAILED"), "{}", out.describe());
    }
    assert!(out.stdout.contains("2 of 2 failed"), "{}", out.describe());
}

/// A value with NUL (from a file) or ESC (from a variable) is refused by `run`
/// (125, no child), `render` (125, nothing written), `check` and `explain` (1), each naming the
/// field and never showing the value. A value with tab and a CRLF ending still resolves.
#[test]
fn control_characters_in_values_are_refused() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let nul_token = format!("{token}\0tail");
    let token_file = t.secret_file("token", nul_token.as_bytes());
    let esc_user = format!("{user}\x1b[2J");
    let t = t.env("CME_TEST_USER", &esc_user).config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_USER\"\n\
         api_token = \"file://{}\"\n",
        token_file.display()
    ));
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let output = t.out_dir().join("app_data.json");
    let runs: [(Vec<&OsStr>, i32); 4] = [
        (
            vec![OsStr::new("run"), OsStr::new("--"), child.as_os_str()],
            125,
        ),
        (
            vec![
                OsStr::new("render"),
                OsStr::new("--output"),
                output.as_os_str(),
            ],
            125,
        ),
        (vec![OsStr::new("check")], 1),
        (vec![OsStr::new("explain")], 1),
    ];
    for (args, code) in runs {
        let out = t.run_args(&args);
        out.assert_code(code);
        let text = format!("{}{}", out.stdout, out.stderr);
        // The reason is told once, with the fields it concerns under it (or on the same line).
        assert!(
            text.contains("control character"),
            "{args:?}: the reason is given\n{}",
            out.describe()
        );
        for field in ["username", "api_token"] {
            assert!(
                text.lines().any(|l| l.contains(&format!("] {field}"))),
                "{args:?}: {field} is named with the reason\n{}",
                out.describe()
            );
        }
        assert!(!text.contains("tail"), "{args:?}: no part of the value");
        assert!(!text.contains('\x1b'), "{args:?}: no escape sequence");
    }
    assert!(!marker.exists(), "the child must not start");
    assert!(!output.exists(), "render writes nothing");

    // Tab and a CRLF line ending are fine.
    fs::write(&token_file, format!("{token}\tx\r\n")).unwrap();
    let t = t.env("CME_TEST_USER", format!("{user}\r"));
    t.run_args(["check"]).assert_success();
    t.assert_clean();
}
