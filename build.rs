//! Build facts for `cme-exec --version`: the git commit and the target (the backends come from
//! the providers' registry at run time).
//!
//! The commit comes from, in order: `CME_EXEC_BUILD_COMMIT` (a release pipeline that builds from
//! an export), `.cargo_vcs_info.json` (what `cargo package` records, so a crates.io build still
//! knows its commit), `git rev-parse HEAD` when this directory is the top of a git work tree, else
//! "unknown". Nothing here may fail the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=CME_EXEC_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::env::var("CME_EXEC_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_owned())
        .or_else(|| vcs_info(&dir))
        .or_else(|| git(&dir))
        .unwrap_or_else(|| "unknown".to_owned());

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    // src/cli.rs puts them together for `--version`.
    println!("cargo:rustc-env=CME_EXEC_COMMIT={commit}");
    println!("cargo:rustc-env=CME_EXEC_TARGET={target}");
}

/// The commit `cargo package` recorded in the package.
fn vcs_info(dir: &Path) -> Option<String> {
    let path = dir.join(".cargo_vcs_info.json");
    if !path.is_file() {
        return None;
    }
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).ok()?;
    // {"git": {"sha1": "..."}, ...}: no JSON parser in a build script for one field.
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let rest = &rest[rest.find('"')? + 1..];
    let sha = &rest[..rest.find('"')?];
    (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| short(sha))
}

/// HEAD of the git work tree whose top is `dir` (not of some repository that merely contains it).
fn git(dir: &Path) -> Option<String> {
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let top = run(&["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let sha = run(&["rev-parse", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
    if let Some(git_dir) = run(&["rev-parse", "--absolute-git-dir"]) {
        watch(&Path::new(&git_dir).join("HEAD"));
    }
    if let (Some(common), Some(branch)) = (
        run(&["rev-parse", "--git-common-dir"]),
        run(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = dir.join(common);
        watch(&common.join(branch));
        watch(&common.join("packed-refs"));
    }
    Some(short(&sha))
}

/// Only files that exist: cargo reruns a build script every time for a missing one.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}
