//! The signals cme-exec listens to, installed before anything is fetched, so that a signal
//! during resolution aborts it and one during the run is forwarded to the child.
//!
//! **Every catchable signal is forwarded** (tini's and dumb-init's rule): a signal
//! cme-exec did not catch would kill it with its default action and leave the child running
//! with nobody to relay its masked output, revoke a login token or remove a `--via file`
//! hand-over. The exceptions, each with its reason, are [`NOT_FORWARDED`]. The real-time
//! signals a program may use (`SIGRTMIN()..SIGRTMAX()` as glibc reports them at run time; glibc
//! keeps the ones below `SIGRTMIN()` for itself) are forwarded too.
//!
//! A signal that was ignored when cme-exec started (`nohup`, a non-interactive shell's
//! background job) is left ignored: cme-exec installs no handler for it, and the child
//! inherits the same disposition it would have had without cme-exec.
//!
//! One handler receives them all and writes their numbers to a pipe ([`Source`]); SIGCHLD
//! alone is tokio's (shared with its process driver).

use std::fmt;
use std::io;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// A signal number, standard or real-time (nix's [`Signal`] has no real-time signals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sig(libc::c_int);

impl Sig {
    pub fn number(self) -> i32 {
        self.0
    }

    /// Sends this signal to `pid`.
    pub fn send_to(self, pid: nix::unistd::Pid) -> nix::Result<()> {
        nix::errno::Errno::result(unsafe { libc::kill(pid.as_raw(), self.0) }).map(drop)
    }
}

impl From<Signal> for Sig {
    fn from(sig: Signal) -> Sig {
        Sig(sig as libc::c_int)
    }
}

