use super::*;
use cme_exec_providers::context::EnvReader;

fn parse(text: &str) -> Result<Config, Error> {
    let table: toml::Table = text.parse().expect("test TOML parses");
    parse_table(&table, Source::File("cme-exec.toml".into()))
}

fn problems(text: &str) -> Vec<String> {
    parse(text).expect_err("should fail").details().to_vec()
}

#[test]
fn a_full_config_parses() {
    let c = parse(
        r#"
        [providers.vault]
        kind = "vault"
        address = "https://vault.example.com:8200"

        [providers.k8s]
        kind = "file"
        root = "/run/secrets"

        [confluence."https://Company.atlassian.net/"]
        username = "me@example.com"
        api_token = "vault://secret/atlassian#api_token"

        [jira."https://jira.example.com"]
        pat = "k8s:jira-pat"
        cloud_id = "abc"

        [confluence."https://wiki.example.org/confluence"]
        from = "file:///run/secrets/wiki.json"

        [auth]
        from = "env://CME_AUTH_JSON"

        [cme]
        base_config = "base.json"
        write_back = false
        "#,
    )
    .unwrap();
    assert_eq!(c.providers.len(), 2);
    assert_eq!(c.instances.len(), 3);
    let first = &c.instances[0];
    assert_eq!(first.url, "https://company.atlassian.net");
    assert!(matches!(
        first.fields[&Field::Username],
        FieldSpec::Literal(_)
    ));
    assert!(matches!(
        first.fields[&Field::ApiToken],
        FieldSpec::Reference(_)
    ));
    assert!(c.auth_from.is_some());
    assert!(!c.cme.write_back);
    assert_eq!(c.references().len(), 4);
}

#[test]
fn every_problem_is_reported_at_once_with_its_place() {
    let p = problems(
        r#"
        colour = "blue"
        [confluence."https://x.atlassian.net"]
        api_tokn = "env://A"
        pat = "vault:"
        [jira."https://y.example.com"]
        pat = 5
        [cme]
        write_back = "yes"
        "#,
    );
    let all = p.join("\n");
    assert!(all.contains("colour: unknown key"), "{all}");
    assert!(
        all.contains("[confluence.\"https://x.atlassian.net\"] api_tokn: unknown key"),
        "{all}"
    );
    assert!(
        all.contains("[confluence.\"https://x.atlassian.net\"] pat: bad reference: empty path"),
        "{all}"
    );
    assert!(
        all.contains("[jira.\"https://y.example.com\"] pat: expected a string, found an integer"),
        "{all}"
    );
    assert!(
        all.contains("[cme] write_back: expected true or false, found a string"),
        "{all}"
    );
    assert_eq!(p.len(), 5, "{all}");
}

#[test]
fn secret_literals_are_refused_without_echo() {
    let secret = "ATATT3xS3NT1NEL0000";
    let p = problems(&format!(
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"u\"\napi_token = \"{secret}\"\n"
    ));
    let all = p.join("\n");
    assert!(all.contains("api_token: must be a reference"), "{all}");
    assert!(!all.contains(secret));
}

#[test]
fn unknown_schemes_and_bad_shapes() {
    let all = problems(
        r#"
        [confluence."https://x.atlassian.net"]
        username = "valt://secret/x#u"
        api_token = "env://NOT-A-NAME"
        pat = "file://host/x"
        "#,
    )
    .join("\n");
    assert!(all.contains("unknown scheme `valt`"), "{all}");
    assert!(all.contains("not a variable name"), "{all}");
    assert!(all.contains("file:///ABSOLUTE/PATH"), "{all}");
}

