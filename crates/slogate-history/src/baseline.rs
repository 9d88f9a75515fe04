//! Stored baselines and the cohort totals behind them: a named, frozen set of merged sketches and
//! counters (per operation plus a service-wide total) captured from the `requests` table over a
//! time range, and the selection's OTLP metric streams merged over the same range from the
//! `metrics` table, so that a gate can compare today's canary with, say, last week's staging run
//! on its span criteria and on its metric criteria alike.
//!
//! # Storage
//!
//! One JSON document per baseline, `baselines/<name>.json` in the history's [`Store`]: on a
//! local directory written as a `.tmp` file, fsynced, renamed over the final name and the
//! directory fsynced; on S3 one PUT. Readers see the old document or the new one, never half of
//! one. Sketches are kept in the `slogate-sketch` byte format, hex-encoded.
//!
//! # Bounds
//!
//! Names are `[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes; a baseline holds at most
//! [`MAX_OPERATIONS`] operations and [`MAX_METRIC_SERIES`] metric streams; a document larger than [`MAX_FILE_BYTES`] is refused;
//! listing stops at [`MAX_BASELINES`] files. Every sketch is decoded when a baseline is loaded,
//! so a corrupt file is an error at load, not a wrong verdict later.
//!
//! The totals are measured by [`operation_totals`](crate::operation_totals) in `range`, with
//! the other range queries over the history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slogate_sketch::Sketch;

use crate::HistoryError;
use crate::schema::rfc3339;
use crate::store::Store;
use crate::writer::REQUESTS_TABLE;
use slogate_core::MetricSlotRecord;

/// Directory under the history root that holds the baselines.
pub const BASELINES_DIR: &str = "baselines";
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_OPERATIONS: usize = 5_000;
/// Metric streams a baseline holds at most (one record each, merged over the range).
pub const MAX_METRIC_SERIES: usize = 20_000;
pub const MAX_FILE_BYTES: u64 = 64 << 20;
pub const MAX_BASELINES: usize = 10_000;
/// The format version written into every document.
pub const BASELINE_FORMAT: u32 = 1;

/// Errors of baseline capture and storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    #[error(
        "invalid baseline name {0:?}: use 1 to {MAX_NAME_LEN} characters of [A-Za-z0-9._-], not starting with a dot"
    )]
    InvalidName(String),
    #[error("no stored baseline {0:?}; `slogate baseline list` shows the stored ones")]
    NotFound(String),
    #[error("a baseline named {0:?} already exists; delete it first or pick another name")]
    Exists(String),
    #[error(
        "no requests for {selector} between {from} and {to} in the history; nothing to capture (an empty baseline is never saved)"
    )]
    Empty {
        selector: String,
        from: String,
        to: String,
    },
    #[error(
        "only {requests} requests for {selector} between {from} and {to}, fewer than the {min} required for a baseline"
    )]
    TooFew {
        selector: String,
        from: String,
        to: String,
        requests: u64,
        min: u64,
    },
    #[error(
        "{count} operations match, more than the {MAX_OPERATIONS} a baseline may hold; narrow it with an operation"
    )]
    TooManyOperations { count: usize },
    #[error(
        "more than {MAX_METRIC_SERIES} metric streams match, more than a baseline may hold; narrow it with env, version or an extra dimension"
    )]
    TooManyMetricSeries,
    #[error("invalid time range: {0}")]
    Range(String),
    #[error("baseline file {path} is {bytes} bytes, more than the {MAX_FILE_BYTES} allowed")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("baseline file {path} is unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// The measured totals of one cohort: one operation, or the whole selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortTotals {
    /// The operation, or `None` for the total over all operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub requests: u64,
    pub errors: u64,
    /// Sum of all latencies in milliseconds (for the exact mean).
    pub latency_sum_ms: f64,
    /// The merged latency sketch (nanoseconds) in the `slogate-sketch` byte format.
    #[serde(with = "hex_bytes")]
    pub sketch: Vec<u8>,
}

impl CohortTotals {
    /// The decoded sketch.
    pub fn decode_sketch(&self) -> Result<Sketch, slogate_sketch::DecodeError> {
        Sketch::decode(&self.sketch)
    }

