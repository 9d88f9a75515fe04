//! `slogate verdict GATE`: evaluates a gate on a running server and prints the verdict; the
//! exit code is the verdict (0 pass, 1 fail, 2 inconclusive).

use super::client::{Client, enc};
use super::term::{Tone, paint_line, stdout_colour};
use super::{CohortArgs, Format, ServerArgs, emit, emit_json, exit, parse_pairs};
use crate::engine::gates::VerdictDoc;
use anyhow::Context as _;
use slogate_gate::Verdict;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    gate: String,
    #[command(flatten)]
    cohorts: CohortArgs,
    /// Judge this call as the next look of analysis ID (one rollout step polled repeatedly):
    /// the data since the analysis began, with the gate's false-rollback budget spent over the
    /// looks. Use one id per step, e.g. the pipeline's run id and the phase.
    #[arg(long, value_name = "ID")]
    analysis: Option<String>,
    /// Looks planned for the analysis (the gate's `analysis.looks` when absent).
    #[arg(long, requires = "analysis")]
    looks: Option<u32>,
    /// Time between looks, e.g. 1m (the gate's `analysis.interval` when absent).
    #[arg(long, requires = "analysis", value_parser = humantime::parse_duration)]
    interval: Option<std::time::Duration>,
    /// `json` prints the API's verdict document unchanged.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    server: ServerArgs,
}

impl Args {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.cohorts;
    let pairs = |flag, items| -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        Ok(parse_pairs(flag, items)?
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect())
    };
    let mut body = serde_json::json!({
        "phase": c.phase,
        "canary": pairs("canary", &c.canary)?,
        "baseline": pairs("baseline", &c.baseline)?,
    });
    if let Some(id) = &args.analysis {
        body["analysis"] = serde_json::json!({
            "id": id,
            "looks": args.looks,
            "interval_seconds": args.interval.map(|d| d.as_secs()),
        });
    }
    let client = Client::new(&args.server.server)?;
    let v = client.post(&format!("/api/v1/gates/{}/verdict", enc(&args.gate)), &body)?;
    let doc: VerdictDoc = serde_json::from_value(v.clone())
        .context("the server's answer is not a verdict document")?;
    match args.format {
        Format::Json => emit_json(&v)?,
        Format::Table => {
            let tone = match doc.verdict {
                Verdict::Pass => Tone::Good,
                Verdict::Fail => Tone::Bad,
                Verdict::Inconclusive => Tone::Warn,
            };
            let table = crate::report::verdict::table(&doc);
            emit(&paint_line(&table, "VERDICT:", tone, stdout_colour()))?
        }
    }
    Ok(ExitCode::from(match doc.verdict {
        Verdict::Pass => exit::PASS,
        Verdict::Fail => exit::FAIL,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    }))
}
