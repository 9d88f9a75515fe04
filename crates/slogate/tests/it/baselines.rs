//! Stored baselines, the daily canary report and the SLA check, end to end: real spans through
//! the server into the Parquet history, then the CLI as a release team runs it (capture a
//! staging baseline, gate a canary against it, write the day's report, check the SLA).

use crate::harness::{Server, slogate};
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::path::Path;
use std::time::{Duration, Instant};

fn sql(server: &Server, query: &str) -> serde_json::Value {
    let (status, answer) = server.sql(query);
    assert_eq!(status, 200, "{query}: {answer}");
    answer
}

/// Polls a one-number SQL query until it returns `want`.
fn sql_until(server: &Server, query: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = sql(server, query);
        if v["rows"][0][0].as_u64() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {v}, want {want}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

struct Sent {
    spans: u64,
    errors: u64,
}

/// Sends one cohort's spans over OTLP/gRPC and waits until the history holds all of them.
fn send(
    server: &Server,
    service: &str,
    env: &str,
    version: &str,
    median_ms: f64,
    error_rate: f64,
    seed: u64,
) -> Sent {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut c = CohortSpec::new(service, version, LatencyDist::lognormal(median_ms, 0.5));
    c.env = env.to_string();
    c.error_rate = error_rate;
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(2000.0),
        Duration::from_millis(1500),
        vec![c],
    );
    sc.batch_size = 100;
    sc.seed = seed;
    let report = slogate_load::run_blocking(&sc).expect("load run");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    let sent = Sent {
        spans: report.spans_sent,
        errors: report.per_cohort[0].errors_sent,
    };
    let q = format!(
        "SELECT sum(requests) FROM requests WHERE service = '{service}' AND env = '{env}' AND version = '{version}'"
    );
    sql_until(server, &q, sent.spans);
    sent
}

const GATES: &str = "
gates:
  - name: release
    service: checkout
    window: 5m
    min_requests: 100
    canary: {version: v2}
    baseline: {stored: staging-v1}
    criteria:
      - {name: p95-vs-staging, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
      - {name: slower, test: mann_whitney, confidence: 0.99, max_effect: 0.6}
      - {name: errors-vs-staging, test: two_proportion, confidence: 0.99, max_difference: 0.02}
  - name: release-ok
    service: checkout
    window: 5m
    min_requests: 100
    canary: {version: v3}
    baseline: {stored: staging-v1}
    criteria:
      - {name: p95-vs-staging, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
";

fn config(dir: &Path) -> String {
    format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  dir: {}\n  flush_interval: 1s\n{GATES}",
        dir.display()
    )
}

fn criterion<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {doc}"))
}

