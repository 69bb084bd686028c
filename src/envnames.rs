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

/// GitHub Actions' ID-token request pair: with it any process of the job can ask for an OIDC
/// token for any audience (and assume what the workflow's roles allow). cme never needs it, so
/// the child never inherits it, whoever used it (cme-exec's Vault login or a step before).
pub const ID_TOKEN_REQUEST: [&str; 2] = [
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];
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
/// The CA bundle Python's requests (and so cme) verifies with, when cme's own
/// `connection_config.ca_bundle` is not set (`check --live`).
pub const REQUESTS_CA_BUNDLE: &str = "REQUESTS_CA_BUNDLE";
pub const CURL_CA_BUNDLE: &str = "CURL_CA_BUNDLE";

/// `[cme] base_config` of the environment-only configuration.
pub const CME_EXEC_BASE_CONFIG: &str = "CME_EXEC_BASE_CONFIG";
/// `[cme] write_back` of the environment-only configuration (`true` or `false`).
pub const CME_EXEC_WRITE_BACK: &str = "CME_EXEC_WRITE_BACK";

/// A shared key file for `explain`'s fingerprints (default: the per-user key in the state
/// directory), so that two machines can compare.
pub const CME_EXEC_FINGERPRINT_KEY_FILE: &str = "CME_EXEC_FINGERPRINT_KEY_FILE";

/// The cme release the config is validated for, instead of the one detected from the command
/// (or `cme` on PATH): for `render` when cme runs elsewhere.
pub const CME_EXEC_CME_VERSION: &str = "CME_EXEC_CME_VERSION";
/// Instance URLs (comma-separated) to which `check --live` may send credentials over plain
/// `http://` although they are not loopback (docs/configuration.md).
pub const CME_EXEC_LIVE_ALLOW_HTTP: &str = "CME_EXEC_LIVE_ALLOW_HTTP";

/// Reserved for the test harness (`CME_EXEC_TEST_VENV`, ...): never an error.
pub const TEST_PREFIX: &str = "CME_EXEC_TEST_";

/// The fields of the environment-only form, `CME_EXEC_<PRODUCT>_<SUFFIX>`.
const ENV_ONLY_SUFFIXES: [&str; 7] = [
    "URL",
    "USERNAME",
    "API_TOKEN",
    "PAT",
    "SESSION_COOKIES",
    "CLOUD_ID",
    "FROM",
];

/// The variables of the environment-only configuration: used only when no config file exists.
pub fn env_only_names() -> Vec<String> {
    let mut out = Vec::new();
    for product in ["CONFLUENCE", "JIRA"] {
        for suffix in ENV_ONLY_SUFFIXES {
            out.push(format!("{ENV_CONFIG_PREFIX}{product}_{suffix}"));
        }
    }
    out.extend(
        [
            CME_EXEC_AUTH_FROM,
            CME_EXEC_BASE_CONFIG,
            CME_EXEC_WRITE_BACK,
        ]
        .map(str::to_owned),
    );
    out
}

/// The variables `install.sh` reads. cme-exec ignores them, but a CI job that set them to
/// install cme-exec still has them when it runs cme-exec: they are not typos.
const INSTALLER_NAMES: [&str; 6] = [
    "CME_EXEC_VERSION",
    "CME_EXEC_BASE_URL",
    "CME_EXEC_INSTALL_DIR",
    "CME_EXEC_TARGET",
    "CME_EXEC_ALLOWED_SIGNERS",
    "CME_EXEC_ALLOW_HTTP",
];

/// Every `CME_EXEC_*` name cme-exec reads (and the installer's, which it accepts and ignores).
pub fn known_names() -> Vec<String> {
    let mut out: Vec<String> = [
        CME_EXEC_CONFIG,
        CME_EXEC_VIA,
        CME_EXEC_TIMEOUT,
        CME_EXEC_GRACE,
        CME_EXEC_FINGERPRINT_KEY_FILE,
        CME_EXEC_CME_VERSION,
        CME_EXEC_LIVE_ALLOW_HTTP,
    ]
    .map(str::to_owned)
    .into();
    out.extend(env_only_names());
    // The backends' own (`CME_EXEC_VAULT_AUTH`, ...), whether or not this build has them.
    out.extend(cme_exec_providers::registry::env_names());
    out.extend(INSTALLER_NAMES.map(str::to_owned));
    out
}

