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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    cloud_id: Option<String>,
    stop: AtomicBool,
}

pub struct ConfluenceStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Confluence stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            cloud_id,
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name(format!("stand-in {addr}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&accept_shared);
                    std::thread::spawn(move || serve(stream, &shared));
                }
            })
            .expect("spawn the stand-in's accept thread");
        ConfluenceStandIn {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
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

impl Drop for ConfluenceStandIn {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // the drop's wake-up connection, or a client that gave up
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let content_length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    if content_length > 0 {
        let _ = std::io::copy(
            &mut (&mut reader).take(content_length.min(1 << 20)),
            &mut std::io::sink(),
        );
    }

    let (host, path) = split_target(&target, &headers);
    let recorded = Recorded {
        method: method.clone(),
        target,
        path,
        host,
        headers,
    };
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
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// `(host, origin-form path)` of a request target in origin form or absolute form.
fn split_target(target: &str, headers: &[(String, String)]) -> (String, String) {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            return (authority.to_owned(), path.to_owned());
        }
    }
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (host, target.to_owned())
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
