//! `cme-exec init`: a first config from flags, and from answers on a terminal (a real
//! pseudo-terminal made by util-linux's `script`); never replacing a file; the file passes
//! `check --offline`; and the printed commands, run as printed, put the credentials where the
//! config reads them (real OpenBao; the file store).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::openbao::OpenBao;
use crate::support::*;

/// The user config `init` writes by default under the test's XDG_CONFIG_HOME.
fn user_config(t: &Test) -> PathBuf {
    t.config_home().join("cme-exec/config.toml")
}

/// The printed command lines (two-space indented, not comments), without their `# ...` notes.
fn printed_commands(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split("    #").next().unwrap_or(l).trim().to_owned())
        .collect()
}

#[test]
fn init_from_flags_writes_a_private_config_that_passes_check_offline() {
    let t = Test::new();
    let out = t.run_args([
        "init",
        "--confluence",
        "https://Company.atlassian.net/",
        "--jira",
        "https://jira.example.org",
        "--store",
        "vault://secret/cme",
    ]);
    out.assert_success();
    let config = user_config(&t);
    out.assert_stderr_contains(&format!("cme-exec: wrote {} (mode 0600)", config.display()));
    assert_eq!(mode_of(&config), 0o600);
    assert_eq!(mode_of(config.parent().unwrap()), 0o700);
    let text = fs::read_to_string(&config).unwrap();
    for line in [
        "[confluence.\"https://company.atlassian.net\"]",
        "username  = \"vault://secret/cme/company.atlassian.net#username\"",
        "api_token = \"vault://secret/cme/company.atlassian.net#api_token\"",
        "[jira.\"https://jira.example.org\"]",
        "pat = \"vault://secret/cme/jira.example.org#pat\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    let commands = printed_commands(&out.stdout);
    assert_eq!(
        commands,
        [
            "bao kv put -mount=secret cme/company.atlassian.net username=you@example.com api_token=-",
            "bao kv put -mount=secret cme/jira.example.org pat=-",
            "cme-exec check",
        ],
        "{}",
        out.describe()
    );
    // Found without --config (the user config), and well-formed without a store.
    let check = t.run_args(["check", "--offline"]);
    check.assert_success();
    check.assert_stdout_contains("offline: all 3 well-formed");

    // Never replaced: a second init is refused and the file is as it was.
    let again = t.run_args([
        "init",
        "--jira",
        "https://other.example.org",
        "--store",
        "command",
    ]);
    again.assert_code(125);
    again.assert_stderr_contains(&format!(
        "refusing to replace {}: it already exists",
        config.display()
    ));
    again.assert_stderr_contains("hint: edit that file");
    assert_eq!(fs::read_to_string(&config).unwrap(), text);
    t.assert_clean();
}

/// Without flags and without a terminal, init says which flags it needs; a `./cme-exec.toml`
/// of the working directory is written when asked for and the next step is `trust`; bad input
/// is named before anything is written.
#[test]
fn init_without_a_terminal_needs_flags_and_says_when_trust_comes_next() {
    let t = Test::new();
    let out = t.run_args(["init"]);
    out.assert_code(125);
    out.assert_stderr_contains(
        "init needs --confluence URL or --jira URL, and there is no terminal to ask on",
    );
    let out = t.run_args([
        "init",
        "--confluence",
        "company.atlassian.net",
        "--store",
        "valt://secret",
    ]);
    out.assert_code(125);
    out.assert_stderr_contains("not a store cme-exec init knows (did you mean vault?)");
    let out = t.run_args([
        "init",
        "--confluence",
        "company.atlassian.net",
        "--store",
        "vault://secret/cme",
    ]);
    out.assert_code(125);
    out.assert_stderr_contains("an instance key must start with https://");
    assert!(!user_config(&t).exists(), "nothing is written on bad input");

    let out = t.run_args(args![
        "--config",
        t.work_dir().join("cme-exec.toml"),
        "init",
        "--jira",
        "https://jira.example.org",
        "--auth",
        "token",
        "--store",
        "command"
    ]);
    out.assert_success();
    let commands = printed_commands(&out.stdout);
    assert_eq!(
        commands,
        [
            "pass insert -m cme/jira.example.org",
            "cme-exec trust",
            "cme-exec check"
        ],
        "{}",
        out.describe()
    );
    out.assert_stdout_contains(
        "cme-exec trust    # a ./cme-exec.toml found in the working directory is used only once trusted",
    );
    let written = fs::read_to_string(t.work_dir().join("cme-exec.toml")).unwrap();
    assert!(
        written.contains("[providers.pass]\nkind = \"command\""),
        "{written}"
    );
    t.assert_clean();
}

/// On a terminal, init asks for what the flags do not give. The terminal is a real
/// pseudo-terminal (`script` from util-linux), the answers typed ahead into it: the line
/// discipline hands them over one line per read, whenever cme-exec asks.
#[test]
fn init_on_a_terminal_asks() {
    let t = Test::new();
    let store = t.out_dir().join("store");
    let answers = format!(
        "https://company.atlassian.net\nhttps://jira.example.org\nfile://{}\n",
        store.display()
    );
    let out = on_a_terminal(&t, &format!("{CME_EXEC} init"), &answers);
    for prompt in [
        "Confluence URLs (space-separated; empty for none): ",
        "Jira URLs (space-separated; empty for none): ",
        "Store: vault://MOUNT/PREFIX, aws-sm://PREFIX, file:///DIR or command [vault://secret/cme]: ",
    ] {
        assert!(out.contains(prompt), "the prompt {prompt:?}\n{out}");
    }
    let text = fs::read_to_string(user_config(&t)).expect("init wrote the user config");
    let doc = format!("file://{}/company.atlassian.net.json", store.display());
    assert!(
        text.contains(&format!("api_token = \"{doc}#api_token\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "pat = \"file://{}/jira.example.org.json#pat\"",
            store.display()
        )),
        "{text}"
    );
    t.run_args(["check", "--offline"]).assert_success();
    t.assert_clean();
}

/// Runs `command` in a pseudo-terminal with `input` typed ahead; returns what the terminal
/// showed.
fn on_a_terminal(t: &Test, command: &str, input: &str) -> String {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`script` (util-linux) is needed for this test: apt-get install bsdutils")
        });
    let mut child = Command::new(script)
        .args(["-qec", command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .env("XDG_CONFIG_HOME", t.config_home())
        .env("XDG_RUNTIME_DIR", t.runtime_dir())
        .env("TMPDIR", t.tmp_dir())
        .env("NO_COLOR", "1")
        .current_dir(t.work_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("type the answers");
    let out = child.wait_with_output().expect("wait for script");
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{command} on a terminal: {}\n{shown}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    shown
}

/// The printed commands work as printed: run against a real OpenBao (the `bao` of the test
/// tools, with the token typed on stdin as `api_token=-` asks) and in a shell for the file
/// store (the JSON pasted on stdin), after which `check` resolves every field.
#[test]
fn init_s_printed_commands_put_the_credentials_where_the_config_reads_them() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");

    // Vault: the printed `bao kv put` lines, with the e-mail address filled in.
    let bao = OpenBao::start();
    let t = t
        .env("VAULT_ADDR", bao.address())
        .env("VAULT_TOKEN", bao.root_token());
    let out = t.run_args([
        "init",
        "--confluence",
        "https://company.atlassian.net",
        "--jira",
        "https://jira.example.org",
        "--store",
        "vault://secret/cme",
    ]);
    out.assert_success();
    for (line, typed) in printed_commands(&out.stdout)
        .iter()
        .filter(|l| l.starts_with("bao "))
        .zip([&token, &pat])
    {
        let line = line.replace("you@example.com", &user);
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        bao.cli_ok(&args, Some(typed));
    }
    let check = t.run_args(["check"]);
    check.assert_success();
    check.assert_stdout_contains("all 3 resolved");

    // The file store: the printed shell lines, with the JSON pasted on stdin.
    let store = t.out_dir().join("store");
    let config = t.path().join("file-store.toml");
    let out = t.run_args(args![
        "--config",
        config,
        "init",
        "--confluence",
        "https://company.atlassian.net",
        "--store",
        format!("file://{}", store.display())
    ]);
    out.assert_success();
    let lines = printed_commands(&out.stdout);
    assert!(lines[0].starts_with("install -d -m 0700 "), "{lines:?}");
    let json = serde_json::json!({ "username": user, "api_token": token }).to_string();
    for line in lines.iter().filter(|l| !l.starts_with("cme-exec")) {
        let mut sh = Command::new("/bin/sh")
            .args(["-c", line])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run sh");
        use std::io::Write as _;
        // A line that reads no stdin (`install -d`) may exit before the write: a closed pipe
        // is fine there, its exit status is what counts.
        let _ = sh.stdin.take().unwrap().write_all(json.as_bytes());
        assert!(sh.wait().unwrap().success(), "{line}");
    }
    assert_eq!(mode_of(&store), 0o700);
    assert_eq!(mode_of(&store.join("company.atlassian.net.json")), 0o600);
    let check = t.run_args(args!["--config", config, "check"]);
    check.assert_success();
    check.assert_stdout_contains("all 2 resolved");
    t.assert_clean();
}
