//! Alerts end to end: an SLO burn driven by real OTLP traffic pages PagerDuty (the local
//! Events API v2 server) exactly once and resolves exactly once; low traffic never pages; an
//! alert queued while PagerDuty fails survives a SIGKILL of slogate and is delivered after the
//! restart; alerts firing at a SIGTERM stay firing across the restart (no second page, one
//! resolve) and the verdict log comes back from the history; an unreadable one starts empty
//! and `/readyz` says so.

use crate::harness::{Server, TEST_ROUTING_KEY, one_incident, wait_for};
use slogate_load::{CohortOverride, CohortSpec, LatencyDist, Phase, Rate, Scenario, Target};
use slogate_pagerduty_mock::MockServer;
use std::time::Duration;

fn fast_windows() -> &'static str {
    "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n"
}

fn mock(rt: &tokio::runtime::Runtime) -> MockServer {
    rt.block_on(MockServer::start("127.0.0.1:0".parse().unwrap()))
        .unwrap()
}

#[test]
fn slo_burn_pages_once_and_resolves_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pd = mock(&rt);
    // PagerDuty is flaky at first: the trigger is retried until it is accepted.
    pd.script(vec![429, 500, 429]);
    let outbox = tempfile::tempdir().unwrap();
    let config = format!(
        "{}slos:\n  - {{name: checkout-availability, service: checkout, objective: 0.99, period: 1h}}\n  - {{name: tiny-availability, service: tiny, objective: 0.99, period: 1h}}\n\
         alerting:\n  evaluation_interval: 1s\n  min_requests: 100\n  burn_rates:\n    - {{tier: P1, factor: 10, long: 30s, short: 4s}}\n\
         pagerduty:\n  enabled: true\n  url: {}\n  outbox_dir: {}\n  retry_min: 20ms\n  retry_max: 200ms\n",
        fast_windows(),
        pd.url(),
        outbox.path().display()
    );
    let server = Server::start(&config);

    // checkout: healthy, then half its requests fail for 6 s (a 50x burn), then healthy again.
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut checkout = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(20.0, 0.3));
    checkout.error_rate = 0.0;
    let name = checkout.display_name();
    let burst = |at: u64, error_rate: f64| Phase {
        name: None,
        at: Duration::from_secs(at),
        rate: None,
        cohorts: [(
            name.clone(),
            CohortOverride {
                error_rate: Some(error_rate),
                ..Default::default()
            },
        )]
        .into(),
    };
    let mut sc = Scenario::new(
        target.clone(),
        Rate::PerSecond(1000.0),
        Duration::from_secs(14),
        vec![checkout],
    );
    sc.batch_size = 50;
    sc.phases = vec![burst(2, 0.5), burst(8, 0.0)];
    // tiny: every request fails, but 30 requests are too few to page.
    let mut tiny = CohortSpec::new("tiny", "v1", LatencyDist::lognormal(20.0, 0.3));
    tiny.error_rate = 1.0;
    let mut low = Scenario::new(
        target,
        Rate::PerSecond(10.0),
        Duration::from_secs(3),
        vec![tiny],
    );
    low.batch_size = 5;
    let tiny_report = slogate_load::run_blocking(&low).unwrap();
    assert!(tiny_report.spans_sent < 100 && tiny_report.spans_sent > 0);
    let report = slogate_load::run_blocking(&sc).unwrap();
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);

    // Trigger, then (once the short window is clean) resolve; nothing more.
    let events = one_incident(&pd, Duration::from_secs(30));
    assert_eq!(events[0]["routing_key"], TEST_ROUTING_KEY);
    let payload = &events[0]["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "checkout");
    assert_eq!(payload["class"], "slo_burn");
    assert!(
        payload["summary"]
            .as_str()
            .unwrap()
            .contains("checkout-availability SLO"),
        "{payload}"
    );
    assert!(
        payload["custom_details"]["long_burn_rate"]
            .as_f64()
            .unwrap()
            >= 10.0,
        "{payload}"
    );
    assert!(
        events[0]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/slos/checkout-availability")
    );
    assert!(
        events
            .iter()
            .all(|e| !e["dedup_key"].as_str().unwrap().contains("tiny")),
        "low traffic paged"
    );
    // The flaky start was retried, not dropped.
    assert!(pd.requests().len() >= 5, "{} requests", pd.requests().len());

    // The API shows the SLO, the budget and the alert history.
    let slo = server.get_json("/api/v1/slos/checkout-availability");
    assert!(
        slo["remaining_ratio"].as_f64().unwrap() < 0.0,
        "the burst overspent a 1% budget: {slo}"
    );
    assert_eq!(slo["burn_rates"][0]["tier"], "P1");
    let alerts = server.get_json("/api/v1/alerts");
    let transitions: Vec<&str> = alerts["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transition"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, ["resolved", "fired"], "{alerts}");
    assert_eq!(alerts["delivery"]["delivered"], 2, "{alerts}");
    assert_eq!(server.metric("slogate_pagerduty_delivered_total"), 2.0);
    drop(rt);
}

