//! Bounds on the values one function call may make.
//!
//! Some functions make values far larger than their arguments (`repeat(s, n)`,
//! `lpad(s, n)`, `replace(s, 'a', t)`, `array_repeat(v, n)`, `range(a, b)`), and any
//! function given a constant makes it again on every row of a batch
//! (`concat(col, <a 4 MB literal>)` is 8,192 copies). arrow allocates such a result in one
//! go, and when an allocation fails the process aborts: no error, no unwinding, every
//! session of the gateway gone. So these functions are wrapped: before a call runs, the
//! size of what it would make is worked out from its arguments, and a call that would make
//! more than [`MAX_CALL_BYTES`] is refused with `54000` (as PostgreSQL refuses a value over
//! 1 GB). The wrappers keep the functions' names, so plans name them as before and
//! workers, which register the same list, run the same checks. Constant folding at plan
//! time calls them too, so `repeat('x', 1e9)` is refused while planning.
//!
//! Operators repeat constants as well (`col || '<4 MB>'`, `CASE … THEN '<4 MB>'`): the
//! gateway does not run a plan that holds a constant over [`MAX_GATEWAY_CONSTANT`] bytes
//! over rows ([`repeats_large_constant`]); such a query runs on a worker, whose loss costs
//! only its own queries, or is refused when it can run only in the gateway.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, TimeUnit};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature,
};

use crate::{ErrorKind, QueryError};

/// The most bytes one call of a wrapped function may make (one batch of its results).
pub const MAX_CALL_BYTES: u64 = 64 << 20;

/// The largest constant the gateway repeats over rows.
pub const MAX_GATEWAY_CONSTANT: u64 = 64 << 10;

/// How a function's result grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: len(s) · n.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: s and n characters of the fill.
    Pad,
    /// `replace(s, from, to)`: every `from` in s may become `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: matches (empty ones too) become
    /// the replacement, whose back-references copy at most the match.
    RegexpReplace,
    /// The sum of the arguments (`concat`, `make_array`, `array_append`, …).
    Sum,
    /// `concat_ws(separator, …)`: the arguments and the separator between each two.
    Join,
    /// `to_char(value, format)`, Spark's `format_string(format, …)`: a few bytes per
    /// character of the format (the argument at this position), the widths written in it,
    /// and the arguments.
    Format(usize),
    /// Spark's `space(n)`: n bytes.
    Space,
    /// `array_repeat(v, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(a, n [, fill])`: n elements.
    ArrayResize,
    /// `range(start, stop [, step])`, `generate_series`: (stop − start) / step elements.
    Range,
}

/// The functions wrapped, by DataFusion's name.
const WRAPPED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
    ("concat", Growth::Sum),
    ("concat_ws", Growth::Join),
    ("overlay", Growth::Sum),
    ("translate", Growth::Sum),
    ("encode", Growth::Sum),
    ("to_char", Growth::Format(1)),
    ("format_string", Growth::Format(0)),
    ("space", Growth::Space),
    ("make_array", Growth::Sum),
    ("array_append", Growth::Sum),
    ("array_prepend", Growth::Sum),
    ("array_concat", Growth::Sum),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
];

/// DataFusion's functions that can make large values, bounded (registered over the
/// originals in the gateway's states and on workers).
pub fn functions() -> Vec<ScalarUDF> {
    datafusion::functions::all_default_functions()
        .into_iter()
        .chain(datafusion::functions_nested::all_default_nested_functions())
        .filter_map(|f| bounded(&f))
        .collect()
}

/// `f` bounded, if it is one of the functions that can make large values and not bounded
/// already.
fn bounded(f: &Arc<ScalarUDF>) -> Option<ScalarUDF> {
    if is_bounded(f) {
        return None;
    }
    let (_, growth) = WRAPPED.iter().find(|(name, _)| *name == f.name())?;
    Some(ScalarUDF::new_from_impl(Bounded {
        inner: f.clone(),
        growth: *growth,
    }))
}

