//! `cme-exec import`: a cme config written by real cme (`cme config set`, and
//! the auth entries cme's `config set` cannot address written as JSON), imported into files,
//! OpenBao and moto; then real cme run through cme-exec sends the same credentials as plain cme
//! did before the import, the original no longer holds any secret (`assert_clean` scans every
//! file outside `secrets/`), and a second run changes nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::moto::Moto;
use crate::support::openbao::OpenBao;
use crate::support::*;
use crate::{basic_header, q};

/// Runs the real cme with the test's HOME and XDG_CONFIG_HOME (so it reads and writes its own
/// default config in the test directory), non-interactive.
fn plain_cme(t: &Test, args: &[&str]) -> std::process::Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let out = Command::new(Venv::get().cme())
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", t.path())
        .env("XDG_CONFIG_HOME", t.config_home())
        .env("CI", "true")
        .env("CME_NON_INTERACTIVE", "1")
        .env("NO_COLOR", "1")
        .current_dir(t.work_dir())
        .output()
        .expect("run cme");
    assert!(
        out.status.success(),
        "cme {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// cme's own config, as a user has it: settings written by `cme config set`, then an auth
/// entry (written as JSON: `cme config set` cannot address URL keys).
fn users_cme_config(t: &Test, product: &str, url: &str, entry: Value) -> std::path::PathBuf {
    let out = t.out_dir().join("export");
    plain_cme(
        t,
        &[
            "config",
            "set",
            &format!("export.output_path={}", out.display()),
        ],
    );
    plain_cme(t, &["config", "set", "export.include_document_title=false"]);
    let path = t.cme_default_config();
    let mut doc: Value = serde_json::from_slice(&fs::read(&path).expect("cme wrote its config"))
        .expect("cme's config is JSON");
    doc["auth"] = json!({ product: { url: entry } });
    fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    path
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Before: plain cme; after: cme-exec -- cme. Both must send the same `Authorization`.
fn export_once(t: &Test, wiki: &ConfluenceStandIn, through_cme_exec: bool) -> String {
    let before = wiki.authorization_headers().len();
    let url = wiki.page_url(123);
    if through_cme_exec {
        let cme = Venv::get().cme();
        t.run_args([
            std::ffi::OsStr::new("--"),
            cme.as_os_str(),
            std::ffi::OsStr::new("pages"),
            std::ffi::OsStr::new(&url),
        ])
        .assert_success();
    } else {
        plain_cme(t, &["pages", &url]);
    }
    let headers = wiki.authorization_headers();
    assert!(
        headers.len() > before,
        "cme sent no Authorization: {}",
        wiki.summary()
    );
    headers[before].clone()
}

/// The whole path a cme user takes with the file store: the same Basic header before and after,
/// the original keeps its settings and mode and loses its secrets, a second run changes nothing.
#[test]
fn import_into_files_keeps_what_cme_sends_and_removes_the_secrets() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let wiki = ConfluenceStandIn::start();
    let original = users_cme_config(
        &t,
        "confluence",
        &wiki.base_url(),
        json!({ "username": user, "api_token": token, "pat": "", "session_cookies": "", "cloud_id": "" }),
    );
    let before = export_once(&t, &wiki, false);
    assert_eq!(before, basic_header(&user, &token));

    let store = t.path().join("secrets/store");
    let to = format!("file://{}", store.display());
    let out = t.run_args(["import", "--to", &to, "--dry-run"]);
    out.assert_success();
    out.assert_stdout_contains("dry run: nothing was written");
    assert!(!store.exists(), "--dry-run wrote the store");
    assert!(!t.config_home().join("cme-exec/config.toml").exists());

    let out = t.run_args(["import", "--to", &to]);
    out.assert_success();
    out.assert_stdout_contains("(username, api_token) -> file://");
    out.assert_stdout_contains("check: every field resolves");
    assert_eq!(mode_of(&store), 0o700);
    let doc = store.join(format!("confluence-127.0.0.1-{}.json", wiki.port()));
    assert_eq!(mode_of(&doc), 0o600);
    let toml_path = t.config_home().join("cme-exec/config.toml");
    let toml = fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.contains(&format!(
            "from = {}",
            q(format!("file://{}", doc.display()))
        )),
        "{toml}"
    );

    // A second run changes nothing.
    let snapshot = |p: &Path| {
        (
            fs::read(p).unwrap(),
            fs::metadata(p).unwrap().modified().unwrap(),
        )
    };
    let (doc_before, toml_before) = (snapshot(&doc), snapshot(&toml_path));
    let out = t.run_args(["import", "--to", &to]);
    out.assert_success();
    assert!(!out.stdout.contains("wrote"), "{}", out.stdout);
    assert_eq!(snapshot(&doc), doc_before);
    assert_eq!(snapshot(&toml_path), toml_before);

    let out = t.run_args(["import", "--to", &to, "--remove-secrets"]);
    out.assert_success();
    out.assert_stdout_contains("removed 2 secret fields");
    let after = read_json(&original);
    assert_eq!(
        after.pointer("/export/output_path").and_then(Value::as_str),
        Some(t.out_dir().join("export").display().to_string().as_str()),
        "the settings stay"
    );
    assert_eq!(mode_of(&original), 0o640, "the mode is kept");

    assert_eq!(export_once(&t, &wiki, true), before);
    let out = t.run_args(["import", "--to", &to, "--remove-secrets"]);
    out.assert_success();
    out.assert_stdout_contains("nothing to import");
    t.assert_clean();
}

