//! The base config: the user's own cme settings, without secrets.
//!
//! Found at `[cme] base_config` (relative to the config file), else where cme itself would
//! look: `$CME_CONFIG_PATH`, else `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`
//! (`~/.config/...`). A missing file is an empty base. A file that holds a secret is refused:
//! cme-exec exists so that tokens are not kept on disk, and silently mixing the two sources
//! would hide which one cme used.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use cme_exec_providers::context::EnvReader;
use serde_json::{Map, Value};

use super::schema;
use crate::config::Config;
use crate::envnames as names;
use crate::error::Error;

/// The largest base config accepted.
pub const MAX_BASE_BYTES: u64 = 4 * 1024 * 1024;

pub struct BaseConfig {
    pub path: PathBuf,
    pub exists: bool,
    /// The document as written (key order kept); empty when the file does not exist.
    pub doc: Map<String, Value>,
    /// The file's permission bits, kept by write-back.
    pub mode: Option<u32>,
    pub size_hint: usize,
}

/// Where the base config is.
pub fn locate(config: &Config, env: &EnvReader, base_dir: &Path) -> PathBuf {
    if let Some(p) = &config.cme.base_config {
        return base_dir.join(p);
    }
    if let Some(p) = env.var(names::CME_CONFIG_PATH) {
        return base_dir_independent(&p);
    }
    let config_home = env
        .var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config_home
        .join("confluence-markdown-exporter")
        .join("app_data.json")
}

/// `$CME_CONFIG_PATH` is used verbatim by cme, relative to the working directory.
fn base_dir_independent(p: &str) -> PathBuf {
    PathBuf::from(p)
}

/// Loads and checks the base config.
pub fn load(path: &Path) -> Result<BaseConfig, Error> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BaseConfig {
                path: path.to_owned(),
                exists: false,
                doc: Map::new(),
                mode: None,
                size_hint: 0,
            })
        }
        Err(e) => {
            return Err(
                Error::new(format!("cannot read the base config {shown}")).cause(e.to_string())
            )
        }
    };
    if !meta.is_file() {
        return Err(Error::new(format!(
            "the base config {shown} is not a regular file"
        )));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(Error::new(format!(
            "the base config {shown} is writable by other users, who could change where cme sends the credentials"
        ))
        .hint(format!("chmod o-w {shown}")));
    }
    if meta.len() > MAX_BASE_BYTES {
        return Err(Error::new(format!(
            "the base config {shown} is larger than 4 MiB"
        )));
    }
    let bytes = fs_err::read(path).map_err(|e| {
        Error::new(format!("cannot read the base config {shown}")).cause(e.to_string())
    })?;
    let doc = parse(&bytes).map_err(|m| Error::new(format!("the base config {shown} {m}")))?;
    check(&doc).map_err(|e| {
        // Two problems, two reasons: cme drops a file that does not fit its schema (every
        // setting in it lost), while a credential in a file valid for cme would stay there in
        // plain text beside the ones from the stores.
        let invalid = !schema::validate(&Value::Object(doc.clone())).is_empty();
        let secrets = !secret_paths(&doc).is_empty();
        let why = match (invalid, secrets) {
            (true, false) => "cme would silently ignore the whole file",
            (false, _) => {
                "a base config holds settings only: credentials come from your stores, and one \
                 left in this file stays there in plain text"
            }
            (true, true) => {
                "cme would silently ignore the whole file; and credentials come from your \
                 stores, never from this file"
            }
        };
        e.hint(format!(
            "fix {shown} ({why}), or point [cme] base_config elsewhere"
        ))
    })?;
    Ok(BaseConfig {
        path: path.to_owned(),
        exists: true,
        size_hint: bytes.len(),
        doc,
        mode: Some(meta.mode() & 0o7777),
    })
}

/// Parses a cme config document; errors give the position only (the file may hold secrets).
pub fn parse(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(mut other) => {
            let what = cme_exec_providers::payload::describe(&other);
            cme_exec_providers::payload::zeroize_value(&mut other);
            Err(format!("is JSON {what}, not an object"))
        }
        Err(e) => Err(format!(
            "is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// Checks a base config against cme's schema, and that it holds no secret.
pub fn check(doc: &Map<String, Value>) -> Result<(), Error> {
    let whole = Value::Object(doc.clone());
    let mut problems: Vec<String> = schema::validate(&whole)
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    for path in secret_paths(doc) {
        problems.push(format!(
            "{path}: holds a secret; delete it from this file, cme-exec supplies credentials from your stores"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut err = Error::new(format!(
        "the base config is not what cme-exec can use ({} problem{})",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ));
    for p in problems {
        err = err.detail(p);
    }
    Err(err)
}

/// Paths of non-empty secret fields in `auth`.
fn secret_paths(doc: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(auth) = doc.get("auth").and_then(Value::as_object) else {
        return out;
    };
    for (product, entries) in auth {
        let Some(entries) = entries.as_object() else {
            continue;
        };
        for (url, entry) in entries {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            for (k, v) in entry {
                let non_empty = v.as_str().is_some_and(|s| !s.is_empty());
                if schema::is_secret_field(k) && non_empty {
                    out.push(format!("auth.{product}[{url:?}].{k}"));
                }
            }
        }
    }
    out
}
