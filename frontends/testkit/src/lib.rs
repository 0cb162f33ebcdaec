//! # testkit — a fake [`Handler`] for testing one front-end at a time
//!
//! ```text
//!  real client ──wire──► front-end under test ──► FakeHandler (in-memory batches)
//! ```
//!
//! No planner, no grants, no workers: the fake understands a handful of statements and
//! counts what it produced, so a test can see backpressure (rows produced while the
//! client reads nothing) and cancel (the row stream dropped).
//!
//! | statement | answer |
//! |---|---|
//! | `rows N` | column `n` (int8): 0..N, produced lazily in batches of [`BATCH_ROWS`] |
//! | `echo $1` | column `v` (text): the parameter |
//! | `add $1 $2` | column `sum` (int8): the two int8 parameters added |
//! | `fail <kind>` | planning fails with that [`ErrorKind`] (its `as_str` name) |
//! | `fail late` | one batch of rows, then division by zero |
//! | `wait` | a stream that never yields until it is dropped |
//! | `busy` | plans, then fails to run: the queue is full |
//! | `set a = b`, `show a`, `begin`, `commit` | the real session commands |
//!
//! Only [`TOKEN`] signs in; the one warehouse is `default`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::sql::parser::DFParser;
use futures::stream::{self, StreamExt};
use gateway::auth::{AuthError, Principal};
use gateway::handler::{
    run_session_command, ArrowRows, Handler, Outcome, Prepared, SessionCommand,
};
use gateway::planner::Access;
use gateway::session::Session;
use gateway::{BatchStream, ErrorKind, QueryError};

/// The one token the fake accepts.
pub const TOKEN: &str = "testkit-token-0123456789abcdef";
/// Rows per batch of `rows N`.
pub const BATCH_ROWS: usize = 1024;

/// What the fake saw, for assertions.
#[derive(Default)]
pub struct Counters {
    /// Rows produced by `rows N` streams so far.
    pub rows_produced: AtomicU64,
    /// Row streams dropped (finished, cancelled or abandoned).
    pub streams_dropped: AtomicUsize,
    /// `wait` streams started.
    pub waits_started: AtomicUsize,
    /// Statements prepared.
    pub prepared: AtomicUsize,
}

#[derive(Default)]
pub struct FakeHandler {
    pub counters: Arc<Counters>,
}

impl FakeHandler {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Counts the stream's end, however it ends.
struct DropCount(Arc<Counters>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.streams_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn query(text: &str, schema: SchemaRef, param_types: Vec<Option<DataType>>) -> Prepared {
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).expect("schema");
    let logical = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(df_schema),
    });
    let statement = DFParser::parse_sql("select 1")
        .expect("parses")
        .pop_front()
        .expect("one statement");
    Prepared::Query {
        text: text.to_string(),
        logical,
        schema,
        param_types,
        copy: None,
        cache: None,
        statement: Arc::new(statement),
        generation: 0,
        grants: None,
        kept: None,
    }
}

fn int_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, false)]))
}

fn text_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

impl FakeHandler {
    fn parse(&self, sql: &str) -> Result<Prepared, QueryError> {
        let sql = sql.trim().trim_end_matches(';').trim();
        let lower = sql.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let syntax =
            || QueryError::new(ErrorKind::Syntax, format!("the fake does not know {sql:?}"));
        match words.as_slice() {
            ["rows", n] => {
                n.parse::<u64>().map_err(|_| syntax())?;
                Ok(query(sql, int_schema("n"), vec![]))
            }
            ["echo", "$1"] => Ok(query(sql, text_schema("v"), vec![Some(DataType::Utf8)])),
            ["add", "$1", "$2"] => Ok(query(
                sql,
                int_schema("sum"),
                vec![Some(DataType::Int64), Some(DataType::Int64)],
            )),
            ["fail", "late"] | ["wait"] | ["busy"] => Ok(query(sql, int_schema("n"), vec![])),
            ["fail", kind] => {
                let kind = ErrorKind::parse(kind).ok_or_else(syntax)?;
                Err(QueryError::new(
                    kind,
                    format!("fake {} error", kind.as_str()),
                ))
            }
            ["set", name, "=", _value] | ["set", name, "to", _value] => {
                let value = sql
                    .split_whitespace()
                    .nth(3)
                    .unwrap_or("")
                    .trim_matches('\'');
                Ok(Prepared::Session(SessionCommand::Set {
                    name: name.to_string(),
                    value: value.to_string(),
                }))
            }
            ["show", name] => Ok(Prepared::Session(SessionCommand::Show(name.to_string()))),
            ["begin"] => Ok(Prepared::Session(SessionCommand::Begin)),
            ["commit"] => Ok(Prepared::Session(SessionCommand::Commit)),
            _ => Err(syntax()),
        }
    }

