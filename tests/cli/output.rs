//! What cme-exec itself prints and how it ends when its reader goes away: verbose logs on a
//! terminal, a store that is slow to answer named while it is awaited, retries at `-v`, and a
//! closed stdout (for cme-exec's own output and for a masked child's).

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use crate::support::http::Silent;
use crate::support::launch::{from_terminal, pty_runner};
use crate::support::scripts::{self, sh_quote};
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Logging on a terminal
// ---------------------------------------------------------------------------------------------

/// `-v`, `-vv` and `RUST_LOG=debug` with stderr on a terminal (colour allowed,
/// and with NO_COLOR) never crash: the exit code is the child's, no "internal error", and the log
/// lines carry no escape sequences.
#[test]
fn verbose_logging_on_a_terminal_never_crashes_or_colours_the_log() {
    let (t, _) = pat_test();
    let pty = pty_runner(&t);
    let child = t.script("exit-7", &scripts::exit_with(7));
    for (what, verbose, rust_log, no_color) in [
        ("-v", Some("-v"), None, false),
        ("-vv", Some("-vv"), None, false),
        ("RUST_LOG=debug", None, Some("debug"), false),
        ("RUST_LOG=info", None, Some("info"), false),
        ("-vv with NO_COLOR", Some("-vv"), None, true),
    ] {
        let mut args: Vec<&OsStr> = Vec::new();
        if let Some(v) = verbose {
            args.push(OsStr::new(v));
        }
        args.extend([OsStr::new("run"), OsStr::new("--"), child.as_os_str()]);
        let mut launch = t.launch(args).wrapper([&pty]).env_remove("NO_COLOR");
        if let Some(level) = rust_log {
            launch = launch.env("RUST_LOG", level);
        }
        if no_color {
            launch = launch.env("NO_COLOR", "1");
        }
        let out = launch.run();
        let text = from_terminal(&out.stdout);
        assert_eq!(
            out.code(),
            Some(7),
            "{what}: the child's code\n{}",
            out.describe()
        );
        assert!(
            !text.contains("internal error") && !out.stderr.contains("internal error"),
            "{what}: cme-exec crashed\n{}",
            out.describe()
        );
        assert!(
            text.contains("INFO") || text.contains("DEBUG"),
            "{what}: log lines reach the terminal\n{}",
            out.describe()
        );
        assert!(
            !text.contains('\x1b'),
            "{what}: log lines carry no escape sequences\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A closed stdout
// ---------------------------------------------------------------------------------------------

/// `<tmp>/bin/closed-stdout PROGRAM ARGS...`: runs the program with stdout a pipe whose reader
/// is already gone (as after `| head -1` has exited), and SIGPIPE at its default as a shell
/// leaves it. Every write to stdout then fails with EPIPE, whatever its size or timing.
fn closed_stdout_runner(t: &Test) -> PathBuf {
    let python = Venv::get().python();
    t.script(
        "closed-stdout",
        &format!(
            r#"#!{python}
import os, signal, sys
r, w = os.pipe()
os.close(r)
os.dup2(w, 1)
os.close(w)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])
"#,
            python = python.display()
        ),
    )
}

/// Every command that prints to stdout ends quietly when the reader is gone:
/// the exit code it would have had, nothing on stderr (no "internal error"). `render --output -`
/// is the exception by design: a cut-short config is an error (125), reported, not a crash.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let (t, _) = pat_test();
    let closed = closed_stdout_runner(&t);
    for args in [
        &["completions", "fish"][..],
        &["completions", "bash"],
        &["man"],
        &["check"],
        &["check", "--format", "json"],
        &["explain"],
        &["explain", "--format", "json"],
    ] {
        let out = t.launch(args).wrapper([&closed]).run();
        assert_eq!(out.code(), Some(0), "{args:?}\n{}", out.describe());
        assert!(out.stderr.is_empty(), "{args:?}: quiet\n{}", out.describe());
    }
    let out = t
        .launch(["render", "--output", "-", "--force-stdout"])
        .wrapper([&closed])
        .run();
    out.assert_code(125)
        .assert_stderr_contains("cannot write to stdout");
    assert!(!out.stderr.contains("internal error"), "{}", out.describe());
    t.assert_clean();
}

