//! `pg_catalog` and `information_schema`: real tables that DataFusion queries like any other,
//! so the catalog SQL of psql, PgJDBC, psqlODBC, Npgsql, SQLAlchemy and asyncpg runs as
//! written — joins, CTEs, window functions, regex — with no matching of query texts.
//!
//! ```text
//!  data/*.tsv (from a real PostgreSQL 15, see extract.py)
//!     ├─ columns of every catalog table, exactly as PostgreSQL has them
//!     └─ built-in rows: pg_type, pg_proc, pg_range, pg_am, pg_cast, pg_operator, …
//!  + sluice's catalog (schemas, tables, columns)  ──► pg_namespace, pg_class, pg_attribute,
//!                                                      information_schema.*
//!  + the session (user, database, settings)       ──► pg_database, pg_roles, pg_settings
//! ```
//!
//! `datafusion-pg-catalog` was evaluated first (docs/DECISIONS.md): it resolves against
//! DataFusion 55 but assigns OIDs in scan order (so RowDescription could not name a table's
//! OID), ships a query-text blacklist, and pins a second pgwire. This module keeps OIDs
//! stable (PostgreSQL's own for built-in objects, a hash of the name for sluice's).

pub mod datetime;
pub mod functions;
mod rounding;
pub mod subquery;
mod table;
pub mod types;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::kernels::boolean::and;
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider, Session};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::QueryError;
use crate::session::{Access, SessionInfo};
pub use table::parse_array_literal;
use table::Rows;
use types::{field_type_oid, format_type, oids, type_len, type_modifier};

/// The PostgreSQL version sluice reports; its catalog layout is this version's
/// (`data/VERSION`), so clients that pick their catalog SQL by version pick the right one.
pub const SERVER_VERSION: &str = "15.20";
pub const SERVER_VERSION_NUM: &str = "150020";

pub const PG_CATALOG: &str = "pg_catalog";
pub const INFORMATION_SCHEMA: &str = "information_schema";
/// Schemas whose tables the gateway answers itself.
pub const SYSTEM_SCHEMAS: [&str; 2] = [PG_CATALOG, INFORMATION_SCHEMA];

pub(crate) const PG_CATALOG_OID: u32 = 11;
const PG_TOAST_OID: u32 = 99;
const PUBLIC_OID: u32 = 2200;
/// information_schema's OID in the PostgreSQL the data was extracted from.
const INFORMATION_SCHEMA_OID: u32 = 13207;
/// The role that owns every object (PostgreSQL's bootstrap superuser OID).
pub const OWNER_OID: u32 = 10;
pub const OWNER_NAME: &str = "sluice";
const DATABASE_OID: u32 = 16384;
const HEAP_AM_OID: u32 = 2;
const BTREE_AM_OID: u32 = 403;
const DEFAULT_COLLATION_OID: u32 = 100;
/// The "C" collation.
const C_COLLATION_OID: u32 = 950;
const FIRST_USER_OID: u32 = 16385;

macro_rules! data {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("data/", $name, ".tsv")))),*]
    };
}

/// Every catalog table, by file name (`information_schema.x` lives in that schema).
const DATA: &[(&str, &str)] = data!(
    "pg_type",
    "pg_proc",
    "pg_range",
    "pg_am",
    "pg_collation",
    "pg_tablespace",
    "pg_extension",
    "pg_language",
    "pg_cast",
    "pg_operator",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_settings",
    "pg_cursors",
    "pg_conversion",
    "pg_ts_config",
    "pg_ts_dict",
    "pg_ts_parser",
    "pg_ts_template",
    "pg_seclabel",
    "pg_seclabels",
    "pg_db_role_setting",
    "pg_subscription",
    "pg_user_mappings",
    "pg_prepared_xacts",
    "pg_description",
    "pg_index",
    "pg_constraint",
    "pg_attrdef",
    "pg_inherits",
    "pg_sequence",
    "pg_enum",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_event_trigger",
    "pg_shdescription",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_auth_members",
    "pg_stat_user_tables",
    "pg_opclass",
    "pg_foreign_server",
    "pg_foreign_data_wrapper",
    "pg_user_mapping",
    "information_schema.schemata",
    "information_schema.tables",
    "information_schema.columns",
    "information_schema.views",
    "information_schema.table_constraints",
    "information_schema.key_column_usage",
    "information_schema.referential_constraints",
    "information_schema.constraint_column_usage",
    "pg_policies",
    "pg_stat_activity",
    "pg_opfamily",
    "pg_available_extensions",
    "pg_locks",
    "pg_default_acl",
    "pg_stat_all_tables",
    "pg_authid",
    "pg_timezone_names",
    "pg_replication_slots",
    "pg_stat_gssapi",
    "information_schema.character_sets",
    "pg_aggregate",
    "pg_amop",
    "pg_amproc",
    "pg_init_privs",
    "pg_ts_config_map",
    "pg_largeobject",
    "pg_largeobject_metadata",
    "pg_parameter_acl",
    "pg_replication_origin",
    "pg_shdepend",
    "pg_shseclabel",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_subscription_rel",
    "pg_transform",
);
const RELATIONS: &str = include_str!("data/relations.tsv");
const KEYWORDS: &str = include_str!("data/pg_get_keywords.tsv");

/// Whether `word` is a keyword an identifier must be quoted to be (any category but
/// unreserved), as `quote_ident` and `format('%I')` decide: `quote_ident('default')` is
/// `"default"`.
pub(crate) fn is_reserved_keyword(word: &str) -> bool {
    static RESERVED: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    RESERVED
        .get_or_init(|| {
            KEYWORDS
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let mut fields = line.split('\t');
                    let word = fields.next()?;
                    (fields.next()? != "U").then_some(word)
                })
                .collect()
        })
        .contains(word)
}

/// `pg_get_keywords()`: the SQL keywords of the PostgreSQL the catalog data was extracted
/// from (PgJDBC's `getSQLKeywords` and SQL editors' highlighting read them).
#[derive(Debug)]
pub struct GetKeywords;

impl datafusion::catalog::TableFunctionImpl for GetKeywords {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(datafusion::error::DataFusionError::Plan(
                "pg_get_keywords() takes no arguments".into(),
            ));
        }
        let batch = Rows::from_tsv(KEYWORDS)
            .and_then(|rows| rows.to_batch())
            .map_err(|e| datafusion::error::DataFusionError::Internal(e.message))?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    }
}

/// `regexp_split_to_table(string, pattern [, flags])` in FROM: one row per piece, in a
/// column named after the function (an alias names it too, see `compat`). Its arguments
/// must be constants here; over a column, call it in the select list.
#[derive(Debug)]
pub struct RegexpSplitToTable;

impl datafusion::catalog::TableFunctionImpl for RegexpSplitToTable {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        use datafusion::common::ScalarValue;
        let plan_error = |m: &str| datafusion::error::DataFusionError::Plan(m.to_string());
        let mut texts = Vec::new();
        for expr in args.exprs() {
            match expr {
                Expr::Literal(
                    ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v),
                    _,
                ) => texts.push(v.clone()),
                Expr::Literal(v, _) if v.is_null() => texts.push(None),
                _ => {
                    return Err(plan_error(
                        "regexp_split_to_table in FROM takes text constants; over a column, \
                         call it in the select list",
                    ))
                }
            }
        }
        let pieces = match texts.as_slice() {
            [Some(s), Some(p)] => functions::regexp_split(s, p, None),
            [Some(s), Some(p), flags] => functions::regexp_split(s, p, flags.as_deref()),
            [_, _] | [_, _, _] => Ok(Vec::new()),
            _ => return Err(plan_error("regexp_split_to_table takes 2 or 3 arguments")),
        }
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("regexp_split_to_table", DataType::Utf8, true),
        ]));
        let column = datafusion::arrow::array::StringArray::from_iter_values(pieces);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// A relation as the catalog shows it.
#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    pub namespace: u32,
    pub schema: String,
    pub name: String,
    /// `r` table, `v` view.
    pub kind: char,
    pub rowtype: u32,
    pub columns: Vec<Column>,
    /// Rows and bytes of a data table, where its files say them.
    pub size: crate::catalog::TableSize,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
}

/// The unique index PostgreSQL shows for a primary key.
#[derive(Debug, Clone)]
pub struct Index {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    pub relation: u32,
    /// Attribute numbers of the table's key columns (from 1).
    pub columns: Vec<usize>,
}

/// An informational key as `pg_constraint` shows it.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    /// `p` primary key, `f` foreign key.
    pub kind: char,
    pub relation: u32,
    pub columns: Vec<usize>,
    /// The primary key's index (for a foreign key: the referenced primary key's).
    pub index: u32,
    /// A foreign key's referenced relation and its columns.
    pub referenced: Option<(u32, Vec<usize>)>,
}

