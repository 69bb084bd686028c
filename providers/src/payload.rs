//! What a provider returns, and how `#KEY` picks a value out of it.
//!
//! Every secret byte lives in a zeroising type: text in [`SecretString`], structured documents
//! in [`SecretMap`], whose strings are wiped when it is dropped. Parse errors are reported by
//! position only, because serde_json's and toml's own messages may quote the secret text.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};
use zeroize::Zeroize as _;

use crate::reference::Key;

/// The largest document cme-exec accepts from any provider (1 MiB). Atlassian credentials are
/// a few hundred bytes; anything near this size is a wrong reference, and the limit keeps
/// memory bounded when a store answers with something huge.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// How to read a text document when `#KEY` asks for a key inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    Dotenv,
    /// JSON when it starts with `{`, else TOML, else dotenv.
    Unknown,
}

impl Format {
    /// The format a file's name suggests.
    pub fn from_file_name(name: &str) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".toml") {
            Format::Toml
        } else if lower.ends_with(".env") || lower.starts_with(".env") {
            Format::Dotenv
        } else {
            Format::Unknown
        }
    }
}

/// A fetched document.
pub enum Payload {
    /// Plain text: a file's content (one trailing newline removed), a variable, a
    /// `SecretString`. `#KEY` parses it according to `format`.
    Text { value: SecretString, format: Format },
    /// A structured document: a Vault secret's `data`, a directory of one file per key.
    Object(SecretMap),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Text { format, .. } => write!(f, "Payload::Text({format:?}, [REDACTED])"),
            Payload::Object(_) => f.write_str("Payload::Object([REDACTED])"),
        }
    }
}

/// A JSON object holding secrets; every string in it is zeroised on drop.
pub struct SecretMap(Value);

impl SecretMap {
    pub fn new(map: Map<String, Value>) -> Self {
        SecretMap(Value::Object(map))
    }

    pub fn expose(&self) -> &Map<String, Value> {
        match &self.0 {
            Value::Object(m) => m,
            _ => unreachable!("a SecretMap always holds an object"),
        }
    }

    /// The map as a JSON value (for `#KEY` lookups).
    fn as_value(&self) -> &Value {
        &self.0
    }
}

impl Clone for SecretMap {
    fn clone(&self) -> Self {
        SecretMap(self.0.clone())
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretMap([REDACTED])")
    }
}

impl Drop for SecretMap {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

/// The bytes of a JSON value's strings and keys (what counts against [`MAX_DOCUMENT_BYTES`] for a
/// structured document; numbers, booleans and punctuation are not counted).
pub fn content_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(content_bytes).sum(),
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + content_bytes(v)).sum(),
        _ => 0,
    }
}

/// Wipes every string and every object key of a JSON value. Objects are emptied: a map's keys
/// cannot be changed in place, so its entries are taken out and each key and value wiped.
/// (Numbers and booleans are not wiped; the map's index table holds no key bytes.)
pub fn zeroize_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_value),
        Value::Object(m) => {
            for (mut k, mut v) in std::mem::take(m) {
                k.zeroize();
                zeroize_value(&mut v);
            }
        }
        _ => {}
    }
}

fn zeroize_toml(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) => s.zeroize(),
        toml::Value::Array(a) => a.iter_mut().for_each(zeroize_toml),
        toml::Value::Table(t) => {
            for (mut k, mut v) in std::mem::take(t) {
                k.zeroize();
                zeroize_toml(&mut v);
            }
        }
        _ => {}
    }
}

/// Why `#KEY` (or the lack of it) could not give what the field needs. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError {
    pub not_found: bool,
    pub message: String,
}

