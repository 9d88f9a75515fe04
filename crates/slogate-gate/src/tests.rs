//! Scenario tests: whole gates evaluated against synthetic cohorts.

mod measured;

use std::collections::BTreeMap;

use crate::stats::tests::{lognormal_ns, sketch_of};
use crate::*;
use CriterionResult::{Fail, Marginal, NoData, Pass};

/// A cohort with `requests` requests, `errors` errors and latencies lognormal around
/// `100 ms × scale`.
fn cohort(requests: u64, errors: u64, scale: f64, seed: u64) -> CohortData {
    CohortData {
        requests,
        errors,
        sketch: sketch_of(&lognormal_ns(seed, requests as usize, scale)),
        observed_seconds: None,
        ..Default::default()
    }
}

fn criterion(name: &str, check: Check) -> CriterionSpec {
    CriterionSpec {
        name: name.into(),
        check,
        min_requests: None,
        sustained_seconds: None,
    }
}

fn p95_ratio() -> CriterionSpec {
    criterion(
        "p95-vs-baseline",
        Check::Threshold {
            metric: Metric::Latency { quantile: 0.95 },
            comparison: Comparison::Ratio,
            pass: 1.1,
            fail: 1.3,
            direction: None,
        },
    )
}

fn error_abs() -> CriterionSpec {
    criterion(
        "error-rate",
        Check::Threshold {
            metric: Metric::ErrorRate,
            comparison: Comparison::Absolute,
            pass: 0.02,
            fail: 0.05,
            direction: None,
        },
    )
}

fn gate(criteria: Vec<CriterionSpec>) -> GateSpec {
    GateSpec {
        name: "checkout".into(),
        min_requests: 200,
        criteria,
    }
}

/// Expected verdict, decision and per-criterion results.
type Want<'a> = (Verdict, Decision, &'a [CriterionResult]);

fn check(
    what: &str,
    spec: &GateSpec,
    canary: &CohortData,
    baseline: Option<&CohortData>,
    want: Want,
) {
    let e = evaluate(spec, canary, baseline, 600);
    let results: Vec<_> = e.criteria.iter().map(|c| c.result).collect();
    assert_eq!(
        (e.verdict, e.decision, results.as_slice()),
        want,
        "{what}: {e:#?}"
    );
    let not_passing = e.criteria.iter().filter(|c| c.result != Pass).count();
    assert_eq!(
        e.reasons.len(),
        not_passing.max(usize::from(e.criteria.is_empty())),
        "{what}"
    );
}

#[test]
fn scenarios() {
    use Decision::{Hold, Proceed, Rollback};
    use Verdict::Inconclusive;
    let base = cohort(3000, 15, 1.0, 1);
    let healthy = cohort(3000, 12, 1.0, 2);
    let slow = cohort(3000, 12, 1.4, 3);
    let erroring = cohort(3000, 90, 1.0, 4); // 3%
    let thin = cohort(12, 0, 1.0, 5);
    let bad = cohort(3000, 300, 1.0, 6); // 10% errors
    let both = gate(vec![p95_ratio(), error_abs()]);
    let table: Vec<(&str, GateSpec, &CohortData, Option<&CohortData>, Want)> = vec![
        (
            "healthy canary",
            both.clone(),
            &healthy,
            Some(&base),
            (Verdict::Pass, Proceed, &[Pass, Pass]),
        ),
        (
            "p95 +40% vs ratio 1.1/1.3",
            both.clone(),
            &slow,
            Some(&base),
            (Verdict::Fail, Rollback, &[Fail, Pass]),
        ),
        (
            "error rate 3% vs 2%/5%",
            both.clone(),
            &erroring,
            Some(&base),
            (Inconclusive, Hold, &[Pass, Marginal]),
        ),
        (
            "too few canary requests",
            both.clone(),
            &thin,
            Some(&base),
            (Inconclusive, Hold, &[NoData, NoData]),
        ),
        (
            "baseline missing, canary perfect",
            gate(vec![p95_ratio()]),
            &healthy,
            None,
            (Inconclusive, Hold, &[NoData]),
        ),
        (
            "baseline missing, absolute still judged",
            both.clone(),
            &healthy,
            None,
            (Inconclusive, Hold, &[NoData, Pass]),
        ),
        (
            "baseline thin",
            both.clone(),
            &healthy,
            Some(&thin),
            (Inconclusive, Hold, &[NoData, Pass]),
        ),
        (
            "fail + no_data → fail",
            both.clone(),
            &bad,
            None,
            (Verdict::Fail, Rollback, &[NoData, Fail]),
        ),
        (
            "no criteria",
            gate(vec![]),
            &healthy,
            Some(&base),
            (Inconclusive, Hold, &[]),
        ),
    ];
    for (what, spec, canary, baseline, want) in table {
        check(what, &spec, canary, baseline, want);
    }
}

