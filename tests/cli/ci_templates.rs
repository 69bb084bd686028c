//! The CI integrations as docs/ci.md documents them, run for real: the GitLab job of its "GitLab
//! CI with JWT auth" section, which includes the template (ci/gitlab/cme-exec.yml) by its remote
//! URL, run by gitlab-ci-local with the shell executor; and the workflow of its "GitHub Actions with
//! JWT auth" section, whose steps (the action's among them) run the way the runner runs them
//! (`tests/support/actions.rs`). Both install cme-exec from a local release signed by a test key
//! (`tests/support/release.rs`), log in to the test's OpenBao with a JWT, and run the real cme
//! against a Confluence stand-in. The blocks come from the doc itself, so an edit that breaks a
//! documented path fails here. Also: what must move together (the template's pinned installer,
//! actions pinned by commit, the release key in its three places), and the README's
//! environment-only quick start (the form a CI job without a config file uses).
//!
//! What the tests change in what the doc says, every change in [`Substitutions`] (text) or named
//! beside it (environment):
//! - the raw URL the template is included from, and the releases page (the template's
//!   `CME_EXEC_BASE_URL` variable, the action's `base-url` input): the local release server;
//! - the Vault address: the test's OpenBao on loopback; GitLab's and GitHub's OIDC discovery
//!   (`oidc_discovery_url=...`): `jwt_validation_pubkeys` with the test's signing key, the JWT
//!   GitLab would put into the `id_tokens` variable passed as that variable (gitlab-ci-local issues
//!   none), GitHub's ID token endpoint a stand-in that hands out the same kind of JWT;
//! - `https://company.atlassian.net`: the Confluence stand-in (`http://127.0.0.1:PORT`);
//! - the job's `image:` line is dropped (the shell executor runs jobs without an image): this
//!   machine's shell with the venv's Python first on `PATH` stands for the image, as it stands for
//!   `actions/setup-python` (a stand-in step that puts it on `PATH`); pip finds cme already
//!   installed there and may not reach an index (`PIP_NO_INDEX`);
//! - `actions/checkout`: the workspace already holds the files;
//! - the release key: the test's key, named by `CME_EXEC_ALLOWED_SIGNERS` (`install.sh`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::actions::{this_action, yaml_to_json, Job, Uses};
use crate::support::openbao::{Action, OpenBao, StandIn};
use crate::support::release::{self, sha256_of, Release, SigningKey, Site, VERSION};
use crate::support::*;
use crate::*;

/// docs/ci.md.
fn ci_doc() -> String {
    fs::read_to_string(repo_root().join("docs/ci.md")).expect("docs/ci.md")
}

/// The fenced blocks of the section `## HEADING` of a Markdown text: (info string, body).
#[track_caller]
fn section_blocks(doc: &str, heading: &str) -> Vec<(String, String)> {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/ci.md has no section \"## {heading}\""));
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 4)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut body = String::new();
        for inner in lines.by_ref() {
            if inner.trim_start() == "```" {
                break;
            }
            body.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
            body.push('\n');
        }
        blocks.push((info.trim().to_owned(), body));
    }
    blocks
}

