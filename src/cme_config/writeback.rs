//! Write-back: what cme changed in its config during the run, minus every secret, saved into
//! the base config.
//!
//! cme rewrites its whole config whenever it stores something (a `cloud_id` it fetched, a
//! `cme config set`), filling in every default. So the change is found leaf by leaf: a leaf
//! counts as changed when it differs from what cme-exec handed over, or, where the handed
//! config did not have it, from cme's default. In `auth`, only `cloud_id` is ever written
//! back; a changed secret field is reported (never shown) and dropped.
//!
//! The base config is shared: other runs save their own changes into it, and its owner may
//! edit it while an export runs for an hour. So the save is a read-modify-write under a lock
//! (issue 13): take an advisory lock on a lock file beside the base config (a lock on the file
//! itself would not survive the atomic rename), read the file as it is now, apply only this
//! run's own leaf changes, write it atomically, unlock. A leaf that the file changed since the
//! run started keeps the file's value and is reported with the command that would save it.
//! A file that no longer parses, is read-only or sits on a read-only filesystem is left
//! exactly as it is. The lock is `flock(2)`: the kernel drops it when its holder dies, so a
//! run killed while holding it never blocks the next; waiting for it has a deadline.

use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cme_exec_providers::payload::zeroize_value;
use serde_json::{Map, Value};

use super::{base, normalised_key, schema, BaseConfig};
use crate::config::Product;
use crate::error::Error;

/// What write-back did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Dotted paths written into the base config.
    pub written: Vec<String>,
    /// Secret fields cme changed, which were not written anywhere.
    pub dropped_secrets: Vec<String>,
    /// Changes not saved because the file itself changed the same key during the run.
    pub conflicts: Vec<Conflict>,
}

/// A leaf this run changed that the file also changed since the run started: the file's value
/// was kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The dotted key.
    pub key: String,
    /// How the user can still save this run's value (never a secret: secret fields are never
    /// written back, so they never conflict).
    pub save_with: String,
}

/// A parsed config document whose strings are wiped on drop.
struct Scrubbed(Value);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

/// Compares the config handed to cme with what it holds after the run, and saves the
/// non-secret changes into the base config as it is now. `lock_wait` bounds the wait for
/// another run's save.
pub fn write_back(
    base: &BaseConfig,
    handed: &[u8],
    after: &[u8],
    lock_wait: Duration,
) -> Result<Report, Error> {
    if handed == after {
        return Ok(Report::default());
    }
    let handed = Scrubbed(Value::Object(base::parse(handed).unwrap_or_default()));
    let after = match base::parse(after) {
        Ok(m) => Scrubbed(Value::Object(m)),
        Err(e) => {
            return Err(Error::new(format!(
                "cme left its config in a state cme-exec cannot read back (it {e}); nothing was written back"
            )))
        }
    };
    let mut report = Report::default();
    let mut changes: Vec<(Vec<String>, Value)> = Vec::new();
    let defaults = schema::defaults();
    for (key, value) in after.0.as_object().into_iter().flatten() {
        if key == "auth" {
            auth_changes(&handed.0, value, &mut changes, &mut report);
        } else {
            leaf_changes(
                &mut vec![key.clone()],
                value,
                &handed.0,
                defaults,
                &mut changes,
            );
        }
    }
    if changes.is_empty() {
        return Ok(report);
    }
    let keys: Vec<String> = changes.iter().map(|(p, _)| dotted(p)).collect();
    let not_saved = |e: Error| {
        keys.iter()
            .fold(e, |e, k| e.detail(format!("not saved: {k}")))
    };

    let target = std::fs::canonicalize(&base.path).unwrap_or_else(|_| base.path.clone());
    let _lock = Lock::acquire(&target, lock_wait).map_err(not_saved)?;
    let (mut doc, mode) = read_current(base, &target).map_err(not_saved)?;
    for (path, value) in changes {
        let now = lookup_entry(&doc, &path);
        if now == Some(&value) {
            continue;
        }
        if lookup_entry(&base.doc, &path) != now {
            report.conflicts.push(Conflict {
                key: dotted(&path),
                save_with: save_with(&path, &value),
            });
            continue;
        }
        report.written.push(dotted(&path));
        set_path(&mut doc, &path, value);
    }
    if report.written.is_empty() {
        return Ok(report);
    }
    if let Err(e) = base::check(&doc) {
        return Err(not_saved(
            Error::new("the written-back config would not be valid; nothing was written back")
                .cause(e.to_string()),
        ));
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))
        .expect("serialising into memory cannot fail");
    bytes.push(b'\n');
    crate::atomic::write(&target, &bytes, mode, crate::atomic::Symlink::Follow)
        .map_err(not_saved)?;
    Ok(report)
}

