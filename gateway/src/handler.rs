//! The handler: the one place where database behaviour lives.
//!
//! Front-ends (pg, Flight SQL, HS2 and the Statement Execution API) decode their wire protocol into calls on
//! [`Handler`] and encode what comes back. They never plan, authorize or pick workers.
//!
//! ```text
//!  front-end ──authenticate(token)──► Principal
//!            ──prepare(session, sql)─► [Prepared]      (parse + plan; params still open)
//!            ──execute(session, p, params)─► Outcome   (rows stream from a worker, or a command tag)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use auth::{AuthError, Authenticator, Grants, Principal};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement as SqlStatement};
use planner::cursor::{CursorCommand, Direction};
use planner::{catalog, Access, ErrorKind, Planner, QueryError};
use tracing::Instrument;
use workers::{BatchStream, QueryMeta};

use crate::activity::{tracked_stream, Activity, StatementInfo};
use crate::cache::ResultCache;
use crate::databricks_sql;
use crate::deadline::{timed_out, with_deadline};
use crate::kept::{Kept, KeptPlans};
use crate::keys;
use crate::session::{Session, WAREHOUSE_SETTING};
use crate::warehouses::Warehouses;

/// A statement parsed and planned, ready to run once its parameters are known.
// A session holds a few of these: the size of the query variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A query that runs on a worker.
    Query {
        /// The statement as planned (for `system.queries`), at most [`TEXT_LIMIT`] bytes.
        text: String,
        logical: LogicalPlan,
        schema: SchemaRef,
        /// Types of `$1…$n` as the planner inferred them (None: unknown, taken as text).
        param_types: Vec<Option<DataType>>,
        /// `COPY (query) TO STDOUT`: the rows go out in this format instead.
        copy: Option<CopyFormat>,
        /// What the result cache needs, when it may keep the answer.
        cache: Option<Arc<CacheHint>>,
        /// The statement, planned again when the catalog changed since (a table dropped
        /// or redefined under a prepared statement).
        statement: Arc<DfStatement>,
        /// The catalog generation it was planned against (`Catalog::current_planner`).
        generation: u64,
        /// The grants it was authorized under (None: the session reads everything). Other
        /// grants in force (a reload revoked one) plan and authorize it again.
        grants: Option<auth::GrantsVersion>,
        /// Plans of earlier executions, when they may serve the next ones.
        kept: Option<Arc<KeptPlans>>,
    },
    /// A statement about the session, answered by the gateway.
    Session(SessionCommand),
    /// `DECLARE name CURSOR … FOR query`: the query starts, its rows wait in the session.
    Declare {
        cursor: CursorDeclaration,
        query: Box<Prepared>,
    },
}

/// What a DECLARE says of its cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorDeclaration {
    pub name: String,
    pub hold: bool,
    pub binary: bool,
    /// The statement as `pg_cursors` shows it.
    pub text: String,
}

impl Prepared {
    /// The columns the statement returns (empty for commands).
    pub fn schema(&self) -> SchemaRef {
        match self {
            Prepared::Query { schema, .. } => schema.clone(),
            Prepared::Session(SessionCommand::Show(name)) => show_schema(name),
            Prepared::Session(SessionCommand::Fetch { schema, .. }) => schema.clone(),
            Prepared::Session(SessionCommand::Conf { show, .. }) if !show.is_empty() => {
                conf_schema()
            }
            Prepared::Session(_) | Prepared::Declare { .. } => Arc::new(Schema::empty()),
        }
    }

    pub fn param_types(&self) -> &[Option<DataType>] {
        match self {
            Prepared::Query { param_types, .. } => param_types,
            Prepared::Declare { query, .. } => query.param_types(),
            Prepared::Session(_) => &[],
        }
    }
}

/// How `COPY … TO STDOUT` writes rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    /// PostgreSQL's binary COPY format (`PGCOPY`, each value in its binary form): what
    /// the ADBC PostgreSQL driver reads every result with.
    pub binary: bool,
    pub csv: bool,
    pub header: bool,
    pub delimiter: u8,
    pub null: String,
}

impl CopyFormat {
    fn from_options(
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
    ) -> Result<Self, QueryError> {
        let unsupported = |what: String| {
            QueryError::new(
                ErrorKind::NotSupported,
                format!("COPY option {what} is not supported"),
            )
        };
        let (mut csv, mut binary) = (false, false);
        let (mut header, mut delimiter, mut null) = (false, None, None);
        for option in options {
            match option {
                ast::CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "csv" => (csv, binary) = (true, false),
                    "text" => (csv, binary) = (false, false),
                    "binary" => (csv, binary) = (false, true),
                    other => return Err(unsupported(format!("FORMAT {other}"))),
                },
                ast::CopyOption::Header(h) => header = *h,
                ast::CopyOption::Delimiter(d) => delimiter = Some(*d),
                ast::CopyOption::Null(n) => null = Some(n.clone()),
                other => return Err(unsupported(other.to_string())),
            }
        }
        for option in legacy {
            match option {
                ast::CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for o in csv_options {
                        match o {
                            ast::CopyLegacyCsvOption::Header => header = true,
                            other => return Err(unsupported(other.to_string())),
                        }
                    }
                }
                ast::CopyLegacyOption::Binary => binary = true,
                ast::CopyLegacyOption::Header => header = true,
                ast::CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
                ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
                other => return Err(unsupported(other.to_string())),
            }
        }
        if binary {
            // PostgreSQL's words for options the binary format has no use for.
            for (given, what) in [
                (header, "HEADER"),
                (delimiter.is_some(), "DELIMITER"),
                (null.is_some(), "NULL"),
            ] {
                if given {
                    return Err(QueryError::new(
                        ErrorKind::Syntax,
                        format!("cannot specify {what} in BINARY mode"),
                    ));
                }
            }
        }
        let delimiter = delimiter.unwrap_or(if csv { ',' } else { '\t' });
        if !delimiter.is_ascii() {
            return Err(QueryError::new(
                ErrorKind::InvalidValue,
                "COPY delimiter must be a single one-byte character",
            ));
        }
        if header && !csv {
            return Err(QueryError::new(
                ErrorKind::NotSupported,
                "COPY HEADER available only in CSV mode",
            ));
        }
        Ok(Self {
            binary,
            csv,
            header,
            delimiter: delimiter as u8,
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
        })
    }
}

/// What the result cache knows of a statement once planned: what its answer depends on and,
/// after its first run without parameters, its optimized plan's fingerprint (so a repeat
/// skips optimizing).
#[derive(Debug)]
pub struct CacheHint {
    pub reads: planner::cache_key::Reads,
    pub fingerprint: OnceLock<Option<[u8; 32]>>,
}

/// Statements planned before, by SQL text and the session context planning reads (user,
/// database, settings), for those whose answers may be cached: BI tools send the same text
/// again and again. Plans hold nothing of the principal (the planner authorizes them again
/// for every session that uses them), and the catalog does not change while the process runs.
#[derive(Debug, Default)]
struct PlanMemo {
    plans: Mutex<HashMap<(String, String), Vec<Prepared>>>,
}

/// Texts the memo keeps at most.
const MEMO_LIMIT: usize = 1024;
/// Longest text the memo keeps (a plan grows with its text, so this and [`MEMO_LIMIT`]
/// bound what the memo holds; BI tools repeat short statements).
const MEMO_TEXT_LIMIT: usize = 16 << 10;

impl PlanMemo {
    fn context(session: &Session) -> String {
        // The front-end too: what a statement means and how its result is typed depend
        // on it (PostgreSQL's or Databricks' dialect, pg's catalog types).
        let mut context = format!(
            "{}\0{}\0{}",
            session.user, session.database, session.protocol
        );
        for (name, value, _) in session.settings.all() {
            context.push('\0');
            context.push_str(&name);
            context.push('=');
            context.push_str(&value);
        }
        context
    }

    /// The statements planned for this text (to be authorized for the session using them).
    fn get(&self, key: &(String, String)) -> Option<Vec<Prepared>> {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.get(key).cloned()
    }

    fn put(&self, key: (String, String), prepared: &[Prepared]) {
        let memoizable = key.0.len() + key.1.len() <= MEMO_TEXT_LIMIT
            && !prepared.is_empty()
            && prepared
                .iter()
                .all(|p| matches!(p, Prepared::Query { cache: Some(_), .. }));
        if !memoizable {
            return;
        }
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if plans.len() >= MEMO_LIMIT {
            if let Some(old) = plans.keys().next().cloned() {
                plans.remove(&old);
            }
        }
        plans.insert(key, prepared.to_vec());
    }
}

/// Session statements the gateway answers itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Set {
        name: String,
        value: String,
    },
    Reset(Option<String>),
    Show(String),
    Begin,
    Commit,
    Rollback,
    /// Statements accepted and ignored in a read-only warehouse, with their command tag.
    Accept(&'static str),
    /// DDL on the catalog managed with SQL (needs the `MANAGE` privilege).
    Catalog(planner::ddl::CatalogChange),
    /// `FETCH`: rows from an open cursor, with the cursor's columns (known when the FETCH
    /// was prepared) and whether it was declared BINARY.
    Fetch {
        name: String,
        direction: Direction,
        schema: SchemaRef,
        binary: bool,
    },
    /// `MOVE`: pass over rows of an open cursor.
    Move {
        name: String,
        direction: Direction,
    },
    /// `CLOSE name`, `CLOSE ALL` (None).
    Close(Option<String>),
    /// Databricks SQL's `SET` / `RESET` ([`databricks_sql::conf`]): settings to set (or, with
    /// None, reset), then the (key, value) rows Spark answers with, if any.
    Conf {
        set: Vec<(String, Option<String>)>,
        show: Vec<(String, String)>,
    },
}

