//! [`SlotWriter`]: buffers closed slots of one table ([`HistoryWriter`] for `requests`,
//! [`MetricWriter`] for `metrics`) and flushes them as zstd Parquet files into Hive-style hourly
//! partitions under a [`Store`] root (a directory or `s3://`).
//!
//! Layout: `<root>/<table>/date=YYYY-MM-DD/hour=HH/part-<unix_ms>-<counter>.crc<crc32>.parquet`
//! (the CRC-32 of the file's bytes, see [`crate::quarantine`]). Each
//! file is one atomic [`Store::put`], so a crash never leaves a partial `.parquet` object where
//! readers look.
//!
//! Each writer counts what it has durably written ([`Written`]): a file's rows are counted once
//! [`Store::put`] has returned, so after the file was fsynced, renamed and its directory
//! fsynced (or the object store acknowledged the PUT). A process killed at any moment has at
//! least what its counters said in the history.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::arrow::array::RecordBatch;
use crate::arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::HistoryError;
use crate::quarantine::checked_name;
use crate::schema::{
    Table, metric_rows_to_batch, partition_of, rows_to_batch, validate_extra_dims,
};
use crate::store::Store;
use slogate_core::{MetricSlotRecord, SlotRecord};

/// Name of the `requests` table directory under the root, and of the SQL table.
pub const REQUESTS_TABLE: &str = "requests";
/// Name of the `metrics` table directory under the root, and of the SQL table.
pub const METRICS_TABLE: &str = "metrics";

/// A row of one of the slot [`Table`]s: [`SlotRecord`] of `requests`, [`MetricSlotRecord`] of
/// `metrics`.
pub trait SlotRow: Sized + Send + 'static {
    /// The table the rows go to.
    const TABLE: Table;
    /// Start of the row's slot, Unix seconds: its hour partition.
    fn slot_start_unix(&self) -> i64;
    /// The order of rows within a written file: series-major, then time. Keeping each series'
    /// slots together compresses the dimension columns and lets row-group statistics prune
    /// by service.
    fn file_order(&self, other: &Self) -> CmpOrdering;
    /// One record batch of [`Self::TABLE`]'s schema.
    fn to_batch(rows: &[Self], extra_dims: &[String]) -> RecordBatch;
    /// What the row counts: spans of a `requests` row, data points of a `metrics` row.
    fn observations(&self) -> u64;
}

impl SlotRow for SlotRecord {
    const TABLE: Table = Table::Requests;
    fn slot_start_unix(&self) -> i64 {
        self.slot_start_unix
    }
    fn file_order(&self, other: &Self) -> CmpOrdering {
        self.key
            .cmp(&other.key)
            .then(self.slot_start_unix.cmp(&other.slot_start_unix))
    }
    fn to_batch(rows: &[Self], extra_dims: &[String]) -> RecordBatch {
        rows_to_batch(rows, extra_dims)
    }
    fn observations(&self) -> u64 {
        self.requests
    }
}

impl SlotRow for MetricSlotRecord {
    const TABLE: Table = Table::Metrics;
    fn slot_start_unix(&self) -> i64 {
        self.slot_start_unix
    }
    fn file_order(&self, other: &Self) -> CmpOrdering {
        (&self.service, &self.metric, &self.env, &self.version)
            .cmp(&(&other.service, &other.metric, &other.env, &other.version))
            .then_with(|| {
                (&self.extras, &self.instance, &self.attributes).cmp(&(
                    &other.extras,
                    &other.instance,
                    &other.attributes,
                ))
            })
            .then(self.slot_start_unix.cmp(&other.slot_start_unix))
    }
    fn to_batch(rows: &[Self], extra_dims: &[String]) -> RecordBatch {
        metric_rows_to_batch(rows, extra_dims)
    }
    fn observations(&self) -> u64 {
        self.points
    }
}

/// What a writer has durably written since it was created, counted file by file once the file
/// is complete (see the module documentation). Shared, so that a `/metrics` scrape reads it
/// without waiting for a flush.
#[derive(Debug, Default)]
pub struct Written {
    files: AtomicU64,
    rows: AtomicU64,
    observations: AtomicU64,
}

impl Written {
    /// Files written.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Rows in the files written.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Spans (`requests`) or data points (`metrics`) in the rows written; 0 for documents.
    pub fn observations(&self) -> u64 {
        self.observations.load(Ordering::Relaxed)
    }

