//! Evaluation of a gate against canary and baseline cohorts.

use crate::exact::rate_ratio_mid_p;
use crate::interval::{Bounds, judge};
use crate::outcome::{CriterionOutcome, CriterionResult, Evaluation, LookReport, Thresholds};
use crate::sequential::{Analysis, boundaries};
use crate::spec::{
    Check, CohortData, Comparison, CriterionSpec, Direction, GateSpec, Measured, Metric,
};
use crate::stats::{ProportionTest, mann_whitney, normal_upper_tail, two_proportion};

/// Evaluates every criterion of `spec` and derives the verdict. `window_seconds` is the span
/// the cohorts were measured over (used for request rate). Never fails: thin or missing data is
/// a `no_data` outcome, and a criterion that does not [validate](CriterionSpec::validate) is
/// `no_data` with the validation error as its reason.
pub fn evaluate(
    spec: &GateSpec,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
) -> Evaluation {
    let outcomes = spec
        .criteria
        .iter()
        .map(|c| evaluate_criterion(c, spec.min_requests, canary, baseline, window_seconds))
        .collect();
    Evaluation::from_outcomes(outcomes)
}

/// Evaluates one criterion; `gate_min_requests` applies unless the criterion overrides it
/// (and never to a [`Metric::Measured`] criterion).
pub fn evaluate_criterion(
    spec: &CriterionSpec,
    gate_min_requests: u64,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
) -> CriterionOutcome {
    evaluate_criterion_at(
        spec,
        gate_min_requests,
        canary,
        baseline,
        window_seconds,
        None,
    )
}

/// Evaluates look `analysis.look` of a step: every statistical criterion ([`Check::is_test`])
/// shares the gate's `analysis.alpha`, spent over the looks by the analysis's spending function
/// and across criteria by Holm's step-down (each first gets `alpha / m`; when some fail, the
/// rest are judged again with `alpha / (m − failed)`). The false-rollback rate of the whole gate
/// over the whole step is then at most `alpha`, the one number to configure.
///
/// The cohorts must hold data **cumulative since the step began** (merge every slot since the
/// analysis started, do not slide a window): the boundaries assume each look extends the data
/// of the previous one. Plain [`Check::Threshold`] criteria are judged as in [`evaluate`] and
/// spend nothing. An invalid `analysis` makes every statistical criterion `no_data`.
pub fn evaluate_look(
    spec: &GateSpec,
    analysis: &Analysis,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
) -> Evaluation {
    // Before the last look only a fail decides; a test significant at its own confidence but
    // not past this look's boundary holds rather than passes. At the last look the boundary is
    // the whole test.
    let hold_early = analysis.look < analysis.looks;
    let judge = |c: &CriterionSpec, level: Option<f64>| {
        evaluate_criterion_at(
            c,
            spec.min_requests,
            canary,
            baseline,
            window_seconds,
            level.map(|l| (l, hold_early)),
        )
    };
    if let Err(e) = analysis.validate() {
        let outcomes = spec
            .criteria
            .iter()
            .map(|c| {
                let mut out = judge(c, None);
                if c.check.is_test() {
                    out.result = CriterionResult::NoData;
                    out.reason = format!("analysis: {e}; no verdict from a misconfigured look");
                }
                out
            })
            .collect();
        return Evaluation::from_outcomes(outcomes);
    }
    let fractions = analysis.effective_fractions();
    let t = *fractions.last().expect("a valid analysis has a look");
    let tested = spec.criteria.iter().filter(|c| c.check.is_test()).count();
    // Holm's step-down: every test first gets `alpha / tested`; each failure frees its share
    // for the rest, which are judged again, until no new criterion fails. Boundaries are
    // recomputed from the first look at the larger share (Maurer & Bretz 2013), so the
    // family-wise rate over all looks stays at `alpha`.
    let mut rejected = 0;
    let (outcomes, boundary) = loop {
        let share = analysis.alpha / (tested - rejected).max(1) as f64;
        let boundary = *boundaries(&fractions, share, analysis.spending)
            .last()
            .expect("one boundary per look");
        let level = normal_upper_tail(boundary);
        let outcomes: Vec<CriterionOutcome> = spec
            .criteria
            .iter()
            .map(|c| judge(c, c.check.is_test().then_some(level)))
            .collect();
        let failed = spec
            .criteria
            .iter()
            .zip(&outcomes)
            .filter(|(c, o)| c.check.is_test() && o.result == CriterionResult::Fail)
            .count();
        // A larger share never turns a fail back, so `failed` only grows and this ends.
        if failed <= rejected || failed >= tested {
            rejected = rejected.max(failed);
            break (outcomes, boundary);
        }
        rejected = failed;
    };
    let spent = analysis.spending.spent(analysis.alpha, t);
    let before = fractions.len().checked_sub(2).map_or(0.0, |i| {
        analysis.spending.spent(analysis.alpha, fractions[i])
    });
    let mut e = Evaluation::from_outcomes(outcomes);
    e.look = Some(LookReport {
        look: analysis.look,
        looks: analysis.looks,
        information_fraction: t,
        alpha: analysis.alpha,
        spending: analysis.spending,
        spent,
        spent_this_look: spent - before,
        tested: tested as u32,
        rejected: rejected as u32,
        boundary,
    });
    e
}

