//! Secret bytes in memory and the local files they come from, handled one way everywhere.
//!
//! - **Private files** ([`read_private_file`], or [`open_private`] then [`read_opened`]): opened
//!   without blocking (a FIFO planted at the path cannot hang the open) and, where the caller
//!   asks, without following a link; every check is made on the opened descriptor (regular
//!   file, owner, who can write it), so nothing can be swapped between the check and the read;
//!   the size is capped before and while reading, so a file that grows after its `stat` is
//!   still stopped at the limit.
//! - **Buffers** ([`SecretBuf`]): a growable buffer that is wiped when dropped and grows by
//!   copying into a new wiped buffer, never by a reallocation that would leave the old bytes in
//!   freed memory. Every reader of unknown length (a file, a pipe, an HTTP body, a serialiser)
//!   goes through it.
//! - **`Bytes` for hyper** ([`wiped_bytes`]): reqwest and hyper hold request bodies and header
//!   values as `Bytes`; these own a wiped buffer, so the last reference dropped wipes it.
//! - **Permission bits** ([`allows`], [`is_sticky`]): "others can write", "group or others can
//!   read", ... said by name instead of octal masks.
//! - **Error causes** ([`deepest_cause`]): the innermost cause of an error chain, cleaned for a
//!   one-line message.
//! - **File-safety policy** of the backends that read local files (the `file` provider, Vault's
//!   token and credential files, the command provider's program): a file others can write is
//!   refused with a hint that is safe to follow ([`check_not_world_writable`]); a secret file
//!   every user can read is warned about ([`warn_readable_by_everyone`]).
//!
//! A leaf: it imports only the error type and the document size limit.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::FetchError;
use crate::payload::MAX_DOCUMENT_BYTES;

// ---------------------------------------------------------------------------------------------
// Permission bits

/// Whose permission bits a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Owner,
    Group,
    Others,
    /// Either the group or others: anyone but the owner.
    GroupOrOthers,
    /// The owner, the group or others.
    Anyone,
}

/// Which permission a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Execute for a file, search (enter) for a directory.
    Execute,
    /// Any of read, write or execute.
    Any,
}

/// Whether `mode` grants `access` to `who`: `allows(mode, Who::Others, Access::Write)` is
/// "others can write" (`o+w`), `allows(mode, Who::GroupOrOthers, Access::Any)` is "anyone but
/// the owner has some access" (a mask of `0o077`).
pub const fn allows(mode: u32, who: Who, access: Access) -> bool {
    let bits = match access {
        Access::Read => 0o4,
        Access::Write => 0o2,
        Access::Execute => 0o1,
        Access::Any => 0o7,
    };
    // One octal digit per class: multiplying by 0o100, 0o010 and 0o001 places the bits there.
    let classes = match who {
        Who::Owner => 0o100,
        Who::Group => 0o010,
        Who::Others => 0o001,
        Who::GroupOrOthers => 0o011,
        Who::Anyone => 0o111,
    };
    mode & (bits * classes) != 0
}

