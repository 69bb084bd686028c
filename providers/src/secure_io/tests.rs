use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
}

// --- permission bits ---------------------------------------------------------------------

/// Every class and permission against the octal mask it stands for, on every mode.
#[test]
fn allows_is_the_octal_mask_it_names() {
    use Access::*;
    use Who::*;
    let masks: [(Who, Access, u32); 20] = [
        (Owner, Read, 0o400),
        (Owner, Write, 0o200),
        (Owner, Execute, 0o100),
        (Owner, Any, 0o700),
        (Group, Read, 0o040),
        (Group, Write, 0o020),
        (Group, Execute, 0o010),
        (Group, Any, 0o070),
        (Others, Read, 0o004),
        (Others, Write, 0o002),
        (Others, Execute, 0o001),
        (Others, Any, 0o007),
        (GroupOrOthers, Read, 0o044),
        (GroupOrOthers, Write, 0o022),
        (GroupOrOthers, Execute, 0o011),
        (GroupOrOthers, Any, 0o077),
        (Anyone, Read, 0o444),
        (Anyone, Write, 0o222),
        (Anyone, Execute, 0o111),
        (Anyone, Any, 0o777),
    ];
    for (who, access, mask) in masks {
        for mode in 0..0o10000 {
            assert_eq!(
                allows(mode, who, access),
                mode & mask != 0,
                "{who:?} {access:?} in {mode:04o}"
            );
        }
    }
}

#[test]
fn sticky_is_its_own_bit() {
    assert!(is_sticky(0o1777));
    assert!(is_sticky(0o1000));
    assert!(!is_sticky(0o0777));
    assert!(!is_sticky(0o6777));
}

// --- buffers -----------------------------------------------------------------------------

#[test]
fn a_buffer_fills_its_room_in_place_then_grows_into_a_new_one() {
    let mut b = SecretBuf::with_capacity(8);
    assert!(b.is_empty());
    assert_eq!(b.capacity(), 8);
    b.extend(b"abcd").unwrap();
    let at = b.as_ptr();
    // Exactly to its capacity: no new buffer.
    b.extend(b"efgh").unwrap();
    assert_eq!(b.as_ptr(), at);
    assert_eq!(b.capacity(), 8);
    // One more byte: a new buffer, at least twice as large, holding everything.
    b.extend(b"i").unwrap();
    assert_ne!(b.as_ptr(), at);
    assert!(b.capacity() >= 16, "{}", b.capacity());
    assert_eq!(b.as_slice(), b"abcdefghi");
    assert_eq!(b.len(), 9);
    assert!(!b.is_empty());
    // A write larger than double: room for all of it at once.
    let big = vec![b'x'; 100];
    b.extend(&big).unwrap();
    assert!(b.capacity() >= 109);
    assert_eq!(&b[9..], &big[..]);
    assert_eq!(b.pop(), Some(b'x'));
    assert_eq!(b.into_inner().len(), 108);
}

#[test]
fn a_bounded_buffer_takes_its_limit_exactly_and_refuses_more_whole() {
    let mut b = SecretBuf::bounded(100, 10);
    assert_eq!(b.capacity(), 10, "the first room is capped at the limit");
    b.extend(b"0123456789").unwrap();
    assert_eq!(b.extend(b"a"), Err(TooLarge));
    assert_eq!(b.as_slice(), b"0123456789");

    let mut b = SecretBuf::bounded(4, 10);
    b.extend(b"0123").unwrap();
    assert_eq!(b.extend(b"4567890"), Err(TooLarge));
    assert_eq!(b.as_slice(), b"0123", "nothing of a refused write is kept");
    b.extend(b"45678").unwrap();
    assert_eq!(b.capacity(), 9, "what is needed, more than double");
    b.extend(b"9").unwrap();
    assert_eq!(b.capacity(), 10, "double, but no more than the limit");
    assert_eq!(b.len(), 10);
}

#[test]
fn a_buffer_is_a_writer_for_serialisers() {
    let mut b = SecretBuf::with_capacity(0);
    serde_json::to_writer(&mut b, &serde_json::json!({"k": "v".repeat(50)})).unwrap();
    b.flush().unwrap();
    let text = String::from_utf8(b.into_inner().to_vec()).unwrap();
    assert_eq!(text, format!("{{\"k\":\"{}\"}}", "v".repeat(50)));

    let mut b = SecretBuf::bounded(0, 3);
    assert_eq!(b.write(b"abc").unwrap(), 3);
    assert!(b.write(b"d").is_err());
}

/// A reader that says what it is told to: some bytes, an interruption, then a failure or
/// the end.
struct Script(Vec<io::Result<Vec<u8>>>);

