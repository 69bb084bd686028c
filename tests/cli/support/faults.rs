//! A raw fault-injecting HTTP server for the store-fault tests (`tests/cli/faults.rs`): unlike
//! [`super::openbao::StandIn`], whose answers are whole responses, its handler writes to the
//! connection itself, so it can send a status line and then drip the body one byte at a time,
//! reset the connection halfway through the body, or stream a body far larger than any client
//! should read, without holding it in memory.
//!
//! Also here: [`peak_rss_wrapper`], which measures cme-exec's peak resident set without the test
//! harness's memory in it.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{self, Server, Stop};
use super::openbao::{read_request, Seen};

/// One accepted connection, after its request was read.
pub struct Conn {
    stream: TcpStream,
    stop: Stop,
    reset: bool,
}

impl Conn {
    /// True once the server is being dropped.
    pub fn stopped(&self) -> bool {
        self.stop.is_set()
    }

    /// Writes and flushes `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// The status line and headers (plus `Connection: close`) and the blank line.
    pub fn head(&mut self, status: u16, headers: &[(&str, String)]) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} Fault-Stand-In\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        self.write(head.as_bytes())
    }

    /// Sends `body` one byte every `every`, until it is sent, the peer goes away or the server
    /// stops. Returns how many bytes were written.
    pub fn drip(&mut self, body: &[u8], every: Duration) -> usize {
        for (sent, byte) in body.iter().enumerate() {
            if self.stopped() || self.write(std::slice::from_ref(byte)).is_err() {
                return sent;
            }
            let next = Instant::now() + every;
            while Instant::now() < next && !self.stopped() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        body.len()
    }

    /// Makes the end of this connection (when the handler returns) a TCP RST instead of a FIN:
    /// SO_LINGER 0, and no shutdown before the close.
    pub fn reset_on_close(&mut self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket descriptor and a correctly sized `linger`.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::addr_of!(linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt(SO_LINGER): {}",
            std::io::Error::last_os_error()
        );
        self.reset = true;
    }
}

type Handler = dyn Fn(&Seen, usize, &mut Conn) + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    seen: Mutex<Vec<(Seen, Instant)>>,
}

/// An HTTP server on `127.0.0.1:0` whose handler writes each answer itself (`(request, index,
/// connection)`, index counting from 0 in arrival order). One request per connection; the
/// connection is closed when the handler returns.
pub struct FaultServer {
    server: Server,
    shared: Arc<Shared>,
}

impl FaultServer {
    pub fn start(handler: impl Fn(&Seen, usize, &mut Conn) + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("fault stand-in", move |stream, stop| {
            serve(stream, &serving, stop)
        });
        FaultServer { server, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
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

fn serve(stream: TcpStream, shared: &Shared, stop: &Stop) {
    http::set_timeouts(&stream, Duration::from_secs(30));
    let Some(seen) = read_request(&stream) else {
        return;
    };
    let index = {
        let mut all = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        all.push((seen.clone(), Instant::now()));
        all.len() - 1
    };
    let mut conn = Conn {
        stream,
        stop: stop.clone(),
        reset: false,
    };
    (shared.handler)(&seen, index, &mut conn);
    if !conn.reset {
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
}

/// A wrapper (for `Launch::wrapper`, with the record path as its first argument) that starts
/// cme-exec as its own child and, once it has exited, writes its peak resident set in KiB
/// (`ru_maxrss` from `wait4`) into the record; it exits as cme-exec did.
///
/// Why not the rusage of the process the test harness started: Linux keeps, across `execve`,
/// the high-water mark of the memory the process had before it (`signal->maxrss`), and a
/// process forked from the test harness starts with a copy of the harness's memory, which in a
/// full parallel run is far larger than cme-exec (67 MiB was measured that way). The wrapper is
/// a small Python process, so what cme-exec inherits is small (about 10 MiB).
pub fn peak_rss_wrapper(t: &super::Test) -> std::path::PathBuf {
    let python = super::Venv::get().python();
    t.script(
        "peak-rss",
        &format!(
            r#"#!{python}
import os, sys
record = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(record, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"#,
            python = python.display()
        ),
    )
}
