//! The provider conformance suite: every backend, against its real store, gives
//! the same answers to the same situations: a missing document, a missing key, a non-string
//! value at a key, an empty value, an oversize document, one document asked for by two fields
//! (fetched once), and a store that does not answer within the deadline. A backend that can
//! store documents writes one with `import` and reads it back: written once, left alone when it
//! holds the same fields, replaced when they change; one that cannot is refused by name.
//!
//! A backend joins with one line in [`STORES`] (and an implementation of [`Store`] here, which
//! says how to put a document into its store, how to make it hang, and where `import` writes).

use std::path::PathBuf;

use serde_json::json;

use crate::support::faults::FaultServer;
use crate::support::keyring::SecretService;
use crate::support::moto::{self, Fault, Moto, MotoProxy};
use crate::support::openbao::OpenBao;
use crate::support::*;

/// Makes a backend's store for one test.
type MakeStore = fn() -> Box<dyn Store>;

/// Every backend under the suite: one line each.
const STORES: &[(&str, MakeStore)] = &[
    ("env", || Box::new(EnvStore::default())),
    ("file", || Box::new(FileStore)),
    ("command", || Box::new(CommandStore::default())),
    ("vault", || Box::new(VaultStore::start())),
    ("aws-sm", || Box::new(AwsStore::start(Aws::Sm))),
    ("aws-ssm", || Box::new(AwsStore::start(Aws::Ssm))),
    ("keyring", || Box::new(KeyringStore::start())),
];

/// A store that a backend reads, set up for one test.
trait Store {
    /// Environment and provider tables the backend needs (the TOML goes before the instances).
    fn prepare(&mut self, t: Test) -> (Test, String);
    /// Puts `content` (a JSON object's text) into the store as document `doc`; the reference to it.
    fn put(&mut self, t: &mut Test, doc: &str, content: &str) -> String;
    /// A reference to a document the store does not have.
    fn missing(&self) -> String;
    /// Whether the store can hold a document larger than cme-exec's limit (1024 KiB); Secrets
    /// Manager (64 KiB), Parameter Store (8 KiB), the environment (128 KiB per variable) and
    /// secret-tool's entries cannot.
    fn holds_oversize(&self) -> bool;
    /// How many times the store served `doc` so far, where the store shows it.
    fn fetches(&self, doc: &str) -> Option<usize>;
    /// A store that never answers: the variables that point a run at it, and the reference to
    /// read there; `None` for a store that cannot hang (a file, the environment).
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)>;
    /// Where `import --to` writes in this store; `Err` with a `--to` its backend must refuse,
    /// for a backend that cannot store documents.
    fn destination(&self, t: &Test) -> Result<String, String>;
}

