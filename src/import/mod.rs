//! `cme-exec import`: move the secrets of an existing cme config into a store.
//!
//! 1. Read the cme config cme itself would read (`--from`, else `$CME_CONFIG_PATH`, else
//!    `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`).
//! 2. Plan: one document per instance holding its secret fields (`username`, `api_token`,
//!    `pat`, `session_cookies`) in the store named by `--to`; `cloud_id` stays in the
//!    configuration as a literal; every other setting goes into a secret-free base config beside
//!    the new `cme-exec.toml`.
//! 3. Refuse before writing anything when the new `cme-exec.toml` or base config exists with
//!    other content (a second run finds them identical and changes nothing).
//! 4. Write each document (skipped when the store already holds exactly it), the base config,
//!    `cme-exec.toml`.
//! 5. Resolve the new configuration and compare every value with the original's.
//! 6. Only then, with `--remove-secrets`, rewrite the original without the secret values that
//!    were imported and read back: under the write-back lock (the same one `run` takes on a base
//!    config), the file is read again and only those values are removed, so that an edit made
//!    while the import waited on its store survives. A field added meanwhile stays in the file;
//!    an instance whose imported value changed meanwhile keeps all its fields (the store has the
//!    earlier value), and both are named in a warning. Atomically, the file's mode kept.
//!
//! No value is printed or logged; documents are held in wiped buffers; a failure names what was
//! written where and leaves the original untouched.

#[cfg(feature = "aws-sm")]
mod aws_sm;
mod file;
#[cfg(feature = "vault")]
mod vault;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use cme_exec_providers::EnvReader;

use crate::cli::{CheckArgs, Cli, Command, Format, ImportArgs};
use crate::config::{Field, Product};
use crate::envnames as names;
use crate::error::{self, Error};
use crate::exit::Exit;

/// The secret fields, in the order cme declares them.
const SECRET_FIELDS: [Field; 4] = [
    Field::Username,
    Field::ApiToken,
    Field::Pat,
    Field::SessionCookies,
];

/// The largest cme config read.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Where the documents go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `file:///dir`: one 0600 JSON file per instance in a 0700 directory.
    File(PathBuf),
    /// `vault://mount/prefix`: one KV v2 document per instance.
    Vault { mount: String, prefix: String },
    /// `aws-sm://prefix/`: one secret per instance.
    AwsSm { prefix: String },
}

