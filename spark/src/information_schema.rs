//! Databricks' information_schema on the Databricks paths: `system.information_schema.t`
//! (every catalog's objects, what dbt-databricks reads for relations and `docs generate`)
//! and `<catalog>.information_schema.t` answer with Databricks' documented columns
//! (`table_type` MANAGED/EXTERNAL/VIEW, 0-based `ordinal_position`, `full_data_type` in
//! Spark's type names, the informational keys in `table_constraints` and
//! `key_column_usage`, …), as views over the session's own information_schema — so they
//! show exactly what its grants let the session see. A two-part `information_schema.t`
//! keeps PostgreSQL's shape (sluice's own statements read it).
//!
//! Facts sluice does not keep are NULL: comments, creation and change times and users,
//! data source formats and storage paths.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::parser::Parser;

use crate::SparkDialect;

/// The query a Databricks information_schema view answers with, for the one catalog named
/// `catalog`; None for a view Databricks does not define here.
fn view_sql(view: &str, catalog: &str) -> Option<String> {
    let catalog = catalog.replace('\'', "''");
    // The schemas a Databricks client can know: PostgreSQL's own are hidden, as in SHOW
    // SCHEMAS.
    let visible = "table_schema NOT IN ('pg_catalog', 'pg_toast')";
    let sql = match view.to_ascii_lowercase().as_str() {
        "catalogs" => format!(
            "SELECT '{catalog}' AS catalog_name, CAST(NULL AS STRING) AS catalog_owner, \
             CAST(NULL AS STRING) AS comment, CAST(NULL AS TIMESTAMP) AS created, \
             CAST(NULL AS STRING) AS created_by, CAST(NULL AS TIMESTAMP) AS last_altered, \
             CAST(NULL AS STRING) AS last_altered_by"
        ),
        "schemata" => format!(
            "SELECT '{catalog}' AS catalog_name, schema_name, schema_owner, \
             CAST(NULL AS STRING) AS comment, CAST(NULL AS TIMESTAMP) AS created, \
             CAST(NULL AS STRING) AS created_by, CAST(NULL AS TIMESTAMP) AS last_altered, \
             CAST(NULL AS STRING) AS last_altered_by \
             FROM information_schema.schemata WHERE schema_name NOT IN ('pg_catalog', 'pg_toast')"
        ),
        "tables" => format!(
            "SELECT '{catalog}' AS table_catalog, t.table_schema, t.table_name, \
             CASE WHEN t.table_type = 'VIEW' THEN 'VIEW' ELSE 'EXTERNAL' END AS table_type, \
             'NO' AS is_insertable_into, 'PRESERVE' AS commit_action, \
             s.schema_owner AS table_owner, CAST(NULL AS STRING) AS comment, \
             CAST(NULL AS TIMESTAMP) AS created, CAST(NULL AS STRING) AS created_by, \
             CAST(NULL AS TIMESTAMP) AS last_altered, CAST(NULL AS STRING) AS last_altered_by, \
             CAST(NULL AS STRING) AS data_source_format, \
             CAST(NULL AS STRING) AS storage_sub_directory, CAST(NULL AS STRING) AS storage_path \
             FROM information_schema.tables t \
             LEFT JOIN information_schema.schemata s ON s.schema_name = t.table_schema \
             WHERE t.{visible}"
        ),
        "views" => format!(
            "SELECT '{catalog}' AS table_catalog, table_schema, table_name, view_definition, \
             'NO' AS is_updatable, 'NO' AS is_insertable_into, \
             CAST(NULL AS STRING) AS sql_path \
             FROM information_schema.views WHERE {visible}"
        ),
        "columns" => format!(
            "SELECT '{catalog}' AS table_catalog, table_schema, table_name, column_name, \
             CAST(ordinal_position - 1 AS INT) AS ordinal_position, column_default, is_nullable, \
             {full} AS full_data_type, {simple} AS data_type, \
             CAST(character_maximum_length AS BIGINT) AS character_maximum_length, \
             CAST(character_octet_length AS BIGINT) AS character_octet_length, \
             CAST(numeric_precision AS INT) AS numeric_precision, \
             CAST(numeric_precision_radix AS INT) AS numeric_precision_radix, \
             CAST(numeric_scale AS INT) AS numeric_scale, \
             CAST(datetime_precision AS INT) AS datetime_precision, \
             CAST(NULL AS STRING) AS interval_type, CAST(NULL AS INT) AS interval_precision, \
             CAST(NULL AS BIGINT) AS maximum_cardinality, 'NO' AS is_identity, \
             CAST(NULL AS STRING) AS identity_generation, \
             CAST(NULL AS STRING) AS identity_start, CAST(NULL AS STRING) AS identity_increment, \
             CAST(NULL AS STRING) AS identity_maximum, CAST(NULL AS STRING) AS identity_minimum, \
             CAST(NULL AS STRING) AS identity_cycle, 'NEVER' AS is_generated, \
             CAST(NULL AS STRING) AS generation_expression, \
             'NO' AS is_system_time_period_start, 'NO' AS is_system_time_period_end, \
             CAST(NULL AS STRING) AS system_time_period_timestamp_generation, \
             'NO' AS is_updatable, CAST(NULL AS INT) AS partition_index, \
             CAST(NULL AS STRING) AS comment \
             FROM information_schema.columns WHERE {visible}",
            full = FULL_TYPE,
            simple = SIMPLE_TYPE,
        ),
        // The informational keys (Databricks' `enforced` is NO: neither checks them).
        "table_constraints" => format!(
            "SELECT '{catalog}' AS constraint_catalog, constraint_schema, constraint_name, \
             '{catalog}' AS table_catalog, table_schema, table_name, constraint_type, \
             'NO' AS is_deferrable, 'NO' AS initially_deferred, 'NO' AS enforced, \
             CAST(NULL AS STRING) AS comment, CAST(NULL AS TIMESTAMP) AS created, \
             CAST(NULL AS TIMESTAMP) AS last_altered \
             FROM information_schema.table_constraints WHERE {visible}"
        ),
        "key_column_usage" => format!(
            "SELECT '{catalog}' AS constraint_catalog, constraint_schema, constraint_name, \
             '{catalog}' AS table_catalog, table_schema, table_name, column_name, \
             CAST(ordinal_position - 1 AS INT) AS ordinal_position, \
             CAST(position_in_unique_constraint - 1 AS INT) AS position_in_unique_constraint \
             FROM information_schema.key_column_usage WHERE {visible}"
        ),
        _ => return None,
    };
    Some(sql)
}