/// [`evaluate_criterion`] with the fail test of a statistical criterion at `fail_alpha.0`
/// instead of `1 − confidence`; with `fail_alpha.1` (an early look), a difference significant
/// at `1 − confidence` but not at the look's level is marginal rather than a pass.
fn evaluate_criterion_at(
    spec: &CriterionSpec,
    gate_min_requests: u64,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
    fail_alpha: Option<(f64, bool)>,
) -> CriterionOutcome {
    let hold_early = fail_alpha.is_some_and(|(_, early)| early);
    let fail_alpha = fail_alpha.map(|(level, _)| level);
    // How the level of a statistical test is named in a reason.
    let at_level = |confidence: f64, level: f64| match fail_alpha {
        Some(_) => format!("this look's level (alpha {level:.1e})"),
        None => format!("{}% confidence", pct(confidence)),
    };
    let mut out = CriterionOutcome {
        name: spec.name.clone(),
        metric: metric_name(&spec.check),
        result: CriterionResult::NoData,
        observed: None,
        baseline: None,
        score: None,
        p_value: None,
        threshold: thresholds(&spec.check),
        ci_lower: None,
        ci_upper: None,
        alpha: None,
        // The sample sizes the statistics used (sampled spans, not adjusted counts).
        canary_requests: canary.sample().0,
        baseline_requests: baseline.map_or(0, |b| b.sample().0),
        points: None,
        series: None,
        baseline_points: None,
        unit: None,
        error_bound: None,
        reason: String::new(),
    };
    if let Err(e) = spec.validate() {
        out.reason = format!("{e}; no verdict from a misconfigured criterion");
        return out;
    }
    if let Check::Threshold {
        metric: Metric::Measured,
        comparison,
        pass,
        fail,
        direction,
    } = spec.check
    {
        // Before the request minimums on purpose: a measured value stands on the caller's data
        // points, and a service may export metrics and no spans at all.
        let direction = direction.unwrap_or(Metric::Measured.default_direction());
        measured(
            &mut out,
            &spec.name,
            comparison,
            (pass, fail),
            direction,
            canary,
            baseline,
        );
        return out;
    }
    let min = spec.min_requests.unwrap_or(gate_min_requests);
    if let Some(reason) = data_gap(spec, min, canary, baseline, window_seconds) {
        out.reason = reason;
        return out;
    }
    match spec.check {
        Check::Threshold {
            metric,
            comparison,
            pass,
            fail,
            direction,
        } => {
            let direction = direction.unwrap_or(metric.default_direction());
            threshold(
                &mut out,
                metric,
                comparison,
                (pass, fail),
                direction,
                canary,
                baseline,
                window_seconds,
            );
        }
        Check::MannWhitney {
            confidence,
            max_effect,
        } => {
            let baseline = baseline.expect("data_gap checked the baseline");
            let Some(t) = mann_whitney(&canary.sketch, &baseline.sketch) else {
                out.reason = "a cohort has no latency samples; no verdict without data".into();
                return out;
            };
            out.observed = canary.sketch.quantile(0.5).map(ns_to_ms);
            out.baseline = baseline.sketch.quantile(0.5).map(ns_to_ms);
            out.score = Some(t.effect);
            out.p_value = Some(t.p_value);
            let level = fail_alpha.unwrap_or(1.0 - confidence);
            out.alpha = Some(level);
            let significant = t.p_value < level;
            // Under an analysis the fail test runs at this look's share of the budget; before
            // the last look, a difference significant at the criterion's own confidence but not
            // past that boundary is not shown harmless either: it holds, it does not pass.
            let suggestive = hold_early && t.p_value < level.max(1.0 - confidence);
            let sup = format!(
                "canary latency exceeds baseline with probability {:.3} ({})",
                t.effect,
                fmt_p(t.p_value)
            );
            (out.result, out.reason) = if significant && t.effect > max_effect {
                (
                    CriterionResult::Fail,
                    format!("{sup}; significantly slower and above the {max_effect:.2} limit"),
                )
            } else if significant && t.effect > (0.5 + max_effect) / 2.0 {
                // Significant and more than halfway to the limit: worth a hold, not a rollback.
                (
                    CriterionResult::Marginal,
                    format!(
                        "{sup}; significantly slower, past halfway to the {max_effect:.2} limit"
                    ),
                )
            } else if suggestive && t.effect > (0.5 + max_effect) / 2.0 {
                (
                    CriterionResult::Marginal,
                    format!(
                        "{sup}; slower at {}% confidence but not past this look's boundary (alpha {level:.1e}): hold for more data",
                        pct(confidence)
                    ),
                )
            } else if significant {
                // With enough traffic any difference is significant; one this small is not a
                // reason to stop a rollout.
                (
                    CriterionResult::Pass,
                    format!(
                        "{sup}; significantly slower but by a negligible margin (limit {max_effect:.2})"
                    ),
                )
            } else {
                (
                    CriterionResult::Pass,
                    format!(
                        "{sup}; not significantly slower at {}",
                        at_level(confidence, level)
                    ),
                )
            };
        }
        Check::TwoProportion {
            confidence,
            max_difference,
        } => {
            let baseline = baseline.expect("data_gap checked the baseline");
            // The tests count what was sampled, not the adjusted counts.
            let ((n1, x1), (n2, x2)) = (canary.sample(), baseline.sample());
            let t = two_proportion(x1, n1, x2, n2)
                .expect("data_gap checked both cohorts have requests");
            // The exact conditional mid-p, not the z-test's: a handful of errors is where
            // the normal approximation claims significance it does not have.
            let p_value = rate_ratio_mid_p(x1, n1, x2, n2, 1.0)
                .expect("data_gap checked both cohorts have requests");
            out.observed = Some(t.canary_rate);
            out.baseline = Some(t.baseline_rate);
            out.score = Some(t.difference);
            out.p_value = Some(p_value);
            let level = fail_alpha.unwrap_or(1.0 - confidence);
            out.alpha = Some(level);
            let t = ProportionTest { p_value, ..t };
            let significant = t.p_value < level;
            let suggestive = hold_early && t.p_value < level.max(1.0 - confidence);
            let head = format!(
                "canary error rate {} vs baseline {} ({} points, {})",
                fmt_percent(t.canary_rate),
                fmt_percent(t.baseline_rate),
                fmt_points(t.difference),
                fmt_p(t.p_value)
            );
            let limit = fmt_points(max_difference);
            (out.result, out.reason) = if significant && t.difference > max_difference {
                (
                    CriterionResult::Fail,
                    format!("{head}; significantly higher and above the {limit} points limit"),
                )
            } else if significant && t.difference > max_difference / 2.0 {
                (
                    CriterionResult::Marginal,
                    format!("{head}; significantly higher, past half the {limit} points limit"),
                )
            } else if suggestive && t.difference > max_difference / 2.0 {
                (
                    CriterionResult::Marginal,
                    format!(
                        "{head}; higher at {}% confidence but not past this look's boundary (alpha {level:.1e}): hold for more data",
                        pct(confidence)
                    ),
                )
            } else if significant {
                (
                    CriterionResult::Pass,
                    format!(
                        "{head}; significantly higher but by a negligible margin (limit {limit} points)"
                    ),
                )
            } else {
                (
                    CriterionResult::Pass,
                    format!(
                        "{head}; not significantly higher at {}",
                        at_level(confidence, level)
                    ),
                )
            };
        }
        Check::Interval {
            metric,
            comparison,
            pass,
            fail,
            confidence,
            baseline_known,
        } => {
            let bounds = Bounds {
                metric,
                comparison,
                pass,
                fail,
                confidence,
                baseline_known,
                fail_alpha: fail_alpha.unwrap_or(1.0 - confidence),
            };
            judge(&mut out, &bounds, canary, baseline);
        }
    }
    out
}

