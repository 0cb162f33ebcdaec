//! The Statement Execution API, as Databricks defines it (`/api/2.0/sql/statements`):
//!
//! ```text
//!  POST   /api/2.0/sql/statements                  run one statement; wait up to wait_timeout
//!  GET    /api/2.0/sql/statements/{id}             status, manifest, first chunk
//!  GET    /api/2.0/sql/statements/{id}/result/chunks/{n}
//!  POST   /api/2.0/sql/statements/{id}/cancel
//!  DELETE /api/2.0/sql/statements/{id}             close: the result goes
//!  GET    /api/2.0/sql/statements/{id}/result/chunks/{n}/download?expires=…&sig=…
//!                                                  an EXTERNAL_LINKS chunk (signed, no token)
//! ```
//!
//! Results are cut into chunks as they arrive: INLINE chunks are JSON arrays of strings held
//! in memory as their JSON text (the result may be at most `byte_limit`, default 25 MiB;
//! all of one principal's kept INLINE results at most `[limits] max_stored_results_size`),
//! EXTERNAL_LINKS chunks are files under `<data-dir>/statements` (Arrow IPC stream, CSV or
//! JSON) fetched by signed links that expire. Only the principal that ran a statement may
//! see it; one principal holds at most `[limits] max_operations` statements. Finished
//! statements are kept for [`KEEP_FINISHED`], then closed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use futures::StreamExt;
use gateway::planner::{ErrorKind, QueryError};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hs2::cloudfetch::{ChunkRef, Signer};
use crate::AppState;
use gateway::handler::Outcome;

/// A finished statement's result is kept this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// Statements kept at once per gateway, all principals together (the oldest finished
/// ones go first; each principal has its own quota below this).
const MAX_STATEMENTS: usize = 100_000;
/// INLINE results: at most this much, unless `byte_limit` says less.
const INLINE_LIMIT: u64 = 25 * 1024 * 1024;
/// EXTERNAL_LINKS results: at most this much.
const EXTERNAL_LIMIT: u64 = 100 * 1024 * 1024 * 1024;
/// A chunk is sealed once it holds this many bytes (JSON text or file bytes).
const CHUNK_BYTES: u64 = 1024 * 1024;
const LINK_TTL: Duration = Duration::from_secs(900);

/// The body of `POST /api/2.0/sql/statements`. Fields sluice has no use for (query tags,
/// result compression) are accepted and ignored, as newer clients send them.
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    statement: String,
    warehouse_id: String,
    #[serde(default)]
    catalog: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    parameters: Vec<Parameter>,
    #[serde(default)]
    row_limit: Option<i64>,
    #[serde(default)]
    byte_limit: Option<i64>,
    #[serde(default)]
    disposition: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    wait_timeout: Option<String>,
    #[serde(default)]
    on_wait_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameter {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "type")]
    type_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    JsonArray,
    ArrowStream,
    Csv,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::JsonArray => "JSON_ARRAY",
            Format::ArrowStream => "ARROW_STREAM",
            Format::Csv => "CSV",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State_ {
    Pending,
    Running,
    Succeeded,
    Failed(QueryError),
    Canceled,
    Closed,
}

impl State_ {
    fn name(&self) -> &'static str {
        match self {
            State_::Pending => "PENDING",
            State_::Running => "RUNNING",
            State_::Succeeded => "SUCCEEDED",
            State_::Failed(_) => "FAILED",
            State_::Canceled => "CANCELED",
            State_::Closed => "CLOSED",
        }
    }

    fn is_terminal(&self) -> bool {
        !matches!(self, State_::Pending | State_::Running)
    }
}

enum ChunkData {
    /// The chunk's rows as one JSON array, in text: a parsed tree would take several
    /// times its text in memory.
    Inline(String),
    File(PathBuf),
}

type Owner = (String, String);

/// The INLINE result bytes each principal has kept, against `[limits]
/// max_stored_results_size`.
struct Budget {
    limit: u64,
    held: Mutex<HashMap<Owner, u64>>,
}