#[test]
fn duplicates_after_normalisation_and_user_info() {
    let all = problems(
        r#"
        [confluence."https://X.atlassian.net"]
        pat = "env://A"
        [confluence."https://x.atlassian.net/"]
        pat = "env://B"
        [jira."https://user:hunter2@jira.example.com"]
        pat = "env://C"
        "#,
    )
    .join("\n");
    assert!(
        all.contains("the same instance as [confluence.\"https://X.atlassian.net\"]"),
        "{all}"
    );
    assert!(all.contains("user info"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn providers_need_a_known_kind_and_a_scheme_like_name() {
    let all = problems(
        r#"
        [providers.a]
        kind = "keepass"
        [providers.b]
        address = "x"
        [providers.Bad_Name]
        kind = "env"
        [providers.c]
        kind = "file"
        rooot = "/x"
        [confluence."https://x.atlassian.net"]
        pat = "env://A"
        "#,
    )
    .join("\n");
    assert!(all.contains("[providers.a] kind: unknown kind"), "{all}");
    assert!(all.contains("[providers.b] kind: missing"), "{all}");
    assert!(
        all.contains("[providers.Bad_Name]: a provider's name is its reference scheme"),
        "{all}"
    );
    assert!(all.contains("[providers.c] rooot: unknown key"), "{all}");
}

#[test]
fn a_declared_provider_replaces_the_builtin_of_the_same_name() {
    let c = parse(
        r#"
        [providers.env]
        kind = "file"
        [confluence."https://x.atlassian.net"]
        pat = "env:token"
        "#,
    )
    .unwrap();
    assert_eq!(
        c.provider_for("env").unwrap().kind(),
        Kind::from_name("file").unwrap()
    );
    assert_eq!(
        c.provider_for("vault").unwrap().kind(),
        Kind::from_name("vault").unwrap()
    );
    assert!(c.provider_for("nope").is_none());
}

#[test]
fn an_empty_config_says_what_to_add() {
    let all = problems("").join("\n");
    assert!(all.contains("no instance configured"), "{all}");
    let all = problems("[confluence.\"https://x.atlassian.net\"]\n").join("\n");
    assert!(all.contains("no fields"), "{all}");
}

#[test]
fn toml_messages_drop_long_quoted_text() {
    assert_eq!(sanitise_toml_message("expected `=`"), "expected `=`");
    assert_eq!(
        sanitise_toml_message("invalid string `ATATT3xS3NT1NEL` here\nmore"),
        "invalid string … here"
    );
}

fn env(vars: &[(&str, &str)]) -> EnvReader {
    EnvReader::from_vars(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())))
}

#[test]
fn environment_only_configuration() {
    let c = from_environment(&env(&[
        ("CME_EXEC_CONFLUENCE_URL", "https://x.atlassian.net/"),
        ("CME_EXEC_CONFLUENCE_USERNAME", "env://U"),
        ("CME_EXEC_CONFLUENCE_API_TOKEN", "env://T"),
        ("CME_EXEC_JIRA_URL", "https://jira.example.com"),
        ("CME_EXEC_JIRA_PAT", "file:///run/secrets/pat"),
        ("CME_EXEC_WRITE_BACK", "false"),
    ]))
    .unwrap();
    assert_eq!(c.source, Source::Environment);
    assert_eq!(c.instances.len(), 2);
    assert_eq!(c.instances[0].url, "https://x.atlassian.net");
    assert!(!c.cme.write_back);

    let e = from_environment(&env(&[("CME_EXEC_CONFLUENCE_API_TOKEN", "env://T")])).unwrap_err();
    assert!(
        e.to_string().contains("CME_EXEC_CONFLUENCE_URL is not set"),
        "{e}"
    );
    let e = from_environment(&env(&[
        ("CME_EXEC_CONFLUENCE_URL", "https://x.atlassian.net"),
        ("CME_EXEC_CONFLUENCE_APITOKEN", "env://T"),
    ]))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("CME_EXEC_CONFLUENCE_APITOKEN: unknown variable"),
        "{e}"
    );
    let e = from_environment(&env(&[])).unwrap_err();
    assert!(e.to_string().contains("no configuration found"), "{e}");
}

