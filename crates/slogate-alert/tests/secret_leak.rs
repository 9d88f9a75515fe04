//! The routing key never appears in Debug output, logs (captured at trace level, including
//! reqwest and hyper) or the outbox files. Its own test binary because it installs a global
//! tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Harness, KEY};
use slogate_alert::{Event, Sender, Severity};

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
    let config_debug = format!("{:?}", common::config(h.mock.url()));
    let mut bad = common::config("ftp://events.pagerduty.com");
    bad.routing_key = slogate_alert::Secret::new(KEY);
    let sender_err = Sender::new(bad).err().unwrap().to_string();

    // The files are read from a second outbox holding the same events, because the harness's
    // sender may drain its own outbox before the test gets to look.
    let dir = tempfile::tempdir().unwrap();
    let standalone = slogate_alert::Outbox::open(dir.path(), 10).unwrap();
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