/// The sticky bit: in a directory others can write, only a file's owner (or the directory's,
/// or root) can rename or remove it.
pub const fn is_sticky(mode: u32) -> bool {
    mode & 0o1000 != 0
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

// ---------------------------------------------------------------------------------------------
// Buffers

/// A buffer reached its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

/// A growable byte buffer for secrets: wiped when dropped, and grown by copying into a new
/// wiped buffer (the old one is wiped as it drops), never by `Vec`'s reallocation, which would
/// free the old bytes without wiping them. Optionally bounded: bytes past the limit are refused
/// before anything is copied.
pub struct SecretBuf {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
}

impl SecretBuf {
    /// An empty buffer that holds at most `limit` bytes, with room for `capacity` (at most
    /// `limit`) before it first grows.
    pub fn bounded(capacity: usize, limit: usize) -> SecretBuf {
        SecretBuf {
            buf: Zeroizing::new(Vec::with_capacity(capacity.min(limit))),
            limit,
        }
    }

    /// An empty buffer without a limit, with room for `capacity` bytes before it first grows.
    pub fn with_capacity(capacity: usize) -> SecretBuf {
        SecretBuf::bounded(capacity, usize::MAX)
    }

    /// Appends `bytes`, or refuses them all when the buffer would then hold more than its limit.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        let needed = self.buf.len().checked_add(bytes.len()).ok_or(TooLarge)?;
        if needed > self.limit {
            return Err(TooLarge);
        }
        if needed > self.buf.capacity() {
            let grown = needed
                .max(self.buf.capacity().saturating_mul(2))
                .min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(grown));
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Removes and returns the last byte (shrinking never reallocates).
    pub fn pop(&mut self) -> Option<u8> {
        self.buf.pop()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes, still in their wiped buffer.
    pub fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

impl std::ops::Deref for SecretBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

/// A serialiser writes into it as into a `Vec`; past a bounded buffer's limit a write fails.
impl io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.extend(buf)
            .map_err(|TooLarge| io::Error::other("more than the buffer's limit"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a read in chunks of this size leaves on the stack is wiped too.
const CHUNK: usize = 16 * 1024;

/// Why [`read_capped`] stopped.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Io(io::Error),
}

/// Reads `reader` to its end into a wiped buffer, at most `limit` bytes. `size_hint` (a file's
/// `stat` size) sizes the buffer and is refused at once when over the limit; a reader that
/// holds more than it said (procfs reports 0, a file may grow) is still stopped at the limit.
pub fn read_capped(
    mut reader: impl io::Read,
    size_hint: u64,
    limit: u64,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    if size_hint > limit {
        return Err(ReadError::TooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // One more than the size: the read that finds the end needs no room, but a file that grew
    // by a little is read without growing the buffer.
    let hint = usize::try_from(size_hint)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut buf = SecretBuf::bounded(hint, limit);
    let mut chunk = Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(buf.into_inner()),
            Ok(n) => buf
                .extend(&chunk[..n])
                .map_err(|TooLarge| ReadError::TooLarge)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private files

/// Whose files are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    Anyone,
    /// Root or the user running cme-exec.
    RootOrMe,
    /// Root, the user running cme-exec, or this user (a directory's owner).
    RootMeOr(u32),
}

impl Owners {
    pub fn accept(self, uid: u32) -> bool {
        match self {
            Owners::Anyone => true,
            Owners::RootOrMe => uid == 0 || uid == euid(),
            Owners::RootMeOr(other) => uid == 0 || uid == euid() || uid == other,
        }
    }
}

/// What a private file must be, besides a regular file.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// Open a link at the path (`false`: `O_NOFOLLOW`, a link there is an error).
    pub follow_links: bool,
    pub owners: Owners,
    /// Refuse a file these can write (`None`: whoever can write it).
    pub refuse_writable_by: Option<Who>,
}

impl Checks {
    /// A file of anyone's that others cannot write, found through links.
    pub const NOT_WRITABLE_BY_OTHERS: Checks = Checks {
        follow_links: true,
        owners: Owners::Anyone,
        refuse_writable_by: Some(Who::Others),
    };
}

/// Why a private file was not read: each caller says it in its own words.
#[derive(Debug)]
pub enum Refused {
    Open(io::Error),
    Stat(io::Error),
    /// A directory, FIFO, socket or device.
    NotRegular,
    /// Owned by a user [`Checks::owners`] does not accept.
    Owner(u32),
    /// Writable by the class [`Checks::refuse_writable_by`] names; the file's metadata, for a
    /// hint that fits it.
    Writable(Box<std::fs::Metadata>),
    TooLarge,
    Read(io::Error),
}

/// A file read by [`read_private_file`]: its bytes, and the metadata of the descriptor they were
/// read from.
pub struct PrivateFile {
    pub bytes: Zeroizing<Vec<u8>>,
    pub meta: std::fs::Metadata,
}

/// Opens `path` for reading without blocking (`O_NONBLOCK`: opening a FIFO returns at once, and
/// the type check then refuses it) and, without `follow_links`, with `O_NOFOLLOW`.
pub fn open_nonblocking(path: &Path, follow_links: bool) -> io::Result<File> {
    let nofollow = if follow_links { 0 } else { libc::O_NOFOLLOW };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow)
        .open(path)
}

/// The checks on an opened file's metadata, in the order their refusals are reported: a
/// regular file, an accepted owner, then who can write it.
pub fn check_opened(meta: &std::fs::Metadata, checks: &Checks) -> Result<(), Refused> {
    if !meta.is_file() {
        return Err(Refused::NotRegular);
    }
    if !checks.owners.accept(meta.uid()) {
        return Err(Refused::Owner(meta.uid()));
    }
    if let Some(who) = checks.refuse_writable_by {
        if allows(meta.mode(), who, Access::Write) {
            return Err(Refused::Writable(Box::new(meta.clone())));
        }
    }
    Ok(())
}

/// Opens `path` ([`open_nonblocking`]) and checks the descriptor ([`check_opened`]), for a
/// caller that has more to check before it reads ([`read_opened`]).
pub fn open_private(path: &Path, checks: &Checks) -> Result<(File, std::fs::Metadata), Refused> {
    let file = open_nonblocking(path, checks.follow_links).map_err(Refused::Open)?;
    let meta = file.metadata().map_err(Refused::Stat)?;
    check_opened(&meta, checks)?;
    Ok((file, meta))
}

/// Reads an opened file ([`read_capped`]), at most `limit` bytes.
pub fn read_opened(
    file: &File,
    meta: &std::fs::Metadata,
    limit: u64,
) -> Result<Zeroizing<Vec<u8>>, Refused> {
    read_capped(file, meta.len(), limit).map_err(|e| match e {
        ReadError::TooLarge => Refused::TooLarge,
        ReadError::Io(e) => Refused::Read(e),
    })
}

/// Opens, checks and reads a private file: at most `limit` bytes, into a wiped buffer.
pub fn read_private_file(path: &Path, limit: u64, checks: &Checks) -> Result<PrivateFile, Refused> {
    let (file, meta) = open_private(path, checks)?;
    let bytes = read_opened(&file, &meta, limit)?;
    Ok(PrivateFile { bytes, meta })
}

// ---------------------------------------------------------------------------------------------
// Bytes for hyper

/// A wiped buffer as the owner of a [`bytes::Bytes`].
#[cfg(feature = "tls")]
struct WipedOwner(Zeroizing<Vec<u8>>);

#[cfg(feature = "tls")]
impl AsRef<[u8]> for WipedOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `Bytes` over `buf` itself (no copy), wiped when the last reference is dropped: reqwest and
/// hyper hold request bodies and header values as `Bytes`.
#[cfg(feature = "tls")]
pub fn into_wiped_bytes(buf: Zeroizing<Vec<u8>>) -> bytes::Bytes {
    bytes::Bytes::from_owner(WipedOwner(buf))
}

/// A copy of `b` as `Bytes` whose buffer is wiped when the last reference is dropped.
#[cfg(feature = "tls")]
pub fn wiped_bytes(b: &[u8]) -> bytes::Bytes {
    into_wiped_bytes(Zeroizing::new(b.to_vec()))
}

// ---------------------------------------------------------------------------------------------
// Error causes

/// The longest cause [`deepest_cause`] returns, in characters.
const MAX_CAUSE_CHARS: usize = 300;

/// The innermost cause's text (`Connection refused (os error 111)`), without the levels above
/// it (reqwest's top line repeats the URL; hyper's middle ones are its own bookkeeping, such as
/// `client error (Connect)`). Control characters are removed and the text is cut to 300
/// characters: a server or a file can put anything in an error. An `io::Error` wrapping another
/// error shows that error's text (its `source` skips it).
pub fn deepest_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_CAUSE_CHARS)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The backends' file-safety policy

/// Refuses a path that other users can write: they could swap the secret cme-exec hands over.
/// Callers check the file's type first: a device or FIFO is refused as such, never with a hint
/// to change its mode.
pub fn check_not_world_writable(path: &Path, meta: &std::fs::Metadata) -> Result<(), FetchError> {
    if allows(meta.mode(), Who::Others, Access::Write) {
        return Err(world_writable(path, meta));
    }
    Ok(())
}

/// The refusal of [`check_not_world_writable`].
pub fn world_writable(path: &Path, meta: &std::fs::Metadata) -> FetchError {
    FetchError::denied(format!(
        "{} is writable by other users, so anyone could replace the secret",
        path.display()
    ))
    .with_hint(permission_hint(path, meta))
}

/// Whether every user of this system can read the file: it is readable by others (`o+r`), and
/// every directory above it lets others through (`o+x`). A file in a private home directory
/// is not, whatever its own mode; a group-readable one is not either (a group shared with the
/// reader is a documented way to hand a file over).
pub fn readable_by_everyone(path: &Path, meta: &std::fs::Metadata) -> bool {
    if !allows(meta.mode(), Who::Others, Access::Read) {
        return false;
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    real.ancestors().skip(1).all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| allows(m.mode(), Who::Others, Access::Execute))
    })
}

/// A warning, not a refusal (the user may have reasons; `render --mode 0644` is treated the
/// same way), for secret files every user can read: `what` names them (a path, or a directory
/// and its keys). Said once per file and process.
pub fn warn_readable_by_everyone(path: &Path, what: &str, meta: &std::fs::Metadata) {
    if first_time(path) {
        warning(&readable_warning(path, what, meta));
    }
}

/// Whether `path` is named here for the first time in this process.
fn first_time(path: &Path) -> bool {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SAID: Mutex<BTreeSet<std::path::PathBuf>> = Mutex::new(BTreeSet::new());
    SAID.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_owned())
}

