//! PostgreSQL functions that clients call in their catalog SQL (`format_type`,
//! `pg_get_expr`, `current_schemas`, `has_table_privilege`, …) and the functions behind the
//! `::regclass` / `::regtype` / `::regproc` casts (see `compat`).
//!
//! Each is a small closure over scalar values, evaluated row by row: catalog queries touch
//! hundreds of rows, not millions. Functions of the session (`current_user`,
//! `current_setting`, …) are made per statement and fold to constants when their arguments
//! are constants, so they also work in queries that run on a worker.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::classes::{
    PG_CLASS, PG_CONSTRAINT, PG_EXTENSION, PG_LANGUAGE, PG_NAMESPACE, PG_PROC, PG_TYPE,
};
use super::types::oids;
use super::{
    readable, user_oid, Names, OWNER_NAME, OWNER_OID, PG_CATALOG, PG_CATALOG_OID, SERVER_VERSION,
};
use crate::error::{ErrorKind, QueryError};
use crate::session::SessionInfo;

type Eval = Arc<dyn Fn(&[ScalarValue]) -> Result<ScalarValue, QueryError> + Send + Sync>;

/// A function defined by a closure over its argument values.
struct PgFn {
    name: String,
    signature: Signature,
    return_type: DataType,
    eval: Eval,
    /// Replace the call by its value at planning time when the arguments are constants.
    fold: bool,
    /// The PostgreSQL type the result is reported as, where Arrow's type does not say it
    /// (`name` for the text `current_database()` returns).
    pg_type: Option<u32>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFn").field("name", &self.name).finish()
    }
}

impl PartialEq for PgFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.eval, &other.eval)
    }
}
impl Eq for PgFn {}
impl Hash for PgFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.return_type.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let field = Field::new(self.name(), self.return_type.clone(), true);
        Ok(Arc::new(match self.pg_type {
            Some(oid) => field.with_metadata(std::collections::HashMap::from([(
                super::types::PG_TYPE_KEY.to_string(),
                oid.to_string(),
            )])),
            None => field,
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let external = |e: QueryError| DataFusionError::External(Box::new(e));
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => ScalarValue::Null,
                })
                .collect();
            let value = (self.eval)(&values).map_err(external)?;
            return Ok(ColumnarValue::Scalar(cast_to(value, &self.return_type)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        map_rows(&arrays, args.number_rows, &self.return_type, |values| {
            (self.eval)(values).map_err(external)
        })
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        if !self.fold {
            return Ok(ExprSimplifyResult::Original(args));
        }
        let mut values = Vec::with_capacity(args.len());
        for arg in &args {
            match arg {
                Expr::Literal(value, _) => values.push(value.clone()),
                _ => return Ok(ExprSimplifyResult::Original(args)),
            }
        }
        let value = (self.eval)(&values).map_err(|e| DataFusionError::External(Box::new(e)))?;
        // The folded value keeps the type the function is reported as.
        let metadata = self.pg_type.map(|oid| {
            datafusion::logical_expr::expr::FieldMetadata::from(std::collections::HashMap::from([
                (super::types::PG_TYPE_KEY.to_string(), oid.to_string()),
            ]))
        });
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            cast_to(value, &self.return_type)?,
            metadata,
        )))
    }
}

/// Evaluate a function row by row over its argument columns, into a column of
/// `return_type` (catalog queries touch hundreds of rows, not millions).
pub(super) fn map_rows(
    arrays: &[datafusion::arrow::array::ArrayRef],
    rows: usize,
    return_type: &DataType,
    mut f: impl FnMut(&[ScalarValue]) -> DfResult<ScalarValue>,
) -> DfResult<ColumnarValue> {
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let values = arrays
            .iter()
            .map(|a| ScalarValue::try_from_array(a, row))
            .collect::<DfResult<Vec<_>>>()?;
        out.push(cast_to(f(&values)?, return_type)?);
    }
    if out.is_empty() {
        return Ok(ColumnarValue::Array(
            datafusion::arrow::array::new_empty_array(return_type),
        ));
    }
    Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
}

fn cast_to(value: ScalarValue, data_type: &DataType) -> DfResult<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(data_type);
    }
    if &value.data_type() == data_type {
        Ok(value)
    } else {
        value.cast_to(data_type)
    }
}

/// Argument counts a function accepts (any types: the closures convert).
fn arity(counts: &[usize], volatility: Volatility) -> Signature {
    match counts {
        [0] => Signature::nullary(volatility),
        [n] => Signature::any(*n, volatility),
        many => Signature::one_of(
            many.iter()
                .map(|n| {
                    if *n == 0 {
                        TypeSignature::Nullary
                    } else {
                        TypeSignature::Any(*n)
                    }
                })
                .collect(),
            volatility,
        ),
    }
}

/// Volatility as PostgreSQL's: `IMMUTABLE` functions are folded by DataFusion itself;
/// `STABLE` ones (the session's) fold here, once per statement; `VOLATILE` never fold.
const IMMUTABLE: Volatility = Volatility::Immutable;
const STABLE: Volatility = Volatility::Stable;
const VOLATILE: Volatility = Volatility::Volatile;

fn udf(
    name: &str,
    counts: &[usize],
    return_type: DataType,
    volatility: Volatility,
    eval: impl Fn(&[ScalarValue]) -> Result<ScalarValue, QueryError> + Send + Sync + 'static,
) -> ScalarUDF {
    pg_fn(name, counts, return_type, None, volatility, eval)
}

/// A function returning PostgreSQL's `name` (text in Arrow, reported as `name`).
fn name_udf(
    name: &str,
    counts: &[usize],
    volatility: Volatility,
    eval: impl Fn(&[ScalarValue]) -> Result<ScalarValue, QueryError> + Send + Sync + 'static,
) -> ScalarUDF {
    let name_type = Some(super::types::oids::NAME);
    pg_fn(name, counts, DataType::Utf8, name_type, volatility, eval)
}

fn pg_fn(
    name: &str,
    counts: &[usize],
    return_type: DataType,
    pg_type: Option<u32>,
    volatility: Volatility,
    eval: impl Fn(&[ScalarValue]) -> Result<ScalarValue, QueryError> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFn {
        name: name.to_string(),
        signature: arity(counts, volatility),
        return_type,
        eval: Arc::new(eval),
        fold: volatility == Volatility::Stable,
        pg_type,
    })
}

// --- argument helpers ---------------------------------------------------------------------

fn text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        v if v.is_null() => None,
        other => Some(other.to_string()),
    }
}

fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(x) => x.map(i64::from),
        ScalarValue::Int16(x) => x.map(i64::from),
        ScalarValue::Int32(x) => x.map(i64::from),
        ScalarValue::Int64(x) => *x,
        ScalarValue::UInt8(x) => x.map(i64::from),
        ScalarValue::UInt16(x) => x.map(i64::from),
        ScalarValue::UInt32(x) => x.map(i64::from),
        ScalarValue::UInt64(x) => x.map(|x| x as i64),
        other => text(other).and_then(|s| s.trim().parse().ok()),
    }
}

fn oid(v: &ScalarValue) -> Option<u32> {
    int(v).and_then(|v| u32::try_from(v).ok())
}

fn boolean(v: &ScalarValue) -> Option<bool> {
    match v {
        ScalarValue::Boolean(b) => *b,
        other => text(other).map(|s| matches!(s.as_str(), "t" | "true" | "on" | "1")),
    }
}

fn is_text(v: &ScalarValue) -> bool {
    matches!(
        v,
        ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
    )
}

