//! The documented deployment paths, run as written: the `docker run` commands of README.md and
//! docs/install.md under podman with both images built from this checkout (`Dockerfile` with the
//! static binary of `scripts/dist`, `Dockerfile.cme` with the real cme 5.5.0 on a Debian base made
//! here), and every manifest of docs/kubernetes.md under `podman kube play`, against OpenBao,
//! moto and a Confluence site stand-in, with cme exporting a page for real.
//!
//! The commands and manifests are read from the docs at run time (the blocks marked
//! `<!-- tested: NAME -->`, and every `docker run` line of README.md), so a doc edit that breaks a
//! path fails here. The few changes the tests make to that text are all in [`substitutions`];
//! the changes made to the manifests as Kubernetes itself would are in [`TO_PODS`].
//!
//! Set-up and cost (tests/cli/support/podman.rs): the base image (mmdebstrap, about 45-100 s) and the
//! pip layer of `Dockerfile.cme` (about 25 s) are made once and kept in `<target>/deploy-podman/`;
//! each test process then builds the two images (a few seconds) and plays its pods one at a
//! time.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::support::confluence_site::{ConfluenceSite, PAGE_TEXT, PAGE_TITLE};
use crate::support::docs;
use crate::support::kubernetes::ServiceAccounts;
use crate::support::moto::Moto;
use crate::support::openbao::OpenBao;
use crate::support::podman::{self, Podman};
use crate::support::*;
use crate::{basic_header, lines_with};

// ---------------------------------------------------------------------------------------------
// Every change the tests make to the documented text, in one place
// ---------------------------------------------------------------------------------------------

/// What the tests put in place of what the docs name.
#[derive(Default)]
struct Stand {
    /// The Confluence site stand-in (`http://127.0.0.1:PORT`).
    site: String,
    /// OpenBao, where the docs name Vault's in-cluster address.
    vault: Option<String>,
    /// The TokenReview stand-in, where the docs name the Kubernetes API server.
    kubernetes_api: Option<String>,
    /// The sentinels for the placeholder values of `vault kv put`.
    username: Option<String>,
    api_token: Option<String>,
    /// A directory of the test's own, for a `hostPath` on the node.
    host_dir: Option<PathBuf>,
}

/// The documented text's values and what the tests put in their place:
///
/// 1. the images' names: the images built from this checkout ([`podman::Images`]); `busybox` is
///    the Debian base (it has `chown`), OpenBao's image is that base with the `bao` of `.venv`;
/// 2. the stores' and services' addresses: OpenBao (over TLS, with its own CA in the `vault-ca`
///    ConfigMap) for Vault's, the TokenReview stand-in for the Kubernetes API server's, the site
///    stand-in for `https://company.atlassian.net`;
/// 3. the placeholder secret values of `vault kv put`: sentinels;
/// 4. the network: `docker run` is `podman run --network host`, and every pod is played with
///    `--network host`, so that containers reach the servers on the host's loopback;
/// 5. a `hostPath` directory on the node: a directory of the test's own.
///
/// Besides these, `vault` is OpenBao's `bao` ([`vault_cli`]), and [`TO_PODS`] makes the changes
/// a cluster would (a Job's pod, kubelet's service-account token, EKS's web identity).
fn substitutions(stand: &Stand) -> Vec<(&'static str, String)> {
    let images = Podman::get().images();
    let mut subs = vec![
        ("ghcr.io/cme-exec/cme-exec:0.1.0", images.minimal.clone()),
        ("ghcr.io/cme-exec/cme-exec-cme:0.1.0", images.cme.clone()),
        ("quay.io/openbao/openbao:2.7.2", images.openbao.clone()),
        ("busybox:1.36", images.busybox.clone()),
        ("https://company.atlassian.net", stand.site.clone()),
        ("docker run ", "podman run --network host ".to_owned()),
    ];
    if let Some(vault) = &stand.vault {
        subs.push(("https://vault.vault.svc:8200", vault.clone()));
    }
    if let Some(api) = &stand.kubernetes_api {
        subs.push(("https://k8s-api.company.example:6443", api.clone()));
    }
    if let Some(username) = &stand.username {
        subs.push(("exporter@company.com", username.clone()));
    }
    if let Some(token) = &stand.api_token {
        subs.push(("ATATT3x...", token.clone()));
    }
    if let Some(dir) = &stand.host_dir {
        subs.push(("/run/openbao-cme", dir.display().to_string()));
    }
    subs
}

fn substitute(text: &str, stand: &Stand) -> String {
    substitutions(stand)
        .into_iter()
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, &to))
}

/// The OpenBao version the docs' proxy image names: the `bao` of `.venv` must be that one.
const DOC_OPENBAO_VERSION: &str = "2.7.2";

/// The region of the docs' EKS cluster (its OIDC provider's), which EKS's webhook gives pods.
const IRSA_REGION: &str = "eu-central-1";

/// The changes to the manifests that a cluster makes and `podman kube play` (podman 4.3) does
/// not, in Python with PyYAML from `.venv`. Reads the documents and a JSON of options; prints
/// the documents to play:
///
/// - the pod template is taken out of a Job, CronJob or DaemonSet (podman plays Pods and
///   Deployments), nothing else in it changed; ServiceAccounts and RBAC objects are left out
///   (podman has no API server); a PersistentVolumeClaim that already exists is left out (it
///   stays between runs, as in a cluster);
/// - kubelet's service-account token: every container of a pod with `serviceAccountName` gets
///   `/var/run/secrets/kubernetes.io/serviceaccount` (a host directory with the account's token);
/// - EKS's pod identity webhook, for a service account annotated `eks.amazonaws.com/role-arn`:
///   `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`, the cluster's region (`AWS_REGION`,
///   `AWS_DEFAULT_REGION`, `AWS_STS_REGIONAL_ENDPOINTS`) and the token's mount in every container
///   not named by the pod's `eks.amazonaws.com/skip-containers`, plus (the store's address)
///   `AWS_ENDPOINT_URL` of moto and `AWS_EC2_METADATA_DISABLED`;
/// - `sidecars`: a native sidecar (an init container with `restartPolicy: Always`, which podman
///   4.3 would wait for forever) becomes the first container, without its `restartPolicy` and
///   `startupProbe` (the test runs the probe itself before starting the others, as kubelet
///   does).
const TO_PODS: &str = r#"
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
opts = json.loads(sys.argv[2])
accounts = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
            for d in docs if d["kind"] == "ServiceAccount"}
