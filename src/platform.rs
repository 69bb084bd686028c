//! What differs between the operating systems cme-exec runs on (Linux, macOS), in one place.
//!
//! Linux-only pieces and why they are Linux-only:
//! - `--via memfd` (`src/handover/memfd.rs`): `memfd_create` and `/proc/self/fd` exist only on
//!   Linux ([`HAS_MEMFD`]). Elsewhere the default hand-over is `--via file`.
//! - `PR_SET_DUMPABLE` (`prctl`): Linux only. macOS gets `PT_DENY_ATTACH` and a zero core limit.
//! - The tmpfs check of `--via file` (`statfs` magic numbers): Linux only; macOS has no tmpfs in
//!   `$TMPDIR`, see [`is_in_memory`].
//!
//! - Real-time signals (`SIGRTMIN()..=SIGRTMAX()`, forwarded to the child in
//!   `src/child/signals.rs`): Linux only; macOS has none.
//!
//! PID 1 reaping (`src/child/mod.rs`, `waitpid(-1)`) needs no `cfg`: it is portable, and only
//! matters in a Linux container where cme-exec is PID 1.
//!
//! This module answers questions about the system and knows nothing of cme-exec's own types:
//! the hand-over picks its default from [`HAS_MEMFD`], not the other way round.

use std::os::fd::OwnedFd;

/// Whether anonymous memory files (`memfd_create`, reachable as `/proc/self/fd/N`) exist here.
pub const HAS_MEMFD: bool = cfg!(target_os = "linux");

/// No core dumps, no debugger or ptrace attaching by other processes of the same user.
#[cfg(target_os = "linux")]
pub fn harden() {
    // Reset by execve, so cme itself is not affected.
    let _ = nix::sys::prctl::set_dumpable(false);
}

/// No core dumps, no debugger or ptrace attaching by other processes of the same user.
#[cfg(target_os = "macos")]
pub fn harden() {
    // SAFETY: plain system calls with constant arguments and no pointers kept.
    unsafe {
        // Denies any later ptrace attach (and lldb, dtrace) to this process. Nothing here
        // relies on whether the flag survives the execve of cme.
        libc::ptrace(libc::PT_DENY_ATTACH, 0, std::ptr::null_mut(), 0);
        // No core file (macOS writes them to /cores when enabled). Only the soft limit: cme
        // inherits it, and may raise it again.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
            limit.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &limit);
        }
    }
}

/// Other systems (not supported, but kept compiling): at least no core file.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn harden() {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call on a local value.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
}

/// Whether a directory is on tmpfs or ramfs (`None`: this system cannot tell).
#[cfg(target_os = "linux")]
pub fn is_in_memory(fd: &OwnedFd) -> Option<bool> {
    use nix::sys::statfs::{fstatfs, FsType, TMPFS_MAGIC};
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    match fstatfs(fd) {
        Ok(s) => {
            let t = s.filesystem_type();
            Some(t == TMPFS_MAGIC || t == RAMFS_MAGIC)
        }
        Err(_) => Some(false),
    }
}

/// Whether a directory is on tmpfs or ramfs (`None`: this system cannot tell). macOS has no
/// tmpfs where users keep temporary files; its per-user `$TMPDIR` is on disk but private (0700),
/// and warning on every run about what cannot be changed would teach users to ignore warnings.
#[cfg(not(target_os = "linux"))]
pub fn is_in_memory(_fd: &OwnedFd) -> Option<bool> {
    None
}