impl SelectError {
    fn invalid(message: impl Into<String>) -> Self {
        SelectError {
            not_found: false,
            message: message.into(),
        }
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Picks a string for a field: the whole text, or the string at `#KEY`.
pub fn select_string(payload: &Payload, key: Option<&Key>) -> Result<SecretString, SelectError> {
    match (payload, key) {
        (Payload::Text { value, .. }, None) => Ok(value.clone()),
        (Payload::Object(_), None) => Err(SelectError::invalid(
            "the document is an object: add #KEY to pick one of its fields",
        )),
        (Payload::Text { value, format }, Some(key)) => {
            let map = parse_text(value, *format)?;
            string_at(map.as_value(), key)
        }
        (Payload::Object(map), Some(key)) => string_at(map.as_value(), key),
    }
}

/// Picks an object (for `from`): the whole document, or the object at `#KEY`.
pub fn select_object(payload: &Payload, key: Option<&Key>) -> Result<SecretMap, SelectError> {
    let whole = match payload {
        Payload::Text { value, format } => parse_text(value, *format)?,
        Payload::Object(map) => map.clone(),
    };
    let Some(key) = key else {
        return Ok(whole);
    };
    match lookup(whole.as_value(), key)? {
        Value::Object(m) => Ok(SecretMap::new(m.clone())),
        other => Err(SelectError::invalid(format!(
            "#{key} is {}, expected an object",
            describe(other)
        ))),
    }
}

fn lookup<'a>(doc: &'a Value, key: &Key) -> Result<&'a Value, SelectError> {
    let found = match key {
        Key::Plain(k) => doc.as_object().and_then(|m| m.get(k)),
        Key::Pointer(p) => doc.pointer(p),
    };
    found.ok_or_else(|| SelectError {
        not_found: true,
        message: format!("no key `{key}` in the document{}", keys_there(doc, key)),
    })
}

/// How many key names a "no key" message lists at most.
const KEYS_SHOWN: usize = 12;

/// What the document has where `#KEY` looked: `; did you mean `api_token`? its keys: api_token,
/// username`. Key names only, never a value; control characters dropped, long names cut, the
/// list capped. For a pointer, the keys of the deepest object it reached.
fn keys_there(doc: &Value, key: &Key) -> String {
    let (map, wanted, at) = match key {
        Key::Plain(k) => (doc.as_object(), k.as_str(), String::new()),
        Key::Pointer(p) => {
            let mut at = doc;
            let mut path = String::new();
            let mut wanted = "";
            for segment in p.split('/').skip(1) {
                let name = segment.replace("~1", "/").replace("~0", "~");
                match at.as_object().and_then(|m| m.get(&name)) {
                    Some(next) if next.is_object() => {
                        at = next;
                        path.push('/');
                        path.push_str(segment);
                    }
                    _ => {
                        wanted = segment;
                        break;
                    }
                }
            }
            (at.as_object(), wanted, path)
        }
    };
    let Some(map) = map else {
        return String::new();
    };
    let shown = |k: &str| -> String {
        let clean: String = k.chars().filter(|c| !c.is_control()).collect();
        if clean.chars().count() > 40 {
            format!("{}…", clean.chars().take(40).collect::<String>())
        } else {
            clean
        }
    };
    let where_ = if at.is_empty() {
        "its keys".to_owned()
    } else {
        format!("the keys at `{at}`")
    };
    if map.is_empty() {
        return format!(" ({where_}: none)");
    }
    let nearest = crate::table::closest(wanted, map.keys().map(String::as_str))
        .map(|k| format!("did you mean `{}`? ", shown(k)))
        .unwrap_or_default();
    let mut names: Vec<String> = map.keys().take(KEYS_SHOWN).map(|k| shown(k)).collect();
    if map.len() > KEYS_SHOWN {
        names.push(format!("and {} more", map.len() - KEYS_SHOWN));
    }
    format!(" ({nearest}{where_}: {})", names.join(", "))
}

fn string_at(doc: &Value, key: &Key) -> Result<SecretString, SelectError> {
    match lookup(doc, key)? {
        Value::String(s) => Ok(SecretString::from(s.clone())),
        other => Err(SelectError::invalid(format!(
            "#{key} is {}, expected a string",
            describe(other)
        ))),
    }
}

/// Names a JSON value's type without showing it.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a text document into an object, by `format`.
pub fn parse_text(text: &SecretString, format: Format) -> Result<SecretMap, SelectError> {
    let text = text.expose_secret();
    match format {
        Format::Json => parse_json(text),
        Format::Toml => parse_toml(text),
        Format::Dotenv => parse_dotenv(text),
        Format::Unknown => {
            if text.trim_start().starts_with('{') {
                parse_json(text)
            } else {
                parse_toml(text)
                    .or_else(|_| parse_dotenv(text))
                    .map_err(|_| {
                        SelectError::invalid(
                            "the document is not JSON, TOML or dotenv (name the file .json, .toml \
                         or .env for a precise error)",
                        )
                    })
            }
        }
    }
}

