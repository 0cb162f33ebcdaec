//! PostgreSQL syntax DataFusion does not plan, rewritten on the parsed statement into
//! equivalent SQL it does. Every rule is about a SQL construct, never about a client's
//! query text, so it holds for any client and any version of it.
//!
//! | PostgreSQL                                  | becomes                                  |
//! |---------------------------------------------|------------------------------------------|
//! | `pg_type` (unqualified catalog table)       | `pg_catalog.pg_type` (pg_catalog is always searched first) |
//! | `pg_catalog.f(…)`, `information_schema.f(…)`| `f(…)`                                   |
//! | `x::regclass`, `x::regtype`, `x::regproc`…  | `sluice_regclass_in(x)` (name → OID)     |
//! | `x::regclass::text` (any reg type)          | `sluice_regclass_out(…)` (OID → name)    |
//! | `a OPERATOR(pg_catalog.~) b`                | `a ~ b`                                  |
//! | `x COLLATE "C"`                             | `x` (one collation)                      |
//!
//! Types DataFusion does not know (`oid`, `name`, `"char"`, `int2vector`, …) are planned by
//! [`PgTypePlanner`].

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr, TypePlanner};
use datafusion::logical_expr::Expr as LogicalExpr;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType as SqlType, Expr, Function, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, TableFactor, VisitMut, VisitorMut,
};

use crate::error::{ErrorKind, QueryError};
use crate::pg_catalog::types::{oids, PG_TYPE_KEY};
use crate::pg_catalog::{INFORMATION_SCHEMA, PG_CATALOG};

/// Whether a (rewritten) statement calls the named function anywhere.
pub fn calls_function(statement: &datafusion::sql::parser::Statement, name: &str) -> bool {
    let datafusion::sql::parser::Statement::Statement(sql) = statement else {
        return false;
    };
    ast::visit_expressions(sql.as_ref(), |e| match e {
        Expr::Function(f) if parts(&f.name) == [name] => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// What the rewrites know of the catalog schemas.
#[derive(Debug, Default)]
pub struct CatalogNames {
    /// Tables of pg_catalog (found unqualified, as in PostgreSQL).
    pub pg_catalog: HashSet<String>,
    /// Columns of each pg_catalog and information_schema table, in order, by table name.
    pub columns: std::collections::HashMap<String, Vec<String>>,
}

/// Alias of an output expression a rewrite changed: `__sluice_name_<i>_<name>`, where
/// `name` is what PostgreSQL calls the expression as written (`postgres_names` reads it).
pub const NAME_ALIAS: &str = "__sluice_name_";

/// The SELECT whose list names a query's columns: its body, or the first SELECT of a set
/// operation.
pub fn leftmost_select(query: &Query) -> Option<&ast::Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            ast::SetExpr::Select(select) => return Some(select),
            ast::SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            ast::SetExpr::Query(inner) => body = inner.body.as_ref(),
            _ => return None,
        }
    }
}

fn leftmost_select_mut(query: &mut Query) -> Option<&mut ast::Select> {
    let mut body = query.body.as_mut();
    loop {
        match body {
            ast::SetExpr::Select(select) => return Some(select),
            ast::SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            ast::SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return None,
        }
    }
}

fn output_select(statement: &mut ast::Statement) -> Option<&mut ast::Select> {
    match statement {
        ast::Statement::Query(query) => leftmost_select_mut(query),
        _ => None,
    }
}

/// Each output expression as written, before the rewrites: one they change keeps the
/// name PostgreSQL gives it as written (computed only then: every statement passes here).
fn output_names(statement: &mut ast::Statement) -> Option<Vec<Option<Expr>>> {
    let select = output_select(statement)?;
    Some(
        select
            .projection
            .iter()
            .map(|item| match item {
                ast::SelectItem::UnnamedExpr(expr) => Some(expr.clone()),
                _ => None,
            })
            .collect(),
    )
}

fn keep_output_names(statement: &mut ast::Statement, written: Option<Vec<Option<Expr>>>) {
    let (Some(written), Some(select)) = (written, output_select(statement)) else {
        return;
    };
    if written.len() != select.projection.len() {
        return;
    }
    for (i, (item, written)) in select.projection.iter_mut().zip(written).enumerate() {
        let Some(written) = written else {
            continue;
        };
        let expr = match item {
            ast::SelectItem::UnnamedExpr(expr) => expr,
            ast::SelectItem::ExprWithAlias { expr, alias }
                if alias.value.starts_with(DUPLICATE_ALIAS) =>
            {
                expr
            }
            _ => continue,
        };
        if *expr != written {
            let name = crate::pg_expr_name(&written);
            let expr = std::mem::replace(expr, Expr::value(ast::Value::Null));
            *item = ast::SelectItem::ExprWithAlias {
                expr,
                alias: Ident::with_quote('"', format!("{NAME_ALIAS}{i}_{name}")),
            };
        }
    }
}

/// Rewrite one statement in place.
pub fn rewrite(statement: &mut ast::Statement, catalog: &CatalogNames) {
    let written = output_names(statement);
    rewrite_as_written(statement, catalog);
    int4_output_constants(statement);
    keep_output_names(statement, written);
}

/// Integer constants in the output list that fit in 32 bits are `integer`, as PostgreSQL
/// types them (`SELECT 1` is int4, not bigint: drivers map results by type).
fn int4_output_constants(statement: &mut ast::Statement) {
    let Some(select) = output_select(statement) else {
        return;
    };
    let number = |e: &Expr, sign: &str| match e {
        Expr::Value(v) => {
            matches!(&v.value, ast::Value::Number(n, _) if format!("{sign}{n}").parse::<i32>().is_ok())
        }
        _ => false,
    };
    for item in &mut select.projection {
        let (ast::SelectItem::UnnamedExpr(expr) | ast::SelectItem::ExprWithAlias { expr, .. }) =
            item
        else {
            continue;
        };
        let fits = match &*expr {
            Expr::UnaryOp {
                op: ast::UnaryOperator::Minus,
                expr: inner,
            } => number(inner, "-"),
            e => number(e, ""),
        };
        if fits {
            as_int4(expr);
        }
    }
}

/// `n` → `CAST(n AS INTEGER)`, in place.
fn as_int4(expr: &mut Expr) {
    let constant = std::mem::replace(expr, Expr::value(ast::Value::Null));
    *expr = Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(constant),
        data_type: SqlType::Integer(None),
        array: false,
        format: None,
    };
}

