//! A warehouse: a pool of workers that grows under load, shrinks when idle (down to none:
//! a stopped warehouse starts again on the next query), and admits queries to them through
//! a bounded FIFO queue.
//!
//! ```text
//!  execute(query) ─► acquire ─ free slot on the least-loaded ready worker ─► DoGet ─► stream
//!                          └─ else wait in the queue (bounded, FIFO) ◄── slot freed / worker ready
//!  autoscaler (every 250 ms and on every queue change):
//!     below min_workers ─► start · queries waiting, none free ─► start (≤ max, ≤ max_starting at once)
//!     idle ≥ auto_stop above min ─► stop · health check fails twice ─► replace
//! ```
//!
//! Workers come from a [`Launcher`]: child processes on loopback, or `sluice worker
//! --listen` processes on other hosts at fixed addresses (static). A query whose worker is
//! lost before it sent any rows runs again, once, on another worker (every query is
//! read-only); one that had started streaming ends with `WorkerLost`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
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
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::protocol::{ExecuteRequest, WorkerReport, ERROR_KIND_HEADER};

/// How long a new worker may take to report its address.
pub(crate) const WORKER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the autoscaler looks, besides every queue change.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// How often workers are asked for their status (the health check).
pub(crate) const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// A status answer slower than this counts as a failed check.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed checks in a row after which a worker is replaced.
pub(crate) const HEALTH_FAILURES: u32 = 2;
/// With workers running, queries must have waited this long before more are started: a
/// queue that drains by itself needs none (a stopped warehouse starts at once).
pub(crate) const SCALE_UP_WAIT: Duration = Duration::from_millis(100);

/// A stream of result batches, or the error that ended it.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, QueryError>> + Send>>;
/// A worker's Arrow IPC messages (schema first, then batches), undecoded.
pub type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, QueryError>> + Send>>;

/// A worker's Arrow IPC messages decoded into record batches.
pub fn decode(messages: FlightStream) -> BatchStream {
    let batches = FlightRecordBatchStream::new_from_flight_data(
        messages.map_err(|e| FlightError::ExternalError(Box::new(e))),
    );
    Box::pin(batches.map_err(|e| match e {
        FlightError::ExternalError(inner) => match inner.downcast::<QueryError>() {
            Ok(q) => *q,
            Err(other) => QueryError::new(ErrorKind::WorkerLost, other.to_string()),
        },
        FlightError::Arrow(e) => QueryError::internal(format!("bad data from worker: {e}")),
        other => QueryError::new(
            ErrorKind::WorkerLost,
            format!("lost the worker running this query ({other}); the query can be retried"),
        ),
    }))
}

/// Record batches as Arrow IPC messages (schema first), for front-ends that send Arrow on.
pub fn encode(
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: BatchStream,
) -> FlightStream {
    let encoded = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches.map_err(|e| FlightError::ExternalError(Box::new(e))));
    Box::pin(encoded.map(|item| {
        item.map_err(|e| match e {
            FlightError::ExternalError(inner) => match inner.downcast::<QueryError>() {
                Ok(q) => *q,
                Err(other) => QueryError::internal(other.to_string()),
            },
            other => QueryError::internal(format!("encoding a result: {other}")),
        })
    }))
}

/// How a gateway starts its local workers (the same for every local warehouse).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocalWorkers {
    /// The program and leading arguments (`[sluice, worker]`).
    pub command: Vec<OsString>,
    /// Parallelism inside one query.
    pub threads: usize,
    /// How the workers reach object storage (handed down in their environment).
    pub storage: planner::storage::StorageOptions,
    /// Each worker's cache of remote Parquet bytes: a directory of its own in `dir`.
    pub data_cache: Option<crate::data_cache::DataCacheConfig>,
}

/// Where a warehouse's workers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Launcher {
    /// `sluice worker` child processes on loopback, started and stopped by the pool.
    Local(LocalWorkers),
    /// Workers started elsewhere (`sluice worker --listen ADDR`), at these `host:port`s.
    Static { addrs: Vec<String> },
}

