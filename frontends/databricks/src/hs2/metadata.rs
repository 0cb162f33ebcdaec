//! The answers of HS2's metadata calls (GetCatalogs, GetSchemas, GetTables, GetColumns, …)
//! as JDBC `DatabaseMetaData` shapes them, built from what the session's own
//! (grant-filtered) information_schema lists. Name filters are JDBC patterns (`%`, `_`,
//! `\` escapes; Hive's `*` too), matched without regard to case as Spark identifiers are.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::future::BoxFuture;
use gateway::planner::QueryError;

use super::protocol::{op_type, sql_type};
use super::results::WireOptions;
use super::thrift::{Struct, Value};
use super::{error_status, invalid_session, reply, status_only, Hs2, Reply};
use gateway::handler::ArrowRows;
use gateway::session::Session;

impl Hs2 {
    /// GetCatalogs, GetSchemas, GetTables, GetTableTypes, GetColumns, GetTypeInfo,
    /// GetFunctions, GetPrimaryKeys, GetCrossReference: answered from the session's
    /// (grant-filtered) catalog, as Thrift columns.
    pub(super) async fn metadata_call(
        &self,
        name: &str,
        req: &Struct,
        login: &Session,
        seqid: i32,
    ) -> Result<Vec<u8>, Reply> {
        let Some(hs2_session) = self.session_of(req, login) else {
            return Ok(reply(name, seqid, status_only(&invalid_session())));
        };
        let session = hs2_session.session.clone();
        let catalog = gateway::planner::catalog();
        let (c, s, t) = (req.string(2), req.string(3), req.string(4));
        let answer: Result<(i32, RecordBatch), QueryError> = async {
            Ok(match name {
                "GetCatalogs" => (op_type::GET_CATALOGS, catalogs(catalog)?),
                "GetTableTypes" => (op_type::GET_TABLE_TYPES, table_types()?),
                "GetTypeInfo" => (op_type::GET_TYPE_INFO, type_info()?),
                "GetPrimaryKeys" => {
                    // TGetPrimaryKeysReq: 2 catalogName, 3 schemaName, 4 tableName (exact).
                    let keys: Vec<_> = gateway::keys::primary_keys(self.handler.as_ref(), &session)
                        .await?
                        .into_iter()
                        .filter(|k| {
                            named(c.as_deref(), catalog)
                                && named(s.as_deref(), &k.schema)
                                && named(t.as_deref(), &k.table)
                        })
                        .collect();
                    (op_type::UNKNOWN, primary_keys(catalog, &keys)?)
                }
                "GetCrossReference" => {
                    // TGetCrossReferenceReq: 2-4 the parent (referenced) table's catalog,
                    // schema and name; 5-7 the foreign (referencing) one's. Either side
                    // may be left out (JDBC's getExportedKeys / getImportedKeys).
                    let (fc, fs, ft) = (req.string(5), req.string(6), req.string(7));
                    let mut keys: Vec<_> = gateway::keys::foreign_keys(self.handler.as_ref(), &session)
                        .await?
                        .into_iter()
                        .filter(|k| {
                            named(c.as_deref(), catalog)
                                && named(s.as_deref(), &k.pk_schema)
                                && named(t.as_deref(), &k.pk_table)
                                && named(fc.as_deref(), catalog)
                                && named(fs.as_deref(), &k.fk_schema)
                                && named(ft.as_deref(), &k.fk_table)
                        })
                        .collect();
                    if t.is_none() {
                        keys.sort_by(|a, b| {
                            (&a.pk_schema, &a.pk_table, &a.pk_name, a.seq)
                                .cmp(&(&b.pk_schema, &b.pk_table, &b.pk_name, b.seq))
                        });
                    }
                    (op_type::UNKNOWN, cross_reference(catalog, &keys)?)
                }
                "GetSchemas" => {
                    let schemas = self.schema_names(&session).await?;
                    (op_type::GET_SCHEMAS, self::schemas(catalog, &schemas, c.as_deref(), s.as_deref())?)
                }
                "GetTables" => {
                    let types: Option<Vec<String>> = req.list(5).map(|l| {
                        l.iter()
                            .filter_map(|v| match v {
                                Value::Binary(b) => Some(String::from_utf8_lossy(b).to_uppercase()),
                                _ => None,
                            })
                            .collect()
                    });
                    let tables: Vec<_> = self
                        .visible_tables(&session, c.as_deref(), s.as_deref(), t.as_deref())
                        .await?
                        .into_iter()
                        .filter(|t| types.as_ref().is_none_or(|types| types.is_empty() || types.iter().any(|k| k == t.jdbc_kind())))
                        .collect();
                    (op_type::GET_TABLES, self::tables(catalog, &tables)?)
                }
                "GetColumns" => {
                    let mut columns = Vec::new();
                    for table in self.visible_tables(&session, c.as_deref(), s.as_deref(), t.as_deref()).await? {
                        // Databricks SQL quotes names with backticks.
                        let sql = format!(
                            "SELECT * FROM `{}`.`{}`",
                            table.schema.replace('`', "``"),
                            table.name.replace('`', "``")
                        );
                        if let Ok(prepared) = self.handler.prepare(&session, &sql).await {
                            if let Some(p) = prepared.first() {
                                columns.push((table.schema, table.name, p.schema()));
                            }
                        }
                    }
                    (op_type::GET_COLUMNS, self::columns(catalog, &columns, req.string(5).as_deref())?)
                }
                "GetFunctions" => {
                    // TGetFunctionsReq: 2 catalogName, 3 schemaName, 4 functionName.
                    let rows = self
                        .catalog_rows(
                            &session,
                            "SELECT DISTINCT n.nspname, p.proname FROM pg_catalog.pg_proc p \
                             JOIN pg_catalog.pg_namespace n ON p.pronamespace = n.oid ORDER BY 1, 2",
                        )
                        .await?;
                    let functions: Vec<(String, String)> = pairs(&rows)?
                        .into_iter()
                        .filter(|(schema, function)| {
                            matches(c.as_deref(), catalog)
                                && matches(s.as_deref(), schema)
                                && matches(t.as_deref(), function)
                        })
                        .collect();
                    (op_type::GET_FUNCTIONS, self::functions(catalog, &functions)?)
                }
                other => return Err(QueryError::internal(format!("{other} is not a metadata call"))),
            })
        }
        .await;
        let (kind, batch) = match answer {
            Ok(answer) => answer,
            Err(e) => return Ok(reply(name, seqid, status_only(&error_status(&e)))),
        };
        let schema = batch.schema();
        let work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>> =
            Box::pin(async move {
                Ok((
                    schema,
                    ArrowRows::Batches(Box::pin(futures::stream::once(async move { Ok(batch) }))),
                ))
            });
        let op = match self.start(
            &hs2_session,
            kind,
            true,
            name.to_string(),
            WireOptions::columns(),
            None,
            work,
        ) {
            Ok(op) => op,
            Err(e) => return Ok(reply(name, seqid, status_only(&error_status(&e)))),
        };
        // TGet*Req: 1281 getDirectResults, 1282 runAsync.
        self.respond_started(name, seqid, req, req.bool(1282).unwrap_or(false), op)
            .await
    }

