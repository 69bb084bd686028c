//! `cme-exec.toml`: discovery, strict parsing, and the environment-only configuration.
//!
//! Parsing walks the TOML tree by hand instead of deriving `Deserialize`: serde stops at the
//! first error and its messages quote the offending value, while here every problem is
//! collected (file, table, key) and no value is ever repeated, because a user may have pasted a
//! secret where a reference belongs.

pub mod instance;
pub mod trust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cme_exec_providers::context::EnvReader;
use cme_exec_providers::reference::{looks_like_reference, Reference};
use cme_exec_providers::Kind;
use cme_exec_providers::{registry, toml_key, Problem, ProviderSettings, TableReader};

use zeroize::Zeroizing;

use crate::envnames as names;
use crate::error::Error;
pub use instance::{normalise_url, redact_user_info, slug, Field, Product};

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// No file: `CME_EXEC_*` variables.
    Environment,
}

impl Source {
    /// Relative paths in the configuration resolve against this directory.
    pub fn base_dir(&self, cwd: &Path) -> PathBuf {
        match self {
            Source::File(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => cwd.join(d),
                _ => cwd.to_owned(),
            },
            Source::Environment => cwd.to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Environment => "environment".into(),
        }
    }
}

/// A field's configured value. `Debug` is written by hand: a literal user name is treated as
/// a secret (it is masked, and `explain` fingerprints it), so it is never printed.
#[derive(Clone)]
pub enum FieldSpec {
    Reference(Reference),
    /// Only for fields that allow it (`username`, `cloud_id`): not a secret.
    Literal(String),
}

impl std::fmt::Debug for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldSpec::Reference(r) => f.debug_tuple("Reference").field(r).finish(),
            FieldSpec::Literal(_) => f.write_str("Literal([REDACTED])"),
        }
    }
}

/// `[confluence."URL"]` or `[jira."URL"]`. No derived `Debug`: it holds literal field values.
#[derive(Clone)]
pub struct Instance {
    pub product: Product,
    /// Normalised as cme matches it.
    pub url: String,
    /// How the table was written, for messages: `confluence."https://x"`.
    pub table: String,
    pub fields: BTreeMap<Field, FieldSpec>,
    pub from: Option<Reference>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("product", &self.product)
            .field("url", &self.url)
            .field("table", &self.table)
            .field("fields", &self.fields)
            .field("from", &self.from)
            .finish()
    }
}

/// `[cme]`.
#[derive(Clone, Debug)]
pub struct CmeSettings {
    /// The secret-free base config; `None` means the file cme itself would use.
    pub base_config: Option<PathBuf>,
    /// Write cme's non-secret changes back into the base config after the run.
    pub write_back: bool,
}

impl Default for CmeSettings {
    fn default() -> Self {
        CmeSettings {
            base_config: None,
            write_back: true,
        }
    }
}

/// The whole configuration, checked. No derived `Debug`: its instances hold literal values.
#[derive(Clone)]
pub struct Config {
    pub source: Source,
    /// Declared providers by name (the name is their scheme).
    pub providers: BTreeMap<String, ProviderSettings>,
    pub instances: Vec<Instance>,
    /// `[auth] from`: one document holding `{"confluence": {...}, "jira": {...}}`.
    pub auth_from: Option<Reference>,
    pub cme: CmeSettings,
    /// A `./cme-exec.toml` used because its trust record matched: cme-exec's own write-back
    /// into a pinned base config updates that record.
    pub trusted_in_cwd: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("providers", &self.providers)
            .field("instances", &self.instances)
            .field("auth_from", &self.auth_from)
            .field("cme", &self.cme)
            .finish()
    }
}

