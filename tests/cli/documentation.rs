//! The documentation against the program and itself: hints link to the documentation's
//! address (never a bare `docs/` path), the samples of output the docs show are what the program
//! prints, and every `docs/...` path and `#anchor` named in a comment or a page exists.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Hints cite the documentation's address
// ---------------------------------------------------------------------------------------------

/// `https://github.com/cme-exec/cme-exec/blob/vVERSION/docs/`: where every hint's link points.
fn docs_base() -> String {
    format!(
        "https://github.com/cme-exec/cme-exec/blob/v{}/docs/",
        env!("CARGO_PKG_VERSION")
    )
}

/// Every `docs/` in `text` is part of a link to the documentation at this version.
#[track_caller]
fn assert_no_bare_docs_path(what: &str, text: &str) {
    let base = docs_base();
    for (i, _) in text.match_indices("docs/") {
        let start = i + "docs/".len();
        assert!(
            text[..start].ends_with(&base),
            "{what} cites a bare docs/ path (an installed binary has no docs/ beside it): {}",
            &text[i.saturating_sub(60)..(i + 40).min(text.len())]
        );
    }
}

/// Hints link to the documentation's URL: no configuration at all, no Vault token, no AWS
/// credentials, a bad VAULT_* setting for the built-in provider.
#[test]
fn hints_link_to_the_documentation_not_to_a_docs_path() {
    let t = Test::new();
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains(&format!("{}configuration.md", docs_base())),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("`check` without a configuration", &out.stderr);

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("address");
    drop(closed);
    let t = Test::new()
        .env("VAULT_ADDR", format!("http://{addr}"))
        .env("AWS_ENDPOINT_URL", format!("http://{addr}"))
        .env("AWS_REGION", moto::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .config_toml(
            "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
             api_token = \"aws-sm://app#token\"\n",
        );
    let out = t.run_args(["check"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains(&format!("{}providers/vault.md", docs_base())),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("{}providers/aws-sm.md", docs_base())),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("`check` without credentials", &out.stdout);
    assert_no_bare_docs_path("`check` without credentials", &out.stderr);

    let out = t.env("CME_EXEC_VAULT_KV_VERSION", "7").run_args(["check"]);
    assert!(
        out.stdout.contains(&format!(
            "{}providers/vault.md#without-a-config-file",
            docs_base()
        )),
        "{}",
        out.describe()
    );
    assert_no_bare_docs_path("a bad VAULT_* setting", &out.stdout);
}

/// No user-facing text in the sources (string literals, and `///` in src/cli.rs, which is the
/// `--help` text) cites a `docs/` path; links are built by `docs_url`.
#[test]
fn no_source_string_cites_a_bare_docs_path() {
    let mut offenders = Vec::new();
    for dir in ["src", "providers/src"] {
        for file in files_under(&repo_root().join(dir)) {
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let is_cli = file.ends_with("src/cli.rs");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                let help = is_cli && code.starts_with("///");
                if code.starts_with("//") && !help {
                    continue;
                }
                if code.contains("/blob/v{}/docs/{page}") {
                    continue; // docs_url itself
                }
                if line.contains("docs/") {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "build links with docs_url(\"page.md\") instead:\n{}",
        offenders.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Samples that match the real output
// ---------------------------------------------------------------------------------------------

/// The fenced block of `page` (under docs/) that contains `marker`.
fn doc_block(page: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("docs").join(page))
        .unwrap_or_else(|e| panic!("read docs/{page}: {e}"));
    text.split("```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').map_or("", |(_, body)| body).to_owned())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("docs/{page} has no block with {marker:?}"))
}

/// Every line of the documented sample is a line of the real output (after `replace`).
#[track_caller]
fn assert_sample_matches(page: &str, sample: &str, real: &str) {
    let real_lines: Vec<&str> = real.lines().collect();
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            real_lines.contains(&line),
            "docs/{page} shows a line the real output does not have:\n  {line}\nreal output:\n{real}"
        );
    }
}

/// docs/configuration.md's sample of a strict parse (an unknown key, an unknown scheme) is
/// what cme-exec prints.
#[test]
fn documented_config_error_sample_matches_real_output() {
    let sample = doc_block("configuration.md", "problems in the configuration");
    let t = Test::new();
    t.write_file(
        "work/cme-exec.toml",
        "[confluence.\"https://x.atlassian.net\"]\nusername = \"env://CONFLUENCE_USER\"\n\
         api_tokn = \"env://CONFLUENCE_TOKEN\"\n\n\
         [jira.\"https://jira.example.com\"]\npat = \"valt://secret/jira#pat\"\n",
    );
    // Named with --config as given: the message shows the path the way the user wrote it (and
    // a file named on the command line is used whatever the rules for one found in the
    // working directory).
    let work = t.work_dir();
    let t = t.current_dir(work);
    let out = t.run_args(["--config", "cme-exec.toml", "check"]);
    out.assert_code(1);
    let real = out.stderr.clone();
    assert_sample_matches("configuration.md", &sample, &real);
}

/// docs/providers/vault.md's sample of a failed login told once is what cme-exec prints
/// against OpenBao (its address written as the docs' `https://vault.example.com`).
#[test]
fn documented_vault_login_sample_matches_real_output() {
    let sample = doc_block("providers/vault.md", "(for 3 fields)");
    let (bao, t, out) = crate::vault::failed_approle_login("https://a.example.com");
    let real = out
        .stderr
        .replace(&bao.address(), "https://vault.example.com");
    assert_sample_matches("providers/vault.md", &sample, &real);
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Every docs/ path and #anchor named in a comment or a page exists
// ---------------------------------------------------------------------------------------------

/// The anchor GitHub gives a heading: lower case, every character that is not a letter, a digit,
/// a space, `-` or `_` dropped, spaces made `-`; a repeated slug gets `-1`, `-2`, ...
fn github_slugs(markdown: &str) -> Vec<String> {
    let mut slugs: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if in_fence {
            continue;
        }
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        // A link's text stays, its target goes.
        let mut text = String::new();
        let mut rest = heading.trim();
        while let Some(open) = rest.find("](") {
            text.push_str(&rest[..open]);
            rest = &rest[open + 2..];
            rest = &rest[rest.find(')').map_or(rest.len(), |i| i + 1)..];
        }
        text.push_str(rest);
        let base: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut slug = base.clone();
        let mut n = 0;
        while slugs.contains(&slug) {
            n += 1;
            slug = format!("{base}-{n}");
        }
        slugs.push(slug);
    }
    slugs
}

/// Files under `dir` (recursively) whose name ends with one of `suffixes`.
fn files_with(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_with(&path, suffixes));
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Whether `target` (a path relative to the repository, with an optional `#anchor`) exists;
/// `None` when it does, else what is wrong.
fn broken(target: &str, slugs: &mut BTreeMap<PathBuf, Vec<String>>) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let full = repo_root().join(path.trim_end_matches('/'));
    if !full.exists() {
        return Some("no such file".to_owned());
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if full.is_dir() || !path.ends_with(".md") {
        return None;
    }
    let known = slugs
        .entry(full.clone())
        .or_insert_with(|| github_slugs(&fs::read_to_string(&full).unwrap_or_default()));
    (!known.iter().any(|s| s == anchor)).then(|| format!("no heading with the anchor #{anchor}"))
}

/// Normalises `dir/../x` and `./x` in a path relative to the repository.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// `docs/...` paths in the comments of the Rust sources (`//`, `///`, `//!`).
fn docs_paths_in_comments(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(at) = line.find("//") else { continue };
        let comment = &line[at..];
        let mut rest = comment;
        while let Some(i) = rest.find("docs/") {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-#".contains(c)))
                .unwrap_or(tail.len());
            let path = tail[..end].trim_end_matches(['.', ',', ':', '-']);
            rest = &tail[end..];
            // `scripts/docs/...`, a URL's path, a glob, or a name that is no file or directory
            // (a GitLab project `docs/export`) are not paths of this repository.
            let file = path.split('#').next().unwrap_or(path);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-')
                || path == "docs/"
                || path.contains('*')
                || !(file.ends_with('/')
                    || file.rsplit('/').next().is_some_and(|n| n.contains('.')))
            {
                continue;
            }
            found.push((n + 1, path.to_owned()));
        }
    }
    found
}

/// Link targets of a Markdown page (`[text](target)`), outside code.
fn markdown_links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_fence = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code holds examples, not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            let target = tail[..end].split_whitespace().next().unwrap_or("");
            rest = &tail[end..];
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            found.push((n + 1, target.to_owned()));
        }
    }
    found
}

