//! PostgreSQL's types of expressions over catalog columns, where the Arrow type does not
//! say them: `nullif(a.attidentity, '')` is a `"char"`, `CASE WHEN … THEN '-' ELSE
//! p.proname END` a `name`, `array_agg(e.enumlabel)` a `name[]`, `typtype::text` a `text`.
//!
//! A catalog column carries its PostgreSQL type in its field (`PG_TYPE_KEY`); DataFusion
//! keeps it through column references but not through functions, `CASE` or aggregates,
//! and keeps it through a cast to the same Arrow type (`"char"` → `text`) that should drop
//! it. This pass states the type of those expressions the way PostgreSQL resolves it
//! (a result follows its typed operands; an untyped string literal or NULL takes the
//! others' type), as field metadata on the expression's alias, bottom-up so that a
//! subquery's column is typed for the query above it. Catalog queries of pg sessions only
//! (data queries have no pinned columns); not under a set operation or a recursive CTE
//! (`state_result_types` says why).

use std::collections::HashMap;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{AggregateFunction, Alias, FieldMetadata};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use crate::pg_catalog::types::{array_of, field_type_oid, oids, type_oid, PG_TYPE_KEY};

/// The plan with the PostgreSQL types of its projected and aggregated expressions stated,
/// except under a set operation or a recursive CTE: DataFusion's physical union takes its
/// schema from its inputs' physical plans, which do not carry a typed alias's metadata the
/// way the logical plan does, and a recursive query wants its terms' metadata equal (either
/// way an internal error instead of a mere type OID). What is above them (pgx's select
/// over its recursive CTE) is typed.
pub fn state_result_types(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    type_plan(plan).map(|t| t.data)
}

fn type_plan(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    use datafusion::common::tree_node::TreeNode;
    if matches!(plan, LogicalPlan::Union(_) | LogicalPlan::RecursiveQuery(_)) {
        return Ok(Transformed::no(plan));
    }
    let children = plan
        .map_subqueries(type_plan)?
        .transform_children(|plan| plan.map_children(type_plan))?;
    let changed_below = children.transformed;
    // A child may have changed: this node's schema is made from the children's again.
    let node = if changed_below {
        children.data.recompute_schema()?
    } else {
        children.data
    };
    let (node, changed) = match node {
        LogicalPlan::Projection(mut projection) => {
            let changed = type_all(&mut projection.expr, projection.input.schema());
            (LogicalPlan::Projection(projection), changed)
        }
        LogicalPlan::Aggregate(mut aggregate) => {
            let changed = type_all(&mut aggregate.aggr_expr, aggregate.input.schema());
            (LogicalPlan::Aggregate(aggregate), changed)
        }
        other => (other, false),
    };
    Ok(if changed {
        Transformed::yes(node.recompute_schema()?)
    } else {
        Transformed::new_transformed(node, changed_below)
    })
}

/// `coalesce(reltablespace, 0)`: PostgreSQL reads the integer constant as the oid the
/// other operand is (the result is an oid); DataFusion would widen both to bigint.
fn oid_constants(expr: &mut Expr, schema: &DFSchema) -> bool {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::tree_node::TreeNode;
    let Ok(rewritten) = expr.clone().transform_up(|e| {
        let Expr::ScalarFunction(mut f) = e else {
            return Ok(Transformed::no(e));
        };
        let is_oid = |a: &Expr| {
            !matches!(a, Expr::Literal(..))
                && a.get_type(schema).is_ok_and(|t| t == DataType::UInt32)
        };
        if f.func.name() != "coalesce" || !f.args.iter().any(is_oid) {
            return Ok(Transformed::no(Expr::ScalarFunction(f)));
        }
        let mut changed = false;
        for arg in &mut f.args {
            // `0`, or `CAST(0 AS INTEGER)` as compat types catalog constants.
            let constant = match &*arg {
                Expr::Cast(cast) => cast.expr.as_ref(),
                other => other,
            };
            let n = match constant {
                Expr::Literal(ScalarValue::Int64(Some(n)), None) => u32::try_from(*n).ok(),
                Expr::Literal(ScalarValue::Int32(Some(n)), None) => u32::try_from(*n).ok(),
                _ => None,
            };
            if let Some(n) = n {
                *arg = Expr::Literal(ScalarValue::UInt32(Some(n)), None);
                changed = true;
            }
        }
        Ok(Transformed::new_transformed(
            Expr::ScalarFunction(f),
            changed,
        ))
    }) else {
        return false;
    };
    if rewritten.transformed {
        *expr = rewritten.data;
    }
    rewritten.transformed
}

/// Type each expression (see [`typed`]); whether any changed.
fn type_all(exprs: &mut [Expr], schema: &DFSchema) -> bool {
    let mut changed = false;
    for expr in exprs.iter_mut() {
        changed |= oid_constants(expr, schema);
    }
    for expr in exprs {
        if let Some(typed) = typed(expr, schema) {
            *expr = typed;
            changed = true;
        }
    }
    changed
}

