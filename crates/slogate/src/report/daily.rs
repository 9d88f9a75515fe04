//! The daily canary report (`slogate report GATE --since 24h`): gathers a gate's cohorts over a
//! period from the history (merged sketches, never averaged percentiles), judges the gate's
//! criteria over the whole period, reads the verdict history, and recommends proceed, hold or
//! rollback. Rendering is `markdown.rs`; `slogate report --format json` serialises
//! [`DailyReport`] as it is.

use crate::config::{GateConfig, PhaseConfig};
use crate::engine::gates::VerdictDoc;
use anyhow::{Context as _, bail};
use serde::Serialize;
use slogate_gate::{CohortData, CriterionResult, Decision, Evaluation, Verdict};
use slogate_history::baseline::{self as store, CohortTotals};
use slogate_history::{DocTable, History};
use std::collections::BTreeMap;

/// At most this many verdicts are read for the counts and the timeline of changes.
pub const MAX_VERDICTS: usize = 200_000;
/// At most this many changes are listed in the report.
pub const MAX_TIMELINE: usize = 50;

/// One cohort over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortStats {
    pub role: &'static str,
    /// `service=checkout,version=v2`, or `stored:NAME (selector)`.
    pub selector: String,
    /// Where the numbers come from, in words.
    pub source: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl CohortStats {
    fn new(
        role: &'static str,
        selector: String,
        source: String,
        t: &CohortTotals,
        data: &CohortData,
    ) -> CohortStats {
        let ms = |v: Option<u64>| v.map(|ns| ns as f64 / 1e6);
        let [p50, p95, p99] = data.sketch.quantiles([0.5, 0.95, 0.99]);
        CohortStats {
            role,
            selector,
            source,
            requests: t.requests,
            errors: t.errors,
            error_rate: t.error_rate(),
            mean_ms: t.mean_ms(),
            p50_ms: ms(p50),
            p95_ms: ms(p95),
            p99_ms: ms(p99),
        }
    }
}

/// The verdicts a gate recorded in the period.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct VerdictHistory {
    pub counts: BTreeMap<String, u64>,
    /// The first verdict and every change: `(at_unix_ms, verdict)`.
    #[serde(serialize_with = "changes_json")]
    pub changes: Vec<(i64, String)>,
    pub changes_truncated: bool,
    /// The newest verdict document.
    pub latest: Option<VerdictDoc>,
}

impl VerdictHistory {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Builds counts and changes from verdicts ordered oldest first.
    pub fn from_rows(rows: &[(i64, String)], latest: Option<VerdictDoc>) -> VerdictHistory {
        let mut h = VerdictHistory {
            latest,
            ..VerdictHistory::default()
        };
        let mut prev: Option<&str> = None;
        for (at, verdict) in rows {
            *h.counts.entry(verdict.clone()).or_default() += 1;
            if prev != Some(verdict.as_str()) {
                if h.changes.len() < MAX_TIMELINE {
                    h.changes.push((*at, verdict.clone()));
                } else {
                    h.changes_truncated = true;
                }
            }
            prev = Some(verdict);
        }
        h
    }
}

/// `[{"at_unix_ms": …, "verdict": "…"}]` rather than bare pairs.
fn changes_json<S: serde::Serializer>(changes: &[(i64, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        changes
            .iter()
            .map(|(at, verdict)| serde_json::json!({ "at_unix_ms": at, "verdict": verdict })),
    )
}

/// What the report recommends, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub decision: Decision,
    /// Too little data to judge: the decision is hold, never proceed.
    pub insufficient_data: bool,
    pub why: Vec<String>,
}

/// The whole report, ready to render.
#[derive(Debug, Clone, Serialize)]
pub struct DailyReport {
    pub gate: String,
    pub phase: String,
    pub service: String,
    pub operation: Option<String>,
    pub from_unix: i64,
    pub to_unix: i64,
    pub generated_unix: i64,
    pub canary: CohortStats,
    pub baseline: Option<CohortStats>,
    /// The phase's criteria judged over the whole period.
    pub period: Evaluation,
    pub verdicts: VerdictHistory,
    pub recommendation: Recommendation,
}

