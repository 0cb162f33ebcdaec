//! ExecuteStatement and the calls on an operation: status, metadata, fetch, cancel,
//! close, and the download of spooled chunks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use futures::future::BoxFuture;
use gateway::planner::{ErrorKind, QueryError};

use super::cloudfetch::{self, Spool};
use super::items::{self, Item, Items, Shape};
use super::operation::{Operation, Page, PageRows, Results, State};
use super::protocol::{self, op_type, row_set, state, status, Status};
use super::results::{self, WireOptions};
use super::thrift::{ttype, Struct, Value, Writer};
use super::{
    apply_setting, error_status, http_error, invalid_operation, invalid_session, reply,
    status_only, Hs2, Hs2Session, Reply, CLIENT_KEYS, ERROR_HEADER,
};
use gateway::handler::{ArrowRows, Outcome, Prepared, SessionCommand};
use gateway::session::Session;
use gateway::sqltext;

/// How long GetResultSetMetadata / FetchResults wait for a running operation (clients
/// normally poll GetOperationStatus until FINISHED first; PyHive fetches at once).
const RESULT_WAIT: Duration = Duration::from_secs(60);

impl Hs2 {
    /// ExecuteStatement: plan now, run in the background, answer with the first page
    /// when it is ready soon enough. `Err` is an HTTP-level answer (queue full: 503).
    pub(super) async fn execute_statement(
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
        let has_result_set = match &prepared {
            Prepared::Session(c) => {
                matches!(c, SessionCommand::Show(_) | SessionCommand::Fetch { .. })
                    || matches!(c, SessionCommand::Conf { show, .. } if !show.is_empty())
            }
            Prepared::Declare { .. } => false,
            Prepared::Query { .. } => true,
        };
        tracing::debug!(principal = %login.principal.name, sql = %sql, "hs2 statement");
        let handler = self.handler.clone();
        let row_limit = req.int(1287).filter(|n| *n > 0);
        // Session statements (SET, USE, SHOW, …) take effect before the answer: a client
        // may send its next statement without waiting for this one to finish.
        let work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>> =
            if matches!(&prepared, Prepared::Session(_) | Prepared::Declare { .. }) {
                let mut session = session;
                let outcome = handler.execute(&mut session, &prepared, Vec::new()).await;
                let ready = match outcome {
                    Ok(Outcome::Rows {
                        schema, batches, ..
                    }) => Ok((schema, ArrowRows::Batches(batches))),
                    Ok(_) => Ok((
                        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                        ArrowRows::Batches(Box::pin(futures::stream::empty())) as ArrowRows,
                    )),
                    Err(e) => return Ok(respond_error(error_status(&e))),
                };
                Box::pin(async move { ready })
            } else {
                Box::pin(async move {
                    let mut session = session;
                    let params = bind(params, prepared.param_types())?;
                    handler.execute_arrow(&mut session, &prepared, params).await
                })
            };
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
    pub(super) fn start(
        &self,
        session: &Arc<Hs2Session>,
        kind: i32,
        has_result_set: bool,
        statement: String,
        options: WireOptions,
        row_limit: Option<i64>,
        work: BoxFuture<'static, Result<(SchemaRef, ArrowRows), QueryError>>,
    ) -> Result<Arc<Operation>, QueryError> {
        let held = self
            .operations()
            .values()
            .filter(|o| o.owner == session.owner)
            .count();
        if held >= self.config.max_operations_per_principal {
            return Err(QueryError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "{} holds {held} open operations, as many as a principal may ([limits] \
                     max_operations): close the ones you no longer read",
                    session.session.principal.name
                ),
            ));
        }
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
                let items = items::items(rows, &shape).await?;
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
    pub(super) async fn respond_started(
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
        // A full queue is an HTTP 503 the clients retry after Retry-After (the error
        // table says which refusals are answered in HTTP).
        if let State::Failed(e) = &final_state {
            if let Some((status, retry)) = gateway::error::http_refusal(e.kind) {
                self.forget(&op);
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut reply = http_error(status, &e.message);
                if let Some(seconds) = retry {
                    reply.headers.push(("retry-after", seconds.to_string()));
                }
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
    pub(super) fn forget(&self, op: &Arc<Operation>) {
        if self.operations().remove(&op.handle.guid).is_some() {
            if let Some(session) = self.sessions().get(&op.session.guid) {
                session.operations.fetch_sub(1, Ordering::Relaxed);
            }
        }
        op.stop(State::Closed);
    }

    pub(super) async fn get_operation_status(
        &self,
        req: &Struct,
        login: &Session,
        seqid: i32,
    ) -> Vec<u8> {
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
    pub(super) async fn finished(&self, op: &Operation) -> Result<(), Status> {
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
                        gateway::error::HS2_STILL_RUNNING,
                        "the operation is still running: poll GetOperationStatus until it is FINISHED",
                    ))
                }
                State::Pending | State::Running => {}
            }
        }
    }

    pub(super) async fn get_result_set_metadata(
        &self,
        req: &Struct,
        login: &Session,
        seqid: i32,
    ) -> Vec<u8> {
        let name = "GetResultSetMetadata";
        let Some(op) = self.operation_of(req, login) else {
            return reply(name, seqid, status_only(&invalid_operation()));
        };
        if let Err(status) = self.finished(&op).await {
            return reply(name, seqid, status_only(&status));
        }
        reply(name, seqid, |w| write_metadata(w, &op))
    }

    pub(super) async fn fetch_results(
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

    pub(super) fn cancel_operation(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let Some(op) = self.operation_of(req, login) else {
            return reply("CancelOperation", seqid, status_only(&invalid_operation()));
        };
        tracing::info!(operation = %op.handle.hex(), "hs2 operation cancelled by the client");
        op.stop(State::Canceled);
        reply("CancelOperation", seqid, status_only(&Status::OK))
    }

    pub(super) fn close_operation(&self, req: &Struct, login: &Session, seqid: i32) -> Vec<u8> {
        let Some(op) = self.operation_of(req, login) else {
            return reply("CloseOperation", seqid, status_only(&invalid_operation()));
        };
        self.forget(&op);
        reply("CloseOperation", seqid, status_only(&Status::OK))
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
            backticks: false,
            backslash_escapes: true,
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

/// The Arrow type of a Databricks parameter type name (`INT`, `DECIMAL(10,2)`…).
pub(crate) fn parameter_type(name: &str) -> Option<DataType> {
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
    gateway::handler::bind_parameters(values, expected)
}

/// Stop a result after `limit` rows (`resultRowLimit`).
fn limit_rows(items: Items, limit: usize) -> Items {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(
        (items, limit),
        |(mut items, left)| async move {
            if left == 0 {
                return None;
            }
            match items.next().await? {
                Ok(Item::Batch(b)) => {
                    let n = b.num_rows().min(left);
                    Some((Ok(Item::Batch(b.slice(0, n))), (items, left - n)))
                }
                Ok(Item::Flight(data, rows)) if rows <= left => {
                    Some((Ok(Item::Flight(data, rows)), (items, left - rows)))
                }
                Ok(Item::Flight(..)) => Some((
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
        w.string_field(3, gateway::error::databricks_sqlstate(e.kind));
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

#[cfg(test)]
mod fuzz_tests {
    use super::super::thrift::Reader;
    use super::*;

    fn call(name: &str, args: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.message_begin(name, super::super::thrift::CALL, 1);
        w.struct_field(1, args);
        w.stop();
        w.buf
    }

    fn handle(w: &mut Writer, id: i16) {
        w.struct_field(id, |w| {
            w.struct_field(1, |w| {
                w.binary_field(1, &[1; 16]);
                w.binary_field(2, &[2; 16]);
            });
        });
    }

    /// Thrift bodies as the Databricks drivers send them, decoded and read the way the
    /// calls read them (handles, confOverlay, native parameters, wire options).
    #[test]
    fn fuzz_hs2_thrift() {
        let seeds = vec![
            call("OpenSession", |w| {
                w.i32_field(1, 7);
                w.struct_field(1284, |w| {
                    w.string_field(1, "sluice");
                    w.string_field(2, "tpch");
                });
            }),
            call("ExecuteStatement", |w| {
                handle(w, 1);
                w.string_field(2, "SELECT :a, ? FROM t WHERE x = `y`");
                w.bool_field(4, true);
                w.bool_field(1282, true);
                w.struct_field(1286, |w| w.bool_field(1, true));
                w.list_begin(1288, ttype::STRUCT, 2);
                for name in ["a", ""] {
                    w.string_field(2, name);
                    w.string_field(3, "DECIMAL(10,2)");
                    w.struct_field(4, |w| w.string_field(1, "12.5"));
                    w.stop();
                }
            }),
            call("FetchResults", |w| {
                handle(w, 1);
                w.i32_field(2, 0);
                w.i64_field(3, 1000);
            }),
        ];
        fuzz::bytes("hs2_thrift", &seeds, |input| {
            let mut reader = Reader::new(input);
            let Ok(_header) = reader.message_header() else {
                return;
            };
            let Ok(args) = reader.read_struct() else {
                return;
            };
            let req = super::super::request(&args);
            let _ = super::super::protocol::Handle::of(req.strukt(1));
            let _ = wire_options(&req);
            for id in [1, 2, 3, 4, 5, 1282, 1284, 1286, 1288] {
                let _ = (
                    req.int(id),
                    req.string(id),
                    req.string_map(id),
                    req.double(id),
                );
            }
            let statement = req.string(2).unwrap_or_default();
            let _ = statement_with_parameters(&statement, req.list(1288).unwrap_or(&[]));
            let _ = super::super::protocol::negotiate(req.int(1), req.int(1282));
        });
    }
}
