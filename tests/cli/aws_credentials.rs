//! AWS SSO and `credential_process` in the default build: a real helper script
//! as a profile's `credential_process`, and an SSO profile whose token sits in the SSO cache as
//! the AWS CLI writes it, with a stand-in for the SSO portal's `GetRoleCredentials` (no real
//! portal can be reached from a test). Both against moto's Secrets Manager and Parameter Store.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::faults::FaultServer;
use crate::support::moto::{self, Moto, ACCOUNT};
use crate::support::*;

/// A test whose AWS credentials come only from the profile in `aws_config` (no keys in the
/// environment), with every AWS service at `endpoint`.
fn profile_test(t: Test, endpoint: &str, profile: &str) -> Test {
    t.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PROFILE", profile)
}

/// One secret in Secrets Manager and one parameter in Parameter Store, read in one run.
fn two_stores_config(t: Test) -> Test {
    t.config_toml(
        "[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira#pat\"\n\
         [jira.\"https://jira2.example.com\"]\npat = \"aws-ssm:///prod/jira2\"\n",
    )
}

fn put_parameter(moto: &Moto, name: &str, value: &str) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/20240101/{}/ssm/aws4_request, SignedHeaders=host;x-amz-date, \
         Signature={}",
        moto::ACCESS_KEY_ID,
        moto::REGION,
        "0".repeat(64)
    );
    let body = json!({ "Name": name, "Value": value, "Type": "SecureString" }).to_string();
    let (status, answer) = moto
        .http(
            "POST",
            "/",
            &[
                ("X-Amz-Target", "AmazonSSM.PutParameter"),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Date", "20240101T000000Z"),
                ("Authorization", &auth),
            ],
            body.as_bytes(),
        )
        .expect("moto PutParameter");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

#[track_caller]
fn assert_pats(t: &Test, pat: &str, pat2: &str) {
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args([OsStr::new("--"), child.as_os_str()])
        .assert_success();
    let config = t.child_env().config_json();
    for (url, expected) in [
        ("https://jira.example.com", pat),
        ("https://jira2.example.com", pat2),
    ] {
        let got = config["auth"]["jira"]
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.trim_end_matches('/') == url))
            .and_then(|(_, v)| v["pat"].as_str())
            .unwrap_or_else(|| panic!("auth.jira[{url}] has no pat"));
        assert!(
            got == expected,
            "auth.jira[{url}].pat is not the expected value"
        );
    }
}

/// A profile's `credential_process` helper (a real script) gives the credentials: run once per
/// cme-exec run although Secrets Manager, Parameter Store and STS are all asked; `check` shows
/// the identity; the helper's stderr never appears.
#[test]
fn aws_credential_process_helper_signs_every_request() {
    let moto = Moto::start();
    let mut t = Test::new();
    let secret_key = t.sentinel("helper-secret-key");
    let pat = t.sentinel("pat");
    let pat2 = t.sentinel("pat2");
    moto.create_secret("prod/jira", &json!({ "pat": pat }).to_string());
    put_parameter(&moto, "/prod/jira2", &pat2);
    let key_file = t.secret_file("helper-key", &secret_key);
    let runs = t.out_dir().join("helper-runs");
    let helper = t.script(
        "aws-helper",
        &format!(
            "#!/bin/sh\necho run >> {runs}\necho 'helper says S3NT1NEL-ish things' >&2\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"AKIAHELPER0000000001\", \
             \"SecretAccessKey\": \"%s\"}}\\n' \"$(cat {key})\"\n",
            runs = scripts::sh_quote(&runs),
            key = scripts::sh_quote(&key_file),
        ),
    );
    let config = t.write_file(
        "config/aws-config",
        format!(
            "[profile helper]\nregion = {}\ncredential_process = {}\n",
            moto::REGION,
            helper.display()
        ),
    );
    let t = two_stores_config(profile_test(t, &moto.endpoint(), "helper"))
        .env("AWS_CONFIG_FILE", &config);

    let out = t.run_args(["check"]);
    out.assert_success();
    let identities: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("provider ") && l.contains(&format!("account={ACCOUNT}")))
        .collect();
    assert_eq!(identities.len(), 2, "aws-sm and aws-ssm\n{}", out.stdout);
    assert!(!out.stderr.contains("helper says"), "{}", out.describe());
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(count(), 1, "the helper runs once per run");
    assert_pats(&t, &pat, &pat2);
    assert_eq!(count(), 2);
    t.assert_clean();
}

