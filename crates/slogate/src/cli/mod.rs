//! The command line: the clap definitions, dispatch to one file per command, and the exit codes.
//!
//! Every command is `fn run(args) -> anyhow::Result<ExitCode>`: `Ok` carries the command's own
//! answer (a verdict's pass / fail / inconclusive, an SLA's no-data), and an `Err` is mapped to
//! an exit code in one place, [`exit_code`], as ripgrep does in its `main`. Output goes through
//! [`emit`], which treats a closed pipe (`slogate sql … | head -1`) as the reader being done,
//! not as a failure.
//!
//! Every command whose output a script would read takes `--format json`: one JSON document on
//! stdout (the API's document where the API has one) and, on failure, `{"error": "..."}` on
//! stderr; the exit codes do not change with the format. Colours and progress lines appear
//! only on a terminal ([`term`]).

mod baseline;
mod client;
mod config;
mod report;
mod serve;
mod sla;
mod sli;
mod sql;
mod term;
mod verdict;

use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit codes every command shares. Commands that judge (verdict, sla, baseline capture)
/// also use 0 pass, 1 fail and 2 inconclusive or too little data.
pub mod exit {
    pub const PASS: u8 = 0;
    pub const FAIL: u8 = 1;
    pub const INCONCLUSIVE: u8 = 2;
    /// The request or the configuration was refused, or the command failed.
    pub const ERROR: u8 = 3;
    /// The server could not be reached.
    pub const UNREACHABLE: u8 = 4;
    /// The command line itself was wrong (an unknown flag, a missing argument): never read as
    /// a verdict, so a CI step with a typo does not look like "hold".
    pub const USAGE: u8 = 64;
}

/// Errors whose exit code is not [`exit::ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No server answered at the address (exit 4).
    #[error("{0}")]
    Unreachable(String),
    /// There is not enough data to answer (exit 2): never a pass.
    #[error("{0}")]
    NoData(String),
}

/// The exit code of a failed command.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<CliError>() {
        Some(CliError::Unreachable(_)) => exit::UNREACHABLE,
        Some(CliError::NoData(_)) => exit::INCONCLUSIVE,
        None => exit::ERROR,
    }
}

#[derive(Parser)]
#[command(
    name = "slogate",
    version,
    about = "A release gate that watches real traffic: OTLP spans in, proceed / hold / rollback out",
    after_help = "Exit codes: 0 pass, 1 fail, 2 inconclusive or too little data, 3 refused or failed, 4 server unreachable, 64 usage error.