/// `parse_ident`: a qualified identifier's parts (quoted ones as written, the others in
/// lower case); None when it is not one.
#[doc(hidden)]
pub fn parse_ident(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

fn utf8(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

fn arg(args: &[ScalarValue], i: usize) -> &ScalarValue {
    args.get(i).unwrap_or(&ScalarValue::Null)
}

/// `'name'::reg…` of a string, the OID itself of a number.
fn reg_in(
    value: &ScalarValue,
    what: &str,
    kind: ErrorKind,
    lookup: impl Fn(&str) -> Option<u32>,
) -> Result<ScalarValue, QueryError> {
    if value.is_null() {
        return Ok(ScalarValue::UInt32(None));
    }
    if !is_text(value) {
        return Ok(ScalarValue::UInt32(oid(value)));
    }
    let name = text(value).unwrap_or_default();
    if let Ok(n) = name.trim().parse::<u32>() {
        return Ok(ScalarValue::UInt32(Some(n)));
    }
    match lookup(&name) {
        Some(o) => Ok(ScalarValue::UInt32(Some(o))),
        None => Err(QueryError::new(
            kind,
            format!("{what} \"{name}\" does not exist"),
        )),
    }
}

/// PostgreSQL's regexp_split_to_array: the pieces of `string` between the matches of
/// `pattern`, where a match of no characters at the start or the end of the string, or
/// right after another match, does not split (so `''` splits into characters). Flags:
/// `i` (ignore case), `c` (respect case); the compiled pattern is bounded in size.
pub fn regexp_split(
    string: &str,
    pattern: &str,
    flags: Option<&str>,
) -> Result<Vec<String>, QueryError> {
    let mut case_insensitive = false;
    for flag in flags.unwrap_or("").chars() {
        match flag {
            'i' => case_insensitive = true,
            'c' => case_insensitive = false,
            other => {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    format!("invalid regular expression option: \"{other}\""),
                ))
            }
        }
    }
    let regex = regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidValue,
                format!("invalid regular expression: {e}"),
            )
        })?;
    let mut pieces = Vec::new();
    let (mut start, mut last_end) = (0usize, None::<usize>);
    for m in regex.find_iter(string) {
        let empty = m.start() == m.end();
        if empty && (m.start() == 0 || m.start() == string.len() || last_end == Some(m.start())) {
            continue;
        }
        pieces.push(string[start..m.start()].to_string());
        start = m.end();
        last_end = Some(m.end());
    }
    pieces.push(string[start..].to_string());
    Ok(pieces)
}

#[doc(hidden)]
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !super::is_reserved_keyword(name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[doc(hidden)]
pub fn size_pretty(bytes: i64) -> String {
    let mut size = bytes as f64;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if size.abs() < 10240.0 || unit == "TB" {
            return format!("{} {unit}", size.round() as i64);
        }
        size /= 1024.0;
    }
    format!("{bytes} bytes")
}

