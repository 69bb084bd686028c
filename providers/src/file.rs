//! The `file` provider: local files and directories.
//!
//! ```toml
//! api_token = "file:///run/secrets/atlassian-token"     # whole file, minus one trailing newline
//! api_token = "file:secrets/atlassian.json#api_token"   # relative to the config file's directory
//! from      = "file:///run/secrets/wiki"                # a directory: one file per key (Kubernetes)
//!
//! [providers.k8s]                                       # optional: a named file provider
//! kind = "file"
//! root = "/var/run/secrets/cme"                         # relative paths resolve against it
//! ```
//!
//! `#KEY` reads the file as JSON, TOML or dotenv (by extension: `.json`, `.toml`, `.env`;
//! otherwise JSON when it starts with `{`, else TOML, else dotenv). A directory is read as an
//! object of its regular files, skipping names that start with `.` (Kubernetes keeps its
//! `..data` bookkeeping there). Only regular files are read: a FIFO or device is refused (before
//! anything else is said about it) so a run can never hang on it. A file that other users can
//! write is refused; one that every user can read (`o+r`, in directories every user can enter)
//! is read, with a warning on stderr.
//!
//! Directories: kubelet's atomic writer mounts a Secret or ConfigMap as
//! `..2026_11_30_05_33_52.123456789/KEY` (the files), `..data -> ..2026_...` and `KEY ->
//! ..data/KEY`, and the volume root may be `drwxrwxrwt` owned by root. So a directory others can
//! write is accepted only with the sticky bit and owned by root or by the user running cme-exec
//! (then nobody else can rename or replace what is in it), and every entry read from it, and
//! the file it leads to, must then belong to root, that user or the directory's owner (another
//! user could add a new name). In every directory a key that is a link must resolve inside the
//! directory: a link leading elsewhere is refused, never followed.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::payload::{Format, Payload, SecretMap, MAX_DOCUMENT_BYTES};
use crate::secure_io::{
    allows, check_not_world_writable, check_opened, is_sticky, open_nonblocking, permission_hint,
    read_opened, readable_by_everyone, too_large, warn_readable_by_everyone, world_writable,
    Access, Checks, Owners, Refused, Who,
};
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

/// Writing documents for `import`: `file/write.rs`.
mod write;

/// `kind = "file"`: always built in.
pub const KIND: Kind = Kind::new("file");

/// The `file` backend, listed in `registry::BACKENDS`.
pub struct FileBackend;

impl Backend for FileBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn parse(&self, r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(FileSettings {
            root: r.path_buf("root"),
        })
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(FileSettings::default()))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        check_document(doc)
    }

    fn destination(
        &self,
        scheme: &str,
        location: &str,
    ) -> Option<Result<crate::provider::Destination, FetchError>> {
        Some(write::destination(scheme, location))
    }
}

/// `[providers.NAME]` for `kind = "file"`.
#[derive(Clone, Debug, Default)]
pub struct FileSettings {
    /// Relative paths of this provider are resolved against `root` instead of the config
    /// file's directory.
    pub root: Option<PathBuf>,
}

impl BackendSettings for FileSettings {
    fn describe(&self) -> String {
        match &self.root {
            Some(r) => format!("kind file, files under {}", r.display()),
            None => "kind file, files relative to the config file".into(),
        }
    }

    fn build(&self, _name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        Ok(Arc::new(FileProvider::new(self, ctx)))
    }

    fn check_offline(
        &self,
        ctx: &Arc<Context>,
        doc: &Document,
    ) -> Option<Result<String, FetchError>> {
        Some(check_offline(self, ctx, doc))
    }
}

pub fn check_document(doc: &Document) -> Result<(), String> {
    doc.only_params(&[])?;
    if doc.has_authority && !doc.location.starts_with('/') {
        return Err(
            "a file reference is file:///ABSOLUTE/PATH or file:RELATIVE/PATH (`file://host/...` \
             names a host, which is not supported)"
                .into(),
        );
    }
    Ok(())
}

pub struct FileProvider {
    root: PathBuf,
}

impl FileProvider {
    pub fn new(settings: &FileSettings, ctx: &Arc<Context>) -> Self {
        let root = match &settings.root {
            Some(r) if r.is_absolute() => r.clone(),
            Some(r) => ctx.base_dir.join(r),
            None => ctx.base_dir.clone(),
        };
        FileProvider { root }
    }

    fn path_of(&self, doc: &Document) -> PathBuf {
        let p = Path::new(&doc.location);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.root.join(p)
        }
    }
}

#[async_trait]
impl Provider for FileProvider {
    fn kind(&self) -> Kind {
        KIND
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        let path = self.path_of(doc);
        read_path(&path)
    }

