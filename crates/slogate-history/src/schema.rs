//! The slot tables: `requests` (one row per [`SlotRecord`]) and `metrics` (one row per
//! [`MetricSlotRecord`]), their Arrow schemas ([`Table::schema`]) and conversion to and from
//! record batches.
//!
//! Latencies are nanoseconds in a [`SlotRecord`] and milliseconds (`f64`) in the table. Reading
//! back rounds milliseconds to the nearest nanosecond, which is exact for any value below about
//! 2^52 ns (52 days).
//!
//! A metric slot's point attributes are a `Map<Utf8, Utf8>` column: DataFusion reads it as
//! `attributes['queue']`, DuckDB the same way, Spark and Trino as their map types, and a
//! stream's attributes stay one value (no column per key, so no schema change when a producer
//! adds one).

use std::sync::Arc;

use crate::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, MapBuilder, MapFieldNames,
    RecordBatch, StringBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use crate::arrow::compute::cast;
use crate::arrow::datatypes::{
    DataType, Field, Fields, Float64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
    TimestampNanosecondType, UInt32Type, UInt64Type,
};
use slogate_core::{MetricSlotRecord, SeriesKey, SlotRecord};

use crate::HistoryError;
use crate::writer::{METRICS_TABLE, REQUESTS_TABLE};

/// The history's tables of slot rows, each in its own directory under the root and registered
/// under its name. (The document tables are [`DocTable`](crate::DocTable)s.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// One row per closed slot of a span series ([`SlotRecord`]).
    Requests,
    /// One row per closed slot of an OTLP metric stream ([`MetricSlotRecord`]).
    Metrics,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Requests, Table::Metrics];

    /// Table and directory name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Requests => REQUESTS_TABLE,
            Table::Metrics => METRICS_TABLE,
        }
    }

    /// The table's Arrow schema with the configured extra dimensions; the same in memory and in
    /// Parquet.
    pub fn schema(self, extra_dims: &[String]) -> SchemaRef {
        match self {
            Table::Requests => requests_schema(extra_dims),
            Table::Metrics => metrics_schema(extra_dims),
        }
    }

    /// The sort order of a compacted file: service and the name queries filter on, time, then
    /// the rest of the series key, so that row-group statistics prune.
    pub(crate) fn pruning_order(self, extra_dims: &[String]) -> Vec<String> {
        let head: &[&str] = match self {
            Table::Requests => &["service", "operation", "slot_start", "env", "version"],
            Table::Metrics => &["service", "metric", "slot_start", "env", "version"],
        };
        let tail: &[&str] = match self {
            Table::Requests => &[],
            Table::Metrics => &["instance"],
        };
        head.iter()
            .copied()
            .chain(extra_dims.iter().map(String::as_str))
            .chain(tail.iter().copied())
            .map(str::to_string)
            .collect()
    }
}

/// Column names of the fixed part of the `requests` schema, in order. Extra dimensions go
/// between `operation` and `requests`.
pub const FIXED_DIMS: [&str; 4] = ["service", "env", "version", "operation"];

/// Column names of the `metrics` table between the extra dimensions and `attributes`.
pub const METRIC_DIMS: [&str; 4] = ["instance", "metric", "unit", "kind"];

/// Names no extra dimension may take: the fixed columns of both slot tables and the Hive
/// partition columns.
pub const RESERVED_COLUMNS: [&str; 27] = [
    "slot_start",
    "slot_seconds",
    "service",
    "env",
    "version",
    "operation",
    "requests",
    "errors",
    "latency_sum_ms",
    "latency_min_ms",
    "latency_max_ms",
    "sketch",
    "date",
    "hour",
    "instance",
    "metric",
    "unit",
    "kind",
    "attributes",
    "points",
    "min",
    "max",
    "last",
    "value_sum",
    "increase",
    "hist_sum",
    "last_time",
];

