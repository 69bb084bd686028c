//! `--mask` through the real binary: the child prints secrets (raw, in a sentence, as the `Basic`
//! header, line by line, one byte per `write()`, inside megabytes of output) and what comes out of
//! cme-exec must be the child's output byte for byte, with every secret replaced by `***`.
//! Also: `--no-mask` and the default off on a terminal leave the output (and the terminal) alone;
//! the default is on when stdout is not a terminal or `CI` is set.
//!
//! The harness checks every run's stdout and stderr for every sentinel (raw, base64, URL and
//! JSON forms), so a secret that slips through fails the test even where the expected text is not
//! compared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::support::launch::{from_terminal, pty_runner};
use crate::support::scripts::sh_quote;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A Test whose config gives one Confluence instance `fields`, each from its own variable.
fn with_fields(mut t: Test, fields: &[(&str, &str)]) -> Test {
    let mut toml = String::from("[confluence.\"https://company.atlassian.net\"]\n");
    for (i, (field, value)) in fields.iter().enumerate() {
        let var = format!("CME_TEST_MASK_{i}");
        toml.push_str(&format!("{field} = \"env://{var}\"\n"));
        t = t.env(&var, value);
    }
    t.config_toml(&toml)
}

/// Writes `payload` to `secrets/payload` (the only place besides `out/` a sentinel may be) and
/// a child that prints it on stdout, then on stderr.
fn cat_child(t: &Test, payload: &[u8]) -> PathBuf {
    let file = t.secret_file("payload", payload);
    t.script(
        "cat-payload",
        &format!("#!/bin/sh\ncat {f}\ncat {f} >&2\n", f = sh_quote(&file)),
    )
}

/// A child that writes the payload one byte per `write()` (with a short pause after each, so
/// that cme-exec reads them one at a time), to stdout and then to stderr.
fn byte_by_byte_child(t: &Test, payload: &[u8]) -> PathBuf {
    let file = t.secret_file("payload", payload);
    let python = Venv::get().python();
    t.script(
        "drip",
        &format!(
            r#"#!{python}
import os, sys, time
data = open({file:?}, "rb").read()
for fd in (1, 2):
    for i in range(len(data)):
        os.write(fd, data[i:i + 1])
        time.sleep(0.0002)
"#,
            python = python.display(),
            file = file.display().to_string(),
        ),
    )
}

fn basic_b64(user: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
}

/// Leftmost-longest replacement of `patterns` by `***`: what a correct filter produces.
fn reference_mask(input: &[u8], patterns: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let longest = patterns
            .iter()
            .filter(|p| !p.is_empty() && input[i..].starts_with(p))
            .map(|p| p.len())
            .max();
        match longest {
            Some(n) => {
                out.extend_from_slice(b"***");
                i += n;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    out
}

/// Asserts `actual == expected` for output that may be large, naming the first difference with
/// redacted context only.
#[track_caller]
fn assert_same_bytes(what: &str, actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let context = |bytes: &[u8]| {
        let start = at.saturating_sub(40);
        let end = (at + 40).min(bytes.len());
        redact(&String::from_utf8_lossy(&bytes[start.min(end)..end]))
    };
    panic!(
        "{what}: differs at byte {at} (got {} bytes, expected {})\n  got:      {:?}\n  expected: {:?}",
        actual.len(),
        expected.len(),
        context(actual),
        context(expected)
    );
}

/// Runs `run --mask -- child` and expects exit 0 and `expected` on both stdout and stderr.
#[track_caller]
fn assert_masked(t: &Test, child: &Path, expected: &str) {
    let out = t.run_args([
        "run".as_ref(),
        "--mask".as_ref(),
        "--".as_ref(),
        child.as_os_str(),
    ]);
    out.assert_success();
    assert_same_bytes("stdout", out.stdout.as_bytes(), expected.as_bytes());
    assert_same_bytes("stderr", out.stderr.as_bytes(), expected.as_bytes());
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// What is masked
// ---------------------------------------------------------------------------------------------

#[test]
fn mask_raw_value() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = with_fields(t, &[("pat", &pat)]);
    let child = cat_child(&t, format!("{pat}\n").as_bytes());
    assert_masked(&t, &child, "***\n");
}

#[test]
fn mask_value_inside_a_sentence() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = with_fields(t, &[("pat", &pat)]);
    let child = cat_child(
        &t,
        format!("the token is {pat}, keep it safe.\nprefix{pat}suffix {pat}{pat}\n").as_bytes(),
    );
    assert_masked(
        &t,
        &child,
        "the token is ***, keep it safe.\nprefix***suffix ******\n",
    );
}

/// What cme's HTTP client sends for username + api_token, and each of the two on its own.
#[test]
fn mask_basic_header_of_username_and_api_token() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let t = with_fields(t, &[("username", &user), ("api_token", &token)]);
    let header = basic_b64(&user, &token);
    let child = cat_child(
        &t,
        format!("GET /rest/api/space\nAuthorization: Basic {header}\nuser={user} token={token}\n")
            .as_bytes(),
    );
    assert_masked(
        &t,
        &child,
        "GET /rest/api/space\nAuthorization: Basic ***\nuser=*** token=***\n",
    );
}

