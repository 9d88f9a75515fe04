//! Repeated looks: the analysis a look belongs to, Lan–DeMets alpha spending, and the
//! group-sequential boundaries that keep the false-rollback rate over a whole step at `alpha`.
//!
//! Argo Rollouts asks for a verdict every minute of a step; a test at 1 % each minute
//! false-alarms 4.4 % of the time over 10 looks. A group-sequential design fixes that: the gate
//! spends its error budget over the looks through a spending function `α(t)` of the information
//! fraction `t`, and the boundary `c_k` of look `k` is set so that the probability of crossing
//! at look `k` and at no earlier look is exactly `α(t_k) − α(t_{k−1})` under the null. The
//! boundaries come from the joint normal law of the cumulative z-statistics (independent
//! increments, `corr(Z_i, Z_j) = sqrt(t_i / t_j)`), integrated numerically on a grid
//! (Armitage–McPherson–Rowe recursion; Jennison & Turnbull, *Group Sequential Methods*, ch. 19).
//!
//! The statistics must be computed on data **cumulative since the analysis started** (the
//! rollout step), not on a sliding window: that is what makes the increments independent. The
//! caller owns that (it merges window slots from the step's start).

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::exact::{normal_pdf, normal_quantile};
use crate::stats::normal_upper_tail;

/// How the error budget is spread over the looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spending {
    /// Lan–DeMets O'Brien–Fleming type, `α(t) = 2 − 2Φ(z_{1−α/2} / √t)`: almost nothing early,
    /// nearly the full `α` at the last look, so a step that runs to its end loses little power
    /// against a single final test.
    #[default]
    #[serde(rename = "obrien_fleming")]
    OBrienFleming,
    /// Lan–DeMets Pocock type, `α(t) = α·ln(1 + (e − 1)t)`: about even boundaries, earlier
    /// rollbacks of large regressions at the cost of a higher final boundary.
    Pocock,
}

impl Spending {
    /// Cumulative one-sided alpha spent by information fraction `t` (clamped to `[0, 1]`).
    pub fn spent(self, alpha: f64, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        if t == 0.0 {
            return 0.0;
        }
        match self {
            Spending::OBrienFleming => {
                let z = normal_quantile(1.0 - alpha / 2.0);
                (2.0 * normal_upper_tail(z / t.sqrt())).min(alpha)
            }
            Spending::Pocock => alpha * (1.0 + (std::f64::consts::E - 1.0) * t).ln(),
        }
    }
}

/// The analysis a look belongs to: one rollout step (an Argo AnalysisRun, a CLI or API run id)
/// judged repeatedly on data cumulative since the step began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// This look, counted from 1.
    pub look: u32,
    /// Looks planned for the step (e.g. 10 for a 10-minute step polled every minute). The last
    /// planned look spends whatever alpha is left.
    pub looks: u32,
    /// Information fraction of each look so far, including this one (`n_k / n_planned` or
    /// elapsed / planned time), increasing in `(0, 1]`. Empty means equally spaced looks,
    /// `t_j = j / looks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fractions: Vec<f64>,
    /// One-sided false-rollback rate of the whole gate over the whole step, all criteria
    /// together: the one number to configure.
    pub alpha: f64,
    #[serde(default)]
    pub spending: Spending,
}

/// Why an [`Analysis`] cannot be used.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum AnalysisError {
    #[error("look {look} is outside 1..={looks}")]
    Look { look: u32, looks: u32 },
    #[error("alpha {0} is outside (0, 0.5)")]
    Alpha(f64),
    #[error("{given} information fractions given for look {look}; one per look is needed")]
    FractionCount { given: usize, look: u32 },
    #[error("information fractions must increase within (0, 1], got {0:?}")]
    Fractions(Vec<f64>),
}

impl Analysis {
    /// Look `look` of `looks` equally spaced, O'Brien–Fleming spending of `alpha`.
    pub fn new(look: u32, looks: u32, alpha: f64) -> Analysis {
        Analysis {
            look,
            looks,
            fractions: Vec::new(),
            alpha,
            spending: Spending::OBrienFleming,
        }
    }

