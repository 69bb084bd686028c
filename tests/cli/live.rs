//! `check --live` and `run --check-live` against the Atlassian stand-in
//! (`tests/cli/support/atlassian.rs`), which records every request's headers: the authentication
//! is exactly cme's (Basic, Bearer, Cookie; the gateway with a cloud_id), each failure is told
//! in words, proxies and CA settings are respected, and `run --check-live` starts nothing when
//! an instance does not authenticate.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::atlassian::{AtlassianStandIn, Behaviour, Mode};
use crate::support::*;
use crate::{basic_header, file_ref, q};

/// A test with secrets for one Basic instance (`user`, `token`) and one Bearer one (`pat`).
struct Creds {
    t: Test,
    user: String,
    token: String,
    pat: String,
    token_file: PathBuf,
    pat_file: PathBuf,
}

fn creds() -> Creds {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let token_file = t.secret_file("token", format!("{token}\n"));
    let pat_file = t.secret_file("pat", &pat);
    let t = t.env("CME_TEST_LIVE_USER", &user);
    Creds {
        t,
        user,
        token,
        pat,
        token_file,
        pat_file,
    }
}

impl Creds {
    /// `[confluence.URL]` with username + api_token.
    fn confluence_basic(&self, url: &str) -> String {
        format!(
            "[confluence.{}]\nusername = \"env://CME_TEST_LIVE_USER\"\napi_token = {}\n",
            q(url),
            q(file_ref(&self.token_file))
        )
    }

    /// `[jira.URL]` with pat.
    fn jira_pat(&self, url: &str) -> String {
        format!("[jira.{}]\npat = {}\n", q(url), q(file_ref(&self.pat_file)))
    }

    fn basic(&self) -> String {
        basic_header(&self.user, &self.token)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.pat)
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.describe()))
}

/// Two instances, one Confluence with Basic, one Jira with Bearer: both authenticated, named by
/// account and display name, exit 0; the stand-in saw exactly cme's headers.
#[test]
fn check_live_names_whom_each_instance_authenticates_as() {
    let c = creds();
    let wiki = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let jira = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.bearer()));
    let config = c.confluence_basic(&wiki.base_url()) + &c.jira_pat(&jira.base_url());
    let (basic, bearer) = (c.basic(), c.bearer());
    let t = c.t.config_toml(&config);

    let out = t.run_args(["check", "--live"]);
    out.assert_success();
    out.assert_stdout_contains(&format!(
        "GET {}/rest/api/user/current (Basic): authenticated as Jane Export (account 5b10a2844c20165700ede21g)",
        wiki.base_url()
    ));
    out.assert_stdout_contains(&format!(
        "GET {}/rest/api/2/myself (Bearer): authenticated as Jane Export",
        jira.base_url()
    ));
    out.assert_stdout_contains("live: 2 of 2 instances authenticated");

    let w = wiki.requests_to("/rest/api/user/current");
    assert_eq!(w.len(), 1, "{}", wiki.summary());
    assert_eq!(w[0].header("authorization"), Some(basic.as_str()));
    assert_eq!(w[0].header("cookie"), None);
    let j = jira.requests_to("/rest/api/2/myself");
    assert_eq!(j.len(), 1, "{}", jira.summary());
    assert_eq!(j[0].header("authorization"), Some(bearer.as_str()));
    // Not atlassian.net: no tenant_info call.
    assert!(wiki.requests_to("/_edge/tenant_info").is_empty());

    let out = t.run_args(["check", "--live", "--format", "json"]);
    out.assert_success();
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let live = v["live"].as_array().expect("live is a list");
    assert_eq!(live.len(), 2);
    assert_eq!(live[0]["auth"], "Basic");
    assert_eq!(live[0]["account_id"], "5b10a2844c20165700ede21g");
    assert_eq!(live[1]["product"], "jira");
    t.assert_clean();
}

