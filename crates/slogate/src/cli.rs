//! Command-line interface: subcommands, exit codes, and human-readable output.

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "slogate", version, about = "A release gate that watches real traffic: OTLP spans in, proceed / hold / rollback out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OTLP receivers and the HTTP API.
    Serve {
        /// Configuration file (YAML). Without it, the embedded defaults (deploy/slogate.yaml).
        #[arg(long, short, env = "SLOGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the rolling SLI of a service from a running server.
    Sli {
        #[arg(long)]
        service: String,
        #[arg(long, default_value = "10m")]
        window: String,
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        operation: Option<String>,
        /// Base URL of the slogate HTTP API.
        #[arg(long, env = "SLOGATE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; exit 0 when valid, 3 with the error otherwise.
    Check { file: PathBuf },
    /// Print the effective configuration (the file merged with the defaults).
    Show { file: Option<PathBuf> },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_tracing();
            let cfg = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            match crate::serve::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Config { command: ConfigCommand::Check { file } } => match Config::load(Some(&file)) {
            Ok(c) => {
                println!(
                    "{}: ok (slot {}s, fine retention {}s, {} extra dimension(s))",
                    file.display(),
                    c.window.slot_seconds,
                    c.window.fine_retention_seconds,
                    c.window.extra_dims.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        },
        Command::Config { command: ConfigCommand::Show { file } } => match Config::load(file.as_deref()) {
            Ok(c) => {
                print!("{}", serde_yaml_ng::to_string(&c.file).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        },
        Command::Sli { service, window, env, version, operation, server } => {
            let mut url = format!("{}/api/v1/sli?service={}&window={}", server.trim_end_matches('/'), enc(&service), enc(&window));
            for (k, v) in [("env", env), ("version", version), ("operation", operation)] {
                if let Some(v) = v {
                    url.push_str(&format!("&{k}={}", enc(&v)));
                }
            }
            match crate::api::client_get(&url) {
                Ok((200, body)) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok((status, body)) => {
                    eprintln!("error: server answered {status}: {body}");
                    ExitCode::from(3)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(4)
                }
            }
        }
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLOGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SLOGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
