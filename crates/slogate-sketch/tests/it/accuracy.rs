//! Quantile accuracy against exact nearest-rank quantiles on realistic latency distributions.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Pareto};

use crate::{assert_close, exact_quantile, sketch_of};

const MS: f64 = 1e6;
const HOUR: u64 = 3_600_000_000_000;
const QS: [f64; 6] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999];
/// Bucket-boundary and extreme values mixed into every data set.
const EDGES: [u64; 7] = [0, 1, 127, 128, 129, u64::MAX / 2, HOUR];

fn nanos(x: f64) -> u64 {
    x.round() as u64
}

fn lognormal(rng: &mut StdRng) -> u64 {
    nanos(LogNormal::new((50.0 * MS).ln(), 0.8).unwrap().sample(rng))
}

fn pareto(rng: &mut StdRng) -> u64 {
    nanos(Pareto::new(MS, 1.5).unwrap().sample(rng)).min(HOUR)
}

fn bimodal(rng: &mut StdRng) -> u64 {
    // Cache hits around 5 ms, misses around 800 ms.
    let median = if rng.random_bool(0.7) {
        5.0 * MS
    } else {
        800.0 * MS
    };
    nanos(LogNormal::new(median.ln(), 0.3).unwrap().sample(rng))
}

fn log_uniform(rng: &mut StdRng) -> u64 {
    let (lo, hi) = ((1e3f64).ln(), (HOUR as f64).ln());
    nanos(rng.random_range(lo..hi).exp())
}

struct Case {
    name: &'static str,
    samples: usize,
    generate: fn(&mut StdRng) -> u64,
}

fn check(case: &Case) {
    let mut rng = StdRng::seed_from_u64(0x5106_a7e0 ^ case.samples as u64);
    let mut values: Vec<u64> = (0..case.samples)
        .map(|_| (case.generate)(&mut rng))
        .collect();
    values.extend(EDGES);
    let s = sketch_of(&values);
    values.sort_unstable();

    assert_eq!(s.count(), values.len() as u64, "{}", case.name);
    assert_eq!(
        s.sum(),
        values.iter().map(|&v| u128::from(v)).sum::<u128>(),
        "{}",
        case.name
    );
    assert_eq!(
        (s.min(), s.max()),
        (values.first().copied(), values.last().copied())
    );

    let grid = (0..=100).map(|p| f64::from(p) / 100.0);
    for q in QS.into_iter().chain(grid) {
        let exact = exact_quantile(&values, q).unwrap();
        let got = s.quantile(q).unwrap();
        assert_close(got, exact, &format!("{} q={q}", case.name));
        assert!((got as f64 - exact as f64).abs() <= 0.01 * exact as f64);
    }
    assert_eq!(
        s.quantiles(QS),
        QS.map(|q| s.quantile(q)),
        "{}: one pass",
        case.name
    );
    assert_eq!(s.quantile(0.0), Some(0));
}

#[test]
fn quantiles_match_exact_on_latency_distributions() {
    let cases = [
        Case {
            name: "lognormal median 50ms sigma 0.8",
            samples: 100_000,
            generate: lognormal,
        },
        Case {
            name: "pareto 1ms shape 1.5 capped at 1h",
            samples: 200_000,
            generate: pareto,
        },
        Case {
            name: "bimodal 5ms / 800ms",
            samples: 50_000,
            generate: bimodal,
        },
        Case {
            name: "log-uniform 1us..1h",
            samples: 10_000,
            generate: log_uniform,
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn quantiles_exact_on_edge_values_alone() {
    let mut values = EDGES.to_vec();
    let s = sketch_of(&values);
    values.sort_unstable();
    for p in 0..=100 {
        let q = f64::from(p) / 100.0;
        assert_close(
            s.quantile(q).unwrap(),
            exact_quantile(&values, q).unwrap(),
            &format!("q={q}"),
        );
    }
}
