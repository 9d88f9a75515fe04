//! `slogate baseline capture | list | show | delete`: stored baselines in the history root.

use super::term::Progress;
use super::{
    CliError, Format, HistorySource, SeriesArgs, emit, emit_json, emitln, now_unix, parse_pairs,
    parse_time, runtime,
};
use crate::engine::baselines::{BaselineStore, summary};
use slogate_history::Store;
use slogate_history::baseline::{self as store, Baseline, BaselineError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Capture a baseline from the history: merged sketches, requests and errors per operation
    /// plus a total. Exit code: 0 saved, 2 no or too little data, 3 on error.
    #[command(after_help = "Examples:
  slogate baseline capture --name staging-v1 --service checkout --env staging --from -2h --to now
  slogate baseline capture --name pre-flag --service search --from 2026-11-17T00:00:00Z --to 2026-11-24T00:00:00Z --format json")]
    Capture(CaptureArgs),
    /// List the stored baselines.
    #[command(after_help = "Examples:
  slogate baseline list
  slogate baseline list --dir slogate-data/history --format json")]
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
    /// Show one stored baseline: range, requests, errors and percentiles per operation.
    #[command(after_help = "Examples:
  slogate baseline show staging-v1
  slogate baseline show staging-v1 --format json | jq .total.requests")]
    Show {
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
    /// Delete a stored baseline.
    #[command(after_help = "Examples:
  slogate baseline delete staging-v1
  slogate baseline delete staging-v1 --config slogate.yaml --format json")]
    Delete {
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        source: HistorySource,
    },
}

impl Command {
    pub fn json(&self) -> bool {
        let format = match self {
            Command::Capture(a) => a.format,
            Command::List { format, .. }
            | Command::Show { format, .. }
            | Command::Delete { format, .. } => *format,
        };
        format == Format::Json
    }
}

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
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
    /// `json` prints `{"saved": PATH, "baseline": SUMMARY}`, the summary as `show` prints it.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    source: HistorySource,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Capture(args) => capture(args)?,
        Command::List { format, source } => {
            let (_, root) = source.resolve()?;
            let list = BaselineStore::new(root).summaries()?;
            if format == Format::Json {
                // The document of GET /api/v1/baselines.
                emit_json(&serde_json::json!({ "baselines": list }))?;
            } else if list.is_empty() {
                emitln("no stored baselines")?;
            } else {
                emit(&crate::report::baseline::list_table(&list))?;
            }
        }
        Command::Show {
            name,
            format,
            source,
        } => {
            let (_, root) = source.resolve()?;
            let b = store::load(&root, &name)?;
            match format {
                Format::Json => emit_json(&summary(&b))?,
                Format::Table => emit(&crate::report::baseline::show_text(&b))?,
            }
        }
        Command::Delete {
            name,
            format,
            source,
        } => {
            let (_, root) = source.resolve()?;
            store::delete(&root, &name)?;
            match format {
                Format::Json => emit_json(&serde_json::json!({ "deleted": name }))?,
                Format::Table => emitln(&format!("deleted baseline {name}"))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let (cfg, root) = args.source.resolve()?;
    let now = now_unix();
    let mut selector = args.series.pairs();
    selector.extend(parse_pairs("dim", &args.dim)?);
    let req = CaptureRequest {
        name: args.name,
        selector,
        from_unix: parse_time(&args.from, now)?,
        to_unix: parse_time(&args.to, now)?,
        min_requests: args.min_requests,
        replace: args.replace,
    };
    let progress = Progress::start(&format!("capturing baseline {}", req.name));
    let captured = runtime()?.block_on(capture_baseline(&root, &cfg.window.extra_dims, &req, now));
    drop(progress);
    let (b, path) = captured.map_err(|e| match e {
        BaselineError::Empty { .. } | BaselineError::TooFew { .. } => {
            anyhow::Error::from(CliError::NoData(e.to_string()))
        }
        e => e.into(),
    })?;
    match args.format {
        Format::Json => emit_json(&serde_json::json!({
            "saved": path.display().to_string(),
            "baseline": summary(&b),
        })),
        Format::Table => {
            emitln(&format!("saved baseline {} to {}", b.name, path.display()))?;
            emit(&crate::report::baseline::show_text(&b))
        }
    }
}

/// What `slogate baseline capture` was asked for.
struct CaptureRequest {
    name: String,
    selector: Vec<(String, String)>,
    from_unix: i64,
    to_unix: i64,
    min_requests: u64,
    replace: bool,
}

/// Reads the history under `root`, builds the baseline and saves it under `root/baselines`.
async fn capture_baseline(
    root: &Store,
    extra_dims: &[String],
    req: &CaptureRequest,
    now_unix: i64,
) -> Result<(Baseline, PathBuf), BaselineError> {
    store::validate_name(&req.name)?;
    if req.to_unix <= req.from_unix {
        return Err(BaselineError::Range(format!(
            "--from {} is not before --to {}",
            slogate_history::rfc3339(req.from_unix),
            slogate_history::rfc3339(req.to_unix)
        )));
    }
    // Refused before the history query, which is the expensive part; `save` checks again.
    if !req.replace && root.get(&store::baseline_key(&req.name)?)?.is_some() {
        return Err(BaselineError::Exists(req.name.clone()));
    }
    let history = slogate_history::History::open(root, extra_dims).await?;
    let ops =
        slogate_history::operation_totals(&history, &req.selector, (req.from_unix, req.to_unix))
            .await?;
    let metrics =
        slogate_history::metric_totals(&history, &req.selector, (req.from_unix, req.to_unix))
            .await?;
    let selector = req.selector.iter().cloned().collect();
    let b = Baseline::from_totals(
        &req.name,
        selector,
        (req.from_unix, req.to_unix),
        now_unix,
        ops,
        metrics,
        req.min_requests,
    )?;
    let path = store::save(root, &b, req.replace)?;
    Ok((b, path))
}
