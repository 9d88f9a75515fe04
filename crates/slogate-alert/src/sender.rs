//! Delivers outbox events to the PagerDuty Events API v2: rate limited, retried with backoff,
//! acknowledged only on a definite answer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use slogate_core::prom::{self, Kind};
use thiserror::Error;
use tokio::sync::{Notify, watch};

use crate::Secret;
use crate::event::EventAction;
use crate::outbox::{Outbox, OutboxEntry};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com";

#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Base URL; the sender posts to `{url}/v2/enqueue`.
    pub url: String,
    pub routing_key: Secret,
    /// Events allowed per `rate_period` (PagerDuty allows about 120 per minute per key).
    pub max_per_minute: u32,
    /// The period `max_per_minute` refers to: one minute, shortened in tests.
    pub rate_period: Duration,
    /// Events that may go back to back before the rate applies. Kept small by default so a burst
    /// after an outage is spread out instead of tripping PagerDuty's own limit.
    pub rate_burst: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub request_timeout: Duration,
    /// How often the outbox is re-checked without a notification (events written by another
    /// handle, or a lost wake-up).
    pub rescan_interval: Duration,
    /// How many delivery records to keep for `/api/v1/alerts`.
    pub history: usize,
}

impl SenderConfig {
    pub fn new(routing_key: Secret) -> SenderConfig {
        SenderConfig {
            url: DEFAULT_URL.into(),
            routing_key,
            max_per_minute: 120,
            rate_period: Duration::from_secs(60),
            rate_burst: 10,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(5),
            history: 1000,
        }
    }
}

