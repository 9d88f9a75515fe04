//! The server's side of the Parquet history: opening it (repairing an interrupted compaction,
//! reloading recent slots into the live windows, reading back the verdict log and the alert
//! states), appending closed slots, closed metric slots and verdict / alert documents, and
//! flushing them. What it wrote durably and what it repaired on start are on `/metrics`.

use crate::config::Config;
use crate::engine::gates::VerdictDoc;
use anyhow::Context as _;
use parking_lot::Mutex;
use slogate_core::{MetricSlotRecord, SlotRecord};
use slogate_history::{
    DocRow, DocTable, DocWriter, History, HistoryWriter, Maintenance, MetricWriter, RecoverReport,
    SlotRow, SlotWriter, Written,
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
    /// The `metrics` table's writer.
    pub metrics: Arc<Mutex<MetricWriter>>,
    /// Write failures, refused rows and backlog per table, for `/metrics` and `/readyz`.
    pub health: Arc<HistoryHealth>,
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
    let recovered = match tokio::task::spawn_blocking(move || m.recover(true)).await {
        Ok(Ok(r)) => {
            if r != RecoverReport::default() {
                tracing::warn!(
                    rolled_forward = r.rolled_forward,
                    rolled_back = r.rolled_back,
                    tmp_removed = r.tmp_removed,
                    root = %root,
                    "history repaired after an interrupted run"
                );
            }
            r
        }
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("cannot recover the history in {root}"));
        }
        Err(e) => return Err(e).context("history recovery panicked"),
    };
    let mut wc = slogate_history::WriterConfig::new(&store, extra.clone());
    wc.max_buffered_rows = h.max_buffered_rows;
    let metrics = MetricWriter::new(wc.clone())
        .with_context(|| format!("cannot open the history in {root}"))?;
    let writer =
        HistoryWriter::new(wc).with_context(|| format!("cannot open the history in {root}"))?;
    let query = History::open_with(&store, &extra, h.sql_limits)
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
    let (verdicts, alerts) = (docs(DocTable::Verdicts)?, docs(DocTable::Alerts)?);
    let health = HistoryHealth {
        written: [
            writer.written(),
            metrics.written(),
            verdicts.lock().written(),
            alerts.lock().written(),
        ],
        recovered,
        ..HistoryHealth::default()
    };
    Ok(Some(HistoryParts {
        writer: Arc::new(Mutex::new(writer)),
        query,
        metrics: Arc::new(Mutex::new(metrics)),
        health: Arc::new(health),
        metric_source: OnceLock::new(),
        verdicts,
        alerts,
        maintenance,
    }))
}

/// What a restart reads back from the document tables: the newest verdicts (newest first) and
/// each alert's last transition.
#[derive(Debug, Default)]
pub struct Restored {
    pub verdicts: Vec<VerdictDoc>,
    pub alerts: Vec<crate::engine::alerts::RestoredAlert>,
}

/// `f`'s answer within `timeout`, an error naming `what` otherwise.
async fn within<T>(
    what: &str,
    timeout: std::time::Duration,
    f: impl std::future::Future<Output = Result<T, slogate_history::HistoryError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: not read within {timeout:?}")),
    }
}

/// Alerts whose last transition is read back at most (distinct dedup keys).
const ALERTS_RESTORED: usize = 10_000;

/// Metric slots a restart reads back at most (the newest first), about 100 bytes each.
const METRIC_SLOTS_RESTORED: usize = 500_000;

impl HistoryParts {
    /// Gives the metric store the history's slots of its retention, so that a window reaching
    /// back before this start is answered from them and the points since (see
    /// `slogate_metrics::MetricStore::restore`). A failure is logged; the store then starts
    /// empty, as before there was a history.
    pub async fn restore_metrics(&self, store: &slogate_metrics::MetricStore) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let since = now.saturating_sub(store.config().retention_seconds) as i64;
        let started = std::time::Instant::now();
        match self.query.load_metrics_since(since).await {
            Ok(rows) => {
                let r = store.restore(rows, METRIC_SLOTS_RESTORED);
                tracing::info!(
                    streams = r.streams,
                    slots = r.slots,
                    skipped = r.skipped,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "metric slots reloaded from the history"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "could not reload the metric slots from the history; metric windows start empty"
            ),
        }
    }

