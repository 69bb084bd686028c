//! The `command` provider: the real `pass` with a real GnuPG key (installed
//! by `scripts/bootstrap-tools`), and small scripts for what no real tool does on demand:
//! failing, dying by a signal, hanging, flooding stdout, counting its runs and asking for a
//! password on the terminal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use crate::*;

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed; run scripts/bootstrap-tools (it runs `apt-get install -y \
             pass gnupg`), or install it yourself"
        )
    })
}

/// A GnuPG home and a password store of the test's own, and the agent stopped at the end.
struct PassStore {
    gnupg: PathBuf,
    store: PathBuf,
}

impl PassStore {
    fn new(t: &Test) -> PassStore {
        tool("pass");
        tool("gpg");
        let gnupg = t.path().join("secrets/gnupg");
        let store = t.path().join("secrets/password-store");
        std::fs::create_dir(&gnupg).expect("create GNUPGHOME");
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod GNUPGHOME");
        let s = PassStore { gnupg, store };
        s.run(
            "gpg",
            &[
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "cme-exec test <cme-exec-test@example.com>",
                "default",
                "default",
                "never",
            ],
            None,
        );
        s.run("pass", &["init", "cme-exec-test@example.com"], None);
        s
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("GNUPGHOME", &self.gnupg)
            .env("PASSWORD_STORE_DIR", &self.store)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(text.as_bytes())
                .expect("write to pass");
        }
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            secrets::redact(&String::from_utf8_lossy(&out.stderr))
        );
    }

    fn insert(&self, name: &str, value: &str) {
        self.run("pass", &["insert", "-m", "-f", name], Some(value));
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.gnupg)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `pass show` through the command provider: a plain entry and a JSON entry read with `#KEY`,
/// handed to the child; GnuPG's variables do not reach the child.
#[test]
fn command_provider_reads_a_password_store() {
    let mut t = Test::new();
    let user = t.sentinel("pass-user");
    let token = t.sentinel("pass-token");
    let pass = PassStore::new(&t);
    pass.insert("atlassian/user", &format!("{user}\n"));
    pass.insert(
        "atlassian/wiki",
        &format!("{{\"api_token\": \"{token}\", \"note\": 3}}\n"),
    );
    let t = t
        .env("GNUPGHOME", &pass.gnupg)
        .env("PASSWORD_STORE_DIR", &pass.store)
        .config_toml(
            "[providers.pass]\nkind = \"command\"\ncommand = [\"pass\", \"show\", \"{path}\"]\n\
             env = [\"GNUPGHOME\", \"PASSWORD_STORE_DIR\"]\n\n\
             [confluence.\"https://x.atlassian.net\"]\nusername = \"pass://atlassian/user\"\n\
             api_token = \"pass://atlassian/wiki#api_token\"\n",
        );
    let out = t.run_args(["check"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("pass://atlassian/wiki#api_token"),
        "{}",
        out.describe()
    );
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let out = t.run_args([std::ffi::OsStr::new("--"), child.as_os_str()]);
    out.assert_code(0);
    let env = t.child_env();
    let config = env.config_json();
    let entry = &config["auth"]["confluence"]["https://x.atlassian.net"];
    assert!(entry["username"] == user.as_str(), "username from pass");
    assert!(
        entry["api_token"] == token.as_str(),
        "api_token from pass's JSON"
    );
    for name in ["GNUPGHOME", "PASSWORD_STORE_DIR"] {
        assert!(env.var(name).is_none(), "the child inherited {name}");
    }
    // A missing entry: pass's own exit status, the reference, no stderr text.
    let t = t.config_toml(
        "[providers.pass]\nkind = \"command\"\ncommand = [\"pass\", \"show\", \"{path}\"]\n\
         env = [\"GNUPGHOME\", \"PASSWORD_STORE_DIR\"]\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"pass://atlassian/nope\"\n",
    );
    let out = t.run_args(["check"]);
    out.assert_code(1);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("pass://atlassian/nope"))
        .unwrap_or_else(|| panic!("no line for the reference\n{}", out.describe()));
    assert!(
        line.contains("`pass`") && line.contains("exited with status 1"),
        "{line}"
    );
    assert!(
        !out.stdout.contains("is not in the password store"),
        "pass's stderr is not shown\n{}",
        out.describe()
    );
    drop(pass);
    t.assert_clean();
}

