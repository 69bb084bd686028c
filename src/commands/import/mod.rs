//! `cme-exec import`: move the secrets of an existing cme config into a store.
//!
//! 1. Read the cme config cme itself would read (`--from`, else `$CME_CONFIG_PATH`, else
//!    `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`).
//! 2. Plan ([`plan`]): one document per instance holding its secret fields (`username`,
//!    `api_token`, `pat`, `session_cookies`) in the store named by `--to` ([`target`]: a
//!    `[providers.NAME]` table of the config, or a built-in scheme); `cloud_id` stays in the
//!    configuration as a literal; every other setting goes into a secret-free base config beside
//!    the new `cme-exec.toml`.
//! 3. Refuse before writing anything when the new `cme-exec.toml` or base config exists with
//!    other content (a second run finds them identical and changes nothing; a `cme-exec.toml`
//!    holding only `[providers]` tables is kept, import's part added after them).
//! 4. Write each document through the provider `--to` names, as reads reach it (its
//!    [`Provider::write`](cme_exec_providers::Provider::write), which leaves a document that
//!    already holds exactly these fields alone), then the base config and `cme-exec.toml`.
//! 5. Resolve the new configuration and compare every value with the original's.
//! 6. Only then, with `--remove-secrets` ([`remove`]), rewrite the original without the secret
//!    values that were imported and read back: under the write-back lock (the same one `run`
//!    takes on a base config), the file is read again and only those values are removed, so
//!    that an edit made while the import waited on its store survives. A field added meanwhile
//!    stays in the file; an instance whose imported value changed meanwhile keeps all its fields
//!    (the store has the earlier value), and both are named in a warning. Atomically, the
//!    file's mode kept.
//!
//! No value is printed or logged; documents are held in wiped buffers; a failure names what was
//! written where and leaves the original untouched.

mod plan;
mod remove;
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use cme_exec_providers::{Context, EnvReader, FetchError, Provider};

use crate::cli::{CheckArgs, Cli, Command, Format, ImportArgs};
use crate::config::Field;
use crate::envnames as names;
use crate::error::{self, Error};
use crate::exit::Exit;
use plan::{Instance, Plan};
use target::{State, Target};

/// The secret fields, in the order cme declares them.
const SECRET_FIELDS: [Field; 4] = [
    Field::Username,
    Field::ApiToken,
    Field::Pat,
    Field::SessionCookies,
];

const EXISTS_HINT: &str = "import into another file with --config NEW.toml (the base config is written beside it), or move the file away";

pub fn import(cli: &Cli, args: &ImportArgs) -> Exit {
    let mut out = Out::new(args);
    let exit = match import_inner(cli, args, &mut out) {
        Ok(exit) => exit,
        Err(e) => {
            out.doc.insert("ok".into(), Value::Bool(false));
            out.doc.insert("error".into(), Value::String(e.to_string()));
            error::print(&e);
            Exit::Failed
        }
    };
    out.finish();
    exit
}

fn import_inner(cli: &Cli, args: &ImportArgs, out: &mut Out) -> Result<Exit, Error> {
    let env = EnvReader::from_process();
    let paths = Paths::new(cli, args, &env);
    out.set("from", json!(paths.from.display().to_string()));
    out.set("config", json!(paths.toml.display().to_string()));
    out.set(
        "base_config",
        json!(plan::base_path_for(&paths.toml).display().to_string()),
    );
    let target = Target::parse(&args.to, &paths.toml)?;
    let plan = plan::plan(&paths.from, &target, &paths.toml)?;
    if !report_found(out, &plan) {
        return Ok(Exit::Success);
    }
    if args.dry_run {
        return dry_run(args, out, &plan, &target);
    }
    if let Some(path) = plan.conflict() {
        return Err(Error::new(format!(
            "{} exists with other content; nothing was written",
            path.display()
        ))
        .hint(EXISTS_HINT));
    }
    let mut written = Written::new(&plan.from);
    let changed = store(cli, &target, &plan, env, &mut written).map_err(|e| written.halfway(e))?;
    report_documents(out, &plan, &changed);
    write_files(out, &plan, &mut written)?;
    // Read everything back through the new configuration, as `run` will.
    verify(cli, &plan).map_err(|e| written.halfway(e))?;
    out.set("verified", Value::Bool(true));
    out.line(&format!(
        "check: every field resolves through {} to the value imported",
        plan.toml_path.display()
    ));
    if args.remove_secrets {
        remove_and_report(cli, out, &plan)?;
    } else {
        out.line(&format!(
            "{} still holds the secrets: run again with --remove-secrets to remove them",
            plan.from.display()
        ));
    }
    say_how_to_use(out, &plan.toml_path, &paths.default_toml);
    Ok(Exit::Success)
}