impl Config {
    /// The directory a file config's relative paths resolve against (the canonical directory
    /// of the file); `None` for the environment-only configuration.
    pub fn file_dir(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => p.parent(),
            Source::Environment => None,
        }
    }

    /// The files this config makes cme-exec run or read as configuration, hashed now: helper
    /// programs named by a relative path and the `[cme] base_config`. A trust record covers
    /// them (trust.rs).
    pub fn pinned_files(&self) -> Vec<trust::Pinned> {
        let Some(dir) = self.file_dir() else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = self
            .providers
            .values()
            .flat_map(|p| p.local_programs().into_iter().map(|p| dir.join(p)))
            .collect();
        if let Some(b) = &self.cme.base_config {
            paths.push(dir.join(b));
        }
        paths.sort();
        paths.dedup();
        paths.into_iter().map(trust::Pinned::now).collect()
    }

    /// The provider a scheme names: a declared one, else a built-in default.
    pub fn provider_for(&self, scheme: &str) -> Option<ProviderSettings> {
        if let Some(p) = self.providers.get(scheme) {
            return Some(p.clone());
        }
        ProviderSettings::builtin(scheme)
    }

    /// Every reference with the place it was written, in config order.
    pub fn references(&self) -> Vec<(&Reference, String)> {
        let mut out = Vec::new();
        if let Some(r) = &self.auth_from {
            out.push((r, "[auth] from".to_owned()));
        }
        for i in &self.instances {
            if let Some(r) = &i.from {
                out.push((r, format!("[{}] from", i.table)));
            }
            for (f, spec) in &i.fields {
                if let FieldSpec::Reference(r) = spec {
                    out.push((r, format!("[{}] {f}", i.table)));
                }
            }
        }
        out
    }
}

/// Finds and loads the configuration: `--config`, else `$CME_EXEC_CONFIG` (an absolute path),
/// else `./cme-exec.toml` (once trusted), else `$XDG_CONFIG_HOME/cme-exec/config.toml`, else
/// the environment alone.
///
/// Relative paths inside a config file (a helper program, `base_config`, `ca_cert`, `file:`
/// references) resolve against the directory that really holds the file, links resolved
/// ([`Source::File`] holds that canonical path): a `./cme-exec.toml` that is a link to another
/// repository's trusted file runs that repository's helpers, never the ones beside the link.
pub fn load(explicit: Option<&Path>, env: &EnvReader, cwd: &Path) -> Result<Config, Error> {
    if let Some(path) = explicit {
        return load_file(path, env, false);
    }
    if let Some(path) = from_env_var(env)? {
        return load_file(&path, env, false);
    }
    for (i, candidate) in candidates(env, cwd).iter().enumerate() {
        if present(candidate)? {
            // The first candidate is the working directory's: it must be trusted (trust.rs).
            return load_file(candidate, env, i == 0);
        }
    }
    from_environment(env)
}

/// `$CME_EXEC_CONFIG`, which must be an absolute path.
pub fn from_env_var(env: &EnvReader) -> Result<Option<PathBuf>, Error> {
    // Empty counts as unset (EnvReader::var): an image that sets it can be told to use the
    // environment alone.
    let Some(path) = env.var(names::CME_EXEC_CONFIG).map(PathBuf::from) else {
        return Ok(None);
    };
    if path.is_absolute() {
        return Ok(Some(path));
    }
    // A relative path would pick whatever file of that name the working directory holds,
    // without the trust check a working-directory config gets.
    Err(Error::new(format!(
        "CME_EXEC_CONFIG is the relative path {}; it must be absolute",
        path.display()
    ))
    .detail("a relative path would use whatever file of that name the working directory holds, untrusted")
    .hint(format!(
        "export CME_EXEC_CONFIG=\"$PWD/{}\", or pass --config {}",
        path.display(),
        path.display()
    ))
    .fatal())
}

/// Whether a candidate config file is there. Only "no such file" means absent: a directory that
/// cannot be searched, or a link to nothing, is an error rather than a silent fall-through to
/// the next candidate or to the environment.
fn present(candidate: &Path) -> Result<bool, Error> {
    match std::fs::symlink_metadata(candidate) {
        Ok(m) if m.file_type().is_symlink() && std::fs::metadata(candidate).is_err() => {
            Err(Error::new(format!(
                "the config file {} is a symbolic link to a file that does not exist",
                candidate.display()
            ))
            .hint(format!("remove the link or restore its target: ls -l {}", candidate.display())))
        }
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::new(format!(
            "cannot look for the config file {}",
            candidate.display()
        ))
        .cause(e.source_text())
        .hint(match candidate.parent() {
            Some(d) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
                "let your user read and search the directory (ls -ld {}), or choose a config with --config",
                d.display()
            ),
            _ => "choose a config with --config".to_owned(),
        })),
    }
}

fn candidates(env: &EnvReader, cwd: &Path) -> Vec<PathBuf> {
    let mut c = vec![cwd.join("cme-exec.toml")];
    let xdg = env
        .var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")));
    if let Some(x) = xdg {
        c.push(x.join("cme-exec").join("config.toml"));
    }
    c
}

