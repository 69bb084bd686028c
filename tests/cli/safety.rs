//! Bad input and file safety, through the real binary (store-independent: the `env` and `file`
//! providers only).
//!
//! Bad input: every case exits 125 with a message that names the place (file, table, key) and
//! the reason, the child never starts, and no secret is echoed (the harness checks stdout and
//! stderr for every sentinel, raw and encoded).
//!
//! File safety, with `--via file` and `render`: modes whatever the umask; a symlink or FIFO at
//! every name cme-exec would use predictably; a symlinked `--dir`; a read-only directory; a full
//! disk (a truncated config never reaches the child); cleanup never follows a link the child
//! planted. The read-only and full-disk cases use a private mount namespace (`unshare -m`) and
//! fail, with the reason and the fix, where there is none; the permission case drops to uid 65534 with
//! `setpriv` when running as root.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::launch::{cannot_run, is_root, mount_namespace};
use crate::support::scripts::{self, sh_quote};
use crate::support::secrets;
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn os(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

/// A child that proves it ran by creating `<out>/child-ran`.
fn marker_child(t: &Test) -> (PathBuf, PathBuf) {
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    (marker, child)
}

/// Exit 125, an `error:` line holding every needle (case-insensitive), and the child never ran.
#[track_caller]
fn assert_refused(out: &Output, marker: &Path, needles: &[&str]) {
    out.assert_code(125);
    assert!(
        !marker.exists(),
        "the child must never start\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("error:"),
        "errors are printed as `error: ...`\n{}",
        out.describe()
    );
    let stderr = out.stderr.to_lowercase();
    for needle in needles {
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "the message should name {needle:?}\n{}",
            out.describe()
        );
    }
}

/// Runs `-- <marker child>` with the Test's config and expects [`assert_refused`].
#[track_caller]
fn expect_config_error(t: &Test, needles: &[&str]) -> Output {
    let (marker, child) = marker_child(t);
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    assert_refused(&out, &marker, needles);
    t.assert_clean();
    out
}

/// A Test with `toml` as its config; the config may hold a pasted secret.
fn with_config(t: Test, toml: &str) -> Test {
    let t = t.config_toml(toml);
    let config = t.config_path();
    t.allow_secret_in(config)
}

