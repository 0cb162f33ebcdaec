//! # planner — from SQL text to a plan a worker can run
//!
//! ```text
//!  SQL ──parse (PostgreSQL dialect)──► statements
//!      ──plan against the catalog────► logical plan ──optimize──► physical plan
//!      ──datafusion-proto────────────► bytes shipped to a worker (`codec`)
//! ```
//!
//! The planner owns the catalog (config tables and the TPC-H demo, [`catalog`];
//! the `system.*` tables the gateway fills, [`system`]),
//! the classification of errors into [`ErrorKind`]s ([`error`]) and the plan codec.
//! Session statements (`SET`, `BEGIN`, …) are the gateway's business: the planner sees
//! only queries.

pub mod bounded;
pub mod cache_key;
pub mod catalog;
mod checked;
pub mod codec;
pub mod compat;
pub mod cursor;
pub mod ddl;
pub mod delta;
mod distinct_on;
pub mod distributed;
pub mod error;
mod explain;
mod join_keys;
pub mod limits;
pub mod locations;
pub mod pg_catalog;
pub mod profile;
mod result_types;
pub mod reuse;
pub mod session;
pub mod storage;
pub mod system;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::CatalogProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect};

pub use catalog::{
    catalog, check_catalog_name, set_catalog_name, ForeignKey, ForeignKeyDef, PrimaryKey, TableDef,
    TableFormat, TableKeys, DEFAULT_CATALOG, DEFAULT_SCHEMA,
};
pub use error::{ErrorKind, QueryError};
pub use limits::Limits;
use session::CachedState;
pub use session::{Access, SessionInfo, Settings, StateCache};

use pg_catalog::PgCatalog;

/// Where the unqualified names of a view's plan resolve: views are planned (registered)
/// with the default session, and stored with their names qualified by their creator's
/// session ([`Planner::bind_view`]).
pub(crate) fn view_defaults() -> (&'static str, &'static str) {
    (catalog(), DEFAULT_SCHEMA)
}

/// Deepest nesting of SQL the parser accepts before it refuses the statement (protects the
/// gateway's stack from hostile input).
const SQL_RECURSION_LIMIT: usize = 128;

/// Plans queries against the catalog. One per gateway, shared by all sessions.
#[derive(Debug)]
pub struct Planner {
    /// The session state every query starts from: configuration, functions and the
    /// `sluice` catalog. Cloned per statement (cheap: it holds `Arc`s).
    base: SessionState,
    /// The state a Databricks session's statements start from: `base` with Spark's
    /// functions and operators ([`spark::functions`], [`spark::operators`]).
    databricks: SessionState,
    pg: PgCatalog,
    /// pg_catalog and information_schema names, for the SQL rewrites.
    catalog_names: compat::CatalogNames,
    /// What one statement may ask, checked before it is planned.
    limits: Limits,
    /// The data tables' rows and bytes, measured when the catalog was built.
    sizes: Arc<catalog::TableSizes>,
    /// Told apart from other planners (a session's kept state is this planner's).
    id: u64,
}

/// A query bound and optimized, with the state (and start time) it was optimized in.
#[derive(Debug, Clone)]
pub struct OptimizedQuery {
    pub schema: SchemaRef,
    pub plan: LogicalPlan,
    state: Arc<SessionState>,
    /// The context it runs in here (catalog queries), if made already.
    task: Option<Arc<TaskContext>>,
}

impl OptimizedQuery {
    /// The state it was optimized in (the session's: defaults, object stores).
    pub fn state(&self) -> &SessionState {
        &self.state
    }
}

/// The optimizer's view of one query: the session's state with the query's own start time
/// (`now()` is folded to it), without a copy of the state.
struct QueryStart<'a> {
    state: &'a SessionState,
    props: datafusion::execution::context::ExecutionProps,
}

impl<'a> QueryStart<'a> {
    fn new(state: &'a SessionState) -> Self {
        let mut props = datafusion::execution::context::ExecutionProps::new();
        props.mark_start_execution(state.config_options().clone());
        Self { state, props }
    }
}

impl datafusion::optimizer::OptimizerConfig for QueryStart<'_> {
    fn query_execution_start_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.props.query_execution_start_time
    }

    fn alias_generator(&self) -> &Arc<datafusion::common::alias::AliasGenerator> {
        &self.props.alias_generator
    }

    fn options(&self) -> Arc<datafusion::config::ConfigOptions> {
        self.state.config_options().clone()
    }

    fn function_registry(&self) -> Option<&dyn FunctionRegistry> {
        Some(self.state)
    }
}

/// A query ready to run: its result schema, and the physical plan for a worker.
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    pub schema: SchemaRef,
    pub physical: Arc<dyn ExecutionPlan>,
}

