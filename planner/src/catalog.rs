//! The catalog: which tables exist, where their data lives and in which format.
//!
//! Tables come from the config file (`[[tables]]`) and from the built-in demo (`tpch`).
//! Each becomes a DataFusion `ListingTable` in the catalog `sluice`, schema by schema.
//! The listing tables are plain data (URL, format, schema), so a physical plan over them
//! can be shipped to a worker with `datafusion-proto` and scanned there.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use serde::{Deserialize, Serialize};

use crate::delta::{AsOf, DeltaSource, DeltaTableProvider};
use crate::error::{ErrorKind, QueryError};
use crate::storage;

/// Whether a table holds data (a table of the catalog, scanned on a worker) rather than
/// being computed by the gateway (pg_catalog, table functions). Every kind of data table
/// the catalog registers must be recognised here.
pub fn is_data_table(table: &dyn datafusion::datasource::TableProvider) -> bool {
    let any = table as &dyn std::any::Any;
    any.is::<ListingTable>() || any.is::<DeltaTableProvider>()
}

/// The format a data table's files are in, as Spark names it (`parquet`, `csv`, `json`,
/// `arrow`, `delta`); None for anything else (a view, a system table).
pub fn table_format(table: &dyn TableProvider) -> Option<String> {
    let any = table as &dyn std::any::Any;
    if let Some(listing) = any.downcast_ref::<ListingTable>() {
        let ext = listing.options().format.get_ext();
        return Some(ext.trim_start_matches('.').to_ascii_lowercase());
    }
    any.is::<DeltaTableProvider>().then(|| "delta".to_string())
}

/// The one catalog's name unless the configuration names it (`catalog = "…"`).
pub const DEFAULT_CATALOG: &str = "sluice";

static CATALOG_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The one catalog every table lives in, by the name clients see it under (GetCatalogs,
/// SHOW CATALOGS, `current_catalog()`, three-part names, information_schema, grants'
/// `catalog.schema.table` patterns): `sluice` unless [`set_catalog_name`] named it.
pub fn catalog() -> &'static str {
    CATALOG_NAME.get().map_or(DEFAULT_CATALOG, String::as_str)
}

/// Whether `name` can name the catalog: a lower-case SQL identifier of at most 63
/// characters, not one of the names it is already known by to other engines' clients
/// (`information_schema`, `system`, `pg_catalog`).
pub fn check_catalog_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!(
            "catalog {name:?}: a catalog name is lower-case letters, digits and _ (at most 63), \
             starting with a letter or _"
        ));
    }
    if ["system", "information_schema", "pg_catalog"].contains(&name) {
        return Err(format!(
            "catalog {name:?}: that name is taken (Databricks' system catalog, the SQL \
             standard's and PostgreSQL's schemas)"
        ));
    }
    Ok(())
}

/// Name the catalog, once, before anything is planned (the server's configuration): a
/// lower-case SQL identifier, so that every front-end can write it unquoted.
pub fn set_catalog_name(name: &str) -> Result<(), String> {
    check_catalog_name(name)?;
    if CATALOG_NAME.get_or_init(|| name.to_string()) != name {
        return Err(format!("the catalog is already named {:?}", catalog()));
    }
    Ok(())
}
/// The schema an unqualified table name resolves to.
pub const DEFAULT_SCHEMA: &str = "public";

/// File formats a table can be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON, one object per line.
    Json,
    /// Arrow IPC files.
    Arrow,
    /// A Delta Lake table (its directory: `_delta_log/` and the data files).
    Delta,
}

impl TableFormat {
    fn extension(self) -> &'static str {
        match self {
            TableFormat::Parquet => ".parquet",
            TableFormat::Csv => ".csv",
            TableFormat::Json => ".json",
            TableFormat::Arrow => ".arrow",
            TableFormat::Delta => ".parquet",
        }
    }
}

/// One `[[tables]]` entry of the config file (or a table created with SQL).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// `schema.table` (or just `table`, which goes into schema `public`).
    pub name: String,
    /// A file or a directory of files (all in the same format).
    pub location: String,
    pub format: TableFormat,
    /// CSV only: whether the first line names the columns (default true).
    #[serde(default)]
    pub has_header: Option<bool>,
    /// CSV only: the field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Informational primary key (Databricks' `NOT ENFORCED`): shown in the catalogs and
    /// to drivers' key calls, never checked against the data, never used to plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// The primary key constraint's name (default `<table>_pkey`, as PostgreSQL names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_name: Option<String>,
    /// Informational foreign keys, each referencing another table's primary key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyDef>,
}

