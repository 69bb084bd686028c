//! The `command` provider: a store reached through its own command-line tool.
//!
//! ```toml
//! [providers.op]                          # references: op://VAULT/ITEM/FIELD
//! kind = "command"
//! command = ["op", "read", "--no-newline", "{ref}"]   # an argument list: no shell
//! env = ["OP_SERVICE_ACCOUNT_TOKEN"]      # passed to the command (and kept from the child)
//! stdin = "terminal"                      # interactive unlock when cme-exec runs on a terminal
//!
//! [providers.pass]                        # references: pass://atlassian/api-token
//! kind = "command"
//! command = ["pass", "show", "{path}"]
//! env = ["GNUPGHOME", "PASSWORD_STORE_DIR"]
//! ```
//!
//! # What the command receives
//!
//! Each argument may hold placeholders, replaced per reference (the rest of the argument stays):
//! `{ref}` is the reference without `#KEY` as the store's own CLI writes it
//! (`op://Private/Atlassian/api_token`, parameters included), `{path}` the part after
//! `SCHEME://` or `SCHEME:` (percent-decoded). `{{` and `}}` are literal braces. The command
//! needs at least one placeholder, or every reference would read the same secret. A location
//! that starts with `-` is refused (it would read as an option).
//!
//! # How it runs
//!
//! - Each distinct document runs the command once (the resolver removes duplicates); runs are
//!   concurrent within the resolver's bound, or one at a time with `stdin = "terminal"`.
//! - The program is found in `PATH` (or given as a path) when the provider is built; a program
//!   file others can write is refused.
//! - A minimal environment ([`MINIMAL_ENV`]), plus the variables named in `env` (treated as
//!   credentials: the child does not inherit them), or the whole environment with
//!   `inherit_env = true`.
//! - stdin is `/dev/null`, unless `stdin = "terminal"` and cme-exec's stdin is a terminal: then
//!   the command shares cme-exec's terminal (stdin, and stderr when cme-exec's stderr is that
//!   same terminal) and process group, so `op` or `bw` can ask for a password. Otherwise the
//!   command runs in a process group of its own, killed as a whole when it overruns.
//! - A deadline: `timeout` seconds, and always inside `--timeout`, so that its error (which names
//!   the command) comes before the resolver's.
//! - stdout is read as the document, at most [`MAX_DOCUMENT_BYTES`]; one trailing newline is
//!   removed. `format` says how `#KEY` reads it: `"auto"` (the default: JSON when it starts with
//!   `{`, else TOML, else dotenv), `"json"`, `"dotenv"` or `"toml"`.
//! - stderr is drained and counted, never shown: a helper can print anything there, secrets
//!   included. The one exception is a prompt: with `stdin = "terminal"`, when cme-exec's stderr
//!   is the very terminal its stdin is, the command writes there (a screen, not a log). A stderr
//!   redirected to a file or a pipe (`2>run.log` at a terminal) is never handed to the command.
//!   A failure names the provider, the reference and the exit status or signal.
//!
//! User documentation: `docs/providers/command.md`.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use tokio::io::AsyncReadExt as _;
use zeroize::Zeroizing;

use crate::payload::{Format, Payload, MAX_DOCUMENT_BYTES};
use crate::secure_io::{allows, Access, SecretBuf, Who};
use crate::table::TableReader;
use crate::{Backend, BackendSettings, Context, Document, ErrorKind, FetchError, Kind, Provider};

/// `kind = "command"`: always built in (it needs no library).
pub const KIND: Kind = Kind::new("command");

/// The variables a command gets from cme-exec's environment without being asked (when set).
pub const MINIMAL_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "TERM",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
];

/// stderr is drained to its end (a helper blocked on a full pipe would hang) in chunks of this
/// size, and only counted.
const STDERR_DRAIN_CHUNK: usize = 8 * 1024;

/// The `command` backend, listed in `registry::BACKENDS`.
pub struct CommandBackend;

impl Backend for CommandBackend {
    fn kind(&self) -> Kind {
        KIND
    }

    fn parse(&self, r: &mut TableReader<'_, '_>) -> Arc<dyn BackendSettings> {
        Arc::new(Settings::parse(r))
    }

