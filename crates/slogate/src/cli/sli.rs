//! `slogate sli`: the rolling SLI of a service, asked of a running server. JSON (the API's
//! document, on one line) is the default, as scripts have read it from the start; `--format
//! table` is for people.

use super::client::{Client, enc};
use super::{Format, SeriesArgs, ServerArgs, emit, emitln};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    series: SeriesArgs,
    #[arg(long, default_value = "10m")]
    window: String,
    #[arg(long, value_enum, default_value = "json")]
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
    let mut path = format!("/api/v1/sli?window={}", enc(&args.window));
    for (k, v) in args.series.pairs() {
        path.push_str(&format!("&{k}={}", enc(&v)));
    }
    let v = Client::new(&args.server.server)?.get(&path)?;
    match args.format {
        Format::Json => emitln(&serde_json::to_string(&v)?)?,
        Format::Table => emit(&crate::report::sli::table(&v))?,
    }
    Ok(ExitCode::SUCCESS)
}
