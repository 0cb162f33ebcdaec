//! `EXPLAIN` as PostgreSQL clients send it and read it.
//!
//! PostgreSQL's options list, `EXPLAIN (ANALYZE false, FORMAT JSON, COSTS true) …`
//! (pgAdmin's and DBeaver's plan views send it so), is read here: ANALYZE and VERBOSE set
//! DataFusion's own flags, FORMAT picks the answer's shape, and the options that only
//! change what detail PostgreSQL prints are accepted. DataFusion's planner ignores the list.
//!
//! On pg sessions the answer is PostgreSQL's: one column `QUERY PLAN`, a text row per line
//! of the plan that runs (DataFusion's physical plan; its logical plan is an intermediate
//! step PostgreSQL does not show), or with FORMAT JSON one `json` value in PostgreSQL's
//! shape, `[{"Plan": {"Node Type": …, "Details": …, "Plans": […]}}]` (DataFusion's
//! rendering of the physical plan).

use std::collections::HashMap;
use std::str::FromStr;

use datafusion::common::format::{ExplainFormat, ExplainStatementOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::FieldMetadata;
use datafusion::logical_expr::{col, lit, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::displayable;
use datafusion::sql::parser::{DFParser, ExplainStatement, Statement};
use datafusion::sql::sqlparser::ast::{self, Expr, UtilityOption};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::distributed::Distributor;
use crate::error::{ErrorKind, QueryError};
use crate::pg_catalog::types::{oids, PG_TYPE_KEY};

/// Parses a statement list as DataFusion's parser does, reading PostgreSQL's
/// `EXPLAIN (…)` options list here (see [`options`]) instead of failing on what DataFusion
/// does not know (`FORMAT JSON`, `BUFFERS`, …).
pub fn parse_statements(parser: &mut DFParser) -> Result<Vec<Statement>, QueryError> {
    let mut statements = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        if parser.parser.peek_token() == Token::EOF {
            break;
        }
        if let Some(statement) = options_list_explain(parser)? {
            statements.push(statement);
        } else {
            statements.push(parser.parse_statement().map_err(QueryError::from)?);
        }
        let next = parser.parser.peek_token().token;
        if next != Token::EOF && next != Token::SemiColon {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                format!("Expected: end of statement, found: {next}"),
            ));
        }
    }
    Ok(statements)
}

/// `EXPLAIN (option …) statement`, or None (the parser untouched) for any other statement.
fn options_list_explain(parser: &mut DFParser) -> Result<Option<Statement>, QueryError> {
    let is_explain = matches!(&parser.parser.peek_token().token,
        Token::Word(w) if w.keyword == Keyword::EXPLAIN);
    let options_follow = parser.parser.peek_nth_token(1).token == Token::LParen
        && matches!(&parser.parser.peek_nth_token(2).token,
            Token::Word(w) if !matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES | Keyword::TABLE));
    if !(is_explain && options_follow) {
        return Ok(None);
    }
    parser.parser.next_token();
    let raw = parser
        .parser
        .parse_utility_options()
        .map_err(|e| QueryError::from(DataFusionError::from(e)))?;
    let options = options(&raw)?;
    let statement = parser.parse_statement().map_err(QueryError::from)?;
    Ok(Some(Statement::Explain(ExplainStatement {
        statement: Box::new(statement),
        options,
    })))
}

/// PostgreSQL's EXPLAIN options as DataFusion's: ANALYZE and VERBOSE as they are, FORMAT
/// TEXT as DataFusion's default and FORMAT JSON as its PostgreSQL-shaped JSON (DataFusion's
/// own formats too); the options that only change what detail PostgreSQL prints (COSTS,
/// BUFFERS, TIMING, …) are checked and accepted; unknown ones are refused.
pub fn options(raw: &[UtilityOption]) -> Result<ExplainStatementOptions, QueryError> {
    let mut out = ExplainStatementOptions::default();
    let mut datafusion_own = Vec::new();
    for option in raw {
        match option.name.value.to_ascii_lowercase().as_str() {
            "analyze" => out.analyze = flag(option)?,
            "verbose" => out.verbose = flag(option)?,
            "format" => out.format = format_of(option)?,
            "costs" | "buffers" | "settings" | "summary" | "timing" | "wal" | "generic_plan"
            | "memory" => {
                flag(option)?;
            }
            "serialize" => {}
            "metrics" | "level" => datafusion_own.push(option.clone()),
            other => {
                return Err(QueryError::new(
                    ErrorKind::Syntax,
                    format!("unrecognized EXPLAIN option \"{other}\""),
                ))
            }
        }
    }
    if !datafusion_own.is_empty() {
        let own = ExplainStatementOptions::from_utility_options(&datafusion_own)
            .map_err(QueryError::from)?;
        out.analyze_level = own.analyze_level;
        out.analyze_categories = own.analyze_categories;
    }
    // A format's output has no verbose form in DataFusion; the plan is the same.
    if out.format.is_some() {
        out.verbose = false;
    }
    Ok(out)
}

/// The format an EXPLAIN statement asks for (None: the default, text).
pub fn format(statement: &Statement) -> Option<ExplainFormat> {
    match statement {
        Statement::Explain(explain) => explain.options.format.clone(),
        _ => None,
    }
}

