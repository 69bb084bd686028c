//! Replacing a file atomically: a new file in the same directory (created exclusively, links
//! not followed, the exact mode whatever the umask), every byte written and fsynced, renamed
//! over the target, the directory fsynced. A reader sees the old file or the whole new one.
//! Used by `render`, `import` and the trust records (write-back replaces its file relative to
//! the directory it opened, in `cme_config/writeback.rs`); `init` links instead of renaming, so
//! that it never replaces a file.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Writes `bytes` to `path` atomically with permission bits `mode`. A symbolic link at `path` is
/// refused: secrets are never written through a link someone planted.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_as(path, bytes, mode, false)
}

/// [`write`] for a file that must not exist yet (`init`): the complete temporary file is
/// hard-linked to `path`, which fails when anything (a file, a link) is already there, so
/// nothing is ever replaced, even by a race. Its refusal's message starts with [`EXISTS`].
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    write_as(path, bytes, mode, true)
}

/// The message of [`write_new`]'s refusal starts with this.
pub const EXISTS: &str = "refusing to replace";

fn write_as(path: &Path, bytes: &[u8], mode: u32, new: bool) -> Result<(), Error> {
    refuse_symlink(path)?;
    let target: PathBuf = path.to_owned();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Err(Error::new(format!("{} names no file", path.display())));
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Error::new(format!("cannot create {}", dir.display())).cause(e.to_string())
            })?;
    }
    // A random name: two writers (even as PID 1 in two containers sharing a volume) never
    // collide, and nothing planted can be predicted.
    let tmp = dir.join(format!(".{name}.cme-exec-{}.tmp", random_suffix()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| {
            Error::new(format!("cannot write {}", target.display())).cause(e.to_string())
        })?;
    // From here on the temporary file is ours, and removed if anything fails.
    let result = (|| -> std::io::Result<()> {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // Again just before the rename: a link planted while the file was written.
        refuse_symlink(&target).map_err(|e| std::io::Error::other(e.message().to_owned()))?;
        if new {
            std::fs::hard_link(&tmp, &target)?;
            std::fs::remove_file(&tmp)?;
        } else {
            std::fs::rename(&tmp, &target)?;
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if new && e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(Error::new(format!(
                "{EXISTS} {}: it already exists",
                target.display()
            )));
        }
        return Err(Error::new(format!("cannot write {}", target.display())).cause(e.to_string()));
    }
    Ok(())
}

/// Refuses a symlink, or anything but a regular file, at `path`.
pub fn refuse_symlink(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::new(format!(
            "{} is a symbolic link; refusing to write secrets through it",
            path.display()
        ))
        .hint("remove the link, or give the real path")),
        Ok(m) if !m.is_file() => Err(Error::new(format!(
            "{} exists and is not a regular file",
            path.display()
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    // RandomState is seeded from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cme-exec.toml");
        write_new(&path, b"first", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = write_new(&path, b"second", 0o600).unwrap_err();
        assert!(e.message().starts_with(EXISTS), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A link (even a dangling one) is there too: not followed, not replaced.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let e = write_new(&link, b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!dir.path().join("nowhere").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
