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
//! edit it while an export runs for an hour. So the save is a read-modify-write under a lock:
//! take an advisory lock on a lock file beside the base config (a lock on the file
//! itself would not survive the atomic rename), read the file as it is now, apply only this
//! run's own leaf changes, write it atomically, unlock. A leaf that the file changed since the
//! run started keeps the file's value and is reported with the command that would save it.
//! A file that no longer parses, is read-only or sits on a read-only filesystem is left
//! exactly as it is. The lock is `flock(2)`: the kernel drops it when its holder dies, so a
//! run killed while holding it never blocks the next; waiting for it has a deadline.
//!
//! Write-back writes only into the file that was loaded: the path is the canonical one fixed at
//! load (a link the user keeps was followed then, once), the file is opened relative to its
//! directory's descriptor with `O_NOFOLLOW`, and its device and inode must be the ones read at
//! load. A link planted at its name during the run, or another file put in its place, is left
//! alone and nothing is written. The replacement is a new file in the same directory (created
//! exclusively, links not followed) renamed over the old one relative to the same descriptor.
//! Runs that save at the same time each replace the file, so a run also accepts the file the
//! last save wrote: each save records the device and inode of the file it wrote in the lock
//! file, under the lock. (A file an editor saved by renaming during the run is refused like any
//! other replacement; the run's unsaved keys are named.)
//!
//! `import --remove-secrets` uses the same lock and the same safe read and replace
//! ([`Locked`]) for the cme config it rewrites.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};

use cme_exec_providers::payload::zeroize_value;
use serde_json::{Map, Value};

use super::{base, normalised_key, schema, BaseConfig};
use crate::config::Product;
use crate::error::Error;
use cme_exec_providers::secure_io::{allows, Access, Who};

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

    let target = base
        .origin
        .as_ref()
        .map_or_else(|| base.path.clone(), |o| o.real.clone());
    let locked =
        Locked::acquire(&target, &base.path, lock_wait, Purpose::WriteBack).map_err(not_saved)?;
    let (mut doc, mode) = read_current(base, &locked).map_err(not_saved)?;
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
    locked.replace(&bytes, mode).map_err(not_saved)?;
    Ok(report)
}

/// The base config as it is now, and the mode to keep, or why it must be left alone.
fn read_current(base: &BaseConfig, locked: &Locked) -> Result<(Map<String, Value>, u32), Error> {
    let shown = base.path.display();
    let left = |why: String| {
        Error::new(format!(
            "the base config {shown} {why}; it was left exactly as it is"
        ))
    };
    let loaded = base.origin.as_ref().and_then(|o| o.identity);
    let current =
        match locked.read() {
            Ok(Some(c)) => c,
            // Removed during the run (or never there): this run's changes make a new one.
            Ok(None) => return Ok((Map::new(), base.mode.unwrap_or(0o600))),
            Err(Unread::Link) => return Err(left(
                "was replaced by a symbolic link during the run; nothing was written through it"
                    .into(),
            )
            .hint(format!(
                "remove the link and put your base config back at {}",
                locked.path.display()
            ))),
            Err(Unread::NotFile) => return Err(left("is no longer a regular file".into())),
            Err(Unread::TooLarge) => return Err(left("is larger than 4 MiB".into())),
            Err(Unread::Io(e)) => return Err(left("cannot be read".into()).cause(e.to_string())),
        };
    let ours = |id| id == current.identity;
    if loaded.is_some_and(|id| !ours(id)) && !locked.last_written().is_some_and(ours) {
        return Err(left(
            "was replaced by another file during the run (not the one cme-exec read)".into(),
        ));
    }
    if !is_trusted_owner(current.uid) {
        return Err(left(format!(
            "now belongs to another user (uid {})",
            current.uid
        )));
    }
    let mode = current.mode;
    if !allows(mode, Who::Owner, Access::Write) {
        return Err(left(format!("is read-only (mode {mode:04o})"))
            .hint(format!("make it writable (chmod u+w {shown}) to let cme-exec save cme's changes, or run with --no-write-back")));
    }
    if allows(mode, Who::Others, Access::Write) {
        return Err(left("is writable by other users".into()).hint(format!("chmod o-w {shown}")));
    }
    let doc = base::parse(&current.bytes)
        .map_err(|m| left(format!("changed during the run and now {m}")))?;
    Ok((doc, mode))
}

