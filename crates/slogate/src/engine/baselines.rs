//! Stored baselines as the server keeps them: the [`BaselineStore`] (loaded at start, re-read
//! when a file changes, so a `slogate baseline capture` is seen by the next verdict) and the
//! summaries the API and the CLI show. Capturing one is `cli/baseline.rs`.

use parking_lot::Mutex;
use serde::Serialize;
use slogate_history::Store;
use slogate_history::baseline::{self as store, Baseline, BaselineError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How long a baseline read from an object store is used before it is fetched again (a local
/// file is checked on every lookup instead).
const REMOTE_TTL: Duration = Duration::from_secs(10);

/// When a cached baseline was read: a local file's modification time and size, or the time an
/// object was fetched.
#[derive(Clone, Copy, PartialEq)]
enum Stamp {
    File(Option<SystemTime>, u64),
    Fetched(Instant),
}

/// The stored baselines under `<history root>/baselines`, cached. On a local directory every
/// lookup costs one `stat` and a changed or new file is read again at once; on S3 a baseline is
/// fetched again when its copy is older than [`REMOTE_TTL`] (a capture is seen within 10 s).
pub struct BaselineStore {
    root: Store,
    cache: Mutex<HashMap<String, (Stamp, Arc<Baseline>)>>,
}

impl BaselineStore {
    pub fn new(root: impl Into<Store>) -> BaselineStore {
        BaselineStore {
            root: root.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Loads every stored baseline; unreadable ones are logged and skipped (a gate naming one
    /// gets the error when it asks).
    pub fn load_all(&self) -> usize {
        let names = match store::list(&self.root) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the stored baselines");
                return 0;
            }
        };
        let mut loaded = 0;
        for name in names {
            match self.get(&name) {
                Ok(_) => loaded += 1,
                Err(e) => {
                    tracing::warn!(baseline = %name, error = %e, "stored baseline not loaded")
                }
            }
        }
        loaded
    }

    /// The baseline `name`, read again when its file changed (local) or its copy is older than
    /// [`REMOTE_TTL`] (object store).
    pub fn get(&self, name: &str) -> Result<Arc<Baseline>, BaselineError> {
        let key = store::baseline_key(name)?;
        let stamp = match self.root.local_root() {
            Some(dir) => {
                let path = dir.join(&key);
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.cache.lock().remove(name);
                        return Err(BaselineError::NotFound(name.to_string()));
                    }
                    Err(source) => return Err(BaselineError::Io { path, source }),
                };
                let stamp = Stamp::File(meta.modified().ok(), meta.len());
                if let Some((s, b)) = self.cache.lock().get(name)
                    && *s == stamp
                {
                    return Ok(b.clone());
                }
                stamp
            }
            None => {
                if let Some((Stamp::Fetched(at), b)) = self.cache.lock().get(name)
                    && at.elapsed() < REMOTE_TTL
                {
                    return Ok(b.clone());
                }
                Stamp::Fetched(Instant::now())
            }
        };
        let b = match store::load(&self.root, name) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                if matches!(e, BaselineError::NotFound(_)) {
                    self.cache.lock().remove(name);
                }
                return Err(e);
            }
        };
        let mut cache = self.cache.lock();
        if cache.len() >= store::MAX_BASELINES {
            cache.clear();
        }
        cache.insert(name.to_string(), (stamp, b.clone()));
        tracing::info!(baseline = %name, requests = b.total.requests, "stored baseline loaded");
        Ok(b)
    }

    /// Summaries of every stored baseline (unreadable ones with their error).
    pub fn summaries(&self) -> Result<Vec<BaselineListing>, BaselineError> {
        Ok(store::list(&self.root)?
            .into_iter()
            .map(|name| match self.get(&name) {
                Ok(b) => BaselineListing::Ok(Box::new(summary(&b))),
                Err(e) => BaselineListing::Unreadable {
                    name,
                    error: e.to_string(),
                },
            })
            .collect())
    }
}

/// A stored baseline without its sketches: what `GET /api/v1/baselines`, `slogate baseline list`
/// and `slogate baseline show --format json` show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BaselineSummary {
    pub name: String,
    /// The capture's selector, e.g. `service=checkout,env=staging`.
    pub selector: String,
    pub from: String,
    pub to: String,
    pub captured_at: String,
    pub total: CohortView,
    pub operations: Vec<CohortView>,
    /// The OTLP metrics captured, one entry per metric name (streams merged over the range).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricView>,
}

/// One metric of a stored baseline: how many streams and points it captured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricView {
    pub metric: String,
    pub kind: String,
    pub unit: String,
    pub streams: u64,
    pub points: u64,
}

/// One cohort of a stored baseline: an operation's totals, or the total (`operation: null`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CohortView {
    pub operation: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: BaselineLatency,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BaselineLatency {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// A listed baseline: its summary, or why it cannot be read.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum BaselineListing {
    Ok(Box<BaselineSummary>),
    Unreadable { name: String, error: String },
}

/// The summary of a baseline (no sketches).
pub fn summary(b: &Baseline) -> BaselineSummary {
    let cohort = |c: &slogate_history::CohortTotals| {
        let [p50, p95, p99] = c
            .decode_sketch()
            .map(|s| s.quantiles([0.5, 0.95, 0.99]))
            .unwrap_or([None; 3]);
        CohortView {
            operation: c.operation.clone(),
            requests: c.requests,
            errors: c.errors,
            error_rate: c.error_rate(),
            latency_ms: BaselineLatency {
                mean: c.mean_ms(),
                p50: super::ms(p50),
                p95: super::ms(p95),
                p99: super::ms(p99),
            },
        }
    };
    BaselineSummary {
        name: b.name.clone(),
        selector: b.selector_text(),
        from: slogate_history::rfc3339(b.from_unix),
        to: slogate_history::rfc3339(b.to_unix),
        captured_at: slogate_history::rfc3339(b.captured_at_unix),
        total: cohort(&b.total),
        operations: b.operations.iter().map(cohort).collect(),
        metrics: metric_views(&b.metrics),
    }
}

/// Per metric name (the records are sorted by metric), its streams and points.
fn metric_views(records: &[slogate_core::MetricSlotRecord]) -> Vec<MetricView> {
    let mut out: Vec<MetricView> = Vec::new();
    for r in records {
        match out.last_mut() {
            Some(v) if v.metric == r.metric => {
                v.streams += 1;
                v.points += r.points;
            }
            _ => out.push(MetricView {
                metric: r.metric.clone(),
                kind: r.kind.clone(),
                unit: r.unit.clone(),
                streams: 1,
                points: r.points,
            }),
        }
    }
    out
}