/// The largest config file accepted (it holds references only).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and parses a config file. With `needs_trust` (a `./cme-exec.toml` found in the working
/// directory), the exact bytes read must match a trust record, checked before they are parsed;
/// then the files the parsed config makes cme-exec run or read must match it too.
pub fn load_file(path: &Path, env: &EnvReader, needs_trust: bool) -> Result<Config, Error> {
    let bytes = read_config_bytes(path)?;
    let canonical = trust::canonical(path)?;
    let record = if needs_trust {
        let record = trust::lookup(env, &canonical)?;
        let status = trust::status_of_file(record.as_ref(), &canonical, &bytes);
        if status != trust::Status::Trusted {
            return Err(trust::untrusted(&path.display().to_string(), &status));
        }
        record
    } else {
        None
    };
    let mut config = parse_bytes(path, &bytes)?;
    config.source = Source::File(canonical.clone());
    if let Some(record) = record {
        let status = trust::status_of_files(&record, &config.pinned_files());
        if status != trust::Status::Trusted {
            return Err(trust::untrusted(&path.display().to_string(), &status));
        }
        config.trusted_in_cwd = true;
    }
    names::warn_ignored_env_only(env, path);
    Ok(config)
}

/// The bytes of a config file, after its checks (regular file, not writable by others, size),
/// made on the descriptor they are then read from.
pub fn read_config_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    use cme_exec_providers::secure_io::{read_private_file, Checks, Refused};
    let shown = path.display().to_string();
    let cannot_read = |e: std::io::Error| {
        Error::new(format!("cannot read the config file {shown}")).cause(e.source_text())
    };
    match read_private_file(path, MAX_CONFIG_BYTES, &Checks::NOT_WRITABLE_BY_OTHERS) {
        Ok(file) => Ok(file.bytes),
        Err(Refused::Open(e)) => Err(cannot_read(e)
            .hint("give an existing file with --config, or unset CME_EXEC_CONFIG")),
        Err(Refused::Stat(e) | Refused::Read(e)) => Err(cannot_read(e)),
        Err(Refused::NotRegular) => Err(Error::new(format!(
            "the config file {shown} is not a regular file"
        ))),
        Err(Refused::Writable(_)) => Err(Error::new(format!(
            "the config file {shown} is writable by other users, who could point it at their own secrets"
        ))
        .hint(format!("chmod o-w {shown}"))),
        // Not asked for: any owner is accepted.
        Err(Refused::Owner(uid)) => Err(Error::new(format!(
            "the config file {shown} belongs to another user (uid {uid})"
        ))),
        Err(Refused::TooLarge) => Err(Error::new(format!(
            "the config file {shown} is larger than 1 MiB"
        ))),
    }
}

/// Parses the bytes of a config file (`path` only names it in messages).
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Config, Error> {
    let shown = path.display().to_string();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(Error::new(format!(
                "{shown}:{line}: the config file is not valid UTF-8"
            )));
        }
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, col) = e
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((0, 0));
        Error::new(format!(
            "{shown}:{line}:{col}: invalid TOML: {}",
            sanitise_toml_message(e.message())
        ))
        .hint("values in cme-exec.toml are quoted references such as \"env://NAME\"; the offending text is not shown in case it is a secret")
    })?;
    parse_table(&table, Source::File(path.to_owned()))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// toml's messages may quote the source text in backticks; keep short tokens (`=`, `"`) and
/// drop anything longer, which could be part of a pasted secret.
fn sanitise_toml_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("").trim();
    let mut out = String::new();
    let mut parts = first.split('`');
    if let Some(p) = parts.next() {
        out.push_str(p);
    }
    let mut inside = true;
    for p in parts {
        if inside {
            if p.chars().count() <= 3 {
                out.push('`');
                out.push_str(p);
                out.push('`');
            } else {
                out.push('…');
            }
        } else {
            out.push_str(p);
        }
        inside = !inside;
    }
    if out.is_empty() {
        "syntax error".into()
    } else {
        out
    }
}