/// Names and OIDs, for the functions and casts that translate between them.
#[derive(Debug, Default)]
pub struct Names {
    /// Comments on built-in objects (pg_description): (object OID, catalog OID,
    /// sub-id) → text, for `obj_description` and `col_description`.
    pub descriptions: HashMap<(u32, u32, i32), String>,
    pub namespaces: BTreeMap<u32, String>,
    pub relations: Vec<Relation>,
    /// type OID → (namespace OID, name)
    pub types: HashMap<u32, (u32, String)>,
    pub type_by_name: HashMap<String, u32>,
    /// element type OID → its array type OID
    pub array_types: HashMap<u32, u32>,
    /// proc OID → (name, result type OID, argument type OIDs, returns a set)
    pub procs: HashMap<u32, Proc>,
    pub proc_by_name: HashMap<String, u32>,
    /// Informational keys of sluice's tables, and the indexes of their primary keys.
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
}

#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub result: u32,
    pub args: Vec<u32>,
    pub returns_set: bool,
}

impl Names {
    pub fn relation(&self, oid: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.oid == oid)
    }

    pub fn constraint(&self, oid: u32) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.oid == oid)
    }

    pub fn index(&self, oid: u32) -> Option<&Index> {
        self.indexes.iter().find(|i| i.oid == oid)
    }

    /// The names of a relation's columns by attribute number (from 1).
    pub fn column_names(&self, relation: u32, attnums: &[usize]) -> Vec<String> {
        let columns = self.relation(relation).map(|r| r.columns.as_slice());
        attnums
            .iter()
            .map(|n| {
                columns
                    .and_then(|c| c.get(n.wrapping_sub(1)))
                    .map_or_else(|| n.to_string(), |c| c.name.clone())
            })
            .collect()
    }

    /// `schema.table` or `table` (searched in `search_path` order) → OID; indexes too.
    pub fn relation_oid(&self, name: &str, search_path: &[String]) -> Option<u32> {
        let find = |schema: &str, name: &str| {
            self.relations
                .iter()
                .find(|r| r.schema == schema && r.name == name)
                .map(|r| r.oid)
                .or_else(|| {
                    self.indexes
                        .iter()
                        .find(|i| {
                            i.name == name
                                && self.namespaces.get(&i.namespace).map(String::as_str)
                                    == Some(schema)
                        })
                        .map(|i| i.oid)
                })
        };
        let parts = split_qualified(name);
        match parts.as_slice() {
            [schema, table] => find(schema, table),
            [table] => std::iter::once(PG_CATALOG.to_string())
                .chain(search_path.iter().cloned())
                .find_map(|schema| find(&schema, table)),
            _ => None,
        }
    }

    /// (schema, name) of a relation or an index.
    pub fn relation_name(&self, oid: u32) -> Option<(&str, &str)> {
        match self.relation(oid) {
            Some(r) => Some((&r.schema, &r.name)),
            None => self
                .index(oid)
                .and_then(|i| Some((self.namespaces.get(&i.namespace)?.as_str(), i.name.as_str()))),
        }
    }

    /// A type name as `::regtype` and `to_regtype` accept it (`integer`, `int4`,
    /// `character varying`, `text[]`, `pg_catalog.int8`, …).
    pub fn type_oid(&self, name: &str) -> Option<u32> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        if let Some(element) = name.strip_suffix("[]") {
            return self.array_types.get(&self.type_oid(element)?).copied();
        }
        let canonical = match name {
            "integer" | "int" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "real" => "float4",
            "double precision" | "float" => "float8",
            "boolean" => "bool",
            "character varying" => "varchar",
            "character" | "char" => "bpchar",
            "\"char\"" => "char",
            "decimal" => "numeric",
            "timestamp without time zone" | "timestamp" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            "time with time zone" => "timetz",
            other => other,
        };
        if let Some(oid) = self.type_by_name.get(canonical) {
            return Some(*oid);
        }
        // `schema.type`: a table's row type (or its array), `tpch.nation`.
        let (schema, type_name) = canonical.split_once('.')?;
        let (schema, type_name) = (schema.trim_matches('"'), type_name.trim_matches('"'));
        let namespace = self
            .namespaces
            .iter()
            .find(|(_, n)| n.as_str() == schema)
            .map(|(oid, _)| *oid)?;
        self.types
            .iter()
            .find(|(_, (ns, n))| *ns == namespace && n == type_name)
            .map(|(oid, _)| *oid)
    }

    /// The display name of a type (`format_type(oid, NULL)`).
    pub fn type_name(&self, oid: u32, typmod: i32) -> Option<String> {
        format_type(oid, typmod).or_else(|| {
            self.types
                .get(&oid)
                .map(|(ns, name)| match name.strip_prefix('_') {
                    // `_bpchar` is `character[]`: the element's display name.
                    Some(element) if *ns == PG_CATALOG_OID => {
                        let element = self
                            .types
                            .iter()
                            .find(|(_, (ns, name))| *ns == PG_CATALOG_OID && name == element)
                            .and_then(|(oid, _)| format_type(*oid, -1))
                            .unwrap_or_else(|| element.to_string());
                        format!("{element}[]")
                    }
                    _ => name.clone(),
                })
        })
    }
}

fn split_qualified(name: &str) -> Vec<String> {
    name.split('.')
        .map(|p| {
            let p = p.trim();
            match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.to_string(),
                None => p.to_ascii_lowercase(),
            }
        })
        .collect()
}

/// pg_catalog and information_schema for one catalog of data tables.
#[derive(Debug)]
pub struct PgCatalog {
    pub names: Arc<Names>,
    pub pg_catalog: Arc<dyn SchemaProvider>,
    pub information_schema: Arc<dyn SchemaProvider>,
}

impl PgCatalog {
    /// Build both schemas over the data schemas of `data` (the `sluice` catalog).
    pub async fn new(
        data: &dyn CatalogProvider,
        sizes: &crate::catalog::TableSizes,
    ) -> Result<Self, QueryError> {
        let mut files: HashMap<&str, Rows> = HashMap::new();
        for (name, text) in DATA {
            files.insert(name, Rows::from_tsv(text)?);
        }
        let names = Arc::new(Self::names(data, &files, sizes).await?);
        let pg_catalog = MemorySchemaProvider::new();
        let information_schema = MemorySchemaProvider::new();

        let fixed = |rows: &Rows| -> Result<Arc<dyn TableProvider>, QueryError> {
            Ok(Arc::new(CatalogTable {
                schema: rows.columns.schema.clone(),
                rows: TableRows::Fixed(rows.to_batch()?, None),
            }))
        };
        // Rows about a user table show only to sessions that may read the table.
        let filtered = |rows: &Rows, key: RowKey| -> Result<Arc<dyn TableProvider>, QueryError> {
            let column = |name: &str| {
                rows.columns
                    .schema
                    .index_of(name)
                    .map_err(|e| QueryError::internal(format!("catalog data: {e}")))
            };
            let key = match key {
                RowKey::Relation(c) => Key::Relation(column(c)?),
                RowKey::Relations(a, b) => Key::Relations(column(a)?, column(b)?),
                RowKey::Namespace(c) => Key::Namespace(column(c)?),
                RowKey::Name(schema, table) => Key::Name(column(schema)?, column(table)?),
                RowKey::Type(relid, elem) => Key::Type(column(relid)?, column(elem)?),
            };
            Ok(Arc::new(CatalogTable {
                schema: rows.columns.schema.clone(),
                rows: TableRows::Fixed(rows.to_batch()?, Some((key, names.clone()))),
            }))
        };
        let take = |files: &mut HashMap<&str, Rows>, name: &str| -> Result<Rows, QueryError> {
            files
                .remove(name)
                .ok_or_else(|| QueryError::internal(format!("no catalog data for {name}")))
        };

        // Tables whose rows come from the data catalog.
        let namespace = fill_namespaces(take(&mut files, "pg_namespace")?, &names);
        let class = fill_classes(take(&mut files, "pg_class")?, &names);
        let attribute = fill_attributes(take(&mut files, "pg_attribute")?, &names);
        let tables = fill_pg_tables(take(&mut files, "pg_tables")?, &names, 'r');
        let views = fill_pg_tables(take(&mut files, "pg_views")?, &names, 'v');
        let stats = fill_stat_tables(take(&mut files, "pg_stat_user_tables")?, &names);
        let all_stats = fill_stat_tables(take(&mut files, "pg_stat_all_tables")?, &names);
        let indexes = fill_indexes(take(&mut files, "pg_index")?, &names);
        let constraints = fill_constraints(take(&mut files, "pg_constraint")?, &names);
        let depend = fill_depend(take(&mut files, "pg_depend")?, &names);
        for (name, rows, key) in [
            ("pg_namespace", namespace, RowKey::Namespace("oid")),
            ("pg_class", class, RowKey::Relation("oid")),
            ("pg_attribute", attribute, RowKey::Relation("attrelid")),
            ("pg_tables", tables, RowKey::Name("schemaname", "tablename")),
            ("pg_views", views, RowKey::Name("schemaname", "viewname")),
            ("pg_stat_user_tables", stats, RowKey::Relation("relid")),
            ("pg_stat_all_tables", all_stats, RowKey::Relation("relid")),
            ("pg_index", indexes, RowKey::Relation("indrelid")),
            (
                "pg_constraint",
                constraints,
                RowKey::Relations("conrelid", "confrelid"),
            ),
            ("pg_depend", depend, RowKey::Relations("objid", "refobjid")),
        ] {
            register(&pg_catalog, name, filtered(&rows, key)?)?;
        }

        // Tables whose rows depend on the session.
        type Fill = fn(&str, &mut Rows, &SessionInfo, &Names);
        let per_session: [(&MemorySchemaProvider, &str, &str, Fill); 17] = [
            (
                &pg_catalog,
                "pg_database",
                "pg_database",
                fill_session_table,
            ),
            (&pg_catalog, "pg_roles", "pg_roles", fill_session_table),
            (&pg_catalog, "pg_authid", "pg_authid", fill_session_table),
            (
                &pg_catalog,
                "pg_stat_gssapi",
                "pg_stat_gssapi",
                fill_session_table,
            ),
            (
                &information_schema,
                "character_sets",
                "information_schema.character_sets",
                fill_information_schema,
            ),
            (&pg_catalog, "pg_cursors", "pg_cursors", fill_session_table),
            (
                &pg_catalog,
                "pg_stat_activity",
                "pg_stat_activity",
                fill_session_table,
            ),
            (&pg_catalog, "pg_user", "pg_user", fill_session_table),
            (
                &pg_catalog,
                "pg_settings",
                "pg_settings",
                fill_session_table,
            ),
            (
                &information_schema,
                "schemata",
                "information_schema.schemata",
                fill_information_schema,
            ),
            (
                &information_schema,
                "tables",
                "information_schema.tables",
                fill_information_schema,
            ),
            (
                &information_schema,
                "columns",
                "information_schema.columns",
                fill_information_schema,
            ),
            (
                &information_schema,
                "views",
                "information_schema.views",
                fill_information_schema,
            ),
            (
                &information_schema,
                "table_constraints",
                "information_schema.table_constraints",
                fill_information_schema,
            ),
            (
                &information_schema,
                "key_column_usage",
                "information_schema.key_column_usage",
                fill_information_schema,
            ),
            (
                &information_schema,
                "referential_constraints",
                "information_schema.referential_constraints",
                fill_information_schema,
            ),
            (
                &information_schema,
                "constraint_column_usage",
                "information_schema.constraint_column_usage",
                fill_information_schema,
            ),
        ];
        for (schema_provider, name, file, fill) in per_session {
            let empty = take(&mut files, file)?;
            let names = names.clone();
            let table = name.to_string();
            let schema = empty.columns.schema.clone();
            let rows = TableRows::PerSession(Arc::new(move |session: &SessionInfo| {
                let mut rows = empty.empty_like();
                fill(&table, &mut rows, session, &names);
                rows.to_batch()
            }));
            register(
                schema_provider,
                name,
                Arc::new(CatalogTable { schema, rows }),
            )?;
        }
        let types = fill_row_types(take(&mut files, "pg_type")?, &names);
        register(
            &pg_catalog,
            "pg_type",
            filtered(&types, RowKey::Type("typrelid", "typelem"))?,
        )?;
        // The rest: PostgreSQL's built-in rows (or none).
        for (name, rows) in files {
            register(&pg_catalog, name, fixed(&rows)?)?;
        }
        Ok(Self {
            names,
            pg_catalog: Arc::new(pg_catalog),
            information_schema: Arc::new(information_schema),
        })
    }

