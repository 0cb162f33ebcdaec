//! The Arrow Flight SQL front-end: Flight SQL commands in, [`Handler`] calls, Arrow record
//! batches out. It translates only: planning, grants and execution are the handler's.
//!
//! ```text
//!  GetFlightInfo(CommandStatementQuery) ── prepare ──► handle ─► FlightInfo{schema, ticket}
//!  DoGet(TicketStatementQuery)          ── execute ──► batches ─► FlightData (streamed)
//!  CreatePreparedStatement / DoPut(params) / GetFlightInfo / DoGet / ClosePreparedStatement
//!  GetCatalogs · GetDbSchemas · GetTables · GetTableTypes · GetSqlInfo · GetXdbcTypeInfo ·
//!  keys (empty) ── answered from the session's (grant-filtered) information_schema
//! ```
//!
//! Every call carries `authorization: Bearer <token>` (or Basic with the token as the
//! password); the Basic handshake answers with the bearer token to use. Statement handles
//! belong to the principal that made them: another principal replaying a ticket is refused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest,
    Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, Nullable, ProstMessageExt, Searchable, SqlInfo,
    TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use planner::{ErrorKind, QueryError};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use workers::worker::{for_transfer, transfer_schema};

use crate::handler::{ArrowRows, Handler, Outcome, Prepared, SessionCommand};
use crate::session::Session;

mod ipc;

/// Bytes of parameters one DoPut may bind.
pub const MAX_PUT_BYTES: usize = ipc::MAX_BYTES;

/// Open statement handles kept at most, all principals together (each has its own quota
/// below this); idle ones go first.
const MAX_STATEMENTS: usize = 100_000;
/// A handle nobody used for this long is dropped.
const STATEMENT_IDLE: Duration = Duration::from_secs(3600);
/// gRPC metadata naming the warehouse (database) a call runs in.
pub const WAREHOUSE_HEADER: &str = "x-sluice-warehouse";
/// gRPC metadata that turns the result cache off for a call: `x-sluice-use-cached-result: false`.
pub const CACHE_HEADER: &str = "x-sluice-use-cached-result";

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// A query planned for a ticket or a prepared statement.
struct Statement {
    /// Principal id and issuer: only they may run or close it.
    owner: (String, String),
    sql: String,
    prepared: Prepared,
    /// Bound by DoPut (prepared statements).
    params: Vec<ScalarValue>,
    cancel: CancellationToken,
    used: Instant,
    /// A statement ticket that has started: it cannot run again, but stays (cancellable)
    /// until its stream ends.
    started: bool,
}

type Statements = Arc<Mutex<HashMap<Vec<u8>, Statement>>>;

/// Removes a one-shot statement when its result stream ends or is dropped.
struct Forget {
    statements: Statements,
    handle: Vec<u8>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.handle);
    }
}

/// The Flight SQL service of one gateway.
pub struct FlightSqlFrontend {
    handler: Arc<dyn Handler>,
    statements: Statements,
    next: AtomicU64,
    /// Tokens over plain TCP are refused (a non-loopback listener without TLS).
    refuse_plain: bool,
    /// Statement handles one principal may hold open (`[limits] max_prepared_statements`).
    per_principal: usize,
}

impl FlightSqlFrontend {
    pub fn new(handler: Arc<dyn Handler>, refuse_plain: bool, per_principal: usize) -> Self {
        Self {
            handler,
            statements: Statements::default(),
            next: AtomicU64::new(1),
            refuse_plain,
            per_principal,
        }
    }