    async fn write(
        &self,
        location: &str,
        fields: &crate::provider::Fields,
    ) -> Result<bool, FetchError> {
        write::write(&self.root.join(location), fields)
    }
}

/// `check --offline`: what can be said of a file reference by its metadata alone, never
/// reading a secret. The file's type and the write rule are errors as when it is read (a
/// directory's own rule too; its entries' ownership is left to the read); a file every user can
/// read is warned about; a file that does not exist on this machine (a CI runner without the
/// secrets) is a note, not a failure.
pub fn check_offline(
    settings: &FileSettings,
    ctx: &Arc<Context>,
    doc: &Document,
) -> Result<String, FetchError> {
    let path = FileProvider::new(settings, ctx).path_of(doc);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!("{} does not exist here", path.display()))
        }
        Err(e) => return Err(FetchError::io(&path, &e)),
    };
    if meta.is_dir() {
        check_dir(&path, &meta)?;
        let mut open_to_all = Vec::new();
        let entries = std::fs::read_dir(&path).map_err(|e| FetchError::io(&path, &e))?;
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let Some(key) = name.to_str().filter(|k| !k.starts_with('.')) else {
                continue;
            };
            let entry = path.join(key);
            let Ok(m) = std::fs::metadata(&entry) else {
                continue;
            };
            if m.is_dir() {
                continue;
            }
            check_regular(&entry, &m)?;
            check_not_world_writable(&entry, &m)?;
            if readable_by_everyone(&entry, &m) {
                open_to_all.push((key.to_owned(), m));
            }
        }
        warn_directory(&path, &open_to_all);
        return Ok("permissions ok".into());
    }
    check_regular(&path, &meta)?;
    check_not_world_writable(&path, &meta)?;
    if readable_by_everyone(&path, &meta) {
        warn_readable_by_everyone(&path, &path.display().to_string(), &meta);
    }
    Ok("permissions ok".into())
}

/// One warning for the keys of a directory that every user can read.
fn warn_directory(dir: &Path, open_to_all: &[(String, std::fs::Metadata)]) {
    if let Some((_, meta)) = open_to_all.first() {
        let keys: Vec<&str> = open_to_all.iter().map(|(k, _)| k.as_str()).collect();
        let what = match keys.as_slice() {
            [one] => format!("the file {one} in {}", dir.display()),
            _ => format!("the files {} in {}", keys.join(", "), dir.display()),
        };
        warn_readable_by_everyone(dir, &what, meta);
    }
}

/// How far the entries of a directory can be trusted.
#[derive(Clone, Copy)]
enum DirTrust {
    /// Others cannot write to it.
    Closed,
    /// Others can add names (sticky, owned by root or us): each entry, and what it leads to,
    /// must belong to root, us or this owner.
    Sticky { owner: u32 },
}

fn check_dir(path: &Path, meta: &std::fs::Metadata) -> Result<DirTrust, FetchError> {
    let mode = meta.mode();
    if !allows(mode, Who::Others, Access::Write) {
        return Ok(DirTrust::Closed);
    }
    let owner = meta.uid();
    let why = if !is_sticky(mode) {
        "others can write to it and it has no sticky bit, so anyone could replace a secret in it"
            .to_owned()
    } else if Owners::RootOrMe.accept(owner) {
        return Ok(DirTrust::Sticky { owner });
    } else {
        format!(
            "others can write to it and it belongs to another user (uid {owner}), who could replace \
             a secret in it"
        )
    };
    Err(
        FetchError::denied(format!("{} is not a safe directory: {why}", path.display()))
            .with_hint(permission_hint(path, meta)),
    )
}

fn read_path(path: &Path) -> Result<Payload, FetchError> {
    // Not blocking: opening a FIFO must not hang; the type check below then refuses it.
    let file = open_nonblocking(path, true).map_err(|e| FetchError::io(path, &e))?;
    let meta = file.metadata().map_err(|e| FetchError::io(path, &e))?;
    if meta.is_dir() {
        let trust = check_dir(path, &meta)?;
        return read_dir(path, trust).map(Payload::Object);
    }
    check_opened(&meta, &Checks::NOT_WRITABLE_BY_OTHERS).map_err(|r| refusal(path, r))?;
    if readable_by_everyone(path, &meta) {
        warn_readable_by_everyone(path, &path.display().to_string(), &meta);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = read_text(path, &file, &meta)?;
    Ok(Payload::Text {
        value: text,
        format: Format::from_file_name(&name),
    })
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), FetchError> {
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    Ok(())
}

fn not_regular(path: &Path) -> FetchError {
    FetchError::invalid(format!(
        "{} is not a regular file (a FIFO, socket or device is never read)",
        path.display()
    ))
}

/// A refusal of [`crate::secure_io`] in this provider's words (a directory's entries say an
/// owner they do not accept in their own).
fn refusal(path: &Path, refused: Refused) -> FetchError {
    match refused {
        Refused::NotRegular => not_regular(path),
        Refused::Owner(uid) => FetchError::denied(format!(
            "{} belongs to another user (uid {uid})",
            path.display()
        )),
        Refused::Writable(meta) => world_writable(path, &meta),
        Refused::TooLarge => too_large(path),
        Refused::Open(e) | Refused::Stat(e) | Refused::Read(e) => FetchError::io(path, &e),
    }
}

/// The document in a regular file, at most [`MAX_DOCUMENT_BYTES`], minus one trailing newline.
fn read_text(
    path: &Path,
    file: &File,
    meta: &std::fs::Metadata,
) -> Result<SecretString, FetchError> {
    let mut buf =
        read_opened(file, meta, MAX_DOCUMENT_BYTES as u64).map_err(|r| refusal(path, r))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| FetchError::invalid(format!("{} is not valid UTF-8 text", path.display())))?;
    Ok(SecretString::from(text.to_owned()))
}