impl Budget {
    fn reserve(&self, owner: &Owner, bytes: u64) -> Result<(), QueryError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = held.get(owner).copied().unwrap_or(0);
        if now.saturating_add(bytes) > self.limit {
            return Err(QueryError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "the results kept for this principal would exceed {} bytes ([limits] \
                     max_stored_results_size): close statements whose results you have read \
                     (DELETE /api/2.0/sql/statements/{{id}}), or use EXTERNAL_LINKS",
                    self.limit
                ),
            ));
        }
        held.insert(owner.clone(), now + bytes);
        Ok(())
    }

    fn release(&self, owner: &Owner, bytes: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(now) = held.get_mut(owner) {
            *now = now.saturating_sub(bytes);
            if *now == 0 {
                held.remove(owner);
            }
        }
    }
}

struct Chunk {
    index: usize,
    row_offset: u64,
    row_count: u64,
    byte_count: u64,
    data: ChunkData,
}

#[derive(Default)]
struct ResultSet {
    columns: Vec<Value>,
    chunks: Vec<Chunk>,
    total_rows: u64,
    total_bytes: u64,
    truncated: bool,
}

struct Statement {
    id: String,
    owner: Owner,
    /// INLINE bytes this statement holds of its owner's budget.
    kept: std::sync::atomic::AtomicU64,
    budget: Arc<Budget>,
    format: Format,
    external: bool,
    state: watch::Sender<State_>,
    result: Mutex<ResultSet>,
    cancel: CancellationToken,
    finished: Mutex<Option<Instant>>,
    dir: PathBuf,
}

impl Statement {
    fn state(&self) -> State_ {
        self.state.borrow().clone()
    }

    fn set(&self, next: State_) {
        // Terminal states stay (a cancel that comes after the end changes nothing).
        self.state.send_if_modified(|s| {
            if s.is_terminal() && next != State_::Closed {
                return false;
            }
            *s = next.clone();
            true
        });
        if self.state.borrow().is_terminal() {
            let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            finished.get_or_insert_with(Instant::now);
        }
    }

    fn close(&self) {
        self.cancel.cancel();
        self.set(State_::Closed);
        self.discard();
    }

