//! The signals cme-exec listens to, installed before anything is fetched, so that a signal
//! during resolution aborts it and one during the run is forwarded to the child.
//!
//! A signal that was ignored when cme-exec started (`nohup`, a non-interactive shell's
//! background job) is left ignored: cme-exec installs no handler for it, and the child
//! inherits the same disposition it would have had without cme-exec.

use std::io;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// The signals forwarded to the child (SECURITY.md, "Processes").
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Signals after which the child gets a grace period, then SIGKILL for its whole group.
pub fn is_terminating(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
    )
}

pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
    child: tokio::signal::unix::Signal,
}

/// What [`Signals::recv`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Signal(Signal),
    /// SIGCHLD: a child changed state.
    Child,
}

impl Signals {
    /// Installs the handlers. Must run inside the tokio runtime, before the child is spawned.
    pub fn install() -> io::Result<Signals> {
        let mut streams = Vec::new();
        let start = super::startup::at_start();
        for sig in FORWARDED {
            if start.is_ignored(sig as libc::c_int) {
                continue;
            }
            streams.push((sig, signal(SignalKind::from_raw(sig as i32))?));
        }
        let child = signal(SignalKind::child())?;
        Ok(Signals { streams, child })
    }

    /// The next signal (SIGCHLD included).
    pub async fn recv(&mut self) -> Event {
        let (streams, child) = (&mut self.streams, &mut self.child);
        let forwarded = std::future::poll_fn(|cx| {
            for (sig, s) in streams.iter_mut() {
                if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                    return std::task::Poll::Ready(Event::Signal(*sig));
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

    /// The next terminating signal, ignoring the others (used while resolving).
    pub async fn terminating(&mut self) -> Signal {
        loop {
            if let Event::Signal(sig) = self.recv().await {
                if is_terminating(sig) {
                    return sig;
                }
            }
        }
    }
}