#[test]
fn reasons_read_as_sentences() {
    let base = cohort(3000, 15, 1.0, 1);
    let spec = gate(vec![p95_ratio(), error_abs()]);
    let table: Vec<(CohortData, Option<&CohortData>, usize, &str)> = vec![
        (
            cohort(12, 0, 1.0, 5),
            Some(&base),
            0,
            "canary has 12 requests, fewer than the 200 required; no verdict on thin data",
        ),
        (
            cohort(3000, 0, 1.0, 2),
            None,
            0,
            "no baseline cohort, and criterion `p95-vs-baseline` compares against one; no verdict without it",
        ),
        (
            cohort(3000, 90, 1.0, 4),
            Some(&base),
            1,
            "canary error rate 3.00% is between the pass bound 2.00% and the fail bound 5.00%",
        ),
        (
            cohort(3000, 300, 1.0, 4),
            Some(&base),
            1,
            "canary error rate 10.00% is above the fail bound 5.00%",
        ),
    ];
    for (canary, baseline, idx, want) in table {
        let e = evaluate(&spec, &canary, baseline, 600);
        assert_eq!(e.criteria[idx].reason, want);
    }
    // The ratio sentence carries numbers from sketches; check its shape.
    let e = evaluate(&spec, &cohort(3000, 0, 1.4, 3), Some(&base), 600);
    let r = &e.criteria[0].reason;
    assert!(
        r.starts_with("canary p95 ")
            && r.contains("% above baseline ")
            && r.ends_with("; fail above +30%"),
        "{r}"
    );
}

#[test]
fn zero_baseline_ratio() {
    let spec = gate(vec![criterion(
        "errors-vs-baseline",
        Check::Threshold {
            metric: Metric::ErrorRate,
            comparison: Comparison::Ratio,
            pass: 1.5,
            fail: 3.0,
            direction: None,
        },
    )]);
    let base = cohort(1000, 0, 1.0, 1);
    // (canary errors, result, score, reason contains)
    let table = [
        (
            5,
            Fail,
            f64::INFINITY,
            "the baseline is zero, so the ratio is infinite",
        ),
        (0, Pass, 1.0, "both are zero, taken as a ratio of 1"),
    ];
    for (errors, want, score, phrase) in table {
        let e = evaluate(&spec, &cohort(1000, errors, 1.0, 2), Some(&base), 60);
        let c = &e.criteria[0];
        assert_eq!((c.result, c.score), (want, Some(score)), "{c:#?}");
        assert!(c.reason.contains(phrase), "{}", c.reason);
    }
}

#[test]
fn difference_and_higher_is_better() {
    let base = cohort(1000, 5, 1.0, 1); // 0.5%
    let diff = |pass, fail| {
        criterion(
            "err-diff",
            Check::Threshold {
                metric: Metric::ErrorRate,
                comparison: Comparison::Difference,
                pass,
                fail,
                direction: None,
            },
        )
    };
    let rate = |pass, fail| {
        criterion(
            "rps",
            Check::Threshold {
                metric: Metric::RequestRate,
                comparison: Comparison::Absolute,
                pass,
                fail,
                direction: None,
            },
        )
    };
    // canary 1000 requests over 100 s = 10 req/s, 15 errors = 1.5% (+1.0 point).
    let canary = cohort(1000, 15, 1.0, 2);
    let table = [
        (
            diff(0.005, 0.02),
            Marginal,
            "canary error rate 1.50% is 1.00 points above baseline 0.50%; pass up to +0.50 points, fail above +2.00 points",
        ),
        (
            diff(0.002, 0.005),
            Fail,
            "canary error rate 1.50% is 1.00 points above baseline 0.50%; fail above +0.50 points",
        ),
        (
            diff(0.01, 0.02),
            Pass,
            "canary error rate 1.50% is 1.00 points above baseline 0.50%; pass up to +1.00 points",
        ),
        (
            rate(5.0, 1.0),
            Pass,
            "canary request rate 10.00 req/s; pass at least 5.00 req/s",
        ),
        (
            rate(20.0, 5.0),
            Marginal,
            "canary request rate 10.00 req/s is between the pass bound 20.00 req/s and the fail bound 5.00 req/s",
        ),
        (
            rate(50.0, 20.0),
            Fail,
            "canary request rate 10.00 req/s is below the fail bound 20.00 req/s",
        ),
    ];
    for (c, want, reason) in table {
        let e = evaluate(&gate(vec![c]), &canary, Some(&base), 100);
        assert_eq!(
            (e.criteria[0].result, e.criteria[0].reason.as_str()),
            (want, reason)
        );
    }
}

