//! `cme-exec render --output PATH`: the config, written atomically, for an init container.

use std::io::Write as _;

use crate::atomic;
use crate::cli::{Cli, RenderArgs};
use crate::cme_config;
use crate::error::{self, Error};
use crate::exit::Exit;
use cme_exec_providers::secure_io::{allows, Access, Who};

pub fn render(cli: &Cli, args: &RenderArgs) -> Exit {
    match render_inner(cli, args) {
        Ok(()) => Exit::Success,
        Err((exit, e)) => {
            error::print(&e);
            exit
        }
    }
}

fn render_inner(cli: &Cli, args: &RenderArgs) -> Result<(), (Exit, Error)> {
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && !args.force_stdout {
        return Err((
            Exit::Failed,
            Error::new("refusing to write the config (with its secrets) to stdout")
                .hint("add --force-stdout if that is really what you want"),
        ));
    }
    if !to_stdout {
        atomic::refuse_symlink(&args.output).map_err(|e| (Exit::Failed, e))?;
    }
    let prepared = crate::session::prepare(cli).map_err(|e| (Exit::Failed, e))?;
    let resolution = crate::session::resolve_blocking(cli, &prepared, false)?;
    if !resolution.is_ok() {
        return Err((Exit::Failed, resolution.error()));
    }
    cme_config::release::check_auth(&resolution.auth).map_err(|e| (Exit::Failed, e))?;
    let config = cme_config::render(&prepared.base, &resolution.auth);
    if to_stdout {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&config)
            .and_then(|()| out.flush())
            .map_err(|e| {
                (
                    Exit::Failed,
                    Error::new("cannot write to stdout").cause(e.to_string()),
                )
            });
    }
    // Missing parent directories are created (mode 0700, like a private directory), as cme
    // itself does for its config, and said: a misspelt directory is then seen, not silent.
    let missing = missing_ancestors(&args.output);
    atomic::write(&args.output, &config, args.mode).map_err(|e| (Exit::Failed, e))?;
    warn_if_others_can_read(&args.output, args.mode);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|d| d.display().to_string()).collect();
        error::note(format!(
            "created the director{} {} (mode 0700) for --output",
            if list.len() == 1 { "y" } else { "ies" },
            list.join(", ")
        ));
    }
    Ok(())
}

/// A mode that lets every user read the secrets is allowed (the user asked for it) but never
/// silent. Group-readable (`0640`) is not warned about: a group shared with the cme container is
/// the documented way to hand the file over ([Kubernetes](../../docs/kubernetes.md)).
fn warn_if_others_can_read(path: &std::path::Path, mode: u32) {
    if allows(mode, Who::Others, Access::Read) {
        error::warn(format_args!(
            "{} is readable by every user on this system (mode {mode:04o}): it holds secrets; \
             prefer 0600, or 0640 with a group shared with the reader",
            path.display()
        ));
    }
}

/// The directories above `path` that do not exist yet, outermost first.
fn missing_ancestors(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut missing: Vec<std::path::PathBuf> = path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
        .take_while(|d| std::fs::symlink_metadata(d).is_err())
        .map(std::path::Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}