/// The reason a criterion cannot be judged, or `None` when the data suffices.
fn data_gap(
    spec: &CriterionSpec,
    min: u64,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
) -> Option<String> {
    let thin = |who: &str, n: u64| {
        format!("{who} has {n} requests, fewer than the {min} required; no verdict on thin data")
    };
    if canary.sample().0 < min {
        return Some(thin("canary", canary.sample().0));
    }
    let needs_requests = match spec.check {
        Check::Threshold { metric, .. } => metric != Metric::RequestRate,
        _ => true,
    };
    let needs_latency = matches!(
        spec.check,
        Check::MannWhitney { .. }
            | Check::Threshold {
                metric: Metric::Latency { .. },
                ..
            }
            | Check::Interval {
                metric: Metric::Latency { .. },
                ..
            }
    );
    let cohorts: &[(&str, Option<&CohortData>)] = if spec.check.is_relative() {
        &[("canary", Some(canary)), ("baseline", baseline)]
    } else {
        &[("canary", Some(canary))]
    };
    for &(who, cohort) in cohorts {
        let Some(cohort) = cohort else {
            return Some(format!(
                "no baseline cohort, and criterion `{}` compares against one; no verdict without it",
                spec.name
            ));
        };
        if cohort.sample().0 < min {
            return Some(thin(who, cohort.sample().0));
        }
        if needs_requests && cohort.requests == 0 {
            return Some(format!("{who} has no requests; no verdict without data"));
        }
        if needs_latency && cohort.sketch.count() == 0 {
            return Some(format!(
                "{who} has no latency samples; no verdict without data"
            ));
        }
    }
    if matches!(
        spec.check,
        Check::Threshold {
            metric: Metric::RequestRate,
            ..
        }
    ) && window_seconds == 0
    {
        return Some("window is zero seconds long, so there is no request rate".into());
    }
    None
}

