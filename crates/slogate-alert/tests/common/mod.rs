//! Shared harness: a mock PagerDuty, an outbox in a temp dir and a running sender.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use slogate_alert::{DeliveryStats, Event, Outbox, PagerDuty, Secret, Sender, SenderConfig};
use slogate_pagerduty_mock::MockServer;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub const KEY: &str = "R0UT1NGKEYr0ut1ngkey0123456789ab";

/// PagerDuty at `url` with the test key.
pub fn pagerduty(url: &str) -> PagerDuty {
    assert_eq!(KEY.len(), 32);
    PagerDuty::new(url, Secret::new(KEY)).unwrap()
}

/// Fast retries for tests.
pub fn config() -> SenderConfig {
    SenderConfig {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        rescan_interval: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..SenderConfig::default()
    }
}

pub struct Harness {
    pub mock: MockServer,
    pub dir: tempfile::TempDir,
    pub outbox: Arc<Outbox<Event>>,
    pub notify: Arc<Notify>,
    pub stats: Arc<DeliveryStats>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Harness {
    pub async fn start(script: Vec<u16>, tweak: impl FnOnce(&mut SenderConfig)) -> Harness {
        let mock = MockServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        mock.script(script);
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(dir.path(), 100).unwrap());
        let mut cfg = config();
        tweak(&mut cfg);
        let sender = Sender::new(pagerduty(mock.url()), cfg).unwrap();
        let stats = sender.stats();
        let notify = Arc::new(Notify::new());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(sender.run(outbox.clone(), notify.clone(), rx));
        Harness {
            mock,
            dir,
            outbox,
            notify,
            stats,
            shutdown,
            task,
        }
    }

    pub fn enqueue(&self, events: Vec<Event>) {
        for e in events {
            self.outbox.enqueue(e).unwrap();
        }
        self.notify.notify_one();
    }

    /// Waits until the outbox is drained (bounded, so a bug fails instead of hanging).
    pub async fn drained(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.outbox.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "outbox not drained: {} pending",
                self.outbox.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) -> (MockServer, tempfile::TempDir, Arc<DeliveryStats>) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sender stops on shutdown")
            .unwrap();
        (self.mock, self.dir, self.stats)
    }
}

/// `(event_action, dedup_key)` of each accepted event, in order.
pub fn accepted(mock: &MockServer) -> Vec<(String, String)> {
    mock.accepted()
        .iter()
        .map(|e| {
            (
                e["event_action"].as_str().unwrap().to_string(),
                e["dedup_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect()
}