/// A helper that records each run (its argument) in `out/runs`, then behaves by its argument.
fn helper(t: &Test, runs: &Path) -> PathBuf {
    let said = "S3NT1NEL-shaped helper stderr";
    t.script(
        "helper",
        &format!(
            "#!/bin/sh\necho \"$1\" >> {runs}\necho '{said}' >&2\ncase \"$1\" in\n\
             doc) printf '{{\"username\": \"%s\", \"api_token\": \"%s\"}}\\n' \"$USER_V\" \"$TOKEN_V\" ;;\n\
             pat) printf '%s\\n' \"$PAT_V\" ;;\n\
             fail) exit 4 ;;\n\
             signal) kill -TERM $$ ;;\n\
             flood) yes \"$PAT_V\" ;;\n\
             hang) sleep 600 & echo $! > {grandchild}; wait ;;\n\
             esac\n",
            runs = scripts::sh_quote(runs),
            grandchild = scripts::sh_quote(&t.out_dir().join("grandchild")),
        ),
    )
}

/// Each distinct document runs the command once, whatever the number of fields using it; a
/// failing, killed, hanging or flooding helper is named with the reference and its status, and
/// nothing it printed on stderr or stdout reaches cme-exec's output.
#[test]
fn command_provider_runs_once_per_document_and_names_failures() {
    let mut t = Test::new();
    let user = t.sentinel("cmd-user");
    let token = t.sentinel("cmd-token");
    let pat = t.sentinel("cmd-pat");
    let runs = t.out_dir().join("runs");
    let helper = helper(&t, &runs);
    let provider = format!(
        "[providers.h]\nkind = \"command\"\ncommand = [{}, \"{{path}}\"]\n\
         env = [\"USER_V\", \"TOKEN_V\", \"PAT_V\"]\n\n",
        q(helper.display().to_string())
    );
    let t = t
        .env("USER_V", &user)
        .env("TOKEN_V", &token)
        .env("PAT_V", &pat);
    let config = t.write_file(
        "work/all.toml",
        format!(
            "{provider}[confluence.\"https://x.atlassian.net\"]\nusername = \"h:doc#username\"\n\
             api_token = \"h:doc#api_token\"\n\n[jira.\"https://jira.example.com\"]\npat = \"h:pat\"\n\n\
             [jira.\"https://jira2.example.com\"]\npat = \"h:pat\"\n"
        ),
    );
    let out = t.run_args([
        std::ffi::OsStr::new("--config"),
        config.as_os_str(),
        std::ffi::OsStr::new("check"),
    ]);
    out.assert_code(0);
    let mut seen: Vec<String> = std::fs::read_to_string(&runs)
        .expect("the helper ran")
        .lines()
        .map(str::to_owned)
        .collect();
    seen.sort();
    assert_eq!(seen, ["doc", "pat"], "one run per distinct document");

    let failing = |reference: &str| {
        let config = t.write_file(
            &format!("work/{reference}.toml"),
            format!("{provider}[jira.\"https://jira.example.com\"]\npat = \"h:{reference}\"\n"),
        );
        let out = t
            .launch([
                std::ffi::OsStr::new("--config"),
                config.as_os_str(),
                std::ffi::OsStr::new("--timeout"),
                std::ffi::OsStr::new("3"),
                std::ffi::OsStr::new("check"),
            ])
            .run();
        out.assert_code(1);
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("h:{reference}")))
            .unwrap_or_else(|| panic!("no line for h:{reference}\n{}", out.describe()))
            .to_owned();
        assert!(
            !out.stdout.contains("helper stderr") && !out.stderr.contains("helper stderr"),
            "the helper's stderr is not shown\n{}",
            out.describe()
        );
        assert!(line.contains("provider `h`"), "{line}");
        line
    };
    let line = failing("fail");
    assert!(line.contains("exited with status 4"), "{line}");
    let line = failing("signal");
    assert!(line.contains("killed by signal SIGTERM"), "{line}");
    let line = failing("flood");
    assert!(line.contains("more than 1024 KiB"), "{line}");
    let line = failing("hang");
    assert!(line.contains("did not finish within 2.5 s"), "{line}");
    // The helper's whole process group was killed before cme-exec exited: its `sleep` is gone,
    // or a zombie that init has yet to reap.
    let pid: i32 = std::fs::read_to_string(t.out_dir().join("grandchild"))
        .expect("the hanging helper recorded its grandchild")
        .trim()
        .parse()
        .expect("a pid");
    let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    assert!(!running, "the hanging helper's grandchild {pid} still runs");
    t.assert_clean();
}

