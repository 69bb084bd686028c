//! `cme-exec init`: a first config for a newcomer, as the peers' `init` commands give one. It
//! writes references only (one document per instance in the chosen store) and prints the exact
//! commands that put the credentials there, each reading the secret from the terminal rather
//! than from its command line (which shells keep in their history).
//!
//! Where: `--config`, else `$CME_EXEC_CONFIG` (absolute), else the user's config
//! (`$XDG_CONFIG_HOME/cme-exec/config.toml`), which is found without trust. A
//! `./cme-exec.toml` of the working directory is written when asked for, but not trusted:
//! trusting is reviewing what a file makes cme-exec contact, and `init` may be run by a
//! script the user did not read; the next step it prints is `cme-exec trust`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use cme_exec_providers::EnvReader;

use crate::atomic;
use crate::cli::{Cli, InitArgs, InitAuth};
use crate::config::{self, normalise_url, Product};
use crate::envnames as names;
use crate::error::{self, Error};
use crate::exit::Exit;

pub fn init(cli: &Cli, args: &InitArgs) -> Exit {
    match init_inner(cli, args) {
        Ok(()) => Exit::Success,
        Err(e) => {
            error::print(&e);
            Exit::Failed
        }
    }
}

/// The store the credentials go into.
#[derive(Debug, PartialEq, Eq)]
enum Store {
    /// `vault://MOUNT/PREFIX`.
    Vault { mount: String, prefix: String },
    /// `aws-sm://PREFIX`.
    AwsSm { prefix: String },
    /// `file:///DIR` or `file:DIR` (relative to the config file's directory).
    File { dir: String, absolute: bool },
    /// A `[providers.pass]` command provider around `pass show`.
    Command,
}

/// One instance to write.
struct Instance {
    product: Product,
    url: String,
    auth: InitAuth,
}

const STORE_FORMS: &str = "vault://MOUNT/PREFIX, aws-sm://PREFIX, file:///DIR or command";

