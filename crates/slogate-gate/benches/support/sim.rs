//! Decision-quality simulation shared by the bench (`benches/decision_quality.rs`) and its
//! reduced CI version (`tests/decision_quality.rs`): a canary step polled every minute, judged
//! through [`slogate_gate::evaluate_look`], the entry point the server runs.
//!
//! Each run grows a canary and a baseline cohort minute by minute (lognormal latencies, median
//! 100 ms, σ = 0.6, recorded into real [`Sketch`]es; errors drawn per request), evaluates the
//! gate on the data cumulative since the step began at every look, and stops at the first
//! rollback, as Argo Rollouts would.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, LogNormal};
use slogate_gate::{
    Analysis, Check, CohortData, Comparison, CriterionSpec, Decision, GateSpec, Metric,
    evaluate_look,
};
use slogate_sketch::Sketch;

/// Looks per step: a 10-minute step polled every minute.
pub const LOOKS: u32 = 10;
/// The gate's false-rollback budget over the whole step, all criteria together.
pub const ALPHA: f64 = 0.01;
/// Median latency, ns.
const MEDIAN_NS: f64 = 100e6;
const SIGMA: f64 = 0.6;

/// How canary latencies differ from the baseline's.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Every request `factor` times slower (a scale shift: every quantile moves by `factor`).
    Scale(f64),
    /// Log-scale spread `sigma` instead of 0.6, same median.
    Spread(f64),
    /// A fraction `share` of requests `factor` times slower, the rest unchanged.
    Tail { share: f64, factor: f64 },
}

/// One simulated situation.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// Requests per minute.
    pub canary_per_min: u64,
    pub baseline_per_min: u64,
    pub shape: Shape,
    pub canary_errors: f64,
    pub baseline_errors: f64,
}

impl Scenario {
    /// Identical cohorts.
    pub fn a_a(name: &'static str, canary_per_min: u64, baseline_per_min: u64) -> Scenario {
        Scenario {
            name,
            canary_per_min,
            baseline_per_min,
            shape: Shape::Scale(1.0),
            canary_errors: 0.005,
            baseline_errors: 0.005,
        }
    }
}

/// What happened over many runs of one scenario.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub runs: u32,
    /// Runs rolled back at any look.
    pub rollbacks: u32,
    /// Runs that reached the last look and proceeded there.
    pub proceed_last: u32,
    /// Runs that proceeded at any look (a pass is never a rollback, but Argo may act on it).
    pub proceed_any: u32,
    /// Per criterion (gate order): runs in which it was a failing criterion at the rollback.
    pub failed_by: Vec<u32>,
}

/// The gate every scenario is judged by: four statistical criteria sharing 1 % over the step.
pub fn gate() -> GateSpec {
    let criterion = |name: &str, check| CriterionSpec {
        name: name.into(),
        check,
        min_requests: None,
        sustained_seconds: None,
    };
    let quantile = |q: f64, pass: f64| Check::Interval {
        metric: Metric::Latency { quantile: q },
        comparison: Comparison::Ratio,
        pass,
        fail: 1.0,
        confidence: 0.95,
        baseline_known: false,
    };
    GateSpec {
        name: "checkout".into(),
        min_requests: 50,
        criteria: vec![
            criterion("latency-p95", quantile(0.95, 1.1)),
            criterion("latency-p99", quantile(0.99, 1.2)),
            criterion(
                "latency-shift",
                Check::MannWhitney {
                    confidence: 0.95,
                    max_effect: 0.51,
                },
            ),
            criterion(
                "errors",
                Check::TwoProportion {
                    confidence: 0.95,
                    max_difference: 0.001,
                },
            ),
        ],
    }
}

/// The gate's two quantile criteria alone, to show what the order-statistic tests detect
/// without Mann–Whitney's help on pure scale shifts.
pub fn quantile_gate() -> GateSpec {
    let mut g = gate();
    g.name = "quantiles".into();
    g.criteria.truncate(2);
    g
}

