//! Catalog tables as Arrow: the typed TSV files in `data/` (written by `extract.py` from a
//! real PostgreSQL) give each table's columns, and the built-in rows of the static ones.
//! Rows sluice adds at run time are written in the same text form and parsed the same way,
//! so there is one path from "value as PostgreSQL prints it" to an Arrow column.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::types::{oids, PG_TYPE_KEY};
use crate::error::QueryError;

/// A column type as the TSV header names it.
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    Oid,
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    /// PostgreSQL `name`: text on the wire, reported as type `name`.
    Name,
    /// PostgreSQL `"char"`: a one-byte text value, reported as type `"char"`.
    Char,
    TimestampTz,
    Array(Box<ColType>),
}

impl ColType {
    fn parse(s: &str) -> Result<Self, QueryError> {
        if let Some(inner) = s.strip_suffix("[]") {
            return Ok(ColType::Array(Box::new(ColType::parse(inner)?)));
        }
        Ok(match s {
            "oid" => ColType::Oid,
            "bool" => ColType::Bool,
            "int2" => ColType::Int2,
            "int4" => ColType::Int4,
            "int8" => ColType::Int8,
            "float4" => ColType::Float4,
            "float8" => ColType::Float8,
            "text" => ColType::Text,
            "name" => ColType::Name,
            "char" => ColType::Char,
            "timestamptz" => ColType::TimestampTz,
            other => {
                return Err(QueryError::internal(format!(
                    "catalog data: unknown column type {other}"
                )))
            }
        })
    }

    fn field(&self, name: &str) -> Field {
        let field = Field::new(name, self.data_type(), true);
        match self {
            ColType::Name => field.with_metadata(pg_type_metadata(oids::NAME)),
            ColType::Char => field.with_metadata(pg_type_metadata(oids::CHAR)),
            _ => field,
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            ColType::Oid => DataType::UInt32,
            ColType::Bool => DataType::Boolean,
            ColType::Int2 => DataType::Int16,
            ColType::Int4 => DataType::Int32,
            ColType::Int8 => DataType::Int64,
            ColType::Float4 => DataType::Float32,
            ColType::Float8 => DataType::Float64,
            ColType::Text | ColType::Name | ColType::Char => DataType::Utf8,
            ColType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColType::Array(inner) => DataType::List(Arc::new(inner.field("item"))),
        }
    }

    /// The value a column gets when a run-time row does not name it: PostgreSQL's
    /// catalogs are mostly NOT NULL, with zero / false as the neutral value.
    fn default_value(&self) -> Option<&'static str> {
        match self {
            ColType::Oid | ColType::Int2 | ColType::Int4 | ColType::Int8 => Some("0"),
            ColType::Float4 | ColType::Float8 => Some("0"),
            ColType::Bool => Some("f"),
            _ => None,
        }
    }
}

fn pg_type_metadata(oid: u32) -> HashMap<String, String> {
    HashMap::from([(PG_TYPE_KEY.to_string(), oid.to_string())])
}

/// The columns of one catalog table.
#[derive(Debug, Clone)]
pub struct Columns {
    pub names: Vec<String>,
    pub types: Vec<ColType>,
    pub schema: SchemaRef,
    /// Which columns PostgreSQL declares NOT NULL (pg_attribute.attnotnull of the catalog
    /// tables; the Arrow fields stay nullable).
    pub not_null: Vec<bool>,
}

