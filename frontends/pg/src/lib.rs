//! The PostgreSQL front-end: pgwire messages in, [`Handler`] calls, DataRows out.
//!
//! Authentication: the server asks for a cleartext password and the client sends its
//! token (an Entra ID token or a static/dev token) as that password.

pub mod connection;
pub mod encode;
pub mod params;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use futures::{stream, Sink, SinkExt, Stream, StreamExt};
use gateway::planner::{ErrorKind, QueryError};
use gateway::BatchStream;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome, AuthSource,
    LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{send_describe_response, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type, DEFAULT_NAME,
    METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{
    Describe, Execute, PortalSuspended, TARGET_TYPE_BYTE_PORTAL,
};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use gateway::handler::{CopyFormat, Handler, Outcome, Prepared, SessionCommand};
use gateway::session::Session;

/// The pgwire handlers of one gateway (shared by all pg connections).
pub struct PgFrontend {
    startup: Arc<PgStartup>,
    queries: Arc<PgQueries>,
    cancels: Arc<CancelRegistry>,
}

impl PgFrontend {
    /// `require_tls`: refuse logins over plain TCP (a listener that is not loopback-only).
    pub fn new(handler: Arc<dyn Handler>, require_tls: bool) -> Self {
        let cancels = Arc::new(CancelRegistry::default());
        let startup = PgStartup {
            driver: AuthDriver::new(ServerParameters),
            cancels: cancels.clone(),
            tokens: CleartextPasswordAuth::new(Arc::new(TokenSource {
                handler: handler.clone(),
            })),
            require_tls,
        };
        Self {
            startup: Arc::new(startup),
            queries: Arc::new(PgQueries {
                parser: Arc::new(PgParser {
                    handler: handler.clone(),
                }),
                handler,
            }),
            cancels,
        }
    }
}

impl PgWireServerHandlers for PgFrontend {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancels.clone()
    }
}

/// The session of one pg connection, kept in pgwire's per-connection extensions, with
/// the cancel token of the statement it is running.
struct PgSession(Mutex<Session>, Arc<CurrentQuery>);

/// The token of the statement a connection is running; a CancelRequest cancels it.
#[derive(Default)]
struct CurrentQuery(std::sync::Mutex<CancellationToken>);

impl CurrentQuery {
    /// A fresh token for the statement that starts now.
    fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
        token
    }

    fn cancel(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }
}

/// Connections by `(pid, secret key)` from BackendKeyData, for CancelRequest.
///
/// pgwire's own cancel support only interrupts planning; here a cancel also stops a
/// statement whose rows are streaming (dropping its stream stops it on the worker).
#[derive(Default)]
struct CancelRegistry(std::sync::Mutex<HashMap<(i32, bytes::Bytes), Arc<CurrentQuery>>>);

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, bytes::Bytes), Arc<CurrentQuery>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a connection from the registry when the connection ends.
struct CancelGuard {
    registry: Arc<CancelRegistry>,
    key: (i32, bytes::Bytes),
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let current = self.lock().get(&key).cloned();
        match current {
            Some(current) => {
                tracing::info!(pid = request.pid, "cancel request");
                current.cancel();
            }
            None => tracing::debug!(
                pid = request.pid,
                "cancel request for an unknown connection"
            ),
        }
    }
}

/// Stop a row stream when its statement is cancelled, ending it with 57014.
fn cancellable<T: Send + 'static>(
    rows: impl Stream<Item = PgWireResult<T>> + Send + 'static,
    token: CancellationToken,
) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
    let cancelled = token.clone();
    rows.take_until(token.cancelled_owned()).chain(stream::iter(
        std::iter::once(())
            .filter(move |_| cancelled.is_cancelled())
            .map(|_| Err(user_error(&cancel_error()))),
    ))
}

fn cancel_error() -> QueryError {
    QueryError::new(
        ErrorKind::Cancelled,
        "canceling statement due to user request",
    )
}

