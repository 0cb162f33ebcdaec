//! Databricks SQL, for the sessions of the Databricks paths (HS2 and the Statement
//! Execution API): what makes their statements mean what they mean on a Databricks SQL
//! warehouse (Spark in ANSI mode) rather than in PostgreSQL.
//!
//! - [`SparkDialect`]: Spark's lexical rules (backticks, `"strings"`, backslash escapes).
//! - [`rewrite`]: rewrites of parsed statements — Spark's forms DataFusion plans under
//!   another name or shape (`timestampadd(MONTH, …)`, `date_format` with Java patterns,
//!   `explode`, `count_if`, …).
//! - [`functions`]: the functions a Databricks session calls by name — datafusion-spark's
//!   (Apache DataFusion's Spark-compatible functions) and sluice's own for what it lacks —
//!   registered over DataFusion's builtins of the same name, and how a plan that calls them
//!   names them to a worker ([`functions::MARKER`]).
//! - [`operators`]: Spark's `/` (a double or a decimal, never an integer) and 0-based
//!   array subscripts.
//! - [`spark_type`]: the type names Databricks gives Arrow types.
//! - `information_schema`: Databricks' information_schema views
//!   (`system.information_schema.tables`, …) over the session's own.
//!
//! The pg front-end never sees any of it: its sessions keep PostgreSQL's rules.

mod average;
mod datetime;
mod dialect;
pub mod functions;
mod information_schema;
mod json;
mod misc;
mod names;
pub mod operators;
pub mod rewrite;
mod simple;
mod strings;
mod types;

pub use dialect::SparkDialect;

/// The names Databricks clients give the one catalog besides its own: Databricks' legacy
/// Hive metastore catalog, Spark's session catalog, and a Unity Catalog workspace's default
/// catalog. A client that asks for one of them (`USE CATALOG hive_metastore`, an initial
/// catalog at OpenSession, `main.tpch.nation`) gets sluice's one catalog.
pub const CATALOG_ALIASES: &[&str] = &["hive_metastore", "spark_catalog", "main"];

/// Whether `name` names the one catalog called `catalog`.
pub fn is_catalog(name: &str, catalog: &str) -> bool {
    name.eq_ignore_ascii_case(catalog)
        || CATALOG_ALIASES.iter().any(|a| name.eq_ignore_ascii_case(a))
}
pub use types::spark_type;
