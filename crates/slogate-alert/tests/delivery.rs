//! Sender against the PagerDuty mock over real HTTP: order, retries, rejections, rate limiting
//! and recovery after a restart.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, KEY, accepted, pairs};
use slogate_alert::{DeliveryOutcome, Event, Outbox, Severity};

fn trigger(key: &str) -> Event {
    Event::trigger(key, format!("{key} burning"), "slogate", Severity::Critical)
}

#[tokio::test]
async fn trigger_then_resolve_in_order_exactly_once() {
    let h = Harness::start(vec![], |_| {}).await;
    h.enqueue(vec![trigger("slo/a"), Event::resolve("slo/a")]);
    h.drained().await;
    let (mock, _dir, stats) = h.stop().await;
    assert_eq!(
        accepted(&mock),
        pairs(&[("trigger", "slo/a"), ("resolve", "slo/a")])
    );
    assert_eq!(mock.requests().len(), 2);
    assert!(mock.accepted().iter().all(|e| e["routing_key"] == KEY));
    assert_eq!(
        (
            stats.delivered(),
            stats.rejected(),
            stats.retries(),
            stats.pending()
        ),
        (2, 0, 0, 0)
    );
    let h: Vec<(String, u32, u16)> = stats
        .history()
        .iter()
        .map(|r| (r.action.clone(), r.attempts, r.status))
        .collect();
    assert_eq!(h, [("trigger".into(), 1, 202), ("resolve".into(), 1, 202)]);
}

#[tokio::test]
async fn retries_through_429_and_500() {
    // Each case: the mock's script before normal behaviour, and the expected retry count.
    let cases: [(&str, Vec<u16>, u64); 3] = [
        ("429 x3 then 500 x2", vec![429, 429, 429, 500, 500], 5),
        ("502 503 504", vec![502, 503, 504], 3),
        ("unexpected 404 is retried", vec![404], 1),
    ];
    for (name, script, retries) in cases {
        let h = Harness::start(script, |_| {}).await;
        h.enqueue(vec![
            trigger("slo/a"),
            trigger("slo/b"),
            Event::resolve("slo/a"),
        ]);
        h.drained().await;
        let (mock, _dir, stats) = h.stop().await;
        assert_eq!(
            accepted(&mock),
            pairs(&[
                ("trigger", "slo/a"),
                ("trigger", "slo/b"),
                ("resolve", "slo/a")
            ]),
            "{name}"
        );
        assert_eq!(mock.requests().len() as u64, 3 + retries, "{name}");
        assert_eq!(
            (stats.delivered(), stats.retries(), stats.rejected()),
            (3, retries, 0),
            "{name}"
        );
        let attempts: Vec<u32> = stats.history().iter().map(|r| r.attempts).collect();
        assert_eq!(attempts, [retries as u32 + 1, 1, 1], "{name}");
        assert!(
            stats.snapshot().last_error.is_none(),
            "{name}: cleared by the success"
        );
    }
}

#[tokio::test]
async fn rejected_400_is_not_retried() {
    // A scripted 400 stands for an event PagerDuty refuses; the next event still goes out.
    let h = Harness::start(vec![400], |_| {}).await;
    h.enqueue(vec![trigger("slo/a"), trigger("slo/b")]);
    h.drained().await;
    let (mock, _dir, stats) = h.stop().await;
    let statuses: Vec<u16> = mock.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 202]);
    assert_eq!(accepted(&mock), pairs(&[("trigger", "slo/b")]));
    assert_eq!(
        (stats.delivered(), stats.rejected(), stats.retries()),
        (1, 1, 0)
    );
    let first = &stats.history()[0];
    assert_eq!(first.dedup_key, "slo/a");
    assert_eq!(first.attempts, 1);
    assert_eq!(first.status, 400);
    assert_eq!(
        first.outcome,
        DeliveryOutcome::Rejected {
            errors: vec!["scripted rejection".into()]
        }
    );
}

