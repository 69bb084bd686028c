//! The base config: the user's own cme settings, without secrets.
//!
//! Found at `[cme] base_config` (relative to the config file), else where cme itself would
//! look: `$CME_CONFIG_PATH`, else `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`
//! (`~/.config/...`). A missing file is an empty base. A file that holds a secret is refused:
//! cme-exec exists so that tokens are not kept on disk, and silently mixing the two sources
//! would hide which one cme used.
//!
//! The base config decides where cme connects and how (`verify_ssl`, `ca_bundle`, proxies), and
//! write-back saves into it: so it must be a file only the user (or root) can change. A file
//! owned by another account, or in a directory owned by another account or that every user can
//! write without the sticky bit, is refused. What was loaded (its canonical path, device and
//! inode) is kept, so that write-back writes into that same file and nothing else.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use cme_exec_providers::context::EnvReader;
use cme_exec_providers::secure_io::{
    self, allows, is_sticky, open_private, Access, Checks, Owners, Refused, Who,
};
use serde_json::{Map, Value};

use super::schema;
use crate::config::Config;
use crate::envnames as names;
use crate::error::Error;

/// The largest base config accepted.
pub const MAX_BASE_BYTES: u64 = 4 * 1024 * 1024;

pub struct BaseConfig {
    pub path: PathBuf,
    pub exists: bool,
    /// The document as written (key order kept); empty when the file does not exist.
    pub doc: Map<String, Value>,
    /// The file's permission bits, kept by write-back.
    pub mode: Option<u32>,
    pub size_hint: usize,
    /// What [`load`] found on disk; `None` for a base config made in memory.
    pub origin: Option<Origin>,
}

/// Where a loaded base config is on disk, fixed when it was read: write-back writes there and
/// only into the same file (a link the user keeps is followed once, here; one planted later
/// never is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The canonical path (the directory's, with the file name, when the file did not exist).
    pub real: PathBuf,
    /// Device and inode of the file read; `None` when there was no file.
    pub identity: Option<(u64, u64)>,
}

/// Where the base config is.
pub fn locate(config: &Config, env: &EnvReader, base_dir: &Path) -> PathBuf {
    if let Some(p) = &config.cme.base_config {
        return base_dir.join(p);
    }
    if let Some(p) = env.var(names::CME_CONFIG_PATH) {
        return base_dir_independent(&p);
    }
    let config_home = env
        .var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config_home
        .join("confluence-markdown-exporter")
        .join("app_data.json")
}

/// `$CME_CONFIG_PATH` is used verbatim by cme, relative to the working directory.
fn base_dir_independent(p: &str) -> PathBuf {
    PathBuf::from(p)
}

/// What the base config must be: a regular file of the user's or root's that others cannot
/// write (a link the user keeps is followed).
const CHECKS: Checks = Checks {
    follow_links: true,
    owners: Owners::RootOrMe,
    refuse_writable_by: Some(Who::Others),
};

/// Loads and checks the base config.
pub fn load(path: &Path) -> Result<BaseConfig, Error> {
    let shown = path.display();
    let cannot_read = |e: std::io::Error| {
        Error::new(format!("cannot read the base config {shown}")).cause(e.to_string())
    };
    // Opened without blocking: a FIFO planted at the path must not hang the open; it is refused.
    let (file, meta) = match open_private(path, &CHECKS) {
        Ok(opened) => opened,
        Err(Refused::Open(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let real = real_path_of_missing(path);
            if let Some(dir) = real.parent().filter(|d| d.is_dir()) {
                check_place(path, dir)?;
            }
            return Ok(BaseConfig {
                path: path.to_owned(),
                exists: false,
                doc: Map::new(),
                mode: None,
                size_hint: 0,
                origin: Some(Origin {
                    real,
                    identity: None,
                }),
            });
        }
        Err(Refused::Open(e) | Refused::Stat(e) | Refused::Read(e)) => return Err(cannot_read(e)),
        Err(Refused::NotRegular) => {
            return Err(Error::new(format!(
                "the base config {shown} is not a regular file"
            )))
        }
        Err(Refused::Owner(uid)) => return Err(foreign_owner(path, uid)),
        Err(Refused::Writable(_)) => {
            return Err(Error::new(format!(
                "the base config {shown} is writable by other users, who could change where cme sends the credentials"
            ))
            .hint(format!("chmod o-w {shown}")))
        }
        Err(Refused::TooLarge) => return Err(too_large(path)),
    };
    let real = std::fs::canonicalize(path).map_err(cannot_read)?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    check_place(path, dir)?;
    let bytes = read_capped(file, meta.len()).map_err(|e| match e {
        Capped::TooLarge => too_large(path),
        Capped::Io(e) => cannot_read(e),
    })?;
    let doc = parse(&bytes).map_err(|m| Error::new(format!("the base config {shown} {m}")))?;
    check(&doc).map_err(|e| {
        // Two problems, two reasons: cme drops a file that does not fit its schema (every
        // setting in it lost), while a credential in a file valid for cme would stay there in
        // plain text beside the ones from the stores.
        let invalid = !schema::validate(&Value::Object(doc.clone())).is_empty();
        let secrets = !secret_paths(&doc).is_empty();
        let why = match (invalid, secrets) {
            (true, false) => "cme would silently ignore the whole file",
            (false, _) => {
                "a base config holds settings only: credentials come from your stores, and one \
                 left in this file stays there in plain text"
            }
            (true, true) => {
                "cme would silently ignore the whole file; and credentials come from your \
                 stores, never from this file"
            }
        };
        e.hint(format!(
            "fix {shown} ({why}), or point [cme] base_config elsewhere"
        ))
    })?;
    Ok(BaseConfig {
        path: path.to_owned(),
        exists: true,
        size_hint: bytes.len(),
        doc,
        mode: Some(meta.mode() & 0o7777),
        origin: Some(Origin {
            real,
            identity: Some((meta.dev(), meta.ino())),
        }),
    })
}

fn too_large(path: &Path) -> Error {
    Error::new(format!(
        "the base config {} is larger than 4 MiB",
        path.display()
    ))
}

/// Why [`read_capped`] stopped: `TooLarge` or `Io`.
pub(crate) use cme_exec_providers::secure_io::ReadError as Capped;

/// Reads an open file, at most [`MAX_BASE_BYTES`] (a file that grows past its `stat` size while
/// it is read is still stopped there), into a buffer that is wiped when dropped.
pub(crate) fn read_capped(
    file: std::fs::File,
    len: u64,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Capped> {
    secure_io::read_capped(file, len, MAX_BASE_BYTES)
}

/// The canonical path a missing base config would have: its nearest existing ancestor made
/// canonical, the rest as written.
fn real_path_of_missing(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut rest = Vec::new();
    let mut cur = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return absolute,
        }
    }
}