impl Destination {
    pub fn parse(raw: &str) -> Result<Destination, Error> {
        let bad = |why: &str| {
            Error::new(format!("--to {raw:?}: {why}"))
                .hint("use file:///DIR, vault://MOUNT/PREFIX or aws-sm://PREFIX/")
        };
        if let Some(rest) = raw.strip_prefix("file://") {
            let path = PathBuf::from(rest);
            if !path.is_absolute() {
                return Err(bad(
                    "a file destination is an absolute directory (file:///dir)",
                ));
            }
            return Ok(Destination::File(path));
        }
        if let Some(rest) = raw.strip_prefix("vault://") {
            let rest = rest.trim_matches('/');
            let (mount, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if mount.is_empty() || rest.contains("//") || rest.contains(['?', '#']) {
                return Err(bad("expected vault://MOUNT/PREFIX (a KV v2 mount)"));
            }
            // KV v2's API path, not a vault:// address: reads refuse it with the same hint.
            if let Some(after) = prefix
                .strip_prefix("data")
                .filter(|r| r.is_empty() || r.starts_with('/'))
            {
                let fixed = format!("vault://{mount}{after}");
                return Err(Error::new(format!(
                    "--to {raw:?}: `data/` is part of KV v2's API path, not of a vault:// address"
                ))
                .hint(format!(
                    "leave `data/` out of --to: cme-exec adds it for KV v2 ({fixed})"
                )));
            }
            return Ok(Destination::Vault {
                mount: mount.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(rest) = raw.strip_prefix("aws-sm://") {
            if rest.contains(['?', '#']) || rest.starts_with('/') {
                return Err(bad("expected aws-sm://PREFIX/ (a secret name prefix)"));
            }
            return Ok(Destination::AwsSm {
                prefix: rest.to_owned(),
            });
        }
        Err(bad("unknown destination"))
    }

    /// Where one instance's document goes, and the reference that reads it back.
    fn place(&self, name: &str) -> (String, String) {
        match self {
            Destination::File(dir) => {
                let p = dir.join(format!("{name}.json"));
                (p.display().to_string(), format!("file://{}", p.display()))
            }
            Destination::Vault { mount, prefix } => {
                let path = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                (format!("{mount}/{path}"), format!("vault://{mount}/{path}"))
            }
            Destination::AwsSm { prefix } => {
                let id = format!("{prefix}{name}");
                (id.clone(), format!("aws-sm://{id}"))
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Destination::File(_) => "file",
            Destination::Vault { .. } => "Vault KV v2",
            Destination::AwsSm { .. } => "AWS Secrets Manager",
        }
    }
}

/// One instance of the original config. No `Debug`: it holds secrets.
struct Instance {
    product: Product,
    /// The key as written in the original (cme's own spelling).
    url: String,
    secrets: Vec<(Field, SecretString)>,
    cloud_id: Option<String>,
    /// A name for its document: `confluence-company.atlassian.net`.
    name: String,
    /// Where the document goes (for messages) and the reference to it.
    at: String,
    reference: String,
}

impl Instance {
    /// The document: `{"username": ..., "api_token": ...}` in a wiped buffer.
    fn document(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.push(b'{');
        for (i, (f, v)) in self.secrets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"{}\":", f.name()).as_bytes());
            let quoted = Zeroizing::new(
                serde_json::to_string(v.expose_secret()).expect("a string serialises"),
            );
            out.extend_from_slice(quoted.as_bytes());
        }
        out.extend_from_slice(b"}\n");
        out
    }

    fn field_names(&self) -> String {
        self.secrets
            .iter()
            .map(|(f, _)| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn place(&self) -> String {
        format!("[{}.\"{}\"]", self.product, self.url)
    }
}

/// Where cme finds its config: `$CME_CONFIG_PATH` (as given, relative to the working
/// directory), else `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`.
fn cme_config_path(env: &EnvReader) -> PathBuf {
    if let Some(p) = env.var(names::CME_CONFIG_PATH).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    config_home(env).join("confluence-markdown-exporter/app_data.json")
}

fn config_home(env: &EnvReader) -> PathBuf {
    env.var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
}

/// The plan, before anything is written.
struct Plan {
    from: PathBuf,
    /// `from`'s canonical path when it was read: `--remove-secrets` rewrites that file.
    real: PathBuf,
    mode: u32,
    instances: Vec<Instance>,
    toml_path: PathBuf,
    toml: String,
    base_path: PathBuf,
    base: Vec<u8>,
}

pub fn import(cli: &Cli, args: &ImportArgs) -> Exit {
    let mut out = Out::new(args);
    let exit = match import_inner(cli, args, &mut out) {
        Ok(exit) => exit,
        Err(e) => {
            out.doc.insert("ok".into(), Value::Bool(false));
            out.doc.insert("error".into(), Value::String(e.to_string()));
            error::print(&e);
            Exit::Failed
        }
    };
    out.finish();
    exit
}

/// What import reports: lines as it goes (`--format text`), or one JSON document at the end
/// (`--format json`: `ok`, `error`, `from`, `to`, `dry_run`, `instances`, `files`, `verified`,
/// `removed`, `use`). Warnings go to stderr in both.
struct Out {
    json: bool,
    doc: serde_json::Map<String, Value>,
}

impl Out {
    fn new(args: &ImportArgs) -> Out {
        let mut doc = serde_json::Map::new();
        doc.insert("ok".into(), Value::Bool(true));
        doc.insert("error".into(), Value::Null);
        doc.insert("to".into(), Value::String(args.to.clone()));
        doc.insert("dry_run".into(), Value::Bool(args.dry_run));
        for key in [
            "from",
            "config",
            "base_config",
            "verified",
            "removed",
            "use",
        ] {
            doc.insert(key.into(), Value::Null);
        }
        doc.insert("instances".into(), Value::Array(Vec::new()));
        doc.insert("files".into(), Value::Array(Vec::new()));
        Out {
            json: args.format == Format::Json,
            doc,
        }
    }

    /// A line of the text report.
    fn line(&self, text: &str) {
        if !self.json {
            crate::outln!("{}", error::strip_controls(text));
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        self.doc.insert(key.into(), value);
    }

    fn push(&mut self, key: &str, value: Value) {
        if let Some(Value::Array(items)) = self.doc.get_mut(key) {
            items.push(value);
        }
    }

    fn finish(self) {
        if self.json {
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&Value::Object(self.doc)).unwrap_or_default()
            );
        }
    }
}

/// How a file import writes compares with what is there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Absent,
    /// It holds exactly what import would write.
    Same,
    /// It holds something else: never overwritten.
    Other,
}

fn import_inner(cli: &Cli, args: &ImportArgs, out: &mut Out) -> Result<Exit, Error> {
    let env = EnvReader::from_process();
    let destination = Destination::parse(&args.to)?;
    let from = args.from.clone().unwrap_or_else(|| cme_config_path(&env));
    let default_toml = config_home(&env).join("cme-exec/config.toml");
    // Absolute: the path printed at the end must still name the file from elsewhere.
    let toml_path = cli
        .config
        .as_deref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
        .unwrap_or_else(|| default_toml.clone());
    out.set("from", json!(from.display().to_string()));
    out.set("config", json!(toml_path.display().to_string()));
    out.set(
        "base_config",
        json!(base_path_for(&toml_path).display().to_string()),
    );
    let plan = plan(&from, &destination, &toml_path)?;
    let total: usize = plan.instances.iter().map(|i| i.secrets.len()).sum();
    let fields = |n: usize| format!("{n} secret field{}", if n == 1 { "" } else { "s" });
    out.line(&format!(
        "import: {}: {} instance{}, {}",
        plan.from.display(),
        plan.instances.len(),
        if plan.instances.len() == 1 { "" } else { "s" },
        fields(total)
    ));
    if total == 0 {
        out.line(&format!(
            "nothing to import: {} holds no secret field (username, api_token, pat, session_cookies)",
            plan.from.display()
        ));
        return Ok(Exit::Success);
    }

    // Refuse before writing anything.
    let toml_state = existing(&plan.toml_path, plan.toml.as_bytes())?;
    let base_state = existing(&plan.base_path, &plan.base)?;
    let files = [
        (
            &plan.base_path,
            plan.base.as_slice(),
            base_state,
            "base_config",
            "base config: the settings without auth",
        ),
        (
            &plan.toml_path,
            plan.toml.as_bytes(),
            toml_state,
            "config",
            "cme-exec.toml",
        ),
    ];
    let conflict = files
        .iter()
        .find(|(_, _, state, _, _)| *state == State::Other)
        .map(|(path, ..)| (*path).clone());
    if args.dry_run {
        for i in &plan.instances {
            let action = if i.secrets.is_empty() {
                "none"
            } else {
                out.line(&format!(
                    "would write {} ({}) to {} {}",
                    i.place(),
                    i.field_names(),
                    destination.describe(),
                    i.at
                ));
                "would_write"
            };
            out.push("instances", instance_json(i, action));
        }
        for (path, _, state, key, what) in &files {
            let shown = path.display();
            let action = match state {
                State::Absent => {
                    out.line(&format!("would write {shown} ({what})"));
                    "would_write"
                }
                State::Same => {
                    out.line(&format!("unchanged {shown} ({what})"));
                    "unchanged"
                }
                State::Other => {
                    out.line(&format!(
                        "would stop here: {shown} ({what}) exists with other content"
                    ));
                    "conflict"
                }
            };
            out.push("files", file_json(path, key, action));
        }
        if let Some(path) = conflict {
            return Err(exists_error(&path).hint(EXISTS_HINT));
        }
        if args.remove_secrets {
            out.line(&format!(
                "would then remove {} from {} (mode {:04o} kept)",
                fields(total),
                plan.from.display(),
                plan.mode
            ));
        }
        out.line("dry run: nothing was written");
        return Ok(Exit::Success);
    }
    if let Some(path) = conflict {
        return Err(Error::new(format!(
            "{} exists with other content; nothing was written",
            path.display()
        ))
        .hint(EXISTS_HINT));
    }

    let mut written: Vec<String> = Vec::new();
    let halfway = |e: Error, written: &[String]| -> Error {
        let mut e = e;
        if written.is_empty() {
            e = e.detail("nothing was written");
        } else {
            e = e.detail("written so far:");
            for w in written {
                e = e.detail(format!("  {w}"));
            }
        }
        e.detail(format!("{} was not changed", plan.from.display()))
    };
    let rt = crate::commands::runtime()?;
    let wrote = rt
        .block_on(write_documents(
            &destination,
            &plan.instances,
            &env,
            cli.timeout,
        ))
        .map_err(|(e, done)| halfway(e, &done))?;
    for (i, changed) in plan.instances.iter().zip(&wrote) {
        if i.secrets.is_empty() {
            out.line(&format!("{}: no secret field; nothing to store", i.place()));
            out.push("instances", instance_json(i, "none"));
            continue;
        }
        let verb = if *changed { "wrote" } else { "unchanged" };
        out.line(&format!(
            "{verb} {} ({}) -> {}",
            i.place(),
            i.field_names(),
            i.reference
        ));
        out.push("instances", instance_json(i, verb));
        if *changed {
            written.push(format!("{} in {}", i.at, destination.describe()));
        }
    }
    for (path, bytes, state, key, what) in &files {
        let what = if *key == "base_config" {
            "base config"
        } else {
            what
        };
        if *state == State::Same {
            out.line(&format!("unchanged {} ({what})", path.display()));
            out.push("files", file_json(path, key, "unchanged"));
        } else {
            crate::atomic::write(path, bytes, 0o600).map_err(|e| halfway(e, &written))?;
            out.line(&format!("wrote {} ({what})", path.display()));
            out.push("files", file_json(path, key, "wrote"));
            written.push(path.display().to_string());
        }
    }

    // Read everything back through the new configuration, as `run` will.
    verify(cli, &plan).map_err(|e| halfway(e, &written))?;
    out.set("verified", Value::Bool(true));
    out.line(&format!(
        "check: every field resolves through {} to the value imported",
        plan.toml_path.display()
    ));

    if args.remove_secrets {
        let removal = remove_secrets(&plan, std::time::Duration::from_secs_f64(cli.timeout))?;
        for w in &removal.warnings {
            error::warn(w);
        }
        out.set(
            "removed",
            json!({
                "fields": removal.removed,
                "kept": removal.kept,
                "mode": format!("{:04o}", removal.mode),
                "warnings": removal.warnings,
            }),
        );
        if removal.removed > 0 {
            out.line(&format!(
                "removed {} from {} (mode {:04o} kept)",
                fields(removal.removed),
                plan.from.display(),
                removal.mode
            ));
        }
        if removal.kept > 0 {
            out.line(&format!(
                "{} still holds {} (named above){}",
                plan.from.display(),
                fields(removal.kept),
                if removal.removed == 0 {
                    "; nothing was removed"
                } else {
                    ""
                }
            ));
        }
    } else {
        out.line(&format!(
            "{} still holds the secrets: run again with --remove-secrets to remove them",
            plan.from.display()
        ));
    }
    // cme-exec finds only its default path by itself: say how to use another one.
    if plan.toml_path != default_toml {
        let absolute = std::fs::canonicalize(&plan.toml_path)
            .or_else(|_| std::path::absolute(&plan.toml_path))
            .unwrap_or_else(|_| plan.toml_path.clone());
        let value = absolute.display().to_string();
        out.line(&format!(
            "to use it: export CME_EXEC_CONFIG={}   (or cme-exec --config {} ...)",
            shell_word(&value),
            shell_word(&value)
        ));
        out.set("use", json!({ "CME_EXEC_CONFIG": value }));
    }
    Ok(Exit::Success)
}

const EXISTS_HINT: &str = "import into another file with --config NEW.toml (the base config is written beside it), or move the file away";

fn exists_error(path: &Path) -> Error {
    Error::new(format!(
        "{} exists with other content: the import would stop there, before writing anything",
        path.display()
    ))
}

fn instance_json(i: &Instance, action: &str) -> Value {
    json!({
        "product": i.product.name(),
        "url": i.url,
        "fields": i.secrets.iter().map(|(f, _)| f.name()).collect::<Vec<_>>(),
        "at": (!i.secrets.is_empty()).then_some(i.at.as_str()),
        "reference": (!i.secrets.is_empty()).then_some(i.reference.as_str()),
        "cloud_id": i.cloud_id,
        "action": action,
    })
}

fn file_json(path: &Path, what: &str, action: &str) -> Value {
    json!({ "path": path.display().to_string(), "what": what, "action": action })
}

/// A path as one shell word: as is when it needs no quoting, else in single quotes.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/=:,+@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What is at `path`, compared with the `bytes` import would write there.
fn existing(path: &Path, bytes: &[u8]) -> Result<State, Error> {
    match std::fs::read(path) {
        Ok(old) if old == bytes => Ok(State::Same),
        Ok(_) => Ok(State::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::Absent),
        Err(e) => Err(Error::new(format!("cannot read {}", path.display())).cause(e.to_string())),
    }
}

fn plan(from: &Path, destination: &Destination, toml_path: &Path) -> Result<Plan, Error> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = from.display();
    let meta = std::fs::metadata(from).map_err(|e| {
        Error::new(format!("cannot read the cme config {shown}"))
            .cause(e.to_string())
            .hint("give it with --from PATH (cme's own: `cme config path`)")
    })?;
    if meta.len() > MAX_BYTES {
        return Err(Error::new(format!("{shown} is larger than 4 MiB")));
    }
    let bytes = Zeroizing::new(
        std::fs::read(from)
            .map_err(|e| Error::new(format!("cannot read {shown}")).cause(e.to_string()))?,
    );
    // serde_json's message may quote the text around a syntax error: only its position is shown.
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(format!(
            "{shown} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(original) = doc else {
        return Err(Error::new(format!("{shown} is not a JSON object")));
    };
    let mut instances = Vec::new();
    let mut problems = Vec::new();
    if let Some(auth) = original.get("auth") {
        let Some(auth) = auth.as_object() else {
            return Err(Error::new(format!("{shown}: auth is not an object")));
        };
        for (product_name, entries) in auth {
            let Some(product) = Product::from_name(product_name) else {
                problems.push(format!(
                    "auth.{}: unknown product (expected confluence, jira)",
                    error::strip_controls(product_name)
                ));
                continue;
            };
            let Some(entries) = entries.as_object() else {
                problems.push(format!("auth.{product_name} is not an object"));
                continue;
            };
            for (url, entry) in entries {
                let url_shown = crate::config::redact_user_info(url);
                if let Err(e) = crate::config::normalise_url(product, url) {
                    problems.push(format!("auth.{product_name}.{url_shown:?}: {e}"));
                    continue;
                }
                let Some(entry) = entry.as_object() else {
                    problems.push(format!(
                        "auth.{product_name}.{url_shown:?} is not an object"
                    ));
                    continue;
                };
                let mut secrets = Vec::new();
                for f in SECRET_FIELDS {
                    match entry.get(f.name()) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) if s.trim().is_empty() => {}
                        Some(Value::String(s)) => secrets.push((f, SecretString::from(s.clone()))),
                        Some(_) => problems.push(format!(
                            "auth.{product_name}.{url_shown:?}.{}: not a string",
                            f.name()
                        )),
                    }
                }
                let cloud_id = entry
                    .get("cloud_id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_owned);
                let name = format!("{product_name}-{}", crate::config::slug(url));
                let (at, reference) = destination.place(&name);
                instances.push(Instance {
                    product,
                    url: url.trim_end_matches('/').to_owned(),
                    secrets,
                    cloud_id,
                    name,
                    at,
                    reference,
                });
            }
        }
    }
    if !problems.is_empty() {
        let mut e = Error::new(format!("{shown}: cannot import"));
        for p in problems {
            e = e.detail(p);
        }
        return Err(e);
    }
    let mut names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::new(format!(
            "{shown}: two instances would be stored under the same name {}",
            w[0]
        )));
    }
    // Only instances with a secret need a document; the others keep their cloud_id only.
    let base_path = base_path_for(toml_path);
    let mut base_doc = original.clone();
    if let Some(mut auth) = base_doc.remove("auth") {
        cme_exec_providers::payload::zeroize_value(&mut auth);
    }
    cme_exec_providers::payload::zeroize_value(&mut Value::Object(original));
    let mut base = serde_json::to_vec_pretty(&Value::Object(base_doc)).expect("JSON serialises");
    base.push(b'\n');
    let toml = render_toml(from, &base_path, &instances);
    let real = std::fs::canonicalize(from)
        .map_err(|e| Error::new(format!("cannot read {shown}")).cause(e.to_string()))?;
    Ok(Plan {
        from: from.to_owned(),
        real,
        mode: meta.mode() & 0o7777,
        instances,
        toml_path: toml_path.to_owned(),
        toml,
        base_path,
        base,
    })
}

