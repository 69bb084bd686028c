//! `cme-exec man [--dir DIR]`: the man pages, generated from the same clap definitions as
//! `--help`.
//!
//! Without `--dir`, `cme-exec.1` goes to stdout. It lists `cme-exec-run(1)` and the other
//! subcommands' pages, which `--dir DIR` writes (with `cme-exec.1`) into DIR. Because `run` is the
//! default command, the main page also carries run's options. Every page has ENVIRONMENT and
//! EXIT STATUS sections, which clap_mangen does not make.

use std::path::Path;

use clap::CommandFactory as _;
use clap_mangen::Man;
use roff::{bold, roman, Roff};

use crate::cli::Cli;
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::stdout;

pub fn man(dir: Option<&Path>) -> Exit {
    let result = match dir {
        None => main_page().map(|page| stdout::write(&page)),
        Some(dir) => write_all(dir),
    };
    match result {
        Ok(()) => Exit::Success,
        Err(e) => {
            error::print(&e);
            Exit::Failed
        }
    }
}

/// The command tree as the pages show it: built (so subcommands are named `cme-exec-run`), and
/// without clap's `help` subcommand, which has no page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn main_page() -> Result<Vec<u8>, Error> {
    let cmd = command();
    // Taken before the tree is built, so it holds run's own options only (no global ones).
    let run = Cli::command()
        .find_subcommand("run")
        .cloned()
        .map(|run| run.disable_help_flag(true));
    page(&cmd, run.as_ref())
}

/// Writes `cme-exec.1` and one page per subcommand into `dir` (which must exist), and prints
/// each path written.
fn write_all(dir: &Path) -> Result<(), Error> {
    if !dir.is_dir() {
        return Err(Error::new(format!(
            "{} is not a directory; man --dir writes the pages into an existing one",
            dir.display()
        )));
    }
    let cmd = command();
    let mut pages = vec![(Man::new(cmd.clone()).get_filename(), main_page()?)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((Man::new(sub.clone()).get_filename(), page(sub, None)?));
    }
    for (name, bytes) in pages {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| {
            Error::new(format!("cannot write the man page {}", path.display())).cause(e.to_string())
        })?;
        crate::outln!("{}", path.display());
    }
    Ok(())
}

/// One page: clap_mangen's sections in its order, with `run_options` (the main page) as RUN
/// OPTIONS, then ENVIRONMENT and EXIT STATUS, then the version.
fn page(cmd: &clap::Command, run_options: Option<&clap::Command>) -> Result<Vec<u8>, Error> {
    let render = || -> std::io::Result<Vec<u8>> {
        let man = Man::new(cmd.clone());
        let mut out = Vec::new();
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut out)?;
        }
        if let Some(run) = run_options {
            let mut options = Vec::new();
            Man::new(run.clone()).render_options_section(&mut options)?;
            let options = String::from_utf8_lossy(&options).replacen(
                ".SH OPTIONS",
                ".SH \"RUN OPTIONS\"\nThe options of the default command, run (see cme\\-exec\\-run(1)):",
                1,
            );
            out.extend_from_slice(options.as_bytes());
        }
        if cmd.has_subcommands() {
            man.render_subcommands_section(&mut out)?;
            let mut note = Roff::new();
            note.control("PP", []).text([roman(
                "Each subcommand has its own page; cme-exec man --dir DIR writes them all.",
            )]);
            note.to_writer(&mut out)?;
        }
        sections().to_writer(&mut out)?;
        if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
            man.render_version_section(&mut out)?;
        }
        Ok(out)
    };
    render().map_err(|e| Error::new("cannot render the man page").cause(e.to_string()))
}