/// An informational foreign key as declared: `foreign_keys = [{ columns = [..],
/// references = "schema.table" }]` in a `[[tables]]` entry, or `FOREIGN KEY (..) REFERENCES
/// t (..) NOT ENFORCED` in CREATE EXTERNAL TABLE.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyDef {
    /// The constraint's name (default `<table>_<columns>_fkey`, as PostgreSQL names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub columns: Vec<String>,
    /// `schema.table` (or `table`, in schema `public`).
    pub references: String,
    /// The referenced columns: the referenced table's primary key (the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ref_columns: Vec<String>,
}

/// A table's informational keys, checked against the catalog: every column exists, every
/// foreign key references a primary key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableKeys {
    pub primary_key: Option<PrimaryKey>,
    pub foreign_keys: Vec<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKey {
    pub name: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub schema: String,
    pub table: String,
    /// The referenced table's primary key columns, in its order.
    pub ref_columns: Vec<String>,
}

impl TableDef {
    /// The `(schema, table)` this entry registers, lower-cased as SQL identifiers are.
    pub fn qualified_name(&self) -> Result<(String, String), QueryError> {
        qualified_name(&self.name)
    }
}

/// `schema.table` or `table` (in schema `public`), lower-cased as SQL identifiers are.
fn qualified_name(name: &str) -> Result<(String, String), QueryError> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    match parts.as_slice() {
        [table] if valid(table) => Ok((DEFAULT_SCHEMA.into(), table.to_lowercase())),
        [schema, table] if valid(schema) && valid(table) => {
            Ok((schema.to_lowercase(), table.to_lowercase()))
        }
        _ => Err(QueryError::new(
            ErrorKind::InvalidValue,
            format!("table name {name:?} must be `schema.table` or `table` (letters, digits, _)"),
        )),
    }
}

/// A schema of the catalog: its tables, and those that could not be opened. Querying one
/// of those fails with the reason, naming the table; every other table keeps working.
#[derive(Debug, Default)]
pub struct CatalogSchema {
    tables: MemorySchemaProvider,
    /// Delta tables: each statement plans against the snapshot it reads.
    delta: RwLock<HashMap<String, Arc<DeltaSource>>>,
    unavailable: RwLock<HashMap<String, QueryError>>,
    /// Informational keys, by table.
    keys: RwLock<HashMap<String, TableKeys>>,
    /// Keys of tables created with SQL that no longer fit the data (left out, with why).
    key_errors: RwLock<HashMap<String, QueryError>>,
}

impl CatalogSchema {
    /// A Delta table.
    pub fn register_delta(&self, name: &str, source: DeltaSource) {
        self.delta
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(source));
    }

    fn delta(&self, name: &str) -> Option<Arc<DeltaSource>> {
        self.delta
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A table that is defined but cannot be read now.
    pub fn register_unavailable(&self, name: &str, error: QueryError) {
        self.unavailable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), error);
    }

    /// Why a defined table cannot be read, if it cannot.
    pub fn unavailable(&self, name: &str) -> Option<QueryError> {
        self.unavailable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A table's informational keys (none when it declares none).
    pub fn keys(&self, name: &str) -> Option<TableKeys> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Why a table's declared keys were left out, if they were.
    pub fn key_error(&self, name: &str) -> Option<QueryError> {
        self.key_errors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

#[async_trait::async_trait]
impl SchemaProvider for CatalogSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.tables.table_names();
        names.extend(
            self.delta
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        // `sales@v3`: a time-travel reference (see compat::rewrite_time_travel).
        let (base, as_of) = match name.rsplit_once('@') {
            Some((base, suffix)) => match AsOf::parse_suffix(suffix) {
                Some(as_of) => (base, as_of),
                None => (name, AsOf::Latest),
            },
            None => (name, AsOf::Latest),
        };
        if let Some(error) = self.unavailable(base) {
            return Err(DataFusionError::External(Box::new(error)));
        }
        if let Some(delta) = self.delta(base) {
            let table = DeltaTableProvider::new(delta, &as_of)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(Arc::new(table)));
        }
        if as_of != AsOf::Latest && self.tables.table_exist(base) {
            return Err(DataFusionError::External(Box::new(QueryError::new(
                ErrorKind::NotSupported,
                format!("table {base} is not a Delta table: VERSION AS OF and TIMESTAMP AS OF read Delta tables"),
            ))));
        }
        self.tables.table(name).await
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        self.unavailable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        self.tables.register_table(name, table)
    }

    fn deregister_table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        self.unavailable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.tables.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.table_exist(name)
            || self.delta(name).is_some()
            || self.unavailable(name).is_some()
    }
}