    /// Drop what the result holds (a statement closed, failed or cancelled has none).
    fn discard(&self) {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        result.chunks.clear();
        let kept = self.kept.swap(0, std::sync::atomic::Ordering::Relaxed);
        self.budget.release(&self.owner, kept);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The statements of this gateway.
pub struct Statements {
    map: Mutex<HashMap<String, Arc<Statement>>>,
    signer: Signer,
    dir: PathBuf,
    tls: bool,
    budget: Arc<Budget>,
    /// Statements one principal may hold (`[limits] max_operations`).
    per_principal: usize,
    /// Longest request body: a statement and its parameters.
    max_request_bytes: usize,
}

impl Statements {
    pub fn new(
        data_dir: &std::path::Path,
        tls: bool,
        limits: &gateway::limits::Limits,
    ) -> Arc<Self> {
        let dir = data_dir.join("statements");
        // Files of a previous run are of statements nobody can reach now.
        let _ = std::fs::remove_dir_all(&dir);
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            signer: Signer::new(),
            dir,
            tls,
            budget: Arc::new(Budget {
                limit: limits.max_stored_result_bytes,
                held: Mutex::default(),
            }),
            per_principal: limits.max_operations,
            max_request_bytes: limits.statement.max_statement_bytes + (1 << 20),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Statement>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close statements finished long ago, and the oldest finished beyond the limit.
    fn sweep(&self) {
        let mut map = self.lock();
        let mut finished: Vec<(Instant, String)> = map
            .values()
            .filter_map(|s| {
                let at = (*s.finished.lock().unwrap_or_else(|e| e.into_inner()))?;
                Some((at, s.id.clone()))
            })
            .collect();
        finished.sort();
        let over = map.len().saturating_sub(MAX_STATEMENTS);
        for (i, (at, id)) in finished.into_iter().enumerate() {
            if i < over || at.elapsed() > KEEP_FINISHED {
                if let Some(s) = map.remove(&id) {
                    s.close();
                }
            }
        }
    }
}

/// A Databricks-style error body with its HTTP status.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error_code": code, "message": message.into() })),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// A statement refused before it ran, as the error table says HTTP answers it.
fn refusal(kind: ErrorKind, message: impl Into<String>) -> Response {
    let (status, retry) = gateway::error::http_refusal(kind).unwrap_or((400, None));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = error(status, gateway::error::databricks_error_code(kind), message);
    if let Some(seconds) = retry {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Which of `options` a request field names (case-insensitively; absent: the first).
fn choose(value: Option<&str>, field: &str, options: &[&str]) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(0);
    };
    options
        .iter()
        .position(|o| o.eq_ignore_ascii_case(value))
        .ok_or_else(|| format!("{field} must be {}, not {value:?}", options.join(" or ")))
}

fn parse_wait(value: Option<&str>) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(Duration::from_secs(10));
    };
    let seconds: u64 = value
        .trim()
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("wait_timeout {value:?} is not a number of seconds like \"10s\""))?;
    if seconds != 0 && !(5..=50).contains(&seconds) {
        return Err(format!(
            "wait_timeout must be 0s or between 5s and 50s, not {value:?}"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// `POST /api/2.0/sql/statements`.
pub async fn execute(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The token first: the body is read only for a signed-in principal, and only so much.
    let mut session = match gateway::http::bearer_session(app.handler.as_ref(), &headers, "").await
    {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let body = match axum::body::to_bytes(body, app.statements.max_request_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_PARAMETER_VALUE",
                format!(
                    "the request is larger than {} bytes",
                    app.statements.max_request_bytes
                ),
            )
        }
    };
    let request: ExecuteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "the request body is not a valid statement request: {e}"
            ))
        }
    };
    let wait = match parse_wait(request.wait_timeout.as_deref()) {
        Ok(w) => w,
        Err(e) => return bad_request(e),
    };
    let picked = [
        choose(
            request.on_wait_timeout.as_deref(),
            "on_wait_timeout",
            &["CONTINUE", "CANCEL"],
        ),
        choose(
            request.disposition.as_deref(),
            "disposition",
            &["INLINE", "EXTERNAL_LINKS"],
        ),
        choose(
            request.format.as_deref(),
            "format",
            &["JSON_ARRAY", "ARROW_STREAM", "CSV"],
        ),
    ];
    let [cancel_on_timeout, external, format] = match picked {
        [Ok(a), Ok(b), Ok(c)] => [a, b, c],
        [a, b, c] => {
            let why = [a, b, c]
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_default();
            return bad_request(why);
        }
    };
    let (cancel_on_timeout, external) = (cancel_on_timeout == 1, external == 1);
    let format = [Format::JsonArray, Format::ArrowStream, Format::Csv][format];
    if !external && format != Format::JsonArray {
        return bad_request(format!(
            "format {} needs disposition EXTERNAL_LINKS (INLINE results are JSON_ARRAY)",
            format.name()
        ));
    }
    if request.row_limit.is_some_and(|n| n < 0) || request.byte_limit.is_some_and(|n| n < 0) {
        return bad_request("row_limit and byte_limit must not be negative");
    }
    if request
        .catalog
        .as_deref()
        .is_some_and(|c| !gateway::spark::is_catalog(c, gateway::planner::catalog()))
    {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "catalog {:?} does not exist (the catalog is {:?})",
                request.catalog.unwrap_or_default(),
                gateway::planner::catalog()
            ),
        );
    }
    if let Err(e) = app.handler.warehouse(&request.warehouse_id) {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", e.message);
    }
    session.protocol = "rest";
    session.warehouse = request.warehouse_id.clone();
    if let Some(schema) = &request.schema {
        session.settings.set("search_path", schema.clone());
    }
    // Named parameters: `:name` markers become `$n`, values typed as the request says.
    let names: Vec<String> = request.parameters.iter().map(|p| p.name.clone()).collect();
    let sql = gateway::sqltext::rewrite(
        &request.statement,
        gateway::sqltext::Rewrite {
            named: &names,
            backticks: false,
            backslash_escapes: true,
            ..Default::default()
        },
    );
    let mut values = Vec::with_capacity(request.parameters.len());
    for p in &request.parameters {
        match parameter_value(p) {
            Ok(v) => values.push(v),
            Err(e) => return bad_request(e),
        }
    }

    let statements = &app.statements;
    statements.sweep();
    let owner = (
        session.principal.id.clone(),
        session.principal.issuer.clone(),
    );
    // One principal's statements never crowd out another's.
    let held = statements
        .lock()
        .values()
        .filter(|s| s.owner == owner)
        .count();
    if held >= statements.per_principal {
        return refusal(
            ErrorKind::QuotaExceeded,
            format!(
                "{} holds {held} statements, as many as a principal may ([limits] \
                 max_operations): close the ones you have read",
                session.principal.name
            ),
        );
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let dir = statements.dir.join(&id);
    let (state, _) = watch::channel(State_::Pending);
    let statement = Arc::new(Statement {
        id: id.clone(),
        owner,
        kept: std::sync::atomic::AtomicU64::new(0),
        budget: statements.budget.clone(),
        format,
        external,
        state,
        result: Mutex::new(ResultSet::default()),
        cancel: CancellationToken::new(),
        finished: Mutex::new(None),
        dir,
    });
    statements.lock().insert(id.clone(), statement.clone());
    let limit = Limits {
        rows: request.row_limit.map(|n| n as u64),
        bytes: request.byte_limit.map(|n| n as u64),
    };
    {
        let handler = app.handler.clone();
        let statement = statement.clone();
        tokio::spawn(async move {
            let run = run(
                handler.as_ref(),
                &mut session,
                &sql,
                values,
                &statement,
                limit,
            );
            let outcome = tokio::select! {
                _ = statement.cancel.cancelled() => Err(None),
                outcome = run => outcome.map_err(Some),
            };
            match outcome {
                Ok(()) => statement.set(State_::Succeeded),
                Err(None) => statement.set(State_::Canceled),
                Err(Some(e)) if e.kind == ErrorKind::Cancelled => statement.set(State_::Canceled),
                Err(Some(e)) => statement.set(State_::Failed(e)),
            }
            if statement.state() != State_::Succeeded {
                statement.discard();
            }
        });
    }
    if !wait.is_zero() {
        let mut watch = statement.state.subscribe();
        let ended = tokio::time::timeout(wait, watch.wait_for(|s| s.is_terminal())).await;
        if ended.is_err() && cancel_on_timeout {
            statement.cancel.cancel();
            statement.set(State_::Canceled);
        }
    }
    Json(describe(statements, &statement, &headers)).into_response()
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    rows: Option<u64>,
    bytes: Option<u64>,
}