/// The one block of `lang` in a section whose text contains `needle`.
#[track_caller]
fn block(blocks: &[(String, String)], lang: &str, needle: &str) -> String {
    let found: Vec<&String> = blocks
        .iter()
        .filter(|(info, body)| info == lang && body.contains(needle))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one ```{lang} block with {needle:?} in the section, found {}",
        found.len()
    );
    found[0].clone()
}

/// Every text substitution the tests make in what docs/ci.md says.
struct Substitutions {
    site: String,
    bao: String,
    confluence: String,
    jwt_public_key: PathBuf,
}

impl Substitutions {
    #[track_caller]
    fn apply(&self, text: &str) -> String {
        let mut text = text
            .replace(
                "https://raw.githubusercontent.com/",
                &format!("{}/raw/", self.site),
            )
            .replace(
                "address = \"https://vault.example.com\"",
                &format!("address = \"{}\"", self.bao),
            )
            .replace("https://company.atlassian.net", &self.confluence);
        // OIDC discovery would fetch the issuer's keys; the test's issuer key is given directly.
        let lines: Vec<String> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("image: "))
            .map(
                |line| match line.trim_start().strip_prefix("oidc_discovery_url=") {
                    Some(_) => format!(
                        "    jwt_validation_pubkeys=@{} \\",
                        self.jwt_public_key.display()
                    ),
                    None => line.to_owned(),
                },
            )
            .collect();
        text = lines.join("\n") + "\n";
        text
    }
}

/// The `vault` commands of a doc block, run with the bao CLI against `bao`.
#[track_caller]
fn run_vault_commands(bao: &OpenBao, script: &str) {
    let out = Command::new("bash")
        .arg("-ec")
        .arg(format!("vault() {{ \"$BAO\" \"$@\"; }}\n{script}"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", bao.dir())
        .env("BAO", Venv::get().bao())
        .env("BAO_ADDR", bao.address())
        .env("BAO_TOKEN", bao.root_token())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the doc's vault commands failed:\n{script}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        redact(&String::from_utf8_lossy(&out.stderr))
    );
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What both CI tests share: the release, OpenBao with the Atlassian secret, the stand-in.
/// The release and what is installed from it lie outside the [`Test`]'s directory, whose every
/// file is searched for the sentinels at the end: megabytes of binary known to hold none.
struct World {
    outside: tempfile::TempDir,
    key: SigningKey,
    site: Site,
    bao: OpenBao,
    confluence: ConfluenceStandIn,
    subst: Substitutions,
    user: String,
    token: String,
}

impl World {
    #[track_caller]
    fn new(t: &mut Test) -> World {
        let outside = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(&outside.path().join("keys"), "release");
        let release = Release::build(&outside.path().join("site"), &key);
        let site = Site::serve(&release.root);
        let bao = OpenBao::start();
        let confluence = ConfluenceStandIn::start();
        let user = t.sentinel("ci-user");
        let token = t.sentinel("ci-token");
        bao.ok(
            "POST",
            "secret/data/cme/atlassian",
            json!({ "data": { "username": user, "api_token": token } }),
        );
        let public_key = bao.signing_key("ci-issuer");
        let jwt_public_key = outside.path().join("keys/issuer.pem");
        fs::write(&jwt_public_key, public_key).unwrap();
        let subst = Substitutions {
            site: site.url(),
            bao: bao.address(),
            confluence: confluence.base_url(),
            jwt_public_key,
        };
        World {
            outside,
            key,
            site,
            bao,
            confluence,
            subst,
            user,
            token,
        }
    }

    /// The environment of a CI runner on this machine: the venv's Python first, pip without an
    /// index, the test's directories, the test's release key.
    fn runner_env(&self, t: &Test) -> Vec<(String, String)> {
        let venv_bin = Venv::get().bin().display().to_string();
        [
            ("PATH", format!("{venv_bin}:/usr/local/bin:/usr/bin:/bin")),
            ("HOME", t.path().display().to_string()),
            ("TMPDIR", t.tmp_dir().display().to_string()),
            ("XDG_RUNTIME_DIR", t.runtime_dir().display().to_string()),
            ("XDG_CONFIG_HOME", t.config_home().display().to_string()),
            ("PIP_NO_INDEX", "1".to_owned()),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1".to_owned()),
            (
                "CME_EXEC_ALLOWED_SIGNERS",
                self.key.allowed_signers.display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// cme's requests reached the stand-in with the Vault secret as Basic auth, every one.
    #[track_caller]
    fn assert_cme_logged_in(&self, log: &str) {
        let expected = basic_header(&self.user, &self.token);
        let headers = self.confluence.authorization_headers();
        assert!(
            !headers.is_empty() && headers.iter().all(|h| *h == expected),
            "cme did not send the Vault secret to the stand-in:\n{}\n{}",
            redact(&self.confluence.summary()),
            redact(log)
        );
        assert!(
            self.confluence
                .requests()
                .iter()
                .any(|r| r.path_only().ends_with("/rest/api/space")),
            "cme never made its first request:\n{}",
            redact(&self.confluence.summary())
        );
    }

    /// The installer downloaded the binary, its checksum and its signature from the release.
    #[track_caller]
    fn assert_installed_from_release(&self) {
        let targets = self.site.targets();
        let asset = format!("/releases/download/v{VERSION}/cme-exec-{}", release::TARGET);
        for suffix in ["", ".sha256", ".sha256.sig"] {
            assert!(
                targets.contains(&format!("{asset}{suffix}")),
                "no request for {asset}{suffix}:\n{}",
                self.site.summary()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GitLab: the documented job with the template, under gitlab-ci-local
// ---------------------------------------------------------------------------------------------

/// gitlab-ci-local from `.tools/npm` (scripts/bootstrap-tools npm).
#[track_caller]
fn gitlab_ci_local() -> PathBuf {
    let path = repo_root().join(".tools/npm/node_modules/.bin/gitlab-ci-local");
    assert!(
        path.exists(),
        "gitlab-ci-local is not installed at {}.\nTo fix: scripts/bootstrap-tools npm (scripts/test does)",
        path.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed (gitlab-ci-local runs on it).\nTo fix: apt-get install nodejs npm (Node.js 18 or newer)"
    );
    let rsync = Command::new("rsync").arg("--version").output();
    assert!(
        rsync.is_ok_and(|o| o.status.success()),
        "rsync is not installed (gitlab-ci-local needs it).\nTo fix: scripts/bootstrap-tools apt (apt-get install rsync)"
    );
    path
}

/// A git repository (gitlab-ci-local reads the branch and commit from it) on branch `main`
/// holding `files`, committed.
#[track_caller]
fn git_project(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    let git = |args: &[&str]| {
        release::run_ok(
            Command::new("git")
                .args(["-c", "user.name=CI", "-c", "user.email=ci@example.com"])
                .args(args)
                .current_dir(dir)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", dir)
                .env("GIT_CONFIG_NOSYSTEM", "1"),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "export"]);
}

/// `gitlab-ci-local --shell-executor-no-image JOB` in `project` with `variables`.
fn run_gitlab_job(
    t: &Test,
    world: &World,
    project: &Path,
    job: &str,
    variables: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(gitlab_ci_local());
    command
        .arg("--shell-executor-no-image")
        .env_clear()
        .envs(world.runner_env(t))
        .current_dir(project)
        .stdin(Stdio::null());
    for (name, value) in variables {
        command.arg("--variable").arg(format!("{name}={value}"));
    }
    command.arg(job);
    let out = command.output().expect("run gitlab-ci-local");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn gitlab_template_runs_the_documented_job_with_gitlab_ci_local() {
    let mut t = Test::new();
    let world = World::new(&mut t);
    let blocks = section_blocks(&ci_doc(), "GitLab CI with JWT auth: Vault or OpenBao");
    run_vault_commands(
        &world.bao,
        &world.subst.apply(&block(&blocks, "sh", "auth/gitlab/role")),
    );
    let config = world
        .subst
        .apply(&block(&blocks, "toml", "[providers.vault]"));
    let pipeline = world
        .subst
        .apply(&block(&blocks, "yaml", "extends: .cme-exec"));
    let id_token_aud = yaml_to_json(&pipeline)["export"]["id_tokens"]["VAULT_ID_TOKEN"]["aud"]
        .as_str()
        .expect("the job's id_tokens.VAULT_ID_TOKEN.aud")
        .to_owned();
    // The ID token GitLab issues a job of project docs/export on branch main.
    let jwt = world.bao.sign_jwt(
        "ci-issuer",
        &json!({
            "iss": "https://gitlab.example.com",
            "sub": "project_path:docs/export:ref_type:branch:ref:main",
            "aud": id_token_aud,
            "project_path": "docs/export",
            "ref": "main",
            "ref_type": "branch",
            "user_email": "ci@example.com",
            "iat": now() - 10,
            "nbf": now() - 10,
            "exp": now() + 600,
        }),
    );
    let project = t.work_dir();
    git_project(
        &project,
        &[(".gitlab-ci.yml", &pipeline), ("cme-exec.toml", &config)],
    );
    let releases = format!("{}/releases", world.site.url());
    let mark = world.bao.audit_mark();
    let out = run_gitlab_job(
        &t,
        &world,
        &project,
        "export",
        &[("CME_EXEC_BASE_URL", &releases), ("VAULT_ID_TOKEN", &jwt)],
    );
    let log = format!("{}\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "the job failed:\n{}", redact(&log));
    t.assert_no_leaks_in("gitlab-ci-local's output", &log);
    assert!(
        log.contains("signature verified: Good \"cme-exec-release\" signature"),
        "install.sh did not say it checked the signature:\n{}",
        redact(&log)
    );
    world.assert_installed_from_release();
    assert!(
        world.site.targets().contains(&format!(
            "/raw/cme-exec/cme-exec/v{VERSION}/ci/gitlab/cme-exec.yml"
        )),
        "the template was not included from its remote URL:\n{}",
        world.site.summary()
    );
    assert!(
        world
            .bao
            .requests_since(mark)
            .iter()
            .any(|r| r.path == "auth/gitlab/login"),
        "no JWT login at auth/gitlab"
    );
    world.assert_cme_logged_in(&log);
    assert_no_leak_in("gitlab-ci-local's output", &log, &jwt);
    // The installed release (known bytes) need not be searched for the sentinels.
    fs::remove_dir_all(project.join(".cme-exec")).unwrap();

    // An installer that is not the one the template pins never runs: the template's
    // before_script, in a shell as the job's (gitlab-ci-local ran it above as it is).
    let served = world
        .outside
        .path()
        .join(format!("site/releases/download/v{VERSION}/install.sh"));
    let mut text = fs::read_to_string(&served).unwrap();
    text.insert_str(
        text.find('\n').unwrap() + 1,
        "touch \"$HOME/installer-ran\"\n",
    );
    fs::write(&served, text).unwrap();
    let template = fs::read_to_string(repo_root().join("ci/gitlab/cme-exec.yml")).unwrap();
    let before_script: Vec<String> = yaml_to_json(&template)[".cme-exec"]["before_script"]
        .as_array()
        .expect("the template's before_script")
        .iter()
        .map(|line| line.as_str().unwrap().to_owned())
        .collect();
    let fresh = t.path().join("fresh-project");
    fs::create_dir_all(&fresh).unwrap();
    let out = Command::new("sh")
        .arg("-ec")
        .arg(before_script.join("\n"))
        .env_clear()
        .envs(world.runner_env(&t))
        .env("CI_PROJECT_DIR", &fresh)
        .env("CME_EXEC_VERSION", VERSION)
        .env("CME_EXEC_BASE_URL", &releases)
        .current_dir(&fresh)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a changed installer was run:\n{log}");
    assert!(
        log.contains("is not the installer this template pins"),
        "{log}"
    );
    assert!(
        !t.path().join("installer-ran").exists(),
        "the changed installer ran"
    );
    assert!(!fresh.join(".cme-exec/bin/cme-exec").exists());
}

// ---------------------------------------------------------------------------------------------
// GitHub: the documented workflow with the action, step by step as the runner runs it
// ---------------------------------------------------------------------------------------------

/// A stand-in for GitHub's ID token endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`): `jwt` for the
/// bearer `request_token` and the audience `audience`, 401 otherwise.
fn github_token_endpoint(request_token: &str, audience: &str, jwt: &str) -> StandIn {
    let (bearer, audience, jwt) = (
        format!("Bearer {request_token}"),
        audience.to_owned(),
        jwt.to_owned(),
    );
    StandIn::start(move |req, _| {
        if req.header("authorization") == Some(bearer.as_str())
            && req.query_param("audience").as_deref() == Some(audience.as_str())
        {
            Action::json(200, json!({ "count": 1, "value": jwt }))
        } else {
            Action::json(
                401,
                json!({ "message": "stand-in: bad bearer or audience" }),
            )
        }
    })
}

