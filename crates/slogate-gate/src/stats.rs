//! Statistics: the normal tail, Mann–Whitney U on bucketed sketches, and the two-proportion z-test.

use slogate_sketch::Sketch;

/// Complementary error function, Numerical Recipes `erfcc` (Chebyshev fit), fractional error
/// below 1.2e-7 everywhere — far finer than any confidence level a gate is configured with.
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// `P(Z > z)` for a standard normal `Z`.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Result of a one-sided Mann–Whitney U test, "canary is stochastically greater".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankTest {
    /// `U` for the canary: pairs where the canary value is greater, plus half the ties.
    pub u: f64,
    /// Common-language effect size `U / (n1 n2)` = `P(canary > baseline) + ½ P(tie)`.
    pub effect: f64,
    pub z: f64,
    /// One-sided p-value from the normal approximation with tie correction.
    pub p_value: f64,
    pub n_canary: u64,
    pub n_baseline: u64,
}

/// Mann–Whitney U between two latency sketches, every bucket taken as a run of values tied at
/// its representative. `None` when either sketch is empty.
pub fn mann_whitney(canary: &Sketch, baseline: &Sketch) -> Option<RankTest> {
    let mut a = canary.buckets().peekable();
    let mut b = baseline.buckets().peekable();
    // Merge walk over the two ascending bucket lists into (canary, baseline) tie groups.
    let groups = std::iter::from_fn(move || match (a.peek().copied(), b.peek().copied()) {
        (None, None) => None,
        (Some((ia, ca)), Some((ib, cb))) if ia == ib => {
            a.next();
            b.next();
            Some((ca, cb))
        }
        (Some((ia, ca)), Some((ib, _))) if ia < ib => {
            a.next();
            Some((ca, 0))
        }
        (Some((_, ca)), None) => {
            a.next();
            Some((ca, 0))
        }
        (_, Some((_, cb))) => {
            b.next();
            Some((0, cb))
        }
    });
    mann_whitney_groups(groups)
}

/// Mann–Whitney U over tie groups `(canary count, baseline count)` given in ascending order of
/// value. Shared by the sketch path and the raw-sample reference in tests.
pub(crate) fn mann_whitney_groups(groups: impl Iterator<Item = (u64, u64)>) -> Option<RankTest> {
    let (mut n1, mut n2) = (0u64, 0u64);
    let mut u = 0.0f64;
    let mut ties = 0.0f64;
    for (a, b) in groups {
        // Each canary value in this group beats every baseline value below it and ties with
        // the `b` baseline values here: exactly what mid-ranks give.
        u += a as f64 * (n2 as f64 + 0.5 * b as f64);
        let t = (a + b) as f64;
        ties += t * t * t - t;
        n1 += a;
        n2 += b;
    }
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let n = f1 + f2;
    let mean = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let (z, p_value) = if var > 0.0 {
        let z = (u - mean) / var.sqrt();
        (z, normal_upper_tail(z))
    } else {
        // Every value tied: no evidence either way.
        (0.0, 1.0)
    };
    Some(RankTest {
        u,
        effect: u / (f1 * f2),
        z,
        p_value,
        n_canary: n1,
        n_baseline: n2,
    })
}

/// Result of a one-sided two-proportion z-test, "canary error rate is higher".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProportionTest {
    pub canary_rate: f64,
    pub baseline_rate: f64,
    /// `canary_rate − baseline_rate`.
    pub difference: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Pooled two-proportion z-test of `x1/n1` (canary) against `x2/n2` (baseline). Counts above
