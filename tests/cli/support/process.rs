//! Running cme-exec in the background: output capture by reader threads, waiting for a line,
//! signals, and waiting for exit with a deadline.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::secrets;

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when no live process has this pid: `kill(pid, 0)` says ESRCH, or the process is a zombie
/// (dead, only waiting for a parent to reap it, which in a container without an init may never
/// happen for an orphan).
pub fn process_gone(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => true,
        _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // Fields after the parenthesised command name: "S ppid ...".
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
                    .unwrap_or(false)
            })
            .unwrap_or(true),
    }
}

/// What a finished cme-exec run produced.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code, or `None` when cme-exec itself died by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Status, stdout and stderr with every sentinel replaced: safe for assertion messages.
    pub fn describe(&self) -> String {
        let status = status_text(&self.status);
        format!(
            "cme-exec: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            secrets::redact(&self.stdout),
            secrets::redact(&self.stderr)
        )
    }

    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(expected),
            "expected exit code {expected}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "expected stderr to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "expected stdout to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// cme-exec's own error lines (`error: ...`), for checks on what they name.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("error"))
            .collect()
    }
}

#[derive(Default)]
struct Captured {
    bytes: Mutex<Vec<u8>>,
    done: AtomicBool,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn capture_lines(mut reader: impl BufRead, captured: Arc<Captured>, lines: Option<Sender<String>>) {
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                captured
                    .bytes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&line);
                if let Some(tx) = &lines {
                    let text = String::from_utf8_lossy(&line);
                    let _ = tx.send(text.trim_end_matches(['\r', '\n']).to_owned());
                }
            }
        }
    }
    captured.done.store(true, Ordering::SeqCst);
}

/// A cme-exec started with [`super::Test::spawn`]. Killed (with its whole process group) if dropped
/// while still running.
pub struct Running {
    child: Child,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    lines: Receiver<String>,
    secrets: Vec<String>,
    allow_secret_stdout: bool,
    reaped: bool,
}

impl Running {
    pub(super) fn new(mut child: Child, secrets: Vec<String>, allow_secret_stdout: bool) -> Self {
        let stdout = Arc::new(Captured::default());
        let stderr = Arc::new(Captured::default());
        let (tx, lines) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let out_captured = Arc::clone(&stdout);
        std::thread::spawn(move || capture_lines(BufReader::new(out_pipe), out_captured, Some(tx)));
        let err_captured = Arc::clone(&stderr);
        std::thread::spawn(move || capture_lines(BufReader::new(err_pipe), err_captured, None));
        Running {
            child,
            stdout,
            stderr,
            lines,
            secrets,
            allow_secret_stdout,
            reaped: false,
        }
    }

    /// cme-exec's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Stderr so far, with sentinels replaced.
    pub fn stderr_so_far(&self) -> String {
        secrets::redact(&self.stderr.text())
    }

    /// Blocks until the child's stdout has a line equal to `expected` (trimmed), or panics after
    /// `timeout` or when stdout closes first.
    #[track_caller]
    pub fn wait_for_line(&mut self, expected: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == expected => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {expected:?} line on stdout after {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    secrets::redact(&self.stdout.text()),
                    self.stderr_so_far()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "stdout closed before a {expected:?} line (status {status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        secrets::redact(&self.stdout.text()),
                        self.stderr_so_far()
                    )
                }
            }
        }
    }

    /// Sends `signal` to cme-exec (its pid only, not its group).
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("send a signal to cme-exec");
    }

    /// Waits for cme-exec to exit, at most `timeout` (then kills it and panics).
    #[track_caller]
    pub fn wait_timeout(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for cme-exec") {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill_group();
                panic!(
                    "cme-exec did not exit within {timeout:?}; killed it\n--- stderr ---\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.reaped = true;
        // The pipes close when every holder has exited. A leaked grandchild may keep them open:
        // wait a little for end of file, then take what was captured.
        let eof_deadline = Instant::now() + Duration::from_secs(5);
        while !(self.stdout.done.load(Ordering::SeqCst) && self.stderr.done.load(Ordering::SeqCst))
            && Instant::now() < eof_deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let output = Output {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        };
        for secret in &self.secrets {
            if !self.allow_secret_stdout {
                secrets::assert_no_leak_in("cme-exec's stdout", &output.stdout, secret);
            }
            secrets::assert_no_leak_in("cme-exec's stderr", &output.stderr, secret);
        }
        output
    }

    /// Waits for cme-exec to exit (60 s at most).
    #[track_caller]
    pub fn wait(self) -> Output {
        self.wait_timeout(Duration::from_secs(60))
    }

    fn kill_group(&mut self) {
        // cme-exec runs in its own process group (see Test::command).
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
        }
    }
}

/// SIGKILLs the listed pids when dropped, so that a failing test leaves no stray process behind.
pub struct KillOnDrop(pub Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if *pid > 1 && !process_gone(*pid) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

/// How a process ended, in words: `exit code 3`, `killed by signal 9`.
pub fn status_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => format!("{status:?}"),
    }
}
