//! Informational keys as drivers' key calls answer them (Flight SQL GetPrimaryKeys,
//! GetImportedKeys, GetExportedKeys, GetCrossReference; HS2 GetPrimaryKeys and
//! GetCrossReference). They are read from the session's own information_schema, so the
//! grants filter them as they filter every catalog view: a key shows only to a session
//! that may read its table (and, for a foreign key, the table it references).

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use crate::planner::QueryError;
use crate::session::Session;

/// Runs a catalog query for a session and returns its rows (the handler does; kept as a
/// trait here so that this module does not depend on the handler's).
#[async_trait::async_trait]
pub trait CatalogRows: Send + Sync {
    async fn catalog_rows(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, QueryError>;
}

/// One column of a primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeyColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// Position in the key, from 1.
    pub seq: i32,
    pub name: String,
}

/// One column pair of a foreign key and the primary key it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyColumn {
    pub pk_schema: String,
    pub pk_table: String,
    pub pk_column: String,
    pub fk_schema: String,
    pub fk_table: String,
    pub fk_column: String,
    pub seq: i32,
    pub fk_name: String,
    pub pk_name: String,
}

const PRIMARY_KEYS: &str = "SELECT k.table_schema, k.table_name, k.column_name, \
     k.ordinal_position, k.constraint_name \
     FROM information_schema.table_constraints t \
     JOIN information_schema.key_column_usage k ON k.constraint_schema = t.constraint_schema \
       AND k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
     WHERE t.constraint_type = 'PRIMARY KEY' \
     ORDER BY k.table_schema, k.table_name, k.ordinal_position";

const FOREIGN_KEYS: &str = "SELECT p.table_schema, p.table_name, p.column_name, \
     f.table_schema, f.table_name, f.column_name, f.ordinal_position, f.constraint_name, \
     p.constraint_name \
     FROM information_schema.referential_constraints r \
     JOIN information_schema.key_column_usage f ON f.constraint_schema = r.constraint_schema \
       AND f.constraint_name = r.constraint_name \
     JOIN information_schema.key_column_usage p \
       ON p.constraint_schema = r.unique_constraint_schema \
       AND p.constraint_name = r.unique_constraint_name \
       AND p.ordinal_position = f.position_in_unique_constraint \
     ORDER BY p.table_schema, p.table_name, f.table_schema, f.table_name, f.constraint_name, \
       f.ordinal_position";

/// Every primary key column the session may see, by schema, table and position.
pub async fn primary_keys<H: CatalogRows + ?Sized>(
    handler: &H,
    session: &Session,
) -> Result<Vec<PrimaryKeyColumn>, QueryError> {
    let mut out = Vec::new();
    for batch in handler.catalog_rows(session, PRIMARY_KEYS).await? {
        let c: Vec<Vec<String>> = (0..5).map(|i| text(&batch, i)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            out.push(PrimaryKeyColumn {
                schema: c[0][row].clone(),
                table: c[1][row].clone(),
                column: c[2][row].clone(),
                seq: c[3][row].parse().unwrap_or(0),
                name: c[4][row].clone(),
            });
        }
    }
    Ok(out)
}

/// Every foreign key column the session may see, by referenced table, referencing table,
/// key name and position.
pub async fn foreign_keys<H: CatalogRows + ?Sized>(
    handler: &H,
    session: &Session,
) -> Result<Vec<ForeignKeyColumn>, QueryError> {
    let mut out = Vec::new();
    for batch in handler.catalog_rows(session, FOREIGN_KEYS).await? {
        let c: Vec<Vec<String>> = (0..9).map(|i| text(&batch, i)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            out.push(ForeignKeyColumn {
                pk_schema: c[0][row].clone(),
                pk_table: c[1][row].clone(),
                pk_column: c[2][row].clone(),
                fk_schema: c[3][row].clone(),
                fk_table: c[4][row].clone(),
                fk_column: c[5][row].clone(),
                seq: c[6][row].parse().unwrap_or(0),
                fk_name: c[7][row].clone(),
                pk_name: c[8][row].clone(),
            });
        }
    }
    Ok(out)
}

/// Every row of a catalog query, each value as text (NULL as empty).
pub(crate) async fn text_rows<H: CatalogRows + ?Sized>(
    handler: &H,
    session: &Session,
    sql: &str,
) -> Result<Vec<Vec<String>>, QueryError> {
    let mut out = Vec::new();
    for batch in handler.catalog_rows(session, sql).await? {
        let c: Vec<Vec<String>> = (0..batch.num_columns())
            .map(|i| text(&batch, i))
            .collect::<Result<_, _>>()?;
        out.extend((0..batch.num_rows()).map(|row| c.iter().map(|v| v[row].clone()).collect()));
    }
    Ok(out)
}

fn text(batch: &RecordBatch, column: usize) -> Result<Vec<String>, QueryError> {
    let values = cast(batch.column(column), &DataType::Utf8)
        .map_err(|e| QueryError::internal(format!("key catalog column: {e}")))?;
    let values = values
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| QueryError::internal("key catalog column is not text"))?;
    Ok((0..values.len())
        .map(|i| {
            if values.is_null(i) {
                String::new()
            } else {
                values.value(i).to_string()
            }
        })
        .collect())
}
