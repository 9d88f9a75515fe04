//! The server's side of the Parquet history: opening it (repairing an interrupted compaction,
//! reloading recent slots into the live windows), appending closed slots, closed metric slots
//! and verdict / alert documents, and flushing them.

use crate::config::Config;
use anyhow::Context as _;
use parking_lot::Mutex;
use slogate_core::{MetricSlotRecord, SlotRecord};
use slogate_history::{
    DocRow, DocTable, DocWriter, History, HistoryWriter, Maintenance, MetricWriter, SlotRow,
    SlotWriter,
};
use slogate_window::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Where the flusher takes closed metric slots from at each tick (the metric store's slot
/// closer); set once with [`HistoryParts::set_metric_source`].
pub type MetricSource = Arc<dyn Fn() -> Vec<MetricSlotRecord> + Send + Sync>;

/// The open history: its writers, its query side and its maintenance.
pub struct HistoryParts {
    pub writer: Arc<Mutex<HistoryWriter>>,
    pub query: History,
    /// Closed slots the writer refused (its buffer full): they stay in the live windows.
    pub dropped: Arc<AtomicU64>,
    /// The `metrics` table's writer.
    pub metrics: Arc<Mutex<MetricWriter>>,
    /// Closed metric slots the writer refused (its buffer full): lost to the history.
    pub metrics_dropped: Arc<AtomicU64>,
    metric_source: OnceLock<MetricSource>,
    /// Every gate evaluation and every alert transition, as JSON documents.
    pub verdicts: Arc<Mutex<DocWriter>>,
    pub alerts: Arc<Mutex<DocWriter>>,
    /// Compaction and retention of the history root.
    pub maintenance: Arc<Maintenance>,
}

/// Opens the Parquet history and loads its recent part back into the live windows; `None`
/// when the history is disabled.
pub async fn open(cfg: &Config, registry: &Arc<Registry>) -> anyhow::Result<Option<HistoryParts>> {
    let h = &cfg.history;
    if !h.enabled {
        return Ok(None);
    }
    let extra = cfg.window.extra_dims.clone();
    let store = h.store().context("invalid history location")?;
    let root = store.describe();
    let mut mc = slogate_history::MaintenanceConfig::new(extra.clone());
    mc.retention = Some(h.retention);
    mc.compact_after = h.compact_after;
    let maintenance = Arc::new(Maintenance::new(&store, mc).context("invalid history settings")?);
    // Before anything reads or writes: finish or undo a compaction a crash interrupted, and
    // remove interrupted writes, so no row is counted twice or lost.
    let m = maintenance.clone();
    match tokio::task::spawn_blocking(move || m.recover(true)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::info!(manifests = n, root = %root, "interrupted history compaction repaired")
        }
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("cannot recover the history in {root}"));
        }
        Err(e) => return Err(e).context("history recovery panicked"),
    }
    let mut wc = slogate_history::WriterConfig::new(&store, extra.clone());
    wc.max_buffered_rows = h.max_buffered_rows;
    let metrics = MetricWriter::new(wc.clone())
        .with_context(|| format!("cannot open the history in {root}"))?;
    let writer =
        HistoryWriter::new(wc).with_context(|| format!("cannot open the history in {root}"))?;
    let query = History::open(&store, &extra)
        .await
        .with_context(|| format!("cannot read the history in {root}"))?;
    let since = registry.now_unix().saturating_sub(h.reload.as_secs()) as i64;
    let started = std::time::Instant::now();
    match query.load_since(since).await {
        Ok(rows) => match registry.import(&rows) {
            Ok(n) => tracing::info!(
                rows = n,
                elapsed_ms = started.elapsed().as_millis() as u64,
                root = %root,
                "history reloaded into the live windows"
            ),
            Err(e) => {
                tracing::error!(error = %e, "history holds an invalid sketch; reload stopped")
            }
        },
        Err(e) => tracing::error!(error = %e, "could not reload the history; windows start empty"),
    }
    let docs =
        |table| DocWriter::new(&store, table, h.max_buffered_rows).map(|w| Arc::new(Mutex::new(w)));
    Ok(Some(HistoryParts {
        writer: Arc::new(Mutex::new(writer)),
        query,
        dropped: Arc::new(AtomicU64::new(0)),
        metrics: Arc::new(Mutex::new(metrics)),
        metrics_dropped: Arc::new(AtomicU64::new(0)),
        metric_source: OnceLock::new(),
        verdicts: docs(DocTable::Verdicts)?,
        alerts: docs(DocTable::Alerts)?,
        maintenance,
    }))
}

