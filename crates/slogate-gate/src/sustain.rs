//! Sustained failure: a raw `fail` only counts once it has lasted long enough.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::{CriterionResult, Evaluation};
use crate::spec::GateSpec;

/// Per-criterion memory of when an unbroken run of raw failures began. The caller keeps it
/// between evaluations (and may persist it; it serializes) and passes the time in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sustain {
    /// Unix seconds of the first raw `fail` in the current run, `None` when not failing.
    pub failing_since: Option<u64>,
}

impl Sustain {
    /// Feeds one raw result observed at `now_unix`. A `fail` stays `marginal` until the run of
    /// failures has lasted `sustained_seconds` (so `0` fails at once); any other result ends
    /// the run and passes through unchanged. A clock stepping backwards never shortens the wait
    /// below zero: elapsed time saturates at zero.
    pub fn observe(
        &mut self,
        raw: CriterionResult,
        now_unix: u64,
        sustained_seconds: u64,
    ) -> CriterionResult {
        if raw != CriterionResult::Fail {
            self.failing_since = None;
            return raw;
        }
        let since = *self.failing_since.get_or_insert(now_unix);
        if now_unix.saturating_sub(since) >= sustained_seconds {
            CriterionResult::Fail
        } else {
            CriterionResult::Marginal
        }
    }
}

impl Evaluation {
    /// Applies [`Sustain`] to every criterion of `spec` that has `sustained_seconds`, keeping
    /// state in `states` by criterion name, then re-derives verdict and reasons. A held-back
    /// failure keeps its sentence with how long it has been failing appended.
    pub fn sustain(
        &mut self,
        spec: &GateSpec,
        states: &mut BTreeMap<String, Sustain>,
        now_unix: u64,
    ) {
        for outcome in &mut self.criteria {
            let Some(secs) = spec
                .criteria
                .iter()
                .find(|c| c.name == outcome.name)
                .and_then(|c| c.sustained_seconds)
            else {
                continue;
            };
            let state = states.entry(outcome.name.clone()).or_default();
            let result = state.observe(outcome.result, now_unix, secs);
            if result != outcome.result {
                let since = state.failing_since.unwrap_or(now_unix);
                outcome.reason = format!(
                    "{}; failing for {}s of the {secs}s required before it counts",
                    outcome.reason,
                    now_unix.saturating_sub(since)
                );
                outcome.result = result;
            }
        }
        let criteria = std::mem::take(&mut self.criteria);
        let look = self.look.take();
        *self = Evaluation::from_outcomes(criteria);
        self.look = look;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CriterionResult::{Fail, Marginal, NoData, Pass};

    /// One step: (raw result, now, expected result).
    type Step = (CriterionResult, u64, CriterionResult);

    fn check(sustained: u64, steps: &[Step]) {
        let mut s = Sustain::default();
        for (i, &(raw, now, want)) in steps.iter().enumerate() {
            assert_eq!(
                s.observe(raw, now, sustained),
                want,
                "step {i} ({raw:?} at {now}) with sustained {sustained}"
            );
        }
    }

    #[test]
    fn sustained_failures() {
        let table: &[(u64, &[Step])] = &[
            // Zero seconds: every fail counts at once.
            (
                0,
                &[(Fail, 100, Fail), (Pass, 110, Pass), (Fail, 120, Fail)],
            ),
            // Held back until 60 s of unbroken failure.
            (
                60,
                &[
                    (Fail, 100, Marginal),
                    (Fail, 130, Marginal),
                    (Fail, 159, Marginal),
                    (Fail, 160, Fail),
                    (Fail, 500, Fail),
                ],
            ),
            // A pass resets the run.
            (
                60,
                &[
                    (Fail, 100, Marginal),
                    (Fail, 150, Marginal),
                    (Pass, 155, Pass),
                    (Fail, 170, Marginal),
                    (Fail, 229, Marginal),
                    (Fail, 230, Fail),
                ],
            ),
            // So do marginal and no_data: only continuous failing counts.
            (
                60,
                &[
                    (Fail, 0, Marginal),
                    (Marginal, 30, Marginal),
                    (Fail, 61, Marginal),
                    (NoData, 90, NoData),
                    (Fail, 121, Marginal),
                    (Fail, 181, Fail),
                ],
            ),
            // A clock going backwards does not count as time failing.
            (
                60,
                &[
                    (Fail, 1000, Marginal),
                    (Fail, 900, Marginal),
                    (Fail, 1060, Fail),
                ],
            ),
        ];
        for &(sustained, steps) in table {
            check(sustained, steps);
        }
    }

    #[test]
    fn state_serializes() {
        let s = Sustain {
            failing_since: Some(1_700_000_000),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"failing_since":1700000000}"#);
        assert_eq!(serde_json::from_str::<Sustain>(&json).unwrap(), s);
    }
}