/// Into OpenBao (one KV v2 document per instance, a PAT sent as Bearer) and moto (one secret
/// per instance, a second run makes no new version).
#[test]
fn import_into_openbao_and_moto() {
    // OpenBao
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let vault_token = t.sentinel("vault-token");
    let bao = OpenBao::start();
    bao.policy(
        "importer",
        r#"path "secret/data/cme/*" { capabilities = ["create", "update", "read"] }"#,
    );
    bao.token_with_id(&vault_token, &["importer"]);
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", &vault_token);
    let wiki = ConfluenceStandIn::start();
    users_cme_config(&t, "confluence", &wiki.base_url(), json!({ "pat": pat }));
    let before = export_once(&t, &wiki, false);
    assert_eq!(before, format!("Bearer {pat}"));
    let out = t.run_args(["import", "--to", "vault://secret/cme", "--remove-secrets"]);
    out.assert_success();
    let name = format!("confluence-127.0.0.1-{}", wiki.port());
    out.assert_stdout_contains(&format!("(pat) -> vault://secret/cme/{name}"));
    let stored = bao.ok("GET", &format!("secret/data/cme/{name}"), Value::Null);
    assert_eq!(stored.pointer("/data/data/pat"), Some(&json!(pat)));
    assert_eq!(export_once(&t, &wiki, true), before);
    t.assert_clean();

    // moto
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let secret_key = t.sentinel("aws-secret-key");
    let moto = Moto::start();
    for (k, v) in Moto::aws_env(&moto.endpoint(), &secret_key) {
        t = t.env(k, v);
    }
    let wiki = ConfluenceStandIn::start();
    users_cme_config(
        &t,
        "confluence",
        &wiki.base_url(),
        json!({ "username": user, "api_token": token }),
    );
    let before = export_once(&t, &wiki, false);
    let out = t.run_args(["import", "--to", "aws-sm://cme/"]);
    out.assert_success();
    let id = format!("cme/confluence-127.0.0.1-{}", wiki.port());
    out.assert_stdout_contains(&format!("-> aws-sm://{id}"));
    let version = moto.current_version_id(&id);
    let out = t.run_args(["import", "--to", "aws-sm://cme/", "--remove-secrets"]);
    out.assert_success();
    out.assert_stdout_contains("unchanged");
    assert_eq!(
        moto.current_version_id(&id),
        version,
        "a second run made a new version"
    );
    assert_eq!(export_once(&t, &wiki, true), before);
    t.assert_clean();
}

/// Nothing is written when cme-exec.toml exists with other content; a failure half-way names
/// what was written where and leaves the original untouched.
#[test]
fn import_refuses_and_fails_without_touching_the_original() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let path = t.cme_default_config();
    let original = json!({
        "auth": {
            "confluence": { "https://company.atlassian.net": { "username": "me@company.com", "api_token": token } },
            "jira": { "https://jira.company.com": { "pat": pat } }
        }
    });
    let t = t.allow_secret_in(&path);
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        serde_json::to_vec_pretty(&original).unwrap(),
    );
    let bytes = fs::read(&path).unwrap();
    let store = t.path().join("secrets/store");
    let to = format!("file://{}", store.display());

    let toml_path = t.write_file("config/cme-exec/config.toml", "# mine\n");
    let out = t.run_args(["import", "--to", &to, "--remove-secrets"]);
    out.assert_code(125);
    out.assert_stderr_contains(&format!(
        "{} exists with other content; nothing was written",
        toml_path.display()
    ));
    assert!(!store.exists());
    fs::remove_file(&toml_path).unwrap();

    // The second document cannot be written: a directory is in its place.
    fs::create_dir_all(&store).unwrap();
    fs::set_permissions(&store, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(store.join("jira-jira.company.com.json")).unwrap();
    let out = t.run_args(["import", "--to", &to, "--remove-secrets"]);
    out.assert_code(125);
    out.assert_stderr_contains("written so far:");
    out.assert_stderr_contains(&format!(
        "{} in file",
        store
            .join("confluence-company.atlassian.net.json")
            .display()
    ));
    out.assert_stderr_contains(&format!("{} was not changed", path.display()));
    assert_eq!(fs::read(&path).unwrap(), bytes, "the original was changed");
    assert!(!toml_path.exists());
    t.assert_clean();
}

