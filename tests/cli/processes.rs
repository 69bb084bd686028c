//! The child process as cme-exec starts it, compared with the same program started directly
//! (signal dispositions, blocked signals, open descriptors); signals sent to cme-exec; cme-exec
//! killed with SIGKILL; stdin; the terminal; cme-exec as PID 1; a signal during resolution.
//!
//! Every launch (of cme-exec and of the direct baseline) starts from the same known state: all
//! standard signals at their default, nothing blocked, then the test's own setup (see
//! `support/launch.rs`), started with fork + exec as a shell would.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::http::Silent;
use crate::support::launch::{cannot_run, from_terminal, pid_namespace, pty_runner, Launch};
use crate::support::scripts::{self, sh_quote};
use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn os(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

/// `SigIgn`, `SigCgt` and `SigBlk` of a `/proc/PID/status` text.
fn signal_masks(status: &str) -> BTreeMap<String, u64> {
    status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            ["SigIgn", "SigCgt", "SigBlk"]
                .contains(&name)
                .then(|| (name.to_owned(), u64::from_str_radix(value.trim(), 16).ok()))
        })
        .map(|(name, value)| (name, value.expect("a hex mask")))
        .collect()
}

fn signal_name(n: u32) -> String {
    Signal::try_from(n as i32)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {n}"))
}

/// The signals (numbered from 1) in `bits` within `range`.
fn signals_in(bits: u64, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range
        .filter(|n| bits & (1u64 << (n - 1)) != 0)
        .map(signal_name)
        .collect()
}

/// Where the masks of two `/proc/PID/status` texts differ, for signals in `range`: one line per
/// mask, empty when they agree.
fn mask_differences(via: &str, direct: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    let (via, direct) = (signal_masks(via), signal_masks(direct));
    assert_eq!(via.len(), 3, "the probe printed SigIgn, SigCgt and SigBlk");
    let mut out = Vec::new();
    for (name, &d) in &direct {
        let v = via[name];
        let extra = signals_in(v & !d, range.clone());
        let missing = signals_in(d & !v, range.clone());
        if !extra.is_empty() || !missing.is_empty() {
            out.push(format!(
                "{name}: through cme-exec also {extra:?}, but not {missing:?}"
            ));
        }
    }
    out
}

/// What `ls -l /proc/self/fd` printed: descriptor number to what it is (each run of digits
/// one `#`, so that pipes and `/proc/PID` paths of two runs compare equal, also when one PID
/// has more digits than the other).
fn descriptors(listing: &str) -> BTreeMap<u32, String> {
    listing
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            let mut kind = String::new();
            for c in target.chars() {
                if !c.is_ascii_digit() {
                    kind.push(c);
                } else if !kind.ends_with('#') {
                    kind.push('#');
                }
            }
            Some((fd, kind))
        })
        .collect()
}