    /// Rows of a catalog query, with the session's grants.
    async fn catalog_rows(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        use gateway::keys::CatalogRows;
        self.handler.as_ref().catalog_rows(session, sql).await
    }

    async fn schema_names(&self, session: &Session) -> Result<Vec<String>, QueryError> {
        let rows = self
            .catalog_rows(
                session,
                "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            )
            .await?;
        let mut names = Vec::new();
        for batch in &rows {
            names.extend(strings(batch, 0)?.into_iter().filter(|s| !postgres_only(s)));
        }
        Ok(names)
    }

    async fn visible_tables(
        &self,
        session: &Session,
        catalog: Option<&str>,
        schema: Option<&str>,
        table: Option<&str>,
    ) -> Result<Vec<TableEntry>, QueryError> {
        if !matches(catalog, gateway::planner::catalog()) {
            return Ok(Vec::new());
        }
        let rows = self
            .catalog_rows(
                session,
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 ORDER BY table_schema, table_name",
            )
            .await?;
        let mut out = Vec::new();
        for batch in &rows {
            let (schemas, names, kinds) =
                (strings(batch, 0)?, strings(batch, 1)?, strings(batch, 2)?);
            for ((s, t), k) in schemas.into_iter().zip(names).zip(kinds) {
                if !postgres_only(&s) && matches(schema, &s) && matches(table, &t) {
                    out.push(TableEntry {
                        schema: s,
                        name: t,
                        kind: k,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// PostgreSQL's own schemas (pg_catalog, pg_toast): there for pg clients, noise in a
/// Databricks client's catalog browser. They stay queryable by name.
/// A key call's name argument: absent or empty means any; otherwise the exact name
/// (without regard to case, as Spark identifiers are).
fn named(given: Option<&str>, name: &str) -> bool {
    given.is_none_or(|g| g.is_empty() || g.eq_ignore_ascii_case(name))
}

fn postgres_only(schema: &str) -> bool {
    schema.starts_with("pg_")
}

fn strings(batch: &RecordBatch, column: usize) -> Result<Vec<String>, QueryError> {
    use datafusion::arrow::array::{Array, AsArray};
    let text = datafusion::arrow::compute::cast(batch.column(column), &DataType::Utf8)
        .map_err(|e| QueryError::internal(e.to_string()))?;
    let text = text.as_string::<i32>();
    Ok((0..text.len()).map(|i| text.value(i).to_string()).collect())
}

fn pairs(batches: &[RecordBatch]) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        out.extend(strings(batch, 0)?.into_iter().zip(strings(batch, 1)?));
    }
    Ok(out)
}

/// Does `text` match the JDBC pattern? No pattern (or an empty one) matches everything.
pub fn matches(pattern: Option<&str>, text: &str) -> bool {
    let Some(pattern) = pattern.filter(|p| !p.is_empty() && *p != "*") else {
        return true;
    };
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    like(&p, &t)
}

fn like(p: &[char], t: &[char]) -> bool {
    // Iterative wildcard match with backtracking to the last `%`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('%') | Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('\\') if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                pi += 2;
                ti += 1;
                continue;
            }
            Some('_') => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some(c) if *c != '\\' && *c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '%' || *c == '*')
}

fn text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}
fn ints(values: Vec<Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from(values))
}

fn batch(fields: &[(&str, DataType)], columns: Vec<ArrayRef>) -> Result<RecordBatch, QueryError> {
    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, columns).map_err(|e| QueryError::internal(e.to_string()))
}

/// A table the session may see.
#[derive(Debug, Clone)]
pub struct TableEntry {
    pub schema: String,
    pub name: String,
    /// information_schema's `BASE TABLE` / `VIEW`.
    pub kind: String,
}

impl TableEntry {
    /// JDBC's table type.
    pub fn jdbc_kind(&self) -> &str {
        if self.kind == "BASE TABLE" {
            "TABLE"
        } else {
            &self.kind
        }
    }
}

pub fn catalogs(catalog: &str) -> Result<RecordBatch, QueryError> {
    batch(
        &[("TABLE_CAT", DataType::Utf8)],
        vec![text(vec![Some(catalog.into())])],
    )
}

pub fn schemas(
    catalog: &str,
    schemas: &[String],
    catalog_pattern: Option<&str>,
    schema_pattern: Option<&str>,
) -> Result<RecordBatch, QueryError> {
    let rows: Vec<&String> = if matches(catalog_pattern, catalog) {
        schemas
            .iter()
            .filter(|s| matches(schema_pattern, s))
            .collect()
    } else {
        Vec::new()
    };
    batch(
        &[
            ("TABLE_SCHEM", DataType::Utf8),
            ("TABLE_CATALOG", DataType::Utf8),
        ],
        vec![
            text(rows.iter().map(|s| Some(s.to_string())).collect()),
            text(rows.iter().map(|_| Some(catalog.to_string())).collect()),
        ],
    )
}

pub fn tables(catalog: &str, tables: &[TableEntry]) -> Result<RecordBatch, QueryError> {
    let n = tables.len();
    let none = || text(vec![None; n]);
    batch(
        &[
            ("TABLE_CAT", DataType::Utf8),
            ("TABLE_SCHEM", DataType::Utf8),
            ("TABLE_NAME", DataType::Utf8),
            ("TABLE_TYPE", DataType::Utf8),
            ("REMARKS", DataType::Utf8),
            ("TYPE_CAT", DataType::Utf8),
            ("TYPE_SCHEM", DataType::Utf8),
            ("TYPE_NAME", DataType::Utf8),
            ("SELF_REFERENCING_COL_NAME", DataType::Utf8),
            ("REF_GENERATION", DataType::Utf8),
        ],
        vec![
            text(vec![Some(catalog.to_string()); n]),
            text(tables.iter().map(|t| Some(t.schema.clone())).collect()),
            text(tables.iter().map(|t| Some(t.name.clone())).collect()),
            text(
                tables
                    .iter()
                    .map(|t| Some(t.jdbc_kind().to_string()))
                    .collect(),
            ),
            text(vec![Some(String::new()); n]),
            none(),
            none(),
            none(),
            none(),
            none(),
        ],
    )
}

pub fn table_types() -> Result<RecordBatch, QueryError> {
    batch(
        &[("TABLE_TYPE", DataType::Utf8)],
        vec![text(vec![Some("TABLE".into()), Some("VIEW".into())])],
    )
}

/// JDBC's COLUMN_SIZE and DECIMAL_DIGITS of a type.
fn size_of(data_type: &DataType) -> (Option<i32>, Option<i32>) {
    use DataType::*;
    match data_type {
        Boolean => (Some(1), None),
        Int8 => (Some(3), Some(0)),
        Int16 | UInt8 => (Some(5), Some(0)),
        Int32 | UInt16 => (Some(10), Some(0)),
        Int64 | UInt32 => (Some(19), Some(0)),
        UInt64 => (Some(20), Some(0)),
        Float16 | Float32 => (Some(7), Some(7)),
        Float64 => (Some(15), Some(15)),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            (Some(i32::from(*p)), Some(i32::from(*s)))
        }
        Date32 | Date64 => (Some(10), None),
        Timestamp(..) => (Some(29), Some(6)),
        Utf8 | LargeUtf8 | Utf8View => (Some(i32::MAX), None),
        Dictionary(_, v) => size_of(v),
        _ => (None, None),
    }
}