/// A named way to write a config around a pasted secret.
type Variant = (&'static str, fn(&str) -> String);

const JIRA: &str = "[jira.\"https://jira.example.com\"]\n";

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Malformed configs with a secret pasted where a reference belongs: the message gives the
/// place, never the text.
#[test]
fn pasted_secret_in_a_malformed_config_is_never_echoed() {
    let variants: [Variant; 9] = [
        ("a bare value", |s| format!("{JIRA}pat = {s}\n")),
        ("an unterminated string", |s| format!("{JIRA}pat = \"{s}\n")),
        ("an unterminated multi-line string", |s| {
            format!("{JIRA}pat = \"\"\"{s}\n")
        }),
        ("a line of its own", |s| {
            format!("{JIRA}pat = \"env://X\"\n{s}\n")
        }),
        ("pasted JSON", |s| format!("{JIRA}{{\"pat\": \"{s}\"}}\n")),
        ("a quoted literal where a reference belongs", |s| {
            format!("{JIRA}pat = \"{s}\"\n")
        }),
        ("a literal-string value given twice", |s| {
            format!("{JIRA}pat = '{s}'\npat = \"env://X\"\n")
        }),
        ("an inline table", |s| {
            format!("{JIRA}pat = {{ value = \"{s}\" }}\n")
        }),
        ("an array", |s| format!("{JIRA}pat = [\"{s}\"]\n")),
    ];
    for (what, config) in variants {
        let mut t = Test::new();
        let secret = t.sentinel("pasted");
        let t = with_config(t.env("X", "x"), &config(&secret));
        let out = expect_config_error(&t, &["cme-exec.toml"]);
        assert!(
            !out.stderr.contains(&secret[9..]),
            "{what}: part of the pasted secret is echoed\n{}",
            out.describe()
        );
    }
}

/// A secret pasted as `name:secret` or as a URL with credentials parses as a reference with an
/// unknown scheme: the message must still not repeat it.
#[test]
fn pasted_secret_that_looks_like_a_reference_is_never_echoed() {
    let variants: [Variant; 3] = [
        ("user:token", |s| format!("{JIRA}pat = \"someone:{s}\"\n")),
        ("a URL with user info", |s| {
            format!("{JIRA}pat = \"https://someone:{s}@jira.example.com/\"\n")
        }),
        ("a provider-like prefix", |s| {
            format!("{JIRA}pat = \"token:{s}\"\n")
        }),
    ];
    let mut echoed = Vec::new();
    for (what, config) in variants {
        // Not one of the Test's sentinels: this test looks for it itself, to list every variant
        // that leaks rather than stop at the first.
        let secret = sentinel("pasted");
        let t = with_config(Test::new(), &config(&secret));
        let (marker, child) = marker_child(&t);
        let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
        assert_refused(&out, &marker, &["cme-exec.toml", "pat"]);
        if let Some(form) = secrets::leaked_form(&out.stderr, &secret) {
            echoed.push(format!("{what} ({form})"));
        }
        t.assert_clean();
    }
    assert!(
        echoed.is_empty(),
        "the pasted secret is repeated in the error message (`unknown scheme `...` in \
         <the whole reference>`) for: {echoed:?}"
    );
}

/// Unknown keys at every level are errors naming the file, the table and the key; all of them
/// at once in one run.
#[test]
fn unknown_keys_at_every_level() {
    let valid = format!("{JIRA}pat = \"env://X\"\n");
    let levels: [(&str, String, &[&str]); 10] = [
        ("top level", format!("colour = \"blue\"\n{valid}"), &["colour"]),
        (
            "providers.NAME (file)",
            format!("[providers.mine]\nkind = \"file\"\nrooot = \"/x\"\n\n{valid}"),
            &["providers.mine", "rooot"],
        ),
        (
            "providers.NAME (env)",
            format!("[providers.vars]\nkind = \"env\"\nprefix = \"X\"\n\n{valid}"),
            &["providers.vars", "prefix"],
        ),
        (
            "providers.NAME (vault)",
            format!("[providers.v]\nkind = \"vault\"\naddress = \"https://vault.example.com\"\nadress = \"x\"\n\n{valid}"),
            &["providers.v", "adress"],
        ),
        (
            "providers.NAME.auth (vault)",
            format!("[providers.v]\nkind = \"vault\"\naddress = \"https://vault.example.com\"\nauth = {{ method = \"token\", tokn_file = \"/x\" }}\n\n{valid}"),
            &["providers.v", "tokn_file"],
        ),
        (
            "providers.NAME (aws-sm)",
            format!("[providers.a]\nkind = \"aws-sm\"\nregoin = \"eu-west-1\"\n\n{valid}"),
            &["providers.a", "regoin"],
        ),
        (
            "a confluence instance",
            "[confluence.\"https://x.example.com\"]\npat = \"env://X\"\npasswd = \"env://X\"\n".to_owned(),
            &["confluence", "x.example.com", "passwd"],
        ),
        (
            "a jira instance",
            format!("{valid}tokn = \"env://X\"\n"),
            &["jira", "jira.example.com", "tokn"],
        ),
        (
            "[auth]",
            format!("[auth]\nfrom = \"env://X\"\nform = \"env://X\"\n\n{valid}"),
            &["auth", "form"],
        ),
        (
            "[cme]",
            format!("{valid}\n[cme]\nbase_cfg = \"/x.json\"\n"),
            &["cme", "base_cfg"],
        ),
    ];
    let mut all_needles: Vec<&str> = vec!["cme-exec.toml"];
    for (what, config, needles) in &levels {
        let t = with_config(Test::new().env("X", "x"), config);
        let mut expected = vec!["cme-exec.toml"];
        expected.extend_from_slice(needles);
        let out = expect_config_error(&t, &expected);
        assert!(
            !out.stderr.is_empty(),
            "{what}: an unknown key must be an error"
        );
        all_needles.extend_from_slice(&needles[needles.len() - 1..]);
    }

    // Every level in one file: every problem is reported in one run.
    let all = "colour = \"blue\"\n\
        [providers.mine]\nkind = \"file\"\nrooot = \"/x\"\n\
        [providers.vars]\nkind = \"env\"\nprefix = \"X\"\n\
        [providers.v]\nkind = \"vault\"\naddress = \"https://vault.example.com\"\nadress = \"x\"\nauth = { method = \"token\", tokn_file = \"/x\" }\n\
        [providers.a]\nkind = \"aws-sm\"\nregoin = \"eu-west-1\"\n\
        [confluence.\"https://x.example.com\"]\npat = \"env://X\"\npasswd = \"env://X\"\n\
        [jira.\"https://jira.example.com\"]\npat = \"env://X\"\ntokn = \"env://X\"\n\
        [auth]\nfrom = \"env://X\"\nform = \"env://X\"\n\
        [cme]\nbase_cfg = \"/x.json\"\n";
    let t = with_config(Test::new().env("X", "x"), all);
    expect_config_error(&t, &all_needles);
}

/// A scheme that is neither declared nor built in, in a field, in `from` and in `[auth] from`.
#[test]
fn unknown_scheme_in_every_place() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "[jira.\"https://jira.example.com\"]\npat = \"nosuchstore://a/b#c\"\n",
            &["nosuchstore", "pat", "jira.example.com"],
        ),
        (
            "[confluence.\"https://x.example.com\"]\nfrom = \"nosuchstore://a/b\"\n",
            &["nosuchstore", "from", "x.example.com"],
        ),
        (
            "[auth]\nfrom = \"nosuchstore://a/b\"\n",
            &["nosuchstore", "auth", "from"],
        ),
    ];
    for (config, needles) in cases {
        let t = with_config(Test::new(), config);
        let mut expected = vec!["cme-exec.toml", "unknown scheme"];
        expected.extend_from_slice(needles);
        expect_config_error(&t, &expected);
    }
}

