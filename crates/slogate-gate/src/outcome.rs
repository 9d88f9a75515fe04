//! Results: per-criterion outcomes, the gate verdict and the Argo Rollouts decision.

use serde::{Deserialize, Serialize};

use crate::sequential::Spending;

/// Result of one criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionResult {
    Pass,
    Marginal,
    Fail,
    NoData,
}

/// Gate verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// What a rollout should do with the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Proceed,
    Hold,
    Rollback,
}

impl Verdict {
    pub fn decision(self) -> Decision {
        match self {
            Verdict::Pass => Decision::Proceed,
            Verdict::Fail => Decision::Rollback,
            Verdict::Inconclusive => Decision::Hold,
        }
    }
}

/// The bounds a criterion was judged against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub pass: f64,
    pub fail: f64,
    /// `absolute`, `ratio`, `difference`, `mann_whitney` or `two_proportion`.
    pub comparison: String,
    /// Confidence level of a statistical criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// One criterion's outcome, as it appears in the verdict document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionOutcome {
    pub name: String,
    /// `error_rate`, `latency_p95_ms`, `request_rate` or `latency_distribution`; for a
    /// measured criterion the caller's label (`max(queue_depth)`), or `measured` when the
    /// caller gave no label or did not measure it at all.
    pub metric: String,
    pub result: CriterionResult,
    /// The canary's value of the metric (ms, fraction, requests per second, or the measured
    /// value in its `unit`).
    pub observed: Option<f64>,
    /// The baseline's value of the metric, when there is a baseline.
    pub baseline: Option<f64>,
    /// The number compared with the thresholds: `observed` (absolute), `observed / baseline`
    /// (ratio, infinite on a zero baseline — serialized as `null`), `observed − baseline`
    /// (difference), the probability of superiority (Mann–Whitney) or the error-rate
    /// difference (two-proportion).
    pub score: Option<f64>,
    /// One-sided p-value of a statistical criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub threshold: Thresholds,
    /// Lower confidence bound of `score`, at the level the fail test used (`alpha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_lower: Option<f64>,
    /// Upper confidence bound of `score`, at the criterion's confidence (the pass test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_upper: Option<f64>,
    /// One-sided level the fail test of a statistical criterion ran at: `1 − confidence` on
    /// its own, its share of the gate's alpha spent at this look under an [`Analysis`].
    ///
    /// [`Analysis`]: crate::Analysis
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    pub canary_requests: u64,
    pub baseline_requests: u64,
    /// Data points behind the canary's measured value (measured criteria only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    /// Series behind the canary's measured value (measured criteria only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<u64>,
    /// Data points behind the baseline's measured value (measured criteria only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_points: Option<u64>,
    /// Display unit of `observed` and `baseline` for a measured criterion (`""` or `"1"`: a
    /// plain number); the bounds of an absolute comparison are in it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Relative error bound of the canary's measured value (a quantile read from histogram
    /// buckets), when the caller knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_bound: Option<f64>,
    /// One human sentence.
    pub reason: String,
}

/// A gate's evaluation: verdict, decision, outcomes and the reasons for anything not passing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub decision: Decision,
    pub criteria: Vec<CriterionOutcome>,
    pub reasons: Vec<String>,
    /// Which look of which budget this was, for an [`evaluate_look`](crate::evaluate_look).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<LookReport>,
}

/// Where a look stands in its analysis and what it spent of the gate's error budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookReport {
    /// This look, from 1.
    pub look: u32,
    pub looks: u32,
    /// Information fraction of this look (1 at the last planned look).
    pub information_fraction: f64,
    /// The gate's false-rollback budget over the whole step.
    pub alpha: f64,
    pub spending: Spending,
    /// Cumulative alpha the gate has spent up to and including this look.
    pub spent: f64,
    /// Alpha spent at this look alone.
    pub spent_this_look: f64,
    /// Statistical criteria sharing the budget (Holm: each first gets `alpha / tested`).
    pub tested: u32,
    /// Criteria that failed and so passed their share on to the others (Holm step-down).
    pub rejected: u32,
    /// The z boundary of this look for one criterion's final share (at most 8).
    pub boundary: f64,
}

impl Evaluation {
    /// Derives verdict, decision and reasons from outcomes. Any `fail` fails; otherwise any
    /// `no_data` or `marginal` is inconclusive; only all-`pass` passes; no criteria at all is
    /// inconclusive.
    pub fn from_outcomes(criteria: Vec<CriterionOutcome>) -> Evaluation {
        let any = |r| criteria.iter().any(|c| c.result == r);
        let verdict = if criteria.is_empty() {
            Verdict::Inconclusive
        } else if any(CriterionResult::Fail) {
            Verdict::Fail
        } else if any(CriterionResult::NoData) || any(CriterionResult::Marginal) {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        };
        let mut reasons: Vec<String> = criteria
            .iter()
            .filter(|c| c.result != CriterionResult::Pass)
            .map(|c| c.reason.clone())
            .collect();
        if criteria.is_empty() {
            reasons.push("gate has no criteria, so there is nothing to judge".into());
        }
        Evaluation {
            verdict,
            decision: verdict.decision(),
            criteria,
            reasons,
            look: None,
        }
    }
}
