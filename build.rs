//! Build facts for `cme-exec --version`: the git commit and the target (the backends come from
//! the providers' registry at run time); and cme's JSON schemas, turned into static data from
//! which a run builds each compiled schema without parsing JSON (see [`cme_schemas`]).
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
    cme_schemas::generate(&dir);
}

/// `src/cme_config/schemas/VERSION.json` -> `$OUT_DIR/cme_schemas.rs`: each release's schema as
/// static data (`Op`s in preorder, the defaults as `Lit`s, both declared in
/// `src/cme_config/schema.rs`), from which a run builds the `Schema` that `Schema::compile`
/// makes from the file, without parsing JSON or checking keywords (about 0.1 ms); data rather
/// than code, so that the run touches a few KB of it, not the code of every release. The
/// keywords are those `schema.rs` compiles; a file using any other is left out here (`DATA`
/// has no entry for it), so the run falls back to compiling it and its unit tests report the
/// keyword, as before. A unit test checks that every schema built from the data equals the one
/// compiled from the file.
mod cme_schemas {
    use serde_json::Value;
    use std::fmt::Write as _;
    use std::path::Path;

    pub fn generate(dir: &Path) {
        let schemas = dir.join("src/cme_config/schemas");
        println!("cargo:rerun-if-changed={}", schemas.display());
        let mut files: Vec<_> = std::fs::read_dir(&schemas)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = String::new();
        let mut entries = String::new();
        // Releases whose schemas differ only in their version share one `Data`.
        let mut bodies: Vec<String> = Vec::new();
        for path in &files {
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            println!("cargo:rerun-if-changed={}", path.display());
            let Some(release) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let Some((version, body)) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(schema)
            else {
                continue;
            };
            let i = bodies.iter().position(|b| *b == body).unwrap_or_else(|| {
                let _ = writeln!(out, "static DATA_{}: Data = {body};\n", bodies.len());
                bodies.push(body);
                bodies.len() - 1
            });
            let _ = writeln!(entries, "    ({release:?}, {version:?}, &DATA_{i}),");
        }
        let _ = write!(
            out,
            "/// (release, its `x-cme-version`, its data) of every schema file build.rs could encode.\n\
             pub(super) static DATA: &[(&str, &str, &Data)] = &[\n{entries}];\n"
        );
        let dest =
            Path::new(&std::env::var_os("OUT_DIR").expect("set by cargo")).join("cme_schemas.rs");
        std::fs::write(dest, out).expect("OUT_DIR is writable");
    }

    /// The document's `x-cme-version` and its `Data { .. }` expression, or `None` for a document
    /// `Schema::compile` refuses (or whose defaults hold a number this cannot write).
    fn schema(doc: Value) -> Option<(String, String)> {
        let Value::Object(mut top) = doc else {
            return None;
        };
        let Some(Value::String(version)) = top.remove("x-cme-version") else {
            return None;
        };
        let defaults = match top.remove("x-cme-defaults") {
            Some(v @ Value::Object(_)) => lit(&v)?,
            None => "Lit::Obj(&[])".to_owned(),
            Some(_) => return None,
        };
        let mut defs = String::new();
        match top.remove("$defs") {
            None => {}
            Some(Value::Object(entries)) => {
                for (name, sub) in &entries {
                    let mut ops = String::new();
                    node(sub, &mut ops)?;
                    let _ = write!(defs, "({name:?}, &[{ops}]), ");
                }
            }
            Some(_) => return None,
        }
        let mut root = String::new();
        node(&Value::Object(top), &mut root)?;
        let body = format!("Data {{ defaults: {defaults}, root: &[{root}], defs: &[{defs}] }}");
        Some((version, body))
    }

    /// Appends a (sub)schema's `Op`s to `ops`, or `None` for a keyword `compile_node` refuses.
    fn node(schema: &Value, ops: &mut String) -> Option<()> {
        let Value::Object(keywords) = schema else {
            return None;
        };
        let ty = match keywords.get("type") {
            None => "None".to_owned(),
            Some(t) => {
                let ty = match t.as_str()? {
                    "object" => "Object",
                    "array" => "Array",
                    "string" => "String",
                    "integer" => "Integer",
                    "number" => "Number",
                    "boolean" => "Boolean",
                    "null" => "Null",
                    _ => return None,
                };
                format!("Some(JsonType::{ty})")
            }
        };
        let _ = write!(ops, "Op::Node({ty}), ");
        for (keyword, arg) in keywords {
            match keyword.as_str() {
                "type" | "format" => {}
                "enum" => {
                    let members: Option<Vec<String>> = arg.as_array()?.iter().map(lit).collect();
                    let _ = write!(ops, "Op::Enum(&[{}]), ", members?.join(", "));
                }
                "anyOf" => {
                    let branches = arg.as_array().filter(|b| !b.is_empty())?;
                    let _ = write!(ops, "Op::AnyOf({}), ", branches.len());
                    for b in branches {
                        node(b, ops)?;
                    }
                }
                "$ref" => {
                    let target = arg.as_str()?.strip_prefix("#/$defs/")?;
                    let _ = write!(ops, "Op::Ref({target:?}), ");
                }
                "properties" => {
                    for (name, sub) in arg.as_object()? {
                        let _ = write!(ops, "Op::Prop({name:?}), ");
                        node(sub, ops)?;
                    }
                }
                "additionalProperties" => {
                    let _ = write!(ops, "Op::Additional, ");
                    node(arg, ops)?;
                }
                "items" => {
                    let _ = write!(ops, "Op::Items, ");
                    node(arg, ops)?;
                }
                _ => return None,
            }
        }
        let _ = write!(ops, "Op::End, ");
        Some(())
    }

    /// A `Lit` expression for a JSON value, keys in document order (`preserve_order`); `None`
    /// for a float this cannot write back exactly.
    fn lit(v: &Value) -> Option<String> {
        Some(match v {
            Value::Null => "Lit::Null".to_owned(),
            Value::Bool(b) => format!("Lit::Bool({b})"),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    format!("Lit::U64({u})")
                } else if let Some(i) = n.as_i64() {
                    format!("Lit::I64({i})")
                } else {
                    let f = n.as_f64()?;
                    f.is_finite().then(|| format!("Lit::F64({f:?})"))?
                }
            }
            Value::String(s) => format!("Lit::Str({s:?})"),
            Value::Array(items) => {
                let items: Option<Vec<String>> = items.iter().map(lit).collect();
                format!("Lit::Arr(&[{}])", items?.join(", "))
            }
            Value::Object(entries) => {
                let mut out = String::from("Lit::Obj(&[");
                for (k, v) in entries {
                    let _ = write!(out, "({k:?}, {}), ", lit(v)?);
                }
                out.push_str("])");
                out
            }
        })
    }
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
