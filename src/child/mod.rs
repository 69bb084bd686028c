//! Running the child: its environment, its process group, signal forwarding, waiting.
//!
//! The child's exit status is returned as a value so that cleanup always runs (uv's
//! `child.rs` is the model). Rationale for the process group and the terminal is in
//! [`terminal`].

pub mod mask;
pub mod signals;
#[cfg(target_os = "linux")]
mod spawn;
pub mod startup;
pub mod terminal;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt as _;
#[cfg(not(target_os = "linux"))]
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::io::{Read, Write};
#[cfg(not(target_os = "linux"))]
use std::process::Stdio;
use std::sync::{mpsc, Arc};

use nix::sys::signal::{kill, killpg, Signal};
use zeroize::Zeroizing;

use crate::resolve::Auth;
use mask::Lazy;
use nix::unistd::Pid;

use crate::envnames as names;
use crate::error::Error;
use crate::exit::Exit;
use signals::{Event, Signals};
use terminal::Terminal;

/// The search path used when the child's environment has no `PATH` (as `execvp` does).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Finds the program the way `execvp` would, so that "not found" (127) and "not executable"
/// (126) are decided before any secret is fetched.
pub fn find_program(name: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, (Exit, Error)> {
    let shown = Path::new(name).display().to_string();
    if name.is_empty() {
        return Err((Exit::NotFound, Error::new("no command given")));
    }
    let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
        vec![PathBuf::from(name)]
    } else {
        let path = path_var
            .filter(|p| !p.is_empty())
            .unwrap_or(OsStr::new(DEFAULT_PATH));
        std::env::split_paths(path)
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                }
            })
            .map(|dir| dir.join(name))
            .collect()
    };
    let mut not_executable = None;
    for c in &candidates {
        match std::fs::metadata(c) {
            Ok(m) if m.is_file() => {
                if nix::unistd::access(c.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() {
                    return Ok(c.clone());
                }
                not_executable.get_or_insert_with(|| c.clone());
            }
            Ok(_) => {
                not_executable.get_or_insert_with(|| c.clone());
            }
            Err(_) => {}
        }
    }
    match not_executable {
        Some(p) => Err((
            Exit::CannotExecute,
            Error::new(format!(
                "cannot execute {}: not an executable file",
                p.display()
            )),
        )),
        None => Err((
            Exit::NotFound,
            Error::new(format!("command not found: {shown}"))
                .hint("check the command after `--` and the PATH cme-exec passes to it"),
        )),
    }
}

/// How the child's environment is made.
#[derive(Clone, Debug, Default)]
pub struct EnvPolicy {
    /// Start from an empty environment (`--empty-env`).
    pub empty: bool,
    /// Variables kept from cme-exec's environment even if a reference read them (`--keep-env`).
    pub keep: Vec<String>,
}

/// Whether cme would read `name` as (part of) its `auth` setting: `CME_AUTH`, `CME_AUTH__*`,
/// matched case-insensitively as pydantic-settings does.
fn is_cme_auth_var(name: &OsStr) -> bool {
    let upper = name.to_string_lossy().to_ascii_uppercase();
    upper == names::CME_AUTH || upper.starts_with("CME_AUTH__")
}

