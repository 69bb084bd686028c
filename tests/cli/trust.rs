//! A `./cme-exec.toml` found in the working directory is used only once
//! trusted (`cme-exec trust`), and ambient credentials (the Vault token of VAULT_TOKEN,
//! BAO_TOKEN, ~/.vault-token; the AWS default chain) go only to the address the environment
//! names, unless the config ties them explicitly. The attack is a listener on a loopback port
//! that must receive nothing; the legitimate uses run against a real OpenBao and moto.

use serde_json::json;

use crate::support::moto::Moto;
use crate::support::openbao::{Action, OpenBao, StandIn};
use crate::support::*;
use crate::*;

/// A listener that answers like a Vault KV v2 read and records every request.
fn listener() -> StandIn {
    StandIn::start(|_, _| Action::json(200, json!({ "data": { "data": { "pat": "x" } } })))
}

fn vault_config(address: &str, extra: &str) -> String {
    format!(
        "[providers.vault]\nkind = \"vault\"\naddress = {}\nkv_version = 2\n{extra}\n\n[jira.\"https://jira.example.com\"]\npat = \"vault://secret/app#pat\"\n",
        q(address)
    )
}

fn aws_config(endpoint: &str, extra: &str) -> String {
    format!(
        "[providers.aws]\nkind = \"aws-sm\"\nregion = \"us-east-1\"\nendpoint_url = {}\n{extra}\n\n[jira.\"https://jira.example.com\"]\npat = \"aws://app#pat\"\n",
        q(endpoint)
    )
}

/// Every command that reads the config, with a child that would only prove it ran.
fn every_command(t: &Test) -> Vec<Vec<std::ffi::OsString>> {
    let out = t.out_dir().join("rendered.json");
    vec![
        vec!["check".into()],
        vec!["explain".into()],
        vec!["render".into(), "--output".into(), out.into()],
        vec!["--".into(), "/bin/true".into()],
    ]
}

/// `check` reports on stdout, the other commands on stderr.
#[track_caller]
fn assert_says(out: &Output, needle: &str) {
    assert!(
        out.stdout.contains(needle) || out.stderr.contains(needle),
        "expected the output to contain {needle:?}\n{}",
        out.describe()
    );
}

#[track_caller]
fn assert_no_request(l: &StandIn, what: &str) {
    let seen = l.requests();
    let tokens = seen
        .iter()
        .filter(|r| r.header("x-vault-token").is_some() || r.header("authorization").is_some())
        .count();
    assert!(
        seen.is_empty(),
        "{what}: the listener received {} request(s), {tokens} with a credential header:\n{}",
        seen.len(),
        l.summary()
    );
}

/// The attack: a repository's cme-exec.toml points the vault provider (and an aws-sm provider)
/// at a listener. Without a trust record no command uses it: exit 125, the path and the way to
/// trust it in the message, and the listener receives nothing.
#[test]
fn an_untrusted_working_directory_config_is_refused_before_any_request() {
    for aws in [false, true] {
        let mut t = Test::new();
        let token = t.sentinel("vault-token");
        let key = t.sentinel("aws-secret-key");
        let l = listener();
        let config = if aws {
            aws_config(&l.url(), "")
        } else {
            vault_config(&l.url(), "")
        };
        t.write_file("work/cme-exec.toml", &config);
        let t = t
            .env("VAULT_TOKEN", &token)
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", &key)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for args in every_command(&t) {
            let out = t.run_args(&args);
            out.assert_code(125);
            out.assert_stderr_contains("cme-exec.toml")
                .assert_stderr_contains("not trusted")
                .assert_stderr_contains("cme-exec trust")
                .assert_stderr_contains("--config");
            assert_no_request(&l, &format!("{args:?} (aws: {aws})"));
        }
        assert!(!t.out_dir().join("rendered.json").exists());
        t.assert_clean();
    }
}