/// Parses a whole `cme-exec.toml` table, reporting every problem at once.
pub fn parse_table(table: &toml::Table, source: Source) -> Result<Config, Error> {
    let mut problems = Vec::new();
    let mut config = Config {
        source: source.clone(),
        providers: BTreeMap::new(),
        instances: Vec::new(),
        auth_from: None,
        cme: CmeSettings::default(),
        trusted_in_cwd: false,
    };
    let mut root = TableReader::new(table, "", &mut problems);
    let providers = root.table("providers");
    let products: Vec<_> = Product::ALL
        .into_iter()
        .map(|p| (p, root.table(p.name())))
        .collect();
    let auth = root.table("auth");
    let cme = root.table("cme");
    root.finish();

    if let Some(providers) = providers {
        for (name, value) in providers {
            let path = format!("providers.{}", toml_key(name));
            let Some(t) = value.as_table() else {
                problems.push(problem(&path, None, "expected a table"));
                continue;
            };
            if !is_provider_name(name) {
                problems.push(problem(
                    &path,
                    None,
                    "a provider's name is its reference scheme: lower-case letters, digits, `+`, `-`, `.`, starting with a letter",
                ));
                continue;
            }
            let mut r = TableReader::new(t, path.clone(), &mut problems);
            let kind = r.string("kind");
            let settings = match kind.as_deref().map(|k| (k, Kind::from_name(k))) {
                None => {
                    r.problem(
                        Some("kind"),
                        format!("missing: give kind = {}", registry::kind_list()),
                    );
                    None
                }
                Some((_, None)) => {
                    r.problem(
                        Some("kind"),
                        format!("unknown kind (expected {})", registry::kind_list()),
                    );
                    None
                }
                Some((_, Some(kind))) => Some(ProviderSettings::parse(kind, &mut r)),
            };
            if settings.is_none() {
                // Do not report the other keys as unknown when the kind is what's wrong.
                continue;
            }
            r.finish();
            if let Some(s) = settings {
                config.providers.insert(name.clone(), s);
            }
        }
    }

    for (product, tables) in products {
        let Some(tables) = tables else { continue };
        for (raw_url, value) in tables {
            let table_name = format!(
                "{}.{}",
                product.name(),
                toml_key(&redact_user_info(raw_url))
            );
            let Some(t) = value.as_table() else {
                problems.push(problem(
                    product.name(),
                    Some(&redact_user_info(raw_url)),
                    "expected a table: write [confluence.\"https://...\"] with the fields inside",
                ));
                continue;
            };
            let url = match normalise_url(product, raw_url) {
                Ok(u) => u,
                Err(e) => {
                    problems.push(problem(&table_name, None, &e));
                    continue;
                }
            };
            let instance = parse_instance(product, url, table_name, t, &mut problems);
            config.instances.push(instance);
        }
    }
    check_duplicates(&config.instances, &mut problems);

    if let Some(auth) = auth {
        let mut r = TableReader::new(auth, "auth", &mut problems);
        if let Some(raw) = r.string("from") {
            config.auth_from = parse_reference(&raw, "auth", "from", &mut r);
        }
        r.finish();
    }

    if let Some(cme) = cme {
        let mut r = TableReader::new(cme, "cme", &mut problems);
        config.cme.base_config = r.path_buf("base_config");
        if let Some(w) = r.bool("write_back") {
            config.cme.write_back = w;
        }
        r.finish();
    }

    if config.instances.is_empty() && config.auth_from.is_none() && problems.is_empty() {
        problems.push(problem(
            "",
            None,
            "no instance configured: add a [confluence.\"https://...\"] or [jira.\"https://...\"] table, or [auth] from",
        ));
    }
    check_schemes(&config, &mut problems);
    finish(config, problems)
}

fn parse_instance(
    product: Product,
    url: String,
    table: String,
    t: &toml::Table,
    problems: &mut Vec<Problem>,
) -> Instance {
    let mut r = TableReader::new(t, table.clone(), problems);
    let mut fields = BTreeMap::new();
    for field in Field::ALL {
        if let Some(raw) = r.string(field.name()) {
            if let Some(spec) = parse_field(field, &raw, &mut r) {
                fields.insert(field, spec);
            }
        }
    }
    let from = r
        .string("from")
        .and_then(|raw| parse_reference(&raw, "", "from", &mut r));
    if t.is_empty() {
        r.problem(None, "no fields: give at least one of username, api_token, pat, session_cookies, cloud_id, or from");
    }
    r.finish();
    Instance {
        product,
        url,
        table,
        fields,
        from,
    }
}

fn parse_field(field: Field, raw: &str, r: &mut TableReader<'_, '_>) -> Option<FieldSpec> {
    if looks_like_reference(raw) {
        return parse_reference(raw, "", field.name(), r).map(FieldSpec::Reference);
    }
    if field.allows_literal() {
        if raw.is_empty() {
            r.problem(Some(field.name()), "must not be empty");
            return None;
        }
        return Some(FieldSpec::Literal(raw.to_owned()));
    }
    r.problem(
        Some(field.name()),
        "must be a reference such as \"env://NAME\" or \"vault://MOUNT/PATH#KEY\": cme-exec.toml never holds secret values (the value is not shown)",
    );
    None
}

