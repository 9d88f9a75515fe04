//! Delivers an outbox to one destination: rate limited, retried with backoff (honouring
//! `Retry-After`), acknowledged only on a definite answer. What is sent and what an answer
//! means belong to the [`Destination`]; everything else is shared.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use thiserror::Error;
use tokio::sync::{Notify, watch};

use crate::outbox::{Item, Outbox, OutboxEntry};
use crate::stats::{DeliveryOutcome, DeliveryRecord, DeliveryStats};

/// How a sender paces and retries, whatever the destination.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Sends allowed per `rate_period` (PagerDuty allows about 120 per minute per key, Slack
    /// about one message per second per webhook).
    pub max_per_minute: u32,
    /// The period `max_per_minute` refers to: one minute, shortened in tests.
    pub rate_period: Duration,
    /// Sends that may go back to back before the rate applies. Kept small by default so a burst
    /// after an outage is spread out instead of tripping the destination's own limit.
    pub rate_burst: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The longest `Retry-After` obeyed; a longer one waits this long (the head of the queue
    /// must not stall for a day on one answer).
    pub retry_after_max: Duration,
    pub request_timeout: Duration,
    /// How often the outbox is re-checked without a notification (events written by another
    /// handle, or a lost wake-up).
    pub rescan_interval: Duration,
    /// How many delivery records to keep for `/api/v1/alerts`.
    pub history: usize,
}

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            max_per_minute: 120,
            rate_period: Duration::from_secs(60),
            rate_burst: 10,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(5),
            history: 1000,
        }
    }
}

