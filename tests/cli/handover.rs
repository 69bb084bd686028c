//! The hand-over of the config to the child: a memfd by default, `--via file` (private,
//! removed on every exit path, `--dir`, the `/dev/shm` fallback, an unsafe root refused).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::scripts;
use crate::support::scripts::sh_quote;
use crate::support::*;
use crate::*;

/// The descriptors of this test process that a child would inherit (not close-on-exec): what
/// cme-exec inherits from the harness beyond stdio, and so what its child would have without it.
fn inheritable_fds() -> Vec<u32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&fd| {
            let flags = unsafe { nix::libc::fcntl(fd as i32, nix::libc::F_GETFD) };
            flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// The default hand-over is a memfd: `CME_CONFIG_PATH=/proc/self/fd/N`, nothing on any
/// filesystem, and the child inherits no other descriptor beyond stdio.
#[test]
fn memfd_hand_over() {
    let url = "https://company.atlassian.net";
    let Basic { t, user, token, .. } = basic(url);
    let t = t.inherit_extra_fd(9);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let out = t.run_args(args!["--", child]);
    out.assert_success();
    let env = t.child_env();
    let fd = env.config_fd().unwrap_or_else(|| {
        panic!(
            "CME_CONFIG_PATH should be /proc/self/fd/N, got {:?}",
            env.config_path
        )
    });
    let config = env.config_json();
    let entry = confluence_entry(&config, url);
    assert_field(entry, "username", &user, "username reaches the child");
    assert_field(
        entry,
        "api_token",
        &token,
        "api_token reaches the child, without the file's trailing newline",
    );
    // The child's descriptors are what they would be without cme-exec (whatever cme-exec itself
    // inherited, such as the extra fd 9, passes through), plus the config's. The bash script's
    // own descriptor for its source is 255.
    let mut expected = inheritable_fds();
    expected.extend([0, 1, 2, 9, 255, fd]);
    let extra: Vec<_> = env
        .fds
        .iter()
        .filter(|(n, _)| !expected.contains(n))
        .collect();
    assert!(
        extra.is_empty(),
        "the child got descriptors that neither cme-exec's parent passed nor the config is: {extra:?}"
    );
    assert!(
        env.fds.iter().any(|(n, _)| *n == 9),
        "a descriptor cme-exec inherited (9) must pass through to the child: {:?}",
        env.fds
    );
    t.assert_clean();
}

/// `--via file`: a 0600 file in a fresh 0700 directory under XDG_RUNTIME_DIR, removed after a
/// normal exit, a child failure, the child's death by a signal and a SIGTERM to cme-exec, and
/// never made when resolution fails.
#[test]
fn via_file_is_private_and_removed_on_every_exit_path() {
    let url = "https://company.atlassian.net";
    let Basic {
        t, token, user_var, ..
    } = basic(url);
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));

    // Normal exit.
    let out = t.run_args(args!["run", "--via", "file", "--", child]);
    out.assert_success();
    let env = t.child_env();
    let file = env
        .config_file()
        .unwrap_or_else(|| panic!("expected a file path, got {:?}", env.config_path));
    assert!(
        file.starts_with(t.runtime_dir()),
        "the config file should be under XDG_RUNTIME_DIR, got {}",
        file.display()
    );
    assert_ne!(
        file.parent(),
        Some(t.runtime_dir().as_path()),
        "the config file should be in a fresh directory of its own"
    );
    assert_eq!(env.config_mode.as_deref(), Some("600"), "config file mode");
    assert_eq!(
        env.config_dir_mode.as_deref(),
        Some("700"),
        "config directory mode"
    );
    let config = env.config_json();
    assert_field(
        confluence_entry(&config, url),
        "api_token",
        &token,
        "the --via file config",
    );
    assert!(
        !file.exists(),
        "the config file must be removed after the run"
    );
    t.assert_clean();

    // The child fails.
    let exit42 = t.script("exit42", &scripts::exit_with(42));
    t.run_args(args!["run", "--via", "file", "--", exit42])
        .assert_code(42);
    t.assert_clean();

    // The child dies by a signal.
    let kill_self = t.script("kill-self", &scripts::kill_self("KILL"));
    t.run_args(args!["run", "--via", "file", "--", kill_self])
        .assert_code(128 + 9);
    t.assert_clean();

    // cme-exec gets SIGTERM while the child runs.
    let record = t.out_dir().join("terms");
    let term_once = t.script("term-once", &scripts::term_once(&record));
    let mut running = t.spawn_args(args!["run", "--via", "file", "--", term_once]);
    running.wait_for_line("ready", Duration::from_secs(30));
    assert!(
        fs::read_dir(t.runtime_dir()).unwrap().next().is_some(),
        "the private directory should exist while the child runs"
    );
    running.signal(Signal::SIGTERM);
    running.wait().assert_success();
    t.assert_clean();

    // Resolution fails: nothing is made, the child never runs.
    let t = t.env_remove(&user_var);
    let out = t.run_args(args!["run", "--via", "file", "--", child]);
    out.assert_code(125);
    t.assert_clean();
}

