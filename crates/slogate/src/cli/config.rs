//! `slogate config check FILE` and `slogate config show [FILE]`.

use super::{Format, emit, emit_json};
use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file; exit 0 when valid, 3 with the error otherwise.
    #[command(after_help = "Examples:
  slogate config check slogate.yaml
  slogate config check deploy/examples/checkout-canary.yaml --format json")]
    Check {
        file: PathBuf,
        /// `json` prints `{"file", "ok", "slot_seconds", ...}`; errors as `{"error": ...}`.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print the effective configuration (the file merged with the defaults).
    #[command(after_help = "Examples:
  slogate config show
  slogate config show slogate.yaml --format json | jq .gates")]
    Show {
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "yaml")]
        format: ShowFormat,
    },
}

/// `config show` prints YAML (the file format) or the same document as JSON.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShowFormat {
    Yaml,
    Json,
}

impl Command {
    pub fn json(&self) -> bool {
        match self {
            Command::Check { format, .. } => *format == Format::Json,
            Command::Show { format, .. } => *format == ShowFormat::Json,
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file, format } => {
            let c = Config::load(Some(&file))?;
            match format {
                Format::Json => emit_json(&serde_json::json!({
                    "file": file.display().to_string(),
                    "ok": true,
                    "slot_seconds": c.window.slot_seconds,
                    "fine_retention_seconds": c.window.fine_retention_seconds,
                    "extra_dims": c.window.extra_dims,
                    "gates": c.gates.len(),
                }))?,
                Format::Table => emit(&format!(
                    "{}: ok (slot {}s, fine retention {}s, {} extra dimension(s), {} gate(s))\n",
                    file.display(),
                    c.window.slot_seconds,
                    c.window.fine_retention_seconds,
                    c.window.extra_dims.len(),
                    c.gates.len()
                ))?,
            }
        }
        Command::Show { file, format } => {
            let c = Config::load(file.as_deref())?;
            let yaml = c.effective_yaml()?;
            match format {
                ShowFormat::Yaml => emit(&yaml)?,
                // The same document as the YAML: read back rather than serialised twice, so
                // the two can never differ.
                ShowFormat::Json => {
                    emit_json(&serde_yaml_ng::from_str::<serde_json::Value>(&yaml)?)?
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
