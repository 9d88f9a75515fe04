//! Gate and criterion specifications, as written in configuration, their validation, and the
//! cohort data criteria are judged on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slogate_sketch::Sketch;
use thiserror::Error;

/// What the caller measured for one cohort over the evaluation window (slots already merged).
///
/// With sampled traces, `requests` and `errors` are adjusted counts (each sampled span counts
/// for the inverse of its sampling probability) and the sketch holds one value per sampled
/// span: rates, point estimates and SLO budgets use the adjusted counts, the statistical tests
/// the sample ([`CohortData::sample`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CohortData {
    pub requests: u64,
    pub errors: u64,
    /// Latencies in nanoseconds.
    pub sketch: Sketch,
    /// Seconds the data actually spans (from the first request to now), when the caller knows
    /// it: the request rate divides by this rather than the whole window. `None`: the window.
    pub observed_seconds: Option<u64>,
    /// What the caller measured for [`Metric::Measured`] criteria (from OTLP metrics, say),
    /// keyed by criterion name. A measured criterion without an entry here is `no_data`.
    pub measured: BTreeMap<String, Measured>,
}

/// A number the caller aggregated for one [`Metric::Measured`] criterion and one cohort:
/// `max(queue_depth)` over the window, a cache hit ratio, cost per request. The gate judges
/// `value` against the criterion's bounds; the rest is for the outcome and its reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// The aggregated value, or None when there is nothing to measure (then `gap` says why).
    pub value: Option<f64>,
    /// What was measured, for the outcome's `metric` field and reasons: e.g.
    /// `max(queue_depth{queue="jobs"})`, `cache_hits / cache_requests`.
    pub label: String,
    /// Unit for display only, never a conversion: `""` or `"1"` (a ratio or fraction) print a
    /// plain number, `"%"` is written right after the number, a UCUM annotation such as
    /// `"{jobs}"` loses its braces, anything else (`"ms"`, `"s"`, `"jobs"`, `"USD"`) follows
    /// after a space. The criterion's bounds are in the same unit as `value`.
    pub unit: String,
    /// Data points the value was computed from.
    pub points: u64,
    /// Streams (series) the value was computed from.
    pub series: u64,
    /// Relative error bound of a quantile read from histogram buckets, when known (`0.012`:
    /// ±1.2 %).
    pub error_bound: Option<f64>,
    /// Why there is no value (one human sentence), when `value` is None.
    pub gap: Option<String>,
}

impl CohortData {
    /// The sample behind the counts: `(requests, errors)` actually observed. Without sampling
    /// that is `(requests, errors)`; with it, the sketch's count of sampled spans and the
    /// errors scaled to it (exact when a cohort's spans share one sampling probability).
    pub fn sample(&self) -> (u64, u64) {
        let n = self.sketch.count();
        if n == 0 || n >= self.requests {
            return (self.requests, self.errors.min(self.requests));
        }
        let errors = self.errors.min(self.requests) as u128 * u128::from(n);
        let errors = ((errors + u128::from(self.requests) / 2) / u128::from(self.requests)) as u64;
        (n, errors.min(n))
    }

    /// Whether the counts are adjusted counts of sampled traffic.
    pub fn is_sampled(&self) -> bool {
        let n = self.sketch.count();
        n > 0 && n < self.requests
    }
}

/// The quantity a threshold criterion looks at.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Metric {
    /// `errors / requests`, a fraction in `[0, 1]`.
    ErrorRate,
    /// A latency quantile in milliseconds, e.g. `quantile: 0.95`.
    Latency { quantile: f64 },
    /// Requests per second over the window.
    RequestRate,
    /// A number the caller measured for this criterion ([`CohortData::measured`], keyed by
    /// the criterion's name), in the unit the caller reports. Request minimums do not apply.
    Measured,
}

impl Metric {
    /// The direction that is better when a spec does not say.
    pub fn default_direction(self) -> Direction {
        match self {
            Metric::ErrorRate | Metric::Latency { .. } | Metric::Measured => {
                Direction::LowerIsBetter
            }
            Metric::RequestRate => Direction::HigherIsBetter,
        }
    }

    /// Stable name: `error_rate`, `latency_p95_ms`, `request_rate`, `measured`. Outcomes of
    /// measured criteria carry the caller's label instead.
    pub fn name(self) -> String {
        match self {
            Metric::ErrorRate => "error_rate".into(),
            Metric::RequestRate => "request_rate".into(),
            Metric::Measured => "measured".into(),
            Metric::Latency { quantile } => format!("latency_{}_ms", quantile_label(quantile)),
        }
    }
}

