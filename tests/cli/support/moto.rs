//! moto's server (AWS Secrets Manager, STS and IAM on one port) for the `aws-sm` tests, and a
//! counting, fault-injecting proxy to put in front of it.
//!
//! - [`Moto::start`] runs `.venv/bin/moto_server -H 127.0.0.1 -p PORT` on a kernel-assigned free
//!   port. Another process may take the port between our probe and moto's bind, so a start that
//!   fails to bind is retried on a new port, and the server counts as ours only when its own
//!   log says it is running on that port (a readiness probe alone could be answered by someone
//!   else's server). It is stopped (SIGTERM, then SIGKILL) on drop, and dies with the test
//!   thread that started it if the test process is killed (`PR_SET_PDEATHSIG`).
//! - The seeding calls ([`Moto::create_secret`], [`Moto::create_user`], ...) are plain HTTP
//!   requests written here, so the tests need no AWS SDK: moto does not check signatures until
//!   IAM is enforced ([`Moto::enforce_iam`]), and the seeding is done before that.
//! - [`MotoProxy`] forwards to moto and records the operation of every request
//!   (`X-Amz-Target`, or the query protocol's `Action`), so a test can count requests; it can
//!   also hang, or answer 503 a number of times before forwarding.
//! - The static test credentials are [`ACCESS_KEY_ID`] and a secret key the test chooses (a
//!   sentinel, so that every output is checked for it); [`Moto::aws_env`] gives the environment
//!   that points cme-exec at the server without ever touching the network or instance metadata.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{Server, Stop};
use super::Venv;

/// The access key id of the static test credentials (moto accepts any until IAM is enforced).
pub const ACCESS_KEY_ID: &str = "AKIACMEEXECTEST00001";
/// The region every test uses unless it says otherwise.
pub const REGION: &str = "us-east-1";
/// moto's account.
pub const ACCOUNT: &str = "123456789012";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running moto server.
pub struct Moto {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Moto {
    /// Starts moto on a free loopback port (retrying on another port when the bind fails).
    #[track_caller]
    pub fn start() -> Moto {
        let venv = Venv::get();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match Self::try_start(&venv.moto_server(), port) {
                Ok(moto) => return moto,
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!(
            "moto_server did not start after {START_ATTEMPTS} attempts:\n{}\nTo fix: run \
             `scripts/bootstrap-venv` (it installs moto into .venv) and check that \
             `.venv/bin/moto_server -H 127.0.0.1 -p 5000` runs",
            failures.join("\n")
        );
    }

    fn try_start(program: &std::path::Path, port: u16) -> Result<Moto, String> {
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            // Unbuffered, so the "Running on" line arrives as soon as it is written.
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let log = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut moto = Moto { child, port, log };
        let running = format!("Running on http://127.0.0.1:{port}");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = moto.log();
            if log.contains(&running) {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!("moto_server exited ({status}):\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {running:?} line within {READY_TIMEOUT:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Ours, by its own word; now wait until it answers.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, _)) = moto.http("GET", "/moto-api/data.json", &[], b"") {
                return Ok(moto);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer within {READY_TIMEOUT:?}:\n{}",
                    moto.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What moto printed so far (its request log names no secret: method, path and status).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many AWS API requests (`POST /`) moto has logged so far.
    pub fn api_requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"POST / "))
            .count()
    }

    /// The variables that point the SDK at `endpoint` with static credentials, region
    /// [`REGION`], and no instance-metadata lookups.
    pub fn aws_env(endpoint: &str, secret_access_key: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", secret_access_key),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    // -- plain HTTP --

    /// One HTTP/1.1 request to moto; `(status, body)`.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        http_request(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            method,
            path,
            headers,
            body,
        )
    }

    fn authorization(service: &str, region: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20240101/{region}/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000"
        )
    }