/// What import reads and writes.
struct Paths {
    /// The cme config.
    from: PathBuf,
    /// The new `cme-exec.toml`, absolute: the path printed at the end must still name the file
    /// from elsewhere.
    toml: PathBuf,
    /// Where cme-exec finds its config by itself.
    default_toml: PathBuf,
}

impl Paths {
    fn new(cli: &Cli, args: &ImportArgs, env: &EnvReader) -> Paths {
        let default_toml = config_home(env).join("cme-exec/config.toml");
        Paths {
            from: args.from.clone().unwrap_or_else(|| cme_config_path(env)),
            toml: cli
                .config
                .as_deref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
                .unwrap_or_else(|| default_toml.clone()),
            default_toml,
        }
    }
}

/// Where cme finds its config: `$CME_CONFIG_PATH` (as given, relative to the working
/// directory), else `$XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json`.
fn cme_config_path(env: &EnvReader) -> PathBuf {
    if let Some(p) = env.var(names::CME_CONFIG_PATH).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    config_home(env).join("confluence-markdown-exporter/app_data.json")
}

fn config_home(env: &EnvReader) -> PathBuf {
    env.var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
}

fn fields(n: usize) -> String {
    format!("{n} secret field{}", if n == 1 { "" } else { "s" })
}

/// Says what the cme config holds; `false` when there is nothing to import.
fn report_found(out: &Out, plan: &Plan) -> bool {
    let total = plan.secret_fields();
    out.line(&format!(
        "import: {}: {} instance{}, {}",
        plan.from.display(),
        plan.instances.len(),
        if plan.instances.len() == 1 { "" } else { "s" },
        fields(total)
    ));
    if total == 0 {
        out.line(&format!(
            "nothing to import: {} holds no secret field (username, api_token, pat, session_cookies)",
            plan.from.display()
        ));
    }
    total > 0
}

/// `--dry-run`: the whole plan, where the import would stop, and nothing written.
fn dry_run(args: &ImportArgs, out: &mut Out, plan: &Plan, target: &Target) -> Result<Exit, Error> {
    for i in &plan.instances {
        let action = if i.secrets.is_empty() {
            "none"
        } else {
            out.line(&format!(
                "would write {} ({}) to {} {}",
                i.place(),
                i.field_names(),
                target.destination.store,
                i.at
            ));
            "would_write"
        };
        out.push("instances", instance_json(i, action));
    }
    for f in &plan.files {
        let shown = f.path.display();
        let what = f.what;
        let action = match f.state {
            State::Absent => {
                out.line(&format!("would write {shown} ({what})"));
                "would_write"
            }
            State::Extend => {
                out.line(&format!(
                    "would add the references to {shown} ({what}), after its [providers] tables"
                ));
                "would_write"
            }
            State::Same => {
                out.line(&format!("unchanged {shown} ({what})"));
                "unchanged"
            }
            State::Other => {
                out.line(&format!(
                    "would stop here: {shown} ({what}) exists with other content"
                ));
                "conflict"
            }
        };
        out.push("files", file_json(&f.path, f.key, action));
    }
    if let Some(path) = plan.conflict() {
        return Err(Error::new(format!(
            "{} exists with other content: the import would stop there, before writing anything",
            path.display()
        ))
        .hint(EXISTS_HINT));
    }
    if args.remove_secrets {
        out.line(&format!(
            "would then remove {} from {} (mode {:04o} kept)",
            fields(plan.secret_fields()),
            plan.from.display(),
            plan.mode
        ));
    }
    out.line("dry run: nothing was written");
    Ok(Exit::Success)
}

/// What was written so far, for the error that stops the import half-way.
struct Written {
    items: Vec<String>,
    from: PathBuf,
}

impl Written {
    fn new(from: &Path) -> Written {
        Written {
            items: Vec::new(),
            from: from.to_owned(),
        }
    }

    fn halfway(&self, e: Error) -> Error {
        let mut e = e;
        if self.items.is_empty() {
            e = e.detail("nothing was written");
        } else {
            e = e.detail("written so far:");
            for w in &self.items {
                e = e.detail(format!("  {w}"));
            }
        }
        e.detail(format!("{} was not changed", self.from.display()))
    }
}