/// `0.95` → `p95`, `0.999` → `p999`, `0.5` → `p50`.
pub fn quantile_label(q: f64) -> String {
    let pct = format!("{:.3}", q * 100.0);
    let pct = pct.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", pct.replace('.', ""))
}

/// How the canary's value is turned into the number compared with the bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The canary's value itself.
    Absolute,
    /// `canary / baseline`.
    Ratio,
    /// `canary − baseline`, in the metric's unit (a fraction for error rate: `0.005` is half a
    /// percentage point).
    Difference,
}

impl Comparison {
    pub fn name(self) -> &'static str {
        match self {
            Comparison::Absolute => "absolute",
            Comparison::Ratio => "ratio",
            Comparison::Difference => "difference",
        }
    }
}

/// Which way is good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
}

/// What a criterion checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    /// A metric, optionally relative to the baseline, against a pass bound and a fail bound.
    /// Lower-is-better: `score <= pass` passes, `score > fail` fails, between is marginal.
    /// Higher-is-better mirrors it: `score >= pass` passes, `score < fail` fails.
    Threshold {
        metric: Metric,
        comparison: Comparison,
        pass: f64,
        fail: f64,
        /// Defaults to [`Metric::default_direction`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<Direction>,
    },
    /// One-sided Mann–Whitney U test that canary latencies are stochastically greater than the
    /// baseline's. Fails when significant at `confidence` and the probability of superiority
    /// exceeds `max_effect`; significant but smaller is marginal.
    MannWhitney { confidence: f64, max_effect: f64 },
    /// One-sided two-proportion z-test that the canary error rate is above the baseline's.
    /// Fails when significant at `confidence` and the difference exceeds `max_difference`
    /// (a fraction); significant but smaller is marginal.
    TwoProportion {
        confidence: f64,
        max_difference: f64,
    },
    /// A threshold judged on a confidence interval instead of a point estimate: a latency
    /// quantile (order-statistic bounds from the sketch) or the error rate (exact binomial
    /// bounds), absolute or as a ratio to the baseline. Fails only when the lower bound is above
    /// `fail`; passes only when the upper bound at `confidence` is at most `pass`; otherwise
    /// marginal. The margins are independent, so `fail` may be below `pass` (`fail: 1.0` fails
    /// any significant increase). Under [`evaluate_look`](crate::evaluate_look) the fail test
    /// runs at the level the gate's alpha spending gives this look; under
    /// [`evaluate`](crate::evaluate) at `1 − confidence`.
    Interval {
        metric: Metric,
        comparison: Comparison,
        pass: f64,
        fail: f64,
        confidence: f64,
        /// Take the baseline as known (a stored baseline with no sampling error of its own).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        baseline_known: bool,
    },
}

impl Check {
    /// Whether the check needs a baseline cohort.
    pub fn is_relative(&self) -> bool {
        !matches!(
            self,
            Check::Threshold {
                comparison: Comparison::Absolute,
                ..
            } | Check::Interval {
                comparison: Comparison::Absolute,
                ..
            }
        )
    }

    /// Whether the check is a statistical test that spends part of the gate's alpha under
    /// [`evaluate_look`](crate::evaluate_look). Plain thresholds compare point estimates and
    /// carry no error rate to spend.
    pub fn is_test(&self) -> bool {
        !matches!(self, Check::Threshold { .. })
    }
}

/// One named criterion of a gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionSpec {
    pub name: String,
    #[serde(flatten)]
    pub check: Check,
    /// Per-cohort request minimum; overrides [`GateSpec::min_requests`]. Ignored by
    /// [`Metric::Measured`] criteria, which rest on the caller's data points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// A raw `fail` counts only after failing this long without a break (see
    /// [`Sustain`](crate::Sustain)); until then it is `marginal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sustained_seconds: Option<u64>,
}

/// A gate: criteria evaluated together into one verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    pub name: String,
    /// Minimum requests per cohort before a span criterion gives a verdict (measured criteria
    /// do not count requests).
    pub min_requests: u64,
    pub criteria: Vec<CriterionSpec>,
}

