//! The server's side of the Parquet history: opening it (repairing an interrupted compaction,
//! reloading recent slots into the live windows), appending closed slots and verdict / alert
//! documents, and flushing them.

use crate::config::Config;
use anyhow::Context as _;
use parking_lot::Mutex;
use slogate_core::SlotRecord;
use slogate_history::{DocRow, DocTable, DocWriter, History, HistoryWriter, Maintenance};
use slogate_window::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The open history: its writers, its query side and its maintenance.
pub struct HistoryParts {
    pub writer: Arc<Mutex<HistoryWriter>>,
    pub query: History,
    /// Closed slots the writer refused (its buffer full): they stay in the live windows.
    pub dropped: Arc<AtomicU64>,
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

    /// Writes everything buffered: slots, verdicts and alert transitions.
    pub fn flush(&self) {
        flush_slots(&self.writer);
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

fn flush_slots(writer: &Mutex<HistoryWriter>) {
    let mut w = writer.lock();
    let buffered = w.buffered();
    if buffered == 0 {
        return;
    }
    match w.flush() {
        Ok(files) => tracing::debug!(rows = buffered, files = files.len(), "history flushed"),
        // The rows stay buffered and the next flush tries again.
        Err(e) => tracing::error!(rows = buffered, error = %e, "history flush failed; will retry"),
    }
}