/// The functions that do not depend on the session: registered once in the planner and
/// in every worker (so a data query that calls one can be shipped).
pub fn static_functions(names: Arc<Names>) -> Vec<ScalarUDF> {
    use datafusion::arrow::datatypes::TimeUnit;
    use DataType::*;
    let _ = process_start_micros(); // the clock starts with the catalog
    let mut f = Vec::new();
    // EXTRACT and date_part as PostgreSQL's (seconds with their fraction).
    f.push(super::datetime::date_part());
    f.push(super::datetime::extract().as_ref().clone());
    // Integer arithmetic that fails on overflow (see `checked`).
    f.extend(crate::checked::functions());
    // Functions that can make large values, bounded (see `bounded`).
    f.extend(crate::bounded::functions());
    // floor, ceil and trunc of a numeric at PostgreSQL's scale.
    f.extend(super::rounding::functions());
    f.push(super::types::pg_typeof());
    let n = names.clone();
    f.push(udf("version", &[0], Utf8, IMMUTABLE, |_| {
        Ok(utf8(Some(format!(
            "PostgreSQL {SERVER_VERSION} (sluice {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
            env!("CARGO_PKG_VERSION")
        ))))
    }));
    // format_type, regtype and regnamespace output: the built-in types' names (workers);
    // sessions override them with versions that hide what the session may not read.
    f.push(udf("format_type", &[2], Utf8, IMMUTABLE, move |a| {
        let Some(t) = oid(arg(a, 0)) else {
            return Ok(utf8(None));
        };
        let typmod = int(arg(a, 1)).unwrap_or(-1) as i32;
        Ok(utf8(Some(
            n.type_name(t, typmod).unwrap_or_else(|| "???".into()),
        )))
    }));
    let n = names.clone();
    f.push(pg_fn(
        "to_regtype",
        &[1],
        UInt32,
        Some(oids::REGTYPE),
        IMMUTABLE,
        move |a| {
            Ok(ScalarValue::UInt32(
                text(arg(a, 0)).and_then(|t| n.type_oid(&t)),
            ))
        },
    ));
    let n = names.clone();
    f.push(pg_fn(
        "sluice_regtype_in",
        &[1],
        UInt32,
        Some(oids::REGTYPE),
        IMMUTABLE,
        move |a| {
            reg_in(arg(a, 0), "type", ErrorKind::UndefinedObject, |t| {
                n.type_oid(t)
            })
        },
    ));
    // `x::oid` of an OID-alias value or column: the same number, typed oid.
    f.push(udf("sluice_oid_in", &[1], UInt32, IMMUTABLE, |a| {
        Ok(ScalarValue::UInt32(oid(arg(a, 0))))
    }));
    let n = names.clone();
    f.push(udf("sluice_regtype_out", &[1], Utf8, IMMUTABLE, move |a| {
        Ok(utf8(oid(arg(a, 0)).map(|t| match t {
            0 => "-".to_string(),
            t => n.type_name(t, -1).unwrap_or_else(|| t.to_string()),
        })))
    }));
    let n = names.clone();
    f.push(pg_fn(
        "sluice_regproc_in",
        &[1],
        UInt32,
        Some(oids::REGPROC),
        IMMUTABLE,
        move |a| {
            reg_in(arg(a, 0), "function", ErrorKind::UndefinedFunction, |p| {
                let p = p.trim().to_ascii_lowercase();
                n.proc_by_name
                    .get(p.strip_prefix("pg_catalog.").unwrap_or(&p))
                    .copied()
            })
        },
    ));
    let n = names.clone();
    f.push(udf("sluice_regproc_out", &[1], Utf8, IMMUTABLE, move |a| {
        Ok(utf8(oid(arg(a, 0)).map(|p| match n.procs.get(&p) {
            Some(proc) => proc.name.clone(),
            None if p == 0 => "-".into(),
            None => p.to_string(),
        })))
    }));
    // regprocedure: a function with its argument types, `int4in(cstring)`.
    let n = names.clone();
    f.push(pg_fn(
        "sluice_regprocedure_in",
        &[1],
        UInt32,
        Some(oids::REGPROCEDURE),
        IMMUTABLE,
        move |a| {
            reg_in(arg(a, 0), "function", ErrorKind::UndefinedFunction, |p| {
                let p = p.trim().to_ascii_lowercase();
                let p = p.split('(').next().unwrap_or_default().trim();
                n.proc_by_name
                    .get(p.strip_prefix("pg_catalog.").unwrap_or(p))
                    .copied()
            })
        },
    ));
    let n = names.clone();
    f.push(udf(
        "sluice_regprocedure_out",
        &[1],
        Utf8,
        IMMUTABLE,
        move |a| {
            Ok(utf8(oid(arg(a, 0)).map(|p| match n.procs.get(&p) {
                Some(proc) => {
                    let args: Vec<String> = proc
                        .args
                        .iter()
                        .map(|t| n.type_name(*t, -1).unwrap_or_else(|| t.to_string()))
                        .collect();
                    format!("{}({})", proc.name, args.join(","))
                }
                None if p == 0 => "-".into(),
                None => p.to_string(),
            })))
        },
    ));
    let n = names.clone();
    f.push(pg_fn(
        "sluice_regnamespace_in",
        &[1],
        UInt32,
        Some(oids::REGNAMESPACE),
        IMMUTABLE,
        move |a| {
            reg_in(arg(a, 0), "schema", ErrorKind::UndefinedObject, |s| {
                n.namespaces
                    .iter()
                    .find(|(_, name)| name.as_str() == s.trim())
                    .map(|(o, _)| *o)
            })
        },
    ));
    let n = names.clone();
    f.push(udf(
        "sluice_regnamespace_out",
        &[1],
        Utf8,
        IMMUTABLE,
        move |a| {
            Ok(utf8(oid(arg(a, 0)).map(|o| {
                n.namespaces
                    .get(&o)
                    .cloned()
                    .unwrap_or_else(|| o.to_string())
            })))
        },
    ));
    let n = names.clone();
    f.push(udf(
        "pg_type_is_visible",
        &[1],
        Boolean,
        IMMUTABLE,
        move |a| {
            Ok(ScalarValue::Boolean(oid(arg(a, 0)).map(|t| {
                n.types.get(&t).is_some_and(|(ns, _)| *ns == PG_CATALOG_OID)
            })))
        },
    ));
    for name in [
        "pg_function_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
        "pg_operator_is_visible",
        "pg_conversion_is_visible",
        "pg_opfamily_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
        "pg_statistics_obj_is_visible",
    ] {
        f.push(udf(name, &[1], Boolean, IMMUTABLE, |a| {
            Ok(ScalarValue::Boolean(oid(arg(a, 0)).map(|_| true)))
        }));
    }
    // No session waits on another's lock: sluice takes none.
    f.push(udf(
        "pg_blocking_pids",
        &[1],
        List(Arc::new(Field::new("item", Int32, true))),
        IMMUTABLE,
        |a| {
            Ok(match int(arg(a, 0)) {
                Some(_) => ScalarValue::List(ScalarValue::new_list_nullable(&[], &Int32)),
                None => ScalarValue::try_from(&List(Arc::new(Field::new("item", Int32, true))))
                    .map_err(|e| QueryError::internal(e.to_string()))?,
            })
        },
    ));
    // `format(fmt, args…)`: %s, %I (identifier, quoted when needed), %L (literal), %%.
    f.push(udf(
        "format",
        &[1, 2, 3, 4, 5, 6, 7, 8],
        Utf8,
        IMMUTABLE,
        |a| {
            let Some(pattern) = text(arg(a, 0)) else {
                return Ok(utf8(None));
            };
            format_args_pg(&pattern, &a[1..]).map(|t| utf8(Some(t)))
        },
    ));
    // sluice keeps no expression trees: defaults, index and constraint definitions are none.
    f.push(udf("pg_get_expr", &[2, 3], Utf8, IMMUTABLE, |a| {
        Ok(utf8(text(arg(a, 0))))
    }));
    for (name, counts) in [
        ("pg_get_triggerdef", &[1usize, 2][..]),
        ("pg_get_ruledef", &[1, 2]),
        ("pg_get_viewdef", &[1, 2]),
        ("pg_get_partkeydef", &[1]),
        ("pg_get_statisticsobjdef_columns", &[1]),
        ("pg_get_serial_sequence", &[2]),
        ("shobj_description", &[2]),
        ("pg_get_functiondef", &[1]),
    ] {
        f.push(udf(name, counts, Utf8, IMMUTABLE, |_| Ok(utf8(None))));
    }
    // Comments: PostgreSQL's own on built-in objects; sluice's objects have none.
    let n = names.clone();
    f.push(udf("obj_description", &[1, 2], Utf8, IMMUTABLE, move |a| {
        let Some(object) = oid(arg(a, 0)) else {
            return Ok(utf8(None));
        };
        let class = match a.get(1) {
            Some(catalog) => match text(catalog) {
                Some(catalog) => {
                    let catalog = catalog.trim().to_ascii_lowercase();
                    let catalog = catalog.strip_prefix("pg_catalog.").unwrap_or(&catalog);
                    match n.relation_oid(catalog, &[PG_CATALOG.to_string()]) {
                        Some(class) => Some(class),
                        None => return Ok(utf8(None)),
                    }
                }
                None => return Ok(utf8(None)),
            },
            None => None,
        };
        // One argument (deprecated): the object's comment in whichever catalog has it.
        let classes: &[u32] = match &class {
            Some(class) => std::slice::from_ref(class),
            None => &[PG_PROC, PG_CLASS, PG_TYPE, PG_NAMESPACE],
        };
        Ok(utf8(classes.iter().find_map(|class| {
            n.descriptions.get(&(object, *class, 0)).cloned()
        })))
    }));
    let n = names.clone();
    f.push(udf("col_description", &[2], Utf8, IMMUTABLE, move |a| {
        let column = int(arg(a, 1)).and_then(|c| i32::try_from(c).ok());
        Ok(utf8(oid(arg(a, 0)).zip(column).and_then(
            |(table, column)| n.descriptions.get(&(table, PG_CLASS, column)).cloned(),
        )))
    }));
    let n = names.clone();
    f.push(udf(
        "pg_get_function_result",
        &[1],
        Utf8,
        IMMUTABLE,
        move |a| {
            Ok(utf8(oid(arg(a, 0)).and_then(|p| n.procs.get(&p)).map(
                |p| {
                    let t = n.type_name(p.result, -1).unwrap_or_default();
                    if p.returns_set {
                        format!("SETOF {t}")
                    } else {
                        t
                    }
                },
            )))
        },
    ));
    for name in [
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        let n = names.clone();
        f.push(udf(name, &[1], Utf8, IMMUTABLE, move |a| {
            Ok(utf8(oid(arg(a, 0)).and_then(|p| n.procs.get(&p)).map(
                |p| {
                    p.args
                        .iter()
                        .map(|t| n.type_name(*t, -1).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )))
        }));
    }
    f.push(pg_fn(
        "json_build_object",
        &[0, 2, 4, 6, 8, 10, 12, 14, 16],
        Utf8,
        Some(oids::JSON), // json's text is its binary form too
        IMMUTABLE,
        |a| {
            let mut out = String::from("{");
            for (i, pair) in a.chunks(2).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&json_value(&pair[0]));
                out.push_str(" : ");
                out.push_str(&json_value(&pair[1]));
            }
            out.push('}');
            Ok(utf8(Some(out)))
        },
    ));
    // sluice has no partitioned tables: a relation's ancestors are itself (psql's `\d`
    // lists the foreign keys referencing a table and its ancestors).
    f.push(udf(
        "pg_partition_ancestors",
        &[1],
        List(Arc::new(Field::new("item", UInt32, true))),
        STABLE,
        |a| {
            let items: Vec<ScalarValue> = oid(arg(a, 0))
                .map(|o| ScalarValue::UInt32(Some(o)))
                .into_iter()
                .collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &items, &UInt32,
            )))
        },
    ));
    // regexp_split_to_table at the top of a select list is unnested (compat), in FROM it
    // is a table function (`RegexpSplitToTable`); both split as regexp_split_to_array.
    for name in ["regexp_split_to_array", "regexp_split_to_table"] {
        f.push(udf(
            name,
            &[2, 3],
            List(Arc::new(Field::new("item", Utf8, true))),
            IMMUTABLE,
            |a| {
                let (Some(string), Some(pattern)) = (text(arg(a, 0)), text(arg(a, 1))) else {
                    return Ok(ScalarValue::new_null_list(Utf8, true, 1));
                };
                let flags = a.get(2).and_then(text);
                let items: Vec<ScalarValue> = regexp_split(&string, &pattern, flags.as_deref())?
                    .into_iter()
                    .map(|s| ScalarValue::Utf8(Some(s)))
                    .collect();
                Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &items, &Utf8,
                )))
            },
        ));
    }
    f.push(ExpandArray::udf());
    f.push(ScalarUDF::new_from_impl(AclExplode::new()));
    f.push(udf("sluice_array_text", &[1], Utf8, IMMUTABLE, |a| {
        Ok(utf8(array_text(arg(a, 0))))
    }));
    f.push(name_udf("getdatabaseencoding", &[0], IMMUTABLE, |_| {
        Ok(utf8(Some("UTF8".into())))
    }));
    f.push(name_udf("pg_encoding_to_char", &[1], IMMUTABLE, |a| {
        Ok(utf8(int(arg(a, 0)).map(|e| {
            usize::try_from(e)
                .ok()
                .and_then(|e| ENCODINGS.get(e))
                .copied()
                .unwrap_or("")
                .to_string()
        })))
    }));
    f.push(udf("pg_char_to_encoding", &[1], Int32, IMMUTABLE, |a| {
        Ok(ScalarValue::Int32(text(arg(a, 0)).map(|e| {
            if e.eq_ignore_ascii_case("utf8") {
                6
            } else {
                0
            }
        })))
    }));
    f.push(udf(
        "pg_relation_is_publishable",
        &[1],
        Boolean,
        IMMUTABLE,
        |_| Ok(ScalarValue::Boolean(Some(false))),
    ));
    // Table privileges depend on the session's grants (see `session_functions`).
    for name in [
        "has_schema_privilege",
        "has_database_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_type_privilege",
        "has_tablespace_privilege",
    ] {
        f.push(udf(name, &[2, 3, 4], Boolean, IMMUTABLE, |_| {
            Ok(ScalarValue::Boolean(Some(true)))
        }));
    }
    f.push(ScalarUDF::new_from_impl(ArrayBound::new(false)));
    f.push(ScalarUDF::new_from_impl(ArrayBound::new(true)));
    f.push(udf("pg_is_in_recovery", &[0], Boolean, IMMUTABLE, |_| {
        Ok(ScalarValue::Boolean(Some(false)))
    }));
    f.push(udf("pg_size_pretty", &[1], Utf8, IMMUTABLE, |a| {
        Ok(utf8(int(arg(a, 0)).map(size_pretty)))
    }));
    // Activity counters of a table or index (DBeaver's and pgAdmin's statistics): sluice
    // keeps none (no index scanned, no tuple written), times never set.
    for name in [
        "pg_stat_get_numscans",
        "pg_stat_get_tuples_returned",
        "pg_stat_get_tuples_fetched",
        "pg_stat_get_tuples_inserted",
        "pg_stat_get_tuples_updated",
        "pg_stat_get_tuples_deleted",
        "pg_stat_get_tuples_hot_updated",
        "pg_stat_get_dead_tuples",
        "pg_stat_get_mod_since_analyze",
        "pg_stat_get_ins_since_vacuum",
        "pg_stat_get_blocks_fetched",
        "pg_stat_get_blocks_hit",
        "pg_stat_get_vacuum_count",
        "pg_stat_get_autovacuum_count",
        "pg_stat_get_analyze_count",
        "pg_stat_get_autoanalyze_count",
    ] {
        f.push(udf(name, &[1], Int64, IMMUTABLE, |a| {
            Ok(ScalarValue::Int64(oid(arg(a, 0)).map(|_| 0)))
        }));
    }
    for name in [
        "pg_stat_get_last_vacuum_time",
        "pg_stat_get_last_autovacuum_time",
        "pg_stat_get_last_analyze_time",
        "pg_stat_get_last_autoanalyze_time",
    ] {
        f.push(udf(
            name,
            &[1],
            Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            IMMUTABLE,
            |_| Ok(ScalarValue::TimestampMicrosecond(None, Some("UTC".into()))),
        ));
    }
    // The server's start, as PostgreSQL's postmaster's.
    f.push(udf(
        "pg_postmaster_start_time",
        &[0],
        Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        STABLE,
        |_| {
            Ok(ScalarValue::TimestampMicrosecond(
                Some(process_start_micros()),
                Some("UTC".into()),
            ))
        },
    ));
    // Transaction ids: sluice's transactions write nothing; each statement gets a number
    // that only grows, as a client comparing them expects.
    for name in [
        "txid_current",
        "pg_current_xact_id",
        "txid_current_if_assigned",
    ] {
        f.push(udf(name, &[0], Int64, VOLATILE, |_| {
            use std::sync::atomic::{AtomicI64, Ordering};
            static NEXT: AtomicI64 = AtomicI64::new(1000);
            Ok(ScalarValue::Int64(Some(
                NEXT.fetch_add(1, Ordering::Relaxed),
            )))
        }));
    }
    // The address and port the client reached: not known to the planner (NULL, as
    // PostgreSQL answers over a Unix socket).
    f.push(pg_fn(
        "inet_server_addr",
        &[0],
        Utf8,
        Some(869),
        STABLE,
        |_| Ok(utf8(None)),
    ));
    f.push(pg_fn(
        "inet_client_addr",
        &[0],
        Utf8,
        Some(869),
        STABLE,
        |_| Ok(utf8(None)),
    ));
    f.push(udf("inet_server_port", &[0], Int32, STABLE, |_| {
        Ok(ScalarValue::Int32(None))
    }));
    f.push(udf("inet_client_port", &[0], Int32, STABLE, |_| {
        Ok(ScalarValue::Int32(None))
    }));
    // SQL-standard function bodies (`BEGIN ATOMIC`): no function of sluice's has one.
    f.push(udf(
        "pg_get_function_sqlbody",
        &[1],
        Utf8,
        IMMUTABLE,
        |_| Ok(utf8(None)),
    ));
    f.push(udf(
        "parse_ident",
        &[1, 2],
        List(Arc::new(Field::new("item", Utf8, true))),
        IMMUTABLE,
        |a| {
            let Some(text) = text(arg(a, 0)) else {
                return Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &[],
                    &Utf8,
                )));
            };
            let parts = parse_ident(&text).ok_or_else(|| {
                QueryError::new(
                    ErrorKind::InvalidText,
                    format!("string is not a valid identifier: \"{text}\""),
                )
            })?;
            let parts: Vec<ScalarValue> = parts.into_iter().map(|p| utf8(Some(p))).collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &parts, &Utf8,
            )))
        },
    ));
    f.push(udf("quote_ident", &[1], Utf8, IMMUTABLE, |a| {
        Ok(utf8(text(arg(a, 0)).map(|s| quote_ident(&s))))
    }));
    f.push(udf("pg_my_temp_schema", &[0], UInt32, IMMUTABLE, |_| {
        Ok(ScalarValue::UInt32(Some(0)))
    }));
    f.push(udf(
        "pg_is_other_temp_schema",
        &[1],
        Boolean,
        IMMUTABLE,
        |_| Ok(ScalarValue::Boolean(Some(false))),
    ));
    f.push(udf("pg_tablespace_location", &[1], Utf8, IMMUTABLE, |_| {
        Ok(utf8(Some(String::new())))
    }));
    f
}

