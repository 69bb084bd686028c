//! Reading and writing keychain entries through the `keyring` crate.
//!
//! Values go through `get_password`/`set_password`, the form other programs use on each
//! platform (UTF-8 in the Secret Service and the Keychain, UTF-16 in the Credential Manager).
//! The crate hands a value back as a `String`: it is moved into a wiped buffer at once, and a
//! value that is not text, which the crate returns in its error, is wiped there too.
//!
//! Every call blocks (D-Bus round trips, perhaps the platform's unlock prompt): it runs on a
//! thread of its own, and a provider makes one call at a time, so that a locked keychain
//! asks once, not once per document. The Secret Service client runs its own small runtime on
//! that thread (zbus's), never the caller's.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use super::{entry_of, store_name, Entry, KIND};
use crate::payload::{zeroize_value, Format, Payload, MAX_DOCUMENT_BYTES};
use crate::provider::{fetch_concurrently, Fields};
use crate::{docs_url, Document, FetchError, Kind, Provider};

pub struct KeyringProvider {
    name: String,
    /// One keychain call at a time (see the module's header).
    calls: tokio::sync::Mutex<()>,
}

impl KeyringProvider {
    pub fn new(name: &str) -> Self {
        KeyringProvider {
            name: name.to_owned(),
            calls: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `call` on a thread of its own, alone. Not tokio's blocking pool: a runtime waits for
    /// its blocking tasks when it shuts down, so a keychain that never answers (a stuck bus, an
    /// unanswered prompt) would keep cme-exec alive past its deadline; a thread of its own is
    /// left behind and ends with the process.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, FetchError> + Send + 'static,
    ) -> Result<T, FetchError> {
        let _turn = self.calls.lock().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("cme-exec-keyring".into())
            .spawn(move || {
                let _ = tx.send(call());
            })
            .map_err(|e| {
                FetchError::unavailable(format!(
                    "provider {}: cannot start a thread for the keychain: {e}",
                    self.name
                ))
            })?;
        rx.await.unwrap_or_else(|_| {
            Err(FetchError::unavailable(format!(
                "provider {}: the keychain call ended without an answer",
                self.name
            )))
        })
    }
}

#[async_trait]
impl Provider for KeyringProvider {
    fn kind(&self) -> Kind {
        KIND
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        let entry = entry_of(doc).map_err(FetchError::invalid)?;
        let value = self
            .blocking(move || read(&entry)?.ok_or_else(|| not_found(&entry)))
            .await?;
        Ok(Payload::Text {
            value,
            format: Format::Unknown,
        })
    }

    async fn fetch_many(
        &self,
        docs: &[Document],
        _concurrency: usize,
    ) -> Vec<Result<Payload, FetchError>> {
        fetch_concurrently(docs, 1, |doc| self.fetch(doc)).await
    }

    async fn write(&self, location: &str, fields: &Fields) -> Result<bool, FetchError> {
        let (service, account) = location
            .split_once('/')
            .ok_or_else(|| FetchError::invalid(format!("{location} is not SERVICE/ACCOUNT")))?;
        let entry = Entry {
            service: service.to_owned(),
            account: account.to_owned(),
        };
        let json = fields.to_json();
        let text = std::str::from_utf8(&json)
            .expect("JSON is UTF-8")
            .trim_end_matches('\n');
        let value = SecretString::from(text.to_owned());
        let held = {
            let mut f = Fields::new();
            for (k, v) in fields.iter() {
                f.push(k, v.clone());
            }
            f
        };
        self.blocking(move || {
            if let Some(current) = read(&entry)? {
                if holds(&current, &held) {
                    return Ok(false);
                }
            }
            keyring_entry(&entry)?
                .set_password(value.expose_secret())
                .map_err(|e| error(e, &entry, "writing"))?;
            Ok(true)
        })
        .await
    }
}

/// Whether `current` is a JSON object with exactly `fields`.
fn holds(current: &SecretString, fields: &Fields) -> bool {
    let Ok(mut value) = serde_json::from_str::<Value>(current.expose_secret()) else {
        return false;
    };
    let same = value.as_object().is_some_and(|m| fields.same_as(m));
    zeroize_value(&mut value);
    same
}

fn keyring_entry(entry: &Entry) -> Result<keyring::Entry, FetchError> {
    keyring::Entry::new(&entry.service, &entry.account).map_err(|e| error(e, entry, "opening"))
}

/// The entry's value, minus one trailing newline; `None` when there is no such entry. A locked
/// collection is unlocked the platform's way (its prompt), once, and the entry read again.
fn read(entry: &Entry) -> Result<Option<SecretString>, FetchError> {
    let mut answer = keyring_entry(entry)?.get_password();
    if matches!(&answer, Err(e) if locked(e)) {
        unlock(entry)?;
        answer = keyring_entry(entry)?.get_password();
    }
    let mut value = match answer {
        Ok(v) => Zeroizing::new(v),
        Err(keyring::Error::NoEntry) => return Ok(None),
        Err(e) => return Err(error(e, entry, "reading")),
    };
    if value.len() > MAX_DOCUMENT_BYTES {
        return Err(FetchError::invalid(format!(
            "the keychain entry {entry} is larger than {} KiB",
            MAX_DOCUMENT_BYTES / 1024
        )));
    }
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(Some(SecretString::from(std::mem::take(&mut *value))))
}

fn not_found(entry: &Entry) -> FetchError {
    FetchError::not_found(format!("{} has no entry for {entry}", store_name()))
        .with_hint(store_hint(entry))
}

/// How a user puts an entry there by hand (the secret is typed, never an argument).
fn store_hint(entry: &Entry) -> String {
    let Entry { service, account } = entry;
    let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    if cfg!(target_os = "macos") {
        format!(
            "store it with `security add-generic-password -s {} -a {} -w` (it asks for the value)",
            q(service),
            q(account)
        )
    } else if cfg!(windows) {
        format!(
            "store it with `cme-exec import --to keyring://{service}/`, or as a generic credential \
             named {account}.{service} in the Credential Manager"
        )
    } else {
        format!(
            "store it with `secret-tool store --label={} service {} username {}` (it asks for \
             the value), or with `cme-exec import --to keyring://{service}/`",
            q(&format!("{service}/{account}")),
            q(service),
            q(account)
        )
    }
}

/// How to unlock the keychain, on this platform.
fn unlock_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "unlock it (`security unlock-keychain` asks for its password, or Keychain Access), then \
         run cme-exec again"
    } else if cfg!(windows) {
        "sign in to Windows as the user whose Credential Manager holds the entry"
    } else {
        "unlock the collection in your desktop's keyring (GNOME's Passwords and Keys, KWallet, \
         KeePassXC), or answer the unlock prompt it shows; without a desktop, \
         `gnome-keyring-daemon --unlock` reads the login keyring's password from its standard \
         input"
    }
}

