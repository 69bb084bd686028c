//! `--mask`: secrets and the forms derived from them are replaced by `***` in the child's
//! stdout and stderr, as a stream.
//!
//! The patterns are every resolved secret field value, each line of a multi-line value, and the
//! forms cme and HTTP derive from them: the `Basic` header's base64 of `username:api_token`,
//! percent-encoded (`%20` and `+` for spaces) and JSON-escaped forms; each for the value as
//! stored and as cme sends it (without CR and LF, see [`as_cme_sends`]). Values shorter than
//! [`MIN_LEN`] bytes are not masked: masking every "me" or "42" in the output would destroy it and
//! protect nothing.
//!
//! Matching uses `aho-corasick` (leftmost-longest, so of two secrets where one is a prefix of the
//! other the longer wins). Because a secret may be split across writes, the end of each chunk
//! that could still be the start of a secret is held back, and released unchanged as soon as the
//! next bytes show it is not one, or at the end of the stream.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::config::Field;
use crate::resolve::Auth;

/// The shortest value that is masked, in bytes.
pub const MIN_LEN: usize = 4;

/// What replaces a secret.
pub const REPLACEMENT: &[u8] = b"***";

/// RFC 3986's unreserved characters stay as they are (Python's `quote(v, safe="")`,
/// JavaScript's `encodeURIComponent` minus its `!*'()`); everything else is `%XX`.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The encoded forms a value takes in URLs, forms and JSON, as common libraries write them.
fn derived_forms(s: &str) -> Vec<Zeroizing<String>> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let mut forms = Vec::new();
    for set in [NON_ALPHANUMERIC, URL_COMPONENT] {
        let pct = Zeroizing::new(utf8_percent_encode(s, set).to_string());
        // The same with `+` for spaces (form encoding, Python's quote_plus).
        forms.push(Zeroizing::new(pct.replace("%20", "+")));
        forms.push(pct);
    }
    forms.push(Zeroizing::new(
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect(),
    ));
    // JSON-escaped: serde_json's form (non-ASCII as is) and the ASCII-only form Python's
    // json.dumps writes by default (`\u00e9`, surrogate pairs for the rest).
    let json = Zeroizing::new(serde_json::to_string(s).unwrap_or_default());
    let inner = json
        .get(1..json.len().saturating_sub(1))
        .unwrap_or_default();
    forms.push(Zeroizing::new(inner.to_owned()));
    forms.push(json_ascii(s));
    forms
}

/// `s` JSON-escaped with only ASCII in the output, without the quotes.
fn json_ascii(s: &str) -> Zeroizing<String> {
    use std::fmt::Write as _;
    let mut out = Zeroizing::new(String::with_capacity(s.len() * 2));
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out
}

/// The parts of a `Cookie:` header value that appear on their own in cme's debug output (and in
/// requests' cookie jars): each `name=value` pair and each value (also without its quotes).
/// Parts shorter than [`MIN_LEN`] are dropped later, like every pattern.
fn cookie_parts(cookies: &str) -> Vec<SecretString> {
    let mut out = Vec::new();
    for pair in cookies.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        out.push(SecretString::from(pair.to_owned()));
        if let Some((_, v)) = pair.split_once('=') {
            let v = v.trim();
            out.push(SecretString::from(v.to_owned()));
            if let Some(unquoted) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                out.push(SecretString::from(unquoted.to_owned()));
            }
        }
    }
    out
}

/// A value as cme uses it, and so as it is sent: every CR and LF removed (cme's settings
/// validator does this to `username`, `api_token`, `pat` and `session_cookies`; `check --live`
/// does the same). A value stored with a trailing newline (`bao kv put ... api_token=@file`)
/// is sent without it. Wiped when dropped.
pub fn as_cme_sends(value: &str) -> Zeroizing<String> {
    Zeroizing::new(
        value
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect(),
    )
}

