//! Spark's operators where they differ from DataFusion's: `/` of two integers is a double
//! (`7 / 2` is 3.5, not 3; by zero an error, as in ANSI mode), `/` of decimals has Spark's
//! result precision and scale, and `array[i]` counts from 0. Planned as DataFusion
//! expressions when a Databricks session's statement is planned, so workers run plain
//! DataFusion. And Spark has no unsigned integers: a result column DataFusion computes as
//! one (`count`, `row_number`) is answered as the signed type ([`signed_outputs`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{
    ExprPlanner, PlannerResult, RawBinaryExpr, RawFieldAccessExpr,
};
use datafusion::logical_expr::{
    binary_expr, cast, lit, when, Expr, ExprSchemable, GetFieldAccess, LogicalPlan,
    LogicalPlanBuilder, Operator,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// The expression planners of a Databricks session that come before DataFusion's.
pub fn expr_planners() -> Vec<Arc<dyn ExprPlanner>> {
    vec![Arc::new(SparkOperators)]
}

#[derive(Debug)]
struct SparkOperators;

/// A type as the decimal Spark computes with (integers widened to the decimal holding them).
fn decimal(t: &DataType) -> Option<(u8, i8)> {
    Some(match t {
        DataType::Decimal128(p, s) => (*p, *s),
        DataType::Int8 | DataType::UInt8 => (3, 0),
        DataType::Int16 | DataType::UInt16 => (5, 0),
        DataType::Int32 | DataType::UInt32 => (10, 0),
        DataType::Int64 | DataType::UInt64 => (20, 0),
        _ => return None,
    })
}

/// The type of `decimal(p1, s1) / decimal(p2, s2)` in Spark (`DecimalPrecision`, with
/// precision loss allowed, as by default): scale max(6, s1 + p2 + 1), integral digits
/// p1 - s1 + s2; beyond 38 digits the scale gives way, down to 6.
fn divide_type(p1: u8, s1: i8, p2: u8, s2: i8) -> (u8, i8) {
    let (p1, s1, p2, s2) = (p1 as i32, s1 as i32, p2 as i32, s2 as i32);
    let scale = 6.max(s1 + p2 + 1);
    let precision = p1 - s1 + s2 + scale;
    if precision <= 38 {
        return (precision as u8, scale as i8);
    }
    let integral = precision - scale;
    let scale = (38 - integral).max(scale.min(6));
    (38, scale as i8)
}

/// A Databricks session's plan with unsigned result columns as Spark's signed types.
pub fn signed_outputs(plan: LogicalPlan) -> Result<LogicalPlan> {
    let signed = |t: &DataType| match t {
        DataType::UInt8 => Some(DataType::Int16),
        DataType::UInt16 => Some(DataType::Int32),
        DataType::UInt32 | DataType::UInt64 => Some(DataType::Int64),
        _ => None,
    };
    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
        || !plan
            .schema()
            .fields()
            .iter()
            .any(|f| signed(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            match signed(field.data_type()) {
                Some(t) => cast(column, t).alias_qualified(qualifier.cloned(), field.name()),
                None => column,
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

fn integer(t: &DataType) -> bool {
    t.is_integer() || t == &DataType::Null
}

impl ExprPlanner for SparkOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::Divide {
            return Ok(PlannerResult::Original(expr));
        }
        let (left, right) = (expr.left.get_type(schema)?, expr.right.get_type(schema)?);
        if integer(&left) && integer(&right) {
            // By zero: DataFusion's integer division, which fails as Spark's does.
            let zero = expr.right.clone().eq(lit(0i64));
            let failing = cast(
                binary_expr(expr.left.clone(), Operator::Divide, expr.right.clone()),
                DataType::Float64,
            );
            let double = binary_expr(
                cast(expr.left, DataType::Float64),
                Operator::Divide,
                cast(expr.right, DataType::Float64),
            );
            return Ok(PlannerResult::Planned(
                when(zero, failing).otherwise(double)?,
            ));
        }
        let (Some((p1, s1)), Some((p2, s2))) = (decimal(&left), decimal(&right)) else {
            return Ok(PlannerResult::Original(expr));
        };
        if !(matches!(left, DataType::Decimal128(..)) || matches!(right, DataType::Decimal128(..)))
        {
            return Ok(PlannerResult::Original(expr));
        }
        let (precision, scale) = divide_type(p1, s1, p2, s2);
        let quotient = binary_expr(expr.left, Operator::Divide, expr.right);
        Ok(PlannerResult::Planned(cast(
            quotient,
            DataType::Decimal128(precision, scale),
        )))
    }

    /// `EXTRACT(part FROM x)` as DataFusion's `date_part` (an integer, as in Spark).
    fn plan_extract(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(datafusion::functions::datetime::date_part(), args),
        )))
    }

    /// `SUBSTRING(s, pos[, len])` and `SUBSTR(…)` (the parser's own forms) as Spark's
    /// `substring`: position 0 is 1, a negative one counts from the end.
    fn plan_substring(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(datafusion_spark::function::string::substring(), args),
        )))
    }

    fn plan_field_access(
        &self,
        expr: RawFieldAccessExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawFieldAccessExpr>> {
        let GetFieldAccess::ListIndex { key } = &expr.field_access else {
            return Ok(PlannerResult::Original(expr));
        };
        let is_list = matches!(
            expr.expr.get_type(schema)?,
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
        );
        if !is_list {
            return Ok(PlannerResult::Original(expr));
        }
        let index = key.as_ref().clone() + lit(ScalarValue::Int64(Some(1)));
        let element = datafusion::functions_nested::extract::array_element_udf();
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(element, vec![expr.expr, index]),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_division_types_as_spark() {
        // TPC-H q14: 100.00 * sum(decimal(15,2) * …) / sum(…).
        assert_eq!(divide_type(38, 6, 38, 4), (38, 6));
        assert_eq!(divide_type(5, 2, 3, 1), (10, 6));
        assert_eq!(divide_type(10, 0, 10, 0), (21, 11));
    }
}