    // Parallel columns of the data files are read by row index.
    #[allow(clippy::needless_range_loop)]
    async fn names(
        data: &dyn CatalogProvider,
        files: &HashMap<&str, Rows>,
        sizes: &crate::catalog::TableSizes,
    ) -> Result<Names, QueryError> {
        let mut names = Names::default();
        names.namespaces.insert(PG_CATALOG_OID, PG_CATALOG.into());
        names.namespaces.insert(PG_TOAST_OID, "pg_toast".into());
        names
            .namespaces
            .insert(INFORMATION_SCHEMA_OID, INFORMATION_SCHEMA.into());
        names.namespaces.insert(PUBLIC_OID, "public".into());

        // Built-in types and functions.
        let types = &files["pg_type"];
        let cols = ["oid", "typname", "typnamespace", "typarray"].map(|c| types.column(c));
        for i in 0..cols[0].len() {
            if let (Some(oid), Some(name), Some(ns)) =
                (num(cols[0][i]), cols[1][i], num(cols[2][i]))
            {
                names.types.insert(oid, (ns, name.to_string()));
                names.type_by_name.insert(name.to_string(), oid);
                if let Some(array) = num(cols[3][i]).filter(|a| *a != 0) {
                    names.array_types.insert(oid, array);
                }
            }
        }
        let comments = &files["pg_description"];
        let cols = ["objoid", "classoid", "objsubid", "description"].map(|c| comments.column(c));
        for i in 0..cols[0].len() {
            if let (Some(object), Some(class), Some(sub), Some(text)) = (
                num(cols[0][i]),
                num(cols[1][i]),
                cols[2][i].and_then(|v| v.parse().ok()),
                cols[3][i],
            ) {
                names
                    .descriptions
                    .insert((object, class, sub), text.to_string());
            }
        }
        let procs = &files["pg_proc"];
        let cols =
            ["oid", "proname", "prorettype", "proargtypes", "proretset"].map(|c| procs.column(c));
        for i in 0..cols[0].len() {
            let (Some(oid), Some(name)) = (num(cols[0][i]), cols[1][i]) else {
                continue;
            };
            let args = cols[3][i]
                .map(parse_array_literal)
                .transpose()?
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| a.and_then(|a| a.parse().ok()))
                .collect();
            names.proc_by_name.entry(name.to_string()).or_insert(oid);
            names.procs.insert(
                oid,
                Proc {
                    name: name.to_string(),
                    result: num(cols[2][i]).unwrap_or(0),
                    args,
                    returns_set: cols[4][i] == Some("true"),
                },
            );
        }

        // The catalog's own relations, with PostgreSQL's OIDs.
        let relations = Rows::from_tsv(RELATIONS)?;
        let rel_cols =
            ["oid", "nspname", "relname", "relkind", "reltype"].map(|c| relations.column(c));
        for i in 0..rel_cols[0].len() {
            let (Some(oid), Some(schema), Some(name)) =
                (num(rel_cols[0][i]), rel_cols[1][i], rel_cols[2][i])
            else {
                continue;
            };
            let file = if schema == PG_CATALOG {
                name.to_string()
            } else {
                format!("{schema}.{name}")
            };
            let Some(rows) = files.get(file.as_str()) else {
                continue;
            };
            let columns = rows
                .columns
                .schema
                .fields()
                .iter()
                .zip(&rows.columns.not_null)
                .map(|(f, not_null)| Column {
                    name: f.name().clone(),
                    type_oid: field_type_oid(f),
                    typmod: -1,
                    not_null: *not_null,
                })
                .collect();
            names.relations.push(Relation {
                oid,
                namespace: if schema == PG_CATALOG {
                    PG_CATALOG_OID
                } else {
                    INFORMATION_SCHEMA_OID
                },
                schema: schema.to_string(),
                name: name.to_string(),
                kind: rel_cols[3][i].and_then(|k| k.chars().next()).unwrap_or('r'),
                rowtype: num(rel_cols[4][i]).unwrap_or(0),
                columns,
                size: Default::default(),
            });
        }

        // sluice's schemas and tables, in name order so OIDs are assigned deterministically.
        let mut used: HashSet<u32> = names.namespaces.keys().copied().collect();
        used.extend(names.relations.iter().map(|r| r.oid));
        let mut schemas = data.schema_names();
        schemas.sort();
        let mut keyed = Vec::new();
        for schema_name in schemas {
            if SYSTEM_SCHEMAS.contains(&schema_name.as_str()) {
                continue;
            }
            let Some(schema) = data.schema(&schema_name) else {
                continue;
            };
            let ns = if schema_name == "public" {
                PUBLIC_OID
            } else {
                let oid = stable_oid(&format!("namespace {schema_name}"), &mut used);
                names.namespaces.insert(oid, schema_name.clone());
                oid
            };
            let catalog_schema = schema.downcast_ref::<crate::catalog::CatalogSchema>();
            let mut tables = schema.table_names();
            tables.sort();
            for table_name in tables {
                let Some(table) = schema.table(&table_name).await.map_err(QueryError::from)? else {
                    continue;
                };
                let oid = stable_oid(&format!("relation {schema_name}.{table_name}"), &mut used);
                let columns = table
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Column {
                        name: f.name().clone(),
                        type_oid: field_type_oid(f),
                        typmod: type_modifier(f.data_type()),
                        not_null: !f.is_nullable(),
                    })
                    .collect();
                // Every table has a row type and an array of it, as in PostgreSQL.
                let rowtype = stable_oid(&format!("type {schema_name}.{table_name}"), &mut used);
                let array = stable_oid(&format!("type {schema_name}._{table_name}"), &mut used);
                names.types.insert(rowtype, (ns, table_name.clone()));
                names.types.insert(array, (ns, format!("_{table_name}")));
                names.array_types.insert(rowtype, array);
                if let Some(keys) = catalog_schema.and_then(|c| c.keys(&table_name)) {
                    keyed.push((oid, keys));
                }
                let size = sizes
                    .get(&format!("{schema_name}.{table_name}"))
                    .copied()
                    .unwrap_or_default();
                names.relations.push(Relation {
                    oid,
                    namespace: ns,
                    schema: schema_name.clone(),
                    name: table_name,
                    kind: if table.table_type() == TableType::View {
                        'v'
                    } else {
                        'r'
                    },
                    rowtype,
                    columns,
                    size,
                });
            }
        }
        add_keys(&mut names, &keyed, &mut used);
        Ok(names)
    }
}