fn session_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<PgSession>> {
    client
        .session_extensions()
        .get::<PgSession>()
        .ok_or_else(|| {
            user_error(&QueryError::new(
                ErrorKind::ProtocolViolation,
                "not authenticated",
            ))
        })
}

/// A query error as pg error fields (SQLSTATE from the one error table).
fn error_info(err: &QueryError) -> ErrorInfo {
    ErrorInfo::new(
        "ERROR".to_string(),
        gateway::error::sqlstate(err.kind).to_string(),
        err.message.clone(),
    )
}

/// A query error as a pg ErrorResponse.
fn user_error(err: &QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(err)))
}

// ---------------------------------------------------------------------------------------
// Startup and authentication

/// Checks the password of a pg login as a token.
struct TokenSource {
    handler: Arc<dyn Handler>,
}

impl Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

#[async_trait]
impl AuthSource<Session> for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only `verify_password` is used: a token is checked, never looked up.
        Err(user_error(&QueryError::internal(
            "password lookup is not supported",
        )))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Session>> {
        let user = login.user().unwrap_or_default().to_string();
        let database = login.database().unwrap_or(&user).to_string();
        let token = String::from_utf8_lossy(presented);
        match self.handler.login(&token, &user, &database).await {
            Ok(mut session) => {
                session.protocol = "pg";
                tracing::info!(user, principal = %session.principal.name, id = %session.principal.id, warehouse = %session.warehouse, "pg login");
                Ok(Some(session))
            }
            Err(reason) => {
                tracing::warn!(user, host = %login.host(), token = %gateway::auth::fingerprint(&token), reason = reason.code(), "pg login refused: {reason}");
                Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".to_string(),
                    gateway::error::login_sqlstate(&reason).to_string(),
                    format!("password authentication failed for user \"{user}\": {reason}"),
                ))))
            }
        }
    }
}

struct PgStartup {
    driver: AuthDriver<ServerParameters, Session>,
    cancels: Arc<CancelRegistry>,
    tokens: CleartextPasswordAuth<TokenSource>,
    /// Tokens only over TLS (the listener is not loopback-only and insecure passwords are
    /// not allowed).
    require_tls: bool,
}

#[async_trait]
impl StartupHandler for PgStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.require_tls && !client.is_secure() {
                    // Refused before the client sends its token in the clear.
                    tracing::warn!(peer = %client.socket_addr(), "pg login refused: plain connection on a listener that requires TLS");
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_string(),
                        gateway::error::TLS_REQUIRED.to_string(),
                        "this server accepts tokens only over TLS: connect with sslmode=require"
                            .to_string(),
                    ))));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.driver
                    .begin_authentication(client, self.tokens.create())
                    .await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.driver.advance_authentication(client, message).await?
            }
            _ => return Ok(()),
        };
        if let AuthOutcome::Authenticated {
            identity,
            final_message,
        } = outcome
        {
            let session = identity
                .ok_or_else(|| user_error(&QueryError::internal("no identity after login")))?;
            // Startup parameters (application_name, DateStyle, …) are session settings, and
            // so are the `-c name=value` in `options` (`options=-c warehouse=etl`).
            for (name, value) in client.metadata().iter() {
                match name.as_str() {
                    "user" | "database" | "replication" => {}
                    "options" => {
                        for (name, value) in startup_options(value) {
                            session.settings.set(&name, value);
                        }
                    }
                    _ => session
                        .settings
                        .set(name, value.trim_matches('\'').to_string()),
                }
            }
            let current = Arc::new(CurrentQuery::default());
            client
                .session_extensions()
                .insert(PgSession(Mutex::new(session), current.clone()));
            self.driver
                .complete_authentication(client, final_message)
                .await?;
            // The cancel key exists once authentication completed (BackendKeyData).
            let (pid, secret) = client.pid_and_secret_key();
            session_of(client)?.0.lock().await.backend_pid = pid;
            let key = (pid, secret.to_bytes());
            self.cancels.lock().insert(key.clone(), current);
            client.session_extensions().insert(CancelGuard {
                registry: self.cancels.clone(),
                key,
            });
        }
        Ok(())
    }
}

