//! `get_json_object(json, path)`: a value out of JSON text by a JSONPath (`$.a.b`,
//! `$.a[1]`, `$['a']`), as Spark answers it — a string without its quotes, a number or
//! boolean as its text, an object or array as compact JSON; NULL when the text is not JSON
//! or the path finds nothing.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use crate::simple::Simple;

pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![Simple::udf(
        "get_json_object",
        vec![DataType::Utf8, DataType::Utf8],
        2,
        DataType::Utf8,
        get_json_object,
    )]
}

/// Untrusted text: serde_json's parser bounds nesting (128 levels) and a path has at most
/// as many steps as it has characters.
fn get_json_object(args: &[ArrayRef]) -> Result<ArrayRef> {
    let (texts, paths) = (args[0].as_string::<i32>(), args[1].as_string::<i32>());
    let mut out = StringBuilder::new();
    for i in 0..texts.len() {
        if texts.is_null(i) || paths.is_null(i) {
            out.append_null();
            continue;
        }
        let found = steps(paths.value(i)).and_then(|steps| {
            let value: Value = serde_json::from_str(texts.value(i)).ok()?;
            let mut at = &value;
            for step in steps {
                at = match step {
                    Step::Key(k) => at.get(k.as_str())?,
                    Step::Index(n) => at.get(n)?,
                };
            }
            match at {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        });
        out.append_option(found);
    }
    Ok(Arc::new(out.finish()))
}

enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a path, or None for a path Spark answers NULL for (not starting at `$`,
/// malformed, or a wildcard).
fn steps(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() || key == "*" {
                return None;
            }
            steps.push(Step::Key(key.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            steps.push(Step::Index(r[..end].trim().parse().ok()?));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn one(json: &str, path: &str) -> Option<String> {
        let out = get_json_object(&[
            Arc::new(StringArray::from(vec![json])),
            Arc::new(StringArray::from(vec![path])),
        ])
        .unwrap();
        let out = out.as_string::<i32>();
        (!out.is_null(0)).then(|| out.value(0).to_string())
    }

    #[test]
    fn answers_as_spark() {
        assert_eq!(one(r#"{"a":"b"}"#, "$.a").as_deref(), Some("b"));
        assert_eq!(one(r#"{"a":{"b":1}}"#, "$.a.b").as_deref(), Some("1"));
        assert_eq!(one(r#"{"a":[10,20]}"#, "$.a[1]").as_deref(), Some("20"));
        assert_eq!(
            one(r#"{"a":{"b":[1,2]}}"#, "$.a").as_deref(),
            Some(r#"{"b":[1,2]}"#)
        );
        assert_eq!(one(r#"{"a b":true}"#, "$['a b']").as_deref(), Some("true"));
        assert_eq!(one(r#"{"a":1}"#, "$.z"), None);
        assert_eq!(one("not json", "$.a"), None);
        assert_eq!(one(r#"{"a":1}"#, "a"), None);
        let deep = "[".repeat(100_000);
        assert_eq!(one(&deep, "$[0]"), None);
    }
}
