//! Stored baselines in the binary: the server's [`BaselineStore`] (loaded at start, re-read when
//! a file changes, so a `slogate baseline capture` is seen by the next verdict), time-range
//! parsing for the CLI (`-7d`, `now`, RFC 3339), and the `slogate baseline` subcommands.

use parking_lot::Mutex;
use slogate_history::Store;
use slogate_history::baseline::{self as store, Baseline, BaselineError};
use std::collections::HashMap;
use std::path::PathBuf;
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
                if let Some((s, b)) = self.cache.lock().get(name) {
                    if *s == stamp {
                        return Ok(b.clone());
                    }
                }
                stamp
            }
            None => {
                if let Some((Stamp::Fetched(at), b)) = self.cache.lock().get(name) {
                    if at.elapsed() < REMOTE_TTL {
                        return Ok(b.clone());
                    }
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
    pub fn summaries(&self) -> Result<Vec<serde_json::Value>, BaselineError> {
        Ok(store::list(&self.root)?
            .into_iter()
            .map(|name| match self.get(&name) {
                Ok(b) => summary_json(&b),
                Err(e) => serde_json::json!({ "name": name, "error": e.to_string() }),
            })
            .collect())
    }
}

/// The JSON summary of a baseline (no sketches): what `GET /api/v1/baselines` and
/// `slogate baseline list --format json` show.
pub fn summary_json(b: &Baseline) -> serde_json::Value {
    let ms = |v: Option<u64>| v.map(|ns| (ns as f64 / 1e3).round() / 1e3);
    let cohort = |c: &slogate_history::CohortTotals| {
        let [p50, p95, p99] = c
            .decode_sketch()
            .map(|s| s.quantiles([0.5, 0.95, 0.99]))
            .unwrap_or([None; 3]);
        serde_json::json!({
            "operation": c.operation, "requests": c.requests, "errors": c.errors, "error_rate": c.error_rate(),
            "latency_ms": { "mean": c.mean_ms(), "p50": ms(p50), "p95": ms(p95), "p99": ms(p99) },
        })
    };
    serde_json::json!({
        "name": b.name,
        "selector": b.selector_text(),
        "from": store::rfc3339(b.from_unix),
        "to": store::rfc3339(b.to_unix),
        "captured_at": store::rfc3339(b.captured_at_unix),
        "total": cohort(&b.total),
        "operations": b.operations.iter().map(cohort).collect::<Vec<_>>(),
    })
}

/// Parses a point in time: `now`, a relative offset into the past (`-7d`, `-90m`, `-1h30m`),
/// or RFC 3339 (`2026-11-24T09:00:00Z`). Returns Unix seconds.
pub fn parse_time(s: &str, now_unix: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_unix);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("invalid relative time {s:?}: {e}; write e.g. -7d, -2h, now"))?;
        return Ok(now_unix.saturating_sub(d.as_secs() as i64));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("invalid time {s:?}: {e}; write RFC 3339 (2026-11-24T09:00:00Z), a relative time (-7d) or now"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| format!("time {s:?} is before 1970"))
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What `slogate baseline capture` was asked for.
pub struct CaptureRequest {
    pub name: String,
    pub selector: Vec<(String, String)>,
    pub from_unix: i64,
    pub to_unix: i64,
    pub min_requests: u64,
    pub replace: bool,
}

/// Reads the history under `root`, builds the baseline and saves it under `root/baselines`.
pub async fn capture(
    root: &Store,
    extra_dims: &[String],
    req: &CaptureRequest,
) -> Result<(Baseline, PathBuf), BaselineError> {
    store::validate_name(&req.name)?;
    if req.to_unix <= req.from_unix {
        return Err(BaselineError::Range(format!(
            "--from {} is not before --to {}",
            store::rfc3339(req.from_unix),
            store::rfc3339(req.to_unix)
        )));
    }
    // Refused before the history query, which is the expensive part; `save` checks again.
    if !req.replace && root.get(&store::baseline_key(&req.name)?)?.is_some() {
        return Err(BaselineError::Exists(req.name.clone()));
    }
    let history = slogate_history::History::open(root, extra_dims).await?;
    let ops =
        store::operation_totals(&history, &req.selector, (req.from_unix, req.to_unix)).await?;
    let selector = req.selector.iter().cloned().collect();
    let b = Baseline::from_totals(
        &req.name,
        selector,
        (req.from_unix, req.to_unix),
        now_unix(),
        ops,
        req.min_requests,
    )?;
    let path = store::save(root, &b, req.replace)?;
    Ok((b, path))
}

/// `slogate baseline show` as text.
pub fn show_text(b: &Baseline) -> String {
    use std::fmt::Write as _;
    let v = summary_json(b);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "baseline {} · {} · {} → {} · captured {}",
        b.name,
        v["selector"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["captured_at"].as_str().unwrap_or("")
    );
    let mut rows = vec![
        [
            "operation",
            "requests",
            "errors",
            "error rate",
            "mean",
            "p50",
            "p95",
            "p99",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in std::iter::once(&v["total"]).chain(v["operations"].as_array().into_iter().flatten()) {
        let pct = c["error_rate"]
            .as_f64()
            .map_or("-".into(), |r| format!("{:.2}%", r * 100.0));
        let ms = |k: &str| {
            c["latency_ms"][k]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.1} ms"))
        };
        rows.push(vec![
            c["operation"].as_str().unwrap_or("(all)").to_string(),
            c["requests"].to_string(),
            c["errors"].to_string(),
            pct,
            ms("mean"),
            ms("p50"),
            ms("p95"),
            ms("p99"),
        ]);
    }
    out.push_str(&crate::report::aligned(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000;
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("now", Ok(now)),
            ("-7d", Ok(now - 7 * 86400)),
            ("-1h30m", Ok(now - 5400)),
            ("2026-11-24T09:00:00Z", Ok(1_795_510_800)),
            ("yesterday", Err("invalid time \"yesterday\"")),
            ("-soon", Err("invalid relative time \"-soon\"")),
        ];
        for (input, want) in cases {
            let got = parse_time(input, now);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{input}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{input}: {g}"),
                (g, w) => panic!("{input}: got {g:?}, want {w:?}"),
            }
        }
    }
}