/// `config.toml` -> `config.base.json` beside it.
fn base_path_for(toml_path: &Path) -> PathBuf {
    let stem = toml_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cme-exec".into());
    toml_path.with_file_name(format!("{stem}.base.json"))
}

fn toml_string(s: &str) -> String {
    // A TOML basic string is a JSON string for everything written here.
    serde_json::to_string(s).expect("a string serialises")
}

fn render_toml(from: &Path, base_path: &Path, instances: &[Instance]) -> String {
    let mut out = format!(
        "# Written by `cme-exec import` from {}.\n# References only: the values are in the store.\n\n[cme]\nbase_config = {}\n",
        from.display(),
        toml_string(
            &base_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
    );
    for i in instances {
        if i.secrets.is_empty() && i.cloud_id.is_none() {
            continue;
        }
        out.push_str(&format!(
            "\n[{}.{}]\n",
            i.product.name(),
            toml_string(&i.url)
        ));
        if !i.secrets.is_empty() {
            out.push_str(&format!("from = {}\n", toml_string(&i.reference)));
        }
        if let Some(c) = &i.cloud_id {
            out.push_str(&format!("cloud_id = {}\n", toml_string(c)));
        }
    }
    out
}

/// Writes each instance's document; `Ok(changed)` per instance, or the error and what was
/// written before it.
async fn write_documents(
    destination: &Destination,
    instances: &[Instance],
    env: &EnvReader,
    timeout: f64,
) -> Result<Vec<bool>, (Error, Vec<String>)> {
    let mut changed = Vec::new();
    let mut done = Vec::new();
    let deadline = std::time::Duration::from_secs_f64(timeout);
    let writer = Writer::new(destination, env, deadline)
        .await
        .map_err(|e| (e, Vec::new()))?;
    for i in instances.iter().filter(|i| !i.secrets.is_empty()) {
        let doc = i.document();
        let result = tokio::time::timeout(deadline, writer.write(&i.name, &i.at, &doc))
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(format!(
                    "{}: no answer within {} s (see --timeout)",
                    i.at, timeout
                )))
            });
        match result {
            Ok(c) => {
                if c {
                    done.push(format!("{} in {}", i.at, destination.describe()));
                }
                changed.push(c);
            }
            Err(e) => return Err((e.detail(format!("while writing {}", i.place())), done)),
        }
    }
    // Instances without secrets get no document.
    let mut out = Vec::new();
    let mut it = changed.into_iter();
    for i in instances {
        out.push(if i.secrets.is_empty() {
            false
        } else {
            it.next().unwrap_or(false)
        });
    }
    Ok(out)
}