/// What running a statement produced.
pub enum Outcome {
    Rows {
        schema: SchemaRef,
        batches: BatchStream,
        /// The command tag's word (`SELECT`, `FETCH`, `SHOW`): PostgreSQL reports it with
        /// the row count.
        command: &'static str,
    },
    Command {
        tag: String,
    },
    TransactionStart,
    TransactionEnd {
        tag: String,
    },
}

/// Catalog queries for the key calls ([`keys`]): prepared and run like any statement
/// of the session (on a copy of it).
#[async_trait]
impl keys::CatalogRows for dyn Handler {
    async fn catalog_rows(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        use futures::TryStreamExt;
        let mut session = session.clone();
        let mut out = Vec::new();
        for p in self.prepare(&session, sql).await? {
            if let Outcome::Rows { batches, .. } =
                self.execute(&mut session, &p, Vec::new()).await?
            {
                out.extend(batches.try_collect::<Vec<_>>().await?);
            }
        }
        Ok(out)
    }
}

/// Database behaviour shared by all front-ends.
#[async_trait]
pub trait Handler: Send + Sync {
    /// A session for the principal a token stands for (`user` and `database` are what
    /// the client asked for), or why the token was refused.
    async fn login(&self, token: &str, user: &str, database: &str) -> Result<Session, AuthError>;
    /// Parse and plan SQL text (one or more statements).
    async fn prepare(&self, session: &Session, sql: &str) -> Result<Vec<Prepared>, QueryError>;
    /// Run a prepared statement with its parameter values.
    async fn execute(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome, QueryError>;
    /// Run a query for a front-end that sends Arrow on: where a worker runs it, its Arrow
    /// IPC messages come back undecoded.
    async fn execute_arrow(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, ArrowRows), QueryError>;
    /// Whether a warehouse of this name exists (UndefinedObject naming the ones that do).
    fn warehouse(&self, name: &str) -> Result<(), QueryError>;
}

/// A query's rows: record batches, or a worker's Arrow IPC messages (schema first).
pub enum ArrowRows {
    Batches(BatchStream),
    Ipc(workers::FlightStream),
}

impl ArrowRows {
    /// The rows as Arrow IPC messages (batches of `schema` encoded here).
    fn into_ipc(self, schema: datafusion::arrow::datatypes::SchemaRef) -> workers::FlightStream {
        match self {
            ArrowRows::Ipc(messages) => messages,
            ArrowRows::Batches(batches) => workers::encode(schema, batches),
        }
    }
}

/// How much of a statement's text `system.queries` and the history keep.
const TEXT_LIMIT: usize = 4096;

/// A statement's text cut to [`TEXT_LIMIT`] bytes.
fn truncated(text: &str) -> String {
    if text.len() <= TEXT_LIMIT {
        return text.to_string();
    }
    let mut end = TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The handler of a gateway: planner, warehouses, authenticator and grants together.
pub struct Engine {
    pub warehouses: Arc<Warehouses>,
    pub authenticator: Arc<Authenticator>,
    pub grants: Arc<Grants>,
    pub cache: Arc<ResultCache>,
    /// Running statements, history, metrics.
    pub activity: Arc<Activity>,
    /// The tables and views, and what changes them (SIGHUP, DDL, other gateways).
    pub catalog: Arc<crate::catalog::Catalog>,
    memo: PlanMemo,
    /// `[limits]`: how long a query answered in the gateway may run, and the quotas.
    pub limits: crate::limits::Limits,
    /// The catalog generation the memo and the result cache hold answers for: when the
    /// catalog's moves on, both are emptied before anything is planned against it.
    seen_generation: AtomicU64,
    id_prefix: u64,
    next_query: AtomicU64,
}

/// The role that, on a static token (the operator's own: the dev token, `[[auth.tokens]]`),
/// reads every table without grants.
pub const ADMIN_ROLE: &str = "admin";

impl Engine {
    pub fn new(
        warehouses: Arc<Warehouses>,
        authenticator: Arc<Authenticator>,
        grants: Arc<Grants>,
        cache: Arc<ResultCache>,
        activity: Arc<Activity>,
        catalog: Arc<crate::catalog::Catalog>,
        limits: crate::limits::Limits,
    ) -> Self {
        Self {
            limits,
            warehouses,
            authenticator,
            grants,
            cache,
            activity,
            catalog,
            memo: PlanMemo::default(),
            seen_generation: AtomicU64::new(0),
            id_prefix: rand::random::<u64>() >> 16,
            next_query: AtomicU64::new(1),
        }
    }

    /// What a principal may read: everything for an admin static token, else its grants.
    pub fn access(&self, principal: &Principal) -> Access {
        if principal.is_static() && principal.roles.iter().any(|r| r == ADMIN_ROLE) {
            Access::All
        } else {
            Access::granted(principal.clone(), self.grants.clone())
        }
    }

    /// Who runs a statement, for its history record.
    fn statement_info(
        &self,
        session: &Session,
        id: String,
        text: &str,
        warehouse: Option<String>,
    ) -> StatementInfo {
        StatementInfo {
            id,
            text: text.to_string(),
            principal: session.principal.name.clone(),
            principal_id: session.principal.key(),
            protocol: session.protocol,
            warehouse,
        }
    }

    /// The planner over the catalog as it is now.
    pub fn planner(&self) -> Arc<Planner> {
        self.current_planner().0
    }

    /// The planner over the catalog as it is now, and its generation. The first call
    /// after the catalog changed forgets what was planned and answered over the old one.
    fn current_planner(&self) -> (Arc<Planner>, u64) {
        let (planner, generation) = self.catalog.current_planner();
        if self.seen_generation.swap(generation, Ordering::SeqCst) != generation {
            self.memo
                .plans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            self.cache.clear_memory();
            let cache = self.cache.clone();
            tokio::spawn(async move {
                if let Err(e) = cache.clear().await {
                    tracing::warn!(error = %e.message, "the result cache could not be cleared after the catalog changed");
                }
            });
        }
        (planner, generation)
    }

    /// A statement's text as `system.queries`, the history and the logs keep it: cut to
    /// [`TEXT_LIMIT`], with secrets (credentials this gateway accepts among them) replaced.
    fn recorded(&self, sql: &str) -> String {
        // Short literals are no tokens worth the hash (IN lists hold thousands).
        crate::history::redact_with(&truncated(sql), &|literal| {
            literal.len() >= 16 && self.authenticator.is_static_token(literal)
        })
    }

    fn query_id(&self) -> String {
        // Unique across gateways and restarts (a random prefix per process: process ids
        // repeat, in containers every gateway is pid 1), sortable by start order within one.
        format!(
            "q{:012x}-{:06}",
            self.id_prefix,
            self.next_query.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) async fn plan_statement(
        &self,
        session: &Session,
        statement: &DfStatement,
    ) -> Result<Prepared, QueryError> {
        // DataFusion's parser reads RESET itself (`RESET ALL` is the variable "all").
        if let DfStatement::Reset(datafusion::sql::parser::ResetStatement::Variable(name)) =
            statement
        {
            let name = name.to_string().to_ascii_lowercase();
            return Ok(Prepared::Session(SessionCommand::Reset(
                (name != "all").then_some(name),
            )));
        }
        if let DfStatement::Statement(sql) = statement {
            if let Some(command) = session_command(sql)? {
                return Ok(Prepared::Session(command));
            }
            if let Some(CursorCommand::Close(name)) = planner::cursor::close(sql) {
                return Ok(Prepared::Session(SessionCommand::Close(name)));
            }
            if let Some(declaration) = planner::cursor::declaration(sql)? {
                let query =
                    DfStatement::Statement(Box::new(SqlStatement::Query(declaration.query)));
                let query = Box::pin(self.plan_statement(session, &query)).await?;
                if !matches!(query, Prepared::Query { .. }) {
                    return Err(QueryError::new(
                        ErrorKind::Syntax,
                        "a cursor is declared FOR a query",
                    ));
                }
                return Ok(Prepared::Declare {
                    cursor: CursorDeclaration {
                        name: declaration.name,
                        hold: declaration.hold,
                        binary: declaration.binary,
                        text: self.recorded(&sql.to_string()),
                    },
                    query: Box::new(query),
                });
            }
            if let SqlStatement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } = sql.as_ref()
            {
                if !*to || *target != ast::CopyTarget::Stdout {
                    return Err(QueryError::new(
                        ErrorKind::ReadOnly,
                        "only COPY … TO STDOUT is supported: this warehouse is read-only and \
                         the server writes no files",
                    ));
                }
                let format = CopyFormat::from_options(options, legacy_options)?;
                let query = match source {
                    ast::CopySource::Query(query) => {
                        DfStatement::Statement(Box::new(SqlStatement::Query(query.clone())))
                    }
                    ast::CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let columns = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let sql = format!("SELECT {columns} FROM {table_name}");
                        self.planner().parse(&sql)?.pop().ok_or_else(|| {
                            QueryError::new(ErrorKind::Syntax, "COPY needs a table or a query")
                        })?
                    }
                };
                let mut prepared = Box::pin(self.plan_statement(session, &query)).await?;
                if let Prepared::Query { copy, .. } = &mut prepared {
                    *copy = Some(format);
                }
                return Ok(prepared);
            }
        }
        if let Some(mut change) = planner::ddl::catalog_change(statement, &session.database)? {
            if let planner::ddl::CatalogChange::Create {
                object: planner::ddl::CatalogObject::View(view),
                ..
            } = &mut change
            {
                view.databricks = session.databricks_sql();
            }
            return Ok(Prepared::Session(SessionCommand::Catalog(change)));
        }
        let mut info = session.info();
        if is_explain(statement) {
            // EXPLAIN shows the plan the session's warehouse would run, stages and all.
            info.distribution = self
                .warehouses
                .named(&session.warehouse())
                .ok()
                .map(|w| Arc::new(workers::distributed::Explainer(w)) as _);
        }
        let (planner, generation) = self.current_planner();
        let logical = planner.logical_plan(statement, &info).await?;
        let param_types = Planner::parameter_types(&logical)?;
        // A Databricks session's columns keep DataFusion's names of them (an unaliased
        // expression as written); PostgreSQL names them its own way.
        let schema = Arc::new(logical.schema().as_arrow().clone());
        let schema = if session.databricks_sql() {
            schema
        } else {
            planner::postgres_names(statement, &schema)
        };
        let schema = planner.with_column_origins(&logical, schema);
        let rendered = statement.to_string();
        let text = self.recorded(&rendered);
        let cache = if self.cache.config().enabled {
            match planner.cache_reads(&logical, &info) {
                Ok(reads) => Some(Arc::new(CacheHint {
                    reads,
                    fingerprint: OnceLock::new(),
                })),
                Err(reason) => {
                    tracing::debug!("not cacheable: {reason}");
                    None
                }
            }
        } else {
            None
        };
        // Plans grow with their text: long statements (a generated IN list) are planned
        // each time rather than kept 32 times over.
        let kept = (rendered.len() <= MEMO_TEXT_LIMIT)
            .then(|| planner.reusable_reads(&logical, &info))
            .flatten()
            .map(|tables| Arc::new(KeptPlans::new(tables)));
        Ok(Prepared::Query {
            text,
            logical,
            schema,
            param_types,
            copy: None,
            cache,
            statement: Arc::new(statement.clone()),
            generation,
            grants: session.access.grants_version(),
            kept,
        })
    }
}

#[async_trait]
impl Handler for Engine {
    async fn login(&self, token: &str, user: &str, database: &str) -> Result<Session, AuthError> {
        let principal = match self.authenticator.authenticate(token).await {
            Ok(principal) => principal,
            Err(e) => {
                if let Some(metrics) = &self.activity.metrics {
                    metrics.auth_failure(e.code());
                }
                return Err(e);
            }
        };
        if principal.groups_overage {
            tracing::warn!(principal = %principal.name, "the token's groups did not fit in it (groups overage): grants to groups do not apply to this principal");
        }
        let access = self.access(&principal);
        let warehouse = self.warehouses.route(&principal, database);
        Ok(Session::new(
            principal,
            access,
            user.to_string(),
            database.to_string(),
            warehouse,
        ))
    }

