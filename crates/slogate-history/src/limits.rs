//! Resource limits of history SQL: what keeps one hostile query from exhausting the host.
//!
//! DataFusion accounts the memory of the operators that buffer (aggregates, sorts, joins,
//! repartitions, recursive queries) in a memory pool, but not what expressions produce: a
//! projection of `repeat('x', 1e6)` over a thousand rows, a string doubled by each step of a
//! recursive query, a wide row repeated by a cross join, or the batches buffered by
//! `WindowAggExec`. Each of these grew the server without bound. The session built here closes
//! them at four depths, all charged to one pool of [`SqlLimits::memory_limit`] bytes:
//!
//! 1. **The pool** ([`TrackConsumersPool`] over a [`GreedyMemoryPool`], no spilling to disk):
//!    the buffering operators fail with "resources exhausted" naming the largest consumers.
//! 2. **Operators** ([`GuardOperators`], the last physical optimizer rule): every operator's
//!    stream is decorated, invisibly in `EXPLAIN`. Each batch it emits is held in the pool until
//!    the next one; the input of `WindowAggExec` is held whole; rows entering a join or an
//!    unnest, which repeat them, may be at most [`MAX_REPEATED_ROW_BYTES`] wide. Each batch
//!    also takes a unit of tokio's cooperative budget, so that a query yields (and an aborted
//!    one stops) within a batch even where DataFusion's operators make batches without reading
//!    any (a cross join kept computing for seconds after its abort).
//! 3. **Functions** ([`Bounded`]): every scalar function but a few structural ones is wrapped.
//!    Before it runs, its output is estimated from its arguments (exactly for the functions whose
//!    output can outgrow their input many times: `repeat`, `lpad`, `replace`, `range`,
//!    `array_repeat`...) and charged to the operator that evaluates it; afterwards the charge is
//!    corrected to the real size. Charges add up until that operator takes its next input
//!    batch, so neither a thousand calls in one projection nor a chain of `||` can overshoot
//!    unseen. The string `||` operator is rewritten into such a function ([`BoundedFunctions`]);
//!    the superlinear functions are volatile, so that planning never folds them into a constant
//!    that a projection would then copy into every row; what planning does fold is limited to
//!    [`MAX_FOLDED_BYTES`] per query (past it, expressions stay unfolded and are computed, and
//!    charged, per batch).
//! 4. **Shapes**: batches of [`BATCH_ROWS`] rows (so that a repeated row or constant costs at
//!    most that many copies) and queries of at most [`MAX_QUERY_BYTES`] of text (the
//!    constants a query can spell).
//!
//! Every refusal is a `DataFusionError::ResourcesExhausted`, which [`crate::History::sql`]
//! reports as [`crate::HistoryError::ResourcesExhausted`]. What is left unaccounted is
//! transient and bounded: the one batch an operator builds before its guard sees it.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, FieldRef, IntervalMonthDayNanoType, IntervalUnit, SchemaRef, TimeUnit,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ExprSchema, Result, ScalarValue, Statistics};
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
    Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{CardinalityEffect, InvariantLevel};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    ChildStats, ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    InputDistributionRequirements, PlanProperties, ReplaceChildrenOptions, StatisticsArgs,
};
use futures::{Stream, StreamExt};

/// Limits of a history's SQL session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Bytes that the running queries of one [`crate::History`] may hold together: operator
    /// state, batches in flight, function results and the collected result.
    pub memory_limit: usize,
}