out = []
for d in docs:
    kind = d["kind"]
    if kind in ("ServiceAccount", "ClusterRoleBinding", "RoleBinding", "ClusterRole", "Role"):
        continue
    if kind == "PersistentVolumeClaim" and d["metadata"]["name"] in opts["existing_volumes"]:
        continue
    if kind in ("Job", "CronJob", "DaemonSet"):
        spec = d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]
        template = spec["template"]
        meta = dict(template.get("metadata") or {})
        meta["name"] = d["metadata"]["name"]
        meta["namespace"] = d["metadata"].get("namespace", "default")
        d = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}
    if d["kind"] == "Pod":
        meta, spec = d["metadata"], d["spec"]
        ns = meta.get("namespace", "default")
        containers = spec.get("initContainers", []) + spec["containers"]
        sa = spec.get("serviceAccountName")
        if sa:
            spec.setdefault("volumes", []).append(
                {"name": "kube-api-access", "hostPath": {"path": opts["sa_dirs"][ns + "/" + sa], "type": "Directory"}})
            for c in containers:
                c.setdefault("volumeMounts", []).append(
                    {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True})
            role = ((accounts.get((ns, sa)) or {}).get("metadata", {}).get("annotations") or {}).get("eks.amazonaws.com/role-arn")
            if role:
                skip = (meta.get("annotations") or {}).get("eks.amazonaws.com/skip-containers", "").split(",")
                spec["volumes"].append(
                    {"name": "aws-iam-token", "hostPath": {"path": opts["irsa_dirs"][ns + "/" + sa], "type": "Directory"}})
                for c in containers:
                    if c["name"] in skip:
                        continue
                    c.setdefault("env", []).extend([
                        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                        {"name": "AWS_DEFAULT_REGION", "value": opts["aws_region"]},
                        {"name": "AWS_REGION", "value": opts["aws_region"]},
                        {"name": "AWS_ROLE_ARN", "value": role},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
                        {"name": "AWS_ENDPOINT_URL", "value": opts["aws_endpoint"]},
                        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
                    ])
                    c.setdefault("volumeMounts", []).append(
                        {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": True})
        sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
        if sidecars:
            assert opts["sidecars"], "a native sidecar in a pod whose test does not expect one"
            spec["initContainers"] = [c for c in spec["initContainers"] if c not in sidecars]
            for c in sidecars:
                c.pop("restartPolicy")
                c.pop("startupProbe", None)
            spec["containers"] = sidecars + spec["containers"]
    out.append(d)
print(yaml.safe_dump_all(out, sort_keys=False))
"#;

// ---------------------------------------------------------------------------------------------
// Running documented things
// ---------------------------------------------------------------------------------------------

/// A working directory for documented commands, with a shell environment like a user's: PATH,
/// HOME, podman's set-up, and the variables the test adds (`VAULT_ADDR`, ...).
struct Shell {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Shell {
    fn new() -> Shell {
        let dir = tempfile::Builder::new()
            .prefix("cme-exec-deploy-")
            .tempdir()
            .expect("a working directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        let mut env: Vec<(String, String)> = Podman::get().env().to_vec();
        env.push((
            "PATH".into(),
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                dir.path().join("bin").display()
            ),
        ));
        env.push(("HOME".into(), dir.path().display().to_string()));
        Shell { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn var(&mut self, name: &str, value: impl Into<String>) {
        self.env.push((name.to_owned(), value.into()));
    }

    /// `bash -euo pipefail -c SCRIPT` in the working directory.
    fn run(&self, script: &str) -> Output {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `vault` on the shell's PATH is OpenBao's `bao` (the same CLI, which reads `VAULT_ADDR`,
/// `VAULT_TOKEN` and `VAULT_CACERT` too).
fn vault_cli(shell: &Shell) {
    let shim = shell.path().join("bin/vault");
    fs::write(
        &shim,
        format!("#!/bin/sh\nexec {} \"$@\"\n", Venv::get().bao().display()),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
}

/// No secret in what a process printed.
#[track_caller]
fn no_leak(what: &str, out: &Output, secrets: &[String]) {
    for secret in secrets {
        assert_no_leak_in(&format!("{what} (stdout)"), &out.stdout, secret);
        assert_no_leak_in(&format!("{what} (stderr)"), &out.stderr, secret);
    }
}

/// Every regular file under `dir` whose name ends with `suffix`.
fn files_named(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// The page cme exported under `dir`: one Markdown file named after the page, holding its text.
#[track_caller]
fn assert_exported(dir: &Path, what: &str) {
    let pages = files_named(dir, &format!("{PAGE_TITLE}.md"));
    assert!(
        pages.len() == 1,
        "{what}: expected one exported page named '{PAGE_TITLE}.md' under {}, found {:?} (all files: {:?})",
        dir.display(),
        pages,
        files_under(dir)
    );
    let text = fs::read_to_string(&pages[0]).unwrap();
    assert!(
        text.contains(PAGE_TEXT),
        "{what}: {} does not hold the page's text:\n{text}",
        pages[0].display()
    );
}

/// The site saw cme's export calls (the connection check and the page) with exactly the
/// documented credential, `Authorization: Basic base64(username:api_token)`.
#[track_caller]
fn assert_site_saw_credentials(site: &ConfluenceSite, header: &str, what: &str) {
    let paths = site.paths_with_authorization(header);
    for needed in ["/rest/api/space", "/rest/api/content/123"] {
        assert!(
            paths.iter().any(|p| p == needed),
            "{what}: the site saw no {needed} with the credentials from the store; requests:\n{}",
            site.summary()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The marked blocks
// ---------------------------------------------------------------------------------------------

/// Which blocks of which doc the tests below run. A marker that disappears, or one that no test
/// runs, fails here (cheaply, before any image is built).
const MARKED: [(&str, &[&str]); 2] = [
    (
        "docs/install.md",
        &["container-config", "docker-check", "docker-export"],
    ),
    (
        "docs/kubernetes.md",
        &[
            "vault-setup",
            "vault-ca",
            "manifests",
            "check-pod",
            "proxy-config",
            "vault-proxy-role",
            "proxy-daemonset",
            "proxy-job",
            "proxy-sidecar",
            "vault-sidecar-role",
            "one-container",
            "irsa-config",
            "irsa-job",
        ],
    ),
];

#[test]
fn deploy_docs_mark_the_blocks_the_tests_run() {
    for (doc, names) in MARKED {
        assert_eq!(
            docs::marked(doc),
            names.to_vec(),
            "{doc}: the `<!-- tested: NAME -->` markers differ from the blocks tests/cli/deploy.rs runs"
        );
        for name in names {
            let block = docs::tested(doc, name);
            assert!(!block.text.trim().is_empty(), "{} is empty", block.place());
        }
    }
    // README.md: every `docker run` line is run; there are two (the minimal image's --version
    // and an export with the cme image).
    assert_eq!(
        readme_docker_runs().len(),
        2,
        "README.md's docker run lines"
    );
}

/// Every `docker run` command in README.md's fenced blocks.
fn readme_docker_runs() -> Vec<String> {
    docs::blocks("README.md")
        .iter()
        .flat_map(|b| docs::commands(&b.text))
        .filter(|c| c.trim_start().starts_with("docker run "))
        .map(|c| {
            // A trailing comment is the README's, not the command's.
            match c.find("  #") {
                Some(i) => c[..i].trim_end().to_owned(),
                None => c,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The images
// ---------------------------------------------------------------------------------------------

/// Both images build from this checkout; they are configured as docs/install.md says; and the
/// build machine's CA bundle and pip settings, mounted for the pip step only, left nothing.
#[test]
fn deploy_images_build_and_keep_nothing_of_the_build_machine() {
    let podman = Podman::get();
    let _one = Podman::exclusive();
    let images = podman.images();
    let inspect = |image: &str| -> Value {
        let text = podman.ok(["image", "inspect", image]);
        serde_json::from_str::<Value>(&text).unwrap()[0]["Config"].clone()
    };
    let minimal = inspect(&images.minimal);
    assert_eq!(minimal["User"], "65532:65532");
    assert_eq!(minimal["Entrypoint"], json!(["/cme-exec"]));
    let cme = inspect(&images.cme);
    assert_eq!(cme["User"], "1000:1000");
    assert_eq!(cme["Entrypoint"], json!(["cme-exec", "--"]));
    assert_eq!(cme["WorkingDir"], "/data/out");
    for config in [&minimal, &cme] {
        let env: Vec<&str> = config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            env.contains(&"CME_EXEC_CONFIG=/etc/cme-exec/cme-exec.toml"),
            "the images look for the config where the docs mount it: {env:?}"
        );
    }

    // What pip installed is what the repository pins, and cme is the documented one.
    let out = podman.run(["run", "--rm", "--entrypoint", "cme", &images.cme, "version"]);
    out.assert_success();
    out.assert_stdout_contains("confluence-markdown-exporter 5.5.0");

    // Nothing of the build machine's: no pip settings (not even the empty file a bind mount
    // onto a missing path leaves), and none of the CA certificates this machine added to its
    // bundle (those of /usr/local/share/ca-certificates, which the bundle mounted into the
    // build holds), anywhere in the image.
    let root = PathBuf::from(podman.ok(["image", "mount", &images.cme]));
    let unmount = scopeguard(|| {
        let _ = Podman::get().run(["image", "unmount", &Podman::get().images().cme]);
    });
    assert!(
        !root.join("etc/pip.conf").exists(),
        "the build machine's /etc/pip.conf is in the image"
    );
    let mounted: String = podman::build_time_files()
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    let foreign: Vec<String> = files_under(Path::new("/usr/local/share/ca-certificates"))
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| pem_blocks(&text))
        .filter(|cert| mounted.contains(cert.as_str()))
        // One line of the certificate's base64 is enough to find it.
        .filter_map(|cert| cert.lines().nth(1).map(str::to_owned))
        .collect();
    let mut found = Vec::new();
    for path in files_under(&root) {
        let Ok(bytes) = fs::read(&path) else { continue };
        for needle in &foreign {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    drop(unmount);
    assert!(
        found.is_empty(),
        "the build machine's pip settings or CA certificates are in the image: {found:?}"
    );
}

/// The PEM certificates of a bundle, each from BEGIN to END.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|rest| rest.split("-----END CERTIFICATE-----").next())
        .map(|body| body.trim().to_owned())
        .collect()
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

// ---------------------------------------------------------------------------------------------
// docker run, as README.md and docs/install.md write it
// ---------------------------------------------------------------------------------------------

/// README.md's two `docker run` lines and docs/install.md's `check` and export, as written, with
/// the example config of docs/install.md: `check` resolves both fields from OpenBao, cme exports
/// the page into `out/` and the site sees the credentials from the store; nothing is left in
/// podman's storage.
#[test]
fn deploy_docker_run_commands_of_the_readme_and_install_guide() {
    let podman = Podman::get();
    let _one = Podman::exclusive();
    podman.images();
    let user = sentinel("docker-username");
    let token = sentinel("docker-api-token");
    let header = basic_header(&user, &token);
    let site = ConfluenceSite::start(header.clone());
    let bao = OpenBao::start();
    bao.kv2_put(
        "secret",
        "cme/atlassian",
        json!({ "username": user, "api_token": token }),
    );
    let stand = Stand {
        site: site.base_url(),
        ..Stand::default()
    };
    let secrets = [user.clone(), token.clone(), bao.root_token().to_owned()];

    let mut shell = Shell::new();
    shell.var("VAULT_ADDR", bao.address());
    shell.var("VAULT_TOKEN", bao.root_token());
    let config = docs::tested("docs/install.md", "container-config");
    let config_path = shell.path().join("cme-exec.toml");
    fs::write(&config_path, substitute(&config.text, &stand)).unwrap();
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644)).unwrap();
    // The user the docs assume: UID 1000, the image's, owns `out`.
    let out_dir = shell.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    chown(&out_dir, Some(1000), Some(1000)).unwrap();
    let since = SystemTime::now();

    // docs/install.md: check, with the minimal image.
    let check = docs::tested("docs/install.md", "docker-check");
    let out = shell.run(&substitute(&check.text, &stand));
    assert_eq!(out.code(), Some(0), "{}\n{}", check.place(), out.describe());
    no_leak(&check.place(), &out, &secrets);
    for field in ["username", "api_token"] {
        assert_eq!(
            crate::ok_lines(
                &out.stdout,
                &format!("vault://secret/cme/atlassian#{field}")
            )
            .len(),
            1,
            "{}: check should say {field} is ok\n{}",
            check.place(),
            out.describe()
        );
    }

    // docs/install.md: the export, with the cme image.
    let export = docs::tested("docs/install.md", "docker-export");
    let out = shell.run(&substitute(&export.text, &stand));
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        export.place(),
        out.describe()
    );
    no_leak(&export.place(), &out, &secrets);
    assert_exported(&out_dir, &export.place());
    assert_site_saw_credentials(&site, &header, &export.place());
    fs::remove_dir_all(&out_dir).unwrap();
    fs::create_dir(&out_dir).unwrap();
    chown(&out_dir, Some(1000), Some(1000)).unwrap();

    // README.md: every docker run line.
    let runs = readme_docker_runs();
    let before = site.requests().len();
    for line in &runs {
        let out = shell.run(&substitute(line, &stand));
        assert_eq!(out.code(), Some(0), "README.md: {line}\n{}", out.describe());
        no_leak("README.md's docker run", &out, &secrets);
        if line.contains("--version") {
            out.assert_stdout_contains("cme-exec ");
            assert!(line.contains("ghcr.io/cme-exec/cme-exec:"), "{line}");
        }
    }
    assert!(
        site.requests().len() > before,
        "README.md's export reached no site"
    );
    assert_exported(&out_dir, "README.md's export");
    assert_site_saw_credentials(&site, &header, "README.md's export");

    // The containers are gone (--rm), and none of the credentials is anywhere in podman's
    // storage: cme-exec handed them to cme in memory.
    let leaks = podman.scan(since, &secrets[..2], &[]);
    assert!(leaks.is_empty(), "credentials on disk: {leaks:#?}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes under podman kube play
// ---------------------------------------------------------------------------------------------

/// OpenBao set up as docs/kubernetes.md section 1 says (the block run with `vault`), a
/// TokenReview stand-in as the API server, the site, the `vault-ca` ConfigMap made as section 2
/// says, and a working directory.
struct Cluster {
    shell: Shell,
    bao: OpenBao,
    accounts: ServiceAccounts,
    site: ConfluenceSite,
    header: String,
    stand: Stand,
    secrets: Vec<String>,
    vault_ca: String,
    host_dir: tempfile::TempDir,
    /// Held while the cluster lives: one pod test at a time (podman's storage is shared).
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    /// The page reached the export volume, and the site saw the credentials.
    #[track_caller]
    fn assert_exported(&self, what: &str) {
        assert_exported(&Podman::get().volume_dir("confluence-export"), what);
        assert_site_saw_credentials(&self.site, &self.header, what);
    }

    /// Takes the one-at-a-time lock, builds the images (once per test binary), then sets up the
    /// cluster.
    #[track_caller]
    fn start() -> Cluster {
        let one = Podman::exclusive();
        Podman::get().images();
        let bao = OpenBao::start_tls();
        let accounts = ServiceAccounts::start();
        let user = sentinel("k8s-username");
        let token = sentinel("k8s-api-token");
        let header = basic_header(&user, &token);
        let site = ConfluenceSite::start(header.clone());
        let host_dir = tempfile::Builder::new()
            .prefix("cme-exec-hostpath-")
            .tempdir()
            .unwrap();
        let stand = Stand {
            site: site.base_url(),
            vault: Some(bao.address()),
            kubernetes_api: Some(accounts.url()),
            username: Some(user.clone()),
            api_token: Some(token.clone()),
            host_dir: Some(host_dir.path().to_path_buf()),
        };
        let mut shell = Shell::new();
        shell.var("VAULT_ADDR", bao.address());
        shell.var("VAULT_TOKEN", bao.root_token());
        shell.var("VAULT_CACERT", bao.ca_cert().display().to_string());
        vault_cli(&shell);
        // The files the docs' commands read: the cluster's CA (OpenBao's stands in: the
        // TokenReview stand-in speaks plain http) and Vault's CA.
        fs::copy(bao.ca_cert(), shell.path().join("k8s-ca.crt")).unwrap();
        fs::copy(bao.ca_cert(), shell.path().join("vault-ca.crt")).unwrap();

        let setup = docs::tested("docs/kubernetes.md", "vault-setup");
        let out = shell.run(&substitute(&setup.text, &stand));
        assert_eq!(out.code(), Some(0), "{}\n{}", setup.place(), out.describe());

        let vault_ca = configmap_from_kubectl(
            &docs::tested("docs/kubernetes.md", "vault-ca"),
            shell.path(),
        );
        let secrets = vec![user, token, bao.root_token().to_owned()];
        Cluster {
            shell,
            bao,
            accounts,
            site,
            header,
            stand,
            secrets,
            vault_ca,
            host_dir,
            _one: one,
        }
    }

    /// The test's secrets and every service-account token issued so far.
    fn all_secrets(&self) -> Vec<String> {
        let mut all = self.secrets.clone();
        for entry in fs::read_dir(self.accounts.dir())
            .unwrap()
            .filter_map(Result::ok)
        {
            if let Ok(token) = fs::read_to_string(entry.path().join("token")) {
                all.push(token);
            }
        }
        all
    }

    /// Plays `yaml` (documented text, substituted here) as pods; see [`Played`].
    #[track_caller]
    fn play(&self, yaml: &str, sidecars: bool) -> Played {
        self.play_with(yaml, sidecars, None)
    }

    #[track_caller]
    fn play_with(&self, yaml: &str, sidecars: bool, aws_endpoint: Option<&str>) -> Played {
        let podman = Podman::get();
        let text = substitute(yaml, &self.stand);
        let docs: Vec<Value> = yaml_docs(&text);
        // Service-account tokens for every account a pod runs as (and web identity tokens for
        // the annotated ones).
        let mut sa_dirs = BTreeMap::new();
        let mut irsa_dirs = BTreeMap::new();
        for pod in docs.iter().filter_map(pod_spec) {
            let (ns, spec) = pod;
            if let Some(sa) = spec["serviceAccountName"].as_str() {
                let dir = self.accounts.token_dir(&ns, sa);
                sa_dirs.insert(format!("{ns}/{sa}"), dir.display().to_string());
                let irsa = self.accounts.token_dir(&ns, &format!("{sa}-web-identity"));
                irsa_dirs.insert(format!("{ns}/{sa}"), irsa.display().to_string());
            }
        }
        let existing: Vec<String> = docs
            .iter()
            .filter(|d| d["kind"] == "PersistentVolumeClaim")
            .filter_map(|d| d["metadata"]["name"].as_str())
            .filter(|name| podman.run(["volume", "exists", name]).status.success())
            .map(str::to_owned)
            .collect();
        let options = json!({
            "sa_dirs": sa_dirs,
            "irsa_dirs": irsa_dirs,
            "aws_endpoint": aws_endpoint.unwrap_or(""),
            "aws_region": IRSA_REGION,
            "existing_volumes": existing,
            "sidecars": sidecars,
        });
        let source = self.shell.path().join(format!(
            "documented-{}.yaml",
            crate::support::secrets::random_hex()
        ));
        fs::write(&source, &text).unwrap();
        let out = Command::new(Venv::get().python())
            .arg("-c")
            .arg(TO_PODS)
            .arg(&source)
            .arg(options.to_string())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "turning the manifests into pods failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let played = source.with_extension("pods.yaml");
        fs::write(&played, &out.stdout).unwrap();
        let pods: Vec<Value> = yaml_docs(&String::from_utf8_lossy(&out.stdout));
        let names: Vec<String> = pods
            .iter()
            .filter(|d| d["kind"] == "Pod")
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        // Leftovers of an earlier run that was interrupted.
        for name in &names {
            let _ = podman.run(["pod", "rm", "--force", name]);
        }
        let start = !sidecars;
        let out = podman.run([
            "kube",
            "play",
            "--network",
            "host",
            "--annotation",
            "io.podman.annotations.init.container.type=always",
            &format!("--start={start}"),
            played.to_str().unwrap(),
        ]);
        let played = Played {
            file: played,
            pods,
            names,
            configmaps: docs
                .iter()
                .filter(|d| d["kind"] == "ConfigMap")
                .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
                .collect(),
        };
        if !out.status.success() {
            panic!(
                "podman kube play failed:\n{}\n{}",
                out.describe(),
                played.logs_of_all()
            );
        }
        played
    }
}

/// The ConfigMap `kubectl -n NS create configmap NAME --from-file=KEY=FILE` makes, from the
/// documented command and the file in `dir`.
#[track_caller]
fn configmap_from_kubectl(block: &docs::Block, dir: &Path) -> String {
    let commands = docs::commands(&block.text);
    assert_eq!(commands.len(), 1, "{}: one command", block.place());
    let words: Vec<&str> = commands[0].split_whitespace().collect();
    let (ns, name, from) = match words.as_slice() {
        ["kubectl", "-n", ns, "create", "configmap", name, from] => (*ns, *name, *from),
        _ => panic!(
            "{}: expected `kubectl -n NS create configmap NAME --from-file=KEY=FILE`, found {:?}",
            block.place(),
            commands[0]
        ),
    };
    let (key, file) = from
        .strip_prefix("--from-file=")
        .and_then(|f| f.split_once('='))
        .unwrap_or_else(|| panic!("{}: --from-file=KEY=FILE", block.place()));
    let data = fs::read_to_string(dir.join(file)).unwrap();
    serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": ns },
        "data": { key: data },
    }))
    .unwrap()
}

/// The documents of a YAML stream, as JSON values (PyYAML from `.venv` parses).
fn yaml_docs(text: &str) -> Vec<Value> {
    let out = Command::new(Venv::get().python())
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run python");
    assert!(
        out.status.success(),
        "not YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(namespace, pod spec)` of a Pod, or of the pod template of a Job, CronJob or DaemonSet.
fn pod_spec(doc: &Value) -> Option<(String, Value)> {
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let spec = match doc["kind"].as_str()? {
        "Pod" => doc["spec"].clone(),
        "Job" | "DaemonSet" => doc["spec"]["template"]["spec"].clone(),
        "CronJob" => doc["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone(),
        _ => return None,
    };
    Some((ns, spec))
}

/// Played pods; removed (with the ConfigMaps' volumes) on drop. PersistentVolumeClaims stay, as
/// in a cluster: [`remove_volume`] removes one.
struct Played {
    file: PathBuf,
    pods: Vec<Value>,
    names: Vec<String>,
    configmaps: Vec<String>,
}

impl Played {
    /// `POD-CONTAINER`: podman's name for a container of a played pod.
    fn container(pod: &str, container: &str) -> String {
        format!("{pod}-{container}")
    }

    /// Waits for the container to exit; its exit code and what it printed.
    fn wait(&self, pod: &str, container: &str) -> Output {
        let podman = Podman::get();
        let name = Played::container(pod, container);
        let code = podman.ok(["wait", &name]);
        let mut out = podman.run(["logs", &name]);
        let code: i32 = code.parse().unwrap_or(-1);
        out.status = std::os::unix::process::ExitStatusExt::from_raw(code << 8);
        out
    }

    /// What every container of every pod printed (for failure messages; redacted).
    fn logs_of_all(&self) -> String {
        let podman = Podman::get();
        let mut text = String::new();
        for pod in &self.pods {
            if pod["kind"] != "Pod" {
                continue;
            }
            let name = pod["metadata"]["name"].as_str().unwrap();
            let spec = &pod["spec"];
            for c in spec["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(spec["containers"].as_array().into_iter().flatten())
            {
                let cname = Played::container(name, c["name"].as_str().unwrap());
                let out = podman.run(["logs", &cname]);
                text.push_str(&format!("--- {cname} ---\n{}", out.describe()));
            }
        }
        text
    }

    /// Where podman keeps the pods' `emptyDir: {medium: Memory}` volumes: on disk, as podman 4.3
    /// has no tmpfs for them (Kubernetes mounts a tmpfs).
    fn memory_volumes(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for pod in self.pods.iter().filter(|d| d["kind"] == "Pod") {
            for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
                if v["emptyDir"]["medium"] == "Memory" {
                    dirs.push(Podman::get().volume_dir(v["name"].as_str().unwrap()));
                }
            }
        }
        dirs
    }
}

impl Played {
    /// Waits for the container; asserts it exited 0 and printed no secret.
    #[track_caller]
    fn wait_ok(&self, pod: &str, container: &str, what: &str, secrets: &[String]) -> Output {
        let out = self.wait(pod, container);
        assert_ran(&out, what, secrets, self);
        out
    }

    /// The end of a pod test: no secret on disk while the pods exist (but in their memory
    /// volumes) nor after they are gone; the export volume removed.
    #[track_caller]
    fn tear_down(self, since: SystemTime, secrets: &[String]) {
        assert_nothing_on_disk(
            since,
            secrets,
            &self.memory_volumes(),
            "while the pod exists",
        );
        drop(self);
        assert_nothing_on_disk(since, secrets, &[], "after the pod is gone");
        remove_volume("confluence-export");
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        let podman = Podman::get();
        let _ = podman.run(["kube", "down", self.file.to_str().unwrap()]);
        for name in &self.names {
            let _ = podman.run(["pod", "rm", "--force", name]);
        }
        for cm in &self.configmaps {
            let _ = podman.run(["volume", "rm", "--force", cm]);
        }
    }
}

/// The objects of these kinds among a block's YAML documents, each as JSON (which YAML reads).
fn objects_of(yaml: &str, kinds: &[&str]) -> Vec<String> {
    yaml_docs(yaml)
        .into_iter()
        .filter(|d| kinds.iter().any(|k| d["kind"] == *k))
        .map(|d| serde_json::to_string(&d).unwrap())
        .collect()
}

/// YAML documents as one stream for `podman kube play`.
fn stream(documents: &[&str]) -> String {
    documents.join("\n---\n")
}

fn remove_volume(name: &str) {
    let _ = Podman::get().run(["volume", "rm", "--force", name]);
}

/// Asserts a container exited 0 and printed no secret.
#[track_caller]
fn assert_ran(out: &Output, what: &str, secrets: &[String], played: &Played) {
    assert_eq!(
        out.code(),
        Some(0),
        "{what}\n{}\nall containers:\n{}",
        out.describe(),
        played.logs_of_all()
    );
    no_leak(what, out, secrets);
}

/// No secret in any file podman wrote since `since`: while the pods exist, except in their
/// memory volumes (see [`Played::memory_volumes`]); after they are gone, nowhere.
#[track_caller]
fn assert_nothing_on_disk(since: SystemTime, secrets: &[String], except: &[PathBuf], when: &str) {
    let leaks = Podman::get().scan(since, secrets, except);
    assert!(leaks.is_empty(), "{when}: secrets on disk: {leaks:#?}");
}

/// The CronJob of docs/kubernetes.md section 2 (its pod, as one run of it): `check --live`, then
/// `render` into the memory volume, then the real cme exports the page into the
/// PersistentVolumeClaim, each container as user 10001. The Vault login goes through the
/// Kubernetes auth method with the pod's service-account token (OpenBao asks the TokenReview
/// stand-in), the token is revoked, and no credential or token is left on disk.
#[test]
fn deploy_kubernetes_cronjob_checks_renders_and_exports_to_its_volume() {
    let cluster = Cluster::start();
    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let cron = yaml_docs(&manifests.text)
        .into_iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("section 2 has a CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    assert!(cron["spec"]["successfulJobsHistoryLimit"].is_u64());
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    for c in pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_array().unwrap())
    {
        assert!(
            c["resources"]["requests"].is_object(),
            "{}: container {} has no resource requests",
            manifests.place(),
            c["name"]
        );
    }
    remove_volume("confluence-export");
    let accessors_before = cluster
        .bao
        .cli_ok(&["list", "-format=json", "auth/token/accessors"], None);
    let since = SystemTime::now();
    let played = cluster.play(&stream(&[&cluster.vault_ca, &manifests.text]), false);
    let secrets = cluster.all_secrets();
    let check = played.wait_ok(
        "confluence-export",
        "check",
        "the check init container",
        &secrets,
    );
    for field in ["username", "api_token"] {
        assert_eq!(
            crate::ok_lines(
                &check.stdout,
                &format!("vault://secret/cme/atlassian#{field}")
            )
            .len(),
            1,
            "check --live should say {field} is ok\n{}",
            check.describe()
        );
    }
    played.wait_ok(
        "confluence-export",
        "credentials",
        "the credentials init container",
        &secrets,
    );
    played.wait_ok("confluence-export", "cme", "the cme container", &secrets);

    cluster.assert_exported("the CronJob's cme");
    assert!(
        cluster
            .site
            .requests()
            .iter()
            .any(|r| r.path() == "/rest/api/user/current"
                && r.header("authorization") == Some(cluster.header.as_str())),
        "check --live asked the site nothing:\n{}",
        cluster.site.summary()
    );
    // Both init containers logged in as the pod's service account, and revoked their tokens.
    let reviewed = cluster.accounts.reviewed();
    assert_eq!(
        reviewed,
        ["docs/cme-exporter", "docs/cme-exporter"],
        "TokenReview calls"
    );
    assert_eq!(
        cluster
            .bao
            .cli_ok(&["list", "-format=json", "auth/token/accessors"], None),
        accessors_before,
        "a token of the pods is still valid"
    );

    played.tear_down(since, &secrets);
}

/// The diagnostic pod of docs/kubernetes.md section 3 runs `check` with the config and the CA
/// mounted, and reports both fields and the token it used.
#[test]
fn deploy_kubernetes_check_pod_reports_every_field() {
    let cluster = Cluster::start();
    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let check_pod = docs::tested("docs/kubernetes.md", "check-pod");
    // The ConfigMaps of section 2, and the pod.
    let configmaps = objects_of(&manifests.text, &["ConfigMap"]);
    let since = SystemTime::now();
    let played = cluster.play(
        &stream(&[
            &cluster.vault_ca,
            &configmaps.join("\n---\n"),
            &check_pod.text,
        ]),
        false,
    );
    let secrets = cluster.all_secrets();
    let out = played.wait_ok("cme-exec-check", "check", &check_pod.place(), &secrets);
    for field in ["username", "api_token"] {
        assert_eq!(
            crate::ok_lines(
                &out.stdout,
                &format!("vault://secret/cme/atlassian#{field}")
            )
            .len(),
            1,
            "{}: check should say {field} is ok\n{}",
            check_pod.place(),
            out.describe()
        );
    }
    assert!(
        !lines_with(&out.stdout, &["cme-reader"]).is_empty(),
        "{}: check names the token's policies\n{}",
        check_pod.place(),
        out.describe()
    );
    drop(played);
    assert_nothing_on_disk(since, &secrets, &[], "after the check pod");
}

/// The one-container alternative of docs/kubernetes.md: cme-exec hands the config to cme in
/// memory; it mounts the config, Vault's CA and the export volume it names.
#[test]
fn deploy_kubernetes_one_container_job_exports() {
    let cluster = Cluster::start();
    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let job = docs::tested("docs/kubernetes.md", "one-container");
    let objects = objects_of(&manifests.text, &["ConfigMap", "PersistentVolumeClaim"]);
    remove_volume("confluence-export");
    let since = SystemTime::now();
    let played = cluster.play(
        &stream(&[&cluster.vault_ca, &objects.join("\n---\n"), &job.text]),
        false,
    );
    let secrets = cluster.all_secrets();
    played.wait_ok(
        "confluence-export-one-container",
        "cme",
        &job.place(),
        &secrets,
    );
    cluster.assert_exported(&job.place());
    drop(played);
    assert_nothing_on_disk(since, &secrets, &[], "after the one-container pod");
    remove_volume("confluence-export");
}

/// Waits until `socket` exists, failing (with the logs) if the container that makes it stops
/// first.
#[track_caller]
fn wait_for_socket(socket: &Path, container: &str, played: &Played) {
    let podman = Podman::get();
    loop {
        if fs::symlink_metadata(socket)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            return;
        }
        let state = podman.ok(["inspect", "--format", "{{.State.Status}}", container]);
        assert!(
            state == "running" || state == "created" || state == "initialized",
            "{container} is {state} and made no socket at {}:\n{}",
            socket.display(),
            played.logs_of_all()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The proxy logged in once (its log says `authenticating` once), and every TokenReview was for
/// `account` (OpenBao reviews the token again when the proxy renews it).
#[track_caller]
fn assert_one_proxy_login(
    cluster: &Cluster,
    account: &str,
    played: &Played,
    pod: &str,
    container: &str,
) {
    let reviewed = cluster.accounts.reviewed();
    assert!(
        !reviewed.is_empty() && reviewed.iter().all(|a| a == account),
        "TokenReview calls should all be for {account}: {reviewed:?}"
    );
    let log = Podman::get().run(["logs", &Played::container(pod, container)]);
    let logins = log
        .stderr
        .lines()
        .chain(log.stdout.lines())
        .filter(|l| l.contains("proxy.auth.handler: authenticating"))
        .count();
    assert_eq!(logins, 1, "the proxy's logins\n{}", played.logs_of_all());
}

/// A proxy per node (docs/kubernetes.md): the DaemonSet's pod (its init container `chown`s the
/// host directory as root, the proxy logs in once with its own service account) and the export
/// Job's pod, which mounts the socket: its init container renders through the proxy without a
/// login of its own, and cme exports.
#[test]
fn deploy_kubernetes_proxy_per_node_serves_the_export_job() {
    let version = Command::new(Venv::get().bao())
        .arg("version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(&format!("v{DOC_OPENBAO_VERSION} ")),
        "the proxy image holds the bao of .venv, which should be the {DOC_OPENBAO_VERSION} the docs name: {}",
        String::from_utf8_lossy(&version.stdout)
    );
    let cluster = Cluster::start();
    let role = docs::tested("docs/kubernetes.md", "vault-proxy-role");
    let out = cluster.shell.run(&substitute(&role.text, &cluster.stand));
    assert_eq!(out.code(), Some(0), "{}\n{}", role.place(), out.describe());

    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let pvc = objects_of(&manifests.text, &["PersistentVolumeClaim"]);
    let config = docs::tested("docs/kubernetes.md", "proxy-config");
    let daemonset = docs::tested("docs/kubernetes.md", "proxy-daemonset");
    let job = docs::tested("docs/kubernetes.md", "proxy-job");
    remove_volume("confluence-export");
    let since = SystemTime::now();
    let proxy = cluster.play(
        &stream(&[&cluster.vault_ca, &config.text, &daemonset.text]),
        false,
    );
    let socket = cluster.host_dir.path().join("proxy.sock");
    wait_for_socket(&socket, "openbao-proxy-proxy", &proxy);
    let chown = proxy.wait("openbao-proxy", "socket-dir");
    assert_ran(&chown, &daemonset.place(), &cluster.all_secrets(), &proxy);

    let export = cluster.play(
        &stream(&[&config.text, &pvc.join("\n---\n"), &job.text]),
        false,
    );
    let secrets = cluster.all_secrets();
    export.wait_ok(
        "confluence-export-via-proxy",
        "credentials",
        &job.place(),
        &secrets,
    );
    export.wait_ok("confluence-export-via-proxy", "cme", &job.place(), &secrets);
    cluster.assert_exported(&job.place());
    // One login, the proxy's (OpenBao reviews its token again when the proxy renews it); the
    // export pod's service account was never reviewed.
    assert_one_proxy_login(
        &cluster,
        "docs/openbao-proxy",
        &proxy,
        "openbao-proxy",
        "proxy",
    );

    let mut memory = proxy.memory_volumes();
    memory.extend(export.memory_volumes());
    assert_nothing_on_disk(since, &secrets, &memory, "while the pods exist");
    drop(export);
    drop(proxy);
    assert_nothing_on_disk(since, &secrets, &[], "after the pods are gone");
    remove_volume("confluence-export");
}

/// A proxy per pod (docs/kubernetes.md): the native sidecar starts first and is probed as its
/// `startupProbe` says before the exports container starts (what kubelet does; podman 4.3 has
/// no native sidecars), then three `cme-exec -- cme pages` runs share its one login.
#[test]
fn deploy_kubernetes_proxy_sidecar_serves_every_run_of_its_pod() {
    let cluster = Cluster::start();
    let podman = Podman::get();
    let role = docs::tested("docs/kubernetes.md", "vault-sidecar-role");
    let out = cluster.shell.run(&substitute(&role.text, &cluster.stand));
    assert_eq!(out.code(), Some(0), "{}\n{}", role.place(), out.describe());
    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let pvc = objects_of(&manifests.text, &["PersistentVolumeClaim"]);
    let config = docs::tested("docs/kubernetes.md", "proxy-config");
    let job = docs::tested("docs/kubernetes.md", "proxy-sidecar");
    let documented = yaml_docs(&job.text);
    let sidecar = &documented[0]["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always", "{}", job.place());
    let probe: Vec<String> = sidecar["startupProbe"]["exec"]["command"]
        .as_array()
        .expect("the sidecar's startupProbe")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    remove_volume("confluence-export");
    let since = SystemTime::now();
    let played = cluster.play(
        &stream(&[
            &cluster.vault_ca,
            &config.text,
            &pvc.join("\n---\n"),
            &job.text,
        ]),
        true,
    );
    let pod = "confluence-exports-sidecar";
    let proxy = Played::container(pod, "openbao-proxy");
    podman.ok(["start", &proxy]);
    loop {
        let mut args = vec!["exec".to_owned(), proxy.clone()];
        args.extend(probe.iter().cloned());
        if podman.run(&args).status.success() {
            break;
        }
        let state = podman.ok(["inspect", "--format", "{{.State.Status}}", &proxy]);
        assert_eq!(
            state,
            "running",
            "the sidecar stopped:\n{}",
            played.logs_of_all()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    podman.ok(["start", &Played::container(pod, "exports")]);
    let secrets = cluster.all_secrets();
    played.wait_ok(pod, "exports", &job.place(), &secrets);
    cluster.assert_exported(&job.place());
    let pages: Vec<String> = cluster
        .site
        .requests()
        .iter()
        .filter(|r| r.path().starts_with("/rest/api/content/") && !r.path().contains("child"))
        .map(|r| r.path().to_owned())
        .collect();
    for page in ["123", "456", "789"] {
        assert!(
            pages.iter().any(|p| p.ends_with(page)),
            "no run asked for page {page}: {pages:?}"
        );
    }
    assert_one_proxy_login(&cluster, "docs/cme-exporter", &played, pod, "openbao-proxy");
    played.tear_down(since, &secrets);
}

/// EKS with IRSA (docs/kubernetes.md): the init container exchanges the web identity token for
/// the role's credentials (moto as STS) and renders from Secrets Manager (moto); cme, skipped by
/// the webhook, exports. The documented identity check (`check` in place of `render`) names the
/// assumed role.
#[test]
fn deploy_kubernetes_irsa_job_renders_from_secrets_manager() {
    let cluster = Cluster::start();
    let podman = Podman::get();
    let moto = Moto::start();
    let user = &cluster.secrets[0];
    let token = &cluster.secrets[1];
    moto.create_secret_in(
        IRSA_REGION,
        "prod/atlassian",
        &json!({ "username": user, "api_token": token }).to_string(),
    );
    let manifests = docs::tested("docs/kubernetes.md", "manifests");
    let pvc = objects_of(&manifests.text, &["PersistentVolumeClaim"]);
    let config = docs::tested("docs/kubernetes.md", "irsa-config");
    let job = docs::tested("docs/kubernetes.md", "irsa-job");
    remove_volume("confluence-export");
    let since = SystemTime::now();

    // The identity check, as the docs say: `check` in place of `render`.
    let render_args = r#"args: ["render", "--config", "/etc/cme-exec/cme-exec.toml", "--output", "/cme/app_data.json"]"#;
    assert!(
        job.text.contains(render_args),
        "{}: {render_args}",
        job.place()
    );
    let check_job = job.text.replace(
        render_args,
        r#"args: ["check", "--config", "/etc/cme-exec/cme-exec.toml"]"#,
    );
    let played = cluster.play_with(
        &stream(&[&config.text, &pvc.join("\n---\n"), &check_job]),
        false,
        Some(&moto.endpoint()),
    );
    let secrets = cluster.all_secrets();
    let check = played.wait_ok(
        "confluence-export",
        "cme-exec",
        "the identity check of the IRSA job",
        &secrets,
    );
    let identity = lines_with(&check.stdout, &["provider aws (aws-sm)"]);
    assert!(
        identity.len() == 1 && identity[0].contains("assumed-role/cme-export-reader/"),
        "check should name the role of the service account's annotation\n{}",
        check.describe()
    );
    let _ = played.wait("confluence-export", "cme");
    drop(played);

    let played = cluster.play_with(
        &stream(&[&config.text, &pvc.join("\n---\n"), &job.text]),
        false,
        Some(&moto.endpoint()),
    );
    played.wait_ok("confluence-export", "cme-exec", &job.place(), &secrets);
    played.wait_ok("confluence-export", "cme", &job.place(), &secrets);
    cluster.assert_exported(&job.place());
    // The webhook's variables reached the init container only.
    let env = podman.ok([
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &Played::container("confluence-export", "cme"),
    ]);
    assert!(
        !env.contains("AWS_ROLE_ARN") && !env.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "eks.amazonaws.com/skip-containers should keep the web identity out of cme's container"
    );
    played.tear_down(since, &secrets);
}
