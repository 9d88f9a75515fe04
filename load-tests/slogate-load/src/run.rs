//! The run loop: build pools, pace, replay, account.
//!
//! Workers (one per unit of `concurrency`) take tickets from the current segment: the ticket
//! number picks the cohort through a precomputed weighted schedule, a per-cohort cursor picks
//! the pooled request, and a shared pacer decides when it may go. Nothing queues: a worker holds
//! at most one request, so memory is the pools plus `concurrency` requests in flight.

use crate::pool::{Encoding, Pool, PoolParams, build_pool};
use crate::report::{CohortReport, PhaseReport, Report};
use crate::scenario::{Protocol, Rate, Scenario, ScenarioError, Segment};
use crate::transport::{Client, Outcome};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Errors that stop a run before it sends anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("target: {0}")]
    Target(String),
    #[error("cannot start a tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// How far behind schedule the pacer lets a run fall before it forgets the debt: after a stall
/// (throttling, a slow server) it catches up by at most this much, instead of bursting.
pub(crate) const MAX_LAG: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(5);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// One cohort's pool within one segment, with how often each pooled request was accepted.
struct Slot {
    pool: Arc<Pool>,
    cursor: AtomicUsize,
    sends: Vec<AtomicU64>,
}

struct SegmentState {
    segment: Segment,
    /// Cohort indices in weighted round-robin order; ticket `t` sends `schedule[t % len]`.
    schedule: Vec<u16>,
    ticket: AtomicU64,
    /// Per cohort; `None` for cohorts with weight 0 in this segment.
    slots: Vec<Option<Slot>>,
}

struct Shared {
    segments: Vec<SegmentState>,
    batch: u64,
    start: Instant,
    end: Instant,
    pacer: Mutex<Instant>,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    throttled: AtomicU64,
    rejected: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Smooth weighted round-robin: every prefix of the schedule is as close to the weights as
/// whole requests allow, so even a short run has the right shares.
pub fn weighted_schedule(weights: &[f64]) -> Vec<u16> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let min_share = weights
        .iter()
        .filter(|w| **w > 0.0)
        .fold(1.0f64, |m, w| m.min(w / total));
    // Long enough that the smallest cohort gets ~100 entries, e.g. 2,000 for a 5% canary.
    let len = ((100.0 / min_share).ceil() as usize).clamp(weights.len(), 100_000);
    let mut current = vec![0.0f64; weights.len()];
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += w;
        }
        let (best, _) =
            current.iter().enumerate().fold(
                (0, f64::MIN),
                |b, (i, c)| if *c > b.1 { (i, *c) } else { b },
            );
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

fn segment_at(segments: &[SegmentState], elapsed: Duration) -> &SegmentState {
    let i = segments.partition_point(|s| s.segment.start <= elapsed);
    &segments[i.saturating_sub(1)]
}