/// Even a trusted config does not get the ambient token (or AWS keys) for an address that is
/// not the environment's, unless it ties them explicitly; the refusal names both addresses and
/// the setting.
#[test]
fn a_trusted_config_with_another_address_gets_no_ambient_credentials() {
    for (aws, env_addr) in [
        (false, None),
        (false, Some("http://127.0.0.1:9")),
        (true, None),
        (true, Some("http://127.0.0.1:9")),
    ] {
        let mut t = Test::new();
        let token = t.sentinel("vault-token");
        let key = t.sentinel("aws-secret-key");
        let l = listener();
        let config = if aws {
            aws_config(&l.url(), "")
        } else {
            vault_config(&l.url(), "")
        };
        t.write_file("work/cme-exec.toml", &config);
        let mut t = t
            .env("VAULT_TOKEN", &token)
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", &key)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(a) = env_addr {
            t = t.env(
                if aws {
                    "AWS_ENDPOINT_URL"
                } else {
                    "VAULT_ADDR"
                },
                a,
            );
        }
        t.run_args(["trust", "--yes"]).assert_success();
        for args in every_command(&t) {
            let out = t.run_args(&args);
            let expected = if args[0] == "check" || args[0] == "explain" {
                1
            } else {
                125
            };
            out.assert_code(expected);
            assert_says(&out, &l.url());
            if aws {
                assert_says(&out, "use_ambient_credentials = true");
            } else {
                assert_says(&out, "method = \"token\"");
            }
            if let Some(a) = env_addr {
                assert_says(&out, a);
            }
            assert_no_request(&l, &format!("{args:?} (aws: {aws}, env: {env_addr:?})"));
        }
        t.assert_clean();
    }
}

/// The legitimate uses against a real OpenBao: trusting shows what the file contacts and makes
/// it work; a changed file is refused again; `--list`; `--revoke`; `--config` needs no trust;
/// the XDG config needs none; an explicit `auth = { method = "token" }` ties a config's address
/// to the ambient token.
#[test]
fn trust_lifecycle_against_openbao() {
    let mut t = Test::new();
    let bao = OpenBao::start();
    let token = t.sentinel("vault-token");
    bao.policy(
        "reader",
        "path \"secret/data/*\" { capabilities = [\"read\"] }",
    );
    bao.token_with_id(&token, &["reader"]);
    let pat = t.sentinel("pat");
    bao.kv2_put("secret", "app", json!({ "pat": pat }));
    let config = vault_config(&bao.address(), "");
    let path = t.write_file("work/cme-exec.toml", &config);
    let t = t
        .env("VAULT_TOKEN", &token)
        .env("VAULT_ADDR", bao.address());

    t.run_args(["check"]).assert_code(125);
    let out = t.run_args(["trust", "--yes"]);
    out.assert_success()
        .assert_stdout_contains("provider vault: kind vault")
        .assert_stdout_contains(&bao.address())
        .assert_stdout_contains("vault://secret/app#pat")
        .assert_stdout_contains("trusted");
    t.run_args(["check"]).assert_success();
    let records = t.path().join(".local/state/cme-exec/trust");
    assert_eq!(mode_of(&records) & 0o777, 0o700);
    for f in std::fs::read_dir(&records).unwrap() {
        assert_eq!(mode_of(&f.unwrap().path()) & 0o777, 0o600);
    }

    // A changed file is refused again, until trusted again.
    std::fs::write(&path, format!("{config}\n# changed\n")).unwrap();
    let out = t.run_args(["check"]);
    out.assert_code(125).assert_stderr_contains("changed");
    t.run_args(["trust", "--yes", "cme-exec.toml"])
        .assert_success();
    t.run_args(["check"]).assert_success();
    t.run_args(["trust", "--list"])
        .assert_success()
        .assert_stdout_contains("work/cme-exec.toml");
    t.run_args(["trust", "--revoke"])
        .assert_success()
        .assert_stdout_contains("no longer trusted");
    t.run_args(["check"]).assert_code(125);

    // Chosen explicitly: no trust needed.
    t.run_args(["--config", "./cme-exec.toml", "check"])
        .assert_success();
    let t = t.env("CME_EXEC_CONFIG", &path);
    t.run_args(["check"]).assert_success();
    let t = t.env_remove("CME_EXEC_CONFIG");

    // The user's own XDG config: no trust needed.
    std::fs::remove_file(&path).unwrap();
    t.write_file("config/cme-exec/config.toml", &config);
    t.run_args(["check"]).assert_success();

    // An explicit tie: the config's address is not VAULT_ADDR, but `auth = { method = "token" }`
    // says the ambient token is meant for it.
    let tied = vault_config(&bao.address(), "auth = { method = \"token\" }");
    t.write_file("config/cme-exec/config.toml", &tied);
    let t = t.env("VAULT_ADDR", "http://127.0.0.1:9");
    t.run_args(["check"]).assert_success();
    // Without it, refused.
    t.write_file("config/cme-exec/config.toml", &config);
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_says(&out, "method = \"token\"");
    t.assert_clean();
}