/// Malformed references: each names the file, instance, field and the reason.
#[test]
fn malformed_references() {
    // (reference as a TOML basic string's contents, a word of the reason)
    let cases: [(&str, &str); 22] = [
        ("env://", "empty path"),
        ("file://", "empty path"),
        ("file:///", "empty path"),
        ("vault://", "empty path"),
        ("file:///run/secrets/../../etc/shadow", ".."),
        ("file:secrets/../x", ".."),
        ("file:///a/%2e%2E/b", ".."),
        ("vault://secret/./app#pat", ".."),
        ("env://A\\u0000B", "control character"),
        ("env://A%00B", "control character"),
        ("file:///x\\tz", "control character"),
        ("env://A%zz", "percent-encoding"),
        ("env://A%2", "percent-encoding"),
        ("file:///x%ff", "UTF-8"),
        ("env://A B", "whitespace"),
        ("file:///x.json#", "empty #KEY"),
        ("file:///x.json#/a~2", "JSON Pointer"),
        ("vault://secret/app?", "empty query"),
        ("vault://secret/app?version", "NAME=VALUE"),
        ("file://host/etc/x", "ABSOLUTE"),
        ("env://1ABC", "not a variable name"),
        ("env://ABC?x=1", "unknown parameter"),
    ];
    for (reference, reason) in cases {
        let t = with_config(
            Test::new(),
            &format!("[jira.\"https://jira.example.com\"]\npat = \"{reference}\"\n"),
        );
        expect_config_error(&t, &["cme-exec.toml", "jira.example.com", "pat", reason]);
    }
}

/// A config file that is not UTF-8 (with a secret pasted on the same line) and one with a raw
/// NUL byte: named with the line, nothing echoed.
#[test]
fn non_utf8_and_binary_config() {
    let mut t = Test::new();
    let secret = t.sentinel("pasted");
    let mut bytes = format!("{JIRA}pat = \"env://X\"\n# caf").into_bytes();
    bytes.extend_from_slice(b"\xe9 ");
    bytes.extend_from_slice(secret.as_bytes());
    bytes.push(b'\n');
    let t = t.env("X", "x").config_toml("");
    fs::write(t.config_path(), &bytes).unwrap();
    let config = t.config_path();
    let t = t.allow_secret_in(config);
    expect_config_error(&t, &["cme-exec.toml:3", "UTF-8"]);

    let mut t = Test::new();
    let secret = t.sentinel("pasted");
    let mut bytes = format!("{JIRA}pat = \"env://X").into_bytes();
    bytes.push(0);
    bytes.extend_from_slice(format!("{secret}\"\n").as_bytes());
    let t = t.env("X", "x").config_toml("");
    fs::write(t.config_path(), &bytes).unwrap();
    let config = t.config_path();
    let t = t.allow_secret_in(config);
    expect_config_error(&t, &["cme-exec.toml:2"]);
}

/// Secret bytes that are not UTF-8: a whole file, a JSON document read with `#key`, a file of a
/// directory document, and a variable. Each names the reference; nothing is echoed.
#[test]
fn non_utf8_secret_bytes() {
    let invalid = |t: &mut Test| {
        let mut bytes = t.sentinel("bytes").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\x80tail");
        bytes
    };

    let mut t = Test::new();
    let bytes = invalid(&mut t);
    let file = t.secret_file("token", &bytes);
    let t = with_config(t, &format!("{JIRA}pat = {}\n", q(file_ref(&file))));
    expect_config_error(&t, &[&file.display().to_string(), "UTF-8", "pat"]);

    let mut t = Test::new();
    let bytes = invalid(&mut t);
    let mut json = b"{\"pat\": \"".to_vec();
    json.extend_from_slice(&bytes);
    json.extend_from_slice(b"\"}");
    let file = t.secret_file("creds.json", &json);
    let t = with_config(
        t,
        &format!("{JIRA}pat = {}\n", q(format!("{}#pat", file_ref(&file)))),
    );
    expect_config_error(&t, &[&file.display().to_string(), "UTF-8", "pat"]);

    let mut t = Test::new();
    let bytes = invalid(&mut t);
    let dir = t.path().join("secrets/mount");
    fs::create_dir_all(&dir).unwrap();
    t.secret_file("mount/username", "someone@example.com\n");
    t.secret_file("mount/api_token", &bytes);
    let t = with_config(
        t,
        &format!(
            "[confluence.\"https://x.example.com\"]\nfrom = {}\n",
            q(file_ref(&dir))
        ),
    );
    expect_config_error(&t, &["api_token", "UTF-8", "from"]);

    let mut t = Test::new();
    let bytes = invalid(&mut t);
    let t = with_config(
        t.env("CME_TEST_BYTES", OsString::from_vec(bytes)),
        &format!("{JIRA}pat = \"env://CME_TEST_BYTES\"\n"),
    );
    expect_config_error(&t, &["CME_TEST_BYTES", "UTF-8", "pat"]);
}

