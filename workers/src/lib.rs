//! # workers — where queries run
//!
//! ```text
//!  gateway ── Warehouse::execute(plan) ──► admission (wait for a free slot, bounded)
//!                                       ──► least-loaded ready Worker
//!                                       ──► Flight DoGet(ExecuteRequest) ──► `sluice worker`
//!          ◄── record batches, streamed ◄───────────────────────────────── DataFusion
//! ```
//!
//! - [`worker`]: the worker process. It serves the internal Flight endpoint, executes
//!   the plans it is handed, streams batches back, and exits when its gateway goes away.
//! - [`pool`]: a warehouse's pool of workers: admission (a bounded FIFO queue), the choice
//!   of worker, the retry of a query whose worker was lost before it sent rows, and the
//!   state `system.*` shows. The autoscaler (`scaler`) grows it under load, shrinks it
//!   when idle, health-checks and replaces workers, local processes or static remote ones.
//! - [`protocol`]: what travels between the two.
//! - [`data_cache`]: a worker's cache of remote Parquet bytes on local disk.
//! - [`distributed`]: one query over many workers (datafusion-distributed): the workers'
//!   second endpoint, the connections to it, and the gateway's run of a distributed plan.
//!
//! A crash, leak or runaway query in a worker never takes the gateway down: the gateway
//! sees a closed stream and answers the client with an error.

mod channels;
pub mod data_cache;
pub mod distributed;
pub mod pool;
pub mod protocol;
mod scaler;
pub mod worker;
mod yielding;

pub use pool::{
    decode, encode, BatchStream, DistributedProgress, FlightStream, Launcher, LocalWorkers,
    Progress, QueryMeta, QueryState, RanPlan, Warehouse, WarehouseConfig, WarehouseStatus,
    WorkerStatus, WorkerTls,
};
pub use protocol::WorkerReport;
