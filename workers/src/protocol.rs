//! The internal gateway ↔ worker protocol, carried by Arrow Flight.
//!
//! - `DoGet(Ticket)`: the ticket is an [`ExecuteRequest`] (protobuf); the answer is the
//!   query's record batches as Flight data, streamed as the worker produces them.
//!   Dropping the stream (the gateway's side) cancels the query on the worker.
//! - Every call carries `authorization: Bearer <secret>`, a per-gateway secret handed to
//!   spawned workers in their environment (never on the command line).
//! - Errors are gRPC statuses carrying [`ERROR_KIND_HEADER`] so the gateway can map them
//!   to the right SQLSTATE without parsing messages.
//! - After a query's last batch the worker sends its profile
//!   ([`planner::profile::Profile`], JSON): a message with no Arrow data, only
//!   `app_metadata` ([`profile_message`]). The gateway keeps it with the
//!   query and passes nothing of it on.
//! - `DoAction("status")` answers a [`WorkerReport`]: the gateway's health check, every
//!   second, and what `system.workers` shows.

/// Environment variable through which a spawned worker receives the shared secret.
pub const SECRET_ENV: &str = "SLUICE_WORKER_SECRET";
/// The line a worker prints on stdout once it listens:
/// `SLUICE_WORKER_LISTENING <flight addr> <distributed addr>`.
pub const READY_PREFIX: &str = "SLUICE_WORKER_LISTENING ";
/// gRPC metadata key holding an [`planner::ErrorKind`] name.
pub const ERROR_KIND_HEADER: &str = "x-sluice-error-kind";
/// The header that names a query on its distributed tasks' calls (a worker gives each
/// query one memory share, however many of its tasks run there).
pub const QUERY_HEADER: &str = "x-sluice-query";
/// Per-stream HTTP/2 receive window on connections to workers: enough to keep the
/// loopback busy (the 64 KiB default throttles bulk results), small enough that a slow
/// reader holds only a few MiB per stream.
pub(crate) const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// Largest message either side accepts (plans in tickets, batches in Flight data).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The health-check action.
pub const STATUS_ACTION: &str = "status";

/// A worker's answer to [`STATUS_ACTION`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WorkerReport {
    /// Queries executing now.
    #[prost(uint64, tag = "1")]
    pub running: u64,
    /// Bytes reserved in the worker's memory pool.
    #[prost(uint64, tag = "2")]
    pub memory_reserved: u64,
    /// Resident memory of the worker process.
    #[prost(uint64, tag = "3")]
    pub rss_bytes: u64,
    /// Queries started since the worker did.
    #[prost(uint64, tag = "4")]
    pub executed: u64,
    /// Queries cancelled over a second ago that are still computing (DataFusion stops a
    /// query only between batches): the gateway replaces a worker that has any.
    #[prost(uint64, tag = "5")]
    pub stuck: u64,
    /// Blocks of remote Parquet files served from the worker's data cache (none: no cache).
    #[prost(uint64, optional, tag = "6")]
    pub data_cache_hits: Option<u64>,
    /// Blocks fetched from object storage into the data cache.
    #[prost(uint64, optional, tag = "7")]
    pub data_cache_misses: Option<u64>,
    /// Bytes the data cache holds on disk.
    #[prost(uint64, optional, tag = "8")]
    pub data_cache_bytes: Option<u64>,
    /// The port of the worker's distributed endpoint (the same host as this one).
    #[prost(uint32, optional, tag = "9")]
    pub distributed_port: Option<u32>,
}

/// What the gateway asks a worker to run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecuteRequest {
    /// The gateway's id for the query, for logs on both sides.
    #[prost(string, tag = "1")]
    pub query_id: String,
    /// The physical plan, encoded with `datafusion-proto`.
    #[prost(bytes = "vec", tag = "2")]
    pub plan: Vec<u8>,
}

/// The rows of one Arrow IPC message of a result (None: not a record batch), read from
/// its header without decoding the batch.
pub fn message_rows(data: &arrow_flight::FlightData) -> Option<usize> {
    let message = datafusion::arrow::ipc::root_as_message(&data.data_header).ok()?;
    let batch = message.header_as_record_batch()?;
    usize::try_from(batch.length()).ok()
}

/// The message that carries a query's profile (JSON) after its last batch.
pub fn profile_message(profile: Vec<u8>) -> arrow_flight::FlightData {
    arrow_flight::FlightData {
        app_metadata: profile.into(),
        ..Default::default()
    }
}

/// Whether a message carries no Arrow data (a profile, or nothing).
pub fn is_metadata_only(data: &arrow_flight::FlightData) -> bool {
    data.data_header.is_empty() && data.data_body.is_empty()
}
