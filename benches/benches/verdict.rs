//! Criterion benchmark of the verdict endpoint's work: two window queries (canary selector
//! `service + version=v2`, baseline selector `service + version=v1`, 600 s) and
//! [`slogate_gate::evaluate`] with a realistic gate (error rate absolute, p95 ratio,
//! Mann–Whitney, two-proportion) — the same composition as `Gates::evaluate` in the server,
//! minus the verdict log and JSON.
//!
//! The registry holds 1,000 live series: 10 services × 50 operations × 2 versions, 60 closed
//! 10-second slots each (the whole 10-minute window) plus data in the open slot. The baseline
//! (v1) series get 10 spans per slot, the canary (v2) series 3; latencies are log-normal with a
//! per-operation median between 5 and 200 ms (σ = 0.6), so a cohort's merged sketch is as wide
//! as a real service's. Data is seeded.
//!
//! After criterion, a manual loop times 10,000 individual verdicts with `Instant` and prints
//! the distribution (criterion reports means and medians, the target is on the p99); set
//! `VERDICT_ITERS` to change the count. It is skipped in `--test` / `--list` mode.
//!
//! Measured on 2 vCPUs, "Intel(R) Xeon(R) Processor" (a shared cloud VM), while another
//! workspace build was compiling (expect 10–20 % better on a quiet machine):
//! - `verdict/query_canary` (50 series, 3 spans per slot): 187 µs
//! - `verdict/query_baseline` (50 series, 10 spans per slot): 439 µs
//! - `verdict/evaluate` (4 criteria on the merged cohorts): 8.5 µs
//! - `verdict/query_and_evaluate`: 697 µs mean
//! - manual loop, 10,000 verdicts: mean 636 µs, p50 605 µs, p90 713 µs, **p99 990 µs**,
//!   p99.9 3.0 ms, max 9.7 ms (an earlier run: p99 912 µs) — inside the ≤ 2 ms p99 target; the
//!   tail above p99 is the machine (scheduling under a concurrent build), not the work, which
//!   is identical on every iteration.
//!
//! The cost is the two window queries (decoding 2 × 50 × 60 stored slot sketches), not the
//! statistics.
//!
//! Issue 6 (windows read whole 5-minute coarse slots, stored slots merged without
//! re-validation), the old and the new binary back to back on the same loaded machine (load ≈ 5):
//! - `verdict/query_canary`: 269 → 63 µs; `verdict/query_baseline`: 565 → 145 µs
//! - `verdict/query_and_evaluate`: 1,003 → 226 µs mean
//! - manual loop: mean 781 → 230 µs, p50 628 → 151 µs, p90 710 → 158 µs, p99 4.8 → 4.2 ms (the
//!   p99 of both is scheduling stalls on the shared cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use slogate_core::{Observation, ObservationWriter, Operation, Recorder, Selector};
use slogate_gate::{
    Analysis, Check, CohortData, Comparison, CriterionSpec, Evaluation, GateSpec, Metric, evaluate,
    evaluate_look,
};
use slogate_window::{ManualClock, Registry, WindowConfig};

/// A multiple of the coarse slot, so fine and coarse slots line up as in production.
const T0: u64 = 1_800_000_000;
const SERVICES: usize = 10;
const OPERATIONS: usize = 50;
/// Closed slots: 60 × 10 s = the whole 600 s window.
const SLOTS: usize = 60;
const WINDOW_SECONDS: u64 = 600;
/// (version, spans per series per slot, latency factor, error rate).
const VERSIONS: [(&str, usize, f64, f64); 2] = [("v1", 10, 1.0, 0.005), ("v2", 3, 1.05, 0.007)];

struct Fixture {
    registry: Arc<Registry>,
    canary: Selector,
    baseline: Selector,
    spec: GateSpec,
}

