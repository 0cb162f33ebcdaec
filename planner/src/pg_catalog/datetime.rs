//! `EXTRACT(field FROM x)` and `date_part('field', x)` as PostgreSQL computes them.
//!
//! DataFusion's `date_part` answers whole numbers (`date_part('second', '10:00:01.5')` is
//! 1); PostgreSQL's seconds carry their fraction (1.5). And the types differ: PostgreSQL's
//! `EXTRACT` is `numeric` (Grafana's `floor(extract(epoch from t)/60)*60` is numeric, its
//! exact value), `date_part` is `double precision`. Both here compute the field as an exact
//! decimal (the whole number of its smallest unit and a scale: seconds in microseconds,
//! scale 6); `EXTRACT` answers that decimal, `date_part` its float.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int32Array, PrimitiveArray,
};
use datafusion::arrow::compute::kernels::cast::cast;
use datafusion::arrow::compute::{date_part as arrow_part, DatePart};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The name `EXTRACT` is planned as (see `compat::UnknownLiteralPlanner`).
pub const EXTRACT: &str = "sluice_extract";

/// `EXTRACT`: numeric.
pub fn extract() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(Part {
            numeric: true,
            signature: Signature::any(2, Volatility::Immutable),
        }))
    });
    UDF.clone()
}

/// `date_part`: double precision (in place of DataFusion's).
pub fn date_part() -> ScalarUDF {
    ScalarUDF::new_from_impl(Part {
        numeric: false,
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Part {
    numeric: bool,
    signature: Signature,
}

/// The fields PostgreSQL extracts, under each of the names it accepts for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millennium,
    Century,
    Decade,
    Year,
    IsoYear,
    Quarter,
    Month,
    Week,
    Day,
    Dow,
    IsoDow,
    Doy,
    Hour,
    Minute,
    Second,
    Milliseconds,
    Microseconds,
    Epoch,
}

fn unit(name: &str) -> Result<Unit> {
    use Unit::*;
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "millennium" | "millennia" | "millenniums" | "mil" | "mils" => Millennium,
        "century" | "centuries" | "c" | "cent" => Century,
        "decade" | "decades" | "dec" | "decs" => Decade,
        "year" | "years" | "y" | "yr" | "yrs" => Year,
        "isoyear" => IsoYear,
        "quarter" | "qtr" => Quarter,
        "month" | "months" | "mon" | "mons" => Month,
        "week" | "weeks" | "w" => Week,
        "day" | "days" | "d" => Day,
        "dow" => Dow,
        "isodow" => IsoDow,
        "doy" => Doy,
        "hour" | "hours" | "h" | "hr" | "hrs" => Hour,
        "minute" | "minutes" | "m" | "min" | "mins" => Minute,
        "second" | "seconds" | "s" | "sec" | "secs" => Second,
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "millisecon" => Milliseconds,
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Microseconds,
        "epoch" => Epoch,
        other => return plan_err!("unit \"{other}\" not supported for EXTRACT / date_part"),
    })
}

/// The decimal scale of a field's value: seconds to the microsecond, milliseconds to the
/// microsecond, the epoch of a time to the microsecond (of a date: whole seconds).
fn scale(field: Unit, input: &DataType) -> i8 {
    match field {
        Unit::Second | Unit::Epoch if matches!(input, DataType::Date32 | DataType::Date64) => 0,
        Unit::Second | Unit::Epoch => 6,
        Unit::Milliseconds => 3,
        _ => 0,
    }
}

