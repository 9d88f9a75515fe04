//! The OpenAPI description against the running server: schemathesis (from PyPI, in the test
//! venv) generates requests from `/api/openapi.json`, valid and invalid, and checks every
//! answer: no 5xx, only documented status codes and content types, bodies that match their
//! schemas, invalid input refused, 405 for undeclared methods. And every error of the API is
//! `{"error": "..."}`, including the answers axum writes itself.

use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = "
gates:
  - name: checkout
    service: checkout
    window: 5m
    min_requests: 100
    baseline: {version: v1}
    criteria:
      - {name: p95, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
      - {name: errors, metric: error_rate, pass: 0.01, fail: 0.02}
slos:
  - {name: checkout-availability, service: checkout, objective: 0.999, period: 1h}
";

/// The schemathesis next to the test venv's Python.
fn schemathesis() -> std::path::PathBuf {
    let python = std::path::PathBuf::from(crate::exporters::python());
    let st = python.with_file_name("schemathesis");
    assert!(
        st.exists(),
        "schemathesis is needed (tests/python/requirements.txt): run scripts/test, or pip install it into {}",
        python.display()
    );
    st
}

#[test]
fn schemathesis_finds_no_failure_against_the_openapi_description() {
    let server = Server::start(CONFIG);
    // Traffic, a verdict and so SLO and alert state, so the answers are not all empty.
    let cohorts = ["v1", "v2"]
        .map(|v| CohortSpec::new("checkout", v, LatencyDist::lognormal(40.0, 0.4)))
        .to_vec();
    let sc = Scenario::new(
        Target {
            endpoint: format!("http://127.0.0.1:{}", server.grpc),
            ..Target::default()
        },
        Rate::PerSecond(2000.0),
        Duration::from_secs(1),
        cohorts,
    );
    let report = slogate_load::run_blocking(&sc).expect("load run");
    server.sli_when("service=checkout&window=5m", report.spans_sent);
    let doc = server.get_json("/api/v1/gates/checkout/verdict?canary.version=v2");
    assert_eq!(doc["gate"], "checkout");

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(schemathesis())
        .current_dir(dir.path())
        .args(["run", &server.api_url("/api/openapi.json")])
        // Every check but "schema-valid data is accepted": a window longer than the configured
        // retention, SQL that does not parse or `looks` without `analysis` are valid strings and
        // numbers to a schema, and rightly refused by the server.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "40", "--workers", "2"])
        .args(["--generation-database", "none", "--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The report can quote large generated bodies; the summary is at the end.
    let tail: String = stdout
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| l.chars().take(400).collect::<String>() + "\n")
        .collect();
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Tested: 17"), "{tail}");
    assert!(stdout.contains(" passed"), "{tail}");
    assert!(!stdout.contains("failures"), "{tail}");
}

#[test]
fn every_api_error_is_one_json_shape() {
    let server = Server::start(CONFIG);
    let client = reqwest::blocking::Client::new();
    let url = |p: &str| server.api_url(p);
    let cases: Vec<(reqwest::blocking::RequestBuilder, u16)> = vec![
        // A method the route does not take (axum's own answer, empty before).
        (client.put(url("/api/v1/sli")), 405),
        (client.delete(url("/api/v1/gates/checkout/verdict")), 405),
        (
            client
                .post(url("/api/v1/gates"))
                .json(&serde_json::json!({})),
            405,
        ),
        // A path segment axum cannot decode (plain text before).
        (client.get(url("/api/v1/slos/%FF")), 400),
        (client.get(url("/api/v1/verdicts?limit=x")), 400),
        // No such path, no such gate, a body that is not JSON, JSON that is not a request.
        (client.get(url("/api/v1/nothing")), 404),
        (client.get(url("/api/v1/gates/nope/verdict")), 404),
        (
            client
                .post(url("/api/v1/sql"))
                .header("content-type", "text/plain")
                .body("SELECT 1"),
            415,
        ),
        (
            client
                .post(url("/api/v1/gates/checkout/verdict"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        // A body over the API's 1 MiB.
        (
            client
                .post(url("/api/v1/sql"))
                .header("content-type", "application/json")
                .body(vec![b' '; (1 << 20) + 1]),
            413,
        ),
    ];
    for (req, want) in cases {
        let req = req.build().unwrap();
        let what = format!("{} {}", req.method(), req.url());
        let resp = client.execute(req).unwrap();
        assert_eq!(resp.status().as_u16(), want, "{what}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{what}: {ct}");
        let body: serde_json::Value = resp.json().unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{what}: {body}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{what}: {body}");
    }
    // The probes and /metrics stay plain text.
    let (status, body) = server.get("/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}