/// their totals are clamped. `None` when either total is zero.
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<ProportionTest> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (x1, x2) = (x1.min(n1) as f64, x2.min(n2) as f64);
    let (n1, n2) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 / n1, x2 / n2);
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let (z, p_value) = if se > 0.0 {
        let z = (p1 - p2) / se;
        (z, normal_upper_tail(z))
    } else {
        // Both cohorts all-success or all-error: identical rates, no evidence.
        (0.0, 1.0)
    };
    Some(ProportionTest {
        canary_rate: p1,
        baseline_rate: p2,
        difference: p1 - p2,
        z,
        p_value,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, LogNormal};
    use slogate_sketch::bucket_value;

    fn close(got: f64, want: f64, tol: f64, what: &str) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} ± {tol}"
        );
    }

    #[test]
    fn normal_tail_matches_tables() {
        // Standard normal table values.
        for (z, want) in [
            (0.0, 0.5),
            (1.0, 0.158_655_25),
            (1.644_853_6, 0.05),
            (1.959_964, 0.025),
            (2.326_347_9, 0.01),
            (-1.0, 0.841_344_75),
            (5.0, 2.866_515_7e-7),
        ] {
            close(normal_upper_tail(z), want, 1e-7, &format!("tail({z})"));
        }
    }

    /// Hand computations, written out:
    ///
    /// 1. canary 30/1000, baseline 15/1000: p1 = 0.03, p2 = 0.015, pooled = 45/2000 = 0.0225,
    ///    se = sqrt(0.0225 · 0.9775 · (1/1000 + 1/1000)) = sqrt(4.39875e-5) = 0.0066323,
    ///    z = 0.015 / 0.0066323 = 2.2617, p = P(Z > 2.2617) = 0.01186.
    /// 2. canary 12/400, baseline 20/800: p1 = 0.03, p2 = 0.025, pooled = 32/1200 = 0.026667,
    ///    se = sqrt(0.026667 · 0.973333 · (1/400 + 1/800)) = sqrt(9.7333e-5) = 0.0098658,
    ///    z = 0.005 / 0.0098658 = 0.5068, p = P(Z > 0.5068) = 0.3061.
    /// 3. canary 5/1000, baseline 10/1000: p1 − p2 = −0.005, pooled = 0.0075,
    ///    se = sqrt(0.0075 · 0.9925 · 0.002) = sqrt(1.48875e-5) = 0.0038584, z = −0.005 / 0.0038584
    ///    = −1.2959, p = P(Z > −1.2959) = 0.9025.
    /// 4. both 0/500: se = 0, no evidence, z = 0 and p = 1 by convention.
    #[test]
    fn two_proportion_hand_computed() {
        // (x1, n1, x2, n2, difference, z, p)
        let table = [
            (30, 1000, 15, 1000, 0.015, 2.2617, 0.01186),
            (12, 400, 20, 800, 0.005, 0.5068, 0.3061),
            (5, 1000, 10, 1000, -0.005, -1.2959, 0.9025),
            (0, 500, 0, 500, 0.0, 0.0, 1.0),
        ];
        for (x1, n1, x2, n2, diff, z, p) in table {
            let t = two_proportion(x1, n1, x2, n2).unwrap();
            let what = format!("{x1}/{n1} vs {x2}/{n2}");
            close(t.difference, diff, 1e-12, &what);
            close(t.z, z, 1e-4, &what);
            close(t.p_value, p, 1e-4, &what);
        }
        assert_eq!(two_proportion(1, 0, 1, 10), None);
        assert_eq!(two_proportion(1, 10, 1, 0), None);
    }

    /// Tiny hand-checkable U: canary {2, 3}, baseline {1, 2}. Pairs (c, b): (2,1) win, (2,2) tie,
    /// (3,1) win, (3,2) win → U = 3.5, effect = 3.5 / 4 = 0.875. n = 4, ties: one group of 2 →
    /// Σ(t³ − t) = 6, var = 4/12 · (5 − 6/12) = 1.5, z = (3.5 − 2)/√1.5 = 1.2247, p = 0.1103.
    #[test]
    fn mann_whitney_hand_computed() {
        let groups = [(0, 1), (1, 1), (1, 0)];
        let t = mann_whitney_groups(groups.into_iter()).unwrap();
        close(t.u, 3.5, 1e-12, "u");
        close(t.effect, 0.875, 1e-12, "effect");
        close(t.z, 1.224_744_9, 1e-6, "z");
        close(t.p_value, 0.110_335, 1e-5, "p");
        assert_eq!(mann_whitney_groups([(3, 0)].into_iter()), None);
        let all_tied = mann_whitney_groups([(3, 4)].into_iter()).unwrap();
        assert_eq!((all_tied.effect, all_tied.p_value), (0.5, 1.0));
    }

    /// Latencies in ns, lognormal around 100 ms, multiplied by `scale`.
    pub(crate) fn lognormal_ns(seed: u64, n: usize, scale: f64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let dist = LogNormal::new((100e6f64).ln(), 0.3).unwrap();
        (0..n)
            .map(|_| (dist.sample(&mut rng) * scale) as u64)
            .collect()
    }

    pub(crate) fn sketch_of(values: &[u64]) -> Sketch {
        let mut s = Sketch::new();
        for &v in values {
            s.record(v);
        }
        s
    }

    /// Exact Mann–Whitney on raw values (mid-ranks over exact ties), the reference.
    fn exact(canary: &[u64], baseline: &[u64]) -> RankTest {
        let mut all: Vec<(u64, bool)> = canary
            .iter()
            .map(|&v| (v, true))
            .chain(baseline.iter().map(|&v| (v, false)))
            .collect();
        all.sort_unstable();
        let mut groups = Vec::new();
        for chunk in all.chunk_by(|x, y| x.0 == y.0) {
            let a = chunk.iter().filter(|x| x.1).count() as u64;
            groups.push((a, chunk.len() as u64 - a));
        }
        mann_whitney_groups(groups.into_iter()).unwrap()
    }

    #[test]
    fn bucketed_u_matches_exact_u() {
        // (canary seed, canary scale): a range of shifts where the p-value is informative.
        let table = [
            (11, 1.0),
            (12, 1.005),
            (13, 1.01),
            (14, 1.02),
            (15, 0.99),
            (16, 1.05),
        ];
        let baseline = lognormal_ns(1, 3000, 1.0);
        let bs = sketch_of(&baseline);
        for (seed, scale) in table {
            let canary = lognormal_ns(seed, 3000, scale);
            let want = exact(&canary, &baseline);
            let got = mann_whitney(&sketch_of(&canary), &bs).unwrap();
            let what = format!("seed {seed} scale {scale}");
            assert_eq!((got.n_canary, got.n_baseline), (3000, 3000), "{what}");
            close(got.p_value, want.p_value, 0.01, &format!("{what} p"));
            close(got.effect, want.effect, 0.002, &format!("{what} effect"));
        }
    }

    #[test]
    fn sketch_merge_walk_sees_every_bucket() {
        // Disjoint and shared buckets, checked against the group reference on representatives.
        let canary = [5u64, 5, 300, 1_000_000, 7];
        let baseline = [4u64, 5, 300, 300, 2_000_000];
        let rep = |v: &[u64]| -> Vec<u64> {
            v.iter()
                .map(|&x| bucket_value(slogate_sketch::bucket_index(x)))
                .collect()
        };
        let got = mann_whitney(&sketch_of(&canary), &sketch_of(&baseline)).unwrap();
        let want = exact(&rep(&canary), &rep(&baseline));
        assert_eq!(got, want);
    }

    #[test]
    fn a_a_rarely_significant_and_never_fails() {
        let (mut significant, mut fails) = (0, 0);
        for seed in 0..100u64 {
            let a = sketch_of(&lognormal_ns(1000 + seed, 3000, 1.0));
            let b = sketch_of(&lognormal_ns(5000 + seed, 3000, 1.0));
            let t = mann_whitney(&a, &b).unwrap();
            if t.p_value < 0.05 {
                significant += 1;
                if t.effect > 0.6 {
                    fails += 1;
                }
            }
        }
        // Expected 5 false positives at α = 0.05 (sd ≈ 2.2); 12 is a generous ceiling that
        // still catches a miscalibrated variance.
        assert!(
            significant <= 12,
            "{significant} of 100 A/A runs significant"
        );
        assert!(fails <= 5, "{fails} of 100 A/A runs would fail");
    }

    #[test]
    fn shift_of_twenty_percent_is_detected() {
        let base = sketch_of(&lognormal_ns(1, 3000, 1.0));
        let canary = sketch_of(&lognormal_ns(2, 3000, 1.2));
        let t = mann_whitney(&canary, &base).unwrap();
        // ln 1.2 / (0.3 √2) = 0.43 → P(superiority) = Φ(0.43) ≈ 0.666.
        assert!(t.p_value < 1e-6, "p = {}", t.p_value);
        close(t.effect, 0.666, 0.03, "effect");
        // And the reverse direction is not significant: the test is one-sided.
        let r = mann_whitney(&base, &canary).unwrap();
        assert!(r.p_value > 0.99, "reverse p = {}", r.p_value);
    }
}