    /// Mean latency in milliseconds, `None` without requests.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.latency_sum_ms / self.requests as f64)
    }

    /// `errors / requests`, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors.min(self.requests) as f64 / self.requests as f64)
    }

    /// Merges several cohorts into one total (`operation: None`).
    pub fn merge_all(parts: &[CohortTotals]) -> Result<CohortTotals, slogate_sketch::DecodeError> {
        let mut sketch = Sketch::new();
        let mut total = CohortTotals {
            operation: None,
            requests: 0,
            errors: 0,
            latency_sum_ms: 0.0,
            sketch: Vec::new(),
        };
        for p in parts {
            sketch.merge_encoded(&p.sketch)?;
            total.requests = total.requests.saturating_add(p.requests);
            total.errors = total.errors.saturating_add(p.errors);
            total.latency_sum_ms += p.latency_sum_ms;
        }
        total.sketch = sketch.encoded();
        Ok(total)
    }
}

/// A stored baseline: what was selected, over which range, and the totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub format: u32,
    pub name: String,
    /// The dimension matchers of the capture (`service` always; `env`, `version`, `operation`
    /// and extras when given).
    pub selector: BTreeMap<String, String>,
    /// Captured range `[from, to)`, Unix seconds.
    pub from_unix: i64,
    pub to_unix: i64,
    pub captured_at_unix: i64,
    /// Service-wide (selection-wide) total.
    pub total: CohortTotals,
    /// One entry per operation, sorted by operation.
    pub operations: Vec<CohortTotals>,
    /// The selection's OTLP metric streams, each merged over the range (see
    /// [`crate::metric_totals`]): `slot_start_unix` is its first slot's start and
    /// `slot_seconds` the time from there to the end of its last slot. Empty in baselines
    /// captured before metrics were, and when the selection exported none.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "metric_totals")]
    pub metrics: Vec<MetricSlotRecord>,
}

impl Baseline {
    /// Builds a baseline from per-operation totals and the merged metric streams, refusing
    /// empty or thin ones. A selection with metric streams but no span traffic makes a
    /// metrics-only baseline (its span criteria then have no data); with span traffic, fewer
    /// than `min_requests` requests is [`BaselineError::TooFew`].
    pub fn from_totals(
        name: &str,
        selector: BTreeMap<String, String>,
        (from_unix, to_unix): (i64, i64),
        captured_at_unix: i64,
        mut operations: Vec<CohortTotals>,
        metrics: Vec<MetricSlotRecord>,
        min_requests: u64,
    ) -> Result<Baseline, BaselineError> {
        validate_name(name)?;
        let describe = || {
            (
                selector_text(&selector),
                rfc3339(from_unix),
                rfc3339(to_unix),
            )
        };
        if operations.len() > MAX_OPERATIONS {
            return Err(BaselineError::TooManyOperations {
                count: operations.len(),
            });
        }
        operations.retain(|o| o.requests > 0);
        operations.sort_by(|a, b| a.operation.cmp(&b.operation));
        let total = CohortTotals::merge_all(&operations).map_err(|e| BaselineError::Corrupt {
            path: PathBuf::from(REQUESTS_TABLE),
            message: format!("invalid sketch in the history: {e}"),
        })?;
        if metrics.len() > MAX_METRIC_SERIES {
            return Err(BaselineError::TooManyMetricSeries);
        }
        if total.requests == 0 && metrics.is_empty() {
            let (selector, from, to) = describe();
            return Err(BaselineError::Empty { selector, from, to });
        }
        if total.requests > 0 && total.requests < min_requests.max(1) {
            let (selector, from, to) = describe();
            return Err(BaselineError::TooFew {
                selector,
                from,
                to,
                requests: total.requests,
                min: min_requests,
            });
        }
        Ok(Baseline {
            format: BASELINE_FORMAT,
            name: name.to_string(),
            selector,
            from_unix,
            to_unix,
            captured_at_unix,
            total,
            operations,
            metrics,
        })
    }

    /// The totals for `operation` (`None`: the total), if the baseline has them.
    pub fn cohort(&self, operation: Option<&str>) -> Option<&CohortTotals> {
        match operation {
            None => Some(&self.total),
            Some(op) => self
                .operations
                .iter()
                .find(|o| o.operation.as_deref() == Some(op)),
        }
    }

