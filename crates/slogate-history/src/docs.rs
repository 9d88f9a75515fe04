//! JSON-document tables (`verdicts`, `alerts`): a few indexed columns plus the whole document
//! as JSON text, written with the same partitioning and atomic files as `requests`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use crate::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::file::properties::WriterProperties;

use crate::HistoryError;
use crate::schema::partition_of;
use crate::store::Store;
use crate::writer::{Written, write_partition_file, zstd_props};

/// A table of JSON documents. Columns: `at` (`Timestamp(Millisecond, "UTC")`), a name column,
/// a status column (both `Utf8`), and `doc` (`Utf8`, the JSON document); plus the Hive
/// partition columns `date` and `hour` when queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocTable {
    /// `at`, `gate`, `verdict`, `doc`.
    Verdicts,
    /// `at`, `rule`, `outcome`, `doc`.
    Alerts,
}

impl DocTable {
    pub const ALL: [DocTable; 2] = [DocTable::Verdicts, DocTable::Alerts];

    /// Table and directory name.
    pub fn name(self) -> &'static str {
        match self {
            DocTable::Verdicts => "verdicts",
            DocTable::Alerts => "alerts",
        }
    }

    /// Names of the name and status columns.
    pub fn columns(self) -> (&'static str, &'static str) {
        match self {
            DocTable::Verdicts => ("gate", "verdict"),
            DocTable::Alerts => ("rule", "outcome"),
        }
    }

    pub fn schema(self) -> SchemaRef {
        let (name, status) = self.columns();
        Arc::new(Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new(name, DataType::Utf8, false),
            Field::new(status, DataType::Utf8, false),
            Field::new("doc", DataType::Utf8, false),
        ]))
    }
}

/// One document row: e.g. a verdict (`name` = gate, `status` = verdict) or an alert
/// notification (`name` = rule, `status` = outcome).
#[derive(Debug, Clone, PartialEq)]
pub struct DocRow {
    pub at_unix_ms: i64,
    pub name: String,
    pub status: String,
    pub doc: serde_json::Value,
}

/// Buffers [`DocRow`]s of one [`DocTable`] and flushes them like
/// [`HistoryWriter`](crate::HistoryWriter) does: bounded buffer, blocking I/O, atomic files.
#[derive(Debug)]
pub struct DocWriter {
    table: DocTable,
    store: Store,
    props: WriterProperties,
    max_buffered_rows: usize,
    buf: Vec<DocRow>,
    written: Arc<Written>,
}

impl DocWriter {
    pub fn new(
        root: impl Into<Store>,
        table: DocTable,
        max_buffered_rows: usize,
    ) -> Result<Self, HistoryError> {
        Ok(DocWriter {
            table,
            store: root.into(),
            props: zstd_props(3)?,
            max_buffered_rows,
            buf: Vec::new(),
            written: Arc::default(),
        })
    }

    /// What this writer (and the batches taken from it) has durably written so far.
    pub fn written(&self) -> Arc<Written> {
        self.written.clone()
    }

    /// Buffers one document; `Err(Full)` when `max_buffered_rows` are already waiting.
    pub fn append(&mut self, row: DocRow) -> Result<(), HistoryError> {
        if self.buf.len() >= self.max_buffered_rows {
            return Err(HistoryError::Full {
                max_buffered_rows: self.max_buffered_rows,
            });
        }
        self.buf.push(row);
        Ok(())
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Writes the buffered documents, one file per (date, hour); on error the unwritten ones
    /// stay buffered.
    pub fn flush(&mut self) -> Result<Vec<String>, HistoryError> {
        self.take().write().map_err(|(e, rest)| {
            self.restore(rest);
            e
        })
    }

    /// Takes the buffered documents out with what writing them needs. A caller that keeps the
    /// writer behind a lock writes the batch after releasing it, so [`DocWriter::append`] (a
    /// verdict being logged) never waits for Parquet encoding, an fsync or an S3 retry.
    pub fn take(&mut self) -> DocBatch {
        DocBatch {
            table: self.table,
            store: self.store.clone(),
            props: self.props.clone(),
            rows: std::mem::take(&mut self.buf),
            written: self.written.clone(),
        }
    }

    /// Puts back what a [`DocBatch::write`] could not write, ahead of the documents appended
    /// since. The buffer may then hold up to twice `max_buffered_rows` until the next flush;
    /// `append` refuses in the meantime.
    pub fn restore(&mut self, mut rows: Vec<DocRow>) {
        rows.append(&mut self.buf);
        self.buf = rows;
    }
}

/// Documents taken out of a [`DocWriter`], to be written without holding it.
#[derive(Debug)]
pub struct DocBatch {
    table: DocTable,
    store: Store,
    props: WriterProperties,
    rows: Vec<DocRow>,
    written: Arc<Written>,
}

impl DocBatch {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[DocRow] {
        &self.rows
    }

    /// Writes the documents, one file per (date, hour). On error, returns the documents of the
    /// partitions not written, for [`DocWriter::restore`].
    pub fn write(self) -> Result<Vec<String>, (HistoryError, Vec<DocRow>)> {
        let mut groups: BTreeMap<(String, String), Vec<DocRow>> = BTreeMap::new();
        for row in self.rows {
            groups
                .entry(partition_of(row.at_unix_ms.div_euclid(1000)))
                .or_default()
                .push(row);
        }
        let mut written = Vec::with_capacity(groups.len());
        let mut groups = groups.into_iter();
        while let Some(((date, hour), mut rows)) = groups.next() {
            rows.sort_by_key(|r| r.at_unix_ms);
            let batch = docs_to_batch(self.table, &rows);
            match write_partition_file(
                &self.store,
                self.table.name(),
                &date,
                &hour,
                self.table.schema(),
                &batch,
                &self.props,
            ) {
                Ok(path) => {
                    self.written.file(rows.len(), 0);
                    written.push(path);
                }
                Err(e) => {
                    rows.extend(groups.flat_map(|(_, rows)| rows));
                    return Err((e, rows));
                }
            }
        }
        Ok(written)
    }
}

/// One record batch of `table`'s schema.
pub fn docs_to_batch(table: DocTable, rows: &[DocRow]) -> RecordBatch {
    let n = rows.len();
    let mut at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut name = StringBuilder::with_capacity(n, n * 16);
    let mut status = StringBuilder::with_capacity(n, n * 8);
    let mut doc = StringBuilder::with_capacity(n, n * 256);
    for r in rows {
        at.append_value(r.at_unix_ms);
        name.append_value(&r.name);
        status.append_value(&r.status);
        doc.append_value(r.doc.to_string());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(at.finish()),
        Arc::new(name.finish()),
        Arc::new(status.finish()),
        Arc::new(doc.finish()),
    ];
    // Built above with the schema's types and equal lengths, so this cannot fail.
    RecordBatch::try_new(table.schema(), columns).expect("columns match the document table schema")
}