/// `SIGTERM`, `SIGRTMIN+3`, `SIGRTMAX`, as `kill -l` names them.
impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, max) = realtime().map_or((-1, -1), |r| (*r.start(), *r.end()));
        match Signal::try_from(self.0) {
            Ok(sig) => f.write_str(sig.as_str()),
            Err(_) if self.0 == max => f.write_str("SIGRTMAX"),
            Err(_) if self.0 == min => f.write_str("SIGRTMIN"),
            Err(_) if (min..max).contains(&self.0) => write!(f, "SIGRTMIN+{}", self.0 - min),
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

/// The signals cme-exec does not forward, and why ([security](../../docs/security.md#processes)).
pub const NOT_FORWARDED: &[(libc::c_int, &str)] = &[
    (libc::SIGKILL, "cannot be caught"),
    (libc::SIGSTOP, "cannot be caught"),
    (
        libc::SIGCHLD,
        "cme-exec's own: it says that the child stopped or exited",
    ),
    (
        libc::SIGTSTP,
        "job control: from the terminal it reaches the child's group directly (cme-exec hands \
         the terminal over), and cme-exec follows the child's stop by stopping itself",
    ),
    (
        libc::SIGTTIN,
        "job control: the kernel stops a background group that reads the terminal; it is about \
         cme-exec's own group, not the child's",
    ),
    (
        libc::SIGTTOU,
        "job control: as SIGTTIN, for writing to the terminal",
    ),
    (
        libc::SIGCONT,
        "job control: it continues cme-exec whether caught or not; cme-exec then continues the \
         child itself, and hands it the terminal only when `fg` made cme-exec the foreground job",
    ),
    (
        libc::SIGSEGV,
        "a fault in cme-exec's own code: a handler that returns would run the faulting \
         instruction again, forever",
    ),
    (libc::SIGBUS, "a fault in cme-exec's own code (as SIGSEGV)"),
    (libc::SIGFPE, "a fault in cme-exec's own code (as SIGSEGV)"),
    (libc::SIGILL, "a fault in cme-exec's own code (as SIGSEGV)"),
    (
        libc::SIGTRAP,
        "a breakpoint in cme-exec's own code, for a debugger",
    ),
    (libc::SIGSYS, "a bad system call by cme-exec's own code"),
    (
        libc::SIGABRT,
        "cme-exec's own abort (a failed allocation, a panic while panicking) must end it at \
         once, as tini also leaves it",
    ),
    (
        libc::SIGPIPE,
        "ignored by Rust's runtime so that writing to a closed pipe is an error, not a death; a \
         handler would turn the masking relay's own write errors into signals for the child",
    ),
];

/// Every signal cme-exec forwards, in number order: 1 to 31 except [`NOT_FORWARDED`], then
/// `SIGRTMIN()..=SIGRTMAX()`.
pub fn forwarded() -> Vec<Sig> {
    let standard = 1..32;
    standard
        .chain(realtime().into_iter().flatten())
        .filter(|n| NOT_FORWARDED.iter().all(|(sig, _)| sig != n))
        .map(Sig)
        .collect()
}

/// The real-time signals `SIGRTMIN()..=SIGRTMAX()`. Linux only: macOS has none (and its libc no
/// `SIGRTMIN`), see src/platform.rs.
#[cfg(target_os = "linux")]
fn realtime() -> Option<std::ops::RangeInclusive<libc::c_int>> {
    Some(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// The real-time signals: none on this system.
#[cfg(not(target_os = "linux"))]
fn realtime() -> Option<std::ops::RangeInclusive<libc::c_int>> {
    None
}

/// Signals after which the child gets a grace period, then SIGKILL for its whole group.
pub fn is_terminating(sig: Sig) -> bool {
    [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ]
    .iter()
    .any(|s| *s as libc::c_int == sig.0)
}

/// Signals whose default action leaves a process running: during resolution they are not a
/// reason to stop (every other forwarded signal is: cme-exec stands in for the command that has
/// not started yet).
fn is_harmless(sig: Sig) -> bool {
    sig.0 == libc::SIGWINCH || sig.0 == libc::SIGURG
}

pub struct Signals {
    source: Source,
    child: tokio::signal::unix::Signal,
}

/// What [`Signals::recv`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal to forward.
    Signal(Sig),
    /// SIGCHLD: a child changed state.
    Child,
    /// SIGCONT: cme-exec was continued (`fg` or `bg` after a stop).
    Continued,
}

/// The signals cme-exec receives through [`Source`]: every forwarded one and SIGCONT, less
/// those ignored at start (left ignored, see the module's documentation).
fn received() -> Vec<Sig> {
    let start = super::startup::at_start();
    forwarded()
        .into_iter()
        .chain(std::iter::once(Sig(libc::SIGCONT)))
        .filter(|sig| !start.is_ignored(sig.0))
        .collect()
}

impl Signals {
    /// Installs the handlers. Must run inside the tokio runtime, before the child is spawned.
    pub fn install() -> io::Result<Signals> {
        let source = Source::install(&received())?;
        // SIGCHLD stays with tokio: its process driver (the command provider's helpers) and
        // cme-exec's own wait share the one handler.
        let child = signal(SignalKind::child())?;
        Ok(Signals { source, child })
    }

    /// The next signal (SIGCHLD and SIGCONT included).
    pub async fn recv(&mut self) -> Event {
        let (source, child) = (&mut self.source, &mut self.child);
        tokio::select! {
            biased;
            Some(()) = child.recv() => Event::Child,
            sig = source.recv() => if sig.0 == libc::SIGCONT {
                Event::Continued
            } else {
                Event::Signal(sig)
            },
        }
    }

    /// The next signal that ends a resolution (every forwarded one but SIGWINCH and SIGURG,
    /// whose default is to be ignored), ignoring the others.
    pub async fn terminating(&mut self) -> Sig {
        loop {
            if let Event::Signal(sig) = self.recv().await {
                if !is_harmless(sig) {
                    return sig;
                }
            }
        }
    }
}

/// The write end of [`Source`]'s pipe, for [`on_signal`]; -1 until [`Source::install`].
static PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// The process that installed the handler (cme-exec, not a forked child before its exec).
static OWNER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The one handler of every received signal: writes the signal's number, one byte, to the pipe
/// (async-signal-safe: `write` only, `errno` kept). A full pipe (64 KiB of signals nobody read)
/// drops the byte.
extern "C" fn on_signal(sig: libc::c_int) {
    let saved = nix::errno::Errno::last_raw();
    let fd = PIPE.load(std::sync::atomic::Ordering::Relaxed);
    // Between fork and exec (the `pre_exec` path) the child still has this handler and the
    // pipe: a signal sent to both must be counted once, by cme-exec.
    // SAFETY: `getpid` is async-signal-safe.
    let ours = unsafe { libc::getpid() } == OWNER.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 && ours {
        let byte = sig as u8;
        // SAFETY: writes one byte from a local to a descriptor this process keeps open.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    nix::errno::Errno::set_raw(saved);
}

/// Where the received signals arrive: one handler for all of them writing to one pipe, read in
/// the runtime. It replaces a tokio handler per signal, whose registration cost
/// about 50 `sigaction` calls plus a copy of tokio's registry per signal at every start, and
/// which could not register SIGRTMAX (tokio-rs/tokio#4555). The signals are not blocked: a
/// mask would be inherited by the child, which std's `posix_spawn` leaves as it finds it.
struct Source {
    read: tokio::net::UnixStream,
}

impl Source {
    fn install(signals: &[Sig]) -> io::Result<Source> {
        use std::os::fd::IntoRawFd as _;
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let read = tokio::net::UnixStream::from_std(read)?;
        // The write end lives as long as the process: a handler may run at any time, and one
        // that loaded an earlier `install`'s descriptor must never write into a number that was
        // closed and reused (each command installs once; a second install leaks one descriptor).
        OWNER.store(
            std::process::id() as i32,
            std::sync::atomic::Ordering::SeqCst,
        );
        PIPE.store(write.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
        for sig in signals {
            // SAFETY: installs a handler that only calls `write` (see `on_signal`).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(sig.0, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Source { read })
    }

    /// The next signal, in the order the handler ran (standard signals are merged by the kernel
    /// while pending; real-time ones are queued).
    async fn recv(&mut self) -> Sig {
        let mut byte = [0u8; 1];
        loop {
            if self.read.readable().await.is_err() {
                return std::future::pending().await;
            }
            match self.read.try_read(&mut byte) {
                Ok(1) => return Sig(libc::c_int::from(byte[0])),
                Ok(_) => return std::future::pending().await,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("reading the signal pipe failed: {e}");
                    return std::future::pending().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catchable_signal_but_the_listed_ones_is_forwarded() {
        let forwarded = forwarded();
        let numbers: Vec<i32> = forwarded.iter().map(|s| s.number()).collect();
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGTERM,
            libc::SIGURG,
            libc::SIGXCPU,
            libc::SIGXFSZ,
            libc::SIGVTALRM,
            libc::SIGPROF,
            libc::SIGWINCH,
            libc::SIGIO,
            libc::SIGPWR,
            libc::SIGSTKFLT,
            libc::SIGRTMIN(),
            libc::SIGRTMIN() + 1,
            libc::SIGRTMAX() - 1,
        ] {
            assert!(numbers.contains(&sig), "{} is not forwarded", Sig(sig));
        }
        for (sig, why) in NOT_FORWARDED {
            assert!(!numbers.contains(sig), "{} is forwarded", Sig(*sig));
            assert!(!why.is_empty());
        }
        // glibc's own real-time signals (below SIGRTMIN()) are left alone.
        assert!(numbers.iter().all(|n| *n < 32 || *n >= libc::SIGRTMIN()));
        // 31 standard signals, minus the exceptions, plus the usable real-time ones.
        let realtime = (libc::SIGRTMAX() - libc::SIGRTMIN() + 1) as usize;
        assert_eq!(forwarded.len(), 31 - NOT_FORWARDED.len() + realtime);
    }

    #[test]
    fn signals_are_named_as_kill_names_them() {
        assert_eq!(Sig(libc::SIGALRM).to_string(), "SIGALRM");
        assert_eq!(Sig(libc::SIGRTMIN()).to_string(), "SIGRTMIN");
        assert_eq!(Sig(libc::SIGRTMIN() + 2).to_string(), "SIGRTMIN+2");
        assert_eq!(Sig(libc::SIGRTMAX()).to_string(), "SIGRTMAX");
    }
}
