use super::*;
use crate::reference::Reference;
use crate::table::{Problem, TableReader};

fn target(raw: &str) -> Result<Target, String> {
    let r = Reference::parse(raw).map_err(|e| format!("parse: {e}"))?;
    parse_target(&r.document)
}

const ARN: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/jira-AbCdEf";

#[test]
fn names_keep_their_characters() {
    let t = target("aws-sm://team@prod/jira+x=y_z.v-1#pat").unwrap();
    assert_eq!(t.secret_id, "team@prod/jira+x=y_z.v-1");
    assert_eq!(t.arn_region, None);
    assert_eq!(t.version, Version::Current);
    let t = target("aws-sm:prod/jira").unwrap();
    assert_eq!(t.secret_id, "prod/jira");
    // A name that starts with `/` is written after the colon alone.
    let t = target("aws-sm:/root/x").unwrap();
    assert_eq!(t.secret_id, "/root/x");
}

#[test]
fn arns_after_three_slashes_or_the_colon() {
    for raw in [format!("aws-sm:///{ARN}#pat"), format!("aws-sm:{ARN}")] {
        let t = target(&raw).unwrap();
        assert_eq!(t.secret_id, ARN, "{raw}");
        assert_eq!(t.arn_region.as_deref(), Some("eu-central-1"));
        assert!(t.is_arn());
    }
    // A partial ARN (no -XXXXXX suffix) and another partition.
    let t = target("aws-sm:arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a/b").unwrap();
    assert_eq!(t.arn_region.as_deref(), Some("cn-north-1"));
}

#[test]
fn arns_a_url_parser_would_misread_are_refused() {
    let e = target(&format!("aws-sm://{ARN}")).unwrap_err();
    assert!(e.contains("aws-sm:///arn:"), "{e}");
    // The url crate indeed cannot read it (the reason for the rule) but reads the others.
    assert!(url::Url::parse(&format!("aws-sm://{ARN}")).is_err());
    let ok = url::Url::parse(&format!("aws-sm:///{ARN}")).unwrap();
    assert_eq!(ok.path(), format!("/{ARN}"));
    let ok = url::Url::parse(&format!("aws-sm:{ARN}")).unwrap();
    assert_eq!(ok.path(), ARN);
}

#[test]
fn bad_arns_and_names() {
    for (raw, why) in [
        ("aws-sm:///prod/jira", "must be followed by an ARN"),
        (
            "aws-sm:arn:aws:ssm:eu-central-1:123456789012:parameter/x",
            "service `ssm`",
        ),
        (
            "aws-sm:arn:aws:secretsmanager:eu-central-1:1234:secret:x",
            "12-digit",
        ),
        (
            "aws-sm:arn:aws:secretsmanager:EU:123456789012:secret:x",
            "region",
        ),
        (
            "aws-sm:arn:aws:secretsmanager:eu-central-1:123456789012:key:x",
            "does not name a secret",
        ),
        (
            "aws-sm:arn:aws:secretsmanager:eu-central-1",
            "not a Secrets Manager ARN",
        ),
        ("aws-sm://prod%20jira", "U+0020"),
        ("aws-sm://prod%23jira", "found `#`"),
        ("aws-sm://caf%C3%A9", "U+00E9"),
        ("aws-sm://a:b", "found `:`"),
    ] {
        let e = target(raw).expect_err(raw);
        assert!(e.contains(why), "{raw}: {e}");
    }
    let long = format!("aws-sm://{}", "a".repeat(513));
    assert!(target(&long).unwrap_err().contains("1-512"));
}

#[test]
fn versions() {
    let t = target("aws-sm://x?version_stage=AWSPREVIOUS").unwrap();
    assert_eq!(t.version, Version::Stage("AWSPREVIOUS".into()));
    // AWSCURRENT is the same request as no parameter, so it is fetched once.
    assert_eq!(
        target("aws-sm://x?version_stage=AWSCURRENT").unwrap(),
        target("aws-sm://x").unwrap()
    );
    let id = "0c9c1e6b-6a4c-4f65-9d0b-6f1c1a1f1a1f";
    let t = target(&format!("aws-sm://x?version_id={id}")).unwrap();
    assert_eq!(t.version, Version::Id(id.into()));
    for (raw, why) in [
        (
            "aws-sm://x?version_id=1&version_stage=AWSCURRENT",
            "not both",
        ),
        ("aws-sm://x?version_id=short", "32-64"),
        ("aws-sm://x?version=3", "unknown parameter `version`"),
    ] {
        let e = target(raw).expect_err(raw);
        assert!(e.contains(why), "{raw}: {e}");
    }
    assert_eq!(
        target("aws-sm://x?version_stage=S").unwrap().to_string(),
        "x (version stage S)"
    );
}

