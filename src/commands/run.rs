//! `cme-exec [run] -- COMMAND...`

use std::ffi::OsString;
use std::time::Duration;

use crate::child::{self, signals::Signals, EnvPolicy};
use crate::cli::{Cli, RunArgs};
use crate::cme_config::{self, writeback};
use crate::envnames as names;
use crate::error::{self, Error};
use crate::exit::Exit;
use crate::handover::{Handover, Via};
use crate::resolve;

pub fn run(cli: &Cli, args: &RunArgs) -> Exit {
    match run_inner(cli, args) {
        Ok(exit) => exit,
        Err((exit, err)) => {
            error::print(&err);
            exit
        }
    }
}

fn failed(e: Error) -> (Exit, Error) {
    (Exit::Failed, e)
}

fn run_inner(cli: &Cli, args: &RunArgs) -> Result<Exit, (Exit, Error)> {
    let prepared = crate::session::prepare(cli).map_err(failed)?;
    let policy = EnvPolicy {
        empty: args.empty_env,
        keep: args.keep_env.clone(),
    };

    // 126/127 before any secret is fetched.
    let path_var = if policy.empty && !policy.keep.iter().any(|k| k == names::PATH) {
        None
    } else {
        prepared
            .ctx
            .env
            .all()
            .get(std::ffi::OsStr::new(names::PATH))
            .cloned()
    };
    let program = child::find_program(&args.command[0], path_var.as_deref())?;

    let live = args
        .check_live
        .then(|| crate::session::live_settings(cli, &prepared));
    let rt = crate::session::runtime().map_err(failed)?;
    rt.block_on(async {
        let mut signals = Signals::install().map_err(|e| {
            failed(Error::new("cannot install signal handlers").cause(e.to_string()))
        })?;
        let options = crate::session::options(cli, false);
        let resolver = resolve::Resolver::new(&prepared.config, &prepared.ctx);
        let resolution = tokio::select! {
            r = resolver.resolve(&options) => Ok(r),
            sig = signals.terminating() => Err(sig),
        };
        // Revoke what the providers obtained (a login token) in a task of its own: it runs
        // while the child starts, and is awaited before cme-exec exits, whatever happened.
        let finishing = tokio::spawn(resolver.finisher());
        let outcome = match resolution {
            Err(sig) => Err((
                Exit::Signal(sig.number()),
                Error::new(format!(
                    "interrupted by {sig} while resolving; nothing was started"
                )),
            )),
            Ok(resolution) => {
                run_child(
                    args,
                    &prepared,
                    &program,
                    &policy,
                    &mut signals,
                    &resolution,
                    live.as_ref(),
                )
                .await
            }
        };
        let _ = finishing.await;
        outcome
    })
}