/// pg_constraint's and pg_index's view of the tables' informational keys: primary keys
/// first (a foreign key names the index of the primary key it references).
fn add_keys(
    names: &mut Names,
    keyed: &[(u32, crate::catalog::TableKeys)],
    used: &mut HashSet<u32>,
) {
    let attnums = |names: &Names, relation: u32, columns: &[String]| -> Option<Vec<usize>> {
        let r = names.relation(relation)?;
        columns
            .iter()
            .map(|c| {
                r.columns
                    .iter()
                    .position(|col| &col.name == c)
                    .map(|i| i + 1)
            })
            .collect()
    };
    // A table's constraints get consecutive OIDs in the order they are declared (primary
    // key first), as PostgreSQL numbers them when it creates them: psqlODBC lists foreign
    // keys by OID.
    let mut constraint_oids: HashMap<u32, u32> = HashMap::new();
    for (relation, keys) in keyed {
        let count = keys.primary_key.iter().count() + keys.foreign_keys.len();
        let Some(r) = names.relation(*relation) else {
            continue;
        };
        let first = stable_oid_block(&format!("constraints {}.{}", r.schema, r.name), count, used);
        constraint_oids.insert(*relation, first);
    }
    for (relation, keys) in keyed {
        let Some(pk) = &keys.primary_key else {
            continue;
        };
        let (Some(r), Some(columns)) = (
            names.relation(*relation),
            attnums(names, *relation, &pk.columns),
        ) else {
            continue;
        };
        let (schema, namespace) = (r.schema.clone(), r.namespace);
        let index = stable_oid(&format!("index {schema}.{}", pk.name), used);
        let oid = constraint_oids[relation];
        names.indexes.push(Index {
            oid: index,
            name: pk.name.clone(),
            namespace,
            relation: *relation,
            columns: columns.clone(),
        });
        names.constraints.push(Constraint {
            oid,
            name: pk.name.clone(),
            namespace,
            kind: 'p',
            relation: *relation,
            columns,
            index,
            referenced: None,
        });
    }
    for (relation, keys) in keyed {
        let mut next = constraint_oids.get(relation).copied().unwrap_or(0)
            + keys.primary_key.iter().count() as u32;
        for fk in &keys.foreign_keys {
            let oid = next;
            next += 1;
            let Some(r) = names.relation(*relation) else {
                continue;
            };
            let namespace = r.namespace;
            let Some(target) = names
                .relations
                .iter()
                .find(|t| t.schema == fk.schema && t.name == fk.table)
                .map(|t| t.oid)
            else {
                continue;
            };
            let Some(index) = names
                .indexes
                .iter()
                .find(|i| i.relation == target)
                .map(|i| i.oid)
            else {
                continue;
            };
            let (Some(columns), Some(ref_columns)) = (
                attnums(names, *relation, &fk.columns),
                attnums(names, target, &fk.ref_columns),
            ) else {
                continue;
            };
            names.constraints.push(Constraint {
                oid,
                name: fk.name.clone(),
                namespace,
                kind: 'f',
                relation: *relation,
                columns,
                index,
                referenced: Some((target, ref_columns)),
            });
        }
    }
}

fn num(v: Option<&str>) -> Option<u32> {
    v.and_then(|v| v.parse().ok())
}

/// An OID for a named object: a hash of its name, so it stays the same across restarts
/// and when other tables come and go (collisions step to the next free value).
fn stable_oid(key: &str, used: &mut HashSet<u32>) -> u32 {
    // FNV-1a, 32 bit.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let span = (i32::MAX as u32) - FIRST_USER_OID;
    let mut oid = FIRST_USER_OID + hash % span;
    while !used.insert(oid) {
        oid = FIRST_USER_OID + (oid - FIRST_USER_OID + 1) % span;
    }
    oid
}

/// `count` consecutive free OIDs for a named group of objects, the first a hash of the
/// name (stable, like [`stable_oid`]).
fn stable_oid_block(key: &str, count: usize, used: &mut HashSet<u32>) -> u32 {
    let mut probe = HashSet::new();
    let mut first = stable_oid(key, &mut probe);
    let last = (i32::MAX as u32) - 1;
    loop {
        let end = first.saturating_add(count as u32);
        if end <= last && (first..end).all(|o| !used.contains(&o)) {
            used.extend(first..end);
            return first;
        }
        first = if end > last {
            FIRST_USER_OID
        } else {
            first + 1
        };
    }
}