/// Why a specification was rejected.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SpecError {
    #[error("criterion name must not be empty")]
    EmptyName,
    #[error("criterion `{0}` is defined twice")]
    DuplicateName(String),
    #[error("criterion `{name}`: {field} must be a number, got {value}")]
    NotANumber {
        name: String,
        field: &'static str,
        value: f64,
    },
    #[error(
        "criterion `{name}`: lower is better, so pass bound {pass} must not exceed fail bound {fail}"
    )]
    LowerBoundsReversed { name: String, pass: f64, fail: f64 },
    #[error(
        "criterion `{name}`: higher is better, so pass bound {pass} must not be below fail bound {fail}"
    )]
    HigherBoundsReversed { name: String, pass: f64, fail: f64 },
    #[error("criterion `{name}`: quantile {quantile} is outside (0, 1]")]
    Quantile { name: String, quantile: f64 },
    #[error("criterion `{name}`: confidence {confidence} is outside (0, 1)")]
    Confidence { name: String, confidence: f64 },
    #[error("criterion `{name}`: max_effect {max_effect} is outside [0.5, 1]")]
    MaxEffect { name: String, max_effect: f64 },
    #[error("criterion `{name}`: max_difference {max_difference} is outside [0, 1]")]
    MaxDifference { name: String, max_difference: f64 },
    #[error(
        "criterion `{name}`: confidence bounds exist for a latency quantile below 1 or the error rate, absolute or as a ratio"
    )]
    IntervalCheck { name: String },
    #[error(
        "criterion `{name}`: confidence bounds need request data; a measured metric is judged on its value"
    )]
    IntervalMeasured { name: String },
    #[error("criterion `{name}`: {field} must be above zero, got {value}")]
    NotPositive {
        name: String,
        field: &'static str,
        value: f64,
    },
}

