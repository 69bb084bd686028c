//! Every environment variable cme-exec reads or sets, in one place.

/// The config file, when `--config` is not given.
pub const CME_EXEC_CONFIG: &str = "CME_EXEC_CONFIG";
/// `--via`.
pub const CME_EXEC_VIA: &str = "CME_EXEC_VIA";
/// `--timeout`.
pub const CME_EXEC_TIMEOUT: &str = "CME_EXEC_TIMEOUT";
/// `--grace`.
pub const CME_EXEC_GRACE: &str = "CME_EXEC_GRACE";

/// The environment-only configuration (no config file): `CME_EXEC_CONFLUENCE_URL`,
/// `CME_EXEC_CONFLUENCE_API_TOKEN`, ... and the same with `JIRA`.
pub const ENV_CONFIG_PREFIX: &str = "CME_EXEC_";
/// The bulk `[auth] from` of the environment-only configuration.
pub const CME_EXEC_AUTH_FROM: &str = "CME_EXEC_AUTH_FROM";

/// Where cme reads its config (set for the child; read as the default base config).
pub const CME_CONFIG_PATH: &str = "CME_CONFIG_PATH";
/// Set for the child so that cme never opens an interactive prompt.
pub const CME_NON_INTERACTIVE: &str = "CME_NON_INTERACTIVE";
/// `--via env` hands the credentials over in these (cme's own names).
pub const CME_AUTH_CONFLUENCE: &str = "CME_AUTH__CONFLUENCE";
pub const CME_AUTH_JIRA: &str = "CME_AUTH__JIRA";
/// cme also reads this whole-auth variable; cme-exec removes it from the child's environment
/// so that an inherited value can never override what cme-exec hands over.
pub const CME_AUTH: &str = "CME_AUTH";

pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// cme-exec's state directory (trust records, the fingerprint key) is `$XDG_STATE_HOME/cme-exec`.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
pub const TMPDIR: &str = "TMPDIR";
pub const HOME: &str = "HOME";
pub const PATH: &str = "PATH";
pub const NO_COLOR: &str = "NO_COLOR";
pub const RUST_LOG: &str = "RUST_LOG";
pub const CI: &str = "CI";

/// `[cme] base_config` of the environment-only configuration.
pub const CME_EXEC_BASE_CONFIG: &str = "CME_EXEC_BASE_CONFIG";
/// `[cme] write_back` of the environment-only configuration (`true` or `false`).
pub const CME_EXEC_WRITE_BACK: &str = "CME_EXEC_WRITE_BACK";

/// A shared key file for `explain`'s fingerprints (default: the per-user key in the state
/// directory), so that two machines can compare.
pub const CME_EXEC_FINGERPRINT_KEY_FILE: &str = "CME_EXEC_FINGERPRINT_KEY_FILE";
