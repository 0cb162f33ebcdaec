//! Spark's forms DataFusion plans under another name or shape, rewritten on the parsed
//! statement of a Databricks session (never on its text):
//!
//! - the unit a function takes as a keyword: `timestampadd(MONTH, 1, ts)`,
//!   `timestampdiff(DAY, a, b)`, and Databricks' `dateadd` / `datediff` / `date_diff` with
//!   three arguments;
//! - functions that take a Java datetime pattern (`date_format`, `to_date`, `to_timestamp`,
//!   `unix_timestamp`, `to_unix_timestamp`, `from_unixtime`): DataFusion's with the pattern
//!   read as chrono's ([`crate::datetime::chrono_format`]); a pattern must be a constant;
//! - date parts by Spark's names (`dayofweek`, `weekofyear`, `quarter`, …), `locate`,
//!   `get`, `sort_array`, `array_sort`, `explode`, `count_if`, `max_by`/`min_by`,
//!   `try_divide`, `zeroifnull`, `nullifzero`, `decode`, `regexp_replace` (Spark's replaces
//!   every match), `current_database()` (the current schema, in Spark).
//!
//! Each replacement is a template parsed with Spark's dialect whose `$n` are the call's
//! arguments, already rewritten themselves (the walk is bottom-up).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use crate::datetime::{chrono_format, Use};
use crate::SparkDialect;

/// Why a statement cannot be rewritten: a Spark form sluice does not support, with a
/// message that names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

/// What a rewrite needs to know of the server.
pub struct Context<'a> {
    /// The one catalog's name (`current_catalog()`).
    pub catalog: &'a str,
}

