//! podman for the deployment tests (tests/cli/deploy.rs): a private, persistent podman set-up
//! that changes nothing of the machine's, the images the docs name, built from this repository,
//! and a scan of podman's storage for secrets.
//!
//! - Configuration through `CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF` and
//!   `CONTAINERS_REGISTRIES_CONF`, files written under the cache directory
//!   (`<target>/deploy-podman/`): runc (crun fails on these machines: `setrlimit RLIMIT_NOFILE`,
//!   then "cgroups in hybrid mode not supported"), the cgroupfs manager, ulimits podman can set,
//!   `pull_policy = "never"` and no search registries, so nothing is ever pulled (the tests send
//!   traffic only to loopback). Storage driver: overlay, except where the cache directory is itself
//!   on overlayfs (inside a container), which overlay cannot stack on: vfs there. vfs works
//!   everywhere but copies the whole image for every container and layer: measured here, 3 to 12 s
//!   per container start of the cme image against 0.5 to 1 s with overlay. The same variables make a plain `podman`
//!   in a documented command use this set-up.
//! - The storage (graph root) stays in the cache directory between runs, so the base image and
//!   the cached layers of `Dockerfile.cme` (its pip install) are made once; the per-boot state
//!   (run root, podman's tmp_dir) is under `/run`, as podman expects.
//! - A Debian bookworm image with Python, made without a registry by `mmdebstrap` (its tarball
//!   kept in the cache directory) and imported; the base on which `Dockerfile.cme` is built.
//! - [`Podman::scan`]: every file under podman's directories written since a given time, searched
//!   for secrets in all the forms [`super::secrets::leak_forms`] knows.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use sha2::Digest as _;

use super::{repo_root, Output, Venv, CME_EXEC};

/// What `mmdebstrap` puts into the base image: Python with venv and pip (as `python:3.13-slim`
/// has), the CA certificates, and `useradd` (`passwd`), which `Dockerfile.cme` runs.
const BASE_PACKAGES: &str = "python3,python3-venv,python3-pip,ca-certificates,passwd";
const BASE_SUITE: &str = "bookworm";
/// The PATH and locale `python:3.13-slim` sets (an imported tarball has no configuration).
const BASE_CHANGES: [&str; 3] = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "CMD [\"python3\"]",
];

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const FIX_TOOLS: &str =
    "To fix: scripts/bootstrap-tools apt (it installs podman, runc and mmdebstrap with apt-get)";

/// The images the docs name, built here (see [`Podman::images`]).
pub struct Images {
    /// `Dockerfile`: the static binary FROM scratch.
    pub minimal: String,
    /// `Dockerfile.cme` on the bookworm base.
    pub cme: String,
    /// `bao` (the OpenBao binary from `.venv`) on the bookworm base, for the OpenBao Proxy pods.
    pub openbao: String,
    /// The bookworm base: `chown` for the proxy DaemonSet's init container.
    pub busybox: String,
}

pub struct Podman {
    cache: PathBuf,
    graphroot: PathBuf,
    runroot: PathBuf,
    tmp_dir: PathBuf,
    volumes: PathBuf,
    env: Vec<(String, String)>,
    images: OnceLock<Images>,
}

