//! A warehouse: a pool of `sluice worker` processes, the admission of queries to them,
//! and the replacement of workers that die.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, Ticket};
use datafusion::arrow::array::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use planner::{ErrorKind, QueryError};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::protocol::{
    ExecuteRequest, ERROR_KIND_HEADER, MAX_MESSAGE_BYTES, READY_PREFIX, SECRET_ENV,
};

/// Per-query HTTP/2 receive window on the gateway side of the worker channel.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// How long a new worker may take to report its address.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream of result batches, or the error that ended it.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, QueryError>> + Send>>;

/// A worker's Arrow IPC messages (schema first, then batches), undecoded.
pub type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, QueryError>> + Send>>;

/// The settings of one warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub name: String,
    /// Workers kept running.
    pub workers: usize,
    /// Queries one worker runs at once.
    pub max_concurrency_per_worker: usize,
    /// Queries that may wait for a slot; the next one is refused at once.
    pub max_queued: usize,
    /// How long a query may wait for a slot.
    pub queue_timeout: Duration,
    /// Memory limit of each worker's queries, in bytes.
    pub worker_memory_limit: Option<u64>,
    /// Parallelism inside one query on a worker.
    pub worker_threads: usize,
    /// The program and leading arguments that start a worker (`[sluice, worker]`).
    pub worker_command: Vec<OsString>,
}

/// One running worker process, as the gateway sees it.
#[derive(Debug)]
pub struct WorkerHandle {
    pub id: u64,
    pub pid: Option<u32>,
    pub addr: SocketAddr,
    pub started: SystemTime,
    client: FlightServiceClient<Channel>,
    /// Queries running on this worker now (admission counts them).
    running: AtomicUsize,
    /// Cleared as soon as a call finds the worker unreachable, before its process
    /// monitor has noticed the exit: admission then skips it.
    reachable: AtomicBool,
    /// Cancelled to retire the worker: its monitor kills the process (if it is still
    /// alive but not answering) and starts a replacement.
    retire: CancellationToken,
}

/// A snapshot of a warehouse for health checks and system tables.
#[derive(Debug, Clone)]
pub struct WarehouseStatus {
    pub name: String,
    pub workers: Vec<WorkerStatus>,
    pub queued: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub id: u64,
    pub pid: Option<u32>,
    pub addr: SocketAddr,
    pub running: usize,
    pub started: SystemTime,
}

#[derive(Debug, Default)]
struct PoolState {
    workers: Vec<Arc<WorkerHandle>>,
    /// Queries waiting for a slot.
    queued: usize,
    next_id: u64,
}

/// A pool of worker processes that queries are admitted to.
#[derive(Debug)]
pub struct Warehouse {
    config: WarehouseConfig,
    /// The `authorization` value every call to a worker carries.
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    /// The secret itself, handed to spawned workers through their environment.
    secret: String,
    state: Mutex<PoolState>,
    /// Signalled whenever a slot frees up or a worker joins or leaves.
    changed: Notify,
    stopping: CancellationToken,
}

