//! The Slack incoming-webhook destination: a message with a `text` fallback (what
//! notifications and old clients show) and Block Kit `blocks` (a header, the summary, fields
//! and a context line with the link back to slogate).
//!
//! Slack's contract, as its documentation gives it: `POST` JSON to the webhook URL; `200 ok`
//! means posted; `400 invalid_payload` / `invalid_blocks` / `no_text`, `403 action_prohibited`,
//! `404 no_service` / `channel_not_found` and `410 channel_is_archived` will not improve, so the
//! message is dropped and counted; `429` (with `Retry-After`) and `5xx` are retried. The
//! webhook URL is the credential: it is a [`Secret`], never written to the outbox or a log.
//!
//! Text in `mrkdwn` has `&`, `<` and `>` escaped as `&amp;`, `&lt;`, `&gt;` (Slack reads `<…>`
//! as a link or a mention), and every piece is cut to Block Kit's documented limits.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Secret;
use crate::event::truncate_chars;
use crate::notification::{AlertNote, MessageError, VerdictNote};
use crate::outbox::Item;
use crate::sender::{Classified, Destination, SenderError, classify_http};

/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// A header block's `plain_text`.
pub const MAX_HEADER_CHARS: usize = 150;
/// A section block's `text`.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Each of a section's `fields`, and how many there may be.
pub const MAX_FIELD_CHARS: usize = 2000;
pub const MAX_FIELDS: usize = 10;
/// Elements of a context block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// The top-level `text`; Slack truncates longer messages.
pub const MAX_TEXT_CHARS: usize = 40_000;
/// The fallback `text` is what a phone notification shows: one line is enough.
const FALLBACK_CHARS: usize = 1000;
/// Reasons listed in a verdict message; the rest are counted.
const MAX_REASONS: usize = 10;

/// Escapes text for Slack `mrkdwn`: `&`, `<`, `>` become entities, nothing else changes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A `mrkdwn` link `<url|label>`. In the URL, `&` becomes `&amp;` (as Slack itself writes
/// links) and the characters that would end the link early are percent-encoded.
pub fn link(url: &str, label: &str) -> String {
    let mut u = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => u.push_str("&amp;"),
            '<' => u.push_str("%3C"),
            '>' => u.push_str("%3E"),
            '|' => u.push_str("%7C"),
            ' ' => u.push_str("%20"),
            c => u.push(c),
        }
    }
    format!("<{u}|{}>", escape(label).replace('|', "/"))
}

/// Cuts `s` to `max` characters, ending in `…` when something was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escaped `mrkdwn` cut to `max` characters without splitting an entity.
fn mrkdwn_clip(s: &str, max: usize) -> String {
    let escaped = escape(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let piece = escape(c.encode_utf8(&mut [0; 4]));
        let n = piece.chars().count();
        if used + n + 1 > max {
            break;
        }
        out.push_str(&piece);
        used += n;
    }
    out.push('…');
    out
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_CHARS), "emoji": true}})
}

fn section(mrkdwn: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}})
}

/// A section of `*label*\nvalue` fields; values are plain text, escaped here.
fn fields(pairs: &[(&str, String)]) -> Value {
    let fields: Vec<Value> = pairs
        .iter()
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            let label = format!("*{}*\n", escape(label));
            let room = MAX_FIELD_CHARS - label.chars().count();
            json!({"type": "mrkdwn", "text": format!("{label}{}", mrkdwn_clip(value, room))})
        })
        .collect();
    json!({"type": "section", "fields": fields})
}

fn context(parts: &[String]) -> Value {
    let elements: Vec<Value> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .take(MAX_CONTEXT_ELEMENTS)
        .map(|p| json!({"type": "mrkdwn", "text": p}))
        .collect();
    json!({"type": "context", "elements": elements})
}

fn rfc3339(unix: u64) -> String {
    crate::event::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

/// A queued Slack message: the body to post, plus what it is about for logs and records (not
/// sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlackMessage {
    pub key: String,
    /// `trigger`, `resolve` or `verdict`.
    pub action: String,
    pub text: String,
    pub blocks: Vec<Value>,
}

