//! Job control and signals: Ctrl-Z then `fg` or `bg` in a real interactive bash on a
//! pseudo-terminal, the terminal found on stdout or stderr when stdin is not one, and every
//! catchable signal forwarded to the child once, with cme-exec then exiting as the child does.
//!
//! The terminal tests wait for text on the terminal and for files the child writes, never for a
//! fixed time.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::launch::{pty_runner, OnTerminal};
use crate::support::scripts::sh_quote;
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Ctrl-Z, fg and bg in an interactive shell
// ---------------------------------------------------------------------------------------------

const PROMPT: &str = "cme-test$ ";

/// An interactive bash (no rc files, no line editing) on a terminal of its own, at its prompt.
fn shell(t: &Test) -> OnTerminal {
    let mut shell = t
        .launch_direct("bash", ["--norc", "--noprofile", "--noediting", "-i"])
        .env("PS1", PROMPT)
        .env("TERM", "dumb")
        .on_terminal();
    shell.expect(PROMPT);
    shell
}

/// A child that writes cme-exec's pid to `<out>/cme-exec-pid` and its own (its group's) to
/// `<out>/child-pid`, says `child-ready`, waits for
/// `<out>/go`, copies one line from the terminal to `<out>/read`, and exits 3.
fn terminal_child(t: &Test) -> PathBuf {
    let out = t.out_dir();
    t.script(
        "terminal-child",
        &format!(
            r#"#!/usr/bin/env bash
out={out}
echo $PPID > "$out/cme-exec-pid"
echo $$ > "$out/child-pid"
echo child-ready
until [ -e "$out/go" ]; do sleep 0.02; done
IFS= read -r line
printf '%s\n' "$line" > "$out/read.tmp" && mv "$out/read.tmp" "$out/read"
exit 3
"#,
            out = sh_quote(&out)
        ),
    )
}

/// The command line that runs cme-exec with `child`, as typed at the prompt.
fn command_line(t: &Test, child: &Path) -> String {
    format!(
        "{} --config {} run -- {}\n",
        sh_quote(Path::new(CME_EXEC)),
        sh_quote(&t.config_path()),
        sh_quote(child)
    )
}

/// The shell reads and runs the next command: `alive-42` is printed only by running it (the
/// typed line echoes as `alive-$((40+2))`).
#[track_caller]
fn assert_shell_reads_commands(shell: &mut OnTerminal) {
    shell.type_text("echo alive-$((40+2))\n");
    shell.expect("alive-42");
    shell.expect(PROMPT);
}

/// The process group and the terminal's foreground process group of `pid`, from
/// `/proc/PID/stat` (fields 5 and 8).
fn groups(pid: i32) -> (i32, i32) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<i32> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    (
        fields.get(1).copied().unwrap_or(0),
        fields.get(4).copied().unwrap_or(0),
    )
}

/// After `fg`: once the shell has given the terminal to cme-exec's job (cme-exec's group, or
/// already the child's), the child is let go to read a line typed there; it reads it (from the
/// foreground, or stopped for it and then handed the terminal by cme-exec) and cme-exec exits
/// as the child did (3).
#[track_caller]
fn child_reads_the_terminal_and_exits(t: &Test, shell: &mut OnTerminal) {
    let pid = |name: &str| -> i32 {
        fs::read_to_string(t.out_dir().join(name))
            .unwrap_or_else(|e| panic!("the child should have written {name}: {e}"))
            .trim()
            .parse()
            .expect("a pid")
    };
    let (cme_exec, child) = (pid("cme-exec-pid"), pid("child-pid"));
    wait_until(
        "the shell gives the terminal to cme-exec's job",
        Duration::from_secs(30),
        || {
            let (group, foreground) = groups(cme_exec);
            foreground == group || foreground == child
        },
    );
    fs::write(t.out_dir().join("go"), "").expect("write the go file");
    shell.type_text("typed-to-the-child\n");
    let read = t.out_dir().join("read");
    wait_until(
        "the child has read a line from the terminal",
        Duration::from_secs(30),
        || read.exists(),
    );
    assert_eq!(
        fs::read_to_string(&read).expect("read the child's line"),
        "typed-to-the-child\n"
    );
    shell.expect(PROMPT);
    shell.type_text("echo rc=$?\n");
    shell.expect("rc=3");
    shell.expect(PROMPT);
}

