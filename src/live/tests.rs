use std::collections::BTreeMap;

use base64::Engine as _;
use secrecy::SecretString;

use super::*;
use crate::resolve::{Origin, Value as Resolved};

fn instance(fields: &[(Field, &str)]) -> InstanceAuth {
    let mut map = BTreeMap::new();
    for (f, v) in fields {
        map.insert(
            *f,
            Resolved {
                secret: SecretString::from(v.to_string()),
                origin: Origin::Literal,
            },
        );
    }
    InstanceAuth { fields: map }
}

fn header(c: &Credential) -> String {
    String::from_utf8(c.header.as_ref().unwrap().1.to_vec()).unwrap()
}

#[test]
fn the_credential_is_what_cme_sends() {
    let b = credential(
        Product::Confluence,
        &instance(&[
            (Field::Username, "u@x\r\n"),
            (Field::ApiToken, "tok"),
            (Field::Pat, "pat"),
        ]),
    );
    assert_eq!(b.kind, AuthKind::Basic, "username+api_token win over pat");
    let expected = base64::engine::general_purpose::STANDARD.encode("u@x:tok");
    assert_eq!(header(&b), format!("Basic {expected}"), "CR/LF stripped");

    let p = credential(
        Product::Jira,
        &instance(&[(Field::ApiToken, "tok"), (Field::Pat, "pat")]),
    );
    assert_eq!(p.kind, AuthKind::Bearer, "api_token without username: pat");
    assert_eq!(header(&p), "Bearer pat");

    let c = credential(
        Product::Confluence,
        &instance(&[
            (Field::SessionCookies, " a = 1 ; junk; b=2=3 "),
            (Field::Pat, "pat"),
        ]),
    );
    assert_eq!(c.kind, AuthKind::Cookie, "cookies win over everything");
    assert_eq!(c.header.as_ref().unwrap().0, "cookie");
    assert_eq!(header(&c), "a=1; b=2=3");

    let j = credential(
        Product::Jira,
        &instance(&[(Field::SessionCookies, "a=1"), (Field::Pat, "pat")]),
    );
    assert_eq!(
        j.kind,
        AuthKind::Bearer,
        "cme's Jira client sends no cookies"
    );

    let none = credential(Product::Confluence, &instance(&[(Field::ApiToken, "t")]));
    assert_eq!(none.kind, AuthKind::None);
    assert!(none.header.is_none());
}