/// TLS on the channel to remote workers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerTls {
    /// CA certificate (PEM) the workers' certificates are checked against.
    pub ca: PathBuf,
    /// The name their certificates carry (default: the host of each address).
    pub domain: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The settings of one warehouse (all of them may change on reload).
#[derive(Debug, Clone, PartialEq)]
pub struct WarehouseConfig {
    pub name: String,
    /// Workers kept running even when idle (0: the warehouse stops when idle).
    pub min_workers: usize,
    /// Most workers under load.
    pub max_workers: usize,
    /// Queries one worker runs at once.
    pub max_concurrency_per_worker: usize,
    /// Queries that may wait for a slot; the next one is refused at once.
    pub max_queued: usize,
    /// How long a query may wait for a slot.
    pub queue_timeout: Duration,
    /// Idle time after which workers above `min_workers` are stopped.
    pub auto_stop: Option<Duration>,
    /// Most workers starting at the same time.
    pub max_starting: usize,
    /// Memory each worker's queries may use together, in bytes.
    pub worker_memory_limit: Option<u64>,
    /// The warehouse's default `statement_timeout` (sessions may set their own).
    pub statement_timeout: Option<Duration>,
    pub launcher: Launcher,
    /// The secret every call to a worker carries: made up for local workers, configured
    /// (and given to the remote workers) for static ones.
    pub secret: Option<String>,
    pub tls: Option<WorkerTls>,
    /// Whether big queries spread over several workers (`distributed`).
    pub distributed: planner::distributed::Mode,
    /// The bytes a query must scan before `auto` distributes it.
    pub min_distributed_bytes: u64,
    /// Queries that scan at most this many bytes of files run in the gateway, without a
    /// round trip to a worker (0: every data query goes to a worker).
    pub small_query_bytes: u64,
}

impl WarehouseConfig {
    /// Local workers started as `local` says (the program, threads, storage): the
    /// config file names a warehouse's sizes, the server knows how to start workers.
    pub fn with_local_workers(mut self, local: &LocalWorkers) -> Self {
        if let Launcher::Local(workers) = &mut self.launcher {
            *workers = local.clone();
        }
        self
    }

    pub(crate) fn is_static(&self) -> bool {
        matches!(self.launcher, Launcher::Static { .. })
    }
}

pub(crate) const READY: u8 = 0;
/// Stopping: takes no new queries, goes once its running ones end.
pub(crate) const DRAINING: u8 = 1;
/// Not answering (static workers come back by themselves).
pub(crate) const DOWN: u8 = 2;

/// One worker, as the gateway sees it.
#[derive(Debug)]
pub struct WorkerHandle {
    pub id: u64,
    pub pid: Option<u32>,
    pub addr: String,
    pub started: SystemTime,
    pub(crate) client: FlightServiceClient<Channel>,
    /// Queries running on this worker now (admission counts them).
    pub(crate) running: AtomicUsize,
    pub(crate) state: AtomicU8,
    /// Since when no query runs here (scale-down looks at it).
    pub(crate) idle_since: Mutex<Instant>,
    pub(crate) failed_checks: AtomicU32,
    /// What the worker said in its last status answer.
    pub(crate) report: Mutex<Option<WorkerReport>>,
    /// Cancelled to stop the worker: its monitor kills a local process.
    pub(crate) retire: CancellationToken,
    /// Its distributed endpoint (the library's worker service), once known.
    pub(crate) distributed: Mutex<Option<url::Url>>,
}

impl WorkerHandle {
    pub(crate) fn distributed_url(&self) -> Option<url::Url> {
        self.distributed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn takes_queries(&self, max: usize) -> bool {
        self.state.load(Ordering::Relaxed) == READY && self.running.load(Ordering::Relaxed) < max
    }
}

/// A snapshot of a worker for health checks and system tables.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub id: u64,
    pub pid: Option<u32>,
    pub addr: String,
    pub state: &'static str,
    pub running: usize,
    pub started: SystemTime,
    pub report: Option<WorkerReport>,
}