/// How the documented workflow's `uses:` run here; `signers` is the test's release key.
fn documented_uses<'a>(releases: &'a str, signers: &'a str) -> impl FnMut(&str) -> Uses + 'a {
    move |action: &str| {
        let (name, action_ref) = action.split_once('@').expect("uses: NAME@REF");
        match name {
            "actions/checkout" => Uses::StandIn("true".to_owned()),
            "actions/setup-python" => Uses::StandIn(format!(
                "test -n \"$WITH_PYTHON_VERSION\"\necho {} >>\"$GITHUB_PATH\"\n",
                Venv::get().bin().display()
            )),
            "cme-exec/cme-exec" => this_action(
                action_ref,
                &[("base-url", releases)],
                &[("CME_EXEC_ALLOWED_SIGNERS", signers)],
            ),
            other => panic!("the documented workflow uses {other}, which this test cannot run"),
        }
    }
}

#[test]
fn github_action_runs_in_the_documented_workflow() {
    let mut t = Test::new();
    let world = World::new(&mut t);
    let blocks = section_blocks(&ci_doc(), "GitHub Actions with JWT auth: Vault or OpenBao");
    run_vault_commands(
        &world.bao,
        &world.subst.apply(&block(&blocks, "sh", "auth/github/role")),
    );
    let config = world
        .subst
        .apply(&block(&blocks, "toml", "[providers.vault]"));
    let workflow = yaml_to_json(&world.subst.apply(&block(&blocks, "yaml", "jobs:")));
    let audience = toml_audience(&config);
    let jwt = world.bao.sign_jwt(
        "ci-issuer",
        &json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": "repo:company/docs-export:ref:refs/heads/main",
            "aud": audience,
            "repository": "company/docs-export",
            "ref": "refs/heads/main",
            "iat": now() - 10,
            "nbf": now() - 10,
            "exp": now() + 600,
        }),
    );
    let request_token = t.sentinel("gh-request-token");
    let endpoint = github_token_endpoint(&request_token, &audience, &jwt);
    let token_url = format!("{}/_apis/token?api-version=2.0", endpoint.url());
    fs::write(t.work_dir().join("cme-exec.toml"), &config).unwrap();

    let releases = format!("{}/releases", world.site.url());
    let signers = world.key.allowed_signers.display().to_string();
    // The runner's own PATH: the venv's Python comes only with the setup-python step.
    let env: Vec<(String, String)> = world
        .runner_env(&t)
        .into_iter()
        .filter(|(k, _)| k != "CME_EXEC_ALLOWED_SIGNERS")
        .map(|(k, v)| match k.as_str() {
            "PATH" => (k, "/usr/local/bin:/usr/bin:/bin".to_owned()),
            _ => (k, v),
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut job = Job::new(
        &t.work_dir(),
        t.path(),
        &world.outside.path().join("runner"),
        &env,
    );
    let mark = world.bao.audit_mark();
    let result = job.run_workflow_job(
        &workflow,
        "export",
        Some((&token_url, &request_token)),
        &mut documented_uses(&releases, &signers),
    );
    let log = job.describe();
    assert!(result.is_ok(), "{result:?}\n{}", redact(&log));
    t.assert_no_leaks_in("the job's output", &log);
    assert_no_leak_in("the job's output", &log, &jwt);
    let install_dir = world.outside.path().join("runner/temp/cme-exec/bin");
    assert!(
        job.path()
            .starts_with(&format!("{}:", install_dir.display())),
        "the action did not put {} first on PATH: {}",
        install_dir.display(),
        job.path()
    );
    assert!(
        log.contains("signature verified: Good \"cme-exec-release\" signature"),
        "install.sh did not say it checked the signature:\n{}",
        redact(&log)
    );
    world.assert_installed_from_release();
    assert_eq!(
        endpoint.requests().len(),
        2,
        "one ID token per cme-exec step:\n{}",
        endpoint.summary()
    );
    let logins = world
        .bao
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.path == "auth/github/login")
        .count();
    assert_eq!(logins, 2, "one JWT login per cme-exec step");
    world.assert_cme_logged_in(&log);
}

