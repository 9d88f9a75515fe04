//! Range queries over the history: what the reports, baselines and the API ask of a time range
//! `[from, to)` — per-operation totals with merged sketches, request and error counts per slot,
//! the metric streams merged over the range, and rows of the document tables.
//!
//! They read the Parquet files themselves, not through the SQL engine: only the hour
//! partitions that overlap the range are listed and read, each file whole and checked as the
//! reload checks it (an unreadable file is an error naming it, never a silently smaller
//! answer), rows filtered and folded as they are decoded, so memory is bounded by the answer.

use crate::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use crate::arrow::compute::cast;
use crate::arrow::datatypes::{
    DataType, Float64Type, TimeUnit, TimestampMillisecondType, UInt64Type,
};
use slogate_sketch::Sketch;

use crate::HistoryError;
use crate::baseline::{BaselineError, CohortTotals, MAX_METRIC_SERIES, MAX_OPERATIONS};
use crate::quarantine::read_checked;
use crate::query::{History, partition_of_key};
use crate::schema::{FIXED_DIMS, rfc3339};
use crate::store::Store;
use crate::writer::{METRICS_TABLE, REQUESTS_TABLE};
use slogate_core::MetricSlotRecord;
use std::collections::{BTreeMap, HashMap};

/// Checks the range and the matchers' dimensions; for `metrics`, drops an `operation` matcher
/// (metric streams have none).
fn check(
    history: &History,
    table: &str,
    matchers: &[(String, String)],
    (from_unix, to_unix): (i64, i64),
) -> Result<Vec<(String, String)>, HistoryError> {
    if to_unix <= from_unix {
        return Err(HistoryError::Config(format!(
            "time range is empty: {} is not before {}",
            rfc3339(from_unix),
            rfc3339(to_unix)
        )));
    }
    let mut out = Vec::new();
    for (dim, value) in matchers {
        if table == METRICS_TABLE && dim == "operation" {
            continue;
        }
        let known = FIXED_DIMS.contains(&dim.as_str()) || history.extra_dims().contains(dim);
        if !known {
            return Err(HistoryError::Config(format!(
                "unknown dimension `{dim}` (known: service, env, version, operation and the configured extras)"
            )));
        }
        out.push((dim.clone(), value.clone()));
    }
    Ok(out)
}

/// Reads every file of `table` in the hour partitions that overlap `[from, to)` (a blocking
/// task, under the store's swap lock so that a compaction does not swap files mid-read) and
/// folds each file's batches into `acc` with `f`.
async fn scan<T: Send + 'static>(
    history: &History,
    table: &'static str,
    (from_unix, to_unix): (i64, i64),
    acc: T,
    mut f: impl FnMut(&mut T, &RecordBatch) -> Result<(), HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    let shared = history.store().swap_lock().read_owned().await;
    let store: Store = history.store().clone();
    tokio::task::spawn_blocking(move || {
        let _shared = shared;
        let mut acc = acc;
        for entry in store.list(table)? {
            let Some(hour) = partition_of_key(&entry.key) else {
                continue;
            };
            if !entry.key.ends_with(".parquet")
                || hour >= to_unix
                || hour.saturating_add(3600) <= from_unix
            {
                continue;
            }
            let Some(bytes) = store.get(&entry.key)? else {
                // Gone since the listing: compacted or expired meanwhile.
                continue;
            };
            let batches = read_checked(&entry.key, bytes).map_err(|reason| {
                HistoryError::Corrupt(format!(
                    "history file {} is unreadable: {reason}",
                    entry.key
                ))
            })?;
            for b in &batches {
                f(&mut acc, b)?;
            }
        }
        Ok(acc)
    })
    .await
    .map_err(|e| HistoryError::Corrupt(format!("reading the history failed: {e}")))?
}

/// Column `name` of `batch` as `ty`; `None` when the file predates it (an extra dimension
/// configured later reads as empty).
fn column(
    batch: &RecordBatch,
    name: &str,
    ty: &DataType,
) -> Result<Option<ArrayRef>, HistoryError> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let c = if c.data_type() == ty {
        c.clone()
    } else {
        cast(c, ty).map_err(|e| HistoryError::Corrupt(format!("column {name}: {e}")))?
    };
    Ok(Some(c))
}