/// The base config as it is now, and the mode to keep, or why it must be left alone.
fn read_current(base: &BaseConfig, target: &Path) -> Result<(Map<String, Value>, u32), Error> {
    let shown = base.path.display();
    let left = |why: String| {
        Error::new(format!(
            "the base config {shown} {why}; it was left exactly as it is"
        ))
    };
    if read_only_filesystem(target) {
        return Err(left("is on a read-only filesystem".into()));
    }
    let meta = match std::fs::metadata(target) {
        Ok(m) => m,
        // Removed during the run (or never there): this run's changes make a new one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Map::new(), base.mode.unwrap_or(0o600)))
        }
        Err(e) => return Err(left("cannot be read".into()).cause(e.to_string())),
    };
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() {
        return Err(left("is no longer a regular file".into()));
    }
    if mode & 0o200 == 0 {
        return Err(left(format!("is read-only (mode {mode:04o})"))
            .hint(format!("make it writable (chmod u+w {shown}) to let cme-exec save cme's changes, or run with --no-write-back")));
    }
    if mode & 0o002 != 0 {
        return Err(left("is writable by other users".into()).hint(format!("chmod o-w {shown}")));
    }
    if meta.len() > base::MAX_BASE_BYTES {
        return Err(left("is larger than 4 MiB".into()));
    }
    let bytes = zeroize::Zeroizing::new(
        fs_err::read(target).map_err(|e| left("cannot be read".into()).cause(e.to_string()))?,
    );
    let doc =
        base::parse(&bytes).map_err(|m| left(format!("changed during the run and now {m}")))?;
    Ok((doc, mode))
}

#[cfg(unix)]
fn read_only_filesystem(target: &Path) -> bool {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty());
    let probe = if target.exists() {
        target
    } else {
        dir.unwrap_or(Path::new("."))
    };
    nix::sys::statvfs::statvfs(probe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// An exclusive `flock(2)` on `.<name>.cme-exec-lock` beside the base config, held until drop.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn acquire(target: &Path, wait: Duration) -> Result<Lock, Error> {
        let path = lock_path(target);
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .map_err(|e| {
                Error::new(format!("cannot create {}", dir.display())).cause(e.to_string())
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                Error::new(format!("cannot open the lock file {}", path.display()))
                    .cause(e.to_string())
            })?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let rc = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(
                    Error::new(format!("cannot lock {}", path.display())).cause(err.to_string())
                );
            }
            if started.elapsed() >= wait {
                return Err(Error::new(format!(
                    "another process held the lock {} for longer than {:.1} s; nothing was written back",
                    path.display(),
                    wait.as_secs_f64()
                ))
                .hint("a longer --grace waits longer; `fuser` shows who holds the lock"));
            }
            std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// The lock file for a base config: a dot file beside it, kept after use (removing it would let
/// two runs lock two different files).
pub fn lock_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app_data.json".into());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    dir.join(format!(".{name}.cme-exec-lock"))
}

/// How the user can save a value that was not written back.
fn save_with(path: &[String], value: &Value) -> String {
    if path.first().map(String::as_str) == Some("auth") {
        // `cme config set` splits URL keys on dots (cme-facts.md).
        return format!(
            "cme fetches it again on its next run, or set it with `cme config edit auth.{}`",
            path.get(1).map(String::as_str).unwrap_or("confluence")
        );
    }
    let raw = match value {
        // cme parses the value as JSON first: a string that would parse as JSON is quoted.
        Value::String(s) if serde_json::from_str::<Value>(s).is_err() && !is_bool_word(s) => {
            s.clone()
        }
        other => other.to_string(),
    };
    format!(
        "cme config set {}",
        shell_quote(&format!("{}={raw}", dotted(path)))
    )
}