impl HistoryParts {
    /// Appends closed slots; rows the writer refuses are counted as dropped (they stay in the
    /// live windows).
    pub fn append(&self, rows: Vec<SlotRecord>) {
        let n = rows.len();
        if n == 0 {
            return;
        }
        if let Err(e) = self.writer.lock().append_all(rows) {
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            tracing::warn!(rows = n, error = %e, "closed slots not written to the history (they stay in the live windows)");
        }
    }

    /// Appends closed metric slots; rows the writer refuses are counted in `metrics_dropped`.
    pub fn append_metrics(&self, rows: Vec<MetricSlotRecord>) {
        let n = rows.len();
        if n == 0 {
            return;
        }
        if let Err(e) = self.metrics.lock().append_all(rows) {
            self.metrics_dropped.fetch_add(n as u64, Ordering::Relaxed);
            tracing::warn!(rows = n, error = %e, "closed metric slots not written to the history");
        }
    }

    /// Makes every [`HistoryParts::flush`] first take the closed metric slots from `source` and
    /// append them. Only the first call takes effect; returns whether this one did.
    pub fn set_metric_source(&self, source: MetricSource) -> bool {
        self.metric_source.set(source).is_ok()
    }

    /// Writes everything buffered: slots, metric slots (after taking the closed ones from the
    /// metric source), verdicts and alert transitions.
    pub fn flush(&self) {
        if let Some(source) = self.metric_source.get() {
            self.append_metrics(source());
        }
        flush_slots(&self.writer, "closed slots");
        flush_slots(&self.metrics, "metric slots");
        flush_docs(&self.verdicts);
        flush_docs(&self.alerts);
    }
}

/// Appends one document (a verdict or an alert transition) stamped now.
pub fn append_doc(writer: &Mutex<DocWriter>, name: &str, status: &str, doc: serde_json::Value) {
    let at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let row = DocRow {
        at_unix_ms,
        name: name.to_string(),
        status: status.to_string(),
        doc,
    };
    if let Err(e) = writer.lock().append(row) {
        tracing::warn!(error = %e, "document not written to the history");
    }
}

/// Writes the buffered verdict or alert documents. The lock is held only to take them out:
/// verdicts append to this writer, so they must not wait for the Parquet write or an S3 retry.
fn flush_docs(writer: &Mutex<DocWriter>) {
    let batch = {
        let mut w = writer.lock();
        if w.buffered() == 0 {
            return;
        }
        w.take()
    };
    if let Err((e, rest)) = batch.write() {
        tracing::error!(error = %e, "history flush failed; will retry");
        writer.lock().restore(rest);
    }
}

fn flush_slots<R: SlotRow>(writer: &Mutex<SlotWriter<R>>, what: &'static str) {
    let mut w = writer.lock();
    let buffered = w.buffered();
    if buffered == 0 {
        return;
    }
    match w.flush() {
        Ok(files) => {
            tracing::debug!(
                rows = buffered,
                files = files.len(),
                what,
                "history flushed"
            )
        }
        // The rows stay buffered and the next flush tries again.
        Err(e) => {
            tracing::error!(rows = buffered, error = %e, what, "history flush failed; will retry")
        }
    }
}