fn register(
    schema: &MemorySchemaProvider,
    name: &str,
    table: Arc<dyn TableProvider>,
) -> Result<(), QueryError> {
    schema
        .register_table(name.to_string(), table)
        .map(|_| ())
        .map_err(QueryError::from)
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn fill_namespaces(mut rows: Rows, names: &Names) -> Rows {
    for (oid, name) in &names.namespaces {
        // PostgreSQL's built-in schemas carry its default privileges: their owner may use
        // and create in them, everyone may use them.
        let builtin = [PG_CATALOG, INFORMATION_SCHEMA, "public"].contains(&name.as_str());
        // `public` belongs to pg_database_owner (PostgreSQL 15), the others to the owner.
        let (owner, owner_name) = if name == "public" {
            (DATABASE_OWNER_OID, "pg_database_owner")
        } else {
            (OWNER_OID, OWNER_NAME)
        };
        let acl = builtin.then(|| format!("{{{owner_name}=UC/{owner_name},=U/{owner_name}}}"));
        rows.push(&[
            ("oid", s(oid)),
            ("nspname", s(name)),
            ("nspowner", s(owner)),
            ("nspacl", acl),
        ]);
    }
    rows
}

/// The row type of each of sluice's tables, and its array type (PostgreSQL's functions
/// for records and arrays).
fn fill_row_types(mut rows: Rows, names: &Names) -> Rows {
    for r in user_relations(names) {
        let array = names.array_types.get(&r.rowtype).copied().unwrap_or(0);
        let common = |name: String, oid: u32| {
            vec![
                ("oid", s(oid)),
                ("typname", s(name)),
                ("typnamespace", s(r.namespace)),
                ("typowner", s(OWNER_OID)),
                ("typlen", s(-1)),
                ("typisdefined", s(true)),
                ("typdelim", s(',')),
                ("typalign", s('d')),
                ("typstorage", s('x')),
                ("typtypmod", s(-1)),
            ]
        };
        let mut row = common(r.name.clone(), r.rowtype);
        row.extend([
            ("typtype", s('c')),
            ("typcategory", s('C')),
            ("typrelid", s(r.oid)),
            ("typarray", s(array)),
            ("typinput", s(2290)),
            ("typoutput", s(2291)),
            ("typreceive", s(2402)),
            ("typsend", s(2403)),
        ]);
        rows.push(&row);
        let mut row = common(format!("_{}", r.name), array);
        row.extend([
            ("typtype", s('b')),
            ("typcategory", s('A')),
            ("typsubscript", s(6179)),
            ("typelem", s(r.rowtype)),
            ("typinput", s(750)),
            ("typoutput", s(751)),
            ("typreceive", s(2400)),
            ("typsend", s(2401)),
            ("typanalyze", s(3816)),
        ]);
        rows.push(&row);
    }
    rows
}

fn fill_classes(mut rows: Rows, names: &Names) -> Rows {
    for r in &names.relations {
        // PostgreSQL's own catalog tables have indexes and no replica identity.
        let system_table = r.schema == PG_CATALOG && r.kind == 'r';
        let indexed = system_table || names.indexes.iter().any(|i| i.relation == r.oid);
        rows.push(&[
            ("oid", s(r.oid)),
            ("relname", s(&r.name)),
            ("relnamespace", s(r.namespace)),
            ("reltype", s(r.rowtype)),
            ("relowner", s(OWNER_OID)),
            ("relam", s(if r.kind == 'r' { HEAP_AM_OID } else { 0 })),
            ("relfilenode", s(if r.kind == 'r' { r.oid } else { 0 })),
            // Rows and 8 kB pages as the table's files say them; -1 when they do not
            // (PostgreSQL's "never analyzed").
            ("reltuples", s(r.size.rows.map_or(-1.0, |n| n as f64))),
            ("relpages", s(r.size.bytes.map_or(0, |b| b.div_ceil(8192)))),
            ("relpersistence", s('p')),
            ("relkind", s(r.kind)),
            ("relnatts", s(r.columns.len())),
            ("relispopulated", s('t')),
            (
                "relreplident",
                s(if r.kind == 'r' && !system_table {
                    'd'
                } else {
                    'n'
                }),
            ),
            ("relhasindex", s(indexed)),
            // PostgreSQL enforces a foreign key with triggers on both tables; sluice's keys
            // are informational, so it has none (and pg_trigger stays empty).
            ("relhastriggers", s(false)),
        ]);
    }
    for i in &names.indexes {
        // A key's index has an entry per row of its table.
        let table_rows = names.relation(i.relation).and_then(|r| r.size.rows);
        rows.push(&[
            ("oid", s(i.oid)),
            ("relname", s(&i.name)),
            ("relnamespace", s(i.namespace)),
            ("reltype", s(0)),
            ("relowner", s(OWNER_OID)),
            ("relam", s(BTREE_AM_OID)),
            ("relfilenode", s(i.oid)),
            ("relpages", s(1)),
            ("reltuples", s(table_rows.map_or(-1.0, |n| n as f64))),
            ("relpersistence", s('p')),
            ("relkind", s('i')),
            ("relnatts", s(i.columns.len())),
            ("relispopulated", s('t')),
            ("relreplident", s('n')),
            ("relhasindex", s(false)),
            ("relhastriggers", s(false)),
        ]);
    }
    rows
}

/// The default btree operator class of a key column's type (pg_index.indclass).
fn btree_opclass(type_oid: u32) -> u32 {
    match type_oid {
        oids::INT2 => 1979,
        oids::INT4 => 1978,
        oids::INT8 => 3124,
        oids::FLOAT4 => 10012,
        oids::FLOAT8 => 3123,
        oids::NUMERIC => 3125,
        oids::DATE => 3122,
        oids::TIMESTAMP => 3128,
        oids::TIMESTAMPTZ => 3127,
        oids::BOOL => 10003,
        _ => 3126, // text_ops: text and varchar
    }
}

fn collation(type_oid: u32) -> u32 {
    if matches!(type_oid, oids::TEXT | oids::VARCHAR | 1009 | 1015) {
        DEFAULT_COLLATION_OID
    } else {
        0
    }
}

fn pg_array<T: ToString>(values: impl IntoIterator<Item = T>) -> Option<String> {
    let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    Some(format!("{{{}}}", items.join(",")))
}

fn fill_indexes(mut rows: Rows, names: &Names) -> Rows {
    for i in &names.indexes {
        let types: Vec<u32> = i
            .columns
            .iter()
            .map(|n| {
                names
                    .relation(i.relation)
                    .and_then(|r| r.columns.get(n - 1))
                    .map_or(0, |c| c.type_oid)
            })
            .collect();
        rows.push(&[
            ("indexrelid", s(i.oid)),
            ("indrelid", s(i.relation)),
            ("indnatts", s(i.columns.len())),
            ("indnkeyatts", s(i.columns.len())),
            ("indisunique", s(true)),
            ("indnullsnotdistinct", s(false)),
            ("indisprimary", s(true)),
            ("indisexclusion", s(false)),
            ("indimmediate", s(true)),
            ("indisclustered", s(false)),
            ("indisvalid", s(true)),
            ("indcheckxmin", s(false)),
            ("indisready", s(true)),
            ("indislive", s(true)),
            ("indisreplident", s(false)),
            ("indkey", pg_array(&i.columns)),
            (
                "indcollation",
                pg_array(types.iter().map(|t| collation(*t))),
            ),
            (
                "indclass",
                pg_array(types.iter().map(|t| btree_opclass(*t))),
            ),
            ("indoption", pg_array(i.columns.iter().map(|_| 0))),
        ]);
    }
    rows
}

fn fill_constraints(mut rows: Rows, names: &Names) -> Rows {
    for c in &names.constraints {
        let foreign = c.referenced.as_ref();
        // The equality operators of a foreign key's column pairs (int8 = int8: 410, …).
        let equality = foreign.map(|(target, ref_columns)| {
            let types = |relation: u32, columns: &[usize]| -> Vec<u32> {
                columns
                    .iter()
                    .map(|n| {
                        names
                            .relation(relation)
                            .and_then(|r| r.columns.get(n - 1))
                            .map_or(0, |c| c.type_oid)
                    })
                    .collect()
            };
            types(*target, ref_columns)
                .into_iter()
                .zip(types(c.relation, &c.columns))
                .map(|(a, b)| equality_operator(a, b))
                .collect::<Vec<_>>()
        });
        let fk_char = |v: char| if foreign.is_some() { s(v) } else { s(' ') };
        rows.push(&[
            ("oid", s(c.oid)),
            ("conname", s(&c.name)),
            ("connamespace", s(c.namespace)),
            ("contype", s(c.kind)),
            ("condeferrable", s(false)),
            ("condeferred", s(false)),
            ("convalidated", s(true)),
            ("conrelid", s(c.relation)),
            ("contypid", s(0)),
            ("conindid", s(c.index)),
            ("conparentid", s(0)),
            ("confrelid", s(foreign.map_or(0, |f| f.0))),
            ("confupdtype", fk_char('a')),
            ("confdeltype", fk_char('a')),
            ("confmatchtype", fk_char('s')),
            ("conislocal", s(true)),
            ("coninhcount", s(0)),
            ("connoinherit", s(true)),
            ("conkey", pg_array(&c.columns)),
            ("confkey", foreign.and_then(|f| pg_array(&f.1))),
            ("conpfeqop", equality.as_ref().and_then(|e| pg_array(e))),
            ("conppeqop", equality.as_ref().and_then(|e| pg_array(e))),
            ("conffeqop", equality.as_ref().and_then(|e| pg_array(e))),
        ]);
    }
    rows
}

/// The system catalogs' own OIDs, as pg_depend's and pg_description's `classid` name them.
pub(crate) mod classes {
    pub const PG_TYPE: u32 = 1247;
    pub const PG_PROC: u32 = 1255;
    pub const PG_CLASS: u32 = 1259;
    pub const PG_CONSTRAINT: u32 = 2606;
    pub const PG_LANGUAGE: u32 = 2612;
    pub const PG_NAMESPACE: u32 = 2615;
    pub const PG_EXTENSION: u32 = 3079;
}

/// The one extension, PL/pgSQL (pg_extension's row), and what it made: its language and
/// the language's call, inline and validator functions (pg_language's row, pg_proc's).
pub(crate) const PLPGSQL_EXTENSION: u32 = 13559;
pub(crate) const PLPGSQL_LANGUAGE: u32 = 13563;
const PLPGSQL_FUNCTIONS: [u32; 3] = [13560, 13561, 13562];

/// How the keys hang together, as PostgreSQL records it (DBD::Pg's foreign_key_info walks
/// these rows from a foreign key to the primary key it references): a key depends on its
/// table's columns (`a`), a primary key's index on the key (`i`), a foreign key on the
/// referenced index and columns (`n`); PL/pgSQL's members depend on the extension (`e`).
fn fill_depend(mut rows: Rows, names: &Names) -> Rows {
    use classes::*;
    let mut push =
        |classid: u32, objid: u32, refclassid: u32, refobjid: u32, sub: usize, kind: char| {
            rows.push(&[
                ("classid", s(classid)),
                ("objid", s(objid)),
                ("objsubid", s(0)),
                ("refclassid", s(refclassid)),
                ("refobjid", s(refobjid)),
                ("refobjsubid", s(sub)),
                ("deptype", s(kind)),
            ]);
        };
    // An extension's members depend on it (`e`): psql's `\dx+` lists them.
    for function in PLPGSQL_FUNCTIONS {
        push(PG_PROC, function, PG_EXTENSION, PLPGSQL_EXTENSION, 0, 'e');
    }
    push(
        PG_LANGUAGE,
        PLPGSQL_LANGUAGE,
        PG_EXTENSION,
        PLPGSQL_EXTENSION,
        0,
        'e',
    );
    for c in &names.constraints {
        for column in &c.columns {
            push(PG_CONSTRAINT, c.oid, PG_CLASS, c.relation, *column, 'a');
        }
        match &c.referenced {
            None => push(PG_CLASS, c.index, PG_CONSTRAINT, c.oid, 0, 'i'),
            Some((target, columns)) => {
                push(PG_CONSTRAINT, c.oid, PG_CLASS, c.index, 0, 'n');
                for column in columns {
                    push(PG_CONSTRAINT, c.oid, PG_CLASS, *target, *column, 'n');
                }
            }
        }
    }
    rows
}

/// The `=` operator between two key column types (PostgreSQL's pg_operator OIDs).
fn equality_operator(left: u32, right: u32) -> u32 {
    match (left, right) {
        (oids::INT8, oids::INT8) => 410,
        (oids::INT4, oids::INT4) => 96,
        (oids::INT2, oids::INT2) => 94,
        (oids::INT8, oids::INT4) => 416,
        (oids::INT4, oids::INT8) => 15,
        (oids::NUMERIC, oids::NUMERIC) => 1752,
        (oids::DATE, oids::DATE) => 1093,
        (oids::FLOAT8, oids::FLOAT8) => 670,
        (oids::TIMESTAMP, oids::TIMESTAMP) => 2060,
        (oids::BOOL, oids::BOOL) => 91,
        _ => 98, // text = text
    }
}

fn fill_attributes(mut rows: Rows, names: &Names) -> Rows {
    // An index's attributes are the key columns, numbered from 1, never NOT NULL.
    let index_relations: Vec<Relation> = names
        .indexes
        .iter()
        .filter_map(|i| {
            let table = names.relation(i.relation)?;
            Some(Relation {
                oid: i.oid,
                namespace: i.namespace,
                schema: table.schema.clone(),
                name: i.name.clone(),
                kind: 'i',
                rowtype: 0,
                size: Default::default(),
                columns: i
                    .columns
                    .iter()
                    .filter_map(|n| table.columns.get(n - 1))
                    .map(|c| Column {
                        not_null: false,
                        ..c.clone()
                    })
                    .collect(),
            })
        })
        .collect();
    for r in names.relations.iter().chain(&index_relations) {
        for (i, c) in r.columns.iter().enumerate() {
            // name (and its array) and pg_node_tree collate as C; text in a system
            // catalog table as C too (PostgreSQL's catalogs are created so), elsewhere by
            // the database's default.
            let system_table = r.schema == PG_CATALOG && r.kind == 'r';
            let collation = match c.type_oid {
                oids::NAME | 1003 | 194 => C_COLLATION_OID,
                oids::TEXT | oids::VARCHAR | 1009 | 1015 if system_table => C_COLLATION_OID,
                other => collation(other),
            };
            rows.push(&[
                ("attrelid", s(r.oid)),
                ("attname", s(&c.name)),
                ("atttypid", s(c.type_oid)),
                ("attstattarget", s(-1)),
                ("attlen", s(type_len(c.type_oid))),
                ("attnum", s(i + 1)),
                ("attcacheoff", s(-1)),
                ("atttypmod", s(c.typmod)),
                ("attbyval", s(matches!(type_len(c.type_oid), 1 | 2 | 4 | 8))),
                // The type's alignment (pg_type.typalign): 8-byte types double, int2
                // short, one-byte types and name char, the rest int.
                (
                    "attalign",
                    s(match type_len(c.type_oid) {
                        8 => 'd',
                        2 => 's',
                        1 | 64 => 'c',
                        _ => 'i',
                    }),
                ),
                (
                    "attstorage",
                    // numeric is stored compressed in line (`main`), as PostgreSQL does.
                    s(match type_len(c.type_oid) {
                        _ if c.type_oid == oids::NUMERIC => 'm',
                        len if len < 0 => 'x',
                        _ => 'p',
                    }),
                ),
                ("attcompression", s("")),
                ("attnotnull", s(c.not_null)),
                ("attidentity", s("")),
                ("attgenerated", s("")),
                ("attislocal", s(true)),
                ("attcollation", s(collation)),
            ]);
        }
        // A table's system columns, as PostgreSQL lists them (attnum < 0).
        if r.kind == 'r' {
            for (name, type_oid, attnum) in SYSTEM_COLUMNS {
                let tid = type_oid == TID_OID;
                rows.push(&[
                    ("attrelid", s(r.oid)),
                    ("attname", s(name)),
                    ("atttypid", s(type_oid)),
                    ("attstattarget", s(0)),
                    ("attlen", s(if tid { 6 } else { 4 })),
                    ("attnum", s(attnum)),
                    ("attcacheoff", s(-1)),
                    ("atttypmod", s(-1)),
                    ("attbyval", s(!tid)),
                    ("attalign", s(if tid { 's' } else { 'i' })),
                    ("attstorage", s('p')),
                    ("attcompression", s("")),
                    ("attnotnull", s(true)),
                    ("attidentity", s("")),
                    ("attgenerated", s("")),
                    ("attislocal", s(true)),
                ]);
            }
        }
    }
    rows
}

const TID_OID: u32 = 27;

/// PostgreSQL's system columns of every table: name, type, attnum.
const SYSTEM_COLUMNS: [(&str, u32, i32); 6] = [
    ("tableoid", oids::OID, -6),
    ("cmax", 29, -5),
    ("xmax", 28, -4),
    ("cmin", 29, -3),
    ("xmin", 28, -2),
    ("ctid", TID_OID, -1),
];

fn fill_pg_tables(mut rows: Rows, names: &Names, kind: char) -> Rows {
    for r in names.relations.iter().filter(|r| r.kind == kind) {
        if kind == 'r' {
            rows.push(&[
                ("schemaname", s(&r.schema)),
                ("tablename", s(&r.name)),
                ("tableowner", s(OWNER_NAME)),
            ]);
        } else {
            rows.push(&[
                ("schemaname", s(&r.schema)),
                ("viewname", s(&r.name)),
                ("viewowner", s(OWNER_NAME)),
            ]);
        }
    }
    rows
}

fn fill_stat_tables(mut rows: Rows, names: &Names) -> Rows {
    for r in user_relations(names).filter(|r| r.kind == 'r') {
        rows.push(&[
            ("relid", s(r.oid)),
            ("schemaname", s(&r.schema)),
            ("relname", s(&r.name)),
            ("n_live_tup", s(r.size.rows.unwrap_or(0))),
        ]);
    }
    rows
}

fn user_relations(names: &Names) -> impl Iterator<Item = &Relation> {
    names
        .relations
        .iter()
        .filter(|r| !SYSTEM_SCHEMAS.contains(&r.schema.as_str()))
}

fn fill_session_table(table: &str, rows: &mut Rows, session: &SessionInfo, names: &Names) {
    let _ = names;
    match table {
        "pg_database" => rows.push(&[
            ("oid", s(DATABASE_OID)),
            ("datname", s(&session.database)),
            ("datdba", s(OWNER_OID)),
            ("encoding", s(6)),
            ("datlocprovider", s('c')),
            ("datallowconn", s(true)),
            ("datconnlimit", s(-1)),
            ("dattablespace", s(1663)),
            ("datcollate", s("C.UTF-8")),
            ("datctype", s("C.UTF-8")),
        ]),
        // The session's own connection: no GSSAPI.
        "pg_stat_gssapi" => rows.push(&[
            ("pid", s(session.backend_pid)),
            ("gss_authenticated", s(false)),
            ("principal", None),
            ("encrypted", s(false)),
        ]),
        // The roles: PostgreSQL 15's predefined ones (no login: not in pg_user) and the
        // session's. pg_authid (pgAdmin reads it) is pg_roles with its password column
        // empty: sluice keeps no passwords.
        "pg_roles" | "pg_authid" | "pg_user" => {
            let password = (table == "pg_roles").then_some("********");
            let predefined = PREDEFINED_ROLES.map(|(oid, name)| (oid, name.to_string(), false));
            let logins = roles(session);
            let shown = match table {
                "pg_user" => &[][..],
                _ => &predefined[..],
            };
            for (login, (oid, name, superuser)) in shown
                .iter()
                .map(|r| (false, r))
                .chain(logins.iter().map(|r| (true, r)))
            {
                if table == "pg_user" {
                    rows.push(&[
                        ("usename", s(name)),
                        ("usesysid", s(oid)),
                        ("usesuper", s(superuser)),
                        ("passwd", s("********")),
                    ]);
                } else {
                    rows.push(&[
                        ("oid", s(oid)),
                        ("rolname", s(name)),
                        ("rolsuper", s(superuser)),
                        ("rolinherit", s(true)),
                        ("rolcanlogin", s(login)),
                        ("rolconnlimit", s(-1)),
                        ("rolpassword", password.map(str::to_string)),
                    ]);
                }
            }
        }
        // The session's own backend (PostgreSQL shows a non-superuser the other sessions
        // with their details hidden; sluice's system.queries lists the running queries).
        "pg_stat_activity" => {
            let application = session.settings.get("application_name");
            rows.push(&[
                ("datid", s(DATABASE_OID)),
                ("datname", s(&session.database)),
                ("pid", s(session.backend_pid)),
                ("usesysid", s(user_oid(&session.user))),
                ("usename", s(&session.user)),
                ("application_name", application),
                ("state", s("active")),
                ("backend_type", s("client backend")),
            ]);
        }
        "pg_cursors" => {
            for cursor in &session.cursors {
                let created = cursor
                    .created
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                rows.push(&[
                    ("name", s(&cursor.name)),
                    ("statement", s(&cursor.statement)),
                    ("is_holdable", s(cursor.holdable)),
                    ("is_binary", s(cursor.binary)),
                    ("is_scrollable", s(false)),
                    ("creation_time", s(created)),
                ]);
            }
        }
        "pg_settings" => {
            let info = settings_info();
            for (name, value, source) in session.settings.all() {
                // What PostgreSQL says of the setting (its group, description, kind).
                let about = |column: &str| -> Option<String> {
                    info.get(name.to_ascii_lowercase().as_str())
                        .and_then(|row| row.get(column).cloned().flatten())
                };
                rows.push(&[
                    ("name", s(&name)),
                    ("setting", s(&value)),
                    ("category", about("category").or_else(|| s("Ungrouped"))),
                    ("short_desc", about("short_desc").or_else(|| s(""))),
                    ("extra_desc", about("extra_desc")),
                    ("context", about("context").or_else(|| s("user"))),
                    ("vartype", about("vartype").or_else(|| s("string"))),
                    ("unit", about("unit")),
                    ("min_val", about("min_val")),
                    ("max_val", about("max_val")),
                    ("enumvals", about("enumvals")),
                    ("source", s(source)),
                    ("boot_val", s(&value)),
                    ("reset_val", s(&value)),
                    ("sourceline", None),
                    ("pending_restart", s(false)),
                ]);
            }
        }
        _ => {}
    }
}

/// PostgreSQL's pg_settings columns for the settings sluice has, by lower-case name.
fn settings_info() -> &'static HashMap<String, HashMap<String, Option<String>>> {
    static INFO: std::sync::OnceLock<HashMap<String, HashMap<String, Option<String>>>> =
        std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        let mut info = HashMap::new();
        let Ok(rows) = Rows::from_tsv(include_str!("data/settings_info.tsv")) else {
            return info;
        };
        let names = rows.columns.names.clone();
        let columns: Vec<Vec<Option<String>>> = names
            .iter()
            .map(|c| {
                rows.column(c)
                    .into_iter()
                    .map(|v| v.map(str::to_string))
                    .collect()
            })
            .collect();
        for i in 0..columns.first().map_or(0, Vec::len) {
            let Some(name) = columns[0][i].clone() else {
                continue;
            };
            let row = names
                .iter()
                .zip(&columns)
                .map(|(n, values)| (n.clone(), values[i].clone()))
                .collect();
            info.insert(name, row);
        }
        info
    })
}