#[derive(Debug, Error)]
pub enum SenderError {
    #[error("pagerduty url {url:?} must start with http:// or https://")]
    BadUrl { url: String },
    #[error("routing key must be 32 characters, it has {chars}")]
    RoutingKeyLength { chars: usize },
    #[error("invalid sender config: {0}")]
    Config(&'static str),
    #[error("cannot build http client: {0}")]
    Client(String),
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered,
    /// PagerDuty answered `400` (or `413`): retrying cannot help, so the event was dropped.
    Rejected {
        errors: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub seq: u64,
    pub dedup_key: String,
    pub action: EventAction,
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Requests made for this event, including the final one.
    pub attempts: u32,
    /// The final HTTP status.
    pub status: u16,
    /// Unix seconds of the final answer.
    pub at: u64,
}

/// Delivery counters and recent history, shared with the API.
#[derive(Debug)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    pending: AtomicU64,
    history_cap: usize,
    history: Mutex<VecDeque<DeliveryRecord>>,
    last_error: Mutex<Option<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryStatsSnapshot {
    pub delivered: u64,
    pub rejected: u64,
    pub retries: u64,
    pub pending: u64,
    /// The most recent retryable failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Newest first.
    pub recent: Vec<DeliveryRecord>,
}

impl DeliveryStats {
    pub fn new(history_cap: usize) -> DeliveryStats {
        DeliveryStats {
            delivered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            history_cap: history_cap.max(1),
            history: Mutex::new(VecDeque::new()),
            last_error: Mutex::new(None),
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Records oldest first.
    pub fn history(&self) -> Vec<DeliveryRecord> {
        self.history.lock().iter().cloned().collect()
    }

    pub fn snapshot(&self) -> DeliveryStatsSnapshot {
        DeliveryStatsSnapshot {
            delivered: self.delivered(),
            rejected: self.rejected(),
            retries: self.retries(),
            pending: self.pending(),
            last_error: self.last_error.lock().clone(),
            recent: self.history.lock().iter().rev().cloned().collect(),
        }
    }

    /// Appends the delivery counters to a Prometheus text exposition (`/metrics`).
    pub fn render_metrics(&self, out: &mut String) {
        let families = [
            (
                "slogate_pagerduty_delivered_total",
                Kind::Counter,
                "PagerDuty events accepted (2xx).",
                self.delivered(),
            ),
            (
                "slogate_pagerduty_rejected_total",
                Kind::Counter,
                "PagerDuty events rejected as invalid (400 or 413) and dropped.",
                self.rejected(),
            ),
            (
                "slogate_pagerduty_retries_total",
                Kind::Counter,
                "PagerDuty sends retried after 429, 5xx or a network error.",
                self.retries(),
            ),
            (
                "slogate_pagerduty_pending",
                Kind::Gauge,
                "Events waiting in the outbox.",
                self.pending(),
            ),
        ];
        for (name, kind, help, value) in families {
            prom::family(out, name, kind, help).sample(&[], value);
        }
    }

    fn record(&self, record: DeliveryRecord) {
        match record.outcome {
            DeliveryOutcome::Delivered => self.delivered.fetch_add(1, Ordering::Relaxed),
            DeliveryOutcome::Rejected { .. } => self.rejected.fetch_add(1, Ordering::Relaxed),
        };
        let mut h = self.history.lock();
        if h.len() >= self.history_cap {
            h.pop_front();
        }
        h.push_back(record);
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` tokens per `period`. Time is passed in so
/// the arithmetic is tested without sleeping.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    per_token: Duration,
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(rate: u32, period: Duration, burst: u32, now: Instant) -> RateLimiter {
        let capacity = f64::from(burst.clamp(1, rate.max(1)));
        RateLimiter {
            capacity,
            per_token: period / rate.max(1),
            tokens: capacity,
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated);
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() / self.per_token.as_secs_f64()).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.per_token.mul_f64(1.0 - self.tokens))
        }
    }
}

/// Full-jitter exponential backoff: uniform in `[min, min(max, min·2^(attempt-1))]`. The floor
/// keeps a retry storm from hitting a struggling endpoint at once; the jitter keeps several
/// slogate instances from retrying in lockstep.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(max).max(min);
    if cap <= min {
        return min;
    }
    rand::rng().random_range(min..=cap)
}

enum Answer {
    Delivered(u16),
    Rejected(u16, Vec<String>),
    Retry {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
}

pub struct Sender {
    config: SenderConfig,
    endpoint: String,
    client: reqwest::Client,
    stats: Arc<DeliveryStats>,
}

impl Sender {
    pub fn new(config: SenderConfig) -> Result<Sender, SenderError> {
        let base = config.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SenderError::BadUrl {
                url: config.url.clone(),
            });
        }
        let chars = config.routing_key.expose().chars().count();
        if chars != 32 {
            return Err(SenderError::RoutingKeyLength { chars });
        }
        if config.max_per_minute == 0 {
            return Err(SenderError::Config("max_per_minute must be at least 1"));
        }
        if config.backoff_min.is_zero() || config.backoff_min > config.backoff_max {
            return Err(SenderError::Config(
                "backoff_min must be positive and at most backoff_max",
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| SenderError::Client(e.to_string()))?;
        Ok(Sender {
            endpoint: format!("{base}/v2/enqueue"),
            stats: Arc::new(DeliveryStats::new(config.history)),
            config,
            client,
        })
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Sends pending events oldest first until `shutdown` turns true. The head event blocks the
    /// queue while it is retried: that is what keeps a resolve from overtaking its trigger.
    pub async fn run(
        self,
        outbox: Arc<Outbox>,
        notify: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut limiter = RateLimiter::new(
            self.config.max_per_minute,
            self.config.rate_period,
            self.config.rate_burst,
            Instant::now(),
        );
        // (seq, attempts so far) of the event at the head of the queue.
        let mut head: Option<(u64, u32)> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.stats
                .pending
                .store(outbox.len() as u64, Ordering::Relaxed);
            let Some(entry) = outbox.peek_oldest() else {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(self.config.rescan_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            if let Err(wait) = limiter.try_acquire(Instant::now()) {
                if !sleep_or_shutdown(wait, &mut shutdown).await {
                    break;
                }
                continue;
            }
            let attempts = match head {
                Some((seq, n)) if seq == entry.seq => n + 1,
                _ => 1,
            };
            head = Some((entry.seq, attempts));
            match self.post(&entry).await {
                Answer::Delivered(status) => {
                    *self.stats.last_error.lock() = None;
                    tracing::info!(seq = entry.seq, dedup_key = %entry.event.dedup_key, action = entry.event.event_action.as_str(), attempts, "pagerduty event delivered");
                    self.finish(
                        &outbox,
                        &entry,
                        DeliveryOutcome::Delivered,
                        attempts,
                        status,
                    )
                    .await;
                }
                Answer::Rejected(status, errors) => {
                    tracing::error!(seq = entry.seq, dedup_key = %entry.event.dedup_key, action = entry.event.event_action.as_str(), status, errors = ?errors, "pagerduty rejected event, dropping it");
                    self.finish(
                        &outbox,
                        &entry,
                        DeliveryOutcome::Rejected { errors },
                        attempts,
                        status,
                    )
                    .await;
                }
                Answer::Retry {
                    status,
                    reason,
                    retry_after,
                } => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(attempts, self.config.backoff_min, self.config.backoff_max)
                        .max(retry_after.unwrap_or_default().min(self.config.backoff_max));
                    tracing::warn!(seq = entry.seq, dedup_key = %entry.event.dedup_key, attempts, status, reason = %reason, delay_ms = delay.as_millis() as u64, "pagerduty send failed, will retry");
                    *self.stats.last_error.lock() = Some(reason);
                    if !sleep_or_shutdown(delay, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
        self.stats
            .pending
            .store(outbox.len() as u64, Ordering::Relaxed);
    }

    async fn finish(
        &self,
        outbox: &Arc<Outbox>,
        entry: &OutboxEntry,
        outcome: DeliveryOutcome,
        attempts: u32,
        status: u16,
    ) {
        let o = outbox.clone();
        let seq = entry.seq;
        // ack fsyncs the directory: keep that off the async workers.
        let acked = tokio::task::spawn_blocking(move || o.ack(seq)).await;
        match acked {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(seq, error = %err, "outbox ack failed; the event may be sent again after a restart")
            }
            Err(err) => tracing::error!(seq, error = %err, "outbox ack task failed"),
        }
        self.stats.record(DeliveryRecord {
            seq,
            dedup_key: entry.event.dedup_key.clone(),
            action: entry.event.event_action,
            outcome,
            attempts,
            status,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        self.stats
            .pending
            .store(outbox.len() as u64, Ordering::Relaxed);
    }

    async fn post(&self, entry: &OutboxEntry) -> Answer {
        let body = entry.event.to_wire(&self.config.routing_key);
        let resp = match self.client.post(&self.endpoint).json(&body).send().await {
            Ok(r) => r,
            // reqwest's error text names the URL, never the body, so the key cannot leak here.
            Err(err) => {
                return Answer::Retry {
                    status: None,
                    reason: format!("request failed: {err}"),
                    retry_after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status {
            200..=299 => Answer::Delivered(status),
            // 400 is PagerDuty's "invalid event"; 413 an oversized one. Neither improves with time.
            400 | 413 => {
                let text = resp.text().await.unwrap_or_default();
                Answer::Rejected(status, rejection_errors(&text))
            }
            // Everything else is retried, including unexpected 4xx (401, 403, 404): those mean a
            // misconfiguration an operator can fix, and dropping the page would lose it for good.
            _ => Answer::Retry {
                status: Some(status),
                reason: format!("http status {status}"),
                retry_after,
            },
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
        _ => vec![body.chars().take(512).collect()],
    }
}

/// Sleeps unless shutdown comes first; returns false on shutdown.
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => !*shutdown.borrow(),
        _ = shutdown.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_spacing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 6 per minute, burst 1: one every 10 s.
        let mut l = RateLimiter::new(6, Duration::from_secs(60), 1, t0);
        let steps: [(Duration, Result<(), Duration>); 5] = [
            (ms(0), Ok(())),
            (ms(0), Err(ms(10_000))),
            (ms(4_000), Err(ms(6_000))),
            (ms(10_000), Ok(())),
            (ms(10_000), Err(ms(10_000))),
        ];
        for (i, (at, want)) in steps.into_iter().enumerate() {
            let got = l
                .try_acquire(t0 + at)
                .map_err(|d| Duration::from_millis(d.as_millis() as u64));
            assert_eq!(got, want, "step {i}");
        }
    }

    #[test]
    fn limiter_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(120, Duration::from_secs(60), 10, t0);
        let burst = (0..20).take_while(|_| l.try_acquire(t0).is_ok()).count();
        assert_eq!(burst, 10);
        // After a long idle period the bucket refills only to the burst size.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            (0..20).take_while(|_| l.try_acquire(later).is_ok()).count(),
            10
        );
        // 120/min is one per 500 ms.
        assert!(l.try_acquire(later + Duration::from_millis(499)).is_err());
        assert!(l.try_acquire(later + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn backoff_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let cases = [(1, 1, 1), (2, 1, 2), (3, 1, 4), (7, 1, 60), (40, 1, 60)];
        for (attempt, lo, hi) in cases {
            for _ in 0..200 {
                let d = backoff(attempt, min, max);
                assert!(
                    d >= Duration::from_secs(lo) && d <= Duration::from_secs(hi),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn metrics_exposition() {
        let stats = DeliveryStats::new(2);
        let record = |seq, outcome| DeliveryRecord {
            seq,
            dedup_key: "k".into(),
            action: EventAction::Trigger,
            outcome,
            attempts: 1,
            status: 202,
            at: 0,
        };
        stats.record(record(1, DeliveryOutcome::Delivered));
        stats.record(record(2, DeliveryOutcome::Rejected { errors: vec![] }));
        stats.record(record(3, DeliveryOutcome::Delivered));
        stats.retries.fetch_add(4, Ordering::Relaxed);
        let mut out = String::new();
        stats.render_metrics(&mut out);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "slogate_pagerduty_delivered_total 2",
                "slogate_pagerduty_rejected_total 1",
                "slogate_pagerduty_retries_total 4",
                "slogate_pagerduty_pending 0"
            ]
        );
        // The history ring keeps the newest `history_cap` records.
        assert_eq!(
            stats.history().iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            stats
                .snapshot()
                .recent
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            [3, 2]
        );
    }

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
    fn config_checks() {
        let key = Secret::new("0123456789abcdef0123456789ABCDEF");
        type Case = (&'static str, fn(&mut SenderConfig), &'static str);
        let cases: [Case; 3] = [
            (
                "ftp url",
                |c| c.url = "ftp://x".into(),
                "must start with http",
            ),
            (
                "short key",
                |c| {
                    c.url = "http://x".into();
                    c.routing_key = Secret::new("abc")
                },
                "routing key must be 32 characters, it has 3",
            ),
            (
                "zero rate",
                |c| {
                    c.url = "http://x".into();
                    c.max_per_minute = 0
                },
                "max_per_minute",
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = SenderConfig::new(key.clone());
            edit(&mut c);
            let msg = Sender::new(c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(want), "{name}: {msg}");
            assert!(!msg.contains(key.expose()), "{name}");
        }
    }
}
