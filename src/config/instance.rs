//! Instances: which product, which URL, which fields.

use std::fmt;

/// The two products cme keeps credentials for: `auth.confluence` and `auth.jira`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    Confluence,
    Jira,
}

impl Product {
    pub const ALL: [Product; 2] = [Product::Confluence, Product::Jira];

    pub fn name(self) -> &'static str {
        match self {
            Product::Confluence => "confluence",
            Product::Jira => "jira",
        }
    }

    pub fn from_name(name: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The five fields of one of cme's `auth` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Username,
    ApiToken,
    Pat,
    SessionCookies,
    CloudId,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Username,
        Field::ApiToken,
        Field::Pat,
        Field::SessionCookies,
        Field::CloudId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Username => "username",
            Field::ApiToken => "api_token",
            Field::Pat => "pat",
            Field::SessionCookies => "session_cookies",
            Field::CloudId => "cloud_id",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// cme treats these four as secrets (pydantic `SecretStr`). They must come from a
    /// reference, are never written back, and are what `--mask` hides.
    pub fn is_secret(self) -> bool {
        !matches!(self, Field::CloudId)
    }

    /// Whether the config may hold the value itself instead of a reference. A user name or a
    /// cloud id is not what an attacker needs; tokens, PATs and cookies always come from a store.
    pub fn allows_literal(self) -> bool {
        matches!(self, Field::Username | Field::CloudId)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path segments that start a Confluence route; cme cuts an instance's base URL before
/// the first of them, so a key that contains one can never match a page URL.
const CONFLUENCE_ROUTE_SEGMENTS: [&str; 6] =
    ["wiki", "display", "spaces", "rest", "pages", "plugins"];

/// An instance URL as it may be shown: user info (which may hold a password) replaced by `***`.
/// Also without a scheme (`bob:pw@x.atlassian.net`, which is refused for its missing scheme
/// but still named in the message).
pub fn redact_user_info(raw: &str) -> String {
    let (prefix, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{prefix}***@{}", &rest[at + 1..]),
        None => raw.to_owned(),
    }
}

/// An instance's name as a store document or file name (`import` and `init` name documents
/// alike): host, port and path, anything else as `-`: `company.atlassian.net`,
/// `wiki.example.org-8443-confluence`.
pub fn slug(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut s: String = rest
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_owned()
}

/// Normalises an instance URL the way cme matches it: `scheme://host[:port][/context]`,
/// lower-case host, no default port, no trailing slash.
///
/// Errors never repeat the input: a URL with user info may hold a password.
pub fn normalise_url(product: Product, raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| match e {
        // `company.atlassian.net`: the most common first mistake, and the url crate's words for
        // it ("relative URL without a base") do not say what to write.
        url::ParseError::RelativeUrlWithoutBase => {
            let example = redact_user_info(raw);
            let example = example.trim_start_matches('/');
            format!(
                "an instance key must start with https:// (or http://): write \"https://{example}\""
            )
        }
        e => format!("not a valid URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the URL must start with https:// (or http://)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds user info (`user:password@`): credentials belong in the fields, \
             never in the URL"
                .into(),
        );
    }
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query (`?`) or fragment (`#`)".into());
    }
    let path = url.path().trim_end_matches('/');
    if product == Product::Confluence {
        if let Some(seg) = path
            .split('/')
            .find(|s| CONFLUENCE_ROUTE_SEGMENTS.contains(s))
        {
            let base = path.split(&format!("/{seg}")).next().unwrap_or("");
            return Err(format!(
                "the URL contains the route segment `/{seg}`: cme looks credentials up by the \
                 instance's base URL, so write {}://{}{}{base}",
                url.scheme(),
                host,
                url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            ));
        }
    }
    let mut out = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(path);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> Result<String, String> {
        normalise_url(Product::Confluence, raw)
    }

    #[test]
    fn normalises_like_cme() {
        assert_eq!(
            n("https://Company.Atlassian.NET/").unwrap(),
            "https://company.atlassian.net"
        );
        assert_eq!(
            n("https://x.example.com:443").unwrap(),
            "https://x.example.com"
        );
        assert_eq!(
            n("http://x.example.com:80/").unwrap(),
            "http://x.example.com"
        );
        assert_eq!(
            n("https://x.example.com:8443//").unwrap(),
            "https://x.example.com:8443"
        );
        assert_eq!(
            n("https://x.example.com/confluence/").unwrap(),
            "https://x.example.com/confluence"
        );
        assert_eq!(n("http://127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000");
    }

    #[test]
    fn rejects_what_cme_would_never_match() {
        let secret = "pw-S3NT1NEL";
        let e = n(&format!("https://user:{secret}@x.example.com")).unwrap_err();
        assert!(e.contains("user info") && !e.contains(secret), "{e}");
        assert!(n("ftp://x").unwrap_err().contains("https://"));
        assert_eq!(
            n("x.example.com").unwrap_err(),
            "an instance key must start with https:// (or http://): write \"https://x.example.com\""
        );
        let e = n(&format!("{secret}@x.example.com/wiki-root")).unwrap_err();
        assert!(
            e.contains("write \"https://***@x.example.com/wiki-root\"") && !e.contains(secret),
            "{e}"
        );
        assert!(n("https://").unwrap_err().contains("not a valid URL"));
        assert!(n("https://x.example.com/?a=1")
            .unwrap_err()
            .contains("query"));
        let e = n("https://x.atlassian.net/wiki").unwrap_err();
        assert!(e.contains("write https://x.atlassian.net"), "{e}");
        let e = n("https://x.example.com/confluence/display/ENG").unwrap_err();
        assert!(e.contains("write https://x.example.com/confluence"), "{e}");
        // Jira has no such route segments.
        assert!(normalise_url(Product::Jira, "https://x.example.com/rest").is_ok());
    }

    #[test]
    fn user_info_is_redacted_for_display() {
        assert_eq!(
            redact_user_info("https://u:pw@x.example.com/a@b"),
            "https://***@x.example.com/a@b"
        );
        assert_eq!(
            redact_user_info("https://x.example.com"),
            "https://x.example.com"
        );
        assert_eq!(
            redact_user_info("bob:pw@x.example.com/a@b"),
            "***@x.example.com/a@b"
        );
    }

    #[test]
    fn fields() {
        assert_eq!(Field::from_name("api_token"), Some(Field::ApiToken));
        assert!(Field::ApiToken.is_secret() && !Field::CloudId.is_secret());
        assert!(Field::Username.allows_literal() && !Field::Pat.allows_literal());
    }
}