fn init_inner(cli: &Cli, args: &InitArgs) -> Result<(), Error> {
    let env = EnvReader::from_process();
    let cwd = std::env::current_dir()
        .map_err(|e| Error::new("cannot read the working directory").cause(e.to_string()))?;
    let target = match (&cli.config, config::from_env_var(&env)?) {
        (Some(p), _) => cwd.join(p),
        (None, Some(p)) => p,
        (None, None) => config_home(&env).join("cme-exec").join("config.toml"),
    };
    // Before any question: an existing file is never replaced.
    refuse_existing(&target)?;
    let interactive =
        !args.no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut asker = Asker::new(interactive);

    let (mut confluence, mut jira) = (args.confluence.clone(), args.jira.clone());
    if confluence.is_empty() && jira.is_empty() {
        if !interactive {
            return Err(missing("--confluence URL or --jira URL"));
        }
        confluence = asker.words("Confluence URLs (space-separated; empty for none)")?;
        jira = asker.words("Jira URLs (space-separated; empty for none)")?;
        if confluence.is_empty() && jira.is_empty() {
            return Err(Error::new("no instance given: cme-exec needs at least one"));
        }
    }
    let store_text = match &args.store {
        Some(s) => s.clone(),
        None if interactive => {
            let answer = asker.line(&format!("Store: {STORE_FORMS} [vault://secret/cme]"))?;
            if answer.is_empty() {
                "vault://secret/cme".to_owned()
            } else {
                answer
            }
        }
        None => return Err(missing("--store STORE")),
    };
    let store = parse_store(&store_text)?;

    let mut instances = Vec::new();
    let mut problems = Vec::new();
    for (product, urls) in [(Product::Confluence, &confluence), (Product::Jira, &jira)] {
        for raw in urls {
            match normalise_url(product, raw) {
                Ok(url) => {
                    let auth = args.auth.unwrap_or(if is_cloud(&url) {
                        InitAuth::Token
                    } else {
                        InitAuth::Pat
                    });
                    instances.push(Instance { product, url, auth });
                }
                Err(e) => problems.push(format!(
                    "--{product} {}: {e}",
                    config::redact_user_info(raw)
                )),
            }
        }
    }
    if !problems.is_empty() {
        let mut e = Error::new("init: the instances given are not usable");
        for p in problems {
            e = e.detail(p);
        }
        return Err(e);
    }

    let text = config_text(&instances, &store);
    // The same parser as every command's: what is written is a config cme-exec accepts.
    config::parse_bytes(&target, text.as_bytes()).map_err(|e| {
        Error::new("init made a config it cannot read (a bug)").cause(e.to_string())
    })?;
    let base_dir = target.parent().unwrap_or(Path::new("/")).to_owned();
    atomic::write_new(&target, text.as_bytes(), 0o600).map_err(|e| {
        if e.message().starts_with(atomic::EXISTS) {
            exists_hint(e)
        } else {
            e
        }
    })?;
    error::note(format!("wrote {} (mode 0600)", target.display()));

    let mut out = String::new();
    out.push_str("Put each instance's credentials into the store (each command reads the secret from the terminal, never from its command line):\n\n");
    if let Store::File { .. } = store {
        out.push_str(&format!(
            "  install -d -m 0700 {}\n\n",
            file_dir(&store, &base_dir).display()
        ));
    }
    for i in &instances {
        out.push_str(&format!("  # {} {}: {}\n", i.product, i.url, needs(i)));
        for line in store_commands(&store, i, &base_dir) {
            out.push_str(&format!("  {line}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!("{}\n", store_requirements(&store)));
    let check = next_command(cli, &target, &cwd);
    out.push_str(&format!(
        "\nThen check that every reference resolves:\n\n  {check}\n"
    ));
    crate::stdout::write(out.as_bytes());
    Ok(())
}

/// What to run next: `check` finds the user config by itself; another path needs `--config`;
/// a `./cme-exec.toml` of the working directory must be trusted first.
fn next_command(cli: &Cli, target: &Path, cwd: &Path) -> String {
    if is_working_directory_config(target, cwd) {
        return "cme-exec trust    # a ./cme-exec.toml found in the working directory is used only once trusted\n  cme-exec check".to_owned();
    }
    match &cli.config {
        Some(p) => format!("cme-exec --config {} check", p.display()),
        None => "cme-exec check".to_owned(),
    }
}

fn is_working_directory_config(target: &Path, cwd: &Path) -> bool {
    target.file_name().is_some_and(|n| n == "cme-exec.toml")
        && target
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(cwd.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
}

fn refuse_existing(target: &Path) -> Result<(), Error> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Err(exists_hint(Error::new(format!(
            "{} {}: it already exists",
            atomic::EXISTS,
            target.display()
        ))));
    }
    Ok(())
}

fn exists_hint(e: Error) -> Error {
    e.hint(
        "edit that file (see `cme-exec check`), or write a new one elsewhere with `cme-exec \
         --config NEW.toml init ...`",
    )
}

fn missing(what: &str) -> Error {
    Error::new(format!(
        "init needs {what}, and there is no terminal to ask on"
    ))
    .hint(format!(
        "cme-exec init --confluence https://company.atlassian.net --store vault://secret/cme \
         (stores: {STORE_FORMS})"
    ))
}

fn config_home(env: &EnvReader) -> PathBuf {
    env.var(names::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.var(names::HOME).map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
}

fn is_cloud(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h.ends_with(".atlassian.net"))
}

/// Reads `--store`. Each form is checked here, so that a wrong one is said before anything is
/// written.
fn parse_store(raw: &str) -> Result<Store, Error> {
    let raw = raw.trim();
    let bad = |why: &str| {
        Error::new(format!("--store {raw}: {why}")).hint(format!("give one of {STORE_FORMS}"))
    };
    if raw == "command" {
        return Ok(Store::Command);
    }
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | '+' | '=')
            })
            && !s.split('/').any(|seg| seg == "." || seg == "..")
    };
    if let Some(rest) = raw.strip_prefix("vault://") {
        let rest = rest.trim_matches('/');
        let (mount, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if mount.is_empty() || !safe(mount) || (!prefix.is_empty() && !safe(prefix)) {
            return Err(bad(
                "expected vault://MOUNT/PREFIX, such as vault://secret/cme",
            ));
        }
        if prefix == "data" || prefix.starts_with("data/") {
            return Err(bad(
                "leave `data/` out: cme-exec adds it for KV v2 (vault://MOUNT/PREFIX)",
            ));
        }
        return Ok(Store::Vault {
            mount: mount.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if let Some(rest) = raw.strip_prefix("aws-sm://") {
        let prefix = rest.trim_matches('/');
        if !prefix.is_empty() && !safe(prefix) {
            return Err(bad("expected aws-sm://PREFIX, such as aws-sm://cme"));
        }
        return Ok(Store::AwsSm {
            prefix: prefix.to_owned(),
        });
    }
    if let Some(rest) = raw.strip_prefix("file:") {
        let (dir, absolute) = match rest.strip_prefix("//") {
            Some(abs) if abs.starts_with('/') => (abs.trim_end_matches('/'), true),
            Some(_) => return Err(bad("expected file:///ABSOLUTE/DIR or file:RELATIVE/DIR")),
            None => (rest.trim_end_matches('/'), rest.starts_with('/')),
        };
        if dir.is_empty() || !safe(dir.trim_start_matches('/')) {
            return Err(bad(
                "expected file:///DIR with letters, digits and / _ - . in its path",
            ));
        }
        return Ok(Store::File {
            dir: dir.to_owned(),
            absolute,
        });
    }
    let nearest = cme_exec_providers::table::closest(
        raw.split(':').next().unwrap_or(raw),
        ["vault", "aws-sm", "file", "command"],
    )
    .map(|s| format!(" (did you mean {s}?)"))
    .unwrap_or_default();
    Err(bad(&format!("not a store cme-exec init knows{nearest}")))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The reference of an instance's document (without `#KEY`).
fn document(store: &Store, i: &Instance) -> String {
    let name = config::slug(&i.url);
    match store {
        Store::Vault { mount, prefix } => format!("vault://{mount}/{}", join(prefix, &name)),
        Store::AwsSm { prefix } => format!("aws-sm://{}", join(prefix, &name)),
        Store::File {
            dir,
            absolute: true,
        } => format!("file://{dir}/{name}.json"),
        Store::File {
            dir,
            absolute: false,
        } => format!("file:{dir}/{name}.json"),
        Store::Command => format!("pass://cme/{name}"),
    }
}

fn keys(i: &Instance) -> &'static [&'static str] {
    match i.auth {
        InitAuth::Token => &["username", "api_token"],
        InitAuth::Pat => &["pat"],
    }
}

fn needs(i: &Instance) -> &'static str {
    match i.auth {
        InitAuth::Token => "your Atlassian account's e-mail address and an API token",
        InitAuth::Pat => "a personal access token",
    }
}

/// TOML basic string (JSON's syntax is valid TOML for these values).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn config_text(instances: &[Instance], store: &Store) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "# Written by `cme-exec init`: references only, the credentials stay in the store.\n\
         # Every setting: {}\n",
        error::docs_url("configuration.md")
    ));
    if *store == Store::Command {
        t.push_str(&format!(
            "\n# pass (password-store); another password manager's command line works the same way:\n\
             # {}\n\
             [providers.pass]\nkind = \"command\"\ncommand = [\"pass\", \"show\", \"{{path}}\"]\nenv = [\"GNUPGHOME\", \"PASSWORD_STORE_DIR\"]\n",
            error::docs_url("providers/command.md")
        ));
    }
    for i in instances {
        let doc = document(store, i);
        t.push_str(&format!("\n[{}.{}]\n", i.product, quoted(&i.url)));
        let width = keys(i).iter().map(|k| k.len()).max().unwrap_or(0);
        for key in keys(i) {
            t.push_str(&format!(
                "{key:width$} = {}\n",
                quoted(&format!("{doc}#{key}"))
            ));
        }
    }
    t
}

