//! One query over many workers (`datafusion-distributed`): where a warehouse's workers are
//! for the distributed planner, how the gateway and the workers reach each other's
//! distributed endpoints, and how the gateway runs a distributed plan.
//!
//! ```text
//!  gateway: plan ─► Warehouse::distribute ─► DistributedExec (head stage runs here)
//!                                                 │ SetPlan / ExecuteTask (gRPC, secret, TLS)
//!  worker A ◄─────────────────────────────────────┼──► worker B ◄──► worker C
//!     (each worker: a second gRPC endpoint, the library's Worker service, on a runtime of
//!      its own; its tasks read from each other's tasks over the same endpoints)
//! ```
//!
//! - Admission is unchanged: a distributed query takes a slot as any other (queue, timeout,
//!   `max_queued`). Every worker that gets a task of it counts it as load while it runs
//!   (`system.workers.running`, and the autoscaler's view of busy workers).
//! - A worker lost mid-query ends the query with `WorkerLost` (57P02); before the first
//!   row the query runs again once, over the workers still answering.
//! - Dropping the result stream (cancel, timeout, client gone) drops the head stage, which
//!   ends the coordinator's streams to every task; each worker stops its tasks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{ChannelResolver, DistributedExt, WorkerChannel, WorkerResolver};
use futures::StreamExt;
use planner::distributed::{DistributedPlan, Distributor};
use planner::{ErrorKind, QueryError};
use url::Url;

use crate::channels::Channels;
use crate::pool::{BatchStream, QueryMeta, Tracking, Warehouse, WorkerHandle, READY};

/// The warehouse's ready workers, for the distributed planner (how many tasks a stage
/// may have) and its routing (which worker runs each task).
struct ReadyWorkers(Weak<Warehouse>);

impl WorkerResolver for ReadyWorkers {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.upgrade().map(|w| w.ready_urls()).unwrap_or_default())
    }
}

/// One query's connections: through the warehouse's [`Channels`], noting each worker the
/// query reaches (it runs a task there) so that the worker counts the query as load until
/// it ends, and `system.queries` and the history can say where it ran.
#[derive(Clone)]
struct Recording {
    channels: Channels,
    load: Arc<Load>,
}

#[async_trait]
impl ChannelResolver for Recording {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        self.load.reached(url);
        self.channels.get_worker_client_for_url(url).await
    }
}

/// The workers a distributed query has reached, each holding one unit of its load until
/// the query ends.
pub(crate) struct Load {
    warehouse: Weak<Warehouse>,
    state: Mutex<LoadState>,
}

#[derive(Default)]
struct LoadState {
    workers: Vec<Arc<WorkerHandle>>,
    urls: Vec<Url>,
    ended: bool,
    /// Where `system.queries` and the history read the workers from.
    progress: Option<Arc<crate::pool::Progress>>,
}

impl Load {
    fn new(warehouse: &Arc<Warehouse>) -> Self {
        Self {
            warehouse: Arc::downgrade(warehouse),
            state: Mutex::default(),
        }
    }

    fn reached(&self, url: &Url) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.ended || state.urls.contains(url) {
            return;
        }
        state.urls.push(url.clone());
        let Some(warehouse) = self.warehouse.upgrade() else {
            return;
        };
        if let Some(worker) = warehouse.worker_at(url) {
            worker.running.fetch_add(1, Ordering::Relaxed);
            if let Some(progress) = &state.progress {
                progress.add_worker(worker.id);
            }
            state.workers.push(worker);
        }
    }

    fn report_to(&self, progress: Arc<crate::pool::Progress>) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress = Some(progress);
    }

    /// The query ended: the workers it reached are free of it.
    fn end(&self) {
        let workers = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.ended = true;
            std::mem::take(&mut state.workers)
        };
        if workers.is_empty() {
            return;
        }
        for worker in &workers {
            crate::pool::release(worker);
        }
        if let Some(warehouse) = self.warehouse.upgrade() {
            warehouse.pump();
            warehouse.wake.notify_one();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.end();
    }
}

/// A query's distributed plan, ready to run on a warehouse.
pub struct Distributed {
    pub plan: DistributedPlan,
    load: Arc<Load>,
    /// What it was made from (the one-worker plan, the query's state, its id): a query
    /// run again after a lost worker is split anew, over the workers still there (the
    /// stages' ids must be new to the workers).
    source: Option<(Arc<dyn ExecutionPlan>, SessionState, String)>,
}

impl Distributed {
    /// The schema its batches come with: as a worker sends them (plain strings, not views).
    pub fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        crate::worker::transfer_schema(&self.plan.plan.schema())
    }
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distributed").finish_non_exhaustive()
    }
}

impl Warehouse {
    /// The URLs of the distributed endpoints of the workers that take queries.
    pub(crate) fn ready_urls(&self) -> Vec<Url> {
        self.lock()
            .workers
            .iter()
            .filter(|w| w.state.load(Ordering::Relaxed) == READY)
            .filter_map(|w| w.distributed_url())
            .collect()
    }

