//! Alerting toward PagerDuty: the alert state machine, a durable outbox, and the sender that
//! drains it into the Events API v2. Depends on nothing else in slogate.
//!
//! Design decisions:
//! - **One page per incident comes from three pieces.** [`AlertState::observe`] returns a
//!   [`Transition`] only when an alert starts or stops firing (with `for_seconds` and
//!   `keep_firing_for` absorbing flaps); each transition becomes one [`Event`] with a stable
//!   `dedup_key`; and delivery is at-least-once with PagerDuty's dedup key making a repeat
//!   harmless. Exactly-once at the HTTP level is impossible (a `202` can be lost after
//!   PagerDuty acted on it), so the design makes duplicates idempotent instead of pretending.
//! - **Durable before sent.** [`Outbox::enqueue`] writes `{seq:020}.json` via a temp file,
//!   fsyncs it, renames and fsyncs the directory before returning, so a crash after a
//!   transition never loses its notification. An event leaves the outbox only on a definite
//!   answer: `2xx` (delivered) or `400`/`413` (rejected, logged at error, not retried).
//! - **Global FIFO.** One queue ordered by sequence number, and the head blocks while it is
//!   retried: a resolve can never overtake its trigger. The cost (one bad-luck event delays the
//!   rest) is acceptable at PagerDuty's event rates, and simpler than per-key queues.
//! - **Invalid events never enter the queue.** [`Event::validate`] runs in `enqueue` and
//!   enforces the documented limits, truncating an over-long summary rather than dropping a
//!   page; the rest fail at the call site where they can be fixed, not at PagerDuty.
//! - **The routing key never touches disk or logs.** It lives in a [`Secret`] (prints
//!   `<secret>`, no `Serialize`), is not a field of [`Event`], and is added to the JSON body only
//!   in the sender at send time.
//! - **Bounded everywhere.** The outbox refuses events past `max_pending` ([`OutboxError::Full`]);
//!   the sender's delivery history is a fixed-size ring; a token bucket keeps sends under
//!   PagerDuty's per-key rate, with a small burst so a backlog drains smoothly; retries back off
//!   exponentially with full jitter between `backoff_min` and `backoff_max`.
//! - **No TLS in this build.** The workspace's reqwest has no TLS feature, so [`Sender::new`]
//!   refuses `https://` URLs with a clear error instead of retrying forever.

mod event;
mod outbox;
mod secret;
mod sender;
mod state;

pub use event::{
    Event, EventAction, EventError, Link, MAX_DEDUP_KEY_CHARS, MAX_EVENT_BYTES, MAX_SUMMARY_CHARS,
    Payload, Severity,
};
pub use outbox::{Outbox, OutboxEntry, OutboxError};
pub use secret::{Secret, SecretError};
pub use sender::{
    DEFAULT_URL, DeliveryOutcome, DeliveryRecord, DeliveryStats, DeliveryStatsSnapshot,
    RateLimiter, Sender, SenderConfig, SenderError, backoff,
};
pub use state::{AlertState, Phase, Transition};
