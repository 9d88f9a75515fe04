//! Configuration reload on a running server, fed by the load generator: a gate's new threshold
//! applies on SIGHUP and when the file changes without a signal, with no restart and no span
//! lost; a broken file is refused with the error a start gives while the old gate keeps
//! answering; a changed listener waits for a restart; a firing alert whose rule is removed
//! resolves once at PagerDuty.

use crate::harness::{Server, one_incident, slogate, wait_for};
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use slogate_pagerduty_mock::MockServer;
use std::time::{Duration, Instant};

/// The gate judges the canary's error rate (4 %) against `pass`/`fail` bounds: `pass: 0.06,
/// fail: 0.1` passes it, `pass: 0.01, fail: 0.02` fails it.
const PASSING: &str = "pass: 0.06, fail: 0.1";
const FAILING: &str = "pass: 0.01, fail: 0.02";

fn gate(bounds: &str) -> String {
    format!(
        "gates:\n  - name: checkout\n    service: checkout\n    window: 2m\n    min_requests: 100\n    baseline: {{version: v1}}\n    criteria:\n      - {{name: error-rate, metric: error_rate, {bounds}}}\n"
    )
}

/// Sends `seconds` of traffic (v1 clean, v2 with 4 % errors) and waits until the server has
/// counted every span; returns the total it counts now.
fn feed(server: &Server, seed: u64, before: u64) -> u64 {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let cohort = |version: &str, error_rate: f64| {
        let mut c = CohortSpec::new("checkout", version, LatencyDist::lognormal(30.0, 0.4));
        c.weight = 0.5;
        c.error_rate = error_rate;
        c
    };
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(10_000.0),
        Duration::from_secs(1),
        vec![cohort("v1", 0.0), cohort("v2", 0.04)],
    );
    sc.seed = seed;
    let report = slogate_load::run_blocking(&sc).expect("load run");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    let total = before + report.spans_sent;
    let sli = server.sli_when("service=checkout&window=2m", total);
    assert_eq!(sli["requests"].as_u64(), Some(total), "{sli}");
    total
}

fn verdict(server: &Server) -> String {
    let path = "/api/v1/gates/checkout/verdict?canary.version=v2";
    let (status, body) = server.get(path).unwrap_or_else(|e| {
        std::thread::sleep(Duration::from_millis(500));
        panic!("{path}: {e}; log:\n{}", server.log_text())
    });
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["verdict"].as_str().unwrap().to_string()
}

/// Polls `f` every 20 ms until it holds: how long that took.
/// How long `f` took to hold (at most `timeout`).
fn within(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_for(what, timeout, || f().then_some(()));
    start.elapsed()
}

fn reloads(server: &Server, result: &str) -> f64 {
    server.metric(&format!(
        "slogate_config_reloads_total{{result=\"{result}\"}}"
    ))
}

/// Rewrites the server's file with `from` replaced by `to`.
fn edit(server: &Server, from: &str, to: &str) {
    let text = std::fs::read_to_string(&server.config).unwrap();
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    std::fs::write(&server.config, text.replace(from, to)).unwrap();
}

#[test]
fn sighup_applies_a_new_threshold_without_a_restart() {
    let mut server = Server::start(&gate(PASSING));
    let total = feed(&server, 1, 0);
    assert_eq!(verdict(&server), "pass");
    let pid = server.pid();
    edit(&server, PASSING, FAILING);
    server.signal("HUP");
    let took = within("the new threshold", Duration::from_secs(10), || {
        verdict(&server) == "fail"
    });
    // Applied once: by the signal, or by the poller if it read the file first (the signal
    // then finds nothing new).
    let unchanged = reloads(&server, "unchanged");
    assert!(unchanged <= 1.0, "{unchanged}");
    eprintln!("SIGHUP to the new verdict: {took:?}");
    // The same process, with every span it had, still counting new ones.
    assert!(server.running());
    assert_eq!(server.pid(), pid);
    let total = feed(&server, 2, total);
    assert!(total > 10_000, "{total}");
    assert_eq!(verdict(&server), "fail");
    assert_eq!(reloads(&server, "applied"), 1.0);
    assert_eq!(reloads(&server, "rejected"), 0.0);
    let gates = server.get_json("/api/v1/gates");
    assert_eq!(
        gates["gates"][0]["phases"][0]["criteria"][0]["pass"], 0.01,
        "{gates}"
    );
    let log = server.log_text();
    assert!(
        log.contains("configuration reloaded") && log.contains("gates_changed=checkout"),
        "{log}"
    );
    // A second SIGHUP with the same file applies nothing.
    server.signal("HUP");
    within("an unchanged reload", Duration::from_secs(10), || {
        reloads(&server, "unchanged") == unchanged + 1.0
    });
    assert_eq!(reloads(&server, "applied"), 1.0);
}