fn mann_whitney_gate() -> GateSpec {
    gate(vec![criterion(
        "latency-shift",
        Check::MannWhitney {
            confidence: 0.95,
            max_effect: 0.6,
        },
    )])
}

#[test]
fn mann_whitney_a_a_rarely_fails() {
    let spec = mann_whitney_gate();
    let fails = (0..100u64)
        .filter(|seed| {
            let a = cohort(3000, 0, 1.0, 10_000 + seed);
            let b = cohort(3000, 0, 1.0, 20_000 + seed);
            evaluate(&spec, &a, Some(&b), 600).verdict == Verdict::Fail
        })
        .count();
    assert!(fails <= 5, "{fails} of 100 A/A gates failed");
}

#[test]
fn mann_whitney_outcomes() {
    let spec = mann_whitney_gate();
    let base = cohort(3000, 0, 1.0, 1);
    // (canary scale, result): +20% fails; +8% is significant and past halfway to the limit;
    // +3% is significant with 3000 samples but negligible; faster is a pass.
    let table = [(1.2, Fail), (1.08, Marginal), (1.03, Pass), (0.9, Pass)];
    for (scale, want) in table {
        let e = evaluate(&spec, &cohort(3000, 0, scale, 2), Some(&base), 600);
        assert_eq!(
            e.criteria[0].result, want,
            "scale {scale}: {:#?}",
            e.criteria[0]
        );
    }
}

#[test]
fn two_proportion_outcomes() {
    let spec = |max_difference| {
        gate(vec![criterion(
            "errors-z",
            Check::TwoProportion {
                confidence: 0.95,
                max_difference,
            },
        )])
    };
    let base = cohort(1000, 15, 1.0, 1);
    // 30/1000 vs 15/1000: conditional on 45 errors, the canary's share is binomial(45, ½),
    // mid-p 0.0129 (the z-test said 0.012); difference 0.015.
    let table = [
        (30, 0.01, Fail),
        (30, 0.02, Marginal),
        (20, 0.01, Pass), // mid-p 0.203 on 35 errors: not significant
    ];
    for (errors, max_difference, want) in table {
        let e = evaluate(
            &spec(max_difference),
            &cohort(1000, errors, 1.0, 2),
            Some(&base),
            600,
        );
        assert_eq!(e.criteria[0].result, want, "{:#?}", e.criteria[0]);
    }
}

#[test]
fn sustained_failure_holds_then_fails() {
    let mut c = p95_ratio();
    c.sustained_seconds = Some(120);
    let spec = gate(vec![c]);
    let base = cohort(3000, 0, 1.0, 1);
    let slow = cohort(3000, 0, 1.4, 2);
    let mut states = BTreeMap::new();
    for (now, want) in [
        (1000, Verdict::Inconclusive),
        (1060, Verdict::Inconclusive),
        (1120, Verdict::Fail),
    ] {
        let mut e = evaluate(&spec, &slow, Some(&base), 600);
        e.sustain(&spec, &mut states, now);
        assert_eq!(e.verdict, want, "at {now}: {e:#?}");
    }
    let mut e = evaluate(&spec, &cohort(3000, 0, 1.0, 3), Some(&base), 600);
    e.sustain(&spec, &mut states, 1180);
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(states["p95-vs-baseline"], Sustain::default());
}

#[test]
fn misconfigured_criterion_is_no_data() {
    let mut c = error_abs();
    c.check = Check::Threshold {
        metric: Metric::ErrorRate,
        comparison: Comparison::Absolute,
        pass: 0.05,
        fail: 0.02,
        direction: None,
    };
    let e = evaluate(&gate(vec![c]), &cohort(3000, 0, 1.0, 1), None, 600);
    assert_eq!(e.verdict, Verdict::Inconclusive);
    assert!(
        e.reasons[0].ends_with("no verdict from a misconfigured criterion"),
        "{:?}",
        e.reasons
    );
}

