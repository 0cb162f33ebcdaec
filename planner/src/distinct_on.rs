//! Subqueries in the select list of a `SELECT DISTINCT ON (…)`.
//!
//! DataFusion keeps that select list inside its `DistinctOn` node, where no subquery is
//! decorrelated or planned ("Correlated scalar subquery can only be used in Projection,
//! Filter, Aggregate plan nodes"); pgAdmin's column, index and constraint dialogs select
//! `DISTINCT ON (att.attnum) …, (SELECT nspname FROM pg_namespace WHERE oid =
//! ty.typnamespace) …`. Each select expression but a plain column is computed by a
//! projection below the node instead (beside the input's own columns, which the `ON` and
//! `ORDER BY` expressions read), and the node selects its result by name: a projection is
//! where subqueries are planned and where PostgreSQL's result types are stated
//! (`result_types`). DataFusion evaluates DISTINCT ON's select list on every input row
//! anyway (as `first_value` aggregates), so this costs nothing more.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::Column;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Distinct, DistinctOn, Expr, LogicalPlan, Projection};

/// Prefix of the columns the hoisted expressions are computed as.
const HOISTED: &str = "__sluice_distinct_on_";

/// The plan with every `DistinctOn` rewritten so.
pub fn hoist_subqueries(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Distinct(Distinct::On(distinct)) = node else {
            return Ok(Transformed::no(node));
        };
        if distinct
            .select_expr
            .iter()
            .all(|e| matches!(e, Expr::Column(_)))
        {
            return Ok(Transformed::no(LogicalPlan::Distinct(Distinct::On(
                distinct,
            ))));
        }
        let DistinctOn {
            on_expr,
            select_expr,
            sort_expr,
            input,
            ..
        } = distinct;
        let mut below: Vec<Expr> = input
            .schema()
            .iter()
            .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
            .collect();
        let mut select = Vec::with_capacity(select_expr.len());
        for (i, expr) in select_expr.into_iter().enumerate() {
            if matches!(expr, Expr::Column(_)) {
                select.push(expr);
                continue;
            }
            let (value, name) = match expr {
                Expr::Alias(alias) => (*alias.expr, alias.name),
                other => {
                    let name = other.schema_name().to_string();
                    (other, name)
                }
            };
            let hidden = format!("{HOISTED}{i}");
            below.push(value.alias(&hidden));
            select.push(Expr::Column(Column::from_name(hidden)).alias(name));
        }
        let projection = LogicalPlan::Projection(Projection::try_new(below, input)?);
        Ok(Transformed::yes(LogicalPlan::Distinct(Distinct::On(
            DistinctOn::try_new(on_expr, select, sort_expr, Arc::new(projection))?,
        ))))
    })
    .map(|t| t.data)
}
