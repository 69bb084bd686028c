//! cme's config file: the user's secret-free base config, the resolved credentials laid over
//! it, and what cme changed in it during a run (write-back).

pub mod base;
pub mod release;
pub mod schema;
pub mod writeback;

use cme_exec_providers::secure_io::SecretBuf;
use secrecy::ExposeSecret as _;
use serde::ser::SerializeMap as _;
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::config::{normalise_url, Product};
use crate::resolve::{Auth, InstanceAuth};
pub use base::BaseConfig;

/// Serialises the config cme gets: the base config with the resolved `auth` laid over it.
///
/// Secrets go from their `SecretString` straight into a wiped buffer ([`SecretBuf`] grows by
/// copying into a new wiped buffer, never leaving a stale copy in freed memory); no
/// intermediate `serde_json::Value` ever holds them. The base config was validated against
/// cme's schema when it was loaded, and the overlay only adds strings where cme's schema wants
/// strings, so the result is valid too (tests check it with cme itself).
pub fn render(base: &BaseConfig, auth: &Auth) -> Zeroizing<Vec<u8>> {
    let mut out = SecretBuf::with_capacity(4096 + base.size_hint);
    let doc = Doc {
        base: &base.doc,
        auth,
    };
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::new());
    doc.serialize(&mut ser)
        .expect("serialising into memory cannot fail");
    out.extend(b"\n")
        .expect("an unbounded buffer takes every byte");
    out.into_inner()
}

/// `CME_AUTH__CONFLUENCE` / `CME_AUTH__JIRA` for `--via env`: `{URL: {fields}}` as JSON.
pub fn render_product(auth: &Auth, product: Product) -> Option<Zeroizing<Vec<u8>>> {
    if !auth.instances.keys().any(|(p, _)| *p == product) {
        return None;
    }
    let mut out = SecretBuf::with_capacity(1024);
    let mut ser = serde_json::Serializer::new(&mut out);
    ProductSer {
        product,
        base: None,
        auth,
    }
    .serialize(&mut ser)
    .expect("serialising into memory cannot fail");
    Some(out.into_inner())
}

/// The key cme would use for an `auth` entry written as `key`.
pub fn normalised_key(product: Product, key: &str) -> String {
    normalise_url(product, key).unwrap_or_else(|_| key.trim_end_matches('/').to_owned())
}

struct Doc<'a> {
    base: &'a Map<String, Value>,
    auth: &'a Auth,
}

impl Serialize for Doc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut wrote_auth = false;
        for (k, v) in self.base {
            if k == "auth" {
                m.serialize_entry(
                    k,
                    &AuthSer {
                        base: v.as_object(),
                        auth: self.auth,
                    },
                )?;
                wrote_auth = true;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        if !wrote_auth {
            m.serialize_entry(
                "auth",
                &AuthSer {
                    base: None,
                    auth: self.auth,
                },
            )?;
        }
        m.end()
    }
}

struct AuthSer<'a> {
    base: Option<&'a Map<String, Value>>,
    auth: &'a Auth,
}

impl Serialize for AuthSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut written = Vec::new();
        for (k, v) in self.base.into_iter().flatten() {
            match Product::from_name(k) {
                Some(product) => {
                    m.serialize_entry(
                        k,
                        &ProductSer {
                            product,
                            base: v.as_object(),
                            auth: self.auth,
                        },
                    )?;
                    written.push(product);
                }
                None => m.serialize_entry(k, v)?,
            }
        }
        for product in Product::ALL {
            if !written.contains(&product) {
                m.serialize_entry(
                    product.name(),
                    &ProductSer {
                        product,
                        base: None,
                        auth: self.auth,
                    },
                )?;
            }
        }
        m.end()
    }
}

struct ProductSer<'a> {
    product: Product,
    base: Option<&'a Map<String, Value>>,
    auth: &'a Auth,
}

impl Serialize for ProductSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let ours = |url: &str| self.auth.instances.get(&(self.product, url.to_owned()));
        let mut written: Vec<String> = Vec::new();
        for (key, entry) in self.base.into_iter().flatten() {
            let norm = normalised_key(self.product, key);
            if written.contains(&norm) {
                continue; // cme would let the later duplicate replace the earlier one
            }
            match ours(&norm) {
                Some(instance) => {
                    m.serialize_entry(
                        &norm,
                        &EntrySer {
                            base: entry.as_object(),
                            ours: Some(instance),
                        },
                    )?;
                }
                None => m.serialize_entry(key, entry)?,
            }
            written.push(norm);
        }
        for ((product, url), instance) in &self.auth.instances {
            if *product == self.product && !written.contains(url) {
                m.serialize_entry(
                    url,
                    &EntrySer {
                        base: None,
                        ours: Some(instance),
                    },
                )?;
            }
        }
        m.end()
    }
}

struct EntrySer<'a> {
    base: Option<&'a Map<String, Value>>,
    ours: Option<&'a InstanceAuth>,
}

impl Serialize for EntrySer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let overridden = |k: &str| {
            self.ours
                .is_some_and(|o| o.fields.keys().any(|f| f.name() == k))
        };
        for (k, v) in self.base.into_iter().flatten() {
            if !overridden(k) {
                m.serialize_entry(k, v)?;
            }
        }
        for (field, value) in self.ours.into_iter().flat_map(|o| o.fields.iter()) {
            m.serialize_entry(field.name(), value.secret.expose_secret())?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests;
