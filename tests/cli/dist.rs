//! Distribution: `--version`, the static release binary from `scripts/dist`, the
//! minimal container image built with buildah and run as UID 65532 with only its own CA bundle,
//! `scripts/install.sh` against a local, signed release served on loopback (the GitHub Action and
//! the GitLab template that run it are in `ci_templates.rs`), and `scripts/dist` packaging from
//! cargo's target directory.
//!
//! The tests that need `dist/x86_64-unknown-linux-musl/cme-exec` fail with the command that
//! builds it; `scripts/test` runs `scripts/dist x86_64-unknown-linux-musl` before `cargo test`.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{chown, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::openbao::OpenBao;
use crate::support::release::{self, Release, SigningKey, Site};
use crate::support::*;

const TARGET: &str = "x86_64-unknown-linux-musl";
/// A guard against growth, not a 12 MB target: the binary met that (11.6 MiB) until the
/// `live` feature brought it to 13.0 MiB, and the command and aws-ssm backends with
/// AWS SSO and credential_process to about 15 MiB (docs/performance.md).
const MAX_SIZE: u64 = 16 * 1024 * 1024;

/// The static binary `scripts/dist` built for this machine's architecture.
#[track_caller]
fn dist_binary() -> PathBuf {
    let path = repo_root().join("dist").join(TARGET).join("cme-exec");
    assert!(
        path.is_file(),
        "{} is missing.\nTo fix: run scripts/dist {TARGET} (scripts/test does)",
        path.display()
    );
    path
}

/// A std process output as the harness's [`Output`], for its assertions and redaction.
fn output_of(out: std::process::Output) -> Output {
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// No secret in what a process printed (raw, base64, URL-encoded, JSON-escaped).
#[track_caller]
fn no_leak(out: &Output, secrets: &[String]) {
    for secret in secrets {
        assert_no_leak(&out.stdout, secret);
        assert_no_leak(&out.stderr, secret);
    }
}

// ---------------------------------------------------------------------------------------------
// --version
// ---------------------------------------------------------------------------------------------

#[test]
fn version_shows_commit_target_and_backends() {
    let t = Test::new();
    let out = t.run_args(["--version"]);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(concat!("cme-exec ", env!("CARGO_PKG_VERSION"))),
        "{}",
        out.describe()
    );
    let commit = lines
        .iter()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("no commit line\n{}", out.describe()));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit {commit:?}"
    );
    let target = lines.iter().find_map(|l| l.strip_prefix("target: "));
    assert!(
        target.is_some_and(|t| t.contains("linux")),
        "{}",
        out.describe()
    );
    let backends = lines
        .iter()
        .find_map(|l| l.strip_prefix("backends: "))
        .unwrap_or_else(|| panic!("no backends line\n{}", out.describe()));
    assert_eq!(
        backends,
        "+env +file +command +vault +aws-sm +aws-ssm +keyring"
    );
    // -V stays one line, for scripts.
    let short = t.run_args(["-V"]);
    short.assert_success();
    assert_eq!(short.stdout.trim(), lines[0]);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// TLS roots
// ---------------------------------------------------------------------------------------------

/// `SSL_CERT_FILE` is the whole trust store when set: naming nothing usable is an error that names
/// the variable, never a quiet fallback to the system's or the compiled-in roots.
#[test]
fn ssl_cert_file_without_certificates_is_an_error_naming_it() {
    let bao = OpenBao::start_tls();
    let mut t = Test::new();
    let pat = t.sentinel("ssl-cert-file-pat");
    bao.cli_ok(&["kv", "put", "-mount=secret", "jira", "pat=-"], Some(&pat));
    let empty = t.write_file("empty.pem", "not a certificate\n");
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", bao.root_token())
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"vault://secret/jira#pat\"\n");
    let out = t.launch(["check"]).env("SSL_CERT_FILE", &empty).run();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout
            .contains("SSL_CERT_FILE names no readable PEM certificate"),
        "{}",
        out.describe()
    );
    // The same file as the only root works once it holds OpenBao's CA.
    let out = t
        .launch(["check"])
        .env("SSL_CERT_FILE", bao.ca_cert())
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// The static binary
// ---------------------------------------------------------------------------------------------

/// Program header types and dynamic tags that mean "needs something on the target system".
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

/// The ELF64 little-endian program headers: (type, offset, file size).
fn program_headers(elf: &[u8]) -> Vec<(u32, u64, u64)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    (0..phnum)
        .map(|i| {
            let h = phoff + i * phentsize;
            (u32_at(h), u64_at(h + 8), u64_at(h + 0x20))
        })
        .collect()
}

