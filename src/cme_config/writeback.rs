//! Write-back: what cme changed in its config during the run, minus every secret, saved into
//! the base config.
//!
//! cme rewrites its whole config whenever it stores something (a `cloud_id` it fetched, a
//! `cme config set`), filling in every default. So the change is found leaf by leaf: a leaf
//! counts as changed when it differs from what cme-exec handed over, or, where the handed
//! config did not have it, from cme's default. In `auth`, only `cloud_id` is ever written
//! back; a changed secret field is reported (never shown) and dropped.

use cme_exec_providers::payload::zeroize_value;
use serde_json::{Map, Value};

use super::{base, normalised_key, schema, BaseConfig};
use crate::config::Product;
use crate::error::Error;

/// What write-back did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Dotted paths written into the base config.
    pub written: Vec<String>,
    /// Secret fields cme changed, which were not written anywhere.
    pub dropped_secrets: Vec<String>,
}

/// A parsed config document whose strings are wiped on drop.
struct Scrubbed(Value);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

/// Compares the config handed to cme with what it holds after the run, and saves the
/// non-secret changes into the base config.
pub fn write_back(base: &BaseConfig, handed: &[u8], after: &[u8]) -> Result<Report, Error> {
    if handed == after {
        return Ok(Report::default());
    }
    let handed = Scrubbed(Value::Object(base::parse(handed).unwrap_or_default()));
    let after = match base::parse(after) {
        Ok(m) => Scrubbed(Value::Object(m)),
        Err(e) => {
            return Err(Error::new(format!(
                "cme left its config in a state cme-exec cannot read back (it {e}); nothing was written back"
            )))
        }
    };
    let mut report = Report::default();
    let mut changes: Vec<(Vec<String>, Value)> = Vec::new();
    let defaults = schema::defaults();
    for (key, value) in after.0.as_object().into_iter().flatten() {
        if key == "auth" {
            auth_changes(&handed.0, value, &mut changes, &mut report);
        } else {
            leaf_changes(
                &mut vec![key.clone()],
                value,
                &handed.0,
                defaults,
                &mut changes,
            );
        }
    }
    if changes.is_empty() {
        return Ok(report);
    }
    let mut doc = base.doc.clone();
    for (path, value) in changes {
        report.written.push(dotted(&path));
        set_path(&mut doc, &path, value);
    }
    if let Err(e) = base::check(&doc) {
        return Err(Error::new(
            "the written-back config would not be valid; nothing was written back",
        )
        .cause(e.to_string()));
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))
        .expect("serialising into memory cannot fail");
    bytes.push(b'\n');
    crate::atomic::write(
        &base.path,
        &bytes,
        base.mode.unwrap_or(0o600),
        crate::atomic::Symlink::Follow,
    )?;
    Ok(report)
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

fn leaf_changes(
    path: &mut Vec<String>,
    after: &Value,
    handed: &Value,
    defaults: &Value,
    out: &mut Vec<(Vec<String>, Value)>,
) {
    if let Value::Object(m) = after {
        for (k, v) in m {
            path.push(k.clone());
            leaf_changes(path, v, handed, defaults, out);
            path.pop();
        }
        return;
    }
    let before = lookup(handed, path).or_else(|| lookup(defaults, path));
    if before != Some(after) {
        out.push((path.clone(), after.clone()));
    }
}

fn auth_changes(
    handed: &Value,
    after: &Value,
    out: &mut Vec<(Vec<String>, Value)>,
    report: &mut Report,
) {
    for (product_name, entries) in after.as_object().into_iter().flatten() {
        let Some(product) = Product::from_name(product_name) else {
            continue;
        };
        for (url, entry) in entries.as_object().into_iter().flatten() {
            let before = handed_entry(handed, product, url);
            for (field, value) in entry.as_object().into_iter().flatten() {
                let old = before.and_then(|b| b.get(field));
                let unchanged = match old {
                    Some(o) => o == value,
                    None => value.as_str() == Some(""),
                };
                if unchanged {
                    continue;
                }
                if schema::is_secret_field(field) {
                    report
                        .dropped_secrets
                        .push(format!("auth.{product_name}[{url:?}].{field}"));
                } else if field == "cloud_id" {
                    out.push((
                        vec![
                            "auth".into(),
                            product_name.clone(),
                            url.clone(),
                            field.clone(),
                        ],
                        value.clone(),
                    ));
                }
            }
        }
    }
}

/// The handed entry cme's key `url` refers to (cme may have normalised the key differently).
fn handed_entry<'a>(
    handed: &'a Value,
    product: Product,
    url: &str,
) -> Option<&'a Map<String, Value>> {
    let entries = handed.get("auth")?.get(product.name())?.as_object()?;
    let norm = normalised_key(product, url);
    entries
        .iter()
        .find(|(k, _)| normalised_key(product, k) == norm)
        .and_then(|(_, v)| v.as_object())
}

fn set_path(doc: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths are never empty");
    let mut cur = doc;
    for (i, k) in parents.iter().enumerate() {
        // An auth entry may be keyed differently (trailing slash) in the base config.
        let key = if i == 2 && path[0] == "auth" {
            let product = Product::from_name(&path[1]).unwrap_or(Product::Confluence);
            let norm = normalised_key(product, k);
            cur.keys()
                .find(|existing| normalised_key(product, existing) == norm)
                .cloned()
                .unwrap_or_else(|| k.clone())
        } else {
            k.clone()
        };
        let slot = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur.insert(last.clone(), value);
}

fn dotted(path: &[String]) -> String {
    let mut s = String::new();
    for (i, k) in path.iter().enumerate() {
        if i == 2 && path[0] == "auth" {
            s.push_str(&format!("[{k:?}]"));
        } else {
            if i > 0 {
                s.push('.');
            }
            s.push_str(k);
        }
    }
    s
}
