use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use super::*;
use crate::config::Field;
use crate::resolve::{Auth, InstanceAuth, Origin, Value as Resolved};

type Entry<'a> = (Product, &'a str, &'a [(Field, &'a str)]);

fn auth(entries: &[Entry<'_>]) -> Auth {
    let mut a = Auth::default();
    for (product, url, fields) in entries {
        let mut f = BTreeMap::new();
        for (field, v) in *fields {
            f.insert(
                *field,
                Resolved {
                    secret: SecretString::from((*v).to_owned()),
                    origin: Origin::Literal,
                },
            );
        }
        a.instances
            .insert((*product, (*url).to_owned()), InstanceAuth { fields: f });
    }
    a
}

fn base(doc: Value) -> BaseConfig {
    BaseConfig {
        path: "base.json".into(),
        exists: true,
        doc: doc.as_object().unwrap().clone(),
        mode: Some(0o600),
        size_hint: 0,
        origin: None,
    }
}

fn rendered(b: &BaseConfig, a: &Auth) -> Value {
    serde_json::from_slice(&render(b, a)).unwrap()
}

#[test]
fn overlays_auth_on_the_base_and_keeps_its_order_and_settings() {
    let b = base(json!({
        "export": {"log_level": "DEBUG"},
        "auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": "c1", "username": ""}},
                 "jira": {"https://other.example.com": {"cloud_id": "c2"}}},
        "connection_config": {"max_workers": 3}
    }));
    let a = auth(&[
        (
            Product::Confluence,
            "https://x.atlassian.net",
            &[(Field::Username, "u"), (Field::ApiToken, "t")],
        ),
        (
            Product::Jira,
            "https://jira.example.com",
            &[(Field::Pat, "p")],
        ),
    ]);
    let out = rendered(&b, &a);
    let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["export", "auth", "connection_config"]);
    assert_eq!(
        out["auth"]["confluence"],
        json!({"https://x.atlassian.net": {"cloud_id": "c1", "username": "u", "api_token": "t"}})
    );
    assert_eq!(
        out["auth"]["jira"]["https://other.example.com"],
        json!({"cloud_id": "c2"})
    );
    assert_eq!(
        out["auth"]["jira"]["https://jira.example.com"],
        json!({"pat": "p"})
    );
    assert!(schema::validate(&out).is_empty());
}

#[test]
fn an_empty_base_gets_only_auth() {
    let b = base(json!({}));
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Pat, "p")],
    )]);
    assert_eq!(
        rendered(&b, &a),
        json!({"auth": {"confluence": {"https://x.atlassian.net": {"pat": "p"}}, "jira": {}}})
    );
}

#[test]
fn values_round_trip_exactly() {
    let nasty = "q\"uote \\back } {\"a\":1} \n new\tline \u{1F511} </script>";
    let b = base(json!({}));
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::ApiToken, nasty), (Field::Username, "u")],
    )]);
    let out = rendered(&b, &a);
    assert_eq!(
        out["auth"]["confluence"]["https://x.atlassian.net"]["api_token"],
        nasty
    );
    assert_eq!(
        out["auth"].as_object().unwrap().len(),
        2,
        "no injected keys"
    );
}

#[test]
fn render_product_for_via_env() {
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    assert!(render_product(&a, Product::Confluence).is_none());
    let v: Value = serde_json::from_slice(&render_product(&a, Product::Jira).unwrap()).unwrap();
    assert_eq!(v, json!({"https://jira.example.com": {"pat": "p"}}));
}

#[test]
fn base_configs_with_secrets_or_bad_values_are_refused() {
    let e = base::check(
        json!({"auth": {"confluence": {"https://x": {"api_token": "S3NT1NEL"}}}})
            .as_object()
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("auth.confluence[\"https://x\"].api_token: holds a secret"),
        "{e}"
    );
    assert!(!e.contains("S3NT1NEL"));
    let e = base::check(
        json!({"export": {"log_level": "LOUD"}})
            .as_object()
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("export.log_level"), "{e}");
    assert!(base::check(
        json!({"auth": {"jira": {"https://x": {"pat": "", "cloud_id": "c"}}}})
            .as_object()
            .unwrap()
    )
    .is_ok());
}