/// Refuses `CME_EXEC_*` variables that cme-exec does not know (a typo would otherwise be
/// silently ignored), naming the closest known name. `CME_EXEC_TEST_*` is the test harness's.
pub fn check_unknown(env: &cme_exec_providers::EnvReader) -> Result<(), crate::error::Error> {
    let known = known_names();
    let mut unknown = Vec::new();
    for name in env.all().keys() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(ENV_CONFIG_PREFIX)
            || name.starts_with(TEST_PREFIX)
            || known.iter().any(|k| k == name)
        {
            continue;
        }
        let line = match closest(name, &known) {
            Some(k) => format!("{name}: did you mean {k}?"),
            None => format!("{name}: not a cme-exec variable"),
        };
        unknown.push(line);
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let mut e = crate::error::Error::new(format!(
        "unknown environment variable{} starting with {ENV_CONFIG_PREFIX}",
        if unknown.len() == 1 { "" } else { "s" }
    ));
    for u in unknown {
        e = e.detail(u);
    }
    Err(e
        .hint(format!(
            "fix the name or unset it; the known names are listed at {}",
            crate::error::docs_url("configuration.md#no-config-file")
        ))
        .fatal())
}

/// The known name nearest to `name` (edit distance at most a third of its length).
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(name, k), k))
        .filter(|(d, _)| *d <= name.len().div_ceil(3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Warns when environment-only settings are set but a config file is used instead.
pub fn warn_ignored_env_only(env: &cme_exec_providers::EnvReader, file: &std::path::Path) {
    let set: Vec<String> = env_only_names()
        .into_iter()
        .filter(|n| env.var(n).is_some())
        .collect();
    if !set.is_empty() {
        crate::error::warn(format!(
            "{} {} ignored: the config file {} is used, and the environment-only form applies only without a config file",
            set.join(", "),
            if set.len() == 1 { "is" } else { "are" },
            file.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cme_exec_providers::EnvReader;

    fn env(vars: &[(&str, &str)]) -> EnvReader {
        EnvReader::from_vars(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())))
    }

    #[test]
    fn unknown_names_are_refused_with_the_closest_known_one() {
        for (typo, meant) in [
            ("CME_EXEC_TIMOUT", "CME_EXEC_TIMEOUT"),
            ("CME_EXEC_VAULT_KV_VERSON", "CME_EXEC_VAULT_KV_VERSION"),
            (
                "CME_EXEC_CONFLUENCE_APITOKEN",
                "CME_EXEC_CONFLUENCE_API_TOKEN",
            ),
            ("CME_EXEC_JIRA_UR", "CME_EXEC_JIRA_URL"),
        ] {
            let e = check_unknown(&env(&[(typo, "x")])).unwrap_err();
            assert!(e.is_fatal());
            let text = e.to_string();
            assert!(
                text.contains(&format!("{typo}: did you mean {meant}?")),
                "{text}"
            );
            assert!(!text.contains("x\n"), "{text}");
        }
        let e = check_unknown(&env(&[("CME_EXEC_SOMETHING_ELSE_ENTIRELY", "x")])).unwrap_err();
        assert!(e.to_string().contains("not a cme-exec variable"), "{e}");
    }

    #[test]
    fn known_dynamic_and_test_names_pass() {
        let ok = env(&[
            ("CME_EXEC_TIMEOUT", "3"),
            ("CME_EXEC_JIRA_PAT", "env://X"),
            ("CME_EXEC_CONFLUENCE_SESSION_COOKIES", "env://X"),
            ("CME_EXEC_VAULT_AUTH", "approle"),
            ("CME_EXEC_VAULT_AUTH_ROLE_ID", "r"),
            ("CME_EXEC_VAULT_AUTH_SECRET_ID_ENV", "S"),
            ("CME_EXEC_TEST_VENV", "/x"),
            ("CME_EXEC_FINGERPRINT_KEY_FILE", "/k"),
            ("CME_EXECUTOR", "not ours"),
        ]);
        check_unknown(&ok).unwrap();
    }
}
