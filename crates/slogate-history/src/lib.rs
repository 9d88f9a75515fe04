//! Slot history: every closed slot of every span series as one row of the `requests` table and
//! of every OTLP metric stream as one row of the `metrics` table, in zstd Parquet under
//! Hive-style hourly partitions, queried with DataFusion SQL and exact sketch percentiles.
//!
//! # The `requests` table
//!
//! One schema, built by [`requests_schema`], for the in-memory batches ([`rows_to_batch`]) and
//! the Parquet files:
//!
//! | column | Arrow type | notes |
//! |---|---|---|
//! | `slot_start` | `Timestamp(Millisecond, "UTC")` | start of the slot (whole seconds; ms because Parquet has no seconds unit) |
//! | `slot_seconds` | `UInt32` | slot length |
//! | `service`, `env`, `version`, `operation` | `Utf8` | the series key |
//! | one per configured extra dimension | `Utf8` | named after the dimension, in configuration order |
//! | `requests` | `UInt64` | spans in the slot |
//! | `errors` | `UInt64` | error spans in the slot |
//! | `latency_sum_ms`, `latency_min_ms`, `latency_max_ms` | `Float64` | milliseconds |
//! | `sketch` | `Binary` | the slot's latency sketch, `slogate-sketch` byte format v1 |
//!
//! All columns are non-nullable. Queries also see the Hive partition columns `date`
//! (`YYYY-MM-DD`, UTC) and `hour` (`HH`), both `Utf8`; filtering on them prunes directories.
//!
//! # The `metrics` table
//!
//! One row per [`MetricSlotRecord`](slogate_core::MetricSlotRecord) (one closed slot of one
//! metric stream), schema [`metrics_schema`], written by [`MetricWriter`]:
//!
//! | column | Arrow type | notes |
//! |---|---|---|
//! | `slot_start` | `Timestamp(Millisecond, "UTC")` | as in `requests` |
//! | `slot_seconds` | `UInt32` | slot length |
//! | `service`, `env`, `version` | `Utf8` | cohort dimensions from the resource |
//! | one per configured extra dimension | `Utf8` | as in `requests` |
//! | `instance`, `metric`, `unit`, `kind` | `Utf8` | producing instance, metric name, unit as sent, `gauge` / `sum` / `histogram` / `exponential_histogram` / `summary` |
//! | `attributes` | `Map<Utf8, Utf8>` | point attributes (values as text); `attributes['queue']` |
//! | `points` | `UInt64` | points received in the slot |
//! | `min`, `max`, `last`, `value_sum` | `Float64` | over the point values of gauges and sums |
//! | `increase` | `Float64` | a sum's increase (resets detected), a histogram's or summary's count increase |
//! | `hist_sum` | `Float64` | increase of a histogram's or summary's sum |
//! | `last_time` | `Timestamp(Nanosecond, "UTC")` | the last point's own time |
//! | `sketch` | `Binary`, nullable | histogram values of the slot (`slogate-sketch` v1); null for other kinds |
//!
//! Only `sketch` is nullable, so that the sketch functions skip the rows that have none. The
//! same files, compaction (sorted by service, metric, slot_start, then the rest of the stream
//! key), retention and quarantine as `requests`. A restarting instance reads its recent rows back
//! into the metric store ([`History::load_metrics_since`]); stored baselines merge a selection's
//! streams over a range ([`metric_totals`]).
//!
//! # Files
//!
//! `<root>/<table>/date=YYYY-MM-DD/hour=HH/part-<unix_ms>-<counter>.crc<crc32>.parquet`, written by
//! a [`SlotWriter`] as `<name>.tmp`, fsynced and renamed, so a crash leaves at most a `.tmp`
//! file, which no reader lists (DataFusion here lists `*.parquet`; DuckDB, Spark and Trino are
//! pointed at `**/*.parquet`). Any Parquet reader with Hive partitioning can read the tree.
//!
//! # Document tables
//!
//! `verdicts` (`at`, `gate`, `verdict`, `doc`) and `alerts` (`at`, `rule`, `outcome`, `doc`)
//! keep whole JSON documents as `Utf8` next to a timestamp and two filterable columns, written
//! by [`DocWriter`] with the same partitioning and atomic files; see [`DocTable`].
//!
//! # Percentiles
//!
//! `sketch_quantile(sketch, q)` merges the sketches of a group and reads one quantile
//! (milliseconds): the answer for a day is the day's percentile within the sketch's 1/256
//! relative error, not an average of per-slot percentiles, which can be far off when traffic or
//! latency varies between slots. `sketch_merge(sketch)` returns the merged bytes and
//! `sketch_quantile_of(bytes, q)` reads a quantile from one sketch. The functions read any
//! `sketch` column, so they work on `metrics` too. They return the sketch's recorded integers
//! divided by 10^6: milliseconds for the nanosecond latencies of `requests` and for the
//! histograms of `metrics` whose unit is a duration (the metric store records those in
//! nanoseconds); other histograms are recorded in thousandths of their unit, so multiply by
//! 1000 for the metric's own unit.
//!
//! # Read-only SQL
//!
//! [`History::sql`] accepts one query (`SELECT`, `WITH`, `VALUES`, or `EXPLAIN` of one) and
//! rejects DDL, DML, `COPY` and `SET` before planning, with DataFusion's `SQLOptions` as a
//! second check; results are capped at `max_rows`.
//!
//! A query cannot exhaust the host: it runs under [`SqlLimits`] (one memory pool that every
//! operator, function result and the collected result are charged to; see [`limits`] for how
//! the paths DataFusion does not account are closed) and fails with
//! [`HistoryError::ResourcesExhausted`] past it. It runs on the history's own runtime, whose
//! threads (`slogate-sql`, half the cores) it cannot take from the caller; after the timeout
//! it is aborted, and every operator yields between batches, so its work stops within a batch.