#[test]
fn dist_binary_is_static_stripped_and_small() {
    let path = dist_binary();
    let elf = fs::read(&path).expect("read the binary");
    let headers = program_headers(&elf);
    assert!(
        !headers.iter().any(|h| h.0 == PT_INTERP),
        "{} asks for a dynamic loader (PT_INTERP)",
        path.display()
    );
    // Not position-independent (ET_EXEC): nothing to relocate at start.
    let e_type = u16::from_le_bytes(elf[0x10..0x12].try_into().unwrap());
    assert_eq!(
        e_type,
        2,
        "{} is not a static ET_EXEC binary",
        path.display()
    );
    // Were it a static PIE, it would have a dynamic section but need no library.
    for &(_, offset, size) in headers.iter().filter(|h| h.0 == PT_DYNAMIC) {
        let dynamic = &elf[offset as usize..(offset + size) as usize];
        for entry in dynamic.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap());
            assert_ne!(tag, DT_NEEDED, "{} needs a shared library", path.display());
        }
    }
    // Stripped: no symbol table section name left in the section header string table.
    assert!(
        !elf.windows(8).any(|w| w == b".symtab\0"),
        "{} is not stripped",
        path.display()
    );
    let size = elf.len() as u64;
    assert!(
        size <= MAX_SIZE,
        "{} is {size} bytes, over the {MAX_SIZE}-byte target",
        path.display()
    );
    // It runs here and says what it is.
    let out = output_of(
        Command::new(&path)
            .arg("--version")
            .env_clear()
            .output()
            .expect("run the static binary"),
    );
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("target: {TARGET}")),
        "{}",
        out.describe()
    );
    let sum = fs::read_to_string(path.with_file_name("cme-exec.sha256")).expect("the .sha256");
    assert!(sum.ends_with("  cme-exec\n"), "sha256sum format: {sum:?}");
}

#[test]
fn dist_binary_hands_the_config_to_a_child_and_leaves_nothing() {
    let dist = dist_binary();
    let mut t = Test::new();
    let token = t.sentinel("static-token");
    let token_file = t.secret_file("token", format!("{token}\n"));
    let t = t.config_toml(&format!(
        "[confluence.\"https://company.atlassian.net\"]\nusername = \"bot@company.com\"\n\
         api_token = {}\n",
        serde_json::to_string(&format!("file://{}", token_file.display())).unwrap()
    ));
    let child = t.script("dump", &crate::support::scripts::dump_env(&t.out_dir()));
    let config = t.config_path();
    let out = t
        .launch_direct(
            &dist,
            [
                OsStr::new("--config"),
                config.as_os_str(),
                OsStr::new("--"),
                child.as_os_str(),
            ],
        )
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let env = t.child_env();
    assert!(
        env.config_path
            .as_deref()
            .is_some_and(|p| p.starts_with("/proc/self/fd/")),
        "the static binary hands over with memfd"
    );
    assert_eq!(
        env.config_json()["auth"]["confluence"]["https://company.atlassian.net"]["api_token"],
        token.as_str()
    );
    t.assert_clean();
}

#[test]
fn dist_binary_for_aarch64_is_static_and_renders_under_qemu() {
    const ARM: &str = "aarch64-unknown-linux-musl";
    let path = repo_root().join("dist").join(ARM).join("cme-exec");
    assert!(
        path.is_file(),
        "{} is missing.\nTo fix: run scripts/dist {ARM} (scripts/test does)",
        path.display()
    );
    let elf = fs::read(&path).unwrap();
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "EM_AARCH64");
    assert!(
        !program_headers(&elf).iter().any(|h| h.0 == PT_INTERP),
        "{} asks for a dynamic loader",
        path.display()
    );
    let qemu = ["/usr/bin/qemu-aarch64", "/usr/bin/qemu-aarch64-static"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("qemu-aarch64 is not installed.\nTo fix: apt-get install -y qemu-user (scripts/bootstrap-tools apt does it)")
        });
    let work = tempfile::tempdir().unwrap();
    let token = sentinel("aarch64-token");
    let token_file = work.path().join("token");
    fs::write(&token_file, &token).unwrap();
    let config = work.path().join("cme-exec.toml");
    fs::write(
        &config,
        format!(
            "[jira.\"https://jira.example.com\"]\npat = {}\n",
            serde_json::to_string(&format!("file://{}", token_file.display())).unwrap()
        ),
    )
    .unwrap();
    let output = work.path().join("app_data.json");
    let out = output_of(
        Command::new(qemu)
            .arg(&path)
            .arg("--config")
            .arg(&config)
            .arg("render")
            .arg("--output")
            .arg(&output)
            .env_clear()
            .output()
            .expect("run qemu-aarch64"),
    );
    out.assert_success();
    no_leak(&out, std::slice::from_ref(&token));
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&output).unwrap()).unwrap();
    assert_eq!(
        json["auth"]["jira"]["https://jira.example.com"]["pat"],
        token.as_str()
    );
    let out = output_of(
        Command::new(qemu)
            .arg(&path)
            .arg("--version")
            .env_clear()
            .output()
            .unwrap(),
    );
    out.assert_stdout_contains(&format!("target: {ARM}"));
}

