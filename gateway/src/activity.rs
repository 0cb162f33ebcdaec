//! What runs now and what ran: every statement the handler runs, from every front-end, is
//! a [`Tracked`] statement from its arrival to its last row (or error, or cancel). While it
//! runs, an operator with `MONITOR` can cancel it by id (the admin page); when it ends it
//! leaves one history record and moves the metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_flight::FlightData;
use datafusion::arrow::array::RecordBatch;
use futures::{Stream, StreamExt};
use planner::{ErrorKind, QueryError};
use tokio_util::sync::CancellationToken;

use crate::history::{redact, History};
use crate::metadata::{micros, QueryRecord};
use crate::metrics::Metrics;

/// Running statements, history and metrics.
pub struct Activity {
    pub history: Option<Arc<History>>,
    pub metrics: Option<Arc<Metrics>>,
    /// Series over time for the admin page's charts.
    pub series: Option<Arc<crate::series::Series>>,
    running: Mutex<HashMap<String, Running>>,
    /// `host:pid`, on every record.
    gateway: String,
    /// SIGTERM: no new statements.
    draining: std::sync::atomic::AtomicBool,
}

struct Running {
    cancel: CancellationToken,
    /// Who cancelled it, once someone did.
    by: Arc<Mutex<Option<String>>>,
    /// Shared with the statement (taken back whole when it ends).
    info: Arc<StatementInfo>,
    started: SystemTime,
}

/// A running statement, for the admin page (its text redacted).
#[derive(Debug, Clone)]
pub struct RunningStatement {
    pub info: StatementInfo,
    pub started: SystemTime,
}

/// Who runs a statement and what it is.
#[derive(Debug, Clone)]
pub struct StatementInfo {
    pub id: String,
    pub text: String,
    pub principal: String,
    pub principal_id: String,
    pub protocol: &'static str,
    pub warehouse: Option<String>,
}