#[track_caller]
fn exit_shell(mut shell: OnTerminal) {
    shell.type_text("exit\n");
    let status = shell.wait();
    assert!(
        status.success(),
        "the shell should exit 0: {status:?}\n{}",
        shell.screen()
    );
}

/// Ctrl-Z stops cme-exec with its child (the shell says so and reads commands); `fg` gives the
/// child the terminal back: it reads a line typed there, and cme-exec exits with its code.
#[test]
fn ctrl_z_then_fg_gives_the_child_the_terminal_back() {
    let (t, _) = pat_test();
    let child = terminal_child(&t);
    let mut shell = shell(&t);
    shell.type_text(&command_line(&t, &child));
    shell.expect("child-ready");
    shell.type_text("\x1a");
    shell.expect("Stopped");
    shell.expect(PROMPT);
    assert_shell_reads_commands(&mut shell);
    shell.type_text("fg\n");
    child_reads_the_terminal_and_exits(&t, &mut shell);
    exit_shell(shell);
    t.assert_clean();
}

/// Ctrl-Z, then `bg`: the job runs on in the background and the shell keeps the terminal (it
/// used to lose it to the child, printing its prompt and never reading the next command); a
/// later `fg` gives the child the terminal.
#[test]
fn ctrl_z_then_bg_leaves_the_terminal_to_the_shell() {
    let (t, _) = pat_test();
    let child = terminal_child(&t);
    let mut shell = shell(&t);
    shell.type_text(&command_line(&t, &child));
    shell.expect("child-ready");
    shell.type_text("\x1a");
    shell.expect("Stopped");
    shell.expect(PROMPT);
    shell.type_text("bg\n");
    shell.expect(PROMPT);
    assert_shell_reads_commands(&mut shell);
    // The job runs in the background: `jobs` lists it as running, not stopped.
    shell.type_text("jobs\n");
    shell.expect("Running");
    shell.expect(PROMPT);
    shell.type_text("fg\n");
    child_reads_the_terminal_and_exits(&t, &mut shell);
    exit_shell(shell);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// The terminal on stdout or stderr
// ---------------------------------------------------------------------------------------------

/// `cme-exec ... </dev/null` typed at a terminal is still its foreground job: the terminal is
/// found on stdout, and the child gets it (as a shell would see it).
#[test]
fn a_terminal_on_stdout_alone_still_makes_cme_exec_the_foreground_job() {
    let (t, _) = pat_test();
    let pty = pty_runner(&t);
    let job = t.out_dir().join("job");
    let probe = t.script(
        "job-probe",
        &format!(
            r#"#!/usr/bin/env bash
stat=$(cat /proc/$$/stat)
set -- ${{stat##*) }}
if [ "$3" = "$6" ]; then echo foreground; else echo background; fi > {job}
"#,
            job = sh_quote(&job)
        ),
    );
    for (what, redirect) in [
        ("stdin from /dev/null", "exec \"$@\" </dev/null"),
        (
            "stdin and stdout not the terminal",
            "exec \"$@\" </dev/null 3>&1 >/dev/null 2>&3",
        ),
    ] {
        let out = t
            .launch([OsStr::new("run"), OsStr::new("--"), probe.as_os_str()])
            .wrapper([
                pty.as_os_str(),
                OsStr::new("sh"),
                OsStr::new("-c"),
                OsStr::new(redirect),
                OsStr::new("sh"),
            ])
            .env_remove("CI")
            .run();
        out.assert_success();
        assert_eq!(
            fs::read_to_string(&job).unwrap_or_default(),
            "foreground\n",
            "{what}: the child should be the terminal's foreground job\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Every catchable signal
// ---------------------------------------------------------------------------------------------

/// The signals the tests send, by name and number (the real-time ones as glibc numbers them at
/// run time: SIGRTMIN() is above the ones glibc keeps for itself).
fn signals_to_send() -> Vec<(String, i32)> {
    let mut signals: Vec<(String, i32)> = [
        ("SIGALRM", libc::SIGALRM),
        ("SIGVTALRM", libc::SIGVTALRM),
        ("SIGPROF", libc::SIGPROF),
        ("SIGXCPU", libc::SIGXCPU),
        ("SIGXFSZ", libc::SIGXFSZ),
        ("SIGPWR", libc::SIGPWR),
        ("SIGIO", libc::SIGIO),
        ("SIGSTKFLT", libc::SIGSTKFLT),
        ("SIGUSR1", libc::SIGUSR1),
        ("SIGUSR2", libc::SIGUSR2),
    ]
    .into_iter()
    .map(|(name, n)| (name.to_owned(), n))
    .collect();
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    signals.push(("SIGRTMIN".to_owned(), min));
    for n in [1, 2, 5] {
        signals.push((format!("SIGRTMIN+{n}"), min + n));
    }
    signals.push(("SIGRTMAX-1".to_owned(), max - 1));
    // Read from a signalfd, SIGRTMAX is forwarded too (tokio could not register it).
    signals.push(("SIGRTMAX".to_owned(), max));
    signals
}

/// A child that says `ready` and then, for `handle`: appends a line to `record` for each
/// `signal` it gets, stays a little longer after the first (so that a duplicate would be
/// counted), and exits 7; without `handle` it dies of the signal.
fn signal_child(t: &Test, signal: i32, record: &Path, handle: bool) -> PathBuf {
    let trap = if handle {
        format!("trap 'echo got >> \"$record\"; got=1' {signal}")
    } else {
        String::new()
    };
    t.script(
        &format!("signal-child-{signal}-{handle}"),
        &format!(
            r#"#!/usr/bin/env bash
ulimit -c 0
record={record}
got=0
{trap}
echo ready
while [ "$got" = 0 ]; do sleep 0.02; done
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.05; done
exit 7
"#,
            record = sh_quote(record)
        ),
    )
}

/// Each catchable signal sent to cme-exec reaches a child that handles it exactly once, and
/// cme-exec exits with the child's code (7). It used to kill cme-exec (128+N) and orphan the
/// child for every signal outside a list of seven.
#[test]
fn every_catchable_signal_reaches_the_child_once() {
    let (t, _) = pat_test();
    for (name, signal) in signals_to_send() {
        let record = t.out_dir().join(format!("record-{signal}"));
        let child = signal_child(&t, signal, &record, true);
        let mut running = t.spawn_args([OsStr::new("run"), OsStr::new("--"), child.as_os_str()]);
        running.wait_for_line("ready", Duration::from_secs(30));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(running.pid()),
            None::<nix::sys::signal::Signal>,
        )
        .expect("cme-exec is running");
        // SAFETY: kill with a valid pid and signal number.
        let rc = unsafe { libc::kill(running.pid(), signal) };
        assert_eq!(rc, 0, "send {name} to cme-exec");
        let out = running.wait();
        assert_eq!(
            out.code(),
            Some(7),
            "{name}: cme-exec should exit as the child did (7)\n{}",
            out.describe()
        );
        assert_eq!(
            fs::read_to_string(&record).unwrap_or_default(),
            "got\n",
            "{name}: the child should get it exactly once\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}

/// A child that dies of a forwarded signal N makes cme-exec exit 128+N, as a shell reports it.
#[test]
fn a_child_killed_by_a_forwarded_signal_gives_128_plus_n() {
    let (t, _) = pat_test();
    for (name, signal) in signals_to_send() {
        let record = t.out_dir().join(format!("record-{signal}"));
        let child = signal_child(&t, signal, &record, false);
        let mut running = t.spawn_args([OsStr::new("run"), OsStr::new("--"), child.as_os_str()]);
        running.wait_for_line("ready", Duration::from_secs(30));
        // SAFETY: kill with a valid pid and signal number.
        let rc = unsafe { libc::kill(running.pid(), signal) };
        assert_eq!(rc, 0, "send {name} to cme-exec");
        let out = running.wait();
        assert_eq!(
            out.code(),
            Some(128 + signal),
            "{name}: the child dies of it, so cme-exec should exit 128+{signal}\n{}",
            out.describe()
        );
    }
    t.assert_clean();
}