#[test]
fn pending_page_survives_sigkill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pd = mock(&rt);
    // PagerDuty is down (500s) while the alert fires.
    pd.script(vec![500; 10_000]);
    let outbox = tempfile::tempdir().unwrap();
    let config = format!(
        "{}gates:\n  - name: checkout\n    service: checkout\n    window: 1m\n    min_requests: 50\n    canary: {{version: v2}}\n    criteria:\n      - {{name: error-rate, metric: error_rate, pass: 0.01, fail: 0.05}}\n\
         pagerduty:\n  enabled: true\n  url: {}\n  outbox_dir: {}\n  retry_min: 50ms\n  retry_max: 100ms\n",
        fast_windows(),
        pd.url(),
        outbox.path().display()
    );
    let server = Server::start(&config);
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut canary = CohortSpec::new("checkout", "v2", LatencyDist::lognormal(20.0, 0.3));
    canary.error_rate = 0.3;
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(500.0),
        Duration::from_secs(1),
        vec![canary],
    );
    sc.batch_size = 25;
    slogate_load::run_blocking(&sc).unwrap();
    let doc = server.get_json("/api/v1/gates/checkout/verdict");
    assert_eq!(doc["verdict"], "fail", "{doc}");
    // The trigger is in the outbox and being retried against the failing PagerDuty.
    wait_for("retries", Duration::from_secs(10), || {
        (pd.requests().len() >= 3).then_some(())
    });
    assert!(pd.accepted().is_empty());
    let pending: Vec<_> = std::fs::read_dir(outbox.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "one notification on disk before it was delivered"
    );
    let on_disk = std::fs::read_to_string(pending[0].path()).unwrap();
    assert!(
        !on_disk.contains(TEST_ROUTING_KEY),
        "the routing key never touches the disk"
    );

    server.kill();
    pd.reset();
    let server = Server::start(&config);
    let events = wait_for("the page after restart", Duration::from_secs(20), || {
        let acc = pd.accepted();
        (!acc.is_empty()).then_some(acc)
    });
    // Nothing more arrives: delivered once.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pd.accepted().len(), events.len());
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[0]["payload"]["class"], "gate_failure");
    assert_eq!(events[0]["payload"]["severity"], "error");
    assert!(
        events[0]["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("slogate/gate/checkout/")
    );
    wait_for("an empty outbox", Duration::from_secs(5), || {
        let left = std::fs::read_dir(outbox.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        (left == 0).then_some(())
    });
    drop(server);
    drop(rt);
}

#[test]
fn firing_alerts_and_verdict_log_survive_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pd = mock(&rt);
    let outbox = tempfile::tempdir().unwrap();
    let history = tempfile::tempdir().unwrap();
    let config = format!(
        "{}history:\n  dir: {}\n  flush_interval: 1s\n  reload: 10m\n\
         gates:\n  - name: checkout\n    service: checkout\n    window: 1m\n    min_requests: 50\n    canary: {{version: v2}}\n    criteria:\n      - {{name: error-rate, metric: error_rate, pass: 0.01, fail: 0.05}}\n\
         alerting:\n  evaluation_interval: 1s\n  min_requests: 100\n  rules:\n    - {{name: checkout-errors, service: checkout, metric: error_rate, above: 0.2, window: 20s, for: 0s, tier: P1}}\n\
         pagerduty:\n  enabled: true\n  url: {}\n  outbox_dir: {}\n  retry_min: 20ms\n  retry_max: 200ms\n",
        fast_windows(),
        history.path().display(),
        pd.url(),
        outbox.path().display()
    );
    let failing = |server: &Server| {
        let mut canary = CohortSpec::new("checkout", "v2", LatencyDist::lognormal(20.0, 0.3));
        canary.error_rate = 0.5;
        let target = Target {
            endpoint: format!("http://127.0.0.1:{}", server.grpc),
            ..Target::default()
        };
        let mut sc = Scenario::new(
            target,
            Rate::PerSecond(500.0),
            Duration::from_secs(2),
            vec![canary],
        );
        sc.batch_size = 25;
        let report = slogate_load::run_blocking(&sc).unwrap();
        assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    };
    let threshold = "slogate/threshold/checkout-errors";
    let keys = |events: &[serde_json::Value]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e["event_action"].as_str().unwrap().to_string(),
                    e["dedup_key"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    // Before: the threshold rule fires, and a failing verdict raises the gate's alert.
    let server = Server::start(&config);
    failing(&server);
    let before = server.get_json("/api/v1/gates/checkout/verdict");
    assert_eq!(before["verdict"], "fail", "{before}");
    let fired = wait_for("two triggers", Duration::from_secs(20), || {
        let acc = pd.accepted();
        (acc.len() >= 2).then_some(acc)
    });
    let fired = keys(&fired);
    assert!(fired.iter().all(|(a, _)| a == "trigger"), "{fired:?}");
    assert!(fired.iter().any(|(_, k)| k == threshold), "{fired:?}");
    let gate_key = fired
        .iter()
        .map(|(_, k)| k.clone())
        .find(|k| k.starts_with("slogate/gate/checkout/"))
        .unwrap_or_else(|| panic!("no gate-failure trigger: {fired:?}"));
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(ok, "{log}");

    // After: the verdict log is back, and both alerts are still firing since before.
    let server = Server::start(&config);
    let log = server.get_json("/api/v1/verdicts");
    let verdicts = log["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1, "{log}");
    assert_eq!(verdicts[0]["evaluated_at"], before["evaluated_at"], "{log}");
    assert_eq!(verdicts[0]["verdict"], "fail", "{log}");
    // The condition stays true: more failing traffic, and the gate fails again.
    failing(&server);
    let again = server.get_json("/api/v1/gates/checkout/verdict");
    assert_eq!(again["verdict"], "fail", "{again}");
    std::thread::sleep(Duration::from_secs(3));
    let alerts = server.get_json("/api/v1/alerts");
    let state = |id: &str| {
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"]["state"].clone())
    };
    assert_eq!(state(threshold), Some("firing".into()), "{alerts}");
    assert_eq!(state(&gate_key), Some("firing".into()), "{alerts}");
    assert_eq!(
        keys(&pd.accepted()),
        fired,
        "no second trigger after the restart"
    );

    // Once the errors leave the 20 s window, the threshold alert resolves, once.
    let events = wait_for("the resolve", Duration::from_secs(40), || {
        let acc = pd.accepted();
        (acc.len() > fired.len()).then_some(acc)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pd.accepted().len(), events.len());
    let mut want = fired.clone();
    want.push(("resolve".to_string(), threshold.to_string()));
    assert_eq!(keys(&events), want);

    // A third start with gate-failure alerts turned off: the gate's alert, still firing when
    // the server stopped, resolves once at the start instead of staying open for ever.
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(ok, "{log}");
    let without = config.replace(
        "  rules:\n",
        "  gate_failures: {enabled: false}\n  rules:\n",
    );
    assert_ne!(without, config);
    let server = Server::start(&without);
    let events = wait_for("the gate alert's resolve", Duration::from_secs(20), || {
        let acc = pd.accepted();
        (acc.len() > want.len()).then_some(acc)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pd.accepted().len(), events.len(), "resolved once");
    want.push(("resolve".to_string(), gate_key.clone()));
    assert_eq!(keys(&events), want);
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.lines().any(|l| l.contains("transition=\"resolved\"")
            && l.contains(&gate_key)
            && l.contains("rule no longer configured")),
        "{log}"
    );
    drop(server);
    drop(rt);
}

/// An unreadable verdict file is moved to the quarantine and counted at the start, like an
/// unreadable `requests` file; the restore of the rest goes on (here nothing else is there).
/// See `crash.rs` for a damaged file among intact ones.
#[test]
fn unreadable_verdict_file_is_quarantined_and_the_restore_goes_on() {
    let history = tempfile::tempdir().unwrap();
    let part = history.path().join("verdicts/date=2026-01-01/hour=00");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("broken.parquet"), b"not parquet at all").unwrap();
    let server = Server::start(&format!("history:\n  dir: {}\n", history.path().display()));
    let (status, body) = server.get("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("not restored"), "{body}");
    assert_eq!(
        server.metric("slogate_history_quarantined_files_total"),
        1.0
    );
    assert!(
        history
            .path()
            .join("quarantine/verdicts/date=2026-01-01/hour=00/broken.parquet")
            .exists()
    );
    let log = server.get_json("/api/v1/verdicts");
    assert_eq!(log["verdicts"], serde_json::json!([]), "{log}");
}