impl SqlLimits {
    /// The default [`SqlLimits::memory_limit`]: 512 MiB.
    pub const DEFAULT_MEMORY_LIMIT: usize = 512 << 20;
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            memory_limit: SqlLimits::DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// Rows per batch (DataFusion's default is 8192): the most copies of one value that a
/// projection of a constant, a join or an unnest makes at a time.
pub const BATCH_ROWS: usize = 1024;

/// The longest query text accepted, in bytes: it bounds the constants a query can spell.
pub const MAX_QUERY_BYTES: usize = 64 << 10;

/// The widest row (all columns) that may enter a join or an unnest, which copy a row once per
/// match: [`BATCH_ROWS`] copies of it are 64 MiB.
pub const MAX_REPEATED_ROW_BYTES: usize = 64 << 10;

/// What planning may compute into constants, per query (constant folding).
pub const MAX_FOLDED_BYTES: usize = 64 << 10;

/// Character comparisons one `levenshtein` call may make (about a second of CPU): its cost is
/// the product of the lengths and it cannot be interrupted midway.
pub const MAX_LEVENSHTEIN_WORK: u128 = 1 << 30;

/// Functions left unwrapped: they only move existing arrays around (`struct`, `named_struct`,
/// `get_field`) or other rules recognise them by type (`log`, `power`).
const UNWRAPPED: [&str; 5] = ["get_field", "named_struct", "struct", "log", "power"];

/// The session with every limit installed; the caller registers tables and its own functions.
pub(crate) fn session(limits: SqlLimits) -> Result<SessionContext> {
    let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
        GreedyMemoryPool::new(limits.memory_limit),
        NonZeroUsize::new(3).expect("3 is not zero"),
    ));
    // DataFusion caches directory listings without expiry by default; the writer adds files
    // all the time, so every query lists afresh (one LIST per partition directory it reads).
    // No spilling: a query over the limit fails instead of filling the disk the history is on.
    let runtime = RuntimeEnvBuilder::new()
        .with_object_list_cache_limit(0)
        .with_memory_pool(pool)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()?;
    let functions: Vec<Arc<ScalarUDF>> = SessionStateDefaults::default_scalar_functions()
        .into_iter()
        .map(|f| Arc::new(Bounded::wrap(&f, limits.memory_limit)))
        .collect();
    let mut by_name = std::collections::HashMap::new();
    for f in &functions {
        for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
            by_name.insert(name.to_string(), Arc::clone(f));
        }
    }
    let concat = Arc::new(Bounded::wrap(
        &Arc::new(ScalarUDF::new_from_impl(StringConcat::new())),
        limits.memory_limit,
    ));
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_batch_size(BATCH_ROWS))
        .with_runtime_env(runtime)
        .with_default_features()
        .with_scalar_functions(functions)
        .with_optimizer_rule(Arc::new(BoundedFunctions {
            by_name: Arc::new(by_name),
            concat,
        }))
        .with_physical_optimizer_rule(Arc::new(GuardOperators))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// A refusal: DataFusion's own error kind, so that it survives every layer of wrapping.
fn exhausted(message: String) -> DataFusionError {
    DataFusionError::ResourcesExhausted(message)
}

// ---------------------------------------------------------------------------------------------
// Charging: the budget a function's output is charged to.
// ---------------------------------------------------------------------------------------------

/// One decorated operator stream's share of the pool: what it keeps between polls (`held`:
/// its last batch, or for a buffering parent every batch so far) plus the function results
/// charged while it computes its next batch.
struct Step {
    reservation: MemoryReservation,
    held: AtomicUsize,
}

impl Step {
    /// Drops the function charges: the input batch they were computed from is done with.
    fn release_charges(&self) {
        let held = self.held.load(Ordering::Relaxed);
        if self.reservation.size() > held {
            self.reservation.shrink(self.reservation.size() - held);
        }
    }
}

thread_local! {
    /// The decorated operators being polled on this thread, innermost last. A poll runs on one
    /// thread from start to end, so the innermost is the operator evaluating right now.
    static STEPS: RefCell<Vec<Arc<Step>>> = const { RefCell::new(Vec::new()) };
}

tokio::task_local! {
    /// Set while [`crate::History::sql`] plans a query: what constant folding has computed.
    pub(crate) static FOLDED: Arc<AtomicUsize>;
}

/// Marks `step` as the operator being polled until dropped.
struct Entered;