/// Builds every pool. Pools are shared between segments whose settings for a cohort are the
/// same (only the accounting is per segment), and built on all cores.
fn build_segments(sc: &Scenario) -> Vec<SegmentState> {
    let segments = sc.segments();
    let encoding = if sc.target.protocol == Protocol::HttpJson {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let gzip_body = sc.target.gzip && sc.target.protocol != Protocol::Grpc;
    // (cohort, error_rate bits, multiplier bits) → pool, for de-duplication.
    let mut keys: Vec<(usize, u64, u64)> = Vec::new();
    for seg in &segments {
        for (c, st) in seg.cohorts.iter().enumerate() {
            let k = (c, st.error_rate.to_bits(), st.latency_multiplier.to_bits());
            if st.weight > 0.0 && !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(keys.len().max(1));
    let next = AtomicUsize::new(0);
    let built: Mutex<Vec<Option<Arc<Pool>>>> = Mutex::new(vec![None; keys.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(&(c, e, m)) = keys.get(i) else { break };
                    let settings = crate::scenario::CohortSettings {
                        weight: 1.0,
                        error_rate: f64::from_bits(e),
                        latency_multiplier: f64::from_bits(m),
                    };
                    let pool = build_pool(&PoolParams {
                        cohort: &sc.cohorts[c],
                        settings,
                        batch_size: sc.batch_size,
                        pool_size: sc.pool_size,
                        // Distinct draws per distinct settings, reproducible per seed.
                        seed: sc
                            .seed
                            .wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        encoding,
                        gzip_body,
                    });
                    built.lock().unwrap()[i] = Some(Arc::new(pool));
                }
            });
        }
    });
    let built = built.into_inner().unwrap();
    segments
        .into_iter()
        .map(|seg| {
            let weights: Vec<f64> = seg.cohorts.iter().map(|c| c.weight).collect();
            let slots = seg
                .cohorts
                .iter()
                .enumerate()
                .map(|(c, st)| {
                    if st.weight <= 0.0 {
                        return None;
                    }
                    let k = (c, st.error_rate.to_bits(), st.latency_multiplier.to_bits());
                    let pool = built[keys.iter().position(|x| *x == k).expect("pool was built")]
                        .clone()
                        .expect("pool was built");
                    let sends = (0..pool.requests.len())
                        .map(|_| AtomicU64::new(0))
                        .collect();
                    Some(Slot {
                        pool,
                        cursor: AtomicUsize::new(0),
                        sends,
                    })
                })
                .collect();
            SegmentState {
                schedule: weighted_schedule(&weights),
                segment: seg,
                ticket: AtomicU64::new(0),
                slots,
            }
        })
        .collect()
}

/// Runs a scenario to its end and reports what was sent. Must be called inside a tokio
/// runtime (multi-threaded for real load); see [`run_blocking`] for synchronous callers.
pub async fn run(sc: &Scenario) -> Result<Report, RunError> {
    sc.validate()?;
    let sc_owned = sc.clone();
    // Pool building is CPU work of a few hundred ms; keep it off the async workers.
    let segments = tokio::task::spawn_blocking(move || build_segments(&sc_owned))
        .await
        .expect("pool building does not panic");
    let clients: Vec<Client> = (0..sc.connections)
        .map(|_| Client::new(&sc.target, &sc.access))
        .collect::<Result<_, _>>()
        .map_err(RunError::Target)?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        segments,
        batch: sc.batch_size as u64,
        start,
        end: start + sc.duration,
        pacer: Mutex::new(start),
        requests_ok: AtomicU64::new(0),
        requests_failed: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let mut tasks = Vec::with_capacity(sc.concurrency);
    for w in 0..sc.concurrency {
        let client = clients[w % clients.len()].clone();
        tasks.push(tokio::spawn(worker(shared.clone(), client)));
    }
    for t in tasks {
        t.await.expect("worker does not panic");
    }
    let elapsed = start.elapsed();
    Ok(report(sc, &shared, elapsed))
}

/// [`run`] on a fresh multi-threaded runtime, for synchronous tests and callers. Panics if
/// called from inside a tokio runtime (as tokio does for any nested `block_on`).
pub fn run_blocking(sc: &Scenario) -> Result<Report, RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(run(sc))
}

/// When the next request may go at `rate` spans/s: one batch's worth of time after the last.
fn pace(shared: &Shared, rate: f64) -> Instant {
    pace_units(&shared.pacer, shared.batch, rate)
}

/// The shared pacer: a request of `units` spans or points may go at the returned instant, and
/// the next one `units / rate` seconds later (falling at most [`MAX_LAG`] behind).
pub(crate) fn pace_units(pacer: &Mutex<Instant>, units: u64, rate: f64) -> Instant {
    let interval = Duration::from_secs_f64(units as f64 / rate);
    let now = Instant::now();
    let mut next = pacer.lock().unwrap();
    let due = (*next).max(now.checked_sub(MAX_LAG).unwrap_or(now));
    *next = due + interval;
    due
}

