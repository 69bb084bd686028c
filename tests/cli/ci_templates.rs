//! The CI integrations as docs/ci.md documents them, run for real: the GitLab job of its "GitLab
//! CI with JWT auth" section, which includes the template (ci/gitlab/cme-exec.yml) by its remote
//! URL, run by gitlab-ci-local with the shell executor; and the workflow of its "GitHub Actions with
//! JWT auth" section, whose steps (the action's among them) run the way the runner runs them
//! (`tests/cli/support/actions.rs`). Both install cme-exec from a local release signed by a test key
//! (`tests/cli/support/release.rs`), log in to the test's OpenBao with a JWT, and run the real cme
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
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::actions::{this_action, yaml_to_json, Job, Uses};
use crate::support::moto::{Fault, Moto, MotoProxy};
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

/// Every substitution the tests make in what docs/ci.md says: text in [`Substitutions::apply`],
/// variables of the runner in [`Substitutions::runner_env`].
struct Substitutions {
    site: String,
    confluence: String,
    store: StoreAt,
}

/// Where the test's store listens, for the section being run.
enum StoreAt {
    /// The Vault address (the test's OpenBao) and the file holding the JWT issuer's public key.
    Vault {
        address: String,
        jwt_public_key: PathBuf,
    },
    /// The AWS endpoint (the test's moto: Secrets Manager and STS on one port).
    Aws { endpoint: String },
}