/// The arrow types the history uses, from the arrow crates themselves rather than DataFusion's
/// re-export: only SQL (`query`'s engine, `limits`, `udf`) needs DataFusion.
pub(crate) mod arrow {
    pub mod array {
        pub use arrow_array::builder::*;
        pub use arrow_array::cast::AsArray;
        pub use arrow_array::*;
    }
    pub mod datatypes {
        pub use arrow_array::types::*;
        pub use arrow_schema::*;
    }
    pub mod compute {
        pub use arrow_cast::cast;
        pub use arrow_ord::sort::{SortColumn, lexsort_to_indices};
        pub use arrow_select::concat::concat_batches;
        pub use arrow_select::take::take_record_batch;
    }
    pub mod error {
        pub use arrow_schema::ArrowError;
    }
}
pub mod baseline;
mod compact;
mod docs;
pub mod limits;
mod quarantine;
mod query;
mod range;
mod schema;
mod store;
mod udf;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use baseline::{Baseline, BaselineError, CohortTotals};
pub use compact::{
    CompactReport, CrashPoint, Maintenance, MaintenanceConfig, RecoverReport, RetentionReport,
    ScrubReport,
};
pub use docs::{DocBatch, DocRow, DocTable, DocWriter, docs_to_batch};
pub use limits::SqlLimits;
pub use quarantine::QUARANTINE_DIR;
pub use query::{History, QueryResult};
pub use range::{
    DocEntry, doc_rows, last_doc_per_name, metric_totals, newest_docs, operation_totals,
    slot_counts,
};
pub use schema::{
    FIXED_DIMS, METRIC_DIMS, RESERVED_COLUMNS, Table, batch_to_metric_rows, batch_to_rows,
    metric_rows_to_batch, metrics_schema, partition_of, requests_schema, rfc3339, rows_to_batch,
};
pub use store::{ObjectEntry, S3Options, Store};
pub use udf::{SketchMerge, SketchQuantile, SketchQuantileOf, sketch_udafs, sketch_udfs};
pub use writer::{
    HistoryWriter, METRICS_TABLE, MetricWriter, REQUESTS_TABLE, SlotRow, SlotWriter, WriterConfig,
    Written,
};

/// Errors of the history writer and query side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error("history buffer is full ({max_buffered_rows} rows waiting for a flush)")]
    Full { max_buffered_rows: usize },
    #[error(
        "statement not allowed: history sql is read-only and accepts only queries (select, with, explain), got {statement}"
    )]
    ReadOnly { statement: String },
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    /// The query needs more memory (or work) than [`SqlLimits`] allow; the message names what.
    #[error("query exceeds the history sql limits: {0}")]
    ResourcesExhausted(String),
    #[error("query text is {bytes} bytes; at most {max} are accepted")]
    QueryTooLong { bytes: usize, max: usize },
    #[error("query failed: {0}")]
    Query(#[source] datafusion::error::DataFusionError),
    #[error("invalid history configuration: {0}")]
    Config(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parquet write failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("unreadable history row: {0}")]
    Corrupt(String),
    #[error("object store {op} failed on {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        source: Box<object_store::Error>,
    },
    /// A [`CrashPoint`] set on [`Maintenance`] was reached (tests only).
    #[error("injected crash at {0:?}")]
    Injected(CrashPoint),
}
