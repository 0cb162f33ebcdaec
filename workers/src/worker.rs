//! The worker process (`sluice worker`): an internal Arrow Flight service that executes
//! the physical plans the gateway sends and streams the record batches back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_distributed::{DistributedExt, WorkerQueryContext, WorkerSessionBuilder};
use futures::{Stream, StreamExt, TryStreamExt};
use planner::{ErrorKind, QueryError};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::channels::Channels;
use crate::data_cache::DataCache;
use crate::protocol::{
    profile_message, ExecuteRequest, WorkerReport, ERROR_KIND_HEADER, MAX_MESSAGE_BYTES,
    READY_PREFIX, STATUS_ACTION,
};

/// How a worker process is started.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Address of the internal Flight endpoint (port 0 picks one; it is printed).
    pub listen: SocketAddr,
    /// The secret every call must present.
    pub secret: String,
    /// Memory the worker's queries may use together (DataFusion memory pool), in bytes.
    pub memory_limit: Option<usize>,
    /// Exit when standard input closes: a spawned worker's stdin is a pipe from its
    /// gateway, so the worker goes away with the gateway, even after `kill -9`.
    pub exit_with_parent: bool,
    /// Parallelism inside one query.
    pub target_partitions: usize,
    /// The cache of remote Parquet bytes on local disk, if any.
    pub data_cache: Option<crate::data_cache::DataCacheConfig>,
    /// TLS on the internal endpoint (remote workers): certificate, key, and the CA of
    /// gateway client certificates to require (mutual TLS).
    pub tls: Option<WorkerServerTls>,
}

/// TLS of a worker's endpoint.
#[derive(Debug, Clone)]
pub struct WorkerServerTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
    /// The CA other workers' certificates are checked against when this worker reads
    /// from their distributed endpoints (default: its own certificate, for a shared
    /// self-signed one); with `client_ca` set, this worker presents its own certificate.
    pub peer_ca: Option<std::path::PathBuf>,
    /// The name other workers' certificates carry (default: each address's host).
    pub peer_domain: Option<String>,
}

impl WorkerServerTls {
    fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(&self.cert)?, read(&self.key)?),
        );
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }

    /// TLS of this worker's connections to other workers' distributed endpoints.
    fn peer_config(&self) -> Result<crate::channels::ChannelTls, String> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(crate::channels::ChannelTls {
            ca: read(self.peer_ca.as_deref().unwrap_or(&self.cert))?,
            domain: self.peer_domain.clone(),
            identity: match &self.client_ca {
                Some(_) => Some((read(&self.cert)?, read(&self.key)?)),
                None => None,
            },
        })
    }
}

/// The share of its worker's memory one query may use: the worker's pool bounds the
/// process, this bounds each query, so that one hungry query fails alone instead of
/// starving the others.
const QUERY_MEMORY_SHARE: f64 = 0.75;