/// Double the backslashes of every string constant, so that the statement printed reads
/// back (with Spark's backslash escapes) as the same strings: for a view's text, kept and
/// read again.
pub fn escape_backslashes(statement: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Value(v) = expr {
            if let Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) = &mut v.value {
                if s.contains('\\') {
                    *s = s.replace('\\', "\\\\");
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Rewrite a Databricks session's statement in place. A view's query is kept as written
/// (it is rewritten each time it is read), only its names mapped.
pub fn statement(statement: &mut ast::Statement, context: &Context) -> Result<(), Unsupported> {
    if let ast::Statement::Query(query) = statement {
        output_names(query);
    }
    // `hive_metastore.s.t`, `main.s.t`: the one catalog by another of its names.
    let _ = ast::visit_relations_mut(statement, |name| {
        if name.0.len() == 3 {
            if let Some(first) = name.0[0].as_ident() {
                if crate::is_catalog(&first.value, context.catalog) {
                    name.0[0] = ast::ObjectNamePart::Identifier(ast::Ident::new(context.catalog));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    // `CREATE SCHEMA hive_metastore.s`, `DROP SCHEMA main.s`: a schema named in the
    // catalog; `CREATE VIEW main.s.v`: a view.
    let named = match statement {
        ast::Statement::CreateSchema {
            schema_name:
                ast::SchemaName::Simple(name) | ast::SchemaName::NamedAuthorization(name, _),
            ..
        } => Some((name, 2)),
        ast::Statement::Drop {
            object_type: ast::ObjectType::Schema,
            names,
            ..
        } => names.first_mut().map(|name| (name, 2)),
        ast::Statement::CreateView(view) => Some((&mut view.name, 3)),
        _ => None,
    };
    if let Some((name, _)) = named.filter(|(name, parts)| name.0.len() == *parts) {
        if name.0[0]
            .as_ident()
            .is_some_and(|first| crate::is_catalog(&first.value, context.catalog))
        {
            name.0[0] = ast::ObjectNamePart::Identifier(ast::Ident::new(context.catalog));
        }
    }
    if let ast::Statement::CreateView(_) = statement {
        // Its text is what is kept: printed so that it reads back as written.
        escape_backslashes(statement);
        return Ok(());
    }
    let mut rewriter = Rewriter {
        context,
        error: None,
    };
    let _ = statement.visit(&mut rewriter);
    match rewriter.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Rewriter<'a> {
    context: &'a Context<'a>,
    error: Option<Unsupported>,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let ast::SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    int_literals(e);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        // After its children: the view's own query is not visited again.
        if let Some(view) = crate::information_schema::view(factor, self.context.catalog) {
            *factor = view;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let rewritten = if matches!(expr, Expr::Function(_)) {
            rewrite_call(expr, self.context)
        } else {
            Ok(rewrite_expr(expr))
        };
        match rewritten {
            Ok(Some(new)) => *expr = new,
            Ok(None) => {}
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// A statement's result columns named as Spark names them: a column written with capitals
/// keeps them (`SELECT N_NAME` answers a column `N_NAME`; names are case-insensitive,
/// output names are as written), and a bare `VALUES` list's columns are `col1`, `col2`, ….
/// The statement's own query only: a subquery's columns keep the names outer references
/// find them by.
fn output_names(query: &mut ast::Query) {
    match query.body.as_mut() {
        ast::SetExpr::Select(select) => {
            // Expressions nobody named get Spark's name for them.
            let printed: Vec<Option<String>> = select
                .projection
                .iter()
                .map(|item| match item {
                    ast::SelectItem::UnnamedExpr(e) => crate::names::spark_name(e),
                    ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                    _ => None,
                })
                .collect();
            let mut taken: std::collections::HashSet<String> =
                printed.iter().flatten().cloned().collect();
            let mut seen = std::collections::HashSet::new();
            // The next suffix to try for each name (a thousand `1`s cost a thousand steps).
            let mut next: std::collections::HashMap<String, usize> = Default::default();
            for (item, name) in select.projection.iter_mut().zip(&printed) {
                let ast::SelectItem::UnnamedExpr(e) = item else {
                    if let Some(name) = name {
                        seen.insert(name.clone());
                    }
                    continue;
                };
                // Spark names `SELECT 1, 1` alike; DataFusion needs distinct names: the
                // second is `1_2`, the third `1_3`, ….
                if let Some(name) = name.as_ref().filter(|n| !seen.insert((*n).clone())) {
                    let k = next.entry(name.clone()).or_insert(2);
                    let mut unique = format!("{name}_{k}");
                    while !taken.insert(unique.clone()) {
                        *k += 1;
                        unique = format!("{name}_{k}");
                    }
                    *k += 1;
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: ast::Ident::with_quote('`', unique),
                    };
                    continue;
                }
                let written = match e {
                    Expr::Identifier(i) => i,
                    Expr::CompoundIdentifier(parts) => match parts.last() {
                        Some(last) => last,
                        None => continue,
                    },
                    _ => {
                        if let Some(name) = name {
                            *item = ast::SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: ast::Ident::with_quote('`', name.clone()),
                            };
                        }
                        continue;
                    }
                };
                let typed_number = written.value.starts_with(|c: char| c.is_ascii_digit());
                if written.quote_style.is_none()
                    && !typed_number
                    && written.value.chars().any(char::is_uppercase)
                {
                    let alias = ast::Ident::with_quote('`', written.value.clone());
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias,
                    };
                }
            }
        }
        ast::SetExpr::Values(values) => {
            let width = values.rows.first().map_or(0, |row| row.content.len());
            if width == 0 {
                return;
            }
            let columns: Vec<String> = (1..=width).map(|i| format!("col{i}")).collect();
            let sql = format!("SELECT * FROM (VALUES (0)) AS v({})", columns.join(", "));
            let Ok(mut wrapper) = Parser::new(&SparkDialect)
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
            else {
                return;
            };
            let ast::SetExpr::Select(select) = wrapper.body.as_mut() else {
                return;
            };
            if let Some(ast::TableFactor::Derived { subquery, .. }) =
                select.from.first_mut().map(|t| &mut t.relation)
            {
                *subquery.body = ast::SetExpr::Values(values.clone());
                query.body = wrapper.body;
            }
        }
        _ => {}
    }
}

/// Integer constants of an output expression as Spark types them: INT when they fit
/// (`typeof(1)` is int, `2147483647 + 1` overflows), BIGINT beyond. Only through the
/// expression forms below: a window's offsets and frame bounds, and an interval's quantity,
/// stay the constants DataFusion reads them as.
fn int_literals(expr: &mut Expr) {
    match expr {
        Expr::Value(v) => {
            if let Value::Number(n, false) = &v.value {
                if n.parse::<i32>().is_ok() {
                    *expr = template("CAST($1 AS INT)", std::slice::from_ref(expr));
                }
            }
        }
        Expr::BinaryOp { left, right, .. } => {
            int_literals(left);
            int_literals(right);
        }
        Expr::UnaryOp { expr: inner, .. } | Expr::Nested(inner) => int_literals(inner),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            for e in operand.iter_mut().chain(else_result.iter_mut()) {
                int_literals(e);
            }
            for c in conditions {
                int_literals(&mut c.condition);
                int_literals(&mut c.result);
            }
        }
        Expr::Function(f) if f.over.is_none() && f.within_group.is_empty() => {
            if let FunctionArguments::List(list) = &mut f.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        int_literals(e);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Spark's literal and operator forms sqlparser reads as something else.
fn rewrite_expr(expr: &mut Expr) -> Option<Expr> {
    match expr {
        // `TIMESTAMP_NTZ'…'`, `CAST(x AS TIMESTAMP_NTZ)`: a timestamp without time zone.
        Expr::TypedString(ts) if matches!(ts.data_type, ast::DataType::TimestampNtz(_)) => {
            ts.data_type = ast::DataType::Timestamp(None, ast::TimezoneInfo::None);
            None
        }
        Expr::Cast { data_type, .. } if matches!(data_type, ast::DataType::TimestampNtz(_)) => {
            *data_type = ast::DataType::Timestamp(None, ast::TimezoneInfo::None);
            None
        }
        // `named_struct('a', 1).a`: a field of a computed struct.
        Expr::CompoundFieldAccess { root, access_chain }
            if access_chain.len() == 1
                && !matches!(
                    root.as_ref(),
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                ) =>
        {
            match &access_chain[0] {
                ast::AccessExpr::Dot(Expr::Identifier(field)) => Some(template(
                    "get_field($1, $2)",
                    &[root.as_ref().clone(), string(&field.value)],
                )),
                _ => None,
            }
        }
        // `x RLIKE 'p'`, `x REGEXP 'p'`.
        Expr::RLike {
            negated,
            expr: value,
            pattern,
            ..
        } => {
            let args = [value.as_ref().clone(), pattern.as_ref().clone()];
            Some(if *negated {
                template("NOT regexp_like($1, $2)", &args)
            } else {
                template("regexp_like($1, $2)", &args)
            })
        }
        // `INTERVAL 1 DAY`: DataFusion reads the quantity from a string.
        Expr::Interval(interval) => {
            if let Expr::Value(v) = interval.value.as_mut() {
                if let Value::Number(n, _) = &v.value {
                    v.value = Value::SingleQuotedString(n.clone());
                }
            }
            None
        }
        // `a DIV b`: the quotient truncated to a BIGINT.
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::MyIntegerDivide,
            right,
        } => Some(template(
            "CAST(($1) / ($2) AS BIGINT)",
            &[left.as_ref().clone(), right.as_ref().clone()],
        )),
        // `1E3` is a double in Spark (`1.5` a decimal).
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) if n.contains(['e', 'E']) => {
                Some(template("CAST($1 AS DOUBLE)", std::slice::from_ref(expr)))
            }
            _ => None,
        },
        // `1Y`, `1S`, `1L`, `1.5D`, `1.5F`, `1.5BD`: typed numbers (read as names, since
        // Spark's names may start with a digit).
        Expr::Identifier(i) if i.quote_style.is_none() => typed_number(&i.value),
        Expr::CompoundIdentifier(parts)
            if parts.len() == 2
                && parts.iter().all(|p| p.quote_style.is_none())
                && !parts[0].value.is_empty()
                && parts[0].value.bytes().all(|b| b.is_ascii_digit()) =>
        {
            typed_number(&format!("{}.{}", parts[0].value, parts[1].value))
        }
        _ => None,
    }
}

/// A number with Spark's type suffix as a typed constant.
fn typed_number(text: &str) -> Option<Expr> {
    let upper = text.to_ascii_uppercase();
    let (digits, sql_type) = [
        ("BD", "DECIMAL(38, 18)"),
        ("Y", "TINYINT"),
        ("S", "SMALLINT"),
        ("L", "BIGINT"),
        ("D", "DOUBLE"),
        ("F", "FLOAT"),
    ]
    .into_iter()
    .find_map(|(suffix, t)| upper.strip_suffix(suffix).map(|d| (d, t)))?;
    let number = digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().any(|b| b.is_ascii_digit());
    if !number {
        return None;
    }
    if sql_type.starts_with("DECIMAL") {
        // The decimal of exactly the digits written.
        let scale = digits.split('.').nth(1).map_or(0, str::len);
        let precision = digits
            .bytes()
            .filter(u8::is_ascii_digit)
            .count()
            .max(scale)
            .max(1);
        return Some(template(
            &format!("CAST({digits} AS DECIMAL({precision}, {scale}))"),
            &[],
        ));
    }
    Some(template(&format!("CAST({digits} AS {sql_type})"), &[]))
}

/// `sql` with `$n` replaced by `args[n - 1]`.
fn template(sql: &str, args: &[Expr]) -> Expr {
    let mut expr = Parser::new(&SparkDialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| panic!("template {sql:?} parses: {e}"));
    let _ = ast::visit_expressions_mut(&mut expr, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if let Some(arg) = p[1..].parse::<usize>().ok().and_then(|n| args.get(n - 1)) {
                    *e = arg.clone();
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}

fn string(s: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(s.to_string()))
}

fn string_value(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// A unit written as a keyword (`MONTH`) or a string (`'month'`).
fn unit_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) if i.quote_style.is_none() => Some(i.value.to_ascii_uppercase()),
        other => string_value(other).map(|s| s.to_ascii_uppercase()),
    }
}

/// A pattern argument as a chrono format.
fn pattern(function: &str, e: &Expr, purpose: Use) -> Result<Expr, Unsupported> {
    let Some(p) = string_value(e) else {
        return Err(Unsupported(format!(
            "{function}: the datetime pattern must be a constant string"
        )));
    };
    chrono_format(p, purpose)
        .map(|f| string(&f))
        .map_err(|why| Unsupported(format!("{function}: {why}")))
}

const DEFAULT_TIMESTAMP_PATTERN: &str = "yyyy-MM-dd HH:mm:ss";

fn rewrite_call(expr: &Expr, context: &Context) -> Result<Option<Expr>, Unsupported> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    if f.name.0.len() != 1 || f.over.is_some() || f.filter.is_some() {
        return Ok(None);
    }
    let Some(name) = f.name.0[0].as_ident().map(|i| i.value.to_ascii_lowercase()) else {
        return Ok(None);
    };
    let FunctionArguments::List(list) = &f.args else {
        return Ok(None);
    };
    if !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
        return Ok(None);
    }
    let mut args = Vec::with_capacity(list.args.len());
    for a in &list.args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e.clone()),
            _ => return Ok(None),
        }
    }
    let t = |sql: &str| Ok(Some(template(sql, &args)));
    let unit_first = |function: &str| -> Result<Option<Expr>, Unsupported> {
        let Some(unit) = unit_name(&args[0]) else {
            return Err(Unsupported(format!(
                "{name}: the unit must be a keyword such as DAY or MONTH"
            )));
        };
        let mut rest = vec![string(&unit)];
        rest.extend(args[1..].iter().cloned());
        Ok(Some(template(&format!("{function}($1, $2, $3)"), &rest)))
    };
    // Spark's date functions read a string or timestamp argument as a date (datafusion-spark's
    // take a date only).
    // (A second argument is a count of days or months, an INT in Spark.)
    let on_date = |function: &str| {
        let sql = match args.len() {
            1 => format!("{function}(CAST($1 AS DATE))"),
            _ if function == "next_day" => format!("{function}(CAST($1 AS DATE), $2)"),
            _ => format!("{function}(CAST($1 AS DATE), CAST($2 AS INT))"),
        };
        Ok(Some(template(&sql, &args)))
    };
    let date_part = |part: &str| {
        Ok(Some(template(
            &format!("CAST(date_part('{part}', CAST($1 AS DATE)) AS INT)"),
            &args,
        )))
    };
    match (name.as_str(), args.len()) {
        ("timestampadd" | "dateadd" | "date_add", 3) => unit_first("timestampadd"),
        ("timestampdiff" | "datediff" | "date_diff" | "timestamp_diff", 3) => {
            unit_first("timestampdiff")
        }
        // DataFusion's `date_format` is its `to_char` (strftime formats).
        ("date_format", 2) => {
            let p = pattern(&name, &args[1], Use::Format)?;
            Ok(Some(template(
                "date_format(CAST($1 AS TIMESTAMP), $2)",
                &[args[0].clone(), p],
            )))
        }
        ("to_date" | "date", 1) => t("CAST(CAST($1 AS TIMESTAMP) AS DATE)"),
        ("to_date", 2) => {
            let p = pattern(&name, &args[1], Use::Parse)?;
            Ok(Some(template(
                "CAST(to_timestamp_micros($1, $2) AS DATE)",
                &[args[0].clone(), p],
            )))
        }
        ("to_timestamp", 1) => t("CAST($1 AS TIMESTAMP)"),
        ("to_timestamp", 2) => {
            let p = pattern(&name, &args[1], Use::Parse)?;
            Ok(Some(template(
                "to_timestamp_micros($1, $2)",
                &[args[0].clone(), p],
            )))
        }
        ("unix_timestamp", 0) => t("to_unixtime(now())"),
        ("unix_timestamp" | "to_unix_timestamp", 1) => t("to_unixtime(CAST($1 AS TIMESTAMP))"),
        ("unix_timestamp" | "to_unix_timestamp", 2) => {
            let p = pattern(&name, &args[1], Use::Parse)?;
            Ok(Some(template(
                "to_unixtime(to_timestamp_micros($1, $2))",
                &[args[0].clone(), p],
            )))
        }
        ("date_add" | "date_sub" | "add_months", 2) | ("last_day", 1) | ("next_day", 2) => {
            on_date(&name)
        }
        ("hour" | "minute" | "second", 1) => t(&format!("{name}(CAST($1 AS TIMESTAMP))")),
        ("date_trunc", 2) => t("date_trunc($1, CAST($2 AS TIMESTAMP))"),
        ("factorial", 1) => t("factorial(CAST($1 AS INT))"),
        ("isnull", 1) => t("$1 IS NULL"),
        ("isnotnull", 1) => t("$1 IS NOT NULL"),
        ("current_catalog", 0) => Ok(Some(string(context.catalog))),
        ("percentile", 2) => t("percentile_cont($1, $2)"),
        ("from_unixtime", 1 | 2) => {
            let p = match args.get(1) {
                Some(p) => pattern(&name, p, Use::Format)?,
                None => string(
                    &chrono_format(DEFAULT_TIMESTAMP_PATTERN, Use::Format).map_err(Unsupported)?,
                ),
            };
            Ok(Some(template(
                "date_format(to_timestamp_seconds(CAST($1 AS BIGINT)), $2)",
                &[args[0].clone(), p],
            )))
        }
        ("dayofweek", 1) => t("CAST(date_part('dow', CAST($1 AS DATE)) + 1 AS INT)"),
        ("dayofmonth" | "day", 1) => date_part("day"),
        ("dayofyear", 1) => date_part("doy"),
        ("weekofyear", 1) => date_part("week"),
        ("quarter", 1) => date_part("quarter"),
        ("year", 1) => date_part("year"),
        ("month", 1) => date_part("month"),
        ("locate", 2) => t("strpos($2, $1)"),
        ("locate", 3) => t(
            "CASE WHEN $3 < 1 THEN 0 WHEN strpos(substr($2, $3), $1) = 0 THEN 0 \
             ELSE strpos(substr($2, $3), $1) + $3 - 1 END",
        ),
        ("get", 2) => t("array_element($1, $2 + 1)"),
        ("sort_array", 1) => t("array_sort($1, 'ASC', 'NULLS FIRST')"),
        ("sort_array", 2) => t("CASE WHEN $2 THEN array_sort($1, 'ASC', 'NULLS FIRST') \
                                ELSE array_sort($1, 'DESC', 'NULLS LAST') END"),
        ("array_sort", 1) => t("array_sort($1, 'ASC', 'NULLS LAST')"),
        ("explode", 1) => t("unnest($1)"),
        ("count_if", 1) => t("count(CASE WHEN $1 THEN 1 END)"),
        ("max_by", 2) => t("first_value($1 ORDER BY $2 DESC NULLS LAST)"),
        ("min_by", 2) => t("first_value($1 ORDER BY $2 ASC NULLS LAST)"),
        ("try_divide", 2) => t("CASE WHEN $2 = 0 THEN NULL ELSE $1 / $2 END"),
        ("zeroifnull", 1) => t("coalesce($1, 0)"),
        ("nullifzero", 1) => t("nullif($1, 0)"),
        ("decode", 2) => t("CAST($1 AS STRING)"),
        ("decode", n) if n >= 3 => {
            let mut sql = String::from("CASE");
            let mut i = 2;
            while i < n {
                sql.push_str(&format!(" WHEN $1 <=> ${i} THEN ${}", i + 1));
                i += 2;
            }
            if i == n {
                sql.push_str(&format!(" ELSE ${n}"));
            }
            sql.push_str(" END");
            t(&sql)
        }
        ("regexp_replace", 3) => t("regexp_replace($1, $2, $3, 'g')"),
        ("current_database", 0) => t("current_schema()"),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Result<String, Unsupported> {
        let mut statements = Parser::parse_sql(&SparkDialect, sql).unwrap();
        statement(&mut statements[0], &Context { catalog: "sluice" })?;
        Ok(statements[0].to_string())
    }

    #[test]
    fn spark_forms_become_datafusion_ones() {
        assert_eq!(
            rewritten("SELECT timestampadd(MONTH, 1, ts) FROM t").unwrap(),
            "SELECT timestampadd('MONTH', CAST(1 AS INT), ts) AS `timestampadd(MONTH, 1, ts)` FROM t"
        );
        assert_eq!(
            rewritten("SELECT datediff(day, a, b), datediff(a, b) FROM t").unwrap(),
            "SELECT timestampdiff('DAY', a, b) AS `datediff(day, a, b)`, datediff(a, b) AS `datediff(a, b)` FROM t"
        );
        assert_eq!(
            rewritten("SELECT date_format(d, 'yyyy-MM') FROM t").unwrap(),
            "SELECT date_format(CAST(d AS TIMESTAMP), '%Y-%m') AS `date_format(d, yyyy-MM)` FROM t"
        );
        assert_eq!(
            rewritten("SELECT decode(x, 1, 'a', 2, 'b', 'z') FROM t").unwrap(),
            "SELECT CASE WHEN x <=> CAST(1 AS INT) THEN 'a' WHEN x <=> CAST(2 AS INT) THEN 'b' ELSE 'z' END AS `decode(x, 1, a, 2, b, z)` FROM t"
        );
        // Nested calls are rewritten from the inside out.
        assert_eq!(
            rewritten("SELECT year(to_date(s)) FROM t").unwrap(),
            "SELECT CAST(date_part('year', CAST(CAST(CAST(s AS TIMESTAMP) AS DATE) AS DATE)) AS INT) AS `year(to_date(s))` FROM t"
        );
        assert_eq!(
            rewritten("SELECT N_NAME, (SELECT 1 FROM (VALUES (1)) AS v(x)) FROM t").unwrap(),
            "SELECT N_NAME AS `N_NAME`, (SELECT CAST(1 AS INT) FROM (VALUES (1)) AS v (x)) FROM t"
        );
        assert_eq!(
            rewritten("SELECT * FROM hive_metastore.tpch.nation, `MAIN`.tpch.region").unwrap(),
            "SELECT * FROM sluice.tpch.nation, sluice.tpch.region"
        );
        assert_eq!(
            rewritten("VALUES (1, 'a')").unwrap(),
            "SELECT * FROM (VALUES (1, 'a')) AS v (col1, col2)"
        );
        assert_eq!(
            rewritten("SELECT 1L, 2.5BD, 1E3, x RLIKE 'a+', current_catalog() FROM t").unwrap(),
            "SELECT CAST(1 AS BIGINT), CAST(2.5 AS DECIMAL(2,1)), CAST(1E3 AS DOUBLE), \
             regexp_like(x, 'a+'), 'sluice' AS `current_catalog()` FROM t"
        );
        // A string argument keeps its backslashes: arguments are never printed and re-read.
        assert_eq!(
            rewritten(r"SELECT locate('\\', s) FROM t").unwrap(),
            r"SELECT strpos(s, '\') AS `locate(\, s)` FROM t"
        );
    }

    #[test]
    fn databricks_information_schema_is_a_view_over_the_sessions_own() {
        for sql in [
            "SELECT table_name FROM `system`.`information_schema`.`tables` WHERE table_catalog = 'sluice'",
            "SELECT t.table_name FROM main.information_schema.tables AS t",
        ] {
            let out = rewritten(sql).unwrap();
            assert!(out.contains("FROM information_schema.tables t LEFT JOIN"), "{out}");
            assert!(out.contains("'EXTERNAL' END AS table_type"), "{out}");
        }
        // Unknown views, other catalogs and PostgreSQL's two-part names are left alone.
        for sql in [
            "SELECT * FROM system.information_schema.routines",
            "SELECT * FROM other.information_schema.tables",
            "SELECT * FROM information_schema.tables",
        ] {
            assert!(!rewritten(sql).unwrap().contains("LEFT JOIN"), "{sql}");
        }
        // A view's query is kept as written (it is rewritten when read); names are mapped.
        assert_eq!(
            rewritten("CREATE VIEW main.s.v AS SELECT date_format(d, 'yyyy') FROM main.s.t")
                .unwrap(),
            "CREATE VIEW sluice.s.v AS SELECT date_format(d, 'yyyy') FROM sluice.s.t"
        );
        let out = rewritten("CREATE SCHEMA IF NOT EXISTS `hive_metastore`.`s`").unwrap();
        assert_eq!(out, "CREATE SCHEMA IF NOT EXISTS sluice.`s`");
    }

    #[test]
    fn output_names_are_sparks_and_distinct() {
        assert_eq!(
            rewritten("SELECT x, x, x_2, 1, 1, upper(x), count(*) FROM t").unwrap(),
            "SELECT x, x AS `x_3`, x_2, CAST(1 AS INT) AS `1`, CAST(1 AS INT) AS `1_2`, \
             upper(x) AS `upper(x)`, count(*) AS `count(1)` FROM t"
        );
        // Many alike: each suffix found in a step or two.
        let many = vec!["1"; 20_000].join(", ");
        let out = rewritten(&format!("SELECT {many}")).unwrap();
        assert!(out.ends_with("AS `1_20000`"), "{}", &out[out.len() - 40..]);
    }

    #[test]
    fn a_printed_statement_reads_back_as_the_same_strings() {
        let sql = r#"SELECT 'a\b', "c'd", 'e''f' FROM t"#;
        let mut statement = Parser::parse_sql(&SparkDialect, sql).unwrap().remove(0);
        let before = statement.clone();
        escape_backslashes(&mut statement);
        let again = Parser::parse_sql(&SparkDialect, &statement.to_string())
            .unwrap()
            .remove(0);
        assert_eq!(again, before);
    }

    #[test]
    fn unsupported_forms_say_what() {
        let e = rewritten("SELECT date_format(d, p) FROM t").unwrap_err();
        assert!(e.0.contains("must be a constant"), "{e:?}");
        let e = rewritten("SELECT date_format(d, 'QQQ') FROM t").unwrap_err();
        assert!(e.0.contains("'QQQ'"), "{e:?}");
        let e = rewritten("SELECT timestampadd(1 + 1, 1, ts)").unwrap_err();
        assert!(e.0.contains("unit"), "{e:?}");
    }
}
