//! The controlling terminal.
//!
//! The child runs in its own process group, so that cme-exec can forward each signal exactly
//! once and kill the child's whole group after the grace period without killing itself. When
//! cme-exec is the terminal's foreground job, it hands the terminal to the child's group (as a
//! shell does for a job), so the child keeps reading the terminal, Ctrl-C and Ctrl-Z reach
//! it directly, and colours and progress bars work. Afterwards the terminal is taken back.

use std::os::fd::{AsRawFd as _, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};

/// cme-exec's terminal, when it is the foreground job on one.
pub struct Terminal {
    our_group: Pid,
}

fn stdin() -> BorrowedFd<'static> {
    unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
}

impl Terminal {
    /// `Some` when stdin is a terminal whose foreground process group is ours.
    pub fn foreground() -> Option<Terminal> {
        let fd = stdin();
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return None;
        }
        let our_group = getpgrp();
        (tcgetpgrp(fd).ok()? == our_group).then_some(Terminal { our_group })
    }

    /// Makes `group` the terminal's foreground process group. SIGTTOU is blocked meanwhile:
    /// a background process may otherwise not change it.
    pub fn give_to(&self, group: Pid) {
        with_sigttou_blocked(|| {
            let _ = tcsetpgrp(stdin(), group);
        });
    }

    /// Gives the terminal back to cme-exec's own group.
    pub fn take_back(&self) {
        self.give_to(self.our_group);
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

/// Between fork and exec, in the child: its own process group and, if asked, the terminal.
/// Only async-signal-safe calls.
///
/// # Safety
/// Must only be called in the forked child before exec.
pub unsafe fn in_child(take_terminal: bool) {
    libc::setpgid(0, 0); // std does it too; doing it first makes tcsetpgrp below safe

    if take_terminal {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::sigprocmask(libc::SIG_BLOCK, &block, std::ptr::null_mut());
        libc::tcsetpgrp(stdin().as_raw_fd(), libc::getpid());
    }
}
