//! Alerting and notifications: the alert state machine, a durable outbox per destination, and
//! the sender that drains an outbox into PagerDuty's Events API v2, a Slack incoming webhook or
//! a webhook in Alertmanager's format. Depends on nothing else in slogate.
//!
//! Design decisions:
//! - **One page per incident comes from three pieces.** [`AlertState::observe`] returns a
//!   [`Transition`] only when an alert starts or stops firing (with `for_seconds` and
//!   `keep_firing_for` absorbing flaps); each transition becomes one [`Event`] with a stable
//!   `dedup_key`; and delivery is at-least-once with PagerDuty's dedup key making a repeat
//!   harmless. Exactly-once at the HTTP level is impossible (a `202` can be lost after
//!   PagerDuty acted on it), so the design makes duplicates idempotent instead of pretending.
//!   Chat has no dedup key: a message repeated after such a loss shows twice, which is the
//!   price of never losing one.
//! - **Durable before sent.** [`Outbox::enqueue`] writes `{seq:020}.json` via a temp file,
//!   fsyncs it, renames and fsyncs the directory before returning, so a crash after a
//!   transition never loses its notification. An item leaves the outbox only on a definite
//!   answer: delivered, or refused for good (logged at error, counted, not retried).
//! - **One queue per destination, FIFO in each.** Every destination has its own outbox
//!   directory and [`Sender`] task, so Slack being down never delays a page. Within a queue the
//!   head blocks while it is retried: a resolve can never overtake its trigger. The cost (one
//!   bad-luck item delays the rest of its queue) is acceptable at alerting rates, and simpler
//!   than per-key queues.
//! - **What differs per destination is one trait.** A [`Destination`] turns a queued [`Item`]
//!   into an HTTP request and says what an answer means ([`Classified`]); the rate limit, the
//!   backoff with jitter, `Retry-After`, the bounded answer read, the acks and the
//!   [`DeliveryStats`] are the [`Sender`]'s, written once. The items are formatted when queued
//!   ([`SlackMessage`], [`WebhookMessage`], PagerDuty's [`Event`]) from a destination-neutral
//!   [`AlertNote`] or [`VerdictNote`], so what is on disk is exactly what will be sent.
//! - **Invalid items never enter the queue.** [`Item::validate`] runs in `enqueue` and enforces
//!   the documented limits, shortening over-long text rather than dropping a page; the rest
//!   fail at the call site where they can be fixed, not at the destination.
//! - **Secrets never touch disk or logs.** The PagerDuty routing key, the Slack webhook URL
//!   (the URL is the credential) and a webhook's bearer token live in a [`Secret`] (prints
//!   `<secret>`, no `Serialize`), are not part of any item, and join the request only in
//!   [`Destination::request`]. Network errors are logged without their URL.
//! - **Bounded everywhere.** The outbox refuses items past `max_pending` ([`OutboxError::Full`]);
//!   the delivery history is a fixed-size ring; an answer body is read up to 8 KB; a token
//!   bucket keeps sends under the destination's rate, with a small burst so a backlog drains
//!   smoothly; retries back off exponentially with full jitter between `backoff_min` and
//!   `backoff_max`, and a `Retry-After` is obeyed up to `retry_after_max`.
//! - **TLS is rustls.** reqwest is built with rustls and its default provider, so `https://`
//!   endpoints (PagerDuty, Slack) work out of the box; redirects are never followed.

mod event;
pub mod notification;
mod outbox;
mod pagerduty;
mod secret;
mod sender;
pub mod slack;
mod state;
mod stats;
pub mod webhook;

pub use event::{
    Event, EventAction, EventError, Link, MAX_DEDUP_KEY_CHARS, MAX_EVENT_BYTES, MAX_SUMMARY_CHARS,
    Payload, Severity,
};
pub use notification::{AlertNote, CohortFigures, MessageError, VerdictNote, VerdictState};
pub use outbox::{Item, Outbox, OutboxEntry, OutboxError};
pub use pagerduty::{DEFAULT_URL, PagerDuty};
pub use secret::{Secret, SecretError};
pub use sender::{
    Classified, Destination, RateLimiter, Sender, SenderConfig, SenderError, backoff,
    classify_http, retry_after,
};
pub use slack::{Slack, SlackMessage};
pub use state::{AlertState, Phase, Transition};
pub use stats::{
    BoardEntry, DeliveryBoard, DeliveryOutcome, DeliveryRecord, DeliveryStats,
    DeliveryStatsSnapshot, DestinationSnapshot,
};
pub use webhook::{AlertmanagerAlert, AlertmanagerPayload, Webhook, WebhookMessage};