impl Entered {
    fn new(step: &Arc<Step>) -> Entered {
        STEPS.with(|s| s.borrow_mut().push(Arc::clone(step)));
        Entered
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        STEPS.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// Where a function result is charged.
enum Budget {
    /// An operator's step, during execution.
    Step(Arc<Step>),
    /// Constant folding while planning a [`crate::History::sql`] query.
    Folding(Arc<AtomicUsize>),
    /// Anything else (planning of the crate's own DataFrames): only a per-call cap.
    Unscoped(usize),
}

impl Budget {
    fn current(memory_limit: usize) -> Budget {
        if let Some(step) = STEPS.with(|s| s.borrow().last().cloned()) {
            Budget::Step(step)
        } else if let Ok(folded) = FOLDED.try_with(Arc::clone) {
            Budget::Folding(folded)
        } else {
            Budget::Unscoped(memory_limit)
        }
    }

    fn grow(&self, bytes: usize, what: &dyn Fn() -> String) -> Result<()> {
        match self {
            Budget::Step(step) => step
                .reservation
                .try_grow(bytes)
                .map_err(|e| exhausted(format!("{} would need {bytes} more bytes: {e}", what()))),
            Budget::Folding(folded) => {
                let total = folded
                    .fetch_add(bytes, Ordering::Relaxed)
                    .saturating_add(bytes);
                if total > MAX_FOLDED_BYTES {
                    // Planning keeps the expression unfolded, to be computed (and charged) per
                    // batch: this refusal only ends the folding.
                    folded.fetch_sub(bytes, Ordering::Relaxed);
                    Err(exhausted(format!(
                        "{} while planning: constants computed while planning a query may total at most {MAX_FOLDED_BYTES} bytes",
                        what()
                    )))
                } else {
                    Ok(())
                }
            }
            Budget::Unscoped(max) => {
                if bytes > *max {
                    Err(exhausted(format!(
                        "{} would need {bytes} bytes, more than the {max}-byte memory limit",
                        what()
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn shrink(&self, bytes: usize) {
        match self {
            Budget::Step(step) => step.reservation.shrink(bytes.min(step.reservation.size())),
            Budget::Folding(folded) => {
                folded.fetch_sub(bytes.min(folded.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
            Budget::Unscoped(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Functions: every scalar function's output estimated, charged, then corrected.
// ---------------------------------------------------------------------------------------------

/// How a function's output is estimated from its arguments, before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cost {
    /// At most `factor` times the argument bytes, plus 64 bytes a row.
    Linear(u8),
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad` / `rpad(s, n [, fill])`: `n` characters of up to 4 bytes.
    Pad,
    /// `replace(s, from, to)`: every occurrence of `from` becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: a replacement per match, each match
    /// possibly empty, and group references copying the input.
    RegexpReplace,
    /// `array_repeat(value, n)`.
    ArrayRepeat,
    /// `array_resize(list, n [, value])`.
    ArrayResize,
    /// `range` / `generate_series(start, stop [, step])` as a list value.
    Range,
    /// `array_replace*(list, from, to [, n])`: every element may become `to`.
    ArrayReplace,
    /// `array_to_string(list, delimiter [, null_string])`: a delimiter per element.
    ArrayToString,
    /// `levenshtein(a, b)`: small output, but `len(a) * len(b)` work in one uninterruptible call.
    Levenshtein,
}

impl Cost {
    fn of(name: &str) -> Cost {
        match name {
            "repeat" => Cost::Repeat,
            "lpad" | "rpad" => Cost::Pad,
            "replace" => Cost::Replace,
            "regexp_replace" => Cost::RegexpReplace,
            "array_repeat" => Cost::ArrayRepeat,
            "array_resize" => Cost::ArrayResize,
            "range" | "generate_series" => Cost::Range,
            "array_replace" | "array_replace_n" | "array_replace_all" => Cost::ArrayReplace,
            "array_to_string" => Cost::ArrayToString,
            "levenshtein" => Cost::Levenshtein,
            // Case mapping can turn one character into three; translate one byte into four.
            "upper" | "lower" | "initcap" => Cost::Linear(3),
            "translate" | "to_hex" | "encode" | "to_char" | "date_format" => Cost::Linear(4),
            // One small value per character or per element: offsets and validity dominate.
            "string_to_array" | "regexp_match" | "array_positions" | "arrow_cast"
            | "arrow_try_cast" | "cast_to_type" | "try_cast_to_type" => Cost::Linear(10),
            _ => Cost::Linear(1),
        }
    }

    /// Whether the output can outgrow the arguments by more than a constant factor. Such
    /// functions are volatile, so that planning never folds them into a constant.
    fn superlinear(self) -> bool {
        !matches!(self, Cost::Linear(_) | Cost::Levenshtein)
    }

    /// The output's bytes (an upper bound) for one call over `rows` rows.
    fn estimate(self, args: &[ColumnarValue], rows: usize) -> Result<u128> {
        let arg = |i: usize| args.get(i);
        let n = rows as u128;
        Ok(match self {
            Cost::Linear(factor) => u128::from(factor) * input_bytes(args, rows) + 64 * n,
            Cost::Repeat => per_row(rows, &[lengths(arg(0))?, values(arg(1))?], |v| v[0] * v[1]),
            Cost::Pad => per_row(rows, &[lengths(arg(0))?, values(arg(1))?], |v| {
                v[0].max(4 * v[1]) + 4
            }),
            Cost::Replace => per_row(
                rows,
                &[lengths(arg(0))?, lengths(arg(1))?, lengths(arg(2))?],
                |v| v[0] + (v[0] / v[1].max(1) + 1) * v[2],
            ),
            Cost::RegexpReplace => per_row(rows, &[lengths(arg(0))?, lengths(arg(2))?], |v| {
                v[0] + (2 * v[0] + 1) * v[1]
            }),
            Cost::ArrayRepeat => per_row(rows, &[value_bytes(arg(0))?, values(arg(1))?], |v| {
                v[1] * (v[0] + 8)
            }),
            Cost::ArrayResize => {
                let element = arg(0)
                    .and_then(|a| list_child_width(&a.data_type()))
                    .unwrap_or(16) as u128;
                per_row(rows, &[values(arg(1))?, value_bytes(arg(2))?], |v| {
                    v[0] * (element + v[1] + 8)
                }) + input_bytes(args, rows)
            }
            Cost::Range => range_bytes(args, rows)?,
            Cost::ArrayReplace => {
                let elements = arg(0).map_or(0, |a| leaf_count(a, rows)) as u128;
                elements * max_of(value_bytes(arg(2))?, rows) + input_bytes(args, rows)
            }
            Cost::ArrayToString => {
                let elements = arg(0).map_or(0, |a| leaf_count(a, rows)) as u128;
                let joints = max_of(lengths(arg(1))?, rows) + max_of(lengths(arg(2))?, rows);
                elements * (joints + 24) + input_bytes(args, rows)
            }
            Cost::Levenshtein => {
                let work = per_row(rows, &[lengths(arg(0))?, lengths(arg(1))?], |v| v[0] * v[1]);
                if work > MAX_LEVENSHTEIN_WORK {
                    return Err(exhausted(format!(
                        "levenshtein() over strings this long would make {work} character comparisons, more than the {MAX_LEVENSHTEIN_WORK} allowed per batch"
                    )));
                }
                8 * n
            }
        })
    }
}

/// One argument seen row by row: a scalar's value for every row, or each row's own.
enum PerRow {
    Const(u128),
    Rows(Vec<u128>),
}

impl PerRow {
    fn get(&self, row: usize) -> u128 {
        match self {
            PerRow::Const(v) => *v,
            PerRow::Rows(v) => v.get(row).copied().unwrap_or(0),
        }
    }
}

/// Sums `f` over the rows; the arguments that are constant are looked at once.
fn per_row(rows: usize, args: &[PerRow], f: impl Fn(&[u128]) -> u128) -> u128 {
    if args.iter().all(|a| matches!(a, PerRow::Const(_))) {
        let v: Vec<u128> = args.iter().map(|a| a.get(0)).collect();
        return f(&v).saturating_mul(rows as u128);
    }
    let mut v = vec![0; args.len()];
    let mut total: u128 = 0;
    for row in 0..rows {
        for (slot, a) in v.iter_mut().zip(args) {
            *slot = a.get(row);
        }
        total = total.saturating_add(f(&v));
    }
    total
}

fn max_of(arg: PerRow, rows: usize) -> u128 {
    match arg {
        PerRow::Const(v) => v,
        PerRow::Rows(v) => v.into_iter().take(rows.max(1)).max().unwrap_or(0),
    }
}

/// `f` over a one-row array for a scalar, over the array otherwise.
fn each(arg: Option<&ColumnarValue>, f: impl Fn(&ArrayRef) -> Result<Vec<u128>>) -> Result<PerRow> {
    Ok(match arg {
        None => PerRow::Const(0),
        Some(ColumnarValue::Scalar(s)) => {
            PerRow::Const(f(&s.to_array_of_size(1)?)?.first().copied().unwrap_or(0))
        }
        Some(ColumnarValue::Array(a)) => PerRow::Rows(f(a)?),
    })
}

/// Non-negative integers of an integer array (negative and null count as 0).
fn as_counts(a: &ArrayRef) -> Result<Vec<u128>> {
    let ints = cast(a, &DataType::Int64)?;
    Ok(ints
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0).max(0) as u128)
        .collect())
}

/// The integer argument's values.
fn values(arg: Option<&ColumnarValue>) -> Result<PerRow> {
    each(arg, as_counts)
}

/// Byte lengths of strings and binaries, element counts of lists, the bytes of other values;
/// 0 for nulls.
fn lengths(arg: Option<&ColumnarValue>) -> Result<PerRow> {
    each(arg, |a| {
        if is_bytes(a.data_type()) || is_list(a.data_type()) {
            let l = datafusion::arrow::compute::kernels::length::length(a.as_ref())?;
            as_counts(&l)
        } else {
            Ok(row_bytes(a.as_ref())
                .into_iter()
                .map(|b| b as u128)
                .collect())
        }
    })
}

/// The bytes of each value (see [`row_bytes`]).
fn value_bytes(arg: Option<&ColumnarValue>) -> Result<PerRow> {
    each(arg, |a| {
        Ok(row_bytes(a.as_ref())
            .into_iter()
            .map(|b| b as u128)
            .collect())
    })
}

fn is_bytes(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    )
}

fn list_child_width(t: &DataType) -> Option<usize> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().primitive_width()
        }
        _ => None,
    }
}

/// Leaf elements of a (nested) list argument, broadcast over `rows` for a scalar.
fn leaf_count(arg: &ColumnarValue, rows: usize) -> usize {
    fn leaves(a: &dyn Array) -> usize {
        if let Some(l) = a.as_list_opt::<i32>() {
            leaves(l.values().as_ref())
        } else if let Some(l) = a.as_list_opt::<i64>() {
            leaves(l.values().as_ref())
        } else if let Some(l) = a.as_fixed_size_list_opt() {
            leaves(l.values().as_ref())
        } else {
            a.len()
        }
    }
    match arg {
        ColumnarValue::Array(a) => leaves(a.as_ref()),
        ColumnarValue::Scalar(s) => s
            .to_array_of_size(1)
            .map_or(0, |a| leaves(a.as_ref()))
            .saturating_mul(rows),
    }
}

/// Argument bytes: arrays as they are, scalars once per row (they are broadcast).
fn input_bytes(args: &[ColumnarValue], rows: usize) -> u128 {
    args.iter()
        .map(|a| match a {
            ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
            ColumnarValue::Scalar(s) => (s.size() as u128).saturating_mul(rows as u128),
        })
        .sum()
}

fn output_bytes(out: &ColumnarValue, rows: usize) -> usize {
    match out {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size().saturating_mul(rows),
    }
}

/// Bytes of the list `range` / `generate_series` would build: 8 per element.
fn range_bytes(args: &[ColumnarValue], rows: usize) -> Result<u128> {
    const DAY: i128 = 86_400_000_000_000;
    let Some(first) = args.first() else {
        return Ok(0);
    };
    let temporal = !matches!(first.data_type(), DataType::Int64 | DataType::Null);
    // Integers as they are; dates and timestamps in nanoseconds.
    let points = |arg: &ColumnarValue| -> Result<Vec<i128>> {
        let a = arg.to_array(1)?;
        let a = if temporal {
            let ts = cast(&a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            cast(&ts, &DataType::Int64)?
        } else {
            cast(&a, &DataType::Int64)?
        };
        Ok(a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| i128::from(v.unwrap_or(0)))
            .collect())
    };
    // The smallest step an interval can make (a month is 28 to 31 days); 0 when it can stall.
    let steps = |arg: &ColumnarValue| -> Result<Vec<i128>> {
        let a = arg.to_array(1)?;
        if matches!(a.data_type(), DataType::Interval(_)) {
            let a = cast(&a, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            Ok(a.as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|v| {
                    let v = v.unwrap_or_default();
                    let base = i128::from(v.days) * DAY + i128::from(v.nanoseconds);
                    let short = i128::from(v.months) * 28 * DAY + base;
                    let long = i128::from(v.months) * 31 * DAY + base;
                    if short.signum() != long.signum() {
                        0
                    } else {
                        short.abs().min(long.abs())
                    }
                })
                .collect())
        } else {
            Ok(points(arg)?.into_iter().map(i128::abs).collect())
        }
    };
    let (start, stop, step) = match args {
        [stop] => (vec![0], points(stop)?, vec![if temporal { DAY } else { 1 }]),
        [start, stop] => (
            points(start)?,
            points(stop)?,
            vec![if temporal { DAY } else { 1 }],
        ),
        [start, stop, step, ..] => (points(start)?, points(stop)?, steps(step)?),
        [] => return Ok(0),
    };
    let broadcast = |v: &Vec<i128>, i: usize| {
        if v.len() == 1 {
            v[0]
        } else {
            v.get(i).copied().unwrap_or(0)
        }
    };
    let expand = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if expand { 1 } else { rows };
    let mut total: u128 = 0;
    for i in 0..n {
        let (a, b, s) = (
            broadcast(&start, i),
            broadcast(&stop, i),
            broadcast(&step, i),
        );
        let count = if s == 0 {
            if a == b { 1 } else { u128::MAX / 16 }
        } else {
            ((b - a).unsigned_abs() / s.unsigned_abs()).saturating_add(1)
        };
        total = total.saturating_add(count.saturating_mul(8));
    }
    Ok(if expand {
        total.saturating_mul(rows as u128)
    } else {
        total
    })
}

/// A scalar function whose output is estimated and charged before it runs and corrected after.
/// Delegates everything else, so that it plans, simplifies and displays as the function it
/// wraps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bounded {
    inner: Arc<ScalarUDF>,
    cost: Cost,
    signature: Signature,
    memory_limit: usize,
}

impl Bounded {
    /// `f` wrapped, unless it is one of [`UNWRAPPED`] or already wrapped.
    fn wrap(f: &Arc<ScalarUDF>, memory_limit: usize) -> ScalarUDF {
        if UNWRAPPED.contains(&f.name()) || f.inner().is::<Bounded>() {
            return f.as_ref().clone();
        }
        let cost = Cost::of(f.name());
        let mut signature = f.signature().clone();
        if cost.superlinear() {
            signature.volatility = Volatility::Volatile;
        }
        ScalarUDF::new_from_impl(Bounded {
            inner: Arc::clone(f),
            cost,
            signature,
            memory_limit,
        })
    }

    fn imp(&self) -> &Arc<dyn ScalarUDFImpl> {
        self.inner.inner()
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.imp().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.imp().return_type(arg_types)
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.imp().with_updated_config(config)?;
        Some(Bounded::wrap(&Arc::new(updated), self.memory_limit))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.imp().return_field_from_args(args)
    }
    #[allow(deprecated)]
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.imp().is_nullable(args, schema)
    }
    fn is_strict(&self) -> bool {
        self.imp().is_strict()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let what = || format!("{}() over {rows} rows", self.name());
        // Fixed-width results (lengths, positions, comparisons) are exactly one value a row.
        let estimate = match (self.cost, args.return_field.data_type().primitive_width()) {
            (Cost::Linear(_), Some(width)) => width.saturating_mul(rows),
            _ => usize::try_from(self.cost.estimate(&args.args, rows)?).unwrap_or(usize::MAX),
        };
        let budget = Budget::current(self.memory_limit);
        budget.grow(estimate, &what)?;
        let out = match self.imp().invoke_with_args(args) {
            Ok(out) => out,
            Err(e) => {
                budget.shrink(estimate);
                return Err(e);
            }
        };
        let actual = output_bytes(&out, rows);
        if actual > estimate {
            budget.grow(actual - estimate, &what)?;
        } else {
            budget.shrink(estimate - actual);
        }
        Ok(out)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.imp().simplify(args, info)
    }
    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.imp().preimage(args, lit_expr, info)
    }
    fn short_circuits(&self) -> bool {
        self.imp().short_circuits()
    }
    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.imp().conditional_arguments(args)
    }
    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.imp().evaluate_bounds(input)
    }
    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.imp().propagate_constraints(interval, inputs)
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.imp().output_ordering(inputs)
    }
    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.imp().preserves_lex_ordering(inputs)
    }
    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.imp().strictly_order_preserving(inputs)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.imp().coerce_types(arg_types)
    }
    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.imp().struct_field_mapping(literal_args)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.imp().documentation()
    }
    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.imp().placement(args)
    }
}

/// The string `||` operator as a function, so that [`Bounded`] can charge it: it evaluates
/// DataFusion's own operator on its two arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StringConcat {
    signature: Signature,
}

impl StringConcat {
    const NAME: &'static str = "slogate_string_concat";

    fn new() -> StringConcat {
        StringConcat {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        StringConcat::NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [l, r] = arg_types else {
            return Err(DataFusionError::Internal(
                "|| takes two arguments".to_string(),
            ));
        };
        BinaryTypeCoercer::new(l, &Operator::StringConcat, r).get_result_type()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::datatypes::Schema;
        use datafusion::physical_expr::expressions::{BinaryExpr as PhysicalBinary, Column};
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalars { 1 } else { args.number_rows };
        let columns = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<FieldRef> = args
            .arg_fields
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(f.as_ref().clone().with_name(format!("c{i}"))))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let expr = PhysicalBinary::new(
            Arc::new(Column::new("c0", 0)),
            Operator::StringConcat,
            Arc::new(Column::new("c1", 1)),
        );
        let out = expr.evaluate(&batch)?.to_array(rows)?;
        if scalars {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// The last logical optimizer rule: functions that DataFusion's planners and simplifications
/// built from their own (unwrapped) definitions are replaced by the session's [`Bounded`] ones,
/// and the string `||` by the bounded [`StringConcat`]. Column names are kept.
#[derive(Debug)]
struct BoundedFunctions {
    by_name: Arc<std::collections::HashMap<String, Arc<ScalarUDF>>>,
    concat: Arc<ScalarUDF>,
}

impl OptimizerRule for BoundedFunctions {
    fn name(&self) -> &str {
        "slogate_bounded_functions"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| self.rewrite_expr(e))?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })
    }
}

impl BoundedFunctions {
    fn rewrite_expr(&self, e: Expr) -> Result<Transformed<Expr>> {
        match e {
            Expr::ScalarFunction(f) if !f.func.inner().is::<Bounded>() => {
                match self.by_name.get(f.func.name()) {
                    Some(bounded) if bounded.inner().is::<Bounded>() => Ok(Transformed::yes(
                        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(bounded), f.args)),
                    )),
                    _ => Ok(Transformed::no(Expr::ScalarFunction(f))),
                }
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::StringConcat,
                right,
            }) => Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::clone(&self.concat), vec![*left, *right]),
            ))),
            other => Ok(Transformed::no(other)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operators: every stream decorated.
// ---------------------------------------------------------------------------------------------

/// The last physical optimizer rule: decorates every operator with [`Guarded`].
#[derive(Debug)]
struct GuardOperators;

impl PhysicalOptimizerRule for GuardOperators {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        guard(plan, false, None)
    }

    fn name(&self) -> &str {
        "slogate_guard_operators"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` and its inputs decorated. `hold_all`: the parent buffers every batch without
/// accounting; `max_row_bytes`: the parent repeats rows.
fn guard(
    plan: Arc<dyn ExecutionPlan>,
    hold_all: bool,
    max_row_bytes: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if (plan.as_ref() as &dyn std::any::Any).is::<Guarded>() {
        return Ok(plan);
    }
    let name = plan.name();
    let repeats_rows = name.contains("Join") || name == "UnnestExec";
    let buffers = name == "WindowAggExec";
    let children = plan
        .children()
        .into_iter()
        .map(|c| {
            guard(
                Arc::clone(c),
                buffers,
                repeats_rows.then_some(MAX_REPEATED_ROW_BYTES),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = if children.is_empty() {
        plan
    } else {
        // The decorators report their operator's properties: nothing to recompute.
        plan.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
        )?
    };
    Ok(Arc::new(Guarded {
        inner: plan,
        hold_all,
        max_row_bytes,
    }))
}

/// An operator whose output batches are charged to the pool (and whose evaluation's function
/// results are charged to it while it computes them). Transparent: it displays, downcasts and
/// reports metrics as the operator it decorates, and its children are that operator's.
#[derive(Debug)]
struct Guarded {
    inner: Arc<dyn ExecutionPlan>,
    hold_all: bool,
    max_row_bytes: Option<usize>,
}

impl Guarded {
    fn rewrap(&self, inner: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        if (inner.as_ref() as &dyn std::any::Any).is::<Guarded>() {
            return inner;
        }
        Arc::new(Guarded {
            inner,
            hold_all: self.hold_all,
            max_row_bytes: self.max_row_bytes,
        })
    }
}

impl DisplayAs for Guarded {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.inner.as_ref())
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }
    fn check_invariants(&self, check: InvariantLevel) -> Result<()> {
        self.inner.check_invariants(check)
    }
    fn dynamic_expressions_produced(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.inner.dynamic_expressions_produced()
    }
    #[allow(deprecated)]
    fn required_input_distribution(&self) -> Vec<Distribution> {
        self.inner.required_input_distribution()
    }
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.inner.input_distribution_requirements()
    }
    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        self.inner.required_input_ordering()
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        self.inner.maintains_input_order()
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.inner.benefits_from_input_partitioning()
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inner.children()
    }
    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = Arc::clone(&self.inner).replace_children(children, options)?;
        Ok(self.rewrap(inner))
    }
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.inner.apply_expressions(f)
    }
    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = Arc::clone(&self.inner).with_new_children(children)?;
        Ok(self.rewrap(inner))
    }
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = Arc::clone(&self.inner).reset_state()?;
        Ok(self.rewrap(inner))
    }
    fn repartitioned(
        &self,
        target_partitions: usize,
        config: &ConfigOptions,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(self
            .inner
            .repartitioned(target_partitions, config)?
            .map(|p| self.rewrap(p)))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inner = self.inner.execute(partition, Arc::clone(&context))?;
        let consumer = MemoryConsumer::new(format!("{}[{partition}]", self.inner.name()));
        Ok(Box::pin(GuardStream {
            schema: inner.schema(),
            inner,
            step: Arc::new(Step {
                reservation: consumer.register(context.memory_pool()),
                held: AtomicUsize::new(0),
            }),
            hold_all: self.hold_all,
            max_row_bytes: self.max_row_bytes,
            operator: self.inner.name().to_string(),
        }))
    }
    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }
    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.inner.partition_statistics(partition)
    }
    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.inner.statistics_from_inputs(input_stats, args)
    }
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.inner.child_stats_requests(partition)
    }
    fn supports_limit_pushdown(&self) -> bool {
        self.inner.supports_limit_pushdown()
    }
    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        self.inner.with_fetch(limit).map(|p| self.rewrap(p))
    }
    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }
    fn cardinality_effect(&self) -> CardinalityEffect {
        self.inner.cardinality_effect()
    }
    fn with_new_state(
        &self,
        state: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        self.inner.with_new_state(state).map(|p| self.rewrap(p))
    }
}

/// The decorated stream: marks its step while the operator computes, then charges the batch.
struct GuardStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    step: Arc<Step>,
    hold_all: bool,
    max_row_bytes: Option<usize>,
    operator: String,
}

impl GuardStream {
    fn admit(&self, batch: &RecordBatch) -> Result<()> {
        if let Some(max) = self.max_row_bytes {
            let widest = widest_row(batch);
            if widest > max {
                return Err(exhausted(format!(
                    "a row of {widest} bytes would be repeated by the operator reading from {}; rows that are joined or unnested may be at most {max} bytes wide",
                    self.operator
                )));
            }
        }
        let bytes = batch.get_array_memory_size();
        let held = if self.hold_all {
            self.step.held.load(Ordering::Relaxed).saturating_add(bytes)
        } else {
            bytes
        };
        self.step.reservation.try_resize(held).map_err(|e| {
            exhausted(format!(
                "{} produced a batch of {bytes} bytes: {e}",
                self.operator
            ))
        })?;
        self.step.held.store(held, Ordering::Relaxed);
        Ok(())
    }
}

impl Stream for GuardStream {
    type Item = Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        // One unit of the task's cooperative budget per batch, at every operator: an operator
        // that makes batches without reading any (a cross join repeating its build side, an
        // aggregate draining it) still yields, so that an aborted query stops within a batch.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let polled = {
            let _entered = Entered::new(&self.step);
            self.inner.poll_next_unpin(cx)
        };
        if polled.is_ready() {
            coop.made_progress();
        }
        match polled {
            Poll::Ready(Some(Ok(batch))) => {
                // The operator polling this one takes a new input batch: what its functions
                // computed from the previous one is gone.
                if let Some(parent) = STEPS.with(|s| s.borrow().last().cloned()) {
                    parent.release_charges();
                }
                match self.admit(&batch) {
                    Ok(()) => Poll::Ready(Some(Ok(batch))),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
            Poll::Ready(None) => {
                self.step.held.store(0, Ordering::Relaxed);
                self.step.reservation.free();
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl RecordBatchStream for GuardStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// The bytes of the widest row, nested values measured element by element.
fn widest_row(batch: &RecordBatch) -> usize {
    let mut widths = vec![0usize; batch.num_rows()];
    for column in batch.columns() {
        for (w, b) in widths.iter_mut().zip(row_bytes(column.as_ref())) {
            *w = w.saturating_add(b);
        }
    }
    widths.into_iter().max().unwrap_or(0)
}

/// Each row's bytes in `a`: strings and binaries by length, lists, maps and structs by their
/// elements, fixed-size values by width.
fn row_bytes(a: &dyn Array) -> Vec<usize> {
    fn spans<O: datafusion::arrow::array::OffsetSizeTrait>(
        offsets: &[O],
        child: &[usize],
    ) -> Vec<usize> {
        offsets
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0].as_usize(), w[1].as_usize());
                child.get(from..to).map_or(0, |c| c.iter().sum::<usize>()) + 8
            })
            .collect()
    }
    let n = a.len();
    if is_bytes(a.data_type()) {
        return datafusion::arrow::compute::kernels::length::length(a)
            .ok()
            .and_then(|l| as_counts(&l).ok())
            .map(|l| l.into_iter().map(|v| v as usize + 8).collect())
            .unwrap_or_else(|| vec![a.get_array_memory_size() / n.max(1); n]);
    }
    if let Some(l) = a.as_list_opt::<i32>() {
        return spans(l.value_offsets(), &row_bytes(l.values().as_ref()));
    }
    if let Some(l) = a.as_list_opt::<i64>() {
        return spans(l.value_offsets(), &row_bytes(l.values().as_ref()));
    }
    if let Some(m) = a.as_map_opt() {
        return spans(m.value_offsets(), &row_bytes(m.entries()));
    }
    if let Some(l) = a.as_fixed_size_list_opt() {
        let child = row_bytes(l.values().as_ref());
        let size = usize::try_from(l.value_length()).unwrap_or(0);
        return (0..n)
            .map(|i| {
                child
                    .get(i * size..(i + 1) * size)
                    .map_or(0, |c| c.iter().sum())
            })
            .collect();
    }
    if let Some(s) = a.as_struct_opt() {
        let mut widths = vec![0usize; n];
        for column in s.columns() {
            for (w, b) in widths.iter_mut().zip(row_bytes(column.as_ref())) {
                *w = w.saturating_add(b);
            }
        }
        return widths;
    }
    if let Some(d) = a.as_any_dictionary_opt() {
        let values = row_bytes(d.values().as_ref());
        let keys = cast(d.keys(), &DataType::Int64)
            .ok()
            .map(|k| as_counts(&k).unwrap_or_default())
            .unwrap_or_default();
        return keys
            .into_iter()
            .map(|k| values.get(k as usize).copied().unwrap_or(0))
            .collect();
    }
    let width = a
        .data_type()
        .primitive_width()
        .unwrap_or_else(|| a.get_array_memory_size() / n.max(1));
    vec![width; n]
}
