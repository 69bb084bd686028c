//! cme-exec's own state directory: `$XDG_STATE_HOME/cme-exec/` (default
//! `~/.local/state/cme-exec/`). It holds the trust records of working-directory configs
//! (`trust/`) and the key of `explain`'s fingerprints (`fingerprint.key`). Directories are
//! created 0700 and files 0600; a directory that other users can write is refused.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use cme_exec_providers::EnvReader;

use crate::envnames as names;
use crate::error::Error;
use cme_exec_providers::secure_io::{allows, euid, Access, Who};

/// The state directory's path, without creating it.
pub fn dir(env: &EnvReader) -> Result<PathBuf, Error> {
    if let Some(x) = env
        .var(names::XDG_STATE_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(x.join("cme-exec"));
    }
    match env.var(names::HOME).map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h.join(".local").join("state").join("cme-exec")),
        _ => Err(
            Error::new("no state directory: neither XDG_STATE_HOME nor HOME is set")
                .hint("set XDG_STATE_HOME (or HOME) to an absolute path"),
        ),
    }
}

/// `sub` inside the state directory, created 0700 (with the state directory) if missing.
pub fn ensure_dir(env: &EnvReader, sub: Option<&str>) -> Result<PathBuf, Error> {
    let mut d = dir(env)?;
    if let Some(s) = sub {
        d = d.join(s);
    }
    if !d.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(|e| {
                Error::new(format!("cannot create {}", d.display())).cause(e.to_string())
            })?;
    }
    check_private_dir(&d)?;
    Ok(d)
}

/// Refuses a state directory that is not a directory of ours that only we can write.
fn check_private_dir(d: &Path) -> Result<(), Error> {
    let m = std::fs::symlink_metadata(d)
        .map_err(|e| Error::new(format!("cannot read {}", d.display())).cause(e.to_string()))?;
    if !m.is_dir() {
        return Err(Error::new(format!("{} is not a directory", d.display())));
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Error::new(format!(
            "{} belongs to another user; cme-exec keeps its trust records and keys there",
            d.display()
        )));
    }
    if allows(m.mode(), Who::GroupOrOthers, Access::Write) {
        return Err(Error::new(format!(
            "{} is writable by other users; cme-exec keeps its trust records and keys there",
            d.display()
        ))
        .hint(format!("chmod go-w {}", d.display())));
    }
    Ok(())
}

/// Creates `path` with `bytes` (mode 0600) only if it does not exist yet, atomically: the file
/// appears whole or not at all, and when two processes race, one wins and both then read the
/// winner's file. Returns the file's content.
pub fn create_once(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::atomic::random_suffix()));
    let cannot = |e: std::io::Error| {
        Error::new(format!("cannot create {}", path.display())).cause(e.to_string())
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(cannot)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_private(path),
        Err(e) => Err(cannot(e)),
    }
}

/// Reads a small file of the state directory, refusing one that others can read or write.
pub fn read_private(path: &Path) -> Result<Vec<u8>, Error> {
    let m = std::fs::symlink_metadata(path)
        .map_err(|e| Error::new(format!("cannot read {}", path.display())).cause(e.to_string()))?;
    if !m.is_file() || m.len() > 64 * 1024 {
        return Err(Error::new(format!(
            "{} is not a small regular file",
            path.display()
        )));
    }
    if allows(m.mode(), Who::GroupOrOthers, Access::Any) || m.uid() != euid() {
        return Err(Error::new(format!(
            "{} is accessible to other users (or not yours)",
            path.display()
        ))
        .hint(format!("chmod 0600 {}", path.display())));
    }
    std::fs::read(path)
        .map_err(|e| Error::new(format!("cannot read {}", path.display())).cause(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_once_keeps_the_first_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        assert_eq!(create_once(&p, b"one").unwrap(), b"one");
        assert_eq!(create_once(&p, b"two").unwrap(), b"one");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_first_runs_agree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        let results: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8u8)
                .map(|i| {
                    let p = p.clone();
                    s.spawn(move || create_once(&p, &[i; 4]).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    }
}
