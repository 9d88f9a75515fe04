//! `slogate report GATE --since 24h`: the daily canary report as Markdown (or JSON), from the
//! history.

use super::term::Progress;
use super::{CohortArgs, HistorySource, emit, now_unix, parse_pairs, runtime};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
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
    /// `markdown` for people (`table` is the same), `json` for scripts.
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReportFormat {
    #[value(alias = "table")]
    Markdown,
    Json,
}

impl Args {
    pub fn json(&self) -> bool {
        self.format == ReportFormat::Json
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, root) = args.source.resolve()?;
    let (g, p) = cfg.gate_phase(&args.gate, args.cohorts.phase.as_deref())?;
    let since = &args.since;
    let since_secs = match humantime::parse_duration(since.trim()) {
        Ok(d) if d.as_secs() > 0 && d.as_secs() <= 366 * 86400 => d.as_secs() as i64,
        Ok(_) => bail!("--since {since:?} must be between 1s and 366d"),
        Err(e) => bail!("invalid --since {since:?}: {e}; write e.g. 24h or 3d"),
    };
    let now = now_unix();
    let req = crate::report::daily::ReportRequest {
        gate: g,
        phase: p,
        canary: parse_pairs("canary", &args.cohorts.canary)?,
        baseline: parse_pairs("baseline", &args.cohorts.baseline)?,
        from_unix: now - since_secs,
        to_unix: now + 1,
        now_unix: now,
    };
    let progress = Progress::start(&format!("reading {since} of history for gate {}", g.name));
    let report = runtime()?.block_on(async {
        let history = slogate_history::History::open(&root, &cfg.window.extra_dims).await?;
        crate::report::daily::build(&history, &root, &req).await
    })?;
    drop(progress);
    let text = match args.format {
        ReportFormat::Markdown => crate::report::markdown::daily(&report),
        ReportFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
    };
    match args.out {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => emit(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
