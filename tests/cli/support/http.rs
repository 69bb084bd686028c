//! The HTTP/1.1 server core every stand-in is built on: a listener on `127.0.0.1:0`, one thread
//! per connection running the stand-in's own `serve`, and a stop on drop (a flag, then a
//! connection that wakes the accept loop so that it sees the flag). Also the request reader and
//! the `Connection: close` answer most stand-ins write.
//!
//! A stand-in configures it with what it does per connection: the Confluence and Atlassian
//! stand-ins (`standin.rs`, `atlassian.rs`) answer from a table, the programmable [`StandIn`]
//! (`openbao.rs`) asks a closure, the fault server (`faults.rs`) hands the connection to its
//! handler, the moto proxy (`moto.rs`) relays (with keep-alive if asked) and the TCP counter
//! (`openbao.rs`) copies bytes.
//!
//! [`StandIn`]: super::openbao::StandIn

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Set when the server is being dropped: a handler that waits (a hanging answer, a drip) checks
/// it to give up.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A loopback server; stops accepting when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Stop,
    accept_thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on a free loopback port; every connection runs `serve` on its own thread.
    /// `name` names the accept thread (and the bind in a failure).
    pub fn start(name: &str, serve: impl Fn(TcpStream, &Stop) + Send + Sync + 'static) -> Server {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
        let addr = listener.local_addr().expect("the server's address");
        let stop = Stop::default();
        let serve = Arc::new(serve);
        let accept_stop = stop.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("{name} {addr}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_stop.is_set() {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (serve, stop) = (Arc::clone(&serve), accept_stop.clone());
                    std::thread::spawn(move || serve(stream, &stop));
                }
            })
            .expect("spawn an accept thread");
        Server {
            addr,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.set();
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request as a stand-in read it. No `Debug` for the stand-ins that record credentials:
/// print a summary of method and target instead.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent: `/path?query`, or `http://host/path` through a proxy.
    pub target: String,
    /// All headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// `(host, origin-form target)`: from an absolute target (`http://host/path`, as a proxy
    /// receives it), else the `Host` header and the target as it is.
    pub fn host_and_path(&self) -> (String, String) {
        for scheme in ["http://", "https://"] {
            if let Some(rest) = self.target.strip_prefix(scheme) {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                return (authority.to_owned(), path.to_owned());
            }
        }
        let host = self.header("host").unwrap_or_default().to_owned();
        (host, self.target.clone())
    }
}

/// Reads one request: request line, headers, and a body of `Content-Length` bytes (at most
/// `body_limit` of them are read). `None` when the peer sent nothing (the drop's wake-up
/// connection, or a client that gave up) or closed before the end of the body.
pub fn read_request(stream: &TcpStream, body_limit: usize) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(body_limit)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Writes a whole answer, `Content-Length` and `Connection: close` added, then closes the
/// connection (both directions).
pub fn respond(
    mut stream: &TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Sets both timeouts of a served connection.
pub fn set_timeouts(stream: &TcpStream, timeout: Duration) {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
}

/// A server that accepts every connection, reads what is sent and never answers (a store that
/// hangs). Connections are held until it is dropped; it counts them.
pub struct Silent {
    server: Server,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Silent {
    pub fn start() -> Silent {
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let server = Server::start("silent listener", move |mut stream, stop| {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            while !stop.is_set() {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    _ => continue,
                }
            }
        });
        Silent { server, accepted }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
