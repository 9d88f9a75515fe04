//! Measured criteria: numbers the caller aggregated (from OTLP metrics) judged with the same
//! bands, comparisons, sustain and verdict rules as span criteria.

use std::collections::BTreeMap;

use super::{check, cohort, criterion, gate, look_gate, rounded};
use crate::*;
use CriterionResult::{Fail, Marginal, NoData, Pass};

const QUEUE: &str = r#"max(queue_depth{queue="jobs"})"#;
const HITS: &str = "cache_hits / cache_requests";
const P95: &str = "p95(http.server.request.duration)";

/// A measured value from 40 points over 2 series.
fn value(label: &str, unit: &str, v: f64) -> Measured {
    Measured {
        value: Some(v),
        label: label.into(),
        unit: unit.into(),
        points: 40,
        series: 2,
        ..Measured::default()
    }
}

/// No value, and the caller's sentence for why.
fn gap(label: &str, why: &str) -> Measured {
    Measured {
        label: label.into(),
        gap: (!why.is_empty()).then(|| why.into()),
        ..Measured::default()
    }
}

/// `base` with `entries` in its measured map.
fn with(base: CohortData, entries: &[(&str, Measured)]) -> CohortData {
    CohortData {
        measured: entries
            .iter()
            .map(|(name, m)| (name.to_string(), m.clone()))
            .collect(),
        ..base
    }
}

/// A cohort with no requests at all, only measured values.
fn only(entries: &[(&str, Measured)]) -> CohortData {
    with(CohortData::default(), entries)
}

fn measured(
    name: &str,
    comparison: Comparison,
    pass: f64,
    fail: f64,
    direction: Option<Direction>,
) -> CriterionSpec {
    criterion(
        name,
        Check::Threshold {
            metric: Metric::Measured,
            comparison,
            pass,
            fail,
            direction,
        },
    )
}

fn queue_abs() -> CriterionSpec {
    measured("queue", Comparison::Absolute, 400.0, 500.0, None)
}

fn hit_ratio() -> CriterionSpec {
    measured(
        "hits",
        Comparison::Absolute,
        0.85,
        0.80,
        Some(Direction::HigherIsBetter),
    )
}