fn parameter_value(p: &Parameter) -> Result<ScalarValue, String> {
    let type_name = p
        .type_name
        .as_deref()
        .unwrap_or("STRING")
        .trim()
        .to_ascii_uppercase();
    let target = crate::hs2::parameter_type(&type_name)
        .ok_or_else(|| format!("parameter {}: type {type_name} is not supported", p.name))?;
    match &p.value {
        None => ScalarValue::try_from(&target).map_err(|e| format!("parameter {}: {e}", p.name)),
        Some(_) if target == DataType::Null => Ok(ScalarValue::Null),
        Some(v) => ScalarValue::Utf8(Some(v.clone()))
            .cast_to(&target)
            .map_err(|_| format!("parameter {}: {v:?} is not a valid {type_name}", p.name)),
    }
}

/// Plan, run and collect one statement.
async fn run(
    handler: &dyn gateway::handler::Handler,
    session: &mut gateway::session::Session,
    sql: &str,
    values: Vec<ScalarValue>,
    statement: &Statement,
    limits: Limits,
) -> Result<(), QueryError> {
    let prepared = handler.prepare(session, sql).await?;
    let [prepared] = prepared.as_slice() else {
        return Err(QueryError::new(
            ErrorKind::NotSupported,
            format!(
                "send one statement per request ({} were given)",
                prepared.len()
            ),
        ));
    };
    let params = gateway::handler::bind_parameters(values, prepared.param_types())?;
    statement.set(State_::Running);
    match handler.execute(session, prepared, params).await? {
        Outcome::Rows {
            schema,
            mut batches,
            ..
        } => {
            let mut collector = Collector::new(statement, &schema, limits)?;
            while let Some(batch) = batches.next().await {
                if !collector.add(&batch?)? {
                    break;
                }
            }
            collector.finish()
        }
        _ => Ok(()),
    }
}

/// Cuts a result into chunks as it arrives.
struct Collector<'a> {
    statement: &'a Statement,
    /// The result's columns (for Arrow files, in the types they are written with).
    schema: SchemaRef,
    limits: Limits,
    /// The chunk being filled: batches (Arrow) or rows already formatted (JSON, CSV).
    pending: Vec<RecordBatch>,
    pending_json: Vec<Value>,
    pending_rows: u64,
    pending_bytes: u64,
    rows: u64,
    bytes: u64,
    chunks: Vec<Chunk>,
}

