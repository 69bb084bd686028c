//! `cme-exec trust [PATH]`: show what a working-directory config makes cme-exec contact, and
//! record it as trusted (`--revoke`, `--list`). See `src/trust.rs` for the rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cme_exec_providers::{EnvReader, ProviderSettings};

use crate::cli::TrustArgs;
use crate::config::{self, Config};
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::trust;

pub fn trust(args: &TrustArgs) -> Exit {
    match inner(args) {
        Ok(()) => Exit::Success,
        Err(e) => {
            error::print(&e);
            Exit::Failed
        }
    }
}

fn inner(args: &TrustArgs) -> Result<(), Error> {
    let env = EnvReader::from_process();
    if args.list {
        for (path, hash) in trust::list(&env)? {
            crate::outln!("{}  sha256:{hash}", error::strip_controls(&path));
        }
        return Ok(());
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
        return Ok(());
    }
    // The same checks as when it is used; a file with problems is not trusted.
    let (bytes, _) = config::read_config_bytes(&path, &env, false)?;
    let config = config::parse_bytes(&path, &bytes)?;
    let hash = trust::content_hash(&bytes);
    crate::outln!("{shown}  sha256:{hash}");
    for line in describe(&config, &canonical) {
        crate::outln!("  {}", error::strip_controls(&line));
    }
    let record = trust::record(&env, &canonical, &bytes)?;
    crate::outln!(
        "trusted (record: {}); any change to the file must be trusted again",
        record.display()
    );
    Ok(())
}

/// What the config makes cme-exec contact and read, one line each.
pub fn describe(config: &Config, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let used: BTreeSet<&str> = config
        .references()
        .into_iter()
        .map(|(r, _)| r.document.scheme.as_str())
        .collect();
    for (name, settings) in &config.providers {
        out.push(format!("provider {name}: {}", provider(settings)));
    }
    for scheme in &used {
        if !config.providers.contains_key(*scheme) {
            if let Some(s) = config.provider_for(scheme) {
                out.push(format!("provider {scheme} (built-in): {}", provider(&s)));
            }
        }
    }
    for (r, place) in config.references() {
        out.push(format!("reads {} for {place}", r.raw));
    }
    if let Some(b) = &config.cme.base_config {
        let base = path.parent().map_or_else(|| b.clone(), |d| d.join(b));
        out.push(format!(
            "base config {}{}",
            base.display(),
            if config.cme.write_back {
                " (cme's non-secret changes are written back to it)"
            } else {
                ""
            }
        ));
    }
    out
}

fn provider(settings: &ProviderSettings) -> String {
    settings.describe()
}
