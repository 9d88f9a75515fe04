//! Command-line interface: subcommands, exit codes, and human-readable output.

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The series a command is about: a service, optionally narrowed by env, version and operation.
#[derive(Debug, clap::Args)]
pub struct SeriesArgs {
    #[arg(long)]
    service: String,
    #[arg(long)]
    env: Option<String>,
    #[arg(long)]
    version: Option<String>,
    #[arg(long)]
    operation: Option<String>,
}

/// The phase and cohort overrides a verdict or a report is asked for.
#[derive(Debug, clap::Args)]
pub struct CohortArgs {
    /// Phase to judge (default: the gate's first phase).
    #[arg(long)]
    phase: Option<String>,
    /// Canary selector overrides, repeatable: --canary version=v2
    #[arg(long, value_name = "DIM=VALUE")]
    canary: Vec<String>,
    /// Baseline selector overrides, repeatable: --baseline version=v1, or --baseline stored=NAME
    #[arg(long, value_name = "DIM=VALUE")]
    baseline: Vec<String>,
}

#[derive(Parser)]
#[command(
    name = "slogate",
    version,
    about = "A release gate that watches real traffic: OTLP spans in, proceed / hold / rollback out"
)]
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
        #[command(flatten)]
        cohorts: CohortArgs,
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
    /// Stored baselines: capture a cohort's sketches from the history as a named baseline that
    /// gates compare with (`baseline: {stored: NAME}`); list, show and delete them.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Write the daily canary report of a gate as Markdown: cohorts, requests, error rate,
    /// latency against the baseline, the verdict history and a recommendation.
    Report {
        gate: String,
        /// The period, ending now (e.g. 24h, 3d).
        #[arg(long, default_value = "24h")]
        since: String,
        #[command(flatten)]
        cohorts: CohortArgs,
        #[command(flatten)]
        source: HistorySource,
        /// Write the report here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a service's availability, latency and error rate over the last hours of history
    /// against targets. Exit code: 0 pass, 1 fail, 2 no or too little data, 3 on error.
    Sla {
        #[arg(long)]
        service: String,
        #[arg(long, default_value = "24")]
        hours: u64,
        #[arg(long)]
        env: Option<String>,
        /// Minimum share of minutes up, e.g. 99.9 (percent).
        #[arg(long)]
        availability: Option<String>,
        /// Maximum p95 latency, e.g. 300ms.
        #[arg(long)]
        p95: Option<String>,
        /// Maximum p99 latency, e.g. 2s.
        #[arg(long)]
        p99: Option<String>,
        /// Maximum error rate, e.g. 0.5%.
        #[arg(long)]
        error_rate: Option<String>,
        /// A minute counts as down when more than this share of its requests fail.
        #[arg(long, default_value = "5%")]
        down_error_rate: String,
        /// Fewer requests than this in the period is no data (exit 2), never a pass.
        #[arg(long, default_value = "100")]
        min_requests: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
    /// Print the rolling SLI of a service from a running server.
    Sli {
        #[command(flatten)]
        series: SeriesArgs,
        #[arg(long, default_value = "10m")]
        window: String,
        /// Base URL of the slogate HTTP API.
        #[arg(long, env = "SLOGATE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

/// Where the history is: a configuration file (its `history.dir`, gates and SLOs) and/or a
/// directory.
#[derive(clap::Args, Clone)]
struct HistorySource {
    /// Configuration file (YAML); without it, the embedded defaults.
    #[arg(long, short, env = "SLOGATE_CONFIG")]
    config: Option<PathBuf>,
    /// History directory (default: the configuration's history root: `history.url` on S3 when
    /// set, else `history.dir`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl HistorySource {
    fn resolve(&self) -> Result<(Config, slogate_history::Store), String> {
        let cfg = Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
        let root = match &self.dir {
            Some(dir) => slogate_history::Store::local(dir),
            None => cfg
                .file
                .history
                .store()
                .map_err(|e| format!("invalid history location: {e}"))?,
        };
        Ok((cfg, root))
    }
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Capture a baseline from the history: merged sketches, requests and errors per operation
    /// plus a total. Exit code: 0 saved, 2 no or too little data, 3 on error.
    Capture {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        series: SeriesArgs,
        /// Further dimensions (configured extras), repeatable: --dim region=eu
        #[arg(long, value_name = "DIM=VALUE")]
        dim: Vec<String>,
        /// Start: RFC 3339, a relative time like -7d, or now.
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// End (exclusive): RFC 3339, a relative time, or now.
        #[arg(long, allow_hyphen_values = true, default_value = "now")]
        to: String,
        /// Refuse a baseline with fewer requests than this.
        #[arg(long, default_value = "100")]
        min_requests: u64,
        /// Replace an existing baseline of the same name.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        source: HistorySource,
    },
    /// List the stored baselines.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
    /// Show one stored baseline: range, requests, errors and percentiles per operation.
    Show {
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
    /// Delete a stored baseline.
    Delete {
        name: String,
        #[command(flatten)]
        source: HistorySource,
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
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(Some(&file)) {
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
        Command::Config {
            command: ConfigCommand::Show { file },
        } => match Config::load(file.as_deref()) {
            Ok(c) => {
                print!("{}", serde_yaml_ng::to_string(&c.file).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        },
        Command::Verdict {
            gate,
            cohorts:
                CohortArgs {
                    phase,
                    canary,
                    baseline,
                },
            format,
            server,
        } => verdict(&gate, phase, &canary, &baseline, format, &server),
        Command::Sql {
            query,
            format,
            dir,
            url,
            max_rows,
            server,
        } => sql(&query, format, dir, url, max_rows, &server),
        Command::Baseline { command } => baseline_cmd(command),
        Command::Report {
            gate,
            since,
            cohorts:
                CohortArgs {
                    phase,
                    canary,
                    baseline,
                },
            source,
            out,
        } => report_cmd(
            &gate,
            &since,
            phase.as_deref(),
            &canary,
            &baseline,
            &source,
            out,
        ),
        Command::Sla {
            service,
            hours,
            env,
            availability,
            p95,
            p99,
            error_rate,
            down_error_rate,
            min_requests,
            format,
            source,
        } => {
            let flags = SlaFlags {
                availability,
                p95,
                p99,
                error_rate,
                down_error_rate,
                min_requests,
            };
            sla_cmd(&service, hours, env, &flags, format, &source)
        }
        Command::Sli {
            series:
                SeriesArgs {
                    service,
                    env,
                    version,
                    operation,
                },
            window,
            server,
        } => {
            let mut url = format!(
                "{}/api/v1/sli?service={}&window={}",
                server.trim_end_matches('/'),
                enc(&service),
                enc(&window)
            );
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

fn parse_pairs(
    flag: &str,
    items: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("--{flag} takes DIM=VALUE, got {item:?}"))?;
        out.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    Ok(out)
}

fn verdict(
    gate: &str,
    phase: Option<String>,
    canary: &[String],
    baseline: &[String],
    format: Format,
    server: &str,
) -> ExitCode {
    let body = match (
        parse_pairs("canary", canary),
        parse_pairs("baseline", baseline),
    ) {
        (Ok(c), Ok(b)) => serde_json::json!({ "phase": phase, "canary": c, "baseline": b }),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let url = format!(
        "{}/api/v1/gates/{}/verdict",
        server.trim_end_matches('/'),
        enc(gate)
    );
    let (status, text) = match crate::api::client_request(&url, Some(&body.to_string())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(4);
        }
    };
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(text);
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

fn sql(
    query: &str,
    format: SqlFormat,
    dir: Option<PathBuf>,
    url: Option<String>,
    max_rows: usize,
    server: &str,
) -> ExitCode {
    let store = match (dir, url) {
        (Some(dir), _) => Some(Ok(slogate_history::Store::local(dir))),
        (None, Some(url)) => Some(slogate_history::Store::s3(
            &url,
            &slogate_history::S3Options::default(),
        )),
        (None, None) => None,
    };
    let result: Result<serde_json::Value, String> = match store {
        Some(store) => (|| {
            let store = store.map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let h = slogate_history::History::open(&store, &[])
                    .await
                    .map_err(|e| e.to_string())?;
                let r = h
                    .sql(query, max_rows, std::time::Duration::from_secs(300))
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::to_value(r).map_err(|e| e.to_string())
            })
        })(),
        None => {
            let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
            match crate::api::client_request(
                &url,
                Some(&serde_json::json!({ "query": query }).to_string()),
            ) {
                Ok((200, body)) => serde_json::from_str(&body).map_err(|e| e.to_string()),
                Ok((status, body)) => Err(serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        v["error"]
                            .as_str()
                            .map(|m| format!("server answered {status}: {m}"))
                    })
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
    print!(
        "{}",
        crate::report::sql_output(&v, format == SqlFormat::Csv, format == SqlFormat::Json)
    );
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn baseline_cmd(command: BaselineCommand) -> ExitCode {
    use slogate_history::BaselineError;
    use slogate_history::baseline as store;
    match command {
        BaselineCommand::Capture {
            name,
            series:
                SeriesArgs {
                    service,
                    env,
                    version,
                    operation,
                },
            dim,
            from,
            to,
            min_requests,
            replace,
            source,
        } => {
            let (cfg, root) = match source.resolve() {
                Ok(r) => r,
                Err(e) => return fail(3, e),
            };
            let now = crate::baseline::now_unix();
            let (from_unix, to_unix) = match (
                crate::baseline::parse_time(&from, now),
                crate::baseline::parse_time(&to, now),
            ) {
                (Ok(f), Ok(t)) => (f, t),
                (Err(e), _) | (_, Err(e)) => return fail(3, e),
            };
            let mut selector = vec![("service".to_string(), service)];
            for (k, v) in [("env", env), ("version", version), ("operation", operation)] {
                if let Some(v) = v {
                    selector.push((k.to_string(), v));
                }
            }
            match parse_pairs("dim", &dim) {
                Ok(extra) => selector.extend(
                    extra
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string())),
                ),
                Err(e) => return fail(3, e),
            }
            let req = crate::baseline::CaptureRequest {
                name,
                selector,
                from_unix,
                to_unix,
                min_requests,
                replace,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return fail(3, e),
            };
            match rt.block_on(crate::baseline::capture(
                &root,
                &cfg.window.extra_dims,
                &req,
            )) {
                Ok((b, path)) => {
                    println!("saved baseline {} to {}", b.name, path.display());
                    print!("{}", crate::baseline::show_text(&b));
                    ExitCode::SUCCESS
                }
                Err(e @ (BaselineError::Empty { .. } | BaselineError::TooFew { .. })) => fail(2, e),
                Err(e) => fail(3, e),
            }
        }
        BaselineCommand::List { format, source } => {
            let root = match source.resolve() {
                Ok((_, root)) => root,
                Err(e) => return fail(3, e),
            };
            let store = crate::baseline::BaselineStore::new(root);
            match store.summaries() {
                Ok(list) if format == Format::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "baselines": list }))
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    let mut rows = vec![
                        [
                            "name",
                            "selector",
                            "from",
                            "to",
                            "requests",
                            "error rate",
                            "p95",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ];
                    for b in &list {
                        let t = &b["total"];
                        rows.push(vec![
                            b["name"].as_str().unwrap_or("").into(),
                            b["selector"].as_str().map_or_else(
                                || format!("unreadable: {}", b["error"].as_str().unwrap_or("")),
                                String::from,
                            ),
                            b["from"].as_str().unwrap_or("").into(),
                            b["to"].as_str().unwrap_or("").into(),
                            t["requests"].as_u64().map_or("-".into(), |n| n.to_string()),
                            t["error_rate"]
                                .as_f64()
                                .map_or("-".into(), |r| format!("{:.2}%", r * 100.0)),
                            t["latency_ms"]["p95"]
                                .as_f64()
                                .map_or("-".into(), |x| format!("{x:.1} ms")),
                        ]);
                    }
                    if list.is_empty() {
                        println!("no stored baselines");
                    } else {
                        print!("{}", crate::report::aligned(&rows));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(3, e),
            }
        }
        BaselineCommand::Show {
            name,
            format,
            source,
        } => {
            let root = match source.resolve() {
                Ok((_, root)) => root,
                Err(e) => return fail(3, e),
            };
            match store::load(&root, &name) {
                Ok(b) if format == Format::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&crate::baseline::summary_json(&b))
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(b) => {
                    print!("{}", crate::baseline::show_text(&b));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(3, e),
            }
        }
        BaselineCommand::Delete { name, source } => {
            let root = match source.resolve() {
                Ok((_, root)) => root,
                Err(e) => return fail(3, e),
            };
            match store::delete(&root, &name) {
                Ok(()) => {
                    println!("deleted baseline {name}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(3, e),
            }
        }
    }
}

fn pairs_vec(flag: &str, items: &[String]) -> Result<Vec<(String, String)>, String> {
    Ok(parse_pairs(flag, items)?
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
        .collect())
}

fn report_cmd(
    gate: &str,
    since: &str,
    phase: Option<&str>,
    canary: &[String],
    baseline: &[String],
    source: &HistorySource,
    out: Option<PathBuf>,
) -> ExitCode {
    let (cfg, root) = match source.resolve() {
        Ok(r) => r,
        Err(e) => return fail(3, e),
    };
    let Some(g) = cfg.gates.iter().find(|g| g.name == gate) else {
        let known: Vec<&str> = cfg.gates.iter().map(|g| g.name.as_str()).collect();
        return fail(
            3,
            format!(
                "unknown gate {gate:?} in {}; its gates are: {}",
                cfg.source,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
    };
    let p = match phase {
        None => &g.phases[0],
        Some(name) => match g.phases.iter().find(|p| p.name == name) {
            Some(p) => p,
            None => {
                return fail(
                    3,
                    format!(
                        "gate {gate:?} has no phase {name:?}; its phases are {}",
                        g.phases
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        },
    };
    let since_secs = match humantime::parse_duration(since.trim()) {
        Ok(d) if d.as_secs() > 0 && d.as_secs() <= 366 * 86400 => d.as_secs() as i64,
        Ok(_) => return fail(3, format!("--since {since:?} must be between 1s and 366d")),
        Err(e) => {
            return fail(
                3,
                format!("invalid --since {since:?}: {e}; write e.g. 24h or 3d"),
            );
        }
    };
    let (canary, baseline) = match (pairs_vec("canary", canary), pairs_vec("baseline", baseline)) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) | (_, Err(e)) => return fail(3, e),
    };
    let now = crate::baseline::now_unix();
    let req = crate::daily::ReportRequest {
        gate: g,
        phase: p,
        canary,
        baseline,
        from_unix: now - since_secs,
        to_unix: now + 1,
        now_unix: now,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(3, e),
    };
    let report = rt.block_on(async {
        let history = slogate_history::History::open(&root, &cfg.window.extra_dims)
            .await
            .map_err(|e| e.to_string())?;
        crate::daily::build(&history, &root, &req).await
    });
    let text = match report {
        Ok(r) => crate::report::daily_markdown(&r),
        Err(e) => return fail(3, e),
    };
    match out {
        Some(path) => match std::fs::write(&path, &text) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(3, format!("cannot write {}: {e}", path.display())),
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

struct SlaFlags {
    availability: Option<String>,
    p95: Option<String>,
    p99: Option<String>,
    error_rate: Option<String>,
    down_error_rate: String,
    min_requests: u64,
}

fn sla_targets(flags: &SlaFlags) -> Result<Vec<crate::sla::TargetSpec>, String> {
    use crate::sla::{Target, TargetSpec, parse_latency, parse_ratio};
    let mut t = Vec::new();
    let flag = |name: &str| TargetSpec {
        target: Target::ErrorRate { max: 0.0 },
        source: format!("--{name}"),
    };
    if let Some(a) = &flags.availability {
        t.push(TargetSpec {
            target: Target::Availability {
                min: parse_ratio(a, true)?,
            },
            ..flag("availability")
        });
    }
    if let Some(p) = &flags.p95 {
        t.push(TargetSpec {
            target: Target::Latency {
                quantile: 0.95,
                max_ms: parse_latency(p)?,
            },
            ..flag("p95")
        });
    }
    if let Some(p) = &flags.p99 {
        t.push(TargetSpec {
            target: Target::Latency {
                quantile: 0.99,
                max_ms: parse_latency(p)?,
            },
            ..flag("p99")
        });
    }
    if let Some(e) = &flags.error_rate {
        t.push(TargetSpec {
            target: Target::ErrorRate {
                max: parse_ratio(e, false)?,
            },
            ..flag("error-rate")
        });
    }
    Ok(t)
}

fn sla_cmd(
    service: &str,
    hours: u64,
    env: Option<String>,
    flags: &SlaFlags,
    format: Format,
    source: &HistorySource,
) -> ExitCode {
    use slogate_history::baseline as store;
    let (cfg, root) = match source.resolve() {
        Ok(r) => r,
        Err(e) => return fail(3, e),
    };
    if hours == 0 || hours > crate::sla::MAX_HOURS {
        return fail(
            3,
            format!("--hours must be between 1 and {}", crate::sla::MAX_HOURS),
        );
    }
    let down = match crate::sla::parse_ratio(&flags.down_error_rate, false) {
        Ok(d) => d,
        Err(e) => return fail(3, format!("--down-error-rate: {e}")),
    };
    let mut targets = match sla_targets(flags) {
        Ok(t) => t,
        Err(e) => return fail(3, e),
    };
    if targets.is_empty() {
        targets = crate::sla::targets_from_slos(&cfg.slos, service, env.as_deref());
    }
    if targets.is_empty() {
        return fail(
            3,
            format!(
                "no targets: pass --availability, --p95, --p99 or --error-rate, or configure SLOs for service {service:?} in {}",
                cfg.source
            ),
        );
    }
    let mut matchers = vec![("service".to_string(), service.to_string())];
    if let Some(e) = &env {
        matchers.push(("env".into(), e.clone()));
    }
    let now = crate::baseline::now_unix();
    let range = (now - (hours * 3600) as i64, now + 1);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(3, e),
    };
    let measured = rt.block_on(async {
        let history = slogate_history::History::open(&root, &cfg.window.extra_dims)
            .await
            .map_err(|e| e.to_string())?;
        let ops = store::operation_totals(&history, &matchers, range)
            .await
            .map_err(|e| e.to_string())?;
        let total = slogate_history::CohortTotals::merge_all(&ops).map_err(|e| e.to_string())?;
        let max_slots = (hours * 3600 / cfg.window.slot_seconds.max(1) + 2) as usize;
        let slots = store::slot_counts(&history, &matchers, range, max_slots)
            .await
            .map_err(|e| e.to_string())?;
        let sketch = total.decode_sketch().map_err(|e| e.to_string())?;
        Ok::<_, String>(crate::sla::Measured {
            requests: total.requests,
            errors: total.errors,
            sketch,
            minutes: crate::sla::minutes(&slots),
        })
    });
    let m = match measured {
        Ok(m) => m,
        Err(e) => return fail(3, e),
    };
    let (checks, result) = crate::sla::judge(&m, &targets, flags.min_requests, down);
    let selector = matchers
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let report = crate::sla::SlaReport {
        service: service.to_string(),
        selector,
        hours,
        from: store::rfc3339(range.0),
        to: store::rfc3339(now),
        requests: m.requests,
        errors: m.errors,
        minutes_with_traffic: m.minutes.len() as u64,
        down_error_rate: down,
        min_requests: flags.min_requests,
        checks,
        result,
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Format::Table => print!("{}", crate::sla::render_text(&report)),
    }
    ExitCode::from(result.exit_code())
}
