//! Write-back never loses a change: runs that save at the same time, a file edited
//! while a run is in progress, a conflicting edit of the same key, a broken or read-only file,
//! and a lock left by a killed process. And it writes only into the file it loaded: a link or
//! another account's file planted at its name during the run is left alone; a read-only mount
//! and an unreadable file are named. The child is the real cme (`cme config set`), as a
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

// ---------------------------------------------------------------------------------------------
// Write-back writes only into the file it loaded; a base config that cannot be saved is named
// ---------------------------------------------------------------------------------------------

/// The other local account these tests play (nobody).
const OTHER: u32 = 65534;

#[track_caller]
fn needs_root(test: &str) {
    assert!(
        crate::support::launch::is_root(),
        "{test} plays a second local account (uid {OTHER}) with chown and setpriv and needs root. \
         To fix: run the tests as root (CI does)"
    );
}

#[track_caller]
fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
}

/// `setpriv` as the other account, no supplementary groups.
fn as_other() -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={OTHER}"),
        format!("--regid={OTHER}"),
        "--clear-groups".into(),
    ]
}

/// Runs `sh -c script` as the other account, and fails the test when it fails.
#[track_caller]
fn run_as_other(script: &str) {
    let out = Command::new(&as_other()[0])
        .args(&as_other()[1..])
        .args(["sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run setpriv: {e}. To fix: install util-linux (setpriv), run as root")
        });
    assert!(
        out.status.success(),
        "as uid {OTHER}: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The base config is in a directory its group can write (accepted: only a directory every user
/// can write is refused), and another account of that group replaces `app_data.json` during the
/// run: with a symbolic link to one of the user's files, or with a file of its own. Write-back
/// writes neither through the link nor into the planted file; it names the keys not saved. (It
/// used to follow the link and overwrite the user's file.)
#[test]
fn a_link_or_file_planted_during_the_run_is_left_alone() {
    needs_root("writeback::a_link_or_file_planted_during_the_run_is_left_alone");
    for case in ["a link", "a file of its own"] {
        let b = crate::basic_with_extra(URL, "\n[cme]\nbase_config = \"shared/app_data.json\"\n");
        let t = &b.t;
        let shared = t.path().join("shared");
        fs::create_dir(&shared).unwrap();
        chown(&shared, 0, OTHER);
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o770)).unwrap();
        let base = t.write_file("shared/app_data.json", r#"{"export":{"log_level":"INFO"}}"#);
        let victim = t.write_file("out/victim.json", r#"{"mine": true}"#);
        // The other account reaches the shared directory.
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();

        let go = t.path().join("go");
        let child = set_after_go(t, "set", &go, "export.include_toc=false");
        let mut r = t.spawn_args([OsStr::new("--"), child.as_os_str()]);
        r.wait_for_line("ready", Duration::from_secs(30));
        let plant = if case == "a link" {
            format!("ln -s {} .planted", sh_quote(&victim))
        } else {
            r#"printf '{"connection_config":{"verify_ssl":false}}' > .planted"#.to_owned()
        };
        run_as_other(&format!(
            "cd {} && {plant} && mv -T .planted app_data.json",
            sh_quote(&shared)
        ));
        fs::write(&go, "").unwrap();
        let out = r.wait_timeout(Duration::from_secs(60));
        out.assert_success();
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            r#"{"mine": true}"#,
            "{case}: write-back wrote into the user's file through the link\n{}",
            out.describe()
        );
        let why = if case == "a link" {
            format!(
                "the base config {} was replaced by a symbolic link during the run; nothing was written through it; it was left exactly as it is",
                base.display()
            )
        } else {
            assert_eq!(
                fs::read_to_string(&base).unwrap(),
                r#"{"connection_config":{"verify_ssl":false}}"#,
                "{case}\n{}",
                out.describe()
            );
            format!(
                "the base config {} was replaced by another file during the run (not the one cme-exec read); it was left exactly as it is",
                base.display()
            )
        };
        out.assert_stderr_contains(&why)
            .assert_stderr_contains("not saved: export.include_toc");
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    }
}

/// The base config's directory is a read-only mount (a private mount namespace: `unshare -m`
/// and a read-only bind mount): write-back says so, names the keys not saved, and leaves the
/// file byte for byte. (It used to fail on the lock file with a bare "Read-only file system".)
#[test]
fn a_base_config_on_a_read_only_filesystem_is_left_as_it_is() {
    let ns = match crate::support::launch::mount_namespace() {
        Ok(ns) => ns,
        Err(why) => crate::support::launch::cannot_run(
            "writeback::a_base_config_on_a_read_only_filesystem_is_left_as_it_is",
            &why,
        ),
    };
    let original = r#"{"export":{"log_level":"INFO"}}"#;
    let (b, base) = with_base(original);
    let dir = base.parent().unwrap();
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,ro,bind {d} || exit 99\nexec \"$@\"",
        d = sh_quote(dir)
    );
    let mut wrapper: Vec<&str> = ns.to_vec();
    wrapper.extend(["sh", "-c", &script, "sh"]);
    let cme = Venv::get().cme();
    let out =
        b.t.launch([
            OsStr::new("--"),
            cme.as_os_str(),
            OsStr::new("config"),
            OsStr::new("set"),
            OsStr::new("export.include_toc=false"),
        ])
        .wrapper(&wrapper)
        .run();
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "the base config {} is on a read-only filesystem; it was left exactly as it is",
        base.display()
    ))
    .assert_stderr_contains("not saved: export.include_toc");
    assert_eq!(fs::read_to_string(&base).unwrap(), original);
    b.t.assert_clean();
}