fn metric_value(metric: Metric, cohort: &CohortData, window_seconds: u64) -> f64 {
    match metric {
        Metric::ErrorRate => cohort.errors.min(cohort.requests) as f64 / cohort.requests as f64,
        Metric::Latency { quantile } => cohort
            .sketch
            .quantile(quantile)
            .map(ns_to_ms)
            .expect("data_gap checked the sketch is not empty"),
        Metric::RequestRate => {
            let seconds = cohort
                .observed_seconds
                .filter(|s| *s > 0)
                .unwrap_or(window_seconds);
            cohort.requests as f64 / seconds as f64
        }
        Metric::Measured => unreachable!("measured criteria are judged by `measured`"),
    }
}

#[allow(clippy::too_many_arguments)]
fn threshold(
    out: &mut CriterionOutcome,
    metric: Metric,
    comparison: Comparison,
    bounds: (f64, f64),
    direction: Direction,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    window_seconds: u64,
) {
    let observed = metric_value(metric, canary, window_seconds);
    let base = baseline
        .filter(|b| comparison != Comparison::Absolute || b.requests > 0)
        .filter(|b| !matches!(metric, Metric::Latency { .. }) || b.sketch.count() > 0)
        .map(|b| metric_value(metric, b, window_seconds));
    let reading = Reading {
        label: metric_label(metric),
        units: Units::Span(metric),
        observed,
        baseline: base,
        observed_note: String::new(),
        baseline_note: String::new(),
    };
    judge_threshold(out, &reading, comparison, bounds, direction);
}