impl CriterionSpec {
    /// Checks bounds, ordering and parameter ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        let number = |field: &'static str, value: f64| {
            if value.is_nan() {
                Err(SpecError::NotANumber {
                    name: name(),
                    field,
                    value,
                })
            } else {
                Ok(())
            }
        };
        match self.check {
            Check::Threshold {
                metric,
                pass,
                fail,
                direction,
                ..
            } => {
                number("pass", pass)?;
                number("fail", fail)?;
                let bad_quantile = match metric {
                    Metric::Latency { quantile } => Some(quantile),
                    _ => None,
                }
                .filter(|&q| !(q > 0.0 && q <= 1.0));
                if let Some(quantile) = bad_quantile {
                    return Err(SpecError::Quantile {
                        name: name(),
                        quantile,
                    });
                }
                match direction.unwrap_or(metric.default_direction()) {
                    Direction::LowerIsBetter if pass > fail => {
                        Err(SpecError::LowerBoundsReversed {
                            name: name(),
                            pass,
                            fail,
                        })
                    }
                    Direction::HigherIsBetter if pass < fail => {
                        Err(SpecError::HigherBoundsReversed {
                            name: name(),
                            pass,
                            fail,
                        })
                    }
                    _ => Ok(()),
                }
            }
            Check::MannWhitney {
                confidence,
                max_effect,
            } => {
                check_confidence(&self.name, confidence)?;
                if !(0.5..=1.0).contains(&max_effect) {
                    return Err(SpecError::MaxEffect {
                        name: name(),
                        max_effect,
                    });
                }
                Ok(())
            }
            Check::TwoProportion {
                confidence,
                max_difference,
            } => {
                check_confidence(&self.name, confidence)?;
                if !(0.0..=1.0).contains(&max_difference) {
                    return Err(SpecError::MaxDifference {
                        name: name(),
                        max_difference,
                    });
                }
                Ok(())
            }
            Check::Interval {
                metric,
                comparison,
                pass,
                fail,
                confidence,
                ..
            } => {
                check_confidence(&self.name, confidence)?;
                let supported = match metric {
                    Metric::Latency { quantile } => quantile > 0.0 && quantile < 1.0,
                    Metric::ErrorRate => true,
                    Metric::RequestRate => false,
                    Metric::Measured => {
                        return Err(SpecError::IntervalMeasured { name: name() });
                    }
                };
                if !supported || comparison == Comparison::Difference {
                    return Err(SpecError::IntervalCheck { name: name() });
                }
                for (field, value) in [("pass", pass), ("fail", fail)] {
                    number(field, value)?;
                    if value <= 0.0 {
                        return Err(SpecError::NotPositive {
                            name: name(),
                            field,
                            value,
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

fn check_confidence(name: &str, confidence: f64) -> Result<(), SpecError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(SpecError::Confidence {
            name: name.to_owned(),
            confidence,
        })
    }
}

impl GateSpec {
    /// Validates every criterion and that names are unique.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.criteria {
            c.validate()?;
            if !seen.insert(c.name.as_str()) {
                return Err(SpecError::DuplicateName(c.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(metric: Metric, pass: f64, fail: f64, direction: Option<Direction>) -> Check {
        Check::Threshold {
            metric,
            comparison: Comparison::Absolute,
            pass,
            fail,
            direction,
        }
    }

    fn interval(metric: Metric, comparison: Comparison, pass: f64, fail: f64) -> Check {
        Check::Interval {
            metric,
            comparison,
            pass,
            fail,
            confidence: 0.95,
            baseline_known: false,
        }
    }

    fn check(check: Check, want: Result<(), &str>) {
        let spec = CriterionSpec {
            name: "c".into(),
            check: check.clone(),
            min_requests: None,
            sustained_seconds: None,
        };
        let got = spec.validate().map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            want,
            "{check:?}"
        );
    }

    #[test]
    fn validation() {
        let p95 = Metric::Latency { quantile: 0.95 };
        let table: Vec<(Check, Result<(), &str>)> = vec![
            (threshold(p95, 300.0, 500.0, None), Ok(())),
            (threshold(p95, 300.0, 300.0, None), Ok(())),
            (
                threshold(p95, 500.0, 300.0, None),
                Err(
                    "criterion `c`: lower is better, so pass bound 500 must not exceed fail bound 300",
                ),
            ),
            (threshold(Metric::RequestRate, 10.0, 5.0, None), Ok(())),
            (
                threshold(Metric::RequestRate, 5.0, 10.0, None),
                Err(
                    "criterion `c`: higher is better, so pass bound 5 must not be below fail bound 10",
                ),
            ),
            (
                threshold(
                    Metric::ErrorRate,
                    0.05,
                    0.02,
                    Some(Direction::HigherIsBetter),
                ),
                Ok(()),
            ),
            (
                threshold(Metric::ErrorRate, f64::NAN, 0.02, None),
                Err("criterion `c`: pass must be a number, got NaN"),
            ),
            (
                threshold(Metric::Latency { quantile: 1.5 }, 1.0, 2.0, None),
                Err("criterion `c`: quantile 1.5 is outside (0, 1]"),
            ),
            (
                Check::MannWhitney {
                    confidence: 0.95,
                    max_effect: 0.6,
                },
                Ok(()),
            ),
            (
                Check::MannWhitney {
                    confidence: 1.0,
                    max_effect: 0.6,
                },
                Err("criterion `c`: confidence 1 is outside (0, 1)"),
            ),
            (
                Check::MannWhitney {
                    confidence: 0.95,
                    max_effect: 0.4,
                },
                Err("criterion `c`: max_effect 0.4 is outside [0.5, 1]"),
            ),
            (
                Check::TwoProportion {
                    confidence: 0.95,
                    max_difference: -0.1,
                },
                Err("criterion `c`: max_difference -0.1 is outside [0, 1]"),
            ),
            (interval(p95, Comparison::Ratio, 1.1, 1.0), Ok(())),
            (
                interval(Metric::ErrorRate, Comparison::Absolute, 0.01, 0.02),
                Ok(()),
            ),
            (
                interval(
                    Metric::Latency { quantile: 1.0 },
                    Comparison::Ratio,
                    1.1,
                    1.0,
                ),
                Err(
                    "criterion `c`: confidence bounds exist for a latency quantile below 1 or the error rate, absolute or as a ratio",
                ),
            ),
            (
                interval(Metric::RequestRate, Comparison::Absolute, 1.0, 1.0),
                Err(
                    "criterion `c`: confidence bounds exist for a latency quantile below 1 or the error rate, absolute or as a ratio",
                ),
            ),
            (
                interval(Metric::ErrorRate, Comparison::Difference, 0.01, 0.02),
                Err(
                    "criterion `c`: confidence bounds exist for a latency quantile below 1 or the error rate, absolute or as a ratio",
                ),
            ),
            (
                interval(p95, Comparison::Ratio, 0.0, 1.0),
                Err("criterion `c`: pass must be above zero, got 0"),
            ),
            // Measured metrics: lower is better unless the spec says otherwise.
            (threshold(Metric::Measured, 400.0, 500.0, None), Ok(())),
            (
                threshold(Metric::Measured, 0.85, 0.80, None),
                Err(
                    "criterion `c`: lower is better, so pass bound 0.85 must not exceed fail bound 0.8",
                ),
            ),
            (
                threshold(
                    Metric::Measured,
                    0.85,
                    0.80,
                    Some(Direction::HigherIsBetter),
                ),
                Ok(()),
            ),
            (
                threshold(Metric::Measured, f64::NAN, 0.80, None),
                Err("criterion `c`: pass must be a number, got NaN"),
            ),
            (
                interval(Metric::Measured, Comparison::Absolute, 1.0, 2.0),
                Err(
                    "criterion `c`: confidence bounds need request data; a measured metric is judged on its value",
                ),
            ),
            (
                interval(Metric::Measured, Comparison::Ratio, 1.1, 1.0),
                Err(
                    "criterion `c`: confidence bounds need request data; a measured metric is judged on its value",
                ),
            ),
        ];
        for (c, want) in table {
            check(c, want);
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let c = CriterionSpec {
            name: "err".into(),
            check: threshold(Metric::ErrorRate, 0.01, 0.02, None),
            min_requests: None,
            sustained_seconds: None,
        };
        let gate = GateSpec {
            name: "g".into(),
            min_requests: 1,
            criteria: vec![c.clone(), c],
        };
        assert_eq!(
            gate.validate().map_err(|e| e.to_string()),
            Err("criterion `err` is defined twice".into())
        );
    }

    #[test]
    fn metric_names() {
        for (m, want) in [
            (Metric::ErrorRate, "error_rate"),
            (Metric::RequestRate, "request_rate"),
            (Metric::Latency { quantile: 0.95 }, "latency_p95_ms"),
            (Metric::Latency { quantile: 0.5 }, "latency_p50_ms"),
            (Metric::Latency { quantile: 0.999 }, "latency_p999_ms"),
            (Metric::Latency { quantile: 0.99 }, "latency_p99_ms"),
            (Metric::Measured, "measured"),
        ] {
            assert_eq!(m.name(), want);
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let json = r#"{"name":"p95","kind":"threshold","metric":{"type":"latency","quantile":0.95},
            "comparison":"ratio","pass":1.1,"fail":1.3,"sustained_seconds":120}"#;
        let spec: CriterionSpec = serde_json::from_str(json).unwrap();
        assert_eq!(
            spec.check,
            Check::Threshold {
                metric: Metric::Latency { quantile: 0.95 },
                comparison: Comparison::Ratio,
                pass: 1.1,
                fail: 1.3,
                direction: None,
            }
        );
        assert_eq!(spec.sustained_seconds, Some(120));
        let back: CriterionSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn measured_spec_round_trips_through_json() {
        // (configuration, check it parses to, JSON of its metric when written back)
        let table = [
            (
                r#"{"name":"queue","kind":"threshold","metric":{"type":"measured"},
                    "comparison":"absolute","pass":400,"fail":500,"sustained_seconds":300}"#,
                Check::Threshold {
                    metric: Metric::Measured,
                    comparison: Comparison::Absolute,
                    pass: 400.0,
                    fail: 500.0,
                    direction: None,
                },
            ),
            (
                r#"{"name":"hits","kind":"threshold","metric":{"type":"measured"},
                    "comparison":"absolute","pass":0.85,"fail":0.8,"direction":"higher_is_better"}"#,
                Check::Threshold {
                    metric: Metric::Measured,
                    comparison: Comparison::Absolute,
                    pass: 0.85,
                    fail: 0.8,
                    direction: Some(Direction::HigherIsBetter),
                },
            ),
        ];
        for (json, want) in table {
            let spec: CriterionSpec = serde_json::from_str(json).unwrap();
            assert_eq!(spec.check, want, "{json}");
            assert_eq!(spec.validate(), Ok(()), "{json}");
            let written = serde_json::to_value(&spec).unwrap();
            assert_eq!(
                written["metric"],
                serde_json::json!({"type": "measured"}),
                "{json}"
            );
            let back: CriterionSpec = serde_json::from_value(written).unwrap();
            assert_eq!(back, spec, "{json}");
        }
        // The measured value itself round-trips too (the caller may persist or ship it).
        let m = Measured {
            value: Some(612.0),
            label: r#"max(queue_depth{queue="jobs"})"#.into(),
            unit: "jobs".into(),
            points: 40,
            series: 2,
            error_bound: None,
            gap: None,
        };
        let back: Measured = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
