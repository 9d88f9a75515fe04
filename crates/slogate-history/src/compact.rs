//! [`Maintenance`]: compaction of closed hour partitions and retention, both crash-safe.
//!
//! # Compaction
//!
//! A closed hour partition (its hour ended `compact_after` ago) with two or more Parquet files is
//! merged into one zstd file sorted for pruning (`requests`: service, operation, slot_start, then
//! the rest of the series key; `metrics`: service, metric, slot_start, then the rest of the
//! stream key but its attributes; document tables: `at`). The steps, for partition `P`:
//!
//! 1. put `P/compact-<id>.manifest.json` naming the output and every input;
//! 2. put `P/compact-<id>.crc<crc32>.parquet` (its key-value metadata `slogate.compacted_from`
//!    lists the inputs too);
//! 3. delete the inputs;
//! 4. delete the manifest.
//!
//! Steps 2 and 3 run under the store's swap lock held exclusively, so this process's queries
//! see either the inputs or the output, never both. A crash between any two steps is repaired by
//! [`Maintenance::recover`] (run on start and before each pass): a manifest whose output exists
//! rolls forward (its remaining inputs are deleted); one whose output does not rolls back (the
//! manifest is deleted, the inputs were never touched). So after a restart no row is counted
//! twice or lost. An external reader (DuckDB, Spark) listing the files during steps 2-3, or
//! between a crash and the next start, can see both the output and its inputs.
//!
//! Only one process may maintain a root: instances that share a bucket use distinct prefixes.
//!
//! # Retention
//!
//! Partitions whose hour ended more than `retention` ago are deleted, oldest first, each under
//! the swap lock. Deleting is idempotent, so a crash midway is finished by the next pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::arrow::array::RecordBatch;
use crate::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use crate::arrow::datatypes::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::HistoryError;
use crate::baseline::BASELINES_DIR;
use crate::docs::DocTable;
use crate::quarantine::{checked_name, read_checked};
use crate::query::quarantine_or_log;
use crate::schema::{Table, validate_extra_dims};
use crate::store::{ObjectEntry, Store};
use crate::writer::{encode_parquet, next_file_number, partition_dir};

/// Key-value metadata key of a compacted file: the JSON list of its input keys.
pub const COMPACTED_FROM: &str = "slogate.compacted_from";

/// Settings of [`Maintenance`].
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Configured extra dimensions, in configuration order (the `requests` and `metrics`
    /// schemas).
    pub extra_dims: Vec<String>,
    /// An hour partition is compacted once its hour ended this long ago.
    pub compact_after: Duration,
    /// Partitions whose hour ended longer ago than this are deleted; `None` keeps everything.
    pub retention: Option<Duration>,
    /// Partitions whose files add up to more than this are left as they are (memory bound: a
    /// partition is merged in memory).
    pub max_partition_bytes: u64,
    pub zstd_level: i32,
    /// Rows per row group of a compacted file: small enough for row-group statistics to prune.
    pub row_group_rows: usize,
}

impl MaintenanceConfig {
    pub fn new(extra_dims: Vec<String>) -> Self {
        MaintenanceConfig {
            extra_dims,
            compact_after: Duration::from_secs(600),
            retention: Some(Duration::from_secs(30 * 86_400)),
            max_partition_bytes: 512 << 20,
            zstd_level: 3,
            row_group_rows: 16_384,
        }
    }
}

/// Where [`Maintenance`] stops with [`HistoryError::Injected`] when told to, to test recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The manifest is written, the output is not.
    AfterManifest,
    /// The output is written, every input is still there.
    AfterOutput,
    /// One input is deleted.
    AfterFirstInputDeleted,
    /// Every input is deleted, the manifest is still there.
    AfterInputsDeleted,
    /// Retention deleted one file of a partition.
    AfterFirstExpiredFile,
}

/// What a compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_in: usize,
    pub rows: usize,
    /// Partitions left alone because they exceed `max_partition_bytes` or hold files of another
    /// schema.
    pub skipped: usize,
}

/// What a scrub pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Parquet files read.
    pub files: usize,
    /// Of those, files found unreadable and moved to the quarantine.
    pub quarantined: usize,
}

