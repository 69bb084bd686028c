//! A tiny Confluence stand-in: an HTTP/1.1 server on `127.0.0.1:0` that records every request and
//! answers just what cme needs to get past its connection check.
//!
//! - `GET .../rest/api/space?limit=1` (the first request of every export, `get_all_spaces(limit=1)`
//!   in atlassian-python-api, which returns the decoded JSON as is): 200 with an empty page of
//!   results;
//! - `GET .../_edge/tenant_info` (cme's Cloud ID probe for `*.atlassian.net` hosts): 200 with
//!   `{"cloudId": ...}` when one was configured, else 404 so cme keeps talking to the host itself;
//! - anything else: 404 with Confluence's error shape (`{"statusCode":404,"message":...}`); for the
//!   page itself cme then logs "Could not access page" and still exits 0 (see cme-facts.md).
//!
//! It also serves as a plain HTTP proxy: a request line with an absolute URI
//! (`GET http://x.atlassian.net/_edge/tenant_info HTTP/1.1`) is answered the same way, so a test
//! can set `HTTP_PROXY=http://127.0.0.1:PORT` and make cme talk to a pretend `http://x.atlassian.net`.
//! `CONNECT` (an `https://` URL through `HTTPS_PROXY`) is recorded and refused with 403.
//!
//! One thread per connection, `Connection: close` after each response; stops on drop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{self, Request, Server};

/// One request as the stand-in saw it. No `Debug`: its headers hold credentials (print
/// [`ConfluenceStandIn::summary`] instead).
#[derive(Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent: `/rest/api/space?limit=1` or `http://host/...` through a proxy.
    pub target: String,
    /// The target without scheme and authority: always starts with `/`, query included.
    pub path: String,
    /// The authority from an absolute target, else the `Host` header.
    pub host: String,
    /// All headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

impl Recorded {
    pub(super) fn of(request: Request) -> Recorded {
        let (host, path) = request.host_and_path();
        Recorded {
            method: request.method,
            target: request.target,
            path,
            host,
            headers: request.headers,
        }
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    cloud_id: Option<String>,
}

pub struct ConfluenceStandIn {
    server: Server,
    shared: Arc<Shared>,
}

impl ConfluenceStandIn {
    /// Starts a stand-in whose `_edge/tenant_info` answers 404 (no Cloud ID).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a stand-in whose `_edge/tenant_info` answers `{"cloudId": cloud_id}`.
    pub fn with_cloud_id(cloud_id: &str) -> Self {
        Self::start_with(Some(cloud_id.to_owned()))
    }

    fn start_with(cloud_id: Option<String>) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            cloud_id,
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("stand-in", move |stream, _| serve(&stream, &serving));
        ConfluenceStandIn { server, shared }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// `http://127.0.0.1:PORT`, for `HTTP_PROXY`.
    pub fn proxy_url(&self) -> String {
        self.base_url()
    }

    /// A Cloud-style page URL on this stand-in.
    pub fn page_url(&self, page_id: u64) -> String {
        format!("{}/wiki/spaces/ENG/pages/{page_id}", self.base_url())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `Authorization` header of every request that had one.
    pub fn authorization_headers(&self) -> Vec<String> {
        self.header_values("authorization")
    }

    /// The `Cookie` header of every request that had one.
    pub fn cookie_headers(&self) -> Vec<String> {
        self.header_values("cookie")
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header(name).map(str::to_owned))
            .collect()
    }

    /// A one-line-per-request summary (method, target, header names only): safe to print.
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

fn serve(stream: &std::net::TcpStream, shared: &Shared) {
    http::set_timeouts(stream, Duration::from_secs(10));
    // None: the drop's wake-up connection, or a client that gave up.
    let Some(request) = http::read_request(stream, 1 << 20) else {
        return;
    };
    let recorded = Recorded::of(request);
    let (status, body) = answer(&recorded, shared.cloud_id.as_deref());
    // Record before answering: once the client has the answer, the request is in the list.
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(recorded);
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        _ => "Not Found",
    };
    http::respond(
        stream,
        status,
        reason,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
}

fn answer(request: &Recorded, cloud_id: Option<&str>) -> (u16, String) {
    if request.method == "CONNECT" {
        return (403, r#"{"message":"CONNECT is not supported"}"#.to_owned());
    }
    let path = request.path_only().trim_end_matches('/');
    if request.method == "GET" && path.ends_with("/rest/api/space") {
        return (
            200,
            r#"{"results":[],"start":0,"limit":1,"size":0,"_links":{}}"#.to_owned(),
        );
    }
    if request.method == "GET" && path.ends_with("/_edge/tenant_info") {
        if let Some(id) = cloud_id {
            return (200, serde_json::json!({ "cloudId": id }).to_string());
        }
    }
    (
        404,
        r#"{"statusCode":404,"message":"No content found (cme-exec test stand-in)"}"#.to_owned(),
    )
}