/// Apply `f` to each expression of `expr`, bottom-up, but not inside its subqueries (their
/// expressions are their own select's).
fn outside_subqueries(expr: &mut Expr, f: impl FnMut(&mut Expr)) {
    struct Own<F>(usize, F);
    impl<F: FnMut(&mut Expr)> VisitorMut for Own<F> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if self.0 == 0 {
                (self.1)(expr);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = expr.visit(&mut Own(0, f));
}

/// In catalog SQL, integer constants of a select list that fit in 32 bits are `integer`
/// wherever they are in an expression, as PostgreSQL types them: `0 AS depth` and
/// `depth + 1` of a recursive CTE are int4 (asyncpg's and pgx's type introspection). Only
/// the select list (ORDER BY 1 and GROUP BY 1 are positions) and only catalog statements
/// (over data, 32-bit arithmetic could overflow where PostgreSQL would refuse). Constants
/// inside a subquery are its own select's.
fn int4_constants(select: &mut ast::Select, top: bool) {
    let int4 = |expr: &mut Expr| {
        let fits = matches!(expr, Expr::Value(v)
            if matches!(&v.value, ast::Value::Number(n, _)
                if !n.contains(['.', 'e', 'E']) && n.parse::<i32>().is_ok()));
        if fits {
            as_int4(expr);
        }
    };
    for item in &mut select.projection {
        if let ast::SelectItem::UnnamedExpr(expr) | ast::SelectItem::ExprWithAlias { expr, .. } =
            item
        {
            // A cast constant already is what it says (`0::oid`, `CAST(1 AS INTEGER)`); a
            // bare one in the statement's own select list is `int4_output_constants`'.
            let bare = matches!(expr, Expr::Value(_))
                || matches!(expr, Expr::UnaryOp { op: ast::UnaryOperator::Minus, expr }
                    if matches!(expr.as_ref(), Expr::Value(_)));
            if matches!(expr, Expr::Cast { .. }) || (top && bare) {
                continue;
            }
            outside_subqueries(expr, int4);
        }
    }
}

#[doc(hidden)] // for the integration tests (planner/tests/compat.rs)
pub fn rewrite_as_written(statement: &mut ast::Statement, catalog: &CatalogNames) {
    let mut ctes = HashSet::new();
    // CTE names shadow catalog tables: collect them first.
    let _ = statement.visit(&mut CteNames(&mut ctes));
    let catalog_only = reads_only_catalog(statement, catalog, &ctes);
    let mut rewriter = Rewriter {
        catalog,
        ctes,
        catalog_only,
        depth: 0,
    };
    let _ = statement.visit(&mut rewriter);
}

/// Database-qualified names, as PostgreSQL reads them: `db.schema.table` with `db` the
/// connected database (or sluice's catalog name) is `schema.table`; another database is
/// 0A000 in PostgreSQL's words, and more than three parts is 42601.
pub fn strip_database(statement: &mut ast::Statement, database: &str) -> Result<(), QueryError> {
    let mut refused = None;
    let _ = ast::visit_relations_mut(statement, |name| {
        match name.0.len() {
            0..=2 => {}
            3 => {
                let first = match &name.0[0] {
                    ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
                    ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
                    ObjectNamePart::Function(f) => f.name.value.to_ascii_lowercase(),
                };
                if first == database || first == crate::catalog() {
                    name.0[0] = ObjectNamePart::Identifier(Ident::new(crate::catalog()));
                } else {
                    refused = Some(QueryError::new(
                        ErrorKind::NotSupported,
                        format!("cross-database references are not implemented: {name}"),
                    ));
                    return ControlFlow::Break(());
                }
            }
            _ => {
                refused = Some(QueryError::new(
                    ErrorKind::Syntax,
                    format!("improper qualified name (too many dotted names): {name}"),
                ));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    refused.map_or(Ok(()), Err)
}

/// Bind a view's query to the tables its creator meant: every unqualified table name
/// (not a CTE, a table function or a pg_catalog table, which PostgreSQL searches first)
/// gets the schema it resolves in for the creator (`schema`). The view then reads the same
/// tables whoever reads it, whatever their `search_path`.
pub fn qualify_relations(statement: &mut ast::Statement, schema: &str, catalog: &CatalogNames) {
    struct Qualify<'a> {
        schema: &'a str,
        catalog: &'a CatalogNames,
        ctes: HashSet<String>,
    }
    impl VisitorMut for Qualify<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name, args: None, ..
            } = factor
            {
                let table = parts(name);
                if let [table] = table.as_slice() {
                    if !self.ctes.contains(table)
                        && !self.catalog.pg_catalog.contains(table)
                        && !TABLE_FUNCTIONS.contains(&table.as_str())
                    {
                        name.0.insert(
                            0,
                            ObjectNamePart::Identifier(Ident::with_quote('"', self.schema)),
                        );
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = HashSet::new();
    let _ = statement.visit(&mut CteNames(&mut ctes));
    let _ = statement.visit(&mut Qualify {
        schema,
        catalog,
        ctes,
    });
}

/// Whether every relation a statement reads is a catalog table, a CTE or a table function.
fn reads_only_catalog(
    statement: &impl ast::Visit,
    catalog: &CatalogNames,
    ctes: &HashSet<String>,
) -> bool {
    struct Only<'a> {
        catalog: &'a CatalogNames,
        ctes: &'a HashSet<String>,
        only: bool,
    }
    impl ast::Visitor for Only<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            // A function in FROM (`string_to_array(…) s`, `generate_series(…)`) reads no
            // table; a name without arguments is a table, a view or a CTE.
            let TableFactor::Table {
                name, args: None, ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            let p = parts(name);
            let system = match p.as_slice() {
                [schema, _] => schema == PG_CATALOG || schema == INFORMATION_SCHEMA,
                [table] => self.ctes.contains(table) || self.catalog.pg_catalog.contains(table),
                _ => false,
            };
            self.only &= system;
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Only {
        catalog,
        ctes,
        only: true,
    };
    let _ = statement.visit(&mut visitor);
    visitor.only
}

struct CteNames<'a>(&'a mut HashSet<String>);

impl VisitorMut for CteNames<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter<'a> {
    catalog: &'a CatalogNames,
    ctes: HashSet<String>,
    /// The statement reads catalog tables only (or no table).
    catalog_only: bool,
    /// How deep in (sub)queries the visit is: 1 in the statement's own query.
    depth: usize,
}

/// The parts of an object name, lower-cased unless quoted.
fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            ObjectNamePart::Function(f) => f.name.value.to_ascii_lowercase(),
        })
        .collect()
}

/// A function in FROM that is not a table function, as PostgreSQL reads it:
/// - `pg_show_all_settings()`, `pg_available_extensions()`: the rows of the catalog view
///   made of them;
/// - a scalar function (`string_to_array(…) s`, which Grafana joins to `generate_series`)
///   is one row of its value, in a column named after the alias (or the function):
///   `(SELECT f(…) AS s) AS s`.
fn scalar_function_in_from(factor: &mut TableFactor) {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = factor
    else {
        return;
    };
    let function = parts(name);
    let Some(last) = function.last() else {
        return;
    };
    let system = function.len() == 1 || function[0] == PG_CATALOG;
    if !system || TABLE_FUNCTIONS.contains(&last.as_str()) {
        return;
    }
    // Set-returning functions that catalog views are made of: their rows.
    let rows_of = match last.as_str() {
        "pg_show_all_settings" => Some("SELECT * FROM pg_catalog.pg_settings"),
        "pg_available_extensions" => {
            Some("SELECT name, default_version, comment FROM pg_catalog.pg_available_extensions")
        }
        _ => None,
    };
    let (table, column) = match alias {
        Some(a) => (
            a.name.value.clone(),
            a.columns
                .first()
                .map_or_else(|| a.name.value.clone(), |c| c.name.value.clone()),
        ),
        None => (last.clone(), last.clone()),
    };
    let call = Expr::Function(Function {
        name: name.clone(),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.args.clone(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    let sql = match rows_of {
        Some(_) if !args.args.is_empty() => return,
        Some(rows) => rows.to_string(),
        None => format!("SELECT {call} AS {}", Ident::with_quote('"', column)),
    };
    let Some(subquery) = parse_query(&sql) else {
        return;
    };
    let columns = match (rows_of, alias) {
        (Some(_), Some(a)) => std::mem::take(&mut a.columns),
        _ => vec![],
    };
    *factor = TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(ast::TableAlias {
            explicit: true,
            name: Ident::with_quote('"', table),
            columns,
            at: None,
        }),
        sample: None,
    };
}

/// The subscripts `generate_subscripts(a, dim)` yields, as an integer array: those of a
/// one-dimensional array from `array_lower` to `array_upper` (0-based for PostgreSQL's
/// vectors), none for another dimension or an empty array. `dim` is kept in a comparison,
/// so a parameter there is typed by its context.
fn subscripts_of(args: &[ast::FunctionArg]) -> Option<Expr> {
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(array)), ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(dim))] =
        args
    else {
        return None;
    };
    template(
        "CAST(range(CASE WHEN __sluice_1 = 1 THEN coalesce(array_lower(__sluice_0, 1), 1) ELSE 1 \
         END, CASE WHEN __sluice_1 = 1 THEN coalesce(array_upper(__sluice_0, 1) + 1, 1) ELSE 1 \
         END) AS INT[])",
        &[array, dim],
        &[],
    )
}

/// The select items of `unnest(a, b, …) [WITH ORDINALITY] AS k(x, y, …[, n])` as a
/// select-list unnest (`unnest(a) AS "x", unnest(b) AS "y", unnest(range(1, greatest(
/// cardinality(a), …) + 1)) AS "n"`: several arrays zip, the shorter padded with NULLs, as
/// in PostgreSQL), and the column names. One array without column names is named by `k`.
fn unnest_items(
    arrays: &[Expr],
    k: &ast::TableAlias,
    ordinality: bool,
) -> Option<(String, Vec<String>)> {
    let mut columns: Vec<String> = k.columns.iter().map(|c| c.name.value.clone()).collect();
    if columns.is_empty() && arrays.len() == 1 && !ordinality {
        columns.push(k.name.value.clone());
    }
    if arrays.is_empty() || columns.len() != arrays.len() + usize::from(ordinality) {
        return None;
    }
    // Each array is written twice (its elements, its length): an array holding a subquery
    // with another such unnest would double per level of nesting. Tools unnest columns.
    if ordinality && arrays.iter().any(holds_query) {
        return None;
    }
    let mut items: Vec<String> = arrays
        .iter()
        .zip(&columns)
        .map(|(a, c)| format!("unnest({a}) AS {}", Ident::with_quote('"', c)))
        .collect();
    if ordinality {
        let lengths: Vec<String> = arrays
            .iter()
            .map(|a| format!("CAST(cardinality({a}) AS BIGINT)"))
            .collect();
        let longest = if lengths.len() == 1 {
            lengths[0].clone()
        } else {
            format!("greatest({})", lengths.join(", "))
        };
        items.push(format!(
            "unnest(range(1, {longest} + 1)) AS {}",
            Ident::with_quote('"', &columns[arrays.len()])
        ));
    }
    Some((items.join(", "), columns))
}

/// Does the expression hold a subquery?
fn holds_query(expr: &Expr) -> bool {
    struct Finds;
    impl ast::Visitor for Finds {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    ast::Visit::visit(expr, &mut Finds).is_break()
}

/// `EXISTS (…)` and `x IN (…)` as values (a select list, ORDER BY — pgAdmin's `EXISTS(…)
/// AS is_fk`, Grafana's `CASE WHEN schema IN (SELECT … search_path …)`): DataFusion turns
/// them into joins only in WHERE. As scalar subqueries, which it (or, for correlated
/// catalog subqueries, `rewrite_scalar_subquery`) plans anywhere:
///
/// * `EXISTS (q)` → `(SELECT count(*) FROM (q) AS e) > 0` (`= 0` for NOT EXISTS);
/// * `x IN (q)` → `array_has(coalesce((SELECT array_agg(v) FROM (q) AS i(v)),
///   make_array()), x)` (NOT IN negated; NULL when x is) — `x` written once, so a chain
///   `a IN (q) IN (q) …` grows linearly, not doubling per link — in catalog statements
///   only (`lists`): each row searches the whole list, which over a data table of
///   millions of rows would run for hours; there DataFusion's error stays.
///
/// Subqueries of subqueries are their own select lists' (left alone here).
fn subquery_predicates_as_values(expr: &mut Expr, lists: bool) {
    outside_subqueries(expr, |expr| {
        let value = match expr {
            Expr::Exists { subquery, negated } => {
                let compare = if *negated { "=" } else { ">" };
                // A plain select keeps its WHERE (DataFusion decorrelates that).
                let count = match count_of_rows(subquery) {
                    Some(count) => Box::new(count),
                    None => match template(
                        "(SELECT count(*) FROM __sluice_q0 AS __sluice_exists)",
                        &[],
                        &[subquery.clone()],
                    ) {
                        Some(Expr::Subquery(count)) => count,
                        _ => return,
                    },
                };
                template(
                    &format!("__sluice_0 {compare} 0"),
                    &[&Expr::Subquery(count)],
                    &[],
                )
            }
            Expr::InSubquery {
                expr: value,
                subquery,
                negated,
            } if lists => template(
                &format!(
                    "{}array_has(coalesce((SELECT array_agg(__sluice_in.v) FROM __sluice_q0 AS \
                     __sluice_in(v)), make_array()), __sluice_0)",
                    if *negated { "NOT " } else { "" }
                ),
                &[value],
                &[subquery.clone()],
            ),
            _ => return,
        };
        if let Some(value) = value {
            *expr = Expr::Nested(Box::new(value));
        }
    });
}

/// An expression written as SQL text around parts of the statement, which are put in as
/// they are, not printed and parsed again: `__sluice_0`, `__sluice_1`, … stand for the
/// expressions, tables named `__sluice_q0`, … for the queries (as derived tables with the
/// placeholder's alias). Parsing a rewrite's text around a rewritten part would parse it
/// again per rewrite, and the parser's work doubles per level of nested function calls:
/// a chain of rewrites (`a IN (q) IN (q) …`) would take exponential time.
fn template(sql: &str, exprs: &[&Expr], queries: &[Box<Query>]) -> Option<Expr> {
    struct Fill<'a> {
        exprs: &'a [&'a Expr],
        queries: &'a [Box<Query>],
    }
    impl VisitorMut for Fill<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Identifier(i) = expr {
                if let Some(n) = i.value.strip_prefix("__sluice_") {
                    if let Some(e) = n.parse::<usize>().ok().and_then(|n| self.exprs.get(n)) {
                        *expr = (*e).clone();
                    }
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor {
                let query = match parts(name).as_slice() {
                    [one] => one
                        .strip_prefix("__sluice_q")
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| self.queries.get(n)),
                    _ => None,
                };
                if let Some(query) = query {
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: query.clone(),
                        alias: alias.take(),
                        sample: None,
                    };
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut expr = parse_expr(sql)?;
    let _ = expr.visit(&mut Fill { exprs, queries });
    Some(expr)
}

/// `SELECT count(*) FROM … WHERE …` of a plain select (no grouping, DISTINCT, aggregate,
/// set operation or WITH; a LIMIT of at least one row and ORDER BY change no count).
fn count_of_rows(query: &Query) -> Option<Query> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let limit_ok = match &query.limit_clause {
        None => true,
        Some(ast::LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            offset: None,
            limit_by,
        }) => {
            limit_by.is_empty()
                && matches!(&v.value, ast::Value::Number(n, _) if n.parse::<u64>().is_ok_and(|n| n >= 1))
        }
        _ => false,
    };
    let plain = limit_ok
        && query.with.is_none()
        && query.fetch.is_none()
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && !contains_aggregate_projection(query);
    if !plain {
        return None;
    }
    let mut count = query.clone();
    count.limit_clause = None;
    count.order_by = None;
    let ast::SetExpr::Select(select) = count.body.as_mut() else {
        return None;
    };
    select.projection = vec![ast::SelectItem::UnnamedExpr(call(
        "count",
        vec![Expr::value(ast::Value::Number("1".into(), false))],
    ))];
    Some(count)
}