/// Why a destination or a sender cannot be built. Messages never hold a secret: a secret URL
/// is described, not shown.
#[derive(Debug, Error)]
pub enum SenderError {
    #[error("{what} url {url:?} must start with http:// or https://")]
    BadUrl { what: &'static str, url: String },
    #[error("{what} url must start with http:// or https:// (the value is secret and not shown)")]
    BadSecretUrl { what: &'static str },
    #[error("routing key must be 32 characters, it has {chars}")]
    RoutingKeyLength { chars: usize },
    #[error("invalid sender config: {0}")]
    Config(&'static str),
    #[error("cannot build http client: {0}")]
    Client(String),
}

/// What a destination's answer means for the item at the head of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    /// Accepted: the item leaves the outbox.
    Delivered,
    /// Refused for good (an invalid payload, a revoked webhook, an archived channel): the item
    /// is dropped, logged at error and counted, so one bad item cannot block every later one.
    Rejected(Vec<String>),
    /// Worth trying again (throttled, a server error, a misconfiguration an operator can fix).
    Retry(String),
}

/// One place notifications go: how a queued item becomes an HTTP request, and what the answer
/// means. Secrets (a routing key, a webhook URL, a token) live in the destination and join the
/// item only in [`Destination::request`].
pub trait Destination: Send + Sync + 'static {
    type Item: Item;

    /// `pagerduty`, `slack`, or a webhook's configured name: in logs, records and `/metrics`.
    fn name(&self) -> &str;
    /// `pagerduty`, `slack` or `webhook`.
    fn kind(&self) -> &'static str;
    /// The request that delivers `item`.
    fn request(&self, client: &reqwest::Client, item: &Self::Item) -> reqwest::RequestBuilder;
    /// What a non-network answer means; `body` is the first few KB of the answer.
    fn classify(&self, status: u16, body: &str) -> Classified;
}

/// The generic HTTP answer rule of webhook receivers (Alertmanager's among them): `2xx`
/// delivered; `408` and `429` retried; any other `4xx` refused for good; everything else
/// (`5xx`, an unfollowed `3xx`) retried.
pub fn classify_http(status: u16, body: &str) -> Classified {
    match status {
        200..=299 => Classified::Delivered,
        408 | 429 => Classified::Retry(format!("http status {status}")),
        400..=499 => Classified::Rejected(vec![format!(
            "http status {status}: {}",
            body_excerpt(body)
        )]),
        _ => Classified::Retry(format!("http status {status}")),
    }
}

/// A bounded, single-line excerpt of an answer body for errors and logs.
pub(crate) fn body_excerpt(body: &str) -> String {
    let one_line: String = body
        .trim()
        .chars()
        .take(256)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_empty() {
        "(empty body)".into()
    } else {
        one_line
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

/// The delay a `Retry-After` header asks for: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, RFC 9110's IMF-fixdate), measured from `now`. A date in
/// the past is no delay; anything else unreadable is `None` (the backoff applies alone).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_imf_fixdate(value)?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// Unix seconds of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let num = |t: &str, len: usize| {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u64>().ok())
            .flatten()
    };
    let (day, year) = (num(day, 2)?, num(year, 4)?);
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    let (h, m, sec) = (num(h, 2)?, num(m, 2)?, num(sec, 2)?);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// The most of an answer body read: enough for an error code or PagerDuty's `errors[]`, and a
/// hostile or broken endpoint cannot make the sender buffer more.
const MAX_ANSWER_BYTES: usize = 8 * 1024;

enum Answer {
    Classified {
        status: u16,
        class: Classified,
        retry_after: Option<Duration>,
    },
    Network(String),
}

/// Sends one destination's outbox, oldest first.
pub struct Sender<D: Destination> {
    destination: D,
    config: SenderConfig,
    client: reqwest::Client,
    stats: Arc<DeliveryStats>,
}

impl<D: Destination> Sender<D> {
    pub fn new(destination: D, config: SenderConfig) -> Result<Sender<D>, SenderError> {
        if config.max_per_minute == 0 {
            return Err(SenderError::Config("max_per_minute must be at least 1"));
        }
        if config.backoff_min.is_zero() || config.backoff_min > config.backoff_max {
            return Err(SenderError::Config(
                "backoff_min must be positive and at most backoff_max",
            ));
        }
        // Redirects are not followed: a webhook that moved is a configuration to fix, and
        // following one would carry a token or a secret URL's request to another place.
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SenderError::Client(e.to_string()))?;
        Ok(Sender {
            stats: Arc::new(DeliveryStats::new(config.history)),
            destination,
            config,
            client,
        })
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    pub fn destination(&self) -> &D {
        &self.destination
    }

    /// Sends pending items oldest first until `shutdown` turns true. The head item blocks the
    /// queue while it is retried: that is what keeps a resolve from overtaking its trigger.
    pub async fn run(
        self,
        outbox: Arc<Outbox<D::Item>>,
        notify: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut limiter = RateLimiter::new(
            self.config.max_per_minute,
            self.config.rate_period,
            self.config.rate_burst,
            Instant::now(),
        );
        let name = self.destination.name().to_string();
        // (seq, attempts so far) of the item at the head of the queue.
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
            let (key, action) = (entry.event.key(), entry.event.action());
            let (status, reason, retry_after) = match self.post(&entry).await {
                Answer::Classified {
                    status,
                    class: Classified::Delivered,
                    ..
                } => {
                    *self.stats.last_error.lock() = None;
                    tracing::info!(destination = %name, seq = entry.seq, key, action, attempts, status, "notification delivered");
                    self.finish(
                        &outbox,
                        &entry,
                        DeliveryOutcome::Delivered,
                        attempts,
                        status,
                    )
                    .await;
                    continue;
                }
                Answer::Classified {
                    status,
                    class: Classified::Rejected(errors),
                    ..
                } => {
                    tracing::error!(destination = %name, seq = entry.seq, key, action, status, errors = ?errors, "destination rejected the notification, dropping it");
                    self.finish(
                        &outbox,
                        &entry,
                        DeliveryOutcome::Rejected { errors },
                        attempts,
                        status,
                    )
                    .await;
                    continue;
                }
                Answer::Classified {
                    status,
                    class: Classified::Retry(reason),
                    retry_after,
                } => (Some(status), reason, retry_after),
                Answer::Network(reason) => (None, reason, None),
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let asked = retry_after.map(|d| d.min(self.config.retry_after_max));
            let delay = backoff(attempts, self.config.backoff_min, self.config.backoff_max)
                .max(asked.unwrap_or_default());
            tracing::warn!(destination = %name, seq = entry.seq, key, attempts, status, reason = %reason, retry_after_ms = asked.map(|d| d.as_millis() as u64), delay_ms = delay.as_millis() as u64, "notification send failed, will retry");
            *self.stats.last_error.lock() = Some(reason);
            if !sleep_or_shutdown(delay, &mut shutdown).await {
                break;
            }
        }
        self.stats
            .pending
            .store(outbox.len() as u64, Ordering::Relaxed);
    }

    async fn finish(
        &self,
        outbox: &Arc<Outbox<D::Item>>,
        entry: &OutboxEntry<D::Item>,
        outcome: DeliveryOutcome,
        attempts: u32,
        status: u16,
    ) {
        let o = outbox.clone();
        let seq = entry.seq;
        let name = self.destination.name();
        // ack fsyncs the directory: keep that off the async workers.
        let acked = tokio::task::spawn_blocking(move || o.ack(seq)).await;
        match acked {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(destination = %name, seq, error = %err, "outbox ack failed; the notification may be sent again after a restart")
            }
            Err(err) => {
                tracing::error!(destination = %name, seq, error = %err, "outbox ack task failed")
            }
        }
        self.stats.record(DeliveryRecord {
            seq,
            dedup_key: entry.event.key().to_string(),
            action: entry.event.action().to_string(),
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

    async fn post(&self, entry: &OutboxEntry<D::Item>) -> Answer {
        let request = self.destination.request(&self.client, &entry.event);
        let mut resp = match request.send().await {
            Ok(r) => r,
            // Without the URL: for Slack the URL is the secret.
            Err(err) => return Answer::Network(format!("request failed: {}", err.without_url())),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(MAX_ANSWER_BYTES);
        let text = String::from_utf8_lossy(&body);
        Answer::Classified {
            status,
            class: self.destination.classify(status, &text),
            retry_after,
        }
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
    fn retry_after_table() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let cases: [(&str, Option<u64>); 10] = [
            ("120", Some(120)),
            (" 7 ", Some(7)),
            ("0", Some(0)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(30)),
            ("Mon, 07 Nov 1994 08:49:37 GMT", Some(86_400)),
            // In the past: no wait beyond the backoff.
            ("Sat, 05 Nov 1994 08:49:37 GMT", Some(0)),
            ("-5", None),
            ("Sunday, 06-Nov-94 08:49:37 GMT", None),
            ("soon", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                retry_after(value, now),
                want.map(Duration::from_secs),
                "{value}"
            );
        }
        // A leap-year date, checked against a known timestamp.
        assert_eq!(
            parse_imf_fixdate("Thu, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000)
        );
    }

    #[test]
    fn generic_http_classification() {
        let cases: [(u16, &str); 10] = [
            (200, "delivered"),
            (202, "delivered"),
            (204, "delivered"),
            (301, "retry"),
            (400, "rejected"),
            (401, "rejected"),
            (404, "rejected"),
            (408, "retry"),
            (429, "retry"),
            (503, "retry"),
        ];
        for (status, want) in cases {
            let got = match classify_http(status, "nope") {
                Classified::Delivered => "delivered",
                Classified::Rejected(e) => {
                    assert_eq!(e, [format!("http status {status}: nope")]);
                    "rejected"
                }
                Classified::Retry(_) => "retry",
            };
            assert_eq!(got, want, "{status}");
        }
        assert_eq!(body_excerpt("  \n"), "(empty body)");
        assert_eq!(body_excerpt("a\nb"), "a b");
        assert_eq!(body_excerpt(&"x".repeat(1000)).len(), 256);
    }

    #[test]
    fn config_checks() {
        type Case = (&'static str, fn(&mut SenderConfig), &'static str);
        let cases: [Case; 2] = [
            ("zero rate", |c| c.max_per_minute = 0, "max_per_minute"),
            (
                "backoff inverted",
                |c| c.backoff_min = Duration::from_secs(120),
                "backoff_min",
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = SenderConfig::default();
            edit(&mut c);
            let dest =
                crate::PagerDuty::new("http://x", crate::Secret::new("k".repeat(32))).unwrap();
            let msg = Sender::new(dest, c)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(want), "{name}: {msg}");
        }
    }
}