    async fn prepare(&self, session: &Session, sql: &str) -> Result<Vec<Prepared>, QueryError> {
        let prepared = self.prepare_all(session, sql).await;
        if let Err(e) = &prepared {
            let info = self.statement_info(session, self.query_id(), &self.recorded(sql), None);
            self.activity.failed(info, e);
        }
        prepared
    }

    async fn execute(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome, QueryError> {
        match prepared {
            Prepared::Session(SessionCommand::Catalog(change)) => {
                self.change_catalog(session, change).await
            }
            Prepared::Declare { cursor, query } => {
                self.declare(session, cursor, query, params).await
            }
            Prepared::Session(SessionCommand::Fetch {
                name,
                direction,
                schema,
                ..
            }) => {
                let deadline = self.deadline(session)?;
                let (_, batches) = session.cursors.fetch(name, *direction, deadline).await?;
                Ok(Outcome::Rows {
                    schema: schema.clone(),
                    batches,
                    command: "FETCH",
                })
            }
            Prepared::Session(SessionCommand::Move { name, direction }) => {
                let deadline = self.deadline(session)?;
                let moved = session.cursors.skip(name, *direction, deadline).await?;
                Ok(Outcome::Command {
                    tag: format!("MOVE {moved}"),
                })
            }
            Prepared::Session(command) => {
                if let SessionCommand::Set { name, value } = command {
                    if name == WAREHOUSE_SETTING && !value.is_empty() {
                        self.warehouses.named(value)?;
                    }
                }
                run_session_command(session, command)
            }
            Prepared::Query { .. } => {
                match self
                    .run_query(session, prepared, params, Delivery::Batches)
                    .await?
                {
                    (schema, ArrowRows::Batches(batches)) => Ok(Outcome::Rows {
                        schema,
                        batches,
                        command: "SELECT",
                    }),
                    (_, ArrowRows::Ipc(_)) => Err(QueryError::internal(
                        "undecoded rows for a front-end that needs batches",
                    )),
                }
            }
        }
    }

    async fn execute_arrow(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, ArrowRows), QueryError> {
        self.run_query(session, prepared, params, Delivery::Ipc)
            .await
    }

    fn warehouse(&self, name: &str) -> Result<(), QueryError> {
        self.warehouses.named(name).map(|_| ())
    }
}

impl Engine {
    /// The plan of a Databricks statement for `session`.
    /// The plan of a Databricks statement ([`databricks_sql`]) for `session`.
    async fn prepare_databricks(
        &self,
        session: &Session,
        command: databricks_sql::Command,
    ) -> Result<Vec<Prepared>, QueryError> {
        use databricks_sql::Command;
        let engine = self;
        let sql = match command {
            Command::Use(schema) => {
                self.schema_exists(session, &databricks_sql::literal(&schema))
                    .await?;
                return Ok(vec![Prepared::Session(SessionCommand::Set {
                    name: "search_path".into(),
                    value: schema,
                })]);
            }
            Command::UseCatalog => {
                return Ok(vec![Prepared::Session(SessionCommand::Accept("USE"))])
            }
            Command::Set { key, value } => {
                let current = |setting: &str, default: &str| {
                    session
                        .setting(setting)
                        .unwrap_or_else(|| default.to_string())
                };
                let (set, show) = match (key, value) {
                    (None, _) => (
                        Vec::new(),
                        databricks_sql::confs()
                            .map(|(k, default)| (k.to_string(), current(k, default)))
                            .collect(),
                    ),
                    (Some(key), None) => {
                        let value = match databricks_sql::conf_default(&key) {
                            Some((setting, default)) => current(setting, default),
                            None => session
                                .setting(&key)
                                .unwrap_or_else(|| "<undefined>".into()),
                        };
                        (Vec::new(), vec![(key, value)])
                    }
                    (Some(key), Some(value)) => {
                        let set = databricks_sql::conf(&key, &value)?
                            .into_iter()
                            .map(|(k, v)| (k, Some(v)))
                            .collect();
                        (set, vec![(key, value)])
                    }
                };
                return Ok(vec![Prepared::Session(SessionCommand::Conf { set, show })]);
            }
            Command::Reset(key) => {
                let set = match key {
                    Some(key) => {
                        let setting = databricks_sql::conf_default(&key)
                            .map_or(key.clone(), |(setting, _)| setting.to_string());
                        vec![(setting, None)]
                    }
                    None => databricks_sql::confs()
                        .map(|(k, _)| (k.to_string(), None))
                        .collect(),
                };
                let show = Vec::new();
                return Ok(vec![Prepared::Session(SessionCommand::Conf { set, show })]);
            }
            Command::DescribeQuery(sql) => {
                let mut statements = engine.planner().parse_databricks(&sql)?;
                let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
                    return Err(QueryError::new(
                        ErrorKind::Syntax,
                        "DESCRIBE QUERY describes one query",
                    ));
                };
                let columns = engine.plan_statement(session, &statement).await?.schema();
                column_rows(&columns)
            }
            Command::DescribeSchema(schema) => {
                let name = databricks_sql::literal(&schema);
                self.schema_exists(session, &name).await?;
                format!(
                    "SELECT * FROM (VALUES ('Catalog Name', {}), ('Namespace Name', {name}), \
                     ('Comment', ''), ('Owner', 'sluice')) \
                     AS d(database_description_item, database_description_value)",
                    databricks_sql::literal(catalog())
                )
            }
            Command::Functions(filter) => {
                let names = engine.planner().function_names(&session.info())?;
                let rows: Vec<String> = names
                    .iter()
                    .map(|n| format!("({})", databricks_sql::literal(n)))
                    .collect();
                format!(
                    "SELECT \"function\" FROM (VALUES {}) AS f(\"function\"){} ORDER BY 1",
                    rows.join(", "),
                    filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
                )
            }
            Command::TblProperties(table) => {
                // The table must be one the session may read; sluice keeps no properties.
                self.describe_query(
                    session,
                    databricks_sql::Describe {
                        table,
                        extended: false,
                        column: None,
                        names_only: true,
                        create: false,
                    },
                )
                .await?;
                "SELECT * FROM (VALUES (CAST(NULL AS TEXT), CAST(NULL AS TEXT))) \
                 AS p(\"key\", \"value\") WHERE false"
                    .to_string()
            }
            Command::History { table, limit } => self.history(session, table, limit).await?,
            Command::InSchema { literal, query } => {
                self.schema_exists(session, &literal).await?;
                query
            }
            Command::Query(sql) => sql,
            Command::Describe(describe) => self.describe_query(session, describe).await?,
        };
        let mut prepared = Vec::new();
        for statement in engine.planner().parse(&sql)? {
            prepared.push(engine.plan_statement(session, &statement).await?);
        }
        Ok(prepared)
    }

