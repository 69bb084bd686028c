//! The commands: each loads what it needs, does its work, and returns an exit code.

mod check;
mod explain;
mod man;
mod render;
mod run;
mod trust;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory as _;
use cme_exec_providers::{Context, EnvReader};

use crate::cli::{Cli, Command};
use crate::cme_config::{base, BaseConfig};
use crate::config::{self, Config};
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::resolve::{self, Resolution};

pub fn dispatch(cli: Cli) -> Exit {
    match cli.command {
        Command::Run(ref args) => run::run(&cli, args),
        Command::Render(ref args) => render::render(&cli, args),
        Command::Check(ref args) => check::check(&cli, args),
        Command::Explain(ref args) => explain::explain(&cli, args),
        Command::Trust(ref args) => trust::trust(args),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when stdout fails (`| head -1`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cme-exec", &mut script);
            crate::stdout::write(&script);
            Exit::Success
        }
        Command::Man { ref dir } => man::man(dir.as_deref()),
    }
}

/// What every command that resolves needs: the config, the provider context, the base config.
pub struct Prepared {
    pub config: Config,
    pub ctx: Arc<Context>,
    pub base: BaseConfig,
}

pub fn prepare(cli: &Cli) -> Result<Prepared, Error> {
    let env = EnvReader::from_process();
    crate::envnames::check_unknown(&env)?;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::new("cannot read the working directory").cause(e.to_string()))?;
    let config = config::load(cli.config.as_deref(), &env, &cwd)?;
    let base_dir: PathBuf = config.source.base_dir(&cwd);
    let base = base::load(&base::locate(&config, &env, &base_dir))?;
    let ctx =
        Arc::new(Context::new(base_dir, env).with_timeout(Duration::from_secs_f64(cli.timeout)));
    Ok(Prepared { config, ctx, base })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new("cannot start the async runtime").cause(e.to_string()))
}

pub fn options(cli: &Cli, identities: bool) -> resolve::Options {
    resolve::Options {
        deadline: Duration::from_secs_f64(cli.timeout),
        identities,
    }
}

/// For `check` and `explain`: prepare and resolve. A failure is printed (`on_config_error` sees
/// a configuration error first) and becomes the exit code: 1, or 128+N after signal N.
pub fn prepare_and_resolve(
    cli: &Cli,
    identities: bool,
    on_config_error: impl FnOnce(&Error),
) -> Result<(Prepared, Resolution), Exit> {
    let prepared = prepare(cli).map_err(|e| {
        on_config_error(&e);
        error::print(&e);
        if e.is_fatal() {
            Exit::Failed
        } else {
            Exit::CheckFailed
        }
    })?;
    let resolution = resolve_blocking(cli, &prepared, identities).map_err(|(exit, e)| {
        error::print(&e);
        if matches!(exit, Exit::Signal(_)) {
            exit
        } else {
            Exit::CheckFailed
        }
    })?;
    Ok((prepared, resolution))
}

/// Resolves without a child (render, check, explain); a terminating signal aborts.
pub fn resolve_blocking(
    cli: &Cli,
    prepared: &Prepared,
    identities: bool,
) -> Result<Resolution, (Exit, Error)> {
    let rt = runtime().map_err(|e| (Exit::Failed, e))?;
    rt.block_on(async {
        let mut signals = crate::child::signals::Signals::install()
            .map_err(|e| (Exit::Failed, Error::new("cannot install signal handlers").cause(e.to_string())))?;
        let options = options(cli, identities);
        let resolver = resolve::Resolver::new(&prepared.config, &prepared.ctx);
        let result = tokio::select! {
            r = resolver.resolve(&options) => Ok(r),
            sig = signals.terminating() => Err((Exit::Signal(sig.number()), Error::new(format!("interrupted by {sig} while resolving"))))
        };
        resolver.finish().await;
        result
    })
}