/// Session cookies go as one `Cookie:` header of the `name=value` pairs, as cme sends them, and
/// win over a PAT.
#[test]
fn session_cookies_are_sent_as_cme_sends_them() {
    let mut t = Test::new();
    let a = t.sentinel("cookiea");
    let b = t.sentinel("cookieb");
    let pat = t.sentinel("pat");
    let cookies = t.secret_file("cookies", format!(" JSESSIONID={a} ; seraph={b}"));
    let pat_file = t.secret_file("pat", &pat);
    let expected = format!("JSESSIONID={a}; seraph={b}");
    let wiki = AtlassianStandIn::start(Behaviour::accepting("cookie", &expected));
    let t = t.config_toml(&format!(
        "[confluence.{}]\nsession_cookies = {}\npat = {}\n",
        q(wiki.base_url()),
        q(file_ref(&cookies)),
        q(file_ref(&pat_file))
    ));
    let out = t.run_args(["check", "--live"]);
    out.assert_success();
    out.assert_stdout_contains("(Cookie): authenticated as Jane Export");
    let r = wiki.requests_to("/rest/api/user/current");
    assert_eq!(r.len(), 1, "{}", wiki.summary());
    assert_eq!(r[0].header("cookie"), Some(expected.as_str()));
    assert_eq!(r[0].header("authorization"), None, "cookies win over pat");
    t.assert_clean();
}

/// Each way an instance refuses, in words, one line per instance; exit 1.
#[test]
fn check_live_tells_each_failure_in_words() {
    let c = creds();
    let wrong = AtlassianStandIn::start(Behaviour::accepting("authorization", "Basic bm90LWl0"));
    let captcha = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.basic()).mode(Mode::Captcha),
    );
    let scoped = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.bearer()).mode(Mode::Forbidden),
    );
    let gone = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.bearer()).mode(Mode::Gone),
    );
    let sso = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.basic()).mode(Mode::LoginRedirect),
    );
    let anonymous = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.basic()).mode(Mode::Anonymous),
    );
    let config = c.confluence_basic(&wrong.base_url())
        + &c.confluence_basic(&captcha.base_url())
        + &c.jira_pat(&scoped.base_url())
        + &c.jira_pat(&gone.base_url())
        + &c.confluence_basic(&sso.base_url())
        + &c.confluence_basic(&anonymous.base_url());
    let t = c.t.config_toml(&config);
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    let line = |base: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.starts_with("live ") && l.contains(&format!("GET {base}/")))
            .unwrap_or_else(|| panic!("no live line for {base}: {}", out.describe()))
            .to_owned()
    };
    let l = line(&wrong.base_url());
    assert!(
        l.contains("FAILED: 401 Unauthorized") && l.contains("expired"),
        "{l}"
    );
    assert!(l.contains("username is not the token's account"), "{l}");
    let l = line(&captcha.base_url());
    assert!(l.contains("FAILED: 403") && l.contains("CAPTCHA"), "{l}");
    let l = line(&scoped.base_url());
    assert!(
        l.contains("403 Forbidden") && l.contains("read:jira-user"),
        "{l}"
    );
    let l = line(&gone.base_url());
    assert!(l.contains("410: no Jira API at this address"), "{l}");
    let l = line(&sso.base_url());
    assert!(l.contains("302: redirected to a login page"), "{l}");
    assert!(!l.contains("os_destination"), "no query shown: {l}");
    let l = line(&anonymous.base_url());
    assert!(
        l.contains(
            "FAILED: Confluence answered as it answers an anonymous user: the credentials \
             (Basic) were sent and not accepted (hint: the site ignored them: check that the \
             instance URL is the site the credentials belong to"
        ) && l.contains("single sign-on (SSO)"),
        "{l}"
    );
    assert!(!l.contains("set username and api_token"), "{l}");
    out.assert_stdout_contains("live: 0 of 6 instances authenticated");
    // The redirect was not followed: one request to that stand-in.
    assert_eq!(sso.requests().len(), 1, "{}", sso.summary());
    t.assert_clean();
}

