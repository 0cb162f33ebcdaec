//! The catalog managed with SQL: `CREATE EXTERNAL TABLE`, `CREATE VIEW`, `CREATE SCHEMA`
//! and `DROP`, read here into a [`CatalogChange`] that the gateway checks (the `MANAGE`
//! privilege), persists in its metadata store and applies by planning against a new
//! catalog. What they create is a [`Managed`] set of objects, next to the config file's
//! tables (which SQL cannot change).

use datafusion::sql::parser::{CreateExternalTable, Statement};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, ConstraintCharacteristics, Expr, Ident, ObjectName, ObjectType,
    RenameTableNameKind, SchemaName, Statement as SqlStatement, TableConstraint, Value,
};
use serde::{Deserialize, Serialize};

use crate::catalog::{ForeignKeyDef, TableDef, TableFormat, DEFAULT_SCHEMA};
use crate::error::{ErrorKind, QueryError};

/// A view created with SQL: its name and its query's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// `schema.view`.
    pub name: String,
    pub sql: String,
    /// Written in Databricks SQL (created from an HS2 or Statement Execution API session):
    /// read with Spark's rules and functions whoever queries it, as it was written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub databricks: bool,
}

/// The objects created with SQL, as the metadata store holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Managed {
    pub schemas: Vec<String>,
    pub tables: Vec<TableDef>,
    pub views: Vec<ViewDef>,
}

/// One object of the managed catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogObject {
    Schema { name: String },
    Table(TableDef),
    View(ViewDef),
}

impl CatalogObject {
    /// Its key in the store: schemas apart, tables and views share one namespace.
    pub fn key(&self) -> String {
        match self {
            CatalogObject::Schema { name } => schema_key(name),
            CatalogObject::Table(t) => relation_key(&t.name),
            CatalogObject::View(v) => relation_key(&v.name),
        }
    }
}

pub fn schema_key(name: &str) -> String {
    format!("schema:{name}")
}

pub fn relation_key(name: &str) -> String {
    format!("relation:{name}")
}

impl Managed {
    /// The objects, sorted into their kinds.
    pub fn from_objects(objects: impl IntoIterator<Item = CatalogObject>) -> Self {
        let mut managed = Managed::default();
        for object in objects {
            match object {
                CatalogObject::Schema { name } => managed.schemas.push(name),
                CatalogObject::Table(t) => managed.tables.push(t),
                CatalogObject::View(v) => managed.views.push(v),
            }
        }
        managed.schemas.sort();
        managed.tables.sort_by(|a, b| a.name.cmp(&b.name));
        managed.views.sort_by(|a, b| a.name.cmp(&b.name));
        managed
    }
}

/// What a DDL statement asks of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogChange {
    Create {
        object: CatalogObject,
        /// `IF NOT EXISTS`: an existing object is kept, no error.
        if_not_exists: bool,
        /// `OR REPLACE`: an existing object of the same kind is replaced.
        or_replace: bool,
    },
    Drop {
        kind: DropKind,
        /// `schema.name` (or the schema's name).
        name: String,
        if_exists: bool,
    },
    /// `ALTER TABLE … RENAME TO`: a table or a view, within its schema.
    Rename {
        /// `schema.name`, before and after.
        name: String,
        new_name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    Table,
    View,
    Schema,
}

impl CatalogChange {
    /// The command tag PostgreSQL answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            CatalogChange::Create { object, .. } => match object {
                CatalogObject::Schema { .. } => "CREATE SCHEMA",
                CatalogObject::Table(_) => "CREATE EXTERNAL TABLE",
                CatalogObject::View(_) => "CREATE VIEW",
            },
            CatalogChange::Drop { kind, .. } => match kind {
                DropKind::Table => "DROP TABLE",
                DropKind::View => "DROP VIEW",
                DropKind::Schema => "DROP SCHEMA",
            },
            CatalogChange::Rename { .. } => "ALTER TABLE",
        }
    }
}

fn invalid(message: String) -> QueryError {
    QueryError::new(ErrorKind::InvalidValue, message)
}

fn not_supported(message: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::NotSupported, message)
}

/// The parts of an object name, lower-cased unless quoted, each a plain identifier.
fn parts(name: &ObjectName) -> Result<Vec<String>, QueryError> {
    name.0
        .iter()
        .map(|part| {
            let id = part
                .as_ident()
                .ok_or_else(|| invalid(format!("{name} is not a name")))?;
            let text = if id.quote_style.is_some() {
                id.value.clone()
            } else {
                id.value.to_lowercase()
            };
            if text.is_empty() || !text.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(invalid(format!("{name}: names are letters, digits and _")));
            }
            Ok(text)
        })
        .collect()
}