impl<'a> Collector<'a> {
    fn new(
        statement: &'a Statement,
        schema: &SchemaRef,
        limits: Limits,
    ) -> Result<Self, QueryError> {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| column_info(i, f.data_type(), f.name()))
            .collect();
        statement
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .columns = columns;
        if statement.external {
            gateway::files::private_dir(&statement.dir)
                .map_err(|e| QueryError::internal(format!("creating the result directory: {e}")))?;
        }
        // Arrow files carry plain Arrow types (see `WireOptions::native_arrow`).
        let schema = match statement.format {
            Format::ArrowStream => crate::hs2::results::wire_schema(
                schema,
                &crate::hs2::results::WireOptions::native_arrow(),
            ),
            Format::JsonArray | Format::Csv => schema.clone(),
        };
        Ok(Self {
            statement,
            schema,
            limits,
            pending: Vec::new(),
            pending_json: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            rows: 0,
            bytes: 0,
            chunks: Vec::new(),
        })
    }

    fn byte_limit(&self) -> u64 {
        let ceiling = if self.statement.external {
            EXTERNAL_LIMIT
        } else {
            INLINE_LIMIT
        };
        self.limits.bytes.map_or(ceiling, |b| b.min(ceiling))
    }

    /// Take a batch; false once a limit is reached (the rest is not read).
    fn add(&mut self, batch: &RecordBatch) -> Result<bool, QueryError> {
        let mut batch = batch.clone();
        let mut more = true;
        if let Some(limit) = self.limits.rows {
            let left = limit.saturating_sub(self.rows + self.pending_rows);
            if (batch.num_rows() as u64) > left {
                batch = batch.slice(0, left as usize);
                self.truncate();
                more = false;
            }
        }
        let mut text = match self.statement.format {
            Format::ArrowStream => {
                batch = crate::hs2::results::to_wire(&batch, &self.schema)
                    .map_err(|e| QueryError::internal(e.to_string()))?;
                None
            }
            Format::JsonArray | Format::Csv => Some(json_rows(&batch)?),
        };
        let room = self
            .byte_limit()
            .saturating_sub(self.bytes + self.pending_bytes);
        let mut size = match &text {
            Some(rows) => rows.iter().map(|r| r.to_string().len() as u64).sum(),
            None => batch.get_array_memory_size() as u64,
        };
        // Text rows past a byte_limit are cut one by one (the rows that fit stay).
        if let (Some(rows), Some(_)) = (text.as_mut(), self.limits.bytes) {
            if size > room {
                let mut kept = 0u64;
                let fit = rows
                    .iter()
                    .take_while(|r| {
                        kept += r.to_string().len() as u64;
                        kept <= room
                    })
                    .count();
                rows.truncate(fit);
                batch = batch.slice(0, fit);
                size = rows.iter().map(|r| r.to_string().len() as u64).sum();
                self.truncate();
                more = false;
            }
        }
        if size > room {
            if self.limits.bytes.is_none() && !self.statement.external {
                return Err(QueryError::new(
                    ErrorKind::ResourcesExhausted,
                    format!(
                        "the result is larger than the {} MiB an INLINE result may have: use disposition EXTERNAL_LINKS, or set byte_limit or row_limit",
                        INLINE_LIMIT / (1024 * 1024)
                    ),
                ));
            }
            self.truncate();
            return Ok(false);
        }
        self.pending_rows += batch.num_rows() as u64;
        self.pending_bytes += size;
        match text {
            Some(rows) => self.pending_json.extend(rows),
            None => self.pending.push(batch),
        }
        if self.pending_bytes >= CHUNK_BYTES {
            self.seal()?;
        }
        Ok(more)
    }

    fn truncate(&self) {
        self.statement
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncated = true;
    }

    fn seal(&mut self) -> Result<(), QueryError> {
        if self.pending_rows == 0 && !self.chunks.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.pending);
        let rows = std::mem::take(&mut self.pending_json);
        let index = self.chunks.len();
        let write =
            |e: std::io::Error| QueryError::internal(format!("writing a result chunk: {e}"));
        let (data, byte_count) = if self.statement.external {
            let path = self.statement.dir.join(format!("chunk-{index}"));
            let file = gateway::files::private_file(&path).map_err(write)?;
            let mut out = std::io::BufWriter::new(file);
            match self.statement.format {
                Format::ArrowStream => {
                    let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(
                        &mut out,
                        &self.schema,
                    )
                    .map_err(|e| QueryError::internal(e.to_string()))?;
                    for b in &batches {
                        writer
                            .write(b)
                            .map_err(|e| QueryError::internal(e.to_string()))?;
                    }
                    writer
                        .finish()
                        .map_err(|e| QueryError::internal(e.to_string()))?;
                }
                Format::Csv => {
                    use std::io::Write;
                    // The header goes at the top of the first chunk: the chunks in order
                    // are one CSV file.
                    if index == 0 {
                        let names: Vec<String> = self
                            .schema
                            .fields()
                            .iter()
                            .map(|f| csv_field(f.name()))
                            .collect();
                        writeln!(out, "{}", names.join(",")).map_err(write)?;
                    }
                    for row in &rows {
                        let cells: Vec<String> = row
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|v| v.as_str().map(csv_field).unwrap_or_default())
                                    .collect()
                            })
                            .unwrap_or_default();
                        writeln!(out, "{}", cells.join(",")).map_err(write)?;
                    }
                }
                Format::JsonArray => {
                    serde_json::to_writer(&mut out, &rows).map_err(|e| write(e.into()))?;
                }
            }
            use std::io::Write;
            out.flush().map_err(write)?;
            let size = std::fs::metadata(&path).map_err(write)?.len();
            (ChunkData::File(path), size)
        } else {
            let text = serde_json::to_string(&rows)
                .map_err(|e| QueryError::internal(format!("a result chunk: {e}")))?;
            let size = text.len() as u64;
            let statement = self.statement;
            statement.budget.reserve(&statement.owner, size)?;
            statement
                .kept
                .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            (ChunkData::Inline(text), size)
        };
        self.chunks.push(Chunk {
            index,
            row_offset: self.rows,
            row_count: self.pending_rows,
            byte_count,
            data,
        });
        self.rows += self.pending_rows;
        self.bytes += byte_count;
        self.pending_rows = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<(), QueryError> {
        if self.pending_rows > 0 || (self.chunks.is_empty() && self.statement.external) {
            self.seal()?;
        }
        let mut result = self
            .statement
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        result.chunks = std::mem::take(&mut self.chunks);
        result.total_rows = self.rows;
        result.total_bytes = self.bytes;
        Ok(())
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Rows as JSON arrays of strings (null stays null), as JSON_ARRAY results have them.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Value>, QueryError> {
    const FORMAT: FormatOptions<'static> = FormatOptions::new()
        .with_date_format(Some("%Y-%m-%d"))
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .with_datetime_format(Some("%Y-%m-%dT%H:%M:%S%.3f"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &FORMAT))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| QueryError::internal(format!("formatting a result: {e}")))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            Value::Array(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(column, f)| {
                        if column.is_null(row) {
                            Value::Null
                        } else {
                            Value::String(f.value(row).to_string())
                        }
                    })
                    .collect(),
            )
        })
        .collect())
}