/// Run a worker until it is told to stop (or its gateway goes away).
pub async fn run(options: WorkerOptions) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Object storage as the gateway reaches it (its options arrive in the environment).
    let storage = planner::storage::Registry::new(planner::storage::StorageOptions::from_env());
    let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(storage);
    if let Some(limit) = options.memory_limit {
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let runtime = runtime.build_arc()?;
    let config = SessionConfig::new().with_target_partitions(options.target_partitions.max(1));
    let ctx = SessionContext::new_with_config_rt(config, runtime.clone());
    // The PostgreSQL functions a data query may call (format_type, …), as in the gateway.
    let functions = planner::pg_catalog::functions::builtin().await?;
    for function in &functions {
        ctx.register_udf(function.clone());
    }
    let query_memory = options
        .memory_limit
        .map(|limit| ((limit as f64) * QUERY_MEMORY_SHARE) as usize);

    let data_cache = match &options.data_cache {
        Some(config) => Some(Arc::new(DataCache::open(config).map_err(|e| {
            format!("data cache directory {}: {e}", config.dir.display())
        })?)),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let distributed = serve_distributed(
        &options,
        TaskSessions {
            runtime: runtime.clone(),
            functions: functions.into_iter().map(Arc::new).collect(),
            channels: crate::channels::Channels::new(
                &options.secret,
                options.tls.as_ref().map(|t| t.peer_config()).transpose()?,
            )?,
            query_memory,
            shares: Default::default(),
        },
    )?;
    // The gateway reads this line to learn where to connect.
    println!("{READY_PREFIX}{addr} {distributed}");
    tracing::info!(%addr, %distributed, pid = std::process::id(), "worker listening");

    let secret = Arc::new(format!("Bearer {}", options.secret));
    let service = FlightServiceServer::new(WorkerService {
        ctx,
        runtimes: Arc::new(Runtimes::new(options.target_partitions)),
        query_memory,
        stats: Arc::default(),
        data_cache,
        distributed_port: distributed.port(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        move |request: Request<()>| check_secret(&secret, request),
    );

    let stop = async move {
        if options.exit_with_parent {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            tracing::info!("gateway went away; worker exiting");
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    // The builder's `tcp_nodelay` applies only to listeners tonic binds itself: set it on
    // each accepted connection, or small responses wait out the peer's delayed ACK (~40 ms).
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|socket| {
        socket.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        server = server.tls_config(tls.server_config()?)?;
    }
    server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    Ok(())
}

/// How a worker builds the session each of its distributed tasks runs in: the worker's
/// runtime (object stores, memory pool) with the query's memory share, sluice's functions
/// and plan codec, and the worker's own connections to other workers.
pub(crate) struct TaskSessions {
    pub(crate) runtime: Arc<RuntimeEnv>,
    pub(crate) functions: Vec<Arc<ScalarUDF>>,
    pub(crate) channels: Channels,
    /// Memory one query may use on this worker, if limited.
    pub(crate) query_memory: Option<usize>,
    /// Each running query's memory share, by the query's id.
    pub(crate) shares: Mutex<HashMap<String, Weak<QueryPool>>>,
}

impl TaskSessions {
    fn runtime_for(&self, query: Option<&str>) -> Arc<RuntimeEnv> {
        let Some(limit) = self.query_memory else {
            return self.runtime.clone();
        };
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares.retain(|_, pool| pool.strong_count() > 0);
        let existing = query.and_then(|q| shares.get(q)).and_then(Weak::upgrade);
        let pool = existing.unwrap_or_else(|| {
            let pool = Arc::new(QueryPool::new(self.runtime.memory_pool.clone(), limit));
            if let Some(q) = query {
                shares.insert(q.to_string(), Arc::downgrade(&pool));
            }
            pool
        });
        let mut runtime = (*self.runtime).clone();
        runtime.memory_pool = pool;
        Arc::new(runtime)
    }
}

#[async_trait]
impl WorkerSessionBuilder for TaskSessions {
    async fn build_session_state(
        &self,
        ctx: WorkerQueryContext,
    ) -> Result<SessionState, DataFusionError> {
        let query = ctx
            .headers
            .get(crate::protocol::QUERY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let builder: SessionStateBuilder = ctx
            .builder
            .with_runtime_env(self.runtime_for(query.as_deref()))
            .with_distributed_user_codec(planner::codec::SluiceCodec)
            .with_distributed_channel_resolver(self.channels.clone())
            // A yield point between the batches of every operator of a task, as on the
            // one-worker path: a task's reader going away (cancel) stops it at the next one.
            .with_distributed_worker_plan_rewrite_handler(
                |ev: datafusion_distributed::WorkerPlanRewriteEvent| {
                    crate::yielding::wrap(ev.plan)
                        .map(datafusion_distributed::WorkerPlanRewriteEventResponse::new)
                },
            );
        let mut state = builder.build();
        use datafusion::execution::FunctionRegistry;
        for function in &self.functions {
            state.register_udf(function.clone())?;
        }
        Ok(state)
    }
}

/// The worker's distributed endpoint (the library's worker service: the stages of
/// distributed queries), on the same host as the Flight endpoint, behind the same secret
/// and TLS. It runs on a runtime of its own, so that its tasks never delay the status
/// answers the gateway's health checks wait for. Returns the address it listens on.
fn serve_distributed(
    options: &WorkerOptions,
    sessions: TaskSessions,
) -> Result<SocketAddr, Box<dyn std::error::Error + Send + Sync>> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(options.listen.ip(), 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.target_partitions.max(1))
        .thread_name("sluice-stage")
        .thread_stack_size(planner::limits::THREAD_STACK)
        .enable_all()
        .build()?;
    let secret = Arc::new(format!("Bearer {}", options.secret));
    let runtime_env = sessions.runtime.clone();
    let worker = datafusion_distributed::Worker::from_session_builder(sessions)
        .with_runtime_env(runtime_env);
    let service = tonic::service::interceptor::InterceptedService::new(
        worker.into_worker_server(),
        move |request: Request<()>| check_secret(&secret, request),
    );
    let tls = options
        .tls
        .as_ref()
        .map(|t| t.server_config())
        .transpose()?;
    std::thread::Builder::new()
        .name("sluice-stages".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "distributed endpoint: cannot listen");
                        return;
                    }
                };
                let incoming =
                    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|socket| {
                        socket.inspect(|s| {
                            let _ = s.set_nodelay(true);
                        })
                    });
                let mut server = tonic::transport::Server::builder();
                if let Some(tls) = tls {
                    server = match server.tls_config(tls) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "distributed endpoint: bad TLS settings");
                            return;
                        }
                    };
                }
                if let Err(e) = server
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await
                {
                    tracing::error!(error = %e, "distributed endpoint stopped");
                }
            })
        })?;
    Ok(addr)
}

