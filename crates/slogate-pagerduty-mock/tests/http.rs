//! End-to-end checks of the mock over real HTTP: the control API, fault scripts, and the binary
//! surviving a kill and restart with its record file.

mod common;

use serde_json::{Value, json};
use slogate_pagerduty_mock::MockServer;

const KEY: &str = "0123456789abcdef0123456789ABCDEF";

fn trigger(dedup: &str) -> Value {
    json!({
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {"summary": "burn rate high", "source": "slogate", "severity": "critical"},
    })
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(format!("{url}/v2/enqueue"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn script_then_normal_behaviour() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    mock.script(vec![429, 500]);
    // The control endpoint appends to the same script.
    let resp = client
        .post(format!("{}/_control/script", mock.url()))
        .json(&json!({"responses": [503]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(&client, mock.url(), &trigger("a")).await.0);
    }
    assert_eq!(statuses, [429, 500, 503, 202]);

    let (status, body) = post(&client, mock.url(), &json!({"event_action": "resolve"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "invalid event");
    assert_eq!(body["message"], "Event object is invalid");
    assert_eq!(
        body["errors"],
        json!([
            "routing_key is missing",
            "dedup_key is required for acknowledge and resolve"
        ])
    );

    let events: Vec<Value> = client
        .get(format!("{}/_control/events", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events, vec![trigger("a")]);
    assert_eq!(mock.accepted(), events);

    let requests: Value = client
        .get(format!("{}/_control/requests", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<(u64, bool)> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap(),
                r["scripted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (429, true),
            (500, true),
            (503, true),
            (202, false),
            (400, false)
        ]
    );

    client
        .post(format!("{}/_control/reset", mock.url()))
        .send()
        .await
        .unwrap();
    assert!(mock.accepted().is_empty() && mock.requests().is_empty());
}

#[tokio::test]
async fn success_answer_carries_dedup_key() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let (status, body) = post(&client, mock.url(), &trigger("slo/a")).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "slo/a"})
    );
    let mut no_key = trigger("x");
    no_key.as_object_mut().unwrap().remove("dedup_key");
    let (status, body) = post(&client, mock.url(), &no_key).await;
    assert_eq!(status, 202);
    assert_eq!(body["dedup_key"].as_str().unwrap().len(), 32);
}

/// Kills the child on drop so a failing assertion never leaves a server running.
fn spawn_mock(listen: &str, record: &std::path::Path) -> (common::Proc, String) {
    let record = record.to_str().expect("a UTF-8 temp path");
    common::spawn(
        env!("CARGO_BIN_EXE_pagerduty-mock"),
        &["--listen", listen, "--record", record],
    )
}

#[tokio::test]
async fn binary_records_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("accepted.jsonl");
    let client = reqwest::Client::new();

    let (proc1, url) = spawn_mock("127.0.0.1:0", &record);
    assert_eq!(post(&client, &url, &trigger("a")).await.0, 202);
    assert_eq!(post(&client, &url, &json!({"bad": true})).await.0, 400);
    drop(proc1); // SIGKILL: the record must already be on disk

    let addr = url.strip_prefix("http://").unwrap().to_string();
    let (_proc2, url2) = spawn_mock(&addr, &record);
    assert_eq!(url2, url, "restart on the same address");
    // A fresh client: the old one's pooled connection died with the first process.
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &url2, &trigger("b")).await.0, 202);

    let lines: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, vec![trigger("a"), trigger("b")]);
}
