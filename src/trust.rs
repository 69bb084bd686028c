//! Trust records for a `./cme-exec.toml` found in the working directory.
//!
//! A config file decides where cme-exec sends credentials, so one that a repository or a
//! download put in the working directory must not be used just because it is there (like
//! `direnv allow` and `mise trust`). A file chosen explicitly (`--config`, `$CME_EXEC_CONFIG`)
//! or at the user's own `$XDG_CONFIG_HOME/cme-exec/config.toml` is trusted; a working-directory
//! file only when a record exists for its canonical path *and* the SHA-256 of its exact
//! content. Records live in `$XDG_STATE_HOME/cme-exec/trust/`, one 0600 file per path, named by
//! the SHA-256 of the path and written atomically.

use std::path::{Path, PathBuf};

use cme_exec_providers::EnvReader;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::state;

/// The trust records' sub-directory of the state directory.
const SUB: &str = "trust";

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn record_name(canonical: &Path) -> String {
    hex(&Sha256::digest(canonical.as_os_str().as_encoded_bytes()))
}

/// The canonical path of a config file (links resolved), as records are keyed.
pub fn canonical(path: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).map_err(|e| {
        Error::new(format!("cannot read the config file {}", path.display())).cause(e.to_string())
    })
}

/// A record: the content hash and the path, one per line.
fn record_text(canonical: &Path, hash: &str) -> String {
    format!("sha256 {hash}\npath {}\n", canonical.display())
}

fn parse_record(text: &str) -> Option<(String, String)> {
    let mut hash = None;
    let mut path = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("sha256 ") {
            hash = Some(h.to_owned());
        } else if let Some(p) = line.strip_prefix("path ") {
            path = Some(p.to_owned());
        }
    }
    Some((hash?, path?))
}

/// What the records say of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Trusted,
    /// No record for this path.
    Unknown,
    /// A record for this path, but of other content.
    Changed,
}

/// Whether `canonical` with exactly `bytes` is trusted. No state directory means no record.
pub fn status(env: &EnvReader, canonical: &Path, bytes: &[u8]) -> Result<Status, Error> {
    let Ok(dir) = state::dir(env) else {
        return Ok(Status::Unknown);
    };
    let record = dir.join(SUB).join(record_name(canonical));
    if !record.exists() {
        return Ok(Status::Unknown);
    }
    let text = state::read_private(&record)?;
    let text = String::from_utf8_lossy(&text);
    Ok(match parse_record(&text) {
        Some((hash, path))
            if hash == content_hash(bytes) && path == canonical.display().to_string() =>
        {
            Status::Trusted
        }
        _ => Status::Changed,
    })
}

/// Records `canonical` with `bytes` as trusted; returns the record's path.
pub fn record(env: &EnvReader, canonical: &Path, bytes: &[u8]) -> Result<PathBuf, Error> {
    let dir = state::ensure_dir(env, Some(SUB))?;
    let record = dir.join(record_name(canonical));
    crate::atomic::write(
        &record,
        record_text(canonical, &content_hash(bytes)).as_bytes(),
        0o600,
        crate::atomic::Symlink::Refuse,
    )?;
    Ok(record)
}

/// Removes the record of `canonical`; `false` when there was none.
pub fn revoke(env: &EnvReader, canonical: &Path) -> Result<bool, Error> {
    let record = state::dir(env)?.join(SUB).join(record_name(canonical));
    match std::fs::remove_file(&record) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            Err(Error::new(format!("cannot remove {}", record.display())).cause(e.to_string()))
        }
    }
}

/// Every record: (path, content hash).
pub fn list(env: &EnvReader) -> Result<Vec<(String, String)>, Error> {
    let dir = state::dir(env)?.join(SUB);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if let Ok(text) = state::read_private(&e.path()) {
            if let Some((hash, path)) = parse_record(&String::from_utf8_lossy(&text)) {
                out.push((path, hash));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The refusal of an untrusted (or changed) working-directory config.
pub fn untrusted(shown: &str, changed: bool) -> Error {
    Error::new(format!(
        "the config file {shown} was found in the working directory and is {}",
        if changed {
            "not trusted: it changed since it was trusted"
        } else {
            "not trusted"
        }
    ))
    .detail("a config file decides where cme-exec sends your credentials (Vault tokens, AWS keys),")
    .detail("so one picked up from the working directory is used only after you trust it")
    .hint(format!(
        "review it with `cme-exec trust {shown}` (which shows what it makes cme-exec contact and records it), \
         or choose it explicitly with `--config {shown}`"
    ))
    .fatal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_matches_its_path_and_exact_content_only() {
        let d = tempfile::tempdir().unwrap();
        let env = EnvReader::from_vars([("XDG_STATE_HOME".into(), d.path().into())]);
        let p = d.path().join("cme-exec.toml");
        assert_eq!(status(&env, &p, b"a").unwrap(), Status::Unknown);
        let r = record(&env, &p, b"a").unwrap();
        assert_eq!(status(&env, &p, b"a").unwrap(), Status::Trusted);
        assert_eq!(status(&env, &p, b"a\n").unwrap(), Status::Changed);
        assert_eq!(
            status(&env, &d.path().join("other.toml"), b"a").unwrap(),
            Status::Unknown
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&r).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sd = d.path().join("cme-exec");
        assert_eq!(
            std::fs::metadata(&sd).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(list(&env).unwrap().len(), 1);
        assert!(revoke(&env, &p).unwrap());
        assert!(!revoke(&env, &p).unwrap());
        assert_eq!(status(&env, &p, b"a").unwrap(), Status::Unknown);
    }
}
