//! Reduced decision-quality simulation for CI: A/A steps through `evaluate_look` must stay
//! within the gate's false-rollback budget, and thin or dead cohorts must never pass. The full
//! figures come from `cargo bench -p slogate-gate --bench decision_quality`.

// The bench uses every scenario shape; this reduced run does not.
#[allow(dead_code)]
#[path = "../benches/support/sim.rs"]
mod sim;

use sim::{ALPHA, Judge, Scenario, Tally, gate, simulate, simulate_with};

/// Largest number of rollbacks in `runs` A/A steps that a gate calibrated at `ALPHA` = 1 %
/// reaches with probability below 1 %: the binomial(runs, 0.01) upper 1 % point. A gate with the
/// naive 4.4 % per-criterion false-alarm rate of unadjusted repeated looks blows through it.
fn max_rollbacks(runs: u32) -> u32 {
    // P(X > k) < 0.01 for X ~ Binomial(runs, ALPHA), summed directly.
    let (n, p) = (f64::from(runs), ALPHA);
    let mut pmf = (1.0 - p).powf(n);
    let mut cdf = pmf;
    let mut k = 0u32;
    while 1.0 - cdf >= 0.01 {
        pmf *= (n - f64::from(k)) / f64::from(k + 1) * p / (1.0 - p);
        k += 1;
        cdf += pmf;
    }
    k
}

fn check(scenario: Scenario, runs: u32, seed: u64, want: impl Fn(&Tally) -> Result<(), String>) {
    let t = simulate(&gate(), &scenario, runs, seed);
    if let Err(e) = want(&t) {
        panic!("{}: {e}; {t:?}", scenario.name);
    }
}

#[test]
fn a_a_false_rollbacks_stay_within_budget() {
    let within = |t: &Tally| {
        let bound = max_rollbacks(t.runs);
        if t.rollbacks <= bound {
            Ok(())
        } else {
            Err(format!(
                "{} false rollbacks in {} runs, above the {bound} a {}% gate allows",
                t.rollbacks,
                t.runs,
                ALPHA * 100.0
            ))
        }
    };
    // (scenario, runs): the thin case (300 canary requests against 5,700) and a
    // same-size baseline, where both arms' quantile errors count.
    let table = [
        (Scenario::a_a("A/A 300 vs 5,700", 30, 570), 1000),
        (Scenario::a_a("A/A 3,000 vs 3,000", 300, 300), 400),
        (Scenario::a_a("A/A 6,000 vs 114,000", 600, 11_400), 100),
    ];
    for (i, (scenario, runs)) in table.into_iter().enumerate() {
        check(scenario, runs, 7_000_000 + i as u64 * 10_000, within);
    }
}

#[test]
fn the_bound_catches_a_gate_without_look_accounting() {
    // The same criteria judged by plain `evaluate` at 95 % every minute: several times the
    // budget, so the bound above would fail it.
    let scenario = Scenario::a_a("A/A 3,000 vs 3,000, naive", 300, 300);
    let t = simulate_with(&gate(), &scenario, 200, 9_000_000, Judge::Naive, ALPHA);
    assert!(
        t.rollbacks > max_rollbacks(t.runs),
        "naive looks stayed within the bound: {t:?}"
    );
}

#[test]
fn thin_and_dead_cohorts_never_pass() {
    let never = |t: &Tally| {
        if t.proceed_any == 0 && t.rollbacks == 0 {
            Ok(())
        } else {
            Err("passed or rolled back without enough data".into())
        }
    };
    let table = [
        (Scenario::a_a("thin canary, 60 requests", 6, 114), 50),
        (Scenario::a_a("dead baseline", 300, 0), 10),
    ];
    for (i, (scenario, runs)) in table.into_iter().enumerate() {
        check(scenario, runs, 8_000_000 + i as u64 * 10_000, never);
    }
}

#[test]
fn budget_bound_is_the_binomial_tail() {
    // Binomial(100, 0.01): P(X > 3) = 0.0184, P(X > 4) = 0.0034. Binomial(300, 0.01):
    // P(X > 7) = 0.0114, P(X > 8) = 0.0038.
    for (runs, want) in [(100, 4), (300, 8)] {
        assert_eq!(max_rollbacks(runs), want, "runs {runs}");
    }
}