    /// A Secrets Manager call (JSON 1.1 protocol) in `region`; panics on an error answer.
    #[track_caller]
    pub fn secretsmanager_in(&self, region: &str, operation: &str, input: Value) -> Value {
        let target = format!("secretsmanager.{operation}");
        let auth = Self::authorization("secretsmanager", region);
        let body = input.to_string();
        let (status, answer) = self
            .http(
                "POST",
                "/",
                &[
                    ("X-Amz-Target", &target),
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Date", "20240101T000000Z"),
                    ("Authorization", &auth),
                ],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("moto {operation}: {e}"));
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 200, "moto {operation} answered {status}: {text}");
        serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("moto {operation}: {e}: {text}"))
    }

    #[track_caller]
    pub fn secretsmanager(&self, operation: &str, input: Value) -> Value {
        self.secretsmanager_in(REGION, operation, input)
    }

    /// Creates a secret with a `SecretString`; returns its ARN.
    #[track_caller]
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        self.create_secret_in(REGION, name, value)
    }

    #[track_caller]
    pub fn create_secret_in(&self, region: &str, name: &str, value: &str) -> String {
        let out = self.secretsmanager_in(
            region,
            "CreateSecret",
            json!({ "Name": name, "SecretString": value }),
        );
        out["ARN"]
            .as_str()
            .expect("CreateSecret returns an ARN")
            .to_owned()
    }

    /// Creates a secret with a `SecretBinary`; returns its ARN.
    #[track_caller]
    pub fn create_binary_secret(&self, name: &str, bytes: &[u8]) -> String {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let out = self.secretsmanager(
            "CreateSecret",
            json!({ "Name": name, "SecretBinary": encoded }),
        );
        out["ARN"]
            .as_str()
            .expect("CreateSecret returns an ARN")
            .to_owned()
    }

    /// Rotates by hand: a new AWSCURRENT version; the old one becomes AWSPREVIOUS. Returns the
    /// new version's id.
    #[track_caller]
    pub fn put_secret_value(&self, id: &str, value: &str) -> String {
        let out = self.secretsmanager(
            "PutSecretValue",
            json!({ "SecretId": id, "SecretString": value }),
        );
        out["VersionId"].as_str().expect("a VersionId").to_owned()
    }

    /// The version id of a secret's AWSCURRENT version.
    #[track_caller]
    pub fn current_version_id(&self, id: &str) -> String {
        let out = self.secretsmanager("DescribeSecret", json!({ "SecretId": id }));
        let versions = out["VersionIdsToStages"]
            .as_object()
            .expect("DescribeSecret returns VersionIdsToStages");
        versions
            .iter()
            .find(|(_, stages)| {
                stages
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s == "AWSCURRENT"))
            })
            .map(|(id, _)| id.clone())
            .expect("a version is AWSCURRENT")
    }

    /// Schedules a secret for deletion (the default 30-day recovery window).
    #[track_caller]
    pub fn delete_secret(&self, id: &str) {
        self.secretsmanager("DeleteSecret", json!({ "SecretId": id }));
    }

    /// An IAM call (query protocol); panics on an error answer; returns the XML.
    #[track_caller]
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push('&');
            body.push_str(&super::secrets::url_encode(k));
            body.push('=');
            body.push_str(&super::secrets::url_encode(v));
        }
        let auth = Self::authorization("iam", REGION);
        let (status, answer) = self
            .http(
                "POST",
                "/",
                &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    ),
                    ("X-Amz-Date", "20240101T000000Z"),
                    ("Authorization", &auth),
                ],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("moto IAM: {e}"));
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status, 200, "moto IAM {params:?} answered {status}: {text}");
        text
    }

    /// Creates an IAM user with an inline policy allowing `actions` on every resource; returns
    /// its `(access key id, secret access key)`.
    #[track_caller]
    pub fn create_user(&self, name: &str, actions: &[&str]) -> (String, String) {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }]
        })
        .to_string();
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "cme-exec-test"),
            ("PolicyDocument", &policy),
        ]);
        let xml = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        (
            xml_text(&xml, "AccessKeyId"),
            xml_text(&xml, "SecretAccessKey"),
        )
    }

    /// From now on moto checks every request's signature and IAM policy.
    #[track_caller]
    pub fn enforce_iam(&self) {
        let (status, body) = self
            .http(
                "POST",
                "/moto-api/reset-auth",
                &[("Content-Type", "text/plain")],
                b"0",
            )
            .expect("moto reset-auth");
        assert_eq!(
            status,
            200,
            "reset-auth: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now (the kernel's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The text of the first `<tag>...</tag>` in `xml`.
#[track_caller]
pub fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in the answer"))
        + open.len();
    let end = xml[start..].find(&close).expect("a closing tag") + start;
    xml[start..end].to_owned()
}

/// One HTTP/1.1 request with `Connection: close`; `(status, body)` (chunked bodies decoded).
pub fn http_request(
    addr: &SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut stream =
        TcpStream::connect_timeout(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let split = find(&response, b"\r\n\r\n").ok_or("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status in the answer")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = find(data, b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward every request.
    None,
    /// Read the request and never answer (until the proxy is dropped).
    Hang,
    /// Answer the first N requests with `503 Service Unavailable`, then forward.
    ServiceUnavailable(usize),
    /// Answer the first N requests with HTTP 400 `ThrottlingException` (AWS JSON 1.1), then
    /// forward (`usize::MAX`: a throttle that never stops).
    Throttle(usize),
}

struct ProxyShared {
    upstream: SocketAddr,
    fault: Fault,
    operations: Mutex<Vec<String>>,
    seen: AtomicUsize,
    answered_503: AtomicUsize,
    throttled: AtomicUsize,
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Serve several requests per connection (HTTP/1.1 keep-alive) instead of one.
    keep_alive: bool,
}

/// An HTTP proxy on a free loopback port in front of moto: records each request's operation,
/// optionally misbehaves. One request per connection (`Connection: close`). Stops on drop.
pub struct MotoProxy {
    server: Server,
    shared: Arc<ProxyShared>,
}

impl MotoProxy {
    pub fn start(upstream_port: u16, fault: Fault) -> MotoProxy {
        Self::start_with(upstream_port, fault, false)
    }

    /// Like [`MotoProxy::start`], but a connection serves request after request (HTTP/1.1
    /// keep-alive, as AWS's endpoints do), so a test can count the connections a run opens.
    pub fn keep_alive(upstream_port: u16, fault: Fault) -> MotoProxy {
        Self::start_with(upstream_port, fault, true)
    }

    fn start_with(upstream_port: u16, fault: Fault, keep_alive: bool) -> MotoProxy {
        let shared = Arc::new(ProxyShared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            fault,
            operations: Mutex::new(Vec::new()),
            seen: AtomicUsize::new(0),
            answered_503: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            keep_alive,
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("moto proxy", move |stream, stop| {
            relay(stream, &serving, stop)
        });
        MotoProxy { server, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// The operation of every request so far, in arrival order (`secretsmanager.GetSecretValue`,
    /// `AssumeRole`, ...).
    pub fn operations(&self) -> Vec<String> {
        self.shared
            .operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests had `operation` (`GetSecretValue` matches `secretsmanager.GetSecretValue`).
    pub fn count(&self, operation: &str) -> usize {
        self.operations()
            .iter()
            .filter(|op| *op == operation || op.ends_with(&format!(".{operation}")))
            .count()
    }

    pub fn answered_503(&self) -> usize {
        self.shared.answered_503.load(Ordering::SeqCst)
    }

    /// How many requests were answered with `ThrottlingException`.
    pub fn throttled(&self) -> usize {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, shared: &ProxyShared, stop: &Stop) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut client = client;
    // One request per turn; with `keep_alive` the connection then waits for the next.
    while let Some((head_text, body)) = read_one(&mut reader) {
        let answer = answer(shared, stop, &head_text, &body);
        let Some(answer) = answer else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        if !shared.keep_alive {
            let _ = client.write_all(&answer);
            let _ = client.flush();
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if client
            .write_all(&keep_alive(&answer))
            .and_then(|()| client.flush())
            .is_err()
        {
            return;
        }
    }
}

/// One request: its head (as text) and its body; `None` when the peer closed or sent garbage.
fn read_one(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let end = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let head_text = String::from_utf8_lossy(&head).into_owned();
    let length: usize = header_in(&head_text, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some((head_text, body))
}

fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The whole answer to one request (as moto or the fault sends it, `Connection: close`), or
/// `None` to close the connection without one.
fn answer(shared: &ProxyShared, stop: &Stop, head_text: &str, body: &[u8]) -> Option<Vec<u8>> {
    let operation = header_in(head_text, "x-amz-target").unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
            .unwrap_or_else(|| "(unknown)".to_owned())
    });
    shared
        .operations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(operation);

    let canned = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    match shared.fault {
        Fault::Hang => {
            // Hold the connection open, answering nothing, until the proxy stops.
            while !stop.is_set() {
                std::thread::sleep(Duration::from_millis(20));
            }
            return None;
        }
        Fault::ServiceUnavailable(n) => {
            if shared.seen.fetch_add(1, Ordering::SeqCst) < n {
                shared.answered_503.fetch_add(1, Ordering::SeqCst);
                return Some(canned(
                    "503 Service Unavailable",
                    r#"{"__type":"ServiceUnavailable","message":"stand-in outage"}"#,
                ));
            }
        }
        Fault::Throttle(n) => {
            if shared.seen.fetch_add(1, Ordering::SeqCst) < n {
                shared.throttled.fetch_add(1, Ordering::SeqCst);
                // AWS JSON 1.1's shape for a throttled call (Secrets Manager and SSM alike).
                return Some(canned(
                    "400 Bad Request",
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
                ));
            }
        }
        Fault::None => {}
    }

    // Forward with `Connection: close`, read the whole answer.
    let mut upstream = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)).ok()?;
    let mut forwarded = String::new();
    for line in head_text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line
            .split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    upstream
        .write_all(forwarded.as_bytes())
        .and_then(|()| upstream.write_all(body))
        .ok()?;
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).ok()?;
    Some(response)
}

/// A whole `Connection: close` answer rewritten for a kept-alive connection: the body decoded
/// when chunked, its length given, `Connection: keep-alive`.
fn keep_alive(response: &[u8]) -> Vec<u8> {
    let Some(split) = find(response, b"\r\n\r\n") else {
        return response.to_vec();
    };
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line
            .split_once(':')
            .map(|(n, _)| n.trim().to_ascii_lowercase());
        if i > 0
            && matches!(
                name.as_deref(),
                Some("connection" | "content-length" | "transfer-encoding" | "keep-alive")
            )
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}
