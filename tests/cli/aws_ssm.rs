//! The `aws-ssm` provider against moto's server: String and SecureString,
//! versions and labels, a path as one document, batches of 10 names per `GetParameters`, the
//! identity in `check`, one AWS configuration shared with `aws-sm`, and the errors. Requests are
//! counted by the proxy in front of moto ([`crate::support::moto::MotoProxy`]).

use std::ffi::OsStr;

use serde_json::{json, Value};

use crate::support::moto::{self, Fault, Moto, MotoProxy, ACCESS_KEY_ID, ACCOUNT};
use crate::support::*;

/// One Parameter Store call (JSON 1.1 protocol); panics on an error answer.
#[track_caller]
fn ssm(moto: &Moto, operation: &str, input: Value) -> Value {
    let target = format!("AmazonSSM.{operation}");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20240101/{}/ssm/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}",
        moto::REGION,
        "0".repeat(64)
    );
    let body = input.to_string();
    let (status, answer) = moto
        .http(
            "POST",
            "/",
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Date", "20240101T000000Z"),
                ("Authorization", &auth),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto {operation}: {e}"));
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status, 200, "moto {operation} answered {status}: {text}");
    serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("moto {operation}: {e}: {text}"))
}

#[track_caller]
fn put(moto: &Moto, name: &str, value: &str, secure: bool) {
    ssm(
        moto,
        "PutParameter",
        json!({
            "Name": name,
            "Value": value,
            "Type": if secure { "SecureString" } else { "String" },
            "Overwrite": true,
        }),
    );
}

/// A test pointed at `endpoint` with static credentials whose secret key is a sentinel.
fn aws_ssm_test(endpoint: &str) -> (Test, String) {
    let mut t = Test::new();
    let key = t.sentinel("aws-secret-key");
    for (k, v) in Moto::aws_env(endpoint, &key) {
        t = t.env(k, v);
    }
    (t, key)
}

#[track_caller]
fn field(config: &Value, product: &str, url: &str, name: &str) -> String {
    config["auth"][product]
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.trim_end_matches('/') == url)
                .map(|(_, v)| v)
        })
        .and_then(|v| v[name].as_str())
        .unwrap_or_else(|| panic!("auth.{product}[{url}] has no {name}"))
        .to_owned()
}

#[track_caller]
fn assert_same(got: &str, expected: &str, what: &str) {
    assert!(
        got == expected,
        "{what} is not the expected {} ({} bytes)",
        secrets::label_of(expected),
        got.len()
    );
}

/// Names (String, SecureString, a flat name holding JSON), a version and a label, a path as one
/// document, thirteen names without a version in two `GetParameters` calls (the two with a
/// version or label in one `GetParameter` each); `check` shows the identity; the child
/// gets the values and none of the AWS credentials.
#[test]
fn aws_ssm_reads_names_versions_labels_and_paths_in_batches() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let (mut t, key) = aws_ssm_test(&proxy.endpoint());
    let user = t.sentinel("ssm-user");
    let token = t.sentinel("ssm-token");
    let pat1 = t.sentinel("ssm-pat-v1");
    let pat2 = t.sentinel("ssm-pat-v2");
    let flat = t.sentinel("ssm-flat");
    put(&moto, "/cme/wiki/username", &user, false);
    put(&moto, "/cme/wiki/api_token", &token, true);
    put(&moto, "/cme/jira/pat", &pat1, true);
    put(&moto, "/cme/jira/pat", &pat2, true);
    ssm(
        &moto,
        "LabelParameterVersion",
        json!({ "Name": "/cme/jira/pat", "ParameterVersion": 1, "Labels": ["live"] }),
    );
    put(
        &moto,
        "jira-flat",
        &json!({ "pat": flat }).to_string(),
        false,
    );
    let mut many = Vec::new();
    let mut config = String::from(
        "[confluence.\"https://wiki.example.com\"]\nfrom = \"aws-ssm:///cme/wiki/\"\n\
         [jira.\"https://a.example.com\"]\npat = \"aws-ssm:///cme/jira/pat:1\"\n\
         [jira.\"https://b.example.com\"]\npat = \"aws-ssm:///cme/jira/pat:live\"\n\
         [jira.\"https://c.example.com\"]\npat = \"aws-ssm:/cme/jira/pat\"\n\
         [jira.\"https://d.example.com\"]\npat = \"aws-ssm://jira-flat#pat\"\n",
    );
    for i in 0..11 {
        let v = t.sentinel(&format!("ssm-many-{i}"));
        put(&moto, &format!("/cme/many/p{i}"), &v, i % 2 == 0);
        config.push_str(&format!(
            "[jira.\"https://m{i}.example.com\"]\npat = \"aws-ssm:///cme/many/p{i}\"\n"
        ));
        many.push(v);
    }
    let t = t.config_toml(&config);

    let before = proxy.operations().len();
    let out = t.run_args(["check"]);
    out.assert_success();
    let ops: Vec<String> = proxy.operations()[before..].to_vec();
    let count = |op: &str| {
        ops.iter()
            .filter(|o| *o == op || o.ends_with(&format!(".{op}")))
            .count()
    };
    assert_eq!(count("GetParameters"), 2, "13 names, 10 per call: {ops:?}");
    assert_eq!(count("GetParameter"), 2, "a version and a label: {ops:?}");
    assert_eq!(count("GetParametersByPath"), 1, "{ops:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("provider ") && l.contains("(aws-ssm)"))
        .unwrap_or_else(|| panic!("check printed no aws-ssm identity\n{}", out.describe()));
    assert!(
        line.contains(&format!("account={ACCOUNT}")) && line.contains("arn="),
        "{line}"
    );

    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args([OsStr::new("--"), child.as_os_str()])
        .assert_success();
    let env = t.child_env();
    let config = env.config_json();
    let wiki = "https://wiki.example.com";
    assert_same(
        &field(&config, "confluence", wiki, "username"),
        &user,
        "username",
    );
    assert_same(
        &field(&config, "confluence", wiki, "api_token"),
        &token,
        "api_token",
    );
    let jira = |host: &str| {
        field(
            &config,
            "jira",
            &format!("https://{host}.example.com"),
            "pat",
        )
    };
    assert_same(&jira("a"), &pat1, "version 1");
    assert_same(&jira("b"), &pat1, "the label on version 1");
    assert_same(&jira("c"), &pat2, "the current version");
    assert_same(&jira("d"), &flat, "#pat of a JSON parameter");
    for (i, v) in many.iter().enumerate() {
        assert_same(&jira(&format!("m{i}")), v, "a batched name");
    }
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(env.var(name).is_none(), "the child inherited {name}");
    }
    assert_no_leak_in("the child's environment", &env.raw_env, &key);
    t.assert_clean();
}

