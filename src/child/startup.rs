//! The signal state cme-exec was started with, which the child gets back.
//!
//! Rust's runtime sets SIGPIPE to ignored before `main` runs, so the state is captured from an
//! `.init_array` function (see `main.rs`), which the C runtime calls before Rust's. Which
//! signals were ignored, and which were blocked, is then given back to the child: its signal
//! dispositions and mask are what they would have been without cme-exec.

use std::sync::OnceLock;

/// Signals ignored and the mask at process start.
pub struct SignalState {
    /// Bit `n - 1` is set when signal `n` (1..=64) was ignored.
    ignored: u64,
    pub mask: libc::sigset_t,
}

// SAFETY: `sigset_t` is plain data.
unsafe impl Sync for SignalState {}
unsafe impl Send for SignalState {}

static AT_START: OnceLock<SignalState> = OnceLock::new();

fn read_now() -> SignalState {
    let mut ignored = 0u64;
    unsafe {
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                ignored |= 1 << (sig - 1);
            }
        }
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        SignalState { ignored, mask }
    }
}

/// Called from `.init_array`, before Rust's runtime changes SIGPIPE.
pub extern "C" fn capture() {
    let _ = AT_START.set(read_now());
}

/// The state at start (read now if [`capture`] did not run, as in unit tests).
pub fn at_start() -> &'static SignalState {
    AT_START.get_or_init(read_now)
}

impl SignalState {
    pub fn is_ignored(&self, sig: libc::c_int) -> bool {
        (1..=64).contains(&sig) && self.ignored & (1 << (sig - 1)) != 0
    }

    pub fn mask_is_empty(&self) -> bool {
        (1..=64).all(|sig| unsafe { libc::sigismember(&self.mask, sig) } != 1)
    }

    /// Whether the child needs a hook between fork and exec to get this state back: std's
    /// posix_spawn path resets SIGPIPE to default and empties the mask, and SIGCHLD cannot stay
    /// ignored in cme-exec (it has to wait for the child).
    pub fn needs_restoring(&self) -> bool {
        !self.mask_is_empty() || self.is_ignored(libc::SIGPIPE) || self.is_ignored(libc::SIGCHLD)
    }

    /// In the child, between fork and exec: the ignored signals and the mask, back.
    ///
    /// # Safety
    /// Only async-signal-safe calls; call only in the forked child.
    pub unsafe fn restore_in_child(&self) {
        for sig in 1..=64 {
            if self.is_ignored(sig) && sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
    }
}

/// cme-exec itself runs with no signal blocked: a SIGCHLD blocked by whoever started it would
/// otherwise never arrive, and the run would hang.
pub fn unblock_all() {
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}
