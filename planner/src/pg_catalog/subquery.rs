//! Correlated subqueries over catalog tables that DataFusion cannot decorrelate
//! (`oid = ANY(outer.array)`, `outer.a <> inner.b`, conditions on outer columns only, …),
//! evaluated the way PostgreSQL does: once per outer row, with the outer values bound.
//!
//! `compat` turns such a subquery into `sluice_subquery('<its SQL with $1…$n>', '<seal>',
//! outer1, …)`. Catalog tables are small and in memory, so running the subquery per row
//! costs microseconds; data tables never take this path.
//!
//! The function runs SQL inside the gateway, so a user must never be able to call it with
//! SQL of their own: the rewrite seals the SQL it writes with an HMAC under a key this
//! process draws at random, and the function refuses any call whose seal does not match
//! (as "function does not exist"). Even a sealed subquery must plan as a read of catalog
//! tables only, read-only, and authorized for the session that runs it: the same checks
//! every statement passes.

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
use crate::session::SessionInfo;

pub const NAME: &str = "sluice_subquery";

/// The key subquery SQL is sealed with: drawn once per process, never shown.
fn key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// HMAC-SHA-256 (RFC 2104) of `message` under the process key.
fn mac(message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut inner_key = [0x36u8; 64];
    let mut outer_key = [0x5cu8; 64];
    for (i, k) in key().iter().enumerate() {
        inner_key[i] ^= k;
        outer_key[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(inner_key)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_key)
        .chain_update(inner)
        .finalize()
        .into()
}

/// The seal `compat` writes next to the subquery SQL it generates.
pub fn seal(sql: &str) -> String {
    let mut out = String::with_capacity(64);
    for byte in mac(sql.as_bytes()) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `seal` is the seal of `sql` (compared in constant time).
fn sealed(sql: &str, seal_text: &str) -> bool {
    let expected = seal(sql);
    expected.len() == seal_text.len()
        && expected
            .bytes()
            .zip(seal_text.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What a user who calls the function by hand is told: it is not theirs to call.
fn not_a_function() -> DataFusionError {
    external(QueryError::new(
        ErrorKind::UndefinedFunction,
        format!("function {NAME} does not exist"),
    ))
}

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

/// Which outer values are PostgreSQL vectors (int2vector, oidvector), which count from 0:
/// bound as a cast to their type, so `indkey[0]` and `generate_subscripts(indkey, 1)` read
/// inside the subquery as they do outside.
fn vector_types(fields: &[FieldRef]) -> Vec<Option<&'static str>> {
    fields
        .iter()
        .map(|f| {
            match f
                .metadata()
                .get(super::types::PG_TYPE_KEY)
                .map(String::as_str)
            {
                Some("22") => Some("int2vector"),
                Some("30") => Some("oidvector"),
                _ => None,
            }
        })
        .collect()
}

/// The statement with each `$n` replaced by the n-th value as a typed literal.
fn bind(
    statement: &Statement,
    values: &[ScalarValue],
    vectors: &[Option<&str>],
) -> DfResult<Statement> {
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
                let vector = p
                    .trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| vectors.get(i.wrapping_sub(1)).copied().flatten());
                match value.map(literal) {
                    Some(Ok(lit)) => {
                        *e = match vector {
                            Some(name) => Expr::Cast {
                                kind: ast::CastKind::DoubleColon,
                                expr: Box::new(lit),
                                data_type: ast::DataType::Custom(
                                    ast::ObjectName::from(vec![ast::Ident::new(name)]),
                                    vec![],
                                ),
                                array: false,
                                format: None,
                            },
                            None => lit,
                        }
                    }
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

/// Plan a subquery and check it as any statement is checked: read-only, catalog tables
/// only (it runs in the gateway), and authorized for the session.
async fn checked_plan(
    state: &SessionState,
    statement: Statement,
) -> DfResult<datafusion::logical_expr::LogicalPlan> {
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await?;
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|_| not_a_function())?;
    if crate::Planner::reads_data(&plan) {
        return Err(not_a_function());
    }
    let session = state
        .config()
        .get_extension::<SessionInfo>()
        .ok_or_else(|| external(QueryError::internal("a subquery without its session")))?;
    let schema = state.config_options().catalog.default_schema.clone();
    crate::authorize(&plan, (crate::catalog(), &schema), &session.access).map_err(external)?;
    // The subquery's value has PostgreSQL's type, as the statement's own columns do
    // (`ARRAY(SELECT attname …)` is name[]).
    let reads = crate::PlanReads::of(&plan);
    if session.protocol == "pg" && reads.table {
        return crate::result_types::state_result_types(plan);
    }
    Ok(plan)
}

impl CorrelatedSubquery {
    /// Run the subquery with `$1…$n` bound to `values`: its one value (NULL for no row).
    fn run(
        &self,
        statement: &Statement,
        values: &[ScalarValue],
        vectors: &[Option<&str>],
    ) -> DfResult<ScalarValue> {
        let statement = bind(statement, values, vectors)?;
        let state = self.state.clone();
        let batches = block_on(async move {
            let plan = checked_plan(&state, statement).await?;
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

    /// The subquery's SQL, if the first two arguments are SQL and its seal.
    fn sql(sql: Option<&ScalarValue>, seal_text: Option<&ScalarValue>) -> DfResult<String> {
        match (sql, seal_text) {
            (Some(ScalarValue::Utf8(Some(sql))), Some(ScalarValue::Utf8(Some(seal_text))))
                if sealed(sql, seal_text) =>
            {
                Ok(sql.clone())
            }
            _ => Err(not_a_function()),
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
        let sql = Self::sql(
            args.scalar_arguments.first().copied().flatten(),
            args.scalar_arguments.get(1).copied().flatten(),
        )?;
        let statement = parse(&sql)?;
        // Plan once with typed NULLs for the outer values to learn the result type.
        let nulls = args.arg_fields[2..]
            .iter()
            .map(|f| ScalarValue::try_from(f.data_type()))
            .collect::<DfResult<Vec<_>>>()?;
        let typed = bind(&statement, &nulls, &vector_types(&args.arg_fields[2..]))?;
        let state = self.state.clone();
        let plan = block_on(async move { checked_plan(&state, typed).await })?;
        let field = plan.schema().field(0).clone();
        // The inner column's PostgreSQL type (a `name`, a `"char"`) is the result's too.
        Ok(Arc::new(
            Field::new(NAME, field.data_type().clone(), true)
                .with_metadata(field.metadata().clone()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = |i: usize| match args.args.get(i) {
            Some(ColumnarValue::Scalar(s)) => Some(s),
            _ => None,
        };
        let sql = Self::sql(scalar(0), scalar(1))?;
        let statement = parse(&sql)?;
        let outer = ColumnarValue::values_to_arrays(&args.args[2..])?;
        let vectors = vector_types(args.arg_fields.get(2..).unwrap_or_default());
        super::functions::map_rows(
            &outer,
            args.number_rows,
            args.return_field.data_type(),
            |values| self.run(&statement, values, &vectors),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_rewrites_own_sql_is_sealed() {
        let sql = "SELECT count(*) FROM pg_catalog.pg_class WHERE oid = $1";
        let seal_text = seal(sql);
        assert_eq!(seal_text.len(), 64);
        assert!(sealed(sql, &seal_text));
        assert!(!sealed("SELECT count(*) FROM tpch.customer", &seal_text));
        assert!(!sealed(sql, &seal_text[..63]));
        let text = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
        assert_eq!(
            CorrelatedSubquery::sql(Some(&text(sql)), Some(&text(&seal_text))).ok(),
            Some(sql.to_string())
        );
        // A user's own call: no seal, a wrong one, or the SQL alone.
        for (sql_arg, seal_arg) in [
            (Some(text("SELECT 1")), Some(text(&seal_text))),
            (Some(text(sql)), Some(text("00"))),
            (Some(text(sql)), None),
        ] {
            let e =
                CorrelatedSubquery::sql(sql_arg.as_ref(), seal_arg.as_ref()).expect_err("refused");
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
    }
}
