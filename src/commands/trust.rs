//! `cme-exec trust [PATH]`: show everything a working-directory config makes cme-exec run,
//! contact and read, ask, and record it as trusted (`--show` only shows; `--yes` records
//! without asking; `--revoke`, `--list`). See `src/config/trust.rs` for the rule.

use std::collections::BTreeSet;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use cme_exec_providers::EnvReader;

use crate::cli::TrustArgs;
use crate::config::{self, trust, Config};
use crate::error::{self, Error};
use crate::exit::Exit;

pub fn trust(args: &TrustArgs) -> Exit {
    match inner(args) {
        Ok(exit) => exit,
        Err(e) => {
            error::print(&e);
            Exit::Failed
        }
    }
}

fn inner(args: &TrustArgs) -> Result<Exit, Error> {
    let env = EnvReader::from_process();
    if args.list {
        for r in trust::list(&env)? {
            crate::outln!("{}  sha256:{}", error::strip_controls(&r.path), r.hash);
            for f in &r.files {
                crate::outln!(
                    "  {}  {}",
                    error::strip_controls(&f.path.display().to_string()),
                    f.hash
                        .as_deref()
                        .map_or_else(|| "missing".to_owned(), |h| format!("sha256:{h}"))
                );
            }
        }
        return Ok(Exit::Success);
    }
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("cme-exec.toml"));
    let canonical = trust::canonical(&path)?;
    let shown = error::strip_controls(&canonical.display().to_string());
    if args.revoke {
        if trust::revoke(&env, &canonical)? {
            crate::outln!("no longer trusted: {shown}");
        } else {
            crate::outln!("was not trusted: {shown}");
        }
        return Ok(Exit::Success);
    }
    // The same checks as when it is used; a file with problems is not trusted. Parsing reads
    // nothing but the file: no program runs and no store is contacted before the answer.
    let bytes = config::read_config_bytes(&path)?;
    let mut config = config::parse_bytes(&path, &bytes)?;
    config.source = config::Source::File(canonical.clone());
    let pinned = config.pinned_files();
    crate::outln!("{shown}  sha256:{}", trust::content_hash(&bytes));
    for line in describe(&config, &pinned) {
        crate::outln!("  {}", error::strip_controls(&line));
    }
    if args.show {
        crate::outln!("nothing recorded (--show)");
        return Ok(Exit::Success);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            error::print(
                &Error::new(format!("{shown} was not trusted; nothing recorded")).hint(format!(
                    "stdin is not a terminal, so cme-exec cannot ask: after reviewing the lines \
                     above, trust it with `cme-exec trust --yes {}`",
                    path.display()
                )),
            );
            return Ok(Exit::CheckFailed);
        }
        if !ask()? {
            crate::outln!("not trusted; nothing recorded");
            return Ok(Exit::CheckFailed);
        }
    }
    let record = trust::record(&env, &canonical, &bytes, &pinned)?;
    crate::outln!(
        "trusted (record: {}); a change to the file or to the files listed above must be trusted again",
        record.display()
    );
    Ok(Exit::Success)
}

/// Asks on the terminal (stdin is one); `true` only for a yes.
fn ask() -> Result<bool, Error> {
    let mut err = std::io::stderr();
    let _ = write!(err, "Trust this file? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::new("cannot read the answer").cause(e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// What the config makes cme-exec run, contact and read, one line each (sub-lines indented).
pub fn describe(config: &Config, pinned: &[trust::Pinned]) -> Vec<String> {
    let mut out = Vec::new();
    let used: BTreeSet<&str> = config
        .references()
        .into_iter()
        .map(|(r, _)| r.document.scheme.as_str())
        .collect();
    let dir = config
        .file_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut provider = |name: &str, builtin: bool, s: &cme_exec_providers::ProviderSettings| {
        out.push(format!(
            "provider {name}{}: {}",
            if builtin { " (built-in)" } else { "" },
            s.describe()
        ));
        for d in s.details() {
            out.push(format!(
                "  {}",
                d.replace("the config file's directory", &dir)
            ));
        }
    };
    for (name, settings) in &config.providers {
        provider(name, false, settings);
    }
    for scheme in &used {
        if !config.providers.contains_key(*scheme) {
            if let Some(s) = config.provider_for(scheme) {
                provider(scheme, true, &s);
            }
        }
    }
    for (r, place) in config.references() {
        out.push(format!("reads {} for {place}", r.raw));
    }
    for p in pinned {
        let is_base = config
            .cme
            .base_config
            .as_ref()
            .zip(config.file_dir())
            .is_some_and(|(b, d)| d.join(b) == p.path);
        out.push(format!(
            "{} {}  {}{}",
            if is_base { "base config" } else { "runs" },
            p.path.display(),
            p.hash.as_deref().map_or_else(
                || "(does not exist yet)".to_owned(),
                |h| format!("sha256:{h}")
            ),
            if is_base && config.cme.write_back {
                " (cme's non-secret changes are written back to it)"
            } else {
                ""
            }
        ));
    }
    out
}