// ---------------------------------------------------------------------------------------------
// The minimal image, built and run with buildah
// ---------------------------------------------------------------------------------------------

/// A private buildah storage (vfs, chroot isolation: no daemon, no registry, no user namespace),
/// removed on drop with everything built in it.
struct Buildah {
    dir: tempfile::TempDir,
    containers: Vec<String>,
}

impl Buildah {
    #[track_caller]
    fn new() -> Buildah {
        let found = Command::new("buildah")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "buildah is not installed.\nTo fix: apt-get install -y buildah (scripts/bootstrap-tools apt does it)"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "the image test runs what is inside the image with chroot, which needs root"
        );
        Buildah {
            dir: tempfile::Builder::new()
                .prefix("cme-exec-buildah-")
                .tempdir()
                .expect("a buildah storage directory"),
            containers: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .arg("--storage-driver")
            .arg("vfs");
        c
    }

    #[track_caller]
    fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self
            .command()
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run buildah");
        assert!(
            out.status.success(),
            "buildah {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A working container of `image`, mounted: its root directory.
    fn mount(&mut self, image: &str) -> PathBuf {
        let container = self.ok(["from", "--pull-never", image]);
        let root = PathBuf::from(self.ok(["mount", &container]));
        self.containers.push(container);
        root
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.command().args(["umount", c]).output();
            let _ = self.command().args(["rm", c]).output();
        }
        let _ = self.command().args(["rmi", "--all", "--force"]).output();
    }
}

/// Runs `/cme-exec ARGS` inside the image's root as UID/GID 65532 with exactly `env`.
fn in_image(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    // By path: with the environment cleared, the child's (empty) PATH would be searched.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chroot (coreutils) is installed");
    let out = Command::new(chroot)
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg("/cme-exec")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("run chroot");
    output_of(out)
}

/// A directory inside the image's root owned by the image's user, as a volume would be.
fn volume(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("create a directory in the image root");
    chown(&dir, Some(65532), Some(65532)).expect("chown to 65532");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    dir
}

