//! The routing key, the Slack webhook URL and a webhook's bearer token never appear in Debug
//! output, errors, logs (captured at trace level) or the outbox files. Its own test binary
//! because it installs a global tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Harness, KEY};
use slogate_alert::notification::AlertNote;
use slogate_alert::{
    Event, Outbox, PagerDuty, Secret, Sender, Severity, Slack, SlackMessage, Webhook,
    WebhookMessage,
};
use slogate_pagerduty_mock::{Fault, ReceiverMock};
use tokio::sync::{Notify, watch};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn routing_key_never_leaks() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // Retry (warn), rejection (error) and delivery (info) paths all log.
    let h = Harness::start(vec![503, 400], |_| {}).await;
    let config_debug = format!("{:?}", common::pagerduty(h.mock.url()));
    let sender_err = PagerDuty::new("ftp://events.pagerduty.com", Secret::new(KEY))
        .unwrap_err()
        .to_string();

    // The files are read from a second outbox holding the same events, because the harness's
    // sender may drain its own outbox before the test gets to look.
    let dir = tempfile::tempdir().unwrap();
    let standalone = slogate_alert::Outbox::<Event>::open(dir.path(), 10).unwrap();
    let events = vec![
        Event::trigger("slo/a", "burning", "slogate", Severity::Error)
            .with_custom_details(serde_json::json!({"k": 1})),
        Event::resolve("slo/a"),
    ];
    for e in &events {
        standalone.enqueue(e.clone()).unwrap();
    }
    let mut on_disk = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        on_disk.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(on_disk.contains("slo/a"), "files hold the events");

    h.enqueue(events.clone());
    h.enqueue(vec![Event::trigger(
        "slo/b",
        "burning",
        "slogate",
        Severity::Error,
    )]);
    h.drained().await;
    let (mock, _dir, stats) = h.stop().await;
    assert_eq!(mock.accepted().len(), 2, "the key did reach PagerDuty");
    assert_eq!((stats.retries(), stats.rejected()), (1, 1));
    let snapshot = serde_json::to_string(&stats.snapshot()).unwrap();

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("will retry") && logs.contains("rejected"),
        "logs captured: {logs}"
    );
    for (name, text) in [
        ("config debug", &config_debug),
        ("sender error", &sender_err),
        ("outbox files", &on_disk),
        ("logs", &logs),
        ("stats snapshot", &snapshot),
    ] {
        assert!(!text.contains(KEY), "{name} contains the routing key");
    }
    assert!(config_debug.contains("<secret>"));
}

fn note(firing: bool) -> AlertNote {
    AlertNote {
        id: "slogate/threshold/errors".into(),
        firing,
        rule: "errors".into(),
        class: "threshold".into(),
        service: "checkout".into(),
        tier: "P1".into(),
        severity: Severity::Critical,
        summary: "[P1] errors: error rate 5% > 1%".into(),
        link: "http://slogate/api/v1/sli?service=checkout".into(),
        started_at: 1_700_000_000,
        ended_at: (!firing).then_some(1_700_000_600),
        details: serde_json::Value::Null,
    }
}

/// Runs `sender` over a fresh outbox holding `items` until it is empty (or, with `settle`, for
/// that long); returns the outbox files as they were before the send, and the stats as JSON.
async fn run<D: slogate_alert::Destination>(
    dest: D,
    items: Vec<D::Item>,
    settle: Option<std::time::Duration>,
) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path(), 10).unwrap());
    for i in items {
        outbox.enqueue(i).unwrap();
    }
    let mut files = String::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        files.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let mut config = common::config();
    config.backoff_max = std::time::Duration::from_millis(20);
    let sender = Sender::new(dest, config).unwrap();
    let stats = sender.stats();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(sender.run(outbox.clone(), Arc::new(Notify::new()), rx));
    match settle {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !outbox.is_empty() {
                assert!(std::time::Instant::now() < deadline);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    (files, serde_json::to_string(&stats.snapshot()).unwrap())
}

#[tokio::test]
async fn webhook_url_and_token_never_leak() {
    let logs = Capture::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    const TOKEN: &str = "t0ken-never-shown-0123456789";
    let slack = ReceiverMock::slack("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Retried (warn), refused for good (error) and delivered (info): every log path.
    slack.script([Fault::from(503), Fault::from(410)]);
    let hook = ReceiverMock::alertmanager("127.0.0.1:0".parse().unwrap(), Some(TOKEN))
        .await
        .unwrap();
    hook.script([Fault::from(503), Fault::from(404)]);
    let slack_url = slack.url().to_string();
    let secret_part = slack_url.rsplit('/').next().unwrap().to_string();
    assert!(secret_part.len() >= 20);

    let dest = Slack::new(Secret::new(&slack_url)).unwrap();
    let slack_debug = format!("{dest:?}");
    let messages = vec![
        SlackMessage::alert(&note(true)),
        SlackMessage::alert(&note(false)),
    ];
    let (slack_files, slack_stats) = run(dest, messages, None).await;
    let hook_dest = Webhook::new("ops", hook.url(), Some(Secret::new(TOKEN))).unwrap();
    let hook_debug = format!("{hook_dest:?}");
    let payloads = vec![
        WebhookMessage::alert(&note(true), "ops", "http://slogate"),
        WebhookMessage::alert(&note(false), "ops", "http://slogate"),
    ];
    let (hook_files, hook_stats) = run(hook_dest, payloads, None).await;
    assert_eq!((slack.accepted().len(), hook.accepted().len()), (1, 1));

    // A network error: reqwest's error text would name the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!(
        "http://{}/services/T0/B0/{secret_part}",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let (_, down_stats) = run(
        Slack::new(Secret::new(&unreachable)).unwrap(),
        vec![SlackMessage::alert(&note(true))],
        Some(std::time::Duration::from_millis(300)),
    )
    .await;
    let bad_url = Slack::new(Secret::new(format!("ftp://x/{secret_part}")))
        .unwrap_err()
        .to_string();

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for want in [
        "will retry",
        "dropping it",
        "notification delivered",
        "request failed",
    ] {
        assert!(logs.contains(want), "no {want:?} in logs: {logs}");
    }
    assert!(down_stats.contains("request failed"), "{down_stats}");
    for (name, text) in [
        ("slack debug", &slack_debug),
        ("webhook debug", &hook_debug),
        ("slack outbox files", &slack_files),
        ("webhook outbox files", &hook_files),
        ("slack stats", &slack_stats),
        ("webhook stats", &hook_stats),
        ("unreachable stats", &down_stats),
        ("bad url error", &bad_url),
        ("logs", &logs),
    ] {
        assert!(
            !text.contains(&secret_part),
            "{name} contains the slack webhook secret"
        );
        assert!(!text.contains(TOKEN), "{name} contains the webhook token");
    }
    assert!(
        slack_files.contains("slogate/threshold/errors"),
        "files hold the messages"
    );
}