async fn worker(shared: Arc<Shared>, mut client: Client) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let now = Instant::now();
        if now >= shared.end {
            return;
        }
        let seg = segment_at(&shared.segments, now - shared.start);
        if let Rate::PerSecond(rate) = seg.segment.rate {
            let due = pace(&shared, rate);
            if due >= shared.end {
                // The next slot is past the end: sleep out the run rather than spin.
                tokio::time::sleep_until(shared.end).await;
                return;
            }
            tokio::time::sleep_until(due).await;
        }
        if seg.schedule.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let t = seg.ticket.fetch_add(1, Relaxed);
        let cohort = seg.schedule[(t % seg.schedule.len() as u64) as usize] as usize;
        let slot = seg.slots[cohort]
            .as_ref()
            .expect("scheduled cohorts have a pool");
        let idx = slot.cursor.fetch_add(1, Relaxed) % slot.pool.requests.len();
        let body = slot.pool.requests[idx].body.clone();
        match client.send(body).await {
            Outcome::Ok { rejected } => {
                slot.sends[idx].fetch_add(1, Relaxed);
                shared.requests_ok.fetch_add(1, Relaxed);
                if rejected > 0 {
                    shared.rejected.fetch_add(rejected, Relaxed);
                }
                backoff = BACKOFF_MIN;
            }
            Outcome::Throttled { .. } => {
                shared.throttled.fetch_add(1, Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Outcome::Failed { message, .. } => {
                shared.requests_failed.fetch_add(1, Relaxed);
                shared.first_error.lock().unwrap().get_or_insert(message);
                // A dead or failing server must not turn the generator into a busy loop.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Exact per-cohort accounting: each accepted send of a pooled request adds that request's
/// durations once.
fn cohort_reports(sc: &Scenario, segs: &[&SegmentState]) -> Vec<CohortReport> {
    sc.cohorts
        .iter()
        .enumerate()
        .map(|(c, spec)| {
            let mut hist: Vec<(u64, u64)> = Vec::new();
            let (mut spans, mut errors, mut requests) = (0u64, 0u64, 0u64);
            for seg in segs {
                let Some(slot) = &seg.slots[c] else { continue };
                for (req, sends) in slot.pool.requests.iter().zip(&slot.sends) {
                    let n = sends.load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    requests += n;
                    spans += n * u64::from(req.spans);
                    errors += n * u64::from(req.errors);
                    hist.extend(req.durations.iter().map(|&(d, k)| (d, n * u64::from(k))));
                }
            }
            CohortReport::new(spec, requests, spans, errors, hist)
        })
        .collect()
}

fn report(sc: &Scenario, shared: &Shared, elapsed: Duration) -> Report {
    let all: Vec<&SegmentState> = shared.segments.iter().collect();
    let per_cohort = cohort_reports(sc, &all);
    let per_phase = if sc.phases.is_empty() {
        Vec::new()
    } else {
        shared
            .segments
            .iter()
            .map(|s| PhaseReport {
                name: s.segment.name.clone(),
                start_s: s.segment.start.as_secs_f64(),
                per_cohort: cohort_reports(sc, &[s]),
            })
            .collect()
    };
    let spans_sent: u64 = per_cohort.iter().map(|c| c.spans).sum();
    Report {
        scenario: sc.name.clone(),
        spans_sent,
        requests_ok: shared.requests_ok.load(Relaxed),
        requests_failed: shared.requests_failed.load(Relaxed),
        throttled: shared.throttled.load(Relaxed),
        rejected_spans: shared.rejected.load(Relaxed),
        elapsed,
        spans_per_second: spans_sent as f64 / elapsed.as_secs_f64().max(1e-9),
        first_error: shared.first_error.lock().unwrap().clone(),
        per_cohort,
        per_phase,
    }
}