/// PostgreSQL 15's predefined roles, with their OIDs.
pub const PREDEFINED_ROLES: [(u32, &str); 12] = [
    (DATABASE_OWNER_OID, "pg_database_owner"),
    (6181, "pg_read_all_data"),
    (6182, "pg_write_all_data"),
    (3373, "pg_monitor"),
    (3374, "pg_read_all_settings"),
    (3375, "pg_read_all_stats"),
    (3377, "pg_stat_scan_tables"),
    (4569, "pg_read_server_files"),
    (4570, "pg_write_server_files"),
    (4571, "pg_execute_server_program"),
    (4200, "pg_signal_backend"),
    (4544, "pg_checkpoint"),
];

/// `pg_database_owner`: PostgreSQL 15's owner of the `public` schema.
pub const DATABASE_OWNER_OID: u32 = 6171;

/// The roles a session sees: the owner of every object, and the session's own user.
pub fn roles(session: &SessionInfo) -> Vec<(u32, String, bool)> {
    let mut roles = vec![(OWNER_OID, OWNER_NAME.to_string(), true)];
    if session.user != OWNER_NAME && !session.user.is_empty() {
        roles.push((user_oid(&session.user), session.user.clone(), false));
    }
    roles
}

/// The OID of a session's user role.
pub fn user_oid(user: &str) -> u32 {
    if user == OWNER_NAME {
        OWNER_OID
    } else {
        stable_oid(&format!("role {user}"), &mut HashSet::new())
    }
}