/// Decides the recommendation from the period's evaluation and the verdict history. Fail
/// anywhere recommends rollback; missing data, marginal results, an inconclusive latest
/// verdict or earlier failures hold; only a clean period proceeds.
pub fn recommend(period: &Evaluation, history: &VerdictHistory) -> Recommendation {
    let failing: Vec<&str> = period
        .criteria
        .iter()
        .filter(|c| c.result == CriterionResult::Fail)
        .map(|c| c.reason.as_str())
        .collect();
    let latest = history.latest.as_ref();
    let latest_verdict = latest.map(|d| d.verdict);
    let latest_at = latest.map_or("?", |d| d.evaluated_at.as_str());
    let latest_reasons = || -> Vec<String> {
        latest
            .into_iter()
            .flat_map(|d| &d.reasons)
            .map(|r| format!("latest verdict: {r}"))
            .collect()
    };
    let rec = |decision, insufficient_data, why| Recommendation {
        decision,
        insufficient_data,
        why,
    };
    if !failing.is_empty() {
        let why = failing
            .iter()
            .map(|r| format!("over the period: {r}"))
            .collect();
        return rec(Decision::Rollback, false, why);
    }
    if latest_verdict == Some(Verdict::Fail) {
        let mut why = vec![format!("the latest live verdict ({latest_at}) failed")];
        why.extend(latest_reasons());
        return rec(Decision::Rollback, false, why);
    }
    let no_data: Vec<&str> = period
        .criteria
        .iter()
        .filter(|c| c.result == CriterionResult::NoData)
        .map(|c| c.reason.as_str())
        .collect();
    if period.criteria.is_empty() || !no_data.is_empty() {
        let mut why: Vec<String> = no_data
            .iter()
            .map(|r| format!("insufficient data: {r}"))
            .collect();
        if period.criteria.is_empty() {
            why.push("the gate has no criteria to judge".into());
        }
        return rec(Decision::Hold, true, why);
    }
    let marginal: Vec<String> = period
        .criteria
        .iter()
        .filter(|c| c.result == CriterionResult::Marginal)
        .map(|c| format!("over the period: {}", c.reason))
        .collect();
    if !marginal.is_empty() {
        return rec(Decision::Hold, false, marginal);
    }
    if latest_verdict == Some(Verdict::Inconclusive) {
        let mut why = vec![format!(
            "the latest live verdict ({latest_at}) is inconclusive"
        )];
        why.extend(latest_reasons());
        return rec(Decision::Hold, false, why);
    }
    let fails = history.counts.get("fail").copied().unwrap_or(0);
    if fails > 0 {
        return rec(
            Decision::Hold,
            false,
            vec![format!(
                "{fails} of {} live verdicts in the period failed, although the latest passed; investigate before proceeding",
                history.total()
            )],
        );
    }
    let mut why = vec![format!(
        "all {} criteria pass over the period",
        period.criteria.len()
    )];
    match latest_verdict {
        Some(v) => why.push(format!(
            "the latest live verdict ({latest_at}) is {}",
            crate::engine::gates::verdict_label(v)
        )),
        None => why.push("no live verdicts were recorded in the period; the recommendation rests on the period's data alone".into()),
    }
    rec(Decision::Proceed, false, why)
}

fn to_data(t: &CohortTotals) -> anyhow::Result<CohortData> {
    let sketch = t.decode_sketch().context("invalid sketch in the history")?;
    Ok(CohortData {
        requests: t.requests,
        errors: t.errors,
        sketch,
        observed_seconds: None,
        ..Default::default()
    })
}

/// Everything `build` needs besides the history.
pub struct ReportRequest<'a> {
    pub gate: &'a GateConfig,
    pub phase: &'a PhaseConfig,
    pub canary: Vec<(String, String)>,
    pub baseline: Vec<(String, String)>,
    pub from_unix: i64,
    pub to_unix: i64,
    pub now_unix: i64,
}