    fn statements(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session of a call, from its `authorization` metadata.
    async fn session(&self, metadata: &MetadataMap) -> Result<Session, Status> {
        if self.refuse_plain {
            return Err(Status::unauthenticated(
                "this server accepts tokens only over TLS (grpc+tls)",
            ));
        }
        let token = token_from(metadata)?;
        let database = metadata
            .get(WAREHOUSE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("default");
        let mut session = self.handler.login(&token, "", database).await.map_err(|reason| {
            tracing::warn!(token = %auth::fingerprint(&token), reason = reason.code(), "flight call refused: {reason}");
            Status::new(crate::error::login_grpc_code(&reason), reason.to_string())
        })?;
        session.protocol = "flight";
        if let Some(value) = metadata.get(CACHE_HEADER).and_then(|v| v.to_str().ok()) {
            session
                .settings
                .set(crate::cache::BYPASS_SETTING, value.to_string());
        }
        Ok(session)
    }

    /// Plan SQL for a later DoGet; returns the handle.
    async fn plan(&self, session: &Session, sql: &str) -> Result<(Vec<u8>, SchemaRef), Status> {
        let sql = &numbered_placeholders(sql);
        let mut prepared = self
            .handler
            .prepare(session, sql)
            .await
            .map_err(|e| status(&e))?;
        if prepared.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "send one statement per request ({} given)",
                prepared.len()
            )));
        }
        let prepared = prepared.remove(0);
        if let Prepared::Session(SessionCommand::Catalog(change)) = &prepared {
            return Err(Status::invalid_argument(format!(
                "{} changes the catalog: send it as a Flight SQL update \
                 (CommandStatementUpdate; ADBC: execute_update)",
                change.tag()
            )));
        }
        if let Prepared::Session(command) = &prepared {
            return Err(Status::invalid_argument(format!(
                "{command:?} is a session command: Flight SQL sessions have no settings; send queries"
            )));
        }
        let schema = transfer_schema(&prepared.schema());
        let handle = format!(
            "s{}-{}",
            self.next.fetch_add(1, Ordering::Relaxed),
            auth::generate_token()
        )
        .into_bytes();
        let owner = owner(session);
        let mut statements = self.statements();
        // One principal's statements never crowd out another's.
        let held = || statements.values().filter(|s| s.owner == owner).count();
        if held() >= self.per_principal || statements.len() >= MAX_STATEMENTS {
            statements.retain(|_, s| s.used.elapsed() < STATEMENT_IDLE);
        }
        let held = statements.values().filter(|s| s.owner == owner).count();
        if held >= self.per_principal {
            return Err(status(&QueryError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "{} holds {held} open statements, as many as a principal may \
                     ([limits] max_prepared_statements): close prepared statements you no \
                     longer need",
                    session.principal.name
                ),
            )));
        }
        if statements.len() >= MAX_STATEMENTS {
            return Err(Status::resource_exhausted(
                "too many open statements on this server: try again shortly",
            ));
        }
        statements.insert(
            handle.clone(),
            Statement {
                owner,
                sql: sql.to_string(),
                prepared,
                params: Vec::new(),
                cancel: CancellationToken::new(),
                used: Instant::now(),
                started: false,
            },
        );
        Ok((handle, schema))
    }

    /// A handle's statement, if the session's principal owns it.
    fn owned<T>(
        &self,
        session: &Session,
        handle: &[u8],
        with: impl FnOnce(&mut Statement) -> T,
    ) -> Result<T, Status> {
        let mut statements = self.statements();
        let statement = statements.get_mut(handle).ok_or_else(|| {
            Status::not_found("no such statement: it was closed, already run, or never existed")
        })?;
        if statement.owner != owner(session) {
            return Err(Status::permission_denied(
                "this statement belongs to another principal",
            ));
        }
        statement.used = Instant::now();
        Ok(with(statement))
    }

    /// Run a statement and stream its batches.
    async fn run(
        &self,
        session: Session,
        handle: &[u8],
        once: bool,
    ) -> Result<Response<DoGetStream>, Status> {
        let (prepared, params, cancel, sql, again) = self.owned(&session, handle, |s| {
            let again = once && s.started;
            s.started = true;
            (
                s.prepared.clone(),
                s.params.clone(),
                s.cancel.clone(),
                s.sql.clone(),
                again,
            )
        })?;
        if again {
            return Err(Status::not_found(
                "no such statement: it was closed, already run, or never existed",
            ));
        }
        // A statement ticket runs once; it is forgotten when its stream ends.
        let forget = once.then(|| Forget {
            statements: self.statements.clone(),
            handle: handle.to_vec(),
        });
        let mut session = session;
        tracing::debug!(principal = %session.principal.name, sql = %sql, "flight query");
        let (schema, rows) = tokio::select! {
            outcome = self.handler.execute_arrow(&mut session, &prepared, params) => outcome.map_err(|e| status(&e))?,
            _ = cancel.cancelled() => return Err(Status::cancelled("the query was cancelled")),
        };
        let schema = transfer_schema(&schema);
        let batches = match rows {
            ArrowRows::Batches(batches) => batches,
            ArrowRows::Ipc(mut messages) => {
                // The worker's messages go out as they are when its schema is the one the
                // client was promised (names and types); otherwise they are decoded and
                // re-encoded under the promised names.
                let first = match messages.next().await {
                    Some(first) => first.map_err(|e| status(&e))?,
                    None => return Err(Status::unavailable("the worker sent no schema")),
                };
                let same =
                    Schema::try_from(&first).is_ok_and(|worker| {
                        worker.fields().len() == schema.fields().len()
                            && worker.fields().iter().zip(schema.fields()).all(|(w, p)| {
                                w.name() == p.name() && w.data_type() == p.data_type()
                            })
                    });
                let messages = stream::once(async move { Ok(first) }).chain(messages);
                tracing::debug!(pass_through = same, "flight result from a worker");
                if same {
                    let messages =
                        until_cancelled(messages, cancel, forget).map_err(|e| status(&e));
                    return Ok(Response::new(Box::pin(messages)));
                }
                let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                    messages.map_err(|e| FlightError::Tonic(Box::new(status(&e)))),
                )
                .map_err(|e| QueryError::new(ErrorKind::WorkerLost, e.to_string()));
                Box::pin(decoded) as workers::BatchStream
            }
        };
        let target = schema.clone();
        let batches = until_cancelled(batches, cancel, forget)
            .map_err(|e| FlightError::Tonic(Box::new(status(&e))))
            .and_then(move |batch| {
                let target = target.clone();
                async move { for_transfer(batch, &target).map_err(FlightError::from) }
            });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// Rows of a catalog query, run with the session's grants.
    async fn rows(&self, session: &Session, sql: &str) -> Result<Vec<RecordBatch>, Status> {
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
    async fn tables(&self, session: &Session) -> Result<Vec<(String, String, String)>, Status> {
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
}

/// Stop a result stream when its statement is cancelled, ending it with CANCELLED (not as
/// if the result were complete); a one-shot statement is forgotten when the stream ends.
fn until_cancelled<T: Send + 'static>(
    items: impl Stream<Item = Result<T, QueryError>> + Send + 'static,
    cancel: CancellationToken,
    forget: Option<Forget>,
) -> impl Stream<Item = Result<T, QueryError>> + Send + 'static {
    let cancelled = cancel.clone();
    items.take_until(cancel.cancelled_owned()).chain(
        stream::once(async move {
            let _forget = forget;
            cancelled.is_cancelled().then(|| {
                Err(QueryError::new(
                    ErrorKind::Cancelled,
                    "the query was cancelled",
                ))
            })
        })
        .filter_map(|end| async move { end }),
    )
}

