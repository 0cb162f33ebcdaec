//! Spark's date and time functions DataFusion has no equivalent of (`months_between`,
//! `timestampadd`, `timestampdiff`), and Spark's datetime patterns (Java's
//! `DateTimeFormatter` letters: `yyyy-MM-dd HH:mm:ss`) read as chrono's, for the rewrites of
//! `date_format`, `to_date`, `to_timestamp`, `unix_timestamp` and `from_unixtime`.

use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;

use crate::simple::{invalid, out_of_range, Simple};

const TS: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Simple::udf(
            "months_between",
            vec![TS, TS, DataType::Boolean],
            2,
            DataType::Float64,
            months_between,
        ),
        Simple::udf(
            "timestampadd",
            vec![DataType::Utf8, DataType::Int64, TS],
            3,
            TS,
            timestamp_add,
        ),
        Simple::udf(
            "timestampdiff",
            vec![DataType::Utf8, TS, TS],
            3,
            DataType::Int64,
            timestamp_diff,
        ),
    ]
}

fn timestamps(a: &ArrayRef) -> &TimestampMicrosecondArray {
    a.as_primitive::<TimestampMicrosecondType>()
}

fn to_datetime(micros: i64) -> Result<NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.naive_utc())
        .ok_or_else(|| out_of_range(format!("timestamp out of range: {micros} µs")))
}

fn from_datetime(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

fn is_last_day(d: NaiveDate) -> bool {
    d.succ_opt().is_none_or(|n| n.month() != d.month())
}

/// Spark's `months_between(end, start[, roundOff])`: whole months when both days of month
/// are equal or both are the last of their months, else the day and time difference in
/// 31-day months; rounded to 8 digits unless `roundOff` is false.
fn months_between(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (end, start) = (timestamps(&args[0]), timestamps(&args[1]));
    let round = args.get(2).map(|a| a.as_boolean().clone());
    let mut out = Float64Array::builder(end.len());
    for i in 0..end.len() {
        if end.is_null(i) || start.is_null(i) || round.as_ref().is_some_and(|r| r.is_null(i)) {
            out.append_null();
            continue;
        }
        let (e, s) = (to_datetime(end.value(i))?, to_datetime(start.value(i))?);
        let months = (e.year() - s.year()) as f64 * 12.0 + e.month() as f64 - s.month() as f64;
        let value = if e.day() == s.day() || (is_last_day(e.date()) && is_last_day(s.date())) {
            months
        } else {
            let seconds = |t: NaiveDateTime| {
                (t.day() as f64 - 1.0) * 86_400.0 + t.num_seconds_from_midnight() as f64
            };
            months + (seconds(e) - seconds(s)) / (31.0 * 86_400.0)
        };
        let round = round.as_ref().is_none_or(|r: &BooleanArray| r.value(i));
        out.append_value(if round {
            (value * 1e8).round() / 1e8
        } else {
            value
        });
    }
    Ok(Arc::new(out.finish()))
}

/// Units of `timestampadd` / `timestampdiff`, in microseconds or months.
enum Unit {
    Micros(i64),
    Months(i64),
}

fn unit(name: &str) -> Result<Unit> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "MICROSECOND" => Unit::Micros(1),
        "MILLISECOND" => Unit::Micros(1_000),
        "SECOND" => Unit::Micros(1_000_000),
        "MINUTE" => Unit::Micros(60_000_000),
        "HOUR" => Unit::Micros(3_600_000_000),
        "DAY" | "DAYOFYEAR" => Unit::Micros(86_400_000_000),
        "WEEK" => Unit::Micros(7 * 86_400_000_000),
        "MONTH" => Unit::Months(1),
        "QUARTER" => Unit::Months(3),
        "YEAR" => Unit::Months(12),
        other => {
            return Err(invalid(format!(
                "invalid unit {other:?}: use MICROSECOND, MILLISECOND, SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR"
            )))
        }
    })
}

fn timestamp_add(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (units, counts, ts) = (
        args[0].as_string::<i32>(),
        args[1].as_primitive::<Int64Type>(),
        timestamps(&args[2]),
    );
    let overflow = || out_of_range("timestampadd: the result is out of range");
    let mut out = TimestampMicrosecondArray::builder(ts.len());
    for i in 0..ts.len() {
        if units.is_null(i) || counts.is_null(i) || ts.is_null(i) {
            out.append_null();
            continue;
        }
        let n = counts.value(i);
        let value = match unit(units.value(i))? {
            Unit::Micros(m) => n
                .checked_mul(m)
                .and_then(|d| ts.value(i).checked_add(d))
                .ok_or_else(overflow)?,
            Unit::Months(m) => {
                let t = to_datetime(ts.value(i))?;
                let months = n.checked_mul(m).ok_or_else(overflow)?;
                let moved = if months >= 0 {
                    t.checked_add_months(Months::new(months.try_into().map_err(|_| overflow())?))
                } else {
                    t.checked_sub_months(Months::new(
                        months.unsigned_abs().try_into().map_err(|_| overflow())?,
                    ))
                };
                from_datetime(moved.ok_or_else(overflow)?)
            }
        };
        out.append_value(value);
    }
    Ok(Arc::new(out.finish()))
}