/// A value stored with a line break at its end (`bao kv put ... api_token=@file` keeps the
/// file's last newline; here `\n`, and `\r\n` with a `\n` after the user name too): cme
/// removes CR and LF before it builds the `Basic` header, so what it sends is the header of the
/// values without them. The child reads the handed-over config with cme's own settings loader
/// and prepares the request with requests, as cme does, then prints the header and the token as
/// cme holds it (raw, URL-quoted, JSON): all masked.
#[test]
fn mask_basic_header_cme_builds_from_a_value_with_a_line_break() {
    let python = Venv::get().python();
    for (user_end, token_end) in [("", "\n"), ("\n", "\r\n")] {
        let mut t = Test::new();
        let user = t.sentinel("user");
        let token = t.sentinel("token");
        let t = with_fields(
            t,
            &[
                ("username", &format!("{user}{user_end}")),
                ("api_token", &format!("{token}{token_end}")),
            ],
        );
        let child = t.script(
            "cme-sends",
            &format!(
                r#"#!{python}
import json, sys, urllib.parse
import requests
from confluence_markdown_exporter.utils.app_data_store import get_settings
auth = get_settings().auth.get_instance("https://company.atlassian.net")
user, token = auth.username.get_secret_value(), auth.api_token.get_secret_value()
sent = requests.Request("GET", "https://company.atlassian.net/wiki/rest/api/space", auth=(user, token)).prepare()
text = "Authorization: %s\ntoken=%s url=%s json=%s\n" % (
    sent.headers["Authorization"], token, urllib.parse.quote(token, safe=""), json.dumps(token))
for stream in (sys.stdout, sys.stderr):
    stream.write(text)
    stream.flush()
"#,
                python = python.display()
            ),
        );
        assert_masked(
            &t,
            &child,
            "Authorization: Basic ***\ntoken=*** url=*** json=\"***\"\n",
        );
    }
}

/// A multi-line value (a cookie jar, a key): the whole value, and each line on its own.
#[test]
fn mask_multi_line_value_and_each_line() {
    let mut t = Test::new();
    let lines = [
        t.sentinel("line1"),
        t.sentinel("line2"),
        t.sentinel("line3"),
    ];
    let value = lines.join("\n");
    let t = with_fields(t, &[("session_cookies", &value)]);
    let child = cat_child(
        &t,
        format!(
            "{value}\nsecond: {} and first: {}\n[{}]\n",
            lines[1], lines[0], lines[2]
        )
        .as_bytes(),
    );
    assert_masked(&t, &child, "***\nsecond: *** and first: ***\n[***]\n");
}

/// Two secrets where one is a prefix of the other: the longer one is replaced whole, and a
/// near-miss of the longer one still hides the shorter one.
#[test]
fn mask_secret_that_is_a_prefix_of_another() {
    let mut t = Test::new();
    let short = t.sentinel("short");
    let long = format!("{short}-EXTENDED");
    let near_miss = format!("{short}-EXTENDE");
    let t = with_fields(t, &[("pat", &short), ("session_cookies", &long)]);
    let child = cat_child(
        &t,
        format!("{short}\n{long}\n{long}-tail\n{near_miss}\n").as_bytes(),
    );
    assert_masked(&t, &child, "***\n***\n***-tail\n***-EXTENDE\n");
}

