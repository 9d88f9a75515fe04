//! slogate-load: an OTLP trace and metrics load generator for slogate.
//!
//! A [`Scenario`] describes cohorts (service, env, version) with operations, a latency
//! distribution, an error rate and a traffic weight, plus optional phases that change them over
//! time. [`run`] pre-encodes a pool of realistic export requests per cohort and phase, replays
//! them over OTLP/gRPC or OTLP/HTTP at the target rate, honours the server's backpressure, and
//! returns a [`Report`] whose per-cohort latency quantiles are exact for what was accepted.
//!
//! [`metrics`] is the OTLP metrics counterpart: a [`MetricsSpec`] (services, instances, metric
//! streams, points per request) and [`run_metrics`], whose [`MetricsReport`] counts the data
//! points sent, accepted and rejected and the errors by status.
//!
//! ```no_run
//! use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target, run_blocking};
//! use std::time::Duration;
//! let target = Target { endpoint: "http://127.0.0.1:4317".into(), ..Target::default() };
//! let mut canary = CohortSpec::new("checkout", "v2", LatencyDist::lognormal(56.0, 0.4));
//! canary.weight = 0.05;
//! let baseline = CohortSpec { weight: 0.95, ..CohortSpec::new("checkout", "v1", LatencyDist::lognormal(40.0, 0.4)) };
//! let sc = Scenario::new(target, Rate::PerSecond(50_000.0), Duration::from_secs(5), vec![baseline, canary]);
//! let report = run_blocking(&sc).unwrap();
//! println!("{report}");
//! ```

pub mod latency;
pub mod metrics;
pub mod pool;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sink;
pub mod transport;

pub use latency::{LatencyDist, LogNormalSpec};
pub use metrics::{MetricsReport, MetricsScenario, MetricsSpec, run_metrics, run_metrics_blocking};
pub use report::{CohortReport, PhaseReport, Report};
pub use run::{RunError, run, run_blocking};
pub use scenario::{
    CohortOverride, CohortSpec, Operation, Operations, Phase, Protocol, Rate, Scenario,
    ScenarioError, Target,
};
pub use transport::{Access, Signal};