/// An expression the rewrites wrote as SQL text, parsed.
fn parse_expr(sql: &str) -> Option<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)
    .and_then(|mut p| p.parse_expr())
    .ok()
}

/// A query the rewrites wrote as SQL text, parsed.
fn parse_query(sql: &str) -> Option<Box<Query>> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .ok()
}

fn strip_system_qualifier(name: &mut ObjectName) {
    let p = parts(name);
    if p.len() == 2 && (p[0] == PG_CATALOG || p[0] == INFORMATION_SCHEMA) {
        name.0.remove(0);
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        // `LIMIT '3' OFFSET '1'`: untyped literals read as the bigint they spell.
        if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &mut query.limit_clause {
            for bound in limit
                .iter_mut()
                .chain(offset.iter_mut().map(|o| &mut o.value))
            {
                if let Expr::Value(v) = bound {
                    if let ast::Value::SingleQuotedString(text) = &v.value {
                        if let Ok(n) = text.trim().parse::<i64>() {
                            *bound = Expr::value(ast::Value::Number(n.to_string(), false));
                        }
                    }
                }
            }
        }
        if let Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }) = &mut query.order_by
        {
            for e in exprs {
                subquery_predicates_as_values(&mut e.expr, self.catalog_only);
            }
        }
        let (catalog, ctes, catalog_only) = (self.catalog, &self.ctes, self.catalog_only);
        let top = self.depth == 1;
        for_each_select(query.body.as_mut(), &mut |select| {
            for item in &mut select.projection {
                if let ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    subquery_predicates_as_values(e, catalog_only);
                }
            }
            expand_catalog_wildcards(select, catalog, ctes);
            catalog_columns(select, catalog, ctes);
            subscripts_as_unnest(select);
            unnest_lateral_joins(select);
            unnest_set_returning_calls(select);
            alias_duplicate_columns(select);
            if catalog_only {
                int4_constants(select, top);
            }
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        scalar_function_in_from(factor);
        if let TableFactor::Table {
            name, args, alias, ..
        } = factor
        {
            if args.is_some() {
                // A table function: `pg_catalog.generate_series(1, 32)`.
                strip_system_qualifier(name);
                // `generate_series(…) s`: in PostgreSQL `s` also names its one column.
                if let Some(alias) = alias {
                    if alias.columns.is_empty() {
                        alias.columns.push(ast::TableAliasColumnDef::from_name(
                            alias.name.value.clone(),
                        ));
                    }
                }
            } else {
                let p = parts(name);
                if p.len() == 1
                    && self.catalog.pg_catalog.contains(&p[0])
                    && !self.ctes.contains(&p[0])
                {
                    name.0
                        .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
                }
            }
        } else if let TableFactor::UNNEST {
            alias: Some(k),
            array_exprs,
            with_ordinality: true,
            with_offset: false,
            ..
        } = factor
        {
            // `unnest(a) WITH ORDINALITY AS k(x, n)`: DataFusion has no ordinality.
            if let Some(subquery) = unnest_items(array_exprs, k, true)
                .and_then(|(items, _)| parse_query(&format!("SELECT {items}")))
            {
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery,
                    alias: Some(ast::TableAlias {
                        explicit: true,
                        name: k.name.clone(),
                        columns: Vec::new(),
                        at: None,
                    }),
                    sample: None,
                };
            }
        } else if let TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_ordinality: false,
            with_offset: false,
            ..
        } = factor
        {
            // `CROSS JOIN unnest(a) AS k`: one array, one column, which `k` names too.
            if alias.columns.is_empty() && array_exprs.len() == 1 {
                alias.columns.push(ast::TableAliasColumnDef::from_name(
                    alias.name.value.clone(),
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `c.conkey[i]` parses as `c` with `.conkey` and `[i]` applied; read as the column
        // `c.conkey` subscripted, so that the column is seen as one reference (an outer one
        // in a correlated subquery).
        if let Expr::CompoundFieldAccess { root, access_chain } = expr {
            while let (
                Expr::Identifier(_) | Expr::CompoundIdentifier(_),
                Some(ast::AccessExpr::Dot(Expr::Identifier(_))),
            ) = (root.as_ref(), access_chain.first())
            {
                let ast::AccessExpr::Dot(Expr::Identifier(next)) = access_chain.remove(0) else {
                    break;
                };
                let mut idents =
                    match std::mem::replace(root.as_mut(), Expr::value(ast::Value::Null)) {
                        Expr::Identifier(first) => vec![first],
                        Expr::CompoundIdentifier(idents) => idents,
                        _ => break,
                    };
                idents.push(next);
                **root = Expr::CompoundIdentifier(idents);
            }
            if access_chain.is_empty() {
                let root = std::mem::replace(root.as_mut(), Expr::value(ast::Value::Null));
                *expr = root;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        simple_case_as_searched(expr);
        match expr {
            // `current_schema` is a function without parentheses, as `current_user` is.
            Expr::Identifier(id)
                if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("current_schema") =>
            {
                *expr = call("current_schema", vec![]);
            }
            // `substring(s FROM 'pattern')`: the POSIX regular expression's first
            // parenthesized match, or the whole match (pgAdmin reads reloptions so).
            Expr::Substring {
                expr: value,
                substring_from: Some(from),
                substring_for: None,
                ..
            } if matches!(from.as_ref(), Expr::Value(v)
                    if matches!(v.value, ast::Value::SingleQuotedString(_))) =>
            {
                let value = std::mem::replace(value.as_mut(), Expr::value(ast::Value::Null));
                let pattern = std::mem::replace(from.as_mut(), Expr::value(ast::Value::Null));
                let one = Expr::value(ast::Value::Number("1".into(), false));
                *expr = call(
                    "array_element",
                    vec![call("regexp_match", vec![value, pattern]), one],
                );
            }
            Expr::Function(f) => {
                strip_system_qualifier(&mut f.name);
                // information_schema._pg_expandarray(a): unnest of its (x, n) records;
                // aclexplode(acl): of its privilege records.
                let records = match parts(&f.name).as_slice() {
                    [name] if name == "_pg_expandarray" => Some("sluice_expandarray"),
                    [name] if name == "aclexplode" => Some("sluice_aclexplode"),
                    _ => None,
                };
                if let Some(records) = records {
                    f.name = ObjectName::from(vec![Ident::new(records)]);
                    let inner = std::mem::replace(expr, Expr::value(ast::Value::Null));
                    *expr = call("unnest", vec![inner]);
                    return ControlFlow::Continue(());
                }
                // `coalesce(a.fnames, '{}')`: an empty array literal beside an array is
                // that array type's empty value (psycopg's CompositeInfo), as PostgreSQL
                // reads the unknown literal.
                if parts(&f.name) == ["coalesce"] {
                    if let FunctionArguments::List(list) = &mut f.args {
                        for arg in &mut list.args {
                            if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = arg {
                                if matches!(e, Expr::Value(v)
                                    if matches!(&v.value, ast::Value::SingleQuotedString(s) if s == "{}"))
                                {
                                    *e = call("make_array", vec![]);
                                }
                            }
                        }
                    }
                }
                // to_char(t, 'YYYY-MM-DD'), to_date / to_timestamp(s, 'YYYY-MM-DD'):
                // PostgreSQL's template as the strftime format DataFusion reads (it would
                // print the template itself: a wrong answer).
                let name = parts(&f.name);
                if matches!(name.as_slice(), [n] if ["to_char", "to_date", "to_timestamp"].contains(&n.as_str()))
                {
                    if let FunctionArguments::List(list) = &mut f.args {
                        if let [_, ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Value(
                            v,
                        )))] = list.args.as_mut_slice()
                        {
                            if let ast::Value::SingleQuotedString(template) = &mut v.value {
                                *template = crate::pg_catalog::datetime::strftime(template);
                            }
                        }
                    }
                }
                // generate_subscripts(a, dim) in a select list: unnest of its subscripts.
                if parts(&f.name) == ["generate_subscripts"] {
                    let subscripts = match &f.args {
                        FunctionArguments::List(list) => subscripts_of(&list.args),
                        _ => None,
                    };
                    if let Some(subscripts) = subscripts {
                        *expr = call("unnest", vec![subscripts]);
                        return ControlFlow::Continue(());
                    }
                }
                self.rewrite_array_subquery(expr);
            }
            Expr::Subquery(_) => self.rewrite_scalar_subquery(expr),
            // In catalog SQL, `CASE … THEN 0 …` is int4 as in PostgreSQL (DataFusion reads
            // integer literals as int8), so clients see the column types PostgreSQL sends.
            Expr::Case {
                conditions,
                else_result,
                ..
            } if self.catalog_only => {
                for result in conditions
                    .iter_mut()
                    .map(|c| &mut c.result)
                    .chain(else_result.iter_mut().map(|e| e.as_mut()))
                {
                    if let Expr::Value(v) = result {
                        if let ast::Value::Number(n, _) = &v.value {
                            if n.parse::<i32>().is_ok() {
                                as_int4(result);
                            }
                        }
                    }
                }
            }
            // `(record).field` on a computed record: get_field(record, 'field').
            Expr::CompoundFieldAccess { root, access_chain }
                if !matches!(
                    root.as_ref(),
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                ) && access_chain
                    .iter()
                    .all(|a| matches!(a, ast::AccessExpr::Dot(Expr::Identifier(_)))) =>
            {
                let mut value = std::mem::replace(root.as_mut(), Expr::value(ast::Value::Null));
                for access in access_chain.iter() {
                    if let ast::AccessExpr::Dot(Expr::Identifier(field)) = access {
                        let name = Expr::value(ast::Value::SingleQuotedString(
                            field.value.to_ascii_lowercase(),
                        ));
                        value = call("get_field", vec![value, name]);
                    }
                }
                *expr = value;
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                // DataFusion's LIKE escapes with backslash only: `ESCAPE '/'` becomes the
                // same pattern written with backslashes.
                if let Some(ast::Value::SingleQuotedString(c)) =
                    escape_char.as_ref().map(|e| &e.value)
                {
                    if c != "\\" && c.chars().count() == 1 {
                        let c = c.clone();
                        let text = |t: &str| Expr::value(ast::Value::SingleQuotedString(t.into()));
                        let inner =
                            std::mem::replace(pattern.as_mut(), Expr::value(ast::Value::Null));
                        let doubled = call("replace", vec![inner, text("\\"), text("\\\\")]);
                        **pattern = call("replace", vec![doubled, text(&c), text("\\")]);
                        *escape_char = None;
                    }
                }
            }
            Expr::Collate { expr: inner, .. } => {
                *expr = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
            }
            Expr::BinaryOp { op, left, right } => {
                if let BinaryOperator::PGCustomBinaryOperator(path) = op {
                    if let Some(plain) = path.last().and_then(|o| builtin_operator(o)) {
                        *op = plain;
                    }
                }
                // `roles = '{0}'`: an array compared with an array literal compares their
                // text forms (the literal's type comes from the other side in PostgreSQL).
                if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
                    let target = match (is_array_literal(left), is_array_literal(right)) {
                        (false, true) => Some(left),
                        (true, false) => Some(right),
                        _ => None,
                    };
                    if let Some(target) = target {
                        let arg = std::mem::replace(target.as_mut(), Expr::value(ast::Value::Null));
                        **target = call("sluice_array_text", vec![arg]);
                    }
                }
            }
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                unqualify_type(data_type);
                // `x::regtype::oid`, `typinput::oid`: a plain OID, whatever type the
                // operand is reported as (a cast between equal Arrow types would keep it).
                let to_oid = matches!(data_type, SqlType::Custom(n, m)
                    if m.is_empty() && parts(n).last().is_some_and(|t| t == "oid"));
                if to_oid
                    && (reg_in_call(inner).is_some()
                        || matches!(
                            inner.as_ref(),
                            Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                        ))
                {
                    let arg = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                    *expr = call("sluice_oid_in", vec![arg]);
                    return ControlFlow::Continue(());
                }
                if let Some(reg) = reg_type(data_type) {
                    let arg = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                    *expr = call(&format!("sluice_{reg}_in"), vec![arg]);
                } else if is_text_type(data_type) {
                    if let Some(reg) = reg_in_call(inner) {
                        let arg = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                        *expr = call(&format!("sluice_{reg}_out"), vec![arg]);
                    }
                } else if matches!(data_type, SqlType::Array(_)) {
                    // `'{r,p,f}'::text[]`: PostgreSQL's array input syntax, read here into
                    // `ARRAY['r','p','f']` (cast as written); DataFusion would take the
                    // whole text as one element.
                    if let Expr::Value(v) = inner.as_ref() {
                        if let ast::Value::SingleQuotedString(text) = &v.value {
                            if let Some(items) = pg_array_items(text) {
                                let elem = items
                                    .into_iter()
                                    .map(|item| match item {
                                        Some(text) => {
                                            Expr::value(ast::Value::SingleQuotedString(text))
                                        }
                                        None => Expr::value(ast::Value::Null),
                                    })
                                    .collect();
                                **inner = Expr::Array(ast::Array { elem, named: true });
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Rewriter<'_> {
    /// Correlated scalar subqueries over catalog tables. DataFusion decorrelates one only if
    /// it aggregates and relates outer and inner columns by equality, so:
    ///
    /// * a lookup by equality, `(SELECT x FROM … WHERE t.oid = a.oid ORDER BY y LIMIT 1)`,
    ///   becomes `(SELECT first_value(x ORDER BY y) FROM … WHERE t.oid = a.oid)` — catalog
    ///   lookups are by key, so this is the row PostgreSQL returns;
    /// * anything else (`oid = ANY(a.roles)`, `a.c <> t.c`, conditions on outer columns
    ///   only, aggregates) becomes `sluice_subquery('<SQL with $1…>', a.roles, …)`, run once
    ///   per outer row as PostgreSQL does (`pg_catalog::subquery`).
    ///
    /// Uncorrelated subqueries and subqueries over data tables are left to DataFusion.
    fn rewrite_scalar_subquery(&self, expr: &mut Expr) {
        let Expr::Subquery(query) = expr else {
            return;
        };
        if !self.query_reads_only_catalog(query) {
            return;
        }
        let scope = self.scope(query);
        let outer = outer_references(query, &scope);
        if outer.is_empty() {
            return;
        }
        if equality_correlated(query, &scope) {
            if contains_aggregate_projection(query) {
                // `(SELECT array_agg(x) … WHERE inner = outer)`: DataFusion's own.
                return;
            }
            if first_value_lookup(query) {
                return;
            }
        }
        let mut sql = query.as_ref().clone();
        let _ = ast::visit_expressions_mut(&mut sql, |e| {
            if let Expr::CompoundIdentifier(idents) = e {
                if let Some(i) = outer.iter().position(|o| same_ref(o, idents)) {
                    *e = Expr::value(ast::Value::Placeholder(format!("${}", i + 1)));
                }
            } else if let Expr::Identifier(ident) = e {
                if let Some(i) = outer
                    .iter()
                    .position(|o| same_ref(o, std::slice::from_ref(ident)))
                {
                    *e = Expr::value(ast::Value::Placeholder(format!("${}", i + 1)));
                }
            }
            ControlFlow::<()>::Continue(())
        });
        let sql = sql.to_string();
        let seal = crate::pg_catalog::subquery::seal(&sql);
        let mut args = vec![
            Expr::value(ast::Value::SingleQuotedString(sql)),
            Expr::value(ast::Value::SingleQuotedString(seal)),
        ];
        args.extend(outer.into_iter().map(|mut o| {
            if o.len() == 1 {
                Expr::Identifier(o.remove(0))
            } else {
                Expr::CompoundIdentifier(o)
            }
        }));
        *expr = call(crate::pg_catalog::subquery::NAME, args);
    }

    /// `ARRAY(SELECT x FROM … ORDER BY y)` → `coalesce((SELECT array_agg(x ORDER BY y)
    /// FROM …), make_array())`.
    fn rewrite_array_subquery(&self, expr: &mut Expr) {
        let Expr::Function(f) = expr else {
            return;
        };
        if parts(&f.name) != ["array"] {
            return;
        }
        let FunctionArguments::Subquery(query) = &mut f.args else {
            return;
        };
        let mut query = query.as_ref().clone();
        let order_by = match query.order_by.take() {
            Some(ast::OrderBy {
                kind: ast::OrderByKind::Expressions(exprs),
                ..
            }) => exprs,
            _ => Vec::new(),
        };
        let ast::SetExpr::Select(select) = query.body.as_mut() else {
            return;
        };
        let (ast::SelectItem::UnnamedExpr(value)
        | ast::SelectItem::ExprWithAlias { expr: value, .. }) = &mut select.projection[0]
        else {
            return;
        };
        let arg = std::mem::replace(value, Expr::value(ast::Value::Null));
        *value = with_order_by(call("array_agg", vec![arg]), order_by);
        *expr = Expr::Subquery(Box::new(query));
        self.rewrite_scalar_subquery(expr);
        // No rows is an empty array, not NULL (`coalesce(…, make_array())`).
        let subquery = std::mem::replace(expr, Expr::value(ast::Value::Null));
        *expr = call("coalesce", vec![subquery, call("make_array", vec![])]);
    }

    fn query_reads_only_catalog(&self, query: &Query) -> bool {
        reads_only_catalog(query, self.catalog, &self.ctes)
    }
}

/// Whether a subquery is one select, without grouping, whose outer columns appear only
/// in `outer = inner` conditions of its WHERE: what DataFusion decorrelates.
fn equality_correlated(query: &mut Query, scope: &Scope) -> bool {
    // `(SELECT count(1) FROM … WHERE … LIMIT 1)` (pgAdmin): an aggregate without GROUP BY
    // is one row, so a LIMIT of at least one changes nothing and goes (`ORDER BY … LIMIT 1`
    // of a plain select is rewritten elsewhere, as `first_value`).
    if let Some(limit) = &query.limit_clause {
        let one_row = contains_aggregate_projection(query)
            && matches!(query.body.as_ref(), ast::SetExpr::Select(s)
                if matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty()));
        let no_op = matches!(limit, ast::LimitClause::LimitOffset {
                limit: Some(Expr::Value(v)), offset: None, limit_by } if limit_by.is_empty()
                    && matches!(&v.value, ast::Value::Number(n, _)
                        if n.parse::<u64>().is_ok_and(|n| n >= 1)));
        if one_row && no_op {
            query.limit_clause = None;
        }
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    let plain = select.projection.len() == 1
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && query.fetch.is_none()
        && query.with.is_none();
    if !plain {
        return false;
    }
    // Outer columns anywhere but WHERE (select list, JOIN … ON): not a plain lookup.
    let selection = select.selection.take();
    let elsewhere = !outer_references(query, scope).is_empty();
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    select.selection = selection;
    if elsewhere {
        return false;
    }
    let conjuncts = select.selection.clone().map(split_and).unwrap_or_default();
    !conjuncts.iter().any(|c| is_non_equi_correlation(c, scope))
}

fn contains_aggregate_projection(query: &Query) -> bool {
    match query.body.as_ref() {
        ast::SetExpr::Select(select) => select.projection.iter().any(|item| match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        }),
        _ => false,
    }
}

/// An equality-correlated lookup becomes an aggregate DataFusion decorrelates:
/// `SELECT x … ORDER BY y LIMIT 1` → `SELECT first_value(x ORDER BY y) …`.
fn first_value_lookup(query: &mut Query) -> bool {
    let order_by = match query.order_by.take() {
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }) => exprs,
        _ => Vec::new(),
    };
    query.limit_clause = None;
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    if let ast::SelectItem::UnnamedExpr(value)
    | ast::SelectItem::ExprWithAlias { expr: value, .. } = &mut select.projection[0]
    {
        let arg = std::mem::replace(value, Expr::value(ast::Value::Null));
        *value = with_order_by(call("first_value", vec![arg]), order_by);
    }
    true
}

fn with_order_by(mut aggregate: Expr, order_by: Vec<ast::OrderByExpr>) -> Expr {
    if let (Expr::Function(f), false) = (&mut aggregate, order_by.is_empty()) {
        if let FunctionArguments::List(list) = &mut f.args {
            list.clauses
                .push(ast::FunctionArgumentClause::OrderBy(order_by));
        }
    }
    aggregate
}

/// The names a subquery itself defines: its relations (by alias or name) and their columns.
#[derive(Debug, Default)]
struct Scope {
    relations: HashSet<String>,
    columns: HashSet<String>,
    /// Some relation's columns are unknown (a CTE, a derived table): unqualified names
    /// are then taken as its own.
    opaque: bool,
}

impl Rewriter<'_> {
    fn scope(&self, query: &mut Query) -> Scope {
        struct Collect<'a>(&'a CatalogNames, Scope);
        impl VisitorMut for Collect<'_> {
            type Break = ();
            fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
                let (name, alias, is_function) = match factor {
                    TableFactor::Table {
                        name, alias, args, ..
                    } => (parts(name).last().cloned(), alias.as_ref(), args.is_some()),
                    TableFactor::Derived { alias, .. } => (None, alias.as_ref(), false),
                    TableFactor::UNNEST { alias, .. } => (None, alias.as_ref(), true),
                    _ => (None, None, false),
                };
                match name.as_ref().and_then(|n| self.0.columns.get(n)) {
                    Some(columns) => self.1.columns.extend(columns.iter().cloned()),
                    None if !is_function && alias.is_none_or(|a| a.columns.is_empty()) => {
                        self.1.opaque = true
                    }
                    None => {}
                }
                self.1.relations.extend(name);
                if let Some(alias) = alias {
                    let a = alias.name.value.to_ascii_lowercase();
                    if is_function && alias.columns.is_empty() {
                        // `generate_series(…) s`: `s` is also its column.
                        self.1.columns.insert(a.clone());
                    }
                    self.1.columns.extend(
                        alias
                            .columns
                            .iter()
                            .map(|c| c.name.value.to_ascii_lowercase()),
                    );
                    self.1.relations.insert(a);
                }
                ControlFlow::Continue(())
            }
        }
        let mut collect = Collect(self.catalog, Scope::default());
        let _ = query.visit(&mut collect);
        collect.1
    }
}

