//! The verdict document as a terminal table (`slogate verdict --format table`).

use super::{Unit, aligned, cell, criterion_row, header, opt_pct};
use crate::engine::gates::{VerdictDoc, verdict_label};
use std::fmt::Write as _;

pub fn table(doc: &VerdictDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gate {} · phase {} · window {}s · evaluated {}",
        doc.gate, doc.phase, doc.window_seconds, doc.evaluated_at
    );
    let decision = match doc.decision {
        slogate_gate::Decision::Proceed => "PROCEED",
        slogate_gate::Decision::Hold => "HOLD",
        slogate_gate::Decision::Rollback => "ROLLBACK",
    };
    let _ = writeln!(
        out,
        "VERDICT: {} -> {decision}\n",
        verdict_label(doc.verdict).to_uppercase()
    );
    if let Some(a) = &doc.analysis {
        let _ = writeln!(out, "{}\n", super::analysis_text(a));
    }
    let mut rows = vec![header(&[
        "cohort",
        "selector",
        "requests",
        "errors",
        "error rate",
        "p50",
        "p95",
        "p99",
    ])];
    for (side, c) in [("canary", &doc.canary), ("baseline", &doc.baseline)] {
        rows.push(vec![
            side.into(),
            c.selector.clone(),
            c.requests.to_string(),
            c.errors.to_string(),
            opt_pct(c.error_rate),
            cell(c.latency_ms.p50, Unit::Ms),
            cell(c.latency_ms.p95, Unit::Ms),
            cell(c.latency_ms.p99, Unit::Ms),
        ]);
    }
    out.push_str(&aligned(&rows));
    for (side, c) in [("canary", &doc.canary), ("baseline", &doc.baseline)] {
        if let Some(n) = c.sampled_requests {
            let _ = writeln!(
                out,
                "  {side} traffic is sampled: {} requests are estimated from {n} sampled spans; the tests use the {n}",
                c.requests
            );
        }
    }
    out.push('\n');
    let mut rows = vec![header(&super::CRITERION_COLUMNS)];
    rows.extend(doc.criteria.iter().map(|c| criterion_row(c, "/")));
    out.push_str(&aligned(&rows));
    if !doc.reasons.is_empty() {
        out.push_str("\nwhy:\n");
        for r in &doc.reasons {
            let _ = writeln!(out, "  - {r}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;
    use crate::engine::gates::tests::{canary, setup};

    #[test]
    fn verdict_tables() {
        let gates = setup(&[
            ("v1", 2000, 1.0, 200),
            ("v2", 500, 1.4, 25),
            ("thin", 50, 1.0, 0),
        ]);
        for (version, phase) in [("v2", "canary"), ("thin", "ga")] {
            let doc = gates
                .evaluate("checkout", Some(phase), &canary(version), &[], None)
                .unwrap();
            insta::assert_snapshot!(format!("{version}-{phase}"), table(&doc));
        }
    }
}
