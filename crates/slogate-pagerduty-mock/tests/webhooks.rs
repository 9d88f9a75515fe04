//! The Slack and Alertmanager-webhook stand-ins over real HTTP: answers in the services' own
//! words, scripted faults with `Retry-After`, the secret path, the bearer token, and the
//! binaries keeping their record across a kill and restart.

mod common;

use common::spawn;

use serde_json::{Value, json};
use slogate_pagerduty_mock::{Fault, ReceiverMock};

fn slack_message() -> Value {
    json!({
        "text": "checkout: hold &gt; rollback",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "p99 &gt; 300 ms"}}],
    })
}

fn am_payload(status: &str) -> Value {
    let labels = json!({"alertname": "SlogateGateVerdict", "gate": "checkout"});
    let fingerprint =
        slogate_pagerduty_mock::alertmanager::fingerprint(labels.as_object().unwrap());
    json!({
        "version": "4", "groupKey": "{}:{gate=\"checkout\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "ops", "groupLabels": {"gate": "checkout"},
        "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://slogate:8080",
        "alerts": [{
            "status": status, "labels": labels, "annotations": {},
            "startsAt": "2025-11-07T18:00:00Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2025-11-07T18:05:00Z" },
            "generatorURL": "http://slogate:8080/api/v1/verdicts?gate=checkout",
            "fingerprint": fingerprint,
        }],
    })
}

/// Posts `body`; returns the status, the `Retry-After` header and the body text.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, String) {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.text().await.unwrap())
}

#[tokio::test]
async fn slack_answers_in_slacks_words() {
    let slack = ReceiverMock::slack("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = slack.url().to_string();
    assert!(url.contains("/services/T"), "{url}");
    let client = reqwest::Client::new();
    slack.script([
        Fault::retry_after(429, 3),
        Fault::from(500),
        Fault::from(410),
    ]);
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(post(&client, &url, None, &slack_message()).await);
    }
    let answers: Vec<(u16, Option<&str>, &str)> = answers
        .iter()
        .map(|(s, r, b)| (*s, r.as_deref(), b.as_str()))
        .collect();
    assert_eq!(
        answers,
        [
            (429, Some("3"), "rate_limited"),
            (500, None, "rollup_error"),
            (410, None, "channel_is_archived"),
            (200, None, "ok"),
        ]
    );
    // Refusals of the contract, each with Slack's code.
    let wrong_path = url.rsplit_once('/').unwrap().0.to_string() + "/guessed";
    let cases: [(&str, Value, u16, &str); 3] = [
        (&wrong_path, slack_message(), 404, "no_service"),
        (&url, json!({"text": "a & b"}), 400, "invalid_payload"),
        (
            &url,
            json!({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]}),
            400,
            "invalid_blocks",
        ),
    ];
    for (u, body, status, code) in cases {
        let (s, _, b) = post(&client, u, None, &body).await;
        assert_eq!((s, b.as_str()), (status, code), "{body}");
    }
    let form = client
        .post(&url)
        .body("payload=%7B%7D")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 400);
    assert_eq!(slack.accepted(), vec![slack_message()]);
    let requests = slack.requests();
    assert_eq!(requests.len(), 8);
    assert!(requests[..3].iter().all(|r| r.scripted));
    assert!(
        requests[5].problems[0].contains("unescaped &"),
        "{:?}",
        requests[5]
    );
    // The control API scripts the same queue, numbers or faults with Retry-After.
    let base = format!("http://{}", slack.addr());
    client
        .post(format!("{base}/_control/script"))
        .json(&json!({"responses": [503, {"status": 429, "retry_after": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(slack.script_left(), 2);
    assert_eq!(post(&client, &url, None, &slack_message()).await.0, 503);
    let (s, r, _) = post(&client, &url, None, &slack_message()).await;
    assert_eq!((s, r.as_deref()), (429, Some("1")));
}

#[tokio::test]
async fn alertmanager_receiver_checks_token_and_shape() {
    let hook = ReceiverMock::alertmanager("127.0.0.1:0".parse().unwrap(), Some("t0ken"))
        .await
        .unwrap();
    let url = hook.url().to_string();
    assert!(url.ends_with("/hook"), "{url}");
    let client = reqwest::Client::new();
    let cases: [(Option<&str>, Value, u16); 5] = [
        (None, am_payload("firing"), 401),
        (Some("wrong"), am_payload("firing"), 401),
        (Some("t0ken"), json!({"version": "4"}), 400),
        (Some("t0ken"), am_payload("firing"), 200),
        (Some("t0ken"), am_payload("resolved"), 200),
    ];
    for (token, body, want) in cases {
        let (s, _, text) = post(&client, &url, token, &body).await;
        assert_eq!(s, want, "{token:?}: {text}");
    }
    assert_eq!(
        hook.accepted(),
        vec![am_payload("firing"), am_payload("resolved")]
    );
    hook.script([Fault::retry_after(503, 2)]);
    let (s, r, _) = post(&client, &url, Some("t0ken"), &am_payload("firing")).await;
    assert_eq!((s, r.as_deref()), (503, Some("2")));
}

/// Kills the child on drop so a failing assertion never leaves a server running.

#[tokio::test]
async fn binaries_record_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, body, extra) in [
        (
            env!("CARGO_BIN_EXE_slack-mock"),
            slack_message(),
            vec!["--path", "/services/T1/B1/abc"],
        ),
        (
            env!("CARGO_BIN_EXE_webhook-mock"),
            am_payload("firing"),
            vec!["--token", "t"],
        ),
    ] {
        let record = dir
            .path()
            .join(format!("{}.jsonl", body["text"].is_string()));
        let record = record.to_str().unwrap();
        let mut args = vec!["--listen", "127.0.0.1:0", "--record", record];
        args.extend(&extra);
        let (first, url) = spawn(bin, &args);
        let client = reqwest::Client::new();
        assert_eq!(post(&client, &url, Some("t"), &body).await.0, 200, "{bin}");
        drop(first); // SIGKILL: the record must already be on disk
        let addr = url
            .strip_prefix("http://")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        args[1] = &addr;
        let (_second, url2) = spawn(bin, &args);
        assert_eq!(url2, url, "{bin}: same URL after the restart");
        let client = reqwest::Client::new();
        assert_eq!(post(&client, &url2, Some("t"), &body).await.0, 200, "{bin}");
        let lines: Vec<Value> = std::fs::read_to_string(record)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![body.clone(), body], "{bin}");
    }
}