fn is_bool_word(s: &str) -> bool {
    s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/=:,+@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

/// A leaf of a document, with an auth entry found by its normalised URL key.
fn lookup_entry<'a>(doc: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    let (last, parents) = path.split_last()?;
    for (i, k) in parents.iter().enumerate() {
        let next = if i == 2 && path[0] == "auth" {
            let product = Product::from_name(&path[1]).unwrap_or(Product::Confluence);
            let norm = normalised_key(product, k);
            cur.iter()
                .find(|(existing, _)| normalised_key(product, existing) == norm)
                .map(|(_, v)| v)
        } else {
            cur.get(k)
        };
        cur = next?.as_object()?;
    }
    cur.get(last)
}

fn leaf_changes(
    path: &mut Vec<String>,
    after: &Value,
    handed: &Value,
    defaults: &Value,
    out: &mut Vec<(Vec<String>, Value)>,
) {
    if let Value::Object(m) = after {
        for (k, v) in m {
            path.push(k.clone());
            leaf_changes(path, v, handed, defaults, out);
            path.pop();
        }
        return;
    }
    let before = lookup(handed, path).or_else(|| lookup(defaults, path));
    if before != Some(after) {
        out.push((path.clone(), after.clone()));
    }
}

fn auth_changes(
    handed: &Value,
    after: &Value,
    out: &mut Vec<(Vec<String>, Value)>,
    report: &mut Report,
) {
    for (product_name, entries) in after.as_object().into_iter().flatten() {
        let Some(product) = Product::from_name(product_name) else {
            continue;
        };
        for (url, entry) in entries.as_object().into_iter().flatten() {
            let before = handed_entry(handed, product, url);
            for (field, value) in entry.as_object().into_iter().flatten() {
                let old = before.and_then(|b| b.get(field));
                let unchanged = match old {
                    Some(o) => o == value,
                    None => value.as_str() == Some(""),
                };
                if unchanged {
                    continue;
                }
                if schema::is_secret_field(field) {
                    report
                        .dropped_secrets
                        .push(format!("auth.{product_name}[{url:?}].{field}"));
                } else if field == "cloud_id" {
                    out.push((
                        vec![
                            "auth".into(),
                            product_name.clone(),
                            url.clone(),
                            field.clone(),
                        ],
                        value.clone(),
                    ));
                }
            }
        }
    }
}

/// The handed entry cme's key `url` refers to (cme may have normalised the key differently).
fn handed_entry<'a>(
    handed: &'a Value,
    product: Product,
    url: &str,
) -> Option<&'a Map<String, Value>> {
    let entries = handed.get("auth")?.get(product.name())?.as_object()?;
    let norm = normalised_key(product, url);
    entries
        .iter()
        .find(|(k, _)| normalised_key(product, k) == norm)
        .and_then(|(_, v)| v.as_object())
}

fn set_path(doc: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths are never empty");
    let mut cur = doc;
    for (i, k) in parents.iter().enumerate() {
        // An auth entry may be keyed differently (trailing slash) in the base config.
        let key = if i == 2 && path[0] == "auth" {
            let product = Product::from_name(&path[1]).unwrap_or(Product::Confluence);
            let norm = normalised_key(product, k);
            cur.keys()
                .find(|existing| normalised_key(product, existing) == norm)
                .cloned()
                .unwrap_or_else(|| k.clone())
        } else {
            k.clone()
        };
        let slot = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur.insert(last.clone(), value);
}

fn dotted(path: &[String]) -> String {
    let mut s = String::new();
    for (i, k) in path.iter().enumerate() {
        if i == 2 && path[0] == "auth" {
            s.push_str(&format!("[{k:?}]"));
        } else {
            if i > 0 {
                s.push('.');
            }
            s.push_str(k);
        }
    }
    s
}