fn fill_information_schema(table: &str, rows: &mut Rows, session: &SessionInfo, names: &Names) {
    let db = &session.database;
    match table {
        // The database's one character set, as PostgreSQL shows it.
        "character_sets" => rows.push(&[
            ("character_set_name", s("UTF8")),
            ("character_repertoire", s("UCS")),
            ("form_of_use", s("UTF8")),
            ("default_collate_catalog", s(db)),
        ]),
        "schemata" => {
            let hidden = hidden_namespaces(names, &session.access);
            for (oid, name) in &names.namespaces {
                if hidden.contains(oid) {
                    continue;
                }
                rows.push(&[
                    ("catalog_name", s(db)),
                    ("schema_name", s(name)),
                    ("schema_owner", s(OWNER_NAME)),
                ]);
            }
        }
        "tables" => {
            for r in visible_relations(names, session) {
                rows.push(&[
                    ("table_catalog", s(db)),
                    ("table_schema", s(&r.schema)),
                    ("table_name", s(&r.name)),
                    (
                        "table_type",
                        s(if r.kind == 'v' { "VIEW" } else { "BASE TABLE" }),
                    ),
                    ("is_insertable_into", s("NO")),
                    ("is_typed", s("NO")),
                ]);
            }
        }
        "views" => {
            for r in visible_relations(names, session).filter(|r| r.kind == 'v') {
                rows.push(&[
                    ("table_catalog", s(db)),
                    ("table_schema", s(&r.schema)),
                    ("table_name", s(&r.name)),
                    ("check_option", s("NONE")),
                    ("is_updatable", s("NO")),
                    ("is_insertable_into", s("NO")),
                    ("is_trigger_updatable", s("NO")),
                    ("is_trigger_deletable", s("NO")),
                    ("is_trigger_insertable_into", s("NO")),
                ]);
            }
        }
        "columns" => {
            for r in visible_relations(names, session) {
                for (i, c) in r.columns.iter().enumerate() {
                    let udt = names
                        .types
                        .get(&c.type_oid)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default();
                    let data_type = if udt.starts_with('_') {
                        "ARRAY".to_string()
                    } else {
                        names
                            .type_name(c.type_oid, -1)
                            .unwrap_or_else(|| udt.clone())
                    };
                    let (precision, radix, scale) = numeric_facts(c);
                    rows.push(&[
                        ("table_catalog", s(db)),
                        ("table_schema", s(&r.schema)),
                        ("table_name", s(&r.name)),
                        ("column_name", s(&c.name)),
                        ("ordinal_position", s(i + 1)),
                        ("is_nullable", s(if c.not_null { "NO" } else { "YES" })),
                        ("data_type", s(data_type)),
                        ("character_maximum_length", None),
                        ("character_octet_length", octet_length(c)),
                        ("numeric_precision", precision),
                        ("numeric_precision_radix", radix),
                        ("numeric_scale", scale),
                        ("datetime_precision", datetime_precision(c)),
                        ("udt_catalog", s(db)),
                        ("udt_schema", s(PG_CATALOG)),
                        ("udt_name", s(udt)),
                        ("dtd_identifier", s(i + 1)),
                        ("is_self_referencing", s("NO")),
                        ("is_identity", s("NO")),
                        ("identity_cycle", s("NO")),
                        ("is_generated", s("NEVER")),
                        ("is_updatable", s("NO")),
                    ]);
                }
            }
        }
        "table_constraints"
        | "key_column_usage"
        | "referential_constraints"
        | "constraint_column_usage" => fill_key_views(table, rows, session, names),
        _ => {}
    }
}

/// The informational keys in information_schema's views, as PostgreSQL shows them; its
/// table_constraints also lists a CHECK constraint per NOT NULL column of a table (named
/// `<schema oid>_<table oid>_<column>_not_null`).
fn fill_key_views(table: &str, rows: &mut Rows, session: &SessionInfo, names: &Names) {
    let db = &session.database;
    let visible: HashMap<u32, &Relation> = visible_relations(names, session)
        .map(|r| (r.oid, r))
        .collect();
    // A foreign key shows when the session may read both of its tables.
    let constraints = names.constraints.iter().filter(|c| {
        visible.contains_key(&c.relation)
            && c.referenced
                .as_ref()
                .is_none_or(|t| visible.contains_key(&t.0))
    });
    let schema_of = |oid: u32| names.namespaces.get(&oid).cloned().unwrap_or_default();
    let constraint_of = |relation: u32, kind: char| {
        names
            .constraints
            .iter()
            .find(|c| c.relation == relation && c.kind == kind)
    };
    match table {
        "table_constraints" => {
            let mut row = |schema: &str, name: String, r: &Relation, kind: &str| {
                rows.push(&[
                    ("constraint_catalog", s(db)),
                    ("constraint_schema", s(schema)),
                    ("constraint_name", s(name)),
                    ("table_catalog", s(db)),
                    ("table_schema", s(&r.schema)),
                    ("table_name", s(&r.name)),
                    ("constraint_type", s(kind)),
                    ("is_deferrable", s("NO")),
                    ("initially_deferred", s("NO")),
                    ("enforced", s("YES")),
                    ("nulls_distinct", None),
                ])
            };
            for c in constraints {
                let kind = if c.kind == 'p' {
                    "PRIMARY KEY"
                } else {
                    "FOREIGN KEY"
                };
                row(
                    &schema_of(c.namespace),
                    c.name.clone(),
                    visible[&c.relation],
                    kind,
                );
            }
            for r in visible
                .values()
                .filter(|r| r.kind == 'r' && !SYSTEM_SCHEMAS.contains(&r.schema.as_str()))
            {
                for (i, _) in r.columns.iter().enumerate().filter(|(_, c)| c.not_null) {
                    let name = format!("{}_{}_{}_not_null", r.namespace, r.oid, i + 1);
                    row(&r.schema, name, r, "CHECK");
                }
            }
        }
        "key_column_usage" => {
            for c in constraints {
                let r = visible[&c.relation];
                let columns = names.column_names(c.relation, &c.columns);
                for (i, column) in columns.iter().enumerate() {
                    rows.push(&[
                        ("constraint_catalog", s(db)),
                        ("constraint_schema", s(schema_of(c.namespace))),
                        ("constraint_name", s(&c.name)),
                        ("table_catalog", s(db)),
                        ("table_schema", s(&r.schema)),
                        ("table_name", s(&r.name)),
                        ("column_name", s(column)),
                        ("ordinal_position", s(i + 1)),
                        (
                            "position_in_unique_constraint",
                            c.referenced.as_ref().map(|_| (i + 1).to_string()),
                        ),
                    ]);
                }
            }
        }
        "referential_constraints" => {
            for c in constraints {
                let Some((target, _)) = &c.referenced else {
                    continue;
                };
                let Some(pk) = constraint_of(*target, 'p') else {
                    continue;
                };
                rows.push(&[
                    ("constraint_catalog", s(db)),
                    ("constraint_schema", s(schema_of(c.namespace))),
                    ("constraint_name", s(&c.name)),
                    ("unique_constraint_catalog", s(db)),
                    ("unique_constraint_schema", s(schema_of(pk.namespace))),
                    ("unique_constraint_name", s(&pk.name)),
                    ("match_option", s("NONE")),
                    ("update_rule", s("NO ACTION")),
                    ("delete_rule", s("NO ACTION")),
                ]);
            }
        }
        "constraint_column_usage" => {
            // The columns a constraint uses: a primary key's own, a foreign key's
            // referenced ones.
            for c in constraints {
                let (relation, columns) = match &c.referenced {
                    Some((target, columns)) => (*target, columns),
                    None => (c.relation, &c.columns),
                };
                let r = visible[&relation];
                for column in names.column_names(relation, columns) {
                    rows.push(&[
                        ("table_catalog", s(db)),
                        ("table_schema", s(&r.schema)),
                        ("table_name", s(&r.name)),
                        ("column_name", s(column)),
                        ("constraint_catalog", s(db)),
                        ("constraint_schema", s(schema_of(c.namespace))),
                        ("constraint_name", s(&c.name)),
                    ]);
                }
            }
        }
        _ => {}
    }
}

