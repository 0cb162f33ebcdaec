//! Catalog commands (GetCatalogs, GetDbSchemas, GetTables, GetSqlInfo, GetXdbcTypeInfo,
//! keys): answered from the session's grant-filtered `information_schema` and static
//! tables of what sluice supports.

use super::*;
use datafusion::arrow::array::{ArrayRef, Int32Array, UInt8Array};

impl FlightSqlFrontend {
    /// Rows of a catalog query, run with the session's grants.
    pub(crate) async fn rows(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, Status> {
        let mut session = session.clone();
        let prepared = self
            .handler
            .prepare(&session, sql)
            .await
            .map_err(|e| status(&e))?;
        let mut out = Vec::new();
        for p in prepared {
            if let Outcome::Rows { batches, .. } = self
                .handler
                .execute(&mut session, &p, Vec::new())
                .await
                .map_err(|e| status(&e))?
            {
                out.extend(
                    batches
                        .try_collect::<Vec<_>>()
                        .await
                        .map_err(|e| status(&e))?,
                );
            }
        }
        Ok(out)
    }

    /// (schema, table, type) of every table the session may read.
    pub(crate) async fn tables(
        &self,
        session: &Session,
    ) -> Result<Vec<(String, String, String)>, Status> {
        let batches = self
            .rows(
                session,
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 ORDER BY table_schema, table_name",
            )
            .await?;
        let mut tables = Vec::new();
        for batch in batches {
            let (schemas, names, kinds) = (
                strings(&batch, 0)?,
                strings(&batch, 1)?,
                strings(&batch, 2)?,
            );
            tables.extend(
                schemas
                    .into_iter()
                    .zip(names)
                    .zip(kinds)
                    .map(|((s, t), k)| (s, t, k)),
            );
        }
        Ok(tables)
    }

    /// The FlightInfo of a metadata command: the answer's schema, the command as ticket.
    pub(crate) async fn describe(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: Any,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(request.metadata()).await?;
        info(schema, command.encode_to_vec(), request.into_inner())
    }

    /// An empty answer with the right columns (sluice's tables have no keys).
    /// GetPrimaryKeys: the key columns of one table, in key order.
    pub(crate) async fn primary_keys(
        &self,
        request: Request<Ticket>,
        catalog: Option<&str>,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = gateway::keys::primary_keys(self.handler.as_ref(), &session)
            .await
            .map_err(|e| status(&e))?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| {
                names_catalog(catalog) && schema.is_none_or(|s| s == k.schema) && k.table == table
            })
            .collect();
        let schema = Arc::new(primary_keys_schema());
        let text = |f: &dyn Fn(&gateway::keys::PrimaryKeyColumn) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(keys.iter().map(f)))
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(&|_| gateway::planner::catalog().to_string()),
                text(&|k| k.schema.clone()),
                text(&|k| k.table.clone()),
                text(&|k| k.column.clone()),
                text(&|k| k.name.clone()),
                Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.seq))),
            ],
        );
        Ok(one_batch(schema, batch))
    }

    /// GetImportedKeys (`fk` given), GetExportedKeys (`pk` given) and GetCrossReference
    /// (both): foreign key columns, with the primary key columns they reference.
    pub(crate) async fn foreign_keys(
        &self,
        request: Request<Ticket>,
        pk: Option<TableRef<'_>>,
        fk: Option<TableRef<'_>>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = gateway::keys::foreign_keys(self.handler.as_ref(), &session)
            .await
            .map_err(|e| status(&e))?;
        let mut keys: Vec<_> = keys
            .into_iter()
            .filter(|k| {
                pk.is_none_or(|t| t.matches(&k.pk_schema, &k.pk_table))
                    && fk.is_none_or(|t| t.matches(&k.fk_schema, &k.fk_table))
            })
            .collect();
        // Imported keys come in referenced-table order, the others in referencing-table
        // order (Flight SQL's and JDBC's rule).
        if pk.is_none() {
            keys.sort_by(|a, b| {
                (&a.pk_schema, &a.pk_table, &a.pk_name, a.seq).cmp(&(
                    &b.pk_schema,
                    &b.pk_table,
                    &b.pk_name,
                    b.seq,
                ))
            });
        } else {
            keys.sort_by(|a, b| {
                (&a.fk_schema, &a.fk_table, &a.fk_name, a.seq).cmp(&(
                    &b.fk_schema,
                    &b.fk_table,
                    &b.fk_name,
                    b.seq,
                ))
            });
        }
        let schema = Arc::new(foreign_keys_schema());
        let text = |f: &dyn Fn(&gateway::keys::ForeignKeyColumn) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(keys.iter().map(f)))
        };
        // update_rule, delete_rule: 3 is NO ACTION (sluice's keys are informational).
        let rule = || -> ArrayRef { Arc::new(UInt8Array::from(vec![3u8; keys.len()])) };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(&|_| gateway::planner::catalog().to_string()),
                text(&|k| k.pk_schema.clone()),
                text(&|k| k.pk_table.clone()),
                text(&|k| k.pk_column.clone()),
                text(&|_| gateway::planner::catalog().to_string()),
                text(&|k| k.fk_schema.clone()),
                text(&|k| k.fk_table.clone()),
                text(&|k| k.fk_column.clone()),
                Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.seq))),
                text(&|k| k.fk_name.clone()),
                text(&|k| k.pk_name.clone()),
                rule(),
                rule(),
            ],
        );
        Ok(one_batch(schema, batch))
    }
}

