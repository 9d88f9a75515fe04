//! The generic webhook destination, in Alertmanager's webhook payload format (version `4`), so
//! anything that already receives Alertmanager notifications (a chat bridge, an incident tool,
//! an automation) receives slogate's too.
//!
//! Each notification is a group of one alert. An alert transition keeps its labels, so its
//! `fingerprint` (computed as Prometheus computes a label set's: FNV-1a over the sorted label
//! pairs) and `groupKey` are the same when it fires and when it resolves, and `startsAt` is
//! when it started firing in both. A gate's verdict change is an alert named
//! `SlogateGateVerdict`, labelled with the gate, phase and cohorts: `firing` while the decision
//! is hold or rollback, `resolved` when it is proceed.
//!
//! Answers: `2xx` delivered; `408` and `429` retried (honouring `Retry-After`); any other `4xx`
//! dropped and counted; `5xx` and network errors retried. An optional bearer token (a
//! [`Secret`]) goes in `Authorization` at send time only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::event::truncate_chars;
use crate::notification::{AlertNote, MessageError, VerdictNote};
use crate::outbox::Item;
use crate::sender::{Classified, Destination, SenderError, classify_http};

/// `endsAt` of an alert still firing, as Alertmanager writes Go's zero time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The alert name of verdict changes.
pub const VERDICT_ALERTNAME: &str = "SlogateGateVerdict";
/// An annotation value is cut to this many characters.
const MAX_ANNOTATION_CHARS: usize = 4096;

pub type LabelSet = BTreeMap<String, String>;

/// Alertmanager's webhook body, version 4.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    pub receiver: String,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    pub status: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; [`ZERO_TIME`] while firing.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// The fingerprint of a label set as Prometheus computes it (`model.LabelSet.Fingerprint`):
/// 64-bit FNV-1a over each sorted `name`, `0xff`, `value`, `0xff`, as 16 hex digits.
pub fn fingerprint(labels: &LabelSet) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // A BTreeMap iterates its names sorted, as Prometheus sorts them.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// `{}:{alertname="x", gate="y"}`: Alertmanager's group key of the root route grouping by
/// `group_labels`.
pub fn group_key(group_labels: &LabelSet) -> String {
    let mut out = String::from("{}:{");
    for (i, (name, value)) in group_labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{name}={value:?}");
    }
    out.push('}');
    out
}

fn rfc3339(unix: u64) -> String {
    crate::event::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

fn annotation(value: &str) -> String {
    let mut v = value.to_string();
    truncate_chars(&mut v, MAX_ANNOTATION_CHARS);
    v
}

/// A queued webhook notification: the payload, plus what it is about (not sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookMessage {
    pub key: String,
    /// `trigger`, `resolve` or `verdict`.
    pub action: String,
    pub payload: AlertmanagerPayload,
}

