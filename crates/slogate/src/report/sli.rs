//! The SLI document of `GET /api/v1/sli` as a terminal table (`slogate sli --format table`).

use super::{Unit, aligned, cell, header, opt_pct};
use serde_json::Value;
use std::fmt::Write as _;

pub fn table(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SLI {} · window {}s ({}s covered)",
        v["selector"].as_str().unwrap_or("?"),
        v["window_seconds"],
        v["covered_seconds"]
    );
    let lat = |q: &str| cell(v["latency_ms"][q].as_f64(), Unit::Ms);
    let mut rows = vec![header(&[
        "requests",
        "errors",
        "error rate",
        "rate",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
    ])];
    rows.push(vec![
        v["requests"].to_string(),
        v["errors"].to_string(),
        opt_pct(v["error_rate"].as_f64()),
        format!("{:.1}/s", v["rate_per_second"].as_f64().unwrap_or(0.0)),
        lat("p50"),
        lat("p90"),
        lat("p95"),
        lat("p99"),
        lat("p999"),
    ]);
    out.push_str(&aligned(&rows));
    if let Some(n) = v["sampled_requests"].as_u64() {
        let _ = writeln!(
            out,
            "  traffic is sampled: the counts are estimated from {n} sampled spans"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn tables() {
        let cases = [
            (
                serde_json::json!({
                    "selector": "service=checkout", "window_seconds": 600, "covered_seconds": 600,
                    "requests": 1200, "errors": 6, "error_rate": 0.005, "rate_per_second": 2.0,
                    "latency_ms": {"p50": 20.04, "p90": 40.0, "p95": 51.0, "p99": 90.0, "p999": 120.0},
                }),
                "SLI service=checkout · window 600s (600s covered)
  requests  errors  error rate  rate   p50      p90      p95      p99      p99.9
  1200      6       0.50%       2.0/s  20.0 ms  40.0 ms  51.0 ms  90.0 ms  120.0 ms
",
            ),
            (
                serde_json::json!({
                    "selector": "service=nobody", "window_seconds": 300, "covered_seconds": 12,
                    "requests": 0, "errors": 0, "error_rate": null, "rate_per_second": 0.0,
                    "latency_ms": {"p50": null, "p90": null, "p95": null, "p99": null, "p999": null},
                    "sampled_requests": 7,
                }),
                "SLI service=nobody · window 300s (12s covered)
  requests  errors  error rate  rate   p50  p90  p95  p99  p99.9
  0         0       -           0.0/s  -    -    -    -    -
  traffic is sampled: the counts are estimated from 7 sampled spans
",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(table(&doc), want, "{doc}");
        }
    }
}