/// The child's environment: cme-exec's own, minus every variable that held a credential
/// cme-exec used, any inherited `CME_AUTH*` and the CI's ID-token request variables, plus the
/// hand-over variables. `--keep-env` keeps any of them but `CME_AUTH*`.
pub fn child_env(
    parent: &std::collections::BTreeMap<OsString, OsString>,
    policy: &EnvPolicy,
    consumed: &BTreeSet<String>,
    add: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let kept = |name: &OsStr| policy.keep.iter().any(|k| OsStr::new(k) == name);
    let mut env: Vec<(OsString, OsString)> = parent
        .iter()
        .filter(|(k, _)| {
            if policy.empty {
                return kept(k);
            }
            if is_cme_auth_var(k) || k.as_os_str() == OsStr::new(names::CME_CONFIG_PATH) {
                return false;
            }
            let never = |k: &str| consumed.contains(k) || names::ID_TOKEN_REQUEST.contains(&k);
            kept(k) || !k.to_str().is_some_and(never)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push((names::CME_NON_INTERACTIVE.into(), "1".into()));
    for (k, v) in add {
        env.retain(|(e, _)| e != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Everything needed to start the child.
pub struct Spec<'a> {
    pub program: &'a Path,
    pub argv: &'a [OsString],
    pub env: Vec<(OsString, OsString)>,
    pub grace: Duration,
    /// `--mask`: the child's stdout and/or stderr go through a filter made from these secrets
    /// (built while the child starts, not before).
    pub mask: Option<Mask<'a>>,
}

/// The child's environment (with `--via env`, the credentials) is wiped when the spec is
/// dropped. The copy std's `Command` makes for `execve` is not under cme-exec's control.
impl Drop for Spec<'_> {
    fn drop(&mut self) {
        cme_exec_providers::context::wipe_env(&mut self.env);
    }
}

/// Which of the child's output streams are masked, with which secrets. An unmasked stream is
/// cme-exec's own, inherited (a terminal stays the child's terminal).
pub struct Mask<'a> {
    pub auth: &'a Auth,
    pub stdout: bool,
    pub stderr: bool,
}

/// How long the output filters may take to drain after the child exited (a grandchild that
/// keeps the pipe open must not keep cme-exec waiting).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies `from` to `to` through the mask, until EOF. Signals `done` when finished.
fn pump(mut from: impl Read, mut to: impl Write, masker: Arc<Lazy>, done: mpsc::Sender<()>) {
    // Outer `None`: no output yet; inner `None`: nothing to mask.
    let mut stream: Option<Option<mask::Stream<'_>>> = None;
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // The automaton, at the first output (see `Lazy`).
                if stream.is_none() {
                    stream = Some(masker.get().map(mask::Masker::stream));
                }
                match stream.as_mut().and_then(Option::as_mut) {
                    Some(s) => s.feed(&buf[..n], &mut out),
                    None => out.extend_from_slice(&buf[..n]),
                }
                // The reader of our output is gone (`cme-exec --mask -- cme ... | head`): close
                // the child's pipe, so that its next write fails (EPIPE or SIGPIPE) as it would
                // without cme-exec, instead of running a whole export into nowhere. Any other
                // write error: keep draining, so the child never blocks.
                if let Err(e) = to.write_all(&out).and_then(|()| to.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        drop(from);
                        let _ = done.send(());
                        return;
                    }
                }
                out.clear();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(s) = stream.as_mut().and_then(Option::as_mut) {
        s.finish(&mut out);
    }
    let _ = to.write_all(&out).and_then(|()| to.flush());
    let _ = done.send(());
}

/// Starts the child, forwards signals, and waits for it. Returns its exit as cme-exec's.
pub async fn run(spec: Spec<'_>, signals: &mut Signals) -> Result<Exit, (Exit, Error)> {
    let terminal = Terminal::controlling();
    // The child gets the terminal only if cme-exec is the foreground job (not `cme-exec &`).
    let take_terminal = terminal
        .as_ref()
        .filter(|t| t.is_foreground())
        .map(Terminal::fd);
    let (pid, child_stdout, child_stderr) = start(&spec, take_terminal).map_err(|e| {
        let exit = match e.kind() {
            std::io::ErrorKind::NotFound => Exit::NotFound,
            _ => Exit::CannotExecute,
        };
        (
            exit,
            Error::new(format!("cannot start {}", spec.program.display())).cause(e.to_string()),
        )
    })?;
    // Also from this side, so neither order of parent and child can leave a gap.
    let _ = nix::unistd::setpgid(pid, pid);
    if let (Some(t), Some(_)) = (&terminal, take_terminal) {
        t.hand_to(pid);
    }
    let (done, pumps) = start_pumps(child_stdout, child_stderr, spec.mask.as_ref());
    let status = wait(pid, terminal.as_ref(), signals, spec.grace).await;
    if let Some(t) = &terminal {
        t.take_back_from(pid);
    }
    drain(&done, pumps);
    Ok(status)
}

/// The child's pid and, with `--mask`, the read ends of its piped stdout and stderr.
type Started = (Pid, Option<std::fs::File>, Option<std::fs::File>);

/// Starts the child in a process group of its own, with the spec's environment only and its
/// masked streams piped. On Linux by `clone(CLONE_VM | CLONE_VFORK)`, without copying
/// cme-exec; the child sets its death signal itself ([`spawn`]).
#[cfg(target_os = "linux")]
fn start(spec: &Spec<'_>, take_terminal: Option<RawFd>) -> std::io::Result<Started> {
    let (pipe_stdout, pipe_stderr) = spec
        .mask
        .as_ref()
        .map_or((false, false), |m| (m.stdout, m.stderr));
    let started = spawn::spawn(
        spec.program,
        spec.argv,
        &spec.env,
        pipe_stdout,
        pipe_stderr,
        take_terminal,
        startup::at_start(),
    )?;
    Ok((Pid::from_raw(started.pid), started.stdout, started.stderr))
}

/// Elsewhere by std's `Command`: a hook between fork and exec makes std fork the whole process
/// instead of using posix_spawn (vfork), so there is one only when needed to hand the terminal
/// over without a race, or to give back a signal state posix_spawn would not (see `startup`).
#[cfg(not(target_os = "linux"))]
fn start(spec: &Spec<'_>, take_terminal: Option<RawFd>) -> std::io::Result<Started> {
    let mut cmd = std::process::Command::new(spec.program);
    cmd.arg0(&spec.argv[0])
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    let start = startup::at_start();
    if take_terminal.is_some() || start.needs_restoring() {
        unsafe {
            cmd.pre_exec(move || {
                terminal::in_child(take_terminal);
                start.restore_in_child();
                Ok(())
            });
        }
    }
    if let Some(m) = &spec.mask {
        if m.stdout {
            cmd.stdout(Stdio::piped());
        }
        if m.stderr {
            cmd.stderr(Stdio::piped());
        }
    }
    let mut child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let out = child
        .stdout
        .take()
        .map(|o| std::fs::File::from(std::os::fd::OwnedFd::from(o)));
    let err = child
        .stderr
        .take()
        .map(|e| std::fs::File::from(std::os::fd::OwnedFd::from(e)));
    // std's Child would reap on wait(); we reap with waitpid ourselves (to see stops too).
    std::mem::forget(child);
    Ok((pid, out, err))
}

/// With `--mask`, a thread per piped stream copies it through the mask. Returns where they
/// say they are done, and how many there are.
fn start_pumps(
    stdout: Option<std::fs::File>,
    stderr: Option<std::fs::File>,
    mask: Option<&Mask<'_>>,
) -> (mpsc::Receiver<()>, usize) {
    let (done_tx, done_rx) = mpsc::channel();
    let mut pumps = 0;
    if let Some(mask) = mask {
        // Nothing long enough to mask still goes through the pipes: the child sees the same
        // kind of stdout whatever its secrets are.
        let masker = Arc::new(Lazy::new(mask::values_of(mask.auth)));
        if let Some(out) = stdout {
            let (m, tx) = (masker.clone(), done_tx.clone());
            std::thread::spawn(move || pump(out, std::io::stdout(), m, tx));
            pumps += 1;
        }
        if let Some(err) = stderr {
            let (m, tx) = (masker.clone(), done_tx.clone());
            std::thread::spawn(move || pump(err, std::io::stderr(), m, tx));
            pumps += 1;
        }
    }
    (done_rx, pumps)
}

/// Waits for the child to exit, forwarding signals to it; after a terminating one, kills its
/// process group once `grace` is over.
async fn wait(
    pid: Pid,
    terminal: Option<&Terminal>,
    signals: &mut Signals,
    grace: Duration,
) -> Exit {
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    loop {
        if let Some(exit) = reap(pid, terminal) {
            return exit;
        }
        let sleep = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = signals.recv() => {
                match event {
                    Event::Signal(sig) => {
                        tracing::debug!(signal = %sig, "forwarding to the child");
                        let _ = sig.send_to(pid);
                        if signals::is_terminating(sig) && grace_deadline.is_none() {
                            grace_deadline = Some(tokio::time::Instant::now() + grace);
                        }
                    }
                    // Continued while the child runs (`fg` after a stop of cme-exec alone,
                    // `kill -CONT`): if that made cme-exec the foreground job, the child gets
                    // the terminal. (`fg` of a running job sends no signal: see `stopped`.)
                    Event::Continued => {
                        if let Some(t) = terminal {
                            t.hand_to(pid);
                        }
                    }
                    Event::Child => {}
                }
            }
            () = sleep => {
                tracing::debug!("grace period over: killing the child's process group");
                let _ = killpg(pid, Signal::SIGKILL);
                grace_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    }
}

/// Waits, at most [`DRAIN_TIMEOUT`] in all, for the output filters to pass on what is left.
fn drain(done: &mpsc::Receiver<()>, pumps: usize) {
    let drain_until = std::time::Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..pumps {
        let left = drain_until.saturating_duration_since(std::time::Instant::now());
        if done.recv_timeout(left).is_err() {
            tracing::warn!(
                "the child's output is still open (a background process?); not waiting for it"
            );
            break;
        }
    }
}

/// In the child, between `clone` and exec ([`spawn`]): SIGKILL when cme-exec is gone, so that a SIGKILLed
/// cme-exec (the OOM killer, `kill -9`, a supervisor's last resort) does not leave the child
/// running with nobody to forward its signals, enforce `--grace`, mask its output or take the
/// terminal back. SIGKILL rather than SIGTERM: cme-exec forwards every catchable signal and
/// waits, so it only vanishes this way when whoever stopped it already chose the hard stop,
/// and no one is left to follow a SIGTERM the child ignores with a SIGKILL after `--grace`.
/// The death signal survives `execve` (except of a set-user-ID program) and reaches the child
/// only, not processes the child starts (cme starts none).
///
/// Linux sends it when the *thread* that forked the child exits, not the process: the child is
/// spawned by [`run`] on the thread that also waits for it (the current-thread runtime of
/// `session::runtime`, driven by `block_on` on the main thread), so that thread lives exactly
/// as long as the wait. If cme-exec died between the fork and the `prctl`, the child was
/// already re-parented and no signal will come: it checks its parent after the call and exits.
///
/// macOS has no equivalent: there a SIGKILLed cme-exec leaves the child running (in its own
/// process group, still holding its hand-over) until it exits by itself.
///
/// # Safety
/// Only async-signal-safe calls; call only in the child before exec.
#[cfg(target_os = "linux")]
unsafe fn die_with_parent(parent: libc::pid_t) {
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::getppid() != parent {
        libc::_exit(125);
    }
}

/// Reaps whatever has exited (as PID 1, orphans too). Returns the child's exit once it is gone.
///
/// `waitpid` is called through libc: nix's decodes a status only for the signals it names, and
/// a child killed by a real-time signal (now forwarded) would be reaped and lost.
fn reap(child: Pid, terminal: Option<&Terminal>) -> Option<Exit> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid pointer to a status.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if pid <= 0 {
            return None; // nothing changed, or no child left (ECHILD)
        }
        if pid != child.as_raw() {
            continue; // an orphan (cme-exec as PID 1), or a stop of one
        }
        if libc::WIFEXITED(status) {
            return Some(Exit::Child(libc::WEXITSTATUS(status) as u8));
        }
        if libc::WIFSIGNALED(status) {
            return Some(Exit::Signal(libc::WTERMSIG(status)));
        }
        if libc::WIFSTOPPED(status) {
            if let Some(t) = terminal {
                stopped(child, libc::WSTOPSIG(status), t);
            }
        }
    }
}

/// The child's group stopped (Ctrl-Z, or a read of the terminal from the background).
fn stopped(child: Pid, signal: libc::c_int, terminal: &Terminal) {
    let for_the_terminal = signal == libc::SIGTTIN || signal == libc::SIGTTOU;
    // The child stopped for using the terminal that cme-exec, the foreground job again (`fg`
    // after `bg`, which does not signal a running job), holds: it is the child's.
    if for_the_terminal && terminal.hand_to(child) {
        let _ = killpg(child, Signal::SIGCONT);
        return;
    }
    // Otherwise stop cme-exec too, so the shell sees the job stopped. Continued by `fg`,
    // cme-exec is the foreground job again and hands the terminal to the child; continued by
    // `bg`, the shell keeps it. Either way the child continues.
    terminal.take_back_from(child);
    let _ = kill(Pid::this(), Signal::SIGTSTP);
    terminal.hand_to(child);
    let _ = killpg(child, Signal::SIGCONT);
}