/// Judges a [`Metric::Measured`] threshold on the numbers in the cohorts' `measured` maps.
/// Request counts play no part: a missing or empty measurement is `no_data` with the caller's
/// own sentence for why.
fn measured(
    out: &mut CriterionOutcome,
    name: &str,
    comparison: Comparison,
    bounds: (f64, f64),
    direction: Direction,
    canary: &CohortData,
    baseline: Option<&CohortData>,
) {
    let Some(c) = canary.measured.get(name) else {
        out.reason = format!(
            "criterion `{name}` measures a metric the caller did not measure; no verdict without data"
        );
        return;
    };
    if !c.label.is_empty() {
        out.metric = c.label.clone();
    }
    out.points = Some(c.points);
    out.series = Some(c.series);
    out.unit = Some(c.unit.clone());
    out.error_bound = c.error_bound;
    let label = if c.label.is_empty() {
        "measured value".to_string()
    } else {
        c.label.clone()
    };
    let observed = match measured_value(c, &label, "canary") {
        Ok(v) => v,
        Err(reason) => {
            out.reason = reason;
            return;
        }
    };
    out.observed = Some(observed);
    let base_entry = baseline.and_then(|b| b.measured.get(name));
    out.baseline_points = base_entry.map(|b| b.points);
    let base = match (comparison, baseline, base_entry) {
        // An absolute comparison shows a baseline value when there is one, and needs none.
        (Comparison::Absolute, _, b) => b.and_then(|b| measured_value(b, &label, "baseline").ok()),
        (_, None, _) => {
            out.reason = format!(
                "no baseline cohort, and criterion `{name}` compares against one; no verdict without it"
            );
            return;
        }
        (_, Some(_), None) => {
            out.reason = format!(
                "baseline: criterion `{name}` compares against the baseline's {label}, which the caller did not measure; no verdict without it"
            );
            return;
        }
        (_, Some(_), Some(b)) => match measured_value(b, &label, "baseline") {
            Ok(v) => Some(v),
            Err(reason) => {
                out.reason = reason;
                return;
            }
        },
    };
    let reading = Reading {
        label,
        units: Units::Measured(&c.unit),
        observed,
        baseline: base,
        observed_note: error_note(c.error_bound),
        baseline_note: error_note(base_entry.and_then(|b| b.error_bound)),
    };
    judge_threshold(out, &reading, comparison, bounds, direction);
}

/// A cohort's measured value, or why there is none (`who` is `canary` or `baseline`). NaN is
/// no data; infinities are judged like any other number.
fn measured_value(m: &Measured, label: &str, who: &str) -> Result<f64, String> {
    match m.value {
        Some(v) if v.is_nan() => Err(format!(
            "{who}: {label} is not a number; no verdict without data"
        )),
        Some(v) => Ok(v),
        None => Err(match m.gap.as_deref().map(str::trim) {
            Some(gap) if !gap.is_empty() => format!("{who}: {gap}"),
            _ => format!("{who}: {label} has no value; no verdict without data"),
        }),
    }
}

/// ` (±1.2% from the histogram buckets)` for a relative error bound of `0.012`.
fn error_note(bound: Option<f64>) -> String {
    bound.map_or(String::new(), |b| {
        format!(" (±{}% from the histogram buckets)", fmt_num(b * 100.0))
    })
}

/// The numbers a threshold is judged on and how its reason writes them.
struct Reading<'a> {
    label: String,
    units: Units<'a>,
    observed: f64,
    baseline: Option<f64>,
    /// Written after the canary's value (a measured value's error bound).
    observed_note: String,
    /// Written after the baseline's value.
    baseline_note: String,
}

/// How a threshold's values and differences are written.
#[derive(Clone, Copy)]
enum Units<'a> {
    /// A span metric in its own unit (percent, ms, req/s).
    Span(Metric),
    /// A measured value in the caller's display unit.
    Measured(&'a str),
}

impl Units<'_> {
    fn value(self, v: f64) -> String {
        match self {
            Units::Span(metric) => fmt_value(metric, v),
            Units::Measured(unit) => with_unit(fmt_num(v), unit),
        }
    }

    /// An unsigned magnitude of a difference.
    fn delta(self, v: f64) -> String {
        match self {
            Units::Span(metric) => fmt_delta(metric, v),
            Units::Measured(unit) => with_unit(fmt_num(v), unit),
        }
    }

    fn delta_signed(self, v: f64) -> String {
        match self {
            Units::Span(metric) => fmt_delta_signed(metric, v),
            Units::Measured(unit) => with_unit(fmt_signed(v), unit),
        }
    }
}