/// `audience = "..."` of the config's auth table.
#[track_caller]
fn toml_audience(config: &str) -> String {
    let start = config
        .find("audience = \"")
        .expect("audience in the config")
        + 12;
    config[start..start + config[start..].find('"').unwrap()].to_owned()
}

/// The action's output `path`, and its version taken from the ref, or a clear refusal when the ref
/// is a commit (pinned by SHA) and no `version` input is given.
#[test]
fn github_action_reads_the_version_from_its_ref_or_its_input() {
    let t = Test::new();
    let outside = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(&outside.path().join("keys"), "release");
    let release = Release::build(&outside.path().join("site"), &key);
    let site = Site::serve(&release.root);
    let releases = format!("{}/releases", site.url());
    let signers = key.allowed_signers.display().to_string();
    let workflow = |with: &str| {
        yaml_to_json(&format!(
            "jobs:\n  install:\n    steps:\n      - id: cme\n        uses: cme-exec/cme-exec@REF\n{with}      - run: test \"$(command -v cme-exec)\" = \"${{{{ steps.cme.outputs.path }}}}\"\n"
        ))
    };
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let run = |action_ref: &str, with: &str| {
        let mut job = Job::new(&t.work_dir(), t.path(), &outside.path().join("runner"), &[]);
        let result = job.run_workflow_job(&workflow(with), "install", None, &mut |_| {
            this_action(
                action_ref,
                &[("base-url", &releases)],
                &[("CME_EXEC_ALLOWED_SIGNERS", &signers)],
            )
        });
        (result, job.describe())
    };
    // Inputs reach the action's scripts as variables only, never spliced into them.
    let action = yaml_to_json(&fs::read_to_string(repo_root().join("action.yml")).unwrap());
    for step in action["runs"]["steps"].as_array().unwrap() {
        let run = step["run"].as_str().unwrap_or("");
        assert!(
            !run.contains("${{"),
            "action.yml splices an expression into run:\n{run}"
        );
    }
    // Pinned by SHA without a version: refused, saying what to add.
    let (result, log) = run(sha, "");
    assert!(result.is_err(), "{log}");
    assert!(
        log.contains("give the version to install (with: version: X.Y.Z)"),
        "{log}"
    );
    // Pinned by SHA with a version, and by tag: installed, and `path` names it.
    let (result, log) = run(
        sha,
        &format!("        with:\n          version: {VERSION}\n"),
    );
    assert!(result.is_ok(), "{log}");
    let (result, log) = run(&format!("v{VERSION}"), "");
    assert!(result.is_ok(), "{log}");
}

