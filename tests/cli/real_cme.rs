//! The real cme as the child, against the Confluence stand-in: every kind of credential
//! through each hand-over reaches cme's requests.

use crate::support::*;
use crate::*;

/// One cme run (`cme pages` with four page URLs) covers every kind of credential through the
/// default hand-over (memfd): username + API token (Basic), PAT (Bearer), session cookies
/// (Cookie, no Authorization), and an `https://x.atlassian.net` instance reached as
/// `http://x.atlassian.net` through the stand-in acting as an HTTP proxy (cme matches the key by
/// host; its unauthenticated Cloud ID probe gets a 404).
#[test]
fn cme_sends_every_kind_of_credential_via_memfd() {
    let venv = Venv::get();
    let basic_site = ConfluenceStandIn::start();
    let pat_site = ConfluenceStandIn::start();
    let cookie_site = ConfluenceStandIn::start();
    let proxy = ConfluenceStandIn::start();

    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let cloud_pat = t.sentinel("cloud-pat");
    let cookie_a = t.sentinel("cookie-a");
    let cookie_b = t.sentinel("cookie-b");
    let user_var = var_name("USER");
    let cookie_var = var_name("COOKIES");
    let token_file = t.secret_file("token", format!("{token}\n"));
    let pats = t.secret_file(
        "pats.json",
        serde_json::json!({ "pat": pat, "nested": { "pat": cloud_pat } }).to_string(),
    );
    let config = format!(
        r#"
[confluence.{basic}]
username = {user_ref}
api_token = {token_ref}

[confluence.{pat_url}]
pat = {pat_ref}

[confluence.{cookie}]
session_cookies = {cookie_ref}

[confluence."https://x.atlassian.net"]
pat = {cloud_pat_ref}
"#,
        basic = q(basic_site.base_url()),
        pat_url = q(pat_site.base_url()),
        cookie = q(cookie_site.base_url()),
        user_ref = q(format!("env://{user_var}")),
        token_ref = q(file_ref(&token_file)),
        pat_ref = q(format!("{}#pat", file_ref(&pats))),
        cookie_ref = q(format!("env://{cookie_var}")),
        cloud_pat_ref = q(format!("{}#/nested/pat", file_ref(&pats))),
    );
    let t = t
        .env(&user_var, &user)
        .env(&cookie_var, format!("a={cookie_a}; b={cookie_b}"))
        .env("HTTP_PROXY", proxy.proxy_url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .config_toml(&config)
        .arg("--")
        .arg(venv.cme())
        .args([
            "pages".to_owned(),
            basic_site.page_url(123),
            pat_site.page_url(124),
            cookie_site.page_url(125),
            "http://x.atlassian.net/wiki/spaces/ENG/pages/126".to_owned(),
        ]);
    let out = t.run();
    out.assert_success();

    let check_auth = |site: &ConfluenceStandIn, expected: &str, what: &str| {
        let headers = site.authorization_headers();
        assert!(
            !headers.is_empty() && headers.iter().all(|h| h == expected),
            "{what}: expected every request to carry the right Authorization header; requests:\n{}\n{}",
            redact(&site.summary()),
            out.describe()
        );
        assert!(
            site.requests()
                .iter()
                .any(|r| r.path.starts_with("/rest/api/space")
                    || r.path.contains("/rest/api/space?")),
            "{what}: cme never made its first request (rest/api/space)\n{}",
            redact(&site.summary())
        );
    };
    check_auth(
        &basic_site,
        &basic_header(&user, &token),
        "username + api_token",
    );
    check_auth(&pat_site, &format!("Bearer {pat}"), "pat");

    let cookies = cookie_site.cookie_headers();
    assert!(
        !cookies.is_empty()
            && cookies
                .iter()
                .all(|c| c.contains(&format!("a={cookie_a}"))
                    && c.contains(&format!("b={cookie_b}"))),
        "session_cookies: expected a Cookie header with both cookies on every request\n{}\n{}",
        redact(&cookie_site.summary()),
        out.describe()
    );
    assert!(
        cookie_site.authorization_headers().is_empty(),
        "session_cookies: no Authorization header expected\n{}",
        redact(&cookie_site.summary())
    );

    let proxied = proxy.requests();
    assert!(
        proxied
            .iter()
            .any(|r| r.host == "x.atlassian.net" && r.path_only().ends_with("/rest/api/space")),
        "cme did not reach http://x.atlassian.net through the proxy\n{}",
        redact(&proxy.summary())
    );
    for request in proxied
        .iter()
        .filter(|r| r.path_only().ends_with("/rest/api/space"))
    {
        assert_eq!(
            request.header("authorization").map(redact),
            Some(redact(&format!("Bearer {cloud_pat}"))),
            "the https://x.atlassian.net key (matched by host) gives the Bearer token"
        );
    }
    t.assert_clean();
}

/// `--via file` and `--via env` hand over username + API token to the real cme too.
fn cme_sends_basic_auth_via(via: &str) {
    let venv = Venv::get();
    let site = ConfluenceStandIn::start();
    let b = basic(&site.base_url());
    let t =
        b.t.args(["run", "--via", via, "--"])
            .arg(venv.cme())
            .args(["pages".to_owned(), site.page_url(123)]);
    let out = t.run();
    out.assert_success();
    let headers = site.authorization_headers();
    let expected = basic_header(&b.user, &b.token);
    assert!(
        !headers.is_empty() && headers.iter().all(|h| *h == expected),
        "--via {via}: expected Basic auth on every request\n{}\n{}",
        redact(&site.summary()),
        out.describe()
    );
    t.assert_clean();
}

#[test]
fn cme_sends_basic_auth_via_file() {
    cme_sends_basic_auth_via("file");
}

#[test]
fn cme_sends_basic_auth_via_env() {
    cme_sends_basic_auth_via("env");
}