/// What [`Maintenance::recover`] repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Interrupted compactions finished: the output was complete, the inputs were deleted.
    pub rolled_forward: usize,
    /// Interrupted compactions undone: no output, the manifest was deleted.
    pub rolled_back: usize,
    /// `.tmp` files of interrupted writes deleted (only when asked to).
    pub tmp_removed: usize,
}

impl RecoverReport {
    /// Compaction manifests repaired either way.
    pub fn manifests(&self) -> usize {
        self.rolled_forward + self.rolled_back
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub partitions: usize,
    pub files: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    output: String,
    inputs: Vec<String>,
}

/// One `<table>/date=D/hour=H/` directory and its objects.
#[derive(Debug)]
struct Partition {
    table: String,
    date: String,
    hour: String,
    /// Unix second the hour starts.
    start: i64,
    files: Vec<ObjectEntry>,
}

/// Compaction, retention and crash recovery of one history root. All methods do blocking I/O
/// and take the swap lock with a blocking call: run them on `spawn_blocking` or a plain thread.
pub struct Maintenance {
    store: Store,
    config: MaintenanceConfig,
    props: WriterProperties,
    crash_at: Option<CrashPoint>,
}

impl std::fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintenance")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl Maintenance {
    pub fn new(store: impl Into<Store>, config: MaintenanceConfig) -> Result<Self, HistoryError> {
        validate_extra_dims(&config.extra_dims)?;
        let level = ZstdLevel::try_new(config.zstd_level)
            .map_err(|e| HistoryError::Config(format!("zstd level {}: {e}", config.zstd_level)))?;
        if config.row_group_rows == 0 {
            return Err(HistoryError::Config(
                "row_group_rows must be positive".into(),
            ));
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(config.row_group_rows))
            .build();
        Ok(Maintenance {
            store: store.into(),
            config,
            props,
            crash_at: None,
        })
    }

