//! `slogate sli`: the rolling SLI of a service, asked of a running server.

use super::client::{Client, enc};
use super::{SeriesArgs, ServerArgs, emitln};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    series: SeriesArgs,
    #[arg(long, default_value = "10m")]
    window: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut path = format!("/api/v1/sli?window={}", enc(&args.window));
    for (k, v) in args.series.pairs() {
        path.push_str(&format!("&{k}={}", enc(&v)));
    }
    let v = Client::new(&args.server.server)?.get(&path)?;
    emitln(&serde_json::to_string(&v)?)?;
    Ok(ExitCode::SUCCESS)
}
