//! A real `bao proxy` (OpenBao Proxy, the same static `bao` binary as the server) in front of an
//! [`OpenBao`] dev server: auto-auth with AppRole, `api_proxy { use_auto_auth_token = true }`,
//! a `cache {}`, and two listeners, a unix socket and TCP on a free loopback port. Ready once a
//! token-less request through the socket is answered with the auto-auth token (so the proxy's
//! single login has happened); killed on drop.
//!
//! A file sink writes the proxy's token into its directory, so that tests can look for it in
//! cme-exec's output and check it is still valid afterwards.
//!
//! The role and secret ids are written into the proxy's own temporary directory (outside the
//! test's, whose files the leak check scans); the secret id is the test's sentinel all the same.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::openbao::{http_call, parse_reply, OpenBao, Reply};
use super::{redact, Venv};

/// A running `bao proxy`; killed on drop.
pub struct BaoProxy {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: SocketAddr,
}

impl BaoProxy {
    /// Starts a proxy that logs in to `server` with AppRole (`auth/approle`, these ids).
    #[track_caller]
    pub fn start(server: &OpenBao, role_id: &str, secret_id: &str) -> BaoProxy {
        let bao = Venv::get().bao();
        let mut last_log = String::new();
        for _attempt in 0..6 {
            // A short path: a unix socket's path is limited to 107 bytes.
            let dir = tempfile::Builder::new()
                .prefix("cme-bp-")
                .tempdir_in("/tmp")
                .expect("create the proxy's directory");
            let role_file = dir.path().join("role-id");
            let secret_file = dir.path().join("secret-id");
            for (path, value) in [(&role_file, role_id), (&secret_file, secret_id)] {
                fs::write(path, value).expect("write an AppRole credential");
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .expect("chmod an AppRole credential");
            }
            let socket = dir.path().join("proxy.sock");
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
                l.local_addr().expect("local address").port()
            };
            let tcp: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let config = dir.path().join("proxy.hcl");
            fs::write(
                &config,
                format!(
                    r#"vault {{
  address = "{server}"
}}
auto_auth {{
  method "approle" {{
    mount_path = "auth/approle"
    config = {{
      role_id_file_path = "{role}"
      secret_id_file_path = "{secret}"
      remove_secret_id_file_after_reading = false
    }}
  }}
  sink "file" {{
    config = {{
      path = "{sink}"
    }}
  }}
}}
api_proxy {{
  use_auto_auth_token = true
}}
cache {{}}
listener "unix" {{
  address = "{socket}"
  tls_disable = true
}}
listener "tcp" {{
  address = "{tcp}"
  tls_disable = true
}}
"#,
                    server = server.address(),
                    role = role_file.display(),
                    secret = secret_file.display(),
                    socket = socket.display(),
                    sink = dir.path().join("token").display(),
                ),
            )
            .expect("write the proxy's config");
            let log_path = dir.path().join("proxy.log");
            let log = fs::File::create(&log_path).expect("create the proxy's log");
            let child = Command::new(&bao)
                .arg("proxy")
                .arg(format!("-config={}", config.display()))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {} proxy: {e}", bao.display()));
            let mut proxy = BaoProxy {
                child,
                dir,
                socket,
                tcp,
            };
            match proxy.wait_ready() {
                Ok(()) => return proxy,
                Err(log) => {
                    last_log = log;
                    let taken = last_log.contains("address already in use");
                    drop(proxy);
                    if !taken {
                        break;
                    }
                }
            }
        }
        panic!(
            "the OpenBao Proxy did not start; its log:\n{}",
            redact(&last_log)
        );
    }

    /// Ready when a token-less lookup through the socket and through TCP is answered 200: the
    /// auto-auth login has happened and its token is injected.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            let ok = |r: std::io::Result<Reply>| r.is_ok_and(|r| r.status == 200);
            let sunk = fs::read_to_string(self.dir.path().join("token"))
                .is_ok_and(|t| !t.trim().is_empty());
            if sunk
                && ok(self.call_socket("GET", "auth/token/lookup-self"))
                && ok(http_call(
                    self.tcp,
                    "GET",
                    "/v1/auth/token/lookup-self",
                    &[],
                    b"",
                ))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("(not ready after 30 s)\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// One token-less request through the socket (`Connection: close`).
    pub fn call_socket(&self, method: &str, path: &str) -> std::io::Result<Reply> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let head = format!(
            "{method} /v1/{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             X-Vault-Request: true\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_reply(&raw)
    }

    /// The proxy's own auto-auth token (from its file sink), to check that it never leaks and
    /// is never revoked.
    pub fn token(&self) -> String {
        fs::read_to_string(self.dir.path().join("token"))
            .expect("the proxy's token sink")
            .trim()
            .to_owned()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///tmp/.../proxy.sock`.
    pub fn unix_address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn tcp_address(&self) -> String {
        format!("http://{}", self.tcp)
    }
}

impl Drop for BaoProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