/// An OpenBao stand-in that holds the first KV write until the test lets it go: the import is
/// then waiting on its store, and the test edits `app_data.json` in that window (no timer: the
/// stand-in says when the write arrived, the test says when to answer it).
struct HeldStore {
    standin: crate::support::openbao::StandIn,
    arrived: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldStore {
    fn start(bao: &OpenBao) -> HeldStore {
        use crate::support::openbao::{Action, StandIn};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Mutex};
        let (arrived_tx, arrived) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (arrived_tx, release_rx) = (Mutex::new(arrived_tx), Mutex::new(release_rx));
        let held = AtomicBool::new(false);
        let upstream = bao.socket_addr();
        let standin = StandIn::start(move |seen, _| {
            let write = matches!(seen.method.as_str(), "POST" | "PUT")
                && seen.path().starts_with("/v1/secret/data/");
            if write && !held.swap(true, Ordering::SeqCst) {
                let _ = arrived_tx.lock().unwrap().send(());
                // Dropped sender (the test ended) ends the wait too.
                let _ = release_rx.lock().unwrap().recv();
            }
            Action::forward(upstream)
        });
        HeldStore {
            standin,
            arrived,
            release,
        }
    }

    fn url(&self) -> String {
        self.standin.url()
    }

    #[track_caller]
    fn wait_for_the_write(&self, run: &Running) {
        assert!(
            self.arrived
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok(),
            "the import never wrote to the store\n{}\n{}",
            run.stderr_so_far(),
            self.standin.summary()
        );
    }

    fn answer(&self) {
        self.release.send(()).unwrap();
    }
}