    /// `service=checkout,env=staging`.
    pub fn selector_text(&self) -> String {
        selector_text(&self.selector)
    }

    fn check(&self, path: &Path) -> Result<(), BaselineError> {
        let corrupt = |message: String| BaselineError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        if self.format != BASELINE_FORMAT {
            return Err(corrupt(format!(
                "format {} is not the supported {BASELINE_FORMAT}",
                self.format
            )));
        }
        if self.operations.len() > MAX_OPERATIONS {
            return Err(corrupt(format!("{} operations", self.operations.len())));
        }
        if self.metrics.len() > MAX_METRIC_SERIES {
            return Err(corrupt(format!("{} metric streams", self.metrics.len())));
        }
        for m in &self.metrics {
            if !m.sketch.is_empty() {
                Sketch::decode(&m.sketch)
                    .map_err(|e| corrupt(format!("invalid sketch of metric {}: {e}", m.metric)))?;
            }
            let finite = [m.min, m.max, m.last, m.value_sum, m.increase, m.hist_sum]
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(corrupt(format!(
                    "metric {} has a value that is not a finite number",
                    m.metric
                )));
            }
        }
        for c in std::iter::once(&self.total).chain(&self.operations) {
            let s = c
                .decode_sketch()
                .map_err(|e| corrupt(format!("invalid sketch: {e}")))?;
            if c.errors > c.requests || s.count() > c.requests {
                return Err(corrupt(
                    "counts disagree (more errors or samples than requests)".into(),
                ));
            }
        }
        Ok(())
    }
}

fn selector_text(selector: &BTreeMap<String, String>) -> String {
    // The service first, as the rest of slogate writes selectors.
    let mut parts: Vec<String> = selector
        .get("service")
        .map(|s| format!("service={s}"))
        .into_iter()
        .collect();
    parts.extend(
        selector
            .iter()
            .filter(|(k, _)| k.as_str() != "service")
            .map(|(k, v)| format!("{k}={v}")),
    );
    parts.join(",")
}

/// Checks a baseline name: it becomes a file name and appears in URLs and configuration.
pub fn validate_name(name: &str) -> Result<(), BaselineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BaselineError::InvalidName(name.to_string()))
    }
}

/// The key of baseline `name` in a history root: `baselines/<name>.json`.
pub fn baseline_key(name: &str) -> Result<String, BaselineError> {
    validate_name(name)?;
    Ok(format!("{BASELINES_DIR}/{name}.json"))
}

/// Where baseline `name` lives, for messages: `<root>/baselines/<name>.json` (a path, or an
/// `s3://` URL).
pub fn baseline_location(root: &Store, name: &str) -> Result<PathBuf, BaselineError> {
    Ok(PathBuf::from(format!(
        "{}/{}",
        root.describe().trim_end_matches('/'),
        baseline_key(name)?
    )))
}

/// Saves a baseline atomically (a local file is written, fsync'd and renamed; an object is one
/// PUT); refuses to replace an existing one unless `replace`. Returns where it was saved.
pub fn save(root: &Store, baseline: &Baseline, replace: bool) -> Result<PathBuf, BaselineError> {
    let key = baseline_key(&baseline.name)?;
    let location = baseline_location(root, &baseline.name)?;
    if !replace && root.get(&key)?.is_some() {
        return Err(BaselineError::Exists(baseline.name.clone()));
    }
    let body = serde_json::to_vec_pretty(baseline).map_err(|e| BaselineError::Corrupt {
        path: location.clone(),
        message: e.to_string(),
    })?;
    root.put(&key, body)?;
    Ok(location)
}

/// Loads and checks one baseline.
pub fn load(root: &Store, name: &str) -> Result<Baseline, BaselineError> {
    let key = baseline_key(name)?;
    let location = baseline_location(root, name)?;
    match root.get(&key)? {
        Some(bytes) => parse(&location, name, &bytes),
        None => Err(BaselineError::NotFound(name.to_string())),
    }
}

