//! The signals cme-exec listens to, installed before anything is fetched, so that a signal
//! during resolution aborts it and one during the run is forwarded to the child.
//!
//! **Every catchable signal is forwarded** (tini's and dumb-init's rule, issue 14): a signal
//! cme-exec did not catch would kill it with its default action and leave the child running
//! with nobody to relay its masked output, revoke a login token or remove a `--via file`
//! hand-over. The exceptions, each with its reason, are [`NOT_FORWARDED`]. The real-time
//! signals a program may use (`SIGRTMIN()..SIGRTMAX()` as glibc reports them at run time; glibc
//! keeps the ones below `SIGRTMIN()` for itself) are forwarded too.
//!
//! A signal that was ignored when cme-exec started (`nohup`, a non-interactive shell's
//! background job) is left ignored: cme-exec installs no handler for it, and the child
//! inherits the same disposition it would have had without cme-exec.

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

/// The signals cme-exec does not forward, and why (SECURITY.md, "Processes").
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
    streams: Vec<(Sig, tokio::signal::unix::Signal)>,
    child: tokio::signal::unix::Signal,
    continued: Option<tokio::signal::unix::Signal>,
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

impl Signals {
    /// Installs the handlers. Must run inside the tokio runtime, before the child is spawned.
    pub fn install() -> io::Result<Signals> {
        let mut streams = Vec::new();
        let start = super::startup::at_start();
        for sig in forwarded() {
            if start.is_ignored(sig.0) {
                continue;
            }
            match signal(SignalKind::from_raw(sig.0)) {
                Ok(stream) => streams.push((sig, stream)),
                // tokio 1.x keeps slots for signals 1 to SIGRTMAX()-1 only and refuses
                // SIGRTMAX itself ("signal too large"; tokio-rs/tokio#4555 counted the range
                // as ending before it). Every other refusal is a real failure.
                Err(_) if realtime().is_some_and(|r| sig.0 == *r.end()) => {
                    tracing::debug!("SIGRTMAX cannot be caught through tokio; not forwarded");
                }
                Err(e) => return Err(e),
            }
        }
        let child = signal(SignalKind::child())?;
        let continued = if start.is_ignored(libc::SIGCONT) {
            None
        } else {
            Some(signal(SignalKind::from_raw(libc::SIGCONT))?)
        };
        Ok(Signals {
            streams,
            child,
            continued,
        })
    }

    /// The next signal (SIGCHLD and SIGCONT included).
    pub async fn recv(&mut self) -> Event {
        let (streams, child) = (&mut self.streams, &mut self.child);
        let continued = &mut self.continued;
        let forwarded = std::future::poll_fn(|cx| {
            for (sig, s) in streams.iter_mut() {
                if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                    return std::task::Poll::Ready(Event::Signal(*sig));
                }
            }
            if let Some(c) = continued {
                if let std::task::Poll::Ready(Some(())) = c.poll_recv(cx) {
                    return std::task::Poll::Ready(Event::Continued);
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            biased;
            Some(()) = child.recv() => Event::Child,
            e = forwarded => e,
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