/// `import --remove-secrets` while the user edits `app_data.json` (a token added during a
/// slow import was lost): the file is read again under the write-back lock and only the values
/// that were imported and read back are removed. A Jira PAT added while the store was
/// answering stays in the file, and the import says so; a token that changed in the file while
/// it was being imported is kept there (the store has the earlier one), and the import names it.
#[test]
fn remove_secrets_keeps_what_changed_during_the_import() {
    let bao = OpenBao::start();
    bao.policy(
        "importer",
        r#"path "secret/data/cme/*" { capabilities = ["create", "update", "read"] }"#,
    );
    const CONFLUENCE: &str = "https://company.atlassian.net";
    const JIRA: &str = "https://jira.company.com";
    for case in ["a PAT added", "the token changed"] {
        let mut t = Test::new();
        let user = t.sentinel("user");
        let token = t.sentinel("token");
        let jira_pat = t.sentinel("jira-pat");
        let new_token = t.sentinel("new-token");
        let vault_token = t.sentinel("vault-token");
        bao.token_with_id(&vault_token, &["importer"]);
        let store = HeldStore::start(&bao);
        let path = t.cme_default_config();
        let t = t
            .env("VAULT_ADDR", store.url())
            .env("VAULT_TOKEN", &vault_token)
            .allow_secret_in(&path);
        let original = json!({
            "export": { "include_document_title": false },
            "auth": { "confluence": { CONFLUENCE: { "username": user, "api_token": token, "cloud_id": "c-1" } } }
        });
        t.write_file(
            "config/confluence-markdown-exporter/app_data.json",
            serde_json::to_vec_pretty(&original).unwrap(),
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

        let run = t.spawn_args(["import", "--to", "vault://secret/cme", "--remove-secrets"]);
        store.wait_for_the_write(&run);
        // The user edits the file while the import waits for its store.
        let mut edited = read_json(&path);
        match case {
            "a PAT added" => {
                edited["auth"]["jira"] = json!({ JIRA: { "pat": jira_pat } });
                edited["export"]["include_toc"] = json!(false);
            }
            _ => edited["auth"]["confluence"][CONFLUENCE]["api_token"] = json!(new_token),
        }
        fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
        store.answer();
        let out = run.wait_timeout(std::time::Duration::from_secs(90));
        out.assert_success();

        let after = read_json(&path);
        let entry = &after["auth"]["confluence"][CONFLUENCE];
        assert_eq!(entry["cloud_id"], json!("c-1"), "{case}");
        assert_eq!(after["export"]["include_document_title"], json!(false));
        assert_eq!(mode_of(&path), 0o640, "{case}: the mode is kept");
        let stored = bao.ok(
            "GET",
            "secret/data/cme/confluence-company.atlassian.net",
            Value::Null,
        );
        assert_eq!(stored.pointer("/data/data/api_token"), Some(&json!(token)));
        if case == "a PAT added" {
            assert_eq!(
                after["auth"]["jira"][JIRA]["pat"],
                json!(jira_pat),
                "{case}: the PAT added during the import was lost\n{}",
                out.describe()
            );
            assert_eq!(after["export"]["include_toc"], json!(false), "{case}");
            assert_eq!(entry.get("username"), None, "{case}: {}", out.describe());
            assert_eq!(entry.get("api_token"), None, "{case}");
            out.assert_stdout_contains(&format!(
                "removed 2 secret fields from {} (mode 0640 kept)",
                path.display()
            ));
            out.assert_stderr_contains(&format!(
                "auth.jira[\"{JIRA}\"].pat was added to {} during the import and was not imported; it is still there",
                path.display()
            ));
        } else {
            assert_eq!(
                entry["api_token"],
                json!(new_token),
                "{case}: the token changed during the import was lost\n{}",
                out.describe()
            );
            // The instance keeps all its fields, so that importing again stores them together.
            assert_eq!(entry["username"], json!(user), "{case}");
            out.assert_stderr_contains(&format!(
                "auth.confluence[\"{CONFLUENCE}\"].api_token changed in {} during the import: the store holds the value it had before; this instance's secret fields were kept in the file (run the import again to store the new value)",
                path.display()
            ));
            out.assert_stdout_contains(&format!(
                "{} still holds 2 secret fields (named above); nothing was removed",
                path.display()
            ));
        }
        t.assert_clean();
    }
}

/// A cme config with one Confluence instance (user name and token) at cme's default place.
fn one_instance(t: &mut Test) -> std::path::PathBuf {
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let doc = json!({
        "export": { "include_document_title": false },
        "auth": { "confluence": { "https://company.atlassian.net": { "username": user, "api_token": token } } }
    });
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
}

/// `--to vault://MOUNT/data/...` (KV v2's API path, as `vault kv put -output-curl-string` shows
/// it) is refused with the hint reads give, before anything is contacted; `import --help` says
/// where `-c` writes.
#[test]
fn import_refuses_a_kv2_api_path_and_help_says_where_it_writes() {
    let mut t = Test::new();
    let original = one_instance(&mut t);
    let t = t.allow_secret_in(&original);
    for format in ["text", "json"] {
        let out = t.run_args([
            "import",
            "--to",
            "vault://secret/data/cme",
            "--format",
            format,
        ]);
        out.assert_code(125);
        out.assert_stderr_contains(
            "--to \"vault://secret/data/cme\": `data/` is part of KV v2's API path, not of a vault:// address",
        )
        .assert_stderr_contains(
            "hint: leave `data/` out of --to: cme-exec adds it for KV v2 (vault://secret/cme)",
        );
        if format == "json" {
            let v: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
            assert_eq!(v["ok"], json!(false));
            assert!(
                v["error"].as_str().unwrap().contains("leave `data/` out"),
                "{v}"
            );
        }
    }
    assert!(!t.config_home().join("cme-exec").exists());

    let out = t.run_args(["import", "--help"]);
    out.assert_success();
    out.assert_stdout_contains(
        "The new cme-exec.toml is written to -c/--config PATH when given, else to\n$XDG_CONFIG_HOME/cme-exec/config.toml",
    )
    .assert_stdout_contains("`export CME_EXEC_CONFIG=...`")
    .assert_stdout_contains("--format <FORMAT>");
}

/// `--dry-run` shows the whole plan even when the config path exists with other content, says
/// it would stop there, and exits 125 (what the import would do); nothing is written.
#[test]
fn import_dry_run_shows_the_plan_when_the_config_exists() {
    let mut t = Test::new();
    let original = one_instance(&mut t);
    let t = t.allow_secret_in(&original);
    let toml_path = t.write_file("config/cme-exec/config.toml", "# mine\n");
    let store = t.path().join("secrets/store");
    let to = format!("file://{}", store.display());
    let out = t.run_args(["import", "--to", &to, "--dry-run", "--remove-secrets"]);
    out.assert_code(125);
    out.assert_stdout_contains(&format!(
        "would write [confluence.\"https://company.atlassian.net\"] (username, api_token) to file {}",
        store
            .join("confluence-company.atlassian.net.json")
            .display()
    ))
    .assert_stdout_contains(&format!(
        "would write {} (base config: the settings without auth)",
        t.config_home().join("cme-exec/config.base.json").display()
    ))
    .assert_stdout_contains(&format!(
        "would stop here: {} (cme-exec.toml) exists with other content",
        toml_path.display()
    ));
    out.assert_stderr_contains(&format!(
        "{} exists with other content: the import would stop there, before writing anything",
        toml_path.display()
    ))
    .assert_stderr_contains("hint: import into another file with --config NEW.toml");
    assert!(
        !out.stdout.contains("dry run: nothing was written"),
        "{}",
        out.stdout
    );
    assert!(!store.exists());
    assert_eq!(fs::read_to_string(&toml_path).unwrap(), "# mine\n");

    let out = t.run_args(["import", "--to", &to, "--dry-run", "--format", "json"]);
    out.assert_code(125);
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["dry_run"], json!(true));
    assert_eq!(v["instances"][0]["action"], json!("would_write"));
    assert_eq!(v["files"][1]["action"], json!("conflict"), "{v}");
    assert_eq!(
        v["files"][1]["path"],
        json!(toml_path.display().to_string())
    );
}