/// The encoded forms a Python program such as cme prints a secret in: percent-encoded as
/// `urllib.parse.quote(v, safe="")` (RFC 3986: `-._~` kept, space as `%20`), as `quote_plus`
/// (form encoding), and JSON-escaped by `json.dumps` (ASCII-only by default, and without).
#[test]
fn mask_url_encoded_and_json_escaped_forms() {
    let mut t = Test::new();
    let ascii = format!("{}/a b\"c&d\\e~f", t.sentinel("ascii"));
    let unicode = format!("{}-caf\u{e9} \u{1f511}", t.sentinel("unicode"));
    let t = with_fields(t, &[("pat", &ascii), ("session_cookies", &unicode)]);
    let a = t.secret_file("ascii", &ascii);
    let u = t.secret_file("unicode", &unicode);
    let python = Venv::get().python();
    let child = t.script(
        "encodings",
        &format!(
            r#"#!{python}
import json, sys, urllib.parse
for path in ({a:?}, {u:?}):
    v = open(path, encoding="utf-8").read()
    for form in (urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v), json.dumps(v), json.dumps(v, ensure_ascii=False)):
        print("[" + form + "]")
"#,
            python = python.display(),
            a = a.display().to_string(),
            u = u.display().to_string(),
        ),
    );
    // Stdout is checked here, form by form, to name what is missing.
    let out = t
        .launch([
            "run".as_ref(),
            "--mask".as_ref(),
            "--".as_ref(),
            child.as_os_str(),
        ])
        .allow_secrets_in_stdout()
        .run();
    out.assert_success();
    let forms = [
        "quote(safe='')",
        "quote_plus",
        "json.dumps",
        "json.dumps(ensure_ascii=False)",
    ];
    let mut unmasked = Vec::new();
    for (i, line) in out.stdout.lines().enumerate() {
        let value = if i < 4 {
            "ASCII value"
        } else {
            "non-ASCII value"
        };
        if line != "[***]" && line != "[\"***\"]" {
            unmasked.push(format!("{value} as {}: {}", forms[i % 4], redact(line)));
        }
    }
    assert_eq!(out.stdout.lines().count(), 8, "{}", out.describe());
    assert!(
        unmasked.is_empty(),
        "encoded forms not masked:\n  {}",
        unmasked.join("\n  ")
    );
    t.assert_no_leaks_in("the masked stdout", &out.stdout);
    t.assert_clean();
}

/// The child writes one byte per `write()`: every secret, the `Basic` header and each line of a
/// multi-line value is still replaced, and bytes that only looked like the start of a secret come
/// out unchanged, also at the very end of the stream.
#[test]
fn mask_value_written_one_byte_per_write() {
    let mut t = Test::new();
    let user = t.sentinel("user");
    let token = t.sentinel("token");
    let lines = [t.sentinel("line1"), t.sentinel("line2")];
    let cookies = lines.join("\n");
    let t = with_fields(
        t,
        &[
            ("username", &user),
            ("api_token", &token),
            ("session_cookies", &cookies),
        ],
    );
    let header = basic_b64(&user, &token);
    let almost = &token[..token.len() - 1];
    let payload = format!(
        "token={token};\nAuthorization: Basic {header}\n{cookies}\n> {} <\nalmost {almost}!\nS3NT1NEL-\nends with {almost}",
        lines[1]
    );
    let child = byte_by_byte_child(&t, payload.as_bytes());
    let expected = format!(
        "token=***;\nAuthorization: Basic ***\n***\n> *** <\nalmost {almost}!\nS3NT1NEL-\nends with {almost}"
    );
    let out = t.run_args([
        "run".as_ref(),
        "--mask".as_ref(),
        "--".as_ref(),
        child.as_os_str(),
    ]);
    out.assert_success();
    // `almost` is the token minus its last byte: not a secret, so it must come through.
    let allowed = |text: &str| text.replace(almost, "<almost>");
    assert_eq!(
        allowed(&out.stdout),
        allowed(&expected),
        "stdout, one byte per write"
    );
    assert_eq!(
        allowed(&out.stderr),
        allowed(&expected),
        "stderr, one byte per write"
    );
    t.assert_clean();
}

/// A partial match is released as soon as the next byte shows it is not a secret, not only at
/// the end of the stream: the line arrives while the child is still running.
#[test]
fn mask_releases_a_near_miss_without_waiting_for_the_end() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = with_fields(t, &[("pat", &pat)]);
    let start = &pat[..pat.len() / 2];
    let release = t.out_dir().join("release");
    let child = t.script(
        "near-miss",
        &format!(
            "#!/usr/bin/env bash\nprintf '%s' {start}\nsleep 0.05\nprintf 'Z\\n'\nwhile [ ! -e {release} ]; do sleep 0.02; done\necho done\n",
            start = start,
            release = sh_quote(&release)
        ),
    );
    let mut running = t.spawn_args([
        "run".as_ref(),
        "--mask".as_ref(),
        "--".as_ref(),
        child.as_os_str(),
    ]);
    running.wait_for_line(&format!("{start}Z"), Duration::from_secs(20));
    std::fs::write(&release, "").unwrap();
    let out = running.wait();
    out.assert_success();
    assert_eq!(out.stdout, format!("{start}Z\ndone\n"));
    t.assert_clean();
}

