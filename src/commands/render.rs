//! `cme-exec render --output PATH`: the config, written atomically, for an init container.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

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
        refuse_symlink(&args.output).map_err(|e| (Exit::Failed, e))?;
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
    write_new(&args.output, &config, args.mode).map_err(|e| (Exit::Failed, e))
}

fn refuse_symlink(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::new(format!(
            "{} is a symbolic link; refusing to write secrets through it",
            path.display()
        ))
        .hint("remove the link, or give the real path")),
        Ok(m) if !m.is_file() => Err(Error::new(format!(
            "{} exists and is not a regular file",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Temp file in the same directory (created exclusively, links not followed, `mode` whatever
/// the umask), every byte written and fsynced, then renamed over `path`: a reader sees the
/// old file or the whole new one, never a part.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Error::new(format!("{} names no file", path.display())));
    }
    let tmp = dir.join(format!(".{name}.cme-exec-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        refuse_symlink(path).map_err(|e| std::io::Error::other(e.message().to_owned()))?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::new(format!("cannot write {}", path.display())).cause(e.to_string()));
    }
    Ok(())
}