fn matchers(
    g: &GateConfig,
    defaults: &[(String, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut m: BTreeMap<String, String> =
        BTreeMap::from([("service".to_string(), g.service.clone())]);
    if let Some(op) = &g.operation {
        m.insert("operation".into(), op.clone());
    }
    for (k, v) in defaults.iter().chain(overrides) {
        m.insert(k.clone(), v.clone());
    }
    m.into_iter().collect()
}

fn selector_text(m: &[(String, String)]) -> String {
    let mut parts = vec![];
    parts.extend(
        m.iter()
            .filter(|(k, _)| k == "service")
            .map(|(k, v)| format!("{k}={v}")),
    );
    parts.extend(
        m.iter()
            .filter(|(k, _)| k != "service")
            .map(|(k, v)| format!("{k}={v}")),
    );
    parts.join(",")
}

/// The baseline cohort of a report: the stored baseline the request or the gate names, the live
/// baseline selector, or none when every criterion is absolute.
async fn baseline_cohort(
    history: &History,
    root: &slogate_history::Store,
    req: &ReportRequest<'_>,
    canary_m: &[(String, String)],
    span: &str,
    range: (i64, i64),
) -> anyhow::Result<(Option<CohortStats>, Option<CohortData>)> {
    let g = req.gate;
    let key = crate::config::STORED_BASELINE_KEY;
    let stored = match req.baseline.iter().find(|(k, _)| k == key) {
        Some((_, name)) => Some(name.clone()),
        None if req.baseline.is_empty() => g.baseline_stored.clone(),
        None => None,
    };
    let needs_baseline = req
        .phase
        .spec
        .criteria
        .iter()
        .any(|c| c.check.is_relative());
    if let Some(name) = stored {
        let b = store::load(root, &name)?;
        if b.selector.get("service") != Some(&g.service) {
            bail!(
                "stored baseline {name:?} was captured for {}, but gate {:?} watches service {}",
                b.selector_text(),
                g.name,
                g.service
            );
        }
        let op = g
            .operation
            .as_deref()
            .filter(|op| b.selector.get("operation").map(String::as_str) != Some(*op));
        let t = b.cohort(op).with_context(|| {
            format!(
                "stored baseline {name:?} has no traffic for operation {:?}",
                op.unwrap_or("")
            )
        })?;
        let data = to_data(t)?;
        let source = format!(
            "stored baseline captured {} from {} → {}",
            slogate_history::rfc3339(b.captured_at_unix),
            slogate_history::rfc3339(b.from_unix),
            slogate_history::rfc3339(b.to_unix)
        );
        Ok((
            Some(CohortStats::new(
                "baseline",
                format!("stored:{name} ({})", b.selector_text()),
                source,
                t,
                &data,
            )),
            Some(data),
        ))
    } else if !g.baseline.is_empty() || !req.baseline.is_empty() {
        let m = matchers(g, &g.baseline, &req.baseline);
        if m == *canary_m {
            bail!(
                "canary and baseline select the same series ({}); give them different cohort values",
                selector_text(&m)
            );
        }
        let t =
            CohortTotals::merge_all(&slogate_history::operation_totals(history, &m, range).await?)?;
        let data = to_data(&t)?;
        Ok((
            Some(CohortStats::new(
                "baseline",
                selector_text(&m),
                format!("live traffic, {span}"),
                &t,
                &data,
            )),
            Some(data),
        ))
    } else if needs_baseline {
        bail!(
            "gate {:?} compares the canary with a baseline, but none is configured; pass --baseline DIM=VALUE or --baseline stored=NAME",
            g.name
        );
    } else {
        Ok((None, None))
    }
}

/// Builds the report from the history under `root`.
pub async fn build(
    history: &History,
    root: &slogate_history::Store,
    req: &ReportRequest<'_>,
) -> anyhow::Result<DailyReport> {
    let g = req.gate;
    let range = (req.from_unix, req.to_unix);
    let span = format!(
        "{} → {}",
        slogate_history::rfc3339(range.0),
        slogate_history::rfc3339(range.1)
    );
    if req
        .canary
        .iter()
        .chain(&req.baseline)
        .any(|(k, _)| k == "service")
    {
        bail!(
            "the gate's service is fixed ({}); cohorts differ by other dimensions",
            g.service
        );
    }
    let canary_m = matchers(g, &g.canary, &req.canary);
    let canary_t = CohortTotals::merge_all(
        &slogate_history::operation_totals(history, &canary_m, range).await?,
    )?;
    let canary_data = to_data(&canary_t)?;
    let canary = CohortStats::new(
        "canary",
        selector_text(&canary_m),
        format!("live traffic, {span}"),
        &canary_t,
        &canary_data,
    );

    let (baseline, baseline_data) =
        baseline_cohort(history, root, req, &canary_m, &span, range).await?;

    let window = (range.1 - range.0).max(1) as u64;
    // OTLP metric criteria are judged live only: the history keeps their slots, not the raw
    // points time in state or transitions need. The report says so rather than inventing them.
    let mut canary_data = canary_data;
    for (name, q) in &req.phase.measures {
        canary_data.measured.insert(
            name.clone(),
            slogate_gate::Measured {
                label: q.label.clone(),
                gap: Some(
                    "OTLP metric criteria are judged on live data only; see the verdicts of the period"
                        .into(),
                ),
                ..Default::default()
            },
        );
    }
    let period = slogate_gate::evaluate(
        &req.phase.spec,
        &canary_data,
        baseline_data.as_ref(),
        window,
    );

    let rows = slogate_history::doc_rows(
        history,
        DocTable::Verdicts,
        &g.name,
        range,
        MAX_VERDICTS,
        false,
        false,
    )
    .await?;
    let latest =
        slogate_history::doc_rows(history, DocTable::Verdicts, &g.name, range, 1, true, true)
            .await?;
    let latest = latest
        .first()
        .and_then(|r| r.doc.as_deref())
        .and_then(|d| serde_json::from_str(d).ok());
    let verdicts = VerdictHistory::from_rows(
        &rows
            .into_iter()
            .map(|r| (r.at_unix_ms, r.status))
            .collect::<Vec<_>>(),
        latest,
    );
    let recommendation = recommend(&period, &verdicts);
    Ok(DailyReport {
        gate: g.name.clone(),
        phase: req.phase.name.clone(),
        service: g.service.clone(),
        operation: g.operation.clone(),
        from_unix: range.0,
        to_unix: range.1,
        generated_unix: req.now_unix,
        canary,
        baseline,
        period,
        verdicts,
        recommendation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slogate_gate::{CriterionOutcome, Thresholds};

    fn outcome(result: CriterionResult, reason: &str) -> CriterionOutcome {
        CriterionOutcome {
            name: "c".into(),
            metric: "error_rate".into(),
            result,
            observed: None,
            baseline: None,
            score: None,
            p_value: None,
            threshold: Thresholds {
                pass: 0.01,
                fail: 0.02,
                comparison: "absolute".into(),
                confidence: None,
            },
            canary_requests: 0,
            baseline_requests: 0,
            ci_lower: None,
            ci_upper: None,
            alpha: None,
            points: None,
            series: None,
            baseline_points: None,
            unit: None,
            error_bound: None,
            reason: reason.into(),
        }
    }

    fn latest(verdict: &str) -> Option<VerdictDoc> {
        let cohort = serde_json::json!({
            "selector": "s", "requests": 0, "errors": 0, "error_rate": null,
            "latency_ms": { "p50": null, "p90": null, "p95": null, "p99": null },
        });
        let doc = serde_json::json!({
            "gate": "g", "phase": "p", "evaluated_at": "2026-11-24T08:00:00Z", "window_seconds": 60,
            "verdict": verdict, "decision": "hold", "canary": cohort, "baseline": cohort,
            "criteria": [], "reasons": ["r1"],
        });
        Some(serde_json::from_value(doc).unwrap())
    }

    #[test]
    fn recommendations() {
        use CriterionResult::*;
        let rows = |vs: &[&str]| {
            vs.iter()
                .enumerate()
                .map(|(i, v)| (i as i64, v.to_string()))
                .collect::<Vec<_>>()
        };
        // (period results, verdicts oldest first, latest doc, decision, insufficient, a reason fragment)
        type Case<'a> = (
            Vec<CriterionResult>,
            Vec<&'a str>,
            Option<VerdictDoc>,
            Decision,
            bool,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                vec![Pass, Pass],
                vec!["pass"],
                latest("pass"),
                Decision::Proceed,
                false,
                "all 2 criteria pass",
            ),
            (
                vec![Pass],
                vec![],
                None,
                Decision::Proceed,
                false,
                "no live verdicts were recorded",
            ),
            (
                vec![Pass, Fail],
                vec!["pass"],
                latest("pass"),
                Decision::Rollback,
                false,
                "over the period: why-Fail",
            ),
            (
                vec![Pass],
                vec!["pass", "fail"],
                latest("fail"),
                Decision::Rollback,
                false,
                "latest verdict: r1",
            ),
            // No data is never a proceed, whatever the live verdicts said.
            (
                vec![NoData, Pass],
                vec!["pass"],
                latest("pass"),
                Decision::Hold,
                true,
                "insufficient data: why-NoData",
            ),
            (vec![], vec![], None, Decision::Hold, true, "no criteria"),
            (
                vec![Pass, Marginal],
                vec!["pass"],
                latest("pass"),
                Decision::Hold,
                false,
                "why-Marginal",
            ),
            (
                vec![Pass],
                vec!["pass", "inconclusive"],
                latest("inconclusive"),
                Decision::Hold,
                false,
                "is inconclusive",
            ),
            (
                vec![Pass],
                vec!["fail", "pass"],
                latest("pass"),
                Decision::Hold,
                false,
                "1 of 2 live verdicts in the period failed",
            ),
        ];
        for (results, verdicts, doc, decision, insufficient, fragment) in cases {
            let period = Evaluation::from_outcomes(
                results
                    .iter()
                    .map(|r| outcome(*r, &format!("why-{r:?}")))
                    .collect(),
            );
            let h = VerdictHistory::from_rows(&rows(&verdicts), doc);
            let r = recommend(&period, &h);
            assert_eq!(
                (r.decision, r.insufficient_data),
                (decision, insufficient),
                "{results:?} {verdicts:?}: {r:?}"
            );
            assert!(
                r.why.iter().any(|w| w.contains(fragment)),
                "{results:?}: {:?}",
                r.why
            );
        }
    }

    #[test]
    fn timeline_keeps_first_and_changes() {
        let rows: Vec<(i64, String)> = ["pass", "pass", "fail", "fail", "pass", "inconclusive"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 1000, v.to_string()))
            .collect();
        let h = VerdictHistory::from_rows(&rows, None);
        assert_eq!(
            h.changes,
            vec![
                (0, "pass".into()),
                (2000, "fail".into()),
                (4000, "pass".into()),
                (5000, "inconclusive".into())
            ]
        );
        assert_eq!(
            h.counts,
            BTreeMap::from([
                ("fail".into(), 2),
                ("inconclusive".into(), 1),
                ("pass".into(), 3)
            ])
        );
        let many: Vec<(i64, String)> = (0..200)
            .map(|i| (i, if i % 2 == 0 { "pass" } else { "fail" }.to_string()))
            .collect();
        let h = VerdictHistory::from_rows(&many, None);
        assert_eq!(h.changes.len(), MAX_TIMELINE);
        assert!(h.changes_truncated);
    }
}