impl Planner {
    /// A planner over the given tables; `target_partitions` is the parallelism a worker
    /// uses for one query; `system` fills the `system.*` tables.
    pub async fn new(
        tables: &[TableDef],
        managed: &ddl::Managed,
        target_partitions: usize,
        system: Option<Arc<dyn system::SystemSource>>,
        storage: Arc<storage::Registry>,
        limits: Limits,
    ) -> Result<Self, QueryError> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(catalog(), DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .with_target_partitions(target_partitions.max(1));
        // `now()` and `x::timestamptz` are timestamps with a time zone, as in PostgreSQL
        // (the server's zone is UTC): without one DataFusion makes them plain timestamps.
        config.options_mut().execution.time_zone = Some("UTC".into());
        // Uncorrelated scalar subqueries as joins (DataFusion's plan of them before 55): the
        // physical form cannot be split into distributed stages, and one plan shape for both
        // ways of running keeps their answers the same.
        config
            .options_mut()
            .optimizer
            .enable_physical_uncorrelated_scalar_subquery = false;
        // A join whose smaller side is under 32 MiB / 1M rows (by the tables' statistics)
        // builds one hash table all partitions share, rather than repartitioning both
        // sides: 6 % off the 22 TPC-H queries at SF1, no query slower by more than noise
        // (bench/settings.sh, bench/RESULTS.md). Larger build sides stay partitioned.
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold = 32 << 20;
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold_rows = 1 << 20;
        // DataFusion keeps directory listings forever by default: a file added to a table
        // would never be seen. sluice lists at every plan (the result cache keys on the
        // same listing, so the two never disagree).
        // Queries answered here (catalog queries, queries that read no table) share a
        // bounded pool: `WITH RECURSIVE` without end fails, instead of taking the gateway.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(limits.local_memory as usize, 1.0)
            .with_object_list_cache_limit(0)
            .with_object_store_registry(storage)
            .build_arc()
            .map_err(QueryError::from)?;
        let defaults = SessionStateBuilder::new()
            .with_config(config.clone())
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        // PostgreSQL's reading of untyped literals comes before DataFusion's planners.
        let mut expr_planners: Vec<Arc<dyn datafusion::logical_expr::planner::ExprPlanner>> =
            vec![Arc::new(compat::UnknownLiteralPlanner)];
        expr_planners.extend(defaults.expr_planners().iter().cloned());
        let optimizer_rules = join_keys::optimizer_rules(defaults.optimizers());
        let mut state = SessionStateBuilder::new_from_existing(defaults)
            .with_expr_planners(expr_planners)
            .with_optimizer_rules(optimizer_rules)
            .with_type_planner(Arc::new(compat::PgTypePlanner))
            .with_analyzer_rule(Arc::new(checked::CheckedIntegers))
            .build();
        // PostgreSQL's names of functions DataFusion has under others (plans name them by
        // DataFusion's name, which workers know).
        use datafusion::execution::FunctionRegistry;
        for (theirs, ours) in [("signum", "sign")] {
            let f = state.udf(theirs).map_err(QueryError::from)?;
            state.register_udf(Arc::new(f.as_ref().clone().with_aliases([ours])))?;
        }
        for (theirs, ours) in [("var", "variance"), ("bool_and", "every")] {
            let f = state.udaf(theirs).map_err(QueryError::from)?;
            state.register_udaf(Arc::new(f.as_ref().clone().with_aliases([ours])))?;
        }
        let catalog = catalog::build_catalog(&state, tables, managed).await?;
        let sizes = Arc::new(catalog::table_sizes(&state, catalog.as_ref()).await);
        if let Some(source) = system {
            catalog
                .register_schema(system::SYSTEM, system::schema(source)?)
                .map_err(QueryError::from)?;
        }
        let pg = PgCatalog::new(catalog.as_ref(), &sizes).await?;
        catalog
            .register_schema(pg_catalog::PG_CATALOG, pg.pg_catalog.clone())
            .map_err(QueryError::from)?;
        catalog
            .register_schema(
                pg_catalog::INFORMATION_SCHEMA,
                pg.information_schema.clone(),
            )
            .map_err(QueryError::from)?;
        let mut catalog_names = compat::CatalogNames::default();
        for (schema, is_pg_catalog) in [(&pg.pg_catalog, true), (&pg.information_schema, false)] {
            for table in schema.table_names() {
                if let Some(provider) = schema.table(&table).await.map_err(QueryError::from)? {
                    let columns = provider
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    catalog_names.columns.insert(table.clone(), columns);
                }
                if is_pg_catalog {
                    catalog_names.pg_catalog.insert(table);
                }
            }
        }
        state.catalog_list().register_catalog(
            crate::catalog().to_string(),
            catalog as Arc<dyn CatalogProvider>,
        );
        state.config_mut().options_mut().sql_parser.dialect =
            datafusion::config::Dialect::PostgreSQL;
        // `1.5` is numeric, as in PostgreSQL (not double precision).
        state
            .config_mut()
            .options_mut()
            .sql_parser
            .parse_float_as_decimal = true;
        if let Some(series) = state.table_functions().get("generate_series").cloned() {
            state.register_udtf(
                "generate_series",
                Arc::new(compat::PgGenerateSeries(series.function().clone())),
            );
        }
        state.register_udtf("pg_get_keywords", Arc::new(pg_catalog::GetKeywords));
        state.register_udtf(
            "regexp_split_to_table",
            Arc::new(pg_catalog::RegexpSplitToTable),
        );
        for function in pg_catalog::functions::static_functions(pg.names.clone()) {
            state
                .register_udf(Arc::new(function))
                .map_err(QueryError::from)?;
        }
        static PLANNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut planner = Self {
            databricks: state.clone(),
            base: state,
            pg,
            catalog_names,
            limits,
            sizes,
            id: PLANNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        if !managed.views.is_empty() {
            planner.register_views(&managed.views).await?;
        }
        planner.databricks = databricks_state(&planner.base)?;
        Ok(planner)
    }

    /// Plan and register the views created with SQL (a view may read another: each is
    /// tried until no more can be planned). One that cannot be planned (a table it reads
    /// was dropped) fails alone, with the cause. pg_catalog and information_schema are
    /// then rebuilt to list them.
    async fn register_views(&mut self, views: &[ddl::ViewDef]) -> Result<(), QueryError> {
        let catalog = self
            .base
            .catalog_list()
            .catalog(catalog())
            .ok_or_else(|| QueryError::internal("no sluice catalog"))?;
        let session = SessionInfo::default();
        let mut pending: Vec<&ddl::ViewDef> = views.iter().collect();
        loop {
            let mut failed = Vec::new();
            for view in &pending {
                match self.view_table(view, &session).await {
                    Ok(table) => {
                        let (schema, name) = split_name(&view.name)?;
                        if let Some(schema) = catalog.schema(schema) {
                            schema
                                .register_table(name.to_string(), table)
                                .map_err(QueryError::from)?;
                        }
                    }
                    Err(e) => failed.push((*view, e)),
                }
            }
            if failed.is_empty() {
                break;
            }
            if failed.len() == pending.len() {
                for (view, e) in failed {
                    let (schema, name) = split_name(&view.name)?;
                    let error = QueryError::new(
                        if e.kind == ErrorKind::Internal {
                            ErrorKind::UndefinedTable
                        } else {
                            e.kind
                        },
                        format!("view {} cannot be used: {}", view.name, e.message),
                    );
                    tracing::warn!(view = %view.name, error = %error.message, "view unavailable");
                    if let Some(schema) = catalog.schema(schema) {
                        if let Some(schema) = schema.downcast_ref::<catalog::CatalogSchema>() {
                            schema.register_unavailable(name, error);
                        }
                    }
                }
                break;
            }
            pending = failed.into_iter().map(|(view, _)| view).collect();
        }
        self.pg = PgCatalog::new(catalog.as_ref(), &self.sizes).await?;
        catalog
            .register_schema(pg_catalog::PG_CATALOG, self.pg.pg_catalog.clone())
            .map_err(QueryError::from)?;
        catalog
            .register_schema(
                pg_catalog::INFORMATION_SCHEMA,
                self.pg.information_schema.clone(),
            )
            .map_err(QueryError::from)?;
        Ok(())
    }

    /// A view's table: its query planned against the catalog as it is.
    async fn view_table(
        &self,
        view: &ddl::ViewDef,
        session: &SessionInfo,
    ) -> Result<Arc<dyn datafusion::datasource::TableProvider>, QueryError> {
        // A Databricks SQL view is read as written, with Spark's functions, by everyone.
        let databricks_reader;
        let (mut statements, session) = if view.databricks {
            databricks_reader = SessionInfo {
                protocol: "hs2",
                ..session.clone()
            };
            (self.parse_databricks(&view.sql)?, &databricks_reader)
        } else {
            (self.parse(&view.sql)?, session)
        };
        let statement = match (statements.pop(), statements.is_empty()) {
            (Some(statement), true) => statement,
            _ => {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    "a view is one query",
                ))
            }
        };
        let plan = self.logical_plan(&statement, session).await?;
        Ok(Arc::new(datafusion::catalog::view::ViewTable::new(
            plan,
            Some(view.sql.clone()),
        )))
    }

    /// Check a view's query before it is created: it must plan, and the creator must be
    /// allowed to read what it reads.
    pub async fn check_view(
        &self,
        view: &ddl::ViewDef,
        session: &SessionInfo,
    ) -> Result<(), QueryError> {
        self.view_table(view, session).await.map(|_| ())
    }

    /// The table or view `schema.name` of the catalog, if there is one.
    async fn table_provider(
        &self,
        schema: &str,
        name: &str,
    ) -> Option<Arc<dyn datafusion::datasource::TableProvider>> {
        self.base
            .catalog_list()
            .catalog(catalog())?
            .schema(schema)?
            .table(name)
            .await
            .ok()?
    }

    /// The format of the data table `schema.name` (Spark's name for it: `parquet`, …), if
    /// it is one.
    pub async fn table_format(&self, schema: &str, name: &str) -> Option<String> {
        catalog::table_format(self.table_provider(schema, name).await?.as_ref())
    }

    /// The query text of the view `schema.name` as it was created (None: not a view).
    pub async fn view_definition(&self, schema: &str, name: &str) -> Option<String> {
        let table = self.table_provider(schema, name).await?;
        if table.table_type() != datafusion::datasource::TableType::View {
            return None;
        }
        table.get_table_definition().map(str::to_string)
    }

    /// The commits of the Delta table `schema.name`, newest first (at most `limit`); None
    /// when it is not a Delta table.
    pub async fn delta_history(
        &self,
        schema: &str,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<delta::Commit>>, QueryError> {
        let Some(table) = self.table_provider(schema, name).await else {
            return Ok(None);
        };
        match (table.as_ref() as &dyn std::any::Any).downcast_ref::<delta::DeltaTableProvider>() {
            Some(delta) => delta.history(limit).await.map(Some),
            None => Ok(None),
        }
    }

    /// Why the table or view `schema.name` cannot be used, if it is defined but cannot.
    pub fn unavailable(&self, qualified: &str) -> Option<QueryError> {
        self.catalog_schema(qualified, |schema, name| schema.unavailable(name))
    }

    /// `f` on the catalog schema of `schema.table` and the table's name.
    fn catalog_schema<T>(
        &self,
        qualified: &str,
        f: impl FnOnce(&catalog::CatalogSchema, &str) -> Option<T>,
    ) -> Option<T> {
        let (schema, name) = split_name(qualified).ok()?;
        let catalog = self.base.catalog_list().catalog(catalog())?;
        let schema = catalog.schema(schema)?;
        f(schema.downcast_ref::<catalog::CatalogSchema>()?, name)
    }

    /// Why a table's declared keys do not fit the catalog (a column that does not exist,
    /// a foreign key to no primary key), if they do not.
    pub fn key_error(&self, qualified: &str) -> Option<QueryError> {
        self.catalog_schema(qualified, |schema, name| schema.key_error(name))
    }

    /// Split SQL text into statements (PostgreSQL dialect), with PostgreSQL constructs
    /// DataFusion does not plan rewritten ([`compat`]).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        self.parse_in(sql, &PostgreSqlDialect {})
    }

    /// Split Databricks SQL text into statements (sessions of the Databricks paths):
    /// Spark's literals and identifiers ([`spark::SparkDialect`]), Spark's forms rewritten
    /// ([`spark::rewrite`]); none of PostgreSQL's rewrites ([`compat`]).
    pub fn parse_databricks(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        let mut statements = self.parse_as_written(sql, &spark::SparkDialect)?;
        let context = spark::rewrite::Context { catalog: catalog() };
        for statement in &mut statements {
            let mut statement = statement;
            while let Statement::Explain(explain) = statement {
                statement = explain.statement.as_mut();
            }
            if let Statement::Statement(sql) = statement {
                spark::rewrite::statement(sql, &context)
                    .map_err(|e| QueryError::new(ErrorKind::NotSupported, e.0))?;
            }
        }
        Ok(statements)
    }

    fn parse_in(&self, sql: &str, dialect: &dyn Dialect) -> Result<Vec<Statement>, QueryError> {
        let mut statements = self.parse_as_written(sql, dialect)?;
        for statement in &mut statements {
            let mut statement = statement;
            // `EXPLAIN …` explains the query as it is rewritten to run.
            while let Statement::Explain(explain) = statement {
                statement = explain.statement.as_mut();
            }
            if let Statement::Statement(sql) = statement {
                compat::rewrite(sql, &self.catalog_names);
            }
        }
        Ok(statements)
    }

    /// A text that is one FETCH, MOVE or CLOSE (see [`cursor::command`]), within the
    /// [`Limits`].
    pub fn cursor_command(&self, sql: &str) -> Result<Option<cursor::CursorCommand>, QueryError> {
        self.limits.check_text(sql)?;
        cursor::command(sql)
    }

    /// Split SQL text into statements as written, within the [`Limits`].
    fn parse_as_written(
        &self,
        sql: &str,
        dialect: &dyn Dialect,
    ) -> Result<Vec<Statement>, QueryError> {
        self.limits.check_text(sql)?;
        let sql = compat::rewrite_time_travel(sql)?;
        let sql = sql.as_ref();
        let mut parser = DFParserBuilder::new(sql)
            .with_dialect(dialect)
            .with_recursion_limit(SQL_RECURSION_LIMIT)
            .build()
            .map_err(QueryError::from)?;
        let statements: Vec<Statement> = match explain::parse_statements(&mut parser) {
            Ok(statements) => statements,
            // DataFusion's parser reads `COPY … TO` as its own file export; PostgreSQL's
            // forms (`COPY (query) TO STDOUT WITH (FORMAT csv)`) parse with sqlparser's.
            Err(e) => match datafusion::sql::sqlparser::parser::Parser::new(dialect)
                .with_recursion_limit(SQL_RECURSION_LIMIT)
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statements())
            {
                Ok(statements)
                    if statements.iter().any(|s| {
                        matches!(s, datafusion::sql::sqlparser::ast::Statement::Copy { .. })
                    }) =>
                {
                    statements
                        .into_iter()
                        .map(|s| Statement::Statement(Box::new(s)))
                        .collect()
                }
                _ => return Err(QueryError::from(e)),
            },
        };
        for statement in &statements {
            check_shape(&self.limits, statement)?;
        }
        Ok(statements)
    }

    /// A view's query bound for keeps: its table names qualified as its creator's session
    /// resolves them (see [`compat::qualify_relations`]).
    pub fn bind_view(
        &self,
        view: &ddl::ViewDef,
        creator: &SessionInfo,
    ) -> Result<String, QueryError> {
        let mut statements = if view.databricks {
            self.parse_as_written(&view.sql, &spark::SparkDialect)?
        } else {
            self.parse_as_written(&view.sql, &PostgreSqlDialect {})?
        };
        let one_query = || QueryError::new(ErrorKind::InvalidValue, "a view is one query");
        let mut statement = match (statements.pop(), statements.is_empty()) {
            (Some(Statement::Statement(statement)), true) => statement,
            _ => return Err(one_query()),
        };
        if !matches!(
            statement.as_ref(),
            datafusion::sql::sqlparser::ast::Statement::Query(_)
        ) {
            return Err(one_query());
        }
        // `"db"."s"."t"` of the creator's database is `s.t` of this catalog for everyone.
        compat::strip_database(&mut statement, &creator.database)?;
        compat::qualify_relations(
            &mut statement,
            &self.default_schema(creator),
            &self.catalog_names,
        );
        if view.databricks {
            // Printed back, a string's backslashes must read as themselves again.
            spark::rewrite::escape_backslashes(&mut statement);
        }
        Ok(statement.to_string())
    }

    /// The functions a session's statements may call, by name (Databricks' SHOW FUNCTIONS):
    /// scalar, aggregate and window, without sluice's internal and PostgreSQL's own.
    pub fn function_names(&self, session: &SessionInfo) -> Result<Vec<String>, QueryError> {
        let state = self.session_state(session)?.state.clone();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.window_functions().keys())
            .filter(|n| !n.starts_with("pg_") && !n.starts_with("sluice_"))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// What one statement may ask.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The state a statement of this session is planned and run with: the session's
    /// functions registered, and the session itself for the catalog tables to read. Made
    /// once and kept with the session until it changes ([`session::StateCache`]).
    fn session_state(&self, session: &SessionInfo) -> Result<Arc<CachedState>, QueryError> {
        StateCache::get_or_make(session, self.id, |session| {
            let mut state = if session.databricks_sql() {
                self.databricks.clone()
            } else {
                self.base.clone()
            };
            state.config_mut().set_extension(Arc::new(session.clone()));
            // Unqualified table names resolve in the first schema of `search_path` that
            // exists.
            state.config_mut().options_mut().catalog.default_schema = self.default_schema(session);
            let names = self.pg.names.clone();
            for function in pg_catalog::functions::session_functions(names, session) {
                state
                    .register_udf(Arc::new(function))
                    .map_err(QueryError::from)?;
            }
            Ok(state)
        })
    }

    /// The state a statement is planned with: the session's, plus a copy of it for
    /// correlated catalog subqueries (compat) to run per row in, if the statement has one.
    fn planning_state(
        &self,
        session: &SessionInfo,
        statement: &Statement,
    ) -> Result<Arc<SessionState>, QueryError> {
        let state = self.session_state(session)?.state.clone();
        if !compat::calls_function(statement, pg_catalog::subquery::NAME) {
            return Ok(state);
        }
        let mut state = state.as_ref().clone();
        let subquery = pg_catalog::subquery::function(state.clone());
        state
            .register_udf(Arc::new(subquery))
            .map_err(QueryError::from)?;
        Ok(Arc::new(state))
    }

    /// The logical plan of a query, with `$n` placeholders left in place.
    pub async fn logical_plan(
        &self,
        statement: &Statement,
        session: &SessionInfo,
    ) -> Result<LogicalPlan, QueryError> {
        let state = self.planning_state(session, statement)?;
        let mut statement = statement.clone();
        if let Statement::Statement(sql) = &mut statement {
            compat::strip_database(sql, &session.database)?;
        }
        let explain_format = explain::format(&statement);
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(distinct_on::hoist_subqueries)
            .map_err(QueryError::from)?;
        // Reads only: DDL (e.g. CREATE EXTERNAL TABLE) would change the shared catalog, and
        // DML has nowhere to write.
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| {
                QueryError::new(
                    ErrorKind::ReadOnly,
                    "this warehouse is read-only: only queries (SELECT, WITH, VALUES, EXPLAIN) can run",
                )
            })?;
        self.authorize(&plan, session)?;
        let plan = fold_output_casts(plan)?;
        if let (LogicalPlan::Explain(_), Some(distribution), false) =
            (&plan, &session.distribution, session.protocol == "pg")
        {
            if let Some(answer) =
                explain::distributed_answer(&plan, &state, distribution.as_ref()).await?
            {
                return Ok(answer);
            }
        }
        if session.databricks_sql() {
            return spark::operators::signed_outputs(plan).map_err(QueryError::from);
        }
        if session.protocol != "pg" {
            return Ok(plan);
        }
        if matches!(plan, LogicalPlan::Explain(_)) {
            return explain::pg_answer(
                plan,
                explain_format,
                &state,
                session.distribution.as_deref(),
            )
            .await;
        }
        let reads = PlanReads::of(&plan);
        if reads.data {
            return Ok(plan);
        }
        // Catalog queries: PostgreSQL's types of expressions over catalog columns.
        let plan = if reads.table {
            result_types::state_result_types(plan).map_err(QueryError::from)?
        } else {
            plan
        };
        reg_output(plan, &state)
    }

    /// The types DataFusion inferred for `$1…$n` (None where it could not tell).
    pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
        let mut types: HashMap<String, Option<DataType>> =
            plan.get_parameter_types().map_err(QueryError::from)?;
        // `$1::oid[]`: a parameter cast straight away has the type it is cast to, as in
        // PostgreSQL (DataFusion infers types from comparisons only).
        let _ = plan.apply_with_subqueries(|node| {
            // `LIMIT $1 OFFSET $2`: bigint, as PostgreSQL describes them.
            if let LogicalPlan::Limit(limit) = node {
                for bound in [&limit.fetch, &limit.skip].into_iter().flatten() {
                    if let datafusion::logical_expr::Expr::Placeholder(p) = bound.as_ref() {
                        let slot = types.entry(p.id.clone()).or_insert(None);
                        if slot.is_none() {
                            *slot = Some(DataType::Int64);
                        }
                    }
                }
            }
            // The schema the node's expressions read.
            let input = match node.inputs().as_slice() {
                [one] => one.schema().clone(),
                _ => node.schema().clone(),
            };
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    // `x = ANY($1)` (planned `array_has($1, x)`): an array of x's type, as
                    // PostgreSQL infers it (drivers bind lists this way).
                    if let datafusion::logical_expr::Expr::ScalarFunction(f) = e {
                        if let (
                            "array_has",
                            [datafusion::logical_expr::Expr::Placeholder(p), needle],
                        ) = (f.name(), f.args.as_slice())
                        {
                            let slot = types.entry(p.id.clone()).or_insert(None);
                            if slot.is_none() {
                                if let Ok(item) = needle.get_type(input.as_ref()) {
                                    *slot = Some(DataType::List(Arc::new(
                                        datafusion::arrow::datatypes::Field::new(
                                            "item", item, true,
                                        ),
                                    )));
                                }
                            }
                        }
                    }
                    if let datafusion::logical_expr::Expr::Cast(cast) = e {
                        if let datafusion::logical_expr::Expr::Placeholder(p) = cast.expr.as_ref() {
                            let slot = types.entry(p.id.clone()).or_insert(None);
                            if slot.is_none() {
                                *slot = Some(cast.field.data_type().clone());
                            }
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        let mut max = 0;
        for name in types.keys() {
            match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n >= 1 => max = max.max(n),
                _ => {
                    return Err(QueryError::new(
                        ErrorKind::InvalidParameter,
                        format!("parameter {name} is not of the form $1, $2, …"),
                    ))
                }
            }
        }
        Ok((1..=max)
            .map(|n| types.get(&format!("${n}")).cloned().flatten())
            .collect())
    }

    /// Bind parameter values, then optimize and plan physically.
    pub async fn plan_query(
        &self,
        logical: LogicalPlan,
        params: Vec<ScalarValue>,
        session: &SessionInfo,
    ) -> Result<PlannedQuery, QueryError> {
        self.physical(&self.optimize(logical, params, session)?)
            .await
    }

    /// Bind parameter values and optimize: the plan the result cache fingerprints.
    pub fn optimize(
        &self,
        logical: LogicalPlan,
        params: Vec<ScalarValue>,
        session: &SessionInfo,
    ) -> Result<OptimizedQuery, QueryError> {
        let logical = if params.is_empty() {
            logical
        } else {
            logical
                .with_param_values(ParamValues::from(params))
                .map_err(|e| {
                    QueryError::new(ErrorKind::InvalidParameter, error::classify(&e).message)
                })?
        };
        let schema = Arc::new(logical.schema().as_arrow().clone());
        // Each query gets its own start time: `now()` and friends are folded into constants
        // here, once, so every worker and every row sees the same instant.
        let cached = self.session_state(session)?;
        if let LogicalPlan::Explain(_) = logical {
            // DataFusion's EXPLAIN shows each rule's plan: its own optimize does that.
            let mut state = cached.state.as_ref().clone();
            let options = state.config_options().clone();
            state.execution_props_mut().mark_start_execution(options);
            let optimized = state.optimize(&logical).map_err(QueryError::from)?;
            return Ok(OptimizedQuery {
                schema,
                plan: optimized,
                state: Arc::new(state),
                task: None,
            });
        }
        let query = QueryStart::new(&cached.state);
        let analyzed = cached
            .state
            .analyzer()
            .execute_and_check(logical, cached.state.config_options(), |_, _| {})
            .map_err(QueryError::from)?;
        let optimized = cached
            .state
            .optimizer()
            .optimize(analyzed, &query, |_, _| {})
            .map_err(QueryError::from)?;
        Ok(OptimizedQuery {
            schema,
            plan: optimized,
            state: cached.state.clone(),
            task: Some(cached.task.clone()),
        })
    }

    /// Check that the session may read every data table `plan` reads (views and subqueries
    /// included): planning does, and so does every reuse of a plan made for another session.
    pub fn authorize(&self, plan: &LogicalPlan, session: &SessionInfo) -> Result<(), QueryError> {
        if session.access.reads_all() {
            return Ok(());
        }
        authorize(
            plan,
            (catalog(), &self.default_schema(session)),
            &session.access,
        )
    }

    /// What a query's answer depends on, if the result cache may keep it (see
    /// [`cache_key::cacheability`]); names resolve as the session would resolve them.
    pub fn cache_reads(
        &self,
        plan: &LogicalPlan,
        session: &SessionInfo,
    ) -> Result<cache_key::Reads, String> {
        cache_key::cacheability(plan, (catalog(), &self.default_schema(session)))
    }

    /// The data tables a plan reads, when its plans may be kept for the statement's next
    /// executions ([`reuse::reusable_reads`]); names resolve as the session would resolve them.
    pub fn reusable_reads(
        &self,
        plan: &LogicalPlan,
        session: &SessionInfo,
    ) -> Option<Vec<cache_key::DataTable>> {
        reuse::reusable_reads(plan, (catalog(), &self.default_schema(session)))
    }

    /// The schema unqualified table names resolve in: the first of `search_path` that
    /// exists.
    fn default_schema(&self, session: &SessionInfo) -> String {
        session
            .search_path()
            .into_iter()
            .find(|s| self.pg.names.namespaces.values().any(|n| n == s))
            .unwrap_or_else(|| self.base.config_options().catalog.default_schema.clone())
    }

    /// The physical plan of an optimized query.
    pub async fn physical(&self, query: &OptimizedQuery) -> Result<PlannedQuery, QueryError> {
        let state: &SessionState = &query.state;
        let physical = state
            .query_planner()
            .create_physical_plan(&query.plan, state)
            .await
            .map_err(QueryError::from)?;
        // One output stream per query: the worker answers with a single ordered stream.
        let physical: Arc<dyn ExecutionPlan> =
            if physical.output_partitioning().partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(physical))
            } else {
                physical
            };
        Ok(PlannedQuery {
            schema: query.schema.clone(),
            physical,
        })
    }

    /// Run a plan in this process (catalog queries: see [`Planner::reads_data`]), with the
    /// state it was optimized in (the session's, its start time marked: no second copy of
    /// the session state per statement).
    pub fn run_locally(
        &self,
        planned: &PlannedQuery,
        optimized: &OptimizedQuery,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let task = match &optimized.task {
            Some(task) => task.clone(),
            None => optimized.state.task_ctx(),
        };
        datafusion::physical_plan::execute_stream(planned.physical.clone(), task)
            .map_err(QueryError::from)
    }

    /// Whether a plan reads data tables (and so runs on a worker). Plans that read only
    /// pg_catalog / information_schema, table functions, or no table at all, are answered
    /// by the gateway.
    pub fn reads_data(plan: &LogicalPlan) -> bool {
        PlanReads::of(plan).data
    }

    /// The state plans are made with (for the worker side of tests and benchmarks).
    pub fn base_state(&self) -> &SessionState {
        &self.base
    }

    /// The reported schema with, for each column that is a table's column as it is (not
    /// computed), the table's OID and the column's number in field metadata
    /// ([`pg_catalog::types::TABLE_OID_KEY`], [`pg_catalog::types::ATTNUM_KEY`]): pg's
    /// RowDescription carries them, and PgJDBC / psqlODBC look up nullability by them.
    pub fn with_column_origins(&self, plan: &LogicalPlan, schema: SchemaRef) -> SchemaRef {
        use datafusion::arrow::datatypes::{Field, Schema};
        use pg_catalog::types::{ATTNUM_KEY, TABLE_OID_KEY};
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let origin = column_origin(plan, i).and_then(|(table, column)| {
                    let schema_name = table.schema().unwrap_or(DEFAULT_SCHEMA);
                    let relation = self
                        .pg
                        .names
                        .relations
                        .iter()
                        .find(|r| r.schema == schema_name && r.name == table.table())?;
                    let attnum = relation.columns.iter().position(|c| c.name == column)?;
                    Some((relation.oid, attnum + 1))
                });
                match origin {
                    Some((oid, attnum)) => {
                        let mut metadata = field.metadata().clone();
                        metadata.insert(TABLE_OID_KEY.into(), oid.to_string());
                        metadata.insert(ATTNUM_KEY.into(), attnum.to_string());
                        field.as_ref().clone().with_metadata(metadata)
                    }
                    None => field.as_ref().clone(),
                }
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// pg_catalog's names and OIDs.
    pub fn pg_names(&self) -> &Arc<pg_catalog::Names> {
        &self.pg.names
    }
}