/// `q.col` references whose qualifier is not a relation of the query: the outer columns
/// it depends on, each once, in order of appearance.
fn outer_references(query: &mut Query, scope: &Scope) -> Vec<Vec<Ident>> {
    let mut outer: Vec<Vec<Ident>> = Vec::new();
    let _ = ast::visit_expressions_mut(query, |e| {
        let idents = match e {
            Expr::CompoundIdentifier(idents)
                if idents.len() >= 2 && !scope.relations.contains(&qualifier(idents)) =>
            {
                idents.clone()
            }
            // Unqualified: outer when no relation of the subquery has such a column.
            Expr::Identifier(ident)
                if ident.quote_style.is_none()
                    && !scope.opaque
                    && !scope.columns.contains(&ident.value.to_ascii_lowercase()) =>
            {
                vec![ident.clone()]
            }
            _ => return ControlFlow::<()>::Continue(()),
        };
        if !outer.iter().any(|o| same_ref(o, &idents)) {
            outer.push(idents);
        }
        ControlFlow::<()>::Continue(())
    });
    outer
}

/// The relation a `[schema.]table.column` reference names.
fn qualifier(idents: &[Ident]) -> String {
    idents[idents.len() - 2].value.to_ascii_lowercase()
}

fn same_ref(a: &[Ident], b: &[Ident]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.value.eq_ignore_ascii_case(&y.value))
}

