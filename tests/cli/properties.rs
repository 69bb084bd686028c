//! Property tests (proptest) of the library's parsers and writers, through its public API:
//! reference parsing, instance URL normalisation, the JSON cme gets (`cme_config::render`,
//! `render_product`), and the output mask's streaming.
//!
//! Failures are not persisted to files (the tree stays clean); proptest prints the minimal
//! failing input instead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use secrecy::SecretString;
use serde_json::{Map, Value};

use cme_exec::child::mask::Masker;
use cme_exec::cme_config::{self, BaseConfig};
use cme_exec::config::{normalise_url, Field, Product};
use cme_exec::resolve::{Auth, InstanceAuth, Origin, Value as Resolved};
use cme_exec_providers::reference::{Key, Reference};

fn config() -> Config {
    Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------------

/// Percent-encodes every byte but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text for one part of a reference: any character but controls, weighted towards the ones
/// with a meaning in references.
fn part() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            3 => proptest::char::range('a', 'z'),
            1 => proptest::sample::select(vec!['/', '?', '#', '&', '=', '%', ' ', '.', '~', '@', ':', '+', '"', '\\']),
            1 => any::<char>().prop_filter("no control characters", |c| !c.is_control()),
        ],
        1..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Strings that look like references: a scheme, separators, and pieces that include escapes,
