//! The child's environment: credentials dropped, `CME_NON_INTERACTIVE`, `--empty-env`, and
//! logging that never shows a value.

use crate::support::scripts;
use crate::*;

#[test]
fn child_environment_drops_credentials_and_sets_non_interactive() {
    let b = basic("https://company.atlassian.net");
    let t =
        b.t.env("CME_TEST_UNRELATED", "kept")
            .env("CME_AUTH", r#"{"confluence":{}}"#)
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "not-a-secret-here")
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", "https://token.example/?x=1");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args!["--", child]).assert_success();
    let env = t.child_env();
    t.assert_no_leaks_in("the child's environment", &env.raw_env);
    assert_eq!(
        env.var(&b.user_var),
        None,
        "a variable read by env:// is removed"
    );
    assert_eq!(env.var("CME_NON_INTERACTIVE"), Some("1"));
    assert_eq!(
        env.var("CME_TEST_UNRELATED"),
        Some("kept"),
        "the rest of the environment is kept"
    );
    assert_eq!(
        env.var("CME_AUTH"),
        None,
        "an inherited CME_AUTH would override the hand-over"
    );
    assert!(env.var("CME_CONFIG_PATH").is_some());
    for name in [
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    ] {
        assert_eq!(
            env.var(name),
            None,
            "{name} lets any process of a CI job mint OIDC tokens; cme never needs it"
        );
    }
    t.assert_clean();

    // --keep-env keeps a variable that an env:// reference read.
    let out = t.run_args(args!["run", "--keep-env", b.user_var, "--", child,]);
    out.assert_success();
    assert_secret(
        t.child_env().var(&b.user_var),
        &b.user,
        &format!("--keep-env {} should keep it", b.user_var),
    );
    t.assert_clean();
}

/// `--empty-env` starts the child from an empty environment (plus the hand-over and the kept
/// variables).
#[test]
fn empty_env_starts_from_nothing() {
    let b = basic("https://company.atlassian.net");
    let t = b.t.env("CME_TEST_UNRELATED", "x").env("CME_TEST_KEPT", "y");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args![
        "run",
        "--empty-env",
        "--keep-env",
        "CME_TEST_KEPT",
        "--",
        child,
    ])
    .assert_success();
    let env = t.child_env();
    assert_eq!(env.var("CME_TEST_KEPT"), Some("y"));
    assert_eq!(env.var("CME_NON_INTERACTIVE"), Some("1"));
    // bash itself exports PWD, SHLVL and _; PATH may be kept so that the command can be found.
    let unexpected: Vec<&str> = env
        .names()
        .into_iter()
        .filter(|n| {
            ![
                "CME_CONFIG_PATH",
                "CME_NON_INTERACTIVE",
                "CME_TEST_KEPT",
                "PATH",
                "PWD",
                "OLDPWD",
                "SHLVL",
                "_",
            ]
            .contains(n)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "--empty-env leaked variables: {unexpected:?}"
    );
    t.assert_clean();
}

/// `-vvv` and `RUST_LOG=trace` print no secret (the harness checks stderr).
#[test]
fn verbose_logging_shows_no_values() {
    let b = basic("https://company.atlassian.net");
    let t = b.t.global_arg("-vvv").env("RUST_LOG", "trace");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    for via in ["memfd", "file", "env"] {
        t.run_args(args!["run", "--via", via, "--", child])
            .assert_success();
    }
    t.run_args(["check"]).assert_success();
    t.run_args(["explain"]).assert_success();
    t.assert_clean();
}