/// An SSO profile (`sso_session`) with a token in `~/.aws/sso/cache` as `aws sso login` leaves
/// it: the SDK trades it for role credentials at the SSO portal (a stand-in that checks the
/// bearer token, the role and the account), once, and signs both stores' requests with them.
#[test]
fn aws_sso_profile_uses_the_cached_token() {
    let moto = Moto::start();
    let mut t = Test::new();
    let token = t.sentinel("sso-access-token");
    let role_secret = t.sentinel("sso-role-secret-key");
    let role_session = t.sentinel("sso-role-session-token");
    let pat = t.sentinel("pat");
    let pat2 = t.sentinel("pat2");
    moto.create_secret("prod/jira", &json!({ "pat": pat }).to_string());
    put_parameter(&moto, "/prod/jira2", &pat2);

    let asked: Arc<Mutex<Vec<(String, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let portal = {
        let asked = Arc::clone(&asked);
        let token = token.clone();
        let body = json!({ "roleCredentials": {
            "accessKeyId": "ASIASSOSTANDIN000001",
            "secretAccessKey": role_secret,
            "sessionToken": role_session,
            "expiration": 4_102_444_800_000u64,
        }})
        .to_string();
        FaultServer::start(move |seen, _, conn| {
            let bearer = seen.header("x-amz-sso_bearer_token") == Some(token.as_str());
            asked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((seen.target.clone(), bearer));
            let (status, body) = if bearer {
                (200, body.clone())
            } else {
                (401, "{\"message\":\"no\"}".to_owned())
            };
            let _ = conn.head(
                status,
                &[
                    ("Content-Type", "application/json".to_owned()),
                    ("Content-Length", body.len().to_string()),
                ],
            );
            let _ = conn.write(body.as_bytes());
        })
    };

    let aws_dir = t.path().join(".aws");
    std::fs::create_dir_all(aws_dir.join("sso/cache")).expect("create the SSO cache");
    std::fs::write(
        aws_dir.join("config"),
        format!(
            "[profile corp]\nsso_session = corp\nsso_account_id = {ACCOUNT}\n\
             sso_role_name = Reader\nregion = {}\n\n[sso-session corp]\n\
             sso_start_url = https://corp.awsapps.com/start\nsso_region = {}\n\
             sso_registration_scopes = sso:account:access\n",
            moto::REGION,
            moto::REGION
        ),
    )
    .expect("write ~/.aws/config");
    // The AWS CLI names the cache file after the SHA-1 of the session name.
    let cache = aws_dir
        .join("sso/cache")
        .join(format!("{}.json", sha1_hex(b"corp")));
    std::fs::write(
        &cache,
        json!({
            "startUrl": "https://corp.awsapps.com/start",
            "region": moto::REGION,
            "accessToken": token,
            "expiresAt": "2099-01-01T00:00:00Z",
        })
        .to_string(),
    )
    .expect("write the SSO token cache");
    let t = two_stores_config(profile_test(t, &moto.endpoint(), "corp"))
        .env("AWS_ENDPOINT_URL_SSO", portal.url())
        .allow_secret_in(&cache);

    let out = t.run_args(["check"]);
    out.assert_success();
    let seen = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 1, "one GetRoleCredentials per run: {seen:?}");
    let (target, bearer) = &seen[0];
    assert!(*bearer, "the cached token is the bearer token");
    assert!(
        target.starts_with("/federation/credentials")
            && target.contains("role_name=Reader")
            && target.contains(&format!("account_id={ACCOUNT}")),
        "{target}"
    );
    assert!(
        out.stdout.contains(&format!("account={ACCOUNT}")),
        "{}",
        out.stdout
    );
    assert_pats(&t, &pat, &pat2);
    t.assert_clean();
}

/// SHA-1 (FIPS 180-4), only to name the SSO cache file as the AWS CLI does.
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha1_matches_the_standard_vector() {
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
}

// ---------------------------------------------------------------------------------------------
// AWS errors: one message per cause, in words, never a provider's own text
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
pub(crate) fn aws_words_test(t: Test, endpoint: &str) -> Test {
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
