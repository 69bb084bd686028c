//! The base config and write-back: cme's own settings reach the child, and what cme (or
//! `cme config set`) changes comes back without the secrets.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::support::scripts;
use crate::support::*;
use crate::*;

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
        pat = q(format!("env://{token_var}")),
        base = q(base.display().to_string()),
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
        token_ref = q(format!("env://{token_var}")),
        base = q(base.display().to_string()),
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

/// A base config another local account controls decides where cme connects and how (here
/// `verify_ssl: false`): a 0644 file owned by another account, or a file in a 0777 directory
/// owned by another account, is refused before anything starts, naming the path, the owner and
/// the fix. (Both used to be handed to the child.)
#[test]
fn a_base_config_another_account_controls_is_refused() {
    const OTHER: u32 = 65534;
    assert!(
        crate::support::launch::is_root(),
        "this test plays a second local account (uid {OTHER}) with chown and needs root. To fix: \
         run the tests as root (CI does)"
    );
    let chown = |p: &std::path::Path| {
        std::os::unix::fs::lchown(p, Some(OTHER), Some(OTHER))
            .unwrap_or_else(|e| panic!("cannot chown {}: {e}", p.display()))
    };
    for case in ["their file", "their directory"] {
        let b = basic_with_extra(
            "https://company.atlassian.net",
            "\n[cme]\nbase_config = \"theirs/app_data.json\"\n",
        );
        let t = &b.t;
        let base = t.write_file(
            "theirs/app_data.json",
            r#"{"connection_config":{"verify_ssl":false}}"#,
        );
        let dir = base.parent().unwrap();
        let (message, hint) = if case == "their file" {
            chown(&base);
            fs::set_permissions(&base, fs::Permissions::from_mode(0o644)).unwrap();
            (
                format!(
                    "the base config {} belongs to another user (uid {OTHER}), who could change where cme sends the credentials",
                    base.display()
                ),
                "hint: copy it into a file of your own (cp, then chmod 600) and point [cme] base_config (or CME_CONFIG_PATH) at the copy",
            )
        } else {
            chown(dir);
            fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
            (
                format!(
                    "the base config {} is in {}, which belongs to another user (uid {OTHER}), who could replace it",
                    base.display(),
                    dir.display()
                ),
                "hint: move the base config into a directory of your own (mode 0700) and point [cme] base_config (or CME_CONFIG_PATH) at it",
            )
        };
        let marker = t.out_dir().join("child-ran");
        let child = t.script("touch", &scripts::touch(&marker));
        let out = t.run_args(args!["--", child]);
        out.assert_code(125);
        out.assert_stderr_contains(&message)
            .assert_stderr_contains(hint);
        assert!(
            !marker.exists(),
            "{case}: the child ran\n{}",
            out.describe()
        );
    }
}

/// A base config that holds a credential but is otherwise valid for cme: the hint says why
/// credentials do not belong there, not that cme would ignore the file.
#[test]
fn base_config_with_a_secret_gets_the_right_hint() {
    let mut t = Test::new();
    let token = t.sentinel("token-in-base");
    let base = t.secret_file(
        "app_data.json",
        format!(
            "{{\"auth\":{{\"confluence\":{{\"https://x.atlassian.net\":{{\"username\":\"\",\"api_token\":{}}}}}}}}}",
            serde_json::to_string(&token).expect("a string")
        ),
    );
    let user = var_name("USER");
    let t = t.env(&user, "me@example.com").config_toml(&format!(
        "[cme]\nbase_config = {}\n\n[confluence.\"https://x.atlassian.net\"]\n\
         username = \"env://{user}\"\napi_token = \"env://{user}\"\n",
        serde_json::to_string(&base.display().to_string()).expect("a string")
    ));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    out.assert_stderr_contains("holds a secret");
    let hint = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint\n{}", out.describe()));
    assert!(
        !hint.contains("silently ignore") && hint.contains("credentials come from your stores"),
        "{hint}"
    );
    t.assert_clean();
}