/// A snapshot of a warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseStatus {
    pub name: String,
    /// `running`, `starting` (no worker ready yet), `stopped` (none, none starting).
    pub state: &'static str,
    pub config: WarehouseConfig,
    pub workers: Vec<WorkerStatus>,
    pub starting: usize,
    pub queued: usize,
    pub running: usize,
    /// Scaling decisions so far, by reason (`min_workers`, `queue`, `replace`, `idle`,
    /// `health`, `reload`).
    pub scale_events: BTreeMap<&'static str, u64>,
}

/// Who runs a query and what it is, for `system.queries`.
#[derive(Debug, Clone, Default)]
pub struct QueryMeta {
    pub id: String,
    /// The principal's name (for people) and id (to match it).
    pub principal: String,
    pub principal_id: String,
    pub protocol: String,
    pub text: String,
    /// What admission learns of the query as it goes (for its history record).
    pub progress: Arc<Progress>,
}

/// Where a query ran and how long it waited for a slot, filled in by admission.
#[derive(Debug, Default)]
pub struct Progress {
    /// The worker's id + 1 (0: none yet).
    worker: std::sync::atomic::AtomicU64,
    /// Time spent queued, in microseconds, over every attempt.
    queued_micros: std::sync::atomic::AtomicU64,
    /// A distributed query's shape and the workers its tasks reached.
    distributed: Mutex<Option<DistributedProgress>>,
    /// The plan that ran, with its operators' metrics, once it has ended.
    profile: Mutex<Option<RanPlan>>,
}

/// What a query's profile is made from, kept as it comes: most are never looked at (the
/// history keeps a few a second), so they are made (or parsed) only when kept.
#[derive(Debug)]
pub enum RanPlan {
    /// The plan the gateway ran itself, with its metrics.
    Here(Arc<dyn datafusion::physical_plan::ExecutionPlan>),
    /// A worker's profile as it sent it (JSON).
    Sent(bytes::Bytes),
}

impl RanPlan {
    /// The profile (None: the worker's JSON did not read).
    pub fn profile(&self) -> Option<planner::profile::Profile> {
        match self {
            RanPlan::Here(plan) => Some(planner::profile::Profile::of(plan)),
            RanPlan::Sent(json) => planner::profile::Profile::from_json(json),
        }
    }
}

/// Where a distributed query runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistributedProgress {
    /// Stages, the head (run by the gateway) included.
    pub stages: usize,
    /// Tasks over all stages.
    pub tasks: usize,
    /// The workers that run its tasks (ids).
    pub workers: Vec<u64>,
}

impl Progress {
    /// The worker that ran (or runs) the query.
    pub fn worker(&self) -> Option<u64> {
        self.worker.load(Ordering::Relaxed).checked_sub(1)
    }

    /// How long the query waited for a worker slot.
    pub fn queued(&self) -> Duration {
        Duration::from_micros(self.queued_micros.load(Ordering::Relaxed))
    }

