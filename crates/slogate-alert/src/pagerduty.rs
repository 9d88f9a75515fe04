//! The PagerDuty Events API v2 destination: `POST {url}/v2/enqueue` with the routing key added
//! at send time.

use crate::Secret;
use crate::event::Event;
use crate::sender::{Classified, Destination, SenderError, body_excerpt};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com";

/// PagerDuty: where events go and the routing key that files them.
#[derive(Debug)]
pub struct PagerDuty {
    endpoint: String,
    routing_key: Secret,
}

impl PagerDuty {
    /// `url` is the base (the sender posts to `{url}/v2/enqueue`).
    pub fn new(url: &str, routing_key: Secret) -> Result<PagerDuty, SenderError> {
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SenderError::BadUrl {
                what: "pagerduty",
                url: url.to_string(),
            });
        }
        let chars = routing_key.expose().chars().count();
        if chars != 32 {
            return Err(SenderError::RoutingKeyLength { chars });
        }
        Ok(PagerDuty {
            endpoint: format!("{base}/v2/enqueue"),
            routing_key,
        })
    }
}

impl Destination for PagerDuty {
    type Item = Event;

    fn name(&self) -> &str {
        "pagerduty"
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn request(&self, client: &reqwest::Client, event: &Event) -> reqwest::RequestBuilder {
        client
            .post(&self.endpoint)
            .json(&event.to_wire(&self.routing_key))
    }

    fn classify(&self, status: u16, body: &str) -> Classified {
        match status {
            200..=299 => Classified::Delivered,
            // 400 is PagerDuty's "invalid event"; 413 an oversized one. Neither improves with time.
            400 | 413 => Classified::Rejected(rejection_errors(body)),
            // Everything else is retried, including unexpected 4xx (401, 403, 404): those mean a
            // misconfiguration an operator can fix, and dropping the page would lose it for good.
            _ => Classified::Retry(format!("http status {status}")),
        }
    }
}

/// The `errors[]` of a PagerDuty `400` body, or the raw body (bounded) when it has none.
fn rejection_errors(body: &str) -> Vec<String> {
    let parsed: Option<Vec<String>> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|a| {
                a.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect()
            })
        });
    match parsed {
        Some(errors) if !errors.is_empty() => errors,
        _ => vec![body_excerpt(body)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_errors_table() {
        let cases = [
            (
                r#"{"status":"invalid event","errors":["a","b"]}"#,
                vec!["a", "b"],
            ),
            (r#"{"errors":[1]}"#, vec!["1"]),
            ("plain text", vec!["plain text"]),
            (r#"{"errors":[]}"#, vec![r#"{"errors":[]}"#]),
        ];
        for (body, want) in cases {
            assert_eq!(rejection_errors(body), want, "{body}");
        }
    }

    #[test]
    fn classification_table() {
        let pd = PagerDuty::new("http://x/", Secret::new("k".repeat(32))).unwrap();
        assert_eq!(pd.endpoint, "http://x/v2/enqueue");
        let cases: [(u16, &str); 7] = [
            (202, "delivered"),
            (400, "rejected"),
            (413, "rejected"),
            (404, "retry"),
            (403, "retry"),
            (429, "retry"),
            (502, "retry"),
        ];
        for (status, want) in cases {
            let got = match pd.classify(status, "{}") {
                Classified::Delivered => "delivered",
                Classified::Rejected(_) => "rejected",
                Classified::Retry(_) => "retry",
            };
            assert_eq!(got, want, "{status}");
        }
    }

    #[test]
    fn construction_checks_never_show_the_key() {
        let key = "0123456789abcdef0123456789ABCDEF";
        let cases: [(&str, &str, &str); 2] = [
            ("ftp://x", key, "must start with http"),
            (
                "http://x",
                "abc",
                "routing key must be 32 characters, it has 3",
            ),
        ];
        for (url, k, want) in cases {
            let msg = PagerDuty::new(url, Secret::new(k)).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(!msg.contains(key), "{msg}");
        }
    }
}