/// Everything after a complete resolution: hand-over, the child, write-back, cleanup.
async fn run_child(
    args: &RunArgs,
    prepared: &crate::session::Prepared,
    program: &std::path::Path,
    policy: &EnvPolicy,
    signals: &mut Signals,
    resolution: &resolve::Resolution,
    live: Option<&crate::live::Settings>,
) -> Result<Exit, (Exit, Error)> {
    if !resolution.is_ok() {
        return Err(failed(resolution.error()));
    }
    cme_config::release::check_auth(&resolution.auth).map_err(failed)?;
    warn_expiring(resolution, args.warn_within);
    if let Some(settings) = live {
        check_live(settings, signals, resolution).await?;
    }
    let config = cme_config::render(&prepared.base, &resolution.auth);
    let handover = Handover::create(
        args.via,
        &config,
        &resolution.auth,
        &prepared.base.path,
        args.dir.as_deref(),
    )
    .map_err(failed)?;
    tracing::info!(via = ?args.via, at = handover.describe(), "config handed over");

    let mut add: Vec<(OsString, OsString)> = handover
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                std::os::unix::ffi::OsStringExt::from_vec(v.to_vec()),
            )
        })
        .collect();
    let env = child::child_env(
        prepared.ctx.env.all(),
        policy,
        &resolution.consumed_env,
        &add,
    );
    // With --via env these are the credentials as JSON: wiped, not just freed.
    cme_exec_providers::context::wipe_env(&mut add);
    let ci = prepared
        .ctx
        .env
        .var(names::CI)
        .is_some_and(|v| v != "false" && v != "0");
    // Each stream on its own: `cme-exec -- cme ... 2>export.log` on a terminal masks the log.
    let mask_stdout = args.masking(std::io::IsTerminal::is_terminal(&std::io::stdout()), ci);
    let mask_stderr = args.masking(std::io::IsTerminal::is_terminal(&std::io::stderr()), ci);
    let spec = child::Spec {
        program,
        argv: &args.command,
        env,
        grace: Duration::from_secs_f64(args.grace),
        mask: (mask_stdout || mask_stderr).then_some(child::Mask {
            auth: &resolution.auth,
            stdout: mask_stdout,
            stderr: mask_stderr,
        }),
    };
    let exit = child::run(spec, signals).await?;

    let write_back = prepared.config.cme.write_back && !args.no_write_back && args.via != Via::Env;
    if write_back {
        if let Some(after) = handover.read_back() {
            // The wait for another run's save is bounded by --grace: cme-exec's own work after
            // the child exits never takes longer than the grace it gives the child.
            let lock_wait = Duration::from_secs_f64(args.grace);
            match after
                .and_then(|after| writeback::write_back(&prepared.base, &config, &after, lock_wait))
            {
                Ok(report) => {
                    for path in &report.written {
                        tracing::info!(path, file = %prepared.base.path.display(), "wrote back");
                    }
                    if !report.written.is_empty() {
                        follow_trust(&prepared.config, &prepared.base.path);
                    }
                    for c in &report.conflicts {
                        error::warn(format_args!(
                            "{} changed {} during the run; its value was kept and this run's change was not saved (to save it: {})",
                            prepared.base.path.display(),
                            c.key,
                            c.save_with
                        ));
                    }
                    for path in &report.dropped_secrets {
                        error::warn(format_args!(
                            "cme changed the secret field {path}; it was not saved anywhere (store it in your secret store)"
                        ));
                    }
                }
                Err(e) => error::warn(e),
            }
        }
    }
    drop(handover);
    Ok(exit)
}

/// A trusted `./cme-exec.toml` pins its base config's content; this run's own write-back
/// changed it, so the record follows (the next run is not refused for it).
fn follow_trust(config: &crate::config::Config, base: &std::path::Path) {
    if let (true, crate::config::Source::File(canonical)) = (config.trusted_in_cwd, &config.source)
    {
        let env = cme_exec_providers::EnvReader::from_process();
        if let Err(e) = crate::config::trust::follow_own_write(&env, canonical, base) {
            error::warn(e);
        }
    }
}

/// `run --check-live`: every instance must authenticate before the command starts.
async fn check_live(
    settings: &crate::live::Settings,
    signals: &mut Signals,
    resolution: &resolve::Resolution,
) -> Result<(), (Exit, Error)> {
    let none = std::collections::BTreeSet::new();
    let reports = tokio::select! {
        r = crate::live::check_all(&resolution.auth, settings, &none) => r.map_err(failed)?,
        sig = signals.terminating() => return Err((
            Exit::Signal(sig.number()),
            Error::new(format!("interrupted by {sig} during the live check; nothing was started")),
        )),
    };
    let bad: Vec<_> = reports.iter().filter(|r| !r.is_ok()).collect();
    for r in reports.iter().filter(|r| r.is_ok()) {
        tracing::info!(instance = r.place(), call = r.call, "{}", r.verdict());
    }
    if bad.is_empty() {
        return Ok(());
    }
    let mut err = Error::new(format!(
        "{} of {} instance{} did not authenticate (--check-live); nothing was started",
        bad.len(),
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    ));
    for r in bad {
        err = err.detail(format!(
            "{} GET {} ({}): {}",
            r.place(),
            r.call,
            r.auth.name(),
            r.verdict()
        ));
    }
    Err(failed(err))
}

/// `run` warns about a credential that expires within `--warn-within` days (or has), and still
/// runs. Only expiries that came with the values: `run` makes no request for metadata.
fn warn_expiring(resolution: &resolve::Resolution, days: u32) {
    let now = crate::expiry::now();
    for v in &resolution.verdicts {
        if let Some(e) = &v.expires {
            if e.within(now, days) {
                error::warn(format_args!(
                    "{} ({}): {}",
                    v.place(),
                    v.source,
                    e.describe(now)
                ));
            }
        }
    }
}