    /// A command provider needs its command: there is no built-in `command` scheme.
    fn builtin(&self) -> Option<Arc<dyn BackendSettings>> {
        None
    }

    fn check_document(&self, doc: &Document) -> Result<(), String> {
        check_document(doc)
    }
}

/// Checks a reference for a command provider: any location and parameters, but not one that
/// the command would read as an option.
pub fn check_document(doc: &Document) -> Result<(), String> {
    if doc.location.starts_with('-') {
        return Err(
            "the location must not start with `-` (the command would read it as an option)".into(),
        );
    }
    Ok(())
}

/// Where the command's stdin comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// cme-exec's stdin when it is a terminal, else `/dev/null`.
    Terminal,
}

/// One piece of an argument.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Ref,
    Path,
}

/// `[providers.NAME]` with `kind = "command"`. Holds no secret: a command line and variable names.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The program (no placeholder) and its arguments, split into pieces.
    program: String,
    args: Vec<Vec<Piece>>,
    pub env: Vec<String>,
    pub inherit_env: bool,
    pub stdin: Stdin,
    pub timeout: Option<Duration>,
    pub format: Option<Format>,
}

impl Settings {
    pub fn parse(r: &mut TableReader<'_, '_>) -> Settings {
        let mut s = Settings {
            inherit_env: r.bool("inherit_env").unwrap_or(false),
            ..Settings::default()
        };
        match r.string_list("command") {
            None if !r.has_problem("command") => {
                r.problem(
                    Some("command"),
                    "missing: give the command as a list, such as [\"pass\", \"show\", \"{path}\"]",
                );
            }
            None => {}
            Some(list) if list.is_empty() || list[0].trim().is_empty() => {
                r.problem(Some("command"), "must start with the program to run");
            }
            Some(list) => match parse_command(&list) {
                Ok((program, args)) => {
                    s.program = program;
                    s.args = args;
                }
                Err(e) => r.problem(Some("command"), e),
            },
        }
        if let Some(names) = r.string_list("env") {
            for n in &names {
                let ok = n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    r.problem(Some("env"), "each entry must be a variable name");
                    break;
                }
            }
            s.env = names;
        }
        if s.inherit_env && !s.env.is_empty() {
            r.problem(
                Some("env"),
                "not needed with inherit_env = true (the command gets the whole environment)",
            );
        }
        match r.string("stdin").as_deref() {
            None | Some("null") => {}
            Some("terminal") => s.stdin = Stdin::Terminal,
            Some(_) => r.problem(Some("stdin"), "expected \"null\" or \"terminal\""),
        }
        s.timeout = r
            .integer("timeout", 1, 3600)
            .map(|t| Duration::from_secs(t as u64));
        s.format = match r.string("format").as_deref() {
            None | Some("auto") => None,
            Some("json") => Some(Format::Json),
            Some("dotenv") => Some(Format::Dotenv),
            Some("toml") => Some(Format::Toml),
            Some(_) => {
                r.problem(
                    Some("format"),
                    "expected \"auto\", \"json\", \"dotenv\" or \"toml\"",
                );
                None
            }
        };
        s
    }

    /// The arguments for one document.
    fn args_for(&self, doc: &Document) -> Vec<String> {
        let reference = doc.to_string();
        self.args
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.as_str(),
                        Piece::Ref => reference.as_str(),
                        Piece::Path => doc.location.as_str(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Splits the command into its program and the arguments' pieces.
/// An argument as the config wrote it (placeholders and doubled braces back in place).
fn written(pieces: &[Piece]) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(&t.replace('{', "{{").replace('}', "}}")),
            Piece::Ref => s.push_str("{ref}"),
            Piece::Path => s.push_str("{path}"),
        }
    }
    s
}

/// A TOML/JSON-style quoted string, so spaces and quotes in an argument stay visible.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn parse_command(list: &[String]) -> Result<(String, Vec<Vec<Piece>>), String> {
    let program = list[0].clone();
    if split_placeholders(&program)?
        .iter()
        .any(|p| *p != Piece::Text(program.clone()))
    {
        return Err("the program (the first element) cannot hold a placeholder".into());
    }
    let mut args = Vec::new();
    let mut placeholders = 0;
    for a in &list[1..] {
        let pieces = split_placeholders(a)?;
        placeholders += pieces
            .iter()
            .filter(|p| !matches!(p, Piece::Text(_)))
            .count();
        args.push(pieces);
    }
    if placeholders == 0 {
        return Err(
            "no {ref} or {path} in the command: every reference would read the same secret".into(),
        );
    }
    Ok((program, args))
}

