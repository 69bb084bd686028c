//! Every cme release users run: real cme 4.3.2, 5.0.0, 5.2.0 and 5.5.0 run
//! through cme-exec against the Confluence stand-in, in every hand-over mode, with Basic and
//! Bearer (and `session_cookies` from 5.2); cme-exec detects each release from the command
//! (without starting Python) and validates for it; and each embedded schema matches its
//! release (drift). The extra releases live in `.venv-cme/<version>`
//! (`scripts/bootstrap-cme-releases`); 5.5.0 is the main `.venv`'s.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::support::*;
use crate::{basic_header, file_ref, q};

/// A release's `cme`; fails (never skips) with the fix when it is not installed.
fn cme_of(version: &str) -> PathBuf {
    if version == "5.5.0" {
        return Venv::get().cme();
    }
    let root = std::env::var_os("CME_EXEC_TEST_CME_RELEASES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-cme"));
    let cme = root.join(version).join("bin/cme");
    assert!(
        cme.is_file(),
        "cme {version} is not installed at {}.\nTo fix: run `scripts/bootstrap-cme-releases` in the repository root \
         (it installs cme 4.3.2, 5.0.0 and 5.2.0 into .venv-cme/), or set CME_EXEC_TEST_CME_RELEASES_DIR; \
         `scripts/test` does it",
        cme.display()
    );
    cme
}

fn at_least(version: &str, than: &str) -> bool {
    let key = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    key(version) >= key(than)
}

/// Three runs of real cme through cme-exec, one per hand-over mode: memfd with Basic, file with
/// Bearer, env with session cookies (from 5.2; Basic before). Each sends exactly the
/// credentials configured; cme-exec said which release it validated for.
fn exercise(version: &str) {
    let cme = cme_of(version);
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let pat = t.sentinel("pat");
    let cookie_a = t.sentinel("cka");
    let cookie_b = t.sentinel("ckb");
    let token_file = t.secret_file("token", &token);
    let pat_file = t.secret_file("pat", &pat);
    let cookies_file = t.secret_file("cookies", format!("a={cookie_a}; b={cookie_b}"));
    let wiki = ConfluenceStandIn::start();
    let url = wiki.base_url();
    let basic = format!(
        "[confluence.{}]\nusername = {}\napi_token = {}\n",
        q(&url),
        q(&user),
        q(file_ref(&token_file))
    );
    let bearer = format!(
        "[confluence.{}]\npat = {}\n",
        q(&url),
        q(file_ref(&pat_file))
    );
    let cookies = format!(
        "[confluence.{}]\nsession_cookies = {}\n",
        q(&url),
        q(file_ref(&cookies_file))
    );
    let t = t.global_arg("-v").config_toml(&basic);
    let page = wiki.page_url(4242);
    let run = |via: &str| {
        let out = t.run_args([
            OsStr::new("--via"),
            OsStr::new(via),
            OsStr::new("--"),
            cme.as_os_str(),
            OsStr::new("pages"),
            OsStr::new(&page),
        ]);
        out.assert_success();
        out.assert_stderr_contains(&format!(
            "validating the config for this cme release release=\"{version}\" from=\"{}\"",
            cme.display()
        ));
        out
    };
    let seen = |from: usize, name: &str| -> Vec<String> {
        wiki.requests()[from..]
            .iter()
            .filter_map(|r| r.header(name).map(str::to_owned))
            .collect()
    };

    let n = wiki.requests().len();
    run("memfd");
    let auth = seen(n, "authorization");
    assert!(
        !auth.is_empty(),
        "cme {version} sent nothing: {}",
        wiki.summary()
    );
    assert!(
        auth.iter().all(|h| *h == basic_header(&user, &token)),
        "cme {version}, memfd, Basic"
    );

    t.write_file("cme-exec.toml", &bearer);
    let n = wiki.requests().len();
    run("file");
    let auth = seen(n, "authorization");
    assert!(
        !auth.is_empty(),
        "cme {version} sent nothing: {}",
        wiki.summary()
    );
    assert!(
        auth.iter().all(|h| *h == format!("Bearer {pat}")),
        "cme {version}, file, Bearer"
    );

    let n = wiki.requests().len();
    if at_least(version, "5.2.0") {
        t.write_file("cme-exec.toml", &cookies);
        run("env");
        let sent = seen(n, "cookie");
        assert!(
            !sent.is_empty(),
            "cme {version} sent no cookies: {}",
            wiki.summary()
        );
        for c in &sent {
            assert!(
                c.contains(&format!("a={cookie_a}")) && c.contains(&format!("b={cookie_b}")),
                "cme {version}, env, cookies"
            );
        }
        assert!(seen(n, "authorization").is_empty());
    } else {
        t.write_file("cme-exec.toml", &basic);
        run("env");
        let auth = seen(n, "authorization");
        assert!(
            !auth.is_empty(),
            "cme {version} sent nothing: {}",
            wiki.summary()
        );
        assert!(
            auth.iter().all(|h| *h == basic_header(&user, &token)),
            "cme {version}, env, Basic"
        );
        // session_cookies is not a field of this release: refused before cme starts, never
        // silently dropped.
        t.write_file("cme-exec.toml", &cookies);
        let n = wiki.requests().len();
        let out = t.run_args([
            OsStr::new("--"),
            cme.as_os_str(),
            OsStr::new("pages"),
            OsStr::new(&page),
        ]);
        out.assert_code(125);
        out.assert_stderr_contains(&format!(
            "session_cookies: not a setting of cme {version} (only from cme 5.2.0 on): cme {version} would silently ignore it"
        ));
        assert_eq!(wiki.requests().len(), n, "cme was started");
    }
    t.assert_clean();
}