impl Warehouse {
    /// Start a warehouse and its workers. Fails if not even one worker starts, since then
    /// the binary or the machine is broken and waiting will not help.
    pub async fn start(config: WarehouseConfig) -> Result<Arc<Self>, QueryError> {
        let secret = auth_secret();
        let bearer = format!("Bearer {secret}")
            .parse()
            .map_err(|_| QueryError::internal("worker secret is not ASCII"))?;
        let warehouse = Arc::new(Self {
            config,
            bearer,
            secret,
            state: Mutex::new(PoolState::default()),
            changed: Notify::new(),
            stopping: CancellationToken::new(),
        });
        let starts = (0..warehouse.config.workers.max(1)).map(|_| warehouse.clone().spawn_worker());
        let results = futures::future::join_all(starts).await;
        let started = results.iter().filter(|r| r.is_ok()).count();
        if started == 0 {
            if let Some(Err(e)) = results.into_iter().next() {
                return Err(e);
            }
            return Err(QueryError::internal("no workers configured"));
        }
        for result in results {
            if let Err(e) = result {
                tracing::warn!(warehouse = %warehouse.config.name, error = %e, "a worker failed to start; retrying in the background");
                warehouse.clone().replace_later();
            }
        }
        tracing::info!(warehouse = %warehouse.config.name, workers = started, "warehouse ready");
        Ok(warehouse)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether at least one worker can take queries.
    pub fn is_ready(&self) -> bool {
        self.lock()
            .workers
            .iter()
            .any(|w| w.reachable.load(Ordering::Relaxed))
    }

    pub fn status(&self) -> WarehouseStatus {
        let state = self.lock();
        WarehouseStatus {
            name: self.config.name.clone(),
            queued: state.queued,
            workers: state
                .workers
                .iter()
                .map(|w| WorkerStatus {
                    id: w.id,
                    pid: w.pid,
                    addr: w.addr,
                    running: w.running.load(Ordering::Relaxed),
                    started: w.started,
                })
                .collect(),
        }
    }

    /// Stop all workers (they are killed; running queries end with an error).
    pub fn stop(&self) {
        self.stopping.cancel();
        self.changed.notify_waiters();
    }

    /// Run an encoded physical plan on a worker and stream its batches.
    ///
    /// Waits (bounded) for a free slot. If the chosen worker cannot be reached before it
    /// sends anything, the query is retried on another worker (a few times at most):
    /// nothing was returned yet and every query is read-only.
    pub async fn execute(
        self: &Arc<Self>,
        query_id: &str,
        plan: Vec<u8>,
    ) -> Result<BatchStream, QueryError> {
        let (flight, slot) = self.dispatch(query_id, plan).await?;
        let batches =
            FlightRecordBatchStream::new_from_flight_data(flight.map_err(FlightError::from));
        Ok(Box::pin(batches.map(move |item| {
            // The slot is held for as long as the stream lives.
            let _held = &slot;
            item.map_err(flight_error)
        })))
    }

    /// Like [`Warehouse::execute`], but the worker's Arrow IPC messages as they arrive,
    /// undecoded, for front-ends that send Arrow on (Flight SQL).
    pub async fn execute_flight(
        self: &Arc<Self>,
        query_id: &str,
        plan: Vec<u8>,
    ) -> Result<FlightStream, QueryError> {
        let (flight, slot) = self.dispatch(query_id, plan).await?;
        Ok(Box::pin(flight.map(move |item| {
            let _held = &slot;
            item.map_err(|status| status_error(&status))
        })))
    }

    /// Send a plan to a worker; its answer stream and the slot it holds.
    async fn dispatch(
        self: &Arc<Self>,
        query_id: &str,
        plan: Vec<u8>,
    ) -> Result<(tonic::Streaming<FlightData>, Slot), QueryError> {
        let ticket = Ticket {
            ticket: ExecuteRequest {
                query_id: query_id.to_string(),
                plan,
            }
            .encode_to_vec()
            .into(),
        };
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = self.acquire().await?;
            let mut client = slot.worker.client.clone();
            let mut request = tonic::Request::new(ticket.clone());
            request
                .metadata_mut()
                .insert("authorization", self.bearer.clone());
            match client.do_get(request).await {
                Ok(response) => return Ok((response.into_inner(), slot)),
                Err(status) => {
                    let err = status_error(&status);
                    if err.kind == ErrorKind::WorkerLost {
                        slot.worker.reachable.store(false, Ordering::Relaxed);
                        slot.worker.retire.cancel();
                        if attempt < ATTEMPTS {
                            tracing::warn!(
                                query_id,
                                worker = slot.worker.id,
                                attempt,
                                "worker unreachable; retrying the query on another worker"
                            );
                            continue;
                        }
                    }
                    return Err(err);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the counters half-updated in a way
        // that matters more than stopping the gateway would: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wait for a slot on the least-loaded worker.
    async fn acquire(self: &Arc<Self>) -> Result<Slot, QueryError> {
        let deadline = tokio::time::Instant::now() + self.config.queue_timeout;
        let mut waiting: Option<QueueTicket<'_>> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                let max = self.config.max_concurrency_per_worker.max(1);
                let best = state
                    .workers
                    .iter()
                    .filter(|w| {
                        w.reachable.load(Ordering::Relaxed)
                            && w.running.load(Ordering::Relaxed) < max
                    })
                    .min_by_key(|w| w.running.load(Ordering::Relaxed))
                    .cloned();
                if let Some(worker) = best {
                    worker.running.fetch_add(1, Ordering::Relaxed);
                    // Leave the queue only after releasing the lock: the ticket's drop
                    // takes the lock itself.
                    drop(state);
                    drop(waiting);
                    return Ok(Slot {
                        warehouse: self.clone(),
                        worker,
                    });
                }
                if self.stopping.is_cancelled() {
                    return Err(QueryError::new(
                        ErrorKind::Unavailable,
                        "the warehouse is shutting down",
                    ));
                }
                if waiting.is_none() {
                    if state.queued >= self.config.max_queued {
                        return Err(QueryError::new(
                            ErrorKind::QueueFull,
                            format!(
                                "warehouse {:?} is busy: {} queries are already waiting; try again shortly",
                                self.config.name, state.queued
                            ),
                        ));
                    }
                    state.queued += 1;
                    waiting = Some(QueueTicket { warehouse: self });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(QueryError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "no worker of warehouse {:?} became free within {:?}",
                        self.config.name, self.config.queue_timeout
                    ),
                ));
            }
        }
    }

    /// Start one worker process and add it to the pool.
    async fn spawn_worker(self: Arc<Self>) -> Result<(), QueryError> {
        let unavailable = |what: String| QueryError::new(ErrorKind::Unavailable, what);
        let (program, args) = self
            .config
            .worker_command
            .split_first()
            .ok_or_else(|| QueryError::internal("no worker command configured"))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--exit-with-parent")
            .arg("--threads")
            .arg(self.config.worker_threads.max(1).to_string());
        if let Some(limit) = self.config.worker_memory_limit {
            command.arg("--memory-limit").arg(limit.to_string());
        }
        command
            .env(SECRET_ENV, &self.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| unavailable(format!("could not start a worker process: {e}")))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| QueryError::internal("worker stdout not captured"))?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(WORKER_START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix(READY_PREFIX) {
                    return addr.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            unavailable("a worker process exited or timed out before it was ready".into())
        })?;
        // Keep reading the worker's stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| QueryError::internal(e.to_string()))?
            .tcp_nodelay(true)
            // HTTP/2 flow control bounds what a worker can send ahead of the client: enough
            // to keep the loopback busy (the 64 KiB default throttles bulk results), small
            // enough that a slow client holds only a few MiB per query in the gateway.
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(STREAM_WINDOW_BYTES * 4)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| unavailable(format!("could not connect to a new worker: {e}")))?;
        let client = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let handle = {
            let mut state = self.lock();
            state.next_id += 1;
            let handle = Arc::new(WorkerHandle {
                id: state.next_id,
                pid,
                addr,
                started: SystemTime::now(),
                client,
                running: AtomicUsize::new(0),
                reachable: AtomicBool::new(true),
                retire: CancellationToken::new(),
            });
            state.workers.push(handle.clone());
            handle
        };
        tracing::info!(warehouse = %self.config.name, worker = handle.id, pid, %addr, "worker started");
        self.changed.notify_waiters();