/// One podman user at a time: podman names an `emptyDir` volume after the manifest's volume, so
/// two pods with a `cme-config` volume must not run at once; and a 2-core machine gains nothing
/// from two image builds or pods at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Podman {
    /// The set-up, checked and written once per test process.
    #[track_caller]
    pub fn get() -> &'static Podman {
        static PODMAN: OnceLock<Result<Podman, String>> = OnceLock::new();
        match PODMAN.get_or_init(Podman::set_up) {
            Ok(p) => p,
            Err(message) => panic!("{message}"),
        }
    }

    /// Holds off every other podman test of this process while the guard lives.
    pub fn exclusive() -> MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_up() -> Result<Podman, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err(
                "the deployment tests run podman as root (rootful, like a Kubernetes \
                        node), and this test process is not root"
                    .to_owned(),
            );
        }
        for tool in ["podman", "runc"] {
            // With a clean environment: a CONTAINERS_CONF of the caller's must not decide.
            match Command::new(tool)
                .arg("--version")
                .env_clear()
                .env("PATH", SYSTEM_PATH)
                .stdin(Stdio::null())
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!(
                        "`{tool} --version` failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ))
                }
                Err(e) => return Err(format!("{tool} is not installed ({e}).\n{FIX_TOOLS}")),
            }
        }
        let cache = target_dir().join("deploy-podman");
        let graphroot = cache.join("storage");
        // Per-boot state belongs on a tmpfs (podman resets it after a reboot); named after the
        // cache directory so that two checkouts never share it.
        let digest = sha2::Sha256::digest(cache.as_os_str().as_encoded_bytes());
        let run = PathBuf::from("/run").join(format!(
            "cme-exec-tests-{}",
            digest[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let runroot = run.join("runroot");
        let tmp_dir = run.join("libpod");
        let volumes = graphroot.join("volumes");
        for dir in [&cache, &graphroot, &runroot, &tmp_dir] {
            fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let driver = match nix::sys::statfs::statfs(&graphroot) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC => "vfs",
            _ => "overlay",
        };
        let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
        let containers_conf = format!(
            "# Written by tests/cli/support/podman.rs for the deployment tests.\n\
             [containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = {events}\n\
             tmp_dir = {tmp}\n\
             volume_path = {volumes}\n\
             pull_policy = \"never\"\n",
            events = q(&run.join("events.log")),
            tmp = q(&tmp_dir),
            volumes = q(&volumes),
        );
        let storage_conf = format!(
            "# Written by tests/cli/support/podman.rs for the deployment tests.\n\
             [storage]\n\
             driver = \"{driver}\"\n\
             graphroot = {}\n\
             runroot = {}\n",
            q(&graphroot),
            q(&runroot)
        );
        let registries_conf =
            "# Written by tests/cli/support/podman.rs: no registry is ever asked.\n\
                               unqualified-search-registries = []\n";
        let files = [
            (
                "CONTAINERS_CONF",
                "containers.conf",
                containers_conf.as_str(),
            ),
            (
                "CONTAINERS_STORAGE_CONF",
                "storage.conf",
                storage_conf.as_str(),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF",
                "registries.conf",
                registries_conf,
            ),
        ];
        let mut env = Vec::new();
        for (var, name, text) in files {
            let path = cache.join(name);
            if fs::read_to_string(&path).ok().as_deref() != Some(text) {
                fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
            }
            env.push((var.to_owned(), path.display().to_string()));
        }
        Ok(Podman {
            cache,
            graphroot,
            runroot,
            tmp_dir,
            volumes,
            env,
            images: OnceLock::new(),
        })
    }

    /// The variables that point podman at this set-up.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// `podman` with this set-up's variables, a clean environment otherwise.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &self.cache)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman ARGS` and returns what it printed.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.command().args(args).output().expect("run podman");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `podman ARGS`, which must succeed; its stdout, trimmed.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "podman {args:?} failed:\n{}",
            out.describe()
        );
        out.stdout.trim().to_owned()
    }

    pub fn image_exists(&self, name: &str) -> bool {
        self.run(["image", "exists", name]).status.success()
    }

    /// The Debian bookworm image with Python, made once and kept.
    #[track_caller]
    pub fn base_image(&self) -> String {
        let recipe = format!(
            "mmdebstrap --variant=apt --include={BASE_PACKAGES} {BASE_SUITE}\n{}",
            BASE_CHANGES.join("\n")
        );
        let digest = sha2::Sha256::digest(recipe.as_bytes());
        let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("localhost/cme-exec-tests/bookworm-python:{tag}");
        let _lock = self.file_lock("base-image");
        if self.image_exists(&name) {
            return name;
        }
        let tarball = self.cache.join(format!("bookworm-python-{tag}.tar"));
        if !tarball.is_file() {
            let found = Command::new("mmdebstrap")
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "mmdebstrap is not installed.\n{FIX_TOOLS}");
            let partial = tarball.with_extension("tar.partial");
            // stdin closed: mmdebstrap reads apt sources from a stdin that is not a terminal.
            let out = Command::new("mmdebstrap")
                .args(["--quiet", "--variant=apt"])
                .arg(format!("--include={BASE_PACKAGES}"))
                .arg("--format=tar")
                .arg(BASE_SUITE)
                .arg(&partial)
                .stdin(Stdio::null())
                .output()
                .expect("run mmdebstrap");
            assert!(
                out.status.success(),
                "mmdebstrap {BASE_SUITE} failed (it needs Debian's package mirror):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            fs::rename(&partial, &tarball).expect("keep the base image tarball");
        }
        let mut args = vec!["import".to_owned()];
        for change in BASE_CHANGES {
            args.push("--change".to_owned());
            args.push(change.to_owned());
        }
        args.push(tarball.display().to_string());
        args.push(name.clone());
        self.ok(&args);
        name
    }

    /// The images, built once per test process from this checkout: `Dockerfile` and
    /// `Dockerfile.cme` with the static binary of `scripts/dist`, and the two helper images.
    #[track_caller]
    pub fn images(&self) -> &Images {
        if let Some(images) = self.images.get() {
            return images;
        }
        let built = self.build_images();
        let _ = self.images.set(built);
        self.images.get().expect("set just now")
    }

    fn build_images(&self) -> Images {
        let repo = repo_root();
        let binary = repo.join("dist/linux/amd64/cme-exec");
        assert!(
            binary.is_file() && repo.join("dist/ca-certificates.crt").is_file(),
            "{} is missing: the images package the static binary.\n\
             To fix: run scripts/dist x86_64-unknown-linux-musl (scripts/test does)",
            binary.display()
        );
        let base = self.base_image();
        let _lock = self.file_lock("images");
        let minimal = "localhost/cme-exec-tests/cme-exec:dist".to_owned();
        self.build(&[
            "--platform",
            "linux/amd64",
            "-t",
            &minimal,
            "-f",
            &repo.join("Dockerfile").display().to_string(),
            &repo.display().to_string(),
        ]);
        let cme = "localhost/cme-exec-tests/cme-exec-cme:dist".to_owned();
        // pip inside the build reaches the package index through this machine's CA bundle:
        // mounted for the RUN step only, never part of the image (see build_time_files).
        let mut args: Vec<String> = vec![
            "--platform".into(),
            "linux/amd64".into(),
            "--network".into(),
            "host".into(),
            "--build-arg".into(),
            format!("BASE_IMAGE={base}"),
        ];
        for file in build_time_files() {
            args.push("--volume".into());
            args.push(format!("{0}:{0}:ro", file.display()));
        }
        args.extend([
            "-t".to_owned(),
            cme.clone(),
            "-f".to_owned(),
            repo.join("Dockerfile.cme").display().to_string(),
            repo.display().to_string(),
        ]);
        self.build(&args);

        // OpenBao's image has `bao` on PATH (and a shell): the binary the tests run, on the base.
        let context = self.cache.join("openbao-context");
        fs::create_dir_all(&context).unwrap();
        let bao = Venv::get().bao();
        let copy = context.join("bao");
        if fs::metadata(&copy).map(|m| m.len()).ok() != fs::metadata(&bao).map(|m| m.len()).ok() {
            fs::copy(&bao, &copy).expect("copy bao into the build context");
        }
        fs::write(
            context.join("Containerfile"),
            format!("FROM {base}\nCOPY bao /usr/local/bin/bao\n"),
        )
        .unwrap();
        let openbao = "localhost/cme-exec-tests/openbao:dist".to_owned();
        self.build(&[
            "-t",
            &openbao,
            "-f",
            &context.join("Containerfile").display().to_string(),
            &context.display().to_string(),
        ]);
        Images {
            minimal,
            cme,
            openbao,
            busybox: base,
        }
    }

    #[track_caller]
    fn build<S: AsRef<OsStr>>(&self, args: &[S]) {
        let mut all: Vec<std::ffi::OsString> = ["build", "--pull=never", "--layers", "--quiet"]
            .iter()
            .map(Into::into)
            .collect();
        all.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self.ok(&all);
    }

    /// An exclusive lock shared by every test process on this cache (`flock`).
    fn file_lock(&self, name: &str) -> nix::fcntl::Flock<fs::File> {
        let path = self.cache.join(format!("{name}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", path.display()))
    }

    /// The directories podman writes containers, volumes and its state into.
    pub fn storage_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.graphroot.clone(),
            self.runroot.clone(),
            self.tmp_dir.clone(),
            self.volumes.clone(),
        ]
    }

    /// Where podman keeps the named volume `name`.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes.join(name).join("_data")
    }

    /// Every file under podman's directories modified at or after `since` (all that a run can
    /// have written: image layers from before are left out) that holds one of `secrets`, in any
    /// form; `except` are directories left out (each with the reason the caller gives).
    pub fn scan(&self, since: SystemTime, secrets: &[String], except: &[PathBuf]) -> Vec<String> {
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 1;
        let mut found = Vec::new();
        let mut stack = self.storage_dirs();
        while let Some(dir) = stack.pop() {
            if except.iter().any(|e| dir.starts_with(e)) {
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let Ok(meta) = entry.metadata() else { continue };
                let path = entry.path();
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() && meta.mtime() >= since {
                    let Ok(bytes) = fs::read(&path) else { continue };
                    for secret in secrets {
                        if let Some(form) = super::secrets::leaked_form(&bytes, secret) {
                            found.push(format!(
                                "{} ({form}) in {}",
                                super::secrets::label_of(secret),
                                path.display()
                            ));
                        }
                    }
                }
            }
        }
        found
    }
}

