//! Handing the config to cme: `--via memfd`, `--via file` or `--via env`.
//!
//! | via     | where the config is                         | what is left after SIGKILL of cme-exec |
//! |---------|---------------------------------------------|----------------------------------------|
//! | `memfd` | an anonymous memory file, `/proc/self/fd/N` | nothing (it dies with its last holder)  |
//! | `file`  | `DIR/cme-exec.XXXXXX/app_data.json`, 0600   | the directory, swept by a later run     |
//! | `env`   | `CME_AUTH__CONFLUENCE` / `CME_AUTH__JIRA`   | nothing (but visible in `/proc/PID/environ`) |

// memfd_create and /proc/self/fd are Linux only (src/platform.rs).
#[cfg(target_os = "linux")]
pub mod memfd;
pub mod private_dir;

use std::ffi::OsString;
use std::path::Path;

use zeroize::Zeroizing;

use crate::cme_config;
use crate::config::Product;
use crate::envnames as names;
use crate::error::Error;
use crate::platform;
use crate::resolve::Auth;

pub(crate) use cme_exec_providers::secure_io::{read_capped as read_back, ReadError};

/// cme's config read back after the run is larger than cme-exec reads (cme's own is a few KiB).
pub(crate) fn too_large(limit: u64) -> Error {
    Error::new(format!(
        "the config cme left is larger than {} MiB; not read back",
        limit / (1024 * 1024)
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// An anonymous in-memory file, inherited by cme (Linux only; the default there).
    Memfd,
    /// A 0600 file in a private 0700 directory, removed when the run ends (the default on macOS).
    File,
    /// `CME_AUTH__CONFLUENCE`/`CME_AUTH__JIRA` variables (weakest: readable in /proc/PID/environ).
    Env,
}

impl Via {
    /// The hand-over used when `--via` is not given: the anonymous memory file where it exists.
    /// Elsewhere (macOS) a 0600 file in a private 0700 directory (under `$TMPDIR`, which macOS
    /// makes private to the user), removed on every exit and swept by the next run after a
    /// SIGKILL. It survives cme's many re-reads of its config.
    pub const DEFAULT: Via = if platform::HAS_MEMFD {
        Via::Memfd
    } else {
        Via::File
    };
}

/// A config handed over for one run. Dropping it removes what it made.
pub struct Handover {
    inner: Inner,
    /// Variables to set in the child's environment.
    pub env: Vec<(OsString, Zeroizing<Vec<u8>>)>,
}

enum Inner {
    #[cfg(target_os = "linux")]
    Memfd(memfd::Memfd),
    File(private_dir::PrivateDir),
    Env,
}

impl Handover {
    /// Puts `config` (and, for `--via env`, the credentials) where cme will find them.
    pub fn create(
        via: Via,
        config: &[u8],
        auth: &Auth,
        base_path: &Path,
        dir: Option<&Path>,
    ) -> Result<Handover, Error> {
        match via {
            #[cfg(not(target_os = "linux"))]
            Via::Memfd => Err(Error::new("--via memfd needs Linux (memfd_create)")
                .hint("use --via file (the default on this system)")),
            #[cfg(target_os = "linux")]
            Via::Memfd => {
                let m = memfd::Memfd::create(config)?;
                let path = format!("/proc/self/fd/{}", m.raw_fd());
                Ok(Handover {
                    inner: Inner::Memfd(m),
                    env: vec![(
                        names::CME_CONFIG_PATH.into(),
                        Zeroizing::new(path.into_bytes()),
                    )],
                })
            }
            Via::File => {
                let d = private_dir::PrivateDir::create(dir)?;
                let path = d.write_config(config)?;
                Ok(Handover {
                    inner: Inner::File(d),
                    env: vec![(
                        names::CME_CONFIG_PATH.into(),
                        Zeroizing::new(path.into_os_string().into_encoded_bytes()),
                    )],
                })
            }
            Via::Env => {
                // cme reads its non-secret settings from the base config directly, and stores
                // what it changes (a cloud_id) there itself: no write-back is needed.
                // Absolute, like every path handed over: the child may change directory.
                let base_path = std::path::absolute(base_path).map_err(|e| {
                    Error::new(format!("cannot make {} absolute", base_path.display()))
                        .cause(e.to_string())
                })?;
                let mut env = vec![(
                    OsString::from(names::CME_CONFIG_PATH),
                    Zeroizing::new(base_path.as_os_str().as_encoded_bytes().to_vec()),
                )];
                for (product, name) in [
                    (Product::Confluence, names::CME_AUTH_CONFLUENCE),
                    (Product::Jira, names::CME_AUTH_JIRA),
                ] {
                    if let Some(json) = cme_config::render_product(auth, product) {
                        env.push((name.into(), json));
                    }
                }
                Ok(Handover {
                    inner: Inner::Env,
                    env,
                })
            }
        }
    }

    /// The config as cme left it, for write-back (`None` for `--via env`).
    pub fn read_back(&self) -> Option<Result<Zeroizing<Vec<u8>>, Error>> {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Memfd(m) => Some(m.read_all()),
            Inner::File(d) => Some(d.read_config()),
            Inner::Env => None,
        }
    }

    /// Where the config is, for messages.
    pub fn describe(&self) -> String {
        match &self.inner {
            #[cfg(target_os = "linux")]
            Inner::Memfd(m) => format!("memfd /proc/self/fd/{}", m.raw_fd()),
            Inner::File(d) => d.path().display().to_string(),
            Inner::Env => "environment".into(),
        }
    }
}