/// Nothing listening, an answer that never comes (bounded by --timeout), and https:// against a
/// plain-HTTP server (a TLS failure): each said in words.
#[test]
fn check_live_tells_connection_timeout_and_tls_failures() {
    let c = creds();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let plain = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let plain_port = plain.base_url().rsplit(':').next().unwrap().to_owned();
    let config = c.confluence_basic(&format!("http://127.0.0.1:{closed}"))
        + &c.jira_pat(&format!("http://127.0.0.1:{silent_port}"))
        + &c.confluence_basic(&format!("https://localhost:{plain_port}"));
    let t = c.t.config_toml(&config);
    let out = t.run_args(["--timeout", "2", "check", "--live"]);
    out.assert_code(1);
    out.assert_stdout_contains(&format!("http://127.0.0.1:{closed}: cannot connect"));
    out.assert_stdout_contains(&format!(
        "http://127.0.0.1:{silent_port}: no answer within 2 s (see --timeout)"
    ));
    out.assert_stdout_contains(&format!("https://localhost:{plain_port}: TLS failed"));
    drop(silent);
    t.assert_clean();
}

/// cme's CA settings: a bundle named by REQUESTS_CA_BUNDLE that cannot be read is an error
/// naming the variable and the file; connection_config.ca_bundle wins over it.
#[test]
fn check_live_uses_the_ca_bundle_cme_would_use() {
    let c = creds();
    let wiki = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let config = c.confluence_basic(&wiki.base_url());
    let missing = c.t.path().join("no-such-bundle.pem");
    let t = c.t.config_toml(&config).env("REQUESTS_CA_BUNDLE", &missing);
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    out.assert_stderr_contains(&format!(
        "cannot read the CA bundle {} (REQUESTS_CA_BUNDLE)",
        missing.display()
    ));
    let other = t.path().join("other.pem");
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        format!(
            "{{\"connection_config\": {{\"ca_bundle\": {}}}}}",
            q(other.display().to_string())
        ),
    );
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    out.assert_stderr_contains(&format!(
        "cannot read the CA bundle {} (connection_config.ca_bundle)",
        other.display()
    ));
    t.assert_clean();
}

/// For `*.atlassian.net`: `/_edge/tenant_info` is asked without credentials; its answer over
/// plain http is shown and never used (anyone on the path can forge it). A configured cloud_id
/// sends the call through the gateway (a CONNECT to api.atlassian.com:443 through HTTPS_PROXY);
/// without one, the call would go to the http site itself, and is not made (plain http to a host
/// that is not loopback). NO_PROXY is respected.
#[test]
fn check_live_asks_the_sites_cloud_id_and_uses_the_proxy() {
    let c = creds();
    let proxy = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.basic()).cloud_id("site-cloud-id"),
    );
    let direct = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.bearer()));
    let config = c.confluence_basic("http://company.atlassian.net")
        + "cloud_id = \"configured-cloud-id\"\n"
        + &c.jira_pat("http://company.atlassian.net")
        + &c.jira_pat(&direct.base_url());
    let t =
        c.t.config_toml(&config)
            .env("HTTP_PROXY", proxy.base_url())
            .env("HTTPS_PROXY", proxy.base_url())
            .env("NO_PROXY", "127.0.0.1");
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    out.assert_stdout_contains(
        "configured cloud_id configured-cloud-id; the site's is unknown (/_edge/tenant_info \
         answered site-cloud-id over plain http, which anyone on the network path can forge: not used",
    );
    out.assert_stdout_contains(
        "GET https://api.atlassian.com/ex/confluence/configured-cloud-id/rest/api/user/current (Basic)",
    );
    out.assert_stdout_contains(
        "GET http://company.atlassian.net/rest/api/2/myself (Bearer): FAILED: \
         http://company.atlassian.net: plain http to a host that is not this machine",
    );
    out.assert_stdout_contains(&format!(
        "GET {}/rest/api/2/myself (Bearer): authenticated",
        direct.base_url()
    ));
    let tenant = proxy.requests_to("/_edge/tenant_info");
    assert_eq!(tenant.len(), 2, "{}", proxy.summary());
    for r in &tenant {
        assert_eq!(r.host, "company.atlassian.net");
        assert_eq!(
            r.header("authorization"),
            None,
            "tenant_info is unauthenticated"
        );
        assert_eq!(r.header("cookie"), None);
    }
    let connects: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "CONNECT")
        .collect();
    assert_eq!(connects.len(), 1, "{}", proxy.summary());
    assert_eq!(connects[0].target, "api.atlassian.com:443");
    assert_eq!(direct.requests().len(), 1, "NO_PROXY: {}", direct.summary());
    t.assert_clean();
}

