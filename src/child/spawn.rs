//! Starting the child on Linux without copying cme-exec: `clone(CLONE_VM | CLONE_VFORK)`, as
//! glibc's and musl's `posix_spawn` do, with the steps `posix_spawn` cannot take (the death
//! signal) done in the child before `execve`.
//!
//! std's `Command` uses `posix_spawn` only without a `pre_exec` hook; with one it forks, which
//! copies cme-exec's page tables and makes every page cme-exec writes afterwards fault once
//! more (about 90 page faults and 0.15 ms of a file run, measured in docs/performance.md). Here
//! the child runs in cme-exec's memory, on a stack of its own, until it calls `execve`, while
//! cme-exec's thread waits in `clone`; so the child only makes system calls on data prepared
//! before (no allocation, no lock, nothing that could be left half-done in shared memory).
//!
//! What the child gets, as with the hook before: its own process group, the terminal when
//! cme-exec hands it over, the signal dispositions and mask cme-exec was started with
//! ([`super::startup`]), the death signal ([`super::die_with_parent`]), its stdout and stderr
//! on the masking pipes when asked. All signals stay blocked from before `clone` until the
//! child has reset every handler to its default (or to ignored, where it was ignored at start):
//! a signal can never run one of cme-exec's handlers on the child's side of the shared memory.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd as _, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use super::startup::SignalState;

/// The child's own stack while it runs in cme-exec's memory (it needs a few hundred bytes; the
/// pages are touched only as used).
const STACK_SIZE: usize = 64 * 1024;

/// Everything the child reads, prepared before `clone`; `errno` is the only field it writes.
struct Args {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdout: RawFd,
    stderr: RawFd,
    terminal: RawFd,
    parent: libc::pid_t,
    start: *const SignalState,
    errno: libc::c_int,
}

/// The started child: its pid and the read ends of the pipes its stdout and stderr go to.
pub struct Started {
    pub pid: libc::pid_t,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A pipe whose ends are both close-on-exec (the child's end is `dup2`ed onto 1 or 2).
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: a valid pointer to two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Starts `program` with `argv` (its `argv[0]` first) and exactly the environment `env`. The
/// error is that of the `execve` (or of `clone`), as std's `spawn` reports it.
pub fn spawn(
    program: &Path,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    pipe_stdout: bool,
    pipe_stderr: bool,
    terminal: Option<RawFd>,
    start: &SignalState,
) -> io::Result<Started> {
    let program = cstring(program.as_os_str())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    // Zeroized when dropped: with `--via env` these hold the credentials.
    let envs: Vec<zeroize::Zeroizing<Vec<u8>>> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 2);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            kv.push(0);
            zeroize::Zeroizing::new(kv)
        })
        .collect();
    if envs.iter().any(|kv| kv[..kv.len() - 1].contains(&0)) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envs
        .iter()
        .map(|kv| kv.as_ptr().cast())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let stdout = pipe_stdout.then(pipe).transpose()?;
    let stderr = pipe_stderr.then(pipe).transpose()?;
    let raw = |p: &Option<(File, File)>| {
        p.as_ref()
            .map_or(-1, |(_, w)| std::os::fd::AsRawFd::as_raw_fd(w))
    };
    let mut args = Args {
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp.as_ptr(),
        stdout: raw(&stdout),
        stderr: raw(&stderr),
        terminal: terminal.unwrap_or(-1),
        // SAFETY: no preconditions.
        parent: unsafe { libc::getpid() },
        start,
        errno: 0,
    };
    let mut stack: Vec<u8> = Vec::with_capacity(STACK_SIZE);
    // SAFETY: one past the end of the allocation, rounded down to the 16 bytes the ABI wants;
    // the stack grows down from there.
    let top = unsafe { stack.as_mut_ptr().add(STACK_SIZE) };
    let top = top.wrapping_sub(top as usize % 16);

    // SAFETY: every signal is blocked around `clone` (and restored after); `child` only makes
    // async-signal-safe system calls on `args`, which outlives it (cme-exec's thread waits in
    // `clone` until the child has called `execve` or `_exit`).
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(args).cast(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    // SAFETY: the child has exited or exec'd: nothing writes `args` any more.
    let errno = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(args.errno)) };
    if errno != 0 {
        // The child exited with 127 without running anything: reaped here, so that the wait
        // loop never sees it.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(Started {
        pid,
        stdout: stdout.map(|(r, _)| r),
        stderr: stderr.map(|(r, _)| r),
    })
}

/// The child, in cme-exec's memory, until `execve`. Only system calls.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Args` of `spawn`, alive until this function ends or `execve`.
    unsafe {
        let args = &mut *arg.cast::<Args>();
        let start = &*args.start;
        libc::setpgid(0, 0);
        // Every signal is blocked, SIGTTOU too: a background group may take the terminal.
        if args.terminal >= 0 {
            libc::tcsetpgrp(args.terminal, libc::getpid());
        }
        for (from, to) in [(args.stdout, 1), (args.stderr, 2)] {
            if from >= 0 && libc::dup2(from, to) < 0 {
                return fail(args);
            }
        }
        // cme-exec's handlers must not run here: each signal back to its default, or to ignored
        // where it was ignored when cme-exec started (SIGPIPE, which Rust ignores, included).
        let mut action: libc::sigaction = std::mem::zeroed();
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            action.sa_sigaction = if start.is_ignored(sig) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            // Fails (harmlessly) for the C library's reserved real-time signals.
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        super::die_with_parent(args.parent);
        libc::sigprocmask(libc::SIG_SETMASK, &start.mask, std::ptr::null_mut());
        libc::execve(args.program, args.argv, args.envp);
        fail(args)
    }
}

/// Records `errno` for `spawn` and ends the child.
///
/// # Safety
/// In the child only.
unsafe fn fail(args: &mut Args) -> libc::c_int {
    let errno = *libc::__errno_location();
    std::ptr::write_volatile(
        &mut args.errno,
        if errno == 0 { libc::EINVAL } else { errno },
    );
    libc::_exit(127)
}