impl SlackMessage {
    /// An alert that fired or resolved.
    pub fn alert(n: &AlertNote) -> SlackMessage {
        let (emoji, state) = if n.firing {
            (":red_circle:", "FIRING")
        } else {
            (":large_green_circle:", "RESOLVED")
        };
        let mut facts = vec![
            ("Tier", format!("{} ({})", n.tier, severity_name(n))),
            ("Service", non_empty(&n.service)),
            ("Rule", n.rule.clone()),
            ("Kind", kind_name(&n.class).to_string()),
            ("Started", rfc3339(n.started_at)),
        ];
        if let Some(end) = n.ended_at {
            facts.push(("Resolved", rfc3339(end)));
            let lasted = std::time::Duration::from_secs(end.saturating_sub(n.started_at));
            facts.push(("Lasted", humantime::format_duration(lasted).to_string()));
        }
        let mut footer = Vec::new();
        if !n.link.is_empty() {
            footer.push(link(&n.link, "Open in slogate"));
        }
        footer.push(format!("alert `{}`", mrkdwn_clip(&n.id, 300)));
        SlackMessage {
            key: n.id.clone(),
            action: if n.firing { "trigger" } else { "resolve" }.into(),
            text: mrkdwn_clip(&format!("{emoji} {state}: {}", n.summary), FALLBACK_CHARS),
            blocks: vec![
                header(&format!("{emoji} {state} · {} · {}", n.tier, n.rule)),
                section(mrkdwn_clip(&n.summary, MAX_SECTION_CHARS)),
                fields(&facts),
                context(&footer),
            ],
        }
    }

    /// A gate whose verdict changed.
    pub fn verdict(v: &VerdictNote) -> SlackMessage {
        let emoji = match v.to.decision.as_str() {
            "rollback" => ":rotating_light:",
            "hold" => ":double_vertical_bar:",
            _ => ":white_check_mark:",
        };
        let change = match &v.from {
            Some(from) => format!("{} → {}", from.decision, v.to.decision),
            None => format!("{} (first verdict)", v.to.decision),
        };
        let mut body = format!(
            "*{}* {} `{}` vs `{}`: *{}* ({})",
            escape(&v.gate),
            escape(&v.phase),
            escape(v.canary.short()),
            escape(v.baseline.short()),
            escape(&v.to.decision),
            escape(&v.to.verdict),
        );
        if v.reasons.is_empty() {
            body.push_str("\nevery criterion passed");
        }
        for r in v.reasons.iter().take(MAX_REASONS) {
            body.push_str("\n• ");
            body.push_str(&escape(r));
        }
        if v.reasons.len() > MAX_REASONS {
            body.push_str(&format!("\n… and {} more", v.reasons.len() - MAX_REASONS));
        }
        if body.chars().count() > MAX_SECTION_CHARS {
            // Cut at a line, so no entity or `*…*` pair is split.
            let mut cut = String::new();
            for line in body.lines() {
                if cut.chars().count() + line.chars().count() + 2 > MAX_SECTION_CHARS {
                    break;
                }
                if !cut.is_empty() {
                    cut.push('\n');
                }
                cut.push_str(line);
            }
            cut.push_str("\n…");
            body = cut;
        }
        let mut footer = Vec::new();
        if !v.link.is_empty() {
            footer.push(link(&v.link, "Verdict log"));
        }
        footer.push(format!("evaluated {}", escape(&v.evaluated_at)));
        if !v.service.is_empty() {
            footer.push(format!("service {}", escape(&v.service)));
        }
        SlackMessage {
            key: v.key(),
            action: "verdict".into(),
            text: mrkdwn_clip(&format!("{emoji} {}", v.headline()), FALLBACK_CHARS),
            blocks: vec![
                header(&format!("{emoji} {} · {}: {change}", v.gate, v.phase)),
                section(body),
                fields(&[
                    ("Decision", change.clone()),
                    ("Verdict", v.to.verdict.clone()),
                    (
                        "Canary",
                        format!("{}\n{}", v.canary.short(), v.canary.figures()),
                    ),
                    (
                        "Baseline",
                        format!("{}\n{}", v.baseline.short(), v.baseline.figures()),
                    ),
                ]),
                context(&footer),
            ],
        }
    }

    /// The JSON body Slack receives.
    pub fn to_wire(&self) -> Value {
        json!({"text": self.text, "blocks": self.blocks})
    }
}

fn severity_name(n: &AlertNote) -> &'static str {
    match n.severity {
        crate::Severity::Critical => "critical",
        crate::Severity::Error => "error",
        crate::Severity::Warning => "warning",
        crate::Severity::Info => "info",
    }
}

