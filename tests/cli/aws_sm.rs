//! The `aws-sm` provider against moto's server (Secrets Manager, STS and IAM), started by each
//! test on a free loopback port ([`crate::support::moto`]), with static test credentials whose
//! secret key is a sentinel. Requests are counted by a proxy in front of moto, which also plays
//! the faults moto cannot (hanging, 503 then success).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::moto::{self, Fault, Moto, MotoProxy, ACCOUNT};
use crate::support::*;
use crate::*;

/// A test pointed at `endpoint` with the static credentials; the secret access key and a session
/// token are sentinels (so every output and the child's environment are checked for them).
struct AwsTest {
    t: Test,
    secret_key: String,
    session_token: String,
}

fn aws_test(endpoint: &str) -> AwsTest {
    let mut t = Test::new();
    let secret_key = t.sentinel("aws-secret-key");
    let session_token = t.sentinel("aws-session-token");
    for (k, v) in Moto::aws_env(endpoint, &secret_key) {
        t = t.env(k, v);
    }
    let t = t.env("AWS_SESSION_TOKEN", &session_token);
    AwsTest {
        t,
        secret_key,
        session_token,
    }
}

/// The child did not receive the AWS credentials cme-exec used, nor any sentinel in its
/// environment; non-credential AWS settings stay.
#[track_caller]
fn assert_child_env_has_no_aws_credentials(a: &AwsTest) {
    let env = a.t.child_env();
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        assert!(
            env.var(name).is_none(),
            "the child inherited {name}; its variables: {:?}",
            env.names()
        );
    }
    assert_no_leak_in("the child's environment", &env.raw_env, &a.secret_key);
    assert_no_leak_in("the child's environment", &env.raw_env, &a.session_token);
    assert_eq!(
        env.var("AWS_REGION"),
        Some(moto::REGION),
        "AWS_REGION is no credential"
    );
}

/// `ok` lines of `check` for every field, and the identity line.
#[track_caller]
fn assert_check_identity(out: &Output, arn_part: &str) {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("provider ") && l.contains("(aws-sm)"))
        .unwrap_or_else(|| panic!("check printed no aws-sm identity\n{}", out.describe()));
    assert!(
        line.contains(&format!("account={ACCOUNT}")) && line.contains(arn_part),
        "the identity line should show account {ACCOUNT} and an ARN with {arn_part:?}: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reading secrets
// ---------------------------------------------------------------------------------------------

/// Names (with `@`, `+`, `=`), JSON keys and a plain string, three secrets: one
/// `BatchGetSecretValue`, and the child gets neither the keys nor the session token.
#[test]
fn aws_sm_reads_json_keys_and_plain_strings_in_one_batch() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut a = aws_test(&proxy.endpoint());
    let user = a.t.sentinel("user");
    let token = a.t.sentinel("token");
    let pat = a.t.sentinel("pat");
    let pat2 = a.t.sentinel("pat2");
    moto.create_secret(
        "prod/wiki",
        &json!({ "username": user, "api_token": token }).to_string(),
    );
    moto.create_secret("prod/jira-pat", &pat);
    moto.create_secret(
        "team@prod/x+y=z",
        &json!({ "nested": { "pat": pat2 } }).to_string(),
    );

    let config = format!(
        r#"
[confluence."https://wiki.example.com"]
username = "aws-sm://prod/wiki#username"
api_token = "aws-sm://prod/wiki#api_token"

[jira."https://jira.example.com"]
pat = "aws-sm://prod/jira-pat"

[jira."https://jira2.example.com"]
pat = {pat2_ref}
"#,
        pat2_ref = q("aws-sm://team@prod/x+y=z#/nested/pat"),
    );
    a.t = a.t.config_toml(&config);
    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();

    let config = a.t.child_env().config_json();
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "username",
        &user,
    );
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "api_token",
        &token,
    );
    assert_config_field(&config, "jira", "https://jira.example.com", "pat", &pat);
    assert_config_field(&config, "jira", "https://jira2.example.com", "pat", &pat2);
    assert_eq!(
        proxy.operations(),
        ["secretsmanager.BatchGetSecretValue"],
        "three secrets at their current version are one batch call"
    );
    assert_child_env_has_no_aws_credentials(&a);
    a.t.assert_clean();
}

