//! `--remove-secrets`: rewrites the original without the secret values that were imported and
//! read back (every value of the plan: the import stops before this otherwise). Under the
//! write-back lock, from the file as it is now: a field that is not in the plan, or whose value
//! is not the one imported, is kept, and so is every other field of its instance (so that
//! importing again stores them together).

use cme_exec_providers::secure_io::SecretBuf;
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value};

use super::plan::{Instance, Plan};
use super::SECRET_FIELDS;
use crate::cme_config::writeback::{Locked, Purpose, Unread};
use crate::config::{Field, Product};
use crate::error::{self, Error};

/// What `--remove-secrets` did.
#[derive(Debug, Default)]
pub struct Removal {
    /// Secret fields removed from the file.
    pub removed: usize,
    /// Secret fields the file still holds.
    pub kept: usize,
    /// Why each kept field was kept (instance and field, never a value).
    pub warnings: Vec<String>,
    /// The file's mode, kept.
    pub mode: u32,
}

const UNTOUCHED: &str =
    "the store and the new configuration are complete; the original still holds its secrets";

pub fn remove_secrets(plan: &Plan, wait: std::time::Duration) -> Result<Removal, Error> {
    let shown = plan.from.display();
    let locked = Locked::acquire(&plan.real, &plan.from, wait, Purpose::Import)
        .map_err(|e| e.detail(UNTOUCHED))?;
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
        Err(why) => return Err(unread(plan, why).detail(UNTOUCHED)),
    };
    let mut doc = match serde_json::from_slice::<Value>(&current.bytes) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(Error::new(format!(
                "{shown} changed during the import and is no longer a JSON object; it was left as it is"
            ))
            .detail(UNTOUCHED))
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
            for (url, entry) in entries.iter_mut() {
                if let Some(entry) = entry.as_object_mut() {
                    remove_from_entry(plan, product_name, url, entry, &mut removal);
                }
            }
        }
    }
    let mut whole = Value::Object(doc);
    let written = if removal.removed > 0 {
        // The rest of cme's config may still hold secrets (a value kept because it changed
        // meanwhile): serialised into a buffer that is wiped, also when it grows.
        let mut bytes = SecretBuf::with_capacity(current.bytes.len() + 1);
        serde_json::to_writer_pretty(&mut bytes, &whole).expect("JSON serialises");
        bytes.extend(b"\n").expect("an unbounded buffer");
        locked.replace(&bytes, current.mode)
    } else {
        Ok(())
    };
    cme_exec_providers::payload::zeroize_value(&mut whole);
    written.map_err(|e| e.detail(UNTOUCHED))?;
    Ok(removal)
}

/// Why the original could not be read again.
fn unread(plan: &Plan, why: Unread) -> Error {
    let shown = plan.from.display();
    match why {
        Unread::Link => Error::new(format!(
            "{shown} was replaced by a symbolic link during the import; nothing was written through it"
        )),
        Unread::NotFile => Error::new(format!("{shown} is no longer a regular file")),
        Unread::TooLarge => Error::new(format!("{shown} is larger than 4 MiB")),
        Unread::Io(e) => Error::new(format!("cannot read {shown}")).cause(e.to_string()),
    }
}

/// One `auth.PRODUCT.URL` entry as the file holds it now: its secret fields are removed when
/// each was imported with exactly this value; else all are kept, each with its reason.
fn remove_from_entry(
    plan: &Plan,
    product_name: &str,
    url: &str,
    entry: &mut Map<String, Value>,
    removal: &mut Removal,
) {
    let shown = plan.from.display();
    let place = format!(
        "auth.{}[{:?}]",
        error::strip_controls(product_name),
        crate::config::redact_user_info(url)
    );
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
        return;
    }
    let Some(instance) = imported(plan, product_name, url) else {
        for f in &held {
            removal.warnings.push(format!(
                "{place}.{} was added to {shown} during the import and was not imported; it is still there",
                f.name()
            ));
        }
        removal.kept += held.len();
        return;
    };
    let reasons = reasons_to_keep(plan, &place, instance, &held, entry);
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

/// The instance of the plan an entry of the file is (by normalised URL).
fn imported<'p>(plan: &'p Plan, product_name: &str, url: &str) -> Option<&'p Instance> {
    let product = Product::from_name(product_name)?;
    let key = crate::cme_config::normalised_key(product, url);
    plan.instances
        .iter()
        .find(|i| i.product == product && crate::cme_config::normalised_key(product, &i.url) == key)
}

/// Each held field: imported with exactly this value, or why not.
fn reasons_to_keep(
    plan: &Plan,
    place: &str,
    instance: &Instance,
    held: &[Field],
    entry: &Map<String, Value>,
) -> Vec<String> {
    let shown = plan.from.display();
    let mut reasons = Vec::new();
    for f in held {
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
    reasons
}