/// A FaultServer that reads each request and never answers.
fn silent_server() -> FaultServer {
    FaultServer::start(|_, _, conn| {
        while !conn.stopped() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
}

#[derive(Default)]
struct EnvStore {
    vars: Vec<(String, String)>,
}

impl Store for EnvStore {
    fn prepare(&mut self, mut t: Test) -> (Test, String) {
        for (k, v) in &self.vars {
            t = t.env(k, v);
        }
        (t, String::new())
    }
    fn put(&mut self, _t: &mut Test, doc: &str, content: &str) -> String {
        let name = format!("CME_CONFORMANCE_{}", doc.to_uppercase());
        self.vars.push((name.clone(), content.to_owned()));
        format!("env://{name}")
    }
    fn missing(&self) -> String {
        "env://CME_CONFORMANCE_NOT_SET".into()
    }
    fn holds_oversize(&self) -> bool {
        false
    }
    fn fetches(&self, _doc: &str) -> Option<usize> {
        None
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        None
    }
    fn destination(&self, _t: &Test) -> Result<String, String> {
        Err("env://CME_CONFORMANCE".into())
    }
}

struct FileStore;

impl Store for FileStore {
    fn prepare(&mut self, t: Test) -> (Test, String) {
        (t, String::new())
    }
    fn put(&mut self, t: &mut Test, doc: &str, content: &str) -> String {
        let path = t.secret_file(&format!("{doc}.json"), content);
        format!("file://{}", path.display())
    }
    fn missing(&self) -> String {
        "file:///nonexistent/cme-exec-conformance.json".into()
    }
    fn holds_oversize(&self) -> bool {
        true
    }
    fn fetches(&self, _doc: &str) -> Option<usize> {
        None
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        None
    }
    fn destination(&self, t: &Test) -> Result<String, String> {
        Ok(format!(
            "file://{}",
            t.path().join("secrets/written").display()
        ))
    }
}

/// A helper script reading `secrets/DOC.json`, counting its runs per document.
#[derive(Default)]
struct CommandStore {
    runs: Option<PathBuf>,
}

impl Store for CommandStore {
    fn prepare(&mut self, t: Test) -> (Test, String) {
        let runs = t.out_dir().join("runs");
        let helper = t.script(
            "store",
            &format!(
                "#!/bin/sh\necho \"$1\" >> {runs}\n[ \"$1\" = hang ] && exec sleep 600\n\
                 exec cat {dir}/\"$1\".json\n",
                runs = scripts::sh_quote(&runs),
                dir = scripts::sh_quote(&t.path().join("secrets")),
            ),
        );
        self.runs = Some(runs);
        let table = format!(
            "[providers.store]\nkind = \"command\"\ncommand = [{}, \"{{path}}\"]\n\n",
            serde_json::to_string(&helper.display().to_string()).expect("a string")
        );
        (t, table)
    }
    fn put(&mut self, t: &mut Test, doc: &str, content: &str) -> String {
        t.secret_file(&format!("{doc}.json"), content);
        format!("store:{doc}")
    }
    fn missing(&self) -> String {
        "store:missing".into()
    }
    fn holds_oversize(&self) -> bool {
        true
    }
    fn fetches(&self, doc: &str) -> Option<usize> {
        let runs = std::fs::read_to_string(self.runs.as_ref()?).unwrap_or_default();
        Some(runs.lines().filter(|l| *l == doc).count())
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        Some((Vec::new(), "store:hang".into()))
    }
    fn destination(&self, _t: &Test) -> Result<String, String> {
        Err("store://written".into())
    }
}

/// OpenBao, KV v2 at `secret/`, the built-in provider from VAULT_ADDR and VAULT_TOKEN.
struct VaultStore {
    bao: OpenBao,
    mark: usize,
    silent: Option<FaultServer>,
}

impl VaultStore {
    fn start() -> VaultStore {
        let bao = OpenBao::start();
        let mark = bao.audit_mark();
        VaultStore {
            bao,
            mark,
            silent: None,
        }
    }
}

impl Store for VaultStore {
    fn prepare(&mut self, t: Test) -> (Test, String) {
        let t = t
            .env("VAULT_ADDR", self.bao.address())
            .env("VAULT_TOKEN", self.bao.root_token());
        (t, String::new())
    }
    fn put(&mut self, _t: &mut Test, doc: &str, content: &str) -> String {
        let data: serde_json::Value = serde_json::from_str(content).expect("a JSON object");
        self.bao
            .kv2_put("secret", &format!("conformance/{doc}"), data);
        self.mark = self.bao.audit_mark();
        format!("vault://secret/conformance/{doc}")
    }
    fn missing(&self) -> String {
        "vault://secret/conformance/missing".into()
    }
    fn holds_oversize(&self) -> bool {
        true
    }
    fn fetches(&self, doc: &str) -> Option<usize> {
        let path = format!("secret/data/conformance/{doc}");
        Some(
            self.bao
                .requests_since(self.mark)
                .iter()
                .filter(|r| r.operation == "read" && r.path == path)
                .count(),
        )
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        let server = silent_server();
        let env = vec![("VAULT_ADDR".to_owned(), server.url())];
        self.silent = Some(server);
        Some((env, "vault://secret/conformance/good".into()))
    }
    fn destination(&self, _t: &Test) -> Result<String, String> {
        Ok("vault://secret/conformance/written".into())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Aws {
    Sm,
    Ssm,
}

/// moto behind a counting proxy, static credentials.
struct AwsStore {
    which: Aws,
    moto: Moto,
    proxy: MotoProxy,
    silent: Option<FaultServer>,
}

impl AwsStore {
    fn start(which: Aws) -> AwsStore {
        let moto = Moto::start();
        let proxy = MotoProxy::start(moto.port(), Fault::None);
        AwsStore {
            which,
            moto,
            proxy,
            silent: None,
        }
    }
}

impl Store for AwsStore {
    fn prepare(&mut self, mut t: Test) -> (Test, String) {
        let key = t.sentinel("aws-secret-key");
        for (k, v) in Moto::aws_env(&self.proxy.endpoint(), &key) {
            t = t.env(k, v);
        }
        (t, String::new())
    }
    fn put(&mut self, _t: &mut Test, doc: &str, content: &str) -> String {
        match self.which {
            Aws::Sm => {
                self.moto
                    .create_secret(&format!("conformance/{doc}"), content);
                format!("aws-sm://conformance/{doc}")
            }
            Aws::Ssm => {
                let auth = format!(
                    "AWS4-HMAC-SHA256 Credential={}/20240101/{}/ssm/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature={}",
                    moto::ACCESS_KEY_ID,
                    moto::REGION,
                    "0".repeat(64)
                );
                let body = json!({ "Name": format!("/conformance/{doc}"), "Value": content,
                                   "Type": "SecureString" })
                .to_string();
                let (status, _) = self
                    .moto
                    .http(
                        "POST",
                        "/",
                        &[
                            ("X-Amz-Target", "AmazonSSM.PutParameter"),
                            ("Content-Type", "application/x-amz-json-1.1"),
                            ("X-Amz-Date", "20240101T000000Z"),
                            ("Authorization", &auth),
                        ],
                        body.as_bytes(),
                    )
                    .expect("moto PutParameter");
                assert_eq!(status, 200);
                format!("aws-ssm:///conformance/{doc}")
            }
        }
    }
    fn missing(&self) -> String {
        match self.which {
            Aws::Sm => "aws-sm://conformance/missing".into(),
            Aws::Ssm => "aws-ssm:///conformance/missing".into(),
        }
    }
    fn holds_oversize(&self) -> bool {
        false
    }
    fn fetches(&self, _doc: &str) -> Option<usize> {
        // One document of one store: one read request, whichever the operation.
        let reads = [
            "GetSecretValue",
            "BatchGetSecretValue",
            "GetParameters",
            "GetParameter",
        ];
        Some(reads.iter().map(|op| self.proxy.count(op)).sum())
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        let server = silent_server();
        let env = vec![("AWS_ENDPOINT_URL".to_owned(), server.url())];
        self.silent = Some(server);
        let reference = match self.which {
            Aws::Sm => "aws-sm://conformance/good",
            Aws::Ssm => "aws-ssm:///conformance/good",
        };
        Some((env, reference.into()))
    }
    fn destination(&self, _t: &Test) -> Result<String, String> {
        match self.which {
            Aws::Sm => Ok("aws-sm://conformance/written/".into()),
            Aws::Ssm => Err("aws-ssm:///conformance/written".into()),
        }
    }
}

/// GNOME Keyring on a private bus, entries stored with secret-tool; a bus that never answers is
/// a socket nobody accepts on.
struct KeyringStore {
    ss: SecretService,
    silent: Option<(tempfile::TempDir, std::os::unix::net::UnixListener)>,
}

impl KeyringStore {
    fn start() -> KeyringStore {
        KeyringStore {
            ss: SecretService::start(),
            silent: None,
        }
    }
}

impl Store for KeyringStore {
    fn prepare(&mut self, t: Test) -> (Test, String) {
        (
            t.env("DBUS_SESSION_BUS_ADDRESS", self.ss.address()),
            String::new(),
        )
    }
    fn put(&mut self, _t: &mut Test, doc: &str, content: &str) -> String {
        self.ss.store("conformance", doc, content);
        format!("keyring://conformance/{doc}")
    }
    fn missing(&self) -> String {
        "keyring://conformance/missing".into()
    }
    /// secret-tool refuses a value that large ("password is too long").
    fn holds_oversize(&self) -> bool {
        false
    }
    fn fetches(&self, _doc: &str) -> Option<usize> {
        None
    }
    fn hanging(&mut self) -> Option<(Vec<(String, String)>, String)> {
        let dir = tempfile::tempdir().expect("a directory for the silent bus");
        let path = dir.path().join("bus");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the silent bus");
        self.silent = Some((dir, listener));
        let env = vec![(
            "DBUS_SESSION_BUS_ADDRESS".to_owned(),
            format!("unix:path={}", path.display()),
        )];
        Some((env, "keyring://conformance/good".into()))
    }
    fn destination(&self, _t: &Test) -> Result<String, String> {
        Ok("keyring://conformance/".into())
    }
}

/// `check`'s line for a field of an instance.
#[track_caller]
fn line_of<'o>(out: &'o Output, host: &str) -> &'o str {
    let url = format!("https://{host}.example.com");
    out.stdout
        .lines()
        .find(|l| l.contains(&url))
        .unwrap_or_else(|| panic!("check printed no line for {url}\n{}", out.describe()))
}

#[test]
fn every_backend_answers_the_same_situations_the_same_way() {
    for (kind, make) in STORES {
        conformance(kind, make());
    }
}

fn conformance(kind: &str, mut store: Box<dyn Store>) {
    let mut t = Test::new();
    let user = t.sentinel("conf-user");
    let token = t.sentinel("conf-token");
    let doc = json!({ "user": user, "token": token, "number": 3, "empty": "" }).to_string();
    let good = store.put(&mut t, "good", &doc);
    let big = store.holds_oversize().then(|| {
        let filler = "x".repeat(1024 * 1024 + 16);
        store.put(&mut t, "big", &json!({ "pat": filler }).to_string())
    });
    let (t, providers) = store.prepare(t);
    let mut config = format!(
        "{providers}[confluence.\"https://a.example.com\"]\nusername = \"{good}#user\"\n\
         api_token = \"{good}#token\"\n\
         [jira.\"https://missing.example.com\"]\npat = \"{}\"\n\
         [jira.\"https://nokey.example.com\"]\npat = \"{good}#nokey\"\n\
         [jira.\"https://number.example.com\"]\npat = \"{good}#number\"\n\
         [jira.\"https://empty.example.com\"]\npat = \"{good}#empty\"\n",
        store.missing()
    );
    if let Some(big) = &big {
        config.push_str(&format!(
            "[jira.\"https://big.example.com\"]\npat = \"{big}#pat\"\n"
        ));
    }
    let t = t.config_toml(&config);
    let out = t.run_args(["check"]);
    out.assert_code(1);
    let ok = line_of(&out, "a");
    assert!(
        out.stdout
            .lines()
            .filter(|l| l.contains("https://a.example.com"))
            .all(|l| l.ends_with("ok")),
        "{kind}: two fields of one document resolve: {ok}\n{}",
        out.stdout
    );
    let failed = |host: &str, words: &[&str]| {
        let line = line_of(&out, host);
        assert!(line.contains("FAILED"), "{kind}: {host}: {line}");
        assert!(
            words.iter().any(|w| line.contains(w)),
            "{kind}: {host} should say one of {words:?}: {line}"
        );
    };
    failed(
        "missing",
        &[
            "not set",
            "cannot read",
            "exited with status",
            "404",
            "not found",
            "does not exist",
            "ResourceNotFoundException",
            "ParameterNotFound",
            "has no entry",
        ],
    );
    failed("nokey", &["no key `nokey`"]);
    failed("number", &["#number is a number, expected a string"]);
    failed("empty", &["the value is empty"]);
    if big.is_some() {
        failed("big", &["larger than 1024 KiB", "more than 1024 KiB"]);
    }
    if let Some(n) = store.fetches("good") {
        assert_eq!(n, 1, "{kind}: the document two fields use is fetched once");
    }

    // A store that does not answer: the run ends at the deadline, naming the reference.
    let Some((env, reference)) = store.hanging() else {
        t.assert_clean();
        return;
    };
    let t = t.config_toml(&format!(
        "{providers}[jira.\"https://hang.example.com\"]\npat = \"{reference}\"\n"
    ));
    let mut launch = t.launch(["--timeout", "2", "check"]);
    for (k, v) in &env {
        launch = launch.env(k, v);
    }
    let out = launch.run();
    out.assert_code(1);
    let line = line_of(&out, "hang");
    assert!(
        line.contains("FAILED")
            && ["within", "no answer", "timed out"]
                .iter()
                .any(|w| line.contains(w)),
        "{kind}: a silent store ends at the deadline: {line}"
    );
    t.assert_clean();
}

#[test]
fn every_writable_backend_writes_what_it_reads_back() {
    for (kind, make) in STORES {
        write_then_read(kind, make());
    }
}

/// `import` into the store, then `check` through the references it wrote; again (nothing
/// written), and with a changed value (written, read back).
fn write_then_read(kind: &str, mut store: Box<dyn Store>) {
    eprintln!("write, then read: {kind}");
    let mut t = Test::new();
    let app_data = t.cme_default_config();
    let cme_config = |token: &str| {
        json!({ "auth": { "confluence": { "https://a.example.com": {
            "username": "me@example.com", "api_token": token
        } } } })
        .to_string()
    };
    let first = t.sentinel("written-token");
    let second = t.sentinel("rewritten-token");
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        cme_config(&first),
    );
    let (t, providers) = store.prepare(t);
    let mut t = t.allow_secret_in(&app_data);
    if !providers.is_empty() {
        t = t.config_toml(&providers);
    }
    let to = match store.destination(&t) {
        Ok(to) => to,
        Err(to) => {
            let out = t.run_args(["import", "--to", &to]);
            out.assert_code(125);
            out.assert_stderr_contains("cannot store documents");
            return;
        }
    };
    let import = |verb: &str| {
        let out = t.run_args(["import", "--to", &to]);
        out.assert_success();
        out.assert_stdout_contains(&format!(
            "{verb} [confluence.\"https://a.example.com\"] (username, api_token)"
        ))
        .assert_stdout_contains("check: every field resolves");
        t.run_args(["check"]).assert_success();
    };
    import("wrote");
    import("unchanged");
    t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        cme_config(&second),
    );
    import("wrote");
    t.assert_clean();
}
