//! Gates on live traffic from the load generator: the scenario table of the gates issue, the
//! Argo Rollouts contract (Argo's own jsonpath and expr libraries against the live endpoint), the
//! CLI's exit codes, and the gRPC VerdictService through stubs generated from proto/.

use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const GATES: &str = "
gates:
  - name: checkout
    service: checkout
    window: 2m
    min_requests: 100
    baseline: {version: v1}
    criteria:
      - {name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
      - {name: slower, test: mann_whitney, confidence: 0.99, max_effect: 0.55}
    phases:
      - name: canary
        criteria:
          - {name: error-rate, metric: error_rate, pass: 0.02, fail: 0.05}
      - name: ga
        criteria:
          - {name: error-rate, metric: error_rate, pass: 0.005, fail: 0.01}
";

fn cohort(version: &str, weight: f64, median_ms: f64, error_rate: f64) -> CohortSpec {
    let mut c = CohortSpec::new("checkout", version, LatencyDist::lognormal(median_ms, 0.5));
    c.weight = weight;
    c.error_rate = error_rate;
    c
}

/// Feeds the cohorts through the load generator over OTLP/gRPC and waits until the server has
/// every span.
fn feed(server: &Server) {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let cohorts = vec![
        cohort("v1", 0.40, 50.0, 0.003),
        cohort("ok", 0.15, 50.0, 0.003),
        cohort("slow", 0.15, 70.0, 0.003),
        cohort("err3", 0.15, 50.0, 0.03),
        cohort("err15", 0.15, 50.0, 0.015),
    ];
    let mut sc = Scenario::new(
        target.clone(),
        Rate::PerSecond(20_000.0),
        Duration::from_secs(2),
        cohorts,
    );
    sc.seed = 7;
    let report = slogate_load::run_blocking(&sc).expect("load run");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    // A thin canary: a few dozen requests, under the gate's minimum of 100.
    let mut thin = Scenario::new(
        target,
        Rate::PerSecond(40.0),
        Duration::from_secs(1),
        vec![cohort("thin", 1.0, 50.0, 0.0)],
    );
    thin.batch_size = 8;
    thin.seed = 8;
    let thin_report = slogate_load::run_blocking(&thin).expect("thin run");
    let thin_spans = thin_report.spans_sent;
    assert!(
        (1..100).contains(&thin_spans),
        "thin cohort sent {thin_spans} spans"
    );
    let total = report.spans_sent + thin_spans;
    let sli = server.sli_when("service=checkout&window=2m", total);
    assert_eq!(sli["requests"].as_u64(), Some(total), "{sli}");
}

/// The Go harness built from tests/argo-contract (Argo Rollouts' jsonpath and expr libraries).
fn argo_contract() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = format!("{}/argo-contract", env!("CARGO_TARGET_TMPDIR"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/argo-contract");
        let status = Command::new("go")
            .args(["build", "-o", &out, "."])
            .current_dir(dir)
            .status()
            .expect("the Go toolchain is needed to build tests/argo-contract");
        assert!(status.success(), "go build of tests/argo-contract failed");
        out
    })
}