impl WebhookMessage {
    /// One alert; `receiver` is the webhook's name, `external_url` slogate's base URL.
    pub fn alert(n: &AlertNote, receiver: &str, external_url: &str) -> WebhookMessage {
        let severity = match n.severity {
            crate::Severity::Critical => "critical",
            crate::Severity::Error => "error",
            crate::Severity::Warning => "warning",
            crate::Severity::Info => "info",
        };
        let mut labels: LabelSet = [
            ("alertname", n.rule.as_str()),
            ("alert_id", n.id.as_str()),
            ("severity", severity),
            ("tier", n.tier.as_str()),
            ("class", n.class.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !n.service.is_empty() {
            labels.insert("service".into(), n.service.clone());
        }
        let mut annotations = LabelSet::new();
        annotations.insert("summary".into(), annotation(&n.summary));
        if !n.details.is_null() {
            annotations.insert("details".into(), annotation(&n.details.to_string()));
        }
        let group: LabelSet = ["alertname", "alert_id"]
            .iter()
            .map(|k| (k.to_string(), labels[*k].clone()))
            .collect();
        let status = if n.firing { "firing" } else { "resolved" };
        let ends_at = n.ended_at.map_or_else(|| ZERO_TIME.to_string(), rfc3339);
        WebhookMessage {
            key: n.id.clone(),
            action: if n.firing { "trigger" } else { "resolve" }.into(),
            payload: payload(
                receiver,
                external_url,
                status,
                group,
                AlertmanagerAlert {
                    status: status.into(),
                    fingerprint: fingerprint(&labels),
                    labels,
                    annotations,
                    starts_at: rfc3339(n.started_at),
                    ends_at,
                    generator_url: n.link.clone(),
                },
            ),
        }
    }

    /// A gate's verdict change.
    pub fn verdict(v: &VerdictNote, receiver: &str, external_url: &str) -> WebhookMessage {
        let mut labels: LabelSet = [
            ("alertname", VERDICT_ALERTNAME),
            ("gate", v.gate.as_str()),
            ("phase", v.phase.as_str()),
            ("canary", v.canary.selector.as_str()),
            ("baseline", v.baseline.selector.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !v.service.is_empty() {
            labels.insert("service".into(), v.service.clone());
        }
        let mut annotations: LabelSet = [
            ("summary", v.headline()),
            ("verdict", v.to.verdict.clone()),
            ("decision", v.to.decision.clone()),
            ("canary_figures", v.canary.figures()),
            ("baseline_figures", v.baseline.figures()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), annotation(&v)))
        .collect();
        if let Some(from) = &v.from {
            annotations.insert("previous_decision".into(), from.decision.clone());
        }
        if !v.reasons.is_empty() {
            annotations.insert("reasons".into(), annotation(&v.reasons.join("\n")));
        }
        let group: LabelSet = ["alertname", "gate", "phase", "canary", "baseline"]
            .iter()
            .map(|k| (k.to_string(), labels[*k].clone()))
            .collect();
        let firing = v.to.decision != "proceed";
        let status = if firing { "firing" } else { "resolved" };
        let at = rfc3339(v.at);
        WebhookMessage {
            key: v.key(),
            action: "verdict".into(),
            payload: payload(
                receiver,
                external_url,
                status,
                group,
                AlertmanagerAlert {
                    status: status.into(),
                    fingerprint: fingerprint(&labels),
                    labels,
                    annotations,
                    ends_at: if firing {
                        ZERO_TIME.to_string()
                    } else {
                        at.clone()
                    },
                    starts_at: at,
                    generator_url: v.link.clone(),
                },
            ),
        }
    }
}

/// A group of one alert: its labels and annotations are the common ones.
fn payload(
    receiver: &str,
    external_url: &str,
    status: &str,
    group_labels: LabelSet,
    alert: AlertmanagerAlert,
) -> AlertmanagerPayload {
    AlertmanagerPayload {
        version: "4".into(),
        group_key: group_key(&group_labels),
        truncated_alerts: 0,
        status: status.into(),
        receiver: receiver.into(),
        group_labels,
        common_labels: alert.labels.clone(),
        common_annotations: alert.annotations.clone(),
        external_url: external_url.into(),
        alerts: vec![alert],
    }
}

impl Item for WebhookMessage {
    type Error = MessageError;

    fn validate(&mut self) -> Result<(), MessageError> {
        if self.key.is_empty() {
            return Err(MessageError::EmptyKey);
        }
        if self.payload.alerts.is_empty() {
            return Err(MessageError::NoAlerts);
        }
        Ok(())
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn action(&self) -> &str {
        &self.action
    }
}

/// A webhook receiver: its name (the payload's `receiver`, the `destination` label), its URL
/// and an optional bearer token.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    url: String,
    token: Option<Secret>,
}

impl Webhook {
    pub fn new(name: &str, url: &str, token: Option<Secret>) -> Result<Webhook, SenderError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SenderError::BadUrl {
                what: "webhook",
                url: url.to_string(),
            });
        }
        Ok(Webhook {
            name: name.to_string(),
            url: url.to_string(),
            token,
        })
    }
}