    /// Test hook: stop with [`HistoryError::Injected`] at `point` (once per call that reaches it).
    #[doc(hidden)]
    pub fn set_crash_point(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    fn crash(&self, point: CrashPoint) -> Result<(), HistoryError> {
        if self.crash_at == Some(point) {
            Err(HistoryError::Injected(point))
        } else {
            Ok(())
        }
    }

    /// Recovery, retention, then compaction, as the background task runs them.
    pub fn run_once(
        &self,
        now_unix: i64,
    ) -> Result<(RetentionReport, CompactReport), HistoryError> {
        self.recover(false)?;
        let retained = self.retain(now_unix)?;
        let compacted = self.compact(now_unix)?;
        Ok((retained, compacted))
    }

    /// Finishes or undoes what a crash interrupted: manifests roll forward when their output
    /// exists and back when it does not. With `remove_tmp` (on start, before any writer runs),
    /// leftover local `.tmp` files of interrupted writes (of the tables and of the stored
    /// baselines) are deleted too, each logged.
    pub fn recover(&self, remove_tmp: bool) -> Result<RecoverReport, HistoryError> {
        let mut report = RecoverReport::default();
        if remove_tmp {
            for entry in self.store.list(BASELINES_DIR)? {
                if entry.key.ends_with(".tmp") {
                    self.store.delete(&entry.key)?;
                    report.tmp_removed += 1;
                    tracing::warn!(key = %entry.key, bytes = entry.size, "interrupted history write removed");
                }
            }
        }
        for table in tables() {
            let entries = self.store.list(table.name())?;
            let keys: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            for entry in &entries {
                if remove_tmp && entry.key.ends_with(".tmp") {
                    self.store.delete(&entry.key)?;
                    report.tmp_removed += 1;
                    tracing::warn!(key = %entry.key, bytes = entry.size, "interrupted history write removed");
                }
                if !entry.key.ends_with(".manifest.json") {
                    continue;
                }
                let Some(bytes) = self.store.get(&entry.key)? else {
                    continue;
                };
                let manifest: Manifest = match serde_json::from_slice(&bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "unreadable compaction manifest left alone");
                        continue;
                    }
                };
                if keys.contains(manifest.output.as_str()) {
                    let swap = self.store.swap_lock();
                    let _exclusive = swap.blocking_write();
                    for input in &manifest.inputs {
                        self.store.delete(input)?;
                    }
                    tracing::info!(output = %manifest.output, inputs = manifest.inputs.len(), "interrupted compaction rolled forward");
                    report.rolled_forward += 1;
                } else {
                    tracing::info!(output = %manifest.output, "interrupted compaction rolled back");
                    report.rolled_back += 1;
                }
                self.store.delete(&entry.key)?;
            }
        }
        Ok(report)
    }

    /// Merges every closed hour partition that has two or more Parquet files into one.
    pub fn compact(&self, now_unix: i64) -> Result<CompactReport, HistoryError> {
        let mut report = CompactReport::default();
        let closed_before = now_unix.saturating_sub(self.config.compact_after.as_secs() as i64);
        for table in tables() {
            let schema = self.schema_of(table);
            let order = self.pruning_order(table);
            let table = table.name();
            for p in self.partitions(table)? {
                if p.start.saturating_add(3600) > closed_before {
                    continue;
                }
                if p.files.iter().any(|f| f.key.ends_with(".manifest.json")) {
                    // Left by a crash: the next recovery deals with it first.
                    continue;
                }
                let inputs: Vec<&ObjectEntry> = p
                    .files
                    .iter()
                    .filter(|f| f.key.ends_with(".parquet"))
                    .collect();
                if inputs.len() < 2 {
                    continue;
                }
                let bytes: u64 = inputs.iter().map(|f| f.size).sum();
                if bytes > self.config.max_partition_bytes {
                    tracing::warn!(table, date = %p.date, hour = %p.hour, bytes, max = self.config.max_partition_bytes, "history partition too large to compact; left as it is");
                    report.skipped += 1;
                    continue;
                }
                match self.compact_partition(&p, &inputs, &schema, &order)? {
                    Some(rows) => {
                        report.partitions += 1;
                        report.files_in += inputs.len();
                        report.rows += rows;
                    }
                    None => report.skipped += 1,
                }
            }
        }
        if report.partitions > 0 {
            tracing::info!(
                partitions = report.partitions,
                files = report.files_in,
                rows = report.rows,
                "history compacted"
            );
        }
        Ok(report)
    }

    fn compact_partition(
        &self,
        p: &Partition,
        inputs: &[&ObjectEntry],
        schema: &SchemaRef,
        order: &[String],
    ) -> Result<Option<usize>, HistoryError> {
        let mut batches = Vec::new();
        for input in inputs {
            let Some(bytes) = self.store.get(&input.key)? else {
                // Gone since the listing (another pass, retention): try again next time.
                return Ok(None);
            };
            let read = match read_checked(&input.key, bytes) {
                Ok(read) => read,
                Err(reason) => {
                    // Out of the partition, so the next pass compacts the rest.
                    quarantine_or_log(&self.store, &input.key, &reason);
                    return Ok(None);
                }
            };
            for batch in read {
                if !same_columns(&batch.schema(), schema) {
                    tracing::warn!(key = %input.key, "history file has another schema (extra dimensions changed?); partition not compacted");
                    return Ok(None);
                }
                batches.push(
                    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                        .map_err(|e| HistoryError::Corrupt(format!("{}: {e}", input.key)))?,
                );
            }
        }
        let merged = concat_batches(schema, &batches)
            .map_err(|e| HistoryError::Corrupt(format!("merging {}: {e}", p.table)))?;
        drop(batches);
        let sorted = sort_for_pruning(&p.table, &merged, order)?;
        let rows = sorted.num_rows();
        let dir = partition_dir(&p.table, &p.date, &p.hour);
        let id = format!("compact-{}-{}", now_ms(), next_file_number());
        let input_keys: Vec<String> = inputs.iter().map(|f| f.key.clone()).collect();
        let listed = serde_json::to_string(&input_keys).unwrap_or_default();
        let bytes = encode_parquet(
            schema.clone(),
            &[sorted],
            &self.props,
            &[(COMPACTED_FROM.to_string(), listed)],
        )?;
        let output = format!("{dir}/{}", checked_name(&id, &bytes));
        let manifest = Manifest {
            output: output.clone(),
            inputs: input_keys.clone(),
        };
        let manifest_key = format!("{dir}/{id}.manifest.json");
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| HistoryError::Corrupt(format!("manifest: {e}")))?;
        self.store.put(&manifest_key, manifest_bytes)?;
        self.crash(CrashPoint::AfterManifest)?;
        {
            let swap = self.store.swap_lock();
            let _exclusive = swap.blocking_write();
            self.store.put(&output, bytes)?;
            self.crash(CrashPoint::AfterOutput)?;
            for (i, input) in input_keys.iter().enumerate() {
                self.store.delete(input)?;
                if i == 0 {
                    self.crash(CrashPoint::AfterFirstInputDeleted)?;
                }
            }
        }
        self.crash(CrashPoint::AfterInputsDeleted)?;
        self.store.delete(&manifest_key)?;
        tracing::debug!(output = %output, inputs = inputs.len(), rows, "history partition compacted");
        Ok(Some(rows))
    }

    /// Reads every Parquet file of every table (of the hour partitions that end after
    /// `since_unix`, or all with `None`) whole, checked as in [`crate::quarantine`], and moves
    /// the unreadable ones to the quarantine: what the restart reload does for its own range,
    /// for the whole history, so that old corrupt files stop failing SQL over their partitions.
    /// Reads everything it checks, one file at a time: run it in the background.
    pub fn scrub(&self, since_unix: Option<i64>) -> Result<ScrubReport, HistoryError> {
        let names: Vec<&str> = tables().map(AnyTable::name).collect();
        self.scrub_tables(&names, since_unix)
    }

    /// [`Maintenance::scrub`] of the named tables only: the start reads the whole document
    /// tables (`verdicts`, `alerts`) back, so it checks them first, and a damaged file costs
    /// its own documents instead of the whole restore.
    pub fn scrub_tables(
        &self,
        names: &[&str],
        since_unix: Option<i64>,
    ) -> Result<ScrubReport, HistoryError> {
        let mut report = ScrubReport::default();
        for table in names {
            for p in self.partitions(table)? {
                if since_unix.is_some_and(|since| p.start.saturating_add(3600) <= since) {
                    continue;
                }
                for f in p.files.iter().filter(|f| f.key.ends_with(".parquet")) {
                    let Some(bytes) = self.store.get(&f.key)? else {
                        continue;
                    };
                    report.files += 1;
                    if let Err(reason) = read_checked(&f.key, bytes) {
                        quarantine_or_log(&self.store, &f.key, &reason);
                        report.quarantined += 1;
                    }
                }
            }
        }
        if report.quarantined > 0 {
            tracing::warn!(
                files = report.files,
                quarantined = report.quarantined,
                root = %self.store.describe(),
                "history scrub moved unreadable files to quarantine"
            );
        }
        Ok(report)
    }

    /// Deletes every partition whose hour ended more than `retention` before `now_unix`,
    /// oldest first.
    pub fn retain(&self, now_unix: i64) -> Result<RetentionReport, HistoryError> {
        let mut report = RetentionReport::default();
        let Some(retention) = self.config.retention else {
            return Ok(report);
        };
        let cutoff = now_unix.saturating_sub(retention.as_secs() as i64);
        let mut expired: Vec<Partition> = Vec::new();
        for table in tables() {
            expired.extend(
                self.partitions(table.name())?
                    .into_iter()
                    .filter(|p| p.start.saturating_add(3600) <= cutoff),
            );
        }
        expired.sort_by_key(|p| p.start);
        for p in expired {
            let swap = self.store.swap_lock();
            let _exclusive = swap.blocking_write();
            // Data first, manifests last: a half-deleted partition never has a manifest whose
            // output is gone while its inputs are still there.
            let mut files = p.files;
            files.sort_by_key(|f| f.key.ends_with(".manifest.json"));
            for (i, f) in files.iter().enumerate() {
                self.store.delete(&f.key)?;
                report.files += 1;
                if i == 0 {
                    self.crash(CrashPoint::AfterFirstExpiredFile)?;
                }
            }
            report.partitions += 1;
            tracing::debug!(table = %p.table, date = %p.date, hour = %p.hour, "expired history partition deleted");
        }
        if report.partitions > 0 {
            tracing::info!(
                partitions = report.partitions,
                files = report.files,
                retention_seconds = retention.as_secs(),
                "expired history deleted"
            );
        }
        Ok(report)
    }

    fn schema_of(&self, table: AnyTable) -> SchemaRef {
        match table {
            AnyTable::Slots(t) => t.schema(&self.config.extra_dims),
            AnyTable::Docs(t) => t.schema(),
        }
    }

    /// Columns a compacted file is sorted by.
    fn pruning_order(&self, table: AnyTable) -> Vec<String> {
        match table {
            AnyTable::Slots(t) => t.pruning_order(&self.config.extra_dims),
            AnyTable::Docs(t) => vec!["at".to_string(), t.columns().0.to_string()],
        }
    }

    /// The table's hour partitions, oldest first. Objects outside `date=D/hour=H/` are ignored.
    fn partitions(&self, table: &str) -> Result<Vec<Partition>, HistoryError> {
        let mut parts: BTreeMap<(String, String), Partition> = BTreeMap::new();
        for entry in self.store.list(table)? {
            let mut segs = entry.key.split('/');
            let (Some(_), Some(d), Some(h), Some(_), None) = (
                segs.next(),
                segs.next(),
                segs.next(),
                segs.next(),
                segs.next(),
            ) else {
                continue;
            };
            let (Some(date), Some(hour)) = (d.strip_prefix("date="), h.strip_prefix("hour="))
            else {
                continue;
            };
            let Some(start) = partition_start(date, hour) else {
                continue;
            };
            parts
                .entry((date.to_string(), hour.to_string()))
                .or_insert_with(|| Partition {
                    table: table.to_string(),
                    date: date.to_string(),
                    hour: hour.to_string(),
                    start,
                    files: Vec::new(),
                })
                .files
                .push(entry);
        }
        Ok(parts.into_values().collect())
    }
}

