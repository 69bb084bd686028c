//! Child programs for cme-exec to run: bash scripts (and one Python script from the venv) that
//! report what they see or misbehave on demand. Write them with [`super::Test::script`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `path` as a single-quoted shell word.
pub fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Exits with `code`.
pub fn exit_with(code: i32) -> String {
    format!("#!/usr/bin/env bash\nexit {code}\n")
}

/// Kills itself with `signal` (`TERM`, `KILL`, ...); exits 3 if it somehow survives.
pub fn kill_self(signal: &str) -> String {
    format!("#!/usr/bin/env bash\nkill -{signal} $$\nsleep 5\nexit 3\n")
}

/// Creates `marker` and exits 0: proof that the child ran.
pub fn touch(marker: &Path) -> String {
    format!("#!/usr/bin/env bash\n: > {}\nexit 0\n", sh_quote(marker))
}

/// Prints `ready`, then waits for SIGTERM. Each TERM it gets appends a `got TERM` line to
/// `record`; after the first it stays half a second more (so that a duplicate would be counted)
/// and exits 0.
pub fn term_once(record: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
record={record}
got=0
trap 'echo "got TERM" >> "$record"; got=1' TERM
echo ready
while [ "$got" = 0 ]; do sleep 0.02; done
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.05; done
exit 0
"#,
        record = sh_quote(record)
    )
}

/// Prints `ready`, then records every SIGHUP, SIGUSR1, SIGUSR2 and SIGTERM it gets as one line
/// (`HUP`, `USR1`, ...) in `record`; exits 0 half a second after the first TERM.
pub fn record_signals(record: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
record={record}
term=0
for sig in HUP USR1 USR2; do
  trap "echo $sig >> \"\$record\"" "$sig"
done
trap 'echo TERM >> "$record"; term=1' TERM
echo ready
while [ "$term" = 0 ]; do sleep 0.02; done
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.05; done
exit 0
"#,
        record = sh_quote(record)
    )
}

/// Writes its pid to `pid_file`, prints `ready`, and exits 0 once `release` exists: a child that
/// outlives a cme-exec killed with SIGKILL for as long as the test wants.
pub fn wait_for_release(pid_file: &Path, release: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
echo $$ > {pid_file}
echo ready
while [ ! -e {release} ]; do sleep 0.02; done
exit 0
"#,
        pid_file = sh_quote(pid_file),
        release = sh_quote(release)
    )
}

/// Ignores SIGTERM (and so does the grandchild it starts, `sleep 1000`, which inherits the
/// disposition), writes its own pid to `child_pid` and the grandchild's to `grandchild_pid`,
/// prints `ready` and waits forever: only a SIGKILL of the process group ends both.
pub fn ignore_term_with_grandchild(child_pid: &Path, grandchild_pid: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
trap '' TERM
sleep 1000 </dev/null >/dev/null 2>&1 &
echo $! > {grandchild}
echo $$ > {child}
echo ready
while :; do sleep 0.1; done
"#,
        child = sh_quote(child_pid),
        grandchild = sh_quote(grandchild_pid)
    )
}

/// Records what the child sees into `out_dir`: `env` (`env -0`), and when `CME_CONFIG_PATH` is
/// set: `config-path`, `config` (the contents), `config-mode` (octal, link followed),
/// `config-dir-mode`; and `fds` (`ls -l /proc/$$/fd` of the script's shell). Then runs its
/// arguments as a command, if any, and exits with its status.
pub fn dump_env(out_dir: &Path) -> String {
    format!(
        r#"#!/usr/bin/env bash
out={out}
env -0 > "$out/env"
if [ -n "${{CME_CONFIG_PATH:-}}" ]; then
  printf '%s' "$CME_CONFIG_PATH" > "$out/config-path"
  cat "$CME_CONFIG_PATH" > "$out/config"
  stat -L -c '%a' "$CME_CONFIG_PATH" > "$out/config-mode"
  stat -L -c '%a' "$(dirname "$CME_CONFIG_PATH")" > "$out/config-dir-mode"
fi
ls -l /proc/$$/fd > "$out/fds"
if [ $# -gt 0 ]; then "$@"; exit $?; fi
exit 0
"#,
        out = sh_quote(out_dir)
    )
}

/// A Python child that does what cme does after `_edge/tenant_info`: sets
/// `auth.confluence[url].cloud_id` in the config it was given (rewriting the whole file in place,
/// secrets included, like cme), then exits 0.
pub fn set_cloud_id(python: &Path, url: &str, cloud_id: &str) -> String {
    format!(
        r#"#!{python}
import json, os
path = os.environ["CME_CONFIG_PATH"]
with open(path) as f:
    data = json.load(f)
instances = data.setdefault("auth", {{}}).setdefault("confluence", {{}})
key = next((k for k in instances if k.rstrip("/") == {url:?}.rstrip("/")), {url:?})
instances.setdefault(key, {{}})["cloud_id"] = {cloud_id:?}
with open(path, "w") as f:
    json.dump(data, f)
"#,
        python = python.display(),
        url = url,
        cloud_id = cloud_id
    )
}

/// What a [`dump_env`] child recorded.
pub struct ChildEnv {
    /// The child's environment, name to value.
    pub vars: BTreeMap<String, String>,
    /// The raw `env -0` dump, for leak checks.
    pub raw_env: Vec<u8>,
    pub config_path: Option<String>,
    pub config: Option<Vec<u8>>,
    pub config_mode: Option<String>,
    pub config_dir_mode: Option<String>,
    /// The child shell's open file descriptors, number to link target.
    pub fds: BTreeMap<u32, String>,
}

impl ChildEnv {
    /// Reads the dump; panics (with a hint) if the child never ran.
    #[track_caller]
    pub fn read(out_dir: &Path) -> Self {
        let env_path = out_dir.join("env");
        let raw_env = fs::read(&env_path).unwrap_or_else(|e| {
            panic!(
                "the child did not record its environment at {}: {e} (did cme-exec start it?)",
                env_path.display()
            )
        });
        let vars = raw_env
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                entry
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        let read_text = |name: &str| fs::read_to_string(out_dir.join(name)).ok();
        let fds = read_text("fds")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (left, target) = line.split_once(" -> ")?;
                let fd = left.split_whitespace().last()?.parse().ok()?;
                Some((fd, target.to_owned()))
            })
            .collect();
        ChildEnv {
            vars,
            raw_env,
            config_path: read_text("config-path"),
            config: fs::read(out_dir.join("config")).ok(),
            config_mode: read_text("config-mode").map(|m| m.trim().to_owned()),
            config_dir_mode: read_text("config-dir-mode").map(|m| m.trim().to_owned()),
            fds,
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The config the child was given, parsed.
    #[track_caller]
    pub fn config_json(&self) -> serde_json::Value {
        let bytes = self
            .config
            .as_ref()
            .expect("the child had no CME_CONFIG_PATH to read");
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "the config the child read is not JSON ({} bytes): {e}",
                bytes.len()
            )
        })
    }

    /// The fd number of a `/proc/self/fd/N` config path.
    pub fn config_fd(&self) -> Option<u32> {
        self.config_path
            .as_deref()?
            .strip_prefix("/proc/self/fd/")?
            .parse()
            .ok()
    }

    /// The config file's path when it was a real file (not a `/proc/self/fd/N`).
    pub fn config_file(&self) -> Option<PathBuf> {
        let path = self.config_path.as_deref()?;
        (!path.starts_with("/proc/")).then(|| PathBuf::from(path))
    }
}