#[test]
fn discovery_order() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(xdg.join("cme-exec")).unwrap();
    let body = "[confluence.\"https://x.atlassian.net\"]\npat = \"env://A\"\n";
    std::fs::write(xdg.join("cme-exec/config.toml"), body).unwrap();
    let state = dir.path().join("state");
    let e = env(&[
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("XDG_STATE_HOME", state.to_str().unwrap()),
    ]);
    let c = load(None, &e, &cwd).unwrap();
    assert_eq!(c.source, Source::File(xdg.join("cme-exec/config.toml")));
    std::fs::write(cwd.join("cme-exec.toml"), body).unwrap();
    // The working directory's file is used only once trusted.
    let err = load(None, &e, &cwd).unwrap_err();
    assert!(
        err.is_fatal() && err.to_string().contains("not trusted"),
        "{err}"
    );
    let canonical = trust::canonical(&cwd.join("cme-exec.toml")).unwrap();
    trust::record(&e, &canonical, body.as_bytes(), &[]).unwrap();
    let c = load(None, &e, &cwd).unwrap();
    assert_eq!(c.source, Source::File(canonical));
    let explicit = dir.path().join("other.toml");
    let err = load(Some(&explicit), &e, &cwd).unwrap_err();
    assert!(
        err.to_string().contains("cannot read the config file"),
        "{err}"
    );
}

#[test]
fn malformed_toml_names_the_position_not_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cme-exec.toml");
    let secret = "ATATT3xS3NT1NEL";
    std::fs::write(
        &path,
        format!("[confluence.\"https://x\"]\napi_token = {secret}\n"),
    )
    .unwrap();
    let err = load(Some(&path), &env(&[]), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2:"), "{err}");
    assert!(!err.contains(secret), "{err}");
    std::fs::write(&path, b"pat = \"\xff\"\n").unwrap();
    let err = load(Some(&path), &env(&[]), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn a_world_writable_config_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cme-exec.toml");
    std::fs::write(
        &path,
        "[confluence.\"https://x.atlassian.net\"]\npat = \"env://A\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = load(Some(&path), &env(&[]), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("writable by other users") && err.contains("chmod o-w"),
        "{err}"
    );
}

/// A secret pasted before a colon (`Sup3rSecretPwd:x`, `user:password`) is
/// not named as an "unknown scheme"; a value with `://` still names its scheme.
#[test]
fn a_pasted_secret_before_a_colon_is_not_named_as_a_scheme() {
    for (field, value, hidden) in [
        ("api_token", "Sup3rSecretPwd:x", "sup3rsecretpwd"),
        ("pat", "S3NT1NELuser:password", "s3nt1neluser"),
        ("username", "S3NT1NELuser:password", "s3nt1neluser"),
    ] {
        let all = problems(&format!(
            "[confluence.\"https://x.atlassian.net\"]\n{field} = \"{value}\"\n"
        ))
        .join("\n");
        assert!(
            !all.to_ascii_lowercase().contains(hidden),
            "{field}: the part before the colon is echoed: {all}"
        );
        assert!(all.contains(&format!("{field}: not a reference")), "{all}");
    }
    // Built-in schemes without `//` keep working.
    assert!(parse("[confluence.\"https://x.atlassian.net\"]\npat = \"file:rel/pat\"\n").is_ok());
}

/// `Debug` of a parsed config never shows a literal user name.
#[test]
fn debug_of_a_config_hides_literal_values() {
    let sentinel = "lit-S3NT1NEL@example.com";
    let c = parse(&format!(
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"{sentinel}\"\npat = \"env://P\"\n"
    ))
    .unwrap();
    let shown = format!("{c:?} {:?} {:?}", c.instances[0], c.instances[0].fields);
    assert!(!shown.contains("S3NT1NEL"), "{shown}");
    assert!(
        shown.contains("env://P") && shown.contains("REDACTED"),
        "{shown}"
    );
}