fn parse_json(text: &str) -> Result<SecretMap, SelectError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(SecretMap::new(m)),
        Ok(mut other) => {
            let what = describe(&other);
            zeroize_value(&mut other);
            Err(SelectError::invalid(format!(
                "the document is JSON {what}, expected an object"
            )))
        }
        Err(e) => Err(SelectError::invalid(format!(
            "the document is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn parse_toml(text: &str) -> Result<SecretMap, SelectError> {
    match text.parse::<toml::Table>() {
        Ok(table) => {
            let mut value = toml::Value::Table(table);
            let json = serde_json::to_value(&value);
            zeroize_toml(&mut value);
            match json {
                Ok(Value::Object(m)) => Ok(SecretMap::new(m)),
                _ => Err(SelectError::invalid(
                    "the TOML document holds a value JSON cannot represent",
                )),
            }
        }
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            Err(SelectError::invalid(format!(
                "the document is not valid TOML (line {line})"
            )))
        }
    }
}

/// A dotenv file: `KEY=VALUE` lines, `#` comments, an optional `export ` prefix, values
/// unquoted (trimmed, ` #` starts a comment), in single quotes (literal) or in double quotes
/// (`\n`, `\r`, `\t`, `\"`, `\\` escapes); quoted values may span lines. No `${VAR}`
/// expansion: a secret file never pulls in the environment.
fn parse_dotenv(text: &str) -> Result<SecretMap, SelectError> {
    // In a SecretMap from the start: the values parsed before an error are wiped too.
    let mut map = SecretMap::new(Map::new());
    let Value::Object(m) = &mut map.0 else {
        unreachable!("a SecretMap always holds an object")
    };
    parse_dotenv_into(text, m)?;
    Ok(map)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The error for a dotenv file that cannot be read at `line` (never with a value in it).
fn bad_dotenv(line: usize, what: &str) -> SelectError {
    SelectError::invalid(format!(
        "the document is not a valid dotenv file (line {line}: {what})"
    ))
}

fn parse_dotenv_into(text: &str, map: &mut Map<String, Value>) -> Result<(), SelectError> {
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    loop {
        skip_blank_and_comment_lines(&mut chars, &mut line);
        if chars.peek().is_none() {
            break;
        }
        let key = dotenv_key(&mut chars, line)?;
        while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') {
            chars.next();
        }
        // Never grows past the text's length, so it never reallocates (leaving a copy).
        let mut value = String::with_capacity(text.len());
        match chars.peek() {
            Some('\'') | Some('"') => {
                if let Err(e) = quoted_dotenv_value(&mut chars, &mut line, &mut value) {
                    value.zeroize();
                    return Err(e);
                }
            }
            _ => unquoted_dotenv_value(&mut chars, &mut value),
        }
        if let Some(mut old) = map.insert(key.clone(), Value::String(value)) {
            zeroize_value(&mut old);
            return Err(bad_dotenv(line, &format!("key `{key}` is given twice")));
        }
    }
    Ok(())
}

/// Skips blank space and comment lines, counting lines.
fn skip_blank_and_comment_lines(chars: &mut Chars<'_>, line: &mut usize) {
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            *line += 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
        } else {
            break;
        }
    }
}

/// `KEY=` or `export KEY=`: the key, checked, with the `=` read.
fn dotenv_key(chars: &mut Chars<'_>, line: usize) -> Result<String, SelectError> {
    let mut key = String::new();
    while let Some(&c) = chars.peek() {
        if c == '=' || c == '\n' {
            break;
        }
        key.push(c);
        chars.next();
    }
    let mut key = key.trim().to_owned();
    if let Some(k) = key.strip_prefix("export ") {
        key = k.trim().to_owned();
    }
    if chars.next() != Some('=') {
        return Err(bad_dotenv(line, "expected KEY=VALUE"));
    }
    let key_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !key_ok {
        return Err(bad_dotenv(
            line,
            "a key must be letters, digits, `_`, `.` or `-`",
        ));
    }
    Ok(key)
}