fn parse_reference(
    raw: &str,
    _table: &str,
    key: &str,
    r: &mut TableReader<'_, '_>,
) -> Option<Reference> {
    match Reference::parse(raw) {
        Ok(reference) => Some(reference),
        Err(e) => {
            r.problem(Some(key), format!("bad reference: {e}"));
            None
        }
    }
}

/// Checks that every reference names a known provider and has the shape that provider needs.
fn check_schemes(config: &Config, problems: &mut Vec<Problem>) {
    for (reference, place) in config.references() {
        let scheme = &reference.document.scheme;
        let (table, key) = split_place(&place);
        match config.provider_for(scheme) {
            None if !reference.document.has_authority => {
                // `secret:x` or `user:password` pasted where a reference belongs: what precedes
                // the colon may be the secret itself, so it is not named.
                problems.push(problem(
                    &table,
                    Some(&key),
                    &format!("not a reference: expected SCHEME://PATH[#KEY] with a declared or built-in scheme ({}); the value is not shown: it may be a pasted secret", registry::builtin_schemes().join(", ")),
                ));
            }
            None => {
                let mut declared: Vec<_> = config.providers.keys().map(String::as_str).collect();
                declared.sort();
                let shown = if scheme.len() <= 32 {
                    scheme.as_str()
                } else {
                    "(too long to show)"
                };
                let builtin = registry::builtin_schemes();
                let nearest = cme_exec_providers::table::closest(
                    scheme,
                    declared.iter().copied().chain(builtin.iter().copied()),
                )
                .map(|s| format!(" (did you mean `{s}://`?)"))
                .unwrap_or_default();
                problems.push(problem(
                    &table,
                    Some(&key),
                    &format!(
                        "unknown scheme `{shown}`{nearest} (the rest of the value is not shown: it may be a pasted secret): declare it under [providers.NAME] or use a built-in ({}){}",
                        builtin.join(", "),
                        if declared.is_empty() { String::new() } else { format!("; declared: {}", declared.join(", ")) }
                    ),
                ));
            }
            Some(settings) => {
                if let Err(e) = settings.kind().check_document(&reference.document) {
                    problems.push(problem(
                        &table,
                        Some(&key),
                        &format!("bad {scheme} reference: {e}"),
                    ));
                }
            }
        }
    }
}

fn split_place(place: &str) -> (String, String) {
    // "[table] key"
    let table = place
        .strip_prefix('[')
        .and_then(|p| p.split_once("] "))
        .map(|(t, k)| (t.to_owned(), k.to_owned()));
    table.unwrap_or_else(|| (String::new(), place.to_owned()))
}

fn check_duplicates(instances: &[Instance], problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<(Product, &str), &str> = BTreeMap::new();
    for i in instances {
        if let Some(first) = seen.insert((i.product, &i.url), &i.table) {
            problems.push(problem(
                &i.table,
                None,
                &format!(
                    "the same instance as [{first}]: both normalise to {} (lower-case host, no default port, no trailing slash); keep one",
                    i.url
                ),
            ));
        }
    }
}

fn is_provider_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

fn problem(table: &str, key: Option<&str>, message: &str) -> Problem {
    Problem {
        table: table.to_owned(),
        key: key.map(str::to_owned),
        message: message.to_owned(),
    }
}

fn finish(config: Config, problems: Vec<Problem>) -> Result<Config, Error> {
    if problems.is_empty() {
        return Ok(config);
    }
    let source = config.source.describe();
    let count = problems.len();
    let mut err = Error::new(format!(
        "{source}: {count} problem{} in the configuration",
        if count == 1 { "" } else { "s" }
    ));
    for p in problems {
        let place = match (p.table.is_empty(), &p.key) {
            (true, None) => String::new(),
            (true, Some(k)) => format!("{k}: "),
            (false, None) => format!("[{}]: ", p.table),
            (false, Some(k)) => format!("[{}] {k}: ", p.table),
        };
        err = err.detail(format!("{place}{}", p.message));
    }
    Err(err)
}