/// Scores a reading against the bounds and writes the result and its reason into `out`; the
/// same rules for span metrics and measured values.
fn judge_threshold(
    out: &mut CriterionOutcome,
    r: &Reading,
    comparison: Comparison,
    (pass, fail): (f64, f64),
    direction: Direction,
) {
    let (observed, base, units) = (r.observed, r.baseline, r.units);
    out.observed = Some(observed);
    out.baseline = base;
    let (score, note) = match comparison {
        Comparison::Absolute => (observed, ""),
        Comparison::Difference => (observed - base.expect("relative has a baseline"), ""),
        Comparison::Ratio => match base.expect("relative has a baseline") {
            b if b != 0.0 => (observed / b, ""),
            _ if observed == 0.0 => (1.0, " (both are zero, taken as a ratio of 1)"),
            _ => (
                f64::INFINITY,
                " (the baseline is zero, so the ratio is infinite)",
            ),
        },
    };
    out.score = Some(score);
    out.result = match direction {
        Direction::LowerIsBetter if score <= pass => CriterionResult::Pass,
        Direction::LowerIsBetter if score > fail => CriterionResult::Fail,
        Direction::HigherIsBetter if score >= pass => CriterionResult::Pass,
        Direction::HigherIsBetter if score < fail => CriterionResult::Fail,
        _ => CriterionResult::Marginal,
    };
    let label = &r.label;
    let (on, bn) = (&r.observed_note, &r.baseline_note);
    let lower = direction == Direction::LowerIsBetter;
    let head = match (comparison, base) {
        (Comparison::Absolute, _) => format!("canary {label} {}{on}", units.value(observed)),
        (Comparison::Ratio, Some(b)) => {
            let rel = if score.is_infinite() {
                "infinitely above".to_string()
            } else if score >= 1.0 {
                format!("{:.0}% above", (score - 1.0) * 100.0)
            } else {
                format!("{:.0}% below", (1.0 - score) * 100.0)
            };
            format!(
                "canary {label} {}{on} is {rel} baseline {}{bn}{note}",
                units.value(observed),
                units.value(b)
            )
        }
        (Comparison::Difference, Some(b)) => format!(
            "canary {label} {}{on} is {} {} baseline {}{bn}",
            units.value(observed),
            units.delta(score.abs()),
            if score >= 0.0 { "above" } else { "below" },
            units.value(b)
        ),
        (_, None) => unreachable!("relative comparisons have a baseline"),
    };
    let bound = |v: f64| match comparison {
        Comparison::Absolute => units.value(v),
        Comparison::Ratio => format!("{:+.0}%", (v - 1.0) * 100.0),
        Comparison::Difference => units.delta_signed(v),
    };
    let (pass_at, fail_word) = if lower {
        ("up to", "above")
    } else {
        ("at least", "below")
    };
    out.reason = match (comparison, out.result) {
        (Comparison::Absolute, CriterionResult::Pass) => {
            format!("{head}; pass {pass_at} {}", bound(pass))
        }
        (Comparison::Absolute, CriterionResult::Fail) => {
            format!("{head} is {fail_word} the fail bound {}", bound(fail))
        }
        (Comparison::Absolute, _) => format!(
            "{head} is between the pass bound {} and the fail bound {}",
            bound(pass),
            bound(fail)
        ),
        (_, CriterionResult::Pass) => format!("{head}; pass {pass_at} {}", bound(pass)),
        (_, CriterionResult::Fail) => format!("{head}; fail {fail_word} {}", bound(fail)),
        (_, _) => format!(
            "{head}; pass {pass_at} {}, fail {fail_word} {}",
            bound(pass),
            bound(fail)
        ),
    };
}

fn metric_name(check: &Check) -> String {
    match check {
        Check::Threshold { metric, .. } => metric.name(),
        Check::Interval { metric, .. } => metric.name(),
        Check::MannWhitney { .. } => "latency_distribution".into(),
        Check::TwoProportion { .. } => "error_rate".into(),
    }
}

fn thresholds(check: &Check) -> Thresholds {
    match *check {
        Check::Threshold {
            comparison,
            pass,
            fail,
            ..
        } => Thresholds {
            pass,
            fail,
            comparison: comparison.name().into(),
            confidence: None,
        },
        Check::MannWhitney {
            confidence,
            max_effect,
        } => Thresholds {
            pass: max_effect,
            fail: max_effect,
            comparison: "mann_whitney".into(),
            confidence: Some(confidence),
        },
        Check::TwoProportion {
            confidence,
            max_difference,
        } => Thresholds {
            pass: max_difference,
            fail: max_difference,
            comparison: "two_proportion".into(),
            confidence: Some(confidence),
        },
        Check::Interval {
            comparison,
            pass,
            fail,
            confidence,
            ..
        } => Thresholds {
            pass,
            fail,
            comparison: comparison.name().into(),
            confidence: Some(confidence),
        },
    }
}