/// `--keep-env` keeps a credential variable the provider would otherwise remove.
#[test]
fn aws_sm_keep_env_keeps_a_credential_variable() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    let pat = a.t.sentinel("pat");
    moto.create_secret("prod/jira", &pat);
    a.t =
        a.t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let child = dump_env_child(&a.t);
    a.t.run_args([
        OsStrArg::from("run"),
        "--keep-env".into(),
        "AWS_ACCESS_KEY_ID".into(),
        "--".into(),
        child.into(),
    ])
    .assert_success();
    let env = a.t.child_env();
    assert_eq!(env.var("AWS_ACCESS_KEY_ID"), Some(moto::ACCESS_KEY_ID));
    assert!(env.var("AWS_SECRET_ACCESS_KEY").is_none());
    a.t.assert_clean();
}

/// Thirty fields across ten secrets cost one request (the performance target, as a test).
#[test]
fn aws_sm_thirty_fields_in_ten_secrets_are_one_request() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut a = aws_test(&proxy.endpoint());
    let mut config = String::new();
    let mut expected = Vec::new();
    for i in 0..10 {
        let (user, token, pat) = (
            a.t.sentinel(&format!("user{i}")),
            a.t.sentinel(&format!("token{i}")),
            a.t.sentinel(&format!("pat{i}")),
        );
        moto.create_secret(
            &format!("team/s{i}"),
            &json!({ "username": user, "api_token": token, "pat": pat }).to_string(),
        );
        config.push_str(&format!(
            "[confluence.\"https://c{i}.example.com\"]\nusername = \"aws-sm://team/s{i}#username\"\n\
             api_token = \"aws-sm://team/s{i}#api_token\"\n\
             [jira.\"https://j{i}.example.com\"]\npat = \"aws-sm://team/s{i}#pat\"\n"
        ));
        expected.push((i, user, token, pat));
    }
    a.t = a.t.config_toml(&config);
    // moto logs a request after answering it: wait for the ten CreateSecret lines.
    wait_until("moto logged the seeding", Duration::from_secs(10), || {
        moto.api_requests() == 10
    });
    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = a.t.child_env().config_json();
    for (i, user, token, pat) in &expected {
        let c = format!("https://c{i}.example.com");
        assert_config_field(&config, "confluence", &c, "username", user);
        assert_config_field(&config, "confluence", &c, "api_token", token);
        assert_config_field(
            &config,
            "jira",
            &format!("https://j{i}.example.com"),
            "pat",
            pat,
        );
    }
    assert_eq!(proxy.operations(), ["secretsmanager.BatchGetSecretValue"]);
    wait_until(
        "moto logged the run's request",
        Duration::from_secs(10),
        || moto.api_requests() >= 11,
    );
    assert_eq!(
        moto.api_requests(),
        11,
        "moto's own log agrees: one request"
    );
    a.t.assert_clean();
}

/// A full ARN (`aws-sm:///ARN`), a partial ARN (`aws-sm:ARN`), and an ARN in another region than
/// the provider's, through a declared provider with `endpoint_url` and `region` settings.
#[test]
fn aws_sm_reads_by_full_and_partial_arn_and_across_regions() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    // Endpoint and region come from the provider's table this time, not the environment.
    let mut a = aws_test("http://127.0.0.1:9");
    a.t = a.t.env_remove("AWS_ENDPOINT_URL").env_remove("AWS_REGION");
    let user = a.t.sentinel("user");
    let token = a.t.sentinel("token");
    let pat = a.t.sentinel("pat");
    let arn = moto.create_secret(
        "by/arn",
        &json!({ "username": user, "api_token": token }).to_string(),
    );
    let partial = arn[..arn.len() - 7].to_owned();
    assert!(
        arn[partial.len()..].starts_with('-'),
        "moto's ARN ends in -XXXXXX"
    );
    let far = moto.create_secret_in("eu-west-1", "far/away", &json!({ "pat": pat }).to_string());
    assert!(far.contains(":eu-west-1:"));

    let config = format!(
        r#"
[providers.aws]
kind = "aws-sm"
region = "us-east-1"
endpoint_url = {endpoint}
use_ambient_credentials = true

[confluence."https://wiki.example.com"]
username = {full}
api_token = {partial}

[jira."https://jira.example.com"]
pat = {far}
"#,
        endpoint = q(proxy.endpoint()),
        full = q(format!("aws:///{arn}#username")),
        partial = q(format!("aws:{partial}#api_token")),
        far = q(format!("aws:///{far}#pat")),
    );
    a.t = a.t.config_toml(&config);
    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = a.t.child_env().config_json();
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "username",
        &user,
    );
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "api_token",
        &token,
    );
    assert_config_field(&config, "jira", "https://jira.example.com", "pat", &pat);
    // us-east-1: the full and the partial ARN in one batch; eu-west-1: one GetSecretValue.
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        1,
        "{:?}",
        proxy.operations()
    );
    assert_eq!(proxy.count("GetSecretValue"), 1, "{:?}", proxy.operations());
    a.t.assert_clean();
}