fn is_bounded(f: &ScalarUDF) -> bool {
    let inner: &dyn std::any::Any = f.inner().as_ref();
    inner.is::<Bounded>()
}

/// `f`, bounded if it can make large values (a function a worker takes by name from
/// elsewhere than its registry: Spark's).
pub fn wrap(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    bounded(&f).map(Arc::new).unwrap_or(f)
}

/// The function a bounded one wraps (what the plan codec names), else `f` itself.
pub fn unwrapped(f: &ScalarUDF) -> &ScalarUDF {
    let inner: &dyn std::any::Any = f.inner().as_ref();
    match inner.downcast_ref::<Bounded>() {
        Some(b) => b.inner.as_ref(),
        None => f,
    }
}

/// Bound the functions of `registry` that can make large values (after a dialect
/// registered its own under the same names).
pub fn bound_registry(registry: &mut dyn datafusion::execution::FunctionRegistry) -> Result<()> {
    for (name, _) in WRAPPED {
        if let Ok(f) = registry.udf(name) {
            if let Some(b) = bounded(&f) {
                registry.register_udf(Arc::new(b))?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.growth.bound(&args.args, args.number_rows);
        if bytes > MAX_CALL_BYTES {
            return Err(DataFusionError::External(Box::new(QueryError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "{}: the result would be {} MiB, over the {} MiB one call may make",
                    self.name(),
                    bytes >> 20,
                    MAX_CALL_BYTES >> 20
                ),
            ))));
        }
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        // A rewrite names DataFusion's own function again: put the bound back on it.
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                ExprSimplifyResult::Simplified(rewrap(expr, self)?)
            }
            original => original,
        })
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `expr` with each call of `bounded`'s function (by name) calling the bounded one.
fn rewrap(expr: Expr, bounded: &Bounded) -> Result<Expr> {
    use datafusion::common::tree_node::Transformed;
    Ok(expr
        .transform_up(|e| match e {
            Expr::ScalarFunction(mut call)
                if call.func.name() == bounded.name() && !is_bounded(&call.func) =>
            {
                call.func = Arc::new(ScalarUDF::new_from_impl(Bounded {
                    inner: bounded.inner.clone(),
                    growth: bounded.growth,
                }));
                Ok(Transformed::yes(Expr::ScalarFunction(call)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// One value per row of an argument (its byte length, or its integer value).
enum PerRow {
    Same(u64),
    Each(Vec<u64>),
}

impl PerRow {
    fn at(&self, row: usize) -> u64 {
        match self {
            Self::Same(v) => *v,
            Self::Each(values) => values.get(row).copied().unwrap_or(0),
        }
    }
}

impl Growth {
    /// The most bytes a call with these arguments over `rows` rows makes.
    fn bound(self, args: &[ColumnarValue], rows: usize) -> u64 {
        let len = |i: usize| args.get(i).map_or(PerRow::Same(0), byte_lengths);
        let count = |i: usize| args.get(i).map_or(PerRow::Same(0), counts);
        let mut total: u64 = 0;
        match self {
            Growth::Repeat => {
                let (s, n) = (len(0), count(1));
                for row in 0..rows {
                    total = total.saturating_add(s.at(row).saturating_mul(n.at(row)));
                }
            }
            Growth::Pad => {
                // n characters: of the fill (a space by default), each at most 4 bytes.
                let (s, n) = (len(0), count(1));
                let fill = args.get(2).map(byte_lengths);
                for row in 0..rows {
                    let width = fill.as_ref().map_or(1, |f| f.at(row).clamp(1, 4));
                    total = total
                        .saturating_add(s.at(row).saturating_add(n.at(row).saturating_mul(width)));
                }
            }
            Growth::Replace => {
                let (s, from, to) = (len(0), len(1), len(2));
                for row in 0..rows {
                    let s = s.at(row);
                    let matches = s / from.at(row).max(1) + 1;
                    total =
                        total.saturating_add(s.saturating_add(matches.saturating_mul(to.at(row))));
                }
            }
            Growth::RegexpReplace => {
                let (s, replacement) = (len(0), len(2));
                for row in 0..rows {
                    // Up to s + 1 matches (empty ones included), each the replacement with
                    // its back-references, which copy at most the match (s in all).
                    let s = s.at(row);
                    let r = replacement.at(row);
                    total = total.saturating_add(
                        s.saturating_add(s.saturating_add(1).saturating_mul(r))
                            .saturating_add(s.saturating_mul(r)),
                    );
                }
            }
            Growth::Sum | Growth::Join => {
                let lens: Vec<PerRow> = args.iter().map(byte_lengths).collect();
                for row in 0..rows {
                    let separator = match self {
                        Growth::Join => lens.first().map_or(0, |l| l.at(row)),
                        _ => 0,
                    };
                    for l in &lens {
                        total = total.saturating_add(l.at(row).saturating_add(separator));
                    }
                }
            }
            Growth::Format(at) => {
                let format = args.get(at).map(format_bytes);
                let lens: Vec<PerRow> = args.iter().map(byte_lengths).collect();
                for row in 0..rows {
                    total = total
                        .saturating_add(format.as_ref().map_or(0, |f| f.at(row)))
                        .saturating_add(64);
                    for l in &lens {
                        total = total.saturating_add(l.at(row));
                    }
                }
            }
            Growth::Space => {
                let n = count(0);
                for row in 0..rows {
                    total = total.saturating_add(n.at(row));
                }
            }
            Growth::ArrayRepeat => {
                let (v, n) = (len(0), count(1));
                for row in 0..rows {
                    total =
                        total.saturating_add(n.at(row).saturating_mul(v.at(row).saturating_add(8)));
                }
            }
            Growth::ArrayResize => {
                let (a, n) = (len(0), count(1));
                for row in 0..rows {
                    // The elements kept or added, each at most the fill's size or 16 bytes.
                    let fill = args.get(2).map_or(16, |f| byte_lengths(f).at(row).max(16));
                    total = total
                        .saturating_add(a.at(row))
                        .saturating_add(n.at(row).saturating_mul(fill.saturating_add(8)));
                }
            }
            Growth::Range => {
                let elements = range_lengths(args);
                for row in 0..rows {
                    total = total.saturating_add(elements.at(row).saturating_mul(8));
                }
            }
        }
        total
    }
}

/// What a format string can make: 8 bytes per character, plus every width written in it
/// (`%1000000s`).
fn format_bytes(arg: &ColumnarValue) -> PerRow {
    let of = |s: &str| -> u64 {
        let widths: u64 = s
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|digits| digits.parse::<u64>().ok())
            .fold(0u64, |sum, w| sum.saturating_add(w));
        (s.len() as u64).saturating_mul(8).saturating_add(widths)
    };
    match arg {
        ColumnarValue::Scalar(value) => match value {
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                PerRow::Same(s.as_deref().map_or(0, of))
            }
            _ => PerRow::Same(0),
        },
        ColumnarValue::Array(array) => match cast(array, &DataType::Utf8) {
            Ok(strings) => PerRow::Each(
                strings
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map_or(0, of))
                    .collect(),
            ),
            Err(_) => PerRow::Same(u64::MAX),
        },
    }
}

/// Bytes of each row's value (strings and binary: their bytes; lists: their elements at
/// the list's average element size; other types: their size in memory).
fn byte_lengths(arg: &ColumnarValue) -> PerRow {
    match arg {
        ColumnarValue::Scalar(value) => PerRow::Same(scalar_bytes(value)),
        ColumnarValue::Array(array) => array_lengths(array),
    }
}

fn scalar_bytes(value: &ScalarValue) -> u64 {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            s.as_ref().map_or(0, |s| s.len() as u64)
        }
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => {
            b.as_ref().map_or(0, |b| b.len() as u64)
        }
        other => other.size() as u64,
    }
}

fn array_lengths(array: &ArrayRef) -> PerRow {
    use datafusion::arrow::compute::kernels::length::length;
    let rows = array.len();
    match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => match length(array).and_then(|l| cast(&l, &DataType::Int64)) {
            Ok(lengths) => PerRow::Each(
                lengths
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|l| l.unwrap_or(0).max(0) as u64)
                    .collect(),
            ),
            Err(_) => PerRow::Same(array.get_array_memory_size() as u64),
        },
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            // Elements per row times the average element's size.
            let per_element = array.get_array_memory_size() as u64
                / match length(array) {
                    Ok(l) => sum_lengths(&l).max(1),
                    Err(_) => 1,
                };
            match length(array).and_then(|l| cast(&l, &DataType::Int64)) {
                Ok(lengths) => PerRow::Each(
                    lengths
                        .as_primitive::<Int64Type>()
                        .iter()
                        .map(|l| (l.unwrap_or(0).max(0) as u64).saturating_mul(per_element.max(8)))
                        .collect(),
                ),
                Err(_) => PerRow::Same(array.get_array_memory_size() as u64),
            }
        }
        _ => PerRow::Same((array.get_array_memory_size() / rows.max(1)) as u64),
    }
}