    pub fn validate(&self) -> Result<(), AnalysisError> {
        if self.look == 0 || self.look > self.looks {
            return Err(AnalysisError::Look {
                look: self.look,
                looks: self.looks,
            });
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(AnalysisError::Alpha(self.alpha));
        }
        if !self.fractions.is_empty() {
            if self.fractions.len() != self.look as usize {
                return Err(AnalysisError::FractionCount {
                    given: self.fractions.len(),
                    look: self.look,
                });
            }
            let increasing = self.fractions.windows(2).all(|w| w[0] < w[1]);
            let inside = self.fractions.iter().all(|&t| t > 0.0 && t <= 1.0);
            if !increasing || !inside {
                return Err(AnalysisError::Fractions(self.fractions.clone()));
            }
        }
        Ok(())
    }

    /// Information fractions of looks `1..=look`; the last planned look is always `1`, so it
    /// spends the rest of the budget even when traffic fell short of the plan.
    pub fn effective_fractions(&self) -> Vec<f64> {
        let mut t: Vec<f64> = if self.fractions.is_empty() {
            (1..=self.look)
                .map(|j| f64::from(j) / f64::from(self.looks))
                .collect()
        } else {
            self.fractions.clone()
        };
        if let Some(last) = t.last_mut().filter(|_| self.look == self.looks) {
            *last = 1.0;
        }
        t
    }
}

/// Grid step of the numerical integration, in z units. Checked against published boundaries
/// to 0.005 (see the tests), far finer than the Monte Carlo error of any calibration run.
const GRID_STEP: f64 = 0.05;
/// The null density below this is negligible (Φ(−8) ≈ 6e-16).
const GRID_LOW: f64 = -8.0;
/// No look asks for more than this z: a blatant regression rolls back at the first look even
/// though O'Brien–Fleming spends ~1e-18 there. The cap adds at most `P(Z > 8)` ≈ 6e-16 per
/// look to the false-rollback rate.
const MAX_BOUNDARY: f64 = 8.0;

/// One-sided boundaries `c_1..c_k` (z units) for looks at `fractions`: under the null, the
/// probability of first crossing at look `j` is `α(t_j) − α(t_{j−1})`, except that no boundary
/// exceeds z = 8 (see `MAX_BOUNDARY`).
pub fn boundaries(fractions: &[f64], alpha: f64, spending: Spending) -> Vec<f64> {
    type Key = (Vec<u64>, u64, Spending);
    thread_local! {
        // Every criterion of every gate at look k asks for the same few boundary sets, and the
        // integration is the only costly step of an evaluation; memoising keeps it pure.
        static CACHE: RefCell<Vec<(Key, Vec<f64>)>> = const { RefCell::new(Vec::new()) };
    }
    let key: Key = (
        fractions.iter().map(|t| t.to_bits()).collect(),
        alpha.to_bits(),
        spending,
    );
    if let Some(hit) = CACHE.with(|c| {
        c.borrow()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }) {
        return hit;
    }
    let out = compute_boundaries(fractions, alpha, spending);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.remove(0);
        }
        c.push((key, out.clone()));
    });
    out
}

