//! The commands besides `run`: `check`, `render`, `explain`, completions and the man page, and
//! the embedded cme schema against the installed cme.

use std::ffi::OsStr;
use std::fs;

use serde_json::Value;

use crate::support::*;
use crate::*;

#[test]
fn check_reports_ok_for_every_field() {
    let b = basic("https://company.atlassian.net");
    let out = b.t.run_args(["check"]);
    out.assert_success();
    let text = format!("{}\n{}", out.stdout, out.stderr);
    for (field, reference) in [
        ("username", format!("env://{}", b.user_var)),
        ("api_token", file_ref(&b.token_file)),
    ] {
        assert!(
            !ok_lines(&text, &reference).is_empty(),
            "check should print a line for {field} with its reference and `ok`\n{}",
            out.describe()
        );
    }
    b.t.assert_clean();
}

#[test]
fn check_reports_a_failure_and_exits_1() {
    let missing = var_name("MISSING");
    let b = basic_with_extra(
        "https://company.atlassian.net",
        &format!("\n[jira.\"https://jira.example.com\"]\npat = \"env://{missing}\"\n"),
    );
    let out = b.t.run_args(["check"]);
    out.assert_code(1);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let failed = lines_with(&text, &[&missing]);
    assert!(
        !failed.is_empty() && failed.iter().all(|line| !has_word(line, "ok")),
        "check should name the failed reference with its reason, not `ok`\n{}",
        out.describe()
    );
    assert!(
        !ok_lines(&text, &format!("env://{}", b.user_var)).is_empty(),
        "the fields that resolve are still reported ok\n{}",
        out.describe()
    );

    let out = b.t.run_args(["check", "--format", "json"]);
    out.assert_code(1);
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --format json should print JSON: {e}\n{}",
            out.describe()
        )
    });
    let flat = json.to_string();
    assert!(
        flat.contains(&missing) && flat.contains(&b.user_var),
        "the JSON names the references\n{}",
        out.describe()
    );
    b.t.assert_clean();
}

#[test]
fn render_writes_a_private_complete_file() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let output = b.t.out_dir().join("cme/app_data.json");
    fs::create_dir_all(output.parent().unwrap()).unwrap();
    b.t.run_args(args!["render", "--output", output])
        .assert_success();
    assert_eq!(mode_of(&output), 0o600, "render writes 0600 by default");
    let config: Value = serde_json::from_slice(&fs::read(&output).unwrap()).expect("valid JSON");
    let entry = confluence_entry(&config, url);
    assert_field(entry, "username", &b.user, "the rendered file");
    assert_field(entry, "api_token", &b.token, "the rendered file");

    // Again, with --mode: the file is replaced, and only it is in the directory.
    b.t.run_args(args!["render", "--output", output, "--mode", "0640"])
        .assert_success();
    assert_eq!(mode_of(&output), 0o640, "--mode 0640");
    let names: Vec<_> = fs::read_dir(output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["app_data.json"],
        "no temporary file is left next to the output"
    );
    b.t.assert_clean();
}

#[test]
fn render_refuses_a_symlink_at_the_output_path() {
    let b = basic("https://company.atlassian.net");
    let target = b.t.path().join("victim.txt");
    fs::write(&target, "original").unwrap();
    let link = b.t.out_dir().join("app_data.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = b.t.run_args(args!["render", "--output", link]);
    out.assert_code(125);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "original",
        "the link target is untouched"
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself is left as it was"
    );
    b.t.assert_clean();
}

#[test]
fn render_to_stdout_needs_force_stdout() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let out = b.t.run_args(["render", "--output", "-"]);
    assert_ne!(
        out.code(),
        Some(0),
        "`--output -` without --force-stdout is refused\n{}",
        out.describe()
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is written to stdout when refused"
    );

    let t = b.t.allow_secrets_in_stdout();
    let out = t.run_args(["render", "--output", "-", "--force-stdout"]);
    assert_eq!(
        out.code(),
        Some(0),
        "render --force-stdout: {}",
        redact(&out.stderr)
    );
    let config: Value = serde_json::from_str(&out.stdout).expect("render prints JSON");
    assert_field(
        confluence_entry(&config, url),
        "api_token",
        &b.token,
        "render --force-stdout",
    );
    t.assert_clean();
}

#[test]
fn explain_shows_where_values_come_from() {
    let b = basic("https://company.atlassian.net");
    let out = b.t.run_args(["explain"]);
    out.assert_success();
    out.assert_stdout_contains(&format!("env://{}", b.user_var))
        .assert_stdout_contains(&file_ref(&b.token_file));
    let out = b.t.run_args(["explain", "--format", "json"]);
    out.assert_success();
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain --format json should print JSON: {e}\n{}",
            out.describe()
        )
    });
    assert!(json.to_string().contains(&b.user_var), "{}", out.describe());
    b.t.assert_clean();
}

