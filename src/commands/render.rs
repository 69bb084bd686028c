//! `cme-exec render --output PATH`: the config, written atomically, for an init container.

use std::io::Write as _;

use crate::atomic;
use crate::cli::{Cli, RenderArgs};
use crate::cme_config;
use crate::error::{self, Error};
use crate::exit::Exit;

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
    let prepared = super::prepare(cli).map_err(|e| (Exit::Failed, e))?;
    let resolution = super::resolve_blocking(cli, &prepared, false)?;
    if !resolution.is_ok() {
        return Err((Exit::Failed, resolution.error()));
    }
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
    atomic::write(&args.output, &config, args.mode, atomic::Symlink::Refuse)
        .map_err(|e| (Exit::Failed, e))
}
