//! The catalog: which tables exist, where their data lives and in which format.
//!
//! Tables come from the config file (`[[tables]]`) and from the built-in demo (`tpch`).
//! Each becomes a DataFusion `ListingTable` in the catalog `sluice`, schema by schema.
//! The listing tables are plain data (URL, format, schema), so a physical plan over them
//! can be shipped to a worker with `datafusion-proto` and scanned there.

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionState;
use serde::Deserialize;

use crate::error::{ErrorKind, QueryError};

/// Whether a table holds data (a table of the catalog, scanned on a worker) rather than
/// being computed by the gateway (pg_catalog, table functions). Every kind of data table
/// the catalog registers must be recognised here.
pub fn is_data_table(table: &dyn datafusion::datasource::TableProvider) -> bool {
    (table as &dyn std::any::Any).is::<ListingTable>()
}

/// The DataFusion catalog every table lives in.
pub const CATALOG: &str = "sluice";
/// The schema an unqualified table name resolves to.
pub const DEFAULT_SCHEMA: &str = "public";

/// File formats a table can be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON, one object per line.
    Json,
}

impl TableFormat {
    fn extension(self) -> &'static str {
        match self {
            TableFormat::Parquet => ".parquet",
            TableFormat::Csv => ".csv",
            TableFormat::Json => ".json",
        }
    }
}

/// One `[[tables]]` entry of the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// Build the `sluice` catalog from table definitions.
pub async fn build_catalog(
    state: &SessionState,
    tables: &[TableDef],
) -> Result<Arc<MemoryCatalogProvider>, QueryError> {
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog
        .register_schema(DEFAULT_SCHEMA, Arc::new(MemorySchemaProvider::new()))
        .map_err(QueryError::from)?;
    for def in tables {
        let (schema_name, table_name) = def.qualified_name()?;
        let table = listing_table(state, def)
            .await
            .map_err(|e| QueryError::new(e.kind, format!("table {}: {}", def.name, e.message)))?;
        let schema = match catalog.schema(&schema_name) {
            Some(schema) => schema,
            None => {
                let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog
                    .register_schema(&schema_name, schema.clone())
                    .map_err(QueryError::from)?;
                schema
            }
        };
        if schema.table_exist(&table_name) {
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!("table {schema_name}.{table_name} is defined twice"),
            ));
        }
        schema
            .register_table(table_name, Arc::new(table))
            .map_err(QueryError::from)?;
    }
    Ok(catalog)
}

async fn listing_table(state: &SessionState, def: &TableDef) -> Result<ListingTable, QueryError> {
    let path = Path::new(&def.location);
    let is_dir = path.is_dir();
    if !is_dir && !path.is_file() {
        return Err(QueryError::new(
            ErrorKind::DataUnreadable,
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
    let url = ListingTableUrl::parse(&location).map_err(QueryError::from)?;

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
    };
    // Scan parallelism and statistics follow the session config at plan time.
    let options = ListingOptions::new(format)
        // In a directory, only files with the format's extension are data; a single file
        // named explicitly is read whatever its name.
        .with_file_extension(if is_dir { def.format.extension() } else { "" });
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(state)
        .await
        .map_err(QueryError::from)?;
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