#[test]
fn evaluation_snapshot() {
    let mut errors_z = criterion(
        "errors-z",
        Check::TwoProportion {
            confidence: 0.95,
            max_difference: 0.01,
        },
    );
    errors_z.min_requests = Some(500);
    let spec = gate(vec![
        p95_ratio(),
        error_abs(),
        criterion(
            "latency-shift",
            Check::MannWhitney {
                confidence: 0.95,
                max_effect: 0.6,
            },
        ),
        errors_z,
    ]);
    let e = evaluate(
        &spec,
        &cohort(3000, 75, 1.4, 2),
        Some(&cohort(3000, 15, 1.0, 1)),
        600,
    );
    // Rounded so the snapshot does not hinge on the last bits of `exp`/`sqrt` on a platform;
    // p-values far below any confidence level become 0.
    insta::assert_json_snapshot!(rounded(serde_json::to_value(&e).unwrap()));
}

/// Every number to 6 significant digits, magnitudes below 1e-9 to 0.
fn rounded(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            let r = if x.abs() < 1e-9 {
                0.0
            } else {
                let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
                (x * scale).round() / scale
            };
            serde_json::json!(r)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        other => other,
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

#[test]
fn interval_outcomes() {
    let p95 = Metric::Latency { quantile: 0.95 };
    let p99 = Metric::Latency { quantile: 0.99 };
    let base = cohort(3000, 15, 1.0, 1);
    let known = Check::Interval {
        metric: p99,
        comparison: Comparison::Ratio,
        pass: 1.2,
        fail: 1.0,
        confidence: 0.95,
        baseline_known: true,
    };
    // (check, canary, result, start of the reason). σ = 0.3 here, so p95's log SE at 3,000
    // is about 0.012 per arm.
    let table: Vec<(Check, CohortData, CriterionResult, &str)> = vec![
        (
            interval(p95, Comparison::Ratio, 1.1, 1.0),
            cohort(3000, 15, 1.0, 2),
            Pass,
            "canary p95 ",
        ),
        (
            interval(p95, Comparison::Ratio, 1.1, 1.0),
            cohort(3000, 15, 1.4, 3),
            Fail,
            "canary p95 ",
        ),
        // +10% against a 5% pass margin and a 30% fail margin: neither shown.
        (
            interval(p95, Comparison::Ratio, 1.05, 1.3),
            cohort(3000, 15, 1.1, 4),
            Marginal,
            "canary p95 ",
        ),
        (
            interval(p99, Comparison::Ratio, 1.2, 1.0),
            cohort(250, 0, 1.0, 5),
            NoData,
            "canary has 250 latency samples and p99 needs at least 299 for a 95% bound; no verdict yet",
        ),
        (known, cohort(3000, 15, 1.0, 6), Pass, "canary p99 "),
        // Absolute p95 in ms: the lognormal's p95 is 100·e^(1.645·0.3) ≈ 164 ms.
        (
            interval(p95, Comparison::Absolute, 200.0, 250.0),
            cohort(3000, 15, 1.0, 7),
            Pass,
            "canary p95 ",
        ),
        (
            interval(p95, Comparison::Absolute, 100.0, 120.0),
            cohort(3000, 15, 1.0, 7),
            Fail,
            "canary p95 ",
        ),
        // Error rates, exact binomial bounds.
        (
            interval(Metric::ErrorRate, Comparison::Absolute, 0.01, 0.02),
            cohort(3000, 90, 1.0, 8),
            Fail,
            "canary error rate 3.00% (90 of 3000), bounds ",
        ),
        (
            interval(Metric::ErrorRate, Comparison::Absolute, 0.01, 0.02),
            cohort(3000, 15, 1.0, 8),
            Pass,
            "canary error rate 0.50% (15 of 3000), bounds ",
        ),
        (
            interval(Metric::ErrorRate, Comparison::Absolute, 0.01, 0.02),
            cohort(3000, 45, 1.0, 8),
            Marginal,
            "canary error rate 1.50% (45 of 3000), bounds ",
        ),
        (
            interval(Metric::ErrorRate, Comparison::Ratio, 1.5, 1.0),
            cohort(3000, 40, 1.0, 9),
            Fail,
            "canary error rate 1.33% (40 of 3000) vs baseline 0.50% (15 of 3000), ratio bounds ",
        ),
        // Equal counts: a ratio up to about 1.8 is still possible, above the 1.5 pass margin.
        (
            interval(Metric::ErrorRate, Comparison::Ratio, 1.5, 1.0),
            cohort(3000, 15, 1.0, 9),
            Marginal,
            "canary error rate 0.50% (15 of 3000) vs baseline 0.50% (15 of 3000), ratio bounds ",
        ),
    ];
    for (check, canary, want, reason) in table {
        let e = evaluate(
            &gate(vec![criterion("c", check.clone())]),
            &canary,
            Some(&base),
            600,
        );
        let c = &e.criteria[0];
        assert_eq!(c.result, want, "{check:?}: {c:#?}");
        assert!(c.reason.starts_with(reason), "{check:?}: {}", c.reason);
        if want != NoData {
            let (lo, hi, score) = (c.ci_lower.unwrap(), c.ci_upper.unwrap(), c.score.unwrap());
            assert!(lo <= score && score <= hi, "{check:?}: {c:#?}");
            assert!((c.alpha.unwrap() - 0.05).abs() < 1e-12, "{c:#?}");
        }
    }
}

/// A gate of two statistical criteria and one plain threshold.
fn look_gate() -> GateSpec {
    gate(vec![
        criterion(
            "p95",
            interval(
                Metric::Latency { quantile: 0.95 },
                Comparison::Ratio,
                1.1,
                1.0,
            ),
        ),
        criterion(
            "errors",
            Check::TwoProportion {
                confidence: 0.95,
                max_difference: 0.0,
            },
        ),
        error_abs(),
    ])
}

#[test]
fn evaluate_look_reports_what_it_spent() {
    let spec = look_gate();
    let base = cohort(3000, 15, 1.0, 1);
    // (look, canary, verdict, spent, rejected by Holm)
    let table: Vec<(Analysis, CohortData, Verdict, f64, u32)> = vec![
        // O'Brien–Fleming spends almost nothing at the first look.
        (
            Analysis::new(1, 10, 0.01),
            cohort(3000, 15, 1.0, 2),
            Verdict::Pass,
            0.0,
            0,
        ),
        (
            Analysis::new(10, 10, 0.01),
            cohort(3000, 15, 1.0, 2),
            Verdict::Pass,
            0.01,
            0,
        ),
        // A +40% canary fails p95 even at the first look (z far above the capped boundary 8),
        // and its failure frees alpha for the error criterion (Holm).
        (
            Analysis::new(1, 10, 0.01),
            cohort(3000, 15, 1.4, 3),
            Verdict::Fail,
            0.0,
            1,
        ),
        (
            Analysis {
                spending: Spending::Pocock,
                ..Analysis::new(5, 10, 0.01)
            },
            cohort(3000, 15, 1.0, 2),
            Verdict::Pass,
            0.01 * (1.0 + (std::f64::consts::E - 1.0) * 0.5).ln(),
            0,
        ),
    ];
    for (analysis, canary, verdict, spent, rejected) in table {
        let e = evaluate_look(&spec, &analysis, &canary, Some(&base), 600);
        let look = e.look.as_ref().expect("a look report");
        let what = format!("{analysis:?}: {e:#?}");
        assert_eq!(e.verdict, verdict, "{what}");
        assert_eq!(
            (look.look, look.looks, look.tested),
            (analysis.look, 10, 2),
            "{what}"
        );
        assert!((look.spent - spent).abs() < 1e-9, "{what}");
        assert_eq!(look.rejected, rejected, "{what}");
        // The plain threshold spends nothing; the tests ran at their share of this look.
        assert_eq!(e.criteria[2].alpha, None, "{what}");
        let share = 0.01 / f64::from(2 - rejected);
        let level = boundaries(&analysis.effective_fractions(), share, analysis.spending);
        let level = normal_upper_tail(*level.last().unwrap());
        assert_eq!(e.criteria[1].alpha, Some(level), "{what}");
    }
}

#[test]
fn evaluate_look_with_a_bad_analysis_is_no_data() {
    let spec = look_gate();
    let base = cohort(3000, 15, 1.0, 1);
    let e = evaluate_look(
        &spec,
        &Analysis::new(11, 10, 0.01),
        &cohort(3000, 15, 1.0, 2),
        Some(&base),
        600,
    );
    let results: Vec<_> = e.criteria.iter().map(|c| c.result).collect();
    assert_eq!(results, [NoData, NoData, Pass]);
    assert_eq!(
        e.criteria[0].reason,
        "analysis: look 11 is outside 1..=10; no verdict from a misconfigured look"
    );
    assert_eq!((e.verdict, e.look), (Verdict::Inconclusive, None));
}

#[test]
fn look_evaluation_round_trips_and_survives_sustain() {
    let mut spec = look_gate();
    spec.criteria[0].sustained_seconds = Some(60);
    let base = cohort(3000, 15, 1.0, 1);
    let mut e = evaluate_look(
        &spec,
        &Analysis::new(10, 10, 0.01),
        &cohort(3000, 15, 1.4, 3),
        Some(&base),
        600,
    );
    // A client parses the verdict document back (equal up to float printing).
    let json = serde_json::to_string(&e).unwrap();
    let back: Evaluation = serde_json::from_str(&json).unwrap();
    let value = |e: &Evaluation| rounded(serde_json::to_value(e).unwrap());
    assert_eq!(value(&back), value(&e));
    let look = e.look.clone();
    e.sustain(&spec, &mut BTreeMap::new(), 1000);
    assert_eq!(e.criteria[0].result, Marginal);
    assert_eq!(e.look, look);
}

#[test]
fn early_looks_hold_what_the_last_look_would_judge() {
    // 30 errors in 3,000 against 15 in 3,000: significant at 95 % (mid-p ≈ 0.01), nowhere near
    // look 1's O'Brien–Fleming boundary. Before the last look that is not shown harmless: it
    // holds. At the last look the boundary is the whole test.
    let spec = gate(vec![criterion(
        "errors",
        Check::TwoProportion {
            confidence: 0.95,
            max_difference: 0.002,
        },
    )]);
    let base = cohort(3000, 15, 1.0, 1);
    let canary = cohort(3000, 30, 1.0, 2);
    let early = evaluate_look(
        &spec,
        &Analysis::new(1, 10, 0.01),
        &canary,
        Some(&base),
        600,
    );
    assert_eq!(early.criteria[0].result, Marginal, "{early:#?}");
    assert!(
        early.criteria[0]
            .reason
            .contains("not past this look's boundary"),
        "{early:#?}"
    );
    let last = evaluate_look(
        &spec,
        &Analysis::new(10, 10, 0.01),
        &canary,
        Some(&base),
        600,
    );
    let p = last.criteria[0].p_value.unwrap();
    let level = last.criteria[0].alpha.unwrap();
    let want = if p < level { Fail } else { Pass };
    assert_eq!(last.criteria[0].result, want, "{last:#?}");
    // A single look (no analysis) is judged at the criterion's own confidence: significant, and
    // 0.5 points above a 0.2-point limit, so it fails.
    let single = evaluate(&spec, &canary, Some(&base), 600);
    assert_eq!(single.criteria[0].result, Fail, "{single:#?}");
}

#[test]
fn sampled_cohorts_are_tested_on_the_sample_and_rated_on_adjusted_counts() {
    // 2,000 spans sampled at 1 in 10: 20,000 adjusted requests, 200 adjusted errors (20 sampled).
    let sampled = |seed| {
        let mut c = cohort(2000, 20, 1.0, seed);
        c.requests *= 10;
        c.errors *= 10;
        c
    };
    let (canary, base) = (sampled(1), sampled(2));
    assert!(canary.is_sampled() && !cohort(2000, 20, 1.0, 1).is_sampled());
    assert_eq!(canary.sample(), (2000, 20));
    // A two-proportion test on 20,000 "requests" would be ten times too confident; the outcome
    // reports, and the test uses, the 2,000 sampled.
    let spec = gate(vec![criterion(
        "errors",
        Check::TwoProportion {
            confidence: 0.95,
            max_difference: 0.0,
        },
    )]);
    let e = evaluate(&spec, &canary, Some(&base), 600);
    assert_eq!(e.criteria[0].canary_requests, 2000, "{e:#?}");
    let unsampled = evaluate(
        &spec,
        &cohort(2000, 20, 1.0, 1),
        Some(&cohort(2000, 20, 1.0, 2)),
        600,
    );
    assert_eq!(e.criteria[0].p_value, unsampled.criteria[0].p_value);
    // min_requests counts the sample: 2,000 sampled spans are not 20,000.
    let mut thin_spec = spec.clone();
    thin_spec.min_requests = 5000;
    let e = evaluate(&thin_spec, &canary, Some(&base), 600);
    assert_eq!(e.criteria[0].result, NoData, "{e:#?}");
    // The request rate is the adjusted one.
    let rate = gate(vec![criterion(
        "rate",
        Check::Threshold {
            metric: Metric::RequestRate,
            comparison: Comparison::Absolute,
            pass: 30.0,
            fail: 10.0,
            direction: None,
        },
    )]);
    let e = evaluate(&rate, &canary, None, 600);
    assert_eq!(e.criteria[0].observed, Some(20_000.0 / 600.0), "{e:#?}");
}
