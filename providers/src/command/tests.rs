use std::os::unix::fs::PermissionsExt as _;

use secrecy::ExposeSecret as _;

use super::*;
use crate::payload::select_string;
use crate::reference::{Key, Reference};
use crate::EnvReader;

fn parse(toml_text: &str) -> (Settings, Vec<crate::Problem>) {
    let table: toml::Table = toml_text.parse().unwrap();
    let mut problems = Vec::new();
    let mut r = TableReader::new(&table, "providers.x", &mut problems);
    let s = Settings::parse(&mut r);
    r.finish();
    (s, problems)
}

/// A provider running `script` (a shell script written to a temporary directory) with
/// `args` after it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    fn provider(&self, extra: &str, env: &[(&str, &str)]) -> Arc<dyn Provider> {
        self.provider_with_timeout(extra, env, Duration::from_secs(30))
    }

    fn provider_with_timeout(
        &self,
        table: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Arc<dyn Provider> {
        let (s, problems) = parse(table);
        assert!(problems.is_empty(), "{problems:?}");
        let mut vars: Vec<(OsString, OsString)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
        vars.extend(env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let ctx = Arc::new(
            Context::new(self.dir.path().to_owned(), EnvReader::from_vars(vars))
                .with_timeout(timeout),
        );
        s.build("x", &ctx).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn doc(raw: &str) -> Document {
    let r = Reference::parse(raw).unwrap();
    check_document(&r.document).unwrap();
    r.document
}

fn run(p: &Arc<dyn Provider>, raw: &str) -> Result<Payload, FetchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(p.fetch(&doc(raw)))
}

#[test]
fn placeholders_and_settings_are_checked() {
    let (s, p) = parse(r#"command = ["op", "read", "{ref}", "--x={path}}}", "{{lit}}"]"#);
    assert!(p.is_empty(), "{p:?}");
    let d = doc("op://Private/Atlassian%20Dev/api_token?attribute=otp");
    assert_eq!(
        s.args_for(&d),
        [
            "read",
            "op://Private/Atlassian Dev/api_token?attribute=otp",
            "--x=Private/Atlassian Dev/api_token}",
            "{lit}"
        ]
    );
    for (bad, words) in [
        (r#"command = ["pass", "show"]"#, "no {ref} or {path}"),
        (r#"command = ["{path}", "x"]"#, "program"),
        (r#"command = ["pass", "{nope}"]"#, "unknown placeholder"),
        (r#"command = []"#, "must start with the program"),
        (r#"command = "pass show {path}""#, "an array of strings"),
        (r#"command = ["a", 1]"#, "element 2"),
        (r#"x = 1"#, "missing"),
        (
            r#"command = ["a", "{path}"]
stdin = "tty""#,
            "expected \"null\" or \"terminal\"",
        ),
        (
            r#"command = ["a", "{path}"]
env = ["A B"]"#,
            "variable name",
        ),
    ] {
        let (_, problems) = parse(bad);
        assert!(
            problems.iter().any(|p| p.message.contains(words)),
            "{bad}: {problems:?}"
        );
    }
    let r = Reference::parse("pass://-rf").unwrap();
    assert!(check_document(&r.document).is_err());
}

#[test]
fn text_and_json_output() {
    let f = Fixture::new();
    f.script(
        "store",
        "case \"$1\" in\n  json) printf '{\"api_token\": \"t-%s\"}\\n' \"$1\" ;;\n  \
         *) printf 'v-%s\\n\\n' \"$1\" ;;\nesac\n",
    );
    let p = f.provider(r#"command = ["./store", "{path}"]"#, &[]);
    let v = select_string(&run(&p, "x:plain").unwrap(), None).unwrap();
    assert_eq!(
        v.expose_secret(),
        "v-plain\n",
        "one trailing newline is removed"
    );
    let payload = run(&p, "x://json").unwrap();
    let v = select_string(&payload, Some(&Key::Plain("api_token".into()))).unwrap();
    assert_eq!(v.expose_secret(), "t-json");
}

#[test]
fn the_environment_is_minimal_and_stdin_is_empty() {
    let f = Fixture::new();
    f.script(
        "store",
        "env | cut -d= -f1 | sort | tr '\\n' ' '; cat; echo \"[$1]\"\n",
    );
    let p = f.provider(
        r#"command = ["./store", "{path}"]
env = ["WANTED"]"#,
        &[("WANTED", "1"), ("SECRET_OF_CME_EXEC", "2"), ("HOME", "/h")],
    );
    let v = select_string(&run(&p, "x:a").unwrap(), None).unwrap();
    let out = v.expose_secret();
    assert!(out.contains("WANTED") && out.contains("HOME"), "{out}");
    assert!(!out.contains("SECRET_OF_CME_EXEC"), "{out}");
    assert!(out.ends_with("[a]"), "stdin is empty: {out}");
}

#[test]
fn failures_name_the_reference_and_the_status_never_stderr() {
    let f = Fixture::new();
    f.script(
        "store",
        "echo S3NT1NEL-stderr >&2\ncase \"$1\" in\n  exit3) exit 3 ;;\n  \
         term) kill -TERM $$ ;;\n  binary) printf '\\377\\376' ;;\nesac\n",
    );
    let p = f.provider(r#"command = ["./store", "{path}"]"#, &[]);
    let e = run(&p, "x:exit3").unwrap_err();
    assert!(
        e.message().contains("`x`")
            && e.message().contains("x:exit3")
            && e.message().contains("exited with status 3"),
        "{e}"
    );
    assert!(!format!("{e} {:?}", e.hint()).contains("S3NT1NEL"), "{e}");
    assert!(e.message().contains("bytes to stderr, not shown"), "{e}");
    let e = run(&p, "x:term").unwrap_err();
    assert!(e.message().contains("killed by signal SIGTERM"), "{e}");
    let e = run(&p, "x:binary").unwrap_err();
    assert!(e.message().contains("not UTF-8"), "{e}");
}

#[test]
fn a_hang_and_a_flood_are_stopped_with_their_group() {
    let f = Fixture::new();
    let pidfile = f.dir.path().join("grandchild");
    f.script(
        "store",
        &format!(
            "case \"$1\" in\n  hang) sleep 600 & echo $! > '{}'; wait ;;\n  \
             flood) yes S3NT1NEL ;;\nesac\n",
            pidfile.display()
        ),
    );
    let p = f.provider_with_timeout(
        r#"command = ["./store", "{path}"]
timeout = 1"#,
        &[],
        Duration::from_secs(30),
    );
    let e = run(&p, "x:hang").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.message().contains("did not finish within 1 s"), "{e}");
    // The grandchild (the `sleep`) went with its group.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered at once, but the process may still show until the kernel has torn it
    // down; a dead one is gone or a zombie (waiting for init to reap it).
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let mut gone = dead();
    for _ in 0..1000 {
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        gone = dead();
    }
    assert!(gone, "the command's grandchild {pid} still runs");
    let e = run(&p, "x:flood").unwrap_err();
    assert!(e.message().contains("more than 1024 KiB"), "{e}");
}

#[test]
fn the_deadline_stays_inside_the_resolvers() {
    let f = Fixture::new();
    f.script("store", "sleep 600\n");
    let p = f.provider_with_timeout(
        r#"command = ["./store", "{path}"]
timeout = 600"#,
        &[],
        Duration::from_secs(2),
    );
    let e = run(&p, "x:a").unwrap_err();
    assert!(e.message().contains("within 1.5 s"), "{e}");
}

#[test]
fn a_missing_or_unsafe_program_is_named() {
    let f = Fixture::new();
    let (s, _) = parse(r#"command = ["no-such-program-here", "{path}"]"#);
    let ctx = Arc::new(Context::new(
        f.dir.path().to_owned(),
        EnvReader::from_vars([("PATH".into(), "/usr/bin:/bin".into())]),
    ));
    let e = s.build("x", &ctx).err().unwrap();
    assert!(
        e.message().contains("no-such-program-here") && e.message().contains("in PATH"),
        "{e}"
    );
    let open = f.script("open", "exit 0\n");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (s, _) = parse(r#"command = ["./open", "{path}"]"#);
    let e = s.build("x", &ctx).err().unwrap();
    assert!(e.message().contains("writable by other users"), "{e}");
}