fn split_and(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = split_and(*left);
            all.extend(split_and(*right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner)
        }
        other => vec![other],
    }
}

/// Whether a condition uses outer columns other than as `outer = inner`.
fn is_non_equi_correlation(condition: &Expr, scope: &Scope) -> bool {
    let side = |e: &Expr| {
        let (mut outer, mut inside) = (false, false);
        let _ = ast::visit_expressions(e, |e| {
            match e {
                Expr::CompoundIdentifier(idents) if idents.len() >= 2 => {
                    if scope.relations.contains(&qualifier(idents)) {
                        inside = true;
                    } else {
                        outer = true;
                    }
                }
                Expr::Identifier(i) => {
                    if scope.opaque || scope.columns.contains(&i.value.to_ascii_lowercase()) {
                        inside = true;
                    } else {
                        outer = true;
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        (outer, inside)
    };
    let (outer, inside) = side(condition);
    if !outer {
        return false;
    }
    if !inside {
        // Only outer columns: DataFusion cannot pull it up through the aggregate either.
        return true;
    }
    match condition {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (l, r) = (side(left), side(right));
            // outer = inner (either way round) is what DataFusion decorrelates.
            !((l == (true, false) && r == (false, true))
                || (l == (false, true) && r == (true, false)))
        }
        _ => true,
    }
}

fn contains_aggregate(expr: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_agg",
        "first_value",
        "last_value",
    ];
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        if let Expr::Function(f) = e {
            if parts(&f.name)
                .last()
                .is_some_and(|n| AGGREGATES.contains(&n.as_str()))
            {
                found = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `pg_catalog.text` → `text`: built-in type names may be schema-qualified; and
/// `character varying(n)` / `varchar(n)` is sluice's `varchar`.
fn unqualify_type(data_type: &mut SqlType) {
    // varchar is reported as varchar (DataFusion would make it text): the type planner
    // pins it (its length is not enforced, as before).
    if let SqlType::CharacterVarying(_) | SqlType::Varchar(_) = data_type {
        *data_type = SqlType::Custom(ObjectName::from(vec![Ident::new("varchar")]), vec![]);
        return;
    }
    if let SqlType::Array(
        ast::ArrayElemTypeDef::SquareBracket(inner, _)
        | ast::ArrayElemTypeDef::AngleBracket(inner)
        | ast::ArrayElemTypeDef::Parenthesis(inner),
    ) = data_type
    {
        return unqualify_type(inner);
    }
    let SqlType::Custom(name, modifiers) = data_type else {
        return;
    };
    let p = parts(name);
    if p.len() != 2 || p[0] != PG_CATALOG || !modifiers.is_empty() {
        return;
    }
    let bare = match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) if i.quote_style.is_some() => i.to_string(),
        _ => p[1].clone(),
    };
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    if let Ok(parsed) = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&bare)
        .and_then(|mut p| p.parse_data_type())
    {
        *data_type = parsed;
    }
}

/// The OID-alias types, by the name their in/out functions use.
fn reg_type(data_type: &SqlType) -> Option<&'static str> {
    let name = match data_type {
        SqlType::Regclass => return Some("regclass"),
        SqlType::Custom(name, _) => name,
        _ => return None,
    };
    Some(match parts(name).last()?.as_str() {
        "regclass" => "regclass",
        "regtype" => "regtype",
        "regproc" => "regproc",
        "regprocedure" => "regprocedure",
        "regnamespace" => "regnamespace",
        "regrole" => "regrole",
        _ => return None,
    })
}

fn reg_in_call(expr: &Expr) -> Option<String> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let name = parts(&f.name).join(".");
    name.strip_prefix("sluice_")
        .and_then(|n| n.strip_suffix("_in"))
        .map(str::to_string)
}

fn is_text_type(data_type: &SqlType) -> bool {
    match data_type {
        SqlType::Text | SqlType::Varchar(_) | SqlType::CharacterVarying(_) | SqlType::String(_) => {
            true
        }
        SqlType::Custom(name, _) => parts(name)
            .last()
            .is_some_and(|n| n == "name" || n == "varchar"),
        _ => false,
    }
}

/// Table functions catalog SQL uses in FROM (they read no data).
const TABLE_FUNCTIONS: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "range",
    "pg_get_keywords",
    "regexp_split_to_table",
];

/// Prefix of the aliases given to repeated select-list expressions (`SELECT NULL, NULL`):
/// DataFusion needs distinct names, PostgreSQL allows repeats. The reported column name is
/// still PostgreSQL's (`postgres_names` looks through these aliases).
pub const DUPLICATE_ALIAS: &str = "__sluice_dup_";

/// `SELECT n.oid, n.* FROM pg_namespace n` (DBeaver, and many tools, select `x.oid, x.*`):
/// PostgreSQL allows the repeated `oid`, DataFusion refuses repeated names. A qualified
/// wildcard over a catalog table becomes its columns, in order, so a repeat is aliased like
/// any other (`alias_duplicate_columns`) and still reported under its own name.
fn expand_catalog_wildcards(
    select: &mut ast::Select,
    catalog: &CatalogNames,
    ctes: &HashSet<String>,
) {
    if select.projection.len() < 2 {
        return;
    }
    // The name each catalog relation is referred to by (its alias, else its table name).
    let mut relations: std::collections::HashMap<String, &Vec<String>> = Default::default();
    for (reference, table, _) in catalog_relations(select, catalog, ctes) {
        if let Some(columns) = catalog.columns.get(&table) {
            relations.insert(reference.to_ascii_lowercase(), columns);
        }
    }
    if relations.is_empty() {
        return;
    }
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in select.projection.drain(..) {
        if let ast::SelectItem::QualifiedWildcard(
            ast::SelectItemQualifiedWildcardKind::ObjectName(name),
            options,
        ) = &item
        {
            let qualifier = match name.0.as_slice() {
                [ObjectNamePart::Identifier(i)] => Some(i.clone()),
                _ => None,
            };
            let columns = qualifier
                .as_ref()
                .and_then(|q| relations.get(&q.value.to_ascii_lowercase()));
            if let (Some(qualifier), Some(columns), true) = (
                qualifier.as_ref(),
                columns,
                *options == ast::WildcardAdditionalOptions::default(),
            ) {
                for column in columns.iter() {
                    projection.push(ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(
                        vec![qualifier.clone(), Ident::new(column)],
                    )));
                }
                continue;
            }
        }
        projection.push(item);
    }
    select.projection = projection;
}

