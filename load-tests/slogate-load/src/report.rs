//! What a run sent, with exact latency quantiles, as a table or JSON.

use crate::scenario::CohortSpec;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Per-cohort totals of accepted requests.
#[derive(Debug, Clone, Serialize)]
pub struct CohortReport {
    pub name: String,
    pub service: String,
    pub env: String,
    pub version: String,
    pub requests: u64,
    pub spans: u64,
    pub errors_sent: u64,
    /// Exact nearest-rank quantiles (the rank rule slogate's sketch uses) of the durations sent.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Every distinct duration in ns with its exact count, ascending; for other quantiles.
    #[serde(skip)]
    pub histogram: Vec<(u64, u64)>,
}

/// The nearest rank of quantile `q` among `n` values, 1-based (slogate-sketch's rule).
pub fn nearest_rank(q: f64, n: u64) -> Option<u64> {
    if n == 0 || q.is_nan() {
        return None;
    }
    Some(((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n))
}

impl CohortReport {
    pub fn new(
        spec: &CohortSpec,
        requests: u64,
        spans: u64,
        errors_sent: u64,
        mut hist: Vec<(u64, u64)>,
    ) -> CohortReport {
        hist.sort_unstable_by_key(|e| e.0);
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(hist.len());
        for (d, n) in hist {
            match merged.last_mut() {
                Some(last) if last.0 == d => last.1 += n,
                _ => merged.push((d, n)),
            }
        }
        let mut r = CohortReport {
            name: spec.display_name(),
            service: spec.service.clone(),
            env: spec.env.clone(),
            version: spec.version.clone(),
            requests,
            spans,
            errors_sent,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            histogram: merged,
        };
        r.p50_ms = r.quantile_ms(0.50);
        r.p95_ms = r.quantile_ms(0.95);
        r.p99_ms = r.quantile_ms(0.99);
        r
    }

    /// Exact quantile in nanoseconds of what was sent.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let n: u64 = self.histogram.iter().map(|e| e.1).sum();
        let rank = nearest_rank(q, n)?;
        let mut below = 0;
        for &(d, k) in &self.histogram {
            below += k;
            if below >= rank {
                return Some(d);
            }
        }
        None
    }

    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.quantile_ns(q).map(|ns| ns as f64 / 1e6)
    }

    pub fn error_rate(&self) -> f64 {
        if self.spans == 0 {
            0.0
        } else {
            self.errors_sent as f64 / self.spans as f64
        }
    }
}

/// Per-cohort totals within one phase (only when the scenario has phases).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub start_s: f64,
    pub per_cohort: Vec<CohortReport>,
}

/// What a run did. `spans_sent` counts spans in requests the server accepted (including any
/// it then rejected in `partial_success`, which are in `rejected_spans`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Option<String>,
    pub spans_sent: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub throttled: u64,
    pub rejected_spans: u64,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    pub spans_per_second: f64,
    /// The first failure's message, to tell a refused connection from a 400.
    pub first_error: Option<String>,
    pub per_cohort: Vec<CohortReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_phase: Vec<PhaseReport>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Report {
    pub fn cohort(&self, name: &str) -> Option<&CohortReport> {
        self.per_cohort.iter().find(|c| c.name == name)
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn table(f: &mut fmt::Formatter<'_>, rows: &[CohortReport]) -> fmt::Result {
    writeln!(
        f,
        "  {:<24} {:<16} {:<8} {:<10} {:>12} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "cohort",
        "service",
        "env",
        "version",
        "spans",
        "errors",
        "err%",
        "p50 ms",
        "p95 ms",
        "p99 ms"
    )?;
    for c in rows {
        writeln!(
            f,
            "  {:<24} {:<16} {:<8} {:<10} {:>12} {:>10} {:>8.3} {:>10} {:>10} {:>10}",
            c.name,
            c.service,
            c.env,
            c.version,
            c.spans,
            c.errors_sent,
            c.error_rate() * 100.0,
            ms(c.p50_ms),
            ms(c.p95_ms),
            ms(c.p99_ms)
        )?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.scenario {
            writeln!(f, "scenario {n}")?;
        }
        writeln!(
            f,
            "sent {} spans in {:.2}s ({:.0} spans/s): {} requests ok, {} failed, {} throttled, {} spans rejected",
            self.spans_sent,
            self.elapsed.as_secs_f64(),
            self.spans_per_second,
            self.requests_ok,
            self.requests_failed,
            self.throttled,
            self.rejected_spans
        )?;
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        table(f, &self.per_cohort)?;
        for p in &self.per_phase {
            writeln!(f, "phase {} (from {:.0}s)", p.name, p.start_s)?;
            table(f, &p.per_cohort)?;
        }
        Ok(())
    }
}
