//! The PagerDuty Events API v2 event body, without the routing key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::Secret;

/// The documented cap on a whole event, in bytes.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// The documented cap on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// The documented cap on `dedup_key`, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// Room kept for `,"routing_key":"…"` (32 characters) added at send time.
const ROUTING_KEY_OVERHEAD: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_details: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An event as queued in the outbox. The routing key is deliberately not a field: the sender
/// adds it at send time ([`Event::to_wire`]), so the key never reaches the disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_action: EventAction,
    pub dedup_key: String,
    /// Required for triggers; resolve and acknowledge events carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

/// Why an event cannot be sent. Checked before it enters the outbox, because PagerDuty would
/// reject it with a `400` and the page would be lost.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("dedup key is empty")]
    EmptyDedupKey,
    #[error("dedup key has {chars} characters, the limit is 255")]
    DedupKeyTooLong { chars: usize },
    #[error("trigger event has no payload")]
    MissingPayload,
    #[error("payload summary is blank")]
    BlankSummary,
    #[error("payload source is blank")]
    BlankSource,
    #[error("link {index} has an empty href")]
    EmptyLinkHref { index: usize },
    #[error("event is {bytes} bytes serialized, the limit is 512 KB")]
    TooLarge { bytes: usize },
}

impl Event {
    pub fn trigger(
        dedup_key: impl Into<String>,
        summary: impl Into<String>,
        source: impl Into<String>,
        severity: Severity,
    ) -> Event {
        Event {
            event_action: EventAction::Trigger,
            dedup_key: dedup_key.into(),
            payload: Some(Payload {
                summary: summary.into(),
                source: source.into(),
                severity,
                timestamp: None,
                component: None,
                group: None,
                class: None,
                custom_details: None,
            }),
            links: Vec::new(),
        }
    }

    /// A resolve needs only the dedup key (plus the routing key added at send time).
    pub fn resolve(dedup_key: impl Into<String>) -> Event {
        Event {
            event_action: EventAction::Resolve,
            dedup_key: dedup_key.into(),
            payload: None,
            links: Vec::new(),
        }
    }

    pub fn acknowledge(dedup_key: impl Into<String>) -> Event {
        Event {
            event_action: EventAction::Acknowledge,
            ..Event::resolve(dedup_key)
        }
    }

    /// Sets `payload.timestamp` as RFC 3339 from unix seconds (no-op on non-trigger events).
    pub fn with_timestamp_unix(self, unix_seconds: u64) -> Event {
        let at = UNIX_EPOCH + Duration::from_secs(unix_seconds);
        self.with_payload(|p| p.timestamp = Some(rfc3339(at)))
    }

    pub fn with_component(self, component: impl Into<String>) -> Event {
        self.with_payload(|p| p.component = Some(component.into()))
    }

    pub fn with_group(self, group: impl Into<String>) -> Event {
        self.with_payload(|p| p.group = Some(group.into()))
    }

    pub fn with_class(self, class: impl Into<String>) -> Event {
        self.with_payload(|p| p.class = Some(class.into()))
    }

    pub fn with_custom_details(self, details: Value) -> Event {
        self.with_payload(|p| p.custom_details = Some(details))
    }

    pub fn with_link(mut self, href: impl Into<String>, text: impl Into<String>) -> Event {
        self.links.push(Link {
            href: href.into(),
            text: Some(text.into()),
        });
        self
    }

    fn with_payload(mut self, edit: impl FnOnce(&mut Payload)) -> Event {
        if let Some(p) = &mut self.payload {
            edit(p);
        }
        self
    }

    /// Enforces the documented limits. An over-long summary is truncated at a character
    /// boundary rather than rejected: a shortened page beats no page. Everything else that
    /// PagerDuty would answer with `400` is an error.
    pub fn validate(&mut self) -> Result<(), EventError> {
        if self.dedup_key.is_empty() {
            return Err(EventError::EmptyDedupKey);
        }
        let chars = self.dedup_key.chars().count();
        if chars > MAX_DEDUP_KEY_CHARS {
            return Err(EventError::DedupKeyTooLong { chars });
        }
        match (&mut self.payload, self.event_action) {
            (None, EventAction::Trigger) => return Err(EventError::MissingPayload),
            (Some(p), EventAction::Trigger) => {
                if p.summary.trim().is_empty() {
                    return Err(EventError::BlankSummary);
                }
                if p.source.trim().is_empty() {
                    return Err(EventError::BlankSource);
                }
                truncate_chars(&mut p.summary, MAX_SUMMARY_CHARS);
            }
            // PagerDuty ignores a payload on resolve and acknowledge; it is not worth a 400.
            _ => {}
        }
        if let Some(index) = self.links.iter().position(|l| l.href.is_empty()) {
            return Err(EventError::EmptyLinkHref { index });
        }
        let bytes = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if bytes + ROUTING_KEY_OVERHEAD > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { bytes });
        }
        Ok(())
    }

    /// The body to POST: this event plus `routing_key`.
    pub fn to_wire(&self, routing_key: &Secret) -> Value {
        let mut v = serde_json::to_value(self).expect("event serializes to a JSON object");
        if let Value::Object(m) = &mut v {
            m.insert(
                "routing_key".into(),
                Value::String(routing_key.expose().to_string()),
            );
        }
        v
    }
}

