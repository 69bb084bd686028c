//! A local release for the installer tests (`tests/cli/dist.rs`) and the CI template tests
//! (`tests/cli/ci_templates.rs`): a directory laid out like the GitHub release page
//! (`releases/download/vX.Y.Z/ASSET`, `releases/latest/download/ASSET`) and like the raw file
//! URL the GitLab template is included from (`raw/cme-exec/cme-exec/vX.Y.Z/PATH`), its checksums
//! signed by `scripts/sign-release` (the release workflow's own step) with a key made by the test,
//! and served over loopback by a [`StandIn`] that also answers as a plain HTTP proxy (a request for
//! `http://mirror.example/...` is answered from the same directory, so nothing leaves the machine).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use super::openbao::{Action, StandIn};
use super::repo_root;

/// The target `scripts/dist` builds for this machine, the one the release holds.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The version the docs and templates pin (the package's own version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The release key's principal and namespace (ci/allowed_signers, scripts/install.sh).
pub const PRINCIPAL: &str = "releases@cme-exec";
pub const NAMESPACE: &str = "cme-exec-release";

/// `dist/TARGET/cme-exec`, or a failure that says how to build it.
#[track_caller]
pub fn dist_binary() -> PathBuf {
    let path = repo_root().join("dist").join(TARGET).join("cme-exec");
    assert!(
        path.is_file(),
        "{} is missing.\nTo fix: run scripts/dist {TARGET} (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a command that must succeed; panics with its output otherwise.
#[track_caller]
pub fn run_ok(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sha256sum FILE`'s hash.
#[track_caller]
pub fn sha256_of(file: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(file))
        .split_whitespace()
        .next()
        .expect("sha256sum prints a hash")
        .to_owned()
}

/// An ed25519 key made with `ssh-keygen` for one test, and an allowed-signers file trusting it
/// as the release key.
pub struct SigningKey {
    pub private_key: PathBuf,
    pub allowed_signers: PathBuf,
}

impl SigningKey {
    #[track_caller]
    pub fn generate(dir: &Path, name: &str) -> SigningKey {
        fs::create_dir_all(dir).unwrap();
        let private_key = dir.join(name);
        run_ok(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "test release key",
                    "-f",
                ])
                .arg(&private_key),
        );
        let public = fs::read_to_string(private_key.with_extension("pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let allowed_signers = dir.join(format!("{name}.allowed_signers"));
        fs::write(
            &allowed_signers,
            format!("{PRINCIPAL} namespaces=\"{NAMESPACE}\" {}\n", key.join(" ")),
        )
        .unwrap();
        SigningKey {
            private_key,
            allowed_signers,
        }
    }

    /// `scripts/sign-release DIR` with this key: every `*.sha256` in `dir` gets its `.sig`.
    #[track_caller]
    pub fn sign(&self, dir: &Path) {
        run_ok(
            Command::new(repo_root().join("scripts/sign-release"))
                .arg(dir)
                .arg(&self.allowed_signers)
                .env("RELEASE_SIGNING_KEY_FILE", &self.private_key),
        );
    }
}

/// The release directory: `root/releases/...` and `root/raw/...`.
pub struct Release {
    pub root: PathBuf,
}

impl Release {
    /// `releases/download/vVERSION` and `releases/latest/download`, each with the static binary,
    /// `install.sh`, their `.sha256` files and signatures by `key`; and the GitLab template at its
    /// raw URL.
    #[track_caller]
    pub fn build(root: &Path, key: &SigningKey) -> Release {
        let release = Release {
            root: root.to_owned(),
        };
        let binary = fs::read(dist_binary()).unwrap();
        let installer = fs::read(repo_root().join("scripts/install.sh")).unwrap();
        for dir in [format!("download/v{VERSION}"), "latest/download".to_owned()] {
            release.publish(
                &dir,
                &[
                    (&format!("cme-exec-{TARGET}"), &binary),
                    ("install.sh", &installer),
                ],
                key,
            );
        }
        let raw = root.join(format!("raw/cme-exec/cme-exec/v{VERSION}/ci/gitlab"));
        fs::create_dir_all(&raw).unwrap();
        fs::copy(
            repo_root().join("ci/gitlab/cme-exec.yml"),
            raw.join("cme-exec.yml"),
        )
        .unwrap();
        release
    }

    /// Writes `files` into `releases/DIR` with a `sha256sum` line each, signed by `key`.
    #[track_caller]
    pub fn publish(&self, dir: &str, files: &[(&str, &[u8])], key: &SigningKey) -> PathBuf {
        let dir = self.releases().join(dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes).unwrap();
            let sum = run_ok(Command::new("sha256sum").arg(name).current_dir(&dir));
            fs::write(dir.join(format!("{name}.sha256")), sum).unwrap();
        }
        key.sign(&dir);
        dir
    }

    /// `root/releases`, what `--base-url` names.
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
}

/// The release directory over HTTP on loopback. `GET /PATH` serves `root/PATH`; a proxy request
/// (`GET http://host/PATH`) too; `GET /redirect-to-http/PATH` answers 302 with
/// `Location: http://127.0.0.1:PORT/PATH` (a mirror that sends the client to plain http).
pub struct Site {
    standin: StandIn,
}

impl Site {
    pub fn serve(root: &Path) -> Site {
        let root = root.to_owned();
        let own_url: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let url = Arc::clone(&own_url);
        let standin = StandIn::start(move |seen, _| {
            let target = seen.target.as_str();
            let path = match target.strip_prefix("http://") {
                Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => target,
            };
            let path = path.split('?').next().unwrap_or("");
            if let Some(rest) = path.strip_prefix("/redirect-to-http/") {
                let location = format!("{}/{rest}", url.get().map_or("", String::as_str));
                return Action::Respond {
                    status: 302,
                    headers: vec![("Location".into(), location)],
                    body: Vec::new(),
                };
            }
            let file = root.join(path.trim_start_matches('/'));
            let safe = !path.split('/').any(|part| part == "..");
            match fs::read(&file) {
                Ok(body) if seen.method == "GET" && safe && file.is_file() => Action::Respond {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                    body,
                },
                _ => Action::Respond {
                    status: 404,
                    headers: Vec::new(),
                    body: b"not found\n".to_vec(),
                },
            }
        });
        let _ = own_url.set(standin.url());
        Site { standin }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.standin.url()
    }

    /// The request targets so far (no headers), one per line.
    pub fn summary(&self) -> String {
        self.standin.summary()
    }

    pub fn targets(&self) -> Vec<String> {
        self.standin
            .requests()
            .into_iter()
            .map(|r| r.target)
            .collect()
    }
}
