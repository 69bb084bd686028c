use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::{json, Value};

use super::*;
use crate::config::Field;
use crate::resolve::{Auth, InstanceAuth, Origin, Value as Resolved};

type Entry<'a> = (Product, &'a str, &'a [(Field, &'a str)]);

fn auth(entries: &[Entry<'_>]) -> Auth {
    let mut a = Auth::default();
    for (product, url, fields) in entries {
        let mut f = BTreeMap::new();
        for (field, v) in *fields {
            f.insert(
                *field,
                Resolved {
                    secret: SecretString::from((*v).to_owned()),
                    origin: Origin::Literal,
                },
            );
        }
        a.instances
            .insert((*product, (*url).to_owned()), InstanceAuth { fields: f });
    }
    a
}

fn base(doc: Value) -> BaseConfig {
    BaseConfig {
        path: "base.json".into(),
        exists: true,
        doc: doc.as_object().unwrap().clone(),
        mode: Some(0o600),
        size_hint: 0,
    }
}

fn rendered(b: &BaseConfig, a: &Auth) -> Value {
    serde_json::from_slice(&render(b, a)).unwrap()
}

#[test]
fn overlays_auth_on_the_base_and_keeps_its_order_and_settings() {
    let b = base(json!({
        "export": {"log_level": "DEBUG"},
        "auth": {"confluence": {"https://x.atlassian.net/": {"cloud_id": "c1", "username": ""}},
                 "jira": {"https://other.example.com": {"cloud_id": "c2"}}},
        "connection_config": {"max_workers": 3}
    }));
    let a = auth(&[
        (
            Product::Confluence,
            "https://x.atlassian.net",
            &[(Field::Username, "u"), (Field::ApiToken, "t")],
        ),
        (
            Product::Jira,
            "https://jira.example.com",
            &[(Field::Pat, "p")],
        ),
    ]);
    let out = rendered(&b, &a);
    let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["export", "auth", "connection_config"]);
    assert_eq!(
        out["auth"]["confluence"],
        json!({"https://x.atlassian.net": {"cloud_id": "c1", "username": "u", "api_token": "t"}})
    );
    assert_eq!(
        out["auth"]["jira"]["https://other.example.com"],
        json!({"cloud_id": "c2"})
    );
    assert_eq!(
        out["auth"]["jira"]["https://jira.example.com"],
        json!({"pat": "p"})
    );
    assert!(schema::validate(&out).is_empty());
}

#[test]
fn an_empty_base_gets_only_auth() {
    let b = base(json!({}));
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Pat, "p")],
    )]);
    assert_eq!(
        rendered(&b, &a),
        json!({"auth": {"confluence": {"https://x.atlassian.net": {"pat": "p"}}, "jira": {}}})
    );
}

#[test]
fn values_round_trip_exactly() {
    let nasty = "q\"uote \\back } {\"a\":1} \n new\tline \u{1F511} </script>";
    let b = base(json!({}));
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::ApiToken, nasty), (Field::Username, "u")],
    )]);
    let out = rendered(&b, &a);
    assert_eq!(
        out["auth"]["confluence"]["https://x.atlassian.net"]["api_token"],
        nasty
    );
    assert_eq!(
        out["auth"].as_object().unwrap().len(),
        2,
        "no injected keys"
    );
}

#[test]
fn render_product_for_via_env() {
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    assert!(render_product(&a, Product::Confluence).is_none());
    let v: Value = serde_json::from_slice(&render_product(&a, Product::Jira).unwrap()).unwrap();
    assert_eq!(v, json!({"https://jira.example.com": {"pat": "p"}}));
}