fn split_placeholders(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(r) = tail.strip_prefix("{{") {
            text.push('{');
            rest = r;
        } else if let Some(r) = tail.strip_prefix("}}") {
            text.push('}');
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{ref}") {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Ref);
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{path}") {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Path);
            rest = r;
        } else {
            return Err(
                "unknown placeholder: an argument may hold {ref} and {path}; write {{ and }} for \
                 literal braces"
                    .into(),
            );
        }
    }
    text.push_str(rest);
    pieces.push(Piece::Text(text));
    pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
    if pieces.is_empty() {
        pieces.push(Piece::Text(String::new()));
    }
    Ok(pieces)
}

impl BackendSettings for Settings {
    fn describe(&self) -> String {
        let mut s = format!("kind command, runs {}", self.program);
        if self.inherit_env {
            s.push_str(" with the whole environment");
        } else if !self.env.is_empty() {
            s.push_str(&format!(" with {}", self.env.join(", ")));
        }
        if self.stdin == Stdin::Terminal {
            s.push_str(", stdin from the terminal");
        }
        s
    }

    fn details(&self) -> Vec<String> {
        let mut line = vec![quoted(&self.program)];
        line.extend(self.args.iter().map(|a| quoted(&written(a))));
        let mut out = vec![format!("command [{}]", line.join(", "))];
        out.push(
            if self.program.contains('/') && !Path::new(&self.program).is_absolute() {
                "the program is a file beside the config (its content is part of the trust record)"
                    .to_owned()
            } else if self.program.contains('/') {
                format!("the program is the file {}", self.program)
            } else {
                format!("the program is the first `{}` in PATH", self.program)
            },
        );
        out.push("runs in the config file's directory".to_owned());
        if self.inherit_env {
            out.push("gets cme-exec's whole environment (inherit_env = true)".to_owned());
        } else {
            for var in &self.env {
                out.push(format!("gets the variable {var}"));
            }
        }
        out
    }

    fn local_programs(&self) -> Vec<&Path> {
        let p = Path::new(&self.program);
        if self.program.contains('/') && !p.is_absolute() {
            vec![p]
        } else {
            Vec::new()
        }
    }

    fn build(&self, name: &str, ctx: &Arc<Context>) -> Result<Arc<dyn Provider>, FetchError> {
        let program = find_program(&self.program, ctx).map_err(|e| {
            FetchError::new(
                e.kind,
                format!("the command provider `{name}`: {}", e.message()),
            )
            .with_hint(e.hint().unwrap_or_default().to_owned())
        })?;
        for var in &self.env {
            ctx.env.mark_consumed(var);
        }
        // Inside the resolver's deadline, so that this error (which names the command) comes first.
        let inside = ctx
            .timeout
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(100));
        let deadline = self.timeout.map_or(inside, |t| t.min(inside));
        let interactive = self.stdin == Stdin::Terminal && stdin_is_terminal();
        let stderr_to_terminal = interactive && stderr_is_stdins_terminal();
        Ok(Arc::new(CommandProvider {
            name: name.to_owned(),
            settings: self.clone(),
            program,
            ctx: Arc::clone(ctx),
            deadline,
            interactive,
            stderr_to_terminal,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }))
    }
}

fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// Whether cme-exec's stderr is the terminal its stdin is (the same device), and not a file,
/// a pipe or another terminal: only then may a command's stderr, which can hold anything a
/// helper prints, secrets included, go there. `2>run.log` at a terminal keeps it out.
fn stderr_is_stdins_terminal() -> bool {
    fn device(fd: libc::c_int) -> Option<libc::dev_t> {
        // SAFETY: isatty and fstat only inspect the descriptor; `st` is written by fstat.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(fd, &mut st) == 0).then_some(st.st_rdev)
        }
    }
    matches!((device(0), device(2)), (Some(a), Some(b)) if a == b)
}

