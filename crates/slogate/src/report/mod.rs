//! Human-readable renderings: verdict documents for the terminal, SQL results, and the daily
//! canary report as Markdown.

use serde_json::Value;
use std::fmt::Write as _;

fn num(v: &Value, unit: &str) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(x) if unit == "%" => format!("{:.2}%", x * 100.0),
        Some(x) if unit == "ms" => format!("{x:.1} ms"),
        Some(x) => format!("{x:.4}"),
    }
}

/// How a criterion's metric is best shown: rates as percentages, latencies in ms.
fn unit_of(metric: &str, comparison: &str) -> &'static str {
    match (metric, comparison) {
        (_, "ratio") => "x",
        (m, _) if m.starts_with("latency") => "ms",
        ("error_rate", _) => "%",
        _ => "",
    }
}

fn cell(v: &Value, unit: &str) -> String {
    match (v.as_f64(), unit) {
        (None, _) => "-".into(),
        (Some(x), "x") => format!("{x:.3}x"),
        (Some(x), "") => format!("{x:.2}"),
        (Some(_), u) => num(v, u),
    }
}

/// The pass / fail bounds of a criterion of a verdict document, in words.
fn bounds_text(c: &Value, bound_unit: &str) -> String {
    let comparison = c["threshold"]["comparison"].as_str().unwrap_or("");
    let confidence = c["threshold"]["confidence"]
        .as_f64()
        .map_or(String::new(), |p| format!(" at {}%", p * 100.0));
    match comparison {
        "mann_whitney" => format!(
            "P(slower) <= {}{confidence}",
            cell(&c["threshold"]["fail"], "")
        ),
        "two_proportion" => format!(
            "+{:.2} pt{confidence}",
            c["threshold"]["fail"].as_f64().unwrap_or(0.0) * 100.0
        ),
        _ => format!(
            "{comparison} {} / {}",
            cell(&c["threshold"]["pass"], bound_unit),
            cell(&c["threshold"]["fail"], bound_unit)
        ),
    }
}

/// Rows as an aligned text table.
pub fn aligned(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    table(&mut out, rows);
    out
}

/// A table with aligned columns.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
}