/// A child that writes `payload` to stdout in pieces, cut at each of `splits` (byte offsets),
/// and after each piece waits until the pipe is empty (`FIONREAD` is 0): the reader (cme-exec's
/// filter) has then taken every byte before the cut in an earlier `read()` than any byte after
/// it, so a secret cut in the middle really reaches the filter in two reads, whatever the pipe's
/// or the filter's buffer sizes. It waits for a condition, never for a time. It records in
/// `out/splits` how many cuts it saw drained; it fails (exit 3) if stdout is not a pipe or a cut
/// is not drained within 60 s.
fn split_writer_child(t: &Test, payload: &[u8], splits: &[usize]) -> PathBuf {
    let file = t.secret_file("payload", payload);
    let offsets = t.secret_file(
        "splits",
        splits
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let record = t.out_dir().join("splits");
    let python = Venv::get().python();
    t.script(
        "split-writer",
        &format!(
            r#"#!{python}
import fcntl, os, struct, sys, termios, time
data = open({file:?}, "rb").read()
cuts = [int(x) for x in open({offsets:?}).read().split()]
def write_all(chunk):
    view = memoryview(chunk)
    while view:
        view = view[os.write(1, view):]
def pending():
    return struct.unpack("i", fcntl.ioctl(1, termios.FIONREAD, b"\0\0\0\0"))[0]
if not __import__("stat").S_ISFIFO(os.fstat(1).st_mode):
    sys.stderr.write("split-writer: stdout is not a pipe\n")
    sys.exit(3)
pos = 0
drained = 0
for cut in cuts:
    write_all(data[pos:cut])
    pos = cut
    deadline = time.monotonic() + 60
    while pending() > 0:
        if time.monotonic() > deadline:
            sys.stderr.write("split-writer: the pipe was not drained at a cut\n")
            sys.exit(3)
        time.sleep(0.0005)
    drained += 1
write_all(data[pos:])
open({record:?}, "w").write(str(drained))
"#,
            python = python.display(),
            file = file.display().to_string(),
            offsets = offsets.display().to_string(),
            record = record.display().to_string(),
        ),
    )
}

/// A few MB of binary output (every byte value) with secrets scattered through it: one near each
/// 64 KiB offset of the payload, which the child writes in two pieces cut inside that secret,
/// waiting for the filter to have read the first piece before it writes the second (see
/// [`split_writer_child`]), so each of those secrets certainly reaches the filter split across
/// two reads; and one more in the middle of each block. The output is the input byte for byte,
/// apart from the replacements. Prints the filter's throughput.
#[test]
fn mask_megabytes_of_output_exactly() {
    let mut t = Test::new();
    let pat = t.sentinel("big");
    let t = with_fields(t, &[("pat", &pat)]);
    const SIZE: usize = 4 * 1024 * 1024;
    let mut payload = Vec::with_capacity(SIZE + 64 * 1024);
    let mut splits = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut inserted = 0;
    while payload.len() < SIZE {
        // The next 64 KiB boundary, minus a few bytes: the secret straddles it, and the child
        // cuts its write inside the secret (after 1 to len-1 of its bytes).
        let boundary = (payload.len() / 65536 + 1) * 65536;
        let straddle = boundary - (next() as usize % pat.len()).max(1);
        while payload.len() < straddle {
            payload.push(next() as u8);
        }
        splits.push(payload.len() + 1 + next() as usize % (pat.len() - 1));
        payload.extend_from_slice(pat.as_bytes());
        inserted += 1;
        // And one more somewhere in the middle of the block.
        let middle = payload.len() + 1000 + next() as usize % 30000;
        while payload.len() < middle {
            payload.push(next() as u8);
        }
        payload.extend_from_slice(pat.as_bytes());
        inserted += 1;
    }
    payload.extend_from_slice(b"\nthe end: ");
    payload.extend_from_slice(&pat.as_bytes()[..10]);
    let expected = reference_mask(&payload, &[pat.as_bytes()]);
    assert_eq!(
        expected.len(),
        payload.len() - inserted * (pat.len() - 3),
        "the payload holds exactly the inserted secrets"
    );
    let child = split_writer_child(&t, &payload, &splits);
    let drained = || {
        std::fs::read_to_string(t.out_dir().join("splits"))
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
    };

    let started = Instant::now();
    let out = t
        .launch([
            "run".as_ref(),
            "--mask".as_ref(),
            "--".as_ref(),
            child.as_os_str(),
        ])
        .run_raw();
    let masked_time = started.elapsed();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(
        drained(),
        Some(splits.len()),
        "the child cut {} secrets across two reads of the filter\n{}",
        splits.len(),
        out.describe()
    );
    assert_same_bytes("masked stdout", &out.stdout, &expected);

    let started = Instant::now();
    let plain = t
        .launch([
            "run".as_ref(),
            "--no-mask".as_ref(),
            "--".as_ref(),
            child.as_os_str(),
        ])
        .allow_secrets_in_stdout()
        .run_raw();
    let plain_time = started.elapsed();
    assert_eq!(plain.code(), Some(0), "{}", plain.describe());
    assert_same_bytes("unmasked stdout", &plain.stdout, &payload);
    let mb = payload.len() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "masking throughput: {mb:.1} MiB with {inserted} secrets in {:.0} ms with --mask, {:.0} ms with --no-mask ({:.0} MiB/s through the filter, debug build)",
        masked_time.as_secs_f64() * 1000.0,
        plain_time.as_secs_f64() * 1000.0,
        mb / masked_time.as_secs_f64()
    );
    t.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// When it is on
// ---------------------------------------------------------------------------------------------

/// A child that prints the secret and says whether its stdout is a terminal, and whether it is
/// the very pipe cme-exec itself writes to.
fn print_secret_child(t: &Test, secret: &str) -> PathBuf {
    let file = t.secret_file("payload", format!("secret={secret}\n"));
    t.script(
        "print-secret",
        &format!(
            r#"#!/usr/bin/env bash
cat {file}
if [ -t 1 ]; then echo "stdout=terminal"; else echo "stdout=not-terminal"; fi
if [ "$(readlink /proc/$$/fd/1)" = "$(readlink /proc/$PPID/fd/1)" ]; then echo "stdout=cme-exec's own"; else echo "stdout=a pipe of cme-exec"; fi
"#,
            file = sh_quote(&file)
        ),
    )
}

/// `--no-mask`: the child writes straight to cme-exec's own stdout, untouched.
#[test]
fn no_mask_leaves_output_untouched() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = with_fields(t, &[("pat", &pat)]);
    let child = print_secret_child(&t, &pat);
    let out = t
        .launch([
            "run".as_ref(),
            "--no-mask".as_ref(),
            "--".as_ref(),
            child.as_os_str(),
        ])
        .allow_secrets_in_stdout()
        .run();
    out.assert_success();
    assert_contains_secret("the --no-mask output", &out.stdout, &pat);
    assert_eq!(
        out.stdout,
        format!("secret={pat}\nstdout=not-terminal\nstdout=cme-exec's own\n"),
        "--no-mask: the child's output, untouched, on cme-exec's own stdout"
    );

    // --mask after --no-mask wins (the last one counts), and the child writes into a pipe.
    let out = t.run_args([
        "run".as_ref(),
        "--no-mask".as_ref(),
        "--mask".as_ref(),
        "--".as_ref(),
        child.as_os_str(),
    ]);
    out.assert_success();
    assert_eq!(
        out.stdout,
        "secret=***\nstdout=not-terminal\nstdout=a pipe of cme-exec\n"
    );
    t.assert_clean();
}