#[tokio::test]
async fn rate_limit_spaces_sends() {
    // 6 per 600 ms with burst 1: one send per 100 ms, so 3 sends span at least 200 ms.
    let h = Harness::start(vec![], |c| {
        c.max_per_minute = 6;
        c.rate_period = Duration::from_millis(600);
        c.rate_burst = 1;
    })
    .await;
    let t0 = Instant::now();
    h.enqueue(vec![trigger("a"), trigger("b"), trigger("c")]);
    h.drained().await;
    let elapsed = t0.elapsed();
    let (mock, _dir, _stats) = h.stop().await;
    let at: Vec<u64> = mock.requests().iter().map(|r| r.at_ms).collect();
    assert_eq!(at.len(), 3);
    for gap in at.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= 90, "sends {at:?} closer than the rate allows");
    }
    assert!(
        elapsed >= Duration::from_millis(180) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn pending_events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12;
    let keys: Vec<String> = (0..n).map(|i| format!("slo/{i}")).collect();
    {
        // Queued, never sent: the process "dies" with the outbox and no sender.
        let outbox = Outbox::<Event>::open(dir.path(), 100).unwrap();
        for k in &keys {
            outbox.enqueue(trigger(k)).unwrap();
        }
    }
    std::fs::write(dir.path().join("00000000000000000000.tmp"), b"{\"half").unwrap();
    let outbox = Outbox::<Event>::open(dir.path(), 100).unwrap();
    let recovered: Vec<String> = outbox
        .pending()
        .into_iter()
        .map(|e| e.event.dedup_key)
        .collect();
    assert_eq!(recovered, keys);
    assert!(!dir.path().join("00000000000000000000.tmp").exists());
    drop(outbox);

    // A new sender on the reopened outbox delivers all of them, in order, once.
    let mock = slogate_pagerduty_mock::MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let outbox = std::sync::Arc::new(Outbox::open(dir.path(), 100).unwrap());
    let sender =
        slogate_alert::Sender::new(common::pagerduty(mock.url()), common::config()).unwrap();
    let stats = sender.stats();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sender.run(
        outbox.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
        rx,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !outbox.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    let got: Vec<String> = mock
        .accepted()
        .iter()
        .map(|e| e["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, keys);
    assert_eq!(stats.delivered(), n as u64);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "acked files removed"
    );
}

#[tokio::test]
async fn mock_down_then_up_delivers_once() {
    // Network errors are retried: the sender starts while nothing listens, then the mock comes up
    // on the address and receives each event exactly once.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let outbox = std::sync::Arc::new(Outbox::open(dir.path(), 100).unwrap());
    let sender = slogate_alert::Sender::new(
        common::pagerduty(&format!("http://{addr}")),
        common::config(),
    )
    .unwrap();
    let stats = sender.stats();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sender.run(
        outbox.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
        rx,
    ));
    outbox.enqueue(trigger("slo/a")).unwrap();
    outbox.enqueue(Event::resolve("slo/a")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.retries() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mock = slogate_pagerduty_mock::MockServer::start(addr)
        .await
        .unwrap();
    while !outbox.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(
        accepted(&mock),
        pairs(&[("trigger", "slo/a"), ("resolve", "slo/a")])
    );
    assert!(
        stats
            .snapshot()
            .recent
            .iter()
            .all(|r| r.outcome == DeliveryOutcome::Delivered)
    );
}

#[tokio::test]
async fn shutdown_during_backoff_keeps_the_event() {
    let h = Harness::start(vec![503; 1000], |c| {
        c.backoff_min = Duration::from_millis(200);
        c.backoff_max = Duration::from_secs(30);
    })
    .await;
    h.enqueue(vec![trigger("slo/a")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.stats.retries() < 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outbox = h.outbox.clone();
    let t0 = Instant::now();
    let (mock, _dir, _stats) = h.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "shutdown waited out the backoff"
    );
    assert!(mock.accepted().is_empty());
    assert_eq!(
        outbox.len(),
        1,
        "undelivered event stays queued for the next run"
    );
}
