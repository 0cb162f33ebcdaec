//! Yield points between the batches of every operator of a plan run on a worker, so that a
//! cancelled query stops promptly.
//!
//! A query stops when its task is dropped, and a task can only be dropped between two
//! polls. DataFusion yields to the runtime at its leaf scans; an operator that makes many
//! batches from each input batch (a join fanning out) or consumes many in a loop (an
//! aggregate) can stay inside one poll for the whole query. Wrapping every operator's
//! stream so that it returns `Pending` (and wakes itself at once) after [`SLICE`] of work
//! puts a yield point at every batch boundary of every operator. What this cannot reach is
//! one operator computing a single batch for a long time (a nested-loop join against a
//! large side): the worker reports such a query as stuck and the gateway replaces it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::{Stream, StreamExt};

/// Longest a stream works before it lets the runtime run something else.
const SLICE: Duration = Duration::from_millis(10);

/// `plan` with a yield point above every operator.
pub fn wrap(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(Transformed::yes(
            Arc::new(Yielding { input: node }) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}

/// Passes its input through, yielding after [`SLICE`] of work.
#[derive(Debug)]
struct Yielding {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for Yielding {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Yielding")
    }
}

#[allow(deprecated)] // `with_new_children` is still required by the trait.
impl ExecutionPlan for Yielding {
    fn name(&self) -> &str {
        "Yielding"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.input.as_ref())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Yielding {
            input: children.swap_remove(0),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(YieldingStream {
            inner: self.input.execute(partition, context)?,
            since: Instant::now(),
        }))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.input.partition_statistics(partition)
    }
}

struct YieldingStream {
    inner: SendableRecordBatchStream,
    since: Instant,
}

impl Stream for YieldingStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.since.elapsed() >= SLICE {
            self.since = Instant::now();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl RecordBatchStream for YieldingStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