#[allow(clippy::result_large_err)]
fn check_secret(expected: &str, request: Request<()>) -> Result<Request<()>, Status> {
    let presented = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(presented.ct_eq(expected.as_bytes())) {
        Ok(request)
    } else {
        Err(Status::unauthenticated("bad or missing worker secret"))
    }
}

struct WorkerService {
    ctx: SessionContext,
    /// Where queries run: runtimes of their own (see [`Runtimes`]), so that the gRPC
    /// server (status checks, cancellations, new calls) answers while every query thread
    /// is busy.
    runtimes: Arc<Runtimes>,
    /// Memory one query may use ([`QUERY_MEMORY_SHARE`] of the limit), if limited.
    query_memory: Option<usize>,
    stats: Arc<Stats>,
    data_cache: Option<Arc<DataCache>>,
    /// The port of the distributed endpoint (reported in the status).
    distributed_port: u16,
}

#[derive(Debug, Default)]
struct Stats {
    running: AtomicU64,
    executed: AtomicU64,
}

/// A cancelled query still computing after this long is reported as stuck.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Idle query runtimes kept for reuse.
const IDLE_RUNTIMES: usize = 16;

/// The runtimes queries run on: one per running query, so that a query's tasks (and the
/// ones DataFusion spawns for its partitions) are known to be gone exactly when its
/// runtime has none left. A finished query's runtime is reused; a cancelled one's is
/// watched until its tasks stop, which DataFusion does only between batches.
struct Runtimes {
    threads: usize,
    idle: std::sync::Mutex<Vec<tokio::runtime::Runtime>>,
    /// Runtimes whose query ended but whose tasks may still run: (runtime, cancelled at).
    settling: std::sync::Mutex<Vec<(tokio::runtime::Runtime, Option<std::time::Instant>)>>,
}

impl Runtimes {
    fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            idle: Default::default(),
            settling: Default::default(),
        }
    }

    fn take(&self) -> std::io::Result<tokio::runtime::Runtime> {
        self.settle();
        if let Some(rt) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(rt);
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("sluice-query")
            .thread_stack_size(planner::limits::THREAD_STACK)
            .enable_all()
            .build()
    }

    /// A query's runtime after its call ended (`cancelled`: before its result did).
    fn give_back(&self, rt: tokio::runtime::Runtime, cancelled: bool) {
        let at = cancelled.then(std::time::Instant::now);
        self.settling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((rt, at));
        self.settle();
    }

    /// Reuse the runtimes whose tasks are all gone; the number of cancelled queries still
    /// computing after [`STUCK_AFTER`].
    fn settle(&self) -> u64 {
        let mut settling = self.settling.lock().unwrap_or_else(|p| p.into_inner());
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut stuck = 0;
        let mut still = Vec::new();
        for (rt, cancelled) in settling.drain(..) {
            if rt.metrics().num_alive_tasks() == 0 {
                if idle.len() < IDLE_RUNTIMES {
                    idle.push(rt);
                } else {
                    rt.shutdown_background();
                }
            } else {
                if cancelled.is_some_and(|at| at.elapsed() >= STUCK_AFTER) {
                    stuck += 1;
                }
                still.push((rt, cancelled));
            }
        }
        *settling = still;
        stuck
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        // Dropping a runtime may not block inside another: let their threads go.
        for rt in self
            .idle
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            rt.shutdown_background();
        }
        for (rt, _) in self
            .settling
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            rt.shutdown_background();
        }
    }
}

/// Counts a query as running while its stream lives.
struct Running(Arc<Stats>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a query's answer stream is dropped: its task is aborted (if the result did not
/// reach its end) and its runtime goes back to the pool to settle.
struct QueryGuard {
    task: tokio::task::JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
    runtimes: Arc<Runtimes>,
    _running: Running,
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        let cancelled = !self.task.is_finished();
        self.task.abort();
        if let Some(rt) = self.runtime.take() {
            self.runtimes.give_back(rt, cancelled);
        }
    }
}

