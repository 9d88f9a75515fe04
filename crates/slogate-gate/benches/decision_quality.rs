//! Decision-quality benchmark: false rollbacks, proceeds and power of a four-criterion gate
//! under repeated looks, simulated through `evaluate_look`; prints a Markdown table.
//!
//! `cargo bench -p slogate-gate --bench decision_quality` (release). Set
//! `DECISION_QUALITY_SCALE=0.1` for a quick pass with a tenth of the runs. The figures from the
//! last full run are kept in `benches/decision_quality.md`.

#[path = "support/sim.rs"]
mod sim;

use std::time::Instant;

use sim::{
    ALPHA, Judge, LOOKS, Scenario, Shape, Tally, gate, quantile_gate, simulate, simulate_with,
    single_criterion_gate,
};

/// A 5 % canary: the baseline (the other 95 % of the traffic) gets 19 requests per canary one.
const BASELINE_PER_CANARY: u64 = 19;

/// Which gate and judge a row runs.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// The four-criterion gate through `evaluate_look`.
    Gate,
    /// Its two quantile criteria alone (Holm over 2).
    Quantiles,
    /// One criterion alone at the quarter of α it gets first among four (Holm's first share).
    Alone(&'static str),
    /// The four criteria through plain `evaluate` at each look (no look accounting).
    Naive,
}

struct Row {
    setup: Setup,
    scenario: Scenario,
    runs: u32,
    /// What the row is held to, and how to read the tally against it.
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    /// False rollbacks at most this share, and (at 10 req/s) proceeds at the last look at least.
    Null {
        max_rollback: f64,
        min_proceed: Option<f64>,
    },
    /// Rolled back in at least this share of runs.
    Power(f64),
    /// No target: reported for information.
    Report,
    /// Never proceeds at any look.
    NeverPass,
}

fn per_min(req_per_s: f64) -> u64 {
    (req_per_s * 60.0).round() as u64
}

fn scenario(name: &'static str, canary_rps: f64, shape: Shape, errors: f64) -> Scenario {
    let c = per_min(canary_rps);
    Scenario {
        name,
        canary_per_min: c,
        baseline_per_min: c * BASELINE_PER_CANARY,
        shape,
        canary_errors: errors,
        baseline_errors: 0.005,
    }
}