/// Build the `sluice` catalog from table definitions: the config file's, then those
/// created with SQL (`managed`, with its empty schemas; its views are planned later, see
/// `Planner::new`). A table that cannot be opened (a missing path or container, refused
/// credentials, an unreadable file) is logged and registered as unavailable; a config
/// entry that is wrong in itself (a bad name, a table defined twice) is an error, a
/// managed one is only unavailable (SQL checked it when it was created).
pub async fn build_catalog(
    state: &SessionState,
    tables: &[TableDef],
    managed: &crate::ddl::Managed,
) -> Result<Arc<MemoryCatalogProvider>, QueryError> {
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let mut schemas: HashMap<String, Arc<CatalogSchema>> = HashMap::new();
    schemas.insert(DEFAULT_SCHEMA.into(), Arc::default());
    for name in &managed.schemas {
        schemas.entry(name.clone()).or_default();
    }
    for view in &managed.views {
        if let Some((schema, _)) = view.name.split_once('.') {
            schemas.entry(schema.to_string()).or_default();
        }
    }
    let config = tables.iter().map(|def| (def, false));
    let mut shadowed = std::collections::HashSet::new();
    for (def, is_managed) in config.chain(managed.tables.iter().map(|def| (def, true))) {
        let (schema_name, table_name) = def.qualified_name()?;
        let schema = schemas.entry(schema_name.clone()).or_default();
        if schema.table_exist(&table_name) {
            if is_managed {
                shadowed.insert((schema_name.clone(), table_name.clone()));
                tracing::warn!(table = %def.name, "a table created with SQL has the name of a config table: the config table wins");
                continue;
            }
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!("table {schema_name}.{table_name} is defined twice"),
            ));
        }
        let opened = match def.format {
            TableFormat::Delta => delta_table(state, def, &schema_name, &table_name)
                .await
                .map(|d| schema.register_delta(&table_name, d)),
            _ => listing_table(state, def).await.and_then(|table| {
                schema
                    .register_table(table_name.clone(), Arc::new(table))
                    .map(|_| ())
                    .map_err(QueryError::from)
            }),
        };
        match opened {
            Ok(()) => {}
            Err(e)
                if is_managed
                    || matches!(e.kind, ErrorKind::DataUnreadable | ErrorKind::NotSupported) =>
            {
                let error = QueryError::new(
                    if e.kind == ErrorKind::Internal {
                        ErrorKind::DataUnreadable
                    } else {
                        e.kind
                    },
                    format!(
                        "table {schema_name}.{table_name} cannot be read: {}",
                        e.message
                    ),
                );
                tracing::warn!(table = %format!("{schema_name}.{table_name}"), error = %error.message, "table unavailable");
                schema.register_unavailable(&table_name, error);
            }
            Err(e) => {
                return Err(QueryError::new(
                    e.kind,
                    format!("table {}: {}", def.name, e.message),
                ))
            }
        }
    }
    // Keys once every table is open: a foreign key names another table's primary key.
    let all = tables.iter().map(|def| (def, false));
    let mut primary: HashMap<(String, String), PrimaryKey> = HashMap::new();
    // Constraint names are unique in a schema (PostgreSQL's index names are).
    let mut used_names = std::collections::HashSet::new();
    let mut keyed = Vec::new();
    for (def, is_managed) in all.chain(managed.tables.iter().map(|def| (def, true))) {
        if def.primary_key.is_empty() && def.foreign_keys.is_empty() {
            continue;
        }
        let (schema_name, table_name) = def.qualified_name()?;
        if is_managed && shadowed.contains(&(schema_name.clone(), table_name.clone())) {
            continue;
        }
        let Some(columns) = table_columns(&schemas, &schema_name, &table_name).await else {
            continue; // unavailable: its keys show when it can be read
        };
        let checked = primary_key(def, &table_name, &columns);
        let pk = match checked {
            Ok(pk) => pk,
            Err(e) if is_managed => {
                key_problem(&schemas[&schema_name], &schema_name, &table_name, e);
                continue;
            }
            Err(e) => return Err(key_error(&schema_name, &table_name, e)),
        };
        if let Some(pk) = &pk {
            if !used_names.insert((schema_name.clone(), pk.name.clone())) {
                let e = format!(
                    "a constraint named {:?} exists in schema {schema_name} already",
                    pk.name
                );
                if is_managed {
                    key_problem(&schemas[&schema_name], &schema_name, &table_name, e);
                    continue;
                }
                return Err(key_error(&schema_name, &table_name, e));
            }
            primary.insert((schema_name.clone(), table_name.clone()), pk.clone());
        }
        schemas[&schema_name].set_keys(
            &table_name,
            TableKeys {
                primary_key: pk,
                foreign_keys: Vec::new(),
            },
        );
        keyed.push((def, is_managed, schema_name, table_name, columns));
    }
    for (def, is_managed, schema_name, table_name, columns) in keyed {
        let mut foreign_keys = Vec::new();
        for fk in &def.foreign_keys {
            let checked = foreign_key(fk, &table_name, &columns, &primary).and_then(|fk| {
                if used_names.insert((schema_name.clone(), fk.name.clone())) {
                    Ok(fk)
                } else {
                    Err(format!(
                        "a constraint named {:?} exists in schema {schema_name} already",
                        fk.name
                    ))
                }
            });
            match checked {
                Ok(fk) => foreign_keys.push(fk),
                Err(e) if is_managed => {
                    key_problem(&schemas[&schema_name], &schema_name, &table_name, e)
                }
                Err(e) => return Err(key_error(&schema_name, &table_name, e)),
            }
        }
        let schema = &schemas[&schema_name];
        let mut keys = schema.keys(&table_name).unwrap_or_default();
        keys.foreign_keys = foreign_keys;
        schema.set_keys(&table_name, keys);
    }
    for (name, schema) in schemas {
        catalog
            .register_schema(&name, schema as Arc<dyn SchemaProvider>)
            .map_err(QueryError::from)?;
    }
    Ok(catalog)
}