/// Plain http to a host that is not this machine: the credentials are not sent (the instance
/// is not called, and the report says why) unless `CME_EXEC_LIVE_ALLOW_HTTP` names the
/// instance; then they are, with a warning. The proxy (`HTTP_PROXY`) is where an observer on
/// the path would read them.
#[test]
fn check_live_sends_no_credentials_over_plain_http_unless_allowed() {
    let c = creds();
    let proxy = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let config = c.confluence_basic("http://wiki.corp.example");
    let basic = c.basic();
    let t =
        c.t.config_toml(&config)
            .env("HTTP_PROXY", proxy.base_url())
            .env("HTTPS_PROXY", proxy.base_url());
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    out.assert_stdout_contains(
        "GET http://wiki.corp.example/rest/api/user/current (Basic): FAILED: \
         http://wiki.corp.example: plain http to a host that is not this machine: the \
         credentials would cross the network in clear text; not called (hint: use https:// if \
         the site serves it; on a network you trust, allow this instance with \
         CME_EXEC_LIVE_ALLOW_HTTP=http://wiki.corp.example",
    );
    assert!(
        proxy.requests().is_empty(),
        "nothing was sent: {}",
        proxy.summary()
    );

    // `run --check-live` starts nothing either.
    let marker = t.out_dir().join("started");
    let child = t.script("child", &scripts::touch(&marker));
    let out = t.run_args([
        OsStr::new("run"),
        OsStr::new("--check-live"),
        OsStr::new("--"),
        child.as_os_str(),
    ]);
    out.assert_code(125);
    assert!(!marker.exists(), "the command was started");
    assert!(proxy.requests().is_empty(), "{}", proxy.summary());

    // Allowed for this instance (another spelling of the same URL): sent, with a warning.
    let t = t.env(
        "CME_EXEC_LIVE_ALLOW_HTTP",
        "http://other.example, HTTP://Wiki.Corp.Example:80/",
    );
    let out = t.run_args(["check", "--live"]);
    out.assert_success();
    out.assert_stderr_contains(
        "warning: [confluence.\"http://wiki.corp.example\"]: the live check sends the \
         credentials (Basic) in clear text over plain http (CME_EXEC_LIVE_ALLOW_HTTP allows it)",
    );
    out.assert_stdout_contains("(Basic): authenticated as Jane Export");
    let sent = proxy.requests_to("/rest/api/user/current");
    assert_eq!(sent.len(), 1, "{}", proxy.summary());
    assert_eq!(sent[0].host, "wiki.corp.example");
    assert_eq!(sent[0].header("authorization"), Some(basic.as_str()));
    t.assert_clean();
}

/// An http `*.atlassian.net` site whose path answers `/_edge/tenant_info` with an attacker's
/// cloud id: the id is shown, never used: no call goes to the gateway under it, with or without
/// credentials over plain http being allowed for the site.
#[test]
fn check_live_never_routes_credentials_by_a_cloud_id_from_plain_http() {
    let c = creds();
    let proxy = AtlassianStandIn::start(
        Behaviour::accepting("authorization", &c.basic()).cloud_id("attacker-cloud-id"),
    );
    let config =
        c.confluence_basic("http://foo.atlassian.net") + &c.jira_pat("http://foo.atlassian.net");
    let t =
        c.t.config_toml(&config)
            .env("HTTP_PROXY", proxy.base_url())
            .env("HTTPS_PROXY", proxy.base_url());
    let gateway = |proxy: &AtlassianStandIn| -> usize {
        proxy
            .requests()
            .iter()
            .filter(|r| {
                r.target.contains("api.atlassian.com") || r.host.contains("api.atlassian.com")
            })
            .count()
    };
    let out = t.run_args(["check", "--live"]);
    out.assert_code(1);
    out.assert_stdout_contains(
        "the site's cloud_id is unknown (/_edge/tenant_info answered attacker-cloud-id over plain http",
    );
    assert!(!out.stdout.contains("/ex/"), "{}", out.describe());
    assert_eq!(gateway(&proxy), 0, "{}", proxy.summary());
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "{}",
        proxy.summary()
    );

    // Allowed over plain http: the site itself is called, never the gateway under that id.
    let t = t.env("CME_EXEC_LIVE_ALLOW_HTTP", "http://foo.atlassian.net");
    let out = t.run_args(["check", "--live"]);
    out.assert_stdout_contains(
        "GET http://foo.atlassian.net/wiki/rest/api/user/current (Basic): authenticated",
    );
    assert!(!out.stdout.contains("/ex/"), "{}", out.describe());
    assert_eq!(gateway(&proxy), 0, "{}", proxy.summary());
    t.assert_clean();
}