/// JDBC/ODBC-style `?` placeholders (what ADBC sends) as the `$1, $2, …` the planner reads.
fn numbered_placeholders(sql: &str) -> String {
    crate::sqltext::rewrite(
        sql,
        crate::sqltext::Rewrite {
            question_marks: true,
            ..Default::default()
        },
    )
}

/// A text column of a catalog answer as strings.
fn strings(batch: &RecordBatch, column: usize) -> Result<Vec<String>, Status> {
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

fn owner(session: &Session) -> (String, String) {
    (
        session.principal.id.clone(),
        session.principal.issuer.clone(),
    )
}

/// The token of a call: `Bearer <token>`, or `Basic base64(user:token)` (padding optional,
/// as the Go ADBC driver leaves it off).
fn token_from(metadata: &MetadataMap) -> Result<String, Status> {
    let value = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "send authorization: Bearer <token> (or Basic with the token as password)",
            )
        })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = rest.trim().trim_end_matches('=');
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(raw)
            .map_err(|_| Status::unauthenticated("Basic credentials are not base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| Status::unauthenticated("Basic credentials are not UTF-8"))?;
        let (_, password) = text
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("Basic credentials need user:password"))?;
        return Ok(password.to_string());
    }
    Err(Status::unauthenticated(format!(
        "authorization scheme {scheme:?} is not supported: use Bearer or Basic"
    )))
}