/// After a rotation (`PutSecretValue`): no parameter and `AWSCURRENT` are the new value (and one
/// request), `AWSPREVIOUS` and the first `version_id` the old one.
#[test]
fn aws_sm_reads_versions_after_a_rotation() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut a = aws_test(&proxy.endpoint());
    let old = a.t.sentinel("old-pat");
    let new = a.t.sentinel("new-pat");
    moto.create_secret("rotating", &json!({ "pat": old }).to_string());
    let first_version = moto.current_version_id("rotating");
    let second_version = moto.put_secret_value("rotating", &json!({ "pat": new }).to_string());
    assert_ne!(first_version, second_version);

    let config = format!(
        r#"
[jira."https://a.example.com"]
pat = "aws-sm://rotating#pat"
[jira."https://b.example.com"]
pat = "aws-sm://rotating?version_stage=AWSCURRENT#pat"
[jira."https://c.example.com"]
pat = "aws-sm://rotating?version_stage=AWSPREVIOUS#pat"
[jira."https://d.example.com"]
pat = "aws-sm://rotating?version_id={first_version}#pat"
"#
    );
    a.t = a.t.config_toml(&config);
    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = a.t.child_env().config_json();
    assert_config_field(&config, "jira", "https://a.example.com", "pat", &new);
    assert_config_field(&config, "jira", "https://b.example.com", "pat", &new);
    assert_config_field(&config, "jira", "https://c.example.com", "pat", &old);
    assert_config_field(&config, "jira", "https://d.example.com", "pat", &old);
    assert_eq!(
        proxy.count("GetSecretValue"),
        3,
        "AWSCURRENT and no parameter are one request: {:?}",
        proxy.operations()
    );
    a.t.assert_clean();
}

/// `SecretBinary` holding UTF-8 JSON works as a `from` object; bytes that are not UTF-8 are a
/// clear 125.
#[test]
fn aws_sm_reads_secret_binary_as_utf8_text() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    let user = a.t.sentinel("user");
    let token = a.t.sentinel("token");
    moto.create_binary_secret(
        "binary/json",
        json!({ "username": user, "api_token": token })
            .to_string()
            .as_bytes(),
    );
    moto.create_binary_secret("binary/raw", &[0xff, 0xfe, 0x00, 0x80]);
    a.t = a.t.config_toml(
        "[confluence.\"https://wiki.example.com\"]\nfrom = \"aws-sm://binary/json\"\n\
         [jira.\"https://jira.example.com\"]\npat = \"aws-sm://binary/raw\"\n",
    );
    let (marker_child, marker) = marker_child(&a.t);
    let out = a.t.run_args([OsStrArg::from("--"), marker_child.into()]);
    out.assert_code(125);
    out.assert_stderr_contains("SecretBinary is not UTF-8");
    out.assert_stderr_contains("aws-sm://binary/raw");
    assert!(
        !marker.exists(),
        "the child ran although a reference failed"
    );

    let t = a.t.config_toml(
        "[confluence.\"https://wiki.example.com\"]\nfrom = \"aws-sm://binary/json\"\n",
    );
    let child = dump_env_child(&t);
    t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = t.child_env().config_json();
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "username",
        &user,
    );
    assert_config_field(
        &config,
        "confluence",
        "https://wiki.example.com",
        "api_token",
        &token,
    );
    t.assert_clean();
}

