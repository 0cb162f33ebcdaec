//! Distributed planning: one query's physical plan split into stages that run on many of
//! a warehouse's workers at once, with `datafusion-distributed`.
//!
//! ```text
//!  physical plan (as for one worker) ──► worth distributing? (mode, bytes scanned, workers)
//!      no ──► unchanged: one worker runs it, as always
//!      yes ─► DistributedExec ── head stage (runs where the plan is executed: the gateway)
//!                  └─ NetworkShuffle / NetworkCoalesce / NetworkBroadcast ─► stages of tasks,
//!                     each task on one worker, Arrow streamed between them over gRPC
//! ```
//!
//! The decision is made on the finished plan, after authorization and after the result
//! cache has keyed it: distribution changes where a plan runs, never what it reads. Where
//! the workers are and how they are reached (TLS, the worker secret) is the warehouse's
//! business (the `workers` crate); this module only plans.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    ChannelResolver, DistributedExec, DistributedExt, NetworkBoundaryExt, SessionStateBuilderExt,
    WorkerResolver,
};

use crate::codec::SluiceCodec;
use crate::error::QueryError;

/// A warehouse's `distributed` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Distribute queries that scan at least `min_distributed_bytes`.
    #[default]
    Auto,
    /// Every query runs on one worker.
    Off,
    /// Every query that can be split is (tests, benchmarks, warehouses of big queries only).
    Always,
}

impl Mode {
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "off" | "false" => Some(Self::Off),
            "always" | "on" | "true" => Some(Self::Always),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Off => "off",
            Self::Always => "always",
        }
    }
}

/// Whether a plan is big enough to spread over several workers: `Always`, or `Auto` over
/// `min_bytes` of input (whether there are workers to spread it over is the warehouse's
/// business).
pub fn wants_distribution(plan: &Arc<dyn ExecutionPlan>, mode: Mode, min_bytes: u64) -> bool {
    match mode {
        Mode::Off => false,
        Mode::Always => true,
        Mode::Auto => scanned_bytes(plan).is_some_and(|bytes| bytes >= min_bytes),
    }
}

