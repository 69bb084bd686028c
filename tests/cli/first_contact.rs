//! What a new user meets first: the deadline (`--timeout`, `check` included), errors from AWS
//! and Vault in words with the right hint, what is shown while a store is slow, links to the
//! documentation, and documentation samples that match the real output. Against real OpenBao
//! and moto, a closed port, and a loopback listener that accepts connections and never answers.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::launch::{from_terminal, pty_runner};
use crate::support::moto::{self, Moto};
use crate::support::openbao::OpenBao;
use crate::support::*;

/// What a failing run may take beyond its `--timeout`: starting and ending the process on a busy
/// machine. Generous on purpose (the bugs these tests catch are a doubled deadline).
const MARGIN: Duration = Duration::from_millis(2500);

/// A loopback listener that accepts every connection, reads what is sent and never answers
/// (a store that hangs). Connections are held until it is dropped.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let stopped = Arc::clone(&stopped);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4096];
                    while !stopped.load(Ordering::SeqCst) {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            _ => continue,
                        }
                    }
                });
            }
        });
        Silent { addr, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// 12. One deadline covers everything
// ---------------------------------------------------------------------------------------------

/// `check --timeout 4` against a Vault and an AWS endpoint that both accept and never answer:
/// the fetches and both identity lookups share the one deadline (it took 12 s: the deadline once
/// for the fetches and once more for each identity lookup).
#[test]
fn check_keeps_one_deadline_against_stores_that_never_answer() {
    let vault = Silent::start();
    let aws = Silent::start();
    let t = Test::new()
        .env("VAULT_ADDR", vault.url())
        .env("VAULT_TOKEN", "hvs.not-a-secret-token")
        .env("AWS_ENDPOINT_URL", aws.url())
        .env("AWS_REGION", moto::REGION)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .global_arg("--timeout")
        .global_arg("4")
        .config_toml(
            "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
             api_token = \"aws-sm://app#token\"\n",
        );
    let start = Instant::now();
    let out = t.run_args(["check"]);
    let elapsed = start.elapsed();
    out.assert_code(1);
    assert!(
        elapsed < Duration::from_secs(4) + MARGIN,
        "check --timeout 4 took {elapsed:?}\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// `--timeout 0` is refused with a message that does not say 0 is allowed.
#[test]
fn timeout_zero_is_refused_in_words_that_match() {
    let t = Test::new();
    let out = t.run_args(["--timeout", "0", "check"]);
    out.assert_code(125);
    assert!(
        !out.stderr.contains("between 0 and"),
        "the message must not say 0 is allowed\n{}",
        out.describe()
    );
    out.assert_stderr_contains("greater than 0");
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 23. Hints cite the documentation's address, never a bare `docs/` path
// ---------------------------------------------------------------------------------------------

/// `https://github.com/cme-exec/cme-exec/blob/vVERSION/docs/`: where every hint's link points.
fn docs_base() -> String {
    format!(
        "https://github.com/cme-exec/cme-exec/blob/v{}/docs/",
        env!("CARGO_PKG_VERSION")
    )
}

/// Every `docs/` in `text` is part of a link to the documentation at this version.
#[track_caller]
fn assert_no_bare_docs_path(what: &str, text: &str) {
    let base = docs_base();
    for (i, _) in text.match_indices("docs/") {
        let start = i + "docs/".len();
        assert!(
            text[..start].ends_with(&base),
            "{what} cites a bare docs/ path (an installed binary has no docs/ beside it): {}",
            &text[i.saturating_sub(60)..(i + 40).min(text.len())]
        );
    }
}

/// Hints link to the documentation's URL: no configuration at all, no Vault token, no AWS
/// credentials, a bad VAULT_* setting for the built-in provider.
#[test]
fn hints_link_to_the_documentation_not_to_a_docs_path() {
    let t = Test::new();
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains(&format!("{}configuration.md", docs_base())),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("`check` without a configuration", &out.stderr);

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("address");
    drop(closed);
    let t = Test::new()
        .env("VAULT_ADDR", format!("http://{addr}"))
        .env("AWS_ENDPOINT_URL", format!("http://{addr}"))
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .config_toml(
            "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
             api_token = \"aws-sm://app#token\"\n",
        );
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains(&format!("{}providers/vault.md", docs_base())),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("{}providers/aws-sm.md", docs_base())),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("`check` without credentials", &out.stdout);
    assert_no_bare_docs_path("`check` without credentials", &out.stderr);

    let out = t.env("CME_EXEC_VAULT_KV_VERSION", "7").run_args(["check"]);
    assert!(
        out.stdout.contains(&format!(
            "{}providers/vault.md#without-a-config-file",
            docs_base()
        )),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("a bad VAULT_* setting", &out.stdout);
}

/// No user-facing text in the sources (string literals, and `///` in src/cli.rs, which is the
/// `--help` text) cites a `docs/` path; links are built by `docs_url`.
#[test]
fn no_source_string_cites_a_bare_docs_path() {
    let mut offenders = Vec::new();
    for dir in ["src", "providers/src"] {
        for file in files_under(&repo_root().join(dir)) {
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let is_cli = file.ends_with("src/cli.rs");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                let help = is_cli && code.starts_with("///");
                if code.starts_with("//") && !help {
                    continue;
                }
                if code.contains("/blob/v{}/docs/{page}") {
                    continue; // docs_url itself
                }
                if line.contains("docs/") {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "build links with docs_url(\"page.md\") instead:\n{}",
        offenders.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 9 and 19. AWS errors: one message per cause, in words, never a provider's own text
// ---------------------------------------------------------------------------------------------

/// Signs of an error printed through `Debug` rather than in words.
const DEBUG_SIGNS: [&str; 6] = [
    "DispatchFailure",
    "ConnectorError",
    "Some(",
    "{ ",
    "InvalidConfiguration(",
    "Unhandled",
];

#[track_caller]
fn assert_in_words(what: &str, out: &Output) {
    let all = format!("{}\n{}", out.stdout, out.stderr);
    for sign in DEBUG_SIGNS {
        assert!(
            !all.contains(sign),
            "{what}: the output shows Rust Debug ({sign:?})\n{}",
            out.describe()
        );
    }
}

/// An `aws-sm` test: one field from `aws-sm://app#token`, region set, no instance metadata.
fn aws_words_test(t: Test, endpoint: &str) -> Test {
    t.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://app#token\"\n")
}

/// The failed line of `check` for the field.
fn failed_line(out: &Output) -> String {
    out.stdout
        .lines()
        .find(|l| l.contains("aws-sm://app#token"))
        .unwrap_or_else(|| panic!("check printed no line for the field\n{}", out.describe()))
        .to_owned()
}

/// A closed port and missing credentials (against moto, which answers) are two causes with two
/// messages; neither prints the SDK's error tree.
#[test]
fn aws_unreachable_endpoint_and_missing_credentials_are_told_apart() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    let mut t = Test::new();
    let key = t.sentinel("aws-secret-key");
    let t = aws_words_test(t, &closed)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", &key);
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_in_words("a closed port", &out);
    let line = failed_line(&out);
    assert!(
        line.contains("cannot connect") && line.contains(&closed),
        "a closed port is a connection failure naming the endpoint: {line}"
    );
    assert!(!line.contains("credentials"), "{line}");

    let moto = Moto::start();
    let t = aws_words_test(Test::new(), &moto.endpoint());
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_in_words("no credentials", &out);
    let line = failed_line(&out);
    assert!(
        line.contains("found no AWS credentials") && !line.contains("cannot connect"),
        "{line}"
    );
    assert!(line.contains("AWS_ACCESS_KEY_ID"), "the hint: {line}");
    assert_eq!(
        moto.api_requests(),
        0,
        "nothing is sent without credentials"
    );
    t.assert_clean();
}

/// `AWS_PROFILE` naming a profile that is not defined is named (like the AWS CLI's "config
/// profile (nope) could not be found"); an SSO profile without a session says to sign in
/// (`aws sso login`), and a failing `credential_process` helper is named, not "set AWS_PROFILE".
/// The helper runs, and what it printed (a sentinel, on stdout and stderr) never appears.
#[test]
fn aws_profiles_missing_sso_and_credential_process_are_named() {
    let moto = Moto::start();
    let mut t = Test::new();
    let said = t.sentinel("helper-stderr");
    let config = format!(
        "[default]\nregion = us-east-1\n\n[profile reader]\naws_access_key_id = AKIAEXAMPLE\n\n\
         [profile corp]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = Reader\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
         sso_region = us-east-1\n\n[profile helper]\n\
         credential_process = sh -c \"echo {said} >&2; echo {said}; exit 3\"\n"
    );
    // In secrets/ (the helper's command holds the sentinel), named like the AWS CLI does.
    let config_file = t.secret_file("aws-config", config);
    let t = aws_words_test(t, &moto.endpoint()).env("AWS_CONFIG_FILE", &config_file);

    let out = t.launch(["check"]).env("AWS_PROFILE", "nope").run();
    assert_in_words("a missing profile", &out);
    let line = failed_line(&out);
    assert!(
        line.contains("`nope`") && line.contains("could not be found"),
        "{line}"
    );
    assert!(
        line.contains("reader"),
        "the defined profiles are listed: {line}"
    );

    let out = t.launch(["check"]).env("AWS_PROFILE", "corp").run();
    assert_in_words("an SSO profile", &out);
    let line = failed_line(&out);
    assert!(
        line.contains("IAM Identity Center (SSO)") && line.contains("no usable SSO session"),
        "{line}"
    );
    assert!(line.contains("aws sso login --profile corp"), "{line}");
    assert!(!line.contains("set AWS_ACCESS_KEY_ID"), "{line}");

    let out = t.launch(["check"]).env("AWS_PROFILE", "helper").run();
    assert_in_words("a credential_process profile", &out);
    let line = failed_line(&out);
    assert!(
        line.contains("credential_process helper of the AWS profile `helper`")
            && line.contains("not shown"),
        "{line}"
    );
    assert!(
        !line.contains("sh -c"),
        "the helper's command line is not shown: {line}"
    );
    assert_eq!(moto.api_requests(), 0);
    t.assert_clean();
}

/// A web identity token refused by STS: the answer's code is shown, its free text is not
/// (the message is a sentinel, so the harness fails the test if it appears anywhere).
#[test]
fn aws_credential_provider_text_never_reaches_the_output() {
    let mut t = Test::new();
    let told = t.sentinel("sts-message");
    let jwt = t.sentinel("jwt");
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
         <Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>{told}</Message></Error>\
         <RequestId>c0ffee</RequestId></ErrorResponse>"
    );
    let sts = crate::support::faults::FaultServer::start(move |_, _, conn| {
        let _ = conn.head(
            400,
            &[
                ("Content-Type", "text/xml".to_owned()),
                ("Content-Length", body.len().to_string()),
            ],
        );
        let _ = conn.write(body.as_bytes());
    });
    let token_file = t.secret_file("web-identity-token", &jwt);
    let t = aws_words_test(t, &sts.url())
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/reader");
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_in_words("a refused web identity", &out);
    let line = failed_line(&out);
    assert!(line.contains("InvalidIdentityToken"), "{line}");
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 20. Vault hints point at the cause
// ---------------------------------------------------------------------------------------------

/// A Vault test: two fields of one KV v2 document `secret/app`, the built-in provider from
/// `VAULT_ADDR`, nothing else.
fn vault_hint_test(t: Test, address: &str) -> Test {
    t.env("VAULT_ADDR", address).config_toml(
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
         api_token = \"vault://secret/app#token\"\n",
    )
}

/// The `hint:` line of a failed run.
#[track_caller]
fn hint_of(out: &Output) -> String {
    out.assert_code(125);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint\n{}", out.describe()))
        .to_owned()
}

/// A wrong token, a token whose policies do not allow the read, a misspelt namespace and
/// `https://` against a plain-HTTP server: each gets the hint for its own cause.
#[test]
fn vault_hints_name_the_cause() {
    let bao = OpenBao::start();
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let wrong = t.sentinel("wrong-token");
    let reader = t.sentinel("reader-token");
    bao.kv2_put("secret", "app", json!({ "user": user, "token": token }));
    bao.policy(
        "elsewhere",
        "path \"secret/data/other\" { capabilities = [\"read\"] }",
    );
    bao.token_with_id(&reader, &["elsewhere"]);
    let t = vault_hint_test(t, &bao.address());
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    let run = |token: &str, extra: &[(&str, &str)]| {
        let mut l = t
            .launch([std::ffi::OsString::from("--"), child.clone().into()])
            .env("VAULT_TOKEN", token);
        for (k, v) in extra {
            l = l.env(k, v);
        }
        l.run()
    };

    let hint = hint_of(&run(&wrong, &[]));
    assert!(
        hint.contains("does not accept the token") && !hint.contains("mount's name"),
        "a wrong token: {hint}"
    );

    let hint = hint_of(&run(&reader, &[]));
    assert!(
        hint.contains("token is valid") && hint.contains("policies"),
        "a token without read: {hint}"
    );

    let hint = hint_of(&run(bao.root_token(), &[("VAULT_NAMESPACE", "no-such-ns")]));
    assert!(
        hint.contains("namespace") && !hint.contains("mount's name"),
        "a misspelt namespace: {hint}"
    );

    let https = bao.address().replacen("http://", "https://", 1);
    let out = t
        .launch([std::ffi::OsString::from("--"), child.clone().into()])
        .env("VAULT_TOKEN", bao.root_token())
        .env("VAULT_ADDR", &https)
        .run();
    let hint = hint_of(&out);
    assert!(
        hint.contains("plain HTTP") && !hint.contains("VAULT_CACERT"),
        "https:// against plain HTTP: {hint}"
    );
    t.assert_clean();
}

/// A run whose AppRole login fails at a real OpenBao (an unknown role id), with three fields
/// (two instances) that all need the login; it must exit 125.
fn failed_approle_login(confluence_url: &str) -> (OpenBao, Test, Output) {
    let bao = OpenBao::start();
    bao.enable_auth("approle", "approle");
    bao.ok(
        "POST",
        "auth/approle/role/reader",
        json!({ "token_policies": ["default"] }),
    );
    let mut t = Test::new();
    let secret_id = t.sentinel("secret-id");
    let config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\n\
         auth = {{ method = \"approle\", role_id = \"no-such-role-id\", secret_id_env = \"SECRET_ID\" }}\n\n\
         [confluence.{}]\nusername = \"vault://secret/app#user\"\n\
         api_token = \"vault://secret/app#token\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"vault://secret/jira#pat\"\n",
        serde_json::to_string(&bao.address()).expect("a string"),
        serde_json::to_string(confluence_url).expect("a string"),
    );
    let t = t.env("SECRET_ID", &secret_id).config_toml(&config);
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    let out = t.run_args([std::ffi::OsString::from("--"), child.into()]);
    out.assert_code(125);
    (bao, t, out)
}

/// A failed login is told once, with the fields it stopped under it, not once per field.
#[test]
fn vault_failed_login_is_told_once() {
    let (_bao, t, out) = failed_approle_login("https://x.atlassian.net");
    let logins = out.stderr.matches("logging in to").count();
    assert_eq!(logins, 1, "the login failure once\n{}", out.describe());
    for field in ["username", "api_token", "pat"] {
        out.assert_stderr_contains(field);
    }
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 21. What is being waited for, while a store is slow
// ---------------------------------------------------------------------------------------------

/// A Vault test whose only store is `address`, with a child that does nothing.
fn waiting_test(address: &str) -> (Test, std::path::PathBuf) {
    let t = Test::new()
        .env("VAULT_ADDR", address)
        .env("VAULT_TOKEN", "hvs.not-a-secret-token")
        .global_arg("--timeout")
        .global_arg("3")
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"vault://secret/app#pat\"\n");
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    (t, child)
}

/// On a terminal, a store that accepts and never answers is named after about a second: the
/// store, its address, the time waited and the attempt. The lines come before the deadline's
/// error, on cme-exec's own stderr (the child never starts). Not on a pipe: a CI log gets the
/// error only.
#[test]
fn a_slow_store_is_named_on_a_terminal_while_it_is_awaited() {
    let silent = Silent::start();
    let (t, child) = waiting_test(&silent.url());
    let pty = pty_runner(&t);
    let start = Instant::now();
    let out = t
        .launch([std::ffi::OsString::from("--"), child.clone().into()])
        .wrapper([&pty])
        .run();
    let elapsed = start.elapsed();
    out.assert_code(125);
    let screen = from_terminal(&out.stdout);
    let line = screen
        .lines()
        .find(|l| l.starts_with("cme-exec: waiting for "))
        .unwrap_or_else(|| panic!("nothing was shown while waiting\n{}", out.describe()));
    assert!(
        line.contains(&format!("Vault at {}", silent.url())) && line.contains("attempt 1"),
        "the store, its address and the attempt: {line}"
    );
    assert!(line.contains(" s"), "the time waited: {line}");
    let waiting_at = screen.find("waiting for").expect("found above");
    let error_at = screen
        .find("cme-exec: error:")
        .unwrap_or_else(|| panic!("no error after the deadline\n{}", out.describe()));
    assert!(
        waiting_at < error_at,
        "shown while waiting, before the error"
    );
    assert!(
        screen.matches("waiting for").count() <= 2,
        "repeated sparingly (3 s of waiting)\n{screen}"
    );
    assert!(elapsed < Duration::from_secs(3) + MARGIN, "{elapsed:?}");

    let out = t.run_args([std::ffi::OsString::from("--"), child.into()]);
    out.assert_code(125);
    assert!(
        !out.stderr.contains("waiting for"),
        "not on a pipe\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// Each retry is logged at `-v` (info), terminal or not: the store, the address, the attempt.
#[test]
fn retries_are_logged_at_verbose() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    let (t, child) = waiting_test(&closed);
    let out = t.run_args([std::ffi::OsString::from("-v"), "--".into(), child.into()]);
    out.assert_code(125);
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("retrying"))
        .collect();
    assert_eq!(
        retries.len(),
        2,
        "three attempts, two retries\n{}",
        out.describe()
    );
    assert!(
        retries[0].contains(&format!("Vault at {closed}")) && retries[0].contains("attempt 1 of 3"),
        "{}",
        retries[0]
    );
    t.assert_clean();

    // The AWS SDK retries on its own: its attempts are logged the same way.
    let t = aws_words_test(Test::new(), &closed)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret-key");
    let out = t.run_args(["-v", "check"]);
    out.assert_code(1);
    let retry = out
        .stderr
        .lines()
        .find(|l| l.contains("retrying") && l.contains("GetSecretValue"))
        .unwrap_or_else(|| panic!("no AWS retry logged\n{}", out.describe()));
    assert!(
        retry.contains(&format!("AWS Secrets Manager at {closed}"))
            && retry.contains("attempt 1 of 3"),
        "{retry}"
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// 24. Documentation that matches
// ---------------------------------------------------------------------------------------------

/// The fenced block of `page` (under docs/) that contains `marker`.
fn doc_block(page: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("docs").join(page))
        .unwrap_or_else(|e| panic!("read docs/{page}: {e}"));
    text.split("```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').map_or("", |(_, body)| body).to_owned())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("docs/{page} has no block with {marker:?}"))
}

/// Every line of the documented sample is a line of the real output (after `replace`).
#[track_caller]
fn assert_sample_matches(page: &str, sample: &str, real: &str) {
    let real_lines: Vec<&str> = real.lines().collect();
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            real_lines.contains(&line),
            "docs/{page} shows a line the real output does not have:\n  {line}\nreal output:\n{real}"
        );
    }
}

/// docs/configuration.md's sample of a strict parse (an unknown key, an unknown scheme) is
/// what cme-exec prints.
#[test]
fn documented_config_error_sample_matches_real_output() {
    let sample = doc_block("configuration.md", "problems in the configuration");
    let t = Test::new();
    t.write_file(
        "work/cme-exec.toml",
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"env://CONFLUENCE_USER\"\n\
         api_tokn = \"env://CONFLUENCE_TOKEN\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"valt://secret/jira#pat\"\n",
    );
    // Named with --config as given: the message shows the path the way the user wrote it (and
    // a file named on the command line is used whatever the rules for one found in the
    // working directory).
    let work = t.work_dir();
    let t = t.current_dir(work);
    let out = t.run_args(["--config", "cme-exec.toml", "check"]);
    out.assert_code(1);
    let real = out.stderr.clone();
    assert_sample_matches("configuration.md", &sample, &real);
}

/// docs/providers/vault.md's sample of a failed login told once is what cme-exec prints
/// against OpenBao (its address written as the docs' `https://vault.example.com`).
#[test]
fn documented_vault_login_sample_matches_real_output() {
    let sample = doc_block("providers/vault.md", "(for 3 fields)");
    let (bao, t, out) = failed_approle_login("https://a.example.com");
    let real = out
        .stderr
        .replace(&bao.address(), "https://vault.example.com");
    assert_sample_matches("providers/vault.md", &sample, &real);
    t.assert_clean();
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
    let user = var_name_for_test("USER");
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

/// `render` into a directory that does not exist creates it (0700) and says so on stderr.
#[test]
fn render_says_which_directories_it_created() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let var = var_name_for_test("PAT");
    let t = t.env(&var, &pat).config_toml(&format!(
        "[jira.\"https://jira.example.com\"]\npat = \"env://{var}\"\n"
    ));
    let output = t.out_dir().join("new").join("deeper").join("app_data.json");
    let out = t.run_args([
        std::ffi::OsString::from("render"),
        "--output".into(),
        output.clone().into(),
    ]);
    out.assert_success();
    assert!(output.is_file());
    let created = [t.out_dir().join("new"), t.out_dir().join("new/deeper")];
    for dir in &created {
        assert_eq!(mode_of(dir) & 0o777, 0o700, "{}", dir.display());
        out.assert_stderr_contains(&dir.display().to_string());
    }
    out.assert_stderr_contains("created the directories");

    // Into an existing directory: nothing to say.
    let out = t.run_args([
        std::ffi::OsString::from("render"),
        "--output".into(),
        output.into(),
    ]);
    out.assert_success();
    assert!(!out.stderr.contains("created"), "{}", out.describe());
    t.assert_clean();
}

/// A unique variable name.
fn var_name_for_test(label: &str) -> String {
    format!("CME_TEST_{label}_{}", secrets::random_hex().to_uppercase())
}
