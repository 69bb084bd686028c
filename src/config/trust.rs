//! Trust records for a `./cme-exec.toml` found in the working directory.
//!
//! A config file decides where cme-exec sends credentials and which programs it runs, so one
//! that a repository or a download put in the working directory must not be used just because
//! it is there (like `direnv allow` and `mise trust`). A file chosen explicitly (`--config`, an
//! absolute `$CME_EXEC_CONFIG`) or at the user's own `$XDG_CONFIG_HOME/cme-exec/config.toml` is
//! trusted; a working-directory file only when a record exists for its canonical path, the
//! SHA-256 of its exact content, and the SHA-256 of each file it makes cme-exec run or read as
//! configuration (a helper program named by a relative path, the `[cme] base_config`): a
//! `git pull` that changes the helper script asks again, naming what changed.
//!
//! Records live in `$XDG_STATE_HOME/cme-exec/trust/`, one 0600 file per config path, named by
//! the SHA-256 of the path and written atomically. The format is line-based:
//!
//! ```text
//! sha256 HEX
//! path /canonical/path/cme-exec.toml
//! file HEX|missing /canonical/dir/get-secret.sh
//! ```

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

/// A file a config makes cme-exec run or read, with the hash of its content now (`None`: it
/// does not exist, or cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub path: PathBuf,
    pub hash: Option<String>,
}

impl Pinned {
    /// Hashes `path` as it is now. Reads through links: what runs is the link's target.
    pub fn now(path: PathBuf) -> Pinned {
        let hash = hash_file(&path);
        Pinned { path, hash }
    }

    fn hash_text(&self) -> &str {
        self.hash.as_deref().unwrap_or("missing")
    }
}

fn hash_file(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    // Streamed whole: a helper program may be a large binary, and every byte of it runs.
    let mut reader = file;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(hex(&hasher.finalize()))
}

/// A trust record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub hash: String,
    pub path: String,
    pub files: Vec<Pinned>,
}

fn record_text(canonical: &Path, hash: &str, files: &[Pinned]) -> String {
    let mut s = format!("sha256 {hash}\npath {}\n", canonical.display());
    for f in files {
        s.push_str(&format!("file {} {}\n", f.hash_text(), f.path.display()));
    }
    s
}

fn parse_record(text: &str) -> Option<Record> {
    let mut hash = None;
    let mut path = None;
    let mut files = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("sha256 ") {
            hash = Some(h.to_owned());
        } else if let Some(p) = line.strip_prefix("path ") {
            path = Some(p.to_owned());
        } else if let Some(rest) = line.strip_prefix("file ") {
            let (h, p) = rest.split_once(' ')?;
            files.push(Pinned {
                path: PathBuf::from(p),
                hash: (h != "missing").then(|| h.to_owned()),
            });
        }
    }
    Some(Record {
        hash: hash?,
        path: path?,
        files,
    })
}

/// What the records say of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Trusted,
    /// No record for this path.
    Unknown,
    /// A record for this path, but what it covers changed: each item names what.
    Changed(Vec<String>),
}

fn record_path(env: &EnvReader, canonical: &Path) -> Result<PathBuf, Error> {
    Ok(state::dir(env)?.join(SUB).join(record_name(canonical)))
}

/// The record of `canonical`, if any. No state directory means no record.
pub fn lookup(env: &EnvReader, canonical: &Path) -> Result<Option<Record>, Error> {
    let Ok(record) = record_path(env, canonical) else {
        return Ok(None);
    };
    if !record.exists() {
        return Ok(None);
    }
    let text = state::read_private(&record)?;
    Ok(Some(
        parse_record(&String::from_utf8_lossy(&text)).unwrap_or(Record {
            hash: String::new(),
            path: String::new(),
            files: Vec::new(),
        }),
    ))
}

/// Whether the config file's own bytes match the record (the first check, before parsing).
pub fn status_of_file(record: Option<&Record>, canonical: &Path, bytes: &[u8]) -> Status {
    match record {
        None => Status::Unknown,
        Some(r) if r.hash == content_hash(bytes) && r.path == canonical.display().to_string() => {
            Status::Trusted
        }
        Some(_) => Status::Changed(vec![format!(
            "{} itself changed since it was trusted",
            canonical.display()
        )]),
    }
}

/// Whether the files the config makes cme-exec run or read are the ones trusted (the second
/// check, once the trusted bytes are parsed and `files` are hashed).
pub fn status_of_files(record: &Record, files: &[Pinned]) -> Status {
    let mut changed = Vec::new();
    for f in files {
        match record.files.iter().find(|r| r.path == f.path) {
            Some(r) if r.hash == f.hash => {}
            Some(_) => changed.push(format!("{} changed since it was trusted", f.path.display())),
            None => changed.push(format!(
                "{} is not covered by the trust record (trusted before cme-exec pinned the files a config runs)",
                f.path.display()
            )),
        }
    }
    if changed.is_empty() {
        Status::Trusted
    } else {
        Status::Changed(changed)
    }
}

