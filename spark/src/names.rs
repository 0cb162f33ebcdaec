//! The name Spark gives an output column nobody named: the expression printed back
//! (`SELECT 1` is `1`, `upper(n_name)` is `upper(n_name)`, `a + 1` is `(a + 1)`,
//! `count(*)` is `count(1)`, a string constant its text). DataFusion would name them
//! `Int64(1)`, `upper(t.n_name)`, …: names BI tools show as column headers.
//!
//! Only the forms below are printed; any other expression keeps DataFusion's name rather
//! than a guess at Spark's.

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
    Value,
};

/// Nesting past this depth keeps DataFusion's name (the printer recurses).
const MAX_DEPTH: usize = 32;

/// Spark's name of `expr`, when it is one of the forms printed here.
pub(crate) fn spark_name(expr: &Expr) -> Option<String> {
    match expr {
        // A column cast at the top is named as the column (`CAST(a AS BIGINT)` is `a`).
        Expr::Cast { expr, .. }
            if matches!(
                expr.as_ref(),
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            ) =>
        {
            name(expr, 0)
        }
        _ => name(expr, 0),
    }
}

fn name(expr: &Expr, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let inner = |e: &Expr| name(e, depth + 1);
    Some(match expr {
        // `1L` and other typed numbers lex as identifiers; Spark names them by value.
        Expr::Identifier(id) if id.value.starts_with(|c: char| c.is_ascii_digit()) => return None,
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last()?.value.clone(),
        Expr::Value(v) => match &v.value {
            // Plain decimal digits only: typed numbers (`1L`, `1E3`) print as Spark's value.
            Value::Number(n, _) if n.chars().all(|c| c.is_ascii_digit() || c == '.') => n.clone(),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            Value::Null => "NULL".into(),
            _ => return None,
        },
        Expr::Nested(e) => inner(e)?,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(_) => format!("-{}", inner(expr)?),
            _ => format!("(- {})", inner(expr)?),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("(NOT {})", inner(expr)?),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::NotEq,
            right,
        } => format!("(NOT ({} = {}))", inner(left)?, inner(right)?),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => format!("concat({}, {})", inner(left)?, inner(right)?),
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Plus => "+",
                BinaryOperator::Minus => "-",
                BinaryOperator::Multiply => "*",
                BinaryOperator::Divide => "/",
                BinaryOperator::Modulo => "%",
                BinaryOperator::Eq => "=",
                BinaryOperator::Lt => "<",
                BinaryOperator::LtEq => "<=",
                BinaryOperator::Gt => ">",
                BinaryOperator::GtEq => ">=",
                BinaryOperator::And => "AND",
                BinaryOperator::Or => "OR",
                _ => return None,
            };
            format!("({} {op} {})", inner(left)?, inner(right)?)
        }
        Expr::IsNull(e) => format!("({} IS NULL)", inner(e)?),
        Expr::IsNotNull(e) => format!("({} IS NOT NULL)", inner(e)?),
        Expr::Cast {
            kind: ast::CastKind::Cast | ast::CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
            ..
        } => format!(
            "CAST({} AS {})",
            inner(expr)?,
            data_type.to_string().to_uppercase()
        ),
        Expr::Function(f) => {
            if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
                return None;
            }
            let [ast::ObjectNamePart::Identifier(fname)] = f.name.0.as_slice() else {
                return None;
            };
            let fname = fname.value.to_lowercase();
            let args = match &f.args {
                FunctionArguments::None => return Some(format!("{fname}()")),
                FunctionArguments::List(list) if list.clauses.is_empty() => list,
                _ => return None,
            };
            let mut printed = Vec::with_capacity(args.args.len());
            for arg in &args.args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => printed.push(inner(e)?),
                    // count(*) is count(1) in Spark.
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if fname == "count" => {
                        printed.push("1".into())
                    }
                    _ => return None,
                }
            }
            let distinct = match args.duplicate_treatment {
                Some(ast::DuplicateTreatment::Distinct) => "DISTINCT ",
                Some(ast::DuplicateTreatment::All) => return None,
                None => "",
            };
            format!("{fname}({distinct}{})", printed.join(", "))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SparkDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> Option<String> {
        let expr = Parser::new(&SparkDialect)
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        spark_name(&expr)
    }

    #[test]
    fn spark_prints_expressions_back() {
        // Each as Spark 4 names the column (checked with PySpark's local session).
        for (sql, want) in [
            ("1", "1"),
            ("1.50", "1.50"),
            ("'abc'", "abc"),
            ("NULL", "NULL"),
            ("true", "true"),
            ("-1", "-1"),
            ("t.n_name", "n_name"),
            ("a + 1", "(a + 1)"),
            ("(a + 1) * 2", "((a + 1) * 2)"),
            ("COUNT(*)", "count(1)"),
            ("count(DISTINCT a)", "count(DISTINCT a)"),
            ("upper(concat(a, 'x'))", "upper(concat(a, x))"),
            ("current_date()", "current_date()"),
            ("a IS NULL", "(a IS NULL)"),
            ("CAST(a AS string)", "a"),
            ("a::bigint", "a"),
            ("CAST('1' AS INT)", "CAST(1 AS INT)"),
            ("CAST(a + 1 AS STRING)", "CAST((a + 1) AS STRING)"),
            ("upper(CAST(a AS STRING))", "upper(CAST(a AS STRING))"),
            ("a = 1 AND b > 2", "((a = 1) AND (b > 2))"),
            ("a >= 1 OR b < 2", "((a >= 1) OR (b < 2))"),
            ("NOT (a = 1)", "(NOT (a = 1))"),
            ("a <> b", "(NOT (a = b))"),
            ("a || 'x'", "concat(a, x)"),
            ("-a", "(- a)"),
            ("a % 2", "(a % 2)"),
            ("Upper('q')", "upper(q)"),
            ("'O''B'", "O'B"),
        ] {
            assert_eq!(named(sql).as_deref(), Some(want), "{sql}");
        }
        // Forms not printed here keep DataFusion's name.
        for sql in [
            "CASE WHEN a THEN 1 END",
            "1E3",
            "DATE '2020-01-01'",
            "sum(a) OVER ()",
        ] {
            assert_eq!(named(sql), None, "{sql}");
        }
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(named(&deep), None);
    }
}