/// A value in single quotes (literal) or double quotes (escapes), which may span lines, and
/// what follows it on its line (only a comment may). The caller wipes `value` on an error.
fn quoted_dotenv_value(
    chars: &mut Chars<'_>,
    line: &mut usize,
    value: &mut String,
) -> Result<(), SelectError> {
    let quote = chars.next().unwrap_or('"');
    let mut closed = false;
    while let Some(c) = chars.next() {
        if c == quote {
            closed = true;
            break;
        }
        if c == '\n' {
            *line += 1;
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some('t') => value.push('\t'),
                Some(c @ ('"' | '\\' | '$')) => value.push(c),
                Some(c) => {
                    value.push('\\');
                    value.push(c);
                }
                None => break,
            }
        } else {
            value.push(c);
        }
    }
    if !closed {
        return Err(bad_dotenv(*line, "unterminated quoted value"));
    }
    // Only a comment may follow a quoted value.
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            break;
        }
        if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
            break;
        }
        if !c.is_whitespace() {
            return Err(bad_dotenv(*line, "unexpected text after a quoted value"));
        }
        chars.next();
    }
    Ok(())
}

/// An unquoted value: the rest of the line up to a ` #` comment, trimmed at its end.
fn unquoted_dotenv_value(chars: &mut Chars<'_>, value: &mut String) {
    let mut prev_space = false;
    while let Some(&c) = chars.peek() {
        if c == '\n' || (c == '#' && prev_space) {
            break;
        }
        prev_space = c == ' ' || c == '\t';
        value.push(c);
        chars.next();
    }
    while chars.peek().is_some_and(|&c| c != '\n') {
        chars.next();
    }
    let trimmed = value.trim_end().len();
    value.truncate(trimmed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_lists_the_key_names_never_the_values() {
        let doc = serde_json::json!({
            "api_token": "VALUE-1-S3NT1NEL",
            "username": "VALUE-2-S3NT1NEL",
            "deep": { "pat": "VALUE-3-S3NT1NEL" },
        });
        let payload = Payload::Object(SecretMap::new(doc.as_object().unwrap().clone()));
        let e = select_string(&payload, Some(&Key::Plain("api_tokn".into()))).unwrap_err();
        assert!(e.not_found);
        assert_eq!(
            e.message,
            "no key `api_tokn` in the document (did you mean `api_token`? its keys: api_token, username, deep)"
        );
        let e = select_string(&payload, Some(&Key::Pointer("/deep/pta".into()))).unwrap_err();
        assert_eq!(
            e.message,
            "no key `/deep/pta` in the document (did you mean `pat`? the keys at `/deep`: pat)"
        );
        let e = select_string(&payload, Some(&Key::Plain("password".into()))).unwrap_err();
        assert_eq!(
            e.message,
            "no key `password` in the document (its keys: api_token, username, deep)"
        );
        // Capped, and never a value.
        let many: Map<String, Value> = (0..30)
            .map(|i| {
                (
                    format!("k{i:02}"),
                    Value::String(format!("VALUE-{i}-S3NT1NEL")),
                )
            })
            .collect();
        let e = select_string(
            &Payload::Object(SecretMap::new(many)),
            Some(&Key::Plain("nope".into())),
        )
        .unwrap_err();
        assert!(e.message.ends_with("k11, and 18 more)"), "{}", e.message);
        assert!(!e.message.contains("S3NT1NEL"), "{}", e.message);
        let empty = Payload::Object(SecretMap::new(Map::new()));
        let e = select_string(&empty, Some(&Key::Plain("pat".into()))).unwrap_err();
        assert_eq!(e.message, "no key `pat` in the document (its keys: none)");
    }

    /// Wiping a document wipes its keys too, and a dotenv file with an error
    /// after a good line yields no map that is dropped unwiped (the error path returns through
    /// a SecretMap).
    #[test]
    fn wiping_takes_keys_and_values() {
        let mut v = serde_json::json!({ "k-S3NT1NEL": "v-S3NT1NEL", "n": { "a": ["b"] } });
        zeroize_value(&mut v);
        assert_eq!(v, serde_json::json!({}));
        let mut t: toml::Value = toml::from_str("a = \"x\"\n[b]\nc = \"y\"\n").unwrap();
        zeroize_toml(&mut t);
        assert_eq!(t.as_table().map(|t| t.len()), Some(0));
        assert!(parse_dotenv("A=one\nB='unterminated\n").is_err());
    }

    fn text(s: &str, format: Format) -> Payload {
        Payload::Text {
            value: SecretString::from(s.to_owned()),
            format,
        }
    }

    fn get(p: &Payload, key: &str) -> Result<String, SelectError> {
        let key = if key.starts_with('/') {
            Key::Pointer(key.into())
        } else {
            Key::Plain(key.into())
        };
        select_string(p, Some(&key)).map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn whole_text_and_object_errors() {
        let p = text("tok", Format::Unknown);
        assert_eq!(select_string(&p, None).unwrap().expose_secret(), "tok");
        let o = Payload::Object(SecretMap::new(Map::new()));
        assert!(select_string(&o, None)
            .unwrap_err()
            .message
            .contains("#KEY"));
    }

    #[test]
    fn json_keys_and_pointers() {
        let p = text(r#"{"a.b": "1", "x": {"y/z": "2", "n": 3}}"#, Format::Json);
        assert_eq!(get(&p, "a.b").unwrap(), "1");
        assert_eq!(get(&p, "/x/y~1z").unwrap(), "2");
        let e = get(&p, "/x/n").unwrap_err();
        assert!(e.message.contains("a number"), "{e}");
        let e = get(&p, "missing").unwrap_err();
        assert!(e.not_found);
    }

    #[test]
    fn toml_and_dotenv() {
        let t = text("api_token = \"t\"\n[x]\ny = \"z\"\n", Format::Toml);
        assert_eq!(get(&t, "api_token").unwrap(), "t");
        assert_eq!(get(&t, "/x/y").unwrap(), "z");
        let d = text(
            "# c\nexport A=1\nB = 'lit $X \\n'\nC=\"q\\\"\\n2\" # c\nD=plain value # c\nE=\"multi\nline\"\n",
            Format::Dotenv,
        );
        assert_eq!(get(&d, "A").unwrap(), "1");
        assert_eq!(get(&d, "B").unwrap(), "lit $X \\n");
        assert_eq!(get(&d, "C").unwrap(), "q\"\n2");
        assert_eq!(get(&d, "D").unwrap(), "plain value");
        assert_eq!(get(&d, "E").unwrap(), "multi\nline");
    }

    #[test]
    fn unknown_format_sniffs() {
        assert_eq!(
            get(&text("{\"k\":\"v\"}", Format::Unknown), "k").unwrap(),
            "v"
        );
        assert_eq!(get(&text("k = \"v\"", Format::Unknown), "k").unwrap(), "v");
        assert_eq!(get(&text("K=v w", Format::Unknown), "K").unwrap(), "v w");
    }

    #[test]
    fn parse_errors_never_echo_the_text() {
        let secret = "S3NT1NEL-abcdef";
        for (doc, format) in [
            (format!("{{\"k\": {secret}}}"), Format::Json),
            (format!("k = {secret}"), Format::Toml),
            (format!("k=\"{secret}"), Format::Dotenv),
            (format!("{secret} {secret}"), Format::Unknown),
            (format!("[\"{secret}\"]"), Format::Json),
        ] {
            let e = get(&text(&doc, format), "k").unwrap_err();
            assert!(!e.message.contains(secret), "{e}");
        }
    }

    #[test]
    fn select_object_whole_and_nested() {
        let p = text(
            r#"{"confluence": {"https://x": {"pat": "p"}}}"#,
            Format::Json,
        );
        let o = select_object(&p, None).unwrap();
        assert!(o.expose().contains_key("confluence"));
        let o = select_object(&p, Some(&Key::Plain("confluence".into()))).unwrap();
        assert!(o.expose().contains_key("https://x"));
        let e = select_object(&text("tok", Format::Json), None).unwrap_err();
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn debug_is_redacted() {
        let secret = "S3NT1NEL-debug";
        let p = text(secret, Format::Json);
        assert!(!format!("{p:?}").contains(secret));
        let mut m = Map::new();
        m.insert("k".into(), Value::String(secret.into()));
        let o = Payload::Object(SecretMap::new(m));
        assert!(!format!("{o:?}").contains(secret));
        let e = select_string(
            &text(&format!("{{\"k\": 1, \"x\": \"{secret}\"}}"), Format::Json),
            Some(&Key::Plain("k".into())),
        )
        .unwrap_err();
        assert!(!format!("{e:?}").contains(secret));
    }

    #[test]
    fn format_from_file_name() {
        assert_eq!(Format::from_file_name("a.JSON"), Format::Json);
        assert_eq!(Format::from_file_name("a.toml"), Format::Toml);
        assert_eq!(Format::from_file_name(".env.prod"), Format::Dotenv);
        assert_eq!(Format::from_file_name("prod.env"), Format::Dotenv);
        assert_eq!(Format::from_file_name("token"), Format::Unknown);
    }
}
