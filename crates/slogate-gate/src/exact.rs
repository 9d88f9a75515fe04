//! Exact tests for counts: binomial tails, the conditional binomial test of two event rates
//! with mid-p values, and the normal quantile they are reported with.
//!
//! A gate sees a handful of errors at low traffic (4 errors in 300 requests), where the normal
//! approximation of the two-proportion z-test is far off in the tail it is judged on. These tests
//! are exact for Poisson counts: conditional on the total number of events `x1 + x2`, the
//! canary's share is binomial with `π = n1·ρ / (n1·ρ + n2)` when the canary's rate is `ρ` times
//! the baseline's. For binomial counts with small rates (errors) this is the same test; for large
//! rates it is conservative, because a binomial varies less than a Poisson count of the same mean.
//!
//! Mid-p values (`P(X > x) + ½ P(X = x)`) are used because the plain exact p-value of a discrete
//! test is conservative by up to a whole point mass, which with 5 events is most of the power;
//! the mid-p keeps the size close to nominal on average (checked in `tests/decision_quality.rs`).

use crate::stats::normal_upper_tail;

/// `ln Γ(x)` for `x > 0`, Lanczos approximation (g = 7, 9 terms), relative error below 1e-14.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes
/// `betacf`); converges quickly for `x < (a + 1) / (a + b + 2)`.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta `I_x(a, b)` for `a, b > 0`.
pub(crate) fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// `P(X = k)` for `X ~ Binomial(n, p)`.
pub(crate) fn binomial_pmf(k: u64, n: u64, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    let (k, n) = (k as f64, n as f64);
    let ln_choose = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
    (ln_choose + k * p.ln() + (n - k) * (1.0 - p).ln()).exp()
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`, through `I_p(k, n − k + 1)`.
pub(crate) fn binomial_at_least(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    beta_inc(k as f64, (n - k + 1) as f64, p.clamp(0.0, 1.0))
}

/// One-sided mid-p value of `x` events in `n` trials against "the probability is at most
/// `p`": `P(X > x) + ½ P(X = x)`.
pub fn binomial_mid_p_upper(x: u64, n: u64, p: f64) -> f64 {
    let x = x.min(n);
    (binomial_at_least(x + 1, n, p) + 0.5 * binomial_pmf(x, n, p)).clamp(0.0, 1.0)
}

/// One-sided mid-p value of `x` events in `n` trials against "the probability is at least
/// `p`": `P(X < x) + ½ P(X = x)`.
pub fn binomial_mid_p_lower(x: u64, n: u64, p: f64) -> f64 {
    let x = x.min(n);
    (1.0 - binomial_at_least(x, n, p) + 0.5 * binomial_pmf(x, n, p)).clamp(0.0, 1.0)
}

/// The canary's binomial share of the events when its rate is `ratio` times the baseline's.
pub(crate) fn canary_share(n1: u64, n2: u64, ratio: f64) -> f64 {
    let a = n1 as f64 * ratio;
    a / (a + n2 as f64)
}

/// Conditional binomial mid-p value of `x1` events in `n1` (canary) against `x2` in `n2`
/// (baseline), testing "the canary's rate is at most `ratio` times the baseline's". `None`
/// when either exposure is zero. With no events at all there is no evidence: the mid-p is ½.
pub fn rate_ratio_mid_p(x1: u64, n1: u64, x2: u64, n2: u64, ratio: f64) -> Option<f64> {
    if n1 == 0 || n2 == 0 || ratio.is_nan() || ratio < 0.0 {
        return None;
    }
    let (x1, x2) = (x1.min(n1), x2.min(n2));
    Some(binomial_mid_p_upper(
        x1,
        x1 + x2,
        canary_share(n1, n2, ratio),
    ))
}

/// Standard normal quantile `Φ⁻¹(p)`: Acklam's rational approximation refined by one Halley
/// step on [`normal_upper_tail`]; accurate to about 1e-9 for `p` in `[1e-300, 1 − 1e-16]`.
/// `p <= 0` gives −∞ and `p >= 1` gives +∞.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step against the CDF this crate uses elsewhere, so quantile and tail agree.
    let e = (1.0 - normal_upper_tail(x)) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// `P(T > t)` for Student's t with `df` degrees of freedom (`df` may be fractional, as a
/// Welch–Satterthwaite count is); infinite `df` is the normal tail.
pub fn student_t_upper(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if df.is_infinite() || df > 1e7 {
        return normal_upper_tail(t);
    }
    let tail = 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// The `t` with `P(T > t) = p` for Student's t with `df` degrees of freedom, by bisection
/// around the normal quantile (t is wider, so the root lies above it for `p < ½`).
pub fn student_t_upper_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return if p <= 0.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    if p > 0.5 {
        return -student_t_upper_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0, normal_quantile(1.0 - p).max(1.0));
    while student_t_upper(hi, df) > p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_upper(mid, df) > p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Density of the standard normal.
pub(crate) fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64, what: &str) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} ± {tol}"
        );
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        for (x, want) in [
            (1.0, 0.0),
            (2.0, 0.0),
            (5.0, 24f64.ln()),
            (11.0, 3_628_800f64.ln()),
            (0.5, std::f64::consts::PI.sqrt().ln()),
            (101.0, 363.739_375_555_563_5),
        ] {
            close(
                ln_gamma(x),
                want,
                1e-10 * want.abs().max(1.0),
                &format!("x {x}"),
            );
        }
    }

    /// Binomial tails summed term by term, the reference for the incomplete beta path.
    fn direct_at_least(k: u64, n: u64, p: f64) -> f64 {
        (k..=n).map(|i| binomial_pmf(i, n, p)).sum()
    }

    #[test]
    fn binomial_tails_match_direct_sums() {
        // (k, n, p): small counts where gates live, and a large one.
        for (k, n, p) in [
            (0, 10, 0.3),
            (1, 10, 0.3),
            (4, 10, 0.3),
            (10, 10, 0.3),
            (11, 10, 0.3),
            (4, 8, 0.047_619),
            (30, 60, 0.5),
            (45, 1000, 0.03),
            (1, 1, 0.0),
        ] {
            close(
                binomial_at_least(k, n, p),
                direct_at_least(k, n, p),
                1e-10,
                &format!("P(X >= {k}), n {n}, p {p}"),
            );
        }
    }

    /// The motivating case: 4 errors in 300 canary requests against 24 in 6,000
    /// (0.40%). Conditional on 28 events the canary's share is binomial with π = 300/6300:
    /// P(X > 4) = 0.00961 and P(X = 4) = 0.03264 (from the pmf, checked in Python with
    /// `math.comb`), so the mid-p is 0.0259, where the z-test claimed 0.0089.
    #[test]
    fn a_handful_of_errors_is_not_significant() {
        let p = rate_ratio_mid_p(4, 300, 24, 6000, 1.0).unwrap();
        let pi = 300.0 / 6300.0;
        let want = direct_at_least(5, 28, pi) + 0.5 * binomial_pmf(4, 28, pi);
        close(p, want, 1e-12, "mid-p");
        close(p, 0.02593, 0.00001, "mid-p by hand");
        // (canary errors, canary requests, baseline errors, baseline requests, ratio, mid-p)
        type Case = (u64, u64, u64, u64, f64, Option<f64>);
        let table: &[Case] = &[
            // No events: no evidence either way.
            (0, 100, 0, 100, 1.0, Some(0.5)),
            (1, 0, 1, 10, 1.0, None),
            (1, 10, 1, 0, 1.0, None),
            // All events in the canary with equal exposure: P(X = 10) = 2^-10, halved.
            (10, 100, 0, 100, 1.0, Some(0.5 / 1024.0)),
        ];
        for &(x1, n1, x2, n2, ratio, want) in table {
            let got = rate_ratio_mid_p(x1, n1, x2, n2, ratio);
            match (got, want) {
                (Some(g), Some(w)) => close(g, w, 1e-12, &format!("{x1}/{n1} vs {x2}/{n2}")),
                _ => assert_eq!(got, want, "{x1}/{n1} vs {x2}/{n2}"),
            }
        }
    }

    #[test]
    fn mid_p_tails_add_up() {
        // Upper and lower mid-p values of the same observation sum to one.
        for (x, n, p) in [(0, 20, 0.1), (3, 20, 0.1), (20, 20, 0.1), (7, 300, 0.01)] {
            close(
                binomial_mid_p_upper(x, n, p) + binomial_mid_p_lower(x, n, p),
                1.0,
                1e-12,
                &format!("{x}/{n} at {p}"),
            );
        }
    }

    #[test]
    fn student_t_matches_tables() {
        // (t, df, P(T > t)): t tables, and the normal limit.
        for (t, df, want) in [
            (0.0, 5.0, 0.5),
            (2.015_048, 5.0, 0.05),
            (3.364_930, 5.0, 0.01),
            (2.085_963, 20.0, 0.025),
            (-2.085_963, 20.0, 0.975),
            (12.706_205, 1.0, 0.025),
            (2.326_348, f64::INFINITY, 0.01),
        ] {
            close(
                student_t_upper(t, df),
                want,
                1e-6,
                &format!("t {t} df {df}"),
            );
            if want < 0.5 {
                close(
                    student_t_upper_quantile(want, df),
                    t,
                    1e-4,
                    &format!("q {want} df {df}"),
                );
            }
        }
    }

    #[test]
    fn normal_quantile_inverts_the_tail() {
        for (p, want) in [
            (0.5, 0.0),
            (0.95, 1.644_853_627),
            (0.975, 1.959_963_985),
            (0.99, 2.326_347_874),
            (0.999, 3.090_232_306),
            (0.01, -2.326_347_874),
            (1e-6, -4.753_424_309),
        ] {
            close(normal_quantile(p), want, 2e-6, &format!("p {p}"));
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
    }
}