pub fn verdict_table(doc: &Value) -> String {
    let mut out = String::new();
    let verdict = doc["verdict"].as_str().unwrap_or("?");
    let decision = doc["decision"].as_str().unwrap_or("?");
    let _ = writeln!(
        out,
        "gate {} · phase {} · window {}s · evaluated {}",
        doc["gate"].as_str().unwrap_or("?"),
        doc["phase"].as_str().unwrap_or("?"),
        doc["window_seconds"],
        doc["evaluated_at"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "VERDICT: {} -> {}\n",
        verdict.to_uppercase(),
        decision.to_uppercase()
    );
    let mut rows = vec![
        [
            "cohort",
            "selector",
            "requests",
            "errors",
            "error rate",
            "p50",
            "p95",
            "p99",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for side in ["canary", "baseline"] {
        let c = &doc[side];
        rows.push(vec![
            side.into(),
            c["selector"].as_str().unwrap_or("").into(),
            c["requests"].to_string(),
            c["errors"].to_string(),
            num(&c["error_rate"], "%"),
            num(&c["latency_ms"]["p50"], "ms"),
            num(&c["latency_ms"]["p95"], "ms"),
            num(&c["latency_ms"]["p99"], "ms"),
        ]);
    }
    table(&mut out, &rows);
    out.push('\n');
    let mut rows = vec![
        [
            "criterion",
            "result",
            "observed",
            "baseline",
            "pass / fail",
            "n canary/baseline",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in doc["criteria"].as_array().into_iter().flatten() {
        let metric = c["metric"].as_str().unwrap_or("");
        let comparison = c["threshold"]["comparison"].as_str().unwrap_or("");
        let value_unit = unit_of(metric, "absolute");
        let bound_unit = unit_of(metric, comparison);
        let bounds = bounds_text(c, bound_unit);
        rows.push(vec![
            c["name"].as_str().unwrap_or("").into(),
            c["result"].as_str().unwrap_or("").into(),
            cell(&c["observed"], value_unit),
            cell(&c["baseline"], value_unit),
            bounds,
            format!("{}/{}", c["canary_requests"], c["baseline_requests"]),
        ]);
    }
    table(&mut out, &rows);
    if let Some(reasons) = doc["reasons"].as_array().filter(|r| !r.is_empty()) {
        out.push_str("\nwhy:\n");
        for r in reasons {
            let _ = writeln!(out, "  - {}", r.as_str().unwrap_or(""));
        }
    }
    out
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders a SQL result (`{columns, rows, truncated}`) as an aligned table, CSV or JSON.
pub fn sql_output(result: &Value, csv: bool, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
    }
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(plain)
        .collect();
    let rows: Vec<Vec<String>> = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_array().into_iter().flatten().map(plain).collect())
        .collect();
    let mut out = String::new();
    if csv {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let _ = writeln!(
            out,
            "{}",
            columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(",")
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "{}",
                r.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",")
            );
        }
        return out;
    }
    let mut all = vec![columns];
    all.extend(rows);
    table(&mut out, &all);
    if result["truncated"].as_bool() == Some(true) {
        out.push_str("  (truncated: more rows than --max-rows)\n");
    }
    out
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
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1} ms"))
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.2}%", x * 100.0))
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

/// The criteria of a verdict document (or of the period's evaluation, serialized the same way).
fn criteria_md(out: &mut String, criteria: &Value) {
    let mut rows = Vec::new();
    for c in criteria.as_array().into_iter().flatten() {
        let metric = c["metric"].as_str().unwrap_or("");
        let comparison = c["threshold"]["comparison"].as_str().unwrap_or("");
        let value_unit = unit_of(metric, "absolute");
        rows.push(vec![
            c["name"].as_str().unwrap_or("").to_string(),
            c["result"].as_str().unwrap_or("").to_string(),
            cell(&c["observed"], value_unit),
            cell(&c["baseline"], value_unit),
            bounds_text(c, unit_of(metric, comparison)),
            format!("{} / {}", c["canary_requests"], c["baseline_requests"]),
        ]);
    }
    md_table(
        out,
        &[
            "criterion",
            "result",
            "observed",
            "baseline",
            "threshold (pass / fail)",
            "sample size (canary / baseline)",
        ],
        2,
        &rows,
    );
}

/// The daily canary report as Markdown: recommendation first, then cohorts, metrics canary vs
/// baseline, the criteria over the period, the verdict history and the issues found.
pub fn daily_markdown(r: &crate::daily::DailyReport) -> String {
    use slogate_gate::Decision;
    use slogate_history::baseline::rfc3339;
    let mut out = String::new();
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

    out.push_str("## Cohorts\n\n");
    let cohorts: Vec<&crate::daily::CohortStats> = std::iter::once(&r.canary)
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
    md_table(&mut out, &["cohort", "selector", "source"], 99, &rows);
    if r.baseline.is_none() {
        out.push_str("\nNo baseline: the gate's criteria are absolute.\n");
    }
    out.push('\n');

    out.push_str("## Metrics summary\n\n");
    let b = r.baseline.as_ref();
    let bf = |f: fn(&crate::daily::CohortStats) -> Option<f64>| b.and_then(f);
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
    md_table(
        &mut out,
        &["metric", "canary", "baseline", "delta"],
        1,
        &rows,
    );
    out.push_str("\nPercentiles are read from the period's merged latency sketches (within 0.4%), not averaged from per-slot percentiles.\n\n");

    let _ = writeln!(out, "## Criteria over the period ({} phase)\n", r.phase);
    let period = serde_json::to_value(&r.period).unwrap_or_default();
    criteria_md(&mut out, &period["criteria"]);
    let _ = writeln!(
        out,
        "\nPeriod verdict: **{}**.\n",
        period["verdict"].as_str().unwrap_or("?")
    );

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
        md_table(&mut out, &["since", "verdict"], 99, &rows);
        if h.changes_truncated {
            let _ = writeln!(
                out,
                "\n(only the first {} changes are listed)",
                crate::daily::MAX_TIMELINE
            );
        }
        out.push('\n');
        if let Some(doc) = &h.latest {
            let _ = writeln!(
                out,
                "### Latest verdict: {} → {} ({}, phase {}, window {}s)\n",
                doc["verdict"].as_str().unwrap_or("?").to_uppercase(),
                doc["decision"].as_str().unwrap_or("?"),
                doc["evaluated_at"].as_str().unwrap_or("?"),
                doc["phase"].as_str().unwrap_or("?"),
                doc["window_seconds"]
            );
            let _ = writeln!(
                out,
                "Canary `{}` ({} requests) vs baseline `{}` ({} requests).\n",
                doc["canary"]["selector"].as_str().unwrap_or(""),
                doc["canary"]["requests"],
                doc["baseline"]["selector"].as_str().unwrap_or(""),
                doc["baseline"]["requests"]
            );
            criteria_md(&mut out, &doc["criteria"]);
            out.push('\n');
        }
    }

    out.push_str("## Issues detected\n\n");
    let mut issues: Vec<String> = r
        .period
        .criteria
        .iter()
        .filter(|c| c.result != slogate_gate::CriterionResult::Pass)
        .map(|c| {
            format!(
                "{} ({}): {}",
                c.name,
                serde_json::to_value(c.result)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                c.reason
            )
        })
        .collect();
    if let Some(doc) = &h.latest {
        issues.extend(
            doc["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .map(|x| format!("latest verdict: {x}")),
        );
    }
    if issues.is_empty() {
        out.push_str("None.\n");
    } else {
        for i in issues {
            let _ = writeln!(out, "- {i}");
        }
    }
    out
}