/// One writer per destination kind.
enum Writer {
    File(file::Writer),
    #[cfg(feature = "vault")]
    Vault(Box<vault::Writer>),
    #[cfg(feature = "aws-sm")]
    AwsSm(aws_sm::Writer),
}

impl Writer {
    async fn new(
        destination: &Destination,
        env: &EnvReader,
        timeout: std::time::Duration,
    ) -> Result<Writer, Error> {
        let _ = (env, timeout);
        match destination {
            Destination::File(dir) => Ok(Writer::File(file::Writer::new(dir)?)),
            #[cfg(feature = "vault")]
            Destination::Vault { mount, .. } => Ok(Writer::Vault(Box::new(vault::Writer::new(
                mount, env, timeout,
            )?))),
            #[cfg(not(feature = "vault"))]
            Destination::Vault { .. } => Err(Error::new(
                "importing into Vault is not available in this build of cme-exec",
            )
            .hint("rebuild with `--features vault` (on by default)")),
            #[cfg(feature = "aws-sm")]
            Destination::AwsSm { .. } => Ok(Writer::AwsSm(aws_sm::Writer::new(timeout).await)),
            #[cfg(not(feature = "aws-sm"))]
            Destination::AwsSm { .. } => Err(Error::new(
                "importing into AWS Secrets Manager is not available in this build of cme-exec",
            )
            .hint("rebuild with `--features aws-sm` (on by default)")),
        }
    }