/// The configuration from `CME_EXEC_*` variables, for CI and containers without a file.
///
/// `CME_EXEC_CONFLUENCE_URL` names the instance and `CME_EXEC_CONFLUENCE_<FIELD>` (USERNAME,
/// API_TOKEN, PAT, SESSION_COOKIES, CLOUD_ID, FROM) hold references; the same with `JIRA`.
/// `CME_EXEC_AUTH_FROM` is `[auth] from`; `CME_EXEC_BASE_CONFIG` and `CME_EXEC_WRITE_BACK`
/// are `[cme]`. Providers are the built-in defaults.
pub fn from_environment(env: &EnvReader) -> Result<Config, Error> {
    let mut table = toml::Table::new();
    let mut problems: Vec<String> = Vec::new();
    for product in Product::ALL {
        let prefix = format!(
            "{}{}_",
            names::ENV_CONFIG_PREFIX,
            product.name().to_ascii_uppercase()
        );
        let mut fields = toml::Table::new();
        let mut url = None;
        for (name, value) in env.all() {
            let Some(name) = name.to_str() else { continue };
            let Some(suffix) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some(value) = value.to_str() else {
                problems.push(format!("{name}: not valid UTF-8"));
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let lower = suffix.to_ascii_lowercase();
            if lower == "url" {
                url = Some(value.to_owned());
            } else if Field::from_name(&lower).is_some() || lower == "from" {
                fields.insert(lower, toml::Value::String(value.to_owned()));
            } else {
                problems.push(format!(
                    "{name}: unknown variable (expected {prefix}URL, {prefix}USERNAME, {prefix}API_TOKEN, {prefix}PAT, {prefix}SESSION_COOKIES, {prefix}CLOUD_ID or {prefix}FROM)"
                ));
            }
        }
        match url {
            Some(u) => {
                let mut t = toml::Table::new();
                t.insert(u, toml::Value::Table(fields));
                table.insert(product.name().to_owned(), toml::Value::Table(t));
            }
            None if !fields.is_empty() => {
                problems.push(format!(
                    "{prefix}URL is not set, but other {prefix}* variables are"
                ));
            }
            None => {}
        }
    }
    if let Some(from) = env.var(names::CME_EXEC_AUTH_FROM) {
        let mut t = toml::Table::new();
        t.insert("from".into(), toml::Value::String(from));
        table.insert("auth".into(), toml::Value::Table(t));
    }
    let mut cme = toml::Table::new();
    if let Some(b) = env.var(names::CME_EXEC_BASE_CONFIG) {
        cme.insert("base_config".into(), toml::Value::String(b));
    }
    if let Some(w) = env.var(names::CME_EXEC_WRITE_BACK) {
        match w.as_str() {
            "true" | "1" => cme.insert("write_back".into(), toml::Value::Boolean(true)),
            "false" | "0" => cme.insert("write_back".into(), toml::Value::Boolean(false)),
            _ => {
                problems.push(format!(
                    "{}: expected true or false",
                    names::CME_EXEC_WRITE_BACK
                ));
                None
            }
        };
    }
    if !cme.is_empty() {
        table.insert("cme".into(), toml::Value::Table(cme));
    }
    if !problems.is_empty() {
        let mut err = Error::new("environment: problems in the CME_EXEC_* configuration");
        for p in problems {
            err = err.detail(p);
        }
        return Err(err);
    }
    if table.get("confluence").is_none()
        && table.get("jira").is_none()
        && table.get("auth").is_none()
    {
        return Err(Error::new("no configuration found")
            .detail("looked for --config, $CME_EXEC_CONFIG, ./cme-exec.toml, $XDG_CONFIG_HOME/cme-exec/config.toml")
            .detail("and for CME_EXEC_CONFLUENCE_URL, CME_EXEC_JIRA_URL or CME_EXEC_AUTH_FROM in the environment")
            .hint(format!("write a cme-exec.toml (see {}) or set CME_EXEC_CONFLUENCE_URL and CME_EXEC_CONFLUENCE_API_TOKEN=env://...", crate::error::docs_url("configuration.md"))));
    }
    parse_table(&table, Source::Environment)
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for std::io::Error {
    fn source_text(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod read_tests {
    use super::*;

    /// A file that holds more than its `stat` size says (procfs reports 0; a file may grow
    /// after the check) is still held to the limit while it is read.
    #[test]
    fn a_config_larger_than_its_stat_size_is_stopped_at_the_limit() {
        let big = Path::new("/proc/kallsyms");
        let said = std::fs::metadata(big).map_or(u64::MAX, |m| m.len());
        let holds = std::fs::read(big).map_or(0, |b| b.len() as u64);
        if said > MAX_CONFIG_BYTES || holds <= MAX_CONFIG_BYTES {
            return; // no such file here
        }
        let err = read_config_bytes(big).unwrap_err().to_string();
        assert!(err.contains("is larger than 1 MiB"), "{err}");
    }
}