/// Whether a plan is cheap enough to run where it is planned (the gateway) rather than on
/// a worker: the files it scans add up to at most `max_bytes` (none at all when the
/// optimizer answered from statistics, `count(*)`), all of them local (object storage is
/// read through the workers' data cache), and it joins nothing and does not recurse (a
/// join of small tables can still compute for long). `max_bytes` 0: never.
pub fn is_small(plan: &Arc<dyn ExecutionPlan>, max_bytes: u64) -> bool {
    use datafusion::execution::object_store::ObjectStoreUrl;
    if max_bytes == 0 {
        return false;
    }
    let local = ObjectStoreUrl::local_filesystem();
    let (mut small, mut bytes) = (true, 0u64);
    let _ = plan.apply(|node| {
        let name = node.name();
        if name.contains("Join") || name == "RecursiveQueryExec" {
            small = false;
        } else if let Some(config) = file_scan(node) {
            bytes += file_bytes(config);
            small = config.object_store_url == local && bytes <= max_bytes;
        }
        Ok(if small {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    small
}

/// The bytes of the files a plan scans (None: it scans no file), from the file listing
/// the plan was made with.
pub fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut bytes = None;
    let _ = plan.apply(|node| {
        if let Some(config) = file_scan(node) {
            bytes = Some(bytes.unwrap_or(0) + file_bytes(config));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    bytes
}

/// The files a plan node scans, if it is a file scan.
fn file_scan(
    node: &Arc<dyn ExecutionPlan>,
) -> Option<&datafusion::datasource::physical_plan::FileScanConfig> {
    use datafusion::datasource::physical_plan::FileScanConfig;
    use datafusion::datasource::source::DataSourceExec;
    (node.as_ref() as &dyn std::any::Any)
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| {
            (exec.data_source().as_ref() as &dyn std::any::Any).downcast_ref::<FileScanConfig>()
        })
}

/// The bytes a file scan reads: each file's, or the range of it a partition reads.
fn file_bytes(config: &datafusion::datasource::physical_plan::FileScanConfig) -> u64 {
    config
        .file_groups
        .iter()
        .flat_map(|group| group.files())
        .map(|file| match &file.range {
            Some(range) => (range.end - range.start).max(0) as u64,
            None => file.object_meta.size,
        })
        .sum()
}

/// The library's default scan size per partition: a stage gets a task per
/// `target_partitions` of these (up to the number of workers).
const LIBRARY_BYTES_PER_PARTITION: u64 = 16 * 1024 * 1024;

/// How many bytes of files one partition of a leaf stage scans, which sizes the stages:
/// `always` splits everything over every worker; `auto` at least in two tasks once a
/// plan reaches `min_bytes` (and as the library would for bigger ones).
fn bytes_per_partition(mode: Mode, min_bytes: u64, target_partitions: usize) -> usize {
    match mode {
        Mode::Always => 1,
        _ => (min_bytes / (2 * target_partitions.max(1) as u64))
            .clamp(1, LIBRARY_BYTES_PER_PARTITION) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_written_in_the_config() {
        assert_eq!(Mode::parse("auto"), Some(Mode::Auto));
        assert_eq!(Mode::parse("OFF"), Some(Mode::Off));
        assert_eq!(Mode::parse("always"), Some(Mode::Always));
        assert_eq!(Mode::parse("sometimes"), None);
        for mode in [Mode::Auto, Mode::Off, Mode::Always] {
            assert_eq!(Mode::parse(mode.as_str()), Some(mode));
        }
    }

    #[test]
    fn stages_are_sized_so_that_auto_splits_a_plan_at_its_threshold() {
        // always: a task per worker however small the scan.
        assert_eq!(bytes_per_partition(Mode::Always, 1 << 30, 2), 1);
        // auto: a scan of min_bytes makes two tasks' worth of partitions
        // (ceil(ceil(bytes / per_partition) / target_partitions) = 2)…
        let per = bytes_per_partition(Mode::Auto, 1 << 20, 2) as u64;
        assert_eq!((1u64 << 20).div_ceil(per).div_ceil(2), 2);
        // …and never coarser than the library's own default.
        assert_eq!(
            bytes_per_partition(Mode::Auto, 64 << 30, 2) as u64,
            LIBRARY_BYTES_PER_PARTITION
        );
        assert_eq!(bytes_per_partition(Mode::Auto, 0, 0), 1);
    }
}

/// A distributed plan, and the state it executes in (the coordinator's: it knows the
/// workers, how to reach them and how plans are encoded for them).
pub struct DistributedPlan {
    pub plan: Arc<dyn ExecutionPlan>,
    pub state: SessionState,
}

impl fmt::Debug for DistributedPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedPlan").finish_non_exhaustive()
    }
}

impl DistributedPlan {
    /// Stages (the head, run by the coordinator, included) and tasks over all of them.
    pub fn shape(&self) -> (usize, usize) {
        let mut stages = 1;
        let mut tasks = 1;
        let _ = self.plan.apply(|node| {
            if let Some(boundary) = node.as_network_boundary() {
                stages += 1;
                tasks += boundary.input_stage().task_count();
            }
            Ok(TreeNodeRecursion::Continue)
        });
        (stages, tasks)
    }

    /// The plan as EXPLAIN shows it: the head stage, then each stage with its tasks.
    pub fn display(&self) -> String {
        datafusion_distributed::display_plan_ascii(self.plan.as_ref(), false)
    }
}

/// Split `plan` into stages over the workers `workers` names, reached through `channels`
/// (`mode` and `min_bytes` size the stages: see [`bytes_per_partition`]; `compress`: the
/// batches crossing the network are LZ4-compressed).
/// None: the library found nothing worth splitting (one partition, no scan, …).
pub async fn distribute(
    plan: &Arc<dyn ExecutionPlan>,
    state: &SessionState,
    mode: Mode,
    min_bytes: u64,
    compress: bool,
    workers: Arc<dyn WorkerResolver>,
    channels: Arc<dyn ChannelResolver + Send + Sync>,
) -> Result<Option<DistributedPlan>, QueryError> {
    // The library plans from a logical plan through its query planner; the physical plan
    // is made already (and authorized, and keyed by the cache): hand it over as is.
    let builder = SessionStateBuilder::new_from_existing(state.clone())
        .with_query_planner(Arc::new(Prebuilt(plan.clone())))
        .with_distributed_planner()
        .with_distributed_worker_resolver(Workers(workers))
        .with_distributed_channel_resolver(Channels(channels))
        .with_distributed_user_codec(SluiceCodec)
        // Per-task metrics are not read (EXPLAIN ANALYZE runs on one worker), and the
        // workers add yield points to each task's plan, which the library's mapping of
        // metrics onto the coordinator's plan does not expect.
        .with_distributed_metrics_collection(false)
        .map_err(QueryError::from)?;
    let builder = builder
        .with_distributed_file_scan_config_bytes_per_partition(bytes_per_partition(
            mode,
            min_bytes,
            state.config().target_partitions(),
        ))
        .map_err(QueryError::from)?
        // LZ4 between hosts; none between processes of one machine, where it only costs
        // CPU the stages need.
        .with_distributed_compression(
            compress.then_some(datafusion_distributed::CompressionType::LZ4_FRAME),
        )
        .map_err(QueryError::from)?;
    let coordinating = builder.build();
    let empty = LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    });
    let distributed = coordinating
        .query_planner()
        .create_physical_plan(&empty, &coordinating)
        .await
        .map_err(QueryError::from)?;
    if !distributed.is::<DistributedExec>() {
        return Ok(None);
    }
    Ok(Some(DistributedPlan {
        plan: distributed,
        state: coordinating,
    }))
}

/// A query planner that answers with a plan made already.
#[derive(Debug)]
struct Prebuilt(Arc<dyn ExecutionPlan>);

#[async_trait]
impl QueryPlanner for Prebuilt {
    async fn create_physical_plan(
        &self,
        _: &LogicalPlan,
        _: &dyn datafusion::catalog::Session,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self.0.clone())
    }
}

struct Workers(Arc<dyn WorkerResolver>);

impl WorkerResolver for Workers {
    fn get_urls(&self) -> datafusion::common::Result<Vec<url::Url>> {
        self.0.get_urls()
    }
}

struct Channels(Arc<dyn ChannelResolver + Send + Sync>);

#[async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(
        &self,
        url: &url::Url,
    ) -> datafusion::common::Result<Box<dyn datafusion_distributed::WorkerChannel>> {
        self.0.get_worker_client_for_url(url).await
    }
}

/// What EXPLAIN needs of a warehouse to show the plan it would run: the distributed plan
/// of a physical plan, when the warehouse would distribute it.
#[async_trait]
pub trait Distributor: Send + Sync + fmt::Debug {
    async fn distributed(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        state: &SessionState,
    ) -> Result<Option<DistributedPlan>, QueryError>;
}