    /// A distributed query's stages, tasks and workers (None: it ran on one worker).
    pub fn distribution(&self) -> Option<DistributedProgress> {
        self.distributed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the profile of the plan that ran is made from (None: none ran, or it has not
    /// ended).
    pub fn take_profile(&self) -> Option<RanPlan> {
        self.profile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Keep the plan that ran (or its profile).
    pub fn set_profile(&self, ran: RanPlan) {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = Some(ran);
    }

    pub(crate) fn distributed(&self, stages: usize, tasks: usize) {
        *self.distributed.lock().unwrap_or_else(|p| p.into_inner()) = Some(DistributedProgress {
            stages,
            tasks,
            workers: Vec::new(),
        });
    }

    pub(crate) fn add_worker(&self, worker: u64) {
        if let Some(d) = self
            .distributed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            d.workers.push(worker);
        }
    }

    fn started(&self, worker: u64, waited: Duration) {
        self.worker.store(worker + 1, Ordering::Relaxed);
        self.queued_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A query of this warehouse, queued or running.
#[derive(Debug, Clone)]
pub struct QueryState {
    pub meta: QueryMeta,
    pub warehouse: String,
    /// `queued` or `running`.
    pub state: &'static str,
    pub worker: Option<u64>,
    pub submitted: SystemTime,
    pub waited: Duration,
    pub running_for: Option<Duration>,
}

#[derive(Debug)]
struct Tracked {
    meta: QueryMeta,
    submitted: SystemTime,
    queued_at: Instant,
    started: Option<(Instant, u64)>,
}

pub(crate) struct Waiter {
    id: u64,
    pub(crate) since: Instant,
    grant: oneshot::Sender<Arc<WorkerHandle>>,
}

pub(crate) struct PoolState {
    pub(crate) config: WarehouseConfig,
    pub(crate) workers: Vec<Arc<WorkerHandle>>,
    /// Workers being started now.
    pub(crate) starting: usize,
    pub(crate) queue: VecDeque<Waiter>,
    pub(crate) next_id: u64,
    next_waiter: u64,
    queries: HashMap<String, Tracked>,
    pub(crate) scale_events: BTreeMap<&'static str, u64>,
    /// Worker starts that failed in a row (backoff).
    pub(crate) start_failures: u32,
    /// No start before this (after failures).
    pub(crate) start_after: Option<Instant>,
}

/// A pool of workers that queries are admitted to.
pub struct Warehouse {
    name: String,
    /// The `authorization` value every call to a worker carries, and the secret itself
    /// (handed to spawned workers in their environment).
    pub(crate) bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    pub(crate) secret: String,
    /// Connections to the workers' distributed endpoints.
    pub(crate) channels: crate::channels::Channels,
    state: Mutex<PoolState>,
    /// Wakes the autoscaler.
    pub(crate) wake: Notify,
    pub(crate) stopping: CancellationToken,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("name", &self.name)
            .finish()
    }
}

impl Warehouse {
    /// Start a warehouse: its autoscaler, and its `min_workers` (waiting for the first to
    /// be ready). Fails if not even one of them starts: then the binary, the machine or
    /// the addresses are broken and waiting will not help.
    pub async fn start(config: WarehouseConfig) -> Result<Arc<Self>, QueryError> {
        let secret = match (&config.secret, &config.launcher) {
            (Some(secret), _) => secret.clone(),
            (None, Launcher::Local(_)) => auth_secret(),
            (None, Launcher::Static { .. }) => {
                return Err(QueryError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "warehouse {}: static workers need the worker secret",
                        config.name
                    ),
                ))
            }
        };
        let bearer = format!("Bearer {secret}").parse().map_err(|_| {
            QueryError::new(ErrorKind::InvalidValue, "the worker secret must be ASCII")
        })?;
        let channels = crate::channels::Channels::new(
            &secret,
            config.tls.as_ref().map(channel_tls).transpose()?,
        )?;
        let warehouse = Arc::new(Self {
            name: config.name.clone(),
            bearer,
            channels,
            secret,
            state: Mutex::new(PoolState {
                config,
                workers: Vec::new(),
                starting: 0,
                queue: VecDeque::new(),
                next_id: 0,
                next_waiter: 0,
                queries: HashMap::new(),
                scale_events: BTreeMap::new(),
                start_failures: 0,
                start_after: None,
            }),
            wake: Notify::new(),
            stopping: CancellationToken::new(),
        });
        let first = warehouse.initial_workers().await;
        tokio::spawn(warehouse.clone().autoscale());
        first?;
        Ok(warehouse)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the counts half-updated in a way
        // that matters more than stopping the gateway would: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> WarehouseConfig {
        self.lock().config.clone()
    }

    /// The most bytes of files a query may scan to run in the gateway
    /// ([`WarehouseConfig::small_query_bytes`]).
    pub fn small_query_bytes(&self) -> u64 {
        self.lock().config.small_query_bytes
    }

    /// Whether queries can be taken: a worker is ready, or (a stopped warehouse) one can
    /// be started for them.
    pub fn is_ready(&self) -> bool {
        let state = self.lock();
        state
            .workers
            .iter()
            .any(|w| w.state.load(Ordering::Relaxed) == READY)
            || (state.config.min_workers == 0 && !self.stopping.is_cancelled())
    }

    pub fn status(&self) -> WarehouseStatus {
        let state = self.lock();
        let workers: Vec<WorkerStatus> = state
            .workers
            .iter()
            .map(|w| WorkerStatus {
                id: w.id,
                pid: w.pid,
                addr: w.addr.clone(),
                state: match w.state.load(Ordering::Relaxed) {
                    READY => "ready",
                    DRAINING => "draining",
                    _ => "down",
                },
                running: w.running.load(Ordering::Relaxed),
                started: w.started,
                report: w.report.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            })
            .collect();
        let ready = workers.iter().filter(|w| w.state == "ready").count();
        WarehouseStatus {
            name: self.name.clone(),
            state: if ready > 0 {
                "running"
            } else if state.starting > 0 {
                "starting"
            } else {
                "stopped"
            },
            config: state.config.clone(),
            running: workers.iter().map(|w| w.running).sum(),
            workers,
            starting: state.starting,
            queued: state.queue.len(),
            scale_events: state.scale_events.clone(),
        }
    }

    /// The queries queued or running here now.
    pub fn queries(&self) -> Vec<QueryState> {
        let state = self.lock();
        state
            .queries
            .values()
            .map(|q| QueryState {
                meta: q.meta.clone(),
                warehouse: self.name.clone(),
                state: if q.started.is_some() {
                    "running"
                } else {
                    "queued"
                },
                worker: q.started.map(|(_, w)| w),
                submitted: q.submitted,
                waited: q
                    .started
                    .map(|(at, _)| at - q.queued_at)
                    .unwrap_or_else(|| q.queued_at.elapsed()),
                running_for: q.started.map(|(at, _)| at.elapsed()),
            })
            .collect()
    }

    /// Take new settings (SIGHUP): sizes, limits and timeouts apply at once; workers above
    /// a lower `max_workers` drain and stop; running queries and sessions are untouched.
    /// A different launcher or memory limit applies to workers started from now on.
    pub fn reconfigure(&self, config: WarehouseConfig) {
        let mut state = self.lock();
        if state.config == config {
            return;
        }
        tracing::info!(warehouse = %self.name, min = config.min_workers, max = config.max_workers, "warehouse reconfigured");
        state.config = config;
        *state.scale_events.entry("reload").or_default() += 1;
        drop(state);
        self.wake.notify_one();
    }

    /// Stop all workers (running queries end with an error) and refuse new queries.
    pub fn stop(&self) {
        self.stopping.cancel();
        let mut state = self.lock();
        state.queue.clear(); // waiters see their grant dropped: "shutting down"
        for worker in &state.workers {
            worker.retire.cancel();
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Run an encoded physical plan on a worker and stream its batches.
    pub async fn execute(
        self: &Arc<Self>,
        meta: QueryMeta,
        plan: Vec<u8>,
    ) -> Result<BatchStream, QueryError> {
        Ok(decode(self.execute_flight(meta, plan).await?))
    }

    /// Like [`Warehouse::execute`], but the worker's Arrow IPC messages as they arrive,
    /// undecoded, for front-ends that send Arrow on (Flight SQL, HS2).
    ///
    /// Waits (bounded) for a free slot. If the worker is lost before it sent any rows, the
    /// query runs again once on another worker: nothing reached the client yet and every
    /// query is read-only.
    pub async fn execute_flight(
        self: &Arc<Self>,
        meta: QueryMeta,
        plan: Vec<u8>,
    ) -> Result<FlightStream, QueryError> {
        let ticket = Ticket {
            ticket: ExecuteRequest {
                query_id: meta.id.clone(),
                plan,
            }
            .encode_to_vec()
            .into(),
        };
        let progress = meta.progress.clone();
        let tracking = Tracking::new(self.clone(), meta);
        let attempt = self.dispatch(&ticket, &tracking, false).await?;
        let state = Retrying {
            progress,
            warehouse: self.clone(),
            ticket,
            tracking,
            current: Some(attempt),
            schema_sent: None,
            data_sent: false,
            retried: false,
            schema_again: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                loop {
                    let attempt = st.current.as_mut()?;
                    match attempt.stream.next().await {
                        // The profile after the last batch: kept, not passed on.
                        Some(Ok(data)) if crate::protocol::is_metadata_only(&data) => {
                            if !data.app_metadata.is_empty() {
                                st.progress.set_profile(RanPlan::Sent(data.app_metadata));
                            }
                            continue;
                        }
                        Some(Ok(data)) => {
                            // One stream reaches the client, whichever workers made it: a
                            // second worker's schema is dropped only when it is the one
                            // already sent, and nothing else of it passes before it.
                            let kind = message_kind(&data);
                            if st.schema_again {
                                st.schema_again = false;
                                let same = kind == MessageKind::Schema
                                    && st.schema_sent.as_ref() == Some(&data.data_header);
                                if same {
                                    continue;
                                }
                                st.current = None;
                                return Some((Err(spliced()), st));
                            }
                            match kind {
                                MessageKind::Schema if st.schema_sent.is_none() => {
                                    st.schema_sent = Some(data.data_header.clone());
                                }
                                // Batches, dictionaries, a second schema: the client has
                                // more than a schema now, so the query cannot start over.
                                _ => st.data_sent = true,
                            }
                            return Some((Ok(data), st));
                        }
                        // The end: the slot goes with the state.
                        None => return None,
                        Some(Err(status)) => {
                            let err = status_error(&status);
                            if err.kind == ErrorKind::WorkerLost && !st.data_sent && !st.retried {
                                st.retried = true;
                                let lost = st.current.take().map(|a| a.slot.worker.clone());
                                if let Some(worker) = lost {
                                    st.warehouse.lost(&worker);
                                    tracing::warn!(warehouse = %st.warehouse.name, query_id = %st.tracking.id, worker = worker.id, "worker lost before any rows; running the query on another worker");
                                }
                                st.warehouse.requeue(&st.tracking);
                                match st.warehouse.dispatch(&st.ticket, &st.tracking, true).await {
                                    Ok(attempt) => {
                                        st.current = Some(attempt);
                                        // The new worker starts with its schema: dropped if
                                        // the client has it already.
                                        st.schema_again = st.schema_sent.is_some();
                                        continue;
                                    }
                                    Err(e) => return Some((Err(e), st)),
                                }
                            }
                            if err.kind == ErrorKind::WorkerLost {
                                if let Some(a) = st.current.as_ref() {
                                    st.warehouse.lost(&a.slot.worker);
                                }
                            }
                            st.current = None;
                            return Some((Err(err), st));
                        }
                    }
                }
            },
        )))
    }

