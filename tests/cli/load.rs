//! Load: many concurrent runs sharing one runtime directory, some killed with SIGKILL, each
//! child reading only its own config; and 500 references across 50 documents, each document
//! read once.
//!
//! Not tested here: that fetches run with bounded concurrency. The file provider reads a
//! document synchronously inside its future, so with files there is no concurrency to observe;
//! the store providers' tests (Vault, AWS) are where the bound shows.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::scripts::{self, sh_quote};
use crate::support::*;
use crate::*;

const RUNS: usize = 50;

/// 50 concurrent runs share one XDG_RUNTIME_DIR, half `--via file`, half `--via memfd`; every
/// fifth is killed with SIGKILL while its child runs (the child dies with it). Each child finds
/// exactly its own secret in its config, holds no other run's memfd, and every file run has its
/// own directory. What the killed file runs left is theirs alone.
#[test]
fn fifty_concurrent_runs_each_read_only_their_own_config() {
    let mut t = Test::new();
    let secrets: Vec<String> = (0..RUNS).map(|i| t.sentinel(&format!("run{i}"))).collect();
    let t =
        t.config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_RUN_SECRET\"\n");
    let out = t.out_dir();
    let child = t.script(
        "own-config",
        &format!(
            r#"#!/usr/bin/env bash
out={out}
n=$CME_TEST_RUN_INDEX
echo $$ > "$out/pid-$n"
seen() {{ grep -o 'S3NT1NEL-run[0-9]*-[0-9a-f]*' "$CME_CONFIG_PATH" | sort -u | tr '\n' ' '; }}
seen > "$out/seen-$n"
ls -l /proc/$$/fd | grep -c 'memfd:' > "$out/memfds-$n"
printf '%s' "$CME_CONFIG_PATH" > "$out/path-$n"
echo ready
if [ -n "${{CME_TEST_RELEASE:-}}" ]; then
  while [ ! -e "$CME_TEST_RELEASE" ]; do sleep 0.02; done
fi
exit 0
"#,
            out = sh_quote(&out)
        ),
    );
    let killed = |i: usize| i % 5 == 0;
    let via = |i: usize| if i % 2 == 0 { "file" } else { "memfd" };
    let release = |i: usize| out.join(format!("release-{i}"));

    let mut running: Vec<(usize, Running)> = (0..RUNS)
        .map(|i| {
            let mut launch = t
                .launch([
                    "run".as_ref(),
                    "--via".as_ref(),
                    via(i).as_ref(),
                    "--".as_ref(),
                    child.as_os_str(),
                ])
                .env("CME_TEST_RUN_SECRET", &secrets[i])
                .env("CME_TEST_RUN_INDEX", i.to_string());
            if killed(i) {
                launch = launch.env("CME_TEST_RELEASE", release(i));
            }
            (i, launch.spawn())
        })
        .collect();

    let mut child_pids = Vec::new();
    for (i, run) in running.iter_mut().filter(|(i, _)| killed(*i)) {
        run.wait_for_line("ready", Duration::from_secs(60));
        child_pids.push(read_pid(&out.join(format!("pid-{i}"))));
        run.signal(Signal::SIGKILL);
    }
    let _reaper = KillOnDrop(child_pids.clone());
    // The killed runs' children are never released: they wait until they die with cme-exec
    // (PR_SET_PDEATHSIG), which the wait below requires.
    for (i, run) in running {
        let result = run.wait_timeout(Duration::from_secs(60));
        if killed(i) {
            assert_eq!(
                result.code(),
                None,
                "run {i} was killed\n{}",
                result.describe()
            );
        } else {
            assert_eq!(result.code(), Some(0), "run {i}\n{}", result.describe());
        }
    }
    for pid in child_pids {
        wait_until(
            "a killed run's child dies with cme-exec (it is never released)",
            Duration::from_secs(20),
            || process_gone(pid),
        );
    }

    let read = |name: String| {
        fs::read_to_string(out.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut file_paths = BTreeSet::new();
    for (i, secret) in secrets.iter().enumerate() {
        let own = format!("{secret} ");
        let seen = read(format!("seen-{i}"));
        assert!(
            seen == own,
            "run {i} (--via {}) found {} in its config instead of exactly its own",
            via(i),
            redact(&seen)
        );
        let memfds = read(format!("memfds-{i}"));
        let expected = if via(i) == "memfd" { "1" } else { "0" };
        assert_eq!(
            memfds.trim(),
            expected,
            "run {i} (--via {}): memfds the child holds",
            via(i)
        );
        let path = read(format!("path-{i}"));
        if via(i) == "file" {
            assert!(
                Path::new(&path).starts_with(t.runtime_dir()),
                "run {i}: {path}"
            );
            assert!(file_paths.insert(path.clone()), "run {i} reused {path}");
        }
    }

    // The killed file runs' directories are left (a later run sweeps them after 10 s, see
    // processes.rs); each holds exactly one killed run's config.
    let killed_secrets: Vec<&String> = (0..RUNS)
        .filter(|i| killed(*i) && via(*i) == "file")
        .map(|i| &secrets[i])
        .collect();
    let left: Vec<PathBuf> = fs::read_dir(t.runtime_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.len() <= killed_secrets.len(),
        "only killed runs leave directories: {left:?}"
    );
    for dir in left {
        let config = fs::read(dir.join("app_data.json")).unwrap_or_default();
        let holders: Vec<_> = secrets
            .iter()
            .filter(|s| config.windows(s.len()).any(|w| w == s.as_bytes()))
            .collect();
        assert!(
            holders.len() == 1 && killed_secrets.contains(&holders[0]),
            "{} holds the config of {} runs, not of one killed run",
            dir.display(),
            holders.len()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
    t.assert_clean();
}

/// `strace`, or a failure that says how to install it.
fn strace() -> &'static str {
    match Command::new("strace").arg("-V").output() {
        Ok(out) if out.status.success() => "strace",
        _ => panic!(
            "strace is not installed; this test counts file opens with it.\nTo fix: apt-get install strace"
        ),
    }
}

/// 500 references (100 instances × 5 fields) across 50 JSON documents of 10 keys: every value
/// lands in its place, and `strace` shows each document opened exactly once.
#[test]
fn five_hundred_references_across_fifty_documents_read_each_once() {
    let strace = strace();
    let mut t = Test::new();
    let fields = [
        "username",
        "api_token",
        "pat",
        "session_cookies",
        "cloud_id",
    ];
    let mut docs = Vec::new();
    let mut expected: Vec<(String, String, &str, String)> = Vec::new();
    let mut toml = String::new();
    for d in 0..50 {
        let sentinel = t.sentinel(&format!("doc{d}"));
        let values: serde_json::Map<String, Value> = (0..10)
            .map(|k| (format!("k{k}"), Value::String(format!("{sentinel}-k{k}"))))
            .collect();
        let path = t.secret_file(
            &format!("doc-{d:02}.json"),
            Value::Object(values).to_string(),
        );
        for half in 0..2 {
            let m = d * 2 + half;
            let (product, url) = if m < 50 {
                ("confluence", format!("https://c{m}.example.com"))
            } else {
                ("jira", format!("https://j{m}.example.com"))
            };
            toml.push_str(&format!("[{product}.\"{url}\"]\n"));
            for (f, field) in fields.iter().enumerate() {
                let key = half * 5 + f;
                toml.push_str(&format!("{field} = \"file://{}#k{key}\"\n", path.display()));
                expected.push((
                    product.to_owned(),
                    url.clone(),
                    field,
                    format!("{sentinel}-k{key}"),
                ));
            }
        }
        docs.push(path);
    }
    assert_eq!(expected.len(), 500);
    let t = t.config_toml(&toml);
    let trace = t.out_dir().join("trace");
    let child = t.script("dump-env", &scripts::dump_env(&t.out_dir()));
    let out = t
        .launch([OsStr::new("--"), child.as_os_str()])
        .wrapper([
            OsStr::new(strace),
            "-f".as_ref(),
            "-qq".as_ref(),
            "-e".as_ref(),
            "trace=openat".as_ref(),
            "-o".as_ref(),
            trace.as_os_str(),
        ])
        .run();
    out.assert_success();

    let config = t.child_env().config_json();
    for (product, url, field, value) in &expected {
        let got = config
            .pointer(&format!("/auth/{product}"))
            .and_then(|m| m.get(url))
            .and_then(|e| e.get(*field))
            .and_then(Value::as_str);
        assert!(
            got == Some(value.as_str()),
            "auth.{product}[{url}].{field} is not the value of its reference"
        );
    }

    let trace = fs::read_to_string(&trace).unwrap();
    let mut wrong = Vec::new();
    for doc in &docs {
        let needle = format!("\"{}\"", doc.display());
        let opens = trace.lines().filter(|l| l.contains(&needle)).count();
        if opens != 1 {
            wrong.push(format!("{}: {opens}", doc.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "each document should be opened exactly once; opens per document:\n  {}",
        wrong.join("\n  ")
    );
    eprintln!(
        "note: bounded concurrency is not observable with the file provider (it reads \
         synchronously); not checked here"
    );
    t.assert_clean();
}