fn metric_label(metric: Metric) -> String {
    match metric {
        Metric::ErrorRate => "error rate".into(),
        Metric::RequestRate => "request rate".into(),
        Metric::Latency { quantile } => crate::spec::quantile_label(quantile),
        Metric::Measured => "measured value".into(),
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn fmt_value(metric: Metric, v: f64) -> String {
    match metric {
        Metric::ErrorRate => fmt_percent(v),
        Metric::Latency { .. } => format!("{v:.1} ms"),
        Metric::RequestRate => format!("{v:.2} req/s"),
        Metric::Measured => fmt_num(v),
    }
}

/// An unsigned magnitude of a difference.
fn fmt_delta(metric: Metric, v: f64) -> String {
    match metric {
        Metric::ErrorRate => format!("{:.2} points", v * 100.0),
        Metric::Latency { .. } => format!("{v:.1} ms"),
        Metric::RequestRate => format!("{v:.2} req/s"),
        Metric::Measured => fmt_num(v),
    }
}

fn fmt_delta_signed(metric: Metric, v: f64) -> String {
    match metric {
        Metric::ErrorRate => format!("{:+.2} points", v * 100.0),
        Metric::Latency { .. } => format!("{v:+.1} ms"),
        Metric::RequestRate => format!("{v:+.2} req/s"),
        Metric::Measured => fmt_signed(v),
    }
}

/// Up to 4 significant digits without trailing zeros (`612`, `0.031`, `189.3`, `1.2`);
/// numbers from 1,000 keep every integer digit (`123457`), very large or small ones go
/// scientific (`1.5e-7`).
fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞" } else { "-∞" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-6..12).contains(&magnitude) {
        let s = format!("{v:.3e}");
        let (mantissa, exponent) = s.split_once('e').expect("`{:e}` writes an exponent");
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (3 - magnitude).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// `+12`, `-0.5`: a difference with its sign.
fn fmt_signed(v: f64) -> String {
    let s = fmt_num(v);
    if s.starts_with('-') || v.is_nan() {
        s
    } else {
        format!("+{s}")
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A number with a measured value's display unit: `""` and `"1"` add nothing, `"%"` follows
/// the number directly, a UCUM annotation (`{jobs}`) loses its braces, others follow a space.
fn with_unit(n: String, unit: &str) -> String {
    let unit = unit.trim();
    let unit = unit
        .strip_prefix('{')
        .and_then(|u| u.strip_suffix('}'))
        .unwrap_or(unit);
    match unit {
        "" | "1" => n,
        "%" => format!("{n}%"),
        u => format!("{n} {u}"),
    }
}

fn fmt_percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn fmt_points(v: f64) -> String {
    format!("{:+.2}", v * 100.0)
}

fn fmt_p(p: f64) -> String {
    if p < 0.0001 {
        "p < 0.0001".into()
    } else {
        format!("p = {p:.4}")
    }
}

fn pct(confidence: f64) -> String {
    let s = format!("{:.2}", confidence * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_numbers_and_units() {
        // (value, unit, written, written as a signed difference)
        let table = [
            (612.0, "jobs", "612 jobs", "+612 jobs"),
            (0.031, "USD", "0.031 USD", "+0.031 USD"),
            (189.34, "ms", "189.3 ms", "+189.3 ms"),
            (212.0, "ms", "212 ms", "+212 ms"),
            (0.85, "1", "0.85", "+0.85"),
            (0.773_44, "", "0.7734", "+0.7734"),
            (87.5, "%", "87.5%", "+87.5%"),
            (12.0, "{request}", "12 request", "+12 request"),
            (123_456.7, "B", "123457 B", "+123457 B"),
            (999.96, "s", "1000 s", "+1000 s"),
            (-20.0, "jobs", "-20 jobs", "-20 jobs"),
            (0.0, "jobs", "0 jobs", "+0 jobs"),
            (1.5e-7, "s", "1.5e-7 s", "+1.5e-7 s"),
            (2.5e13, "", "2.5e13", "+2.5e13"),
            (f64::INFINITY, "", "∞", "+∞"),
        ];
        for (v, unit, want, signed) in table {
            let units = Units::Measured(unit);
            assert_eq!(
                (units.value(v), units.delta_signed(v)),
                (want.to_string(), signed.to_string()),
                "{v} {unit}"
            );
        }
    }
}