/// Imported into a config elsewhere than the default (`-c team.toml`, relative to the working
/// directory), the import ends with the absolute `export CME_EXEC_CONFIG=...` that uses it, and
/// that line works; `--format json` reports the same as one document.
#[test]
fn import_elsewhere_ends_with_how_to_use_it() {
    let mut t = Test::new();
    let original = one_instance(&mut t);
    let t = t.allow_secret_in(&original);
    let store = t.path().join("secrets/store");
    let to = format!("file://{}", store.display());
    let out = t.run_args(["-c", "team.toml", "import", "--to", &to]);
    out.assert_success();
    let team = t.work_dir().join("team.toml");
    let last = out.stdout.trim_end().lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "to use it: export CME_EXEC_CONFIG={p}   (or cme-exec --config {p} ...)",
            p = team.display()
        ),
        "{}",
        out.stdout
    );
    let out = t.launch(["check"]).env("CME_EXEC_CONFIG", &team).run();
    out.assert_success();

    // The same again, as JSON: nothing changes, and the document says so.
    let out = t.run_args(["-c", "team.toml", "import", "--to", &to, "--format", "json"]);
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["config"], json!(team.display().to_string()));
    assert_eq!(v["instances"][0]["product"], json!("confluence"));
    assert_eq!(
        v["instances"][0]["fields"],
        json!(["username", "api_token"])
    );
    assert_eq!(v["instances"][0]["action"], json!("unchanged"));
    assert_eq!(v["files"][0]["what"], json!("base_config"));
    assert_eq!(v["files"][1]["action"], json!("unchanged"));
    assert_eq!(v["verified"], json!(true));
    assert_eq!(v["removed"], Value::Null);
    assert_eq!(
        v["use"],
        json!({ "CME_EXEC_CONFIG": team.display().to_string() })
    );

    // At the default path there is nothing to export.
    let out = t.run_args(["import", "--to", &to]);
    out.assert_success();
    assert!(!out.stdout.contains("CME_EXEC_CONFIG"), "{}", out.stdout);
}

