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
    /// Evaluate a gate on a running server and print the verdict. Exit code: 0 pass, 1 fail,
    /// 2 inconclusive, 3 the server refused the request, 4 the server could not be reached.
    Verdict {
        gate: String,
        /// Phase to judge (default: the gate's first phase).
        #[arg(long)]
        phase: Option<String>,
        /// Canary selector overrides, repeatable: --canary version=v2
        #[arg(long, value_name = "DIM=VALUE")]
        canary: Vec<String>,
        /// Baseline selector overrides, repeatable: --baseline version=v1
        #[arg(long, value_name = "DIM=VALUE")]
        baseline: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Base URL of the slogate HTTP API.
        #[arg(long, env = "SLOGATE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Run read-only SQL over the history: through a running server, or straight from the Parquet
    /// files with --dir. Tables: requests, verdicts, alerts; functions sketch_quantile(sketch, q),
    /// sketch_merge(sketch), sketch_quantile_of(merged, q).
    Sql {
        query: String,
        #[arg(long, value_enum, default_value = "table")]
        format: SqlFormat,
        /// Read the history directory directly instead of asking a server.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Read the history at s3://bucket/prefix directly (credentials, endpoint, region from
        /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP).
        #[arg(long, conflicts_with = "dir")]
        url: Option<String>,
        #[arg(long, default_value = "10000")]
        max_rows: usize,
        /// Base URL of the slogate HTTP API.
        #[arg(long, env = "SLOGATE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
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

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum SqlFormat {
    Table,
    Csv,
    Json,
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
                    "{}: ok (slot {}s, fine retention {}s, {} extra dimension(s), {} gate(s))",
                    file.display(),
                    c.window.slot_seconds,
                    c.window.fine_retention_seconds,
                    c.window.extra_dims.len(),
                    c.gates.len()
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
        Command::Verdict { gate, phase, canary, baseline, format, server } => verdict(&gate, phase, &canary, &baseline, format, &server),
        Command::Sql { query, format, dir, url, max_rows, server } => sql(&query, format, dir, url, max_rows, &server),
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

fn parse_pairs(flag: &str, items: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    for item in items {
        let (k, v) = item.split_once('=').ok_or_else(|| format!("--{flag} takes DIM=VALUE, got {item:?}"))?;
        out.insert(k.trim().to_string(), serde_json::Value::String(v.to_string()));
    }
    Ok(out)
}

fn verdict(gate: &str, phase: Option<String>, canary: &[String], baseline: &[String], format: Format, server: &str) -> ExitCode {
    let body = match (parse_pairs("canary", canary), parse_pairs("baseline", baseline)) {
        (Ok(c), Ok(b)) => serde_json::json!({ "phase": phase, "canary": c, "baseline": b }),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let url = format!("{}/api/v1/gates/{}/verdict", server.trim_end_matches('/'), enc(gate));
    let (status, text) = match crate::api::client_request(&url, Some(&body.to_string())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(4);
        }
    };
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(String::from)).unwrap_or(text);
        eprintln!("error: server answered {status}: {msg}");
        return ExitCode::from(3);
    }
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: the server's answer is not a verdict document: {e}");
            return ExitCode::from(3);
        }
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc).unwrap_or(text)),
        Format::Table => print!("{}", crate::report::verdict_table(&doc)),
    }
    match doc["verdict"].as_str() {
        Some("pass") => ExitCode::SUCCESS,
        Some("fail") => ExitCode::from(1),
        Some("inconclusive") => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}

fn sql(query: &str, format: SqlFormat, dir: Option<PathBuf>, url: Option<String>, max_rows: usize, server: &str) -> ExitCode {
    let store = match (dir, url) {
        (Some(dir), _) => Some(Ok(slogate_history::Store::local(dir))),
        (None, Some(url)) => Some(slogate_history::Store::s3(&url, &slogate_history::S3Options::default())),
        (None, None) => None,
    };
    let result: Result<serde_json::Value, String> = match store {
        Some(store) => (|| {
            let store = store.map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let h = slogate_history::History::open(&store, &[]).await.map_err(|e| e.to_string())?;
                let r = h.sql(query, max_rows, std::time::Duration::from_secs(300)).await.map_err(|e| e.to_string())?;
                serde_json::to_value(r).map_err(|e| e.to_string())
            })
        })(),
        None => {
            let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
            match crate::api::client_request(&url, Some(&serde_json::json!({ "query": query }).to_string())) {
                Ok((200, body)) => serde_json::from_str(&body).map_err(|e| e.to_string()),
                Ok((status, body)) => Err(serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(|m| format!("server answered {status}: {m}")))
                    .unwrap_or(body)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(4);
                }
            }
        }
    };
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    print!("{}", crate::report::sql_output(&v, format == SqlFormat::Csv, format == SqlFormat::Json));
    ExitCode::SUCCESS
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
