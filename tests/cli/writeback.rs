//! Write-back never loses a change (issue 13): runs that save at the same time, a file edited
//! while a run is in progress, a conflicting edit of the same key, a broken or read-only file,
//! and a lock left by a killed process. The child is the real cme (`cme config set`), as a
//! user would run it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::basic;
use crate::support::scripts::sh_quote;
use crate::support::*;

const URL: &str = "https://company.atlassian.net";

/// A test whose base config is cme's own file (XDG location), holding `contents`.
fn with_base(contents: &str) -> (crate::Basic, PathBuf) {
    let b = basic(URL);
    let base = b.t.cme_default_config();
    fs::create_dir_all(base.parent().unwrap()).unwrap();
    fs::write(&base, contents).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o600)).unwrap();
    (b, base)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).expect("the base config stays JSON")
}

/// A child that prints `ready`, waits until `go` exists, then runs `cme config set SETTING`.
fn set_after_go(t: &Test, name: &str, go: &Path, setting: &str) -> PathBuf {
    let cme = Venv::get().cme();
    t.script(
        name,
        &format!(
            "#!/usr/bin/env bash\necho ready\nwhile [ ! -e {go} ]; do sleep 0.02; done\nexec {cme} config set '{setting}'\n",
            go = sh_quote(go),
            cme = sh_quote(&cme),
        ),
    )
}

/// Eight runs started together, each `cme config set` of a different key: all eight changes are
/// in the file afterwards (before the lock and re-read, one of them survived).
#[test]
fn eight_concurrent_config_sets_all_survive() {
    let (b, base) = with_base(r#"{"export":{"log_level":"INFO"}}"#);
    let settings = [
        ("output_path", json!("/exports/eight")),
        ("include_toc", json!(false)),
        ("filename_length", json!(99)),
        ("embed_images", json!(true)),
        ("page_breadcrumbs", json!(false)),
        ("filename_lowercase", json!(true)),
        ("image_captions", json!(true)),
        ("skip_unchanged", json!(false)),
    ];
    let go = b.t.path().join("go");
    let mut running: Vec<_> = settings
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let raw = match value {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let child = set_after_go(
                &b.t,
                &format!("set-{i}"),
                &go,
                &format!("export.{key}={raw}"),
            );
            let mut r = b.t.spawn_args([OsStr::new("--"), child.as_os_str()]);
            r.wait_for_line("ready", Duration::from_secs(30));
            r
        })
        .collect();
    // Every cme starts at once, so their saves overlap.
    fs::write(&go, "").unwrap();
    for r in running.drain(..) {
        r.wait_timeout(Duration::from_secs(120)).assert_success();
    }
    let v = read_json(&base);
    for (key, value) in &settings {
        assert_eq!(&v["export"][key], value, "export.{key} was lost: {v}");
    }
    assert_eq!(v["export"]["log_level"], json!("INFO"));
    b.t.assert_clean();
}

