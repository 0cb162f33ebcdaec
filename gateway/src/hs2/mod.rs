//! The HiveServer2 front-end, as Databricks SQL warehouses speak it: TCLIService calls as
//! strict binary Thrift messages, one per HTTP POST to `/sql/1.0/warehouses/<name>`. The
//! Databricks JDBC/ODBC drivers (Power BI, Tableau, Excel), databricks-sql-connector (dbt,
//! Superset, Airflow), `@databricks/sql`, impyla and PyHive connect here.
//!
//! ```text
//!  POST body ─► thrift (decode) ─► method ─► Handler::login / prepare / execute_arrow
//!                                        ─► operation (state, pages) ─► results (encode)
//! ```
//!
//! Every request carries `Authorization: Bearer <token>`; sessions and operations belong
//! to the principal that opened them. Statements are planned in the ExecuteStatement
//! request (SQL errors answer at once, with SQLSTATE) and run in the background; a short
//! result comes back in the same response ("direct results"), a long one is paged by
//! FetchResults, a large one is downloaded by links ([`cloudfetch`]). It translates only:
//! planning, grants and execution are the handler's.

pub mod cloudfetch;
pub mod metadata;
pub mod operation;
pub mod protocol;
pub mod results;
pub mod thrift;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use planner::{ErrorKind, QueryError};

use crate::handler::{ArrowRows, Handler, Outcome, Prepared, SessionCommand};
use crate::session::Session;
use crate::sqltext;
use cloudfetch::{Signer, Spool, SpoolConfig};
use operation::{Operation, Owner, Page, PageRows, Results, Shape, State};
use protocol::{op_type, row_set, state, status, Handle, Status};
use results::WireOptions;
use thrift::{app_error, ttype, Reader, Struct, Value, Writer};

/// The response header Thrift-over-HTTP clients read an HTTP-level error from.
pub const ERROR_HEADER: &str = "x-thriftserver-error-message";

/// Limits and sizes of the HS2 front-end (`[hs2]` in the config file).
#[derive(Debug, Clone)]
pub struct Hs2Config {
    /// Largest request body accepted (a statement plus parameters).
    pub max_request_bytes: usize,
    /// Results larger than this go out as download links when the client allows it.
    pub cloud_fetch_threshold: usize,
    pub spool: SpoolConfig,
    /// Largest inline page, whatever the client's maxBytes.
    pub max_page_bytes: usize,
    /// How long GetOperationStatus waits for a change before answering RUNNING. Short:
    /// databricks-sql-connector sends one request at a time, so its `cursor.cancel()`
    /// waits behind the poll in flight.
    pub poll_wait: Duration,
    /// How long ExecuteStatement waits for a result to send back directly.
    pub direct_wait: Duration,
    pub session_idle: Duration,
    pub operation_idle: Duration,
    pub max_sessions: usize,
    pub max_operations_per_session: usize,
}

impl Default for Hs2Config {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            cloud_fetch_threshold: 16 * 1024 * 1024,
            spool: SpoolConfig {
                chunk_bytes: 16 * 1024 * 1024,
                ahead: 8,
                link_ttl: Duration::from_secs(900),
            },
            max_page_bytes: 64 * 1024 * 1024,
            poll_wait: Duration::from_millis(500),
            direct_wait: Duration::from_secs(1),
            session_idle: Duration::from_secs(3600),
            operation_idle: Duration::from_secs(600),
            max_sessions: 10_000,
            max_operations_per_session: 1_000,
        }
    }
}

/// An open HS2 session.
struct Hs2Session {
    handle: Handle,
    owner: Owner,
    protocol: i64,
    /// The handler's session (its settings are shared by the session's operations).
    session: Session,
    operations: AtomicUsize,
    used: Mutex<Instant>,
}