/// One row per column of each table (`tables`: schema, table, its columns).
pub fn columns(
    catalog: &str,
    tables: &[(String, String, SchemaRef)],
    column_pattern: Option<&str>,
) -> Result<RecordBatch, QueryError> {
    let mut rows: Vec<(&str, &str, usize, &Field)> = Vec::new();
    for (schema, table, columns) in tables {
        for (i, field) in columns.fields().iter().enumerate() {
            if matches(column_pattern, field.name()) {
                rows.push((schema, table, i + 1, field));
            }
        }
    }
    let n = rows.len();
    let types: Vec<(String, i32)> = rows.iter().map(|r| sql_type(r.3.data_type())).collect();
    let sizes: Vec<(Option<i32>, Option<i32>)> =
        rows.iter().map(|r| size_of(r.3.data_type())).collect();
    let none_text = || text(vec![None; n]);
    let numeric = |t: &DataType| t.is_numeric();
    batch(
        &[
            ("TABLE_CAT", DataType::Utf8),
            ("TABLE_SCHEM", DataType::Utf8),
            ("TABLE_NAME", DataType::Utf8),
            ("COLUMN_NAME", DataType::Utf8),
            ("DATA_TYPE", DataType::Int32),
            ("TYPE_NAME", DataType::Utf8),
            ("COLUMN_SIZE", DataType::Int32),
            ("BUFFER_LENGTH", DataType::Int32),
            ("DECIMAL_DIGITS", DataType::Int32),
            ("NUM_PREC_RADIX", DataType::Int32),
            ("NULLABLE", DataType::Int32),
            ("REMARKS", DataType::Utf8),
            ("COLUMN_DEF", DataType::Utf8),
            ("SQL_DATA_TYPE", DataType::Int32),
            ("SQL_DATETIME_SUB", DataType::Int32),
            ("CHAR_OCTET_LENGTH", DataType::Int32),
            ("ORDINAL_POSITION", DataType::Int32),
            ("IS_NULLABLE", DataType::Utf8),
            ("SCOPE_CATALOG", DataType::Utf8),
            ("SCOPE_SCHEMA", DataType::Utf8),
            ("SCOPE_TABLE", DataType::Utf8),
            ("SOURCE_DATA_TYPE", DataType::Int16),
            ("IS_AUTO_INCREMENT", DataType::Utf8),
        ],
        vec![
            text(vec![Some(catalog.to_string()); n]),
            text(rows.iter().map(|r| Some(r.0.to_string())).collect()),
            text(rows.iter().map(|r| Some(r.1.to_string())).collect()),
            text(rows.iter().map(|r| Some(r.3.name().clone())).collect()),
            ints(types.iter().map(|t| Some(t.1)).collect()),
            text(types.iter().map(|t| Some(t.0.clone())).collect()),
            ints(sizes.iter().map(|s| s.0).collect()),
            ints(vec![None; n]),
            ints(sizes.iter().map(|s| s.1).collect()),
            ints(
                rows.iter()
                    .map(|r| numeric(r.3.data_type()).then_some(10))
                    .collect(),
            ),
            ints(
                rows.iter()
                    .map(|r| Some(i32::from(r.3.is_nullable())))
                    .collect(),
            ),
            text(vec![Some(String::new()); n]),
            none_text(),
            ints(vec![None; n]),
            ints(vec![None; n]),
            ints(vec![None; n]),
            ints(rows.iter().map(|r| Some(r.2 as i32)).collect()),
            text(
                rows.iter()
                    .map(|r| Some(if r.3.is_nullable() { "YES" } else { "NO" }.to_string()))
                    .collect(),
            ),
            none_text(),
            none_text(),
            none_text(),
            Arc::new(Int16Array::from(vec![None::<i16>; n])),
            text(vec![Some("NO".into()); n]),
        ],
    )
}

