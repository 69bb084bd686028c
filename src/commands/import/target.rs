//! `import --to SCHEME://LOCATION`: the provider import writes through and where in its store.
//!
//! SCHEME is a `[providers.NAME]` table of the config file import writes (so the same address,
//! CA, auth method and agent settings apply as for reads), else a built-in scheme (`file`,
//! `vault`, `aws-sm`, with the same environment variables as reads). Its backend says whether
//! it can store documents and checks LOCATION ([`Kind::destination`]).
//!
//! The config file may exist holding only `[providers]` tables: import keeps them and adds its
//! part after them. Any other content is never overwritten.

use std::path::Path;

use cme_exec_providers::provider::Destination;
use cme_exec_providers::{registry, FetchError, Kind, ProviderSettings};

use crate::error::Error;

/// Where the documents go.
#[derive(Debug)]
pub struct Target {
    /// The scheme, lower-cased: the name of the provider the documents are written through and
    /// the new references read them with.
    pub scheme: String,
    pub destination: Destination,
    /// The config file import writes, as it is now (`None`: there is none).
    existing: Option<Vec<u8>>,
}

/// How a file import writes compares with what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Absent,
    /// It holds exactly what import would write.
    Same,
    /// It holds only `[providers]` tables, which import keeps, adding its part after them.
    Extend,
    /// It holds something else: never overwritten.
    Other,
}

impl Target {
    /// Reads `--to` against the config file at `toml_path` (its `[providers]` tables).
    pub fn parse(raw: &str, toml_path: &Path) -> Result<Target, Error> {
        let existing = read_existing(toml_path)?;
        let (scheme, location) = split(raw).ok_or_else(|| bad(raw, "unknown destination"))?;
        let kind = declared_kind(existing.as_deref(), &scheme)
            .or_else(|| ProviderSettings::builtin(&scheme).map(|s| s.kind()))
            .ok_or_else(|| {
                bad(raw, &format!(
                    "unknown destination: `{scheme}` is neither a [providers.{scheme}] table of {} nor a built-in scheme",
                    toml_path.display()
                ))
            })?;
        let destination = match kind.destination(&scheme, location) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(refused(raw, &e)),
            None => {
                return Err(bad(
                    raw,
                    &format!("a provider of kind {kind} cannot store documents"),
                ))
            }
        };
        Ok(Target {
            scheme,
            destination,
            existing,
        })
    }

    /// The reference that reads the document at `at` back.
    pub fn reference(&self, at: &str) -> String {
        format!("{}://{at}", self.scheme)
    }

    /// What the config file holds after the import: its `[providers]` tables, if that is all
    /// it holds (before import's own part, on a second run), then `generated`. `None` when it
    /// holds anything else.
    pub fn config_bytes(&self, generated: &str) -> Option<Vec<u8>> {
        let Some(existing) = &self.existing else {
            return Some(generated.as_bytes().to_vec());
        };
        let text = std::str::from_utf8(existing).ok()?;
        let head = text.strip_suffix(generated).unwrap_or(text);
        if !only_providers(head) {
            return None;
        }
        let head = head.trim_end();
        Some(if head.is_empty() {
            generated.as_bytes().to_vec()
        } else {
            format!("{head}\n\n{generated}").into_bytes()
        })
    }

    /// The config file now, compared with `new` ([`Target::config_bytes`]).
    pub fn config_state(&self, new: Option<&[u8]>) -> State {
        match (&self.existing, new) {
            (None, _) => State::Absent,
            (Some(old), Some(new)) if old.as_slice() == new => State::Same,
            (Some(_), Some(_)) => State::Extend,
            (Some(_), None) => State::Other,
        }
    }
}

/// `SCHEME://LOCATION` (or `SCHEME:LOCATION`), the scheme lower-cased as references read it.
fn split(raw: &str) -> Option<(String, &str)> {
    let (scheme, location) = raw.split_once("://").or_else(|| raw.split_once(':'))?;
    let ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then(|| (scheme.to_ascii_lowercase(), location))
}

