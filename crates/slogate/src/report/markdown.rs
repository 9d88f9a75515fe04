//! The daily canary report as Markdown: recommendation first (the checkbox layout of the
//! rollout plans), then cohorts, metrics canary vs baseline, the criteria over the period, the
//! verdict history and the issues found. `docs/sample-canary-report.md` is its snapshot.

use super::daily::{CohortStats, DailyReport};
use super::{criterion_row, opt_ms, opt_pct, result_label};
use crate::engine::gates::verdict_label;
use slogate_gate::{CriterionOutcome, CriterionResult, Decision};
use slogate_history::rfc3339;
use std::fmt::Write as _;

fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Proceed => "proceed",
        Decision::Hold => "hold",
        Decision::Rollback => "rollback",
    }
}

/// Escapes a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(out: &mut String, header: &[&str], align_right_from: usize, rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let sep: Vec<&str> = (0..header.len())
        .map(|i| if i >= align_right_from { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", sep.join("|"));
    for r in rows {
        let _ = writeln!(
            out,
            "| {} |",
            r.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | ")
        );
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `+12.3 ms (+8.1%)`, or `-` when a side is missing.
fn delta_ms(c: Option<f64>, b: Option<f64>) -> String {
    match (c, b) {
        (Some(c), Some(b)) if b > 0.0 => format!("{:+.1} ms ({:+.1}%)", c - b, (c - b) / b * 100.0),
        (Some(c), Some(b)) => format!("{:+.1} ms", c - b),
        _ => "-".into(),
    }
}

fn delta_pt(c: Option<f64>, b: Option<f64>) -> String {
    match (c, b) {
        (Some(c), Some(b)) => format!("{:+.2} pt", (c - b) * 100.0),
        _ => "-".into(),
    }
}

/// The criteria of a verdict document, or of the period's evaluation.
fn criteria_md(out: &mut String, criteria: &[CriterionOutcome]) {
    let rows: Vec<Vec<String>> = criteria.iter().map(|c| criterion_row(c, " / ")).collect();
    md_table(
        out,
        &[
            "criterion",
            "result",
            "observed",
            "baseline",
            "score [confidence interval]",
            "threshold (pass / fail)",
            "alpha (fail test)",
            "sample size (canary / baseline)",
        ],
        2,
        &rows,
    );
}

/// The daily canary report as Markdown: recommendation first, then cohorts, metrics canary vs
/// baseline, the criteria over the period, the verdict history and the issues found.
pub fn daily(r: &DailyReport) -> String {
    let mut out = String::new();
    for section in [
        title,
        recommendation,
        cohorts,
        metrics,
        criteria,
        verdict_history,
        issues,
    ] {
        section(&mut out, r);
    }
    out
}

/// The title and the period.
fn title(out: &mut String, r: &DailyReport) {
    let day = rfc3339(r.to_unix);
    let _ = writeln!(
        out,
        "# Canary report: {} ({}), {}\n",
        r.gate,
        r.phase,
        &day[..10]
    );
    let hours = (r.to_unix - r.from_unix) as f64 / 3600.0;
    let _ = writeln!(
        out,
        "Service `{}`{} · period {} → {} ({}h) · generated {}\n",
        r.service,
        r.operation
            .as_ref()
            .map_or(String::new(), |o| format!(", operation `{o}`")),
        rfc3339(r.from_unix),
        rfc3339(r.to_unix),
        format!("{hours:.1}")
            .trim_end_matches('0')
            .trim_end_matches('.'),
        rfc3339(r.generated_unix)
    );
}

/// Proceed, hold or rollback, the checkbox line of the rollout plans, and why.
fn recommendation(out: &mut String, r: &DailyReport) {
    let rec = &r.recommendation;
    out.push_str("## Recommendation\n\n");
    let (word, label) = match rec.decision {
        Decision::Proceed => ("PROCEED", "proceed to the next phase"),
        Decision::Hold if rec.insufficient_data => (
            "HOLD — insufficient data",
            "hold until there is enough traffic to judge",
        ),
        Decision::Hold => ("HOLD", "hold and investigate"),
        Decision::Rollback => ("ROLLBACK", "roll back"),
    };
    let _ = writeln!(out, "**{word}**: {label}.\n");
    let mark = |d: Decision| if rec.decision == d { "[x]" } else { "[ ]" };
    let _ = writeln!(
        out,
        "{} Proceed | {} Hold and investigate | {} Rollback\n",
        mark(Decision::Proceed),
        mark(Decision::Hold),
        mark(Decision::Rollback)
    );
    for w in &rec.why {
        let _ = writeln!(out, "- {w}");
    }
    out.push('\n');
}

/// Which traffic each cohort is.
fn cohorts(out: &mut String, r: &DailyReport) {
    out.push_str("## Cohorts\n\n");
    let cohorts: Vec<&CohortStats> = std::iter::once(&r.canary)
        .chain(r.baseline.as_ref())
        .collect();
    let rows: Vec<Vec<String>> = cohorts
        .iter()
        .map(|c| {
            vec![
                c.role.to_string(),
                format!("`{}`", c.selector),
                c.source.clone(),
            ]
        })
        .collect();
    md_table(out, &["cohort", "selector", "source"], 99, &rows);
    if r.baseline.is_none() {
        out.push_str("\nNo baseline: the gate's criteria are absolute.\n");
    }
    out.push('\n');
}

/// Requests, errors and latency, canary against baseline.
fn metrics(out: &mut String, r: &DailyReport) {
    out.push_str("## Metrics summary\n\n");
    let b = r.baseline.as_ref();
    let bf = |f: fn(&CohortStats) -> Option<f64>| b.and_then(f);
    let c = &r.canary;
    let rows = vec![
        vec![
            "requests".into(),
            thousands(c.requests),
            b.map_or("-".into(), |b| thousands(b.requests)),
            "".into(),
        ],
        vec![
            "errors".into(),
            thousands(c.errors),
            b.map_or("-".into(), |b| thousands(b.errors)),
            "".into(),
        ],
        vec![
            "error rate".into(),
            opt_pct(c.error_rate),
            opt_pct(bf(|x| x.error_rate)),
            delta_pt(c.error_rate, bf(|x| x.error_rate)),
        ],
        vec![
            "mean latency".into(),
            opt_ms(c.mean_ms),
            opt_ms(bf(|x| x.mean_ms)),
            delta_ms(c.mean_ms, bf(|x| x.mean_ms)),
        ],
        vec![
            "p50 latency".into(),
            opt_ms(c.p50_ms),
            opt_ms(bf(|x| x.p50_ms)),
            delta_ms(c.p50_ms, bf(|x| x.p50_ms)),
        ],
        vec![
            "p95 latency".into(),
            opt_ms(c.p95_ms),
            opt_ms(bf(|x| x.p95_ms)),
            delta_ms(c.p95_ms, bf(|x| x.p95_ms)),
        ],
        vec![
            "p99 latency".into(),
            opt_ms(c.p99_ms),
            opt_ms(bf(|x| x.p99_ms)),
            delta_ms(c.p99_ms, bf(|x| x.p99_ms)),
        ],
    ];
    md_table(out, &["metric", "canary", "baseline", "delta"], 1, &rows);
    out.push_str("\nPercentiles are read from the period's merged latency sketches (within 0.4%), not averaged from per-slot percentiles.\n\n");
}

/// The phase's criteria judged over the whole period.
fn criteria(out: &mut String, r: &DailyReport) {
    let _ = writeln!(out, "## Criteria over the period ({} phase)\n", r.phase);
    criteria_md(out, &r.period.criteria);
    let _ = writeln!(
        out,
        "\nPeriod verdict: **{}**.\n",
        verdict_label(r.period.verdict)
    );
}

/// The live verdicts of the period: counts, changes and the latest.
fn verdict_history(out: &mut String, r: &DailyReport) {
    out.push_str("## Verdict history\n\n");
    let h = &r.verdicts;
    if h.total() == 0 {
        out.push_str("No live verdicts were recorded for this gate in the period.\n\n");
    } else {
        let counts: Vec<String> = ["pass", "fail", "inconclusive"]
            .iter()
            .map(|v| format!("{} {v}", h.counts.get(*v).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "{} verdicts: {}.\n", h.total(), counts.join(", "));
        out.push_str("### Changes\n\n");
        let rows: Vec<Vec<String>> = h
            .changes
            .iter()
            .map(|(at, v)| vec![rfc3339(at.div_euclid(1000)), v.clone()])
            .collect();
        md_table(out, &["since", "verdict"], 99, &rows);
        if h.changes_truncated {
            let _ = writeln!(
                out,
                "\n(only the first {} changes are listed)",
                super::daily::MAX_TIMELINE
            );
        }
        out.push('\n');
        if let Some(doc) = &h.latest {
            let _ = writeln!(
                out,
                "### Latest verdict: {} → {} ({}, phase {}, window {}s)\n",
                verdict_label(doc.verdict).to_uppercase(),
                decision_label(doc.decision),
                doc.evaluated_at,
                doc.phase,
                doc.window_seconds
            );
            let _ = writeln!(
                out,
                "Canary `{}` ({} requests) vs baseline `{}` ({} requests).\n",
                doc.canary.selector,
                doc.canary.requests,
                doc.baseline.selector,
                doc.baseline.requests
            );
            if let Some(a) = &doc.analysis {
                let _ = writeln!(out, "{}.\n", super::analysis_text(a));
            }
            criteria_md(out, &doc.criteria);
            out.push('\n');
        }
    }
}

/// Every criterion that did not pass, over the period and at the latest verdict.
fn issues(out: &mut String, r: &DailyReport) {
    let h = &r.verdicts;
    out.push_str("## Issues detected\n\n");
    let mut issues: Vec<String> = r
        .period
        .criteria
        .iter()
        .filter(|c| c.result != CriterionResult::Pass)
        .map(|c| format!("{} ({}): {}", c.name, result_label(c.result), c.reason))
        .collect();
    if let Some(doc) = &h.latest {
        issues.extend(doc.reasons.iter().map(|x| format!("latest verdict: {x}")));
    }
    if issues.is_empty() {
        out.push_str("None.\n");
    } else {
        for i in issues {
            let _ = writeln!(out, "- {i}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::daily;
    use crate::engine::LatencyMs;
    use crate::engine::gates::{CohortSummary, StoredRef, VerdictDoc};
    use crate::report::daily::{CohortStats, DailyReport, VerdictHistory, recommend};
    use rand::SeedableRng;
    use rand_distr::{Distribution, LogNormal};
    use slogate_gate::CohortData;
    use slogate_sketch::Sketch;

    const CONFIG: &str = "
gates:
  - name: checkout-release
    service: checkout
    window: 5m
    canary: {version: v2}
    baseline: {stored: staging-v1}
    criteria:
      - {name: p95-vs-staging, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3, confidence: 0.95}
      - {name: errors-vs-staging, metric: error_rate, compare: ratio, pass: 1.2, fail: 1.5, confidence: 0.99}
";

    /// A cohort of `n` lognormal latencies around `median_ms`, `errors` of them errors.
    fn cohort(seed: u64, n: u64, median_ms: f64, errors: u64) -> (CohortData, f64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dist = LogNormal::new(median_ms.ln(), 0.35).unwrap();
        let mut sketch = Sketch::new();
        let mut sum = 0.0;
        for _ in 0..n {
            let ms: f64 = dist.sample(&mut rng);
            sum += ms;
            sketch.record((ms * 1e6) as u64);
        }
        let data = CohortData {
            requests: n,
            errors,
            sketch,
            observed_seconds: None,
            ..Default::default()
        };
        (data, sum / n as f64)
    }

    fn stats(
        role: &'static str,
        selector: &str,
        source: &str,
        d: &CohortData,
        mean: f64,
    ) -> CohortStats {
        let ms = |q| d.sketch.quantile(q).map(|ns| ns as f64 / 1e6);
        CohortStats {
            role,
            selector: selector.into(),
            source: source.into(),
            requests: d.requests,
            errors: d.errors,
            error_rate: Some(d.errors as f64 / d.requests as f64),
            mean_ms: Some(mean),
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
        }
    }

    /// The report of a canary that is 27 % slower and has twice the errors of its stored
    /// staging baseline, with one failed live verdict.
    fn sample() -> DailyReport {
        let cfg = crate::config::Config::parse(CONFIG, "sample.yaml").unwrap();
        let (_, phase) = cfg.gate_phase("checkout-release", None).unwrap();
        let (canary, canary_mean) = cohort(1, 8000, 51.0, 95);
        let (base, base_mean) = cohort(2, 8000, 40.2, 40);
        let (from, to) = (1_795_466_057, 1_795_552_458);
        let period = slogate_gate::evaluate(&phase.spec, &canary, Some(&base), (to - from) as u64);
        let at = slogate_history::rfc3339;
        let summary = |selector: &str, d: &CohortData| CohortSummary {
            selector: selector.into(),
            requests: d.requests,
            errors: d.errors,
            error_rate: Some(d.errors as f64 / d.requests as f64),
            latency_ms: LatencyMs::of(&d.sketch),
            observed_seconds: None,
            sampled_requests: None,
            stored: None,
        };
        let live = slogate_gate::evaluate(&phase.spec, &canary, Some(&base), 300);
        let latest = VerdictDoc {
            gate: "checkout-release".into(),
            phase: "default".into(),
            evaluated_at: at(1_795_552_450),
            window_seconds: 300,
            verdict: live.verdict,
            decision: live.decision,
            inline: None,
            analysis: None,
            canary: summary("service=checkout,version=v2", &canary),
            baseline: CohortSummary {
                stored: Some(StoredRef {
                    name: "staging-v1".into(),
                    selector: "service=checkout,env=staging".into(),
                    operation: None,
                    from: at(1_795_551_850),
                    to: at(1_795_552_450),
                    captured_at: at(1_795_552_450),
                    requests: base.requests,
                }),
                ..summary("stored:staging-v1 (service=checkout,env=staging)", &base)
            },
            criteria: live.criteria,
            reasons: live.reasons,
        };
        let verdicts =
            VerdictHistory::from_rows(&[(1_795_552_450_000, "fail".to_string())], Some(latest));
        let recommendation = recommend(&period, &verdicts);
        DailyReport {
            gate: "checkout-release".into(),
            phase: "default".into(),
            service: "checkout".into(),
            operation: None,
            from_unix: from,
            to_unix: to,
            generated_unix: to - 1,
            canary: stats(
                "canary",
                "service=checkout,version=v2",
                &format!("live traffic, {} → {}", at(from), at(to)),
                &canary,
                canary_mean,
            ),
            baseline: Some(stats(
                "baseline",
                "stored:staging-v1 (service=checkout,env=staging)",
                &format!(
                    "stored baseline captured {} from {} → {}",
                    at(1_795_552_450),
                    at(1_795_551_850),
                    at(1_795_552_450)
                ),
                &base,
                base_mean,
            )),
            period,
            verdicts,
            recommendation,
        }
    }

    /// `docs/sample-canary-report.md` is this report: a change to the rendering fails here
    /// until the sample is regenerated with `SLOGATE_BLESS=1 cargo test -p slogate sample_report`.
    #[test]
    fn sample_report_is_the_docs_sample() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/sample-canary-report.md"
        );
        let text = daily(&sample());
        if std::env::var_os("SLOGATE_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert!(
            text == want,
            "the rendered sample report differs from docs/sample-canary-report.md; review and regenerate it with SLOGATE_BLESS=1\n--- rendered:\n{text}"
        );
        assert!(text.contains("**ROLLBACK**"), "{text}");
    }
}