#[test]
fn cme_4_3_2_reads_every_hand_over() {
    exercise("4.3.2");
}

#[test]
fn cme_5_0_0_reads_every_hand_over() {
    exercise("5.0.0");
}

#[test]
fn cme_5_2_0_reads_every_hand_over() {
    exercise("5.2.0");
}

#[test]
fn cme_5_5_0_reads_every_hand_over() {
    exercise("5.5.0");
}

/// The base config is validated for the detected release: a setting that release does not
/// have (`export.save_log_to_file`, from 5.1.0) is refused for 5.0.0 and accepted for 5.2.0;
/// `CME_EXEC_CME_VERSION` overrides the detection (`check` finds no `cme` on PATH here).
#[test]
fn the_base_config_is_checked_for_the_release_that_reads_it() {
    let old = cme_of("5.0.0");
    let new = cme_of("5.2.0");
    let b = crate::basic("https://company.atlassian.net");
    let base = b.t.cme_default_config();
    b.t.write_file(
        "config/confluence-markdown-exporter/app_data.json",
        r#"{"export": {"save_log_to_file": false}}"#,
    );
    let child = b.t.script("ok", "#!/bin/sh\nexit 0\n");
    // The release behind the command is what counts: cme 5.0.0 ...
    let out =
        b.t.run_args([OsStr::new("--"), old.as_os_str(), OsStr::new("--help")]);
    out.assert_code(125);
    out.assert_stderr_contains(&format!("{}", base.display()));
    out.assert_stderr_contains(
        "export.save_log_to_file: not a setting of cme 5.0.0 (only from cme 5.1.0 on): cme 5.0.0 would silently ignore it",
    );
    // ... and 5.2.0 has it.
    b.t.run_args([OsStr::new("--"), new.as_os_str(), OsStr::new("--help")])
        .assert_success();
    // Without cme: the variable, else the newest release.
    let t = b.t.env("CME_EXEC_CME_VERSION", "5.0.0");
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_code(125);
    out.assert_stderr_contains("not a setting of cme 5.0.0");
    let t = t.env("CME_EXEC_CME_VERSION", "9.0.0");
    let out = t.run_args([OsStr::new("--"), child.as_os_str()]);
    out.assert_success();
    out.assert_stderr_contains("cme 9.0.0 (CME_EXEC_CME_VERSION) is newer than the newest release this cme-exec knows (5.5.0)");
    t.assert_clean();
}

/// Each embedded schema is its release's (the newest is checked by
/// `embedded_cme_schema_matches_the_installed_cme`).
#[test]
fn each_embedded_schema_matches_its_release() {
    for version in ["4.3.2", "5.0.0", "5.2.0"] {
        let python = cme_of(version).with_file_name("python");
        let out = std::process::Command::new(repo_root().join("scripts/update-cme-schema"))
            .arg("--check")
            .env("CME_PYTHON", &python)
            .output()
            .expect("scripts/update-cme-schema runs");
        assert!(
            out.status.success(),
            "src/cme_config/schemas/{version}.json differs from cme {version}'s schema; run \
             CME_PYTHON={} scripts/update-cme-schema\n{}{}",
            python.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
