//! `system.*`: the warehouse's own state as tables — `system.warehouses`,
//! `system.workers`, `system.queries`, `system.cache`, `system.query_history` — filled at scan time by the gateway through a
//! [`SystemSource`]. Like the catalog tables they are answered in the gateway, from every
//! front-end; which rows a session sees (other principals' queries) is the source's call.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::QueryError;
use crate::session::SessionInfo;

/// The schema the system tables live in.
pub const SYSTEM: &str = "system";

/// One system table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTable {
    Warehouses,
    Workers,
    Queries,
    Cache,
    QueryHistory,
}

impl SystemTable {
    pub const ALL: [SystemTable; 5] = [
        SystemTable::Warehouses,
        SystemTable::Workers,
        SystemTable::Queries,
        SystemTable::Cache,
        SystemTable::QueryHistory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemTable::Warehouses => "warehouses",
            SystemTable::Workers => "workers",
            SystemTable::Queries => "queries",
            SystemTable::Cache => "cache",
            SystemTable::QueryHistory => "query_history",
        }
    }

    /// The table's columns (the source builds its rows to this schema).
    pub fn schema(self) -> SchemaRef {
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let maybe_text = |n: &str| Field::new(n, DataType::Utf8, true);
        let count = |n: &str| Field::new(n, DataType::Int64, false);
        let maybe_count = |n: &str| Field::new(n, DataType::Int64, true);
        let seconds = |n: &str| Field::new(n, DataType::Float64, true);
        let time = |n: &str| {
            Field::new(
                n,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            )
        };
        Arc::new(Schema::new(match self {
            SystemTable::Warehouses => vec![
                text("name"),
                // running | starting | stopped
                text("state"),
                // local | static
                text("launcher"),
                count("min_workers"),
                count("max_workers"),
                count("max_concurrency_per_worker"),
                count("max_queued"),
                seconds("queue_timeout_s"),
                seconds("auto_stop_s"),
                seconds("statement_timeout_s"),
                maybe_count("worker_memory_limit"),
                // Workers taking queries, being started, queries waiting and running.
                count("workers"),
                count("starting"),
                count("queued"),
                count("running"),
                count("scale_ups"),
                count("scale_downs"),
            ],
            SystemTable::Workers => vec![
                text("warehouse"),
                count("worker_id"),
                maybe_count("pid"),
                text("address"),
                // ready | draining | down
                text("state"),
                // Slots the gateway has handed out on this worker.
                count("running"),
                // What the worker itself reported at its last health check.
                maybe_count("worker_running"),
                maybe_count("memory_reserved_bytes"),
                maybe_count("rss_bytes"),
                maybe_count("queries_executed"),
                // The worker's cache of remote Parquet bytes (null: it has none).
                maybe_count("data_cache_hits"),
                maybe_count("data_cache_misses"),
                maybe_count("data_cache_bytes"),
                time("started"),
            ],
            SystemTable::Queries => vec![
                text("query_id"),
                text("warehouse"),
                text("principal"),
                text("protocol"),
                // queued | running
                text("state"),
                maybe_count("worker_id"),
                time("submitted"),
                Field::new("wait_s", DataType::Float64, false),
                seconds("run_s"),
                maybe_text("statement_text"),
                // A distributed query: stages (with the gateway's head stage), tasks, and
                // the workers its tasks run on (`2,3,5`); null on one worker.
                maybe_count("stages"),
                maybe_count("tasks"),
                maybe_text("workers"),
            ],
            SystemTable::Cache => vec![
                text("key"),
                // The data tables it was computed from (empty for a catalog answer).
                text("tables"),
                count("rows"),
                count("bytes"),
                count("hits"),
                time("created"),
                // memory | restored (read back from the persistent tier)
                text("origin"),
                maybe_text("statement_text"),
            ],
            SystemTable::QueryHistory => vec![
                text("statement_id"),
                // Secrets (passwords, keys, tokens) replaced by '***'.
                text("statement_text"),
                text("principal"),
                text("principal_id"),
                // pg | flight | hs2 | rest
                text("protocol"),
                maybe_text("warehouse"),
                maybe_count("worker_id"),
                // FINISHED | FAILED | CANCELED
                text("state"),
                maybe_text("sqlstate"),
                maybe_text("error_message"),
                count("rows"),
                count("bytes"),
                time("start_time"),
                time("end_time"),
                seconds("queued_s"),
                seconds("planning_s"),
                seconds("executing_s"),
                seconds("total_s"),
                // none | hit | shared | restored | miss (ran through the cache)
                text("from_cache"),
                // The gateway (host:pid) that ran it: several may share one store.
                text("gateway"),
                // A distributed query: stages (with the gateway's head stage), tasks, and
                // the workers its tasks ran on (`2,3,5`); null for one on one worker.
                maybe_count("stages"),
                maybe_count("tasks"),
                maybe_text("workers"),
            ],
        }))
    }
}

/// Where the rows of the system tables come from (the gateway).
#[async_trait]
pub trait SystemSource: Send + Sync + std::fmt::Debug {
    /// The rows of `table` as `session` may see them, in [`SystemTable::schema`].
    async fn rows(
        &self,
        table: SystemTable,
        session: &SessionInfo,
    ) -> Result<RecordBatch, QueryError>;
}

/// The `system` schema over a source.
pub fn schema(source: Arc<dyn SystemSource>) -> Result<Arc<dyn SchemaProvider>, QueryError> {
    let schema = MemorySchemaProvider::new();
    for table in SystemTable::ALL {
        schema
            .register_table(
                table.name().to_string(),
                Arc::new(SystemTableProvider {
                    table,
                    source: source.clone(),
                }),
            )
            .map_err(QueryError::from)?;
    }
    Ok(Arc::new(schema))
}

#[derive(Debug)]
struct SystemTableProvider {
    table: SystemTable,
    source: Arc<dyn SystemSource>,
}

#[async_trait]
impl TableProvider for SystemTableProvider {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
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
        let session = state
            .config()
            .get_extension::<SessionInfo>()
            .unwrap_or_default();
        let batch = self
            .source
            .rows(self.table, &session)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.table.schema(),
            projection.cloned(),
        )?)
    }
}
