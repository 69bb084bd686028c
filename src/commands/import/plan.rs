//! The plan, before anything is written: the instances of the cme config with their secret
//! fields and where each document goes, the new `cme-exec.toml` and the secret-free base config,
//! and how each file compares with what is there now.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use cme_exec_providers::provider::Fields;
use secrecy::SecretString;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::target::{State, Target};
use super::SECRET_FIELDS;
use crate::config::{Field, Product};
use crate::error::{self, Error};

/// The largest cme config read.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// One instance of the original config. No `Debug`: it holds secrets.
pub struct Instance {
    pub product: Product,
    /// The key as written in the original (cme's own spelling).
    pub url: String,
    pub secrets: Vec<(Field, SecretString)>,
    pub cloud_id: Option<String>,
    /// Where the document goes (for messages; what the writer takes) and the reference to it.
    pub at: String,
    pub reference: String,
    /// A name for its document: `confluence-company.atlassian.net`.
    name: String,
}

impl Instance {
    /// The document: `{"username": ..., "api_token": ...}`.
    pub fn fields(&self) -> Fields {
        let mut fields = Fields::new();
        for (f, v) in &self.secrets {
            fields.push(f.name(), v.clone());
        }
        fields
    }

    pub fn field_names(&self) -> String {
        self.secrets
            .iter()
            .map(|(f, _)| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn place(&self) -> String {
        format!("[{}.\"{}\"]", self.product, self.url)
    }
}

/// A file import writes beside the store: the base config or `cme-exec.toml`.
pub struct File {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub state: State,
    /// Its key in the JSON report, and what it is in the text report.
    pub key: &'static str,
    pub what: &'static str,
}

/// The plan, before anything is written.
pub struct Plan {
    pub from: PathBuf,
    /// `from`'s canonical path when it was read: `--remove-secrets` rewrites that file.
    pub real: PathBuf,
    pub mode: u32,
    pub instances: Vec<Instance>,
    pub toml_path: PathBuf,
    /// The base config, then `cme-exec.toml` (the order they are written in).
    pub files: [File; 2],
}

impl Plan {
    /// The number of secret fields to import.
    pub fn secret_fields(&self) -> usize {
        self.instances.iter().map(|i| i.secrets.len()).sum()
    }

    /// The first file that exists with other content: the import stops before writing.
    pub fn conflict(&self) -> Option<&Path> {
        self.files
            .iter()
            .find(|f| f.state == State::Other)
            .map(|f| f.path.as_path())
    }

    /// The new `cme-exec.toml`.
    pub fn toml(&self) -> &[u8] {
        &self.files[1].bytes
    }
}

/// Reads the cme config at `from` and plans the import into `target`, the new configuration at
/// `toml_path`.
pub fn plan(from: &Path, target: &Target, toml_path: &Path) -> Result<Plan, Error> {
    let (original, mode) = read_cme_config(from)?;
    let instances = instances_of(from, &original, target)?;
    let base_path = base_path_for(toml_path);
    let base = base_config_of(original);
    let generated = render_toml(from, &base_path, &instances);
    let toml = target.config_bytes(&generated);
    let real = std::fs::canonicalize(from)
        .map_err(|e| Error::new(format!("cannot read {}", from.display())).cause(e.to_string()))?;
    let base_file = File {
        state: existing(&base_path, &base)?,
        path: base_path,
        bytes: base,
        key: "base_config",
        what: "base config: the settings without auth",
    };
    let toml_file = File {
        state: target.config_state(toml.as_deref()),
        path: toml_path.to_owned(),
        // With other content there, nothing is written: the generated part shows the plan.
        bytes: toml.unwrap_or_else(|| generated.into_bytes()),
        key: "config",
        what: "cme-exec.toml",
    };
    Ok(Plan {
        from: from.to_owned(),
        real,
        mode,
        instances,
        toml_path: toml_path.to_owned(),
        files: [base_file, toml_file],
    })
}

/// The cme config as a JSON object (held in wiped buffers), and its mode.
fn read_cme_config(from: &Path) -> Result<(Map<String, Value>, u32), Error> {
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
    match doc {
        Value::Object(original) => Ok((original, meta.mode() & 0o7777)),
        mut other => {
            cme_exec_providers::payload::zeroize_value(&mut other);
            Err(Error::new(format!("{shown} is not a JSON object")))
        }
    }
}

/// Every instance of `auth`, or every problem with it; two instances may not share a name.
fn instances_of(
    from: &Path,
    original: &Map<String, Value>,
    target: &Target,
) -> Result<Vec<Instance>, Error> {
    let shown = from.display();
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
                match instance_of(product, product_name, url, entry, target) {
                    Ok(i) => instances.push(i),
                    Err(mut p) => problems.append(&mut p),
                }
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
    Ok(instances)
}

/// One `auth.PRODUCT.URL` entry: its secret fields and cloud_id, and where its document goes.
fn instance_of(
    product: Product,
    product_name: &str,
    url: &str,
    entry: &Value,
    target: &Target,
) -> Result<Instance, Vec<String>> {
    let url_shown = crate::config::redact_user_info(url);
    if let Err(e) = crate::config::normalise_url(product, url) {
        return Err(vec![format!("auth.{product_name}.{url_shown:?}: {e}")]);
    }
    let Some(entry) = entry.as_object() else {
        return Err(vec![format!(
            "auth.{product_name}.{url_shown:?} is not an object"
        )]);
    };
    let mut secrets = Vec::new();
    let mut problems = Vec::new();
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
    if !problems.is_empty() {
        return Err(problems);
    }
    let cloud_id = entry
        .get("cloud_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let name = format!("{product_name}-{}", crate::config::slug(url));
    let at = target.destination.place(&name);
    Ok(Instance {
        product,
        url: url.trim_end_matches('/').to_owned(),
        secrets,
        cloud_id,
        reference: target.reference(&at),
        at,
        name,
    })
}

/// The cme config without `auth` (its values wiped), as the base config's bytes.
fn base_config_of(original: Map<String, Value>) -> Vec<u8> {
    let mut base_doc = original.clone();
    if let Some(mut auth) = base_doc.remove("auth") {
        cme_exec_providers::payload::zeroize_value(&mut auth);
    }
    cme_exec_providers::payload::zeroize_value(&mut Value::Object(original));
    let mut base = serde_json::to_vec_pretty(&Value::Object(base_doc)).expect("JSON serialises");
    base.push(b'\n');
    base
}

/// `config.toml` -> `config.base.json` beside it.
pub fn base_path_for(toml_path: &Path) -> PathBuf {
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

/// Import's part of `cme-exec.toml`: the base config, and per instance its reference and
/// cloud_id. Only instances with a secret need a document; the others keep their cloud_id only.
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

/// What is at `path`, compared with the `bytes` import would write there.
fn existing(path: &Path, bytes: &[u8]) -> Result<State, Error> {
    match std::fs::read(path) {
        Ok(old) if old == bytes => Ok(State::Same),
        Ok(_) => Ok(State::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::Absent),
        Err(e) => Err(Error::new(format!("cannot read {}", path.display())).cause(e.to_string())),
    }
}