/// The session-independent functions over the built-in catalog only (for workers).
pub async fn builtin() -> Result<Vec<ScalarUDF>, QueryError> {
    let empty = datafusion::catalog::MemoryCatalogProvider::new();
    let catalog = super::PgCatalog::new(&empty, &Default::default()).await?;
    Ok(static_functions(catalog.names))
}

/// A value as JSON (as `json_build_object` writes it).
fn json_value(value: &ScalarValue) -> String {
    if value.is_null() {
        return "null".into();
    }
    match value {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        v if v.data_type().is_numeric() => v.to_string(),
        other => {
            let s = text(other).unwrap_or_default();
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

/// An array in PostgreSQL's text form (`{1,2}`); other values as text.
fn array_text(value: &ScalarValue) -> Option<String> {
    let ScalarValue::List(list) = value else {
        return text(value);
    };
    let rows = ScalarValue::convert_array_to_scalar_vec(list.as_ref()).ok()?;
    let items = rows.into_iter().next().flatten()?;
    let items: Vec<String> = items
        .iter()
        .map(|item| match text(item) {
            None => "NULL".to_string(),
            Some(s) if s.is_empty() || s.contains([',', '{', '}', '"', '\\', ' ']) => {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            Some(s) => s,
        })
        .collect();
    Some(format!("{{{}}}", items.join(",")))
}

/// The names a session may not see (see `session_functions`), computed on first use:
/// most statements call no function that asks.
struct Unseen {
    names: Arc<Names>,
    access: crate::session::Access,
    /// (row types and their arrays, schemas)
    hidden: std::sync::OnceLock<(HashSet<u32>, HashSet<u32>)>,
}

impl Unseen {
    fn new(names: Arc<Names>, access: crate::session::Access) -> Self {
        Self {
            names,
            access,
            hidden: std::sync::OnceLock::new(),
        }
    }

    fn hidden(&self) -> &(HashSet<u32>, HashSet<u32>) {
        self.hidden.get_or_init(|| {
            if self.access.reads_all() {
                return Default::default();
            }
            let types = self
                .names
                .relations
                .iter()
                .filter(|r| !readable(&self.access, r))
                .flat_map(|r| {
                    [
                        Some(r.rowtype),
                        self.names.array_types.get(&r.rowtype).copied(),
                    ]
                })
                .flatten()
                .collect();
            (types, super::hidden_namespaces(&self.names, &self.access))
        })
    }

    fn type_hidden(&self, oid: u32) -> bool {
        self.hidden().0.contains(&oid)
    }

    fn namespace_hidden(&self, oid: u32) -> bool {
        self.hidden().1.contains(&oid)
    }
}

/// pg_language's rows (by OID).
const LANGUAGES: &[(u32, &str)] = &[
    (12, "internal"),
    (13, "c"),
    (14, "sql"),
    (super::PLPGSQL_LANGUAGE, "plpgsql"),
];

/// PostgreSQL's encodings by number (pg_conversion's, pg_database.encoding).
const ENCODINGS: &[&str] = &[
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    "SJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "SHIFT_JIS_2004",
];

/// `array_lower(a, dim)` / `array_upper(a, dim)` of a one-dimensional array: 1 and its
/// length, NULL for an empty array or another dimension. PostgreSQL's vectors (int2vector,
/// oidvector: pg_index.indkey, pg_proc.proargtypes) count from 0, so the bounds of a value
/// whose field says it is one are 0 and length − 1 (Rails reads `indkey` by
/// `generate_subscripts(indkey, 1)`, which starts at `array_lower`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayBound {
    upper: bool,
    signature: Signature,
}

impl ArrayBound {
    fn new(upper: bool) -> Self {
        Self {
            upper,
            signature: Signature::any(2, IMMUTABLE),
        }
    }
}

/// Whether a field holds one of PostgreSQL's vectors, which count from 0.
pub(crate) fn is_vector(field: &Field) -> bool {
    matches!(
        field
            .metadata()
            .get(super::types::PG_TYPE_KEY)
            .map(String::as_str),
        Some("22" | "30")
    )
}

impl ScalarUDFImpl for ArrayBound {
    fn name(&self) -> &str {
        if self.upper {
            "array_upper"
        } else {
            "array_lower"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let first = if args.arg_fields.first().is_some_and(|f| is_vector(f)) {
            0
        } else {
            1
        };
        let upper = self.upper;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        map_rows(&arrays, args.number_rows, &DataType::Int32, |a| {
            Ok(ScalarValue::Int32(
                array_len(arg(a, 0), arg(a, 1))
                    .map(|len| if upper { first + len - 1 } else { first }),
            ))
        })
    }
}

/// The length of a one-dimensional array (NULL if empty or `dim` is not 1).
fn array_len(array: &ScalarValue, dim: &ScalarValue) -> Option<i32> {
    use datafusion::arrow::array::Array;
    if int(dim) != Some(1) {
        return None;
    }
    let len = match array {
        ScalarValue::List(a) if !a.is_null(0) => a.value(0).len(),
        ScalarValue::LargeList(a) if !a.is_null(0) => a.value(0).len(),
        ScalarValue::FixedSizeList(a) if !a.is_null(0) => a.value(0).len(),
        _ => return None,
    };
    (len > 0).then_some(len as i32)
}

/// The functions of one session (who it is, its database and settings).
pub fn session_functions(names: Arc<Names>, session: &SessionInfo) -> Vec<ScalarUDF> {
    use DataType::*;
    let mut f = Vec::new();
    let user = session.user.clone();
    for name in ["current_user", "session_user", "user", "current_role"] {
        let user = user.clone();
        f.push(name_udf(name, &[0], STABLE, move |_| {
            Ok(utf8(Some(user.clone())))
        }));
    }
    let database = session.database.clone();
    for name in ["current_database", "current_catalog"] {
        let database = database.clone();
        f.push(name_udf(name, &[0], STABLE, move |_| {
            Ok(utf8(Some(database.clone())))
        }));
    }
    let path = session.search_path();
    let existing: Vec<String> = path
        .iter()
        .filter(|s| names.namespaces.values().any(|n| n == *s))
        .cloned()
        .collect();
    let first = existing.first().cloned();
    f.push(name_udf("current_schema", &[0], STABLE, move |_| {
        Ok(utf8(first.clone()))
    }));
    let schemas = existing.clone();
    f.push(pg_fn(
        "current_schemas",
        &[1],
        List(Arc::new(Field::new("item", Utf8, true))),
        Some(1003), // name[]
        STABLE,
        move |a| {
            let mut list: Vec<ScalarValue> = Vec::new();
            if boolean(arg(a, 0)).unwrap_or(false) {
                list.push(utf8(Some(PG_CATALOG.into())));
            }
            list.extend(schemas.iter().map(|s| utf8(Some(s.clone()))));
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &list, &Utf8,
            )))
        },
    ));
    let settings = session.settings.clone();
    f.push(udf("current_setting", &[1, 2], Utf8, STABLE, move |a| {
        let Some(name) = text(arg(a, 0)) else {
            return Ok(utf8(None));
        };
        match settings.get(&name) {
            Some(v) => Ok(utf8(Some(v))),
            None if boolean(arg(a, 1)).unwrap_or(false) => Ok(utf8(None)),
            None => Err(QueryError::new(
                ErrorKind::UndefinedObject,
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }));
    let settings = session.settings.clone();
    f.push(udf("set_config", &[3], Utf8, VOLATILE, move |a| {
        let (Some(name), value) = (text(arg(a, 0)), text(arg(a, 1))) else {
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                "set_config: the setting name must not be NULL",
            ));
        };
        let value = value.unwrap_or_default();
        settings.set_checked(&name, value.clone())?;
        Ok(utf8(Some(value)))
    }));
    let pid = session.backend_pid;
    f.push(udf("pg_backend_pid", &[0], Int32, STABLE, move |_| {
        Ok(ScalarValue::Int32(Some(pid)))
    }));

    // Relation names resolve along the session's search_path.
    let visible: Vec<String> = std::iter::once(PG_CATALOG.to_string())
        .chain(path.iter().cloned())
        .collect();
    // SELECT on what the grants allow (and on the system catalogs); nothing else: the
    // warehouse is read-only.
    // The table is the first argument, or the second when a user name comes first.
    for (name, arities) in [
        ("has_table_privilege", &[2, 3]),
        ("has_any_column_privilege", &[2, 3]),
        ("has_column_privilege", &[3, 4]),
    ] {
        let n = names.clone();
        let p = path.clone();
        let access = session.access.clone();
        f.push(udf(name, arities, Boolean, STABLE, move |a| {
            let table = &a[a.len() - arities[0]];
            let relation = if is_text(table) {
                text(table).and_then(|t| n.relation_oid(&t, &p))
            } else {
                oid(table)
            }
            .and_then(|o| n.relation(o));
            let privilege = text(&a[a.len() - 1]).unwrap_or_default();
            let select = privilege
                .split(',')
                .all(|p| p.trim().to_ascii_uppercase().starts_with("SELECT"));
            Ok(ScalarValue::Boolean(
                relation.map(|r| select && readable(&access, r)),
            ))
        }));
    }
    // Sizes: the bytes of a data table's files (no TOAST, no index: one number for the
    // table, its relation and its total), of what the session may read. A table it may not
    // read is as one that does not exist: NULL.
    for name in [
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
    ] {
        let n = names.clone();
        let p = path.clone();
        let access = session.access.clone();
        let indexes = name == "pg_indexes_size";
        f.push(udf(name, &[1, 2], Int64, STABLE, move |a| {
            // `pg_table_size('s.t')`: the literal is a regclass.
            let relation = if is_text(arg(a, 0)) {
                text(arg(a, 0)).and_then(|t| n.relation_oid(&t, &p))
            } else {
                oid(arg(a, 0))
            };
            let Some(o) = relation else {
                return Ok(ScalarValue::Int64(None));
            };
            let size = match n.relation(o) {
                Some(r) if readable(&access, r) => Some(if indexes {
                    0
                } else {
                    r.size.bytes.unwrap_or(0) as i64
                }),
                Some(_) => None,
                // An informational key's index holds nothing.
                None => n.indexes.iter().any(|i| i.oid == o).then_some(0),
            };
            Ok(ScalarValue::Int64(size))
        }));
    }
    // A table's live rows: its files' row count, for a table the session may read.
    let n = names.clone();
    let access = session.access.clone();
    f.push(udf(
        "pg_stat_get_live_tuples",
        &[1],
        Int64,
        STABLE,
        move |a| {
            Ok(ScalarValue::Int64(oid(arg(a, 0)).and_then(
                |o| match n.relation(o) {
                    Some(r) if readable(&access, r) => Some(r.size.rows.unwrap_or(0) as i64),
                    Some(_) => None,
                    None => Some(0),
                },
            )))
        },
    ));
    // The database's size: its tables' files, those the session may read.
    let n = names.clone();
    let access = session.access.clone();
    f.push(udf("pg_database_size", &[1], Int64, STABLE, move |a| {
        if arg(a, 0).is_null() {
            return Ok(ScalarValue::Int64(None));
        }
        let total: u64 = n
            .relations
            .iter()
            .filter(|r| readable(&access, r))
            .filter_map(|r| r.size.bytes)
            .sum();
        Ok(ScalarValue::Int64(Some(total as i64)))
    }));
    // A relation (or a key's index) the session may not read is one that does not exist:
    // its name does not resolve, its OID prints as a number — as the catalog hides it.
    let may_see = {
        let n = names.clone();
        let access = session.access.clone();
        move |o: u32| {
            let table = n
                .indexes
                .iter()
                .find(|i| i.oid == o)
                .map_or(o, |index| index.relation);
            n.relation(table).is_none_or(|r| readable(&access, r))
        }
    };
    let n = names.clone();
    let p = path.clone();
    let see = may_see.clone();
    f.push(pg_fn(
        "to_regclass",
        &[1],
        UInt32,
        Some(oids::REGCLASS),
        STABLE,
        move |a| {
            Ok(ScalarValue::UInt32(
                text(arg(a, 0)).and_then(|t| n.relation_oid(&t, &p).filter(|o| see(*o))),
            ))
        },
    ));
    let n = names.clone();
    let p = path.clone();
    let see = may_see.clone();
    f.push(pg_fn(
        "sluice_regclass_in",
        &[1],
        UInt32,
        Some(oids::REGCLASS),
        STABLE,
        move |a| {
            reg_in(arg(a, 0), "relation", ErrorKind::UndefinedTable, |t| {
                n.relation_oid(t, &p).filter(|o| see(*o))
            })
        },
    ));
    let n = names.clone();
    let v = visible.clone();
    let see = may_see.clone();
    f.push(udf("sluice_regclass_out", &[1], Utf8, STABLE, move |a| {
        Ok(utf8(oid(arg(a, 0)).map(|o| match n.relation_name(o) {
            Some(_) if !see(o) => o.to_string(),
            Some((schema, name)) if v.iter().any(|s| s == schema) => quote_ident(name),
            Some((schema, name)) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
            None => o.to_string(),
        })))
    }));
    // What the session may not read has no name: a table's row type (`tpch.nation`, and
    // its array) prints as its number, as does a schema none of whose tables it may read
    // — as the catalog's rows about them are hidden.
    let unseen = Arc::new(Unseen::new(names.clone(), session.access.clone()));
    // A type's name, qualified when its schema is not on the search_path (a table's row
    // type `tpch.nation`), as PostgreSQL prints a regtype.
    let n = names.clone();
    let v = visible.clone();
    let hidden = unseen.clone();
    f.push(udf("sluice_regtype_out", &[1], Utf8, STABLE, move |a| {
        Ok(utf8(oid(arg(a, 0)).map(|t| {
            let name = match t {
                0 => return "-".to_string(),
                t if hidden.type_hidden(t) => return t.to_string(),
                t => n.type_name(t, -1).unwrap_or_else(|| t.to_string()),
            };
            match n.types.get(&t).and_then(|(ns, _)| n.namespaces.get(ns)) {
                Some(schema) if !v.iter().any(|s| s == schema) => {
                    format!("{}.{}", quote_ident(schema), name)
                }
                _ => name,
            }
        })))
    }));
    let n = names.clone();
    let hidden = unseen.clone();
    f.push(udf("format_type", &[2], Utf8, STABLE, move |a| {
        let Some(t) = oid(arg(a, 0)) else {
            return Ok(utf8(None));
        };
        if hidden.type_hidden(t) {
            return Ok(utf8(Some("???".into())));
        }
        let typmod = int(arg(a, 1)).unwrap_or(-1) as i32;
        Ok(utf8(Some(
            n.type_name(t, typmod).unwrap_or_else(|| "???".into()),
        )))
    }));
    let n = names.clone();
    let hidden = unseen.clone();
    f.push(udf(
        "sluice_regnamespace_out",
        &[1],
        Utf8,
        STABLE,
        move |a| {
            Ok(utf8(oid(arg(a, 0)).map(|o| match n.namespaces.get(&o) {
                Some(schema) if !hidden.namespace_hidden(o) => schema.clone(),
                _ => o.to_string(),
            })))
        },
    ));
    // `pg_describe_object(classid, objid, objsubid)`: an object in words, as psql's `\dx+`
    // lists an extension's members ("function plpgsql_validator(oid)", "language
    // plpgsql") and tools describe dependencies. A relation the session may not read is
    // not described.
    let n = names.clone();
    let v = visible.clone();
    let access = session.access.clone();
    f.push(udf("pg_describe_object", &[3], Utf8, STABLE, move |a| {
        let qualified = |namespace: u32, name: &str| match n.namespaces.get(&namespace) {
            Some(schema) if !v.iter().any(|s| s == schema) => {
                format!("{}.{}", quote_ident(schema), quote_ident(name))
            }
            _ => quote_ident(name),
        };
        let relation = |oid: u32| {
            n.relation(oid).filter(|r| readable(&access, r)).map(|r| {
                let kind = match r.kind {
                    'v' => "view",
                    'i' => "index",
                    _ => "table",
                };
                (format!("{kind} {}", qualified(r.namespace, &r.name)), r)
            })
        };
        let (Some(class), Some(object)) = (oid(arg(a, 0)), oid(arg(a, 1))) else {
            return Ok(utf8(None));
        };
        let sub = int(arg(a, 2)).unwrap_or(0);
        let text = match class {
            PG_PROC => n.procs.get(&object).map(|p| {
                let args: Vec<String> = p
                    .args
                    .iter()
                    .map(|t| n.type_name(*t, -1).unwrap_or_else(|| t.to_string()))
                    .collect();
                format!(
                    "function {}({})",
                    qualified(PG_CATALOG_OID, &p.name),
                    args.join(",")
                )
            }),
            PG_LANGUAGE => LANGUAGES
                .iter()
                .find(|(oid, _)| *oid == object)
                .map(|(_, name)| format!("language {name}")),
            PG_CLASS if sub > 0 => relation(object).and_then(|(described, r)| {
                let column = r.columns.get(usize::try_from(sub - 1).ok()?)?;
                Some(format!(
                    "column {} of {described}",
                    quote_ident(&column.name)
                ))
            }),
            PG_CLASS => relation(object).map(|(described, _)| described),
            PG_CONSTRAINT => n.constraint(object).and_then(|c| {
                let (described, _) = relation(c.relation)?;
                Some(format!(
                    "constraint {} on {described}",
                    quote_ident(&c.name)
                ))
            }),
            PG_TYPE if unseen.type_hidden(object) => None,
            PG_TYPE => n.types.get(&object).map(|(namespace, _)| {
                let name = n.type_name(object, -1).unwrap_or_default();
                match n.namespaces.get(namespace) {
                    Some(schema) if !v.iter().any(|s| s == schema) => {
                        format!("type {}.{name}", quote_ident(schema))
                    }
                    _ => format!("type {name}"),
                }
            }),
            PG_NAMESPACE if unseen.namespace_hidden(object) => None,
            PG_NAMESPACE => n
                .namespaces
                .get(&object)
                .map(|schema| format!("schema {}", quote_ident(schema))),
            PG_EXTENSION if object == super::PLPGSQL_EXTENSION => Some("extension plpgsql".into()),
            _ => None,
        };
        Ok(utf8(text))
    }));
    // Informational keys, as PostgreSQL prints their definitions: a referenced table is
    // qualified unless its schema is on the search_path; an index's table always is.
    let n = names.clone();
    let v = visible.clone();
    let access = session.access.clone();
    f.push(udf(
        "pg_get_constraintdef",
        &[1, 2],
        Utf8,
        STABLE,
        move |a| {
            let relation_name = |oid: u32| {
                n.relation(oid).map(|r| {
                    if v.contains(&r.schema) {
                        quote_ident(&r.name)
                    } else {
                        format!("{}.{}", quote_ident(&r.schema), quote_ident(&r.name))
                    }
                })
            };
            let readable_oid = |oid: u32| n.relation(oid).is_some_and(|r| readable(&access, r));
            let columns = |relation: u32, attnums: &[usize]| {
                n.column_names(relation, attnums)
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Ok(utf8(oid(arg(a, 0)).and_then(|o| n.constraint(o)).and_then(
                |c| {
                    if !readable_oid(c.relation) {
                        return None;
                    }
                    Some(match &c.referenced {
                        None => format!("PRIMARY KEY ({})", columns(c.relation, &c.columns)),
                        Some((target, ref_columns)) => {
                            if !readable_oid(*target) {
                                return None;
                            }
                            format!(
                                "FOREIGN KEY ({}) REFERENCES {}({})",
                                columns(c.relation, &c.columns),
                                relation_name(*target)?,
                                columns(*target, ref_columns)
                            )
                        }
                    })
                },
            )))
        },
    ));
    let n = names.clone();
    let access = session.access.clone();
    f.push(udf("pg_get_indexdef", &[1, 3], Utf8, STABLE, move |a| {
        let column = a.get(1).and_then(int).unwrap_or(0);
        Ok(utf8(oid(arg(a, 0)).and_then(|o| n.index(o)).and_then(
            |i| {
                let table = n.relation(i.relation)?;
                if !readable(&access, table) {
                    return None;
                }
                let names = n.column_names(i.relation, &i.columns);
                if column > 0 {
                    return names.get(column as usize - 1).map(|c| quote_ident(c));
                }
                if column < 0 {
                    return None;
                }
                Some(format!(
                    "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                    quote_ident(&i.name),
                    quote_ident(&table.schema),
                    quote_ident(&table.name),
                    names
                        .iter()
                        .map(|c| quote_ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            },
        )))
    }));
    let n = names.clone();
    let v = visible;
    f.push(udf(
        "pg_table_is_visible",
        &[1],
        Boolean,
        STABLE,
        move |a| {
            Ok(ScalarValue::Boolean(oid(arg(a, 0)).map(|o| {
                n.relation(o).is_some_and(|r| v.contains(&r.schema))
            })))
        },
    ));
    let me = user_oid(&user);
    // `pg_has_role([user,] role, privilege)`: a role has itself; the owner (superuser) has
    // every role.
    let (me_name, owner) = (user.clone(), user == OWNER_NAME);
    f.push(udf("pg_has_role", &[2, 3], Boolean, STABLE, move |a| {
        let role = |v: &ScalarValue| -> Option<u32> {
            if is_text(v) {
                text(v).map(|r| user_oid(r.trim()))
            } else {
                oid(v)
            }
        };
        let (member, target) = match a.len() {
            3 => (role(&a[0]), role(&a[1])),
            _ => (Some(user_oid(&me_name)), role(&a[0])),
        };
        Ok(ScalarValue::Boolean(member.zip(target).map(|(m, t)| {
            m == t || (m == user_oid(&me_name) && owner) || m == OWNER_OID
        })))
    }));
    f.push(name_udf("pg_get_userbyid", &[1], STABLE, move |a| {
        Ok(utf8(oid(arg(a, 0)).map(|o| {
            if o == OWNER_OID {
                OWNER_NAME.to_string()
            } else if o == me {
                user.clone()
            } else if let Some((_, name)) = super::PREDEFINED_ROLES.iter().find(|(r, _)| *r == o) {
                name.to_string()
            } else {
                format!("unknown (OID={o})")
            }
        })))
    }));
    f.push(udf("sluice_regrole_in", &[1], UInt32, STABLE, |a| {
        reg_in(arg(a, 0), "role", ErrorKind::UndefinedObject, |r| {
            Some(user_oid(r.trim().trim_matches('"')))
        })
    }));
    f
}

/// When this process started, in microseconds since 1970.
fn process_start_micros() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    })
}

const FORMAT_MAX_BYTES: usize = 64 << 20;

/// PostgreSQL's `format`: `%s` a value as text (NULL as nothing), `%I` an identifier,
/// `%L` a literal (NULL as `NULL`), `%%` a percent sign; `%n$` picks an argument.
fn format_args_pg(pattern: &str, args: &[ScalarValue]) -> Result<String, QueryError> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // `%n$`: an explicit argument position.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if !digits.is_empty() {
            if chars.next() != Some('$') {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    "format: unsupported format specifier (widths are not supported)",
                ));
            }
            next = digits.parse::<usize>().unwrap_or(0).saturating_sub(1);
        }
        let kind = chars.next().ok_or_else(|| {
            QueryError::new(
                ErrorKind::InvalidValue,
                "format: unterminated format() type specifier",
            )
        })?;
        if kind == '%' {
            out.push('%');
            continue;
        }
        let value = args
            .get(next)
            .ok_or_else(|| QueryError::new(ErrorKind::InvalidValue, "format: too few arguments"))?;
        next += 1;
        let value = if value.is_null() { None } else { text(value) };
        // `format(repeat('%1$s', n), big)` writes an argument n times: bounded as a text
        // value is in PostgreSQL (1 GB there; less here, where the gateway holds it).
        if out.len() + value.as_ref().map_or(0, String::len) * 2 > FORMAT_MAX_BYTES {
            return Err(QueryError::new(
                ErrorKind::TooComplex,
                format!("format: the result would exceed {FORMAT_MAX_BYTES} bytes"),
            ));
        }
        match (kind, value) {
            ('s', v) => out.push_str(v.as_deref().unwrap_or("")),
            ('I', Some(v)) => out.push_str(&quote_ident(&v)),
            ('I', None) => {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    "format: null values cannot be formatted as an SQL identifier",
                ))
            }
            ('L', Some(v)) => out.push_str(&quote_literal(&v)),
            ('L', None) => out.push_str("NULL"),
            (other, _) => {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    format!("format: unrecognized format() type specifier \"{other}\""),
                ))
            }
        }
    }
    Ok(out)
}