    /// `[SCHEMA_NOT_FOUND]` unless the schema named by the SQL string `literal` is one the
    /// session sees.
    async fn schema_exists(&self, session: &Session, literal: &str) -> Result<(), QueryError> {
        let found = keys::text_rows(
            self as &dyn Handler,
            session,
            &format!("SELECT 1 FROM information_schema.schemata WHERE schema_name = {literal}"),
        )
        .await?;
        if found.is_empty() {
            let name = literal.trim_matches('\'').replace("''", "'");
            return Err(QueryError::new(
                ErrorKind::UndefinedObject,
                format!(
                    "[SCHEMA_NOT_FOUND] The schema `{}`.`{name}` cannot be found.",
                    catalog()
                ),
            ));
        }
        Ok(())
    }

    /// DESCRIBE's answer as a query of its rows: the table's columns as a read of it is
    /// planned (the one authorization path), its informational keys as the session sees them.
    async fn describe_query(
        &self,
        session: &Session,
        d: databricks_sql::Describe,
    ) -> Result<String, QueryError> {
        use databricks_sql::literal;
        use spark::spark_type;
        let (schema, table, columns) = self.readable_table(session, &d.table).await?;
        let type_name = |t: &DataType| spark_type(t).0.to_lowercase();
        let row = |cells: &[String]| format!("({})", cells.join(", "));
        let values = |rows: Vec<String>, names: &str| {
            format!("SELECT * FROM (VALUES {}) AS d({names})", rows.join(", "))
        };
        if d.names_only {
            let rows = columns
                .fields()
                .iter()
                .map(|f| row(&[literal(f.name())]))
                .collect();
            return Ok(values(rows, "col_name"));
        }
        if let Some(name) = &d.column {
            let field = columns.field_with_name(name).map_err(|_| {
                QueryError::new(
                    ErrorKind::UndefinedColumn,
                    format!(
                        "[UNRESOLVED_COLUMN] A column with name `{name}` cannot be resolved in `{}`.",
                        d.table.join("`.`")
                    ),
                )
            })?;
            let rows = vec![
                row(&[literal("col_name"), literal(field.name())]),
                row(&[literal("data_type"), literal(&type_name(field.data_type()))]),
                // Spark prints a missing comment as the text NULL here.
                row(&[literal("comment"), literal("NULL")]),
            ];
            return Ok(values(rows, "info_name, info_value"));
        }
        if d.create {
            let text = self
                .create_statement(session, &schema, &table, &columns)
                .await?;
            return Ok(values(vec![row(&[literal(&text)])], "createtab_stmt"));
        }
        let mut rows = column_values(&columns);
        if d.extended {
            let view = self.planner().view_definition(&schema, &table).await;
            let detail =
                |name: &str, value: &str| row(&[literal(name), literal(value), literal("")]);
            rows.push(detail("", ""));
            rows.push(detail("# Detailed Table Information", ""));
            rows.push(detail("Catalog", catalog()));
            rows.push(detail("Database", &schema));
            rows.push(detail("Table", &table));
            rows.push(detail(
                "Type",
                if view.is_some() { "VIEW" } else { "EXTERNAL" },
            ));
            if let Some(format) = self.planner().table_format(&schema, &table).await {
                rows.push(detail("Provider", &format));
            }
            let constraints = self.constraints(session, &schema, &table).await?;
            if !constraints.is_empty() {
                rows.push(detail("", ""));
                rows.push(detail("# Constraints", ""));
                rows.extend(constraints.iter().map(|(name, text)| detail(name, text)));
            }
        }
        Ok(values(rows, "col_name, data_type, comment"))
    }

    /// A table the session may read, named as a Databricks statement names it (`t` in the
    /// first schema of the search path, or `s.t`): its schema, name and columns, from a read
    /// of it planned — the one authorization path. A table the session may not read is
    /// refused as any read of it is; one that does not exist is
    /// `[TABLE_OR_VIEW_NOT_FOUND]`.
    async fn readable_table(
        &self,
        session: &Session,
        table: &[String],
    ) -> Result<(String, String, SchemaRef), QueryError> {
        use databricks_sql::ident;
        let not_found = || {
            QueryError::new(
                ErrorKind::UndefinedTable,
                format!(
                    "[TABLE_OR_VIEW_NOT_FOUND] The table or view `{}` cannot be found.",
                    table.join("`.`")
                ),
            )
        };
        let qualified: Vec<String> = table.iter().map(|p| ident(p)).collect();
        let read = self
            .planner()
            .parse(&format!("SELECT * FROM {}", qualified.join(".")))?
            .pop()
            .ok_or_else(|| QueryError::internal("DESCRIBE: no statement"))?;
        let columns = match self.plan_statement(session, &read).await {
            Ok(prepared) => prepared.schema(),
            Err(e) if e.kind == ErrorKind::UndefinedTable => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let (schema, name) = match table {
            [schema, name] => (schema.clone(), name.clone()),
            [name] => (
                session
                    .info()
                    .search_path()
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "public".into()),
                name.clone(),
            ),
            _ => return Err(not_found()),
        };
        Ok((schema, name, columns))
    }

    /// DESCRIBE HISTORY's answer: a Delta table's commits as Databricks lists them, newest
    /// first, for a session that may read the table.
    async fn history(
        &self,
        session: &Session,
        table: Vec<String>,
        limit: usize,
    ) -> Result<String, QueryError> {
        use databricks_sql::literal;
        // The table must be one the session may read (planned as DESCRIBE plans it).
        let (schema, name, _) = self.readable_table(session, &table).await?;
        let Some(commits) = self.planner().delta_history(&schema, &name, limit).await? else {
            return Err(QueryError::new(
                ErrorKind::NotSupported,
                format!(
                    "[DELTA_ONLY_OPERATION] DESCRIBE HISTORY is only supported for Delta tables: \
                     `{schema}`.`{name}` is not one"
                ),
            ));
        };
        let text = |v: &Option<String>| v.as_deref().map_or("CAST(NULL AS TEXT)".into(), literal);
        let map = |pairs: &[(String, String)]| {
            if pairs.is_empty() {
                return "NULL".to_string();
            }
            let (keys, values): (Vec<String>, Vec<String>) =
                pairs.iter().map(|(k, v)| (literal(k), literal(v))).unzip();
            format!(
                "map(make_array({}), make_array({}))",
                keys.join(", "),
                values.join(", ")
            )
        };
        let or_null = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
        let rows: Vec<String> = commits
            .iter()
            .map(|c| {
                format!(
                    "(CAST({} AS BIGINT), {}, {}, {}, {}, {}, CAST(NULL AS TEXT), \
                     CAST(NULL AS TEXT), CAST(NULL AS TEXT), {}, {}, {}, {}, {}, {})",
                    c.version,
                    or_null(c.timestamp.map(|t| format!("to_timestamp_millis({t})"))),
                    text(&c.user_id),
                    text(&c.user_name),
                    text(&c.operation),
                    map(&c.operation_parameters),
                    or_null(c.read_version.map(|v| format!("CAST({v} AS BIGINT)"))),
                    text(&c.isolation_level),
                    or_null(c.is_blind_append.map(|b| b.to_string())),
                    map(&c.operation_metrics),
                    text(&c.user_metadata),
                    text(&c.engine_info),
                )
            })
            .collect();
        let columns = "version, \"timestamp\", \"userId\", \"userName\", operation, \
             \"operationParameters\", job, notebook, \"clusterId\", \"readVersion\", \
             \"isolationLevel\", \"isBlindAppend\", \"operationMetrics\", \"userMetadata\", \
             \"engineInfo\"";
        if rows.is_empty() {
            // No commit left to read: the columns, no rows.
            return Ok(format!(
                "SELECT * FROM (VALUES (CAST(NULL AS BIGINT), CAST(NULL AS TIMESTAMP), {}, \
                 NULL, CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS TEXT), \
                 CAST(NULL AS BIGINT), CAST(NULL AS TEXT), CAST(NULL AS BOOLEAN), NULL, {})) \
                 AS h({columns}) WHERE false",
                ["CAST(NULL AS TEXT)"; 3].join(", "),
                ["CAST(NULL AS TEXT)"; 2].join(", "),
            ));
        }
        Ok(format!(
            "SELECT * FROM (VALUES {}) AS h({columns})",
            rows.join(", ")
        ))
    }