impl CatalogSchema {
    fn set_keys(&self, name: &str, keys: TableKeys) {
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), keys);
    }
}

/// The column names of an open table (None: not open).
async fn table_columns(
    schemas: &HashMap<String, Arc<CatalogSchema>>,
    schema: &str,
    table: &str,
) -> Option<Vec<String>> {
    let schema = schemas.get(schema)?;
    if schema.unavailable(table).is_some() {
        return None;
    }
    let table = schema.table(table).await.ok()??;
    Some(
        table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    )
}

fn key_error(schema: &str, table: &str, message: String) -> QueryError {
    QueryError::new(
        ErrorKind::InvalidValue,
        format!("table {schema}.{table}: {message}"),
    )
}

/// A created table's keys that no longer fit: the table stays readable, without them.
fn key_problem(catalog: &CatalogSchema, schema: &str, table: &str, message: String) {
    let error = key_error(schema, table, message);
    tracing::warn!(table = %format!("{schema}.{table}"), error = %error.message, "informational key left out");
    catalog
        .key_errors
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(table.to_string(), error);
}

fn check_columns(what: &str, named: &[String], columns: &[String]) -> Result<(), String> {
    if named.is_empty() {
        return Err(format!("{what} names no columns"));
    }
    // A key may name thousands of columns: linear checks, not quadratic ones.
    let existing: std::collections::HashSet<&String> = columns.iter().collect();
    let mut seen = std::collections::HashSet::new();
    for c in named {
        if !existing.contains(c) {
            return Err(format!(
                "{what} column {c:?} does not exist (the table has {})",
                columns.join(", ")
            ));
        }
        if !seen.insert(c) {
            return Err(format!("{what} names column {c:?} twice"));
        }
    }
    Ok(())
}

fn primary_key(
    def: &TableDef,
    table: &str,
    columns: &[String],
) -> Result<Option<PrimaryKey>, String> {
    if def.primary_key.is_empty() {
        return Ok(None);
    }
    check_columns("primary key", &def.primary_key, columns)?;
    Ok(Some(PrimaryKey {
        name: def
            .primary_key_name
            .clone()
            .unwrap_or_else(|| format!("{table}_pkey")),
        columns: def.primary_key.clone(),
    }))
}