/// A string as an SQL literal (`quote_literal`): doubled quotes, `E''` with backslashes.
fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `information_schema._pg_expandarray(a)`: the elements of an array with their positions,
/// as `(x, n)` records. Here it returns the list of records; `compat` unnests it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    fn record(item: &DataType) -> DataType {
        DataType::Struct(
            vec![
                Field::new("x", item.clone(), true),
                Field::new("n", DataType::Int32, false),
            ]
            .into(),
        )
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "sluice_expandarray"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let item = match arg_types.first() {
            Some(DataType::List(item)) => item.data_type().clone(),
            _ => DataType::Null,
        };
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            Self::record(&item),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int32Array, ListArray, StructArray};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(input) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return Err(DataFusionError::External(Box::new(QueryError::new(
                ErrorKind::DatatypeMismatch,
                "_pg_expandarray needs an array",
            ))));
        };
        let offsets = input.offsets();
        // n counts 1, 2, … within each array.
        let mut positions = Vec::with_capacity(input.values().len());
        for window in offsets.windows(2) {
            positions.extend(1..=(window[1] - window[0]));
        }
        let values = input.values().slice(
            offsets[0] as usize,
            (offsets[offsets.len() - 1] - offsets[0]) as usize,
        );
        let DataType::Struct(fields) = Self::record(values.data_type()) else {
            unreachable!("record() builds a struct")
        };
        let records = StructArray::try_new(
            fields.clone(),
            vec![values, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let rebased: Vec<i32> = offsets.iter().map(|o| o - offsets[0]).collect();
        let list = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(fields), true)),
            datafusion::arrow::buffer::OffsetBuffer::new(rebased.into()),
            Arc::new(records),
            input.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `aclexplode(acl)`: an ACL's privileges, one record each (grantor, grantee,