/// The table and column an output column passes through unchanged, if any.
fn column_origin(
    plan: &LogicalPlan,
    index: usize,
) -> Option<(datafusion::common::TableReference, String)> {
    use datafusion::logical_expr::Expr;
    match plan {
        LogicalPlan::TableScan(scan) => {
            let field = plan.schema().field(index);
            Some((scan.table_name.clone(), field.name().clone()))
        }
        LogicalPlan::Projection(projection) => {
            let mut expr = projection.expr.get(index)?;
            if let Expr::Alias(alias) = expr {
                expr = alias.expr.as_ref();
            }
            let Expr::Column(column) = expr else {
                return None;
            };
            let input = projection.input.as_ref();
            let at = input.schema().index_of_column(column).ok()?;
            column_origin(input, at)
        }
        LogicalPlan::SubqueryAlias(alias) => column_origin(&alias.input, index),
        LogicalPlan::Filter(filter) => column_origin(&filter.input, index),
        LogicalPlan::Sort(sort) => column_origin(&sort.input, index),
        LogicalPlan::Limit(limit) => column_origin(&limit.input, index),
        _ => None,
    }
}

/// Refuse a statement deeper or larger than the limits (every kind of statement that
/// holds SQL expressions or queries).
/// The state a Databricks session starts from: `base` with Spark's functions over
/// DataFusion's builtins of the same names and Spark's operators planned first.
fn databricks_state(base: &SessionState) -> Result<SessionState, QueryError> {
    let mut planners = spark::operators::expr_planners();
    planners.extend(base.expr_planners().iter().cloned());
    let mut state = SessionStateBuilder::new_from_existing(base.clone())
        .with_expr_planners(planners)
        .build();
    spark::functions::register(&mut state).map_err(QueryError::from)?;
    bounded::bound_registry(&mut state).map_err(QueryError::from)?;
    Ok(state)
}