/// The kind of `[providers.SCHEME]` in the config file, if it declares one.
fn declared_kind(existing: Option<&[u8]>, scheme: &str) -> Option<Kind> {
    let table: toml::Table = std::str::from_utf8(existing?).ok()?.parse().ok()?;
    let kind = table
        .get("providers")?
        .get(scheme)?
        .get("kind")?
        .as_str()?
        .to_owned();
    Kind::from_name(&kind)
}

/// Whether a config text is empty or holds `[providers]` tables (and comments) and nothing
/// else. A file of comments alone is someone's: other content.
fn only_providers(text: &str) -> bool {
    text.trim().is_empty()
        || text
            .parse::<toml::Table>()
            .is_ok_and(|t| !t.is_empty() && t.keys().all(|k| k == "providers"))
}

fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let cannot = |e: std::io::Error| {
        Error::new(format!("cannot read {}", path.display())).cause(e.to_string())
    };
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cannot(e)),
    }
}

const DESTINATIONS: &str =
    "use file:///DIR, vault://MOUNT/PREFIX, aws-sm://PREFIX/ or keyring://SERVICE/, or \
     NAME://... for a [providers.NAME] table (of kind";

fn bad(raw: &str, why: &str) -> Error {
    Error::new(format!("--to {raw:?}: {why}")).hint(format!(
        "{DESTINATIONS} {}) declared in the config file import writes",
        registry::writable_kinds().join(", ")
    ))
}

/// The backend's refusal of a location, with its own hint when it has one.
fn refused(raw: &str, e: &FetchError) -> Error {
    match e.hint() {
        Some(h) => Error::new(format!("--to {raw:?}: {}", e.message())).hint(h),
        None => bad(raw, e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(raw: &str) -> Result<Target, Error> {
        Target::parse(raw, Path::new("/nonexistent/cme-exec.toml"))
    }

    #[test]
    fn destinations() {
        let t = target("file:///run/s").unwrap();
        assert_eq!(
            t.reference(&t.destination.place("a")),
            "file:///run/s/a.json"
        );
        assert!(target("file:rel").is_err());
        let t = target("vault://secret/cme/").unwrap();
        assert_eq!(
            t.reference(&t.destination.place("a")),
            "vault://secret/cme/a"
        );
        let t = target("aws-sm://prod/cme/").unwrap();
        assert_eq!(
            t.reference(&t.destination.place("a")),
            "aws-sm://prod/cme/a"
        );
        for raw in ["s3://x", "env://X", "nothing"] {
            let e = target(raw).unwrap_err().to_string();
            assert!(e.contains("hint: use file:///DIR"), "{e}");
        }
        for raw in ["vault://secret/data/cme", "vault://secret/data"] {
            let e = target(raw).unwrap_err().to_string();
            assert!(e.contains("leave `data/` out of --to"), "{e}");
        }
        assert!(target("vault://secret/database/cme").is_ok());
    }

    #[test]
    fn a_config_of_providers_only_is_kept_and_extended() {
        let providers = "[providers.bao]\nkind = \"vault\"\naddress = \"https://bao:8200\"\n";
        let t = Target {
            scheme: "bao".into(),
            destination: Destination::new("Vault KV", "secret/", ""),
            existing: Some(providers.as_bytes().to_vec()),
        };
        assert_eq!(
            declared_kind(t.existing.as_deref(), "bao"),
            Some(cme_exec_providers::vault::KIND)
        );
        let generated = "[cme]\nbase_config = \"x.base.json\"\n";
        let new = t.config_bytes(generated).unwrap();
        assert_eq!(t.config_state(Some(&new)), State::Extend);
        let again = Target {
            existing: Some(new.clone()),
            ..t
        };
        assert_eq!(again.config_bytes(generated).unwrap(), new);
        assert_eq!(again.config_state(Some(&new)), State::Same);
        let other = Target {
            existing: Some(b"[cme]\nwrite_back = false\n".to_vec()),
            ..again
        };
        assert_eq!(other.config_bytes(generated), None);
        assert_eq!(other.config_state(None), State::Other);
        let mine = Target {
            existing: Some(b"# mine\n".to_vec()),
            ..other
        };
        assert_eq!(mine.config_bytes(generated), None);
    }
}