/// The ParameterStatus messages sent after login; clients read `server_version` and
/// `integer_datetimes`, and psql shows some of the rest.
struct ServerParameters;

impl ServerParameterProvider for ServerParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let application = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        let params = [
            (
                "server_version",
                gateway::planner::pg_catalog::SERVER_VERSION.to_string(),
            ),
            ("server_encoding", "UTF8".into()),
            ("client_encoding", "UTF8".into()),
            ("DateStyle", "ISO, MDY".into()),
            ("IntervalStyle", "postgres".into()),
            ("TimeZone", "UTC".into()),
            ("integer_datetimes", "on".into()),
            ("standard_conforming_strings", "on".into()),
            ("is_superuser", "off".into()),
            ("default_transaction_read_only", "on".into()),
            ("in_hot_standby", "off".into()),
            ("session_authorization", user),
            ("application_name", application),
        ];
        Some(
            params
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Queries

struct PgQueries {
    handler: Arc<dyn Handler>,
    parser: Arc<PgParser>,
}

/// A statement stored by Parse: its plan and the parameter types announced to the client.
#[derive(Debug, Clone)]
pub struct PgStatement {
    prepared: Prepared,
    param_types: Vec<Type>,
}

fn format_for(format: &Format, index: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        // A client that sent fewer codes than columns broke the protocol; text is safe.
        Format::Individual(codes) => FieldFormat::from(codes.get(index).copied().unwrap_or(0)),
    }
}

/// DataRows from a stream of batches.
fn rows(
    batches: BatchStream,
    formats: Vec<FieldFormat>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send {
    batches.flat_map(move |item| {
        let rows: Vec<PgWireResult<DataRow>> = match item {
            Ok(batch) => match encode::encode_batch(&batch, &formats) {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(user_error(&QueryError::internal(format!(
                    "cannot encode a result value: {e}"
                ))))],
            },
            Err(e) => vec![Err(user_error(&e))],
        };
        stream::iter(rows)
    })
}

fn query_response(
    schema: &SchemaRef,
    formats: Vec<FieldFormat>,
    rows: impl Stream<Item = PgWireResult<DataRow>> + Send + 'static,
) -> QueryResponse {
    let fields = encode::fields(schema, |i| {
        formats.get(i).copied().unwrap_or(FieldFormat::Text)
    });
    QueryResponse::new(Arc::new(fields), rows)
}

/// Result batches as COPY data: one CopyData message per row, the first carrying the
/// header (binary signature, CSV column names) as PostgreSQL sends it — the ADBC
/// PostgreSQL driver reads the header and the first tuple from one message — or the header
/// alone when there are no rows (pgwire appends the binary trailer).
fn copy_rows(
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: BatchStream,
    format: CopyFormat,
) -> impl Stream<Item = PgWireResult<CopyData>> + Send {
    let header = Arc::new(std::sync::Mutex::new(encode::copy_header(&schema, &format)));
    let pending = header.clone();
    let rows = batches.flat_map(move |batch| {
        let messages: Vec<PgWireResult<CopyData>> = match batch {
            Ok(batch) => match encode::copy_batch(&batch, &format) {
                Ok(rows) => rows
                    .into_iter()
                    .map(|row| {
                        let first = header.lock().unwrap_or_else(|e| e.into_inner()).take();
                        let row = match first {
                            Some(mut h) => {
                                h.extend_from_slice(&row);
                                h
                            }
                            None => row,
                        };
                        Ok(CopyData::new(row.freeze()))
                    })
                    .collect(),
                Err(e) => vec![Err(user_error(&QueryError::internal(e)))],
            },
            Err(e) => vec![Err(user_error(&e))],
        };
        stream::iter(messages)
    });
    let rest = stream::once(async move {
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|h| Ok(CopyData::new(h.freeze())))
    })
    .filter_map(|h| async move { h });
    rows.chain(rest)
}