/// The program's path: as given when it holds a `/` (relative to the config's directory), else
/// the first match in the environment's `PATH`. A file others can write is refused.
fn find_program(program: &str, ctx: &Context) -> Result<PathBuf, FetchError> {
    let candidate = if program.contains('/') {
        let p = Path::new(program);
        Some(if p.is_absolute() {
            p.to_owned()
        } else {
            ctx.base_dir.join(p)
        })
    } else {
        ctx.env.var("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(program))
                .find(|p| is_executable(p))
        })
    };
    let Some(path) = candidate.filter(|p| is_executable(p)) else {
        return Err(FetchError::invalid(format!(
            "cannot find the program `{program}`{}",
            if program.contains('/') {
                " (or it is not an executable file)"
            } else {
                " in PATH"
            }
        ))
        .with_hint(format!(
            "install it, or give its absolute path as the first element of command; see {}",
            crate::docs_url("providers/command.md")
        )));
    };
    let meta = std::fs::metadata(&path).map_err(|e| FetchError::io(&path, &e))?;
    crate::secure_io::check_not_world_writable(&path, &meta)?;
    Ok(path)
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .is_ok_and(|m| m.is_file() && allows(m.mode(), Who::Anyone, Access::Execute))
}

struct CommandProvider {
    name: String,
    settings: Settings,
    program: PathBuf,
    ctx: Arc<Context>,
    deadline: Duration,
    interactive: bool,
    /// With `interactive`: cme-exec's stderr is that terminal too, so the command's stderr
    /// (its prompt) goes there; otherwise it is drained like any command's.
    stderr_to_terminal: bool,
    /// Held by each run when the command shares the terminal: one prompt at a time.
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// Why a run gave no document.
enum Failed {
    Spawn(std::io::Error),
    Status(std::process::ExitStatus, usize),
    TooLarge,
    Deadline,
    Read(std::io::Error),
}

impl CommandProvider {
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let all = self.ctx.env.all();
        if self.settings.inherit_env {
            return all.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        MINIMAL_ENV
            .iter()
            .copied()
            .chain(self.settings.env.iter().map(String::as_str))
            .filter_map(|name| {
                let k = OsString::from(name);
                all.get(&k).map(|v| (k, v.clone()))
            })
            .collect()
    }

    async fn run(&self, doc: &Document) -> Result<Zeroizing<Vec<u8>>, Failed> {
        let _turn = if self.interactive {
            Some(self.one_at_a_time.lock().await)
        } else {
            None
        };
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg0(&self.settings.program)
            .args(self.settings.args_for(doc))
            .env_clear()
            .current_dir(&self.ctx.base_dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut env = self.environment();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        if self.interactive {
            cmd.stdin(Stdio::inherit())
                .stderr(if self.stderr_to_terminal {
                    Stdio::inherit()
                } else {
                    Stdio::piped()
                });
        } else {
            // Its own process group: killed as a whole when it overruns.
            cmd.stdin(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0);
        }
        #[cfg(target_os = "linux")]
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with cme-exec (SIGKILL once the thread that started it is gone: the
                // resolver's current-thread runtime runs on cme-exec's main thread, which lives
                // until the process exits), so a SIGKILLed cme-exec leaves no helper behind; a
                // cme-exec already gone before this call means a new parent: exit at once.
                #[cfg(target_os = "linux")]
                {
                    libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    );
                    if libc::getppid() != parent {
                        libc::_exit(125);
                    }
                }
                // The command starts with no blocked signal and SIGPIPE at its default, whatever
                // cme-exec's own state (Rust ignores SIGPIPE; the runtime may block signals).
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        crate::context::wipe_env(&mut env);
        let mut child = spawned.map_err(Failed::Spawn)?;
        let group = GroupGuard {
            pid: child.id().filter(|_| !self.interactive),
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            let (out, err_bytes) = tokio::join!(read_capped(stdout), drain(stderr));
            let status = child.wait().await.map_err(Failed::Read)?;
            Ok::<_, Failed>((out, err_bytes, status))
        };
        let outcome = tokio::time::timeout(self.deadline, work).await;
        let result = match outcome {
            Err(_) => Err(Failed::Deadline),
            Ok(Err(e)) => Err(e),
            Ok(Ok((Err(e), _, _))) => Err(e),
            Ok(Ok((Ok(out), err_bytes, status))) => {
                if status.success() {
                    Ok(out)
                } else {
                    Err(Failed::Status(status, err_bytes))
                }
            }
        };
        if result.is_ok() {
            group.disarm();
        } else {
            drop(group);
        }
        result
    }

    fn error(&self, doc: &Document, failed: Failed) -> FetchError {
        let what = format!(
            "the command provider `{}`: `{}` for {doc}",
            self.name, self.settings.program
        );
        let see = "run the command yourself to see what it says (its stderr is not shown: a \
                   helper may print secrets there)";
        match failed {
            Failed::Spawn(e) => FetchError::unavailable(format!("{what} could not start: {e}")),
            Failed::Status(status, err_bytes) => {
                let how = match (status.code(), status.signal()) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(s)) => format!("was killed by signal {}", signal_name(s)),
                    _ => "failed".to_owned(),
                };
                let said = if err_bytes > 0 {
                    format!(" (it wrote {err_bytes} bytes to stderr, not shown)")
                } else {
                    String::new()
                };
                FetchError::unavailable(format!("{what} {how}{said}")).with_hint(see)
            }
            Failed::TooLarge => FetchError::invalid(format!(
                "{what} printed more than {} KiB, the limit for one secret document; it was stopped",
                MAX_DOCUMENT_BYTES / 1024
            )),
            Failed::Deadline => FetchError::new(
                ErrorKind::Timeout,
                format!(
                    "{what} did not finish within {} s; it was stopped",
                    self.deadline.as_secs_f32()
                ),
            )
            .with_hint(
                "raise timeout in the provider's table (and --timeout); a command that asks for \
                 a password needs stdin = \"terminal\" and a terminal",
            ),
            Failed::Read(e) => {
                FetchError::unavailable(format!("{what}: its output could not be read: {e}"))
            }
        }
    }
}