    /// A table's informational keys as Databricks lists its constraints: (name,
    /// `PRIMARY KEY (…)` / `FOREIGN KEY (…) REFERENCES c.s.t (…)`), only keys whose tables
    /// the session may read.
    async fn constraints(
        &self,
        session: &Session,
        schema: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, QueryError> {
        let quote = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("`{}`", n.replace('`', "``")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut constraints = Vec::new();
        let mut primary: Vec<(String, Vec<String>)> = Vec::new();
        for k in keys::primary_keys(self as &dyn Handler, session).await? {
            if k.schema == schema && k.table == table {
                match primary.iter_mut().find(|(n, _)| *n == k.name) {
                    Some((_, columns)) => columns.push(k.column),
                    None => primary.push((k.name, vec![k.column])),
                }
            }
        }
        for (name, columns) in primary {
            constraints.push((name, format!("PRIMARY KEY ({})", quote(&columns))));
        }
        let mut foreign: Vec<(String, Vec<String>, [String; 2], Vec<String>)> = Vec::new();
        for k in keys::foreign_keys(self as &dyn Handler, session).await? {
            if k.fk_schema == schema && k.fk_table == table {
                match foreign.iter_mut().find(|f| f.0 == k.fk_name) {
                    Some(f) => {
                        f.1.push(k.fk_column);
                        f.3.push(k.pk_column);
                    }
                    None => foreign.push((
                        k.fk_name,
                        vec![k.fk_column],
                        [k.pk_schema, k.pk_table],
                        vec![k.pk_column],
                    )),
                }
            }
        }
        for (name, columns, [ref_schema, ref_table], ref_columns) in foreign {
            let target = [catalog().to_string(), ref_schema, ref_table]
                .iter()
                .map(|n| quote(std::slice::from_ref(n)))
                .collect::<Vec<_>>()
                .join(".");
            let text = format!(
                "FOREIGN KEY ({}) REFERENCES {target} ({})",
                quote(&columns),
                quote(&ref_columns)
            );
            constraints.push((name, text));
        }
        Ok(constraints)
    }

    /// SHOW CREATE TABLE's statement, in Spark's layout: a view's columns and query; a
    /// table's columns (Spark's types, NOT NULL), its informational keys and its format
    /// (`USING parquet`). Its location is not shown: a file path on the server is not the
    /// client's to know (the data dir is kept out of SQL's reach).
    async fn create_statement(
        &self,
        session: &Session,
        schema: &str,
        table: &str,
        columns: &Schema,
    ) -> Result<String, QueryError> {
        let ident = |n: &str| format!("`{}`", n.replace('`', "``"));
        let name = [catalog(), schema, table].map(ident).join(".");
        if let Some(query) = self.planner().view_definition(schema, table).await {
            let names: Vec<String> = columns
                .fields()
                .iter()
                .map(|f| format!("  {}", ident(f.name())))
                .collect();
            return Ok(format!(
                "CREATE VIEW {name} (\n{})\nAS {query}\n",
                names.join(",\n")
            ));
        }
        let mut lines: Vec<String> = columns
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "  {} {}{}",
                    ident(f.name()),
                    spark::spark_type(f.data_type()).0,
                    if f.is_nullable() { "" } else { " NOT NULL" }
                )
            })
            .collect();
        for (constraint, text) in self.constraints(session, schema, table).await? {
            lines.push(format!("  CONSTRAINT {} {text}", ident(&constraint)));
        }
        let mut text = format!("CREATE TABLE {name} (\n{})\n", lines.join(",\n"));
        if let Some(format) = self.planner().table_format(schema, table).await {
            text.push_str(&format!("USING {format}\n"));
        }
        Ok(text)
    }

    /// Plan every statement of a text (from the memo when it planned it before).
    async fn prepare_all(&self, session: &Session, sql: &str) -> Result<Vec<Prepared>, QueryError> {
        // First: a catalog that changed empties the memo before it is read.
        let planner = self.planner();
        // Databricks SQL's SHOW, DESCRIBE and USE (never memoized: DESCRIBE's rows are
        // read when it is planned).
        if session.databricks_sql() && databricks_sql::may_be_command(sql) {
            planner.limits().check_text(sql)?;
            if let Some(command) = databricks_sql::command(sql)? {
                return self.prepare_databricks(session, command).await;
            }
        }
        let memo_key = self
            .cache
            .config()
            .enabled
            .then(|| (sql.to_string(), PlanMemo::context(session)));
        if let Some(key) = &memo_key {
            let grants = session.access.grants_version();
            let current = |p: &Prepared| match p {
                Prepared::Query { grants: g, .. } => *g == grants,
                _ => true,
            };
            if let Some(prepared) = self.memo.get(key).filter(|p| p.iter().all(current)) {
                let info = session.info();
                for statement in &prepared {
                    if let Prepared::Query { logical, .. } = statement {
                        planner.authorize(logical, &info)?;
                    }
                }
                return Ok(prepared);
            }
        }
        if let Some(command) = planner.cursor_command(sql)? {
            return Ok(vec![Prepared::Session(cursor_command(session, command)?)]);
        }
        let statements = if session.databricks_sql() {
            planner.parse_databricks(sql)?
        } else {
            planner.parse(sql)?
        };
        let mut prepared = Vec::with_capacity(statements.len());
        // Statements after a SET in the same message are planned with its value
        // (`SET search_path = tpch; SELECT * FROM nation`), on a copy of the settings: the
        // session's own change when the SET runs.
        let mut ahead: Option<Session> = None;
        for statement in &statements {
            let planned = self
                .plan_statement(ahead.as_ref().unwrap_or(session), statement)
                .await?;
            if let Prepared::Session(SessionCommand::Set { name, value }) = &planned {
                let copy = ahead.get_or_insert_with(|| {
                    let mut copy = session.clone();
                    copy.settings = session.settings.snapshot();
                    copy
                });
                copy.settings.set(name, value.clone());
            }
            prepared.push(planned);
        }
        if let Some(key) = memo_key {
            self.memo.put(key, &prepared);
        }
        Ok(prepared)
    }
}