fn compute_boundaries(fractions: &[f64], alpha: f64, spending: Spending) -> Vec<f64> {
    let mut out = Vec::with_capacity(fractions.len());
    // Sub-density of Z at the previous look over its continuation region, on a grid, with
    // trapezoid weights folded in.
    let mut grid: Vec<f64> = Vec::new();
    let mut mass: Vec<f64> = Vec::new();
    let mut spent_before = 0.0;
    let mut t_prev = 0.0f64;
    for (j, &t) in fractions.iter().enumerate() {
        let spent = spending.spent(alpha, t);
        let increment = (spent - spent_before).max(0.0);
        spent_before = spent;
        let c = if j == 0 {
            normal_quantile(1.0 - increment).min(MAX_BOUNDARY)
        } else {
            let (st, sp, sd) = (t.sqrt(), t_prev.sqrt(), (t - t_prev).sqrt());
            let crossing = |c: f64| -> f64 {
                grid.iter()
                    .zip(&mass)
                    .map(|(&z, &m)| m * normal_upper_tail((c * st - z * sp) / sd))
                    .sum()
            };
            if crossing(MAX_BOUNDARY) >= increment {
                MAX_BOUNDARY
            } else {
                // Crossing probability falls as the boundary rises: bisect.
                let (mut lo, mut hi) = (GRID_LOW, MAX_BOUNDARY);
                for _ in 0..60 {
                    let mid = 0.5 * (lo + hi);
                    if crossing(mid) > increment {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            }
        };
        out.push(c);
        if j + 1 == fractions.len() {
            break;
        }
        // Sub-density at this look over z < c, from the previous one (or φ at the first look).
        let top = c;
        let n = ((top - GRID_LOW) / GRID_STEP).ceil().max(2.0) as usize;
        let h = (top - GRID_LOW) / n as f64;
        let new_grid: Vec<f64> = (0..=n).map(|i| GRID_LOW + i as f64 * h).collect();
        let density: Vec<f64> = if j == 0 {
            new_grid.iter().map(|&z| normal_pdf(z)).collect()
        } else {
            let (st, sp, sd) = (t.sqrt(), t_prev.sqrt(), (t - t_prev).sqrt());
            new_grid
                .iter()
                .map(|&z| {
                    grid.iter()
                        .zip(&mass)
                        .map(|(&y, &m)| m * normal_pdf((z * st - y * sp) / sd))
                        .sum::<f64>()
                        * st
                        / sd
                })
                .collect()
        };
        mass = density
            .iter()
            .enumerate()
            .map(|(i, &f)| if i == 0 || i == n { f * h / 2.0 } else { f * h })
            .collect();
        grid = new_grid;
        t_prev = t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fractions: &[f64], alpha: f64, spending: Spending, want: &[f64]) {
        let got = boundaries(fractions, alpha, spending);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 0.005,
                "{spending:?} α {alpha} at {fractions:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn boundaries_match_published_tables() {
        let five = [0.2, 0.4, 0.6, 0.8, 1.0];
        // Lan–DeMets O'Brien–Fleming, 5 equal looks, one-sided 0.025 (as tabulated by
        // gsDesign / ldbounds): 4.877, 3.357, 2.680, 2.290, 2.031.
        check(
            &five,
            0.025,
            Spending::OBrienFleming,
            &[4.877, 3.357, 2.680, 2.290, 2.031],
        );
        // Lan–DeMets Pocock, same looks: 2.438, 2.427, 2.410, 2.397, 2.386.
        check(
            &five,
            0.025,
            Spending::Pocock,
            &[2.438, 2.427, 2.410, 2.397, 2.386],
        );
        // O'Brien–Fleming spends ~1e-18 at a tenth of the step: capped at z = 8.
        check(&[0.1], 0.01, Spending::OBrienFleming, &[8.0]);
        // One look is the plain one-sided test.
        check(&[1.0], 0.01, Spending::OBrienFleming, &[2.326]);
        check(&[1.0], 0.01, Spending::Pocock, &[2.326]);
    }

    #[test]
    fn spending_reaches_alpha_at_the_end() {
        for s in [Spending::OBrienFleming, Spending::Pocock] {
            assert!((s.spent(0.01, 1.0) - 0.01).abs() < 1e-12, "{s:?}");
            assert_eq!(s.spent(0.01, 0.0), 0.0);
            assert!(s.spent(0.01, 0.5) < 0.01);
        }
        // O'Brien–Fleming spends almost nothing in the first tenth of the step.
        assert!(Spending::OBrienFleming.spent(0.01, 0.1) < 1e-12);
    }

    #[test]
    fn analysis_validation() {
        let with = |look, looks, fractions: Vec<f64>, alpha| Analysis {
            fractions,
            ..Analysis::new(look, looks, alpha)
        };
        let table: Vec<(Analysis, Result<(), &str>)> = vec![
            (Analysis::new(1, 10, 0.01), Ok(())),
            (Analysis::new(10, 10, 0.01), Ok(())),
            (Analysis::new(0, 10, 0.01), Err("look 0 is outside 1..=10")),
            (
                Analysis::new(11, 10, 0.01),
                Err("look 11 is outside 1..=10"),
            ),
            (
                Analysis::new(1, 10, 0.0),
                Err("alpha 0 is outside (0, 0.5)"),
            ),
            (with(2, 5, vec![0.3, 0.5], 0.01), Ok(())),
            (
                with(2, 5, vec![0.3], 0.01),
                Err("1 information fractions given for look 2; one per look is needed"),
            ),
            (
                with(2, 5, vec![0.5, 0.3], 0.01),
                Err("information fractions must increase within (0, 1], got [0.5, 0.3]"),
            ),
        ];
        for (a, want) in table {
            let got = a.validate().map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{a:?}");
        }
        assert_eq!(
            Analysis::new(3, 3, 0.01).effective_fractions(),
            [1.0 / 3.0, 2.0 / 3.0, 1.0]
        );
        assert_eq!(
            with(2, 2, vec![0.4, 0.9], 0.01).effective_fractions(),
            [0.4, 1.0]
        );
    }
}
