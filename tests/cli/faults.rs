//! Store faults the Vault tests (`vault.rs`) do not cover, each through the real binary and the
//! `vault` provider pointed at a fault-injecting stand-in (in front of a real OpenBao where a
//! fault ends in success): a body dripped one byte per second, a reset in the middle of the
//! body, malformed JSON with 200, an HTML error page, 429 with `Retry-After`, 500 three times, a
//! token that stops working after the first of several reads, a 50 MiB body (memory stays
//! bounded); and the load promise: 500 references across 50 documents in OpenBao, each document
//! read once, never more than `CONCURRENCY` reads in flight.
//!
//! Every failing run uses `--timeout 5` and must end with exit 125 within the deadline (plus a
//! margin for starting the process), without starting the child, with a message that names the
//! reference and the reason. Every secret, token and body marker is a sentinel, so the harness
//! checks stdout and stderr for them (raw and encoded), and every test ends with `assert_clean`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::faults::{peak_rss_wrapper, FaultServer};
use crate::support::http::Silent;
use crate::support::openbao::{Action, Audited, OpenBao, Seen, StandIn};
use crate::support::scripts;
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The `--timeout` of every run here.
const DEADLINE: Duration = Duration::from_secs(5);
/// What a run may take beyond [`DEADLINE`]: starting and ending the process, on a busy machine.
const MARGIN: Duration = Duration::from_secs(2);
/// The vault provider's documented default: `max_retries = 2`, so three attempts.
const ATTEMPTS: usize = 3;
/// `src/resolve/mod.rs`: how many documents one provider fetches at the same time.
const CONCURRENCY: usize = 16;

/// The reference `vault://secret/<doc>#pat`.
fn reference(doc: &str) -> String {
    format!("vault://secret/{doc}#pat")
}

/// A test whose config has one Jira instance per document of `docs`, its `pat` at
/// [`reference`], from the provider `vault` at `address` (token auth, KV v2 declared), run with
/// `--timeout 5`; the child only creates a marker. Returns (test, marker, child).
fn fault_test(t: Test, address: &str, token: &str, docs: &[&str]) -> (Test, PathBuf, PathBuf) {
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let mut config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"token\" }}\n",
        q(address)
    );
    for (i, doc) in docs.iter().enumerate() {
        config.push_str(&format!(
            "\n[jira.\"https://jira{i}.example.com\"]\npat = {}\n",
            q(reference(doc))
        ));
    }
    let t = t
        .env("VAULT_TOKEN", token)
        .global_arg("--timeout")
        .global_arg(DEADLINE.as_secs().to_string())
        .config_toml(&config);
    (t, marker, child)
}

/// Runs `-- child` and returns the output and how long the run took.
fn run_timed(t: &Test, child: &Path) -> (Output, Duration) {
    let start = Instant::now();
    let out = t.run_args([OsString::from("--"), child.as_os_str().to_owned()]);
    (out, start.elapsed())
}

/// The common promise of a failing run: exit 125, the child never started, the run ended
/// within the deadline, and the error line of `reference` gives each of `reasons`.
#[track_caller]
fn assert_refused(
    out: &Output,
    elapsed: Duration,
    marker: &Path,
    reference: &str,
    reasons: &[&str],
) {
    out.assert_code(125);
    out.assert_stderr_contains("nothing was started");
    assert!(
        !marker.exists(),
        "the child ran although resolution failed\n{}",
        out.describe()
    );
    assert!(
        elapsed < DEADLINE + MARGIN,
        "the run took {elapsed:?} with --timeout {}\n{}",
        DEADLINE.as_secs(),
        out.describe()
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("({reference})")))
        .unwrap_or_else(|| panic!("no error line names {reference}\n{}", out.describe()));
    for reason in reasons {
        assert!(
            line.contains(reason),
            "the error line for {reference} should say {reason:?}\n{}",
            out.describe()
        );
    }
}

/// A server with a policy that reads `secret/*` and a token (a sentinel of `t`) holding it.
fn server_with_token(t: &mut Test) -> (OpenBao, String) {
    let bao = OpenBao::start();
    bao.policy(
        "reader",
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    );
    let token = t.sentinel("vault-token");
    bao.token_with_id(&token, &["reader"]);
    (bao, token)
}