/// A column as the manifest describes it (Databricks type names).
fn column_info(position: usize, data_type: &DataType, name: &str) -> Value {
    let (text, _) = crate::hs2::protocol::sql_type(data_type);
    let type_name = match data_type {
        DataType::Int8 => "BYTE".to_string(),
        DataType::Int16 | DataType::UInt8 => "SHORT".into(),
        DataType::Int64 | DataType::UInt32 => "LONG".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP_NTZ".into(),
        DataType::Null => "NULL".into(),
        _ => text
            .split(['(', '<'])
            .next()
            .unwrap_or("STRING")
            .to_string(),
    };
    let mut info = json!({
        "name": name,
        "position": position,
        "type_name": type_name,
        "type_text": text.to_ascii_lowercase(),
    });
    if let Some((precision, scale)) = crate::hs2::results::decimal_of(data_type) {
        info["type_precision"] = json!(precision);
        info["type_scale"] = json!(scale);
    }
    info
}

/// The StatementResponse of a statement now.
fn describe(statements: &Statements, statement: &Statement, headers: &HeaderMap) -> Value {
    let state = statement.state();
    let mut status = json!({ "state": state.name() });
    if let State_::Failed(e) = &state {
        status["error"] = json!({ "error_code": gateway::error::databricks_error_code(e.kind), "message": e.message });
        status["sql_state"] = json!(gateway::error::databricks_sqlstate(e.kind));
    }
    let mut body = json!({ "statement_id": statement.id, "status": status });
    if state == State_::Succeeded {
        let result = statement.result.lock().unwrap_or_else(|e| e.into_inner());
        body["manifest"] = json!({
            "format": statement.format.name(),
            "schema": { "column_count": result.columns.len(), "columns": result.columns },
            "total_chunk_count": result.chunks.len(),
            "chunks": result.chunks.iter().map(|c| json!({
                "chunk_index": c.index,
                "row_offset": c.row_offset,
                "row_count": c.row_count,
                "byte_count": c.byte_count,
            })).collect::<Vec<_>>(),
            "total_row_count": result.total_rows,
            "total_byte_count": result.total_bytes,
            "truncated": result.truncated,
        });
        if let Some(first) = result.chunks.first() {
            body["result"] = chunk_body(statements, statement, &result, first, headers);
        }
    }
    body
}

