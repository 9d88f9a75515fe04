//! Stored baselines as tables: `slogate baseline list` and `slogate baseline show`.

use super::{aligned, header, opt_ms, opt_pct};
use crate::engine::baselines::{BaselineListing, CohortView, summary};
use slogate_history::baseline::Baseline;
use std::fmt::Write as _;

/// `slogate baseline list`: one row per baseline; unreadable ones say why.
pub fn list_table(list: &[BaselineListing]) -> String {
    let mut rows = vec![header(&[
        "name",
        "selector",
        "from",
        "to",
        "requests",
        "error rate",
        "p95",
    ])];
    for b in list {
        rows.push(match b {
            BaselineListing::Ok(s) => vec![
                s.name.clone(),
                s.selector.clone(),
                s.from.clone(),
                s.to.clone(),
                s.total.requests.to_string(),
                opt_pct(s.total.error_rate),
                opt_ms(s.total.latency_ms.p95),
            ],
            BaselineListing::Unreadable { name, error } => {
                let mut row = vec![name.clone(), format!("unreadable: {error}")];
                row.extend(["", "", "-", "-", "-"].map(String::from));
                row
            }
        });
    }
    aligned(&rows)
}

/// `slogate baseline show`: the range, then requests, errors and percentiles per operation.
pub fn show_text(b: &Baseline) -> String {
    let s = summary(b);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "baseline {} · {} · {} → {} · captured {}",
        s.name, s.selector, s.from, s.to, s.captured_at
    );
    let mut rows = vec![header(&[
        "operation",
        "requests",
        "errors",
        "error rate",
        "mean",
        "p50",
        "p95",
        "p99",
    ])];
    let row = |c: &CohortView| {
        vec![
            c.operation.clone().unwrap_or_else(|| "(all)".into()),
            c.requests.to_string(),
            c.errors.to_string(),
            opt_pct(c.error_rate),
            opt_ms(c.latency_ms.mean),
            opt_ms(c.latency_ms.p50),
            opt_ms(c.latency_ms.p95),
            opt_ms(c.latency_ms.p99),
        ]
    };
    rows.extend(std::iter::once(&s.total).chain(&s.operations).map(row));
    out.push_str(&aligned(&rows));
    if !s.metrics.is_empty() {
        let _ = writeln!(out, "\nOTLP metrics captured:");
        let mut rows = vec![header(&["metric", "kind", "unit", "streams", "points"])];
        rows.extend(s.metrics.iter().map(|m| {
            vec![
                m.metric.clone(),
                m.kind.clone(),
                m.unit.clone(),
                m.streams.to_string(),
                m.points.to_string(),
            ]
        }));
        out.push_str(&aligned(&rows));
    }
    out
}