/// An `aws-sm` and an `aws-ssm` provider with the same settings share one AWS configuration:
/// the role is assumed once for both (and for `check`'s identities).
#[test]
fn aws_sm_and_aws_ssm_share_one_aws_configuration() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let (mut t, _) = aws_ssm_test(&proxy.endpoint());
    let pat = t.sentinel("sm-pat");
    let pat2 = t.sentinel("ssm-pat");
    moto.create_secret("prod/jira", &pat);
    put(&moto, "/prod/jira2", &pat2, true);
    let role = format!("role_arn = \"arn:aws:iam::{ACCOUNT}:role/cme-reader\"\n");
    let t = t.config_toml(&format!(
        "[providers.sm]\nkind = \"aws-sm\"\n{role}\n[providers.ssm]\nkind = \"aws-ssm\"\n{role}\n\
         [jira.\"https://jira.example.com\"]\npat = \"sm://prod/jira\"\n\
         [jira.\"https://jira2.example.com\"]\npat = \"ssm:///prod/jira2\"\n"
    ));
    let out = t.run_args(["check"]);
    out.assert_success();
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "one role session for both providers: {:?}",
        proxy.operations()
    );
    let identities: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("provider ") && l.contains("assumed-role/cme-reader"))
        .collect();
    assert_eq!(identities.len(), 2, "{}", out.stdout);
    t.assert_clean();
}

/// A missing name, a missing path, a name without its leading `/` (a configuration error), and
/// an endpoint_url that is not the environment's (the ambient-credentials rule of aws-sm).
#[test]
fn aws_ssm_failures_name_the_parameter() {
    let moto = Moto::start();
    let (t, _) = aws_ssm_test(&moto.endpoint());
    let t = t.config_toml(
        "[jira.\"https://a.example.com\"]\npat = \"aws-ssm:///cme/nope\"\n\
         [jira.\"https://b.example.com\"]\npat = \"aws-ssm:///cme/empty/#pat\"\n",
    );
    let out = t.run_args(["check"]);
    out.assert_code(1);
    let line = |r: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(r))
            .unwrap_or_else(|| panic!("no line for {r}\n{}", out.describe()))
            .to_owned()
    };
    let l = line("aws-ssm:///cme/nope");
    assert!(
        l.contains("parameter /cme/nope") && l.contains("ParameterNotFound"),
        "{l}"
    );
    let l = line("aws-ssm:///cme/empty/#pat");
    assert!(l.contains("no parameter under path /cme/empty/"), "{l}");

    let t = t.config_toml("[jira.\"https://a.example.com\"]\npat = \"aws-ssm://cme/nope\"\n");
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("write aws-ssm:///cme/nope"),
        "{}",
        out.describe()
    );

    let t = t.config_toml(&format!(
        "[providers.ssm]\nkind = \"aws-ssm\"\nendpoint_url = \"http://127.0.0.1:{}\"\n\n\
         [jira.\"https://a.example.com\"]\npat = \"ssm:///cme/x\"\n",
        moto.port() + 1
    ));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("is not the environment's endpoint")
            && out.stdout.contains("use_ambient_credentials"),
        "{}",
        out.describe()
    );
    t.assert_clean();
}