/// `run --check-live`: an instance that does not authenticate stops the run before the command
/// starts (exit 125, the reason on stderr); when all authenticate, the command runs.
#[test]
fn run_check_live_starts_nothing_unless_every_instance_authenticates() {
    let c = creds();
    let good = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let bad = AtlassianStandIn::start(Behaviour::accepting("authorization", "Bearer other"));
    let marker = c.t.out_dir().join("started");
    let child = c.t.script("child", &scripts::touch(&marker));
    let both = c.confluence_basic(&good.base_url()) + &c.jira_pat(&bad.base_url());
    let good_only = c.confluence_basic(&good.base_url());
    let t = c.t.config_toml(&both);
    let out = t.run_args([
        OsStr::new("run"),
        OsStr::new("--check-live"),
        OsStr::new("--"),
        child.as_os_str(),
    ]);
    out.assert_code(125);
    out.assert_stderr_contains(
        "1 of 2 instances did not authenticate (--check-live); nothing was started",
    );
    out.assert_stderr_contains("401 Unauthorized");
    assert!(!marker.exists(), "the command was started");

    // Without --check-live the command starts (the live check is off by default).
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_success();
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        bad.requests().len(),
        1,
        "only the --check-live run called: {}",
        bad.summary()
    );

    t.write_file("cme-exec.toml", &good_only);
    let out = t.run_args([
        OsStr::new("run"),
        OsStr::new("--check-live"),
        OsStr::new("--"),
        child.as_os_str(),
    ]);
    out.assert_success();
    assert!(marker.exists());
    t.assert_clean();
}

/// No certificate is read for `http://` instances: with `SSL_CERT_FILE` naming a file
/// that holds none, the live check of a plain-HTTP site still runs (it would fail at once if the
/// roots were loaded), and one over `https://` names the variable.
#[test]
fn check_live_reads_no_certificate_for_http_instances() {
    let c = creds();
    let wiki = AtlassianStandIn::start(Behaviour::accepting("authorization", &c.basic()));
    let config = c.confluence_basic(&wiki.base_url());
    let t = c.t.config_toml(&config);
    let garbage = t.out_dir().join("not-a-bundle.pem");
    std::fs::write(&garbage, "no certificate here\n").unwrap();
    let t = t.env("SSL_CERT_FILE", &garbage).env_remove("SSL_CERT_DIR");

    let out = t.run_args(["check", "--live"]);
    out.assert_success();
    out.assert_stdout_contains("live: 1 of 1 instance authenticated");
    assert_eq!(wiki.requests_to("/rest/api/user/current").len(), 1);

    t.assert_clean();

    // A site over TLS (nothing listens there: the roots fail first), and a plain-HTTP one with a
    // cloud_id, which cme calls through Atlassian's gateway over https.
    for (url, extra) in [
        ("https://127.0.0.1:9", ""),
        (wiki.base_url().as_str(), "cloud_id = \"abc-123\"\n"),
    ] {
        let c = creds();
        let config = c.confluence_basic(url) + extra;
        let t = c.t.config_toml(&config);
        let t = t.env("SSL_CERT_FILE", &garbage).env_remove("SSL_CERT_DIR");
        let out = t.run_args(["check", "--live"]);
        assert_ne!(out.code(), Some(0), "{}", out.describe());
        assert!(out.stderr.contains("SSL_CERT_FILE"), "{}", out.describe());
        t.assert_clean();
    }
}
