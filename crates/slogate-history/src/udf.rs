//! Sketch functions for DataFusion: the `sketch_merge` and `sketch_quantile` aggregates and the
//! scalar `sketch_quantile_of`.
//!
//! The aggregate state is the merged sketch in the `slogate-sketch` byte format, so partial
//! aggregates from several partitions (or machines) merge exactly: a percentile over any time
//! range or set of series is computed from one merged sketch, never by averaging percentiles.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use slogate_sketch::Sketch;

const BINARY_TYPES: [DataType; 3] = [
    DataType::Binary,
    DataType::LargeBinary,
    DataType::BinaryView,
];

/// Calls `f` with every non-null value of a binary column, whatever its binary encoding.
fn for_each_bytes(arr: &ArrayRef, f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    match arr.data_type() {
        DataType::Binary => arr.as_binary::<i32>().iter().flatten().try_for_each(f),
        DataType::LargeBinary => arr.as_binary::<i64>().iter().flatten().try_for_each(f),
        DataType::BinaryView => arr.as_binary_view().iter().flatten().try_for_each(f),
        DataType::Null => Ok(()),
        other => exec_err!("sketch column must be binary, got {other}"),
    }
}

fn bad_sketch(func: &str, e: slogate_sketch::DecodeError) -> DataFusionError {
    DataFusionError::Execution(format!("{func}: invalid sketch bytes: {e}"))
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Reads the constant `q` argument; it must be a float literal in `[0, 1]`.
fn literal_q(expr: &Arc<dyn PhysicalExpr>, func: &str) -> Result<f64> {
    let batch = RecordBatch::new_empty(Arc::new(Schema::empty()));
    let q = match expr.evaluate(&batch) {
        Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(q)))) => q,
        Ok(ColumnarValue::Scalar(ScalarValue::Float32(Some(q)))) => f64::from(q),
        _ => return plan_err!("{func}: q must be a float literal such as 0.99"),
    };
    if !(0.0..=1.0).contains(&q) {
        return plan_err!("{func}: q must be between 0 and 1, got {q}");
    }
    Ok(q)
}

/// What an accumulator returns: the merged bytes or one quantile in milliseconds.
#[derive(Debug, Clone, Copy)]
enum Output {
    Merged,
    Quantile(f64),
}

/// Row-wise accumulator shared by both aggregates: the state is one merged sketch.
#[derive(Debug)]
struct SketchAccumulator {
    func: &'static str,
    sketch: Sketch,
    seen: bool,
    output: Output,
}

impl SketchAccumulator {
    fn merge_column(&mut self, arr: &ArrayRef) -> Result<()> {
        let (func, sketch, seen) = (self.func, &mut self.sketch, &mut self.seen);
        for_each_bytes(arr, |bytes| {
            *seen = true;
            sketch.merge_encoded(bytes).map_err(|e| bad_sketch(func, e))
        })
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // A second argument, if any, is the constant q, already read at planning.
        self.merge_column(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_column(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let bytes = self.seen.then(|| self.sketch.encoded());
        Ok(vec![ScalarValue::Binary(bytes)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.output {
            Output::Merged => ScalarValue::Binary(self.seen.then(|| self.sketch.encoded())),
            Output::Quantile(q) => ScalarValue::Float64(self.sketch.quantile(q).map(ns_to_ms)),
        })
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.sketch.heap_bytes()
    }
}

fn state_fields(args: &StateFieldsArgs) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(
        format!("{}[sketch]", args.name),
        DataType::Binary,
        true,
    ))]
}

/// `sketch_merge(sketch) -> binary`: all sketches of the group merged into one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchMerge {
    signature: Signature,
}

impl Default for SketchMerge {
    fn default() -> Self {
        let sigs = BINARY_TYPES
            .iter()
            .map(|t| TypeSignature::Exact(vec![t.clone()]))
            .collect();
        SketchMerge {
            signature: Signature::one_of(sigs, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SketchMerge {
    fn name(&self) -> &str {
        "sketch_merge"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            func: "sketch_merge",
            sketch: Sketch::new(),
            seen: false,
            output: Output::Merged,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(&args))
    }
}

/// `sketch_quantile(sketch, q) -> double`: merges the group's sketches and returns the
/// nearest-rank `q` quantile in milliseconds (null when the group recorded no value).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchQuantile {
    signature: Signature,
}

fn sketch_q_signature() -> Signature {
    let sigs = BINARY_TYPES
        .iter()
        .flat_map(|t| {
            [DataType::Float64, DataType::Float32].map(|q| TypeSignature::Exact(vec![t.clone(), q]))
        })
        .collect();
    Signature::one_of(sigs, Volatility::Immutable)
}

impl Default for SketchQuantile {
    fn default() -> Self {
        SketchQuantile {
            signature: sketch_q_signature(),
        }
    }
}

impl AggregateUDFImpl for SketchQuantile {
    fn name(&self) -> &str {
        "sketch_quantile"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let q = literal_q(&args.exprs[1], "sketch_quantile")?;
        Ok(Box::new(SketchAccumulator {
            func: "sketch_quantile",
            sketch: Sketch::new(),
            seen: false,
            output: Output::Quantile(q),
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(state_fields(&args))
    }
}

/// `sketch_quantile_of(sketch, q) -> double`: the `q` quantile (milliseconds) of one sketch,
/// e.g. of a `sketch_merge` result. Null for a null or empty sketch.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchQuantileOf {
    signature: Signature,
}

impl Default for SketchQuantileOf {
    fn default() -> Self {
        SketchQuantileOf {
            signature: sketch_q_signature(),
        }
    }
}

impl ScalarUDFImpl for SketchQuantileOf {
    fn name(&self) -> &str {
        "sketch_quantile_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let qs = datafusion::arrow::compute::cast(&arrays[1], &DataType::Float64)?;
        let qs = qs.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let sketches = &arrays[0];
        let mut out = Vec::with_capacity(sketches.len());
        let mut i = 0;
        let mut push = |bytes: Option<&[u8]>| -> Result<()> {
            let q = qs.is_valid(i).then(|| qs.value(i));
            i += 1;
            let (Some(bytes), Some(q)) = (bytes, q) else {
                out.push(None);
                return Ok(());
            };
            let sketch = Sketch::decode(bytes).map_err(|e| bad_sketch("sketch_quantile_of", e))?;
            out.push(sketch.quantile(q).map(ns_to_ms));
            Ok(())
        };
        match sketches.data_type() {
            DataType::Binary => sketches.as_binary::<i32>().iter().try_for_each(&mut push)?,
            DataType::LargeBinary => sketches.as_binary::<i64>().iter().try_for_each(&mut push)?,
            DataType::BinaryView => sketches.as_binary_view().iter().try_for_each(&mut push)?,
            other => return exec_err!("sketch_quantile_of: sketch must be binary, got {other}"),
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

/// The aggregate UDFs to register on a session.
pub fn sketch_udafs() -> [AggregateUDF; 2] {
    [
        AggregateUDF::from(SketchMerge::default()),
        AggregateUDF::from(SketchQuantile::default()),
    ]
}

/// The scalar UDFs to register on a session.
pub fn sketch_udfs() -> [ScalarUDF; 1] {
    [ScalarUDF::from(SketchQuantileOf::default())]
}