/// Writes a file inside the image's root, readable only by the image's user.
fn user_file(path: &Path, contents: &str) {
    fs::write(path, contents).expect("write a file in the image root");
    chown(path, Some(65532), Some(65532)).expect("chown to 65532");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

#[test]
fn minimal_image_runs_render_and_check_as_nonroot_with_its_own_ca_bundle() {
    dist_binary();
    let repo = repo_root();
    let platform_binary = repo.join("dist/linux/amd64/cme-exec");
    assert!(
        platform_binary.is_file() && repo.join("dist/ca-certificates.crt").is_file(),
        "the image context is incomplete.\nTo fix: run scripts/dist {TARGET}"
    );
    let mut buildah = Buildah::new();
    let image = format!("localhost/cme-exec-test:{}", secrets::random_hex());
    buildah.ok([
        OsStr::new("bud"),
        OsStr::new("--isolation"),
        OsStr::new("chroot"),
        OsStr::new("--pull-never"),
        OsStr::new("--platform"),
        OsStr::new("linux/amd64"),
        OsStr::new("-t"),
        OsStr::new(&image),
        OsStr::new("-f"),
        repo.join("Dockerfile").as_os_str(),
        repo.as_os_str(),
    ]);
    // The arm64 image takes dist/linux/arm64 (TARGETPLATFORM), when scripts/dist built it.
    if repo.join("dist/linux/arm64/cme-exec").is_file() {
        let arm = format!("localhost/cme-exec-test-arm64:{}", secrets::random_hex());
        buildah.ok([
            OsStr::new("bud"),
            OsStr::new("--isolation"),
            OsStr::new("chroot"),
            OsStr::new("--pull-never"),
            OsStr::new("--platform"),
            OsStr::new("linux/arm64"),
            OsStr::new("-t"),
            OsStr::new(&arm),
            OsStr::new("-f"),
            repo.join("Dockerfile").as_os_str(),
            repo.as_os_str(),
        ]);
        let arch = buildah.ok([
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.OCIv1.Architecture}}",
            &arm,
        ]);
        assert_eq!(arch, "arm64");
        let arm_root = buildah.mount(&arm);
        let elf = fs::read(arm_root.join("cme-exec")).expect("/cme-exec in the arm64 image");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 183, "EM_AARCH64");
    }

    // What the image says about itself.
    let config = buildah.ok([
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
        &image,
    ]);
    assert_eq!(config, "65532:65532 [/cme-exec]");

    let root = buildah.mount(&image);
    // Nothing but the binary, the CA bundle and the user database.
    let mut files: Vec<String> = files_under(&root)
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "cme-exec",
            "etc/group",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt"
        ]
    );

    // 1. Files: render into a volume, as the init container does.
    let secrets_dir = volume(&root, "secrets");
    let out_dir = volume(&root, "cme");
    let token = sentinel("image-file-token");
    user_file(&secrets_dir.join("token"), &format!("{token}\n"));
    let file_config = "[confluence.\"https://company.atlassian.net\"]\n\
                       username = \"bot@company.com\"\n\
                       api_token = \"file:///secrets/token\"\n";
    user_file(&secrets_dir.join("cme-exec.toml"), file_config);
    let out = in_image(&root, &[], &["--config", "/secrets/cme-exec.toml", "check"]);
    out.assert_success();
    no_leak(&out, std::slice::from_ref(&token));
    out.assert_stdout_contains("file:///secrets/token");
    let out = in_image(
        &root,
        &[],
        &[
            "--config",
            "/secrets/cme-exec.toml",
            "render",
            "--output",
            "/cme/app_data.json",
        ],
    );
    out.assert_success();
    no_leak(&out, std::slice::from_ref(&token));
    let rendered = out_dir.join("app_data.json");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&rendered).expect("the rendered config")).unwrap();
    assert_eq!(
        json["auth"]["confluence"]["https://company.atlassian.net"]["api_token"],
        token.as_str()
    );
    assert_eq!(mode_of(&rendered) & 0o777, 0o600);
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&rendered).unwrap());
    assert_eq!(owner, 65532, "rendered by the image's user");
    fs::remove_file(&rendered).unwrap();

    // 2. OpenBao over TLS. Its CA is nobody's: given with SSL_CERT_FILE, it is the only root.
    let bao = OpenBao::start_tls();
    let pat = sentinel("image-vault-pat");
    bao.cli_ok(&["kv", "put", "-mount=secret", "jira", "pat=-"], Some(&pat));
    fs::copy(bao.ca_cert(), secrets_dir.join("bao-ca.pem")).expect("copy the CA");
    chown(secrets_dir.join("bao-ca.pem"), Some(65532), Some(65532)).unwrap();
    let vault_config = "[jira.\"https://jira.example.com\"]\npat = \"vault://secret/jira#pat\"\n";
    user_file(&secrets_dir.join("vault.toml"), vault_config);
    let address = bao.address();
    let base_env = [
        ("VAULT_ADDR", address.as_str()),
        ("VAULT_TOKEN", bao.root_token()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base_env
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    let all_secrets = [token.clone(), pat.clone(), bao.root_token().to_owned()];

    let out = in_image(
        &root,
        &with(&[("SSL_CERT_FILE", "/secrets/bao-ca.pem")]),
        &["--config", "/secrets/vault.toml", "-vv", "check"],
    );
    out.assert_success();
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("SSL_CERT_FILE/SSL_CERT_DIR");

    let out = in_image(
        &root,
        &with(&[("VAULT_CACERT", "/secrets/bao-ca.pem")]),
        &[
            "--config",
            "/secrets/vault.toml",
            "render",
            "--output",
            "/cme/app_data.json",
        ],
    );
    out.assert_success();
    no_leak(&out, &all_secrets);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&rendered).expect("the rendered config")).unwrap();
    assert_eq!(
        json["auth"]["jira"]["https://jira.example.com"]["pat"],
        pat.as_str()
    );
    fs::remove_file(&rendered).unwrap();

    // 3. No CA given: the image's bundle is the trust store, and it does not know OpenBao's CA.
    let out = in_image(
        &root,
        &with(&[]),
        &["--config", "/secrets/vault.toml", "-vv", "check"],
    );
    out.assert_code(1);
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("the system's CA store");
    out.assert_stdout_contains("UnknownIssuer");

    // The AWS SDK goes through the same trust store: moto over TLS with OpenBao's certificate.
    let moto = MotoTls::start(&bao);
    let aws_token = sentinel("image-aws-token");
    moto.create_secret("image/tls", &aws_token);
    let aws_config = "[confluence.\"https://company.atlassian.net\"]\n\
                      username = \"bot@company.com\"\n\
                      api_token = \"aws-sm://image/tls\"\n";
    user_file(&secrets_dir.join("aws.toml"), aws_config);
    let endpoint = moto.endpoint();
    let aws_env = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "not-a-secret-moto-accepts-any"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect()
    };
    let all_secrets = [all_secrets.to_vec(), vec![aws_token.clone()]].concat();
    let out = in_image(
        &root,
        &aws_env(&[("SSL_CERT_FILE", "/secrets/bao-ca.pem")]),
        &["--config", "/secrets/aws.toml", "-vv", "check"],
    );
    out.assert_success();
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("SSL_CERT_FILE/SSL_CERT_DIR");
    let out = in_image(
        &root,
        &aws_env(&[]),
        &["--config", "/secrets/aws.toml", "-vv", "check"],
    );
    out.assert_code(1);
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("the system's CA store");

    // 4. Without the bundle, the compiled-in roots take over (and still refuse OpenBao's CA),
    // for both clients.
    fs::remove_file(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let out = in_image(
        &root,
        &with(&[]),
        &["--config", "/secrets/vault.toml", "-vv", "check"],
    );
    out.assert_code(1);
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("the compiled-in Mozilla roots");
    out.assert_stdout_contains("UnknownIssuer");
    let out = in_image(
        &root,
        &aws_env(&[]),
        &["--config", "/secrets/aws.toml", "-vv", "check"],
    );
    out.assert_code(1);
    no_leak(&out, &all_secrets);
    out.assert_stderr_contains("the compiled-in Mozilla roots");
}

