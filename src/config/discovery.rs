//! Where the configuration is found: `--config`, else `$CME_EXEC_CONFIG` (an absolute path),
//! else `./cme-exec.toml` (once trusted), else `$XDG_CONFIG_HOME/cme-exec/config.toml`, else
//! the environment alone ([`super::environment`]); and how a found file is read (its checks,
//! made on the descriptor it is read from) and, for the working directory's, trusted.

use std::path::{Path, PathBuf};

use cme_exec_providers::context::EnvReader;
use cme_exec_providers::secure_io::{read_private_file, Checks, Refused};
use zeroize::Zeroizing;

use super::environment::from_environment;
use super::parsing::parse_bytes;
use super::{trust, Config, Source};
use crate::envnames as names;
use crate::error::Error;

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
        .cause(e.to_string())
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
    let shown = path.display().to_string();
    let cannot_read = |e: std::io::Error| {
        Error::new(format!("cannot read the config file {shown}")).cause(e.to_string())
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

#[cfg(test)]
mod tests {
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