    /// A slot, then the worker's answer stream. A worker that cannot be reached before it
    /// answers is retired and another one tried (a few times at most).
    async fn dispatch(
        self: &Arc<Self>,
        ticket: &Ticket,
        tracking: &Tracking,
        mut retry: bool,
    ) -> Result<Attempt, QueryError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = self.acquire(tracking, retry).await?;
            let mut client = slot.worker.client.clone();
            let mut request = tonic::Request::new(ticket.clone());
            request
                .metadata_mut()
                .insert("authorization", self.bearer.clone());
            match client.do_get(request).await {
                Ok(response) => {
                    return Ok(Attempt {
                        stream: response.into_inner(),
                        slot,
                    })
                }
                Err(status) => {
                    let err = status_error(&status);
                    if err.kind == ErrorKind::WorkerLost {
                        self.lost(&slot.worker);
                        if attempt < ATTEMPTS {
                            tracing::warn!(warehouse = %self.name, query_id = %tracking.id, worker = slot.worker.id, attempt, "worker unreachable; trying another worker");
                            drop(slot);
                            self.requeue(tracking);
                            retry = true;
                            continue;
                        }
                    }
                    return Err(err);
                }
            }
        }
    }

    /// A worker failed a call: take it out of admission and have it replaced.
    pub(crate) fn lost(&self, worker: &Arc<WorkerHandle>) {
        if self.lock().config.is_static() {
            worker.state.store(DOWN, Ordering::Relaxed);
        } else {
            worker.state.store(DRAINING, Ordering::Relaxed);
            worker.retire.cancel();
        }
        self.wake.notify_one();
    }

    /// Wait (FIFO, bounded) for a slot on the least-loaded ready worker.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        tracking: &Tracking,
        retry: bool,
    ) -> Result<Slot, QueryError> {
        let (id, grant, timeout) = {
            let mut state = self.lock();
            if self.stopping.is_cancelled() {
                return Err(shutting_down());
            }
            let max = state.config.max_concurrency_per_worker.max(1);
            if state.queue.is_empty() || retry {
                if let Some(worker) = least_loaded(&state.workers, max) {
                    worker.running.fetch_add(1, Ordering::Relaxed);
                    mark_started(&mut state, &tracking.id, worker.id);
                    return Ok(Slot {
                        warehouse: self.clone(),
                        worker,
                    });
                }
            }
            if state.queue.len() >= state.config.max_queued && !retry {
                return Err(QueryError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "warehouse {:?} is busy: {} queries are already waiting; try again shortly",
                        self.name,
                        state.queue.len()
                    ),
                ));
            }
            let (tx, rx) = oneshot::channel();
            state.next_waiter += 1;
            let id = state.next_waiter;
            let waiter = Waiter {
                id,
                since: Instant::now(),
                grant: tx,
            };
            // A query run again after its worker was lost was admitted before everyone
            // waiting: it goes first.
            if retry {
                state.queue.push_front(waiter);
            } else {
                state.queue.push_back(waiter);
            }
            (id, rx, state.config.queue_timeout)
        };
        self.wake.notify_one();
        let leave = |warehouse: &Self| {
            let mut state = warehouse.lock();
            state.queue.retain(|w| w.id != id);
        };
        match tokio::time::timeout(timeout, grant).await {
            Ok(Ok(worker)) => {
                mark_started(&mut self.lock(), &tracking.id, worker.id);
                Ok(Slot {
                    warehouse: self.clone(),
                    worker,
                })
            }
            Ok(Err(_)) => Err(shutting_down()),
            Err(_) => {
                leave(self);
                Err(QueryError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "no worker of warehouse {:?} became free within {:?}",
                        self.name, timeout
                    ),
                ))
            }
        }
    }

    /// Hand free slots to the queries at the head of the queue.
    pub(crate) fn pump(self: &Arc<Self>) {
        let mut state = self.lock();
        let max = state.config.max_concurrency_per_worker.max(1);
        while !state.queue.is_empty() {
            let Some(worker) = least_loaded(&state.workers, max) else {
                break;
            };
            let Some(waiter) = state.queue.pop_front() else {
                break;
            };
            worker.running.fetch_add(1, Ordering::Relaxed);
            if let Err(worker) = waiter.grant.send(worker) {
                // The query gave up waiting (cancelled): the slot stays free.
                release(&worker);
            }
        }
    }

    pub(crate) fn record(&self, state: &mut PoolState, reason: &'static str, detail: String) {
        *state.scale_events.entry(reason).or_default() += 1;
        tracing::info!(warehouse = %self.name, reason, "{detail}");
    }
}