fn required(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef, HistoryError> {
    column(batch, name, ty)?
        .ok_or_else(|| HistoryError::Corrupt(format!("column {name} is missing")))
}

/// The rows of `batch` with `time_col` (milliseconds) in `[from, to)` whose dimensions match.
fn selected_rows(
    batch: &RecordBatch,
    time_col: &str,
    matchers: &[(String, String)],
    (from_unix, to_unix): (i64, i64),
) -> Result<Vec<usize>, HistoryError> {
    let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let at = required(batch, time_col, &ms)?;
    let at = at.as_primitive::<TimestampMillisecondType>();
    let (lo, hi) = (from_unix.saturating_mul(1000), to_unix.saturating_mul(1000));
    let mut dims = Vec::with_capacity(matchers.len());
    for (dim, want) in matchers {
        dims.push((column(batch, dim, &DataType::Utf8)?, want.as_str()));
    }
    let mut rows = Vec::new();
    for r in 0..batch.num_rows() {
        let t = at.value(r);
        if t < lo || t >= hi {
            continue;
        }
        let matched = dims.iter().all(|(c, want)| match c {
            Some(c) => c.as_string::<i32>().value(r) == *want,
            None => want.is_empty(),
        });
        if matched {
            rows.push(r);
        }
    }
    Ok(rows)
}

/// Per-operation totals (requests, errors, latency sum and the merged sketch) of the series
/// matching `matchers` with `slot_start` in `[from, to)`. More than [`MAX_OPERATIONS`]
/// operations is [`BaselineError::TooManyOperations`].
pub async fn operation_totals(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
) -> Result<Vec<CohortTotals>, BaselineError> {
    let matchers = check(history, REQUESTS_TABLE, matchers, range)?;
    type Acc = (HashMap<String, (CohortTotals, Sketch)>, bool);
    let (ops, too_many) = scan(
        history,
        REQUESTS_TABLE,
        range,
        Acc::default(),
        move |(ops, too_many), b| {
            let rows = selected_rows(b, "slot_start", &matchers, range)?;
            if rows.is_empty() {
                return Ok(());
            }
            let op = column(b, "operation", &DataType::Utf8)?;
            let requests = required(b, "requests", &DataType::UInt64)?;
            let errors = required(b, "errors", &DataType::UInt64)?;
            let lat = required(b, "latency_sum_ms", &DataType::Float64)?;
            let sk = required(b, "sketch", &DataType::Binary)?;
            let (requests, errors) = (
                requests.as_primitive::<UInt64Type>(),
                errors.as_primitive::<UInt64Type>(),
            );
            let (lat, sk) = (lat.as_primitive::<Float64Type>(), sk.as_binary::<i32>());
            for r in rows {
                let name = op.as_ref().map_or("", |c| c.as_string::<i32>().value(r));
                if !ops.contains_key(name) {
                    if ops.len() >= MAX_OPERATIONS {
                        *too_many = true;
                        continue;
                    }
                    ops.insert(
                        name.to_string(),
                        (
                            CohortTotals {
                                operation: Some(name.to_string()),
                                requests: 0,
                                errors: 0,
                                latency_sum_ms: 0.0,
                                sketch: Vec::new(),
                            },
                            Sketch::new(),
                        ),
                    );
                }
                let (t, sketch) = ops.get_mut(name).expect("inserted above");
                t.requests = t.requests.saturating_add(requests.value(r));
                t.errors = t.errors.saturating_add(errors.value(r));
                t.latency_sum_ms += lat.value(r);
                sketch.merge_encoded(sk.value(r)).map_err(|e| {
                    HistoryError::Corrupt(format!("invalid sketch in the requests table: {e}"))
                })?;
            }
            Ok(())
        },
    )
    .await?;
    if too_many {
        return Err(BaselineError::TooManyOperations {
            count: MAX_OPERATIONS + 1,
        });
    }
    let mut out: Vec<CohortTotals> = ops
        .into_values()
        .map(|(mut t, sketch)| {
            t.sketch = sketch.encoded();
            t
        })
        .collect();
    out.sort_by(|a, b| a.operation.cmp(&b.operation));
    Ok(out)
}

/// The OTLP metric streams matching `matchers` (service, env, version, extras; an `operation`
/// matcher is ignored) with `slot_start` in `[from, to)`, each of its slots merged into one
/// record: points, increases and sums added, min and max kept, `last` the value of the latest
/// point, sketches merged; `slot_start_unix` is the first slot's start and `slot_seconds` the
/// time from there to the end of the last slot. Sorted by metric, then the rest of the stream's
/// identity. At most [`MAX_METRIC_SERIES`] streams (more is
/// [`BaselineError::TooManyMetricSeries`]).
pub async fn metric_totals(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
) -> Result<Vec<MetricSlotRecord>, BaselineError> {
    type Identity = (
        String,
        String,
        String,
        String,
        Vec<String>,
        String,
        Vec<(String, String)>,
    );
    type Acc = (BTreeMap<Identity, (MetricSlotRecord, i64, Sketch)>, bool);
    let matchers = check(history, METRICS_TABLE, matchers, range)?;
    let extra = history.extra_dims().to_vec();
    let (merged, too_many) = scan(
        history,
        METRICS_TABLE,
        range,
        Acc::default(),
        move |(merged, too_many), b| {
            let rows = selected_rows(b, "slot_start", &matchers, range)?;
            if rows.is_empty() {
                return Ok(());
            }
            let all = crate::query::pad_extra_dims(b, &extra)
                .and_then(|b| {
                    crate::schema::batch_to_metric_rows(&b, &extra).map_err(|e| e.to_string())
                })
                .map_err(HistoryError::Corrupt)?;
            let mut rows = rows.into_iter().peekable();
            for (i, row) in all.into_iter().enumerate() {
                if rows.next_if_eq(&i).is_none() {
                    continue;
                }
                let end = row.slot_start_unix + i64::from(row.slot_seconds);
                let sketch = if row.sketch.is_empty() {
                    Sketch::new()
                } else {
                    Sketch::decode(&row.sketch).map_err(|e| {
                        HistoryError::Corrupt(format!(
                            "invalid sketch of metric {}: {e}",
                            row.metric
                        ))
                    })?
                };
                let id: Identity = (
                    row.metric.clone(),
                    row.env.clone(),
                    row.version.clone(),
                    row.instance.clone(),
                    row.extras.clone(),
                    row.kind.clone(),
                    row.attributes.clone(),
                );
                match merged.get_mut(&id) {
                    Some((m, m_end, m_sketch)) => {
                        if row.last_time_unix_nano >= m.last_time_unix_nano {
                            m.last = row.last;
                            m.last_time_unix_nano = row.last_time_unix_nano;
                        }
                        if m.points == 0 {
                            (m.min, m.max) = (row.min, row.max);
                        } else if row.points > 0 {
                            m.min = m.min.min(row.min);
                            m.max = m.max.max(row.max);
                        }
                        m.slot_start_unix = m.slot_start_unix.min(row.slot_start_unix);
                        *m_end = (*m_end).max(end);
                        m.points += row.points;
                        m.value_sum += row.value_sum;
                        m.increase += row.increase;
                        m.hist_sum += row.hist_sum;
                        m_sketch.merge(&sketch);
                    }
                    None => {
                        if merged.len() >= MAX_METRIC_SERIES {
                            *too_many = true;
                        } else {
                            merged.insert(id, (row, end, sketch));
                        }
                    }
                }
            }
            Ok(())
        },
    )
    .await?;
    if too_many {
        return Err(BaselineError::TooManyMetricSeries);
    }
    Ok(merged
        .into_values()
        .map(|(mut m, end, sketch)| {
            m.slot_seconds = u32::try_from(end - m.slot_start_unix).unwrap_or(u32::MAX);
            m.sketch = if sketch.count() > 0 || !m.sketch.is_empty() {
                sketch.encoded()
            } else {
                Vec::new()
            };
            m
        })
        .collect())
}

/// Requests and errors per slot start (summed over the matching series) with `slot_start` in
/// `[from, to)`, ordered by time: `(slot_start_unix, requests, errors)`. At most `max_rows`,
/// the oldest.
pub async fn slot_counts(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
    max_rows: usize,
) -> Result<Vec<(i64, u64, u64)>, HistoryError> {
    let matchers = check(history, REQUESTS_TABLE, matchers, range)?;
    let slots = scan(
        history,
        REQUESTS_TABLE,
        range,
        BTreeMap::<i64, (u64, u64)>::new(),
        move |slots, b| {
            let rows = selected_rows(b, "slot_start", &matchers, range)?;
            if rows.is_empty() {
                return Ok(());
            }
            let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let at = required(b, "slot_start", &ms)?;
            let at = at.as_primitive::<TimestampMillisecondType>();
            let requests = required(b, "requests", &DataType::UInt64)?;
            let errors = required(b, "errors", &DataType::UInt64)?;
            let (requests, errors) = (
                requests.as_primitive::<UInt64Type>(),
                errors.as_primitive::<UInt64Type>(),
            );
            for r in rows {
                let e = slots.entry(at.value(r).div_euclid(1000)).or_default();
                e.0 = e.0.saturating_add(requests.value(r));
                e.1 = e.1.saturating_add(errors.value(r));
            }
            // Only the oldest `max_rows` slots are answered: forget the rest as it comes.
            while slots.len() > max_rows {
                slots.pop_last();
            }
            Ok(())
        },
    )
    .await?;
    Ok(slots.into_iter().map(|(t, (r, e))| (t, r, e)).collect())
}

/// One row of a document table read by [`doc_rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct DocEntry {
    pub at_unix_ms: i64,
    /// The status column (`verdict` of `verdicts`, `outcome` of `alerts`).
    pub status: String,
    /// The JSON document, when asked for.
    pub doc: Option<String>,
}

