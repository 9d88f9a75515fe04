//! `slogate serve`: loads the configuration (a file, or the embedded defaults) and runs the
//! server until SIGTERM or Ctrl-C; SIGHUP reloads the file.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (YAML). Without it, the embedded defaults (deploy/slogate.yaml).
    #[arg(long, short, env = "SLOGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines on stderr: `text` for people, `json` (one object per line) for a log
    /// pipeline. The level filter is $SLOGATE_LOG (default `info`).
    #[arg(
        long,
        value_enum,
        env = "SLOGATE_LOG_FORMAT",
        default_value = "text",
        ignore_case = true
    )]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

impl Args {
    /// JSON logs make the startup error JSON too, so every line of stderr parses.
    pub fn json(&self) -> bool {
        self.log_format == LogFormat::Json
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing(args.log_format);
    let (cfg, file) = match args.config {
        Some(path) => {
            let (cfg, read) = crate::config::Config::load_file(&path)?;
            (cfg, Some(crate::server::reload::ConfigFile { path, read }))
        }
        None => (crate::config::Config::load(None)?, None),
    };
    crate::server::run(cfg, file)?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr, filtered by `SLOGATE_LOG` (default `info`). Text lines are coloured only
/// when stderr is a terminal and `NO_COLOR` is unset, so a file or a log shipper never sees
/// escape codes.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLOGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Event fields at the top level (`gate`, `decision`, `why`), as log pipelines expect.
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(super::term::colour_wanted(
                std::io::stderr().is_terminal(),
                std::env::var("NO_COLOR").ok().as_deref(),
            ))
            .init(),
    }
}
