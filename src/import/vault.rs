//! `import --to vault://MOUNT/PREFIX`: one KV v2 document per instance, written with
//! vaultrs's `kv2::set` and the vault CLI's variables (`VAULT_ADDR`/`BAO_ADDR`, `VAULT_TOKEN`/
//! `BAO_TOKEN` or `~/.vault-token`, `VAULT_NAMESPACE`, `VAULT_CACERT`, ...). A document that
//! already holds exactly these fields is not written again (no new version).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::{Zeroize as _, Zeroizing};

use cme_exec_providers::EnvReader;

use crate::error::Error;

pub struct Writer {
    client: VaultClient,
    mount: String,
    origin: String,
}

/// A map read from Vault, wiped when dropped.
struct Read(BTreeMap<String, String>);

impl Drop for Read {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

impl Writer {
    pub fn new(mount: &str, env: &EnvReader, timeout: Duration) -> Result<Writer, Error> {
        let raw = env
            .var("VAULT_ADDR")
            .or_else(|| env.var("BAO_ADDR"))
            .ok_or_else(|| {
                Error::new("importing into Vault needs its address: set VAULT_ADDR (or BAO_ADDR)")
            })?;
        let address = cme_exec_providers::vault::check_address(&raw, false)
            .map_err(|e| Error::new(format!("VAULT_ADDR: {e}")))?;
        let token = env
            .secret("VAULT_TOKEN")
            .ok()
            .flatten()
            .or_else(|| env.secret("BAO_TOKEN").ok().flatten())
            .or_else(|| {
                let home = env.var("HOME")?;
                let t = std::fs::read_to_string(std::path::Path::new(&home).join(".vault-token"))
                    .ok()?;
                let t = Zeroizing::new(t);
                Some(SecretString::from(t.trim().to_owned()))
            })
            .ok_or_else(|| {
                Error::new("importing into Vault needs a token: set VAULT_TOKEN (or BAO_TOKEN), or log in with `vault login`")
            })?;
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(address.as_str())
            .token(token.expose_secret())
            .timeout(Some(timeout));
        if let Some(ns) = env
            .var("VAULT_NAMESPACE")
            .or_else(|| env.var("BAO_NAMESPACE"))
        {
            builder.namespace(Some(ns));
        }
        let settings = builder
            .build()
            .map_err(|e| Error::new("cannot set up the Vault client").cause(e.to_string()))?;
        let client = VaultClient::new(settings)
            .map_err(|e| Error::new("cannot set up the Vault client").cause(e.to_string()))?;
        Ok(Writer {
            client,
            mount: mount.to_owned(),
            origin: address.origin().ascii_serialization(),
        })
    }

    /// `at` is `MOUNT/PATH`.
    pub async fn write(&self, at: &str, doc: &Zeroizing<Vec<u8>>) -> Result<bool, Error> {
        let path = at
            .strip_prefix(&format!("{}/", self.mount))
            .unwrap_or(at)
            .to_owned();
        let wanted = super::fields_of(doc);
        match vaultrs::kv2::read::<BTreeMap<String, String>>(&self.client, &self.mount, &path).await
        {
            Ok(map) => {
                let current = Read(map);
                let same = current.0.len() == wanted.len()
                    && wanted.iter().all(|(k, v)| {
                        current
                            .0
                            .get(k)
                            .is_some_and(|c| c.as_str() == v.expose_secret())
                    });
                if same {
                    return Ok(false);
                }
            }
            Err(ClientError::APIError { code: 404, .. }) => {}
            Err(ClientError::RestClientError { .. }) => {} // e.g. a soft-deleted version
            Err(e) => return Err(self.error("read", at, &e)),
        }
        let plain: BTreeMap<&str, &str> = wanted
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        vaultrs::kv2::set(&self.client, &self.mount, &path, &plain)
            .await
            .map_err(|e| self.error("write", at, &e))?;
        Ok(true)
    }

    fn error(&self, what: &str, at: &str, e: &ClientError) -> Error {
        let cause = match e {
            ClientError::APIError { code, errors } => {
                let errors: Vec<String> = errors
                    .iter()
                    .map(|s| crate::error::strip_controls(s))
                    .collect();
                format!("status {code}: {}", errors.join("; "))
            }
            other => {
                let mut s = other.to_string();
                let mut next = std::error::Error::source(other);
                while let Some(inner) = next {
                    s = format!("{s}: {inner}");
                    next = inner.source();
                }
                s
            }
        };
        let mut err =
            Error::new(format!("cannot {what} {at} in Vault at {}", self.origin)).cause(cause);
        if matches!(e, ClientError::APIError { code: 403, .. }) {
            err = err.hint(format!(
                "the token needs create and update on {}/data/... (and read, to leave an identical document alone)",
                self.mount
            ));
        }
        err
    }
}