        // Watch the process: when it exits, take it out of the pool and start another.
        let warehouse = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let exit = tokio::select! {
                status = child.wait() => Some(status),
                _ = handle.retire.cancelled() => {
                    // Unreachable but maybe still running: make sure it is gone.
                    let _ = child.kill().await;
                    Some(child.wait().await)
                }
                _ = warehouse.stopping.cancelled() => {
                    let _ = child.kill().await;
                    None
                }
            };
            drop(stdin);
            warehouse.lock().workers.retain(|w| w.id != handle.id);
            warehouse.changed.notify_waiters();
            if let Some(status) = exit {
                let status = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                tracing::warn!(warehouse = %warehouse.config.name, worker = handle.id, pid, %status, "worker exited; starting a replacement");
                if started.elapsed() < Duration::from_secs(5) {
                    // It died young: do not spin if every new worker dies at once.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                warehouse.replace_later();
            }
        });
        Ok(())
    }

    /// Start a replacement worker in the background, retrying with backoff.
    fn replace_later(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !self.stopping.is_cancelled() {
                match self.clone().spawn_worker().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(warehouse = %self.config.name, error = %e, retry_in = ?backoff, "could not start a replacement worker");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

/// A query's claim on one worker slot; released on drop.
struct Slot {
    warehouse: Arc<Warehouse>,
    worker: Arc<WorkerHandle>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.worker.running.fetch_sub(1, Ordering::Relaxed);
        self.warehouse.changed.notify_waiters();
    }
}

/// A place in the queue; given back if the waiting query is abandoned.
struct QueueTicket<'a> {
    warehouse: &'a Warehouse,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.warehouse.lock();
        state.queued = state.queued.saturating_sub(1);
    }
}

fn auth_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn flight_error(err: FlightError) -> QueryError {
    match err {
        FlightError::Tonic(status) => status_error(&status),
        FlightError::Arrow(e) => QueryError::internal(format!("bad data from worker: {e}")),
        other => QueryError::new(
            ErrorKind::WorkerLost,
            format!("lost the worker running this query ({other}); the query can be retried"),
        ),
    }
}

/// Turn a status from a worker into a query error: the worker labels its own errors; any
/// other status means the connection to the worker broke.
fn status_error(status: &tonic::Status) -> QueryError {
    if let Some(kind) = status
        .metadata()
        .get(ERROR_KIND_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorKind::parse)
    {
        return QueryError::new(kind, status.message().to_string());
    }
    QueryError::new(
        ErrorKind::WorkerLost,
        "the worker running this query stopped unexpectedly; the query can be retried",
    )
}