/// A helper still running when cme-exec is SIGKILLed dies with it (Linux, `PR_SET_PDEATHSIG`),
/// instead of running on with nobody to read it or to kill it at its deadline.
#[test]
fn command_provider_helper_dies_with_a_sigkilled_cme_exec() {
    let t = Test::new();
    let pid_file = t.out_dir().join("helper.pid");
    let helper = t.script(
        "slow",
        &format!(
            "#!/bin/sh\necho $$ > {}.tmp\nmv {0}.tmp {0}\nexec sleep 1000\n",
            scripts::sh_quote(&pid_file)
        ),
    );
    let t = t.config_toml(&format!(
        "[providers.h]\nkind = \"command\"\ncommand = [{}, \"{{path}}\"]\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"h:pat\"\n",
        q(helper.display().to_string())
    ));
    let running = t.spawn_args(["--timeout", "60", "check"]);
    wait_until("the helper runs", Duration::from_secs(30), || {
        pid_file.exists()
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .expect("a pid");
    let _reaper = KillOnDrop(vec![pid]);
    assert!(!process_gone(pid), "the helper runs");
    running.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(running.wait().code(), None, "cme-exec was killed");
    wait_until(
        "the helper exits with cme-exec",
        Duration::from_secs(10),
        || process_gone(pid),
    );
    t.assert_clean();
}

/// `stdin = "terminal"`: on a terminal the helper can ask for a password (as `op` and `bw` do);
/// without a terminal its stdin is empty and it fails instead of waiting.
#[test]
fn command_provider_can_ask_on_the_terminal() {
    let mut t = Test::new();
    let token = t.sentinel("typed-token");
    let asker = t.script(
        "asker",
        &String::from(
            "#!/bin/sh\nprintf 'Passphrase for %s: ' \"$1\" >&2\nread pw || exit 9\n\
             [ \"$pw\" = 'open sesame' ] || exit 8\nprintf '%s\\n' \"$TOKEN_V\"\n",
        ),
    );
    let python = Venv::get().python();
    let driver = t.script(
        "pty-answer",
        &format!(
            r#"#!{python}
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out, sent = b"", False
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b"Passphrase for" in out:
        os.write(fd, b"open sesame\n")
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#,
            python = python.display()
        ),
    );
    let t = t.env("TOKEN_V", &token).config_toml(&format!(
        "[providers.ask]\nkind = \"command\"\ncommand = [{}, \"{{ref}}\"]\nstdin = \"terminal\"\n\
         env = [\"TOKEN_V\"]\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"ask://vault/item\"\n",
        q(asker.display().to_string())
    ));
    let out = t.launch(["check"]).wrapper([&driver]).run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("Passphrase for ask://vault/item"),
        "the helper asked on the terminal\n{}",
        out.describe()
    );
    // No terminal: stdin is /dev/null, `read` fails at once.
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("exited with status 9"),
        "{}",
        out.describe()
    );
    t.assert_clean();
}

/// `stdin = "terminal"` at a terminal with stderr redirected to a file (`2>err.log`): the helper
/// still gets the terminal as stdin, but its stderr, where it printed the secret, is drained,
/// never written into the file. (With stderr on the terminal its prompt is seen:
/// `command_provider_can_ask_on_the_terminal`.)
#[test]
fn command_provider_stderr_never_reaches_a_redirected_stderr() {
    use crate::support::launch::pty_runner;
    let mut t = Test::new();
    let token = t.sentinel("helper-token");
    let helper = t.script(
        "chatty",
        "#!/bin/sh
[ -t 0 ] || exit 9
printf 'Unlocking %s\n' \"$1\" >&2
         printf 'fetched secret=%s\n' \"$TOKEN_V\" >&2
printf '%s\n' \"$TOKEN_V\"
",
    );
    let t = t.env("TOKEN_V", &token).config_toml(&format!(
        "[providers.ask]\nkind = \"command\"\ncommand = [{}, \"{{ref}}\"]\nstdin = \"terminal\"\n\
         env = [\"TOKEN_V\"]\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"ask://vault/item\"\n",
        q(helper.display().to_string())
    ));
    let pty = pty_runner(&t);
    let err_file = t.out_dir().join("err.log");
    let redirect = format!("exec \"$@\" 2>'{}'", err_file.display());
    let out = t
        .launch(["run", "--", "/bin/true"])
        .wrapper([
            pty.as_os_str(),
            "/bin/sh".as_ref(),
            "-c".as_ref(),
            redirect.as_ref(),
            "sh".as_ref(),
        ])
        .run();
    out.assert_success();
    let log = std::fs::read(&err_file).unwrap();
    assert_no_leak_in("the redirected stderr (err.log)", &log, &token);
    let log = String::from_utf8_lossy(&log);
    assert!(
        !log.contains("Unlocking"),
        "the helper's stderr reached the file: {}",
        redact(&log)
    );
    assert!(
        !out.stdout.contains("Unlocking"),
        "the helper's stderr is not the terminal either: {}",
        out.describe()
    );
    t.assert_clean();
}

/// A program that is not installed is named, with the fix, before anything runs.
#[test]
fn command_provider_names_a_missing_program() {
    let t = Test::new().config_toml(
        "[providers.op]\nkind = \"command\"\ncommand = [\"op-not-installed-here\", \"read\", \"{ref}\"]\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"op://Private/Jira/pat\"\n",
    );
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("cannot find the program `op-not-installed-here` in PATH"),
        "{}",
        out.describe()
    );
    t.assert_clean();
}