impl io::Read for Script {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let bytes = self.0.remove(0)?;
        out[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

#[test]
fn read_capped_reads_past_interruptions_and_stops_at_the_limit() {
    let interrupted = || Err(io::Error::from(io::ErrorKind::Interrupted));
    let r = Script(vec![Ok(b"ab".to_vec()), interrupted(), Ok(b"cd".to_vec())]);
    assert_eq!(&read_capped(r, 0, 4).unwrap()[..], b"abcd");
    // More than it said it held: stopped at the limit.
    let r = Script(vec![Ok(b"ab".to_vec()), Ok(b"cde".to_vec())]);
    assert!(matches!(read_capped(r, 2, 4), Err(ReadError::TooLarge)));
    // Its size over the limit: refused before a read.
    let r = Script(vec![Err(io::Error::other("never read"))]);
    assert!(matches!(read_capped(r, 5, 4), Err(ReadError::TooLarge)));
    // Exactly the limit, said or not.
    let r = Script(vec![Ok(b"abcd".to_vec())]);
    assert_eq!(read_capped(r, 4, 4).unwrap().len(), 4);
    let r = Script(vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
    assert_eq!(read_capped(r, 0, 4).unwrap().len(), 4);
    // A failure is handed back.
    let r = Script(vec![Ok(b"ab".to_vec()), Err(io::Error::other("gone"))]);
    assert!(matches!(read_capped(r, 0, 4), Err(ReadError::Io(e)) if e.to_string() == "gone"));
}

#[test]
fn read_capped_reads_more_than_one_chunk() {
    let data: Vec<u8> = (0..CHUNK * 3 + 5).map(|i| i as u8).collect();
    let got = read_capped(&data[..], 0, data.len() as u64).unwrap();
    assert_eq!(&got[..], &data[..]);
}

// --- private files -----------------------------------------------------------------------

#[test]
fn owners_accepts_whom_it_names() {
    let me = euid();
    let stranger = if me == 4242 { 4243 } else { 4242 };
    assert!(Owners::Anyone.accept(stranger));
    for owners in [Owners::RootOrMe, Owners::RootMeOr(stranger.wrapping_add(1))] {
        assert!(owners.accept(0));
        assert!(owners.accept(me));
        assert!(!owners.accept(stranger), "{owners:?}");
    }
    assert!(Owners::RootMeOr(stranger).accept(stranger));
}

#[test]
fn euid_is_the_owner_of_what_this_process_creates() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(std::fs::metadata(dir.path()).unwrap().uid(), euid());
}

#[test]
fn a_private_file_is_read_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "S3CRET").unwrap();
    set_mode(&f, 0o600);
    let read = read_private_file(&f, 6, &Checks::NOT_WRITABLE_BY_OTHERS).unwrap();
    assert_eq!(&read.bytes[..], b"S3CRET");
    assert_eq!(read.meta.len(), 6);
    assert!(matches!(
        read_private_file(&f, 5, &Checks::NOT_WRITABLE_BY_OTHERS),
        Err(Refused::TooLarge)
    ));
    assert!(matches!(
        read_private_file(&dir.path().join("missing"), 5, &Checks::NOT_WRITABLE_BY_OTHERS),
        Err(Refused::Open(e)) if e.kind() == io::ErrorKind::NotFound
    ));
}

#[test]
fn refusals_come_in_order_type_owner_writers() {
    let dir = tempfile::tempdir().unwrap();
    let checks = Checks::NOT_WRITABLE_BY_OTHERS;
    // A directory, and a FIFO (refused, never waited on).
    assert!(matches!(
        read_private_file(dir.path(), 10, &checks),
        Err(Refused::NotRegular)
    ));
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    assert!(matches!(
        read_private_file(&fifo, 10, &checks),
        Err(Refused::NotRegular)
    ));
    // Others can write it; the group writing it is refused only when asked.
    let f = dir.path().join("f");
    std::fs::write(&f, "x").unwrap();
    set_mode(&f, 0o602);
    assert!(matches!(
        read_private_file(&f, 10, &checks),
        Err(Refused::Writable(_))
    ));
    set_mode(&f, 0o620);
    assert!(read_private_file(&f, 10, &checks).is_ok());
    let strict = Checks {
        refuse_writable_by: Some(Who::GroupOrOthers),
        ..checks
    };
    assert!(matches!(
        read_private_file(&f, 10, &strict),
        Err(Refused::Writable(_))
    ));
    let lax = Checks {
        refuse_writable_by: None,
        ..checks
    };
    set_mode(&f, 0o666);
    assert!(read_private_file(&f, 10, &lax).is_ok());
    // Another user's file, when this test may give one away (as root).
    if euid() == 0 {
        std::os::unix::fs::chown(&f, Some(4242), None).unwrap();
        let mine = Checks {
            owners: Owners::RootOrMe,
            ..checks
        };
        // The owner is said before the writers.
        assert!(matches!(
            read_private_file(&f, 10, &mine),
            Err(Refused::Owner(4242))
        ));
        let theirs = Checks {
            owners: Owners::RootMeOr(4242),
            ..lax
        };
        assert!(read_private_file(&f, 10, &theirs).is_ok());
    }
}