fn foreign_key(
    fk: &ForeignKeyDef,
    table: &str,
    columns: &[String],
    primary: &HashMap<(String, String), PrimaryKey>,
) -> Result<ForeignKey, String> {
    check_columns("foreign key", &fk.columns, columns)?;
    let (schema, referenced) = qualified_name(&fk.references).map_err(|e| e.message)?;
    let Some(pk) = primary.get(&(schema.clone(), referenced.clone())) else {
        return Err(format!(
            "foreign key ({}) references {schema}.{referenced}, which is not a table with a primary key",
            fk.columns.join(", ")
        ));
    };
    if !fk.ref_columns.is_empty() && fk.ref_columns != pk.columns {
        return Err(format!(
            "foreign key ({}) must reference the primary key of {schema}.{referenced} ({})",
            fk.columns.join(", "),
            pk.columns.join(", ")
        ));
    }
    if fk.columns.len() != pk.columns.len() {
        return Err(format!(
            "foreign key ({}) has {} columns, the primary key of {schema}.{referenced} has {}",
            fk.columns.join(", "),
            fk.columns.len(),
            pk.columns.len()
        ));
    }
    Ok(ForeignKey {
        name: fk
            .name
            .clone()
            .unwrap_or_else(|| format!("{table}_{}_fkey", fk.columns.join("_"))),
        columns: fk.columns.clone(),
        schema,
        table: referenced,
        ref_columns: pk.columns.clone(),
    })
}

/// A storage failure while opening a table, as its cause (never a secret).
fn opening_error(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::ObjectStore(store) => {
            QueryError::new(ErrorKind::DataUnreadable, storage::describe(store))
        }
        DataFusionError::ParquetError(p) => QueryError::new(
            ErrorKind::DataUnreadable,
            format!(
                "a file is not readable Parquet: {}",
                storage::scrub(&p.to_string(), &[])
            ),
        ),
        DataFusionError::IoError(io) => QueryError::new(
            ErrorKind::DataUnreadable,
            storage::scrub(&io.to_string(), &[]),
        ),
        DataFusionError::ArrowError(a, _) => QueryError::new(
            ErrorKind::DataUnreadable,
            format!(
                "a file cannot be read: {}",
                storage::scrub(&a.to_string(), &[])
            ),
        ),
        DataFusionError::Configuration(msg) => {
            QueryError::new(ErrorKind::DataUnreadable, storage::scrub(msg, &[]))
        }
        // Anything else while opening (no files where files should be, a schema that
        // cannot be inferred) is about the data too.
        _ => {
            let e = QueryError::from(e);
            QueryError::new(ErrorKind::DataUnreadable, storage::scrub(&e.message, &[]))
        }
    }
}

/// Where a table's files are: a URL as given (a directory when it ends with `/` or its last
/// segment has no file extension), or a local path made absolute.
fn table_url(def: &TableDef) -> Result<(ListingTableUrl, bool), QueryError> {
    if storage::is_url(&def.location) {
        let mut location = def.location.clone();
        let last = location
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let is_dir = location.ends_with('/') || !last.contains('.');
        if is_dir && !location.ends_with('/') {
            location.push('/');
        }
        let url = ListingTableUrl::parse(&location).map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidValue,
                format!("location {:?} is not a valid URL: {e}", def.location),
            )
        })?;
        return Ok((url, is_dir));
    }
    let path = Path::new(&def.location);
    let is_dir = path.is_dir();
    if !is_dir && !path.is_file() {
        // A mistake in the definition (a config file's is refused at start and on reload).
        return Err(QueryError::new(
            ErrorKind::InvalidValue,
            format!("location {:?} does not exist", def.location),
        ));
    }
    let absolute = std::fs::canonicalize(path).map_err(|e| {
        QueryError::new(
            ErrorKind::DataUnreadable,
            format!("location {:?}: {e}", def.location),
        )
    })?;
    let mut location = absolute.to_string_lossy().into_owned();
    if is_dir && !location.ends_with('/') {
        location.push('/');
    }
    Ok((
        ListingTableUrl::parse(&location).map_err(QueryError::from)?,
        is_dir,
    ))
}

async fn delta_table(
    state: &SessionState,
    def: &TableDef,
    schema: &str,
    table: &str,
) -> Result<DeltaSource, QueryError> {
    let mut def = def.clone();
    if !def.location.ends_with('/') {
        def.location.push('/');
    }
    let (url, _) = table_url(&def)?;
    state
        .runtime_env()
        .object_store(&url)
        .map_err(opening_error)?;
    DeltaSource::open(state, &format!("{schema}.{table}"), url)
        .await
        .map_err(|e| {
            // The source names the table itself.
            let prefix = format!("Delta table {schema}.{table}: ");
            QueryError::new(e.kind, e.message.trim_start_matches(&prefix).to_string())
        })
}