/// How many audited requests had this operation and path.
fn count(requests: &[Audited], operation: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.operation == operation && r.path == path)
        .count()
}

/// A KV v2 read answer holding `pat`, as OpenBao would send it.
fn kv2_body(pat: &str) -> String {
    json!({
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": {
            "data": { "pat": pat },
            "metadata": { "version": 1, "destroyed": false, "deletion_time": "" }
        },
        "wrap_info": null,
        "warnings": null,
        "auth": null
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Faults that end in an error
// ---------------------------------------------------------------------------------------------

/// The answer's headers arrive at once, then its body one byte per second: the overall deadline
/// ends the read (no retry fits after it), with a timeout named as the reason.
#[test]
fn faults_dripping_one_byte_per_second_hits_the_deadline() {
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    let pat = t.sentinel("pat");
    let body = kv2_body(&pat);
    let drip = FaultServer::start(move |_, _, conn| {
        let head = conn.head(
            200,
            &[
                ("Content-Type", "application/json".to_owned()),
                ("Content-Length", body.len().to_string()),
            ],
        );
        if head.is_ok() {
            conn.drip(body.as_bytes(), Duration::from_secs(1));
        }
    });
    let (t, marker, child) = fault_test(t, &drip.url(), &token, &["app"]);
    let (out, elapsed) = run_timed(&t, &child);
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference("app"),
        &["reading secret/app (KV v2)", &drip.url(), "timed out"],
    );
    assert!(
        elapsed >= DEADLINE - Duration::from_secs(1),
        "the run ended after {elapsed:?}, before the deadline could have ended it\n{}",
        out.describe()
    );
    assert_eq!(
        drip.requests().len(),
        1,
        "no retry fits in the deadline:\n{}",
        drip.summary()
    );
    t.assert_clean();
}

/// Every answer sends its headers and half its body (a whole secret among it), then resets the
/// connection: a connection error, retried the documented number of times, then reported.
#[test]
fn faults_connection_reset_mid_body() {
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    let pat = t.sentinel("pat");
    let body = kv2_body(&pat);
    let reset = FaultServer::start(move |_, _, conn| {
        let half = body.find(&pat).expect("the body holds the secret") + pat.len() + 4;
        let sent = conn
            .head(
                200,
                &[
                    ("Content-Type", "application/json".to_owned()),
                    ("Content-Length", body.len().to_string()),
                ],
            )
            .and_then(|()| conn.write(&body.as_bytes()[..half]));
        if sent.is_ok() {
            // Let the client take in what was sent, so the reset hits it inside the body.
            std::thread::sleep(Duration::from_millis(50));
        }
        conn.reset_on_close();
    });
    let (t, marker, child) = fault_test(t, &reset.url(), &token, &["app"]);
    let (out, elapsed) = run_timed(&t, &child);
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference("app"),
        &[
            "reading secret/app (KV v2)",
            &format!(
                "no answer from Vault at {} ({ATTEMPTS} attempts)",
                reset.url()
            ),
            "Connection reset by peer",
        ],
    );
    assert_eq!(
        reset.requests().len(),
        ATTEMPTS,
        "a reset is a connection error: retried, {ATTEMPTS} attempts in all:\n{}",
        reset.summary()
    );
    t.assert_clean();
}

/// 200 with a body that is not JSON (cut off after the secret): not retried, an error that
/// says so and shows none of the body.
#[test]
fn faults_malformed_json_with_200() {
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    let pat = t.sentinel("pat");
    let body = kv2_body(&pat);
    let cut =
        body[..body.find(&pat).expect("the body holds the secret") + pat.len() + 1].to_owned();
    let bad = StandIn::start(move |_, _| Action::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: cut.clone().into_bytes(),
    });
    let (t, marker, child) = fault_test(t, &bad.url(), &token, &["app"]);
    let (out, elapsed) = run_timed(&t, &child);
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference("app"),
        &["reading secret/app (KV v2)", "the answer is not JSON"],
    );
    assert_eq!(
        bad.requests().len(),
        1,
        "a 200 answer is not retried:\n{}",
        bad.summary()
    );
    t.assert_clean();
}