#[test]
fn base_config_parse_errors_show_no_text() {
    let e = base::parse(b"{\"export\": S3NT1NEL}").unwrap_err();
    assert!(e.contains("line 1") && !e.contains("S3NT1NEL"), "{e}");
    assert!(base::parse(b"  \n").unwrap().is_empty());
    assert!(base::parse(b"[1]").unwrap_err().contains("an array"));
}

/// What cme writes when it stores anything: the whole model with every default filled in.
fn as_cme_rewrites(mut doc: Value) -> Vec<u8> {
    let defaults = schema::defaults().clone();
    fn merge(into: &mut Value, from: &Value) {
        if let (Value::Object(i), Value::Object(f)) = (into, from) {
            for (k, v) in f {
                match i.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        i.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    merge(&mut doc, &defaults);
    serde_json::to_vec_pretty(&doc).unwrap()
}

#[test]
fn write_back_keeps_only_what_cme_changed_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    std::fs::write(&path, r#"{"export": {"log_level": "DEBUG"}, "mine": 1}"#).unwrap();
    let b = base::load(&path).unwrap();
    let mode_before = b.mode;
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Username, "u"), (Field::ApiToken, "S3NT1NEL")],
    )]);
    let handed = render(&b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    after["export"]["log_level"] = json!("WARNING");
    after["auth"]["confluence"]["https://x.atlassian.net"]["cloud_id"] = json!("cloud-1");
    after["auth"]["confluence"]["https://x.atlassian.net"]["api_token"] = json!("CHANGED-S3NT1NEL");
    let report =
        writeback::write_back(&b, &handed, &as_cme_rewrites(after), Duration::from_secs(5))
            .unwrap();
    assert_eq!(
        report.written,
        [
            "export.log_level",
            "auth.confluence[\"https://x.atlassian.net\"].cloud_id"
        ]
    );
    assert_eq!(
        report.dropped_secrets,
        ["auth.confluence[\"https://x.atlassian.net\"].api_token"]
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("S3NT1NEL"), "{written}");
    let v: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        v,
        json!({"export": {"log_level": "WARNING"}, "mine": 1,
               "auth": {"confluence": {"https://x.atlassian.net": {"cloud_id": "cloud-1"}}}})
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        Some(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777),
        mode_before
    );
}

#[test]
fn write_back_with_nothing_changed_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    let b = base::load(&path).unwrap();
    assert!(!b.exists);
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    let handed = render(&b, &a);
    let after: Value = serde_json::from_slice(&handed).unwrap();
    let report =
        writeback::write_back(&b, &handed, &as_cme_rewrites(after), Duration::from_secs(5))
            .unwrap();
    assert_eq!(report, writeback::Report::default());
    assert!(
        !path.exists(),
        "a rewrite with defaults only is not a change"
    );
}

#[test]
fn write_back_creates_a_missing_base_config_privately() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/app_data.json");
    let b = base::load(&path).unwrap();
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    let handed = render(&b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    after["export"] = json!({"log_level": "ERROR"});
    writeback::write_back(
        &b,
        &handed,
        &serde_json::to_vec(&after).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v, json!({"export": {"log_level": "ERROR"}}));
}

/// A run's change as cme writes it: the handed config with `edits` applied (export keys).
fn run_with(b: &BaseConfig, edits: &[(&str, Value)]) -> (Vec<u8>, Vec<u8>) {
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Username, "u"), (Field::ApiToken, "S3NT1NEL")],
    )]);
    let handed = render(b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    for (key, value) in edits {
        after["export"][*key] = value.clone();
    }
    (handed.to_vec(), as_cme_rewrites(after))
}

fn base_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn write_back_keeps_an_edit_made_during_the_run() {
    let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    // The user edits another key while the run is in progress.
    std::fs::write(
        &path,
        r#"{"export": {"log_level": "DEBUG", "output_path": "/mine"}}"#,
    )
    .unwrap();
    let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
    assert_eq!(report.written, ["export.include_toc"]);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"export": {"log_level": "DEBUG", "output_path": "/mine", "include_toc": false}})
    );
}