/// One row of `getTypeInfo`.
struct TypeRow {
    name: &'static str,
    /// `java.sql.Types`.
    jdbc: i32,
    precision: i32,
    /// LITERAL_PREFIX and _SUFFIX.
    quote: Option<&'static str>,
    /// 0 none, 2 all but LIKE, 3 searchable.
    searchable: i16,
    fixed_scale: bool,
    radix: Option<i32>,
}

const fn row(
    name: &'static str,
    jdbc: i32,
    precision: i32,
    quote: Option<&'static str>,
    searchable: i16,
    radix: Option<i32>,
) -> TypeRow {
    TypeRow {
        name,
        jdbc,
        precision,
        quote,
        searchable,
        fixed_scale: false,
        radix,
    }
}

/// The types sluice's SQL knows, as JDBC `getTypeInfo` lists them.
pub fn type_info() -> Result<RecordBatch, QueryError> {
    const TYPES: &[TypeRow] = &[
        row("BOOLEAN", 16, 1, None, 2, None),
        row("TINYINT", -6, 3, None, 2, Some(10)),
        row("SMALLINT", 5, 5, None, 2, Some(10)),
        row("INT", 4, 10, None, 2, Some(10)),
        row("BIGINT", -5, 19, None, 2, Some(10)),
        row("FLOAT", 6, 7, None, 2, Some(10)),
        row("DOUBLE", 8, 15, None, 2, Some(10)),
        TypeRow {
            fixed_scale: true,
            ..row("DECIMAL", 3, 38, None, 2, Some(10))
        },
        row("STRING", 12, i32::MAX, Some("'"), 3, None),
        row("DATE", 91, 10, Some("'"), 2, None),
        row("TIMESTAMP", 93, 29, Some("'"), 2, None),
        row("BINARY", -2, i32::MAX, None, 0, None),
        row("ARRAY", 2003, 0, None, 0, None),
        row("MAP", 2000, 0, None, 0, None),
        row("STRUCT", 2002, 0, None, 0, None),
        row("INTERVAL", 1111, 0, None, 0, None),
        row("VOID", 0, 0, None, 0, None),
    ];
    let n = TYPES.len();
    let strs = |f: fn(&TypeRow) -> Option<String>| text(TYPES.iter().map(f).collect());
    let bools = |f: fn(&TypeRow) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from(TYPES.iter().map(f).collect::<Vec<_>>()))
    };
    let smallints = |f: fn(&TypeRow) -> i16| -> ArrayRef {
        Arc::new(Int16Array::from(TYPES.iter().map(f).collect::<Vec<_>>()))
    };
    batch(
        &[
            ("TYPE_NAME", DataType::Utf8),
            ("DATA_TYPE", DataType::Int32),
            ("PRECISION", DataType::Int32),
            ("LITERAL_PREFIX", DataType::Utf8),
            ("LITERAL_SUFFIX", DataType::Utf8),
            ("CREATE_PARAMS", DataType::Utf8),
            ("NULLABLE", DataType::Int16),
            ("CASE_SENSITIVE", DataType::Boolean),
            ("SEARCHABLE", DataType::Int16),
            ("UNSIGNED_ATTRIBUTE", DataType::Boolean),
            ("FIXED_PREC_SCALE", DataType::Boolean),
            ("AUTO_INCREMENT", DataType::Boolean),
            ("LOCAL_TYPE_NAME", DataType::Utf8),
            ("MINIMUM_SCALE", DataType::Int16),
            ("MAXIMUM_SCALE", DataType::Int16),
            ("SQL_DATA_TYPE", DataType::Int32),
            ("SQL_DATETIME_SUB", DataType::Int32),
            ("NUM_PREC_RADIX", DataType::Int32),
        ],
        vec![
            strs(|t| Some(t.name.to_string())),
            ints(TYPES.iter().map(|t| Some(t.jdbc)).collect()),
            ints(TYPES.iter().map(|t| Some(t.precision)).collect()),
            strs(|t| t.quote.map(str::to_string)),
            strs(|t| t.quote.map(str::to_string)),
            strs(|t| t.fixed_scale.then(|| "PRECISION,SCALE".to_string())),
            smallints(|_| 1),
            bools(|t| t.name == "STRING"),
            smallints(|t| t.searchable),
            bools(|_| false),
            bools(|t| t.fixed_scale),
            bools(|_| false),
            strs(|t| Some(t.name.to_string())),
            smallints(|_| 0),
            smallints(|t| if t.fixed_scale { 38 } else { 0 }),
            ints(vec![None; n]),
            ints(vec![None; n]),
            ints(TYPES.iter().map(|t| t.radix).collect()),
        ],
    )
}