Output: verdict, sli, sla, report, baseline, sql and config take --format json (one JSON document on stdout; errors as {\"error\": ...} on stderr). Colours and progress lines only on a terminal; NO_COLOR turns colours off.

Examples:
  slogate serve --config slogate.yaml --log-format json
  slogate verdict checkout --phase canary --canary version=v2 --baseline version=v1
  slogate sql \"SELECT service, sum(requests) FROM requests GROUP BY 1\" --format csv"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// For commands that talk to a server: a file holding the API bearer token (its first
    /// token line); without it, the token in $SLOGATE_TOKEN, if any.
    #[arg(long, global = true, env = "SLOGATE_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// For commands that talk to a server: trust only the CA certificates (PEM) in this file
    /// for an https:// --server, instead of the system's roots.
    #[arg(long, global = true, env = "SLOGATE_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OTLP receivers and the HTTP API.
    #[command(after_help = "Examples:
  slogate serve
  slogate serve --config /etc/slogate/slogate.yaml
  SLOGATE_LOG=debug slogate serve --config slogate.yaml --log-format json")]
    Serve(serve::Args),
    /// Configuration tools.
    #[command(after_help = "Examples:
  slogate config check slogate.yaml
  slogate config show slogate.yaml --format json")]
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Evaluate a gate on a running server and print the verdict. Exit code: 0 pass, 1 fail,
    /// 2 inconclusive, 3 the server refused the request, 4 the server could not be reached.
    #[command(after_help = "Examples:
  slogate verdict checkout --phase canary --canary version=v2 --baseline version=v1
  slogate verdict checkout --baseline stored=staging-v1 --format json | jq .decision
  slogate verdict checkout --analysis run-42-canary --server https://slogate:8080")]
    Verdict(verdict::Args),
    /// Run read-only SQL over the history: through a running server, or straight from the Parquet
    /// files with --dir. Tables: requests, verdicts, alerts; functions sketch_quantile(sketch, q),
    /// sketch_merge(sketch), sketch_quantile_of(merged, q).
    #[command(after_help = "Examples:
  slogate sql \"SELECT service, sum(requests) AS requests FROM requests GROUP BY 1\"
  slogate sql \"SELECT sketch_quantile(sketch, 0.95) FROM requests WHERE service = 'checkout'\" --format json
  slogate sql \"SELECT count(*) FROM requests\" --dir slogate-data/history --format csv")]
    Sql(sql::Args),
    /// Stored baselines: capture a cohort's sketches from the history as a named baseline that
    /// gates compare with (`baseline: {stored: NAME}`); list, show and delete them.
    #[command(after_help = "Examples:
  slogate baseline capture --name staging-v1 --service checkout --env staging --from -2h
  slogate baseline list --format json
  slogate baseline show staging-v1")]
    Baseline {
        #[command(subcommand)]
        command: baseline::Command,
    },
    /// Write the daily canary report of a gate as Markdown (or JSON): cohorts, requests, error
    /// rate, latency against the baseline, the verdict history and a recommendation.
    #[command(after_help = "Examples:
  slogate report checkout --since 24h --config slogate.yaml --out report.md
  slogate report checkout --since 3d --phase canary --canary version=v2 --format json")]
    Report(report::Args),
    /// Check a service's availability, latency and error rate over the last hours of history
    /// against targets. Exit code: 0 pass, 1 fail, 2 no or too little data, 3 on error.
    #[command(after_help = "Examples:
  slogate sla --service checkout --hours 24 --availability 99.9 --p95 300ms --error-rate 0.5%
  slogate sla --service checkout --env prod --config slogate.yaml --format json")]
    Sla(sla::Args),
    /// Print the rolling SLI of a service from a running server (JSON by default, or a table).
    #[command(after_help = "Examples:
  slogate sli --service checkout --window 10m
  slogate sli --service checkout --version v2 --window 5m --format table")]
    Sli(sli::Args),
}

