//! The `keyring` provider against a real Secret Service (GNOME Keyring on a private D-Bus bus,
//! [`SecretService`]): entries stored by `secret-tool` (a plain token, a JSON document and its
//! keys) are read; a missing entry, a locked collection and a machine without a Secret Service
//! each fail with what to do; `import` stores one entry per instance, reads it back and removes
//! the tokens from cme's file.

use std::ffi::OsStr;

use serde_json::json;

use crate::support::keyring::SecretService;
use crate::support::*;

/// `render`'s config for the instances of `t`.
fn rendered(t: &Test) -> serde_json::Value {
    let output = t.out_dir().join("app_data.json");
    t.run_args([
        OsStr::new("render"),
        OsStr::new("--output"),
        output.as_os_str(),
    ])
    .assert_success();
    serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap()
}

/// A plain token (with the trailing newline `echo ... | secret-tool store` leaves) and a JSON
/// document, both as secret-tool stores them, read whole, by `#KEY` and by `from`.
#[test]
fn entries_stored_with_secret_tool_are_read() {
    let ss = SecretService::start();
    let mut t = Test::new();
    let user = t.sentinel("kr-user");
    let token = t.sentinel("kr-token");
    let pat = t.sentinel("kr-pat");
    ss.store("cme-test", "jira-pat", &format!("{pat}\n"));
    let doc = json!({ "username": user, "api_token": token }).to_string();
    ss.store("cme-test", "me@example.com/wiki", &doc);
    let t = t.env("DBUS_SESSION_BUS_ADDRESS", ss.address()).config_toml(
        "[confluence.\"https://a.example.com\"]\n\
         username = \"keyring://cme-test/me@example.com/wiki#username\"\n\
         api_token = \"keyring://cme-test/me@example.com/wiki#api_token\"\n\
         [confluence.\"https://b.example.com\"]\n\
         from = \"keyring://cme-test/me@example.com/wiki\"\n\
         [jira.\"https://c.example.com\"]\n\
         pat = \"keyring://cme-test/jira-pat\"\n",
    );
    t.run_args(["check"]).assert_success();
    let config = rendered(&t);
    for host in ["a", "b"] {
        let entry = &config["auth"]["confluence"][format!("https://{host}.example.com")];
        assert!(entry["username"] == *user, "{host}: username");
        assert!(entry["api_token"] == *token, "{host}: api_token");
    }
    assert!(
        config["auth"]["jira"]["https://c.example.com"]["pat"] == *pat,
        "the plain token, without its trailing newline"
    );
    t.assert_clean();
}

#[test]
fn a_missing_entry_names_its_service_and_account() {
    let ss = SecretService::start();
    let t = Test::new()
        .env("DBUS_SESSION_BUS_ADDRESS", ss.address())
        .config_toml("[jira.\"https://c.example.com\"]\npat = \"keyring://cme-test/nobody\"\n");
    let out = t.run_args(["check"]);
    out.assert_code(1);
    out.assert_stdout_contains("has no entry for service cme-test, account nobody")
        .assert_stdout_contains(
            "secret-tool store --label='cme-test/nobody' service 'cme-test' username 'nobody'",
        );
}

/// No bus at all (a server, a container), and a bus where nothing provides the Secret Service:
/// both say there is none and point to the other stores.
#[test]
fn without_a_secret_service_the_error_says_so() {
    let config = "[jira.\"https://c.example.com\"]\npat = \"keyring://cme-test/jira-pat\"\n";
    // The Test's environment has no DBUS_SESSION_BUS_ADDRESS, and its XDG_RUNTIME_DIR no `bus`.
    let t = Test::new().config_toml(config);
    let bus = SecretService::bus_only();
    for (what, out) in [
        ("no bus", t.run_args(["check"])),
        (
            "a bus without the service",
            t.launch(["check"])
                .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
                .run(),
        ),
    ] {
        out.assert_code(1);
        assert!(
            out.stdout.contains("this machine has no Secret Service")
                && out
                    .stdout
                    .contains("keep the tokens in another store (file, env, vault")
                && out.stdout.contains("providers/keyring.md"),
            "{what}:\n{}",
            out.describe()
        );
    }
}

/// A locked collection: cme-exec asks the Secret Service to unlock it, which needs a prompt that
/// nothing can show here; the error says it is locked and how to unlock it.
#[test]
fn a_locked_collection_says_how_to_unlock_it() {
    let mut ss = SecretService::start();
    let mut t = Test::new();
    let pat = t.sentinel("kr-locked");
    ss.store("cme-test", "jira-pat", &pat);
    ss.lock();
    let t = t
        .env("DBUS_SESSION_BUS_ADDRESS", ss.address())
        .config_toml("[jira.\"https://c.example.com\"]\npat = \"keyring://cme-test/jira-pat\"\n");
    let out = t.run_args(["--timeout", "20", "check"]);
    out.assert_code(1);
    out.assert_stdout_contains("the Secret Service (D-Bus) is locked")
        .assert_stdout_contains("gnome-keyring-daemon --unlock");
}

/// `import --to keyring://SERVICE/ --remove-secrets`: one entry per instance, as JSON, with the
/// attributes other programs look entries up by; read back before cme's file loses its tokens.
#[test]
fn import_stores_entries_that_read_back() {
    let ss = SecretService::start();
    let mut t = Test::new();
    let app_data = t.cme_default_config();
    let token = t.sentinel("kr-import-token");
    let pat = t.sentinel("kr-import-pat");
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        json!({ "auth": {
            "confluence": { "https://a.example.com": { "username": "me@example.com", "api_token": token } },
            "jira": { "https://j.example.com": { "pat": pat } }
        } })
        .to_string(),
    );
    let t = t
        .allow_secret_in(&app_data)
        .env("DBUS_SESSION_BUS_ADDRESS", ss.address());
    let out = t.run_args(["import", "--to", "keyring://cme-exec/", "--remove-secrets"]);
    out.assert_success()
        .assert_stdout_contains("check: every field resolves");
    let held: serde_json::Value = serde_json::from_str(
        &ss.lookup("cme-exec", "confluence-a.example.com")
            .expect("the Confluence entry"),
    )
    .unwrap();
    assert!(held["api_token"] == *token && held["username"] == "me@example.com");
    let held: serde_json::Value =
        serde_json::from_str(&ss.lookup("cme-exec", "jira-j.example.com").unwrap()).unwrap();
    assert!(held == json!({ "pat": pat }));
    let attributes = ss.attributes("cme-exec", "jira-j.example.com");
    for a in ["service = cme-exec", "username = jira-j.example.com"] {
        assert!(attributes.iter().any(|l| l == a), "{a}: {attributes:?}");
    }
    let left = std::fs::read_to_string(&app_data).unwrap();
    assert!(
        !left.contains(&token) && !left.contains(&pat),
        "the tokens are removed from app_data.json"
    );
    t.run_args(["check"]).assert_success();
    let config = rendered(&t);
    assert!(config["auth"]["jira"]["https://j.example.com"]["pat"] == *pat);
    t.assert_clean();
}
