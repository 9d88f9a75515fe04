//! Slack and Alertmanager-format webhook delivery against their stand-ins over real HTTP:
//! order, `Retry-After`, permanent refusals, the bearer token, and one destination being down
//! never delaying another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slogate_alert::notification::{AlertNote, CohortFigures, VerdictNote, VerdictState};
use slogate_alert::{
    DeliveryOutcome, DeliveryStats, Destination, Item, Outbox, Secret, Sender, SenderConfig,
    Severity, Slack, SlackMessage, Webhook, WebhookMessage,
};
use slogate_pagerduty_mock::{Fault, ReceiverMock};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

fn note(rule: &str, firing: bool) -> AlertNote {
    AlertNote {
        id: format!("slogate/threshold/{rule}"),
        firing,
        rule: rule.into(),
        class: "threshold".into(),
        service: "checkout".into(),
        tier: "P2".into(),
        severity: Severity::Error,
        summary: format!("[P2] {rule}: error rate 3.10% > 1.00% over 300s"),
        link: "http://slogate:8080/api/v1/sli?service=checkout&window=300s".into(),
        started_at: 1_762_538_400,
        ended_at: (!firing).then_some(1_762_538_700),
        details: serde_json::json!({"observed": 0.031}),
    }
}

fn verdict() -> VerdictNote {
    let cohort = |v: &str| CohortFigures {
        selector: format!("service=checkout,version={v}"),
        requests: 1000,
        error_rate: Some(0.01),
        p99_ms: Some(250.0),
    };
    VerdictNote {
        gate: "checkout".into(),
        phase: "canary".into(),
        service: "checkout".into(),
        canary: cohort("v2"),
        baseline: cohort("v1"),
        from: Some(VerdictState {
            verdict: "inconclusive".into(),
            decision: "hold".into(),
        }),
        to: VerdictState {
            verdict: "fail".into(),
            decision: "rollback".into(),
        },
        reasons: vec!["p99 ratio 1.42 > 1.20".into()],
        evaluated_at: "2025-11-07T18:40:00Z".into(),
        at: 1_762_540_800,
        link: "http://slogate:8080/api/v1/verdicts?gate=checkout".into(),
    }
}

fn fast() -> SenderConfig {
    SenderConfig {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        rescan_interval: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..SenderConfig::default()
    }
}

/// One destination's outbox and running sender.
struct Running<T: Item> {
    _dir: tempfile::TempDir,
    outbox: Arc<Outbox<T>>,
    notify: Arc<Notify>,
    stats: Arc<DeliveryStats>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<T: Item> Running<T> {
    fn start<D: Destination<Item = T>>(dest: D, config: SenderConfig) -> Running<T> {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(dir.path(), 100).unwrap());
        let sender = Sender::new(dest, config).unwrap();
        let stats = sender.stats();
        let notify = Arc::new(Notify::new());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(sender.run(outbox.clone(), notify.clone(), rx));
        Running {
            _dir: dir,
            outbox,
            notify,
            stats,
            shutdown,
            task,
        }
    }

    fn enqueue(&self, items: Vec<T>) {
        for i in items {
            self.outbox.enqueue(i).unwrap();
        }
        self.notify.notify_one();
    }

