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
mod execute;
pub mod items;
pub(crate) use execute::parameter_type;
pub mod metadata;
pub mod operation;
pub mod protocol;
pub mod results;
pub mod thrift;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gateway::planner::{ErrorKind, QueryError};

use cloudfetch::{Signer, SpoolConfig};
use gateway::handler::Handler;
use gateway::session::Session;
use operation::{Operation, Owner, State};
use protocol::{status, Handle, Status};
use thrift::{app_error, Reader, Struct, Writer};

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
    /// Sessions open at once, all principals together.
    pub max_sessions: usize,
    pub max_operations_per_session: usize,
    /// Sessions one principal may hold open (`[limits] max_sessions`).
    pub max_sessions_per_principal: usize,
    /// Operations one principal may hold open (`[limits] max_operations`).
    pub max_operations_per_principal: usize,
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
            max_sessions: 100_000,
            max_operations_per_session: 1_000,
            max_sessions_per_principal: 200,
            max_operations_per_principal: 1_000,
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

pub fn http_error(status: StatusCode, message: &str) -> Reply {
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
        gateway::error::databricks_sqlstate(err.kind),
        err.message.clone(),
    )
}

fn invalid_session() -> Status {
    Status::error(
        status::INVALID_HANDLE,
        gateway::error::HS2_INVALID_SESSION,
        "Invalid SessionHandle: the session was closed, expired or never existed",
    )
}

fn invalid_operation() -> Status {
    Status::error(
        status::INVALID_HANDLE,
        gateway::error::HS2_INVALID_OPERATION,
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

    /// Answer one POST to `/sql/1.0/warehouses/<warehouse>` of a signed-in principal
    /// (`login`: the body is read only once the token is good).
    pub async fn call(
        &self,
        warehouse: &str,
        headers: &HeaderMap,
        login: Session,
        body: &[u8],
    ) -> Reply {
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
        // Unknown methods (impyla's GetLog, CloseImpalaOperation, …): clients fall back.
        if !KNOWN_METHODS.contains(&name) {
            return thrift_reply(thrift::application_exception(
                name,
                seqid,
                app_error::UNKNOWN_METHOD,
                &format!("Invalid method name: '{name}'"),
            ));
        }
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
        gateway::http::base_url(headers, self.tls)
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
                    gateway::error::HS2_BAD_PROTOCOL,
                    message,
                ))
            }
        };
        let mut session = login;
        session.protocol = "hs2";
        // The initial namespace: sluice has one catalog; a schema is where unqualified
        // names resolve.
        let namespace = req.strukt(1284);
        if let Some(catalog) = namespace
            .and_then(|n| n.string(1))
            .filter(|c| !c.is_empty())
        {
            if !gateway::spark::is_catalog(&catalog, gateway::planner::catalog()) {
                return refuse(error_status(&QueryError::new(
                    ErrorKind::UndefinedObject,
                    format!(
                        "catalog {catalog:?} does not exist: this warehouse has one catalog, {:?}",
                        gateway::planner::catalog()
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
            let owner = owner(&session);
            let mut sessions = self.sessions();
            let held = |sessions: &HashMap<[u8; 16], Arc<Hs2Session>>| {
                sessions.values().filter(|s| s.owner == owner).count()
            };
            if sessions.len() >= self.config.max_sessions
                || held(&sessions) >= self.config.max_sessions_per_principal
            {
                sessions.retain(|_, s| s.idle() < self.config.session_idle);
            }
            // One principal's sessions never crowd out another's.
            let held = held(&sessions);
            if held >= self.config.max_sessions_per_principal {
                return refuse(error_status(&QueryError::new(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "{} holds {held} open sessions, as many as a principal may ([limits] \
                         max_sessions): close sessions you no longer use",
                        session.principal.name
                    ),
                )));
            }
            if sessions.len() >= self.config.max_sessions {
                return refuse(error_status(&QueryError::new(
                    ErrorKind::ResourcesExhausted,
                    "too many open sessions on this server: try again shortly",
                )));
            }
            sessions.insert(
                handle.guid,
                Arc::new(Hs2Session {
                    handle,
                    owner,
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
            Some(2) => Some(gateway::planner::catalog().into()),
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