impl crate::outbox::Item for Event {
    type Error = EventError;

    fn validate(&mut self) -> Result<(), EventError> {
        Event::validate(self)
    }

    fn key(&self) -> &str {
        &self.dedup_key
    }

    fn action(&self) -> &str {
        self.event_action.as_str()
    }
}

/// Cuts `s` to at most `max` characters, at a character boundary.
pub(crate) fn truncate_chars(s: &mut String, max: usize) {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trig() -> Event {
        Event::trigger(
            "slo/checkout",
            "burn rate 14x",
            "slogate",
            Severity::Critical,
        )
    }

    #[test]
    fn validate_table() {
        type Edit = fn(&mut Event);
        let cases: Vec<(&str, Edit, Result<(), EventError>)> = vec![
            ("valid trigger", |_| {}, Ok(())),
            (
                "valid resolve",
                |e| *e = Event::resolve("slo/checkout"),
                Ok(()),
            ),
            ("dedup key 255", |e| e.dedup_key = "k".repeat(255), Ok(())),
            (
                "dedup key 255 multibyte",
                |e| e.dedup_key = "é".repeat(255),
                Ok(()),
            ),
            (
                "empty dedup key",
                |e| e.dedup_key.clear(),
                Err(EventError::EmptyDedupKey),
            ),
            (
                "dedup key 256",
                |e| e.dedup_key = "k".repeat(256),
                Err(EventError::DedupKeyTooLong { chars: 256 }),
            ),
            (
                "trigger without payload",
                |e| e.payload = None,
                Err(EventError::MissingPayload),
            ),
            (
                "blank summary",
                |e| e.payload.as_mut().unwrap().summary = " ".into(),
                Err(EventError::BlankSummary),
            ),
            (
                "blank source",
                |e| e.payload.as_mut().unwrap().source = String::new(),
                Err(EventError::BlankSource),
            ),
            (
                "empty link href",
                |e| {
                    e.links.push(Link {
                        href: String::new(),
                        text: None,
                    })
                },
                Err(EventError::EmptyLinkHref { index: 0 }),
            ),
            (
                "over 512 KB",
                |e| {
                    e.payload.as_mut().unwrap().custom_details =
                        Some(json!({"x": "y".repeat(MAX_EVENT_BYTES)}))
                },
                Err(EventError::TooLarge {
                    bytes: MAX_EVENT_BYTES + 94,
                }),
            ),
        ];
        for (name, edit, want) in cases {
            let mut e = trig();
            edit(&mut e);
            let got = e.validate();
            match (&got, &want) {
                (Err(EventError::TooLarge { .. }), Err(EventError::TooLarge { .. })) => {}
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    #[test]
    fn summary_truncated_at_char_boundary() {
        let cases = [
            ("ascii", "a".repeat(2000), "a".repeat(1024)),
            ("multibyte", "€".repeat(1500), "€".repeat(1024)),
            ("short", "ok".into(), "ok".into()),
        ];
        for (name, summary, want) in cases {
            let mut e = Event::trigger("k", summary, "s", Severity::Info);
            e.validate().unwrap();
            assert_eq!(e.payload.unwrap().summary, want, "{name}");
        }
    }

    #[test]
    fn wire_format() {
        let key = Secret::new("0123456789abcdef0123456789ABCDEF");
        let e = trig()
            .with_timestamp_unix(1_700_000_000)
            .with_component("checkout")
            .with_group("prod")
            .with_class("slo_burn")
            .with_custom_details(json!({"burn": 14.4}))
            .with_link("https://slogate/slos/checkout", "SLO");
        assert_eq!(
            e.to_wire(&key),
            json!({
                "routing_key": "0123456789abcdef0123456789ABCDEF",
                "event_action": "trigger",
                "dedup_key": "slo/checkout",
                "payload": {
                    "summary": "burn rate 14x", "source": "slogate", "severity": "critical",
                    "timestamp": "2023-11-14T22:13:20Z", "component": "checkout", "group": "prod",
                    "class": "slo_burn", "custom_details": {"burn": 14.4},
                },
                "links": [{"href": "https://slogate/slos/checkout", "text": "SLO"}],
            })
        );
        assert_eq!(
            Event::resolve("slo/checkout").to_wire(&key),
            json!({"routing_key": "0123456789abcdef0123456789ABCDEF", "event_action": "resolve", "dedup_key": "slo/checkout"})
        );
        // Without the key, nothing secret is in the stored form.
        assert!(!serde_json::to_string(&e).unwrap().contains("routing_key"));
    }

    #[test]
    fn every_valid_event_passes_the_mock_validator() {
        let key = Secret::new("0123456789abcdef0123456789ABCDEF");
        let events = [
            trig(),
            Event::resolve("slo/checkout"),
            Event::acknowledge("slo/checkout"),
            trig()
                .with_timestamp_unix(0)
                .with_custom_details(json!({}))
                .with_link("h", "t"),
        ];
        for mut e in events {
            e.validate().unwrap();
            let body = serde_json::to_vec(&e.to_wire(&key)).unwrap();
            assert!(slogate_pagerduty_mock::validate(&body).is_ok(), "{e:?}");
        }
    }
}
