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

/// The DataFusion catalog every table lives in.
pub const CATALOG: &str = "sluice";
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
}

impl TableDef {
    /// The `(schema, table)` this entry registers, lower-cased as SQL identifiers are.
    pub fn qualified_name(&self) -> Result<(String, String), QueryError> {
        let parts: Vec<&str> = self.name.split('.').collect();
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
        match parts.as_slice() {
            [table] if valid(table) => Ok((DEFAULT_SCHEMA.into(), table.to_lowercase())),
            [schema, table] if valid(schema) && valid(table) => {
                Ok((schema.to_lowercase(), table.to_lowercase()))
            }
            _ => Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!(
                    "table name {:?} must be `schema.table` or `table` (letters, digits, _)",
                    self.name
                ),
            )),
        }
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
    for (def, is_managed) in config.chain(managed.tables.iter().map(|def| (def, true))) {
        let (schema_name, table_name) = def.qualified_name()?;
        let schema = schemas.entry(schema_name.clone()).or_default();
        if schema.table_exist(&table_name) {
            if is_managed {
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
    for (name, schema) in schemas {
        catalog
            .register_schema(&name, schema as Arc<dyn SchemaProvider>)
            .map_err(QueryError::from)?;
    }
    Ok(catalog)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> TableDef {
        TableDef {
            name: name.into(),
            location: "/nowhere".into(),
            format: TableFormat::Csv,
            has_header: None,
            delimiter: None,
        }
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            def("Sales.Orders").qualified_name().ok(),
            Some(("sales".into(), "orders".into()))
        );
        assert_eq!(
            def("orders").qualified_name().ok(),
            Some(("public".into(), "orders".into()))
        );
        assert!(def("a.b.c").qualified_name().is_err());
        assert!(def("a-b").qualified_name().is_err());
    }
}