/// `schema.name` of a table or view name (`public` when unqualified); a three-part name
/// is in the session's database (`database`, or `sluice` itself), as in PostgreSQL.
fn qualified(name: &ObjectName, database: &str) -> Result<String, QueryError> {
    match parts(name)?.as_slice() {
        [table] => Ok(format!("{DEFAULT_SCHEMA}.{table}")),
        [schema, table] => Ok(format!("{schema}.{table}")),
        [catalog, schema, table] if catalog == crate::catalog() || catalog == database => {
            Ok(format!("{schema}.{table}"))
        }
        [_, _, _] => Err(not_supported(format!(
            "cross-database references are not implemented: {name}"
        ))),
        _ => Err(invalid(format!("{name}: name it as schema.name"))),
    }
}

/// A schema's name: `schema`, or `catalog.schema` in the session's database (or `sluice`
/// itself), as Databricks clients name it (dbt: ``create schema if not exists `c`.`s` ``).
fn schema_name_of(name: &ObjectName, database: &str) -> Result<String, QueryError> {
    match parts(name)?.as_slice() {
        [schema] => Ok(schema.clone()),
        [catalog, schema] if catalog == crate::catalog() || catalog == database => {
            Ok(schema.clone())
        }
        [_, _] => Err(not_supported(format!(
            "cross-database references are not implemented: {name}"
        ))),
        _ => Err(invalid(format!("{name} is not a schema name"))),
    }
}

/// The change a statement asks for, if it is DDL sluice manages (None: not DDL), for a
/// session connected to `database`.
pub fn catalog_change(
    statement: &Statement,
    database: &str,
) -> Result<Option<CatalogChange>, QueryError> {
    match statement {
        Statement::CreateExternalTable(create) => external_table(create, database).map(Some),
        Statement::Statement(sql) => match sql.as_ref() {
            SqlStatement::CreateView(view) => {
                if view.materialized {
                    return Err(not_supported(
                        "materialized views are not supported: CREATE VIEW computes at each query",
                    ));
                }
                if !view.columns.is_empty() {
                    return Err(not_supported(
                        "CREATE VIEW with a column list is not supported: name the columns in the query",
                    ));
                }
                Ok(Some(CatalogChange::Create {
                    object: CatalogObject::View(ViewDef {
                        name: qualified(&view.name, database)?,
                        sql: view.query.to_string(),
                        databricks: false,
                    }),
                    if_not_exists: view.if_not_exists,
                    or_replace: view.or_replace,
                }))
            }
            SqlStatement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => {
                let name = match schema_name {
                    SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                        schema_name_of(name, database)?
                    }
                    SchemaName::UnnamedAuthorization(_) => {
                        return Err(invalid("CREATE SCHEMA needs a name".into()))
                    }
                };
                Ok(Some(CatalogChange::Create {
                    object: CatalogObject::Schema { name },
                    if_not_exists: *if_not_exists,
                    or_replace: false,
                }))
            }
            SqlStatement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                let kind = match object_type {
                    ObjectType::Table => DropKind::Table,
                    ObjectType::View => DropKind::View,
                    ObjectType::Schema => DropKind::Schema,
                    other => return Err(not_supported(format!("DROP {other} is not supported"))),
                };
                let [name] = names.as_slice() else {
                    return Err(not_supported("drop one object per statement"));
                };
                let name = match kind {
                    DropKind::Schema => schema_name_of(name, database)?,
                    _ => qualified(name, database)?,
                };
                Ok(Some(CatalogChange::Drop {
                    kind,
                    name,
                    if_exists: *if_exists,
                }))
            }
            SqlStatement::AlterTable(alter) => {
                // `ALTER TABLE s.a RENAME TO b` (dbt renames every model it builds): the
                // only change a table whose columns come from its data can take.
                let new_name =
                    match alter.operations.as_slice() {
                        [AlterTableOperation::RenameTable {
                            table_name: RenameTableNameKind::To(to) | RenameTableNameKind::As(to),
                        }] => to,
                        _ => return Err(not_supported(
                            "ALTER TABLE takes only RENAME TO here: a table's columns come from \
                             its data (recreate it with CREATE EXTERNAL TABLE to change more)",
                        )),
                    };
                let name = qualified(&alter.name, database)?;
                let [new_name] = parts(new_name)?.try_into().map_err(|_| {
                    invalid(format!(
                        "RENAME TO {new_name}: give the new name without a schema (it stays in its schema)"
                    ))
                })?;
                let schema = name.split_once('.').map_or(DEFAULT_SCHEMA, |(s, _)| s);
                Ok(Some(CatalogChange::Rename {
                    new_name: format!("{schema}.{new_name}"),
                    name,
                    if_exists: alter.if_exists,
                }))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

fn external_table(
    create: &CreateExternalTable,
    database: &str,
) -> Result<CatalogChange, QueryError> {
    if !create.columns.is_empty() {
        return Err(not_supported(
            "CREATE EXTERNAL TABLE reads the columns from the data: leave out the column list \
             (it may hold only PRIMARY KEY and FOREIGN KEY constraints)",
        ));
    }
    if create.temporary || create.unbounded {
        return Err(not_supported(
            "TEMPORARY and UNBOUNDED external tables are not supported",
        ));
    }
    let format = match create.file_type.to_ascii_uppercase().as_str() {
        "PARQUET" => TableFormat::Parquet,
        "CSV" => TableFormat::Csv,
        "JSON" | "NDJSON" => TableFormat::Json,
        "ARROW" => TableFormat::Arrow,
        "DELTA" | "DELTATABLE" | "DELTALAKE" => TableFormat::Delta,
        other => {
            return Err(not_supported(format!(
                "STORED AS {other}: use PARQUET, CSV, JSON, ARROW or DELTA"
            )))
        }
    };
    let [location] = create.locations.as_slice() else {
        return Err(invalid("give one LOCATION".into()));
    };
    if !crate::storage::is_url(location) && !std::path::Path::new(location).is_absolute() {
        return Err(invalid(format!(
            "LOCATION {location:?}: give an absolute path or an az://, abfss://, azure:// or https:// URL"
        )));
    }
    let mut def = TableDef {
        name: qualified(&create.name, database)?,
        location: location.clone(),
        format,
        has_header: None,
        delimiter: None,
        primary_key: Vec::new(),
        primary_key_name: None,
        foreign_keys: Vec::new(),
    };
    for constraint in &create.constraints {
        informational_key(constraint, &mut def, database)?;
    }
    for (key, value) in &create.options {
        let text = match value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        };
        match key.to_ascii_lowercase().trim_start_matches("format.") {
            "has_header" | "header" if format == TableFormat::Csv => {
                def.has_header = Some(text.eq_ignore_ascii_case("true"));
            }
            "delimiter" if format == TableFormat::Csv => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => def.delimiter = Some(c),
                    _ => {
                        return Err(invalid(format!(
                            "OPTIONS delimiter {text:?}: give one character"
                        )))
                    }
                }
            }
            other => {
                return Err(not_supported(format!(
                    "OPTIONS {other:?} is not supported (CSV: 'has_header', 'delimiter'); \
                     credentials belong in [storage], never in SQL"
                )))
            }
        }
    }
    Ok(CatalogChange::Create {
        object: CatalogObject::Table(def),
        if_not_exists: create.if_not_exists,
        or_replace: create.or_replace,
    })
}

