//! Release gates: compare a canary cohort with a baseline cohort and answer pass, fail or
//! inconclusive — proceed, rollback or hold for Argo Rollouts.
//!
//! Pure functions only: no I/O, no clock, no async. The caller measures the cohorts (merging
//! window slots into a [`CohortData`]), passes the window length and, for sustained criteria,
//! the current time, and wraps the [`Evaluation`] into the verdict document.
//!
//! # Design decisions
//!
//! * **No data is never a pass.** A criterion whose canary has fewer than `min_requests`
//!   requests, whose comparison needs a baseline that is missing or thin, or whose metric has
//!   nothing to measure (no requests, an empty sketch) is `no_data`, and `no_data` makes the
//!   gate inconclusive. Insufficient data is a verdict, not an `Err`.
//! * **Fail wins.** Any `fail` fails the gate whatever else is missing; otherwise any
//!   `no_data` or `marginal` holds it; only all-`pass` proceeds; zero criteria holds.
//! * **Two bounds, three results.** A threshold criterion has a pass bound and a fail bound;
//!   between them is `marginal`, which holds the rollout instead of forcing a binary call on a
//!   borderline number. [`Direction`] says which side is good (request rate is higher-is-better).
//! * **Checks are a tagged enum** ([`Check`]): `threshold` (absolute, ratio or difference),
//!   `mann_whitney`, `two_proportion` and `interval` (a threshold with confidence bounds). Statistical checks carry their own parameters rather
//!   than reusing pass/fail fields that would mean something else.
//! * **Mann–Whitney on sketches.** Each bucket is a run of values tied at its representative;
//!   U is summed bucket by bucket with mid-ranks, the normal approximation uses the tie
//!   correction, and the effect size is the probability of superiority
//!   `P(canary > baseline) + ½ P(tie)`. Buckets are ~0.8% wide, so this is U of the data
//!   rounded to 0.4% — tested against exact U on raw samples. Failing needs both significance
//!   and a large effect: with lots of traffic, tiny real differences become significant; past
//!   halfway to the effect limit they deserve a `marginal`, below that a `pass`.
//! * **Zero baselines.** A ratio over a zero baseline is +∞ when the canary is above zero (so
//!   it fails any finite bound) and 1 when both are zero; the reason says so. In JSON an
//!   infinite `score` is `null`.
//! * **Sustained failures** need time, which this crate does not read: [`Sustain`] is a small
//!   serializable state the caller keeps per criterion and feeds with `now`.
//! * **SLOs share the cohort data.** An SLO's good and total counts come from the same
//!   counters (availability) or sketches (latency: good = at most the threshold) that gates
//!   use; burn rates follow the Google SRE Workbook's multi-window, multi-burn-rate alerts, and a
//!   window with fewer than `min_requests` requests never pages.
//! * **Confidence, not point estimates.** [`Check::Interval`] judges a latency quantile or the
//!   error rate on a confidence interval: fail only when the lower bound is past the fail
//!   margin, pass only when the upper bound is inside the pass margin, otherwise marginal.
//!   Quantile errors come from order statistics read off the bucket counts
//!   ([`quantile_estimate`]: distribution-free, no density estimate), with Student's t on the
//!   few values that set them; below the sample a quantile needs at all (p99: 299 at 95 %) it is
//!   `no_data`. Error rates use exact binomial tests with mid-p values, which stay valid with a
//!   handful of events; `two_proportion` uses the same conditional test in place of the z-test.
//! * **One budget for the whole step.** [`evaluate_look`] takes an [`Analysis`] (look `k` of
//!   `K`, the gate's false-rollback rate `alpha`) and spends `alpha` over the looks with
//!   Lan–DeMets O'Brien–Fleming (or Pocock) boundaries computed by numerical integration, and
//!   across criteria with Holm's step-down. Cohorts must then be cumulative since the step
//!   began. [`evaluate`] stays the single-look judgement at each criterion's own confidence.
//!   The decision-quality bench (`benches/decision_quality.md`) measures the result: ≤ 1 %
//!   false rollbacks over 10 looks at every size, with the power figures next to them.
//! * **Measured criteria.** [`Metric::Measured`] judges a number the caller aggregated itself
//!   (from OTLP metrics: `max(queue_depth)`, a cache hit ratio, cost per request) and put in
//!   [`CohortData::measured`] under the criterion's name, with the same bands, direction,
//!   comparisons, zero-baseline rule, sustain and verdict rules as span thresholds. Request
//!   minimums do not apply: a service may export metrics and no spans, and the value rests on
//!   its own data points (reported as `points` and `series`); a caller that finds them too thin
//!   sends a `gap` instead of a value. A missing entry, a `None` value (its `gap` sentence
//!   becomes the reason) or NaN is `no_data`, and a relative comparison also needs the
//!   baseline's value. The [`Measured::unit`] is for display only, never a conversion (`""`
//!   and `"1"` print plain numbers), so bounds are written in the value's own unit; reasons
//!   show up to 4 significant digits and the histogram error bound when known. Only
//!   thresholds: confidence bounds need requests, so `interval` on a measured metric does not
//!   validate, and under [`evaluate_look`] a measured threshold spends no alpha.
//! * **Invalid specs** are rejected by [`GateSpec::validate`] at load time; if one reaches
//!   [`evaluate`] anyway its criterion is `no_data` with the error as reason, never a pass.

mod evaluate;
mod exact;
mod interval;
mod outcome;
mod sequential;
mod slo;
mod spec;
mod stats;
mod sustain;

pub use evaluate::{evaluate, evaluate_criterion, evaluate_look};
pub use exact::{
    binomial_mid_p_lower, binomial_mid_p_upper, normal_quantile, rate_ratio_mid_p, student_t_upper,
    student_t_upper_quantile,
};
pub use interval::{QuantileEstimate, min_count_for_quantile, quantile_estimate};
pub use outcome::{
    CriterionOutcome, CriterionResult, Decision, Evaluation, LookReport, Thresholds, Verdict,
};
pub use sequential::{Analysis, AnalysisError, Spending, boundaries};
pub use slo::{
    Budget, BurnCheck, BurnTier, SloKind, SloSpec, Tier, budget, burn_rate, good_total, humanize,
    multiwindow,
};
pub use spec::{
    Check, CohortData, Comparison, CriterionSpec, Direction, GateSpec, Measured, Metric, SpecError,
    quantile_label,
};
pub use stats::{ProportionTest, RankTest, mann_whitney, normal_upper_tail, two_proportion};
pub use sustain::Sustain;

#[cfg(test)]
mod tests;