/// The Arrow schema of the `requests` table; the same in memory and in Parquet.
///
/// `slot_start` is a millisecond timestamp although slots start on whole seconds: Parquet has
/// no seconds unit, and arrow-rs writes `Timestamp(Second)` as a bare `INT64` that DuckDB,
/// Spark and Trino read as a number. (Not a `const fn`: a schema allocates.) See the crate
/// documentation for the column list.
pub fn requests_schema(extra_dims: &[String]) -> SchemaRef {
    let mut fields = Vec::with_capacity(12 + extra_dims.len());
    fields.push(slot_start_field());
    fields.push(Field::new("slot_seconds", DataType::UInt32, false));
    for name in FIXED_DIMS
        .iter()
        .copied()
        .chain(extra_dims.iter().map(String::as_str))
    {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    fields.push(Field::new("requests", DataType::UInt64, false));
    fields.push(Field::new("errors", DataType::UInt64, false));
    fields.push(Field::new("latency_sum_ms", DataType::Float64, false));
    fields.push(Field::new("latency_min_ms", DataType::Float64, false));
    fields.push(Field::new("latency_max_ms", DataType::Float64, false));
    fields.push(Field::new("sketch", DataType::Binary, false));
    Arc::new(Schema::new(fields))
}

/// Checks that extra dimension names are usable as column names.
pub(crate) fn validate_extra_dims(extra_dims: &[String]) -> Result<(), HistoryError> {
    for (i, name) in extra_dims.iter().enumerate() {
        if name.is_empty() {
            return Err(HistoryError::Config("extra dimension name is empty".into()));
        }
        if RESERVED_COLUMNS.contains(&name.as_str()) {
            return Err(HistoryError::Config(format!(
                "extra dimension {name:?} collides with a column of the requests or metrics table"
            )));
        }
        if extra_dims[..i].contains(name) {
            return Err(HistoryError::Config(format!(
                "extra dimension {name:?} is configured twice"
            )));
        }
    }
    Ok(())
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn ms_to_ns(ms: f64) -> u64 {
    // `as` saturates and maps NaN to 0, which is what a corrupt value deserves.
    (ms * 1e6).round() as u64
}

/// Builds one record batch of the [`requests_schema`]. Rows with fewer extras than
/// `extra_dims` get empty strings for the missing ones; surplus extras are dropped.
pub fn rows_to_batch(rows: &[SlotRecord], extra_dims: &[String]) -> RecordBatch {
    let n = rows.len();
    let mut slot_start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut slot_seconds = UInt32Builder::with_capacity(n);
    let ndims = FIXED_DIMS.len() + extra_dims.len();
    let mut dims: Vec<StringBuilder> = (0..ndims)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let mut requests = UInt64Builder::with_capacity(n);
    let mut errors = UInt64Builder::with_capacity(n);
    let mut sum = Float64Builder::with_capacity(n);
    let mut min = Float64Builder::with_capacity(n);
    let mut max = Float64Builder::with_capacity(n);
    let sketch_bytes = rows.iter().map(|r| r.sketch.len()).sum();
    let mut sketch = BinaryBuilder::with_capacity(n, sketch_bytes);
    for r in rows {
        slot_start.append_value(r.slot_start_unix.saturating_mul(1000));
        slot_seconds.append_value(r.slot_seconds);
        dims[0].append_value(&r.key.service);
        dims[1].append_value(&r.key.env);
        dims[2].append_value(&r.key.version);
        dims[3].append_value(&r.key.operation);
        for (i, b) in dims[FIXED_DIMS.len()..].iter_mut().enumerate() {
            b.append_value(r.key.extras.get(i).map(String::as_str).unwrap_or(""));
        }
        requests.append_value(r.requests);
        errors.append_value(r.errors);
        sum.append_value(ns_to_ms(r.latency_sum_ns));
        min.append_value(ns_to_ms(r.latency_min_ns));
        max.append_value(ns_to_ms(r.latency_max_ns));
        sketch.append_value(&r.sketch);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(12 + extra_dims.len());
    columns.push(Arc::new(slot_start.finish()));
    columns.push(Arc::new(slot_seconds.finish()));
    for mut b in dims {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(requests.finish()));
    columns.push(Arc::new(errors.finish()));
    columns.push(Arc::new(sum.finish()));
    columns.push(Arc::new(min.finish()));
    columns.push(Arc::new(max.finish()));
    columns.push(Arc::new(sketch.finish()));
    // Every column is built above from the same rows with the schema's types, so this cannot fail.
    RecordBatch::try_new(requests_schema(extra_dims), columns)
        .expect("columns match the requests schema")
}

/// Reads rows back from a batch that has (at least) the columns of [`requests_schema`], found
/// by name. Columns read through another encoding (views, dictionaries) are cast first.
pub fn batch_to_rows(
    batch: &RecordBatch,
    extra_dims: &[String],
) -> Result<Vec<SlotRecord>, HistoryError> {
    let cols = columns_of(batch, &requests_schema(extra_dims))?;
    let slot_start = cols[0].as_primitive::<TimestampMillisecondType>();
    let slot_seconds = cols[1].as_primitive::<UInt32Type>();
    let dims: Vec<_> = cols[2..2 + FIXED_DIMS.len() + extra_dims.len()]
        .iter()
        .map(|c| c.as_string::<i32>())
        .collect();
    let base = 2 + dims.len();
    let requests = cols[base].as_primitive::<UInt64Type>();
    let errors = cols[base + 1].as_primitive::<UInt64Type>();
    let sum = cols[base + 2].as_primitive::<Float64Type>();
    let min = cols[base + 3].as_primitive::<Float64Type>();
    let max = cols[base + 4].as_primitive::<Float64Type>();
    let sketch = cols[base + 5].as_binary::<i32>();
    let rows = (0..batch.num_rows())
        .map(|i| SlotRecord {
            slot_start_unix: slot_start.value(i).div_euclid(1000),
            slot_seconds: slot_seconds.value(i),
            key: SeriesKey {
                service: dims[0].value(i).to_owned(),
                env: dims[1].value(i).to_owned(),
                version: dims[2].value(i).to_owned(),
                operation: dims[3].value(i).to_owned(),
                extras: dims[FIXED_DIMS.len()..]
                    .iter()
                    .map(|d| d.value(i).to_owned())
                    .collect(),
            },
            requests: requests.value(i),
            errors: errors.value(i),
            latency_sum_ns: ms_to_ns(sum.value(i)),
            latency_min_ns: ms_to_ns(min.value(i)),
            latency_max_ns: ms_to_ns(max.value(i)),
            sketch: sketch.value(i).to_vec(),
        })
        .collect();
    Ok(rows)
}

/// The columns of `schema` found by name in `batch`, cast to the schema's types; nulls only
/// where the schema allows them.
fn columns_of(batch: &RecordBatch, schema: &Schema) -> Result<Vec<ArrayRef>, HistoryError> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let col = batch
            .column_by_name(field.name())
            .ok_or_else(|| HistoryError::Corrupt(format!("column {} is missing", field.name())))?;
        let col = if col.data_type() == field.data_type() {
            Arc::clone(col)
        } else {
            cast(col, field.data_type()).map_err(|e| {
                HistoryError::Corrupt(format!(
                    "column {} has type {}: {e}",
                    field.name(),
                    col.data_type()
                ))
            })?
        };
        if !field.is_nullable() && col.null_count() > 0 {
            return Err(HistoryError::Corrupt(format!(
                "column {} has nulls",
                field.name()
            )));
        }
        cols.push(col);
    }
    Ok(cols)
}

fn slot_start_field() -> Field {
    Field::new(
        "slot_start",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

/// `Map<Utf8, Utf8>` with arrow-rs's default field names (`entries`, `keys`, `values`), no
/// nulls, keys unique (sorted when written, but not declared sorted: Parquet cannot say so, so
/// the flag would not survive a round trip).
fn attributes_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, false),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// The Arrow schema of the `metrics` table; the same in memory and in Parquet. See the crate
/// documentation for the columns and what each means per `kind`.
///
/// `sketch` is the one nullable column: null when the slot has no sketch (everything but
/// histograms), so that `sketch_quantile` skips those rows instead of failing on empty bytes.
pub fn metrics_schema(extra_dims: &[String]) -> SchemaRef {
    let mut fields = Vec::with_capacity(20 + extra_dims.len());
    fields.push(slot_start_field());
    fields.push(Field::new("slot_seconds", DataType::UInt32, false));
    for name in FIXED_DIMS[..3]
        .iter()
        .copied()
        .chain(extra_dims.iter().map(String::as_str))
        .chain(METRIC_DIMS)
    {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    fields.push(Field::new("attributes", attributes_type(), false));
    fields.push(Field::new("points", DataType::UInt64, false));
    for name in ["min", "max", "last", "value_sum", "increase", "hist_sum"] {
        fields.push(Field::new(name, DataType::Float64, false));
    }
    fields.push(Field::new(
        "last_time",
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new("sketch", DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

/// Builds one record batch of the [`metrics_schema`]. Rows with fewer extras than `extra_dims`
/// get empty strings for the missing ones; surplus extras are dropped. A `last_time` beyond
/// 2262 (`i64` nanoseconds) is stored as the largest timestamp.
pub fn metric_rows_to_batch(rows: &[MetricSlotRecord], extra_dims: &[String]) -> RecordBatch {
    let n = rows.len();
    let mut slot_start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut slot_seconds = UInt32Builder::with_capacity(n);
    let ndims = 3 + extra_dims.len() + METRIC_DIMS.len();
    let mut dims: Vec<StringBuilder> = (0..ndims)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    let mut attributes = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
        .with_values_field(Arc::new(Field::new("values", DataType::Utf8, false)));
    let mut points = UInt64Builder::with_capacity(n);
    let mut floats: Vec<Float64Builder> =
        (0..6).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut last_time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let sketch_bytes = rows.iter().map(|r| r.sketch.len()).sum();
    let mut sketch = BinaryBuilder::with_capacity(n, sketch_bytes);
    for r in rows {
        slot_start.append_value(r.slot_start_unix.saturating_mul(1000));
        slot_seconds.append_value(r.slot_seconds);
        let extras = (0..extra_dims.len()).map(|i| r.extras.get(i).map_or("", String::as_str));
        let values = [r.service.as_str(), r.env.as_str(), r.version.as_str()]
            .into_iter()
            .chain(extras)
            .chain([
                r.instance.as_str(),
                r.metric.as_str(),
                r.unit.as_str(),
                r.kind.as_str(),
            ]);
        for (b, v) in dims.iter_mut().zip(values) {
            b.append_value(v);
        }
        for (k, v) in &r.attributes {
            attributes.keys().append_value(k);
            attributes.values().append_value(v);
        }
        // Cannot fail: every key appended above has its value.
        attributes
            .append(true)
            .expect("as many attribute keys as values");
        points.append_value(r.points);
        let values = [r.min, r.max, r.last, r.value_sum, r.increase, r.hist_sum];
        for (b, v) in floats.iter_mut().zip(values) {
            b.append_value(v);
        }
        last_time.append_value(i64::try_from(r.last_time_unix_nano).unwrap_or(i64::MAX));
        if r.sketch.is_empty() {
            sketch.append_null();
        } else {
            sketch.append_value(&r.sketch);
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(20 + extra_dims.len());
    columns.push(Arc::new(slot_start.finish()));
    columns.push(Arc::new(slot_seconds.finish()));
    for mut b in dims {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(attributes.finish()));
    columns.push(Arc::new(points.finish()));
    for mut b in floats {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(last_time.finish()));
    columns.push(Arc::new(sketch.finish()));
    // Every column is built above from the same rows with the schema's types, so this cannot fail.
    RecordBatch::try_new(metrics_schema(extra_dims), columns)
        .expect("columns match the metrics schema")
}

/// Reads metric rows back from a batch that has (at least) the columns of [`metrics_schema`],
/// found by name. A null `sketch` reads as empty bytes.
pub fn batch_to_metric_rows(
    batch: &RecordBatch,
    extra_dims: &[String],
) -> Result<Vec<MetricSlotRecord>, HistoryError> {
    let cols = columns_of(batch, &metrics_schema(extra_dims))?;
    let slot_start = cols[0].as_primitive::<TimestampMillisecondType>();
    let slot_seconds = cols[1].as_primitive::<UInt32Type>();
    let ndims = 3 + extra_dims.len() + METRIC_DIMS.len();
    let dims: Vec<_> = cols[2..2 + ndims]
        .iter()
        .map(|c| c.as_string::<i32>())
        .collect();
    let base = 2 + ndims;
    let attributes = cols[base].as_map();
    let (keys, values) = (
        attributes.keys().as_string::<i32>(),
        attributes.values().as_string::<i32>(),
    );
    let points = cols[base + 1].as_primitive::<UInt64Type>();
    let floats: Vec<_> = cols[base + 2..base + 8]
        .iter()
        .map(|c| c.as_primitive::<Float64Type>())
        .collect();
    let last_time = cols[base + 8].as_primitive::<TimestampNanosecondType>();
    let sketch = cols[base + 9].as_binary::<i32>();
    let text = |d: usize, i: usize| dims[d].value(i).to_owned();
    let m = 3 + extra_dims.len();
    let rows = (0..batch.num_rows())
        .map(|i| {
            let range =
                attributes.value_offsets()[i] as usize..attributes.value_offsets()[i + 1] as usize;
            MetricSlotRecord {
                slot_start_unix: slot_start.value(i).div_euclid(1000),
                slot_seconds: slot_seconds.value(i),
                service: text(0, i),
                env: text(1, i),
                version: text(2, i),
                extras: (3..m).map(|d| text(d, i)).collect(),
                instance: text(m, i),
                metric: text(m + 1, i),
                unit: text(m + 2, i),
                kind: text(m + 3, i),
                attributes: range
                    .map(|e| (keys.value(e).to_owned(), values.value(e).to_owned()))
                    .collect(),
                points: points.value(i),
                min: floats[0].value(i),
                max: floats[1].value(i),
                last: floats[2].value(i),
                value_sum: floats[3].value(i),
                increase: floats[4].value(i),
                hist_sum: floats[5].value(i),
                last_time_unix_nano: u64::try_from(last_time.value(i)).unwrap_or(0),
                sketch: if sketch.is_valid(i) {
                    sketch.value(i).to_vec()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    Ok(rows)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, so no calendar crate is needed for partition names.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The Hive partition `(date, hour)` of a Unix second: `("YYYY-MM-DD", "HH")`, UTC.
pub fn partition_of(unix: i64) -> (String, String) {
    let days = unix.div_euclid(86_400);
    let hour = unix.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hour:02}"))
}

/// RFC 3339 (seconds, UTC) of a Unix second, without a date crate.
pub fn rfc3339(unix: i64) -> String {
    let (date, hour) = partition_of(unix);
    let rem = unix.rem_euclid(3600);
    format!("{date}T{hour}:{:02}:{:02}Z", rem / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        let cases = [
            (0, "1970-01-01", "00"),
            (86_399, "1970-01-01", "23"),
            (951_782_400, "2000-02-29", "00"),
            (1_764_000_000, "2025-11-24", "16"),
            (-1, "1969-12-31", "23"),
        ];
        for (unix, date, hour) in cases {
            assert_eq!(
                partition_of(unix),
                (date.to_string(), hour.to_string()),
                "{unix}"
            );
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_764_000_061, "2025-11-24T16:01:01Z"),
        ];
        for (unix, want) in cases {
            assert_eq!(rfc3339(unix), want, "{unix}");
        }
    }

    #[test]
    fn batch_roundtrip() {
        let extra = vec!["region".to_string()];
        let rows = vec![SlotRecord {
            slot_start_unix: 1_764_000_000,
            slot_seconds: 10,
            key: SeriesKey {
                service: "checkout".into(),
                env: "prod".into(),
                version: "v2".into(),
                operation: "GET /cart".into(),
                extras: vec!["eu".into()],
            },
            requests: 10,
            errors: 1,
            latency_sum_ns: 123_456_789_012,
            latency_min_ns: 1_234,
            latency_max_ns: 9_876_543_210,
            sketch: vec![1, 0, 0, 0, 0, 0],
        }];
        let batch = rows_to_batch(&rows, &extra);
        assert_eq!(batch.schema(), requests_schema(&extra));
        assert_eq!(batch_to_rows(&batch, &extra).unwrap(), rows);
    }

    #[test]
    fn metric_batch_roundtrip() {
        let extra = vec!["region".to_string(), "team".to_string()];
        let row = |kind: &str, attributes: &[(&str, &str)], sketch: Vec<u8>| MetricSlotRecord {
            slot_start_unix: 1_764_000_000,
            slot_seconds: 10,
            service: "checkout".into(),
            env: "prod".into(),
            version: "v2".into(),
            // One extra fewer than configured: the missing one reads back as "".
            extras: vec!["eu".into()],
            instance: "pod-1".into(),
            metric: "queue.depth".into(),
            unit: "{item}".into(),
            kind: kind.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: 3,
            min: -1.5,
            max: 7.25,
            last: 2.0,
            value_sum: 7.75,
            last_time_unix_nano: 1_764_000_009_123_456_789,
            increase: 0.0,
            hist_sum: 0.0,
            sketch,
        };
        let rows = vec![
            row("gauge", &[("queue", "jobs"), ("shard", "3")], vec![]),
            row("histogram", &[], vec![1, 0, 0, 0, 0, 0]),
        ];
        let batch = metric_rows_to_batch(&rows, &extra);
        assert_eq!(batch.schema(), metrics_schema(&extra));
        assert_eq!(batch.column_by_name("sketch").unwrap().null_count(), 1);
        let mut want = rows.clone();
        for r in &mut want {
            r.extras.push(String::new());
        }
        assert_eq!(batch_to_metric_rows(&batch, &extra).unwrap(), want);
        // A slice reads back its own rows only (map offsets are absolute).
        let got = batch_to_metric_rows(&batch.slice(1, 1), &extra).unwrap();
        assert_eq!(got, want[1..]);
    }

    #[test]
    fn extra_dims_may_not_shadow_a_column_of_either_table() {
        for name in [
            "operation",
            "instance",
            "metric",
            "kind",
            "attributes",
            "date",
            "sketch",
        ] {
            let err = validate_extra_dims(&[name.to_string()]).unwrap_err();
            assert!(err.to_string().contains("collides"), "{name}: {err}");
        }
        for table in Table::ALL {
            let schema = table.schema(&["region".to_string()]);
            for f in schema.fields() {
                assert!(
                    RESERVED_COLUMNS.contains(&f.name().as_str()) || f.name() == "region",
                    "{}.{} is not reserved",
                    table.name(),
                    f.name()
                );
            }
        }
    }
}