/// `SELECT generate_series(1, 3)`: in PostgreSQL a set-returning function in the select
/// list gives one row per element; DataFusion's `generate_series` returns one array. A
/// top-level call is unnested (named as PostgreSQL names it).
fn unnest_set_returning_calls(select: &mut ast::Select) {
    for item in select.projection.iter_mut() {
        let (expr, alias) = match item {
            ast::SelectItem::UnnamedExpr(expr) => (expr, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        let Expr::Function(f) = &*expr else { continue };
        let name = parts(&f.name);
        // Set-returning functions sluice computes as one array per row.
        let function = match name.as_slice() {
            [n] => n,
            [s, n] if s == PG_CATALOG => n,
            _ => continue,
        };
        if ![
            "generate_series",
            "pg_partition_ancestors",
            "regexp_split_to_table",
        ]
        .contains(&function.as_str())
        {
            continue;
        }
        let function = Ident::new(function.clone());
        let call = std::mem::replace(expr, Expr::value(ast::Value::Null));
        *item = ast::SelectItem::ExprWithAlias {
            expr: self::call("unnest", vec![call]),
            alias: alias.unwrap_or(function),
        };
    }
}

fn alias_duplicate_columns(select: &mut ast::Select) {
    // DataFusion names a cast after what it casts, wherever it is: `'1'::int4` and
    // `'1'::int8` are one name, and so are `0.1 + 0.2` and `0.1::float8 + 0.2::float8`.
    fn datafusion_name(expr: &Expr) -> String {
        let mut expr = expr.clone();
        let _ = ast::visit_expressions_mut(&mut expr, |e| {
            while let Expr::Cast { expr: inner, .. } | Expr::Nested(inner) = e {
                let inner = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                *e = inner;
            }
            ControlFlow::<()>::Continue(())
        });
        expr.to_string()
    }
    if select.projection.len() < 2 {
        return;
    }
    let mut seen = HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let ast::SelectItem::UnnamedExpr(expr) = item {
            if !seen.insert(datafusion_name(expr)) {
                let expr = std::mem::replace(expr, Expr::value(ast::Value::Null));
                *item = ast::SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', format!("{DUPLICATE_ALIAS}{i}")),
                };
            }
        }
    }
}

/// `CASE a.attnotnull WHEN 't' THEN …`: a simple CASE whose WHEN values are untyped
/// literals compares them as the operand's type, as PostgreSQL reads an unknown literal.
/// As a searched CASE (`WHEN a.attnotnull = 't'`), the comparison planner does exactly
/// that (DataFusion would refuse to compare Boolean with Utf8).
fn simple_case_as_searched(expr: &mut Expr) {
    let Expr::Case {
        operand: operand @ Some(_),
        conditions,
        ..
    } = expr
    else {
        return;
    };
    let untyped = conditions.iter().any(|c| {
        matches!(
            &c.condition,
            Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_))
        )
    });
    if !untyped {
        return;
    }
    let Some(operand) = operand.take() else {
        return;
    };
    for c in conditions.iter_mut() {
        let value = std::mem::replace(&mut c.condition, Expr::value(ast::Value::Null));
        c.condition = Expr::BinaryOp {
            left: operand.clone(),
            op: BinaryOperator::Eq,
            right: Box::new(value),
        };
    }
}

/// The catalog tables a select reads: (the name it refers to each by — its alias, else its
/// table name —, the table, whether it is pg_catalog's rather than information_schema's).
fn catalog_relations(
    select: &ast::Select,
    catalog: &CatalogNames,
    ctes: &HashSet<String>,
) -> Vec<(String, String, bool)> {
    let factors = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    let mut out = Vec::new();
    for factor in factors {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            continue;
        };
        let p = parts(name);
        let (table, in_pg_catalog) = match p.as_slice() {
            [t] if !ctes.contains(t) && catalog.pg_catalog.contains(t) => (t, true),
            [s, t] if s == PG_CATALOG => (t, catalog.pg_catalog.contains(t)),
            [s, t] if s == INFORMATION_SCHEMA => (t, false),
            _ => continue,
        };
        let reference = alias
            .as_ref()
            .map_or_else(|| table.clone(), |a| a.name.value.clone());
        out.push((reference, table.clone(), in_pg_catalog));
    }
    out
}

/// The pg_catalog columns of type regproc (sluice keeps the function's OID), by table.
const REGPROC_COLUMNS: &[(&str, &[&str])] = &[
    (
        "pg_type",
        &[
            "typinput",
            "typoutput",
            "typreceive",
            "typsend",
            "typmodin",
            "typmodout",
            "typanalyze",
            "typsubscript",
        ],
    ),
    ("pg_proc", &["prosupport"]),
    ("pg_operator", &["oprcode", "oprrest", "oprjoin"]),
    ("pg_am", &["amhandler"]),
    ("pg_range", &["rngcanonical", "rngsubdiff"]),
    ("pg_conversion", &["conproc"]),
    (
        "pg_aggregate",
        &["aggfnoid", "aggtransfn", "aggfinalfn", "aggcombinefn"],
    ),
];

/// Catalog columns that need PostgreSQL's reading, in a select over pg_catalog tables:
/// - `c.xmin` (a system column: the writing transaction) is 1, the bootstrap's;
/// - `c.tableoid` (PostgreSQL's system column: the OID of the table a row is in; DBD::Pg
///   joins pg_description on it) becomes that table's OID,
///   `'pg_catalog.<table>'::regclass::oid`;
/// - a regproc column cast to text (`typreceive::text`, which the ADBC PostgreSQL driver
///   matches against `array_recv`) is the function's name, `sluice_regproc_out(col)`.
///   Elsewhere (joins on `p.oid = t.typinput`) it stays the OID it is; output as it is,
///   it is a regproc column (the name in text, the OID in binary: `reg_output` in lib.rs).
fn catalog_columns(select: &mut ast::Select, catalog: &CatalogNames, ctes: &HashSet<String>) {
    let tables: Vec<(String, String)> = catalog_relations(select, catalog, ctes)
        .into_iter()
        .filter(|(_, _, in_pg_catalog)| *in_pg_catalog)
        .map(|(reference, table, _)| (reference, table))
        .collect();
    if tables.is_empty() {
        return;
    }
    /// The relations of this select, and how deep in subqueries the visit is.
    struct TableOid<'a>(&'a [(String, String)], usize);
    impl TableOid<'_> {
        /// Whether `expr` names a regproc column of one of the select's catalog tables.
        fn regproc(&self, expr: &Expr) -> bool {
            let is_regproc = |table: &str, column: &str| {
                REGPROC_COLUMNS
                    .iter()
                    .any(|(t, columns)| *t == table && columns.contains(&column))
            };
            match expr {
                Expr::CompoundIdentifier(idents) => match idents.as_slice() {
                    [r, c] => self
                        .0
                        .iter()
                        .any(|(reference, t)| reference == &r.value && is_regproc(t, &c.value)),
                    _ => false,
                },
                Expr::Identifier(c) => {
                    let owners: Vec<_> = self
                        .0
                        .iter()
                        .filter(|(_, t)| is_regproc(t, &c.value))
                        .collect();
                    owners.len() == 1
                }
                _ => false,
            }
        }
    }
    impl VisitorMut for TableOid<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.1 += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.1 -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if self.1 > 0 {
                return ControlFlow::Continue(()); // a subquery's own relations
            }
            if let Expr::Cast {
                expr: inner,
                data_type,
                ..
            } = expr
            {
                let is_text = matches!(
                    data_type,
                    SqlType::Text | SqlType::Varchar(_) | SqlType::CharacterVarying(_)
                ) || matches!(data_type, SqlType::Custom(n, _) if parts(n).last().is_some_and(|t| t == "text"));
                if is_text && self.regproc(inner) {
                    let column = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                    *expr = call("sluice_regproc_out", vec![column]);
                    return ControlFlow::Continue(());
                }
            }
            // `c.xmin`: the transaction that wrote the row; catalog rows are the
            // bootstrap's, transaction 1 (PostgreSQL's FrozenTransactionId is 2, its
            // bootstrap rows say 1).
            let xmin = match expr {
                Expr::CompoundIdentifier(idents) => matches!(idents.as_slice(),
                    [r, c] if c.value.eq_ignore_ascii_case("xmin")
                        && self.0.iter().any(|(reference, _)| reference == &r.value)),
                Expr::Identifier(c) => c.value.eq_ignore_ascii_case("xmin") && self.0.len() == 1,
                _ => false,
            };
            if xmin {
                *expr = Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::value(ast::Value::Number("1".into(), false))),
                    data_type: SqlType::Custom(ObjectName::from(vec![Ident::new("xid")]), vec![]),
                    array: false,
                    format: None,
                };
                return ControlFlow::Continue(());
            }
            let table = match expr {
                Expr::CompoundIdentifier(idents) => match idents.as_slice() {
                    [r, c] if c.value.eq_ignore_ascii_case("tableoid") => self
                        .0
                        .iter()
                        .find(|(reference, _)| reference == &r.value)
                        .map(|(_, t)| t.clone()),
                    _ => None,
                },
                Expr::Identifier(c)
                    if c.value.eq_ignore_ascii_case("tableoid") && self.0.len() == 1 =>
                {
                    Some(self.0[0].1.clone())
                }
                _ => None,
            };
            if let Some(table) = table {
                *expr = Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::Cast {
                        kind: ast::CastKind::DoubleColon,
                        expr: Box::new(Expr::value(ast::Value::SingleQuotedString(format!(
                            "{PG_CATALOG}.{table}"
                        )))),
                        data_type: SqlType::Regclass,
                        array: false,
                        format: None,
                    }),
                    data_type: SqlType::Custom(ObjectName::from(vec![Ident::new("oid")]), vec![]),
                    array: false,
                    format: None,
                };
            }
            ControlFlow::Continue(())
        }
    }
    // Only the select's own expressions (a subquery has its own FROM).
    let visitor = &mut TableOid(&tables, 0);
    for item in &mut select.projection {
        let _ = item.visit(visitor);
    }
    if let Some(selection) = &mut select.selection {
        let _ = selection.visit(visitor);
    }
    for from in &mut select.from {
        for join in &mut from.joins {
            let _ = join.join_operator.visit(visitor);
        }
    }
}