/// AWS: a config's endpoint_url that is the environment's needs no tie; another one works with
/// `use_ambient_credentials = true` (against moto).
#[test]
fn aws_endpoint_tie_against_moto() {
    let moto = Moto::start();
    let mut t = Test::new();
    let key = t.sentinel("aws-secret-key");
    let pat = t.sentinel("pat");
    moto.create_secret("app", &json!({ "pat": pat }).to_string());
    for (k, v) in Moto::aws_env("http://127.0.0.1:9", &key) {
        t = t.env(k, v);
    }
    let t = t.config_toml(&aws_config(&moto.endpoint(), ""));
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert_says(&out, "use_ambient_credentials");
    let t = t.config_toml(&aws_config(
        &moto.endpoint(),
        "use_ambient_credentials = true",
    ));
    t.run_args(["check"]).assert_success();
    let t = t
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .config_toml(&aws_config(&moto.endpoint(), ""));
    t.run_args(["check"]).assert_success();
    t.assert_clean();
}

/// A team repository with a trusted config that runs its own helper script and reads its own
/// base config (both by relative path), and a hostile sibling clone whose `cme-exec.toml` is a
/// relative link to the team's file, beside its own `get-secret.sh` and `cme-base.json`.
struct Siblings {
    team: std::path::PathBuf,
    evil: std::path::PathBuf,
    /// Created by the hostile script if it ever runs.
    pwned: std::path::PathBuf,
    token: String,
}

