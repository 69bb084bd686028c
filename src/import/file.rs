//! `import --to file:///dir`: one 0600 JSON file per instance in a 0700 directory.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::Error;

pub struct Writer {
    dir: PathBuf,
}

impl Writer {
    /// Creates the directory (0700) or checks an existing one: a directory, ours, not open to
    /// the group or others.
    pub fn new(dir: &Path) -> Result<Writer, Error> {
        let shown = dir.display();
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::new(format!(
                    "{shown} is a symbolic link; refusing to write secrets through it"
                )))
            }
            Ok(m) if !m.is_dir() => {
                return Err(Error::new(format!("{shown} exists and is not a directory")))
            }
            Ok(m) => {
                if m.uid() != nix::unistd::geteuid().as_raw() {
                    return Err(Error::new(format!(
                        "{shown} belongs to another user; refusing to write secrets into it"
                    )));
                }
                if m.mode() & 0o077 != 0 {
                    return Err(Error::new(format!(
                        "{shown} is open to other users (mode {:04o}); refusing to write secrets into it",
                        m.mode() & 0o7777
                    ))
                    .hint(format!("chmod 700 {shown}")));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| {
                        Error::new(format!("cannot create {shown}")).cause(e.to_string())
                    })?;
                // Whatever the umask.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                    |e| Error::new(format!("cannot chmod 700 {shown}")).cause(e.to_string()),
                )?;
            }
            Err(e) => return Err(Error::new(format!("cannot read {shown}")).cause(e.to_string())),
        }
        Ok(Writer {
            dir: dir.to_owned(),
        })
    }

    /// `DIR/NAME.json`, atomically, 0600; not rewritten when it already holds `doc`.
    pub fn write(&self, name: &str, doc: &Zeroizing<Vec<u8>>) -> Result<bool, Error> {
        let path = self.dir.join(format!("{name}.json"));
        if let Ok(old) = std::fs::read(&path) {
            let old = Zeroizing::new(old);
            if old.as_slice() == doc.as_slice() {
                return Ok(false);
            }
        }
        crate::atomic::write(&path, doc, 0o600)?;
        Ok(true)
    }
}