/// `generate_subscripts(a, dim) AS k` in FROM, a table function DataFusion lacks, is
/// `unnest(<its subscripts>) AS k(k)` (see [`subscripts_of`]), also over the row before it
/// (`FROM pg_index i, generate_subscripts(i.indkey, 1) k`, see [`unnest_lateral_joins`]).
fn subscripts_as_unnest(select: &mut ast::Select) {
    let factors = select.from.iter_mut().flat_map(|from| {
        std::iter::once(&mut from.relation).chain(from.joins.iter_mut().map(|j| &mut j.relation))
    });
    for factor in factors {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            continue;
        };
        let function = parts(name);
        let system = function.len() == 1 || function[0] == PG_CATALOG;
        if !system || function.last().map(String::as_str) != Some("generate_subscripts") {
            continue;
        }
        let Some(subscripts) = subscripts_of(&args.args) else {
            continue;
        };
        let mut alias = alias.clone().unwrap_or_else(|| ast::TableAlias {
            explicit: true,
            name: Ident::new("generate_subscripts"),
            columns: Vec::new(),
            at: None,
        });
        if alias.columns.is_empty() {
            alias.columns.push(ast::TableAliasColumnDef::from_name(
                alias.name.value.clone(),
            ));
        }
        *factor = TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs: vec![subscripts],
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        };
    }
}

/// `FROM t AS r CROSS JOIN unnest(r.a) AS k` — a set-returning function over the row
/// before it (PostgreSQL's implicit LATERAL), which DataFusion cannot decorrelate — becomes
/// `FROM (SELECT r.*, unnest(r.a) AS k FROM t AS r) AS r`, with `k.k` read as `r.k`. The
/// ADBC PostgreSQL driver reads key columns this way (`CROSS JOIN UNNEST(conkey) AS
/// conkeys`); Django writes `FROM pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY
/// koi(key, option, arridx)`. The unnest follows a plain table (as its first join or as the
/// next item of the FROM list), its columns named (see [`unnest_items`]).
fn unnest_lateral_joins(select: &mut ast::Select) {
    // `FROM t r, unnest(r.a) k` is `FROM t r CROSS JOIN unnest(r.a) k`.
    let mut i = 1;
    while i < select.from.len() {
        let lateral_unnest = matches!(select.from[i].relation, TableFactor::UNNEST { .. })
            && select.from[i].joins.is_empty()
            && select.from[i - 1].joins.is_empty()
            && matches!(
                select.from[i - 1].relation,
                TableFactor::Table { args: None, .. }
            );
        if lateral_unnest {
            let unnest = select.from.remove(i);
            select.from[i - 1].joins.push(ast::Join {
                relation: unnest.relation,
                global: false,
                join_operator: ast::JoinOperator::CrossJoin(ast::JoinConstraint::None),
            });
        }
        i += 1;
    }
    let mut renamed: Vec<(String, String, String)> = Vec::new();
    for from in &mut select.from {
        let Some(first) = from.joins.first() else {
            continue;
        };
        if !matches!(
            first.join_operator,
            ast::JoinOperator::CrossJoin(ast::JoinConstraint::None)
        ) {
            continue;
        }
        let TableFactor::UNNEST {
            alias: Some(k),
            array_exprs,
            with_offset: false,
            with_ordinality,
            ..
        } = &first.relation
        else {
            continue;
        };
        let Some((items, columns)) = unnest_items(array_exprs, k, *with_ordinality) else {
            continue;
        };
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &from.relation
        else {
            continue;
        };
        let r = match alias {
            Some(a) if a.columns.is_empty() => a.name.clone(),
            None => match name.0.last().and_then(|p| p.as_ident()) {
                Some(i) => i.clone(),
                None => continue,
            },
            Some(_) => continue,
        };
        let sql = format!("SELECT {r}.*, {items} FROM {}", from.relation);
        let Some(subquery) = parse_query(&sql) else {
            continue;
        };
        renamed.extend(
            columns
                .into_iter()
                .map(|column| (k.name.value.clone(), column, r.value.clone())),
        );
        from.relation = TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(ast::TableAlias {
                explicit: true,
                name: r,
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        };
        from.joins.remove(0);
    }
    if renamed.is_empty() {
        return;
    }
    // `k.*`: the unnest's columns, now the derived table's.
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in std::mem::take(&mut select.projection) {
        let unnest = match &item {
            ast::SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => parts(name)
                .last()
                .filter(|k| renamed.iter().any(|(alias, _, _)| alias == *k))
                .cloned(),
            _ => None,
        };
        match unnest {
            Some(k) => projection.extend(renamed.iter().filter(|(a, _, _)| *a == k).map(
                |(_, column, r)| {
                    ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                        Ident::with_quote('"', r.clone()),
                        Ident::with_quote('"', column.clone()),
                    ]))
                },
            )),
            None => projection.push(item),
        }
    }
    select.projection = projection;
    struct Requalify<'a>(&'a [(String, String, String)]);
    impl VisitorMut for Requalify<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(idents) = expr {
                if let [k, c] = idents.as_mut_slice() {
                    if let Some((_, _, r)) = self
                        .0
                        .iter()
                        .find(|(alias, column, _)| alias == &k.value && column == &c.value)
                    {
                        *k = Ident::new(r.clone());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = select.visit(&mut Requalify(&renamed));
}

/// Each SELECT of a set expression (both sides of UNION/INTERSECT/EXCEPT, parenthesized
/// queries), for the rewrites of select lists.
fn for_each_select(body: &mut ast::SetExpr, f: &mut impl FnMut(&mut ast::Select)) {
    match body {
        ast::SetExpr::Select(select) => f(select),
        ast::SetExpr::SetOperation { left, right, .. } => {
            for_each_select(left, f);
            for_each_select(right, f);
        }
        ast::SetExpr::Query(q) => for_each_select(q.body.as_mut(), f),
        _ => {}
    }
}

/// The elements of a one-dimensional PostgreSQL array literal (`{a,"b c",NULL}`; `None` is
/// NULL), or `None` when the text is not one (nested arrays, bounds decorations, bad quoting
/// are left to the cast).
#[doc(hidden)] // for the integration tests (planner/tests/compat.rs)
pub fn pg_array_items(text: &str) -> Option<Vec<Option<String>>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if body.trim().is_empty() {
        return Some(items);
    }
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let item = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            Some(value)
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                match c {
                    ',' => break,
                    '{' | '}' | '"' => return None,
                    '\\' => {
                        chars.next();
                        value.push(chars.next()?);
                        continue;
                    }
                    c => value.push(c),
                }
                chars.next();
            }
            let value = value.trim_end().to_string();
            if value.is_empty() {
                return None;
            }
            (!value.eq_ignore_ascii_case("null")).then_some(value)
        };
        items.push(item);
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

fn is_array_literal(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(&v.value,
        ast::Value::SingleQuotedString(s) if s.starts_with('{') && s.ends_with('}')))
}

fn builtin_operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `generate_series` as PostgreSQL takes it: int4 bounds (`array_upper(…)`) and typed
/// NULLs, which DataFusion's own accepts only as int8 and untyped NULL.
#[derive(Debug)]
pub struct PgGenerateSeries(pub Arc<dyn TableFunctionImpl>);

impl TableFunctionImpl for PgGenerateSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        use datafusion::common::ScalarValue;
        let exprs: Vec<LogicalExpr> = args
            .exprs()
            .iter()
            .map(|e| match e {
                LogicalExpr::Literal(v, m) if v.is_null() => {
                    LogicalExpr::Literal(ScalarValue::Null, m.clone())
                }
                LogicalExpr::Literal(v, m) if v.data_type().is_integer() => {
                    match v.cast_to(&DataType::Int64) {
                        Ok(v) => LogicalExpr::Literal(v, m.clone()),
                        Err(_) => e.clone(),
                    }
                }
                other => other.clone(),
            })
            .collect();
        let series = self
            .0
            .call_with_args(TableFunctionArgs::new(&exprs, args.session()))?;
        // int4 bounds give an int4 series, as PostgreSQL types it.
        let int4 = exprs.iter().all(|e| match e {
            LogicalExpr::Literal(ScalarValue::Int64(Some(v)), _) => i32::try_from(*v).is_ok(),
            _ => false,
        });
        if !int4 {
            return Ok(series);
        }
        use datafusion::logical_expr::{cast, col, LogicalPlanBuilder};
        let value = series
            .schema()
            .fields()
            .first()
            .map(|f| f.name().clone())
            .unwrap_or_else(|| "value".into());
        let plan = LogicalPlanBuilder::scan(
            "generate_series",
            datafusion::catalog::default_table_source::provider_as_source(series),
            None,
        )?
        .project(vec![cast(col(value.as_str()), DataType::Int32).alias(value)])?
        .build()?;
        Ok(Arc::new(datafusion::catalog::view::ViewTable::new(
            plan, None,
        )))
    }
}

/// PostgreSQL's untyped string literals in comparisons: `indisprimary = 't'`,
/// `oid = '16384'`, `d = '2024-01-01'` compare as the other side's type, as PostgreSQL
/// reads an unknown-typed literal (DataFusion would refuse `Boolean = Utf8`).
#[derive(Debug)]
pub struct UnknownLiteralPlanner;

