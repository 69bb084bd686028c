//! A real Secret Service for the `keyring` provider's tests: a private D-Bus session bus
//! (`dbus-daemon` with its own configuration: no service is ever started by activation, so
//! "nothing on the bus" is a state a test can be in) and GNOME Keyring's daemon on it, unlocked
//! with a known password, everything under a temporary HOME and XDG directories of its own.
//! Both processes are stopped when the value is dropped. `secret-tool` (libsecret) puts entries
//! in the way other programs do.
//!
//! The tools come from Debian's `dbus`, `gnome-keyring` and `libsecret-tools`
//! (`scripts/bootstrap-tools apt` installs them); a missing one fails the test, saying so.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

const TOOLS: &[(&str, &str)] = &[
    ("dbus-daemon", "dbus"),
    ("dbus-send", "dbus"),
    ("gnome-keyring-daemon", "gnome-keyring"),
    ("secret-tool", "libsecret-tools"),
];

/// The login keyring's password.
const PASSWORD: &str = "cme-exec-test";

/// A session bus, and GNOME Keyring on it when [`SecretService::start`] made it.
pub struct SecretService {
    dir: tempfile::TempDir,
    bus: Child,
    daemon: Option<Child>,
}

impl SecretService {
    /// A bus with an unlocked GNOME Keyring on it.
    #[track_caller]
    pub fn start() -> SecretService {
        let mut s = SecretService::bus_only();
        s.start_daemon(true);
        s
    }

    /// A session bus where nothing provides the Secret Service.
    #[track_caller]
    pub fn bus_only() -> SecretService {
        check_tools();
        let dir = tempfile::Builder::new()
            .prefix("cme-exec-keyring-")
            .tempdir()
            .expect("create the keyring's directory");
        for sub in ["home", "data", "config", "cache", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create a keyring subdirectory");
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod 0700 the keyring's runtime directory");
        let socket = dir.path().join("run/bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .expect("write the bus configuration");
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let s = SecretService {
            dir,
            bus,
            daemon: None,
        };
        wait_until("the session bus listens", Duration::from_secs(10), || {
            socket.exists()
        });
        s
    }

    /// `unix:path=...`: the bus, for DBUS_SESSION_BUS_ADDRESS.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("run/bus").display())
    }

    /// The keyring's files (encrypted by the daemon).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command with the keyring's environment only.
    fn command(&self, program: &str) -> Command {
        let root = self.dir.path();
        let mut c = Command::new(program);
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", root.join("home"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", self.address());
        c
    }

    /// Starts GNOME Keyring on the bus: with the password on its standard input (`--unlock`:
    /// the login keyring created or unlocked), or without (an existing login keyring stays
    /// locked).
    #[track_caller]
    fn start_daemon(&mut self, unlocked: bool) {
        assert!(self.daemon.is_none(), "the keyring daemon already runs");
        let mut c = self.command("gnome-keyring-daemon");
        c.args(["--foreground", "--components=secrets"])
            .arg(format!(
                "--control-directory={}",
                self.dir.path().join("run/keyring").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unlocked {
            c.arg("--unlock").stdin(Stdio::piped());
        } else {
            c.stdin(Stdio::null());
        }
        let mut child = c.spawn().expect("start gnome-keyring-daemon");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(PASSWORD.as_bytes())
                .expect("give gnome-keyring-daemon its password");
        }
        self.daemon = Some(child);
        wait_until(
            "GNOME Keyring provides the Secret Service on the bus",
            Duration::from_secs(20),
            || self.name_has_owner(),
        );
    }

    fn name_has_owner(&self) -> bool {
        let out = self
            .command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .output()
            .expect("run dbus-send");
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// Restarts GNOME Keyring without the password: the login keyring is locked, and unlocking it
    /// needs a prompt, which nothing can show here.
    #[track_caller]
    pub fn lock(&mut self) {
        self.stop_daemon();
        wait_until(
            "the Secret Service leaves the bus",
            Duration::from_secs(10),
            || !self.name_has_owner(),
        );
        self.start_daemon(false);
    }

    /// `secret-tool store --label=... service SERVICE username ACCOUNT`, the value on its
    /// standard input (exactly these bytes: secret-tool keeps a trailing newline).
    #[track_caller]
    pub fn store(&self, service: &str, account: &str, value: &str) {
        let mut child = self
            .command("secret-tool")
            .args(["store", &format!("--label={service}/{account}")])
            .args(["service", service, "username", account])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run secret-tool store");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "secret-tool store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `secret-tool lookup service SERVICE username ACCOUNT`: the value, if there is one.
    pub fn lookup(&self, service: &str, account: &str) -> Option<String> {
        let out = self
            .command("secret-tool")
            .args(["lookup", "service", service, "username", account])
            .output()
            .expect("run secret-tool lookup");
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).expect("a text value"))
    }

    /// The attributes of the entries `secret-tool search --all` finds for SERVICE/ACCOUNT.
    pub fn attributes(&self, service: &str, account: &str) -> Vec<String> {
        let out = self
            .command("secret-tool")
            .args(["search", "--all", "service", service, "username", account])
            .output()
            .expect("run secret-tool search");
        // Its items on stdout, their attributes as `attribute.NAME = VALUE` lines (stderr on
        // some versions).
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .filter_map(|l| l.strip_prefix("attribute."))
            .map(str::to_owned)
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop_daemon();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

#[track_caller]
fn check_tools() {
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .copied()
        .filter(|(tool, _)| {
            !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|dir| dir.join(tool).is_file())
        })
        .collect();
    if !missing.is_empty() {
        let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        packages.dedup();
        panic!(
            "the keyring tests need a real Secret Service, and {} is missing: install {} \
             (`apt-get install {}`, or `scripts/bootstrap-tools apt`, which scripts/test runs)",
            tools.join(", "),
            packages.join(", "),
            packages.join(" ")
        );
    }
}