fn check_shape(limits: &Limits, statement: &Statement) -> Result<(), QueryError> {
    use datafusion::sql::parser::CopyToSource;
    match statement {
        Statement::Statement(sql) => limits.check_statement(sql.as_ref()),
        Statement::Explain(explain) => check_shape(limits, &explain.statement),
        Statement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(query) => limits.check_statement(query.as_ref()),
            CopyToSource::Relation(_) => Ok(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => Ok(()),
    }
}

/// Refuse a plan that reads a table the session has no grant on: every table scan counts,
/// in joins, subqueries, CTEs, `EXPLAIN` and the plans of views. pg_catalog,
/// information_schema and table functions are open to every session.
pub(crate) fn authorize(
    plan: &LogicalPlan,
    defaults: (&str, &str),
    access: &Access,
) -> Result<(), QueryError> {
    if access.reads_all() {
        return Ok(());
    }
    let (catalog, schema) = defaults;
    let mut denied: Option<QueryError> = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if let Some(view) = scan.source.get_logical_plan() {
            // A view's names resolve as they did when it was planned, not in the reader's
            // search_path.
            if let Err(e) = authorize(&view, view_defaults(), access) {
                denied = Some(e);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        let is_data = datafusion::datasource::source_as_provider(&scan.source)
            .map(|p| catalog::is_data_table(p.as_ref()))
            .unwrap_or(true);
        let mut name = scan.table_name.clone().resolve(catalog, schema);
        // A time-travel reference (`sales@v3`) reads the table it names.
        if let Some((base, _)) = name.table.rsplit_once('@') {
            name.table = base.into();
        }
        if is_data && !access.can_read(&name.catalog, &name.schema, &name.table) {
            denied = Some(QueryError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "permission denied for table {}.{}: {} has no SELECT grant on {name}",
                    name.schema,
                    name.table,
                    access.who()
                ),
            ));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    denied.map_or(Ok(()), Err)
}

/// The result schema with output columns named the way PostgreSQL names them: an
/// unaliased function call after the function (`count`, not `count(*)`), a column after the
/// column, a cast after its operand or type, anything else `?column?`. psql headers, BI
/// tools and `cursor.description` show these names. Only the reported names change (they
/// may repeat, as in PostgreSQL); the plan keeps DataFusion's unique names.
/// `CAST(1 AS INTEGER)` in the output list (PostgreSQL's int4 constants, see
/// `compat::int4_output_constants`) as the int4 literal it is. Left to the optimizer, the
/// fold is a change in its first pass, which costs a second pass over the whole plan — for
/// `SELECT 1`, most of what planning it costs.
fn fold_output_casts(plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::{Cast, Expr};
    let fold = |expr: Expr| -> datafusion::error::Result<Transformed<Expr>> {
        let folded = match &expr {
            Expr::Alias(alias) => match alias.expr.as_ref() {
                // A cast that pins a PostgreSQL type (`'x'::name`) keeps it in its field.
                Expr::Cast(Cast { expr: inner, field }) if field.metadata().is_empty() => {
                    match inner.as_ref() {
                        Expr::Literal(value, metadata) => value
                            .cast_to(field.data_type())
                            .ok()
                            .map(|v| (alias.clone(), v, metadata.clone())),
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        };
        Ok(match folded {
            Some((mut alias, value, metadata)) => {
                alias.expr = Box::new(Expr::Literal(value, metadata));
                Transformed::yes(Expr::Alias(alias))
            }
            None => Transformed::no(expr),
        })
    };
    // Most statements have nothing to fold: look before rebuilding (no plan copy).
    let LogicalPlan::Projection(projection) = &plan else {
        return Ok(plan);
    };
    let foldable = projection.expr.iter().any(|e| {
        matches!(e, Expr::Alias(a) if matches!(a.expr.as_ref(),
            Expr::Cast(Cast { expr, field }) if field.metadata().is_empty()
                && matches!(expr.as_ref(), Expr::Literal(..))))
    });
    if !foldable {
        return Ok(plan);
    }
    plan.map_expressions(fold)
        .map(|t| t.data)
        .map_err(QueryError::from)
}

/// What a plan reads, found in one walk (with its subqueries).
#[derive(Debug, Default)]
pub(crate) struct PlanReads {
    /// A data table (it runs on a worker).
    pub(crate) data: bool,
    /// Any table (a catalog one counts).
    pub(crate) table: bool,
}

impl PlanReads {
    pub(crate) fn of(plan: &LogicalPlan) -> Self {
        let mut reads = Self::default();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                reads.table = true;
                reads.data |= datafusion::datasource::source_as_provider(&scan.source)
                    .map(|p| catalog::is_data_table(p.as_ref()))
                    .unwrap_or(true);
            }
            Ok(if reads.data {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        reads
    }
}

/// PostgreSQL's OID-alias types (`regclass`, `regproc`, …) are sent as the object's name
/// in text and as its OID in binary. An output column of one of those types (its field
/// pins the type: a catalog column such as `pg_type.typinput`, or `x::regclass`) becomes
/// `{oid, name}`, which the pg front-end sends as either. Catalog and table-free queries
/// of pg sessions only: the name functions are the session's, and the gateway runs them.
fn reg_output(plan: LogicalPlan, state: &SessionState) -> Result<LogicalPlan, QueryError> {
    use datafusion::common::Column;
    use datafusion::logical_expr::expr::{FieldMetadata, ScalarFunction};
    use datafusion::logical_expr::{lit, Expr};
    use pg_catalog::types::{reg_out_function, PG_TYPE_KEY, REG_NAME_FIELD, REG_OID_FIELD};
    let schema = plan.schema().clone();
    let out = |field: &datafusion::arrow::datatypes::Field| {
        let oid: u32 = field.metadata().get(PG_TYPE_KEY)?.parse().ok()?;
        let function = reg_out_function(oid)?;
        (field.data_type() == &DataType::UInt32)
            .then(|| state.scalar_functions().get(function).cloned())
            .flatten()
    };
    if !schema.fields().iter().any(|f| out(f).is_some()) {
        return Ok(plan);
    }
    let exprs = schema.iter().map(|(qualifier, field)| {
        let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        let Some(function) = out(field) else {
            return column;
        };
        let name = Expr::ScalarFunction(ScalarFunction::new_udf(function, vec![column.clone()]));
        let pair = datafusion::functions::core::expr_fn::named_struct(vec![
            lit(REG_OID_FIELD),
            column,
            lit(REG_NAME_FIELD),
            name,
        ]);
        let metadata = FieldMetadata::from(field.metadata().clone());
        pair.alias_qualified_with_metadata(qualifier.cloned(), field.name(), Some(metadata))
    });
    LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(QueryError::from)
}

pub fn postgres_names(statement: &Statement, schema: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::sql::sqlparser::ast::{SelectItem, Statement as Sql};

    let Statement::Statement(sql) = statement else {
        return schema.clone();
    };
    let Sql::Query(query) = sql.as_ref() else {
        return schema.clone();
    };
    // A set operation's columns are named by its first SELECT, as in PostgreSQL.
    let Some(select) = compat::leftmost_select(query) else {
        return schema.clone();
    };
    let mut names = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) => names.push(Some(pg_expr_name(expr))),
            SelectItem::ExprWithAlias { expr, alias }
                if alias.value.starts_with(compat::DUPLICATE_ALIAS) =>
            {
                names.push(Some(pg_expr_name(expr)))
            }
            // A rewritten expression, named as PostgreSQL names it as written.
            SelectItem::ExprWithAlias { alias, .. }
                if alias.value.starts_with(compat::NAME_ALIAS) =>
            {
                let rest = &alias.value[compat::NAME_ALIAS.len()..];
                names.push(Some(
                    rest.split_once('_')
                        .map_or(rest, |(_, name)| name)
                        .to_string(),
                ))
            }
            SelectItem::ExprWithAlias { .. } => names.push(None),
            // A wildcard expands to several columns: keep the plan's names.
            _ => return schema.clone(),
        }
    }
    if names.len() != schema.fields().len() {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) => field.as_ref().clone().with_name(name),
            None => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The name PostgreSQL gives an unaliased select-list expression (its FigureColname).
pub(crate) fn pg_expr_name(expr: &datafusion::sql::sqlparser::ast::Expr) -> String {
    pg_name(expr).0
}

/// A name and how strong it is, as PostgreSQL weighs them: 2 for a column or function
/// name, 1 for a type name or `case`, 0 for `?column?`. A CASE takes its ELSE's name, and a
/// cast its operand's, only when that one is strong.
fn pg_name(expr: &datafusion::sql::sqlparser::ast::Expr) -> (String, u8) {
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem};
    let unnamed = || ("?column?".to_string(), 0);
    match expr {
        Expr::Identifier(ident) => (
            ident
                .value
                .to_lowercase_if_unquoted(ident.quote_style.is_some()),
            2,
        ),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|i| (i.value.to_lowercase_if_unquoted(i.quote_style.is_some()), 2))
            .unwrap_or_else(unnamed),
        Expr::Function(f) => {
            let Some(name) = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_lowercase())
            else {
                return unnamed();
            };
            // `x::regclass` and `x::regclass::text`, as the rewrite spells them
            // (`sluice_regclass_in(x)`, `sluice_regclass_out(…)`): named as the casts are, after
            // a column operand, else after the type.
            let reg = name.strip_prefix("sluice_").and_then(|n| {
                n.strip_suffix("_in")
                    .or_else(|| n.strip_suffix("_out").map(|_| "text"))
            });
            match reg {
                Some(reg) => cast_operand(f)
                    .map(|n| (n, 2))
                    .unwrap_or_else(|| (reg.to_string(), 1)),
                None => (name, 2),
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => match pg_name(expr) {
            (_, strength) if strength <= 1 => (pg_type_name(data_type), 1),
            strong => strong,
        },
        Expr::Nested(inner) => pg_name(inner),
        Expr::Case { else_result, .. } => match else_result.as_deref().map(pg_name) {
            Some(strong @ (_, 2)) => strong,
            _ => ("case".into(), 1),
        },
        // A scalar subquery is named by its first column.
        Expr::Subquery(query) => {
            match compat::leftmost_select(query).and_then(|select| select.projection.first()) {
                Some(SelectItem::ExprWithAlias { alias, .. }) => (alias.value.clone(), 2),
                Some(SelectItem::UnnamedExpr(e)) => pg_name(e),
                _ => unnamed(),
            }
        }
        // `NOT EXISTS` is a NOT over it, unnamed.
        Expr::Exists { negated: false, .. } => ("exists".into(), 2),
        Expr::Array(_) => ("array".into(), 2),
        // SQL-syntax functions, by the function PostgreSQL calls.
        Expr::Substring { .. } => ("substring".into(), 2),
        Expr::Trim { .. } => ("btrim".into(), 2),
        Expr::Position { .. } => ("position".into(), 2),
        Expr::Extract { .. } => ("extract".into(), 2),
        Expr::Ceil { .. } => ("ceil".into(), 2),
        Expr::Floor { .. } => ("floor".into(), 2),
        Expr::Overlay { .. } => ("overlay".into(), 2),
        Expr::AtTimeZone { .. } => ("timezone".into(), 2),
        Expr::Interval(_) => ("interval".into(), 1),
        // `s[i]` is named after `s`, `(r).f` after `f`.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field))) => (
                field
                    .value
                    .to_lowercase_if_unquoted(field.quote_style.is_some()),
                2,
            ),
            _ => pg_name(root),
        },
        _ => unnamed(),
    }
}

/// The name PostgreSQL gives a cast's column: the type's own name (`int4` for `integer`,
/// `varchar` for `character varying(3)`, the element's for an array, the last part of a
/// qualified name).
fn pg_type_name(data_type: &datafusion::sql::sqlparser::ast::DataType) -> String {
    let written = data_type.to_string().to_lowercase();
    let mut name = written.trim_end_matches("[]").trim();
    if let Some(open) = name.find('(') {
        let close = name.rfind(')').map_or(name.len(), |c| c + 1);
        let rest = name[close..].trim();
        // `timestamp(2) with time zone`: the precision out, the zone kept.
        return pg_internal_name(&format!("{} {rest}", name[..open].trim()).trim().to_string());
    }
    if let Some((_, last)) = name.rsplit_once('.') {
        name = last;
    }
    pg_internal_name(name.trim_matches('"'))
}

fn pg_internal_name(name: &str) -> String {
    match name {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" => "numeric",
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "time with time zone" => "timetz",
        "time without time zone" => "time",
        other => other,
    }
    .to_string()
}

/// The column a cast-like call's only argument names, if it is a column.
fn cast_operand(f: &datafusion::sql::sqlparser::ast::Function) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(
            e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_)),
        ))] => Some(pg_expr_name(e)),
        _ => None,
    }
}

