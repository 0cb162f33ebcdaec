//! Databricks SQL's lexical rules, for the statements of the Databricks paths (HS2, the
//! Statement Execution API): sqlparser's Databricks dialect — `` `quoted` `` identifiers,
//! `"double-quoted"` and `'single-quoted'` strings, `current_catalog()` with its
//! parentheses — with Spark's backslash escapes in string literals (`'O\'BRIEN'`).

use std::any::TypeId;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
use datafusion::sql::sqlparser::dialect::{DatabricksDialect, Dialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

#[derive(Debug, Default)]
pub struct SparkDialect;

impl Dialect for SparkDialect {
    /// The parser's Databricks rules apply (it asks the dialect's type for them).
    fn dialect(&self) -> TypeId {
        TypeId::of::<DatabricksDialect>()
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }

    /// `'con' 'cat'` is one string.
    fn supports_string_literal_concatenation(&self) -> bool {
        true
    }

    /// `a DIV b`: Spark's integral division.
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        if !parser.parse_keyword(Keyword::DIV) {
            return None;
        }
        let precedence = self.prec_value(Precedence::MulDivModOp);
        Some(
            parser
                .parse_subexpr(precedence)
                .map(|right| Expr::BinaryOp {
                    left: Box::new(expr.clone()),
                    op: BinaryOperator::MyIntegerDivide,
                    right: Box::new(right),
                }),
        )
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        DatabricksDialect.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        DatabricksDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        DatabricksDialect.is_identifier_part(ch)
    }

    fn supports_numeric_prefix(&self) -> bool {
        DatabricksDialect.supports_numeric_prefix()
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        DatabricksDialect.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        DatabricksDialect.supports_group_by_expr()
    }

    fn supports_lambda_functions(&self) -> bool {
        DatabricksDialect.supports_lambda_functions()
    }

    fn supports_select_wildcard_except(&self) -> bool {
        DatabricksDialect.supports_select_wildcard_except()
    }

    fn require_interval_qualifier(&self) -> bool {
        DatabricksDialect.require_interval_qualifier()
    }

    fn supports_struct_literal(&self) -> bool {
        DatabricksDialect.supports_struct_literal()
    }

    fn supports_nested_comments(&self) -> bool {
        DatabricksDialect.supports_nested_comments()
    }

    fn supports_values_as_table_factor(&self) -> bool {
        DatabricksDialect.supports_values_as_table_factor()
    }

    fn supports_cte_without_as(&self) -> bool {
        DatabricksDialect.supports_cte_without_as()
    }
}