/// One chunk as ResultData.
fn chunk_body(
    statements: &Statements,
    statement: &Statement,
    result: &ResultSet,
    chunk: &Chunk,
    headers: &HeaderMap,
) -> Value {
    let mut body = json!({
        "chunk_index": chunk.index,
        "row_offset": chunk.row_offset,
        "row_count": chunk.row_count,
    });
    let next = (chunk.index + 1 < result.chunks.len()).then_some(chunk.index + 1);
    match &chunk.data {
        ChunkData::Inline(rows) => {
            body["data_array"] = serde_json::from_str(rows).unwrap_or(Value::Array(Vec::new()));
            if let Some(n) = next {
                body["next_chunk_index"] = json!(n);
                body["next_chunk_internal_link"] = json!(format!(
                    "/api/2.0/sql/statements/{}/result/chunks/{n}",
                    statement.id
                ));
            }
        }
        ChunkData::File(_) => {
            body["byte_count"] = json!(chunk.byte_count);
            let link = statements.signer.link(
                &gateway::http::base_url(headers, statements.tls),
                &statement.id,
                &ChunkRef {
                    index: chunk.index,
                    start: chunk.row_offset as i64,
                    rows: chunk.row_count as i64,
                    bytes: chunk.byte_count as i64,
                },
                LINK_TTL,
            );
            // The signer's links name /results/…; statements have their own download path.
            let url = link.url.replacen(
                &format!("/results/{}/{}", statement.id, chunk.index),
                &format!(
                    "/api/2.0/sql/statements/{}/result/chunks/{}/download",
                    statement.id, chunk.index
                ),
                1,
            );
            let expiration = chrono::DateTime::from_timestamp(link.expiry, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let mut external = json!({
                "chunk_index": chunk.index,
                "row_offset": chunk.row_offset,
                "row_count": chunk.row_count,
                "byte_count": chunk.byte_count,
                "external_link": url,
                "expiration": expiration,
            });
            if let Some(n) = next {
                let internal =
                    format!("/api/2.0/sql/statements/{}/result/chunks/{n}", statement.id);
                external["next_chunk_index"] = json!(n);
                external["next_chunk_internal_link"] = json!(internal);
                body["next_chunk_index"] = json!(n);
                body["next_chunk_internal_link"] = json!(internal);
            }
            body["external_links"] = json!([external]);
        }
    }
    body
}

/// The caller's statement `id`, or the 401/404 to answer with.
async fn owned(app: &AppState, headers: &HeaderMap, id: &str) -> Result<Arc<Statement>, Response> {
    let session = gateway::http::bearer_session(app.handler.as_ref(), headers, "").await?;
    let statement = app.statements.lock().get(id).cloned();
    match statement {
        Some(s)
            if s.owner
                == (
                    session.principal.id.clone(),
                    session.principal.issuer.clone(),
                ) =>
        {
            Ok(s)
        }
        // Another principal's statement is as unknown as a missing one.
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("statement {id:?} does not exist (or has been closed)"),
        )),
    }
}

/// `GET /api/2.0/sql/statements/{id}`.
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match owned(&app, &headers, &id).await {
        Ok(statement) => Json(describe(&app.statements, &statement, &headers)).into_response(),
        Err(refused) => refused,
    }
}

