//! Settings and reference checks: these run in every build, with or without the `vault` feature.

use super::*;
use crate::Reference;

fn parse(toml_text: &str) -> (Settings, Vec<Problem>) {
    let table: toml::Table = toml_text.parse().expect("valid TOML");
    let mut problems = Vec::new();
    let mut r = TableReader::new(&table, "providers.vault", &mut problems);
    r.allow("kind");
    let s = Settings::parse(&mut r);
    r.finish();
    (s, problems)
}

fn problems_of(toml_text: &str) -> Vec<String> {
    parse(toml_text)
        .1
        .into_iter()
        .map(|p| format!("{} {}: {}", p.table, p.key.unwrap_or_default(), p.message))
        .collect()
}

#[test]
fn full_settings() {
    let (s, problems) = parse(
        r#"
kind = "vault"
address = "https://vault.example.com:8200"
namespace = "team-a/sub"
ca_cert = "ca.pem"
ca_path = "/etc/ssl/vault"
client_cert = "c.pem"
client_key = "k.pem"
tls_skip_verify = false
kv_version = 2
kv_mounts = { legacy = 1, "team/kv" = 2 }
timeout = 7
connect_timeout = 2
max_retries = 0
auth = { method = "approle", mount = "/ci-approle/", role_id_file = "role-id", secret_id_env = "VAULT_SECRET_ID" }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert!(s.declared);
    assert_eq!(s.address.as_deref(), Some("https://vault.example.com:8200"));
    assert_eq!(s.namespace.as_deref(), Some("team-a/sub"));
    assert_eq!(s.kv_version, Some(KvVersion::V2));
    assert_eq!(s.kv_mounts.get("legacy"), Some(&KvVersion::V1));
    assert_eq!(s.kv_mounts.get("team/kv"), Some(&KvVersion::V2));
    assert_eq!(
        (s.timeout, s.connect_timeout, s.max_retries),
        (Some(7), Some(2), Some(0))
    );
    assert_eq!(
        s.auth,
        Some(Auth::AppRole {
            mount: "ci-approle".into(),
            role_id: RoleId::From(Source::File("role-id".into())),
            secret_id: Some(Source::Env("VAULT_SECRET_ID".into())),
        })
    );
}

#[test]
fn every_auth_method() {
    let auth = |t: &str| {
        let (s, p) = parse(&format!("auth = {t}"));
        assert!(p.is_empty(), "{t}: {p:?}");
        s.auth.unwrap()
    };
    assert_eq!(
        auth(r#"{ method = "token" }"#),
        Auth::Token { source: None }
    );
    assert_eq!(
        auth(r#"{ method = "token", token_file = "/run/t" }"#),
        Auth::Token {
            source: Some(Source::File("/run/t".into()))
        }
    );
    assert_eq!(
        auth(r#"{ method = "approle", role_id = "r-1" }"#),
        Auth::AppRole {
            mount: "approle".into(),
            role_id: RoleId::Literal("r-1".into()),
            secret_id: None,
        }
    );
    assert_eq!(
        auth(r#"{ method = "kubernetes", role = "cme" }"#),
        Auth::Kubernetes {
            mount: "kubernetes".into(),
            role: "cme".into(),
            token_file: KUBERNETES_TOKEN_FILE.into(),
        }
    );
    assert_eq!(
        auth(r#"{ method = "jwt", role = "ci", jwt_env = "VAULT_ID_TOKEN", mount = "gitlab" }"#),
        Auth::Jwt {
            mount: "gitlab".into(),
            role: Some("ci".into()),
            jwt: JwtSource::From(Source::Env("VAULT_ID_TOKEN".into())),
        }
    );
    assert_eq!(
        auth(r#"{ method = "jwt", github_actions = true, audience = "https://vault" }"#),
        Auth::Jwt {
            mount: "jwt".into(),
            role: None,
            jwt: JwtSource::GithubActions {
                audience: Some("https://vault".into())
            },
        }
    );
    assert_eq!(
        auth(r#"{ method = "userpass", username = "cme", password_file = "pw" }"#),
        Auth::Userpass {
            mount: "userpass".into(),
            username: "cme".into(),
            password: Source::File("pw".into()),
        }
    );
    // As a sub-table too.
    let (s, p) = parse("[auth]\nmethod = \"userpass\"\nusername = \"u\"\npassword_env = \"PW\"\n");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.auth.unwrap().describe(), "userpass at auth/userpass");
}

#[test]
fn strict_and_helpful_problems() {
    for (toml_text, expected) in [
        ("adress = \"https://x\"", "providers.vault adress: unknown key"),
        ("address = 3", "address: expected a string, found an integer"),
        ("address = \"http://vault.example.com\"", "only allowed to a loopback"),
        ("address = \"ftp://vault\"", "scheme must be https"),
        ("address = \"https://u:p@vault\"", "user info"),
        ("kv_version = 3", "kv_version: must be between 1 and 2"),
        ("kv_mounts = { a = 3 }", "kv_mounts.a: must be 1 or 2"),
        ("kv_mounts = { \"a//b\" = 1 }", "empty path segment"),
        ("client_cert = \"c\"", "client_key: missing"),
        ("timeout = 0", "timeout: must be between 1 and 3600"),
        ("auth = { role = \"x\" }", "auth method: missing"),
        ("auth = { method = \"oidc\" }", "auth method: unknown method"),
        ("auth = { method = \"approle\" }", "auth role_id: missing"),
        (
            "auth = { method = \"approle\", role_id = \"r\", secret_id_file = \"f\", secret_id_env = \"E\" }",
            "not both",
        ),
        (
            "auth = { method = \"approle\", role_id = \"r\", role = \"x\" }",
            "auth role: not a setting of auth method \"approle\"",
        ),
        ("auth = { method = \"kubernetes\" }", "auth role: missing"),
        ("auth = { method = \"jwt\", role = \"r\" }", "needs jwt_file, jwt_env or github_actions"),
        (
            "auth = { method = \"jwt\", jwt_file = \"f\", audience = \"a\" }",
            "only used with github_actions",
        ),
        ("auth = { method = \"userpass\", username = \"u\" }", "never the password itself"),
        ("auth = { method = \"userpass\", username = \"u\", password = \"p\" }", "auth password: unknown key"),
        ("auth = { method = \"token\", token_env = \"1X\" }", "not a variable name"),
        ("auth = { method = \"token\", bogus = 1 }", "auth bogus: unknown key"),
        ("auth = \"token\"", "auth: expected a table"),
    ] {
        let problems = problems_of(toml_text);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{toml_text}: expected a problem with {expected:?}, got {problems:?}"
        );
    }
    // A loopback address may be plain http; others only when allowed.
    assert!(problems_of("address = \"http://127.0.0.1:8200\"").is_empty());
    assert!(problems_of("address = \"http://localhost:8200\"").is_empty());
    assert!(problems_of("address = \"http://[::1]:8200\"").is_empty());
    assert!(problems_of("address = \"http://vault.internal\"\nallow_http = true").is_empty());
}

#[test]
fn problems_never_repeat_values() {
    let secret = "hvs.S3CRET-VALUE-1234";
    for toml_text in [
        format!("address = \"https://{secret}:pw@host\""),
        format!("address = \"{secret}\""),
        format!("token = \"{secret}\""),
        format!("auth = {{ method = \"token\", token = \"{secret}\" }}"),
        format!("auth = {{ method = \"approle\", role_id = \"r\", secret_id = \"{secret}\" }}"),
        format!("auth = {{ method = \"{secret}\" }}"),
    ] {
        for p in problems_of(&toml_text) {
            assert!(!p.contains("S3CRET"), "{toml_text}: {p}");
        }
    }
}

#[test]
fn settings_from_the_environment() {
    let env = crate::EnvReader::from_vars([
        ("CME_EXEC_VAULT_AUTH".into(), "jwt".into()),
        ("CME_EXEC_VAULT_AUTH_ROLE".into(), "ci".into()),
        ("CME_EXEC_VAULT_AUTH_GITHUB_ACTIONS".into(), "true".into()),
        ("CME_EXEC_VAULT_AUTH_AUDIENCE".into(), "vault".into()),
    ]);
    let s = Settings::from_environment(&env).unwrap();
    assert!(!s.declared);
    assert_eq!(
        s.auth,
        Some(Auth::Jwt {
            mount: "jwt".into(),
            role: Some("ci".into()),
            jwt: JwtSource::GithubActions {
                audience: Some("vault".into())
            },
        })
    );
    let none = Settings::from_environment(&crate::EnvReader::from_vars([])).unwrap();
    assert_eq!(none.auth, None);
    let bad = crate::EnvReader::from_vars([
        ("CME_EXEC_VAULT_AUTH_ROLE_ID".into(), "r".into()),
        ("CME_EXEC_VAULT_KV_VERSION".into(), "3".into()),
    ]);
    let problems = Settings::from_environment(&bad).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn references() {
    let check = |raw: &str| {
        let r = Reference::parse(raw).unwrap();
        check_document(&r.document)
    };
    for ok in [
        "vault://secret/app",
        "vault://secret/app#api_token",
        "vault://secret/team/app?version=12#/nested/key",
        "corp://kv/a%20b",
    ] {
        assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
    }
    for (bad, why) in [
        ("vault://secret", "MOUNT/PATH"),
        ("vault:secret/app", "with `//`"),
        ("vault://secret/app/", "empty path segment"),
        ("vault://secret//app", "empty path segment"),
        ("vault://secret/app?version=0", "positive integer"),
        ("vault://secret/app?version=-1", "positive integer"),
        ("vault://secret/app?version=x", "positive integer"),
        ("vault://secret/app?version=%2B1", "positive integer"),
        ("vault://secret/app?ver=1", "unknown parameter `ver`"),
    ] {
        let e = check(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn loopback_hosts() {
    for (url, local) in [
        ("http://127.0.0.1:1", true),
        ("http://127.1.2.3", true),
        ("http://[::1]:8200", true),
        ("http://LOCALHOST", true),
        ("http://vault.localhost", false),
        ("http://10.0.0.1", false),
        ("http://vault", false),
        ("http://localhost.example.com", false),
    ] {
        let u = url::Url::parse(url).unwrap();
        assert_eq!(is_loopback(&u.host().unwrap()), local, "{url}");
    }
}

/// Without the feature, the provider still parses and says it was left out.
#[cfg(not(feature = "vault"))]
#[test]
fn build_without_the_feature_says_so() {
    let ctx = std::sync::Arc::new(Context::new(".".into(), crate::EnvReader::from_vars([])));
    let e = build("vault", &Settings::default(), &ctx).err().unwrap();
    assert!(e.message().contains("not available in this build"), "{e}");
}

/// `unix:///ABSOLUTE/PATH` addresses (a Vault Agent's or OpenBao Proxy's socket),
/// relative or empty paths refused with the path named, and no TLS keys beside them.
#[test]
fn unix_socket_addresses() {
    assert_eq!(
        parse_address("unix:///run/openbao/proxy.sock", false),
        Ok(Address::Unix("/run/openbao/proxy.sock".into()))
    );
    assert_eq!(
        parse_address(" UNIX:///run/x.sock ", false).map(|a| a.show()),
        Ok("unix:///run/x.sock".to_owned())
    );
    let e = parse_address("unix://run/x.sock", false).unwrap_err();
    assert!(e.contains("`run/x.sock` is relative"), "{e}");
    for bad in ["unix://", "unix:/run/x.sock", "unix:run/x.sock"] {
        assert!(parse_address(bad, false).is_err(), "{bad}");
    }
    assert!(matches!(
        parse_address("http://127.0.0.1:8100", false),
        Ok(Address::Url(_))
    ));
    let a = parse_address("unix:///run/x.sock", false).unwrap();
    assert!(a.is("unix:///run/x.sock"));
    assert!(!a.is("unix:///run/y.sock"));
    assert!(!a.is("http://127.0.0.1:8100"));

    let (s, problems) = parse("address = \"unix:///run/x.sock\"\nauth = { method = \"agent\" }");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(s.auth, Some(Auth::Agent));
    for key in [
        "ca_cert = \"/ca.pem\"",
        "ca_path = \"/cas\"",
        "tls_skip_verify = true",
    ] {
        let p = problems_of(&format!("address = \"unix:///run/x.sock\"\n{key}"));
        let name = key.split(' ').next().unwrap();
        assert!(
            p.len() == 1 && p[0].contains(&format!(" {name}: a unix:// address is a local socket")),
            "{p:?}"
        );
    }
    let p = problems_of("address = \"unix://x.sock\"");
    assert!(
        p[0].contains(" address: the socket path `x.sock` is relative"),
        "{p:?}"
    );
}

/// The `agent` method takes no keys; a token key says why it has no place there.
#[test]
fn the_agent_method_takes_no_token() {
    for key in ["token_file = \"/t\"", "token_env = \"T\""] {
        let p = problems_of(&format!("auth = {{ method = \"agent\", {key} }}"));
        assert!(
            p.len() == 1 && p[0].contains("the agent method sends no token"),
            "{p:?}"
        );
    }
    let p = problems_of("auth = { method = \"agent\", role = \"r\" }");
    assert!(p[0].contains("it takes no other keys"), "{p:?}");
    assert_eq!(Auth::Agent.mount(), None);
    assert!(Auth::Agent.describe().starts_with("agent"));
}