fn is_trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Whether the directory `dir` is on a read-only filesystem.
fn read_only_filesystem(dir: &OwnedFd) -> bool {
    nix::sys::statvfs::fstatvfs(dir)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Who takes the lock, for its messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `run`'s write-back into the base config (waits up to `--grace`).
    WriteBack,
    /// `import --remove-secrets` on the cme config it imported (waits up to `--timeout`).
    Import,
}

/// A cme config file held for a read-modify-write: the write-back lock beside it, its directory
/// open (every later step is relative to that descriptor), and the file's name in it.
pub(crate) struct Locked {
    lock: Lock,
    dir: OwnedFd,
    name: OsString,
    /// The path as the user knows it, for messages.
    path: PathBuf,
}

/// The file as read under the lock.
pub(crate) struct Current {
    pub bytes: zeroize::Zeroizing<Vec<u8>>,
    pub identity: (u64, u64),
    pub mode: u32,
    pub uid: u32,
}

/// Why the file could not be read.
pub(crate) enum Unread {
    /// A symbolic link is at its name (never followed).
    Link,
    NotFile,
    TooLarge,
    Io(std::io::Error),
}

impl Locked {
    /// Takes the lock beside `real` (a canonical path), then opens its directory (the last
    /// component not followed) and checks it as the base config's directory is checked at load.
    pub(crate) fn acquire(
        real: &Path,
        shown: &Path,
        wait: Duration,
        purpose: Purpose,
    ) -> Result<Locked, Error> {
        let what = match purpose {
            Purpose::WriteBack => "the base config",
            Purpose::Import => "the cme config",
        };
        let real = std::path::absolute(real).map_err(|e| {
            Error::new(format!("cannot find {}", shown.display())).cause(e.to_string())
        })?;
        let dir_path = real.parent().unwrap_or(Path::new("/")).to_owned();
        let Some(name) = real.file_name().map(ToOwned::to_owned) else {
            return Err(Error::new(format!("{} names no file", shown.display())));
        };
        if !dir_path.exists() {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(&dir_path)
            .map_err(|e| {
                Error::new(format!("cannot create {}", dir_path.display())).cause(e.to_string())
            })?;
        }
        let dir = nix::fcntl::open(
            &dir_path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // O_NOFOLLOW with O_DIRECTORY answers a link with ENOTDIR (or ELOOP).
            nix::Error::ELOOP | nix::Error::ENOTDIR if dir_path.is_symlink() => Error::new(format!(
                "{} (the directory of {what} {}) was replaced by a symbolic link; nothing was written through it",
                dir_path.display(),
                shown.display()
            )),
            e => Error::new(format!("cannot open {}", dir_path.display())).cause(e.desc()),
        })?;
        let st = nix::sys::stat::fstat(&dir).map_err(|e| {
            Error::new(format!("cannot inspect {}", dir_path.display())).cause(e.desc())
        })?;
        // `st_mode` is u16 on macOS, u32 on Linux.
        #[allow(clippy::useless_conversion)]
        base::check_dir_of(what, shown, &dir_path, st.st_uid, u32::from(st.st_mode))?;
        // Before the lock, whose file cannot be opened for writing there either.
        if read_only_filesystem(&dir) {
            return Err(Error::new(format!(
                "{what} {} is on a read-only filesystem; it was left exactly as it is",
                shown.display()
            )));
        }
        let lock = Lock::acquire(&dir, &lock_path(&real), wait, purpose)?;
        Ok(Locked {
            lock,
            dir,
            name,
            path: shown.to_owned(),
        })
    }

    /// The device and inode of the file the last save under this lock wrote.
    fn last_written(&self) -> Option<(u64, u64)> {
        self.lock.last_written()
    }

    /// The file as it is now (`None` when there is none), opened without following a link.
    pub(crate) fn read(&self) -> Result<Option<Current>, Unread> {
        // O_NONBLOCK: a FIFO at the name must not hang the open.
        let fd = match openat(
            &self.dir,
            self.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(nix::Error::ELOOP) => return Err(Unread::Link),
            Err(e) => return Err(Unread::Io(e.into())),
        };
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(Unread::Io)?;
        if !meta.is_file() {
            return Err(Unread::NotFile);
        }
        let bytes = base::read_capped(file, meta.len()).map_err(|e| match e {
            base::Capped::TooLarge => Unread::TooLarge,
            base::Capped::Io(e) => Unread::Io(e),
        })?;
        Ok(Some(Current {
            bytes,
            identity: (meta.dev(), meta.ino()),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        }))
    }

    /// Replaces the file atomically with `bytes` and permission bits `mode`: a new file in the
    /// same directory, created exclusively with a random name, links not followed, written and
    /// fsynced, renamed over the name; the directory fsynced. A reader sees the old file or the
    /// whole new one.
    pub(crate) fn replace(&self, bytes: &[u8], mode: u32) -> Result<(), Error> {
        let fail = |e: std::io::Error| {
            Error::new(format!("cannot write {}", self.path.display())).cause(e.to_string())
        };
        let tmp = format!(
            ".{}.cme-exec-{}.tmp",
            self.name.to_string_lossy(),
            crate::atomic::random_suffix()
        );
        let fd = openat(
            &self.dir,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            file_mode(mode),
        )
        .map_err(|e| fail(e.into()))?;
        // From here on the temporary file is ours, and removed if anything fails.
        let result = (|| -> std::io::Result<()> {
            fchmod(&fd, file_mode(mode))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()?;
            let meta = file.metadata()?;
            renameat(&self.dir, tmp.as_str(), &self.dir, self.name.as_os_str())?;
            let _ = nix::unistd::fsync(self.dir.as_fd());
            self.lock.record((meta.dev(), meta.ino()));
            Ok(())
        })();
        if let Err(e) = result {
            let _ = nix::unistd::unlinkat(
                &self.dir,
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(fail(e));
        }
        Ok(())
    }
}