/// moto_server over TLS with OpenBao's dev certificate (for 127.0.0.1, signed by the dev CA),
/// so that one CA file serves both stores. Secrets are created with boto3 from the venv.
struct MotoTls {
    child: std::process::Child,
    port: u16,
    ca: PathBuf,
}

impl MotoTls {
    #[track_caller]
    fn start(bao: &OpenBao) -> MotoTls {
        let certs = bao.dir().join("tls");
        let port = crate::support::moto::free_port();
        let mut child = Command::new(Venv::get().moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c"])
            .arg(certs.join("vault-cert.pem"))
            .arg("-k")
            .arg(certs.join("vault-key.pem"))
            .env_clear()
            .env("PYTHONUNBUFFERED", "1")
            .env("HOME", bao.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        // Werkzeug says where it listens on stderr; wait for our port there.
        let running = format!("Running on https://127.0.0.1:{port}");
        let mut log = String::new();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("read moto's log");
            assert!(
                n > 0,
                "moto_server over TLS exited before listening:\n{log}"
            );
            log.push_str(&line);
            if line.contains(&running) {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        MotoTls {
            child,
            port,
            ca: certs.join("vault-ca.pem"),
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    #[track_caller]
    fn create_secret(&self, name: &str, value: &str) {
        let script = "import sys, boto3\n\
            c = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                aws_access_key_id='AKIAIOSFODNN7EXAMPLE', aws_secret_access_key='x', verify=sys.argv[2])\n\
            c.create_secret(Name=sys.argv[3], SecretString=sys.stdin.read())\n";
        let mut child = Command::new(Venv::get().python())
            .arg("-c")
            .arg(script)
            .arg(self.endpoint())
            .arg(&self.ca)
            .arg(name)
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "creating a secret in moto over TLS failed: {}",
            redact(&String::from_utf8_lossy(&out.stderr))
        );
    }
}

impl Drop for MotoTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// scripts/install.sh against a local, signed release (tests/cli/support/release.rs); the GitHub
// Action and the GitLab template that run it are in tests/cli/ci_templates.rs
// ---------------------------------------------------------------------------------------------

/// `sh scripts/install.sh ARGS` with a small environment (`PATH` as given).
fn install_sh(home: &Path, path: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let script = repo_root().join("scripts/install.sh");
    let out = Command::new("/bin/sh")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run install.sh");
    output_of(out)
}

const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A directory of links to the tools install.sh uses, leaving out `without`: a system without
/// curl, or without ssh-keygen.
fn path_without(dir: &Path, without: &[&str]) -> String {
    fs::create_dir_all(dir).unwrap();
    let tools = [
        "basename",
        "cat",
        "chmod",
        "cp",
        "curl",
        "cut",
        "grep",
        "mkdir",
        "mktemp",
        "mv",
        "rm",
        "sed",
        "sha256sum",
        "ssh-keygen",
        "tr",
        "uname",
        "wc",
        "wget",
    ];
    for tool in tools.iter().filter(|t| !without.contains(t)) {
        let found = ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed (install.sh's tests need it)"));
        std::os::unix::fs::symlink(found, dir.join(tool)).unwrap();
    }
    dir.display().to_string()
}

/// A release with the test key, served: (work dir, key, release, site, `--base-url`).
fn signed_release() -> (tempfile::TempDir, SigningKey, Release, Site, String) {
    let work = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(&work.path().join("keys"), "release");
    let release = Release::build(&work.path().join("site"), &key);
    let site = Site::serve(&release.root);
    let base = format!("{}/releases", site.url());
    (work, key, release, site, base)
}

#[test]
fn install_sh_installs_a_signed_release_and_says_it_checked_the_signature() {
    let (work, key, _release, _site, base) = signed_release();
    let signers = key.allowed_signers.to_str().unwrap();

    // A pinned version into a directory of our choosing.
    let dir = work.path().join("bin");
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &[],
        &[
            "--version",
            "0.1.0",
            "--dir",
            dir.to_str().unwrap(),
            "--base-url",
            &base,
            "--allowed-signers",
            signers,
        ],
    );
    out.assert_success();
    out.assert_stderr_contains(&format!("installed {}/cme-exec ({TARGET}", dir.display()));
    out.assert_stderr_contains(
        "signature verified: Good \"cme-exec-release\" signature for releases@cme-exec with ED25519 key SHA256:",
    );
    let installed = dir.join("cme-exec");
    assert_eq!(mode_of(&installed) & 0o777, 0o755);
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains("cme-exec "));

    // `latest` and the variables instead of options; the default directory is ~/.local/bin.
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &[
            ("CME_EXEC_BASE_URL", &base),
            ("CME_EXEC_ALLOWED_SIGNERS", signers),
        ],
        &[],
    );
    out.assert_success();
    assert!(work.path().join(".local/bin/cme-exec").is_file());

    // Without --allowed-signers the release key in install.sh is the one trusted: the test's key
    // is not it.
    let refused = work.path().join("refused");
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &[],
        &["--dir", refused.to_str().unwrap(), "--base-url", &base],
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains("bad signature on cme-exec-x86_64-unknown-linux-musl.sha256");
    assert!(!refused.join("cme-exec").exists());

    // A version that does not exist: the URL in the message, nothing installed.
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &[("CME_EXEC_ALLOWED_SIGNERS", signers)],
        &[
            "--version",
            "9.9.9",
            "--dir",
            refused.to_str().unwrap(),
            "--base-url",
            &base,
        ],
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains("download failed");
    out.assert_stderr_contains("/download/v9.9.9/");
    assert!(!refused.join("cme-exec").exists());

    // No ssh-keygen (a minimal image): the checksum alone, and it says so.
    let path = path_without(&work.path().join("no-ssh-keygen"), &["ssh-keygen"]);
    let dir = work.path().join("unsigned-check");
    let out = install_sh(
        work.path(),
        &path,
        &[("CME_EXEC_ALLOWED_SIGNERS", signers)],
        &["--dir", dir.to_str().unwrap(), "--base-url", &base],
    );
    out.assert_success();
    out.assert_stderr_contains("signature not checked (no ssh-keygen here");
    assert!(dir.join("cme-exec").is_file());
}

#[test]
fn install_sh_refuses_a_tampered_binary_checksum_or_signature() {
    let (work, key, release, _site, base) = signed_release();
    let signers = key.allowed_signers.to_str().unwrap();
    // Never run (every one is refused): a few bytes stand for the binary.
    let binary = b"#!/bin/sh\necho 'a release binary'\n".repeat(64);
    let asset = format!("cme-exec-{TARGET}");
    let mut tampered = binary.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x5a;
    let publish = |version: &str| {
        release.publish(
            &format!("download/v{version}"),
            &[(asset.as_str(), binary.as_slice())],
            &key,
        )
    };
    // 0.0.1: the binary changed after signing (its checksum and signature are right).
    let dir = publish("0.0.1");
    fs::write(dir.join(&asset), &tampered).unwrap();
    // 0.0.2: binary and checksum changed together; the signature is of the old checksum.
    let dir = publish("0.0.2");
    fs::write(dir.join(&asset), &tampered).unwrap();
    let sum = release::sha256_of(&dir.join(&asset));
    fs::write(
        dir.join(format!("{asset}.sha256")),
        format!("{sum}  {asset}\n"),
    )
    .unwrap();
    // 0.0.3: everything re-signed with another key.
    let dir = publish("0.0.3");
    let other = SigningKey::generate(&work.path().join("keys"), "other");
    fs::write(dir.join(&asset), &tampered).unwrap();
    let sum = release::sha256_of(&dir.join(&asset));
    fs::write(
        dir.join(format!("{asset}.sha256")),
        format!("{sum}  {asset}\n"),
    )
    .unwrap();
    other.sign(&dir);
    // 0.0.4: no signature at all.
    let dir = publish("0.0.4");
    fs::remove_file(dir.join(format!("{asset}.sha256.sig"))).unwrap();
    // 0.0.5: another target's signed checksum (of the tampered bytes) under this asset's name.
    let arm = "cme-exec-aarch64-unknown-linux-musl";
    let dir = release.publish("download/v0.0.5", &[(arm, tampered.as_slice())], &key);
    fs::write(dir.join(&asset), &tampered).unwrap();
    fs::copy(
        dir.join(format!("{arm}.sha256")),
        dir.join(format!("{asset}.sha256")),
    )
    .unwrap();
    fs::copy(
        dir.join(format!("{arm}.sha256.sig")),
        dir.join(format!("{asset}.sha256.sig")),
    )
    .unwrap();
    // 0.0.6: no checksum file.
    let dir = publish("0.0.6");
    fs::remove_file(dir.join(format!("{asset}.sha256"))).unwrap();

    for (version, message) in [
        ("0.0.1", "checksum mismatch for cme-exec-x86_64-unknown-linux-musl"),
        ("0.0.2", "bad signature on cme-exec-x86_64-unknown-linux-musl.sha256"),
        ("0.0.3", "bad signature on cme-exec-x86_64-unknown-linux-musl.sha256"),
        ("0.0.4", "no signature: download failed"),
        ("0.0.5", "cme-exec-x86_64-unknown-linux-musl.sha256 is not the checksum of cme-exec-x86_64-unknown-linux-musl"),
        ("0.0.6", "no checksum: download failed"),
    ] {
        let dir = work.path().join(format!("refused-{version}"));
        let out = install_sh(
            work.path(),
            SYSTEM_PATH,
            &[("CME_EXEC_ALLOWED_SIGNERS", signers)],
            &[
                "--version",
                version,
                "--dir",
                dir.to_str().unwrap(),
                "--base-url",
                &base,
            ],
        );
        assert_ne!(out.code(), Some(0), "{version}: {}", out.describe());
        out.assert_stderr_contains(message);
        out.assert_stderr_contains("nothing was installed");
        assert_eq!(
            fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0),
            0,
            "{version}: something was installed"
        );
    }
}

#[test]
fn install_sh_downloads_over_https_only_unless_loopback_or_allowed() {
    let (work, key, _release, site, base) = signed_release();
    let signers = key.allowed_signers.to_str().unwrap();
    let env = [
        ("CME_EXEC_ALLOWED_SIGNERS", signers),
        // Were anything fetched from the mirror below, it would reach this machine's stand-in.
        ("http_proxy", &site.url()),
        ("no_proxy", "127.0.0.1,localhost"),
    ];
    let dir = work.path().join("bin");
    let dir_arg = dir.to_str().unwrap();

    // Plain http off this machine, other schemes, and loopback look-alikes: refused before any
    // download.
    for (url, message) in [
        (
            "http://mirror.example/releases",
            "refusing the plain http base URL",
        ),
        (
            "http://127.0.0.1.mirror.example/releases",
            "refusing the plain http base URL",
        ),
        (
            "http://127.0.0.1@mirror.example/releases",
            "refusing the plain http base URL",
        ),
        (
            "ftp://mirror.example/releases",
            "the base URL must start with https://",
        ),
    ] {
        let out = install_sh(
            work.path(),
            SYSTEM_PATH,
            &env,
            &["--dir", dir_arg, "--base-url", url],
        );
        assert_ne!(out.code(), Some(0), "{url}: {}", out.describe());
        out.assert_stderr_contains(message);
    }
    assert!(
        site.targets().is_empty(),
        "requests were made:\n{}",
        site.summary()
    );
    assert!(!dir.join("cme-exec").exists());

    // --allow-http takes such a mirror, with a warning (here reached through the proxy).
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &env,
        &[
            "--dir",
            dir_arg,
            "--base-url",
            "http://mirror.example/releases",
            "--allow-http",
        ],
    );
    out.assert_success();
    out.assert_stderr_contains("warning: downloading over plain http from mirror.example");
    assert!(
        site.targets()
            .iter()
            .any(|t| t.starts_with("http://mirror.example/releases/latest/download/")),
        "{}",
        site.summary()
    );
    fs::remove_file(dir.join("cme-exec")).unwrap();

