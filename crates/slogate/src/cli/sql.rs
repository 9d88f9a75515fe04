//! `slogate sql "QUERY"`: read-only SQL over the history, through a running server or straight
//! from the Parquet files (`--dir`, `--url`). `--format json` prints the API's result document
//! (`{columns, rows, truncated}`) whichever way the query ran.

use super::client::Client;
use super::term::Progress;
use super::{ServerArgs, emit, runtime};
use crate::report::sql::SqlFormat;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// With --dir or --url: bytes the query may hold (operators, function results, the
    /// result); past it the query fails and says what needed the memory. A server applies its
    /// own `history.sql_memory_limit_bytes` instead.
    #[arg(long, default_value_t = slogate_history::SqlLimits::DEFAULT_MEMORY_LIMIT)]
    memory_limit_bytes: usize,
    /// With --dir or --url: how long the query may run before it is cancelled.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    server: ServerArgs,
}

impl Args {
    pub fn json(&self) -> bool {
        self.format == SqlFormat::Json
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = match (&args.dir, &args.url) {
        (Some(dir), _) => Some(slogate_history::Store::local(dir)),
        (None, Some(url)) => Some(slogate_history::Store::s3(
            url,
            &slogate_history::S3Options::default(),
        )?),
        (None, None) => None,
    };
    let result: serde_json::Value = match store {
        Some(store) => runtime()?.block_on(async {
            let _progress = Progress::start("running the query over the history");
            let limits = slogate_history::SqlLimits {
                memory_limit: args.memory_limit_bytes,
            };
            let h = slogate_history::History::open_with(&store, &[], limits).await?;
            let r = h.sql(&args.query, args.max_rows, args.timeout).await?;
            anyhow::Ok(serde_json::to_value(r)?)
        })?,
        None => Client::new(&args.server.server)?
            .post("/api/v1/sql", &serde_json::json!({ "query": args.query }))?,
    };
    emit(&crate::report::sql::render(&result, args.format))?;
    Ok(ExitCode::SUCCESS)
}