/// An exclusive `flock(2)` on `.<name>.cme-exec-lock` beside the base config, held until drop.
/// The lock file holds `DEV:INO` of the file the last save wrote.
struct Lock {
    file: std::fs::File,
}

impl Lock {
    fn last_written(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 64];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let (dev, ino) = text.trim().split_once(':')?;
        Some((dev.parse().ok()?, ino.parse().ok()?))
    }

    /// Best effort: a save whose record is lost only makes the next concurrent run refuse (and
    /// name its unsaved keys), never write elsewhere.
    fn record(&self, (dev, ino): (u64, u64)) {
        use std::os::unix::fs::FileExt as _;
        let text = format!("{dev}:{ino}\n");
        if self.file.set_len(0).is_ok() {
            let _ = self.file.write_all_at(text.as_bytes(), 0);
        }
    }

    /// Opens (creating it 0600, never through a link) the lock file `path` in `dir`, and waits
    /// up to `wait` for an exclusive lock on it.
    fn acquire(
        dir: &OwnedFd,
        path: &Path,
        wait: Duration,
        purpose: Purpose,
    ) -> Result<Lock, Error> {
        let name = path.file_name().unwrap_or_default();
        let file = openat(
            dir,
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(std::fs::File::from)
        .map_err(|e| {
            Error::new(format!("cannot open the lock file {}", path.display())).cause(e.desc())
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
                return Ok(Lock { file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(
                    Error::new(format!("cannot lock {}", path.display())).cause(err.to_string())
                );
            }
            if started.elapsed() >= wait {
                let (what, option) = match purpose {
                    Purpose::WriteBack => ("nothing was written back", "--grace"),
                    Purpose::Import => ("nothing was removed", "--timeout"),
                };
                return Err(Error::new(format!(
                    "another process held the lock {} for longer than {:.1} s; {what}",
                    path.display(),
                    wait.as_secs_f64()
                ))
                .hint(format!(
                    "a longer {option} waits longer; `fuser` shows who holds the lock"
                )));
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
    target.with_file_name(format!(".{name}.cme-exec-lock"))
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

/// Permission bits as nix takes them (`mode_t` is u16 on macOS, u32 on Linux; the bits fit).
#[allow(clippy::unnecessary_cast)]
fn file_mode(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode as nix::libc::mode_t)
}
