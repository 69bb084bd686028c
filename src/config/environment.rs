//! The configuration without a file: `CME_EXEC_*` variables, for CI and containers. They are
//! turned into the TOML tables a file would hold and parsed as one ([`super::parsing`]), so both
//! forms are checked alike.

use cme_exec_providers::context::EnvReader;

use super::parsing::parse_table;
use super::{Config, Field, Product, Source};
use crate::envnames as names;
use crate::error::Error;

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
        if let Some(t) = product_table(env, product, &mut problems) {
            table.insert(product.name().to_owned(), toml::Value::Table(t));
        }
    }
    if let Some(from) = env.var(names::CME_EXEC_AUTH_FROM) {
        let mut t = toml::Table::new();
        t.insert("from".into(), toml::Value::String(from));
        table.insert("auth".into(), toml::Value::Table(t));
    }
    let cme = cme_table(env, &mut problems);
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
        return Err(nothing_configured());
    }
    parse_table(&table, Source::Environment)
}

/// `[confluence."URL"]` (or `[jira."URL"]`) from `CME_EXEC_CONFLUENCE_URL` and the field
/// variables beside it: `{URL: {field: reference}}`; `None` when no URL is set.
fn product_table(
    env: &EnvReader,
    product: Product,
    problems: &mut Vec<String>,
) -> Option<toml::Table> {
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
            Some(t)
        }
        None => {
            if !fields.is_empty() {
                problems.push(format!(
                    "{prefix}URL is not set, but other {prefix}* variables are"
                ));
            }
            None
        }
    }
}

/// `[cme]` from `CME_EXEC_BASE_CONFIG` and `CME_EXEC_WRITE_BACK`; empty when neither is set.
fn cme_table(env: &EnvReader, problems: &mut Vec<String>) -> toml::Table {
    let mut cme = toml::Table::new();
    if let Some(b) = env.var(names::CME_EXEC_BASE_CONFIG) {
        cme.insert("base_config".into(), toml::Value::String(b));
    }
    if let Some(w) = env.var(names::CME_EXEC_WRITE_BACK) {
        match w.as_str() {
            "true" | "1" => {
                cme.insert("write_back".into(), toml::Value::Boolean(true));
            }
            "false" | "0" => {
                cme.insert("write_back".into(), toml::Value::Boolean(false));
            }
            _ => problems.push(format!(
                "{}: expected true or false",
                names::CME_EXEC_WRITE_BACK
            )),
        }
    }
    cme
}

/// Neither a file nor the variables: where cme-exec looked, and how to start.
fn nothing_configured() -> Error {
    Error::new("no configuration found")
        .detail("looked for --config, $CME_EXEC_CONFIG, ./cme-exec.toml, $XDG_CONFIG_HOME/cme-exec/config.toml")
        .detail("and for CME_EXEC_CONFLUENCE_URL, CME_EXEC_JIRA_URL or CME_EXEC_AUTH_FROM in the environment")
        .hint(format!("write a cme-exec.toml (see {}) or set CME_EXEC_CONFLUENCE_URL and CME_EXEC_CONFLUENCE_API_TOKEN=env://...", crate::error::docs_url("configuration.md")))
}
