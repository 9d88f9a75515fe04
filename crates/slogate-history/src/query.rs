//! [`History`]: the read side. A DataFusion session over the Parquet root (local or `s3://`)
//! with the sketch functions registered, a read-only bounded SQL entry point, and the restart
//! reload (file by file, quarantining unreadable ones). Every query holds the store's swap lock
//! shared, so compaction and retention of this process never swap files under it. Queries run
//! under the [`crate::limits`] and on the history's own runtime.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DataFusionError;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use serde::Serialize;
use serde_json::Value;

use crate::HistoryError;
use crate::compact::partition_start;
use crate::docs::DocTable;
use crate::limits::{FOLDED, MAX_QUERY_BYTES, SqlLimits};
use crate::quarantine::read_checked;
use crate::schema::{Table, batch_to_rows, validate_extra_dims};
use crate::store::Store;
use crate::udf::{sketch_udafs, sketch_udfs};
use crate::writer::{METRICS_TABLE, REQUESTS_TABLE};
use slogate_core::{MetricSlotRecord, SlotRecord};

/// The answer of [`History::sql`], ready for a JSON API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// More rows existed than `max_rows`; only the first `max_rows` are in `rows`.
    pub truncated: bool,
}

/// Query side of the history: a session with the `requests` table and the sketch functions.
#[derive(Clone)]
pub struct History {
    ctx: SessionContext,
    extra_dims: Vec<String>,
    root: Store,
    runtime: Arc<SqlRuntime>,
}

/// The runtime [`History::sql`] queries run on: threads of their own (half the cores, at least
/// one), so that a busy query cannot hold the caller's workers (ingest, verdicts), named
/// `slogate-sql` so that their CPU time can be told apart.
struct SqlRuntime(Option<tokio::runtime::Runtime>);

impl SqlRuntime {
    fn new() -> Result<SqlRuntime, HistoryError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("slogate-sql")
            .enable_all()
            .build()
            .map_err(|e| HistoryError::Io {
                path: "slogate-sql runtime".into(),
                source: e,
            })?;
        Ok(SqlRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for SqlRuntime {
    /// Without blocking: the last [`History`] may be dropped on an async worker. A query still
    /// running is aborted at its next yield.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts the query when dropped: on the timeout, and when the caller stops waiting (a client
/// that hung up).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("root", &self.root.describe())
            .field("extra_dims", &self.extra_dims)
            .finish()
    }
}

impl History {
    /// Opens the history under `root` (the store given to the writers); a local root gets
    /// `requests/`, `metrics/`, `verdicts/` and `alerts/` created if needed, so that an empty history
    /// answers queries with no rows. SQL runs under the default [`SqlLimits`].
    pub async fn open(root: impl Into<Store>, extra_dims: &[String]) -> Result<Self, HistoryError> {
        History::open_with(root, extra_dims, SqlLimits::default()).await
    }

    /// [`History::open`] with the given SQL limits.
    pub async fn open_with(
        root: impl Into<Store>,
        extra_dims: &[String],
        limits: SqlLimits,
    ) -> Result<Self, HistoryError> {
        validate_extra_dims(extra_dims)?;
        let root = root.into();
        let ctx = crate::limits::session(limits).map_err(HistoryError::Query)?;
        for udaf in sketch_udafs() {
            ctx.register_udaf(udaf);
        }
        for udf in sketch_udfs() {
            ctx.register_udf(udf);
        }
        for table in Table::ALL {
            register_partitioned(&ctx, &root, table.name(), table.schema(extra_dims)).await?;
        }
        for doc_table in DocTable::ALL {
            register_partitioned(&ctx, &root, doc_table.name(), doc_table.schema()).await?;
        }
        Ok(History {
            ctx,
            extra_dims: extra_dims.to_vec(),
            root,
            runtime: Arc::new(SqlRuntime::new()?),
        })
    }

    /// The root this history reads.
    pub fn store(&self) -> &Store {
        &self.root
    }

    /// Unreadable files moved to the quarantine so far by anything sharing this root's
    /// [`Store`] (the reload, compaction, scrubs): [`Store::quarantined_files`].
    pub fn quarantined_files(&self) -> u64 {
        self.root.quarantined_files()
    }