/// A statement's outcome as a pg response, its row stream passed through `wrap` (to make
/// it cancellable).
fn outcome_response(
    outcome: Outcome,
    formats: Vec<FieldFormat>,
    wrap: impl FnOnce(
        stream::BoxStream<'static, PgWireResult<DataRow>>,
    ) -> stream::BoxStream<'static, PgWireResult<DataRow>>,
) -> Response {
    match outcome {
        Outcome::Rows {
            schema,
            batches,
            command,
        } => {
            let mut response = query_response(
                &schema,
                formats.clone(),
                wrap(rows(batches, formats).boxed()),
            );
            response.set_command_tag(command);
            Response::Query(response)
        }
        Outcome::Command { tag } => Response::Execution(Tag::new(&tag)),
        Outcome::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
        Outcome::TransactionEnd { tag } => Response::TransactionEnd(Tag::new(&tag)),
    }
}

#[async_trait]
impl SimpleQueryHandler for PgQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let prepared = {
            let guard = session.0.lock().await;
            self.handler
                .prepare(&guard, query)
                .await
                .map_err(|e| user_error(&e))?
        };
        // One cancel token for the whole message: a cancel stops the statement running
        // and, as in PostgreSQL, the error ends the rest of the message.
        let token = session.1.start();
        let mut responses = Vec::with_capacity(prepared.len());
        for statement in prepared {
            match statement {
                // Queries start when pgwire reaches their turn, not all at once: a message
                // with many SELECTs must not claim a worker slot for each up front.
                Prepared::Query {
                    ref schema,
                    copy: Some(ref format),
                    ..
                } => {
                    let binary = format.binary;
                    let (handler, session, format) =
                        (self.handler.clone(), session.clone(), format.clone());
                    let columns = schema.fields().len();
                    let lazy = stream::once(async move {
                        let mut guard = session.0.lock().await;
                        match handler.execute(&mut guard, &statement, Vec::new()).await {
                            Ok(Outcome::Rows {
                                schema, batches, ..
                            }) => copy_rows(schema, batches, format).boxed(),
                            Ok(_) => stream::empty().boxed(),
                            Err(e) => stream::once(async move { Err(user_error(&e)) }).boxed(),
                        }
                    })
                    .flatten();
                    let lazy = cancellable(lazy, token.clone());
                    let overall = if binary { 1 } else { 0 };
                    responses.push(Response::CopyOut(CopyResponse::new(overall, columns, lazy)));
                }
                Prepared::Query { ref schema, .. } => {
                    let formats = vec![FieldFormat::Text; schema.fields().len()];
                    let (handler, session, schema) =
                        (self.handler.clone(), session.clone(), schema.clone());
                    let encode_formats = formats.clone();
                    let lazy = stream::once(async move {
                        let mut guard = session.0.lock().await;
                        match handler.execute(&mut guard, &statement, Vec::new()).await {
                            Ok(Outcome::Rows { batches, .. }) => {
                                rows(batches, encode_formats).boxed()
                            }
                            Ok(_) => stream::empty().boxed(),
                            Err(e) => stream::once(async move { Err(user_error(&e)) }).boxed(),
                        }
                    })
                    .flatten();
                    let lazy = cancellable(lazy, token.clone());
                    responses.push(Response::Query(query_response(&schema, formats, lazy)));
                }
                // Session statements, cursors among them, run in their turn; rows a FETCH
                // returns stream as the client reads them (in binary from a BINARY cursor).
                Prepared::Session(_) | Prepared::Declare { .. } => {
                    let format = match &statement {
                        Prepared::Session(SessionCommand::Fetch { binary: true, .. }) => {
                            FieldFormat::Binary
                        }
                        _ => FieldFormat::Text,
                    };
                    let formats = vec![format; statement.schema().fields().len()];
                    let mut guard = session.0.lock().await;
                    let outcome = tokio::select! {
                        outcome = self.handler.execute(&mut guard, &statement, Vec::new()) => outcome,
                        _ = token.cancelled() => Err(cancel_error()),
                    };
                    match outcome {
                        Ok(outcome) => {
                            let token = token.clone();
                            responses.push(outcome_response(outcome, formats, move |rows| {
                                cancellable(rows, token).boxed()
                            }))
                        }
                        Err(e) => {
                            responses.push(Response::Error(Box::new(error_info(&e))));
                            break;
                        }
                    }
                }
            }
        }
        Ok(responses)
    }
}