/// Every secret of `auth` the mask covers: the secret fields, as stored and as cme sends them
/// (CR and LF removed, see [`as_cme_sends`]), each cookie of `session_cookies` on its own, and
/// the `Basic` header's base64 of `username:api_token`, of the values as stored and as sent
/// (owned copies, wiped when dropped; the automaton is built from them later, see [`Lazy`]).
/// [`Masker::new`] adds each one's encoded forms.
pub fn values_of(auth: &Auth) -> Vec<SecretString> {
    let mut values: Vec<SecretString> = Vec::new();
    for instance in auth.instances.values() {
        for (field, value) in &instance.fields {
            let stored = value.secret.expose_secret();
            let sent = as_cme_sends(stored);
            if field.is_secret() {
                values.push(value.secret.clone());
                if sent.as_str() != stored {
                    values.push(SecretString::from(sent.to_string()));
                }
            }
            if *field == Field::SessionCookies {
                values.extend(cookie_parts(stored));
                if sent.as_str() != stored {
                    values.extend(cookie_parts(&sent));
                }
            }
        }
        if let (Some(u), Some(t)) = (
            instance.fields.get(&Field::Username),
            instance.fields.get(&Field::ApiToken),
        ) {
            let (u, t) = (u.secret.expose_secret(), t.secret.expose_secret());
            let stored = Zeroizing::new(format!("{u}:{t}"));
            let sent = Zeroizing::new(format!(
                "{}:{}",
                as_cme_sends(u).as_str(),
                as_cme_sends(t).as_str()
            ));
            let basic = |pair: &str| {
                SecretString::from(base64::engine::general_purpose::STANDARD.encode(pair))
            };
            values.push(basic(&stored));
            if sent != stored {
                values.push(basic(&sent));
            }
        }
    }
    values
}

/// The mask of one run, built on first use by the thread that first has output to filter:
/// the child starts, and cme-exec waits for it, without waiting for the automaton
/// (about 0.1 ms for a few instances, 170 ms and 10 MB for 3,000 secrets), and a child that
/// prints nothing never has one built.
pub struct Lazy {
    values: Vec<SecretString>,
    built: std::sync::OnceLock<Option<Masker>>,
}

impl Lazy {
    pub fn new(values: Vec<SecretString>) -> Lazy {
        Lazy {
            values,
            built: std::sync::OnceLock::new(),
        }
    }

    /// The masker (`None`: nothing long enough to mask), built by the first caller.
    pub fn get(&self) -> Option<&Masker> {
        self.built
            .get_or_init(|| Masker::for_values(&self.values))
            .as_ref()
    }
}

/// The compiled patterns.
pub struct Masker {
    ac: AhoCorasick,
    patterns: Vec<Zeroizing<Vec<u8>>>,
    /// Bytes that start some pattern: a held-back tail must start with one.
    first_bytes: [bool; 256],
    max_len: usize,
}

impl Masker {
    /// The patterns for these secrets (from [`values_of`]). `None` when nothing is long enough
    /// to mask.
    pub fn for_values(values: &[SecretString]) -> Option<Masker> {
        Masker::new(values.iter().map(|v| v.expose_secret().as_bytes()))
    }

    /// The patterns for these values and their derived forms.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Masker> {
        let mut set: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut add = |b: &[u8]| {
            if b.len() >= MIN_LEN {
                set.push(Zeroizing::new(b.to_vec()));
            }
        };
        for v in values {
            add(v);
            for line in v.split(|&b| b == b'\n') {
                add(line.strip_suffix(b"\r").unwrap_or(line));
            }
            if let Ok(s) = std::str::from_utf8(v) {
                for form in derived_forms(s) {
                    add(form.as_bytes());
                }
            }
        }
        if set.is_empty() {
            return None;
        }
        set.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        set.dedup_by(|a, b| a.as_slice() == b.as_slice());
        let patterns = set;
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_slice()))
            .ok()?;
        let mut first_bytes = [false; 256];
        for p in &patterns {
            first_bytes[p[0] as usize] = true;
        }
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        Some(Masker {
            ac,
            patterns,
            first_bytes,
            max_len,
        })
    }

    /// Whether `tail` could still grow into (a longer) one of the patterns.
    fn is_proper_prefix(&self, tail: &[u8]) -> bool {
        self.first_bytes[tail[0] as usize]
            && self
                .patterns
                .iter()
                .any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// A fresh stream (one per output).
    pub fn stream(&self) -> Stream<'_> {
        Stream {
            masker: self,
            pending: Zeroizing::new(Vec::new()),
        }
    }
}