impl Hs2Session {
    fn touch(&self) {
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
    fn idle(&self) -> Duration {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

/// The HS2 service of one gateway.
pub struct Hs2 {
    handler: Arc<dyn Handler>,
    config: Hs2Config,
    sessions: Mutex<HashMap<[u8; 16], Arc<Hs2Session>>>,
    operations: Mutex<HashMap<[u8; 16], Arc<Operation>>>,
    /// Where large results are spooled for download (`<data-dir>/results`).
    results_dir: PathBuf,
    signer: Signer,
    /// Whether the HTTP listener speaks TLS (download links use the same scheme).
    tls: bool,
}

/// What an HTTP request to the Thrift endpoint is answered with.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-thrift"),
        );
        for (name, value) in self.headers {
            // Header values must be visible ASCII: messages are made so.
            let value: String = value
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

fn http_error(status: StatusCode, message: &str) -> Reply {
    Reply {
        status,
        body: Vec::new(),
        headers: vec![(ERROR_HEADER, message.to_string())],
    }
}

/// A whole reply message to a call: `success` (field 0) holds the response struct.
fn reply(name: &str, seqid: i32, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    w.message_begin(name, thrift::REPLY, seqid);
    w.struct_field(0, body);
    w.stop();
    w.buf
}

/// A response struct that holds only its status (field 1).
fn status_only(status: &Status) -> impl FnOnce(&mut Writer) + '_ {
    move |w| status.write(w, 1)
}

/// A query error as a `TStatus`, by the one error table.
fn error_status(err: &QueryError) -> Status {
    Status::error(
        status::ERROR,
        crate::error::sqlstate(err.kind),
        err.message.clone(),
    )
}

fn invalid_session() -> Status {
    Status::error(
        status::INVALID_HANDLE,
        crate::error::HS2_INVALID_SESSION,
        "Invalid SessionHandle: the session was closed, expired or never existed",
    )
}

fn invalid_operation() -> Status {
    Status::error(
        status::INVALID_HANDLE,
        crate::error::HS2_INVALID_OPERATION,
        "Invalid OperationHandle: the operation was closed, expired or never existed",
    )
}

/// The request of a call (its one argument, field 1).
fn request(args: &Struct) -> Struct {
    args.strukt(1).cloned().unwrap_or_default()
}

impl Hs2 {
    pub fn new(
        handler: Arc<dyn Handler>,
        config: Hs2Config,
        data_dir: &std::path::Path,
        tls: bool,
    ) -> Arc<Self> {
        let results_dir = data_dir.join("results");
        // Downloads of an earlier run are gone with its operations.
        let _ = std::fs::remove_dir_all(&results_dir);
        let hs2 = Arc::new(Self {
            handler,
            config,
            sessions: Mutex::default(),
            operations: Mutex::default(),
            results_dir,
            signer: Signer::new(),
            tls,
        });
        tokio::spawn(reap(Arc::downgrade(&hs2)));
        hs2
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Arc<Hs2Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn operations(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Arc<Operation>>> {
        self.operations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer one POST to `/sql/1.0/warehouses/<warehouse>`.
    pub async fn call(&self, warehouse: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let mut reader = Reader::new(body);
        let header = match reader.message_header() {
            Ok(header) => header,
            Err(e) => return http_error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let (name, seqid) = (header.name.as_str(), header.seqid);
        let thrift_reply = |body: Vec<u8>| Reply {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
        };
        if header.kind != thrift::CALL && header.kind != thrift::ONEWAY {
            return thrift_reply(thrift::application_exception(
                name,
                seqid,
                app_error::INVALID_MESSAGE_TYPE,
                "expected a CALL message",
            ));
        }
        let args = match reader.read_struct() {
            Ok(args) => args,
            Err(e) => {
                return thrift_reply(thrift::application_exception(
                    name,
                    seqid,
                    app_error::PROTOCOL_ERROR,
                    &e.to_string(),
                ))
            }
        };
        // Unknown methods (impyla's GetLog, CloseImpalaOperation, …) are refused before the
        // token is looked at, so clients fall back without a round trip to the IdP.
        if !KNOWN_METHODS.contains(&name) {
            return thrift_reply(thrift::application_exception(
                name,
                seqid,
                app_error::UNKNOWN_METHOD,
                &format!("Invalid method name: '{name}'"),
            ));
        }
        let login = match crate::http::bearer_login(self.handler.as_ref(), headers, warehouse).await
        {
            Ok(session) => session,
            Err(refused) => {
                let mut reply = http_error(refused.status, &refused.message);
                if let Some(challenge) = refused.challenge {
                    reply.headers.push(("www-authenticate", challenge));
                }
                return reply;
            }
        };
        let base = self.base_url(headers);
        let req = request(&args);
        let body = match name {
            "OpenSession" => self.open_session(&req, login, warehouse, seqid),
            "CloseSession" => self.close_session(&req, &login, seqid),
            "GetInfo" => self.get_info(&req, &login, seqid),
            "ExecuteStatement" => match self.execute_statement(&req, &login, seqid).await {
                Ok(body) => body,
                Err(reply) => return reply,
            },
            "GetOperationStatus" => self.get_operation_status(&req, &login, seqid).await,
            "GetResultSetMetadata" => self.get_result_set_metadata(&req, &login, seqid).await,
            "FetchResults" => self.fetch_results(&req, &login, &base, seqid).await,
            "CancelOperation" => self.cancel_operation(&req, &login, seqid),
            "CloseOperation" => self.close_operation(&req, &login, seqid),
            _ => match self.metadata_call(name, &req, &login, seqid).await {
                Ok(body) => body,
                Err(reply) => return reply,
            },
        };
        thrift_reply(body)
    }

    /// Scheme and host the client reached us by, for download links.
    fn base_url(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{}://{host}", if self.tls { "https" } else { "http" })
    }

    /// The session a handle names, if the caller owns it.
    fn session_of(&self, req: &Struct, login: &Session) -> Option<Arc<Hs2Session>> {
        let handle = Handle::of(req.strukt(1))?;
        let session = self.sessions().get(&handle.guid).cloned()?;
        if session.handle.secret != handle.secret || session.owner != owner(login) {
            return None;
        }
        session.touch();
        Some(session)
    }

    /// The operation a handle names, if the caller owns it.
    fn operation_of(&self, req: &Struct, login: &Session) -> Option<Arc<Operation>> {
        let handle = Handle::of(req.strukt(1))?;
        let op = self.operations().get(&handle.guid).cloned()?;
        if op.handle.secret != handle.secret || op.owner != owner(login) {
            return None;
        }
        op.touch();
        if let Some(session) = self.sessions().get(&op.session.guid) {
            session.touch();
        }
        Some(op)
    }

    fn open_session(&self, req: &Struct, login: Session, warehouse: &str, seqid: i32) -> Vec<u8> {
        let name = "OpenSession";
        let refuse = |status: Status| {
            reply(name, seqid, |w| {
                status.write(w, 1);
                w.i32_field(2, protocol::SPARK_MAX as i32);
            })
        };
        let version = match protocol::negotiate(req.int(1), req.int(1282)) {
            Ok(v) => v,
            Err(message) => {
                return refuse(Status::error(
                    status::ERROR,
                    crate::error::HS2_BAD_PROTOCOL,
                    message,
                ))
            }
        };
        let session = login;
        // The initial namespace: sluice has one catalog; a schema is where unqualified
        // names resolve.
        let namespace = req.strukt(1284);
        if let Some(catalog) = namespace
            .and_then(|n| n.string(1))
            .filter(|c| !c.is_empty())
        {
            if !catalog.eq_ignore_ascii_case(planner::CATALOG) {
                return refuse(error_status(&QueryError::new(
                    ErrorKind::UndefinedObject,
                    format!(
                        "catalog {catalog:?} does not exist: this warehouse has one catalog, {:?}",
                        planner::CATALOG
                    ),
                )));
            }
        }
        if let Some(schema) = namespace
            .and_then(|n| n.string(2))
            .filter(|s| !s.is_empty())
        {
            session.settings.set("search_path", schema);
        }
        for (key, value) in req.string_map(4) {
            apply_setting(&session, &key, value);
        }
        let handle = Handle::random();
        {
            let mut sessions = self.sessions();
            if sessions.len() >= self.config.max_sessions {
                sessions.retain(|_, s| s.idle() < self.config.session_idle);
                if sessions.len() >= self.config.max_sessions {
                    return refuse(error_status(&QueryError::new(
                        ErrorKind::ResourcesExhausted,
                        "too many open sessions: close sessions you no longer use",
                    )));
                }
            }
            sessions.insert(
                handle.guid,
                Arc::new(Hs2Session {
                    handle,
                    owner: owner(&session),
                    protocol: version,
                    session,
                    operations: AtomicUsize::new(0),
                    used: Mutex::new(Instant::now()),
                }),
            );
        }
        tracing::info!(session = %handle.hex(), warehouse, protocol = version, "hs2 session opened");
        reply(name, seqid, |w| {
            Status::OK.write(w, 1);
            w.i32_field(2, version as i32);
            w.struct_field(3, |w| {
                handle.write(w, 1);
                w.i32_field(3329, version as i32);
            });
            w.bool_field(1285, true);
        })
    }

    fn close_session(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let Some(session) = self.session_of(req, login) else {
            return reply("CloseSession", seqid, status_only(&invalid_session()));
        };
        self.sessions().remove(&session.handle.guid);
        let closed: Vec<Arc<Operation>> = {
            let mut ops = self.operations();
            let mine: Vec<[u8; 16]> = ops
                .values()
                .filter(|o| o.session == session.handle)
                .map(|o| o.handle.guid)
                .collect();
            mine.iter().filter_map(|g| ops.remove(g)).collect()
        };
        for op in closed {
            op.stop(State::Closed);
        }
        reply("CloseSession", seqid, status_only(&Status::OK))
    }

    fn get_info(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let name = "GetInfo";
        if self.session_of(req, login).is_none() {
            return reply(name, seqid, |w| {
                invalid_session().write(w, 1);
                w.struct_field(2, |w| w.string_field(1, ""));
            });
        }
        // TGetInfoType values: server name 13, DBMS name 17, DBMS version 18, and a few
        // more that ODBC drivers ask for.
        let value: Option<String> = match req.int(2) {
            Some(13) | Some(17) => Some("sluice".into()),
            Some(18) => Some(env!("CARGO_PKG_VERSION").into()),
            Some(2) => Some(planner::CATALOG.into()),
            Some(14) => Some("\\".into()),
            Some(29) => Some("`".into()),
            Some(47) => Some(login.principal.name.clone()),
            Some(10003) => Some("Y".into()),
            _ => None,
        };
        match value {
            Some(value) => reply(name, seqid, |w| {
                Status::OK.write(w, 1);
                w.struct_field(2, |w| w.string_field(1, &value));
            }),
            None => reply(name, seqid, |w| {
                error_status(&QueryError::new(
                    ErrorKind::NotSupported,
                    format!("GetInfo type {} is not supported", req.int(2).unwrap_or(-1)),
                ))
                .write(w, 1);
                w.struct_field(2, |w| w.string_field(1, ""));
            }),
        }
    }

    /// ExecuteStatement: plan now, run in the background, answer with the first page
    /// when it is ready soon enough. `Err` is an HTTP-level answer (queue full: 503).
    async fn execute_statement(
        &self,
        req: &Struct,
        login: &Session,
        seqid: i32,
    ) -> Result<Vec<u8>, Reply> {
        let name = "ExecuteStatement";
        let respond_error = |status: Status| reply(name, seqid, status_only(&status));
        let Some(hs2_session) = self.session_of(req, login) else {
            return Ok(respond_error(invalid_session()));
        };
        let statement = req.string(2).unwrap_or_default();
        let (sql, params) =
            match statement_with_parameters(&statement, req.list(1288).unwrap_or(&[])) {
                Ok(v) => v,
                Err(e) => return Ok(respond_error(error_status(&e))),
            };
        // Per-statement settings: the query timeout and the client's overlay (its own
        // bookkeeping keys aside) apply to this statement only.
        let mut session = hs2_session.session.clone();
        let overlay: Vec<(String, String)> = req
            .string_map(3)
            .into_iter()
            .filter(|(k, _)| !CLIENT_KEYS.contains(&k.as_str()))
            .collect();
        let timeout = req.int(5).filter(|t| *t > 0);
        if !overlay.is_empty() || timeout.is_some() {
            session.settings = session.settings.snapshot();
            for (k, v) in overlay {
                apply_setting(&session, &k, v);
            }
            if let Some(seconds) = timeout {
                session
                    .settings
                    .set("statement_timeout", format!("{seconds}s"));
            }
        }
        let prepared = match self.handler.prepare(&session, &sql).await {
            Ok(mut p) if p.len() == 1 => p.remove(0),
            Ok(p) => {
                return Ok(respond_error(error_status(&QueryError::new(
                    ErrorKind::NotSupported,
                    format!(
                        "send one statement per ExecuteStatement ({} given)",
                        p.len()
                    ),
                ))))
            }
            Err(e) => return Ok(respond_error(error_status(&e))),
        };
        let options = wire_options(req);
        let has_result_set =
            !matches!(&prepared, Prepared::Session(c) if !matches!(c, SessionCommand::Show(_)));
        tracing::debug!(principal = %login.principal.name, sql = %sql, "hs2 statement");
        let handler = self.handler.clone();
        let row_limit = req.int(1287).filter(|n| *n > 0);
        let work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>> =
            Box::pin(async move {
                let mut session = session;
                match &prepared {
                    Prepared::Session(_) => {
                        match handler.execute(&mut session, &prepared, Vec::new()).await? {
                            Outcome::Rows { schema, batches } => {
                                Ok((schema, ArrowRows::Batches(batches)))
                            }
                            _ => Ok((
                                Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                                ArrowRows::Batches(Box::pin(futures::stream::empty())),
                            )),
                        }
                    }
                    Prepared::Query { .. } => {
                        let params = bind(params, prepared.param_types())?;
                        handler.execute_arrow(&mut session, &prepared, params).await
                    }
                }
            });
        let op = match self.start(
            &hs2_session,
            op_type::EXECUTE_STATEMENT,
            has_result_set,
            statement,
            options,
            row_limit,
            work,
        ) {
            Ok(op) => op,
            Err(e) => return Ok(respond_error(error_status(&e))),
        };
        self.respond_started(name, seqid, req, req.bool(4).unwrap_or(false), op)
            .await
    }

    /// Create an operation and run `work` for it in the background.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        session: &Arc<Hs2Session>,
        kind: i32,
        has_result_set: bool,
        statement: String,
        options: WireOptions,
        row_limit: Option<i64>,
        work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>>,
    ) -> Result<Arc<Operation>, QueryError> {
        if session.operations.load(Ordering::Relaxed) >= self.config.max_operations_per_session {
            return Err(QueryError::new(
                ErrorKind::ResourcesExhausted,
                format!(
                    "this session has {} open operations: close the ones you no longer read",
                    self.config.max_operations_per_session
                ),
            ));
        }
        let op = Arc::new(Operation::new(
            session.handle,
            session.owner.clone(),
            kind,
            has_result_set,
            statement,
        ));
        session.operations.fetch_add(1, Ordering::Relaxed);
        self.operations().insert(op.handle.guid, op.clone());
        let columnar = protocol::columnar(session.protocol);
        let threshold = self.config.cloud_fetch_threshold;
        let spool_dir = self.results_dir.join(op.handle.hex());
        let spool_config = self.config.spool.clone();
        let runner = op.clone();
        tokio::spawn(async move {
            let op = runner;
            op.set_state(State::Running);
            let downloads = options.arrow && options.download;
            let run = async {
                let (schema, rows) = work.await?;
                let shape = Shape::new(schema, &options, columnar)?;
                let items = operation::items(rows, &shape).await?;
                let items = match row_limit {
                    Some(limit) => limit_rows(items, limit as usize),
                    None => items,
                };
                let mut results = Results::new(items);
                // Read the first rows before FINISHED (an early error is the operation's);
                // when the client can download, read up to the threshold to choose.
                let ended = results
                    .read_ahead(if downloads { threshold } else { 1 })
                    .await?;
                Ok::<_, QueryError>((shape, results, ended))
            };
            let outcome = tokio::select! {
                outcome = run => outcome,
                _ = op.cancel.cancelled() => return,
            };
            match outcome {
                Err(e) => {
                    tracing::debug!(operation = %op.handle.hex(), error = %e, "hs2 operation failed");
                    op.set_state(State::Failed(e));
                }
                Ok((mut shape, mut results, ended)) => {
                    if downloads && !ended {
                        shape.format = row_set::URL;
                        let (ahead, items) = results.take_rest();
                        let spool = Spool::start(
                            spool_dir,
                            &shape,
                            ahead,
                            items,
                            &spool_config,
                            op.cancel.clone(),
                        );
                        let _ = op.spool.set(spool);
                    }
                    *op.results.lock().await = results;
                    op.finish(shape);
                }
            }
        });
        Ok(op)
    }

    /// The response to a call that started an operation: its handle and, when the client
    /// asked for them, the direct results.
    async fn respond_started(
        &self,
        name: &str,
        seqid: i32,
        req: &Struct,
        run_async: bool,
        op: Arc<Operation>,
    ) -> Result<Vec<u8>, Reply> {
        let direct = req.strukt(1281).map(|d| {
            (
                d.int(1).filter(|n| *n > 0).unwrap_or(100_000) as usize,
                d.int(2).filter(|n| *n > 0).unwrap_or(i64::MAX) as usize,
            )
        });
        let final_state = if !run_async {
            // Synchronous: wait for the end (cancel, timeout and errors end it too).
            loop {
                let s = op.wait(Duration::from_secs(3600)).await;
                if s.is_terminal() {
                    break s;
                }
            }
        } else if direct.is_some() {
            op.wait(self.config.direct_wait).await
        } else {
            op.state()
        };
        // A full queue is an HTTP 503 the clients retry after Retry-After.
        if let State::Failed(e) = &final_state {
            if e.kind == ErrorKind::QueueFull {
                self.forget(&op);
                let mut reply = http_error(StatusCode::SERVICE_UNAVAILABLE, &e.message);
                reply.headers.push(("retry-after", "1".into()));
                return Err(reply);
            }
        }
        let mut page = None;
        let mut metadata = false;
        if let (Some((max_rows, max_bytes)), State::Finished) = (direct, &final_state) {
            metadata = true;
            if op.spool.get().is_none() {
                if let Some(shape) = op.shape() {
                    let mut results = op.results.lock().await;
                    page = Some(
                        results
                            .page(shape, max_rows, max_bytes.min(self.config.max_page_bytes))
                            .await,
                    );
                }
            }
        }
        let closed = matches!(&page, Some(Ok(p)) if !p.more);
        if closed {
            self.forget(&op);
        }
        Ok(reply(name, seqid, |w| {
            Status::OK.write(w, 1);
            protocol::write_operation_handle(w, 2, &op.handle, op.kind, op.has_result_set);
            if direct.is_some() {
                w.struct_field(1281, |w| {
                    w.struct_field(1, |w| {
                        write_operation_status(w, &final_state, op.has_result_set)
                    });
                    if metadata {
                        w.struct_field(2, |w| write_metadata(w, &op));
                    }
                    match &page {
                        Some(Ok(page)) => {
                            w.struct_field(3, |w| write_fetch(w, &op, page, &[], false))
                        }
                        Some(Err(e)) => w.struct_field(3, |w| {
                            error_status(e).write(w, 1);
                            w.bool_field(2, false);
                        }),
                        None => {}
                    }
                    if closed {
                        w.struct_field(4, |w| Status::OK.write(w, 1));
                    }
                });
            }
        }))
    }

    /// Remove an operation (closed, or answered whole in direct results).
    fn forget(&self, op: &Arc<Operation>) {
        if self.operations().remove(&op.handle.guid).is_some() {
            if let Some(session) = self.sessions().get(&op.session.guid) {
                session.operations.fetch_sub(1, Ordering::Relaxed);
            }
        }
        op.stop(State::Closed);
    }

    async fn get_operation_status(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let name = "GetOperationStatus";
        let Some(op) = self.operation_of(req, login) else {
            return reply(name, seqid, status_only(&invalid_operation()));
        };
        // Long-poll: clients poll without sleeping, so answer when something changes.
        let state = op.wait(self.config.poll_wait).await;
        reply(name, seqid, |w| {
            write_operation_status(w, &state, op.has_result_set)
        })
    }

    /// Wait for an operation to finish (bounded); the error to answer with otherwise.
    async fn finished(&self, op: &Operation) -> Result<(), Status> {
        let deadline = Instant::now() + RESULT_WAIT;
        loop {
            match op.wait(RESULT_WAIT).await {
                State::Finished => return Ok(()),
                State::Failed(e) => return Err(error_status(&e)),
                State::Canceled => {
                    return Err(error_status(&QueryError::new(ErrorKind::Cancelled, "the operation was cancelled")))
                }
                State::Closed => return Err(invalid_operation()),
                State::Pending | State::Running if Instant::now() >= deadline => {
                    return Err(Status::error(
                        status::ERROR,
                        crate::error::HS2_STILL_RUNNING,
                        "the operation is still running: poll GetOperationStatus until it is FINISHED",
                    ))
                }
                State::Pending | State::Running => {}
            }
        }
    }

    async fn get_result_set_metadata(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let name = "GetResultSetMetadata";
        let Some(op) = self.operation_of(req, login) else {
            return reply(name, seqid, status_only(&invalid_operation()));
        };
        if let Err(status) = self.finished(&op).await {
            return reply(name, seqid, status_only(&status));
        }
        reply(name, seqid, |w| write_metadata(w, &op))
    }

    async fn fetch_results(
        &self,
        req: &Struct,
        login: &Session,
        base: &str,
        seqid: i32,
    ) -> Vec<u8> {
        let name = "FetchResults";
        let Some(op) = self.operation_of(req, login) else {
            return reply(name, seqid, status_only(&invalid_operation()));
        };
        // fetchType 1: the operation log, which sluice does not keep: one empty text column.
        if req.int(4) == Some(1) {
            return reply(name, seqid, |w| {
                Status::OK.write(w, 1);
                w.bool_field(2, false);
                w.struct_field(3, |w| {
                    w.i64_field(1, 0);
                    w.list_begin(2, ttype::STRUCT, 0);
                    w.list_begin(3, ttype::STRUCT, 1);
                    w.field(ttype::STRUCT, 7);
                    w.list_begin(1, ttype::STRING, 0);
                    w.binary_field(2, &[]);
                    w.stop();
                    w.stop();
                });
            });
        }
        if let Err(status) = self.finished(&op).await {
            return reply(name, seqid, status_only(&status));
        }
        let Some(shape) = op.shape() else {
            return reply(name, seqid, status_only(&invalid_operation()));
        };
        let include_metadata = req.bool(1283).unwrap_or(false);
        let max_rows = req.int(3).filter(|n| *n > 0).unwrap_or(10_000) as usize;
        let max_bytes = req.int(1281).filter(|n| *n > 0).unwrap_or(i64::MAX) as usize;
        let mut results = tokio::select! {
            results = op.results.lock() => results,
            _ = op.cancel.cancelled() => return reply(name, seqid, status_only(&error_status(&QueryError::new(ErrorKind::Cancelled, "the operation was cancelled")))),
        };
        // Only forward fetching: rows already sent cannot be read again.
        let orientation = req.int(2).unwrap_or(0);
        let wants_start = req.int(1282).filter(|s| *s >= 0);
        if (orientation != 0 && !(orientation == 4 && results.offset() == 0))
            || wants_start.is_some_and(|s| s < results.offset())
        {
            return reply(name, seqid, status_only(&error_status(&QueryError::new(
                ErrorKind::NotSupported,
                format!("results can only be fetched forward (FETCH_NEXT); {} rows were already sent", results.offset()),
            ))));
        }
        let page: Result<(Page, Vec<cloudfetch::Link>), QueryError> = match op.spool.get() {
            Some(spool) => {
                let spool = spool.clone();
                let links = tokio::select! {
                    links = spool.next_chunks(self.config.poll_wait, 64) => links,
                    _ = op.cancel.cancelled() => Err(QueryError::new(ErrorKind::Cancelled, "the operation was cancelled")),
                };
                links.map(|(chunks, more)| {
                    let links: Vec<_> = chunks
                        .iter()
                        .map(|c| {
                            self.signer
                                .link(base, &op.handle.hex(), c, self.config.spool.link_ttl)
                        })
                        .collect();
                    let page = Page {
                        start: links.first().map(|l| l.start).unwrap_or(0),
                        rows: PageRows::Links(Vec::new()),
                        more,
                    };
                    (page, links)
                })
            }
            None => tokio::select! {
                page = results.page(shape, max_rows, max_bytes.min(self.config.max_page_bytes)) => page.map(|p| (p, Vec::new())),
                _ = op.cancel.cancelled() => Err(QueryError::new(ErrorKind::Cancelled, "the operation was cancelled")),
            },
        };
        drop(results);
        match page {
            Ok((page, links)) => reply(name, seqid, |w| {
                write_fetch(w, &op, &page, &links, include_metadata)
            }),
            Err(e) => reply(name, seqid, |w| {
                error_status(&e).write(w, 1);
                w.bool_field(2, false);
            }),
        }
    }

    fn cancel_operation(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let Some(op) = self.operation_of(req, login) else {
            return reply("CancelOperation", seqid, status_only(&invalid_operation()));
        };
        tracing::info!(operation = %op.handle.hex(), "hs2 operation cancelled by the client");
        op.stop(State::Canceled);
        reply("CancelOperation", seqid, status_only(&Status::OK))
    }

    fn close_operation(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let Some(op) = self.operation_of(req, login) else {
            return reply("CloseOperation", seqid, status_only(&invalid_operation()));
        };
        self.forget(&op);
        reply("CloseOperation", seqid, status_only(&Status::OK))
    }

    /// GetCatalogs, GetSchemas, GetTables, GetTableTypes, GetColumns, GetTypeInfo,
    /// GetFunctions, GetPrimaryKeys, GetCrossReference: answered from the session's
    /// (grant-filtered) catalog, as Thrift columns.
    async fn metadata_call(
        &self,
        name: &str,
        req: &Struct,
        login: &Session,
        seqid: i32,
    ) -> Result<Vec<u8>, Reply> {
        let Some(hs2_session) = self.session_of(req, login) else {
            return Ok(reply(name, seqid, status_only(&invalid_session())));
        };
        let session = hs2_session.session.clone();
        let catalog = planner::CATALOG;
        let (c, s, t) = (req.string(2), req.string(3), req.string(4));
        let answer: Result<(i32, RecordBatch), QueryError> = async {
            Ok(match name {
                "GetCatalogs" => (op_type::GET_CATALOGS, metadata::catalogs(catalog)?),
                "GetTableTypes" => (op_type::GET_TABLE_TYPES, metadata::table_types()?),
                "GetTypeInfo" => (op_type::GET_TYPE_INFO, metadata::type_info()?),
                "GetPrimaryKeys" => (op_type::UNKNOWN, metadata::primary_keys()?),
                "GetCrossReference" => (op_type::UNKNOWN, metadata::cross_reference()?),
                "GetSchemas" => {
                    let schemas = self.schema_names(&session).await?;
                    (op_type::GET_SCHEMAS, metadata::schemas(catalog, &schemas, c.as_deref(), s.as_deref())?)
                }
                "GetTables" => {
                    let types: Option<Vec<String>> = req.list(5).map(|l| {
                        l.iter()
                            .filter_map(|v| match v {
                                Value::Binary(b) => Some(String::from_utf8_lossy(b).to_uppercase()),
                                _ => None,
                            })
                            .collect()
                    });
                    let tables: Vec<_> = self
                        .visible_tables(&session, c.as_deref(), s.as_deref(), t.as_deref())
                        .await?
                        .into_iter()
                        .filter(|t| types.as_ref().is_none_or(|types| types.is_empty() || types.iter().any(|k| k == t.jdbc_kind())))
                        .collect();
                    (op_type::GET_TABLES, metadata::tables(catalog, &tables)?)
                }
                "GetColumns" => {
                    let mut columns = Vec::new();
                    for table in self.visible_tables(&session, c.as_deref(), s.as_deref(), t.as_deref()).await? {
                        let sql = format!(
                            "SELECT * FROM \"{}\".\"{}\"",
                            table.schema.replace('"', "\"\""),
                            table.name.replace('"', "\"\"")
                        );
                        if let Ok(prepared) = self.handler.prepare(&session, &sql).await {
                            if let Some(p) = prepared.first() {
                                columns.push((table.schema, table.name, p.schema()));
                            }
                        }
                    }
                    (op_type::GET_COLUMNS, metadata::columns(catalog, &columns, req.string(5).as_deref())?)
                }
                "GetFunctions" => {
                    // TGetFunctionsReq: 2 catalogName, 3 schemaName, 4 functionName.
                    let rows = self
                        .catalog_rows(
                            &session,
                            "SELECT DISTINCT n.nspname, p.proname FROM pg_catalog.pg_proc p \
                             JOIN pg_catalog.pg_namespace n ON p.pronamespace = n.oid ORDER BY 1, 2",
                        )
                        .await?;
                    let functions: Vec<(String, String)> = pairs(&rows)?
                        .into_iter()
                        .filter(|(schema, function)| {
                            metadata::matches(c.as_deref(), catalog)
                                && metadata::matches(s.as_deref(), schema)
                                && metadata::matches(t.as_deref(), function)
                        })
                        .collect();
                    (op_type::GET_FUNCTIONS, metadata::functions(catalog, &functions)?)
                }
                other => return Err(QueryError::internal(format!("{other} is not a metadata call"))),
            })
        }
        .await;
        let (kind, batch) = match answer {
            Ok(answer) => answer,
            Err(e) => return Ok(reply(name, seqid, status_only(&error_status(&e)))),
        };
        let schema = batch.schema();
        let work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>> =
            Box::pin(async move {
                Ok((
                    schema,
                    ArrowRows::Batches(Box::pin(futures::stream::once(async move { Ok(batch) }))),
                ))
            });
        let op = match self.start(
            &hs2_session,
            kind,
            true,
            name.to_string(),
            WireOptions::columns(),
            None,
            work,
        ) {
            Ok(op) => op,
            Err(e) => return Ok(reply(name, seqid, status_only(&error_status(&e)))),
        };
        // TGet*Req: 1281 getDirectResults, 1282 runAsync.
        self.respond_started(name, seqid, req, req.bool(1282).unwrap_or(false), op)
            .await
    }

    /// Rows of a catalog query, with the session's grants.
    async fn catalog_rows(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        let mut session = session.clone();
        let mut out = Vec::new();
        for p in self.handler.prepare(&session, sql).await? {
            if let Outcome::Rows { batches, .. } =
                self.handler.execute(&mut session, &p, Vec::new()).await?
            {
                out.extend(batches.try_collect::<Vec<_>>().await?);
            }
        }
        Ok(out)
    }

    async fn schema_names(&self, session: &Session) -> Result<Vec<String>, QueryError> {
        let rows = self
            .catalog_rows(
                session,
                "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            )
            .await?;
        let mut names = Vec::new();
        for batch in &rows {
            names.extend(strings(batch, 0)?.into_iter().filter(|s| !postgres_only(s)));
        }
        Ok(names)
    }

    async fn visible_tables(
        &self,
        session: &Session,
        catalog: Option<&str>,
        schema: Option<&str>,
        table: Option<&str>,
    ) -> Result<Vec<metadata::TableEntry>, QueryError> {
        if !metadata::matches(catalog, planner::CATALOG) {
            return Ok(Vec::new());
        }
        let rows = self
            .catalog_rows(
                session,
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 ORDER BY table_schema, table_name",
            )
            .await?;
        let mut out = Vec::new();
        for batch in &rows {
            let (schemas, names, kinds) =
                (strings(batch, 0)?, strings(batch, 1)?, strings(batch, 2)?);
            for ((s, t), k) in schemas.into_iter().zip(names).zip(kinds) {
                if !postgres_only(&s)
                    && metadata::matches(schema, &s)
                    && metadata::matches(table, &t)
                {
                    out.push(metadata::TableEntry {
                        schema: s,
                        name: t,
                        kind: k,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Serve a download link: `/results/<operation>/<chunk>?expires=…&sig=…`.
    pub async fn download(&self, operation: &str, chunk: &str, query: &str) -> Response {
        let param = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        let refuse = |status: StatusCode, message: &str| {
            (
                status,
                [(ERROR_HEADER, message.to_string())],
                message.to_string(),
            )
                .into_response()
        };
        let (Ok(index), Some(Ok(expiry)), Some(sig)) = (
            chunk.parse::<usize>(),
            param("expires").map(|e| e.parse::<i64>()),
            param("sig"),
        ) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a result link needs a chunk number, expires and sig",
            );
        };
        if let Err(why) = self.signer.check(operation, index, expiry, &sig) {
            return refuse(StatusCode::FORBIDDEN, why);
        }
        let spool = hex::decode(operation)
            .ok()
            .and_then(|g| <[u8; 16]>::try_from(g).ok())
            .and_then(|g| self.operations().get(&g).cloned())
            .and_then(|op| {
                op.touch();
                op.spool.get().cloned()
            });
        let Some(path) = spool.and_then(|s| s.chunk_path(index)) else {
            return refuse(
                StatusCode::NOT_FOUND,
                "this result is no longer available: its operation was closed or expired",
            );
        };
        match cloudfetch::file_body(&path).await {
            Ok((len, body)) => (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.apache.arrow.stream".to_string(),
                    ),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response(),
            Err(_) => refuse(StatusCode::NOT_FOUND, "this result is no longer available"),
        }
    }

    /// Close what clients abandoned: idle operations (their queries stop) and sessions.
    fn reap_idle(&self) {
        let idle_ops: Vec<Arc<Operation>> = self
            .operations()
            .values()
            .filter(|o| o.idle() > self.config.operation_idle)
            .cloned()
            .collect();
        for op in &idle_ops {
            tracing::info!(operation = %op.handle.hex(), "closing an idle hs2 operation");
            self.forget(op);
        }
        let idle_sessions: Vec<Arc<Hs2Session>> = self
            .sessions()
            .values()
            .filter(|s| s.idle() > self.config.session_idle)
            .cloned()
            .collect();
        for session in idle_sessions {
            tracing::info!(session = %session.handle.hex(), "closing an idle hs2 session");
            self.sessions().remove(&session.handle.guid);
            let ops: Vec<Arc<Operation>> = self
                .operations()
                .values()
                .filter(|o| o.session == session.handle)
                .cloned()
                .collect();
            for op in &ops {
                self.forget(op);
            }
        }
    }

    pub fn max_request_bytes(&self) -> usize {
        self.config.max_request_bytes
    }

    /// Sessions and operations open now (for health and tests).
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions().len(), self.operations().len())
    }
}

async fn reap(hs2: Weak<Hs2>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        match hs2.upgrade() {
            Some(hs2) => hs2.reap_idle(),
            None => return,
        }
    }
}

/// How long GetResultSetMetadata / FetchResults wait for a running operation (clients
/// normally poll GetOperationStatus until FINISHED first; PyHive fetches at once).
const RESULT_WAIT: Duration = Duration::from_secs(60);

/// The methods sluice answers; any other gets `TApplicationException(UNKNOWN_METHOD)`.
const KNOWN_METHODS: &[&str] = &[
    "OpenSession",
    "CloseSession",
    "GetInfo",
    "ExecuteStatement",
    "GetTypeInfo",
    "GetCatalogs",
    "GetSchemas",
    "GetTables",
    "GetTableTypes",
    "GetColumns",
    "GetFunctions",
    "GetPrimaryKeys",
    "GetCrossReference",
    "GetOperationStatus",
    "CancelOperation",
    "CloseOperation",
    "GetResultSetMetadata",
    "FetchResults",
];

/// Keys the Databricks clients put in every confOverlay for their own bookkeeping.
const CLIENT_KEYS: &[&str] = &[
    "spark.thriftserver.arrowBasedRowSet.timestampAsString",
    "query_tags",
];

/// PostgreSQL's own schemas (pg_catalog, pg_toast): there for pg clients, noise in a
/// Databricks client's catalog browser. They stay queryable by name.
fn postgres_only(schema: &str) -> bool {
    schema.starts_with("pg_")
}

fn owner(session: &Session) -> Owner {
    (
        session.principal.id.clone(),
        session.principal.issuer.clone(),
    )
}

/// A session setting from OpenSession's configuration or a confOverlay: Hive JDBC's
/// `set:hiveconf:k` and `use:database` forms too.
fn apply_setting(session: &Session, key: &str, value: String) {
    if CLIENT_KEYS.contains(&key) {
        return;
    }
    if key == "use:database" {
        session.settings.set("search_path", value);
        return;
    }
    let key = key
        .strip_prefix("set:hiveconf:")
        .or_else(|| key.strip_prefix("set:hivevar:"))
        .unwrap_or(key);
    session.settings.set(&key.to_ascii_lowercase(), value);
}

/// What ExecuteStatement says the client reads.
fn wire_options(req: &Struct) -> WireOptions {
    let native = req.strukt(1286);
    let flag = |id| native.and_then(|n| n.bool(id)).unwrap_or(false);
    WireOptions {
        arrow: req.bool(1282).unwrap_or(false),
        download: req.bool(1283).unwrap_or(false),
        lz4: req.bool(1284).unwrap_or(false),
        native_timestamp: flag(1),
        native_decimal: flag(2),
        native_complex: flag(3),
        native_interval: flag(4),
    }
}

/// The statement with its native parameters (`TSparkParameter`) as `$n` placeholders and
/// their values. Named parameters (`:name`) and positional ones (`?`, by ordinal) are
/// both Databricks forms; backtick-quoted identifiers are read as double-quoted ones.
fn statement_with_parameters(
    statement: &str,
    parameters: &[Value],
) -> Result<(String, Vec<ScalarValue>), QueryError> {
    let mut named: Vec<(String, ScalarValue)> = Vec::new();
    let mut positional: Vec<(i64, ScalarValue)> = Vec::new();
    for p in parameters {
        let Value::Struct(p) = p else { continue };
        let value = parameter_value(p)?;
        match (p.string(2).filter(|n| !n.is_empty()), p.int(1)) {
            (Some(name), _) => named.push((name, value)),
            (None, Some(ordinal)) => positional.push((ordinal, value)),
            (None, None) => positional.push((positional.len() as i64 + 1, value)),
        }
    }
    if !named.is_empty() && !positional.is_empty() {
        return Err(QueryError::new(
            ErrorKind::InvalidParameter,
            "use either named (:name) or positional (?) parameters in one statement, not both",
        ));
    }
    positional.sort_by_key(|(ordinal, _)| *ordinal);
    let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
    let sql = sqltext::rewrite(
        statement,
        sqltext::Rewrite {
            question_marks: !positional.is_empty(),
            named: &names,
            backticks: true,
        },
    );
    let values = if named.is_empty() {
        positional.into_iter().map(|(_, v)| v).collect()
    } else {
        named.into_iter().map(|(_, v)| v).collect()
    };
    Ok((sql, values))
}

/// A `TSparkParameter`'s value as the SQL type it names.
fn parameter_value(p: &Struct) -> Result<ScalarValue, QueryError> {
    let type_name = p
        .string(3)
        .unwrap_or_else(|| "STRING".into())
        .trim()
        .to_ascii_uppercase();
    let invalid = |why: String| {
        QueryError::new(
            ErrorKind::InvalidParameter,
            format!(
                "parameter {}: {why}",
                p.string(2)
                    .unwrap_or_else(|| p.int(1).unwrap_or(0).to_string())
            ),
        )
    };
    let target = parameter_type(&type_name)
        .ok_or_else(|| invalid(format!("type {type_name} is not supported")))?;
    let value = p.strukt(4);
    let scalar = match value {
        None => return ScalarValue::try_from(&target).map_err(|e| invalid(e.to_string())),
        Some(v) => {
            if let Some(s) = v.string(1) {
                ScalarValue::Utf8(Some(s))
            } else if let Some(d) = v.double(2) {
                ScalarValue::Float64(Some(d))
            } else if let Some(b) = v.bool(3) {
                ScalarValue::Boolean(Some(b))
            } else {
                return ScalarValue::try_from(&target).map_err(|e| invalid(e.to_string()));
            }
        }
    };
    if target == DataType::Null {
        return Ok(ScalarValue::Null);
    }
    scalar
        .cast_to(&target)
        .map_err(|_| invalid(format!("{scalar} is not a valid {type_name}")))
}

fn parameter_type(name: &str) -> Option<DataType> {
    use datafusion::arrow::datatypes::TimeUnit;
    Some(match name {
        "STRING" | "VARCHAR" | "CHAR" => DataType::Utf8,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" | "LONG" => DataType::Int64,
        "SMALLINT" | "SHORT" => DataType::Int16,
        "TINYINT" | "BYTE" => DataType::Int8,
        "BOOLEAN" => DataType::Boolean,
        "DOUBLE" => DataType::Float64,
        "FLOAT" | "REAL" => DataType::Float32,
        "DATE" => DataType::Date32,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "TIMESTAMP_NTZ" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "BINARY" => DataType::Binary,
        "VOID" | "NULL" => DataType::Null,
        "DECIMAL" => DataType::Decimal128(10, 0),
        other => {
            let inner = other.strip_prefix("DECIMAL(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            DataType::Decimal128(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// Parameter values cast to the types the planner inferred for `$1…$n`.
fn bind(
    values: Vec<ScalarValue>,
    expected: &[Option<DataType>],
) -> Result<Vec<ScalarValue>, QueryError> {
    crate::handler::bind_parameters(values, expected)
}

/// Stop a result after `limit` rows (`resultRowLimit`).
fn limit_rows(items: operation::Items, limit: usize) -> operation::Items {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(
        (items, limit),
        |(mut items, left)| async move {
            if left == 0 {
                return None;
            }
            match items.next().await? {
                Ok(operation::Item::Batch(b)) => {
                    let n = b.num_rows().min(left);
                    Some((Ok(operation::Item::Batch(b.slice(0, n))), (items, left - n)))
                }
                Ok(operation::Item::Flight(data, rows)) if rows <= left => Some((
                    Ok(operation::Item::Flight(data, rows)),
                    (items, left - rows),
                )),
                Ok(operation::Item::Flight(..)) => Some((
                    Err(QueryError::new(
                        ErrorKind::NotSupported,
                        "resultRowLimit inside a batch",
                    )),
                    (items, 0),
                )),
                Err(e) => Some((Err(e), (items, 0))),
            }
        },
    ))
}

fn strings(batch: &RecordBatch, column: usize) -> Result<Vec<String>, QueryError> {
    use datafusion::arrow::array::{Array, AsArray};
    let text = datafusion::arrow::compute::cast(batch.column(column), &DataType::Utf8)
        .map_err(|e| QueryError::internal(e.to_string()))?;
    let text = text.as_string::<i32>();
    Ok((0..text.len()).map(|i| text.value(i).to_string()).collect())
}

fn pairs(batches: &[RecordBatch]) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        out.extend(strings(batch, 0)?.into_iter().zip(strings(batch, 1)?));
    }
    Ok(out)
}

/// A `TGetOperationStatusResp` body.
fn write_operation_status(w: &mut Writer, s: &State, has_result_set: bool) {
    Status::OK.write(w, 1);
    let code = match s {
        State::Pending => state::PENDING,
        State::Running => state::RUNNING,
        State::Finished => state::FINISHED,
        State::Canceled => state::CANCELED,
        State::Closed => state::CLOSED,
        State::Failed(_) => state::ERROR,
    };
    w.i32_field(2, code);
    if let State::Failed(e) = s {
        w.string_field(3, crate::error::sqlstate(e.kind));
        w.i32_field(4, 0);
        w.string_field(5, &e.message);
    }
    w.bool_field(9, has_result_set);
    if let State::Failed(e) = s {
        w.string_field(1281, &e.message);
    }
}

/// A `TGetResultSetMetadataResp` body.
fn write_metadata(w: &mut Writer, op: &Operation) {
    Status::OK.write(w, 1);
    let empty = datafusion::arrow::datatypes::Schema::empty();
    let shape = op.shape();
    let logical = shape.map(|s| s.logical.as_ref()).unwrap_or(&empty);
    results::write_table_schema(w, 2, logical);
    let format = shape.map(|s| s.format).unwrap_or(row_set::COLUMN);
    w.i32_field(1281, format);
    w.bool_field(1282, shape.is_some_and(|s| s.lz4));
    if let Some(shape) = shape.filter(|s| s.format == row_set::ARROW || s.format == row_set::URL) {
        w.binary_field(1283, &shape.schema_message);
    }
}

/// A `TFetchResultsResp` body: the page as Arrow batches, Thrift columns or rows, or links.
fn write_fetch(
    w: &mut Writer,
    op: &Operation,
    page: &Page,
    links: &[cloudfetch::Link],
    include_metadata: bool,
) {
    Status::OK.write(w, 1);
    w.bool_field(2, page.more);
    w.struct_field(3, |w| {
        w.i64_field(1, page.start);
        let shape = op.shape();
        let empty = datafusion::arrow::datatypes::Schema::empty();
        let wire = shape.map(|s| s.wire.as_ref()).unwrap_or(&empty);
        match &page.rows {
            // Hive V1–V5 clients read rows.
            PageRows::Batches(batches) if shape.is_some_and(|s| s.format == row_set::ROW) => {
                results::write_rows(w, 2, batches);
            }
            PageRows::Batches(batches) => {
                w.list_begin(2, ttype::STRUCT, 0);
                results::write_columns(w, 3, wire, batches);
            }
            PageRows::Arrow(messages) => {
                w.list_begin(2, ttype::STRUCT, 0);
                w.list_begin(1281, ttype::STRUCT, messages.len());
                for (message, n) in messages {
                    w.binary_field(1, message);
                    w.i64_field(2, *n as i64);
                    w.stop();
                }
            }
            PageRows::Links(_) => {
                w.list_begin(2, ttype::STRUCT, 0);
                w.list_begin(1282, ttype::STRUCT, links.len());
                for link in links {
                    w.string_field(1, &link.url);
                    w.i64_field(2, link.expiry);
                    w.i64_field(3, link.start);
                    w.i64_field(4, link.rows);
                    w.i64_field(5, link.bytes);
                    w.stop();
                }
            }
        }
    });
    if include_metadata {
        w.struct_field(1281, |w| write_metadata(w, op));
    }
}