/// What a keyring error means for the user. Never holds a secret: a value that was not text
/// (the one error that carries one) is wiped here.
fn error(e: keyring::Error, entry: &Entry, doing: &str) -> FetchError {
    let store = store_name();
    match e {
        keyring::Error::NoEntry => not_found(entry),
        keyring::Error::BadEncoding(mut bytes) => {
            bytes.zeroize();
            FetchError::invalid(format!("the keychain entry {entry} is not text"))
        }
        e if locked(&e) => locked_error(entry, doing, &e.to_string()),
        keyring::Error::PlatformFailure(inner) if no_service(&*inner) => {
            FetchError::unavailable(format!(
                "{doing} {entry}: this machine has no Secret Service: no D-Bus session bus, or \
                 no keyring daemon (GNOME Keyring, KWallet, KeePassXC) on it ({inner})"
            ))
            .with_hint(format!(
                "servers and containers usually have none: keep the tokens in another store \
                 (file, env, vault, aws-sm, aws-ssm, or a password manager's command line): {}",
                docs_url("providers/keyring.md")
            ))
        }
        keyring::Error::Ambiguous(found) => FetchError::invalid(format!(
            "{doing} {entry}: {} entries of {store} match it",
            found.len()
        ))
        .with_hint(
            "keep one: remove the others (`secret-tool search --all service SERVICE username \
             ACCOUNT` lists them)",
        ),
        other => FetchError::unavailable(format!("{doing} {entry} in {store}: {other}")),
    }
}

/// A locked keychain (or collection) that was not unlocked.
fn locked_error(entry: &Entry, doing: &str, why: &str) -> FetchError {
    FetchError::denied(format!(
        "{doing} {entry}: {} is locked ({why})",
        store_name()
    ))
    .with_hint(unlock_hint())
}

/// Whether the keychain answered that it is locked: no access at all (the Keychain, a
/// dismissed prompt), or the Secret Service's `IsLocked` for an item of a locked collection.
fn locked(e: &keyring::Error) -> bool {
    match e {
        keyring::Error::NoStorageAccess(_) => true,
        keyring::Error::PlatformFailure(inner) => inner
            .to_string()
            .contains("org.freedesktop.Secret.Error.IsLocked"),
        _ => false,
    }
}

/// Unlocks the Secret Service's default collection, where the entry is: the service shows its
/// unlock prompt (on a desktop) and answers when the user has; without a way to prompt, it
/// answers at once that it cannot.
#[cfg(all(unix, not(target_os = "macos")))]
fn unlock(entry: &Entry) -> Result<(), FetchError> {
    use secret_service::blocking::SecretService;
    use secret_service::EncryptionType;
    let done = SecretService::connect(EncryptionType::Plain)
        .and_then(|ss| ss.get_default_collection()?.unlock());
    match done {
        Ok(()) => Ok(()),
        Err(secret_service::Error::Prompt) => Err(locked_error(
            entry,
            "reading",
            "the unlock prompt was dismissed, or could not be shown",
        )),
        Err(e) => Err(locked_error(
            entry,
            "reading",
            &format!("unlocking it failed: {e}"),
        )),
    }
}

/// The Keychain and the Credential Manager ask for themselves, or answer that they cannot.
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn unlock(entry: &Entry) -> Result<(), FetchError> {
    Err(locked_error(entry, "reading", "no access"))
}

/// Whether a platform error says there is no Secret Service to talk to.
#[cfg(all(unix, not(target_os = "macos")))]
fn no_service(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let unavailable = matches!(
        e.downcast_ref::<secret_service::Error>(),
        Some(secret_service::Error::Unavailable)
    );
    // A bus without the service, which nothing can start: the bus daemon's own answer.
    let text = e.to_string();
    unavailable
        || text.contains("org.freedesktop.DBus.Error.ServiceUnknown")
        || text.contains("org.freedesktop.DBus.Error.NameHasNoOwner")
        || text.contains("org.freedesktop.DBus.Error.Spawn")
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn no_service(_e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    false
}

/// The provider, for the registry's build.
pub fn provider(name: &str) -> Arc<dyn Provider> {
    Arc::new(KeyringProvider::new(name))
}