#[test]
fn bands_and_comparisons() {
    let cost = measured("cost", Comparison::Absolute, 0.02, 0.05, None);
    let p95_ratio = measured("p95", Comparison::Ratio, 1.1, 1.3, None);
    let queue_diff = measured("queue", Comparison::Difference, 50.0, 100.0, None);
    let queue_ratio = measured("queue", Comparison::Ratio, 1.5, 3.0, None);
    let cpu = measured(
        "cpu",
        Comparison::Absolute,
        85.0,
        70.0,
        Some(Direction::HigherIsBetter),
    );
    let p95 = |v, bound| Measured {
        error_bound: bound,
        ..value(P95, "ms", v)
    };
    // (criterion, canary, baseline, result, score, reason)
    type Case = (
        CriterionSpec,
        Measured,
        Option<Measured>,
        CriterionResult,
        f64,
        &'static str,
    );
    let table: Vec<Case> = vec![
        // Lower is better by default: pass up to 400, fail above 500.
        (
            queue_abs(),
            value(QUEUE, "jobs", 612.0),
            None,
            Fail,
            612.0,
            r#"canary max(queue_depth{queue="jobs"}) 612 jobs is above the fail bound 500 jobs"#,
        ),
        (
            queue_abs(),
            value(QUEUE, "jobs", 500.0),
            None,
            Marginal,
            500.0,
            r#"canary max(queue_depth{queue="jobs"}) 500 jobs is between the pass bound 400 jobs and the fail bound 500 jobs"#,
        ),
        (
            queue_abs(),
            value(QUEUE, "{jobs}", 400.0),
            None,
            Pass,
            400.0,
            r#"canary max(queue_depth{queue="jobs"}) 400 jobs; pass up to 400 jobs"#,
        ),
        (
            cost,
            value("cost per request", "USD", 0.031),
            None,
            Marginal,
            0.031,
            "canary cost per request 0.031 USD is between the pass bound 0.02 USD and the fail bound 0.05 USD",
        ),
        // Higher is better when the spec says so: a cache hit ratio, pass ≥ 0.85, fail < 0.80.
        (
            hit_ratio(),
            value(HITS, "1", 0.91),
            None,
            Pass,
            0.91,
            "canary cache_hits / cache_requests 0.91; pass at least 0.85",
        ),
        (
            hit_ratio(),
            value(HITS, "1", 0.85),
            None,
            Pass,
            0.85,
            "canary cache_hits / cache_requests 0.85; pass at least 0.85",
        ),
        (
            hit_ratio(),
            value(HITS, "1", 0.8),
            None,
            Marginal,
            0.8,
            "canary cache_hits / cache_requests 0.8 is between the pass bound 0.85 and the fail bound 0.8",
        ),
        (
            hit_ratio(),
            value(HITS, "", 0.773_44),
            Some(value(HITS, "", 0.9)),
            Fail,
            0.773_44,
            "canary cache_hits / cache_requests 0.7734 is below the fail bound 0.8",
        ),
        (
            cpu,
            value("cpu idle", "%", 87.5),
            None,
            Pass,
            87.5,
            "canary cpu idle 87.5%; pass at least 85%",
        ),
        // Ratio to the baseline, with the histogram error bounds in the sentence.
        (
            p95_ratio.clone(),
            p95(212.0, Some(0.012)),
            Some(p95(189.3, Some(0.008))),
            Marginal,
            212.0 / 189.3,
            "canary p95(http.server.request.duration) 212 ms (±1.2% from the histogram buckets) is 12% above baseline 189.3 ms (±0.8% from the histogram buckets); pass up to +10%, fail above +30%",
        ),
        (
            p95_ratio.clone(),
            p95(260.0, None),
            Some(p95(189.3, None)),
            Fail,
            260.0 / 189.3,
            "canary p95(http.server.request.duration) 260 ms is 37% above baseline 189.3 ms; fail above +30%",
        ),
        (
            p95_ratio,
            p95(180.26, None),
            Some(p95(189.3, None)),
            Pass,
            180.26 / 189.3,
            "canary p95(http.server.request.duration) 180.3 ms is 5% below baseline 189.3 ms; pass up to +10%",
        ),
        // Difference from the baseline, in the value's unit.
        (
            queue_diff.clone(),
            value(QUEUE, "jobs", 612.0),
            Some(value(QUEUE, "jobs", 500.0)),
            Fail,
            112.0,
            r#"canary max(queue_depth{queue="jobs"}) 612 jobs is 112 jobs above baseline 500 jobs; fail above +100 jobs"#,
        ),
        (
            queue_diff.clone(),
            value(QUEUE, "jobs", 570.0),
            Some(value(QUEUE, "jobs", 500.0)),
            Marginal,
            70.0,
            r#"canary max(queue_depth{queue="jobs"}) 570 jobs is 70 jobs above baseline 500 jobs; pass up to +50 jobs, fail above +100 jobs"#,
        ),
        (
            queue_diff,
            value(QUEUE, "jobs", 480.0),
            Some(value(QUEUE, "jobs", 500.0)),
            Pass,
            -20.0,
            r#"canary max(queue_depth{queue="jobs"}) 480 jobs is 20 jobs below baseline 500 jobs; pass up to +50 jobs"#,
        ),
        // A ratio over a zero baseline: infinite above zero, 1 when both are zero.
        (
            queue_ratio.clone(),
            value(QUEUE, "jobs", 3.0),
            Some(value(QUEUE, "jobs", 0.0)),
            Fail,
            f64::INFINITY,
            r#"canary max(queue_depth{queue="jobs"}) 3 jobs is infinitely above baseline 0 jobs (the baseline is zero, so the ratio is infinite); fail above +200%"#,
        ),
        (
            queue_ratio,
            value(QUEUE, "jobs", 0.0),
            Some(value(QUEUE, "jobs", 0.0)),
            Pass,
            1.0,
            r#"canary max(queue_depth{queue="jobs"}) 0 jobs is 0% above baseline 0 jobs (both are zero, taken as a ratio of 1); pass up to +50%"#,
        ),
    ];
    for (spec, canary, baseline, want, score, reason) in table {
        let name = spec.name.clone();
        let canary_data = only(&[(&name, canary.clone())]);
        let baseline_data = baseline.as_ref().map(|b| only(&[(&name, b.clone())]));
        let e = evaluate(&gate(vec![spec]), &canary_data, baseline_data.as_ref(), 600);
        let c = &e.criteria[0];
        let what = format!("{canary:?} vs {baseline:?}: {c:#?}");
        assert_eq!(
            (c.result, c.score, c.reason.as_str()),
            (want, Some(score), reason),
            "{what}"
        );
        assert_eq!(
            (c.metric.as_str(), c.observed, c.baseline),
            (
                canary.label.as_str(),
                canary.value,
                baseline.and_then(|b| b.value)
            ),
            "{what}"
        );
        assert_eq!(
            (c.points, c.series, c.unit.as_deref(), c.error_bound),
            (
                Some(40),
                Some(2),
                Some(canary.unit.as_str()),
                canary.error_bound
            ),
            "{what}"
        );
        // Thresholds spend nothing and report no statistics.
        assert_eq!(
            (c.p_value, c.alpha, c.ci_lower),
            (None, None, None),
            "{what}"
        );
    }
}

