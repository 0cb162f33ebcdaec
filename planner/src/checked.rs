//! Integer `+`, `-` and `*` that fail on overflow, as PostgreSQL's do (`integer out of
//! range`, 22003). DataFusion's wrap around: `2147483647::int4 + 1` was -2147483648, a
//! silent wrong answer. Its checked mode is a flag of the physical expression that the plan
//! codec does not carry to workers, so the analyzer writes integer arithmetic as calls of
//! checked functions instead (names kept); decimals and floats are DataFusion's own.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::compute::kernels::numeric::{add, mul, sub};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{exec_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The checked functions, for the function registries of the gateway and the workers.
pub fn functions() -> Vec<ScalarUDF> {
    [Operator::Plus, Operator::Minus, Operator::Multiply]
        .into_iter()
        .filter_map(|op| function(op).map(|f| f.as_ref().clone()))
        .collect()
}

fn function(op: Operator) -> Option<Arc<ScalarUDF>> {
    static FUNCTIONS: LazyLock<[Arc<ScalarUDF>; 3]> = LazyLock::new(|| {
        [
            ("sluice_int_add", Operator::Plus),
            ("sluice_int_sub", Operator::Minus),
            ("sluice_int_mul", Operator::Multiply),
        ]
        .map(|(name, op)| {
            Arc::new(ScalarUDF::new_from_impl(Checked {
                name,
                op,
                signature: Signature::any(2, Volatility::Immutable),
            }))
        })
    });
    let i = match op {
        Operator::Plus => 0,
        Operator::Minus => 1,
        Operator::Multiply => 2,
        _ => return None,
    };
    Some(FUNCTIONS[i].clone())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    name: &'static str,
    op: Operator,
    signature: Signature,
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return exec_err!("{} takes two values", self.name);
        };
        let scalars = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let (left, right) = (
            left.to_array(args.number_rows)?,
            right.to_array(args.number_rows)?,
        );
        let out = match self.op {
            Operator::Plus => add(&left, &right),
            Operator::Minus => sub(&left, &right),
            _ => mul(&left, &right),
        }
        .map_err(|e| match e {
            datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => {
                datafusion::error::DataFusionError::ArrowError(
                    Box::new(datafusion::arrow::error::ArrowError::ArithmeticOverflow(
                        format!("{} out of range", type_word(left.data_type())),
                    )),
                    None,
                )
            }
            e => e.into(),
        })?;
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// PostgreSQL's name of an integer type in its overflow message.
fn type_word(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    }
}

/// Writes integer `a + b`, `a - b`, `a * b` as the checked functions, in every plan node and
/// subquery, keeping the expressions' names.
#[derive(Debug)]
pub struct CheckedIntegers;

impl AnalyzerRule for CheckedIntegers {
    fn name(&self) -> &str {
        "sluice_checked_integers"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = merge_schema(&node.inputs());
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let name = names.save(&expr);
                let rewritten = expr.transform_up(|e| checked(e, &schema))?;
                Ok(rewritten.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

fn checked(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(b) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let (Some(function), Ok(left), Ok(right)) = (
        function(b.op),
        b.left.get_type(schema),
        b.right.get_type(schema),
    ) else {
        return Ok(Transformed::no(expr));
    };
    if left != right || !left.is_signed_integer() {
        return Ok(Transformed::no(expr));
    }
    let Expr::BinaryExpr(b) = expr else {
        unreachable!("matched above")
    };
    Ok(Transformed::yes(function.call(vec![*b.left, *b.right])))
}
