//! `slogate verdict GATE`: evaluates a gate on a running server and prints the verdict; the
//! exit code is the verdict (0 pass, 1 fail, 2 inconclusive).

use super::client::{Client, enc};
use super::{CohortArgs, Format, ServerArgs, emit, exit, parse_pairs};
use crate::engine::gates::VerdictDoc;
use anyhow::Context as _;
use slogate_gate::Verdict;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    gate: String,
    #[command(flatten)]
    cohorts: CohortArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.cohorts;
    let pairs = |flag, items| -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        Ok(parse_pairs(flag, items)?
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect())
    };
    let body = serde_json::json!({
        "phase": c.phase,
        "canary": pairs("canary", &c.canary)?,
        "baseline": pairs("baseline", &c.baseline)?,
    });
    let client = Client::new(&args.server.server)?;
    let v = client.post(&format!("/api/v1/gates/{}/verdict", enc(&args.gate)), &body)?;
    let doc: VerdictDoc = serde_json::from_value(v.clone())
        .context("the server's answer is not a verdict document")?;
    match args.format {
        Format::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&v)?))?,
        Format::Table => emit(&crate::report::verdict::table(&doc))?,
    }
    Ok(ExitCode::from(match doc.verdict {
        Verdict::Pass => exit::PASS,
        Verdict::Fail => exit::FAIL,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    }))
}