    /// The session, for callers that build DataFrames themselves. Queries run on it directly
    /// do not hold the swap lock (see [`Store::swap_lock`]).
    pub fn extra_dims(&self) -> &[String] {
        &self.extra_dims
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one read-only query: at most `max_rows` rows come back (`truncated` says whether
    /// there were more) and the whole query, planning included, is abandoned after `timeout`.
    /// A query over the [`SqlLimits`] fails with [`HistoryError::ResourcesExhausted`], one
    /// longer than [`MAX_QUERY_BYTES`] with [`HistoryError::QueryTooLong`].
    pub async fn sql(
        &self,
        query: &str,
        max_rows: usize,
        timeout: Duration,
    ) -> Result<QueryResult, HistoryError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(HistoryError::QueryTooLong {
                bytes: query.len(),
                max: MAX_QUERY_BYTES,
            });
        }
        self.check_read_only(query)?;
        // The query runs as a task on the SQL runtime so that the deadline is kept by the
        // caller's task even while the query is busy, and so that aborting it (on the deadline,
        // or when the caller goes away) stops the work at its next yield.
        let (ctx, query) = (self.ctx.clone(), query.to_owned());
        let swap = self.root.swap_lock();
        let mut task = AbortOnDrop(self.runtime.handle().spawn(async move {
            let _shared = swap.read_owned().await;
            run_query(&ctx, &query, max_rows).await
        }));
        match tokio::time::timeout(timeout, &mut task.0).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(HistoryError::Query(DataFusionError::External(Box::new(
                join,
            )))),
            Err(_) => Err(HistoryError::Timeout(timeout)),
        }
    }

    /// Rejects everything but queries (and `EXPLAIN` of a query) with a message naming the
    /// statement. `SQLOptions` in [`History::sql`] is a second line of defence.
    fn check_read_only(&self, query: &str) -> Result<(), HistoryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let stmt = state
            .sql_to_statement(query, &dialect)
            .map_err(HistoryError::Query)?;
        let rejected = |s: &dyn std::fmt::Display| {
            let text = s.to_string();
            let statement = text.split_whitespace().next().unwrap_or("").to_uppercase();
            Err(HistoryError::ReadOnly { statement })
        };
        fn allowed(stmt: &DfStatement) -> bool {
            match stmt {
                DfStatement::Statement(s) => match s.as_ref() {
                    SqlStatement::Query(_) => true,
                    SqlStatement::Explain { statement, .. } => {
                        matches!(statement.as_ref(), SqlStatement::Query(_))
                    }
                    _ => false,
                },
                DfStatement::Explain(e) => allowed(&e.statement),
                _ => false,
            }
        }
        if allowed(&stmt) {
            Ok(())
        } else {
            rejected(&stmt)
        }
    }

    /// Every row with `slot_start >= since_unix`, ordered by slot start then series: what a
    /// restarting instance reloads into its rings.
    ///
    /// Each file of the hour partitions that can hold such rows is read whole and checked (see
    /// [`crate::quarantine`]); an unreadable one is skipped, named in an error log, moved to the
    /// quarantine and counted, and the rest is loaded. Errors only when the table cannot be
    /// listed at all.
    pub async fn load_since(&self, since_unix: i64) -> Result<Vec<SlotRecord>, HistoryError> {
        let shared = self.root.swap_lock().read_owned().await;
        let (store, extra) = (self.root.clone(), self.extra_dims.clone());
        tokio::task::spawn_blocking(move || {
            let _shared = shared;
            load_rows(&store, &extra, since_unix)
        })
        .await
        .map_err(|e| HistoryError::Query(DataFusionError::External(Box::new(e))))?
    }

    /// Every `metrics` row with `slot_start >= since_unix`, ordered by slot start: what a
    /// restarting instance gives its metric store, files checked as [`History::load_since`]
    /// does.
    pub async fn load_metrics_since(
        &self,
        since_unix: i64,
    ) -> Result<Vec<MetricSlotRecord>, HistoryError> {
        let shared = self.root.swap_lock().read_owned().await;
        let (store, extra) = (self.root.clone(), self.extra_dims.clone());
        tokio::task::spawn_blocking(move || {
            let _shared = shared;
            load_metric_rows(&store, &extra, since_unix)
        })
        .await
        .map_err(|e| HistoryError::Query(DataFusionError::External(Box::new(e))))?
    }
}