impl Substitutions {
    #[track_caller]
    fn apply(&self, text: &str) -> String {
        let mut text = text
            .replace(
                "https://raw.githubusercontent.com/",
                &format!("{}/raw/", self.site),
            )
            .replace("https://company.atlassian.net", &self.confluence);
        if let StoreAt::Vault { address, .. } = &self.store {
            text = text.replace(
                "address = \"https://vault.example.com\"",
                &format!("address = \"{address}\""),
            );
        }
        // OIDC discovery would fetch the issuer's keys; the test's issuer key is given directly.
        let lines: Vec<String> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("image: "))
            .map(|line| {
                match (
                    line.trim_start().strip_prefix("oidc_discovery_url="),
                    &self.store,
                ) {
                    (Some(_), StoreAt::Vault { jwt_public_key, .. }) => format!(
                        "    jwt_validation_pubkeys=@{} \\",
                        jwt_public_key.display()
                    ),
                    _ => line.to_owned(),
                }
            })
            .collect();
        lines.join("\n") + "\n"
    }

    /// What the runner's environment adds for the store: for AWS, `AWS_ENDPOINT_URL` sends the
    /// SDK (cme-exec's, and the stand-in for `aws-actions/configure-aws-credentials`) to moto
    /// instead of AWS, and `AWS_EC2_METADATA_DISABLED` keeps it from looking for an EC2 instance
    /// this machine is not.
    fn runner_env(&self) -> Vec<(String, String)> {
        match &self.store {
            StoreAt::Vault { .. } => Vec::new(),
            StoreAt::Aws { endpoint } => vec![
                ("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()),
                ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
            ],
        }
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

/// What the CI tests share: the release, the store with the Atlassian secret, the stand-in.
/// The release and what is installed from it lie outside the [`Test`]'s directory, whose every
/// file is searched for the sentinels at the end: megabytes of binary known to hold none.
struct World {
    outside: tempfile::TempDir,
    key: SigningKey,
    site: Site,
    /// The Vault sections' store, holding the secret at `secret/cme/atlassian`.
    bao: Option<OpenBao>,
    /// The AWS section's store; the test puts the secret where its doc block names it.
    moto: Option<Moto>,
    confluence: ConfluenceStandIn,
    subst: Substitutions,
    user: String,
    token: String,
}

/// Which store a [`World`] runs.
enum Store {
    OpenBao,
    Moto,
}

impl World {
    #[track_caller]
    fn new(t: &mut Test) -> World {
        World::with_store(t, Store::OpenBao)
    }

    #[track_caller]
    fn with_store(t: &mut Test, store: Store) -> World {
        let outside = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(&outside.path().join("keys"), "release");
        let release = Release::build(&outside.path().join("site"), &key);
        let site = Site::serve(&release.root);
        let confluence = ConfluenceStandIn::start();
        let user = t.sentinel("ci-user");
        let token = t.sentinel("ci-token");
        let (bao, moto, store_at) = match store {
            Store::OpenBao => {
                let bao = OpenBao::start();
                bao.ok(
                    "POST",
                    "secret/data/cme/atlassian",
                    json!({ "data": { "username": user, "api_token": token } }),
                );
                let jwt_public_key = outside.path().join("keys/issuer.pem");
                fs::write(&jwt_public_key, bao.signing_key("ci-issuer")).unwrap();
                let address = bao.address();
                (
                    Some(bao),
                    None,
                    StoreAt::Vault {
                        address,
                        jwt_public_key,
                    },
                )
            }
            Store::Moto => {
                let moto = Moto::start();
                let endpoint = moto.endpoint();
                (None, Some(moto), StoreAt::Aws { endpoint })
            }
        };
        let subst = Substitutions {
            site: site.url(),
            confluence: confluence.base_url(),
            store: store_at,
        };
        World {
            outside,
            key,
            site,
            bao,
            moto,
            confluence,
            subst,
            user,
            token,
        }
    }

    fn bao(&self) -> &OpenBao {
        self.bao.as_ref().expect("a World with OpenBao")
    }

    fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("a World with moto")
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
        .chain(self.subst.runner_env())
        .collect()
    }

    /// Runs the job `export` of `workflow` the way GitHub's runner would on this machine: the
    /// runner's own `PATH` (the venv's Python comes with the setup-python step, its `cme` behind
    /// a [`cme_spy`]), the ID token endpoint `id_token` (URL, request token), the `uses:` of
    /// [`documented_uses`].
    fn run_github_job(&self, t: &Test, workflow: &Value, id_token: (&str, &str)) -> GithubRun {
        let releases = format!("{}/releases", self.site.url());
        let signers = self.key.allowed_signers.display().to_string();
        let env: Vec<(String, String)> = self
            .runner_env(t)
            .into_iter()
            .filter(|(k, _)| k != "CME_EXEC_ALLOWED_SIGNERS")
            .map(|(k, v)| match k.as_str() {
                "PATH" => (k, "/usr/local/bin:/usr/bin:/bin".to_owned()),
                _ => (k, v),
            })
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let runner = self.outside.path().join("runner");
        let cme_env = t.out_dir().join("cme-env-names");
        let spy = self.outside.path().join("spy");
        cme_spy(&spy, &cme_env);
        let mut job = Job::new(&t.work_dir(), t.path(), &runner, &env);
        let result = job.run_workflow_job(
            workflow,
            "export",
            Some(id_token),
            &mut documented_uses(&releases, &signers, Some(&spy)),
        );
        let log = job.describe();
        GithubRun {
            job,
            result,
            log,
            cme_env,
        }
    }

    /// cme's requests reached the stand-in with the store's secret as Basic auth, every one.
    #[track_caller]
    fn assert_cme_logged_in(&self, log: &str) {
        let expected = basic_header(&self.user, &self.token);
        let headers = self.confluence.authorization_headers();
        assert!(
            !headers.is_empty() && headers.iter().all(|h| *h == expected),
            "cme did not send the store's secret to the stand-in:\n{}\n{}",
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

    /// The action installed the release's binary, checked, and put it first on `PATH`.
    #[track_caller]
    fn assert_installed_by_the_action(&self, run: &GithubRun) {
        let install_dir = self.outside.path().join("runner/temp/cme-exec/bin");
        assert!(
            run.job
                .path()
                .starts_with(&format!("{}:", install_dir.display())),
            "the action did not put {} first on PATH: {}",
            install_dir.display(),
            run.job.path()
        );
        assert!(
            run.log
                .contains("signature verified: Good \"cme-exec-release\" signature"),
            "install.sh did not say it checked the signature:\n{}",
            redact(&run.log)
        );
        self.assert_installed_from_release();
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
        world.bao(),
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
    let jwt = world.bao().sign_jwt(
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
    let mark = world.bao().audit_mark();
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
            .bao()
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
/// bearer `request_token` (the scheme's name in any case, as HTTP allows) and the audience
/// `audience`, 401 otherwise.
fn github_token_endpoint(request_token: &str, audience: &str, jwt: &str) -> StandIn {
    let (request_token, audience, jwt) = (
        request_token.to_owned(),
        audience.to_owned(),
        jwt.to_owned(),
    );
    StandIn::start(move |req, _| {
        let bearer = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token);
        if bearer == Some(request_token.as_str())
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

/// What `aws-actions/configure-aws-credentials` documents for `role-to-assume` and `aws-region`
/// with OIDC, as a stand-in step: the ID token from `ACTIONS_ID_TOKEN_REQUEST_URL` for the audience
/// `sts.amazonaws.com` (or `audience:`), STS `AssumeRoleWithWebIdentity` (session name
/// `GitHubActions` unless `role-session-name:` says otherwise, one hour), then the session's
/// three variables masked and, with the region, written to `GITHUB_ENV`. STS is reached at
/// `AWS_ENDPOINT_URL`, which the action's SDK reads too.
const CONFIGURE_AWS_CREDENTIALS: &str = r#"set -euo pipefail
test -n "$WITH_ROLE_TO_ASSUME" && test -n "$WITH_AWS_REGION"
: "${ACTIONS_ID_TOKEN_REQUEST_URL:?permissions: id-token: write is missing}"
jwt=$(curl -sSf -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
  "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=${WITH_AUDIENCE:-sts.amazonaws.com}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
curl -sSf "${AWS_ENDPOINT_URL:-https://sts.$WITH_AWS_REGION.amazonaws.com}/" \
  --data-urlencode Action=AssumeRoleWithWebIdentity --data-urlencode Version=2011-06-15 \
  --data-urlencode "RoleArn=$WITH_ROLE_TO_ASSUME" \
  --data-urlencode "RoleSessionName=${WITH_ROLE_SESSION_NAME:-GitHubActions}" \
  --data-urlencode "DurationSeconds=${WITH_ROLE_DURATION_SECONDS:-3600}" \
  --data-urlencode "WebIdentityToken=$jwt" >"$RUNNER_TEMP/sts-answer.xml"
python3 - "$RUNNER_TEMP/sts-answer.xml" <<'PY'
import os, sys, xml.etree.ElementTree as ET
found = {e.tag.split('}')[-1]: e.text for e in ET.parse(sys.argv[1]).iter()}
os.remove(sys.argv[1])
names = {"AccessKeyId": "AWS_ACCESS_KEY_ID", "SecretAccessKey": "AWS_SECRET_ACCESS_KEY",
         "SessionToken": "AWS_SESSION_TOKEN"}
region = os.environ["WITH_AWS_REGION"]
with open(os.environ["GITHUB_ENV"], "a") as env:
    for tag, name in names.items():
        print(f"::add-mask::{found[tag]}")
        env.write(f"{name}={found[tag]}\n")
    env.write(f"AWS_REGION={region}\nAWS_DEFAULT_REGION={region}\n")
print(f"Authenticated as assumedRoleId {found['AssumedRoleId']}")
PY
"#;

/// A `cme` that records the names of the variables it was started with, one a line, in `names`,
/// then becomes the venv's real cme (a Python script, as cme-exec expects cme to be, so that it
/// still finds cme's release beside the interpreter).
fn cme_spy(dir: &Path, names: &Path) -> PathBuf {
    let venv = Venv::get();
    fs::create_dir_all(dir).unwrap();
    let spy = dir.join("cme");
    fs::write(
        &spy,
        format!(
            "#!{python}\nimport os, sys\nwith open({names:?}, 'a') as f:\n    f.write(''.join(n + '\\n' for n in os.environ))\nos.execv({cme:?}, [{cme:?}] + sys.argv[1:])\n",
            python = venv.python().display(),
            names = names.display().to_string(),
            cme = venv.cme().display().to_string(),
        ),
    )
    .unwrap();
    fs::set_permissions(&spy, fs::Permissions::from_mode(0o755)).unwrap();
    spy
}

/// How the documented workflows' `uses:` run here; `signers` is the test's release key; `spy`,
/// when given, is a directory whose `cme` (see [`cme_spy`]) comes before the venv's on `PATH`.
fn documented_uses<'a>(
    releases: &'a str,
    signers: &'a str,
    spy: Option<&'a Path>,
) -> impl FnMut(&str) -> Uses + 'a {
    move |action: &str| {
        let (name, action_ref) = action.split_once('@').expect("uses: NAME@REF");
        match name {
            "actions/checkout" => Uses::StandIn("true".to_owned()),
            "actions/setup-python" => Uses::StandIn(format!(
                "test -n \"$WITH_PYTHON_VERSION\"\necho {} >>\"$GITHUB_PATH\"\n{}",
                Venv::get().bin().display(),
                spy.map_or_else(String::new, |dir| format!(
                    "echo {} >>\"$GITHUB_PATH\"\n",
                    dir.display()
                )),
            )),
            "aws-actions/configure-aws-credentials" => {
                Uses::StandIn(CONFIGURE_AWS_CREDENTIALS.to_owned())
            }
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
        world.bao(),
        &world.subst.apply(&block(&blocks, "sh", "auth/github/role")),
    );
    let config = world
        .subst
        .apply(&block(&blocks, "toml", "[providers.vault]"));
    let workflow = yaml_to_json(&world.subst.apply(&block(&blocks, "yaml", "jobs:")));
    let audience = toml_audience(&config);
    let jwt = world.bao().sign_jwt(
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
    let mark = world.bao().audit_mark();
    let run = world.run_github_job(&t, &workflow, (&token_url, &request_token));
    run.assert_success(&t);
    assert_no_leak_in("the job's output", &run.log, &jwt);
    world.assert_installed_by_the_action(&run);
    assert_eq!(
        endpoint.requests().len(),
        2,
        "one ID token per cme-exec step:\n{}",
        endpoint.summary()
    );
    let logins = world
        .bao()
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.path == "auth/github/login")
        .count();
    assert_eq!(logins, 2, "one JWT login per cme-exec step");
    world.assert_cme_logged_in(&run.log);
    run.assert_cme_did_not_get(&["ACTIONS_ID_TOKEN_REQUEST_TOKEN", "VAULT_TOKEN"]);
}

/// A GitHub job as it ran: its steps' output (masked as the runner masks it) and what cme got.
struct GithubRun {
    job: Job,
    result: Result<(), String>,
    log: String,
    /// Where the [`cme_spy`] wrote the names of cme's variables.
    cme_env: PathBuf,
}

impl GithubRun {
    /// Every step succeeded and no output holds a sentinel of `t`.
    #[track_caller]
    fn assert_success(&self, t: &Test) {
        assert!(
            self.result.is_ok(),
            "{:?}\n{}",
            self.result,
            redact(&self.log)
        );
        t.assert_no_leaks_in("the job's output", &self.log);
    }

    /// What the step whose `run:` starts with `command` printed on stdout.
    #[track_caller]
    fn stdout_of(&self, command: &str) -> &str {
        let label = format!("run {command}");
        self.job
            .runs
            .iter()
            .find(|r| r.name.starts_with(&label))
            .map(|r| r.stdout.as_str())
            .unwrap_or_else(|| panic!("no step `{label}` ran:\n{}", redact(&self.log)))
    }

    /// cme ran, and none of `names` was among its variables.
    #[track_caller]
    fn assert_cme_did_not_get(&self, names: &[&str]) {
        let got = fs::read_to_string(&self.cme_env).expect("cme ran (its spy wrote no names)");
        let got: Vec<&str> = got.lines().collect();
        for name in names {
            assert!(
                !got.contains(name),
                "cme was started with {name}; its variables: {got:?}"
            );
        }
    }
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

// ---------------------------------------------------------------------------------------------
// GitHub with an OIDC role: the AWS workflow, with the action and with the token file
// ---------------------------------------------------------------------------------------------

const AWS_SECTION: &str = "GitHub Actions with an OIDC role: AWS Secrets Manager";

/// The AWS section's blocks with the test's substitutions, and moto set up as the section's
/// step 1 and the workflow's comment say: the role with the documented trust policy, and the
/// secret the workflow names, `{"username": ..., "api_token": ...}`, in the region it names.
struct AwsSection {
    workflow: Value,
    /// The "Without the action" step, as a list of steps.
    without_action: Value,
    /// The identity `check` prints, as the doc quotes it, up to its `...`.
    quoted_arn: String,
    proxy: MotoProxy,
}

impl AwsSection {
    #[track_caller]
    fn set_up(world: &mut World) -> AwsSection {
        let blocks = section_blocks(&ci_doc(), AWS_SECTION);
        let trust_policy = block(&blocks, "json", "sts:AssumeRoleWithWebIdentity");
        let workflow = yaml_to_json(&world.subst.apply(&block(&blocks, "yaml", "jobs:")));
        let without_action = yaml_to_json(&world.subst.apply(&block(
            &blocks,
            "yaml",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        )));
        let job = &workflow["jobs"]["export"];
        let configure = job["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| uses_configure_aws_credentials(s)))
            .expect("the workflow's configure-aws-credentials step");
        let role_arn = configure["with"]["role-to-assume"].as_str().unwrap();
        let region = configure["with"]["aws-region"].as_str().unwrap();
        let reference = job["env"]["CME_EXEC_CONFLUENCE_FROM"]
            .as_str()
            .expect("the job's CME_EXEC_CONFLUENCE_FROM");
        let secret_name = reference
            .strip_prefix("aws-sm://")
            .expect("an aws-sm:// reference");
        let moto = world.moto();
        let role_name = role_arn.rsplit('/').next().unwrap();
        moto.iam(&[
            ("Action", "CreateRole"),
            ("RoleName", role_name),
            ("AssumeRolePolicyDocument", &trust_policy),
        ]);
        moto.create_secret_in(
            region,
            secret_name,
            &json!({ "username": world.user, "api_token": world.token }).to_string(),
        );
        // Counts the operations cme-exec and the action's stand-in ask of moto.
        let proxy = MotoProxy::start(moto.port(), Fault::None);
        world.subst.store = StoreAt::Aws {
            endpoint: proxy.endpoint(),
        };
        let doc = ci_doc();
        let section = &doc[doc.find(AWS_SECTION).unwrap()..];
        let quoted = section
            .split('`')
            .find(|s| s.starts_with("account=... arn="))
            .expect("the section quotes check's `account=... arn=...` line");
        let quoted_arn = quoted["account=... ".len()..]
            .trim_end_matches("...")
            .to_owned();
        AwsSection {
            workflow,
            without_action,
            quoted_arn,
            proxy,
        }
    }

    /// `check`'s aws-sm identity line shows the quoted ARN, with this session name.
    #[track_caller]
    fn assert_check_shows_the_role(&self, run: &GithubRun, session: &str) {
        let stdout = run.stdout_of("cme-exec check");
        let expected = format!("{}{session}", self.quoted_arn);
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("(aws-sm)") && l.contains(&expected)),
            "`cme-exec check` printed no identity line with {expected}:\n{}",
            redact(&run.log)
        );
    }
}

fn uses_configure_aws_credentials(step: &Value) -> bool {
    step["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
}

/// GitHub's ID token endpoint for the audience AWS's OIDC role expects; the token is a sentinel
/// (moto does not check it; that the right one reaches STS is the SDK's and the action's job).
fn aws_token_endpoint(t: &mut Test) -> (StandIn, String, String, String) {
    let request_token = t.sentinel("gh-request-token");
    let jwt = t.sentinel("gh-oidc-token");
    let endpoint = github_token_endpoint(&request_token, "sts.amazonaws.com", &jwt);
    let url = format!("{}/_apis/token?api-version=2.0", endpoint.url());
    (endpoint, url, request_token, jwt)
}

/// The documented workflow: `configure-aws-credentials` (its stand-in) assumes the role with the
/// job's OIDC token, cme-exec reads the secret with the session it left in the environment, cme
/// logs in, and neither the session nor the token reaches the log or cme.
#[test]
fn github_oidc_role_workflow_reads_aws_secrets_manager_with_the_action() {
    let mut t = Test::new();
    let mut world = World::with_store(&mut t, Store::Moto);
    let aws = AwsSection::set_up(&mut world);
    let (endpoint, token_url, request_token, _jwt) = aws_token_endpoint(&mut t);
    let run = world.run_github_job(&t, &aws.workflow, (&token_url, &request_token));
    run.assert_success(&t);
    world.assert_installed_by_the_action(&run);
    aws.assert_check_shows_the_role(&run, "GitHubActions");
    world.assert_cme_logged_in(&run.log);
    assert_eq!(endpoint.requests().len(), 1, "{}", endpoint.summary());
    assert_eq!(
        aws.proxy.count("AssumeRoleWithWebIdentity"),
        1,
        "the action assumes the role once: {:?}",
        aws.proxy.operations()
    );
    for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        let value = run
            .job
            .var(name)
            .unwrap_or_else(|| panic!("the action set no {name}"));
        assert!(!run.log.contains(value), "{name} is not masked in the log");
    }
    run.assert_cme_did_not_get(&[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ]);
}

/// "Without the action": the documented step in place of `configure-aws-credentials` writes the
/// token file, each cme-exec step exchanges it at STS (the SDK's web identity support), cme logs
/// in and does not get `AWS_WEB_IDENTITY_TOKEN_FILE`.
#[test]
fn github_oidc_role_workflow_reads_aws_secrets_manager_from_a_token_file() {
    let mut t = Test::new();
    let mut world = World::with_store(&mut t, Store::Moto);
    let aws = AwsSection::set_up(&mut world);
    let (endpoint, token_url, request_token, _jwt) = aws_token_endpoint(&mut t);
    let mut workflow = aws.workflow.clone();
    let steps = workflow["jobs"]["export"]["steps"].as_array_mut().unwrap();
    let at = steps
        .iter()
        .position(uses_configure_aws_credentials)
        .unwrap();
    let replacement = aws.without_action.as_array().expect("a list of steps");
    steps.splice(at..=at, replacement.iter().cloned());
    let run = world.run_github_job(&t, &workflow, (&token_url, &request_token));
    run.assert_success(&t);
    aws.assert_check_shows_the_role(&run, "gha-4242");
    world.assert_cme_logged_in(&run.log);
    assert_eq!(endpoint.requests().len(), 1, "{}", endpoint.summary());
    assert_eq!(
        aws.proxy.count("AssumeRoleWithWebIdentity"),
        2,
        "one exchange per cme-exec step: {:?}",
        aws.proxy.operations()
    );
    run.assert_cme_did_not_get(&[
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ]);
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