/// The commands that put one instance's document into the store. The secret is never an
/// argument: `-` makes `bao kv put` read it from stdin, the AWS CLI reads `file:///dev/stdin`,
/// `cat` and `pass insert -m` read what is pasted until Ctrl-D.
fn store_commands(store: &Store, i: &Instance, base_dir: &Path) -> Vec<String> {
    let name = config::slug(&i.url);
    let json_hint = match i.auth {
        InitAuth::Token => r#"{"username": "you@example.com", "api_token": "..."}"#,
        InitAuth::Pat => r#"{"pat": "..."}"#,
    };
    match store {
        Store::Vault { mount, prefix } => {
            let pairs = match i.auth {
                InitAuth::Token => "username=you@example.com api_token=-",
                InitAuth::Pat => "pat=-",
            };
            vec![format!(
                "bao kv put -mount={mount} {} {pairs}    # type the {} and Ctrl-D",
                join(prefix, &name),
                if i.auth == InitAuth::Token { "API token" } else { "token" }
            )]
        }
        Store::AwsSm { prefix } => vec![format!(
            "aws secretsmanager create-secret --name {} --secret-string file:///dev/stdin    # paste {json_hint}, then Ctrl-D",
            join(prefix, &name)
        )],
        Store::File { .. } => {
            let file = file_dir(store, base_dir).join(format!("{name}.json"));
            vec![format!(
                "(umask 077 && cat > {})    # paste {json_hint}, then Ctrl-D",
                file.display()
            )]
        }
        Store::Command => vec![format!(
            "pass insert -m cme/{name}    # paste {json_hint}, then Ctrl-D"
        )],
    }
}