/// A proxy's HTML error page (502, text/html): retried as a 5xx, then an error with the status
/// and the number of attempts, and none of the page.
#[test]
fn faults_html_error_page_is_retried_then_reported_without_the_html() {
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    // A sentinel inside the page: the harness fails the test if any of it is printed.
    let page_text = t.sentinel("html-page");
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 \
         Bad Gateway</h1></center><hr><center>{page_text}</center></body></html>\n"
    );
    let proxy = StandIn::start(move |_, _| Action::Respond {
        status: 502,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: page.clone().into_bytes(),
    });
    let (t, marker, child) = fault_test(t, &proxy.url(), &token, &["app"]);
    let (out, elapsed) = run_timed(&t, &child);
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference("app"),
        &[
            "reading secret/app (KV v2)",
            &format!(
                "Vault at {} answered 502 ({ATTEMPTS} attempts)",
                proxy.url()
            ),
        ],
    );
    for html in ["<html", "<h1", "</", "DOCTYPE"] {
        assert!(
            !out.stderr.contains(html) && !out.stdout.contains(html),
            "the HTML page was printed ({html:?})\n{}",
            out.describe()
        );
    }
    assert_eq!(
        proxy.requests().len(),
        ATTEMPTS,
        "502 is retried, {ATTEMPTS} attempts in all:\n{}",
        proxy.summary()
    );
    t.assert_clean();
}

/// 500 on the first three attempts, then the real answer: cme-exec gives up after the
/// documented three attempts (`max_retries = 2`) and never sends the fourth, which would have
/// succeeded; with `max_retries = 3` the fourth is sent and the run succeeds.
#[test]
fn faults_500_three_times_gives_up_after_the_documented_attempts() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let pat = t.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let upstream = bao.socket_addr();
    let three_500s = move |_: &Seen, index: usize| {
        if index < 3 {
            Action::json(500, json!({ "errors": ["stand-in: internal error"] }))
        } else {
            Action::forward(upstream)
        }
    };
    let proxy = StandIn::start(three_500s);
    let (t, marker, child) = fault_test(t, &proxy.url(), &token, &["app"]);
    let (out, elapsed) = run_timed(&t, &child);
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference("app"),
        &[
            "reading secret/app (KV v2)",
            &format!(
                "Vault at {} answered 500 (stand-in: internal error) ({ATTEMPTS} attempts)",
                proxy.url()
            ),
        ],
    );
    assert_eq!(
        proxy.requests().len(),
        ATTEMPTS,
        "{ATTEMPTS} attempts, not one more:\n{}",
        proxy.summary()
    );
    t.assert_clean();

    // One more retry allowed (same test, so the same sentinels are checked): the fourth
    // attempt reaches OpenBao and the run succeeds.
    let retry = StandIn::start(three_500s);
    let config = std::fs::read_to_string(t.config_path())
        .expect("read the config")
        .replace(&proxy.url(), &retry.url())
        .replace("kv_version = 2", "kv_version = 2\nmax_retries = 3");
    let t = t.config_toml(&config);
    let mark = bao.audit_mark();
    let (out, elapsed) = run_timed(&t, &child);
    out.assert_success();
    assert!(
        marker.exists(),
        "the child should have run\n{}",
        out.describe()
    );
    assert!(elapsed < DEADLINE + MARGIN, "the run took {elapsed:?}");
    assert_eq!(retry.requests().len(), 4, "{}", retry.summary());
    let requests = bao.requests_since(mark);
    assert_eq!(
        count(&requests, "read", "secret/data/app"),
        1,
        "{}",
        audit_listing(&requests)
    );
    t.assert_clean();
}