fn is_trusted_owner(uid: u32) -> bool {
    Owners::RootOrMe.accept(uid)
}

/// The refusal of a base config that belongs to neither the user nor root.
fn foreign_owner(path: &Path, uid: u32) -> Error {
    Error::new(format!(
        "the base config {} belongs to another user (uid {uid}), who could change where cme sends the credentials",
        path.display()
    ))
    .hint("copy it into a file of your own (cp, then chmod 600) and point [cme] base_config (or CME_CONFIG_PATH) at the copy")
}

/// The directory the base config is in (`dir`, canonical) and, when it differs (the path given
/// goes through a link), the directory of the path as given: each owned by the user or root, and
/// not writable by every user unless sticky (as `/tmp` is).
fn check_place(path: &Path, dir: &Path) -> Result<(), Error> {
    let mut dirs = vec![dir.to_owned()];
    if let Some(given) = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .filter(|d| d.as_path() != dir)
    {
        dirs.push(given);
    }
    for d in dirs {
        let meta = match std::fs::metadata(&d) {
            Ok(m) => m,
            Err(e) => {
                return Err(Error::new(format!(
                    "cannot inspect {}, the directory of the base config {}",
                    d.display(),
                    path.display()
                ))
                .cause(e.to_string()))
            }
        };
        check_dir(path, &d, meta.uid(), meta.mode())?;
    }
    Ok(())
}

/// A directory holding the base config: owned by the user or root, and not writable by every
/// user unless it has the sticky bit (then others cannot replace a file they do not own).
pub(crate) fn check_dir(path: &Path, dir: &Path, uid: u32, mode: u32) -> Result<(), Error> {
    check_dir_of("the base config", path, dir, uid, mode)
}

/// [`check_dir`] for a file named `what` in messages ("the cme config" for `import`).
pub(crate) fn check_dir_of(
    what: &str,
    path: &Path,
    dir: &Path,
    uid: u32,
    mode: u32,
) -> Result<(), Error> {
    let base = path.display();
    let shown = dir.display();
    if !is_trusted_owner(uid) {
        return Err(Error::new(format!(
            "{what} {base} is in {shown}, which belongs to another user (uid {uid}), who could replace it"
        ))
        .hint(format!("move {what} into a directory of your own (mode 0700) and point [cme] base_config (or CME_CONFIG_PATH) at it")));
    }
    if allows(mode, Who::Others, Access::Write) && !is_sticky(mode) {
        let fix = if uid == nix::unistd::geteuid().as_raw() {
            format!("chmod o-w {shown}, or move {what} into a directory of your own")
        } else {
            format!("move {what} into a directory of your own (mode 0700) and point [cme] base_config (or CME_CONFIG_PATH) at it")
        };
        return Err(Error::new(format!(
            "{what} {base} is in {shown}, which every user can write (mode {:04o}, no sticky bit): anyone could replace it",
            mode & 0o7777
        ))
        .hint(fix));
    }
    Ok(())
}

/// Parses a cme config document; errors give the position only (the file may hold secrets).
pub fn parse(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(mut other) => {
            let what = cme_exec_providers::payload::describe(&other);
            cme_exec_providers::payload::zeroize_value(&mut other);
            Err(format!("is JSON {what}, not an object"))
        }
        Err(e) => Err(format!(
            "is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Checks a base config against cme's schema, and that it holds no secret.
pub fn check(doc: &Map<String, Value>) -> Result<(), Error> {
    let whole = Value::Object(doc.clone());
    let mut problems: Vec<String> = schema::validate(&whole)
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    for path in secret_paths(doc) {
        problems.push(format!(
            "{path}: holds a secret; delete it from this file, cme-exec supplies credentials from your stores"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut err = Error::new(format!(
        "the base config is not what cme-exec can use ({} problem{})",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ));
    for p in problems {
        err = err.detail(p);
    }
    Err(err)
}

/// Paths of non-empty secret fields in `auth`.
fn secret_paths(doc: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(auth) = doc.get("auth").and_then(Value::as_object) else {
        return out;
    };
    for (product, entries) in auth {
        let Some(entries) = entries.as_object() else {
            continue;
        };
        for (url, entry) in entries {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            for (k, v) in entry {
                let non_empty = v.as_str().is_some_and(|s| !s.is_empty());
                if schema::is_secret_field(k) && non_empty {
                    out.push(format!("auth.{product}[{url:?}].{k}"));
                }
            }
        }
    }
    out
}
