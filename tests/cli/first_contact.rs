//! What a new user meets first: the deadline (`--timeout`, `check` included), errors from AWS
//! and Vault in words with the right hint, what is shown while a store is slow, links to the
//! documentation, and documentation samples that match the real output. Against real OpenBao
//! and moto, a closed port, and a loopback listener that accepts connections and never answers.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::moto;
use crate::support::*;

/// What a failing run may take beyond its `--timeout`: starting and ending the process on a busy
/// machine. Generous on purpose (the bugs these tests catch are a doubled deadline).
const MARGIN: Duration = Duration::from_millis(2500);

/// A loopback listener that accepts every connection, reads what is sent and never answers
/// (a store that hangs). Connections are held until it is dropped.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let stopped = Arc::clone(&stopped);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4096];
                    while !stopped.load(Ordering::SeqCst) {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            _ => continue,
                        }
                    }
                });
            }
        });
        Silent { addr, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------------------------
// 12. One deadline covers everything
// ---------------------------------------------------------------------------------------------

/// `check --timeout 4` against a Vault and an AWS endpoint that both accept and never answer:
/// the fetches and both identity lookups share the one deadline (it took 12 s: the deadline once
/// for the fetches and once more for each identity lookup).
#[test]
fn check_keeps_one_deadline_against_stores_that_never_answer() {
    let vault = Silent::start();
    let aws = Silent::start();
    let t = Test::new()
        .env("VAULT_ADDR", vault.url())
        .env("VAULT_TOKEN", "hvs.not-a-secret-token")
        .env("AWS_ENDPOINT_URL", aws.url())
        .env("AWS_REGION", moto::REGION)
        .env("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .global_arg("--timeout")
        .global_arg("4")
        .config_toml(
            "[confluence.\"https://x.atlassian.net\"]\nusername = \"vault://secret/app#user\"\n\
             api_token = \"aws-sm://app#token\"\n",
        );
    let start = Instant::now();
    let out = t.run_args(["check"]);
    let elapsed = start.elapsed();
    out.assert_code(1);
    assert!(
        elapsed < Duration::from_secs(4) + MARGIN,
        "check --timeout 4 took {elapsed:?}\n{}",
        out.describe()
    );
    t.assert_clean();
}

/// `--timeout 0` is refused with a message that does not say 0 is allowed.
#[test]
fn timeout_zero_is_refused_in_words_that_match() {
    let t = Test::new();
    let out = t.run_args(["--timeout", "0", "check"]);
    out.assert_code(125);
    assert!(
        !out.stderr.contains("between 0 and"),
        "the message must not say 0 is allowed\n{}",
        out.describe()
    );
    out.assert_stderr_contains("greater than 0");
    t.assert_clean();
}