/// [`History::load_since`], blocking.
fn load_rows(
    store: &Store,
    extra_dims: &[String],
    since_unix: i64,
) -> Result<Vec<SlotRecord>, HistoryError> {
    let mut rows = load_table(store, REQUESTS_TABLE, extra_dims, since_unix, |b, extra| {
        batch_to_rows(b, extra)
    })?;
    rows.retain(|r| r.slot_start_unix >= since_unix);
    rows.sort_by(|a, b| {
        a.slot_start_unix
            .cmp(&b.slot_start_unix)
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(rows)
}

/// [`History::load_metrics_since`], blocking.
fn load_metric_rows(
    store: &Store,
    extra_dims: &[String],
    since_unix: i64,
) -> Result<Vec<MetricSlotRecord>, HistoryError> {
    let mut rows = load_table(store, METRICS_TABLE, extra_dims, since_unix, |b, extra| {
        crate::schema::batch_to_metric_rows(b, extra)
    })?;
    rows.retain(|r| r.slot_start_unix >= since_unix);
    rows.sort_by(|a, b| {
        (a.slot_start_unix, &a.metric, &a.service, &a.instance).cmp(&(
            b.slot_start_unix,
            &b.metric,
            &b.service,
            &b.instance,
        ))
    });
    Ok(rows)
}

/// Every row of `table` in the hour partitions that can hold rows from `since_unix` on, each
/// file read whole and checked; an unreadable one is quarantined (or logged) and skipped.
fn load_table<R>(
    store: &Store,
    table: &str,
    extra_dims: &[String],
    since_unix: i64,
    rows_of: impl Fn(&RecordBatch, &[String]) -> Result<Vec<R>, HistoryError>,
) -> Result<Vec<R>, HistoryError> {
    let mut rows = Vec::new();
    for entry in store.list(table)? {
        let Some(start) = partition_of_key(&entry.key) else {
            continue;
        };
        if !entry.key.ends_with(".parquet") || start.saturating_add(3600) <= since_unix {
            continue;
        }
        let bytes = match store.get(&entry.key) {
            Ok(Some(bytes)) => bytes,
            // Gone since the listing: compacted or expired by another process.
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(key = %entry.key, error = %e, "history file could not be read; its rows are not reloaded");
                continue;
            }
        };
        match read_checked(&entry.key, bytes)
            .and_then(|batches| rows_in(&batches, extra_dims, &rows_of))
        {
            Ok(found) => rows.extend(found),
            Err(reason) => quarantine_or_log(store, &entry.key, &reason),
        }
    }
    Ok(rows)
}

/// Moves an unreadable file aside; when even that fails, says so (the file is skipped anyway).
pub(crate) fn quarantine_or_log(store: &Store, key: &str, reason: &str) {
    if let Err(e) = store.quarantine(key, reason) {
        tracing::error!(key = %key, reason = %reason, error = %e, "unreadable history file skipped but could not be moved to quarantine");
    }
}

/// The rows of a file's batches with `slot_start >= since_unix`. Extra dimensions the file
/// lacks (written before they were configured) read as empty; a missing or mistyped fixed
/// column makes the file unreadable.
/// The rows of `batches`, read by `rows_of`; a file written before an extra dimension was
/// configured reads it as empty.
fn rows_in<R>(
    batches: &[RecordBatch],
    extra_dims: &[String],
    rows_of: &impl Fn(&RecordBatch, &[String]) -> Result<Vec<R>, HistoryError>,
) -> Result<Vec<R>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let batch = pad_extra_dims(batch, extra_dims)?;
        out.extend(rows_of(&batch, extra_dims).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// `batch` with an empty column for each extra dimension it lacks (a file written before the
/// dimension was configured).
pub(crate) fn pad_extra_dims(
    batch: &RecordBatch,
    extra_dims: &[String],
) -> Result<RecordBatch, String> {
    let mut batch = batch.clone();
    for dim in extra_dims {
        if batch.column_by_name(dim).is_none() {
            let empty: ArrayRef = Arc::new(StringArray::from(vec![""; batch.num_rows()]));
            let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(dim, DataType::Utf8, false)));
            let mut columns = batch.columns().to_vec();
            columns.push(empty);
            batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(batch)
}

/// The Unix second the hour partition of `<table>/date=D/hour=H/<file>` starts.
pub(crate) fn partition_of_key(key: &str) -> Option<i64> {
    let mut segs = key.split('/');
    let (Some(_), Some(d), Some(h), Some(_), None) = (
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
        segs.next(),
    ) else {
        return None;
    };
    partition_start(d.strip_prefix("date=")?, h.strip_prefix("hour=")?)
}

async fn run_query(
    ctx: &SessionContext,
    query: &str,
    max_rows: usize,
) -> Result<QueryResult, HistoryError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    // Planning folds constants; what it computes is limited per query (see `crate::limits`).
    let (columns, plan) = FOLDED
        .scope(Arc::new(AtomicUsize::new(0)), async {
            let df = ctx.sql_with_options(query, options).await?;
            let columns: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            // One row beyond the limit tells whether the result was cut. EXPLAIN must stay the
            // root of its plan; its few rows are cut after collecting instead.
            let df = match df.logical_plan() {
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => df,
                _ => df.limit(0, Some(max_rows.saturating_add(1)))?,
            };
            Ok::<_, DataFusionError>((columns, df.create_physical_plan().await?))
        })
        .await
        .map_err(query_error)?;
    // The result is charged to the same pool as the operators: the batches, then their JSON.
    let result = MemoryConsumer::new("sql result").register(&ctx.runtime_env().memory_pool);
    let batches = collect_plan(plan, ctx, &result).await?;
    let mut rows = Vec::new();
    for batch in &batches {
        let json_bytes = batch
            .get_array_memory_size()
            .saturating_add(48 * batch.num_rows() * batch.num_columns().max(1));
        grow_result(&result, json_bytes)?;
        let cols: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(column_to_json)
            .collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    let truncated = rows.len() > max_rows;
    rows.truncate(max_rows);
    Ok(QueryResult {
        columns,
        rows,
        truncated,
    })
}

/// Runs `plan` to the end, charging every batch kept to `result`; a panic while reading (a
/// decoder meeting a corrupt file) becomes an error instead of unwinding into the caller.
async fn collect_plan(
    plan: Arc<dyn ExecutionPlan>,
    ctx: &SessionContext,
    result: &MemoryReservation,
) -> Result<Vec<RecordBatch>, HistoryError> {
    use futures::{FutureExt, StreamExt};
    let run = async {
        let mut stream = execute_stream(plan, ctx.task_ctx()).map_err(query_error)?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_error)?;
            grow_result(result, batch.get_array_memory_size())?;
            batches.push(batch);
        }
        Ok(batches)
    };
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(HistoryError::Corrupt(
            "the query panicked while reading the history (a corrupt file?)".to_string(),
        )),
    }
}

