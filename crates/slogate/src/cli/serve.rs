//! `slogate serve`: loads the configuration (a file, or the embedded defaults) and runs the
//! server until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (YAML). Without it, the embedded defaults (deploy/slogate.yaml).
    #[arg(long, short, env = "SLOGATE_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing();
    let cfg = crate::config::Config::load(args.config.as_deref())?;
    crate::server::run(cfg)?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr, filtered by `SLOGATE_LOG` (default `info`), as JSON lines when
/// `SLOGATE_LOG_FORMAT=json`.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLOGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SLOGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
