//! Correlated subqueries over catalog tables that DataFusion cannot decorrelate
//! (`oid = ANY(outer.array)`, `outer.a <> inner.b`, conditions on outer columns only, …),
//! evaluated the way PostgreSQL does: once per outer row, with the outer values bound.
//!
//! `compat` turns such a subquery into `sluice_subquery('<its SQL with $1…$n>', outer1, …)`.
//! Catalog tables are small and in memory, so running the subquery per row costs
//! microseconds; data tables never take this path.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Expr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{ErrorKind, QueryError};

pub const NAME: &str = "sluice_subquery";

/// The function, planning and running subqueries in `state` (the statement's own state,
/// single-partitioned so a subquery runs inline).
pub fn function(mut state: SessionState) -> ScalarUDF {
    state.config_mut().options_mut().execution.target_partitions = 1;
    ScalarUDF::new_from_impl(CorrelatedSubquery {
        state: Arc::new(state),
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

struct CorrelatedSubquery {
    state: Arc<SessionState>,
    signature: Signature,
}

impl std::fmt::Debug for CorrelatedSubquery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CorrelatedSubquery")
    }
}
impl PartialEq for CorrelatedSubquery {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}
impl Eq for CorrelatedSubquery {}
impl Hash for CorrelatedSubquery {
    fn hash<H: Hasher>(&self, state: &mut H) {
        NAME.hash(state);
    }
}

fn external(e: QueryError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn parse(sql: &str) -> DfResult<Statement> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)?;
    statements
        .pop()
        .ok_or_else(|| external(QueryError::internal("empty correlated subquery")))
}

/// A value as a typed SQL expression.
fn literal(value: &ScalarValue) -> DfResult<Expr> {
    let text = literal_sql(value);
    Ok(Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)?
        .parse_expr()?)
}

fn literal_sql(value: &ScalarValue) -> String {
    let data_type = value.data_type();
    let bare = if value.is_null() {
        // A typed NULL only where the type matters to planning (`= ANY(list)`); table
        // functions take only an untyped NULL.
        if !matches!(data_type, DataType::List(_)) {
            return "NULL".to_string();
        }
        "NULL".to_string()
    } else {
        match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => format!("'{}'", s.replace('\'', "''")),
            ScalarValue::List(list) => {
                let items = ScalarValue::convert_array_to_scalar_vec(list.as_ref())
                    .ok()
                    .and_then(|mut rows| rows.pop())
                    .flatten()
                    .unwrap_or_default();
                if items.is_empty() {
                    "NULL".to_string()
                } else {
                    let items: Vec<String> = items.iter().map(literal_sql).collect();
                    return format!("make_array({})", items.join(", "));
                }
            }
            other => other.to_string(),
        }
    };
    format!("arrow_cast({bare}, '{}')", type_sql(&data_type))
}

fn type_sql(data_type: &DataType) -> String {
    match data_type {
        DataType::List(item) => format!("List({})", type_sql(item.data_type())),
        other => other.to_string(),
    }
}

/// Run a subquery's future to completion from inside a function call. On the gateway's
/// multi-threaded runtime the worker thread first hands its queued tasks to the others
/// (`block_in_place`): a task the subquery spawns must not wait behind the thread that is
/// waiting for it.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => futures::executor::block_on(future),
    }
}

/// The statement with each `$n` replaced by the n-th value as a typed literal.
fn bind(statement: &Statement, values: &[ScalarValue]) -> DfResult<Statement> {
    let mut statement = statement.clone();
    let mut failure = None;
    let _ = ast::visit_expressions_mut(&mut statement, |e| {
        if let Expr::Value(v) = e {
            if let ast::Value::Placeholder(p) = &v.value {
                let value = p
                    .trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| values.get(i.wrapping_sub(1)));
                match value.map(literal) {
                    Some(Ok(lit)) => *e = lit,
                    Some(Err(err)) => failure = Some(err),
                    None => {}
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match failure {
        Some(err) => Err(err),
        None => Ok(statement),
    }
}

impl CorrelatedSubquery {
    /// Run the subquery with `$1…$n` bound to `values`: its one value (NULL for no row).
    fn run(&self, statement: &Statement, values: &[ScalarValue]) -> DfResult<ScalarValue> {
        let statement = bind(statement, values)?;
        let state = self.state.clone();
        let batches = block_on(async move {
            let plan = state
                .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                .await?;
            let physical = state.create_physical_plan(&plan).await?;
            datafusion::physical_plan::collect(physical, state.task_ctx()).await
        })?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        match rows {
            0 => Ok(ScalarValue::Null),
            1 => {
                let batch = batches
                    .iter()
                    .find(|b| b.num_rows() == 1)
                    .ok_or_else(|| external(QueryError::internal("lost subquery row")))?;
                ScalarValue::try_from_array(batch.column(0), 0)
            }
            _ => Err(external(QueryError::new(
                ErrorKind::InvalidValue,
                "more than one row returned by a subquery used as an expression",
            ))),
        }
    }

    fn sql(arg: Option<&ScalarValue>) -> DfResult<String> {
        match arg {
            Some(ScalarValue::Utf8(Some(sql))) => Ok(sql.clone()),
            _ => Err(external(QueryError::internal(
                "sluice_subquery: the first argument must be the subquery's SQL",
            ))),
        }
    }
}

impl ScalarUDFImpl for CorrelatedSubquery {
    fn name(&self) -> &str {
        NAME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Err(external(QueryError::internal(
            "sluice_subquery: type comes from return_field_from_args",
        )))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let sql = Self::sql(args.scalar_arguments.first().copied().flatten())?;
        let statement = parse(&sql)?;
        // Plan once with typed NULLs for the outer values to learn the result type.
        let nulls = args.arg_fields[1..]
            .iter()
            .map(|f| ScalarValue::try_from(f.data_type()))
            .collect::<DfResult<Vec<_>>>()?;
        let typed = bind(&statement, &nulls)?;
        let state = self.state.clone();
        let plan = block_on(async move {
            state
                .statement_to_plan(DfStatement::Statement(Box::new(typed)))
                .await
        })?;
        let field = plan.schema().field(0).clone();
        Ok(Arc::new(Field::new(NAME, field.data_type().clone(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let sql = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => Self::sql(Some(s))?,
            _ => Self::sql(None)?,
        };
        let statement = parse(&sql)?;
        let outer = ColumnarValue::values_to_arrays(&args.args[1..])?;
        super::functions::map_rows(
            &outer,
            args.number_rows,
            args.return_field.data_type(),
            |values| self.run(&statement, values),
        )
    }
}
