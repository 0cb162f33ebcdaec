//! A guard against a wrong answer in DataFusion 55's `eliminate_cross_join`: an inner join
//! key whose one side spans two tables (`r.k = n.a + g.b` in `n JOIN g ON … JOIN r ON …`)
//! is dropped when the rule reorders the joins — it places each key between two of the
//! flattened inputs, and a key that fits none of them silently disappears, so the join
//! returns rows that do not satisfy it. DBD::Pg's `foreign_key_info` joins this way
//! (`attnum = confkey[colnum.i]`).
//!
//! This rule runs just before `eliminate_cross_join` and turns such keys into the join's
//! filter, which that rule keeps (it puts every filter back on top, and `push_down_filter`
//! takes it to the right join). Keys between single tables — every key of the TPC-H
//! queries — stay equi-join keys.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::NullEquality;
use datafusion::error::Result;
use datafusion::logical_expr::{and, Expr, JoinType, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct SpanningJoinKeysAsFilter;

/// Whether an expression reads columns of more than one table.
fn spans_tables(expr: &Expr) -> bool {
    let tables: HashSet<_> = expr
        .column_refs()
        .into_iter()
        .filter_map(|c| c.relation.as_ref())
        .collect();
    tables.len() > 1
}

impl OptimizerRule for SpanningJoinKeysAsFilter {
    fn name(&self) -> &str {
        "sluice_spanning_join_keys_as_filter"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(mut join) = plan else {
            return Ok(Transformed::no(plan));
        };
        let applies = join.join_type == JoinType::Inner
            && join.null_equality == NullEquality::NullEqualsNothing
            && join
                .on
                .iter()
                .any(|(l, r)| spans_tables(l) || spans_tables(r));
        if !applies {
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let (keys, spanning): (Vec<_>, Vec<_>) = std::mem::take(&mut join.on)
            .into_iter()
            .partition(|(l, r)| !spans_tables(l) && !spans_tables(r));
        join.on = keys;
        let predicate = spanning
            .into_iter()
            .map(|(l, r)| l.eq(r))
            .chain(join.filter.take())
            .reduce(and);
        join.filter = predicate;
        Ok(Transformed::yes(LogicalPlan::Join(join)))
    }
}

/// DataFusion's optimizer rules with [`SpanningJoinKeysAsFilter`] just before
/// `eliminate_cross_join`.
pub fn optimizer_rules(
    defaults: &[Arc<dyn OptimizerRule + Send + Sync>],
) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Vec::with_capacity(defaults.len() + 1);
    for rule in defaults {
        if rule.name() == "eliminate_cross_join" {
            rules.push(Arc::new(SpanningJoinKeysAsFilter) as Arc<dyn OptimizerRule + Send + Sync>);
        }
        rules.push(rule.clone());
    }
    rules
}