    fn worker_at(&self, url: &Url) -> Option<Arc<WorkerHandle>> {
        self.lock()
            .workers
            .iter()
            .find(|w| w.distributed_url().as_ref() == Some(url))
            .cloned()
    }

    /// The distributed plan of `plan` if this warehouse distributes it (its `distributed`
    /// setting, the bytes the plan scans, two or more ready workers); None: it runs on one
    /// worker as always.
    pub async fn distribute(
        self: &Arc<Self>,
        plan: &Arc<dyn ExecutionPlan>,
        state: &SessionState,
        query_id: &str,
    ) -> Result<Option<Distributed>, QueryError> {
        self.distribute_as(plan, state, query_id, true).await
    }

    /// [`Warehouse::distribute`]; `grow`: a big query may start workers (not for EXPLAIN).
    async fn distribute_as(
        self: &Arc<Self>,
        source: &Arc<dyn ExecutionPlan>,
        state: &SessionState,
        query_id: &str,
        grow: bool,
    ) -> Result<Option<Distributed>, QueryError> {
        let (mode, min_bytes) = {
            let state = self.lock();
            (state.config.distributed, state.config.min_distributed_bytes)
        };
        if !planner::distributed::wants_distribution(source, mode, min_bytes) {
            return Ok(None);
        }
        // A query big enough to spread is load enough to grow the warehouse: the workers
        // started now serve the queries after it (this one's tasks are placed on start).
        if grow {
            self.grow_for_distributed();
        }
        let workers = self.ready_urls();
        if workers.len() < 2 {
            return Ok(None);
        }
        let compress = !workers.iter().all(on_this_machine);
        let load = Arc::new(Load::new(self));
        let recording = Recording {
            channels: self.channels.clone(),
            load: load.clone(),
        };
        let Some(mut plan) = planner::distributed::distribute(
            source,
            state,
            mode,
            min_bytes,
            compress,
            Arc::new(ReadyWorkers(Arc::downgrade(self))),
            Arc::new(recording),
        )
        .await?
        else {
            return Ok(None);
        };
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(query_id) {
            headers.insert(crate::protocol::QUERY_HEADER, value);
        }
        plan.state
            .config_mut()
            .set_distributed_passthrough_headers(headers)
            .map_err(QueryError::from)?;
        Ok(Some(Distributed {
            plan,
            load,
            source: Some((source.clone(), state.clone(), query_id.to_string())),
        }))
    }

    /// Run a distributed plan: admitted like any query (one slot, queued while none is
    /// free), its head stage run here, its other stages on the workers. A worker lost
    /// before the first batch: the query runs again once, over the workers still there.
    pub async fn execute_distributed(
        self: &Arc<Self>,
        meta: QueryMeta,
        distributed: Distributed,
    ) -> Result<BatchStream, QueryError> {
        let progress = meta.progress.clone();
        let tracking = Tracking::new(self.clone(), meta);
        let slot = self.acquire(&tracking, false).await?;
        let schema = distributed.schema();
        let Distributed { plan, load, source } = distributed;
        let first = start(&plan, &load, &progress)?;
        let state = Running {
            warehouse: self.clone(),
            plan,
            load,
            progress,
            source,
            stream: Some(first),
            schema,
            sent: false,
            _tracking: tracking,
            _slot: slot,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                loop {
                    let stream = st.stream.as_mut()?;
                    let err = match stream.next().await {
                        None => {
                            st.stream = None;
                            st.load.end();
                            st.progress.set_profile(profile(&st.plan.plan));
                            return None;
                        }
                        Some(Ok(batch)) => {
                            st.sent = true;
                            let batch =
                                crate::worker::for_transfer(batch, &st.schema).map_err(|e| {
                                    QueryError::internal(format!("a distributed result: {e}"))
                                });
                            return Some((batch, st));
                        }
                        Some(Err(e)) => distributed_error(e),
                    };
                    st.stream = None;
                    st.load.end();
                    if err.kind != ErrorKind::WorkerLost {
                        return Some((Err(err), st));
                    }
                    // Take the silent workers out of admission at once.
                    st.warehouse.probe().await;
                    if st.sent {
                        return Some((Err(err), st));
                    }
                    // No row reached the client: split the query anew over the workers
                    // still there and run it again, once.
                    let Some((source, state, id)) = st.source.take() else {
                        return Some((Err(err), st));
                    };
                    tracing::warn!(warehouse = %st.warehouse.name(), error = %err.message, "a worker was lost before any rows; running the distributed query again");
                    let again = match st
                        .warehouse
                        .distribute_as(&source, &state, &id, false)
                        .await
                    {
                        Ok(Some(again)) => again,
                        Ok(None) => return Some((Err(err), st)),
                        Err(e) => return Some((Err(e), st)),
                    };
                    match start(&again.plan, &again.load, &st.progress) {
                        Ok(stream) => {
                            st.plan = again.plan;
                            st.load = again.load;
                            st.stream = Some(stream);
                        }
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            },
        )))
    }
}