#[test]
fn the_call_goes_where_cme_sends_it() {
    assert_eq!(
        probe_url(Product::Confluence, "https://x.atlassian.net", None),
        "https://x.atlassian.net/wiki/rest/api/user/current"
    );
    assert_eq!(
        probe_url(Product::Confluence, "https://x.atlassian.net/wiki", None),
        "https://x.atlassian.net/wiki/rest/api/user/current"
    );
    assert_eq!(
        probe_url(
            Product::Confluence,
            "https://wiki.example.org/confluence",
            None
        ),
        "https://wiki.example.org/confluence/rest/api/user/current"
    );
    assert_eq!(
        probe_url(
            Product::Confluence,
            "https://x.atlassian.net",
            Some("abc-1/x")
        ),
        "https://api.atlassian.com/ex/confluence/abc-1%2Fx/rest/api/user/current"
    );
    assert_eq!(
        probe_url(Product::Jira, "https://x.atlassian.net", Some("c")),
        "https://api.atlassian.com/ex/jira/c/rest/api/2/myself"
    );
    assert_eq!(
        probe_url(Product::Jira, "https://jira.example.org", None),
        "https://jira.example.org/rest/api/2/myself"
    );
    assert!(is_cloud_site("https://X.Atlassian.NET"));
    assert!(!is_cloud_site("https://atlassian.net.example.org"));
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn answers_in_words() {
    let c = Product::Confluence;
    let known = answer(
        200,
        &[],
        r#"{"type":"known","accountId":"5b10","displayName":"Jane"}"#,
    );
    assert_eq!(
        classify(c, AuthKind::Basic, false, &known).unwrap(),
        Account {
            account_id: Some("5b10".into()),
            display_name: Some("Jane".into())
        }
    );
    let anon = answer(
        200,
        &[],
        r#"{"type":"anonymous","displayName":"Anonymous"}"#,
    );
    let e = classify(c, AuthKind::None, false, &anon).unwrap_err();
    assert!(e.message.contains("anonymous"), "{}", e.message);
    assert!(e.hint.unwrap().contains("set username and api_token"));
    // Credentials sent, an anonymous answer: they were not accepted (another site's, or SSO),
    // not "set them".
    let e = classify(c, AuthKind::Basic, false, &anon).unwrap_err();
    assert!(
        e.message
            .ends_with("the credentials (Basic) were sent and not accepted"),
        "{}",
        e.message
    );
    let hint = e.hint.unwrap();
    assert!(
        hint.contains("the site the credentials belong to") && hint.contains("(SSO)"),
        "{hint}"
    );
    assert!(!hint.contains("set username"), "{hint}");

    let e = classify(c, AuthKind::Basic, false, &answer(401, &[], "")).unwrap_err();
    assert_eq!(e.status, Some(401));
    assert!(e.message.contains("expired"), "{}", e.message);
    assert!(e.message.contains("username"), "{}", e.message);

    let captcha = answer(
        403,
        &[("x-seraph-loginreason", "AUTHENTICATION_DENIED")],
        "",
    );
    let e = classify(c, AuthKind::Basic, false, &captcha).unwrap_err();
    assert!(e.message.contains("CAPTCHA"), "{}", e.message);
    let e = classify(c, AuthKind::Basic, false, &answer(403, &[], "")).unwrap_err();
    assert!(e.hint.unwrap().contains("scope"));

    let e = classify(Product::Jira, AuthKind::Bearer, true, &answer(410, &[], "")).unwrap_err();
    assert!(e.message.contains("cloud_id"), "{}", e.message);

    let login = answer(
        302,
        &[("location", "https://sso.example.org/login?token=SECRET")],
        "",
    );
    let e = classify(c, AuthKind::Cookie, false, &login).unwrap_err();
    assert!(e.message.contains("login page"), "{}", e.message);
    assert!(!e.message.contains("SECRET"), "the query is never shown");
    assert!(e.hint.unwrap().contains("cookies"));

    let html = answer(200, &[("content-type", "text/html")], "<html>");
    let e = classify(c, AuthKind::Cookie, false, &html).unwrap_err();
    assert!(e.message.contains("HTML"), "{}", e.message);

    let jira_server = answer(
        200,
        &[],
        r#"{"name":"u","key":"JIRAUSER1","displayName":"U"}"#,
    );
    let a = classify(Product::Jira, AuthKind::Bearer, false, &jira_server).unwrap();
    assert_eq!(a.account_id.as_deref(), Some("JIRAUSER1"));
    let failed = answer(
        200,
        &[("X-Seraph-LoginReason", "AUTHENTICATED_FAILED")],
        "{}",
    );
    assert_eq!(
        classify(Product::Jira, AuthKind::Basic, false, &failed)
            .unwrap_err()
            .status,
        Some(200)
    );
}

#[test]
fn a_name_that_is_a_secret_is_not_shown() {
    let i = instance(&[
        (Field::Username, "jane@example.org"),
        (Field::CloudId, "abcd"),
    ]);
    assert_eq!(scrub("Jane <jane@example.org>".into(), &i), "Jane <***>");
    assert_eq!(scrub("abcd".into(), &i), "abcd", "cloud_id is not a secret");
}

#[test]
fn cme_tls_settings() {
    let base = |doc: serde_json::Value| BaseConfig {
        path: "/nonexistent".into(),
        exists: true,
        doc: doc.as_object().unwrap().clone(),
        mode: None,
        size_hint: 0,
        origin: None,
    };
    let env = |vars: &[(&str, &str)]| {
        EnvReader::from_vars(vars.iter().map(|(k, v)| (k.into(), v.into())))
    };
    let t = Duration::from_secs(1);
    let s = Settings::from_cme(&base(serde_json::json!({})), &env(&[]), t);
    assert_eq!(s.tls, Tls::Default);
    let s = Settings::from_cme(
        &base(serde_json::json!({})),
        &env(&[("CURL_CA_BUNDLE", "/c"), ("REQUESTS_CA_BUNDLE", "/r")]),
        t,
    );
    assert_eq!(
        s.tls,
        Tls::Bundle {
            path: "/r".into(),
            from: "REQUESTS_CA_BUNDLE"
        }
    );
    let s = Settings::from_cme(
        &base(serde_json::json!({"connection_config": {"ca_bundle": "/b"}})),
        &env(&[("REQUESTS_CA_BUNDLE", "/r")]),
        t,
    );
    assert_eq!(
        s.tls,
        Tls::Bundle {
            path: "/b".into(),
            from: "connection_config.ca_bundle"
        }
    );
    let s = Settings::from_cme(
        &base(serde_json::json!({"connection_config": {"ca_bundle": "/b", "verify_ssl": false}})),
        &env(&[]),
        t,
    );
    assert_eq!(
        s.tls,
        Tls::Off {
            from: "connection_config.verify_ssl"
        }
    );
    let s = Settings::from_cme(
        &base(serde_json::json!({"connection_config": {"verify_ssl": false}})),
        &env(&[("cme_connection_config__verify_ssl", "true")]),
        t,
    );
    assert_eq!(s.tls, Tls::Default, "cme's environment wins, any case");
}

/// Credentials over plain http only to loopback or to an instance named in
/// `CME_EXEC_LIVE_ALLOW_HTTP` (any spelling of the same endpoint).
#[test]
fn plain_http_only_to_loopback_or_where_allowed() {
    let base = BaseConfig {
        path: "/nonexistent".into(),
        exists: true,
        doc: serde_json::Map::new(),
        mode: None,
        size_hint: 0,
        origin: None,
    };
    let env = EnvReader::from_vars([(
        "CME_EXEC_LIVE_ALLOW_HTTP".into(),
        "HTTP://Wiki.Corp.Example:80/, http://jira.corp.example/jira".into(),
    )]);
    let s = Settings::from_cme(&base, &env, Duration::from_secs(1));
    let wiki = "http://wiki.corp.example";
    for (instance, call, expected) in [
        (
            wiki,
            "http://wiki.corp.example/rest/api/user/current",
            Cleartext::Allowed,
        ),
        (
            "http://jira.corp.example/jira",
            "http://jira.corp.example/jira/rest/api/2/myself",
            Cleartext::Allowed,
        ),
        (
            "http://jira.corp.example",
            "http://jira.corp.example/rest/api/2/myself",
            Cleartext::Refused,
        ),
        (
            "http://other.example",
            "http://other.example/rest/api/user/current",
            Cleartext::Refused,
        ),
        (
            "http://wiki.corp.example.evil.org",
            "http://wiki.corp.example.evil.org/x",
            Cleartext::Refused,
        ),
        (
            "http://127.0.0.1:8090",
            "http://127.0.0.1:8090/x",
            Cleartext::No,
        ),
        ("http://[::1]:8090", "http://[::1]:8090/x", Cleartext::No),
        ("http://localhost", "http://localhost/x", Cleartext::No),
        (
            "http://wiki.localhost",
            "http://wiki.localhost/x",
            Cleartext::Refused,
        ),
        (
            "https://other.example",
            "https://other.example/x",
            Cleartext::No,
        ),
        (
            "http://x.atlassian.net",
            "https://api.atlassian.com/ex/jira/abc/rest/api/2/myself",
            Cleartext::No,
        ),
    ] {
        assert_eq!(s.cleartext(instance, call), expected, "{instance} {call}");
    }
    let none = Settings::from_cme(&base, &EnvReader::from_vars([]), Duration::from_secs(1));
    assert_eq!(
        none.cleartext(wiki, "http://wiki.corp.example/x"),
        Cleartext::Refused
    );
    let p = cleartext_refused(wiki);
    assert!(
        p.message.contains("clear text; not called"),
        "{}",
        p.message
    );
    assert!(p
        .hint
        .unwrap()
        .contains("CME_EXEC_LIVE_ALLOW_HTTP=http://wiki.corp.example"));
}

/// A cloud_id from `/_edge/tenant_info` is used only from an https answer.
#[test]
fn a_cloud_id_only_from_https() {
    assert_eq!(
        accept_cloud_id("https://x.atlassian.net/_edge/tenant_info", "abc".into()),
        Ok("abc".into())
    );
    let e = accept_cloud_id("http://x.atlassian.net/_edge/tenant_info", "evil".into()).unwrap_err();
    assert!(e.contains("evil over plain http"), "{e}");
    assert!(e.contains("set cloud_id"), "{e}");
}

/// The site's cloud_id (from an https answer) against the configured one.
#[test]
fn cloud_id_compared_in_words() {
    let c = |configured: Option<&str>, site: Result<&str, &str>| CloudIdCheck {
        configured: configured.map(str::to_owned),
        site: site.map(str::to_owned).map_err(str::to_owned),
    };
    let differ = c(Some("configured-id"), Ok("site-id"));
    assert_eq!(differ.matches(), Some(false));
    assert!(differ
        .describe()
        .starts_with("the configured cloud_id configured-id is not this site's (site-id)"));
    assert_eq!(c(Some("a"), Ok("a")).matches(), Some(true));
    let fetched = c(None, Ok("site-id"));
    assert_eq!(fetched.matches(), None);
    assert!(fetched
        .describe()
        .starts_with("the site's cloud_id is site-id; none is configured, so cme fetches it"));
    assert_eq!(c(Some("a"), Err("e")).matches(), None);
}