#[test]
fn no_data_is_never_a_pass() {
    let ratio = measured("queue", Comparison::Ratio, 1.5, 3.0, None);
    let fine = || value(QUEUE, "jobs", 100.0);
    // (criterion, canary, baseline, metric in the outcome, reason)
    type Case = (
        CriterionSpec,
        CohortData,
        Option<CohortData>,
        &'static str,
        &'static str,
    );
    let table: Vec<Case> = vec![
        (
            queue_abs(),
            only(&[("other", fine())]),
            None,
            "measured",
            "criterion `queue` measures a metric the caller did not measure; no verdict without data",
        ),
        (
            queue_abs(),
            only(&[(
                "queue",
                gap(QUEUE, "no queue_depth points arrived in the last 600s"),
            )]),
            None,
            QUEUE,
            "canary: no queue_depth points arrived in the last 600s",
        ),
        (
            queue_abs(),
            only(&[("queue", gap(QUEUE, ""))]),
            None,
            QUEUE,
            r#"canary: max(queue_depth{queue="jobs"}) has no value; no verdict without data"#,
        ),
        (
            queue_abs(),
            only(&[("queue", value(QUEUE, "jobs", f64::NAN))]),
            None,
            QUEUE,
            r#"canary: max(queue_depth{queue="jobs"}) is not a number; no verdict without data"#,
        ),
        (
            queue_abs(),
            only(&[("queue", value("", "jobs", f64::NAN))]),
            None,
            "measured",
            "canary: measured value is not a number; no verdict without data",
        ),
        // Plenty of requests do not stand in for a measurement.
        (
            queue_abs(),
            cohort(3000, 0, 1.0, 1),
            Some(only(&[("queue", fine())])),
            "measured",
            "criterion `queue` measures a metric the caller did not measure; no verdict without data",
        ),
        (
            ratio.clone(),
            only(&[("queue", fine())]),
            None,
            QUEUE,
            "no baseline cohort, and criterion `queue` compares against one; no verdict without it",
        ),
        (
            ratio.clone(),
            only(&[("queue", fine())]),
            Some(cohort(3000, 0, 1.0, 1)),
            QUEUE,
            r#"baseline: criterion `queue` compares against the baseline's max(queue_depth{queue="jobs"}), which the caller did not measure; no verdict without it"#,
        ),
        (
            ratio,
            only(&[("queue", fine())]),
            Some(only(&[(
                "queue",
                gap(QUEUE, "no baseline pod exported queue_depth"),
            )])),
            QUEUE,
            "baseline: no baseline pod exported queue_depth",
        ),
        (
            measured("queue", Comparison::Difference, 50.0, 100.0, None),
            only(&[("queue", fine())]),
            Some(only(&[("queue", value(QUEUE, "jobs", f64::NAN))])),
            QUEUE,
            r#"baseline: max(queue_depth{queue="jobs"}) is not a number; no verdict without data"#,
        ),
    ];
    for (spec, canary, baseline, metric, reason) in table {
        let e = evaluate(&gate(vec![spec]), &canary, baseline.as_ref(), 600);
        let c = &e.criteria[0];
        assert_eq!(
            (e.verdict, c.result, c.metric.as_str(), c.reason.as_str()),
            (Verdict::Inconclusive, NoData, metric, reason),
            "{c:#?}"
        );
    }
}