#[test]
fn a_link_is_followed_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("real");
    std::fs::write(&f, "v").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&f, &link).unwrap();
    let follow = Checks::NOT_WRITABLE_BY_OTHERS;
    assert_eq!(
        &read_private_file(&link, 1, &follow).unwrap().bytes[..],
        b"v"
    );
    let nofollow = Checks {
        follow_links: false,
        ..follow
    };
    assert!(matches!(
        read_private_file(&link, 1, &nofollow),
        Err(Refused::Open(e)) if e.raw_os_error() == Some(libc::ELOOP)
    ));
    assert!(read_private_file(&f, 1, &nofollow).is_ok());
}

/// A file that grows between its `stat` and its read is still cut at the limit.
#[test]
fn a_file_that_grows_after_its_check_is_still_capped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grows");
    std::fs::write(&f, "12").unwrap();
    let (file, meta) = open_private(&f, &Checks::NOT_WRITABLE_BY_OTHERS).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"3456")
        .unwrap();
    assert!(matches!(
        read_opened(&file, &meta, 4),
        Err(Refused::TooLarge)
    ));
    let (file, meta) = open_private(&f, &Checks::NOT_WRITABLE_BY_OTHERS).unwrap();
    assert_eq!(&read_opened(&file, &meta, 6).unwrap()[..], b"123456");
}

#[test]
fn a_read_failure_is_a_read_refusal() {
    // A directory opened as a file: the open and the stat succeed, the read fails.
    let dir = tempfile::tempdir().unwrap();
    let file = open_nonblocking(dir.path(), true).unwrap();
    let meta = file.metadata().unwrap();
    assert!(matches!(
        read_opened(&file, &meta, 1 << 20),
        Err(Refused::Read(e)) if e.raw_os_error() == Some(libc::EISDIR)
    ));
}

// --- Bytes -------------------------------------------------------------------------------

#[cfg(feature = "tls")]
#[test]
fn wiped_bytes_hold_the_buffer_itself() {
    let buf = Zeroizing::new(b"tok-S3NT1NEL".to_vec());
    let at = buf.as_ptr();
    let b = into_wiped_bytes(buf);
    assert_eq!(b.as_ptr(), at, "the buffer was copied");
    assert_eq!(&b[..], b"tok-S3NT1NEL");
    let c = b.clone();
    assert_eq!(c.as_ptr(), at);
    assert_eq!(&wiped_bytes(b"abc")[..], b"abc");
}

// --- error causes ------------------------------------------------------------------------

#[derive(Debug)]
struct Layer(
    &'static str,
    Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
);

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[test]
fn the_deepest_cause_is_the_innermost_text_cleaned() {
    let io = io::Error::from_raw_os_error(libc::ECONNREFUSED);
    let refused = io.to_string();
    let chain = Layer(
        "error sending request for url (https://vault:8200/v1/x)",
        Some(Box::new(Layer(
            "client error (Connect)",
            Some(Box::new(io)),
        ))),
    );
    assert_eq!(deepest_cause(&chain), refused);
    // One level: its own text.
    assert_eq!(deepest_cause(&Layer("alone", None)), "alone");
    // An io::Error wrapping another error shows that error.
    let wrapped = io::Error::other(Layer("invalid peer certificate: UnknownIssuer", None));
    let chain = Layer("top", Some(Box::new(wrapped)));
    assert_eq!(
        deepest_cause(&chain),
        "invalid peer certificate: UnknownIssuer"
    );
    // Control characters go; the text is cut.
    let chain = Layer("top", Some(Box::new(Layer("a\u{1b}[31mb\nc\td", None))));
    assert_eq!(deepest_cause(&chain), "a[31mbcd");
    let long: &'static str = "x".repeat(MAX_CAUSE_CHARS + 10).leak();
    assert_eq!(
        deepest_cause(&Layer(long, None)).chars().count(),
        MAX_CAUSE_CHARS
    );
}

// --- the backends' policy ----------------------------------------------------------------

#[test]
fn readable_by_everyone_needs_every_directory_above_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, "x").unwrap();
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    for (file_mode, dir_mode, everyone) in [
        (0o644, 0o755, true),
        (0o604, 0o711, true),
        (0o640, 0o755, false),
        (0o600, 0o755, false),
        (0o644, 0o700, false),
        (0o644, 0o750, false),
    ] {
        set_mode(&file, file_mode);
        set_mode(dir.path(), dir_mode);
        assert_eq!(
            readable_by_everyone(&file, &meta(&file)),
            everyone,
            "{file_mode:o} in {dir_mode:o}"
        );
    }
    set_mode(dir.path(), 0o700);
}