impl Activity {
    pub fn new(
        history: Option<Arc<History>>,
        metrics: Option<Arc<Metrics>>,
        series: Option<Arc<crate::series::Series>>,
    ) -> Arc<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Arc::new(Self {
            history,
            metrics,
            series,
            running: Mutex::new(HashMap::new()),
            gateway: format!("{host}:{}", std::process::id()),
            draining: Default::default(),
        })
    }

    /// Refuse new statements from now on (running ones go on).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The error for a statement that arrives while the server drains.
    pub fn refuse_if_draining(&self) -> Result<(), QueryError> {
        if self.is_draining() {
            return Err(QueryError::new(
                ErrorKind::Unavailable,
                "sluice is shutting down: this statement was not started; connect again to another gateway or once it is back",
            ));
        }
        Ok(())
    }

    /// Cancel every running statement (the end of a drain).
    pub fn cancel_all(&self, by: &str) -> usize {
        let running = self.lock();
        for r in running.values() {
            *r.by.lock().unwrap_or_else(|e| e.into_inner()) = Some(by.to_string());
            r.cancel.cancel();
        }
        running.len()
    }

    /// Wait until no statement runs, or `limit` passes; true when none runs.
    pub async fn idle(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.running() == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A statement begins.
    pub fn begin(self: &Arc<Self>, info: StatementInfo) -> Tracked {
        let cancel = CancellationToken::new();
        let by = Arc::new(Mutex::new(None));
        let start = SystemTime::now();
        let info = Arc::new(info);
        self.lock().insert(
            info.id.clone(),
            Running {
                cancel: cancel.clone(),
                by: by.clone(),
                info: info.clone(),
                started: start,
            },
        );
        Tracked(Some(Inner {
            activity: self.clone(),
            info,
            start,
            started: Instant::now(),
            ready: None,
            progress: None,
            from_cache: "none",
            rows: 0,
            bytes: 0,
            cancel,
            cancelled_by: by,
        }))
    }

    /// Cancel a running statement; false when none has this id.
    pub fn cancel(&self, id: &str, by: &str) -> bool {
        match self.lock().get(id) {
            Some(running) => {
                *running.by.lock().unwrap_or_else(|e| e.into_inner()) = Some(by.to_string());
                running.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The statements running now, oldest first.
    pub fn snapshot(&self) -> Vec<RunningStatement> {
        let mut all: Vec<RunningStatement> = self
            .lock()
            .values()
            .map(|r| RunningStatement {
                info: StatementInfo {
                    text: redact(&r.info.text),
                    ..(*r.info).clone()
                },
                started: r.started,
            })
            .collect();
        all.sort_by_key(|r| r.started);
        all
    }

    /// Statements running now.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A statement that failed before it could run (a syntax error, a refused plan).
    pub fn failed(self: &Arc<Self>, info: StatementInfo, error: &QueryError) {
        self.begin(info).end(Some(error));
    }
}

/// One statement on its way; ends (recorded once) when [`Tracked::end`] is called or,
/// failing that, when dropped (a client that stopped reading: canceled).
pub struct Tracked(Option<Inner>);

struct Inner {
    activity: Arc<Activity>,
    info: Arc<StatementInfo>,
    start: SystemTime,
    started: Instant,
    /// When the first rows could flow (planning and queueing done).
    ready: Option<Instant>,
    progress: Option<Arc<workers::Progress>>,
    from_cache: &'static str,
    rows: u64,
    bytes: u64,
    cancel: CancellationToken,
    cancelled_by: Arc<Mutex<Option<String>>>,
}

impl Tracked {
    /// Cancelled when an operator cancels the statement.
    pub fn cancelled(&self) -> CancellationToken {
        self.0
            .as_ref()
            .map(|i| i.cancel.clone())
            .unwrap_or_default()
    }

    /// The error a cancelled statement ends with.
    pub fn cancel_error(&self) -> QueryError {
        let by = self
            .0
            .as_ref()
            .and_then(|i| i.cancelled_by.lock().ok().and_then(|b| b.clone()))
            .unwrap_or_else(|| "an operator".into());
        QueryError::new(
            ErrorKind::Cancelled,
            format!("canceling statement due to user request (canceled by {by})"),
        )
    }

    pub fn set_progress(&mut self, progress: Arc<workers::Progress>) {
        if let Some(i) = self.0.as_mut() {
            i.progress = Some(progress);
        }
    }

    pub fn set_cache(&mut self, served: &'static str) {
        if let Some(i) = self.0.as_mut() {
            i.from_cache = served;
        }
    }

    /// Planning (and queueing) are over: rows flow from now on.
    pub fn ready(&mut self) {
        if let Some(i) = self.0.as_mut() {
            i.ready = Some(Instant::now());
        }
    }

    fn add(&mut self, rows: u64, bytes: u64) {
        if let Some(i) = self.0.as_mut() {
            i.rows += rows;
            i.bytes += bytes;
        }
    }

    /// The statement ended: `None` when it succeeded.
    pub fn end(mut self, error: Option<&QueryError>) {
        if let Some(inner) = self.0.take() {
            inner.finish(error);
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            let stopped = QueryError::new(
                ErrorKind::Cancelled,
                "the client stopped reading the result",
            );
            inner.finish(Some(&stopped));
        }
    }
}

impl Inner {
    fn finish(self, error: Option<&QueryError>) {
        self.record(error);
        // Running no more only once its record waits to be written: a drain that sees no
        // statement running stops the history writer, whose last flush must include it.
        self.activity.lock().remove(self.info.id.as_str());
    }

    fn record(&self, error: Option<&QueryError>) {
        let activity = &self.activity;
        let end = Instant::now();
        let total = end - self.started;
        let queued = self.progress.as_ref().map(|p| p.queued());
        let ready = self.ready.unwrap_or(end);
        let planning = (ready - self.started).saturating_sub(queued.unwrap_or_default());
        let executing = end - ready;
        let (state, outcome) = match error {
            None => ("FINISHED", "finished"),
            Some(e) if e.kind == ErrorKind::Cancelled => ("CANCELED", "canceled"),
            Some(_) => ("FAILED", "failed"),
        };
        tracing::debug!(
            query_id = %self.info.id,
            state,
            rows = self.rows,
            total_ms = total.as_secs_f64() * 1e3,
            error = error.map(|e| e.message.as_str()),
            "statement ended"
        );
        // Queue wait counts for statements that waited for a worker slot.
        let waited = queued.filter(|_| self.progress.as_ref().and_then(|p| p.worker()).is_some());
        if let Some(metrics) = &activity.metrics {
            metrics.statement(
                self.info.protocol,
                self.info.warehouse.as_deref().unwrap_or(""),
                outcome,
                total,
                waited,
            );
            metrics.rows.fetch_add(self.rows, Ordering::Relaxed);
            metrics.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        }
        if let Some(series) = &activity.series {
            series.statement(crate::series::Statement {
                warehouse: self.info.warehouse.as_deref().unwrap_or(""),
                outcome,
                total,
                queued: waited,
                from_cache: self.from_cache,
                rows: self.rows,
                bytes: self.bytes,
            });
        }
        let Some(history) = &activity.history else {
            return;
        };
        let ran = self.progress.as_ref().and_then(|p| p.take_profile());
        let us = |d: Duration| d.as_micros() as u64;
        let start_us = micros(self.start);
        // Still in the registry (it leaves once this is recorded), so borrowed.
        let info = &self.info;
        let statement_text = redact(&info.text);
        // The text comes with its secrets replaced by `'***'` already (the handler's
        // `recorded`); the plan's descriptions would print them.
        let holds_secret = statement_text.contains("'***'");
        let record = QueryRecord {
            statement_id: info.id.clone(),
            statement_text,
            principal: info.principal.clone(),
            principal_id: info.principal_id.clone(),
            protocol: info.protocol.to_string(),
            warehouse: info.warehouse.clone(),
            worker_id: self.progress.as_ref().and_then(|p| p.worker()),
            state: state.into(),
            sqlstate: error.map(|e| crate::error::sqlstate(e.kind).to_string()),
            error_message: error.map(|e| e.message.clone()),
            rows: self.rows,
            bytes: self.bytes,
            start_us,
            end_us: start_us + us(total) as i64,
            queued_us: queued.map(us).unwrap_or(0),
            planning_us: us(planning),
            executing_us: us(executing),
            from_cache: self.from_cache.into(),
            gateway: activity.gateway.clone(),
            distributed: self
                .progress
                .as_ref()
                .and_then(|p| p.distribution())
                .map(|d| crate::metadata::DistributedRecord::from_progress(&d)),
            has_profile: false,
            profile: None,
        };
        history.record(record, ran, holds_secret);
    }
}

/// What one item of a result stream carries.
pub trait Measured {
    /// Rows and bytes.
    fn measure(&self) -> (u64, u64);
}

impl Measured for RecordBatch {
    fn measure(&self) -> (u64, u64) {
        (self.num_rows() as u64, self.get_array_memory_size() as u64)
    }
}

impl Measured for FlightData {
    fn measure(&self) -> (u64, u64) {
        let rows = workers::protocol::message_rows(self).unwrap_or(0) as u64;
        (rows, (self.data_body.len() + self.data_header.len()) as u64)
    }
}

type Fallible<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, QueryError>> + Send>>;

/// A result stream that counts what passes, ends the statement with its end (or error), and
/// stops with a cancel error when an operator cancels it.
pub fn tracked_stream<T: Measured + Send + 'static>(
    rows: Fallible<T>,
    tracked: Tracked,
) -> Fallible<T> {
    let cancel = tracked.cancelled();
    Box::pin(futures::stream::unfold(
        Some((rows, tracked)),
        move |state| {
            let cancel = cancel.clone();
            async move {
                let (mut rows, mut tracked) = state?;
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {
                        let error = tracked.cancel_error();
                        // Dropping the stream stops the query on its worker.
                        drop(rows);
                        tracked.end(Some(&error));
                        return Some((Err(error), None));
                    }
                    next = rows.next() => next,
                };
                match next {
                    Some(Ok(item)) => {
                        let (r, b) = item.measure();
                        tracked.add(r, b);
                        Some((Ok(item), Some((rows, tracked))))
                    }
                    Some(Err(error)) => {
                        tracked.end(Some(&error));
                        Some((Err(error), None))
                    }
                    None => {
                        tracked.end(None);
                        None
                    }
                }
            }
        },
    ))
}
