//! Signals sent to cme-exec while the child runs: forwarded once, the grace period and the
//! group kill, and what a SIGKILLed cme-exec leaves for the next run to sweep. (More in
//! `processes.rs` and `job_control.rs`.)

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::scripts;
use crate::support::*;
use crate::*;

/// SIGTERM to cme-exec reaches the child exactly once; cme-exec exits with the child's status.
/// While it runs, cme-exec's argv holds no secret (its environment does, by the test's choice:
/// the env:// variable was given to it).
#[test]
fn sigterm_is_forwarded_once() {
    let b = basic("https://company.atlassian.net");
    let record = b.t.out_dir().join("terms");
    let child = b.t.script("term-once", &scripts::term_once(&record));
    let t = b.t.args(args!["--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));

    let pid = running.pid();
    // Unreadable (a non-dumpable process, for a non-root user) counts as no leak.
    if let Ok(bytes) = fs::read(format!("/proc/{pid}/cmdline")) {
        t.assert_no_leaks_in("cme-exec's /proc/PID/cmdline", &bytes);
    }

    running.signal(Signal::SIGTERM);
    let out = running.wait();
    out.assert_success();
    let terms = fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(
        terms.lines().filter(|l| *l == "got TERM").count(),
        1,
        "the child should get SIGTERM exactly once\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// A child that ignores SIGTERM, with a grandchild: after `--grace 1` cme-exec SIGKILLs the
/// child's whole process group and exits 128+9.
#[test]
fn child_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    let b = basic("https://company.atlassian.net");
    let child_pid_file = b.t.out_dir().join("child.pid");
    let grandchild_pid_file = b.t.out_dir().join("grandchild.pid");
    let child = b.t.script(
        "stubborn",
        &scripts::ignore_term_with_grandchild(&child_pid_file, &grandchild_pid_file),
    );
    let t = b.t.args(args!["run", "--grace", "1", "--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));
    let read_pid = |path: &Path| -> i32 {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .parse()
            .expect("a pid")
    };
    let child_pid = read_pid(&child_pid_file);
    let grandchild_pid = read_pid(&grandchild_pid_file);
    let _reaper = KillOnDrop(vec![child_pid, grandchild_pid]);

    // The child's environment holds no secret either (the env:// variable was removed).
    if let Ok(bytes) = fs::read(format!("/proc/{child_pid}/environ")) {
        t.assert_no_leaks_in("the child's /proc/PID/environ", &bytes);
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&format!("{}=", b.user_var)),
            "the variable read by env:// should not reach the child"
        );
    }

    running.signal(Signal::SIGTERM);
    let out = running.wait_timeout(Duration::from_secs(30));
    out.assert_code(128 + 9);
    for (what, pid) in [("child", child_pid), ("grandchild", grandchild_pid)] {
        wait_until(
            &format!("the {what} (pid {pid}) is gone"),
            Duration::from_secs(10),
            || process_gone(pid),
        );
    }
    t.assert_clean();
}

/// SIGHUP, SIGUSR1 and SIGUSR2 are forwarded too, each once and in order.
#[test]
fn other_signals_are_forwarded_once_each() {
    let b = basic("https://company.atlassian.net");
    let record = b.t.out_dir().join("signals");
    let child = b.t.script("record", &scripts::record_signals(&record));
    let t = b.t.args(args!["--", child]);
    let mut running = t.spawn();
    running.wait_for_line("ready", Duration::from_secs(30));
    let lines = || -> Vec<String> {
        fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut expected: Vec<String> = Vec::new();
    for (signal, name) in [
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        running.signal(signal);
        expected.push(name.to_owned());
        let n = expected.len();
        wait_until(
            &format!("the child recorded {name}"),
            Duration::from_secs(10),
            || lines().len() >= n,
        );
    }
    running.signal(Signal::SIGTERM);
    expected.push("TERM".to_owned());
    let out = running.wait();
    out.assert_success();
    assert_eq!(
        lines(),
        expected,
        "each signal once, in order\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// A cme-exec killed with SIGKILL cannot remove its `--via file` directory; the next cme-exec
/// that starts sweeps it once its owner is gone.
#[test]
fn directories_left_by_a_killed_cme_exec_are_swept_later() {
    let b = basic("https://company.atlassian.net");
    let t = &b.t;
    let pid_file = t.out_dir().join("child.pid");
    let release = t.out_dir().join("release");
    let child = t.script("wait", &scripts::wait_for_release(&pid_file, &release));
    let mut running = t.spawn_args(args!["run", "--via", "file", "--", child]);
    running.wait_for_line("ready", Duration::from_secs(30));
    let child_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _reaper = KillOnDrop(vec![child_pid]);
    running.signal(Signal::SIGKILL);
    // Let the orphaned child go now, so that the pipes it shares close.
    fs::write(&release, "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), None, "cme-exec was killed\n{}", out.describe());
    wait_until("the orphaned child exits", Duration::from_secs(10), || {
        process_gone(child_pid)
    });
    assert!(
        fs::read_dir(t.runtime_dir()).unwrap().next().is_some(),
        "a SIGKILLed cme-exec leaves its private directory (if this fails, the test needs updating)"
    );

    // A directory is swept only when unlocked and old enough that its owner cannot be between
    // making and locking it (10 s in src/handover/private_dir.rs): start runs until one has.
    let exit0 = t.script("exit0", &scripts::exit_with(0));
    wait_until(
        "a later cme-exec --via file sweeps the directory",
        Duration::from_secs(40),
        || {
            t.run_args(args!["run", "--via", "file", "--", exit0])
                .assert_success();
            let empty = fs::read_dir(t.runtime_dir()).unwrap().next().is_none();
            if !empty {
                std::thread::sleep(Duration::from_millis(250));
            }
            empty
        },
    );
    t.assert_clean();
}