    /// Writes one document unless the store already holds exactly it; `Ok(true)` when written.
    async fn write(&self, name: &str, at: &str, doc: &Zeroizing<Vec<u8>>) -> Result<bool, Error> {
        let _ = (name, at);
        match self {
            Writer::File(w) => w.write(name, doc),
            #[cfg(feature = "vault")]
            Writer::Vault(w) => w.write(at, doc).await,
            #[cfg(feature = "aws-sm")]
            Writer::AwsSm(w) => w.write(at, doc).await,
        }
    }
}

/// Resolves the new configuration and compares every value with the original's.
fn verify(cli: &Cli, plan: &Plan) -> Result<(), Error> {
    let check_cli = Cli {
        config: Some(plan.toml_path.clone()),
        verbose: cli.verbose,
        timeout: cli.timeout,
        command: Command::Check(CheckArgs {
            format: Format::Text,
            live: false,
            offline: false,
            warn_within: crate::expiry::DEFAULT_WARN_DAYS,
            fail_within: None,
        }),
    };
    let prepared = crate::commands::prepare(&check_cli)?;
    let resolution =
        crate::commands::resolve_blocking(&check_cli, &prepared, false).map_err(|(_, e)| e)?;
    if !resolution.is_ok() {
        return Err(Error::new("the new configuration does not resolve")
            .cause(resolution.error().to_string()));
    }
    let mut mismatches = Vec::new();
    for i in &plan.instances {
        let key = (
            i.product,
            crate::config::normalise_url(i.product, &i.url).unwrap_or_default(),
        );
        let got = resolution.auth.instances.get(&key);
        for (f, v) in &i.secrets {
            let same = got
                .and_then(|g| g.fields.get(f))
                .is_some_and(|g| g.secret.expose_secret() == v.expose_secret());
            if !same {
                mismatches.push(format!("{} {}", i.place(), f.name()));
            }
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        let mut e = Error::new(
            "the new configuration resolves, but not to the values imported (never shown)",
        );
        for m in mismatches {
            e = e.detail(m);
        }
        Err(e)
    }
}

/// What `--remove-secrets` did.
#[derive(Debug, Default)]
struct Removal {
    /// Secret fields removed from the file.
    removed: usize,
    /// Secret fields the file still holds.
    kept: usize,
    /// Why each kept field was kept (instance and field, never a value).
    warnings: Vec<String>,
    /// The file's mode, kept.
    mode: u32,
}

/// Rewrites the original without the secret values that were imported and read back (every
/// value of the plan: [`verify`] failed otherwise). Under the write-back lock, from the file as
/// it is now: a field that is not in the plan, or whose value is not the one imported, is kept,
/// and so is every other field of its instance (so that importing again stores them together).
fn remove_secrets(plan: &Plan, wait: std::time::Duration) -> Result<Removal, Error> {
    use crate::cme_config::writeback::{Locked, Purpose, Unread};
    let shown = plan.from.display();
    let untouched =
        "the store and the new configuration are complete; the original still holds its secrets";
    let locked = Locked::acquire(&plan.real, &plan.from, wait, Purpose::Import)
        .map_err(|e| e.detail(untouched))?;
    let current = match locked.read() {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Ok(Removal {
                warnings: vec![format!(
                    "{shown} was removed during the import; nothing was removed from it"
                )],
                ..Removal::default()
            })
        }
        Err(why) => {
            let e = match why {
                Unread::Link => Error::new(format!(
                    "{shown} was replaced by a symbolic link during the import; nothing was written through it"
                )),
                Unread::NotFile => Error::new(format!("{shown} is no longer a regular file")),
                Unread::TooLarge => Error::new(format!("{shown} is larger than 4 MiB")),
                Unread::Io(e) => Error::new(format!("cannot read {shown}")).cause(e.to_string()),
            };
            return Err(e.detail(untouched));
        }
    };
    let mut doc = match serde_json::from_slice::<Value>(&current.bytes) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(Error::new(format!(
                "{shown} changed during the import and is no longer a JSON object; it was left as it is"
            ))
            .detail(untouched))
        }
    };
    let mut removal = Removal {
        mode: current.mode,
        ..Removal::default()
    };
    if let Some(Value::Object(auth)) = doc.get_mut("auth") {
        for (product_name, entries) in auth.iter_mut() {
            let Some(entries) = entries.as_object_mut() else {
                continue;
            };
            let product = Product::from_name(product_name);
            for (url, entry) in entries.iter_mut() {
                let Some(entry) = entry.as_object_mut() else {
                    continue;
                };
                let place = format!(
                    "auth.{}[{:?}]",
                    error::strip_controls(product_name),
                    crate::config::redact_user_info(url)
                );
                let imported = product.and_then(|p| {
                    let key = crate::cme_config::normalised_key(p, url);
                    plan.instances.iter().find(|i| {
                        i.product == p && crate::cme_config::normalised_key(p, &i.url) == key
                    })
                });
                let held: Vec<Field> = SECRET_FIELDS
                    .into_iter()
                    .filter(|f| {
                        entry
                            .get(f.name())
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.trim().is_empty())
                    })
                    .collect();
                if held.is_empty() {
                    continue;
                }
                let Some(instance) = imported else {
                    for f in &held {
                        removal.warnings.push(format!(
                            "{place}.{} was added to {shown} during the import and was not imported; it is still there",
                            f.name()
                        ));
                    }
                    removal.kept += held.len();
                    continue;
                };
                // Each held field: imported with exactly this value, or why not.
                let mut reasons = Vec::new();
                for f in &held {
                    let now = entry.get(f.name()).and_then(Value::as_str).unwrap_or("");
                    match instance.secrets.iter().find(|(g, _)| g == f) {
                        Some((_, v)) if v.expose_secret() == now => {}
                        Some(_) => reasons.push(format!(
                            "{place}.{} changed in {shown} during the import: the store holds the value it had before; this instance's secret fields were kept in the file (run the import again to store the new value)",
                            f.name()
                        )),
                        None => reasons.push(format!(
                            "{place}.{} was added to {shown} during the import: this instance's secret fields were kept in the file (run the import again to store it)",
                            f.name()
                        )),
                    }
                }
                if reasons.is_empty() {
                    for f in &held {
                        if let Some(mut v) = entry.remove(f.name()) {
                            cme_exec_providers::payload::zeroize_value(&mut v);
                        }
                    }
                    removal.removed += held.len();
                } else {
                    removal.warnings.extend(reasons);
                    removal.kept += held.len();
                }
            }
        }
    }
    let mut whole = Value::Object(doc);
    let written = if removal.removed > 0 {
        let mut bytes = Zeroizing::new(serde_json::to_vec_pretty(&whole).expect("JSON serialises"));
        bytes.push(b'\n');
        locked.replace(&bytes, current.mode)
    } else {
        Ok(())
    };
    cme_exec_providers::payload::zeroize_value(&mut whole);
    written.map_err(|e| e.detail(untouched))?;
    Ok(removal)
}