/// The user edits the base config while a run is in progress: the edit survives the run's
/// write-back, and the run's own change is added to it.
#[test]
fn an_edit_during_the_run_survives_and_the_runs_change_is_added() {
    let (b, base) = with_base(r#"{"export":{"log_level":"INFO"}}"#);
    let go = b.t.path().join("go");
    let child = set_after_go(&b.t, "set", &go, "export.include_toc=false");
    let mut r = b.t.spawn_args([OsStr::new("--"), child.as_os_str()]);
    r.wait_for_line("ready", Duration::from_secs(30));
    fs::write(
        &base,
        r#"{"export":{"log_level":"DEBUG","output_path":"/edited/by/me"}}"#,
    )
    .unwrap();
    fs::write(&go, "").unwrap();
    let out = r.wait_timeout(Duration::from_secs(60));
    out.assert_success();
    let v = read_json(&base);
    assert_eq!(
        v["export"]["log_level"],
        json!("DEBUG"),
        "{}",
        out.describe()
    );
    assert_eq!(v["export"]["output_path"], json!("/edited/by/me"));
    assert_eq!(
        v["export"]["include_toc"],
        json!(false),
        "{}",
        out.describe()
    );
    b.t.assert_clean();
}

/// The same key changed in the file and by cme: the file's value is kept, and the warning names
/// the key and the command that would save the run's value.
#[test]
fn a_conflicting_edit_keeps_the_file_and_names_the_key() {
    let (b, base) = with_base(r#"{"export":{"log_level":"INFO"}}"#);
    let go = b.t.path().join("go");
    let child = set_after_go(&b.t, "set", &go, "export.log_level=WARNING");
    let mut r = b.t.spawn_args([OsStr::new("--"), child.as_os_str()]);
    r.wait_for_line("ready", Duration::from_secs(30));
    fs::write(&base, r#"{"export":{"log_level":"ERROR"}}"#).unwrap();
    fs::write(&go, "").unwrap();
    let out = r.wait_timeout(Duration::from_secs(60));
    out.assert_success();
    assert_eq!(read_json(&base)["export"]["log_level"], json!("ERROR"));
    out.assert_stderr_contains("export.log_level")
        .assert_stderr_contains("cme config set export.log_level=WARNING");
    b.t.assert_clean();
}

/// A base config made invalid, or read-only (0444), during the run is left byte for byte; the
/// warning names the keys not saved; the child's exit code is kept.
#[test]
fn a_broken_or_read_only_base_config_is_left_as_it_is() {
    for (name, contents, mode) in [
        ("broken", r#"{"export":{"log_level":"#, 0o600),
        ("read-only", r#"{"export":{"log_level":"INFO"}}"#, 0o444),
    ] {
        let (b, base) = with_base(r#"{"export":{"log_level":"INFO"}}"#);
        let go = b.t.path().join("go");
        let child = set_after_go(&b.t, "set", &go, "export.include_toc=false");
        let mut r = b.t.spawn_args([OsStr::new("--"), child.as_os_str()]);
        r.wait_for_line("ready", Duration::from_secs(30));
        fs::write(&base, contents).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(mode)).unwrap();
        fs::write(&go, "").unwrap();
        let out = r.wait_timeout(Duration::from_secs(60));
        out.assert_success();
        assert_eq!(fs::read_to_string(&base).unwrap(), contents, "{name}");
        assert_eq!(mode_of(&base), mode, "{name}");
        out.assert_stderr_contains("left exactly as it is")
            .assert_stderr_contains("not saved: export.include_toc");
        b.t.assert_clean();
    }
}

/// A process killed with SIGKILL while it held the write-back lock does not block the next run:
/// the kernel drops an flock with its holder.
#[test]
fn a_lock_left_by_a_killed_process_does_not_block() {
    let (b, base) = with_base(r#"{"export":{"log_level":"INFO"}}"#);
    let lock = base.parent().unwrap().join(".app_data.json.cme-exec-lock");
    // -o: the lock is held by flock(1) itself, not inherited by `sleep`.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "600"])
        .spawn()
        .expect("flock(1) from util-linux is needed for this test: apt-get install util-linux");
    wait_until("flock(1) holds the lock", Duration::from_secs(10), || {
        Command::new("flock")
            .args(["-n", "-E", "3"])
            .arg(&lock)
            .arg("true")
            .status()
            .is_ok_and(|s| s.code() == Some(3))
    });
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let cme = Venv::get().cme();
    let out = b.t.run_args([
        OsStr::new("--grace"),
        OsStr::new("2"),
        OsStr::new("--"),
        cme.as_os_str(),
        OsStr::new("config"),
        OsStr::new("set"),
        OsStr::new("export.include_toc=false"),
    ]);
    out.assert_success();
    assert_eq!(
        read_json(&base)["export"]["include_toc"],
        json!(false),
        "{}",
        out.describe()
    );
    b.t.assert_clean();
}
