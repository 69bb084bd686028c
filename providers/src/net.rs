//! Network rules shared by every provider.

/// Whether `host` is this machine for the purpose of allowing plain `http://` without opting
/// in: an IP loopback literal (`127.0.0.0/8`, `::1`) or exactly `localhost`. Not
/// `*.localhost`: RFC 6761 asks resolvers to answer those with loopback, but many (glibc with
/// a DNS server that does not) send them to the network, where anyone may answer. The same
/// rule for the Vault address, the GitHub OIDC URL and the AWS endpoint.
pub fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

/// How a refused plain `http://` address says where `allow_http = true` would go, before the
/// caller knows the provider: [`place_allow_http`] replaces it with the provider's table.
pub const ALLOW_HTTP_SOMEWHERE: &str = "in the provider's table";

/// The refusal of a plain `http://` address that is not loopback (Vault's address, an AWS
/// endpoint).
pub fn plain_http_refused() -> String {
    format!(
        "plain http:// is only allowed to a loopback address: use https://, or set \
         allow_http = true {ALLOW_HTTP_SOMEWHERE} if the network path is trusted"
    )
}

/// Names the table `allow_http` belongs in: `[providers.NAME]`; for a provider that may have no
/// table (a built-in scheme used as is, an address from the environment), also how to add it.
pub fn place_allow_http(message: &str, name: &str, kind: &str, declared: bool) -> String {
    let place = if declared {
        format!("in [providers.{name}]")
    } else {
        format!(
            "in a [providers.{name}] table with kind = \"{kind}\" (add it if the config has none)"
        )
    };
    message.replace(ALLOW_HTTP_SOMEWHERE, &place)
}

/// [`is_loopback`] for a whole URL (false without a host).
pub fn is_loopback_url(url: &url::Url) -> bool {
    url.host().is_some_and(|h| is_loopback(&h))
}

/// Whether two endpoint URLs name the same server and path (scheme, host, port, path without
/// its trailing `/`). Unparseable URLs are never the same.
pub fn same_endpoint(a: &str, b: &str) -> bool {
    match (url::Url::parse(a.trim()), url::Url::parse(b.trim())) {
        (Ok(a), Ok(b)) => {
            a.origin() == b.origin()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        _ => false,
    }
}

/// An address as it may be shown: scheme, host, port and path, never user info or a query.
pub fn show_origin(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(u) => format!(
            "{}{}",
            u.origin().ascii_serialization(),
            u.path().trim_end_matches('/')
        ),
        Err(_) => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_compare_by_origin_and_path() {
        assert!(same_endpoint(
            "http://127.0.0.1:8200/",
            "http://127.0.0.1:8200"
        ));
        assert!(same_endpoint(
            "https://v.example.com",
            "https://V.example.com:443/"
        ));
        assert!(!same_endpoint(
            "http://127.0.0.1:8200",
            "http://127.0.0.1:8201"
        ));
        assert!(!same_endpoint(
            "http://127.0.0.1:8200",
            "https://127.0.0.1:8200"
        ));
        assert!(!same_endpoint("x", "x"));
        assert_eq!(
            show_origin("https://u:p@h.example.com:8200/a/?q=1"),
            "https://h.example.com:8200/a"
        );
    }

    #[test]
    fn the_allow_http_hint_names_the_table() {
        let m = plain_http_refused();
        assert_eq!(
            place_allow_http(&m, "vault", "vault", true),
            "plain http:// is only allowed to a loopback address: use https://, or set \
             allow_http = true in [providers.vault] if the network path is trusted"
        );
        assert!(place_allow_http(&m, "aws-sm", "aws-sm", false).contains(
            "allow_http = true in a [providers.aws-sm] table with kind = \"aws-sm\" (add it"
        ));
    }

    #[test]
    fn only_ip_loopback_literals_and_exactly_localhost() {
        for (url, local) in [
            ("http://127.0.0.1:1", true),
            ("http://127.1.2.3", true),
            ("http://[::1]:8200", true),
            ("http://LOCALHOST", true),
            ("http://localhost:8200", true),
            ("http://vault.localhost", false),
            ("http://localhost.", false),
            ("http://a.b.localhost", false),
            ("http://10.0.0.1", false),
            ("http://[::ffff:127.0.0.1]", false),
            ("http://vault", false),
            ("http://localhost.example.com", false),
        ] {
            let u = url::Url::parse(url).unwrap();
            assert_eq!(is_loopback_url(&u), local, "{url}");
        }
    }
}
