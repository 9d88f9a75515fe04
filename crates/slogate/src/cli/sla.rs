//! `slogate sla --service S --hours 24`: availability, latency and error rate over the last hours
//! of history against targets from flags or the service's SLOs. Exit 0 pass, 1 fail, 2 no data.

use super::term::{Progress, Tone, paint_line, stdout_colour};
use super::{Format, HistorySource, emit, emit_json, now_unix, runtime};
use crate::report::sla::{
    Measured, SlaReport, Target, TargetSpec, parse_latency, parse_ratio, targets_from_slos,
};
use anyhow::{Context as _, bail};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
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
}

impl Args {
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }
}

/// The targets given as flags, in a fixed order.
fn flag_targets(a: &Args) -> anyhow::Result<Vec<TargetSpec>> {
    let mut t = Vec::new();
    let spec = |target, flag: &str| TargetSpec {
        target,
        source: format!("--{flag}"),
    };
    if let Some(v) = &a.availability {
        t.push(spec(
            Target::Availability {
                min: parse_ratio(v, true)?,
            },
            "availability",
        ));
    }
    for (quantile, flag, v) in [(0.95, "p95", &a.p95), (0.99, "p99", &a.p99)] {
        if let Some(v) = v {
            let max_ms = parse_latency(v)?;
            t.push(spec(Target::Latency { quantile, max_ms }, flag));
        }
    }
    if let Some(v) = &a.error_rate {
        t.push(spec(
            Target::ErrorRate {
                max: parse_ratio(v, false)?,
            },
            "error-rate",
        ));
    }
    Ok(t)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, root) = args.source.resolve()?;
    let (service, hours) = (&args.service, args.hours);
    if hours == 0 || hours > crate::report::sla::MAX_HOURS {
        bail!(
            "--hours must be between 1 and {}",
            crate::report::sla::MAX_HOURS
        );
    }
    let down = parse_ratio(&args.down_error_rate, false).context("--down-error-rate")?;
    let mut targets = flag_targets(&args)?;
    if targets.is_empty() {
        targets = targets_from_slos(&cfg.slos, service, args.env.as_deref());
    }
    if targets.is_empty() {
        bail!(
            "no targets: pass --availability, --p95, --p99 or --error-rate, or configure SLOs for service {service:?} in {}",
            cfg.source
        );
    }
    let mut matchers = vec![("service".to_string(), service.clone())];
    if let Some(e) = &args.env {
        matchers.push(("env".into(), e.clone()));
    }
    let now = now_unix();
    let range = (now - (hours * 3600) as i64, now + 1);
    let progress = Progress::start(&format!("reading {hours}h of history"));
    let m = runtime()?.block_on(async {
        let history = slogate_history::History::open(&root, &cfg.window.extra_dims).await?;
        let ops = slogate_history::operation_totals(&history, &matchers, range).await?;
        let total = slogate_history::CohortTotals::merge_all(&ops)?;
        let max_slots = (hours * 3600 / cfg.window.slot_seconds.max(1) + 2) as usize;
        let slots = slogate_history::slot_counts(&history, &matchers, range, max_slots).await?;
        anyhow::Ok(Measured {
            requests: total.requests,
            errors: total.errors,
            sketch: total.decode_sketch()?,
            minutes: crate::report::sla::minutes(&slots),
        })
    })?;
    drop(progress);
    let (checks, result) = crate::report::sla::judge(&m, &targets, args.min_requests, down);
    let report = SlaReport {
        service: service.clone(),
        selector: matchers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        hours,
        from: slogate_history::rfc3339(range.0),
        to: slogate_history::rfc3339(now),
        requests: m.requests,
        errors: m.errors,
        minutes_with_traffic: m.minutes.len() as u64,
        down_error_rate: down,
        min_requests: args.min_requests,
        checks,
        result,
    };
    match args.format {
        Format::Json => emit_json(&report)?,
        Format::Table => {
            let tone = match result.exit_code() {
                super::exit::PASS => Tone::Good,
                super::exit::FAIL => Tone::Bad,
                _ => Tone::Warn,
            };
            let text = crate::report::sla::render_text(&report);
            emit(&paint_line(&text, "SLA COMPLIANCE:", tone, stdout_colour()))?
        }
    }
    Ok(ExitCode::from(result.exit_code()))
}
