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
//! - [`pool`]: a warehouse's pool of worker processes: spawning, health (a dead worker is
//!   noticed at once and replaced), admission and the choice of worker.
//! - [`protocol`]: what travels between the two.
//!
//! A crash, leak or runaway query in a worker never takes the gateway down: the gateway
//! sees a closed stream and answers the client with an error.

pub mod pool;
pub mod protocol;
pub mod worker;

pub use pool::{BatchStream, FlightStream, Warehouse, WarehouseConfig, WarehouseStatus};
