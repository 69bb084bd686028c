//! `cme-exec explain`: the config cme would get, each value replaced by where it came from and
//! a short fingerprint (the first 8 hex digits of its SHA-256), so two runs or two machines can
//! be compared without showing anything. A fingerprint of a short or guessable value (a user
//! name) can be brute-forced; of an API token it cannot.

use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::cli::{Cli, Format, ReportArgs};
use crate::cme_config;
use crate::error;
use crate::exit::Exit;
use crate::resolve::{Auth, InstanceAuth, Value};

pub fn explain(cli: &Cli, args: &ReportArgs) -> Exit {
    let (prepared, resolution) = match super::prepare_and_resolve(cli, false, |_| {}) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let mut shown = Auth::default();
    for (key, instance) in &resolution.auth.instances {
        let mut fields = std::collections::BTreeMap::new();
        for (field, value) in &instance.fields {
            let text = if field.is_secret() {
                format!("<{} sha256:{}>", value.origin, fingerprint(&value.secret))
            } else {
                format!("{} <{}>", value.secret.expose_secret(), value.origin)
            };
            fields.insert(
                *field,
                Value {
                    secret: SecretString::from(text),
                    origin: value.origin.clone(),
                },
            );
        }
        shown.instances.insert(key.clone(), InstanceAuth { fields });
    }
    let doc = cme_config::render(&prepared.base, &shown);
    match args.format {
        Format::Json => crate::out!("{}", String::from_utf8_lossy(&doc)),
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
            crate::out!("{}", error::strip_controls(&String::from_utf8_lossy(&doc)));
        }
    }
    if resolution.is_ok() {
        Exit::Success
    } else {
        error::print(&resolution.error());
        Exit::CheckFailed
    }
}

/// The first 8 hex digits of the value's SHA-256.
pub fn fingerprint(secret: &SecretString) -> String {
    let digest = Sha256::digest(secret.expose_secret().as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