/// A missing secret, a missing key and a secret scheduled for deletion: one run lists all three
/// with the AWS error code, exits 125 and starts nothing.
#[test]
fn aws_sm_missing_secret_key_and_deleted_secret_are_all_reported() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    let pat = a.t.sentinel("pat");
    let doomed = a.t.sentinel("doomed");
    moto.create_secret("present", &json!({ "pat": pat }).to_string());
    moto.create_secret("doomed", &json!({ "pat": doomed }).to_string());
    moto.delete_secret("doomed");
    a.t = a.t.config_toml(
        r#"
[jira."https://a.example.com"]
pat = "aws-sm://absent#pat"
[jira."https://b.example.com"]
pat = "aws-sm://present#nope"
[jira."https://c.example.com"]
pat = "aws-sm://doomed#pat"
"#,
    );
    let (child, marker) = marker_child(&a.t);
    let started = Instant::now();
    let out = a.t.run_args([OsStrArg::from("--"), child.into()]);
    out.assert_code(125);
    assert!(!marker.exists(), "the child ran although references failed");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failures are not retried"
    );
    let line = |needle: &str| {
        out.stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line about {needle}\n{}", out.describe()))
            .to_owned()
    };
    assert!(line("aws-sm://absent#pat").contains("ResourceNotFoundException"));
    assert!(line("aws-sm://present#nope").contains("no key `nope`"));
    assert!(line("aws-sm://doomed#pat").contains("InvalidRequestException"));
    out.assert_stderr_contains("scheduled for deletion");
    a.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Credentials and identity
// ---------------------------------------------------------------------------------------------

/// `check` shows the identity (account and ARN from STS GetCallerIdentity) and never a value.
#[test]
fn aws_sm_check_shows_the_identity() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    let pat = a.t.sentinel("pat");
    moto.create_secret("prod/jira", &json!({ "pat": pat }).to_string());
    a.t =
        a.t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira#pat\"\n");
    let out = a.t.run_args(["check"]);
    out.assert_success();
    assert_check_identity(&out, &format!("arn=arn:aws:sts::{ACCOUNT}:user/moto"));
    let out = a.t.run_args(["check", "--format", "json"]);
    out.assert_success();
    let report: Value = serde_json::from_str(&out.stdout).expect("check --format json is JSON");
    let provider = report["providers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["kind"] == "aws-sm"))
        .expect("an aws-sm provider in the report");
    assert_eq!(provider["identity"]["account"], ACCOUNT);
    a.t.assert_clean();
}

/// `role_arn` (with `session_name` and `external_id`) is assumed through moto's STS once per run;
/// `check` shows the assumed role.
#[test]
fn aws_sm_assumes_a_role_through_sts() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut a = aws_test(&proxy.endpoint());
    let pat = a.t.sentinel("pat");
    let pat2 = a.t.sentinel("pat2");
    moto.create_secret("prod/jira", &json!({ "pat": pat }).to_string());
    moto.create_secret("prod/jira2", &pat2);
    a.t = a.t.config_toml(&format!(
        r#"
[providers.aws-sm]
kind = "aws-sm"
role_arn = "arn:aws:iam::{ACCOUNT}:role/cme-reader"
session_name = "cme-test"
external_id = "cme-exec-test"

[jira."https://jira.example.com"]
pat = "aws-sm://prod/jira#pat"
[jira."https://jira2.example.com"]
pat = "aws-sm://prod/jira2"
"#
    ));
    let out = a.t.run_args(["check"]);
    out.assert_success();
    assert_check_identity(&out, "assumed-role/cme-reader/cme-test");
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "the role is assumed once for the secrets and the identity: {:?}",
        proxy.operations()
    );

    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = a.t.child_env().config_json();
    assert_config_field(&config, "jira", "https://jira.example.com", "pat", &pat);
    assert_config_field(&config, "jira", "https://jira2.example.com", "pat", &pat2);
    assert_child_env_has_no_aws_credentials(&a);
    a.t.assert_clean();
}