/// `| p95 latency | 61.2 ms | ...` → the canary and baseline cells of a metrics-summary row.
fn summary_row<'a>(report: &'a str, metric: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("| {metric} |")))
        .unwrap_or_else(|| panic!("no {metric} row in\n{report}"));
    line.split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn stored_baseline_gates_and_daily_report() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let cfg_text = config(&dir);
    let cfg_path = data.path().join("slogate.yaml");
    std::fs::write(
        &cfg_path,
        format!("# slogate configuration (report test)\n{cfg_text}"),
    )
    .unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let server = Server::start(&cfg_text);
    let dir_s = dir.to_str().unwrap();

    // Before any capture: a gate naming a missing baseline is an error, never a verdict.
    let (status, body) = server.get("/api/v1/gates/release/verdict").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("stored baseline \\\"staging-v1\\\" is not there"),
        "{body}"
    );

    // The staging run before the release, captured as a baseline.
    let staging = send(&server, "checkout", "staging", "v1", 50.0, 0.005, 1);
    let (code, _, err) = slogate(&[
        "baseline",
        "capture",
        "--name",
        "staging-v1",
        "--service",
        "checkout",
        "--env",
        "prod",
        "--from",
        "-10m",
        "--dir",
        dir_s,
    ]);
    assert_eq!(
        code, 2,
        "no prod traffic yet: refused, never saved empty: {err}"
    );
    assert!(
        err.contains("no requests for service=checkout,env=prod"),
        "{err}"
    );
    let (code, _, err) = slogate(&[
        "baseline",
        "capture",
        "--name",
        "staging-v1",
        "--service",
        "checkout",
        "--env",
        "staging",
        "--from",
        "-10m",
        "--min-requests",
        "1000000",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("only {} requests", staging.spans)),
        "{err}"
    );
    let (code, out, err) = slogate(&[
        "baseline",
        "capture",
        "--name",
        "staging-v1",
        "--service",
        "checkout",
        "--env",
        "staging",
        "--from",
        "-10m",
        "--to",
        "now",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("saved baseline staging-v1"), "{out}");
    let (code, _, err) = slogate(&[
        "baseline",
        "capture",
        "--name",
        "staging-v1",
        "--service",
        "checkout",
        "--env",
        "staging",
        "--from",
        "-10m",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("already exists"), "{err}");

    // The stored numbers are the history's: counts exactly, p95 from the same merged sketch.
    let (code, out, _) = slogate(&[
        "baseline",
        "show",
        "staging-v1",
        "--format",
        "json",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["total"]["requests"].as_u64(),
        Some(staging.spans),
        "{shown}"
    );
    assert_eq!(shown["total"]["errors"].as_u64(), Some(staging.errors));
    assert_eq!(shown["selector"], "service=checkout,env=staging");
    let v = sql(
        &server,
        "SELECT sketch_quantile(sketch, 0.95) FROM requests WHERE env = 'staging'",
    );
    let sql_p95 = v["rows"][0][0].as_f64().unwrap();
    assert!(
        (shown["total"]["latency_ms"]["p95"].as_f64().unwrap() - sql_p95).abs() < 0.01,
        "{shown} vs {sql_p95}"
    );
    let listed = server.get_json("/api/v1/baselines");
    assert_eq!(listed["baselines"][0]["name"], "staging-v1", "{listed}");

    // A regressed canary (40% slower, 4% errors) fails against the stored staging sketches;
    // an equal one passes. The server picked the new baseline up without a restart.
    let slow = send(&server, "checkout", "prod", "v2", 70.0, 0.04, 2);
    let equal = send(&server, "checkout", "prod", "v3", 50.0, 0.005, 3);
    let doc = server.get_json("/api/v1/gates/release/verdict");
    assert_eq!(
        (doc["verdict"].as_str(), doc["decision"].as_str()),
        (Some("fail"), Some("rollback")),
        "{doc}"
    );
    assert_eq!(
        doc["baseline"]["selector"],
        "stored:staging-v1 (service=checkout,env=staging)"
    );
    assert_eq!(doc["baseline"]["requests"].as_u64(), Some(staging.spans));
    let stored = &doc["baseline"]["stored"];
    assert_eq!(stored["name"], "staging-v1");
    assert_eq!(stored["requests"].as_u64(), Some(staging.spans));
    assert!(
        stored["from"].as_str().unwrap().ends_with('Z') && stored["captured_at"].is_string(),
        "{stored}"
    );
    assert_eq!(doc["canary"]["requests"].as_u64(), Some(slow.spans));
    let p95 = criterion(&doc, "p95-vs-staging");
    assert_eq!(p95["result"], "fail", "{p95}");
    assert!(
        (p95["baseline"].as_f64().unwrap() - sql_p95).abs() / sql_p95 < 0.001,
        "{p95} vs {sql_p95}"
    );
    assert_eq!(p95["baseline_requests"].as_u64(), Some(staging.spans));
    assert_eq!(criterion(&doc, "errors-vs-staging")["result"], "fail");
    assert_eq!(criterion(&doc, "slower")["result"], "fail");

    let doc = server.get_json("/api/v1/gates/release/verdict?canary.version=v3");
    assert_eq!(doc["verdict"], "pass", "{}", doc["reasons"]);
    assert_eq!(doc["canary"]["requests"].as_u64(), Some(equal.spans));
    let doc = server.get_json("/api/v1/gates/release-ok/verdict");
    assert_eq!(doc["verdict"], "pass", "{}", doc["reasons"]);
    // The stored baseline can also be named per request; a live cohort still works.
    let doc =
        server.get_json("/api/v1/gates/release/verdict?canary.version=v3&baseline.version=v2");
    assert_eq!(doc["baseline"]["selector"], "service=checkout,version=v2");
    assert!(
        doc.get("stored").is_none() && doc["baseline"].get("stored").is_none(),
        "{doc}"
    );
    let (status, body) = server
        .get("/api/v1/gates/release/verdict?baseline.stored=nope")
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .get("/api/v1/gates/release/verdict?baseline.stored=..%2Fx")
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let (code, out, _) = slogate(&["verdict", "release", "--server", &server.api_url("")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stored:staging-v1"), "{out}");

    // Every verdict reaches the history before the report reads it.
    sql_until(
        &server,
        "SELECT count(*) FROM verdicts WHERE gate = 'release'",
        4,
    );
    sql_until(
        &server,
        "SELECT count(*) FROM verdicts WHERE gate = 'release-ok'",
        1,
    );

    // The report of the regressed canary: numbers equal to SQL over the same data, the verdict
    // history, and a rollback recommendation.
    let out_file = data.path().join("canary-day-1.md");
    let (code, _, err) = slogate(&[
        "report",
        "release",
        "--since",
        "1h",
        "--config",
        cfg,
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let report = std::fs::read_to_string(&out_file).unwrap();
    for section in [
        "# Canary report: release (default)",
        "## Recommendation",
        "## Cohorts",
        "## Metrics summary",
        "## Criteria over the period",
        "## Verdict history",
        "### Latest verdict: FAIL → rollback",
        "## Issues detected",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
    assert!(report.contains("**ROLLBACK**"), "{report}");
    assert!(
        report.contains("[ ] Proceed | [ ] Hold and investigate | [x] Rollback"),
        "{report}"
    );
    assert!(
        report.contains("`stored:staging-v1 (service=checkout,env=staging)`"),
        "{report}"
    );
    let counts = sql(
        &server,
        "SELECT verdict, count(*) FROM verdicts WHERE gate = 'release' GROUP BY verdict",
    );
    let count = |v: &str| {
        counts["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == v)
            .map_or(0, |r| r[1].as_u64().unwrap())
    };
    let line = format!(
        "4 verdicts: {} pass, {} fail, {} inconclusive.",
        count("pass"),
        count("fail"),
        count("inconclusive")
    );
    assert!(
        count("fail") >= 2 && report.contains(&line),
        "{line}\n{report}"
    );
    let v = sql(
        &server,
        "SELECT sum(requests), sum(errors), sketch_quantile(sketch, 0.95), sketch_quantile(sketch, 0.99) FROM requests WHERE service = 'checkout' AND version = 'v2'",
    );
    let row = &v["rows"][0];
    let fmt_n = |n: u64| {
        let s = n.to_string();
        s.chars().enumerate().fold(String::new(), |mut o, (i, ch)| {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                o.push(',');
            }
            o.push(ch);
            o
        })
    };
    assert_eq!(
        summary_row(&report, "requests")[1..3],
        [
            fmt_n(row[0].as_u64().unwrap()).as_str(),
            fmt_n(staging.spans).as_str()
        ]
    );
    assert_eq!(summary_row(&report, "errors")[1], fmt_n(slow.errors));
    let rate = format!("{:.2}%", slow.errors as f64 / slow.spans as f64 * 100.0);
    assert_eq!(summary_row(&report, "error rate")[1], rate);
    assert_eq!(
        summary_row(&report, "p95 latency")[1],
        format!("{:.1} ms", row[2].as_f64().unwrap())
    );
    assert_eq!(
        summary_row(&report, "p95 latency")[2],
        format!("{:.1} ms", sql_p95)
    );
    assert_eq!(
        summary_row(&report, "p99 latency")[1],
        format!("{:.1} ms", row[3].as_f64().unwrap())
    );

    // The equal canary's gate: proceed.
    let (code, report, err) = slogate(&["report", "release-ok", "--since", "1h", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(report.contains("**PROCEED**"), "{report}");
    assert!(
        report.contains("[x] Proceed | [ ] Hold and investigate | [ ] Rollback"),
        "{report}"
    );
    assert!(
        report.contains("all 1 criteria pass over the period"),
        "{report}"
    );

    // A canary without traffic: insufficient data, never proceed.
    let (code, report, err) = slogate(&[
        "report",
        "release-ok",
        "--since",
        "1h",
        "--canary",
        "version=v9",
        "--config",
        cfg,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(report.contains("**HOLD — insufficient data**"), "{report}");
    assert!(report.contains("canary has 0 requests"), "{report}");

    let (code, _, err) = slogate(&["report", "nope", "--config", cfg]);
    assert_eq!(code, 3);
    assert!(err.contains("unknown gate \"nope\""), "{err}");

    // List and delete; a deleted baseline is noticed by the server at once.
    let (code, out, _) = slogate(&["baseline", "list", "--dir", dir_s]);
    assert_eq!(code, 0);
    assert!(
        out.contains("staging-v1") && out.contains("service=checkout,env=staging"),
        "{out}"
    );
    let (code, out, _) = slogate(&["baseline", "delete", "staging-v1", "--dir", dir_s]);
    assert_eq!(code, 0, "{out}");
    let (status, body) = server.get("/api/v1/gates/release/verdict").unwrap();
    assert_eq!(status, 404, "{body}");
    let (code, _, err) = slogate(&["baseline", "show", "staging-v1", "--dir", dir_s]);
    assert_eq!(code, 3);
    assert!(err.contains("no stored baseline \"staging-v1\""), "{err}");
}

#[test]
fn sla_pass_fail_and_no_data() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let slos = "slos:\n  - {name: api-availability, service: api, objective: 0.95}\n  - {name: api-latency, service: api, objective: 0.99, latency_threshold: 10ms}\n";
    // SLOs need the coarse retention to cover the longest burn-rate window (3 days).
    let cfg_text = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 3d\nhistory:\n  dir: {}\n  flush_interval: 1s\n{slos}",
        dir.display()
    );
    let cfg_path = data.path().join("slogate.yaml");
    std::fs::write(&cfg_path, &cfg_text).unwrap();
    let server = Server::start(&cfg_text);
    let sent = send(&server, "api", "prod", "v1", 40.0, 0.01, 4);
    let dir_s = dir.to_str().unwrap();

    let (code, out, err) = slogate(&[
        "sla",
        "--service",
        "api",
        "--hours",
        "1",
        "--availability",
        "99.9",
        "--p95",
        "500ms",
        "--error-rate",
        "2%",
        "--down-error-rate",
        "20%",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SLA COMPLIANCE: PASS"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("PASS")
            && l.contains("availability")
            && l.contains("100%")),
        "{out}"
    );

    // JSON: the observed numbers are the history's.
    let (code, out, _) = slogate(&[
        "sla",
        "--service",
        "api",
        "--hours",
        "1",
        "--p95",
        "500ms",
        "--error-rate",
        "2%",
        "--format",
        "json",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requests"].as_u64(), Some(sent.spans));
    assert_eq!(v["errors"].as_u64(), Some(sent.errors));
    let q = sql(
        &server,
        "SELECT sketch_quantile(sketch, 0.95) FROM requests WHERE service = 'api'",
    );
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(
        checks[0]["observed"].as_f64(),
        q["rows"][0][0].as_f64(),
        "{v}"
    );
    assert_eq!(checks[0]["sample"].as_u64(), Some(sent.spans));
    assert_eq!(
        checks[1]["observed"].as_f64(),
        Some(sent.errors as f64 / sent.spans as f64)
    );
    assert_eq!(v["result"], "pass");

    // (flags, exit code, line that must appear)
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--p95", "20ms"], 1, "FAIL  latency p95"),
        (
            &["--error-rate", "0.2%", "--p95", "5s"],
            1,
            "FAIL  error rate",
        ),
        (
            &["--availability", "99.9", "--down-error-rate", "0.1%"],
            1,
            "FAIL  availability",
        ),
        // Targets from the configured SLOs: 95% availability passes, 99% within 10 ms does not.
        (
            &["--config", cfg_path.to_str().unwrap()],
            1,
            "slo api-latency",
        ),
        (
            &["--p95", "5s", "--min-requests", "1000000"],
            2,
            "SLA COMPLIANCE: NO DATA",
        ),
    ];
    for (flags, want, line) in cases {
        let mut args = vec!["sla", "--service", "api", "--hours", "1", "--dir", dir_s];
        args.extend_from_slice(flags);
        let (code, out, err) = slogate(&args);
        assert_eq!(code, *want, "{flags:?}: {out}{err}");
        assert!(out.contains(line), "{flags:?}: {out}");
    }
    let (code, out, _) = slogate(&[
        "sla",
        "--service",
        "api",
        "--hours",
        "1",
        "--config",
        cfg_path.to_str().unwrap(),
    ]);
    assert!(
        code == 1
            && out
                .lines()
                .any(|l| l.contains("PASS") && l.contains("slo api-availability")),
        "{out}"
    );

    // A service without traffic is no data, exit 2, never a pass.
    let (code, out, _) = slogate(&[
        "sla",
        "--service",
        "nobody",
        "--hours",
        "24",
        "--p95",
        "5s",
        "--dir",
        dir_s,
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("NO DATA"), "{out}");
    let (code, _, err) = slogate(&["sla", "--service", "nobody", "--dir", dir_s]);
    assert_eq!(code, 3);
    assert!(err.contains("no targets"), "{err}");
}
