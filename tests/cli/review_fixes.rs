//! Regression tests for the outside review (issue 9): each test names its item.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::support::launch::{from_terminal, pty_runner};
use crate::support::scripts::{self, sh_quote};
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

// ---------------------------------------------------------------------------------------------
// Item 17: CME_CONFIG_PATH is absolute
// ---------------------------------------------------------------------------------------------

/// A child that changes directory, then checks that `CME_CONFIG_PATH` is absolute and names a
/// readable file holding `auth` (without printing it); records `ok` in `out/config-after-cd`.
fn cd_then_read_child(t: &Test) -> (PathBuf, PathBuf) {
    let record = t.out_dir().join("config-after-cd");
    let child = t.script(
        "cd-then-read",
        &format!(
            r#"#!/bin/sh
cd / || exit 90
case "$CME_CONFIG_PATH" in
  /*) ;;
  *) echo "relative CME_CONFIG_PATH" > {record}; exit 91 ;;
esac
grep -q '"auth"' "$CME_CONFIG_PATH" || {{ echo "unreadable after cd" > {record}; exit 92; }}
echo ok > {record}
"#,
            record = sh_quote(&record)
        ),
    );
    (record, child)
}

/// Issue 9 item 17: `--via file --dir REL` (relative to the working directory) and `--via env`
/// with a relative `CME_CONFIG_PATH` base config hand over an absolute path: a child that
/// changes directory still reads its config.
#[test]
fn issue_9_17_a_relative_dir_gives_an_absolute_config_path() {
    let (t, _) = pat_test();
    let (record, child) = cd_then_read_child(&t);
    let rel = t.work_dir().join("rt");
    fs::create_dir(&rel).unwrap();
    fs::set_permissions(&rel, fs::Permissions::from_mode(0o700)).unwrap();
    let out = t.run_args([
        OsStr::new("run"),
        OsStr::new("--via"),
        OsStr::new("file"),
        OsStr::new("--dir"),
        OsStr::new("rt"),
        OsStr::new("--"),
        child.as_os_str(),
    ]);
    let said = fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(said.trim(), "ok", "--dir rt\n{}", out.describe());
    out.assert_success();
    assert_dir_empty(&rel);

    // --via env: CME_CONFIG_PATH is the base config, here given relative to the working dir.
    fs::remove_file(&record).unwrap();
    t.write_file("work/base.json", "{\"auth\": {}}\n");
    let out = t
        .launch([
            OsStr::new("run"),
            OsStr::new("--via"),
            OsStr::new("env"),
            OsStr::new("--"),
            child.as_os_str(),
        ])
        .env("CME_CONFIG_PATH", "base.json")
        .run();
    let said = fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(said.trim(), "ok", "--via env\n{}", out.describe());
    out.assert_success();
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Item 18: render --mode that others can read
// ---------------------------------------------------------------------------------------------

/// Issue 9 item 18: `render --mode 0644` writes the file as asked but warns that every user can
/// read it; `--mode 0640` (group-readable, the documented sharing mode) and the default do not.
#[test]
fn issue_9_18_render_warns_when_others_can_read() {
    let (t, _) = pat_test();
    let output = t.out_dir().join("app_data.json");
    let out = t.run_args([
        OsStr::new("render"),
        OsStr::new("--output"),
        output.as_os_str(),
        OsStr::new("--mode"),
        OsStr::new("0644"),
    ]);
    out.assert_success()
        .assert_stderr_contains("warning")
        .assert_stderr_contains("readable by every user")
        .assert_stderr_contains(&output.display().to_string());
    assert_eq!(mode_of(&output), 0o644, "the mode asked for");
    for mode in [None, Some("0640")] {
        let mut args = vec![
            OsStr::new("render"),
            OsStr::new("--output"),
            output.as_os_str(),
        ];
        if let Some(m) = mode {
            args.extend([OsStr::new("--mode"), OsStr::new(m)]);
        }
        let out = t.run_args(args);
        out.assert_success();
        assert!(
            !out.stderr.contains("warning"),
            "--mode {mode:?}: no warning\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Item 16: control characters in values
// ---------------------------------------------------------------------------------------------

/// A field whose reference resolves to an unusable value (empty, or holding a control
/// character) is reported once, as FAILED: never first as `ok` and then again as failed.
#[test]
fn check_reports_an_unusable_value_once() {
    let mut t = Test::new();
    let token = t.sentinel("token");
    let token_file = t.secret_file("token", format!("{token}\x07bell"));
    let t = t.env("CME_TEST_USER", "").config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_USER\"\n\
         api_token = \"file://{}\"\n",
        token_file.display()
    ));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    for field in ["username", "api_token"] {
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("] {field} ")))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{field} is reported once\n{}",
            out.describe()
        );
        assert!(lines[0].contains("FAILED"), "{}", out.describe());
    }
    assert!(out.stdout.contains("2 of 2 failed"), "{}", out.describe());
}

/// Issue 9 item 16: a value with NUL (from a file) or ESC (from a variable) is refused by `run`
/// (125, no child), `render` (125, nothing written), `check` and `explain` (1), each naming the
/// field and never showing the value. A value with tab and a CRLF ending still resolves.
#[test]
fn issue_9_16_control_characters_in_values_are_refused() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let nul_token = format!("{token}\0tail");
    let token_file = t.secret_file("token", nul_token.as_bytes());
    let esc_user = format!("{user}\x1b[2J");
    let t = t.env("CME_TEST_USER", &esc_user).config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"env://CME_TEST_USER\"\n\
         api_token = \"file://{}\"\n",
        token_file.display()
    ));
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let output = t.out_dir().join("app_data.json");
    let runs: [(Vec<&OsStr>, i32); 4] = [
        (
            vec![OsStr::new("run"), OsStr::new("--"), child.as_os_str()],
            125,
        ),
        (
            vec![
                OsStr::new("render"),
                OsStr::new("--output"),
                output.as_os_str(),
            ],
            125,
        ),
        (vec![OsStr::new("check")], 1),
        (vec![OsStr::new("explain")], 1),
    ];
    for (args, code) in runs {
        let out = t.run_args(&args);
        out.assert_code(code);
        let text = format!("{}{}", out.stdout, out.stderr);
        // The reason is told once, with the fields it concerns under it (or on the same line).
        assert!(
            text.contains("control character"),
            "{args:?}: the reason is given\n{}",
            out.describe()
        );
        for field in ["username", "api_token"] {
            assert!(
                text.lines().any(|l| l.contains(&format!("] {field}"))),
                "{args:?}: {field} is named with the reason\n{}",
                out.describe()
            );
        }
        assert!(!text.contains("tail"), "{args:?}: no part of the value");
        assert!(!text.contains('\x1b'), "{args:?}: no escape sequence");
    }
    assert!(!marker.exists(), "the child must not start");
    assert!(!output.exists(), "render writes nothing");

    // Tab and a CRLF line ending are fine.
    fs::write(&token_file, format!("{token}\tx\r\n")).unwrap();
    let t = t.env("CME_TEST_USER", format!("{user}\r"));
    t.run_args(["check"]).assert_success();
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Items 11 and 15: the file provider's directories and file types
// ---------------------------------------------------------------------------------------------

/// The layout kubelet's atomic writer (kubernetes pkg/volume/util/atomic_writer.go) gives a
/// Secret volume: the files (0644) in `..2026_11_30_05_33_52.123456789/` (0755), `..data` linking
/// to it, `KEY -> ..data/KEY` for each key, and the volume root `drwxrwxrwt` (kubernetes#125876).
fn kubelet_volume(root: &Path, files: &[(&str, &str)]) {
    let ts = "..2026_11_30_05_33_52.123456789";
    fs::create_dir_all(root.join(ts)).unwrap();
    fs::set_permissions(root.join(ts), fs::Permissions::from_mode(0o755)).unwrap();
    for (key, value) in files {
        let f = root.join(ts).join(key);
        fs::write(&f, value).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), root.join(key)).unwrap();
    }
    std::os::unix::fs::symlink(ts, root.join("..data")).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o1777)).unwrap();
}

/// `chown UID:UID path` (not following a link); these tests run as root, as CI does.
#[track_caller]
fn chown_to(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap_or_else(|e| {
        panic!(
            "cannot chown {} to uid {uid}: {e}. This test plays another user's files and needs \
             root: run the tests as root (CI does)",
            path.display()
        )
    });
}

/// A Test whose Confluence instance takes everything `from` a file reference.
fn from_test(vol: impl FnOnce(&Test) -> PathBuf) -> (Test, PathBuf) {
    let t = Test::new();
    let path = vol(&t);
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nfrom = \"file://{}\"\n",
        path.display()
    ));
    (t, path)
}

/// Issue 9 item 11: a Kubernetes Secret volume as kubelet writes it (sticky root-owned root,
/// `..data` and per-key links) is read as a directory by `check` and `render`.
#[test]
fn issue_9_11_a_kubernetes_secret_volume_is_read() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let vol = t.path().join("secrets/cme");
    kubelet_volume(
        &vol,
        &[("username", &format!("{user}\n")), ("api_token", &token)],
    );
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nfrom = \"file://{}\"\n",
        vol.display()
    ));
    let out = t.run_args(["check"]);
    out.assert_success();
    let output = t.out_dir().join("app_data.json");
    t.run_args([
        OsStr::new("render"),
        OsStr::new("--output"),
        output.as_os_str(),
    ])
    .assert_success();
    let config: serde_json::Value = serde_json::from_slice(&fs::read(&output).unwrap()).unwrap();
    let entry = &config["auth"]["confluence"]["https://company.atlassian.net"];
    assert!(entry["username"] == *user, "username from the volume");
    assert!(entry["api_token"] == *token, "api_token from the volume");
    assert_eq!(mode_of(&vol), 0o1777, "the volume is left as it was");
    t.assert_clean();
}

/// Issue 9 item 11, what stays refused: a world-writable directory without the sticky bit; a
/// sticky one that belongs to another user; a name another user added to a sticky volume; a key
/// linking outside the volume. Each names the directory or key and never a value.
#[test]
fn issue_9_11_unsafe_secret_directories_stay_refused() {
    type Spoil = fn(&Path, &Path);
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "no sticky bit",
            |vol, _| fs::set_permissions(vol, fs::Permissions::from_mode(0o777)).unwrap(),
            "no sticky bit",
        ),
        (
            "sticky, another user's",
            |vol, _| chown_to(vol, 65534),
            "belongs to another user",
        ),
        (
            "a name planted by another user",
            |vol, _| {
                let planted = vol.join("pat");
                fs::write(&planted, "planted").unwrap();
                chown_to(&planted, 65534);
            },
            "belongs to another user",
        ),
        (
            "a key linking outside",
            |vol, outside| std::os::unix::fs::symlink(outside, vol.join("pat")).unwrap(),
            "leads outside",
        ),
    ];
    for (what, spoil, reason) in cases {
        let (t, vol) = from_test(|t| {
            let vol = t.path().join("secrets/cme");
            kubelet_volume(&vol, &[("username", "someone"), ("api_token", "x-token")]);
            let outside = t.secret_file("outside", "x");
            spoil(&vol, &outside);
            vol
        });
        let out = t.run_args(["check"]);
        out.assert_code(1);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(reason) && text.contains(&vol.display().to_string()),
            "{what}: refused with {reason:?}, naming the volume\n{}",
            out.describe()
        );
        assert!(
            !text.contains("x-token") && !text.contains("planted"),
            "{what}: no value"
        );
    }
}

/// Issue 9 item 15: a device is refused as not a regular file, never with a hint to chmod it;
/// a world-writable file that is not the user's own gets no chmod hint either; the user's own
/// world-writable file does.
#[test]
fn issue_9_15_file_type_first_and_no_chmod_hint_for_what_is_not_yours() {
    for device in ["/dev/zero", "/dev/null"] {
        let t = Test::new().config_toml(&format!(
            "[jira.\"https://jira.example.com\"]\npat = \"file://{device}\"\n"
        ));
        let out = t.run_args(["check"]);
        out.assert_code(1)
            .assert_stdout_contains("not a regular file");
        assert!(
            !out.stdout.contains("chmod") && !out.stderr.contains("chmod"),
            "{device}\n{}",
            out.describe()
        );
    }
    for (owner, hint) in [(None, true), (Some(65534), false)] {
        let t = Test::new();
        let file = t.secret_file("pat", "a-pat-value");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        if let Some(uid) = owner {
            chown_to(&file, uid);
        }
        let t = t.config_toml(&format!(
            "[jira.\"https://jira.example.com\"]\npat = \"file://{}\"\n",
            file.display()
        ));
        let out = t.run_args(["check"]);
        out.assert_code(1)
            .assert_stdout_contains("writable by other users");
        assert_eq!(
            format!("{}{}", out.stdout, out.stderr).contains("chmod o-w"),
            hint,
            "owner {owner:?}\n{}",
            out.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 13: a closed stdout, and the man pages
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

/// Issue 9 item 13: every command that prints to stdout ends quietly when the reader is gone:
/// the exit code it would have had, nothing on stderr (no "internal error"). `render --output -`
/// is the exception by design: a cut-short config is an error (125), reported, not a crash.
#[test]
fn issue_9_13_a_closed_stdout_is_not_a_crash() {
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

/// Issue 9 item 13: `man` has ENVIRONMENT, EXIT STATUS and run's options; every subcommand page
/// it refers to is written by `man --dir DIR`, each with the same sections.
#[test]
fn issue_9_13_man_pages_are_complete() {
    let t = Test::new();
    let out = t.run_args(["man"]);
    out.assert_success();
    let main = out.stdout.clone();
    for needle in [
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        ".SH \"RUN OPTIONS\"",
        "\\-\\-via",
        "CME_EXEC_CONFIG",
        "101",
    ] {
        assert!(main.contains(needle), "cme-exec.1 has {needle:?}");
    }
    let dir = t.out_dir().join("man1");
    fs::create_dir(&dir).unwrap();
    let out = t.run_args([OsStr::new("man"), OsStr::new("--dir"), dir.as_os_str()]);
    out.assert_success();
    assert_eq!(
        fs::read_to_string(dir.join("cme-exec.1")).unwrap(),
        main,
        "--dir writes the same cme-exec.1"
    );
    // Every `cme-exec-NAME(1)` the main page names has its file.
    let mut referenced = Vec::new();
    for (i, _) in main.match_indices("cme\\-exec\\-") {
        let rest = &main[i + "cme\\-exec\\-".len()..];
        if let Some(end) = rest.find("(1)") {
            let name = &rest[..end];
            if name.chars().all(|c| c.is_ascii_lowercase()) {
                referenced.push(format!("cme-exec-{name}.1"));
            }
        }
    }
    referenced.sort();
    referenced.dedup();
    assert!(
        referenced.len() >= 6,
        "the subcommands are listed: {referenced:?}"
    );
    for page in &referenced {
        let text = fs::read_to_string(dir.join(page))
            .unwrap_or_else(|e| panic!("{page} is referenced but not written: {e}"));
        assert!(
            text.contains(".SH ENVIRONMENT") && text.contains(".SH \"EXIT STATUS\""),
            "{page} has ENVIRONMENT and EXIT STATUS"
        );
    }
    let run = fs::read_to_string(dir.join("cme-exec-run.1")).unwrap();
    assert!(
        run.contains("\\-\\-grace"),
        "cme-exec-run.1 has run's options"
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Item 25: no test skips
// ---------------------------------------------------------------------------------------------

/// Issue 9 item 25: the support code's way out for a test that needs namespaces the machine
/// lacks fails the test, with the reason and the fix (it used to print "SKIPPED" and pass).
#[test]
fn issue_9_25_a_test_that_cannot_run_fails_with_the_reason() {
    let outcome = std::panic::catch_unwind(|| {
        crate::support::launch::cannot_run("some::test", "`unshare -m sh -c ...` failed: EPERM")
    });
    let payload = outcome.expect_err("a test that cannot run must fail");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    for needle in ["some::test", "EPERM", "To fix", "root"] {
        assert!(message.contains(needle), "{needle:?} in {message:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 26: cme-exec is not dumpable
// ---------------------------------------------------------------------------------------------

/// Runs `<tmp>/bin/proc-probe PID` as `uid` (and the same gid, no groups) and returns what it
/// could do with `/proc/PID`: `environ=read|refused`, `mem=read|refused`, `fd=listed|refused`.
/// `mem` is read at the first mapping `maps` names; when `maps` is unreadable the probe still
/// tries to open `mem`, and an open that works counts as read.
fn probe_proc_as(t: &Test, uid: u32, pid: i32) -> String {
    let probe = t.script(
        "proc-probe",
        r#"#!/bin/sh
pid=$1
if cat /proc/$pid/environ >/dev/null 2>&1; then echo environ=read; else echo environ=refused; fi
start=$(head -n 1 /proc/$pid/maps 2>/dev/null | cut -d- -f1)
if [ -n "$start" ]; then
  if dd if=/proc/$pid/mem of=/dev/null bs=16 count=1 skip=$((0x$start)) iflag=skip_bytes 2>/dev/null; then
    echo mem=read
  else
    echo mem=refused
  fi
elif (exec 3</proc/$pid/mem) 2>/dev/null; then
  echo mem=read
else
  echo mem=refused
fi
if ls /proc/$pid/fd >/dev/null 2>&1 || readlink /proc/$pid/fd/0 >/dev/null 2>&1; then
  echo fd=listed
else
  echo fd=refused
fi
"#,
    );
    let out = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ])
        .arg(&probe)
        .arg(pid.to_string())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run setpriv: {e}. To fix: install util-linux (setpriv), run as root")
        });
    assert!(
        out.status.success(),
        "the probe as uid {uid} failed: {}. To fix: run the tests as root (CI does), with \
         util-linux's setpriv",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', " ")
}

/// Issue 9 item 26: cme-exec, holding secrets, is not dumpable (PR_SET_DUMPABLE 0), so its
/// /proc files belong to root: neither the same non-root user nor another can read its
/// `environ` or `mem` or list its `fd`. The child (dumpable, as cme would be) is readable by its
/// own user with the same probe, which shows the probe can see.
#[test]
fn issue_9_26_cme_exec_is_not_dumpable_by_other_processes() {
    const USER: u32 = 65534;
    const OTHER: u32 = 65533;
    let (t, _) = pat_test();
    assert!(
        crate::support::launch::is_root(),
        "this test plays two non-root users with setpriv and needs root. To fix: run the tests \
         as root (CI does)"
    );
    // Everything the run as USER needs: the test directory traversable, its config readable,
    // somewhere to record pids.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for dir in ["work", "out", "run", "tmp", "config"] {
        chown_to(&t.path().join(dir), USER);
    }
    chown_to(&t.config_path(), USER);
    let pids = t.out_dir().join("pids");
    let release = t.out_dir().join("release");
    let child = t.script(
        "wait-child",
        &format!(
            r#"#!/bin/sh
echo "$$ $PPID" > {pids}
echo ready
while [ ! -e {release} ]; do sleep 0.02; done
"#,
            pids = sh_quote(&pids),
            release = sh_quote(&release)
        ),
    );
    let mut running = t
        .launch([
            OsStr::new("run"),
            OsStr::new("--no-mask"),
            OsStr::new("--"),
            child.as_os_str(),
        ])
        .wrapper([
            "setpriv".to_owned(),
            format!("--reuid={USER}"),
            format!("--regid={USER}"),
            "--clear-groups".into(),
        ])
        .spawn();
    running.wait_for_line("ready", std::time::Duration::from_secs(30));
    let text = fs::read_to_string(&pids).unwrap();
    let (child_pid, cme_exec_pid) = text
        .trim()
        .split_once(' ')
        .map(|(c, p)| (c.parse::<i32>().unwrap(), p.parse::<i32>().unwrap()))
        .unwrap();
    assert_eq!(
        cme_exec_pid,
        running.pid(),
        "the child's parent is cme-exec"
    );
    let owner = fs::metadata(format!("/proc/{cme_exec_pid}/environ"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();

    let child_seen = probe_proc_as(&t, USER, child_pid);
    let same_user = probe_proc_as(&t, USER, cme_exec_pid);
    let other_user = probe_proc_as(&t, OTHER, cme_exec_pid);
    fs::write(&release, "").unwrap();
    let out = running.wait();
    out.assert_success();

    assert_eq!(
        child_seen, "environ=read mem=read fd=listed",
        "the probe sees a dumpable process of its own user"
    );
    assert_eq!(owner, 0, "cme-exec's /proc files belong to root");
    assert_eq!(
        same_user, "environ=refused mem=refused fd=refused",
        "cme-exec's own user (another process of uid {USER})"
    );
    assert_eq!(
        other_user, "environ=refused mem=refused fd=refused",
        "another user (uid {OTHER})"
    );
    t.assert_clean();
}
