//! Starting cme-exec (or a probe program) in ways [`Test::run`] does not: under a wrapper
//! (`unshare`, `setpriv`, `strace`, a pseudo-terminal, a shell that sets the umask), with extra
//! per-run variables, with signals ignored or blocked at start, and with raw byte capture.
//!
//! The environment, working directory and `--config` are the ones [`Test`] would use, so a
//! launched run differs from `t.run()` only in what the test asks for. Every launch starts from a
//! known signal state (every signal at its default, nothing blocked) and is started with fork +
//! exec, as a shell would start it; the test's own setup is applied on top.
//!
//! Also here: the pseudo-terminal runner ([`pty_runner`]), the namespace probes
//! ([`mount_namespace`], [`pid_namespace`]) and [`cannot_run`]: a test that needs namespaces
//! the machine does not offer fails with the reason and the fix; no test skips.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::process::{Output, Running};
use super::{secrets, Test};

impl Test {
    /// A run of cme-exec with `args` (after the Test's global options) to customise further.
    pub fn launch<I, S>(&self, args: I) -> Launch<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Launch {
            t: self,
            direct: None,
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            wrapper: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            ignore: Vec::new(),
            block: Vec::new(),
            umask: None,
            stdin: None,
            allow_secret_stdout: false,
            session: false,
        }
    }

    /// `program ARGS` run directly (no cme-exec), with the same environment, working directory
    /// and start-up setup a [`Test::launch`] would give cme-exec: the baseline of "what the child
    /// would see without cme-exec".
    pub fn launch_direct<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Launch<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut launch = self.launch(args);
        launch.direct = Some(program.as_ref().to_owned());
        launch
    }
}

/// A run being set up; see [`Test::launch`].
pub struct Launch<'t> {
    t: &'t Test,
    direct: Option<OsString>,
    args: Vec<OsString>,
    wrapper: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    ignore: Vec<Signal>,
    block: Vec<Signal>,
    umask: Option<u32>,
    stdin: Option<Vec<u8>>,
    allow_secret_stdout: bool,
    /// Start as the leader of a new session whose controlling terminal is stdin (for
    /// [`Launch::on_terminal`]) instead of in a process group of its own.
    session: bool,
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 layout), for `rt_sigaction`.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// A finished run with its output as bytes (for binary or very large output).
pub struct RawOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RawOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Status and stderr (redacted), for assertion messages.
    pub fn describe(&self) -> String {
        let status = super::process::status_text(&self.status);
        format!(
            "{status}, {} bytes on stdout\n--- stderr ---\n{}\n--------------",
            self.stdout.len(),
            secrets::redact(&String::from_utf8_lossy(&self.stderr))
        )
    }
}