/// 2 MiB where the documented limit is 1 MiB: a secret file, a JSON document, a directory whose
/// files add up to it, and the config file itself.
#[test]
fn two_mib_secret_is_over_the_limit() {
    const TWO_MIB: usize = 2 * 1024 * 1024;
    let big = |t: &mut Test| {
        let mut value = t.sentinel("big");
        while value.len() < TWO_MIB {
            value.push_str("0123456789abcdef");
        }
        value
    };
    let limit = ["1024 KiB", "1 MiB"];
    let assert_limit = |out: &Output| {
        assert!(
            limit.iter().any(|l| out.stderr.contains(l)),
            "the message should give the limit (1 MiB)\n{}",
            out.describe()
        )
    };

    let mut t = Test::new();
    let value = big(&mut t);
    let file = t.secret_file("token", &value);
    let t = with_config(t, &format!("{JIRA}pat = {}\n", q(file_ref(&file))));
    assert_limit(&expect_config_error(
        &t,
        &[&file.display().to_string(), "pat"],
    ));

    let mut t = Test::new();
    let value = big(&mut t);
    let file = t.secret_file(
        "creds.json",
        serde_json::json!({ "pat": value }).to_string(),
    );
    let t = with_config(
        t,
        &format!("{JIRA}pat = {}\n", q(format!("{}#pat", file_ref(&file)))),
    );
    assert_limit(&expect_config_error(
        &t,
        &[&file.display().to_string(), "pat"],
    ));

    let mut t = Test::new();
    let value = big(&mut t);
    let third = value.len() / 3 + 1;
    let dir = t.path().join("secrets/mount");
    fs::create_dir_all(&dir).unwrap();
    for (i, chunk) in value.as_bytes().chunks(third).enumerate() {
        t.secret_file(&format!("mount/part{i}"), chunk);
    }
    let t = with_config(
        t,
        &format!(
            "[confluence.\"https://x.example.com\"]\nfrom = {}\n",
            q(file_ref(&dir))
        ),
    );
    assert_limit(&expect_config_error(
        &t,
        &[&dir.display().to_string(), "from"],
    ));

    let mut t = Test::new();
    let value = big(&mut t);
    let t = with_config(t, &format!("{JIRA}pat = \"env://X\"\n# {value}\n"));
    assert_limit(&expect_config_error(&t, &["cme-exec.toml"]));
}

/// Values with quotes, backslashes, braces, newlines, tabs, CR, Unicode line separators and
/// non-ASCII text reach the child exactly, through every hand-over and `render`: the JSON cme
/// reads round-trips, and nothing is injected into it. (NUL and the other control characters
/// are refused: `references::control_characters_in_values_are_refused`.)
#[test]
fn values_with_quotes_backslashes_braces_and_newlines_round_trip() {
    let mut t = Test::new();
    let url = "https://x.example.com";
    let username = format!(
        "{}\"}}, \"jira\": {{\"https://evil.example.com\": {{\"pat\": \"x\"}}}}, \"z\": {{\"",
        t.sentinel("inject")
    );
    let api_token = format!(
        "{}\\\"\\\\ \\u0000 }}\n{{\n\t\r\"]",
        t.sentinel("backslash")
    );
    let cookies = format!(
        "{}\t[31m\u{2028}\u{2029} caf\u{e9} \u{1f511} '`$(id)`\n\"second line\"",
        t.sentinel("control")
    );
    let cloud_id = "cloud-\"id\"\\}".to_owned();
    let json = t.secret_file(
        "creds.json",
        serde_json::json!({ "api_token": api_token }).to_string(),
    );
    let whole = t.secret_file("cookies", format!("{cookies}\n"));
    let config = format!(
        "[confluence.{url}]\nusername = \"env://CME_TEST_USER\"\napi_token = {token_ref}\nsession_cookies = {cookies_ref}\ncloud_id = {cloud_id}\n",
        url = q(url),
        token_ref = q(format!("{}#api_token", file_ref(&json))),
        cookies_ref = q(file_ref(&whole)),
        cloud_id = q(&cloud_id),
    );
    let t = t.env("CME_TEST_USER", &username).config_toml(&config);
    let expected: [(&str, &str); 4] = [
        ("username", &username),
        ("api_token", &api_token),
        ("session_cookies", &cookies),
        ("cloud_id", &cloud_id),
    ];
    let check_entries = |what: &str, confluence: &Value| {
        let map = confluence
            .as_object()
            .unwrap_or_else(|| panic!("{what}: auth.confluence is not an object"));
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            [url],
            "{what}: exactly one instance"
        );
        let entry = map[url].as_object().expect("an object of fields");
        let mut names: Vec<&str> = entry.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["api_token", "cloud_id", "session_cookies", "username"],
            "{what}: exactly the configured fields"
        );
        for (field, value) in expected {
            assert!(
                entry[field].as_str() == Some(value),
                "{what}: {field} does not round-trip ({} bytes expected, got {:?})",
                value.len(),
                entry[field].as_str().map(redact)
            );
        }
    };
    let check_config = |what: &str, config: &Value| {
        let top: Vec<&String> = config.as_object().expect("an object").keys().collect();
        assert_eq!(top, ["auth"], "{what}: nothing but auth at the top");
        let auth = config["auth"].as_object().expect("auth is an object");
        for (key, value) in auth {
            match key.as_str() {
                "confluence" => check_entries(what, value),
                "jira" => assert_eq!(value, &serde_json::json!({}), "{what}: no jira entry"),
                other => panic!("{what}: unexpected auth.{other}"),
            }
        }
    };

    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    for via in ["memfd", "file"] {
        t.run_args(os(&[&"run", &"--via", &via, &"--", &child]))
            .assert_success();
        check_config(&format!("--via {via}"), &t.child_env().config_json());
    }

    t.run_args(os(&[&"run", &"--via", &"env", &"--", &child]))
        .assert_success();
    let env = t.child_env();
    let confluence: Value = serde_json::from_str(
        env.var("CME_AUTH__CONFLUENCE")
            .expect("--via env sets CME_AUTH__CONFLUENCE"),
    )
    .expect("CME_AUTH__CONFLUENCE is JSON");
    check_entries("--via env", &confluence);
    assert_eq!(env.var("CME_AUTH__JIRA"), None, "--via env: no jira");

    let output = t.out_dir().join("rendered.json");
    t.run_args(os(&[&"render", &"--output", &output]))
        .assert_success();
    let rendered: Value = serde_json::from_slice(&fs::read(&output).unwrap()).expect("JSON");
    check_config("render", &rendered);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// File safety