/// `--dir DIR` puts the private directory under DIR; without XDG_RUNTIME_DIR the file goes to
/// /dev/shm; both are removed afterwards.
#[test]
fn via_file_honours_dir_and_falls_back_to_dev_shm() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let custom = b.t.path().join("custom");
    fs::create_dir(&custom).unwrap();
    fs::set_permissions(&custom, fs::Permissions::from_mode(0o700)).unwrap();
    let child = b.t.script("dump-env", &scripts::dump_env(&b.t.out_dir()));
    b.t.run_args(args!["run", "--via", "file", "--dir", custom, "--", child,])
        .assert_success();
    let file = b.t.child_env().config_file().expect("a config file path");
    assert!(
        file.starts_with(&custom),
        "--dir should be used, got {}",
        file.display()
    );
    assert_dir_empty(&custom);
    b.t.assert_clean();

    // Fails, never skips, without /dev/shm: a skipped test would pass without running.
    assert!(
        Path::new("/dev/shm").is_dir(),
        "the /dev/shm part cannot run: this system has no /dev/shm.\nTo fix: mount a tmpfs there \
         (`mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm`), or run the tests \
         where /dev/shm exists (every Linux distribution and CI image has it)"
    );
    let b = basic(url);
    let t = b.t.env_remove("XDG_RUNTIME_DIR").uses_dev_shm();
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    t.run_args(args!["run", "--via", "file", "--", child])
        .assert_success();
    let file = t.child_env().config_file().expect("a config file path");
    assert!(
        file.starts_with("/dev/shm/"),
        "without XDG_RUNTIME_DIR the file should be under /dev/shm, got {}",
        file.display()
    );
    assert!(
        !file.parent().unwrap().exists(),
        "the private directory {} must be removed",
        file.parent().unwrap().display()
    );
    t.assert_clean();
}

/// `--via file` refuses a root others can write to without the sticky bit (another user could
/// swap the private directory for one of theirs), and accepts a sticky one like `/tmp`.
#[test]
fn via_file_refuses_a_root_others_can_write() {
    let url = "https://company.atlassian.net";
    let b = basic(url);
    let marker = b.t.out_dir().join("child-ran");
    let child = b.t.script("touch", &scripts::touch(&marker));
    let open = b.t.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let out =
        b.t.run_args(args!["run", "--via", "file", "--dir", &open, "--", &child]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    out.assert_stderr_contains("no sticky bit");
    assert!(!marker.exists(), "the child must not start");
    assert_dir_empty(&open);

    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    b.t.run_args(args!["run", "--via", "file", "--dir", &open, "--", &child])
        .assert_success();
    assert!(marker.exists());
    assert_dir_empty(&open);
    b.t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Paths handed over are absolute
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

/// `--via file --dir REL` (relative to the working directory) and `--via env`
/// with a relative `CME_CONFIG_PATH` base config hand over an absolute path: a child that
/// changes directory still reads its config.
#[test]
fn a_relative_dir_gives_an_absolute_config_path() {
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
// render's file mode and directories
// ---------------------------------------------------------------------------------------------

/// `render --mode 0644` writes the file as asked but warns that every user can
/// read it; `--mode 0640` (group-readable, the documented sharing mode) and the default do not.
#[test]
fn render_warns_when_others_can_read() {
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

/// `render` into a directory that does not exist creates it (0700) and says so on stderr.
#[test]
fn render_says_which_directories_it_created() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let var = var_name("PAT");
    let t = t.env(&var, &pat).config_toml(&format!(
        "[jira.\"https://jira.example.com\"]\npat = \"env://{var}\"\n"
    ));
    let output = t.out_dir().join("new").join("deeper").join("app_data.json");
    let out = t.run_args([
        std::ffi::OsString::from("render"),
        "--output".into(),
        output.clone().into(),
    ]);
    out.assert_success();
    assert!(output.is_file());
    let created = [t.out_dir().join("new"), t.out_dir().join("new/deeper")];
    for dir in &created {
        assert_eq!(mode_of(dir) & 0o777, 0o700, "{}", dir.display());
        out.assert_stderr_contains(&dir.display().to_string());
    }
    out.assert_stderr_contains("created the directories");

    // Into an existing directory: nothing to say.
    let out = t.run_args([
        std::ffi::OsString::from("render"),
        "--output".into(),
        output.into(),
    ]);
    out.assert_success();
    assert!(!out.stderr.contains("created"), "{}", out.describe());
    t.assert_clean();
}