impl<'t> Launch<'t> {
    /// Runs the program under `wrapper` (`["unshare", "-m", ...]`): the program and its
    /// arguments are appended to it.
    pub fn wrapper<I, S>(mut self, wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = wrapper.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// A variable for this run only (on top of the Test's).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes one of the Test's variables for this run (`CI`, `XDG_RUNTIME_DIR`, ...); a
    /// variable set with [`Launch::env`] is set even if removed here.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Signals ignored (`SIG_IGN`) when the program starts, as `nohup` or a background job would.
    pub fn ignore(mut self, signals: &[Signal]) -> Self {
        self.ignore.extend_from_slice(signals);
        self
    }

    /// Signals blocked when the program starts.
    pub fn block(mut self, signals: &[Signal]) -> Self {
        self.block.extend_from_slice(signals);
        self
    }

    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Bytes for stdin (default: /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Stdout may hold the Test's sentinels (stderr is still checked).
    pub fn allow_secrets_in_stdout(mut self) -> Self {
        self.allow_secret_stdout = true;
        self
    }

    fn command(&self) -> Command {
        let inner = self.t.command(&self.args);
        let (program, args): (OsString, Vec<OsString>) = match &self.direct {
            Some(program) => (program.clone(), self.args.clone()),
            None => (
                inner.get_program().to_owned(),
                inner.get_args().map(ToOwned::to_owned).collect(),
            ),
        };
        let mut command = match self.wrapper.split_first() {
            None => Command::new(&program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&program);
                c
            }
        };
        command.args(&args).env_clear();
        for (key, value) in inner.get_envs() {
            if let Some(value) = value {
                command.env(key, value);
            }
        }
        for key in &self.env_remove {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(dir) = inner.get_current_dir() {
            command.current_dir(dir);
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.session {
            command.process_group(0);
        }
        let session = self.session;
        let ignore: Vec<i32> = self.ignore.iter().map(|s| *s as i32).collect();
        let block: Vec<i32> = self.block.iter().map(|s| *s as i32).collect();
        let umask = self.umask;
        let extra_fds = self.t.extra_fds.clone();
        // SAFETY: only async-signal-safe calls (rt_sigaction, signal, sigprocmask, umask, dup2)
        // between fork and exec; the vectors were allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                use nix::libc;
                // Every signal to its default, the real-time ones too: through the system call,
                // as glibc refuses to touch its internal signals (32, 33), which the test
                // process may have inherited ignored from a `posix_spawn` (cargo's).
                let default = KernelSigaction {
                    handler: 0, // SIG_DFL
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                for sig in 1..=64 {
                    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                        libc::syscall(
                            libc::SYS_rt_sigaction,
                            sig,
                            &default as *const KernelSigaction,
                            std::ptr::null_mut::<KernelSigaction>(),
                            8usize,
                        );
                    }
                }
                for &sig in &ignore {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &sig in &block {
                    libc::sigaddset(&mut set, sig);
                }
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                if let Some(mask) = umask {
                    libc::umask(mask as libc::mode_t);
                }
                for &fd in &extra_fds {
                    if libc::dup2(0, fd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if session && (libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0) {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    fn start(&self) -> std::process::Child {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the launched run: {e}"));
        if let Some(bytes) = &self.stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        child
    }

    /// Starts the run in the background (for signals); output is checked for the Test's
    /// sentinels when it ends.
    pub fn spawn(self) -> Running {
        let child = self.start();
        Running::new(child, self.t.secrets.clone(), self.allow_secret_stdout)
    }

    /// Runs and waits (the Test's timeout), checking output for the Test's sentinels.
    #[track_caller]
    pub fn run(self) -> Output {
        let timeout = self.t.timeout;
        self.spawn().wait_timeout(timeout)
    }

    /// Runs and waits, capturing stdout and stderr as bytes. Stderr (and stdout unless allowed)
    /// is checked for the Test's sentinels.
    #[track_caller]
    pub fn run_raw(self) -> RawOutput {
        let mut child = self.start();
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        };
        let out = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
        let err = read_all(Box::new(child.stderr.take().expect("stderr is piped")));
        let deadline = Instant::now() + self.t.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the run") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                panic!("the run did not end within {:?}; killed it", self.t.timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = RawOutput {
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        };
        for secret in &self.t.secrets {
            if !self.allow_secret_stdout {
                secrets::assert_no_leak_in("the run's stdout", &output.stdout, secret);
            }
            secrets::assert_no_leak_in("the run's stderr", &output.stderr, secret);
        }
        output
    }
}

// ---------------------------------------------------------------------------------------------
// Pseudo-terminal
// ---------------------------------------------------------------------------------------------

/// Writes `<tmp>/bin/pty-run`, a Python script (from the venv) that runs its arguments as a
/// session leader on a new pseudo-terminal (stdin, stdout and stderr are the terminal, which is
/// its controlling terminal with it in the foreground), copies everything written to the
/// terminal to its own stdout, and exits with the program's status. Use it as a wrapper.
pub fn pty_runner(t: &Test) -> PathBuf {
    let python = super::Venv::get().python();
    t.script(
        "pty-run",
        &format!(
            r#"#!{python}
import os, pty, sys
argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
out = bytearray()
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(bytes(out))
sys.stdout.flush()
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"#,
            python = python.display()
        ),
    )
}

/// Terminal output with the terminal's `\r\n` turned back into `\n`.
pub fn from_terminal(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// A program (an interactive shell) running on a pseudo-terminal of its own, driven like a
/// user at a keyboard: [`OnTerminal::type_text`] sends keys, [`OnTerminal::expect`] waits for
/// text to appear on the terminal. Killed with its session's processes when dropped.
pub struct OnTerminal {
    master: std::fs::File,
    child: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// How much of `screen` earlier [`OnTerminal::expect`] calls consumed.
    seen: usize,
    timeout: Duration,
}

impl Launch<'_> {
    /// Starts the program as the leader of a new session on a new pseudo-terminal (its stdin,
    /// stdout, stderr and controlling terminal), as a terminal emulator starts a shell.
    pub fn on_terminal(mut self) -> OnTerminal {
        self.session = true;
        let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal");
        let slave = std::fs::File::from(pty.slave);
        let mut command = self.command();
        command
            .stdin(slave.try_clone().expect("dup the terminal"))
            .stdout(slave.try_clone().expect("dup the terminal"))
            .stderr(slave);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the program on a terminal: {e}"));
        let master = std::fs::File::from(pty.master);
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut reader, copy) = (
            master.try_clone().expect("dup the terminal"),
            std::sync::Arc::clone(&screen),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the terminal's other side has closed it.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                copy.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            master,
            child,
            screen,
            seen: 0,
            timeout: self.t.timeout,
        }
    }
}

impl OnTerminal {
    /// Everything written to the terminal so far (`\r\n` as `\n`, sentinels redacted).
    pub fn screen(&self) -> String {
        let bytes = self.screen.lock().unwrap_or_else(|p| p.into_inner());
        secrets::redact(&from_terminal(&String::from_utf8_lossy(&bytes)))
    }

    /// Types `text` (`"\x1a"` is Ctrl-Z, `"\n"` Enter).
    pub fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .and_then(|()| self.master.flush())
            .expect("type on the terminal");
    }

    /// Waits until `text` appears on the terminal after what earlier calls found, and moves
    /// past it. Panics with the screen after the Test's timeout.
    #[track_caller]
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + self.timeout;
        loop {
            {
                let bytes = self.screen.lock().unwrap_or_else(|p| p.into_inner());
                let rest = &bytes[self.seen.min(bytes.len())..];
                if let Some(at) = rest.windows(text.len()).position(|w| w == text.as_bytes()) {
                    self.seen += at + text.len();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear on the terminal within {:?}\n--- terminal ---\n{}\n----------------",
                self.timeout,
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the program to exit (the Test's timeout) and returns its status.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the program") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the program on the terminal did not exit within {:?}\n--- terminal ---\n{}",
                self.timeout,
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The session's processes: the shell and every job it started.
            let sid = Pid::from_raw(self.child.id() as i32);
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if nix::unistd::getsid(Some(Pid::from_raw(pid))) == Ok(sid) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

fn probe(prefix: &[&str], script: &str) -> Result<(), String> {
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", prefix[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} sh -c ...` failed: {}",
            prefix.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn first_working(
    candidates: &[&'static [&'static str]],
    script: &str,
) -> Result<&'static [&'static str], String> {
    let mut reasons = Vec::new();
    for prefix in candidates {
        match probe(prefix, script) {
            Ok(()) => return Ok(prefix),
            Err(e) => reasons.push(e),
        }
    }
    Err(reasons.join("; "))
}

/// The `unshare` prefix that gives a private mount namespace in which tmpfs and read-only bind
/// mounts can be made (as root: `unshare -m`; otherwise with a user namespace). Probed once.
pub fn mount_namespace() -> Result<&'static [&'static str], String> {
    static PREFIX: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            first_working(
                &[&["unshare", "-m"], &["unshare", "-r", "-m"]],
                r#"d=$(mktemp -d) || exit 1
mount -t tmpfs -o size=4k tmpfs "$d" && mount --bind "$d" "$d" && mount -o remount,ro,bind "$d"
rc=$?
umount "$d" 2>/dev/null; umount "$d" 2>/dev/null; rmdir "$d"
exit $rc"#,
            )
        })
        .clone()
}

/// The `unshare` prefix that runs a program as PID 1 of a new PID namespace with its own
/// `/proc`. Probed once.
pub fn pid_namespace() -> Result<&'static [&'static str], String> {
    static PREFIX: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            first_working(
                &[
                    &["unshare", "-p", "-f", "--mount-proc"],
                    &["unshare", "-r", "-p", "-f", "--mount-proc"],
                ],
                r#"test "$$" = 1"#,
            )
        })
        .clone()
}

/// A test that cannot run here fails, with the reason and the fix: it used
/// to report "SKIPPED" and pass, so a machine without namespaces passed tests that never ran.
pub fn cannot_run(test: &str, why: &str) -> ! {
    panic!(
        "{test} cannot run here: {why}\nTo fix: this test needs Linux namespaces: run the tests as \
         root (CI does), or where `unshare -r` works (enable unprivileged user namespaces: \
         `sysctl kernel.unprivileged_userns_clone=1`, and on Ubuntu \
         `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)"
    )
}

/// Whether this process runs as root (CI does).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
