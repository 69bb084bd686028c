//! Build facts for `cme-exec --version`: the git commit and the target (the backends come from
//! the providers' registry at run time); and cme's JSON schemas, turned into Rust code that
//! builds each compiled schema without parsing JSON at run time (see [`cme_schemas`]).
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

/// `src/cme_config/schemas/VERSION.json` -> `$OUT_DIR/cme_schemas.rs`: one function per release
/// that builds the `Schema` that `Schema::compile` makes from that file at run time, and
/// `built(version)` to choose one. A run then neither parses the schema's JSON nor checks its
/// keywords (about 0.15 ms). The keywords are those `src/cme_config/schema.rs` compiles; a
/// file using any other is left out here (`built` returns `None` for it), so the run falls
/// back to compiling it and its unit tests report the keyword, as before. A unit test checks
/// that every generated schema equals the one compiled from the file.
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
        let mut arms = String::new();
        // Releases whose schemas differ only in their version share one function.
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
                let _ = writeln!(
                    out,
                    "fn schema_{}(version: &str) -> Schema {{\n    {body}\n}}\n",
                    bodies.len()
                );
                bodies.push(body);
                bodies.len() - 1
            });
            let _ = writeln!(
                arms,
                "        {release:?} => Some(schema_{i}({version:?})),"
            );
        }
        out.push_str(&format!(
            "/// The schema of cme `version`, built without parsing JSON; `None` when build.rs could\n\
             /// not generate it (`Schema::compile` then says why).\n\
             pub(super) fn built(version: &str) -> Option<Schema> {{\n    match version {{\n{arms}        _ => None,\n    }}\n}}\n"
        ));
        let dest =
            Path::new(&std::env::var_os("OUT_DIR").expect("set by cargo")).join("cme_schemas.rs");
        std::fs::write(dest, out).expect("OUT_DIR is writable");
    }

    /// The document's `x-cme-version` and the expression building its `Schema { .. }` (with
    /// the version as `version`), as `Schema::compile` does; `None` for a document it refuses.
    fn schema(doc: Value) -> Option<(String, String)> {
        let Value::Object(mut top) = doc else {
            return None;
        };
        let Some(Value::String(version)) = top.remove("x-cme-version") else {
            return None;
        };
        let defaults = match top.remove("x-cme-defaults") {
            Some(v @ Value::Object(_)) => value(&v),
            None => "Value::Object(Map::new())".to_owned(),
            Some(_) => return None,
        };
        let mut defs = String::new();
        match top.remove("$defs") {
            None => {}
            Some(Value::Object(entries)) => {
                for (name, sub) in &entries {
                    let _ = write!(defs, "({name:?}.to_owned(), {}), ", node(sub)?);
                }
            }
            Some(_) => return None,
        }
        let root = node(&Value::Object(top))?;
        let body = format!(
            "Schema {{ cme_version: version.to_owned(), defaults: {defaults}, root: {root}, \
             defs: BTreeMap::from([{defs}]) }}"
        );
        Some((version, body))
    }

    /// A `Node { .. }` expression for a (sub)schema, or `None` for a keyword `compile_node`
    /// refuses.
    fn node(schema: &Value) -> Option<String> {
        let Value::Object(keywords) = schema else {
            return None;
        };
        let mut fields = String::new();
        let mut properties = String::new();
        for (keyword, arg) in keywords {
            match keyword.as_str() {
                "type" => {
                    let ty = match arg.as_str()? {
                        "object" => "Object",
                        "array" => "Array",
                        "string" => "String",
                        "integer" => "Integer",
                        "number" => "Number",
                        "boolean" => "Boolean",
                        "null" => "Null",
                        _ => return None,
                    };
                    let _ = write!(fields, "ty: Some(JsonType::{ty}), ");
                }
                "enum" => {
                    let members: Vec<String> = arg.as_array()?.iter().map(value).collect();
                    let _ = write!(fields, "enumeration: Some(vec![{}]), ", members.join(", "));
                }
                "anyOf" => {
                    let branches = arg.as_array().filter(|b| !b.is_empty())?;
                    let nodes: Option<Vec<String>> = branches.iter().map(node).collect();
                    let _ = write!(fields, "any_of: Some(vec![{}]), ", nodes?.join(", "));
                }
                "$ref" => {
                    let target = arg.as_str()?.strip_prefix("#/$defs/")?;
                    let _ = write!(fields, "reference: Some({target:?}.to_owned()), ");
                }
                "properties" => {
                    for (name, sub) in arg.as_object()? {
                        let _ = write!(properties, "({name:?}.to_owned(), {}), ", node(sub)?);
                    }
                }
                "additionalProperties" => {
                    let _ = write!(
                        fields,
                        "additional_properties: Some(Box::new({})), ",
                        node(arg)?
                    );
                }
                "items" => {
                    let _ = write!(fields, "items: Some(Box::new({})), ", node(arg)?);
                }
                "format" => {}
                _ => return None,
            }
        }
        if !properties.is_empty() {
            let _ = write!(fields, "properties: BTreeMap::from([{properties}]), ");
        }
        Some(format!("Node {{ {fields}..Node::default() }}"))
    }

    /// A `serde_json::Value` expression, keys in document order (`preserve_order`).
    fn value(v: &Value) -> String {
        match v {
            Value::Null => "Value::Null".to_owned(),
            Value::Bool(b) => format!("Value::Bool({b})"),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    format!("Value::from({u}_u64)")
                } else if let Some(i) = n.as_i64() {
                    format!("Value::from({i}_i64)")
                } else {
                    format!("Value::from({:?}_f64)", n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => format!("Value::String({s:?}.to_owned())"),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(value).collect();
                format!("Value::Array(vec![{}])", items.join(", "))
            }
            Value::Object(entries) if entries.is_empty() => "Value::Object(Map::new())".to_owned(),
            Value::Object(entries) => {
                let mut out = String::from("{ let mut m = Map::new(); ");
                for (k, v) in entries {
                    let _ = write!(out, "m.insert({k:?}.to_owned(), {}); ", value(v));
                }
                out.push_str("Value::Object(m) }");
                out
            }
        }
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