/// One output stream being masked.
pub struct Stream<'m> {
    masker: &'m Masker,
    pending: Zeroizing<Vec<u8>>,
}

impl Stream<'_> {
    /// Masks `input`, appending what can be released to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(input);
        let m = self.masker;
        let mut cursor = 0;
        loop {
            // The earliest position from which the rest could still become a secret.
            let from = cursor.max(buf.len().saturating_sub(m.max_len.saturating_sub(1)));
            let hold = (from..buf.len())
                .find(|&p| m.is_proper_prefix(&buf[p..]))
                .unwrap_or(buf.len());
            match m.ac.find(Input::new(&buf[..]).range(cursor..)) {
                Some(found) if found.start() < hold => {
                    out.extend_from_slice(&buf[cursor..found.start()]);
                    out.extend_from_slice(REPLACEMENT);
                    cursor = found.end();
                }
                _ => {
                    out.extend_from_slice(&buf[cursor..hold]);
                    self.pending.extend_from_slice(&buf[hold..]);
                    return;
                }
            }
        }
    }

    /// The end of the stream: whatever is held back is released, masked where it matches.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let buf = std::mem::take(&mut self.pending);
        let mut cursor = 0;
        for found in self.masker.ac.find_iter(&buf[..]) {
            out.extend_from_slice(&buf[cursor..found.start()]);
            out.extend_from_slice(REPLACEMENT);
            cursor = found.end();
        }
        out.extend_from_slice(&buf[cursor..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_in_chunks(values: &[&str], input: &str, chunk: usize) -> String {
        let m = Masker::new(values.iter().map(|v| v.as_bytes())).unwrap();
        let mut s = m.stream();
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(chunk.max(1)) {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn all_chunkings(values: &[&str], input: &str, expected: &str) {
        for chunk in [1, 2, 3, 5, 7, 64, input.len().max(1)] {
            assert_eq!(
                mask_in_chunks(values, input, chunk),
                expected,
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn raw_values_anywhere() {
        all_chunkings(
            &["s3cret-token"],
            "token=s3cret-token and again s3cret-token.",
            "token=*** and again ***.",
        );
    }

    #[test]
    fn a_prefix_of_another_secret() {
        all_chunkings(
            &["abcd", "abcdefgh"],
            "x abcdefgh y abcd z abcdefg",
            "x *** y *** z ***efg",
        );
    }

    #[test]
    fn partial_matches_are_released_unchanged() {
        all_chunkings(
            &["secret-value"],
            "secret-valu secret-",
            "secret-valu secret-",
        );
    }

    #[test]
    fn multi_line_values_line_by_line() {
        all_chunkings(
            &["line-one\nline-two"],
            "a line-two b\nline-one\n",
            "a *** b\n***\n",
        );
    }

    #[test]
    fn derived_forms() {
        all_chunkings(
            &["p@ss w\"rd/x"],
            "url p%40ss%20w%22rd%2Fx form p%40ss+w%22rd%2Fx json \"p@ss w\\\"rd/x\"",
            "url *** form *** json \"***\"",
        );
    }

    #[test]
    fn basic_header_of_username_and_token() {
        let mut auth = Auth::default();
        let mut fields = std::collections::BTreeMap::new();
        for (f, v) in [
            (Field::Username, "me@example.com"),
            (Field::ApiToken, "tok-123456"),
        ] {
            fields.insert(
                f,
                crate::resolve::Value {
                    secret: SecretString::from(v.to_owned()),
                    origin: crate::resolve::Origin::Literal,
                },
            );
        }
        auth.instances.insert(
            (crate::config::Product::Confluence, "https://x".into()),
            crate::resolve::InstanceAuth { fields },
        );
        let m = Masker::for_values(&values_of(&auth)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("me@example.com:tok-123456");
        let mut s = m.stream();
        let mut out = Vec::new();
        s.feed(format!("Authorization: Basic {b64}\n").as_bytes(), &mut out);
        s.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authorization: Basic ***\n"
        );
    }

    fn auth_with(fields: &[(Field, &str)]) -> Auth {
        let mut auth = Auth::default();
        let fields = fields
            .iter()
            .map(|(f, v)| {
                (
                    *f,
                    crate::resolve::Value {
                        secret: SecretString::from((*v).to_owned()),
                        origin: crate::resolve::Origin::Literal,
                    },
                )
            })
            .collect();
        auth.instances.insert(
            (crate::config::Product::Confluence, "https://x".into()),
            crate::resolve::InstanceAuth { fields },
        );
        auth
    }

    fn mask_once(m: &Masker, input: &str) -> String {
        let mut s = m.stream();
        let mut out = Vec::new();
        s.feed(input.as_bytes(), &mut out);
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// A value stored with a line break (`bao kv put ... api_token=@file` keeps the file's last
    /// newline): cme sends it without CR and LF, so the `Basic` header, the value and its
    /// encoded forms are masked as sent, not only as stored.
    #[test]
    fn forms_built_from_a_value_as_cme_sends_it() {
        // As sent: `t"k 12/3456`; its URL and JSON forms need escapes.
        for (user, token) in [
            ("me@example.com", "t\"k 12/3456\n"),
            ("me@example.com\n", "t\"k 12/3456\r\n"),
            ("me@example.com", "t\"k 12\r\n/3456\n"),
        ] {
            let m = Masker::for_values(&values_of(&auth_with(&[
                (Field::Username, user),
                (Field::ApiToken, token),
            ])))
            .unwrap();
            let b64 =
                base64::engine::general_purpose::STANDARD.encode("me@example.com:t\"k 12/3456");
            let stored =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            assert_eq!(
                mask_once(
                    &m,
                    &format!(
                        "Authorization: Basic {b64}\nstored {stored}\ntoken=t\"k 12/3456 \
                         url=t%22k%2012%2F3456 json=\"t\\\"k 12/3456\"\n"
                    )
                ),
                "Authorization: Basic ***\nstored ***\ntoken=*** url=*** json=\"***\"\n",
                "{user:?} {token:?}"
            );
        }
        // A value with no line break gives no second pattern.
        let plain = values_of(&auth_with(&[
            (Field::Username, "me@example.com"),
            (Field::ApiToken, "tok-123456"),
        ]));
        assert_eq!(plain.len(), 3, "username, api_token, one Basic header");
    }

    /// Session cookies as cme sends them: a pair broken by a line break is masked joined.
    #[test]
    fn session_cookies_as_cme_sends_them() {
        let m = Masker::for_values(&values_of(&auth_with(&[(
            Field::SessionCookies,
            "JSESSIONID=S3NT\r\nINEL-a1; x=1\n",
        )])))
        .unwrap();
        assert_eq!(
            mask_once(&m, "Cookie: JSESSIONID=S3NTINEL-a1; x=1\n"),
            "Cookie: ***\n"
        );
        // Each cookie as sent, on its own (cme's debug output and requests' jar show them so).
        assert_eq!(
            mask_once(&m, "jar JSESSIONID=S3NTINEL-a1, value S3NTINEL-a1\n"),
            "jar ***, value ***\n"
        );
    }

    /// The automaton of a run, built on first use: it masks like one built at once.
    #[test]
    fn lazy_builds_the_same_masker() {
        let lazy = Lazy::new(vec![SecretString::from("s3cret-token".to_owned())]);
        let m = lazy.get().expect("a masker");
        assert_eq!(mask_once(m, "t=s3cret-token\n"), "t=***\n");
        assert!(Lazy::new(vec![SecretString::from("abc".to_owned())])
            .get()
            .is_none());
    }

    /// Output is released as soon as it cannot become a secret, not at the end of the stream: a
    /// complete secret at the end of a chunk is replaced at once, a possible start is held back
    /// only until the next bytes decide.
    #[test]
    fn output_is_released_without_waiting_for_the_end() {
        let m = Masker::new([b"secret-value".as_slice()]).unwrap();
        let mut s = m.stream();
        let mut out = Vec::new();
        s.feed(b"hello world ", &mut out);
        assert_eq!(out, b"hello world ", "nothing here can start a secret");
        out.clear();
        s.feed(b"a secret-value", &mut out);
        assert_eq!(out, b"a ***", "a whole secret at the end of a chunk");
        out.clear();
        s.feed(b" x secret-", &mut out);
        assert_eq!(out, b" x ", "a possible start is held back");
        out.clear();
        s.feed(b"valve", &mut out);
        assert_eq!(
            out, b"secret-valve",
            "released once it cannot be the secret"
        );
        out.clear();
        s.feed(b" sec", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b" sec");
    }

    /// Each cookie of `session_cookies`, and each value, is masked on its own;
    /// a value shorter than the minimum length is not.
    #[test]
    fn each_session_cookie_is_masked_on_its_own() {
        let mut auth = Auth::default();
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            Field::SessionCookies,
            crate::resolve::Value {
                secret: SecretString::from(
                    "JSESSIONID=S3NT1NEL-a1; seraph.rememberme.cookie=\"S3NT1NEL-b2\"; x=1"
                        .to_owned(),
                ),
                origin: crate::resolve::Origin::Literal,
            },
        );
        auth.instances.insert(
            (crate::config::Product::Confluence, "https://x".into()),
            crate::resolve::InstanceAuth { fields },
        );
        let m = Masker::for_values(&values_of(&auth)).unwrap();
        let mut s = m.stream();
        let mut out = Vec::new();
        s.feed(
            b"jar: JSESSIONID=S3NT1NEL-a1\nvalue S3NT1NEL-b2 and x=1 left\ncookie {'JSESSIONID': 'S3NT1NEL-a1'}\n",
            &mut out,
        );
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "jar: ***\nvalue *** and x=1 left\ncookie {'JSESSIONID': '***'}\n"
        );
    }

    #[test]
    fn forms_other_libraries_write() {
        // Python: quote(v, safe=""), quote_plus(v), json.dumps(v)
        all_chunkings(
            &["p-a.s_s~w é"],
            r#"q p-a.s_s~w%20%C3%A9 p p-a.s_s~w+%C3%A9 j "p-a.s_s~w \u00e9""#,
            r#"q *** p *** j "***""#,
        );
        assert_eq!(
            json_ascii("a\"\\\n\u{1F511}").as_str(),
            r#"a\"\\\n\ud83d\udd11"#
        );
    }

    #[test]
    fn short_values_are_not_masked() {
        assert!(Masker::new([b"abc".as_slice()]).is_none());
    }

    #[test]
    fn megabytes_pass_through() {
        let m = Masker::new([b"needle-in-haystack".as_slice()]).unwrap();
        let mut s = m.stream();
        let chunk = "hay ".repeat(16 * 1024) + "needle-in-haystack";
        let mut out = Vec::new();
        for _ in 0..64 {
            s.feed(chunk.as_bytes(), &mut out);
        }
        s.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("***").count(), 64);
        assert!(!text.contains("needle"));
    }
}