/// AppRole over the CLI (a TLS server takes no plain HTTP calls): role `cme` with the
/// `importer` policy, its role id and a custom secret id; returns (role_id, secret_id), the
/// secret id a sentinel of `t`.
fn approle_over_tls(bao: &OpenBao, t: &mut Test) -> (String, String) {
    bao.cli_ok(
        &["policy", "write", "importer", "-"],
        Some(r#"path "secret/data/cme/*" { capabilities = ["create", "update", "read"] }"#),
    );
    bao.cli_ok(&["auth", "enable", "approle"], None);
    bao.cli_ok(
        &[
            "write",
            "auth/approle/role/cme",
            "token_policies=importer",
            "token_ttl=5m",
        ],
        None,
    );
    let role_id = format!("role-{}", crate::support::secrets::random_hex());
    bao.cli_ok(
        &[
            "write",
            "auth/approle/role/cme/role-id",
            &format!("role_id={role_id}"),
        ],
        None,
    );
    let secret_id = t.sentinel("secret-id");
    bao.cli_ok(
        &[
            "write",
            "auth/approle/role/cme/custom-secret-id",
            "secret_id=-",
        ],
        Some(&secret_id),
    );
    (role_id, secret_id)
}

/// The accessors of every token the server holds now.
fn accessors_over_tls(bao: &OpenBao) -> Value {
    let out = bao.cli_ok(&["list", "-format=json", "auth/token/accessors"], None);
    serde_json::from_str(&out).expect("bao lists accessors as JSON")
}

/// `--to NAME://...` writes through the `[providers.NAME]` table of the config it writes, with
/// the table's address, CA and auth: OpenBao over TLS (its CA in `ca_cert`, no VAULT_* variable
/// set) and an AppRole login whose token is revoked at the end. The table stays at the top of
/// the new config, `check` reads every value back through it, and a second run changes nothing.
#[test]
fn import_through_a_declared_provider_with_a_ca_and_approle() {
    let bao = OpenBao::start_tls();
    let mut t = Test::new();
    let (role_id, secret_id) = approle_over_tls(&bao, &mut t);
    let original = one_instance(&mut t);
    let token = read_json(&original)["auth"]["confluence"]["https://company.atlassian.net"]
        ["api_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = t
        .allow_secret_in(&original)
        .env("CME_TEST_SECRET_ID", &secret_id);
    let providers = format!(
        "[providers.bao]\nkind = \"vault\"\naddress = {}\nca_cert = {}\nauth = {{ method = \"approle\", role_id = {}, secret_id_env = \"CME_TEST_SECRET_ID\" }}\n",
        q(bao.address()),
        q(bao.ca_cert().display().to_string()),
        q(&role_id)
    );
    let toml_path = t.write_file("config/cme-exec/config.toml", &providers);
    let before = accessors_over_tls(&bao);

    let out = t.run_args(["import", "--to", "bao://secret/cme"]);
    out.assert_success();
    out.assert_stdout_contains(
        "wrote [confluence.\"https://company.atlassian.net\"] (username, api_token) -> bao://secret/cme/confluence-company.atlassian.net",
    );
    let stored: Value = serde_json::from_str(&bao.cli_ok(
        &[
            "kv",
            "get",
            "-format=json",
            "-mount=secret",
            "cme/confluence-company.atlassian.net",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(stored.pointer("/data/data/api_token"), Some(&json!(token)));
    let toml = fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.starts_with(&providers),
        "the table was not kept:\n{toml}"
    );
    assert!(
        toml.contains("from = \"bao://secret/cme/confluence-company.atlassian.net\""),
        "{toml}"
    );
    assert_eq!(
        accessors_over_tls(&bao),
        before,
        "an AppRole login token still exists"
    );
    t.run_args(["check"]).assert_success();

    let out = t.run_args(["import", "--to", "bao://secret/cme"]);
    out.assert_success();
    out.assert_stdout_contains("unchanged [confluence.\"https://company.atlassian.net\"]");
    assert_eq!(fs::read_to_string(&toml_path).unwrap(), toml);
    t.assert_clean();
}

/// A scheme whose kind cannot store documents is refused by name, before anything is read.
#[test]
fn import_refuses_a_provider_that_cannot_store_documents() {
    let mut t = Test::new();
    let original = one_instance(&mut t);
    let t = t.allow_secret_in(&original);
    t.write_file(
        "config/cme-exec/config.toml",
        "[providers.pass]\nkind = \"command\"\ncommand = [\"pass\", \"show\", \"{path}\"]\n",
    );
    for (to, why) in [
        ("env://X", "a provider of kind env cannot store documents"),
        (
            "pass://cme",
            "a provider of kind command cannot store documents",
        ),
        (
            "nope://x",
            "unknown destination: `nope` is neither a [providers.nope] table",
        ),
    ] {
        let out = t.run_args(["import", "--to", to]);
        out.assert_code(125);
        out.assert_stderr_contains(&format!("--to {to:?}: {why}"))
            .assert_stderr_contains("hint: use file:///DIR");
    }
}