/// The gate's criterion `name` alone.
pub fn single_criterion_gate(name: &str) -> GateSpec {
    let mut g = gate();
    g.name = name.into();
    g.criteria.retain(|c| c.name == name);
    g
}

fn record(rng: &mut StdRng, cohort: &mut CohortData, n: u64, shape: Shape, error_rate: f64) {
    let base = LogNormal::new(MEDIAN_NS.ln(), SIGMA).expect("valid lognormal");
    let spread = match shape {
        Shape::Spread(s) => Some(LogNormal::new(MEDIAN_NS.ln(), s).expect("valid lognormal")),
        _ => None,
    };
    for _ in 0..n {
        let v = match shape {
            Shape::Scale(f) => base.sample(rng) * f,
            Shape::Spread(_) => spread.as_ref().expect("set above").sample(rng),
            Shape::Tail { share, factor } => {
                let v = base.sample(rng);
                if rng.random::<f64>() < share {
                    v * factor
                } else {
                    v
                }
            }
        };
        cohort.sketch.record(v as u64);
    }
    cohort.requests += n;
    if n > 0 && error_rate > 0.0 {
        cohort.errors += Binomial::new(n, error_rate)
            .expect("valid binomial")
            .sample(rng);
    }
}

/// How each look is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// [`evaluate_look`] with the gate's budget spent over looks and criteria.
    Sequential,
    /// Plain [`slogate_gate::evaluate`] at every look, each criterion at its own confidence:
    /// what a gate without look accounting does, kept to show the bound has teeth.
    Naive,
}

/// Runs `runs` steps of `scenario` with seeds `seed..seed + runs`.
pub fn simulate(gate: &GateSpec, scenario: &Scenario, runs: u32, seed: u64) -> Tally {
    simulate_with(gate, scenario, runs, seed, Judge::Sequential, ALPHA)
}

/// [`simulate`] with a choice of judge and of the gate's budget (a single criterion given the
/// share it would get among several shows that criterion's own power).
pub fn simulate_with(
    gate: &GateSpec,
    scenario: &Scenario,
    runs: u32,
    seed: u64,
    judge: Judge,
    alpha: f64,
) -> Tally {
    let mut tally = Tally {
        runs,
        failed_by: vec![0; gate.criteria.len()],
        ..Tally::default()
    };
    let (mut canary, mut baseline) = (CohortData::default(), CohortData::default());
    for run in 0..runs {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(u64::from(run)));
        for c in [&mut canary, &mut baseline] {
            c.requests = 0;
            c.errors = 0;
            c.sketch = Sketch::new();
        }
        let mut proceeded = false;
        for look in 1..=LOOKS {
            record(
                &mut rng,
                &mut canary,
                scenario.canary_per_min,
                scenario.shape,
                scenario.canary_errors,
            );
            record(
                &mut rng,
                &mut baseline,
                scenario.baseline_per_min,
                Shape::Scale(1.0),
                scenario.baseline_errors,
            );
            let window = u64::from(look) * 60;
            let e = match judge {
                Judge::Sequential => {
                    let analysis = Analysis::new(look, LOOKS, alpha);
                    evaluate_look(gate, &analysis, &canary, Some(&baseline), window)
                }
                Judge::Naive => slogate_gate::evaluate(gate, &canary, Some(&baseline), window),
            };
            match e.decision {
                Decision::Rollback => {
                    tally.rollbacks += 1;
                    for (i, c) in e.criteria.iter().enumerate() {
                        if c.result == slogate_gate::CriterionResult::Fail {
                            tally.failed_by[i] += 1;
                        }
                    }
                    break;
                }
                Decision::Proceed => {
                    proceeded = true;
                    if look == LOOKS {
                        tally.proceed_last += 1;
                    }
                }
                Decision::Hold => {}
            }
        }
        tally.proceed_any += u32::from(proceeded);
    }
    tally
}