/// `%2F`, dots and reserved characters.
fn reference_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9]{1,6}",
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2F".to_owned()),
        Just("%2f".to_owned()),
        Just("%2e".to_owned()),
        Just("%00".to_owned()),
        Just("%zz".to_owned()),
        Just("%".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("&".to_owned()),
        Just("=".to_owned()),
        Just("~".to_owned()),
        Just(" ".to_owned()),
        Just("é".to_owned()),
        Just("\u{0}".to_owned()),
    ];
    (
        "[a-zA-Z][a-zA-Z0-9+.-]{0,6}",
        prop_oneof![Just("://"), Just(":")],
        vec(piece, 0..14),
    )
        .prop_map(|(scheme, sep, pieces)| format!("{scheme}{sep}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(config())]

    /// Any string at all: parsing never panics, and a parsed reference prints as written and
    /// parses again to the same reference.
    #[test]
    fn reference_parse_never_panics_and_display_round_trips(raw in prop_oneof![any::<String>(), reference_like()]) {
        if let Ok(r) = Reference::parse(&raw) {
            prop_assert_eq!(r.to_string(), raw.clone());
            prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
        }
    }

    /// A reference composed from parts (each percent-encoded as needed) parses back to exactly
    /// those parts: scheme (lower-cased), location, sorted parameters, key.
    #[test]
    fn composed_references_parse_to_their_parts(
        scheme in "[a-zA-Z][a-zA-Z0-9+.-]{0,6}",
        authority in any::<bool>(),
        segments in vec(part().prop_filter("a segment of its own", |s| !s.contains('/') && s != "." && s != ".."), 1..4),
        params in btree_map(part(), part(), 0..3),
        key in proptest::option::of(part().prop_filter("a valid key", |k| !k.starts_with('/') || !k.contains('~'))),
    ) {
        let mut raw = format!("{scheme}{}", if authority { "://" } else { ":" });
        raw.push_str(&segments.iter().map(|s| encode(s)).collect::<Vec<_>>().join("/"));
        if !params.is_empty() {
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            raw.push('?');
            raw.push_str(&query.join("&"));
        }
        if let Some(k) = &key {
            raw.push('#');
            raw.push_str(&encode(k));
        }
        let r = Reference::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw:?}: {e}")))?;
        prop_assert_eq!(&r.document.scheme, &scheme.to_ascii_lowercase());
        prop_assert_eq!(r.document.has_authority, authority);
        prop_assert_eq!(&r.document.location, &segments.join("/"));
        let expected: Vec<(String, String)> = params.into_iter().collect();
        prop_assert_eq!(&r.document.params, &expected);
        let expected_key = key.map(|k| if k.starts_with('/') { Key::Pointer(k) } else { Key::Plain(k) });
        prop_assert_eq!(r.key, expected_key);
    }

    /// A document whose parts need no escaping prints as a reference that parses back to it.
    #[test]
    fn plain_documents_display_as_references_that_parse_back(
        scheme in "[a-z][a-z0-9]{0,6}",
        authority in any::<bool>(),
        segments in vec("[a-z0-9_-]{1,8}", 1..4),
        params in btree_map("[a-z]{1,5}", "[a-z0-9]{1,5}", 0..3),
    ) {
        let mut raw = format!("{scheme}{}{}", if authority { "://" } else { ":" }, segments.join("/"));
        if !params.is_empty() {
            raw.push('?');
            raw.push_str(&params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
        }
        let r = Reference::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw:?}: {e}")))?;
        let again = Reference::parse(&r.document.to_string())
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", r.document)))?;
        prop_assert_eq!(again.document, r.document);
    }

    /// No reference that parses has a `.` or `..` component in its decoded location, however
    /// the dots and slashes are escaped (`a%2F..%2Fb` decodes to `a/../b`).
    #[test]
    fn parsed_locations_have_no_dot_segments(raw in reference_like()) {
        if let Ok(r) = Reference::parse(&raw) {
            let components: Vec<&str> = r.document.location.split('/').collect();
            prop_assert!(
                !components.iter().any(|c| *c == "." || *c == ".."),
                "{:?} parsed to the location {:?}", raw, r.document.location
            );
        }
    }

    /// A malformed reference's error never repeats the text it was given (a secret pasted where
    /// a reference belongs), whatever part of the reference the text sits in.
    #[test]
    fn parse_errors_never_contain_the_input(
        token in "[A-Z0-9]{12,16}",
        template in proptest::sample::select(vec![
            "{T}",
            "{T}{T}",
            "1{T}://a",
            "x://{T}%zz",
            "x://{T} y",
            "x://{T}/../a",
            "x://a/{T}%00",
            "x://{T}%ff",
            "x://{T}#",
            "x://a#/{T}~2",
            "x://a?{T}",
            "x://a?k={T}&k={T}",
            "x://a?{T}=",
            "x://a?{T}=1&{T}=2",
            "x://a?{T}&b=1",
        ]),
    ) {
        let raw = template.replace("{T}", &token);
        match Reference::parse(&raw) {
            Ok(_) => prop_assert!(false, "{:?} should not parse", raw),
            Err(e) => prop_assert!(!e.0.contains(&token), "the error for {:?} repeats it: {}", raw, e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Instance URLs
// ---------------------------------------------------------------------------------------------

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", 1..4).prop_map(|labels| labels.join(".")),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[::1]".to_owned()),
        Just("[2001:DB8::A]".to_owned()),
        Just("bücher.example".to_owned()),
    ]
}

fn instance_url() -> impl Strategy<Value = (String, Option<String>)> {
    (
        proptest::sample::select(vec!["http", "https", "HTTPS", "Http"]),
        proptest::option::of(("[a-z]{1,6}", proptest::option::of("[A-Za-z0-9]{12,16}"))),
        host(),
        proptest::option::of(prop_oneof![Just(80u16), Just(443u16), 1u16..=65535,]),
        vec(
            prop_oneof![
                "[a-zA-Z0-9._~-]{1,8}",
                Just("".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e%2E".to_owned()),
                Just("a%20b".to_owned()),
                Just("é".to_owned()),
                Just("wiki".to_owned()),
                Just("@".to_owned()),
            ],
            0..4,
        ),
        "/{0,3}",
    )
        .prop_map(|(scheme, userinfo, host, port, path, trailing)| {
            let (info, password) = match userinfo {
                None => (String::new(), None),
                Some((user, None)) => (format!("{user}@"), None),
                Some((user, Some(pw))) => (format!("{user}:{pw}@"), Some(pw)),
            };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{}", path.join("/"))
            };
            (
                format!("{scheme}://{info}{host}{port}{path}{trailing}"),
                password,
            )
        })
}

/// Checks the promises of one normalisation result.
fn check_normalised(
    product: Product,
    raw: &str,
    result: &Result<String, String>,
) -> Result<(), TestCaseError> {
    if let Ok(n) = result {
        let again = normalise_url(product, n);
        prop_assert_eq!(again.as_ref(), Ok(n), "not idempotent for {:?}", raw);
        let url = url::Url::parse(n).map_err(|e| TestCaseError::fail(format!("{n:?}: {e}")))?;
        prop_assert!(
            url.username().is_empty() && url.password().is_none(),
            "{:?} has user info",
            n
        );
        prop_assert!(!n.ends_with('/'), "{:?} ends with a slash", n);
        prop_assert!(url.query().is_none() && url.fragment().is_none());
        if let Some(host) = url.host_str() {
            prop_assert_eq!(host.to_owned(), host.to_lowercase());
        }
        let default = match url.scheme() {
            "http" => 80,
            _ => 443,
        };
        prop_assert!(
            url.port() != Some(default),
            "{:?} keeps the default port",
            n
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Generated instance URLs: normalisation is idempotent, never keeps user info (a URL with
    /// user info is an error that does not repeat the password), never ends with `/` and never
    /// keeps a default port.
    #[test]
    fn normalise_url_is_idempotent_and_drops_nothing_secret(
        (raw, password) in instance_url(),
        jira in any::<bool>(),
    ) {
        let product = if jira { Product::Jira } else { Product::Confluence };
        let result = normalise_url(product, &raw);
        check_normalised(product, &raw, &result)?;
        if raw.contains('@') && raw.split("://").nth(1).is_some_and(|rest| rest.split('/').next().is_some_and(|a| a.contains('@'))) {
            prop_assert!(result.is_err(), "{:?} holds user info and was accepted", raw);
        }
        if let (Err(e), Some(pw)) = (&result, password) {
            prop_assert!(!e.contains(&pw), "the error for {:?} repeats the password: {}", raw, e);
        }
    }

    /// Any string at all: no panic, and whatever is accepted keeps the same promises.
    #[test]
    fn normalise_url_never_panics(raw in prop_oneof![any::<String>(), "[a-zA-Z]{1,5}://[ -~]{0,30}"]) {
        for product in [Product::Confluence, Product::Jira] {
            let result = normalise_url(product, &raw);
            check_normalised(product, &raw, &result)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON writer
// ---------------------------------------------------------------------------------------------

type Instances = BTreeMap<(bool, String), BTreeMap<usize, String>>;

fn instances() -> impl Strategy<Value = Instances> {
    btree_map(
        (any::<bool>(), any::<String>()),
        btree_map(0usize..5, any::<String>(), 1..=5),
        1..4,
    )
}

fn auth_of(instances: &Instances) -> Auth {
    let mut auth = Auth::default();
    for ((jira, url), fields) in instances {
        let product = if *jira {
            Product::Jira
        } else {
            Product::Confluence
        };
        let mut resolved = BTreeMap::new();
        for (index, value) in fields {
            resolved.insert(
                Field::ALL[*index],
                Resolved {
                    secret: SecretString::from(value.clone()),
                    origin: Origin::Literal,
                },
            );
        }
        auth.instances
            .insert((product, url.clone()), InstanceAuth { fields: resolved });
    }
    auth
}

/// `{url: {field: value}}` of one product, as the instances say it should be.
fn expected_product(instances: &Instances, jira: bool) -> Value {
    let mut out = Map::new();
    for ((j, url), fields) in instances {
        if *j != jira {
            continue;
        }
        let entry: Map<String, Value> = fields
            .iter()
            .map(|(i, v)| (Field::ALL[*i].name().to_owned(), Value::String(v.clone())))
            .collect();
        out.insert(url.clone(), Value::Object(entry));
    }
    Value::Object(out)
}

proptest! {
    #![proptest_config(config())]

    /// Any strings (quotes, backslashes, braces, control characters, NUL, any Unicode) as field
    /// values and instance keys, over a base config with any other settings: the JSON written
    /// for cme parses back to exactly the base settings and exactly these credentials.
    #[test]
    fn render_round_trips_any_value(
        instances in instances(),
        base in btree_map(any::<String>().prop_filter("not auth", |k| k != "auth"), any::<String>(), 0..4),
    ) {
        let doc: Map<String, Value> = base.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let base_config = BaseConfig {
            path: PathBuf::from("/nonexistent/app_data.json"),
            exists: false,
            doc,
            mode: None,
            size_hint: 0,
            origin: None,
        };
        let auth = auth_of(&instances);
        let bytes = cme_config::render(&base_config, &auth);
        let parsed: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
        let top = parsed.as_object().expect("an object");
        prop_assert_eq!(top.len(), base.len() + 1, "the base settings and auth, nothing else");
        for (k, v) in &base {
            prop_assert_eq!(&top[k], &Value::String(v.clone()));
        }
        let auth_json = top["auth"].as_object().expect("auth is an object");
        prop_assert_eq!(auth_json.len(), 2, "auth holds confluence and jira only");
        prop_assert_eq!(&auth_json["confluence"], &expected_product(&instances, false));
        prop_assert_eq!(&auth_json["jira"], &expected_product(&instances, true));

        for (product, jira) in [(Product::Confluence, false), (Product::Jira, true)] {
            let env = cme_config::render_product(&auth, product);
            let expected = expected_product(&instances, jira);
            match env {
                None => prop_assert_eq!(expected, Value::Object(Map::new())),
                Some(bytes) => {
                    let parsed: Value = serde_json::from_slice(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                    prop_assert_eq!(parsed, expected);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The output mask
// ---------------------------------------------------------------------------------------------

/// Leftmost-longest replacement of `patterns` by `***`.
fn reference_mask(input: &[u8], patterns: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match patterns
            .iter()
            .filter(|p| input[i..].starts_with(p))
            .map(Vec::len)
            .max()
        {
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

proptest! {
    #![proptest_config(config())]

    /// Secrets made of few letters (so that they overlap and prefix each other) in output made of
    /// the same letters, fed in arbitrary pieces: the result does not depend on the pieces and is
    /// the leftmost-longest replacement of every secret.
    #[test]
    fn mask_does_not_depend_on_how_output_is_split(
        secrets in vec("[ab][abc]{3,7}", 1..4),
        input in vec(prop_oneof!["[abc\n]{0,4}", "[ab][abc]{3,7}"], 0..12).prop_map(|parts| parts.concat()),
        cuts in vec(1usize..9, 0..40),
    ) {
        let masker = Masker::new(secrets.iter().map(|s| s.as_bytes()))
            .ok_or_else(|| TestCaseError::fail("secrets of 4+ bytes give a mask"))?;
        let mut stream = masker.stream();
        let mut out = Vec::new();
        let bytes = input.as_bytes();
        let mut at = 0;
        for cut in cuts.iter().cycle().take(bytes.len() + 1) {
            if at >= bytes.len() {
                break;
            }
            let end = (at + cut).min(bytes.len());
            stream.feed(&bytes[at..end], &mut out);
            at = end;
        }
        stream.feed(&bytes[at..], &mut out);
        stream.finish(&mut out);
        let patterns: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        prop_assert_eq!(
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&reference_mask(bytes, &patterns)).into_owned()
        );
    }
}