fn siblings(t: &mut Test) -> Siblings {
    use std::os::unix::fs::PermissionsExt as _;
    let token = t.sentinel("team-token");
    let team = t.path().join("work/teamrepo");
    let evil = t.path().join("work/evilrepo");
    let pwned = t.path().join("out/PWNED");
    for d in [&team, &evil] {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = "[providers.team]\nkind = \"command\"\ncommand = [\"./get-secret.sh\", \"{path}\"]\n\n\
                  [cme]\nbase_config = \"cme-base.json\"\n\n\
                  [confluence.\"https://company.atlassian.net\"]\nusername = \"me@example.com\"\napi_token = \"team://atlassian\"\n";
    std::fs::write(team.join("cme-exec.toml"), config).unwrap();
    let script = |dir: &std::path::Path, body: &str| {
        let p = dir.join("get-secret.sh");
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(&team, &format!("#!/bin/sh\nprintf '%s' {}\n", q(&token)));
    script(
        &evil,
        &format!(
            "#!/bin/sh\necho ran > {}\nprintf '%s' stolen-by-evilrepo\n",
            pwned.display()
        ),
    );
    std::fs::write(team.join("cme-base.json"), "{}\n").unwrap();
    std::fs::write(
        evil.join("cme-base.json"),
        "{\"connection_config\": {\"verify_ssl\": false}}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../teamrepo/cme-exec.toml", evil.join("cme-exec.toml")).unwrap();
    Siblings {
        team,
        evil,
        pwned,
        token,
    }
}

/// A hostile clone cannot borrow a trusted config's trust through a symlink: the linked config's
/// relative paths resolve against the directory that really holds it (the team's), so `check`,
/// `explain` and a run use the team's helper and base config, never the ones beside the link.
/// Before, `check` in the hostile clone ran its own script as the user and `explain` showed its
/// base config (`verify_ssl: false`).
#[test]
fn a_symlinked_config_never_runs_the_helpers_beside_the_link() {
    let mut t = Test::new();
    let s = siblings(&mut t);
    let t = t.allow_secret_in(s.team.join("get-secret.sh"));
    t.run_args_in(&s.team, ["trust", "--yes"]).assert_success();
    t.run_args_in(&s.team, ["check"]).assert_success();

    t.run_args_in(&s.evil, ["check"])
        .assert_success()
        .assert_stdout_contains("all 2 resolved");
    let out = t.run_args_in(&s.evil, ["explain"]);
    out.assert_success().assert_stdout_contains(&format!(
        "# base config: {}",
        std::fs::canonicalize(&s.team)
            .unwrap()
            .join("cme-base.json")
            .display()
    ));
    assert!(
        !out.stdout.contains("verify_ssl"),
        "explain shows the team's base config, not the hostile one:\n{}",
        out.describe()
    );
    let child = t.script("dump", &crate::support::scripts::dump_env(&t.out_dir()));
    t.run_args_in(&s.evil, [std::ffi::OsStr::new("--"), child.as_os_str()])
        .assert_success();
    let handed = t.child_env().config_json();
    assert_eq!(
        handed["auth"]["confluence"]["https://company.atlassian.net"]["api_token"],
        s.token.as_str(),
        "the child got the team helper's token"
    );
    assert!(handed.get("connection_config").is_none(), "{handed}");
    assert!(
        !s.pwned.exists(),
        "the hostile repository's get-secret.sh ran"
    );
    t.assert_clean();
}

/// The trust record covers the helper script and base config the config names by relative path:
/// a `git pull` that changes either asks again, naming the file; trusting again accepts it.
/// cme-exec's own write-back into the pinned base config (a fetched cloud_id) does not.
#[test]
fn a_changed_helper_or_base_config_must_be_trusted_again() {
    let mut t = Test::new();
    let s = siblings(&mut t);
    let team = |args: &[&std::ffi::OsStr]| t.run_args_in(&s.team, args);
    let out = team(&["trust".as_ref(), "--yes".as_ref()]);
    out.assert_success()
        .assert_stdout_contains("get-secret.sh  sha256:")
        .assert_stdout_contains("base config ");
    team(&["check".as_ref()]).assert_success();

    std::fs::write(
        s.team.join("get-secret.sh"),
        format!("#!/bin/sh\necho ran > {}\nprintf x\n", s.pwned.display()),
    )
    .unwrap();
    for args in [vec!["check"], vec!["explain"], vec!["--", "/bin/true"]] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let out = team(&args);
        out.assert_code(125)
            .assert_stderr_contains("not trusted")
            .assert_stderr_contains("get-secret.sh changed since it was trusted");
    }
    assert!(
        !s.pwned.exists(),
        "the changed helper ran before it was trusted"
    );
    team(&["trust".as_ref(), "--yes".as_ref()]).assert_success();
    team(&["check".as_ref()]).assert_success();
    assert!(s.pwned.exists(), "once trusted again, the new helper runs");

    std::fs::write(
        s.team.join("cme-base.json"),
        "{\"connection_config\": {\"verify_ssl\": false}}\n",
    )
    .unwrap();
    team(&["check".as_ref()])
        .assert_code(125)
        .assert_stderr_contains("cme-base.json changed since it was trusted");
    team(&["trust".as_ref(), "--yes".as_ref()]).assert_success();

    // The run's own write-back changes the base config; the record follows it.
    let child = t.script(
        "set-cloud-id",
        &crate::support::scripts::set_cloud_id(
            &Venv::get().python(),
            "https://company.atlassian.net",
            "cloud-1234",
        ),
    );
    team(&["--".as_ref(), child.as_os_str()]).assert_success();
    let base = std::fs::read_to_string(s.team.join("cme-base.json")).unwrap();
    assert!(base.contains("cloud-1234"), "written back: {base}");
    team(&["check".as_ref()]).assert_success();
    t.assert_clean();
}

/// `trust` shows everything before it records: each program with its whole argument list, where
/// a Vault credential is read from, certificate files; `--show` records nothing; without a
/// terminal it records only with `--yes`.
#[test]
fn trust_shows_programs_arguments_credential_sources_and_certificates() {
    let t = Test::new();
    let config = "[providers.sh]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"echo PWNED > /tmp/x; echo tok\", \"{path}\"]\n\n\
                  [providers.v]\nkind = \"vault\"\naddress = \"https://vault.example.com:8200\"\nca_cert = \"certs/ca.pem\"\nclient_cert = \"/etc/cme/client.pem\"\nclient_key = \"/etc/cme/client.key\"\nauth = { method = \"token\", token_env = \"GITHUB_TOKEN\" }\n\n\
                  [confluence.\"https://company.atlassian.net\"]\nusername = \"sh://user\"\napi_token = \"v://secret/app#token\"\n";
    t.write_file("work/cme-exec.toml", config);
    let out = t.run_args(["trust", "--show"]);
    out.assert_success()
        .assert_stdout_contains(
            r#"command ["/bin/sh", "-c", "echo PWNED > /tmp/x; echo tok", "{path}"]"#,
        )
        .assert_stdout_contains("token from the variable GITHUB_TOKEN")
        .assert_stdout_contains("CA certificate certs/ca.pem")
        .assert_stdout_contains("client certificate /etc/cme/client.pem")
        .assert_stdout_contains("client key /etc/cme/client.key")
        .assert_stdout_contains("replace the system's trusted roots")
        .assert_stdout_contains("nothing recorded");
    t.run_args(["check"]).assert_code(125);

    let out = t.run_args(["trust"]);
    out.assert_code(1)
        .assert_stdout_contains("echo PWNED")
        .assert_stderr_contains("not trusted; nothing recorded")
        .assert_stderr_contains("cme-exec trust --yes");
    t.run_args(["check"])
        .assert_code(125)
        .assert_stderr_contains("cme-exec trust --show");
    t.run_args(["trust", "--yes"]).assert_success();
    // Trusted now: check gets past trust (and fails on the unreachable Vault: exit 1, not 125).
    t.run_args(["check"]).assert_code(1);
    t.assert_clean();
}

/// On a terminal, `trust` asks: "n" records nothing, "y" records.
#[test]
fn trust_asks_on_a_terminal() {
    let t = Test::new();
    t.write_file(
        "work/cme-exec.toml",
        "[confluence.\"https://company.atlassian.net\"]\npat = \"env://PAT\"\n",
    );
    for (answer, code, recorded) in [("n", 1, false), ("y", 0, true)] {
        let mut term = t.launch(["trust"]).on_terminal();
        term.expect("Trust this file? [y/N]");
        term.type_text(&format!("{answer}\n"));
        let status = term.wait();
        assert_eq!(status.code(), Some(code), "{answer}: {}", term.screen());
        let listed = t.run_args(["trust", "--list"]);
        assert_eq!(
            listed.stdout.contains("cme-exec.toml"),
            recorded,
            "{answer}: {}",
            listed.describe()
        );
    }
}

/// A relative `$CME_EXEC_CONFIG` would pick whatever file of that name the working directory
/// holds, without the trust check: it is refused, with the absolute form as the fix.
#[test]
fn a_relative_cme_exec_config_is_refused() {
    let t = Test::new();
    let marker = t.out_dir().join("ran");
    let helper = t.script(
        "helper",
        &format!("#!/bin/sh\necho ran > {}\nprintf tok\n", marker.display()),
    );
    t.write_file(
        "work/cme-exec.toml",
        format!(
            "[providers.h]\nkind = \"command\"\ncommand = [{}, \"{{path}}\"]\n\n[jira.\"https://jira.example.com\"]\npat = \"h://x\"\n",
            q(helper.display().to_string())
        ),
    );
    let t = t.env("CME_EXEC_CONFIG", "cme-exec.toml");
    for args in [vec!["check"], vec!["explain"], vec!["--", "/bin/true"]] {
        t.run_args(&args)
            .assert_code(125)
            .assert_stderr_contains(
                "CME_EXEC_CONFIG is the relative path cme-exec.toml; it must be absolute",
            )
            .assert_stderr_contains("export CME_EXEC_CONFIG=\"$PWD/cme-exec.toml\"");
    }
    assert!(!marker.exists(), "the helper ran");
    // Empty is unset (an image that sets it can be told to use the environment alone): the
    // working directory's untrusted file is then refused as usual.
    let t = t.env("CME_EXEC_CONFIG", "");
    t.run_args(["check"])
        .assert_code(125)
        .assert_stderr_contains("not trusted");
    // Absolute: the user's explicit choice, no trust needed.
    let absolute = t.work_dir().join("cme-exec.toml");
    let t = t.env("CME_EXEC_CONFIG", absolute);
    t.run_args(["check"]).assert_success();
}

/// A config directory cme-exec cannot search is a permission error naming it, not "no
/// configuration found"; a `./cme-exec.toml` that links to nothing says so.
#[test]
fn an_unreadable_config_directory_is_a_permission_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Test::new();
    let dir = t.config_home().join("cme-exec");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[jira.\"https://jira.example.com\"]\npat = \"env://PAT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(t.config_home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(t.work_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // As root every directory is searchable: run as another user, as CI runs as root.
    let launch = t.launch(["check"]);
    let out = if crate::launch::is_root() {
        launch.wrapper([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
    } else {
        launch
    }
    .run();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A configuration error: `check` exits 1 (a run would exit 125).
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "cannot look for the config file {}",
            dir.join("config.toml").display()
        )) && out.stderr.contains("Permission denied")
            && out.stderr.contains(&format!("ls -ld {}", dir.display())),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("no configuration found"),
        "{}",
        out.stderr
    );

    std::os::unix::fs::symlink("nowhere.toml", t.work_dir().join("cme-exec.toml")).unwrap();
    t.run_args(["--", "/bin/true"])
        .assert_code(125)
        .assert_stderr_contains("is a symbolic link to a file that does not exist");
}