trait LowercaseUnquoted {
    fn to_lowercase_if_unquoted(&self, quoted: bool) -> String;
}

impl LowercaseUnquoted for String {
    fn to_lowercase_if_unquoted(&self, quoted: bool) -> String {
        if quoted {
            self.clone()
        } else {
            self.to_lowercase()
        }
    }
}

/// `schema.name` split in two.
fn split_name(qualified: &str) -> Result<(&str, &str), QueryError> {
    qualified
        .split_once('.')
        .ok_or_else(|| QueryError::internal(format!("{qualified} is not schema.name")))
}

#[cfg(test)]
mod naming_tests {
    use super::pg_expr_name;
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    /// Names of an unaliased select list, as `postgres_names` gives them.
    fn names(sql: &str) -> Vec<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let Statement::Query(query) = statement else {
            panic!("{sql}")
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("{sql}")
        };
        select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => pg_expr_name(e),
                other => panic!("{other}"),
            })
            .collect()
    }

    /// Each case checked against PostgreSQL 15 (`psql -c`, the column headers).
    #[test]
    fn names_as_postgresql_figures_them() {
        assert_eq!(
            names(
                "SELECT c.relname, count(*), 1, NULL, 'x'::text, c.oid::regclass, \
                 CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::regtype::text END, \
                 CASE WHEN true THEN 1 ELSE 2 END, \
                 (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d), \
                 (SELECT 1 AS one), EXISTS (SELECT 1), ARRAY[1, 2], ARRAY(SELECT 1) FROM pg_class c"
            ),
            [
                "relname",
                "count",
                "?column?",
                "?column?",
                "text",
                "oid",
                "reloftype",
                "case",
                "pg_get_expr",
                "one",
                "exists",
                "array",
                "array"
            ]
        );
    }
}