#[test]
fn requests_do_not_gate_measured_criteria() {
    use Decision::{Hold, Proceed, Rollback};
    use Verdict::Inconclusive;
    let mut strict_queue = queue_abs();
    strict_queue.min_requests = Some(10_000);
    let mixed = gate(vec![super::p95_ratio(), queue_abs()]);
    let measured_only = gate(vec![strict_queue, hit_ratio()]);
    let good = [
        ("queue", value(QUEUE, "jobs", 120.0)),
        ("hits", value(HITS, "1", 0.93)),
    ];
    let bad_queue = [
        ("queue", value(QUEUE, "jobs", 900.0)),
        ("hits", value(HITS, "1", 0.93)),
    ];
    let no_hits = [
        ("queue", value(QUEUE, "jobs", 120.0)),
        ("hits", gap(HITS, "no cache_requests points in the window")),
    ];
    let traffic = |seed| cohort(3000, 0, 1.0, seed);
    let table: Vec<(&str, &GateSpec, CohortData, Option<CohortData>, super::Want)> = vec![
        (
            "mixed, traffic on both sides",
            &mixed,
            with(traffic(2), &good),
            Some(with(traffic(1), &good)),
            (Verdict::Pass, Proceed, &[Pass, Pass]),
        ),
        // The span criterion has no requests to judge: it holds the gate, the measured one
        // still passes on its own data.
        (
            "mixed, no spans",
            &mixed,
            only(&good),
            Some(only(&good)),
            (Inconclusive, Hold, &[NoData, Pass]),
        ),
        (
            "mixed, no spans, measured fail wins",
            &mixed,
            only(&bad_queue),
            Some(only(&good)),
            (Verdict::Fail, Rollback, &[NoData, Fail]),
        ),
        // Below the gate's 200 and the criterion's 10,000 requests: neither applies.
        (
            "measured only, zero requests",
            &measured_only,
            only(&good),
            None,
            (Verdict::Pass, Proceed, &[Pass, Pass]),
        ),
        (
            "measured only, one value missing",
            &measured_only,
            only(&no_hits),
            None,
            (Inconclusive, Hold, &[Pass, NoData]),
        ),
        (
            "measured only, one fails",
            &measured_only,
            only(&bad_queue),
            None,
            (Verdict::Fail, Rollback, &[Fail, Pass]),
        ),
    ];
    for (what, spec, canary, baseline, want) in table {
        check(what, spec, &canary, baseline.as_ref(), want);
    }
}

#[test]
fn looks_spend_nothing_on_measured_thresholds() {
    let base = cohort(3000, 15, 1.0, 1);
    let canary = cohort(3000, 15, 1.0, 2);
    let good = [("queue", value(QUEUE, "jobs", 120.0))];
    let mut with_queue = look_gate();
    with_queue.criteria.push(queue_abs());
    let only_queue = gate(vec![queue_abs()]);
    // (gate, criteria that are statistical tests)
    for (spec, tested) in [(look_gate(), 2), (with_queue, 2), (only_queue, 0)] {
        let e = evaluate_look(
            &spec,
            &Analysis::new(10, 10, 0.01),
            &with(canary.clone(), &good),
            Some(&with(base.clone(), &good)),
            600,
        );
        let look = e.look.as_ref().expect("a look report");
        assert_eq!((look.tested, look.rejected), (tested, 0), "{e:#?}");
        assert_eq!(e.verdict, Verdict::Pass, "{e:#?}");
        for c in e.criteria.iter().filter(|c| c.metric == QUEUE) {
            assert_eq!((c.result, c.alpha, c.p_value), (Pass, None, None), "{c:#?}");
        }
    }
}

