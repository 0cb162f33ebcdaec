//! Plans that may serve more than one execution of a prepared statement.
//!
//! ```text
//!  logical plan ──reusable_reads──► the data tables it reads, when nothing else shapes it
//!               │                   (no now(), random(), current_user; no pg_catalog or
//!               │                   system.* table: their rows are read when planned)
//!  physical ────fresh─────────────► the same plan with its run-time state reset
//!               │                   (DataFusion's `reset_plan_states`), or None when a scan
//!               │                   holds a dynamic filter another operator fills at run time
//! ```
//!
//! The gateway keeps the plans of an execution with the statement and uses them again for
//! the next execution with the same session context, parameter values and table versions.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::ExecutionPlan;

use crate::cache_key::DataTable;
use crate::error::QueryError;

/// The data tables `plan` reads, when its optimized and physical plans depend on nothing
/// but its text, the session's settings, its parameter values and those tables' files;
/// `None` when something else shapes them. Unqualified names resolve in `defaults`.
pub fn reusable_reads(plan: &LogicalPlan, defaults: (&str, &str)) -> Option<Vec<DataTable>> {
    match crate::cache_key::cacheability(plan, defaults) {
        Ok(reads) if !reads.catalog => Some(reads.tables),
        Ok(_) => None,
        // A plan of no table at all (`SELECT 1`, what drivers send to check a connection).
        Err(reason) if reason == crate::cache_key::READS_NO_TABLE => Some(Vec::new()),
        Err(_) => None,
    }
}

/// Whether a physical plan may run again once its state is reset: not when a scan holds a
/// dynamic filter (a join's or a TopK's), which stays tied to the operator that filled it
/// in the first run.
pub fn physical_reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut reusable = true;
    let _ = plan.apply(|node| {
        let filter = (node.as_ref() as &dyn std::any::Any)
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| {
                (exec.data_source().as_ref() as &dyn std::any::Any).downcast_ref::<FileScanConfig>()
            })
            .and_then(|config| config.file_source().filter());
        if let Some(filter) = filter {
            let _ = filter.apply(|e| {
                if e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some() {
                    reusable = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if reusable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    reusable
}

/// A physical plan ready to run again: every operator's run-time state (hash tables,
/// shared streams, metrics) made anew, the rest shared.
pub fn fresh(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, QueryError> {
    reset_plan_states(Arc::clone(plan)).map_err(QueryError::from)
}