impl Destination for Webhook {
    type Item = WebhookMessage;

    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn request(&self, client: &reqwest::Client, m: &WebhookMessage) -> reqwest::RequestBuilder {
        let req = client.post(&self.url).json(&m.payload);
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    fn classify(&self, status: u16, body: &str) -> Classified {
        classify_http(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::tests::{alert, verdict};
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprint_matches_prometheus() {
        // Values from prometheus/common model/signature_test.go (TestMetricToFingerprint and
        // its benchmarks): the empty set is the FNV offset basis.
        let cases = [
            (labels(&[]), 14_695_981_039_346_656_037u64),
            (
                labels(&[("name", "garland, briggs"), ("fear", "love is not enough")]),
                5_799_056_148_416_392_346,
            ),
            (
                labels(&[
                    ("first-label", "first-label-value"),
                    ("second-label", "second-label-value"),
                    ("third-label", "third-label-value"),
                ]),
                13_843_036_195_897_128_121,
            ),
        ];
        for (set, want) in cases {
            assert_eq!(fingerprint(&set), format!("{want:016x}"), "{set:?}");
        }
    }

    #[test]
    fn group_key_quotes_like_alertmanager() {
        assert_eq!(
            group_key(&labels(&[("gate", "a\"b"), ("alertname", "X")])),
            r#"{}:{alertname="X", gate="a\"b"}"#
        );
    }

    #[test]
    fn alert_fires_and_resolves_with_one_identity() {
        let fire = WebhookMessage::alert(&alert(true), "ops-bridge", "https://slogate.example.com");
        let resolve =
            WebhookMessage::alert(&alert(false), "ops-bridge", "https://slogate.example.com");
        let f = serde_json::to_value(&fire.payload).unwrap();
        let labels = json!({
            "alertname": "checkout-availability",
            "alert_id": "slogate/slo-burn/checkout-availability/14.4x-1h",
            "class": "slo_burn",
            "service": "checkout",
            "severity": "critical",
            "tier": "P1",
        });
        assert_eq!(f["version"], "4");
        assert_eq!(f["status"], "firing");
        assert_eq!(f["receiver"], "ops-bridge");
        assert_eq!(f["externalURL"], "https://slogate.example.com");
        assert_eq!(f["truncatedAlerts"], 0);
        assert_eq!(
            f["groupKey"],
            r#"{}:{alert_id="slogate/slo-burn/checkout-availability/14.4x-1h", alertname="checkout-availability"}"#
        );
        assert_eq!(f["commonLabels"], labels);
        assert_eq!(f["alerts"][0]["labels"], labels);
        assert_eq!(f["alerts"][0]["startsAt"], "2025-11-07T18:00:00Z");
        assert_eq!(f["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(
            f["alerts"][0]["generatorURL"],
            "https://slogate.example.com/api/v1/slos/checkout-availability"
        );
        let r = serde_json::to_value(&resolve.payload).unwrap();
        assert_eq!(r["status"], "resolved");
        assert_eq!(r["alerts"][0]["status"], "resolved");
        assert_eq!(r["alerts"][0]["endsAt"], "2025-11-07T18:15:00Z");
        assert_eq!(r["alerts"][0]["startsAt"], f["alerts"][0]["startsAt"]);
        assert_eq!(r["groupKey"], f["groupKey"]);
        assert_eq!(r["alerts"][0]["fingerprint"], f["alerts"][0]["fingerprint"]);
        assert_eq!(
            (fire.action.as_str(), resolve.action.as_str()),
            ("trigger", "resolve")
        );
    }

    #[test]
    fn verdict_change_is_a_gate_alert() {
        let mut v = verdict();
        let m = WebhookMessage::verdict(&v, "hook", "http://s");
        let p = &m.payload;
        assert_eq!(p.status, "firing");
        assert_eq!(p.alerts[0].labels["alertname"], VERDICT_ALERTNAME);
        assert_eq!(p.alerts[0].annotations["decision"], "rollback");
        assert_eq!(p.alerts[0].annotations["previous_decision"], "hold");
        assert_eq!(
            p.alerts[0].annotations["summary"],
            "checkout canary version=v2: hold → rollback: p99 ratio 1.42 > 1.20 (canary 412.5 ms vs baseline 290.0 ms)"
        );
        v.from = Some(v.to.clone());
        v.to = crate::VerdictState {
            verdict: "pass".into(),
            decision: "proceed".into(),
        };
        let back = WebhookMessage::verdict(&v, "hook", "http://s");
        assert_eq!(back.payload.status, "resolved");
        assert_eq!(back.payload.alerts[0].ends_at, "2025-11-07T18:40:00Z");
        assert_eq!(back.payload.group_key, p.group_key);
        assert_eq!(back.payload.alerts[0].fingerprint, p.alerts[0].fingerprint);
    }

    #[test]
    fn every_payload_passes_the_stand_in_validator() {
        let mut first = verdict();
        first.from = None;
        first.reasons.clear();
        let mut bare = alert(true);
        bare.service.clear();
        bare.details = serde_json::Value::Null;
        bare.summary = "x".repeat(10_000);
        let messages = [
            WebhookMessage::alert(&alert(true), "r", "http://s"),
            WebhookMessage::alert(&alert(false), "r", "http://s"),
            WebhookMessage::alert(&bare, "r", "http://s"),
            WebhookMessage::verdict(&verdict(), "r", "http://s"),
            WebhookMessage::verdict(&first, "r", "http://s"),
        ];
        for mut m in messages {
            m.validate().unwrap();
            let body = serde_json::to_vec(&m.payload).unwrap();
            assert_eq!(
                slogate_pagerduty_mock::alertmanager::validate(&body),
                Ok(()),
                "{m:#?}"
            );
        }
    }

    #[test]
    fn construction() {
        assert!(Webhook::new("a", "ftp://x", None).is_err());
        let w = Webhook::new("a", "https://x/hook", Some(Secret::new("tok"))).unwrap();
        assert_eq!((w.name(), w.kind()), ("a", "webhook"));
        assert!(!format!("{w:?}").contains("tok\""), "{w:?}");
    }
}