#[test]
fn sustained_measured_failure_holds_then_fails() {
    let mut c = queue_abs();
    c.sustained_seconds = Some(300);
    let spec = gate(vec![c]);
    let deep = only(&[("queue", value(QUEUE, "jobs", 612.0))]);
    let mut states = BTreeMap::new();
    let raw = r#"canary max(queue_depth{queue="jobs"}) 612 jobs is above the fail bound 500 jobs"#;
    // (now, result, reason)
    let table = [
        (
            1000,
            Marginal,
            format!("{raw}; failing for 0s of the 300s required before it counts"),
        ),
        (
            1150,
            Marginal,
            format!("{raw}; failing for 150s of the 300s required before it counts"),
        ),
        (
            1299,
            Marginal,
            format!("{raw}; failing for 299s of the 300s required before it counts"),
        ),
        (1300, Fail, raw.to_string()),
        (1400, Fail, raw.to_string()),
    ];
    for (now, want, reason) in table {
        let mut e = evaluate(&spec, &deep, None, 600);
        e.sustain(&spec, &mut states, now);
        let verdict = if want == Fail {
            Verdict::Fail
        } else {
            Verdict::Inconclusive
        };
        assert_eq!(
            (
                e.verdict,
                e.criteria[0].result,
                e.criteria[0].reason.as_str()
            ),
            (verdict, want, reason.as_str()),
            "at {now}"
        );
    }
    assert_eq!(states["queue"].failing_since, Some(1000));
    // A passing value ends the run.
    let shallow = only(&[("queue", value(QUEUE, "jobs", 10.0))]);
    let mut e = evaluate(&spec, &shallow, None, 600);
    e.sustain(&spec, &mut states, 1460);
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(states["queue"], Sustain::default());
}

#[test]
fn interval_on_a_measured_metric_is_rejected() {
    let spec = gate(vec![criterion(
        "queue",
        Check::Interval {
            metric: Metric::Measured,
            comparison: Comparison::Absolute,
            pass: 400.0,
            fail: 500.0,
            confidence: 0.95,
            baseline_known: false,
        },
    )]);
    assert_eq!(
        spec.validate().map_err(|e| e.to_string()),
        Err("criterion `queue`: confidence bounds need request data; a measured metric is judged on its value".into())
    );
    // Should it reach `evaluate` anyway, it is no data, never a pass.
    let canary = with(
        cohort(3000, 0, 1.0, 1),
        &[("queue", value(QUEUE, "jobs", 1.0))],
    );
    let e = evaluate(&spec, &canary, None, 600);
    assert_eq!(
        (e.verdict, e.criteria[0].result),
        (Verdict::Inconclusive, NoData)
    );
    assert_eq!(
        e.reasons,
        [
            "criterion `queue`: confidence bounds need request data; a measured metric is judged on its value; no verdict from a misconfigured criterion"
        ]
    );
}

#[test]
fn measured_evaluation_round_trips_and_snapshots() {
    let spec = gate(vec![
        super::error_abs(),
        queue_abs(),
        hit_ratio(),
        measured("p95", Comparison::Ratio, 1.1, 1.3, None),
    ]);
    let p95 = |v| Measured {
        points: 120,
        series: 6,
        error_bound: Some(0.012),
        ..value(P95, "ms", v)
    };
    let canary = with(
        cohort(3000, 15, 1.0, 2),
        &[
            ("queue", value(QUEUE, "jobs", 612.0)),
            ("hits", gap(HITS, "no cache_requests points in the window")),
            ("p95", p95(212.0)),
        ],
    );
    let baseline = with(cohort(3000, 15, 1.0, 1), &[("p95", p95(189.3))]);
    let e = evaluate(&spec, &canary, Some(&baseline), 600);
    let results: Vec<_> = e.criteria.iter().map(|c| c.result).collect();
    assert_eq!(results, [Pass, Fail, NoData, Marginal]);
    let json = serde_json::to_value(&e).unwrap();
    // Span outcomes carry none of the measured fields.
    for key in ["points", "series", "baseline_points", "unit", "error_bound"] {
        assert!(json["criteria"][0].get(key).is_none(), "{key}");
    }
    assert_eq!(json["criteria"][3]["baseline_points"], 120);
    // A client parses the verdict document back (equal up to float printing).
    let back: Evaluation = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(
        rounded(serde_json::to_value(&back).unwrap()),
        rounded(json.clone())
    );
    assert_eq!(
        (back.criteria[3].points, back.criteria[3].series),
        (Some(120), Some(6))
    );
    assert_eq!(back.criteria[3].unit.as_deref(), Some("ms"));
    assert_eq!(back.criteria[3].baseline_points, Some(120));
    assert_eq!(back.criteria[3].error_bound, Some(0.012));
    insta::assert_json_snapshot!(rounded(json));
}