struct PgParser {
    handler: Arc<dyn Handler>,
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client)?;
        let mut prepared = {
            let guard = session.0.lock().await;
            self.handler
                .prepare(&guard, sql)
                .await
                .map_err(|e| user_error(&e))?
        };
        if prepared.len() > 1 {
            return Err(user_error(&QueryError::new(
                ErrorKind::Syntax,
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(prepared) = prepared.pop() else {
            return Ok(None);
        };
        // COPY … TO STDOUT through Parse/Bind/Execute (libpq's PQexecParams, as the ADBC
        // PostgreSQL driver sends it) streams CopyData as the simple query does; it takes
        // no parameters, as in PostgreSQL.
        if matches!(prepared, Prepared::Query { copy: Some(_), .. })
            && (!types.is_empty() || !prepared.param_types().is_empty())
        {
            return Err(user_error(&QueryError::new(
                ErrorKind::Syntax,
                "COPY … TO STDOUT takes no parameters",
            )));
        }
        let inferred = prepared.param_types();
        let count = inferred.len().max(types.len());
        let param_types = (0..count)
            .map(|i| {
                params::param_pg_type(
                    types.get(i).and_then(|t| t.as_ref()),
                    inferred.get(i).and_then(|t| t.as_ref()),
                )
            })
            .collect();
        Ok(Some(PgStatement {
            prepared,
            param_types,
        }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // A COPY returns no rows (its data comes as CopyData): Describe says NoData.
        if matches!(stmt.prepared, Prepared::Query { copy: Some(_), .. }) {
            return Ok(Vec::new());
        }
        let schema = stmt.prepared.schema();
        Ok(encode::fields(&schema, |i| {
            column_format
                .map(|f| format_for(f, i))
                .unwrap_or(FieldFormat::Text)
        }))
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgQueries {
    type Statement = PgStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// Describe, where a portal name may also be a cursor's: in PostgreSQL a cursor is a
    /// portal, and psycopg describes the one it declared by name.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if client.portal_store().get_portal(name).is_none() {
                let session = session_of(client)?;
                let shape = session.0.lock().await.cursors.shape(name);
                if let Ok((schema, binary)) = shape {
                    let format = if binary {
                        FieldFormat::Binary
                    } else {
                        FieldFormat::Text
                    };
                    let fields = encode::fields(&schema, |_| format);
                    send_describe_response(client, &DescribePortalResponse::new(fields)).await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// Execute a portal, streaming its rows to the socket.
    ///
    /// pgwire's default collects all of a portal's rows into memory when Execute has no
    /// row limit (the usual case), which would hold a whole result in the gateway. Here
    /// rows go from the portal's stream to the socket one by one; a row limit suspends the
    /// portal with its stream intact for the next Execute.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let portal_name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(portal_name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(portal_name.to_owned())),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut transaction_status = client.transaction_status();
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            let tag = match ExtendedQueryHandler::do_query(self, client, &portal, 0).await? {
                Response::Query(results) => {
                    *state = PortalExecutionState::Suspended(results);
                    None
                }
                Response::Execution(tag) => Some(tag),
                // COPY … TO STDOUT: CopyOutResponse, the data, CopyDone, `COPY n`.
                Response::CopyOut(copy) => {
                    *state = PortalExecutionState::Finished;
                    drop(state);
                    let sent = pgwire::api::copy::send_copy_out_response(client, copy).await;
                    client.set_state(PgWireConnectionState::ReadyForQuery);
                    return sent;
                }
                Response::TransactionStart(tag) => {
                    transaction_status = transaction_status.to_in_transaction_state();
                    Some(tag)
                }
                Response::TransactionEnd(tag) => {
                    transaction_status = transaction_status.to_idle_state();
                    Some(tag)
                }
                _ => Some(Tag::new("SELECT").with_rows(0)),
            };
            if let Some(tag) = tag {
                *state = PortalExecutionState::Finished;
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
                client.set_transaction_status(transaction_status);
                client.set_state(PgWireConnectionState::ReadyForQuery);
                return Ok(());
            }
        }
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let mut sent = 0usize;
        let mut suspended = false;
        if let PortalExecutionState::Suspended(results) = &mut *state {
            let tag = results.command_tag().to_owned();
            while let Some(row) = results.data_rows().next().await {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                sent += 1;
                if max_rows > 0 && sent == max_rows {
                    suspended = true;
                    break;
                }
            }
            if suspended {
                client
                    .feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                    .await?;
            } else {
                client
                    .feed(PgWireBackendMessage::CommandComplete(
                        Tag::new(&tag).with_rows(sent).into(),
                    ))
                    .await?;
            }
        } else {
            client
                .feed(PgWireBackendMessage::CommandComplete(
                    Tag::new("SELECT").with_rows(0).into(),
                ))
                .await?;
        }
        if !suspended {
            *state = PortalExecutionState::Finished;
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let inferred = statement.prepared.param_types();
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, raw) in portal.parameters.iter().enumerate() {
            let wire_type = statement.param_types.get(i).cloned().unwrap_or(Type::TEXT);
            let binary = format_for(&portal.parameter_format, i) == FieldFormat::Binary;
            let value = params::decode(
                i,
                raw.as_deref(),
                binary,
                &wire_type,
                inferred.get(i).and_then(|t| t.as_ref()),
            )
            .map_err(|e| user_error(&e))?;
            values.push(value);
        }
        let session = session_of(client)?;
        let mut guard = session.0.lock().await;
        // A cancel stops the statement while it waits for a worker, and while it streams.
        let token = session.1.start();
        let outcome = tokio::select! {
            outcome = self.handler.execute(&mut guard, &statement.prepared, values) => {
                outcome.map_err(|e| user_error(&e))?
            }
            _ = token.cancelled() => return Err(user_error(&cancel_error())),
        };
        let columns = statement.prepared.schema().fields().len();
        if let Prepared::Query {
            copy: Some(format), ..
        } = &statement.prepared
        {
            let overall = if format.binary { 1 } else { 0 };
            let data = match outcome {
                Outcome::Rows {
                    schema, batches, ..
                } => copy_rows(schema, batches, format.clone()).boxed(),
                _ => stream::empty().boxed(),
            };
            let data = cancellable(data, token);
            return Ok(Response::CopyOut(CopyResponse::new(overall, columns, data)));
        }
        let formats: Vec<FieldFormat> = (0..columns)
            .map(|i| format_for(&portal.result_column_format, i))
            .collect();
        Ok(outcome_response(outcome, formats, move |rows| {
            cancellable(rows, token).boxed()
        }))
    }
}

/// The settings in a startup `options` value: `-c name=value`, `-cname=value` or
/// `--name=value`, separated by spaces (a backslash escapes a space, as libpq writes it).
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_are_settings() {
        assert_eq!(
            startup_options(
                "-c warehouse=etl --search-path=tpch -cstatement_timeout=5s -c application_name=a\\ b"
            ),
            vec![
                ("warehouse".to_string(), "etl".to_string()),
                ("search_path".to_string(), "tpch".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("application_name".to_string(), "a b".to_string()),
            ]
        );
        assert!(startup_options("").is_empty());
    }
}