fn parse(toml_text: &str) -> (Settings, Vec<Problem>) {
    let table: toml::Table = toml_text.parse().unwrap();
    let mut problems = Vec::new();
    let mut r = TableReader::new(&table, "providers.aws", &mut problems);
    r.allow("kind");
    let s = Settings::parse(&mut r);
    r.finish();
    (s, problems)
}

#[test]
fn settings_are_read_strictly() {
    let (s, p) = parse(
        r#"
kind = "aws-sm"
region = "eu-central-1"
profile = "atlassian"
endpoint_url = "http://127.0.0.1:5000"
role_arn = "arn:aws:iam::123456789012:role/cme-exec"
external_id = "ext-123"
session_name = "ci-run"
"#,
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    assert_eq!(s.profile.as_deref(), Some("atlassian"));
    assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(
        s.role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/cme-exec")
    );
    assert_eq!(s.external_id.as_deref(), Some("ext-123"));
    assert_eq!(s.session_name.as_deref(), Some("ci-run"));
}

#[test]
fn settings_problems_name_the_key_never_the_value() {
    let secretish = "S3NT1NEL-value";
    let (_, p) = parse(&format!(
        r#"
region = "{secretish}"
endpoint_url = "http://{secretish}.example.com"
role_arn = "{secretish}"
session_name = "{secretish} x"
secret_access_key = "{secretish}"
allow_http = "yes"
"#
    ));
    let keys: Vec<_> = p.iter().filter_map(|p| p.key.as_deref()).collect();
    for key in [
        "region",
        "endpoint_url",
        "role_arn",
        "session_name",
        "secret_access_key",
        "allow_http",
    ] {
        assert!(keys.contains(&key), "{key}: {p:?}");
    }
    for problem in &p {
        assert!(!problem.message.contains(secretish), "{problem:?}");
    }
    assert!(p
        .iter()
        .any(|p| p.key.as_deref() == Some("secret_access_key") && p.message == "unknown key"));
}

#[test]
fn endpoints() {
    assert!(check_endpoint("https://secretsmanager.eu-central-1.amazonaws.com", false).is_ok());
    assert!(check_endpoint("http://localhost:4566", false).is_ok());
    assert!(check_endpoint("http://sm.localhost:4566", false).is_err());
    assert!(check_endpoint("http://[::1]:4566", false).is_ok());
    assert!(check_endpoint("http://127.0.0.2:4566", false).is_ok());
    let e = check_endpoint("http://localstack:4566", false).unwrap_err();
    assert!(e.contains("allow_http"), "{e}");
    assert!(check_endpoint("http://localstack:4566", true).is_ok());
    assert!(check_endpoint("https://u:p@host", false)
        .unwrap_err()
        .contains("user info"));
    assert!(check_endpoint("ftp://host", false).is_err());
    assert!(check_endpoint("host:443", false).is_err());
    assert!(check_endpoint("https://host/?a=b", false).is_err());
}

#[test]
fn role_options_need_a_role() {
    let (_, p) = parse("external_id = \"abc\"\nsession_name = \"x-y\"\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().all(|p| p.message.contains("role_arn")));
}

#[test]
fn build_says_when_the_feature_is_missing() {
    let ctx = Arc::new(Context::new(".".into(), crate::EnvReader::from_vars([])));
    let result = build("aws", &Settings::default(), &ctx);
    if cfg!(feature = "aws-sm") {
        assert!(result.is_ok());
        // Using the provider marks the credential variables, so the child never gets them.
        let consumed = ctx.env.consumed();
        for var in CREDENTIAL_VARS {
            assert!(consumed.contains(*var), "{var}");
        }
    } else {
        let e = result.err().unwrap();
        assert!(e.message().contains("not available"), "{e}");
    }
}

#[test]
fn endpoint_variables_follow_the_same_rule() {
    if !cfg!(feature = "aws-sm") {
        return;
    }
    let ctx = Arc::new(Context::new(
        ".".into(),
        crate::EnvReader::from_vars([("AWS_ENDPOINT_URL".into(), "http://10.1.2.3:80".into())]),
    ));
    let e = build("aws", &Settings::default(), &ctx).err().unwrap();
    assert!(e.message().contains("AWS_ENDPOINT_URL"), "{e}");
    let allowed = Settings {
        allow_http: true,
        ..Settings::default()
    };
    assert!(build("aws", &allowed, &ctx).is_ok());
}

#[test]
fn the_sdks_body_logging_switch_is_refused() {
    if !cfg!(feature = "aws-sm") {
        return;
    }
    let ctx = Arc::new(Context::new(
        ".".into(),
        crate::EnvReader::from_vars([(LOG_SENSITIVE_BODIES.into(), "TRUE".into())]),
    ));
    let e = build("aws", &Settings::default(), &ctx).err().unwrap();
    assert!(e.message().contains(LOG_SENSITIVE_BODIES), "{e}");
    assert!(e.hint().unwrap().contains("unset"));
}