// ---------------------------------------------------------------------------------------------

/// [`crate::pat_test`] with a 30-second deadline for each run.
fn pat_test() -> (Test, String) {
    let (t, pat) = crate::pat_test();
    (t.timeout(Duration::from_secs(30)), pat)
}

/// An outside file a link could be pointed at, with known contents.
fn precious(t: &Test, name: &str) -> PathBuf {
    let path = t.path().join("outside").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "precious\n").unwrap();
    path
}

#[track_caller]
fn assert_precious(path: &Path) {
    assert_eq!(
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{} is gone: {e}", path.display())),
        "precious\n",
        "{} was changed through a link",
        path.display()
    );
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Under umask 000 the private directory is still 0700 and the file 0600; `render` gives 0600,
/// or exactly `--mode`, whatever the umask.
#[test]
fn umask_000_still_gives_private_modes() {
    let (t, _) = pat_test();
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.launch(os(&[&"run", &"--via", &"file", &"--", &child]))
        .umask(0)
        .run()
        .assert_success();
    let env = t.child_env();
    assert_eq!(env.config_mode.as_deref(), Some("600"), "the config file");
    assert_eq!(
        env.config_dir_mode.as_deref(),
        Some("700"),
        "the private directory"
    );

    let output = t.out_dir().join("app_data.json");
    for (umask, mode, expected) in [
        (0o000, None, 0o600),
        (0o000, Some("0640"), 0o640),
        (0o277, Some("0640"), 0o640),
        (0o022, Some("0400"), 0o400),
    ] {
        let mut args = os(&[&"render", &"--output", &output]);
        if let Some(mode) = mode {
            args.extend(os(&[&"--mode", &mode]));
        }
        t.launch(args).umask(umask).run().assert_success();
        assert_eq!(
            mode_of(&output),
            expected,
            "render under umask {umask:03o} with --mode {mode:?}"
        );
        fs::remove_file(&output).unwrap();
    }
    t.assert_clean();
}

/// `render --output PATH` where PATH is a symlink (to a file, to nothing, to a directory), a
/// FIFO or a directory: refused, nothing written through it, no hang.
#[test]
fn render_refuses_a_link_or_fifo_at_the_output_path() {
    let (t, pat) = pat_test();
    let target = precious(&t, "victim");
    let missing = t.path().join("outside/created-through-a-link");
    let target_dir = t.path().join("outside/dir");
    fs::create_dir_all(&target_dir).unwrap();
    let output = t.out_dir().join("app_data.json");
    let plants: [(&str, &dyn Fn()); 5] = [
        ("a symlink to a file", &|| {
            std::os::unix::fs::symlink(&target, &output).unwrap()
        }),
        ("a dangling symlink", &|| {
            std::os::unix::fs::symlink(&missing, &output).unwrap()
        }),
        ("a symlink to a directory", &|| {
            std::os::unix::fs::symlink(&target_dir, &output).unwrap()
        }),
        ("a FIFO", &|| mkfifo(&output)),
        ("a directory", &|| fs::create_dir(&output).unwrap()),
    ];
    let (marker, _) = marker_child(&t);
    for (what, plant) in plants {
        plant();
        let out = t.run_args(os(&[&"render", &"--output", &output]));
        assert_refused(&out, &marker, &[&output.display().to_string()]);
        assert_precious(&target);
        assert!(
            !missing.exists(),
            "{what}: a file was created through the link"
        );
        assert_dir_empty(&target_dir);
        let meta = fs::symlink_metadata(&output).unwrap();
        assert!(
            meta.file_type().is_symlink() || meta.file_type().is_fifo() || meta.is_dir(),
            "{what}: the planted entry is left as it was"
        );
        let names: Vec<_> = fs::read_dir(t.out_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            1,
            "{what}: no temporary file is left: {names:?}"
        );
        if meta.is_dir() {
            fs::remove_dir(&output).unwrap();
        } else {
            fs::remove_file(&output).unwrap();
        }
    }
    assert_no_leak_in("the outside directory", fs::read(&target).unwrap(), &pat);
    t.assert_clean();
}

/// `render`'s temporary file next to the output has a random name (`.NAME.cme-exec-RANDOM.tmp`).
/// It once was `.NAME.cme-exec-PID.tmp`, predictable from the pid: a wrapper that `exec`s
/// cme-exec tells the test the pid, and a symlink or a FIFO is planted at that name. Nothing is
/// written through it, nothing hangs, the planted entry is left alone, and the outcome is either
/// a clear error or a complete output file.
#[test]
fn render_with_a_link_or_fifo_at_its_temporary_name() {
    for plant in ["symlink", "fifo"] {
        let (t, pat) = pat_test();
        let target = precious(&t, "victim");
        let dir = t.out_dir().join("cme");
        fs::create_dir(&dir).unwrap();
        let output = dir.join("app_data.json");
        let pid_file = t.out_dir().join("pid");
        let go = t.out_dir().join("go");
        let wrapper = format!(
            "echo $$ > {pid}; while [ ! -e {go} ]; do sleep 0.01; done; exec \"$@\"",
            pid = sh_quote(&pid_file),
            go = sh_quote(&go)
        );
        let running = t
            .launch(os(&[&"render", &"--output", &output]))
            .wrapper(["bash", "-c", &wrapper, "bash"])
            .spawn();
        wait_until("the wrapper wrote its pid", Duration::from_secs(10), || {
            fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
        });
        let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        let tmp = dir.join(format!(".app_data.json.cme-exec-{pid}.tmp"));
        match plant {
            "symlink" => std::os::unix::fs::symlink(&target, &tmp).unwrap(),
            _ => mkfifo(&tmp),
        }
        fs::write(&go, "").unwrap();
        let out = running.wait_timeout(Duration::from_secs(20));
        assert_precious(&target);
        assert!(
            fs::symlink_metadata(&tmp).is_ok(),
            "{plant}: what was planted at the old temporary name was removed by cme-exec"
        );
        match out.code() {
            Some(0) => {
                let meta = fs::symlink_metadata(&output).unwrap();
                assert!(meta.is_file(), "{plant}: the output is a regular file");
                let config: Value =
                    serde_json::from_slice(&fs::read(&output).unwrap()).expect("a complete config");
                assert!(config.pointer("/auth/jira").is_some());
            }
            Some(125) => {
                out.assert_stderr_contains(&output.display().to_string());
                assert!(!output.exists(), "{plant}: no output after a failed render");
            }
            _ => panic!(
                "{plant} at the temporary name: expected exit 0 or 125\n{}",
                out.describe()
            ),
        }
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&output);
        assert_no_leak_in("the link's target", fs::read(&target).unwrap(), &pat);
        t.assert_clean();
    }
}

