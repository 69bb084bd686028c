//! Regression tests for the outside review (issue 9): each test names its item.

use std::ffi::OsStr;

use crate::support::launch::{from_terminal, pty_runner};
use crate::support::scripts;
use crate::support::*;

/// A Test with one Jira instance whose PAT comes from a variable.
fn pat_test() -> (Test, String) {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = t
        .env("CME_TEST_PAT", &pat)
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_PAT\"\n");
    (t, pat)
}

// ---------------------------------------------------------------------------------------------
// Item 10: logging on a terminal
// ---------------------------------------------------------------------------------------------

/// Issue 9 item 10: `-v`, `-vv` and `RUST_LOG=debug` with stderr on a terminal (colour allowed,
/// and with NO_COLOR) never crash: the exit code is the child's, no "internal error", and the log
/// lines carry no escape sequences.
#[test]
fn issue_9_10_verbose_logging_on_a_terminal() {
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