/// Parses and checks the stored bytes of baseline `name` (from `location`).
fn parse(location: &Path, name: &str, bytes: &[u8]) -> Result<Baseline, BaselineError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BaselineError::TooLarge {
            path: location.to_path_buf(),
            bytes: bytes.len() as u64,
        });
    }
    let mut baseline: Baseline =
        serde_json::from_slice(bytes).map_err(|e| BaselineError::Corrupt {
            path: location.to_path_buf(),
            message: e.to_string(),
        })?;
    // The file keeps the service once, in the selector.
    let service = baseline
        .selector
        .get("service")
        .cloned()
        .unwrap_or_default();
    for m in &mut baseline.metrics {
        m.service.clone_from(&service);
    }
    if baseline.name != name {
        return Err(BaselineError::Corrupt {
            path: location.to_path_buf(),
            message: format!(
                "names baseline {:?} but the file is {name:?}",
                baseline.name
            ),
        });
    }
    baseline.check(location)?;
    Ok(baseline)
}

/// The names of the stored baselines, sorted (at most [`MAX_BASELINES`]).
pub fn list(root: &Store) -> Result<Vec<String>, BaselineError> {
    let prefix = format!("{BASELINES_DIR}/");
    let mut names = Vec::new();
    for entry in root.list(BASELINES_DIR)? {
        let Some(name) = entry
            .key
            .strip_prefix(&prefix)
            .and_then(|f| f.strip_suffix(".json"))
        else {
            continue;
        };
        if validate_name(name).is_ok() {
            names.push(name.to_string());
            if names.len() >= MAX_BASELINES {
                break;
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes a stored baseline.
pub fn delete(root: &Store, name: &str) -> Result<(), BaselineError> {
    let key = baseline_key(name)?;
    if root.get(&key)?.is_none() {
        return Err(BaselineError::NotFound(name.to_string()));
    }
    root.delete(&key)?;
    Ok(())
}

/// Serde for a baseline's metric streams: in memory the history's own records, on disk one
/// object per stream with the range it covers and the sketch in hex.
mod metric_totals {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use slogate_core::MetricSlotRecord;
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MetricTotals {
        metric: String,
        kind: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        unit: String,
        env: String,
        version: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        extras: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        instance: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
        /// First slot's start and the end of the last slot, Unix seconds.
        from_unix: i64,
        to_unix: i64,
        points: u64,
        min: f64,
        max: f64,
        last: f64,
        value_sum: f64,
        last_time_unix_nano: u64,
        increase: f64,
        hist_sum: f64,
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            with = "super::hex_bytes"
        )]
        sketch: Vec<u8>,
    }

    pub fn serialize<S: Serializer>(records: &[MetricSlotRecord], s: S) -> Result<S::Ok, S::Error> {
        let out: Vec<MetricTotals> = records
            .iter()
            .map(|r| MetricTotals {
                metric: r.metric.clone(),
                kind: r.kind.clone(),
                unit: r.unit.clone(),
                env: r.env.clone(),
                version: r.version.clone(),
                extras: r.extras.clone(),
                instance: r.instance.clone(),
                attributes: r.attributes.iter().cloned().collect(),
                from_unix: r.slot_start_unix,
                to_unix: r.slot_start_unix + i64::from(r.slot_seconds),
                points: r.points,
                min: r.min,
                max: r.max,
                last: r.last,
                value_sum: r.value_sum,
                last_time_unix_nano: r.last_time_unix_nano,
                increase: r.increase,
                hist_sum: r.hist_sum,
                sketch: r.sketch.clone(),
            })
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MetricSlotRecord>, D::Error> {
        let stored = Vec::<MetricTotals>::deserialize(d)?;
        stored
            .into_iter()
            .map(|m| {
                let seconds = m
                    .to_unix
                    .checked_sub(m.from_unix)
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "metric {}: to_unix is before from_unix or too far after it",
                            m.metric
                        ))
                    })?;
                Ok(MetricSlotRecord {
                    slot_start_unix: m.from_unix,
                    slot_seconds: seconds,
                    service: String::new(),
                    env: m.env,
                    version: m.version,
                    extras: m.extras,
                    instance: m.instance,
                    metric: m.metric,
                    unit: m.unit,
                    kind: m.kind,
                    attributes: m.attributes.into_iter().collect(),
                    points: m.points,
                    min: m.min,
                    max: m.max,
                    last: m.last,
                    value_sum: m.value_sum,
                    last_time_unix_nano: m.last_time_unix_nano,
                    increase: m.increase,
                    hist_sum: m.hist_sum,
                    sketch: m.sketch,
                })
            })
            .collect()
    }
}