impl Columns {
    fn parse(header: &str) -> Result<Self, QueryError> {
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut fields = Vec::new();
        let mut not_null = Vec::new();
        for col in header.split('\t') {
            let (name, ty) = col.split_once(':').ok_or_else(|| {
                QueryError::internal(format!("catalog data: bad column header {col}"))
            })?;
            // `type!`: NOT NULL in PostgreSQL.
            let (ty, required) = match ty.strip_suffix('!') {
                Some(ty) => (ty, true),
                None => (ty, false),
            };
            not_null.push(required);
            // `type@oid`: stored as `type`, reported as PostgreSQL's type `oid` (aclitem[],
            // pg_node_tree, xid: the same text as the stored type).
            let (ty, reported) = match ty.split_once('@') {
                Some((ty, oid)) => (
                    ty,
                    Some(oid.parse::<u32>().map_err(|_| {
                        QueryError::internal(format!("catalog data: bad type oid in {col}"))
                    })?),
                ),
                None => (ty, None),
            };
            let ty = ColType::parse(ty)?;
            let field = ty.field(name);
            fields.push(match reported {
                Some(oid) => field.with_metadata(pg_type_metadata(oid)),
                None => field,
            });
            names.push(name.to_string());
            types.push(ty);
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(Self {
            names,
            types,
            schema,
            not_null,
        })
    }
}

/// Rows of one table being assembled, as PostgreSQL text values.
#[derive(Debug)]
pub struct Rows {
    pub columns: Columns,
    cells: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// Parse a data file: the header, then COPY-format rows.
    pub fn from_tsv(text: &str) -> Result<Self, QueryError> {
        let mut lines = text.lines();
        let header = lines
            .next()
            .ok_or_else(|| QueryError::internal("catalog data: empty file"))?;
        let columns = Columns::parse(header)?;
        let mut rows = Self::new(columns);
        for line in lines.filter(|l| !l.is_empty()) {
            let row: Vec<Option<String>> = line.split('\t').map(copy_unescape).collect();
            if row.len() != rows.columns.names.len() {
                return Err(QueryError::internal(format!(
                    "catalog data: row has {} fields, header {}",
                    row.len(),
                    rows.columns.names.len()
                )));
            }
            rows.cells.push(row);
        }
        Ok(rows)
    }

    pub fn new(columns: Columns) -> Self {
        Self {
            columns,
            cells: Vec::new(),
        }
    }

    /// An empty table with the same columns.
    pub fn empty_like(&self) -> Self {
        Self::new(self.columns.clone())
    }

    /// Add a row given by column name; unnamed columns get their neutral value.
    pub fn push(&mut self, values: &[(&str, Option<String>)]) {
        let mut row: Vec<Option<String>> = self
            .columns
            .types
            .iter()
            .map(|t| t.default_value().map(str::to_string))
            .collect();
        for (name, value) in values {
            match self.columns.names.iter().position(|n| n == name) {
                Some(i) => row[i] = value.clone(),
                None => debug_assert!(false, "no catalog column {name}"),
            }
        }
        self.cells.push(row);
    }

    /// The values of one column (for building lookups).
    pub fn column(&self, name: &str) -> Vec<Option<&str>> {
        match self.columns.names.iter().position(|n| n == name) {
            Some(i) => self.cells.iter().map(|r| r[i].as_deref()).collect(),
            None => Vec::new(),
        }
    }

    pub fn to_batch(&self) -> Result<RecordBatch, QueryError> {
        let arrays = self
            .columns
            .types
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let values: Vec<Option<&str>> =
                    self.cells.iter().map(|r| r[i].as_deref()).collect();
                build_array(ty, &values)
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.columns.schema.clone(), arrays)
            .map_err(|e| QueryError::internal(format!("catalog data: {e}")))
    }
}

/// COPY text format: `\N` is NULL; backslash escapes.
fn copy_unescape(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    if !field.contains('\\') {
        return Some(field.to_string());
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

/// Elements of a PostgreSQL array literal (`{a,"b c",NULL}`, optionally `[0:1]={…}`).
pub fn parse_array_literal(text: &str) -> Result<Vec<Option<String>>, QueryError> {
    let text = text.trim();
    let body = match text.find("]={") {
        Some(at) if text.starts_with('[') => &text[at + 2..],
        _ => text,
    };
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| QueryError::internal(format!("catalog data: bad array {text}")))?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Ok(items);
    }
    // PostgreSQL's rules: whitespace around an element is not part of it (inside an
    // unquoted one it is), a quoted element may hold anything, unquoted NULL is null.
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => item.extend(chars.next()),
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item.truncate(item.trim_end().len());
        }
        items.push(if !quoted && item.eq_ignore_ascii_case("NULL") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Ok(items)
}