/// Every table maintenance covers.
#[derive(Debug, Clone, Copy)]
enum AnyTable {
    Slots(Table),
    Docs(DocTable),
}

impl AnyTable {
    fn name(self) -> &'static str {
        match self {
            AnyTable::Slots(t) => t.name(),
            AnyTable::Docs(t) => t.name(),
        }
    }
}

fn tables() -> impl Iterator<Item = AnyTable> {
    (Table::ALL.into_iter().map(AnyTable::Slots))
        .chain(DocTable::ALL.into_iter().map(AnyTable::Docs))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

/// Sorts a merged partition by `order` (see [`Table::pruning_order`]); columns the batch lacks
/// are skipped.
fn sort_for_pruning(
    table: &str,
    batch: &RecordBatch,
    order: &[String],
) -> Result<RecordBatch, HistoryError> {
    let columns: Vec<SortColumn> = order
        .iter()
        .filter_map(|n| batch.column_by_name(n))
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    let corrupt =
        |e: crate::arrow::error::ArrowError| HistoryError::Corrupt(format!("sorting {table}: {e}"));
    let indices = lexsort_to_indices(&columns, None).map_err(corrupt)?;
    take_record_batch(batch, &indices).map_err(corrupt)
}

/// Unix second at which partition `date=YYYY-MM-DD/hour=HH` starts.
pub(crate) fn partition_start(date: &str, hour: &str) -> Option<i64> {
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let h: i64 = hour.parse().ok()?;
    if it.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&h)
    {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600)
}

/// Howard Hinnant's `days_from_civil`, the inverse of the partition naming.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::partition_of;

    #[test]
    fn partition_start_inverts_partition_of() {
        for unix in [
            0,
            3600,
            951_782_400,
            1_764_000_000 / 3600 * 3600,
            -3600,
            4_102_444_800,
        ] {
            let (date, hour) = partition_of(unix);
            assert_eq!(partition_start(&date, &hour), Some(unix), "{date} {hour}");
        }
        for (date, hour) in [
            ("2025-13-01", "00"),
            ("2025-01-01", "24"),
            ("x", "00"),
            ("2025-01-01-1", "00"),
        ] {
            assert_eq!(partition_start(date, hour), None, "{date} {hour}");
        }
    }
}