/// A table a key command names: catalog and schema optional, the table exact.
#[derive(Clone, Copy)]
pub(crate) struct TableRef<'a> {
    pub catalog: Option<&'a str>,
    pub schema: Option<&'a str>,
    pub table: &'a str,
}

impl TableRef<'_> {
    fn matches(&self, schema: &str, table: &str) -> bool {
        names_catalog(self.catalog)
            && self.schema.is_none_or(|s| s == schema)
            && self.table == table
    }
}

/// Whether a command's catalog (absent, empty or sluice's) is sluice's.
fn names_catalog(catalog: Option<&str>) -> bool {
    catalog.is_none_or(|c| c.is_empty() || c == gateway::planner::catalog())
}

/// A text column of a catalog answer as strings.
pub(crate) fn strings(batch: &RecordBatch, column: usize) -> Result<Vec<String>, Status> {
    let text = datafusion::arrow::compute::cast(batch.column(column), &DataType::Utf8)
        .map_err(|e| Status::internal(e.to_string()))?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Status::internal("catalog column is not text"))?;
    Ok(text
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

pub(crate) static SQL_INFO: std::sync::LazyLock<SqlInfoData> = std::sync::LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "sluice");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    // 0: no transactions.
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierCase, 2i32); // lowercase (unquoted names fold to lower case)
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 0i32); // case sensitive
    b.append(SqlInfo::SqlAllTablesAreSelectable, false); // grants decide
    b.append(SqlInfo::SqlNullOrdering, 1i32); // nulls sorted high, as PostgreSQL
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.build()
        .unwrap_or_else(|e| panic!("static SqlInfo table: {e}"))
});

pub(crate) static XDBC_TYPES: std::sync::LazyLock<XdbcTypeInfoData> =
    std::sync::LazyLock::new(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        for (name, ty, size, prefix) in [
            ("boolean", XdbcDataType::XdbcBit, Some(1), None),
            ("smallint", XdbcDataType::XdbcSmallint, Some(16), None),
            ("integer", XdbcDataType::XdbcInteger, Some(32), None),
            ("bigint", XdbcDataType::XdbcBigint, Some(64), None),
            ("real", XdbcDataType::XdbcReal, Some(24), None),
            ("double precision", XdbcDataType::XdbcDouble, Some(53), None),
            ("numeric", XdbcDataType::XdbcDecimal, Some(38), None),
            ("varchar", XdbcDataType::XdbcVarchar, None, Some("'")),
            ("date", XdbcDataType::XdbcDate, None, Some("DATE '")),
            (
                "timestamp",
                XdbcDataType::XdbcTimestamp,
                None,
                Some("TIMESTAMP '"),
            ),
        ] {
            b.append(XdbcTypeInfo {
                type_name: name.into(),
                data_type: ty,
                column_size: size,
                literal_prefix: prefix.map(str::to_string),
                literal_suffix: prefix.map(|_| "'".to_string()),
                create_params: None,
                nullable: Nullable::NullabilityNullable,
                case_sensitive: matches!(ty, XdbcDataType::XdbcVarchar),
                searchable: Searchable::Full,
                unsigned_attribute: Some(false),
                fixed_prec_scale: false,
                auto_increment: Some(false),
                local_type_name: Some(name.into()),
                minimum_scale: None,
                maximum_scale: None,
                sql_data_type: ty,
                datetime_subcode: None,
                num_prec_radix: size.map(|_| 2),
                interval_precision: None,
            });
        }
        b.build()
            .unwrap_or_else(|e| panic!("static XDBC type table: {e}"))
    });

/// The columns of a GetPrimaryKeys answer (Flight SQL's schema).
pub(crate) fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// The columns of GetExportedKeys / GetImportedKeys / GetCrossReference answers.
pub(crate) fn foreign_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}
