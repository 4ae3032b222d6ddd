//! `xbake completions SHELL` and `xbake man`: shell completion scripts and a man page,
//! both generated from the clap definitions, so they never drift from the flags.

use super::Failure;
use clap::CommandFactory;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (xbake.1, xbake-build.1, …) into this folder instead
    /// of the main page to standard output.
    #[arg(long = "output-dir", value_name = "DIR")]
    output_dir: Option<std::path::PathBuf>,
}

/// Writes the completion script to standard output: `xbake completions bash >
/// ~/.local/share/bash-completion/completions/xbake`, for instance.
pub fn completions(args: CompletionsArgs) -> Result<u8, Failure> {
    let mut command = super::Cli::command();
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "xbake", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(0)
}

/// The man page (roff) on standard output, or every command's page in a folder.
pub fn man(args: ManArgs) -> Result<u8, Failure> {
    let command = super::Cli::command();
    match args.output_dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out)?;
            std::io::stdout().write_all(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(command, &dir)?;
        }
    }
    Ok(0)
}