/// The default: on when stdout is not a terminal or `CI` is set (to anything but `false`/`0`);
/// off on a terminal, where the child keeps the terminal itself. Flags override both.
#[test]
fn default_masking_follows_the_terminal_and_ci() {
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = with_fields(t, &[("pat", &pat)]);
    let child = print_secret_child(&t, &pat);
    let pty = pty_runner(&t);
    let masked_pipe = "secret=***\nstdout=not-terminal\nstdout=a pipe of cme-exec\n";
    let untouched_terminal = format!("secret={pat}\nstdout=terminal\nstdout=cme-exec's own\n");

    struct Case<'a> {
        what: &'a str,
        terminal: bool,
        ci: Option<&'a str>,
        flag: Option<&'a str>,
        masked: bool,
    }
    let cases = [
        Case {
            what: "a pipe, no CI",
            terminal: false,
            ci: None,
            flag: None,
            masked: true,
        },
        Case {
            what: "a pipe, CI=true",
            terminal: false,
            ci: Some("true"),
            flag: None,
            masked: true,
        },
        Case {
            what: "a terminal, no CI",
            terminal: true,
            ci: None,
            flag: None,
            masked: false,
        },
        Case {
            what: "a terminal, CI=false",
            terminal: true,
            ci: Some("false"),
            flag: None,
            masked: false,
        },
        Case {
            what: "a terminal, CI=true",
            terminal: true,
            ci: Some("true"),
            flag: None,
            masked: true,
        },
        Case {
            what: "a terminal, --mask",
            terminal: true,
            ci: None,
            flag: Some("--mask"),
            masked: true,
        },
        Case {
            what: "a terminal, CI=1, --no-mask",
            terminal: true,
            ci: Some("1"),
            flag: Some("--no-mask"),
            masked: false,
        },
    ];
    for case in cases {
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
        if let Some(flag) = case.flag {
            args.push(flag.as_ref());
        }
        args.extend(["--".as_ref(), child.as_os_str()]);
        let mut launch = t.launch(args).env_remove("CI");
        if let Some(ci) = case.ci {
            launch = launch.env("CI", ci);
        }
        if case.terminal {
            launch = launch.wrapper([&pty]);
        }
        if !case.masked {
            launch = launch.allow_secrets_in_stdout();
        }
        let out = launch.run();
        assert_eq!(out.code(), Some(0), "{}: {}", case.what, out.describe());
        let stdout = from_terminal(&out.stdout);
        let expected = if case.masked {
            masked_pipe.to_owned()
        } else if case.terminal {
            untouched_terminal.clone()
        } else {
            unreachable!()
        };
        assert_eq!(
            redact(&stdout),
            redact(&expected),
            "{}: expected the output {}",
            case.what,
            if case.masked { "masked" } else { "untouched" }
        );
    }
    t.assert_clean();
}

