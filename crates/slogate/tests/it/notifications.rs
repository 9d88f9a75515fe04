//! Slack and Alertmanager-format webhooks end to end, against the stand-ins written from their
//! public contracts: an alert that fires and resolves reaches both once each, in order, with
//! one identity on the webhook; a gate's verdict change is one Slack message however often the
//! verdict is polled, held in the outbox while Slack answers 429 and 500 and delivered once
//! after; a pending message survives a SIGKILL; the webhook URL and token never show in logs,
//! `/metrics`, the API or `config show`.

use crate::harness::{Server, slogate, wait_for};
use serde_json::{Value, json};
use slogate_pagerduty_mock::{Fault, ReceiverMock};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "hook-t0ken-3c1d9a7f5b";

fn fast_windows() -> &'static str {
    "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n"
}

/// Sends `n` SERVER spans of `service`/`version` over OTLP/HTTP JSON, the first `errors` of
/// them answered 503, all ending now.
fn send(server: &Server, service: &str, version: &str, n: usize, errors: usize) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Value> = (0..n)
        .map(|i| {
            let end = now - i as u64 * 1_000;
            json!({
                "traceId": format!("{:032x}", (i as u128 + 1) << 64 | now as u128),
                "spanId": format!("{:016x}", i as u64 + 1),
                "name": "GET /cart",
                "kind": 2,
                "startTimeUnixNano": (end - 20_000_000).to_string(),
                "endTimeUnixNano": end.to_string(),
                "attributes": [
                    {"key": "http.request.method", "value": {"stringValue": "GET"}},
                    {"key": "http.route", "value": {"stringValue": "/cart"}},
                    {"key": "http.response.status_code", "value": {"intValue": if i < errors { "503" } else { "200" }}},
                ],
            })
        })
        .collect();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.version", "value": {"stringValue": version}},
            {"key": "deployment.environment.name", "value": {"stringValue": "prod"}},
        ]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", server.http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
}

fn files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

/// The Slack and webhook part of a configuration; the secrets are in files under `dir`.
fn notifications(
    dir: &Path,
    slack_url: &str,
    hook_url: Option<&str>,
    slack_events: &str,
) -> String {
    std::fs::write(dir.join("slack-url"), format!("{slack_url}\n")).unwrap();
    std::fs::write(dir.join("hook-token"), TOKEN).unwrap();
    let mut out = format!(
        "notifications:\n  outbox_dir: {}\n  slack:\n    enabled: true\n    webhook_url_file: {}\n    events: {slack_events}\n    retry_min: 20ms\n    retry_max: 200ms\n",
        dir.join("outbox").display(),
        dir.join("slack-url").display(),
    );
    if let Some(url) = hook_url {
        out.push_str(&format!(
            "  webhooks:\n    - {{name: incident-bridge, url: {url}, token_file: {}, retry_min: 20ms, retry_max: 200ms}}\n",
            dir.join("hook-token").display()
        ));
    }
    out
}