/// A handler error as a gRPC status, by the one error table.
fn status(err: &QueryError) -> Status {
    Status::new(crate::error::grpc_code(err.kind), err.message.clone())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint and no location: clients fetch on the connection they
/// already have.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn one_batch<E: Into<FlightError> + Send + 'static>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::once(async move { batch.map_err(Into::into) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn read_only() -> Status {
    status(&QueryError::new(
        ErrorKind::ReadOnly,
        "this warehouse is read-only: updates, ingestion and transactions are not available",
    ))
}

static SQL_INFO: std::sync::LazyLock<SqlInfoData> = std::sync::LazyLock::new(|| {
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

static XDBC_TYPES: std::sync::LazyLock<XdbcTypeInfoData> = std::sync::LazyLock::new(|| {
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

/// Bound parameter values: the first row of the batch DoPut sent, cast to the types the
/// planner expects.
fn params_from(
    batches: &[RecordBatch],
    expected: &[Option<DataType>],
) -> Result<Vec<ScalarValue>, Status> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "bind one row of parameters at a time ({rows} given)"
        )));
    }
    let Some(batch) = batches.iter().find(|b| b.num_rows() == 1) else {
        return Ok(Vec::new());
    };
    if batch.num_columns() != expected.len() {
        return Err(Status::invalid_argument(format!(
            "the statement takes {} parameters, {} were bound",
            expected.len(),
            batch.num_columns()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            ScalarValue::try_from_array(column, 0)
                .map_err(|e| Status::invalid_argument(format!("parameter {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    crate::handler::bind_parameters(values, expected).map_err(|e| status(&e))
}

fn parameter_schema(types: &[Option<DataType>]) -> Schema {
    Schema::new(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Field::new(
                    format!("${}", i + 1),
                    t.clone().unwrap_or(DataType::Utf8),
                    true,
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// The statement handle a ticket or FlightInfo refers to.
fn handle_of_ticket(ticket: &[u8]) -> Option<Vec<u8>> {
    let any = Any::decode(ticket).ok()?;
    if let Ok(Some(t)) = any.unpack::<TicketStatementQuery>() {
        return Some(t.statement_handle.to_vec());
    }
    if let Ok(Some(p)) = any.unpack::<CommandPreparedStatementQuery>() {
        return Some(p.prepared_statement_handle.to_vec());
    }
    None
}

impl FlightSqlFrontend {
    /// The FlightInfo of a metadata command: the answer's schema, the command as ticket.
    async fn describe(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: Any,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(request.metadata()).await?;
        info(schema, command.encode_to_vec(), request.into_inner())
    }

    /// An empty answer with the right columns (sluice's tables have no keys).
    async fn no_rows(
        &self,
        request: Request<Ticket>,
        schema: Schema,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let schema = Arc::new(schema);
        Ok(one_batch(
            schema.clone(),
            Ok::<_, FlightError>(RecordBatch::new_empty(schema)),
        ))
    }

    /// Cancel the statements a FlightInfo names, of those `session`'s principal owns
    /// (another's handle is as good as unknown).
    fn cancel_info(&self, session: &Session, info: &FlightInfo) -> CancelStatus {
        let mut found = false;
        let owner = owner(session);
        for endpoint in &info.endpoint {
            if let Some(handle) = endpoint
                .ticket
                .as_ref()
                .and_then(|t| handle_of_ticket(&t.ticket))
            {
                if let Some(s) = self.statements().get(&handle) {
                    if s.owner == owner {
                        s.cancel.cancel();
                        found = true;
                    }
                }
            }
        }
        if found {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontend {
    type FlightService = FlightSqlFrontend;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let session = self.session(request.metadata()).await?;
        let token = token_from(request.metadata())?;
        tracing::info!(principal = %session.principal.name, "flight handshake");
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response = Response::new(
            Box::pin(stream::iter([Ok(response)])) as Pin<Box<dyn Stream<Item = _> + Send>>
        );
        if let Ok(value) = format!("Bearer {token}").parse() {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, schema) = self.plan(&session, &query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let schema = self.owned(&session, &cmd.prepared_statement_handle, |s| {
            transfer_schema(&s.prepared.schema())
        })?;
        info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        self.run(session, &ticket.statement_handle, true).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        self.run(session, &cmd.prepared_statement_handle, false)
            .await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let expected = self.owned(&session, &cmd.prepared_statement_handle, |s| {
            s.prepared.param_types().to_vec()
        })?;
        let batches = ipc::decode_bounded(request.into_inner()).await?;
        let params = params_from(&batches, &expected)?;
        self.owned(&session, &cmd.prepared_statement_handle, |s| {
            s.params = params
        })?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, schema) = self.plan(&session, &query.query).await?;
        let types = self.owned(&session, &handle, |s| s.prepared.param_types().to_vec())?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&schema)?,
            parameter_schema: schema_bytes(&parameter_schema(&types))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let session = self.session(request.metadata()).await?;
        self.owned(&session, &query.prepared_statement_handle, |s| {
            s.cancel.cancel()
        })?;
        self.statements()
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let session = self.session(request.metadata()).await?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("not a FlightInfo: {e}")))?;
        Ok(ActionCancelQueryResult {
            result: self.cancel_info(&session, &info) as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let action = request.into_inner();
        if action.r#type == "CancelFlightInfo" {
            let req = CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                Status::invalid_argument(format!("not a CancelFlightInfoRequest: {e}"))
            })?;
            let info = req.info.unwrap_or_default();
            let result = CancelFlightInfoResult::new(self.cancel_info(&session, &info));
            let body = arrow_flight::Result::new(result.encode_to_vec());
            return Ok(Response::new(Box::pin(stream::iter([Ok(body)]))));
        }
        Err(Status::invalid_argument(format!(
            "unknown action {:?}",
            action.r#type
        )))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only())
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only())
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(read_only())
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only())
    }

    /// DDL on the catalog managed with SQL; anything else would write: refused.
    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mut session = self.session(request.metadata()).await?;
        let prepared = self
            .handler
            .prepare(&session, &ticket.query)
            .await
            .map_err(|e| status(&e))?;
        match prepared.as_slice() {
            [change @ Prepared::Session(SessionCommand::Catalog(_))] => {
                self.handler
                    .execute(&mut session, change, Vec::new())
                    .await
                    .map_err(|e| status(&e))?;
                Ok(0)
            }
            _ => Err(read_only()),
        }
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    // --- metadata --------------------------------------------------------------------

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &query.into_builder().schema(), query.as_any())
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append(planner::CATALOG);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder().schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let batches = self
            .rows(
                &session,
                "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            )
            .await?;
        let mut builder = query.into_builder();
        for batch in batches {
            for name in strings(&batch, 0)? {
                builder.append(planner::CATALOG, name);
            }
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder().schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        for (schema_name, table, kind) in self.tables(&session).await? {
            let kind = if kind == "BASE TABLE" {
                "TABLE"
            } else {
                kind.as_str()
            };
            let table_schema = if include_schema {
                let sql = format!(
                    "SELECT * FROM \"{}\".\"{}\"",
                    schema_name.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                );
                match self.handler.prepare(&session, &sql).await {
                    Ok(p) => p
                        .first()
                        .map(|p| transfer_schema(&p.schema()))
                        .unwrap_or_else(|| Arc::new(Schema::empty())),
                    Err(_) => Arc::new(Schema::empty()),
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(planner::CATALOG, &schema_name, &table, kind, &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &query.into_builder().schema(), query.as_any())
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder(&SQL_INFO).schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let builder = query.into_builder(&SQL_INFO);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.into_builder(&XDBC_TYPES).schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let builder = query.into_builder(&XDBC_TYPES);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    // Keys: sluice tables have none; the answers are empty, with the right schemas.

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &primary_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_rows(request, primary_keys_schema()).await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_rows(request, foreign_keys_schema()).await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_rows(request, foreign_keys_schema()).await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_rows(request, foreign_keys_schema()).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The columns of a GetPrimaryKeys answer (Flight SQL's schema).
fn primary_keys_schema() -> Schema {
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
fn foreign_keys_schema() -> Schema {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii"));
        m
    }

    #[test]
    fn tokens_from_bearer_and_basic_with_or_without_padding() {
        assert_eq!(token_from(&metadata("Bearer abc")).expect("ok"), "abc");
        // "user:tok1" in base64 is "dXNlcjp0b2sx" (no padding needed); "u:tok" needs one '='.
        assert_eq!(
            token_from(&metadata("Basic dXNlcjp0b2sx")).expect("ok"),
            "tok1"
        );
        assert_eq!(token_from(&metadata("Basic dTp0b2s=")).expect("ok"), "tok");
        assert_eq!(token_from(&metadata("Basic dTp0b2s")).expect("ok"), "tok");
        assert!(token_from(&metadata("Digest x")).is_err());
        assert!(token_from(&MetadataMap::new()).is_err());
    }

    #[test]
    fn one_parameter_row_cast_to_the_expected_type() {
        let batch = RecordBatch::try_from_iter([(
            "p",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![7])) as _,
        )])
        .expect("batch");
        let params =
            params_from(std::slice::from_ref(&batch), &[Some(DataType::Int32)]).expect("ok");
        assert_eq!(params, vec![ScalarValue::Int32(Some(7))]);
        assert!(params_from(&[batch], &[]).is_err());
    }

    /// What Flight SQL clients put in tickets, descriptors and action bodies, decoded as the
    /// service decodes them.
    #[test]
    fn fuzz_flight_commands() {
        use arrow_flight::sql::Command;
        let seeds: Vec<Vec<u8>> = vec![
            CommandStatementQuery {
                query: "select 1".into(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
            CommandPreparedStatementQuery {
                prepared_statement_handle: b"s1-sluice_x".to_vec().into(),
            }
            .as_any()
            .encode_to_vec(),
            TicketStatementQuery {
                statement_handle: b"s2".to_vec().into(),
            }
            .as_any()
            .encode_to_vec(),
            CommandGetTables {
                catalog: Some("sluice".into()),
                db_schema_filter_pattern: Some("tp%".into()),
                table_name_filter_pattern: None,
                table_types: vec!["TABLE".into()],
                include_schema: true,
            }
            .as_any()
            .encode_to_vec(),
            CommandGetSqlInfo {
                info: vec![0, 1, 500],
            }
            .as_any()
            .encode_to_vec(),
            CancelFlightInfoRequest {
                info: Some(
                    FlightInfo::default().with_endpoint(
                        FlightEndpoint::new().with_ticket(Ticket::new(
                            CommandPreparedStatementQuery {
                                prepared_statement_handle: b"h".to_vec().into(),
                            }
                            .as_any()
                            .encode_to_vec(),
                        )),
                    ),
                ),
            }
            .encode_to_vec(),
        ];
        fuzz::bytes("flight_commands", &seeds, |input| {
            if let Ok(any) = Any::decode(input) {
                let _ = Command::try_from(any.clone());
                let _ = any.unpack::<CommandStatementQuery>();
                let _ = any.unpack::<CommandGetTables>();
                let _ = any.unpack::<CommandGetDbSchemas>();
                let _ = any.unpack::<CommandGetXdbcTypeInfo>();
            }
            let _ = handle_of_ticket(input);
            let _ = FlightInfo::decode(input);
            let _ = CancelFlightInfoRequest::decode(input);
            let _ = FlightDescriptor::decode(input);
            let _ = ActionCreatePreparedStatementRequest::decode(input);
            let _ = ActionClosePreparedStatementRequest::decode(input);
            let _ = numbered_placeholders(&String::from_utf8_lossy(input));
            if let Ok(text) = std::str::from_utf8(input) {
                if let Ok(value) = format!("Basic {text}").parse() {
                    let mut m = MetadataMap::new();
                    m.insert("authorization", value);
                    let _ = token_from(&m);
                }
            }
        });
    }

    /// A DoPut's messages, framed as (header length, header, body length, body) in the
    /// input, through the bounded decoder and the parameter binding.
    #[test]
    fn fuzz_flight_doput_ipc() {
        use arrow_flight::FlightData;
        use datafusion::arrow::ipc::writer::IpcWriteOptions;
        fn frame(messages: &[FlightData]) -> Vec<u8> {
            let mut out = Vec::new();
            for m in messages {
                out.extend((m.data_header.len() as u32).to_le_bytes());
                out.extend_from_slice(&m.data_header);
                out.extend((m.data_body.len() as u32).to_le_bytes());
                out.extend_from_slice(&m.data_body);
            }
            out
        }
        fn unframe(mut input: &[u8]) -> Vec<FlightData> {
            let mut out = Vec::new();
            let mut take = |input: &mut &[u8]| -> Option<bytes::Bytes> {
                let n = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize;
                let part = input.get(4..4 + n.min(input.len().saturating_sub(4)))?;
                let bytes = bytes::Bytes::copy_from_slice(part);
                *input = &input[4 + part.len()..];
                Some(bytes)
            };
            while let (Some(header), Some(body)) = (take(&mut input), take(&mut input)) {
                out.push(FlightData {
                    data_header: header,
                    data_body: body,
                    ..FlightData::default()
                });
            }
            out
        }
        let batch = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![Some(7)])) as _,
            ),
            ("b", Arc::new(StringArray::from(vec![Some("x")])) as _),
            (
                "c",
                Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<
                    datafusion::arrow::datatypes::Int32Type,
                    _,
                    _,
                >(vec![Some(vec![Some(1), None])])) as _,
            ),
        ])
        .expect("batch");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let encode = |options: IpcWriteOptions| -> Vec<FlightData> {
            runtime
                .block_on(
                    arrow_flight::encode::FlightDataEncoderBuilder::new()
                        .with_options(options)
                        .build(stream::iter([Ok(batch.clone())]))
                        .try_collect::<Vec<_>>(),
                )
                .expect("encodes")
        };
        let seeds = vec![
            frame(&encode(IpcWriteOptions::default())),
            frame(&encode(
                IpcWriteOptions::default()
                    .try_with_compression(Some(datafusion::arrow::ipc::CompressionType::LZ4_FRAME))
                    .expect("lz4"),
            )),
        ];
        let expected = [Some(DataType::Int32), Some(DataType::Utf8), None];
        fuzz::bytes("flight_doput_ipc", &seeds, |input| {
            let messages = unframe(input);
            let decoded = runtime.block_on(ipc::decode_bounded(stream::iter(
                messages.into_iter().map(Ok),
            )));
            if let Ok(batches) = decoded {
                let _ = params_from(&batches, &expected);
            }
        });
    }
}