/// Records `canonical` with `bytes` and `files` as trusted; returns the record's path.
pub fn record(
    env: &EnvReader,
    canonical: &Path,
    bytes: &[u8],
    files: &[Pinned],
) -> Result<PathBuf, Error> {
    let dir = state::ensure_dir(env, Some(SUB))?;
    let record = dir.join(record_name(canonical));
    crate::atomic::write(
        &record,
        record_text(canonical, &content_hash(bytes), files).as_bytes(),
        0o600,
    )?;
    Ok(record)
}

/// After cme-exec itself rewrote `file` (write-back into a pinned base config), the record of
/// the trusted config `canonical` follows it, so the next run is not refused for cme-exec's own
/// change. Only a file the record already pins is updated.
pub fn follow_own_write(env: &EnvReader, canonical: &Path, file: &Path) -> Result<(), Error> {
    let Some(mut r) = lookup(env, canonical)? else {
        return Ok(());
    };
    let Some(pin) = r.files.iter_mut().find(|f| f.path == file) else {
        return Ok(());
    };
    pin.hash = hash_file(file);
    crate::atomic::write(
        &record_path(env, canonical)?,
        record_text(Path::new(&r.path), &r.hash, &r.files).as_bytes(),
        0o600,
    )
}

/// Removes the record of `canonical`; `false` when there was none.
pub fn revoke(env: &EnvReader, canonical: &Path) -> Result<bool, Error> {
    let record = record_path(env, canonical)?;
    match std::fs::remove_file(&record) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            Err(Error::new(format!("cannot remove {}", record.display())).cause(e.to_string()))
        }
    }
}

/// Every record, by config path.
pub fn list(env: &EnvReader) -> Result<Vec<Record>, Error> {
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
            if let Some(r) = parse_record(&String::from_utf8_lossy(&text)) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The refusal of an untrusted (or changed) working-directory config.
pub fn untrusted(shown: &str, status: &Status) -> Error {
    let mut e = Error::new(format!(
        "the config file {shown} was found in the working directory and is {}",
        if matches!(status, Status::Changed(_)) {
            "not trusted: what it covers changed since it was trusted"
        } else {
            "not trusted"
        }
    ));
    if let Status::Changed(what) = status {
        for w in what {
            e = e.detail(w.clone());
        }
    }
    e.detail("a config file decides where cme-exec sends your credentials (Vault tokens, AWS keys)")
        .detail("and which programs it runs, so one picked up from the working directory is used only after you trust it")
        .hint(format!(
            "review it with `cme-exec trust --show {shown}`, then trust it with `cme-exec trust {shown}`, \
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
        let status = |bytes: &[u8], path: &Path| {
            status_of_file(lookup(&env, path).unwrap().as_ref(), path, bytes)
        };
        assert_eq!(status(b"a", &p), Status::Unknown);
        let r = record(&env, &p, b"a", &[]).unwrap();
        assert_eq!(status(b"a", &p), Status::Trusted);
        assert!(matches!(status(b"a\n", &p), Status::Changed(_)));
        assert_eq!(status(b"a", &d.path().join("other.toml")), Status::Unknown);
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
        assert_eq!(status(b"a", &p), Status::Unknown);
    }

    #[test]
    fn pinned_files_are_compared_by_content_and_a_new_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let env = EnvReader::from_vars([("XDG_STATE_HOME".into(), d.path().into())]);
        let p = d.path().join("cme-exec.toml");
        let script = d.path().join("get-secret.sh");
        let missing = d.path().join("base.json");
        std::fs::write(&script, "echo one").unwrap();
        let pins = vec![Pinned::now(script.clone()), Pinned::now(missing.clone())];
        assert_eq!(pins[1].hash, None);
        record(&env, &p, b"a", &pins).unwrap();
        let r = lookup(&env, &p).unwrap().unwrap();
        assert_eq!(r.files, pins);
        assert_eq!(status_of_files(&r, &pins), Status::Trusted);

        std::fs::write(&script, "echo two").unwrap();
        let now = vec![Pinned::now(script.clone()), Pinned::now(missing.clone())];
        match status_of_files(&r, &now) {
            Status::Changed(what) => {
                assert_eq!(what.len(), 1, "{what:?}");
                assert!(what[0].contains("get-secret.sh"), "{what:?}");
            }
            s => panic!("{s:?}"),
        }
        // A file that appears where none was is a change too.
        std::fs::write(&missing, "{}").unwrap();
        let now = vec![Pinned::now(script.clone()), Pinned::now(missing.clone())];
        assert!(matches!(status_of_files(&r, &now), Status::Changed(w) if w.len() == 2));
        // A file the record does not pin (an old record) asks again.
        let extra = vec![Pinned::now(d.path().join("other.sh"))];
        assert!(matches!(status_of_files(&r, &extra), Status::Changed(_)));

        // cme-exec's own write into a pinned file moves the record with it.
        follow_own_write(&env, &p, &missing).unwrap();
        let r = lookup(&env, &p).unwrap().unwrap();
        assert_eq!(status_of_files(&r, &now[1..]), Status::Trusted);
        // A file the record does not pin is left alone.
        follow_own_write(&env, &p, &d.path().join("other.sh")).unwrap();
        assert_eq!(lookup(&env, &p).unwrap().unwrap(), r);
    }
}