fn kind_name(class: &str) -> &str {
    match class {
        "slo_burn" => "SLO burn rate",
        "threshold" => "threshold rule",
        "gate_failure" => "gate failure",
        other => other,
    }
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

impl Item for SlackMessage {
    type Error = MessageError;

    fn validate(&mut self) -> Result<(), MessageError> {
        if self.key.is_empty() {
            return Err(MessageError::EmptyKey);
        }
        if self.text.trim().is_empty() {
            return Err(MessageError::BlankText);
        }
        if self.blocks.len() > MAX_BLOCKS {
            return Err(MessageError::TooManyBlocks(self.blocks.len()));
        }
        truncate_chars(&mut self.text, MAX_TEXT_CHARS);
        Ok(())
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn action(&self) -> &str {
        &self.action
    }
}

/// A Slack incoming webhook.
#[derive(Debug)]
pub struct Slack {
    url: Secret,
}

impl Slack {
    pub fn new(url: Secret) -> Result<Slack, SenderError> {
        let u = url.expose();
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(SenderError::BadSecretUrl {
                what: "slack webhook",
            });
        }
        Ok(Slack { url })
    }
}

impl Destination for Slack {
    type Item = SlackMessage;

    fn name(&self) -> &str {
        "slack"
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    fn request(&self, client: &reqwest::Client, m: &SlackMessage) -> reqwest::RequestBuilder {
        client.post(self.url.expose()).json(&m.to_wire())
    }

    /// `200 ok`; `400`, `403`, `404`, `410` (and any other `4xx` but `408` and `429`) for good;
    /// `429` and `5xx` retried. The body is Slack's error code (`channel_is_archived`).
    fn classify(&self, status: u16, body: &str) -> Classified {
        classify_http(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::tests::{alert, verdict};

    #[test]
    fn escaping_table() {
        let cases = [
            (
                "p99 < 300 ms & error rate > 1%",
                "p99 &lt; 300 ms &amp; error rate &gt; 1%",
            ),
            ("<!channel>", "&lt;!channel&gt;"),
            ("&amp;", "&amp;amp;"),
            ("plain", "plain"),
            ("*bold* `code` é", "*bold* `code` é"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input}");
        }
        assert_eq!(
            link("http://h/api/v1/sli?service=a&env=b", "SLI <now>"),
            "<http://h/api/v1/sli?service=a&amp;env=b|SLI &lt;now&gt;>"
        );
        assert_eq!(link("http://h/a|b c", "x|y"), "<http://h/a%7Cb%20c|x/y>");
    }

    #[test]
    fn clipping_never_splits_an_entity() {
        let s = "<".repeat(10);
        let got = mrkdwn_clip(&s, 13);
        assert_eq!(got, "&lt;&lt;&lt;…");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn alert_message() {
        let m = SlackMessage::alert(&alert(true));
        assert_eq!(m.key, "slogate/slo-burn/checkout-availability/14.4x-1h");
        assert_eq!(m.action, "trigger");
        assert_eq!(
            m.text,
            ":red_circle: FIRING: [P1] checkout-availability SLO (99.900% target) is burning its error budget: burn 14.6x &gt; 14.4x over 1h &amp; 5m"
        );
        assert_eq!(
            m.to_wire(),
            json!({
                "text": m.text,
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": ":red_circle: FIRING · P1 · checkout-availability", "emoji": true}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "[P1] checkout-availability SLO (99.900% target) is burning its error budget: burn 14.6x &gt; 14.4x over 1h &amp; 5m"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Tier*\nP1 (critical)"},
                        {"type": "mrkdwn", "text": "*Service*\ncheckout"},
                        {"type": "mrkdwn", "text": "*Rule*\ncheckout-availability"},
                        {"type": "mrkdwn", "text": "*Kind*\nSLO burn rate"},
                        {"type": "mrkdwn", "text": "*Started*\n2025-11-07T18:00:00Z"},
                    ]},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": "<https://slogate.example.com/api/v1/slos/checkout-availability|Open in slogate>"},
                        {"type": "mrkdwn", "text": "alert `slogate/slo-burn/checkout-availability/14.4x-1h`"},
                    ]},
                ],
            })
        );
        let r = SlackMessage::alert(&alert(false));
        assert_eq!(r.action, "resolve");
        assert!(
            r.text.starts_with(":large_green_circle: RESOLVED: [P1]"),
            "{}",
            r.text
        );
        let fields = r.blocks[2]["fields"].as_array().unwrap();
        assert_eq!(fields[5]["text"], "*Resolved*\n2025-11-07T18:15:00Z");
        assert_eq!(fields[6]["text"], "*Lasted*\n15m");
    }

    #[test]
    fn verdict_message() {
        let m = SlackMessage::verdict(&verdict());
        assert_eq!(m.action, "verdict");
        assert_eq!(
            m.key,
            "slogate/verdict/checkout/canary/service=checkout,version=v2/service=checkout,version=v1"
        );
        assert_eq!(
            m.text,
            ":rotating_light: checkout canary version=v2: hold → rollback: p99 ratio 1.42 &gt; 1.20 (canary 412.5 ms vs baseline 290.0 ms)"
        );
        assert_eq!(
            m.blocks[0]["text"]["text"],
            ":rotating_light: checkout · canary: hold → rollback"
        );
        assert_eq!(
            m.blocks[1]["text"]["text"],
            "*checkout* canary `version=v2` vs `version=v1`: *rollback* (fail)\n• p99 ratio 1.42 &gt; 1.20 (canary 412.5 ms vs baseline 290.0 ms)\n• error rate 2.10% &gt; 1.00%"
        );
        assert_eq!(
            m.blocks[2]["fields"][2]["text"],
            "*Canary*\nversion=v2\n12,480 requests · 2.10% errors · p99 412.5 ms"
        );
        assert_eq!(
            m.blocks[3]["elements"][0]["text"],
            "<https://slogate.example.com/api/v1/verdicts?gate=checkout|Verdict log>"
        );
    }

    #[test]
    fn long_input_stays_within_block_kit_limits() {
        let mut a = alert(true);
        a.rule = "r".repeat(500);
        a.summary = "<&>".repeat(5000);
        a.id = "k".repeat(250);
        let mut v = verdict();
        v.reasons = (0..40)
            .map(|i| format!("{i} {}", "x<y ".repeat(100)))
            .collect();
        for m in [SlackMessage::alert(&a), SlackMessage::verdict(&v)] {
            let header = m.blocks[0]["text"]["text"].as_str().unwrap();
            assert!(header.chars().count() <= MAX_HEADER_CHARS);
            let section = m.blocks[1]["text"]["text"].as_str().unwrap();
            assert!(
                section.chars().count() <= MAX_SECTION_CHARS,
                "{}",
                section.len()
            );
            assert!(m.text.chars().count() <= FALLBACK_CHARS);
            let body = serde_json::to_vec(&m.to_wire()).unwrap();
            assert_eq!(
                slogate_pagerduty_mock::slack::validate(&body),
                Ok(()),
                "{}",
                m.key
            );
        }
    }

    #[test]
    fn every_message_passes_the_stand_in_validator() {
        let mut first = verdict();
        first.from = None;
        first.reasons.clear();
        let mut no_link = alert(false);
        no_link.link.clear();
        no_link.service.clear();
        let messages = [
            SlackMessage::alert(&alert(true)),
            SlackMessage::alert(&alert(false)),
            SlackMessage::alert(&no_link),
            SlackMessage::verdict(&verdict()),
            SlackMessage::verdict(&first),
        ];
        for mut m in messages {
            m.validate().unwrap();
            let body = serde_json::to_vec(&m.to_wire()).unwrap();
            assert_eq!(
                slogate_pagerduty_mock::slack::validate(&body),
                Ok(()),
                "{m:#?}"
            );
        }
    }

    #[test]
    fn validation_and_construction() {
        let mut m = SlackMessage::alert(&alert(true));
        m.blocks = vec![json!({"type": "divider"}); 51];
        assert_eq!(m.validate(), Err(MessageError::TooManyBlocks(51)));
        m.blocks.clear();
        m.text = " ".into();
        assert_eq!(m.validate(), Err(MessageError::BlankText));
        let secret = "https://hooks.slack.com/services/T0/B0/s3cr3t";
        let msg = Slack::new(Secret::new(secret.replace("https", "ftp")))
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
        assert!(msg.contains("slack webhook url"), "{msg}");
        assert!(Slack::new(Secret::new(secret)).is_ok());
    }

    #[test]
    fn classification_table() {
        let slack = Slack::new(Secret::new("https://hooks.slack.com/services/T/B/x")).unwrap();
        let cases: [(u16, &str, &str); 9] = [
            (200, "ok", "delivered"),
            (400, "invalid_payload", "rejected"),
            (400, "invalid_blocks", "rejected"),
            (403, "action_prohibited", "rejected"),
            (404, "no_service", "rejected"),
            (410, "channel_is_archived", "rejected"),
            (429, "rate_limited", "retry"),
            (500, "rollup_error", "retry"),
            (503, "", "retry"),
        ];
        for (status, body, want) in cases {
            let got = match slack.classify(status, body) {
                Classified::Delivered => "delivered",
                Classified::Rejected(e) => {
                    assert!(e[0].contains(body), "{e:?}");
                    "rejected"
                }
                Classified::Retry(_) => "retry",
            };
            assert_eq!(got, want, "{status} {body}");
        }
    }
}
