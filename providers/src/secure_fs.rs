//! File-safety checks shared by every backend that reads local files (the `file` provider,
//! Vault's token and credential files, the command provider's program): a file others can write
//! is refused with a hint that is safe to follow. A leaf: it imports only the error type.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::error::FetchError;
use crate::payload::MAX_DOCUMENT_BYTES;

/// Refuses a path that other users can write: they could swap the secret cme-exec hands over.
/// Callers check the file's type first: a device or FIFO is refused as such, never with a hint
/// to change its mode.
pub fn check_not_world_writable(path: &Path, meta: &std::fs::Metadata) -> Result<(), FetchError> {
    if meta.mode() & 0o002 != 0 {
        return Err(FetchError::denied(format!(
            "{} is writable by other users, so anyone could replace the secret",
            path.display()
        ))
        .with_hint(permission_hint(path, meta)));
    }
    Ok(())
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `chmod o-w PATH` only for a regular file or directory of the user's own outside the system's
/// directories; otherwise (a device, someone else's file, `/tmp`, `/dev/...`) following such a
/// hint could break the system, so the hint is to move the secret instead (issue 9, item 15).
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
mod tests {
    use super::*;

    #[test]
    fn no_chmod_hint_for_system_paths() {
        assert!(is_system_path(Path::new("/tmp")));
        assert!(is_system_path(Path::new("/dev/shm/x")));
        assert!(is_system_path(Path::new("/usr/share/x")));
        assert!(is_system_path(Path::new("/")));
        assert!(!is_system_path(Path::new("/etc/cme/token")));
        assert!(!is_system_path(Path::new("/home/me/token")));
    }
}