fn numeric_facts(c: &Column) -> (Option<String>, Option<String>, Option<String>) {
    match c.type_oid {
        oids::INT2 => (s(16), s(2), s(0)),
        oids::INT4 => (s(32), s(2), s(0)),
        oids::INT8 => (s(64), s(2), s(0)),
        oids::FLOAT4 => (s(24), s(2), None),
        oids::FLOAT8 => (s(53), s(2), None),
        oids::NUMERIC if c.typmod >= 4 => {
            let t = c.typmod - 4;
            (s((t >> 16) & 0xffff), s(10), s(t & 0xffff))
        }
        oids::NUMERIC => (None, s(10), None),
        _ => (None, None, None),
    }
}

fn octet_length(c: &Column) -> Option<String> {
    matches!(c.type_oid, oids::TEXT | oids::VARCHAR).then(|| "1073741824".to_string())
}

fn datetime_precision(c: &Column) -> Option<String> {
    match c.type_oid {
        oids::DATE => s(0),
        oids::TIME | oids::TIMESTAMP | oids::TIMESTAMPTZ | oids::INTERVAL => s(6),
        _ => None,
    }
}

/// May the session read this relation? The system catalogs are open to every session.
pub(crate) fn readable(access: &Access, r: &Relation) -> bool {
    SYSTEM_SCHEMAS.contains(&r.schema.as_str())
        || r.schema == crate::system::SYSTEM
        || access.can_read(crate::catalog(), &r.schema, &r.name)
}

/// The relations a session may see.
fn visible_relations<'a>(
    names: &'a Names,
    session: &'a SessionInfo,
) -> impl Iterator<Item = &'a Relation> + 'a {
    let all = session.access.reads_all();
    names
        .relations
        .iter()
        .filter(move |r| all || readable(&session.access, r))
}

/// User relations a session may not read, and their indexes.
fn hidden_relations(names: &Names, access: &Access) -> HashSet<u32> {
    let mut hidden: HashSet<u32> = user_relations(names)
        .filter(|r| !readable(access, r))
        .map(|r| r.oid)
        .collect();
    let indexes: Vec<u32> = names
        .indexes
        .iter()
        .filter(|i| hidden.contains(&i.relation))
        .map(|i| i.oid)
        .collect();
    // Keys on a hidden table, or referencing one (pg_depend rows name them).
    let constraints: Vec<u32> = names
        .constraints
        .iter()
        .filter(|c| {
            hidden.contains(&c.relation)
                || c.referenced.as_ref().is_some_and(|t| hidden.contains(&t.0))
        })
        .map(|c| c.oid)
        .collect();
    hidden.extend(indexes);
    hidden.extend(constraints);
    hidden
}

/// Schemas that hold tables, none of which the session may read.
pub(super) fn hidden_namespaces(names: &Names, access: &Access) -> HashSet<u32> {
    if access.reads_all() {
        return HashSet::new();
    }
    let mut any_readable: HashMap<u32, bool> = HashMap::new();
    for r in user_relations(names) {
        *any_readable.entry(r.namespace).or_default() |= readable(access, r);
    }
    any_readable
        .into_iter()
        .filter(|(_, can)| !can)
        .map(|(oid, _)| oid)
        .collect()
}

type SessionRows = Arc<dyn Fn(&SessionInfo) -> Result<RecordBatch, QueryError> + Send + Sync>;

/// The columns of a catalog table that say which relation or schema a row is about.
enum RowKey {
    Relation(&'static str),
    /// Rows about two relations (a foreign key and the table it references): shown when
    /// the session may read both.
    Relations(&'static str, &'static str),
    Namespace(&'static str),
    Name(&'static str, &'static str),
    /// pg_type: a table's row type (by its relation) or the array of one (by its element).
    Type(&'static str, &'static str),
}

/// [`RowKey`] resolved to column indexes.
enum Key {
    Relation(usize),
    Relations(usize, usize),
    Namespace(usize),
    Name(usize, usize),
    Type(usize, usize),
}

enum TableRows {
    /// Rows fixed at start; with a key, rows about tables the session may not read are
    /// left out.
    Fixed(RecordBatch, Option<(Key, Arc<Names>)>),
    PerSession(SessionRows),
}

/// `batch` without the rows about relations the session may not read.
fn visible_rows(
    batch: &RecordBatch,
    key: &Key,
    names: &Names,
    access: &Access,
) -> Result<RecordBatch, QueryError> {
    if access.reads_all() {
        return Ok(batch.clone());
    }
    let err = |e: datafusion::arrow::error::ArrowError| {
        QueryError::internal(format!("catalog filter: {e}"))
    };
    let oids = |column: usize, hidden: &HashSet<u32>| -> Result<BooleanArray, QueryError> {
        let values = cast(batch.column(column), &DataType::Int64).map_err(err)?;
        let values = values.as_primitive::<Int64Type>();
        Ok(values
            .iter()
            .map(|v| Some(!v.is_some_and(|v| hidden.contains(&(v as u32)))))
            .collect())
    };
    let mask = match key {
        Key::Relation(c) => oids(*c, &hidden_relations(names, access))?,
        Key::Relations(a, b) => {
            let hidden = hidden_relations(names, access);
            and(&oids(*a, &hidden)?, &oids(*b, &hidden)?).map_err(err)?
        }
        Key::Namespace(c) => oids(*c, &hidden_namespaces(names, access))?,
        Key::Type(relid, elem) => {
            let hidden = hidden_relations(names, access);
            let row_types: HashSet<u32> = user_relations(names)
                .filter(|r| hidden.contains(&r.oid))
                .map(|r| r.rowtype)
                .collect();
            and(&oids(*relid, &hidden)?, &oids(*elem, &row_types)?).map_err(err)?
        }
        Key::Name(schema, table) => {
            let hidden: HashSet<(&str, &str)> = user_relations(names)
                .filter(|r| !readable(access, r))
                .map(|r| (r.schema.as_str(), r.name.as_str()))
                .collect();
            let schemas = cast(batch.column(*schema), &DataType::Utf8).map_err(err)?;
            let tables = cast(batch.column(*table), &DataType::Utf8).map_err(err)?;
            schemas
                .as_string::<i32>()
                .iter()
                .zip(tables.as_string::<i32>().iter())
                .map(|(s, t)| Some(!hidden.contains(&(s.unwrap_or(""), t.unwrap_or("")))))
                .collect()
        }
    };
    filter_record_batch(batch, &mask).map_err(err)
}

/// Whether a table is one of pg_catalog's or information_schema's (computed here from the
/// catalog and the session, never from data files).
pub fn is_catalog_table(table: &dyn TableProvider) -> bool {
    (table as &dyn std::any::Any).is::<CatalogTable>()
}

/// A catalog table: its rows are fixed when sluice starts, or computed for the session
/// that scans it (the session comes in the `SessionConfig` as a [`SessionInfo`]).
struct CatalogTable {
    schema: SchemaRef,
    rows: TableRows,
}

impl std::fmt::Debug for CatalogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let session = || {
            state
                .config()
                .get_extension::<SessionInfo>()
                .unwrap_or_default()
        };
        let batch = match &self.rows {
            TableRows::Fixed(batch, None) => batch.clone(),
            TableRows::Fixed(batch, Some((key, names))) => {
                visible_rows(batch, key, names, &session().access)
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
            }
            TableRows::PerSession(rows) => rows(&session())
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?,
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_are_stable_and_distinct() {
        let mut used = HashSet::new();
        let a = stable_oid("relation tpch.lineitem", &mut used);
        let b = stable_oid("relation tpch.orders", &mut used);
        assert_ne!(a, b);
        assert_eq!(a, stable_oid("relation tpch.lineitem", &mut HashSet::new()));
        assert!(a >= FIRST_USER_OID);
        // A collision steps to the next free value.
        let mut taken = HashSet::from([a]);
        assert_eq!(stable_oid("relation tpch.lineitem", &mut taken), a + 1);
    }

    #[test]
    fn every_data_file_parses() {
        for (name, text) in DATA {
            let rows = Rows::from_tsv(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            rows.to_batch().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