impl WorkerService {
    /// The context a query runs in: the worker's, with the query's own memory share.
    fn task_context(&self) -> Arc<TaskContext> {
        let Some(limit) = self.query_memory else {
            return self.ctx.task_ctx();
        };
        let state = self.ctx.state();
        let mut runtime = (*state.runtime_env().clone()).clone();
        runtime.memory_pool = Arc::new(QueryPool::new(runtime.memory_pool.clone(), limit));
        Arc::new(TaskContext::from(&state).with_runtime(Arc::new(runtime)))
    }

    fn report(&self) -> WorkerReport {
        WorkerReport {
            running: self.stats.running.load(Ordering::Relaxed),
            memory_reserved: self.ctx.runtime_env().memory_pool.reserved() as u64,
            rss_bytes: rss_bytes(),
            executed: self.stats.executed.load(Ordering::Relaxed),
            stuck: self.runtimes.settle(),
            data_cache_hits: self.cache_stat(|c| c.stats.hits.load(Ordering::Relaxed)),
            data_cache_misses: self.cache_stat(|c| c.stats.misses.load(Ordering::Relaxed)),
            data_cache_bytes: self.cache_stat(DataCache::bytes),
            distributed_port: Some(u32::from(self.distributed_port)),
        }
    }

    fn cache_stat(&self, f: impl Fn(&DataCache) -> u64) -> Option<u64> {
        self.data_cache.as_deref().map(f)
    }
}

/// This process's resident memory, from `/proc/self/statm` (0 where there is none).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// One query's view of its worker's memory pool, capped at its share.
#[derive(Debug)]
pub(crate) struct QueryPool {
    worker: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryPool {
    pub(crate) fn new(worker: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            worker,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query share of {} bytes of {}", self.limit, self.worker)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "sluice_query"
    }
    fn register(&self, consumer: &MemoryConsumer) {
        self.worker.register(consumer)
    }
    fn unregister(&self, consumer: &MemoryConsumer) {
        self.worker.unregister(consumer)
    }
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.worker.grow(reservation, additional)
    }
    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.worker.shrink(reservation, shrink)
    }
    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let used = self.used.fetch_add(additional, Ordering::Relaxed) + additional;
        if used > self.limit {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than the {} MiB one query may use on a worker (worker_memory_limit {} MiB): filter or aggregate earlier, or raise the limit",
                self.limit / (1024 * 1024),
                ((self.limit as f64) / QUERY_MEMORY_SHARE) as usize / (1024 * 1024)
            )));
        }
        if let Err(e) = self.worker.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }
    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A gRPC status carrying the error's kind, so the gateway maps it without guessing.
pub fn error_status(err: &QueryError) -> Status {
    let code = match err.kind {
        ErrorKind::Cancelled => tonic::Code::Cancelled,
        ErrorKind::ResourcesExhausted => tonic::Code::ResourceExhausted,
        ErrorKind::Internal => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    };
    let mut status = Status::new(code, err.message.clone());
    status.metadata_mut().insert(
        ERROR_KIND_HEADER,
        MetadataValue::from_static(err.kind.as_str()),
    );
    status
}

