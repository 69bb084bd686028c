//! What providers may see of the outside world: the environment (through [`EnvReader`], which
//! remembers which variables held credentials so the child never inherits them) and the
//! directory that relative paths are resolved against.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;

/// Shared by every provider of one run.
pub struct Context {
    /// Relative `file:` paths are resolved against this directory: the config file's own
    /// directory, or the working directory when there is no config file.
    pub base_dir: PathBuf,
    pub env: EnvReader,
    /// The resolver's overall deadline (`--timeout`): a provider sizes its own timeouts and
    /// retries to fit inside it, so that its error (which names the cause) arrives first.
    pub timeout: Duration,
    /// State that providers of one run share, by key ([`Context::shared`]).
    shared: Mutex<BTreeMap<String, Arc<dyn Any + Send + Sync>>>,
}

/// The default of `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Context {
    pub fn new(base_dir: PathBuf, env: EnvReader) -> Self {
        Context {
            base_dir,
            env,
            timeout: DEFAULT_TIMEOUT,
            shared: Mutex::new(BTreeMap::new()),
        }
    }

    /// The run's one value under `key`, made by `make` on first use: how providers of several
    /// kinds share what they would otherwise each do (one AWS configuration for `aws-sm` and
    /// `aws-ssm`). A key names its type; asking for another type under it is a bug.
    pub fn shared<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(make()) as Arc<dyn Any + Send + Sync>)
            .clone();
        entry
            .downcast::<T>()
            .unwrap_or_else(|_| panic!("the shared value `{key}` has another type"))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A snapshot of the process environment taken at start-up.
///
/// Providers read settings with [`EnvReader::var`] and credentials with
/// [`EnvReader::secret`]; the names read through the latter are removed from the child's
/// environment: the child does not inherit the credentials cme-exec used
/// ([security](../../docs/security.md#secrets-stay-out-of-everything-but-the-handed-over-config)).
pub struct EnvReader {
    vars: BTreeMap<OsString, OsString>,
    consumed: Mutex<BTreeSet<String>>,
}

impl EnvReader {
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars_os())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        EnvReader {
            vars: vars.into_iter().collect(),
            consumed: Mutex::new(BTreeSet::new()),
        }
    }

    /// A non-secret setting (an address, a region, a file path). Not valid UTF-8 reads as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(std::ffi::OsStr::new(name))
            .and_then(|v| v.to_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A credential. The variable is marked as consumed even when it is unset or unusable, so
    /// that a child never receives a variable cme-exec treated as secret.
    pub fn secret(&self, name: &str) -> Result<Option<SecretString>, NotUtf8> {
        self.mark_consumed(name);
        match self.vars.get(std::ffi::OsStr::new(name)) {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some(s) => Ok(Some(SecretString::from(s.to_owned()))),
                None => Err(NotUtf8),
            },
        }
    }

    /// Records that `name` held (or would have held) a credential.
    pub fn mark_consumed(&self, name: &str) {
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
    }

    /// The variables read as credentials so far.
    pub fn consumed(&self) -> BTreeSet<String> {
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every variable of the snapshot, for building the child's environment.
    pub fn all(&self) -> &BTreeMap<OsString, OsString> {
        &self.vars
    }
}

/// The snapshot holds every credential variable's value: wiped when the reader is dropped
/// (the process's own environment block, which the kernel set up at exec, is not).
impl Drop for EnvReader {
    fn drop(&mut self) {
        for (_, v) in std::mem::take(&mut self.vars) {
            wipe_os_string(v);
        }
    }
}

/// Wipes an `OsString`'s bytes (its whole buffer) and frees it.
pub fn wipe_os_string(s: OsString) {
    use std::os::unix::ffi::OsStringExt as _;
    use zeroize::Zeroize as _;
    let mut bytes = s.into_vec();
    bytes.zeroize();
}

/// Wipes the values (names are not secret) of a list of variables and empties it.
pub fn wipe_env(env: &mut Vec<(OsString, OsString)>) {
    for (_, v) in env.drain(..) {
        wipe_os_string(v);
    }
}

/// A variable's value is not valid UTF-8.
#[derive(Debug, Clone, Copy)]
pub struct NotUtf8;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn secret_reads_are_recorded_even_when_unset() {
        let env = EnvReader::from_vars([("A".into(), "1".into())]);
        assert_eq!(env.secret("A").unwrap().unwrap().expose_secret(), "1");
        assert!(env.secret("B").unwrap().is_none());
        assert_eq!(env.var("A").as_deref(), Some("1"));
        let consumed: Vec<_> = env.consumed().into_iter().collect();
        assert_eq!(consumed, ["A", "B"]);
    }

    #[test]
    fn wiping_empties_the_list() {
        let mut env = vec![(OsString::from("K"), OsString::from("v-S3NT1NEL"))];
        wipe_env(&mut env);
        assert!(env.is_empty());
    }
}