/// Masking is decided per stream. On a terminal with `2>file`, stderr (cme's log) is
/// masked while stdout stays the child's terminal, untouched; `--no-mask` turns both off.
#[test]
fn masking_is_decided_per_stream() {
    use crate::support::launch::{from_terminal, pty_runner};
    let mut t = Test::new();
    let pat = t.sentinel("pat");
    let t = t
        .env("CME_TEST_PAT", &pat)
        .config_toml("[jira.\"https://jira.example.com\"]\npat = \"env://CME_TEST_PAT\"\n");
    let payload = t.secret_file("payload", format!("secret={pat}\n"));
    let child = t.script(
        "print-both",
        &format!(
            "#!/usr/bin/env bash\ncat '{p}'\ncat '{p}' >&2\nif [ -t 1 ]; then echo stdout=terminal; else echo stdout=not-terminal; fi\nif [ -t 2 ]; then echo stderr=terminal >&2; else echo stderr=not-terminal >&2; fi\n",
            p = payload.display()
        ),
    );
    let pty = pty_runner(&t);
    let err_file = t.out_dir().join("export.log");
    let redirect = format!("exec \"$@\" 2>'{}'", err_file.display());
    for (flag, stderr_masked) in [(None, true), (Some("--no-mask"), false)] {
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
        if let Some(f) = flag {
            args.push(f.as_ref());
        }
        args.extend(["--".as_ref(), child.as_os_str()]);
        let out = t
            .launch(args)
            .env_remove("CI")
            .wrapper([
                pty.as_os_str(),
                "/bin/sh".as_ref(),
                "-c".as_ref(),
                redirect.as_ref(),
                "sh".as_ref(),
            ])
            .allow_secrets_in_stdout()
            .run();
        assert_eq!(out.code(), Some(0), "{flag:?}: {}", out.describe());
        assert_eq!(
            redact(&from_terminal(&out.stdout)),
            redact(&format!("secret={pat}\nstdout=terminal\n")),
            "{flag:?}: the terminal on stdout stays the child's, untouched"
        );
        let log = std::fs::read_to_string(&err_file).unwrap();
        if stderr_masked {
            assert_eq!(
                redact(&log),
                "secret=***\nstderr=not-terminal\n",
                "stderr redirected to a file is masked"
            );
        } else {
            assert_eq!(
                redact(&log),
                redact(&format!("secret={pat}\nstderr=not-terminal\n"))
            );
        }
        std::fs::remove_file(&err_file).unwrap();
    }
    t.assert_clean();
}