fn sum_lengths(lengths: &ArrayRef) -> u64 {
    match cast(lengths, &DataType::Int64) {
        Ok(l) => l
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .sum(),
        Err(_) => 1,
    }
}

/// Each row's value as a count (negative and NULL: 0).
fn counts(arg: &ColumnarValue) -> PerRow {
    match integers(arg) {
        Some(Ints::Same(v)) => PerRow::Same(v.max(0) as u64),
        Some(Ints::Each(values)) => {
            PerRow::Each(values.into_iter().map(|v| v.max(0) as u64).collect())
        }
        None => PerRow::Same(0),
    }
}

enum Ints {
    Same(i64),
    Each(Vec<i64>),
}

impl Ints {
    fn at(&self, row: usize) -> i64 {
        match self {
            Self::Same(v) => *v,
            Self::Each(values) => values.get(row).copied().unwrap_or(0),
        }
    }
}

/// Each row's value as an i64 (dates as days, timestamps as nanoseconds), NULL as 0.
fn integers(arg: &ColumnarValue) -> Option<Ints> {
    let to = |t: &DataType| match t {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        }
        _ => DataType::Int64,
    };
    match arg {
        ColumnarValue::Scalar(value) => {
            let target = to(&value.data_type());
            let value = value.cast_to(&target).ok()?;
            Some(Ints::Same(match value {
                ScalarValue::Int64(v) | ScalarValue::TimestampNanosecond(v, _) => v.unwrap_or(0),
                _ => return None,
            }))
        }
        ColumnarValue::Array(array) => {
            let target = to(array.data_type());
            let values = cast(array, &target).ok()?;
            let values = cast(&values, &DataType::Int64).ok()?;
            Some(Ints::Each(
                values
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(0))
                    .collect(),
            ))
        }
    }
}