struct Running {
    warehouse: Arc<Warehouse>,
    plan: DistributedPlan,
    load: Arc<Load>,
    progress: Arc<crate::pool::Progress>,
    /// Taken by the one retry.
    source: Option<(Arc<dyn ExecutionPlan>, SessionState, String)>,
    stream: Option<datafusion::execution::SendableRecordBatchStream>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// A batch reached the client: a lost worker can no longer be retried.
    sent: bool,
    _tracking: Tracking,
    _slot: crate::pool::Slot,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Cancelled, timed out, or the client went away: the workers are free of it now
        // (dropping the head stage ends every task's stream).
        self.stream = None;
        self.load.end();
    }
}

/// Start the head stage (which starts every other stage on its workers), telling the
/// query's progress its shape and, as its tasks reach them, its workers.
fn start(
    plan: &DistributedPlan,
    load: &Load,
    progress: &Arc<crate::pool::Progress>,
) -> Result<datafusion::execution::SendableRecordBatchStream, QueryError> {
    let (stages, tasks) = plan.shape();
    progress.distributed(stages, tasks);
    load.report_to(progress.clone());
    datafusion::physical_plan::execute_stream(plan.plan.clone(), plan.state.task_ctx())
        .map_err(distributed_error)
}

/// Whether a worker's URL is a loopback address (its batches need no compression).
fn on_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// What a distributed query's error means for sluice: a broken connection to a worker (a
/// gRPC status the library could not read back into an error of the query) is a lost
/// worker; anything else is the query's own error, classified as everywhere.
pub fn distributed_error(e: DataFusionError) -> QueryError {
    if lost_worker(&e) {
        return QueryError::new(
            ErrorKind::WorkerLost,
            "a worker running part of this query stopped; the query can be retried",
        );
    }
    QueryError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_connections_are_lost_workers_and_query_errors_stay_theirs() {
        let lost = |e: DataFusionError| distributed_error(e).kind;
        let status = || DataFusionError::External(Box::new(tonic::Status::unavailable("h2 reset")));
        assert_eq!(lost(status()), ErrorKind::WorkerLost);
        assert_eq!(
            lost(DataFusionError::Context(
                "stage 2".into(),
                Box::new(status())
            )),
            ErrorKind::WorkerLost
        );
        assert_eq!(
            lost(DataFusionError::Shared(Arc::new(status()))),
            ErrorKind::WorkerLost
        );
        assert_eq!(
            lost(DataFusionError::Execution(
                "Error connecting to Distributed DataFusion worker on 'http://127.0.0.1:1/': tcp connect error".into()
            )),
            ErrorKind::WorkerLost
        );
        // A query's own error, read back from a worker, keeps its kind.
        assert_eq!(
            lost(DataFusionError::ResourcesExhausted("over the share".into())),
            ErrorKind::ResourcesExhausted
        );
        assert_ne!(
            lost(DataFusionError::Execution("Divide by zero error".into())),
            ErrorKind::WorkerLost
        );
        // The message names no address or transport detail.
        let err = distributed_error(status());
        assert!(!err.message.contains("127.0.0.1") && !err.message.contains("h2"));
    }
}

fn lost_worker(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::External(inner) => {
            inner.downcast_ref::<tonic::Status>().is_some()
                || inner.downcast_ref::<tonic::transport::Error>().is_some()
                || inner
                    .downcast_ref::<DataFusionError>()
                    .is_some_and(lost_worker)
        }
        DataFusionError::Context(_, inner) => lost_worker(inner),
        DataFusionError::Shared(inner) => lost_worker(inner),
        DataFusionError::Execution(message) => {
            message.starts_with("Error connecting to Distributed DataFusion worker")
                || message.starts_with("Error waiting for Distributed DataFusion channel")
        }
        _ => false,
    }
}

/// EXPLAIN's view of a warehouse: the plan it would run.
#[derive(Debug)]
pub struct Explainer(pub Arc<Warehouse>);

#[async_trait]
impl Distributor for Explainer {
    async fn distributed(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        state: &SessionState,
    ) -> Result<Option<DistributedPlan>, QueryError> {
        Ok(self
            .0
            .distribute_as(plan, state, "explain", false)
            .await?
            .map(|d| d.plan))
    }
}

/// The plan of a distributed query that ran, for its profile: its stages (`[Stage n] =>
/// Network…Exec` boundaries) as planned. Its operators carry no metrics: the library
/// collects the tasks' metrics only with its metrics collection on, which sluice turns off
/// (see `planner::distributed`), and the head stage it executes is its own.
fn profile(plan: &Arc<dyn ExecutionPlan>) -> crate::pool::RanPlan {
    crate::pool::RanPlan::Here(plan.clone())
}
