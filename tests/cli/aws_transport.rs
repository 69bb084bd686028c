//! How the AWS backends use the network: TLS only for `https://` endpoints, the
//! SDK's retries of a throttled store (with a stand-in in front of moto that answers
//! `ThrottlingException` on demand, which moto cannot be told to do), and one connection pool
//! for a run's requests. Requests and connections are counted; nothing here is timed.

use crate::support::moto::{self, Fault, Moto, MotoProxy};
use crate::support::*;
use crate::*;

/// A test pointed at `endpoint` with the static test credentials.
fn aws_test(endpoint: &str) -> Test {
    let mut t = Test::new();
    let secret_key = t.sentinel("aws-secret-key");
    for (k, v) in Moto::aws_env(endpoint, &secret_key) {
        t = t.env(k, v);
    }
    t
}

/// `n` Jira instances, each with a `pat` from its own secret `load/sI` (with `suffix` after the
/// secret id, such as `?version_id=...`).
fn many_secrets(moto: &Moto, t: &mut Test, n: usize, suffix: &str) -> String {
    let mut toml = String::new();
    for i in 0..n {
        let pat = t.sentinel(&format!("pat-{i}"));
        moto.create_secret(&format!("load/s{i}"), &pat);
        toml.push_str(&format!(
            "[jira.\"https://j{i}.example.com\"]\npat = \"aws-sm://load/s{i}{suffix}\"\n"
        ));
    }
    toml
}

/// `SSL_CERT_FILE` names a file without a certificate. A run whose AWS endpoint is plain
/// `http://` (moto on loopback) needs no TLS, so it never reads it and succeeds; the same run
/// against an `https://` endpoint fails before connecting, naming the variable.
#[test]
fn aws_tls_roots_are_loaded_only_for_https_endpoints() {
    let moto = Moto::start();
    let proxy = MotoProxy::start(moto.port(), Fault::None);
    let mut t = aws_test(&proxy.endpoint());
    let pat = t.sentinel("pat");
    moto.create_secret("prod/jira", &pat);
    let garbage = t.write_file("not-a-bundle.pem", "this is no certificate\n");
    let t = t
        .env("SSL_CERT_FILE", &garbage)
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let (child, marker) = marker_child(&t);
    t.run_args(args!["--", child.clone()]).assert_success();
    assert!(marker.exists(), "the child did not run");
    assert_eq!(proxy.count("GetSecretValue"), 1, "{:?}", proxy.operations());
    std::fs::remove_file(&marker).expect("remove the marker");

    // The same run against https: nothing listens there; the roots fail first.
    let https = format!("https://127.0.0.1:{}", moto::free_port());
    let t = t.env("AWS_ENDPOINT_URL", &https);
    let out = t.run_args(args!["--", child]);
    out.assert_code(125);
    assert!(!marker.exists(), "the child ran without its secret");
    out.assert_stderr_contains("aws-sm://prod/jira");
    out.assert_stderr_contains("SSL_CERT_FILE names no readable PEM certificate");
    assert_eq!(proxy.count("GetSecretValue"), 1, "no request reached moto");
    t.assert_clean();
}

/// Two `ThrottlingException` answers (HTTP 400, AWS JSON 1.1), then moto: the SDK retries with
/// backoff and the run gets its secrets: for one secret (`GetSecretValue`) and for a batch
/// (`BatchGetSecretValue`, retried as a whole, never split into single reads).
#[test]
fn aws_sm_throttling_is_retried_then_succeeds() {
    let moto = Moto::start();
    let throttle = MotoProxy::start(moto.port(), Fault::Throttle(2));
    let mut t = aws_test(&throttle.endpoint());
    let pat = t.sentinel("pat");
    moto.create_secret("prod/jira", &pat);
    let t = t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"aws-sm://prod/jira\"\n");
    let (child, marker) = marker_child(&t);
    t.run_args(args!["--", child]).assert_success();
    assert!(marker.exists());
    assert_eq!(throttle.throttled(), 2);
    assert_eq!(
        throttle.count("GetSecretValue"),
        3,
        "two throttled attempts and the answer: {:?}",
        throttle.operations()
    );

    let throttle = MotoProxy::start(moto.port(), Fault::Throttle(2));
    let mut t = aws_test(&throttle.endpoint());
    let toml = many_secrets(&moto, &mut t, 3, "");
    let t = t.config_toml(&toml);
    let (child, marker) = marker_child(&t);
    t.run_args(args!["--", child]).assert_success();
    assert!(marker.exists());
    assert_eq!(
        throttle.count("BatchGetSecretValue"),
        3,
        "{:?}",
        throttle.operations()
    );
    assert_eq!(
        throttle.count("GetSecretValue"),
        0,
        "{:?}",
        throttle.operations()
    );
    t.assert_clean();
}