    // A redirect to plain http is not followed (curl) or its download is refused (wget).
    let redirecting = format!("{}/redirect-to-http/releases", site.url());
    let before = site.targets().len();
    let out = install_sh(
        work.path(),
        SYSTEM_PATH,
        &env,
        &["--dir", dir_arg, "--base-url", &redirecting],
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains("download failed");
    let after: Vec<String> = site.targets().split_off(before);
    assert!(
        after.iter().all(|t| t.starts_with("/redirect-to-http/")),
        "curl followed a redirect to http: {after:?}"
    );
    let no_curl = path_without(&work.path().join("no-curl"), &["curl"]);
    let out = install_sh(
        work.path(),
        &no_curl,
        &env,
        &["--dir", dir_arg, "--base-url", &redirecting],
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains("redirected to plain http; refused");
    assert!(!dir.join("cme-exec").exists());

    // wget from a loopback mirror: installed, signature checked.
    let out = install_sh(
        work.path(),
        &no_curl,
        &env,
        &["--dir", dir_arg, "--base-url", &base],
    );
    out.assert_success();
    out.assert_stderr_contains("signature verified: Good");
}

// ---------------------------------------------------------------------------------------------
// scripts/dist takes the binary from cargo's target directory
// ---------------------------------------------------------------------------------------------

/// With `CARGO_TARGET_DIR` set (a common CI cache setting), `scripts/dist` packages what cargo
/// built there, not `./target`'s. Without building: `--no-build` packages what is there, the
/// step every build ends with.
#[test]
fn dist_script_packages_from_cargo_target_dir() {
    let work = tempfile::tempdir().unwrap();
    let target_dir = work.path().join("cargo-target");
    let built = target_dir.join(TARGET).join("dist/cme-exec");
    fs::create_dir_all(built.parent().unwrap()).unwrap();
    let bytes = format!("#!/bin/sh\necho built in {}\n", target_dir.display());
    fs::write(&built, &bytes).unwrap();
    let out_dir = work.path().join("dist");
    let dist = |target_dir: &Path| {
        output_of(
            Command::new(repo_root().join("scripts/dist"))
                .args(["--no-build", TARGET])
                .env("CARGO_TARGET_DIR", target_dir)
                .env("DIST_DIR", &out_dir)
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/dist"),
        )
    };
    let out = dist(&target_dir);
    out.assert_success();
    let packaged = out_dir.join(TARGET).join("cme-exec");
    assert_eq!(fs::read_to_string(&packaged).unwrap(), bytes);
    assert_eq!(
        fs::read_to_string(out_dir.join("linux/amd64/cme-exec")).unwrap(),
        bytes
    );
    let sum = release::sha256_of(&packaged);
    assert_eq!(
        fs::read_to_string(out_dir.join(format!("release/cme-exec-{TARGET}.sha256"))).unwrap(),
        format!("{sum}  cme-exec-{TARGET}\n")
    );
    assert_eq!(
        fs::read_to_string(out_dir.join(TARGET).join("cme-exec.sha256")).unwrap(),
        format!("{sum}  cme-exec\n")
    );

    // Nothing built there: the message names the path and the build command.
    let empty = work.path().join("empty-target");
    let out = dist(&empty);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    out.assert_stderr_contains(&format!(
        "{}/{TARGET}/dist/cme-exec is missing: build it first",
        empty.display()
    ));
}

// ---------------------------------------------------------------------------------------------
// docs/install.md's commands, as written
// ---------------------------------------------------------------------------------------------

/// The ```sh block of docs/install.md that contains `needle`.
fn install_md_block(needle: &str) -> String {
    let doc = fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|block| block.contains(needle))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "one ```sh block with {needle:?} in docs/install.md"
    );
    blocks[0].to_owned()
}