/// Runs the probe (`program args`) through cme-exec and directly, with the same setup; returns
/// both stdouts.
fn probe(
    t: &Test,
    run_args: &[&str],
    program: &str,
    args: &[&str],
    setup: &dyn Fn(Launch<'_>) -> Launch<'_>,
) -> (String, String) {
    let mut via_args: Vec<&str> = vec!["run"];
    via_args.extend_from_slice(run_args);
    via_args.push("--");
    via_args.push(program);
    via_args.extend_from_slice(args);
    let via = setup(t.launch(&via_args)).run();
    via.assert_success();
    let direct = setup(t.launch_direct(program, args)).run();
    direct.assert_success();
    (via.stdout, direct.stdout)
}

// ---------------------------------------------------------------------------------------------
// The child's signal state and descriptors
// ---------------------------------------------------------------------------------------------

/// For a plain start and for a start with signals ignored and blocked and an extra inherited
/// descriptor, with each hand-over and with and without masking: the child's ignored, caught and
/// blocked signals (1-31) and its descriptors are those of the same program started directly,
/// plus the config's memfd with `--via memfd`.
#[test]
fn child_signal_state_and_descriptors_match_a_direct_run() {
    let plain: &dyn Fn(Launch<'_>) -> Launch<'_> = &|l| l;
    let nohup_like: &dyn Fn(Launch<'_>) -> Launch<'_> = &|l| {
        l.ignore(&[Signal::SIGHUP, Signal::SIGQUIT])
            .block(&[Signal::SIGUSR2, Signal::SIGALRM])
    };
    for (setup_name, setup, extra_fd) in [("plain", plain, false), ("nohup-like", nohup_like, true)]
    {
        let (t, _) = pat_test();
        let t = if extra_fd { t.inherit_extra_fd(9) } else { t };
        for via in ["memfd", "file", "env"] {
            for mask in ["--mask", "--no-mask"] {
                let what = format!("{setup_name} start, --via {via} {mask}");
                let run_args = ["--via", via, mask];
                let (through, direct) = probe(&t, &run_args, "cat", &["/proc/self/status"], setup);
                let diff = mask_differences(&through, &direct, 1..=31);
                assert!(
                    diff.is_empty(),
                    "{what}: the child's signal state differs from a direct start:\n  {}",
                    diff.join("\n  ")
                );

                let (through, direct) = probe(&t, &run_args, "ls", &["-l", "/proc/self/fd"], setup);
                let (through, direct) = (descriptors(&through), descriptors(&direct));
                for fd in [0, 1, 2] {
                    assert!(
                        direct.contains_key(&fd),
                        "the probe lists stdio: {direct:?}"
                    );
                }
                if extra_fd {
                    assert!(direct.contains_key(&9), "the setup passes fd 9");
                }
                let mut expected = direct.clone();
                let config_fd = through
                    .iter()
                    .find(|(_, kind)| kind.contains("memfd:cme-exec-config"))
                    .map(|(fd, _)| *fd);
                match (via, config_fd) {
                    ("memfd", Some(fd)) => {
                        expected.insert(fd, through[&fd].clone());
                    }
                    ("memfd", None) => panic!("{what}: the child has no config memfd: {through:?}"),
                    _ => {}
                }
                assert_eq!(
                    through, expected,
                    "{what}: the child's descriptors (left) differ from a direct start's (right) beyond the config's"
                );
            }
        }
        t.assert_clean();
    }
}

/// The forwarded signals, ignored when cme-exec starts (`nohup`, a background job), stay
/// ignored in the child; signals blocked at start are blocked in the child.
#[test]
fn forwarded_signals_ignored_at_start_stay_ignored() {
    let (t, _) = pat_test();
    let setup: &dyn Fn(Launch<'_>) -> Launch<'_> = &|l| {
        l.ignore(&[
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGTERM,
            Signal::SIGWINCH,
        ])
        .block(&[Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGALRM])
    };
    let (through, direct) = probe(&t, &[], "cat", &["/proc/self/status"], setup);
    let masks = signal_masks(&through);
    assert_eq!(
        signals_in(masks["SigIgn"], 1..=31),
        ["SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGWINCH"],
        "the child's ignored signals"
    );
    assert_eq!(
        signals_in(masks["SigBlk"], 1..=31),
        ["SIGHUP", "SIGUSR1", "SIGALRM"],
        "the child's blocked signals"
    );
    let diff = mask_differences(&through, &direct, 1..=31);
    assert!(
        diff.is_empty(),
        "the child's signal state differs from a direct start:\n  {}",
        diff.join("\n  ")
    );
    t.assert_clean();
}

/// Other signals ignored at start (SIGPIPE, as many CI runners and `subprocess` with
/// `restore_signals=False` leave it; SIGCHLD; job-control signals) stay ignored in the child too:
/// "the child's dispositions are what they would be without cme-exec".
#[test]
fn other_signals_ignored_at_start_stay_ignored() {
    let (t, _) = pat_test();
    let setup: &dyn Fn(Launch<'_>) -> Launch<'_> = &|l| {
        l.ignore(&[
            Signal::SIGPIPE,
            Signal::SIGCHLD,
            Signal::SIGALRM,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
            Signal::SIGXFSZ,
        ])
    };
    let (through, direct) = probe(&t, &[], "cat", &["/proc/self/status"], setup);
    let diff = mask_differences(&through, &direct, 1..=31);
    assert!(
        diff.is_empty(),
        "signals ignored when cme-exec started are not ignored in its child:\n  {}",
        diff.join("\n  ")
    );
    t.assert_clean();
}

/// The real-time signals (SIGRTMIN..=SIGRTMAX, 34..=64 with glibc) are in the state they would
/// be in without cme-exec, and so are 32 and 33, glibc's internal SIGCANCEL and SIGSETXID: glibc's
/// `posix_spawn` leaves those two ignored in the new process, but on Linux the child is always
/// forked (its death signal is set between fork and exec).
#[test]
fn child_gets_the_realtime_signals_as_without_cme_exec() {
    let (t, _) = pat_test();
    let (through, direct) = probe(&t, &[], "cat", &["/proc/self/status"], &|l| l);
    let diff = mask_differences(&through, &direct, 32..=64);
    assert!(
        diff.is_empty(),
        "the child's real-time signal state differs from a direct start:\n  {}",
        diff.join("\n  ")
    );
    t.assert_clean();
}

/// SIGCHLD blocked when cme-exec starts (a launcher that blocks it and execs): cme-exec must
/// still notice that its child exited (a run that hangs is killed after 5 s and fails here), and
/// the child inherits the blocked mask.
#[test]
fn a_sigchld_blocked_at_start_does_not_hang_the_run() {
    let (t, _) = pat_test();
    let running = t
        .launch(["run", "--", "sleep", "0.3"])
        .block(&[Signal::SIGCHLD])
        .spawn();
    let pid = running.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        process_gone(pid),
        "cme-exec started with SIGCHLD blocked is still running 5 s after its child \
         (`sleep 0.3`) exited: it never notices the exit (it waits for SIGCHLD, which stays blocked)"
    );
    running.wait().assert_success();
    let out = t
        .launch(["run", "--", "cat", "/proc/self/status"])
        .block(&[Signal::SIGCHLD])
        .run();
    out.assert_success();
    let blocked = signal_masks(&out.stdout)["SigBlk"];
    assert_eq!(signals_in(blocked, 1..=31), ["SIGCHLD"]);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Signals sent to cme-exec
// ---------------------------------------------------------------------------------------------

/// A child that records each INT, TERM and HUP it gets as a line, prints `ready`, and exits 0
/// half a second after the first (so that a duplicate would be counted).
fn record_child(t: &Test, record: &Path) -> PathBuf {
    t.script(
        "record",
        &format!(
            r#"#!/usr/bin/env bash
record={record}
got=0
for sig in INT TERM HUP; do
  trap "echo $sig >> \"\$record\"; got=1" "$sig"
done
echo ready
while [ "$got" = 0 ]; do sleep 0.02; done
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.05; done
exit 0
"#,
            record = sh_quote(record)
        ),
    )
}

fn signal_reaches_the_child_once(signal: Signal, name: &str) {
    let (t, pat) = pat_test();
    let record = t.out_dir().join("signals");
    let child = record_child(&t, &record);
    let mut running = t.spawn_args([OsStr::new("--"), child.as_os_str()]);
    running.wait_for_line("ready", Duration::from_secs(30));
    let pid = running.pid();
    if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
        assert_no_leak_in("cme-exec's /proc/PID/cmdline", &cmdline, &pat);
    }
    running.signal(signal);
    let out = running.wait();
    out.assert_success();
    assert_eq!(
        fs::read_to_string(&record).unwrap_or_default(),
        format!("{name}\n"),
        "the child should get {name} exactly once\n{}",
        out.describe()
    );
    t.assert_clean();
}

#[test]
fn sigint_reaches_the_child_once() {
    signal_reaches_the_child_once(Signal::SIGINT, "INT");
}

#[test]
fn sigterm_reaches_the_child_once() {
    signal_reaches_the_child_once(Signal::SIGTERM, "TERM");
}

#[test]
fn sighup_reaches_the_child_once() {
    signal_reaches_the_child_once(Signal::SIGHUP, "HUP");
}

// ---------------------------------------------------------------------------------------------
// cme-exec killed with SIGKILL
// ---------------------------------------------------------------------------------------------

/// `--via memfd`: while the child runs, its config is an anonymous memory file (not a path);
/// after a SIGKILL of cme-exec nothing is left anywhere, and the child's environment never held
/// the secret.
#[test]
fn sigkill_with_memfd_leaves_nothing_behind() {
    let (t, pat) = pat_test();
    let pid_file = t.out_dir().join("child.pid");
    let release = t.out_dir().join("release");
    let child = t.script("wait", &scripts::wait_for_release(&pid_file, &release));
    let mut running = t.spawn_args(os(&[&"run", &"--via", &"memfd", &"--", &child]));
    running.wait_for_line("ready", Duration::from_secs(30));
    let child_pid = read_pid(&pid_file);
    let _reaper = KillOnDrop(vec![child_pid]);

    let environ = fs::read(format!("/proc/{child_pid}/environ")).expect("the child's environ");
    assert_no_leak_in("the child's /proc/PID/environ", &environ, &pat);
    let config_path = environ
        .split(|b| *b == 0)
        .find_map(|e| e.strip_prefix(b"CME_CONFIG_PATH="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("CME_CONFIG_PATH in the child's environment");
    let fd = config_path
        .strip_prefix("/proc/self/fd/")
        .unwrap_or_else(|| panic!("a /proc/self/fd/N path, got {config_path}"));
    let target = fs::read_link(format!("/proc/{child_pid}/fd/{fd}")).unwrap();
    assert!(
        target.to_string_lossy().starts_with("/memfd:"),
        "the config is an anonymous memory file, not {}",
        target.display()
    );

    running.signal(Signal::SIGKILL);
    fs::write(&release, "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), None, "cme-exec was killed\n{}", out.describe());
    wait_until("the orphaned child exits", Duration::from_secs(10), || {
        process_gone(child_pid)
    });
    t.assert_clean();
}

/// A SIGKILLed cme-exec takes its child with it (Linux, `PR_SET_PDEATHSIG`): the child (a script
/// that says `ready` and then `exec`s a long sleep) is gone within seconds, with no release
/// file and no signal from the test. Also when cme-exec started with SIGPIPE ignored (the hook
/// that gives the child its start-up signal state runs too).
#[test]
fn sigkill_of_cme_exec_takes_the_child_with_it() {
    let (t, _pat) = pat_test();
    let pid_file = t.out_dir().join("child.pid");
    let child = t.script(
        "sleeper",
        &format!(
            "#!/bin/sh\necho $$ > {}\necho ready\nexec sleep 1000\n",
            sh_quote(&pid_file)
        ),
    );
    for sigpipe_ignored in [false, true] {
        let launch = t.launch(os(&[&"run", &"--", &child]));
        let launch = if sigpipe_ignored {
            launch.ignore(&[Signal::SIGPIPE])
        } else {
            launch
        };
        let mut running = launch.spawn();
        running.wait_for_line("ready", Duration::from_secs(30));
        let child_pid = read_pid(&pid_file);
        let _reaper = KillOnDrop(vec![child_pid]);
        assert!(!process_gone(child_pid), "the child runs");
        running.signal(Signal::SIGKILL);
        assert_eq!(running.wait().code(), None, "cme-exec was killed");
        wait_until(
            &format!("the child exits with cme-exec (SIGPIPE ignored: {sigpipe_ignored})"),
            Duration::from_secs(10),
            || process_gone(child_pid),
        );
        fs::remove_file(&pid_file).unwrap();
    }
    t.assert_clean();
}

/// `--via file`: a SIGKILLed run's directory is swept by a later run once it is old enough,
/// while the directory of a run still going (older still) is never swept, and links planted at
/// the sweep's prefix are not followed.
#[test]
fn sigkill_with_file_is_swept_later_but_never_a_live_run_or_a_link() {
    let (t, pat) = pat_test();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let precious = outside.join("precious");
    fs::write(&precious, "precious\n").unwrap();

    // A live run, whose child reads its config again at the end.
    let release_live = t.out_dir().join("release-live");
    let live_config = t.out_dir().join("live-config");
    let live_child = t.script(
        "live",
        &format!(
            "#!/usr/bin/env bash\necho ready\nwhile [ ! -e {release} ]; do sleep 0.05; done\ncat \"$CME_CONFIG_PATH\" > {copy}\n",
            release = sh_quote(&release_live),
            copy = sh_quote(&live_config)
        ),
    );
    let mut live = t.spawn_args(os(&[&"run", &"--via", &"file", &"--", &live_child]));
    live.wait_for_line("ready", Duration::from_secs(30));
    let live_dir = only_entry(&t.runtime_dir());

    // A run killed with SIGKILL.
    let pid_file = t.out_dir().join("child.pid");
    let release = t.out_dir().join("release");
    let child = t.script("wait", &scripts::wait_for_release(&pid_file, &release));
    let mut killed = t.spawn_args(os(&[&"run", &"--via", &"file", &"--", &child]));
    killed.wait_for_line("ready", Duration::from_secs(30));
    let child_pid = read_pid(&pid_file);
    let _reaper = KillOnDrop(vec![child_pid]);
    killed.signal(Signal::SIGKILL);
    fs::write(&release, "").unwrap();
    assert_eq!(killed.wait().code(), None);
    wait_until("the orphaned child exits", Duration::from_secs(10), || {
        process_gone(child_pid)
    });
    let left: Vec<PathBuf> = entries(&t.runtime_dir())
        .into_iter()
        .filter(|p| *p != live_dir)
        .collect();
    assert_eq!(left.len(), 1, "the killed run left its directory: {left:?}");
    let killed_dir = left[0].clone();

    // Links with the sweep's prefix, to a directory and to a file outside.
    let link_dir = t.runtime_dir().join("cme-exec.planted");
    let link_file = t.runtime_dir().join("cme-exec.plantedf");
    std::os::unix::fs::symlink(&outside, &link_dir).unwrap();
    std::os::unix::fs::symlink(&precious, &link_file).unwrap();

    // Later runs sweep the killed run's directory once it is 10 s old.
    let exit0 = t.script("exit0", &scripts::exit_with(0));
    let started = Instant::now();
    wait_until(
        "a later cme-exec --via file sweeps the killed run's directory",
        Duration::from_secs(40),
        || {
            t.run_args(os(&[&"run", &"--via", &"file", &"--", &exit0]))
                .assert_success();
            let gone = !killed_dir.exists();
            if !gone {
                std::thread::sleep(Duration::from_millis(250));
            }
            gone
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "swept in {:?}",
        started.elapsed()
    );
    assert!(
        live_dir.is_dir(),
        "the directory of a run still going must never be swept"
    );
    assert!(
        fs::symlink_metadata(&link_dir).is_ok() && fs::symlink_metadata(&link_file).is_ok(),
        "the sweep removes only real directories it can lock"
    );
    assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n");
    assert_eq!(
        entries(&outside),
        std::slice::from_ref(&precious),
        "nothing swept through the link"
    );

    fs::write(&release_live, "").unwrap();
    live.wait().assert_success();
    assert_contains_secret(
        "the live run's config, read after the sweeps",
        fs::read(&live_config).unwrap(),
        &pat,
    );
    fs::remove_file(&link_dir).unwrap();
    fs::remove_file(&link_file).unwrap();
    t.assert_clean();
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[track_caller]
fn only_entry(dir: &Path) -> PathBuf {
    let all = entries(dir);
    assert_eq!(all.len(), 1, "{} holds {all:?}", dir.display());
    all[0].clone()
}

// ---------------------------------------------------------------------------------------------
// stdin and the terminal
// ---------------------------------------------------------------------------------------------

/// Binary stdin (every byte value, a few hundred KiB) reaches the child unchanged, with and
/// without masking.
#[test]
fn stdin_passes_through_unchanged() {
    let mut data = Vec::with_capacity(300 * 1024);
    let mut state: u32 = 0x1234_5678;
    while data.len() < 300 * 1024 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        data.push((state >> 24) as u8);
    }
    for b in 0..=255u8 {
        data.push(b);
    }
    let (t, _) = pat_test();
    let copy = t.out_dir().join("stdin");
    let child = t.script(
        "copy-stdin",
        &format!("#!/bin/sh\nexec cat > {}\n", sh_quote(&copy)),
    );
    let t = t.stdin(data.clone());
    for mask in ["--mask", "--no-mask"] {
        t.run_args(os(&[&"run", &mask, &"--", &child]))
            .assert_success();
        let got = fs::read(&copy).unwrap();
        assert!(
            got == data,
            "{mask}: the child read {} bytes of stdin, differing from the {} sent",
            got.len(),
            data.len()
        );
        fs::remove_file(&copy).unwrap();
    }
    t.assert_clean();
}

/// A child that reports, for stdin, stdout and stderr, whether each is a terminal, whether it
/// is cme-exec's own terminal, and whether the child is the terminal's foreground job.
fn terminal_probe(t: &Test) -> PathBuf {
    t.script(
        "tty-probe",
        r#"#!/usr/bin/env bash
for fd in 0 1 2; do
  if [ -t $fd ]; then kind=terminal; else kind=other; fi
  if [ "$(readlink /proc/$$/fd/$fd)" = "$(readlink /proc/$PPID/fd/0)" ]; then same=same; else same=different; fi
  echo "fd$fd=$kind,$same"
done
stat=$(cat /proc/$$/stat)
set -- ${stat##*) }
if [ "$3" = "$6" ]; then echo "job=foreground"; else echo "job=background"; fi
"#,
    )
}

/// Under a terminal with masking off (the default there, or `--no-mask` with `CI` set), the child
/// keeps the terminal: stdin, stdout and stderr are cme-exec's own terminal, and the child is the
/// foreground job (Ctrl-C, Ctrl-Z and colours work). With `--mask`, stdout and stderr become
/// pipes, stdin stays the terminal.
#[test]
fn terminal_stays_a_terminal_when_masking_is_off() {
    let (t, _) = pat_test();
    let pty = pty_runner(&t);
    let probe = terminal_probe(&t);
    let keeps = "fd0=terminal,same\nfd1=terminal,same\nfd2=terminal,same\njob=foreground\n";
    let masked = "fd0=terminal,same\nfd1=other,different\nfd2=other,different\njob=foreground\n";
    for (what, args, ci, expected) in [
        ("default, no CI", vec!["run"], None, keeps),
        (
            "--no-mask, CI=true",
            vec!["run", "--no-mask"],
            Some("true"),
            keeps,
        ),
        ("--mask", vec!["run", "--mask"], None, masked),
    ] {
        let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        args.extend([OsStr::new("--"), probe.as_os_str()]);
        let mut launch = t.launch(args).wrapper([&pty]).env_remove("CI");
        if let Some(ci) = ci {
            launch = launch.env("CI", ci);
        }
        let out = launch.run();
        out.assert_success();
        assert_eq!(from_terminal(&out.stdout), expected, "{what}");
    }
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// PID 1
// ---------------------------------------------------------------------------------------------

/// As PID 1 of a PID namespace (a container): an orphan the child leaves is reaped (no zombie),
/// and SIGTERM from outside reaches the child once.
#[test]
fn as_pid_1_sigterm_works_and_orphans_are_reaped() {
    let ns = match pid_namespace() {
        Ok(ns) => ns,
        Err(why) => cannot_run(
            "processes::as_pid_1_sigterm_works_and_orphans_are_reaped",
            &why,
        ),
    };
    let (t, _) = pat_test();
    let record = t.out_dir().join("terms");
    let orphan = t.out_dir().join("orphan");
    let child = t.script(
        "pid1-child",
        &format!(
            r#"#!/usr/bin/env bash
record={record}
orphan={orphan}
echo "cme-exec is pid $PPID" > "$orphan"
( sleep 0.2 </dev/null >/dev/null 2>&1 & echo $! > "$orphan.pid" )
pid=$(cat "$orphan.pid")
result="a zombie after 10 s"
for _ in $(seq 200); do
  if [ ! -e /proc/$pid ]; then result=reaped; break; fi
  sleep 0.05
done
echo "orphan $result" >> "$orphan"
got=0
trap 'echo TERM >> "$record"; got=1' TERM
echo ready
while [ "$got" = 0 ]; do sleep 0.02; done
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.05; done
exit 0
"#,
            record = sh_quote(&record),
            orphan = sh_quote(&orphan)
        ),
    );
    let mut running = t
        .launch([OsStr::new("--"), child.as_os_str()])
        .wrapper(ns)
        .spawn();
    running.wait_for_line("ready", Duration::from_secs(30));
    assert_eq!(
        fs::read_to_string(&orphan).unwrap(),
        "cme-exec is pid 1\norphan reaped\n",
        "as PID 1, cme-exec reaps the orphan"
    );
    let cme_exec = child_of(running.pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(cme_exec), Signal::SIGTERM).unwrap();
    let out = running.wait();
    out.assert_success();
    assert_eq!(
        fs::read_to_string(&record).unwrap_or_default(),
        "TERM\n",
        "the child gets SIGTERM once"
    );
    t.assert_clean();
}

/// The one child of `parent` (cme-exec, started by `unshare --fork`), found by scanning /proc.
fn child_of(parent: i32) -> i32 {
    let children: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect();
    assert_eq!(
        children.len(),
        1,
        "unshare ({parent}) should have one child: {children:?}"
    );
    children[0]
}

// ---------------------------------------------------------------------------------------------
// A signal during resolution
// ---------------------------------------------------------------------------------------------

/// While a store hangs (a Vault address that accepts and never answers), SIGTERM, SIGINT,
/// SIGHUP, and any other signal whose default is to end a process (SIGALRM, SIGUSR1;
/// SIGALRM used to kill cme-exec outright) each end the run at once with 128+N, long before the
/// deadline; nothing is started or written (`--via file` and `render`).
#[test]
fn a_signal_during_resolution_aborts_at_once() {
    let server = Silent::start();
    let mut t = Test::new();
    let token = t.sentinel("vault-token");
    let t = t
        .env("VAULT_TOKEN", &token)
        .global_arg("--timeout")
        .global_arg("60")
        .config_toml(&format!(
            "[providers.v]\nkind = \"vault\"\naddress = \"http://127.0.0.1:{}\"\nkv_version = 2\nauth = {{ method = \"token\" }}\n\n[jira.\"https://jira.example.com\"]\npat = \"v://secret/app#pat\"\n",
            server.port()
        ));
    let marker = t.out_dir().join("child-ran");
    let child = t.script("touch", &scripts::touch(&marker));
    let output = t.out_dir().join("app_data.json");
    let cases: [(Signal, Vec<OsString>); 6] = [
        (
            Signal::SIGTERM,
            os(&[&"run", &"--via", &"file", &"--", &child]),
        ),
        (Signal::SIGINT, os(&[&"run", &"--", &child])),
        (Signal::SIGHUP, os(&[&"run", &"--", &child])),
        (Signal::SIGALRM, os(&[&"run", &"--", &child])),
        (Signal::SIGUSR1, os(&[&"run", &"--", &child])),
        (Signal::SIGTERM, os(&[&"render", &"--output", &output])),
    ];
    for (signal, args) in cases {
        let before = server.accepted();
        let running = t.spawn_args(&args);
        wait_until(
            "cme-exec connects to the hanging store",
            Duration::from_secs(20),
            || server.accepted() > before,
        );
        let sent = Instant::now();
        running.signal(signal);
        let out = running.wait_timeout(Duration::from_secs(20));
        let took = sent.elapsed();
        out.assert_code(128 + signal as i32);
        assert!(
            took < Duration::from_secs(3),
            "{signal}: cme-exec took {took:?} to stop after the signal\n{}",
            out.describe()
        );
        out.assert_stderr_contains("interrupted");
        assert!(!marker.exists(), "{signal}: the child must not start");
        assert!(!output.exists(), "{signal}: render must not write");
        t.assert_clean();
    }
}
