//! Range queries over the history: what the reports, baselines and the API ask of a time range
//! `[from, to)` — per-operation totals with merged sketches, request and error counts per slot,
//! and rows of the document tables. Each filters on the `date` partition first, so a range
//! reads only the days it covers.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimestampMillisecondType, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, col, lit};
use slogate_sketch::Sketch;

use crate::HistoryError;
use crate::baseline::{BaselineError, CohortTotals, MAX_METRIC_SERIES, MAX_OPERATIONS};
use crate::query::History;
use crate::schema::{partition_of, rfc3339};
use crate::writer::{METRICS_TABLE, REQUESTS_TABLE};
use slogate_core::MetricSlotRecord;
use std::collections::BTreeMap;

fn ts(unix: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(unix.saturating_mul(1000)),
        Some("UTC".into()),
    ))
}

/// The `requests` rows of `matchers` with `slot_start` in `[from, to)`, as a DataFrame; the
/// date partition filter prunes whole directories first.
async fn selected(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
) -> Result<datafusion::dataframe::DataFrame, HistoryError> {
    selected_in(history, REQUESTS_TABLE, matchers, range).await
}

/// The rows of `table` (`requests` or `metrics`) of `matchers` with `slot_start` in
/// `[from, to)`. Metric streams have no operation: an `operation` matcher does not narrow them.
async fn selected_in(
    history: &History,
    table: &str,
    matchers: &[(String, String)],
    (from_unix, to_unix): (i64, i64),
) -> Result<datafusion::dataframe::DataFrame, HistoryError> {
    if to_unix <= from_unix {
        return Err(HistoryError::Config(format!(
            "time range is empty: {} is not before {}",
            rfc3339(from_unix),
            rfc3339(to_unix)
        )));
    }
    let (from_date, _) = partition_of(from_unix);
    let (to_date, _) = partition_of(to_unix);
    let mut df = history
        .context()
        .table(table)
        .await
        .map_err(HistoryError::Query)?;
    let mut filter = col("date")
        .gt_eq(lit(from_date))
        .and(col("date").lt_eq(lit(to_date)))
        .and(col("slot_start").gt_eq(ts(from_unix)))
        .and(col("slot_start").lt(ts(to_unix)));
    for (dim, value) in matchers {
        if table == METRICS_TABLE && dim == "operation" {
            continue;
        }
        let known = crate::schema::FIXED_DIMS.contains(&dim.as_str())
            || (!crate::schema::RESERVED_COLUMNS.contains(&dim.as_str())
                && df.schema().has_column_with_unqualified_name(dim));
        if !known {
            return Err(HistoryError::Config(format!(
                "unknown dimension `{dim}` (known: service, env, version, operation and the configured extras)"
            )));
        }
        filter = filter.and(datafusion::logical_expr::ident(dim).eq(lit(value.clone())));
    }
    df = df.filter(filter).map_err(HistoryError::Query)?;
    Ok(df)
}

fn u64_col(
    batch: &datafusion::arrow::array::RecordBatch,
    i: usize,
) -> Result<Vec<u64>, HistoryError> {
    let c = cast(batch.column(i), &DataType::UInt64).map_err(|e| HistoryError::Query(e.into()))?;
    let a = c.as_primitive::<UInt64Type>();
    Ok((0..a.len())
        .map(|r| if a.is_valid(r) { a.value(r) } else { 0 })
        .collect())
}

/// Per-operation totals (requests, errors, latency sum and the merged sketch) of the series
/// matching `matchers` with `slot_start` in `[from, to)`. At most [`MAX_OPERATIONS`] + 1 rows
/// are read; more than that is [`BaselineError::TooManyOperations`].
pub async fn operation_totals(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
) -> Result<Vec<CohortTotals>, BaselineError> {
    let merge = history
        .context()
        .udaf("sketch_merge")
        .map_err(|e| BaselineError::History(HistoryError::Query(e)))?;
    let df = selected(history, matchers, range)
        .await?
        .aggregate(
            vec![col("operation")],
            vec![
                sum(col("requests")).alias("requests"),
                sum(col("errors")).alias("errors"),
                sum(col("latency_sum_ms")).alias("latency_sum_ms"),
                merge.call(vec![col("sketch")]).alias("sketch"),
            ],
        )
        .and_then(|df| df.limit(0, Some(MAX_OPERATIONS + 1)))
        .map_err(|e| BaselineError::History(HistoryError::Query(e)))?;
    let batches = crate::query::collect(df)
        .await
        .map_err(BaselineError::History)?;
    let mut out = Vec::new();
    for b in &batches {
        let op = cast(b.column(0), &DataType::Utf8).map_err(|e| HistoryError::Query(e.into()))?;
        let op = op.as_string::<i32>();
        let requests = u64_col(b, 1)?;
        let errors = u64_col(b, 2)?;
        let lat =
            cast(b.column(3), &DataType::Float64).map_err(|e| HistoryError::Query(e.into()))?;
        let lat = lat.as_primitive::<Float64Type>();
        let sk = cast(b.column(4), &DataType::Binary).map_err(|e| HistoryError::Query(e.into()))?;
        let sk = sk.as_binary::<i32>();
        for r in 0..b.num_rows() {
            out.push(CohortTotals {
                operation: Some(op.value(r).to_string()),
                requests: requests[r],
                errors: errors[r],
                latency_sum_ms: if lat.is_valid(r) { lat.value(r) } else { 0.0 },
                sketch: if sk.is_valid(r) {
                    sk.value(r).to_vec()
                } else {
                    Sketch::new().encoded()
                },
            });
        }
    }
    if out.len() > MAX_OPERATIONS {
        return Err(BaselineError::TooManyOperations { count: out.len() });
    }
    out.sort_by(|a, b| a.operation.cmp(&b.operation));
    Ok(out)
}

