//! The state the server keeps between requests, behind the API and the background tasks:
//!
//! - [`gates`]: gate evaluation on the live windows, the verdict document, the verdict log and
//!   sustained-failure state;
//! - [`alerts`]: SLO burn rates, threshold rules and gate failures as alert state machines that
//!   write notifications to the PagerDuty outbox;
//! - [`baselines`]: the stored baselines gates compare with;
//! - [`analysis`]: rollout steps judged at repeated looks on cumulative data;
//! - [`measure`]: OTLP metric criteria and rules measured for a cohort.
//!
//! Architecture invariant: nothing here speaks HTTP or gRPC; `api/` adapts these types to the
//! wire, and `server/` owns their lifetimes.

pub mod alerts;
pub mod analysis;
pub mod baselines;
pub mod gates;
pub mod measure;

use serde::{Deserialize, Serialize};

/// Latency quantiles in milliseconds as every document shows them: `null` when there is no data
/// (no data is not zero latency).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LatencyMs {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl LatencyMs {
    pub fn of(sketch: &slogate_sketch::Sketch) -> LatencyMs {
        let [p50, p90, p95, p99] = sketch.quantiles([0.5, 0.9, 0.95, 0.99]);
        LatencyMs {
            p50: ms(p50),
            p90: ms(p90),
            p95: ms(p95),
            p99: ms(p99),
        }
    }
}

/// Nanoseconds as milliseconds rounded to the microsecond: the sketch is exact to 0.4 %, more
/// digits are noise.
pub fn ms(ns: Option<u64>) -> Option<f64> {
    ns.map(|ns| (ns as f64 / 1e3).round() / 1e3)
}

/// One `GET /cart` request of `checkout` in prod, for the engine's tests.
#[cfg(test)]
pub(crate) fn checkout_request(
    version: &str,
    error: bool,
    duration_ns: u64,
) -> slogate_core::Observation<'_> {
    slogate_core::Observation {
        service: b"checkout",
        env: b"prod",
        version: version.as_bytes(),
        operation: slogate_core::Operation::single(b"GET /cart"),
        extras: [b""; 4],
        error,
        duration_ns,
        adjusted_count: 1,
    }
}