/// The elements of `range(start, stop [, step])` per row: integers step by the step
/// (default 1); dates and timestamps by an interval's length.
fn range_lengths(args: &[ColumnarValue]) -> PerRow {
    // `range(stop)`: from 0.
    let (start, stop, step) = match args {
        [stop] => (Some(Ints::Same(0)), integers(stop), None),
        [start, stop] => (integers(start), integers(stop), None),
        [start, stop, step, ..] => (integers(start), integers(stop), Some(step)),
        [] => return PerRow::Same(0),
    };
    let (Some(start), Some(stop)) = (start, stop) else {
        return PerRow::Same(u64::MAX);
    };
    let step = match step {
        None => Ints::Same(1),
        Some(ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(i)))) => Ints::Same(
            (i.months as i64 * 28 * 86_400_000_000_000)
                .saturating_add(i.days as i64 * 86_400_000_000_000)
                .saturating_add(i.nanoseconds),
        ),
        Some(ColumnarValue::Scalar(ScalarValue::IntervalDayTime(Some(i)))) => Ints::Same(
            (i.days as i64 * 86_400_000_000_000).saturating_add(i.milliseconds as i64 * 1_000_000),
        ),
        Some(ColumnarValue::Scalar(ScalarValue::IntervalYearMonth(Some(months)))) => {
            Ints::Same(*months as i64 * 28 * 86_400_000_000_000)
        }
        Some(step) => match integers(step) {
            Some(step) => step,
            // An interval per row: as if each step were the smallest (1 ns).
            None => Ints::Same(1),
        },
    };
    let rows = [&start, &stop, &step]
        .iter()
        .filter_map(|v| match v {
            Ints::Each(values) => Some(values.len()),
            Ints::Same(_) => None,
        })
        .max()
        .unwrap_or(1);
    let elements = |row: usize| -> u64 {
        let (a, b, s) = (
            start.at(row) as i128,
            stop.at(row) as i128,
            step.at(row) as i128,
        );
        if s == 0 || (b - a).signum() * s.signum() < 0 {
            return 1;
        }
        ((b - a) / s + 1).clamp(0, u64::MAX as i128) as u64
    };
    if rows == 1 {
        PerRow::Same(elements(0))
    } else {
        PerRow::Each((0..rows).map(elements).collect())
    }
}