/// `getFunctions`: one row per (schema, function name).
pub fn functions(catalog: &str, functions: &[(String, String)]) -> Result<RecordBatch, QueryError> {
    let n = functions.len();
    batch(
        &[
            ("FUNCTION_CAT", DataType::Utf8),
            ("FUNCTION_SCHEM", DataType::Utf8),
            ("FUNCTION_NAME", DataType::Utf8),
            ("REMARKS", DataType::Utf8),
            ("FUNCTION_TYPE", DataType::Int32),
            ("SPECIFIC_NAME", DataType::Utf8),
        ],
        vec![
            text(vec![Some(catalog.to_string()); n]),
            text(functions.iter().map(|f| Some(f.0.clone())).collect()),
            text(functions.iter().map(|f| Some(f.1.clone())).collect()),
            text(vec![Some(String::new()); n]),
            // functionResultUnknown: sluice does not say which return tables.
            ints(vec![Some(0); n]),
            text(functions.iter().map(|f| Some(f.1.clone())).collect()),
        ],
    )
}

/// `getPrimaryKeys`: the key columns of the tables the request names, in key order.
pub fn primary_keys(
    catalog: &str,
    keys: &[gateway::keys::PrimaryKeyColumn],
) -> Result<RecordBatch, QueryError> {
    let n = keys.len();
    batch(
        &[
            ("TABLE_CAT", DataType::Utf8),
            ("TABLE_SCHEM", DataType::Utf8),
            ("TABLE_NAME", DataType::Utf8),
            ("COLUMN_NAME", DataType::Utf8),
            ("KEY_SEQ", DataType::Int32),
            ("PK_NAME", DataType::Utf8),
        ],
        vec![
            text(vec![Some(catalog.to_string()); n]),
            text(keys.iter().map(|k| Some(k.schema.clone())).collect()),
            text(keys.iter().map(|k| Some(k.table.clone())).collect()),
            text(keys.iter().map(|k| Some(k.column.clone())).collect()),
            ints(keys.iter().map(|k| Some(k.seq)).collect()),
            text(keys.iter().map(|k| Some(k.name.clone())).collect()),
        ],
    )
}