fn rows(scale: f64) -> Vec<Row> {
    let runs = |n: f64| ((n * scale).round() as u32).max(20);
    let null = |min_proceed| Target::Null {
        max_rollback: 0.01,
        min_proceed,
    };
    let same = Shape::Scale(1.0);
    vec![
        Row {
            setup: Setup::Gate,
            scenario: scenario("A/A, 300 canary requests (0.5 req/s)", 0.5, same, 0.005),
            runs: runs(4000.0),
            target: null(None),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("A/A, 6,000 canary requests (10 req/s)", 10.0, same, 0.005),
            runs: runs(4000.0),
            target: null(Some(0.9)),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("A/A, 30,000 canary requests (50 req/s)", 50.0, same, 0.005),
            runs: runs(2000.0),
            target: null(None),
        },
        Row {
            setup: Setup::Gate,
            scenario: Scenario {
                name: "A/A, 6,000 vs a same-size baseline of 6,000",
                canary_per_min: 600,
                baseline_per_min: 600,
                ..Scenario::a_a("", 0, 0)
            },
            runs: runs(4000.0),
            target: null(Some(0.9)),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("p95 +10% (scale), 10 req/s", 10.0, Shape::Scale(1.1), 0.005),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario(
                "p95 & p99 +20% (scale), 10 req/s",
                10.0,
                Shape::Scale(1.2),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("p95 +50% (scale), 10 req/s", 10.0, Shape::Scale(1.5), 0.005),
            runs: runs(500.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("p95 +5% (scale), 50 req/s", 50.0, Shape::Scale(1.05), 0.005),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Gate,
            scenario: Scenario {
                name: "p95 +10% (scale), 6,000 vs same-size baseline",
                canary_per_min: 600,
                baseline_per_min: 600,
                shape: Shape::Scale(1.1),
                ..Scenario::a_a("", 0, 0)
            },
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Quantiles,
            scenario: scenario(
                "quantile criteria only: p95 +10% (scale), 10 req/s",
                10.0,
                Shape::Scale(1.1),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Quantiles,
            scenario: scenario(
                "quantile criteria only: p99 +20% (scale), 10 req/s",
                10.0,
                Shape::Scale(1.2),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Quantiles,
            scenario: scenario(
                "quantile criteria only: p95 +5% (scale), 50 req/s",
                50.0,
                Shape::Scale(1.05),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Quantiles,
            scenario: scenario(
                "quantile criteria only: A/A, 6,000 canary requests",
                10.0,
                same,
                0.005,
            ),
            runs: runs(4000.0),
            target: null(Some(0.9)),
        },
        Row {
            setup: Setup::Alone("latency-p99"),
            scenario: scenario(
                "p99 criterion alone at α/4: p99 +20% (scale), 10 req/s",
                10.0,
                Shape::Scale(1.2),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Alone("latency-p95"),
            scenario: scenario(
                "p95 criterion alone at α/4: p95 +10% (scale), 10 req/s",
                10.0,
                Shape::Scale(1.1),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Alone("latency-p95"),
            scenario: scenario(
                "p95 criterion alone at α/4: p95 +5% (scale), 50 req/s",
                50.0,
                Shape::Scale(1.05),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.95),
        },
        Row {
            setup: Setup::Naive,
            scenario: Scenario {
                name: "no look accounting (plain `evaluate` at 95% every look): A/A, 6,000 vs 6,000",
                canary_per_min: 600,
                baseline_per_min: 600,
                ..Scenario::a_a("", 0, 0)
            },
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario(
                "variance σ 0.6 → 0.75, 10 req/s",
                10.0,
                Shape::Spread(0.75),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario(
                "variance σ 0.6 → 0.75, 50 req/s",
                50.0,
                Shape::Spread(0.75),
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.9),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario(
                "tail only: 2% of requests 3× slower, 10 req/s",
                10.0,
                Shape::Tail {
                    share: 0.02,
                    factor: 3.0,
                },
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario(
                "tail only: 2% of requests 3× slower, 50 req/s",
                50.0,
                Shape::Tail {
                    share: 0.02,
                    factor: 3.0,
                },
                0.005,
            ),
            runs: runs(1000.0),
            target: Target::Power(0.9),
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("errors 0.5% → 1.0%, 10 req/s", 10.0, same, 0.01),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("errors 0.5% → 1.0%, 50 req/s", 50.0, same, 0.01),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("errors 0.5% → 3%, 0.5 req/s", 0.5, same, 0.03),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("errors 0.5% → 3%, 10 req/s", 10.0, same, 0.03),
            runs: runs(1000.0),
            target: Target::Report,
        },
        Row {
            setup: Setup::Gate,
            scenario: scenario("thin canary (0.1 req/s, 60 requests)", 0.1, same, 0.005),
            runs: runs(1000.0),
            target: Target::NeverPass,
        },
        Row {
            setup: Setup::Gate,
            scenario: Scenario {
                name: "dead baseline (no baseline traffic), 10 req/s",
                canary_per_min: 600,
                baseline_per_min: 0,
                ..Scenario::a_a("", 0, 0)
            },
            runs: runs(200.0),
            target: Target::NeverPass,
        },
    ]
}

fn share(n: u32, runs: u32) -> String {
    format!("{:.2}%", 100.0 * f64::from(n) / f64::from(runs))
}

fn verdict(target: Target, t: &Tally) -> String {
    let rate = |n: u32| f64::from(n) / f64::from(t.runs);
    let yes = |ok: bool| if ok { "met" } else { "**not met**" };
    match target {
        Target::Null {
            max_rollback,
            min_proceed,
        } => {
            let mut s = format!(
                "rollback ≤ {}%: {}",
                max_rollback * 100.0,
                yes(rate(t.rollbacks) <= max_rollback)
            );
            if let Some(p) = min_proceed {
                s += &format!(
                    "; proceed ≥ {}%: {}",
                    p * 100.0,
                    yes(rate(t.proceed_last) >= p)
                );
            }
            s
        }
        Target::Power(p) => format!("power ≥ {}%: {}", p * 100.0, yes(rate(t.rollbacks) >= p)),
        Target::Report => "—".into(),
        Target::NeverPass => format!("never passes: {}", yes(t.proceed_any == 0)),
    }
}

fn main() {
    let scale: f64 = std::env::var("DECISION_QUALITY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let gate = gate();
    let names: Vec<&str> = gate.criteria.iter().map(|c| c.name.as_str()).collect();
    println!(
        "Gate: {} (one-sided α = {ALPHA} for the whole gate over {LOOKS} looks, O'Brien–Fleming \
         spending, Holm across criteria). A 5% canary: the baseline gets {BASELINE_PER_CANARY}× \
         the canary's requests unless stated. Lognormal latency, median 100 ms, σ = 0.6; baseline \
         errors 0.5%.\n",
        names.join(", ")
    );
    println!(
        "| scenario | canary / baseline requests at the last look | runs | rolled back (any look) | proceed at last look | proceed at any look | rollbacks by criterion ({}) | target |",
        names.join(" / ")
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
    let started = Instant::now();
    for (i, row) in rows(scale).into_iter().enumerate() {
        let seed = 1_000_000 * (i as u64 + 1);
        let t = match row.setup {
            Setup::Gate => simulate(&gate, &row.scenario, row.runs, seed),
            Setup::Quantiles => simulate(&quantile_gate(), &row.scenario, row.runs, seed),
            Setup::Alone(name) => simulate_with(
                &single_criterion_gate(name),
                &row.scenario,
                row.runs,
                seed,
                Judge::Sequential,
                ALPHA / gate.criteria.len() as f64,
            ),
            Setup::Naive => {
                simulate_with(&gate, &row.scenario, row.runs, seed, Judge::Naive, ALPHA)
            }
        };
        let by: Vec<String> = t.failed_by.iter().map(u32::to_string).collect();
        println!(
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            row.scenario.name,
            row.scenario.canary_per_min * u64::from(LOOKS),
            row.scenario.baseline_per_min * u64::from(LOOKS),
            t.runs,
            share(t.rollbacks, t.runs),
            share(t.proceed_last, t.runs),
            share(t.proceed_any, t.runs),
            by.join(" / "),
            verdict(row.target, &t),
        );
    }
    println!("\n{:.0} s in all.", started.elapsed().as_secs_f64());
}
