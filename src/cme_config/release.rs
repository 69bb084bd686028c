//! Which cme release will read the config, found without starting Python.
//!
//! cme is a Python console script: its first line is `#!/path/to/venv/bin/python`, and the
//! release is in the name of the package's metadata directory,
//! `<prefix>/lib/pythonX.Y/site-packages/confluence_markdown_exporter-5.5.0.dist-info`, where
//! `<prefix>` is the interpreter's `bin/..` (a venv, pipx's venv, `/usr/local` in the official
//! image). Reading one line and two directories costs well under a millisecond; asking
//! `cme version` would cost cme's 0.85 s start-up on every run.
//!
//! `CME_EXEC_CME_VERSION` overrides the detection (for `render` in an init container, where
//! cme runs elsewhere, or a cme started through a wrapper script).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::resolve::Auth;

const DIST_INFO_PREFIX: &str = "confluence_markdown_exporter-";

/// The cme release behind `program` (a path, or a name looked up in `path_var`).
pub fn detect(program: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<(String, PathBuf)> {
    let program = if program.components().count() > 1 {
        program.to_owned()
    } else {
        std::env::split_paths(path_var?)
            .map(|d| d.join(program))
            .find(|p| p.is_file())?
    };
    // Only a Python script can be cme: anything else (`/bin/true`, a shell wrapper) costs one
    // read of its first bytes, never a scan of `/usr/lib`.
    let interpreter = shebang(&program)?;
    let mut prefixes = Vec::new();
    if let Some(prefix) = interpreter.parent().and_then(Path::parent) {
        prefixes.push(prefix.to_owned());
    }
    // `#!/usr/bin/env python3`: the script's own `bin/..` (a venv's scripts sit beside its
    // interpreter), also behind a link (pipx links scripts into ~/.local/bin).
    for p in [Some(program.clone()), std::fs::canonicalize(&program).ok()]
        .into_iter()
        .flatten()
    {
        if let Some(prefix) = p.parent().and_then(Path::parent) {
            prefixes.push(prefix.to_owned());
        }
    }
    prefixes.dedup();
    prefixes
        .iter()
        .find_map(|prefix| installed_in(prefix))
        .map(|v| (v, program))
}

/// The interpreter of a Python script's `#!` line (`/usr/bin/env python3` gives `python3`,
/// which names no prefix); `None` for anything else.
fn shebang(script: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = std::str::from_utf8(&line[..end]).ok()?;
    let mut words = line.split_whitespace();
    let first = PathBuf::from(words.next()?);
    let is_python = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python"))
    };
    if is_python(&first) {
        return Some(first);
    }
    // `#!/usr/bin/env python3`: a Python script whose interpreter is found on PATH.
    let second = PathBuf::from(words.next()?);
    (first.file_name().is_some_and(|n| n == "env") && is_python(&second)).then_some(second)
}

/// The version of the cme package installed under `prefix`, from its `.dist-info` name.
fn installed_in(prefix: &Path) -> Option<String> {
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_name().to_string_lossy().starts_with("python") {
                continue;
            }
            for packages in ["site-packages", "dist-packages"] {
                if let Some(v) = version_in(&entry.path().join(packages)) {
                    return Some(v);
                }
            }
        }
    }
    None
}

fn version_in(site_packages: &Path) -> Option<String> {
    std::fs::read_dir(site_packages)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name
                .strip_prefix(DIST_INFO_PREFIX)?
                .strip_suffix(".dist-info")?;
            v.chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                .then(|| v.to_owned())
        })
}

/// Every resolved field must be one the selected cme release reads: `session_cookies` before
/// cme 5.2 would be silently ignored (cme would send no cookies at all).
pub fn check_auth(auth: &Auth) -> Result<(), Error> {
    let mut problems = Vec::new();
    for ((product, url), instance) in &auth.instances {
        for field in instance.fields.keys() {
            let doc = serde_json::json!({
                "auth": { product.name(): { url: { field.name(): "" } } }
            });
            for e in super::schema::validate(&doc) {
                problems.push(format!(
                    "[{product}.\"{url}\"] {}: {}",
                    field.name(),
                    e.message
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut err = Error::new(format!(
        "the credentials are not all ones cme {} reads; nothing was started",
        super::schema::cme_version()
    ));
    for p in problems {
        err = err.detail(p);
    }
    Err(err.hint("upgrade cme, or use another field (username + api_token, or pat)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn finds_the_release_from_the_scripts_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        let site = venv.join("lib/python3.12/site-packages");
        std::fs::create_dir_all(site.join("confluence_markdown_exporter-5.2.0.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("confluence_markdown_exporter")).unwrap();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        // The script is elsewhere (pipx links it into ~/.local/bin); its #! names the venv.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cme = bin.join("cme");
        std::fs::write(
            &cme,
            format!("#!{}/bin/python\nimport sys\n", venv.display()),
        )
        .unwrap();
        std::fs::set_permissions(&cme, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (v, at) = detect(Path::new("cme"), Some(bin.as_os_str())).unwrap();
        assert_eq!(v, "5.2.0");
        assert_eq!(at, cme);
        assert_eq!(detect(Path::new("cme"), Some(dir.path().as_os_str())), None);
        let sh = bin.join("sh-script");
        std::fs::write(&sh, "#!/bin/sh\n").unwrap();
        assert_eq!(detect(&sh, None), None);
    }
}
