//! The documentation against the program and itself: hints link to the documentation's
//! address (never a bare `docs/` path), the samples of output the docs show are what the program
//! prints, and every `docs/...` path and `#anchor` named in a comment or a page exists.

use std::net::TcpListener;

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