fn fixture() -> Fixture {
    let services: Vec<String> = (0..SERVICES).map(|s| format!("svc-{s:02}")).collect();
    let operations: Vec<String> = (0..OPERATIONS)
        .map(|o| format!("/api/v1/resource-{o:02}/{{id}}"))
        .collect();
    // Per-operation latency: medians spread log-uniformly over 5..200 ms.
    let latencies: Vec<LogNormal<f64>> = (0..OPERATIONS)
        .map(|o| {
            let median_ms = 5.0 * (40.0f64).powf(o as f64 / (OPERATIONS - 1) as f64);
            LogNormal::new((median_ms * 1e6).ln(), 0.6).expect("valid log-normal")
        })
        .collect();
    let clock = ManualClock::new(T0);
    let registry = Registry::new(WindowConfig::default(), clock.clone());
    let mut rng = StdRng::seed_from_u64(7);

    let fill_slot = |registry: &Registry, rng: &mut StdRng| {
        let mut w = registry.writer();
        for service in &services {
            for (version, per_slot, factor, error_rate) in VERSIONS {
                for (op, lat) in operations.iter().zip(&latencies) {
                    for _ in 0..per_slot {
                        w.record(&Observation {
                            service: service.as_bytes(),
                            env: b"production",
                            version: version.as_bytes(),
                            operation: Operation::pair(b"GET", b' ', op.as_bytes()),
                            extras: [b""; 4],
                            error: rng.random_bool(error_rate),
                            duration_ns: (lat.sample(rng) * factor) as u64,
                            adjusted_count: 1,
                        });
                    }
                }
            }
        }
    };
    for _ in 0..SLOTS {
        fill_slot(&registry, &mut rng);
        clock.advance(10);
        registry.close_slots();
    }
    // The open slot: queries merge it too, so fresh spans count.
    fill_slot(&registry, &mut rng);
    assert_eq!(
        registry.series_count(),
        SERVICES * OPERATIONS * VERSIONS.len()
    );

    let canary = Selector::new([("service", "svc-03"), ("version", "v2")], &[]).expect("valid");
    let baseline = Selector::new([("service", "svc-03"), ("version", "v1")], &[]).expect("valid");
    let c = registry.query(&canary, WINDOW_SECONDS);
    let b = registry.query(&baseline, WINDOW_SECONDS);
    // Every slot of the window, open one included, for all 50 series of each cohort.
    assert_eq!(
        (c.series, c.requests),
        (
            OPERATIONS,
            (OPERATIONS * (SLOTS + 1) * VERSIONS[1].1) as u64
        )
    );
    assert_eq!(
        (b.series, b.requests),
        (
            OPERATIONS,
            (OPERATIONS * (SLOTS + 1) * VERSIONS[0].1) as u64
        )
    );

    let criterion = |name: &str, check: Check| CriterionSpec {
        name: name.into(),
        check,
        min_requests: None,
        sustained_seconds: None,
    };
    let spec = GateSpec {
        name: "checkout-canary".into(),
        min_requests: 200,
        criteria: vec![
            criterion(
                "error-rate",
                Check::Threshold {
                    metric: Metric::ErrorRate,
                    comparison: Comparison::Absolute,
                    pass: 0.01,
                    fail: 0.02,
                    direction: None,
                },
            ),
            criterion(
                "p95-ratio",
                Check::Threshold {
                    metric: Metric::Latency { quantile: 0.95 },
                    comparison: Comparison::Ratio,
                    pass: 1.1,
                    fail: 1.2,
                    direction: None,
                },
            ),
            criterion(
                "latency-shift",
                Check::MannWhitney {
                    confidence: 0.99,
                    max_effect: 0.56,
                },
            ),
            criterion(
                "error-shift",
                Check::TwoProportion {
                    confidence: 0.99,
                    max_difference: 0.005,
                },
            ),
        ],
    };
    spec.validate().expect("valid spec");
    Fixture {
        registry,
        canary,
        baseline,
        spec,
    }
}

fn cohort(registry: &Registry, sel: &Selector) -> CohortData {
    let w = registry.query(sel, WINDOW_SECONDS);
    CohortData {
        requests: w.requests,
        errors: w.errors,
        sketch: w.sketch,
        observed_seconds: Some(w.observed_seconds),
        ..Default::default()
    }
}

/// The verdict endpoint's work, as in `Gates::evaluate`.
fn verdict(f: &Fixture) -> Evaluation {
    let canary = cohort(&f.registry, &f.canary);
    let baseline = cohort(&f.registry, &f.baseline);
    evaluate(&f.spec, &canary, Some(&baseline), WINDOW_SECONDS)
}