/// `GET /api/2.0/sql/statements/{id}/result/chunks/{n}`.
pub async fn chunk(
    State(app): State<AppState>,
    Path((id, n)): Path<(String, usize)>,
    headers: HeaderMap,
) -> Response {
    let statement = match owned(&app, &headers, &id).await {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    let state = statement.state();
    if state != State_::Succeeded {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!(
                "statement {id} is {}: only a SUCCEEDED statement has result chunks",
                state.name()
            ),
        );
    }
    let result = statement.result.lock().unwrap_or_else(|e| e.into_inner());
    match result.chunks.get(n) {
        Some(c) => Json(chunk_body(
            &app.statements,
            &statement,
            &result,
            c,
            &headers,
        ))
        .into_response(),
        None => bad_request(format!(
            "chunk {n} does not exist: the result has {} chunks",
            result.chunks.len()
        )),
    }
}

/// `POST /api/2.0/sql/statements/{id}/cancel`.
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match owned(&app, &headers, &id).await {
        Ok(statement) => {
            statement.cancel.cancel();
            statement.set(State_::Canceled);
            Json(json!({})).into_response()
        }
        Err(refused) => refused,
    }
}

/// `DELETE /api/2.0/sql/statements/{id}`: close it; its result goes.
pub async fn close(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match owned(&app, &headers, &id).await {
        Ok(statement) => {
            statement.close();
            app.statements.lock().remove(&id);
            Json(json!({})).into_response()
        }
        Err(refused) => refused,
    }
}

/// `GET …/result/chunks/{n}/download`: an EXTERNAL_LINKS chunk, by its signed link.
pub async fn download(
    State(app): State<AppState>,
    Path((id, n)): Path<(String, usize)>,
    uri: Uri,
) -> Response {
    let query = gateway::http::form(uri.query().unwrap_or_default());
    let expires = query.get("expires").and_then(|v| v.parse::<i64>().ok());
    let sig = query.get("sig").map(String::as_str).unwrap_or("");
    let Some(expires) = expires else {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "the link is not signed",
        );
    };
    if let Err(why) = app.statements.signer.check(&id, n, expires, sig) {
        return error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why);
    }
    let statement = app.statements.lock().get(&id).cloned();
    let path = statement.as_ref().and_then(|s| {
        let result = s.result.lock().unwrap_or_else(|e| e.into_inner());
        match result.chunks.get(n).map(|c| &c.data) {
            Some(ChunkData::File(path)) => Some((path.clone(), s.format)),
            _ => None,
        }
    });
    let Some((path, format)) = path else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the statement or chunk is gone (closed or expired)",
        );
    };
    let content_type = match format {
        Format::ArrowStream => "application/vnd.apache.arrow.stream",
        Format::Csv => "text/csv",
        Format::JsonArray => "application/json",
    };
    match crate::hs2::cloudfetch::file_body(&path).await {
        Ok((len, body)) => (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            body,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the chunk is gone (closed or expired)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeouts_follow_databricks() {
        assert_eq!(parse_wait(None), Ok(Duration::from_secs(10)));
        assert_eq!(parse_wait(Some("0s")), Ok(Duration::ZERO));
        assert_eq!(parse_wait(Some("50s")), Ok(Duration::from_secs(50)));
        assert!(parse_wait(Some("3s")).is_err());
        assert!(parse_wait(Some("51s")).is_err());
        assert!(parse_wait(Some("ten")).is_err());
    }

    #[test]
    fn options_are_named_case_insensitively() {
        assert_eq!(choose(None, "format", &["A", "B"]), Ok(0));
        assert_eq!(choose(Some("b"), "format", &["A", "B"]), Ok(1));
        let err = choose(Some("C"), "format", &["A", "B"]).expect_err("unknown");
        assert_eq!(err, "format must be A or B, not \"C\"");
    }

    #[test]
    fn manifest_types_use_databricks_names() {
        assert_eq!(column_info(0, &DataType::Int64, "n")["type_name"], "LONG");
        let d = column_info(1, &DataType::Decimal128(15, 2), "price");
        assert_eq!(d["type_name"], "DECIMAL");
        assert_eq!(d["type_text"], "decimal(15,2)");
        assert_eq!(d["type_scale"], 2);
        assert_eq!(column_info(2, &DataType::Utf8, "s")["type_name"], "STRING");
    }
}