#[test]
fn alert_reaches_slack_and_the_webhook_once_each_in_order() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slack = rt
        .block_on(ReceiverMock::slack("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let hook = rt
        .block_on(ReceiverMock::alertmanager(
            "127.0.0.1:0".parse().unwrap(),
            Some(TOKEN),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}alerting:\n  evaluation_interval: 1s\n  min_requests: 20\n  rules:\n    - {{name: checkout-errors, service: checkout, metric: error_rate, above: 0.2, window: 3s, for: 0s, tier: P1}}\n\
         pagerduty:\n  link_base_url: https://slogate.example.com\n{}",
        fast_windows(),
        notifications(
            dir.path(),
            slack.url(),
            Some(hook.url()),
            "[alerts, verdicts]"
        )
    );
    let server = Server::start(&extra);

    // Half the requests fail until the alert fires, then all succeed until it resolves.
    wait_for("the trigger on both", Duration::from_secs(30), || {
        send(&server, "checkout", "v1", 60, 30);
        (!slack.accepted().is_empty() && !hook.accepted().is_empty()).then_some(())
    });
    wait_for("the resolve on both", Duration::from_secs(30), || {
        send(&server, "checkout", "v1", 60, 0);
        (slack.accepted().len() >= 2 && hook.accepted().len() >= 2).then_some(())
    });
    // Stays resolved: nothing more arrives.
    for _ in 0..6 {
        send(&server, "checkout", "v1", 60, 0);
        std::thread::sleep(Duration::from_millis(500));
    }
    let messages = slack.accepted();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let text = |i: usize| messages[i]["text"].as_str().unwrap();
    assert!(
        text(0).starts_with(":red_circle: FIRING: [P1] checkout-errors"),
        "{}",
        text(0)
    );
    assert!(
        text(1).starts_with(":large_green_circle: RESOLVED: [P1] checkout-errors"),
        "{}",
        text(1)
    );
    // Block Kit: header, summary, fields, and the link back in the context line (escaped).
    let blocks = messages[0]["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["header", "section", "section", "context"]);
    assert!(
        blocks[2]["fields"][0]["text"] == "*Tier*\nP1 (critical)",
        "{blocks:#?}"
    );
    let context = blocks[3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context
            .starts_with("<https://slogate.example.com/api/v1/sli?service=checkout&amp;window=3s|"),
        "{context}"
    );

    let payloads = hook.accepted();
    assert_eq!(payloads.len(), 2, "{payloads:#?}");
    let statuses: Vec<&str> = payloads
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    assert_eq!(payloads[0]["groupKey"], payloads[1]["groupKey"]);
    assert_eq!(
        payloads[0]["alerts"][0]["fingerprint"],
        payloads[1]["alerts"][0]["fingerprint"]
    );
    assert_eq!(
        payloads[0]["alerts"][0]["startsAt"],
        payloads[1]["alerts"][0]["startsAt"]
    );
    assert_eq!(payloads[0]["receiver"], "incident-bridge");
    assert_eq!(payloads[0]["externalURL"], "https://slogate.example.com");
    let labels = &payloads[0]["alerts"][0]["labels"];
    assert_eq!(
        (
            &labels["alertname"],
            &labels["severity"],
            &labels["service"]
        ),
        (
            &json!("checkout-errors"),
            &json!("critical"),
            &json!("checkout")
        )
    );
    // Every request reached the stand-ins valid (no refusal, no retry).
    assert!(slack.requests().iter().all(|r| r.status == 200));
    assert!(hook.requests().iter().all(|r| r.status == 200));

    let metric = |name: &str, dest: &str, kind: &str| {
        server.metric(&format!("{name}{{destination=\"{dest}\",kind=\"{kind}\"}}"))
    };
    assert_eq!(
        metric("slogate_notify_delivered_total", "slack", "slack"),
        2.0
    );
    assert_eq!(
        metric(
            "slogate_notify_delivered_total",
            "incident-bridge",
            "webhook"
        ),
        2.0
    );
    assert_eq!(metric("slogate_notify_pending", "slack", "slack"), 0.0);
    let alerts = server.get_json("/api/v1/alerts");
    let recent: Vec<&str> = alerts["notifications"][0]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(recent, ["resolve", "trigger"], "{alerts}");

    // The URL's secret part and the token appear nowhere slogate writes.
    let secret = slack.url().rsplit('/').next().unwrap().to_string();
    let cfg = dir.path().join("show.yaml");
    std::fs::write(&cfg, &extra).unwrap();
    let (code, shown, err) = slogate(&["config", "show", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("webhook_url_file:"), "{shown}");
    let (_, exposition) = server.get("/metrics").unwrap();
    let logs = server.log.lock().unwrap().join("\n");
    assert!(logs.contains("notification delivery enabled"), "{logs}");
    let outbox: String = ["slack", "webhook-incident-bridge"]
        .iter()
        .flat_map(|d| files(&dir.path().join("outbox").join(d)))
        .collect();
    for (name, text) in [
        ("config show", &shown),
        ("/metrics", &exposition),
        ("/api/v1/alerts", &alerts.to_string()),
        ("logs", &logs),
        ("outbox", &outbox),
    ] {
        assert!(
            !text.contains(&secret),
            "{name} shows the slack webhook url"
        );
        assert!(!text.contains(TOKEN), "{name} shows the webhook token");
    }
    drop(server);
    drop(rt);
}

fn gate_config(dir: &Path, slack_url: &str, events: &str) -> String {
    format!(
        "{}gates:\n  - name: checkout\n    service: checkout\n    window: 1m\n    min_requests: 50\n    canary: {{version: v2}}\n    baseline: {{version: v1}}\n    phases: [{{name: canary}}]\n    criteria:\n      - {{name: error-rate, metric: error_rate, pass: 0.01, fail: 0.05}}\n{}",
        fast_windows(),
        notifications(dir, slack_url, None, events)
    )
}

fn verdict(server: &Server) -> Value {
    server.get_json("/api/v1/gates/checkout/verdict?phase=canary")
}

#[test]
fn verdict_change_is_one_slack_message_held_through_429_and_500() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slack = rt
        .block_on(ReceiverMock::slack("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    // Throttled (Retry-After: 2), then down twice, then up.
    slack.script([
        Fault::retry_after(429, 2),
        Fault::from(500),
        Fault::from(500),
    ]);
    let dir = tempfile::tempdir().unwrap();
    // Verdicts only: the gate-failure alert (on by default) is not sent to this channel.
    let server = Server::start(&gate_config(dir.path(), slack.url(), "[verdicts]"));
    send(&server, "checkout", "v1", 200, 0);
    send(&server, "checkout", "v2", 100, 30);
    wait_for("a failing verdict", Duration::from_secs(20), || {
        (verdict(&server)["verdict"] == "fail").then_some(())
    });
    // Polling again and again changes nothing: no more messages are queued.
    for _ in 0..5 {
        assert_eq!(verdict(&server)["decision"], "rollback");
    }
    let outbox = dir.path().join("outbox").join("slack");
    wait_for("the throttled attempt", Duration::from_secs(20), || {
        (!slack.requests().is_empty()).then_some(())
    });
    // Throttled for 2 s (the backoff alone is at most 200 ms): the message waits on disk.
    let throttled = Instant::now();
    assert!(slack.accepted().is_empty());
    assert_eq!(
        files(&outbox).len(),
        1,
        "one message queued, however many polls"
    );
    let messages = wait_for("the delivery", Duration::from_secs(20), || {
        let m = slack.accepted();
        (!m.is_empty()).then_some(m)
    });
    assert!(
        throttled.elapsed() >= Duration::from_millis(1500),
        "Retry-After was not obeyed"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slack.accepted().len(), 1, "delivered once");
    let statuses: Vec<u16> = slack.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [429, 500, 500, 200],
        "three refusals, then one delivery"
    );
    let text = messages[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(":rotating_light: checkout canary version=v2: rollback (first verdict): "),
        "{text}"
    );
    assert!(text.contains("error rate"), "{text}");
    wait_for("an empty outbox", Duration::from_secs(5), || {
        files(&outbox).is_empty().then_some(())
    });

    // The canary recovers: the next change, and only it, is the second message.
    send(&server, "checkout", "v2", 5_000, 0);
    wait_for("a passing verdict", Duration::from_secs(20), || {
        (verdict(&server)["verdict"] == "pass").then_some(())
    });
    for _ in 0..5 {
        verdict(&server);
    }
    let messages = wait_for("the second message", Duration::from_secs(20), || {
        let m = slack.accepted();
        (m.len() >= 2).then_some(m)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(slack.accepted().len(), 2, "{messages:#?}");
    let text = messages[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with(":white_check_mark: checkout canary version=v2: rollback → proceed: every criterion passed"),
        "{text}"
    );
    assert!(
        server.metric("slogate_notify_retries_total{destination=\"slack\",kind=\"slack\"}") >= 3.0
    );
    drop(server);
    drop(rt);
}

#[test]
fn pending_slack_message_survives_sigkill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slack = rt
        .block_on(ReceiverMock::slack("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    // Slack is down while the gate fails.
    slack.script(vec![Fault::from(500); 10_000]);
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path(), slack.url(), "[alerts, verdicts]");
    let server = Server::start(&config);
    send(&server, "checkout", "v1", 200, 0);
    send(&server, "checkout", "v2", 100, 30);
    assert_eq!(verdict(&server)["verdict"], "fail");
    wait_for("retries", Duration::from_secs(10), || {
        (slack.requests().len() >= 3).then_some(())
    });
    assert!(slack.accepted().is_empty());
    // The verdict change and the gate-failure alert, both on disk before delivery.
    let outbox = dir.path().join("outbox").join("slack");
    let pending = files(&outbox);
    assert_eq!(pending.len(), 2, "{pending:#?}");
    let secret = slack.url().rsplit('/').next().unwrap().to_string();
    assert!(
        pending.iter().all(|f| !f.contains(&secret)),
        "the url never touches the disk"
    );

    server.kill();
    slack.reset();
    let _server = Server::start(&config);
    let messages = wait_for(
        "the messages after restart",
        Duration::from_secs(20),
        || {
            let m = slack.accepted();
            (m.len() >= 2).then_some(m)
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(slack.accepted().len(), 2, "{messages:#?}");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(
        texts[0].contains("checkout canary version=v2: rollback (first verdict)"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with(":red_circle: FIRING: [P2] gate checkout failed"),
        "{texts:?}"
    );
    wait_for("an empty outbox", Duration::from_secs(5), || {
        files(&outbox).is_empty().then_some(())
    });
    drop(rt);
}
