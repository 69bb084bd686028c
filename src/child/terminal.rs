//! The controlling terminal.
//!
//! The child runs in its own process group, so that cme-exec can forward each signal exactly
//! once and kill the child's whole group after the grace period without killing itself. When
//! cme-exec is the terminal's foreground job, it hands the terminal to the child's group (as a
//! shell does for a job), so the child keeps reading the terminal, Ctrl-C and Ctrl-Z reach
//! it directly, and colours and progress bars work. Afterwards the terminal is taken back.
//!
//! The terminal is found as a shell finds it: the first of stdin, stdout and stderr that is a
//! terminal, and cme-exec's controlling one (`cme-exec ... </dev/null` typed at a
//! prompt is still the foreground job).
//!
//! Whether cme-exec is the foreground job is asked each time, never remembered: after Ctrl-Z,
//! `fg` makes cme-exec's group the foreground one again and continues it, and `bg` only
//! continues it. Handing the terminal over after `bg` would take it from the shell, which then
//! prints its prompt and can never read the next command. So the terminal changes
//! hands only from cme-exec's own group to the child's and back, never from anyone else's.

use std::os::fd::{BorrowedFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// cme-exec's controlling terminal.
pub struct Terminal {
    fd: RawFd,
    our_group: Pid,
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Terminal {
    /// `Some` when one of stdin, stdout and stderr is cme-exec's controlling terminal (the first
    /// that is), whether or not cme-exec is its foreground job.
    pub fn controlling() -> Option<Terminal> {
        [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO]
            .into_iter()
            // tcgetpgrp fails (ENOTTY) on a terminal that is not cme-exec's controlling one.
            .find(|&fd| {
                nix::unistd::isatty(borrow(fd)).unwrap_or(false) && tcgetpgrp(borrow(fd)).is_ok()
            })
            .map(|fd| Terminal {
                fd,
                our_group: getpgrp(),
            })
    }

    /// The descriptor the terminal was found on.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether cme-exec's own process group is the terminal's foreground group now.
    pub fn is_foreground(&self) -> bool {
        tcgetpgrp(borrow(self.fd)).is_ok_and(|g| g == self.our_group)
    }

    /// Hands the terminal to `group` when cme-exec is its foreground job (after `fg`, not after
    /// `bg`). Returns whether it did.
    pub fn hand_to(&self, group: Pid) -> bool {
        if !self.is_foreground() {
            return false;
        }
        self.set_foreground(group);
        true
    }

    /// Takes the terminal back from `group` if `group` still has it (after a `bg` it never got
    /// it, and the shell's own group must keep it).
    pub fn take_back_from(&self, group: Pid) {
        if tcgetpgrp(borrow(self.fd)).is_ok_and(|g| g == group) {
            self.set_foreground(self.our_group);
        }
    }

    /// Makes `group` the terminal's foreground process group. SIGTTOU is blocked meanwhile:
    /// a background process may otherwise not change it.
    fn set_foreground(&self, group: Pid) {
        with_sigttou_blocked(|| {
            let _ = tcsetpgrp(borrow(self.fd), group);
        });
    }
}

fn with_sigttou_blocked(f: impl FnOnce()) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
    f();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
}

/// Between fork and exec, in the child: its own process group and, if asked, the terminal on
/// descriptor `terminal`. Only async-signal-safe calls.
///
/// # Safety
/// Must only be called in the forked child before exec.
pub unsafe fn in_child(terminal: Option<RawFd>) {
    libc::setpgid(0, 0); // std does it too; doing it first makes tcsetpgrp below safe

    if let Some(fd) = terminal {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &block, std::ptr::null_mut());
        libc::tcsetpgrp(fd, libc::getpid());
    }
}