/// Whole months from `s` to `e`, as Java's `ChronoUnit.MONTHS.between` counts them (Spark's
/// `timestampdiff`): a month is complete when the day and time of month are reached.
fn whole_months(s: NaiveDateTime, e: NaiveDateTime) -> i64 {
    let mut end = e.date();
    if end > s.date() && e.time() < s.time() {
        end = end.pred_opt().unwrap_or(end);
    } else if end < s.date() && e.time() > s.time() {
        end = end.succ_opt().unwrap_or(end);
    }
    let start = s.date();
    let mut months = (end.year() as i64 * 12 + end.month0() as i64)
        - (start.year() as i64 * 12 + start.month0() as i64);
    let days = end.day() as i64 - start.day() as i64;
    if months > 0 && days < 0 {
        months -= 1;
    } else if months < 0 && days > 0 {
        months += 1;
    }
    months
}

fn timestamp_diff(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (units, start, end) = (
        args[0].as_string::<i32>(),
        timestamps(&args[1]),
        timestamps(&args[2]),
    );
    let mut out = Int64Array::builder(start.len());
    for i in 0..start.len() {
        if units.is_null(i) || start.is_null(i) || end.is_null(i) {
            out.append_null();
            continue;
        }
        let value = match unit(units.value(i))? {
            Unit::Micros(m) => (end.value(i) as i128 - start.value(i) as i128) / m as i128,
            Unit::Months(m) => {
                let months = whole_months(to_datetime(start.value(i))?, to_datetime(end.value(i))?);
                (months / m) as i128
            }
        };
        out.append_value(value as i64);
    }
    Ok(Arc::new(out.finish()))
}

/// Whether a chrono format is for writing a value or for reading one (reading takes
/// numbers of one or two digits where Spark's single letter does).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Use {
    Format,
    Parse,
}

/// A Spark datetime pattern as a chrono format string, or why it cannot be one.
pub(crate) fn chrono_format(pattern: &str, purpose: Use) -> std::result::Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted text; '' is a quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                push_literal(&mut out, chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let short = purpose == Use::Format;
        let spec = match (c, n) {
            ('y' | 'u', 2) => "%y",
            ('y' | 'u', _) => "%Y",
            ('M' | 'L', 1) if short => "%-m",
            ('M' | 'L', 1 | 2) => "%m",
            ('M' | 'L', 3) => "%b",
            ('M' | 'L', 4) => "%B",
            ('d', 1) if short => "%-d",
            ('d', 1 | 2) => "%d",
            ('D', 1 | 2) if short => "%-j",
            ('D', 1..=3) => "%j",
            ('H', 1) if short => "%-H",
            ('H', 1 | 2) => "%H",
            ('h', 1) if short => "%-I",
            ('h', 1 | 2) => "%I",
            ('m', 1) if short => "%-M",
            ('m', 1 | 2) => "%M",
            ('s', 1) if short => "%-S",
            ('s', 1 | 2) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', 1) => "%p",
            ('E', 1..=3) => "%a",
            ('E', 4) => "%A",
            ('X' | 'x', 1 | 2) | ('Z', 1..=3) => "%z",
            ('X' | 'x', 3) => "%:z",
            ('z', 1..=3) | ('V', 2) => "%Z",
            _ => {
                return Err(format!(
                    "the datetime pattern {pattern:?} has '{}' which sluice does not read",
                    c.to_string().repeat(n)
                ))
            }
        };
        out.push_str(spec);
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_read_as_chrono() {
        let f = |p| chrono_format(p, Use::Format).unwrap();
        assert_eq!(f("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(f("MMM d, yyyy"), "%b %-d, %Y");
        assert_eq!(f("EEEE 'at' hh:mm a"), "%A at %I:%M %p");
        assert_eq!(f("yyyy.MM.dd'T'HH:mm:ss.SSS"), "%Y.%m.%dT%H:%M:%S.%3f");
        assert_eq!(f("'it''s' 100%"), "it's 100%%");
        assert_eq!(chrono_format("d/M/yyyy", Use::Parse).unwrap(), "%d/%m/%Y");
        assert!(chrono_format("QQQ yyyy", Use::Format).is_err());
    }

    #[test]
    fn months_count_as_java_does() {
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            whole_months(t("2024-01-31 00:00:00"), t("2024-03-01 00:00:00")),
            1
        );
        assert_eq!(
            whole_months(t("2020-02-29 00:00:00"), t("2024-02-28 00:00:00")),
            47
        );
        assert_eq!(
            whole_months(t("2024-01-15 10:00:00"), t("2024-02-15 09:00:00")),
            0
        );
        assert_eq!(
            whole_months(t("2024-03-01 00:00:00"), t("2024-01-31 00:00:00")),
            -1
        );
    }

    #[test]
    fn months_between_as_spark() {
        let ts = |s: &str| {
            let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
            Arc::new(TimestampMicrosecondArray::from(vec![from_datetime(t)])) as ArrayRef
        };
        let one = |a: &str, b: &str| {
            let out = months_between(&[ts(a), ts(b)]).unwrap();
            out.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0)
        };
        // Spark's documented examples.
        assert_eq!(
            one("1997-02-28 10:30:00", "1996-10-30 00:00:00"),
            3.94959677
        );
        assert_eq!(one("2024-03-31 00:00:00", "2024-01-31 00:00:00"), 2.0);
        assert_eq!(one("2024-02-29 00:00:00", "2024-01-31 00:00:00"), 1.0);
    }

    #[test]
    fn units_name_spark_units() {
        assert!(matches!(unit("month"), Ok(Unit::Months(1))));
        assert!(matches!(unit("WEEK"), Ok(Unit::Micros(604_800_000_000))));
        assert!(unit("fortnight").is_err());
    }
}
