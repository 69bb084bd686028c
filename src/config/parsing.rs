//! Parsing `cme-exec.toml`: the bytes into TOML (positions in messages, never the text), then
//! the tables into a [`Config`], every problem collected with its table and key.

use std::collections::BTreeMap;
use std::path::Path;

use cme_exec_providers::reference::{looks_like_reference, Reference};
use cme_exec_providers::Kind;
use cme_exec_providers::{registry, toml_key, Problem, ProviderSettings, TableReader};

use super::{
    normalise_url, redact_user_info, CmeSettings, Config, Field, FieldSpec, Instance, Product,
    Source,
};
use crate::error::Error;

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
pub(super) fn sanitise_toml_message(msg: &str) -> String {
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

/// Parses a whole `cme-exec.toml` table, reporting every problem at once: the top-level
/// tables are read first (an unknown one is a problem), then each in turn, then what holds
/// across them (no duplicate instance, at least one, every reference's scheme known).
pub fn parse_table(table: &toml::Table, source: Source) -> Result<Config, Error> {
    let mut problems = Vec::new();
    let sections = Sections::read(table, &mut problems);
    let mut config = Config {
        source,
        providers: sections
            .providers
            .map(|p| parse_providers(p, &mut problems))
            .unwrap_or_default(),
        instances: parse_instances(&sections.products, &mut problems),
        auth_from: None,
        cme: CmeSettings::default(),
        trusted_in_cwd: false,
    };
    check_duplicates(&config.instances, &mut problems);
    if let Some(auth) = sections.auth {
        config.auth_from = parse_auth_from(auth, &mut problems);
    }
    if let Some(cme) = sections.cme {
        config.cme = parse_cme(cme, &mut problems);
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

/// The top-level tables of a config file.
struct Sections<'t> {
    providers: Option<&'t toml::Table>,
    products: Vec<(Product, Option<&'t toml::Table>)>,
    auth: Option<&'t toml::Table>,
    cme: Option<&'t toml::Table>,
}

impl<'t> Sections<'t> {
    /// Takes each known table; any other key is a problem.
    fn read(table: &'t toml::Table, problems: &mut Vec<Problem>) -> Sections<'t> {
        let mut root = TableReader::new(table, "", problems);
        let sections = Sections {
            providers: root.table("providers"),
            products: Product::ALL
                .into_iter()
                .map(|p| (p, root.table(p.name())))
                .collect(),
            auth: root.table("auth"),
            cme: root.table("cme"),
        };
        root.finish();
        sections
    }
}

/// `[providers.NAME]` tables: the ones that parse, by name.
fn parse_providers(
    providers: &toml::Table,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, ProviderSettings> {
    let mut out = BTreeMap::new();
    for (name, value) in providers {
        if let Some(settings) = parse_provider(name, value, problems) {
            out.insert(name.clone(), settings);
        }
    }
    out
}

/// One `[providers.NAME]`: a table, a name fit for a reference scheme, and a known `kind`
/// whose backend then reads the other keys.
fn parse_provider(
    name: &str,
    value: &toml::Value,
    problems: &mut Vec<Problem>,
) -> Option<ProviderSettings> {
    let path = format!("providers.{}", toml_key(name));
    let Some(t) = value.as_table() else {
        problems.push(problem(&path, None, "expected a table"));
        return None;
    };
    if !is_provider_name(name) {
        problems.push(problem(
            &path,
            None,
            "a provider's name is its reference scheme: lower-case letters, digits, `+`, `-`, `.`, starting with a letter",
        ));
        return None;
    }
    let mut r = TableReader::new(t, path.clone(), problems);
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
    // Without a kind, the other keys are not reported as unknown: the kind is what's wrong.
    if settings.is_some() {
        r.finish();
    }
    settings
}

/// `[confluence."URL"]` and `[jira."URL"]` tables, in the order written, each URL normalised.
fn parse_instances(
    products: &[(Product, Option<&toml::Table>)],
    problems: &mut Vec<Problem>,
) -> Vec<Instance> {
    let mut instances = Vec::new();
    for (product, tables) in products {
        let (product, Some(tables)) = (*product, tables) else {
            continue;
        };
        for (raw_url, value) in *tables {
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
            instances.push(parse_instance(product, url, table_name, t, problems));
        }
    }
    instances
}

/// `[auth] from`.
fn parse_auth_from(auth: &toml::Table, problems: &mut Vec<Problem>) -> Option<Reference> {
    let mut r = TableReader::new(auth, "auth", problems);
    let from = r
        .string("from")
        .and_then(|raw| parse_reference(&raw, "auth", "from", &mut r));
    r.finish();
    from
}

/// `[cme]`: `base_config` and `write_back`, the defaults for what is not given.
fn parse_cme(cme: &toml::Table, problems: &mut Vec<Problem>) -> CmeSettings {
    let mut settings = CmeSettings::default();
    let mut r = TableReader::new(cme, "cme", problems);
    settings.base_config = r.path_buf("base_config");
    if let Some(w) = r.bool("write_back") {
        settings.write_back = w;
    }
    r.finish();
    settings
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
