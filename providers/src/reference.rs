//! References: `SCHEME://PATH[?PARAMS][#KEY]` (and `SCHEME:PATH` for relative paths).
//!
//! The general splitting is done here rather than by `url::Url::parse`, on purpose: the `url`
//! crate resolves `..` segments away, reads `user@` in the first segment as credentials,
//! lower-cases hosts of special schemes and turns `file:rel/path` into `/rel/path`. Each of
//! those would silently change which secret is read, so a reference is split literally and
//! every surprise is an error instead. Percent-decoding follows RFC 3986.

use std::fmt;

use percent_encoding::percent_decode_str;

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The reference as written (references are not secret; they are shown in messages).
    pub raw: String,
    pub document: Document,
    pub key: Option<Key>,
}

/// What a provider fetches: everything in a reference but the `#KEY`.
/// Two references with equal documents are served by one fetch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Document {
    /// The scheme, lower-cased: the provider's name.
    pub scheme: String,
    /// `true` for `scheme://...`, `false` for `scheme:...`.
    pub has_authority: bool,
    /// The percent-decoded path after `scheme://` or `scheme:`.
    pub location: String,
    /// Query parameters, percent-decoded, sorted by name.
    pub params: Vec<(String, String)>,
}

impl Document {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails when a parameter other than `allowed` is present.
    pub fn only_params(&self, allowed: &[&str]) -> Result<(), String> {
        for (k, _) in &self.params {
            if !allowed.contains(&k.as_str()) {
                return Err(if allowed.is_empty() {
                    format!("unknown parameter `{k}`: this provider takes no parameters")
                } else {
                    format!(
                        "unknown parameter `{k}` (expected {})",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.has_authority { "://" } else { ":" };
        write!(f, "{}{sep}{}", self.scheme, self.location)?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// `#KEY`: a plain key as written, or a JSON Pointer (RFC 6901) when it starts with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Plain(String),
    Pointer(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Plain(k) | Key::Pointer(k) => f.write_str(k),
        }
    }
}

/// Why a string is not a reference. The text never repeats the input: a secret pasted where a
/// reference belongs must not be echoed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Whether `s` starts like a reference (`scheme:`), as opposed to a plain value.
pub fn looks_like_reference(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => is_scheme(scheme),
        None => false,
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Reference {
    pub fn parse(raw: &str) -> Result<Reference, ParseError> {
        if raw.is_empty() {
            return err("empty reference");
        }
        if raw.chars().any(|c| c.is_control()) {
            return err("contains a control character (NUL, newline, tab, ...)");
        }
        if raw.chars().any(char::is_whitespace) {
            return err("contains whitespace (percent-encode it as %20)");
        }
        check_percent_encoding(raw)?;

        let Some((scheme, rest)) = raw.split_once(':') else {
            return err("not a reference: expected SCHEME://PATH[?PARAMS][#KEY]");
        };
        if !is_scheme(scheme) {
            return err("not a reference: the scheme must be a letter followed by letters, digits, `+`, `-` or `.`");
        }
        let scheme = scheme.to_ascii_lowercase();

        let (rest, key) = match rest.split_once('#') {
            Some((r, k)) => (r, Some(parse_key(k)?)),
            None => (rest, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (has_authority, path) = match path.strip_prefix("//") {
            Some(p) => (true, p),
            None => (false, path),
        };
        if path.is_empty() || path == "/" {
            return err("empty path");
        }
        for segment in path.split('/') {
            let decoded = decode(segment)?;
            if decoded == "." || decoded == ".." {
                return err("`.` and `..` path segments are not allowed");
            }
        }
        let location = decode(path)?;
        // Again after decoding: `%2F` only becomes a separator here (`a%2F..%2Fb`).
        if location.split('/').any(|s| s == "." || s == "..") {
            return err("`.` and `..` path segments are not allowed");
        }
        let params = match query {
            None => Vec::new(),
            Some(q) => parse_params(q)?,
        };
        Ok(Reference {
            raw: raw.to_owned(),
            document: Document {
                scheme,
                has_authority,
                location,
                params,
            },
            key,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn check_percent_encoding(s: &str) -> Result<(), ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return err("bad percent-encoding: `%` must be followed by two hex digits (write `%25` for `%`)");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, ParseError> {
    let decoded = percent_decode_str(s)
        .decode_utf8()
        .map_err(|_| ParseError("percent-encoded bytes are not valid UTF-8".into()))?;
    if decoded.chars().any(|c| c.is_control()) {
        return err("percent-encoded control character (such as %00)");
    }
    Ok(decoded.into_owned())
}

fn parse_key(k: &str) -> Result<Key, ParseError> {
    let k = decode(k)?;
    if k.is_empty() {
        return err("empty #KEY: remove the `#` or name a key");
    }
    if k.starts_with('/') {
        // RFC 6901: `~` must be followed by 0 or 1.
        let mut chars = k.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return err("bad JSON Pointer in #KEY: `~` must be followed by `0` or `1`");
            }
        }
        Ok(Key::Pointer(k))
    } else {
        Ok(Key::Plain(k))
    }
}

fn parse_params(q: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut params: Vec<(String, String)> = Vec::new();
    if q.is_empty() {
        return err("empty query: remove the `?` or add NAME=VALUE");
    }
    for pair in q.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            return err("bad parameter: expected NAME=VALUE");
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if k.is_empty() {
            return err("bad parameter: empty NAME");
        }
        if v.is_empty() {
            return err("a parameter has an empty value (NAME=VALUE)");
        }
        if params.iter().any(|(n, _)| *n == k) {
            return err("a parameter is given twice");
        }
        params.push((k, v));
    }
    params.sort();
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(raw: &str) -> Document {
        Reference::parse(raw).unwrap().document
    }

    #[test]
    fn splits_scheme_location_params_and_key() {
        let r = Reference::parse("vault://secret/atlassian?version=3#api_token").unwrap();
        assert_eq!(r.document.scheme, "vault");
        assert!(r.document.has_authority);
        assert_eq!(r.document.location, "secret/atlassian");
        assert_eq!(r.document.params, [("version".into(), "3".into())]);
        assert_eq!(r.key, Some(Key::Plain("api_token".into())));
    }

    #[test]
    fn file_forms() {
        let abs = doc("file:///run/secrets/token");
        assert!(abs.has_authority);
        assert_eq!(abs.location, "/run/secrets/token");
        let rel = doc("file:secrets/token.json");
        assert!(!rel.has_authority);
        assert_eq!(rel.location, "secrets/token.json");
    }

    #[test]
    fn keys_plain_and_pointer() {
        let r = Reference::parse("file:///a.json#a.b/c").unwrap();
        assert_eq!(r.key, Some(Key::Plain("a.b/c".into())));
        let r = Reference::parse("file:///a.json#/a~1b/0").unwrap();
        assert_eq!(r.key, Some(Key::Pointer("/a~1b/0".into())));
        let r = Reference::parse("file:///a.json#my%20key").unwrap();
        assert_eq!(r.key, Some(Key::Plain("my key".into())));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(doc("ENV://HOME").scheme, "env");
        assert_eq!(doc("ENV://HOME").location, "HOME");
    }

    #[test]
    fn user_info_and_at_signs_are_literal() {
        assert_eq!(doc("aws-sm://team@prod/jira").location, "team@prod/jira");
    }

    #[test]
    fn params_are_sorted_and_decoded() {
        let d = doc("x://a?b=2&a=%31");
        assert_eq!(
            d.params,
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(d.to_string(), "x://a?a=1&b=2");
    }

    #[test]
    fn rejects_malformed() {
        for (raw, why) in [
            ("", "empty reference"),
            ("noscheme", "not a reference"),
            ("1x://a", "scheme"),
            ("env://", "empty path"),
            ("file:///", "empty path"),
            ("file:///a/../b", "`..`"),
            ("file:///a/%2e%2E/b", "`..`"),
            ("file:///a/./b", "`..`"),
            ("env://A\0B", "control"),
            ("env://A%00B", "control"),
            ("env://A%zzB", "percent-encoding"),
            ("env://A%2", "percent-encoding"),
            ("env://A%ff", "UTF-8"),
            ("env://A B", "whitespace"),
            ("env://A#", "empty #KEY"),
            ("file:///a#/x~2", "JSON Pointer"),
            ("vault://a/b?", "empty query"),
            ("vault://a/b?version", "NAME=VALUE"),
            ("vault://a/b?version=1&version=2", "twice"),
            ("file:///a/b%2F..%2F..%2Fx", "`..`"),
            ("x://%2F%2e", "`..`"),
            ("vault://a/b?version=", "empty value"),
        ] {
            let e = Reference::parse(raw).expect_err(raw);
            assert!(e.0.contains(why), "{raw:?}: {e}");
        }
    }

    #[test]
    fn errors_never_echo_the_input() {
        let secret = "S3CRET-VALUE-1234";
        for raw in [
            secret.to_string(),
            format!("x://{secret}%zz"),
            format!("x://{secret} y"),
            format!("x://{secret}/../a"),
        ] {
            let e = Reference::parse(&raw).unwrap_err();
            assert!(!e.0.contains(secret), "{e}");
        }
    }

    #[test]
    fn looks_like_reference_only_with_a_scheme() {
        assert!(looks_like_reference("env://X"));
        assert!(looks_like_reference("file:x"));
        assert!(!looks_like_reference("me@example.com"));
        assert!(!looks_like_reference("abc-123"));
        assert!(!looks_like_reference(":x"));
    }
}