/// Writes every document through the provider `--to` names, built from the new configuration's
/// settings (its `[providers]` table, or the built-in scheme's) as reads build it. Per instance
/// whether its document was written; each one written is added to `written`.
fn store(
    cli: &Cli,
    target: &Target,
    plan: &Plan,
    env: EnvReader,
    written: &mut Written,
) -> Result<Vec<bool>, Error> {
    let config = crate::config::parse_bytes(&plan.toml_path, plan.toml())
        .map_err(|e| e.detail("the new configuration was checked before anything was written"))?;
    let settings = config.provider_for(&target.scheme).ok_or_else(|| {
        Error::new(format!(
            "no provider `{}` in the new configuration",
            target.scheme
        ))
    })?;
    let timeout = Duration::from_secs_f64(cli.timeout);
    let ctx = Arc::new(Context::new(config_dir(&plan.toml_path), env).with_timeout(timeout));
    let rt = crate::session::runtime()?;
    rt.block_on(async {
        let provider = cme_exec_providers::build(&target.scheme, &settings, &ctx)
            .map_err(|e| from_fetch(&e))?;
        let result = write_documents(provider.as_ref(), target, plan, cli.timeout, written).await;
        // A login token obtained for the writes is revoked, whatever happened.
        provider.finish().await;
        result
    })
}

/// The directory relative paths of the new configuration resolve against, as `config` does:
/// the one that really holds the file.
fn config_dir(toml_path: &Path) -> PathBuf {
    let dir = toml_path.parent().unwrap_or(Path::new("/"));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
}

async fn write_documents(
    provider: &dyn Provider,
    target: &Target,
    plan: &Plan,
    timeout: f64,
    written: &mut Written,
) -> Result<Vec<bool>, Error> {
    let mut changed = Vec::new();
    let deadline = Duration::from_secs_f64(timeout);
    for i in &plan.instances {
        if i.secrets.is_empty() {
            // Instances without secrets get no document.
            changed.push(false);
            continue;
        }
        let result = tokio::time::timeout(deadline, provider.write(&i.at, &i.fields()))
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::unavailable(format!(
                    "{}: no answer within {} s (see --timeout)",
                    i.at, timeout
                )))
            });
        let c =
            result.map_err(|e| from_fetch(&e).detail(format!("while writing {}", i.place())))?;
        if c {
            written
                .items
                .push(format!("{} in {}", i.at, target.destination.store));
        }
        changed.push(c);
    }
    Ok(changed)
}

fn from_fetch(e: &FetchError) -> Error {
    let out = Error::new(e.message());
    match e.hint() {
        Some(h) => out.hint(h),
        None => out,
    }
}

/// One line per instance: its document written, unchanged, or none.
fn report_documents(out: &mut Out, plan: &Plan, changed: &[bool]) {
    for (i, changed) in plan.instances.iter().zip(changed) {
        if i.secrets.is_empty() {
            out.line(&format!("{}: no secret field; nothing to store", i.place()));
            out.push("instances", instance_json(i, "none"));
            continue;
        }
        let verb = if *changed { "wrote" } else { "unchanged" };
        out.line(&format!(
            "{verb} {} ({}) -> {}",
            i.place(),
            i.field_names(),
            i.reference
        ));
        out.push("instances", instance_json(i, verb));
    }
}

/// The base config, then `cme-exec.toml`, each unless it is already there as it should be.
fn write_files(out: &mut Out, plan: &Plan, written: &mut Written) -> Result<(), Error> {
    for f in &plan.files {
        let what = if f.key == "base_config" {
            "base config"
        } else {
            f.what
        };
        if f.state == State::Same {
            out.line(&format!("unchanged {} ({what})", f.path.display()));
            out.push("files", file_json(&f.path, f.key, "unchanged"));
        } else {
            crate::atomic::write(&f.path, &f.bytes, 0o600).map_err(|e| written.halfway(e))?;
            out.line(&format!("wrote {} ({what})", f.path.display()));
            out.push("files", file_json(&f.path, f.key, "wrote"));
            written.items.push(f.path.display().to_string());
        }
    }
    Ok(())
}

/// Resolves the new configuration and compares every value with the original's.
fn verify(cli: &Cli, plan: &Plan) -> Result<(), Error> {
    let check_cli = Cli {
        config: Some(plan.toml_path.clone()),
        verbose: cli.verbose,
        timeout: cli.timeout,
        command: Command::Check(CheckArgs {
            format: Format::Text,
            live: false,
            offline: false,
            warn_within: crate::expiry::DEFAULT_WARN_DAYS,
            fail_within: None,
        }),
    };
    let prepared = crate::session::prepare(&check_cli)?;
    let resolution =
        crate::session::resolve_blocking(&check_cli, &prepared, false).map_err(|(_, e)| e)?;
    if !resolution.is_ok() {
        return Err(Error::new("the new configuration does not resolve")
            .cause(resolution.error().to_string()));
    }
    let mut mismatches = Vec::new();
    for i in &plan.instances {
        let key = (
            i.product,
            crate::config::normalise_url(i.product, &i.url).unwrap_or_default(),
        );
        let got = resolution.auth.instances.get(&key);
        for (f, v) in &i.secrets {
            let same = got
                .and_then(|g| g.fields.get(f))
                .is_some_and(|g| g.secret.expose_secret() == v.expose_secret());
            if !same {
                mismatches.push(format!("{} {}", i.place(), f.name()));
            }
        }
    }
    if mismatches.is_empty() {
        return Ok(());
    }
    let mut e =
        Error::new("the new configuration resolves, but not to the values imported (never shown)");
    for m in mismatches {
        e = e.detail(m);
    }
    Err(e)
}

