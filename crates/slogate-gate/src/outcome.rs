//! Results: per-criterion outcomes, the gate verdict and the Argo Rollouts decision.

use serde::{Deserialize, Serialize};

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
    /// `error_rate`, `latency_p95_ms`, `request_rate` or `latency_distribution`.
    pub metric: String,
    pub result: CriterionResult,
    /// The canary's value of the metric (ms, fraction or requests per second).
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
    pub canary_requests: u64,
    pub baseline_requests: u64,
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
        }
    }
}