fn build_array(ty: &ColType, values: &[Option<&str>]) -> Result<ArrayRef, QueryError> {
    fn parse<T: std::str::FromStr>(ty: &ColType, v: &str) -> Result<T, QueryError> {
        v.parse()
            .map_err(|_| QueryError::internal(format!("catalog data: {v:?} is not a {ty:?}")))
    }
    macro_rules! prim {
        ($array:ty) => {
            Arc::new(
                values
                    .iter()
                    .map(|v| v.map(|v| parse(ty, v)).transpose())
                    .collect::<Result<$array, _>>()?,
            ) as ArrayRef
        };
    }
    Ok(match ty {
        ColType::Oid => prim!(UInt32Array),
        ColType::Int2 => prim!(Int16Array),
        ColType::Int4 => prim!(Int32Array),
        ColType::Int8 => prim!(Int64Array),
        ColType::Float4 => prim!(Float32Array),
        ColType::Float8 => prim!(Float64Array),
        ColType::Bool => Arc::new(
            values
                .iter()
                .map(|v| v.map(|v| matches!(v, "t" | "true")))
                .collect::<BooleanArray>(),
        ),
        ColType::Text | ColType::Name | ColType::Char => {
            Arc::new(values.iter().copied().collect::<StringArray>())
        }
        ColType::TimestampTz => Arc::new(
            values
                .iter()
                // Run-time rows write microseconds since the epoch; PostgreSQL's own
                // (none so far) read as the epoch.
                .map(|v| v.map(|v| v.parse::<i64>().unwrap_or(0)))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        ColType::Array(inner) => {
            let mut offsets = vec![0i32];
            let mut flat: Vec<Option<String>> = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                if let Some(v) = v {
                    flat.extend(parse_array_literal(v)?);
                    valid.push(true);
                } else {
                    valid.push(false);
                }
                offsets.push(flat.len() as i32);
            }
            let flat_refs: Vec<Option<&str>> = flat.iter().map(|s| s.as_deref()).collect();
            let child = build_array(inner, &flat_refs)?;
            Arc::new(
                ListArray::try_new(
                    Arc::new(inner.field("item")),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    Some(valid.into()),
                )
                .map_err(|e| QueryError::internal(format!("catalog data: {e}")))?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals() {
        let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(
            parse_array_literal("{23,25}").expect("valid"),
            s(&[Some("23"), Some("25")])
        );
        assert_eq!(
            parse_array_literal("[0:1]={23,23}").expect("valid"),
            s(&[Some("23"), Some("23")])
        );
        assert_eq!(
            parse_array_literal(r#"{"",x,NULL,"a \"b\""}"#).expect("valid"),
            s(&[Some(""), Some("x"), None, Some("a \"b\"")])
        );
        assert!(parse_array_literal("{}").expect("valid").is_empty());
        // Whitespace around elements (ADBC's PostgreSQL driver binds `{"r", "v"}`).
        assert_eq!(
            parse_array_literal(r#" {"r", "v" , s t ,null, " u "} "#).expect("valid"),
            s(&[Some("r"), Some("v"), Some("s t"), None, Some(" u ")])
        );
    }

    #[test]
    fn rows_round_trip_through_arrow() {
        let mut rows =
            Rows::from_tsv("oid:oid\tname:name\tflag:bool\targs:oid[]\n1\ta\tt\t{1,2}\n")
                .expect("valid");
        rows.push(&[("oid", Some("7".into())), ("name", Some("b".into()))]);
        let batch = rows.to_batch().expect("valid");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).data_type(), &DataType::UInt32);
        // A column the run-time row left out gets the neutral value.
        let flags = batch
            .column(2)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("valid");
        assert!(flags.value(0) && !flags.value(1));
    }
}