/// The files of this machine that pip needs during the image build: its CA bundle (pip's
/// package index is reached through a proxy that bundle trusts), mounted over the image's own
/// for the RUN step. Only a file the image already has is mounted: a bind mount onto a missing
/// path leaves an empty file of that name in the layer (podman 4.3), so this machine's
/// `/etc/pip.conf` is not mounted. Debian's pip reads the system bundle without it, and the
/// file may say nothing else (checked here), or the build would not do what pip does here.
#[track_caller]
pub fn build_time_files() -> Vec<PathBuf> {
    if let Ok(text) = fs::read_to_string("/etc/pip.conf") {
        let settings: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .filter(|l| *l != "[global]")
            .filter(|l| !l.starts_with("cert"))
            .collect();
        assert!(
            settings.is_empty(),
            "/etc/pip.conf sets more than `cert` ({settings:?}); the image build mounts only this \
             machine's CA bundle, so pip in the build would not do what pip does here"
        );
    }
    ["/etc/ssl/certs/ca-certificates.crt"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

/// Cargo's target directory: where the binary under test was built (`<target>/debug/cme-exec`),
/// so `CARGO_TARGET_DIR` is honoured.
pub fn target_dir() -> PathBuf {
    Path::new(CME_EXEC)
        .parent()
        .and_then(Path::parent)
        .expect("the binary under test is in <target>/<profile>/")
        .to_path_buf()
}
