//! `--via file`: a 0600 file in a fresh private 0700 directory.
//!
//! The directory is made by `mkdtemp` (random name, 0700 whatever the umask) under the first
//! of `--dir`, `$XDG_RUNTIME_DIR`, `/dev/shm`, `$TMPDIR`, `/tmp` that exists. It is held open
//! with an exclusive `flock` for the whole run; everything after that is done relative to that
//! descriptor (`openat`, `unlinkat`), never by walking a path the child could have replaced
//! with a link. If cme-exec is killed with SIGKILL, the lock dies with it and a later run
//! sweeps the directory.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};
use zeroize::Zeroizing;

use crate::envnames as names;
use crate::error::{self, Error};
use cme_exec_providers::secure_io::{allows, euid, is_sticky, Access, Who};

use super::{read_back, too_large, ReadError};

const PREFIX: &str = "cme-exec.";
const CONFIG_NAME: &str = "app_data.json";
/// A directory younger than this is never swept: its owner may be between `mkdtemp` and `flock`.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(10);
const MAX_READ_BACK: u64 = 4 * 1024 * 1024;

pub struct PrivateDir {
    path: PathBuf,
    name: String,
    /// The root the directory lives in, held open for the final `unlinkat`.
    root: OwnedFd,
    /// The directory itself, locked for as long as the run lasts.
    dir: Flock<File>,
}

/// The directory `--via file` uses: `--dir`, else the first that exists of
/// `$XDG_RUNTIME_DIR`, `/dev/shm`, `$TMPDIR`, `/tmp`.
pub fn choose_root(dir: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(d) = dir {
        // Absolute, so that CME_CONFIG_PATH still names the file after the child changes its
        // working directory.
        return std::path::absolute(d).map_err(|e| {
            Error::new(format!("cannot use {} for --via file", d.display())).cause(e.to_string())
        });
    }
    let candidates = [
        std::env::var_os(names::XDG_RUNTIME_DIR).map(PathBuf::from),
        Some(PathBuf::from("/dev/shm")),
        std::env::var_os(names::TMPDIR).map(PathBuf::from),
        Some(PathBuf::from("/tmp")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_absolute() && p.is_dir())
        .ok_or_else(|| Error::new("no directory for --via file").hint("give one with --dir"))
}

fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
}