#[test]
fn write_back_keeps_the_files_value_when_both_changed_a_key() {
    let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(
        &b,
        &[
            ("log_level", json!("WARNING")),
            ("output_path", json!("/run's dir")),
        ],
    );
    std::fs::write(
        &path,
        r#"{"export": {"log_level": "DEBUG", "output_path": "/mine"}}"#,
    )
    .unwrap();
    let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(
        report.conflicts,
        [
            writeback::Conflict {
                key: "export.log_level".into(),
                save_with: "cme config set export.log_level=WARNING".into()
            },
            writeback::Conflict {
                key: "export.output_path".into(),
                save_with: r#"cme config set 'export.output_path=/run'\''s dir'"#.into()
            }
        ]
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"export": {"log_level": "DEBUG", "output_path": "/mine"}})
    );
}

#[test]
fn write_back_leaves_a_broken_or_read_only_file_byte_for_byte() {
    use std::os::unix::fs::PermissionsExt as _;
    for (name, contents, mode) in [
        ("broken", r#"{"export": {"log_level": "#, 0o600),
        ("read-only", r#"{"export": {"log_level": "INFO"}}"#, 0o444),
    ] {
        let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
        let b = base::load(&path).unwrap();
        let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
        assert!(
            err.message().contains("left exactly as it is"),
            "{name}: {err}"
        );
        assert!(
            err.details()
                .iter()
                .any(|d| d == "not saved: export.include_toc"),
            "{name}: the key that was not saved is named: {err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), contents, "{name}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            mode,
            "{name}"
        );
        assert!(!err.to_string().contains("S3NT1NEL"));
    }
}

#[test]
fn write_back_waits_for_the_lock_only_until_its_deadline() {
    let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(writeback::lock_path(&path))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&holder), libc::LOCK_EX) },
        0
    );
    let err = writeback::write_back(&b, &handed, &after, Duration::from_millis(200)).unwrap_err();
    assert!(err.message().contains("held the lock"), "{err}");
    assert!(err
        .details()
        .iter()
        .any(|d| d == "not saved: export.include_toc"));
    drop(holder);
    let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
    assert_eq!(report.written, ["export.include_toc"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Runs that started from the same file and each changed different keys, saving at the same
    /// time: the file ends with every change.
    #[test]
    fn concurrent_write_backs_keep_every_change(
        keys in proptest::sample::subsequence(
            vec!["include_toc", "embed_images", "page_breadcrumbs", "filename_lowercase",
                 "image_captions", "skip_unchanged", "cleanup_stale", "comment_headings"],
            1..=8,
        ),
    ) {
        let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
        let b = base::load(&path).unwrap();
        let defaults = schema::defaults();
        let runs: Vec<(String, Value, Vec<u8>, Vec<u8>)> = keys
            .iter()
            .map(|k| {
                let default = defaults["export"][*k].as_bool().unwrap_or(false);
                let value = json!(!default);
                let (handed, after) = run_with(&b, &[(k, value.clone())]);
                (k.to_string(), value, handed, after)
            })
            .collect();
        std::thread::scope(|s| {
            for (_, _, handed, after) in &runs {
                let b = &b;
                s.spawn(move || writeback::write_back(b, handed, after, WAIT).unwrap());
            }
        });
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, value, _, _) in &runs {
            proptest::prop_assert_eq!(&v["export"][k.as_str()], value, "{} lost: {}", k, v);
        }
        proptest::prop_assert_eq!(&v["export"]["log_level"], &json!("INFO"));
    }
}

// ---------------------------------------------------------------------------------------------
// Write-back writes only into the file it loaded; the base config's place is checked at load
// ---------------------------------------------------------------------------------------------

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// A link planted at the lock file's name is never followed: the save stops, and the link's
/// target is neither created nor locked.
#[test]
fn write_back_never_opens_a_lock_file_through_a_link() {
    let (dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    let elsewhere = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, writeback::lock_path(&path)).unwrap();
    let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
    assert!(err.message().contains("cannot open the lock file"), "{err}");
    assert!(err
        .details()
        .iter()
        .any(|d| d == "not saved: export.include_toc"));
    assert!(!elsewhere.exists(), "the lock was opened through the link");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"{"export": {"log_level": "INFO"}}"#
    );
}