/// Web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as on EKS with IRSA and in CI
/// with OIDC): `check` shows the role; the child gets no token file variable unless kept.
#[test]
fn aws_sm_uses_a_web_identity_token_file() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut t = Test::new();
    let jwt = t.sentinel("jwt");
    let pat = t.sentinel("pat");
    moto.create_secret("ci/jira", &pat);
    let token_file = t.secret_file("web-identity-token", &jwt);
    let role = format!("arn:aws:iam::{ACCOUNT}:role/gha-reader");
    let t = t
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_ARN", &role)
        .env("AWS_ROLE_SESSION_NAME", "ci-job")
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://ci/jira\"\n");
    let out = t.run_args(["check"]);
    out.assert_success();
    assert_check_identity(&out, "assumed-role/gha-reader/ci-job");
    assert_eq!(
        proxy.count("AssumeRoleWithWebIdentity"),
        1,
        "{:?}",
        proxy.operations()
    );

    let child = dump_env_child(&t);
    t.run_args([OsStrArg::from("--"), child.clone().into()])
        .assert_success();
    let env = t.child_env();
    assert!(
        env.var("AWS_WEB_IDENTITY_TOKEN_FILE").is_none(),
        "{:?}",
        env.names()
    );
    assert_eq!(env.var("AWS_ROLE_ARN"), Some(role.as_str()));
    assert_config_field(
        &env.config_json(),
        "jira",
        "https://jira.example.com",
        "pat",
        &pat,
    );

    t.run_args([
        OsStrArg::from("run"),
        "--keep-env".into(),
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        "--".into(),
        child.into(),
    ])
    .assert_success();
    let kept = t.child_env();
    assert_eq!(
        kept.var("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
        Some(token_file)
    );
    t.assert_clean();
}

/// moto enforcing IAM: a user without `secretsmanager:GetSecretValue` gets a clear 125 naming
/// AccessDeniedException; a user with only `GetSecretValue` (no `BatchGetSecretValue`) still
/// reads several secrets, one by one after the refused batch.
#[test]
fn aws_sm_access_denied_is_a_clear_125() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let pat2 = t.sentinel("pat2");
    moto.create_secret("locked/jira", &pat);
    moto.create_secret("locked/jira2", &pat2);
    let (no_read_id, no_read_key) = moto.create_user("no-read", &["secretsmanager:ListSecrets"]);
    let (reader_id, reader_key) = moto.create_user(
        "reader",
        &["secretsmanager:GetSecretValue", "sts:GetCallerIdentity"],
    );
    moto.enforce_iam();
    let t = t
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .config_toml(
            "[jira.\"https://a.example.com\"]\npat = \"aws-sm://locked/jira\"\n\
             [jira.\"https://b.example.com\"]\npat = \"aws-sm://locked/jira2\"\n",
        );

    let denied = t
        .env("AWS_ACCESS_KEY_ID", &no_read_id)
        .env("AWS_SECRET_ACCESS_KEY", &no_read_key);
    let (child, marker) = marker_child(&denied);
    let out = denied.run_args([OsStrArg::from("--"), child.into()]);
    out.assert_code(125);
    assert!(!marker.exists(), "the child ran although access was denied");
    for reference in ["aws-sm://locked/jira", "aws-sm://locked/jira2"] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(reference))
            .unwrap_or_else(|| panic!("no line about {reference}\n{}", out.describe()));
        assert!(line.contains("AccessDeniedException"), "{line}");
    }
    assert_no_leak_in("stderr", &out.stderr, &no_read_key);

    let before = proxy.operations().len();
    let reader = denied
        .env("AWS_ACCESS_KEY_ID", &reader_id)
        .env("AWS_SECRET_ACCESS_KEY", &reader_key);
    let child = dump_env_child(&reader);
    reader
        .run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    let config = reader.child_env().config_json();
    assert_config_field(&config, "jira", "https://a.example.com", "pat", &pat);
    assert_config_field(&config, "jira", "https://b.example.com", "pat", &pat2);
    let ops = proxy.operations()[before..].to_vec();
    assert_eq!(
        ops.iter()
            .filter(|o| o.ends_with("BatchGetSecretValue"))
            .count(),
        1,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter()
            .filter(|o| o.ends_with(".GetSecretValue"))
            .count(),
        2,
        "{ops:?}"
    );
    reader.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