/// `--remove-secrets`, and what it did.
fn remove_and_report(cli: &Cli, out: &mut Out, plan: &Plan) -> Result<(), Error> {
    let removal = remove::remove_secrets(plan, Duration::from_secs_f64(cli.timeout))?;
    for w in &removal.warnings {
        error::warn(w);
    }
    out.set(
        "removed",
        json!({
            "fields": removal.removed,
            "kept": removal.kept,
            "mode": format!("{:04o}", removal.mode),
            "warnings": removal.warnings,
        }),
    );
    if removal.removed > 0 {
        out.line(&format!(
            "removed {} from {} (mode {:04o} kept)",
            fields(removal.removed),
            plan.from.display(),
            removal.mode
        ));
    }
    if removal.kept > 0 {
        out.line(&format!(
            "{} still holds {} (named above){}",
            plan.from.display(),
            fields(removal.kept),
            if removal.removed == 0 {
                "; nothing was removed"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// cme-exec finds only its default path by itself: say how to use another one.
fn say_how_to_use(out: &mut Out, toml_path: &Path, default_toml: &Path) {
    if toml_path == default_toml {
        return;
    }
    let absolute = std::fs::canonicalize(toml_path)
        .or_else(|_| std::path::absolute(toml_path))
        .unwrap_or_else(|_| toml_path.to_owned());
    let value = absolute.display().to_string();
    out.line(&format!(
        "to use it: export CME_EXEC_CONFIG={}   (or cme-exec --config {} ...)",
        shell_word(&value),
        shell_word(&value)
    ));
    out.set("use", json!({ "CME_EXEC_CONFIG": value }));
}

/// What import reports: lines as it goes (`--format text`), or one JSON document at the end
/// (`--format json`: `ok`, `error`, `from`, `to`, `dry_run`, `instances`, `files`, `verified`,
/// `removed`, `use`). Warnings go to stderr in both.
struct Out {
    json: bool,
    doc: serde_json::Map<String, Value>,
}

impl Out {
    fn new(args: &ImportArgs) -> Out {
        let mut doc = serde_json::Map::new();
        doc.insert("ok".into(), Value::Bool(true));
        doc.insert("error".into(), Value::Null);
        doc.insert("to".into(), Value::String(args.to.clone()));
        doc.insert("dry_run".into(), Value::Bool(args.dry_run));
        for key in [
            "from",
            "config",
            "base_config",
            "verified",
            "removed",
            "use",
        ] {
            doc.insert(key.into(), Value::Null);
        }
        doc.insert("instances".into(), Value::Array(Vec::new()));
        doc.insert("files".into(), Value::Array(Vec::new()));
        Out {
            json: args.format == Format::Json,
            doc,
        }
    }

    /// A line of the text report.
    fn line(&self, text: &str) {
        if !self.json {
            crate::outln!("{}", error::strip_controls(text));
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        self.doc.insert(key.into(), value);
    }

    fn push(&mut self, key: &str, value: Value) {
        if let Some(Value::Array(items)) = self.doc.get_mut(key) {
            items.push(value);
        }
    }

    fn finish(self) {
        if self.json {
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&Value::Object(self.doc)).unwrap_or_default()
            );
        }
    }
}

fn instance_json(i: &Instance, action: &str) -> Value {
    json!({
        "product": i.product.name(),
        "url": i.url,
        "fields": i.secrets.iter().map(|(f, _)| f.name()).collect::<Vec<_>>(),
        "at": (!i.secrets.is_empty()).then_some(i.at.as_str()),
        "reference": (!i.secrets.is_empty()).then_some(i.reference.as_str()),
        "cloud_id": i.cloud_id,
        "action": action,
    })
}

fn file_json(path: &Path, what: &str, action: &str) -> Value {
    json!({ "path": path.display().to_string(), "what": what, "action": action })
}

/// A path as one shell word: as is when it needs no quoting, else in single quotes.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/=:,+@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(
            crate::config::slug("https://Company.atlassian.net/"),
            "company.atlassian.net"
        );
        assert_eq!(
            crate::config::slug("https://wiki.example.org:8443/confluence"),
            "wiki.example.org-8443-confluence"
        );
    }
}