/// `getCrossReference` (and the imported / exported keys JDBC builds on it): foreign key
/// columns with the primary key columns they reference. The keys are informational:
/// NO ACTION on update and delete (3), not deferrable (7).
pub fn cross_reference(
    catalog: &str,
    keys: &[gateway::keys::ForeignKeyColumn],
) -> Result<RecordBatch, QueryError> {
    let n = keys.len();
    let field = |f: fn(&gateway::keys::ForeignKeyColumn) -> &String| {
        text(keys.iter().map(|k| Some(f(k).clone())).collect())
    };
    batch(
        &[
            ("PKTABLE_CAT", DataType::Utf8),
            ("PKTABLE_SCHEM", DataType::Utf8),
            ("PKTABLE_NAME", DataType::Utf8),
            ("PKCOLUMN_NAME", DataType::Utf8),
            ("FKTABLE_CAT", DataType::Utf8),
            ("FKTABLE_SCHEM", DataType::Utf8),
            ("FKTABLE_NAME", DataType::Utf8),
            ("FKCOLUMN_NAME", DataType::Utf8),
            ("KEY_SEQ", DataType::Int32),
            ("UPDATE_RULE", DataType::Int32),
            ("DELETE_RULE", DataType::Int32),
            ("FK_NAME", DataType::Utf8),
            ("PK_NAME", DataType::Utf8),
            ("DEFERRABILITY", DataType::Int32),
        ],
        vec![
            text(vec![Some(catalog.to_string()); n]),
            field(|k| &k.pk_schema),
            field(|k| &k.pk_table),
            field(|k| &k.pk_column),
            text(vec![Some(catalog.to_string()); n]),
            field(|k| &k.fk_schema),
            field(|k| &k.fk_table),
            field(|k| &k.fk_column),
            ints(keys.iter().map(|k| Some(k.seq)).collect()),
            ints(vec![Some(3); n]),
            ints(vec![Some(3); n]),
            field(|k| &k.fk_name),
            field(|k| &k.pk_name),
            ints(vec![Some(7); n]),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_patterns() {
        assert!(matches(None, "lineitem"));
        assert!(matches(Some(""), "lineitem"));
        assert!(matches(Some("%"), "lineitem"));
        assert!(matches(Some("*"), "lineitem"));
        assert!(matches(Some("line%"), "lineitem"));
        assert!(matches(Some("LINE%"), "lineitem"));
        assert!(matches(Some("%item"), "lineitem"));
        assert!(matches(Some("l_neitem"), "lineitem"));
        assert!(!matches(Some("l_item"), "lineitem"));
        assert!(matches(Some("%e%e%"), "lineitem"));
        assert!(!matches(Some("orders"), "lineitem"));
        assert!(matches(Some("a\\_b"), "a_b"));
        assert!(!matches(Some("a\\_b"), "axb"));
    }

    #[test]
    fn answers_have_jdbc_columns() {
        let t = tables(
            "sluice",
            &[TableEntry {
                schema: "tpch".into(),
                name: "nation".into(),
                kind: "BASE TABLE".into(),
            }],
        )
        .expect("tables");
        assert_eq!(t.num_columns(), 10);
        assert_eq!(t.schema().field(3).name(), "TABLE_TYPE");
        let cols = Arc::new(Schema::new(vec![
            Field::new("n_nationkey", DataType::Int64, false),
            Field::new("n_name", DataType::Utf8View, true),
        ]));
        let c = columns(
            "sluice",
            &[("tpch".into(), "nation".into(), cols)],
            Some("n_n%"),
        )
        .expect("columns");
        assert_eq!(c.num_rows(), 2);
        assert_eq!(c.num_columns(), 23);
        assert_eq!(type_info().expect("types").num_columns(), 18);
        assert_eq!(primary_keys("sluice", &[]).expect("keys").num_columns(), 6);
        assert_eq!(
            cross_reference("sluice", &[]).expect("keys").num_columns(),
            14
        );
    }
}