impl Command {
    /// Whether the command was asked for JSON, so its errors are JSON too.
    fn json(&self) -> bool {
        match self {
            Command::Serve(a) => a.json(),
            Command::Config { command } => command.json(),
            Command::Verdict(a) => a.json(),
            Command::Sql(a) => a.json(),
            Command::Baseline { command } => command.json(),
            Command::Report(a) => a.json(),
            Command::Sla(a) => a.json(),
            Command::Sli(a) => a.json(),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are answers, not errors; anything else is a usage error
            // with its own code, never 2 (inconclusive).
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::PASS
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json_errors = cli.command.json();
    client::configure(client::ClientOptions {
        token_file: cli.token_file,
        ca_file: cli.ca_file,
    });
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config { command } => config::run(command),
        Command::Verdict(args) => verdict::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Baseline { command } => baseline::run(command),
        Command::Report(args) => report::run(args),
        Command::Sla(args) => sla::run(args),
        Command::Sli(args) => sli::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = if json_errors {
                format!("{}\n", serde_json::json!({ "error": format!("{e:#}") }))
            } else {
                format!("error: {e:#}\n")
            };
            // Nothing sensible is left to do when stderr is closed too.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Writes a command's output to stdout. A reader that closed the pipe has all it wanted: that
/// is not an error (and must not panic as `print!` does).
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// [`emit`] with a newline.
pub fn emitln(text: &str) -> anyhow::Result<()> {
    emit(&format!("{text}\n"))
}

/// Output format of commands that print a table or JSON.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Table,
    Json,
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn emit_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    emitln(&serde_json::to_string_pretty(value)?)
}

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

impl SeriesArgs {
    /// `service=S` and each dimension that was given, in that order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![("service".to_string(), self.service.clone())];
        for (k, v) in [
            ("env", &self.env),
            ("version", &self.version),
            ("operation", &self.operation),
        ] {
            if let Some(v) = v {
                out.push((k.to_string(), v.clone()));
            }
        }
        out
    }
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

/// Base URL of a running server's HTTP API.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the slogate HTTP API.
    #[arg(long, env = "SLOGATE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

/// Where the history is: a configuration file (its history root, gates and SLOs) and/or a
/// directory.
#[derive(clap::Args, Clone, Debug)]
pub struct HistorySource {
    /// Configuration file (YAML); without it, the embedded defaults.
    #[arg(long, short, env = "SLOGATE_CONFIG")]
    config: Option<PathBuf>,
    /// History directory (default: the configuration's history root: `history.url` on S3 when
    /// set, else `history.dir`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl HistorySource {
    /// The configuration and the history root it names (or `--dir`).
    pub fn resolve(&self) -> anyhow::Result<(crate::config::Config, slogate_history::Store)> {
        let cfg = crate::config::Config::load(self.config.as_deref())?;
        let root = match &self.dir {
            Some(dir) => slogate_history::Store::local(dir),
            None => cfg.history.store()?,
        };
        Ok((cfg, root))
    }
}

/// `DIM=VALUE` items of a repeatable flag, in order.
pub fn parse_pairs(flag: &str, items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--{flag} takes DIM=VALUE, got {item:?}"))?;
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// The small runtime the history-reading commands block on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Parses a point in time: `now`, a relative offset into the past (`-7d`, `-90m`, `-1h30m`),
/// or RFC 3339 (`2026-11-24T09:00:00Z`). Returns Unix seconds.
pub fn parse_time(s: &str, now_unix: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_unix);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel).map_err(|e| {
            anyhow::anyhow!("invalid relative time {s:?}: {e}; write e.g. -7d, -2h, now")
        })?;
        return Ok(now_unix.saturating_sub(d.as_secs() as i64));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        anyhow::anyhow!(
            "invalid time {s:?}: {e}; write RFC 3339 (2026-11-24T09:00:00Z), a relative time (-7d) or now"
        )
    })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| anyhow::anyhow!("time {s:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000;
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("now", Ok(now)),
            ("-7d", Ok(now - 7 * 86400)),
            ("-1h30m", Ok(now - 5400)),
            ("2026-11-24T09:00:00Z", Ok(1_795_510_800)),
            ("yesterday", Err("invalid time \"yesterday\"")),
            ("-soon", Err("invalid relative time \"-soon\"")),
        ];
        for (input, want) in cases {
            match (parse_time(input, now), want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{input}"),
                (Err(g), Err(w)) => assert!(g.to_string().contains(w), "{input}: {g}"),
                (g, w) => panic!("{input}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn exit_codes() {
        let cases: &[(anyhow::Error, u8)] = &[
            (
                CliError::Unreachable("down".into()).into(),
                exit::UNREACHABLE,
            ),
            (CliError::NoData("thin".into()).into(), exit::INCONCLUSIVE),
            (anyhow::anyhow!("bad flag"), exit::ERROR),
            (
                anyhow::Error::from(CliError::Unreachable("down".into())).context("asking"),
                exit::UNREACHABLE,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(exit_code(e), *want, "{e:#}");
        }
    }

    #[test]
    fn pairs() {
        let items = ["version=v2".to_string(), " env =prod=eu".to_string()];
        assert_eq!(
            parse_pairs("canary", &items).unwrap(),
            [
                ("version".into(), "v2".into()),
                ("env".into(), "prod=eu".into())
            ]
        );
        let err = parse_pairs("canary", &["v2".to_string()]).unwrap_err();
        assert_eq!(err.to_string(), "--canary takes DIM=VALUE, got \"v2\"");
    }
}