/// The file at the base config's name during the save must be the one read at load (or the one
/// the last save wrote): a symbolic link or another file put there during the run is left alone
/// and nothing is written through or into it.
#[test]
fn write_back_writes_only_into_the_file_it_loaded() {
    for case in ["a link", "another file"] {
        let (dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
        let b = base::load(&path).unwrap();
        let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
        let victim = dir.path().join("victim.json");
        std::fs::write(&victim, r#"{"mine": true}"#).unwrap();
        let planted = dir.path().join("planted");
        if case == "a link" {
            std::os::unix::fs::symlink(&victim, &planted).unwrap();
        } else {
            std::fs::write(&planted, r#"{"export": {"log_level": "DEBUG"}}"#).unwrap();
        }
        std::fs::rename(&planted, &path).unwrap();
        let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
        let why = if case == "a link" {
            "was replaced by a symbolic link during the run; nothing was written through it"
        } else {
            "was replaced by another file during the run (not the one cme-exec read)"
        };
        assert!(err.message().contains(why), "{case}: {err}");
        assert!(
            err.message().contains("left exactly as it is"),
            "{case}: {err}"
        );
        assert!(
            err.details()
                .iter()
                .any(|d| d == "not saved: export.include_toc"),
            "{case}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            r#"{"mine": true}"#,
            "{case}"
        );
        if case == "a link" {
            assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
        } else {
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                r#"{"export": {"log_level": "DEBUG"}}"#
            );
        }
    }
}

/// A file of exactly 4 MiB is a base config; one byte more is refused at load and left alone by
/// write-back; a file that grows past the size `stat` gave while it is read is still stopped.
#[test]
fn the_4_mib_limit_holds_at_load_at_write_back_and_while_reading() {
    let max = base::MAX_BASE_BYTES as usize;
    let padded = |len: usize| {
        let head = r#"{"export": {"output_path": ""#;
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    let (_dir, path) = base_file(&padded(max));
    let b = base::load(&path).expect("exactly 4 MiB is accepted");
    std::fs::write(&path, padded(max + 1)).unwrap();
    let e = base::load(&path).err().expect("4 MiB + 1 is refused");
    assert!(e.message().ends_with("is larger than 4 MiB"), "{e}");

    // Grown past the limit during the run: left alone by write-back.
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
    assert!(
        err.message()
            .contains("is larger than 4 MiB; it was left exactly as it is"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), max as u64 + 1);

    // The size `stat` gave is not trusted while reading.
    let file = std::fs::File::open(&path).unwrap();
    assert!(matches!(
        base::read_capped(file, 0),
        Err(base::Capped::TooLarge)
    ));
    std::fs::write(&path, padded(max)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    assert!(matches!(base::read_capped(file, 0), Ok(b) if b.len() == max));
}

/// A base config in a directory every user can write without the sticky bit is refused at load
/// (anyone could swap it), naming the directory and the fix; a sticky one (as `/tmp`) is not,
/// and write-back saves into it.
#[test]
fn a_base_config_in_a_directory_everyone_can_write_is_refused_unless_sticky() {
    let top = tempfile::tempdir().unwrap();
    let shared = top.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let path = shared.join("app_data.json");
    std::fs::write(&path, r#"{"export": {"log_level": "INFO"}}"#).unwrap();
    chmod(&path, 0o600);
    for exists in [true, false] {
        if !exists {
            std::fs::remove_file(&path).unwrap();
        }
        chmod(&shared, 0o777);
        let e = base::load(&path)
            .err()
            .expect("a 0777 directory is refused");
        assert_eq!(
            e.message(),
            format!(
                "the base config {} is in {}, which every user can write (mode 0777, no sticky bit): anyone could replace it",
                path.display(),
                shared.display()
            ),
            "exists: {exists}"
        );
        assert!(
            e.to_string()
                .contains(&format!("hint: chmod o-w {}", shared.display())),
            "{e}"
        );
        chmod(&shared, 0o1777);
        let b = base::load(&path).expect("a sticky directory is accepted");
        let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
        let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
        assert_eq!(report.written, ["export.include_toc"]);
    }
    // Write-back checks the directory again: made writable by everyone during the run.
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("embed_images", json!(true))]);
    chmod(&shared, 0o777);
    let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
    assert!(
        err.message().contains("which every user can write"),
        "{err}"
    );
    assert!(err
        .details()
        .iter()
        .any(|d| d == "not saved: export.embed_images"));
    assert_eq!(mode_of(&shared), 0o777);
}

/// The base config's directory moved away and a link to another directory put in its place
/// during the run: write-back opens the directory without following the link, so nothing is
/// written (not even a lock file) in the other directory.
#[test]
fn write_back_never_follows_a_link_planted_for_the_directory() {
    let top = tempfile::tempdir().unwrap();
    let shared = top.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let path = shared.join("app_data.json");
    std::fs::write(&path, r#"{"export": {"log_level": "INFO"}}"#).unwrap();
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    let elsewhere = top.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("app_data.json"), r#"{"mine": true}"#).unwrap();
    std::fs::rename(&shared, top.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &shared).unwrap();
    let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
    assert_eq!(
        err.message(),
        format!(
            "{} (the directory of the base config {}) was replaced by a symbolic link; nothing was written through it",
            shared.display(),
            path.display()
        )
    );
    assert!(err
        .details()
        .iter()
        .any(|d| d == "not saved: export.include_toc"));
    let left: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["app_data.json"],
        "something was made through the link"
    );
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("app_data.json")).unwrap(),
        r#"{"mine": true}"#
    );
}

/// Runs `f` on a thread and fails the test, instead of hanging it, when `f` blocks (an open of
/// a FIFO that waits for a writer).
fn without_blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} blocked: a FIFO was opened without O_NONBLOCK"))
}