/// Spark's type name of a column, from PostgreSQL's (`udt_name`): what DESCRIBE prints.
const FULL_TYPE: &str = "CASE udt_name \
     WHEN 'int2' THEN 'smallint' WHEN 'int4' THEN 'int' WHEN 'int8' THEN 'bigint' \
     WHEN 'float4' THEN 'float' WHEN 'float8' THEN 'double' WHEN 'bool' THEN 'boolean' \
     WHEN 'text' THEN 'string' WHEN 'varchar' THEN 'string' WHEN 'bpchar' THEN 'string' \
     WHEN 'bytea' THEN 'binary' WHEN 'date' THEN 'date' \
     WHEN 'timestamp' THEN 'timestamp_ntz' WHEN 'timestamptz' THEN 'timestamp' \
     WHEN 'numeric' THEN concat('decimal(', CAST(numeric_precision AS STRING), ',', \
                                CAST(numeric_scale AS STRING), ')') \
     ELSE lower(data_type) END";

/// Databricks' simple type name (`data_type`): LONG, INT, STRING, DECIMAL, …
const SIMPLE_TYPE: &str = "CASE udt_name \
     WHEN 'int2' THEN 'SHORT' WHEN 'int4' THEN 'INT' WHEN 'int8' THEN 'LONG' \
     WHEN 'float4' THEN 'FLOAT' WHEN 'float8' THEN 'DOUBLE' WHEN 'bool' THEN 'BOOLEAN' \
     WHEN 'text' THEN 'STRING' WHEN 'varchar' THEN 'STRING' WHEN 'bpchar' THEN 'STRING' \
     WHEN 'bytea' THEN 'BINARY' WHEN 'date' THEN 'DATE' \
     WHEN 'timestamp' THEN 'TIMESTAMP_NTZ' WHEN 'timestamptz' THEN 'TIMESTAMP' \
     WHEN 'numeric' THEN 'DECIMAL' ELSE upper(data_type) END";

/// If `factor` names a Databricks information_schema view (`system.information_schema.t`
/// or `<catalog>.information_schema.t`), the derived table that answers it, under the
/// alias the statement gave or the view's own name.
pub(crate) fn view(factor: &ast::TableFactor, catalog: &str) -> Option<ast::TableFactor> {
    let ast::TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = factor
    else {
        return None;
    };
    let [first, schema, view] = name.0.as_slice() else {
        return None;
    };
    let (first, schema, view) = (first.as_ident()?, schema.as_ident()?, view.as_ident()?);
    if !(first.value.eq_ignore_ascii_case("system") || first.value.eq_ignore_ascii_case(catalog))
        || !schema.value.eq_ignore_ascii_case("information_schema")
    {
        return None;
    }
    let sql = view_sql(&view.value, catalog)?;
    // Constant text (tested below): it always parses.
    let query = Parser::new(&SparkDialect)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .ok()?;
    Some(ast::TableFactor::Derived {
        lateral: false,
        subquery: query,
        alias: Some(alias.clone().unwrap_or_else(|| ast::TableAlias {
            explicit: true,
            name: ast::Ident::new(view.value.to_ascii_lowercase()),
            columns: vec![],
            at: None,
        })),
        sample: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_parses() {
        for v in [
            "catalogs",
            "schemata",
            "tables",
            "views",
            "columns",
            "table_constraints",
            "key_column_usage",
        ] {
            let sql = view_sql(v, "it's").unwrap();
            Parser::new(&SparkDialect)
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
                .unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        assert!(view_sql("routines", "sluice").is_none());
    }
}
