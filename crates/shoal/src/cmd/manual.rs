//! `shoal completions <shell>` and `shoal man`: generated from the command-line definition,
//! so they never fall behind it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::cli::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<u8> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut script);
    print_all(&script)
}

/// Writes to standard output; a reader that went away (`| head`) ends the command quietly
/// with the status of a SIGPIPE death, as other commands do.
fn print_all(bytes: &[u8]) -> anyhow::Result<u8> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(128 + 13),
        Err(e) => Err(e.into()),
    }
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write every page into this directory instead: shoal.1 and one page per subcommand
    /// (shoal-server.1, shoal-job-status.1, …), as `man shoal-server` finds them.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The man page `shoal(1)` on standard output, or every page into `--dir`.
pub fn man(a: ManArgs) -> anyhow::Result<u8> {
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            return print_all(&page);
        }
    }
    Ok(0)
}