/// A column name of a key, lower-cased unless quoted.
fn ident(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

/// Keys are informational, as Databricks has them: declared (optionally `NOT ENFORCED`),
/// shown in the catalogs, never checked. `ENFORCED` would promise what sluice does not do.
fn not_enforced(
    what: &str,
    characteristics: &Option<ConstraintCharacteristics>,
) -> Result<(), QueryError> {
    match characteristics {
        Some(c) if c.enforced == Some(true) => Err(not_supported(format!(
            "{what} ENFORCED is not supported: sluice never checks data against keys; \
             declare it NOT ENFORCED"
        ))),
        Some(c) if c.deferrable == Some(true) || c.initially.is_some() => Err(not_supported(
            format!("DEFERRABLE {what} constraints are not supported"),
        )),
        _ => Ok(()),
    }
}

fn informational_key(
    constraint: &TableConstraint,
    def: &mut TableDef,
    database: &str,
) -> Result<(), QueryError> {
    match constraint {
        TableConstraint::PrimaryKey(pk) => {
            not_enforced("PRIMARY KEY", &pk.characteristics)?;
            if !def.primary_key.is_empty() {
                return Err(invalid("a table has at most one PRIMARY KEY".into()));
            }
            if pk.index_name.is_some() || pk.index_type.is_some() || !pk.index_options.is_empty() {
                return Err(not_supported("PRIMARY KEY takes no index options"));
            }
            for column in &pk.columns {
                match &column.column.expr {
                    Expr::Identifier(id) if column.operator_class.is_none() => {
                        def.primary_key.push(ident(id))
                    }
                    other => {
                        return Err(invalid(format!(
                            "PRIMARY KEY ({other}): name columns of the table"
                        )))
                    }
                }
            }
            def.primary_key_name = pk.name.as_ref().map(ident);
            Ok(())
        }
        TableConstraint::ForeignKey(fk) => {
            not_enforced("FOREIGN KEY", &fk.characteristics)?;
            if fk.on_delete.is_some() || fk.on_update.is_some() || fk.match_kind.is_some() {
                return Err(not_supported(
                    "FOREIGN KEY takes no ON DELETE, ON UPDATE or MATCH: sluice's tables are read-only",
                ));
            }
            def.foreign_keys.push(ForeignKeyDef {
                name: fk.name.as_ref().map(ident),
                columns: fk.columns.iter().map(ident).collect(),
                references: qualified(&fk.foreign_table, database)?,
                ref_columns: fk.referred_columns.iter().map(ident).collect(),
            });
            Ok(())
        }
        other => Err(not_supported(format!(
            "{other}: CREATE EXTERNAL TABLE declares only PRIMARY KEY and FOREIGN KEY constraints"
        ))),
    }
}