fn read_dir(dir: &Path, trust: DirTrust) -> Result<SecretMap, FetchError> {
    let mut map = Map::new();
    let mut total = 0usize;
    let inside = std::fs::canonicalize(dir).map_err(|e| FetchError::io(dir, &e))?;
    let checks = Checks {
        follow_links: false,
        owners: match trust {
            DirTrust::Closed => Owners::Anyone,
            DirTrust::Sticky { owner } => Owners::RootMeOr(owner),
        },
        ..Checks::NOT_WRITABLE_BY_OTHERS
    };
    let foreign = |path: &Path, uid: u32| {
        FetchError::denied(format!(
            "{} belongs to another user (uid {uid}) in {}, which everyone can add to",
            path.display(),
            dir.display()
        ))
        .with_hint("remove it, or keep the secrets in a directory only you (or root) can write")
    };
    let entries = std::fs::read_dir(dir).map_err(|e| FetchError::io(dir, &e))?;
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    // Keys whose files every user can read: one warning for the directory, after the reads.
    let mut open_to_all: Vec<(String, std::fs::Metadata)> = Vec::new();
    for name in names {
        let Some(key) = name.to_str() else {
            continue;
        };
        if key.starts_with('.') {
            continue;
        }
        let path = dir.join(key);
        let link = std::fs::symlink_metadata(&path).map_err(|e| FetchError::io(&path, &e))?;
        if !checks.owners.accept(link.uid()) {
            return Err(foreign(&path, link.uid()));
        }
        // A link (kubelet's `KEY -> ..data/KEY`) is opened at where it resolves, which must be
        // inside the directory.
        let target = if link.file_type().is_symlink() {
            let target = std::fs::canonicalize(&path).map_err(|e| FetchError::io(&path, &e))?;
            if !target.starts_with(&inside) {
                return Err(FetchError::denied(format!(
                    "{} is a link that leads outside {}; it is not followed",
                    path.display(),
                    dir.display()
                ))
                .with_hint("keep every key of a directory inside it"));
            }
            target
        } else {
            path.clone()
        };
        let file = open_nonblocking(&target, false).map_err(|e| FetchError::io(&path, &e))?;
        let meta = file.metadata().map_err(|e| FetchError::io(&path, &e))?;
        if meta.is_dir() {
            continue;
        }
        check_opened(&meta, &checks).map_err(|r| match r {
            Refused::Owner(uid) => foreign(&path, uid),
            r => refusal(&path, r),
        })?;
        if readable_by_everyone(&target, &meta) {
            open_to_all.push((key.to_owned(), meta.clone()));
        }
        let text = read_text(&path, &file, &meta)?;
        total += meta.len() as usize;
        if total > MAX_DOCUMENT_BYTES {
            return Err(too_large(dir));
        }
        use secrecy::ExposeSecret as _;
        map.insert(
            key.to_owned(),
            Value::String(text.expose_secret().to_owned()),
        );
    }
    warn_directory(dir, &open_to_all);
    Ok(SecretMap::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::select_string;
    use crate::reference::{Key, Reference};
    use crate::EnvReader;
    use secrecy::ExposeSecret as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn provider(dir: &Path) -> FileProvider {
        let ctx = Arc::new(Context::new(dir.to_owned(), EnvReader::from_vars([])));
        FileProvider::new(&FileSettings::default(), &ctx)
    }

    fn fetch(p: &FileProvider, raw: &str) -> Result<Payload, FetchError> {
        let r = Reference::parse(raw).unwrap();
        check_document(&r.document).unwrap();
        futures::executor::block_on(p.fetch(&r.document))
    }

    #[test]
    fn whole_file_minus_one_newline_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "abc\n\n").unwrap();
        let p = provider(dir.path());
        let v = select_string(&fetch(&p, "file:tok").unwrap(), None).unwrap();
        assert_eq!(v.expose_secret(), "abc\n");
        let abs = format!("file://{}", dir.path().join("tok").display());
        assert!(fetch(&p, &abs).is_ok());
    }

    #[test]
    fn directory_is_an_object_without_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("mount");
        std::fs::create_dir_all(d.join("..data")).unwrap();
        std::fs::write(d.join("api_token"), "t\n").unwrap();
        std::fs::write(d.join("..data/x"), "hidden").unwrap();
        let p = provider(dir.path());
        let payload = fetch(&p, "file:mount").unwrap();
        let Payload::Object(m) = &payload else {
            panic!()
        };
        assert_eq!(m.expose().keys().collect::<Vec<_>>(), ["api_token"]);
        let v = select_string(&payload, Some(&Key::Plain("api_token".into()))).unwrap();
        assert_eq!(v.expose_secret(), "t");
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        let e = fetch(&p, "file:missing").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::NotFound);

        std::fs::write(dir.path().join("ww"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("ww"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let e = fetch(&p, "file:ww").unwrap_err();
        assert!(e.hint().unwrap().contains("chmod o-w"), "{e}");

        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert!(fetch(&p, "file:bin")
            .unwrap_err()
            .message()
            .contains("UTF-8"));

        nix_mkfifo(&dir.path().join("fifo"));
        assert!(fetch(&p, "file:fifo")
            .unwrap_err()
            .message()
            .contains("regular file"));

        let big = vec![b'a'; MAX_DOCUMENT_BYTES + 1];
        std::fs::write(dir.path().join("big"), big).unwrap();
        assert!(fetch(&p, "file:big")
            .unwrap_err()
            .message()
            .contains("larger"));
    }

    /// kubelet's atomic writer layout (pkg/volume/util/atomic_writer.go): the files in a
    /// timestamped directory, `..data` pointing at it, one link per key through `..data`.
    fn kubelet_volume(root: &Path, files: &[(&str, &str)]) {
        let ts = "..2026_11_30_05_33_52.123456789";
        std::fs::create_dir_all(root.join(ts)).unwrap();
        std::fs::set_permissions(root.join(ts), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (key, value) in files {
            let f = root.join(ts).join(key);
            std::fs::write(&f, value).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::symlink(format!("..data/{key}"), root.join(key)).unwrap();
        }
        std::os::unix::fs::symlink(ts, root.join("..data")).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    }

    #[test]
    fn a_kubelet_volume_with_a_sticky_root_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("secret");
        kubelet_volume(
            &vol,
            &[("username", "u@example.com\n"), ("api_token", "tok")],
        );
        let p = provider(dir.path());
        let payload = fetch(&p, "file:secret").unwrap();
        let Payload::Object(m) = &payload else {
            panic!()
        };
        assert_eq!(
            m.expose().keys().collect::<Vec<_>>(),
            ["api_token", "username"]
        );
        let v = select_string(&payload, Some(&Key::Plain("username".into()))).unwrap();
        assert_eq!(v.expose_secret(), "u@example.com");
        // One key of it, through its link.
        let v = select_string(&fetch(&p, "file:secret/api_token").unwrap(), None).unwrap();
        assert_eq!(v.expose_secret(), "tok");
    }

    #[test]
    fn unsafe_directories_stay_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path());
        // World-writable without the sticky bit.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::write(open.join("pat"), "x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = fetch(&p, "file:open").unwrap_err();
        assert!(e.message().contains("no sticky bit"), "{e}");
        // A key that links outside the directory, in a private and in a sticky directory.
        std::fs::write(dir.path().join("elsewhere"), "x").unwrap();
        for mode in [0o700, 0o1777] {
            let vol = dir.path().join(format!("vol{mode:o}"));
            kubelet_volume(&vol, &[("username", "u")]);
            std::os::unix::fs::symlink("../elsewhere", vol.join("pat")).unwrap();
            std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = fetch(&p, &format!("file:vol{mode:o}")).unwrap_err();
            assert!(e.message().contains("leads outside"), "{e}");
        }
    }

    #[test]
    fn a_device_is_refused_by_type_without_a_chmod_hint() {
        let p = provider(Path::new("/"));
        for path in ["/dev/zero", "/dev/null"] {
            let e = fetch(&p, &format!("file://{path}")).unwrap_err();
            assert!(e.message().contains("not a regular file"), "{e}");
            assert!(e.hint().is_none_or(|h| !h.contains("chmod")), "{e}");
        }
    }

    fn nix_mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn host_form_is_refused() {
        let r = Reference::parse("file://host/x").unwrap();
        assert!(check_document(&r.document).is_err());
    }
}
