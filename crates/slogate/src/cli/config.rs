//! `slogate config check FILE` and `slogate config show [FILE]`.

use super::emit;
use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file; exit 0 when valid, 3 with the error otherwise.
    Check { file: PathBuf },
    /// Print the effective configuration (the file merged with the defaults).
    Show { file: Option<PathBuf> },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file } => {
            let c = Config::load(Some(&file))?;
            emit(&format!(
                "{}: ok (slot {}s, fine retention {}s, {} extra dimension(s), {} gate(s))\n",
                file.display(),
                c.window.slot_seconds,
                c.window.fine_retention_seconds,
                c.window.extra_dims.len(),
                c.gates.len()
            ))?;
        }
        Command::Show { file } => {
            let c = Config::load(file.as_deref())?;
            emit(&c.effective_yaml()?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
