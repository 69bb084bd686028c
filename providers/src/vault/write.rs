//! Writing a document into Vault KV (what `import` does), through the provider's own login and
//! transport ([`super::http`]): the same address, namespace, CA, client certificate, auth
//! method, agent or proxy, retries and bounded, wiped bodies as its reads.
//!
//! 1. The document is read first ([`VaultProvider::read`], KV version detected or configured as
//!    for reads): when it already holds exactly these fields, nothing is written, so a second
//!    import makes no new KV v2 version.
//! 2. Otherwise it is written with one POST to `MOUNT/data/PATH` (KV v2, `{"data": {...}}`) or
//!    `MOUNT/PATH` (KV v1), its body built in a wiped buffer. A POST is retried only when it
//!    cannot have been processed (see `http.rs`).

use super::client::VaultProvider;
use super::http::Call;
use super::KvVersion;
use crate::payload::Payload;
use crate::provider::Fields;
use crate::{Document, ErrorKind, FetchError};

/// Writes `fields` at `location` (`MOUNT/PATH`) unless it holds exactly them; `Ok(true)` when
/// written.
pub(super) async fn write(
    provider: &VaultProvider,
    location: &str,
    fields: &Fields,
) -> Result<bool, FetchError> {
    if holds(provider, location, fields).await? {
        return Ok(false);
    }
    let (mount, path, configured) = provider.split(location);
    let session = provider.session().await?;
    // Known by now: the read above detected it (or it is configured).
    let (kv, _) = provider.kv_version_of(mount, configured, &session).await?;
    let what = format!("writing {mount}/{path} ({kv})");
    let call = Call {
        method: reqwest::Method::POST,
        path: match kv {
            KvVersion::V2 => format!("{mount}/data/{path}"),
            KvVersion::V1 => format!("{mount}/{path}"),
        },
        query: None,
        body: Some(body(kv, fields)),
    };
    tracing::debug!(provider = %provider.name(), "{what}");
    match provider.transport().send(&call, session.token()).await {
        Ok(_) => Ok(true),
        Err(e) => {
            let status = e.status();
            let err = e.into_fetch_error(&what, provider.transport().origin());
            Err(match status {
                Some(403) => err.with_hint(policy_hint(mount, kv)),
                _ => err,
            })
        }
    }
}

/// Whether the document at `location` holds exactly `fields`. A missing document (or a deleted
/// or destroyed current version) holds nothing; any other failure to read is the write's.
async fn holds(
    provider: &VaultProvider,
    location: &str,
    fields: &Fields,
) -> Result<bool, FetchError> {
    let doc = Document {
        scheme: super::KIND.name().to_owned(),
        has_authority: true,
        location: location.to_owned(),
        params: Vec::new(),
    };
    match provider.read(&doc).await {
        Ok(Payload::Object(map)) => Ok(fields.same_as(map.expose())),
        Ok(_) => Ok(false),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind == ErrorKind::Denied => {
            let (mount, _, _) = provider.split(location);
            Err(e.with_hint(format!(
                "{} (import reads a document first, to leave an identical one alone)",
                policy_hint(mount, KvVersion::V2)
            )))
        }
        Err(e) => Err(e),
    }
}

/// What the token's policies must allow.
fn policy_hint(mount: &str, kv: KvVersion) -> String {
    let paths = match kv {
        KvVersion::V2 => format!("{mount}/data/..."),
        KvVersion::V1 => format!("{mount}/..."),
    };
    format!("the token needs create, update and read on {paths}")
}

/// The request body in a wiped buffer: the fields, inside `{"data": ...}` for KV v2.
fn body(kv: KvVersion, fields: &Fields) -> zeroize::Zeroizing<Vec<u8>> {
    let doc = fields.to_json();
    let doc = doc.as_slice();
    let doc = doc.strip_suffix(b"\n").unwrap_or(doc);
    match kv {
        KvVersion::V1 => zeroize::Zeroizing::new(doc.to_vec()),
        KvVersion::V2 => {
            let mut out = zeroize::Zeroizing::new(Vec::with_capacity(doc.len() + 10));
            out.extend_from_slice(b"{\"data\":");
            out.extend_from_slice(doc);
            out.push(b'}');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn bodies_are_the_fields_in_order() {
        let mut fields = Fields::new();
        fields.push("username", SecretString::from("me@example.com"));
        fields.push("api_token", SecretString::from("a\"b"));
        assert_eq!(
            body(KvVersion::V2, &fields).as_slice(),
            br#"{"data":{"username":"me@example.com","api_token":"a\"b"}}"#
        );
        assert_eq!(
            body(KvVersion::V1, &fields).as_slice(),
            br#"{"username":"me@example.com","api_token":"a\"b"}"#
        );
    }
}