#[tonic::async_trait]
impl FlightService for WorkerService {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let request = ExecuteRequest::decode(request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad execute request: {e}")))?;
        let task_ctx = self.task_context();
        let plan =
            planner::codec::decode_plan(&request.plan, &task_ctx).map_err(|e| error_status(&e))?;
        // EXPLAIN ANALYZE prints the plan that ran, every node of it (as text or as
        // PostgreSQL's JSON): it runs without the yield points, which are not the query's
        // (it stops at DataFusion's own between batches, and a stuck one is replaced).
        let analyze = plan.name() == "AnalyzeExec";
        let plan = match &self.data_cache {
            Some(cache) => crate::data_cache::attach(plan, cache, &task_ctx),
            None => Ok(plan),
        }
        .and_then(|plan| match analyze {
            true => Ok(plan),
            false => crate::yielding::wrap(plan),
        })
        .map_err(|e| error_status(&QueryError::from(e)))?;
        let query_id = request.query_id;
        tracing::debug!(%query_id, "executing");
        self.stats.executed.fetch_add(1, Ordering::Relaxed);
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let running = Running(self.stats.clone());
        // The query runs on the execution runtime; its messages come here through a small
        // channel. When the gateway drops the call (cancel, client gone, timeout) the
        // receiver goes, and the task is aborted: it stops at its next batch boundary.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<FlightData, Status>>(2);
        let runtime = self.runtimes.take().map_err(|e| {
            error_status(&QueryError::new(
                ErrorKind::ResourcesExhausted,
                format!("no thread for the query: {e}"),
            ))
        })?;
        let task = runtime.spawn(async move {
            let ran = plan.clone();
            let stream = match execute_stream(plan, task_ctx) {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send(Err(error_status(&QueryError::from(e)))).await;
                    return;
                }
            };
            let schema = transfer_schema(&stream.schema());
            let batch_schema = schema.clone();
            let batches = stream.map(move |result| {
                result
                    .map_err(|e| {
                        let err = QueryError::from(e);
                        tracing::debug!(%query_id, error = %err, "query failed");
                        FlightError::Tonic(Box::new(error_status(&err)))
                    })
                    .and_then(|batch| {
                        for_transfer(batch, &batch_schema).map_err(FlightError::Arrow)
                    })
            });
            let mut flight = FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .build(batches)
                .map_err(|e| match e {
                    FlightError::Tonic(status) => *status,
                    other => error_status(&QueryError::internal(other.to_string())),
                });
            while let Some(item) = flight.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return; // the gateway went away, or the query failed
                }
            }
            // The plan's profile follows the last batch: a message with no Arrow data,
            // only app_metadata (see `protocol`).
            if let Some(profile) = planner::profile::Profile::of(&ran).to_json() {
                let _ = tx.send(Ok(profile_message(profile))).await;
            }
        });
        let abort = QueryGuard {
            task,
            runtime: Some(runtime),
            runtimes: self.runtimes.clone(),
            _running: running,
        };
        let stream = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
            let item = rx.recv().await?;
            Some((item, (rx, abort)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        match request.into_inner().r#type.as_str() {
            // A cheap liveness probe for the pool.
            STATUS_ACTION => {
                let body = self.report().encode_to_vec();
                Ok(Response::new(Box::pin(futures::stream::once(async {
                    Ok(arrow_flight::Result { body: body.into() })
                }))))
            }
            other => Err(Status::unimplemented(format!("unknown action {other:?}"))),
        }
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("not used by sluice workers"))
    }
}

/// The schema batches travel with: view types become their plain forms.
///
/// DataFusion reads Parquet strings as `Utf8View`. A view array that was sliced (by a
/// LIMIT, a filter or batch coalescing) still references its parent's whole data buffers,
/// and Arrow IPC writes those buffers in full: a 1 GB scan turned into tens of GB on the
/// wire. Casting to `Utf8` copies exactly the bytes the rows use, and every client reads
/// plain strings.
pub fn transfer_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Arc::new(
                    Field::new(f.name(), transfer_type(f.data_type()), f.is_nullable())
                        .with_metadata(f.metadata().clone()),
                )
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

fn transfer_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(field) => DataType::List(Arc::new(Field::new(
            field.name(),
            transfer_type(field.data_type()),
            field.is_nullable(),
        ))),
        other => other.clone(),
    }
}

/// Cast a batch's columns to `schema` (see [`transfer_schema`]); untouched columns are
/// passed through without copying.
pub fn for_transfer(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray, StringViewArray};

    #[test]
    fn calls_without_the_secret_are_refused() {
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(v) = value {
                request
                    .metadata_mut()
                    .insert("authorization", v.parse().expect("ascii"));
            }
            check_secret("Bearer s3cret", request)
        };
        assert!(with(Some("Bearer s3cret")).is_ok());
        let refused = with(Some("Bearer wrong")).expect_err("wrong secret");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains("s3cret"));
        assert!(with(None).is_err());
        assert!(with(Some("Bearer s3cre")).is_err());
    }

    #[test]
    fn sliced_views_are_compacted() {
        let long: Vec<String> = (0..10_000)
            .map(|i| format!("a fairly long string value number {i}"))
            .collect();
        let array = StringViewArray::from_iter_values(long.iter());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).expect("batch");
        let sliced = batch.slice(0, 2);
        let out = for_transfer(sliced, &transfer_schema(&schema)).expect("cast");
        let strings = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8");
        assert_eq!(strings.len(), 2);
        assert_eq!(strings.value(1), "a fairly long string value number 1");
        // Only the two strings' bytes remain, not the parent's ~400 KB of data.
        assert!(
            out.get_array_memory_size() < 4096,
            "{}",
            out.get_array_memory_size()
        );
    }
}