fn bench(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("verdict");
    group.bench_function("query_canary", |b| {
        b.iter(|| black_box(cohort(&f.registry, black_box(&f.canary))))
    });
    group.bench_function("query_baseline", |b| {
        b.iter(|| black_box(cohort(&f.registry, black_box(&f.baseline))))
    });
    let canary = cohort(&f.registry, &f.canary);
    let baseline = cohort(&f.registry, &f.baseline);
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            black_box(evaluate(
                &f.spec,
                black_box(&canary),
                Some(black_box(&baseline)),
                WINDOW_SECONDS,
            ))
        })
    });
    group.bench_function("query_and_evaluate", |b| {
        b.iter(|| black_box(verdict(black_box(f))))
    });
    // An analysis look with the recommended gate (two quantile intervals, Mann-Whitney, the
    // exact error test) at look 10 of 10. The server's looks have time-based information
    // fractions, different for every analysis, so the boundaries are integrated afresh at
    // each look ("fresh"); "cached" is a repeated identical design.
    let gate = recommended_gate();
    group.bench_function("evaluate_look_cached", |b| {
        let a = Analysis::new(10, 10, 0.01);
        b.iter(|| {
            black_box(evaluate_look(
                &gate,
                black_box(&a),
                black_box(&canary),
                Some(black_box(&baseline)),
                WINDOW_SECONDS,
            ))
        })
    });
    let mut jitter = 0u64;
    group.bench_function("evaluate_look_fresh", |b| {
        b.iter(|| {
            jitter += 1;
            let mut a = Analysis::new(10, 10, 0.01);
            a.fractions = (1..=10)
                .map(|k| (f64::from(k) - 0.5 + (jitter % 1000) as f64 * 1e-4) / 10.0)
                .collect();
            black_box(evaluate_look(
                &gate,
                black_box(&a),
                black_box(&canary),
                Some(black_box(&baseline)),
                WINDOW_SECONDS,
            ))
        })
    });
    group.finish();
}

/// The gate `deploy/examples/checkout-canary.yaml` recommends and the decision-quality bench
/// simulates.
fn recommended_gate() -> GateSpec {
    let interval = |name: &str, quantile: f64, pass: f64| CriterionSpec {
        name: name.into(),
        check: Check::Interval {
            metric: Metric::Latency { quantile },
            comparison: Comparison::Ratio,
            pass,
            fail: 1.0,
            confidence: 0.95,
            baseline_known: false,
        },
        min_requests: None,
        sustained_seconds: None,
    };
    let spec = GateSpec {
        name: "recommended".into(),
        min_requests: 100,
        criteria: vec![
            interval("p95", 0.95, 1.1),
            interval("p99", 0.99, 1.2),
            CriterionSpec {
                name: "latency-shift".into(),
                check: Check::MannWhitney {
                    confidence: 0.95,
                    max_effect: 0.51,
                },
                min_requests: None,
                sustained_seconds: None,
            },
            CriterionSpec {
                name: "errors".into(),
                check: Check::TwoProportion {
                    confidence: 0.95,
                    max_difference: 0.001,
                },
                min_requests: None,
                sustained_seconds: None,
            },
        ],
    };
    spec.validate().expect("valid spec");
    spec
}

/// Times `n` verdicts one by one and prints the distribution.
fn manual_percentiles(f: &Fixture, n: usize) {
    for _ in 0..100 {
        black_box(verdict(f));
    }
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        black_box(verdict(black_box(f)));
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort_unstable();
    let q = |p: f64| times[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let e = verdict(f);
    println!(
        "\nverdict (2 queries + evaluate), {n} iterations timed one by one: \
         mean {:?}, p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?} (verdict {:?}, {})",
        total / n as u32,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        times[n - 1],
        e.verdict,
        e.criteria
            .iter()
            .map(|c| format!(
                "{} {:?} (score {:.4}, p {:.2e})",
                c.name,
                c.result,
                c.score.unwrap_or(f64::NAN),
                c.p_value.unwrap_or(f64::NAN)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing_or_testing = args.iter().any(|a| a == "--list" || a == "--test");
    let f = fixture();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &f);
    c.final_summary();
    if !listing_or_testing {
        let n = std::env::var("VERDICT_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        manual_percentiles(&f, n);
    }
}