impl ScalarUDFImpl for Part {
    fn name(&self) -> &str {
        if self.numeric {
            EXTRACT
        } else {
            "date_part"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        // return_field_from_args decides (the scale depends on the field).
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = if self.numeric {
            let name = match args.scalar_arguments.first() {
                Some(Some(ScalarValue::Utf8(Some(n)) | ScalarValue::LargeUtf8(Some(n))))
                | Some(Some(ScalarValue::Utf8View(Some(n)))) => n.clone(),
                _ => return plan_err!("EXTRACT needs a field name"),
            };
            let input = args.arg_fields.get(1).map(|f| f.data_type().clone());
            DataType::Decimal128(38, scale(unit(&name)?, &input.unwrap_or(DataType::Null)))
        } else {
            DataType::Float64
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [name, value] = args.args.as_slice() else {
            return exec_err!("{} takes a field and a value", self.name());
        };
        let scalar_input = matches!(value, ColumnarValue::Scalar(_));
        let values = value.to_array(args.number_rows)?;
        let out = match name {
            ColumnarValue::Scalar(name) => {
                let name = name.to_string();
                let field = unit(&name)?;
                let scale = scale(field, values.data_type());
                exact(field, &values, scale)?
            }
            // A field per row (`date_part(f, x)` of a column f): each row its own.
            ColumnarValue::Array(names) => {
                let names = cast(names, &DataType::Utf8)?;
                let names = names.as_string::<i32>();
                let mut floats = Vec::with_capacity(values.len());
                for row in 0..values.len() {
                    if names.is_null(row) {
                        floats.push(None);
                        continue;
                    }
                    let field = unit(names.value(row))?;
                    let scale = scale(field, values.data_type());
                    let one = exact(field, &values.slice(row, 1), scale)?;
                    let one = one.as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
                    floats.push(
                        one.is_valid(0)
                            .then(|| one.value(0) as f64 / 10f64.powi(scale as i32)),
                    );
                }
                let out = Arc::new(Float64Array::from(floats)) as ArrayRef;
                return Ok(ColumnarValue::Array(out));
            }
        };
        let out = if self.numeric {
            out
        } else {
            cast(&out, &DataType::Float64)?
        };
        if scalar_input {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// A field of every value, as decimals of `scale`.
fn exact(field: Unit, values: &ArrayRef, scale: i8) -> Result<ArrayRef> {
    let whole: PrimitiveArray<datafusion::arrow::datatypes::Int64Type> = match values.data_type() {
        DataType::Null => PrimitiveArray::new_null(values.len()),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            of_timestamps(field, values)?
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let micros = cast(values, &DataType::Time64(TimeUnit::Microsecond))?;
            let micros = cast(&micros, &DataType::Int64)?;
            of_micros(field, micros.as_primitive(), 0, 0)?
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let interval = match values.data_type() {
                DataType::Duration(_) => {
                    let micros = cast(values, &DataType::Duration(TimeUnit::Microsecond))?;
                    let micros = cast(&micros, &DataType::Int64)?;
                    return finish(of_micros(field, micros.as_primitive(), 0, 0)?, scale);
                }
                _ => cast(values, &DataType::Interval(IntervalUnit::MonthDayNano))?,
            };
            let interval = interval.as_primitive::<IntervalMonthDayNanoType>();
            let mut out = Vec::with_capacity(interval.len());
            for i in 0..interval.len() {
                if interval.is_null(i) {
                    out.push(None);
                    continue;
                }
                let v = interval.value(i);
                let micros = PrimitiveArray::from(vec![v.nanoseconds / 1_000]);
                let one = of_micros(field, &micros, v.months, v.days)?;
                out.push(one.is_valid(0).then(|| one.value(0)));
            }
            PrimitiveArray::from(out)
        }
        other => return exec_err!("cannot extract a field from {other}"),
    };
    finish(whole, scale)
}

fn finish(
    whole: PrimitiveArray<datafusion::arrow::datatypes::Int64Type>,
    scale: i8,
) -> Result<ArrayRef> {
    let decimals: Decimal128Array = whole.unary(|v| v as i128);
    Ok(Arc::new(decimals.with_precision_and_scale(38, scale)?))
}

/// A field of dates and timestamps (in the time zone they carry), in its smallest unit.
fn of_timestamps(
    field: Unit,
    values: &ArrayRef,
) -> Result<PrimitiveArray<datafusion::arrow::datatypes::Int64Type>> {
    use Unit::*;
    let part =
        |p: DatePart| -> Result<Int32Array> { Ok(arrow_part(values, p)?.as_primitive().clone()) };
    let widen = |a: Int32Array| -> PrimitiveArray<datafusion::arrow::datatypes::Int64Type> {
        a.unary(|v| v as i64)
    };
    Ok(match field {
        Epoch => match values.data_type() {
            // Whole seconds of a date (scale 0).
            DataType::Date32 | DataType::Date64 => {
                let days = cast(values, &DataType::Date32)?;
                let days = cast(&days, &DataType::Int32)?;
                widen(
                    days.as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                        .clone(),
                )
                .unary(|d| d * 86_400)
            }
            DataType::Timestamp(_, tz) => {
                let micros = cast(
                    values,
                    &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                )?;
                let micros = cast(&micros, &DataType::Int64)?;
                micros.as_primitive().clone()
            }
            _ => unreachable!("dates and timestamps only"),
        },
        Second | Milliseconds | Microseconds => {
            let seconds = widen(part(DatePart::Second)?);
            let fraction = widen(part(DatePart::Microsecond)?);
            datafusion::arrow::compute::kernels::numeric::add(
                &seconds.unary::<_, datafusion::arrow::datatypes::Int64Type>(|s| s * 1_000_000),
                &fraction,
            )?
            .as_primitive()
            .clone()
        }
        Millennium | Century | Decade => {
            let year = widen(part(DatePart::Year)?);
            year.unary(|y| match field {
                // PostgreSQL's: the first century starts at year 1.
                Millennium if y > 0 => (y + 999) / 1000,
                Millennium => -((999 - y) / 1000),
                Century if y > 0 => (y + 99) / 100,
                Century => -((99 - y) / 100),
                _ => y / 10,
            })
        }
        Year => widen(part(DatePart::Year)?),
        IsoYear => widen(part(DatePart::YearISO)?),
        Quarter => widen(part(DatePart::Quarter)?),
        Month => widen(part(DatePart::Month)?),
        Week => widen(part(DatePart::WeekISO)?),
        Day => widen(part(DatePart::Day)?),
        Dow => widen(part(DatePart::DayOfWeekSunday0)?),
        IsoDow => widen(part(DatePart::DayOfWeekMonday1)?),
        Doy => widen(part(DatePart::DayOfYear)?),
        Hour => widen(part(DatePart::Hour)?),
        Minute => widen(part(DatePart::Minute)?),
    })
}

/// A field of a time of day, or of an interval (`months`, `days` and `micros`), as
/// PostgreSQL reads an interval: its epoch counts a year as 365.25 days and a month as 30.
fn of_micros(
    field: Unit,
    micros: &PrimitiveArray<datafusion::arrow::datatypes::Int64Type>,
    months: i32,
    days: i32,
) -> Result<PrimitiveArray<datafusion::arrow::datatypes::Int64Type>> {
    use Unit::*;
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let (months, days) = (months as i64, days as i64);
    let of = |f: fn(i64, i64, i64) -> i64| micros.unary(move |us| f(us, months, days));
    Ok(match field {
        Epoch => of(|us, months, days| {
            us + days * MICROS_PER_DAY
                + (months / 12) * 36_525 * MICROS_PER_DAY / 100
                + (months % 12) * 30 * MICROS_PER_DAY
        }),
        Second | Milliseconds | Microseconds => of(|us, _, _| us % 60_000_000),
        Minute => of(|us, _, _| us / 60_000_000 % 60),
        Hour => of(|us, _, _| us / 3_600_000_000),
        Day => of(|_, _, days| days),
        Month => of(|_, months, _| months % 12),
        Quarter => of(|_, months, _| months % 12 / 3 + 1),
        Year => of(|_, months, _| months / 12),
        Decade => of(|_, months, _| months / 120),
        Century => of(|_, months, _| months / 1200),
        Millennium => of(|_, months, _| months / 12_000),
        other => return exec_err!("unit \"{other:?}\" not supported for intervals and times"),
    })
}

/// PostgreSQL's date/time template (`to_char`, `to_date`, `to_timestamp`) as the strftime
/// format DataFusion's functions read: `YYYY-MM-DD HH24:MI:SS` is `%Y-%m-%d %H:%M:%S`.
/// Text in double quotes and characters that are no pattern are literal; `FM` drops a
/// number's padding. Names (`Month`, `Day`) are not padded to nine characters as
/// PostgreSQL pads them without `FM`.
pub fn strftime(template: &str) -> String {
    const PATTERNS: &[(&str, &str, &str)] = &[
        // (pattern, format, format in fill mode)
        ("HH24", "%H", "%-H"),
        ("HH12", "%I", "%-I"),
        ("HH", "%I", "%-I"),
        ("MI", "%M", "%-M"),
        ("SS", "%S", "%-S"),
        ("MS", "%3f", "%3f"),
        ("US", "%6f", "%6f"),
        ("AM", "%p", "%p"),
        ("PM", "%p", "%p"),
        ("am", "%P", "%P"),
        ("pm", "%P", "%P"),
        ("YYYY", "%Y", "%Y"),
        ("YY", "%y", "%y"),
        ("Month", "%B", "%B"),
        ("Mon", "%b", "%b"),
        ("MM", "%m", "%-m"),
        ("Day", "%A", "%A"),
        ("Dy", "%a", "%a"),
        ("DDD", "%j", "%-j"),
        ("DD", "%d", "%-d"),
        ("IW", "%V", "%-V"),
        ("TZ", "%Z", "%Z"),
        ("OF", "%:z", "%:z"),
    ];
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    let mut fill = false;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("FM") {
            fill = true;
            rest = after;
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end].replace('%', "%%"));
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        match PATTERNS.iter().find(|(p, _, _)| rest.starts_with(p)) {
            Some((pattern, format, filled)) => {
                out.push_str(if fill { filled } else { format });
                rest = &rest[pattern.len()..];
            }
            None => {
                out.push_str(if c == '%' {
                    "%%"
                } else {
                    &rest[..c.len_utf8()]
                });
                rest = &rest[c.len_utf8()..];
            }
        }
        fill = false;
    }
    out
}