#[test]
fn gate_scenarios_on_live_traffic() {
    let server = Server::start(GATES);
    feed(&server);
    // (canary version, phase, baseline version, verdict, decision, failing criterion)
    let cases = [
        ("ok", "canary", "v1", "pass", "proceed", None),
        (
            "slow",
            "canary",
            "v1",
            "fail",
            "rollback",
            Some(("p95-vs-baseline", "fail")),
        ),
        (
            "err3",
            "canary",
            "v1",
            "inconclusive",
            "hold",
            Some(("error-rate", "marginal")),
        ),
        ("err15", "canary", "v1", "pass", "proceed", None),
        (
            "err15",
            "ga",
            "v1",
            "fail",
            "rollback",
            Some(("error-rate", "fail")),
        ),
        (
            "thin",
            "canary",
            "v1",
            "inconclusive",
            "hold",
            Some(("error-rate", "no_data")),
        ),
        // The baseline has no data at all: never a pass, even for a perfect canary.
        (
            "ok",
            "canary",
            "v9",
            "inconclusive",
            "hold",
            Some(("p95-vs-baseline", "no_data")),
        ),
    ];
    for (canary, phase, baseline, verdict, decision, criterion) in cases {
        let path = format!(
            "/api/v1/gates/checkout/verdict?phase={phase}&canary.version={canary}&baseline.version={baseline}"
        );
        let doc = server.get_json(&path);
        let ctx = format!(
            "{canary}/{phase}/{baseline}: {}",
            serde_json::to_string_pretty(&doc["reasons"]).unwrap()
        );
        assert_eq!(doc["verdict"], verdict, "{ctx}");
        assert_eq!(doc["decision"], decision, "{ctx}");
        assert_eq!(doc["phase"], phase);
        assert_eq!(
            doc["canary"]["selector"],
            format!("service=checkout,version={canary}")
        );
        for c in doc["criteria"].as_array().unwrap() {
            for field in [
                "name",
                "metric",
                "result",
                "observed",
                "baseline",
                "threshold",
                "canary_requests",
                "baseline_requests",
                "reason",
            ] {
                assert!(c.get(field).is_some(), "{field} missing in {c}");
            }
            assert!(!c["reason"].as_str().unwrap().is_empty());
        }
        if let Some((name, result)) = criterion {
            let c = doc["criteria"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {doc}"));
            assert_eq!(c["result"], result, "{ctx}");
        }
        let failing = doc["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["result"] != "pass")
            .count();
        assert_eq!(
            doc["reasons"].as_array().unwrap().len(),
            failing,
            "one reason per criterion that did not pass"
        );

        // The POST form gives the same verdict.
        let body = serde_json::json!({"phase": phase, "canary": {"version": canary}, "baseline": {"version": baseline}});
        let resp = reqwest::blocking::Client::new()
            .post(server.api_url("/api/v1/gates/checkout/verdict"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let posted: serde_json::Value = resp.json().unwrap();
        assert_eq!(posted["verdict"], verdict);

        // Argo Rollouts reads the same endpoint through the AnalysisTemplate in deploy/argo, as
        // the last look of a one-look step: its verdict is the step's.
        let argo = argo_contract_phase(&server, phase, canary, baseline, "1", "1m");
        let want = match verdict {
            "pass" => "Successful",
            "fail" => "Failed",
            _ => "Inconclusive",
        };
        assert_eq!(argo, want, "argo measurement for {canary}/{phase}");

        // A CI step: the exit code is the verdict.
        let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
            .args([
                "verdict",
                "checkout",
                "--phase",
                phase,
                "--canary",
                &format!("version={canary}"),
                "--baseline",
                &format!("version={baseline}"),
            ])
            .args(["--server", &server.api_url("")])
            .output()
            .unwrap();
        let code = match verdict {
            "pass" => 0,
            "fail" => 1,
            _ => 2,
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{stdout}");
        assert!(
            stdout.contains(&format!("VERDICT: {}", verdict.to_uppercase())),
            "{stdout}"
        );
    }

    // Before the last look of a step, only a fail decides: a thin canary keeps the step going
    // (Successful measurement, more data to come) and a regression rolls back at once.
    assert_eq!(
        argo_contract_phase(&server, "ga", "thin", "v1", "10", "1m"),
        "Successful"
    );
    assert_eq!(
        argo_contract_phase(&server, "ga", "slow", "v1", "10", "1m"),
        "Failed"
    );
    // The same look asked again (a retry) is the same document, not a new look.
    let doc = server.get_json(
        "/api/v1/gates/checkout/verdict?phase=ga&canary.version=thin&baseline.version=v1&analysis=checkout-ga-thin&looks=10&interval=1m",
    );
    assert_eq!(doc["verdict"], "inconclusive", "{doc}");
    let a = &doc["analysis"];
    assert_eq!(
        (&a["id"], &a["look"], &a["looks"], &a["final"]),
        (
            &"checkout-ga-thin".into(),
            &1.into(),
            &10.into(),
            &false.into()
        ),
        "{doc}"
    );
    assert!(
        a["spent"].as_f64().unwrap() < 1e-6,
        "O'Brien-Fleming spends ~nothing at look 1: {a}"
    );
    let (status, body) = server
        .get("/api/v1/gates/checkout/verdict?canary.version=ok&looks=3")
        .unwrap();
    assert_eq!(
        (status, body.contains("analysis=<id>")),
        (400, true),
        "{body}"
    );

    // Errors are loud: Argo records them as measurement errors, the CLI exits 3.
    let (status, body) = server
        .get("/api/v1/gates/nope/verdict?canary.version=ok")
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body) = server
        .get("/api/v1/gates/checkout/verdict?canary_version=ok")
        .unwrap();
    assert_eq!(
        (
            status,
            body.contains("unknown query parameter `canary_version`")
        ),
        (400, true),
        "{body}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
        .args(["verdict", "nope", "--server", &server.api_url("")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
        .args(["verdict", "checkout", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));

    // Every evaluation was recorded, newest first, and the gauges show the last one per phase.
    let history = server.get_json("/api/v1/verdicts?gate=checkout&limit=1000");
    assert_eq!(
        history["verdicts"].as_array().unwrap().len(),
        cases.len() * 4 + 2
    );
    assert_eq!(
        server.metric("slogate_gate_verdict{gate=\"checkout\",phase=\"ga\",verdict=\"fail\"}"),
        1.0
    );
    let listing = server.get_json("/api/v1/gates");
    assert_eq!(listing["gates"][0]["phases"].as_array().unwrap().len(), 2);

    // gRPC VerdictService, called through stubs generated from proto/slogate/v1/verdict.proto.
    let out = python_verdict(
        &server,
        &[
            "--gate",
            "checkout",
            "--phase",
            "canary",
            "--canary",
            "version=slow",
            "--baseline",
            "version=v1",
        ],
    );
    assert_eq!(out["verdict"], "OUTCOME_FAIL", "{out}");
    assert_eq!(out["decision"], "DECISION_ROLLBACK");
    assert_eq!(out["canary"]["selector"], "service=checkout,version=slow");
    assert!(
        out["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "p95-vs-baseline" && c["result"] == "CRITERION_RESULT_FAIL")
    );
    let out = python_verdict(&server, &["--gate", "nope"]);
    assert_eq!(out["grpc_error"], "NOT_FOUND", "{out}");
    let out = python_verdict(&server, &["--list"]);
    assert_eq!(
        out["gates"][0]["phases"],
        serde_json::json!(["canary", "ga"])
    );
}

/// The phase Argo would record for one measurement of the template in deploy/argo, as look
/// `looks` / `interval` of the analysis `checkout-<phase>-<canary>`.
/// The `checkout` gate of [`GATES`], written as a request carries it.
fn inline_checkout() -> serde_json::Value {
    serde_json::json!({
        "service": "checkout",
        "window": "2m",
        "min_requests": 100,
        "baseline": {"version": "v1"},
        "criteria": [
            {"name": "p95-vs-baseline", "metric": "latency_p95", "compare": "ratio", "pass": 1.1, "fail": 1.3},
            {"name": "slower", "test": "mann_whitney", "confidence": 0.99, "max_effect": 0.55},
        ],
        "phases": [
            {"name": "canary", "criteria": [{"name": "error-rate", "metric": "error_rate", "pass": 0.02, "fail": 0.05}]},
            {"name": "ga", "criteria": [{"name": "error-rate", "metric": "error_rate", "pass": 0.005, "fail": 0.01}]},
        ],
    })
}

fn post_verdict(server: &Server, gate: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = reqwest::blocking::Client::new()
        .post(server.api_url(&format!("/api/v1/gates/{gate}/verdict")))
        .json(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

#[test]
fn gates_carried_in_requests_judge_as_configured_gates_do() {
    let server = Server::start(GATES);
    feed(&server);

    // The same definition, configured or carried in the request, gives the same verdict on
    // every scenario, criterion by criterion.
    let mut fingerprints = std::collections::BTreeSet::new();
    for (canary, phase) in [
        ("ok", "canary"),
        ("slow", "canary"),
        ("err3", "canary"),
        ("err15", "ga"),
        ("thin", "canary"),
    ] {
        let configured = server.get_json(&format!(
            "/api/v1/gates/checkout/verdict?phase={phase}&canary.version={canary}&baseline.version=v1"
        ));
        let body = serde_json::json!({
            "phase": phase,
            "canary": {"version": canary},
            "gate": inline_checkout(),
        });
        let (status, inline) = post_verdict(&server, "checkout-team", &body);
        assert_eq!(status, 200, "{inline}");
        let ctx = format!("{canary}/{phase}: {inline}");
        for field in ["verdict", "decision", "phase", "window_seconds", "reasons"] {
            assert_eq!(inline[field], configured[field], "{field} of {ctx}");
        }
        let outcomes = |doc: &serde_json::Value| -> Vec<(String, String, String)> {
            doc["criteria"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let name = c["name"].as_str().unwrap().to_string();
                    (name, c["result"].to_string(), c["observed"].to_string())
                })
                .collect()
        };
        assert_eq!(outcomes(&inline), outcomes(&configured), "{ctx}");
        assert_eq!(inline["gate"], "checkout-team");
        assert!(configured.get("inline").is_none(), "{configured}");
        let fingerprint = inline["inline"].as_str().unwrap().to_string();
        assert!(
            fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fingerprint}"
        );
        fingerprints.insert(fingerprint);
    }
    assert_eq!(fingerprints.len(), 1, "one definition, one fingerprint");
    // Another definition under the same name is told apart.
    let mut stricter = inline_checkout();
    stricter["min_requests"] = 200.into();
    let body = serde_json::json!({"canary": {"version": "ok"}, "gate": stricter});
    let (status, doc) = post_verdict(&server, "checkout-team", &body);
    assert_eq!(status, 200, "{doc}");
    assert!(!fingerprints.contains(doc["inline"].as_str().unwrap()));

    // Argo Rollouts, through the template an application's repository would hold: the gate
    // travels in `jsonBody`, the cohorts and the analysis in the URL.
    for (canary, want) in [("ok", "Successful"), ("slow", "Failed")] {
        let args = [
            ("phase", "canary"),
            ("canary-hash", canary),
            ("stable-hash", "v1"),
            ("looks", "1"),
            ("interval", "1m"),
        ];
        let got = argo_template_phase(&server, "analysis-template-inline.yaml", &args);
        assert_eq!(got, want, "argo measurement for {canary}");
    }

    // Validated exactly as the configuration is: each error names the field in the body.
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut g = inline_checkout();
        edit(&mut g);
        serde_json::json!({"canary": {"version": "ok"}, "gate": g})
    };
    let too_many: Vec<serde_json::Value> = (0..65)
        .map(|i| serde_json::json!({"name": format!("e{i}"), "metric": "error_rate", "pass": 0.01, "fail": 0.02}))
        .collect();
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "checkout-team",
            with(&|g| g["criterias"] = serde_json::json!([])),
            "gate",
            "criterias",
        ),
        (
            "checkout-team",
            with(&|g| g["window"] = "30d".into()),
            "gate.window",
            "coarse_retention",
        ),
        (
            "checkout-team",
            with(&|g| g["criteria"][0]["metric"] = "latency_fastest".into()),
            "gate.criteria[0]",
            "latency_fastest",
        ),
        (
            "checkout-team",
            with(&|g| g["phases"][1]["name"] = "canary".into()),
            "gate.phases[1].name",
            "unique",
        ),
        (
            "checkout-team",
            with(&|g| g["name"] = "other".into()),
            "gate.name",
            "differs",
        ),
        (
            "checkout-team",
            with(&|g| g["criteria"] = too_many.clone().into()),
            "gate.criteria",
            "at most 64",
        ),
        (
            "checkout-team",
            serde_json::json!({"gate": 5}),
            "gate",
            "must be an object",
        ),
        ("bad name!", with(&|_| {}), "gate.name", "[A-Za-z0-9._-]"),
        ("checkout", with(&|_| {}), "gate.name", "is a gate of"),
    ];
    for (name, body, field, says) in cases {
        let (status, doc) = post_verdict(&server, name, &body);
        let error = doc["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{name} {body}: {doc}");
        assert!(
            error.contains(&format!("request body: {field}")),
            "{field}: {error}"
        );
        assert!(error.contains(says), "{says}: {error}");
    }
    // The query string or the body, not both.
    let resp = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/gates/checkout-team/verdict?canary.version=ok"))
        .json(&serde_json::json!({"canary": {"version": "ok"}, "gate": inline_checkout()}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    // A name that was only ever carried in requests is not a configured gate.
    let (status, _) = server.get("/api/v1/gates/checkout-team/verdict").unwrap();
    assert_eq!(status, 404);

    // Bounded: past 1,000 names carried in requests, the least recently evaluated ones' last
    // verdicts and counters are forgotten.
    let tiny = serde_json::json!({
        "service": "checkout",
        "criteria": [{"name": "e", "metric": "error_rate", "pass": 0.01, "fail": 0.02}],
    });
    for i in 0..1001 {
        let body = serde_json::json!({"canary": {"version": "ok"}, "gate": tiny});
        let (status, doc) = post_verdict(&server, &format!("many-{i}"), &body);
        assert_eq!(status, 200, "{doc}");
    }
    let (_, metrics) = server.get("/metrics").unwrap();
    let kept = |i: usize| {
        let label = format!("slogate_gate_evaluations_total{{gate=\"many-{i}\"");
        metrics.lines().any(|l| l.starts_with(&label))
    };
    let inline_gates: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("slogate_gate_evaluations_total{gate=\""))
        .filter_map(|l| l.split('"').next())
        .filter(|g| *g != "checkout")
        .collect();
    // checkout-team (evaluated before the loop) and many-0 were the least recent.
    assert_eq!(inline_gates.len(), 1000, "{inline_gates:?}");
    assert!(!inline_gates.contains("checkout-team"));
    assert!(!kept(0) && kept(1) && kept(1000));
}

pub(crate) fn argo_contract_phase(
    server: &Server,
    phase: &str,
    canary: &str,
    stable: &str,
    looks: &str,
    interval: &str,
) -> String {
    let args = [
        ("gate", "checkout"),
        ("phase", phase),
        ("canary-hash", canary),
    ];
    let more = [
        ("stable-hash", stable),
        ("looks", looks),
        ("interval", interval),
    ];
    argo_template_phase(
        server,
        "analysis-template.yaml",
        &[&args[..], &more[..]].concat(),
    )
}

/// The measurement phase Argo Rollouts records for one run of `deploy/argo/<template>` with
/// these arguments, against this test's server.
fn argo_template_phase(server: &Server, template: &str, args: &[(&str, &str)]) -> String {
    // The template names the in-cluster service; point it at this test's server as a
    // port-forward would, leaving everything else as written.
    let text = std::fs::read_to_string(format!(
        "{}/../../deploy/argo/{template}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(text.contains("http://slogate.observability.svc.cluster.local:8080/"));
    let local = text.replace(
        "http://slogate.observability.svc.cluster.local:8080/",
        &server.api_url("/"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(template);
    std::fs::write(&path, local).unwrap();
    let mut cmd = Command::new(argo_contract());
    cmd.arg("-template").arg(&path);
    for (k, v) in args {
        cmd.args(["-arg", &format!("{k}={v}")]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn python_verdict(server: &Server, args: &[&str]) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/verdict_client.py"
    );
    let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let out = Command::new(crate::exporters::python())
        .args([
            script,
            "--proto-root",
            proto_root,
            "--target",
            &format!("127.0.0.1:{}", server.grpc),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
