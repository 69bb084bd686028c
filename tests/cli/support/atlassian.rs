//! An Atlassian stand-in for the live check (`check --live`, `run --check-live`): an HTTP/1.1
//! server on `127.0.0.1:0` that behaves like Confluence and Jira for the calls cme-exec and cme
//! make, and records every request with its headers.
//!
//! - `GET .../rest/api/user/current` (Confluence): with an accepted credential, 200
//!   `{"type":"known","accountId":...,"displayName":...}`; with none, 200 `{"type":"anonymous"}`
//!   (as Confluence Cloud answers anonymous users); with another, 401.
//! - `GET .../rest/api/2/myself` (Jira): 200 `{"accountId","displayName"}` or 401 (also anonymous).
//! - `GET .../rest/api/space` (cme's first call): 200 with an empty page when accepted, else 401.
//! - `GET .../_edge/tenant_info`: `{"cloudId": ...}` when one was given, else 404.
//! - [`Mode`] replaces the answer to the authenticated calls: a 403 with Atlassian's CAPTCHA
//!   header, a 403 without it (a scoped token without the scope), 410, a redirect to a login page,
//!   or an anonymous answer whatever was sent.
//! - An absolute request target (`GET http://x.atlassian.net/... HTTP/1.1`) is answered the same
//!   way, so it also serves as an `HTTP_PROXY`; `CONNECT` is recorded and refused with 403.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{self, Server};
use super::standin::Recorded;

/// How the authenticated calls are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Known credential: 200; none: anonymous (Confluence) or 401 (Jira); another: 401.
    Normal,
    /// 403 with `X-Seraph-LoginReason: AUTHENTICATION_DENIED` (CAPTCHA after failed logins).
    Captcha,
    /// 403 without it: a scoped token without the scope.
    Forbidden,
    /// 410 Gone: a site that is no more (or a wrong gateway path).
    Gone,
    /// 302 to `/login.action?os_destination=...` (expired SSO session cookies).
    LoginRedirect,
    /// 200 anonymous whatever was sent (a Confluence that did not take the credential).
    Anonymous,
}

/// No `Debug`: it holds the accepted credentials.
pub struct Behaviour {
    /// `(header name, exact value)` pairs that authenticate, e.g. `("authorization", "Basic ...")`.
    pub accepted: Vec<(String, String)>,
    pub account_id: String,
    pub display_name: String,
    pub cloud_id: Option<String>,
    pub mode: Mode,
}

impl Behaviour {
    pub fn accepting(name: &str, value: &str) -> Self {
        Behaviour {
            accepted: vec![(name.to_owned(), value.to_owned())],
            account_id: "5b10a2844c20165700ede21g".to_owned(),
            display_name: "Jane Export".to_owned(),
            cloud_id: None,
            mode: Mode::Normal,
        }
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    pub fn cloud_id(mut self, id: &str) -> Self {
        self.cloud_id = Some(id.to_owned());
        self
    }

    pub fn also_accepting(mut self, name: &str, value: &str) -> Self {
        self.accepted.push((name.to_owned(), value.to_owned()));
        self
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    behaviour: Behaviour,
}

pub struct AtlassianStandIn {
    server: Server,
    shared: Arc<Shared>,
}

impl AtlassianStandIn {
    pub fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            behaviour,
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("atlassian stand-in", move |stream, _| {
            serve(&stream, &serving)
        });
        AtlassianStandIn { server, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The requests whose path (without query) ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path_only().ends_with(suffix))
            .collect()
    }

    /// Method, target and header names of every request: safe to print.
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
                format!("{} {} [{}]", r.method, r.target, names.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn serve(stream: &TcpStream, shared: &Shared) {
    http::set_timeouts(stream, Duration::from_secs(10));
    let Some(request) = http::read_request(stream, 1 << 20) else {
        return;
    };
    let recorded = Recorded::of(request);
    let (status, extra, body) = answer(&recorded, &shared.behaviour);
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(recorded);
    let reason = match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        410 => "Gone",
        _ => "Not Found",
    };
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
    http::respond(stream, status, reason, &headers, body.as_bytes());
}

enum Who {
    Known,
    Anonymous,
    Refused,
}

fn who(request: &Recorded, b: &Behaviour) -> Who {
    let sent: Vec<&(String, String)> = request
        .headers
        .iter()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("cookie")
        })
        .collect();
    if sent.is_empty() {
        return Who::Anonymous;
    }
    let known = sent.iter().any(|(n, v)| {
        b.accepted
            .iter()
            .any(|(an, av)| an.eq_ignore_ascii_case(n) && av == v)
    });
    if known {
        Who::Known
    } else {
        Who::Refused
    }
}