#[test]
fn a_world_writable_file_is_refused_with_a_hint_to_follow() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "x").unwrap();
    set_mode(&f, 0o664);
    assert!(check_not_world_writable(&f, &std::fs::metadata(&f).unwrap()).is_ok());
    set_mode(&f, 0o666);
    let e = check_not_world_writable(&f, &std::fs::metadata(&f).unwrap()).unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Denied);
    assert!(e.message().contains("writable by other users"), "{e}");
    assert_eq!(
        e.hint(),
        Some(format!("chmod o-w {}", f.display()).as_str())
    );
    // A device: never a chmod hint.
    let e = world_writable(
        Path::new("/dev/null"),
        &std::fs::metadata("/dev/null").unwrap(),
    );
    assert!(!e.hint().unwrap().contains("chmod"), "{e}");
}

#[test]
fn the_readable_warning_gives_the_hint_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "x").unwrap();
    set_mode(&f, 0o644);
    let meta = std::fs::metadata(&f).unwrap();
    assert_eq!(
        readable_warning(&f, "the token", &meta),
        format!(
            "the token: readable by every user on this system (mode 0644); a secret should not be: chmod o-r {}",
            f.display()
        )
    );
    let dmeta = std::fs::metadata(dir.path()).unwrap();
    assert!(readable_warning(dir.path(), "d", &dmeta)
        .ends_with(&format!("chmod o-rx {}", dir.path().display())));
    // kubelet's layout: the Secret volume's mode is what to change.
    let k = dir.path().join("..2026_01_01").join("tok");
    std::fs::create_dir_all(k.parent().unwrap()).unwrap();
    std::fs::write(&k, "x").unwrap();
    assert!(readable_warning(&k, "k", &meta)
        .ends_with("defaultMode: 0400 (or 0440 with the pod's fsGroup)"));
    // A system file, or one of another user's: no chmod.
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(readable_warning(Path::new("/dev/null"), "n", &null)
        .ends_with("keep secrets in files only you (or your group) can read"));
    // Said once per path.
    let once = dir.path().join("once");
    assert!(first_time(&once));
    assert!(!first_time(&once));
    assert!(first_time(&dir.path().join("other")));
}

#[test]
fn a_warning_is_one_line_in_the_binarys_format() {
    assert_eq!(
        warning_line("a\u{1b}[2Jb\nc"),
        "cme-exec: warning: a[2Jbc\n"
    );
}

/// `chmod o-w` only for a file of the user's own, outside the system's directories whether
/// reached as given or through a link.
#[test]
fn a_chmod_hint_only_for_own_files_outside_system_directories() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "x").unwrap();
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    assert!(permission_hint(&f, &meta(&f)).starts_with("chmod o-w"));
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let name = format!("cme-exec-hint-{}", std::process::id());
        let own = shm.join(&name);
        std::fs::write(&own, "x").unwrap();
        let link = shm.join(format!("{name}-link"));
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let said = (
            permission_hint(&own, &meta(&own)),
            permission_hint(&link, &meta(&link)),
        );
        std::fs::remove_file(&own).unwrap();
        std::fs::remove_file(&link).unwrap();
        assert!(!said.0.contains("chmod"), "{}", said.0);
        assert!(!said.1.contains("chmod"), "{}", said.1);
    }
    if euid() == 0 {
        std::os::unix::fs::chown(&f, Some(4242), None).unwrap();
        assert!(!permission_hint(&f, &meta(&f)).contains("chmod"));
    }
}

#[test]
fn no_chmod_hint_for_system_paths() {
    assert!(is_system_path(Path::new("/tmp")));
    assert!(is_system_path(Path::new("/var/tmp")));
    assert!(is_system_path(Path::new("/dev/shm/x")));
    assert!(is_system_path(Path::new("/usr/share/x")));
    assert!(is_system_path(Path::new("/")));
    assert!(!is_system_path(Path::new("/var/tmp/x/y")));
    assert!(!is_system_path(Path::new("/etc/cme/token")));
    assert!(!is_system_path(Path::new("/home/me/token")));
}

#[test]
fn too_large_names_the_path_and_the_limit() {
    let e = too_large(Path::new("/run/secrets/big"));
    assert_eq!(
        e.message(),
        format!(
            "/run/secrets/big is larger than {} KiB, the limit for one secret document",
            MAX_DOCUMENT_BYTES / 1024
        )
    );
}