/// Whether a plan repeats a constant over [`MAX_GATEWAY_CONSTANT`] bytes over rows (it
/// reads a table, a table function or several VALUES rows): the gateway does not run it.
pub fn repeats_large_constant(plan: &LogicalPlan) -> bool {
    let (mut rows, mut large) = (false, false);
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(_) | LogicalPlan::Unnest(_) => rows = true,
            LogicalPlan::Values(values) if values.values.len() > 1 => rows = true,
            _ => {}
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Literal(value, _) = e {
                    large |= scalar_bytes(value) > MAX_GATEWAY_CONSTANT;
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    rows && large
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn text(values: &[&str]) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(StringArray::from(values.to_vec())))
    }

    fn int(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    #[test]
    fn bounds_follow_the_arguments() {
        let s = text(&["ab", "abcd"]);
        assert_eq!(Growth::Repeat.bound(&[s.clone(), int(10)], 2), 60);
        assert_eq!(Growth::Repeat.bound(&[s.clone(), int(-1)], 2), 0);
        let n = ColumnarValue::Array(Arc::new(Int64Array::from(vec![1, 1000])));
        assert_eq!(Growth::Repeat.bound(&[s.clone(), n], 2), 2 + 4000);
        // A constant is made again on every row.
        let big = ColumnarValue::Scalar(ScalarValue::Utf8(Some("x".repeat(1000))));
        assert_eq!(Growth::Sum.bound(&[s.clone(), big], 2), 2 + 4 + 2000);
        assert_eq!(Growth::Range.bound(&[int(1), int(100)], 1), 800);
        assert_eq!(Growth::Range.bound(&[int(0), int(100), int(10)], 1), 88);
        assert_eq!(Growth::Range.bound(&[int(100), int(0), int(1)], 1), 8);
        assert!(Growth::Pad.bound(&[s, int(3_000_000_000)], 2) > MAX_CALL_BYTES);
    }

    /// Every name in the table is a function DataFusion or Spark's dialect has: a renamed
    /// function fails here rather than going unbounded.
    #[test]
    fn every_wrapped_function_exists() {
        let found: Vec<String> = functions().iter().map(|f| f.name().to_string()).collect();
        for (name, _) in WRAPPED {
            let spark = spark::functions::scalar(name);
            assert!(
                found.iter().any(|f| f == name) || spark.is_some(),
                "{name} not found"
            );
            if let Some(f) = spark {
                assert!(is_bounded(&wrap(f)), "{name}");
            }
        }
    }
}