/// Rows of a document table whose name column is `name`, with `at` in `[from, to)`, oldest
/// first (or newest first), at most `max_rows`; the documents themselves only `with_doc`.
pub async fn doc_rows(
    history: &History,
    table: crate::DocTable,
    name: &str,
    range: (i64, i64),
    max_rows: usize,
    with_doc: bool,
    newest_first: bool,
) -> Result<Vec<DocEntry>, HistoryError> {
    let (name_col, status_col) = table.columns();
    let matchers = vec![(name_col.to_string(), name.to_string())];
    if range.1 <= range.0 {
        return Err(HistoryError::Config(format!(
            "time range is empty: {} is not before {}",
            rfc3339(range.0),
            rfc3339(range.1)
        )));
    }
    let key = move |e: &DocEntry| {
        if newest_first {
            -e.at_unix_ms
        } else {
            e.at_unix_ms
        }
    };
    let mut out = scan(
        history,
        table.name(),
        range,
        Vec::<DocEntry>::new(),
        move |out, b| {
            let rows = selected_rows(b, "at", &matchers, range)?;
            if rows.is_empty() {
                return Ok(());
            }
            let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let at = required(b, "at", &ms)?;
            let at = at.as_primitive::<TimestampMillisecondType>();
            let status = required(b, status_col, &DataType::Utf8)?;
            let status = status.as_string::<i32>();
            let doc = if with_doc {
                Some(required(b, "doc", &DataType::Utf8)?)
            } else {
                None
            };
            for r in rows {
                out.push(DocEntry {
                    at_unix_ms: at.value(r),
                    status: status.value(r).to_string(),
                    doc: doc
                        .as_ref()
                        .map(|d| d.as_string::<i32>().value(r).to_string()),
                });
            }
            // Keep memory bounded by the answer: trim to the `max_rows` first in order.
            if out.len() > max_rows.saturating_mul(2).max(1024) {
                out.sort_by_key(key);
                out.truncate(max_rows);
            }
            Ok(())
        },
    )
    .await?;
    out.sort_by_key(key);
    out.truncate(max_rows);
    Ok(out)
}