/// The file store's directory, absolute (a relative one is relative to the config's directory).
fn file_dir(store: &Store, base_dir: &Path) -> PathBuf {
    match store {
        Store::File {
            dir,
            absolute: true,
        } => PathBuf::from(dir),
        Store::File { dir, .. } => base_dir.join(dir),
        _ => base_dir.to_owned(),
    }
}

fn store_requirements(store: &Store) -> String {
    match store {
        Store::Vault { .. } => format!(
            "With VAULT_ADDR set and a token allowed to write there (`bao login`); `vault kv put` \
             takes the same arguments. cme-exec reads with VAULT_ADDR and VAULT_TOKEN, or an auth \
             method: {}",
            error::docs_url("providers/vault.md")
        ),
        Store::AwsSm { .. } => format!(
            "With AWS credentials allowed to create secrets, and AWS_REGION set; cme-exec reads \
             with the same default credential chain: {}",
            error::docs_url("providers/aws-sm.md")
        ),
        Store::File { .. } => "The files hold secrets: keep them 0600 in a 0700 directory \
             (cme-exec refuses a file others can write, and warns about one everyone can read)."
            .to_owned(),
        Store::Command => format!(
            "pass keeps each entry encrypted with your GPG key; cme-exec runs `pass show` for \
             each one: {}",
            error::docs_url("providers/command.md")
        ),
    }
}

/// Questions on stderr, answers from stdin (a terminal).
struct Asker {
    interactive: bool,
}

impl Asker {
    fn new(interactive: bool) -> Self {
        Asker { interactive }
    }

    fn line(&mut self, prompt: &str) -> Result<String, Error> {
        debug_assert!(self.interactive);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{prompt}: ");
        let _ = err.flush();
        let mut answer = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Error::new("cannot read the answer").cause(e.to_string()))?;
        if n == 0 {
            return Err(Error::new(
                "init: no answer (end of input); nothing was written",
            ));
        }
        Ok(answer.trim().to_owned())
    }

    fn words(&mut self, prompt: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .line(prompt)?
            .split([' ', ',', '\t'])
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores() {
        assert_eq!(
            parse_store("vault://secret/cme").unwrap(),
            Store::Vault {
                mount: "secret".into(),
                prefix: "cme".into()
            }
        );
        assert_eq!(
            parse_store("aws-sm://teams/wiki/").unwrap(),
            Store::AwsSm {
                prefix: "teams/wiki".into()
            }
        );
        assert_eq!(
            parse_store("file:///etc/cme/secrets").unwrap(),
            Store::File {
                dir: "/etc/cme/secrets".into(),
                absolute: true
            }
        );
        assert_eq!(parse_store("command").unwrap(), Store::Command);
        let e = parse_store("vault://secret/data/cme")
            .unwrap_err()
            .to_string();
        assert!(e.contains("leave `data/` out"), "{e}");
        let e = parse_store("valt://secret").unwrap_err().to_string();
        assert!(e.contains("did you mean vault?"), "{e}");
        assert!(parse_store("file://host/x").is_err());
        assert!(parse_store("vault://secret/../x").is_err());
    }

    #[test]
    fn every_store_gives_a_config_that_parses() {
        let instances = [
            Instance {
                product: Product::Confluence,
                url: "https://company.atlassian.net".into(),
                auth: InitAuth::Token,
            },
            Instance {
                product: Product::Jira,
                url: "https://jira.example.org:8443/jira".into(),
                auth: InitAuth::Pat,
            },
        ];
        for store in [
            "vault://secret/cme",
            "vault://kv",
            "aws-sm://cme",
            "aws-sm://",
            "file:///etc/cme",
            "file:secrets",
            "command",
        ] {
            let text = config_text(&instances, &parse_store(store).unwrap());
            let parsed = config::parse_bytes(Path::new("t.toml"), text.as_bytes());
            assert!(parsed.is_ok(), "{store}:\n{text}\n{:?}", parsed.err());
        }
        assert_eq!(
            config::slug("https://jira.example.org:8443/jira"),
            "jira.example.org-8443-jira"
        );
    }
}