fn grow_result(result: &MemoryReservation, bytes: usize) -> Result<(), HistoryError> {
    result.try_grow(bytes).map_err(|e| {
        HistoryError::ResourcesExhausted(format!("the result does not fit: {}", e.find_root()))
    })
}

/// A query's error, with a refusal of the limits (however deeply DataFusion wrapped it) told
/// apart from the query's own mistakes.
fn query_error(e: DataFusionError) -> HistoryError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(message) => {
            HistoryError::ResourcesExhausted(message.clone())
        }
        _ => HistoryError::Query(e),
    }
}

/// Registers `name` as a listing table of hive-partitioned Parquet files under `root/name/`.
async fn register_partitioned(
    ctx: &SessionContext,
    root: &Store,
    name: &str,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<(), HistoryError> {
    let (store, runtime, table) = (root.clone(), ctx.runtime_env(), name.to_string());
    // Local roots create the directory: blocking I/O, off the async workers.
    let dir = tokio::task::spawn_blocking(move || store.register_table_url(&runtime, &table))
        .await
        .map_err(|e| HistoryError::Query(DataFusionError::External(Box::new(e))))??;
    // A trailing slash makes the URL a directory to list recursively.
    let url = ListingTableUrl::parse(dir).map_err(HistoryError::Query)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("date".to_string(), DataType::Utf8),
            ("hour".to_string(), DataType::Utf8),
        ]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(HistoryError::Query)?;
    ctx.register_table(name, Arc::new(table))
        .map_err(HistoryError::Query)?;
    Ok(())
}

/// One column as JSON values: numbers as numbers (non-finite floats as null), strings as
/// strings, binary as lowercase hex, anything else (timestamps, decimals...) as Arrow displays it.
fn column_to_json(arr: &ArrayRef) -> Result<Vec<Value>, HistoryError> {
    use datafusion::arrow::datatypes::*;
    let n = arr.len();
    macro_rules! prim {
        ($t:ty) => {{
            let a = arr.as_primitive::<$t>();
            (0..n)
                .map(|i| {
                    if a.is_valid(i) {
                        Value::from(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }};
    }
    fn hex(b: &[u8]) -> Value {
        Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
    }
    Ok(match arr.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => arr
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let a = cast(arr, &DataType::Float64).map_err(|e| HistoryError::Query(e.into()))?;
            let a = a.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    a.is_valid(i)
                        .then(|| serde_json::Number::from_f64(a.value(i)))
                        .flatten()
                        .map_or(Value::Null, Value::Number)
                })
                .collect()
        }
        DataType::Utf8 => arr
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        DataType::LargeUtf8 => arr
            .as_string::<i64>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        DataType::Utf8View => arr
            .as_string_view()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect(),
        DataType::Binary => arr
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, hex))
            .collect(),
        DataType::LargeBinary => arr
            .as_binary::<i64>()
            .iter()
            .map(|v| v.map_or(Value::Null, hex))
            .collect(),
        DataType::BinaryView => arr
            .as_binary_view()
            .iter()
            .map(|v| v.map_or(Value::Null, hex))
            .collect(),
        DataType::Dictionary(_, value) => {
            let plain = cast(arr, value).map_err(|e| HistoryError::Query(e.into()))?;
            column_to_json(&plain)?
        }
        _ => {
            let options = FormatOptions::default();
            let f = ArrayFormatter::try_new(arr.as_ref(), &options)
                .map_err(|e| HistoryError::Query(e.into()))?;
            (0..n)
                .map(|i| {
                    if arr.is_valid(i) {
                        Value::String(f.value(i).to_string())
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
    })
}