    fn rows(&self, text: &str, params: &[ScalarValue]) -> Result<BatchStream, QueryError> {
        let lower = text.to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let guard = DropCount(self.counters.clone());
        let counters = self.counters.clone();
        let stream: BatchStream = match words.as_slice() {
            ["rows", n] => {
                let total: u64 = n.parse().unwrap_or(0);
                let schema = int_schema("n");
                Box::pin(stream::unfold(0u64, move |next| {
                    let (schema, counters) = (schema.clone(), counters.clone());
                    async move {
                        if next >= total {
                            return None;
                        }
                        let end = (next + BATCH_ROWS as u64).min(total);
                        let values: Vec<i64> = (next as i64..end as i64).collect();
                        counters
                            .rows_produced
                            .fetch_add(end - next, Ordering::SeqCst);
                        let batch =
                            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))])
                                .map_err(|e| QueryError::internal(e.to_string()));
                        // Yield between batches like a real stream from the network.
                        tokio::task::yield_now().await;
                        Some((batch, end))
                    }
                }))
            }
            ["echo", _] => {
                let value = match params.first() {
                    Some(ScalarValue::Utf8(v)) => v.clone(),
                    Some(other) if other.is_null() => None,
                    Some(other) => Some(other.to_string()),
                    None => {
                        return Err(QueryError::new(
                            ErrorKind::InvalidParameter,
                            "echo needs $1",
                        ))
                    }
                };
                let batch = RecordBatch::try_new(
                    text_schema("v"),
                    vec![Arc::new(StringArray::from(vec![value]))],
                )
                .map_err(|e| QueryError::internal(e.to_string()))?;
                Box::pin(stream::iter([Ok(batch)]))
            }
            ["add", ..] => {
                let int = |i: usize| match params.get(i) {
                    Some(ScalarValue::Int64(Some(v))) => Ok(*v),
                    other => Err(QueryError::new(
                        ErrorKind::InvalidParameter,
                        format!("add needs two int8 parameters, got {other:?}"),
                    )),
                };
                let sum = int(0)?.checked_add(int(1)?).ok_or_else(|| {
                    QueryError::new(ErrorKind::InvalidValue, "bigint out of range")
                })?;
                let batch = RecordBatch::try_new(
                    int_schema("sum"),
                    vec![Arc::new(Int64Array::from(vec![sum]))],
                )
                .map_err(|e| QueryError::internal(e.to_string()))?;
                Box::pin(stream::iter([Ok(batch)]))
            }
            ["fail", "late"] => {
                let batch = RecordBatch::try_new(
                    int_schema("n"),
                    vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
                )
                .map_err(|e| QueryError::internal(e.to_string()))?;
                Box::pin(stream::iter([
                    Ok(batch),
                    Err(QueryError::new(
                        ErrorKind::DivisionByZero,
                        "division by zero",
                    )),
                ]))
            }
            ["busy"] => {
                return Err(QueryError::new(
                    ErrorKind::QueueFull,
                    "every worker is busy and the queue is full",
                ))
            }
            ["wait"] => {
                counters.waits_started.fetch_add(1, Ordering::SeqCst);
                Box::pin(stream::pending())
            }
            _ => {
                return Err(QueryError::internal(format!(
                    "the fake cannot run {text:?}"
                )))
            }
        };
        // The guard lives as long as the stream.
        Ok(Box::pin(stream.map(move |item| {
            let _ = &guard;
            item
        })))
    }
}

#[async_trait]
impl Handler for FakeHandler {
    async fn login(&self, token: &str, user: &str, database: &str) -> Result<Session, AuthError> {
        if token != TOKEN {
            return Err(AuthError::UnknownToken);
        }
        Ok(Session::new(
            Principal::service("tester", &[]),
            Access::All,
            user.to_string(),
            database.to_string(),
            "default".to_string(),
        ))
    }

    async fn prepare(&self, _session: &Session, sql: &str) -> Result<Vec<Prepared>, QueryError> {
        self.counters.prepared.fetch_add(1, Ordering::SeqCst);
        sql.split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|s| self.parse(s))
            .collect()
    }

    async fn execute(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome, QueryError> {
        match prepared {
            Prepared::Session(command) => run_session_command(session, command),
            Prepared::Query { text, schema, .. } => Ok(Outcome::Rows {
                schema: schema.clone(),
                batches: self.rows(text, &params)?,
                command: "SELECT",
            }),
            Prepared::Declare { .. } => Err(QueryError::new(
                ErrorKind::NotSupported,
                "the fake handler keeps no cursors",
            )),
        }
    }

    async fn execute_arrow(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, ArrowRows), QueryError> {
        match self.execute(session, prepared, params).await? {
            Outcome::Rows {
                schema, batches, ..
            } => Ok((schema, ArrowRows::Batches(batches))),
            _ => Ok((
                Arc::new(Schema::empty()),
                ArrowRows::Batches(Box::pin(stream::empty())),
            )),
        }
    }

    fn warehouse(&self, name: &str) -> Result<(), QueryError> {
        if name == "default" {
            Ok(())
        } else {
            Err(QueryError::new(
                ErrorKind::UndefinedObject,
                format!("warehouse {name:?} does not exist (warehouses: default)"),
            ))
        }
    }
}

/// Wait (at most 10 s) until `done` holds; panics naming `what` otherwise.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

impl Counters {
    /// Rows produced since `before` once production stopped growing (checked every 200 ms,
    /// at most 10 s), then checked to stay there for another 500 ms: what a client that
    /// stopped reading let the producer make. Panics if the producer never stops.
    pub async fn rows_when_stalled(&self, before: u64) -> u64 {
        let produced = || self.rows_produced.load(Ordering::SeqCst) - before;
        let mut stalled_at = u64::MAX;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let now = produced();
            if now == stalled_at {
                break;
            }
            stalled_at = now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(
            produced(),
            stalled_at,
            "the producer ran on while the client read nothing"
        );
        stalled_at
    }
}