impl Engine {
    /// Run a DDL statement: who may, then what the catalog makes of it.
    async fn change_catalog(
        &self,
        session: &Session,
        change: &planner::ddl::CatalogChange,
    ) -> Result<Outcome, QueryError> {
        self.activity.refuse_if_draining()?;
        let may = matches!(self.access(&session.principal), Access::All)
            || self.grants.has_privilege(&session.principal, auth::MANAGE);
        if !may {
            return Err(QueryError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "permission denied: {} needs the MANAGE privilege to {}",
                    session.principal.name,
                    change.tag()
                ),
            ));
        }
        self.catalog.change(change, &session.info()).await?;
        tracing::info!(principal = %session.principal.name, change = ?change, "catalog changed");
        Ok(Outcome::Command {
            tag: change.tag().to_string(),
        })
    }

    /// DECLARE: start the cursor's query and keep its rows in the session.
    async fn declare(
        &self,
        session: &mut Session,
        cursor: &CursorDeclaration,
        query: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome, QueryError> {
        if !cursor.hold && !session.in_transaction {
            return Err(QueryError::new(
                ErrorKind::NoTransaction,
                "DECLARE CURSOR can only be used in transaction blocks (BEGIN first, or \
                 declare it WITH HOLD)",
            ));
        }
        let limit = self.limits.max_cursors;
        session.cursors.check_room(&cursor.name, limit)?;
        let (schema, rows) = self
            .run_query(session, query, params, Delivery::Cursor)
            .await?;
        let ArrowRows::Batches(rows) = rows else {
            return Err(QueryError::internal("a cursor's rows came undecoded"));
        };
        let info = crate::cursors::info(&cursor.name, &cursor.text, cursor.hold, cursor.binary);
        let idle = self.limits.cursor_idle_timeout;
        session.cursors.open(info, schema, rows, limit, idle)?;
        Ok(Outcome::Command {
            tag: "DECLARE CURSOR".into(),
        })
    }

    /// The session's `statement_timeout`, else its warehouse's.
    fn statement_limit(
        &self,
        session: &Session,
    ) -> Result<Option<std::time::Duration>, QueryError> {
        Ok(match statement_timeout(session)? {
            Some(limit) => Some(limit),
            None if !session.settings.is_set("statement_timeout") => self
                .warehouses
                .named(&session.warehouse())
                .ok()
                .and_then(|w| w.config().statement_timeout),
            None => None,
        })
    }

    /// When a statement starting now must end (a FETCH or MOVE: each is a statement).
    fn deadline(&self, session: &Session) -> Result<Option<tokio::time::Instant>, QueryError> {
        Ok(self
            .statement_limit(session)?
            .map(|limit| tokio::time::Instant::now() + limit))
    }

    /// Plan a query with its parameters and run it: on a worker if it reads data (its
    /// Arrow IPC messages passed on undecoded for [`Delivery::Ipc`]), else here.
    async fn run_query(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        delivery: Delivery,
    ) -> Result<(SchemaRef, ArrowRows), QueryError> {
        let ipc = delivery == Delivery::Ipc;
        if let Prepared::Query {
            statement,
            generation,
            grants,
            schema,
            copy,
            ..
        } = prepared
        {
            if *generation != self.current_planner().1 || *grants != session.access.grants_version()
            {
                // Planned against a catalog that has changed: plan it again, as PostgreSQL
                // re-plans a cached plan after DDL (a dropped table is an error now). Under
                // other grants it is authorized again the same way.
                let mut fresh = self.plan_statement(session, statement).await?;
                let shape = |s: &SchemaRef| {
                    s.fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect::<Vec<_>>()
                };
                if shape(&fresh.schema()) != shape(schema) {
                    return Err(QueryError::new(
                        ErrorKind::NotSupported,
                        "cached plan must not change result type: a table it reads was \
                         redefined since the statement was prepared; prepare it again",
                    ));
                }
                if let Prepared::Query {
                    copy: fresh_copy, ..
                } = &mut fresh
                {
                    *fresh_copy = copy.clone();
                }
                return Box::pin(self.run_query(session, &fresh, params, delivery)).await;
            }
        }
        match prepared {
            Prepared::Session(_) | Prepared::Declare { .. } => Err(QueryError::new(
                ErrorKind::NotSupported,
                "this statement returns no rows",
            )),
            Prepared::Query {
                text,
                logical,
                param_types,
                cache,
                kept,
                ..
            } => {
                self.activity.refuse_if_draining()?;
                if params.len() != param_types.len() {
                    return Err(QueryError::new(
                        ErrorKind::InvalidParameter,
                        format!(
                            "the statement needs {} parameters, {} were given",
                            param_types.len(),
                            params.len()
                        ),
                    ));
                }
                let query_id = self.query_id();
                let warehouse_name = session.warehouse();
                let span = tracing::info_span!("query", %query_id, principal = %session.principal.name, warehouse = %warehouse_name, protocol = session.protocol);
                let warehouse = self.warehouses.named(&warehouse_name);
                let limit = self.statement_limit(session)?;
                let reads_data = Planner::reads_data(logical);
                // A query answered here runs on the gateway's own threads: never unbounded.
                let limit = match (reads_data, limit) {
                    (true, limit) => limit,
                    (false, Some(limit)) => Some(limit.min(self.limits.gateway_query_timeout)),
                    (false, None) => Some(self.limits.gateway_query_timeout),
                };
                let deadline = limit.map(|limit| tokio::time::Instant::now() + limit);
                let progress = Arc::new(workers::Progress::default());
                let meta = QueryMeta {
                    id: query_id.clone(),
                    principal: session.principal.name.clone(),
                    principal_id: session.principal.key(),
                    protocol: session.protocol.to_string(),
                    text: text.clone(),
                    progress: progress.clone(),
                };
                let mut tracked = self.activity.begin(self.statement_info(
                    session,
                    query_id.clone(),
                    text,
                    reads_data.then(|| warehouse_name.clone()),
                ));
                tracked.set_progress(progress);
                let planner = self.planner();
                let run = async {
                    let info = session.info();
                    let kept = match kept {
                        Some(kept) => {
                            self.kept_plans(&planner, kept, session, logical, &params, &info)
                                .await?
                        }
                        None => None,
                    };
                    let optimized = match self
                        .through_cache(
                            &planner,
                            // A cursor's rows are read a little at a time, often many:
                            // they stream from the worker, never through the cache.
                            cache.as_deref().filter(|_| delivery != Delivery::Cursor),
                            &info,
                            prepared,
                            &params,
                            &meta,
                            &warehouse,
                            ipc,
                            kept.as_ref(),
                        )
                        .await?
                    {
                        Cached::Answered(rows, served) => {
                            return Ok((prepared.schema(), rows, served.as_str()))
                        }
                        Cached::Not(optimized) => optimized,
                    };
                    let optimized = match (optimized, &kept) {
                        (Some(o), _) => o,
                        (None, Some(kept)) => kept.optimized.clone(),
                        (None, None) => planner.optimize(logical.clone(), params, &info)?,
                    };
                    let warehouse = match reads_data {
                        true => Some(warehouse?),
                        false => None,
                    };
                    let rows = run_plan(
                        &planner,
                        &self.in_gateway(),
                        warehouse.as_ref(),
                        meta,
                        &optimized,
                        kept.as_deref(),
                        ipc,
                    )
                    .await?;
                    // Report the names the statement was prepared with (PostgreSQL style).
                    let schema = prepared.schema();
                    debug_assert_eq!(schema.fields().len(), optimized.schema.fields().len());
                    Ok((schema, rows, "none"))
                }
                .instrument(span);
                let cancel = tracked.cancelled();
                let started = async {
                    match deadline {
                        None => run.await,
                        Some(deadline) => match tokio::time::timeout_at(deadline, run).await {
                            Err(_) => Err(timed_out()),
                            // Each FETCH from a cursor has a deadline of its own.
                            Ok(Ok((schema, ArrowRows::Batches(batches), served)))
                                if delivery == Delivery::Cursor =>
                            {
                                Ok((schema, ArrowRows::Batches(batches), served))
                            }
                            Ok(Ok((schema, ArrowRows::Batches(batches), served))) => Ok((
                                schema,
                                ArrowRows::Batches(with_deadline(batches, deadline)),
                                served,
                            )),
                            Ok(Ok((schema, ArrowRows::Ipc(messages), served))) => Ok((
                                schema,
                                ArrowRows::Ipc(with_deadline(messages, deadline)),
                                served,
                            )),
                            Ok(Err(e)) => Err(e),
                        },
                    }
                };
                let started = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => Err(tracked.cancel_error()),
                    started = started => started,
                };
                match started {
                    Err(e) => {
                        tracked.end(Some(&e));
                        Err(e)
                    }
                    Ok((schema, rows, served)) => {
                        tracked.set_cache(served);
                        tracked.ready();
                        Ok((
                            schema,
                            match rows {
                                ArrowRows::Batches(b) => {
                                    ArrowRows::Batches(tracked_stream(b, tracked))
                                }
                                ArrowRows::Ipc(m) => ArrowRows::Ipc(tracked_stream(m, tracked)),
                            },
                        ))
                    }
                }
            }
        }
    }
}

/// How a query's rows leave [`Engine::run_query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Record batches, within the statement's deadline.
    Batches,
    /// The worker's Arrow IPC messages, undecoded.
    Ipc,
    /// Record batches kept by a cursor: read a FETCH at a time, each with its own
    /// deadline, and never through the result cache.
    Cursor,
}

/// What [`Engine::through_cache`] did. (Made once per query: the size of the plan it may
/// carry does not matter.)
#[allow(clippy::large_enum_variant)]
enum Cached {
    /// The answer: kept, shared with an identical running query, or run for the cache.
    Answered(ArrowRows, crate::cache::Served),
    /// Not through the cache; the optimized plan if it was made on the way.
    Not(Option<planner::OptimizedQuery>),
}

/// The most bytes of parameter values an execution keeps plans for (a kept plan holds its
/// parameters, and the statement keeps a few dozen: this bounds what they hold).
const KEPT_PARAMS_LIMIT: usize = 4 << 10;

impl Engine {
    fn in_gateway(&self) -> InGateway {
        InGateway {
            metrics: self.activity.metrics.clone(),
            timeout: self.limits.gateway_query_timeout,
        }
    }