// ---------------------------------------------------------------------------------------------
// What must move together
// ---------------------------------------------------------------------------------------------

/// The template runs only the installer whose SHA-256 it holds: this release's `install.sh`.
#[test]
fn gitlab_template_pins_this_releases_installer() {
    let template = fs::read_to_string(repo_root().join("ci/gitlab/cme-exec.yml")).unwrap();
    let sum = sha256_of(&repo_root().join("scripts/install.sh"));
    assert!(
        template.contains(&format!("cme_exec_installer_sha256={sum}\n")),
        "ci/gitlab/cme-exec.yml does not pin scripts/install.sh's SHA-256 {sum}.\nTo fix: write it into the template's cme_exec_installer_sha256 line"
    );
    assert!(
        template.contains(&format!("/download/v{VERSION}/install.sh\"")),
        "ci/gitlab/cme-exec.yml does not take the installer of release v{VERSION}"
    );
}

/// Every action in the workflows and in action.yml is pinned by a full commit SHA, with its tag
/// in a comment.
#[test]
fn actions_are_pinned_by_commit() {
    let mut files: Vec<PathBuf> = fs::read_dir(repo_root().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(repo_root().join("action.yml"));
    let mut unpinned = Vec::new();
    for file in files {
        for (n, line) in fs::read_to_string(&file).unwrap().lines().enumerate() {
            let Some(rest) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses: ")
            else {
                continue;
            };
            let (action, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
            let pinned = action.starts_with("./")
                || action.split_once('@').is_some_and(|(_, r)| {
                    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
                }) && comment.starts_with('v');
            if !pinned {
                unpinned.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        unpinned.is_empty(),
        "actions not pinned by commit (uses: OWNER/REPO@SHA # vX.Y.Z):\n{}",
        unpinned.join("\n")
    );
}

/// The release key is the same in ci/allowed_signers, scripts/install.sh and docs/install.md.
#[test]
fn release_key_is_the_same_everywhere() {
    let signers = fs::read_to_string(repo_root().join("ci/allowed_signers")).unwrap();
    let line = signers
        .lines()
        .find(|l| l.starts_with(release::PRINCIPAL))
        .expect("ci/allowed_signers has the release principal");
    let key: Vec<&str> = line.split_whitespace().skip(2).take(2).collect();
    let key = key.join(" ");
    assert!(
        line.contains(&format!("namespaces=\"{}\"", release::NAMESPACE)),
        "{line}"
    );
    let install = fs::read_to_string(repo_root().join("scripts/install.sh")).unwrap();
    assert!(
        install.contains(&format!("RELEASE_KEY='{key} ")),
        "scripts/install.sh's RELEASE_KEY is not the key of ci/allowed_signers"
    );
    let docs = fs::read_to_string(repo_root().join("docs/install.md")).unwrap();
    assert!(
        docs.contains(line),
        "docs/install.md does not show ci/allowed_signers's line:\n{line}"
    );
}

/// GITHUB_ENV and GITHUB_OUTPUT as the runner reads them (the test runner's own check).
#[test]
fn command_files_are_read_as_the_runner_reads_them() {
    let pairs = crate::support::actions::parse_command_file(
        "A=1\nB<<EOF\nline one\nx=y\nEOF\nC=a<<b\n\nD<<X=Y\nv\nX=Y\n",
    );
    let map: BTreeMap<String, String> = pairs.into_iter().collect();
    assert_eq!(map["A"], "1");
    assert_eq!(map["B"], "line one\nx=y");
    assert_eq!(map["C"], "a<<b");
    assert_eq!(map["D"], "v");
}

// ---------------------------------------------------------------------------------------------
// The README's environment-only quick start (the form a CI job without a config file uses)
// ---------------------------------------------------------------------------------------------

/// Its `export` lines, as written, with the token in the variable it names: `check` passes.
#[test]
fn readme_environment_only_quick_start_passes_check() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("No config file at all")
        .expect("README.md's environment-only quick start");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").expect("its ```sh block") + 6..];
    let block = &block[..block.find("```").unwrap()];
    let mut t = Test::new();
    let token = t.sentinel("readme-token");
    let mut exported = Vec::new();
    for line in block.lines() {
        let line = line.split(" #").next().unwrap().trim();
        if let Some(assignment) = line.strip_prefix("export ") {
            let (name, value) = assignment.split_once('=').expect("export NAME=VALUE");
            exported.push(name.to_owned());
            t = t.env(name, value);
        } else {
            assert!(
                line.is_empty() || line == "cme-exec check",
                "a line the test does not run: {line:?}"
            );
        }
    }
    for field in ["URL", "USERNAME", "API_TOKEN"] {
        let name = format!("CME_EXEC_CONFLUENCE_{field}");
        assert!(
            exported.contains(&name),
            "the quick start does not set {name}"
        );
    }
    let out = t.env("CONFLUENCE_TOKEN", &token).run_args(["check"]);
    out.assert_success();
    for field in ["username", "api_token"] {
        assert_eq!(ok_lines(&out.stdout, field).len(), 1, "{}", out.describe());
    }
}

/// docs/references.md names every built-in scheme, as cme-exec lists them in its own error.
#[test]
fn references_doc_lists_every_builtin_scheme() {
    let out = Test::new()
        .env("CME_EXEC_CONFLUENCE_URL", "https://company.atlassian.net")
        .env("CME_EXEC_CONFLUENCE_PAT", "nosuchscheme://x")
        .run_args(["check"]);
    let listed = out
        .stderr
        .split("use a built-in (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no list of built-in schemes:\n{}", out.describe()));
    let doc = fs::read_to_string(repo_root().join("docs/references.md")).unwrap();
    let sentence = doc
        .split("- **SCHEME** names a provider")
        .nth(1)
        .and_then(|rest| rest.split("\n- ").next())
        .expect("docs/references.md's SCHEME item");
    for scheme in listed.split(", ") {
        assert!(
            sentence.contains(&format!("`{scheme}`")),
            "docs/references.md does not name the built-in scheme {scheme}"
        );
    }
}