impl PrivateDir {
    pub fn create(dir: Option<&Path>) -> Result<PrivateDir, Error> {
        let root_path = choose_root(dir)?;
        let root = open_dir(&root_path).map_err(|e| {
            Error::new(format!("cannot use {} for --via file", root_path.display()))
                .cause(e.desc())
                .hint("--dir must be an existing directory, not a symlink")
        })?;
        check_trusted_root(&root_path, &root)?;
        if crate::platform::is_in_memory(&root) == Some(false) {
            error::warn(format_args!(
                "{} is not an in-memory filesystem: the config (with secrets) will touch disk until the run ends; prefer --via memfd or a tmpfs --dir",
                root_path.display()
            ));
        }
        sweep(&root_path, &root);
        let template = root_path.join(format!("{PREFIX}XXXXXX"));
        let path = nix::unistd::mkdtemp(&template).map_err(|e| {
            Error::new(format!(
                "cannot create a private directory in {}",
                root_path.display()
            ))
            .cause(e.desc())
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |what: &str, e: nix::Error| {
            let _ = unlinkat(&root, name.as_str(), UnlinkatFlags::RemoveDir);
            Error::new(format!("cannot {what} {}", path.display())).cause(e.desc())
        };
        let fd = openat(
            &root,
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| fail("open", e))?;
        let st = fstat(&fd).map_err(|e| fail("inspect", e))?;
        if st.st_uid != euid() || allows(mode_bits(&st), Who::GroupOrOthers, Access::Any) {
            return Err(fail("trust", nix::Error::EPERM));
        }
        let dir = Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| fail("lock", e))?;
        Ok(PrivateDir {
            path,
            name,
            root,
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the config as `app_data.json` (0600, created exclusively, links not followed).
    /// Every write is checked: a full disk is an error, never a truncated config.
    pub fn write_config(&self, config: &[u8]) -> Result<PathBuf, Error> {
        let path = self.path.join(CONFIG_NAME);
        let err = |e: std::io::Error| {
            Error::new(format!("cannot write {}", path.display())).cause(e.to_string())
        };
        let fd = openat(
            self.dir.as_fd(),
            CONFIG_NAME,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| err(e.into()))?;
        fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| err(e.into()))?;
        let mut file = File::from(fd);
        // No fsync: the file lives for this run only and the child reads it through the page
        // cache; a crash loses nothing that should have survived.
        file.write_all(config).map_err(err)?;
        Ok(path)
    }

    pub fn read_config(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let err =
            |e: std::io::Error| Error::new("cannot read the config back").cause(e.to_string());
        let fd = openat(
            self.dir.as_fd(),
            CONFIG_NAME,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(Error::new(
                "the config was replaced by something that is not a file; not read back",
            ));
        }
        read_back(&file, meta.len(), MAX_READ_BACK).map_err(|e| match e {
            ReadError::TooLarge => too_large(MAX_READ_BACK),
            ReadError::Io(e) => err(e),
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = remove_contents(self.dir.as_fd().as_raw_fd(), 0);
        let _ = unlinkat(&self.root, self.name.as_str(), UnlinkatFlags::RemoveDir);
    }
}

/// Removes everything in the directory open at `dirfd`, relative to it: a symlink is removed,
/// never followed; subdirectories are opened with `O_NOFOLLOW`.
fn remove_contents(dirfd: std::os::fd::RawFd, depth: usize) -> nix::Result<()> {
    if depth > 16 {
        return Err(nix::Error::ELOOP);
    }
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(dirfd) };
    let dup = nix::unistd::dup(borrowed)?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        if unlinkat(borrowed, name.as_c_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
            continue;
        }
        if let Ok(sub) = openat(
            borrowed,
            name.as_c_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        ) {
            let _ = remove_contents(sub.as_raw_fd(), depth + 1);
        }
        let _ = unlinkat(borrowed, name.as_c_str(), UnlinkatFlags::RemoveDir);
    }
    Ok(())
}

/// Removes directories left by runs that were killed with SIGKILL: ours, unlocked, and older
/// than [`SWEEP_MIN_AGE`].
pub fn sweep(root_path: &Path, root: &OwnedFd) {
    let Ok(entries) = std::fs::read_dir(root_path) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let Ok(fd) = openat(
            root,
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(st) = fstat(&fd) else { continue };
        if st.st_uid != me {
            continue;
        }
        let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_ctime.max(0) as u64);
        if SystemTime::now()
            .duration_since(changed)
            .unwrap_or_default()
            < SWEEP_MIN_AGE
        {
            continue;
        }
        let Ok(locked) = Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) else {
            continue; // its owner is alive
        };
        tracing::info!(dir = name, "sweeping a directory left by a killed run");
        let _ = remove_contents(locked.as_fd().as_raw_fd(), 0);
        let _ = unlinkat(root, name, UnlinkatFlags::RemoveDir);
    }
}

/// The root must be owned by root or by us, and others must not be able to rename what we make
/// in it: no group or other write bit, unless the sticky bit is set (as on `/tmp`). Otherwise
/// another user could move our directory aside and plant their own under its name, and cme,
/// which reopens its config by path and rewrites it with the secrets, would write there.
fn check_trusted_root(path: &Path, root: &OwnedFd) -> Result<(), Error> {
    let st = fstat(root)
        .map_err(|e| Error::new(format!("cannot inspect {}", path.display())).cause(e.desc()))?;
    let owner_ok = st.st_uid == 0 || st.st_uid == euid();
    let others_can_rename =
        allows(mode_bits(&st), Who::GroupOrOthers, Access::Write) && !is_sticky(mode_bits(&st));
    if !owner_ok || others_can_rename {
        return Err(Error::new(format!(
            "{} is not a safe place for the config: {}",
            path.display(),
            if owner_ok {
                "others can write to it and it has no sticky bit"
            } else {
                "it belongs to another user"
            }
        ))
        .hint("use a directory of your own (mode 0700) with --dir, or --via memfd"));
    }
    Ok(())
}

/// A `stat`'s mode as u32 (`mode_t` is u16 on macOS, u32 on Linux).
#[allow(clippy::unnecessary_cast)]
fn mode_bits(st: &nix::sys::stat::FileStat) -> u32 {
    st.st_mode as u32
}