async fn listing_table(state: &SessionState, def: &TableDef) -> Result<ListingTable, QueryError> {
    let (url, is_dir) = table_url(def)?;
    // An unknown scheme or unusable credentials show here, before any listing.
    state
        .runtime_env()
        .object_store(&url)
        .map_err(opening_error)?;

    let format: Arc<dyn FileFormat> = match def.format {
        TableFormat::Parquet => Arc::new(ParquetFormat::default()),
        TableFormat::Csv => {
            let mut csv = CsvFormat::default().with_has_header(def.has_header.unwrap_or(true));
            if let Some(delimiter) = def.delimiter {
                if !delimiter.is_ascii() {
                    return Err(QueryError::new(
                        ErrorKind::InvalidValue,
                        "a CSV delimiter must be one ASCII character",
                    ));
                }
                csv = csv.with_delimiter(delimiter as u8);
            }
            Arc::new(csv)
        }
        TableFormat::Json => Arc::new(JsonFormat::default()),
        TableFormat::Arrow => Arc::new(ArrowFormat),
        TableFormat::Delta => {
            return Err(QueryError::internal(
                "a Delta table is opened by its log, not listed",
            ))
        }
    };
    // Scan parallelism and statistics follow the session config at plan time.
    let mut options = ListingOptions::new(format)
        // In a directory, only files with the format's extension are data; a single file
        // named explicitly is read whatever its name.
        .with_file_extension(if is_dir { def.format.extension() } else { "" });
    if is_dir {
        // Hive-style directories (`year=2024/month=05/…`) become text columns; a filter
        // on them skips the directories it rules out.
        let partitions = options
            .infer_partitions(state, &url)
            .await
            .map_err(opening_error)?;
        options = options.with_table_partition_cols(
            partitions
                .into_iter()
                .map(|name| (name, datafusion::arrow::datatypes::DataType::Utf8))
                .collect(),
        );
    }
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(state)
        .await
        .map_err(opening_error)?;
    ListingTable::try_new(config).map_err(QueryError::from)
}

/// What a data table holds, as its files say: rows from their statistics (Parquet
/// footers, the Delta log), bytes the files take. `None` where they do not say (CSV rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSize {
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

/// Sizes of the data tables, by `schema.table` (pg_class.reltuples, pg_relation_size, …:
/// what Power BI and Metabase read to size a table).
pub type TableSizes = HashMap<String, TableSize>;

/// How long measuring every table may take when a catalog is built: what DataFusion reads
/// for it (listings, footers) it would read at the first query anyway, but a slow store
/// must not hold up a start. Tables not measured by then have no size (`reltuples` -1,
/// as PostgreSQL says of a table never analyzed).
const SIZE_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Measure the data tables of `catalog` by planning a scan of each.
pub async fn table_sizes(
    state: &SessionState,
    catalog: &dyn datafusion::catalog::CatalogProvider,
) -> TableSizes {
    let deadline = tokio::time::Instant::now() + SIZE_BUDGET;
    let mut sizes = TableSizes::new();
    for schema_name in catalog.schema_names() {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        for table_name in schema.table_names() {
            let Ok(Some(table)) = schema.table(&table_name).await else {
                continue;
            };
            if !is_data_table(table.as_ref()) {
                continue;
            }
            match tokio::time::timeout_at(deadline, size_of(state, table.as_ref())).await {
                Ok(Ok(size)) => {
                    sizes.insert(format!("{schema_name}.{table_name}"), size);
                }
                Ok(Err(e)) => {
                    tracing::debug!(table = %table_name, error = %e, "table not measured");
                }
                Err(_) => {
                    tracing::info!("measuring tables took over {SIZE_BUDGET:?}: the rest have no size in pg_class");
                    return sizes;
                }
            }
        }
    }
    sizes
}

async fn size_of(
    state: &SessionState,
    table: &dyn TableProvider,
) -> Result<TableSize, DataFusionError> {
    let plan = table.scan(state, None, &[], None).await?;
    let statistics = datafusion::physical_plan::statistics::StatisticsContext::default().compute(
        plan.as_ref(),
        &datafusion::physical_plan::statistics::StatisticsArgs::new(),
    )?;
    let rows = statistics.num_rows.get_value().map(|n| *n as u64);
    let bytes = crate::distributed::scanned_bytes(&plan);
    Ok(TableSize { rows, bytes })
}