/// A FIFO at the base config's name (at load, or put there during the run) is refused at once:
/// it is opened without waiting for a writer, then refused as not a regular file.
#[test]
fn a_fifo_at_the_base_configs_name_is_refused_without_waiting() {
    let fifo = |path: &std::path::Path| {
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    };
    let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO"}}"#);
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    fifo(&path);
    let err = without_blocking("write-back", move || {
        writeback::write_back(&b, &handed, &after, WAIT).unwrap_err()
    });
    assert!(
        err.message()
            .contains("is no longer a regular file; it was left exactly as it is"),
        "{err}"
    );
    let at_load = path.clone();
    let err = without_blocking("loading", move || base::load(&at_load).err().unwrap());
    assert!(err.message().ends_with("is not a regular file"), "{err}");
}

/// 4 MiB exactly (the number, not the constant, so that a changed constant is noticed).
#[test]
fn the_base_config_limit_is_4_mib() {
    assert_eq!(base::MAX_BASE_BYTES, 4 << 20);
}

/// A base config that exists but cannot be opened (a link that points at itself) is an error,
/// never an empty base: only a file that is not there is one.
#[test]
fn a_base_config_that_cannot_be_opened_is_not_taken_for_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    std::os::unix::fs::symlink(&path, &path).unwrap();
    let e = base::load(&path).err().expect("a link loop is refused");
    assert_eq!(
        e.message(),
        format!("cannot read the base config {}", path.display())
    );
    std::fs::remove_file(&path).unwrap();
    assert!(!base::load(&path).unwrap().exists);
}