#[test]
fn base_configs_with_secrets_or_bad_values_are_refused() {
    let e = base::check(
        json!({"auth": {"confluence": {"https://x": {"api_token": "S3NT1NEL"}}}})
            .as_object()
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("auth.confluence[\"https://x\"].api_token: holds a secret"),
        "{e}"
    );
    assert!(!e.contains("S3NT1NEL"));
    let e = base::check(
        json!({"export": {"log_level": "LOUD"}})
            .as_object()
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("export.log_level"), "{e}");
    assert!(base::check(
        json!({"auth": {"jira": {"https://x": {"pat": "", "cloud_id": "c"}}}})
            .as_object()
            .unwrap()
    )
    .is_ok());
}

#[test]
fn base_config_parse_errors_show_no_text() {
    let e = base::parse(b"{\"export\": S3NT1NEL}").unwrap_err();
    assert!(e.contains("line 1") && !e.contains("S3NT1NEL"), "{e}");
    assert!(base::parse(b"  \n").unwrap().is_empty());
    assert!(base::parse(b"[1]").unwrap_err().contains("an array"));
}

/// What cme writes when it stores anything: the whole model with every default filled in.
fn as_cme_rewrites(mut doc: Value) -> Vec<u8> {
    let defaults = schema::defaults().clone();
    fn merge(into: &mut Value, from: &Value) {
        if let (Value::Object(i), Value::Object(f)) = (into, from) {
            for (k, v) in f {
                match i.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        i.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    merge(&mut doc, &defaults);
    serde_json::to_vec_pretty(&doc).unwrap()
}

#[test]
fn write_back_keeps_only_what_cme_changed_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    std::fs::write(&path, r#"{"export": {"log_level": "DEBUG"}, "mine": 1}"#).unwrap();
    let b = base::load(&path).unwrap();
    let mode_before = b.mode;
    let a = auth(&[(
        Product::Confluence,
        "https://x.atlassian.net",
        &[(Field::Username, "u"), (Field::ApiToken, "S3NT1NEL")],
    )]);
    let handed = render(&b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    after["export"]["log_level"] = json!("WARNING");
    after["auth"]["confluence"]["https://x.atlassian.net"]["cloud_id"] = json!("cloud-1");
    after["auth"]["confluence"]["https://x.atlassian.net"]["api_token"] = json!("CHANGED-S3NT1NEL");
    let report = writeback::write_back(&b, &handed, &as_cme_rewrites(after)).unwrap();
    assert_eq!(
        report.written,
        [
            "export.log_level",
            "auth.confluence[\"https://x.atlassian.net\"].cloud_id"
        ]
    );
    assert_eq!(
        report.dropped_secrets,
        ["auth.confluence[\"https://x.atlassian.net\"].api_token"]
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("S3NT1NEL"), "{written}");
    let v: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        v,
        json!({"export": {"log_level": "WARNING"}, "mine": 1,
               "auth": {"confluence": {"https://x.atlassian.net": {"cloud_id": "cloud-1"}}}})
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        Some(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777),
        mode_before
    );
}

#[test]
fn write_back_with_nothing_changed_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app_data.json");
    let b = base::load(&path).unwrap();
    assert!(!b.exists);
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    let handed = render(&b, &a);
    let after: Value = serde_json::from_slice(&handed).unwrap();
    let report = writeback::write_back(&b, &handed, &as_cme_rewrites(after)).unwrap();
    assert_eq!(report, writeback::Report::default());
    assert!(
        !path.exists(),
        "a rewrite with defaults only is not a change"
    );
}

#[test]
fn write_back_creates_a_missing_base_config_privately() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/app_data.json");
    let b = base::load(&path).unwrap();
    let a = auth(&[(
        Product::Jira,
        "https://jira.example.com",
        &[(Field::Pat, "p")],
    )]);
    let handed = render(&b, &a);
    let mut after: Value = serde_json::from_slice(&handed).unwrap();
    after["export"] = json!({"log_level": "ERROR"});
    writeback::write_back(&b, &handed, &serde_json::to_vec(&after).unwrap()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v, json!({"export": {"log_level": "ERROR"}}));
}