/// A throttle that never stops: a bounded number of attempts, then 125 with a message that
/// names the throttling, the attempts and what to do; a batch's secrets all get that reason
/// without one more request each.
#[test]
fn aws_sm_throttling_that_never_stops_fails_naming_it() {
    let moto = Moto::start();
    let throttle = MotoProxy::start(moto.port(), Fault::Throttle(usize::MAX));
    let mut t = aws_test(&throttle.endpoint());
    let toml = many_secrets(&moto, &mut t, 3, "");
    let t = t.config_toml(&toml);
    let (child, marker) = marker_child(&t);
    let out = t.run_args(args!["--timeout", "20", "--", child]);
    out.assert_code(125);
    assert!(!marker.exists());
    out.assert_stderr_contains("ThrottlingException (HTTP 400): Rate exceeded");
    out.assert_stderr_contains("AWS is throttling the requests, and still was after 3 attempts");
    out.assert_stderr_contains("run fewer cme-exec at a time");
    for i in 0..3 {
        out.assert_stderr_contains(&format!("aws-sm://load/s{i}"));
    }
    assert_eq!(
        throttle.count("BatchGetSecretValue"),
        3,
        "MAX_ATTEMPTS attempts of the one batch: {:?}",
        throttle.operations()
    );
    assert_eq!(
        throttle.count("GetSecretValue"),
        0,
        "{:?}",
        throttle.operations()
    );
    t.assert_clean();
}

/// 50 secrets at their current version: three `BatchGetSecretValue` calls (20 + 20 + 10 ids)
/// over at most three connections; 50 references by `version_id` (one `GetSecretValue` each,
/// at most 16 at a time): about as many connections as requests in flight (16 measured), not
/// one per request, because the run's one client keeps them alive and reuses them. The
/// stand-in keeps connections alive as AWS does (moto closes them after each answer).
#[test]
fn aws_sm_fifty_secrets_use_three_batches_and_reuse_connections() {
    let moto = Moto::start();
    let proxy = MotoProxy::keep_alive(moto.port(), Fault::None);
    let mut t = aws_test(&proxy.endpoint());
    let toml = many_secrets(&moto, &mut t, 50, "");
    let t = t.config_toml(&toml);
    let (child, marker) = marker_child(&t);
    t.run_args(args!["--", child]).assert_success();
    assert!(marker.exists());
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        3,
        "{:?}",
        proxy.operations()
    );
    assert_eq!(proxy.operations().len(), 3, "{:?}", proxy.operations());
    assert!(
        proxy.connections() <= 3,
        "3 requests over {} connections",
        proxy.connections()
    );

    let proxy = MotoProxy::keep_alive(moto.port(), Fault::None);
    let t = aws_test(&proxy.endpoint());
    let mut toml = String::new();
    for i in 0..50 {
        let version = moto.current_version_id(&format!("load/s{i}"));
        toml.push_str(&format!(
            "[jira.\"https://j{i}.example.com\"]\npat = \"aws-sm://load/s{i}?version_id={version}\"\n"
        ));
    }
    let t = t.config_toml(&toml);
    let (child, marker) = marker_child(&t);
    t.run_args(args!["--", child]).assert_success();
    assert!(marker.exists());
    assert_eq!(
        proxy.count("GetSecretValue"),
        50,
        "{:?}",
        proxy.operations()
    );
    let connections = proxy.connections();
    eprintln!("50 GetSecretValue requests over {connections} connections");
    // 16 requests in flight at most (the resolver's bound): 16 connections measured, a little
    // more allowed for a connection hyper opens while another is being returned to the pool.
    assert!(
        connections <= 24,
        "50 requests, at most 16 at a time, over {connections} connections: not reused"
    );
    t.assert_clean();
}