/// `expr` aliased (under the name it has) with the PostgreSQL type it has, when that is
/// not the type its field already reports.
fn typed(expr: &Expr, schema: &DFSchema) -> Option<Expr> {
    let (inner, alias) = match expr {
        Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias)),
        Expr::Column(_) => return None,
        other => (other, None),
    };
    let wanted = pg_type(inner, schema)?;
    let (_, field) = expr.to_field(schema).ok()?;
    if field_type_oid(&field) == wanted {
        return None;
    }
    let metadata = FieldMetadata::from(HashMap::from([(
        PG_TYPE_KEY.to_string(),
        wanted.to_string(),
    )]));
    Some(match alias {
        Some(alias) => Expr::Alias(
            Alias::new(
                alias.expr.as_ref().clone(),
                alias.relation.clone(),
                alias.name.clone(),
            )
            .with_metadata(Some(metadata)),
        ),
        None => {
            let name = inner.schema_name().to_string();
            inner.clone().alias_with_metadata(name, Some(metadata))
        }
    })
}

/// The PostgreSQL type of an expression as PostgreSQL resolves it, where that can differ
/// from what its field says; `None` to leave it as it is.
fn pg_type(expr: &Expr, schema: &DFSchema) -> Option<u32> {
    match expr {
        Expr::Alias(alias) => pg_type(&alias.expr, schema),
        // `x::text` of a `"char"` or `name` column is text (DataFusion keeps the field's
        // metadata through a cast between equal Arrow types).
        Expr::Cast(cast) if cast.field.metadata().get(PG_TYPE_KEY).is_none() => {
            Some(type_oid(cast.field.data_type()))
        }
        // PostgreSQL resolves a CASE from its ELSE first, then its results in order.
        Expr::Case(case) => common(
            case.else_expr
                .as_deref()
                .into_iter()
                .chain(case.when_then_expr.iter().map(|(_, then)| then.as_ref())),
            schema,
        ),
        // A scalar subquery is of its one column's type.
        Expr::ScalarSubquery(subquery) => {
            let field = subquery.subquery.schema().fields().first()?.clone();
            field
                .metadata()
                .contains_key(PG_TYPE_KEY)
                .then(|| field_type_oid(&field))
        }
        Expr::ScalarFunction(f) => match f.func.name() {
            "nullif" => f.args.first().and_then(|a| current(a, schema)),
            "coalesce" | "greatest" | "least" => common(f.args.iter(), schema),
            _ => None,
        },
        Expr::AggregateFunction(AggregateFunction { func, params }) => {
            let arg = params.args.first()?;
            match func.name() {
                "array_agg" => array_of(current(arg, schema)?),
                // PostgreSQL has no min/max of `name` or `"char"` (they are read as
                // text) nor of the OID aliases (read as oid).
                "min" | "max" => match current(arg, schema)? {
                    oids::NAME | oids::CHAR => Some(oids::TEXT),
                    oids::REGPROC
                    | oids::REGPROCEDURE
                    | oids::REGCLASS
                    | oids::REGTYPE
                    | oids::REGNAMESPACE => Some(oids::OID),
                    _ => None,
                },
                "first_value" | "last_value" => current(arg, schema),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The type an operand has: what this pass makes it, else what its field says.
fn current(expr: &Expr, schema: &DFSchema) -> Option<u32> {
    pg_type(expr, schema).or_else(|| {
        expr.to_field(schema)
            .ok()
            .map(|(_, field)| field_type_oid(&field))
    })
}

/// The type of a result made of several operands (`CASE`, `coalesce`): theirs when the
/// typed ones agree. Untyped string literals, NULLs and `make_array()` take the others'
/// type. `name` and `text` convert to each other implicitly, so a mix of them is the first
/// one's type (PostgreSQL keeps its first candidate then).
fn common<'a>(operands: impl Iterator<Item = &'a Expr>, schema: &DFSchema) -> Option<u32> {
    let mut found = None;
    for operand in operands {
        let untyped = match operand {
            Expr::Literal(value, None) => value.is_null() || matches!(value, ScalarValue::Utf8(_)),
            // `ARRAY(…)` of no rows (see compat): an empty array of the other's type.
            Expr::ScalarFunction(f) => f.func.name() == "make_array" && f.args.is_empty(),
            _ => false,
        };
        if untyped {
            continue;
        }
        let oid = current(operand, schema)?;
        match found {
            None => found = Some(oid),
            Some(f) if f == oid => {}
            Some(oids::NAME | oids::TEXT) if matches!(oid, oids::NAME | oids::TEXT) => {}
            Some(_) => return None,
        }
    }
    found
}