/// A base config given through a link: the directory of the link is checked too (whoever can
/// write there can point the link elsewhere), not only the directory of the file.
#[test]
fn the_directory_of_a_link_to_the_base_config_is_checked_too() {
    let top = tempfile::tempdir().unwrap();
    let mine = top.path().join("mine");
    let open = top.path().join("open");
    std::fs::create_dir(&mine).unwrap();
    std::fs::create_dir(&open).unwrap();
    let real = mine.join("app_data.json");
    std::fs::write(&real, r#"{"export": {"log_level": "INFO"}}"#).unwrap();
    let link = open.join("app_data.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    chmod(&open, 0o777);
    let e = base::load(&link)
        .err()
        .expect("the link's directory is open to all");
    assert!(
        e.message().contains(&format!(
            "is in {}, which every user can write",
            open.display()
        )),
        "{e}"
    );
    chmod(&open, 0o755);
    let b = base::load(&link).unwrap();
    assert_eq!(
        b.origin.unwrap().real,
        std::fs::canonicalize(&real).unwrap()
    );
}

/// Something else than a directory (a file) put in place of the base config's directory during
/// the run is named as such, not as a link.
#[test]
fn write_back_names_a_file_put_in_place_of_the_directory() {
    let top = tempfile::tempdir().unwrap();
    let shared = top.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let path = shared.join("app_data.json");
    std::fs::write(&path, r#"{"export": {"log_level": "INFO"}}"#).unwrap();
    let b = base::load(&path).unwrap();
    let (handed, after) = run_with(&b, &[("include_toc", json!(false))]);
    std::fs::rename(&shared, top.path().join("moved")).unwrap();
    std::fs::write(&shared, "not a directory").unwrap();
    let err = writeback::write_back(&b, &handed, &after, WAIT).unwrap_err();
    assert_eq!(err.message(), format!("cannot open {}", shared.display()));
    assert!(err.to_string().contains("Not a directory"), "{err}");
}

/// The command that saves a conflicting value quotes a string that cme would otherwise read as
/// JSON or as a boolean.
#[test]
fn a_conflicts_save_command_keeps_a_string_a_string() {
    let (_dir, path) = base_file(r#"{"export": {"log_level": "INFO", "output_path": "/a"}}"#);
    let b = base::load(&path).unwrap();
    for (value, command) in [
        ("123", r#"cme config set 'export.output_path="123"'"#),
        ("True", r#"cme config set 'export.output_path="True"'"#),
        ("/x", "cme config set export.output_path=/x"),
    ] {
        let (handed, after) = run_with(&b, &[("output_path", json!(value))]);
        std::fs::write(
            &path,
            r#"{"export": {"log_level": "INFO", "output_path": "/mine"}}"#,
        )
        .unwrap();
        let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
        assert_eq!(report.conflicts.len(), 1, "{value}: {report:?}");
        assert_eq!(report.conflicts[0].save_with, command, "{value}");
    }
}

/// cme writes a `cloud_id` under its own spelling of the instance key; the base config spells
/// it with a trailing slash: the `cloud_id` lands in that entry (no second one), and a
/// `cloud_id` the file itself changed during the run is kept.
#[test]
fn a_cloud_id_lands_in_the_entry_as_the_base_config_spells_it() {
    let (_dir, path) =
        base_file(r#"{"auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": ""}}}}"#);
    let b = base::load(&path).unwrap();
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Username, "u"), (Field::ApiToken, "S3NT1NEL")],
    )]);
    let handed = render(&b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    after["auth"]["confluence"]["https://x.atlassian.net"]["cloud_id"] = json!("c-1");
    let after = serde_json::to_vec(&after).unwrap();
    let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
    assert_eq!(
        report.written,
        ["auth.confluence[\"https://x.atlassian.net\"].cloud_id"]
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": "c-1"}}}})
    );

    // The file's own cloud_id, changed during the run, wins.
    let (_dir, path) =
        base_file(r#"{"auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": ""}}}}"#);
    let b = base::load(&path).unwrap();
    std::fs::write(
        &path,
        r#"{"auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": "mine"}}}}"#,
    )
    .unwrap();
    let report = writeback::write_back(&b, &handed, &after, WAIT).unwrap();
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": "mine"}}}})
    );
}

/// The refusal's hint gives the reason that applies: a schema problem (cme would drop the whole
/// file), a credential (it would stay in plain text), or both.
#[test]
fn a_refused_base_configs_hint_gives_the_reason_that_applies() {
    for (doc, reason) in [
        (
            r#"{"export": {"log_level": "LOUD"}}"#,
            "(cme would silently ignore the whole file)",
        ),
        (
            r#"{"auth": {"jira": {"https://j.example.com": {"pat": "S3NT1NEL"}}}}"#,
            "(a base config holds settings only: credentials come from your stores",
        ),
        (
            r#"{"export": {"log_level": "LOUD"}, "auth": {"jira": {"https://j.example.com": {"pat": "S3NT1NEL"}}}}"#,
            "(cme would silently ignore the whole file; and credentials come from your stores, never from this file)",
        ),
    ] {
        let (_dir, path) = base_file(doc);
        let e = base::load(&path).err().expect("refused").to_string();
        assert!(e.contains(reason), "{doc}: {e}");
        assert!(!e.contains("S3NT1NEL"), "{e}");
    }
}
