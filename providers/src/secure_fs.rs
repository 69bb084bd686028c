//! File-safety checks shared by every backend that reads local files (the `file` provider,
//! Vault's token and credential files, the command provider's program): a file others can write
//! is refused with a hint that is safe to follow; a secret file every user can read is warned
//! about. A leaf: it imports only the error type.

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

/// Whether every user of this system can read the file: it is readable by others (`o+r`), and
/// every directory above it lets others through (`o+x`). A file in a private home directory
/// is not, whatever its own mode; a group-readable one is not either (a group shared with the
/// reader is a documented way to hand a file over).
pub fn readable_by_everyone(path: &Path, meta: &std::fs::Metadata) -> bool {
    if meta.mode() & 0o004 == 0 {
        return false;
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    real.ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// A warning, not a refusal (the user may have reasons; `render --mode 0644` is treated the
/// same way), for secret files every user can read: `what` names them (a path, or a directory
/// and its keys). Said once per file and process.
pub fn warn_readable_by_everyone(path: &Path, what: &str, meta: &std::fs::Metadata) {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SAID: Mutex<BTreeSet<std::path::PathBuf>> = Mutex::new(BTreeSet::new());
    if !SAID
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_owned())
    {
        return;
    }
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
    warning(&format!(
        "{what}: readable by every user on this system (mode {mode:04o}); a secret should not be: {hint}"
    ));
}

/// A warning on stderr, in the binary's format, control characters removed (a path may hold
/// them); printed whatever the verbosity.
pub fn warning(message: &str) {
    use std::io::Write as _;
    let clean: String = message.chars().filter(|c| !c.is_control()).collect();
    let text = format!("cme-exec: warning: {clean}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
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
    fn readable_by_everyone_needs_every_directory_above_open() {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "x").unwrap();
        set(dir.path(), 0o755);
        let meta = |p: &Path| std::fs::metadata(p).unwrap();
        for (file_mode, dir_mode, everyone) in [
            (0o644, 0o755, true),
            (0o604, 0o711, true),
            (0o640, 0o755, false),
            (0o600, 0o755, false),
            (0o644, 0o700, false),
            (0o644, 0o750, false),
        ] {
            set(&file, file_mode);
            set(dir.path(), dir_mode);
            assert_eq!(
                readable_by_everyone(&file, &meta(&file)),
                everyone,
                "{file_mode:o} in {dir_mode:o}"
            );
        }
        set(dir.path(), 0o700);
    }

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