/// privilege_type, is_grantable), as pgAdmin's privileges dialogs read them. Planned as
/// `unnest(sluice_aclexplode(acl))` (see `compat`): the records of a list, in the order
/// PostgreSQL lists privileges. A grantee of no name is PUBLIC (OID 0).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AclExplode {
    signature: Signature,
}

/// Privilege letters of an ACL item, in PostgreSQL's order, with their names.
const PRIVILEGES: &[(char, &str)] = &[
    ('a', "INSERT"),
    ('r', "SELECT"),
    ('w', "UPDATE"),
    ('d', "DELETE"),
    ('D', "TRUNCATE"),
    ('x', "REFERENCES"),
    ('t', "TRIGGER"),
    ('X', "EXECUTE"),
    ('U', "USAGE"),
    ('C', "CREATE"),
    ('T', "TEMPORARY"),
    ('c', "CONNECT"),
    ('s', "SET"),
    ('A', "ALTER SYSTEM"),
    ('m', "MAINTAIN"),
];

impl AclExplode {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, IMMUTABLE),
        }
    }

    fn record() -> datafusion::arrow::datatypes::Fields {
        vec![
            Field::new("grantor", DataType::UInt32, true),
            Field::new("grantee", DataType::UInt32, true),
            Field::new("privilege_type", DataType::Utf8, true),
            Field::new("is_grantable", DataType::Boolean, true),
        ]
        .into()
    }

    /// One ACL item (`grantee=privileges/grantor`, a `*` after a privilege letter granting
    /// it with grant option): its records.
    fn items(item: &str) -> Vec<(u32, u32, &'static str, bool)> {
        let unquote = |name: &str| name.trim_matches('"').replace("\"\"", "\"");
        let Some((grantee, rest)) = item.split_once('=') else {
            return Vec::new();
        };
        let (privileges, grantor) = rest.split_once('/').unwrap_or((rest, OWNER_NAME));
        let grantee = match unquote(grantee) {
            name if name.is_empty() => 0,
            name => user_oid(&name),
        };
        let grantor = user_oid(&unquote(grantor));
        let letters: Vec<char> = privileges.chars().collect();
        PRIVILEGES
            .iter()
            .filter_map(|(letter, name)| {
                let at = letters.iter().position(|c| c == letter)?;
                let grantable = letters.get(at + 1) == Some(&'*');
                Some((grantor, grantee, *name, grantable))
            })
            .collect()
    }
}