/// The check by hand and the installer, from docs/install.md, against the local release: the
/// releases page becomes the loopback server (in the commands, and `CME_EXEC_BASE_URL` for the
/// installer, whose default it is), the release key the test's (the allowed-signers line the doc
/// shows, with the test key; `CME_EXEC_ALLOWED_SIGNERS` for the installer).
#[test]
fn install_md_commands_run_as_written() {
    let (work, key, _release, _site, base) = signed_release();
    let signers = key.allowed_signers.to_str().unwrap();
    let releases = "https://github.com/cme-exec/cme-exec/releases";
    let run = |block: &str, home: &Path| {
        fs::create_dir_all(home).unwrap();
        fs::copy(&key.allowed_signers, home.join("allowed_signers")).unwrap();
        output_of(
            Command::new("/bin/sh")
                .arg("-ec")
                .arg(block.replace(releases, &base))
                .env_clear()
                .env("PATH", SYSTEM_PATH)
                .env("HOME", home)
                .env("CME_EXEC_ALLOWED_SIGNERS", signers)
                .env("CME_EXEC_BASE_URL", &base)
                // Whatever might still name a host elsewhere goes to a closed loopback port.
                .env("https_proxy", "http://127.0.0.1:9")
                .env("http_proxy", "http://127.0.0.1:9")
                .env("no_proxy", "127.0.0.1")
                .current_dir(home)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let by_hand = install_md_block("ssh-keygen -Y verify");
    assert!(by_hand.contains(releases), "{by_hand}");
    let home = work.path().join("by-hand");
    let out = run(&by_hand, &home);
    out.assert_success();
    out.assert_stdout_contains("Good \"cme-exec-release\" signature for releases@cme-exec");
    out.assert_stdout_contains(&format!("cme-exec-{TARGET}: OK"));
    assert_eq!(mode_of(&home.join(".local/bin/cme-exec")) & 0o777, 0o755);

    let installer = install_md_block("sh install.sh");
    let home = work.path().join("installer");
    let out = run(&installer, &home);
    out.assert_success();
    out.assert_stderr_contains("signature verified: Good");
    assert!(home.join(".local/bin/cme-exec").is_file());
}
