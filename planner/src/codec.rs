//! Plans cross the process boundary as `datafusion-proto` bytes.
//!
//! The gateway plans physically (it knows the catalog); the worker decodes the plan against
//! its own runtime (memory pool, object stores) and executes it. Listing-table scans
//! (Parquet, CSV, JSON) carry their file groups and schema, so the worker needs no catalog.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{physical_plan_from_bytes, physical_plan_to_bytes};

use crate::error::{ErrorKind, QueryError};

/// Encode a physical plan for a worker.
pub fn encode_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<u8>, QueryError> {
    physical_plan_to_bytes(Arc::clone(plan))
        .map(|b| b.to_vec())
        .map_err(|e| {
            // A plan node without a protobuf form is something sluice cannot yet run
            // remotely: say so rather than fail obscurely on the worker.
            QueryError::new(
                ErrorKind::NotSupported,
                format!(
                    "this query cannot be sent to a worker: {}",
                    crate::error::classify(&e).message
                ),
            )
        })
}

/// Decode a plan received from the gateway.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>, QueryError> {
    physical_plan_from_bytes(bytes, ctx).map_err(|e| {
        QueryError::new(
            ErrorKind::Internal,
            format!(
                "the worker could not decode the plan: {}",
                crate::error::classify(&e).message
            ),
        )
    })
}