    async fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.outbox.is_empty() {
            assert!(Instant::now() < deadline, "{} pending", self.outbox.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> Arc<DeliveryStats> {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sender stops on shutdown")
            .unwrap();
        self.stats
    }
}

async fn slack_mock() -> ReceiverMock {
    ReceiverMock::slack("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn slack_trigger_resolve_and_verdict_in_order_through_429_and_500() {
    let mock = slack_mock().await;
    // Throttled with Retry-After: 1, then a server error, then normal.
    mock.script([Fault::retry_after(429, 1), Fault::from(500)]);
    let slack = Slack::new(Secret::new(mock.url())).unwrap();
    let r = Running::start(slack, fast());
    let t0 = Instant::now();
    r.enqueue(vec![
        SlackMessage::alert(&note("errors", true)),
        SlackMessage::alert(&note("errors", false)),
        SlackMessage::verdict(&verdict()),
    ]);
    r.drained().await;
    let elapsed = t0.elapsed();
    let stats = r.stop().await;
    let texts: Vec<String> = mock
        .accepted()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].starts_with(":red_circle: FIRING: [P2] errors"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with(":large_green_circle: RESOLVED: [P2] errors"),
        "{texts:?}"
    );
    assert!(
        texts[2].contains("checkout canary version=v2: hold → rollback"),
        "{texts:?}"
    );
    // The backoff is at most 50 ms: only Retry-After explains a wait of a second.
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    let statuses: Vec<u16> = mock.requests().iter().map(|q| q.status).collect();
    assert_eq!(statuses, [429, 500, 200, 200, 200]);
    assert_eq!(
        (stats.delivered(), stats.retries(), stats.rejected()),
        (3, 2, 0)
    );
    let actions: Vec<String> = stats.history().iter().map(|h| h.action.clone()).collect();
    assert_eq!(actions, ["trigger", "resolve", "verdict"]);
}

#[tokio::test]
async fn slack_permanent_refusals_are_dropped_and_counted() {
    for status in [400, 403, 404, 410] {
        let mock = slack_mock().await;
        mock.script([Fault::from(status)]);
        let r = Running::start(Slack::new(Secret::new(mock.url())).unwrap(), fast());
        r.enqueue(vec![
            SlackMessage::alert(&note("a", true)),
            SlackMessage::alert(&note("b", true)),
        ]);
        r.drained().await;
        let stats = r.stop().await;
        assert_eq!(
            (stats.delivered(), stats.rejected(), stats.retries()),
            (1, 1, 0),
            "{status}"
        );
        let first = &stats.history()[0];
        assert_eq!(first.status, status);
        assert!(
            matches!(&first.outcome, DeliveryOutcome::Rejected { errors } if errors[0].starts_with(&format!("http status {status}: "))),
            "{first:?}"
        );
        assert_eq!(mock.accepted().len(), 1);
        assert!(
            mock.accepted()[0]["text"]
                .as_str()
                .unwrap()
                .contains("] b:")
        );
    }
}

#[tokio::test]
async fn webhook_fires_and_resolves_with_one_identity_and_the_token() {
    let mock = ReceiverMock::alertmanager("127.0.0.1:0".parse().unwrap(), Some("s3cret-t0ken"))
        .await
        .unwrap();
    mock.script([Fault::from(500), Fault::retry_after(429, 0)]);
    let hook = Webhook::new("ops", mock.url(), Some(Secret::new("s3cret-t0ken"))).unwrap();
    let r = Running::start(hook, fast());
    r.enqueue(vec![
        WebhookMessage::alert(&note("errors", true), "ops", "http://slogate:8080"),
        WebhookMessage::alert(&note("errors", false), "ops", "http://slogate:8080"),
    ]);
    r.drained().await;
    let stats = r.stop().await;
    let got = mock.accepted();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0]["status"].as_str(), got[1]["status"].as_str()),
        (Some("firing"), Some("resolved"))
    );
    assert_eq!(got[0]["groupKey"], got[1]["groupKey"]);
    assert_eq!(
        got[0]["alerts"][0]["fingerprint"],
        got[1]["alerts"][0]["fingerprint"]
    );
    assert_eq!(got[0]["receiver"], "ops");
    assert_eq!((stats.delivered(), stats.retries()), (2, 2));

    // A wrong token is a 401: refused for good, not retried forever.
    let wrong = Webhook::new("ops", mock.url(), Some(Secret::new("nope"))).unwrap();
    let r = Running::start(wrong, fast());
    r.enqueue(vec![WebhookMessage::alert(
        &note("x", true),
        "ops",
        "http://s",
    )]);
    r.drained().await;
    let stats = r.stop().await;
    assert_eq!((stats.rejected(), stats.retries()), (1, 0));
    assert_eq!(stats.history()[0].status, 401);
}

#[tokio::test]
async fn one_destination_down_never_delays_another() {
    let down = slack_mock().await;
    down.script(vec![Fault::from(503); 10_000]);
    let hook = ReceiverMock::alertmanager("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let slack = Running::start(Slack::new(Secret::new(down.url())).unwrap(), fast());
    let webhook = Running::start(Webhook::new("ops", hook.url(), None).unwrap(), fast());
    for firing in [true, false] {
        slack.enqueue(vec![SlackMessage::alert(&note("a", firing))]);
        webhook.enqueue(vec![WebhookMessage::alert(
            &note("a", firing),
            "ops",
            "http://s",
        )]);
    }
    webhook.drained().await;
    assert_eq!(hook.accepted().len(), 2);
    // Slack keeps failing: both its messages wait, in order, in its own outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    while down.requests().len() < 3 {
        assert!(Instant::now() < deadline, "slack was not retried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slack.outbox.len(), 2);
    let pending: Vec<String> = slack
        .outbox
        .pending()
        .iter()
        .map(|e| e.event.action.clone())
        .collect();
    assert_eq!(pending, ["trigger", "resolve"]);
    let stats = slack.stop().await;
    assert!(stats.retries() >= 2 && stats.delivered() == 0);
    webhook.stop().await;
}