    /// Reads back the newest `verdicts` verdict documents and every alert's last transition,
    /// so that a restart neither empties `/api/v1/verdicts` nor pages again for an alert that
    /// was already firing. Every file of the two tables is checked first, and an unreadable
    /// one quarantined (named in the log, counted on `/metrics`) as the reload does for
    /// `requests`, so that it costs its own documents only. A failure is logged and shown on
    /// `/readyz`; the start goes on with an empty log and fresh alert states.
    pub async fn restore(&self, verdicts: usize, timeout: std::time::Duration) -> Restored {
        let m = self.maintenance.clone();
        let tables = DocTable::ALL.map(DocTable::name);
        match tokio::task::spawn_blocking(move || m.scrub_tables(&tables, None)).await {
            Ok(Ok(r)) => tracing::debug!(
                files = r.files,
                quarantined = r.quarantined,
                "verdict and alert documents checked"
            ),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not check the verdict and alert documents")
            }
            Err(e) => {
                tracing::error!(error = %e, "checking the verdict and alert documents panicked")
            }
        }
        match self.read_back(verdicts, timeout).await {
            Ok(r) => {
                tracing::info!(
                    verdicts = r.verdicts.len(),
                    alerts = r.alerts.len(),
                    firing = r.alerts.iter().filter(|a| a.firing).count(),
                    "verdict log and alert states restored from the history"
                );
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "could not restore the verdict log and alert states from the history; they start empty");
                *self.health.restore_failed.lock() = Some(e);
                Restored::default()
            }
        }
    }

    async fn read_back(
        &self,
        verdicts: usize,
        timeout: std::time::Duration,
    ) -> Result<Restored, String> {
        let docs = |texts: Vec<String>| {
            texts
                .into_iter()
                .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        };
        let found = within(
            "verdicts",
            timeout,
            slogate_history::newest_docs(&self.query, DocTable::Verdicts, verdicts),
        )
        .await?;
        let total = found.len();
        let verdicts: Vec<VerdictDoc> = docs(found)
            .filter_map(|d| serde_json::from_value(d).ok())
            .collect();
        if verdicts.len() < total {
            tracing::warn!(
                skipped = total - verdicts.len(),
                "verdict documents in the history that this version cannot read were not restored"
            );
        }
        // The last transition per alert; `rule` holds the alert's dedup key.
        let (found, truncated) = within(
            "alerts",
            timeout,
            slogate_history::last_doc_per_name(&self.query, DocTable::Alerts, ALERTS_RESTORED),
        )
        .await?;
        if truncated {
            tracing::warn!(
                restored = ALERTS_RESTORED,
                "more alerts in the history than are restored; the others start inactive"
            );
        }
        let alerts = docs(found)
            .filter_map(|d| {
                let text = |key: &str| d.get(key).and_then(|v| v.as_str()).map(str::to_string);
                Some(crate::engine::alerts::RestoredAlert {
                    id: text("id")?,
                    firing: d.get("transition")?.as_str()? == "fired",
                    at_unix: d.get("at_unix")?.as_u64()?,
                    summary: text("summary").unwrap_or_default(),
                    rule: text("rule"),
                    kind: text("kind"),
                    service: text("service"),
                    tier: d
                        .get("tier")
                        .and_then(|t| serde_json::from_value(t.clone()).ok()),
                })
            })
            .collect();
        Ok(Restored { verdicts, alerts })
    }
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
            self.health.dropped[REQUESTS].fetch_add(n as u64, Ordering::Relaxed);
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
            self.health.dropped[METRICS].fetch_add(n as u64, Ordering::Relaxed);
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
        let h = &self.health;
        flush_slots(&self.writer, "closed slots", h, REQUESTS);
        flush_slots(&self.metrics, "metric slots", h, METRICS);
        flush_docs(&self.verdicts, h, VERDICTS);
        flush_docs(&self.alerts, h, ALERTS);
    }
}