/// A query's claim on one worker slot; released on drop.
pub(crate) struct Slot {
    warehouse: Arc<Warehouse>,
    worker: Arc<WorkerHandle>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        release(&self.worker);
        self.warehouse.pump();
        self.warehouse.wake.notify_one();
    }
}

pub(crate) fn release(worker: &WorkerHandle) {
    if worker.running.fetch_sub(1, Ordering::Relaxed) == 1 {
        *worker.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

fn least_loaded(workers: &[Arc<WorkerHandle>], max: usize) -> Option<Arc<WorkerHandle>> {
    workers
        .iter()
        .filter(|w| w.takes_queries(max))
        .min_by_key(|w| w.running.load(Ordering::Relaxed))
        .cloned()
}

fn mark_started(state: &mut PoolState, query: &str, worker: u64) {
    if let Some(q) = state.queries.get_mut(query) {
        let now = Instant::now();
        q.meta.progress.started(worker, now - q.queued_at);
        q.started = Some((now, worker));
    }
}

fn shutting_down() -> QueryError {
    QueryError::new(ErrorKind::Unavailable, "the warehouse is shutting down")
}

/// A query's entry in `system.queries`, removed when its stream ends.
pub(crate) struct Tracking {
    warehouse: Arc<Warehouse>,
    id: String,
}

impl Tracking {
    pub(crate) fn new(warehouse: Arc<Warehouse>, meta: QueryMeta) -> Self {
        let id = meta.id.clone();
        warehouse.lock().queries.insert(
            id.clone(),
            Tracked {
                meta,
                submitted: SystemTime::now(),
                queued_at: Instant::now(),
                started: None,
            },
        );
        Self { warehouse, id }
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.warehouse.lock().queries.remove(&self.id);
    }
}

impl Warehouse {
    fn requeue(&self, tracking: &Tracking) {
        if let Some(q) = self.lock().queries.get_mut(&tracking.id) {
            q.started = None;
            q.queued_at = Instant::now();
        }
    }
}

struct Attempt {
    stream: tonic::Streaming<FlightData>,
    /// Held for as long as the stream lives.
    slot: Slot,
}

struct Retrying {
    progress: Arc<Progress>,
    warehouse: Arc<Warehouse>,
    ticket: Ticket,
    tracking: Tracking,
    current: Option<Attempt>,
    /// The schema message passed on (its header), if one was.
    schema_sent: Option<bytes::Bytes>,
    /// More than the schema was passed on: a lost worker can no longer be retried.
    data_sent: bool,
    retried: bool,
    /// After a retry that had passed the schema on: the new worker's first message must be
    /// that same schema (and is dropped).
    schema_again: bool,
}

/// A retry whose new worker does not start with the schema already sent (never expected:
/// both run the same plan).
fn spliced() -> QueryError {
    QueryError::new(
        ErrorKind::WorkerLost,
        "the worker running this query stopped, and the one that ran it again answered \
         differently; run the query again",
    )
}

#[derive(PartialEq)]
enum MessageKind {
    Schema,
    Batch,
    Other,
}

fn message_kind(data: &FlightData) -> MessageKind {
    use datafusion::arrow::ipc::MessageHeader;
    match datafusion::arrow::ipc::root_as_message(&data.data_header).map(|m| m.header_type()) {
        Ok(MessageHeader::Schema) => MessageKind::Schema,
        Ok(MessageHeader::RecordBatch) => MessageKind::Batch,
        _ => MessageKind::Other,
    }
}

/// The PEM files of a warehouse's worker TLS, read for the distributed channels.
fn channel_tls(tls: &WorkerTls) -> Result<crate::channels::ChannelTls, QueryError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            QueryError::new(
                ErrorKind::InvalidValue,
                format!("worker TLS file {}: {e}", path.display()),
            )
        })
    };
    Ok(crate::channels::ChannelTls {
        ca: read(&tls.ca)?,
        domain: tls.domain.clone(),
        identity: match &tls.identity {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        },
    })
}

fn auth_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
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
