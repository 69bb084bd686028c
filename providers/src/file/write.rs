//! Writing a document as a file (what `import --to file:///DIR` does): one 0600 JSON file per
//! document in a 0700 directory of the user's own, replaced atomically (a new file created
//! exclusively beside it, fsynced, renamed over it, the directory fsynced), never through a
//! symbolic link, and left alone when it already holds exactly these fields.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use serde_json::Value;

use crate::payload::{zeroize_value, MAX_DOCUMENT_BYTES};
use crate::provider::{Destination, Fields};
use crate::secure_io::{allows, euid, read_capped, Access, ReadError, Who};
use crate::FetchError;

/// `import --to SCHEME:///DIR`: one file per name, `DIR/NAME.json`.
pub fn destination(scheme: &str, location: &str) -> Result<Destination, FetchError> {
    if !location.starts_with('/') || location.chars().any(char::is_control) {
        return Err(FetchError::invalid(format!(
            "a file destination is an absolute directory ({scheme}:///dir)"
        )));
    }
    Ok(Destination::new(
        "file",
        format!("{}/", location.trim_end_matches('/')),
        ".json",
    ))
}

/// Writes `fields` to `path` unless it holds exactly them; `Ok(true)` when written.
pub fn write(path: &Path, fields: &Fields) -> Result<bool, FetchError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| FetchError::invalid(format!("{} names no file", path.display())))?;
    private_dir(dir)?;
    if holds(path, fields)? {
        return Ok(false);
    }
    replace(dir, path, &fields.to_json())?;
    Ok(true)
}

/// Creates the directory (0700, whatever the umask) or checks an existing one: a directory, not
/// a link, the user's own, not open to the group or others.
fn private_dir(dir: &Path) -> Result<(), FetchError> {
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(FetchError::denied(format!(
            "{shown} is a symbolic link; refusing to write secrets through it"
        ))),
        Ok(m) if !m.is_dir() => Err(FetchError::invalid(format!(
            "{shown} exists and is not a directory"
        ))),
        Ok(m) if m.uid() != euid() => Err(FetchError::denied(format!(
            "{shown} belongs to another user; refusing to write secrets into it"
        ))),
        Ok(m) if allows(m.mode(), Who::GroupOrOthers, Access::Any) => {
            Err(FetchError::denied(format!(
                "{shown} is open to other users (mode {:04o}); refusing to write secrets into it",
                m.mode() & 0o7777
            ))
            .with_hint(format!("chmod 700 {shown}")))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| FetchError::io(dir, &e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| FetchError::io(dir, &e))
        }
        Err(e) => Err(FetchError::io(dir, &e)),
    }
}

/// Whether `path` is a regular file holding a JSON object with exactly `fields`. Nothing there
/// holds nothing; a link, or anything but a regular file, is refused.
fn holds(path: &Path, fields: &Fields) -> Result<bool, FetchError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FetchError::denied(format!(
                "{} is a symbolic link; refusing to write secrets through it",
                path.display()
            ))
            .with_hint("remove the link, or give the real path"))
        }
        Err(e) => return Err(FetchError::io(path, &e)),
    };
    let meta = file.metadata().map_err(|e| FetchError::io(path, &e))?;
    if !meta.is_file() {
        return Err(FetchError::invalid(format!(
            "{} exists and is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Ok(false);
    }
    let bytes = match read_capped(&file, meta.len(), MAX_DOCUMENT_BYTES as u64) {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => return Ok(false),
        Err(ReadError::Io(e)) => return Err(FetchError::io(path, &e)),
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(false);
    };
    let same = value.as_object().is_some_and(|m| fields.same_as(m));
    zeroize_value(&mut value);
    Ok(same)
}

/// Replaces `path` with `bytes` (mode 0600) through a new file in `dir`.
fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.cme-exec-{}.tmp", random_suffix()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| FetchError::io(path, &e))?;
    let result = (|| -> std::io::Result<()> {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        FetchError::io(path, &e)
    })
}

/// A name nothing planted can predict: `RandomState` is seeded from the OS's random source.
fn random_suffix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn fields(token: &str) -> Fields {
        let mut f = Fields::new();
        f.push("username", SecretString::from("me@example.com"));
        f.push("api_token", SecretString::from(token));
        f
    }

    #[test]
    fn writes_privately_once_and_replaces_what_differs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let path = dir.join("wiki.json");
        assert!(write(&path, &fields("t-1")).unwrap());
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"username\":\"me@example.com\",\"api_token\":\"t-1\"}\n"
        );
        assert!(!write(&path, &fields("t-1")).unwrap(), "written again");
        assert!(write(&path, &fields("t-2")).unwrap());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left");
    }

    #[test]
    fn refuses_links_open_directories_and_non_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = write(&dir.join("a.json"), &fields("t")).unwrap_err();
        assert!(
            e.message().contains("open to other users (mode 0755)"),
            "{e}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), dir.join("b.json")).unwrap();
        let e = write(&dir.join("b.json"), &fields("t")).unwrap_err();
        assert!(e.message().contains("symbolic link"), "{e}");
        assert!(!tmp.path().join("elsewhere").exists());
        std::fs::create_dir(dir.join("c.json")).unwrap();
        let e = write(&dir.join("c.json"), &fields("t")).unwrap_err();
        assert!(e.message().contains("not a regular file"), "{e}");
    }

    #[test]
    fn destinations_are_absolute_directories() {
        let d = destination("file", "/run/s/").unwrap();
        assert_eq!(d.place("wiki"), "/run/s/wiki.json");
        assert!(destination("file", "rel/dir").is_err());
    }
}