/// Kills the command's process group unless disarmed (on a deadline, an oversize output, or a
/// run dropped half-way by a signal); the group leader is not reaped before this, so the group
/// id is still its own.
struct GroupGuard {
    pid: Option<u32>,
}

impl GroupGuard {
    fn disarm(mut self) {
        self.pid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: a plain system call; ESRCH (already gone) is fine.
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Reads stdout into a wiped buffer, at most [`MAX_DOCUMENT_BYTES`].
async fn read_capped(
    stdout: Option<tokio::process::ChildStdout>,
) -> Result<Zeroizing<Vec<u8>>, Failed> {
    let mut buf = SecretBuf::bounded(4096, MAX_DOCUMENT_BYTES);
    let Some(mut stdout) = stdout else {
        return Ok(buf.into_inner());
    };
    let mut chunk = Zeroizing::new(vec![0u8; 16 * 1024]);
    loop {
        let n = stdout.read(&mut chunk).await.map_err(Failed::Read)?;
        if n == 0 {
            return Ok(buf.into_inner());
        }
        buf.extend(&chunk[..n]).map_err(|_| Failed::TooLarge)?;
    }
}

/// Reads stderr to its end, keeping only the count.
async fn drain(stderr: Option<tokio::process::ChildStderr>) -> usize {
    let Some(mut stderr) = stderr else { return 0 };
    let mut chunk = Zeroizing::new(vec![0u8; STDERR_DRAIN_CHUNK]);
    let mut total = 0;
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return sig.to_string(),
    };
    format!("{name} ({sig})")
}

#[async_trait]
impl Provider for CommandProvider {
    fn kind(&self) -> Kind {
        KIND
    }

    async fn fetch(&self, doc: &Document) -> Result<Payload, FetchError> {
        let mut out = self.run(doc).await.map_err(|f| self.error(doc, f))?;
        if out.last() == Some(&b'\n') {
            out.pop();
            if out.last() == Some(&b'\r') {
                out.pop();
            }
        }
        let text = std::str::from_utf8(&out).map_err(|_| {
            FetchError::invalid(format!(
                "the command provider `{}`: `{}` for {doc} printed something that is not UTF-8 text",
                self.name, self.settings.program
            ))
        })?;
        Ok(Payload::Text {
            value: SecretString::from(text.to_owned()),
            format: self.settings.format.unwrap_or(Format::Unknown),
        })
    }
}

#[cfg(test)]
mod tests;