impl HistoryParts {
    /// The last flush, at shutdown: retried with back-off (a full disk may be cleaned, an
    /// object store may come back) until everything buffered is written or `within` has
    /// passed; one attempt is made even with no time left. Rows still buffered then are lost:
    /// each table's count is logged as an error, and the total returned, never silent.
    pub async fn flush_at_shutdown(&self, within: std::time::Duration) -> u64 {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + within;
        let mut wait = Duration::from_millis(100);
        loop {
            self.flush();
            let left = self.health.backlog_rows();
            if left == 0 {
                return 0;
            }
            if Instant::now() + wait > deadline {
                break;
            }
            tracing::warn!(
                rows = left,
                retry_in_ms = wait.as_millis() as u64,
                "history flush at shutdown failed; retrying within the shutdown grace"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        let mut lost = 0;
        for (t, table) in TABLES.iter().enumerate() {
            let rows = self.health.backlog[t].load(Ordering::Relaxed);
            if rows > 0 {
                lost += rows;
                let error = self.health.failing.lock()[t].clone().unwrap_or_default();
                tracing::error!(
                    table,
                    rows,
                    %error,
                    "history rows still unwritten when the shutdown grace ended: lost (they were acknowledged; the live windows held them)"
                );
            }
        }
        lost
    }
}

const REQUESTS: usize = 0;
const METRICS: usize = 1;
const VERDICTS: usize = 2;
const ALERTS: usize = 3;
const TABLES: [&str; 4] = ["requests", "metrics", "verdicts", "alerts"];

/// How the history's writes are going, per table: a full disk or an unreachable bucket shows
/// on `/metrics` and `/readyz` instead of only in the log; what was durably written, and what
/// the start repaired after a crash.
#[derive(Default)]
pub struct HistoryHealth {
    /// What each table's writer wrote durably (whole files, fsynced and renamed or put).
    written: [Arc<Written>; 4],
    /// What the start found interrupted and repaired.
    recovered: RecoverReport,
    flush_failures: [AtomicU64; 4],
    /// Rows still buffered after the last flush (unwritten: a failure keeps them for a retry).
    backlog: [AtomicU64; 4],
    /// Rows the writer refused because its buffer was full: lost to the history.
    dropped: [AtomicU64; 4],
    /// The last flush's error per table, cleared by a successful flush.
    failing: Mutex<[Option<String>; 4]>,
    /// Why the verdict log and alert states could not be read back at start.
    restore_failed: Mutex<Option<String>>,
}

impl HistoryHealth {
    fn flushed(&self, table: usize, result: Result<(), String>, backlog: usize) {
        self.backlog[table].store(backlog as u64, Ordering::Relaxed);
        let mut failing = self.failing.lock();
        match result {
            Ok(()) => failing[table] = None,
            Err(e) => {
                self.flush_failures[table].fetch_add(1, Ordering::Relaxed);
                failing[table] = Some(e);
            }
        }
    }

    /// Rows buffered and not yet written, over every table.
    pub fn backlog_rows(&self) -> u64 {
        self.backlog.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// One sentence per table whose last flush failed, for `/readyz`.
    pub fn warnings(&self) -> Vec<String> {
        let failing = self.failing.lock();
        TABLES
            .iter()
            .zip(failing.iter())
            .filter_map(|(t, e)| {
                e.as_ref().map(|e| {
                    format!(
                        "history writes to the {t} table are failing (rows kept for a retry while the buffer lasts): {e}"
                    )
                })
            })
            .chain(self.restore_failed.lock().as_ref().map(|e| {
                format!(
                    "the verdict log and alert states were not restored from the history (they started empty): {e}"
                )
            }))
            .collect()
    }

    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let per_table = |out: &mut String, name, kind, help, values: &[AtomicU64; 4]| {
            let mut f = family(out, name, kind, help);
            for (t, v) in TABLES.iter().zip(values) {
                f.sample(&[("table", t)], v.load(Ordering::Relaxed));
            }
        };
        per_table(
            out,
            "slogate_history_flush_failures_total",
            Kind::Counter,
            "History flushes that failed (full disk, unreachable object store); the rows stay buffered and are retried.",
            &self.flush_failures,
        );
        per_table(
            out,
            "slogate_history_backlog_rows",
            Kind::Gauge,
            "Rows buffered for the history and not yet written.",
            &self.backlog,
        );
        per_table(
            out,
            "slogate_history_dropped_rows_total",
            Kind::Counter,
            "Rows the history writer refused because its buffer was full: never written.",
            &self.dropped,
        );
        let written = |out: &mut String, name, help, get: fn(&Written) -> u64| {
            let mut f = family(out, name, Kind::Counter, help);
            for (t, w) in TABLES.iter().zip(&self.written) {
                f.sample(&[("table", t)], get(w));
            }
        };
        written(
            out,
            "slogate_history_files_written_total",
            "History files written whole: fsynced and renamed (or put to the object store).",
            Written::files,
        );
        written(
            out,
            "slogate_history_rows_written_total",
            "Rows in the history files written whole: durable once counted.",
            Written::rows,
        );
        family(
            out,
            "slogate_history_spans_written_total",
            Kind::Counter,
            "Spans in the requests rows written whole: durable once counted, they survive a kill.",
        )
        .sample(&[], self.written[REQUESTS].observations());
        let r = &self.recovered;
        family(
            out,
            "slogate_history_interrupted_writes_removed_total",
            Kind::Counter,
            "Temporary files of writes a crash interrupted, removed on start (never read: a file is visible only once whole).",
        )
        .sample(&[], r.tmp_removed as u64);
        let mut f = family(
            out,
            "slogate_history_compactions_recovered_total",
            Kind::Counter,
            "Compactions a crash interrupted, finished (rolled_forward) or undone (rolled_back) on start.",
        );
        f.sample(&[("outcome", &"rolled_forward")], r.rolled_forward as u64);
        f.sample(&[("outcome", &"rolled_back")], r.rolled_back as u64);
        let failing = self.failing.lock();
        let mut f = family(
            out,
            "slogate_history_write_failing",
            Kind::Gauge,
            "1 while the last history flush of the table failed.",
        );
        for (t, e) in TABLES.iter().zip(failing.iter()) {
            f.sample(&[("table", t)], u64::from(e.is_some()));
        }
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
fn flush_docs(writer: &Mutex<DocWriter>, health: &HistoryHealth, table: usize) {
    let batch = {
        let mut w = writer.lock();
        if w.buffered() == 0 {
            health.flushed(table, Ok(()), 0);
            return;
        }
        w.take()
    };
    match batch.write() {
        Ok(_) => health.flushed(table, Ok(()), writer.lock().buffered()),
        Err((e, rest)) => {
            tracing::error!(error = %e, "history flush failed; will retry");
            let mut w = writer.lock();
            w.restore(rest);
            health.flushed(table, Err(e.to_string()), w.buffered());
        }
    }
}

fn flush_slots<R: SlotRow>(
    writer: &Mutex<SlotWriter<R>>,
    what: &'static str,
    health: &HistoryHealth,
    table: usize,
) {
    let mut w = writer.lock();
    let buffered = w.buffered();
    if buffered == 0 {
        health.flushed(table, Ok(()), 0);
        return;
    }
    match w.flush() {
        Ok(files) => {
            health.flushed(table, Ok(()), w.buffered());
            tracing::debug!(
                rows = buffered,
                files = files.len(),
                what,
                "history flushed"
            )
        }
        // The rows stay buffered and the next flush tries again.
        Err(e) => {
            health.flushed(table, Err(e.to_string()), w.buffered());
            tracing::error!(rows = buffered, error = %e, what, "history flush failed; will retry")
        }
    }
}