#[test]
fn completions_and_man_page() {
    let t = Test::new();
    let out = t.run_args(["completions", "bash"]);
    out.assert_success();
    assert!(out.stdout.contains("cme-exec"), "{}", out.describe());
    // nushell (clap_complete_nushell): a module of `extern` definitions, one per command.
    let out = t.run_args(["completions", "nushell"]);
    out.assert_success();
    for needle in [
        "module completions {",
        "export extern cme-exec [",
        "export extern \"cme-exec check\" [",
        "export extern \"cme-exec run\" [",
        "export use completions *",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.describe());
    }
    let out = t.run_args(["man"]);
    out.assert_success();
    assert!(
        out.stdout.contains(".TH"),
        "man prints a roff page\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// The schema cme-exec validates against (`src/cme_config/schemas/5.5.0.json`) is the one the
/// installed cme produces: upgrading cme without regenerating it fails here, with the fix.
#[test]
fn embedded_cme_schema_matches_the_installed_cme() {
    let venv = Venv::get();
    let out = std::process::Command::new(repo_root().join("scripts/update-cme-schema"))
        .arg("--check")
        .env("CME_PYTHON", venv.python())
        .output()
        .expect("scripts/update-cme-schema runs");
    assert!(
        out.status.success(),
        "the embedded cme schema differs from the installed cme's; run scripts/update-cme-schema\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check` names the fields a `from` document (and `[auth] from`) supplied, names only; a field
/// the instance sets itself is the instance's.
#[test]
fn check_names_the_fields_a_from_document_supplied() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let from = t.secret_file(
        "from.json",
        serde_json::json!({ "username": user, "api_token": token, "pat": pat }).to_string(),
    );
    let bulk = t.secret_file(
        "bulk.json",
        serde_json::json!({ "jira": { "https://jira.example.com": { "pat": pat } } }).to_string(),
    );
    let t = t.env("CME_TEST_PAT", &pat).config_toml(&format!(
        "[auth]\nfrom = {}\n\n[confluence.\"https://company.atlassian.net\"]\nfrom = {}\npat = \"env://CME_TEST_PAT\"\n",
        q(file_ref(&bulk)),
        q(file_ref(&from)),
    ));
    let out = t.run_args(["check"]);
    out.assert_success();
    let from_line = lines_with(
        &out.stdout,
        &["[confluence.\"https://company.atlassian.net\"] from"],
    );
    assert!(
        from_line.len() == 1 && from_line[0].ends_with("ok; supplies username, api_token"),
        "the from line names the fields it supplied (pat is the instance's own)\n{}",
        out.describe()
    );
    let bulk_line = lines_with(&out.stdout, &["[auth] from"]);
    assert!(
        bulk_line.len() == 1
            && bulk_line[0].ends_with("ok; supplies jira.\"https://jira.example.com\" (pat)"),
        "{}",
        out.describe()
    );
    let out = t.run_args(["check", "--format", "json"]);
    out.assert_success();
    let json: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let from_field = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "from")
        .expect("a from field");
    assert_eq!(
        from_field["supplies"],
        serde_json::json!({ "confluence.\"https://company.atlassian.net\"": ["username", "api_token"] })
    );
    t.assert_clean();
}

/// `check --offline` checks the config, its references and the files a file reference names,
/// and contacts nothing: the Vault address and the AWS endpoint are a listener that must see no
/// connection, the command provider's helper (which would leave a marker) is missing on
/// purpose, and `LOG_SENSITIVE_BODIES=true` makes building the AWS provider fail. So success
/// means no provider was built. The same config under plain `check` reaches the listener.
#[test]
fn check_offline_builds_no_provider_and_contacts_nothing() {
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    let key = t.sentinel("aws-secret-key");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let present = t.secret_file("wiki.json", "{}");
    let missing = t.path().join("secrets/not-on-this-runner.json");
    let config = format!(
        "[providers.pass]\nkind = \"command\"\ncommand = [\"/nonexistent/cme-exec-test-helper\", \"{{path}}\"]\n\n\
         [confluence.\"https://company.atlassian.net\"]\nusername = \"u@example.com\"\napi_token = \"vault://secret/cme/wiki#api_token\"\n\n\
         [confluence.\"https://other.atlassian.net\"]\nfrom = {}\n\n\
         [confluence.\"https://third.atlassian.net\"]\nfrom = {}\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"aws-sm://cme/jira#pat\"\n\n\
         [jira.\"https://jira2.example.com\"]\npat = \"pass://cme/jira2\"\n",
        q(file_ref(&present)),
        q(file_ref(&missing)),
    );
    let t = t
        .env("VAULT_ADDR", &address)
        .env("VAULT_TOKEN", &token)
        .env("AWS_ENDPOINT_URL", &address)
        .env("AWS_ACCESS_KEY_ID", "AKIAOFFLINETEST")
        .env("AWS_SECRET_ACCESS_KEY", &key)
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LOG_SENSITIVE_BODIES", "true")
        .config_toml(&config);
    let out = t.run_args(["check", "--offline"]);
    out.assert_success();
    for (reference, verdict) in [
        (
            "vault://secret/cme/wiki#api_token",
            "ok; not fetched (--offline)".to_owned(),
        ),
        (
            "aws-sm://cme/jira#pat",
            "ok; not fetched (--offline)".to_owned(),
        ),
        ("pass://cme/jira2", "ok; not fetched (--offline)".to_owned()),
        (
            &file_ref(&present),
            "ok; not read (--offline); permissions ok".to_owned(),
        ),
        (
            &file_ref(&missing),
            format!(
                "ok; not read (--offline); {} does not exist here",
                missing.display()
            ),
        ),
    ] {
        assert!(
            lines_with(&out.stdout, &[reference])
                .iter()
                .any(|l| l.ends_with(&verdict)),
            "{reference}: {verdict}\n{}",
            out.describe()
        );
    }
    out.assert_stdout_contains("provider vault (vault): not contacted (--offline)")
        .assert_stdout_contains("offline: all 6 well-formed; no store contacted, nothing fetched");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "check --offline connected to the store address"
    );
    let json = t.run_args(["check", "--offline", "--format", "json"]);
    json.assert_success();
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(
        (v["ok"].clone(), v["offline"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert!(v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["fetched"] == false));

    // What the offline check leaves out: plain `check` builds the providers (the AWS one
    // refuses LOG_SENSITIVE_BODIES, the helper is missing) and calls Vault at the listener.
    let out = t.run_args(["--timeout", "1", "check"]);
    out.assert_code(1);
    out.assert_stdout_contains("LOG_SENSITIVE_BODIES");
    assert!(
        listener.accept().is_ok(),
        "plain check should have called the Vault address\n{}",
        out.describe()
    );

    // A file that others can write fails offline too; a config problem is still one.
    fs::set_permissions(
        &present,
        std::os::unix::fs::PermissionsExt::from_mode(0o602),
    )
    .unwrap();
    let out = t.run_args(["check", "--offline"]);
    out.assert_code(1);
    out.assert_stdout_contains("is writable by other users");
    fs::set_permissions(
        &present,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    t.assert_clean();
}

/// `man` has ENVIRONMENT, EXIT STATUS and run's options; every subcommand page
/// it refers to is written by `man --dir DIR`, each with the same sections.
#[test]
fn man_pages_are_complete() {
    let t = Test::new();
    let out = t.run_args(["man"]);
    out.assert_success();
    let main = out.stdout.clone();
    for needle in [
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        ".SH \"RUN OPTIONS\"",
        "\\-\\-via",
        "CME_EXEC_CONFIG",
        "101",
    ] {
        assert!(main.contains(needle), "cme-exec.1 has {needle:?}");
    }
    let dir = t.out_dir().join("man1");
    fs::create_dir(&dir).unwrap();
    let out = t.run_args([OsStr::new("man"), OsStr::new("--dir"), dir.as_os_str()]);
    out.assert_success();
    assert_eq!(
        fs::read_to_string(dir.join("cme-exec.1")).unwrap(),
        main,
        "--dir writes the same cme-exec.1"
    );
    // Every `cme-exec-NAME(1)` the main page names has its file.
    let mut referenced = Vec::new();
    for (i, _) in main.match_indices("cme\\-exec\\-") {
        let rest = &main[i + "cme\\-exec\\-".len()..];
        if let Some(end) = rest.find("(1)") {
            let name = &rest[..end];
            if name.chars().all(|c| c.is_ascii_lowercase()) {
                referenced.push(format!("cme-exec-{name}.1"));
            }
        }
    }
    referenced.sort();
    referenced.dedup();
    assert!(
        referenced.len() >= 6,
        "the subcommands are listed: {referenced:?}"
    );
    for page in &referenced {
        let text = fs::read_to_string(dir.join(page))
            .unwrap_or_else(|e| panic!("{page} is referenced but not written: {e}"));
        assert!(
            text.contains(".SH ENVIRONMENT") && text.contains(".SH \"EXIT STATUS\""),
            "{page} has ENVIRONMENT and EXIT STATUS"
        );
    }
    let run = fs::read_to_string(dir.join("cme-exec-run.1")).unwrap();
    assert!(
        run.contains("\\-\\-grace"),
        "cme-exec-run.1 has run's options"
    );
    t.assert_clean();
}