    /// The plans of this execution of a statement that keeps them: those of an earlier
    /// execution with the same session context, principal and parameters over the same
    /// table versions, or made now and kept. None when a table cannot be listed (the query
    /// then runs as it would and reports it) or the parameters are too big to keep.
    async fn kept_plans(
        &self,
        planner: &Arc<Planner>,
        kept: &KeptPlans,
        session: &Session,
        logical: &LogicalPlan,
        params: &[ScalarValue],
        info: &planner::SessionInfo,
    ) -> Result<Option<Arc<Kept>>, QueryError> {
        if params.iter().map(ScalarValue::size).sum::<usize>() > KEPT_PARAMS_LIMIT {
            return Ok(None);
        }
        let Ok(versions) = kept.versions(&self.cache, planner.base_state()).await else {
            return Ok(None);
        };
        let context = format!(
            "{}\0{}",
            session.principal.key(),
            PlanMemo::context(session)
        );
        let counter = |reused: bool| {
            if let Some(metrics) = &self.activity.metrics {
                let counter = match reused {
                    true => &metrics.plans_reused,
                    false => &metrics.plans_made,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        if let Some(found) = kept.find(&context, params, &versions) {
            counter(true);
            return Ok(Some(found));
        }
        counter(false);
        let optimized = planner.optimize(logical.clone(), params.to_vec(), info)?;
        let planned = planner.physical(&optimized).await?;
        let planned = planner::reuse::physical_reusable(&planned.physical).then_some(planned);
        Ok(Some(kept.keep(
            context,
            params.to_vec(),
            versions,
            optimized,
            planned,
            self.limits.max_kept_plans,
        )))
    }

    /// Answer a query through the result cache when its plan allows it and the session
    /// has not turned the cache off. A statement without parameters that ran before skips
    /// the optimizer: its fingerprint is kept with the statement.
    #[allow(clippy::too_many_arguments)]
    async fn through_cache(
        &self,
        planner: &Arc<Planner>,
        hint: Option<&CacheHint>,
        info: &planner::SessionInfo,
        prepared: &Prepared,
        params: &[ScalarValue],
        meta: &QueryMeta,
        warehouse: &Result<Arc<workers::Warehouse>, QueryError>,
        ipc: bool,
        kept: Option<&Arc<Kept>>,
    ) -> Result<Cached, QueryError> {
        let (Some(hint), Prepared::Query { text, logical, .. }) = (hint, prepared) else {
            return Ok(Cached::Not(None));
        };
        if !self.cache.applies(info) {
            return Ok(Cached::Not(None));
        }
        let mut optimized = None;
        let fingerprint = match (hint.fingerprint.get(), kept) {
            (_, Some(kept)) => *kept
                .fingerprint
                .get_or_init(|| planner::cache_key::fingerprint(&kept.optimized.plan)),
            (Some(known), None) if params.is_empty() => *known,
            _ => {
                let o = planner.optimize(logical.clone(), params.to_vec(), info)?;
                let fingerprint = planner::cache_key::fingerprint(&o.plan);
                if params.is_empty() {
                    let _ = hint.fingerprint.set(fingerprint);
                }
                optimized = Some(o);
                fingerprint
            }
        };
        let Some(fingerprint) = fingerprint else {
            return Ok(Cached::Not(optimized));
        };
        let Some(lookup) = self
            .cache
            .key(info, &hint.reads, fingerprint, planner.base_state())
            .await
        else {
            return Ok(Cached::Not(optimized));
        };
        // The execution belongs to the cache (identical queries share it), so it owns
        // what it needs.
        let planner = planner.clone();
        let warehouse = if Planner::reads_data(logical) {
            Some(warehouse.clone()?)
        } else {
            None
        };
        let (meta, info, logical) = (meta.clone(), info.clone(), logical.clone());
        let kept = kept.cloned();
        let here = self.in_gateway();
        let run = async move {
            let optimized = match (optimized, &kept) {
                (Some(o), _) => o,
                (None, Some(kept)) => kept.optimized.clone(),
                (None, None) => planner.optimize(logical, Vec::new(), &info)?,
            };
            let schema = optimized.schema.clone();
            let rows = run_plan(
                &planner,
                &here,
                warehouse.as_ref(),
                meta,
                &optimized,
                kept.as_deref(),
                true,
            )
            .await?;
            Ok(rows.into_ipc(schema))
        };
        let (messages, served) = self.cache.answer(lookup, text, run).await?;
        tracing::debug!(cache = served.as_str(), "answered through the result cache");
        Ok(Cached::Answered(
            if ipc {
                ArrowRows::Ipc(messages)
            } else {
                ArrowRows::Batches(workers::decode(messages))
            },
            served,
        ))
    }
}

/// Parameter values cast to the types the planner inferred for `$1…$n` (a typed NULL
/// where the value is NULL), for front-ends whose parameters come with their own types.
pub fn bind_parameters(
    values: Vec<ScalarValue>,
    expected: &[Option<DataType>],
) -> Result<Vec<ScalarValue>, QueryError> {
    if values.len() != expected.len() {
        return Err(QueryError::new(
            ErrorKind::InvalidParameter,
            format!(
                "the statement takes {} parameters, {} were given",
                expected.len(),
                values.len()
            ),
        ));
    }
    values
        .into_iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (value, ty))| match ty {
            Some(ty) if value.is_null() => ScalarValue::try_from(ty).map_err(|e| {
                QueryError::new(
                    ErrorKind::InvalidParameter,
                    format!("parameter {}: {e}", i + 1),
                )
            }),
            Some(ty) if value.data_type() != *ty => value.cast_to(ty).map_err(|_| {
                QueryError::new(
                    ErrorKind::InvalidParameter,
                    format!(
                        "parameter {}: {} cannot be used as {ty}",
                        i + 1,
                        value.data_type()
                    ),
                )
            }),
            _ => Ok(value),
        })
        .collect()
}

/// The session's `statement_timeout` (PostgreSQL units: a bare number is milliseconds).
fn statement_timeout(session: &Session) -> Result<Option<std::time::Duration>, QueryError> {
    let value = session.setting("statement_timeout").unwrap_or_default();
    let value = value.trim().trim_matches('\'');
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let invalid = || {
        QueryError::new(
            ErrorKind::InvalidValue,
            format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
        )
    };
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let millis = match unit.trim() {
        "" | "ms" => number,
        "s" => number * 1e3,
        "min" => number * 60e3,
        "h" => number * 3600e3,
        "d" => number * 86400e3,
        _ => return Err(invalid()),
    };
    Ok((millis >= 1.0).then(|| std::time::Duration::from_millis(millis as u64)))
}

/// Run an optimized query where it is cheapest (decided on the finished plan: grants and
/// the cache key are settled already): here in the gateway when it reads no data table
/// (catalog and table-free queries) or only a few bytes of files (the warehouse's
/// `small_query_bytes`); else on the warehouse, over several workers when it distributes
/// it, on one otherwise. The physical plan kept with the statement serves again when
/// there is one.
async fn run_plan(
    planner: &Planner,
    here: &InGateway,
    warehouse: Option<&Arc<workers::Warehouse>>,
    meta: QueryMeta,
    optimized: &planner::OptimizedQuery,
    kept: Option<&Kept>,
    ipc: bool,
) -> Result<ArrowRows, QueryError> {
    let planned = match kept.and_then(|k| k.planned.as_ref()) {
        Some(planned) => planner::PlannedQuery {
            schema: planned.schema.clone(),
            physical: planner::reuse::fresh(&planned.physical)?,
        },
        None => planner.physical(optimized).await?,
    };
    // A constant repeated over rows can be made far larger than the statement
    // (`planner::bounded`): never in the gateway.
    let large_constant = || planner::bounded::repeats_large_constant(&optimized.plan);
    let warehouse = match warehouse {
        Some(w)
            if !planner::distributed::is_small(&planned.physical, w.small_query_bytes())
                || large_constant() =>
        {
            w
        }
        None if large_constant() => {
            return Err(QueryError::new(
                planner::ErrorKind::LimitExceeded,
                format!(
                    "this statement repeats a constant of over {} KiB over rows the gateway \
                     makes (a catalog table, a table function, VALUES): the gateway does not \
                     answer it",
                    planner::bounded::MAX_GATEWAY_CONSTANT >> 10
                ),
            ))
        }
        small => {
            tracing::debug!("answering in the gateway");
            let mut batches = local_batches(planner.run_locally(&planned, optimized)?);
            if small.is_some() {
                // A small data query: as bounded here as the catalog queries are.
                if let Some(metrics) = &here.metrics {
                    metrics.small_queries.fetch_add(1, Ordering::Relaxed);
                }
                batches = with_deadline(batches, tokio::time::Instant::now() + here.timeout);
                // Its profile, as a worker would send it (catalog and table-free queries,
                // a BI tool's many small ones, keep none).
                batches = with_profile(batches, planned.physical.clone(), meta.progress.clone());
            }
            return Ok(ArrowRows::Batches(batches));
        }
    };
    on_warehouse(warehouse, meta, &planned, optimized, kept, ipc).await
}

/// What a query answered in the gateway needs from the engine: the counter of small
/// queries and how long one may run here (`[limits] gateway_query_timeout`).
#[derive(Clone)]
struct InGateway {
    metrics: Option<Arc<crate::metrics::Metrics>>,
    timeout: std::time::Duration,
}

/// Run a data query on its warehouse: over several workers when the warehouse distributes
/// it, else on one worker.
async fn on_warehouse(
    warehouse: &Arc<workers::Warehouse>,
    meta: QueryMeta,
    planned: &planner::PlannedQuery,
    optimized: &planner::OptimizedQuery,
    kept: Option<&Kept>,
    ipc: bool,
) -> Result<ArrowRows, QueryError> {
    if let Some(distributed) = warehouse
        .distribute(&planned.physical, optimized.state(), &meta.id)
        .await?
    {
        tracing::debug!("distributing over the warehouse's workers");
        let schema = distributed.schema();
        let rows = ArrowRows::Batches(warehouse.execute_distributed(meta, distributed).await?);
        return Ok(if ipc {
            ArrowRows::Ipc(rows.into_ipc(schema))
        } else {
            rows
        });
    }
    let plan = match kept {
        Some(kept) if kept.planned.is_some() => match kept.encoded.get() {
            Some(plan) => plan.clone(),
            None => {
                let plan = planner::codec::encode_plan(&planned.physical)?;
                kept.encoded.get_or_init(|| plan.clone()).clone()
            }
        },
        _ => planner::codec::encode_plan(&planned.physical)?,
    };
    tracing::debug!(plan_bytes = plan.len(), "sending to a worker");
    Ok(if ipc {
        ArrowRows::Ipc(warehouse.execute_flight(meta, plan).await?)
    } else {
        ArrowRows::Batches(warehouse.execute(meta, plan).await?)
    })
}

/// Whether a statement is an EXPLAIN (not EXPLAIN ANALYZE: that one runs as it would).
fn is_explain(statement: &datafusion::sql::parser::Statement) -> bool {
    matches!(statement, datafusion::sql::parser::Statement::Explain(e) if !e.options.analyze)
}

/// `batches`, keeping `plan` (its profile, made if the history keeps it) in `progress`
/// once they have all come.
fn with_profile(
    batches: BatchStream,
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    progress: Arc<workers::Progress>,
) -> BatchStream {
    use futures::StreamExt;
    let end = futures::stream::once(async move {
        progress.set_profile(workers::RanPlan::Here(plan));
        None
    });
    Box::pin(
        batches
            .map(Some)
            .chain(end)
            .filter_map(futures::future::ready),
    )
}

fn local_batches(stream: datafusion::execution::SendableRecordBatchStream) -> BatchStream {
    use futures::StreamExt;
    Box::pin(stream.map(|batch| batch.map_err(QueryError::from)))
}

/// A FETCH, MOVE or CLOSE prepared for a session: FETCH learns its cursor's columns now
/// (clients describe it before they run it).
fn cursor_command(session: &Session, command: CursorCommand) -> Result<SessionCommand, QueryError> {
    Ok(match command {
        CursorCommand::Fetch { name, direction } => {
            let (schema, binary) = session.cursors.shape(&name)?;
            SessionCommand::Fetch {
                name,
                direction,
                schema,
                binary,
            }
        }
        CursorCommand::Move { name, direction } => SessionCommand::Move { name, direction },
        CursorCommand::Close(name) => SessionCommand::Close(name),
    })
}

/// Recognise the statements the gateway answers itself.
fn session_command(statement: &SqlStatement) -> Result<Option<SessionCommand>, QueryError> {
    use SessionCommand::*;
    Ok(Some(match statement {
        SqlStatement::Set(set) => match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => Set {
                name: variable.to_string().to_ascii_lowercase(),
                value: values
                    .iter()
                    .map(setting_value)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            ast::Set::SetTimeZone { value, .. } => Set {
                name: "timezone".into(),
                value: setting_value(value),
            },
            ast::Set::SetNames { charset_name, .. } => Set {
                name: "client_encoding".into(),
                value: charset_name.to_string(),
            },
            // SET TRANSACTION / SESSION CHARACTERISTICS: transactions are read-only.
            ast::Set::SetTransaction { .. } => Accept("SET"),
            other => {
                return Err(QueryError::new(
                    ErrorKind::NotSupported,
                    format!("unsupported SET form: {other}"),
                ))
            }
        },
        SqlStatement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            Show(name)
        }
        SqlStatement::StartTransaction { .. } => Begin,
        SqlStatement::Commit { .. } => Commit,
        SqlStatement::Rollback {
            savepoint: None, ..
        } => Rollback,
        SqlStatement::Rollback {
            savepoint: Some(_), ..
        } => Accept("ROLLBACK"),
        SqlStatement::Savepoint { .. } => Accept("SAVEPOINT"),
        SqlStatement::ReleaseSavepoint { .. } => Accept("RELEASE"),
        SqlStatement::Discard { .. } => Accept("DISCARD ALL"),
        SqlStatement::Deallocate { .. } => Accept("DEALLOCATE"),
        _ => return Ok(None),
    }))
}