    /// Counts one complete file.
    pub(crate) fn file(&self, rows: usize, observations: u64) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.observations.fetch_add(observations, Ordering::Relaxed);
        self.files.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings of a [`SlotWriter`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The root that holds the table directories (`requests/`, `metrics/`...).
    pub root: Store,
    /// Configured extra dimensions, in configuration order.
    pub extra_dims: Vec<String>,
    /// [`SlotWriter::append`] refuses rows beyond this many unflushed ones.
    pub max_buffered_rows: usize,
    /// zstd level for Parquet pages.
    pub zstd_level: i32,
}

impl WriterConfig {
    pub fn new(root: impl Into<Store>, extra_dims: Vec<String>) -> Self {
        WriterConfig {
            root: root.into(),
            extra_dims,
            max_buffered_rows: 1_000_000,
            zstd_level: 3,
        }
    }
}

/// The writer of the `requests` table.
pub type HistoryWriter = SlotWriter<SlotRecord>;
/// The writer of the `metrics` table.
pub type MetricWriter = SlotWriter<MetricSlotRecord>;

/// Buffers rows of one slot table and writes them to Parquet on [`SlotWriter::flush`].
///
/// All I/O is blocking; call `flush` from `tokio::task::spawn_blocking` on a runtime.
#[derive(Debug)]
pub struct SlotWriter<R> {
    store: Store,
    extra_dims: Vec<String>,
    schema: SchemaRef,
    props: WriterProperties,
    max_buffered_rows: usize,
    buf: Vec<R>,
    written: Arc<Written>,
}

impl<R: SlotRow> SlotWriter<R> {
    pub fn new(config: WriterConfig) -> Result<Self, HistoryError> {
        validate_extra_dims(&config.extra_dims)?;
        let props = zstd_props(config.zstd_level)?;
        Ok(SlotWriter {
            store: config.root,
            schema: R::TABLE.schema(&config.extra_dims),
            extra_dims: config.extra_dims,
            props,
            max_buffered_rows: config.max_buffered_rows,
            buf: Vec::new(),
            written: Arc::default(),
        })
    }

    /// What this writer has durably written so far.
    pub fn written(&self) -> Arc<Written> {
        self.written.clone()
    }

    /// Buffers one row; `Err(Full)` when `max_buffered_rows` rows are already waiting.
    pub fn append(&mut self, row: R) -> Result<(), HistoryError> {
        if self.buf.len() >= self.max_buffered_rows {
            return Err(HistoryError::Full {
                max_buffered_rows: self.max_buffered_rows,
            });
        }
        self.buf.push(row);
        Ok(())
    }

    /// Buffers all rows or none: `Err(Full)` when they do not all fit.
    pub fn append_all(&mut self, rows: Vec<R>) -> Result<(), HistoryError> {
        if self.buf.len().saturating_add(rows.len()) > self.max_buffered_rows {
            return Err(HistoryError::Full {
                max_buffered_rows: self.max_buffered_rows,
            });
        }
        self.buf.extend(rows);
        Ok(())
    }

    /// Rows waiting for the next flush.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes every buffered row, one file per (date, hour) partition, and returns the keys
    /// written. On error, the rows of the partitions not yet written stay buffered.
    pub fn flush(&mut self) -> Result<Vec<String>, HistoryError> {
        let mut groups: BTreeMap<(String, String), Vec<R>> = BTreeMap::new();
        for row in std::mem::take(&mut self.buf) {
            groups
                .entry(partition_of(row.slot_start_unix()))
                .or_default()
                .push(row);
        }
        let mut written = Vec::with_capacity(groups.len());
        let mut groups = groups.into_iter();
        while let Some(((date, hour), mut rows)) = groups.next() {
            rows.sort_by(R::file_order);
            let batch = R::to_batch(&rows, &self.extra_dims);
            match write_partition_file(
                &self.store,
                R::TABLE.name(),
                &date,
                &hour,
                self.schema.clone(),
                &batch,
                &self.props,
            ) {
                Ok(path) => {
                    self.written
                        .file(rows.len(), rows.iter().map(R::observations).sum());
                    written.push(path);
                }
                Err(e) => {
                    self.buf.extend(rows);
                    self.buf.extend(groups.flat_map(|(_, rows)| rows));
                    return Err(e);
                }
            }
        }
        Ok(written)
    }
}

/// A process-wide file counter: two writers flushing into the same partition within the same
/// millisecond still get distinct names.
pub(crate) fn next_file_number() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

/// Writes one batch as `<table>/date=D/hour=H/part-<unix_ms>-<counter>.crc<crc32>.parquet` in
/// one atomic put and returns its key.
pub(crate) fn write_partition_file(
    store: &Store,
    table: &str,
    date: &str,
    hour: &str,
    schema: SchemaRef,
    batch: &RecordBatch,
    props: &WriterProperties,
) -> Result<String, HistoryError> {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let bytes = encode_parquet(schema, std::slice::from_ref(batch), props, &[])?;
    let key = format!(
        "{}/{}",
        partition_dir(table, date, hour),
        checked_name(&format!("part-{unix_ms}-{}", next_file_number()), &bytes)
    );
    store.put(&key, bytes)?;
    tracing::debug!(key = %key, root = %store.describe(), rows = batch.num_rows(), "history file written");
    Ok(key)
}

/// `<table>/date=D/hour=H`.
pub(crate) fn partition_dir(table: &str, date: &str, hour: &str) -> String {
    format!("{table}/date={date}/hour={hour}")
}

/// Encodes batches as one Parquet file in memory, with `metadata` as key-value metadata.
pub(crate) fn encode_parquet(
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: &WriterProperties,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, HistoryError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props.clone()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    for (k, v) in metadata {
        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            k.clone(),
            v.clone(),
        ));
    }
    Ok(writer.into_inner()?)
}

pub(crate) fn zstd_props(level: i32) -> Result<WriterProperties, HistoryError> {
    let level = ZstdLevel::try_new(level)
        .map_err(|e| HistoryError::Config(format!("zstd level {level}: {e}")))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .build())
}