/// `--dir` that is a symlink (refused with a clear error), a FIFO, a file or missing; and an
/// `XDG_RUNTIME_DIR` that is a symlink: nothing is made through the link, nothing hangs, and the
/// child never starts.
#[test]
fn via_file_refuses_a_link_or_fifo_as_its_directory() {
    let (t, _) = pat_test();
    let (marker, child) = marker_child(&t);
    let real = t.path().join("outside/real-dir");
    fs::create_dir_all(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = t.path().join("link-dir");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let fifo = t.path().join("fifo-dir");
    mkfifo(&fifo);
    let file = t.path().join("file-dir");
    fs::write(&file, "").unwrap();
    let missing = t.path().join("missing-dir");

    let out = t.run_args(os(&[
        &"run", &"--via", &"file", &"--dir", &link, &"--", &child,
    ]));
    assert_refused(&out, &marker, &[&link.display().to_string(), "symlink"]);
    assert_dir_empty(&real);
    for dir in [&fifo, &file, &missing] {
        let out = t.run_args(os(&[
            &"run", &"--via", &"file", &"--dir", dir, &"--", &child,
        ]));
        assert_refused(&out, &marker, &[&dir.display().to_string()]);
    }

    // XDG_RUNTIME_DIR is a link: never made through.
    let out = t
        .launch(os(&[&"run", &"--via", &"file", &"--", &child]))
        .env("XDG_RUNTIME_DIR", &link)
        .run();
    assert_dir_empty(&real);
    match out.code() {
        Some(125) => assert_refused(&out, &marker, &[&link.display().to_string()]),
        Some(0) => {}
        _ => panic!("a symlinked XDG_RUNTIME_DIR\n{}", out.describe()),
    }
    fs::remove_file(&fifo).unwrap();
    t.assert_clean();
}

/// A read-only directory: a read-only bind mount (in a private mount namespace), and a directory
/// the user may not write (as uid 65534 when root). `--via file` and `render` fail with exit 125
/// and the reason; the child never starts.
#[test]
fn read_only_directory() {
    // Permissions: as root, drop to uid 65534 (root could write anywhere); otherwise the
    // directory's mode is enough.
    let (t, _) = pat_test();
    let (marker, child) = marker_child(&t);
    let locked = t.path().join("locked");
    fs::create_dir(&locked).unwrap();
    let output = locked.join("app_data.json");
    let wrapper: Vec<&str> = if is_root() {
        // The user must reach the config, the child and the directory.
        for (path, mode) in [
            (t.path().to_path_buf(), 0o755),
            (t.config_path(), 0o644),
            (locked.clone(), 0o755),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
        Vec::new()
    };
    for args in [
        os(&[&"run", &"--via", &"file", &"--dir", &locked, &"--", &child]),
        os(&[&"render", &"--output", &output]),
    ] {
        let out = t.launch(args).wrapper(&wrapper).run();
        assert_refused(
            &out,
            &marker,
            &[&locked.display().to_string(), "permission denied"],
        );
        assert_dir_empty(&locked);
    }
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    t.assert_clean();

    // A read-only mount.
    let ns = match mount_namespace() {
        Ok(ns) => ns,
        Err(why) => cannot_run(
            "safety::read_only_directory (the read-only mount part)",
            &why,
        ),
    };
    let (t, _) = pat_test();
    let (marker, child) = marker_child(&t);
    let ro = t.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
    let output = ro.join("app_data.json");
    let script = format!(
        "mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} || exit 99\nexec \"$@\"",
        ro = sh_quote(&ro)
    );
    let mut wrapper: Vec<&str> = ns.to_vec();
    wrapper.extend(["sh", "-c", &script, "sh"]);
    for (args, env) in [
        (
            os(&[&"run", &"--via", &"file", &"--dir", &ro, &"--", &child]),
            None,
        ),
        (os(&[&"run", &"--via", &"file", &"--", &child]), Some(&ro)),
        (os(&[&"render", &"--output", &output]), None),
    ] {
        let mut launch = t.launch(args).wrapper(&wrapper);
        if let Some(dir) = env {
            launch = launch.env("XDG_RUNTIME_DIR", dir);
        }
        let out = launch.run();
        assert_refused(&out, &marker, &[&ro.display().to_string(), "read-only"]);
    }
    assert_dir_empty(&ro);
    t.assert_clean();
}

/// A full disk: a 4 KiB tmpfs (in a private mount namespace) and a config bigger than that.
/// `--via file` and `render` fail with exit 125 naming the cause; a truncated config never
/// reaches the child (it never starts); nothing is left on the tmpfs.
#[test]
fn full_disk_never_gives_the_child_a_truncated_config() {
    let ns = match mount_namespace() {
        Ok(ns) => ns,
        Err(why) => cannot_run(
            "safety::full_disk_never_gives_the_child_a_truncated_config",
            &why,
        ),
    };
    let mut t = Test::new();
    let mut cookies = t.sentinel("big");
    while cookies.len() < 64 * 1024 {
        cookies.push_str("0123456789abcdef");
    }
    let t = t.env("CME_TEST_COOKIES", &cookies).config_toml(&format!(
        "{JIRA}session_cookies = \"env://CME_TEST_COOKIES\"\n"
    ));
    let (marker, child) = marker_child(&t);
    let disk = t.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let left = t.out_dir().join("left");
    let script = format!(
        "mount -t tmpfs -o size=4k,mode=0700 tmpfs {disk} || exit 99\n\"$@\"\nrc=$?\nls -A {disk} > {left}\nexit $rc",
        disk = sh_quote(&disk),
        left = sh_quote(&left)
    );
    let mut wrapper: Vec<&str> = ns.to_vec();
    wrapper.extend(["sh", "-c", &script, "sh"]);
    let output = disk.join("app_data.json");
    for args in [
        os(&[&"run", &"--via", &"file", &"--dir", &disk, &"--", &child]),
        os(&[&"render", &"--output", &output]),
    ] {
        let out = t.launch(args).wrapper(&wrapper).run();
        assert_refused(
            &out,
            &marker,
            &[&disk.display().to_string(), "no space left on device"],
        );
        assert_eq!(
            fs::read_to_string(&left).expect("the wrapper listed the tmpfs"),
            "",
            "nothing is left on the full disk"
        );
    }
    assert_dir_empty(&disk);
    t.assert_clean();
}

/// The child plants links in its private directory (to a file and a directory outside, inside a
/// subdirectory) and replaces the config itself with a link: cleanup removes the links and
/// follows none of them; write-back does not read through one.
#[test]
fn cleanup_never_follows_a_link_the_child_planted() {
    let (t, _) = pat_test();
    let file = precious(&t, "file");
    let dir = t.path().join("outside/dir");
    fs::create_dir_all(&dir).unwrap();
    let inner = dir.join("inner");
    fs::write(&inner, "precious\n").unwrap();
    let child = t.script(
        "plant",
        &format!(
            r#"#!/usr/bin/env bash
set -e
d=$(dirname "$CME_CONFIG_PATH")
ln -s {file} "$d/link-to-file"
ln -s {dir} "$d/link-to-dir"
mkdir "$d/sub"
ln -s {dir} "$d/sub/link-to-dir"
ln -s {file} "$d/sub/link-to-file"
ln -sf {file} "$CME_CONFIG_PATH"
echo planted
"#,
            file = sh_quote(&file),
            dir = sh_quote(&dir)
        ),
    );
    let out = t.run_args(os(&[&"run", &"--via", &"file", &"--", &child]));
    out.assert_success().assert_stdout_contains("planted");
    assert_precious(&file);
    assert_precious(&inner);
    t.assert_clean();
}

/// The child moves its private directory away and puts a link to an outside directory in its
/// place: cleanup does not remove anything through that link.
#[test]
fn a_private_directory_replaced_by_a_link_is_not_followed() {
    let (t, _) = pat_test();
    let dir = t.path().join("outside/dir");
    fs::create_dir_all(&dir).unwrap();
    let inner = dir.join("app_data.json");
    fs::write(&inner, "precious\n").unwrap();
    let child = t.script(
        "swap",
        &format!(
            r#"#!/usr/bin/env bash
set -e
d=$(dirname "$CME_CONFIG_PATH")
mv "$d" "$d.moved"
ln -s {dir} "$d"
echo swapped
"#,
            dir = sh_quote(&dir)
        ),
    );
    let out = t.run_args(os(&[&"run", &"--via", &"file", &"--", &child]));
    out.assert_success().assert_stdout_contains("swapped");
    assert_precious(&inner);
    // What the child left in the runtime directory is the child's doing: the test removes it.
    for entry in fs::read_dir(t.runtime_dir()).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
    assert_precious(&inner);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// cme-exec is not dumpable
// ---------------------------------------------------------------------------------------------

/// Runs `<tmp>/bin/proc-probe PID` as `uid` (and the same gid, no groups) and returns what it
/// could do with `/proc/PID`: `environ=read|refused`, `mem=read|refused`, `fd=listed|refused`.
/// `mem` is read at the first mapping `maps` names; when `maps` is unreadable the probe still
/// tries to open `mem`, and an open that works counts as read.
fn probe_proc_as(t: &Test, uid: u32, pid: i32) -> String {
    let probe = t.script(
        "proc-probe",
        r#"#!/bin/sh
pid=$1
if cat /proc/$pid/environ >/dev/null 2>&1; then echo environ=read; else echo environ=refused; fi
start=$(head -n 1 /proc/$pid/maps 2>/dev/null | cut -d- -f1)
if [ -n "$start" ]; then
  if dd if=/proc/$pid/mem of=/dev/null bs=16 count=1 skip=$((0x$start)) iflag=skip_bytes 2>/dev/null; then
    echo mem=read
  else
    echo mem=refused
  fi
elif (exec 3</proc/$pid/mem) 2>/dev/null; then
  echo mem=read
else
  echo mem=refused
fi
if ls /proc/$pid/fd >/dev/null 2>&1 || readlink /proc/$pid/fd/0 >/dev/null 2>&1; then
  echo fd=listed
else
  echo fd=refused
fi
"#,
    );
    let out = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .arg(&probe)
        .arg(pid.to_string())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run setpriv: {e}. To fix: install util-linux (setpriv), run as root")
        });
    assert!(
        out.status.success(),
        "the probe as uid {uid} failed: {}. To fix: run the tests as root (CI does), with \
         util-linux's setpriv",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', " ")
}

/// cme-exec, holding secrets, is not dumpable (PR_SET_DUMPABLE 0), so its
/// /proc files belong to root: neither the same non-root user nor another can read its
/// `environ` or `mem` or list its `fd`. The child (dumpable, as cme would be) is readable by its
/// own user with the same probe, which shows the probe can see.
#[test]
fn cme_exec_is_not_dumpable_by_other_processes() {
    const USER: u32 = 65534;
    const OTHER: u32 = 65533;
    let (t, _) = pat_test();
    assert!(
        crate::support::launch::is_root(),
        "this test plays two non-root users with setpriv and needs root. To fix: run the tests \
         as root (CI does)"
    );
    // Everything the run as USER needs: the test directory traversable, its config readable,
    // somewhere to record pids.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for dir in ["work", "out", "run", "tmp", "config"] {
        crate::file_provider::chown_to(&t.path().join(dir), USER);
    }
    crate::file_provider::chown_to(&t.config_path(), USER);
    let pids = t.out_dir().join("pids");
    let release = t.out_dir().join("release");
    let child = t.script(
        "wait-child",
        &format!(
            r#"#!/bin/sh
echo "$$ $PPID" > {pids}
echo ready
while [ ! -e {release} ]; do sleep 0.02; done
"#,
            pids = sh_quote(&pids),
            release = sh_quote(&release)
        ),
    );
    let mut running = t
        .launch([
            OsStr::new("run"),
            OsStr::new("--no-mask"),
            OsStr::new("--"),
            child.as_os_str(),
        ])
        .wrapper([
            "setpriv".to_owned(),
            format!("--reuid={USER}"),
            format!("--regid={USER}"),
            "--clear-groups".into(),
        ])
        .spawn();
    running.wait_for_line("ready", std::time::Duration::from_secs(30));
    let text = fs::read_to_string(&pids).unwrap();
    let (child_pid, cme_exec_pid) = text
        .trim()
        .split_once(' ')
        .map(|(c, p)| (c.parse::<i32>().unwrap(), p.parse::<i32>().unwrap()))
        .unwrap();
    assert_eq!(
        cme_exec_pid,
        running.pid(),
        "the child's parent is cme-exec"
    );
    let owner = fs::metadata(format!("/proc/{cme_exec_pid}/environ"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();

    let child_seen = probe_proc_as(&t, USER, child_pid);
    let same_user = probe_proc_as(&t, USER, cme_exec_pid);
    let other_user = probe_proc_as(&t, OTHER, cme_exec_pid);
    fs::write(&release, "").unwrap();
    let out = running.wait();
    out.assert_success();

    assert_eq!(
        child_seen, "environ=read mem=read fd=listed",
        "the probe sees a dumpable process of its own user"
    );
    assert_eq!(owner, 0, "cme-exec's /proc files belong to root");
    assert_eq!(
        same_user, "environ=refused mem=refused fd=refused",
        "cme-exec's own user (another process of uid {USER})"
    );
    assert_eq!(
        other_user, "environ=refused mem=refused fd=refused",
        "another user (uid {OTHER})"
    );
    t.assert_clean();
}