fn setting_value(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// Run a statement about the session (SET, SHOW, BEGIN…) on it.
pub fn run_session_command(
    session: &mut Session,
    command: &SessionCommand,
) -> Result<Outcome, QueryError> {
    let tag = |t: &str| Ok(Outcome::Command { tag: t.to_string() });
    match command {
        SessionCommand::Set { name, value } => {
            session.settings.set_checked(name, value.clone())?;
            tag("SET")
        }
        SessionCommand::Reset(Some(name)) => {
            session.settings.reset(name);
            tag("RESET")
        }
        SessionCommand::Reset(None) => {
            session.settings.reset_all();
            tag("RESET")
        }
        SessionCommand::Conf { set, show } => {
            for (name, value) in set {
                match value {
                    Some(value) => session.settings.set_checked(name, value.clone())?,
                    None => session.settings.reset(name),
                }
            }
            if show.is_empty() {
                return tag(if set.iter().all(|(_, v)| v.is_none()) {
                    "RESET"
                } else {
                    "SET"
                });
            }
            let schema = conf_schema();
            let (keys, values): (Vec<&str>, Vec<&str>) =
                show.iter().map(|(k, v)| (k.as_str(), v.as_str())).unzip();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(keys)),
                    Arc::new(StringArray::from(values)),
                ],
            )
            .map_err(|e| QueryError::internal(e.to_string()))?;
            Ok(Outcome::Rows {
                schema,
                batches: Box::pin(futures::stream::once(async move { Ok(batch) })),
                command: "SET",
            })
        }
        SessionCommand::Show(name) => {
            let value = if name == "all" {
                return Err(QueryError::new(
                    ErrorKind::NotSupported,
                    "SHOW ALL is not supported; SHOW a setting by name",
                ));
            } else {
                session.setting(name).ok_or_else(|| {
                    QueryError::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?
            };
            let schema = show_schema(name);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(vec![value]))],
            )
            .map_err(|e| QueryError::internal(e.to_string()))?;
            Ok(Outcome::Rows {
                schema,
                batches: Box::pin(futures::stream::once(async move { Ok(batch) })),
                command: "SHOW",
            })
        }
        SessionCommand::Begin => {
            session.in_transaction = true;
            Ok(Outcome::TransactionStart)
        }
        SessionCommand::Commit | SessionCommand::Rollback => {
            session.in_transaction = false;
            session.cursors.end_transaction();
            Ok(Outcome::TransactionEnd {
                tag: if *command == SessionCommand::Commit {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                }
                .into(),
            })
        }
        // PostgreSQL's answer to a savepoint outside BEGIN … COMMIT.
        SessionCommand::Accept(t @ ("SAVEPOINT" | "RELEASE" | "ROLLBACK"))
            if !session.in_transaction =>
        {
            Err(QueryError::new(
                ErrorKind::NoTransaction,
                format!(
                    "{} can only be used in transaction blocks",
                    match *t {
                        "SAVEPOINT" => "SAVEPOINT",
                        "RELEASE" => "RELEASE SAVEPOINT",
                        _ => "ROLLBACK TO SAVEPOINT",
                    }
                ),
            ))
        }
        SessionCommand::Accept(t) => {
            if *t == "DISCARD ALL" {
                session.settings.reset_all();
                session.cursors.close(None)?;
            }
            tag(t)
        }
        SessionCommand::Close(name) => {
            session.cursors.close(name.as_deref())?;
            tag(if name.is_some() {
                "CLOSE CURSOR"
            } else {
                "CLOSE CURSOR ALL"
            })
        }
        SessionCommand::Catalog(_) | SessionCommand::Fetch { .. } | SessionCommand::Move { .. } => {
            Err(QueryError::internal(
                "a catalog change or cursor read reached the session commands",
            ))
        }
    }
}

/// DESCRIBE's rows of a result's columns: name, Spark's type name, comment.
fn column_values(columns: &Schema) -> Vec<String> {
    use databricks_sql::literal;
    columns
        .fields()
        .iter()
        .map(|f| {
            format!(
                "({}, {}, CAST(NULL AS TEXT))",
                literal(f.name()),
                literal(&spark::spark_type(f.data_type()).0.to_lowercase())
            )
        })
        .collect()
}

/// DESCRIBE QUERY's answer: the query's columns as rows.
fn column_rows(columns: &Schema) -> String {
    format!(
        "SELECT * FROM (VALUES {}) AS d(col_name, data_type, comment)",
        column_values(columns).join(", ")
    )
}

/// The columns of Databricks SQL's `SET`.
fn conf_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]))
}

fn show_schema(name: &str) -> SchemaRef {
    // PostgreSQL names SHOW's one column after the setting.
    Arc::new(Schema::new(vec![Field::new(
        planner::session::show_column(name),
        DataType::Utf8,
        false,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn command(sql: &str) -> Option<SessionCommand> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        session_command(&statements[0]).expect("recognised")
    }

    #[test]
    fn recognises_client_session_statements() {
        assert_eq!(
            command("SET extra_float_digits = 3"),
            Some(SessionCommand::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            })
        );
        assert_eq!(
            command("SET application_name = 'PostgreSQL JDBC Driver'"),
            Some(SessionCommand::Set {
                name: "application_name".into(),
                value: "PostgreSQL JDBC Driver".into()
            })
        );
        assert_eq!(
            command("show transaction isolation level"),
            Some(SessionCommand::Show("transaction isolation level".into()))
        );
        assert_eq!(command("BEGIN"), Some(SessionCommand::Begin));
        assert_eq!(command("begin transaction"), Some(SessionCommand::Begin));
        assert_eq!(command("COMMIT"), Some(SessionCommand::Commit));
        assert_eq!(command("ROLLBACK"), Some(SessionCommand::Rollback));
        assert_eq!(
            command("DISCARD ALL"),
            Some(SessionCommand::Accept("DISCARD ALL"))
        );
        assert_eq!(command("SELECT 1"), None);
    }
}