/// A document's fields as a map, for writers that compare with what the store holds.
#[cfg_attr(not(feature = "vault"), allow(dead_code))]
fn fields_of(doc: &[u8]) -> BTreeMap<String, SecretString> {
    let v: Value = serde_json::from_slice(doc).unwrap_or(Value::Null);
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), SecretString::from(v.as_str()?.to_owned()))))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            Destination::parse("file:///run/s").unwrap(),
            Destination::File("/run/s".into())
        );
        assert!(Destination::parse("file:rel").is_err());
        assert_eq!(
            Destination::parse("vault://secret/cme/").unwrap(),
            Destination::Vault {
                mount: "secret".into(),
                prefix: "cme".into()
            }
        );
        assert_eq!(
            Destination::parse("aws-sm://prod/cme/").unwrap(),
            Destination::AwsSm {
                prefix: "prod/cme/".into()
            }
        );
        assert!(Destination::parse("s3://x").is_err());
        for raw in ["vault://secret/data/cme", "vault://secret/data"] {
            let e = Destination::parse(raw).unwrap_err().to_string();
            assert!(e.contains("leave `data/` out of --to"), "{e}");
        }
        assert!(Destination::parse("vault://secret/database/cme").is_ok());
    }

    #[test]
    fn slugs() {
        assert_eq!(
            crate::config::slug("https://Company.atlassian.net/"),
            "company.atlassian.net"
        );
        assert_eq!(
            crate::config::slug("https://wiki.example.org:8443/confluence"),
            "wiki.example.org-8443-confluence"
        );
    }
}
