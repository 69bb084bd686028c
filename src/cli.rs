//! The command line. `///` comments are the `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::envnames as names;
use crate::handover::Via;
use cme_exec_providers::secure_io::{allows, Access, Who};

/// Run confluence-markdown-exporter (cme) with credentials from your secret stores.
///
/// cme-exec reads cme-exec.toml (references such as env://NAME, file:///path#key,
/// vault://secret/atlassian#api_token, aws-sm://prod/jira#pat), resolves every reference,
/// builds cme's config for one run, runs the command, and leaves nothing behind.
///
///   cme-exec init --confluence https://company.atlassian.net --store vault://secret/cme
///   cme-exec -- cme pages https://company.atlassian.net/wiki/spaces/ENG/pages/123
///   cme-exec render --output /cme/app_data.json
///   cme-exec check            (cme-exec check --offline: no store contacted, for CI)
///
/// Exit codes: the command's own; 128+N when it died from signal N; 125 when cme-exec failed
/// before starting it; 126 not executable; 127 not found. check and explain: 0 or 1 (125 when
/// refused before checking: an untrusted ./cme-exec.toml, an unknown CME_EXEC_ variable).
#[derive(Debug, Parser)]
#[command(name = "cme-exec", version, verbatim_doc_comment)]
pub struct Cli {
    /// The config file [default: $CME_EXEC_CONFIG (an absolute path), else ./cme-exec.toml once
    /// trusted with `cme-exec trust`, else $XDG_CONFIG_HOME/cme-exec/config.toml, else
    /// CME_EXEC_* variables]. Relative paths inside it resolve against its own directory.
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More output on stderr (-v info, -vv debug, -vvv trace); never any secret value.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Give up resolving after this many seconds (all stores together).
    #[arg(long, global = true, env = names::CME_EXEC_TIMEOUT, hide_env_values = true, value_name = "SECS", default_value_t = 30.0,
          value_parser = parse_seconds)]
    pub timeout: f64,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line; `run` is the default command (`cme-exec -- cme ...`).
    pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let args = with_default_command(args.into_iter().collect());
        let mut command = Cli::command().long_version(long_version());
        let mut matches = command
            .try_get_matches_from_mut(args.iter())
            .map_err(|e| missing_double_dash(&mut command, &args, &e).unwrap_or(e))?;
        Cli::from_arg_matches_mut(&mut matches)
    }
}

/// `cme-exec cme pages URL`: the command to run was given without `--` before it, so clap sees
/// `cme` as an unexpected argument of `run`. Says what to write instead (only up to the
/// command's name: the rest is the user's and may be long).
fn missing_double_dash(
    command: &mut clap::Command,
    args: &[OsString],
    e: &clap::error::Error,
) -> Option<clap::error::Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument || args.iter().any(|a| a == "--") {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') || !args.iter().skip(1).any(|a| a == "run") {
        return None;
    }
    let before: Vec<String> = args
        .iter()
        .skip(1)
        .take_while(|a| a.to_string_lossy() != word.as_str())
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a != "run")
        .collect();
    let mut fixed = vec!["cme-exec".to_owned()];
    fixed.extend(before);
    fixed.push("--".into());
    fixed.push(word.clone());
    Some(command.error(
        ErrorKind::UnknownArgument,
        format!(
            "`{word}` is not a cme-exec command; the command to run goes after `--`\n\n  \
             tip: {} ...",
            fixed.join(" ")
        ),
    ))
}

/// `--version` (`-V` prints the first line only): what a bug report needs. The commit and the
/// target come from build.rs; the backends from the providers' registry (ripgrep's `features:`
/// line), a backend left out listed with `-`.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let backends: Vec<String> = cme_exec_providers::registry::BACKENDS
            .iter()
            .map(|b| {
                let sign = if b.available() { '+' } else { '-' };
                format!("{sign}{}", b.kind())
            })
            .collect();
        format!(
            "{}\ncommit: {}\ntarget: {}\nbackends: {}",
            env!("CARGO_PKG_VERSION"),
            env!("CME_EXEC_COMMIT"),
            env!("CME_EXEC_TARGET"),
            backends.join(" ")
        )
    })
}