/// The text of [`warn_readable_by_everyone`], with the hint that fits the file.
fn readable_warning(path: &Path, what: &str, meta: &std::fs::Metadata) -> String {
    let mode = meta.mode() & 0o7777;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    // kubelet's atomic writer keeps the files under `..DATE` directories (file.rs).
    let kubelet = real
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with(".."));
    let dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    let hint = if kubelet {
        "give the Secret volume defaultMode: 0400 (or 0440 with the pod's fsGroup)".to_owned()
    } else if dir && !is_system_path(&real) {
        // Closing the directory is enough: nobody else can reach the files in it.
        format!("chmod o-rx {}", path.display())
    } else if meta.uid() == euid() && !is_system_path(&real) {
        format!("chmod o-r {}", path.display())
    } else {
        "keep secrets in files only you (or your group) can read".to_owned()
    };
    format!(
        "{what}: readable by every user on this system (mode {mode:04o}); a secret should not be: {hint}"
    )
}

/// A warning on stderr, in the binary's format, control characters removed (a path may hold
/// them); printed whatever the verbosity.
pub fn warning(message: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr()
        .lock()
        .write_all(warning_line(message).as_bytes());
}

/// The line [`warning`] prints.
fn warning_line(message: &str) -> String {
    let clean: String = message.chars().filter(|c| !c.is_control()).collect();
    format!("cme-exec: warning: {clean}\n")
}

