//! The `keyring` provider: the operating system's own keychain.
//!
//! ```toml
//! api_token = "keyring://cme-exec/wiki#api_token"   # entry: service cme-exec, account wiki
//! pat       = "keyring://cme-exec/jira-pat"         # the whole value, a plain token
//! ```
//!
//! One entry is named by a *service* and an *account*, as every keychain names its generic
//! passwords: the Secret Service of GNOME Keyring, KeePassXC or KWallet on Linux and the BSDs
//! (D-Bus, the item's `service` and `username` attributes), the login Keychain on macOS
//! (`security add-generic-password -s SERVICE -a ACCOUNT`), the Credential Manager on Windows
//! (a generic credential whose target is `ACCOUNT.SERVICE`). The value is text: a plain token, or
//! a JSON document whose keys `#KEY` selects, like every backend's. One trailing newline is
//! dropped (`echo TOKEN | secret-tool store ...` keeps it).
//!
//! `import --to keyring://SERVICE/` stores one entry per instance, account `confluence-HOST` or
//! `jira-HOST`, holding the instance's fields as one line of JSON.
//!
//! The keychain is reached through the `keyring` crate, with the `keyring` cargo feature (in the
//! default build). The calls block (a locked collection may show the platform's unlock prompt),
//! so they run on a thread of their own, one at a time, and never on the runtime's.

#[cfg(feature = "keyring")]
mod store;

use std::sync::Arc;

use crate::provider::Destination;
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, FetchError, Kind, Provider};

/// `kind = "keyring"`, with the `keyring` cargo feature.
pub const KIND: Kind = Kind::new("keyring");

/// The `keyring` backend, listed in `registry::BACKENDS`.
pub struct KeyringBackend;

impl Backend for KeyringBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn feature(&self) -> Option<&'static str> {
        Some("keyring")
    }

    fn available(&self) -> bool {
        cfg!(feature = "keyring")
    }

    fn parse(&self, _r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(KeyringSettings)
    }

    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        Some(Arc::new(KeyringSettings))
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        entry_of(doc).map(|_| ())
    }

    fn destination(&self, scheme: &str, location: &str) -> Option<Result<Destination, FetchError>> {
        Some(destination(scheme, location))
    }

    fn expiry_source(&self) -> &'static str {
        "nowhere (a keychain entry has no expiry)"
    }
}

/// `kind = "keyring"` has no settings: the keychain is the user's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyringSettings;

impl BackendSettings for KeyringSettings {
    fn describe(&self) -> String {
        format!("kind keyring, {}", store_name())
    }

    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        build(name, ctx)
    }
}

/// What the keychain is on this platform, for messages.
pub fn store_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "the macOS Keychain"
    } else if cfg!(windows) {
        "the Windows Credential Manager"
    } else {
        "the Secret Service (D-Bus)"
    }
}

/// One keychain entry: its service and account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub account: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}, account {}", self.service, self.account)
    }
}

const FORM: &str = "a keyring reference is keyring://SERVICE/ACCOUNT";

/// Reads `keyring://SERVICE/ACCOUNT`: the service up to the first `/`, the account after it
/// (which may hold `/`). Checked in every build, before anything is fetched.
pub fn entry_of(doc: &Document) -> Result<Entry, String> {
    doc.only_params(&[])?;
    if !doc.has_authority {
        return Err(format!("{FORM} (with two slashes)"));
    }
    let (service, account) = doc
        .location
        .split_once('/')
        .ok_or_else(|| format!("{FORM}: no account after the service"))?;
    check_name("service", service)?;
    check_name("account", account)?;
    Ok(Entry {
        service: service.to_owned(),
        account: account.to_owned(),
    })
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{FORM}: the {what} is empty"));
    }
    if name.len() > 256 {
        return Err(format!("{FORM}: the {what} is longer than 256 bytes"));
    }
    Ok(())
}

/// `import --to SCHEME://SERVICE/`: one entry per name, account NAME, in that service.
pub fn destination(scheme: &str, location: &str) -> Result<Destination, FetchError> {
    let service = location.trim_end_matches('/');
    let ok = !service.is_empty()
        && service.len() <= 200
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '@'));
    if !ok {
        return Err(FetchError::invalid(format!(
            "a keyring destination is {scheme}://SERVICE/, the service one name of letters, \
             digits and - _ . + = @ (such as {scheme}://cme-exec/)"
        )));
    }
    Ok(Destination::new("the keychain", format!("{service}/"), ""))
}

/// Builds the provider.
#[cfg(feature = "keyring")]
fn build(name: &str, _ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
    Ok(store::provider(name))
}

/// This build has no keychain client: the one answer for a keyring provider.
#[cfg(not(feature = "keyring"))]
fn build(name: &str, _ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
    Err(FetchError::left_out(KIND.name(), name, "keyring"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;

    fn entry(raw: &str) -> Result<Entry, String> {
        entry_of(&Reference::parse(raw).unwrap().document)
    }

    #[test]
    fn references_name_a_service_and_an_account() {
        assert_eq!(
            entry("keyring://cme-exec/me@example.com#api_token").unwrap(),
            Entry {
                service: "cme-exec".into(),
                account: "me@example.com".into()
            }
        );
        // The account is everything after the first `/`; `%20` is a space.
        let e = entry("keyring://My%20Service/team/wiki").unwrap();
        assert_eq!(
            (e.service.as_str(), e.account.as_str()),
            ("My Service", "team/wiki")
        );
        for bad in [
            "keyring://cme-exec",
            "keyring://cme-exec/",
            "keyring:cme-exec/wiki",
            "keyring://cme-exec/wiki?x=1",
        ] {
            assert!(entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_are_one_service() {
        let d = destination("keyring", "cme-exec/").unwrap();
        assert_eq!(
            d.place("confluence-a.example.com"),
            "cme-exec/confluence-a.example.com"
        );
        assert_eq!(destination("keyring", "cme-exec").unwrap(), d);
        for bad in ["", "/", "a b/", "a/b/", "a#b/"] {
            assert!(destination("keyring", bad).is_err(), "{bad:?}");
        }
    }
}