/// Every `docs/...` path (and `#anchor`) a comment in src/, providers/src/ or tests/ names, and
/// every relative link of README.md and docs/**/*.md, leads to a file and a heading that exist
/// (anchors by GitHub's rule for heading slugs).
#[test]
fn every_docs_path_and_anchor_named_exists() {
    let root = repo_root();
    let mut slugs = BTreeMap::new();
    let mut problems = Vec::new();
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    for dir in ["src", "providers/src", "tests"] {
        for file in files_with(&root.join(dir), &[".rs"]) {
            let text = fs::read_to_string(&file).unwrap();
            for (line, target) in docs_paths_in_comments(&text) {
                if let Some(why) = broken(&target, &mut slugs) {
                    problems.push(format!("{}:{line}: {target}: {why}", rel(&file)));
                }
            }
        }
    }
    let mut pages = vec![root.join("README.md")];
    pages.extend(files_with(&root.join("docs"), &[".md"]));
    for page in pages {
        let text = fs::read_to_string(&page).unwrap();
        let dir = rel(page.parent().unwrap());
        for (line, target) in markdown_links(&text) {
            let resolved = if let Some(anchor) = target.strip_prefix('#') {
                format!("{}#{anchor}", rel(&page))
            } else {
                normalise(&format!("{dir}/{target}"))
            };
            if let Some(why) = broken(&resolved, &mut slugs) {
                problems.push(format!("{}:{line}: {target}: {why}", rel(&page)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "paths and anchors that lead nowhere:\n{}",
        problems.join("\n")
    );
}

/// The slug rule on headings as GitHub renders them, and what the check finds: a section a
/// comment cites that the page does not have, a file that is not there.
#[test]
fn github_slugs_follow_githubs_rule() {
    let mut slugs = BTreeMap::new();
    assert_eq!(broken("docs/security.md#files", &mut slugs), None);
    assert!(broken("docs/security.md#network", &mut slugs).is_some());
    assert!(broken("docs/no-such-page.md", &mut slugs).is_some());
    // Written in pieces, so that this file's own scan does not see a comment here.
    let line = [
        "x /",
        "/ see docs",
        "/a.md#b, scripts/docs",
        "/c.md and project docs",
        "/export",
    ]
    .concat();
    assert_eq!(
        docs_paths_in_comments(&line),
        [(1, "docs/a.md#b".to_owned())]
    );

    let slugs = github_slugs(
        "# Top\n## Config files and ambient credentials\n### `check --live`: what it asks\n## Top\n```sh\n# not a heading\n```\n## [JWT](x.md) auth\n",
    );
    assert_eq!(
        slugs,
        [
            "top",
            "config-files-and-ambient-credentials",
            "check---live-what-it-asks",
            "top-1",
            "jwt-auth"
        ]
    );
}