/// ENVIRONMENT and EXIT STATUS (the same on every page).
fn sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    for (names, text) in ENVIRONMENT {
        r.control("TP", [])
            .text([bold(*names)])
            .text([roman(*text)]);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in EXIT_STATUS {
        r.control("TP", []).text([bold(*code)]).text([roman(*text)]);
    }
    r.control("SH", ["DOCUMENTATION"]);
    r.text([roman(crate::error::docs_url("configuration.md"))]);
    r
}

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "CME_EXEC_CONFIG",
        "The config file, when --config is not given.",
    ),
    (
        "CME_EXEC_TIMEOUT, CME_EXEC_VIA, CME_EXEC_GRACE",
        "Defaults for --timeout, --via and --grace.",
    ),
    (
        "CME_EXEC_CONFLUENCE_URL, CME_EXEC_CONFLUENCE_USERNAME, ..._API_TOKEN, ..._PAT, \
         ..._SESSION_COOKIES, ..._CLOUD_ID, ..._FROM, CME_EXEC_JIRA_*, CME_EXEC_AUTH_FROM, \
         CME_EXEC_BASE_CONFIG, CME_EXEC_WRITE_BACK",
        "The configuration when no config file is found: references, never values (see \
         DOCUMENTATION). Any other CME_EXEC_* name is an error.",
    ),
    (
        "VAULT_AGENT_ADDR, VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT, \
         VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_SKIP_VERIFY (and BAO_*)",
        "The built-in vault provider, as the vault CLI reads them. VAULT_AGENT_ADDR (a Vault \
         Agent or OpenBao Proxy, http://... or unix:///PATH) comes first, and then no token is \
         sent: the agent adds its own. Tokens and secret ids cme-exec uses are removed from the \
         command's environment.",
    ),
    (
        "AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SECRETS_MANAGER, \
         AWS_ENDPOINT_URL_SSM, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, \
         AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE",
        "The built-in aws-sm and aws-ssm providers (the AWS SDK's default chain, SSO and \
         credential_process profiles included). Keys and session tokens are removed from the \
         command's environment.",
    ),
    (
        "CME_CONFIG_PATH",
        "Read: cme's own config, the default base config. Set for the command: where its \
         config is (always an absolute path).",
    ),
    (
        "CME_NON_INTERACTIVE",
        "Set to 1 for the command: cme never prompts.",
    ),
    (
        "XDG_CONFIG_HOME, HOME",
        "Where $XDG_CONFIG_HOME/cme-exec/config.toml and cme's own config are looked for.",
    ),
    (
        "XDG_STATE_HOME",
        "Where trust records for working-directory configs (cme-exec trust) and the \
         fingerprint key of explain are kept: $XDG_STATE_HOME/cme-exec (default \
         ~/.local/state/cme-exec).",
    ),
    (
        "CME_EXEC_FINGERPRINT_KEY_FILE",
        "A shared key for explain's fingerprints, so that two machines can compare them.",
    ),
    (
        "CME_EXEC_CME_VERSION",
        "The cme release the config is checked for, instead of the one found behind the \
         command or cme on PATH (render, a wrapper script).",
    ),
    (
        "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE",
        "check --live and run --check-live reach Confluence and Jira as cme's requests would.",
    ),
    (
        "XDG_RUNTIME_DIR, TMPDIR",
        "Where --via file makes its private directory (after --dir; then /dev/shm, /tmp).",
    ),
    (
        "CI",
        "When set, the command's output is masked by default (--mask).",
    ),
    (
        "RUST_LOG",
        "A log filter on stderr, like -v; the HTTP, TLS and SDK crates stay capped.",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "run",
        "The command's own exit code; 128+N when it died from signal N; 125 when cme-exec failed \
         before starting it (nothing started, nothing written); 126 when it cannot be executed; \
         127 when it was not found.",
    ),
    (
        "render",
        "0 when the file is complete and in place; 125 otherwise.",
    ),
    (
        "check, explain",
        "0 when every reference resolved; 1 otherwise; 125 when refused before anything is \
         checked (an untrusted ./cme-exec.toml, an unknown CME_EXEC_* variable).",
    ),
    (
        "init",
        "0 when the config was written; 125 otherwise (nothing is written).",
    ),
    (
        "trust",
        "0 when the file was trusted (or its record removed, or listed); 125 otherwise.",
    ),
    (
        "completions, man",
        "0; 125 when the output cannot be written.",
    ),
    (
        "128+N",
        "Any command interrupted by signal N while resolving.",
    ),
    (
        "101",
        "An internal error (a bug in cme-exec, reported as \"internal error\"); please report \
         it. If it happened after the command started, the command's own code is lost.",
    ),
    (
        "stdout closed",
        "A reader that goes away (cme-exec completions fish | head -1) is not an error: the \
         output stops quietly and the exit code is unchanged.",
    ),
];