#[test]
fn an_edited_file_is_picked_up_without_a_signal() {
    let server = Server::start(&gate(PASSING));
    feed(&server, 3, 0);
    assert_eq!(verdict(&server), "pass");
    edit(&server, PASSING, FAILING);
    // The poll interval is 2 s: the change applies within it, plus a verdict's time on a busy
    // machine.
    let took = within("the edited threshold", Duration::from_secs(5), || {
        verdict(&server) == "fail"
    });
    eprintln!("file write to the new verdict, no signal: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(reloads(&server, "applied"), 1.0);
    // Nothing changes afterwards: the poller reloads only a changed file.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reloads(&server, "applied"), 1.0);
    assert_eq!(reloads(&server, "unchanged"), 0.0);
}

#[test]
fn a_broken_file_is_refused_and_the_old_gate_answers() {
    let server = Server::start(&gate(PASSING));
    feed(&server, 4, 0);
    assert_eq!(verdict(&server), "pass");
    let good = std::fs::read_to_string(&server.config).unwrap();
    let path = server.config.display().to_string();
    // (what breaks the file, what the error names: line and field)
    let cases = [
        // A YAML syntax error: an unclosed flow mapping.
        (
            good.replace(
                &format!("{{name: error-rate, metric: error_rate, {PASSING}}}"),
                "{name: error-rate, metric: error_rate",
            ),
            format!("{path}:15:1: gates[0].criteria[0]"),
        ),
        // A field that parses but is invalid: the fail bound below the pass bound.
        (
            good.replace(PASSING, "pass: 0.06, fail: 0.01"),
            format!("{path}:14: gates[0].criteria[0]"),
        ),
    ];
    for (text, names) in &cases {
        // The poller may see the file before the signal arrives: one rejection or two.
        let before = reloads(&server, "rejected");
        std::fs::write(&server.config, text).unwrap();
        server.signal("HUP");
        within("the rejection", Duration::from_secs(10), || {
            reloads(&server, "rejected") > before
        });
        // The error a start gives (`slogate config check` validates as a start does).
        let (code, _, stderr) = slogate(&["config", "check", &path]);
        assert_eq!(code, 3, "{stderr}");
        let error = stderr.trim().trim_start_matches("error: ").to_string();
        assert!(error.contains(names.as_str()), "{error}");
        let log = server.log_text();
        let line = log
            .lines()
            .rfind(|l| l.contains("configuration reload rejected"))
            .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
        assert!(
            line.contains("ERROR") && line.contains(&error),
            "{line}\nwant: {error}"
        );
        // The old gate still answers as before.
        assert_eq!(verdict(&server), "pass");
    }
    assert_eq!(reloads(&server, "applied"), 0.0);
}

#[test]
fn a_changed_listener_waits_for_a_restart() {
    let server = Server::start(&gate(PASSING));
    let other = crate::harness::free_port();
    let old = format!("http: 127.0.0.1:{}", server.api);
    edit(&server, &old, &format!("http: 127.0.0.1:{other}"));
    server.signal("HUP");
    within("the reload", Duration::from_secs(10), || {
        reloads(&server, "unchanged") >= 1.0
    });
    assert_eq!(reloads(&server, "applied"), 0.0);
    let log = server.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("restart to apply"))
        .unwrap_or_else(|| panic!("no restart warning:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("field=server.http"),
        "{warning}"
    );
    // The old port still serves, and nothing was bound again.
    assert_eq!(server.get("/readyz").unwrap().0, 200);
    assert_eq!(log.matches("slogate listening").count(), 1, "{log}");
}

#[test]
fn a_removed_rule_that_was_firing_resolves_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pd = rt
        .block_on(MockServer::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let rule = "    - {name: checkout-errors, service: checkout, metric: error_rate, above: 0.01, window: 1m, for: 0s, tier: P1}\n";
    let config = format!(
        "alerting:\n  evaluation_interval: 1s\n  min_requests: 100\n  rules:\n{rule}    - {{name: checkout-slow, service: checkout, metric: latency_p99, above: 10000, window: 1m, for: 0s, tier: P2}}\n\
         pagerduty:\n  enabled: true\n  url: {}\n  outbox_dir: {}\n  retry_min: 20ms\n  retry_max: 200ms\n",
        pd.url(),
        outbox.path().display()
    );
    let server = Server::start(&config);
    feed(&server, 5, 0);
    within("the page", Duration::from_secs(20), || {
        !pd.accepted().is_empty()
    });
    edit(&server, rule, "");
    server.signal("HUP");
    // One trigger, one resolve, the same incident; nothing more.
    let events = one_incident(&pd, Duration::from_secs(20));
    assert_eq!(events[0]["dedup_key"], "slogate/threshold/checkout-errors");
    let alerts = server.get_json("/api/v1/alerts");
    let resolved = alerts["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["transition"] == "resolved")
        .unwrap_or_else(|| panic!("{alerts}"));
    assert!(
        resolved["summary"]
            .as_str()
            .unwrap()
            .ends_with("rule removed by configuration reload"),
        "{resolved}"
    );
    // The rule that stayed is still tracked; the removed one is gone.
    let ids: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["slogate/threshold/checkout-slow"], "{alerts}");
}
