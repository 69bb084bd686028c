//! `cme-exec explain`: the config cme would get, each value replaced by where it came from and
//! a short keyed fingerprint, so two runs or two machines can be compared without showing
//! anything.
//!
//! The fingerprint is HMAC-SHA-256 under a key (the first 16 hex digits), never a plain hash:
//! a plain SHA-256 of a user name or a password-like token is an offline oracle
//! (`printf me@example.com | sha256sum` confirms a guess). The key is per user, 32 random bytes
//! created 0600 in the state directory on first use (`fingerprint.key`), or a shared file named
//! by `CME_EXEC_FINGERPRINT_KEY_FILE` so that two machines can compare, like Vault's audit HMAC.
//!
//! When resolution fails, nothing is printed on stdout (no partial config): the failures go to
//! stderr and the exit code is 1, as for `check`.

use std::path::{Path, PathBuf};

use hmac::{KeyInit as _, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{json, Value as Json};
use zeroize::Zeroizing;

use crate::cli::{Cli, Format, ReportArgs};
use crate::cme_config;
use crate::envnames as names;
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::resolve::{Auth, InstanceAuth, Origin, Value};
use cme_exec_providers::secure_io::{allows, Access, Who};

pub fn explain(cli: &Cli, args: &ReportArgs) -> Exit {
    let (prepared, resolution) = match crate::session::prepare_and_resolve(cli, false, |_| {}) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if !resolution.is_ok() {
        error::print(&resolution.error());
        return Exit::CheckFailed;
    }
    let key = match fingerprint_key(&cme_exec_providers::EnvReader::from_process()) {
        Ok(k) => k,
        Err(e) => {
            error::print(&e);
            return Exit::Failed;
        }
    };
    // Each value is replaced by a marker, then (JSON) by an object or (text) by a string.
    let mut shown = Auth::default();
    let mut replacements: Vec<(String, Json, String)> = Vec::new();
    for (inst_key, instance) in &resolution.auth.instances {
        let mut fields = std::collections::BTreeMap::new();
        for (field, value) in &instance.fields {
            let marker = format!("\u{1}cme-exec-explain-{}\u{1}", replacements.len());
            let (source, origin) = origin_parts(&value.origin);
            let (data, text) = if field.is_secret() {
                let fp = fingerprint(&key, &value.secret);
                (
                    json!({ "fingerprint": format!("hmac-sha256:{fp}"), "source": source, "origin": origin }),
                    format!("<{} hmac-sha256:{fp}>", value.origin),
                )
            } else {
                let v = value.secret.expose_secret().to_owned();
                (
                    json!({ "value": v, "source": source, "origin": origin }),
                    format!("{v} <{}>", value.origin),
                )
            };
            replacements.push((marker.clone(), data, text));
            fields.insert(
                *field,
                Value {
                    secret: SecretString::from(marker),
                    origin: value.origin.clone(),
                },
            );
        }
        shown
            .instances
            .insert(inst_key.clone(), InstanceAuth { fields });
    }
    let doc = cme_config::render(&prepared.base, &shown);
    let Ok(mut parsed) = serde_json::from_slice::<Json>(&doc) else {
        error::print(&Error::new("cannot show the config (internal error)"));
        return Exit::Failed;
    };
    replace_markers(&mut parsed, &replacements, args.format == Format::Json);
    match args.format {
        Format::Json => {
            let out = json!({
                "base_config": {
                    "path": prepared.base.path.display().to_string(),
                    "exists": prepared.base.exists,
                },
                "fingerprint": "HMAC-SHA-256, first 16 hex digits",
                "config": parsed,
            });
            crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => {
            crate::outln!(
                "# base config: {}{}",
                prepared.base.path.display(),
                if prepared.base.exists {
                    ""
                } else {
                    " (does not exist)"
                }
            );
            let text = serde_json::to_string_pretty(&parsed).unwrap_or_default();
            crate::outln!("{}", error::strip_controls(&text));
        }
    }
    Exit::Success
}

/// `(source, kind)` of a value's origin, as separate JSON fields.
fn origin_parts(origin: &Origin) -> (Option<String>, &'static str) {
    match origin {
        Origin::Reference(r) => (Some(r.clone()), "reference"),
        Origin::Literal => (None, "literal"),
        Origin::From(r) => (Some(r.clone()), "from"),
        Origin::Bulk(r) => (Some(r.clone()), "auth-from"),
    }
}

fn replace_markers(v: &mut Json, replacements: &[(String, Json, String)], as_data: bool) {
    match v {
        Json::String(s) => {
            if let Some((_, data, text)) = replacements.iter().find(|(m, _, _)| m == s) {
                *v = if as_data {
                    data.clone()
                } else {
                    Json::String(text.clone())
                };
            }
        }
        Json::Array(a) => a
            .iter_mut()
            .for_each(|x| replace_markers(x, replacements, as_data)),
        Json::Object(o) => o
            .values_mut()
            .for_each(|x| replace_markers(x, replacements, as_data)),
        _ => {}
    }
}

/// The smallest shared key accepted.
const MIN_KEY_BYTES: usize = 16;

/// The fingerprint key: `$CME_EXEC_FINGERPRINT_KEY_FILE`, else the per-user key in the state
/// directory (created on first use).
pub fn fingerprint_key(env: &cme_exec_providers::EnvReader) -> Result<Zeroizing<Vec<u8>>, Error> {
    if let Some(file) = env.var(names::CME_EXEC_FINGERPRINT_KEY_FILE) {
        return shared_key(Path::new(&file));
    }
    let dir = crate::state::ensure_dir(env, None)?;
    let path: PathBuf = dir.join("fingerprint.key");
    if path.exists() {
        return crate::state::read_private(&path).map(Zeroizing::new);
    }
    let mut fresh = Zeroizing::new(vec![0u8; 32]);
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom")
            .map_err(|e| Error::new("cannot read /dev/urandom").cause(e.to_string()))?,
        &mut fresh,
    )
    .map_err(|e| Error::new("cannot read /dev/urandom").cause(e.to_string()))?;
    crate::state::create_once(&path, &fresh).map(Zeroizing::new)
}

fn shared_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    use std::os::unix::fs::MetadataExt as _;
    let what = format!(
        "the fingerprint key file {} ({})",
        path.display(),
        names::CME_EXEC_FINGERPRINT_KEY_FILE
    );
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::new(format!("cannot read {what}")).cause(e.to_string()))?;
    if !meta.is_file() || meta.len() > 4096 {
        return Err(Error::new(format!("{what} is not a small regular file")));
    }
    if allows(meta.mode(), Who::Others, Access::Any) {
        return Err(Error::new(format!("{what} is accessible to other users"))
            .hint(format!("chmod o-rwx {}", path.display())));
    }
    let key = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Error::new(format!("cannot read {what}")).cause(e.to_string()))?,
    );
    if key.len() < MIN_KEY_BYTES {
        return Err(
            Error::new(format!("{what} is shorter than {MIN_KEY_BYTES} bytes"))
                .hint("create one with: head -c 32 /dev/urandom > FILE && chmod 600 FILE"),
        );
    }
    Ok(key)
}

/// The first 16 hex digits of HMAC-SHA-256(key, value).
pub fn fingerprint(key: &[u8], secret: &SecretString) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(secret.expose_secret().as_bytes());
    let digest = mac.finalize().into_bytes();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn a_fingerprint_is_keyed_and_no_prefix_of_the_plain_hash() {
        let v = SecretString::from("me@example.com");
        let plain: String = sha2::Sha256::digest(b"me@example.com")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let a = fingerprint(&[1; 32], &v);
        assert_eq!(a.len(), 16);
        assert!(!plain.starts_with(&a[..8]));
        assert_eq!(a, fingerprint(&[1; 32], &v));
        assert_ne!(a, fingerprint(&[2; 32], &v));
    }
}
