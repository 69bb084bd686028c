//! Exit codes and stdio: the child's code, 125 when a reference fails, stdio passed through,
//! `run` as the default command.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::scripts;
use crate::support::*;
use crate::*;

#[test]
fn exit_codes_follow_the_child() {
    let b = basic("https://company.atlassian.net");
    let t = &b.t;
    let exit42 = t.script("exit42", &scripts::exit_with(42));
    let term_self = t.script("term-self", &scripts::kill_self("TERM"));
    let kill_self = t.script("kill-self", &scripts::kill_self("KILL"));
    let not_executable = t.write_file("bin/not-executable", "#!/bin/sh\nexit 0\n");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();
    let directory = t.path().join("bin");
    let missing = t.path().join("bin/no-such-program");

    let cases: [(&str, &std::ffi::OsStr, i32); 9] = [
        ("true", "true".as_ref(), 0),
        ("false", "false".as_ref(), 1),
        ("exit 42", exit42.as_os_str(), 42),
        ("kill -TERM $$", term_self.as_os_str(), 128 + 15),
        ("kill -KILL $$", kill_self.as_os_str(), 128 + 9),
        ("a file without x bit", not_executable.as_os_str(), 126),
        ("a directory", directory.as_os_str(), 126),
        ("a missing path", missing.as_os_str(), 127),
        (
            "a command not on PATH",
            "cme-exec-test-no-such-command".as_ref(),
            127,
        ),
    ];
    for (what, program, expected) in cases {
        let out = t.run_args(args!["--", program]);
        assert_eq!(
            out.code(),
            Some(expected),
            "child {what}: expected exit code {expected}\n{}",
            out.describe()
        );
        t.assert_clean();
    }
}

/// The child gets cme-exec's stdin, and its stdout and stderr come out as they were.
#[test]
fn stdio_passes_through() {
    let b = basic("https://company.atlassian.net");
    let child = b.t.script(
        "echo",
        "#!/usr/bin/env bash\nread -r line\necho \"out:$line\"\necho \"err:$line\" >&2\n",
    );
    let t = b.t.stdin("hello from stdin\n");
    let out = t.run_args(args!["--", child]);
    out.assert_success()
        .assert_stdout_contains("out:hello from stdin")
        .assert_stderr_contains("err:hello from stdin");
    t.assert_clean();
}

/// A reference that cannot be resolved: exit 125, the child never starts, and the message names
/// every failed reference (not only the first).
#[test]
fn exit_125_when_references_fail_and_the_child_never_starts() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_var = var_name("TOKEN");
    let missing_user = var_name("MISSING_USER");
    let missing_file = t.path().join("secrets/no-such-file");
    let config = format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = {u}\napi_token = {tk}\n\n[jira.\"https://jira.example.com\"]\npat = {p}\n",
        u = q(format!("env://{missing_user}")),
        tk = q(format!("env://{token_var}")),
        p = q(file_ref(&missing_file)),
    );
    let t = t.env(&token_var, &token).config_toml(&config);
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let out = t.run_args(args!["--", child]);
    out.assert_code(125);
    assert!(
        !marker.exists(),
        "the child must not start when a reference fails"
    );
    out.assert_stderr_contains(&missing_user)
        .assert_stderr_contains(&missing_file.display().to_string());
    t.assert_clean();
}

/// `run` is the default command: run options work without it.
#[test]
fn run_is_the_default_command() {
    let b = basic("https://company.atlassian.net");
    let child = b.t.script("dump-env", &scripts::dump_env(&b.t.out_dir()));
    let out = b.t.run_args(args!["--via", "file", "--", child]);
    out.assert_success();
    let env = b.t.child_env();
    assert!(
        env.config_file().is_some(),
        "`--via file` without `run` should hand over a file, got CME_CONFIG_PATH={:?}",
        env.config_path
    );
    b.t.assert_clean();
}
