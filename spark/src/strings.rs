//! Spark's string functions that take a Java regular expression and DataFusion has no
//! equivalent of: `regexp_extract(str, regex[, group])` and `split(str, regex[, limit])`.
//! Patterns are compiled by the `regex` crate within a size bound (a client's pattern is
//! untrusted); one without an equivalent there (back-references, look-around) is an error
//! that names it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use crate::simple::{invalid, Simple};

/// The most memory one compiled pattern may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Simple::udf(
            "regexp_extract",
            vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
            2,
            DataType::Utf8,
            regexp_extract,
        ),
        Simple::udf(
            "split",
            vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
            2,
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            split,
        ),
    ]
}

/// Compiles each distinct pattern of a column once (most columns hold one).
struct Patterns(Option<(String, Regex)>);

impl Patterns {
    fn get(&mut self, pattern: &str) -> Result<&Regex> {
        if self.0.as_ref().is_none_or(|(p, _)| p != pattern) {
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    invalid(format!(
                        "the regular expression {pattern:?} is not valid here: {e}"
                    ))
                })?;
            self.0 = Some((pattern.to_string(), regex));
        }
        Ok(&self.0.as_ref().expect("just set").1)
    }
}

fn regexp_extract(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (texts, patterns) = (args[0].as_string::<i32>(), args[1].as_string::<i32>());
    let groups = args.get(2).map(|a| a.as_primitive::<Int64Type>());
    let mut compiled = Patterns(None);
    let mut out = StringBuilder::new();
    for i in 0..texts.len() {
        if texts.is_null(i) || patterns.is_null(i) || groups.is_some_and(|g| g.is_null(i)) {
            out.append_null();
            continue;
        }
        let regex = compiled.get(patterns.value(i))?;
        let group = groups.map_or(1, |g| g.value(i));
        if group < 0 || group as usize >= regex.captures_len() {
            return Err(invalid(format!(
                "regexp_extract: the pattern has {} groups, group {group} does not exist",
                regex.captures_len() - 1
            )));
        }
        let found = regex
            .captures(texts.value(i))
            .and_then(|c| c.get(group as usize))
            .map_or("", |m| m.as_str());
        out.append_value(found);
    }
    Ok(Arc::new(out.finish()))
}

fn split(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (texts, patterns) = (args[0].as_string::<i32>(), args[1].as_string::<i32>());
    let limits = args.get(2).map(|a| a.as_primitive::<Int64Type>());
    let mut compiled = Patterns(None);
    let mut out = ListBuilder::new(StringBuilder::new());
    for i in 0..texts.len() {
        if texts.is_null(i) || patterns.is_null(i) || limits.is_some_and(|l| l.is_null(i)) {
            out.append_null();
            continue;
        }
        let regex = compiled.get(patterns.value(i))?;
        let limit = limits.map_or(-1, |l| l.value(i));
        let text = texts.value(i);
        if limit > 0 {
            for part in regex.splitn(text, limit as usize) {
                out.values().append_value(part);
            }
        } else {
            for part in regex.split(text) {
                out.values().append_value(part);
            }
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn strings(v: &str) -> ArrayRef {
        Arc::new(StringArray::from(vec![v]))
    }

    #[test]
    fn extract_and_split_as_spark() {
        let out = regexp_extract(&[
            strings("100-200"),
            strings(r"(\d+)-(\d+)"),
            Arc::new(Int64Array::from(vec![2])),
        ])
        .unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "200");
        let none = regexp_extract(&[strings("abc"), strings(r"(\d+)")]).unwrap();
        assert_eq!(none.as_string::<i32>().value(0), "");
        assert!(regexp_extract(&[strings("a"), strings(r"(a)\1")]).is_err());
        let parts = split(&[strings("oneAtwoBthreeC"), strings("[ABC]")]).unwrap();
        let parts = parts.as_list::<i32>().value(0);
        let parts: Vec<&str> = parts.as_string::<i32>().iter().flatten().collect();
        assert_eq!(parts, ["one", "two", "three", ""]);
    }
}
