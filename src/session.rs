//! What the commands share, below them: loading the configuration and the provider context
//! ([`prepare`]), the async runtime, resolving without a child ([`resolve_blocking`]) and the
//! live check without one ([`live_blocking`]). Commands import this module; it imports no
//! command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cme_exec_providers::{Context, EnvReader};

use crate::cli::{Cli, Command};
use crate::cme_config::{base, BaseConfig};
use crate::config::{self, Config};
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::resolve::{self, Resolution};

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
    select_cme_release(cli, &env);
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

/// The instances whose references did not all resolve: the live check does not call them.
pub fn unresolved_instances(
    resolution: &Resolution,
) -> std::collections::BTreeSet<(crate::config::Product, String)> {
    resolution
        .failures()
        .filter_map(|v| Some((v.product?, v.url.clone()?)))
        .collect()
}

/// `check --live` without a child: every resolved instance called once, concurrently, under
/// `--timeout`; a terminating signal aborts.
pub fn live_blocking(
    cli: &Cli,
    prepared: &Prepared,
    resolution: &Resolution,
) -> Result<Vec<crate::live::Report>, (Exit, Error)> {
    let rt = runtime().map_err(|e| (Exit::Failed, e))?;
    rt.block_on(async {
        let mut signals = crate::child::signals::Signals::install().map_err(|e| {
            (
                Exit::Failed,
                Error::new("cannot install signal handlers").cause(e.to_string()),
            )
        })?;
        let settings = live_settings(cli, prepared);
        let skip = unresolved_instances(resolution);
        tokio::select! {
            r = crate::live::check_all(&resolution.auth, &settings, &skip) => r.map_err(|e| (Exit::CheckFailed, e)),
            sig = signals.terminating() => Err((Exit::Signal(sig.number()), Error::new(format!("interrupted by {sig} during the live check"))))
        }
    })
}

pub fn live_settings(cli: &Cli, prepared: &Prepared) -> crate::live::Settings {
    crate::live::Settings::from_cme(
        &prepared.base,
        &prepared.ctx.env,
        Duration::from_secs_f64(cli.timeout),
    )
}

/// Chooses the cme release whose schema validates the config: `$CME_EXEC_CME_VERSION`, else
/// the release installed behind the command (`run`), else behind `cme` on PATH, else the newest
/// embedded one. Said at -v; a release outside the supported range is warned about.
fn select_cme_release(cli: &Cli, env: &EnvReader) {
    use crate::cme_config::{release, schema};
    let path_var = env.all().get(std::ffi::OsStr::new(crate::envnames::PATH));
    let (version, from) = if let Some(v) = env
        .var(crate::envnames::CME_EXEC_CME_VERSION)
        .filter(|v| !v.trim().is_empty())
    {
        (
            v.trim().to_owned(),
            crate::envnames::CME_EXEC_CME_VERSION.to_owned(),
        )
    } else {
        let command = match &cli.command {
            Command::Run(args) => args.command.first().map(std::path::PathBuf::from),
            _ => None,
        };
        let found = command
            .and_then(|c| release::detect(&c, path_var.map(|v| v.as_os_str())))
            .or_else(|| {
                release::detect(std::path::Path::new("cme"), path_var.map(|v| v.as_os_str()))
            });
        match found {
            Some((v, at)) => (v, at.display().to_string()),
            None => {
                tracing::info!(
                    release = schema::cme_version(),
                    "no cme installation found; validating for the newest supported cme"
                );
                return;
            }
        }
    };
    let selection = schema::select(&version);
    let (oldest, newest) = schema::supported_range();
    match selection.fit {
        schema::Fit::Exact => {
            tracing::info!(release = version, from, "validating the config for this cme release");
        }
        schema::Fit::Nearest => tracing::info!(
            release = version,
            from,
            schema = selection.used,
            "no schema of this cme release is embedded; using the nearest older release's"
        ),
        schema::Fit::Newer => error::warn(format_args!(
            "cme {version} ({from}) is newer than the newest release this cme-exec knows ({newest}); \
             the config is checked against {newest}'s settings"
        )),
        schema::Fit::Older => error::warn(format_args!(
            "cme {version} ({from}) is older than the oldest supported release ({oldest}); \
             the config is checked against {oldest}'s settings"
        )),
    }
}