/// The token stops working after the first read (the stand-in forwards the first read to
/// OpenBao and answers every later one 403 `permission denied`, as Vault does for an expired
/// token): every failing reference is named with Vault's reason, the one that was read is not
/// among the failures, 403 is not retried, and nothing starts.
#[test]
fn faults_token_expiring_after_the_first_read_names_the_failing_references() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let docs = ["alpha", "bravo", "charlie", "delta"];
    for doc in docs {
        let pat = t.sentinel(&format!("pat-{doc}"));
        bao.kv2_put("secret", doc, json!({ "pat": pat }));
    }
    let upstream = bao.socket_addr();
    let proxy = StandIn::start(move |_, index| {
        if index == 0 {
            Action::forward(upstream)
        } else {
            Action::json(403, json!({ "errors": ["permission denied"] }))
        }
    });
    let (t, marker, child) = fault_test(t, &proxy.url(), &token, &docs);
    let mark = bao.audit_mark();
    let (out, elapsed) = run_timed(&t, &child);
    // After a 403, cme-exec asks once whether the token itself is still valid (lookup-self).
    let requests: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path() != "/v1/auth/token/lookup-self")
        .collect();
    assert_eq!(
        requests.len(),
        docs.len(),
        "one read per document, 403 never retried:\n{}",
        proxy.summary()
    );
    let first = requests[0]
        .path()
        .strip_prefix("/v1/secret/data/")
        .unwrap_or_else(|| panic!("not a KV v2 read: {}", proxy.summary()))
        .to_owned();
    let failing: Vec<&str> = docs.iter().copied().filter(|d| *d != first).collect();
    assert_eq!(failing.len(), docs.len() - 1, "{}", proxy.summary());
    assert_refused(
        &out,
        elapsed,
        &marker,
        &reference(failing[0]),
        &["answered 403 (permission denied)"],
    );
    out.assert_stderr_contains(&format!(
        "{} credentials could not be resolved",
        failing.len()
    ));
    for doc in &failing {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("({})", reference(doc))))
            .unwrap_or_else(|| {
                panic!("no error line names {}\n{}", reference(doc), out.describe())
            });
        assert!(
            line.contains(&format!(
                "reading secret/{doc} (KV v2): Vault at {} answered 403 (permission denied)",
                proxy.url()
            )) && !line.contains("attempts"),
            "the line for {} should give Vault's 403 and reason, after one attempt: {line}",
            reference(doc)
        );
    }
    assert!(
        !out.stderr.contains(&reference(&first)),
        "{} was read and should not be listed as failing\n{}",
        reference(&first),
        out.describe()
    );
    let audited = bao.requests_since(mark);
    assert_eq!(
        count(&audited, "read", &format!("secret/data/{first}")),
        1,
        "{}",
        audit_listing(&audited)
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A fault that ends in success
// ---------------------------------------------------------------------------------------------

/// 429 with `Retry-After: 1`, then the real answer: the retry waits the second Vault asked for
/// (not the ~100 ms backoff), the run succeeds and the child runs; one read reached OpenBao.
#[test]
fn faults_429_with_retry_after_is_honoured_then_succeeds() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let pat = t.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let upstream = bao.socket_addr();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&arrivals);
    let proxy = StandIn::start(move |_, index| {
        seen.lock().unwrap().push(Instant::now());
        if index == 0 {
            Action::Respond {
                status: 429,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Retry-After".into(), "1".into()),
                ],
                body: json!({ "errors": ["stand-in: rate limit quota exceeded"] })
                    .to_string()
                    .into_bytes(),
            }
        } else {
            Action::forward(upstream)
        }
    });
    let (t, marker, child) = fault_test(t, &proxy.url(), &token, &["app"]);
    let mark = bao.audit_mark();
    let (out, elapsed) = run_timed(&t, &child);
    out.assert_success();
    assert!(
        marker.exists(),
        "the child should have run\n{}",
        out.describe()
    );
    assert!(
        elapsed < DEADLINE + MARGIN,
        "the run took {elapsed:?}\n{}",
        out.describe()
    );
    assert_eq!(proxy.requests().len(), 2, "{}", proxy.summary());
    let arrivals = arrivals.lock().unwrap().clone();
    let waited = arrivals[1] - arrivals[0];
    assert!(
        waited >= Duration::from_millis(950),
        "the retry came {waited:?} after the 429; Retry-After asked for 1 s"
    );
    assert!(
        waited < Duration::from_secs(3),
        "the retry came {waited:?} after the 429; Retry-After asked for 1 s"
    );
    let requests = bao.requests_since(mark);
    assert_eq!(
        count(&requests, "read", "secret/data/app"),
        1,
        "{}",
        audit_listing(&requests)
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Size and load
// ---------------------------------------------------------------------------------------------

/// A 50 MiB answer, streamed without a length (so the limit must bite while reading) and
/// announced with `Content-Length` (refused before reading): a size error naming the limit,
/// no retry, and cme-exec's peak resident set (the kernel's rusage of the exited process)
/// stays far below the body's size.
#[test]
fn faults_50_mib_body_is_refused_and_memory_stays_bounded() {
    const BODY: usize = 50 << 20;
    const PEAK_LIMIT_KIB: i64 = 40 << 10;
    for announced in [false, true] {
        let mut t = Test::new();
        let token = t.sentinel("vault-token");
        let pat = t.sentinel("pat");
        let sent = Arc::new(Mutex::new(0usize));
        let sent_by_server = Arc::clone(&sent);
        let huge = FaultServer::start(move |_, _, conn| {
            let mut headers = vec![("Content-Type", "application/json".to_owned())];
            if announced {
                headers.push(("Content-Length", BODY.to_string()));
            }
            if conn.head(200, &headers).is_err() {
                return;
            }
            let start = format!("{{\"data\":{{\"data\":{{\"pat\":\"{pat}\",\"pad\":\"");
            let mut chunk = vec![b'x'; 64 << 10];
            chunk[..start.len()].copy_from_slice(start.as_bytes());
            let mut total = 0;
            while total < BODY && !conn.stopped() {
                let n = chunk.len().min(BODY - total);
                if conn.write(&chunk[..n]).is_err() {
                    break;
                }
                if total == 0 {
                    chunk[..start.len()].fill(b'x');
                }
                total += n;
            }
            *sent_by_server.lock().unwrap() = total;
        });
        let (t, marker, child) = fault_test(t, &huge.url(), &token, &["app"]);
        let record = t.out_dir().join("peak-rss-kib");
        let wrapper = peak_rss_wrapper(&t);
        let start = Instant::now();
        let out = t
            .launch([OsString::from("--"), child.clone().into_os_string()])
            .wrapper([wrapper.as_os_str(), record.as_os_str()])
            .run();
        let elapsed = start.elapsed();
        let peak: i64 = std::fs::read_to_string(&record)
            .unwrap_or_else(|e| panic!("no peak RSS recorded ({e})\n{}", out.describe()))
            .trim()
            .parse()
            .expect("a number of KiB");
        assert_refused(
            &out,
            elapsed,
            &marker,
            &reference("app"),
            &[
                "reading secret/app (KV v2)",
                &format!("Vault at {} answered with more than", huge.url()),
                "KiB",
            ],
        );
        assert_eq!(
            huge.requests().len(),
            1,
            "a body over the limit is not retried:\n{}",
            huge.summary()
        );
        assert!(
            peak < PEAK_LIMIT_KIB,
            "cme-exec's peak RSS was {peak} KiB (limit {PEAK_LIMIT_KIB} KiB) for a {} MiB body \
             (Content-Length announced: {announced})",
            BODY >> 20
        );
        eprintln!(
            "50 MiB body (Content-Length announced: {announced}): refused, peak RSS {} KiB, the \
             stand-in wrote {} KiB before cme-exec went away",
            peak,
            *sent.lock().unwrap() >> 10
        );
        t.assert_clean();
    }
}

/// 500 references (100 instances × 5 fields) across 50 KV v2 documents of 10 keys in one
/// OpenBao, through one provider behind a proxy that holds each read for 100 ms: every value
/// lands in its place, each document is read exactly once (at the proxy and in OpenBao's audit
/// log), and never more than `CONCURRENCY` (16) reads are in flight at once.
#[test]
fn faults_load_500_references_across_50_documents_read_once_with_bounded_concurrency() {
    let mut t = Test::new();
    let (bao, token) = server_with_token(&mut t);
    let upstream = bao.socket_addr();
    let proxy = StandIn::start(move |req, _| Action::Forward {
        to: upstream,
        delay: if req.path().starts_with("/v1/secret/data/") {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        },
    });
    let fields = [
        "username",
        "api_token",
        "pat",
        "session_cookies",
        "cloud_id",
    ];
    let mut config = format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\nauth = {{ method = \"token\" }}\n",
        q(proxy.url())
    );
    let mut expected = Vec::new();
    for d in 0..50 {
        let sentinel = t.sentinel(&format!("doc{d}"));
        let values: serde_json::Map<String, Value> = (0..10)
            .map(|k| (format!("k{k}"), Value::String(format!("{sentinel}-k{k}"))))
            .collect();
        bao.kv2_put("secret", &format!("doc-{d:02}"), Value::Object(values));
        for half in 0..2 {
            let m = d * 2 + half;
            let (product, url) = if m < 50 {
                ("confluence", format!("https://c{m}.example.com"))
            } else {
                ("jira", format!("https://j{m}.example.com"))
            };
            config.push_str(&format!("\n[{product}.\"{url}\"]\n"));
            for (f, field) in fields.iter().enumerate() {
                let key = half * 5 + f;
                config.push_str(&format!("{field} = \"vault://secret/doc-{d:02}#k{key}\"\n"));
                expected.push((product, url.clone(), *field, format!("{sentinel}-k{key}")));
            }
        }
    }
    assert_eq!(expected.len(), 500);
    let t = t
        .env("VAULT_TOKEN", &token)
        .global_arg("--timeout")
        .global_arg("30")
        .config_toml(&config);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let mark = bao.audit_mark();
    let (out, elapsed) = run_timed(&t, &child);
    out.assert_success();

    let config = t.child_env().config_json();
    for (product, url, field, value) in &expected {
        let got = config
            .pointer(&format!("/auth/{product}"))
            .and_then(|m| m.get(url))
            .and_then(|e| e.get(*field))
            .and_then(Value::as_str);
        assert!(
            got == Some(value.as_str()),
            "auth.{product}[{url}].{field} is not the value of its reference"
        );
    }

    let requests = proxy.requests();
    let audited = bao.requests_since(mark);
    let mut wrong = Vec::new();
    for d in 0..50 {
        let path = format!("secret/data/doc-{d:02}");
        let at_proxy = requests
            .iter()
            .filter(|r| r.method == "GET" && r.path() == format!("/v1/{path}"))
            .count();
        let in_audit = count(&audited, "read", &path);
        if at_proxy != 1 || in_audit != 1 {
            wrong.push(format!(
                "{path}: {at_proxy} at the proxy, {in_audit} audited"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "each document should be read exactly once:\n  {}\nall requests:\n{}",
        wrong.join("\n  "),
        proxy.summary()
    );
    assert_eq!(
        requests.len(),
        50,
        "nothing but the 50 reads:\n{}",
        proxy.summary()
    );
    let max = proxy.max_in_flight();
    assert!(
        max <= CONCURRENCY,
        "{max} reads were in flight at once; the documented bound is {CONCURRENCY}"
    );
    assert!(
        max >= CONCURRENCY / 2,
        "only {max} reads were ever in flight at once: the reads were not concurrent, so the \
         bound was not exercised"
    );
    eprintln!(
        "load: 500 references, 50 documents, each read once; at most {max} reads in flight \
         (bound {CONCURRENCY}); {elapsed:?} with 100 ms per read"
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// One deadline covers everything
// ---------------------------------------------------------------------------------------------

/// What a failing run may take beyond its `--timeout`: starting and ending the process on a busy
/// machine. Generous on purpose (the bugs these tests catch are a doubled deadline).
pub(crate) const RUN_MARGIN: Duration = Duration::from_millis(2500);

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
        elapsed < Duration::from_secs(4) + RUN_MARGIN,
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