/// Inserts `run` when the first word after the global options is not a command, so that
/// `cme-exec -- cme ...` and `cme-exec --via file -- cme ...` mean `cme-exec run ...`.
fn with_default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    const COMMANDS: [&str; 10] = [
        "run",
        "render",
        "check",
        "explain",
        "init",
        "import",
        "trust",
        "completions",
        "man",
        "help",
    ];
    const GLOBAL_WITH_VALUE: [&str; 3] = ["-c", "--config", "--timeout"];
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if GLOBAL_WITH_VALUE.contains(&a.as_ref()) {
            i += 2;
        } else if a.starts_with("--config=")
            || a.starts_with("--timeout=")
            || (a.starts_with("-c") && a.len() > 2)
            || (a.starts_with("-v") && a[1..].chars().all(|c| c == 'v'))
            || a == "--verbose"
        {
            i += 1;
        } else {
            break;
        }
    }
    let first = args.get(i).map(|a| a.to_string_lossy().into_owned());
    let is_command = first.as_deref().is_some_and(|f| COMMANDS.contains(&f));
    let is_help = first
        .as_deref()
        .is_some_and(|f| matches!(f, "-h" | "--help" | "-V" | "--version"));
    if first.is_some() && !is_command && !is_help {
        args.insert(i, "run".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve the credentials and run a command with them (the default command:
    /// `cme-exec -- cme ...` is `cme-exec run -- cme ...`).
    Run(RunArgs),
    /// Write cme's config to a file (for a Kubernetes init container).
    Render(RenderArgs),
    /// Resolve every reference and report, per field, ok or why not. Never prints a value.
    /// With --live, also log in to each Confluence and Jira instance as cme would.
    Check(CheckArgs),
    /// Show the config cme would get, with every value replaced by its source and a keyed
    /// fingerprint (HMAC-SHA-256 under a per-user key in ~/.local/state/cme-exec, or the
    /// shared key file $CME_EXEC_FINGERPRINT_KEY_FILE). Prints nothing when a reference fails.
    Explain(ReportArgs),
    /// Move the secrets of an existing cme config (app_data.json) into a store, write a
    /// cme-exec.toml that references them and a secret-free base config, check that every
    /// value reads back, and (with --remove-secrets) remove them from the original.
    ///
    /// The new cme-exec.toml is written to -c/--config PATH when given, else to
    /// $XDG_CONFIG_HOME/cme-exec/config.toml (~/.config/cme-exec/config.toml), which cme-exec
    /// finds by itself; the base config goes beside it as NAME.base.json. A file that exists
    /// with other content is never overwritten (nothing is written). After writing elsewhere than
    /// the default, import prints the `export CME_EXEC_CONFIG=...` that makes cme-exec use it.
    #[command(verbatim_doc_comment)]
    Import(ImportArgs),
    /// Write a first config for your Confluence and Jira instances and a store, and print the
    /// commands that put the credentials into that store. On a terminal it asks for what the
    /// flags do not give. Writes the --config path, else $CME_EXEC_CONFIG, else
    /// $XDG_CONFIG_HOME/cme-exec/config.toml;
    /// never replaces an existing file.
    Init(InitArgs),
    /// Trust a ./cme-exec.toml found in the working directory: show everything it makes
    /// cme-exec run, contact and read, ask (or take --yes), and record its path, its content
    /// hash and the hashes of the helper programs and base config it names (a change to any of
    /// them must be trusted again).
    Trust(TrustArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page cme-exec(1) (roff), or with --dir write it and the subcommands' pages.
    Man {
        /// Write cme-exec.1 and cme-exec-run.1, cme-exec-render.1, ... into this existing
        /// directory (printing each path) instead of printing cme-exec.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How cme gets its config: an in-memory file (Linux), a private temporary file (the
    /// default on macOS), or environment variables (weakest: readable in /proc/PID/environ).
    #[arg(long, env = names::CME_EXEC_VIA, hide_env_values = true, value_enum, default_value_t = Via::DEFAULT)]
    pub via: Via,

    /// With --via file: the directory to create the private directory in
    /// [default: $XDG_RUNTIME_DIR, /dev/shm, $TMPDIR, /tmp]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Keep this variable in the command's environment even if a reference read it
    /// (repeatable; with --empty-env, the variables to pass at all).
    #[arg(long = "keep-env", value_name = "NAME")]
    pub keep_env: Vec<String>,

    /// Start the command with an empty environment (plus --keep-env and cme-exec's own).
    #[arg(long)]
    pub empty_env: bool,

    /// Replace every secret (and its base64, URL- and JSON-encoded forms) with *** in the
    /// command's stdout and stderr [default: on for each of stdout and stderr that is not a
    /// terminal, and for both when CI is set]
    #[arg(long, overrides_with = "no_mask")]
    pub mask: bool,

    /// Let the command's output through untouched (it keeps the terminal, colours, progress bars).
    #[arg(long, overrides_with = "mask")]
    pub no_mask: bool,

    /// Do not save cme's non-secret config changes (cloud_id, settings) into the base config.
    #[arg(long)]
    pub no_write_back: bool,

    /// Seconds the command gets to exit after a forwarded SIGTERM/SIGINT/SIGHUP/SIGQUIT before
    /// its whole process group is killed; also the longest write-back waits for another run's
    /// save to finish.
    #[arg(long, env = names::CME_EXEC_GRACE, hide_env_values = true, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub grace: f64,

    /// Before starting the command, log in to each instance as cme would (like `check
    /// --live`); when one does not authenticate, start nothing and exit 125.
    #[arg(long)]
    pub check_live: bool,

    /// Warn on stderr about a credential whose store says it expires within this many days
    /// (the command still runs).
    #[arg(long, value_name = "DAYS", default_value_t = crate::expiry::DEFAULT_WARN_DAYS)]
    pub warn_within: u32,

    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND", required = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Where to write the config; `-` writes it to stdout (needs --force-stdout).
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,

    /// The file's permission bits, in octal: world-writable is refused, readable by others
    /// (0644) is warned about; 0640 shares it with a group.
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,

    /// Allow `--output -`: the config, secrets included, goes to stdout.
    #[arg(long)]
    pub force_stdout: bool,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The config file to trust [default: ./cme-exec.toml].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Show what the file makes cme-exec run, contact and read, and record nothing.
    #[arg(long, conflicts_with_all = ["list", "revoke", "yes"])]
    pub show: bool,

    /// Record the trust without asking (needed when stdin is not a terminal).
    #[arg(short, long, conflicts_with_all = ["list", "revoke"])]
    pub yes: bool,

    /// Remove the file's trust record instead.
    #[arg(long, conflicts_with = "list")]
    pub revoke: bool,

    /// List the trusted files (path and content hash).
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The cme config to import [default: $CME_CONFIG_PATH, else
    /// $XDG_CONFIG_HOME/confluence-markdown-exporter/app_data.json, as cme finds it]
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,

    /// Where the secrets go: file:///DIR (0600 files in a 0700 directory), vault://MOUNT/PREFIX
    /// (one KV document per instance; VAULT_ADDR, VAULT_TOKEN, ... as for reads),
    /// aws-sm://PREFIX/ (one secret per instance; the AWS SDK's default chain), or NAME://...
    /// for a [providers.NAME] table of one of these kinds in the cme-exec.toml import writes
    /// (its address, CA, auth and agent settings apply, as for reads).
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// Show what would be written where, and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// After everything was written and reads back, rewrite the original without the secret
    /// values imported (read again first: a field added or changed meanwhile stays; atomically,
    /// its mode kept).
    #[arg(long)]
    pub remove_secrets: bool,

    /// The report: lines of text, or one JSON document (`ok`, `error`, `instances`, `files`, ...).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A Confluence instance's base URL, such as https://company.atlassian.net (repeatable).
    #[arg(long = "confluence", value_name = "URL")]
    pub confluence: Vec<String>,

    /// A Jira instance's base URL (repeatable).
    #[arg(long = "jira", value_name = "URL")]
    pub jira: Vec<String>,

    /// Where the credentials are kept: vault://MOUNT/PREFIX (one KV document per instance),
    /// aws-sm://PREFIX (one secret per instance), file:///DIR (one 0600 JSON file per
    /// instance), or command (a password manager's command line; pass by default).
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,

    /// How the instances authenticate: token (username and API token: Atlassian Cloud) or pat
    /// (a personal access token: Server and Data Center) [default: token for *.atlassian.net,
    /// else pat]
    #[arg(long, value_enum, value_name = "KIND")]
    pub auth: Option<InitAuth>,

    /// Never ask, even on a terminal: what the flags do not give is an error.
    #[arg(long)]
    pub no_input: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitAuth {
    Token,
    Pat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also make one small read-only call to each Confluence and Jira instance with the
    /// resolved credentials and exactly the authentication cme would use, and report whom it
    /// authenticated as, or why not (401, 403, CAPTCHA, 404/410, a login redirect, TLS,
    /// connection). For *.atlassian.net also compares the site's cloud_id. Respects
    /// --timeout, HTTPS_PROXY/NO_PROXY and cme's CA settings (connection_config.ca_bundle,
    /// verify_ssl, REQUESTS_CA_BUNDLE). Exit 0 only when every instance authenticates.
    #[arg(long)]
    pub live: bool,

    /// Check everything that needs no store: the config (tables, keys, references, schemes),
    /// the base config against cme's schema, the permissions of the config, the base config
    /// and the files that file references name (never read). Builds no provider and contacts
    /// nothing: for pull-request CI without store credentials.
    #[arg(long, conflicts_with_all = ["live", "fail_within"])]
    pub offline: bool,

    /// Warn about a credential whose store says it expires within this many days (from
    /// `expires_at`: a sibling key in its document, Vault KV v2 custom_metadata, an AWS tag).
    #[arg(long, value_name = "DAYS", default_value_t = crate::expiry::DEFAULT_WARN_DAYS)]
    pub warn_within: u32,

    /// Fail (exit 1) when a credential expires within this many days, or has expired: for CI.
    #[arg(long, value_name = "DAYS")]
    pub fail_within: Option<u32>,
}

/// The shells `completions` writes for: clap_complete's, and nushell (clap_complete_nushell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Elvish,
    Fish,
    Nushell,
    Powershell,
    Zsh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl RunArgs {
    /// Whether one output stream (stdout or stderr, decided for each on its own) is masked:
    /// `--mask`/`--no-mask`, else on when that stream is not a terminal (a CI log, a file,
    /// `2>export.log`) or `CI` is set. A terminal stream stays the child's own.
    pub fn masking(&self, stream_is_terminal: bool, ci: bool) -> bool {
        if self.mask {
            true
        } else if self.no_mask {
            false
        } else {
            !stream_is_terminal || ci
        }
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        // 0 is not "no limit": a run that can wait forever on a silent store is never what CI
        // wants, and 86400 is there for whoever needs a very long wait.
        _ => Err("expected a number of seconds greater than 0 and at most 86400 (0 does not mean \"no limit\")".into()),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => {
            if allows(m, Who::Others, Access::Write) {
                Err("refusing a world-writable mode for a file holding secrets".into())
            } else {
                Ok(m)
            }
        }
        _ => Err("expected octal permission bits such as 0600 or 0640".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn long_version_lists_the_backends_of_this_build() {
        let text = long_version();
        assert!(text.contains("+env +file +command"), "{text}");
        for (feature, on) in [
            ("vault", cfg!(feature = "vault")),
            ("aws-sm", cfg!(feature = "aws-sm")),
            ("aws-ssm", cfg!(feature = "aws-ssm")),
        ] {
            let sign = if on { '+' } else { '-' };
            assert!(text.contains(&format!("{sign}{feature}")), "{text}");
        }
    }

    #[test]
    fn run_is_the_default_command() {
        for args in [
            &["cme-exec", "--via", "file", "--", "cme", "pages", "x"][..],
            &[
                "cme-exec", "-c", "f.toml", "-vv", "--via", "file", "--", "cme", "pages", "x",
            ],
            &[
                "cme-exec",
                "--config=f.toml",
                "--timeout",
                "3",
                "run",
                "--via",
                "file",
                "--",
                "cme",
                "pages",
                "x",
            ],
        ] {
            let cli = parse(args).unwrap();
            let Command::Run(run) = cli.command else {
                panic!("{args:?}")
            };
            assert_eq!(run.via, Via::File);
            assert_eq!(run.command, ["cme", "pages", "x"]);
        }
        let cli = parse(&["cme-exec", "-c", "f.toml", "check", "--format", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Check(CheckArgs {
                format: Format::Json,
                live: false,
                offline: false,
                fail_within: None,
                ..
            })
        ));
        let help = parse(&["cme-exec", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(parse(&["cme-exec"]).is_err());
    }

    #[test]
    fn a_command_without_double_dash_gets_a_hint() {
        for (args, tip) in [
            (
                &["cme-exec", "cme", "pages", "https://x"][..],
                "tip: cme-exec -- cme ...",
            ),
            (
                &[
                    "cme-exec", "-c", "f.toml", "run", "--via", "file", "cme", "pages",
                ][..],
                "tip: cme-exec -c f.toml --via file -- cme ...",
            ),
        ] {
            let e = parse(args).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(
                    "`cme` is not a cme-exec command; the command to run goes after `--`"
                ) && text.contains(tip),
                "{text}"
            );
        }
        // Other mistakes keep clap's own message.
        let e = parse(&["cme-exec", "check", "--nope"]).unwrap_err();
        assert!(!e.to_string().contains("tip: cme-exec"), "{e}");
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert!(parse_mode("0666").is_err());
        assert!(parse_mode("9").is_err());
    }
}