type Response = (u16, Vec<(&'static str, String)>, String);

fn answer(request: &Recorded, b: &Behaviour) -> Response {
    let none = Vec::new;
    if request.method == "CONNECT" {
        return (
            403,
            none(),
            r#"{"message":"CONNECT is not supported"}"#.into(),
        );
    }
    let path = request.path_only().trim_end_matches('/');
    if path.ends_with("/_edge/tenant_info") {
        return match &b.cloud_id {
            Some(id) => (
                200,
                none(),
                serde_json::json!({ "cloudId": id }).to_string(),
            ),
            None => (404, none(), r#"{"message":"not a cloud site"}"#.into()),
        };
    }
    let confluence_user = path.ends_with("/rest/api/user/current");
    let jira_myself = path.ends_with("/rest/api/2/myself");
    let space = path.ends_with("/rest/api/space");
    if !(confluence_user || jira_myself || space) {
        return (
            404,
            none(),
            r#"{"statusCode":404,"message":"No content found"}"#.into(),
        );
    }
    let anonymous_body = r#"{"type":"anonymous","displayName":"Anonymous","_links":{}}"#;
    match b.mode {
        Mode::Captcha => {
            return (
                403,
                vec![
                    ("X-Seraph-LoginReason", "AUTHENTICATION_DENIED".into()),
                    (
                        "X-Authentication-Denied-Reason",
                        "CAPTCHA_CHALLENGE; login-url=https://id.atlassian.com/login".into(),
                    ),
                ],
                String::new(),
            )
        }
        Mode::Forbidden => {
            return (
                403,
                none(),
                r#"{"code":403,"message":"Unauthorized; scope does not match"}"#.into(),
            )
        }
        Mode::Gone => {
            return (
                410,
                none(),
                r#"{"message":"Site temporarily unavailable"}"#.into(),
            )
        }
        Mode::LoginRedirect => {
            return (
                302,
                vec![(
                    "Location",
                    format!(
                        "http://{}/login.action?os_destination=%2Frest%2Fapi",
                        request.host
                    ),
                )],
                String::new(),
            )
        }
        Mode::Anonymous if confluence_user => return (200, none(), anonymous_body.into()),
        _ => {}
    }
    match who(request, b) {
        Who::Known if confluence_user => (
            200,
            none(),
            serde_json::json!({
                "type": "known",
                "accountId": b.account_id,
                "accountType": "atlassian",
                "displayName": b.display_name,
            })
            .to_string(),
        ),
        Who::Known if jira_myself => (
            200,
            none(),
            serde_json::json!({
                "accountId": b.account_id,
                "displayName": b.display_name,
                "active": true,
            })
            .to_string(),
        ),
        Who::Known => (
            200,
            none(),
            r#"{"results":[],"start":0,"limit":1,"size":0,"_links":{}}"#.into(),
        ),
        Who::Anonymous if confluence_user => (200, none(), anonymous_body.into()),
        _ => (
            401,
            vec![("WWW-Authenticate", "Basic realm=\"protected\"".into())],
            r#"{"message":"Client must be authenticated to access this resource."}"#.into(),
        ),
    }
}