impl ExprPlanner for UnknownLiteralPlanner {
    /// `EXTRACT(field FROM x)`: PostgreSQL's, numeric (see `pg_catalog::datetime`).
    fn plan_extract(&self, args: Vec<LogicalExpr>) -> DfResult<PlannerResult<Vec<LogicalExpr>>> {
        Ok(PlannerResult::Planned(LogicalExpr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                crate::pg_catalog::datetime::extract(),
                args,
            ),
        )))
    }

    /// `indkey[0]`: PostgreSQL's vectors (int2vector, oidvector: pg_index.indkey,
    /// pg_proc.proargtypes, …) count from 0, where arrays count from 1. A subscript of a
    /// column of one of those types (its field says so) reads the element it names.
    fn plan_field_access(
        &self,
        expr: datafusion::logical_expr::planner::RawFieldAccessExpr,
        schema: &datafusion::common::DFSchema,
    ) -> DfResult<PlannerResult<datafusion::logical_expr::planner::RawFieldAccessExpr>> {
        use datafusion::logical_expr::{ExprSchemable, GetFieldAccess};
        let GetFieldAccess::ListIndex { key } = &expr.field_access else {
            return Ok(PlannerResult::Original(expr));
        };
        let is_vector = expr
            .expr
            .to_field(schema)
            .is_ok_and(|(_, field)| crate::pg_catalog::functions::is_vector(&field));
        if !is_vector {
            return Ok(PlannerResult::Original(expr));
        }
        let one = LogicalExpr::Literal(datafusion::common::ScalarValue::Int64(Some(1)), None);
        let index = datafusion::logical_expr::binary_expr(
            datafusion::logical_expr::cast(key.as_ref().clone(), DataType::Int64),
            datafusion::logical_expr::Operator::Plus,
            one,
        );
        Ok(PlannerResult::Planned(
            datafusion::functions_nested::expr_fn::array_element(expr.expr, index),
        ))
    }

    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        schema: &datafusion::common::DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::ExprSchemable;
        // `date ± interval` is a timestamp in PostgreSQL; DataFusion keeps the date and
        // drops the interval's hours. An interval constant with a time of day makes the
        // date a timestamp; whole days and months keep date arithmetic — the same instants,
        // and a date column compared with the result keeps its pruning (TPC-H's
        // `l_shipdate <= date '…' - interval '90' day`). Only the constant is looked at
        // first: typing the other side walks it, which over a long `a + b + …` chain at
        // every level would cost its square.
        if matches!(expr.op, BinaryOperator::Plus | BinaryOperator::Minus) {
            let timed_interval = |e: &LogicalExpr| match e {
                LogicalExpr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
                    v.nanoseconds != 0
                }
                LogicalExpr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
                    v.milliseconds != 0
                }
                _ => false,
            };
            let is_date = |e: &LogicalExpr| {
                matches!(e.get_type(schema), Ok(DataType::Date32 | DataType::Date64))
            };
            let timestamp =
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
            if timed_interval(&expr.right) && is_date(&expr.left) {
                expr.left = datafusion::logical_expr::cast(expr.left, timestamp);
            } else if expr.op == BinaryOperator::Plus
                && timed_interval(&expr.left)
                && is_date(&expr.right)
            {
                expr.right = datafusion::logical_expr::cast(expr.right, timestamp);
            }
            return Ok(PlannerResult::Original(expr));
        }
        let comparison = matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        if !comparison {
            return Ok(PlannerResult::Original(expr));
        }
        let coerce = |literal: &mut LogicalExpr, other: &LogicalExpr| {
            let LogicalExpr::Literal(ScalarValue::Utf8(Some(text)), _) = literal else {
                return;
            };
            let Ok(target) = other.get_type(schema) else {
                return;
            };
            let readable = target == DataType::Boolean
                || target.is_integer()
                || target.is_floating()
                || matches!(
                    target,
                    DataType::Date32 | DataType::Timestamp(..) | DataType::Decimal128(..)
                );
            if !readable {
                return;
            }
            let text = match (target == DataType::Boolean, text.trim()) {
                (true, "t" | "true" | "yes" | "on" | "1") => "true".to_string(),
                (true, "f" | "false" | "no" | "off" | "0") => "false".to_string(),
                (_, other) => other.to_string(),
            };
            if let Ok(value) = ScalarValue::Utf8(Some(text)).cast_to(&target) {
                *literal = LogicalExpr::Literal(value, None);
            }
        };
        let (left, right) = (expr.left.clone(), expr.right.clone());
        coerce(&mut expr.left, &right);
        coerce(&mut expr.right, &left);
        Ok(PlannerResult::Original(expr))
    }
}

/// `xid`: a transaction id (reported as such; its value is an unsigned 32-bit number).
const XID: u32 = 28;

/// PostgreSQL's system types as Arrow types.
#[derive(Debug, Default)]
pub struct PgTypePlanner;

impl TypePlanner for PgTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> DfResult<Option<FieldRef>> {
        let SqlType::Custom(name, _) = sql_type else {
            return Ok(None);
        };
        let Some(last) = name.0.last() else {
            return Ok(None);
        };
        let ObjectNamePart::Identifier(ident) = last else {
            return Ok(None);
        };
        let lower = ident.value.to_ascii_lowercase();
        let pinned = |t: DataType, oid: u32| {
            Field::new("", t, true).with_metadata(
                [(PG_TYPE_KEY.to_string(), oid.to_string())]
                    .into_iter()
                    .collect(),
            )
        };
        let field = match lower.as_str() {
            // `x::oid` stays unpinned (a union of `0::oid` with an oid column must have one
            // schema); `'int4'::regtype::oid` is a plain OID again in `reg_output`.
            "oid" | "regclass" | "regtype" | "regproc" | "regprocedure" | "regnamespace"
            | "regrole" | "regoper" | "regoperator" | "regconfig" | "regdictionary" | "cid" => {
                Field::new("", DataType::UInt32, true)
            }
            "name" => pinned(DataType::Utf8, oids::NAME),
            "varchar" => pinned(DataType::Utf8, oids::VARCHAR),
            // information_schema's domains, as the types they are over.
            "sql_identifier" => pinned(DataType::Utf8, oids::NAME),
            "character_data" | "yes_or_no" => pinned(DataType::Utf8, oids::VARCHAR),
            "cardinal_number" => pinned(DataType::Int32, oids::INT4),
            "time_stamp" => Field::new(
                "",
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("UTC".into()),
                ),
                true,
            ),
            "xid" => pinned(DataType::UInt32, XID),
            "char" if ident.quote_style.is_some() => pinned(DataType::Utf8, oids::CHAR),
            "pg_node_tree" | "aclitem" | "regconfig_text" => Field::new("", DataType::Utf8, true),
            // Vectors count from 0 (`indkey[0]`, `array_lower`): the type says so.
            "int2vector" => pinned(
                DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
                22,
            ),
            "oidvector" => pinned(
                DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
                30,
            ),
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(field)))
    }
}

/// Databricks' time travel, `FROM t VERSION AS OF 3` and `FROM t TIMESTAMP AS OF '…'`,
/// which the PostgreSQL grammar does not have: the table reference becomes the name the
/// catalog resolves to that snapshot (`"t@v3"`, `"t@t2024-05-01"`), aliased back to `t` so
/// that `t.column` still resolves. Text without `AS OF` is returned as it is.
pub fn rewrite_time_travel(sql: &str) -> Result<std::borrow::Cow<'_, str>, QueryError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

    if !sql
        .as_bytes()
        .windows(2)
        .any(|w| w.eq_ignore_ascii_case(b"of"))
    {
        return Ok(sql.into());
    }
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        // The parser reports the error.
        return Ok(sql.into());
    };
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect();
    let word = |i: usize, keyword: Keyword| matches!(&tokens[i], Token::Word(w) if w.keyword == keyword && w.quote_style.is_none());
    // Token index → replacement (None: dropped).
    let mut replace: std::collections::HashMap<usize, Option<String>> = Default::default();
    for k in 1..significant.len().saturating_sub(3) {
        let [name, kind, as_, of, value] = [k - 1, k, k + 1, k + 2, k + 3].map(|j| significant[j]);
        if !word(as_, Keyword::AS) || !word(of, Keyword::OF) {
            continue;
        }
        let Token::Word(Word {
            value: table,
            quote_style,
            ..
        }) = &tokens[name]
        else {
            continue;
        };
        let suffix = match (&tokens[kind], &tokens[value]) {
            (Token::Word(w), Token::Number(n, _))
                if word(kind, Keyword::VERSION) && w.quote_style.is_none() =>
            {
                let v: u64 = n.parse().map_err(|_| {
                    QueryError::new(
                        ErrorKind::InvalidValue,
                        format!("VERSION AS OF {n}: a version is a whole number"),
                    )
                })?;
                format!("v{v}")
            }
            (Token::Word(_), Token::SingleQuotedString(t)) if word(kind, Keyword::TIMESTAMP) => {
                if t.contains('"') {
                    return Err(QueryError::new(
                        ErrorKind::InvalidText,
                        format!("TIMESTAMP AS OF {t:?} is not a timestamp"),
                    ));
                }
                format!("t{t}")
            }
            _ => continue,
        };
        let table = if quote_style.is_some() {
            table.clone()
        } else {
            table.to_lowercase()
        };
        replace.insert(name, Some(format!("\"{table}@{suffix}\"")));
        for j in name + 1..=value {
            replace.insert(j, None);
        }
        // No alias follows: name the snapshot after its table.
        let aliased = significant
            .get(k + 4)
            .is_some_and(|&next| match &tokens[next] {
                Token::Word(w) => {
                    w.keyword == Keyword::AS
                        || w.quote_style.is_some()
                        || w.keyword == Keyword::NoKeyword
                }
                _ => false,
            });
        if !aliased {
            replace.insert(value, Some(format!(" AS \"{table}\"")));
        }
    }
    if replace.is_empty() {
        return Ok(sql.into());
    }
    let mut out = String::with_capacity(sql.len() + 16);
    for (i, token) in tokens.iter().enumerate() {
        match replace.get(&i) {
            Some(Some(text)) => out.push_str(text),
            Some(None) => {}
            None => out.push_str(&token.to_string()),
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod time_travel_tests {
    use super::rewrite_time_travel;

    #[test]
    fn version_and_timestamp_become_snapshot_names() {
        let r = |s| rewrite_time_travel(s).expect("valid").into_owned();
        assert_eq!(
            r("select count(*) from lake.Sales VERSION AS OF 3 where x = 1"),
            "select count(*) from lake.\"sales@v3\" AS \"sales\" where x = 1"
        );
        assert_eq!(
            r("select s.a from sales timestamp as of '2024-05-01 10:00:00' s"),
            "select s.a from \"sales@t2024-05-01 10:00:00\" s"
        );
        assert_eq!(r("select 1 as of"), "select 1 as of");
        assert!(rewrite_time_travel("select * from t version as of 1.5").is_err());
    }
}