impl ScalarUDFImpl for AclExplode {
    fn name(&self) -> &str {
        "sluice_aclexplode"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(Self::record()),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{
            ArrayRef, BooleanArray, ListArray, StringArray, StructArray, UInt32Array,
        };
        use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut records = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let acl = match arrays.first() {
                Some(a) => ScalarValue::try_from_array(a, row)?,
                None => ScalarValue::Null,
            };
            // An ACL as an array of items, or as its text (`{a=r/b,…}`).
            let items: Vec<String> = match &acl {
                ScalarValue::List(l) => ScalarValue::convert_array_to_scalar_vec(l.as_ref())?
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|v| text(&v))
                    .collect(),
                other => text(other)
                    .and_then(|t| super::table::parse_array_literal(&t).ok())
                    .map(|items| items.into_iter().flatten().collect())
                    .unwrap_or_default(),
            };
            records.extend(items.iter().flat_map(|item| Self::items(item)));
            offsets.push(i32::try_from(records.len()).map_err(|_| {
                DataFusionError::External(Box::new(QueryError::new(
                    ErrorKind::TooComplex,
                    "aclexplode: too many privileges",
                )))
            })?);
            valid.push(!acl.is_null());
        }
        let fields = Self::record();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.2))),
            Arc::new(BooleanArray::from_iter(records.iter().map(|r| Some(r.3)))),
        ];
        let list = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(fields.clone()), true)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(StructArray::try_new(fields, columns, None)?),
            Some(NullBuffer::from(valid)),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}