/// Serde for bytes as lowercase hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex string of odd length"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("invalid hex digit"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation_totals;
    use crate::range::tests::{T0, history, staging};
    use std::fs;

    #[tokio::test]
    async fn totals_become_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(dir.path()).await;
        let ops = operation_totals(&h, &staging(), (T0, T0 + 60))
            .await
            .unwrap();
        let b = Baseline::from_totals(
            "staging-v1",
            BTreeMap::from([
                ("service".into(), "checkout".into()),
                ("env".into(), "staging".into()),
            ]),
            (T0, T0 + 60),
            T0 + 100,
            ops,
            Vec::new(),
            100,
        )
        .unwrap();
        assert_eq!((b.total.requests, b.total.errors), (210, 3));
        assert_eq!(b.total.decode_sketch().unwrap().count(), 210);
        assert_eq!(b.cohort(Some("POST /pay")).unwrap().requests, 10);
        assert!(b.cohort(Some("GET /nope")).is_none());
        assert_eq!(b.selector_text(), "service=checkout,env=staging");
    }

    #[tokio::test]
    async fn empty_or_thin_ranges_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(dir.path()).await;
        let sel = BTreeMap::from([("service".into(), "checkout".into())]);
        let cases: &[((i64, i64), u64, &str)] = &[
            (
                (T0 - 7200, T0 - 3600),
                1,
                "no requests for service=checkout between 2025-11-24T14:00:00Z and 2025-11-24T15:00:00Z",
            ),
            (
                (T0 + 3600, T0 + 3660),
                100,
                "only 5 requests for service=checkout",
            ),
        ];
        for &(range, min, want) in cases {
            let ops = operation_totals(&h, &[("service".into(), "checkout".into())], range)
                .await
                .unwrap();
            let err = Baseline::from_totals("b", sel.clone(), range, T0, ops, Vec::new(), min)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn store_roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = &Store::local(dir.path());
        let mut s = Sketch::new();
        s.record(5_000_000);
        let ops = vec![CohortTotals {
            operation: Some("GET /".into()),
            requests: 1,
            errors: 0,
            latency_sum_ms: 5.0,
            sketch: s.encoded(),
        }];
        let b = Baseline::from_totals(
            "pre-release.v1",
            BTreeMap::from([("service".into(), "a".into())]),
            (T0, T0 + 60),
            T0 + 60,
            ops,
            Vec::new(),
            1,
        )
        .unwrap();
        assert_eq!(list(root).unwrap(), Vec::<String>::new());
        let path = save(root, &b, false).unwrap();
        assert_eq!(path, dir.path().join("baselines/pre-release.v1.json"));
        assert_eq!(load(root, "pre-release.v1").unwrap(), b);
        assert!(matches!(
            save(root, &b, false),
            Err(BaselineError::Exists(_))
        ));
        save(root, &b, true).unwrap();
        assert_eq!(list(root).unwrap(), vec!["pre-release.v1".to_string()]);
        // No temporary file is left behind.
        assert_eq!(
            fs::read_dir(dir.path().join(BASELINES_DIR))
                .unwrap()
                .count(),
            1
        );

        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(
                matches!(validate_name(bad), Err(BaselineError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            load(root, "missing"),
            Err(BaselineError::NotFound(_))
        ));

        // Corrupt files are refused at load with the reason.
        let cases = [
            ("garbage", "not json".to_string(), "expected ident"),
            (
                "renamed",
                fs::read_to_string(&path).unwrap(),
                "names baseline \"pre-release.v1\"",
            ),
            (
                "badsketch",
                fs::read_to_string(&path)
                    .unwrap()
                    .replace("\"pre-release.v1\"", "\"badsketch\"")
                    .replacen(&hex(&s.encoded()), "ff", 1),
                "invalid sketch",
            ),
        ];
        for (name, text, want) in cases {
            fs::write(
                dir.path().join(BASELINES_DIR).join(format!("{name}.json")),
                text,
            )
            .unwrap();
            let err = load(root, name).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        delete(root, "pre-release.v1").unwrap();
        assert!(matches!(
            delete(root, "pre-release.v1"),
            Err(BaselineError::NotFound(_))
        ));
        assert!(!list(root).unwrap().contains(&"pre-release.v1".to_string()));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