/// A boolean option: no value, or TRUE/FALSE, ON/OFF, 1/0 as PostgreSQL reads them.
fn flag(option: &UtilityOption) -> Result<bool, QueryError> {
    let word = match &option.arg {
        None => return Ok(true),
        Some(Expr::Value(v)) => match &v.value {
            ast::Value::Boolean(b) => return Ok(*b),
            ast::Value::Number(n, _) => n.clone(),
            ast::Value::SingleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        Some(Expr::Identifier(i)) => i.value.clone(),
        Some(_) => String::new(),
    };
    match word.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(QueryError::new(
            ErrorKind::InvalidValue,
            format!(
                "{} requires a Boolean value",
                option.name.value.to_ascii_uppercase()
            ),
        )),
    }
}

/// FORMAT's value: None for TEXT (the default).
fn format_of(option: &UtilityOption) -> Result<Option<ExplainFormat>, QueryError> {
    let word = match &option.arg {
        Some(Expr::Identifier(i)) => i.value.to_ascii_lowercase(),
        Some(Expr::Value(v)) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    match word.as_str() {
        "text" => Ok(None),
        "json" => Ok(Some(ExplainFormat::PostgresJSON)),
        "xml" | "yaml" => Err(QueryError::new(
            ErrorKind::NotSupported,
            format!(
                "EXPLAIN format {} is not supported: use TEXT or JSON",
                word.to_uppercase()
            ),
        )),
        other => ExplainFormat::from_str(other).map(Some).map_err(|_| {
            QueryError::new(
                ErrorKind::InvalidValue,
                format!("unrecognized value for EXPLAIN option \"FORMAT\": \"{other}\""),
            )
        }),
    }
}

fn text_rows(text: &str) -> Vec<Vec<datafusion::logical_expr::Expr>> {
    let mut rows: Vec<_> = text.lines().map(|l| vec![lit(l.to_string())]).collect();
    if rows.is_empty() {
        rows.push(vec![lit("")]);
    }
    rows
}

/// EXPLAIN (not ANALYZE) on the other front-ends, when the session's warehouse would
/// distribute the plan: DataFusion's two rows, `logical_plan` and `physical_plan`, the
/// latter the distributed plan with its stages. None: not distributed (DataFusion's own
/// EXPLAIN answers).
pub async fn distributed_answer(
    plan: &LogicalPlan,
    state: &SessionState,
    distribution: &dyn Distributor,
) -> Result<Option<LogicalPlan>, QueryError> {
    let LogicalPlan::Explain(explain) = plan else {
        return Ok(None);
    };
    let optimized = state.optimize(&explain.plan).map_err(QueryError::from)?;
    let physical = state
        .query_planner()
        .create_physical_plan(&optimized, state)
        .await
        .map_err(QueryError::from)?;
    let Some(distributed) = distribution.distributed(&physical, state).await? else {
        return Ok(None);
    };
    let rows = vec![
        vec![
            lit("logical_plan"),
            lit(optimized.display_indent().to_string()),
        ],
        vec![lit("physical_plan"), lit(distributed.display())],
    ];
    LogicalPlanBuilder::values(rows)
        .and_then(|b| {
            b.project(vec![
                col("column1").alias("plan_type"),
                col("column2").alias("plan"),
            ])
        })
        .and_then(|b| b.build())
        .map(Some)
        .map_err(QueryError::from)
}

/// The answer to an EXPLAIN on a pg session, as values (planning only; nothing is read).
/// DataFusion plans an EXPLAIN only as the root of a plan, so its text is made here.
pub async fn pg_answer(
    plan: LogicalPlan,
    format: Option<ExplainFormat>,
    state: &SessionState,
    distribution: Option<&dyn Distributor>,
) -> Result<LogicalPlan, QueryError> {
    let LogicalPlan::Explain(explain) = &plan else {
        return Ok(plan);
    };
    let physical = state
        .create_physical_plan(&explain.plan)
        .await
        .map_err(QueryError::from)?;
    let distributed = match distribution {
        Some(d) => d.distributed(&physical, state).await?,
        None => None,
    };
    let (rows, type_oid) = match (format, distributed) {
        // DataFusion's own PostgreSQL-shaped rendering of the physical plan (a distributed
        // one's stages are its nodes' children, as pgAdmin and DBeaver draw them).
        (Some(ExplainFormat::PostgresJSON), distributed) => {
            let shown = distributed.as_ref().map_or(&physical, |d| &d.plan);
            let text = displayable(shown.as_ref()).pgjson(false).to_string();
            (vec![vec![lit(text)]], oids::JSON)
        }
        // A plan split over workers: its stages, as the distributed engine shows them.
        (_, Some(distributed)) => (text_rows(&distributed.display()), oids::TEXT),
        (format, None) => {
            let shown = displayable(physical.as_ref());
            let text = match format {
                Some(ExplainFormat::Tree) => shown.tree_render().to_string(),
                _ => shown.indent(true).to_string(),
            };
            (text_rows(&text), oids::TEXT)
        }
    };
    let metadata = FieldMetadata::from(HashMap::from([(
        PG_TYPE_KEY.to_string(),
        type_oid.to_string(),
    )]));
    LogicalPlanBuilder::values(rows)
        .and_then(|b| {
            b.project(vec![
                col("column1").alias_with_metadata("QUERY PLAN", Some(metadata))
            ])
        })
        .and_then(|b| b.build())
        .map_err(QueryError::from)
}