/// The user makes the base config unreadable (0200) during a run (cme-exec runs as a non-root
/// account here: root reads any file): write-back says it cannot be read, names the keys not
/// saved and leaves the file and its mode as they are.
#[test]
fn an_unreadable_base_config_is_left_as_it_is() {
    needs_root("writeback::an_unreadable_base_config_is_left_as_it_is");
    let original = r#"{"export":{"log_level":"INFO"}}"#;
    let (b, base) = with_base(original);
    let t = &b.t;
    // Everything the run as the other account needs is its own.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for p in [
        t.config_path(),
        t.path().join("secrets"),
        b.token_file.clone(),
        t.config_home(),
        base.parent().unwrap().to_owned(),
        base.clone(),
    ] {
        chown(&p, OTHER, OTHER);
    }
    for dir in ["work", "out", "run", "tmp"] {
        chown(&t.path().join(dir), OTHER, OTHER);
    }
    let go = t.path().join("go");
    // A shell child that rewrites the config it was given as cme would after `config set`
    // (the other account may not reach the Python that runs cme).
    let child = t.script(
        "set",
        &format!(
            "#!/bin/sh\necho ready\nwhile [ ! -e {go} ]; do sleep 0.02; done\nprintf '%s' '{{\"export\":{{\"log_level\":\"INFO\",\"include_toc\":false}}}}' > \"$CME_CONFIG_PATH\"\n",
            go = sh_quote(&go)
        ),
    );
    let mut r = t
        .launch([OsStr::new("--"), child.as_os_str()])
        .wrapper(as_other())
        .spawn();
    r.wait_for_line("ready", Duration::from_secs(30));
    fs::set_permissions(&base, fs::Permissions::from_mode(0o200)).unwrap();
    fs::write(&go, "").unwrap();
    let out = r.wait_timeout(Duration::from_secs(60));
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "the base config {} cannot be read; it was left exactly as it is",
        base.display()
    ))
    .assert_stderr_contains("Permission denied")
    .assert_stderr_contains("not saved: export.include_toc");
    assert_eq!(mode_of(&base), 0o200);
    assert_eq!(fs::read_to_string(&base).unwrap(), original);
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    t.assert_clean();
}

/// The base config does not exist when the run starts, in a directory every user may write with
/// the sticky bit (as `/tmp`, accepted: no one can replace another's file there), and another
/// account creates it during the run. Write-back leaves that file alone: it belongs to another
/// user. (It used to merge the run's change into it and take it over.)
#[test]
fn a_file_another_account_creates_during_the_run_is_left_alone() {
    needs_root("writeback::a_file_another_account_creates_during_the_run_is_left_alone");
    let b = crate::basic_with_extra(URL, "\n[cme]\nbase_config = \"sticky/app_data.json\"\n");
    let t = &b.t;
    let sticky = t.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let base = sticky.join("app_data.json");
    let go = t.path().join("go");
    let child = set_after_go(t, "set", &go, "export.include_toc=false");
    let mut r = t.spawn_args([OsStr::new("--"), child.as_os_str()]);
    r.wait_for_line("ready", Duration::from_secs(30));
    let theirs = r#"{"connection_config":{"verify_ssl":false}}"#;
    run_as_other(&format!("printf '%s' '{theirs}' > {}", sh_quote(&base)));
    fs::write(&go, "").unwrap();
    let out = r.wait_timeout(Duration::from_secs(60));
    out.assert_success();
    out.assert_stderr_contains(&format!(
        "the base config {} now belongs to another user (uid {OTHER}); it was left exactly as it is",
        base.display()
    ))
    .assert_stderr_contains("not saved: export.include_toc");
    assert_eq!(fs::read_to_string(&base).unwrap(), theirs);
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&fs::metadata(&base).unwrap()),
        OTHER
    );
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Root's files are trusted as the user's own: a run as a non-root account whose base config
/// root created in the account's directory (`sudo cme config set ...`) uses it, and write-back
/// saves into it.
#[test]
fn a_base_config_root_owns_serves_a_non_root_run() {
    needs_root("writeback::a_base_config_root_owns_serves_a_non_root_run");
    let original = r#"{"export":{"log_level":"INFO"}}"#;
    let (b, base) = with_base(original);
    let t = &b.t;
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o644)).unwrap();
    for p in [
        t.config_path(),
        t.path().join("secrets"),
        b.token_file.clone(),
        t.config_home(),
        base.parent().unwrap().to_owned(),
    ] {
        chown(&p, OTHER, OTHER);
    }
    for dir in ["work", "out", "run", "tmp"] {
        chown(&t.path().join(dir), OTHER, OTHER);
    }
    let child = t.script(
        "set",
        "#!/bin/sh\nprintf '%s' '{\"export\":{\"log_level\":\"INFO\",\"include_toc\":false}}' > \"$CME_CONFIG_PATH\"\n",
    );
    let out = t
        .launch([OsStr::new("--"), child.as_os_str()])
        .wrapper(as_other())
        .run();
    out.assert_success();
    assert!(!out.stderr.contains("warning"), "{}", out.describe());
    assert_eq!(
        read_json(&base),
        json!({"export": {"log_level": "INFO", "include_toc": false}})
    );
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    t.assert_clean();
}
