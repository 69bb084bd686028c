//! The commands: each loads what it needs (through [`crate::session`]), does its work, and
//! returns an exit code. [`dispatch`] picks the command.

mod check;
mod explain;
mod import;
mod init;
mod man;
mod render;
mod run;
mod trust;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

pub fn dispatch(cli: Cli) -> Exit {
    match cli.command {
        Command::Run(ref args) => run::run(&cli, args),
        Command::Render(ref args) => render::render(&cli, args),
        Command::Check(ref args) => check::check(&cli, args),
        Command::Explain(ref args) => explain::explain(&cli, args),
        Command::Import(ref args) => import::import(&cli, args),
        Command::Init(ref args) => init::init(&cli, args),
        Command::Trust(ref args) => trust::trust(args),
        Command::Completions { shell } => {
            use crate::cli::CompletionShell as S;
            use clap_complete::Shell;
            // Into memory first: clap_complete panics when stdout fails (`| head -1`).
            let mut script = Vec::new();
            let (cmd, name) = (&mut Cli::command(), "cme-exec");
            match shell {
                S::Bash => clap_complete::generate(Shell::Bash, cmd, name, &mut script),
                S::Elvish => clap_complete::generate(Shell::Elvish, cmd, name, &mut script),
                S::Fish => clap_complete::generate(Shell::Fish, cmd, name, &mut script),
                S::Powershell => clap_complete::generate(Shell::PowerShell, cmd, name, &mut script),
                S::Zsh => clap_complete::generate(Shell::Zsh, cmd, name, &mut script),
                S::Nushell => {
                    clap_complete::generate(clap_complete_nushell::Nushell, cmd, name, &mut script)
                }
            }
            crate::stdout::write(&script);
            Exit::Success
        }
        Command::Man { ref dir } => man::man(dir.as_deref()),
    }
}