/// `chmod o-w PATH` only for a regular file or directory of the user's own outside the system's
/// directories; otherwise (a device, someone else's file, `/tmp`, `/dev/...`) following such a
/// hint could break the system, so the hint is to move the secret instead.
pub fn permission_hint(path: &Path, meta: &std::fs::Metadata) -> String {
    let own = meta.uid() == euid() && (meta.is_file() || meta.is_dir());
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if own && !is_system_path(&real) && !is_system_path(path) {
        format!("chmod o-w {}", path.display())
    } else {
        "keep the secret in a file only you (or root) can write, and point the reference at it"
            .into()
    }
}

/// The root, the top-level directories themselves (`/tmp`, `/etc`), and everything under the
/// directories of devices, the kernel and installed software.
pub fn is_system_path(path: &Path) -> bool {
    const TREES: [&str; 11] = [
        "/dev", "/proc", "/sys", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
        "/boot",
    ];
    let depth = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count();
    depth <= 1 || path == Path::new("/var/tmp") || TREES.iter().any(|t| path.starts_with(t))
}

/// A document over the size limit, named by its path.
pub fn too_large(path: &Path) -> FetchError {
    FetchError::invalid(format!(
        "{} is larger than {} KiB, the limit for one secret document",
        path.display(),
        MAX_DOCUMENT_BYTES / 1024
    ))
}

#[cfg(test)]
mod tests;
