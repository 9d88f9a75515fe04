//! Human-readable renderings of verdict documents for the terminal.

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

/// A table with aligned columns.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, s)| format!("{s:<w$}", w = widths[i])).collect();
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
    let _ = writeln!(out, "VERDICT: {} -> {}\n", verdict.to_uppercase(), decision.to_uppercase());
    let mut rows = vec![["cohort", "selector", "requests", "errors", "error rate", "p50", "p95", "p99"].map(String::from).to_vec()];
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
    let mut rows = vec![["criterion", "result", "observed", "baseline", "pass / fail", "n canary/baseline"].map(String::from).to_vec()];
    for c in doc["criteria"].as_array().into_iter().flatten() {
        let metric = c["metric"].as_str().unwrap_or("");
        let comparison = c["threshold"]["comparison"].as_str().unwrap_or("");
        let value_unit = unit_of(metric, "absolute");
        let bound_unit = unit_of(metric, comparison);
        let confidence = c["threshold"]["confidence"].as_f64().map_or(String::new(), |p| format!(" at {}%", p * 100.0));
        let bounds = match comparison {
            "mann_whitney" => format!("P(slower) <= {}{confidence}", cell(&c["threshold"]["fail"], "")),
            "two_proportion" => format!("+{:.2} pt{confidence}", c["threshold"]["fail"].as_f64().unwrap_or(0.0) * 100.0),
            _ => format!("{comparison} {} / {}", cell(&c["threshold"]["pass"], bound_unit), cell(&c["threshold"]["fail"], bound_unit)),
        };
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
        return format!("{}\n", serde_json::to_string_pretty(result).unwrap_or_default());
    }
    let columns: Vec<String> = result["columns"].as_array().into_iter().flatten().map(plain).collect();
    let rows: Vec<Vec<String>> = result["rows"].as_array().into_iter().flatten().map(|r| r.as_array().into_iter().flatten().map(plain).collect()).collect();
    let mut out = String::new();
    if csv {
        let quote = |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
        let _ = writeln!(out, "{}", columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        for r in &rows {
            let _ = writeln!(out, "{}", r.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
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