/// The real cme, given username and API token from one Secrets Manager JSON secret (`from`),
/// sends them to the Confluence stand-in.
#[test]
fn aws_sm_end_to_end_cme_sends_the_credentials() {
    let venv = Venv::get();
    let moto = Moto::start();
    let site = ConfluenceStandIn::start();
    let mut a = aws_test(&moto.endpoint());
    let user = a.t.sentinel("user");
    let token = a.t.sentinel("token");
    moto.create_secret(
        "prod/confluence",
        &json!({ "username": user, "api_token": token }).to_string(),
    );
    a.t = a.t.config_toml(&format!(
        "[confluence.{url}]\nfrom = \"aws-sm://prod/confluence\"\n",
        url = q(site.base_url())
    ));
    let out = a.t.run_args([
        OsStrArg::from("--"),
        venv.cme().into(),
        "pages".into(),
        site.page_url(123).into(),
    ]);
    out.assert_success();
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    );
    let headers = site.authorization_headers();
    assert!(
        !headers.is_empty() && headers.iter().all(|h| *h == expected),
        "cme should send the credentials from moto on every request\n{}\n{}",
        redact(&site.summary()),
        out.describe()
    );
    a.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// Nothing listens at the endpoint: a few quick retries, then 125 naming the cause.
#[test]
fn aws_sm_endpoint_down_is_125_within_the_deadline() {
    let endpoint = format!("http://127.0.0.1:{}", moto::free_port());
    let mut a = aws_test(&endpoint);
    a.t =
        a.t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let (child, marker) = marker_child(&a.t);
    let started = Instant::now();
    let out = a.t.run_args([
        OsStrArg::from("--timeout"),
        "20".into(),
        "--".into(),
        child.into(),
    ]);
    let elapsed = started.elapsed();
    out.assert_code(125);
    assert!(
        !marker.exists(),
        "the child ran although the store was down"
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    out.assert_stderr_contains("aws-sm://prod/jira");
    assert!(
        out.stderr.to_lowercase().contains("connection refused")
            || out.stderr.contains("cannot reach"),
        "the cause should be named\n{}",
        out.describe()
    );
    a.t.assert_clean();
}

/// The endpoint accepts and never answers: the run ends at the resolution deadline with 125.
#[test]
fn aws_sm_hanging_endpoint_ends_at_the_deadline() {
    let moto_port = moto::free_port(); // never contacted
    let proxy = MotoProxy::start(moto_port, Fault::Hang);
    let mut a = aws_test(&proxy.endpoint());
    a.t =
        a.t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let (child, marker) = marker_child(&a.t);
    let started = Instant::now();
    let out = a.t.run_args([
        OsStrArg::from("--timeout"),
        "2".into(),
        "--".into(),
        child.into(),
    ]);
    let elapsed = started.elapsed();
    out.assert_code(125);
    assert!(!marker.exists(), "the child ran although the store hung");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "expected the 2 s deadline, took {elapsed:?}"
    );
    out.assert_stderr_contains("within 2");
    assert!(proxy.count("GetSecretValue") >= 1);
}