/// The OTLP metric streams matching `matchers` (service, env, version, extras; an `operation`
/// matcher is ignored) with `slot_start` in `[from, to)`, each of its slots merged into one
/// record: points, increases and sums added, min and max kept, `last` the value of the latest
/// point, sketches merged; `slot_start_unix` is the first slot's start and `slot_seconds` the
/// time from there to the end of the last slot. Sorted by metric, then the rest of the stream's
/// identity. Rows are read as a stream, so memory is bounded by the streams, at most
/// [`MAX_METRIC_SERIES`] (more is [`BaselineError::TooManyMetricSeries`]).
pub async fn metric_totals(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
) -> Result<Vec<MetricSlotRecord>, BaselineError> {
    use futures::StreamExt;
    type Identity = (
        String,
        String,
        String,
        String,
        Vec<String>,
        String,
        Vec<(String, String)>,
    );
    use futures::FutureExt;
    let df = selected_in(history, METRICS_TABLE, matchers, range).await?;
    let extra = history.extra_dims().to_vec();
    let mut merged: BTreeMap<Identity, (MetricSlotRecord, i64, Sketch)> = BTreeMap::new();
    let read = async {
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| BaselineError::History(HistoryError::Query(e)))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| BaselineError::History(HistoryError::Query(e)))?;
            for row in crate::schema::batch_to_metric_rows(&batch, &extra)? {
                let end = row.slot_start_unix + i64::from(row.slot_seconds);
                let sketch = if row.sketch.is_empty() {
                    Sketch::new()
                } else {
                    Sketch::decode(&row.sketch).map_err(|e| BaselineError::Corrupt {
                        path: METRICS_TABLE.into(),
                        message: format!("invalid sketch of metric {}: {e}", row.metric),
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
                            return Err(BaselineError::TooManyMetricSeries);
                        }
                        merged.insert(id, (row, end, sketch));
                    }
                }
            }
        }
        Ok::<(), BaselineError>(())
    };
    match std::panic::AssertUnwindSafe(read).catch_unwind().await {
        Ok(result) => result?,
        Err(_) => {
            return Err(BaselineError::History(HistoryError::Corrupt(
                "the query panicked while reading the history (a corrupt file?)".to_string(),
            )));
        }
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
/// `[from, to)`, ordered by time: `(slot_start_unix, requests, errors)`. At most `max_rows`.
pub async fn slot_counts(
    history: &History,
    matchers: &[(String, String)],
    range: (i64, i64),
    max_rows: usize,
) -> Result<Vec<(i64, u64, u64)>, HistoryError> {
    let df = selected(history, matchers, range)
        .await?
        .aggregate(
            vec![col("slot_start")],
            vec![
                sum(col("requests")).alias("requests"),
                sum(col("errors")).alias("errors"),
            ],
        )
        .and_then(|df| df.sort(vec![col("slot_start").sort(true, false)]))
        .and_then(|df| df.limit(0, Some(max_rows)))
        .map_err(HistoryError::Query)?;
    let batches = crate::query::collect(df).await?;
    let mut out = Vec::new();
    for b in &batches {
        let at = b.column(0).as_primitive::<TimestampMillisecondType>();
        let requests = u64_col(b, 1)?;
        let errors = u64_col(b, 2)?;
        for r in 0..b.num_rows() {
            out.push((at.value(r).div_euclid(1000), requests[r], errors[r]));
        }
    }
    Ok(out)
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
    (from_unix, to_unix): (i64, i64),
    max_rows: usize,
    with_doc: bool,
    newest_first: bool,
) -> Result<Vec<DocEntry>, HistoryError> {
    let (name_col, status_col) = table.columns();
    let (from_date, _) = partition_of(from_unix);
    let (to_date, _) = partition_of(to_unix);
    let mut cols = vec![col("at"), col(status_col)];
    if with_doc {
        cols.push(col("doc"));
    }
    let df = history
        .context()
        .table(table.name())
        .await
        .and_then(|df| {
            df.filter(
                col("date")
                    .gt_eq(lit(from_date))
                    .and(col("date").lt_eq(lit(to_date)))
                    .and(col("at").gt_eq(ts(from_unix)))
                    .and(col("at").lt(ts(to_unix)))
                    .and(col(name_col).eq(lit(name.to_string()))),
            )?
            .select(cols)?
            .sort(vec![col("at").sort(!newest_first, false)])?
            .limit(0, Some(max_rows))
        })
        .map_err(HistoryError::Query)?;
    let batches = crate::query::collect(df).await?;
    let mut out = Vec::new();
    for b in &batches {
        let at = b.column(0).as_primitive::<TimestampMillisecondType>();
        let status =
            cast(b.column(1), &DataType::Utf8).map_err(|e| HistoryError::Query(e.into()))?;
        let status = status.as_string::<i32>();
        let doc = match with_doc {
            true => Some(
                cast(b.column(2), &DataType::Utf8).map_err(|e| HistoryError::Query(e.into()))?,
            ),
            false => None,
        };
        for r in 0..b.num_rows() {
            out.push(DocEntry {
                at_unix_ms: at.value(r),
                status: status.value(r).to_string(),
                doc: doc
                    .as_ref()
                    .map(|d| d.as_string::<i32>().value(r).to_string()),
            });
        }
    }
    Ok(out)
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