/// The documents of `table`, newest first, at most `max`: what a restart reads back into its
/// verdict log.
pub async fn newest_docs(
    history: &History,
    table: crate::DocTable,
    max: usize,
) -> Result<Vec<String>, HistoryError> {
    let everything = (0, i64::MAX / 1000);
    let mut out = scan(
        history,
        table.name(),
        everything,
        Vec::<(i64, String)>::new(),
        move |out, b| {
            let rows = selected_rows(b, "at", &[], everything)?;
            let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let at = required(b, "at", &ms)?;
            let at = at.as_primitive::<TimestampMillisecondType>();
            let doc = required(b, "doc", &DataType::Utf8)?;
            let doc = doc.as_string::<i32>();
            out.extend(
                rows.into_iter()
                    .map(|r| (at.value(r), doc.value(r).to_string())),
            );
            if out.len() > max.saturating_mul(2).max(1024) {
                out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
                out.truncate(max);
            }
            Ok(())
        },
    )
    .await?;
    out.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    out.truncate(max);
    Ok(out.into_iter().map(|(_, d)| d).collect())
}

/// The newest document of each name (the table's name column: a gate, an alert's key) in
/// `table`, the most recent `max` of them; `true` when there were more names.
pub async fn last_doc_per_name(
    history: &History,
    table: crate::DocTable,
    max: usize,
) -> Result<(Vec<String>, bool), HistoryError> {
    let everything = (0, i64::MAX / 1000);
    let (name_col, _) = table.columns();
    let last = scan(
        history,
        table.name(),
        everything,
        HashMap::<String, (i64, String)>::new(),
        move |last, b| {
            let rows = selected_rows(b, "at", &[], everything)?;
            let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let at = required(b, "at", &ms)?;
            let at = at.as_primitive::<TimestampMillisecondType>();
            let name = required(b, name_col, &DataType::Utf8)?;
            let name = name.as_string::<i32>();
            let doc = required(b, "doc", &DataType::Utf8)?;
            let doc = doc.as_string::<i32>();
            for r in rows {
                let t = at.value(r);
                match last.get_mut(name.value(r)) {
                    Some(e) if e.0 >= t => {}
                    Some(e) => *e = (t, doc.value(r).to_string()),
                    None => {
                        last.insert(name.value(r).to_string(), (t, doc.value(r).to_string()));
                    }
                }
            }
            Ok(())
        },
    )
    .await?;
    let more = last.len() > max;
    let mut newest: Vec<(i64, String)> = last.into_values().collect();
    newest.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    newest.truncate(max);
    Ok((newest.into_iter().map(|(_, d)| d).collect(), more))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Also the fixture of the baseline tests.

    use super::*;
    use crate::{HistoryWriter, WriterConfig};
    use slogate_core::{SeriesKey, SlotRecord};
    use std::path::Path;

    pub(crate) const T0: i64 = 1_764_000_000;

    fn row(slot: i64, env: &str, op: &str, latencies_ms: &[u64], errors: u64) -> SlotRecord {
        let mut s = Sketch::new();
        for &ms in latencies_ms {
            s.record(ms * 1_000_000);
        }
        SlotRecord {
            slot_start_unix: slot,
            slot_seconds: 10,
            key: SeriesKey {
                service: "checkout".into(),
                env: env.into(),
                version: "v1".into(),
                operation: op.into(),
                extras: vec![],
            },
            requests: latencies_ms.len() as u64,
            errors,
            latency_sum_ns: latencies_ms.iter().sum::<u64>() * 1_000_000,
            latency_min_ns: latencies_ms.iter().min().copied().unwrap_or(0) * 1_000_000,
            latency_max_ns: latencies_ms.iter().max().copied().unwrap_or(0) * 1_000_000,
            sketch: s.encoded(),
        }
    }

    /// Two operations in staging over two slots, one in prod, and one staging row outside the
    /// range (an hour later, in another partition).
    pub(crate) async fn history(dir: &Path) -> History {
        let mut w = HistoryWriter::new(WriterConfig::new(dir, vec![])).unwrap();
        let lat: Vec<u64> = (1..=100).collect();
        for r in [
            row(T0, "staging", "GET /cart", &lat, 2),
            row(T0 + 10, "staging", "GET /cart", &lat, 1),
            row(T0, "staging", "POST /pay", &[500; 10], 0),
            row(T0, "prod", "GET /cart", &[1; 50], 50),
            row(T0 + 3600, "staging", "GET /cart", &[9_000; 5], 5),
        ] {
            w.append(r).unwrap();
        }
        w.flush().unwrap();
        History::open(dir, &[]).await.unwrap()
    }

    pub(crate) fn staging() -> Vec<(String, String)> {
        vec![
            ("service".into(), "checkout".into()),
            ("env".into(), "staging".into()),
        ]
    }

    /// Only the hour partitions of the range are read; a damaged file among them is an error
    /// naming it, never a smaller answer.
    #[tokio::test]
    async fn ranges_read_their_partitions_and_refuse_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(dir.path()).await;
        let (date, hour) = crate::schema::partition_of(T0 + 7200);
        let far = dir.path().join(format!("requests/date={date}/hour={hour}"));
        std::fs::create_dir_all(&far).unwrap();
        std::fs::write(far.join("part-1-1.parquet"), b"not parquet").unwrap();
        // Two hours later: outside the range, not read.
        let ops = operation_totals(&h, &staging(), (T0, T0 + 60))
            .await
            .unwrap();
        assert_eq!(ops.iter().map(|o| o.requests).sum::<u64>(), 210);
        let err = operation_totals(&h, &staging(), (T0, T0 + 7300))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("part-1-1.parquet") && err.contains("unreadable"),
            "{err}"
        );
        let err = slot_counts(&h, &staging(), (T0 + 3600, T0 + 7300), 10)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("part-1-1.parquet"), "{err}");
        // The oldest `max_rows` slots.
        let counts = slot_counts(&h, &staging(), (T0, T0 + 3700), 2)
            .await
            .unwrap();
        assert_eq!(counts, vec![(T0, 110, 2), (T0 + 10, 100, 1)]);
    }

    /// What a restart reads back: the newest verdicts, and each alert's last transition.
    #[tokio::test]
    async fn newest_documents_and_the_last_one_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = crate::DocWriter::new(dir.path(), crate::DocTable::Alerts, 1000).unwrap();
        // Two flushes: two files, the later one holding older rows of `a`.
        for (at, rule, n) in [(3, "a", 3), (5, "b", 5), (1, "c", 1)] {
            w.append(crate::DocRow {
                at_unix_ms: T0 * 1000 + at,
                name: rule.into(),
                status: "fired".into(),
                doc: serde_json::json!({ "n": n }),
            })
            .unwrap();
        }
        w.flush().unwrap();
        for (at, rule, n) in [(2, "a", 2), (4, "c", 4)] {
            w.append(crate::DocRow {
                at_unix_ms: T0 * 1000 + at,
                name: rule.into(),
                status: "resolved".into(),
                doc: serde_json::json!({ "n": n }),
            })
            .unwrap();
        }
        w.flush().unwrap();
        let h = History::open(dir.path(), &[]).await.unwrap();
        let n = |docs: &[String]| -> Vec<i64> {
            docs.iter()
                .map(|d| {
                    serde_json::from_str::<serde_json::Value>(d).unwrap()["n"]
                        .as_i64()
                        .unwrap()
                })
                .collect()
        };
        let newest = newest_docs(&h, crate::DocTable::Alerts, 3).await.unwrap();
        assert_eq!(n(&newest), [5, 4, 3]);
        let (last, more) = last_doc_per_name(&h, crate::DocTable::Alerts, 10)
            .await
            .unwrap();
        assert_eq!((n(&last), more), (vec![5, 4, 3], false));
        let (last, more) = last_doc_per_name(&h, crate::DocTable::Alerts, 2)
            .await
            .unwrap();
        assert_eq!((n(&last), more), (vec![5, 4], true));
    }

    #[tokio::test]
    async fn totals_merge_sketches_per_operation() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(dir.path()).await;
        let ops = operation_totals(&h, &staging(), (T0, T0 + 60))
            .await
            .unwrap();
        assert_eq!(ops.len(), 2, "{ops:?}");
        let cart = &ops[0];
        assert_eq!(cart.operation.as_deref(), Some("GET /cart"));
        assert_eq!((cart.requests, cart.errors), (200, 3));
        assert!((cart.mean_ms().unwrap() - 50.5).abs() < 1e-9);
        // p95 of the two slots together: the sketch merge, within the sketch's relative error.
        let p95 = cart.decode_sketch().unwrap().quantile(0.95).unwrap() as f64 / 1e6;
        assert!((p95 - 95.0).abs() / 95.0 < 0.01, "{p95}");
        assert_eq!((ops[1].requests, ops[1].errors), (10, 0));

        let counts = slot_counts(&h, &staging(), (T0, T0 + 7200), 100)
            .await
            .unwrap();
        assert_eq!(
            counts,
            vec![(T0, 110, 2), (T0 + 10, 100, 1), (T0 + 3600, 5, 5)]
        );

        let err = operation_totals(&h, &[("colour".into(), "red".into())], (T0, T0 + 60))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown dimension `colour`"),
            "{err}"
        );
        let err = operation_totals(&h, &staging(), (T0, T0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("time range is empty"), "{err}");
    }

    fn metric_row(
        slot: i64,
        env: &str,
        metric: &str,
        kind: &str,
        values: &[f64],
    ) -> MetricSlotRecord {
        let mut sk = Sketch::new();
        if kind == "histogram" {
            for v in values {
                sk.record((v * 1e6) as u64);
            }
        }
        MetricSlotRecord {
            slot_start_unix: slot,
            slot_seconds: 10,
            service: "checkout".into(),
            env: env.into(),
            version: "v1".into(),
            extras: vec![],
            instance: "pod-1".into(),
            metric: metric.into(),
            unit: if kind == "histogram" {
                "ms".into()
            } else {
                String::new()
            },
            kind: kind.into(),
            attributes: vec![("queue".into(), "jobs".into())],
            points: values.len() as u64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last: *values.last().unwrap(),
            value_sum: values.iter().sum(),
            last_time_unix_nano: (slot as u64 + 9) * 1_000_000_000,
            increase: if kind == "gauge" {
                0.0
            } else {
                values.len() as f64
            },
            hist_sum: if kind == "histogram" {
                values.iter().sum()
            } else {
                0.0
            },
            sketch: if kind == "histogram" {
                sk.encoded()
            } else {
                Vec::new()
            },
        }
    }

    #[tokio::test]
    async fn metric_streams_merge_over_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = crate::MetricWriter::new(WriterConfig::new(dir.path(), vec![])).unwrap();
        for r in [
            metric_row(T0 + 10, "staging", "queue.depth", "gauge", &[7.0, 3.0]),
            metric_row(T0, "staging", "queue.depth", "gauge", &[5.0, 9.0, 4.0]),
            metric_row(T0, "prod", "queue.depth", "gauge", &[500.0]),
            metric_row(T0, "staging", "job.duration", "histogram", &[10.0, 20.0]),
            metric_row(
                T0 + 20,
                "staging",
                "job.duration",
                "histogram",
                &[30.0, 40.0, 50.0],
            ),
            // Outside the range: an hour later.
            metric_row(T0 + 3600, "staging", "queue.depth", "gauge", &[1000.0]),
        ] {
            w.append(r).unwrap();
        }
        w.flush().unwrap();
        let h = History::open(dir.path(), &[]).await.unwrap();
        // An operation matcher does not narrow metric streams.
        let mut sel = staging();
        sel.push(("operation".into(), "GET /cart".into()));
        let got = metric_totals(&h, &sel, (T0, T0 + 60)).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        let (hist, gauge) = (&got[0], &got[1]);
        assert_eq!(
            (gauge.metric.as_str(), gauge.env.as_str()),
            ("queue.depth", "staging")
        );
        assert_eq!((gauge.slot_start_unix, gauge.slot_seconds), (T0, 20));
        assert_eq!(gauge.points, 5);
        assert_eq!((gauge.min, gauge.max, gauge.value_sum), (3.0, 9.0, 28.0));
        // The latest point's value, though its row came first.
        assert_eq!(gauge.last, 3.0);
        assert_eq!(gauge.last_time_unix_nano, (T0 as u64 + 19) * 1_000_000_000);
        assert!(gauge.sketch.is_empty());
        assert_eq!(hist.metric, "job.duration");
        assert_eq!((hist.slot_start_unix, hist.slot_seconds), (T0, 30));
        assert_eq!((hist.points, hist.increase, hist.hist_sum), (5, 5.0, 150.0));
        let sk = Sketch::decode(&hist.sketch).unwrap();
        assert_eq!(sk.count(), 5);
        let p50 = sk.quantile(0.5).unwrap() as f64 / 1e6;
        assert!((p50 - 30.0).abs() / 30.0 < 0.01, "{p50}");

        let err = metric_totals(&h, &[("colour".into(), "red".into())], (T0, T0 + 60))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown dimension `colour`"),
            "{err}"
        );
        // A baseline holds them and gives them back from its file.
        let b = crate::Baseline::from_totals(
            "metrics-only",
            BTreeMap::from([("service".into(), "checkout".into())]),
            (T0, T0 + 60),
            T0 + 60,
            Vec::new(),
            got.clone(),
            100,
        )
        .unwrap();
        let root = crate::Store::local(dir.path());
        crate::baseline::save(&root, &b, false).unwrap();
        let back = crate::baseline::load(&root, "metrics-only").unwrap();
        assert_eq!(back, b);
        assert_eq!(back.metrics, got);
    }
}