/// Two 503s, then moto: the SDK's retries get the secret within the deadline. A store that keeps
/// failing gets a bounded number of attempts, then 125.
#[test]
fn aws_sm_retries_5xx_then_succeeds_and_gives_up_after_a_few_attempts() {
    let moto = Moto::start();
    let flaky = MotoProxy::start(moto.port(), Fault::ServiceUnavailable(2));
    let mut a = aws_test(&flaky.endpoint());
    let pat = a.t.sentinel("pat");
    moto.create_secret("prod/jira", &pat);
    a.t =
        a.t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let child = dump_env_child(&a.t);
    let started = Instant::now();
    a.t.run_args([OsStrArg::from("--"), child.into()])
        .assert_success();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(flaky.answered_503(), 2);
    assert_eq!(flaky.count("GetSecretValue"), 3, "{:?}", flaky.operations());
    assert_config_field(
        &a.t.child_env().config_json(),
        "jira",
        "https://jira.example.com",
        "pat",
        &pat,
    );

    let down = MotoProxy::start(moto.port(), Fault::ServiceUnavailable(usize::MAX));
    let t = a.t.env("AWS_ENDPOINT_URL", down.endpoint());
    let (child, marker) = marker_child(&t);
    let out = t.run_args([OsStrArg::from("--"), child.into()]);
    out.assert_code(125);
    assert!(!marker.exists());
    let attempts = down.count("GetSecretValue");
    assert!(
        (2..=3).contains(&attempts),
        "a few attempts at most, got {attempts}"
    );
    out.assert_stderr_contains("503");
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Configuration and logging
// ---------------------------------------------------------------------------------------------

/// `aws-sm://arn:...` (which a URL parser reads as host `arn` and a port) and a malformed
/// `version_id` are configuration errors naming the file, instance and field; nothing is fetched.
#[test]
fn aws_sm_reference_errors_are_configuration_errors() {
    let proxy = MotoProxy::start(moto::free_port(), Fault::None);
    let mut a = aws_test(&proxy.endpoint());
    a.t = a.t.config_toml(&format!(
        r#"
[jira."https://a.example.com"]
pat = "aws-sm://arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/jira-AbCdEf"
[jira."https://b.example.com"]
pat = "aws-sm://prod/jira?version_id=short"
"#
    ));
    let (child, marker) = marker_child(&a.t);
    let out = a.t.run_args([OsStrArg::from("--"), child.into()]);
    out.assert_code(125);
    assert!(!marker.exists());
    out.assert_stderr_contains("aws-sm:///arn:");
    out.assert_stderr_contains("version_id");
    out.assert_stderr_contains("cme-exec.toml");
    assert!(proxy.operations().is_empty(), "nothing is fetched");
}

/// No region anywhere: a clear message instead of the SDK's `MissingSigningRegion`.
#[test]
fn aws_sm_without_a_region_says_how_to_set_one() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    a.t =
        a.t.env_remove("AWS_REGION")
            .config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let out = a.t.run_args(["--", "true"]);
    out.assert_code(125);
    out.assert_stderr_contains("no AWS region");
    out.assert_stderr_contains("AWS_REGION");
    assert_eq!(moto.api_requests(), 0);
}

/// With `RUST_LOG=trace` (the SDK's own logs included) no secret value, key or token reaches
/// stderr (the harness checks every run's output for every sentinel).
#[test]
fn aws_sm_trace_logging_shows_no_secret() {
    let moto = Moto::start();
    let mut a = aws_test(&moto.endpoint());
    let user = a.t.sentinel("user");
    let token = a.t.sentinel("token");
    let pat = a.t.sentinel("pat");
    moto.create_secret(
        "s1",
        &json!({ "username": user, "api_token": token }).to_string(),
    );
    moto.create_secret("s2", &pat);
    a.t = a.t.env("RUST_LOG", "trace").config_toml(
        "[confluence.\"https://wiki.example.com\"]\nfrom = \"aws-sm://s1\"\n\
         [jira.\"https://jira.example.com\"]\npat = \"aws-sm://s2\"\n",
    );
    let out = a.t.run_args(["check"]);
    out.assert_success();
    assert!(
        out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"),
        "logging is on"
    );
    let child = dump_env_child(&a.t);
    a.t.run_args([OsStrArg::from("-vvv"), "--".into(), child.clone().into()])
        .assert_success();

    // The SDK's own switch to log response bodies would print the values: refused, fail closed.
    let t = a.t.env("LOG_SENSITIVE_BODIES", "true");
    let out = t.run_args([OsStrArg::from("--"), child.into()]);
    out.assert_code(125);
    out.assert_stderr_contains("LOG_SENSITIVE_BODIES");
    t.assert_clean();
}

/// Arguments of mixed types for `run_args`.
struct OsStrArg(std::ffi::OsString);

impl From<&str> for OsStrArg {
    fn from(s: &str) -> Self {
        OsStrArg(s.into())
    }
}

impl From<String> for OsStrArg {
    fn from(s: String) -> Self {
        OsStrArg(s.into())
    }
}

impl From<PathBuf> for OsStrArg {
    fn from(p: PathBuf) -> Self {
        OsStrArg(p.into_os_string())
    }
}

impl From<&Path> for OsStrArg {
    fn from(p: &Path) -> Self {
        OsStrArg(p.as_os_str().to_owned())
    }
}

impl AsRef<std::ffi::OsStr> for OsStrArg {
    fn as_ref(&self) -> &std::ffi::OsStr {
        &self.0
    }
}