/// With `--mask`, cme-exec relays the child's output; when the reader of that output goes away
/// (`cme-exec --mask -- cme ... | head`), the child's next write fails as it would without
/// cme-exec, instead of the child writing its whole output into nowhere.
#[test]
fn a_closed_stdout_reaches_a_masked_child() {
    let (t, _) = pat_test();
    let closed = closed_stdout_runner(&t);
    let count = t.out_dir().join("count");
    let child = t.script(
        "writer",
        &format!(
            "#!/usr/bin/env bash\ntrap '' PIPE\nn=0\nwhile [ $n -lt 100000 ] && echo \"line $n\"; do n=$((n+1)); done\necho $n > {}\n",
            sh_quote(&count)
        ),
    );
    let out = t
        .launch([OsStr::new("--mask"), OsStr::new("--"), child.as_os_str()])
        .wrapper([&closed])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let written: u64 = fs::read_to_string(&count)
        .expect("the child records how many lines it wrote")
        .trim()
        .parse()
        .unwrap();
    assert!(
        written < 100_000,
        "the child's writes must fail once cme-exec's reader is gone; it wrote {written} lines\n{}",
        out.describe()
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A slow store
// ---------------------------------------------------------------------------------------------

/// A Vault test whose only store is `address`, with a child that does nothing.
fn waiting_test(address: &str) -> (Test, std::path::PathBuf) {
    let t = Test::new()
        .env("VAULT_ADDR", address)
        .env("VAULT_TOKEN", "hvs.not-a-secret-token")
        .global_arg("--timeout")
        .global_arg("3")
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"vault://secret/app#pat\"\n");
    let child = t.script("true", "#!/bin/sh\nexit 0\n");
    (t, child)
}

/// On a terminal, a store that accepts and never answers is named after about a second: the
/// store, its address, the time waited and the attempt. The lines come before the deadline's
/// error, on cme-exec's own stderr (the child never starts). Not on a pipe: a CI log gets the
/// error only.
#[test]
fn a_slow_store_is_named_on_a_terminal_while_it_is_awaited() {
    let silent = Silent::start();
    let (t, child) = waiting_test(&silent.url());
    let pty = pty_runner(&t);
    let start = Instant::now();
    let out = t
        .launch([std::ffi::OsString::from("--"), child.clone().into()])
        .wrapper([&pty])
        .run();
    let elapsed = start.elapsed();
    out.assert_code(125);
    let screen = from_terminal(&out.stdout);
    let line = screen
        .lines()
        .find(|l| l.starts_with("cme-exec: waiting for "))
        .unwrap_or_else(|| panic!("nothing was shown while waiting\n{}", out.describe()));
    assert!(
        line.contains(&format!("Vault at {}", silent.url())) && line.contains("attempt 1"),
        "the store, its address and the attempt: {line}"
    );
    assert!(line.contains(" s"), "the time waited: {line}");
    let waiting_at = screen.find("waiting for").expect("found above");
    let error_at = screen
        .find("cme-exec: error:")
        .unwrap_or_else(|| panic!("no error after the deadline\n{}", out.describe()));
    assert!(
        waiting_at < error_at,
        "shown while waiting, before the error"
    );
    assert!(
        screen.matches("waiting for").count() <= 2,
        "repeated sparingly (3 s of waiting)\n{screen}"
    );
    assert!(
        elapsed < Duration::from_secs(3) + crate::faults::RUN_MARGIN,
        "{elapsed:?}"
    );

    let out = t.run_args([std::ffi::OsString::from("--"), child.into()]);
    out.assert_code(125);
    assert!(
        !out.stderr.contains("waiting for"),
        "not on a pipe\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// Each retry is logged at `-v` (info), terminal or not: the store, the address, the attempt.
#[test]
fn retries_are_logged_at_verbose() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    let (t, child) = waiting_test(&closed);
    let out = t.run_args([std::ffi::OsString::from("-v"), "--".into(), child.into()]);
    out.assert_code(125);
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("retrying"))
        .collect();
    assert_eq!(
        retries.len(),
        2,
        "three attempts, two retries\n{}",
        out.describe()
    );
    assert!(
        retries[0].contains(&format!("Vault at {closed}")) && retries[0].contains("attempt 1 of 3"),
        "{}",
        retries[0]
    );
    t.assert_clean();

    // The AWS SDK retries on its own: its attempts are logged the same way.
    let t = crate::aws_credentials::aws_words_test(Test::new(), &closed)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret-key");
    let out = t.run_args(["-v", "check"]);
    out.assert_code(1);
    let retry = out
        .stderr
        .lines()
        .find(|l| l.contains("retrying") && l.contains("GetSecretValue"))
        .unwrap_or_else(|| panic!("no AWS retry logged\n{}", out.describe()));
    assert!(
        retry.contains(&format!("AWS Secrets Manager at {closed}"))
            && retry.contains("attempt 1 of 3"),
        "{retry}"
    );
    t.assert_clean();
}
