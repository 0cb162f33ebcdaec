//! Plans cross the process boundary as `datafusion-proto` bytes.
//!
//! The gateway plans physically (it knows the catalog); the worker decodes the plan against
//! its own runtime (memory pool, object stores) and executes it. Listing-table scans
//! (Parquet, CSV, JSON) carry their file groups and schema, so the worker needs no catalog.

use std::sync::Arc;

use datafusion::common::{not_impl_err, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::error::{ErrorKind, QueryError};

/// Encode a physical plan for a worker.
pub fn encode_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<u8>, QueryError> {
    physical_plan_to_bytes_with_extension_codec(Arc::clone(plan), &SluiceCodec)
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
    physical_plan_from_bytes_with_extension_codec(bytes, ctx, &SluiceCodec).map_err(|e| {
        QueryError::new(
            ErrorKind::Internal,
            format!(
                "the worker could not decode the plan: {}",
                crate::error::classify(&e).message
            ),
        )
    })
}

/// DataFusion's encoding of plans, with Spark's functions told apart from DataFusion's
/// builtins of the same name.
#[derive(Debug)]
pub struct SluiceCodec;

impl PhysicalExtensionCodec for SluiceCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        not_impl_err!("no plan node of sluice's own is sent to workers")
    }

    fn try_encode(
        &self,
        _node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        not_impl_err!("no plan node of sluice's own is sent to workers")
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if spark::functions::is_spark_scalar(crate::bounded::unwrapped(node)) {
            buf.extend_from_slice(spark::functions::MARKER);
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match spark::functions::scalar(name) {
            Some(f) if buf == spark::functions::MARKER => Ok(crate::bounded::wrap(f)),
            _ => not_impl_err!("the worker has no function {name}"),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        if spark::functions::is_spark_aggregate(node) {
            buf.extend_from_slice(spark::functions::MARKER);
        }
        Ok(())
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match spark::functions::aggregate(name) {
            Some(f) if buf == spark::functions::MARKER => Ok(f),
            _ => not_impl_err!("the worker has no aggregate function {name}"),
        }
    }
}
